"""Reliable-transport bodies: golden PDUs, round trips, hostile input, tshark."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import re
import shutil
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decent.wire import (
    MAX_PDU,
    DecodeError,
    DistinguishedName,
    Eid,
    ErrorCode,
    ErrorNotification,
    InstanceId,
    MappingNotification,
    MapRegister,
    MapRequest,
    NackReason,
    RefreshScope,
    RegistrationAck,
    RegistrationNack,
    RegistrationRefresh,
    RequestRecord,
    TransportBody,
    TransportMessage,
    TransportType,
    decode_transport,
    parse_body,
    pdu,
)
from tests.wire import strategies as ws
from tests.wire.expected import E1, E1_RECORD, XTR_ID
from tests.wire.tshark import TcpDissection, TcpPdu, dissect_tcp_stream
from tests.wire.vectors import load_vectors

PROPS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
V4_PREFIX = Eid.prefix("10.1.0.0/16")
V6_PREFIX = Eid.prefix("2001:db8:1::/48")
IID_PREFIX = Eid.prefix("10.1.0.0/16", iid=1000)
IID_V6_PREFIX = Eid.prefix("2001:db8::/32", iid=7)
A = IPv4Address("192.0.2.1")


def _hex(text: str) -> bytes:
    """Bytes from field-spaced hex with `#` comments."""
    return bytes.fromhex(re.sub(r"#[^\n]*", "", text))


def _type_of(body: TransportBody) -> int:
    if isinstance(body, MapRegister):
        return TransportType.REGISTRATION
    return body.TYPE


def _encoded(body: TransportBody) -> bytes:
    return body.encode() if isinstance(body, MapRegister) else body.body()


def _frame(message_id: int, body: TransportBody) -> bytes:
    return pdu(_type_of(body), message_id, _encoded(body))


# ------------------------------------------------------------ golden PDUs
# Worked out by hand from the layouts in protocol-notes section 6 (Wireshark's
# packet-lisp-tcp.c): Type(16) Length(16, whole PDU) Message-ID(32) body
# End-Marker(32); an EID prefix is mask length(8) AFI(16) address.

E9 = load_vectors()["e09_reliable_transport_registration"].data
GOLDEN: dict[str, tuple[bytes, int, TransportBody]] = {
    "ack_ipv4": (
        _hex("""
        # type 18 | length 19 | message id 2
          0012        0013        00000002
        # mask 16 | AFI 1 | 10.1.0.0
          10          0001    0a010000
        # end marker
          9facade9
        """),
        2,
        RegistrationAck(V4_PREFIX),
    ),
    "ack_ipv6": (
        _hex("""
        # type 18 | length 31 | message id 3
          0012        001f        00000003
        # mask 48 | AFI 2 | 2001:db8:1::
          30          0002    20010db8 00010000 00000000 00000000
          9facade9
        """),
        3,
        RegistrationAck(V6_PREFIX),
    ),
    "nack_instance_id": (
        _hex("""
        # type 19 | length 34 | message id 4
          0013        0022        00000004
        # reason 2 (authentication failure) | reserved
          02                                  0000
        # mask 16 | AFI LCAF | rsvd1 flags type 2 iid-mask | length 10
          10          4003     00    00    02     00         000a
        # IID 1000 | AFI 1 | 10.1.0.0
          000003e8   0001    0a010000
          9facade9
        """),
        4,
        RegistrationNack(NackReason.AUTH_FAILED, IID_PREFIX),
    ),
    "refresh_all": (
        _hex("""
        # type 20 | length 15 | message id 5 | scope 0 | flags
          0014        000f        00000005       00        0000
          9facade9
        """),
        5,
        RegistrationRefresh(RefreshScope.ALL),
    ),
    "refresh_prefix_rejected_only_ipv6_iid": (
        _hex("""
        # type 20 | length 46 | message id 6 | scope 4 | flags R
          0014        002e        00000006       04        8000
        # mask 32 | AFI LCAF | IID LCAF header, length 22 | IID 7
          20          4003     00 00 02 00 0016             00000007
        # AFI 2 | 2001:db8::
          0002    20010db8 00000000 00000000 00000000
          9facade9
        """),
        6,
        RegistrationRefresh(RefreshScope.PREFIX, True, IID_V6_PREFIX),
    ),
    "refresh_covered_ipv4": (
        _hex("""
        # type 20 | length 22 | message id 7 | scope 3 | flags
          0014        0016        00000007       03        0000
        # mask 8 | AFI 1 | 10.0.0.0
          08         0001    0a000000
          9facade9
        """),
        7,
        RegistrationRefresh(RefreshScope.COVERED, False, Eid.prefix("10.0.0.0/8")),
    ),
    "error_unknown_type": (
        _hex("""
        # type 16 | length 24 | message id 8
          0010        0018        00000008
        # code 2 | reserved | offending type 99, length 12, id 7
          02       000000     0063               000c       00000007
          9facade9
        """),
        8,
        ErrorNotification(ErrorCode.UNKNOWN_TYPE, 99, 12, 7),
    ),
    "error_with_offending_data": (
        _hex("""
        # type 16 | length 32 | message id 10
          0010        0020        0000000a
        # code 1 | reserved | offending type 18, length 19, id 2
          01       000000     0012               0013       00000002
        # offending data: the offending PDU's first 8 bytes
          0012 0013 00000002
          9facade9
        """),
        10,
        ErrorNotification(ErrorCode.MALFORMED, 18, 19, 2, _hex("0012001300000002")),
    ),
    "mapping_notification": (
        _hex("""
        # type 21 | length 64 | message id 9
          0015        0040        00000009
        # xTR-ID                          | Site-ID 1
          000102030405060708090a0b0c0d0e0f  0000000000000001
        # the E1 record: TTL 1440 | 1 locator, mask 16, A | AFI 1 10.1.0.0
          000005a0                  01 10 1000              0000 0001 0a010000
        # locator: pri 1 w 100 mpri 255 mw 0 | L R | AFI 1 192.0.2.1
          01 64 ff 00                          0005  0001 c0000201
          9facade9
        """),
        9,
        MappingNotification(XTR_ID, 1, E1_RECORD),
    ),
    # protocol-notes E9: the E1 Map-Register in a Registration PDU.
    "e9_registration": (E9, 1, E1),
}


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_pdu_decodes_to_the_expected_body(name: str) -> None:
    raw, message_id, body = GOLDEN[name]
    msg, length = decode_transport(raw)
    assert (msg.msg_type, msg.message_id, length) == (
        _type_of(body),
        message_id,
        len(raw),
    )
    assert parse_body(msg) == body


@pytest.mark.parametrize("name", GOLDEN)
def test_expected_body_encodes_to_the_golden_pdu(name: str) -> None:
    raw, message_id, body = GOLDEN[name]
    assert _frame(message_id, body).hex() == raw.hex()


@pytest.mark.parametrize("name", GOLDEN)
def test_every_truncated_golden_pdu_is_a_decode_error(name: str) -> None:
    raw = GOLDEN[name][0]
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            decode_transport(raw[:cut])


def _fixed_part(body: TransportBody) -> int:
    """How much of an encoded body a cut cannot shorten into another valid
    body: the offending data of an Error Notification may be any length."""
    return 12 if isinstance(body, ErrorNotification) else len(_encoded(body))


@pytest.mark.parametrize("name", GOLDEN)
def test_every_truncated_golden_body_is_a_decode_error(name: str) -> None:
    _raw, message_id, body = GOLDEN[name]
    encoded = _encoded(body)
    for cut in range(_fixed_part(body)):
        with pytest.raises(DecodeError):
            parse_body(TransportMessage(_type_of(body), message_id, encoded[:cut]))


@pytest.mark.parametrize(
    "name", [n for n, g in GOLDEN.items() if not isinstance(g[2], ErrorNotification)]
)
def test_a_trailing_byte_in_a_golden_body_is_a_decode_error(name: str) -> None:
    _raw, message_id, body = GOLDEN[name]
    msg = TransportMessage(_type_of(body), message_id, _encoded(body) + b"\x00")
    with pytest.raises(DecodeError, match="trailing"):
        parse_body(msg)


def test_a_pdu_stream_decodes_one_pdu_after_another() -> None:
    stream = b"".join(raw for raw, _id, _body in GOLDEN.values())
    bodies = []
    while stream:
        msg, length = decode_transport(stream)
        bodies.append(parse_body(msg))
        stream = stream[length:]
    assert bodies == [body for _raw, _id, body in GOLDEN.values()]


# ------------------------------------------------------------ what is refused


def test_unknown_message_types_are_refused_by_number() -> None:
    with pytest.raises(DecodeError, match="unknown reliable-transport message type 22"):
        parse_body(TransportMessage(22, 1, b""))


def test_a_registration_must_carry_a_map_register() -> None:
    request = MapRequest(1, (RequestRecord(IPv4Address("10.0.0.1"), 32),), (A,))
    with pytest.raises(DecodeError, match="Registration carries a MapRequest"):
        parse_body(TransportMessage(17, 1, request.encode()))


def test_a_registration_with_a_broken_map_register_is_refused() -> None:
    with pytest.raises(DecodeError):
        parse_body(TransportMessage(17, 1, E1.encode()[:-1]))


@pytest.mark.parametrize(
    ("eid_hex", "reason"),
    [
        ("00 0000", "not an indexable EID"),  # AFI 0: no address
        ("21 0001 0a010000", "mask length 33"),  # longer than IPv4
        ("10 0007 0a010000", "unknown AFI 7"),
        ("10 0001 0a01", "need 4 bytes"),
    ],
)
def test_an_eid_prefix_that_is_not_an_eid_is_a_decode_error(
    eid_hex: str, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason):
        RegistrationAck.decode(_hex(eid_hex))


def test_a_refresh_with_a_scope_but_no_prefix_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="need 1 bytes"):
        RegistrationRefresh.decode(_hex("04 0000"))


def test_reserved_bits_are_ignored_on_receipt() -> None:
    assert RegistrationNack.decode(_hex("01 ffff 08 0001 0a000000")) == (
        RegistrationNack(NackReason.INVALID_PREFIX, Eid.prefix("10.0.0.0/8"))
    )
    assert RegistrationRefresh.decode(_hex("00 7fff")) == RegistrationRefresh(0)
    assert ErrorNotification.decode(_hex("05 ffffff 0011 0070 00000001")) == (
        ErrorNotification(ErrorCode.RATE, 17, 112, 1)
    )


def test_scopes_and_reasons_beyond_the_draft_still_decode() -> None:
    # The codec is structural; what an unknown scope or reason means is the
    # receiver's decision (it can answer with an Error Notification).
    assert RegistrationRefresh.decode(_hex("09 0000 08 0001 0a000000")).scope == 9
    assert RegistrationNack.decode(_hex("63 0000 08 0001 0a000000")).reason == 99


def test_a_received_prefix_with_host_bits_is_normalised() -> None:
    # As for EID-records (Eid.from_wire): the prefix is what the mask says.
    ack = RegistrationAck.decode(_hex("10 0001 0a0102ff"))
    assert ack.eid == V4_PREFIX


# ------------------------------------------------------------ construction


def test_a_refresh_carries_a_prefix_exactly_when_its_scope_needs_one() -> None:
    with pytest.raises(ValueError, match="carries no EID prefix"):
        RegistrationRefresh(RefreshScope.ALL, eid=V4_PREFIX)
    with pytest.raises(ValueError, match="needs one"):
        RegistrationRefresh(RefreshScope.INSTANCE)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ErrorNotification(256, 0, 0, 0),
        lambda: ErrorNotification(1, 1 << 16, 0, 0),
        lambda: ErrorNotification(1, 0, 1 << 16, 0),
        lambda: ErrorNotification(1, 0, 0, 1 << 32),
        lambda: ErrorNotification(1, 0, 0, 0, bytes(MAX_PDU - 23)),
        lambda: RegistrationNack(256, V4_PREFIX),
        lambda: RegistrationRefresh(-1, eid=V4_PREFIX),
        lambda: MappingNotification(1 << 128, 0, E1_RECORD),
        lambda: MappingNotification(0, 1 << 64, E1_RECORD),
    ],
)
def test_out_of_range_fields_are_refused_on_construction(
    build: Callable[[], object],
) -> None:
    with pytest.raises(ValueError, match=r"(does|do) not fit"):
        build()


def test_the_largest_error_notification_fills_the_largest_pdu() -> None:
    note = ErrorNotification(1, 0, 0, 0, bytes(MAX_PDU - 24))
    assert len(pdu(note.TYPE, 1, note.body())) == MAX_PDU


def test_pdu_refuses_a_body_its_length_field_cannot_describe() -> None:
    assert len(pdu(17, 1, bytes(MAX_PDU - 12))) == MAX_PDU
    with pytest.raises(ValueError, match="does not fit a PDU"):
        pdu(17, 1, bytes(MAX_PDU - 11))


def test_names_and_multicast_eids_travel_too() -> None:
    name = Eid(5, DistinguishedName("site-a"), 0)
    sg = Eid.sg("0.0.0.0/0", "233.252.1.1/32")
    for eid in (name, sg):
        ack = RegistrationAck(eid)
        assert RegistrationAck.decode(ack.body()) == ack


def test_instance_id_zero_goes_as_a_plain_afi_and_is_read_either_way() -> None:
    assert RegistrationAck(V4_PREFIX).body() == _hex("10 0001 0a010000")
    wrapped = _hex("10 4003 00000200 000a 00000000 0001 0a010000")
    assert RegistrationAck.decode(wrapped) == RegistrationAck(V4_PREFIX)


# ------------------------------------------------------------ properties


@st.composite
def eids(draw: st.DrawFn) -> Eid:
    iid = draw(ws.uint(32))
    kind = draw(st.sampled_from(["ip", "name", "sg"]))
    if kind == "name":
        return Eid(iid, draw(ws.names), 0)
    if kind == "sg":
        mc = dataclasses.replace(draw(ws.multicast_info()), iid=iid)
        return Eid.from_wire(mc, mc.source_mask_len)
    addr = draw(ws.ip)
    return Eid.from_wire(
        InstanceId(iid, addr), draw(st.integers(0, addr.max_prefixlen))
    )


bodies: st.SearchStrategy[TransportBody] = st.one_of(
    st.builds(
        ErrorNotification,
        ws.uint(8),
        ws.uint(16),
        ws.uint(16),
        ws.uint(32),
        st.binary(max_size=64),
    ),
    st.builds(RegistrationAck, eids()),
    st.builds(RegistrationNack, ws.uint(8), eids()),
    st.builds(RegistrationRefresh, st.just(0), st.booleans()),
    st.builds(RegistrationRefresh, st.integers(1, 255), st.booleans(), eids()),
    st.builds(MappingNotification, ws.uint(128), ws.uint(64), ws.map_records),
    ws.map_registers().flatmap(
        lambda m: st.booleans().map(lambda r: dataclasses.replace(m, reliable=r))
    ),
)


@PROPS
@given(bodies, ws.uint(32))
def test_every_body_round_trips_through_a_pdu(
    body: TransportBody, message_id: int
) -> None:
    msg, _length = decode_transport(_frame(message_id, body))
    assert msg.message_id == message_id
    assert parse_body(msg) == body


def _decode_all(data: bytes) -> None:
    msg, _length = decode_transport(data)
    parse_body(msg)


@PROPS
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        _decode_all(data)


@PROPS
@given(st.integers(14, 32), st.binary(max_size=200))
def test_random_bodies_of_every_type_parse_or_raise_decode_error(
    msg_type: int, body: bytes
) -> None:
    with contextlib.suppress(DecodeError):
        parse_body(TransportMessage(msg_type, 0, body))


@PROPS
@given(bodies, st.data())
def test_mutated_pdus_decode_or_raise_decode_error(
    body: TransportBody, data: st.DataObject
) -> None:
    raw = bytearray(_frame(1, body))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        _decode_all(bytes(raw))


# ------------------------------------------------------------ tshark

tshark_needed = pytest.mark.skipif(
    shutil.which("tshark") is None,
    reason="tshark not installed (Debian: apt-get install tshark); the stream "
    "check needs Wireshark's lisp-tcp dissector",
)
_LAYER = "Locator/ID Separation Protocol (Reliable Transport)"
_TSHARK_TYPE_NAMES = {
    TransportType.ERROR_NOTIFICATION: "Error Notification",
    TransportType.REGISTRATION: "Registration",
    TransportType.REGISTRATION_ACK: "Registration ACK",
    TransportType.REGISTRATION_NACK: "Registration NACK",
    TransportType.REGISTRATION_REFRESH: "Registration Refresh",
    TransportType.MAPPING_NOTIFICATION: "Mapping Notification",
}
R_BIT_REGISTRATION = dataclasses.replace(E1, reliable=True)
#: The client (ETR) sends Registrations; the server (Map-Server) the rest.
CLIENT_PDUS = [E9, _frame(11, R_BIT_REGISTRATION)]
SERVER_PDUS = [raw for raw, _id, _body in GOLDEN.values() if raw != E9]
#: The tshark summary of each PDU by message ID, after "Msg: <id>, ".
SUMMARIES = {
    1: "Registration for 10.1.0.0/16",
    2: "Registration ACK for 10.1.0.0/16",
    3: "Registration ACK for 2001:db8:1::/48",
    4: "Registration NACK, Reason: Authentication failure for [1000] 10.1.0.0/16",
    5: "Registration Refresh, Scope: All prefixes under all address families "
    "under all EID instances",
    6: "Registration Refresh, Scope: A specific EID prefix in a single EID "
    "instance (rejected only) for [7] 2001:db8::/32",
    7: "Registration Refresh, Scope: All prefixes covered by a specific EID "
    "prefix in a single EID instance for 10.0.0.0/8",
    8: "Error Notification, Code: 2, Offending message type: Unknown type (99)",
    9: "Mapping Notification for 10.1.0.0/16",
    10: "Error Notification, Code: 1, Offending message type: Registration ACK",
    11: "Registration for 10.1.0.0/16",
}


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def _segments() -> list[tuple[bool, bytes]]:
    """Both directions interleaved: a PDU cut inside its header, one spread
    over three segments, several packed into one segment."""
    client = b"".join(CLIENT_PDUS)
    server = b"".join(SERVER_PDUS)
    first = len(CLIENT_PDUS[0])
    client_parts = _cut(client, [2, 60, first + 30])
    server_parts = _cut(server, [19 + 31 + 5, 19 + 31 + 40, 150, 151])
    out: list[tuple[bool, bytes]] = []
    for i in range(max(len(client_parts), len(server_parts))):
        if i < len(client_parts):
            out.append((True, client_parts[i]))
        if i < len(server_parts):
            out.append((False, server_parts[i]))
    return out


@pytest.fixture(scope="module")
def stream() -> TcpDissection:
    return dissect_tcp_stream(_segments())


def _by_id(found: TcpDissection) -> dict[int, TcpPdu]:
    out: dict[int, TcpPdu] = {}
    for p in found.pdus:
        (shown,) = p.shown("lisp-tcp.message.id")
        out[int(shown.removeprefix("Message ID: "))] = p
    return out


@tshark_needed
def test_tshark_finds_no_malformed_pdu_and_no_expert_finding(
    stream: TcpDissection,
) -> None:
    assert (stream.malformed, stream.experts) == ((), ())


@tshark_needed
def test_tshark_reassembles_every_pdu_of_the_stream_once(
    stream: TcpDissection,
) -> None:
    assert sorted(_by_id(stream)) == sorted(SUMMARIES)
    assert len(stream.pdus) == len(CLIENT_PDUS) + len(SERVER_PDUS)


@tshark_needed
def test_tshark_completes_a_pdu_cut_in_three_when_its_last_part_arrives(
    stream: TcpDissection,
) -> None:
    segments = _segments()
    client_indices = [
        i for i, (from_client, _data) in enumerate(segments) if from_client
    ]
    # E9 (message 1) is cut at bytes 2 and 60: its third client segment ends it.
    assert _by_id(stream)[1].segment == client_indices[2]


@tshark_needed
@pytest.mark.parametrize("message_id", sorted(SUMMARIES))
def test_tshark_summarises_each_pdu_as_expected(
    stream: TcpDissection, message_id: int
) -> None:
    found = _by_id(stream)[message_id]
    assert found.summary == f"{_LAYER}, Msg: {message_id}, {SUMMARIES[message_id]}"


@tshark_needed
@pytest.mark.parametrize("raw", CLIENT_PDUS + SERVER_PDUS, ids=lambda r: r[:8].hex())
def test_tshark_reads_type_length_and_end_marker_as_sent(
    stream: TcpDissection, raw: bytes
) -> None:
    msg, _length = decode_transport(raw)
    found = _by_id(stream)[msg.message_id]
    name = _TSHARK_TYPE_NAMES[TransportType(msg.msg_type)]
    assert found.shown("lisp-tcp.message.type") == [f"Type: {name} ({msg.msg_type})"]
    assert found.shown("lisp-tcp.message.length") == [f"Length: {len(raw)}"]
    assert found.shown("lisp-tcp.message.end_marker") == [
        "Message End Marker: 0x9facade9 (correct)"
    ]


@tshark_needed
@pytest.mark.parametrize(
    ("message_id", "field", "shown"),
    [
        (2, "", "EID Prefix: 10.1.0.0/16"),
        (2, "lisp-tcp.message.eid.ipv4", "Address: 10.1.0.0"),
        (3, "lisp-tcp.message.eid.ipv6", "Address: 2001:db8:1::"),
        (4, "lisp.lcaf.iid", "Instance ID: 1000"),
        (4, "lisp-tcp.message.registration_reject.res", "Reserved bits: 0x0000"),
        (6, "lisp.lcaf.iid", "Instance ID: 7"),
        (
            6,
            "lisp-tcp.message.registration_refresh.flags.rejected",
            "1... .... .... .... = Rejected only: Set",
        ),
        (8, "lisp-tcp.message.err.offending_msg.len", "Offending message length: 12"),
        (
            10,
            "lisp-tcp.message.err.offending_msg.data",
            "Offending message data: 0012001300000002",
        ),
        (9, "lisp-tcp.message.xtrid", "xTR-ID: 000102030405060708090a0b0c0d0e0f"),
        (9, "lisp-tcp.message.siteid", "Site-ID: 0000000000000001"),
        (9, "lisp.loc.locator", "Locator: 192.0.2.1"),
        (1, "lisp.siteid", "Site-ID: 0000000000000001"),
        # tshark 4.0 predates the draft's r bit: it shows bit 18 as reserved.
        (
            11,
            "lisp.mreg.res",
            ".... .... 0000 0000 0010 000. = Reserved bits: 0x0010",
        ),
    ],
)
def test_tshark_shows_the_fields_as_encoded(
    stream: TcpDissection, message_id: int, field: str, shown: str
) -> None:
    assert shown in _by_id(stream)[message_id].shown(field)


@tshark_needed
def test_tshark_flags_a_wrong_end_marker() -> None:
    # The harness itself: a corrupted PDU must show up as an expert error.
    raw = GOLDEN["ack_ipv4"][0][:-1] + b"\x00"
    found = dissect_tcp_stream([(False, raw)])
    messages = [e.message for e in found.errors]
    assert messages == ["Invalid message end marker (0x9facad00)"]
