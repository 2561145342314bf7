"""Per-variant golden vectors (v*.hex): decode, encode and truncation checks."""

from __future__ import annotations

import contextlib
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decent.wire import (
    DecodeError,
    MapNotify,
    MapNotifyAck,
    MapRegister,
    check_auth,
    decode,
)
from decent.wire.data import DATA_HEADER_LEN, decapsulate, encapsulate
from tests.wire.expected_variants import CONTROL, DATA, KEY, VARIANTS
from tests.wire.vectors import Vector, load_vectors

VECTORS = {n: v for n, v in load_vectors().items() if n.startswith("v")}
CONTROL_VECTORS = [VECTORS[n] for n in sorted(CONTROL)]
DATA_VECTORS = [VECTORS[n] for n in sorted(DATA)]

#: The receive-only forms (`# emit: no`); every other variant is one we send.
RECEIVE_ONLY = frozenset(
    {
        "v21_map_register_no_auth",
        "v23_map_register_key_id_1",
        "v30_map_referral_signature",
        "v32_map_register_multicast_info_padded",
        "v33_map_reply_rle_with_names",
        "v35_map_reply_unknown_lcaf_geo",
    }
)

_AUTH_OFFSET = 16
_DIGESTS = {1: hashlib.sha1, 2: hashlib.sha256}
Authenticated = MapRegister | MapNotify | MapNotifyAck
SIGNED = sorted(
    n
    for n, m in CONTROL.items()
    if isinstance(m, Authenticated) and m.alg_id in _DIGESTS
)


def test_every_variant_vector_has_an_expected_object() -> None:
    assert sorted(VECTORS) == sorted(VARIANTS)
    assert not set(CONTROL) & set(DATA)


def test_ports_match_the_kind_of_expected_object() -> None:
    assert {n for n, v in VECTORS.items() if v.port == 4341} == set(DATA)
    assert {n for n, v in VECTORS.items() if v.port == 4342} == set(CONTROL)


def test_emit_flags_mark_exactly_the_receive_only_forms() -> None:
    assert {n for n, v in VECTORS.items() if not v.emit} == RECEIVE_ONLY


@pytest.mark.parametrize("name", sorted(CONTROL))
def test_control_vector_decodes_to_the_expected_message(name: str) -> None:
    assert decode(VECTORS[name].data) == CONTROL[name]


@pytest.mark.parametrize("name", sorted(CONTROL))
def test_expected_message_encodes_to_the_golden_bytes(name: str) -> None:
    assert CONTROL[name].encode().hex() == VECTORS[name].data.hex()


@pytest.mark.parametrize("name", sorted(DATA))
def test_data_vector_decapsulates_to_the_expected_header_and_packet(
    name: str,
) -> None:
    assert decapsulate(VECTORS[name].data) == DATA[name]


@pytest.mark.parametrize("name", sorted(DATA))
def test_expected_header_and_packet_encapsulate_to_the_golden_bytes(
    name: str,
) -> None:
    header, inner = DATA[name]
    assert encapsulate(header, inner).hex() == VECTORS[name].data.hex()


@pytest.mark.parametrize("name", SIGNED)
def test_golden_mac_is_the_full_hmac_of_the_zeroed_message(name: str) -> None:
    data = VECTORS[name].data
    message = CONTROL[name]
    assert isinstance(message, Authenticated)
    end = _AUTH_OFFSET + len(message.auth_data)
    zeroed = data[:_AUTH_OFFSET] + bytes(end - _AUTH_OFFSET) + data[end:]
    # Independent of decent.wire.auth: the stdlib HMAC over the whole message.
    full = hmac.new(KEY, zeroed, _DIGESTS[message.alg_id]).digest()
    assert data[_AUTH_OFFSET:end] == full
    assert check_auth(data, KEY)


@pytest.mark.parametrize(
    "name", [n for n in SIGNED if VECTORS[n].emit], ids=lambda n: n
)
def test_emitted_authenticated_vector_is_what_signed_produces(name: str) -> None:
    message = CONTROL[name]
    assert isinstance(message, Authenticated)
    assert message.key_id == 0
    assert message.signed(KEY, message.alg_id) == message


@pytest.mark.parametrize("vector", CONTROL_VECTORS, ids=lambda v: v.name)
def test_every_truncation_is_a_decode_error(vector: Vector) -> None:
    for cut in range(len(vector.data)):
        with pytest.raises(DecodeError):
            decode(vector.data[:cut])


@pytest.mark.parametrize("vector", CONTROL_VECTORS, ids=lambda v: v.name)
def test_a_trailing_byte_is_a_decode_error(vector: Vector) -> None:
    with pytest.raises(DecodeError):
        decode(vector.data + b"\x00")


@pytest.mark.parametrize("vector", DATA_VECTORS, ids=lambda v: v.name)
def test_a_cut_data_header_is_a_decode_error(vector: Vector) -> None:
    # Up to and including a bare header: nothing to decapsulate.
    for cut in range(DATA_HEADER_LEN + 1):
        with pytest.raises(DecodeError):
            decapsulate(vector.data[:cut])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CONTROL_VECTORS), st.data())
def test_mutated_variant_decodes_or_raises_decode_error(
    vector: Vector, data: st.DataObject
) -> None:
    raw = bytearray(vector.data)
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        decode(bytes(raw))
