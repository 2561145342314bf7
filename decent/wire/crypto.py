"""RFC 8061 lisp-crypto: cipher suites, X25519, the key derivation, sealing in place.

An encrypted LISP data packet is the 8-byte LISP header (KK = key-id), the
IV in clear, then the AEAD ciphertext of the inner packet with its 16-byte
tag. The associated data is the header exactly as sent followed by the IV
(RFC 8061 section 9), so a flipped header bit fails the tag as surely as a
flipped payload bit. Outer IP and UDP are not covered, as the RFC says.

Two suites: 5 (X25519, AES-128-GCM, 12-byte IV) and 6 (X25519,
ChaCha20-Poly1305, 8-byte IV). The IV is a per-key packet counter starting
at 1, as RFC 8061 9 asks for GCM. For ChaCha20-Poly1305 the RFC says an
8-byte random value is appended to a 4-byte counter without saying which 8
bytes travel; we send the 8-byte counter and the 12-byte nonce is four zero
bytes and that counter. The random part guarded against a counter restarting
under an old key; our keys are fresh per exchange and never outlive a
restart, so a counter alone never repeats, and it doubles as the replay
window's sequence number.

The key derivation is RFC 8061 section 7 (NIST SP 800-108 counter mode,
HMAC-SHA-256, one block): K = HMAC(shared, 0x0001 || "lisp-crypto\\0" ||
itr-nonce || 0x0100). AES-128-GCM keys with its first 16 bytes,
ChaCha20-Poly1305 with all 32. lispers.net derives and seals differently
(protocol-notes-security 1.8); it is not spoken here.

Like `trust`, this module uses `cryptography`; everything else here is
stdlib-only. Sealing and opening work in place: the plaintext and the
ciphertext start at the same offset of one buffer (OpenSSL allows in ==
out), the tag lands in the tailroom after it.
"""

from __future__ import annotations

import hmac
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from decent.wire.data import DATA_HEADER_LEN

#: LISP Crypto Cipher Suite registry (RFC 8061 section 13).
SUITE_X25519_AES128_GCM: Final = 5
SUITE_X25519_CHACHA20_POLY1305: Final = 6
SUITES: Final = {
    "aes-128-gcm": SUITE_X25519_AES128_GCM,
    "chacha20-poly1305": SUITE_X25519_CHACHA20_POLY1305,
}
SUITE_NAMES: Final = {v: k for k, v in SUITES.items()}
IV_LEN: Final = {SUITE_X25519_AES128_GCM: 12, SUITE_X25519_CHACHA20_POLY1305: 8}
#: The longest IV of our suites: the headroom the shell leaves after the header.
MAX_IV_LEN: Final = 12
TAG_LEN: Final = 16
X25519_KEY_LEN: Final = 32
#: The IV counter's ceiling: rekey long before it (protocol-notes-security 1.10).
MAX_COUNTER: Final = (1 << 64) - 1

_KDF_LABEL: Final = b"lisp-crypto\x00"
_GCM_IV: Final = struct.Struct("!IQ")
_CHACHA_IV: Final = struct.Struct("!Q")
_CHACHA_NONCE: Final = struct.Struct("!4xQ")


class BadPublicKey(ValueError):
    """A peer's public key that yields no shared secret (wrong length, or a
    low-order point whose X25519 output is all zeros)."""


def keypair(secret: bytes) -> tuple[bytes, bytes]:
    """An X25519 (private, public) pair from 32 random bytes (the caller's
    randomness: the protocol core takes its randomness injected)."""
    private = X25519PrivateKey.from_private_bytes(secret)
    return secret, private.public_key().public_bytes_raw()


def shared_secret(private: bytes, peer_public: bytes) -> bytes:
    """The raw 32-byte X25519 output (RFC 7748), as RFC 8061 7 keys its KDF."""
    if len(peer_public) != X25519_KEY_LEN:
        raise BadPublicKey(f"an X25519 key is 32 bytes, not {len(peer_public)}")
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(peer_public)
        )
    except ValueError as exc:  # the all-zero output of a low-order point
        raise BadPublicKey(str(exc)) from None


def kdf_context(itr_nonce: int) -> bytes:
    """RFC 8061 7: counter 1, the NUL-terminated label, the ITR's Map-Request
    nonce and L = 256 bits, all big-endian."""
    return b"\x00\x01" + _KDF_LABEL + itr_nonce.to_bytes(8, "big") + b"\x01\x00"


def derive_key(shared: bytes, itr_nonce: int, suite: int) -> bytes:
    """The AEAD key of `suite` for an exchange keyed by `itr_nonce`."""
    material = hmac.digest(shared, kdf_context(itr_nonce), "sha256")
    return material[:16] if suite == SUITE_X25519_AES128_GCM else material


class Cipher:
    """One direction's AEAD under one key: seal or open packets in place.

    A packet sits in a buffer as header (8) || IV || payload || tag, where
    `p` is the payload's offset; the header and IV start `8 + iv_len` before.
    """

    __slots__ = ("_aead", "_gcm", "iv_len", "suite")

    def __init__(self, suite: int, key: bytes) -> None:
        self.suite = suite
        self.iv_len = IV_LEN[suite]
        self._gcm = suite == SUITE_X25519_AES128_GCM
        self._aead: AESGCM | ChaCha20Poly1305 = (
            AESGCM(key) if self._gcm else ChaCha20Poly1305(key)
        )

    def seal(self, view: memoryview, p: int, n: int, counter: int) -> None:
        """Write the IV for `counter` before view[p:p + n] and replace the
        payload by its ciphertext and tag (view[p:p + n + 16]). The LISP
        header must already be in view[p - iv_len - 8:p - iv_len]."""
        at = p - self.iv_len
        if self._gcm:
            _GCM_IV.pack_into(view, at, counter >> 64, counter & MAX_COUNTER)
            nonce: memoryview | bytes = bytes(view[at:p])
        else:
            _CHACHA_IV.pack_into(view, at, counter)
            nonce = _CHACHA_NONCE.pack(counter)
        # The plaintext is copied out first: cryptography >= 51 refuses
        # input and output that overlap (it used to allow exact aliasing).
        self._aead.encrypt_into(
            nonce,
            bytes(view[p : p + n]),
            bytes(view[at - DATA_HEADER_LEN : p]),
            view[p : p + n + 16],
        )

    def counter(self, view: memoryview, p: int) -> int:
        """The IV counter of the packet whose payload starts at p."""
        at = p - self.iv_len
        if self._gcm:
            high, low = _GCM_IV.unpack_from(view, at)
            return int(high << 64 | low)
        return int(_CHACHA_IV.unpack_from(view, at)[0])

    def open(self, view: memoryview, p: int, end: int, counter: int) -> bool:
        """Check and decrypt view[p:end] (ciphertext and tag) in place; the
        plaintext is then view[p:end - 16]. False if the tag fails: the
        packet was forged, altered, or sealed under another key."""
        at = p - self.iv_len
        nonce = bytes(view[at:p]) if self._gcm else _CHACHA_NONCE.pack(counter)
        try:
            self._aead.decrypt_into(
                nonce,
                bytes(view[p:end]),
                bytes(view[at - DATA_HEADER_LEN : p]),
                view[p : end - 16],
            )
        except (InvalidTag, ValueError):  # ValueError: shorter than a tag
            return False
        return True
