"""The traffic history: rates from counters with time passed in, its bounds, its JSON,
the sampler's timer, and [web] traffic_sample_seconds."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any, cast

import pytest

from decent.config import ConfigError, load_config
from decent.net.traffic import (
    SERIES,
    TrafficHistory,
    TrafficSampler,
    control_counts,
    peer_counts,
)
from tests.test_config import GOOD
from tests.web.timefields import assert_time_fields

AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
WALL = 1_800_000_000.0
A, B = "198.18.45.12", "2001:db8::13"


def test_the_first_sample_is_the_baseline_and_the_next_gives_rates() -> None:
    h = TrafficHistory(10.0)
    assert h.sample(100.0, WALL, {A: (5, 5, 500, 500)}, (40, 30)) is None
    assert list(h.samples) == []
    s = h.sample(110.0, WALL + 10, {A: (25, 15, 2500, 1500)}, (60, 35))
    assert s is not None
    assert s.peers == {A: (2.0, 1.0, 200.0, 100.0)}
    assert (s.control_in, s.control_out) == (2.0, 0.5)
    assert (s.others, s.others_count) == ((0.0, 0.0, 0.0, 0.0), 0)


def test_rates_divide_by_the_real_interval_not_the_nominal_one() -> None:
    """A node stopped for a while (SIGSTOP) samples late: the rate is an
    average over the time that really passed."""
    h = TrafficHistory(10.0)
    h.sample(0.0, WALL, {A: (0, 0, 0, 0)}, (0, 0))
    s = h.sample(40.0, WALL + 40, {A: (80, 0, 0, 0)}, (4, 0))
    assert s is not None
    assert s.peers[A][0] == 2.0
    assert s.control_in == 0.1


def test_a_new_peer_and_a_restarted_counter_count_from_zero() -> None:
    h = TrafficHistory(10.0)
    h.sample(0.0, WALL, {A: (100, 100, 9000, 9000)}, (50, 50))
    s = h.sample(
        10.0, WALL + 10, {A: (30, 100, 900, 9000), B: (10, 0, 1000, 0)}, (5, 50)
    )
    assert s is not None
    # A's "packets in" went down (evicted and back): its new value is the delta.
    assert s.peers[A] == (3.0, 0.0, 90.0, 0.0)
    assert s.peers[B] == (1.0, 0.0, 100.0, 0.0)
    assert s.control_in == 0.5  # the node restarted: 5 since


def test_a_sample_at_or_before_the_last_is_ignored() -> None:
    h = TrafficHistory(10.0)
    h.sample(10.0, WALL, {}, (0, 0))
    assert h.sample(10.0, WALL, {}, (5, 5)) is None
    assert h.sample(9.0, WALL, {}, (5, 5)) is None
    s = h.sample(20.0, WALL + 10, {}, (10, 10))
    assert s is not None
    assert s.control_in == 1.0


def test_the_ring_keeps_one_window_of_samples() -> None:
    h = TrafficHistory(10.0, window=3600.0)
    for k in range(1000):
        h.sample(k * 10.0, WALL + k * 10, {A: (k, k, k, k)}, (k, k))
    assert len(h.samples) <= 361
    assert h.samples[-1].mono == 9990.0
    assert h.samples[0].mono >= 9990.0 - 3600.0
    # Samples further apart than planned: the window, not the count, bounds.
    h2 = TrafficHistory(10.0, window=3600.0)
    for k in range(50):
        h2.sample(k * 600.0, WALL + k * 600, {}, (k, k))
    assert [s.mono for s in h2.samples] == [600.0 * k for k in range(43, 50)]


def test_many_peers_are_folded_into_others_so_nothing_grows_without_bound() -> None:
    h = TrafficHistory(10.0, max_peers=4)
    rlocs = [f"10.0.{i // 250}.{i % 250}" for i in range(1000)]
    for k in range(1, 30):
        # Each round, another 100 RLOCs talk (a member registering many).
        talking = rlocs[(k * 100) % 1000 : (k * 100) % 1000 + 100]
        peers = {r: (k, k, k * (i + 1), 0) for i, r in enumerate(talking)}
        s = h.sample(k * 10.0, WALL + k * 10, peers, (0, 0))
        if s is not None:
            assert len(s.peers) <= 4
            assert s.others_count == len(peers) - len(s.peers)
    series = h.series()
    assert len(series["peers"]) <= 4
    assert series["others"] is not None
    assert series["others"]["peers"] > 0
    # Nothing is lost by folding: per sample, shown plus others is the total.
    for s, row in zip(h.samples, series["samples"], strict=True):
        total = sum(r[2] for r in s.peers.values()) + s.others[2]
        shown = sum(p[2] for p in row["peers"] if p is not None) + row["others"][2]
        assert shown == pytest.approx(total, rel=1e-6)


def test_the_series_json() -> None:
    h = TrafficHistory(10.0)
    h.sample(0.0, WALL, {A: (0, 0, 0, 0)}, (0, 0))
    h.sample(10.0, WALL + 10, {A: (10, 20, 1000, 2000)}, (10, 20))
    h.sample(20.0, WALL + 20, {A: (10, 20, 1000, 2000), B: (5, 5, 50, 50)}, (10, 20))
    out = h.series()
    assert_time_fields(out, "traffic series")
    assert out["sample_s"] == 10.0
    assert out["window_s"] == 3600.0
    assert out["series"] == list(SERIES)
    # Most bytes first.
    assert out["peers"] == [{"rloc": A}, {"rloc": B}]
    assert out["others"] is None
    first, second = out["samples"]
    assert AT.match(first["sampled_at"])
    assert first["sampled_at"] == "2027-01-15T08:00:10.000Z"
    assert first == {
        "sampled_at": "2027-01-15T08:00:10.000Z",
        "control_received_per_s": 1.0,
        "control_sent_per_s": 2.0,
        # B was not there in the first interval: a gap, not a zero.
        "peers": [[1.0, 2.0, 100.0, 200.0], None],
        "others": None,
    }
    assert second["peers"] == [[0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 5.0, 5.0]]


def test_peer_counts_reads_either_naming_and_defaults_to_zero() -> None:
    dataplane: dict[str, Any] = {
        "enabled": True,
        # The sealing rows: no counters (before the data plane counted them).
        "peers": [{"rloc": A, "state": "encrypted"}, {"rloc": B}],
        # The data plane's traffic rows.
        "traffic": [
            {"rloc": A, "rx_packets": 3, "tx_packets": 4, "rx_bytes": 300},
            {"rloc": "bad", "rx_packets": -1, "tx_bytes": "many"},
            {"no": "rloc"},
            "not a row",
        ],
    }
    assert peer_counts(dataplane) == {
        A: (3, 4, 300, 0),
        B: (0, 0, 0, 0),
        "bad": (0, 0, 0, 0),
    }
    older = {"peers": [{"rloc": A, "packets_in": 1, "packets_out": 2, "bytes_in": 3}]}
    assert peer_counts(older) == {A: (1, 2, 3, 0)}
    assert peer_counts({"enabled": False}) == {}


def test_control_counts_leave_out_replicated_copies() -> None:
    counters = {
        "rx.map-register": 10,
        "rx.map-request": 5,
        "rx.replicated": 7,
        "tx.map-notify": 4,
        "tx.replicated-map-register": 2,
        "drop.bad": 100,
    }
    assert control_counts(counters) == (15, 6)


class _Loop:
    """The two things the sampler asks of its loop, with time in our hands."""

    def __init__(self) -> None:
        self.now = 50.0
        self.timers: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any) -> asyncio.TimerHandle:
        self.timers.append((self.now + delay, callback))
        return cast(asyncio.TimerHandle, _Handle(self, callback))

    def fire(self) -> None:
        when, callback = self.timers.pop(0)
        self.now = when
        callback()


class _Handle:
    def __init__(self, loop: _Loop, callback: Any) -> None:
        self.loop, self.callback = loop, callback

    def cancel(self) -> None:
        self.loop.timers = [t for t in self.loop.timers if t[1] is not self.callback]


def test_the_sampler_samples_every_interval_and_survives_a_failing_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = _Loop()
    reads = iter([({A: (0, 0, 0, 0)}, (0, 0)), ({A: (10, 0, 0, 0)}, (20, 0))])

    def read() -> tuple[dict[str, tuple[int, int, int, int]], tuple[int, int]]:
        try:
            return next(reads)
        except StopIteration:
            raise RuntimeError("status gone") from None

    history = TrafficHistory(10.0)
    sampler = TrafficSampler(
        history, read, cast(asyncio.AbstractEventLoop, loop), lambda: WALL + loop.now
    )
    sampler.start()  # the baseline, at once
    assert [t for t, _ in loop.timers] == [60.0]
    loop.fire()
    assert [s.peers[A][0] for s in history.samples] == [1.0]
    with caplog.at_level(logging.ERROR, "decent"):
        loop.fire()  # the read fails: logged, and the next one is armed
    assert "traffic sample skipped" in caplog.text
    assert [t for t, _ in loop.timers] == [80.0]
    sampler.close()
    assert loop.timers == []


# ---------------------------------------------------------------- the setting
def _config(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(GOOD.replace("[web]\n", f"[web]\n{line}\n"))
    return path


def test_traffic_sample_seconds_defaults_to_ten(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path, "")).traffic_sample_seconds == 10.0
    cfg = load_config(_config(tmp_path, "traffic_sample_seconds = 30"))
    assert cfg.traffic_sample_seconds == 30.0


@pytest.mark.parametrize("value", ["0", "1.5", "601", "-10"])
def test_traffic_sample_seconds_out_of_range_is_refused(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ConfigError, match=r"\[web\] traffic_sample_seconds: .*"):
        load_config(_config(tmp_path, f"traffic_sample_seconds = {value}"))


def test_traffic_sample_seconds_must_be_a_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected float, got str"):
        load_config(_config(tmp_path, 'traffic_sample_seconds = "10"'))
