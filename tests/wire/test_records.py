"""Records on the wire: locator and referral bounds, fields out of range."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from decent.wire import (
    AfiList,
    DecodeError,
    DistinguishedName,
    Locator,
    MapRecord,
    MapReply,
    NoAddress,
    ReferralRecord,
    ReferralSignature,
    Rle,
    RleEntry,
    decode,
)
from decent.wire.limits import MAX_LOCATORS

A = IPv4Address("192.0.2.1")


def test_locator_count_is_bounded() -> None:
    locs = tuple(Locator(A) for _ in range(MAX_LOCATORS + 1))
    with pytest.raises(ValueError, match="locators"):
        MapRecord(A, 32, locs)
    raw = bytearray(MapReply(1, (MapRecord(A, 32),)).encode())
    raw[16] = MAX_LOCATORS + 1
    with pytest.raises(DecodeError, match="locators exceed"):
        decode(bytes(raw))


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Locator(A, priority=256), "priority"),
        (lambda: Locator(A, weight=-1), "weight"),
        (lambda: Locator(A, m_priority=300), "m_priority"),
        (lambda: Locator(A, m_weight=256), "m_weight"),
        (lambda: MapRecord(A, 33 * 8), "mask_len"),
        (lambda: MapRecord(A, 32, ttl=1 << 32), "ttl"),
        (lambda: MapRecord(A, 32, action=8), "action"),
        (lambda: MapRecord(A, 32, map_version=1 << 12), "map_version"),
        (lambda: ReferralRecord(A, 32, ttl=-1), "ttl"),
        (lambda: ReferralRecord(A, 32, action=9), "action"),
    ],
)
def test_constructors_name_the_field_out_of_range(build: object, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}="):
        build()  # type: ignore[operator]


def test_referral_limits_are_enforced() -> None:
    with pytest.raises(ValueError, match="referrals"):
        ReferralRecord(A, 32, tuple(Locator(A) for _ in range(MAX_LOCATORS + 1)))
    sig = ReferralSignature(0, 0, 0, 0, 0, b"")
    with pytest.raises(ValueError, match="signatures"):
        ReferralRecord(A, 32, signatures=(sig,) * 16)


def test_an_afi_list_locator_gives_its_address_and_name() -> None:
    rloc = IPv4Address("192.0.2.32")
    listed = Locator(AfiList((DistinguishedName("vm"), rloc)))
    assert (listed.rloc, listed.name) == (rloc, "vm")
    assert (Locator(rloc).rloc, Locator(rloc).name) == (rloc, None)
    rle = Rle((RleEntry(rloc, 128),))
    assert Locator(rle).rloc is None
    assert Locator(AfiList((NoAddress(), rle))).rloc is None
    assert Locator(DistinguishedName("vm")).rloc is None
