"""ITR map-cache: TTL'd positive and negative entries, per-RLOC state (RFC 9301 8.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from decent.peer.mapdb import MapDB
from decent.wire import Eid, Locator, MapRecord


@dataclass(slots=True)
class LocatorState:
    """Reachability and traffic of one RLOC of a cached mapping."""

    locator: Locator
    up: bool = True
    rtt: float | None = None
    missed: int = 0
    packets: int = 0
    bytes: int = 0
    #: RFC 9300 section 10: the last locator-status bit the mapping's own
    #: site sent for this RLOC; a clear bit keeps us off it until it is set.
    lsb_up: bool = True
    #: (host, port) for sendto and the RLOC's IP version (0: one of our own
    #: RLOCs, never encapsulated to), filled in by the data plane on first use.
    sockaddr: tuple[str, int] | None = None
    family: int = 0

    @property
    def usable(self) -> bool:
        # RFC 9300 section 9 / 9301 5.4: never encapsulate to an RLOC whose R
        # bit is clear, nor to priority 255.
        loc = self.locator
        return (
            self.up
            and self.lsb_up
            and loc.reachable
            and loc.priority != 255
            and loc.rloc is not None
        )


@dataclass(slots=True)
class CacheEntry:
    eid: Eid
    record: MapRecord
    source: str
    created: float
    expires: float
    locators: list[LocatorState] = field(default_factory=list)
    packets: int = 0
    bytes: int = 0
    #: The locator-status bits last received from this mapping's site.
    lsbs: int | None = None
    #: The data plane's locator choice table and the MapCache generation it
    #: was built for (see `slots`).
    _slots: tuple[LocatorState, ...] = ()
    _slots_generation: int = -1

    @property
    def negative(self) -> bool:
        return not self.record.locators

    def slots(self, generation: int) -> tuple[LocatorState, ...]:
        """The locator choice table: the usable locators of the best priority
        (RFC 9301 5.4: lower is preferred, 255 never), each repeated `weight`
        times, so `slots[flow_hash % len(slots)]` splits flows by weight with
        no per-packet work. Weight 0 throughout means the receiver decides:
        one slot each. Empty when none is usable. Rebuilt only when
        `generation` (the MapCache's) moved: whoever changes a locator's
        state bumps it."""
        if self._slots_generation != generation:
            usable = [s for s in self.locators if s.usable]
            table: list[LocatorState] = []
            if usable:
                best = min(s.locator.priority for s in usable)
                tier = [s for s in usable if s.locator.priority == best]
                if sum(s.locator.weight for s in tier) == 0:
                    table = tier
                else:
                    for s in tier:
                        table.extend([s] * s.locator.weight)
            self._slots = tuple(table)
            self._slots_generation = generation
        return self._slots


class MapCache:
    """The ITR's cache of resolved mappings, keyed by EID-prefix."""

    def __init__(self) -> None:
        self.db: MapDB[CacheEntry] = MapDB()
        #: Bumped whenever any entry or locator state changes, so per-entry
        #: choice tables (`CacheEntry.slots`) know to rebuild.
        self.generation = 0

    def __len__(self) -> int:
        return len(self.db)

    def install(
        self, eid: Eid, record: MapRecord, source: str, now: float
    ) -> CacheEntry:
        """Insert or replace; keep traffic counters and probe state of RLOCs
        that stay in the new locator set."""
        ttl = record.ttl * 60.0
        old = self.db.get(eid)
        states = {}
        if old is not None:
            states = {s.locator.address: s for s in old.locators}
        locs = []
        for loc in record.locators:
            prev = states.get(loc.address)
            state = LocatorState(loc)
            if prev is not None:
                state.up, state.rtt, state.missed = prev.up, prev.rtt, prev.missed
                state.packets, state.bytes = prev.packets, prev.bytes
                state.lsb_up = prev.lsb_up
            locs.append(state)
        entry = CacheEntry(eid, record, source, now, now + ttl, locs)
        if old is not None:
            entry.created, entry.packets, entry.bytes = (
                old.created,
                old.packets,
                old.bytes,
            )
            entry.lsbs = old.lsbs
        self.db.insert(eid, entry)
        self.generation += 1
        return entry

    def remove(self, eid: Eid) -> CacheEntry | None:
        self.generation += 1
        return self.db.remove(eid)

    def lookup(self, eid: Eid) -> CacheEntry | None:
        hit = self.db.lookup(eid)
        return hit[1] if hit else None
