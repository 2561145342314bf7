"""LISP-Decent pull mode (RFC 9962 5): Map-Server sets named by DNS, chosen by EID hash.

An EID's hash (decent.peer.mapping.pullhash) gives an index, and the DNS
name `<index>.<dns_suffix>` gives that set's addresses. Our registrations
of an EID go to every address of its set (RFC 9962 5.1: all A and AAAA
records), and a lookup goes to one of them, the next in turn on each retry
(5.1 allows round robin), which is how a set member that died is routed
around. Every member of a set gets every registrant's Map-Register, so the
members of a set hold the same registrations, as a push group's do; a
changed set is registered to at once, so a member that joins it does not
wait a registration period.

The names are resolved by the shell (decent.net.dns): this core asks
through `lookups_to_send()` and learns through `answer()` or `failed()`,
the way dnspython's resolver takes a query's result. Every set is resolved
at the start, so lookups need no wait and the status page can tell which
sets list us; then each again when its TTL runs out (at least `dns_min_ttl`
apart, at most `dns_refresh`: RFC 9962 5.4 SHOULD re-resolve periodically).
A failed resolution keeps the set's last addresses, reports the name and
the reason, and is retried with back-off. Names, addresses per set and the
EIDs waiting on a set are all bounded.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Final

from decent.peer import counters as C
from decent.peer.config import Addr, DatabaseMapping, PullConfig
from decent.peer.context import Ctx
from decent.peer.events import MapServerSetChanged, MapServerSetFailed
from decent.peer.mapping.pullhash import (
    LISPERS,
    dns_name,
    hashed_string,
    index_of,
    lookup_eid,
)
from decent.peer.mapping.push import GroupLookup, PushMapping, ReleaseUnvouched
from decent.wire import Eid, IPAddress

#: Addresses taken from one set's DNS answer (a set is a few Map-Servers).
MAX_SET: Final = 16
#: EIDs whose lookup waits for a set's first answer (then asked again).
MAX_WAITING: Final = 64


@dataclass(frozen=True, slots=True)
class Resolve:
    """Time to resolve one Map-Server set's name again."""

    index: int


@dataclass(slots=True)
class MapServerSet:
    """One Map-Server set: its DNS name, and what DNS last said of it."""

    index: int
    name: str
    addresses: tuple[IPAddress, ...] = ()
    resolved_at: float | None = None
    #: When it is resolved again.
    refresh_at: float | None = None
    error: str = ""
    failures: int = 0
    asked: bool = False
    #: EIDs a lookup of ours waits for (the set had no address yet).
    waiting: dict[Eid, None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AskWaiting:
    """A set's first answer came: look up the EIDs that waited for it."""

    index: int


class PullMapping(PushMapping):
    """The MappingSystem of a pull-mode mapping system (no push group)."""

    timer_keys = (GroupLookup, ReleaseUnvouched, Resolve, AskWaiting)

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        pull = ctx.config.pull
        assert pull is not None
        self.pull: PullConfig = pull
        self.sets = [
            MapServerSet(i, dns_name(i, pull.dns_suffix)) for i in range(pull.modulus)
        ]
        self._by_name = {s.name: s for s in self.sets}
        self._names: list[str] = []

    def start(self, now: float) -> None:
        super().start(now)
        for s in self.sets:
            self._ask(s)

    # ------------------------------------------------------------ hashing
    def hashed(self, eid: Eid) -> str:
        """The string hashed for eid. A registration inside a lookup-length
        range is hashed as a lookup is, so a more-specific prefix registered
        there meets its lookups; lispers.net hashes each as it is (no mask,
        no ranges)."""
        pull = self.pull
        if pull.hash == LISPERS:
            return hashed_string(eid, 0, LISPERS)
        return hashed_string(lookup_eid(eid, pull.lookup_lengths), pull.hash_mask)

    def index(self, eid: Eid) -> int:
        """The set eid's registration or lookup goes to (RFC 9962 5.1)."""
        return index_of(self.hashed(eid), self.pull.modulus, self.pull.hash)

    def set_for(self, eid: Eid) -> MapServerSet:
        return self.sets[self.index(eid)]

    def ours(self) -> list[MapServerSet]:
        """The sets DNS lists one of our RLOCs in: we are their Map-Server."""
        own = self.ctx.own
        return [s for s in self.sets if any(own(a) for a in s.addresses)]

    # ------------------------------------------------------------ DNS (the shell's)
    def lookups_to_send(self) -> list[str]:
        """Drain the names the shell is to resolve."""
        out, self._names = self._names, []
        return out

    def _ask(self, s: MapServerSet) -> None:
        if not s.asked:
            s.asked = True
            self._names.append(s.name)

    def answer(
        self, name: str, addresses: Sequence[IPAddress], ttl: float, now: float
    ) -> None:
        """DNS answered for a set's name: its addresses (A and AAAA) and the
        answer's TTL in seconds. No address at all counts as a failure."""
        s = self._by_name.get(name)
        if s is None or not s.asked:
            self.ctx.out.counters[C.DROP + "dns-unasked"] += 1
            return
        if not addresses:
            self.failed(name, "no A or AAAA record", now)
            return
        s.asked = False
        new = tuple(dict.fromkeys(addresses))[:MAX_SET]
        old, s.addresses = s.addresses, new
        s.resolved_at, s.error, s.failures = now, "", 0
        pull = self.pull
        wait = min(max(ttl, pull.dns_min_ttl), pull.dns_refresh)
        self._again(s, now + wait)
        if set(new) == set(old):
            return
        self.ctx.out.emit(MapServerSetChanged(name, old, new))
        self.ctx.out.counters["pull.set-changed"] += 1
        if any(self.index(eid) == s.index for eid, _ in self.ctx.database.items()):
            # New members of one of our sets hear of our EIDs at once.
            assert self.registrar is not None
            self.registrar.register_soon(now)
        if s.waiting:
            # Asked from a timer: the Node then runs what we send ourselves.
            self.ctx.timers.set(AskWaiting(s.index), now)

    def failed(self, name: str, reason: str, now: float) -> None:
        """Resolving a set's name failed: keep what it had, say so, retry
        sooner than its TTL would, backing off to dns_refresh."""
        s = self._by_name.get(name)
        if s is None or not s.asked:
            self.ctx.out.counters[C.DROP + "dns-unasked"] += 1
            return
        s.asked = False
        s.error, s.failures = reason, s.failures + 1
        self.ctx.out.counters["pull.dns-failed"] += 1
        self.ctx.out.emit(MapServerSetFailed(name, reason))
        pull = self.pull
        wait = min(pull.dns_min_ttl * 2.0 ** (s.failures - 1), pull.dns_refresh)
        self._again(s, now + wait)

    def _again(self, s: MapServerSet, when: float) -> None:
        s.refresh_at = when
        self.ctx.timers.set(Resolve(s.index), when)

    # ------------------------------------------------------------ MappingSystem
    def register_sets(
        self, mappings: list[DatabaseMapping]
    ) -> list[tuple[tuple[Addr, ...], list[DatabaseMapping]]]:
        """Our mappings by the set each registers to, with the set's
        addresses (RFC 9962 5.1: every A and AAAA record). A set DNS has
        not answered for yet gets its mappings when it does (`answer`)."""
        by_set: dict[int, list[DatabaseMapping]] = {}
        for m in mappings:
            by_set.setdefault(self.index(m.eid), []).append(m)
        port = self.ctx.config.control_port
        out = []
        for index, of in by_set.items():
            targets = tuple((a, port) for a in self.sets[index].addresses)
            if targets:
                out.append((targets, of))
        return out

    def register_targets(self) -> tuple[Addr, ...]:
        port = self.ctx.config.control_port
        every = (a for s in self.sets for a in s.addresses)
        return tuple((a, port) for a in dict.fromkeys(every))

    def resolvers_for(self, eid: Eid) -> tuple[Addr, ...]:
        """The set's members, ourselves first (answered in-process). None
        yet: the set is asked for, and eid asked again when it answers."""
        s = self.set_for(eid)
        port = self.ctx.config.control_port
        own = self.ctx.own
        if not s.addresses:
            if len(s.waiting) < MAX_WAITING:
                s.waiting[eid] = None
            self._ask(s)
            return ()
        first = [a for a in s.addresses if own(a)][:1]
        rest = [a for a in s.addresses if not own(a)]
        if first:
            return tuple((a, port) for a in (*first, *rest))
        # The lookup's retries go round the set (RFC 9962 5.1: round robin).
        return tuple((a, port) for a in rest)

    def vouches(self, rloc: IPAddress) -> bool:
        """Whether rloc is a Map-Server of any set."""
        return any(rloc in s.addresses for s in self.sets)

    def membership(self) -> list[IPAddress]:
        """Every Map-Server DNS names, in address order."""
        every = {a for s in self.sets for a in s.addresses}
        return sorted(every, key=lambda a: (a.version, a.packed))

    def alone(self) -> bool:
        return False

    def handle_timer(self, key: Hashable, now: float) -> None:
        if isinstance(key, Resolve):
            self._ask(self.sets[key.index])
        elif isinstance(key, AskWaiting):
            s = self.sets[key.index]
            waiting, s.waiting = list(s.waiting), {}
            assert self.cache_writer is not None
            for eid in waiting:
                self.cache_writer.request(eid, now)
        else:
            super().handle_timer(key, now)

    def rlocs_changed(
        self, old: tuple[IPAddress, ...], new: tuple[IPAddress, ...]
    ) -> None:
        # Which sets list us is DNS's to say: ask again now.
        for s in self.sets:
            self._ask(s)

    def sizes(self) -> dict[str, int]:
        return {
            "pull_sets_resolved": sum(1 for s in self.sets if s.addresses),
            "pull_waiting": sum(len(s.waiting) for s in self.sets),
        }
