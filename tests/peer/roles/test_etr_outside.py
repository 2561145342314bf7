"""The ETR and ITR as a classic xTR of an outside Map-Server and Map-Resolver."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from decent.peer import counters as C
from decent.peer.config import OutsideMapServer
from decent.peer.mapping.push_config import decent_node_config
from decent.wire import (
    AlgorithmId,
    Eid,
    EncapsulatedControlMessage,
    MapNotify,
    MapRegister,
    MapRequest,
    check_auth,
    decode,
    map_notify_for,
)
from tests.peer.conftest import (
    DECENT_IPS,
    GROUP,
    KEY,
    N1,
    Raw,
    Traced,
    attach,
    ctl,
    nonces,
)
from tests.peer.simnet import SimNet
from tests.wire.tshark import MAP_REGISTER_T_BIT, assert_clean

STUB = IPv4Address("192.0.2.9")
STUB_KEY = b"stub-secret"
OWN_EID = Eid.prefix("1.1.1.1/32")
FAR = Eid.prefix("10.99.0.1/32")


def node_with_stub(group: bool = True, **kw: Any) -> tuple[SimNet, Traced, Raw]:
    net = SimNet(seed=5, record=True)
    config = decent_node_config(
        name="n1",
        rlocs=(N1,),
        group=GROUP if group else None,
        key=KEY if group else b"",
        xtr_id=1,
        eids=(OWN_EID,),
        outside_map_servers=(
            OutsideMapServer(ctl(STUB), STUB_KEY, AlgorithmId.HMAC_SHA_1_96),
        ),
        outside_map_resolvers=(ctl(STUB),),
        resolve_in_process=True,
        **kw,
    )
    node = Traced(config, nonce=nonces(1 << 48))
    attach(net, node)
    stub = Raw()
    net.add(stub, ctl(STUB))
    return net, node, stub


def registers(stub: Raw) -> list[tuple[bytes, MapRegister]]:
    out = []
    for _, data, _ in stub.got:
        msg = decode(data)
        if isinstance(msg, MapRegister):
            out.append((data, msg))
    return out


def test_only_ip_eids_go_to_the_outside_map_server_signed_with_its_key() -> None:
    net, _node, stub = node_with_stub()
    net.advance(0.5)
    data, msg = registers(stub)[0]
    assert (msg.key_id, msg.alg_id, len(msg.auth_data)) == (0, 1, 20)
    assert check_auth(data, STUB_KEY)
    assert [Eid.from_wire(r.eid, r.mask_len) for r in msg.records] == [OWN_EID]
    assert msg.want_map_notify
    assert msg.proxy_reply
    assert not msg.merge


def test_it_retransmits_until_the_outside_map_server_acknowledges() -> None:
    # Without a group (no bootstrap rounds while alone), only RFC 9301 5.7's
    # retransmissions repeat a Map-Register: again after 1 s, then 2 s.
    net, node, stub = node_with_stub(group=False)
    net.advance(3.5)
    assert len(registers(stub)) == 3
    data, _ = registers(stub)[-1]
    stub.out.append((map_notify_for(data, STUB_KEY), ctl(N1)))
    net.advance(10.0)
    assert len(registers(stub)) == 3
    assert node.counters[C.DROP + "auth-failed"] == 0


def test_a_map_notify_signed_with_another_key_is_dropped() -> None:
    net, node, stub = node_with_stub()
    net.advance(0.5)
    data, _ = registers(stub)[-1]
    stub.out.append((map_notify_for(data, b"wrong"), ctl(N1)))
    net.advance(0.1)
    assert node.counters[C.DROP + "auth-failed"] == 1


def test_the_group_is_asked_first_and_the_outside_for_the_rest() -> None:
    net, node, stub = node_with_stub()
    net.advance(1.0)
    stub.got.clear()
    node.request(OWN_EID, net.now)  # the group (we) holds it
    node.request(FAR, net.now)
    net.advance(0.5)
    asked = [decode(d) for _, d, _ in stub.got]
    ecms = [m for m in asked if isinstance(m, EncapsulatedControlMessage)]
    assert len(ecms) == 1
    inner = ecms[0].message
    assert isinstance(inner, MapRequest)
    assert Eid.from_wire(inner.records[0].eid, 32) == FAR
    assert node.cache_entry(OWN_EID) is not None


def test_without_a_group_it_is_only_a_classic_xtr() -> None:
    net, node, stub = node_with_stub(group=False)
    assert node.config.group is None
    assert node.config.map_servers == ()
    net.advance(0.5)
    ((_, msg),) = registers(stub)
    assert [Eid.from_wire(r.eid, r.mask_len) for r in msg.records] == [OWN_EID]
    node.request(FAR, net.now)
    net.advance(0.5)
    assert any(
        isinstance(decode(d), EncapsulatedControlMessage) for _, d, _ in stub.got
    )
    assert node.membership() == []


def test_a_group_member_still_joins_its_group() -> None:
    net = SimNet(seed=6)
    members: list[Traced] = []
    for i, ip in enumerate(DECENT_IPS, start=1):
        config = decent_node_config(
            name=f"n{i}",
            rlocs=(ip,),
            group=GROUP,
            key=KEY,
            xtr_id=i,
            seeds=DECENT_IPS[:1],
            outside_map_servers=(OutsideMapServer(ctl(STUB), STUB_KEY),),
        )
        member = Traced(config, nonce=nonces(i << 48))
        attach(net, member)
        members.append(member)
    net.add(Raw(), ctl(STUB))
    net.advance(30.0)
    assert all(len(m.membership()) == 3 for m in members)
    assert not any(isinstance(e, MapNotify) for _, e in members[0].log)


def test_what_goes_to_the_outside_decodes_cleanly_in_tshark() -> None:
    net, node, stub = node_with_stub(group=False)
    net.advance(0.5)
    node.request(FAR, net.now)
    net.advance(0.5)
    sent = [(data, 4342) for _, data, _ in stub.got]
    kinds = {type(decode(d)).__name__ for d, _ in sent}
    assert kinds == {"MapRegister", "EncapsulatedControlMessage"}
    assert_clean(sent, {MAP_REGISTER_T_BIT: "tshark 4.0 predates the T bit"})
