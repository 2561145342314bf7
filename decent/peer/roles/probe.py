"""RLOC probing (RFC 9301 7.1): cached locators probed, dead ones marked.

A probe is a Map-Request with the P bit to the locator itself; its
answer, matched by the 64-bit nonce, gives the round-trip time and marks
the locator up. `probe_down_after` unanswered probes in a row mark it
down, so the data plane leaves it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

from decent.peer.config import Addr
from decent.peer.context import Ctx
from decent.peer.events import LocatorStateChanged
from decent.peer.mapcache import CacheEntry
from decent.wire import Eid, IPAddress, MapReply, MapRequest, RequestRecord


@dataclass(frozen=True, slots=True)
class ProbeTick:
    """Time to RLOC-probe every cached locator."""


@dataclass(frozen=True, slots=True)
class ProbeTimeout:
    nonce: int


class ProbeRole:
    """Outstanding probes and the locator states they decide."""

    timer_keys: Final = (ProbeTick, ProbeTimeout)

    def __init__(self, ctx: Ctx, now: float) -> None:
        self.ctx = ctx
        self._probes: dict[int, tuple[Eid, IPAddress, float]] = {}
        if ctx.config.probe_interval:
            ctx.timers.set(ProbeTick(), now + ctx.config.probe_interval)

    def _probe_tick(self, now: float) -> None:
        for eid, entry in list(self.ctx.cache.db.items()):
            if entry.negative:
                continue
            for state in entry.locators:
                rloc = state.locator.rloc
                if rloc is None or self.ctx.own(rloc):
                    continue
                self._send_probe(eid, rloc, now)
        assert self.ctx.config.probe_interval
        self.ctx.timers.set(ProbeTick(), now + self.ctx.config.probe_interval)

    def _send_probe(self, eid: Eid, rloc: IPAddress, now: float) -> None:
        own = self.ctx.itr_rloc(rloc.version)
        if own is None:
            return
        addr, mask = eid.to_wire()
        nonce = self.ctx.out.nonce()
        probe = MapRequest(nonce, (RequestRecord(addr, mask),), (own,), probe=True)
        self._probes[nonce] = (eid, rloc, now)
        self.ctx.out.send(probe.encode(), (rloc, self.ctx.config.control_port), "probe")
        self.ctx.timers.set(ProbeTimeout(nonce), now + self.ctx.config.probe_timeout)

    def _probe_state(self, eid: Eid, rloc: IPAddress) -> tuple[CacheEntry, int] | None:
        entry = self.ctx.cache.db.get(eid)
        if entry is None:
            return None
        for i, state in enumerate(entry.locators):
            if state.locator.rloc == rloc:
                return entry, i
        return None

    def on_reply(self, rep: MapReply, src: Addr, now: float) -> None:
        probe = self._probes.get(rep.nonce)
        # C15: a probe reply whose records lack the A bit MUST be discarded,
        # and it must not use up the probe (whose timeout stays armed).
        if probe is None or not all(r.authoritative for r in rep.records):
            self.ctx.out.drop(src, "unsolicited-probe-reply")
            return
        del self._probes[rep.nonce]
        self.ctx.timers.cancel(ProbeTimeout(rep.nonce))
        # The sender is not compared with the probed RLOC: the ETR answers
        # from its outgoing interface (RFC 9301 7.1), which need not be the
        # RLOC probed, and the echoed 64-bit random nonce is the match key.
        eid, rloc, sent = probe
        found = self._probe_state(eid, rloc)
        if found is None:
            return
        state = found[0].locators[found[1]]
        state.rtt, state.missed = now - sent, 0
        if not state.up:
            state.up = True
            self.ctx.cache.generation += 1
            self.ctx.out.emit(LocatorStateChanged(eid, str(rloc), True))

    def _probe_timeout(self, nonce: int, now: float) -> None:
        # A reply cancels this timer, so the probe is still outstanding.
        eid, rloc, _ = self._probes.pop(nonce)
        found = self._probe_state(eid, rloc)
        if found is None:
            return
        state = found[0].locators[found[1]]
        state.missed += 1
        if state.up and state.missed >= self.ctx.config.probe_down_after:
            state.up = False
            self.ctx.cache.generation += 1
            self.ctx.out.emit(LocatorStateChanged(eid, str(rloc), False))
        elif state.up:
            # Probe again at once rather than a whole interval later, so a
            # dead RLOC is left within one interval plus the down-after
            # timeouts of the failure (traffic may be going to it).
            self._send_probe(eid, rloc, now)

    def handle_timer(self, key: Hashable, now: float) -> None:
        if isinstance(key, ProbeTick):
            self._probe_tick(now)
        elif isinstance(key, ProbeTimeout):  # pragma: no branch - routed by type
            self._probe_timeout(key.nonce, now)

    def sizes(self) -> dict[str, int]:
        return {"probes": len(self._probes)}
