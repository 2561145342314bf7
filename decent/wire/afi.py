"""Address encodings: AFI 0/1/2/17, LCAF types 1/2/9/11/13/15 (RFC 9301 5.1, RFC 8060).

IPv4 and IPv6 addresses are the stdlib `ipaddress` objects. Every other kind of
address is a frozen dataclass here. LCAF types we do not interpret are kept as
opaque bytes (`UnknownLcaf`) and re-encoded unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.wire.buffer import Reader, Writer, check_uint
from decent.wire.errors import DecodeError
from decent.wire.limits import (
    MAX_AFI_LIST_ITEMS,
    MAX_LCAF_DEPTH,
    MAX_NAME_LEN,
    MAX_RLE_ENTRIES,
)


class Afi(IntEnum):
    NONE = 0
    IPV4 = 1
    IPV6 = 2
    DISTINGUISHED_NAME = 17
    LCAF = 16387


class LcafType(IntEnum):
    AFI_LIST = 1
    INSTANCE_ID = 2
    #: Read only as an Info-Reply's last field (wire/nat.py); anywhere else it
    #: stays an UnknownLcaf.
    NAT_TRAVERSAL = 7
    MULTICAST_INFO = 9
    SECURITY_KEY = 11
    RLE = 13
    KEY_VALUE = 15


#: RLE level RFC 8378 section 5.1.2 requires for signal-free multicast.
RLE_LEVEL_DEFAULT: Final = 128


@dataclass(frozen=True, slots=True)
class NoAddress:
    """AFI 0: an empty address (no address bytes follow)."""


NO_ADDRESS: Final = NoAddress()


@dataclass(frozen=True, slots=True)
class DistinguishedName:
    """AFI 17: a NUL-terminated ASCII name (RFC 9735)."""

    name: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a distinguished name may not be empty")
        if len(self.name) > MAX_NAME_LEN:
            raise ValueError(f"distinguished name longer than {MAX_NAME_LEN} bytes")
        if not self.name.isascii() or "\x00" in self.name:
            raise ValueError("a distinguished name is ASCII without NUL")


@dataclass(frozen=True, slots=True)
class InstanceId:
    """LCAF type 2: an address scoped to a 32-bit instance ID."""

    iid: int
    address: Address
    iid_mask_len: int = 0

    def __post_init__(self) -> None:
        check_uint("iid", self.iid, 32)
        check_uint("iid_mask_len", self.iid_mask_len, 8)


@dataclass(frozen=True, slots=True)
class AfiList:
    """LCAF type 1: a list of addresses, possibly nested LCAFs."""

    items: tuple[Address, ...]

    def __post_init__(self) -> None:
        if len(self.items) > MAX_AFI_LIST_ITEMS:
            raise ValueError(f"more than {MAX_AFI_LIST_ITEMS} AFI-List items")


@dataclass(frozen=True, slots=True)
class MulticastInfo:
    """LCAF type 9: an (S,G) entry scoped to an instance ID.

    `padded` marks the lispers.net form: two zero bytes between the LCAF length
    and the instance ID, left out of the Length (20 for IPv4, 44 for IPv6, as
    in RFC 8060, with 22 or 46 bytes following). We accept it, and emit it only
    on request, byte for byte as lispers.net does. The one exception is a value
    whose padded bytes would also read as a valid RFC 8060 body (source mask 0,
    group mask equal to the AFI, source ending in that AFI): that is written
    with the pad counted in the Length, which decodes back unambiguously.
    """

    iid: int
    source: IPv4Address | IPv6Address
    source_mask_len: int
    group: IPv4Address | IPv6Address
    group_mask_len: int
    flags: int = 0
    padded: bool = False

    def __post_init__(self) -> None:
        check_uint("iid", self.iid, 32)
        check_uint("flags", self.flags, 8)
        if self.source.version != self.group.version:
            raise ValueError("source and group must be of one address family")
        width = self.source.max_prefixlen
        if not 0 <= self.source_mask_len <= width:
            raise ValueError(f"source mask length {self.source_mask_len}")
        if not 0 <= self.group_mask_len <= width:
            raise ValueError(f"group mask length {self.group_mask_len}")


@dataclass(frozen=True, slots=True)
class RleEntry:
    """One replication target of an RLE: level, address and optional name."""

    address: Address
    level: int = RLE_LEVEL_DEFAULT
    #: lispers.net may append an AFI-17 RLOC name after the address.
    name: DistinguishedName | None = None

    def __post_init__(self) -> None:
        check_uint("level", self.level, 8)


@dataclass(frozen=True, slots=True)
class Rle:
    """LCAF type 13: a Replication List Entry."""

    entries: tuple[RleEntry, ...]

    def __post_init__(self) -> None:
        if len(self.entries) > MAX_RLE_ENTRIES:
            raise ValueError(f"more than {MAX_RLE_ENTRIES} RLE entries")


@dataclass(frozen=True, slots=True)
class KeyValue:
    """LCAF type 15: a Key/Value Address Pair (RFC 8060 section 4.3.1)."""

    key: Address
    value: Address


#: RFC 8061 section 6: at most three keys, key-ids 1 to 3 in order.
MAX_SECURITY_KEYS: Final = 3
#: The longest public key we read (a 3072-bit MODP key is 384 bytes).
MAX_SECURITY_KEY_LEN: Final = 512


@dataclass(frozen=True, slots=True)
class SecurityKey:
    """LCAF type 11 (RFC 8060 5.6, RFC 8061 6): the public keys of a
    lisp-crypto exchange for the RLOC in `address`; keys[i] is key-id i + 1.

    `revoke` is the R bit. `rsvd3` is kept as read: lispers.net's comments
    put an A bit there; we send 0.
    """

    cipher_suite: int
    keys: tuple[bytes, ...]
    address: Address
    revoke: bool = False
    rsvd3: int = 0

    def __post_init__(self) -> None:
        check_uint("cipher_suite", self.cipher_suite, 8)
        check_uint("rsvd3", self.rsvd3, 8)
        if len(self.keys) > MAX_SECURITY_KEYS:
            raise ValueError(f"more than {MAX_SECURITY_KEYS} security keys")
        if any(len(k) > MAX_SECURITY_KEY_LEN for k in self.keys):
            raise ValueError(f"a key longer than {MAX_SECURITY_KEY_LEN} bytes")


@dataclass(frozen=True, slots=True)
class UnknownLcaf:
    """An LCAF type we do not interpret, kept byte for byte."""

    lcaf_type: int
    body: bytes
    rsvd1: int = 0
    flags: int = 0
    rsvd2: int = 0

    def __post_init__(self) -> None:
        check_uint("lcaf_type", self.lcaf_type, 8)
        check_uint("rsvd1", self.rsvd1, 8)
        check_uint("flags", self.flags, 8)
        check_uint("rsvd2", self.rsvd2, 8)
        if len(self.body) > 0xFFFF:
            raise ValueError("LCAF body longer than 65535 bytes")


Address = (
    NoAddress
    | IPv4Address
    | IPv6Address
    | DistinguishedName
    | InstanceId
    | AfiList
    | MulticastInfo
    | Rle
    | KeyValue
    | SecurityKey
    | UnknownLcaf
)
IPAddress = IPv4Address | IPv6Address


def afi_of(addr: Address) -> int:
    if isinstance(addr, IPv4Address):
        return Afi.IPV4
    if isinstance(addr, IPv6Address):
        return Afi.IPV6
    if isinstance(addr, NoAddress):
        return Afi.NONE
    if isinstance(addr, DistinguishedName):
        return Afi.DISTINGUISHED_NAME
    return Afi.LCAF


# ---------------------------------------------------------------- decoding

# Building an IPv4Address costs more than the rest of a small decode. A node
# sees few distinct RLOCs and EIDs, so a bounded memo keyed by the packed bytes
# pays for itself; it is cleared when full so hostile input cannot grow it.
_V4_MEMO: dict[bytes, IPv4Address] = {}
_V4_MEMO_MAX: Final = 1 << 16


def ipv4(packed: bytes) -> IPv4Address:
    """The IPv4Address for 4 packed bytes, memoised."""
    addr = _V4_MEMO.get(packed)
    if addr is None:
        if len(_V4_MEMO) >= _V4_MEMO_MAX:
            _V4_MEMO.clear()
        addr = _V4_MEMO[packed] = IPv4Address(packed)
    return addr


# Plain ints: comparing against IntEnum members costs an attribute lookup each.
_AFI_NONE: Final = 0
_AFI_IPV4: Final = 1
_AFI_IPV6: Final = 2
_AFI_NAME: Final = 17
_AFI_LCAF: Final = 16387


def read_address(r: Reader, depth: int = 0) -> Address:
    """Read an AFI-prefixed address. Unknown AFIs are refused (RFC 9301 5.1)."""
    afi = r.u16()
    if afi == _AFI_IPV4:
        return ipv4(r.take(4))
    if afi == _AFI_IPV6:
        return IPv6Address(r.take(16))
    if afi == _AFI_NONE:
        return NO_ADDRESS
    if afi == _AFI_NAME:
        return _read_name(r)
    if afi == _AFI_LCAF:
        return _read_lcaf(r, depth + 1)
    raise DecodeError(f"unknown AFI {afi} at offset {r.pos - 2}")


def read_ip(r: Reader) -> IPAddress:
    addr = read_address(r, MAX_LCAF_DEPTH)
    if not isinstance(addr, IPv4Address | IPv6Address):
        raise r.fail("expected an IPv4 or IPv6 address")
    return addr


def _read_name(r: Reader) -> DistinguishedName:
    start = r.pos
    chars = r.take_until_nul(MAX_NAME_LEN)
    if not chars:
        raise DecodeError(f"empty name at offset {start}")
    if not chars.isascii():
        bad = next(i for i, c in enumerate(chars) if c > 0x7F)
        raise DecodeError(f"non-ASCII byte in a name at offset {start + bad}")
    return DistinguishedName(chars.decode("ascii"))


def _read_lcaf(r: Reader, depth: int) -> Address:
    if depth > MAX_LCAF_DEPTH:
        raise r.fail(f"LCAFs nested deeper than {MAX_LCAF_DEPTH}")
    rsvd1 = r.u8()
    flags = r.u8()
    lcaf_type = r.u8()
    rsvd2 = r.u8()
    length = r.u16()
    if lcaf_type == LcafType.MULTICAST_INFO:
        # Not under r.limit(length): the lispers.net form runs past its Length.
        return _read_multicast_info(r, rsvd2, length)
    with r.limit(length):
        if lcaf_type == LcafType.INSTANCE_ID:
            iid = r.u32()
            return InstanceId(iid, read_address(r, depth), rsvd2)
        if lcaf_type == LcafType.AFI_LIST:
            return _read_afi_list(r, depth)
        if lcaf_type == LcafType.RLE:
            return _read_rle(r, depth)
        if lcaf_type == LcafType.KEY_VALUE:
            key = read_address(r, depth)
            return KeyValue(key, read_address(r, depth))
        if lcaf_type == LcafType.SECURITY_KEY:
            return _read_security_key(r, depth)
        return UnknownLcaf(lcaf_type, r.take_rest(), rsvd1, flags, rsvd2)


def _read_security_key(r: Reader, depth: int) -> SecurityKey:
    count = r.u8()
    rsvd3 = r.u8()
    suite = r.u8()
    revoke = bool(r.u8() & 0x01)
    if count > MAX_SECURITY_KEYS:
        raise r.fail(f"{count} security keys (RFC 8061 allows {MAX_SECURITY_KEYS})")
    keys = []
    for _ in range(count):
        length = r.u16()
        if length > MAX_SECURITY_KEY_LEN:
            raise r.fail(f"a {length}-byte security key")
        keys.append(r.take(length))
    return SecurityKey(suite, tuple(keys), read_address(r, depth), revoke, rsvd3)


def _read_afi_list(r: Reader, depth: int) -> AfiList:
    items: list[Address] = []
    while r.remaining:
        if len(items) == MAX_AFI_LIST_ITEMS:
            raise r.fail(f"more than {MAX_AFI_LIST_ITEMS} AFI-List items")
        items.append(read_address(r, depth))
    return AfiList(tuple(items))


# RFC 8060 Multicast Info body: IID(4) Rsvd(2) SrcML(1) GrpML(1) AFI Src AFI
# Grp, so its length gives the family. lispers.net writes two zero bytes first
# and leaves them out of the Length; our encoder once counted them (22 or 46).
# Length -> (AFI, whether the pad is counted).
_MCAST_FORMS: Final = {
    20: (_AFI_IPV4, False),
    44: (_AFI_IPV6, False),
    22: (_AFI_IPV4, True),
    46: (_AFI_IPV6, True),
}
_MCAST_PAD: Final = 2
_MCAST_RFC_AFI_AT: Final = 8
_MCAST_PADDED_AFI_AT: Final = _MCAST_RFC_AFI_AT + _MCAST_PAD


def _has_afis(body: bytes, at: int, afi: int) -> bool:
    """Whether body holds `afi` at `at` and again right after that address."""
    r = Reader(body, at)
    if r.u16() != afi:
        return False
    r.take(4 if afi == _AFI_IPV4 else 16)
    return r.u16() == afi


def _read_multicast_info(r: Reader, flags: int, length: int) -> MulticastInfo:
    start = r.pos
    form = _MCAST_FORMS.get(length)
    if form is None:
        raise DecodeError(f"Multicast Info length {length} at offset {start}")
    afi, pad_counted = form
    body = r.take(length)
    # Both readings find their AFIs within Length, so the choice needs no byte
    # past it; the RFC reading wins whenever it is consistent.
    padded = pad_counted or not _has_afis(body, _MCAST_RFC_AFI_AT, afi)
    if padded:
        if not _has_afis(body, _MCAST_PADDED_AFI_AT, afi):
            raise DecodeError(
                f"Multicast Info at offset {start} has AFI {afi} in neither "
                "the RFC 8060 nor the lispers.net place"
            )
        if not pad_counted:
            body += r.take(_MCAST_PAD)
    b = Reader(body)
    if padded and b.u16() != 0:
        raise DecodeError(f"non-zero lispers.net Multicast Info pad at offset {start}")
    iid = b.u32()
    b.u16()  # reserved, ignored on receipt (RFC 8060 section 3)
    source_ml = b.u8()
    group_ml = b.u8()
    source = read_ip(b)
    group = read_ip(b)
    return MulticastInfo(iid, source, source_ml, group, group_ml, flags, padded)


def _padded_reads_as_rfc(addr: MulticastInfo) -> bool:
    """Whether the lispers.net bytes of addr also parse as an RFC 8060 body:
    the RFC reading finds its AFIs in the mask lengths and the source's low
    16 bits."""
    afi = _AFI_IPV4 if addr.source.version == 4 else _AFI_IPV6
    return (
        addr.source_mask_len == 0
        and addr.group_mask_len == afi
        and int(addr.source) & 0xFFFF == afi
    )


def _read_rle(r: Reader, depth: int) -> Rle:
    entries: list[RleEntry] = []
    while r.remaining:
        if len(entries) == MAX_RLE_ENTRIES:
            raise r.fail(f"more than {MAX_RLE_ENTRIES} RLE entries")
        r.u16()  # Rsvd3
        r.u8()  # Rsvd4
        level = r.u8()
        address = read_address(r, depth)
        name = None
        # lispers.net may follow an entry's address with an AFI-17 name. A
        # next entry starts with Rsvd3 = 0, so AFI 17 cannot be mistaken.
        if r.remaining >= 2 and r.peek_u16() == Afi.DISTINGUISHED_NAME:
            r.u16()
            name = _read_name(r)
        entries.append(RleEntry(address, level, name))
    return Rle(tuple(entries))


# ---------------------------------------------------------------- encoding


def write_address(w: Writer, addr: Address) -> None:
    if isinstance(addr, IPv4Address):
        w.u16(Afi.IPV4)
        w.put(addr.packed)
    elif isinstance(addr, IPv6Address):
        w.u16(Afi.IPV6)
        w.put(addr.packed)
    elif isinstance(addr, NoAddress):
        w.u16(Afi.NONE)
    elif isinstance(addr, DistinguishedName):
        w.u16(Afi.DISTINGUISHED_NAME)
        w.put(addr.name.encode("ascii") + b"\x00")
    else:
        _write_lcaf(w, addr)


def _lcaf_header(
    w: Writer, lcaf_type: int, rsvd2: int, flags: int = 0, rsvd1: int = 0
) -> int:
    w.u16(Afi.LCAF)
    w.u8(rsvd1)
    w.u8(flags)
    w.u8(lcaf_type)
    w.u8(rsvd2)
    w.u16(0)  # length, patched by _close_lcaf
    return len(w)


def _close_lcaf(w: Writer, body_start: int, uncounted: int = 0) -> None:
    length = len(w) - body_start - uncounted
    if length > 0xFFFF:
        raise ValueError("LCAF body longer than 65535 bytes")
    w.patch_u16(body_start - 2, length)


def _write_lcaf(
    w: Writer,
    addr: InstanceId
    | AfiList
    | MulticastInfo
    | Rle
    | KeyValue
    | SecurityKey
    | UnknownLcaf,
) -> None:
    uncounted = 0
    if isinstance(addr, UnknownLcaf):
        start = _lcaf_header(w, addr.lcaf_type, addr.rsvd2, addr.flags, addr.rsvd1)
        w.put(addr.body)
    elif isinstance(addr, InstanceId):
        start = _lcaf_header(w, LcafType.INSTANCE_ID, addr.iid_mask_len)
        w.u32(addr.iid)
        write_address(w, addr.address)
    elif isinstance(addr, AfiList):
        start = _lcaf_header(w, LcafType.AFI_LIST, 0)
        for item in addr.items:
            write_address(w, item)
    elif isinstance(addr, MulticastInfo):
        start = _lcaf_header(w, LcafType.MULTICAST_INFO, addr.flags)
        if addr.padded:
            w.u16(0)
            if not _padded_reads_as_rfc(addr):
                uncounted = _MCAST_PAD
        w.u32(addr.iid)
        w.u16(0)
        w.u8(addr.source_mask_len)
        w.u8(addr.group_mask_len)
        write_address(w, addr.source)
        write_address(w, addr.group)
    elif isinstance(addr, KeyValue):
        start = _lcaf_header(w, LcafType.KEY_VALUE, 0)
        write_address(w, addr.key)
        write_address(w, addr.value)
    elif isinstance(addr, SecurityKey):
        start = _lcaf_header(w, LcafType.SECURITY_KEY, 0)
        w.u8(len(addr.keys))
        w.u8(addr.rsvd3)
        w.u8(addr.cipher_suite)
        w.u8(1 if addr.revoke else 0)
        for key in addr.keys:
            w.u16(len(key))
            w.put(key)
        write_address(w, addr.address)
    else:
        start = _lcaf_header(w, LcafType.RLE, 0)
        for entry in addr.entries:
            w.u16(0)
            w.u8(0)
            w.u8(entry.level)
            write_address(w, entry.address)
            if entry.name is not None:
                write_address(w, entry.name)
    _close_lcaf(w, start, uncounted)


def address_depth(addr: Address) -> int:
    """How many LCAFs are nested in addr (0 for a plain AFI)."""
    if isinstance(addr, InstanceId):
        return 1 + address_depth(addr.address)
    if isinstance(addr, AfiList):
        return 1 + max((address_depth(a) for a in addr.items), default=0)
    if isinstance(addr, Rle):
        return 1 + max((address_depth(e.address) for e in addr.entries), default=0)
    if isinstance(addr, KeyValue):
        return 1 + max(address_depth(addr.key), address_depth(addr.value))
    if isinstance(addr, SecurityKey):
        return 1 + address_depth(addr.address)
    if isinstance(addr, MulticastInfo | UnknownLcaf):
        return 1
    return 0
