"""The forwarding decision on the sans-I/O core: no TUN, no socket, simulated time."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from decent.peer.config import NodeConfig
from decent.peer.dataplane import DataPlane, DataPlaneConfig
from decent.wire import (
    DECENT_CONTROL_IID,
    Action,
    DataHeader,
    Eid,
    EncapsulatedControlMessage,
    MapRecord,
    MapRequest,
    UdpPacket,
    decapsulate,
    decode,
    encapsulate,
)
from decent.wire.icmp import too_big
from decent.wire.ip import internet_checksum
from tests.peer.conftest import (
    ETR_EID,
    ETR_IP,
    GROUP,
    ITR_IP,
    N1,
    N2,
    N3,
    Traced,
    ctl,
    lab,
)
from tests.peer.mesh import N2B, STRANGER, eid4, eid6, mesh, udp


# ---------------------------------------------------------------- ITR
def test_a_registered_eid_resolves_in_process_and_is_encapsulated_at_once():
    m = mesh()
    m.net.trace.clear()
    packet = udp(eid4(1), eid4(2))
    out = m.send(0, packet)
    [(payload, ((host, port), src, _flow))] = out
    assert (host, port, src) == (str(N2), 4341, 0)
    header, inner = decapsulate(payload)
    assert inner == packet
    assert header == DataHeader(nonce=0xABCDEF, lsbs=0b1)  # no IID for IID 0
    # Our own Map-Resolver answered: one Map-Request and one Map-Reply, and
    # not one datagram on the network.
    assert m.net.trace == []
    c = m.nodes[0].counters
    assert (c["tx.map-request"], c["rx.ecm"], c["rx.map-reply"]) == (1, 1, 1)
    entry = m.nodes[0].cache.lookup(Eid.prefix("2.2.2.2/32"))
    assert entry is not None
    assert (entry.packets, entry.bytes) == (1, len(packet))
    assert (entry.locators[0].packets, entry.locators[0].bytes) == (1, len(packet))
    # A second packet is a plain hit: no more Map-Requests.
    assert len(m.send(0, packet)) == 1
    assert c["tx.map-request"] == 1
    assert m.dps[0].stats()["encapsulated-packets"] == 2


def test_ipv6_eids_over_an_ipv4_underlay_and_the_etr_writes_them_out():
    m = mesh()
    packet = udp(eid6(1), eid6(3))
    out = m.send(0, packet)
    assert [r[0][0] for _, r in out] == [str(N3)]
    assert m.carry(out, N1) == [packet]
    assert m.dps[2].stats()["decapsulated-packets"] == 1


def test_instance_id_is_carried_in_the_header():
    m = mesh(iid=7)
    out = m.send(0, udp(eid4(1), eid4(2)))
    header, _ = decapsulate(out[0][0])
    assert (header.instance_id, header.lsbs) == (7, 1)
    assert m.carry(out, N1) == [udp(eid4(1), eid4(2))]


def test_the_source_port_hash_follows_the_5_tuple():
    m = mesh()
    m.send(0, udp(eid4(1), eid4(2)))

    def flow(sport: int, n: int = 10) -> int:
        [(_, (_, _, h))] = m.send(0, udp(eid4(1), eid4(2), sport=sport, n=n))
        return h

    assert flow(1000, 10) == flow(1000, 500)  # same flow, other packet
    assert len({flow(p) % 16 for p in range(1000, 1064)}) > 8  # flows spread
    v6 = [m.send(0, udp(eid6(1), eid6(2), sport=p))[0][1][2] for p in (1, 1, 2)]
    assert v6[0] == v6[1] != v6[2]


def test_every_fragment_of_a_datagram_hashes_like_the_others():
    """Ports go into the flow hash of unfragmented TCP/UDP only: a first
    fragment carries them but its followers cannot, and all must leave on
    one RLOC with one source port."""
    m = mesh()
    m.send(0, udp(eid4(1), eid4(2)))

    def flow(packet: bytes | bytearray) -> int:
        [(_, (_, _, h))] = m.send(0, bytes(packet))
        return h

    def fragment(sport: int, flags_offset: int) -> bytearray:
        packet = bytearray(udp(eid4(1), eid4(2), sport=sport))
        packet[6:8] = flags_offset.to_bytes(2, "big")
        return packet

    first = [flow(fragment(p, 0x2000)) for p in (1000, 2000)]  # MF, offset 0
    later = flow(fragment(3000, 0x00B9))  # offset 185 (x8 bytes), no ports
    assert first[0] == first[1] == later
    whole = {flow(fragment(p, 0x4000)) for p in (1000, 2000)}  # DF only
    assert len(whole) == 2


def test_locators_are_chosen_by_priority_then_weight():
    m = mesh(two_rlocs=True)
    # n2 registers both RLOCs at priority 1, weight 100: flows split.
    used = Counter(
        m.send(0, udp(eid4(1), eid4(2), sport=p))[0][1][0][0] for p in range(200)
    )
    assert set(used) == {str(N2), str(N2B)}
    assert min(used.values()) > 50
    entry = m.nodes[0].cache.lookup(Eid.prefix("2.2.2.2/32"))
    assert entry is not None
    assert sum(s.packets for s in entry.locators) == 200


def test_a_miss_queues_and_sends_exactly_one_map_request():
    t = lab()
    dp = t.itr.ride(DataPlane(t.itr, nonce=lambda: 1))
    t.net.advance(2.0)  # the ETR registers to the Map-Server
    packets = [udp("10.9.9.9", "10.1.1.5", sport=p) for p in range(5)]
    for p in packets:
        dp.send_packet(p, t.net.now)
    assert dp.packets_to_send() == []
    assert dp.stats()["queued"] == 5
    requests = [d for d, _ in t.itr.datagrams_to_send()]
    assert len(requests) == 1
    ecm = decode(requests[0])
    assert isinstance(ecm, EncapsulatedControlMessage)
    assert isinstance(ecm.message, MapRequest)
    t.net.flush()  # (nothing left: the request was taken above)
    t.itr.receive_datagram(requests[0], ctl(ITR_IP), t.net.now)  # harmless
    # Deliver the real request and let the answer come back.
    t.ms.receive_datagram(requests[0], ctl(ITR_IP), t.net.now)
    t.net.settle()
    released = dp.packets_to_send()
    assert [decapsulate(p)[1] for p, _ in released] == packets
    assert {r[0] for _, r in released} == {(str(ETR_IP), 4341)}
    assert dp.stats()["queued"] == 0


def test_the_miss_queue_is_bounded_and_full_drops_are_counted():
    t = lab()
    dp = t.itr.ride(DataPlane(t.itr, DataPlaneConfig(queue_size=3), nonce=lambda: 1))
    for p in range(5):
        dp.send_packet(udp("10.9.9.9", "10.1.1.5", sport=p), 0.0)
    assert dp.stats()["queued"] == 3
    assert t.itr.counters["drop.queue-full"] == 2
    assert t.itr.counters["dataplane.miss"] == 5


def test_stale_queued_packets_make_room_and_are_not_released():
    t = lab()
    dp = t.itr.ride(DataPlane(t.itr, DataPlaneConfig(queue_size=2), nonce=lambda: 1))
    dp.send_packet(udp("10.9.9.9", "10.1.1.5"), 0.0)
    dp.send_packet(udp("10.9.9.9", "10.1.1.6"), 0.0)
    dp.send_packet(udp("10.9.9.9", "10.1.1.7"), 10.0)  # the old two expire
    assert t.itr.counters["drop.queue-timeout"] == 2
    assert dp.stats()["queued"] == 1
    dp.send_packet(udp("10.9.9.9", "10.1.1.7"), 11.0)
    rec = MapRecord(*ETR_EID.to_wire(), (), 3)
    dp.on_install(ETR_EID, 20.0)  # too late for both
    assert t.itr.counters["drop.queue-timeout"] == 4
    assert dp.packets_to_send() == []
    assert rec.locators == ()


def test_an_unanswered_miss_drops_its_queue_when_the_request_gives_up():
    t = lab()
    dp = t.itr.ride(DataPlane(t.itr, nonce=lambda: 1))
    t.net.partition(ITR_IP, t.ms.config.rlocs[0])
    dp.send_packet(udp("10.9.9.9", "10.1.1.5"), t.net.now)
    t.net.advance(12.0)  # ten unanswered Map-Requests, one a second
    assert t.itr.counters["request.failed"] == 1
    assert t.itr.counters["drop.unresolved"] == 1
    assert dp.stats()["queued"] == 0


def test_without_a_map_resolver_the_packet_waits_then_times_out():
    node = Traced(NodeConfig(rlocs=(ITR_IP,), xtr_id=1))
    dp = node.ride(DataPlane(node, DataPlaneConfig(queue_size=1), nonce=lambda: 1))
    dp.send_packet(udp("10.9.9.9", "10.1.1.5"), 0.0)
    assert node.counters["drop.no-map-resolver"] == 1
    dp.on_request_failed(Eid.prefix("10.7.7.7/32"))  # nothing waited for it
    assert dp.stats()["queued"] == 1


@pytest.mark.parametrize(
    ("dp_config", "outcome"),
    [
        ({}, "drop.negative"),
        ({"negative_action": "native"}, "dataplane.native"),
        ({"petr": N3}, "dataplane.petr"),
    ],
)
def test_an_unregistered_eid_gets_the_configured_negative_action(dp_config, outcome):
    m = mesh(dp=dp_config)
    packet = udp(eid4(1), "4.4.4.4")
    out = m.send(0, packet)
    dp, counters = m.dps[0], m.nodes[0].counters
    entry = m.nodes[0].cache.lookup(Eid.prefix("4.4.4.4/32"))
    assert entry is not None
    assert entry.negative
    assert counters[outcome] == 1
    native = dp.packets_to_native()
    if outcome == "dataplane.petr":
        [(payload, ((host, _), _, _))] = out
        assert host == str(N3)
        assert decapsulate(payload)[1] == packet
        # The PETR is a registered RLOC, but 4.4.4.4 is not its EID: LISP-MN
        # 13, it does not decapsulate for anyone's destination.
        assert m.carry(out, N1) == []
        assert m.nodes[2].counters["drop.not-our-eid"] == 1
    elif outcome == "dataplane.native":
        assert (out, native) == ([], [packet])
    else:
        assert (out, native) == ([], [])
    assert entry.packets == 1


def test_a_negative_entry_with_a_drop_action_drops_even_with_a_petr():
    m = mesh(dp={"petr": N3})
    node = m.nodes[0]
    addr, mask = Eid.prefix("5.0.0.0/8").to_wire()
    node.cache.install(
        Eid.prefix("5.0.0.0/8"),
        MapRecord(addr, mask, (), 1, Action.DROP_POLICY_DENIED),
        "test",
        0.0,
    )
    assert m.send(0, udp(eid4(1), "5.1.1.1")) == []
    assert node.counters["drop.negative-drop-action"] == 1


def test_junk_from_the_tun_is_dropped_and_counted():
    m = mesh()
    dp, c = m.dps[0], m.nodes[0].counters
    for junk in (b"\x45" * 10, b"\x75" + bytes(40), b"\x60" + bytes(30)):
        dp.send_packet(junk, 0.0)
    dp.send_packet(udp(eid4(1), "224.0.0.251"), 0.0)
    dp.send_packet(udp(eid6(1), "ff02::16"), 0.0)
    dp.send_packet(udp("fe80::1", "fe80::2"), 0.0)
    assert (c["drop.short-packet"], c["drop.not-ip"], c["drop.not-unicast"]) == (
        1,
        2,
        3,
    )
    assert c["tx.map-request"] == 0


def test_a_mapping_that_names_our_own_rloc_is_not_used():
    m = mesh()
    assert m.send(0, udp(eid4(2), eid4(1))) == []
    assert m.nodes[0].counters["drop.own-rloc"] == 1


def test_no_usable_rloc_or_source_rloc_drops():
    m = mesh()
    m.send(0, udp(eid4(1), eid4(2)))
    entry = m.nodes[0].cache.lookup(Eid.prefix("2.2.2.2/32"))
    assert entry is not None
    entry.locators[0].up = False
    m.nodes[0].cache.generation += 1
    assert m.send(0, udp(eid4(1), eid4(2))) == []
    assert m.nodes[0].counters["drop.no-usable-rloc"] == 1
    entry.locators[0].up = True
    m.nodes[0].cache.generation += 1
    m.dps[0].set_rloc_state(0, False, m.net.now)  # our only RLOC is down
    assert m.send(0, udp(eid4(1), eid4(3))) == []
    assert m.nodes[0].counters["drop.no-source-rloc"] == 1
    m.dps[0].set_rloc_state(0, False, m.net.now)  # no change: nothing happens
    assert not m.dps[0].rloc_up(0)
    assert m.nodes[0].counters["rloc.down"] == 1


# ---------------------------------------------------------------- MTU
def test_too_big_packets_get_an_icmp_fragmentation_needed_toward_the_sender():
    m = mesh()
    dp = m.dps[0]
    m.send(0, udp(eid4(1), eid4(2)))
    big = udp(eid4(1), eid4(2), n=1500 - 28)  # 1500 bytes, DF set
    assert m.send(0, big) == []
    [icmp] = dp.packets_to_tun()
    assert icmp == too_big(big, eid4(2).packed, 1500 - 36)
    assert icmp[9] == 1
    assert icmp[12:16] == eid4(2).packed  # "from" where it was going
    assert icmp[16:20] == eid4(1).packed  # to the sender
    assert internet_checksum(icmp[:20]) == 0
    assert internet_checksum(icmp[20:]) == 0
    assert (icmp[20], icmp[21], int.from_bytes(icmp[26:28], "big")) == (3, 4, 1464)
    assert icmp[28:48] == big[:20]
    assert m.nodes[0].counters["drop.too-big"] == 1


def test_ipv6_too_big_gets_a_packet_too_big():
    m = mesh()
    big = udp(eid6(1), eid6(2), n=1500 - 48)
    assert m.send(0, big) == []
    [icmp] = m.dps[0].packets_to_tun()
    assert (icmp[6], icmp[40], int.from_bytes(icmp[44:48], "big")) == (58, 2, 1464)
    assert icmp[8:24] == eid6(2).packed
    assert icmp[24:40] == eid6(1).packed
    pseudo = icmp[8:40] + (len(icmp) - 40).to_bytes(4, "big") + bytes(3) + b"\x3a"
    assert internet_checksum(pseudo + icmp[40:]) == 0
    assert len(icmp) == 1280


def test_ipv4_without_df_is_sent_for_the_kernel_to_fragment():
    m = mesh()
    big = bytearray(udp(eid4(1), eid4(2), n=1500 - 28))
    big[6] = 0  # clear DF (the UDP checksum does not cover the IP header)
    big[10:12] = b"\0\0"
    big[10:12] = internet_checksum(bytes(big[:20])).to_bytes(2, "big")
    [(payload, _)] = m.send(0, bytes(big))
    assert decapsulate(payload)[1] == bytes(big)
    assert m.nodes[0].counters["dataplane.outer-fragmented"] == 1


def test_icmp_errors_are_rate_limited_and_never_answer_an_icmp_error():
    m = mesh(dp={"icmp_rate": 2.0})
    dp = m.dps[0]
    big = udp(eid4(1), eid4(2), n=1500)
    for _ in range(5):
        m.send(0, big)
    assert len(dp.packets_to_tun()) == 2
    assert m.nodes[0].counters["dataplane.icmp-rate-limited"] == 3
    # An ICMP error from us toward 2.2.2.2, too big to encapsulate.
    error = too_big(udp(eid4(2), eid4(1), n=1500), eid4(1).packed, 1000)
    error = error[:6] + b"\x40\x00" + error[8:]  # DF set
    m.net.advance(10.0)
    assert m.send(0, error + bytes(1500)) == []
    assert dp.packets_to_tun() == []
    assert m.nodes[0].counters["drop.too-big"] == 6


# ---------------------------------------------------------------- ETR
def test_the_etr_decapsulates_only_from_registered_rlocs_for_our_eids():
    m = mesh()
    dp, c = m.dps[1], m.nodes[1].counters
    good = encapsulate(DataHeader(nonce=1, lsbs=1), udp(eid4(1), eid4(2)))

    def rx(data: bytes, src: IPv4Address) -> list[bytes]:
        m.nodes[1].receive_datagram(data, (src, 50000), m.net.now, (N2, 4341))
        return dp.packets_to_tun()

    assert rx(good, N1) == [udp(eid4(1), eid4(2))]
    assert rx(good, STRANGER) == []
    assert c["drop.unknown-rloc"] == 1
    not_ours = encapsulate(DataHeader(nonce=1), udp(eid4(1), eid4(3)))
    assert rx(not_ours, N1) == []
    assert c["drop.not-our-eid"] == 1
    other_iid = encapsulate(DataHeader(instance_id=5), udp(eid4(1), eid4(2)))
    assert rx(other_iid, N1) == []
    assert c["drop.wrong-iid"] == 1
    assert rx(encapsulate(DataHeader(), b"\x45" * 12), N1) == []
    assert rx(encapsulate(DataHeader(), b"\x75" * 40), N1) == []
    assert rx(b"\x00" * 7, N1) == []  # no header at all
    assert (c["drop.short-packet"], c["drop.not-ip"], c["drop.decode-error"]) == (
        1,
        1,
        1,
    )
    # Nothing the strangers sent changed a thing: the ITR seen is only n1.
    assert m.nodes[1]._recent_itrs == {Eid.prefix("2.2.2.2/32"): {N1: m.net.now}}


def test_replicated_control_traffic_still_reaches_the_node_on_the_fast_path():
    m = mesh()
    node, dp = m.nodes[1], m.dps[1]
    inner = UdpPacket(N1, GROUP, 4342, 4342, b"\x10" + bytes(3)).encode()
    data = encapsulate(DataHeader(nonce=1, instance_id=DECENT_CONTROL_IID), inner)
    buf = bytearray(data)
    before = node.counters["rx.replicated"]
    assert dp.decap(buf, len(buf), str(N1), 4341, 0.0) is None
    assert node.counters["rx.replicated"] == before + 1
    short = encapsulate(DataHeader(nonce=1, instance_id=DECENT_CONTROL_IID), b"\x45")
    errors = node.counters["drop.decode-error"]  # the junk Map-Request above
    assert dp.decap(bytearray(short), len(short), str(N1), 4341, 0.0) is None
    assert node.counters["drop.decode-error"] == errors + 1


def test_an_unencapsulating_node_still_drops_data_as_before():
    node = Traced(NodeConfig(rlocs=(ITR_IP,), xtr_id=1))
    data = encapsulate(DataHeader(nonce=1), udp(eid4(1), eid4(2)))
    node.receive_datagram(data, (ETR_IP, 4341), 0.0, (ITR_IP, 4341))
    assert node.counters["drop.data-plane-off"] == 1


# ---------------------------------------------------------------- corners
@pytest.mark.parametrize(
    "bad",
    [{"negative_action": "teleport"}, {"queue_size": -1}, {"underlay_mtu": 600}],
)
def test_a_bad_data_plane_config_is_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        DataPlaneConfig(**bad)


def test_petr_needs_a_source_rloc_of_its_family_and_respects_the_mtu():
    m = mesh(dp={"petr": IPv6Address("2001:db8::1")})
    assert m.send(0, udp(eid4(1), "4.4.4.4")) == []
    assert m.nodes[0].counters["drop.no-source-rloc"] == 1
    m = mesh(dp={"petr": N3})
    assert m.send(0, udp(eid4(1), "4.4.4.4", n=1500)) == []
    assert m.nodes[0].counters["drop.too-big"] == 1
    assert len(m.dps[0].packets_to_tun()) == 1


def test_weight_zero_locators_share_evenly_and_v6_without_ports_hashes():
    m = mesh()
    node = m.nodes[0]
    eid = Eid.prefix("fd00:99::/64")
    locs = tuple(
        replace_weight(loc) for loc in m.nodes[2].config.database[2].locators
    ) + tuple(replace_weight(loc, N2) for loc in m.nodes[2].config.database[2].locators)
    node.cache.install(eid, MapRecord(*eid.to_wire(), locs, 3), "test", m.net.now)
    icmp6 = bytearray(udp(eid6(1), "fd00:99::1"))
    icmp6[6] = 58  # not TCP/UDP: addresses and protocol only
    hosts = {m.send(0, bytes(icmp6))[0][1][0][0] for _ in range(3)}
    assert len(hosts) == 1


def replace_weight(loc: Any, address: Any = None) -> Any:
    from dataclasses import replace

    return replace(loc, weight=0, address=address or loc.address)


def test_rle_names_and_many_sources_are_harmless():
    m = mesh()
    dp = m.dps[1]
    for i in range(4100):  # the host memo is bounded
        dp._remember(f"10.0.{i >> 8}.{i & 255}")
    assert len(dp._addr_memo) < 4100
    from decent.wire import DistinguishedName, Locator, Rle, RleEntry

    rle = Locator(Rle((RleEntry(DistinguishedName("x")), RleEntry(N3, 128))))
    eid = Eid.prefix("9.9.9.9/32")
    entry = m.nodes[1].ms.db.get(Eid.prefix("1.1.1.1/32"))
    assert entry is not None
    entry.record = MapRecord(*eid.to_wire(), (rle,), 3)
    m.nodes[1].registry_version += 1
    data = encapsulate(DataHeader(nonce=1), udp(eid4(3), eid4(2)))
    m.nodes[1].receive_datagram(data, (N3, 1), m.net.now, (N2, 4341))
    assert dp.packets_to_tun() == [udp(eid4(3), eid4(2))]


def test_the_locator_order_is_ascending_ipv4_first_and_others_last():
    from decent.peer.config import rloc_order
    from decent.wire import DistinguishedName

    v6, a, b = IPv6Address("2001:db8::1"), IPv4Address("10.0.0.9"), N1
    name = DistinguishedName("x")
    assert sorted([name, v6, b, a], key=rloc_order) == [a, b, v6, name]
