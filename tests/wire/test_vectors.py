"""Golden vectors both ways: decode == expected, expected.encode() == bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decent.wire import DecodeError, check_auth, decode
from decent.wire.data import decapsulate, encapsulate
from decent.wire.ip import decode_udp_packet
from decent.wire.transport import decode_transport
from tests.wire.expected import EXPECTED
from tests.wire.vectors import Vector, load_vectors

VECTORS = load_vectors()
E_VECTORS = {n: v for n, v in VECTORS.items() if n.startswith("e")}
#: Vectors of TCP stream PDUs (reliable transport), not UDP datagrams.
TRANSPORT = {"e09_reliable_transport_registration"}
CONTROL = [v for v in E_VECTORS.values() if v.port == 4342 and v.name not in TRANSPORT]


def _decode_any(v: Vector) -> object:
    """Decode a vector as what its port carries."""
    if v.name in TRANSPORT:
        msg, length = decode_transport(v.data)
        assert length == len(v.data)
        return msg
    if v.port == 4342:
        return decode(v.data)
    header, inner = decapsulate(v.data)
    packet = decode_udp_packet(inner)
    return (header, packet, decode(packet.payload))


def test_every_worked_example_has_an_expected_object() -> None:
    assert sorted(E_VECTORS) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_vector_decodes_to_the_expected_object(name: str) -> None:
    assert _decode_any(VECTORS[name]) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_object_encodes_to_the_golden_bytes(name: str) -> None:
    expected = EXPECTED[name]
    if isinstance(expected, tuple):
        header, packet, message = expected
        assert packet.payload == message.encode()
        data = encapsulate(header, packet.encode())
    else:
        data = expected.encode()  # type: ignore[attr-defined]
    assert data.hex() == VECTORS[name].data.hex()


@pytest.mark.parametrize(
    "name",
    [
        "e01_map_register_sha256",
        "e01s_map_register_sha1",
        "e01t16_map_register_sha256_trunc16",
        "e01t12_map_register_sha1_trunc12",
        "e02_map_notify",
        "e06_membership_map_register",
        "e08_map_notify_ack",
    ],
)
def test_golden_macs_verify_with_the_notes_key(name: str) -> None:
    assert check_auth(VECTORS[name].data, b"password")


@pytest.mark.parametrize("vector", CONTROL, ids=lambda v: v.name)
def test_every_truncation_is_a_decode_error(vector: Vector) -> None:
    for cut in range(len(vector.data)):
        with pytest.raises(DecodeError):
            decode(vector.data[:cut])


@pytest.mark.parametrize("vector", CONTROL, ids=lambda v: v.name)
def test_a_trailing_byte_is_a_decode_error(vector: Vector) -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode(vector.data + b"\x00")


def test_transport_pdu_truncations_and_bad_markers_fail() -> None:
    data = VECTORS["e09_reliable_transport_registration"].data
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode_transport(data[:cut])
    with pytest.raises(DecodeError, match="end marker"):
        decode_transport(data[:-1] + b"\x00")
    with pytest.raises(DecodeError, match="shorter than its header"):
        decode_transport(bytes.fromhex("0011000800000001"))
    # A stream buffer may hold the next PDU already: only the first is read.
    msg, length = decode_transport(data + data)
    assert (msg.message_id, length) == (1, len(data))
    assert decode(msg.data) == EXPECTED["e01_map_register_sha256"]


def test_her_packet_truncations_fail_at_some_layer() -> None:
    data = VECTORS["e07_her_data_membership"].data
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            _decode_any(Vector("cut", data[:cut], 4341, False, "", None))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(CONTROL), st.data())
def test_mutations_of_golden_vectors_decode_or_raise_decode_error(
    vector: Vector, data: st.DataObject
) -> None:
    raw = bytearray(vector.data)
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        decode(bytes(raw))
