"""Normalised EIDs: wire conversion, containment, text rendering and parsing."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decent.wire import (
    AfiList,
    DistinguishedName,
    Eid,
    InstanceId,
    MulticastInfo,
    Rle,
    RleEntry,
    UnknownLcaf,
    address_text,
    parse_eid,
)
from decent.wire.afi import NO_ADDRESS


def test_plain_afi_is_instance_id_0() -> None:
    plain = Eid.from_wire(IPv4Address("10.1.2.3"), 16)
    wrapped = Eid.from_wire(InstanceId(0, IPv4Address("10.1.0.0")), 16)
    assert plain == wrapped == Eid.prefix("10.1.0.0/16")
    assert str(plain) == "[0]10.1.0.0/16"


def test_to_wire_chooses_plain_or_lcaf_for_iid_0() -> None:
    eid = Eid.prefix("10.1.0.0/16")
    assert eid.to_wire() == (IPv4Address("10.1.0.0"), 16)
    assert eid.to_wire(plain_iid0=False) == (InstanceId(0, IPv4Address("10.1.0.0")), 16)
    e5 = Eid.prefix("2001:db8::/32", iid=5)
    assert e5.to_wire() == (InstanceId(5, IPv6Address("2001:db8::")), 32)


def test_multicast_info_is_an_sg_eid() -> None:
    mc = MulticastInfo(7, IPv4Address("0.0.0.0"), 0, IPv4Address("233.252.1.1"), 32)
    eid = Eid.from_wire(mc, 0)
    assert eid == Eid.sg("0.0.0.0/0", "233.252.1.1/32", iid=7)
    assert str(eid) == "[7](0.0.0.0/0, 233.252.1.1/32)"
    assert eid.to_wire() == (mc, 0)
    assert eid.is_sg
    assert not eid.is_name
    assert eid.version == 4


def test_names_render_quoted() -> None:
    eid = Eid.from_wire(DistinguishedName("n1"), 0)
    assert str(eid) == "[0]'n1'"
    assert eid.is_name
    assert eid.version == 0
    assert eid.to_wire() == (DistinguishedName("n1"), 16)  # lispers.net: 8 x length
    assert Eid.from_wire(DistinguishedName("n1"), 16) == eid


@pytest.mark.parametrize(
    "addr",
    [
        NO_ADDRESS,
        AfiList(()),
        Rle(()),
        UnknownLcaf(5, b""),
        InstanceId(
            1, MulticastInfo(0, IPv4Address("0.0.0.0"), 0, IPv4Address("239.1.1.1"), 32)
        ),
    ],
)
def test_non_eid_addresses_are_refused(addr: object) -> None:
    with pytest.raises(ValueError, match="not an indexable EID"):
        Eid.from_wire(addr, 0)  # type: ignore[arg-type]


def test_constructor_refuses_bad_eids() -> None:
    with pytest.raises(ValueError, match="host bits"):
        Eid(0, IPv4Address("10.1.2.3"), 16)
    with pytest.raises(ValueError, match="out of range"):
        Eid(0, IPv4Address("10.0.0.0"), 33)
    with pytest.raises(ValueError, match="name EID"):
        Eid(0, DistinguishedName("x"), 8)
    with pytest.raises(ValueError, match="one address family"):
        Eid(0, IPv4Address("0.0.0.0"), 0, IPv6Address("ff05::1"), 128)
    with pytest.raises(ValueError, match="host bits"):
        Eid(0, IPv4Address("0.0.0.0"), 0, IPv4Address("239.1.1.1"), 8)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.1.1.1", "[0]1.1.1.1/32"),
        ("10.1.2.3/16", "[0]10.1.0.0/16"),
        ("[1000]fd::2222", "[1000]fd::2222/128"),
        (" [5] 10.0.0.0/8 ", "[5]10.0.0.0/8"),
        ("'n1'", "[0]'n1'"),
        ("[3]'db-server'", "[3]'db-server'"),
        ("1.1.1.1->233.252.1.1", "[0](1.1.1.1/32, 233.252.1.1/32)"),
        ("(0.0.0.0/0, 233.252.1.1)", "[0](0.0.0.0/0, 233.252.1.1/32)"),
        ("[9](::/0,ff05::1)", "[9](::/0, ff05::1/128)"),
    ],
)
def test_parse_accepts_what_people_write(text: str, expected: str) -> None:
    assert str(parse_eid(text)) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no EID"),
        ("[7]", "no EID"),
        ("banana", "not an address or prefix"),
        ("10.0.0.0/33", "not an address or prefix"),
        ("[99999999999]1.1.1.1", "32 bits"),
        ("1.1.1.1->ff05::1", "one address family"),
        ("''", "may not be empty"),
        ("'caf\u00e9'", "ASCII"),
    ],
)
def test_parse_explains_bad_input(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_eid(text)


@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**32 - 1))
def test_text_form_round_trips(iid: int, plen: int, value: int) -> None:
    value = value >> (32 - plen) << (32 - plen) if plen else 0
    eid = Eid(iid, IPv4Address(value), plen)
    assert parse_eid(str(eid)) == eid


def test_contains_follows_prefixes() -> None:
    outer = Eid.prefix("10.0.0.0/8")
    assert outer.contains(Eid.prefix("10.1.0.0/16"))
    assert not outer.contains(Eid.prefix("11.0.0.0/16"))
    assert not outer.contains(Eid.prefix("0.0.0.0/0"))
    assert not outer.contains(Eid.prefix("10.1.0.0/16", iid=1))
    assert not outer.contains(Eid.prefix("::/0"))
    assert Eid.name("a").contains(Eid.name("a"))
    assert not Eid.name("a").contains(Eid.prefix("10.0.0.0/8"))
    sg = Eid.sg("0.0.0.0/0", "239.1.1.1/32")
    assert sg.contains(sg)
    assert not sg.contains(Eid.prefix("239.1.1.1/32"))


def test_address_text_renders_every_kind() -> None:
    rle = Rle((RleEntry(IPv4Address("192.0.2.1"), 128, DistinguishedName("n1")),))
    assert address_text(rle) == "RLE{192.0.2.1(n1)/L128}"
    assert address_text(AfiList((NO_ADDRESS, IPv4Address("1.2.3.4")))) == "{-, 1.2.3.4}"
    assert address_text(InstanceId(3, DistinguishedName("x"))) == "[3]'x'"
    assert address_text(UnknownLcaf(5, b"\x01")) == "LCAF5(01)"
    mc = MulticastInfo(0, IPv4Address("0.0.0.0"), 0, IPv4Address("239.1.1.1"), 32)
    assert address_text(mc) == "[0](0.0.0.0/0, 239.1.1.1/32)"
