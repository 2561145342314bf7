"""A reliable-transport session's stream against a hostile peer: framing, bounds."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from decent.peer.config import Limits
from decent.peer.transport.session import Session
from decent.wire.transport import (
    ErrorCode,
    ErrorNotification,
    TransportType,
    decode_transport,
    parse_body,
    pdu,
)
from tests.peer.streams import reliable_mesh

PEER = IPv4Address("198.18.42.12")
ACK = bytes.fromhex("20 0001 0a010000")  # Registration ACK body: 10.1.0.0/32


def session(**limits: float) -> Session:
    return Session(1, PEER, False, Limits(**limits), 0.0)  # type: ignore[arg-type]


def errors_sent(s: Session) -> list[ErrorNotification]:
    data, out = s.data_to_send(), []
    while data:
        msg, n = decode_transport(data)
        body = parse_body(msg)
        assert isinstance(body, ErrorNotification)
        out.append(body)
        data = data[n:]
    return out


def test_pdus_split_anywhere_across_reads_are_reassembled() -> None:
    s = session()
    stream = b"".join(pdu(TransportType.REGISTRATION_ACK, i, ACK) for i in range(1, 4))
    got = []
    for i in range(0, len(stream), 5):
        got += s.receive_data(stream[i : i + 5], 0.0)
    assert [m.message_id for m in got] == [1, 2, 3]
    assert s.state == "open"


def test_a_bad_end_marker_is_answered_with_an_error_notification_and_a_close() -> None:
    s = session()
    bad = bytearray(pdu(TransportType.REGISTRATION_ACK, 5, ACK))
    bad[-1] ^= 0xFF
    assert s.receive_data(bytes(bad), 0.0) == []
    assert s.state == "closed"
    assert s.reason == "end-marker"
    (note,) = errors_sent(s)
    assert (note.code, note.offending_type, note.offending_id) == (
        ErrorCode.MALFORMED,
        TransportType.REGISTRATION_ACK,
        5,
    )


def test_a_length_past_the_frame_limit_closes_before_any_of_it_is_held() -> None:
    s = session(max_frame=16_384)
    head = (17).to_bytes(2, "big") + (65_535).to_bytes(2, "big") + bytes(4)
    s.receive_data(head, 0.0)
    assert (s.state, s.reason) == ("closed", "bad-length")
    assert errors_sent(s)[0].code == ErrorCode.TOO_LARGE


def test_a_length_too_short_for_a_pdu_closes() -> None:
    s = session()
    s.receive_data(b"\x00\x11\x00\x04" + bytes(8), 0.0)
    assert (s.state, s.reason) == ("closed", "bad-length")
    assert errors_sent(s)[0].code == ErrorCode.MALFORMED


def test_a_partial_frame_costs_at_most_the_frame_limit() -> None:
    s = session(max_frame=2_000)
    s.receive_data((17).to_bytes(2, "big") + (2_000).to_bytes(2, "big"), 0.0)
    for _ in range(100):
        s.receive_data(b"\x00" * 19, 0.0)
    assert s.state == "open"
    assert len(s._rx) <= 2_000


def test_a_flood_of_tiny_frames_closes_the_session() -> None:
    s = session(session_frame_rate=100.0, session_frame_burst=200.0)
    frame = pdu(TransportType.REGISTRATION_ACK, 1, ACK)
    # Nothing of the read that broke the rule is taken, not even its first 200.
    assert s.receive_data(frame * 1_000, 0.0) == []
    assert (s.state, s.reason) == ("closed", "flood")
    assert errors_sent(s)[0].code == ErrorCode.RATE


def test_what_we_queue_for_a_peer_that_does_not_read_is_bounded() -> None:
    s = session(session_write_queue=10_000)
    sent = 0
    while s.send(TransportType.REGISTRATION_ACK, bytes(1_000), 0.0):
        sent += 1
    assert sent == 9
    assert (s.state, s.reason) == ("closed", "write-queue-full")
    assert s.queued() <= 10_000


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_byte_stream_is_taken_without_raising_and_within_bounds(
    chunks: list[bytes],
) -> None:
    s = session(max_frame=1_500)
    for chunk in chunks:
        s.receive_data(chunk, 0.0)
        assert len(s._rx) < 1_500 + 300
    assert s.state in ("open", "closed")


# ---------------------------------------------------------------- through the role


def test_an_unknown_type_gets_an_error_notification_and_the_session_lives_on() -> None:
    mesh = reliable_mesh(2, 1)
    mesh.run(20)
    n1, n2 = mesh.nodes
    pipe = mesh.pipe(n2, n1)
    n1.reliable.receive(pipe.server_sid, pdu(99, 4, b"junk"), mesh.net.now)
    session_ = n1.reliable.sessions[pipe.server_sid]
    assert session_.state == "up"
    data, reason = n1.reliable.drain(pipe.server_sid)
    assert reason is None
    (note,) = [parse_body(decode_transport(data)[0])]
    assert isinstance(note, ErrorNotification)
    assert (note.code, note.offending_type, note.offending_id) == (
        ErrorCode.UNKNOWN_TYPE,
        99,
        4,
    )


def test_a_stream_of_unusable_pdus_ends_in_a_reset() -> None:
    mesh = reliable_mesh(2, 1)
    mesh.run(20)
    n1, n2 = mesh.nodes
    pipe = mesh.pipe(n2, n1)
    junk = b"".join(pdu(99, i, b"x") for i in range(1, 40))
    n1.reliable.receive(pipe.server_sid, junk, mesh.net.now)
    assert pipe.server_sid in n1.reliable.pending()
    _, reason = n1.reliable.drain(pipe.server_sid)
    assert reason == "too-many-errors"
    assert pipe.server_sid not in n1.reliable.sessions


def test_garbage_from_a_peer_changes_no_registration() -> None:
    mesh = reliable_mesh(2, 2)
    mesh.run(20)
    n1, n2 = mesh.nodes
    before = [(e.eid, tuple(e.children)) for e in n1.registrations()]
    pipe = mesh.pipe(n2, n1)
    n1.reliable.receive(pipe.server_sid, bytes(range(256)) * 4, mesh.net.now)
    assert [(e.eid, tuple(e.children)) for e in n1.registrations()] == before
