"""Node certificates, revocations and signed Map-Registers (decent.wire.trust)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decent.wire import (
    DecodeError,
    DistinguishedName,
    Eid,
    KeyValue,
    Locator,
    MapRecord,
    MapRegister,
    decode,
    encode_record,
)
from decent.wire.limits import MAX_CERTIFICATE_EIDS, MAX_CERTIFICATE_LEN
from decent.wire.trust import (
    REVOCATION_KEY,
    REVOKED_PREFIX,
    SIGNATURE_KEY,
    Certificate,
    Revocation,
    find_revocation,
    find_signature,
    generate_private_key,
    issue_certificate,
    issue_revocation,
    node_xtr_id,
    public_key_of,
    register_digest,
    revocation_locator,
    revocation_name,
    sign,
    signature_locator,
    verify,
    without_signature,
)

PROPS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _key(label: bytes) -> bytes:
    """A fixed private key: no test depends on luck (Ed25519 signing is
    deterministic, so every signature below is too)."""
    return hashlib.sha256(label).digest()


MESH_KEY = _key(b"mesh authority")
MESH_PUB = public_key_of(MESH_KEY)
OTHER_MESH_PUB = public_key_of(_key(b"another mesh"))
NODE_KEY = _key(b"node-1")
NODE_PUB = public_key_of(NODE_KEY)
RLOC = IPv4Address("198.18.42.11")
EIDS = (
    Eid.prefix("10.42.0.7/32"),
    Eid.prefix("2001:db8:42::/48", 7),
    Eid.name("node-1"),
    Eid.sg("10.42.0.7/32", "239.1.1.1/32", 3),
)


def _cert(**kw: object) -> Certificate:
    fields: dict[str, object] = {
        "mesh": "lab",
        "name": "node-1",
        "public_key": NODE_PUB,
        "eids": EIDS,
        "not_after": 1_900_000_000,
        "serial": 0x0102030405060708,
    }
    fields.update(kw)
    return issue_certificate(MESH_KEY, **fields)  # type: ignore[arg-type]


def _rev(**kw: object) -> Revocation:
    fields: dict[str, object] = {
        "mesh": "lab",
        "name": "node-1",
        "public_key": NODE_PUB,
        "not_after": 1_900_000_000,
        "serial": 0x0102030405060708,
    }
    fields.update(kw)
    return issue_revocation(MESH_KEY, **fields)  # type: ignore[arg-type]


CERT = _cert()
CERT_BYTES = CERT.encode()
REV = _rev()
REV_BYTES = REV.encode()


def _record(*rlocs: IPv4Address, ttl: int = 3) -> MapRecord:
    return MapRecord(
        IPv4Address("10.42.0.7"), 32, tuple(Locator(r) for r in rlocs), ttl
    )


def _signed_register(
    records: tuple[MapRecord, ...], nonce: int = 0xA1A2A3A4A5A6A7A8
) -> MapRegister:
    """A node's Map-Register: its records signed, the signature locator
    added to the first record."""
    xtr_id = node_xtr_id(NODE_PUB)
    digest = register_digest(nonce, xtr_id, 1, records)
    loc = signature_locator(CERT_BYTES, sign(NODE_KEY, digest))
    first = dataclasses.replace(records[0], locators=(*records[0].locators, loc))
    return MapRegister(
        nonce, (first, *records[1:]), xtr_id=xtr_id, site_id=1, want_map_notify=True
    )


def _accepts(msg: MapRegister) -> bool:
    """A member's check of a signed registration (decent.peer.trust does more:
    expiry, revocation, which EIDs the certificate grants)."""
    found = find_signature(msg.records[0])
    assert found is not None
    cert_bytes, signature = found
    cert = Certificate.decode(cert_bytes)
    digest = register_digest(msg.nonce, msg.xtr_id, msg.site_id, msg.records)
    return (
        cert.verify(MESH_PUB)
        and msg.xtr_id == node_xtr_id(cert.public_key)
        and verify(cert.public_key, digest, signature)
    )


# ---------------------------------------------------------------- keys


def test_keys_are_raw_ed25519() -> None:
    private = generate_private_key()
    assert len(private) == 32
    assert len(public_key_of(private)) == 32
    assert generate_private_key() != private
    signature = sign(private, b"data")
    assert len(signature) == 64
    assert verify(public_key_of(private), b"data", signature)
    assert not verify(public_key_of(private), b"datA", signature)
    assert not verify(NODE_PUB, b"data", signature)


@pytest.mark.parametrize(
    ("public", "signature"),
    [
        (b"", bytes(64)),
        (bytes(31), bytes(64)),
        (bytes(33), bytes(64)),
        (bytes(32), bytes(64)),
        (b"\xff" * 32, b"\xff" * 64),
        (NODE_PUB, b""),
        (NODE_PUB, bytes(63)),
        (NODE_PUB, bytes(65)),
    ],
)
def test_verify_never_raises_on_bad_keys_or_signatures(
    public: bytes, signature: bytes
) -> None:
    assert verify(public, b"data", signature) is False


@PROPS
@given(st.binary(max_size=40), st.binary(max_size=70), st.binary(max_size=16))
def test_verify_of_garbage_is_false(public: bytes, sig: bytes, data: bytes) -> None:
    assert verify(public, data, sig) is False


def test_a_bad_private_key_is_local_misuse() -> None:
    with pytest.raises(ValueError, match="32"):
        sign(bytes(31), b"data")


def test_node_xtr_id_is_bound_to_the_key() -> None:
    expected = hashlib.sha256(b"decent xtr-id\0" + NODE_PUB).digest()[:16]
    assert node_xtr_id(NODE_PUB) == int.from_bytes(expected, "big")
    assert 0 <= node_xtr_id(NODE_PUB) < 1 << 128
    assert node_xtr_id(NODE_PUB) != node_xtr_id(MESH_PUB)
    msg = MapRegister(1, (_record(RLOC),), xtr_id=node_xtr_id(NODE_PUB))
    assert decode(msg.encode()) == msg


# ---------------------------------------------------------------- certificate


def test_certificate_layout() -> None:
    eid_texts = [
        b"[0]10.42.0.7/32",
        b"[7]2001:db8:42::/48",
        b"[0]'node-1'",
        b"[3](10.42.0.7/32, 239.1.1.1/32)",
    ]
    body = (
        b"DCR1"
        + b"\x03lab"
        + b"\x06node-1"
        + NODE_PUB
        + b"\x04"
        + b"".join(bytes([len(t)]) + t for t in eid_texts)
        + (1_900_000_000).to_bytes(8, "big")
        + bytes.fromhex("0102030405060708")
    )
    assert CERT.body() == body
    assert body + CERT.signature == CERT_BYTES
    assert verify(MESH_PUB, b"decent certificate v1\0" + body, CERT.signature)


def test_certificate_round_trips_with_eids_of_every_kind() -> None:
    decoded = Certificate.decode(CERT_BYTES)
    assert decoded == CERT
    assert decoded.eids == EIDS
    assert decoded.encode() == CERT_BYTES
    assert decoded.verify(MESH_PUB)


_labels = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=63
)
_eids = st.one_of(
    st.builds(
        lambda a, m, i: Eid(i, IPv4Address(a >> (32 - m) << (32 - m) if m else 0), m),
        st.integers(0, (1 << 32) - 1),
        st.integers(0, 32),
        st.integers(0, (1 << 32) - 1),
    ),
    st.builds(
        lambda a, m, i: Eid(i, IPv6Address(a >> (128 - m) << (128 - m) if m else 0), m),
        st.integers(0, (1 << 128) - 1),
        st.integers(0, 128),
        st.integers(0, 1000),
    ),
    st.builds(Eid.name, _labels, st.integers(0, 1000)),
)


@PROPS
@given(
    mesh=_labels,
    name=_labels,
    eids=st.lists(_eids, max_size=8).map(tuple),
    not_after=st.integers(0, (1 << 64) - 1),
    serial=st.integers(0, (1 << 64) - 1),
)
def test_every_certificate_round_trips_and_verifies(
    mesh: str, name: str, eids: tuple[Eid, ...], not_after: int, serial: int
) -> None:
    cert = _cert(mesh=mesh, name=name, eids=eids, not_after=not_after, serial=serial)
    data = cert.encode()
    assert Certificate.decode(data) == cert
    assert Certificate.decode(data).encode() == data
    assert cert.verify(MESH_PUB)
    assert not cert.verify(OTHER_MESH_PUB)


@pytest.mark.parametrize("cut", range(len(CERT_BYTES)))
def test_every_truncation_of_a_certificate_is_a_decode_error(cut: int) -> None:
    with pytest.raises(DecodeError):
        Certificate.decode(CERT_BYTES[:cut])


def test_a_trailing_byte_after_a_certificate_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        Certificate.decode(CERT_BYTES + b"\0")


def test_an_oversized_certificate_is_refused_before_parsing() -> None:
    with pytest.raises(DecodeError, match="exceeds"):
        Certificate.decode(CERT_BYTES + bytes(MAX_CERTIFICATE_LEN))


def _body_with(eid_texts: list[bytes], count: int | None = None) -> bytes:
    return (
        b"DCR1\x03lab\x06node-1"
        + NODE_PUB
        + bytes([len(eid_texts) if count is None else count])
        + b"".join(bytes([len(t)]) + t for t in eid_texts)
        + bytes(16)
        + bytes(64)
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"DCR2" + CERT_BYTES[4:], "magic"),
        (CERT_BYTES.replace(b"\x03lab", b"\x03l\x00b"), "mesh is not printable"),
        (CERT_BYTES.replace(b"\x03lab", b"\x00"), "mesh must be 1 to"),
        (CERT_BYTES.replace(b"\x06node-1", b"\x06node\xff1"), "name is not printable"),
        (_body_with([b"[0]10.42.0.7"]), "canonical"),
        (_body_with([b"[0]10.42.0.0/8"]), "canonical"),
        (_body_with([b"[00]10.42.0.7/32"]), "canonical"),
        (_body_with([b"[0]2001:0db8::/32"]), "canonical"),
        (_body_with([b"10.42.0.7/32"]), "canonical"),
        (_body_with([b"[0]10.42.0.7/33"]), "bad EID"),
        (_body_with([b"[0]nonsense"]), "bad EID"),
        (_body_with([b"[0]\x7f"]), "not printable"),
        (_body_with([b"[0]'n'"] * 65), "65 EIDs exceed"),
        (_body_with([], count=1), "no EID in"),
    ],
)
def test_malformed_certificates_are_decode_errors(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        Certificate.decode(data)


@PROPS
@given(st.binary(max_size=400))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for decoder in (Certificate.decode, Revocation.decode):
        with contextlib.suppress(DecodeError):
            decoder(data)


@PROPS
@given(st.data())
def test_mangled_certificates_decode_or_raise_decode_error(data: st.DataObject) -> None:
    raw = bytearray(CERT_BYTES)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        assert Certificate.decode(bytes(raw)).encode() == bytes(raw)


def _each_bit_flip(data: bytes) -> list[bytes]:
    return [
        data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]
        for i in range(len(data))
        for bit in range(8)
    ]


@pytest.mark.parametrize(
    ("data", "decoder"),
    [(CERT_BYTES, Certificate.decode), (REV_BYTES, Revocation.decode)],
    ids=["certificate", "revocation"],
)
def test_any_single_bit_change_fails_verification(
    data: bytes, decoder: Callable[[bytes], Certificate | Revocation]
) -> None:
    assert decoder(data).verify(MESH_PUB)
    for flipped in _each_bit_flip(data):
        with contextlib.suppress(DecodeError):  # refused outright is fine too
            assert not decoder(flipped).verify(MESH_PUB), flipped.hex()


def test_verification_needs_the_mesh_key() -> None:
    assert CERT.verify(MESH_PUB)
    assert not CERT.verify(OTHER_MESH_PUB)
    assert not CERT.verify(NODE_PUB)
    assert not CERT.verify(b"")
    assert not CERT.verify(bytes(32))
    assert not REV.verify(OTHER_MESH_PUB)


def test_signatures_are_domain_separated() -> None:
    # The same bytes signed as a revocation, or without the prefix, are no
    # certificate signature.
    as_revocation = sign(MESH_KEY, b"decent revocation v1\0" + CERT.body())
    bare = sign(MESH_KEY, CERT.body())
    for signature in (as_revocation, bare):
        assert not dataclasses.replace(CERT, signature=signature).verify(MESH_PUB)


def test_expiry_is_not_judged_here() -> None:
    expired = _cert(not_after=0)
    assert expired.verify(MESH_PUB)
    assert Certificate.decode(expired.encode()).not_after == 0


def test_fingerprint_names_the_exact_certificate() -> None:
    assert CERT.fingerprint() == hashlib.sha256(CERT_BYTES).digest()[:16]
    assert Certificate.decode(CERT_BYTES).fingerprint() == CERT.fingerprint()
    assert _cert(serial=2).fingerprint() != CERT.fingerprint()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"mesh": ""}, "mesh must be 1 to 63"),
        ({"name": "n" * 64}, "name must be 1 to 63"),
        ({"name": "node\n1"}, "printable"),
        ({"name": "nöde"}, "printable"),
        ({"public_key": bytes(31)}, "public key is 31 bytes"),
        ({"eids": (Eid.name("n\t"),)}, "not printable"),
        ({"eids": (Eid.name("n" * 300),)}, "longer than 255"),
        ({"eids": tuple(Eid.name(f"n{i}") for i in range(65))}, "more than 64"),
        ({"not_after": -1}, "not_after"),
        ({"serial": 1 << 64}, "serial"),
    ],
)
def test_certificates_refuse_bad_fields(change: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        _cert(**change)


def test_signatures_are_64_bytes() -> None:
    with pytest.raises(ValueError, match="signature is 63 bytes"):
        dataclasses.replace(CERT, signature=bytes(63))
    with pytest.raises(ValueError, match="signature is 65 bytes"):
        dataclasses.replace(REV, signature=bytes(65))
    with pytest.raises(ValueError, match="signature is 0 bytes"):
        signature_locator(CERT_BYTES, b"")
    with pytest.raises(ValueError, match="exceeds"):
        signature_locator(bytes(MAX_CERTIFICATE_LEN + 1), bytes(64))


def test_a_certificate_must_fit_a_signature_locator() -> None:
    # 64 long IPv6 EIDs: more than the signature locator's name can carry.
    many = tuple(
        Eid.prefix(f"2001:db8:ffff:ffff:ffff:ffff:ffff:{i:x}/128", 4_000_000_000)
        for i in range(1, MAX_CERTIFICATE_EIDS + 1)
    )
    with pytest.raises(ValueError, match="fit a signature locator"):
        _cert(eids=many)
    most = _cert(eids=many[:40])
    assert len(most.encode()) <= MAX_CERTIFICATE_LEN
    loc = signature_locator(most.encode(), bytes(64))
    msg = MapRegister(1, (_record(RLOC, ttl=3),))
    msg = dataclasses.replace(
        msg, records=(dataclasses.replace(msg.records[0], locators=(loc,)),)
    )
    assert decode(msg.encode()) == msg


# ---------------------------------------------------------------- revocation


def test_revocation_layout_and_round_trip() -> None:
    body = (
        b"DRV1\x03lab\x06node-1"
        + NODE_PUB
        + (1_900_000_000).to_bytes(8, "big")
        + bytes.fromhex("0102030405060708")
    )
    assert REV.body() == body
    assert body + REV.signature == REV_BYTES
    assert verify(MESH_PUB, b"decent revocation v1\0" + body, REV.signature)
    assert Revocation.decode(REV_BYTES) == REV
    assert REV.verify(MESH_PUB)


@pytest.mark.parametrize("cut", range(len(REV_BYTES)))
def test_every_truncation_of_a_revocation_is_a_decode_error(cut: int) -> None:
    with pytest.raises(DecodeError):
        Revocation.decode(REV_BYTES[:cut])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (REV_BYTES + b"\0", "trailing"),
        (REV_BYTES + bytes(200), "exceeds"),
        (CERT_BYTES[:4] + REV_BYTES[4:], "magic"),
        (REV_BYTES.replace(b"\x06node-1", b"\x06node\x001"), "not printable"),
    ],
)
def test_malformed_revocations_are_decode_errors(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        Revocation.decode(data)


def test_a_revocation_is_not_a_certificate() -> None:
    with pytest.raises(DecodeError, match="magic"):
        Certificate.decode(REV_BYTES)
    with pytest.raises(DecodeError, match="magic"):
        Revocation.decode(CERT_BYTES)


def test_revocation_name_is_the_serial_in_hex() -> None:
    assert revocation_name(0x0102030405060708) == "revoked-0102030405060708"
    assert revocation_name(1).startswith(REVOKED_PREFIX)
    with pytest.raises(ValueError, match="serial"):
        revocation_name(1 << 64)


# ---------------------------------------------------------------- registrations


def test_register_digest_layout() -> None:
    records = (_record(RLOC), _record(IPv4Address("198.18.42.12"), ttl=5))
    digest = register_digest(7, 0x1234, 9, records)
    assert digest == (
        b"decent register v1\0"
        + (7).to_bytes(8, "big")
        + (0x1234).to_bytes(16, "big")
        + (9).to_bytes(8, "big")
        + encode_record(records[0])
        + encode_record(records[1])
    )
    assert register_digest(7, None, 9, records) == register_digest(7, 0, 9, records)


def test_register_digest_covers_nonce_trailer_rlocs_and_ttls() -> None:
    records = (_record(RLOC),)
    base = register_digest(1, 2, 3, records)
    assert register_digest(2, 2, 3, records) != base
    assert register_digest(1, 3, 3, records) != base
    assert register_digest(1, 2, 4, records) != base
    assert register_digest(1, 2, 3, (_record(IPv4Address("192.0.2.66")),)) != base
    assert register_digest(1, 2, 3, (_record(RLOC, ttl=4),)) != base
    assert register_digest(1, 2, 3, (*records, *records)) != base


def test_register_digest_leaves_signature_locators_out() -> None:
    records = (_record(RLOC),)
    signed = _signed_register(records).records
    assert register_digest(1, 2, 3, signed) == register_digest(1, 2, 3, records)


def test_signature_locator_shape() -> None:
    loc = signature_locator(CERT_BYTES, bytes(range(64)))
    assert (loc.priority, loc.weight, loc.m_priority, loc.m_weight) == (255, 0, 255, 0)
    assert not loc.local
    assert not loc.reachable
    assert loc.rloc is None  # never an address to encapsulate to
    assert isinstance(loc.address, KeyValue)
    assert loc.address.key == DistinguishedName(SIGNATURE_KEY)
    assert isinstance(loc.address.value, DistinguishedName)
    blob = base64.b64decode(loc.address.value.name)
    assert blob == len(CERT_BYTES).to_bytes(2, "big") + CERT_BYTES + bytes(range(64))


def test_signed_map_register_round_trips_and_verifies() -> None:
    records = (_record(RLOC),)
    msg = _signed_register(records)
    decoded = decode(msg.encode())
    assert decoded == msg
    assert isinstance(decoded, MapRegister)
    assert find_signature(decoded.records[0]) is not None
    assert without_signature(decoded.records[0]) == records[0]
    assert _accepts(decoded)


def test_twenty_records_are_signed_as_one() -> None:
    records = tuple(
        MapRecord(IPv4Address(f"10.42.{i}.0"), 24, (Locator(RLOC),), 3)
        for i in range(20)
    )
    msg = _signed_register(records)
    decoded = decode(msg.encode())
    assert isinstance(decoded, MapRegister)
    assert _accepts(decoded)
    assert tuple(without_signature(r) for r in decoded.records) == records


def test_a_captured_signature_does_not_fit_other_rlocs_ttls_or_nonces() -> None:
    msg = _signed_register((_record(RLOC),))
    first = msg.records[0]
    sig_loc = first.locators[-1]
    other_rloc = dataclasses.replace(
        first, locators=(Locator(IPv4Address("192.0.2.66")), sig_loc)
    )
    for forged in (
        dataclasses.replace(msg, records=(other_rloc,)),
        dataclasses.replace(msg, records=(dataclasses.replace(first, ttl=1440),)),
        dataclasses.replace(msg, nonce=msg.nonce + 1),
        dataclasses.replace(msg, site_id=2),
    ):
        assert not _accepts(forged)


def test_a_registration_is_bound_to_its_certificate_key() -> None:
    msg = _signed_register((_record(RLOC),))
    assert not _accepts(dataclasses.replace(msg, xtr_id=node_xtr_id(MESH_PUB)))


def test_without_signature_removes_every_signature_locator() -> None:
    record = _record(RLOC)
    loc = signature_locator(CERT_BYTES, bytes(64))
    doubled = dataclasses.replace(record, locators=(loc, *record.locators, loc))
    assert without_signature(doubled) == record
    assert without_signature(record) is record


def test_find_signature_is_none_without_one() -> None:
    assert find_signature(_record(RLOC)) is None
    assert find_signature(MapRecord(IPv4Address("10.0.0.0"), 8)) is None
    other = Locator(KeyValue(DistinguishedName("other"), DistinguishedName("x")))
    assert find_signature(dataclasses.replace(_record(), locators=(other,))) is None


def _kv(value: object, key: str = SIGNATURE_KEY) -> MapRecord:
    loc = Locator(KeyValue(DistinguishedName(key), value), 255, 0)  # type: ignore[arg-type]
    return MapRecord(IPv4Address("10.42.0.7"), 32, (loc,))


def _b64(blob: bytes) -> DistinguishedName:
    return DistinguishedName(base64.b64encode(blob).decode())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (RLOC, "not a name"),
        (DistinguishedName("not base64!"), "not base64"),
        (DistinguishedName("QQ"), "not base64"),  # padding missing
        (DistinguishedName("QR=="), "not canonical"),  # padding bits set
        (_b64(b"\x00"), "need 2 bytes"),
        (_b64(b"\x00\x05abc"), "need 5 bytes"),
        (_b64(b"\x00\x00" + bytes(63)), "need 64 bytes"),
        (_b64(b"\x00\x00" + bytes(65)), "trailing"),
    ],
)
def test_a_malformed_signature_locator_is_a_decode_error(
    value: object, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        find_signature(_kv(value))


def test_revocation_locator_round_trips() -> None:
    loc = revocation_locator(REV)
    assert (loc.priority, loc.weight, loc.reachable) == (255, 0, False)
    assert isinstance(loc.address, KeyValue)
    assert loc.address.key == DistinguishedName(REVOCATION_KEY)
    record = MapRecord(DistinguishedName(revocation_name(REV.serial)), 0, (loc,), 3)
    msg = MapRegister(5, (record,))
    decoded = decode(msg.encode())
    assert isinstance(decoded, MapRegister)
    assert find_revocation(decoded.records[0]) == REV
    assert find_revocation(_record(RLOC)) is None
    assert find_signature(decoded.records[0]) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (RLOC, "not a name"),
        (DistinguishedName("%%%%"), "not base64"),
        (_b64(REV_BYTES[:-1]), "need 64 bytes"),
        (_b64(CERT_BYTES), "magic"),
    ],
)
def test_a_malformed_revocation_locator_is_a_decode_error(
    value: object, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        find_revocation(_kv(value, REVOCATION_KEY))


def test_signed_map_register_and_revocation_dissect_cleanly() -> None:
    from tests.wire.tshark import MAP_REGISTER_T_BIT, assert_clean, missing_tools

    if missing_tools():
        pytest.skip("tshark and text2pcap are needed (apt-get install tshark)")
    revocation = MapRecord(
        DistinguishedName(revocation_name(REV.serial)),
        8 * len(revocation_name(REV.serial)),
        (revocation_locator(REV),),
        3,
    )
    msg = _signed_register((_record(RLOC), revocation))
    msg = dataclasses.replace(msg, ttl_timeout=True).signed(b"group-key")
    assert_clean(
        [(msg.encode(), 4342)],
        allow={
            MAP_REGISTER_T_BIT: "tshark 4.0 does not know the RFC 9301 Map-Register "
            "T bit"
        },
    )
