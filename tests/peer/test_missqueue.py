"""The miss queue: bounded in packets and in age, released by covering mappings."""

from __future__ import annotations

from collections import Counter

from decent.peer import counters as C
from decent.peer.missqueue import MissQueue
from decent.wire import Eid

A, B = Eid.prefix("10.0.0.1/32"), Eid.prefix("10.0.1.1/32")


def test_a_full_queue_refuses_until_stale_packets_make_room():
    counters: Counter[str] = Counter()
    q = MissQueue(2, 3.0, counters)
    for t in (0.0, 1.0):
        assert q.room(t)
        q.hold(A, b"p%d" % t, t)
    assert not q.room(2.0)
    assert counters[C.DROP_QUEUE_FULL] == 1
    assert q.room(3.5)  # the packet of time 0 is past its 3 s
    assert (len(q), counters[C.DROP_QUEUE_TIMEOUT]) == (1, 1)


def test_a_mapping_releases_what_it_covers_and_only_what_is_still_useful():
    counters: Counter[str] = Counter()
    q = MissQueue(8, 3.0, counters)
    q.hold(A, b"old", 0.0)
    q.hold(A, b"new", 2.0)
    q.hold(B, b"other", 2.0)
    assert q.release(Eid.prefix("10.0.0.0/24"), 3.5) == [b"new"]
    assert (len(q), counters[C.DROP_QUEUE_TIMEOUT]) == (1, 1)
    assert q.release(Eid.prefix("10.0.0.0/24"), 3.5) == []


def test_an_unresolved_eid_drops_its_packets():
    counters: Counter[str] = Counter()
    q = MissQueue(8, 3.0, counters)
    q.hold(A, b"a", 0.0)
    q.hold(A, b"b", 0.0)
    q.drop(A)
    q.drop(B)  # nothing waited for it
    assert (len(q), counters[C.DROP_UNRESOLVED]) == (0, 2)
