"""Info-Request/Info-Reply, NAT-Traversal LCAF: golden bytes, lispers.net, tshark."""

from __future__ import annotations

import contextlib
import hmac
import re
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from decent.wire import (
    MAX_RTRS,
    AlgorithmId,
    DecodeError,
    DistinguishedName,
    EncapsulatedControlMessage,
    InfoReply,
    InfoRequest,
    IPAddress,
    LcafType,
    MessageType,
    NatTraversal,
    decode,
    info_authentic,
)
from decent.wire.buffer import Writer
from decent.wire.limits import MAX_NAME_LEN
from decent.wire.nat import INFO_REPLY, INFO_TYPE, LISPERS_NAT_LENGTH
from tests.wire import strategies as ws
from tests.wire import tshark

KEY = b"password"
NONCE = 0x0102030405060708
EID4 = IPv4Address("198.51.100.0")
EID6 = IPv6Address("2001:db8:1::")
GLOBAL4 = IPv4Address("203.0.113.9")
MS4 = IPv4Address("192.0.2.2")
RTR4 = IPv4Address("192.0.2.10")
RTR6 = IPv6Address("2001:db8::10")
GLOBAL6 = IPv6Address("2001:db8:ffff::9")
MS6 = IPv6Address("2001:db8::2")
PRIVATE6 = IPv6Address("2001:db8:1::1")
PROPS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# ---------------------------------------------------------------- golden
# Built field by field from the tables of protocol-notes-security 3.1
# (draft-ermagan-lisp-nat-traversal-19 4.1, 4.2), not with our encoder:
#   Type 7 | R (0x08 of byte 0) | Reserved 27 | Nonce 64 |
#   Key ID 8 | Alg ID 8 | Auth Data Length 16 | Auth Data |
#   TTL 32 (minutes) | Reserved 8 | EID mask-len 8 | EID-prefix-AFI | EID-prefix |
#   AFI 0 (request) or AFI 16387 + NAT-Traversal LCAF (reply):
#   Rsvd1 8 | Flags 8 | Type 7 | Rsvd2 8 | Length 16 (bytes after it) |
#   MS UDP Port | ETR UDP Port | AFI Global ETR | AFI MS | AFI Private ETR |
#   AFI RTR 1 ... AFI RTR n


def _afi0() -> bytes:
    return struct.pack("!H", 0)


def _afi4(addr: IPv4Address) -> bytes:
    return struct.pack("!H4s", 1, addr.packed)


def _afi6(addr: IPv6Address) -> bytes:
    return struct.pack("!H16s", 2, addr.packed)


def _afi17(name: str) -> bytes:
    return struct.pack("!H", 17) + name.encode("ascii") + b"\x00"


def _head(
    reply: bool,
    alg_id: int,
    auth_len: int,
    ttl: int,
    mask_len: int,
    eid: bytes,
) -> bytes:
    """Everything up to the last AFI slot, auth data zero-filled."""
    first = (7 << 28) | (1 << 27 if reply else 0)
    return (
        struct.pack("!IQBBH", first, NONCE, 0, alg_id, auth_len)
        + bytes(auth_len)
        + struct.pack("!IBB", ttl, 0, mask_len)
        + eid
    )


def _nat(ms_port: int, etr_port: int, *afis: bytes, length: int | None = None) -> bytes:
    body = struct.pack("!HH", ms_port, etr_port) + b"".join(afis)
    size = len(body) if length is None else length
    return struct.pack("!HBBBBH", 16387, 0, 0, 7, 0, size) + body


def _mac_in(raw: bytes, digest: str, length: int) -> bytes:
    """raw (auth data zero, `length` bytes at offset 16) with the HMAC put in,
    computed here with the stdlib over the whole message."""
    mac = hmac.new(KEY, raw, digest).digest()[:length]
    return raw[:16] + mac + raw[16 + length :]


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


REQUEST = InfoRequest(NONCE, EID4, 24)
REQUEST_BYTES = _head(False, 0, 0, 0, 24, _afi4(EID4)) + _afi0()
# The same, worked out by hand: 30 bytes.
REQUEST_HEX = (
    "70000000 0102030405060708 00 00 0000"  # type 7, R 0; nonce; no auth
    "00000000 00 18 0001 c6336400"  # TTL 0; rsvd; /24; AFI 1 198.51.100.0
    "0000"  # AFI 0: nothing follows
)

REPLY_NAT = NatTraversal(4342, 61001, GLOBAL4, MS4, None, (RTR4, RTR6))
REPLY = InfoReply(NONCE, EID4, 24, 1440, nat=REPLY_NAT)
REPLY_BYTES = _head(True, 0, 0, 1440, 24, _afi4(EID4)) + _nat(
    4342, 61001, _afi4(GLOBAL4), _afi4(MS4), _afi0(), _afi4(RTR4), _afi6(RTR6)
)
# Length 4 (ports) + 6 + 6 + 2 + 6 + 18 = 42 = 0x2a; 4342 = 0x10f6,
# 61001 = 0xee49, 1440 minutes = 0x5a0.
REPLY_HEX = (
    "78000000 0102030405060708 00 00 0000"
    "000005a0 00 18 0001 c6336400"
    "4003 00 00 07 00 002a"
    "10f6 ee49"
    "0001 cb007109"  # Global ETR 203.0.113.9
    "0001 c0000202"  # MS 192.0.2.2
    "0000"  # Private ETR: AFI 0
    "0001 c000020a"  # RTR 1 192.0.2.10
    "0002 20010db8000000000000000000000010"  # RTR 2 2001:db8::10
)

REQUEST6 = InfoRequest(NONCE, EID6, 48, 0)
REQUEST6_BYTES = _head(False, 0, 0, 0, 48, _afi6(EID6)) + _afi0()

REPLY6_NAT = NatTraversal(4342, 1, GLOBAL6, MS6, PRIVATE6, (RTR6,))
REPLY6 = InfoReply(NONCE, EID6, 48, 60, nat=REPLY6_NAT)
REPLY6_BYTES = _head(True, 0, 0, 60, 48, _afi6(EID6)) + _nat(
    4342, 1, _afi6(GLOBAL6), _afi6(MS6), _afi6(PRIVATE6), _afi6(RTR6)
)

#: name -> (message, its bytes built above).
GOLDEN: dict[str, tuple[InfoRequest | InfoReply, bytes]] = {
    "request IPv4": (REQUEST, REQUEST_BYTES),
    "reply IPv4 with an IPv6 RTR": (REPLY, REPLY_BYTES),
    "request IPv6": (REQUEST6, REQUEST6_BYTES),
    "reply IPv6": (REPLY6, REPLY6_BYTES),
}


def test_the_struct_vectors_match_the_hand_worked_hex() -> None:
    assert _hex(REQUEST_HEX) == REQUEST_BYTES
    assert len(REQUEST_BYTES) == 30
    assert _hex(REPLY_HEX) == REPLY_BYTES


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_vector_decodes(name: str) -> None:
    msg, raw = GOLDEN[name]
    assert decode(raw) == msg


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_vector_encodes(name: str) -> None:
    msg, raw = GOLDEN[name]
    assert msg.encode() == raw


@pytest.mark.parametrize("name", [n for n in GOLDEN if "reply" in n])
def test_lcaf_length_counts_the_bytes_after_it(name: str) -> None:
    raw = GOLDEN[name][1]
    at = raw.index(b"\x40\x03\x00\x00\x07\x00")
    assert int.from_bytes(raw[at + 6 : at + 8], "big") == len(raw) - at - 8


def test_r_bit_tells_request_from_reply() -> None:
    assert int(MessageType.INFO) == INFO_TYPE == 7
    assert int(LcafType.NAT_TRAVERSAL) == 7
    assert MAX_RTRS == 64
    assert LISPERS_NAT_LENGTH == 16
    assert INFO_REPLY == 0x08000000
    assert REQUEST.encode()[0] == 0x70
    assert REPLY.encode()[0] == 0x78
    assert isinstance(decode(REQUEST_BYTES), InfoRequest)
    assert isinstance(decode(REPLY_BYTES), InfoReply)


def test_reserved_bits_are_ignored_on_receipt() -> None:
    raw = bytearray(REQUEST_BYTES)
    raw[1:4] = b"\xff\xff\xff"  # the 27 reserved bits after R
    raw[20] = 0xFF  # the reserved byte before the EID mask-len
    assert decode(bytes(raw)) == REQUEST
    reply = bytearray(REPLY_BYTES)
    reply[0] |= 0x07
    assert decode(bytes(reply)) == REPLY


# ---------------------------------------------------------------- signed


@pytest.mark.parametrize(
    ("alg_id", "digest", "length"),
    [
        (AlgorithmId.HMAC_SHA_256_128, "sha256", 32),
        (AlgorithmId.HMAC_SHA_1_96, "sha1", 20),
    ],
)
def test_signed_vectors_carry_a_full_hmac_over_the_whole_message(
    alg_id: int, digest: str, length: int
) -> None:
    req = _mac_in(
        _head(False, alg_id, length, 0, 24, _afi4(EID4)) + _afi0(), digest, length
    )
    assert REQUEST.signed(KEY, alg_id) == req
    rep = _mac_in(
        _head(True, alg_id, length, 1440, 24, _afi4(EID4))
        + _nat(
            4342, 61001, _afi4(GLOBAL4), _afi4(MS4), _afi0(), _afi4(RTR4), _afi6(RTR6)
        ),
        digest,
        length,
    )
    assert REPLY.signed(KEY, alg_id) == rep
    for raw in (req, rep):
        assert info_authentic(raw, KEY)
        msg = decode(raw)
        assert isinstance(msg, InfoRequest | InfoReply)
        assert (msg.key_id, msg.alg_id, len(msg.auth_data)) == (0, alg_id, length)


def test_signed_defaults_to_hmac_sha_256_and_ignores_old_auth() -> None:
    old = InfoRequest(NONCE, EID4, 24, key_id=3, alg_id=1, auth_data=b"x" * 5)
    assert old.signed(KEY) == REQUEST.signed(KEY, AlgorithmId.HMAC_SHA_256_128)


@pytest.mark.parametrize("name", GOLDEN)
def test_every_flipped_byte_fails_authentication(name: str) -> None:
    raw = GOLDEN[name][0].signed(KEY)
    assert info_authentic(raw, KEY)
    assert not info_authentic(raw, b"passwore")
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        assert not info_authentic(bytes(bad), KEY), i


@pytest.mark.parametrize(
    ("alg_id", "digest", "length"),
    [
        (AlgorithmId.HMAC_SHA_1_96, "sha1", 12),
        (AlgorithmId.HMAC_SHA_256_128, "sha256", 16),
    ],
)
def test_rfc_truncated_macs_are_accepted(alg_id: int, digest: str, length: int) -> None:
    raw = _mac_in(
        _head(False, alg_id, length, 0, 24, _afi4(EID4)) + _afi0(), digest, length
    )
    assert info_authentic(raw, KEY)
    assert not info_authentic(raw[:16] + bytes(length) + raw[16 + length :], KEY)


def test_what_is_not_authenticated_is_not_authentic() -> None:
    assert not info_authentic(REQUEST_BYTES, KEY)  # algorithm 0
    assert not info_authentic(b"", KEY)
    assert not info_authentic(REQUEST.signed(KEY)[:15], KEY)
    # An odd length for the algorithm (neither full nor RFC-truncated).
    odd = _mac_in(_head(False, 2, 20, 0, 24, _afi4(EID4)) + _afi0(), "sha256", 20)
    assert not info_authentic(odd, KEY)
    # Another message type with a valid-looking MAC.
    other = bytearray(REQUEST.signed(KEY))
    other[0] = 0x30
    assert not info_authentic(bytes(other), KEY)
    # An auth data length past the end of the message.
    assert not info_authentic(REQUEST.signed(KEY)[:40], KEY)


def test_signing_needs_an_algorithm_we_can_compute() -> None:
    for alg_id in (AlgorithmId.NONE, AlgorithmId.HMAC_SHA256_128_HKDF, 200):
        with pytest.raises(ValueError, match="cannot compute"):
            REQUEST.signed(KEY, alg_id)
        with pytest.raises(ValueError, match="cannot compute"):
            REPLY.signed(KEY, alg_id)


# ---------------------------------------------------------------- lispers.net
# protocol-notes-security 3.6: no authentication, EID-AFI 0, the hostname as
# AFI 17 in the request's last AFI slot; the MS's reply has ports 0, AFI 0
# addresses and the RTR list; the RTR's reply has the translated address and
# port and the xTR's hostname as Private ETR RLOC. Its LCAF Length is always 16.


def test_lispers_net_request_with_a_hostname() -> None:
    raw = _head(False, 0, 0, 0, 0, _afi0()) + _afi17("xtr-1")
    msg = decode(raw)
    assert msg == InfoRequest(NONCE, None, 0, hostname="xtr-1")
    assert msg.encode() == raw


def test_lispers_net_map_server_reply_with_length_16_shorter_than_its_body() -> None:
    rtrs = (RTR4, IPv4Address("192.0.2.11"), IPv4Address("192.0.2.12"))
    afis = [_afi0(), _afi0(), _afi0(), *(_afi4(a) for a in rtrs)]
    raw = _head(True, 0, 0, 0, 0, _afi0()) + _nat(0, 0, *afis, length=16)
    msg = decode(raw)
    assert msg == InfoReply(NONCE, nat=NatTraversal(rtrs=rtrs))
    # We write the true Length (4 + 3 * 2 + 3 * 6 = 28); lispers.net walks
    # the AFIs to the end of the message, so it reads this as well.
    assert msg.encode() == _head(True, 0, 0, 0, 0, _afi0()) + _nat(0, 0, *afis)


def test_lispers_net_map_server_reply_with_length_16_longer_than_its_body() -> None:
    # No RTRs: ports and three AFI 0 are 10 bytes, Length still says 16.
    raw = _head(True, 0, 0, 0, 0, _afi0()) + _nat(
        0, 0, _afi0(), _afi0(), _afi0(), length=16
    )
    assert decode(raw) == InfoReply(NONCE)


def test_lispers_net_rtr_reply_names_the_private_etr() -> None:
    nat = _nat(0, 61001, _afi4(GLOBAL4), _afi0(), _afi17("xtr-1"), length=16)
    raw = _head(True, 0, 0, 0, 0, _afi0()) + nat
    msg = decode(raw)
    assert msg == InfoReply(
        NONCE,
        nat=NatTraversal(0, 61001, GLOBAL4, None, DistinguishedName("xtr-1")),
    )


def test_a_length_that_is_neither_the_body_nor_16_is_refused() -> None:
    afis = (_afi4(GLOBAL4), _afi4(MS4), _afi0(), _afi4(RTR4))
    for length in (0, 15, 17, 23, 25, 0xFFFF):
        raw = _head(True, 0, 0, 0, 0, _afi0()) + _nat(1, 2, *afis, length=length)
        with pytest.raises(DecodeError, match="Length"):
            decode(raw)


# ---------------------------------------------------------------- refusals


def _reply_with(*afis: bytes) -> bytes:
    return _head(True, 0, 0, 0, 0, _afi0()) + _nat(1, 2, *afis)


_REQ0 = _head(False, 0, 0, 0, 0, _afi0())
#: name -> (bytes, what the DecodeError must say).
MALFORMED: dict[str, tuple[bytes, str]] = {
    "reply without the LCAF": (
        _head(True, 0, 0, 0, 0, _afi0()) + _afi0(),
        "NAT-Traversal",
    ),
    "request ending in an address": (_REQ0 + _afi4(RTR4), "AFI 1"),
    "request ending in an LCAF": (
        _REQ0 + _nat(1, 2, _afi0(), _afi0(), _afi0()),
        "AFI 16387",
    ),
    "name as EID-prefix": (_head(False, 0, 0, 0, 0, _afi17("eid")) + _afi0(), "AFI 17"),
    "reply ending in an IID LCAF": (
        _head(True, 0, 0, 0, 0, _afi0())
        + struct.pack("!HBBBBHI", 16387, 0, 0, 2, 0, 6, 0)
        + _afi0(),
        "LCAF type 2",
    ),
    # Only the Private ETR slot takes a name; RTRs are IP addresses.
    "name as Global ETR": (_reply_with(_afi17("g"), _afi0(), _afi0()), "Global ETR"),
    "name as MS RLOC": (_reply_with(_afi0(), _afi17("m"), _afi0()), "MS RLOC"),
    "AFI 0 RTR": (_reply_with(_afi0(), _afi0(), _afi0(), _afi0()), "RTR RLOC"),
    "name as RTR": (_reply_with(_afi0(), _afi0(), _afi0(), _afi17("rtr")), "RTR RLOC"),
    "unknown AFI": (_reply_with(_afi0(), _afi0(), struct.pack("!H", 99)), "AFI 99"),
    "mask longer than the EID": (
        _head(False, 0, 0, 0, 33, _afi4(EID4)) + _afi0(),
        "mask length 33",
    ),
    "empty hostname": (_REQ0 + struct.pack("!HB", 17, 0), "empty name"),
    "non-ASCII hostname": (_REQ0 + struct.pack("!H", 17) + b"x\xe9\x00", "non-ASCII"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_messages_are_refused(name: str) -> None:
    raw, match = MALFORMED[name]
    with pytest.raises(DecodeError, match=match):
        decode(raw)


def test_at_most_max_rtrs() -> None:
    rtrs = tuple(IPv6Address(int(RTR6) + i) for i in range(MAX_RTRS))
    full = InfoReply(NONCE, nat=NatTraversal(rtrs=rtrs))
    assert decode(full.encode()) == full
    with pytest.raises(ValueError, match="RTRs"):
        NatTraversal(rtrs=(*rtrs, RTR4))
    over = _reply_with(
        _afi0(), _afi0(), _afi0(), *(_afi4(RTR4) for _ in range(MAX_RTRS + 1))
    )
    with pytest.raises(DecodeError, match=f"more than {MAX_RTRS} RTR"):
        decode(over)


def test_hostnames_are_bounded_as_distinguished_names() -> None:
    longest = "h" * MAX_NAME_LEN
    msg = InfoRequest(NONCE, hostname=longest)
    assert decode(msg.encode()) == msg
    with pytest.raises(ValueError, match="longer"):
        InfoRequest(NONCE, hostname=longest + "h")
    with pytest.raises(DecodeError, match="exceeds"):
        decode(_head(False, 0, 0, 0, 0, _afi0()) + _afi17(longest + "h"))
    for bad in ("", "caf\u00e9", "a\x00b"):
        with pytest.raises(ValueError, match="distinguished name"):
            InfoRequest(NONCE, hostname=bad)


def test_the_constructors_refuse_what_the_wire_cannot_carry() -> None:
    for kw in (
        {"nonce": 1 << 64},
        {"mask_len": 256},
        {"ttl": 1 << 32},
        {"key_id": 256},
        {"alg_id": 256},
        {"auth_data": bytes(0x10000)},
    ):
        args: dict[str, object] = {"nonce": 1, **kw}
        field = next(iter(kw)).replace("auth_data", "auth data length")
        with pytest.raises(ValueError, match=field):
            InfoRequest(**args)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=field):
            InfoReply(**args)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask length"):
        InfoRequest(1, EID6, 129)
    with pytest.raises(ValueError, match="ms_port"):
        NatTraversal(ms_port=0x10000)
    with pytest.raises(ValueError, match="etr_port"):
        NatTraversal(etr_port=-1)
    with pytest.raises(ValueError, match="IPv4 or IPv6"):
        NatTraversal(rtrs=(DistinguishedName("rtr"),))  # type: ignore[arg-type]


def test_it_travels_inside_an_ecm() -> None:
    ecm = EncapsulatedControlMessage(REPLY, MS4, GLOBAL4)
    assert decode(ecm.encode()) == ecm


# ---------------------------------------------------------------- hostile input

opt_ip: st.SearchStrategy[IPAddress | None] = st.none() | ws.ip
hostnames = st.none() | ws.names.map(lambda n: n.name)
nat_lcafs = st.builds(
    NatTraversal,
    ws.uint(16),
    ws.uint(16),
    opt_ip,
    opt_ip,
    st.none() | ws.ip | ws.names,
    st.lists(ws.ip, max_size=6).map(tuple),
)


@st.composite
def info_messages(draw: st.DrawFn) -> InfoRequest | InfoReply:
    eid = draw(opt_ip)
    mask_len = draw(st.integers(0, 255 if eid is None else eid.max_prefixlen))
    ttl = draw(ws.uint(32))
    key_id, alg_id, auth_data = draw(ws.auth)
    if draw(st.booleans()):
        nat = draw(nat_lcafs)
        return InfoReply(NONCE, eid, mask_len, ttl, key_id, alg_id, auth_data, nat)
    name = draw(hostnames)
    return InfoRequest(NONCE, eid, mask_len, ttl, key_id, alg_id, auth_data, name)


@PROPS
@given(info_messages())
def test_every_message_round_trips(msg: InfoRequest | InfoReply) -> None:
    assert decode(msg.encode()) == msg


@PROPS
@given(info_messages())
def test_every_signed_message_is_authentic(msg: InfoRequest | InfoReply) -> None:
    raw = msg.signed(KEY, AlgorithmId.HMAC_SHA_1_96)
    assert info_authentic(raw, KEY)
    assert not info_authentic(raw, KEY + b"!")


@PROPS
@given(info_messages())
def test_every_truncation_is_a_decode_error(msg: InfoRequest | InfoReply) -> None:
    # Our Length always matches, so a cut inside the RTR list shows, unless
    # that Length is 16 (next test).
    raw = msg.encode()
    assume(not (isinstance(msg, InfoReply) and _nat_length(msg.nat) == 16))
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            decode(raw[:cut])
    with pytest.raises(DecodeError):
        decode(raw + b"\x00")


def _nat_length(nat: NatTraversal) -> int:
    """The Length field our encoder writes for nat."""
    w = Writer()
    nat.write(w)
    return int.from_bytes(w.raw()[6:8], "big")


def test_a_length_of_16_cut_at_an_afi_boundary_reads_as_lispers_net() -> None:
    # Ports, three AFI 0 and one IPv4 RTR: our Length is lispers.net's 16.
    # Without the RTR the message is lispers.net's MS reply with no RTRs; the
    # form carries nothing that could tell the two apart. Signed, the cut
    # fails authentication.
    msg = InfoReply(NONCE, nat=NatTraversal(rtrs=(RTR4,)))
    raw = msg.encode()
    assert _nat_length(msg.nat) == LISPERS_NAT_LENGTH
    assert raw[-16 - 2 : -16] == b"\x00\x10"
    assert decode(raw[:-6]) == InfoReply(NONCE)
    signed = msg.signed(KEY)
    assert info_authentic(signed, KEY)
    assert not info_authentic(signed[:-6], KEY)


@pytest.mark.parametrize("name", GOLDEN)
def test_every_truncation_of_a_golden_vector_is_a_decode_error(name: str) -> None:
    for raw in (GOLDEN[name][1], GOLDEN[name][0].signed(KEY)):
        for cut in range(len(raw)):
            with pytest.raises(DecodeError):
                decode(raw[:cut])


@PROPS
@given(st.sampled_from([0x70, 0x78, 0x7F]), st.binary(max_size=120))
def test_random_bodies_decode_or_raise_decode_error(first: int, body: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(bytes([first]) + body)


@PROPS
@given(info_messages(), st.data())
def test_mutated_messages_decode_or_raise_decode_error(
    msg: InfoRequest | InfoReply, data: st.DataObject
) -> None:
    raw = bytearray(msg.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        decode(bytes(raw))


@pytest.mark.parametrize("name", GOLDEN)
def test_corrupted_bytes_decode_or_raise_decode_error(name: str) -> None:
    raw = GOLDEN[name][1]
    for i in range(len(raw)):
        for value in (0x00, 0x01, 0x02, 0x07, 0x11, 0x40, 0x7F, 0x80, 0xFF):
            bad = bytearray(raw)
            bad[i] = value
            with contextlib.suppress(DecodeError):
                decode(bytes(bad))


# ---------------------------------------------------------------- tshark
# What tshark 4.0.17 (Debian 12) makes of our signed messages: the Info
# dissector shows Type Info (7), "R bit (Info-Reply)", the nonce, the Key ID
# as one 16-bit field (Key ID 0 and Algorithm ID 2 read "Key ID: 0x0002",
# as for Map-Register), the auth data, the TTL, the EID prefix and the last
# AFI. For the reply it names "LCAF: NAT Traversal" with our Length, "MS UDP
# Port Number", "ETR UDP Port Number", "RLOC of Global ETR", "RLOC of MS",
# "RLOC of Private ETR: not set" (AFI 0) and "RLOC of RTR n" for each RTR.
# Nothing is malformed, no expert info, no byte left undecoded.
#
# The lispers.net forms, which we accept but never send, trip the dissector
# (its limits, not errors in those bytes as lispers.net defines them):
# - the request's AFI 17 hostname: expert error "Expecting NULL AFI (0),
#   found 17, incorrect packet!" and the name left undecoded;
# - the RTR's reply: the dissector has no AFI 17 case for a NAT-Traversal
#   RLOC, so it takes the name's length as 0 and reads on from inside it
#   (malformed), and it trusts the Length of 16;
# - the MS's reply with Length 16 and three RTRs: it stops where Length
#   says and leaves the last two RTRs undecoded.
# (Its NAT-Traversal code also subtracts the 4 port bytes from Length twice;
# with IP RTRs that costs nothing, as the list end still falls on the last.)

_MISSING = tshark.missing_tools()
needs_tshark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"{' and '.join(_MISSING)} not installed (Debian: apt-get install "
    "tshark); the wire conformance checks need Wireshark's LISP dissector",
)

TSHARK_REQUEST = REQUEST.signed(KEY)
TSHARK_REPLY = REPLY.signed(KEY, AlgorithmId.HMAC_SHA_1_96)
TSHARK_REPLY6 = REPLY6.signed(KEY)
TSHARK_LISPERS_REQUEST = InfoRequest(NONCE, hostname="xtr-1").encode()
_LISPERS_REQUEST_FINDINGS = {
    re.escape(
        "expert error/protocol: Expecting NULL AFI (0), found 17, incorrect packet!"
    ): "tshark 4.0 expects AFI 0 there, as the draft says",
    re.escape(
        "8 undecoded bytes at UDP payload offset 24 (to the end)"
    ): "the AFI 17 hostname after the AFI 0 EID",
}


@pytest.fixture(scope="module")
def fields() -> list[dict[str, list[str]]]:
    """Per datagram, every LISP field tshark showed: name -> its shownames."""
    pdml = tshark._pdml(
        [(raw, tshark.CONTROL_PORT) for raw in (TSHARK_REQUEST, TSHARK_REPLY)]
    )
    out: list[dict[str, list[str]]] = []
    for packet in pdml.findall("packet"):
        shown: dict[str, list[str]] = {}
        for field in packet.iter("field"):
            name = field.get("name") or ""
            if name.startswith("lisp."):
                shown.setdefault(name, []).append(field.get("showname") or "")
        out.append(shown)
    return out


@needs_tshark
def test_tshark_decodes_our_signed_messages_cleanly() -> None:
    found = tshark.assert_clean(
        [
            (raw, tshark.CONTROL_PORT)
            for raw in (TSHARK_REQUEST, TSHARK_REPLY, TSHARK_REPLY6)
        ]
    )
    assert all(d.lisp_decoded and not d.malformed and not d.experts for d in found)


@needs_tshark
def test_tshark_reads_the_request_fields(fields: list[dict[str, list[str]]]) -> None:
    request = fields[0]
    assert request["lisp.type"] == ["0111 .... .... .... .... .... = Type: Info (7)"]
    assert request["lisp.info.r"][0].endswith("R bit (Info-Reply): Not set")
    assert request["lisp.nonce"] == ["Nonce: 0x0102030405060708"]
    assert request["lisp.keyid"] == ["Key ID: 0x0002"]
    assert request["lisp.authlen"] == ["Authentication Data Length: 32"]
    assert request["lisp.info.prefix.ipv4"] == ["Prefix: 198.51.100.0"]
    assert request["lisp.info.prefix.masklen"] == ["EID Prefix Mask Length: 24"]
    assert request["lisp.info.afi"] == ["AFI: Reserved (0)"]


@needs_tshark
def test_tshark_reads_the_nat_traversal_lcaf(
    fields: list[dict[str, list[str]]],
) -> None:
    reply = fields[1]
    assert reply["lisp.info.r"][0].endswith("R bit (Info-Reply): Set")
    assert reply["lisp.keyid"] == ["Key ID: 0x0001"]
    assert reply["lisp.authlen"] == ["Authentication Data Length: 20"]
    assert reply["lisp.info.ttl"] == ["TTL: 1440"]
    assert reply["lisp.lcaf.type"] == ["Type: NAT Traversal (7)"]
    assert reply["lisp.lcaf.length"] == ["Length: 42"]
    assert reply["lisp.lcaf.natt.msport"] == ["MS UDP Port Number: 4342"]
    assert reply["lisp.lcaf.natt.etrport"] == ["ETR UDP Port Number: 61001"]
    assert reply["lisp.lcaf.natt.rloc"] == [
        "RLOC of Global ETR: 203.0.113.9",
        "RLOC of MS: 192.0.2.2",
        "RLOC of Private ETR: not set",
        "RLOC of RTR 1: 192.0.2.10",
        "RLOC of RTR 2: 2001:db8::10",
    ]


@needs_tshark
def test_tshark_still_cannot_read_the_lispers_net_hostname() -> None:
    # A newer tshark that reads AFI 17 there fails this: tighten it then.
    (d,) = tshark.dissect([(TSHARK_LISPERS_REQUEST, tshark.CONTROL_PORT)])
    found = tshark.problems(d)
    assert tshark.unexplained(found, _LISPERS_REQUEST_FINDINGS) == []
    for regex in _LISPERS_REQUEST_FINDINGS:
        assert any(re.fullmatch(regex, f) for f in found), (regex, found)
