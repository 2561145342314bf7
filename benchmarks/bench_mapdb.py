"""Benchmark of the mapping database: insert rate, lookups per second, memory.

Run with `python benchmarks/bench_mapdb.py [count]`. It loads `count` (default
100,000) random prefixes, half IPv4 and half IPv6, and prints one line per
figure. Targets: lookup_host >= 500k lookups/s per core, < 1 KB per EID.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from ipaddress import IPv4Address, IPv6Address

from decent.peer.mapdb import MapDB
from decent.wire.eid import Eid

Locator = tuple[IPv4Address, int, int]
QUERIES = 500_000
HIT_RATIO = 0.9


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def prefix_length(rng: random.Random, version: int) -> int:
    """Half hosts; IPv4 others /16-/31, IPv6 others on nibbles /32-/124."""
    if rng.random() < 0.5:
        return 32 if version == 4 else 128
    if version == 4:
        return rng.randint(16, 31)
    return rng.randrange(32, 128, 4)


def registrations(rng: random.Random, count: int) -> Iterator[tuple[Eid, Locator]]:
    for i in range(count):
        version = 4 if i % 2 == 0 else 6
        bits = 32 if version == 4 else 128
        length = prefix_length(rng, version)
        shift = bits - length
        value = rng.getrandbits(bits) >> shift << shift
        addr = IPv4Address(value) if version == 4 else IPv6Address(value)
        locator = (IPv4Address(rng.getrandbits(32)), 1, 100)
        yield Eid(rng.randrange(2), addr, length), locator


def host_queries(
    rng: random.Random, stored: list[Eid], version: int, count: int
) -> list[tuple[int, int]]:
    """(iid, address) pairs: HIT_RATIO inside stored prefixes, rest random."""
    bits = 32 if version == 4 else 128
    family = [e for e in stored if e.version == version]
    queries = []
    for _ in range(count):
        if rng.random() < HIT_RATIO:
            eid = rng.choice(family)
            assert isinstance(eid.address, IPv4Address | IPv6Address)
            addr = int(eid.address) | rng.getrandbits(bits - eid.mask_len)
            queries.append((eid.iid, addr))
        else:
            queries.append((rng.randrange(2), rng.getrandbits(bits)))
    return queries


def timed(label: str, count: int, unit: str, run: Callable[[], int]) -> int:
    """Run once, print the rate, and return what run returned."""
    gc.collect()
    start = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - start
    rate = count / elapsed
    print(f"{label}: {count:,} {unit} in {elapsed:.3f} s = {rate:,.0f} {unit}/s")
    return result


def count_hits(db: MapDB[Locator], version: int, queries: list[tuple[int, int]]) -> int:
    lookup_host = db.lookup_host
    hits = 0
    for iid, addr in queries:
        if lookup_host(iid, version, addr) is not None:
            hits += 1
    return hits


def main(count: int) -> None:
    rng = random.Random(9962)
    print(
        f"load: {count:,} random EIDs in 2 instance IDs, half IPv4 (half /32,"
        " rest /16-/31) and half IPv6 (half /128, rest /32-/124 on nibbles)"
    )

    gc.collect()
    before = rss_kb()
    db: MapDB[Locator] = MapDB()
    for eid, locator in registrations(rng, count):
        db.insert(eid, locator)
    gc.collect()
    grown = rss_kb() - before
    print(
        f"memory: RSS +{grown:,} KB for {len(db):,} EIDs with one locator each"
        f" = {grown / len(db):.2f} KB per EID (target < 1 KB)"
    )

    pairs = list(db.items())
    fresh: MapDB[Locator] = MapDB()

    def insert_all() -> int:
        for eid, locator in pairs:
            fresh.insert(eid, locator)
        return len(fresh)

    timed("insert", len(pairs), "inserts", insert_all)

    stored = [eid for eid, _ in pairs]
    for version in (4, 6):
        queries = host_queries(rng, stored, version, QUERIES)
        hits = timed(
            f"lookup_host IPv{version}",
            len(queries),
            "lookups",
            partial(count_hits, db, version, queries),
        )
        print(f"  hit ratio {hits / len(queries):.1%} (target 90%)")

    # Eid construction validates its fields, so the queries are built first.
    eid_queries = [
        Eid(iid, IPv4Address(addr), 32)
        for iid, addr in host_queries(rng, stored, 4, QUERIES // 4)
    ] + [
        Eid(iid, IPv6Address(addr), 128)
        for iid, addr in host_queries(rng, stored, 6, QUERIES // 4)
    ]
    rng.shuffle(eid_queries)

    def probe_eids() -> int:
        lookup = db.lookup
        return sum(lookup(q) is not None for q in eid_queries)

    timed("lookup(Eid) IPv4+IPv6", len(eid_queries), "lookups", probe_eids)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
