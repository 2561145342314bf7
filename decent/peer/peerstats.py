"""Per-peer-RLOC data-plane traffic: packets, bytes and the last packet each way.

The data plane counts on its hot path (`DataPlane.encap` once a packet is
sealed or stamped, `DataPlane.decap` once a packet passed every check), so
counting is one dict lookup and a few integer adds; only the first packet of
a new peer takes the slow path (`add`). Time is the caller's `now`
(monotonic seconds); the status adapter turns it into wall-clock times.

The table is bounded by `[limits] max_traffic_peers`: decapsulated packets
come only from registered RLOCs and encapsulated ones go only to cached
ones, but a member gone rogue can register many. When the table is full a
new peer takes the place of the one idle longest (counted under
`dataplane.traffic-evicted`), so the operator always sees the peers that
are talking now.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from decent.peer import counters as C

#: "Never": a side with no packet yet sorts as the oldest.
_NEVER: Final = float("-inf")


class PeerTraffic:
    """One peer RLOC's counters; `*_last` is None until a packet went that way."""

    __slots__ = (
        "rx_bytes",
        "rx_last",
        "rx_packets",
        "tx_bytes",
        "tx_last",
        "tx_packets",
    )

    def __init__(self) -> None:
        self.rx_packets = 0
        self.rx_bytes = 0
        self.rx_last: float | None = None
        self.tx_packets = 0
        self.tx_bytes = 0
        self.tx_last: float | None = None

    def last(self) -> float:
        """The time of the latest packet either way (-inf: none yet)."""
        rx, tx = self.rx_last, self.tx_last
        return max(_NEVER if rx is None else rx, _NEVER if tx is None else tx)


class PeerStats:
    """The bounded table of PeerTraffic by peer RLOC (its text, as sent to)."""

    def __init__(self, limit: int, counters: Counter[str] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"limit must be positive, not {limit}")
        self.limit = limit
        self._counters: Counter[str] = Counter() if counters is None else counters
        #: Read by the hot path directly: `peers.get(host) or add(host)`.
        self.peers: dict[str, PeerTraffic] = {}

    def __len__(self) -> int:
        return len(self.peers)

    def add(self, host: str) -> PeerTraffic:
        """The counters of a peer not in the table yet (the slow path). When
        full, the peer idle longest makes room: an O(limit) scan, paid once
        per new peer, never per packet of a known one."""
        peers = self.peers
        if len(peers) >= self.limit:
            idle = min(peers, key=lambda h: peers[h].last())
            del peers[idle]
            self._counters[C.DATAPLANE_TRAFFIC_EVICTED] += 1
        traffic = peers[host] = PeerTraffic()
        return traffic

    def sent(self, host: str, n: int, now: float) -> None:
        """An encapsulated packet of n inner bytes left for host."""
        t = self.peers.get(host) or self.add(host)
        t.tx_packets += 1
        t.tx_bytes += n
        t.tx_last = now

    def received(self, host: str, n: int, now: float) -> None:
        """An accepted packet of n inner bytes came from host."""
        t = self.peers.get(host) or self.add(host)
        t.rx_packets += 1
        t.rx_bytes += n
        t.rx_last = now

    def rows(self) -> list[dict[str, Any]]:
        """Each peer's counters, by RLOC; `rx_last`/`tx_last` are the
        caller's monotonic times (None: nothing that way yet)."""
        return [
            {
                "rloc": host,
                "rx_packets": t.rx_packets,
                "rx_bytes": t.rx_bytes,
                "rx_last": t.rx_last,
                "tx_packets": t.tx_packets,
                "tx_bytes": t.tx_bytes,
                "tx_last": t.tx_last,
            }
            for host, t in sorted(self.peers.items())
        ]


__all__ = ["PeerStats", "PeerTraffic"]
