"""lispers.net interop captures: the padded Multicast Info LCAF and lig's ECM."""

from __future__ import annotations

import contextlib
import dataclasses
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decent.wire import (
    NO_ADDRESS,
    AfiList,
    DecodeError,
    EncapsulatedControlMessage,
    Locator,
    MapRecord,
    MapRegister,
    MapRequest,
    MulticastInfo,
    RequestRecord,
    Rle,
    RleEntry,
    decode,
)
from decent.wire.afi import Address, read_address, write_address
from decent.wire.buffer import Reader, Writer
from tests.wire import strategies as ws

PROPS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(line.partition("#")[0] for line in text.split("\n")))


ANY4 = IPv4Address("0.0.0.0")
ITR = IPv4Address("192.0.2.41")

# lispers.net `lig` asking for (0.0.0.0/32, 233.252.1.1/32): an ECM whose
# inner IPv4 header has ident 0, DF clear and TTL 128, and whose inner UDP
# checksum is 0. The UDP payload after the outer UDP header.
LIG_ECM = _hex(
    """
    80 000000                        # ECM, no flags
    45 00 0050  0000 0000            # IPv4, total length 80, ident 0, DF clear
    80 11 4fa0  00000000  e9fc0101   # TTL 128, UDP, 0.0.0.0 -> 233.252.1.1
    10f6 10f6 003c 0000              # UDP 4342 -> 4342, length 60, checksum 0
    10 0000 01                       # Map-Request, IRC 0, one record
    28d8c110 1d0edfdf                # nonce
    0000                             # source EID AFI 0
    0001 c0000229                    # ITR-RLOC 192.0.2.41
    00 20                            # record: reserved, EID mask-len 32
    4003 00 00 09 00 0014            # LCAF Multicast Info, Length 20 ...
    0000                             #   ... not counting this pad
    00000000 0000 20 20              #   IID 0, reserved, source/group mask 32
    0001 00000000  0001 e9fc0101     #   0.0.0.0, 233.252.1.1
    """
)
LIG_EID = MulticastInfo(0, ANY4, 32, IPv4Address("233.252.1.1"), 32, padded=True)

# A lispers.net (0/0, 233.252.1.3) group join: unauthenticated, the RLE inside
# an AFI list whose first item is AFI 0 (protocol-notes gotchas 5 and 10).
JOIN = _hex(
    """
    3a 0004 01                       # Map-Register P I a, one record
    01dfdfdf ddccbbaa                # nonce (lispers.net's little-endian base)
    00 00 0000                       # Key ID 0, Alg ID 0, no auth data
    00000003                         # record TTL 3 minutes
    01 00 1000 0000                  # one locator, mask-len 0, A, version 0
    4003 00 00 09 00 0014            # LCAF Multicast Info, Length 20 ...
    0000                             #   ... not counting this pad
    00000000 0000 00 20              #   IID 0, reserved, source 0, group 32
    0001 00000000  0001 e9fc0103     #   0.0.0.0, 233.252.1.3
    ff 00 01 64 0005                 # locator: pri 255 w 0 mpri 1 mw 100, L R
    4003 00 00 01 00 0014            # LCAF AFI List, Length 20
    0000                             #   AFI 0: no RLOC address
    4003 00 00 0d 00 000a            #   LCAF RLE, Length 10
    0000 00 80  0001 c0000220        #     level 128, 192.0.2.32
    00000000 00000000 e6059e64 592e8064  # xTR-ID
    00000000 00000000                # Site-ID
    """
)
JOIN_EID = MulticastInfo(0, ANY4, 0, IPv4Address("233.252.1.3"), 32, padded=True)
JOIN_RLE = Rle((RleEntry(IPv4Address("192.0.2.32"), 128),))

CAPTURES = {"lig_ecm": LIG_ECM, "group_join": JOIN}


def _address_bytes(addr: Address) -> bytes:
    w = Writer()
    write_address(w, addr)
    return w.raw()


def _read(data: bytes) -> Address:
    r = Reader(data)
    addr = read_address(r)
    r.finish()
    return addr


def _request(eid: Address) -> MapRequest:
    return MapRequest(1, (RequestRecord(eid, 32),), (ITR,))


# ------------------------------------------------------------------ captures


def test_lig_ecm_decodes_to_its_fields() -> None:
    ecm = decode(LIG_ECM)
    assert isinstance(ecm, EncapsulatedControlMessage)
    assert (ecm.ddt, ecm.to_etr, ecm.to_ms) == (False, False, False)
    assert (ecm.inner_src, ecm.inner_dst) == (ANY4, IPv4Address("233.252.1.1"))
    assert (ecm.inner_sport, ecm.inner_dport) == (4342, 4342)
    assert (ecm.ip_ttl, ecm.ip_ident, ecm.ip_dont_fragment) == (128, 0, False)
    assert ecm.inner_udp_checksum is False
    req = ecm.message
    assert isinstance(req, MapRequest)
    assert req.nonce == 0x28D8C1101D0EDFDF
    assert req.source_eid == NO_ADDRESS
    assert req.itr_rlocs == (ITR,)
    assert req.map_reply is None
    assert req.xtr_id is None
    (record,) = req.records
    assert record == RequestRecord(LIG_EID, 32)
    eid = record.eid
    assert isinstance(eid, MulticastInfo)
    assert (eid.iid, eid.source, eid.source_mask_len) == (0, ANY4, 32)
    assert (eid.group, eid.group_mask_len) == (IPv4Address("233.252.1.1"), 32)
    assert eid.padded


def test_group_join_decodes_to_its_fields() -> None:
    reg = decode(JOIN)
    assert isinstance(reg, MapRegister)
    assert reg.nonce == 0x01DFDFDFDDCCBBAA
    assert (reg.key_id, reg.alg_id, reg.auth_data) == (0, 0, b"")
    assert (reg.proxy_reply, reg.merge, reg.want_map_notify) == (True, True, False)
    assert (reg.xtr_id, reg.site_id) == (0xE6059E64592E8064, 0)
    (record,) = reg.records
    assert (record.ttl, record.mask_len, record.authoritative) == (3, 0, True)
    eid = record.eid
    assert eid == JOIN_EID
    assert isinstance(eid, MulticastInfo)
    assert (eid.iid, eid.source, eid.source_mask_len) == (0, ANY4, 0)
    assert (eid.group, eid.group_mask_len) == (IPv4Address("233.252.1.3"), 32)
    assert eid.padded
    (locator,) = record.locators
    assert locator == Locator(
        AfiList((NO_ADDRESS, JOIN_RLE)), 255, 0, 1, 100, local=True
    )
    assert isinstance(locator.address, AfiList)
    rle = locator.address.items[1]
    assert isinstance(rle, Rle)
    assert rle.entries[0].level == 128
    assert rle.entries[0].address == IPv4Address("192.0.2.32")


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_re_encodes_byte_for_byte(name: str) -> None:
    data = CAPTURES[name]
    assert decode(data).encode().hex() == data.hex()


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_every_truncation_of_a_capture_is_a_decode_error(name: str) -> None:
    data = CAPTURES[name]
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_a_trailing_byte_after_a_capture_is_a_decode_error(name: str) -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode(CAPTURES[name] + b"\x00")


# ------------------------------------------------------ Multicast Info forms


def test_default_multicast_info_is_rfc8060_with_length_20() -> None:
    mc = dataclasses.replace(JOIN_EID, padded=False)
    assert _address_bytes(mc) == _hex(
        "4003 00 00 09 00 0014  00000000 0000 00 20  0001 00000000  0001 e9fc0103"
    )
    assert _read(_address_bytes(mc)) == mc


def test_padded_multicast_info_is_written_as_lispers_net_does() -> None:
    assert _address_bytes(JOIN_EID) == _hex(
        "4003 00 00 09 00 0014  0000 00000000 0000 00 20  0001 00000000  0001 e9fc0103"
    )


def test_lispers_ipv6_form_has_length_44_and_46_bytes_after_it() -> None:
    mc = MulticastInfo(
        5, IPv6Address("2001:db8::1"), 128, IPv6Address("ff0e::1"), 128, padded=True
    )
    built = (
        _hex("4003 00 00 09 00 002c  0000 00000005 0000 80 80")
        + _hex("0002")
        + IPv6Address("2001:db8::1").packed
        + _hex("0002")
        + IPv6Address("ff0e::1").packed
    )
    assert len(built) - 8 == 46
    assert _read(built) == mc
    assert _address_bytes(mc) == built
    msg = _request(mc)
    assert decode(msg.encode()) == msg


@pytest.mark.parametrize(
    ("length", "source", "group"),
    [
        (22, ANY4, IPv4Address("233.252.1.1")),
        (46, IPv6Address("::"), IPv6Address("ff0e::1")),
    ],
)
def test_pad_counted_in_the_length_is_still_accepted(
    length: int, source: IPv4Address | IPv6Address, group: IPv4Address | IPv6Address
) -> None:
    # The form our encoder wrote before it matched lispers.net.
    mc = MulticastInfo(9, source, 0, group, group.max_prefixlen, padded=True)
    lispers = _address_bytes(mc)
    counted = lispers[:6] + length.to_bytes(2, "big") + lispers[8:]
    assert _read(counted) == mc
    assert _address_bytes(_read(counted)) == lispers


def test_a_non_zero_pad_is_a_decode_error() -> None:
    data = bytearray(_request(LIG_EID).encode())
    pad = data.index(_hex("4003 00 00 09 00 0014")) + 8
    data[pad + 1] = 1
    with pytest.raises(DecodeError, match=r"non-zero lispers\.net Multicast Info pad"):
        decode(bytes(data))


@pytest.mark.parametrize("cut", [1, 2])
def test_a_truncated_padded_multicast_info_is_a_decode_error(cut: int) -> None:
    # The EID ends the message: all of Length is there, the pad's two are not.
    data = _request(LIG_EID).encode()
    with pytest.raises(DecodeError, match=f"need 2 bytes.*have {2 - cut}"):
        decode(data[:-cut])


def test_padded_multicast_info_does_not_read_past_an_enclosing_lcaf() -> None:
    loc = Locator(AfiList((JOIN_EID,)))
    data = bytearray(MapRegister(1, (MapRecord(ITR, 32, (loc,)),)).encode())
    at = data.index(_hex("4003 00 00 01 00 001e"))
    # The message still holds the pad's two bytes; only the AFI List's
    # Length, now two short, may stop the read.
    data[at + 6 : at + 8] = (0x1E - 2).to_bytes(2, "big")
    with pytest.raises(DecodeError, match="need 2 bytes"):
        decode(bytes(data))


def test_inconsistent_multicast_info_is_a_decode_error() -> None:
    data = bytearray(_address_bytes(JOIN_EID))
    data[18:20] = b"\x00\x07"  # the padded reading's source AFI
    with pytest.raises(DecodeError, match="neither the RFC 8060 nor the lispers"):
        _read(bytes(data))
    with pytest.raises(DecodeError, match="Multicast Info length 21"):
        _read(_hex("4003 00 00 09 00 0015") + bytes(21))


def test_rfc_reading_wins_when_both_readings_are_consistent() -> None:
    # IID 0, masks 0/1, AFI 1 at offsets 8 and 14 (RFC 8060) and, through the
    # addresses 0.1.x.x, at offsets 10 and 16 (lispers.net) as well.
    mc = MulticastInfo(0, IPv4Address("0.1.0.1"), 0, IPv4Address("0.1.2.3"), 1)
    data = _address_bytes(mc)
    assert data[8:10] == b"\x00\x00"
    r = Reader(data + b"\xff\xff")
    assert read_address(r) == mc
    assert r.remaining == 2


def test_padded_value_that_reads_as_rfc8060_counts_its_pad() -> None:
    # Its lispers.net bytes hold AFI 1 where the RFC reading looks for both
    # AFIs; the pad goes into Length so that it decodes back as written.
    mc = MulticastInfo(
        0, IPv4Address("10.0.0.1"), 0, IPv4Address("233.252.1.1"), 1, padded=True
    )
    data = _address_bytes(mc)
    assert data[6:8] == (22).to_bytes(2, "big")
    assert _read(data) == mc


@PROPS
@given(ws.multicast_info())
def test_multicast_info_round_trips_in_both_forms(mc: MulticastInfo) -> None:
    for form in (mc, dataclasses.replace(mc, padded=not mc.padded)):
        assert _read(_address_bytes(form)) == form
        msg = _request(form)
        assert decode(msg.encode()) == msg


@PROPS
@given(
    st.sampled_from([20, 22, 44, 46]) | st.integers(0, 0xFFFF),
    st.binary(max_size=60),
)
def test_any_multicast_info_body_decodes_or_raises_decode_error(
    length: int, body: bytes
) -> None:
    data = _hex("4003 00 00 09 00") + length.to_bytes(2, "big") + body
    r = Reader(data)
    with contextlib.suppress(DecodeError):
        read_address(r)
    assert r.pos <= len(data)


# ------------------------------------------------------------ ECM checksums


def test_our_ecms_carry_a_non_zero_inner_udp_checksum() -> None:
    ecm = decode(LIG_ECM)
    assert isinstance(ecm, EncapsulatedControlMessage)
    ours = EncapsulatedControlMessage(ecm.message, ecm.inner_src, ecm.inner_dst)
    assert ours.inner_udp_checksum
    assert ours.ip_dont_fragment
    assert ours.encode()[30:32] != b"\x00\x00"
    fixed = dataclasses.replace(ecm, inner_udp_checksum=True).encode()
    assert fixed[30:32] != b"\x00\x00"
    assert decode(fixed) == dataclasses.replace(ecm, inner_udp_checksum=True)


def test_a_wrong_non_zero_inner_udp_checksum_is_refused() -> None:
    data = bytearray(LIG_ECM)
    data[30:32] = b"\x00\x01"
    with pytest.raises(DecodeError, match="bad UDP checksum"):
        decode(bytes(data))
