"""Golden vectors checked against Wireshark's LISP dissector (tshark 4.0)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tests.wire.tshark import (
    MAP_NOTIFY_ACK_TYPE,
    MAP_REGISTER_A_BIT,
    MAP_REGISTER_T_BIT,
    Dissection,
    assert_clean,
    dissect,
    missing_tools,
    problems,
    unexplained,
)
from tests.wire.vectors import Vector, load_vectors

_MISSING = missing_tools()
if _MISSING:
    pytest.skip(
        f"{' and '.join(_MISSING)} not installed (Debian: apt-get install tshark); "
        "the wire conformance checks need Wireshark's LISP dissector",
        allow_module_level=True,
    )

VECTORS = load_vectors()
EMITTED = [v for v in VECTORS.values() if v.emit]

_A_BIT_REASON = (
    "tshark 4.0 predates RFC 9301's Map-Register a bit (merge-request, "
    "0x00000400) and shows it as 'Reserved bits: 0x0002' (protocol-notes E6, "
    "gotcha 25); the regex allows exactly that value, so any other reserved bit "
    "still fails"
)

# Known tshark 4.0 limitations: vector name -> (regex that must match a whole
# finding, reason). Every finding of that vector must match; anything else fails.
KNOWN_LIMITATIONS: dict[str, tuple[str, str]] = {
    "e06_membership_map_register": (MAP_REGISTER_A_BIT, _A_BIT_REASON),
    "v05_map_request_pubsub": (
        re.escape(
            "reserved field lisp.mreq.res = 0x000080 "
            "(.... .... ..01 0000 000. .... = Reserved bits: 0x080)"
        )
        + "|"
        + re.escape("reserved field lisp.mreq.record.res = 0x80 (Reserved: 0x80)")
        + "|"
        + re.escape("24 undecoded bytes at UDP payload offset 32 (to the end)"),
        "tshark 4.0 predates RFC 9437 (I bit, N bit, xTR-ID/Site-ID trailer)",
    ),
    "v17_map_register_ttl_timeout": (
        MAP_REGISTER_T_BIT,
        "tshark 4.0 does not know the RFC 9301 Map-Register T bit",
    ),
    "v18_map_register_merge_without_xtr_id": (MAP_REGISTER_A_BIT, _A_BIT_REASON),
    "v19_map_register_eid_notify": (
        re.escape(
            "reserved field lisp.mreg.res = 0x000008 "
            "(.... .... 0000 0000 0001 000. = Reserved bits: 0x0008)"
        ),
        "tshark 4.0 does not know the RFC 9301 Map-Register E bit",
    ),
    "v24_map_register_membership_deregistration": (
        MAP_REGISTER_A_BIT,
        _A_BIT_REASON,
    ),
    "v27_map_notify_ack_membership_rle3": (
        MAP_NOTIFY_ACK_TYPE
        + "|"
        + re.escape("127 undecoded bytes at UDP payload offset 3 (to the end)"),
        "tshark 4.0 has no Map-Notify-Ack (RFC 9301 type 5)",
    ),
    "e07_her_data_membership": (MAP_REGISTER_A_BIT, _A_BIT_REASON),
    "e08_map_notify_ack": (
        MAP_NOTIFY_ACK_TYPE
        + "|"
        + re.escape("73 undecoded bytes at UDP payload offset 3 (to the end)"),
        "tshark 4.0 has no Map-Notify-Ack (type 5, new in RFC 9301): it shows "
        "'Unknown LISP Control Packet (5)' and leaves the 73 bytes after the "
        "type field undecoded (protocol-notes E8); the exact byte count keeps a "
        "truncated or padded Map-Notify-Ack failing",
    ),
}


def _allow(name: str) -> dict[str, str]:
    entry = KNOWN_LIMITATIONS.get(name)
    return {entry[0]: entry[1]} if entry else {}


def _patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


# Deliberate corruptions: (vector, change). Each must produce a finding that the
# vector's own allowlist entry does not excuse.
CORRUPTIONS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "record count bumped": (
        "e01_map_register_sha256",
        lambda d: _patch(d, 3, b"\x02"),
    ),
    "locator count bumped": (
        "e01_map_register_sha256",
        lambda d: _patch(d, 52, b"\x02"),
    ),
    "record truncated": ("e02_map_notify", lambda d: d[:60]),
    "trailer missing": ("e01_map_register_sha256", lambda d: d[:-24]),
    "trailing byte": ("e04_map_reply", lambda d: d + b"\x00"),
    "reserved bit next to the a bit": (
        "e06_membership_map_register",
        lambda d: _patch(d, 1, b"\x01"),
    ),
    "locator AFI unknown": ("e04_map_reply", lambda d: _patch(d, 34, b"\x00\x07")),
    "inner UDP checksum wrong": (
        "e03_ecm_map_request",
        lambda d: _patch(d, 30, b"\x00\x01"),
    ),
    "inner UDP checksum zero": (
        "e07_her_data_membership",
        lambda d: _patch(d, 34, b"\x00\x00"),
    ),
    "Map-Notify-Ack truncated": ("e08_map_notify_ack", lambda d: d[:60]),
}


@pytest.fixture(scope="module")
def vector_dissections() -> dict[str, Dissection]:
    vectors = list(VECTORS.values())
    found = dissect([(v.data, v.port) for v in vectors])
    return {v.name: d for v, d in zip(vectors, found, strict=True)}


@pytest.fixture(scope="module")
def corrupted_dissections() -> dict[str, Dissection]:
    datagrams = [
        (change(VECTORS[name].data), VECTORS[name].port)
        for name, change in CORRUPTIONS.values()
    ]
    return dict(zip(CORRUPTIONS, dissect(datagrams), strict=True))


@pytest.mark.parametrize("vector", EMITTED, ids=lambda v: v.name)
def test_emitted_vector_dissects_without_problems(
    vector: Vector, vector_dissections: dict[str, Dissection]
) -> None:
    found = problems(vector_dissections[vector.name])
    assert unexplained(found, _allow(vector.name)) == []


@pytest.mark.parametrize("name", sorted(KNOWN_LIMITATIONS))
def test_allowlist_entry_is_still_needed(
    name: str, vector_dissections: dict[str, Dissection]
) -> None:
    assert VECTORS[name].emit, "allowlist entries are for emitted vectors only"
    regex, _reason = KNOWN_LIMITATIONS[name]
    found = problems(vector_dissections[name])
    assert any(re.fullmatch(regex, f) for f in found), (
        f"tshark no longer reports {regex!r} for {name}: remove the entry"
    )


@pytest.mark.parametrize("vector", VECTORS.values(), ids=lambda v: v.name)
def test_vector_with_findings_documents_them(
    vector: Vector, vector_dissections: dict[str, Dissection]
) -> None:
    if problems(vector_dissections[vector.name]):
        assert vector.tshark_note, f"{vector.name}.hex needs a '# tshark:' line"


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_harness_reports_a_corrupted_vector(
    case: str, corrupted_dissections: dict[str, Dissection]
) -> None:
    name, _change = CORRUPTIONS[case]
    found = problems(corrupted_dissections[case])
    assert unexplained(found, _allow(name)) != [], found


def test_assert_clean_accepts_emitted_vectors_with_allowances() -> None:
    allow = {regex: reason for regex, reason in KNOWN_LIMITATIONS.values()}
    dissections = assert_clean([(v.data, v.port) for v in EMITTED], allow)
    assert [d.lisp_decoded for d in dissections] == [True] * len(EMITTED)


def test_assert_clean_rejects_a_bumped_record_count() -> None:
    e1 = VECTORS["e01_map_register_sha256"].data
    with pytest.raises(AssertionError, match=r"datagram 1 .*\n.*EID prefix AFI") as exc:
        assert_clean([(e1, 4342), (_patch(e1, 3, b"\x02"), 4342)])
    assert "datagram 0" not in str(exc.value)


def test_datagram_that_is_not_lisp_is_reported() -> None:
    (d,) = dissect([(b"", 4342)])
    assert problems(d) == ["not decoded as LISP on port 4342 (layers: nothing)"]
