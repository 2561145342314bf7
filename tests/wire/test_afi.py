"""Addresses on the wire: unknown AFIs and LCAFs, LCAF nesting, RLEs."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from decent.wire import (
    NO_ADDRESS,
    AfiList,
    DecodeError,
    InstanceId,
    Locator,
    MapRecord,
    MapReply,
    Rle,
    RleEntry,
    UnknownLcaf,
    decode,
)
from decent.wire.afi import write_address
from decent.wire.buffer import Writer
from decent.wire.limits import MAX_LCAF_DEPTH, MAX_RLE_ENTRIES

A = IPv4Address("192.0.2.1")


def _nest(depth: int) -> object:
    addr: object = A
    for _ in range(depth):
        addr = InstanceId(1, addr)  # type: ignore[arg-type]
    return addr


def test_unknown_lcaf_is_kept_byte_for_byte() -> None:
    geo = UnknownLcaf(5, bytes(range(12)), rsvd1=1, flags=2, rsvd2=3)
    rec = MapRecord(A, 32, (Locator(geo),))
    msg = MapReply(1, (rec,))
    raw = msg.encode()
    assert bytes.fromhex("4003 01 02 05 03 000c") + bytes(range(12)) in raw
    assert decode(raw) == msg


def test_unknown_afi_is_refused() -> None:
    raw = bytearray(MapReply(1, (MapRecord(A, 32),)).encode())
    raw[22:24] = (6).to_bytes(2, "big")  # AFI 6 (MAC) is not one we speak
    with pytest.raises(DecodeError, match="unknown AFI 6"):
        decode(bytes(raw))


def test_lcaf_nesting_is_bounded_both_ways() -> None:
    ok = MapReply(1, (MapRecord(_nest(MAX_LCAF_DEPTH), 32),))  # type: ignore[arg-type]
    assert decode(ok.encode()) == ok
    with pytest.raises(ValueError, match="deeper"):
        MapRecord(_nest(MAX_LCAF_DEPTH + 1), 32)  # type: ignore[arg-type]
    w = Writer()
    write_address(w, _nest(MAX_LCAF_DEPTH + 1))  # type: ignore[arg-type]
    plain = bytes.fromhex("0001") + A.packed
    raw = MapReply(1, (MapRecord(A, 32),)).encode().replace(plain, w.raw())
    with pytest.raises(DecodeError, match="nested deeper"):
        decode(raw)


def test_rle_entries_are_bounded() -> None:
    with pytest.raises(ValueError, match="RLE entries"):
        Rle(tuple(RleEntry(A) for _ in range(MAX_RLE_ENTRIES + 1)))


def test_lispers_rle_names_after_entries_are_accepted() -> None:
    from decent.wire import DistinguishedName

    rle = Rle((RleEntry(A, 128, DistinguishedName("n1")), RleEntry(A, 128)))
    loc = Locator(AfiList((NO_ADDRESS, rle)), 255, 0, 1, 100)
    msg = MapReply(1, (MapRecord(A, 32, (loc,)),))
    assert decode(msg.encode()) == msg
