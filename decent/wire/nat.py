"""Info-Request/Info-Reply and the NAT-Traversal LCAF (LISP NAT traversal, type 7).

Message and LCAF are both type 7 (draft-ermagan-lisp-nat-traversal-19 4.1,
4.2; RFC 8060 5.5). The draft's form: Key ID and Algorithm ID bytes and the
HMAC as in a Map-Register, an EID-prefix of the requester, then AFI 0
(request) or the NAT-Traversal LCAF (reply). lispers.net
(protocol-notes-security 3.6) sends no authentication, EID-AFI 0, its
hostname as AFI 17 in the request's trailing AFI slot, and a NAT-Traversal
LCAF whose Length is always 16; its RTR puts the xTR's hostname (AFI 17) in
the Private ETR RLOC slot. We send the draft's form and accept both.
"""

from __future__ import annotations

import dataclasses
import hmac
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, Final

from decent.wire.afi import (
    NO_ADDRESS,
    Address,
    Afi,
    DistinguishedName,
    IPAddress,
    LcafType,
    read_address,
    write_address,
)
from decent.wire.auth import (
    ACCEPTED_LENGTHS,
    AUTH_LENGTH,
    AlgorithmId,
    compute_mac,
    sign_bytes,
)
from decent.wire.buffer import Reader, Writer, check_uint
from decent.wire.errors import DecodeError

#: LISP message type of both messages; R tells them apart.
INFO_TYPE: Final = 7
#: The R bit (bit 4 of the first word, 0x08 of byte 0): an Info-Reply.
INFO_REPLY: Final = 0x08000000
#: RTR RLOCs we read or write in one NAT-Traversal LCAF. The draft sets no
#: limit; a Map-Server offers the few RTRs an ETR may choose from, and the
#: whole list must fit in one reply, so 64 leaves room and bounds the work a
#: hostile reply can cause.
MAX_RTRS: Final = 64
#: The Length lispers.net writes into every NAT-Traversal LCAF, whatever
#: follows it (lisp_info.encode; protocol-notes-security 3.6 point 2).
LISPERS_NAT_LENGTH: Final = 16
_AUTH_OFFSET: Final = 16
_PLAIN_AFIS: Final = frozenset({Afi.NONE, Afi.IPV4, Afi.IPV6})
_PRIVATE_AFIS: Final = _PLAIN_AFIS | {Afi.DISTINGUISHED_NAME}
_IP_AFIS: Final = frozenset({Afi.IPV4, Afi.IPV6})


def _opt(addr: Address | None) -> Address:
    return NO_ADDRESS if addr is None else addr


def _read_slot(r: Reader, allowed: frozenset[int], what: str) -> Address:
    """One AFI-prefixed address whose AFI must be in `allowed` (no LCAFs:
    none of these slots carries one)."""
    start = r.pos
    afi = r.peek_u16()
    if afi not in allowed:
        raise DecodeError(f"AFI {afi} for the {what} at offset {start}")
    return read_address(r)


def _read_optional_ip(r: Reader, what: str) -> IPAddress | None:
    addr = _read_slot(r, _PLAIN_AFIS, what)
    return addr if isinstance(addr, IPv4Address | IPv6Address) else None


def _read_ip(r: Reader, what: str) -> IPAddress:
    addr = _read_slot(r, _IP_AFIS, what)
    if not isinstance(addr, IPv4Address | IPv6Address):  # _read_slot saw to it
        raise r.fail(f"the {what} is not an IP address")
    return addr


@dataclass(frozen=True, slots=True)
class NatTraversal:
    """The NAT-Traversal LCAF (type 7), the last field of an Info-Reply.

    `global_etr` and `etr_port` are the translated source address and port
    the sender saw; `ms_rloc` and `ms_port` the address and port the request
    was sent to. None is AFI 0 (lispers.net sends AFI 0 and port 0 for what
    it does not know).
    """

    ms_port: int = 0
    etr_port: int = 0
    global_etr: IPAddress | None = None
    ms_rloc: IPAddress | None = None
    #: AFI 0 from a Map-Server; a lispers.net RTR puts the xTR's hostname here.
    private_etr: IPAddress | DistinguishedName | None = None
    rtrs: tuple[IPAddress, ...] = ()

    def __post_init__(self) -> None:
        check_uint("ms_port", self.ms_port, 16)
        check_uint("etr_port", self.etr_port, 16)
        if len(self.rtrs) > MAX_RTRS:
            raise ValueError(f"{len(self.rtrs)} RTRs; at most {MAX_RTRS}")
        if not all(isinstance(a, IPv4Address | IPv6Address) for a in self.rtrs):
            raise ValueError("RTR RLOCs are IPv4 or IPv6 addresses")

    def write(self, w: Writer) -> None:
        w.u16(Afi.LCAF)
        w.u8(0)  # Rsvd1
        w.u8(0)  # Flags
        w.u8(LcafType.NAT_TRAVERSAL)
        w.u8(0)  # Rsvd2
        at = len(w)
        w.u16(0)  # Length, patched below
        w.u16(self.ms_port)
        w.u16(self.etr_port)
        write_address(w, _opt(self.global_etr))
        write_address(w, _opt(self.ms_rloc))
        write_address(w, _opt(self.private_etr))
        for rtr in self.rtrs:
            write_address(w, rtr)
        # At most 64 IPv6 RTRs and one bounded name: always below 65536.
        w.patch_u16(at, len(w) - at - 2)

    @classmethod
    def read(cls, r: Reader) -> NatTraversal:
        """Read the LCAF after its AFI (16387). It must end the message: the
        RTR list runs to the end of it.

        The draft's Length counts the bytes after itself, so it equals
        what is left of the message. lispers.net always writes 16, more or
        less than its LCAF holds. We walk the AFIs to the end of the message
        either way (protocol-notes-security 3.6 point 2) and check Length
        only to refuse anything else: a Length that is neither the bytes
        left nor 16 means the message is not what either sender writes.
        The price: a message whose true Length is 16, cut short at an AFI
        boundary, reads as lispers.net's form. A UDP datagram arrives whole
        or not at all, and an authenticated one fails its MAC when cut.
        """
        r.u8()  # Rsvd1
        r.u8()  # Flags
        lcaf_type = r.u8()
        r.u8()  # Rsvd2
        if lcaf_type != LcafType.NAT_TRAVERSAL:
            raise r.fail(f"LCAF type {lcaf_type} where NAT-Traversal (7) belongs")
        length = r.u16()
        if length not in (r.remaining, LISPERS_NAT_LENGTH):
            raise r.fail(
                f"NAT-Traversal LCAF Length {length} but {r.remaining} bytes follow"
            )
        ms_port = r.u16()
        etr_port = r.u16()
        global_etr = _read_optional_ip(r, "Global ETR RLOC")
        ms_rloc = _read_optional_ip(r, "MS RLOC")
        private: Address | None = _read_slot(r, _PRIVATE_AFIS, "Private ETR RLOC")
        if not isinstance(private, IPv4Address | IPv6Address | DistinguishedName):
            private = None  # AFI 0
        rtrs: list[IPAddress] = []
        while r.remaining:
            if len(rtrs) == MAX_RTRS:
                raise r.fail(f"more than {MAX_RTRS} RTR RLOCs")
            rtrs.append(_read_ip(r, "RTR RLOC"))
        return cls(
            ms_port,
            etr_port,
            global_etr,
            ms_rloc,
            private,
            tuple(rtrs),
        )


def _check_alg(alg_id: int) -> int:
    length = AUTH_LENGTH.get(alg_id)
    if length is None:
        raise ValueError(f"cannot compute a MAC for algorithm {alg_id}")
    return length


@dataclass(frozen=True, slots=True)
class _Info:
    """What an Info-Request and an Info-Reply share (ermagan-19 4.1): the
    header, authenticated as a Map-Register, and the requester's EID-prefix."""

    nonce: int
    #: The requester's EID-prefix; None is AFI 0 (lispers.net).
    eid: IPAddress | None = None
    mask_len: int = 0
    #: Minutes the requester may keep the RTR list (meaningful in a reply;
    #: lispers.net sends 0).
    ttl: int = 0
    key_id: int = 0
    alg_id: int = AlgorithmId.NONE
    auth_data: bytes = b""

    REPLY: ClassVar[bool] = False

    def __post_init__(self) -> None:
        check_uint("nonce", self.nonce, 64)
        check_uint("mask_len", self.mask_len, 8)
        if self.eid is not None and self.mask_len > self.eid.max_prefixlen:
            raise ValueError(f"mask length {self.mask_len} for {self.eid}")
        check_uint("ttl", self.ttl, 32)
        check_uint("key_id", self.key_id, 8)
        check_uint("alg_id", self.alg_id, 8)
        check_uint("auth data length", len(self.auth_data), 16)

    def encode(self) -> bytes:
        w = Writer()
        w.u32((INFO_TYPE << 28) | (INFO_REPLY if self.REPLY else 0))
        w.u64(self.nonce)
        # draft-ermagan's 16-bit Key ID predates RFC 9301's Key ID / Algorithm
        # ID split; deployed peers read it as Map-Register's (gotcha 2).
        w.u8(self.key_id)
        w.u8(self.alg_id)
        w.u16(len(self.auth_data))
        w.put(self.auth_data)
        w.u32(self.ttl)
        w.u8(0)  # Reserved
        w.u8(self.mask_len)
        write_address(w, _opt(self.eid))
        self._write_last(w)
        return w.raw()

    def _write_last(self, w: Writer) -> None:
        raise NotImplementedError

    def signed(self, key: bytes, alg_id: int = AlgorithmId.HMAC_SHA_256_128) -> bytes:
        """The encoded message with a full-length HMAC computed with key
        (Key ID 0) over the whole message, auth data zeroed: Map-Register's
        rules, which the draft adopts."""
        blank = dataclasses.replace(
            self, key_id=0, alg_id=alg_id, auth_data=bytes(_check_alg(alg_id))
        )
        return sign_bytes(blank.encode(), key)


@dataclass(frozen=True, slots=True)
class InfoRequest(_Info):
    """An Info-Request: asks a Map-Server (or RTR) what address and port it
    sees this xTR at."""

    #: lispers.net: the xTR's name, AFI 17 in the trailing AFI slot. We send
    #: None (AFI 0, as the draft asks).
    hostname: str | None = None

    def __post_init__(self) -> None:
        _Info.__post_init__(self)
        if self.hostname is not None:
            DistinguishedName(self.hostname)  # raises ValueError when unfit

    def _write_last(self, w: Writer) -> None:
        name = None if self.hostname is None else DistinguishedName(self.hostname)
        write_address(w, _opt(name))


@dataclass(frozen=True, slots=True)
class InfoReply(_Info):
    """An Info-Reply: the request's nonce and EID-prefix, the TTL of the RTR
    information, and the NAT-Traversal LCAF.

    It has no hostname: its trailing AFI slot holds the LCAF.
    """

    nat: NatTraversal = NatTraversal()

    REPLY: ClassVar[bool] = True

    def _write_last(self, w: Writer) -> None:
        self.nat.write(w)


def decode_info_body(first: int, r: Reader) -> InfoRequest | InfoReply:
    """The rest of a type-7 message after its first word (control.decode's
    table entry). Reserved bits are ignored, as RFC 9301 asks of receivers."""
    nonce = r.u64()
    key_id = r.u8()
    alg_id = r.u8()
    auth_data = r.take(r.u16())
    ttl = r.u32()
    r.u8()  # Reserved
    mask_len = r.u8()
    eid = _read_optional_ip(r, "EID-prefix")
    if first & INFO_REPLY:
        afi = r.u16()
        if afi != Afi.LCAF:
            raise DecodeError(
                f"AFI {afi} at offset {r.pos - 2}: an Info-Reply ends with "
                "the NAT-Traversal LCAF"
            )
        nat = NatTraversal.read(r)
        return InfoReply(nonce, eid, mask_len, ttl, key_id, alg_id, auth_data, nat)
    name = _read_slot(
        r, frozenset({Afi.NONE, Afi.DISTINGUISHED_NAME}), "Info-Request's last AFI"
    )
    hostname = name.name if isinstance(name, DistinguishedName) else None
    return InfoRequest(nonce, eid, mask_len, ttl, key_id, alg_id, auth_data, hostname)


def info_authentic(data: bytes, key: bytes) -> bool:
    """True when the Info-Request or Info-Reply in `data` carries a valid HMAC
    for `key` over the whole message with its auth data zeroed.

    Full-length and RFC-truncated (12- and 16-byte) MACs are accepted, as
    auth.check_auth does for Map-Register. Algorithm 0 (lispers.net sends no
    authentication) and unknown algorithms return False; the caller decides
    whether a peer may go unauthenticated. The comparison is constant-time.
    """
    if len(data) < _AUTH_OFFSET or data[0] >> 4 != INFO_TYPE:
        return False
    alg_id = data[13]
    length = int.from_bytes(data[14:16], "big")
    accepted = ACCEPTED_LENGTHS.get(alg_id)
    end = _AUTH_OFFSET + length
    if accepted is None or length not in accepted or end > len(data):
        return False
    zeroed = data[:_AUTH_OFFSET] + bytes(length) + data[end:]
    mac = compute_mac(zeroed, key, alg_id)
    return hmac.compare_digest(mac[:length], data[_AUTH_OFFSET:end])
