"""Map-Register/Notify authentication: full and truncated HMACs, alg 0, coverage."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decent.wire import (
    AlgorithmId,
    Locator,
    MapNotify,
    MapNotifyAck,
    MapRecord,
    MapRegister,
    check_auth,
    decode,
    sign_bytes,
)

KEY = b"password"
# protocol-notes E1: Map-Register, alg 2, full 32-byte HMAC over the whole
# message, xTR-ID/Site-ID trailer included.
E1 = bytes.fromhex(
    "3a000101 01020304 05060708 00020020 5092fe33 574b353f f4fc667a a86306f5"
    " 9a614754 0c5454a9 a1a24db9 30a3a799 000005a0 01101000 00000001 0a010000"
    " 0164ff00 00050001 c0000201 00010203 04050607 08090a0b 0c0d0e0f 00000000"
    " 00000001".replace(" ", "")
)
BODY = E1[48:]


def _variant(word3: str, mac: str) -> bytes:
    return E1[:12] + bytes.fromhex(word3 + mac) + BODY


SHA1_FULL = _variant("00010014", "4e7af43c977d0b39708e6c94bf8f6ebcde8c67a1")
SHA256_TRUNC = _variant("00020010", "21cac8774e90fcb6d4174825393457d3")
SHA1_TRUNC = _variant("0001000c", "14e891c104b2afe48ba68b17")


@pytest.mark.parametrize(
    "raw",
    [E1, SHA1_FULL, SHA256_TRUNC, SHA1_TRUNC],
    ids=["sha256", "sha1", "sha256-16", "sha1-12"],
)
def test_full_and_truncated_macs_verify(raw: bytes) -> None:
    assert check_auth(raw, KEY)
    assert not check_auth(raw, b"passwore")


@pytest.mark.parametrize("pos", [0, 5, 12, 20, 60, len(E1) - 1])
def test_any_flipped_bit_fails_verification(pos: int) -> None:
    raw = bytearray(E1)
    raw[pos] ^= 0x01
    assert not check_auth(bytes(raw), KEY)


def test_signing_reproduces_the_golden_mac_with_key_id_0() -> None:
    msg = decode(E1)
    assert isinstance(msg, MapRegister)
    blank = dataclasses.replace(msg, alg_id=0, auth_data=b"")
    assert blank.signed(KEY).encode() == E1
    sha1 = blank.signed(KEY, AlgorithmId.HMAC_SHA_1_96)
    assert sha1.encode() == SHA1_FULL
    assert sha1.key_id == 0
    assert len(sha1.auth_data) == 20


def test_sign_bytes_fills_an_encoded_message() -> None:
    zeroed = E1[:16] + bytes(32) + E1[48:]
    assert sign_bytes(zeroed, KEY) == E1
    assert sign_bytes(E1, KEY) == E1


def test_mac_coverage_without_the_trailer_is_available() -> None:
    msg = decode(E1)
    assert isinstance(msg, MapRegister)
    without = E1[:-24]
    mac = sign_bytes(without[:16] + bytes(32) + without[48:], KEY)[16:48]
    raw = E1[:16] + mac + E1[48:]
    assert check_auth(raw, KEY, include_trailer=False)
    assert not check_auth(raw, KEY)
    assert not check_auth(E1, KEY, include_trailer=False)


def test_notify_and_ack_macs_verify() -> None:
    rec = MapRecord(IPv4Address("10.1.0.0"), 16, (Locator(IPv4Address("192.0.2.1")),))
    for cls in (MapNotify, MapNotifyAck):
        raw = cls(7, (rec,)).signed(KEY).encode()
        assert check_auth(raw, KEY)
        assert not check_auth(raw, b"other")
    # An OOR-style trailer is covered like the Map-Register's.
    raw = MapNotify(7, (rec,), xtr_id=1, site_id=2).signed(KEY).encode()
    assert check_auth(raw, KEY)


@pytest.mark.parametrize(
    ("word3", "auth"),
    [
        ("00000000", ""),  # alg 0: nothing to check; the caller decides policy
        ("00030010", "00" * 16),  # alg 3 (HKDF) is not implemented by peers
        ("00020011", "00" * 17),  # a length no algorithm uses
        ("00010010", "00" * 16),  # SHA-1 with SHA-256's truncation length
    ],
)
def test_unverifiable_algorithms_and_lengths_fail(word3: str, auth: str) -> None:
    raw = E1[:12] + bytes.fromhex(word3 + auth) + BODY
    assert not check_auth(raw, KEY)


def test_check_auth_refuses_short_and_foreign_messages() -> None:
    assert not check_auth(b"", KEY)
    assert not check_auth(E1[:15], KEY)
    assert not check_auth(bytes([0x10]) + E1[1:], KEY)  # a Map-Request
    assert not check_auth(E1[:40], KEY)  # auth data runs past the end
    no_trailer = bytearray(E1[:60])
    assert not check_auth(bytes(no_trailer), KEY, include_trailer=False)


@given(st.binary(max_size=200), st.binary(min_size=1, max_size=40))
def test_check_auth_never_raises(data: bytes, key: bytes) -> None:
    assert check_auth(data, key) in (True, False)


def test_compute_mac_refuses_alg_0() -> None:
    with pytest.raises(ValueError, match="algorithm 0"):
        MapRegister(1, ()).signed(KEY, 0)
