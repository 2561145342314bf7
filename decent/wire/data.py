"""The 8-byte LISP data-plane header (RFC 9300 5.3) and the inner flow hash."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from decent.wire.buffer import Reader, check_uint
from decent.wire.errors import DecodeError

LISP_DATA_PORT: Final = 4341
LISP_CONTROL_PORT: Final = 4342

#: RFC 9962: the instance ID that marks a LISP-Decent control encapsulation.
DECENT_CONTROL_IID: Final = 0xFFFFFF

DATA_HEADER_LEN: Final = 8

FLAG_NONCE: Final = 0x80  # N
FLAG_LSBS: Final = 0x40  # L
FLAG_ECHO_NONCE: Final = 0x20  # E
FLAG_MAP_VERSION: Final = 0x10  # V
FLAG_INSTANCE_ID: Final = 0x08  # I
FLAG_RESERVED: Final = 0x04  # R: sent as 0, ignored on receipt
KEY_ID_MASK: Final = 0x03  # KK (RFC 8061)

_WORDS: Final = struct.Struct("!II")


@dataclass(frozen=True, slots=True)
class DataHeader:
    """The LISP header; a None field means its flag bit is clear.

    `lsbs` is None exactly when L is clear; its bits are then sent as 0. With
    an instance ID it is 8 bits wide, otherwise 32.
    """

    nonce: int | None = None
    echo_nonce: bool = False
    source_map_version: int | None = None
    dest_map_version: int | None = None
    instance_id: int | None = None
    lsbs: int | None = None
    key_id: int = 0

    def __post_init__(self) -> None:
        if self.nonce is not None:
            check_uint("nonce", self.nonce, 24)
        elif self.echo_nonce:
            raise ValueError("echo_nonce needs a nonce (E is ignored without N)")
        if (self.source_map_version is None) != (self.dest_map_version is None):
            raise ValueError("source and dest map versions go together (V bit)")
        if self.source_map_version is not None and self.dest_map_version is not None:
            # RFC 9300 section 5.3: N and V MUST NOT both be set.
            if self.nonce is not None:
                raise ValueError("a nonce and map versions are mutually exclusive")
            check_uint("source_map_version", self.source_map_version, 12)
            check_uint("dest_map_version", self.dest_map_version, 12)
        if self.instance_id is not None:
            check_uint("instance_id", self.instance_id, 24)
        if self.lsbs is not None:
            check_uint("lsbs", self.lsbs, 32 if self.instance_id is None else 8)
        check_uint("key_id", self.key_id, 2)

    def encode(self) -> bytes:
        flags = self.key_id
        first = 0
        if self.nonce is not None:
            flags |= FLAG_NONCE | (FLAG_ECHO_NONCE if self.echo_nonce else 0)
            first = self.nonce
        elif self.source_map_version is not None and self.dest_map_version is not None:
            flags |= FLAG_MAP_VERSION
            first = self.source_map_version << 12 | self.dest_map_version
        second = self.lsbs or 0
        if self.lsbs is not None:
            flags |= FLAG_LSBS
        if self.instance_id is not None:
            flags |= FLAG_INSTANCE_ID
            second |= self.instance_id << 8
        return _WORDS.pack(flags << 24 | first, second)


def encapsulate(header: DataHeader, inner: bytes) -> bytes:
    """The UDP payload for port 4341: header, then the inner IP packet."""
    if not inner:
        raise ValueError("nothing to encapsulate")
    return header.encode() + inner


def decapsulate(data: bytes) -> tuple[DataHeader, bytes]:
    """Split a 4341 UDP payload into its header and the inner packet.

    Raises DecodeError if the header is short or no inner packet follows.
    """
    r = Reader(data)
    first = r.u32()
    second = r.u32()
    inner = r.take_rest()
    if not inner:
        raise DecodeError(f"no inner packet after the LISP header at offset {r.pos}")
    flags = first >> 24
    low24 = first & 0xFFFFFF
    nonce = smv = dmv = iid = lsbs = None
    # RFC 9300 section 5.3: with both N and V set, the field is a nonce.
    if flags & FLAG_NONCE:
        nonce = low24
    elif flags & FLAG_MAP_VERSION:
        smv = low24 >> 12
        dmv = low24 & 0xFFF
    if flags & FLAG_INSTANCE_ID:
        iid = second >> 8
        second &= 0xFF
    if flags & FLAG_LSBS:
        lsbs = second
    echo = nonce is not None and bool(flags & FLAG_ECHO_NONCE)
    header = DataHeader(nonce, echo, smv, dmv, iid, lsbs, flags & KEY_ID_MASK)
    return header, inner


# The data plane's per-packet path: in place, no Reader, no dataclass, no
# checks (the caller has checked the length). A buffer holds a LISP data
# packet as the data plane keeps it: the header in buf[0:8], then the inner
# packet. Fast twins of DataHeader.encode and decapsulate, tested against them.


def stamp_into(
    buf: bytearray | memoryview,
    flags: int,
    nonce: int,
    iid: int,
    lsbs: int,
    at: int = 0,
) -> None:
    """Write a header into buf[at:at + 8]: what DataHeader(...).encode() writes.

    `flags` is the first byte (FLAG_* and KK), computed once by the caller;
    the low 24 bits of `nonce` fill the field after it (a nonce, or with V the
    map versions). With FLAG_INSTANCE_ID the second word is `iid` and 8 bits
    of `lsbs`; without, it is 32 bits of `lsbs` and `iid` is not sent.
    """
    _WORDS.pack_into(
        buf,
        at,
        flags << 24 | (nonce & 0xFFFFFF),
        (iid << 8 | lsbs) if flags & FLAG_INSTANCE_ID else lsbs,
    )


def peek_iid(buf: bytearray | memoryview | bytes) -> int | None:
    """The instance ID of the header in buf[0:8], or None if I is clear."""
    if buf[0] & FLAG_INSTANCE_ID:
        # Three indexings beat int.from_bytes on a slice by half.
        return buf[4] << 16 | buf[5] << 8 | buf[6]
    return None


def peek_lsbs(buf: bytearray | memoryview | bytes) -> int | None:
    """The locator-status bits of the header in buf[0:8] (8 with an instance
    ID, else 32), or None if L is clear."""
    flags = buf[0]
    if not flags & FLAG_LSBS:
        return None
    if flags & FLAG_INSTANCE_ID:
        return buf[7]
    lsbs: int = _WORDS.unpack_from(buf)[1]  # also faster than int.from_bytes
    return lsbs


def flow_hash(
    buf: bytearray | memoryview | bytes,
    n: int,
    version: int,
    offset: int = DATA_HEADER_LEN,
) -> int:
    """A hash of the 5-tuple of the IP packet in buf[offset:offset + n] (IPv4
    with n >= 20 or IPv6 with n >= 40; `version` is its version nibble): its
    addresses and protocol, plus the ports of unfragmented TCP and UDP. By
    default the packet is the inner one after the LISP header; offset=0
    hashes a bare IP packet.

    RFC 9300 sections 5.3 and 12 want one UDP source port per flow, so
    ECMP/LAG paths keep each flow in order; the data plane also picks the
    flow's RLOC with it. No fragment is hashed with ports, not even the first,
    which carries them: the others cannot, and every fragment of a datagram
    must take the same RLOC and source port, or its pieces part ways (and
    reorder) in the underlay. IPv6 fragments have next header 44, so they
    skip ports too.
    """
    # The ports follow the addresses in IPv6 and in IPv4 without options:
    # one crc32 over both equals crc32(ports, crc32(addresses, proto)).
    if version == 4:
        proto = buf[offset + 9]
        # Flags/fragment offset word: MF (0x20) or a non-zero offset.
        fragment = buf[offset + 6] & 0x3F or buf[offset + 7]
        if (proto == 6 or proto == 17) and not fragment:
            ihl = buf[offset] & 0x0F
            if ihl == 5:
                return zlib.crc32(buf[offset + 12 : offset + 24], proto)
            ports = offset + ihl * 4
            h = zlib.crc32(buf[offset + 12 : offset + 20], proto)
            return zlib.crc32(buf[ports : ports + 4], h)
        return zlib.crc32(buf[offset + 12 : offset + 20], proto)
    proto = buf[offset + 6]
    if (proto == 6 or proto == 17) and n >= 44:
        return zlib.crc32(buf[offset + 8 : offset + 44], proto)
    return zlib.crc32(buf[offset + 8 : offset + 40], proto)
