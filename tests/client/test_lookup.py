"""`decent lookup` shows each try as lig does, as it happens, and its --json
follows the issue's convention (ttl_min, rtt_ms, *_at)."""

from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from decent.client.lookup import NO_REPLY, lookup, lookup_text, mapping_text
from decent.wire import parse_eid
from tests.test_client import STUB_RESOLVER, GoldenResolver, decent
from tests.wire.vectors import load_vectors

#: A loopback address no other test module uses.
DEAD = "127.0.66.1"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def dead() -> Iterator[int]:
    """A resolver that reads every request and never answers (no ICMP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((DEAD, 0))
        yield s.getsockname()[1]


class FirstLost(GoldenResolver):
    """Answers every Map-Request but the first, as a lossy path would."""

    def _answer(self, data: bytes) -> tuple[bytes, tuple[str, int]] | None:
        answer = super()._answer(data)
        return answer if len(self.asked) > 1 else None


def test_a_dead_resolver_is_not_silent(dead: int) -> None:
    args = ("lookup", "192.0.2.1", "--via", DEAD, "--port", str(dead))
    tries = ("--timeout", "0.2", "--attempts", "2")
    sent = f"Send map-request to {DEAD}:{dead} for [0]192.0.2.1/32 ..."
    human = decent(*args, *tries)
    assert human.returncode == 1
    assert human.stdout.splitlines() == [sent, NO_REPLY, sent, NO_REPLY]
    assert human.stderr == (
        f"decent lookup: no Map-Reply from {DEAD}:{dead} for [0]192.0.2.1/32 "
        "after 2 tries of 0.2 s\n"
    )
    # With --json stdout stays for JSON: the tries go to stderr.
    quiet = decent(*args, *tries, "--json")
    assert quiet.returncode == 1
    assert quiet.stdout == ""
    assert quiet.stderr.splitlines()[:4] == [sent, NO_REPLY, sent, NO_REPLY]


def test_each_try_shows_when_it_is_sent(dead: int) -> None:
    """The first line comes while the lookup still waits for its reply."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "decent", "lookup", "192.0.2.1", "--via", DEAD),
            *("--port", str(dead), "--timeout", "300", "--attempts", "1"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "nothing printed"
        line = proc.stdout.readline()
        assert line == f"Send map-request to {DEAD}:{dead} for [0]192.0.2.1/32 ...\n"
        assert proc.poll() is None  # still waiting: the line came first
    finally:
        proc.kill()
        proc.communicate()


def test_a_lost_request_then_the_reply_with_its_rtt() -> None:
    golden = load_vectors()["e04_map_reply"].data
    with FirstLost(golden) as stub:
        via = ("--via", STUB_RESOLVER, "--port", str(stub.port), "--timeout", "0.5")
        human = decent("lookup", "10.2.3.4", *via)
        assert human.returncode == 0, human.stderr
        sent = f"Send map-request to {STUB_RESOLVER}:{stub.port} for [0]10.2.3.4/32 ..."
        lines = human.stdout.splitlines()
        assert lines[:3] == [sent, NO_REPLY, sent]
        assert re.fullmatch(
            rf"Received map-reply from {re.escape(STUB_RESOLVER)}:{stub.port} "
            r"with rtt \d+\.\d{4} secs",
            lines[3],
        )
        assert lines[4:6] == ["", "Mapping entries for EID [0]10.2.3.4/32:"]

        stub.asked.clear()
        done = decent("lookup", "10.2.3.4", "--json", *via)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[:3] == [sent, NO_REPLY, sent]
    assert done.stderr.splitlines()[3].startswith("Received map-reply from")
    data = json.loads(done.stdout)
    assert data["attempts"] == 2
    assert data["rtt_ms"] > 0
    assert RFC3339.fullmatch(data["sent_at"]), data["sent_at"]
    assert RFC3339.fullmatch(data["received_at"]), data["received_at"]
    assert data["sent_at"] <= data["received_at"]
    (record,) = data["records"]
    assert record["ttl_min"] == 1440
    # No bare units left (the JSON convention).
    keys = set(data) | set(record)
    assert not keys & {"ttl", "rtt", "age", "uptime"}


def test_lookup_text_is_what_was_shown_as_it_happened() -> None:
    golden = load_vectors()["e04_map_reply"].data
    shown: list[str] = []
    with FirstLost(golden) as stub:
        result = lookup(
            parse_eid("10.2.3.4"),
            IPv4Address(STUB_RESOLVER),
            stub.port,
            attempts=3,
            timeout=0.5,
            progress=shown.append,
        )
    assert len(shown) == 4
    assert lookup_text(result) == "\n".join([*shown, mapping_text(result)])
