"""Reliable-transport streams captured between live nodes decode cleanly in tshark."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from decent.lab import NetnsLab

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark"),
]


def _sessions_up(lab: NetnsLab, i: int, count: int) -> bool:
    sessions = lab.api(i, "/api/v1/node")["reliable"]["sessions"]
    return len(sessions) == count and all(s["state"] == "up" for s in sessions)


def _pdml(pcap: Path) -> ET.Element:
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", "tcp.port==4342,lisp-tcp", "-T", "pdml"],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    return ET.fromstring(out)


def test_a_live_session_decodes_in_tshark_with_no_malformed_field(
    make_lab: Callable[..., NetnsLab], tmp_path: Path
) -> None:
    lab = make_lab(nodes=2)
    for i in (1, 2):
        lab.configure(i, decent={"reliable": True})
    pcap = tmp_path / "sessions.pcap"
    with lab.capture(pcap, "tcp port 4342"):
        lab.start_all()
        lab.wait_until(
            lambda: all(_sessions_up(lab, i, 2) for i in (1, 2)),
            60.0,
            "both sessions up on both nodes",
        )
        # A change goes over the session too (and its ACK comes back).
        lab.configure(1, eids=["192.0.2.1/32", "192.0.2.77/32"])
        lab.reload(1)
        lab.wait_until(
            lambda: any(
                s["eid"].endswith("192.0.2.77/32") for s in lab.api(2, "/api/v1/sites")
            ),
            30.0,
            "the new EID at node 2",
        )
    root = _pdml(pcap)
    kinds: Counter[str] = Counter()
    problems: list[str] = []
    for packet in root.iter("packet"):
        for proto in packet.iter("proto"):
            name = proto.get("name")
            if name == "_ws.malformed":
                problems.append(proto.get("showname") or "malformed")
            if name == "_ws.expert":
                for field in proto.iter("field"):
                    severity = field.get("showname") or ""
                    if "Error" in severity or "Warning" in severity:
                        problems.append(severity)
            if name != "lisp-tcp":
                continue
            for field in proto.iter("field"):
                if field.get("name") == "lisp-tcp.message.type":
                    kinds[field.get("showname") or ""] += 1
    assert problems == []
    shown = " ".join(kinds)
    for kind in ("Registration Refresh", "Registration (17)", "Registration ACK"):
        assert kind in shown, (kind, kinds)
    assert sum(kinds.values()) >= 6  # 2 refreshes, 2+ registrations, their ACKs
