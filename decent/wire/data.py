"""The 8-byte LISP data-plane header: encapsulation and decapsulation (RFC 9300 5.3)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from decent.wire.buffer import Reader, check_uint
from decent.wire.errors import DecodeError
from decent.wire.ip import peek_flow

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

#: RFC 6335 dynamic ports, where flow_source_port() picks from.
EPHEMERAL_PORT_MIN: Final = 49152
_EPHEMERAL_PORTS: Final = 0x10000 - EPHEMERAL_PORT_MIN

_WORDS: Final = struct.Struct("!II")
_FLOW_PORTS: Final = struct.Struct("!BBHH")


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


def flow_source_port(inner: bytes) -> int:
    """An ephemeral UDP source port that is the same for every packet of a flow.

    RFC 9300 sections 5.3 and 12 want a hash of the inner 5-tuple, so routers
    between the RLOCs can spread flows over ECMP/LAG paths without reordering.
    """
    flow = peek_flow(inner)
    if flow is None:
        key = Reader(inner).take(min(len(inner), 20))
    else:
        version, src, dst, proto, sport, dport = flow
        key = _FLOW_PORTS.pack(version, proto, sport, dport) + src + dst
    return EPHEMERAL_PORT_MIN + zlib.crc32(key) % _EPHEMERAL_PORTS
