"""The Map-Server role against the attack run: nonces, merge bit, quotas.

Every test here replays one item of the hardening issue against sans-I/O
nodes on the simulated network: nonce poisoning (1), the merge bit (5),
quotas (6) and the accepted algorithms (9). Hours of protocol time run in
milliseconds; nothing sleeps."""

from __future__ import annotations

from ipaddress import IPv4Address

from decent.peer.config import Limits
from decent.peer.events import RegistrationRejected
from decent.wire import (
    Eid,
    Locator,
    MapNotify,
    MapNotifyAck,
    MapRecord,
    Rle,
    RleEntry,
    decode,
)
from tests.peer.attack import EVIL, evil_register, member, needs_tshark
from tests.peer.conftest import (
    DECENT_IPS,
    HOUR,
    KEY,
    Raw,
    Traced,
    attach,
    ctl,
    decent_trio,
    nonces,
    record,
)
from tests.peer.simnet import Addr, SimNet
from tests.wire.tshark import MAP_NOTIFY_ACK_BODY, MAP_NOTIFY_ACK_TYPE, assert_clean

N2_SLOT = ("decent-group", 2, 0)


def rlocs_of(node: Traced, eid: Eid) -> list[object]:
    entry = node.ms.db.get(eid)
    assert entry is not None
    return [loc.address for loc in entry.record.locators]


def members_of(node: Traced) -> set[IPv4Address]:
    return {m for m in node.membership() if isinstance(m, IPv4Address)}


# ------------------------------------------------------------ 1: nonce poisoning
class KeyHolder(Raw):
    """A member gone rogue at its own address: it answers every challenge a
    Map-Server sends it, as it holds the group key."""

    def receive_datagram(
        self, data: bytes, addr: Addr, now: float, local: Addr | None = None
    ) -> None:
        super().receive_datagram(data, addr, now, local)
        msg = decode(data)
        if isinstance(msg, MapNotify):
            ack = MapNotifyAck(msg.nonce, msg.records, 0).signed(KEY)
            self.out.append((ack.encode(), addr))


def poisoned_trio(nonce: int) -> tuple[SimNet, list[Traced], KeyHolder]:
    """The attack as it ran: n2's xTR-ID with `nonce`, to n1 and n3."""
    net, nodes = decent_trio(ttl=3, register_interval=60.0)
    evil = KeyHolder()
    net.add(evil, ctl(EVIL))
    net.run(120.0)
    assert all(len(members_of(n)) == 3 for n in nodes)
    # n2's xTR-ID is 2 (it is on every /api/node).
    forged = evil_register((record(Eid.name("n2"), str(EVIL)),), nonce, xtr_id=2)
    evil.out += [(forged, ctl(DECENT_IPS[0])), (forged, ctl(DECENT_IPS[2]))]
    return net, nodes, evil


def assert_n2_everywhere(nodes: list[Traced]) -> None:
    for node in nodes:
        assert DECENT_IPS[1] in members_of(node)
        entry = node.ms.db.get(Eid.name("n2"))
        assert entry is not None
        assert [loc.address for loc in entry.record.locators] == [DECENT_IPS[1]]


def n2_mark(node: Traced) -> int:
    """The nonce mark of n2's own address at node."""
    return node.ms.replay.marks[(N2_SLOT, DECENT_IPS[1])]


def test_a_forged_top_nonce_under_another_xtr_id_does_not_lock_it_out():
    net, nodes, evil = poisoned_trio((1 << 64) - 1)
    n1, _, n3 = nodes
    net.run(net.now + 1.0)
    # The attacker answered its own challenge with the key: it may speak for
    # n2's xTR-ID from its own address (impersonation needs the trust
    # issue's per-node keys), but only that address's mark moved.
    for node in (n1, n3):
        assert node.counters["reject.nonce-jump"] == 1
        assert node.counters["resync.confirmed"] == 1
        assert node.ms.nonces[N2_SLOT] == (1 << 64) - 1  # the ceiling
        assert n2_mark(node) < 1 << 32
    # And it keeps at it, as the attack run did, every 5 s for hours, with
    # nonces of all sizes, while it answers every challenge.
    for k in range(6 * 720):
        forged = evil_register(
            (record(Eid.name("n2"), str(EVIL)),), (k * 7919) % (1 << 64), xtr_id=2
        )
        evil.out += [(forged, ctl(DECENT_IPS[0])), (forged, ctl(DECENT_IPS[2]))]
        net.run(net.now + 5.0)
        if k % 60 == 0:
            # Before the fix every later register of n2 failed
            # `replayed-nonce` and n2 aged out of n1 and n3 after its TTL.
            assert DECENT_IPS[1] in members_of(n1)
            assert DECENT_IPS[1] in members_of(n3)
    # n2 registered all along from its own address, its mark its own.
    for node in (n1, n3):
        assert n2_mark(node) < 1 << 32
        assert node.counters["rx.map-register"] > 0


def test_a_forged_nonce_from_the_registrants_own_address_costs_it_one_round():
    net, nodes = decent_trio(ttl=3, register_interval=60.0)
    net.run(120.0)
    n1 = nodes[0]
    mark = n2_mark(n1)
    # An attacker that can fake n2's source address (not receive at it).
    evil = Raw()
    net.add(evil, ctl(EVIL), source=ctl(DECENT_IPS[1]))
    forged = evil_register(
        (record(Eid.name("n2"), str(EVIL)),), mark + Limits().nonce_window, xtr_id=2
    )
    evil.out.append((forged, ctl(DECENT_IPS[0])))
    net.run(net.now + 1.0)
    assert n2_mark(n1) == mark + Limits().nonce_window
    net.run(net.now + 6 * HOUR)
    # n2's next Map-Register was challenged and confirmed, and the mark of
    # its address is its own again.
    assert_n2_everywhere(nodes)
    assert 1 <= n1.counters["resync.confirmed"] <= 3  # the one round
    assert n2_mark(n1) < mark + 6 * 60 * 10


def test_an_unanswered_jump_changes_nothing():
    net, nodes = decent_trio(ttl=3, register_interval=60.0)
    net.run(120.0)
    n1 = nodes[0]
    mark = n1.ms.nonces[N2_SLOT]
    evil = Raw()
    net.add(evil, ctl(EVIL))
    forged = evil_register((record(Eid.name("n2"), str(EVIL)),), 1 << 63, xtr_id=2)
    evil.out.append((forged, ctl(DECENT_IPS[0])))
    net.run(net.now + 0.5)
    assert n1.counters["reject.nonce-jump"] == 1
    assert n1.counters["tx.challenge"] == 1
    assert n1.ms.nonces[N2_SLOT] == mark
    assert_n2_everywhere(nodes)


def test_a_poisoned_mark_restored_from_a_snapshot_is_recovered_too():
    net, nodes = decent_trio(ttl=3, register_interval=60.0)
    # What a snapshot taken after the poisoning held, before n1 started.
    nodes[0].ms.nonces[N2_SLOT] = (1 << 64) - 1
    net.run(HOUR)
    assert_n2_everywhere(nodes)
    assert nodes[0].counters["resync.confirmed"] >= 1


def test_an_outsider_replaying_old_registrations_gets_nothing_applied():
    net, nodes = decent_trio(ttl=3, register_interval=60.0, record=True)
    n1, n2, _ = nodes
    net.run(120.0)
    # Capture n2's Map-Registers as they went to n1, then move n2.
    captured = [
        data
        for _, src, dst, data in net.trace
        if src[0] == DECENT_IPS[1] and dst == ctl(DECENT_IPS[0]) and data[0] >> 4 == 3
    ]
    assert captured
    new_rloc = IPv4Address("198.18.42.22")
    net.remove(n2)
    n2.change_rlocs([new_rloc], net.now)
    attach(net, n2)
    net.run(net.now + 120.0)
    name = Eid.name("n2")
    assert rlocs_of(n1, name) == [new_rloc]
    # Replayed from n2's old address: challenged, never confirmed (n2 no
    # longer registers those records), so nothing moves back.
    evil = Raw()
    net.add(evil, ctl(DECENT_IPS[1]))
    evil.out += [(data, ctl(DECENT_IPS[0])) for data in captured]
    net.run(net.now + 30.0)
    entry = n1.ms.db.get(name)
    assert entry is not None
    assert [loc.address for loc in entry.record.locators] == [new_rloc]
    assert n1.counters["reject.replayed-nonce"] >= len(captured)
    assert n1.counters["tx.challenge"] >= 1
    assert n1.counters["resync.confirmed"] == 0


def test_an_outsider_replaying_from_the_registrants_own_address_gets_nothing():
    """The attack run's follow-up: a captured Map-Register replayed with n2's
    current address faked, after n2 removed an EID (and the same with a
    captured TTL-0 deregistration of an EID n2 added back): n2 is asked to
    confirm and will not, so nothing old comes back and nothing live goes."""
    net, nodes = decent_trio(ttl=3, register_interval=60.0, record=True)
    n1, n2, _ = nodes
    extra = Eid.prefix("10.2.0.9/32")
    n2.set_locators(extra, n2.database.get(Eid.name("n2")).locators, net.now)  # type: ignore[union-attr]
    net.run(net.now + 120.0)
    assert n1.ms.db.get(extra) is not None

    def captured() -> list[bytes]:
        return [
            data
            for _, src, dst, data in net.trace
            if src[0] == DECENT_IPS[1]
            and dst == ctl(DECENT_IPS[0])
            and data[0] >> 4 == 3
        ]

    with_extra = captured()
    net.trace.clear()
    n2.deregister(net.now, [extra])
    net.run(net.now + 120.0)
    assert n1.ms.db.get(extra) is None
    removal = captured()
    evil = Raw()
    net.add(evil, ctl(EVIL), source=ctl(DECENT_IPS[1]))
    evil.out += [(data, ctl(DECENT_IPS[0])) for data in with_extra]
    net.run(net.now + 30.0)
    assert n1.ms.db.get(extra) is None  # before: back from the replay
    assert n1.counters["tx.challenge"] >= 1
    # n2 confirms only what it still registers (the unchanged ones), and
    # refuses the one that carried the removed EID.
    assert n2.counters["drop.not-our-registration"] >= 1
    # n2 registers the EID again; a replayed deregistration must not undo it.
    n2.set_locators(extra, n2.database.get(Eid.name("n2")).locators, net.now)  # type: ignore[union-attr]
    net.run(net.now + 120.0)
    assert n1.ms.db.get(extra) is not None
    evil.out += [(data, ctl(DECENT_IPS[0])) for data in removal]
    net.run(net.now + 30.0)
    assert n1.ms.db.get(extra) is not None  # before: gone until n2's next period
    assert n2.counters["drop.not-our-registration"] >= 2


def test_a_restart_that_lost_its_nonce_reservation_resynchronises():
    net, nodes = decent_trio(ttl=3, register_interval=60.0)
    net.run(120.0)
    n1, n2, n3 = nodes
    # n2 has been up for weeks, then restarts from nonce 0: its state dir
    # was lost, its xTR-ID kept. Before, it was refused until its nonces
    # passed the old ones again, and aged out meanwhile.
    for node in (n1, n3):
        node.ms.nonces[N2_SLOT] = 100_000
        node.ms.replay.marks[(N2_SLOT, DECENT_IPS[1])] = 100_000
    net.remove(n2)
    fresh = Traced(n2.config, nonce=nonces(7 << 48), now=net.now, register_nonce=0)
    attach(net, fresh)
    for _ in range(60):
        net.run(net.now + 60.0)
        assert_n2_everywhere([n1, n3])
    assert 1 <= n1.counters["resync.confirmed"] <= 3  # once, then in step
    assert n2_mark(n1) < 100_000


def test_challenges_are_bounded_per_source_and_in_all():
    node = member(1, limits=Limits(max_challenges=10))
    src = ctl(EVIL)
    node.receive_datagram(
        evil_register((record("10.9.0.1/32", str(EVIL)),), 50), src, 0
    )
    for n in range(20):  # stale nonces from one source: eight challenges
        node.receive_datagram(
            evil_register((record("10.9.0.1/32", str(EVIL)),), n), src, 1.0
        )
    assert node.counters["tx.challenge"] == 8
    for i in range(10):  # the same registrant from other sources: ten in all
        node.receive_datagram(
            evil_register((record("10.9.0.1/32", str(EVIL)),), 1),
            (IPv4Address(f"198.18.7.{i}"), 4342),
            1.0,
        )
    assert node.soft_state_sizes()["challenges"] == 10
    node.handle_timer(60.0)  # unanswered challenges expire
    assert node.soft_state_sizes()["challenges"] == 0


def test_a_duplicate_is_dropped_without_a_challenge():
    node = member(1)
    data = evil_register((record("10.9.0.1/32", str(EVIL)),), 5)
    node.receive_datagram(data, ctl(EVIL), 0.0)
    node.receive_datagram(data, ctl(EVIL), 0.1)
    assert node.counters["reject.replayed-nonce"] == 1
    assert node.counters["tx.challenge"] == 0


def test_every_challenge_and_confirmation_is_wire_clean():
    """The exchange uses only RFC 9301 messages: a Map-Notify and its Ack."""
    net, _nodes, _ = poisoned_trio((1 << 64) - 1)
    net.record = True
    net.run(net.now + 300.0)
    kinds = {
        type(decode(d)).__name__ for _, _, _, d in net.trace if d[0] >> 4 in (4, 5)
    }
    assert kinds == {"MapNotify", "MapNotifyAck"}


@needs_tshark
def test_the_resync_exchange_dissects_cleanly():
    net, _, _ = poisoned_trio((1 << 64) - 1)
    net.record = True
    net.run(net.now + 600.0)
    exchange = [
        data
        for _, _, dst, data in net.trace
        if dst[1] == 4342 and isinstance(decode(data), MapNotify | MapNotifyAck)
    ]
    kinds = {type(decode(d)) for d in exchange}
    assert kinds == {MapNotify, MapNotifyAck}
    notifies = [(d, 4342) for d in exchange if isinstance(decode(d), MapNotify)]
    assert_clean(notifies)
    acks = [(d, 4342) for d in exchange if isinstance(decode(d), MapNotifyAck)]
    assert_clean(
        acks,
        {
            MAP_NOTIFY_ACK_TYPE: "tshark 4.0 has no Map-Notify-Ack (RFC 9301 type 5)",
            MAP_NOTIFY_ACK_BODY: "so it leaves the body after the type undecoded",
        },
    )


# ------------------------------------------------------------ 5: the merge bit
def test_a_group_register_without_the_merge_bit_replaces_only_its_own_child():
    net, nodes = decent_trio()
    net.run(120.0)
    evil = Raw()
    net.add(evil, ctl(EVIL))
    group_eid = nodes[0].config.group_eid
    assert group_eid is not None
    rle = Locator(Rle((RleEntry(EVIL, 128),)), 255, 0, 1, 100)
    forged = evil_register(
        (MapRecord(*group_eid.to_wire(), (rle,), 3),), nonce=1, merge=False
    )
    evil.out += [(forged, ctl(ip)) for ip in DECENT_IPS]
    net.run(net.now + 1.0)
    for node in nodes:
        # Before: the member list was the attacker's alone.
        assert set(DECENT_IPS) <= members_of(node)
        entry = node.ms.db.get(group_eid)
        assert entry is not None
        assert entry.merge
        assert len(entry.children) == 4  # three members and the attacker


# ------------------------------------------------------------ 6: quotas
def test_a_registrant_over_its_quota_is_refused_and_listed():
    limits = Limits(registrant_eids=50)
    node = member(1, limits=limits)
    for n in range(5):
        batch = tuple(record(f"10.7.{n}.{j}/32", str(EVIL)) for j in range(30))
        node.receive_datagram(evil_register(batch, n + 1), ctl(EVIL), float(n))
    held = [e for e, entry in node.ms.db.items() if 0xE71 in entry.children]
    assert len(held) == 50
    assert node.counters["reject.registrant-quota"] == 100
    [refusal] = node.refused_registrants()
    assert (refusal.registrant, refusal.reason, refusal.count) == (
        0xE71,
        "registrant-quota",
        100,
    )
    # A refresh of what it holds still applies.
    batch = tuple(record(f"10.7.0.{j}/32", str(EVIL)) for j in range(30))
    node.receive_datagram(evil_register(batch, 9), ctl(EVIL), 10.0)
    assert node.counters["reject.registrant-quota"] == 100
    entry = node.ms.db.get(Eid.prefix("10.7.0.1/32"))
    assert entry is not None
    assert entry.children[0xE71].last == 10.0


def test_inventing_xtr_ids_hits_the_source_quota_and_the_registrant_limit():
    node = member(1, limits=Limits(registrant_eids=20, max_registrants=10))
    for i in range(40):
        node.receive_datagram(
            evil_register((record(f"10.8.0.{i}/32", str(EVIL)),), 1, xtr_id=1000 + i),
            ctl(EVIL),
            0.0,
        )
    from_evil = sum(
        1
        for _, e in node.ms.db.items()
        for c in e.children.values()
        if c.registrant[0] == EVIL
    )
    assert from_evil <= 20
    assert (
        node.counters["reject.source-quota"] + node.counters["reject.registrant-limit"]
        == 40 - from_evil
    )
    for i in range(20):  # other sources, new registrants: at most 10 in all
        node.receive_datagram(
            evil_register((record(f"10.9.0.{i}/32", str(EVIL)),), 1, xtr_id=5000 + i),
            (IPv4Address(f"198.18.9.{i}"), 4342),
            0.0,
        )
    assert len(node.ms.held_by) <= 10


def test_a_burst_of_100k_eids_is_bounded_by_the_default_quota_and_rate():
    node = member(1)
    nonce, t = 1, 0.0
    for block in range(0, 100_000, 40):
        batch = tuple(
            record(f"10.{1 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32", str(EVIL))
            for i in range(block, block + 40)
        )
        node.receive_datagram(evil_register(batch, nonce), ctl(EVIL), t)
        nonce, t = nonce + 1, t + 0.0001  # 7 s, as the attack ran
    evil = node.ms.held_by[0xE71]
    assert evil <= Limits().registrant_eids
    refused = (
        node.counters["reject.registrant-quota"]
        + node.counters["reject.registrant-rate"]
    )
    assert refused > 0
    assert len(node.ms.db) <= Limits().registrant_eids + 10


def test_registration_rate_is_per_registrant_and_source():
    node = member(1, limits=Limits(registrant_rate=10.0, registrant_burst=20.0))
    for n in range(5):
        batch = tuple(record(f"10.7.{n}.{j}/32", str(EVIL)) for j in range(10))
        node.receive_datagram(evil_register(batch, n + 1), ctl(EVIL), 0.0)
    assert node.counters["reject.registrant-rate"] == 3
    # Another registrant is unaffected.
    other = evil_register((record("10.6.0.1/32", "198.18.9.9"),), 1, xtr_id=77)
    node.receive_datagram(other, (IPv4Address("198.18.9.9"), 4342), 0.0)
    assert Eid.prefix("10.6.0.1/32") in node.ms.db


def test_nonce_marks_of_registrants_that_hold_nothing_are_pruned():
    node = member(1, limits=Limits(nonce_retention=600.0))
    for i in range(100):
        rec = record(f"10.8.0.{i}/32", str(EVIL), ttl=1)
        node.receive_datagram(evil_register((rec,), 1, xtr_id=1000 + i), ctl(EVIL), 0.0)
    assert node.soft_state_sizes()["nonce_marks"] >= 100
    t = 0.0
    while t < 2 * HOUR:
        t += 30.0
        node.handle_timer(t)
    assert node.soft_state_sizes()["nonce_marks"] <= 1  # our own, if any


# ------------------------------------------------------------ 9: algorithms
def test_hmac_sha_1_is_refused_by_default_and_accepted_when_configured():
    rec = (record("10.7.0.1/32", str(EVIL)),)
    strict = member(1)
    strict.receive_datagram(evil_register(rec, 1, alg=1), ctl(EVIL), 0.0)
    assert strict.counters["reject.algorithm-refused"] == 1
    assert strict.events(RegistrationRejected)[-1][1].reason == "algorithm-refused"
    lenient = member(1, auth_algorithms=frozenset({1, 2}))
    lenient.receive_datagram(evil_register(rec, 1, alg=1), ctl(EVIL), 0.0)
    assert Eid.prefix("10.7.0.1/32") in lenient.ms.db


def test_a_sha_1_map_notify_ack_does_not_confirm_a_challenge():
    node = member(1)
    rec = (record("10.7.0.1/32", str(EVIL)),)
    node.receive_datagram(evil_register(rec, 50), ctl(EVIL), 0.0)
    node.datagrams_to_send()
    node.receive_datagram(evil_register(rec, 10), ctl(EVIL), 1.0)
    [(data, _)] = node.datagrams_to_send()
    challenge = decode(data)
    assert isinstance(challenge, MapNotify)
    ack = MapNotifyAck(challenge.nonce, challenge.records, 0).signed(KEY, 1)
    node.receive_datagram(ack.encode(), ctl(EVIL), 1.1)
    assert node.counters["resync.confirmed"] == 0
    good = MapNotifyAck(challenge.nonce, challenge.records, 0).signed(KEY, 2)
    node.receive_datagram(good.encode(), ctl(EVIL), 1.2)
    assert node.counters["resync.confirmed"] == 1
    # Applied, and the registrant's word moves its mark back to it.
    assert node.ms.db.get(Eid.prefix("10.7.0.1/32")) is not None
    assert node.ms.replay.marks[(("decent-group", 0xE71, 0), EVIL)] == 10
