"""The ITR role: Map-Requests out, replies into the map-cache, SMRs in.

It resolves what the data plane (or the operator) asks for through the
Map-Resolvers the mapping system names, one request per prefix at a time
with retries and a hold-down, installs the answers, expires them, and
re-resolves a mapping an ETR says has changed (SMR), rate-limited.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.peer import counters as C
from decent.peer.config import Addr
from decent.peer.context import Ctx, MembershipWatch
from decent.peer.events import (
    MapCacheCleared,
    MapCacheExpired,
    MapCacheUpdated,
    MapRequestFailed,
    SmrReceived,
)
from decent.peer.mapping.system import MappingSystem
from decent.wire import (
    NO_ADDRESS,
    Eid,
    EncapsulatedControlMessage,
    MapRecord,
    MapReply,
    MapRequest,
    RequestRecord,
)


@dataclass(frozen=True, slots=True)
class CacheExpiry:
    eid: Eid


@dataclass(frozen=True, slots=True)
class RequestRetry:
    eid: Eid


@dataclass(slots=True)
class _PendingRequest:
    eid: Eid
    attempts: int = 0
    smr_invoked: bool = False
    held_until: float | None = None
    nonces: list[int] = field(default_factory=list)


class ItrRole:
    """The map-cache and the requests that fill it."""

    timer_keys: Final = (CacheExpiry, RequestRetry)

    def __init__(self, ctx: Ctx, mapping: MappingSystem) -> None:
        self.ctx = ctx
        self.mapping = mapping
        self._pending_requests: dict[Eid, _PendingRequest] = {}
        self._request_nonces: dict[int, Eid] = {}
        self._smr_last: dict[Eid, float] = {}
        self.watch: MembershipWatch | None = None

    def request(self, eid: Eid, now: float) -> None:
        """Resolve eid unless it is cached or pending (a cache miss)."""
        entry = self.ctx.cache.lookup(eid)
        if entry is not None and entry.expires > now:
            return
        self._start_request(eid, now, smr_invoked=False)

    def clear(self) -> int:
        """Forget every map-cache entry, as if each had expired."""
        ctx = self.ctx
        eids = [eid for eid, _ in ctx.cache.db.items()]
        for eid in eids:
            ctx.cache.remove(eid)
            ctx.timers.cancel(CacheExpiry(eid))
        ctx.out.counters[C.CACHE_CLEARED] += len(eids)
        ctx.out.emit(MapCacheCleared(len(eids)))
        return len(eids)

    def _start_request(self, eid: Eid, now: float, *, smr_invoked: bool) -> None:
        pending = self._pending_requests.get(eid)
        if pending is not None:
            # C13: at most one Map-Request per second per prefix, and none
            # during the 30 s hold-down after ten unanswered ones.
            return
        if not self.mapping.resolvers_for(eid):
            self.ctx.out.drop((self.ctx.config.rlocs[0], 0), "no-map-resolver")
            return
        pending = _PendingRequest(eid, smr_invoked=smr_invoked)
        self._pending_requests[eid] = pending
        self._send_request(pending, now)

    def _send_request(self, pending: _PendingRequest, now: float) -> None:
        nonce = self.ctx.out.nonce()
        pending.nonces.append(nonce)
        self._request_nonces[nonce] = pending.eid
        addr, mask = pending.eid.to_wire()
        req = MapRequest(
            nonce,
            (RequestRecord(addr, mask),),
            self.ctx.config.rlocs,
            smr_invoked=pending.smr_invoked,
        )
        resolvers = self.mapping.resolvers_for(pending.eid)
        resolver = resolvers[pending.attempts % len(resolvers)]
        own = self.ctx.config.rloc_for(resolver[0].version) or self.ctx.config.rlocs[0]
        inner_dst = pending.eid.address
        if not isinstance(inner_dst, IPv4Address | IPv6Address) or (
            inner_dst.version != own.version
        ):
            inner_dst = resolver[0] if resolver[0].version == own.version else own
        ecm = EncapsulatedControlMessage(
            req,
            own,
            inner_dst,
            self.ctx.config.control_port,
            self.ctx.config.control_port,
        )
        pending.attempts += 1
        self.ctx.out.send(ecm.encode(), resolver, "map-request")
        self.ctx.timers.set(
            RequestRetry(pending.eid), now + self.ctx.config.request_interval
        )

    def _request_retry(self, eid: Eid, now: float) -> None:
        # _forget_request cancels this timer, so the request is pending.
        pending = self._pending_requests[eid]
        if pending.held_until is not None:
            self._forget_request(pending)
            return
        if pending.attempts >= self.ctx.config.request_attempts:
            pending.held_until = now + self.ctx.config.request_holddown
            self.ctx.out.counters[C.REQUEST_FAILED] += 1
            self.ctx.out.emit(MapRequestFailed(eid))
            self.ctx.timers.set(RequestRetry(eid), pending.held_until)
            return
        self._send_request(pending, now)

    def _forget_request(self, pending: _PendingRequest) -> None:
        for n in pending.nonces:
            self._request_nonces.pop(n, None)
        self._pending_requests.pop(pending.eid, None)
        self.ctx.timers.cancel(RequestRetry(pending.eid))

    def on_reply(self, rep: MapReply, src: Addr, now: float) -> None:
        eid = self._request_nonces.get(rep.nonce)
        if eid is None:
            self.ctx.out.drop(src, "unsolicited-map-reply")
            return
        # Every EID first: a record we cannot index raises ValueError (the
        # datagram is dropped), and that must not leave half a reply applied.
        eids = [Eid.from_wire(rec.eid, rec.mask_len) for rec in rep.records]
        pending = self._pending_requests[eid]
        self._forget_request(pending)
        if self.mapping.referred(eid, rep):
            self._start_request(eid, now, smr_invoked=pending.smr_invoked)
            return
        # Our own Map-Resolver answered in-process: the map-cache says so.
        source = "local" if src == self.ctx.out.loopback_addr else "map-reply"
        for got, rec in zip(eids, rep.records, strict=True):
            self.install(got, rec, source, now)

    def install(self, eid: Eid, rec: MapRecord, source: str, now: float) -> None:
        if rec.ttl == 0:  # RFC 9301 5.4 (C16): TTL 0 MUST remove
            if self.ctx.cache.remove(eid) is not None:
                self.ctx.timers.cancel(CacheExpiry(eid))
                self.ctx.out.emit(MapCacheExpired(eid))
            return
        if len(self.ctx.cache) >= self.ctx.config.limits.max_cache_entries and (
            self.ctx.cache.db.get(eid) is None
        ):
            # Map-Notifies a key holder sends unasked could fill it otherwise.
            self.ctx.out.counters[C.CACHE_FULL] += 1
            return
        old = self.ctx.cache.db.get(eid)
        changed = old is None or old.record != rec
        entry = self.ctx.cache.install(eid, rec, source, now)
        self.ctx.timers.set(CacheExpiry(eid), entry.expires)
        self.ctx.out.counters[C.CACHE_INSTALLED] += 1
        self.ctx.out.emit(MapCacheUpdated(eid, source, entry.negative, changed))
        if eid == self.ctx.group_eid:
            assert self.watch is not None
            self.watch.membership_changed(now)

    def _cache_expiry(self, eid: Eid) -> None:
        # The timer moves with every install and goes with every removal, so
        # the entry is there and due.
        self.ctx.cache.remove(eid)
        self.ctx.out.counters[C.CACHE_EXPIRED] += 1
        self.ctx.out.emit(MapCacheExpired(eid))

    def on_smr(self, req: MapRequest, src: Addr, now: float) -> None:
        """RFC 9301 6.1: re-resolve an SMR'd mapping through the mapping
        system (never from the SMR's sender), at most once per 3 s."""
        named = [(req.source_eid, 0)] + [(r.eid, r.mask_len) for r in req.records]
        seen: set[Eid] = set()
        for addr, mask in named:
            if addr is NO_ADDRESS:
                continue
            try:
                eid = Eid.from_wire(addr, mask or _full_mask(addr))
            except ValueError:
                continue
            entry = self.ctx.cache.lookup(eid)
            if entry is None:  # no cached mapping: SHOULD NOT respond
                continue
            if entry.eid in seen:  # named twice (source EID and record): once
                continue
            seen.add(entry.eid)
            last = self._smr_last.get(entry.eid)
            if last is not None and now - last < self.ctx.config.smr_interval:
                self.ctx.out.drop(src, "smr-rate-limited")
                continue
            self._smr_last[entry.eid] = now
            self.ctx.out.emit(SmrReceived(entry.eid, src))
            self._start_request(entry.eid, now, smr_invoked=True)
        if not seen:
            self.ctx.out.drop(src, "smr-not-cached")

    def refresh(self, eid: Eid, now: float) -> None:
        """Our Map-Server took a changed registration for eid: a mapping we
        cached from it is stale now (a member moved, or changed relay),
        whether or not its SMR reaches us (behind a relay, the ETR sees the
        relay as its ITR, never us)."""
        entry = self.ctx.cache.lookup(eid)
        if entry is None:
            return
        if entry.negative:
            # A negative answer covering it (it had gone) is wrong now: the
            # next packet resolves the registration instead.
            self.ctx.timers.cancel(CacheExpiry(entry.eid))
            self._cache_expiry(entry.eid)
        elif entry.eid == eid:
            self._start_request(eid, now, smr_invoked=True)

    def handle_timer(self, key: Hashable, now: float) -> None:
        if isinstance(key, CacheExpiry):
            self._cache_expiry(key.eid)
        elif isinstance(key, RequestRetry):  # pragma: no branch - routed by type
            self._request_retry(key.eid, now)

    def sweep(self, now: float) -> None:
        window = self.ctx.config.recent_itr_window
        for eid in [e for e, t in self._smr_last.items() if now - t > window]:
            del self._smr_last[eid]

    def sizes(self) -> dict[str, int]:
        return {
            "pending_requests": len(self._pending_requests),
            "request_nonces": len(self._request_nonces),
            "smr_last": len(self._smr_last),
        }


def _full_mask(addr: object) -> int:
    if isinstance(addr, IPv4Address):
        return 32
    if isinstance(addr, IPv6Address):
        return 128
    return 0
