"""Reliable-transport PDUs (draft-ietf-lisp-map-server-reliable-transport, TCP 4342).

Only the framing: Type, Length (of the whole PDU), Message ID, the message
data and the End Marker, as Wireshark's lisp-tcp dissector reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from decent.wire.buffer import Reader, Writer, check_uint
from decent.wire.errors import DecodeError

END_MARKER: Final = 0x9FACADE9
_HEADER: Final = 8  # Type, Length, Message ID
_TRAILER: Final = 4  # End Marker


class TransportType(IntEnum):
    ERROR_NOTIFICATION = 16
    REGISTRATION = 17
    REGISTRATION_ACK = 18
    REGISTRATION_NACK = 19
    REGISTRATION_REFRESH = 20
    MAPPING_NOTIFICATION = 21


@dataclass(frozen=True, slots=True)
class TransportMessage:
    """One PDU; for a Registration, `data` is a complete Map-Register."""

    msg_type: int
    message_id: int
    data: bytes

    def __post_init__(self) -> None:
        check_uint("msg_type", self.msg_type, 16)
        check_uint("message_id", self.message_id, 32)
        check_uint("length", _HEADER + len(self.data) + _TRAILER, 16)

    def encode(self) -> bytes:
        w = Writer()
        w.u16(self.msg_type)
        w.u16(_HEADER + len(self.data) + _TRAILER)
        w.u32(self.message_id)
        w.put(self.data)
        w.u32(END_MARKER)
        return w.raw()


def decode_transport(data: bytes) -> tuple[TransportMessage, int]:
    """Decode the first PDU of a stream buffer; return it and its length.

    Raises DecodeError for a short buffer (wait for more bytes: the error says
    so), a length that cannot hold a PDU, or a wrong End Marker.
    """
    r = Reader(data)
    msg_type = r.u16()
    length = r.u16()
    if length < _HEADER + _TRAILER:
        raise DecodeError(f"PDU length {length} is shorter than its header at offset 2")
    message_id = r.u32()
    body = r.take(length - _HEADER - _TRAILER)
    marker = r.u32()
    if marker != END_MARKER:
        raise DecodeError(f"end marker {marker:#010x} at offset {length - 4}")
    return TransportMessage(msg_type, message_id, body), length
