"""The command-line clients: status, sites, peers, map-cache, lookup and init.

`status`, `sites`, `peers` and `map-cache` are thin clients of a node's JSON
API (`--node URL`); their tables are the status page's own models
(`decent.web.views`) printed as text. `lookup` asks any LISP Map-Resolver over
UDP 4342 with an ECM'd Map-Request, as `lig` does. `init` writes a commented
starter config that `decent run` accepts. Every failure is one line on stderr
and a non-zero exit: 1 when the node or resolver fails, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any, Final

from decent.config import ConfigError, load_config
from decent.peer.mapserver import locator_dict
from decent.web import views
from decent.wire import (
    Action,
    DecodeError,
    Eid,
    EncapsulatedControlMessage,
    IPAddress,
    MapRecord,
    MapReply,
    MapRequest,
    RequestRecord,
    address_text,
    decode,
    parse_eid,
)

DEFAULT_NODE: Final = "http://127.0.0.1:8080"
DEFAULT_GROUP: Final = "233.252.1.1"
CONTROL_PORT: Final = 4342
#: Ignore proxy settings: the node is local or on the overlay's underlay.
_HTTP: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ClientError(Exception):
    """A failure to report as one line; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- JSON API
def node_url(text: str) -> str:
    text = text.strip().rstrip("/")
    return text if "://" in text else f"http://{text}"


def fetch(node: str, path: str, timeout: float = 5.0) -> Any:
    """GET a JSON API path of the node; ClientError when that fails."""
    base = node_url(node)
    url = base + path
    try:
        with _HTTP.open(url, timeout=timeout) as resp:
            data = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        try:
            reason = json.loads(body).get("error") or exc.reason
        except (ValueError, AttributeError):
            reason = exc.reason
        raise ClientError(f"{url}: HTTP {exc.code}: {reason}") from None
    except urllib.error.URLError as exc:
        why = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise ClientError(
            f"cannot reach the node at {base} ({why}); is `decent run` running? "
            "point --node at its [web] listen address"
        ) from None
    except (TimeoutError, OSError) as exc:
        raise ClientError(f"no answer from the node at {base} ({exc})") from None
    try:
        return json.loads(data)
    except ValueError:
        raise ClientError(f"{url} did not answer JSON; is it a decent node?") from None


# ---------------------------------------------------------------- text tables
def cell_text(c: views.Cell) -> str:
    lines = c.get("lines")
    if lines is not None:
        return ", ".join(str(x) for x in lines)
    return str(c.get("text", ""))


def text_table(block: views.Block) -> str:
    """A page table (views model) as aligned text columns."""
    head = [cell_text(c) for c in block["columns"]]
    rows = [[cell_text(c) for c in r["cells"]] for r in block["rows"]]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, *rows]
    ]
    if not rows:
        lines.append(block.get("empty", ""))
    if block.get("more"):
        lines.append(f"{block['more']} more not shown: {block['more_hint']}")
    return "\n".join(lines)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _status_text(node: dict[str, Any], peers: list[dict[str, Any]]) -> str:
    h = views.header(node)
    counters: dict[str, int] = node.get("counters", {})
    out = [
        f"node {h['name']}  rloc {h['rloc']}  mode {h['mode']}  group {h['group']}"
        f"  instance-id {node.get('instance_id', 0)}",
        f"uptime {h['uptime']}  health {h['health']}  xtr-id {node.get('xtr_id')}",
        f"holds {h['counts']}",
        "",
        "Peers",
        text_table(views.peers_table(peers)),
        "",
    ]
    kinds = sorted(
        {k.partition(".")[2] for k in counters if k.startswith(("rx.", "tx."))}
    )
    if kinds:
        rows = [
            {
                "cells": [
                    {"text": k},
                    {"text": counters.get(f"rx.{k}", 0)},
                    {"text": counters.get(f"tx.{k}", 0)},
                ]
            }
            for k in kinds
        ]
        table = {
            "columns": [{"text": "Messages"}, {"text": "in"}, {"text": "out"}],
            "rows": rows,
        }
        out += [text_table(table), ""]
    drops = {k: v for k, v in counters.items() if k.startswith(("drop.", "reject."))}
    out.append(
        "drops: " + (", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "none")
    )
    return "\n".join(out)


def cmd_status(args: argparse.Namespace) -> int:
    node = fetch(args.node, "/api/node")
    peers = fetch(args.node, "/api/peers")
    if args.json:
        _print_json({"node": node, "peers": peers})
    else:
        print(_status_text(node, peers))
    return 0


def _table_command(
    path: str, table: Callable[[list[dict[str, Any]]], views.Block]
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        data = fetch(args.node, path)
        if args.json:
            _print_json(data)
        else:
            print(text_table(table(data)))
        return 0

    return run


# ---------------------------------------------------------------- lookup
def map_request(
    eid: Eid, itr: IPAddress, sport: int, nonce: int, resolver: IPAddress
) -> bytes:
    """An ECM'd Map-Request for eid from an ITR at itr:sport (RFC 9301 5.8),
    the form every Map-Resolver accepts; the Map-Reply comes to itr:sport."""
    addr, mask = eid.to_wire()
    request = MapRequest(nonce, (RequestRecord(addr, mask),), (itr,))
    # The inner header goes to the EID, as lig does, where the families match;
    # otherwise (names, other family) to the resolver, which reads the record.
    inner_dst: IPAddress = resolver
    target = eid.group if eid.group is not None else eid.address
    if isinstance(target, IPv4Address | IPv6Address) and target.version == itr.version:
        inner_dst = target
    return EncapsulatedControlMessage(
        request, itr, inner_dst, sport, CONTROL_PORT
    ).encode()


def _action(value: int) -> str:
    try:
        return Action(value).name.lower().replace("_", "-")
    except ValueError:
        return str(value)


def record_dict(rec: MapRecord) -> dict[str, Any]:
    try:
        eid = str(Eid.from_wire(rec.eid, rec.mask_len))
    except ValueError:
        eid = f"{address_text(rec.eid)}/{rec.mask_len}"
    return {
        "eid": eid,
        "ttl": rec.ttl,
        "authoritative": rec.authoritative,
        "negative": not rec.locators,
        "action": _action(rec.action),
        "rlocs": [locator_dict(loc) for loc in rec.locators],
    }


def lookup_text(result: dict[str, Any]) -> str:
    out = [
        f"Send map-request to {result['resolver']} for {result['query']} ...",
        f"Received map-reply from {result['from']} with rtt {result['rtt']:.4f} secs",
        "",
        f"Mapping entries for EID {result['query']}:",
    ]
    for rec in result["records"]:
        head = f"{rec['eid']}, record ttl: {rec['ttl']} minutes"
        head += f", auth bit: {int(rec['authoritative'])}"
        if rec["negative"]:
            out.append(f"{head}, negative, action: {rec['action']}")
            continue
        out.append(head)
        rows = []
        for loc in rec["rlocs"]:
            for i, line in enumerate(views.locator_lines(loc)):
                first = i == 0
                rows.append(
                    {
                        "cells": [
                            {"text": line},
                            {
                                "text": ("up" if loc["reachable"] else "down")
                                if first
                                else ""
                            },
                            {
                                "text": f"{loc['priority']}/{loc['weight']}"
                                if first
                                else ""
                            },
                            {
                                "text": f"{loc['m_priority']}/{loc['m_weight']}"
                                if first
                                else ""
                            },
                        ]
                    }
                )
        table = {
            "columns": [
                {"text": "Locator"},
                {"text": "State"},
                {"text": "Priority/Weight"},
                {"text": "Multicast P/W"},
            ],
            "rows": rows,
        }
        out.extend("  " + line for line in text_table(table).splitlines())
    return "\n".join(out)


def _local_address(resolver: IPAddress, port: int) -> IPAddress:
    family = socket.AF_INET6 if resolver.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((str(resolver), port))  # no packet: picks the route
        except OSError as exc:
            raise ClientError(f"no route to {resolver} ({exc.strerror})") from None
        return ip_address(probe.getsockname()[0])


def lookup(
    eid: Eid,
    resolver: IPAddress,
    port: int = CONTROL_PORT,
    *,
    attempts: int = 3,
    timeout: float = 2.0,
) -> dict[str, Any]:
    """Ask resolver:port for eid; the first Map-Reply whose nonce is ours."""
    itr = _local_address(resolver, port)
    family = socket.AF_INET6 if itr.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((str(itr), 0))
        sport = sock.getsockname()[1]
        sent: dict[int, float] = {}
        for _ in range(attempts):
            nonce = secrets.randbits(64)
            data = map_request(eid, itr, sport, nonce, resolver)
            sent[nonce] = time.monotonic()
            try:
                sock.sendto(data, (str(resolver), port))
            except OSError as exc:
                raise ClientError(
                    f"cannot send to {resolver}:{port} ({exc.strerror})"
                ) from None
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    payload, src = sock.recvfrom(65535)
                except TimeoutError:
                    break
                except OSError:  # ICMP port unreachable from a closed port
                    continue
                try:
                    reply = decode(payload)
                except DecodeError:
                    continue
                if isinstance(reply, MapReply) and reply.nonce in sent:
                    rtt = time.monotonic() - sent[reply.nonce]
                    return {
                        "resolver": f"{resolver}:{port}",
                        "query": str(eid),
                        "from": f"{src[0]}:{src[1]}",
                        "rtt": round(rtt, 6),
                        "records": [record_dict(r) for r in reply.records],
                    }
    raise ClientError(
        f"no Map-Reply from {resolver}:{port} for {eid} "
        f"after {attempts} tries of {timeout:g} s"
    )


def cmd_lookup(args: argparse.Namespace) -> int:
    try:
        eid = parse_eid(args.eid)
    except ValueError as exc:
        raise ClientError(f"bad EID: {exc}", 2) from None
    port = args.port
    if args.via:
        try:
            resolver = ip_address(args.via)
        except ValueError:
            raise ClientError(
                f"--via {args.via!r} is not an IP address; give the "
                "Map-Resolver's RLOC, e.g. --via 198.18.43.11",
                2,
            ) from None
    else:
        node = fetch(args.node, "/api/node")
        resolver = ip_address(node["rloc"])
        port = port or int(node.get("control_port", CONTROL_PORT))
    result = lookup(
        eid,
        resolver,
        port or CONTROL_PORT,
        attempts=args.attempts,
        timeout=args.timeout,
    )
    if args.json:
        _print_json(result)
    else:
        print(lookup_text(result))
    return 0


# ---------------------------------------------------------------- init
def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string (json escapes are TOML's)


def _guess_rloc(targets: list[str]) -> str:
    for target in targets:
        try:
            addr = ip_address(target)
            family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((target, CONTROL_PORT))  # no packet: picks the route
                found = ip_address(s.getsockname()[0])
            if not found.is_unspecified:
                return str(found)
        except (OSError, ValueError):
            continue
    raise ClientError(
        "cannot tell this host's address toward the group or seeds; "
        "pass --rloc ADDRESS or --interface NAME",
        2,
    )


def _comment(line: str, note: str) -> str:
    return f"{line.ljust(30)} # {note}" if note else line


def config_text(
    *,
    name: str,
    rloc: str | None,
    interface: str | None,
    state_dir: str,
    group: str,
    mode: str,
    seeds: list[str],
    key: str,
    eids: list[str],
    listen: str,
) -> str:
    """The starter config `decent init` writes (every key is in the README)."""
    where = (
        _comment(f"interface = {_toml(interface)}", "take the RLOC from this interface")
        if interface
        else _comment(
            f"rloc = {_toml(rloc)}", 'this node\'s locator (or interface = "eth0")'
        )
    )
    lines = [
        "# decent node configuration, written by `decent init`.",
        "# Run it with:  decent run --config <this file>",
        "# Every key is described in the README (Running a node).",
        "",
        "[node]",
        _comment(f"name = {_toml(name)}", "shown on pages; registered as a name EID"),
        where,
        _comment(
            f"state_dir = {_toml(state_dir)}", "xTR-ID, nonces, registration snapshot"
        ),
        '# log_level = "info"           # debug, info, warning, error',
        "",
        "[decent]",
        _comment(f"group = {_toml(group)}", "the mapping system: same on every member"),
        _comment(f"mode = {_toml(mode)}", '"replicate" (any underlay) or "multicast"'),
        _comment(
            f"seeds = {_toml(seeds)}", "members known at start; [] for the first node"
        ),
        _comment(f"key = {_toml(key)}", "the group's shared key: same on every member"),
        "instance_id = 0",
        "# ttl = 3                       # minutes a registration lives unrefreshed",
        "# register_interval = 60        # seconds between periodic registrations",
        "",
    ]
    if eids:
        for eid in eids:
            lines += [
                _comment("[[database]]", "an EID-prefix this node registers"),
                f"eid = {_toml(eid)}",
                "",
            ]
    else:
        lines += [
            "# [[database]]                 # an EID-prefix this node registers",
            '# eid = "10.1.0.0/24"',
            "",
        ]
    lines += [
        "[web]",
        _comment(f"listen = {_toml(listen)}", "status page and JSON API"),
        '# admin_token = "..."          # lets remote clients clear the map-cache',
        "",
    ]
    return "\n".join(lines)


def cmd_init(args: argparse.Namespace) -> int:
    name = args.name or socket.gethostname().split(".")[0] or "node"
    try:
        group = ip_address(args.group)
    except ValueError:
        raise ClientError(f"--group {args.group!r} is not an IP address", 2) from None
    if not group.is_multicast:
        raise ClientError(
            f"--group {group} is not a multicast address; use one such as "
            f"{DEFAULT_GROUP}",
            2,
        )
    for text in [*args.seed, *([args.rloc] if args.rloc else [])]:
        try:
            ip_address(text)
        except ValueError:
            raise ClientError(f"{text!r} is not an IP address", 2) from None
    for eid in args.eid:
        try:
            parse_eid(eid)
        except ValueError as exc:
            raise ClientError(f"--eid {eid!r}: {exc}", 2) from None
    rloc = None
    if not args.interface:
        rloc = args.rloc or _guess_rloc([*args.seed, str(group)])
    key = args.key
    generated = key is None
    if key is None:
        key = secrets.token_urlsafe(18)
    state_dir = args.state_dir or (
        "/var/lib/decent"
        if os.geteuid() == 0
        else str(Path("~/.local/state/decent").expanduser() / name)
    )
    text = config_text(
        name=name,
        rloc=rloc,
        interface=args.interface,
        state_dir=state_dir,
        group=str(group),
        mode=args.mode,
        seeds=list(args.seed),
        key=key,
        eids=list(args.eid),
        listen=args.listen,
    )
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    if path.exists() and not args.force:
        raise ClientError(f"{path} exists; pass --force to overwrite it", 2)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise ClientError(f"cannot write {path} ({exc.strerror})") from None
    try:
        load_config(path)
    except ConfigError as exc:
        raise ClientError(f"wrote {path}, but it does not load: {exc}", 2) from None
    host, _, port = args.listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    print(f"wrote {path}: node {name}, group {group} ({args.mode})")
    if generated:
        print(
            "a new group key was generated; every member needs the same key "
            "(pass --key to join an existing group)"
        )
    print(f"run it:    decent run --config {path}")
    print(f"then:      decent status --node http://{host}:{port}")
    return 0


# ---------------------------------------------------------------- parser
def _guarded(
    func: Callable[[argparse.Namespace], int], prog: str
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ClientError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return exc.code

    return run


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--node",
        default=os.environ.get("DECENT_NODE", DEFAULT_NODE),
        metavar="URL",
        help="the node's status page / JSON API "
        f"(default $DECENT_NODE or {DEFAULT_NODE})",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts")


def add_client_commands(sub: Any) -> None:
    """Register status, sites, peers, map-cache, lookup and init."""
    p = sub.add_parser("status", help="the node, its peers, counts and health")
    _client_options(p)
    p.set_defaults(func=_guarded(cmd_status, "decent status"))
    for name, path, table, what in (
        ("sites", "/api/sites", views.sites_table, "every registration held"),
        ("peers", "/api/peers", views.peers_table, "the peer group's members"),
        ("map-cache", "/api/map-cache", views.cache_table, "the ITR map-cache"),
    ):
        p = sub.add_parser(name, help=what)
        _client_options(p)
        p.set_defaults(func=_guarded(_table_command(path, table), f"decent {name}"))

    p = sub.add_parser(
        "lookup",
        help="ask a Map-Resolver for an EID over UDP, like lig",
        description="Send an ECM'd Map-Request for EID to a Map-Resolver "
        "(default: the node at --node) and print the Map-Reply and its RTT.",
    )
    p.add_argument("eid", metavar="EID", help="1.1.1.1, 10.0.0.0/8, [iid]addr, 'name'")
    p.add_argument("--via", metavar="RLOC", help="the Map-Resolver's address")
    p.add_argument("--port", type=int, default=0, help="its control port (4342)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per try")
    p.add_argument("--attempts", type=int, default=3, help="tries (default 3)")
    _client_options(p)
    p.set_defaults(func=_guarded(cmd_lookup, "decent lookup"))

    p = sub.add_parser(
        "init",
        help="write a commented starter config",
        description="Write a starter config for `decent run` and say how to run it.",
    )
    p.add_argument("--name", help="node name (default: the host name)")
    p.add_argument("--eid", action="append", default=[], help="EID-prefix; repeat")
    p.add_argument("--group", default=DEFAULT_GROUP, help="the group address")
    p.add_argument("--seed", action="append", default=[], help="a member's RLOC")
    p.add_argument("--rloc", help="this node's RLOC (default: guessed from routes)")
    p.add_argument("--interface", help="take the RLOC from this interface instead")
    p.add_argument("--mode", choices=("replicate", "multicast"), default="replicate")
    p.add_argument("--key", help="the group's shared key (default: a new one)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="[web] listen")
    p.add_argument("--state-dir", help="[node] state_dir")
    p.add_argument(
        "--output", "-o", default="node.toml", help="where to write ('-': stdout)"
    )
    p.add_argument("--force", action="store_true", help="overwrite --output")
    p.set_defaults(func=_guarded(cmd_init, "decent init"))
