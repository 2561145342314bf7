"""RFC 8061 sealing on the simulated mesh: held, sealed, opened, replayed, rekeyed."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from decent.peer import counters as C
from decent.peer.dataplane import Route
from decent.peer.events import KeyStateChanged
from decent.peer.keystore import ReplayWindow
from decent.peer.roles.keys import CLEAR, ENCRYPTED, KEYING, REFUSED
from decent.wire import DataHeader, MapRequest, decapsulate, find_security_key
from decent.wire.crypto import IV_LEN, TAG_LEN
from decent.wire.data import DATA_HEADER_LEN, KEY_ID_MASK
from tests.peer.conftest import N1, N2, N3, Traced, sent
from tests.peer.mesh import N2B, Mesh, eid4, eid6, mesh, udp

TWO = str(N2)
#: Where n1's packets to n2 go.
TO_N2: Route = ((TWO, 4341), 0, 0)


def packet(k: int = 0, *, src: int = 1, dst: int = 2) -> bytes:
    """A distinct IPv4 packet from node src's EID to node dst's (k is its
    UDP source port, so every packet of a test can be told apart)."""
    data: bytes = udp(eid4(src), eid4(dst), sport=1000 + k)
    return data


def payloads(out: list[tuple[bytes, Route]]) -> list[bytes]:
    return [data for data, _ in out]


def key_id(payload: bytes) -> int:
    return payload[0] & KEY_ID_MASK


def iv_counter(payload: bytes, suite: int = 5) -> int:
    iv = payload[DATA_HEADER_LEN : DATA_HEADER_LEN + IV_LEN[suite]]
    return int.from_bytes(iv, "big")


def keyed(**kw: Any) -> tuple[Mesh, bytes]:
    """A required-encryption mesh where n1 keyed with n2 for its first
    packet; returns the mesh and that packet's sealed payload (delivered)."""
    m = mesh(encrypt="required", **kw)
    first = packet()
    assert m.send(0, first) == []
    m.net.advance(0.5)
    [sealed] = payloads(m.dps[0].packets_to_send())
    assert m.carry([(sealed, TO_N2)], N1) == [first]
    return m, sealed


def seal(m: Mesh, *inner: bytes) -> list[bytes]:
    """Sealed payloads of n1's packets to n2 (n1 holds a key: none waits)."""
    out = []
    for p in inner:
        [(data, route)] = m.send(0, p)
        assert route[0] == (TWO, 4341)
        out.append(data)
    return out


def deliver(m: Mesh, *data: bytes) -> list[bytes]:
    """What n2 writes to its TUN for payloads arriving from n1."""
    return m.carry([(d, TO_N2) for d in data], N1)


def flipped(data: bytes, at: int, bit: int = 0x01) -> bytes:
    out = bytearray(data)
    out[at] ^= bit
    return bytes(out)


def states(node: Traced, rloc: str = TWO) -> list[str]:
    return [e.state for _, e in node.events(KeyStateChanged) if e.rloc == rloc]


# ---------------------------------------------------------------- the first packet
@pytest.mark.parametrize("suite", [5, 6])
@pytest.mark.parametrize("version", [4, 6])
def test_the_first_packet_waits_for_the_key_then_goes_sealed(suite, version):
    m = mesh(encrypt="required", cipher_suite=suite)
    n1, n2 = m.nodes[0], m.nodes[1]
    src, dst = (eid4(1), eid4(2)) if version == 4 else (eid6(1), eid6(2))
    inner: bytes = udp(src, dst)
    m.net.trace.clear()
    assert m.send(0, inner) == []  # held while the key exchange runs
    assert n1.counters[C.DATAPLANE_AWAITING_KEY] == 1
    assert n1.keys.peers[TWO].state == KEYING
    # One keyed RLOC-probe, straight to n2's RLOC, with our key for our RLOC.
    [(_, dest, req)] = sent(m.net, MapRequest)
    assert dest == (N2, 4342)
    assert req.probe
    [sk] = [k for k in map(find_security_key, req.itr_rlocs) if k is not None]
    assert (sk.cipher_suite, sk.address, len(sk.keys)) == (suite, N1, 1)
    m.net.advance(0.5)
    assert states(n1) == [KEYING, ENCRYPTED]
    [(data, ((host, port), _, _))] = m.dps[0].packets_to_send()
    assert (host, port) == (TWO, 4341)
    iv = IV_LEN[suite]
    assert len(data) == DATA_HEADER_LEN + iv + len(inner) + TAG_LEN
    header, _ = decapsulate(data)
    assert header == DataHeader(nonce=0xABCDEF, lsbs=0b1, key_id=1)
    assert iv_counter(data, suite) == 1
    # Nothing of the inner packet travels in clear: not its addresses, not
    # its header, not its 32 zero bytes of payload.
    body = data[DATA_HEADER_LEN + iv :]
    assert src.packed not in body
    assert dst.packed not in body
    assert inner[:8] not in body
    assert bytes(8) not in body
    # The ETR writes exactly the inner packet.
    assert deliver(m, data) == [inner]
    rx = n2.keys.rx[(str(N1), 1)]
    assert (rx.suite, rx.packets) == (suite, 1)
    assert n2.counters[C.DROP_DECRYPT_FAILED] == 0


def test_later_packets_go_sealed_at_once_with_a_rising_counter():
    m, first = keyed()
    later = seal(m, packet(1), packet(2))
    assert [iv_counter(d) for d in (first, *later)] == [1, 2, 3]
    assert deliver(m, *later) == [packet(1), packet(2)]
    assert m.nodes[0].counters[C.DATAPLANE_AWAITING_KEY] == 1


def test_each_direction_keys_on_its_own():
    m, _ = keyed()
    back = packet(src=2, dst=1)
    assert m.send(1, back) == []  # n2 has no key to n1 yet: its own exchange
    m.net.advance(0.5)
    [data] = payloads(m.dps[1].packets_to_send())
    assert key_id(data) == 1
    assert m.carry([(data, ((str(N1), 4341), 0, 0))], N2) == [back]
    assert (str(N2), 1) in m.nodes[0].keys.rx
    assert str(N1) in m.nodes[1].keys.tx


def test_a_peer_with_another_suite_is_sealed_to_in_ours():
    # n1 prefers ChaCha20, n2 AES-GCM: the ETR answers in the ITR's suite.
    m = mesh(encrypt="required", extra={0: {"cipher_suite": 6}})
    inner = packet()
    m.send(0, inner)
    m.net.advance(0.5)
    [data] = payloads(m.dps[0].packets_to_send())
    assert len(data) == DATA_HEADER_LEN + IV_LEN[6] + len(inner) + TAG_LEN
    assert deliver(m, data) == [inner]
    assert m.nodes[1].keys.rx[(str(N1), 1)].suite == 6


def test_packets_for_a_peer_being_keyed_are_released_in_order():
    m = mesh(encrypt="required")
    inner = [packet(k) for k in range(5)]
    for p in inner:
        assert m.send(0, p) == []
    assert m.nodes[0].counters[C.KEYS_REQUESTED] == 1  # one exchange for all
    m.net.advance(0.5)
    data = payloads(m.dps[0].packets_to_send())
    assert [iv_counter(d) for d in data] == [1, 2, 3, 4, 5]
    assert deliver(m, *data) == inner


# ---------------------------------------------------------------- replays and forgeries
def test_a_replayed_packet_is_dropped_and_counted():
    m, first = keyed()
    n2 = m.nodes[1]
    assert deliver(m, first) == []
    assert n2.counters[C.DROP_REPLAYED] == 1
    [later] = seal(m, packet(1))
    assert deliver(m, later) == [packet(1)]
    assert deliver(m, later, first) == []
    assert n2.counters[C.DROP_REPLAYED] == 3
    assert n2.keys.rx[(str(N1), 1)].packets == 2


@pytest.mark.parametrize(
    ("where", "at"),
    [
        ("flags", 0),  # the N bit
        ("nonce", 3),
        ("locator-status bits", 7),
        ("IV", DATA_HEADER_LEN + 11),
        ("ciphertext", DATA_HEADER_LEN + 12 + 5),
        ("tag", -1),
    ],
)
def test_a_tampered_packet_is_dropped_and_counted(where, at):
    m, _ = keyed()
    n2 = m.nodes[1]
    [data] = seal(m, packet(1))
    bit = 0x80 if where == "flags" else 0x01
    assert deliver(m, flipped(data, at, bit)) == [], where
    assert n2.counters[C.DROP_DECRYPT_FAILED] == 1
    assert n2.counters[C.DROP_REPLAYED] == 0
    # The forgery moved no replay window: the genuine packet still opens.
    assert deliver(m, data) == [packet(1)]


def test_a_forged_counter_far_ahead_does_not_push_the_window():
    m, _ = keyed()
    [data] = seal(m, packet(1))
    forged = bytearray(data)
    forged[DATA_HEADER_LEN : DATA_HEADER_LEN + 12] = (1 << 80).to_bytes(12, "big")
    assert deliver(m, bytes(forged)) == []
    assert m.nodes[1].counters[C.DROP_DECRYPT_FAILED] == 1
    assert deliver(m, data) == [packet(1)]


def test_a_truncated_sealed_packet_is_dropped_as_short():
    m, _ = keyed()
    [data] = seal(m, packet(1))
    assert deliver(m, data[: DATA_HEADER_LEN + 12 + TAG_LEN + 19]) == []
    assert m.nodes[1].counters[C.DROP_SHORT_PACKET] == 1


@pytest.mark.parametrize("kk", [2, 3])
def test_a_packet_under_a_key_id_we_never_agreed_is_dropped(kk):
    m, _ = keyed()
    [data] = seal(m, packet(1))
    other = bytes([data[0] & ~KEY_ID_MASK | kk]) + data[1:]
    assert deliver(m, other) == []
    assert m.nodes[1].counters[C.DROP_NO_KEY] == 1
    assert deliver(m, data) == [packet(1)]


def test_a_sealed_packet_from_a_peer_that_never_keyed_is_dropped():
    m, first = keyed()
    # The same bytes, as if n3 sent them: n2 holds no key of n3's.
    assert m.carry([(first, TO_N2)], N3) == []
    assert m.nodes[1].counters[C.DROP_NO_KEY] == 1


def test_packets_out_of_order_within_the_window_are_all_accepted():
    m, _ = keyed()
    inner = [packet(k) for k in range(1, 6)]
    data = seal(m, *inner)
    order = [4, 0, 2, 1, 3]
    assert deliver(m, *(data[i] for i in order)) == [inner[i] for i in order]
    assert m.nodes[1].counters[C.DROP_REPLAYED] == 0


def test_a_packet_older_than_the_window_is_dropped():
    m, _ = keyed()
    n2 = m.nodes[1]
    width = ReplayWindow.WIDTH
    data = seal(m, *(packet(k) for k in range(2, width + 3)))
    [second, third, *_, newest] = data
    assert [iv_counter(d) for d in (second, third, newest)] == [2, 3, width + 2]
    assert deliver(m, newest) == [packet(width + 2)]
    # Counter 3 is width - 1 behind the newest: still in the window.
    assert deliver(m, third) == [packet(3)]
    # Counter 2 is width behind: out of it, though never seen.
    assert deliver(m, second) == []
    assert n2.counters[C.DROP_REPLAYED] == 1
    assert n2.counters[C.DROP_DECRYPT_FAILED] == 0


# ---------------------------------------------------------------- the replay window
def test_the_replay_window_takes_new_counters_and_refuses_seen_ones():
    w = ReplayWindow()
    assert not w.fresh(0)  # counters start at 1
    assert w.fresh(1)
    w.accept(1)
    assert not w.fresh(1)
    w.accept(5)
    assert [w.fresh(s) for s in range(1, 7)] == [False, True, True, True, False, True]
    w.accept(3)
    assert not w.fresh(3)
    assert w.fresh(4)


def test_the_replay_window_slides_its_full_width():
    w = ReplayWindow()
    top = 10_000
    w.accept(top)
    assert w.fresh(top - ReplayWindow.WIDTH + 1)
    assert not w.fresh(top - ReplayWindow.WIDTH)
    # A jump past the whole window forgets every earlier bit.
    w.accept(top - 1)
    w.accept(top + 5 * ReplayWindow.WIDTH)
    assert w.bits == 1
    assert w.bits.bit_length() <= ReplayWindow.WIDTH


# ---------------------------------------------------------------- rekeying
def test_rekey_by_packet_count_alternates_key_ids_and_loses_nothing():
    m, first = keyed(rekey_packets=3)
    n1, n2 = m.nodes[0], m.nodes[1]
    p = [packet(k) for k in range(1, 10)]
    a = seal(m, p[0], p[1])  # counters 2 and 3: the third starts a rekey
    b = seal(m, p[2])  # counter 4, still under key-id 1: its answer is not in
    m.net.advance(0.5)
    c = seal(m, p[3], p[4], p[5])  # key-id 2, used up in turn
    # The packets sealed under key-id 1 arrive after the switch, the one
    # sealed after the rekey went out last: nothing is lost.
    assert deliver(m, *a, *c, *b) == [p[k] for k in (0, 1, 3, 4, 5, 2)]
    d = seal(m, p[6])
    m.net.advance(0.5)
    e = seal(m, p[7], p[8])  # key-id 1 again, a new key
    assert deliver(m, *e, *d) == [p[7], p[8], p[6]]
    assert [key_id(x) for x in (first, *a, *b, *c, *d, *e)] == [
        *(1, 1, 1, 1),
        *(2, 2, 2, 2),
        *(1, 1),
    ]
    assert [iv_counter(x) for x in (*c, *d, *e)] == [1, 2, 3, 4, 1, 2]
    assert n1.counters[C.KEYS_REKEYED] == 2
    for reason in (C.DROP_DECRYPT_FAILED, C.DROP_NO_KEY, C.DROP_REPLAYED):
        assert n2.counters[reason] == 0
    # The rekey to key-id 2 resent key-id 1's key unchanged: the ETR holds
    # one key per key-id, not one per exchange.
    assert sorted(k for _, k in n2.keys.rx) == [1, 2]


def test_rekey_by_time_alternates_key_ids_and_loses_nothing():
    m, first = keyed(rekey_seconds=60.0)
    n1, n2 = m.nodes[0], m.nodes[1]
    ids, times, written = [key_id(first)], [m.net.now], []
    inner = [packet(k) for k in range(1, 41)]
    previous = b""
    for p in inner:
        m.net.advance(5.0)
        [d] = seal(m, p)
        ids.append(key_id(d))
        times.append(m.net.now)
        # Each packet arrives one step late: the one sealed just before a
        # switch arrives after it.
        if previous:
            written += deliver(m, previous)
        previous = d
    written += deliver(m, previous)
    assert written == inner
    switches = [t for t, a, b in zip(times[1:], ids, ids[1:], strict=False) if a != b]
    assert [ids[0], len(switches)] == [1, 3]
    assert [b - a for a, b in itertools.pairwise(switches)] == [
        pytest.approx(60.0, abs=5.0)
    ] * 2
    assert sorted(set(ids)) == [1, 2]
    assert n1.counters[C.KEYS_REKEYED] == 3
    for reason in (C.DROP_DECRYPT_FAILED, C.DROP_NO_KEY, C.DROP_REPLAYED):
        assert n2.counters[reason] == 0


def test_a_packet_two_keys_old_does_not_open():
    m, first = keyed(rekey_packets=2)
    data = [first, *seal(m, packet(1))]  # key 1 is used up
    m.net.advance(0.5)
    data += seal(m, packet(2), packet(3))  # key 2, used up
    m.net.advance(0.5)
    data += seal(m, packet(4))
    assert [key_id(d) for d in data] == [1, 1, 2, 2, 1]
    # Key-id 1 now names a new key: a packet under the first one fails.
    stale = seal(m, packet(5))
    assert deliver(m, data[1]) == []
    assert m.nodes[1].counters[C.DROP_DECRYPT_FAILED] == 1
    assert deliver(m, *data[2:], *stale) == [packet(k) for k in (2, 3, 4, 5)]


# ---------------------------------------------------------------- policy
def test_required_refuses_a_peer_that_answers_without_a_key():
    m = mesh(encrypt="required", extra={1: {"encrypt": "off"}})
    n1 = m.nodes[0]
    m.net.trace.clear()
    assert m.send(0, packet()) == []
    m.net.advance(0.5)
    assert states(n1) == [KEYING, REFUSED]
    assert n1.keys.peers[TWO].reason == "answered without a key"
    assert m.dps[0].packets_to_send() == []  # the held packet went
    assert n1.counters[C.DROP_UNRESOLVED] + n1.counters[C.DROP_PEER_UNENCRYPTED] == 1
    before = n1.counters[C.DROP_PEER_UNENCRYPTED]
    for k in range(1, 4):
        assert m.send(0, packet(k)) == []
    assert n1.counters[C.DROP_PEER_UNENCRYPTED] - before == 3
    assert n1.counters[C.KEYS_REQUESTED] == 1  # not asked again at once
    assert [d for _, _, d, _ in m.net.trace if d == (N2, 4341)] == []
    # Another peer that does encrypt is unaffected.
    assert m.send(0, packet(src=1, dst=3)) == []
    m.net.advance(0.5)
    [data] = payloads(m.dps[0].packets_to_send())
    assert key_id(data) == 1


def test_required_drops_clear_packets_from_anyone():
    m = mesh(encrypt="required", extra={1: {"encrypt": "off"}})
    n1 = m.nodes[0]
    back = packet(src=2, dst=1)
    [(data, route)] = m.send(1, back)  # n2 sends in clear, no exchange
    assert key_id(data) == 0
    assert data[DATA_HEADER_LEN:] == back
    assert m.carry([(data, route)], N2) == []
    assert n1.counters[C.DROP_CLEAR_TEXT] == 1
    assert m.nodes[1].counters[C.KEYS_REQUESTED] == 0


def test_preferred_sends_in_clear_to_a_peer_that_answers_without_a_key():
    m = mesh(encrypt="preferred", extra={1: {"encrypt": "off"}})
    n1 = m.nodes[0]
    inner = packet()
    assert m.send(0, inner) == []
    m.net.advance(0.5)
    assert states(n1) == [KEYING, CLEAR]
    [data] = payloads(m.dps[0].packets_to_send())
    assert key_id(data) == 0
    assert data[DATA_HEADER_LEN:] == inner
    assert deliver(m, data) == [inner]
    [(later, _)] = m.send(0, packet(1))
    assert key_id(later) == 0
    assert deliver(m, later) == [packet(1)]
    # ... and takes clear packets from it (it keys with no one).
    back = packet(src=2, dst=1)
    out = m.send(1, back)
    assert m.carry(out, N2) == [back]
    assert n1.counters[C.DROP_CLEAR_TEXT] == 0


def test_preferred_on_both_sides_encrypts():
    m = mesh(encrypt="preferred")
    inner = packet()
    m.send(0, inner)
    m.net.advance(0.5)
    [data] = payloads(m.dps[0].packets_to_send())
    assert key_id(data) == 1
    assert deliver(m, data) == [inner]
    assert states(m.nodes[0]) == [KEYING, ENCRYPTED]


def test_preferred_drops_clear_packets_from_a_peer_that_keys_with_it():
    m, first = keyed(extra={1: {"encrypt": "preferred"}})
    n2 = m.nodes[1]
    header = first[:DATA_HEADER_LEN]
    clear = bytes([header[0] & ~KEY_ID_MASK]) + header[1:] + packet(9)
    assert deliver(m, clear) == []
    assert n2.counters[C.DROP_CLEAR_TEXT] == 1
    # n3 never keyed with n2: its clear packets are welcome.
    from_n3 = bytes([header[0] & ~KEY_ID_MASK]) + header[1:] + packet(src=3, dst=2)
    assert m.carry([(from_n3, TO_N2)], N3) == [packet(src=3, dst=2)]


def test_off_on_both_sides_sends_clear_and_exchanges_no_key():
    m = mesh(probe_interval=10.0)  # encrypt="off"
    m.net.trace.clear()
    inner = packet()
    [(data, route)] = m.send(0, inner)
    assert key_id(data) == 0
    assert data[DATA_HEADER_LEN:] == inner
    assert m.carry([(data, route)], N1) == [inner]
    m.net.advance(60.0)
    for node in m.nodes:
        assert not [k for k in node.counters if k.startswith("keys.")]
        assert node.keys.peers == {}
        sizes = node.soft_state_sizes()
        assert (sizes["send-keys"], sizes["receive-keys"]) == (0, 0)
    # RLOC-probes still go (the cache holds n2's mapping), keyless.
    probes = [r for _, _, r in sent(m.net, MapRequest) if r.probe]
    assert probes
    assert all(find_security_key(a) is None for r in probes for a in r.itr_rlocs)


def test_peers_reports_both_directions():
    m, _ = keyed()
    seal(m, packet(1))
    [mine] = m.dps[0].sealing.peers(m.net.now)
    assert mine["rloc"] == TWO
    assert (mine["state"], mine["cipher"], mine["key_id"]) == (
        ENCRYPTED,
        "aes-128-gcm",
        1,
    )
    assert mine["sealed_packets"] == 2
    [theirs] = m.dps[1].sealing.peers(m.net.now)
    assert theirs["rloc"] == str(N1)
    assert (theirs["state"], theirs["receive_key_ids"], theirs["opened_packets"]) == (
        "-",
        [1],
        1,
    )


def test_when_our_rloc_fails_over_the_key_is_made_again_from_the_other() -> None:
    # n2 has two RLOCs; its control messages always leave from the first's
    # socket, so n1 must take a key request from n2's first RLOC that names
    # its second (the same registrant's) and key it by the second.
    m = mesh(encrypt="required", two_rlocs=True)
    back = packet(src=2, dst=1)
    assert m.send(1, back) == []
    m.net.advance(0.5)
    out = m.dps[1].packets_to_send()
    assert [route[1] for _, route in out] == [0]  # from n2's first RLOC
    assert m.carry(out, N2) == [back]
    m.dps[1].set_rloc_state(0, False, m.net.now)
    m.net.flush()
    after = packet(1, src=2, dst=1)
    # Sealed under the first RLOC's key, n1 would drop it (drop.no-key):
    # it is held while n2 keys from its second RLOC instead.
    assert m.send(1, after) == []
    m.net.advance(0.5)
    out = m.dps[1].packets_to_send()
    assert [route[1] for _, route in out] == [1]
    assert m.carry(out, N2B) == [after]
    assert m.nodes[1].keys.tx[str(N1)].source == N2B
    assert m.nodes[0].counters[C.DROP + "key-rloc-mismatch"] == 0
    assert m.nodes[0].counters[C.DROP_NO_KEY] == 0
