"""Packets waiting for a mapping (an ITR's cache miss): bounded in number and in age."""

from __future__ import annotations

from collections import Counter, deque

from decent.peer import counters as C
from decent.wire import Eid


class MissQueue:
    """At most `size` packets in all, each useful for `timeout` seconds
    (RFC 9301 5.3 leaves the queue to the implementation; an unbounded one
    would let a flood of packets to unresolvable EIDs eat the memory)."""

    def __init__(self, size: int, timeout: float, counters: Counter[str]) -> None:
        self.size, self.timeout = size, timeout
        self._counters = counters
        self._queue: dict[Eid, deque[tuple[float, bytes]]] = {}
        self._queued = 0

    def __len__(self) -> int:
        return self._queued

    def room(self, now: float) -> bool:
        """Whether one more packet fits (after dropping the stale ones)."""
        if self._queued >= self.size:
            self._expire(now)
        if self._queued >= self.size:
            self._counters[C.DROP_QUEUE_FULL] += 1
            return False
        return True

    def hold(self, key: Eid, packet: bytes, now: float) -> None:
        """Keep packet for key's mapping; call after `room` said yes."""
        self._queue.setdefault(key, deque()).append((now, packet))
        self._queued += 1

    def _expire(self, now: float) -> None:
        limit = now - self.timeout
        for key in list(self._queue):
            waiting = self._queue[key]
            while waiting and waiting[0][0] < limit:
                waiting.popleft()
                self._queued -= 1
                self._counters[C.DROP_QUEUE_TIMEOUT] += 1
            if not waiting:
                del self._queue[key]

    def release(self, eid: Eid, now: float) -> list[bytes]:
        """The packets a mapping for eid now covers, those still useful."""
        out: list[bytes] = []
        for key in [k for k in self._queue if eid.contains(k)]:
            waiting = self._queue.pop(key)
            self._queued -= len(waiting)
            for queued_at, packet in waiting:
                if now - queued_at > self.timeout:
                    self._counters[C.DROP_QUEUE_TIMEOUT] += 1
                else:
                    out.append(packet)
        return out

    def drop(self, key: Eid) -> None:
        """key's mapping could not be had: its packets go."""
        waiting = self._queue.pop(key, None)
        if waiting is not None:
            self._queued -= len(waiting)
            self._counters[C.DROP_UNRESOLVED] += len(waiting)
