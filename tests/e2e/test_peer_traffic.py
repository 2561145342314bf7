"""The data-plane view in the namespace lab: traffic, encryption, RTT after a ping."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

import pytest

from decent.lab import NetnsLab
from tests.e2e.test_dataplane import V4, go, ping
from tests.web.timefields import assert_time_fields

pytestmark = pytest.mark.e2e
MakeLab = Callable[..., NetnsLab]
#: Bound on any one condition (a probe answered, counters showing).
SETTLE: Final = 30.0
#: An IPv4 echo of ping's default 56 data bytes.
PING4_LEN: Final = 84


def _peer(lab: NetnsLab, i: int, j: int) -> dict[str, Any]:
    """Node j as node i's /api/v1/peers lists it."""
    rloc = str(lab.node(j).rloc)
    [peer] = [p for p in lab.api(i, "/api/v1/peers") if p["rloc"] == rloc]
    return dict(peer)


def test_a_ping_shows_in_both_nodes_traffic_encryption_and_rtt(
    make_lab: MakeLab,
) -> None:
    lab = make_lab(dataplane=True)
    # Probes every second, so an RTT is there soon after the first packet.
    for i in lab.nodes:
        lab.configure(i, dataplane={"probe_interval": 1.0})
    go(lab)
    result = ping(lab, 1, V4[2], count=3)
    assert result.returncode == 0, result.stdout

    def shown() -> bool:
        peer = _peer(lab, 1, 2)
        return peer["rtt_ms"] is not None and peer["traffic"]["rx_packets"] >= 3

    lab.wait_until(shown, SETTLE, "n1's view of n2: replies counted, an RTT")
    for i, j in ((1, 2), (2, 1)):
        peer = _peer(lab, i, j)
        traffic = peer["traffic"]
        assert traffic["tx_packets"] >= 3, (i, peer)
        assert traffic["rx_packets"] >= 3, (i, peer)
        assert traffic["tx_bytes"] >= 3 * PING4_LEN, (i, peer)
        assert traffic["rx_bytes"] >= 3 * PING4_LEN, (i, peer)
        assert traffic["last_tx_at"] is not None
        assert traffic["last_rx_at"] is not None
        assert peer["encryption"] == "encrypted", (i, peer)
        assert peer["eids"] == sorted(peer["eids"])
        assert f"[0]{V4[j]}/32" in peer["eids"]
        assert_time_fields(peer, f"n{i}'s peer n{j}")
    assert _peer(lab, 1, 2)["rtt_ms"] > 0
    # The node's data-plane rows and /metrics agree with the peers table.
    node = lab.api(1, "/api/v1/node")
    assert_time_fields(node, "/api/v1/node")
    rloc2 = str(lab.node(2).rloc)
    [row] = [p for p in node["dataplane"]["peers"] if p["rloc"] == rloc2]
    assert (row["name"], row["state"]) == ("n2", "encrypted")
    assert row["rx_packets"] >= 3
    # `decent status`: a `wg show`-like section per peer RLOC.
    text = lab.decent_cli("status", "--node", lab.node(1).url)
    print(text)
    section = text[text.index(f"peer n2  {rloc2}") :]
    lines = section.splitlines()
    assert re.fullmatch(
        r"  encryption: encrypted \((aes-128-gcm|chacha20-poly1305).*\)", lines[1]
    ), lines
    assert re.fullmatch(
        r"  last packet: in \d+:\d\d:\d\d ago, out \d+:\d\d:\d\d ago", lines[2]
    ), lines
    assert re.fullmatch(
        r"  transfer: \d+ B received \(\d+ packets\), \d+ B sent \(\d+ packets\)",
        lines[3],
    ), lines
    assert re.fullmatch(r"  rtt: \d+\.\d\d ms", lines[4]), lines
