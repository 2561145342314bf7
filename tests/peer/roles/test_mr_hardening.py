"""The Map-Resolver role against the attack run: bounded replies, reflection.

Items 2 (covering-prefix replies) and 7 (reflection) of the hardening issue,
replayed against sans-I/O nodes."""

from __future__ import annotations

from ipaddress import IPv4Address

from decent.peer.config import Limits
from decent.peer.mapping.push_config import decent_node_config
from decent.wire import (
    Eid,
    MapRecord,
    MapRegister,
    MapReply,
    MapRequest,
    RequestRecord,
    decode,
)
from tests.peer.attack import EVIL, evil_register, member, needs_tshark
from tests.peer.conftest import DECENT_IPS, GROUP, KEY, Traced, ctl, record
from tests.wire.tshark import assert_clean

VICTIM = IPv4Address("203.0.113.9")


# ------------------------------------------------------------ 2: covering prefixes
def covering_node(limits: Limits | None = None) -> tuple[Traced, int]:
    """A member holding 10.0.0.0/24, 10.0.0.0/21 and 300 host /32s below
    them (10.0.0.1-200 and 10.0.1.1-100), as the attack registered them."""
    node = member(1, limits=limits or Limits())
    eids = ["10.0.0.0/24", "10.0.0.0/21"]
    eids += [f"10.0.{i // 200}.{1 + i % 200}/32" for i in range(300)]
    nonce = 1
    for start in range(0, len(eids), 30):
        batch = tuple(record(e, str(EVIL)) for e in eids[start : start + 30])
        node.receive_datagram(evil_register(batch, nonce), ctl(EVIL), 0.0)
        nonce += 1
    assert len(node.ms.db) >= len(eids)
    return node, len(eids)


def ask(node: Traced, prefix: str, itr: IPv4Address = VICTIM) -> list[bytes]:
    """A plain 32-byte Map-Request for prefix, answered to itr; the replies."""
    eid = Eid.prefix(prefix)
    addr, mask = eid.to_wire()
    req = MapRequest(0xBEEF, (RequestRecord(addr, mask),), (itr,)).encode()
    node.datagrams_to_send()
    node.receive_datagram(req, (itr, 4342), 10.0)
    return [d for d, dst in node.datagrams_to_send() if dst[0] == itr]


def test_a_covering_prefix_reply_is_one_datagram_at_most_three_times_the_request():
    node, _ = covering_node()
    request_size = len(
        MapRequest(
            0xBEEF, (RequestRecord(*Eid.prefix("10.0.0.0/24").to_wire()),), (VICTIM,)
        ).encode()
    )
    assert request_size <= 32  # the was 32 bytes
    for prefix in ("10.0.0.0/24", "10.0.0.0/21", "10.0.0.0/16"):
        replies = ask(node, prefix)
        for data in replies:
            reply = decode(data)
            assert isinstance(reply, MapReply)
            # The record count is the records' number (it wrapped at 257).
            assert data[3] == len(reply.records)
            assert len(data) <= 3 * request_size
    assert node.counters["reply.narrowed"] + node.counters["drop.reply-too-large"] >= 2


def test_a_member_gets_the_full_answer_when_it_fits_and_a_narrowed_one_otherwise():
    node, _ = covering_node()
    # A member is a verified requester: one datagram of the underlay MTU.
    member_ip = DECENT_IPS[2]
    join = decent_node_config(
        name="n3", rlocs=(member_ip,), group=GROUP, key=KEY, xtr_id=3
    ).database[0]
    msg = MapRegister(
        1,
        (MapRecord(*join.eid.to_wire(), join.locators, 3),),
        proxy_reply=True,
        merge=True,
        ttl_timeout=True,
        xtr_id=3,
    ).signed(KEY)
    node.receive_datagram(msg.encode(), ctl(member_ip), 0.0)
    assert member_ip in node.membership()
    [data] = ask(node, "10.0.0.0/21", member_ip)
    assert len(data) <= 1500 - 28
    reply = decode(data)
    assert isinstance(reply, MapReply)
    assert len(reply.records) == 1  # 300 more-specifics do not fit: narrowed
    [only] = reply.records
    got = Eid.from_wire(only.eid, only.mask_len)
    assert got.contains(Eid.prefix("10.0.0.0/32"))
    # Correct: no registered prefix more specific than its source lies
    # inside what it covers, so the member caches nothing too broad.
    source = node.ms.db.lookup(got)
    assert source is not None
    assert not [e for e, _ in node.ms.db.covered(source[0]) if got.contains(e)]


def test_a_host_query_under_a_covering_prefix_is_narrowed_around_the_host():
    node, _ = covering_node()
    [data] = ask(node, "10.0.6.7/32")
    reply = decode(data)
    assert isinstance(reply, MapReply)
    [rec] = reply.records
    got = Eid.from_wire(rec.eid, rec.mask_len)
    # The /21 covers 10.0.6.7; its more-specifics end at 10.0.1.100: the
    # largest block around the host holding none is 10.0.4.0/22.
    assert str(got) == "[0]10.0.4.0/22"
    assert not rec.authoritative


def test_a_16_over_100k_eids_gets_an_answer_not_emsgsize():
    limits = Limits(
        registrant_eids=200_000, max_registrations=200_000, registrant_burst=200_000.0
    )
    node = member(1, limits=limits)
    nonce = 1
    for block in range(0, 100_000, 40):
        batch = tuple(
            record(f"10.{1 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32", str(EVIL))
            for i in range(block, block + 40)
        )
        node.receive_datagram(evil_register(batch, nonce), ctl(EVIL), 0.0)
        nonce += 1
    assert len(node.ms.db) >= 100_000
    # Before, EMSGSIZE: nothing left while the sent counter went up. Now
    # the requester (no member) gets at most 3x its request, and the
    # counter says what was queued.
    replies = ask(node, "10.1.0.0/16")
    for data in replies:
        assert len(data) <= 3 * 28
    assert node.counters["tx.map-reply"] == len(replies)
    assert len(ask(node, "10.1.2.3/32")) == 1


@needs_tshark
def test_narrowed_and_bounded_map_replies_dissect_cleanly():
    node, _ = covering_node()
    replies = []
    for prefix in ("10.0.0.0/24", "10.0.0.0/21", "10.0.6.7/32", "10.0.0.9/32"):
        replies += ask(node, prefix)
    assert all(isinstance(decode(d), MapReply) for d in replies)
    assert node.counters["reply.narrowed"] >= 2
    assert_clean([(d, 4342) for d in replies])


# ------------------------------------------------------------ 7: reflection
def test_reply_buckets_are_bounded_however_many_itr_rlocs():
    node = member(
        1, eids=(Eid.prefix("10.1.0.1/32"),), limits=Limits(reply_buckets=100)
    )
    addr, mask = Eid.prefix("10.1.0.1/32").to_wire()
    for i in range(100_000 // 50):
        itr = IPv4Address(int(IPv4Address("100.64.0.0")) + i)
        req = MapRequest(i, (RequestRecord(addr, mask),), (itr,)).encode()
        node.receive_datagram(req, (itr, 4342), i * 1e-4)
    sizes = node.soft_state_sizes()
    assert sizes["reply_buckets"] <= 100
    assert sizes["recent_itrs"] == 1
    assert len(node._recent_itrs[Eid.prefix("10.1.0.1/32")]) <= Limits().recent_itrs


def test_a_global_byte_budget_bounds_replies_spread_over_victims():
    node = member(
        1,
        eids=(Eid.prefix("10.1.0.1/32"),),
        limits=Limits(reply_global_rate=1000.0, reply_global_burst=1000.0),
    )
    addr, mask = Eid.prefix("10.1.0.1/32").to_wire()
    out = 0
    for i in range(2000):
        itr = IPv4Address(int(IPv4Address("100.64.0.0")) + i)
        req = MapRequest(i, (RequestRecord(addr, mask),), (itr,)).encode()
        node.receive_datagram(req, (itr, 4342), 0.5)
        out += sum(len(d) for d, _ in node.datagrams_to_send())
    # Half a second of 1000 B/s on top of the 1000 B burst, spread over
    # 2000 victims that each had a full bucket of their own.
    assert out <= 1000 + 500 + 200
    assert node.counters["drop.global-rate-limited"] > 0
