"""The Map-Server role: registrations, nonce challenges, Map-Notifies.

It takes Map-Registers and Map-Notify-Acks, keeps the registrations in the
MapServer store (decent.peer.mapserver), expires them, tells the members of
merged entries their new RLE, and refuses registrants over their quotas or
rate. It acts on each change the store reports: timers, events, notifies,
and the mapping system's word that the group changed.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

from decent.peer import counters as C
from decent.peer.config import Addr, ChildKey, DatabaseMapping, Site
from decent.peer.context import (
    MASK32,
    CacheWriter,
    Carrier,
    Ctx,
    MembershipWatch,
    Registrar,
    SessionGate,
    authentic,
    eid_on_wire,
)
from decent.peer.events import (
    MergedSetChanged,
    NotifyAcknowledged,
    NotifyGaveUp,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationRemoved,
    RevocationLearned,
    UnauthenticatedAccepted,
)
from decent.peer.mapserver import (
    HeldRegister,
    RegisterIntent,
    Registration,
    SiteEntry,
)
from decent.peer.ratelimit import Buckets
from decent.peer.replay import Slot, Verdict
from decent.peer.trust import revocation_eid
from decent.wire import (
    DecodeError,
    Eid,
    EncapsulatedControlMessage,
    IPAddress,
    MapNotify,
    MapNotifyAck,
    MapRecord,
    MapRegister,
    check_auth,
    decode_udp_packet,
    map_notify_for,
)
from decent.wire.trust import Revocation, node_xtr_id

#: Record TTL (minutes) of the revocations every member registers: each
#: refreshes its own copy, so this only bounds how long one outlives us.
_REVOCATION_TTL: Final = 60


@dataclass(frozen=True, slots=True)
class ExpireChild:
    eid: Eid
    child: ChildKey


@dataclass(frozen=True, slots=True)
class NotifyRetry:
    nonce: int
    peer: IPAddress


@dataclass(slots=True)
class Refusal:
    """A registrant refused lately for a quota or its rate (status page)."""

    registrant: ChildKey
    source: Addr
    reason: str
    count: int
    first: float
    last: float


@dataclass(slots=True)
class _PendingNotify:
    data: bytes
    dest: Addr
    key: bytes | None
    eid: Eid
    attempt: int = 0


class MapServerRole:
    """Registrations we hold for every registrant, and what follows from them."""

    timer_keys: Final = (ExpireChild, NotifyRetry)

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        limits = ctx.config.limits
        self._pending_notifies: dict[tuple[int, IPAddress], _PendingNotify] = {}
        #: Map-Register records per registrant (identity and source).
        self._register_buckets: Buckets[tuple[ChildKey, IPAddress]] = Buckets(
            limits.registrant_rate, limits.registrant_burst, limits.max_registrants
        )
        #: Registrants refused lately (quota, rate): who, why, how often, when.
        self._refused: OrderedDict[tuple[ChildKey, str], Refusal] = OrderedDict()
        #: Bumped on every registration change (the data plane's list of
        #: registered RLOCs, whom its ETR decapsulates for, follows it).
        self.version = 0
        self.watch: MembershipWatch | None = None
        self.carrier: Carrier | None = None
        self.registrar: Registrar | None = None
        self.writer: CacheWriter | None = None
        self.sessions: SessionGate | None = None

    # ------------------------------------------------------------ Map-Register
    def on_register(
        self,
        msg: MapRegister,
        raw: bytes,
        src: Addr,
        now: float,
        via: IPAddress | None = None,
        took: list[tuple[Eid, ChildKey]] | None = None,
    ) -> str:
        """A Map-Register from src: "" when accepted, else why not. `via`
        names the member that carried a plain xTR's on to us (on_relayed);
        `took`, given for a reliable-transport session's (no Map-Notify
        then), gets each (EID, registrant) stored or removed."""
        ms, out = self.ctx.ms, self.ctx.out
        eids = [Eid.from_wire(r.eid, r.mask_len) for r in msg.records]
        site, reason = ms.authorize(msg, raw, eids)
        if site is None:
            out.reject(src, reason, eids[0] if eids else None)
            return reason
        carrier = self.carrier
        if (
            via is not None
            and not site.relay
            and not (carrier and carrier.relayed_by(via))
        ):
            # Only what plain xTRs (or, to a relay, NAT'd members) sent it.
            out.reject(src, "relay-refused", eids[0])
            return "relay-refused"
        revocations: tuple[Revocation, ...] = ()
        if site.signed:
            trust = self.ctx.trust
            assert trust is not None
            judged = trust.judge(
                msg.nonce,
                msg.xtr_id,
                msg.site_id,
                msg.records,
                eids,
                src[0],
                ms.db,
                now,
            )
            if judged.reason:
                cert = judged.certificate
                out.reject(src, judged.reason, eids[0], cert.name if cert else None)
                return judged.reason
            # The signature locator is for us, not for the mapping.
            msg = dataclasses.replace(msg, records=judged.records)
            revocations = judged.revocations
        # Replays first, so that replaying a registrant's traffic cannot
        # spend its rate allowance.
        replay = ms.replay
        slot = ms.slot(site, msg, src)
        if not site.relaxed_nonces:
            verdict = replay.check(slot, src[0], msg.nonce)
            if verdict is not Verdict.FRESH:
                out.reject(src, verdict.reason, eids[0])
                # Only the member it registered to talks to the xTR.
                if verdict is not Verdict.DUPLICATE and msg.alg_id and via is None:
                    held = HeldRegister(msg, raw, tuple(eids), site)
                    self._challenge(held, slot, src, now)
                return verdict.reason
        who = slot[1]
        if not self._register_buckets.take((who, src[0]), now, len(msg.records)):
            self._refuse(who, src, "registrant-rate", eids[0], now)
            return "registrant-rate"
        if not site.relaxed_nonces:
            if not replay.room_for(slot, src[0], ms.holds):
                self._refuse(who, src, "nonce-marks-full", eids[0], now)
                return "nonce-marks-full"
            replay.accept(slot, src[0], msg.nonce, now)
        self._accepted(msg, raw, eids, site, src, now, via, took)
        for rev in revocations:
            self.learn(rev, now)
        return ""

    def on_relayed(
        self,
        ecm: EncapsulatedControlMessage,
        inner: MapRegister,
        data: bytes,
        src: Addr,
        now: float,
    ) -> None:
        """A plain xTR's Map-Register that a member carried on to us in an
        ECM: only a member may, and it is checked with the xTR's own key."""
        assert self.carrier is not None
        if not self.carrier.vouches(src[0]):
            self.ctx.out.drop(src, "relay-not-member")
            return
        # The HMAC covers the registrant's bytes as sent, not a re-encoding.
        raw = decode_udp_packet(data[4:]).payload
        self.on_register(inner, raw, (ecm.inner_src, ecm.inner_sport), now, src[0])

    def _challenge(self, held: HeldRegister, slot: Slot, src: Addr, now: float) -> None:
        """Ask the registrant to confirm a Map-Register refused for its nonce
        alone (decent.peer.replay): its records, signed alike, under its low 32
        nonce bits (its own) above 32 fresh ones (no old answer replays)."""
        out = self.ctx.out
        key = held.site.key(held.msg.key_id)
        challenge = (held.msg.nonce & MASK32) << 32 | out.nonce() & MASK32
        if key is None or not self.ctx.ms.replay.challenge(
            slot, held.msg.nonce, src, held, challenge, now
        ):
            out.counters[C.RESYNC_BUSY] += 1
            return
        notify = MapNotify(challenge, held.msg.records, held.msg.key_id)
        out.send(notify.signed(key, held.msg.alg_id).encode(), src, "challenge")

    def _confirmed(self, msg: MapNotifyAck, raw: bytes, src: Addr, now: float) -> bool:
        """A registrant's answer to our challenge: apply it (False: not ours)."""
        replay = self.ctx.ms.replay
        challenge = replay.pending(msg.nonce, now)
        if challenge is None:
            return False
        site, register = challenge.held.site, challenge.held.msg
        key = site.key(register.key_id)
        if key is None or msg.alg_id not in site.algorithms or not check_auth(raw, key):
            self.ctx.out.drop(src, "auth-failed")
            return True
        replay.confirm(msg.nonce, now)
        self.ctx.out.counters[C.RESYNC_CONFIRMED] += 1
        held = challenge.held
        self._accepted(register, held.raw, list(held.eids), site, challenge.src, now)
        return True

    def _refuse(
        self, who: ChildKey, src: Addr, reason: str, eid: Eid | None, now: float
    ) -> None:
        """Over a quota or rate: say so, and show it (bounded table)."""
        self.ctx.out.reject(src, reason, eid)
        key = (who, reason)
        seen = self._refused.pop(key, None)
        if seen is None:
            seen = Refusal(who, src, reason, 0, now, now)
            if len(self._refused) >= self.ctx.config.limits.refused_shown:
                self._refused.popitem(last=False)
        seen.count, seen.last, seen.source = seen.count + 1, now, src
        self._refused[key] = seen

    def refused_registrants(self) -> list[Refusal]:
        """Registrants refused lately for a quota or their rate, newest last."""
        return list(self._refused.values())

    def _accepted(
        self,
        msg: MapRegister,
        raw: bytes,
        eids: list[Eid],
        site: Site,
        src: Addr,
        now: float,
        via: IPAddress | None = None,
        took: list[tuple[Eid, ChildKey]] | None = None,
    ) -> None:
        out = self.ctx.out
        if msg.alg_id == 0:
            out.counters[C.ACCEPT_UNAUTHENTICATED] += 1
            out.emit(UnauthenticatedAccepted(src, site.name))
        elif msg.reliable and via is None and took is None and self.sessions:
            # A session only from an ETR whose UDP r-bit register we checked.
            self.sessions.authorize(src[0], now)
        self.apply(RegisterIntent.from_register(msg, via), eids, site, src, now, took)
        carrier = self.carrier
        assert carrier is not None
        carried = carrier.accepted(src, raw, zip(eids, msg.records, strict=False), now)
        if via is not None:
            out.counters[C.RELAYED_ACCEPTED] += 1
            return
        if carried or site.relay:
            # RFC 9962 4: every member holds every mapping, a plain xTR's
            # (or a member's behind NAT) too, though it registered to us.
            out.counters[C.RELAYED_SENT] += 1
            carrier.relay_register(raw, src)
        if msg.want_map_notify and took is None:
            # RFC 9301 5.7: nonce and records, signed with the site key, and
            # only for a Map-Register that passed authentication.
            key = site.key(msg.key_id) if msg.alg_id else None
            out.send(map_notify_for(raw, key), src, "map-notify")

    def apply(
        self,
        msg: RegisterIntent,
        eids: list[Eid],
        site: Site,
        src: Addr,
        now: float,
        took: list[tuple[Eid, ChildKey]] | None = None,
    ) -> None:
        """Store an authorized registration and act on what it changed."""
        ctx = self.ctx
        out, timers = ctx.out, ctx.timers
        for ch in ctx.ms.apply(msg, eids, site, src, now):
            if ch.refused:
                self._refuse(ch.child, src, ch.refused, ch.eid, now)
                continue
            if took is not None:
                took.append((ch.eid, ch.child))
            self.version += 1
            timer = ExpireChild(ch.eid, ch.child)
            if ch.removed:
                timers.cancel(timer)
                # Removed: the whole entry, or one child others still hold.
                if ch.entry is not None or ch.changed:
                    out.counters[C.REGISTRATION_REMOVED] += 1
                    out.emit(RegistrationRemoved(ch.eid, msg.xtr_id))
            else:
                assert ch.entry is not None
                # A refresh only moves the expiry later; the armed timer re-arms
                # on finding the child renewed (_expire_child): no heap push.
                expires = ch.entry.children[ch.child].expires
                armed = timers.when(timer)
                if expires != math.inf and (armed is None or armed > expires):
                    timers.set(timer, expires)
                out.counters[C.REGISTRATION_ACCEPTED] += 1
                out.emit(
                    RegistrationAccepted(
                        ch.eid, site.name, src, msg.xtr_id, ch.new, msg.via
                    )
                )
            if ch.changed and ch.entry is not None and ch.entry.merge:
                self._notify_members(ch.entry, now)
            elif ch.changed and self.writer is not None:
                self.writer.refresh(ch.eid, now)  # our ITR's cache follows
            if ch.changed and ch.eid == ctx.group_eid:
                assert self.watch is not None
                self.watch.membership_changed(now)

    def _expire_child(self, eid: Eid, child: ChildKey, now: float) -> None:
        ctx = self.ctx
        ch = ctx.ms.expire(eid, child, now)
        if ch is None:
            # Renewed since: wait for the new expiry (none while pinned by a
            # reliable-transport session, decent.peer.transport).
            entry = ctx.ms.db.get(eid)
            renewed = None if entry is None else entry.children.get(child)
            if renewed is not None and renewed.expires != math.inf:
                ctx.timers.set(ExpireChild(eid, child), renewed.expires)
            return
        self.version += 1
        ctx.out.counters[C.REGISTRATION_EXPIRED] += 1
        ctx.out.emit(
            RegistrationExpired(eid, child if isinstance(child, int) else None)
        )
        if ch.changed and ch.entry is not None and ch.entry.merge:
            self._notify_members(ch.entry, now)

    def restore(
        self,
        eid: Eid,
        site: str,
        merge: bool,
        proxy: bool,
        children: list[Registration],
        now: float,
    ) -> SiteEntry | None:
        """Reinstate a registration from a snapshot (see Node)."""
        ms = self.ctx.ms
        # A snapshot's clock may be off: no child outlives its lifetime now.
        for child in children:
            child.expires = min(
                child.expires, now + ms.lifetime(child.record, child.ttl_timeout)
            )
        # Not our own: we re-register at once, and a mapping removed from
        # the config must not live on from a snapshot.
        own = self.ctx.config.xtr_id
        alive = [c for c in children if c.expires > now and c.xtr_id != own]
        entry = ms.restore(eid, site, merge, proxy, alive)
        if entry is None:
            return None
        self.version += 1
        for key, child in entry.children.items():
            self.ctx.timers.set(ExpireChild(eid, key), child.expires)
        return entry

    # ------------------------------------------------------------ revocations
    def take_revocation(self, data: bytes, now: float) -> str:
        """An encoded revocation from the operator or a snapshot: "" when
        taken, else why not."""
        trust = self.ctx.trust
        if trust is None:
            return "no-trust"
        try:
            rev = Revocation.decode(data)
        except DecodeError:
            return "revocation-malformed"
        reason = trust.verify_revocation(rev)
        if reason:
            return reason
        return "" if self.learn(rev, now) else "revocation-known-or-expired"

    def learn(self, rev: Revocation, now: float) -> bool:
        """A verified revocation: keep it, drop every registration of the
        revoked node (its membership too) and what our map-cache learned of
        them, and register the revocation ourselves so that it keeps
        spreading even if whoever started it goes away."""
        ctx = self.ctx
        trust = ctx.trust
        assert trust is not None
        if not trust.revoke(rev, now):
            return False
        ctx.out.counters[C.REVOCATION_LEARNED] += 1
        ctx.out.emit(RevocationLearned(rev.name, rev.serial))
        for ch in ctx.ms.drop(node_xtr_id(rev.public_key)):
            self.version += 1
            ctx.timers.cancel(ExpireChild(ch.eid, ch.child))
            ctx.out.emit(RegistrationRemoved(ch.eid, node_xtr_id(rev.public_key)))
            if ch.entry is None and self.writer is not None:
                addr, mask = ch.eid.to_wire()
                self.writer.install(ch.eid, MapRecord(addr, mask, (), 0), "local", now)
            if ch.changed and ch.entry is not None and ch.entry.merge:
                self._notify_members(ch.entry, now)
            elif ch.changed and self.writer is not None:
                self.writer.refresh(ch.eid, now)  # our ITR's cache follows
            if ch.changed and ch.eid == ctx.group_eid:
                assert self.watch is not None
                self.watch.membership_changed(now)
        eid = revocation_eid(rev, ctx.config.group_iid)
        record = trust.revocation_record(rev, ctx.config.group_iid, 3)
        ctx.database.insert(
            eid,
            DatabaseMapping(
                eid, record.locators, ttl=_REVOCATION_TTL, want_map_notify=False
            ),
        )
        if self.registrar is not None:
            self.registrar.register_soon(now)
        return True

    def forget_revocations(self, now: float) -> None:
        """Revocations whose certificates have expired anyway go."""
        trust = self.ctx.trust
        if trust is None:
            return
        for rev in trust.expire(now):
            self.ctx.database.remove(revocation_eid(rev, self.ctx.config.group_iid))

    # ------------------------------------------------------------ Map-Notify
    def _notify_members(self, entry: SiteEntry, now: float) -> None:
        """RFC 8378 5.3: tell every member of a merged entry its new RLE."""
        ctx = self.ctx
        config, out = ctx.config, ctx.out
        members = [m for m in entry.members() if not ctx.own(m)]
        out.emit(MergedSetChanged(entry.eid, len(entry.members())))
        site = next(s for s in ctx.ms.sites if s.name == entry.site)
        key_id, key = site.keys[0] if site.keys else (0, None)
        eid_addr, mask = eid_on_wire(entry.eid, config.wire_form)
        record = dataclasses.replace(entry.record, eid=eid_addr, mask_len=mask)
        # It supersedes any still retransmitted: an older set would undo it.
        stale = [k for k, p in self._pending_notifies.items() if p.eid == entry.eid]
        for slot in stale:
            del self._pending_notifies[slot]
            ctx.timers.cancel(NotifyRetry(*slot))
        for member in members:
            nonce = out.nonce()
            notify = MapNotify(nonce, (record,), key_id)
            if key is not None:
                notify = notify.signed(key, config.register_alg)
            data = notify.encode()
            dest = (member, config.control_port)
            self._pending_notifies[(nonce, member)] = _PendingNotify(
                data, dest, key, entry.eid
            )
            out.send(data, dest, "map-notify")
            ctx.timers.set(
                NotifyRetry(nonce, member), now + config.notify_retry_intervals[0]
            )

    def _notify_retry(self, nonce: int, peer: IPAddress, now: float) -> None:
        # An ack or a newer notify cancels this timer: still outstanding.
        out = self.ctx.out
        pending = self._pending_notifies[(nonce, peer)]
        pending.attempt += 1
        intervals = self.ctx.config.notify_retry_intervals
        if pending.attempt > len(intervals):
            # RFC 9301 5.7: a bounded number of times (some never ack, gotcha 14).
            del self._pending_notifies[(nonce, peer)]
            out.counters[C.NOTIFY_GAVE_UP] += 1
            out.emit(NotifyGaveUp(pending.dest, nonce))
            return
        out.send(pending.data, pending.dest, "map-notify")
        interval = intervals[min(pending.attempt, len(intervals) - 1)]
        self.ctx.timers.set(NotifyRetry(nonce, peer), now + interval)

    def on_notify_ack(
        self, msg: MapNotifyAck, raw: bytes, src: Addr, now: float
    ) -> None:
        if self._confirmed(msg, raw, src, now):
            return
        ctx = self.ctx
        slot = (msg.nonce, src[0])
        pending = self._pending_notifies.get(slot)
        if pending is None:
            ctx.out.drop(src, "unsolicited-notify-ack")
            return
        key = pending.key
        if key is not None and not authentic(ctx.config, msg.alg_id, raw, key):
            ctx.out.drop(src, "auth-failed")
            return
        del self._pending_notifies[slot]
        ctx.timers.cancel(NotifyRetry(msg.nonce, src[0]))
        ctx.out.emit(NotifyAcknowledged(src, msg.nonce))

    # ------------------------------------------------------------ upkeep
    def handle_timer(self, key: Hashable, now: float) -> None:
        if isinstance(key, ExpireChild):
            self._expire_child(key.eid, key.child, now)
        elif isinstance(key, NotifyRetry):  # pragma: no branch - routed by type
            self._notify_retry(key.nonce, key.peer, now)

    def sweep(self, now: float) -> None:
        self.forget_revocations(now)
        self._register_buckets.prune(now)
        self.ctx.ms.replay.prune(now, self.ctx.ms.holds)

    def sizes(self) -> dict[str, int]:
        return {
            "pending_notifies": len(self._pending_notifies),
            "register_buckets": len(self._register_buckets),
            "refused_registrants": len(self._refused),
            **self.ctx.ms.replay.sizes(),
        }
