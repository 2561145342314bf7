"""Traffic over time: per-peer rates and control messages a second, the last hour.

`TrafficHistory` is the pure part: the shell hands it cumulative counters
and the time (`sample(now, wall, ...)`), it keeps the rates between two
samples in a ring that spans `window` seconds, and `series()` gives them as
JSON for the /mesh page (decent.web.meshview). `TrafficSampler` is the thin
asyncio part that calls it every `interval` seconds.

Bounds. The ring holds at most `window / interval` samples (plus one). A
sample keeps the rates of at most `max_peers` peer RLOCs, the busiest; the
rest are added up under `others`, so a member registering many RLOCs cannot
make a sample, or the series served, grow past that. The last counters seen
(to take the next difference from) are those of the current input only,
which the data plane already bounds (`[limits] max_traffic_peers`).

A counter that went down (its peer was evicted from the data plane's table
and came back, or the node restarted) restarted from zero: its new value is
the difference.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from decent.peer import counters as C
from decent.peer.display import time_text

log = logging.getLogger("decent")

#: The defaults: a sample every 10 s ([web] traffic_sample_seconds), an
#: hour kept, the 16 busiest peers each sample.
SAMPLE_SECONDS: Final = 10.0
WINDOW_SECONDS: Final = 3600.0
MAX_PEERS: Final = 16

#: One peer's cumulative counters: packets in, packets out, bytes in, bytes out.
Counts = tuple[int, int, int, int]
#: The same four as rates a second.
Rates = tuple[float, float, float, float]
_ZERO: Final[Rates] = (0.0, 0.0, 0.0, 0.0)
#: Names of the four in a peer row, the data plane's and the older ones.
_KEYS: Final = (
    ("rx_packets", "packets_in"),
    ("tx_packets", "packets_out"),
    ("rx_bytes", "bytes_in"),
    ("tx_bytes", "bytes_out"),
)
#: The JSON names of the four rates of a peer, in a sample's order.
SERIES: Final = (
    "packets_in_per_s",
    "packets_out_per_s",
    "bytes_in_per_s",
    "bytes_out_per_s",
)


def _count(row: Mapping[str, Any], names: tuple[str, str]) -> int:
    for name in names:
        value = row.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0


def peer_counts(dataplane: Mapping[str, Any]) -> dict[str, Counts]:
    """The per-peer counters in a data-plane status dict (`NodeStatus
    .dataplane()`): its `traffic` rows and its `peers` rows, by "rloc";
    a missing counter is 0, a row without an RLOC is skipped."""
    out: dict[str, Counts] = {}
    for key in ("peers", "traffic"):
        rows = dataplane.get(key)
        if not isinstance(rows, list):
            continue
        for row in rows:
            if not isinstance(row, Mapping) or not isinstance(row.get("rloc"), str):
                continue
            counts = tuple(_count(row, names) for names in _KEYS)
            held = out.get(row["rloc"], (0, 0, 0, 0))
            out[row["rloc"]] = (
                max(held[0], counts[0]),
                max(held[1], counts[1]),
                max(held[2], counts[2]),
                max(held[3], counts[3]),
            )
    return out


def control_counts(counters: Mapping[str, int]) -> tuple[int, int]:
    """Control messages received and sent, from the node's counters. A
    replicated registration is counted again when it is handled as the
    Map-Register it carries, so `rx.replicated` is left out."""
    received = sum(
        v for k, v in counters.items() if k.startswith(C.RX) and k != C.RX_REPLICATED
    )
    sent = sum(v for k, v in counters.items() if k.startswith(C.TX))
    return received, sent


def _delta(new: int, old: int | None) -> int:
    if old is None or new < old:  # new peer, or its counter restarted
        return new
    return new - old


@dataclass(frozen=True, slots=True)
class Sample:
    """The rates over one interval, ending at `wall` (Unix seconds)."""

    mono: float
    wall: float
    control_in: float
    control_out: float
    peers: dict[str, Rates]
    others: Rates
    #: How many peers were folded into `others`.
    others_count: int


class TrafficHistory:
    """Rates between consecutive samples, for the last `window` seconds."""

    def __init__(
        self,
        interval: float = SAMPLE_SECONDS,
        *,
        window: float = WINDOW_SECONDS,
        max_peers: int = MAX_PEERS,
    ) -> None:
        if not interval > 0 or not window >= interval:
            raise ValueError(f"need 0 < interval <= window, not {interval}, {window}")
        if max_peers < 1:
            raise ValueError(f"max_peers must be positive, not {max_peers}")
        self.interval = interval
        self.window = window
        self.max_peers = max_peers
        self.samples: deque[Sample] = deque(maxlen=math.ceil(window / interval) + 1)
        self._last_now: float | None = None
        self._last_peers: dict[str, Counts] = {}
        self._last_control: tuple[int, int] = (0, 0)

    def sample(
        self,
        now: float,
        wall: float,
        peers: Mapping[str, Counts],
        control: tuple[int, int],
    ) -> Sample | None:
        """Take the counters at `now` (monotonic seconds; `wall` is the same
        moment in Unix seconds, for display). The first call only sets the
        baseline; later ones add the rates since the previous call, which
        they return. A call at or before the previous `now` is ignored."""
        last_now = self._last_now
        if last_now is not None and now <= last_now:
            return None
        last_peers, last_control = self._last_peers, self._last_control
        self._last_now = now
        self._last_peers = dict(peers)
        self._last_control = control
        if last_now is None:
            return None
        dt = now - last_now
        rates: dict[str, Rates] = {}
        for rloc, c in peers.items():
            prev = last_peers.get(rloc)
            d = [_delta(c[i], None if prev is None else prev[i]) / dt for i in range(4)]
            rates[rloc] = (d[0], d[1], d[2], d[3])
        busiest = sorted(rates, key=lambda r: (-(rates[r][2] + rates[r][3]), r))
        kept = {r: rates[r] for r in busiest[: self.max_peers]}
        rest = [rates[r] for r in busiest[self.max_peers :]]
        sample = Sample(
            mono=now,
            wall=wall,
            control_in=_delta(control[0], last_control[0]) / dt,
            control_out=_delta(control[1], last_control[1]) / dt,
            peers=kept,
            others=_sum(rest),
            others_count=len(rest),
        )
        self.samples.append(sample)
        while self.samples and self.samples[0].mono < now - self.window:
            self.samples.popleft()
        return sample

    def series(self) -> dict[str, Any]:
        """The history as JSON, a row per sample (`samples`): when it was
        taken (`sampled_at`, the end of its interval), control messages a
        second each way, and the rates of each peer in `peers`, in that
        order, as the four numbers `series` names (null: that sample does
        not hold that peer). At most `max_peers` peers, the most bytes over
        the window first; the rest, and those each sample folded, are summed
        in `others` (null when there are none)."""
        samples = list(self.samples)
        totals: dict[str, float] = {}
        for s in samples:
            for rloc, r in s.peers.items():
                totals[rloc] = totals.get(rloc, 0.0) + r[2] + r[3]
        shown = sorted(totals, key=lambda r: (-totals[r], r))[: self.max_peers]
        hidden = set(totals) - set(shown)
        folded = hidden or any(s.others_count for s in samples)
        rows = []
        for s in samples:
            rest = _sum([s.others, *(r for k, r in s.peers.items() if k in hidden)])
            rows.append(
                {
                    "sampled_at": time_text(s.wall),
                    "control_received_per_s": _rate(s.control_in),
                    "control_sent_per_s": _rate(s.control_out),
                    "peers": [
                        _rates(s.peers[r]) if r in s.peers else None for r in shown
                    ],
                    "others": _rates(rest) if folded else None,
                }
            )
        others = None
        if folded:
            count = max(
                (s.others_count + len(hidden & s.peers.keys()) for s in samples),
                default=0,
            )
            others = {"peers": count}
        return {
            "sample_s": self.interval,
            "window_s": self.window,
            "series": list(SERIES),
            "peers": [{"rloc": r} for r in shown],
            "others": others,
            "samples": rows,
        }


def _sum(rates: Iterable[Rates]) -> Rates:
    out = list(_ZERO)
    for r in rates:
        for i in range(4):
            out[i] += r[i]
    return (out[0], out[1], out[2], out[3])


def _rate(value: float) -> float:
    return round(value, 3)


def _rates(r: Rates) -> list[float]:
    return [_rate(v) for v in r]


class TrafficSampler:
    """Samples `read()` into `history` every `history.interval` seconds on
    the loop's clock. `read` returns (per-peer counters, control counters);
    a failing read is logged and skipped, never stops the sampling."""

    def __init__(
        self,
        history: TrafficHistory,
        read: Callable[[], tuple[dict[str, Counts], tuple[int, int]]],
        loop: asyncio.AbstractEventLoop,
        wall: Callable[[], float],
    ) -> None:
        self.history = history
        self._read = read
        self._loop = loop
        self._wall = wall
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Take the baseline now, then sample every interval."""
        self._tick()

    def _tick(self) -> None:
        try:
            peers, control = self._read()
        except Exception:  # a display aid must never stop the node
            log.exception("traffic sample skipped")
        else:
            self.history.sample(self._loop.time(), self._wall(), peers, control)
        self._timer = self._loop.call_later(self.history.interval, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


__all__ = [
    "TrafficHistory",
    "TrafficSampler",
    "control_counts",
    "peer_counts",
]
