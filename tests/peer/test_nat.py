"""NAT traversal on the simulated network: discovery, relays, fail-over, bindings."""

from __future__ import annotations

import itertools
from dataclasses import replace
from ipaddress import IPv4Address, ip_address
from typing import Any

from decent.peer.config import Addr
from decent.peer.dataplane import DataPlane, DataPlaneConfig
from decent.peer.events import LocatorStateChanged, NatChanged, RelayClientChanged
from decent.peer.mapping.nat import RELAY_PRIORITY
from decent.peer.mapping.push_config import decent_node_config
from decent.wire import Eid, InfoReply, InfoRequest, decapsulate, decode
from decent.wire import decode_udp_packet as udp_of
from tests.peer.conftest import GROUP, KEY, Traced
from tests.peer.mesh import udp
from tests.peer.simnet import Nat, SimNet

P1, P2 = IPv4Address("198.18.42.1"), IPv4Address("198.18.42.2")
H1, H2 = IPv4Address("10.1.0.2"), IPv4Address("10.2.0.2")
NAT1, NAT2 = IPv4Address("198.18.42.101"), IPv4Address("198.18.42.102")
KEEPALIVE = 5.0


def eid(i: int) -> Eid:
    return Eid.prefix(f"192.0.2.{i}/32")


class NatNode(Traced):
    """A Traced node whose data plane's packets leave from its data port,
    as the shell sends them."""

    def data_datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out = super().data_datagrams_to_send()
        if self.dataplane is not None:
            for payload, ((host, port), _, _) in self.dataplane.packets_to_send():
                out.append((payload, (ip_address(host), port)))
        return out


class World:
    def __init__(self, *, homes: int = 2, forward: bool = False, **kw: Any) -> None:
        """Two public relays, p1 and p2, and `homes` members behind NAT;
        with `forward`, h1's router forwards ports 4341 and 4342 to it and
        h1 advertises the router's address."""
        self.net = SimNet(seed=5, record=True)
        to_h1 = H1 if forward else None
        self.nats = [
            self.net.add_nat(Nat({H1}, NAT1, timeout=30.0, forward=to_h1)),
            self.net.add_nat(Nat({H2}, NAT2, timeout=30.0)),
        ]
        counter = itertools.count(1)
        self.nodes: dict[str, NatNode] = {}
        self.dps: dict[str, DataPlane] = {}
        plan = [
            ("p1", P1, True),
            ("p2", P2, True),
            ("h1", H1, False),
            ("h2", H2, False),
        ]
        for i, (name, ip, relay) in enumerate(plan[: 2 + homes], start=1):
            cfg = decent_node_config(
                name=name,
                rlocs=(ip,),
                group=GROUP,
                key=KEY,
                xtr_id=i,
                eids=(eid(i),),
                seeds=(P1,) if ip != P1 else (P2,),
                nat="auto",
                relay=relay,
                nat_keepalive=KEEPALIVE,
                resolve_in_process=True,
                advertise=(NAT1,) if forward and ip == H1 else (),
                **kw,
            )
            node = NatNode(cfg, nonce=lambda: next(counter))
            self.net.add(node, (ip, 4342), (ip, 4341))
            self.nodes[name] = node
            self.dps[name] = node.ride(
                DataPlane(node, DataPlaneConfig(), nonce=lambda: 7)
            )

    def run(self, seconds: float) -> None:
        self.net.advance(seconds)

    def send(self, src: str, dst: int) -> None:
        """An IP packet from src's EID to eid(dst), into src's TUN."""
        me = list(self.nodes).index(src) + 1
        packet = udp(eid(me).address, eid(dst).address)
        self.dps[src].send_packet(packet, self.net.now)
        self.net.flush()

    def delivered(self, name: str) -> list[bytes]:
        return self.dps[name].packets_to_tun()

    def registration(self, at: str, i: int) -> list[tuple[object, int]]:
        entry = self.nodes[at].registration(eid(i))
        assert entry is not None, f"{at} holds no registration for {eid(i)}"
        return [(loc.address, loc.priority) for loc in entry.record.locators]


def test_home_members_find_their_nat_and_register_through_a_relay() -> None:
    w = World()
    w.run(30)
    h1, h2 = w.nodes["h1"], w.nodes["h2"]
    assert (h1.nat.state, h1.nat.relay, h1.nat.seen) == ("relayed", P1, (NAT1, 4341))
    assert (h2.nat.state, h2.nat.relay) == ("relayed", P1)
    assert w.nodes["p1"].nat.state == w.nodes["p2"].nat.state == "direct"
    # Every member holds every EID; a home's through its relay, its NAT's
    # address listed at 255 (never sent to, accepted from).
    for at in w.nodes:
        assert w.registration(at, 3) == [(P1, 1), (NAT1, 255)]
        assert w.registration(at, 4) == [(P1, 1), (NAT2, 255)]
        assert w.registration(at, 1) == [(P1, 1)]
    # The relays say so on their names; the homes are not in the RLE.
    name = w.nodes["p2"].registration(Eid.name("p1"))
    assert name is not None
    assert name.record.locators[0].priority == RELAY_PRIORITY
    assert set(w.nodes["p2"].membership()) == {P1, P2}
    assert {c.private for c in w.nodes["p1"].nat.clients.values()} == {H1, H2}
    assert [e.state for _, e in h1.events(NatChanged)][-1] == "relayed"
    # The relay says it carries them: their word that the group has them.
    assert h1.confirmed_at is not None
    assert h2.confirmed_at is not None
    assert len(w.nodes["p1"].events(RelayClientChanged)) == 2


def test_every_eid_reaches_every_other_through_the_nats() -> None:
    w = World()
    w.run(30)
    names = list(w.nodes)
    for a, src in enumerate(names, start=1):
        for b in range(1, 5):
            if b == a:
                continue
            w.send(src, b)
            w.net.settle()
            got = w.delivered(names[b - 1])
            assert len(got) == 1, f"{src} -> eid {b}: {len(got)} delivered"
    # A home sends to a public member directly, not through its relay.
    forwarded = w.nodes["p1"].counters["relay.forwarded"]
    w.send("h1", 2)
    w.net.settle()
    assert w.delivered("p2")
    assert w.nodes["p1"].counters["relay.forwarded"] == forwarded


def test_keepalives_hold_the_binding_open_for_hours() -> None:
    w = World()
    w.run(3 * 3600)
    assert w.nodes["h1"].nat.relay == P1
    assert w.nodes["h1"].counters["nat.relay-failed"] == 0
    w.send("p2", 3)
    w.net.settle()
    assert len(w.delivered("h1")) == 1
    # Each keepalive period costs the home one Info-Request to its relay.
    sent = w.nodes["h1"].counters["tx.info-request"]
    assert 3 * 3600 / KEEPALIVE <= sent <= 3 * 3600 / KEEPALIVE + 10


def test_a_conntrack_flush_gives_a_new_binding_that_the_relay_follows() -> None:
    w = World()
    w.run(30)
    p1 = w.nodes["p1"]
    before = {c.private: c.binding for c in p1.nat.clients.values()}
    w.nats[0].flush()
    w.run(KEEPALIVE + 1)
    after = {c.private: c.binding for c in p1.nat.clients.values()}
    assert after[H1] != before[H1]
    assert after[H2] == before[H2]
    assert p1.counters["nat.rebound"] == 1
    w.send("p2", 3)
    w.net.settle()
    assert len(w.delivered("h1")) == 1


def test_a_relay_that_dies_is_replaced_and_peers_follow() -> None:
    w = World()
    w.run(30)
    # Caches that name the relay about to die: they must follow the move
    # (no SMR reaches them: the home's ETR sees only its relay as ITR).
    for src, dst in (("h2", 3), ("p2", 3), ("h1", 4)):
        w.send(src, dst)
        w.net.settle()
        assert len(w.delivered(list(w.nodes)[dst - 1])) == 1
    w.net.remove(w.nodes["p1"])
    w.run(4 * KEEPALIVE)
    h1 = w.nodes["h1"]
    assert (h1.nat.state, h1.nat.relay) == ("relayed", P2)
    assert h1.counters["nat.relay-failed"] == 1
    assert w.registration("p2", 3) == [(P2, 1), (NAT1, 255)]
    assert w.registration("h2", 3) == [(P2, 1), (NAT1, 255)]
    for src, dst in (("h2", 3), ("p2", 3), ("h1", 4)):
        w.send(src, dst)
        w.net.settle()
        assert len(w.delivered(list(w.nodes)[dst - 1])) == 1, f"{src} -> {dst}"


def test_relay_clients_are_bounded_and_forgotten_when_silent() -> None:
    from decent.peer.config import Limits

    w = World(limits=Limits(relay_clients=1))
    w.run(30)
    p1 = w.nodes["p1"]
    assert len(p1.nat.clients) == 1
    assert p1.counters["drop.relay-full"] > 0
    # The one left out goes to the other relay.
    assert {w.nodes["h1"].nat.relay, w.nodes["h2"].nat.relay} == {P1, P2}
    w.net.remove(w.nodes["h1"])
    w.net.remove(w.nodes["h2"])
    w.run(10 * KEEPALIVE)
    assert not p1.nat.clients
    assert not w.nodes["p2"].nat.clients
    assert len(p1.nat.routes) == 0


def test_unauthenticated_or_unexpected_info_messages_change_nothing() -> None:
    w = World(homes=0)
    w.run(10)
    p1 = w.nodes["p1"]
    before = p1.soft_state_sizes()
    stranger = (IPv4Address("198.18.42.66"), 4341)
    p1.receive_datagram(InfoRequest(9).encode(), stranger, w.net.now, (P1, 4342))
    p1.receive_datagram(
        InfoRequest(9).signed(b"wrong"), stranger, w.net.now, (P1, 4342)
    )
    p1.receive_datagram(InfoReply(9).encode(), stranger, w.net.now, (P1, 4342))
    assert p1.counters["drop.auth-failed"] == 2
    assert p1.counters["drop.info-reply-unexpected"] == 1
    assert p1.soft_state_sizes() == before
    assert not p1.datagrams_to_send()
    assert not p1.data_datagrams_to_send()


def test_info_replies_say_where_the_request_came_from() -> None:
    w = World(homes=1)
    w.run(12)
    replies = [
        (src, dst, decode(udp_of(decapsulate(data)[1]).payload))
        for _, src, dst, data in w.net.trace
        if dst[1] != 4342 and src[0] == P1 and dst[0] == NAT1
    ]
    info = [(s, d, m) for s, d, m in replies if isinstance(m, InfoReply)]
    assert info, "no Info-Reply to the home"
    _, dst, reply = info[-1]
    assert (reply.nat.global_etr, reply.nat.etr_port) == dst
    assert reply.nat.ms_rloc == P1
    assert set(reply.nat.rtrs) == {P1, P2}


def test_an_advertised_address_is_registered_checked_and_reached_directly() -> None:
    w = World(forward=True)
    w.run(30)
    h1 = w.nodes["h1"]
    # The NAT check confirms the forward: peers see us where we advertise.
    assert (h1.nat.state, h1.nat.relay) == ("direct", None)
    for at in w.nodes:
        assert w.registration(at, 3) == [(NAT1, 1)]
    assert NAT1 in w.nodes["p2"].membership()
    assert H1 not in w.nodes["p2"].membership()
    for src, dst in (("p2", 3), ("h1", 2), ("h2", 3), ("h1", 4)):
        w.send(src, dst)
        w.net.settle()
        assert len(w.delivered(list(w.nodes)[dst - 1])) == 1, f"{src} -> {dst}"
    # Replicated straight to the forward, never through a relay.
    assert all(b[0] != NAT1 for b in w.nodes["p1"].nat.clients)
    assert w.nodes["p2"].counters["drop.replicated-spoofed"] == 0


def test_rloc_probes_keep_relayed_locators_up_for_an_hour() -> None:
    # A relay answers probes for its clients' EIDs; a member behind NAT
    # probes with the address its NAT gives it, so the answers come back.
    w = World(probe_interval=10.0)
    w.run(30)
    pairs = (("h1", 4), ("h2", 3), ("p2", 3), ("h1", 2), ("p1", 4))
    for src, dst in pairs:
        w.send(src, dst)
        w.net.settle()
        assert len(w.delivered(list(w.nodes)[dst - 1])) == 1
    w.run(3600)
    for src, dst in pairs:
        w.send(src, dst)
        w.net.settle()
        assert len(w.delivered(list(w.nodes)[dst - 1])) == 1, f"{src} -> {dst}"
    relays = {str(P1), str(P2)}
    for node in w.nodes.values():
        assert node.counters["drop.probe-not-for-us"] == 0
        downs = [e for _, e in node.events(LocatorStateChanged) if not e.up]
        assert [e for e in downs if e.rloc in relays] == []


def test_a_peer_reaches_a_home_that_comes_back_at_once() -> None:
    # Its negative entry (the home had left) goes when the home registers
    # again, not a negative TTL later.
    w = World()
    w.run(30)
    h1 = w.nodes["h1"]
    mappings = h1.database_mappings()
    w.send("p2", 3)
    w.net.settle()
    assert len(w.delivered("h1")) == 1
    h1.deregister(w.net.now)
    w.net.settle()
    w.send("p2", 3)
    w.net.settle()
    assert w.delivered("h1") == []
    h1.apply_database(mappings, w.net.now)
    w.net.settle()
    w.send("p2", 3)
    w.net.settle()
    assert len(w.delivered("h1")) == 1


def test_a_new_client_gets_every_registration_its_relay_holds_at_once() -> None:
    w = World(homes=0)
    w.run(100)  # the public members are past their quick registrations
    net = w.net
    cfg = decent_node_config(
        name="h1",
        rlocs=(H1,),
        group=GROUP,
        key=KEY,
        xtr_id=9,
        eids=(eid(3),),
        seeds=(P1,),
        nat="auto",
        nat_keepalive=KEEPALIVE,
        resolve_in_process=True,
    )
    late = NatNode(cfg, nonce=lambda: 99)
    net.add(late, (H1, 4342), (H1, 4341))
    net.advance(2)
    assert late.nat.relayed
    assert late.registration(eid(1)) is not None
    assert late.registration(eid(2)) is not None


def test_a_member_restarted_behind_the_same_binding_is_handed_everything() -> None:
    w = World()
    w.run(100)
    old = w.nodes["h1"]
    w.net.remove(old)
    fresh = NatNode(replace(old.config, xtr_id=77), nonce=lambda: 77)
    w.net.add(fresh, (H1, 4342), (H1, 4341))
    w.net.advance(2)
    assert fresh.nat.relayed
    for i in (1, 2, 4):
        assert fresh.registration(eid(i)) is not None, i
