"""RFC 8061 lisp-crypto primitives: the KDF, X25519, and sealing/opening packets."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from decent.wire import DataHeader
from decent.wire.crypto import (
    IV_LEN,
    MAX_COUNTER,
    SUITE_X25519_AES128_GCM,
    SUITE_X25519_CHACHA20_POLY1305,
    TAG_LEN,
    BadPublicKey,
    Cipher,
    derive_key,
    kdf_context,
    keypair,
    shared_secret,
)

GCM = SUITE_X25519_AES128_GCM
CHACHA = SUITE_X25519_CHACHA20_POLY1305
SUITES = [GCM, CHACHA]

# ---------------------------------------------------------------- vectors
# protocol-notes-security 1.11. No RFC or peer publishes lisp-crypto vectors.
#
# X25519: the curve25519-donna test-suite keys, re-verified with the
# `cryptography` package (not with decent.wire.crypto).
PRIV1 = hashlib.sha256(b"curve25519-private:abc").digest()
PRIV2 = hashlib.sha256(b"curve25519-private:def").digest()
PUB1 = bytes.fromhex("67b93d97e7bd58587eb0c2c79e772fa0e122b685ee483f0ea0712f9a76c2344d")
PUB2 = bytes.fromhex("d3f26484bdb9e9919e63641489d97ae0fbcf5fdaf80190b9fba36a205c1fe105")
#: The raw X25519 output (RFC 7748), what RFC 8061 7 keys its KDF with.
Z = bytes.fromhex("8e14500f7f3e0a3889b72ef81dfcba62cc6fd23e3726e793b5d587b4d9d0c95f")
#: curve25519-donna's get_shared_key() (lispers.net) hashes Z; we do not.
DONNA_SHARED = bytes.fromhex(
    "da959ffe77ebeb4757fe5ba310e28ede425ae0d0ff5ec9c884e2d08f311cf5e5"
)

# RFC 8061 7 KDF for Z and itr-nonce 0102030405060708. How it was obtained:
# from the RFC formula (NIST SP 800-108 counter mode, PRF HMAC-SHA-256, one
# block of L = 256 bits) with the Python stdlib alone,
#   hmac.new(Z, b"\x00\x01" + b"lisp-crypto\x00" + nonce + b"\x01\x00",
#            hashlib.sha256).hexdigest()
# never with decent.wire.crypto; test_kdf_formula_from_the_stdlib redoes it.
ITR_NONCE = 0x0102030405060708
KDF_CONTEXT = bytes.fromhex("00016c6973702d63727970746f0001020304050607080100")
KEY_MATERIAL = bytes.fromhex(
    "38ad79993b159ff661fcd2d94468ae3c0077e6809aa2037b98fc45e29dcf6f33"
)

# A LISP header with N (nonce 0x123456), L (LSBs 0x01), I (IID 7), KK = 1.
HEADER = bytes.fromhex("c9123456 00000701")
# A fixed inner packet: IPv4/UDP 10.0.0.1:1024 -> 10.1.0.2:7 with 12 bytes.
IPV4_HEADER = bytes.fromhex("45000028 00004000 4011 0000 0a000001 0a010002")
UDP_HEADER = bytes.fromhex("0400 0007 0014 0000")
INNER = IPV4_HEADER + UDP_HEADER + b"hello, world"


def _key(suite: int) -> bytes:
    return KEY_MATERIAL[:16] if suite == GCM else KEY_MATERIAL


def _iv(suite: int, counter: int) -> bytes:
    """The IV on the wire: the counter, big-endian, in IV_LEN bytes (RFC 8061
    9 for GCM; for ChaCha20 decent.wire.crypto's documented choice)."""
    return counter.to_bytes(IV_LEN[suite], "big")


def _independent_seal(suite: int, key: bytes, counter: int, pt: bytes) -> bytes:
    """The sealed packet computed with `cryptography` directly: header || IV
    || AEAD(pt) with AAD = header || IV (RFC 8061 9)."""
    iv = _iv(suite, counter)
    if suite == GCM:
        sealed = AESGCM(key[:16]).encrypt(iv, pt, HEADER + iv)
    else:
        sealed = ChaCha20Poly1305(key).encrypt(b"\0" * 4 + iv, pt, HEADER + iv)
    return HEADER + iv + sealed


def _seal(suite: int, key: bytes, counter: int, pt: bytes = INNER) -> bytes:
    """header || IV || ciphertext || tag, sealed by our Cipher in a buffer
    laid out as the data plane's: header and IV right before the payload."""
    p = 8 + IV_LEN[suite]
    buf = bytearray(HEADER + bytes(IV_LEN[suite]) + pt + bytes(TAG_LEN))
    Cipher(suite, key).seal(memoryview(buf), p, len(pt), counter)
    return bytes(buf)


def _open(
    suite: int, key: bytes, packet: bytes, counter: int | None = None
) -> tuple[bool, bytes]:
    buf = bytearray(packet)
    view = memoryview(buf)
    cipher = Cipher(suite, key)
    p = 8 + cipher.iv_len
    if counter is None:
        counter = cipher.counter(view, p)
    ok = cipher.open(view, p, len(buf), counter)
    return ok, bytes(buf[p : len(buf) - TAG_LEN])


# ---------------------------------------------------------------- KDF


def test_kdf_vector() -> None:
    assert kdf_context(ITR_NONCE) == KDF_CONTEXT
    assert derive_key(Z, ITR_NONCE, CHACHA) == KEY_MATERIAL
    # AES-128-GCM keys with the most significant 128 bits.
    assert derive_key(Z, ITR_NONCE, GCM) == KEY_MATERIAL[:16]


def test_kdf_formula_from_the_stdlib() -> None:
    # RFC 8061 7, written out: counter_1 (16 bits) || "lisp-crypto" || 0x00 ||
    # itr-nonce (64 bits) || L (16 bits, in bits), HMAC-SHA-256 keyed with Z.
    context = (
        struct.pack("!H", 1)
        + b"lisp-crypto"
        + b"\x00"
        + struct.pack("!Q", ITR_NONCE)
        + struct.pack("!H", 256)
    )
    assert context == KDF_CONTEXT
    assert hmac.new(Z, context, hashlib.sha256).digest() == KEY_MATERIAL


def test_kdf_depends_on_the_nonce_and_the_secret() -> None:
    assert derive_key(Z, ITR_NONCE + 1, CHACHA) != KEY_MATERIAL
    assert derive_key(DONNA_SHARED, ITR_NONCE, CHACHA) != KEY_MATERIAL
    assert kdf_context(0) == b"\x00\x01lisp-crypto\x00" + bytes(8) + b"\x01\x00"
    assert kdf_context((1 << 64) - 1)[14:22] == b"\xff" * 8


# ---------------------------------------------------------------- X25519


def test_x25519_vector() -> None:
    assert keypair(PRIV1) == (PRIV1, PUB1)
    assert keypair(PRIV2) == (PRIV2, PUB2)
    assert shared_secret(PRIV1, PUB2) == Z
    assert shared_secret(PRIV2, PUB1) == Z
    # The same Z is what curve25519-donna hashes into its shared key
    # (lispers.net, protocol-notes-security 1.8): one more check on Z.
    assert hashlib.sha256(b"curve25519-shared:" + Z).digest() == DONNA_SHARED


_P = (1 << 255) - 19
# The small-order u-coordinates (RFC 7748 6.1; libsodium's blacklist): each
# makes X25519 output all zeros whatever the private key.
LOW_ORDER = {
    "all-zero": bytes(32),
    "one": (1).to_bytes(32, "little"),
    "order 8 (a)": bytes.fromhex(
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"
    ),
    "order 8 (b)": bytes.fromhex(
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"
    ),
    "p - 1": (_P - 1).to_bytes(32, "little"),
    "p": _P.to_bytes(32, "little"),
    "p + 1": (_P + 1).to_bytes(32, "little"),
}


@pytest.mark.parametrize("point", LOW_ORDER.values(), ids=list(LOW_ORDER))
def test_a_low_order_public_key_is_refused(point: bytes) -> None:
    with pytest.raises(BadPublicKey):
        shared_secret(PRIV1, point)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_a_public_key_of_the_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(BadPublicKey, match=f"32 bytes, not {length}"):
        shared_secret(PRIV1, PUB2[:length].ljust(length, b"\x01"))


def test_bad_public_key_is_a_value_error() -> None:
    # Callers that catch ValueError around decoding keep catching it.
    assert issubclass(BadPublicKey, ValueError)


# ---------------------------------------------------------------- sealing


def test_the_header_literal_is_what_data_header_writes() -> None:
    header = DataHeader(nonce=0x123456, instance_id=7, lsbs=1, key_id=1)
    assert header.encode() == HEADER


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("counter", [1, 2, 0x0102030405060708, MAX_COUNTER])
def test_seal_matches_an_independent_aead(suite: int, counter: int) -> None:
    sealed = _seal(suite, _key(suite), counter)
    assert sealed == _independent_seal(suite, _key(suite), counter, INNER)
    assert len(sealed) == 8 + IV_LEN[suite] + len(INNER) + TAG_LEN


def test_seal_golden_layout() -> None:
    # What the IV bytes are, written out: GCM carries 12 bytes (4 zero, then
    # the 64-bit counter), ChaCha20-Poly1305 the 8-byte counter.
    gcm = _seal(GCM, _key(GCM), 0x0102030405060708)
    assert gcm[:8] == HEADER
    assert gcm[8:20] == bytes.fromhex("00000000 0102030405060708")
    chacha = _seal(CHACHA, _key(CHACHA), 0x0102030405060708)
    assert chacha[:8] == HEADER
    assert chacha[8:16] == bytes.fromhex("0102030405060708")
    # Neither carries the plaintext.
    assert INNER not in gcm
    assert INNER not in chacha


@pytest.mark.parametrize("suite", SUITES)
def test_seal_touches_only_the_iv_payload_and_tag(suite: int) -> None:
    # The data plane's layout: the payload at a fixed offset with headroom
    # for the longest IV, so a ChaCha20 header starts 4 bytes in.
    iv_len = IV_LEN[suite]
    p = 8 + 12
    start = p - iv_len - 8
    guard = b"\xa5" * 7
    buf = bytearray(b"\xee" * start + HEADER + b"\xee" * iv_len + INNER)
    buf += bytes(TAG_LEN) + guard
    Cipher(suite, _key(suite)).seal(memoryview(buf), p, len(INNER), 9)
    assert buf[:start] == b"\xee" * start
    assert buf[-len(guard) :] == guard
    body = bytes(buf[start : len(buf) - len(guard)])
    assert body == _independent_seal(suite, _key(suite), 9, INNER)
    cipher = Cipher(suite, _key(suite))
    view = memoryview(buf)
    assert cipher.counter(view, p) == 9
    assert cipher.open(view, p, p + len(INNER) + TAG_LEN, 9)
    assert buf[p : p + len(INNER)] == INNER


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("pt", [b"", b"x", INNER, bytes(range(256)) * 6])
def test_open_round_trips(suite: int, pt: bytes) -> None:
    packet = _seal(suite, _key(suite), 77, pt)
    assert (
        Cipher(suite, _key(suite)).counter(
            memoryview(bytearray(packet)), 8 + IV_LEN[suite]
        )
        == 77
    )
    assert _open(suite, _key(suite), packet) == (True, pt)


@pytest.mark.parametrize("suite", SUITES)
def test_open_accepts_the_independent_seal(suite: int) -> None:
    packet = _independent_seal(suite, _key(suite), 5, INNER)
    assert _open(suite, _key(suite), packet) == (True, INNER)


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("part", ["header", "iv", "ciphertext", "tag"])
def test_any_flipped_bit_fails_the_tag(suite: int, part: str) -> None:
    packet = _seal(suite, _key(suite), 3)
    iv_end = 8 + IV_LEN[suite]
    tag_start = len(packet) - TAG_LEN
    span = {
        "header": range(0, 8),
        "iv": range(8, iv_end),
        "ciphertext": range(iv_end, tag_start),
        "tag": range(tag_start, len(packet)),
    }[part]
    for i in span:
        for bit in (0x01, 0x80, 1 << (i % 8)):
            bad = bytearray(packet)
            bad[i] ^= bit
            ok, _ = _open(suite, _key(suite), bytes(bad))
            assert not ok, f"{part} byte {i} bit {bit:#04x} went unnoticed"
    # The untouched packet still opens: the failures were the flips.
    assert _open(suite, _key(suite), packet) == (True, INNER)


def test_a_flipped_key_id_fails_the_tag() -> None:
    # KK travels in clear but is in the associated data (RFC 8061 9): a
    # packet relabelled to another key-id does not open.
    packet = bytearray(_seal(GCM, _key(GCM), 3))
    packet[0] = packet[0] & ~0x03 | 0x02
    assert _open(GCM, _key(GCM), bytes(packet))[0] is False


def test_chacha_with_a_wrong_counter_fails() -> None:
    # ChaCha20's nonce is rebuilt from the counter the caller passes (the one
    # it read from the IV); another counter is another nonce.
    packet = _seal(CHACHA, _key(CHACHA), 10)
    for counter in (9, 11, 10 + (1 << 32), 0):
        assert _open(CHACHA, _key(CHACHA), packet, counter)[0] is False
    assert _open(CHACHA, _key(CHACHA), packet, 10) == (True, INNER)


def test_gcm_takes_its_nonce_from_the_iv_it_carries() -> None:
    # GCM's 12-byte IV on the wire is the nonce itself, and it is in the AAD:
    # counter 2's IV spliced onto counter 1's ciphertext and tag fails.
    one, two = _seal(GCM, _key(GCM), 1), _seal(GCM, _key(GCM), 2)
    assert one[20:] != two[20:]
    assert _open(GCM, _key(GCM), two[:20] + one[20:])[0] is False
    assert _open(GCM, _key(GCM), one[:20] + two[20:])[0] is False


@pytest.mark.parametrize("suite", SUITES)
def test_another_key_fails(suite: int) -> None:
    packet = _seal(suite, _key(suite), 4)
    other = derive_key(Z, ITR_NONCE + 1, suite)
    assert _open(suite, other, packet)[0] is False
    # A key derived for the same exchange but with one bit changed.
    flipped = bytes([_key(suite)[0] ^ 1]) + _key(suite)[1:]
    assert _open(suite, flipped, packet)[0] is False


def test_the_two_suites_do_not_open_each_other() -> None:
    gcm = _seal(GCM, _key(GCM), 4)
    assert _open(CHACHA, _key(CHACHA), gcm)[0] is False
    chacha = _seal(CHACHA, _key(CHACHA), 4)
    assert _open(GCM, _key(GCM), chacha)[0] is False


@pytest.mark.parametrize("suite", SUITES)
def test_a_packet_shorter_than_a_tag_fails_without_raising(suite: int) -> None:
    cipher = Cipher(suite, _key(suite))
    p = 8 + cipher.iv_len
    sealed = _seal(suite, _key(suite), 1, b"")  # header || IV || tag only
    assert _open(suite, _key(suite), sealed) == (True, b"")
    for short in range(TAG_LEN):
        buf = bytearray(sealed[: p + short])
        assert cipher.open(memoryview(buf), p, len(buf), 1) is False
    # A payload end before its start (a caller's bad arithmetic) too.
    buf = bytearray(sealed)
    assert cipher.open(memoryview(buf), p, p - 1, 1) is False


@pytest.mark.parametrize("suite", SUITES)
def test_a_truncated_or_extended_packet_fails(suite: int) -> None:
    packet = _seal(suite, _key(suite), 6)
    for cut in (1, 2, TAG_LEN, TAG_LEN + 1):
        assert _open(suite, _key(suite), packet[:-cut])[0] is False
    assert _open(suite, _key(suite), packet + b"\x00")[0] is False


def test_cipher_shapes() -> None:
    assert (Cipher(GCM, _key(GCM)).iv_len, Cipher(CHACHA, _key(CHACHA)).iv_len) == (
        12,
        8,
    )
    assert len(derive_key(Z, 1, GCM)) == 16
    assert len(derive_key(Z, 1, CHACHA)) == 32
