"""`decent lookup`: an ECM'd Map-Request to any Map-Resolver over UDP 4342, as lig."""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Final

from decent.client.api import API, ClientError, _print_json, fetch, text_table
from decent.peer.display import locator_dict, time_text
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

CONTROL_PORT: Final = 4342
#: lig's line for a try that timed out.
NO_REPLY: Final = "*** No map-reply received ***"
#: Where `lookup` reports each try as it happens, one line at a time.
Progress = Callable[[str], None]


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
        # The record TTL, in minutes as on the wire (RFC 9301 5.4).
        "ttl_min": rec.ttl,
        "authoritative": rec.authoritative,
        "negative": not rec.locators,
        "action": _action(rec.action),
        "rlocs": [locator_dict(loc) for loc in rec.locators],
    }


def sent_line(resolver: str, query: str) -> str:
    """lig's line for a Map-Request sent."""
    return f"Send map-request to {resolver} for {query} ..."


def received_line(source: str, rtt_ms: float) -> str:
    """lig's line for the Map-Reply, with its RTT in seconds as lig has it."""
    return f"Received map-reply from {source} with rtt {rtt_ms / 1000:.4f} secs"


def lookup_text(result: dict[str, Any]) -> str:
    """The whole lookup as lig prints it: each try, then the mapping."""
    tries = [sent_line(result["resolver"], result["query"])]
    for _ in range(result["attempts"] - 1):
        tries[-1:] = [tries[-1], NO_REPLY, tries[-1]]
    tries.append(received_line(result["from"], result["rtt_ms"]))
    return "\n".join([*tries, mapping_text(result)])


def mapping_text(result: dict[str, Any]) -> str:
    """The Map-Reply's records (a blank line first, as lig has it)."""
    out = ["", f"Mapping entries for EID {result['query']}:"]
    for rec in result["records"]:
        head = f"{rec['eid']}, record ttl: {rec['ttl_min']} minutes"
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
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Ask resolver:port for eid; the first Map-Reply whose nonce is ours.

    `progress` hears each try as lig prints it, when it happens: the
    Map-Request sent, then the Map-Reply with its RTT or that none came."""
    say = progress or (lambda line: None)
    itr = _local_address(resolver, port)
    family = socket.AF_INET6 if itr.version == 6 else socket.AF_INET
    where, query = f"{resolver}:{port}", str(eid)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((str(itr), 0))
        sport = sock.getsockname()[1]
        # Each nonce's send time, monotonic and wall clock: a late reply to
        # an earlier try still counts, with that try's RTT.
        sent: dict[int, tuple[float, float]] = {}
        for attempt in range(1, attempts + 1):
            nonce = secrets.randbits(64)
            data = map_request(eid, itr, sport, nonce, resolver)
            say(sent_line(where, query))
            sent[nonce] = (time.monotonic(), time.time())
            try:
                sock.sendto(data, (str(resolver), port))
            except OSError as exc:
                raise ClientError(f"cannot send to {where} ({exc.strerror})") from None
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
                    mono, wall = sent[reply.nonce]
                    rtt_ms = round((time.monotonic() - mono) * 1000, 3)
                    source = f"{src[0]}:{src[1]}"
                    say(received_line(source, rtt_ms))
                    return {
                        "resolver": where,
                        "query": query,
                        "from": source,
                        "attempts": attempt,
                        "sent_at": time_text(wall),
                        "received_at": time_text(time.time()),
                        "rtt_ms": rtt_ms,
                        "records": [record_dict(r) for r in reply.records],
                    }
            say(NO_REPLY)
    raise ClientError(
        f"no Map-Reply from {where} for {eid} after {attempts} tries of {timeout:g} s"
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
        node = fetch(args.node, f"{API}/node")
        resolver = ip_address(node["rloc"])
        port = port or int(node.get("control_port", CONTROL_PORT))
    if args.attempts < 1 or args.timeout <= 0:
        raise ClientError("--attempts must be 1 or more, --timeout above 0", 2)
    # Each try as it happens, as lig prints it; on stderr under --json, so
    # stdout stays one JSON document.
    out = sys.stderr if args.json else sys.stdout

    def progress(line: str) -> None:
        print(line, file=out, flush=True)

    result = lookup(
        eid,
        resolver,
        port or CONTROL_PORT,
        attempts=args.attempts,
        timeout=args.timeout,
        progress=progress,
    )
    if args.json:
        _print_json(result)
    else:
        print(mapping_text(result))
    return 0
