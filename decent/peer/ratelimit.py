"""Token buckets: one global bucket, and a bounded table of buckets by key."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Bucket:
    """`rate` tokens a second, holding at most `burst`; starts full."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = burst, now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if there are that many; say whether it did."""
        tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if tokens < cost:
            self.tokens = tokens
            return False
        self.tokens = tokens - cost
        return True

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.last) * self.rate >= self.burst


class Buckets(Generic[K]):
    """One bucket per key, at most `size` of them.

    A peer can name as many keys as it likes (spoofed ITR-RLOCs, invented
    xTR-IDs), so the table is an LRU: the least recently used bucket goes
    when a new key arrives at a full table. An evicted key starts again
    full, which is why whatever the table protects needs a global bound too.
    """

    __slots__ = ("_table", "burst", "rate", "size")

    def __init__(self, rate: float, burst: float, size: int) -> None:
        if size < 1:
            raise ValueError("a bucket table holds at least one bucket")
        self.rate, self.burst, self.size = rate, burst, size
        self._table: OrderedDict[K, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def take(self, key: K, now: float, cost: float = 1.0) -> bool:
        bucket = self._table.get(key)
        if bucket is None:
            if len(self._table) >= self.size:
                self._table.popitem(last=False)
            bucket = self._table[key] = Bucket(self.rate, self.burst, now)
        else:
            self._table.move_to_end(key)
        return bucket.take(now, cost)

    def prune(self, now: float) -> None:
        """Forget buckets that have refilled: a new one would be the same."""
        for key in [k for k, b in self._table.items() if b.full(now)]:
            del self._table[key]


__all__ = ["Bucket", "Buckets"]
