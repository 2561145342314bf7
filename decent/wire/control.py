"""LISP control messages and the decode() dispatch (RFC 9301 section 5, RFC 8111)."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final, Self, cast

from decent.wire.afi import NO_ADDRESS, Address, ipv4, read_address, write_address
from decent.wire.auth import AUTH_LENGTH, AlgorithmId, compute_mac, sign_bytes
from decent.wire.buffer import Reader, Writer, check_uint
from decent.wire.errors import DecodeError
from decent.wire.ip import UdpPacket, decode_udp_packet
from decent.wire.limits import MAX_ITR_RLOCS, MAX_MESSAGE_LEN, MAX_RECORDS
from decent.wire.nat import InfoReply, InfoRequest, decode_info_body
from decent.wire.records import MapRecord, ReferralRecord


class MessageType(IntEnum):
    MAP_REQUEST = 1
    MAP_REPLY = 2
    MAP_REGISTER = 3
    MAP_NOTIFY = 4
    MAP_NOTIFY_ACK = 5
    MAP_REFERRAL = 6
    INFO = 7
    ENCAPSULATED_CONTROL = 8


# Map-Request first-word flags (RFC 9301 5.2; I from RFC 9437).
REQ_AUTHORITATIVE: Final = 0x08000000
REQ_MAP_DATA: Final = 0x04000000
REQ_PROBE: Final = 0x02000000
REQ_SMR: Final = 0x01000000
REQ_PITR: Final = 0x00800000
REQ_SMR_INVOKED: Final = 0x00400000
REQ_XTR_ID: Final = 0x00100000
REQ_LOCAL_XTR: Final = 0x00004000
REQ_DONT_MAP_REPLY: Final = 0x00002000
REQ_RECORD_NOTIFY: Final = 0x80
# Map-Reply (RFC 9301 5.4).
REP_PROBE: Final = 0x08000000
REP_ECHO_NONCE: Final = 0x04000000
REP_SECURITY: Final = 0x02000000
# Map-Register (RFC 9301 5.6, RFC 8378 for merge).
REG_PROXY_REPLY: Final = 0x08000000
REG_SECURITY: Final = 0x04000000
REG_XTR_ID: Final = 0x02000000
#: The r bit (draft-ietf-lisp-map-server-reliable-transport): the ETR wants a
#: reliable-transport session. lispers.net sets the same bit for a body
#: encrypted after the first word (protocol-notes gotcha 7).
REG_RELIABLE: Final = 0x00002000
REG_ENCRYPTED: Final = REG_RELIABLE
REG_EID_NOTIFY: Final = 0x00001000
REG_TTL_TIMEOUT: Final = 0x00000800
REG_MERGE: Final = 0x00000400
REG_WANT_MAP_NOTIFY: Final = 0x00000100
# Map-Notify trailer flag as OOR defines it (NAT-traversal draft).
NOTIFY_XTR_ID: Final = 0x08000000
# ECM byte 0 (RFC 9301 5.8, IANA names E and M).
ECM_SECURITY: Final = 0x08
ECM_DDT: Final = 0x04
ECM_TO_ETR: Final = 0x02
ECM_TO_MS: Final = 0x01


def _check_records(records: tuple[object, ...], minimum: int = 0) -> None:
    if not minimum <= len(records) <= MAX_RECORDS:
        raise ValueError(
            f"{len(records)} records; between {minimum} and {MAX_RECORDS} allowed"
        )


def _check_trailer(xtr_id: int | None, site_id: int) -> None:
    if xtr_id is not None:
        check_uint("xtr_id", xtr_id, 128)
    elif site_id:
        raise ValueError("a Site-ID travels only with an xTR-ID")
    check_uint("site_id", site_id, 64)


def _write_trailer(w: Writer, xtr_id: int | None, site_id: int) -> None:
    if xtr_id is not None:
        w.put(xtr_id.to_bytes(16, "big"))
        w.u64(site_id)


def _read_trailer(r: Reader, present: bool) -> tuple[int | None, int]:
    if not present:
        return None, 0
    xtr_id = int.from_bytes(r.take(16), "big")
    return xtr_id, r.u64()


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """A Map-Request EID-record: the EID-prefix asked about."""

    eid: Address
    mask_len: int
    #: RFC 9437 N bit: this request is a subscription.
    notify: bool = False

    def __post_init__(self) -> None:
        check_uint("mask_len", self.mask_len, 8)


# https://www.rfc-editor.org/rfc/rfc9301#section-5.2
@dataclass(frozen=True, slots=True)
class MapRequest:
    nonce: int
    records: tuple[RequestRecord, ...]
    itr_rlocs: tuple[Address, ...]
    source_eid: Address = NO_ADDRESS
    map_reply: MapRecord | None = None
    authoritative: bool = False
    probe: bool = False
    smr: bool = False
    pitr: bool = False
    smr_invoked: bool = False
    local_xtr: bool = False
    dont_map_reply: bool = False
    xtr_id: int | None = None
    site_id: int = 0

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        _check_records(self.records, 1)
        if not 1 <= len(self.itr_rlocs) <= MAX_ITR_RLOCS:
            raise ValueError(f"1 to {MAX_ITR_RLOCS} ITR-RLOCs are required")
        _check_trailer(self.xtr_id, self.site_id)

    def encode(self) -> bytes:
        w = Writer()
        w.u32(
            (MessageType.MAP_REQUEST << 28)
            | (REQ_AUTHORITATIVE if self.authoritative else 0)
            | (REQ_MAP_DATA if self.map_reply is not None else 0)
            | (REQ_PROBE if self.probe else 0)
            | (REQ_SMR if self.smr else 0)
            | (REQ_PITR if self.pitr else 0)
            | (REQ_SMR_INVOKED if self.smr_invoked else 0)
            | (REQ_XTR_ID if self.xtr_id is not None else 0)
            | (REQ_LOCAL_XTR if self.local_xtr else 0)
            | (REQ_DONT_MAP_REPLY if self.dont_map_reply else 0)
            | ((len(self.itr_rlocs) - 1) << 8)
            | len(self.records)
        )
        w.u64(self.nonce)
        write_address(w, self.source_eid)
        for rloc in self.itr_rlocs:
            write_address(w, rloc)
        for rec in self.records:
            w.u8(REQ_RECORD_NOTIFY if rec.notify else 0)
            w.u8(rec.mask_len)
            write_address(w, rec.eid)
        if self.map_reply is not None:
            self.map_reply.write(w)
        _write_trailer(w, self.xtr_id, self.site_id)
        return w.raw()

    @classmethod
    def decode_body(cls, first: int, r: Reader) -> MapRequest:
        nonce = r.u64()
        source_eid = read_address(r)
        itr_rlocs = tuple([read_address(r) for _ in range(((first >> 8) & 0x1F) + 1)])
        records = []
        for _ in range(first & 0xFF):
            flags = r.u8()
            mask_len = r.u8()
            records.append(
                RequestRecord(
                    read_address(r), mask_len, bool(flags & REQ_RECORD_NOTIFY)
                )
            )
        map_reply = MapRecord.read(r) if first & REQ_MAP_DATA else None
        xtr_id, site_id = _read_trailer(r, bool(first & REQ_XTR_ID))
        return cls(
            nonce,
            tuple(records),
            itr_rlocs,
            source_eid,
            map_reply,
            bool(first & REQ_AUTHORITATIVE),
            bool(first & REQ_PROBE),
            bool(first & REQ_SMR),
            bool(first & REQ_PITR),
            bool(first & REQ_SMR_INVOKED),
            bool(first & REQ_LOCAL_XTR),
            bool(first & REQ_DONT_MAP_REPLY),
            xtr_id,
            site_id,
        )


# https://www.rfc-editor.org/rfc/rfc9301#section-5.4
@dataclass(frozen=True, slots=True)
class MapReply:
    nonce: int
    records: tuple[MapRecord, ...]
    probe: bool = False
    echo_nonce: bool = False
    #: LISP-SEC authentication data (RFC 9303), kept opaque; S bit when set.
    security_data: bytes = b""

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        _check_records(self.records)

    def encode(self) -> bytes:
        w = Writer()
        w.u32(
            (MessageType.MAP_REPLY << 28)
            | (REP_PROBE if self.probe else 0)
            | (REP_ECHO_NONCE if self.echo_nonce else 0)
            | (REP_SECURITY if self.security_data else 0)
            | len(self.records)
        )
        w.u64(self.nonce)
        for rec in self.records:
            rec.write(w)
        w.put(self.security_data)
        return w.raw()

    @classmethod
    def decode_body(cls, first: int, r: Reader) -> MapReply:
        nonce = r.u64()
        records = tuple(MapRecord.read(r) for _ in range(first & 0xFF))
        security_data = b""
        if first & REP_SECURITY:
            security_data = r.take_rest()
            if not security_data:
                raise r.fail("S bit set but no LISP-SEC data")
        return cls(
            nonce,
            records,
            bool(first & REP_PROBE),
            bool(first & REP_ECHO_NONCE),
            security_data,
        )


class _Authenticated:
    """Signing shared by Map-Register, Map-Notify and Map-Notify-Ack."""

    __slots__ = ()
    alg_id: int
    auth_data: bytes

    def encode(self) -> bytes:
        raise NotImplementedError

    def signed(self, key: bytes, alg_id: int = AlgorithmId.HMAC_SHA_256_128) -> Self:
        """This message with a full-length HMAC computed with key (Key ID 0)."""
        if alg_id not in AUTH_LENGTH:
            raise ValueError(f"cannot compute a MAC for algorithm {alg_id}")
        # dataclasses.replace is typed for dataclass instances, which the
        # concrete subclasses are; this mixin is not one itself.
        this: Any = self
        blank: Self = dataclasses.replace(
            this, key_id=0, alg_id=alg_id, auth_data=bytes(AUTH_LENGTH[alg_id])
        )
        mac = compute_mac(blank.encode(), key, alg_id)
        this = blank
        signed: Self = dataclasses.replace(this, auth_data=mac)
        return signed


def _check_auth_fields(key_id: int, alg_id: int, auth_data: bytes) -> None:
    check_uint("key_id", key_id, 8)
    check_uint("alg_id", alg_id, 8)
    check_uint("auth data length", len(auth_data), 16)


def _write_auth(w: Writer, key_id: int, alg_id: int, auth_data: bytes) -> None:
    w.u8(key_id)
    w.u8(alg_id)
    w.u16(len(auth_data))
    w.put(auth_data)


def _read_auth(r: Reader) -> tuple[int, int, bytes]:
    key_id = r.u8()
    alg_id = r.u8()
    return key_id, alg_id, r.take(r.u16())


# https://www.rfc-editor.org/rfc/rfc9301#section-5.6
@dataclass(frozen=True, slots=True)
class MapRegister(_Authenticated):
    nonce: int
    records: tuple[MapRecord, ...]
    key_id: int = 0
    alg_id: int = AlgorithmId.NONE
    auth_data: bytes = b""
    proxy_reply: bool = False
    security_capable: bool = False
    eid_notify: bool = False
    ttl_timeout: bool = False
    merge: bool = False
    want_map_notify: bool = False
    xtr_id: int | None = None
    site_id: int = 0
    #: The r bit: asks for a reliable-transport session (TCP 4342).
    reliable: bool = False

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        _check_records(self.records)
        _check_auth_fields(self.key_id, self.alg_id, self.auth_data)
        _check_trailer(self.xtr_id, self.site_id)

    def encode(self) -> bytes:
        w = Writer()
        w.u32(
            (MessageType.MAP_REGISTER << 28)
            | (REG_PROXY_REPLY if self.proxy_reply else 0)
            | (REG_SECURITY if self.security_capable else 0)
            | (REG_XTR_ID if self.xtr_id is not None else 0)
            | (REG_RELIABLE if self.reliable else 0)
            | (REG_EID_NOTIFY if self.eid_notify else 0)
            | (REG_TTL_TIMEOUT if self.ttl_timeout else 0)
            | (REG_MERGE if self.merge else 0)
            | (REG_WANT_MAP_NOTIFY if self.want_map_notify else 0)
            | len(self.records)
        )
        w.u64(self.nonce)
        _write_auth(w, self.key_id, self.alg_id, self.auth_data)
        for rec in self.records:
            rec.write(w)
        _write_trailer(w, self.xtr_id, self.site_id)
        return w.raw()

    @classmethod
    def decode_body(cls, first: int, r: Reader) -> MapRegister:
        nonce = r.u64()
        key_id, alg_id, auth_data = _read_auth(r)
        records = tuple(MapRecord.read(r) for _ in range(first & 0xFF))
        xtr_id, site_id = _read_trailer(r, bool(first & REG_XTR_ID))
        return cls(
            nonce,
            records,
            key_id,
            alg_id,
            auth_data,
            bool(first & REG_PROXY_REPLY),
            bool(first & REG_SECURITY),
            bool(first & REG_EID_NOTIFY),
            bool(first & REG_TTL_TIMEOUT),
            bool(first & REG_MERGE),
            bool(first & REG_WANT_MAP_NOTIFY),
            xtr_id,
            site_id,
            bool(first & REG_RELIABLE),
        )


# https://www.rfc-editor.org/rfc/rfc9301#section-5.7
@dataclass(frozen=True, slots=True)
class _Notify(_Authenticated):
    nonce: int
    records: tuple[MapRecord, ...]
    key_id: int = 0
    alg_id: int = AlgorithmId.NONE
    auth_data: bytes = b""
    #: OOR's optional xTR-ID/Site-ID trailer; we never send it by default.
    xtr_id: int | None = None
    site_id: int = 0

    TYPE = MessageType.MAP_NOTIFY

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        _check_records(self.records)
        _check_auth_fields(self.key_id, self.alg_id, self.auth_data)
        _check_trailer(self.xtr_id, self.site_id)

    def encode(self) -> bytes:
        w = Writer()
        w.u32(
            (self.TYPE << 28)
            | (NOTIFY_XTR_ID if self.xtr_id is not None else 0)
            | len(self.records)
        )
        w.u64(self.nonce)
        _write_auth(w, self.key_id, self.alg_id, self.auth_data)
        for rec in self.records:
            rec.write(w)
        _write_trailer(w, self.xtr_id, self.site_id)
        return w.raw()

    @classmethod
    def decode_body(cls, first: int, r: Reader) -> Self:
        nonce = r.u64()
        key_id, alg_id, auth_data = _read_auth(r)
        records = tuple(MapRecord.read(r) for _ in range(first & 0xFF))
        xtr_id, site_id = _read_trailer(r, bool(first & NOTIFY_XTR_ID))
        return cls(nonce, records, key_id, alg_id, auth_data, xtr_id, site_id)


@dataclass(frozen=True, slots=True)
class MapNotify(_Notify):
    TYPE = MessageType.MAP_NOTIFY


@dataclass(frozen=True, slots=True)
class MapNotifyAck(_Notify):
    TYPE = MessageType.MAP_NOTIFY_ACK


# https://www.rfc-editor.org/rfc/rfc8111#section-6.4
@dataclass(frozen=True, slots=True)
class MapReferral:
    nonce: int
    records: tuple[ReferralRecord, ...]

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        _check_records(self.records)

    def encode(self) -> bytes:
        w = Writer()
        w.u32((MessageType.MAP_REFERRAL << 28) | len(self.records))
        w.u64(self.nonce)
        for rec in self.records:
            rec.write(w)
        return w.raw()

    @classmethod
    def decode_body(cls, first: int, r: Reader) -> MapReferral:
        nonce = r.u64()
        return cls(nonce, tuple(ReferralRecord.read(r) for _ in range(first & 0xFF)))


# https://www.rfc-editor.org/rfc/rfc9301#section-5.8
@dataclass(frozen=True, slots=True)
class EncapsulatedControlMessage:
    """An ECM: an inner IP/UDP packet carrying a LISP control message."""

    message: InnerMessage
    inner_src: IPv4Address | IPv6Address
    inner_dst: IPv4Address | IPv6Address
    inner_sport: int = 4342
    inner_dport: int = 4342
    ddt: bool = False
    to_etr: bool = False
    to_ms: bool = False
    ip_ttl: int = 64
    ip_ident: int = 0
    #: IPv4 only; lispers.net's lig leaves DF clear.
    ip_dont_fragment: bool = True
    #: False: inner UDP checksum 0, as lig sends it. RFC 9301 5.8 wants it
    #: non-zero, so this only lets a received ECM re-encode as it came.
    inner_udp_checksum: bool = True

    def __post_init__(self) -> None:
        if isinstance(cast(object, self.message), EncapsulatedControlMessage):
            raise ValueError("an ECM may not carry another ECM")
        if type(self.inner_src) is not type(self.inner_dst):
            raise ValueError("inner source and destination differ in family")
        # One combined test on the common path (every ECM decodes into one).
        if not (
            0 <= self.inner_sport < 0x10000
            and 0 <= self.inner_dport < 0x10000
            and 0 <= self.ip_ttl < 0x100
            and 0 <= self.ip_ident < 0x10000
        ):
            check_uint("inner_sport", self.inner_sport, 16)
            check_uint("inner_dport", self.inner_dport, 16)
            check_uint("ip_ttl", self.ip_ttl, 8)
            check_uint("ip_ident", self.ip_ident, 16)

    def _packet(self, payload: bytes) -> UdpPacket:
        return UdpPacket(
            self.inner_src,
            self.inner_dst,
            self.inner_sport,
            self.inner_dport,
            payload,
            ttl=self.ip_ttl,
            ident=self.ip_ident,
            dont_fragment=self.ip_dont_fragment,
            checksum=self.inner_udp_checksum,
        )

    def encode(self) -> bytes:
        first = (
            (MessageType.ENCAPSULATED_CONTROL << 4)
            | (ECM_DDT if self.ddt else 0)
            | (ECM_TO_ETR if self.to_etr else 0)
            | (ECM_TO_MS if self.to_ms else 0)
        )
        inner = self._packet(self.message.encode()).encode()
        return bytes((first, 0, 0, 0)) + inner

    @classmethod
    def decode_body(cls, first: int, r: Reader) -> EncapsulatedControlMessage:
        flags = first >> 24
        if flags & ECM_SECURITY:
            # LISP-SEC data precedes the inner header with no overall length;
            # without LISP-SEC support we cannot find where the packet starts.
            raise r.fail("ECM with LISP-SEC data (S bit) is not supported")
        pkt = decode_udp_packet(r.take_rest())
        message = decode(pkt.payload)
        if isinstance(message, EncapsulatedControlMessage):
            raise DecodeError("an ECM inside an ECM")
        return cls(
            message,
            pkt.src,
            pkt.dst,
            pkt.sport,
            pkt.dport,
            bool(flags & ECM_DDT),
            bool(flags & ECM_TO_ETR),
            bool(flags & ECM_TO_MS),
            pkt.ttl,
            pkt.ident,
            pkt.dont_fragment,
            pkt.checksum,
        )


def ecm_bytes(
    payload: bytes,
    inner_src: IPv4Address | IPv6Address,
    inner_dst: IPv4Address | IPv6Address,
    inner_sport: int,
) -> bytes:
    """An ECM around a control message's own bytes, which go unchanged (a
    relayed Map-Register keeps the HMAC its registrant computed over them;
    re-encoding a decoded message might not reproduce them)."""
    first = MessageType.ENCAPSULATED_CONTROL << 4
    inner = UdpPacket(inner_src, inner_dst, inner_sport, 4342, payload)
    return bytes((first, 0, 0, 0)) + inner.encode()


def map_reply_bytes(nonce: int, records: Sequence[bytes], probe: bool = False) -> bytes:
    """`MapReply(nonce, records, probe=probe).encode()` for records already
    encoded (records.encode_record): the Map-Resolver's hot path keeps each
    registration's record encoded and only prepends the header and nonce."""
    if len(records) > 255:
        raise ValueError(f"{len(records)} records do not fit a Map-Reply")
    first = (MessageType.MAP_REPLY << 28) | (REP_PROBE if probe else 0) | len(records)
    return b"".join((first.to_bytes(4, "big"), nonce.to_bytes(8, "big"), *records))


def map_register_bytes(head: MapRegister, count: int, body: bytes) -> bytes:
    """`head` (a Map-Register without records, its auth data already of its
    final length) carrying `count` records encoded as `body`: what
    `MapRegister(records=...).encode()` gives, each record encoded once. The
    records go between the authentication data and the xTR-ID trailer, their
    count into the low byte of the first word; sign_bytes() then signs it."""
    if head.records or not 0 <= count <= 255:
        raise ValueError("map_register_bytes takes a head without records")
    data = head.encode()
    split = 16 + len(head.auth_data)
    return data[:3] + bytes((count,)) + data[4:split] + body + data[split:]


def map_notify_for(register: bytes, key: bytes | None) -> bytes:
    """The Map-Notify that acknowledges a Map-Register (RFC 9301 5.7): its
    nonce and EID-records, Key ID 0 and a full MAC with key, or no
    authentication when key is None or the register had none.

    `register` must be bytes that decode() accepted as a Map-Register; its
    records are copied as they are rather than decoded and re-encoded.
    """
    first = int.from_bytes(register[:4], "big")
    alg_id = register[13]
    auth_len = int.from_bytes(register[14:16], "big")
    end = len(register) - (24 if first & REG_XTR_ID else 0)
    records = register[16 + auth_len : end]
    head = ((MessageType.MAP_NOTIFY << 28) | (first & 0xFF)).to_bytes(4, "big")
    length = AUTH_LENGTH.get(alg_id)
    if key is None or length is None:
        return head + register[4:12] + bytes((register[12], 0, 0, 0)) + records
    blank = head + register[4:12] + bytes((0, alg_id)) + length.to_bytes(2, "big")
    return sign_bytes(blank + bytes(length) + records, key)


InnerMessage = (
    MapRequest
    | MapReply
    | MapRegister
    | MapNotify
    | MapNotifyAck
    | MapReferral
    | InfoRequest
    | InfoReply
)
ControlMessage = InnerMessage | EncapsulatedControlMessage

_DECODERS: Final[dict[int, Callable[[int, Reader], ControlMessage]]] = {
    MessageType.MAP_REQUEST: MapRequest.decode_body,
    MessageType.MAP_REPLY: MapReply.decode_body,
    MessageType.MAP_REGISTER: MapRegister.decode_body,
    MessageType.MAP_NOTIFY: MapNotify.decode_body,
    MessageType.MAP_NOTIFY_ACK: MapNotifyAck.decode_body,
    MessageType.MAP_REFERRAL: MapReferral.decode_body,
    MessageType.INFO: decode_info_body,
    MessageType.ENCAPSULATED_CONTROL: EncapsulatedControlMessage.decode_body,
}


# Bit 18 of a Map-Register is the draft's r bit, and lispers.net's e bit for a
# ChaCha20-encrypted body (protocol-notes gotcha 7). We parse it as r; when
# that fails, the log should say the likelier cause.
_BIT_18_REGISTER: Final = 0xF0000000 | REG_RELIABLE
_BIT_18_REGISTER_SET: Final = (MessageType.MAP_REGISTER << 28) | REG_RELIABLE
_ENCRYPTED_HINT: Final = (
    "; Map-Register bit 18 (reliable-transport r) is set, so this may be a "
    "lispers.net encrypted body (its e bit), which needs the lisp-crypto key"
)

_REQUEST_HEAD: Final = struct.Struct("!IQH")  # first word, nonce, source AFI
_AFI: Final = struct.Struct("!H")
_RECORD_HEAD: Final = struct.Struct("!BBH")  # flags, mask length, AFI


def _ip_at(data: bytes, pos: int, afi: int) -> tuple[IPv4Address | IPv6Address, int]:
    if afi == 1:
        return ipv4(data[pos : pos + 4]), pos + 4
    if afi == 2:
        return IPv6Address(data[pos : pos + 16]), pos + 16
    raise ValueError("not an IP AFI")


def _plain_map_request(data: bytes) -> MapRequest | None:
    """The Map-Request every ITR sends (IP addresses only, no Map-Reply
    record), decoded in one pass; None leaves the message, valid or not, to
    the general decoder. It answers the same as that decoder or not at all:
    Map-Requests are what a Map-Resolver spends its time on."""
    try:
        first, nonce, afi = _REQUEST_HEAD.unpack_from(data)
        if first & REQ_MAP_DATA:
            return None
        source: Address = NO_ADDRESS
        pos = 14
        if afi:
            source, pos = _ip_at(data, pos, afi)
        itr_rlocs = []
        for _ in range(((first >> 8) & 0x1F) + 1):
            rloc, pos = _ip_at(data, pos + 2, _AFI.unpack_from(data, pos)[0])
            itr_rlocs.append(rloc)
        records = []
        for _ in range(first & 0xFF):
            flags, mask_len, afi = _RECORD_HEAD.unpack_from(data, pos)
            eid, pos = _ip_at(data, pos + 4, afi)
            records.append(
                RequestRecord(eid, mask_len, bool(flags & REQ_RECORD_NOTIFY))
            )
        xtr_id, site_id = None, 0
        if first & REQ_XTR_ID:
            xtr_id = int.from_bytes(data[pos : pos + 16], "big")
            site_id = int.from_bytes(data[pos + 16 : pos + 24], "big")
            pos += 24
        if pos != len(data):
            return None
        return MapRequest(
            nonce,
            tuple(records),
            tuple(itr_rlocs),
            source,
            None,
            bool(first & REQ_AUTHORITATIVE),
            bool(first & REQ_PROBE),
            bool(first & REQ_SMR),
            bool(first & REQ_PITR),
            bool(first & REQ_SMR_INVOKED),
            bool(first & REQ_LOCAL_XTR),
            bool(first & REQ_DONT_MAP_REPLY),
            xtr_id,
            site_id,
        )
    except (ValueError, struct.error):  # AddressValueError is a ValueError
        return None


def decode(data: bytes) -> ControlMessage:
    """Decode one LISP control message (a UDP 4342 payload).

    Raises DecodeError, and nothing else, for any input that is not exactly
    one well-formed message: truncated, oversized, unknown type or AFI, limits
    exceeded, or trailing bytes.
    """
    data = bytes(data)
    if len(data) > MAX_MESSAGE_LEN:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_LEN}")
    if data[:1] and data[0] >> 4 == MessageType.MAP_REQUEST:
        plain = _plain_map_request(data)
        if plain is not None:
            return plain
    r = Reader(data)
    first = r.u32()
    decoder = _DECODERS.get(first >> 28)
    if decoder is None:
        raise DecodeError(f"unsupported LISP message type {first >> 28} at offset 0")
    try:
        msg = decoder(first, r)
        r.finish()
    except DecodeError as exc:
        if first & _BIT_18_REGISTER == _BIT_18_REGISTER_SET:
            raise DecodeError(f"{exc}{_ENCRYPTED_HINT}") from exc
        raise
    except ValueError as exc:  # a constructor refused a decoded field
        hint = (
            _ENCRYPTED_HINT if first & _BIT_18_REGISTER == _BIT_18_REGISTER_SET else ""
        )
        raise DecodeError(f"{exc} (before offset {r.pos}){hint}") from exc
    return msg
