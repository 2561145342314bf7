"""Control-message codec: round trips, hostile input, flag layout, the fast path."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from ipaddress import IPv4Address, IPv6Address
from typing import cast

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from decent.wire import (
    NO_ADDRESS,
    DecodeError,
    EncapsulatedControlMessage,
    MapNotify,
    MapNotifyAck,
    MapRecord,
    MapRegister,
    MapReply,
    MapRequest,
    RequestRecord,
    decode,
    map_notify_for,
)
from decent.wire.afi import DistinguishedName
from decent.wire.buffer import Reader
from decent.wire.control import _plain_map_request
from tests.wire import strategies as ws

A = IPv4Address("192.0.2.1")
PROPS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPS
@given(ws.inner_messages)
def test_every_message_round_trips(msg: object) -> None:
    assert decode(msg.encode()) == msg  # type: ignore[attr-defined]


@PROPS
@given(ws.ecms())
def test_every_ecm_round_trips(msg: EncapsulatedControlMessage) -> None:
    assert decode(msg.encode()) == msg


@PROPS
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


@PROPS
@given(st.sampled_from(range(1, 9)), st.binary(max_size=200))
def test_random_bodies_of_every_type_decode_or_raise_decode_error(
    msg_type: int, body: bytes
) -> None:
    with contextlib.suppress(DecodeError):
        decode(bytes([msg_type << 4]) + body)


@PROPS
@given(ws.inner_messages, st.data())
def test_mutated_messages_decode_or_raise_decode_error(
    msg: object, data: st.DataObject
) -> None:
    raw = bytearray(msg.encode())  # type: ignore[attr-defined]
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        decode(bytes(raw))


@PROPS
@given(ws.inner_messages)
def test_every_truncation_of_a_generated_message_is_a_decode_error(
    msg: object,
) -> None:
    # LISP-SEC data is kept opaque to the end of a Map-Reply, so only its
    # absence can be detected; every other field is length-checked.
    assume(not (isinstance(msg, MapReply) and msg.security_data))
    raw = msg.encode()  # type: ignore[attr-defined]
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            decode(raw[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        decode(raw + b"\x00")


def _request(**kw: object) -> MapRequest:
    base: dict[str, object] = {
        "nonce": 1,
        "records": (RequestRecord(IPv4Address("10.0.0.1"), 32),),
        "itr_rlocs": (A,),
    }
    base.update(kw)
    return MapRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "mask"),
    [
        ({"authoritative": True}, 0x08000000),
        ({"map_reply": MapRecord(A, 32)}, 0x04000000),
        ({"probe": True}, 0x02000000),
        ({"smr": True}, 0x01000000),
        ({"pitr": True}, 0x00800000),
        ({"smr_invoked": True}, 0x00400000),
        ({"xtr_id": 7}, 0x00100000),
        ({"local_xtr": True}, 0x00004000),
        ({"dont_map_reply": True}, 0x00002000),
    ],
)
def test_map_request_flags_sit_where_rfc_9301_puts_them(
    kw: dict[str, object], mask: int
) -> None:
    first = int.from_bytes(_request(**kw).encode()[:4], "big")
    assert first == (1 << 28) | mask | 1


def test_map_request_counts_itr_rlocs_of_both_families() -> None:
    rlocs = (A, IPv6Address("2001:db8::1"), IPv4Address("198.51.100.1"))
    raw = _request(itr_rlocs=rlocs).encode()
    assert (int.from_bytes(raw[:4], "big") >> 8) & 0x1F == 2
    assert decode(raw) == _request(itr_rlocs=rlocs)


def test_pubsub_request_sets_the_record_n_bit_and_trailer() -> None:
    rec = RequestRecord(IPv4Address("10.0.0.0"), 8, notify=True)
    raw = _request(records=(rec,), xtr_id=1 << 127, site_id=9).encode()
    assert raw[-24:] == (1 << 127).to_bytes(16, "big") + (9).to_bytes(8, "big")
    assert raw[-24 - 8] == 0x80


@pytest.mark.parametrize(
    ("kw", "mask"),
    [
        ({"proxy_reply": True}, 0x08000000),
        ({"security_capable": True}, 0x04000000),
        ({"xtr_id": 1}, 0x02000000),
        ({"reliable": True}, 0x00002000),
        ({"eid_notify": True}, 0x00001000),
        ({"ttl_timeout": True}, 0x00000800),
        ({"merge": True}, 0x00000400),
        ({"want_map_notify": True}, 0x00000100),
    ],
)
def test_map_register_flags_sit_where_rfc_9301_puts_them(
    kw: dict[str, object], mask: int
) -> None:
    msg = MapRegister(nonce=1, records=(), **kw)  # type: ignore[arg-type]
    assert int.from_bytes(msg.encode()[:4], "big") == (3 << 28) | mask


# Bit 18: the reliable-transport r bit, and lispers.net's encrypted-body e bit
# (protocol-notes gotcha 7).
#        type|flags|count  nonce              key alg auth-len
R_BIT = "30 00 20 00       00 00 00 00 00 00 00 01  00 00 0000"


def test_map_register_bit_18_decodes_as_the_reliable_transport_r_bit() -> None:
    raw = bytes.fromhex(R_BIT)
    assert decode(raw) == MapRegister(nonce=1, records=(), reliable=True)
    assert MapRegister(nonce=1, records=(), reliable=True).encode() == raw


@PROPS
@given(ws.map_registers())
def test_every_reliable_map_register_round_trips(msg: MapRegister) -> None:
    reliable = dataclasses.replace(msg, reliable=True)
    assert decode(reliable.encode()) == reliable


# A lispers.net e-bit Map-Register: P, I, M, r/e set, one record, then the
# ChaCha20 ciphertext of everything after the first word (fixed bytes here).
_CIPHERTEXT = hashlib.sha256(b"lispers.net ciphertext").digest() * 3


def test_lispers_encrypted_map_register_is_refused_naming_the_e_bit() -> None:
    with pytest.raises(DecodeError, match=r"lispers\.net encrypted body"):
        decode(bytes.fromhex("3a002101") + _CIPHERTEXT)


def test_a_bit_18_register_failing_on_trailing_bytes_names_the_e_bit() -> None:
    raw = bytes.fromhex(R_BIT) + b"\x00"
    with pytest.raises(DecodeError, match=r"trailing.*lispers\.net encrypted body"):
        decode(raw)


def test_a_failure_without_bit_18_does_not_mention_encryption() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(bytes.fromhex("3a000101") + _CIPHERTEXT)
    assert "lispers.net" not in str(caught.value)


@PROPS
@given(st.binary(max_size=120))
def test_bit_18_registers_decode_or_fail_naming_the_e_bit(body: bytes) -> None:
    try:
        msg = decode(bytes.fromhex("30002000") + body)
    except DecodeError as exc:
        reason = str(exc)
    else:
        assert isinstance(msg, MapRegister)
        assert msg.reliable
        return
    assert "lispers.net encrypted body" in reason


def test_the_map_notify_for_a_reliable_register_has_no_bit_18() -> None:
    # RFC 9301 5.7: Map-Notify bit 18 is reserved; the r bit stays behind.
    register = MapRegister(
        nonce=7,
        records=(MapRecord(A, 32),),
        alg_id=2,
        auth_data=bytes(32),
        want_map_notify=True,
        reliable=True,
    ).signed(b"key")
    notify = map_notify_for(register.encode(), b"key")
    assert int.from_bytes(notify[:4], "big") == (4 << 28) | 1
    assert decode(notify) == MapNotify(7, register.records).signed(b"key")


def test_map_reply_probe_and_echo_nonce_bits() -> None:
    raw = MapReply(5, (), probe=True, echo_nonce=True).encode()
    assert raw[:4] == bytes.fromhex("2c000000")


def test_map_reply_security_bit_without_data_is_refused() -> None:
    with pytest.raises(DecodeError, match="LISP-SEC"):
        decode(bytes.fromhex("22000000") + bytes(8))


def test_notify_and_notify_ack_are_distinct_types() -> None:
    n = MapNotify(1, ())
    ack = MapNotifyAck(1, ())
    assert n != cast(object, ack)
    assert isinstance(decode(ack.encode()), MapNotifyAck)
    assert ack.encode()[0] == 0x50


def test_unknown_message_type_is_refused() -> None:
    with pytest.raises(DecodeError, match="type 9"):
        decode(bytes.fromhex("90000000") + bytes(8))


def test_ecm_inside_ecm_is_refused() -> None:
    inner = EncapsulatedControlMessage(_request(), A, A)
    with pytest.raises(ValueError, match="ECM"):
        EncapsulatedControlMessage(inner, A, A)  # type: ignore[arg-type]
    outer = bytes(4) + inner.encode()
    raw = bytes([0x80, 0, 0, 0]) + inner._packet(inner.encode()).encode()
    assert outer != raw
    with pytest.raises(DecodeError, match="ECM inside an ECM"):
        decode(raw)


def test_ecm_with_lisp_sec_is_refused() -> None:
    raw = bytearray(EncapsulatedControlMessage(_request(), A, A).encode())
    raw[0] |= 0x08
    with pytest.raises(DecodeError, match="LISP-SEC"):
        decode(bytes(raw))


def test_ecm_carries_ipv6_inner_headers() -> None:
    v6 = IPv6Address("2001:db8::5")
    msg = EncapsulatedControlMessage(_request(), v6, IPv6Address("2001:db8::9"), 61000)
    raw = msg.encode()
    assert raw[4] >> 4 == 6
    assert decode(raw) == msg


# -------------------------------------------- the Map-Request fast path


def _general_decode(raw: bytes) -> MapRequest:
    """What the cursor-based decoder makes of raw, bypassing the fast path."""
    r = Reader(raw)
    msg = MapRequest.decode_body(r.u32(), r)
    r.finish()
    return msg


ip_requests = st.builds(
    MapRequest,
    ws.uint(64),
    st.lists(
        st.builds(RequestRecord, ws.ip, ws.uint(8), st.booleans()),
        min_size=1,
        max_size=3,
    ).map(tuple),
    st.lists(ws.ip, min_size=1, max_size=4).map(tuple),
    st.just(NO_ADDRESS) | ws.ip,
    st.none(),
    *[st.booleans()] * 7,
).flatmap(lambda m: ws.trailers.map(lambda t: ws._with_trailer(m, t)))


@PROPS
@given(ip_requests)
def test_fast_path_decodes_every_ip_map_request(msg: MapRequest) -> None:
    assert _plain_map_request(msg.encode()) == msg


@PROPS
@given(ws.map_requests, st.data())
def test_fast_path_agrees_with_the_general_decoder_or_declines(
    msg: MapRequest, data: st.DataObject
) -> None:
    raw = bytearray(msg.encode())
    for _ in range(data.draw(st.integers(0, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw) + 1))
    candidate = bytes(raw[:cut]) + (b"\x00" if cut > len(raw) else b"")
    fast = _plain_map_request(candidate)
    if fast is not None:
        assert fast == _general_decode(candidate)


def test_fast_path_declines_what_it_does_not_cover() -> None:
    name_eid = _request(records=(RequestRecord(DistinguishedName("n1"), 16),))
    assert _plain_map_request(name_eid.encode()) is None
    assert decode(name_eid.encode()) == name_eid
