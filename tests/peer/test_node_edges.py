"""Edges of the core that the scenario tests do not reach: configuration
checks, the data-port path, address-family mismatches, unsigned sites,
restore, soft-state sweeping and the timer heap."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from decent.peer.config import AllowedPrefix, DatabaseMapping, NodeConfig, Site
from decent.peer.decent import decent_node_config
from decent.peer.events import (
    LocatorStateChanged,
    MapCacheUpdated,
    MergedSetChanged,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationRemoved,
    SmrReceived,
)
from decent.peer.mapserver import MapServer, Registration, merge_records, rle_entries
from decent.peer.node import Node
from decent.peer.timers import Deadlines
from decent.wire import (
    DECENT_CONTROL_IID,
    AfiList,
    DataHeader,
    DistinguishedName,
    Eid,
    EncapsulatedControlMessage,
    InstanceId,
    Locator,
    MapNotify,
    MapRecord,
    MapReferral,
    MapRegister,
    MapReply,
    MapRequest,
    RequestRecord,
    Rle,
    RleEntry,
    UdpPacket,
    check_auth,
    decode,
    encapsulate,
)
from tests.peer.conftest import (
    DECENT_IPS,
    ETR_EID,
    ETR_IP,
    GROUP,
    ITR_IP,
    KEY,
    LONG_TTL,
    MS_IP,
    SITE_PREFIX,
    Traced,
    ctl,
    decent_trio,
    etr_config,
    itr_config,
    locators,
    ms_config,
    nonces,
    record,
    register_msg,
    request_msg,
    site_a,
)

V6 = IPv6Address("2001:db8::20")
PEER = ctl(ETR_IP)


def out(node: Node) -> list[tuple[object, tuple[object, int]]]:
    return [(decode(d), dest) for d, dest in node.datagrams_to_send()]


def drops(node: Node) -> dict[str, int]:
    return {k: v for k, v in node.counters.items() if k.startswith("drop.")}


# ---------------------------------------------------------------- config
def test_config_refuses_nonsense():
    with pytest.raises(ValueError, match="at least one RLOC"):
        NodeConfig(rlocs=(), xtr_id=1)
    with pytest.raises(ValueError, match="group_mode"):
        NodeConfig(rlocs=(ITR_IP,), xtr_id=1, group_mode="carrier-pigeon")
    with pytest.raises(ValueError, match="not a multicast"):
        NodeConfig(rlocs=(ITR_IP,), xtr_id=1, group=MS_IP)


def test_config_group_eid_and_rloc_for_each_family():
    v6 = NodeConfig(rlocs=(V6,), xtr_id=1, group=IPv6Address("ff0e::1"))
    assert str(v6.group_eid) == "[0](::/0, ff0e::1/128)"
    assert v6.rloc_for(4) is None
    assert NodeConfig(rlocs=(ITR_IP,), xtr_id=1).group_eid is None


def test_allowed_names_are_exact_unless_wildcard():
    exact = AllowedPrefix(Eid.name("alice"))
    assert exact.allows(Eid.name("alice"))
    assert not exact.allows(Eid.name("bob"))
    assert not AllowedPrefix(Eid.prefix("10.0.0.0/8")).allows(Eid.name("alice"))
    assert not AllowedPrefix(ETR_EID, accept_more_specifics=False).allows(
        Eid.prefix("10.1.1.0/25")
    )
    assert not AllowedPrefix(ETR_EID).allows(Eid.prefix("10.1.1.0/24", iid=7))


def test_allowed_group_prefixes_match_source_and_group():
    any_group = AllowedPrefix(Eid.sg("0.0.0.0/0", "224.0.0.0/4"))
    assert any_group.allows(Eid.sg("10.0.0.0/8", "233.252.1.1/32"))
    assert not any_group.allows(Eid.prefix("10.0.0.0/8"))
    assert not AllowedPrefix(Eid.prefix("0.0.0.0/0")).allows(
        Eid.sg("0.0.0.0/0", "233.252.1.1/32")
    )


# ---------------------------------------------------------------- timers
def test_deadlines_move_cancel_and_compact():
    d: Deadlines[int] = Deadlines()
    for i in range(100):
        d.set(0, float(i))  # superseded entries pile up, then are compacted
    assert len(d) == 1
    assert d.when(0) == 99.0
    assert len(d._heap) <= 2 * len(d) + 64
    d.set(1, 5.0)
    d.cancel(1)
    assert 1 not in d
    assert d.next_at() == 99.0
    assert d.pop_due(98.0) == []
    assert d.pop_due(99.0) == [0]
    assert d.next_at() is None


# ---------------------------------------------------------------- data port
def replicated(payload: bytes, *, iid: int = DECENT_CONTROL_IID, dst=GROUP, dport=4342):
    inner = UdpPacket(DECENT_IPS[1], dst, 4342, dport, payload).encode()
    return encapsulate(DataHeader(nonce=1, instance_id=iid), inner)


def test_data_port_drops_what_is_not_replicated_control_traffic():
    node = Traced(ms_config())
    reg = register_msg(record("10.1.1.0/24", "192.0.2.10"))
    local = (MS_IP, 4341)
    node.receive_datagram(replicated(reg, iid=5), PEER, 0.0, local)
    node.receive_datagram(b"\x08\x00", PEER, 0.0, local)
    node.receive_datagram(
        replicated(reg, dst=IPv4Address("192.0.2.99")), PEER, 0.0, local
    )
    node.receive_datagram(replicated(reg, dport=4341), PEER, 0.0, local)
    assert drops(node) == {
        "drop.data-plane-off": 1,
        "drop.decode-error": 1,
        "drop.replicated-not-for-us": 2,
    }
    # Well formed and for us, but sent by PEER on behalf of another address
    # (its inner source), and this node has no group whose member it is.
    node.receive_datagram(replicated(reg, dst=MS_IP), PEER, 0.0, local)
    assert node.counters["drop.replicated-spoofed"] == 1
    node.receive_datagram(replicated(reg, dst=MS_IP), ctl(DECENT_IPS[1]), 0.0, local)
    assert node.counters["drop.replicated-not-member"] == 1
    assert node.counters["rx.replicated"] == 0
    assert ETR_EID not in node.ms.db


def test_map_referral_and_ecm_of_a_register_are_dropped():
    node = Traced(ms_config())
    node.receive_datagram(MapReferral(1, ()).encode(), PEER, 0.0)
    ecm = EncapsulatedControlMessage(MapRegister(1, ()), ETR_IP, MS_IP)
    node.receive_datagram(ecm.encode(), PEER, 0.0)
    assert drops(node) == {
        "drop.unexpected-map-referral": 1,
        "drop.unsupported-ecm": 1,
    }


# ---------------------------------------------------------------- groups
def test_a_node_without_a_group_has_no_membership():
    assert Traced(ms_config()).membership() == []


def test_multicast_mode_sends_group_registers_natively_to_g():
    config = lone_member().config
    node = Node(dataclasses.replace(config, group_mode="multicast"), nonce=nonces())
    node.handle_timer(0.0)
    dests = {dest for _, dest in node.datagrams_to_send()}
    assert (GROUP, 4342) in dests
    assert not any(port == 4341 for _, port in dests)


def test_no_replication_without_an_rloc_of_the_groups_family():
    config = lone_member().config
    v6_group = IPv6Address("ff0e::1")
    v6 = dataclasses.replace(config, group=v6_group, map_servers=((v6_group, 4342),))
    node = Node(v6, nonce=nonces())
    node.handle_timer(0.0)
    assert not any(port == 4341 for _, (_, port) in node.datagrams_to_send())


def test_membership_ignores_rle_entries_that_are_not_addresses():
    net, nodes = decent_trio()
    net.advance(5.0)
    node = nodes[0]
    eid = node.config.group_eid
    assert eid is not None
    rle = Rle(
        (RleEntry(DistinguishedName("nameless")), RleEntry(IPv4Address("198.18.42.99")))
    )
    wrapped = Locator(AfiList((IPv4Address("198.18.42.98"), rle)), 255, 0)
    node.cache.install(eid, MapRecord(*eid.to_wire(), (wrapped,)), "map-notify", 5.0)
    assert IPv4Address("198.18.42.99") in node.membership()
    assert len(node.membership()) == 4
    assert rle_entries(Locator(AfiList((IPv4Address("198.18.42.98"),)))) == []


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


def test_merged_entry_of_a_site_without_keys_is_notified_unsigned():
    site = Site("open", (), (AllowedPrefix(Eid.prefix("10.9.0.0/16")),), True)
    ms = Traced(ms_config(sites=(site,)))
    eid = Eid.prefix("10.9.0.0/24")
    for i, ip in enumerate(("192.0.2.31", "192.0.2.32"), start=1):
        rle = Locator(Rle((RleEntry(IPv4Address(ip), 128),)), 255, 0)
        rec = MapRecord(*eid.to_wire(), (rle,), 3)
        data = register_msg(rec, key=None, merge=True, xtr_id=i, nonce=1)
        ms.receive_datagram(data, (IPv4Address(ip), 4342), 0.0)
    notifies = [m for m, _ in out(ms) if isinstance(m, MapNotify) and m.nonce != 1]
    assert notifies
    assert all(m.alg_id == 0 for m in notifies)
    assert ms.events(MergedSetChanged)[-1][1].members == 2


# ---------------------------------------------------------------- Map-Server
def test_ttl_zero_for_an_unregistered_eid_changes_nothing():
    ms = Traced(ms_config())
    rec = record("10.1.1.0/24", "192.0.2.10", ttl=0)
    ms.receive_datagram(register_msg(rec), PEER, 0.0)
    assert ms.events(RegistrationRemoved) == []
    assert ms.counters["registration.removed"] == 0


def test_ttl_zero_without_merge_bit_removes_only_that_registrants_child():
    ms = Traced(ms_config())
    for xtr in (1, 2):
        rec = record("10.1.1.0/24", f"192.0.2.{xtr}")
        ms.receive_datagram(register_msg(rec, merge=True, xtr_id=xtr), PEER, 0.0)
    gone = record("10.1.1.0/24", "192.0.2.1", ttl=0)
    ms.receive_datagram(register_msg(gone, xtr_id=1, nonce=2), PEER, 1.0)
    entry = ms.ms.db.get(ETR_EID)
    assert entry is not None
    assert list(entry.children) == [2]
    assert ms.events(RegistrationRemoved) == [(1.0, RegistrationRemoved(ETR_EID, 1))]


def test_registration_replaced_by_another_xtr_expires_on_the_new_ones_clock():
    ms = Traced(ms_config())
    first = record("10.1.1.0/24", "192.0.2.10")
    ms.receive_datagram(register_msg(first, xtr_id=1), PEER, 0.0)
    second = record("10.1.1.0/24", "192.0.2.11")
    ms.receive_datagram(register_msg(second, xtr_id=2), PEER, 100.0)
    for t in (180.0, 280.0):  # the first registrant's timer finds it replaced
        ms.handle_timer(t)
    assert ms.events(RegistrationExpired) == [(280.0, RegistrationExpired(ETR_EID, 2))]
    assert ms.ms.expire(ETR_EID, 2, 281.0) is None  # already gone


def test_non_proxy_registration_without_an_address_rloc_cannot_be_forwarded():
    ms = Traced(ms_config())
    named = MapRecord(*ETR_EID.to_wire(), (Locator(DistinguishedName("etr")),), 3)
    ms.receive_datagram(register_msg(named), PEER, 0.0)
    ms.datagrams_to_send()
    ms.receive_datagram(request_msg("10.1.1.5/32", ITR_IP).encode(), ctl(ITR_IP), 0.0)
    assert ms.counters["drop.no-etr-rloc"] == 1
    assert ms.datagrams_to_send() == []


def test_forwarding_to_an_etr_of_the_other_family_keeps_the_inner_family():
    ms = Traced(ms_config())
    v6etr = MapRecord(*ETR_EID.to_wire(), locators("2001:db8::10"), 3)
    ms.receive_datagram(register_msg(v6etr), PEER, 0.0)
    ms.datagrams_to_send()
    ms.receive_datagram(request_msg("10.1.1.5/32", ITR_IP).encode(), ctl(ITR_IP), 0.0)
    [(ecm, dest)] = out(ms)
    assert dest == (IPv6Address("2001:db8::10"), 4342)
    assert isinstance(ecm, EncapsulatedControlMessage)
    assert (ecm.inner_src, ecm.inner_dst) == (ITR_IP, ITR_IP)


def test_host_route_registration_answers_a_host_query():
    ms = Traced(ms_config())
    ms.receive_datagram(
        register_msg(record("10.1.1.5/32", "192.0.2.10"), proxy_reply=True), PEER, 0.0
    )
    ms.datagrams_to_send()
    ms.receive_datagram(request_msg("10.1.1.5/32", ITR_IP).encode(), ctl(ITR_IP), 0.0)
    [(reply, _)] = out(ms)
    assert isinstance(reply, MapReply)
    assert [r.mask_len for r in reply.records] == [32]


def test_query_in_another_instance_id_is_matched_in_that_instance():
    site = Site("iid", ((0, KEY),), (AllowedPrefix(Eid.prefix("10.1.0.0/16", iid=5)),))
    ms = Traced(ms_config(sites=(site,)))
    rec = record(Eid.prefix("10.1.1.0/24", iid=5), "192.0.2.10")
    ms.receive_datagram(register_msg(rec, proxy_reply=True), PEER, 0.0)
    ms.datagrams_to_send()
    query = InstanceId(5, IPv4Address("10.1.1.5"))
    req = MapRequest(7, (RequestRecord(query, 32),), (ITR_IP,))
    ms.receive_datagram(req.encode(), ctl(ITR_IP), 0.0)
    [(reply, _)] = out(ms)
    assert isinstance(reply, MapReply)
    assert reply.records[0].locators


def test_unregistered_name_allowed_by_a_site_gets_a_short_negative():
    net, nodes = decent_trio()
    net.advance(2.0)
    prefix, ttl, action = nodes[0].negative_answer(Eid.name("n9"))
    assert (prefix, ttl, action) == (Eid.name("n9"), 1, 2)


def test_reply_goes_to_the_first_itr_rloc_when_none_matches_the_family():
    ms = Traced(ms_config())
    other = IPv6Address("2001:db8::21")
    ms.receive_datagram(
        request_msg("10.9.9.9/32", V6, other).encode(), ctl(ITR_IP), 0.0
    )
    [(_, dest)] = [(d, dest) for d, dest in ms.datagrams_to_send()]
    assert dest == (V6, 4342)


def test_probes_are_rate_limited_like_other_replies():
    etr = Traced(etr_config(map_reply_rate=0.001, map_reply_burst=1.0))
    probe = request_msg("10.1.1.0/24", ITR_IP, probe=True).encode()
    etr.datagrams_to_send()
    for _ in range(2):
        etr.receive_datagram(probe, ctl(ITR_IP), 1.0, ctl(ETR_IP))
    assert etr.counters["drop.rate-limited"] == 1
    assert etr.counters["tx.map-reply"] == 1


def test_restore_reinstates_live_children_with_their_timers():
    ms = Traced(ms_config())
    rec = record("10.1.1.0/24", "192.0.2.10")
    live = Registration(rec, PEER, 1, 0, 0.0, 50.0, 230.0, "", 2)
    dead = Registration(rec, PEER, 2, 0, 0.0, 10.0, 90.0, "", 2)
    assert ms.restore_registration(ETR_EID, "site-a", False, True, [live, dead], 100.0)
    entry = ms.ms.db.get(ETR_EID)
    assert entry is not None
    assert list(entry.children) == [1]
    ms.handle_timer(230.0)
    assert ms.events(RegistrationExpired) == [(230.0, RegistrationExpired(ETR_EID, 1))]
    # Nothing comes back for a site (or prefix) the configuration lost.
    assert not ms.restore_registration(ETR_EID, "gone", False, True, [live], 100.0)
    far = Eid.prefix("10.7.0.0/24")
    assert not ms.restore_registration(far, "site-a", False, True, [live], 100.0)
    assert not ms.restore_registration(ETR_EID, "site-a", False, True, [dead], 100.0)


def test_restored_group_entry_counts_its_members_as_known():
    net, nodes = decent_trio()
    net.advance(5.0)
    eid = nodes[0].config.group_eid
    assert eid is not None
    entry = nodes[0].ms.db.get(eid)
    assert entry is not None
    fresh = Traced(nodes[0].config)
    children = list(entry.children.values())
    assert fresh.restore_registration(eid, entry.site, True, True, children, 5.0)
    # Its own child is not restored: it registers itself afresh at once.
    assert fresh.membership() == list(DECENT_IPS[1:])


def test_map_server_helpers_answer_for_unknown_eids():
    server = MapServer((site_a(),), 180.0)
    assert server.expire(ETR_EID, 1, 0.0) is None
    assert server.configured(Eid.name("x")) is None


# ---------------------------------------------------------------- ETR / ITR
def test_etr_without_a_key_registers_unsigned_and_acks_unsigned():
    ms = Traced(ms_config(sites=(site_a(allow_unauthenticated=True),)))
    etr = Traced(etr_config(key=b""))
    etr.handle_timer(0.0)
    [(reg_bytes, _)] = etr.datagrams_to_send()
    assert decode(reg_bytes).alg_id == 0  # type: ignore[union-attr]
    ms.receive_datagram(reg_bytes, PEER, 0.0)
    assert ETR_EID in ms.ms.db
    # An unsolicited, unsigned notify to a keyless ETR is cached and acked.
    notify = MapNotify(99, (record("10.2.0.0/16", "192.0.2.40"),))
    etr.receive_datagram(notify.encode(), ctl(MS_IP), 1.0)
    [(ack, _)] = out(etr)
    assert ack.alg_id == 0  # type: ignore[attr-defined]
    assert etr.cache.lookup(Eid.prefix("10.2.1.1/32")) is not None


def test_sent_register_is_exactly_the_signed_message():
    etr = Traced(etr_config())
    etr.handle_timer(0.0)
    [(data, _)] = etr.datagrams_to_send()
    msg = decode(data)
    assert isinstance(msg, MapRegister)
    assert check_auth(data, KEY)
    resigned = MapRegister(
        msg.nonce,
        msg.records,
        proxy_reply=msg.proxy_reply,
        ttl_timeout=True,
        want_map_notify=True,
        xtr_id=msg.xtr_id,
    ).signed(KEY)
    assert resigned.encode() == data


def test_large_databases_are_split_into_registers_of_bounded_size():
    mappings = tuple(
        DatabaseMapping(Eid.prefix(f"10.1.{i}.0/24"), locators(ETR_IP))
        for i in range(100)
    )
    etr = Traced(etr_config(database=mappings))
    etr.handle_timer(0.0)
    sent = etr.datagrams_to_send()
    assert len(sent) > 1
    assert all(len(d) <= 1100 for d, _ in sent)
    registers = [decode(d) for d, _ in sent]
    assert sum(len(m.records) for m in registers if isinstance(m, MapRegister)) == 100


def test_register_retransmission_stops_when_its_eid_is_deregistered():
    etr = Traced(etr_config(register_interval=3600.0, mapping=LONG_TTL))
    etr.handle_timer(0.0)
    etr.deregister(0.5, [ETR_EID])
    etr.datagrams_to_send()
    etr.handle_timer(1.0)
    assert etr.datagrams_to_send() == []
    assert etr.soft_state_sizes()["pending_registers"] == 0


def test_smr_names_of_every_kind_are_looked_up_safely():
    itr = Traced(itr_config())
    v6_eid = Eid.prefix("2001:db8:1::/48")
    itr.cache.install(
        v6_eid, MapRecord(*v6_eid.to_wire(), locators(V6)), "map-reply", 0.0
    )
    unusable = Rle((RleEntry(ETR_IP),))
    smr = MapRequest(
        1,
        (RequestRecord(unusable, 0), RequestRecord(DistinguishedName("who"), 0)),
        (ETR_IP,),
        source_eid=IPv6Address("2001:db8:1::1"),
        smr=True,
    )
    itr.receive_datagram(smr.encode(), PEER, 0.0)
    assert [e for _, e in itr.events(SmrReceived)] == [SmrReceived(v6_eid, PEER)]


def test_itrs_and_rlocs_of_a_family_we_lack_are_skipped():
    etr = Traced(etr_config(probe_interval=5.0))
    etr.note_itr(ETR_EID, V6, 0.0)
    etr.set_locators(ETR_EID, locators(ETR_IP), 0.0)
    assert etr.counters["tx.smr"] == 0
    v6_eid = Eid.prefix("2001:db8:1::/48")
    etr.cache.install(
        v6_eid, MapRecord(*v6_eid.to_wire(), locators(V6)), "map-reply", 0.0
    )
    etr.handle_timer(5.0)
    assert etr.counters["tx.probe"] == 0


def test_set_locators_of_a_new_eid_adds_a_mapping():
    etr = Traced(etr_config())
    new = Eid.prefix("10.1.9.0/24")
    etr.set_locators(new, locators(ETR_IP), 0.0)
    assert etr.database.get(new) == DatabaseMapping(new, locators(ETR_IP))


def test_ttl_zero_reply_for_an_uncached_eid_changes_nothing():
    itr = Traced(itr_config())
    itr.request(Eid.prefix("10.1.2.5/32"), 0.0)
    [(ecm, _)] = out(itr)
    nonce = ecm.message.nonce  # type: ignore[attr-defined]
    reply = MapReply(nonce, (record("10.1.1.0/24", ttl=0),))
    itr.receive_datagram(reply.encode(), ctl(MS_IP), 0.1)
    assert len(itr.cache) == 0
    assert itr.events(MapCacheUpdated) == []


def test_probe_reply_after_the_mapping_changed_is_ignored():
    itr = Traced(itr_config(probe_interval=5.0))
    itr.cache.install(ETR_EID, record("10.1.1.0/24", "192.0.2.10"), "map-reply", 0.0)
    itr.handle_timer(5.0)
    [(probe, _)] = out(itr)
    assert isinstance(probe, MapRequest)
    itr.cache.install(ETR_EID, record("10.1.1.0/24", "192.0.2.12"), "map-reply", 5.0)
    answer = MapReply(
        probe.nonce,
        (record("10.1.1.0/24", "192.0.2.10", authoritative=True),),
        probe=True,
    )
    itr.receive_datagram(answer.encode(), PEER, 5.1)
    entry = itr.cache.db.get(ETR_EID)
    assert entry is not None
    assert all(s.rtt is None for s in entry.locators)
    itr.handle_timer(10.0)  # the next round; then the entry goes away
    assert len(out(itr)) == 1
    itr.cache.remove(ETR_EID)
    itr.handle_timer(13.0)  # its timeout finds no entry: nothing to mark
    assert itr.events(LocatorStateChanged) == []


# ---------------------------------------------------------------- upkeep
def test_sweep_prunes_stale_soft_state():
    itr = Traced(itr_config(map_reply_rate=10.0, map_reply_burst=5.0))
    itr.cache.install(ETR_EID, record("10.1.1.0/24", "192.0.2.10"), "map-reply", 0.0)
    smr = request_msg("10.1.1.0/24", ETR_IP, smr=True, source_eid=ETR_EID.address)
    itr.receive_datagram(smr.encode(), PEER, 1.0)
    itr.note_itr(ETR_EID, ETR_IP, 1.0)
    itr.receive_datagram(request_msg("10.9.0.1/32", ETR_IP).encode(), PEER, 1.0)
    sizes = itr.soft_state_sizes()
    assert (sizes["smr_last"], sizes["recent_itrs"], sizes["reply_buckets"]) == (
        1,
        1,
        1,
    )
    itr.handle_timer(60.0)  # the first sweep: all still fresh
    itr.handle_timer(120.0)
    sizes = itr.soft_state_sizes()
    assert (sizes["smr_last"], sizes["recent_itrs"], sizes["reply_buckets"]) == (
        0,
        0,
        0,
    )


def test_events_and_counters_are_readable_after_a_run():
    net, nodes = decent_trio()
    net.advance(5.0)
    kinds = {type(e).__name__ for _, e in nodes[0].log}
    assert {"RegistrationAccepted", "MergedSetChanged", "MapCacheUpdated"} <= kinds
    assert nodes[0].counters["registration.accepted"] == len(
        nodes[0].events(RegistrationAccepted)
    )
    assert nodes[0].next_event() is None  # the Traced shell drained them


# ---------------------------------------------------------------- group lookup
def lone_member(**kw: Any) -> Traced:
    config = decent_node_config(
        name="n1", rlocs=(DECENT_IPS[0],), group=GROUP, key=KEY, xtr_id=1, **kw
    )
    return Traced(config)


def test_group_lookup_asks_peers_in_turn_and_installs_only_the_group():
    node = lone_member(seeds=DECENT_IPS[1:], group_lookup_interval=30.0)
    node.datagrams_to_send()
    asked = []
    for t in (30.0, 60.0, 90.0):
        node.handle_timer(t)
        for data, dest in node.datagrams_to_send():
            msg = decode(data)
            if isinstance(msg, MapRequest):
                asked.append((dest[0], msg.nonce))
    assert [ip for ip, _ in asked] == [DECENT_IPS[1], DECENT_IPS[2], DECENT_IPS[1]]
    eid = node.config.group_eid
    assert eid is not None
    nonce = asked[-1][1]
    rle = Locator(Rle(tuple(RleEntry(ip, 128) for ip in DECENT_IPS)), 255, 0)
    other = record("10.1.1.0/24", "192.0.2.10")
    empty = MapRecord(*eid.to_wire(), (), 1)
    answer = MapReply(nonce, (other, empty, MapRecord(*eid.to_wire(), (rle,), 3)))
    node.receive_datagram(answer.encode(), ctl(DECENT_IPS[1]), 91.0)
    assert node.membership() == list(DECENT_IPS)
    assert [e.eid for _, e in node.events(MapCacheUpdated)] == [eid]


def test_group_lookup_without_a_reachable_peer_sends_nothing():
    alone = lone_member(group_lookup_interval=30.0)
    other_family = lone_member(seeds=(V6,), group_lookup_interval=30.0)
    for node in (alone, other_family):
        node.datagrams_to_send()
        node.handle_timer(30.0)
        assert not [
            d for d, _ in node.datagrams_to_send() if isinstance(decode(d), MapRequest)
        ]
        assert node.get_timer() is not None


def test_a_group_node_without_a_database_only_listens():
    listener = Traced(
        NodeConfig(
            rlocs=(DECENT_IPS[2],),
            xtr_id=9,
            group=GROUP,
            sites=lone_member().config.sites,
        )
    )
    member = lone_member()
    member.handle_timer(0.0)
    for data, dest in member.datagrams_to_send():
        if dest == ctl(DECENT_IPS[0]):  # the copy to its own Map-Server
            listener.receive_datagram(data, dest, 0.0)
    assert listener.membership() == [DECENT_IPS[0]]
    assert listener.get_timer() is not None


def test_register_waits_for_every_map_server_to_notify():
    second = IPv4Address("192.0.2.2")
    etr = Traced(etr_config(map_servers=(ctl(MS_IP), ctl(second))))
    etr.handle_timer(0.0)
    [(data, _), _] = etr.datagrams_to_send()
    reg = decode(data)
    assert isinstance(reg, MapRegister)
    notify = MapNotify(reg.nonce, reg.records).signed(KEY).encode()
    etr.receive_datagram(notify, ctl(MS_IP), 0.1)
    assert etr.soft_state_sizes()["pending_registers"] == 1
    etr.handle_timer(1.0)
    assert [dest for _, dest in etr.datagrams_to_send()] == [ctl(second)]


def test_the_most_specific_configured_prefix_bounds_a_negative_answer():
    narrow = AllowedPrefix(Eid.prefix("10.1.1.0/24"))
    site = Site("two", ((0, KEY),), (narrow, AllowedPrefix(SITE_PREFIX)))
    ms = Traced(ms_config(sites=(site,)))
    assert ms.negative_answer(Eid.prefix("10.1.1.9/32"))[0] == Eid.prefix("10.1.1.0/24")


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


def test_requests_are_forwarded_to_a_usable_etr_rloc():
    ms = Traced(ms_config())
    down = Locator(IPv4Address("192.0.2.40"), reachable=False)
    unusable = Locator(IPv4Address("192.0.2.41"), priority=255)
    good = Locator(IPv4Address("192.0.2.42"))
    rec = MapRecord(*ETR_EID.to_wire(), (down, unusable, good), 3)
    ms.receive_datagram(register_msg(rec), PEER, 0.0)
    ms.datagrams_to_send()
    ms.receive_datagram(request_msg("10.1.1.5/32", ITR_IP).encode(), ctl(ITR_IP), 0.0)
    [(_, dest)] = out(ms)
    assert dest == ctl(IPv4Address("192.0.2.42"))
