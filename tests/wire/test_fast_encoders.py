"""The hand-spliced encoders of the hot paths agree with the general encoders."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decent.wire import (
    AlgorithmId,
    MapRegister,
    MapReply,
    encode_record,
    map_register_bytes,
    map_reply_bytes,
    sign_bytes,
)
from tests.wire.strategies import map_records, map_registers, uint

KEY = b"agreement-key"


@settings(max_examples=200)
@given(uint(64), st.lists(map_records, max_size=4), st.booleans())
def test_map_reply_bytes_is_map_reply_encode(nonce, records, probe):
    spliced = map_reply_bytes(nonce, [encode_record(r) for r in records], probe)
    assert spliced == MapReply(nonce, tuple(records), probe).encode()


@settings(max_examples=200)
@given(map_registers())
def test_map_register_bytes_is_map_register_encode(msg):
    head = dataclasses.replace(msg, records=())
    body = b"".join(encode_record(r) for r in msg.records)
    assert map_register_bytes(head, len(msg.records), body) == msg.encode()


@settings(max_examples=100)
@given(map_registers())
def test_spliced_then_signed_is_signed_then_encoded(msg):
    alg = AlgorithmId.HMAC_SHA_256_128
    # signed() sends Key ID 0 (protocol notes, gotcha 2).
    msg = dataclasses.replace(msg, key_id=0, alg_id=alg, auth_data=bytes(32))
    head = dataclasses.replace(msg, records=())
    body = b"".join(encode_record(r) for r in msg.records)
    spliced = sign_bytes(map_register_bytes(head, len(msg.records), body), KEY)
    assert spliced == msg.signed(KEY, alg).encode()


def test_the_record_count_must_fit_its_byte():
    with pytest.raises(ValueError, match="records do not fit"):
        map_reply_bytes(1, [b""] * 256)
    head = MapRegister(1, ())
    with pytest.raises(ValueError, match="without records"):
        map_register_bytes(head, 256, b"")
