"""The Map-Server store: merged records, RLE members, unknown EIDs."""

from __future__ import annotations

from ipaddress import IPv4Address

from decent.peer.mapserver import MapServer, merge_records, proxy_record
from decent.wire import DistinguishedName, Eid, Locator, MapRecord, Rle, RleEntry
from tests.peer.conftest import (
    DECENT_IPS,
    ETR_EID,
    Traced,
    ctl,
    lone_member,
    record,
    register_msg,
    site_a,
)


def test_merge_of_plain_locators_is_a_sorted_union():
    a = record("10.1.1.0/24", "192.0.2.12", "192.0.2.10")
    b = record("10.1.1.0/24", "192.0.2.11", "192.0.2.10", ttl=1)
    named = MapRecord(a.eid, a.mask_len, (Locator(DistinguishedName("x")),))
    merged = merge_records([a, b, named])
    assert [str(loc.address) for loc in merged.locators[:3]] == [
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.12",
    ]
    assert merged.ttl == 1
    assert len(merged.locators) == 4


def test_map_server_helpers_answer_for_unknown_eids():
    server = MapServer((site_a(),), 180.0)
    assert server.expire(ETR_EID, 1, 0.0) is None
    assert server.configured(Eid.name("x")) is None


def test_group_members_are_the_address_entries_of_the_rle():
    ms = Traced(lone_member().config)
    eid = ms.config.group_eid
    assert eid is not None
    rle = Rle((RleEntry(DistinguishedName("anon")), RleEntry(DECENT_IPS[1], 128)))
    rec = MapRecord(*eid.to_wire(), (Locator(rle, 255, 0),), 3)
    data = register_msg(rec, merge=True, proxy_reply=True, xtr_id=2)
    ms.receive_datagram(data, ctl(DECENT_IPS[1]), 0.0)
    entry = ms.ms.db.get(eid)
    assert entry is not None
    assert entry.members() == [DECENT_IPS[1]]


def test_a_proxy_reply_clears_the_a_and_l_bits_and_nothing_else() -> None:
    record = MapRecord(
        IPv4Address("10.1.1.0"),
        24,
        (Locator(IPv4Address("192.0.2.1"), 3, 40, local=True, reachable=False),),
        3,
        authoritative=True,
    )
    reply = proxy_record(record)
    assert not reply.authoritative
    assert reply.locators[0].local is False
    assert reply.locators[0].reachable is False
    assert (reply.locators[0].priority, reply.locators[0].weight) == (3, 40)
    plain = MapRecord(
        IPv4Address("10.1.1.0"), 24, (Locator(IPv4Address("192.0.2.1")),), 3
    )
    assert proxy_record(plain) is plain
