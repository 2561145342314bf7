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


def _kv_record(addr: object) -> MapRecord:
    return MapRecord(A, 32, (Locator(addr, 255, 0, 255, 0),))  # type: ignore[arg-type]


def test_key_value_pair_layout_and_round_trip() -> None:
    from decent.wire import DistinguishedName, KeyValue

    kv = KeyValue(DistinguishedName("k"), DistinguishedName("v1"))
    w = Writer()
    write_address(w, kv)
    # AFI 16387, Rsvd1, Flags, Type 15, Rsvd2, Length 9, then AFI 17 "k\0"
    # and AFI 17 "v1\0" (RFC 8060 section 4.3.1).
    assert w.raw() == bytes.fromhex("4003 00 00 0f 00 0009 0011 6b00 0011 763100")
    msg = MapReply(1, (_kv_record(kv),))
    assert decode(msg.encode()) == msg
    nested = KeyValue(InstanceId(7, A), AfiList((A, DistinguishedName("x"))))
    msg = MapReply(1, (_kv_record(nested),))
    assert decode(msg.encode()) == msg


def test_key_value_pair_nesting_is_bounded() -> None:
    from decent.wire import KeyValue

    deep = KeyValue(NO_ADDRESS, _nest(MAX_LCAF_DEPTH))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deeper"):
        _kv_record(deep)
    w = Writer()
    write_address(w, deep)
    plain = bytes.fromhex("0001") + A.packed
    raw = MapReply(1, (MapRecord(A, 32, (Locator(A),)),)).encode()
    raw = raw[: -len(plain)] + w.raw()
    with pytest.raises(DecodeError, match="nested deeper"):
        decode(raw)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "need 2 bytes"),  # no key
        ("0011 6b00", "need 2 bytes"),  # a key and no value
        ("0011 6b00 0011 7600 00", "unread bytes"),  # a byte after the value
        ("0011 6b00 0006 00", "unknown AFI 6"),
    ],
)
def test_malformed_key_value_pairs_are_decode_errors(body: str, reason: str) -> None:
    payload = bytes.fromhex(body)
    lcaf = bytes.fromhex("4003 0000 0f00") + len(payload).to_bytes(2, "big") + payload
    plain = bytes.fromhex("0001") + A.packed
    raw = MapReply(1, (MapRecord(A, 32, (Locator(A),)),)).encode()
    with pytest.raises(DecodeError, match=reason):
        decode(raw[: -len(plain)] + lcaf)


def test_key_value_pairs_render_and_are_no_eids() -> None:
    from decent.wire import DistinguishedName, Eid, KeyValue, address_text

    kv = KeyValue(DistinguishedName("decent-signature"), DistinguishedName("QUJD"))
    assert address_text(kv) == "KV{'decent-signature': 'QUJD'}"
    assert Locator(kv).rloc is None
    with pytest.raises(ValueError, match="not an indexable EID"):
        Eid.from_wire(kv, 0)
