"""`decent lookup`: an ECM'd Map-Request to any Map-Resolver over UDP 4342, as lig."""

from __future__ import annotations

import argparse
import secrets
import socket
import time
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Final

from decent.client.api import ClientError, _print_json, fetch, text_table
from decent.peer.display import locator_dict
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
