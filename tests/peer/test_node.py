"""The Node facade: dispatch, data port, read API, restore, events, sweep."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

from decent.peer.config import DatabaseMapping
from decent.peer.events import (
    MapCacheExpired,
    MapCacheUpdated,
    MapRequestFailed,
    MessageDropped,
    NotifyGaveUp,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationRejected,
    RegistrationRemoved,
)
from decent.peer.mapserver import Registration
from decent.peer.node import Node
from decent.wire import (
    DECENT_CONTROL_IID,
    DataHeader,
    Eid,
    EncapsulatedControlMessage,
    MapRecord,
    MapReferral,
    MapRegister,
    MapReply,
    Rle,
    RleEntry,
    UdpPacket,
    encapsulate,
)
from tests.peer.conftest import (
    DECENT_IPS,
    ETR_EID,
    ETR_IP,
    GROUP,
    HOST,
    ITR_IP,
    MS_IP,
    PEER,
    Traced,
    attach,
    ctl,
    decent_trio,
    itr_config,
    itr_with_fake_resolver,
    lab,
    locators,
    ms_config,
    record,
    register_msg,
    request_msg,
    state,
)

STRANGER = IPv4Address("192.0.2.66")


def drops(node: Node) -> dict[str, int]:
    return {k: v for k, v in node.counters.items() if k.startswith("drop.")}


# ---------------------------------------------------------------- dispatch
def test_map_referral_and_ecm_of_a_register_are_dropped():
    node = Traced(ms_config())
    node.receive_datagram(MapReferral(1, ()).encode(), PEER, 0.0)
    # An ECM'd Map-Register is a member carrying a plain xTR's on to us
    # (decent.peer.roles.ms); from anyone else it is dropped.
    ecm = EncapsulatedControlMessage(MapRegister(1, ()), ETR_IP, MS_IP)
    node.receive_datagram(ecm.encode(), PEER, 0.0)
    reply = EncapsulatedControlMessage(MapReply(1, ()), ETR_IP, MS_IP)
    node.receive_datagram(reply.encode(), PEER, 0.0)
    assert drops(node) == {
        "drop.unexpected-map-referral": 1,
        "drop.relay-not-member": 1,
        "drop.unsupported-ecm": 1,
    }


def test_reply_with_an_unusable_record_changes_nothing():
    net, itr, resolver = itr_with_fake_resolver()
    itr.request(HOST, 0.0)
    net.advance(0.1)
    nonce = resolver.messages()[0].message.nonce  # type: ignore[attr-defined]
    bad = MapRecord(Rle((RleEntry(ETR_IP, 128),)), 0, locators("192.0.2.10"))
    reply = MapReply(nonce, (record("10.1.1.0/24", "192.0.2.10"), bad))
    before = state(itr)
    resolver.out.append((reply.encode(), ctl(ITR_IP)))
    net.advance(0.1)
    assert itr.counters["drop.unusable-field"] == 1
    assert state(itr) == before


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


# ---------------------------------------------------------------- restore
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


def test_a_member_restarted_from_its_snapshot_is_confirmed_within_seconds():
    # The group still lists n2, so its restart changes no merged set and
    # brings no Map-Notify: only a lookup, asked soon after the restore
    # rather than a lookup period later, confirms that it is in.
    net, nodes = decent_trio()
    net.advance(40.0)
    n2 = nodes[1]
    eid = n2.config.group_eid
    assert eid is not None
    entry = n2.ms.db.get(eid)
    assert entry is not None
    children = list(entry.children.values())
    net.remove(n2)
    again = Traced(n2.config, now=net.now)
    assert again.restore_registration(eid, entry.site, True, True, children, net.now)
    attach(net, again)
    assert again.confirmed_at is None
    net.advance(5.0)
    assert again.confirmed_at is not None


# ---------------------------------------------------------------- read API
def test_the_read_api_lists_registrations_cache_and_database_in_eid_order():
    t = lab()
    t.net.advance(1.0)
    for host in ("10.1.1.5/32", "10.1.7.7/32"):
        t.itr.request(Eid.prefix(host), t.net.now)
    t.net.advance(1.0)
    assert [e.eid for e in t.ms.registrations()] == [ETR_EID]
    assert t.ms.registration(ETR_EID) is t.ms.ms.db.get(ETR_EID)
    assert t.ms.registration(HOST) is None  # exact by default
    assert t.ms.registration(HOST, exact=False) is t.ms.registration(ETR_EID)
    assert t.ms.registration(Eid.prefix("10.9.9.9/32"), exact=False) is None
    entries = t.itr.cache_entries()
    assert [str(e.eid) for e in entries] == ["[0]10.1.1.0/24", "[0]10.1.4.0/22"]
    assert [e.negative for e in entries] == [False, True]
    assert [m.eid for m in t.etr.database_mappings()] == [ETR_EID]
    assert t.ms.refused_registrants() == []
    assert t.etr.register_nonce > 0
    assert t.ms.timer_count() == len(t.ms._timers)


def test_apply_database_registers_new_and_changed_mappings_and_drops_the_rest():
    t = lab()
    t.net.advance(1.0)
    second = DatabaseMapping(Eid.prefix("10.1.2.0/24"), locators(ETR_IP))
    moved = DatabaseMapping(ETR_EID, locators("192.0.2.12"))
    assert t.etr.apply_database([moved, second], t.net.now) == (
        [ETR_EID, second.eid],
        [],
    )
    t.net.advance(1.0)
    assert [e.eid for e in t.ms.registrations()] == [ETR_EID, second.eid]
    entry = t.ms.registration(ETR_EID)
    assert entry is not None
    assert [str(loc.address) for loc in entry.record.locators] == ["192.0.2.12"]
    assert t.etr.apply_database([second], t.net.now) == ([], [ETR_EID])
    t.net.advance(1.0)
    assert [e.eid for e in t.ms.registrations()] == [second.eid]
    assert t.etr.database_mappings() == [second]


# ---------------------------------------------------------------- events and counters
def test_events_and_counters_are_readable_after_a_run():
    net, nodes = decent_trio()
    net.advance(5.0)
    kinds = {type(e).__name__ for _, e in nodes[0].log}
    assert {"RegistrationAccepted", "MergedSetChanged", "MapCacheUpdated"} <= kinds
    assert nodes[0].counters["registration.accepted"] == len(
        nodes[0].events(RegistrationAccepted)
    )
    assert nodes[0].next_event() is None  # the Traced shell drained them


def assert_counters_match_events(node: Traced) -> None:
    events = [e for _, e in node.log]
    by_reason = Counter(e.reason for e in events if isinstance(e, MessageDropped))
    drops = {k[5:]: v for k, v in node.counters.items() if k.startswith("drop.")}
    assert drops == dict(by_reason)
    rejected = Counter(e.reason for e in events if isinstance(e, RegistrationRejected))
    rejects = {k[7:]: v for k, v in node.counters.items() if k.startswith("reject.")}
    assert rejects == dict(rejected)

    def count(kind: type) -> int:
        return sum(isinstance(e, kind) for e in events)

    c = node.counters
    assert c["registration.accepted"] == count(RegistrationAccepted)
    assert c["registration.expired"] == count(RegistrationExpired)
    assert c["registration.removed"] == count(RegistrationRemoved)
    assert c["cache.installed"] == count(MapCacheUpdated)
    assert c["cache.expired"] <= count(MapCacheExpired)  # TTL 0 removes too
    assert c["notify.gave-up"] == count(NotifyGaveUp)
    assert c["request.failed"] == count(MapRequestFailed)


def test_counters_agree_with_events_on_a_rough_network():
    t = lab(
        seed=3,
        loss=0.2,
        duplicate=0.1,
        ms={"map_reply_rate": 0.5, "map_reply_burst": 2.0},
    )
    t.net.advance(30.0)
    for i in range(5):
        t.itr.request(Eid.prefix(f"10.1.{i}.9/32"), t.net.now)
        t.itr.request(Eid.prefix(f"10.{i + 3}.0.1/32"), t.net.now)
    # A stranger's hostile datagrams, delivered past the lossy links.
    rec = record("10.1.1.0/24", "192.0.2.66")
    for data, node in (
        (b"\x00garbage", t.ms),
        (register_msg(rec, key=b"guess"), t.ms),
        (register_msg(rec, key=None), t.ms),
        (request_msg("10.1.1.1/32", STRANGER, probe=True).encode(), t.ms),
        (request_msg("10.1.1.1/32", STRANGER, smr=True).encode(), t.itr),
    ):
        node.receive_datagram(data, ctl(STRANGER), t.net.now)
    t.net.advance(120.0)
    t.net.remove(t.etr)  # its registration will expire
    t.net.advance(400.0)
    for node in (t.ms, t.etr, t.itr):
        assert_counters_match_events(node)
    assert t.ms.counters["registration.expired"] == 1
    # Each refusal was counted (the rate limit may strike more than once).
    for node, name in (
        (t.ms, "reject.auth-failed"),
        (t.ms, "reject.auth-required"),
        (t.ms, "drop.decode-error"),
        (t.ms, "drop.probe-not-for-us"),
        (t.ms, "drop.rate-limited"),
        (t.itr, "drop.smr-not-cached"),
    ):
        assert node.counters[name] >= 1, name
    assert t.itr.counters["cache.installed"] >= 1


def test_counters_agree_with_events_in_a_decent_group_that_loses_acks():
    def no_acks(data: bytes, src: object, dst: object) -> bool:
        return len(data) > 0 and data[0] >> 4 == 5

    net, nodes = decent_trio(seed=5, drop=no_acks, loss=0.05)
    net.advance(100.0)
    nodes[2].deregister(net.now)
    net.settle()
    net.remove(nodes[2])
    net.advance(300.0)
    for node in nodes:
        assert_counters_match_events(node)
    assert nodes[0].counters["notify.gave-up"] > 0
    assert nodes[0].counters["registration.removed"] > 0


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
