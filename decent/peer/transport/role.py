"""Registrations over reliable-transport sessions (Map-Server reliable transport).

Theory of operation
-------------------
Every member is a Map-Server, so a node keeps up to two sessions with each
peer: one it opened as an ETR (its registrations go to the peer over it)
and one the peer opened (the peer's come to us). TCP 4342; the ETR always
connects.

ETR side. Our periodic UDP Map-Registers carry the r bit while reliable
transport is on. A moment after one (`reliable_connect_delay`, so that it
has reached the peer and authorised us there) we ask the shell to connect
to each peer we want a session with (`take_connects`). The Map-Server
opens with a Registration-Refresh: we answer with every registration in
its scope and, from then on, send only what changes (`sync`, after each
of the ETR's registration rounds), each acknowledged by an ACK or refused
by a NACK with its reason. The peer is then left out of the periodic UDP
registration (PushMapping.by_session). When the session ends, the peer is
registered over UDP again at once, which authorises the next session;
connection attempts back off up to `reliable_retry_max`.

Map-Server side. A connection is accepted (`accept`) only from an ETR
whose UDP Map-Register with the r bit we authenticated since its last
session ended, within the session bounds (`Limits.max_sessions`,
`sessions_per_peer`). Each Registration is checked exactly as a UDP
Map-Register is (decent.peer.roles.ms) and answered per EID-record. What a
session registered never times out while it is up; when it ends, each
such registration gets its normal lifetime from that moment, so nothing
learned is lost before its TTL runs out.

Nothing here does I/O: the shell (decent.net.reliable) moves the bytes of
each session (`receive`, `pending`, `drain`, `closed`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from math import inf
from typing import Final

from decent.peer import counters as C
from decent.peer.config import Addr, ChildKey, DatabaseMapping
from decent.peer.context import Ctx
from decent.peer.events import RegistrationNacked, SessionDown, SessionUp
from decent.peer.mapping.push import PushMapping
from decent.peer.mapserver import Registration
from decent.peer.roles.etr import EtrRole
from decent.peer.roles.ms import ExpireChild, MapServerRole
from decent.peer.transport.session import Session
from decent.wire import DecodeError, Eid, IPAddress, MapRegister
from decent.wire.transport import (
    ErrorCode,
    ErrorNotification,
    MappingNotification,
    NackReason,
    RefreshScope,
    RegistrationAck,
    RegistrationNack,
    RegistrationRefresh,
    TransportMessage,
    TransportType,
    parse_body,
)

#: Why a Map-Register was refused (decent.peer.roles.ms), as a NACK reason.
_NACK_REASONS: Final = {
    "auth-failed": NackReason.AUTH_FAILED,
    "auth-required": NackReason.AUTH_FAILED,
    "algorithm-refused": NackReason.AUTH_FAILED,
    "unknown-key-id": NackReason.AUTH_FAILED,
    "signature-malformed": NackReason.AUTH_FAILED,
    "signature-missing": NackReason.AUTH_FAILED,
    "signature-invalid": NackReason.AUTH_FAILED,
    "certificate-other-key": NackReason.AUTH_FAILED,
    "no-site": NackReason.INVALID_PREFIX,
    "foreign-prefix": NackReason.INVALID_PREFIX,
    "hijack-name": NackReason.INVALID_PREFIX,
    "hijack-not-granted": NackReason.INVALID_PREFIX,
    "hijack-overlap": NackReason.INVALID_PREFIX,
    "hijack-membership": NackReason.LOCATORS_NOT_ALLOWED,
}
_NACK_TEXT: Final[dict[int, str]] = {
    NackReason.INVALID_PREFIX: "not-a-valid-prefix",
    NackReason.AUTH_FAILED: "authentication-failure",
    NackReason.LOCATORS_NOT_ALLOWED: "locator-set-not-allowed",
}


@dataclass(frozen=True, slots=True)
class SessionConnect:
    """Time to open our session to a peer."""

    peer: IPAddress


def in_scope(eid: Eid, refresh: RegistrationRefresh) -> bool:
    """Whether eid is inside a Registration-Refresh's scope."""
    scope, of = refresh.scope, refresh.eid
    if scope == RefreshScope.ALL or of is None:
        return True
    if eid.iid != of.iid:
        return False
    if scope == RefreshScope.INSTANCE:
        return True
    if scope == RefreshScope.FAMILY:
        return eid.version == of.version
    if scope == RefreshScope.COVERED:
        return of.contains(eid)
    return eid == of


class ReliableRole:
    """Both ends of our reliable-transport sessions."""

    timer_keys: Final = (SessionConnect,)

    def __init__(
        self, ctx: Ctx, etr: EtrRole, map_server: MapServerRole, mapping: PushMapping
    ) -> None:
        self.ctx = ctx
        self.etr = etr
        self.map_server = map_server
        self.mapping = mapping
        self.sessions: dict[int, Session] = {}
        self._next_sid = 1
        #: Sessions whose bytes or end the shell has not taken yet.
        self._dirty: set[int] = set()
        self._connects: list[tuple[int, IPAddress]] = []
        # ---- ETR side
        self._outbound: dict[IPAddress, int] = {}
        #: Per session: the mappings its Map-Server holds from us (or is
        #: being sent), and the EIDs it refused with their reasons.
        self._sent: dict[int, dict[Eid, DatabaseMapping]] = {}
        self._nacked: dict[int, dict[Eid, int]] = {}
        self._retry: dict[IPAddress, tuple[float, float]] = {}
        # ---- Map-Server side
        #: ETRs whose UDP Map-Register with the r bit we authenticated, when.
        self._authorized: OrderedDict[IPAddress, float] = OrderedDict()
        #: Per session: the registrations it holds, pinned (no timeout).
        self._held: dict[int, set[tuple[Eid, ChildKey]]] = {}

    # ============================================================ shell API
    def take_connects(self) -> list[tuple[int, IPAddress]]:
        """Sessions to open: (session id, peer); the shell connects to the
        peer's control port and reports `connected` or `closed`."""
        out, self._connects = self._connects, []
        return out

    def accept(self, peer: Addr, now: float) -> int | None:
        """A peer connected to us: its session id, or None to refuse it."""
        config, out = self.ctx.config, self.ctx.out
        limits = config.limits
        reason = ""
        seen = self._authorized.get(peer[0])
        if not config.reliable_with(peer[0]):
            reason = "session-not-enabled"
        elif seen is None or now - seen > config.registration_timeout:
            # The draft: no session without a UDP Map-Register with the r
            # bit authenticated first (again after each session ends).
            reason = "session-not-authenticated"
        elif len(self.sessions) >= limits.max_sessions:
            reason = "session-limit"
        if reason:
            out.drop(peer, reason)
            return None
        theirs = [s for s in self.sessions.values() if not s.etr and s.peer == peer[0]]
        for old in theirs[: max(0, len(theirs) - limits.sessions_per_peer + 1)]:
            self._end(old, "replaced", now)
        session = self._new(peer[0], False, now)
        refresh = RegistrationRefresh(RefreshScope.ALL)
        self._send(session, TransportType.REGISTRATION_REFRESH, refresh.body(), now)
        self._held[session.sid] = set()
        self._up(session, now)
        return session.sid

    def connected(self, sid: int, now: float) -> None:
        session = self.sessions.get(sid)
        if session is not None and session.state == "connecting":
            session.state = "open"

    def receive(self, sid: int, data: bytes, now: float) -> None:
        """Bytes TCP delivered on a session. Never raises for what they hold."""
        session = self.sessions.get(sid)
        if session is None:
            return
        for msg in session.receive_data(data, now):
            self._message(session, msg, now)
            if session.state == "closed":
                break
        if session.state == "closed":
            self._ended(session, now)
        self._dirty.add(sid)

    def closed(self, sid: int, reason: str, now: float) -> None:
        """The connection is gone (reset, timed out, refused, closed)."""
        session = self.sessions.get(sid)
        if session is not None:
            self._end(session, reason, now)

    def pending(self) -> list[int]:
        """Sessions with bytes to write or an end to act on."""
        out = sorted(self._dirty)
        self._dirty.clear()
        return out

    def drain(self, sid: int) -> tuple[bytes, str | None]:
        """A session's queued bytes, and why it ended once it has (the shell
        writes the bytes, then closes the connection)."""
        session = self.sessions.get(sid)
        if session is None:
            return b"", "gone"
        data = session.data_to_send()
        if session.state != "closed":
            return data, None
        del self.sessions[sid]
        return data, session.reason

    def hold_output(self, sid: int) -> None:
        """The shell could not write (TCP back-pressure): drain it later."""
        self._dirty.add(sid)

    # ============================================================ ETR side
    def registered(self, now: float) -> None:
        """After one of the ETR's registration rounds: send what changed over
        every session that is up, and plan sessions to peers without one."""
        if self._sent:
            current = dict(self.ctx.database.items())
            for sid in list(self._sent):
                self._sync(self.sessions[sid], current, None, now)
        config = self.ctx.config
        if not config.database:
            return
        peers = set(self.mapping.membership()) | self.mapping.seeds
        for peer in peers:
            if (
                self.ctx.own(peer)
                or peer in self._outbound
                or not config.reliable_with(peer)
                or self.ctx.timers.when(SessionConnect(peer)) is not None
            ):
                continue
            delay, _ = self._retry.get(peer, (config.reliable_connect_delay, 0.0))
            self.ctx.timers.set(SessionConnect(peer), now + delay)

    def _connect(self, peer: IPAddress, now: float) -> None:
        if peer in self._outbound or not self.ctx.config.reliable_with(peer):
            return
        if len(self.sessions) >= self.ctx.config.limits.max_sessions:
            self.ctx.out.counters[C.DROP + "session-limit"] += 1
            return
        session = self._new(peer, True, now)
        session.state = "connecting"
        self._outbound[peer] = session.sid
        self._connects.append((session.sid, peer))

    def _sync(
        self,
        session: Session,
        current: dict[Eid, DatabaseMapping],
        refresh: RegistrationRefresh | None,
        now: float,
    ) -> None:
        """Send the registrations of `current` (our database) a refresh asks
        for, or (None) those that changed since we last sent them here."""
        sent = self._sent[session.sid]
        if refresh is None:
            changed = [m for e, m in current.items() if sent.get(e) != m]
            gone = [m for e, m in sent.items() if e not in current]
        else:
            nacked = self._nacked[session.sid]
            changed = [
                m
                for e, m in current.items()
                if in_scope(e, refresh) and (not refresh.rejected_only or e in nacked)
            ]
            gone = []
        for mappings, ttl_zero in ((changed, False), (gone, True)):
            if not mappings:
                continue
            for carried, data in self.etr.session_registers(mappings, ttl_zero):
                if not self._send(session, TransportType.REGISTRATION, data, now):
                    return
                for m in carried:
                    if ttl_zero:
                        sent.pop(m.eid, None)
                    else:
                        sent[m.eid] = m

    def _etr_message(
        self, session: Session, msg: TransportMessage, body: object, now: float
    ) -> None:
        sid = session.sid
        if isinstance(body, RegistrationRefresh):
            first = session.state == "open"
            self._up(session, now)
            if first:
                self._retry.pop(session.peer, None)
                self._sent[sid], self._nacked[sid] = {}, {}
                self.mapping.by_session.add(session.peer)
            self._sync(session, dict(self.ctx.database.items()), body, now)
        elif isinstance(body, RegistrationAck) and sid in self._nacked:
            self.ctx.out.counters[C.RX + "session-ack"] += 1
            self._nacked[sid].pop(body.eid, None)
        elif isinstance(body, RegistrationNack) and body.eid in self._sent.get(sid, {}):
            self._nacked[sid][body.eid] = body.reason
            # Not held there: the next registration round sends it again,
            # as periodic UDP registration would (a rate limit passes).
            del self._sent[sid][body.eid]
            self.ctx.out.counters[C.RX + "session-nack"] += 1
            text = _NACK_TEXT.get(body.reason, "undefined")
            self.ctx.out.emit(RegistrationNacked(session.peer, body.eid, text))
        elif isinstance(body, MappingNotification) and sid in self._sent:
            # A Map-Server's word on a mapping, like an unsolicited
            # Map-Notify: taken for the group's membership only, the one
            # merged set a Map-Server tells its registrants about.
            rec = body.record
            try:
                eid = Eid.from_wire(rec.eid, rec.mask_len)
            except ValueError:
                eid = None
            if eid is None or eid != self.ctx.group_eid:
                self.ctx.out.counters[C.DROP + "session-notification"] += 1
                return
            assert self.map_server.writer is not None
            self.map_server.writer.install(eid, rec, "map-notify", now)
        else:
            session.complain(ErrorCode.UNEXPECTED, msg, "unexpected", now)

    # ============================================================ Map-Server side
    def authorize(self, peer: IPAddress, now: float) -> None:
        """peer's UDP Map-Register with the r bit passed authentication."""
        if not self.ctx.config.reliable_with(peer):
            return
        self._authorized.pop(peer, None)
        self._authorized[peer] = now
        while len(self._authorized) > 2 * self.ctx.config.limits.max_sessions:
            self._authorized.popitem(last=False)

    def _ms_message(
        self, session: Session, msg: TransportMessage, body: object, now: float
    ) -> None:
        if not isinstance(body, MapRegister):
            session.complain(ErrorCode.UNEXPECTED, msg, "unexpected", now)
            return
        out = self.ctx.out
        out.counters[C.RX + "session-registration"] += 1
        took: list[tuple[Eid, ChildKey]] = []
        src = (session.peer, self.ctx.config.control_port)
        try:
            reason = self.map_server.on_register(body, msg.data, src, now, took=took)
        except ValueError:
            reason = "unusable-field"
        held = self._held[session.sid]
        for eid, child in took:
            registration = self._registration(eid, child)
            if registration is None:
                held.discard((eid, child))
                continue
            # No timeout while the session is up (the draft): its end gives
            # each registration its lifetime back (_release).
            registration.expires = inf
            held.add((eid, child))
            self.ctx.timers.cancel(ExpireChild(eid, child))
        # Stored and removed (TTL 0) alike are in `took`; what is not was
        # refused, for the message's reason or (alone) a quota.
        taken = {eid for eid, _ in took}
        code = _NACK_REASONS.get(reason, NackReason.UNDEFINED)
        for rec in body.records:
            try:
                eid = Eid.from_wire(rec.eid, rec.mask_len)
            except ValueError:
                continue
            if eid in taken:
                ack = RegistrationAck(eid).body()
                self._send(session, TransportType.REGISTRATION_ACK, ack, now)
            else:
                nack = RegistrationNack(int(code), eid).body()
                self._send(session, TransportType.REGISTRATION_NACK, nack, now)

    def _release(self, sid: int, now: float) -> None:
        """A session ended: what it registered times out normally from now."""
        ms, timers = self.ctx.ms, self.ctx.timers
        for eid, child in self._held.pop(sid, ()):
            registration = self._registration(eid, child)
            if registration is not None and registration.expires == inf:
                registration.expires = now + ms.lifetime(
                    registration.record, registration.ttl_timeout
                )
                timers.set(ExpireChild(eid, child), registration.expires)

    def _registration(self, eid: Eid, child: ChildKey) -> Registration | None:
        entry = self.ctx.ms.db.get(eid)
        return None if entry is None else entry.children.get(child)

    # ============================================================ both sides
    def _new(self, peer: IPAddress, etr: bool, now: float) -> Session:
        sid = self._next_sid
        self._next_sid += 1
        session = Session(sid, peer, etr, self.ctx.config.limits, now)
        self.sessions[sid] = session
        return session

    def _send(self, session: Session, msg_type: int, body: bytes, now: float) -> bool:
        self._dirty.add(session.sid)
        if session.send(msg_type, body, now):
            return True
        self._ended(session, now)
        return False

    def _up(self, session: Session, now: float) -> None:
        if session.state == "open":
            session.mark_up(now)
            self.ctx.out.emit(SessionUp(session.peer, session.etr))

    def _message(self, session: Session, msg: TransportMessage, now: float) -> None:
        try:
            body = parse_body(msg)
        except (DecodeError, ValueError):
            code = (
                ErrorCode.UNKNOWN_TYPE
                if msg.msg_type not in TransportType.__members__.values()
                else ErrorCode.MALFORMED
            )
            self.ctx.out.counters[C.DROP + "session-malformed"] += 1
            session.complain(code, msg, "malformed", now)
            return
        if isinstance(body, ErrorNotification):
            self.ctx.out.counters[C.RX + "session-error"] += 1
            session.close(f"peer-error-{body.code}")
        elif session.etr:
            self._etr_message(session, msg, body, now)
        else:
            self._ms_message(session, msg, body, now)

    def _end(self, session: Session, reason: str, now: float) -> None:
        session.close(reason)
        self._ended(session, now)
        self._dirty.add(session.sid)

    def _ended(self, session: Session, now: float) -> None:
        """Undo what a session held, once, when it closes."""
        sid = session.sid
        if session.etr:
            if self._outbound.get(session.peer) != sid:
                return
            del self._outbound[session.peer]
            self._sent.pop(sid, None)
            self._nacked.pop(sid, None)
            self.mapping.by_session.discard(session.peer)
            config = self.ctx.config
            # Back-off doubles while attempts fail; one that came up starts over.
            delay = config.reliable_connect_delay
            if session.up_since is None:
                delay = self._retry.get(session.peer, (delay, 0.0))[0]
            self._retry[session.peer] = (min(2 * delay, config.reliable_retry_max), now)
            # Back to UDP at once: it keeps the peer's copy alive, and it
            # authorises our next session (the draft).
            self.etr.register_soon(now)
        else:
            if sid not in self._held:
                return
            self._release(sid, now)
            self._authorized.pop(session.peer, None)
        self.ctx.out.counters["session.closed." + session.reason] += 1
        if session.up_since is not None:
            self.ctx.out.emit(SessionDown(session.peer, session.etr, session.reason))

    def handle_timer(self, key: Hashable, now: float) -> None:
        if isinstance(key, SessionConnect):  # pragma: no branch - routed by type
            self._connect(key.peer, now)

    def sweep(self, now: float) -> None:
        horizon = now - self.ctx.config.registration_timeout
        for peer in [p for p, t in self._authorized.items() if t < horizon]:
            del self._authorized[peer]
        for peer in [p for p, (_, t) in self._retry.items() if t < horizon]:
            del self._retry[peer]

    def sizes(self) -> dict[str, int]:
        return {
            "sessions": len(self.sessions),
            "session_authorized": len(self._authorized),
            "session_held": sum(len(h) for h in self._held.values()),
        }

    def describe(self, now: float) -> list[dict[str, object]]:
        """Each session for the status page and the API, by peer, ours to
        it first."""
        return [
            {
                "peer": str(s.peer),
                "direction": "to-peer" if s.etr else "from-peer",
                "state": s.state,
                "up_s": None if s.up_since is None else round(now - s.up_since, 3),
                "messages_in": s.stats.messages_in,
                "messages_out": s.stats.messages_out,
                "bytes_in": s.stats.bytes_in,
                "bytes_out": s.stats.bytes_out,
                "registrations_held": len(self._held.get(s.sid, ())),
                "registrations_sent": len(self._sent.get(s.sid, {})),
                "refused": len(self._nacked.get(s.sid, {})),
            }
            # By peer, ours to it first.
            for s in sorted(
                self.sessions.values(),
                key=lambda s: (s.peer.version, s.peer.packed, not s.etr),
            )
        ]
