"""A plain xTR registers to one member; the Map-Server role carries it to the group."""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from decent.peer import counters as C
from decent.peer.config import AllowedPrefix, Site
from decent.peer.mapping.push_config import decent_node_config
from decent.wire import (
    AfiList,
    AlgorithmId,
    DecodeError,
    DistinguishedName,
    Eid,
    EncapsulatedControlMessage,
    Locator,
    MapNotify,
    MapRecord,
    MapRegister,
    MapReply,
    MulticastInfo,
    check_auth,
    decapsulate,
    decode,
    ecm_bytes,
)
from tests.peer.conftest import (
    DECENT_IPS,
    GROUP,
    KEY,
    N1,
    N2,
    N3,
    Raw,
    Traced,
    attach,
    ctl,
    nonces,
    register_msg,
    request_msg,
)
from tests.peer.simnet import SimNet
from tests.wire.tshark import MAP_REGISTER_T_BIT, assert_clean

XTR = IPv4Address("192.0.2.50")
BRANCH_KEY = b"branch-secret"
BRANCH = Eid.prefix("10.21.0.0/24")
HOST = Eid.prefix("10.21.0.5/32")


def branch_site(**kw: Any) -> Site:
    kw.setdefault("relaxed_nonces", True)
    return Site(
        "branch",
        ((0, BRANCH_KEY),),
        (AllowedPrefix(BRANCH),),
        force_proxy_reply=True,
        relay=True,
        **kw,
    )


def trio(
    site: Site | None = None, mode: str = "replicate"
) -> tuple[SimNet, list[Traced]]:
    """Three members that all list the branch site, converged."""
    net = SimNet(seed=3, record=True)
    members = []
    for i, ip in enumerate(DECENT_IPS, start=1):
        config = decent_node_config(
            name=f"n{i}",
            rlocs=(ip,),
            group=GROUP,
            key=KEY,
            xtr_id=i,
            seeds=DECENT_IPS[:1],
            mode=mode,
            sites=(site or branch_site(),),
            resolve_in_process=True,
        )
        member = Traced(config, nonce=nonces(i << 48))
        attach(net, member)
        members.append(member)
    net.advance(30.0)
    assert all(len(m.membership()) == 3 for m in members)
    return net, members


def xtr_locator(**kw: Any) -> Locator:
    """The xTR's RLOC as lispers.net writes it: an AFI list {address, name}."""
    return Locator(AfiList((XTR, DistinguishedName("vm"))), local=True, **kw)


def xtr_register(nonce: int, ttl: int = 3, **kw: Any) -> bytes:
    """The plain xTR's Map-Register: HMAC-SHA-1, random nonce, no xTR-ID."""
    addr, mask = BRANCH.to_wire()
    rec = MapRecord(addr, mask, (xtr_locator(),), ttl, authoritative=True)
    kw.setdefault("key", BRANCH_KEY)
    kw.setdefault("alg", AlgorithmId.HMAC_SHA_1_96)
    kw.setdefault("xtr_id", None)
    return register_msg(rec, nonce=nonce, proxy_reply=True, **kw)


def with_xtr(net: SimNet) -> Raw:
    xtr = Raw()
    net.add(xtr, ctl(XTR))
    return xtr


def test_every_member_holds_what_the_xtr_registered_to_one() -> None:
    net, members = trio()
    xtr = with_xtr(net)
    xtr.out.append((xtr_register(random.Random(1).getrandbits(64)), ctl(N1)))
    net.advance(1.0)
    for member in members:
        entry = member.registration(BRANCH, exact=True)
        assert entry is not None, member.config.rlocs
        (child,) = entry.children.values()
        assert child.registrant == ctl(XTR)
        assert child.via == (None if member is members[0] else N1)
        assert entry.site == "branch"
        assert entry.proxy_reply
    # Only the member it registered to answers the xTR, with its own key.
    notifies = [(d, a) for _, d, a in xtr.got if isinstance(decode(d), MapNotify)]
    assert [a[0] for _, a in notifies] == [N1]
    assert check_auth(notifies[0][0], BRANCH_KEY)
    assert members[0].counters[C.RELAYED_SENT] == 1
    assert [m.counters[C.RELAYED_ACCEPTED] for m in members] == [0, 1, 1]


def test_on_a_multicast_underlay_it_goes_natively_to_the_group() -> None:
    config = decent_node_config(
        name="n1",
        rlocs=(N1,),
        group=GROUP,
        key=KEY,
        xtr_id=1,
        mode="multicast",
        sites=(branch_site(),),
    )
    node = Traced(config)
    node.datagrams_to_send()
    node.receive_datagram(xtr_register(99), ctl(XTR), 0.0)
    sent = [(decode(d), a) for d, a in node.datagrams_to_send()]
    (ecm,) = [(m, a) for m, a in sent if isinstance(m, EncapsulatedControlMessage)]
    assert ecm[1] == ctl(GROUP)
    assert ecm[0].inner_src == XTR
    assert isinstance(ecm[0].message, MapRegister)


def test_members_proxy_reply_with_the_l_bit_clear() -> None:
    net, _members = trio()
    xtr = with_xtr(net)
    xtr.out.append((xtr_register(5), ctl(N1)))
    net.advance(1.0)
    xtr.got.clear()
    for member in (N2, N3):
        xtr.out.append((request_msg("10.21.0.5/32", XTR).encode(), ctl(member)))
    net.advance(1.0)
    replies = [m for m in xtr.messages() if isinstance(m, MapReply)]
    assert len(replies) == 2
    for reply in replies:
        (rec,) = reply.records
        assert Eid.from_wire(rec.eid, rec.mask_len) == BRANCH
        assert not rec.authoritative
        assert [loc.local for loc in rec.locators] == [False]
        assert rec.locators[0].rloc == XTR


def test_an_itr_encapsulates_to_the_address_inside_the_afi_list() -> None:
    net, members = trio()
    xtr = with_xtr(net)
    xtr.out.append((xtr_register(5), ctl(N1)))
    net.advance(1.0)
    members[1].request(HOST, net.now)
    net.advance(1.0)
    entry = members[1].cache_entry(HOST)
    assert entry is not None
    assert entry.eid == BRANCH
    (state,) = entry.locators
    assert state.usable
    assert state.locator.rloc == XTR
    assert state.locator.name == "vm"


def test_a_deregistration_is_carried_too() -> None:
    net, members = trio()
    xtr = with_xtr(net)
    xtr.out.append((xtr_register(5), ctl(N1)))
    net.advance(1.0)
    xtr.out.append((xtr_register(6, ttl=0), ctl(N1)))
    net.advance(1.0)
    assert all(m.registration(BRANCH, exact=True) is None for m in members)


def test_it_lapses_on_every_member_when_the_xtr_stops() -> None:
    net, members = trio()
    xtr = with_xtr(net)
    xtr.out.append((xtr_register(5, ttl=3), ctl(N1)))
    net.advance(1.0)
    net.advance(3 * 60.0 + 1.0)
    assert all(m.registration(BRANCH, exact=True) is None for m in members)


def test_random_nonces_need_the_site_switch() -> None:
    net, members = trio(branch_site(relaxed_nonces=False))
    xtr = with_xtr(net)
    xtr.out.append((xtr_register(1 << 60), ctl(N1)))
    net.advance(1.0)
    xtr.out.append((xtr_register(7, ttl=0), ctl(N1)))
    net.advance(1.0)
    # RFC 9301 5.6: a lower nonce is refused, and so it is not carried on.
    assert members[0].counters[C.REJECT + "replayed-nonce"] >= 1
    assert all(m.registration(BRANCH, exact=True) is not None for m in members)
    assert members[0].counters[C.RELAYED_SENT] == 1


def test_a_stranger_cannot_relay() -> None:
    net, members = trio()
    ecm = ecm_bytes(xtr_register(5), XTR, N2, 4342)
    stranger = Raw()
    net.add(stranger, ctl(IPv4Address("192.0.2.66")))
    stranger.out.append((ecm, ctl(N2)))
    net.advance(1.0)
    assert members[1].registration(BRANCH, exact=True) is None
    assert members[1].counters[C.DROP + "relay-not-member"] == 1


def test_a_member_cannot_relay_a_group_registration_in_anothers_name() -> None:
    net, members = trio()
    addr, mask = Eid.prefix("10.99.0.0/24").to_wire()
    rec = MapRecord(addr, mask, (Locator(XTR),), 3)
    forged = register_msg(rec, nonce=5, key=KEY, xtr_id=None)
    ecm = ecm_bytes(forged, XTR, N2, 4342)
    members[1].receive_datagram(ecm, ctl(N1), net.now)
    assert members[1].registration(Eid.prefix("10.99.0.0/24"), exact=True) is None
    assert members[1].counters[C.REJECT + "relay-refused"] == 1


def test_a_relayed_copy_with_a_bad_hmac_is_refused() -> None:
    net, members = trio()
    data = bytearray(xtr_register(5))
    data[data.index(XTR.packed) + 3] ^= 1  # the RLOC, under the xTR's HMAC
    ecm = ecm_bytes(bytes(data), XTR, N2, 4342)
    members[1].receive_datagram(ecm, ctl(N1), net.now)
    assert members[1].registration(BRANCH, exact=True) is None
    assert members[1].counters[C.REJECT + "auth-failed"] == 1


def test_a_relayed_registration_sends_nothing_to_the_xtr() -> None:
    net, members = trio()
    ecm = ecm_bytes(xtr_register(5), XTR, N2, 4342)
    members[1].receive_datagram(ecm, ctl(N1), net.now)
    assert members[1].registration(BRANCH, exact=True) is not None
    assert not [d for _, d in members[1].datagrams_to_send() if d[0] == XTR]


def test_unauthenticated_registrations_need_the_site_switch() -> None:
    for allow in (False, True):
        net, members = trio(branch_site(allow_unauthenticated=allow))
        xtr = with_xtr(net)
        xtr.out.append((xtr_register(5, key=None, alg=0), ctl(N1)))
        net.advance(1.0)
        held = [m.registration(BRANCH, exact=True) is not None for m in members]
        assert held == [allow] * 3
        if not allow:
            assert members[0].counters[C.REJECT + "auth-required"] == 1


def test_the_lispers_net_wire_form_round_trips_in_a_mesh() -> None:
    net = SimNet(seed=4, record=True)
    members = []
    for i, ip in enumerate(DECENT_IPS, start=1):
        config = decent_node_config(
            name=f"n{i}",
            rlocs=(ip,),
            group=GROUP,
            key=KEY,
            xtr_id=i,
            seeds=DECENT_IPS[:1],
            wire_form="lispers.net",
        )
        members.append(attach(net, Traced(config, nonce=nonces(i << 48))))
    net.advance(30.0)
    assert all(len(m.membership()) == 3 for m in members)
    joins = []
    for _, _, _, data in net.trace:
        try:
            msg = decode(data)
        except DecodeError:  # data-port copies
            continue
        for rec in getattr(msg, "records", ()):
            if isinstance(rec, MapRecord) and rec.locators:
                loc = rec.locators[0]
                if isinstance(loc.address, AfiList):
                    joins.append(rec)
    assert joins, "no membership record in the lispers.net form was sent"
    group = Eid.sg("0.0.0.0/0", "233.252.1.1/32").to_wire()[0]
    for join in joins:
        assert isinstance(join.eid, MulticastInfo)
        assert join.eid.padded
        assert replace(join.eid, padded=False) == group


def test_what_the_relay_sends_decodes_cleanly_in_tshark() -> None:
    net, _members = trio()
    xtr = with_xtr(net)
    net.trace.clear()
    xtr.out.append((xtr_register(5), ctl(N1)))
    xtr.out.append((request_msg("10.21.0.5/32", XTR).encode(), ctl(N2)))
    net.advance(1.0)
    # The relayed ECM rides replicated on the data port (RFC 9962 4.1).
    emitted = [
        (data, dst[1]) for _, src, dst, data in net.trace if src[0] in DECENT_IPS
    ]
    control = [d for d, port in emitted if port == 4342]
    kinds = {type(decode(d)).__name__ for d in control}
    assert {"MapNotify", "MapReply"} <= kinds
    replicated = [d for d, port in emitted if port == 4341]
    assert any(
        isinstance(decode(decapsulate(d)[1][28:]), EncapsulatedControlMessage)
        for d in replicated
    )
    assert_clean(emitted, {MAP_REGISTER_T_BIT: "tshark 4.0 predates the T bit"})
