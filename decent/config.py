"""The node's TOML configuration: loading, validation and clear errors."""

from __future__ import annotations

import base64
import binascii
import socket
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path
from typing import Any

from decent.peer.config import (
    ENCRYPT_MODES,
    NAT_MODES,
    WIRE_FORMS,
    Addr,
    AllowedPrefix,
    Limits,
    OutsideMapServer,
    PullConfig,
    Site,
)
from decent.peer.mapping.pullhash import HASHES, LISPERS, RFC9962
from decent.peer.mapping.push_config import (
    DEFAULT_PRIORITY,
    DEFAULT_WEIGHT,
    GROUP_SITE,
)
from decent.web.limits import WebLimits
from decent.wire import AlgorithmId, Eid, IPAddress, netlink, parse_eid
from decent.wire.crypto import SUITES
from decent.wire.trust import Certificate

#: [node] log_level and log_format values (decent.net.logtext writes them).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_LEVELS_TEXT = ", ".join(f'"{level}"' for level in LOG_LEVELS)
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who wrote the file."""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything `decent run` reads from its config file (see README)."""

    path: Path
    name: str
    rlocs: tuple[IPAddress, ...]
    interface: str | None
    state_dir: Path
    #: None: no group, the node is only a classic xTR of [xtr]'s systems.
    group: IPAddress | None
    mode: str
    seeds: tuple[IPAddress, ...]
    #: The group's key; b"" without a group.
    key: bytes
    instance_id: int
    database: tuple[Eid, ...]
    web_host: str
    web_port: int
    control_port: int = 4342
    data_port: int = 4341
    ttl: int = 3
    register_interval: float = 60.0
    group_lookup_interval: float = 30.0
    multicast_ttl: int = 1
    map_reply_rate: float = 1000.0
    map_reply_burst: float = 2000.0
    admin_token: str | None = None
    log_level: str = "info"
    #: How log lines are written (decent.net.logtext): "text" or "json".
    log_format: str = "text"
    #: Event lines a second per kind (event and level), and the burst
    #: (decent.net.logtext.LineBudget).
    log_rate: float = 20.0
    log_burst: int = 100
    #: (priority, weight) of each RLOC, in `rlocs` order; empty: 1/100 each.
    rloc_policy: tuple[tuple[int, int], ...] = ()
    #: LISP-MN: this node's own EIDs get a small record TTL (protocol notes 8).
    mobile: bool = False
    #: Database EIDs with their own `ttl` (minutes); the rest use the default.
    database_ttls: tuple[tuple[Eid, int], ...] = ()
    #: [web] limits: connections, head/idle/request time, live clients, Host.
    web_limits: WebLimits = field(default_factory=WebLimits)
    #: [web] traffic_sample_seconds: how often the /mesh page's traffic
    #: history samples the peers' counters (decent.net.traffic).
    traffic_sample_seconds: float = 10.0
    #: [limits]: every bound on what a peer can make the node spend.
    limits: Limits = field(default_factory=Limits)
    #: [decent] auth: the Map-Register/Notify algorithms accepted.
    auth_algorithms: frozenset[int] = frozenset({AlgorithmId.HMAC_SHA_256_128})
    #: [[site]]: plain xTRs' sites, relayed to the group.
    sites: tuple[Site, ...] = ()
    #: [xtr] map_servers: outside Map-Servers our IP EIDs are registered to.
    outside_map_servers: tuple[OutsideMapServer, ...] = ()
    #: [xtr] map_resolvers: outside Map-Resolvers, asked in ECMs.
    outside_map_resolvers: tuple[Addr, ...] = ()
    #: [decent] wire: how group registrations are written (WIRE_FORMS).
    wire_form: str = "rfc8060"
    #: [decent] reliable: registrations over TCP sessions (draft-ietf-lisp-
    #: map-server-reliable-transport); reliable_peers: per-peer exceptions.
    reliable: bool = False
    reliable_peers: tuple[tuple[IPAddress, bool], ...] = ()
    #: [decent] reliable_keepalive: seconds a session may be silent before
    #: TCP keepalive probes it (three unanswered probes end it).
    reliable_keepalive: float = 15.0
    #: [decent] nat: "auto" finds out whether we are behind a NAT and then
    #: registers through a relay member; relay: offer to be one for others;
    #: nat_keepalive / nat_recheck: seconds between keepalives to our relay,
    #: and between checks while we are reachable directly.
    nat: str = "auto"
    relay: bool = False
    nat_keepalive: float = 20.0
    nat_recheck: float = 600.0
    #: [node] advertise: addresses a static NAT or port forward gives us.
    advertise: tuple[IPAddress, ...] = ()
    #: [decent] mode = "pull": modulus, dns_suffix, hash_mask, hash,
    #: lookup_lengths, dns_refresh, dns_min_ttl (RFC 9962 5); None in push.
    pull: PullConfig | None = None
    #: [decent] dns_servers: who resolves pull mode's names (empty: the
    #: system's resolv.conf).
    dns_servers: tuple[IPAddress, ...] = ()
    #: [decent] core / layer_prefixes: `group` is a layer of the core
    #: seed-group whose members are `core` (RFC 9962 4.4), serving these.
    core: tuple[IPAddress, ...] = ()
    layer_prefixes: tuple[Eid, ...] = ()
    #: [trust] mesh_key: the mesh authority's Ed25519 public key (raw 32
    #: bytes); None: no node identities, the group key alone admits members.
    trust_mesh_key: bytes | None = None
    #: [trust] certificate: this node's certificate, encoded (it verifies
    #: with trust_mesh_key, names this node and grants every [[database]]).
    trust_certificate: bytes | None = None
    # ---- [dataplane] (issue 5)
    dataplane: bool = False
    tun: str = "decent0"
    tun_mtu: int = 1440
    route_table: int = 4341
    routes: tuple[str, ...] = ()
    probe_interval: float = 10.0
    negative_action: str = "drop"
    petr: IPAddress | None = None
    queue_size: int = 64
    underlay_mtu: int = 1500
    max_routes: int = 1024
    #: RFC 8061 encryption of the data plane: "required", "preferred", "off".
    encrypt: str = "required"
    cipher: str = "aes-128-gcm"
    rekey_seconds: float = 86_400.0
    rekey_packets: int = 1 << 32


_SECTIONS = {
    "node": {
        "name",
        "rloc",
        "rlocs",
        "interface",
        "state_dir",
        "log_level",
        "log_format",
        "log_rate",
        "log_burst",
        "mobile",
        "advertise",
    },
    "decent": {
        "group",
        "mode",
        "seeds",
        "key",
        "instance_id",
        "control_port",
        "data_port",
        "ttl",
        "register_interval",
        "group_lookup_interval",
        "multicast_ttl",
        "map_reply_rate",
        "map_reply_burst",
        "auth",
        "wire",
        "reliable",
        "reliable_peers",
        "reliable_keepalive",
        "nat",
        "relay",
        "nat_keepalive",
        "nat_recheck",
        "modulus",
        "dns_suffix",
        "hash_mask",
        "hash",
        "lookup_lengths",
        "dns_servers",
        "dns_refresh",
        "dns_min_ttl",
        "core",
        "layer_prefixes",
    },
    "limits": {f for f in Limits.__dataclass_fields__ if f != "underlay_mtu"},
    "database": {"eid", "ttl"},
    "site": {
        "name",
        "key",
        "algorithm",
        "eids",
        "accept_more_specifics",
        "nonces",
        "allow_unauthenticated",
    },
    "xtr": {"map_servers", "map_resolvers"},
    "web": {
        "listen",
        "admin_token",
        "max_connections",
        "header_timeout",
        "idle_timeout",
        "request_timeout",
        "max_live_clients",
        "allowed_hosts",
        "traffic_sample_seconds",
    },
    "trust": {"mesh_key", "certificate"},
    "dataplane": {
        "enabled",
        "tun",
        "mtu",
        "table",
        "routes",
        "probe_interval",
        "negative_action",
        "petr",
        "queue_size",
        "underlay_mtu",
        "max_routes",
        "encrypt",
        "cipher",
        "rekey_seconds",
        "rekey_packets",
    },
}


#: Sections written as arrays of tables, one table per entry.
_ARRAYS = ("database", "site")
#: The keys of the tables inside a section's lists.
_NESTED = {
    ("xtr", "map_servers"): ("address", "key", "algorithm", "port"),
    ("xtr", "map_resolvers"): ("address", "port"),
}

_RLOC_KEYS = ("address", "priority", "weight")
_RLOC_EXAMPLE = '{address = "198.18.1.1", priority = 1, weight = 100}'


class _Reader:
    """Typed access to one table, with errors naming file, key and fix."""

    def __init__(
        self, path: Path, section: str, table: dict[str, Any], prefix: str = ""
    ) -> None:
        self.path, self.section, self.table = path, section, table
        #: Names the table inside its section, e.g. "rlocs #2 ".
        self.prefix = prefix

    def fail(self, key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(
            f"{self.path}: [{self.section}] {self.prefix}{key}: {problem}; {fix}"
        )

    def get(self, key: str, kind: type, default: Any = None, *, fix: str = "") -> Any:
        if key not in self.table:
            if default is None:
                raise self.fail(key, "missing", fix or f"add {key} = ...")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(
                key,
                f"expected {kind.__name__}, got {type(value).__name__}",
                fix or f"write {key} as a {kind.__name__}",
            )
        return value

    def address(self, key: str, value: str) -> IPAddress:
        try:
            return ip_address(value)
        except ValueError:
            raise self.fail(
                key,
                f"{value!r} is not an IP address",
                'write an IPv4 or IPv6 address such as "198.18.42.11"',
            ) from None

    def port(self, key: str, default: int) -> int:
        value: int = self.get(key, int, default)
        if not 1 <= value <= 65535:
            raise self.fail(key, f"port {value} out of range", "use 1 to 65535")
        return value


def interface_addresses(name: str) -> list[IPAddress]:
    """The usable addresses of a network interface, as roaming reads them
    later (decent.net.kernel; config sits above the shell, but the client,
    which imports config, must not pull it in): one netlink address dump
    through the shared codec. None if it does not exist or netlink fails."""
    try:
        index = socket.if_nametoindex(name)
        with socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE
        ) as nl:
            nl.settimeout(1.0)
            nl.bind((0, 0))
            nl.send(netlink.dump_request())
            dumped = netlink.read_dump(partial(nl.recv, 1 << 16))
    except OSError:
        return []
    return netlink.usable_addresses(dumped.messages, index)


def load_config(path: str | Path, *, now: float | None = None) -> Config:
    """Read and validate a config file; raise ConfigError naming the key.

    `now` (Unix time, default the wall clock) is when [trust] certificate
    must still be valid."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; create it with `decent init` or pass --config"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    _check_keys(path, raw)
    node = _Reader(path, "node", raw.get("node", {}))
    decent = _Reader(path, "decent", raw.get("decent", {}))
    web = _Reader(path, "web", raw.get("web", {}))

    name = node.get("name", str, fix='add name = "n1" (shown on pages, a name EID)')
    if not name or len(name) > 255 or not name.isascii() or not name.isprintable():
        raise node.fail(
            "name",
            f"{name!r} is not a usable name",
            "use printable ASCII, 1 to 255 characters",
        )
    interface = node.get("interface", str, "") or None
    policy: tuple[tuple[int, int], ...] = ()
    if "rloc" in node.table or "rlocs" in node.table:
        key = "rlocs" if "rlocs" in node.table else "rloc"
        items = node.get("rlocs", list) if key == "rlocs" else [node.table["rloc"]]
        entries = [_rloc(node, key, i, v) for i, v in enumerate(items, start=1)]
        rlocs = tuple(address for address, _ in entries)
        policy = tuple(pw for _, pw in entries)
        if policy and all(priority == 255 for priority, _ in policy):
            raise node.fail(
                key,
                "every RLOC has priority 255, which no ITR may use for unicast "
                "(RFC 9301 5.4)",
                "give at least one a priority below 255 (lower is preferred)",
            )
    elif interface:
        rlocs = tuple(interface_addresses(interface))
        if not rlocs:
            raise node.fail(
                "interface",
                f"{interface!r} has no usable address",
                "name an interface that has an address, or set rloc",
            )
    else:
        raise node.fail(
            "rloc", "missing", 'add rloc = "198.18.42.11" or interface = "eth0"'
        )
    if not rlocs:
        raise node.fail("rlocs", "empty", "list at least one RLOC address")
    state_dir = Path(node.get("state_dir", str, "/var/lib/decent"))
    log_level = node.get("log_level", str, "info")
    if log_level.lower() not in LOG_LEVELS:
        raise node.fail(
            "log_level", f"{log_level!r} is no level", f"use one of {LOG_LEVELS_TEXT}"
        )
    log_format = node.get("log_format", str, "text")
    if log_format not in LOG_FORMATS:
        raise node.fail(
            "log_format",
            f"{log_format!r} is no format",
            'use "text" (one line per event) or "json" (for log shippers)',
        )
    log_rate = node.get("log_rate", float, 20.0)
    if not log_rate > 0:
        raise node.fail(
            "log_rate", f"{log_rate:g} would log nothing", "use lines a second above 0"
        )
    log_burst = node.get("log_burst", int, 100)
    if log_burst < 1:
        raise node.fail("log_burst", f"{log_burst} holds no line", "use at least 1")
    mobile = node.get("mobile", bool, False)

    xtr_table = raw.get("xtr", {})
    mode = decent.get("mode", str, "replicate")
    if mode not in ("replicate", "multicast", "pull"):
        raise decent.fail(
            "mode",
            f"{mode!r} is not a mode",
            'use "replicate" (any underlay), "multicast", or "pull" (Map-Server '
            "sets named in DNS)",
        )
    iid = decent.get("instance_id", int, 0)
    if not 0 <= iid < 1 << 24:
        raise decent.fail("instance_id", f"{iid} out of range", "use 0 to 16777215")
    pull = _pull(decent, iid) if mode == "pull" else None
    group = (
        None
        if pull is not None
        else _group(
            decent,
            rlocs,
            outside=bool(
                xtr_table.get("map_servers") or xtr_table.get("map_resolvers")
            ),
        )
    )
    seeds = tuple(
        decent.address("seeds", str(s)) for s in decent.get("seeds", list, [])
    )
    key = ""
    if group is not None or pull is not None:
        key = decent.get("key", str, fix='add key = "..." (the group\'s shared secret)')
        if not key:
            raise decent.fail("key", "empty", "set a shared secret for the group")
    ttl = decent.get("ttl", int, 3)
    if not 1 <= ttl <= 1440:
        raise decent.fail("ttl", f"{ttl} out of range", "use 1 to 1440 minutes")

    register_interval = decent.get("register_interval", float, 60.0)
    if not register_interval >= 1.0:  # NaN too
        raise decent.fail(
            "register_interval",
            f"{register_interval:g} s is too short",
            "use at least 1 second (RFC 9301 8.2 suggests 60)",
        )
    reply_rate = decent.get("map_reply_rate", float, 1000.0)
    if not reply_rate > 0:
        raise decent.fail(
            "map_reply_rate",
            f"{reply_rate:g} would never answer a Map-Request",
            "use Map-Replies per second per ITR-RLOC above 0, e.g. 1000",
        )
    reply_burst = decent.get("map_reply_burst", float, 2000.0)
    if not reply_burst >= 1.0:
        raise decent.fail(
            "map_reply_burst",
            f"{reply_burst:g} holds less than one Map-Reply",
            "use at least 1, e.g. twice map_reply_rate",
        )

    database: list[Eid] = []
    ttls = []
    for i, table in enumerate(raw.get("database", [])):
        db = _Reader(path, f"database #{i + 1}", table)
        text = db.get("eid", str, fix='add eid = "192.0.2.1/32"')
        try:
            eid = parse_eid(text, iid)
        except ValueError as exc:
            raise db.fail(
                "eid", str(exc), 'write a prefix such as "192.0.2.1/32"'
            ) from None
        if eid in database:
            # The same EID twice would register one mapping with whichever
            # TTL came last: say so instead of picking silently.
            first = database.index(eid) + 1
            raise db.fail(
                "eid",
                f"{eid} is already [[database]] #{first}",
                "list each EID-prefix once",
            )
        database.append(eid)
        if "ttl" in db.table:
            # Registrations cannot lapse however short this is next to
            # register_interval: the node registers at least three times per
            # shortest TTL (decent.peer.node, _register_tick).
            eid_ttl = db.get("ttl", int)
            if not 1 <= eid_ttl <= 1440:
                raise db.fail("ttl", f"{eid_ttl} out of range", "use 1 to 1440 minutes")
            ttls.append((eid, eid_ttl))

    trust = None
    if "trust" in raw:
        # Certificates expire in Unix time, so this is the wall clock's to say.
        when = time.time() if now is None else now  # noqa: TID251
        trust = _trust(_Reader(path, "trust", raw["trust"]), name, group, when)
        _granted(path, database, trust[1])

    auth = _auth(decent)
    wire_form = decent.get("wire", str, "rfc8060")
    if wire_form not in WIRE_FORMS:
        raise decent.fail(
            "wire",
            f"{wire_form!r} is not a wire form",
            'use "rfc8060" (the default) or "lispers.net" (group registrations '
            "as lispers.net writes them)",
        )
    reliable = decent.get("reliable", bool, False)
    keepalive = decent.get("reliable_keepalive", float, 15.0)
    if not 1.0 <= keepalive <= 7200.0:
        raise decent.fail(
            "reliable_keepalive", f"{keepalive:g} s out of range", "use 1 to 7200"
        )
    overrides = decent.get("reliable_peers", dict, {})
    reliable_peers = []
    for peer, on in overrides.items():
        if not isinstance(on, bool):
            raise decent.fail(
                "reliable_peers",
                f"{peer!r} = {on!r} is not true or false",
                f'write "{peer}" = true (or false) in [decent.reliable_peers]',
            )
        reliable_peers.append((decent.address("reliable_peers", peer), on))
    nat = decent.get("nat", str, "auto")
    if nat not in NAT_MODES:
        raise decent.fail(
            "nat",
            f"{nat!r} is not a NAT mode",
            'use "auto" (find out, and go through a relay behind a NAT) or "off"',
        )
    nat_keepalive = decent.get("nat_keepalive", float, 20.0)
    nat_recheck = decent.get("nat_recheck", float, 600.0)
    for setting, value in (
        ("nat_keepalive", nat_keepalive),
        ("nat_recheck", nat_recheck),
    ):
        if not 1.0 <= value <= 86_400.0:
            raise decent.fail(setting, f"{value:g} s out of range", "use 1 to 86400")
    advertise = _advertise(node, rlocs, interface, decent.port("data_port", 4341))
    sites = _sites(path, raw.get("site", []), iid)
    # Our socket speaks the group's family (roaming puts it first), or
    # without a group the first RLOC's.
    family = group.version if group is not None else rlocs[0].version
    outside_servers, outside_resolvers = _xtr(path, xtr_table, family)

    # Protocol notes section 8: RLOC-probing by mobile nodes is discouraged
    # (the link may be slow, metered or asleep), so it is off unless asked for.
    dp = _dataplane(
        path, raw.get("dataplane", {}), probe_default=0.0 if mobile else 10.0
    )

    listen = web.get("listen", str, "127.0.0.1:8080")
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise web.fail(
            "listen", f"{listen!r} is not host:port", 'write listen = "0.0.0.0:8080"'
        )
    return Config(
        path=path,
        name=name,
        rlocs=rlocs,
        interface=interface,
        state_dir=state_dir,
        group=group,
        mode=mode,
        seeds=seeds,
        key=key.encode(),
        instance_id=iid,
        database=tuple(database),
        web_host=host.strip("[]") or "0.0.0.0",
        web_port=int(port_text),
        control_port=decent.port("control_port", 4342),
        data_port=decent.port("data_port", 4341),
        ttl=ttl,
        register_interval=register_interval,
        group_lookup_interval=decent.get("group_lookup_interval", float, 30.0),
        multicast_ttl=decent.get("multicast_ttl", int, 1),
        map_reply_rate=reply_rate,
        map_reply_burst=reply_burst,
        admin_token=web.get("admin_token", str, "") or None,
        log_level=log_level,
        log_format=log_format,
        log_rate=log_rate,
        log_burst=log_burst,
        rloc_policy=policy,
        mobile=mobile,
        database_ttls=tuple(ttls),
        limits=_limits(
            _Reader(path, "limits", raw.get("limits", {})),
            underlay_mtu=dp["underlay_mtu"],
            own_registrations=len(database)
            + (2 if group is not None else 1 if pull is not None else 0),
        ),
        auth_algorithms=auth,
        sites=sites,
        outside_map_servers=outside_servers,
        outside_map_resolvers=outside_resolvers,
        wire_form=wire_form,
        reliable=reliable,
        reliable_peers=tuple(reliable_peers),
        reliable_keepalive=keepalive,
        nat=nat,
        relay=decent.get("relay", bool, False),
        nat_keepalive=nat_keepalive,
        nat_recheck=nat_recheck,
        advertise=advertise,
        pull=pull,
        **_layer(decent, iid, group, rlocs),
        dns_servers=tuple(
            decent.address("dns_servers", str(a))
            for a in decent.get("dns_servers", list, [])
        ),
        web_limits=_web_limits(web),
        traffic_sample_seconds=_traffic_sample_seconds(web),
        trust_mesh_key=None if trust is None else trust[0],
        trust_certificate=None if trust is None else trust[1].encode(),
        **dp,
    )


def _advertise(
    node: _Reader, rlocs: tuple[IPAddress, ...], interface: str | None, port: int
) -> tuple[IPAddress, ...]:
    """[node] advertise: "203.0.113.5", "203.0.113.5:4341", "[2001:db8::5]:4341"
    or a list of them, at most one per family, each of a family we have an
    RLOC of. A LISP locator carries no port, so the forward must keep ours."""
    raw = node.table.get("advertise", [])
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise node.fail(
            "advertise", f"{raw!r} is not an address", 'write advertise = "203.0.113.5"'
        )
    if items and interface:
        raise node.fail(
            "advertise",
            "an advertised address is for a fixed RLOC, not one that roams",
            "set rloc instead of interface, or remove advertise",
        )
    out: dict[int, IPAddress] = {}
    for item in items:
        host, sep, port_text = item.rpartition(":")
        if not sep or "]" in port_text or (":" in host and not host.startswith("[")):
            host, port_text = item, ""
        if port_text and port_text != str(port):
            raise node.fail(
                "advertise",
                f"{item!r}: port {port_text} is not our data port {port}",
                f"forward ports {port} and {port + 1} unchanged (a LISP locator "
                "carries no port), and write the address alone",
            )
        address = node.address("advertise", host.strip("[]"))
        if address.version in out:
            raise node.fail(
                "advertise",
                f"two IPv{address.version} addresses",
                "give one per family",
            )
        if not any(r.version == address.version for r in rlocs):
            raise node.fail(
                "advertise",
                f"{address} is IPv{address.version} and no RLOC is",
                "advertise an address of your RLOC's family",
            )
        out[address.version] = address
    return tuple(out.values())


def _check_keys(path: Path, raw: dict[str, Any]) -> None:
    """Refuse unknown sections and keys, in tables inside lists too: a typo
    must not silently leave a setting at its default."""
    for section, value in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"{path}: unknown section [{section}]; "
                f"use {', '.join(sorted(_SECTIONS))}"
            )
        if section in _ARRAYS and not isinstance(value, list):
            raise ConfigError(
                f"{path}: [{section}] must be an array of tables; "
                f"write [[{section}]], once per entry"
            )
        if section not in _ARRAYS and isinstance(value, list):
            raise ConfigError(
                f"{path}: [{section}] must be a table; write [{section}] once"
            )
        for table in value if isinstance(value, list) else [value]:
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [{section}] must be a table")
            for key, item in table.items():
                if key not in _SECTIONS[section]:
                    raise ConfigError(
                        f"{path}: [{section}] {key}: unknown key; "
                        f"valid keys are {', '.join(sorted(_SECTIONS[section]))}"
                    )
                nested = _NESTED.get((section, key), ())
                entries = item if nested and isinstance(item, list) else []
                for i, entry in enumerate(entries, start=1):
                    for name in entry if isinstance(entry, dict) else ():
                        if name not in nested:
                            raise ConfigError(
                                f"{path}: [{section}] {key} #{i} {name}: "
                                f"unknown key; valid keys are {', '.join(nested)}"
                            )


_INVITE = "ask the mesh authority for a new invite (`decent mesh invite`)"


def _trust(
    r: _Reader, name: str, group: IPAddress | None, now: float
) -> tuple[bytes, Certificate]:
    """[trust]: the mesh authority's public key and this node's certificate,
    which must verify with it, name this node and still be valid."""
    if group is None:
        raise r.fail(
            "mesh_key",
            "set, but the node joins no group",
            "add [decent] group (and key), or remove [trust]",
        )
    mesh_key = _base64(
        r,
        "mesh_key",
        "copy mesh_key from the join token, or public_key from the mesh's mesh.toml",
    )
    if len(mesh_key) != 32:
        raise r.fail(
            "mesh_key",
            f"{len(mesh_key)} bytes, not an Ed25519 public key (32)",
            "copy mesh_key from the join token, or public_key from mesh.toml",
        )
    data = _base64(r, "certificate", f"paste the certificate as issued, or {_INVITE}")
    try:
        cert = Certificate.decode(data)
    except ValueError as exc:
        raise r.fail(
            "certificate",
            f"not a certificate ({exc})",
            f"paste the certificate as issued, or {_INVITE}",
        ) from None
    if not cert.verify(mesh_key):
        raise r.fail(
            "certificate",
            f"not signed by this mesh_key (it says mesh {cert.mesh!r})",
            "use the mesh_key of the mesh that issued it, or a certificate "
            "issued by this mesh's authority",
        )
    if cert.name != name:
        raise r.fail(
            "certificate",
            f"issued to node {cert.name!r}, but [node] name is {name!r}",
            f'set [node] name = "{cert.name}", or {_INVITE} for {name!r}',
        )
    if cert.not_after <= now:
        raise r.fail(
            "certificate",
            f"expired at {_utc(cert.not_after)}",
            _INVITE,
        )
    return mesh_key, cert


def _base64(r: _Reader, key: str, fix: str) -> bytes:
    text = r.get(key, str, fix=f'add {key} = "...": {fix}')
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise r.fail(key, "not base64", fix) from None


def _utc(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _granted(path: Path, database: list[Eid], cert: Certificate) -> None:
    """With [trust] every [[database]] EID lies inside one the certificate
    grants: its peers would refuse the others' registrations anyway."""
    for index, eid in enumerate(database, start=1):
        if not any(grant.contains(eid) for grant in cert.eids):
            granted = ", ".join(str(g) for g in cert.eids) or "none"
            raise _Reader(path, f"database #{index}", {}).fail(
                "eid",
                f"{eid} is outside this node's certificate (it grants {granted})",
                "the certificate does not grant it; ask the mesh authority for "
                "a certificate that does",
            )


def _group(
    decent: _Reader, rlocs: tuple[IPAddress, ...], *, outside: bool
) -> IPAddress | None:
    """[decent] group; None (no group) only when [xtr] names an outside
    Map-Server or Map-Resolver, and then nothing group-only may be set."""
    if "group" not in decent.table and outside:
        for key in ("key", "seeds"):
            if key in decent.table:
                raise decent.fail(
                    "group",
                    f"missing, though {key} is set",
                    'add group = "233.252.1.1" to join a group, or remove '
                    f"{key} to be only an xTR of the [xtr] mapping system",
                )
        return None
    group = decent.address(
        "group",
        decent.get(
            "group",
            str,
            fix='add group = "233.252.1.1" (the mapping system group), '
            "or name outside map_servers / map_resolvers in [xtr]",
        ),
    )
    if not group.is_multicast:
        raise decent.fail(
            "group",
            f"{group} is not a multicast address",
            "use a group such as 233.252.1.1 or ff05::1:1",
        )
    if not any(r.version == group.version for r in rlocs):
        raise decent.fail(
            "group",
            f"no RLOC of the group's IPv{group.version} family",
            "add an RLOC of that family or pick a group of yours",
        )
    return group


def _layer(
    decent: _Reader, iid: int, group: IPAddress | None, rlocs: tuple[IPAddress, ...]
) -> dict[str, Any]:
    """[decent] core and layer_prefixes (RFC 9962 4.4): both or neither."""
    core = tuple(decent.address("core", str(a)) for a in decent.get("core", list, []))
    texts = decent.get("layer_prefixes", list, [])
    if bool(core) != bool(texts) or (core and group is None):
        raise decent.fail(
            "core" if texts else "layer_prefixes",
            "a layer needs its group, the core's members and the EID-prefixes "
            "it serves",
            'set group (the layer\'s), core = ["<core member>", ...] and '
            'layer_prefixes = ["10.1.0.0/16"], or none of core and layer_prefixes',
        )
    if set(core) & set(rlocs):
        raise decent.fail(
            "core", "lists this node", "a layer member is not in the core group"
        )
    prefixes = []
    for text in texts:
        try:
            prefixes.append(parse_eid(str(text), iid))
        except ValueError as exc:
            raise decent.fail(
                "layer_prefixes", f"{text!r}: {exc}", 'write "10.1.0.0/16"'
            ) from None
    return {"core": core, "layer_prefixes": tuple(prefixes)}


#: Push-group settings that mean nothing in pull mode.
_PUSH_ONLY = (
    "group",
    "seeds",
    "group_lookup_interval",
    "multicast_ttl",
    "reliable",
    "relay",
)


def _pull(decent: _Reader, iid: int) -> PullConfig:
    """[decent] with mode = "pull" (RFC 9962 5): the Map-Server sets are
    `<index>.<dns_suffix>` for index 0 to modulus - 1."""
    for key in _PUSH_ONLY:
        if key in decent.table:
            raise decent.fail(
                key,
                "is a push-group setting and this is a pull-mode mapping system",
                f'remove {key}, or use mode = "replicate" to join a push group',
            )
    modulus = decent.get("modulus", int, fix="add modulus = 4 (how many sets)")
    if not 1 <= modulus <= 4096:
        raise decent.fail("modulus", f"{modulus} out of range", "use 1 to 4096")
    suffix = decent.get(
        "dns_suffix", str, fix='add dns_suffix = "map-server.example.net"'
    ).strip(".")
    labels = suffix.split(".")
    if not suffix or len(suffix) > 240 or not all(0 < len(x) < 64 for x in labels):
        raise decent.fail(
            "dns_suffix",
            f"{suffix!r} is not a DNS name",
            'write a domain such as "map-server.example.net"',
        )
    mask = decent.get("hash_mask", int, 0)
    if not 0 <= mask <= 255:
        raise decent.fail(
            "hash_mask", f"{mask} out of range", "use 0 (all of it) to 255 bytes"
        )
    algorithm = decent.get("hash", str, RFC9962)
    if algorithm not in HASHES:
        raise decent.fail(
            "hash",
            f"{algorithm!r} is not a hash",
            f'use "{RFC9962}" (SHA-256, the RFC) or "{LISPERS}" (lispers.net\'s)',
        )
    ranges = []
    for text, length in decent.get("lookup_lengths", dict, {}).items():
        try:
            covering = parse_eid(text, iid)
        except ValueError as exc:
            raise decent.fail(
                "lookup_lengths", f"{text!r}: {exc}", 'write "240.11.0.0/16" = 24'
            ) from None
        top = 32 if covering.version == 4 else 128
        if not isinstance(length, int) or not covering.mask_len <= length <= top:
            raise decent.fail(
                "lookup_lengths",
                f"{text!r} = {length!r} is no lookup length in that range",
                f"use {covering.mask_len} to {top}",
            )
        ranges.append((covering, length))
    if ranges and algorithm == LISPERS:
        raise decent.fail(
            "lookup_lengths",
            "lispers.net's hash takes no lookup lengths",
            f'remove them or use hash = "{RFC9962}"',
        )
    times = {}
    for key, default in (("dns_refresh", 300.0), ("dns_min_ttl", 5.0)):
        times[key] = decent.get(key, float, default)
        if not 1.0 <= times[key] <= 86_400.0:
            raise decent.fail(key, f"{times[key]:g} s out of range", "use 1 to 86400")
    if times["dns_min_ttl"] > times["dns_refresh"]:
        raise decent.fail(
            "dns_min_ttl", "is above dns_refresh", "make it at most dns_refresh"
        )
    return PullConfig(modulus, suffix, mask, algorithm, tuple(ranges), **times)


#: [[site]] algorithm and [xtr] map_servers algorithm names (RFC 9301 12.5).
_ALGORITHMS = {
    "sha1": AlgorithmId.HMAC_SHA_1_96,
    "sha256": AlgorithmId.HMAC_SHA_256_128,
}
_SITE_EIDS = 'eids = ["10.1.0.0/16"]'
_MS_EXAMPLE = '{address = "192.0.2.9", key = "secret", algorithm = "sha1"}'
_MR_EXAMPLE = '"192.0.2.9" or {address = "192.0.2.9", port = 4342}'


def _sites(path: Path, tables: list[dict[str, Any]], iid: int) -> tuple[Site, ...]:
    """The [[site]] tables: plain xTRs that register to us (RFC 9301 4.2
    Map-Server sites), relayed to the group, answered by proxy."""
    sites: list[Site] = []
    owner: dict[Eid, str] = {}
    for index, table in enumerate(tables, start=1):
        r = _Reader(path, f"site #{index}", table)
        name = r.get("name", str, fix='add name = "oor-1" (shown on pages and logs)')
        if not name:
            raise r.fail("name", "empty", 'name the site, e.g. name = "oor-1"')
        if name == GROUP_SITE:
            raise r.fail(
                "name", f"{name!r} is the group's own site", "pick another name"
            )
        for number, other in enumerate(sites, start=1):
            if other.name == name:
                raise r.fail(
                    "name",
                    f"{name!r} is already [[site]] #{number}",
                    "give each site its own name",
                )
        key = r.get("key", str, fix='add key = "..." (the xTR\'s Map-Server key)')
        if not key:
            raise r.fail("key", "empty", "set the key the xTR registers with")
        algorithms = frozenset(_ALGORITHMS.values())
        if "algorithm" in table:
            algorithm = r.get("algorithm", str)
            if algorithm not in _ALGORITHMS:
                raise r.fail(
                    "algorithm",
                    f"{algorithm!r} is not an algorithm",
                    'use "sha1" (HMAC-SHA-1) or "sha256" (HMAC-SHA-256), '
                    "or leave it out to accept both",
                )
            algorithms = frozenset({_ALGORITHMS[algorithm]})
        texts = r.get("eids", list, fix=f"add {_SITE_EIDS} (what its xTRs register)")
        if not texts:
            raise r.fail("eids", "empty: nothing could be registered", _SITE_EIDS)
        more = r.get("accept_more_specifics", bool, True)
        allowed = []
        for text in texts:
            eid = _site_eid(r, text, iid)
            if eid in owner:
                where = "this site" if owner[eid] == name else f"site {owner[eid]!r}"
                raise r.fail(
                    "eids",
                    f"{eid} is already listed in {where}",
                    "give each EID-prefix to one site, once",
                )
            owner[eid] = name
            allowed.append(AllowedPrefix(eid, more))
        nonces = r.get("nonces", str, "increasing")
        if nonces not in ("increasing", "any"):
            raise r.fail(
                "nonces",
                f"{nonces!r} is not a nonce rule",
                'use "increasing" (RFC 9301 5.6) or "any" (OOR, lispers.net)',
            )
        sites.append(
            Site(
                name,
                ((0, key.encode()),),
                tuple(allowed),
                allow_unauthenticated=r.get("allow_unauthenticated", bool, False),
                relaxed_nonces=nonces == "any",
                force_proxy_reply=True,
                algorithms=algorithms,
                relay=True,
            )
        )
    return tuple(sites)


def _site_eid(r: _Reader, text: object, iid: int) -> Eid:
    """One [[site]] eids entry: an IP prefix, or an (S, G) a member joins."""
    fix = 'list IP prefixes such as "10.1.0.0/16"'
    if not isinstance(text, str):
        raise r.fail("eids", f"{text!r} is not an EID-prefix", fix)
    try:
        eid = parse_eid(text, iid)
    except ValueError as exc:
        raise r.fail("eids", f"{text!r}: {exc}", fix) from None
    if eid.is_name:
        raise r.fail("eids", f"{text!r} is a name, not an EID-prefix", fix)
    return eid


def _xtr(
    path: Path, table: dict[str, Any], family: int
) -> tuple[tuple[OutsideMapServer, ...], tuple[Addr, ...]]:
    """[xtr]: outside Map-Servers (each with its own key) and Map-Resolvers
    of a classic LISP mapping system (RFC 9301 8.2, 8.4)."""
    r = _Reader(path, "xtr", table)
    servers: list[OutsideMapServer] = []
    for index, item in enumerate(r.get("map_servers", list, []), start=1):
        if not isinstance(item, dict):
            raise r.fail(
                "map_servers", f"{item!r} is not a table", f"write {_MS_EXAMPLE}"
            )
        entry = _Reader(path, "xtr", item, f"map_servers #{index} ")
        text = entry.get("address", str, fix=f"write {_MS_EXAMPLE}")
        address = _outside(entry, "address", text, entry.port("port", 4342), family)
        for number, other in enumerate(servers, start=1):
            if other.address == address:
                raise entry.fail(
                    "address",
                    f"{_where(address)} is already map_servers #{number}",
                    "list each Map-Server once",
                )
        key = entry.get("key", str, fix=f"write {_MS_EXAMPLE}")
        if not key:
            raise entry.fail("key", "empty", "set the key this Map-Server expects")
        algorithm = entry.get("algorithm", str, "sha256")
        if algorithm not in _ALGORITHMS:
            raise entry.fail(
                "algorithm",
                f"{algorithm!r} is not an algorithm",
                'use "sha256" (the default) or "sha1", as the Map-Server expects',
            )
        servers.append(OutsideMapServer(address, key.encode(), _ALGORITHMS[algorithm]))
    resolvers: list[Addr] = []
    for index, item in enumerate(r.get("map_resolvers", list, []), start=1):
        if isinstance(item, str):
            resolver = _outside(r, "map_resolvers", item, 4342, family)
        elif isinstance(item, dict):
            entry = _Reader(path, "xtr", item, f"map_resolvers #{index} ")
            text = entry.get("address", str, fix=f"write {_MR_EXAMPLE}")
            resolver = _outside(
                entry, "address", text, entry.port("port", 4342), family
            )
        else:
            raise r.fail(
                "map_resolvers",
                f"{item!r} is neither an address nor a table",
                f"write {_MR_EXAMPLE}",
            )
        if resolver in resolvers:
            raise r.fail(
                "map_resolvers",
                f"{_where(resolver)} is listed twice",
                "list each Map-Resolver once",
            )
        resolvers.append(resolver)
    return tuple(servers), tuple(resolvers)


def _outside(r: _Reader, key: str, text: str, port: int, family: int) -> Addr:
    """An outside Map-Server's or Map-Resolver's address: unicast, and of
    the family our control socket speaks."""
    address = r.address(key, text)
    if (
        address.is_multicast
        or address.is_unspecified
        or address == IPv4Address("255.255.255.255")
    ):
        raise r.fail(
            key,
            f"{address} is not a unicast address",
            "give the Map-Server's or Map-Resolver's own address",
        )
    if address.version != family:
        raise r.fail(
            key,
            f"{address} is IPv{address.version}, but the node's control socket "
            f"is IPv{family} (its group's family, or its first RLOC's)",
            f"use an IPv{family} address",
        )
    return address, port


def _where(addr: Addr) -> str:
    host, port = addr
    return f"[{host}]:{port}" if host.version == 6 else f"{host}:{port}"


def _web_limits(web: _Reader) -> WebLimits:
    """The [web] section's bounds (README, Limits)."""
    defaults = WebLimits()
    values: dict[str, Any] = {}
    for name in ("max_connections", "max_live_clients"):
        values[name] = web.get(name, int, getattr(defaults, name))
        if values[name] < 1:
            raise web.fail(name, f"{values[name]} admits no client", "use at least 1")
    for name in ("header_timeout", "idle_timeout", "request_timeout"):
        values[name] = web.get(name, float, getattr(defaults, name))
        if not values[name] > 0:
            raise web.fail(
                name, f"{values[name]:g} s", "use a positive number of seconds"
            )
    hosts = web.get("allowed_hosts", list, [])
    try:
        return WebLimits(**values, allowed_hosts=tuple(str(h) for h in hosts))
    except ValueError as exc:
        raise web.fail(
            "allowed_hosts", str(exc), 'list host names, e.g. ["node1.example"]'
        ) from None


#: [web] traffic_sample_seconds bounds: the history keeps an hour, so a
#: sample every 2 s is 1800 points a series (what a page fetches stays
#: small), and one every 10 min still six.
TRAFFIC_SAMPLE_RANGE = (2.0, 600.0)


def _traffic_sample_seconds(web: _Reader) -> float:
    low, high = TRAFFIC_SAMPLE_RANGE
    value: float = web.get("traffic_sample_seconds", float, 10.0)
    if not low <= value <= high:
        raise web.fail(
            "traffic_sample_seconds",
            f"{value:g} s is out of range",
            f"use {low:g} to {high:g} seconds (default 10)",
        )
    return value


#: [decent] auth names (RFC 9301 12.5). SHA-1 (alg 1) MUST NOT be used on
#: the Internet (RFC 9301 1.1), so only SHA-256 is accepted by default.
_AUTH_NAMES = {
    "hmac-sha-256": AlgorithmId.HMAC_SHA_256_128,
    "hmac-sha-1": AlgorithmId.HMAC_SHA_1_96,
}


def _auth(decent: _Reader) -> frozenset[int]:
    names = decent.get("auth", list, ["hmac-sha-256"])
    fix = 'use auth = ["hmac-sha-256"] (add "hmac-sha-1" only for old peers)'
    if not names:
        raise decent.fail("auth", "empty: no registration could be accepted", fix)
    out = set()
    for name in names:
        if name not in _AUTH_NAMES:
            raise decent.fail("auth", f"{name!r} is not an algorithm", fix)
        out.add(_AUTH_NAMES[name])
    return frozenset(out)


def _limits(r: _Reader, *, underlay_mtu: int, own_registrations: int) -> Limits:
    """The [limits] section: each a positive number, default from Limits."""
    defaults = Limits()
    values: dict[str, Any] = {"underlay_mtu": underlay_mtu}
    for name in sorted(_SECTIONS["limits"]):
        default = getattr(defaults, name)
        kind = type(default)
        value = r.get(name, kind, default, fix=f"write {name} = {default}")
        if not value > 0:  # NaN too
            raise r.fail(
                name,
                f"{value} would refuse everything",
                f"use a positive {kind.__name__}",
            )
        values[name] = value
    limits = Limits(**values)
    if not 1_500 <= limits.max_frame <= 0xFFFF:
        raise r.fail(
            "max_frame",
            f"{limits.max_frame} bytes cannot be a reliable-transport PDU limit",
            "use 1500 to 65535 (the PDU Length field is 16 bits)",
        )
    if limits.registrant_eids < own_registrations:
        raise r.fail(
            "registrant_eids",
            f"{limits.registrant_eids} is less than this node's own "
            f"{own_registrations} registrations (its EIDs, name and membership), "
            "so its peers would refuse some",
            f"use at least {own_registrations}, and the same on every member",
        )
    return limits


def _rloc(
    node: _Reader, key: str, index: int, value: object
) -> tuple[IPAddress, tuple[int, int]]:
    """One [node] rloc / rlocs entry: an address, or a table giving its
    priority and weight too (RFC 9301 5.4)."""
    if isinstance(value, str):
        return node.address(key, value), (DEFAULT_PRIORITY, DEFAULT_WEIGHT)
    if not isinstance(value, dict):
        raise node.fail(
            key,
            f"{value!r} is neither an address nor a table",
            f'write "198.18.1.1" or {_RLOC_EXAMPLE}',
        )
    entry = _Reader(node.path, node.section, value, f"{key} #{index} ")
    for name in value:
        if name not in _RLOC_KEYS:
            raise entry.fail(name, "unknown key", f"use {', '.join(_RLOC_KEYS)}")
    address = entry.address(
        "address", entry.get("address", str, fix=f"write {_RLOC_EXAMPLE}")
    )
    priority = entry.get("priority", int, DEFAULT_PRIORITY)
    if not 0 <= priority <= 255:
        raise entry.fail(
            "priority",
            f"{priority} out of range",
            "use 0 to 255: lower is preferred, 255 means never for unicast",
        )
    weight = entry.get("weight", int, DEFAULT_WEIGHT)
    if not 0 <= weight <= 100:
        raise entry.fail(
            "weight",
            f"{weight} out of range",
            "use 0 to 100: the share of flows among RLOCs of equal priority",
        )
    return address, (priority, weight)


def _dataplane(
    path: Path, table: dict[str, Any], probe_default: float = 10.0
) -> dict[str, Any]:
    """The [dataplane] section as Config fields."""
    r = _Reader(path, "dataplane", table)
    enabled = r.get("enabled", bool, False)
    tun = r.get("tun", str, "decent0")
    if not 1 <= len(tun) <= 15 or not tun.isascii() or "/" in tun or " " in tun:
        raise r.fail(
            "tun", f"{tun!r} is not an interface name", "use 1 to 15 characters"
        )
    encrypt = r.get("encrypt", str, "required")
    if encrypt not in ENCRYPT_MODES:
        raise r.fail(
            "encrypt",
            f"{encrypt!r} is not a policy",
            'use "required" (the default), "preferred" (clear text with peers '
            'that cannot encrypt) or "off"',
        )
    cipher = r.get("cipher", str, "aes-128-gcm")
    if cipher not in SUITES:
        raise r.fail(
            "cipher", f"{cipher!r} is not a cipher", f"use one of {sorted(SUITES)}"
        )
    rekey_seconds = r.get("rekey_seconds", float, 86_400.0)
    if not 10.0 <= rekey_seconds <= 7 * 86_400.0:
        raise r.fail(
            "rekey_seconds", f"{rekey_seconds} out of range", "use 10 to 604800"
        )
    rekey_packets = r.get("rekey_packets", int, 1 << 32)
    if not 1_000 <= rekey_packets <= 1 << 48:
        raise r.fail(
            "rekey_packets", f"{rekey_packets} out of range", "use 1000 to 2**48"
        )
    # Sealed packets carry an IV and a tag (28 bytes more): keep the
    # default so a full-size inner packet still fits a 1500-byte underlay.
    mtu = r.get("mtu", int, 1440 if encrypt == "off" else 1400)
    if not 576 <= mtu <= 65535:
        raise r.fail(
            "mtu",
            f"{mtu} out of range",
            "use 576 to 65535 (1440 leaves room for the outer headers)",
        )
    table_id = r.get("table", int, 4341)
    if not 1 <= table_id < 0xFFFFFFFF or table_id in (253, 254, 255):
        raise r.fail(
            "table", f"{table_id} is not a free routing table", "use e.g. 4341"
        )
    routes = []
    for text in r.get("routes", list, []):
        try:
            routes.append(str(ip_network(str(text), strict=False)))
        except ValueError:
            raise r.fail(
                "routes", f"{text!r} is not a prefix", 'write e.g. "10.7.0.0/16"'
            ) from None
    interval = r.get("probe_interval", float, probe_default)
    if interval < 0:
        raise r.fail(
            "probe_interval", "negative", "use seconds, or 0 to turn probing off"
        )
    action = r.get("negative_action", str, "drop")
    if action not in ("drop", "native"):
        raise r.fail(
            "negative_action", f"{action!r} is not an action", 'use "drop" or "native"'
        )
    petr_text = r.get("petr", str, "")
    petr = r.address("petr", petr_text) if petr_text else None
    queue = r.get("queue_size", int, 64)
    if not 0 <= queue <= 65536:
        raise r.fail("queue_size", f"{queue} out of range", "use 0 to 65536 packets")
    underlay = r.get("underlay_mtu", int, 1500)
    if not 632 <= underlay <= 65535:
        raise r.fail("underlay_mtu", f"{underlay} out of range", "use 632 to 65535")
    max_routes = r.get("max_routes", int, 1024)
    if max_routes < 1:
        raise r.fail(
            "max_routes", f"{max_routes} holds no route", "use at least 1, e.g. 1024"
        )
    return {
        "dataplane": enabled,
        "tun": tun,
        "tun_mtu": mtu,
        "route_table": table_id,
        "routes": tuple(routes),
        "probe_interval": interval,
        "negative_action": action,
        "petr": petr,
        "queue_size": queue,
        "underlay_mtu": underlay,
        "max_routes": max_routes,
        "encrypt": encrypt,
        "cipher": cipher,
        "rekey_seconds": rekey_seconds,
        "rekey_packets": rekey_packets,
    }
