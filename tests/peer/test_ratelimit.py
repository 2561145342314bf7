"""Token buckets: one Bucket's refill and burst, and the bounded LRU of Buckets."""

from __future__ import annotations

import pytest

from decent.peer.ratelimit import Bucket, Buckets


def test_a_bucket_starts_full_and_allows_its_burst_at_once():
    bucket = Bucket(rate=1.0, burst=3.0, now=0.0)
    assert bucket.full(0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.full(0.0)


def test_a_bucket_refills_at_its_rate_and_never_above_its_burst():
    bucket = Bucket(rate=2.0, burst=2.0, now=0.0)
    assert bucket.take(0.0, cost=2.0)
    assert not bucket.take(0.4)  # 0.8 tokens
    assert bucket.take(0.5)  # 1.0 token: the refused take kept what it had
    assert not bucket.take(0.5)
    assert bucket.full(100.0)
    assert bucket.take(100.0, cost=2.0)  # an hour idle still buys one burst
    assert not bucket.take(100.0)


def test_a_take_costing_more_than_the_tokens_spends_nothing():
    bucket = Bucket(rate=1.0, burst=10.0, now=0.0)
    assert not bucket.take(0.0, cost=11.0)
    assert bucket.take(0.0, cost=10.0)


def test_a_table_needs_room_for_one_bucket():
    with pytest.raises(ValueError, match="at least one bucket"):
        Buckets(rate=1.0, burst=1.0, size=0)


def test_buckets_are_per_key():
    table: Buckets[str] = Buckets(rate=0.001, burst=1.0, size=8)
    assert table.take("a", 0.0)
    assert not table.take("a", 0.0)
    assert table.take("b", 0.0)
    assert len(table) == 2


def test_a_full_table_evicts_the_least_recently_used_bucket():
    table: Buckets[str] = Buckets(rate=0.001, burst=1.0, size=2)
    assert table.take("a", 0.0)
    assert table.take("b", 0.0)
    assert not table.take("a", 0.0)  # a is now the most recently used
    assert table.take("c", 0.0)  # evicts b
    assert len(table) == 2
    assert table.take("b", 0.0)  # b starts again full; this evicts a
    assert not table.take("c", 0.0)  # c was kept, still empty
    assert table.take("a", 0.0)


def test_prune_forgets_only_the_buckets_that_refilled():
    table: Buckets[str] = Buckets(rate=1.0, burst=2.0, size=8)
    assert table.take("light", 0.0)
    assert table.take("heavy", 0.0, cost=2.0)
    table.prune(1.0)  # light is full again, heavy holds one token of two
    assert len(table) == 1
    assert table.take("heavy", 1.0)
    assert not table.take("heavy", 1.0)
    table.prune(3.0)
    assert len(table) == 0
