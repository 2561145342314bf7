"""The RFC 8061 key exchange role: keyed probes, answers, checks, refusals, abuse."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

import pytest

from decent.peer import counters as C
from decent.peer.config import Limits, TrustConfig
from decent.peer.dataplane import DataPlane, DataPlaneConfig, Route
from decent.peer.events import KeyStateChanged
from decent.peer.roles.keys import CLEAR, ENCRYPTED, KEYING, REFUSED, RETRY_AFTER
from decent.wire import (
    NO_ADDRESS,
    Address,
    Eid,
    MapReply,
    MapRequest,
    RequestRecord,
    SecurityKey,
    decode,
    find_security_key,
)
from decent.wire.crypto import keypair
from decent.wire.data import KEY_ID_MASK
from decent.wire.trust import (
    find_address_signature,
    find_signature,
    generate_private_key,
    key_exchange_digest,
    sign,
    signature_locator,
    without_signature,
)
from tests.peer.conftest import N1, N2, N3, Traced, sent
from tests.peer.mesh import STRANGER, Mesh, eid4, eid6, mesh, udp
from tests.peer.simnet import Addr, SimNet
from tests.peer.test_trust import Authority

ONE, TWO, THREE = str(N1), str(N2), str(N3)
TO_N2: Route = ((TWO, 4341), 0, 0)
N1B = IPv4Address("198.18.42.21")
#: n2's IPv4 EID: what keyed probes to n2 ask for.
TWO_EID = Eid.prefix("2.2.2.2/32")
#: The ITR's KeyCheck period without a probe interval.
CHECK = 10.0


def move(net: SimNet, node: Traced, rloc: IPv4Address) -> None:
    """node's address changes to rloc (as tests.peer.test_roaming.move)."""
    net.remove(node)
    net.add(node, (rloc, 4342), (rloc, 4341), source=(rloc, 4342))
    node.change_rlocs((rloc,), net.now)


def packet(k: int = 0, *, src: int = 1, dst: int = 2) -> bytes:
    data: bytes = udp(eid4(src), eid4(dst), sport=1000 + k)
    return data


def released(m: Mesh, i: int = 0) -> list[bytes]:
    return [data for data, _ in m.dps[i].packets_to_send()]


def deliver(m: Mesh, *data: bytes, src: IPv4Address = N1) -> list[bytes]:
    """What n2 writes to its TUN for payloads arriving from src."""
    return m.carry([(d, TO_N2) for d in data], src)


def send(m: Mesh, p: bytes) -> list[bytes]:
    return [data for data, _ in m.send(0, p)]


def keyed(m: Mesh) -> Mesh:
    """n1 keys with n2 for its first packet, which n2 then writes."""
    first = packet()
    assert m.send(0, first) == []
    m.net.advance(0.5)
    [sealed] = released(m)
    assert sealed[0] & KEY_ID_MASK == 1
    assert deliver(m, sealed) == [first]
    return m


def states(node: Traced, rloc: str = TWO) -> list[tuple[str, str]]:
    return [
        (e.state, e.reason) for _, e in node.events(KeyStateChanged) if e.rloc == rloc
    ]


def public_key(seed: int) -> bytes:
    return keypair(seed.to_bytes(32, "big"))[1]


def keyed_request(
    rloc: Address,
    *keys: bytes,
    nonce: int = 0x5EED,
    suite: int = 5,
    revoke: bool = False,
    source_eid: Address = NO_ADDRESS,
    eid: Eid = TWO_EID,
) -> MapRequest:
    """An RLOC-probe carrying an ITR's keys for rloc, as an ITR sends it."""
    addr, mask = eid.to_wire()
    sk = SecurityKey(suite, keys or (public_key(1),), rloc, revoke=revoke)
    return MapRequest(
        nonce, (RequestRecord(addr, mask),), (sk,), source_eid=source_eid, probe=True
    )


def ask(
    node: Traced, req: MapRequest, src: IPv4Address, now: float, to: IPv4Address = N2
) -> list[MapReply]:
    """Feed req to node as if from src; the probe replies it sends."""
    node.receive_datagram(req.encode(), (src, 4342), now, (to, 4342))
    out = []
    for data, _ in node.datagrams_to_send():
        msg = decode(data)
        if isinstance(msg, MapReply) and msg.probe:
            out.append(msg)
    return out


def etr_keys(replies: list[MapReply]) -> list[SecurityKey]:
    return [
        sk
        for rep in replies
        for rec in rep.records
        for loc in rec.locators
        if (sk := find_security_key(loc.address)) is not None
    ]


def counters(node: Traced, prefix: str) -> dict[str, int]:
    return {k: v for k, v in node.counters.items() if k.startswith(prefix)}


# ---------------------------------------------------------------- checks and restarts
def test_a_key_check_to_an_etr_that_kept_our_key_changes_nothing():
    m = keyed(mesh(encrypt="required"))
    n1, n2 = m.nodes[0], m.nodes[1]
    tx = n1.keys.tx[TWO]
    rx = dict(n2.keys.rx)
    requested = n1.counters[C.KEYS_REQUESTED]
    m.net.advance(3 * CHECK)
    assert n1.counters[C.KEYS_REQUESTED] - requested == 3  # one check each
    assert n1.keys.tx[TWO] is tx
    assert n2.keys.rx == rx
    assert n1.counters[C.KEYS_ESTABLISHED] == 1
    [data] = send(m, packet(1))
    assert deliver(m, data) == [packet(1)]


@pytest.mark.parametrize("probe_interval", [None, 4.0])
def test_an_etr_that_lost_our_key_is_rekeyed_within_one_key_check(probe_interval):
    m = keyed(mesh(encrypt="required", probe_interval=probe_interval))
    n1, n2 = m.nodes[0], m.nodes[1]
    interval = probe_interval or CHECK
    assert n1.keys.check_interval == interval
    old = n1.keys.tx[TWO]
    n2.keys.rx.clear()  # what a restart loses
    lost_at = m.net.now
    written: list[bytes] = []
    assert deliver(m, *send(m, packet(1))) == []
    assert n2.counters[C.DROP_NO_KEY] == 1
    while m.net.now - lost_at <= interval:
        m.net.advance(0.25)
        written = deliver(m, *send(m, packet(2)))
        if written:
            break
    assert written == [packet(2)]
    assert m.net.now - lost_at <= interval + 0.25
    new = n1.keys.tx[TWO]
    assert (new.key_id, new.public) == (old.key_id, old.public)  # ours unchanged
    assert new.etr_public != old.etr_public  # the ETR's is new
    assert n1.counters[C.KEYS_REFUSED] == 0


def test_a_restarted_etr_node_is_rekeyed_at_the_next_key_check():
    m = keyed(mesh(encrypt="required"))
    n1, old = m.nodes[0], m.nodes[1]
    m.net.advance(CHECK + 0.5 - m.net.now)  # just after a key check
    restart = m.net.now
    m.net.remove(old)
    counter = itertools.count(1 << 40)
    n2 = Traced(old.config, nonce=lambda: next(counter), now=restart)
    addrs = [(N2, 4342), (N2, 4341)]
    m.net.add(n2, *addrs, source=addrs[0])
    m.nodes[1] = n2
    m.dps[1] = n2.ride(DataPlane(n2, DataPlaneConfig(), nonce=lambda: 0xABCDEF))
    written: list[bytes] = []
    while not written and m.net.now - restart <= CHECK:
        m.net.advance(0.5)
        written = deliver(m, *send(m, packet(1)))
    assert written == [packet(1)]
    assert m.net.now - restart <= CHECK + 0.5
    assert n1.keys.peers[TWO].state == ENCRYPTED
    assert n1.counters[C.KEYS_ESTABLISHED] == 2


def test_a_peer_that_never_answers_is_refused_then_asked_again_later():
    m = mesh(encrypt="required")
    n1 = m.nodes[0]
    m.net.partition(N1, N2)
    assert m.send(0, packet()) == []
    m.net.advance(3 * 3.0 + 0.5)  # three tries, probe_timeout apart
    assert n1.counters[C.KEYS_REQUESTED] == 3
    assert n1.counters[C.KEYS_UNANSWERED] == 1
    assert states(n1)[-1] == (REFUSED, "no answer")
    assert released(m) == []
    m.net.heal()
    assert m.send(0, packet(1)) == []
    assert n1.counters[C.DROP_PEER_UNENCRYPTED] == 1
    assert n1.counters[C.KEYS_REQUESTED] == 3
    m.net.advance(RETRY_AFTER)
    assert m.send(0, packet(2)) == []  # asked again, held meanwhile
    m.net.advance(0.5)
    [data] = released(m)
    assert deliver(m, data) == [packet(2)]
    assert states(n1)[-1] == (ENCRYPTED, "")


def test_a_rekey_due_while_a_key_check_is_unanswered_still_happens():
    m = keyed(mesh(encrypt="required", rekey_seconds=36.0))
    n1 = m.nodes[0]
    # The key is from t ~ 5: its rekey is due at ~ 41, while the key check
    # of t = 40 waits for an answer that a partition keeps away.
    m.net.advance(39.0 - m.net.now)
    m.net.partition(N1, N2)
    m.net.advance(11.0)
    assert n1.counters[C.KEYS_REKEYED] == 0
    assert n1.keys.tx[TWO].key_id == 1
    m.net.heal()
    m.net.advance(RETRY_AFTER)
    assert n1.counters[C.KEYS_REKEYED] == 1
    assert n1.keys.tx[TWO].key_id == 2
    [data] = send(m, packet(1))
    assert deliver(m, data) == [packet(1)]


def test_a_rekey_that_went_unanswered_is_tried_again():
    m = keyed(mesh(encrypt="required", rekey_seconds=100.0))
    n1 = m.nodes[0]
    m.net.advance(104.0 - m.net.now)  # the key check of t = 100 went through
    m.net.partition(N1, N2)
    m.net.advance(12.0)  # the rekey of t ~ 105: three tries, no answer
    assert n1.counters[C.KEYS_REKEYED] == 1
    assert n1.counters[C.KEYS_UNANSWERED] == 1
    assert n1.keys.tx[TWO].key_id == 1  # the old key keeps sealing
    assert n1.keys.peers[TWO].state == ENCRYPTED
    m.net.heal()
    m.net.advance(RETRY_AFTER)
    assert n1.counters[C.KEYS_REKEYED] == 2
    assert n1.keys.tx[TWO].key_id == 2
    [data] = send(m, packet(1))
    assert deliver(m, data) == [packet(1)]


def test_our_rloc_changing_drops_our_keys_and_rekeys_from_the_new_one():
    m = keyed(mesh(encrypt="required", rekey_seconds=60.0))
    n1, n2 = m.nodes[0], m.nodes[1]
    move(m.net, n1, N1B)
    assert n1.keys.tx == {}
    assert states(n1)[-1] == (KEYING, "our RLOC changed")
    m.net.settle()
    m.net.trace.clear()
    assert m.send(0, packet(1)) == []  # held for a new key
    m.net.advance(0.5)
    [req] = [r for _, d, r in sent(m.net, MapRequest, src=N1B) if r.probe]
    [sk] = [k for k in map(find_security_key, req.itr_rlocs) if k is not None]
    assert sk.address == N1B
    [data] = released(m)
    assert deliver(m, data, src=N1B) == [packet(1)]
    assert (str(N1B), 1) in n2.keys.rx
    # The old RLOC's key goes once it is nobody's.
    m.net.advance(60.0)
    assert {h for h, _ in n2.keys.rx} == {str(N1B)}


# ---------------------------------------------------------------- hostile requests
def test_a_keyed_request_from_an_unregistered_rloc_gets_no_answer():
    m = mesh(encrypt="required")
    n2 = m.nodes[1]
    replies = ask(n2, keyed_request(STRANGER), STRANGER, m.net.now)
    # No answer rather than one without a key: a node that just restarted
    # does not know its peers yet, and "no key" would make them stop.
    assert replies == []
    assert n2.counters[C.DROP + "key-unknown-rloc"] == 1
    assert n2.keys.rx == {}


def test_a_keyed_request_for_another_rloc_than_its_source_gets_no_key():
    m = keyed(mesh(encrypt="required"))
    n2 = m.nodes[1]
    rx = dict(n2.keys.rx)
    # n3 asks for a key for n1's RLOC: it would cut n1 off.
    replies = ask(n2, keyed_request(N1), N3, m.net.now)
    assert etr_keys(replies) == []
    assert n2.counters[C.DROP + "key-rloc-mismatch"] == 1
    assert n2.keys.rx == rx


def test_a_flood_of_keyed_requests_is_rate_limited():
    m = mesh(encrypt="required")
    n2 = m.nodes[1]
    now = m.net.now
    keys = [
        etr_keys(ask(n2, keyed_request(N1, public_key(k)), N1, now)) for k in range(40)
    ]
    assert sum(map(len, keys)) == 20  # the burst
    assert n2.counters[C.DROP + "key-rate-limited"] == 20
    assert n2.counters[C.KEYS_ANSWERED] == 20
    # The bucket refills at 10 a second.
    later = [
        etr_keys(ask(n2, keyed_request(N1, public_key(k)), N1, now + 1.0))
        for k in range(40, 60)
    ]
    assert sum(map(len, later)) == 10


def test_spoofed_strangers_do_not_refill_a_members_rate_limit():
    m = mesh(encrypt="required", extra={1: {"limits": Limits(max_keyed_peers=4)}})
    n2 = m.nodes[1]
    now = m.net.now
    answered = 0
    for k in range(40):
        answered += len(etr_keys(ask(n2, keyed_request(N1, public_key(k)), N1, now)))
        for j in range(8):  # as many strangers as the table holds, and more
            stranger = IPv4Address(int(STRANGER) + 1 + j)
            ask(n2, keyed_request(stranger), stranger, now)
    assert answered == 20
    assert n2.counters[C.DROP + "key-rate-limited"] == 20


@pytest.mark.parametrize(
    "bad",
    [
        bytes(31),  # short
        bytes(33),  # long
        bytes(32),  # the all-zero point: an all-zero shared secret
        (1).to_bytes(32, "little"),  # another low-order point
        bytes(512),
        b"",
    ],
    ids=["31-bytes", "33-bytes", "zero", "low-order", "512-bytes", "empty"],
)
def test_a_garbage_itr_key_installs_nothing_and_never_raises(bad):
    m = keyed(mesh(encrypt="required"))
    n2 = m.nodes[1]
    rx = dict(n2.keys.rx)
    replies = ask(n2, keyed_request(N1, bad), N1, m.net.now)
    assert all(k == b"" for sk in etr_keys(replies) for k in sk.keys)
    assert n2.keys.rx == rx  # n1's key is untouched
    [data] = send(m, packet(1))
    assert deliver(m, data) == [packet(1)]


def test_garbage_for_one_key_id_does_not_spoil_the_other():
    m = mesh(encrypt="required")
    n2 = m.nodes[1]
    good = public_key(7)
    replies = ask(n2, keyed_request(N1, bytes(32), good), N1, m.net.now)
    [sk] = etr_keys(replies)
    assert sk.keys[0] == b""
    assert len(sk.keys[1]) == 32
    assert sorted(n2.keys.rx) == [(ONE, 2)]


@pytest.mark.parametrize("suite", [0, 1, 7, 255])
def test_a_keyed_request_in_an_unknown_suite_gets_no_key(suite):
    m = mesh(encrypt="required")
    n2 = m.nodes[1]
    replies = ask(n2, keyed_request(N1, suite=suite), N1, m.net.now)
    assert len(replies) == 1
    assert etr_keys(replies) == []
    assert n2.keys.rx == {}


def test_mangled_keyed_requests_never_raise_and_leave_no_state():
    m = keyed(mesh(encrypt="required"))
    n2 = m.nodes[1]
    data = bytearray(keyed_request(N1, public_key(3)).encode())
    rng = random.Random(8061)
    for _ in range(500):
        mangled = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        n2.receive_datagram(
            bytes(mangled[: rng.randint(4, len(mangled))]),
            (N1, 4342),
            m.net.now,
            (N2, 4342),
        )
        n2.datagrams_to_send()
    # A mangled key is as good a key as any, for n1's RLOC only (it came
    # from there); nothing else is kept.
    assert {h for h, _ in n2.keys.rx} == {ONE}
    assert n2.soft_state_sizes()["receive-keys"] <= 3


def test_the_revoke_bit_makes_the_etr_forget_our_keys():
    m = keyed(mesh(encrypt="required"))
    n1, n2 = m.nodes[0], m.nodes[1]
    tx = n1.keys.tx[TWO]
    revoke = keyed_request(N1, tx.public, revoke=True)
    assert etr_keys(ask(n2, revoke, N1, m.net.now)) == []
    assert n2.counters[C.KEYS_REVOKED] == 1
    assert n2.keys.rx == {}
    assert deliver(m, *send(m, packet(1))) == []
    assert n2.counters[C.DROP_NO_KEY] == 1
    # Our next key check finds the ETR without our key: it answers a new one.
    m.net.advance(CHECK)
    [data] = send(m, packet(2))
    assert deliver(m, data) == [packet(2)]


def test_a_key_check_answered_without_a_key_stops_encryption():
    m = keyed(mesh(encrypt="required"))
    n1, n2 = m.nodes[0], m.nodes[1]
    n2.keys.answers.mode = "off"  # as if it came back with encryption off
    m.net.advance(CHECK)
    assert TWO not in n1.keys.tx
    assert states(n1)[-1] == (REFUSED, "answered without a key")
    assert m.send(0, packet(1)) == []
    assert n1.counters[C.DROP_PEER_UNENCRYPTED] == 1


def test_an_etr_with_encryption_off_answers_keyed_requests_without_a_key():
    m = mesh(encrypt="required", extra={1: {"encrypt": "off"}})
    n2 = m.nodes[1]
    replies = ask(n2, keyed_request(N1), N1, m.net.now)
    assert len(replies) == 1
    assert etr_keys(replies) == []
    assert n2.counters[C.KEYS_ASKED] == 1
    assert n2.keys.rx == {}


def test_receive_keys_stay_bounded_under_a_flood_of_distinct_keys():
    m = mesh(encrypt="required", extra={1: {"limits": Limits(max_keyed_peers=1)}})
    n2 = m.nodes[1]
    now = m.net.now
    for k in range(300):
        now += 0.2  # under the rate limit: every request is answered
        src = (N1, N3)[k % 2]
        keys = (public_key(3 * k + 1), public_key(3 * k + 2), public_key(3 * k + 3))
        assert etr_keys(ask(n2, keyed_request(src, *keys[: 1 + k % 3]), src, now))
        for j in range(3):  # and strangers the table must not keep
            stranger = IPv4Address(int(STRANGER) + 1 + (k * 3 + j) % 1000)
            ask(n2, keyed_request(stranger), stranger, now)
        sizes = n2.soft_state_sizes()
        assert sizes["receive-keys"] <= 3
        assert len({h for h, _ in n2.keys.rx}) == 1
    assert n2.counters[C.KEYS_ANSWERED] == 300


def test_send_keys_and_exchanges_stay_bounded_as_peers_come_and_go():
    m = mesh(encrypt="required", extra={0: {"limits": Limits(max_keyed_peers=2)}})
    n1 = m.nodes[0]
    eid = Eid.prefix("9.9.9.9/32")
    for k in range(50):
        host = IPv4Address(int(STRANGER) + 1 + k)
        n1.keys.want(str(host), host, eid, N1, m.net.now)
        sizes = n1.soft_state_sizes()
        assert sizes["key-exchanges"] <= 2
        assert len(n1.keys.peers) <= 2
    m.net.advance(60.0)  # the exchanges time out
    assert n1.soft_state_sizes()["key-exchanges"] == 0
    keyed(m)
    assert len(n1.keys.peers) <= 2
    assert n1.soft_state_sizes()["send-keys"] == 1


# ---------------------------------------------------------------- node identities
@pytest.fixture
def trusted() -> tuple[Mesh, Authority]:
    authority = Authority(generate_private_key())
    identities = [
        authority.trust(f"n{i}", (f"{eid4(i)}/32", f"{eid6(i)}/128")) for i in (1, 2, 3)
    ]
    m = mesh(encrypt="required", identities=identities)
    assert all(len(n.membership()) == 3 for n in m.nodes)
    return m, authority


def trust_of(node: Traced) -> TrustConfig:
    trust = node.config.trust
    assert trust is not None
    return trust


def signed_request(
    signer: Traced, rloc: IPv4Address, *keys: bytes, nonce: int = 0x5EED
) -> MapRequest:
    """A keyed request for rloc signed with signer's node key."""
    keys = keys or (public_key(1),)
    trust = trust_of(signer)
    digest = key_exchange_digest(False, nonce, 5, keys, (), rloc)
    locator = signature_locator(trust.certificate, sign(trust.node_private_key, digest))
    return keyed_request(rloc, *keys, nonce=nonce, source_eid=locator.address)


def test_with_identities_both_halves_of_the_exchange_are_signed(trusted):
    m, _ = trusted
    m.net.trace.clear()
    keyed(m)
    [req] = [r for _, _, r in sent(m.net, MapRequest, src=N1) if r.probe]
    assert find_address_signature(req.source_eid) is not None
    [rep] = [r for _, _, r in sent(m.net, MapReply, src=N2) if r.probe]
    assert find_signature(rep.records[0]) is not None
    for n in m.nodes:
        assert counters(n, C.REJECT) == {}


def test_with_identities_a_member_signing_for_anothers_rloc_is_refused(trusted):
    m, _ = trusted
    keyed(m)
    n2, n3 = m.nodes[1], m.nodes[2]
    rx = dict(n2.keys.rx)
    # n3, a member in good standing, spoofs n1's address with its own
    # signature: the ETR knows n1's RLOC is not n3's.
    replies = ask(n2, signed_request(n3, N1), N1, m.net.now)
    assert etr_keys(replies) == []
    assert n2.counters[C.REJECT + "key-not-rloc-owner"] == 1
    assert n2.keys.rx == rx
    # Its own RLOC, from it, is fine.
    assert etr_keys(ask(n2, signed_request(n3, N3), N3, m.net.now))


def test_with_identities_an_unsigned_keyed_request_gets_no_key(trusted):
    m, _ = trusted
    n2 = m.nodes[1]
    assert etr_keys(ask(n2, keyed_request(N1), N1, m.net.now)) == []
    assert n2.counters[C.REJECT + "key-signature-missing"] == 1
    assert n2.keys.rx == {}


def test_with_identities_a_request_whose_keys_were_swapped_is_refused(trusted):
    m, _ = trusted
    n1, n2 = m.nodes[0], m.nodes[1]
    honest = signed_request(n1, N1, public_key(1))
    [sk] = honest.itr_rlocs
    assert isinstance(sk, SecurityKey)
    swapped = replace(honest, itr_rlocs=(replace(sk, keys=(public_key(2),)),))
    assert etr_keys(ask(n2, swapped, N1, m.net.now)) == []
    assert n2.counters[C.REJECT + "key-signature-invalid"] == 1


def test_with_identities_a_certificate_of_another_mesh_is_refused(trusted):
    m, _ = trusted
    n2 = m.nodes[1]
    stranger = Authority(generate_private_key()).trust("n1", (f"{eid4(1)}/32",))
    digest = key_exchange_digest(False, 9, 5, (public_key(1),), (), N1)
    locator = signature_locator(
        stranger.certificate, sign(stranger.node_private_key, digest)
    )
    req = keyed_request(N1, nonce=9, source_eid=locator.address)
    assert etr_keys(ask(n2, req, N1, m.net.now)) == []
    assert n2.counters[C.REJECT + "key-certificate-forged"] == 1


def _forge_reply(m: Mesh, forge: Any) -> Traced:
    """n1 asks n2 for a key; n2's answer is lost and forge(answer, m) is
    delivered to n1 instead. Returns n1."""
    n1 = m.nodes[0]

    def lose(data: bytes, src: Addr, dst: Addr) -> bool:
        return src[0] == N2 and dst[0] == N1 and data[0] >> 4 == 2

    m.net.drop = lose
    m.net.trace.clear()
    assert m.send(0, packet()) == []
    m.net.advance(0.01)
    [genuine] = [r for _, _, r in sent(m.net, MapReply, src=N2) if r.probe]
    m.net.drop = None
    n1.receive_datagram(forge(genuine, m).encode(), (N2, 4342), m.net.now, (N1, 4342))
    m.net.advance(0.5)
    return n1


def _strip(rep: MapReply, m: Mesh) -> MapReply:
    return replace(rep, records=tuple(map(without_signature, rep.records)))


def _corrupt(rep: MapReply, m: Mesh) -> MapReply:
    [rec] = rep.records
    found = find_signature(rec)
    assert found is not None
    cert, sig = found
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    locators = (*without_signature(rec).locators, signature_locator(cert, bad))
    return replace(rep, records=(replace(rec, locators=locators),))


def _other_member(rep: MapReply, m: Mesh) -> MapReply:
    """n3 signs n2's answer with its own key (a valid signature)."""
    [rec] = rep.records
    [sk] = [k for loc in rec.locators if (k := find_security_key(loc.address))]
    [req] = [r for _, _, r in sent(m.net, MapRequest, src=N1) if r.nonce == rep.nonce]
    [itr_sk] = req.itr_rlocs
    assert isinstance(itr_sk, SecurityKey)
    tx_keys = itr_sk.keys
    digest = key_exchange_digest(True, rep.nonce, sk.cipher_suite, tx_keys, sk.keys, N2)
    trust = trust_of(m.nodes[2])
    signature = signature_locator(
        trust.certificate, sign(trust.node_private_key, digest)
    )
    locators = (*without_signature(rec).locators, signature)
    return replace(rep, records=(replace(rec, locators=locators),))


def _swap_key_to(rep: MapReply, key: bytes) -> MapReply:
    [rec] = rep.records
    locators = tuple(
        replace(loc, address=replace(sk, keys=(key,)))
        if (sk := find_security_key(loc.address)) is not None
        else loc
        for loc in rec.locators
    )
    return replace(rep, records=(replace(rec, locators=locators),))


def _swap_key(rep: MapReply, m: Mesh) -> MapReply:
    """A man in the middle puts its own ETR key in, keeping the signature."""
    return _swap_key_to(rep, public_key(66))


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (_strip, "key-signature-missing"),
        (_corrupt, "key-signature-invalid"),
        (_other_member, "key-not-rloc-owner"),
        (_swap_key, "key-signature-invalid"),
    ],
    ids=["missing", "invalid", "other-member", "swapped-key"],
)
def test_with_identities_an_unauthentic_answer_is_refused(trusted, forge, reason):
    m, _ = trusted
    n1 = _forge_reply(m, forge)
    assert n1.counters[C.REJECT + reason] == 1
    assert states(n1)[-1] == (REFUSED, reason.removeprefix("key-"))
    assert TWO not in n1.keys.tx
    assert released(m) == []  # the held packet was not sent, not in clear either
    assert m.send(0, packet(1)) == []
    assert n1.counters[C.DROP_PEER_UNENCRYPTED] == 1


def test_without_identities_an_answer_with_a_garbage_key_is_refused():
    m = mesh(encrypt="preferred")

    def garbage(rep: MapReply, m: Mesh) -> MapReply:
        return _swap_key_to(rep, bytes(32))

    n1 = _forge_reply(m, garbage)
    # Not "clear": a peer that sent a key wants encryption.
    assert states(n1)[-1] == (REFUSED, "bad public key")
    assert released(m) == []


def test_an_answer_in_another_suite_is_refused():
    m = mesh(encrypt="preferred")

    def other_suite(rep: MapReply, m: Mesh) -> MapReply:
        [rec] = rep.records
        locators = tuple(
            replace(loc, address=replace(sk, cipher_suite=6))
            if (sk := find_security_key(loc.address)) is not None
            else loc
            for loc in rec.locators
        )
        return replace(rep, records=(replace(rec, locators=locators),))

    n1 = _forge_reply(m, other_suite)
    assert n1.counters[C.REJECT + "key-suite-mismatch"] == 1
    assert states(n1)[-1] == (REFUSED, "suite-mismatch")


def test_key_states_seen_by_the_operator():
    m = mesh(encrypt="preferred", extra={2: {"encrypt": "off"}})
    n1 = m.nodes[0]
    keyed(m)
    m.send(0, packet(src=1, dst=3))
    m.net.advance(0.5)
    assert states(n1) == [(KEYING, ""), (ENCRYPTED, "")]
    assert states(n1, THREE) == [(KEYING, ""), (CLEAR, "answered without a key")]
    peer = n1.keys.peers[THREE]
    assert peer.retry_at == pytest.approx(peer.since + RETRY_AFTER)
    [view] = [p for p in m.dps[0].sealing.peers(m.net.now) if p["rloc"] == THREE]
    assert (view["state"], view["reason"], view["cipher"]) == (
        CLEAR,
        "answered without a key",
        None,
    )
