"""HMAC authentication of Map-Register, Map-Notify and Map-Notify-Ack (RFC 9301 5.6).

Deployed peers (lispers.net, pylisp, OOR; protocol notes gotcha 1-3) send the
full 20- or 32-byte HMAC with Key ID 0, computed over the entire message
(xTR-ID/Site-ID trailer included) with the authentication data zeroed. We send
that form and also accept the RFC's truncated 12- and 16-byte forms.
"""

from __future__ import annotations

import hmac
from enum import IntEnum
from typing import Final

from decent.wire.buffer import Reader


class AlgorithmId(IntEnum):
    """Authentication Algorithm IDs (RFC 9301 section 12.5)."""

    NONE = 0
    HMAC_SHA_1_96 = 1
    HMAC_SHA_256_128 = 2
    HMAC_SHA256_128_HKDF = 3


_DIGEST: Final[dict[int, str]] = {
    AlgorithmId.HMAC_SHA_1_96: "sha1",
    AlgorithmId.HMAC_SHA_256_128: "sha256",
}
#: Auth data length we send, per algorithm: the full digest.
AUTH_LENGTH: Final[dict[int, int]] = {
    AlgorithmId.HMAC_SHA_1_96: 20,
    AlgorithmId.HMAC_SHA_256_128: 32,
}
#: Lengths accepted on receipt: full digest, or the RFC 2404/4868 truncation.
ACCEPTED_LENGTHS: Final[dict[int, tuple[int, int]]] = {
    AlgorithmId.HMAC_SHA_1_96: (12, 20),
    AlgorithmId.HMAC_SHA_256_128: (16, 32),
}
_AUTH_OFFSET: Final = 16
_TRAILER_LEN: Final = 24
_AUTHENTICATED_TYPES: Final = (3, 4, 5)
# The I bit (xTR-ID/Site-ID trailer present) sits at a type-specific position.
_I_BIT: Final = {3: 0x02000000, 4: 0x08000000, 5: 0x08000000}


def compute_mac(data: bytes, key: bytes, alg_id: int) -> bytes:
    """The full HMAC of an encoded message whose auth data is already zero."""
    digest = _DIGEST.get(alg_id)
    if digest is None:
        raise ValueError(f"cannot compute a MAC for algorithm {alg_id}")
    return hmac.digest(key, data, digest)


def sign_bytes(data: bytes, key: bytes) -> bytes:
    """Fill in the auth data of an encoded message whose auth field has its
    final length (any content); return the signed bytes."""
    r = Reader(data, 13)
    alg_id = r.u8()
    length = r.u16()
    end = _AUTH_OFFSET + length
    zeroed = data[:_AUTH_OFFSET] + bytes(length) + data[end:]
    mac = compute_mac(zeroed, key, alg_id)[:length]
    return data[:_AUTH_OFFSET] + mac + data[end:]


def check_auth(data: bytes, key: bytes, *, include_trailer: bool = True) -> bool:
    """True when the Map-Register, Map-Notify or Map-Notify-Ack in `data`
    carries a valid HMAC for `key`.

    Algorithm 0 (no authentication) and unknown algorithms return False; the
    caller decides whether a site may go unauthenticated. The comparison is
    constant-time. With include_trailer=False the xTR-ID/Site-ID trailer is left
    out of the MAC, as the RFC text literally says (for peers that do that).
    """
    if len(data) < _AUTH_OFFSET or data[0] >> 4 not in _AUTHENTICATED_TYPES:
        return False
    alg_id = data[13]
    length = int.from_bytes(data[14:16], "big")
    accepted = ACCEPTED_LENGTHS.get(alg_id)
    end = _AUTH_OFFSET + length
    if accepted is None or length not in accepted or end > len(data):
        return False
    covered = data
    if not include_trailer and int.from_bytes(data[:4], "big") & _I_BIT[data[0] >> 4]:
        if len(data) - _TRAILER_LEN < end:
            return False
        covered = data[:-_TRAILER_LEN]
    zeroed = covered[:_AUTH_OFFSET] + bytes(length) + covered[end:]
    mac = compute_mac(zeroed, key, alg_id)
    return hmac.compare_digest(mac[:length], data[_AUTH_OFFSET:end])
