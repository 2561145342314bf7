"""Per-core rates of one sans-I/O Node from bytes in to bytes out (no sockets)."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence
from ipaddress import IPv4Address

from decent.peer.config import Addr, Limits, NodeConfig
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import (
    AlgorithmId,
    EncapsulatedControlMessage,
    Locator,
    MapNotify,
    MapRecord,
    MapRegister,
    MapReply,
    MapRequest,
    RequestRecord,
    check_auth,
    decode,
    encode_record,
)

KEY = b"bench-site-key"
MS_RLOC = IPv4Address("198.18.0.1")
GROUP = IPv4Address("239.192.0.1")
XTR = (IPv4Address("198.18.7.7"), 4342)  # the registering xTR
BULK_XTR = (IPv4Address("198.18.8.8"), 4342)  # the xTR of the 100k EIDs
ITR = (IPv4Address("198.18.9.9"), 4342)  # the one requesting ITR
XTR_ID = 0x0102030405060708090A0B0C0D0E0F10
BULK_XTR_ID = 0x1112131415161718191A1B1C1D1E1F20
NOW = 1000.0
HOSTS = 1024  # registered /32s, 10.1.0.0/22
BLOCKS = 256  # registered /24s, 10.2.0.0/16
BULK = 100_000  # the large table: /32s from 10.64.0.0/10
MAX_REGISTER = 1100  # bytes, as lispers.net and the Node pack Map-Registers
REQUESTS = 40_000  # distinct Map-Requests per run
REGISTERS = 20_000  # Map-Registers per run
RUNS = 3
RATE = 1e9  # map_reply_rate and burst for the benchmark

REQUEST_TARGET = 60_000
REGISTER_TARGET = 30_000
BULK_TARGET = 5.0
# Same machine, over UDP (so including the kernel) — for scale only.
OOR_REQUESTS, OOR_REGISTERS = 65_000, 33_000
LISPERS_REQUESTS, LISPERS_REGISTERS = 2_300, 114


def config() -> NodeConfig:
    """A LISP-Decent member (its own Map-Server and Map-Resolver) whose
    Map-Reply rate limiter will not drop the benchmark's one ITR."""
    base = decent_node_config(
        name="bench-ms", rlocs=(MS_RLOC,), group=GROUP, key=KEY, xtr_id=1
    )
    # The node's defaults bound what one registrant and all requesters may
    # spend (issue 12); the benchmark measures the code paths, not the bounds.
    limits = Limits(
        registrant_eids=2 * BULK,
        max_registrations=2 * BULK,
        registrant_rate=RATE,
        registrant_burst=RATE,
        reply_global_rate=RATE,
        reply_global_burst=RATE,
        nonce_window=1 << 40,  # register_batch's nonces start at 1,000,000
    )
    return dataclasses.replace(
        base, map_reply_rate=RATE, map_reply_burst=RATE, limits=limits
    )


def new_node() -> Node:
    counter = itertools.count(1)
    return Node(config(), nonce=lambda: next(counter), now=NOW)


def host(base: str, i: int) -> IPv4Address:
    return IPv4Address(int(IPv4Address(base)) + i)


def register_bytes(
    nonce: int, prefixes: Sequence[tuple[IPv4Address, int]], xtr: Addr, xtr_id: int
) -> bytes:
    """An HMAC-SHA-256 (full MAC, Key ID 0) Map-Register with P, T and M set."""
    records = tuple(
        MapRecord(addr, mask, (Locator(xtr[0]),), ttl=3, authoritative=True)
        for addr, mask in prefixes
    )
    msg = MapRegister(
        nonce,
        records,
        proxy_reply=True,
        ttl_timeout=True,
        want_map_notify=True,
        xtr_id=xtr_id,
        site_id=1,
    )
    return msg.signed(KEY, AlgorithmId.HMAC_SHA_256_128).encode()


def base_registers() -> list[bytes]:
    """The /32s and /24s the Map-Requests hit, from XTR with nonces 1, 2, ..."""
    prefixes = [(host("10.1.0.0", i), 32) for i in range(HOSTS)]
    prefixes += [(host("10.2.0.0", i << 8), 24) for i in range(BLOCKS)]
    per = records_per_register()
    return [
        register_bytes(n + 1, prefixes[i : i + per], XTR, XTR_ID)
        for n, i in enumerate(range(0, len(prefixes), per))
    ]


def records_per_register() -> int:
    """How many one-locator IPv4 /32 records fit in MAX_REGISTER bytes."""
    rec = encode_record(MapRecord(IPv4Address("10.0.0.1"), 32, (Locator(XTR[0]),)))
    return (MAX_REGISTER - 16 - 32 - 24) // len(rec)


def bulk_registers() -> list[bytes]:
    """BULK distinct /32s from BULK_XTR, as many records per message as fit."""
    per = records_per_register()
    return [
        register_bytes(
            n + 1,
            [(host("10.64.0.0", j), 32) for j in range(i, min(i + per, BULK))],
            BULK_XTR,
            BULK_XTR_ID,
        )
        for n, i in enumerate(range(0, BULK, per))
    ]


def request_batch() -> list[bytes]:
    """Distinct Map-Requests (nonces), alternately plain and in an ECM, for
    registered /32s and for hosts inside registered /24s."""
    out = []
    for i in range(REQUESTS):
        if i % 2:
            eid = host("10.2.0.0", ((i // 2) % BLOCKS) << 8 | (i % 250 + 1))
        else:
            eid = host("10.1.0.0", (i // 2) % HOSTS)
        req = MapRequest(
            0x5EED000000000000 + i,
            (RequestRecord(eid, 32),),
            (ITR[0],),
            source_eid=IPv4Address("10.9.0.1"),
        )
        if i % 4 < 2:
            out.append(req.encode())
        else:
            ecm = EncapsulatedControlMessage(req, ITR[0], eid, ITR[1], 4342)
            out.append(ecm.encode())
    return out


def register_batch() -> list[list[bytes]]:
    """RUNS batches of one-record Map-Registers from XTR, refreshing the
    registered /32s, with nonces increasing across all batches."""
    first = 1_000_000
    return [
        [
            register_bytes(first + n, [(host("10.1.0.0", n % HOSTS), 32)], XTR, XTR_ID)
            for n in range(run * REGISTERS, (run + 1) * REGISTERS)
        ]
        for run in range(RUNS)
    ]


def drive(node: Node, batch: Sequence[bytes], src: Addr) -> tuple[float, int]:
    """Feed every datagram as a shell would (receive, drain datagrams, drain
    events); return the seconds taken and the datagrams that came out."""
    receive = node.receive_datagram
    drain = node.datagrams_to_send
    next_event = node.next_event
    sent = 0
    t0 = time.perf_counter()
    for data in batch:
        receive(data, src, NOW)
        sent += len(drain())
        while next_event() is not None:
            pass
    return time.perf_counter() - t0, sent


def prepared(node: Node | None = None) -> Node:
    """`node` (or a new one) holding the /32s and /24s the requests hit."""
    node = node or new_node()
    batch = base_registers()
    _, sent = drive(node, batch, XTR)
    assert sent == len(batch), "a setup Map-Register was not acknowledged"
    return node


def request_rate(node: Node, batch: Sequence[bytes]) -> float:
    best = 0.0
    for _ in range(RUNS):
        before = node.counters["tx.map-reply"]
        elapsed, sent = drive(node, batch, ITR)
        assert sent == len(batch) == node.counters["tx.map-reply"] - before
        best = max(best, len(batch) / elapsed)
    return best


def check_replies(node: Node, batch: Sequence[bytes]) -> None:
    """Plain and ECM'd, /32 and /24 hits: each reply goes to the ITR, echoes
    the nonce and carries the registered prefix, A bit clear (proxy reply)."""
    for i in range(4):
        node.receive_datagram(batch[i], ITR, NOW)
        [(data, dest)] = node.datagrams_to_send()
        reply, sent = decode(data), decode(batch[i])
        if isinstance(sent, EncapsulatedControlMessage):
            assert i % 4 >= 2
            sent = sent.message
        assert isinstance(reply, MapReply)
        assert isinstance(sent, MapRequest)
        assert dest == ITR
        assert reply.nonce == sent.nonce
        [record] = reply.records
        assert record.mask_len == (24 if i % 2 else 32)
        assert not record.authoritative
        assert record.locators


def decode_rate(batch: Sequence[bytes]) -> float:
    """The wire codec alone on the same datagrams: the ceiling for the Node."""
    best = 0.0
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for data in batch:
            decode(data)
        best = max(best, len(batch) / (time.perf_counter() - t0))
    return best


def register_rate(node: Node, batches: Sequence[Sequence[bytes]]) -> float:
    best = 0.0
    for batch in batches:
        before = node.counters["registration.accepted"]
        elapsed, sent = drive(node, batch, XTR)
        accepted = node.counters["registration.accepted"] - before
        assert sent == len(batch) == accepted, "Map-Registers were not all accepted"
        best = max(best, len(batch) / elapsed)
    return best


def check_notify(node: Node, data: bytes) -> None:
    """One more Map-Register: a signed Map-Notify with its nonce comes back."""
    node.receive_datagram(data, XTR, NOW)
    [(out, dest)] = node.datagrams_to_send()
    notify = decode(out)
    sent = decode(data)
    assert isinstance(notify, MapNotify)
    assert isinstance(sent, MapRegister)
    assert dest == XTR
    assert notify.nonce == sent.nonce
    assert check_auth(out, KEY)


def bulk_time(batch: Sequence[bytes]) -> tuple[float, Node]:
    best, node = float("inf"), new_node()
    for _ in range(RUNS):
        node = new_node()
        elapsed, sent = drive(node, batch, BULK_XTR)
        assert sent == len(batch)
        assert len(node.ms.db) == BULK
        best = min(best, elapsed)
    return best, node


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> None:
    requests = request_batch()
    registers = register_batch()
    bulk = bulk_registers()
    per = records_per_register()
    last = register_bytes(10**9, [(host("10.1.0.0", 0), 32)], XTR, XTR_ID)

    node = prepared()
    check_replies(node, requests)
    req_small = request_rate(node, requests)
    req_plain = request_rate(node, [d for i, d in enumerate(requests) if i % 4 < 2])
    req_ecm = request_rate(node, [d for i, d in enumerate(requests) if i % 4 >= 2])
    reg_small = register_rate(node, registers)
    check_notify(node, last)

    seconds, big = bulk_time(bulk)
    prepared(big)
    assert len(big.ms.db) == BULK + HOSTS + BLOCKS
    check_replies(big, requests)
    req_big = request_rate(big, requests)
    reg_big = register_rate(big, registers)
    check_notify(big, last)

    print(
        f"Node core, one core, in-process: receive_datagram -> datagrams_to_send, "
        f"events drained, best of {RUNS}.\n"
        f"map_reply_rate and map_reply_burst set to {RATE:.0e}: the limiter is per "
        f"destination and the generator is one ITR."
    )
    print(
        f"  Map-Request: {len(requests):,} distinct nonces, half in an ECM, "
        f"half for {HOSTS} registered /32s and half for hosts in {BLOCKS} /24s;\n"
        f"  proxy Map-Reply out. Map-Register: HMAC-SHA-256 full MAC, Key ID 0, "
        f"P/T/M set, 1 record,\n  one xTR-ID, increasing nonces, refreshing the "
        f"/32s; stored, signed Map-Notify out."
    )
    rows: list[tuple[str, float, int | None]] = [
        ("Map-Request -> Map-Reply", req_small, REQUEST_TARGET),
        ("  of which plain", req_plain, None),
        ("  of which in an ECM", req_ecm, None),
        ("  (wire decode alone, for context)", decode_rate(requests), None),
        ("Map-Register -> Map-Notify", reg_small, REGISTER_TARGET),
        ("  (wire decode alone, for context)", decode_rate(registers[0]), None),
        (f"Map-Request -> Map-Reply, {BULK:,} more EIDs", req_big, REQUEST_TARGET),
        (f"Map-Register -> Map-Notify, {BULK:,} more EIDs", reg_big, REGISTER_TARGET),
    ]
    for name, value, target in rows:
        goal = ""
        if target is not None:
            goal = f"  (target >= {target:,}/s: {verdict(value >= target)})"
        print(f"  {name:<48} {value:>10,.0f}/s{goal}")
    print(
        f"  {'register ' + format(BULK, ',') + ' distinct /32s':<48} "
        f"{seconds:>11.2f} s  (target < {BULK_TARGET:.0f} s: "
        f"{verdict(seconds < BULK_TARGET)})\n"
        f"  {'':<48} {BULK / seconds:>10,.0f} EIDs/s in {len(bulk):,} "
        f"Map-Registers of {per} records (1100 bytes)"
    )
    for name, small, large in (
        ("Map-Request", req_small, req_big),
        ("Map-Register", reg_small, reg_big),
    ):
        ratio = large / small
        print(
            f"  {name + ' rate with/without 100k EIDs':<48} {ratio:>11.2f}   "
            f"(flat, >= 0.8: {verdict(ratio >= 0.8)})"
        )
    print("reference, same machine, over UDP (kernel included):")
    print(
        f"  Open Overlay Router (C)   {OOR_REQUESTS:>7,} Map-Requests/s  "
        f"{OOR_REGISTERS:>7,} authenticated Map-Registers/s"
    )
    print(
        f"  lispers.net (Python)      {LISPERS_REQUESTS:>7,} Map-Requests/s  "
        f"{LISPERS_REGISTERS:>7,} authenticated Map-Registers/s"
    )


if __name__ == "__main__":
    main()
