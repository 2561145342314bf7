"""The ETR role: our database registered, Map-Notifies answered, SMRs sent.

It registers every database mapping to the Map-Servers the mapping
system names, periodically (quickly after a start or a change, often
enough for short TTLs, soon while alone in a group) and retransmits until
acknowledged; it answers Map-Notifies, confirming a Map-Server's nonce
challenge only for what it registers now; and when a mapping changes it
SMRs the ITRs that recently sent to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Final

from decent.peer.config import Addr, DatabaseMapping
from decent.peer.context import (
    MASK32,
    MASK64,
    CacheWriter,
    Ctx,
    authentic,
    register_record,
)
from decent.peer.events import RegisterAcknowledged
from decent.peer.mapping.system import MappingSystem
from decent.wire import (
    NO_ADDRESS,
    AlgorithmId,
    Eid,
    IPAddress,
    Locator,
    MapNotify,
    MapNotifyAck,
    MapRecord,
    MapRegister,
    MapRequest,
    RequestRecord,
    check_auth,
    encode_record,
    map_register_bytes,
    rle_entries,
    sign_bytes,
)
from decent.wire.auth import AUTH_LENGTH

#: How many of its latest Map-Register nonces an ETR confirms when a Map-
#: Server challenges one (decent.peer.replay): a round of registrations,
#: however many Map-Registers it takes.
_SENT_REMEMBERED: Final = 256
_MIN: Final = 60.0
#: Registrations per registration lifetime, at least: RFC 9301 8.2's own
#: ratio (60 s period, 3 min timeout), so two lost Map-Registers in a row
#: still do not let a registration lapse.
_REFRESHES_PER_LIFETIME: Final = 3


#: A Map-Register's P, M and want-Map-Notify bits.
Flags = tuple[bool, bool, bool]


@dataclass(frozen=True, slots=True)
class RegisterTick:
    """Time for the ETR's periodic (or quick) registration."""


@dataclass(frozen=True, slots=True)
class RegisterRetry:
    nonce: int


@dataclass(frozen=True, slots=True)
class SmrAgain:
    """Second round of SMRs after our RLOCs changed (see Node.change_rlocs)."""


@dataclass(slots=True)
class _PendingRegister:
    records: tuple[MapRecord, ...]
    flags: Flags
    #: Map-Servers whose Map-Notify has not arrived yet.
    awaiting: set[Addr]
    attempt: int = 0


class EtrRole:
    """Our registrations: when they go, where, and what answers them."""

    timer_keys: Final = (RegisterTick, RegisterRetry, SmrAgain)

    def __init__(
        self,
        ctx: Ctx,
        mapping: MappingSystem,
        writer: CacheWriter,
        register_nonce: int,
        now: float,
    ) -> None:
        self.ctx = ctx
        self.mapping = mapping
        self.writer = writer
        config = ctx.config
        self.register_nonce = register_nonce
        #: Our Map-Register nonces run up by one from here (this process's).
        self._first_nonce = register_nonce
        #: Every EID this node has registered since it started: a Map-Notify
        #: about one of them is a question about our registrations.
        self._registered: set[Eid] = set()
        self._pending_registers: dict[int, _PendingRegister] = {}
        self._sig_room: int | None = None
        self.recent_itrs: dict[Eid, dict[IPAddress, float]] = {}
        # RFC 9301 8.2 quick registration after a (re)start: every 20 s for
        # 5 minutes, so a registration lost on the way is soon repeated.
        self.quick_until = now + config.quick_register_period
        self._bootstrap_backoff = 0.5
        #: Called after each registration round and each deregistration: the
        #: reliable-transport sessions send what changed (decent.peer.transport).
        self.registered: Callable[[float], None] | None = None
        #: What a mapping goes to the group as (NAT traversal rewrites it).
        self.rewrite: Callable[[DatabaseMapping], DatabaseMapping] = lambda m: m
        if self._registers():
            ctx.timers.set(RegisterTick(), now)

    def _registers(self) -> bool:
        config = self.ctx.config
        return bool(
            config.database
            and (config.map_servers or config.outside_map_servers or config.pull)
        )

    # ------------------------------------------------------------ local calls
    def set_locators(self, eid: Eid, locators: tuple[Locator, ...], now: float) -> None:
        """Change (or add) a database mapping's RLOC set, as a mobile node does
        when its address changes: register at once, keep registering quickly
        for a while (RFC 9301 8.2), and SMR the ITRs that recently used it."""
        database = self.ctx.database
        old = database.get(eid)
        mapping = (
            dataclasses.replace(old, locators=locators)
            if old is not None
            else DatabaseMapping(eid, locators)
        )
        database.insert(eid, mapping)
        self.quick_until = now + self.ctx.config.quick_register_period
        # Register before the SMRs leave: an SMR'd ITR asks the mapping
        # system, which must already hold the new locators when it does.
        self._register_tick(now)
        self._send_smrs(eid, now)

    def moved(self, now: float) -> None:
        """Our RLOCs changed: register at once, quickly for a while, and SMR
        the ITRs recently sending to us (LISP-MN)."""
        self.quick_until = now + self.ctx.config.quick_register_period
        # Register before the SMRs leave, so the mapping system holds the new
        # locators when an SMR'd ITR asks it (RFC 9301 6.1).
        self._register_tick(now)
        self._smr_all(now)
        # The SMR and the Map-Register travel apart (control port, and data
        # port when replicated): an ITR whose Map-Server had not heard the
        # new registration yet re-resolved the old locators. One more round,
        # a second after the ITR's SMR rate limit lets it act again, fixes it.
        self.ctx.timers.set(SmrAgain(), now + self.ctx.config.smr_interval + 1.0)

    def deregister(self, now: float, eids: Iterable[Eid] | None = None) -> None:
        """TTL-0 Map-Registers for eids (all when None); they leave the
        database too, or the next round would register them again."""
        database = self.ctx.database
        wanted = None if eids is None else set(eids)  # eids may be one-shot
        chosen = [m for e, m in database.items() if wanted is None or e in wanted]
        self._register(chosen, now, ttl_zero=True)
        for mapping in chosen:
            database.remove(mapping.eid)
        if self.registered is not None:
            self.registered(now)

    def note_itr(self, eid: Eid, rloc: IPAddress, now: float) -> None:
        """Record that an ITR at rloc recently sent us traffic for eid, so a
        change of eid's mapping SMRs it (RFC 9301 6.1). At most
        `recent_itrs` per EID, the most recent: requesters can claim any
        ITR-RLOC, and each would get an SMR."""
        itrs = self.recent_itrs.setdefault(eid, {})
        itrs.pop(rloc, None)
        itrs[rloc] = now
        if len(itrs) > self.ctx.config.limits.recent_itrs:
            del itrs[next(iter(itrs))]

    def register_soon(self, now: float) -> None:
        """A new member appeared: register within 10 ms, not at the period."""
        if not self._registers():
            return
        soon = now + 0.01
        when = self.ctx.timers.when(RegisterTick())
        if when is None or when > soon:
            self.ctx.timers.set(RegisterTick(), soon)

    # ------------------------------------------------------------ Map-Notify
    def _about_us(self, records: tuple[MapRecord, ...]) -> str:
        """What a Map-Notify's records say of our own registrations:
        "current", exactly what we register now (a Map-Server asks us to
        confirm it, decent.peer.replay); "stale", one of our EIDs as we do
        not register it now, or one we once registered (a replay someone
        wants us to confirm); "other" for the rest: the merged set of a
        group that lists us (RFC 8378 5.3), mappings of EIDs never ours."""
        verdict = "current" if records else "other"
        for rec in records:
            eid = Eid.from_wire(rec.eid, rec.mask_len)
            mapping = self.ctx.database.get(eid)
            mapping = None if mapping is None else self.rewrite(mapping)  # as sent
            if mapping is not None and rec == register_record(
                mapping, wire_form=self.ctx.config.wire_form
            ):
                continue
            if mapping is not None and mapping.merge and rec.ttl > 0:
                if not self._listed(rec):
                    return "stale"
                verdict = "other"
            elif mapping is None and eid not in self._registered:
                verdict = "other"
            else:
                return "stale"
        return verdict

    def _sent_lately(self, low: int) -> bool:
        """Whether one of our latest Map-Registers (this process's) had a
        nonce with these low 32 bits: they are sequential, so a range."""
        back = (self.register_nonce - low) & MASK32
        sent = (self.register_nonce - self._first_nonce) & MASK64
        return back < min(sent, _SENT_REMEMBERED)

    def _listed(self, rec: MapRecord) -> bool:
        """Whether a merged record's RLE names one of our RLOCs."""
        return any(
            self.ctx.own(entry.address)
            for loc in rec.locators
            for entry in rle_entries(loc)
        )

    def on_notify(self, msg: MapNotify, raw: bytes, src: Addr, now: float) -> None:
        config = self.ctx.config
        key, alg = config.credentials(src)
        if key and not (
            authentic(config, msg.alg_id, raw, key)
            if key == config.register_key
            else msg.alg_id == alg and check_auth(raw, key)
        ):
            self.ctx.out.drop(src, "auth-failed")
            return
        pending = self._pending_registers.get(msg.nonce)
        if pending is not None:
            pending.awaiting.discard(src)
            if not pending.awaiting:
                del self._pending_registers[msg.nonce]
                self.ctx.timers.cancel(RegisterRetry(msg.nonce))
            self.ctx.out.emit(RegisterAcknowledged(src, msg.nonce))
            return
        about_us = self._about_us(msg.records)
        if about_us != "other":
            if about_us == "current" and self._sent_lately(msg.nonce >> 32):
                # A Map-Server re-synchronising our nonce (decent.peer.replay)
                # asks us to confirm one of our latest Map-Registers, which
                # says what we register now: yes (nothing to cache).
                ack = MapNotifyAck(msg.nonce, msg.records, msg.key_id)
                if key:
                    ack = ack.signed(key, alg)
                self.ctx.out.send(ack.encode(), src, "map-notify-ack")
            else:
                # Never acknowledged: the Map-Server would take it as our
                # word for an old Map-Register of ours, or someone else's.
                self.ctx.out.drop(src, "not-our-registration")
            return
        # An unsolicited Map-Notify (RFC 8378 membership change, RFC 9437
        # publication): cache what it carries and acknowledge it. All EIDs
        # first, so an unusable record drops the whole message (not half).
        eids = [Eid.from_wire(rec.eid, rec.mask_len) for rec in msg.records]
        for eid, rec in zip(eids, msg.records, strict=True):
            self.writer.install(eid, rec, "map-notify", now)
        ack = MapNotifyAck(msg.nonce, msg.records, msg.key_id)
        if key:
            ack = ack.signed(key, alg)
        self.ctx.out.send(ack.encode(), src, "map-notify-ack")

    def _register_tick(self, now: float) -> None:
        # A round carries the whole database: it replaces unanswered
        # retransmissions (not one more chain per period while a Map-Server
        # is down) and continues their back-off (RFC 9301 5.7).
        attempt = 0
        for nonce, pending in self._pending_registers.items():
            self.ctx.timers.cancel(RegisterRetry(nonce))
            attempt = max(attempt, pending.attempt + 1)
        self._pending_registers.clear()
        mappings = [m for _, m in self.ctx.database.items()]
        self._register(mappings, now, attempt=attempt)
        interval = self.ctx.config.register_interval
        # With the T bit a record's TTL is its registration lifetime, so a
        # short one (a mobile node's minute) would lapse between rounds:
        # register often enough for every mapping, the whole database each
        # time (one schedule for retransmission, quick and bootstrap rounds).
        shortest = min((m.ttl for m in mappings if m.ttl > 0), default=None)
        if shortest is not None:
            interval = min(interval, shortest * _MIN / _REFRESHES_PER_LIFETIME)
        if now < self.quick_until:
            # Quick registration may only make registering more frequent.
            interval = min(interval, self.ctx.config.quick_register_interval)
        if self.mapping.alone():
            # A member no peer has answered yet (its seed still starting)
            # retries soon, backing off to the quick-registration interval.
            self._bootstrap_backoff = min(
                2.0 * self._bootstrap_backoff, self.ctx.config.quick_register_interval
            )
            interval = min(interval, self._bootstrap_backoff)
        # RFC 9301 8.2 suggests jitter so a fleet does not register in step.
        jitter = (
            (self.ctx.out.nonce() % 1000) / 1000.0 * self.ctx.config.register_jitter
        )
        self.ctx.timers.set(RegisterTick(), now + interval * (1.0 - jitter))
        if self.registered is not None:
            self.registered(now)

    def _register(
        self,
        mappings: list[DatabaseMapping],
        now: float,
        ttl_zero: bool = False,
        attempt: int = 0,
    ) -> None:
        self._registered.update(m.eid for m in mappings)
        config = self.ctx.config
        for targets, of in self.mapping.register_sets(mappings):
            for flags, batch, body, _ in self._group_batches(of, ttl_zero, True):
                self._send_register(batch, flags, now, targets, attempt, body)
        # An outside Map-Server holds our EID-prefixes, not the group's
        # membership nor our name, and acknowledges each Map-Register (RFC
        # 9301 5.7: retransmitted until it does).
        outside = [
            register_record(m, ttl_zero)
            for m in mappings
            if not m.eid.is_name and m.eid.group is None
        ]
        for ms in config.outside_map_servers if outside else ():
            for batch, body in self._batches(outside):
                flags = (True, False, not ttl_zero)
                self._send_register(
                    batch, flags, now, (ms.address,), attempt=attempt, body=body
                )

    def _signature_room(self) -> int:
        """The bytes our signature locator takes in a group Map-Register."""
        trust = self.ctx.trust
        if trust is None:
            return 0
        if self._sig_room is None:
            probe = MapRecord(NO_ADDRESS, 0, (), 0)
            signed = trust.sign(0, 0, 0, (probe,))[0]
            self._sig_room = len(encode_record(signed)) - len(encode_record(probe))
        return self._sig_room

    def _batches(
        self, records: list[MapRecord], room: int = 0
    ) -> Iterable[tuple[tuple[MapRecord, ...], bytes]]:
        """Records packed into Map-Registers, with their encoding: header,
        32-byte MAC and xTR-ID trailer, then records up to the configured
        size (lispers.net packs up to 1100 bytes), less `room` for our
        signature."""
        budget = self.ctx.config.max_register_size - 16 - 32 - 24 - room
        batch: list[MapRecord] = []
        chunks: list[bytes] = []
        used = 0
        for rec in records:
            data = encode_record(rec)
            if batch and used + len(data) > budget:
                yield tuple(batch), b"".join(chunks)
                batch, chunks, used = [], [], 0
            batch.append(rec)
            chunks.append(data)
            used += len(data)
        yield tuple(batch), b"".join(chunks)  # records is never empty

    def _send_register(
        self,
        records: tuple[MapRecord, ...],
        flags: Flags,
        now: float,
        targets: tuple[Addr, ...] | None = None,
        attempt: int = 0,
        body: bytes | None = None,
    ) -> None:
        """Send one Map-Register. `body` is the records' encoding if known."""
        want_notify = flags[2]
        if targets is None:
            targets = self.mapping.register_targets()
        data = self._register_bytes(records, flags, targets[0], body)
        self.mapping.send_register(data, targets)
        if want_notify:
            # RFC 9301 5.7: retransmit after 1 s, doubling up to 60 s.
            self._pending_registers[self.register_nonce] = _PendingRegister(
                records, flags, set(targets), attempt
            )
            self.ctx.timers.set(
                RegisterRetry(self.register_nonce), now + min(2.0**attempt, 60.0)
            )

    def session_registers(
        self, mappings: list[DatabaseMapping], ttl_zero: bool = False
    ) -> Iterable[tuple[tuple[DatabaseMapping, ...], bytes]]:
        """Our group Map-Registers for a reliable-transport session, with the
        mappings each carries: signed like the UDP ones, but asking for no
        Map-Notify (the session's ACKs acknowledge them)."""
        self._registered.update(m.eid for m in mappings)
        for flags, batch, body, carried in self._group_batches(mappings, ttl_zero):
            yield carried, self._register_bytes(batch, flags, None, body)

    def _group_batches(
        self, mappings: list[DatabaseMapping], ttl_zero: bool, notify: bool = False
    ) -> Iterable[
        tuple[Flags, tuple[MapRecord, ...], bytes, tuple[DatabaseMapping, ...]]
    ]:
        """Our group registrations of `mappings`, grouped by the flags they
        need (a Map-Notify asked for only with `notify`) and packed into
        Map-Register bodies: (flags, records, their encoding, mappings)."""
        wire_form = self.ctx.config.wire_form
        groups: dict[Flags, dict[MapRecord, DatabaseMapping]] = {}
        for m in mappings:
            sent = self.rewrite(m)
            want = notify and m.want_map_notify and not ttl_zero
            record = register_record(sent, ttl_zero, wire_form)
            groups.setdefault((m.proxy_reply, m.merge, want), {})[record] = m
        room = self._signature_room()
        for flags, of in groups.items():
            for batch, body in self._batches(list(of), room):
                yield flags, batch, body, tuple(of[r] for r in batch)

    def _register_bytes(
        self,
        records: tuple[MapRecord, ...],
        flags: Flags,
        target: Addr | None,
        body: bytes | None,
    ) -> bytes:
        """One signed Map-Register, with the next nonce (target None: for a
        session). Its r bit asks the group for sessions when we want them."""
        proxy, merge, want_notify = flags
        self.register_nonce = (self.register_nonce + 1) & MASK64
        config = self.ctx.config
        reliable = target in config.map_servers and config.reliable_anywhere
        target = target or config.map_servers[0]
        key, alg = config.credentials(target)
        alg = alg if key else AlgorithmId.NONE
        auth = bytes(AUTH_LENGTH[alg]) if key else b""
        head = MapRegister(
            self.register_nonce,
            (),
            0,
            alg,
            auth,
            proxy_reply=proxy,
            ttl_timeout=True,
            merge=merge,
            want_map_notify=want_notify,
            xtr_id=config.xtr_id,
            site_id=config.site_id,
            reliable=reliable and bool(key),
        )
        trust = self.ctx.trust
        outside = {ms.address for ms in config.outside_map_servers}
        if trust is not None and target not in outside:
            # Group registrations carry our certificate and signature
            # (decent.peer.trust); outside Map-Servers know nothing of them.
            records = trust.sign(
                self.register_nonce, config.xtr_id, config.site_id, records
            )
            body = None
        # MapRegister(records).signed(key).encode(), each record encoded once.
        if body is None:
            body = b"".join(encode_record(r) for r in records)
        data = map_register_bytes(head, len(records), body)
        return sign_bytes(data, key) if key else data

    def _register_retry(self, nonce: int, now: float) -> None:
        """RFC 9301 5.7: no Map-Notify yet, so send again, with a fresh nonce
        (the Map-Server drops repeated ones), to the Map-Servers still silent.

        The records are rebuilt from the database: a mapping changed since
        (set_locators) must not be re-registered in its old form, and one
        deregistered since must not come back.
        """
        pending = self._pending_registers.pop(nonce)
        mappings = (
            self.ctx.database.get(Eid.from_wire(r.eid, r.mask_len))
            for r in pending.records
        )
        wire_form = self.ctx.config.wire_form
        records = tuple(
            register_record(m, wire_form=wire_form) for m in mappings if m is not None
        )
        if records:
            self._send_register(
                records,
                pending.flags,
                now,
                tuple(pending.awaiting),
                attempt=pending.attempt + 1,
            )

    def _send_smrs(self, eid: Eid, now: float) -> None:
        itrs = self.recent_itrs.get(eid, {})
        addr, mask = eid.to_wire()
        for itr, seen in itrs.items():
            if now - seen > self.ctx.config.recent_itr_window:
                continue
            own = self.ctx.itr_rloc(itr.version)
            if own is None:
                continue
            smr = MapRequest(
                self.ctx.out.nonce(),
                (RequestRecord(addr, mask),),
                (own,),
                source_eid=addr,
                smr=True,
            )
            self.ctx.out.send(smr.encode(), (itr, self.ctx.config.control_port), "smr")

    def _smr_all(self, now: float) -> None:
        for eid, _ in self.ctx.database.items():
            self._send_smrs(eid, now)

    def handle_timer(self, key: Hashable, now: float) -> None:
        if isinstance(key, RegisterTick):
            self._register_tick(now)
        elif isinstance(key, RegisterRetry):
            self._register_retry(key.nonce, now)
        elif isinstance(key, SmrAgain):  # pragma: no branch - routed by type
            self._smr_all(now)

    def sweep(self, now: float) -> None:
        window = self.ctx.config.recent_itr_window
        for eid in list(self.recent_itrs):
            itrs = self.recent_itrs[eid]
            for rloc in [r for r, t in itrs.items() if now - t > window]:
                del itrs[rloc]
            if not itrs:
                del self.recent_itrs[eid]

    def sizes(self) -> dict[str, int]:
        return {
            "pending_registers": len(self._pending_registers),
            "recent_itrs": len(self.recent_itrs),
        }
