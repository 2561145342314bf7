"""Reliable-transport PDUs and bodies (draft-ietf-lisp-map-server-reliable-transport).

The framing (TCP port 4342): Type, Length (of the whole PDU), Message ID, the
message data and the End Marker. The bodies: Error Notification, Registration
(a complete Map-Register), Registration ACK/NACK/Refresh and Mapping
Notification, as Wireshark's lisp-tcp dissector reads them (protocol-notes
section 6). An EID prefix in these bodies is mask length (8) first, then an
AFI-prefixed address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, Self, TypeVar

from decent.wire.afi import read_address, write_address
from decent.wire.buffer import Reader, Writer, check_uint
from decent.wire.control import MapRegister, decode
from decent.wire.eid import Eid
from decent.wire.errors import DecodeError
from decent.wire.records import MapRecord

END_MARKER: Final = 0x9FACADE9
#: The largest PDU the 16-bit Length field can describe.
MAX_PDU: Final = 0xFFFF
_HEADER: Final = 8  # Type, Length, Message ID
_TRAILER: Final = 4  # End Marker
_MAX_BODY: Final = MAX_PDU - _HEADER - _TRAILER
_ERROR_FIXED: Final = 12  # code, reserved, offending type, length and ID
#: Registration Refresh flag: resend only the registrations the MS rejected.
REFRESH_REJECTED_ONLY: Final = 0x8000


class TransportType(IntEnum):
    ERROR_NOTIFICATION = 16
    REGISTRATION = 17
    REGISTRATION_ACK = 18
    REGISTRATION_NACK = 19
    REGISTRATION_REFRESH = 20
    MAPPING_NOTIFICATION = 21


class RefreshScope(IntEnum):
    """Which registrations a Registration Refresh asks the ETR to resend."""

    ALL = 0  # every prefix, family and instance ID
    INSTANCE = 1  # every prefix of the EID's instance ID
    FAMILY = 2  # every prefix of the EID's family in its instance ID
    COVERED = 3  # every prefix the EID prefix covers
    PREFIX = 4  # exactly the EID prefix


class NackReason(IntEnum):
    """Why a Map-Server rejected a registration (Registration NACK)."""

    INVALID_PREFIX = 1  # not a valid EID prefix of the site
    AUTH_FAILED = 2
    LOCATORS_NOT_ALLOWED = 3
    UNDEFINED = 4


class ErrorCode(IntEnum):
    """Error Notification codes: decent's own. Neither the draft text we could
    read nor Wireshark's dissector assigns any, so another implementation
    shows these as bare numbers."""

    MALFORMED = 1
    UNKNOWN_TYPE = 2
    TOO_LARGE = 3
    UNEXPECTED = 4
    RATE = 5


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


def pdu(msg_type: int, message_id: int, body: bytes) -> bytes:
    """The whole framed PDU around `body`; ValueError if Length cannot hold it."""
    if len(body) > _MAX_BODY:
        raise ValueError(
            f"a body of {len(body)} bytes does not fit a PDU of at most {MAX_PDU}"
        )
    return TransportMessage(msg_type, message_id, body).encode()


# ---------------------------------------------------------------- bodies

_T = TypeVar("_T")


def _parse(body: bytes, read: Callable[[Reader], _T]) -> _T:
    """The conversion boundary: any refusal comes out as DecodeError."""
    r = Reader(bytes(body))
    try:
        msg = read(r)
        r.finish()
    except DecodeError:
        raise
    except ValueError as exc:  # a constructor refused a decoded field
        raise DecodeError(f"{exc} (before offset {r.pos})") from exc
    return msg


def _write_eid(w: Writer, eid: Eid) -> None:
    addr, mask_len = eid.to_wire()
    w.u8(mask_len)
    write_address(w, addr)


def _read_eid(r: Reader) -> Eid:
    mask_len = r.u8()
    addr = read_address(r)
    return Eid.from_wire(addr, mask_len)


# Draft section "Error Notification" (Wireshark: code, 24 reserved bits, the
# offending PDU's type, length and ID, then as much of it as the sender likes).
@dataclass(frozen=True, slots=True)
class ErrorNotification:
    code: int
    offending_type: int
    offending_length: int
    offending_id: int
    offending_data: bytes = b""

    TYPE: ClassVar[TransportType] = TransportType.ERROR_NOTIFICATION

    def __post_init__(self) -> None:
        check_uint("code", self.code, 8)
        check_uint("offending_type", self.offending_type, 16)
        check_uint("offending_length", self.offending_length, 16)
        check_uint("offending_id", self.offending_id, 32)
        if _ERROR_FIXED + len(self.offending_data) > _MAX_BODY:
            raise ValueError(
                f"{len(self.offending_data)} bytes of offending data do not fit a PDU"
            )

    def body(self) -> bytes:
        w = Writer()
        w.u32(self.code << 24)
        w.u16(self.offending_type)
        w.u16(self.offending_length)
        w.u32(self.offending_id)
        w.put(self.offending_data)
        return w.raw()

    @classmethod
    def _read(cls, r: Reader) -> Self:
        code = r.u32() >> 24  # the 24 reserved bits are ignored on receipt
        offending_type = r.u16()
        offending_length = r.u16()
        offending_id = r.u32()
        return cls(code, offending_type, offending_length, offending_id, r.take_rest())

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return _parse(body, cls._read)


@dataclass(frozen=True, slots=True)
class RegistrationAck:
    """The Map-Server accepted the registration of `eid`."""

    eid: Eid

    TYPE: ClassVar[TransportType] = TransportType.REGISTRATION_ACK

    def body(self) -> bytes:
        w = Writer()
        _write_eid(w, self.eid)
        return w.raw()

    @classmethod
    def _read(cls, r: Reader) -> Self:
        return cls(_read_eid(r))

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return _parse(body, cls._read)


@dataclass(frozen=True, slots=True)
class RegistrationNack:
    """The Map-Server rejected the registration of `eid` (NackReason)."""

    reason: int
    eid: Eid

    TYPE: ClassVar[TransportType] = TransportType.REGISTRATION_NACK

    def __post_init__(self) -> None:
        check_uint("reason", self.reason, 8)

    def body(self) -> bytes:
        w = Writer()
        w.u8(self.reason)
        w.u16(0)
        _write_eid(w, self.eid)
        return w.raw()

    @classmethod
    def _read(cls, r: Reader) -> Self:
        reason = r.u8()
        r.u16()  # reserved, ignored on receipt
        return cls(reason, _read_eid(r))

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return _parse(body, cls._read)


@dataclass(frozen=True, slots=True)
class RegistrationRefresh:
    """The Map-Server asks for registrations again (RefreshScope); every
    scope but ALL names the instance ID, family or prefix with an EID."""

    scope: int
    rejected_only: bool = False
    eid: Eid | None = None

    TYPE: ClassVar[TransportType] = TransportType.REGISTRATION_REFRESH

    def __post_init__(self) -> None:
        check_uint("scope", self.scope, 8)
        if (self.eid is None) != (self.scope == RefreshScope.ALL):
            raise ValueError(
                f"refresh scope {self.scope} "
                + ("carries no EID prefix" if self.eid is not None else "needs one")
            )

    def body(self) -> bytes:
        w = Writer()
        w.u8(self.scope)
        w.u16(REFRESH_REJECTED_ONLY if self.rejected_only else 0)
        if self.eid is not None:
            _write_eid(w, self.eid)
        return w.raw()

    @classmethod
    def _read(cls, r: Reader) -> Self:
        scope = r.u8()
        flags = r.u16()  # bits other than R are reserved, ignored on receipt
        eid = None if scope == RefreshScope.ALL else _read_eid(r)
        return cls(scope, bool(flags & REFRESH_REJECTED_ONLY), eid)

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return _parse(body, cls._read)


@dataclass(frozen=True, slots=True)
class MappingNotification:
    """The Map-Server tells the ETR `xtr_id` (of site `site_id`) about a
    mapping: one EID-record as a Map-Register carries it."""

    xtr_id: int
    site_id: int
    record: MapRecord

    TYPE: ClassVar[TransportType] = TransportType.MAPPING_NOTIFICATION

    def __post_init__(self) -> None:
        check_uint("xtr_id", self.xtr_id, 128)
        check_uint("site_id", self.site_id, 64)

    def body(self) -> bytes:
        w = Writer()
        w.put(self.xtr_id.to_bytes(16, "big"))
        w.u64(self.site_id)
        self.record.write(w)
        return w.raw()

    @classmethod
    def _read(cls, r: Reader) -> Self:
        xtr_id = int.from_bytes(r.take(16), "big")
        site_id = r.u64()
        return cls(xtr_id, site_id, MapRecord.read(r))

    @classmethod
    def decode(cls, body: bytes) -> Self:
        return _parse(body, cls._read)


TransportBody = (
    ErrorNotification
    | RegistrationAck
    | RegistrationNack
    | RegistrationRefresh
    | MappingNotification
    | MapRegister
)


def _registration(body: bytes) -> MapRegister:
    msg = decode(body)
    if not isinstance(msg, MapRegister):
        raise DecodeError(f"a Registration carries a {type(msg).__name__}")
    return msg


_PARSERS: Final[dict[int, Callable[[bytes], TransportBody]]] = {
    TransportType.ERROR_NOTIFICATION: ErrorNotification.decode,
    TransportType.REGISTRATION: _registration,
    TransportType.REGISTRATION_ACK: RegistrationAck.decode,
    TransportType.REGISTRATION_NACK: RegistrationNack.decode,
    TransportType.REGISTRATION_REFRESH: RegistrationRefresh.decode,
    TransportType.MAPPING_NOTIFICATION: MappingNotification.decode,
}


def parse_body(msg: TransportMessage) -> TransportBody:
    """The body of a PDU decode_transport() framed, by its type. A
    Registration gives the MapRegister it carries.

    Raises DecodeError, and nothing else, for an unknown type (the RLOC
    membership types 22-30 included) or a malformed body.
    """
    parser = _PARSERS.get(msg.msg_type)
    if parser is None:
        raise DecodeError(f"unknown reliable-transport message type {msg.msg_type}")
    return parser(msg.data)
