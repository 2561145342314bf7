"""The data plane's fail-over: locator-status bits, RLOC probes, priorities."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

from decent.peer.events import LocatorStateChanged
from decent.wire import (
    DataHeader,
    DecodeError,
    Eid,
    MapReply,
    MapRequest,
    decapsulate,
    decode,
    encapsulate,
)
from tests.peer.conftest import N1, N2, N3, sent
from tests.peer.mesh import N2B, STRANGER, TWO, Mesh, eid4, mesh, udp

BACKUP = {1: {"rloc_policy": ((1, 100), (2, 100))}}  # n2: N2 first, N2B spare


# ---------------------------------------------------------------- locator-status bits
def test_received_locator_status_bits_move_our_traffic_off_a_down_rloc():
    m = mesh(two_rlocs=True)
    packets = [udp(eid4(1), eid4(2), sport=p) for p in range(40)]
    before = {r[0][0] for p in packets for _, r in m.send(0, p)}
    assert before == {str(N2), str(N2B)}
    # n2 says: my locator 1 (N2B) is down. Only its own RLOCs may say so.
    reply = encapsulate(DataHeader(nonce=1, lsbs=0b01), udp(eid4(2), eid4(1)))
    m.nodes[0].receive_datagram(reply, (STRANGER, 1), m.net.now, (N1, 4341))
    m.nodes[0].receive_datagram(reply, (N3, 1), m.net.now, (N1, 4341))
    assert {r[0][0] for p in packets for _, r in m.send(0, p)} == before
    m.nodes[0].receive_datagram(reply, (N2, 1), m.net.now, (N1, 4341))
    assert {r[0][0] for p in packets for _, r in m.send(0, p)} == {str(N2)}
    changed = m.nodes[0].events(LocatorStateChanged)
    assert changed[-1][1] == LocatorStateChanged(
        Eid.prefix("2.2.2.2/32"), str(N2B), False
    )
    m.nodes[0].receive_datagram(reply, (N2, 1), m.net.now, (N1, 4341))  # same bits
    assert m.nodes[0].counters["dataplane.lsb-change"] == 1
    back = encapsulate(DataHeader(nonce=1, lsbs=0b11), udp(eid4(2), eid4(1)))
    m.nodes[0].receive_datagram(back, (N2B, 1), m.net.now, (N1, 4341))
    assert {r[0][0] for p in packets for _, r in m.send(0, p)} == before


def test_a_packet_from_an_eid_we_have_not_cached_leaves_lsbs_alone():
    m = mesh()
    data = encapsulate(DataHeader(nonce=1, lsbs=0), udp(eid4(2), eid4(1)))
    m.nodes[0].receive_datagram(data, (N2, 1), m.net.now, (N1, 4341))
    assert m.dps[0].packets_to_tun() == [udp(eid4(2), eid4(1))]
    assert m.nodes[0].counters["dataplane.lsb-change"] == 0


# ---------------------------------------------------------------- fail-over
def test_our_rloc_going_down_reregisters_smrs_and_the_peer_fails_over():
    """n2 loses RLOC N2B: its packets say so at once, it re-registers with
    N2B's R bit clear and SMRs n1, which re-resolves and moves every flow."""
    m = mesh(two_rlocs=True)
    flows = [udp(eid4(1), eid4(2), sport=p) for p in range(40)]
    out = [o for p in flows for o in m.send(0, p)]
    m.carry(out, N1)  # n2 now knows n1 as a recent ITR
    m.dps[1].set_rloc_state(1, False, m.net.now)
    m.net.advance(1.0)
    assert m.nodes[0].counters["rx.map-request"] >= 1  # the SMR
    entry = m.nodes[0].cache.lookup(Eid.prefix("2.2.2.2/32"))
    assert entry is not None
    assert [s.locator.reachable for s in entry.locators] == [True, False]
    assert {r[0][0] for p in flows for _, r in m.send(0, p)} == {str(N2)}
    # n2's own packets leave from N2 and say N2B is down.
    [(payload, (_, src, _))] = m.send(1, udp(eid4(2), eid4(1)))
    assert (src, decapsulate(payload)[0].lsbs) == (0, 0b01)
    m.net.advance(3.0)  # SMRs are rate-limited: one per prefix per 3 s
    m.dps[1].set_rloc_state(1, True, m.net.now)
    m.net.advance(1.0)
    assert {r[0][0] for p in flows for _, r in m.send(0, p)} == {str(N2), str(N2B)}


def test_locators_go_ascending_and_our_status_bits_follow_them_not_the_config():
    """RFC 9301 5.5: a locator set goes in ascending order. n2 lists N2 first
    (its source and RLE member) and a lower second RLOC: peers get the lower
    one first, and n2's status bit 0 is that one, so when it goes down n2's
    packets say 0b10 and n1 moves every flow to N2."""
    low = IPv4Address("198.18.42.2")
    m = mesh(two_rlocs=True, second_rloc=low)
    assert m.nodes[1].config.rlocs == (N2, low)  # the config's order
    mapping = m.nodes[1].database.get(Eid.prefix("2.2.2.2/32"))
    assert mapping is not None
    assert [loc.address for loc in mapping.locators] == [low, N2]
    flows = [udp(eid4(1), eid4(2), sport=p) for p in range(40)]
    out = [o for p in flows for o in m.send(0, p)]
    m.carry(out, N1)
    entry = m.nodes[0].cache.lookup(Eid.prefix("2.2.2.2/32"))
    assert entry is not None
    assert [s.locator.address for s in entry.locators] == [low, N2]
    [(payload, _)] = m.send(1, udp(eid4(2), eid4(1)))
    assert decapsulate(payload)[0].lsbs == 0b11
    m.dps[1].set_rloc_state(1, False, m.net.now)  # `low`, the config's second
    m.net.advance(1.0)
    [(payload, (_, src, _))] = m.send(1, udp(eid4(2), eid4(1)))
    assert (src, decapsulate(payload)[0].lsbs) == (0, 0b10)
    entry = m.nodes[0].cache.lookup(Eid.prefix("2.2.2.2/32"))  # re-resolved
    assert entry is not None
    assert [s.locator.reachable for s in entry.locators] == [False, True]
    assert {r[0][0] for p in flows for _, r in m.send(0, p)} == {str(N2)}


def test_probing_alone_fails_over_within_the_probe_interval_plus_timeouts():
    """A failure n2 cannot see (the path, not its link): n1's RLOC probes
    time out and the flow moves to N2B no later than one probe interval
    plus the down-after probe timeouts after the failure."""
    m = mesh(two_rlocs=True, probe_interval=10.0)
    flow = udp(eid4(1), eid4(2), sport=7)
    m.send(0, flow)
    entry = m.nodes[0].cache.lookup(Eid.prefix("2.2.2.2/32"))
    assert entry is not None
    first = m.send(0, flow)[0][1][0][0]
    other = str(N2B) if first == str(N2) else str(N2)
    failed_at = m.net.now
    m.net.partition(N1, ip_address(first))
    cfg = m.nodes[0].config
    bound = failed_at + 10.0 + cfg.probe_down_after * cfg.probe_timeout
    while m.send(0, flow)[0][1][0][0] == first:
        assert m.net.now <= bound
        m.net.advance(0.25)
    assert m.send(0, flow)[0][1][0][0] == other
    down = [e for _, e in m.nodes[0].events(LocatorStateChanged) if not e.up]
    assert [e.rloc for e in down] == [first]


# ---------------------------------------------------------------- priorities
def used_rlocs(m: Mesh, flows: list[bytes]) -> set[str]:
    return {route[0][0] for p in flows for _, route in m.send(0, p)}


def test_rloc_priorities_reach_the_itr_and_the_backup_carries_nothing():
    m = mesh(two_rlocs=True, extra=BACKUP)
    flows = [udp(eid4(1), eid4(2), sport=p) for p in range(64)]
    assert used_rlocs(m, flows) == {str(N2)}
    entry = m.nodes[0].cache.lookup(TWO)
    assert entry is not None
    assert [(s.locator.priority, s.locator.weight) for s in entry.locators] == [
        (1, 100),
        (2, 100),
    ]
    assert [s.packets for s in entry.locators] == [64, 0]


def test_traffic_moves_to_priority_2_while_probes_to_priority_1_fail():
    """Only the path to N2 breaks (n2 still answers from N2): N2's probes
    time out, every flow moves to N2B, and back once N2 answers again."""
    m = mesh(two_rlocs=True, extra=BACKUP, probe_interval=10.0)
    flows = [udp(eid4(1), eid4(2), sport=p) for p in range(32)]
    assert used_rlocs(m, flows) == {str(N2)}
    m.net.drop = lambda _data, src, dst: src[0] == N1 and dst[0] == N2
    cfg = m.nodes[0].config
    m.net.advance(10.0 + cfg.probe_down_after * cfg.probe_timeout + 0.5)
    assert used_rlocs(m, flows) == {str(N2B)}
    m.net.drop = None
    m.net.advance(10.5)  # the next probe round reaches N2 again
    assert used_rlocs(m, flows) == {str(N2)}
    changes = [(e.rloc, e.up) for _, e in m.nodes[0].events(LocatorStateChanged)]
    assert changes == [(str(N2), False), (str(N2), True)]


def test_traffic_moves_to_priority_2_while_the_lsbs_say_priority_1_is_down():
    m = mesh(two_rlocs=True, extra=BACKUP)
    flows = [udp(eid4(1), eid4(2), sport=p) for p in range(32)]
    assert used_rlocs(m, flows) == {str(N2)}

    def from_n2b(lsbs: int) -> None:
        data = encapsulate(DataHeader(nonce=1, lsbs=lsbs), udp(eid4(2), eid4(1)))
        m.nodes[0].receive_datagram(data, (N2B, 1), m.net.now, (N1, 4341))

    from_n2b(0b10)  # locator 0 (N2) down, locator 1 (N2B) up
    assert used_rlocs(m, flows) == {str(N2B)}
    from_n2b(0b11)
    assert used_rlocs(m, flows) == {str(N2)}


def test_a_probe_reply_from_another_rloc_of_the_etr_still_counts():
    """n2 answers every probe from N2 (its outgoing address), also those
    sent to N2B: the nonce matches the reply to the probe, not the sender."""
    m = mesh(two_rlocs=True, probe_interval=10.0)
    m.send(0, udp(eid4(1), eid4(2)))
    m.net.trace.clear()
    m.net.advance(11.0)
    to_n2b = [
        msg
        for _, d, msg in sent(m.net, MapRequest, src=N1)
        if msg.probe and d == (N2B, 4342)
    ]
    assert len(to_n2b) == 1
    senders = {
        s[0]
        for _, s, _, data in m.net.trace
        if _probe_reply_nonce(data) == to_n2b[0].nonce
    }
    assert senders == {N2}
    entry = m.nodes[0].cache.lookup(TWO)
    assert entry is not None
    assert entry.locators[1].rtt is not None
    assert m.nodes[0].counters["drop.unsolicited-probe-reply"] == 0


def _probe_reply_nonce(data: bytes) -> int | None:
    try:
        msg = decode(data)
    except DecodeError:  # data-port packets
        return None
    return msg.nonce if isinstance(msg, MapReply) and msg.probe else None
