"""How encryption shows: the Peers table, `decent status` and /metrics."""

from __future__ import annotations

from typing import Any

from decent.client.api import _dataplane_line, text_table
from decent.web import metrics, views


def _peer(rloc: str, encryption: str | None, me: bool = False) -> dict[str, Any]:
    return {
        "rloc": rloc,
        "name": None,
        "self": me,
        "first_seen_at": "2026-12-05T16:25:49.000Z",
        "last_heard_at": "2026-12-05T16:25:49.000Z",
        "ttl_s": 60.0,
        "state": "current",
        "encryption": encryption,
    }


def test_the_peers_table_says_what_our_traffic_to_each_member_is() -> None:
    block = views.peers_table(
        [
            _peer("192.0.2.1", "-", me=True),
            _peer("192.0.2.2", "encrypted"),
            _peer("192.0.2.3", "clear"),
            _peer("192.0.2.4", "refused"),
            _peer("192.0.2.5", "-"),
        ]
    )
    traffic = [c["text"] for c in block["columns"]].index("Traffic")
    cells = [row["cells"][traffic] for row in block["rows"]]
    assert [c["text"] for c in cells] == [
        "-",
        "encrypted",
        "clear",
        "refused",
        "no traffic yet",
    ]
    # Clear text and a refusal stand out on the page.
    assert [c.get("cls") for c in cells[1:4]] == ["ok", "warn", "bad"]
    assert "clear" in text_table(block)


def test_without_a_data_plane_there_is_no_traffic_column() -> None:
    block = views.peers_table([_peer("192.0.2.2", None)])
    assert [c["text"] for c in block["columns"]][-1] == "State"
    assert len(block["rows"][0]["cells"]) == len(block["columns"])


def test_encryption_off_is_said_as_such() -> None:
    block = views.peers_table([_peer("192.0.2.2", "off")])
    traffic = [c["text"] for c in block["columns"]].index("Traffic")
    assert block["rows"][0]["cells"][traffic]["text"] == "clear (encryption off)"


def test_decent_status_counts_peer_rlocs_by_state() -> None:
    dataplane = {
        "enabled": True,
        "running": True,
        "encrypt": "preferred",
        "cipher": "aes-128-gcm",
        "peers": [
            {"rloc": "192.0.2.2", "state": "encrypted"},
            {"rloc": "192.0.2.3", "state": "encrypted"},
            {"rloc": "192.0.2.4", "state": "clear"},
        ],
    }
    assert _dataplane_line(dataplane) == [
        "data plane running  encrypt preferred (aes-128-gcm)"
        "  peer RLOCs: 1 clear, 2 encrypted"
    ]
    assert _dataplane_line({"enabled": False}) == []


def test_metrics_give_one_series_per_keyed_peer() -> None:
    node = {
        "dataplane": {
            "enabled": True,
            "peers": [
                {"rloc": "192.0.2.2", "state": "encrypted"},
                {"rloc": "192.0.2.4", "state": "clear"},
            ],
        }
    }
    text = metrics.render(node, [])
    assert "# TYPE decent_dataplane_peer_encrypted gauge" in text
    assert (
        'decent_dataplane_peer_encrypted{rloc="192.0.2.2",state="encrypted"} 1' in text
    )
    assert 'decent_dataplane_peer_encrypted{rloc="192.0.2.4",state="clear"} 0' in text
