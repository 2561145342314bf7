"""Node identities on the wire: mesh certificates, revocations, signed registrations.

A mesh authority's Ed25519 key signs one certificate per node (its name, key
and the EID-prefixes it may register) and, when a node is lost, a revocation.
A node signs its Map-Registers with its own key. The signature travels as
ECDSA-AUTH's does in lispers.net (protocol-notes-security 2.2): an extra
RLOC-record that is never used for forwarding, here a Key/Value LCAF (RFC 8060
type 15) of two names, since Wireshark dissects that and lispers.net's JSON
LCAF layout is its own. Unlike ECDSA-AUTH, the signature covers the nonce,
xTR-ID, site-ID and whole records (locators, TTLs), so it cannot be replayed
with other RLOCs, and the certificate travels with it, so no member has to
have seen the signer's key registered first.

This is the one wire module that is not stdlib-only: it uses `cryptography`
for Ed25519. Expiry is not judged here (no clock); the core compares
`not_after` with its own.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from decent.wire.afi import Address, DistinguishedName, KeyValue, write_address
from decent.wire.buffer import Reader, Writer, check_uint
from decent.wire.eid import Eid, parse_eid
from decent.wire.errors import DecodeError
from decent.wire.limits import MAX_CERTIFICATE_EIDS, MAX_CERTIFICATE_LEN
from decent.wire.records import Locator, MapRecord

PUBLIC_KEY_LEN: Final = 32
PRIVATE_KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
#: Mesh and node names: printable ASCII, 1 to 63 characters.
MAX_LABEL_LEN: Final = 63

CERTIFICATE_MAGIC: Final = b"DCR1"
REVOCATION_MAGIC: Final = b"DRV1"
# Every signed thing gets its own prefix, so a signature made for one kind
# can never be passed off as another.
CERTIFICATE_DOMAIN: Final = b"decent certificate v1\0"
REVOCATION_DOMAIN: Final = b"decent revocation v1\0"
REGISTER_DOMAIN: Final = b"decent register v1\0"
XTR_ID_DOMAIN: Final = b"decent xtr-id\0"
KEY_REQUEST_DOMAIN: Final = b"decent key request v1\0"
KEY_REPLY_DOMAIN: Final = b"decent key reply v1\0"

#: Key of the Key/Value locator that carries a registration's signature.
SIGNATURE_KEY: Final = "decent-signature"
#: Key of the Key/Value locator that carries a revocation.
REVOCATION_KEY: Final = "decent-revocation"
#: Revocations are registered as the name EID `revoked-<serial, 16 hex>`.
REVOKED_PREFIX: Final = "revoked-"

_SIGNATURE_NAME: Final = DistinguishedName(SIGNATURE_KEY)
_REVOCATION_NAME: Final = DistinguishedName(REVOCATION_KEY)
# A revocation's fixed layout: magic, two labels, key, two u64s, signature.
_MAX_REVOCATION_LEN: Final = (
    len(REVOCATION_MAGIC)
    + 2 * (1 + MAX_LABEL_LEN)
    + PUBLIC_KEY_LEN
    + 16
    + SIGNATURE_LEN
)


# ---------------------------------------------------------------- keys


# Loading a raw key costs about as much as a verification; a Map-Server sees
# the same few member keys in every Map-Register, so loaded keys are kept.
@lru_cache(maxsize=1024)
def _public(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


@lru_cache(maxsize=16)
def _private(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def generate_private_key() -> bytes:
    """A new Ed25519 private key, raw (32 bytes)."""
    return Ed25519PrivateKey.generate().private_bytes_raw()


def public_key_of(private: bytes) -> bytes:
    """The raw public key (32 bytes) of a raw private key."""
    return _private(private).public_key().public_bytes_raw()


def sign(private: bytes, data: bytes) -> bytes:
    """The Ed25519 signature (64 bytes) of data; ValueError on a bad key."""
    return _private(private).sign(data)


def verify(public: bytes, data: bytes, signature: bytes) -> bool:
    """Whether signature is public's over data. Never raises: False instead."""
    if len(public) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        _public(bytes(public)).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def node_xtr_id(public_key: bytes) -> int:
    """The 128-bit xTR-ID bound to a node key: a member checks that a signed
    registration's xTR-ID is its certificate key's."""
    digest = hashlib.sha256(XTR_ID_DOMAIN + public_key).digest()
    return int.from_bytes(digest[:16], "big")


# ---------------------------------------------------------------- fields


def _check_label(what: str, text: str) -> None:
    if not 0 < len(text) <= MAX_LABEL_LEN:
        raise ValueError(f"{what} must be 1 to {MAX_LABEL_LEN} characters")
    if not (text.isascii() and text.isprintable()):
        raise ValueError(f"{what} must be printable ASCII: {text!r}")


def _check_bytes(what: str, value: bytes, length: int) -> None:
    if len(value) != length:
        raise ValueError(f"{what} is {len(value)} bytes, not {length}")


# A member decodes the same few certificates for every Map-Register it takes,
# and parsing and printing their EIDs is most of that cost: both are memoised.
@lru_cache(maxsize=4096)
def _eid_text(eid: Eid) -> bytes:
    text = str(eid)
    if not (text.isascii() and text.isprintable()):
        raise ValueError(f"EID {text!r} is not printable ASCII")
    # The text is what is signed, so it must read back as the same EID.
    if parse_eid(text) != eid:
        raise ValueError(f"EID {text!r} does not read back as itself")
    raw = text.encode("ascii")
    if len(raw) > 0xFF:
        raise ValueError(f"EID {text[:40]!r}... is longer than 255 characters")
    return raw


def _put_label(w: Writer, text: str) -> None:
    raw = text.encode("ascii")
    w.u8(len(raw))
    w.put(raw)


def _read_label(r: Reader, what: str) -> str:
    raw = r.take(r.u8())
    # Refuse bytes outside printable ASCII before decoding them: hostile
    # input must end in DecodeError, never UnicodeDecodeError.
    if not all(0x20 <= c < 0x7F for c in raw):
        raise r.fail(f"{what} is not printable ASCII")
    return raw.decode("ascii")


@lru_cache(maxsize=4096)
def _canonical_eid(raw: bytes) -> Eid:
    """The EID raw is the canonical text of; ValueError if none."""
    if not all(0x20 <= c < 0x7F for c in raw):
        raise ValueError("EID text is not printable ASCII")
    text = raw.decode("ascii")
    try:
        eid = parse_eid(text)
    except ValueError as exc:
        raise ValueError(f"bad EID {text!r} ({exc})") from None
    # One EID, one text: the encoding of a certificate is unique.
    if str(eid) != text:
        raise ValueError(f"EID {text!r} is not in canonical form {str(eid)!r}")
    return eid


def _read_eid(r: Reader) -> Eid:
    raw = r.take(r.u8())
    try:
        return _canonical_eid(raw)
    except ValueError as exc:
        raise r.fail(str(exc)) from None


def _read_signature(r: Reader) -> bytes:
    signature = r.take(SIGNATURE_LEN)
    r.finish()
    return signature


# ---------------------------------------------------------------- certificate


@dataclass(frozen=True, slots=True)
class Certificate:
    """A node's identity, signed by the mesh authority: its name, Ed25519
    key and the EID-prefixes (with IID) it may register, until `not_after`
    (Unix seconds).

    Encoding: `DCR1`, mesh and name (u8 length + ASCII), the 32-byte key,
    the EID count (u8) and each EID as u8 length + canonical text
    (`[0]10.42.0.7/32`), not_after and serial (u64 each), then the mesh
    key's 64-byte signature over CERTIFICATE_DOMAIN + every preceding byte.
    """

    mesh: str
    name: str
    public_key: bytes
    eids: tuple[Eid, ...]
    not_after: int
    serial: int
    signature: bytes
    # Built once: a member decodes, fingerprints and may verify the same
    # certificate for every Map-Register, and the EID texts are the cost.
    _body: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        _check_label("mesh", self.mesh)
        _check_label("name", self.name)
        _check_bytes("public key", self.public_key, PUBLIC_KEY_LEN)
        _check_bytes("signature", self.signature, SIGNATURE_LEN)
        if len(self.eids) > MAX_CERTIFICATE_EIDS:
            raise ValueError(f"more than {MAX_CERTIFICATE_EIDS} EIDs")
        check_uint("not_after", self.not_after, 64)
        check_uint("serial", self.serial, 64)
        body = self._build_body()
        size = len(body) + SIGNATURE_LEN
        if size > MAX_CERTIFICATE_LEN:
            raise ValueError(
                f"certificate of {size} bytes exceeds {MAX_CERTIFICATE_LEN} "
                "(it must fit a signature locator): name fewer EIDs"
            )
        object.__setattr__(self, "_body", body)

    def body(self) -> bytes:
        """Every byte the signature covers (the encoding without it)."""
        return self._body

    def _build_body(self) -> bytes:
        w = Writer()
        w.put(CERTIFICATE_MAGIC)
        _put_label(w, self.mesh)
        _put_label(w, self.name)
        w.put(self.public_key)
        w.u8(len(self.eids))
        for eid in self.eids:
            raw = _eid_text(eid)
            w.u8(len(raw))
            w.put(raw)
        w.u64(self.not_after)
        w.u64(self.serial)
        return w.raw()

    def encode(self) -> bytes:
        return self._body + self.signature

    @classmethod
    def decode(cls, data: bytes) -> Certificate:
        """Parse an encoded certificate; DecodeError on anything malformed.
        The signature is not checked: see verify()."""
        if len(data) > MAX_CERTIFICATE_LEN:
            raise DecodeError(
                f"certificate of {len(data)} bytes exceeds {MAX_CERTIFICATE_LEN}"
            )
        r = Reader(data)
        if r.take(len(CERTIFICATE_MAGIC)) != CERTIFICATE_MAGIC:
            raise DecodeError("not a certificate (magic is not DCR1)")
        mesh = _read_label(r, "mesh")
        name = _read_label(r, "name")
        public_key = r.take(PUBLIC_KEY_LEN)
        count = r.u8()
        if count > MAX_CERTIFICATE_EIDS:
            raise r.fail(f"{count} EIDs exceed {MAX_CERTIFICATE_EIDS}")
        eids = tuple(_read_eid(r) for _ in range(count))
        not_after = r.u64()
        serial = r.u64()
        signature = _read_signature(r)
        try:
            return cls(mesh, name, public_key, eids, not_after, serial, signature)
        except ValueError as exc:  # a label the constructor refuses
            raise DecodeError(f"bad certificate: {exc}") from None

    def verify(self, mesh_public_key: bytes) -> bool:
        """Whether the mesh key signed this certificate. Expiry is the
        caller's to judge. Never raises."""
        return verify(mesh_public_key, CERTIFICATE_DOMAIN + self._body, self.signature)

    def fingerprint(self) -> bytes:
        """16 bytes naming this exact certificate, for caches of verified ones.
        The encoding is unique (decode refuses any other form), so this is
        also the first 16 bytes of SHA-256 of the bytes it was decoded from."""
        return hashlib.sha256(self._body + self.signature).digest()[:16]


def issue_certificate(
    mesh_private_key: bytes,
    *,
    mesh: str,
    name: str,
    public_key: bytes,
    eids: Sequence[Eid],
    not_after: int,
    serial: int,
) -> Certificate:
    """A certificate for a node key, signed with the mesh authority's key."""
    unsigned = Certificate(
        mesh, name, public_key, tuple(eids), not_after, serial, bytes(SIGNATURE_LEN)
    )
    signature = sign(mesh_private_key, CERTIFICATE_DOMAIN + unsigned.body())
    return dataclasses.replace(unsigned, signature=signature)


# ---------------------------------------------------------------- revocation


@dataclass(frozen=True, slots=True)
class Revocation:
    """The mesh authority's word that a node key is no longer trusted. It is
    kept until `not_after`, the revoked certificate's own expiry.

    Encoding: `DRV1`, mesh and name (u8 length + ASCII), the revoked 32-byte
    key, not_after and serial (u64 each), then the mesh key's 64-byte
    signature over REVOCATION_DOMAIN + every preceding byte.
    """

    mesh: str
    name: str
    public_key: bytes
    not_after: int
    serial: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_label("mesh", self.mesh)
        _check_label("name", self.name)
        _check_bytes("public key", self.public_key, PUBLIC_KEY_LEN)
        _check_bytes("signature", self.signature, SIGNATURE_LEN)
        check_uint("not_after", self.not_after, 64)
        check_uint("serial", self.serial, 64)

    def body(self) -> bytes:
        """Every byte the signature covers (the encoding without it)."""
        w = Writer()
        w.put(REVOCATION_MAGIC)
        _put_label(w, self.mesh)
        _put_label(w, self.name)
        w.put(self.public_key)
        w.u64(self.not_after)
        w.u64(self.serial)
        return w.raw()

    def encode(self) -> bytes:
        return self.body() + self.signature

    @classmethod
    def decode(cls, data: bytes) -> Revocation:
        """Parse an encoded revocation; DecodeError on anything malformed.
        The signature is not checked: see verify()."""
        if len(data) > _MAX_REVOCATION_LEN:
            raise DecodeError(
                f"revocation of {len(data)} bytes exceeds {_MAX_REVOCATION_LEN}"
            )
        r = Reader(data)
        if r.take(len(REVOCATION_MAGIC)) != REVOCATION_MAGIC:
            raise DecodeError("not a revocation (magic is not DRV1)")
        mesh = _read_label(r, "mesh")
        name = _read_label(r, "name")
        public_key = r.take(PUBLIC_KEY_LEN)
        not_after = r.u64()
        serial = r.u64()
        signature = _read_signature(r)
        try:
            return cls(mesh, name, public_key, not_after, serial, signature)
        except ValueError as exc:
            raise DecodeError(f"bad revocation: {exc}") from None

    def verify(self, mesh_public_key: bytes) -> bool:
        """Whether the mesh key signed this revocation. Never raises."""
        return verify(mesh_public_key, REVOCATION_DOMAIN + self.body(), self.signature)


def issue_revocation(
    mesh_private_key: bytes,
    *,
    mesh: str,
    name: str,
    public_key: bytes,
    not_after: int,
    serial: int,
) -> Revocation:
    """A revocation of a node key, signed with the mesh authority's key."""
    unsigned = Revocation(
        mesh, name, public_key, not_after, serial, bytes(SIGNATURE_LEN)
    )
    signature = sign(mesh_private_key, REVOCATION_DOMAIN + unsigned.body())
    return dataclasses.replace(unsigned, signature=signature)


def revocation_name(serial: int) -> str:
    """The name EID a revocation is registered under: `revoked-<16 hex>`."""
    check_uint("serial", serial, 64)
    return f"{REVOKED_PREFIX}{serial:016x}"


# ---------------------------------------------------------------- registrations


def register_digest(
    nonce: int, xtr_id: int | None, site_id: int, records: Sequence[MapRecord]
) -> bytes:
    """What a node signs for a Map-Register: the nonce, xTR-ID, site-ID and
    every record with its locators and TTL, signature locators left out (so
    the signer and a verifier that received them compute the same bytes)."""
    check_uint("nonce", nonce, 64)
    check_uint("xtr_id", xtr_id or 0, 128)
    check_uint("site_id", site_id, 64)
    w = Writer()
    w.put(REGISTER_DOMAIN)
    w.u64(nonce)
    w.put((xtr_id or 0).to_bytes(16, "big"))
    w.u64(site_id)
    # Each record as encode_record() gives it, written into one buffer.
    for record in records:
        without_signature(record).write(w)
    return w.raw()


def _never_forwarded(address: KeyValue) -> Locator:
    # Priority 255 means "do not use for unicast forwarding" (RFC 9301 5.4),
    # and R clear keeps an ITR from ever taking it for a reachable RLOC.
    return Locator(
        address,
        priority=255,
        weight=0,
        m_priority=255,
        m_weight=0,
        local=False,
        reachable=False,
    )


def signature_locator(certificate: bytes, signature: bytes) -> Locator:
    """The RLOC-record that carries a registration's signature and the
    signer's certificate: KeyValue('decent-signature', base64(u16 length,
    certificate, signature))."""
    _check_bytes("signature", signature, SIGNATURE_LEN)
    if len(certificate) > MAX_CERTIFICATE_LEN:
        raise ValueError(
            f"certificate of {len(certificate)} bytes exceeds {MAX_CERTIFICATE_LEN}"
        )
    blob = len(certificate).to_bytes(2, "big") + certificate + signature
    value = DistinguishedName(base64.b64encode(blob).decode("ascii"))
    return _never_forwarded(KeyValue(_SIGNATURE_NAME, value))


def _keyed(loc: Locator, key: DistinguishedName) -> bool:
    addr = loc.address
    return isinstance(addr, KeyValue) and addr.key == key


def _blob(loc: Locator, what: str) -> bytes:
    value = loc.address.value if isinstance(loc.address, KeyValue) else None
    if not isinstance(value, DistinguishedName):
        raise DecodeError(f"{what} locator value is not a name")
    try:
        blob = base64.b64decode(value.name, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{what} locator value is not base64") from None
    # One blob, one text: refuse padding bits and forms the encoder never makes.
    if base64.b64encode(blob) != value.name.encode("ascii"):
        raise DecodeError(f"{what} locator value is not canonical base64")
    return blob


def find_signature(record: MapRecord) -> tuple[bytes, bytes] | None:
    """(certificate bytes, signature) from the record's first signature
    locator; None if it has none, DecodeError if that one is malformed."""
    for loc in record.locators:
        if _keyed(loc, _SIGNATURE_NAME):
            return _certificate_and_signature(loc)
    return None


def _certificate_and_signature(loc: Locator) -> tuple[bytes, bytes]:
    r = Reader(_blob(loc, "signature"))
    certificate = r.take(r.u16())
    return certificate, _read_signature(r)


def find_address_signature(addr: Address) -> tuple[bytes, bytes] | None:
    """(certificate, signature) of a signature address (a keyed
    Map-Request's Source-EID); None if addr is not one."""
    loc = Locator(addr)
    return _certificate_and_signature(loc) if _keyed(loc, _SIGNATURE_NAME) else None


def without_signature(record: MapRecord) -> MapRecord:
    """The record with every signature locator removed."""
    locators = tuple(loc for loc in record.locators if not _keyed(loc, _SIGNATURE_NAME))
    if len(locators) == len(record.locators):
        return record
    return dataclasses.replace(record, locators=locators)


def key_exchange_digest(
    reply: bool,
    nonce: int,
    suite: int,
    itr_keys: Sequence[bytes],
    etr_keys: Sequence[bytes],
    rloc: Address,
) -> bytes:
    """What a node signs for an RFC 8061 key exchange: the Map-Request's
    nonce, the cipher suite, the ITR's public keys and, in the reply, the
    ETR's, and the RLOC the keys are for (the ITR's in the request, the
    ETR's in the reply). The reply covers the ITR's keys too, so it cannot
    be replayed to another exchange."""
    w = Writer()
    w.put(KEY_REPLY_DOMAIN if reply else KEY_REQUEST_DOMAIN)
    w.u64(nonce)
    w.u8(suite)
    for keys in (itr_keys, etr_keys):
        w.u8(len(keys))
        for key in keys:
            w.u16(len(key))
            w.put(key)
    write_address(w, rloc)
    return w.raw()


def revocation_locator(rev: Revocation) -> Locator:
    """The RLOC-record that carries a revocation through the group:
    KeyValue('decent-revocation', base64(revocation))."""
    value = DistinguishedName(base64.b64encode(rev.encode()).decode("ascii"))
    return _never_forwarded(KeyValue(_REVOCATION_NAME, value))


def find_revocation(record: MapRecord) -> Revocation | None:
    """The revocation from the record's first revocation locator; None if it
    has none, DecodeError if that one is malformed. Not verified here."""
    for loc in record.locators:
        if _keyed(loc, _REVOCATION_NAME):
            return Revocation.decode(_blob(loc, "revocation"))
    return None
