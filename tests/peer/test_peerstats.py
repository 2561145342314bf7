"""Per-peer-RLOC traffic counters: what the data plane counts, and the table's bound."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from decent.config import ConfigError, load_config
from decent.peer import counters as C
from decent.peer.config import Limits
from decent.peer.peerstats import PeerStats
from decent.wire import DataHeader, encapsulate
from tests.peer.conftest import N1, N2, N3
from tests.peer.mesh import STRANGER, eid4, mesh, udp


def test_each_way_counts_packets_bytes_and_the_last_time() -> None:
    stats = PeerStats(8)
    stats.sent("192.0.2.1", 84, 1.0)
    stats.sent("192.0.2.1", 100, 2.5)
    stats.received("192.0.2.1", 84, 3.0)
    stats.received("192.0.2.2", 40, 4.0)
    assert stats.rows() == [
        {
            "rloc": "192.0.2.1",
            "rx_packets": 1,
            "rx_bytes": 84,
            "rx_last": 3.0,
            "tx_packets": 2,
            "tx_bytes": 184,
            "tx_last": 2.5,
        },
        {
            "rloc": "192.0.2.2",
            "rx_packets": 1,
            "rx_bytes": 40,
            "rx_last": 4.0,
            "tx_packets": 0,
            "tx_bytes": 0,
            "tx_last": None,
        },
    ]


def test_the_table_is_bounded_and_the_peer_idle_longest_goes() -> None:
    counters: Counter[str] = Counter()
    stats = PeerStats(3, counters)
    for i in range(3):
        stats.sent(f"192.0.2.{i}", 10, float(i))
    stats.received("192.0.2.0", 10, 5.0)  # .0 talks again: .1 is now idle longest
    for i in range(3, 1003):  # a spoofer (or a rogue member) with many RLOCs
        stats.received(f"198.51.100.{i % 250}.{i}", 10, 10.0 + i)
        assert len(stats) <= 3
    assert len(stats) == 3
    assert counters[C.DATAPLANE_TRAFFIC_EVICTED] == 1000
    # The newest stay; an old peer back later starts from zero.
    assert [r["rx_last"] for r in stats.rows()] == [1010.0, 1011.0, 1012.0]
    stats.sent("192.0.2.1", 10, 2000.0)
    assert {r["rloc"]: r["tx_packets"] for r in stats.rows()}["192.0.2.1"] == 1


def test_a_limit_that_counts_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        PeerStats(0)


def test_the_data_plane_counts_what_it_sends_and_what_it_accepts() -> None:
    m = mesh()
    packet = udp(eid4(1), eid4(2))
    out = m.send(0, packet)
    assert m.carry(out, N1) == [packet]
    [(payload, _)] = out
    n1, n2 = m.dps[0].traffic.rows(), m.dps[1].traffic.rows()
    assert [(r["rloc"], r["tx_packets"], r["tx_bytes"]) for r in n1] == [
        (str(N2), 1, len(packet))
    ]
    assert n1[0]["tx_last"] == m.net.now
    assert [(r["rloc"], r["rx_packets"], r["rx_bytes"]) for r in n2] == [
        (str(N1), 1, len(packet))
    ]
    # Refused packets count nowhere: from a stranger, and not for our EID.
    dp = m.dps[1]
    dp.receive_packet(payload, (STRANGER, 4341), m.net.now)
    wrong = encapsulate(DataHeader(nonce=1), udp(eid4(1), eid4(3)))
    dp.receive_packet(wrong, (N1, 4341), m.net.now)
    assert dp.packets_to_tun() == []
    assert dp.node.counters[C.DROP_UNKNOWN_RLOC] == 1
    assert dp.node.counters[C.DROP_NOT_OUR_EID] == 1
    assert [(r["rloc"], r["rx_packets"]) for r in dp.traffic.rows()] == [(str(N1), 1)]
    # Nor does a packet that found no mapping yet (it waits, not sent).
    assert m.send(0, udp(eid4(1), "10.9.9.9")) == []
    assert [r["rloc"] for r in m.dps[0].traffic.rows()] == [str(N2)]
    assert str(N3) not in {r["rloc"] for r in m.dps[0].traffic.rows()}


def test_the_bound_comes_from_limits_max_traffic_peers() -> None:
    m = mesh(extra={0: {"limits": Limits(max_traffic_peers=1)}})
    assert m.dps[0].traffic.limit == 1
    assert m.dps[1].traffic.limit == Limits().max_traffic_peers == 4096


def test_max_traffic_peers_errors_name_the_file_the_key_and_the_fix(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        '[node]\nname = "n1"\nrloc = "198.18.42.11"\n'
        '[decent]\ngroup = "233.252.1.1"\nkey = "k"\n'
        "[limits]\nmax_traffic_peers = 0\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text
    assert "max_traffic_peers" in text
    assert "use a positive int" in text
    path.write_text(path.read_text().replace("= 0", "= 16"))
    assert load_config(path).limits.max_traffic_peers == 16
