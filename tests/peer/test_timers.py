"""Deadlines: the timer heap with lazy cancellation and compaction."""

from __future__ import annotations

from decent.peer.timers import Deadlines


def test_deadlines_move_cancel_and_compact():
    d: Deadlines[int] = Deadlines()
    for i in range(100):
        d.set(0, float(i))  # superseded entries pile up, then are compacted
    assert len(d) == 1
    assert d.when(0) == 99.0
    assert len(d._heap) <= 2 * len(d) + 64
    d.set(1, 5.0)
    d.cancel(1)
    assert 1 not in d
    assert d.next_at() == 99.0
    assert d.pop_due(98.0) == []
    assert d.pop_due(99.0) == [0]
    assert d.next_at() is None
