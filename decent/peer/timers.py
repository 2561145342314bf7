"""Named deadlines in a heap with lazy cancellation (the core's only notion of time)."""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """At most one deadline per key; setting a key again moves it.

    Superseded heap entries are skipped when they surface, and the heap is
    rebuilt when they outnumber the live ones, so it cannot grow without bound.
    """

    __slots__ = ("_heap", "_seq", "_when")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._when: dict[K, tuple[float, int]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, key: K) -> bool:
        return key in self._when

    def when(self, key: K) -> float | None:
        entry = self._when.get(key)
        return None if entry is None else entry[0]

    def set(self, key: K, when: float) -> None:
        self._seq += 1
        self._when[key] = (when, self._seq)
        heapq.heappush(self._heap, (when, self._seq, key))
        if len(self._heap) > 2 * len(self._when) + 64:
            self._heap = [(w, s, k) for k, (w, s) in self._when.items()]
            heapq.heapify(self._heap)

    def cancel(self, key: K) -> None:
        self._when.pop(key, None)

    def next_at(self) -> float | None:
        heap = self._heap
        while heap:
            when, seq, key = heap[0]
            if self._when.get(key) == (when, seq):
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every key due at or before now, earliest first."""
        due: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, seq, key = heapq.heappop(heap)
            if self._when.get(key) == (when, seq):
                del self._when[key]
                due.append(key)
        return due
