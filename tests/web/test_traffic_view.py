"""The data-plane view in the Peers table and in `decent status`, like `wg show`."""

from __future__ import annotations

from typing import Any

from decent.client.api import _status_text, text_table
from decent.peer.display import time_text
from decent.web import views

NOW = 1_796_083_260.0  # 2026-12-01T00:01:00Z
T = {s: time_text(NOW - s) for s in (0, 5, 30, 61)}


def _peer(rloc: str, name: str, **kw: Any) -> dict[str, Any]:
    return {
        "rloc": rloc,
        "name": name,
        "self": False,
        "eids": [],
        "first_seen_at": T[61],
        "last_heard_at": T[5],
        "ttl_s": 55.0,
        "state": "current",
        "encryption": "encrypted",
        "cipher": "aes-128-gcm",
        "traffic": {
            "rx_packets": 3,
            "rx_bytes": 252,
            "last_rx_at": T[0],
            "tx_packets": 1200,
            "tx_bytes": 1_500_000,
            "last_tx_at": T[30],
        },
        "rtt_ms": 0.834,
        **kw,
    }


def test_sizes_and_rtts_read_like_wg_show() -> None:
    assert [views.size_text(n) for n in (0, 1023, 1024, 1536, 1_500_000)] == [
        "0 B",
        "1023 B",
        "1.00 KiB",
        "1.50 KiB",
        "1.43 MiB",
    ]
    assert views.size_text(5 * 1024**5) == "5120.00 TiB"
    assert [views.rtt_text(x) for x in (0.834, None)] == ["0.83 ms", "-"]


def test_ages_come_from_absolute_times() -> None:
    assert views.ago(T[61], NOW) == "0:01:01"
    assert views.ago(None, NOW) == "never"
    assert views.ago("yesterday", NOW) == "never"


def test_the_peers_table_shows_traffic_each_way_and_the_rtt() -> None:
    quiet = _peer("192.0.2.3", "n3", encryption="-", traffic=None, rtt_ms=None)
    block = views.peers_table([_peer("192.0.2.2", "n2"), quiet], NOW)
    assert [c["text"] for c in block["columns"]] == [
        "RLOC",
        "Name",
        "First Seen",
        "Last Heard",
        "TTL left",
        "State",
        "Traffic",
        "Packets in/out",
        "Last in/out",
        "RTT",
    ]
    assert text_table(block).splitlines()[1:] == [
        "192.0.2.2  n2    0:01:01     0:00:05     0:00:55   current  encrypted"
        "       in 3 (252 B)          in 0:00:00   0.83 ms",
        " " * 76 + "out 1,200 (1.43 MiB)  out 0:00:30",
        "192.0.2.3  n3    0:01:01     0:00:05     0:00:55   current  no traffic yet"
        "  in 0 (0 B)            in never     -",
        " " * 76 + "out 0 (0 B)           out never",
    ]


def test_decent_status_has_a_section_per_peer_rloc() -> None:
    node = {
        "name": "n1",
        "rloc": "192.0.2.1",
        "uptime_s": 61.0,
        "health": {"ok": True, "status": "ok", "members": 2},
        "dataplane": {
            "enabled": True,
            "running": True,
            "encrypt": "required",
            "cipher": "aes-128-gcm",
            "peers": [
                {
                    "rloc": "192.0.2.2",
                    "name": "n2",
                    "state": "encrypted",
                    "reason": "",
                    "cipher": "aes-128-gcm",
                    "key_id": 1,
                    "since_at": T[61],
                    "rx_packets": 3,
                    "rx_bytes": 252,
                    "last_rx_at": T[0],
                    "tx_packets": 1200,
                    "tx_bytes": 1_500_000,
                    "last_tx_at": T[30],
                    "rtt_ms": 0.834,
                },
                {
                    "rloc": "192.0.2.9",
                    "name": None,
                    "state": "refused",
                    "reason": "no key offered",
                    "cipher": None,
                    "key_id": None,
                    "rx_packets": 0,
                    "rx_bytes": 0,
                    "last_rx_at": None,
                    "tx_packets": 0,
                    "tx_bytes": 0,
                    "last_tx_at": None,
                    "rtt_ms": None,
                },
            ],
        },
    }
    text = _status_text(node, [_peer("192.0.2.2", "n2")], NOW)
    section = text[text.index("Data plane\n") :].splitlines()
    assert section[:12] == [
        "Data plane",
        "peer n2  192.0.2.2",
        "  encryption: encrypted (aes-128-gcm, key-id 1)",
        "  last packet: in 0:00:00 ago, out 0:00:30 ago",
        "  transfer: 252 B received (3 packets), 1.43 MiB sent (1,200 packets)",
        "  rtt: 0.83 ms",
        "",
        "peer 192.0.2.9",
        "  encryption: refused (no key offered)",
        "  last packet: in never, out never",
        "  transfer: 0 B received (0 packets), 0 B sent (0 packets)",
        "  rtt: -",
    ]
