"""One reliable-transport session's byte stream, sans-I/O: framing, bounds, queues.

Theory of operation
-------------------
The shell feeds what TCP delivered to `receive_data(data, now)`, which
returns the complete PDUs it held (reassembled across segments), and
writes out what `data_to_send()` returns. A session never decides what a
message means (decent.peer.transport.role does); it only keeps the stream
safe from its peer, whatever that peer sends:

- a PDU may be at most `Limits.max_frame` bytes, so a partial one held
  while the rest arrives costs at most that much;
- a wrong End Marker or a Length that cannot hold a PDU loses the
  framing for good: an Error Notification goes out and the session closes;
- PDUs beyond `session_frame_rate` (burst `session_frame_burst`) a second
  close it too, so a flood of tiny frames costs a bounded amount of work;
- what we queue for the peer is bounded by `session_write_queue` bytes:
  a peer that stops reading makes the shell stop draining (TCP
  back-pressure), the queue fills, and the session is reset, never grown.

States: "connecting" (our TCP connect, ETR side), "open" (connected, the
registration exchange not begun), "up" (the exchange began: the ETR has
had a Registration-Refresh, the Map-Server has sent one), "closed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from decent.peer.config import Limits
from decent.peer.ratelimit import Bucket
from decent.wire import IPAddress
from decent.wire.transport import (
    END_MARKER,
    ErrorCode,
    ErrorNotification,
    TransportMessage,
    TransportType,
    pdu,
)

_HEADER: Final = 8
_MIN_PDU: Final = 12


@dataclass(slots=True)
class SessionStats:
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(slots=True)
class Session:
    """One TCP connection's stream, either side (`etr`: we connected)."""

    sid: int
    peer: IPAddress
    etr: bool
    limits: Limits
    opened: float
    state: str = "open"
    #: Why the session closed (empty while it is not closed).
    reason: str = ""
    up_since: float | None = None
    stats: SessionStats = field(default_factory=SessionStats)
    _rx: bytearray = field(default_factory=bytearray)
    _tx: list[bytes] = field(default_factory=list)
    _tx_bytes: int = 0
    _next_id: int = 1
    _frames: Bucket | None = None
    errors: int = 0

    def __post_init__(self) -> None:
        limits = self.limits
        self._frames = Bucket(
            limits.session_frame_rate, limits.session_frame_burst, self.opened
        )

    # ------------------------------------------------------------ receiving
    def receive_data(self, data: bytes, now: float) -> list[TransportMessage]:
        """The PDUs completed by `data`; closes the session (after an Error
        Notification) if the stream breaks a rule, and then returns none:
        nothing from a read that broke the rules is applied. Never raises."""
        if self.state == "closed":
            return []
        self.stats.bytes_in += len(data)
        rx = self._rx
        rx += data
        out: list[TransportMessage] = []
        at = 0
        frames = self._frames
        assert frames is not None
        while len(rx) - at >= 4:
            msg_type = int.from_bytes(rx[at : at + 2], "big")
            length = int.from_bytes(rx[at + 2 : at + 4], "big")
            if length < _MIN_PDU or length > self.limits.max_frame:
                # The Length is all that delimits PDUs: past a bad one the
                # stream cannot be re-synchronised, only closed.
                code = ErrorCode.MALFORMED if length < _MIN_PDU else ErrorCode.TOO_LARGE
                self.fail(code, msg_type, length, 0, "bad-length", now)
                return []
            if len(rx) - at < length:
                break
            end = at + length
            message_id = int.from_bytes(rx[at + 4 : at + 8], "big")
            if int.from_bytes(rx[end - 4 : end], "big") != END_MARKER:
                self.fail(
                    ErrorCode.MALFORMED, msg_type, length, message_id, "end-marker", now
                )
                return []
            if not frames.take(now):
                self.fail(ErrorCode.RATE, msg_type, length, message_id, "flood", now)
                return []
            self.stats.messages_in += 1
            out.append(
                TransportMessage(
                    msg_type, message_id, bytes(rx[at + _HEADER : end - 4])
                )
            )
            at = end
        del rx[:at]
        return out

    # ------------------------------------------------------------ sending
    def send(self, msg_type: int, body: bytes, now: float) -> bool:
        """Queue one PDU; False (and the session reset) when the queue
        would pass its bound or the session is closed."""
        if self.state == "closed":
            return False
        data = pdu(msg_type, self._next_id, body)
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        if self._tx_bytes + len(data) > self.limits.session_write_queue:
            self.close("write-queue-full")
            return False
        self._tx.append(data)
        self._tx_bytes += len(data)
        self.stats.messages_out += 1
        return True

    def queued(self) -> int:
        """Bytes waiting for the shell to write."""
        return self._tx_bytes

    def data_to_send(self) -> bytes:
        out = b"".join(self._tx)
        self._tx.clear()
        self._tx_bytes = 0
        self.stats.bytes_out += len(out)
        return out

    # ------------------------------------------------------------ errors, end
    def fail(
        self,
        code: ErrorCode,
        msg_type: int,
        length: int,
        message_id: int,
        reason: str,
        now: float,
    ) -> None:
        """Tell the peer what was wrong with its stream, then close."""
        note = ErrorNotification(int(code), msg_type, min(length, 0xFFFF), message_id)
        self.send(TransportType.ERROR_NOTIFICATION, note.body(), now)
        self.close(reason)

    def complain(
        self, code: ErrorCode, msg: TransportMessage, reason: str, now: float
    ) -> None:
        """An Error Notification about one PDU we could not use; the session
        survives a few (`session_errors`), not a stream of them."""
        self.errors += 1
        if self.errors > self.limits.session_errors:
            self.fail(
                code,
                msg.msg_type,
                len(msg.data) + _MIN_PDU,
                msg.message_id,
                "too-many-errors",
                now,
            )
            return
        note = ErrorNotification(
            int(code),
            msg.msg_type,
            min(len(msg.data) + _MIN_PDU, 0xFFFF),
            msg.message_id,
            msg.data[:64],
        )
        self.send(TransportType.ERROR_NOTIFICATION, note.body(), now)

    def close(self, reason: str) -> None:
        if self.state != "closed":
            self.state, self.reason = "closed", reason
            self._rx.clear()

    def mark_up(self, now: float) -> None:
        if self.state == "open":
            self.state, self.up_since = "up", now
