"""Pull mode (RFC 9962 5) on the sans-I/O core: the hash, DNS-selected sets, changes."""

from __future__ import annotations

import hashlib
import itertools
from ipaddress import IPv4Address

import pytest

from decent.peer.events import (
    MapServerSetChanged,
    MapServerSetFailed,
    RegistrationAccepted,
)
from decent.peer.mapping.pull import MAX_SET, MAX_WAITING
from decent.peer.mapping.pullhash import (
    LISPERS,
    RFC9962,
    dns_name,
    eid_string,
    hashed_string,
    index_of,
    lookup_eid,
)
from decent.wire import Eid
from tests.peer.pullnet import (
    SUFFIX,
    PullNode,
    SimDns,
    add_node,
    host_eid,
    pull_mesh,
    rloc,
)
from tests.peer.simnet import SimNet

HOUR = 3600.0


# ---------------------------------------------------------------- the hash
@pytest.mark.parametrize(
    ("text", "rfc4", "rfc8", "lispers4", "lispers8"),
    [
        # The protocol notes' table (computed with hashlib, section 1.5).
        ("[1000]fd::2222/128", 0, 0, 0, 4),
        ("[0]240.0.1.0/24", 2, 2, 3, 7),
        ("[0]240.0.1.1/32", 2, 6, 2, 6),
        ("[0]240.0", 0, 0, 2, 2),
        ("[11]1.1.1.1/32", 0, 0, 2, 6),
        ("[0]233.252.1.1/32", 2, 2, 3, 3),
        ("[0]240.11.1.0/24", 1, 1, 3, 3),
    ],
)
def test_index_of_matches_the_worked_vectors(
    text: str, rfc4: int, rfc8: int, lispers4: int, lispers8: int
) -> None:
    assert index_of(text, 4) == rfc4
    assert index_of(text, 8) == rfc8
    assert index_of(text, 4, LISPERS) == lispers4
    assert index_of(text, 8, LISPERS) == lispers8


def test_the_rfc_hash_is_the_whole_sha256_digest_modulo_the_modulus() -> None:
    # RFC 9962 5.1: index = sha_256(string) MOD mv, the digest read as one
    # big-endian integer.
    digest = hashlib.sha256(b"[1000]fd::2222/128").hexdigest()
    assert digest.startswith("af2e3661")
    assert digest.endswith("4964f2d0")
    for mv in (1, 3, 4, 7, 255, 4096):
        assert index_of("[1000]fd::2222/128", mv) == int(digest, 16) % mv


def test_lispers_hash_is_an_hmac_keyed_lisp_decent_over_its_first_six_bytes() -> None:
    # lispers.net (lisp_get_decent_index): HMAC-SHA256 keyed "lisp-decent",
    # int(hexdigest[0:12], 16) % modulus. Worked: "[1000]fd::2222/128" has
    # HMAC 9c580bf97a5c..., so mod 8 is 0x9c580bf97a5c % 8 = 4.
    assert 0x9C580BF97A5C % 8 == 4
    assert index_of("[1000]fd::2222/128", 8, LISPERS) == 4
    assert index_of("[1000]fd::2222/128", 8, RFC9962) == 0


def test_eid_strings_are_the_rfc_forms() -> None:
    assert eid_string(Eid.prefix("1.1.1.1/32", 11)) == "[11]1.1.1.1/32"
    assert eid_string(Eid.prefix("fd::2222/128", 1000)) == "[1000]fd::2222/128"
    sg = Eid.sg("10.0.0.1/32", "233.252.1.1/32")
    assert eid_string(sg) == "[0]233.252.1.1/32-10.0.0.1/32"
    star = Eid.sg("0.0.0.0/0", "233.252.1.1/32")
    assert eid_string(star) == "[0]233.252.1.1/32-0.0.0.0/0"
    assert eid_string(Eid.name("n1")) == "[0]'n1'"


def test_the_hash_mask_makes_a_lookup_and_its_covering_prefix_meet() -> None:
    # RFC 9962 5.1: registered [0]240.0.1.0/24, looked up [0]240.0.1.1/32,
    # a mask of 8 bytes: both hash "[0]240.0".
    registered = hashed_string(Eid.prefix("240.0.1.0/24"), 8)
    looked_up = hashed_string(Eid.prefix("240.0.1.1/32"), 8)
    assert registered == looked_up == "[0]240.0"
    # Without the mask they select different sets (mod 8: 2 and 6).
    assert index_of(hashed_string(Eid.prefix("240.0.1.0/24"), 0), 8) == 2
    assert index_of(hashed_string(Eid.prefix("240.0.1.1/32"), 0), 8) == 6


def test_a_multicast_eid_hashes_its_group_and_never_its_source() -> None:
    # RFC 9962 5.1: the mask MUST include "[iid]<group>" and not <source>.
    one = hashed_string(Eid.sg("10.0.0.1/32", "233.252.1.1/32"), 0)
    star = hashed_string(Eid.sg("0.0.0.0/0", "233.252.1.1/32"), 40)
    assert one == star == "[0]233.252.1.1"
    # lispers.net prints the group prefix alone.
    lispers = hashed_string(Eid.sg("10.0.0.1/32", "233.252.1.1/32"), 0, LISPERS)
    assert lispers == "[0]233.252.1.1/32"


def test_lookup_lengths_follow_the_rfc_examples() -> None:
    # RFC 9962 5.2's ranges and examples; the longest range wins.
    ranges = (
        (Eid.prefix("240.11.0.0/16"), 24),
        (Eid.prefix("240.12.0.0/16"), 30),
        (Eid.prefix("240.13.0.0/16"), 25),
        (Eid.prefix("240.0.0.0/8"), 8),
    )
    cases = {
        "240.11.1.1/32": "[0]240.11.1.0/24",
        "240.12.2.5/32": "[0]240.12.2.4/30",
        "240.13.3.7/32": "[0]240.13.3.0/25",
        "240.14.1.1/32": "[0]240.0.0.0/8",
        "10.1.1.1/32": "[0]10.1.1.1/32",
    }
    for looked_up, hashed in cases.items():
        assert eid_string(lookup_eid(Eid.prefix(looked_up), ranges)) == hashed
    # Never longer than the EID: a /16 inside a /24 range stays a /16.
    wide = lookup_eid(Eid.prefix("240.11.0.0/16"), ranges)
    assert eid_string(wide) == "[0]240.11.0.0/16"


def test_dns_names_are_index_dot_suffix() -> None:
    assert dns_name(3, "map-server.lispers.net") == "3.map-server.lispers.net"
    assert dns_name(0, "ms.example.") == "0.ms.example"


# ---------------------------------------------------------------- the mesh
def settled(net: SimNet, seconds: float = 30.0) -> None:
    net.run(net.now + seconds)


def set_members(nodes: list[PullNode], eid: Eid) -> set[int]:
    """Which nodes (1-based) hold eid's registration."""
    return {i for i, n in enumerate(nodes, 1) if n.registration(eid) is not None}


def resolves(net: SimNet, node: PullNode, eid: Eid) -> bool:
    node.request(eid, net.now)
    net.run(net.now + 15.0)
    entry = node.cache.lookup(eid)
    return entry is not None and not entry.negative


def owner_rloc(eid: Eid) -> int:
    return int(str(eid.address).split(".")[1])


def test_every_set_is_resolved_at_the_start_and_again_at_its_ttl() -> None:
    net, nodes, dns = pull_mesh()
    settled(net, 1.0)
    n1 = nodes[0]
    assert n1.pull is not None
    assert [s.addresses for s in n1.pull.sets] == [
        (rloc(1), rloc(2)),
        (rloc(3), rloc(4)),
        (rloc(5), rloc(6)),
    ]
    assert [s.index for s in n1.pull.ours()] == [0]
    asked = [t for t, name in dns.asked if name == f"0.{SUFFIX}" and t < 1.0]
    assert len(asked) == 6  # once by each node
    dns.asked.clear()
    settled(net, 61.0)
    again = [name for _, name in dns.asked]
    assert sorted(set(again)) == [f"{k}.{SUFFIX}" for k in range(3)]


def test_each_eid_is_registered_to_exactly_its_set_and_resolves_everywhere() -> None:
    net, nodes, _ = pull_mesh()
    settled(net)
    pull = nodes[0].pull
    assert pull is not None
    for owner in range(1, 7):
        for j in range(2):
            eid = host_eid(owner, j)
            k = pull.index(eid)
            assert set_members(nodes, eid) == {2 * k + 1, 2 * k + 2}, eid
    for asker in nodes:
        for owner in range(1, 7):
            eid = host_eid(owner, 0)
            assert resolves(net, asker, eid), (asker.config.rlocs, eid)
            entry = asker.cache.lookup(eid)
            assert entry is not None
            assert entry.record.locators[0].rloc == rloc(owner)


def test_a_node_in_the_set_answers_its_lookup_in_process() -> None:
    net, nodes, _ = pull_mesh()
    settled(net)
    pull = nodes[0].pull
    assert pull is not None
    mine = next(host_eid(o, 0) for o in range(2, 7) if pull.index(host_eid(o, 0)) == 0)
    net.trace.clear()
    assert resolves(net, nodes[0], mine)
    requests = [w for w in net.trace if w[1][0] == rloc(1) and w[2][1] == 4342]
    assert not [w for w in requests if w[3][0] >> 4 == 8]  # no ECM left us
    entry = nodes[0].cache.lookup(mine)
    assert entry is not None
    assert entry.source == "local"


def test_a_set_member_that_dies_is_routed_around() -> None:
    net, nodes, _ = pull_mesh()
    settled(net)
    pull = nodes[0].pull
    assert pull is not None
    # An EID of set 2 (nodes 5 and 6), looked up from node 1 after node 5 died.
    eid = next(
        host_eid(o, j)
        for o in range(1, 5)
        for j in range(2)
        if pull.index(host_eid(o, j)) == 2
    )
    net.remove(nodes[4])
    for attempt in range(2):
        nodes[0].itr.clear()
        assert resolves(net, nodes[0], eid), attempt


def test_a_changed_set_is_followed_after_its_ttl_and_registered_to_at_once() -> None:
    net, nodes, dns = pull_mesh()
    settled(net)
    pull = nodes[0].pull
    assert pull is not None
    set0 = [
        host_eid(o, j)
        for o in range(1, 7)
        for j in range(2)
        if pull.index(host_eid(o, j)) == 0
    ]
    assert set0
    assert all(nodes[2].registration(e) is None for e in set0)
    # Node 2 leaves set 0, node 3 joins it.
    dns.records[f"0.{SUFFIX}"] = [rloc(1), rloc(3)]
    changed_at = net.now
    settled(net, dns.ttl + 5.0)
    assert pull.sets[0].addresses == (rloc(1), rloc(3))
    changes = [(t, e) for t, e in nodes[0].log if isinstance(e, MapServerSetChanged)]
    assert changes
    assert changes[-1][1].new == (rloc(1), rloc(3))
    # Every registrant of set 0 registered to node 3 within a second of
    # learning of the change, not a registration period later.
    assert all(nodes[2].registration(e) is not None for e in set0)
    took = {
        e.eid: t
        for t, e in nodes[2].log
        if isinstance(e, RegistrationAccepted) and e.new and e.eid in set0
    }
    for eid in set0:
        owner = nodes[owner_rloc(eid) - 1]
        learned = min(
            t for t, e in owner.log if isinstance(e, MapServerSetChanged) and e.old
        )
        assert changed_at < learned <= changed_at + dns.ttl + 1.0
        assert took[eid] - learned < 1.0, eid
    for asker in (nodes[3], nodes[5]):
        asker.itr.clear()
        net.remove(nodes[0])  # only node 3 can answer now
        for eid in set0:
            if owner_rloc(eid) == 1:
                continue
            assert resolves(net, asker, eid), eid
        net.add(nodes[0], (rloc(1), 4342), (rloc(1), 4341), source=(rloc(1), 4342))


def test_lookups_wait_for_a_late_dns_answer_then_go() -> None:
    dns = SimDns(
        {f"{k}.{SUFFIX}": [rloc(2 * k + 1), rloc(2 * k + 2)] for k in range(3)},
        delay=0.005,
    )
    net, _nodes, _ = pull_mesh(dns=dns)
    settled(net)
    # A late node: its DNS takes 8 s; a lookup meanwhile waits, then goes.
    slow = SimDns(dns.records, delay=8.0)
    late = add_node(net, slow, 7)
    eid = host_eid(3, 1)
    net.run(net.now + 0.5)
    late.request(eid, net.now)
    net.run(net.now + 1.0)
    assert late.cache.lookup(eid) is None
    assert late.counters["drop.no-map-resolver"] >= 1
    net.run(net.now + 10.0)
    entry = late.cache.lookup(eid)
    assert entry is not None
    assert entry.record.locators[0].rloc == rloc(3)


def test_a_set_member_not_up_yet_gets_each_registration_retransmitted() -> None:
    # Node 6 (set 2) starts 3 s after the others: their first Map-Registers
    # to it are lost, and each is sent again until it acknowledges (RFC
    # 9301 5.7), not a registration period later.
    net, nodes, dns = pull_mesh(start=5)
    settled(net, 3.0)
    nodes.append(add_node(net, dns, 6))
    joined = net.now
    settled(net, 15.0)
    pull = nodes[0].pull
    assert pull is not None
    set2 = [
        host_eid(o, j)
        for o in range(1, 6)
        for j in range(2)
        if pull.index(host_eid(o, j)) == 2
    ]
    assert set2
    took = {
        e.eid: t
        for t, e in nodes[5].log
        if isinstance(e, RegistrationAccepted) and e.new
    }
    for eid in set2:
        assert took[eid] - joined < 10.0, eid
    assert all(n.etr.sizes()["pending_registers"] == 0 for n in nodes)


def test_a_negative_answer_covers_only_what_hashes_as_the_eid_asked() -> None:
    # No IPv6 EID is registered anywhere: a Map-Server that answered with
    # the largest prefix it holds nothing under (::/0) would have the ITR
    # cache every other set's IPv6 EIDs as unregistered.
    lengths = ((Eid.prefix("10.200.0.0/16"), 24),)
    net, nodes, _ = pull_mesh(lookup_lengths=lengths)
    settled(net)
    n1 = nodes[0]
    for asked, cached in (
        ("2001:db8::1/128", "2001:db8::1/128"),
        ("10.3.0.9/32", "10.3.0.9/32"),
        ("10.200.7.9/32", "10.200.7.0/24"),
    ):
        eid = Eid.prefix(asked)
        n1.request(eid, net.now)
        net.run(net.now + 15.0)
        entry = n1.cache.lookup(eid)
        assert entry is not None
        assert entry.negative
        assert entry.eid == Eid.prefix(cached), asked
    for owner in range(2, 7):
        assert resolves(net, n1, host_eid(owner, 1))


def test_a_dns_failure_keeps_the_last_addresses_says_which_name_and_retries() -> None:
    net, nodes, dns = pull_mesh()
    settled(net)
    name = f"1.{SUFFIX}"
    dns.failing[name] = "SERVFAIL"
    settled(net, dns.ttl + 10.0)
    n1 = nodes[0]
    assert n1.pull is not None
    s = n1.pull.sets[1]
    assert s.error == "SERVFAIL"
    assert s.failures >= 2
    assert s.addresses == (rloc(3), rloc(4))  # still used
    failed = [e for _, e in n1.log if isinstance(e, MapServerSetFailed)]
    assert failed
    assert failed[0].name == name
    assert failed[0].reason == "SERVFAIL"
    # Backing off: 5, 10, 20 ... s apart, never more than dns_refresh.
    times = [t for t, e in n1.log if isinstance(e, MapServerSetFailed)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == sorted(gaps)
    assert all(g <= 300.0 for g in gaps)
    eid = next(
        host_eid(o, 0) for o in range(1, 7) if n1.pull.index(host_eid(o, 0)) == 1
    )
    assert resolves(net, nodes[5], eid)
    del dns.failing[name]
    settled(net, 400.0)
    assert s.error == ""
    assert s.failures == 0


def test_an_empty_answer_is_a_failure_not_an_empty_set() -> None:
    net, nodes, dns = pull_mesh()
    settled(net)
    dns.records[f"2.{SUFFIX}"] = []
    settled(net, dns.ttl + 5.0)
    pull = nodes[0].pull
    assert pull is not None
    assert pull.sets[2].addresses == (rloc(5), rloc(6))
    assert pull.sets[2].error == "no A or AAAA record"


def test_the_ttl_is_clamped_between_dns_min_ttl_and_dns_refresh() -> None:
    dns = SimDns(
        {f"{k}.{SUFFIX}": [rloc(2 * k + 1), rloc(2 * k + 2)] for k in range(3)},
        ttl=0.0,
    )
    net, nodes, _ = pull_mesh(dns=dns, dns_min_ttl=7.0, dns_refresh=50.0)
    settled(net, 1.0)
    pull = nodes[0].pull
    assert pull is not None
    s = pull.sets[0]
    assert s.refresh_at is not None
    assert s.resolved_at is not None
    assert s.refresh_at - s.resolved_at == pytest.approx(7.0)
    dns.ttl = 86_400.0
    settled(net, 8.0)
    assert s.refresh_at is not None
    assert s.resolved_at is not None
    assert s.refresh_at - s.resolved_at == pytest.approx(50.0)


def test_answers_nobody_asked_for_and_oversized_sets_are_bounded() -> None:
    net, nodes, dns = pull_mesh()
    settled(net)
    n1 = nodes[0]
    pull = n1.pull
    assert pull is not None
    before = [s.addresses for s in pull.sets]
    pull.answer(f"0.{SUFFIX}", [rloc(9)], 60.0, net.now)  # not asked now
    pull.answer("evil.example", [rloc(9)], 60.0, net.now)
    pull.failed(f"1.{SUFFIX}", "x", net.now)
    assert [s.addresses for s in pull.sets] == before
    assert n1.counters["drop.dns-unasked"] == 3
    # A huge answer is cut to MAX_SET addresses.
    dns.records[f"0.{SUFFIX}"] = [IPv4Address(f"198.18.60.{i}") for i in range(40)]
    settled(net, dns.ttl + 5.0)
    assert len(pull.sets[0].addresses) == MAX_SET
    # EIDs waiting for a set are bounded too.
    s = pull.sets[1]
    s.addresses = ()
    for j in range(3 * MAX_WAITING):
        pull.resolvers_for(Eid.prefix(f"10.200.{j // 250}.{j % 250}/32"))
    assert sum(len(x.waiting) for x in pull.sets) <= 3 * MAX_WAITING


def test_the_lispers_hash_is_a_switch() -> None:
    net, nodes, _ = pull_mesh(hash=LISPERS)
    settled(net)
    pull = nodes[0].pull
    assert pull is not None
    eid = host_eid(2, 0)
    k = index_of(str(eid), 3, LISPERS)
    assert pull.index(eid) == k
    assert set_members(nodes, eid) == {2 * k + 1, 2 * k + 2}
    assert resolves(net, nodes[5], eid)


def test_hours_of_protocol_time_keep_every_registration_and_answer() -> None:
    net, nodes, _ = pull_mesh()
    settled(net)
    held = [len(n.registrations()) for n in nodes]
    net.run(net.now + 3 * HOUR)
    assert [len(n.registrations()) for n in nodes] == held
    assert sum(held) == 2 * (6 * 2 + 6)  # each EID and name at two nodes
