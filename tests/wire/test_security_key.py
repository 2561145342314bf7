"""The Security Key LCAF (type 11, RFC 8061 6): golden bytes, messages, tshark."""

from __future__ import annotations

import contextlib
import re
from ipaddress import IPv4Address, IPv6Address

import pytest

from decent.wire import (
    AfiList,
    DecodeError,
    Locator,
    MapRecord,
    MapReply,
    MapRequest,
    RequestRecord,
    SecurityKey,
    decode,
    find_security_key,
)
from decent.wire.afi import (
    MAX_SECURITY_KEY_LEN,
    MAX_SECURITY_KEYS,
    Address,
    read_address,
    write_address,
)
from decent.wire.buffer import Reader, Writer
from tests.wire import tshark

PUB1 = bytes.fromhex("67b93d97e7bd58587eb0c2c79e772fa0e122b685ee483f0ea0712f9a76c2344d")
PUB2 = bytes.fromhex("d3f26484bdb9e9919e63641489d97ae0fbcf5fdaf80190b9fba36a205c1fe105")
RLOC = IPv4Address("192.0.2.1")
RLOC6 = IPv6Address("2001:db8::1")
EID = IPv4Address("10.1.0.0")
NONCE = 0x0102030405060708

# ---------------------------------------------------------------- golden
# Each vector written out field by field from the layout table of
# protocol-notes-security 1.1 (RFC 8061 6), offsets from the LCAF's AFI:
#   AFI 4003 | Rsvd1 | Flags | Type 0b | Rsvd2 | Length (16) |
#   Key Count | Rsvd3 | Cipher Suite | Rsvd4 and R (0x01) |
#   { Key Length (16) | Key Material } x Key Count | AFI | RLOC
# Length counts the bytes after itself: 4 + sum(2 + keylen) + 2 + addrlen.
GOLDEN: dict[str, tuple[SecurityKey, str]] = {
    # Length 4 + (2 + 32) + (2 + 4) = 44 = 0x2c.
    "one key": (
        SecurityKey(5, (PUB1,), RLOC),
        "4003 00 00 0b 00 002c"
        "01 00 05 00"
        "0020 67b93d97e7bd58587eb0c2c79e772fa0e122b685ee483f0ea0712f9a76c2344d"
        "0001 c0000201",
    ),
    # Key-ids 1, 2, 3 in order, of lengths 1, 2, 3 so a swapped or
    # mis-sized key shows. Length 4 + 3 + 4 + 5 + (2 + 4) = 22 = 0x16.
    "three keys": (
        SecurityKey(
            6,
            (bytes.fromhex("a1"), bytes.fromhex("b1b2"), bytes.fromhex("c1c2c3")),
            IPv4Address("198.51.100.7"),
        ),
        "4003 00 00 0b 00 001603 00 06 000001 a10002 b1b20003 c1c2c30001 c6336407",
    ),
    # R = 0x01 of byte 11. Length 4 + (2 + 2) + (2 + 4) = 14 = 0x0e.
    "R bit": (
        SecurityKey(5, (bytes.fromhex("beef"),), RLOC, revoke=True),
        "4003 00 00 0b 00 000e01 00 05 010002 beef0001 c0000201",
    ),
    # Length 4 + (2 + 32) + (2 + 16) = 56 = 0x38.
    "IPv6 RLOC": (
        SecurityKey(6, (PUB2,), RLOC6),
        "4003 00 00 0b 00 0038"
        "01 00 06 00"
        "0020 d3f26484bdb9e9919e63641489d97ae0fbcf5fdaf80190b9fba36a205c1fe105"
        "0002 20010db8000000000000000000000001",
    ),
    # No keys ("unkeyed"), and Rsvd3 (lispers.net's A bit) kept as read.
    # Length 4 + (2 + 4) = 10 = 0x0a.
    "no keys, Rsvd3 kept": (
        SecurityKey(5, (), RLOC, rsvd3=0x80),
        "4003 00 00 0b 00 000a00 80 05 000001 c0000201",
    ),
}


def _encode(addr: Address) -> bytes:
    w = Writer()
    write_address(w, addr)
    return w.raw()


def _decode(raw: bytes) -> Address:
    r = Reader(raw)
    addr = read_address(r)
    r.finish()
    return addr


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_vector_decodes(name: str) -> None:
    key, text = GOLDEN[name]
    assert _decode(_hex(text)) == key


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_vector_encodes(name: str) -> None:
    key, text = GOLDEN[name]
    assert _encode(key) == _hex(text)


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_length_field_counts_the_bytes_after_it(name: str) -> None:
    raw = _hex(GOLDEN[name][1])
    assert int.from_bytes(raw[6:8], "big") == len(raw) - 8


@pytest.mark.parametrize(("byte11", "revoke"), [(0x00, False), (0x01, True)])
def test_the_other_bits_of_byte_11_are_ignored(byte11: int, revoke: bool) -> None:
    # RFC 8061 6: Rsvd4 is ignored on receipt; only 0x01 is R.
    raw = bytearray(_hex(GOLDEN["one key"][1]))
    raw[11] = byte11 | 0xFE
    key = _decode(bytes(raw))
    assert isinstance(key, SecurityKey)
    assert key.revoke is revoke
    assert _encode(key)[11] == byte11


def test_the_constructor_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError, match="more than 3 security keys"):
        SecurityKey(5, (PUB1,) * (MAX_SECURITY_KEYS + 1), RLOC)
    with pytest.raises(ValueError, match="longer than 512"):
        SecurityKey(5, (bytes(MAX_SECURITY_KEY_LEN + 1),), RLOC)
    with pytest.raises(ValueError, match="cipher_suite"):
        SecurityKey(256, (PUB1,), RLOC)
    with pytest.raises(ValueError, match="rsvd3"):
        SecurityKey(5, (PUB1,), RLOC, rsvd3=256)


def test_the_longest_key_and_three_keys_round_trip() -> None:
    key = SecurityKey(
        1, (bytes(range(256)) * 2, b"\x01" * 384, b""), IPv6Address("2001:db8::7")
    )
    raw = _encode(key)
    assert len(raw) == 8 + 4 + (2 + 512) + (2 + 384) + (2 + 0) + (2 + 16)
    assert _decode(raw) == key


# ---------------------------------------------------------------- messages

SK = SecurityKey(5, (PUB1,), RLOC)
SK6 = SecurityKey(6, (PUB2,), RLOC6)


def _map_request(itr_rloc: Address) -> MapRequest:
    return MapRequest(
        NONCE,
        (RequestRecord(EID, 16),),
        itr_rlocs=(itr_rloc,),
        source_eid=IPv4Address("10.0.0.1"),
        probe=True,
    )


def _map_reply(*locators: Locator) -> MapReply:
    return MapReply(NONCE, (MapRecord(EID, 16, locators),), probe=True)


def test_map_request_carries_it_as_the_itr_rloc() -> None:
    msg = _map_request(SK)
    raw = msg.encode()
    # Right after the header, nonce and source EID: the ITR-RLOC is the LCAF.
    assert raw[18 : 18 + 52] == _hex(GOLDEN["one key"][1])
    back = decode(raw)
    assert back == msg
    assert isinstance(back, MapRequest)
    assert find_security_key(back.itr_rlocs[0]) == SK
    assert back.probe


def test_map_request_with_several_itr_rlocs_keeps_the_keyed_one() -> None:
    msg = MapRequest(NONCE, (RequestRecord(EID, 16),), itr_rlocs=(SK, SK6, RLOC))
    back = decode(msg.encode())
    assert back == msg
    assert isinstance(back, MapRequest)
    assert [find_security_key(a) for a in back.itr_rlocs] == [SK, SK6, None]


def test_map_reply_carries_it_in_the_rloc_record() -> None:
    msg = _map_reply(Locator(SK), Locator(SK6, priority=2))
    back = decode(msg.encode())
    assert back == msg
    assert isinstance(back, MapReply)
    first, second = back.records[0].locators
    assert (first.rloc, first.security_key) == (RLOC, SK)
    assert (second.rloc, second.security_key) == (RLOC6, SK6)


def test_lispers_net_form_is_an_afi_list_of_the_rloc_and_the_key() -> None:
    # lispers.net's lisp_rloc_record.encode_lcaf: AFI-List {RLOC, Security Key}.
    locator = Locator(AfiList((RLOC, SK)))
    msg = _map_reply(locator)
    raw = msg.encode()
    golden = _hex(GOLDEN["one key"][1])
    # AFI-List header, the plain RLOC, then the Security Key LCAF.
    afi_list = _hex("4003 00 00 01 00 003a 0001 c0000201") + golden
    assert afi_list in raw
    back = decode(raw)
    assert back == msg
    assert isinstance(back, MapReply)
    (got,) = back.records[0].locators
    assert (got.rloc, got.security_key) == (RLOC, SK)


def test_rloc_comes_from_the_key_when_the_afi_list_holds_only_the_key() -> None:
    assert Locator(AfiList((SK6,))).rloc == RLOC6
    assert Locator(AfiList((SK6,))).security_key == SK6
    assert Locator(RLOC).security_key is None


# Messages whose every prefix, and whose corruptions, must decode or raise
# DecodeError and nothing else.
MESSAGES: dict[str, MapRequest | MapReply] = {
    "Map-Request": _map_request(SK),
    "Map-Reply": _map_reply(Locator(SK), Locator(SK6)),
    "Map-Reply lispers.net": _map_reply(Locator(AfiList((RLOC, SK)))),
    "Map-Reply three keys": _map_reply(Locator(GOLDEN["three keys"][0])),
}


@pytest.mark.parametrize("name", MESSAGES)
def test_every_truncation_is_a_decode_error(name: str) -> None:
    raw = MESSAGES[name].encode()
    for n in range(len(raw)):
        with pytest.raises(DecodeError):
            decode(raw[:n])


@pytest.mark.parametrize("name", MESSAGES)
def test_corrupted_bytes_decode_or_raise_decode_error(name: str) -> None:
    raw = MESSAGES[name].encode()
    for i in range(len(raw)):
        for value in (0x00, 0x01, 0x03, 0x04, 0x0B, 0x7F, 0x80, 0xFF):
            bad = bytearray(raw)
            bad[i] = value
            with contextlib.suppress(DecodeError):
                decode(bytes(bad))


def _reply_with(lcaf: bytes) -> bytes:
    """A Map-Reply whose one locator is the given LCAF bytes."""
    golden = _hex(GOLDEN["one key"][1])
    raw = _map_reply(Locator(SK)).encode()
    assert raw.count(golden) == 1
    return raw.replace(golden, lcaf)


def _security_lcaf(count: int, keys: list[bytes], tail: bytes = b"") -> bytes:
    body = bytes([count, 0, 5, 0])
    body += b"".join(len(k).to_bytes(2, "big") + k for k in keys)
    body += tail or _hex("0001 c0000201")
    return _hex("4003 00 00 0b 00") + len(body).to_bytes(2, "big") + body


def test_the_crafted_lcaf_matches_the_encoder() -> None:
    assert _security_lcaf(1, [PUB1]) == _hex(GOLDEN["one key"][1])
    assert decode(_reply_with(_security_lcaf(1, [PUB1]))) == _map_reply(Locator(SK))


def test_more_than_three_keys_is_a_decode_error() -> None:
    # Four well-formed keys inside a consistent Length: only the count is bad.
    raw = _reply_with(_security_lcaf(4, [b"\x01", b"\x02", b"\x03", b"\x04"]))
    with pytest.raises(DecodeError, match="4 security keys"):
        decode(raw)
    three = decode(_reply_with(_security_lcaf(3, [b"\x01", b"\x02", b"\x03"])))
    assert isinstance(three, MapReply)
    raw = _reply_with(_security_lcaf(255, []))
    with pytest.raises(DecodeError, match="255 security keys"):
        decode(raw)


def test_a_key_longer_than_512_bytes_is_a_decode_error() -> None:
    raw = _reply_with(_security_lcaf(1, [bytes(MAX_SECURITY_KEY_LEN + 1)]))
    with pytest.raises(DecodeError, match="513-byte security key"):
        decode(raw)
    ok = decode(_reply_with(_security_lcaf(1, [bytes(MAX_SECURITY_KEY_LEN)])))
    assert isinstance(ok, MapReply)
    sk = ok.records[0].locators[0].security_key
    assert sk is not None
    assert sk.keys == (bytes(MAX_SECURITY_KEY_LEN),)


@pytest.mark.parametrize("delta", [-1, 1])
def test_a_length_that_disagrees_with_the_body_is_a_decode_error(delta: int) -> None:
    lcaf = bytearray(_security_lcaf(1, [PUB1]))
    lcaf[6:8] = (int.from_bytes(lcaf[6:8], "big") + delta).to_bytes(2, "big")
    with pytest.raises(DecodeError):
        decode(_reply_with(bytes(lcaf)))


def test_a_key_length_running_past_the_lcaf_is_a_decode_error() -> None:
    lcaf = bytearray(_security_lcaf(1, [PUB1]))
    lcaf[12:14] = (40).to_bytes(2, "big")  # claims 40 bytes; 32 + the RLOC follow
    with pytest.raises(DecodeError):
        decode(_reply_with(bytes(lcaf)))


def test_an_rloc_afi_we_do_not_know_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="unknown AFI 6"):
        decode(_reply_with(_security_lcaf(1, [PUB1], _hex("0006 c0000201"))))


# ---------------------------------------------------------------- tshark
# What tshark 4.0.17 (Debian 12) makes of these messages:
# - Map-Request: its dissector takes only IPv4/IPv6 ITR-RLOCs. At the LCAF
#   ITR-RLOC it raises the expert *error* "Unexpected ITR-RLOC-AFI (16387),
#   cannot decode" and leaves the rest of the message (the LCAF, the record)
#   undecoded. Nothing is malformed; the same request with a plain IPv4
#   ITR-RLOC is clean (test below), so the LCAF is the only complaint.
# - Map-Reply: it names the LCAF ("LCAF: Security Key", Type 11), shows its
#   Rsvd1/Flags/Type/Rsvd2/Length header, and marks the body "Not dissected
#   yet" (an expert *warning*): Key Count, Cipher Suite, R, the keys and the
#   RLOC are not shown. It then resumes at the next locator at the offset our
#   Length gives, and decodes it: so our Length agrees with its reading.
# - lispers.net form: the AFI-List's IPv4 item is decoded; the Security Key
#   item inside is "Not dissected yet", as above.
# Each allowance is the exact finding (offsets and byte counts included).

_MISSING = tshark.missing_tools()
needs_tshark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"{' and '.join(_MISSING)} not installed (Debian: apt-get install "
    "tshark); the wire conformance checks need Wireshark's LISP dissector",
)

_NOT_DISSECTED = (
    re.escape("expert warning/undecoded: Not dissected yet (report to wireshark.org)")
    + "|"
    + re.escape("not dissected: Not dissected yet (report to wireshark.org)")
)

TSHARK_REQUEST = _map_request(SK)
# The keyed locator first, then a plain one tshark must find after it.
TSHARK_REPLY = _map_reply(Locator(SK), Locator(IPv4Address("192.0.2.9")))
TSHARK_LISPERS = _map_reply(Locator(AfiList((RLOC, SK))))

#: name -> (message, {regex matching a whole finding: reason}).
TSHARK_CASES: dict[str, tuple[MapRequest | MapReply, dict[str, str]]] = {
    "Map-Request": (
        TSHARK_REQUEST,
        {
            re.escape(
                "expert error/protocol: Unexpected ITR-RLOC-AFI (16387), cannot decode"
            ): "tshark 4.0 decodes only IPv4/IPv6 ITR-RLOCs",
            re.escape(
                f"{len(TSHARK_REQUEST.encode()) - 20} undecoded bytes at UDP "
                "payload offset 20 (to the end)"
            ): "it stops at the LCAF ITR-RLOC (offset 18 is its AFI)",
        },
    ),
    "Map-Reply": (
        TSHARK_REPLY,
        {
            _NOT_DISSECTED: "tshark 4.0 shows only the LCAF header of type 11",
            # Header and nonce 12, EID-record 16, locator head 6, AFI 2, LCAF
            # header 6: the 44-byte body starts at 42; the next locator follows.
            re.escape(
                "44 undecoded bytes at UDP payload offset 42"
            ): "the Security Key body (Length 44) tshark does not dissect",
        },
    ),
    "Map-Reply lispers.net": (
        TSHARK_LISPERS,
        {
            _NOT_DISSECTED: "tshark 4.0 shows only the LCAF header of type 11",
            re.escape(
                "44 undecoded bytes at UDP payload offset 56 (to the end)"
            ): "the Security Key body inside the AFI-List",
        },
    ),
}


@pytest.fixture(scope="module")
def dissections() -> dict[str, tshark.Dissection]:
    found = tshark.dissect(
        [(msg.encode(), tshark.CONTROL_PORT) for msg, _ in TSHARK_CASES.values()]
        + [(_map_request(RLOC).encode(), tshark.CONTROL_PORT)]
    )
    return dict(zip([*TSHARK_CASES, "plain Map-Request"], found, strict=True))


@pytest.fixture(scope="module")
def lisp_fields() -> list[dict[str, list[str]]]:
    """Per datagram of TSHARK_CASES, every LISP field tshark showed: name ->
    its values in order; "lcaf_size" lists the size of each LCAF."""
    pdml = tshark._pdml(
        [(msg.encode(), tshark.CONTROL_PORT) for msg, _ in TSHARK_CASES.values()]
    )
    out: list[dict[str, list[str]]] = []
    for packet in pdml.findall("packet"):
        shows: dict[str, list[str]] = {}
        for field in packet.iter("field"):
            name = field.get("name") or ""
            if name.startswith("lisp."):
                shows.setdefault(name, []).append(field.get("show") or "")
            if name == "lisp.lcaf":
                shows.setdefault("lcaf_size", []).append(field.get("size") or "")
        out.append(shows)
    return out


@needs_tshark
@pytest.mark.parametrize("name", TSHARK_CASES)
def test_tshark_finds_nothing_malformed_and_only_the_known_gaps(
    name: str, dissections: dict[str, tshark.Dissection]
) -> None:
    d = dissections[name]
    assert d.lisp_decoded
    assert d.malformed == ()
    assert d.zero_inner_checksums == 0
    _msg, allow = TSHARK_CASES[name]
    assert tshark.unexplained(tshark.problems(d), allow) == []


@needs_tshark
@pytest.mark.parametrize("name", TSHARK_CASES)
def test_tshark_allowances_are_still_needed(
    name: str, dissections: dict[str, tshark.Dissection]
) -> None:
    # A newer tshark that dissects type 11 fails this: tighten the test then.
    found = tshark.problems(dissections[name])
    for regex in TSHARK_CASES[name][1]:
        assert any(re.fullmatch(regex, f) for f in found), (regex, found)


@needs_tshark
def test_tshark_reports_no_expert_error_for_the_map_replies(
    dissections: dict[str, tshark.Dissection],
) -> None:
    for name in ("Map-Reply", "Map-Reply lispers.net"):
        assert [e for e in dissections[name].experts if e.severity == "error"] == []


@needs_tshark
def test_the_same_map_request_without_the_key_is_clean(
    dissections: dict[str, tshark.Dissection],
) -> None:
    assert tshark.problems(dissections["plain Map-Request"]) == []


@needs_tshark
def test_tshark_reads_our_lcaf_headers(lisp_fields: list[dict[str, list[str]]]) -> None:
    request, reply, lispers = lisp_fields
    assert request["lisp.mreq.itr_rloc.afi"] == ["16387"]
    assert "lisp.lcaf.type" not in request
    # Type 11 and our Length; the LCAF spans its 6-byte header + Length.
    assert reply["lisp.lcaf.type"] == ["11"]
    assert reply["lisp.lcaf.length"] == ["44"]
    assert reply["lcaf_size"] == ["50"]
    # The second locator, found where our Length says the LCAF ends.
    assert reply["lisp.loc.afi"] == ["16387", "1"]
    assert reply["lisp.loc.locator"] == ["192.0.2.9"]
    # lispers.net: the AFI-List (type 1) holds the RLOC and the type 11 LCAF.
    assert lispers["lisp.lcaf.type"] == ["1", "11"]
    assert lispers["lisp.lcaf.length"] == ["58", "44"]
    assert lispers["lcaf_size"] == ["64", "50"]
    assert lispers["lisp.lcaf.afi_list.ipv4"] == [str(RLOC)]
