"""ReplayGuard on its own: marks per source, window, ceilings, challenges, pruning."""

from __future__ import annotations

from decent.peer.replay import ReplayGuard, Slot, Verdict
from tests.peer.conftest import ETR_IP, ITR_IP, MS_IP, ctl

SLOT: Slot = ("site-a", 7, 0)
OTHER: Slot = ("site-a", 8, 0)
A, B = ETR_IP, ITR_IP


def guard(**kw: int | float) -> ReplayGuard[str]:
    kw.setdefault("window", 10)
    kw.setdefault("retention", 100.0)
    kw.setdefault("max_slots", 4)
    kw.setdefault("max_challenges", 4)
    kw.setdefault("challenge_timeout", 5.0)
    return ReplayGuard(**kw)  # type: ignore[arg-type]


def test_nonces_are_fresh_within_the_window_above_the_mark():
    g = guard()
    assert g.check(SLOT, A, 1 << 60) is Verdict.FRESH  # nothing seen yet
    g.accept(SLOT, A, 100, 0.0)
    assert g.check(SLOT, A, 100) is Verdict.DUPLICATE
    assert g.check(SLOT, A, 99) is Verdict.STALE
    assert g.check(SLOT, A, 101) is Verdict.FRESH
    assert g.check(SLOT, A, 110) is Verdict.FRESH
    assert g.check(SLOT, A, 111) is Verdict.JUMP
    assert g.check(OTHER, A, 1) is Verdict.FRESH  # slots are separate


def test_a_new_source_is_checked_against_the_slots_ceiling():
    g = guard()
    g.accept(SLOT, A, 100, 0.0)
    assert g.check(SLOT, B, 100) is Verdict.STALE  # replayed from elsewhere
    assert g.check(SLOT, B, 50) is Verdict.STALE
    assert g.check(SLOT, B, 105) is Verdict.FRESH
    assert g.check(SLOT, B, 200) is Verdict.JUMP
    g.accept(SLOT, B, 105, 1.0)
    g.accept(SLOT, A, 101, 2.0)  # A's own mark, below the ceiling
    assert (g.marks[(SLOT, A)], g.ceilings[SLOT]) == (101, 105)
    assert g.check(SLOT, A, 102) is Verdict.FRESH  # B did not move A's mark


def test_only_a_jump_counts_as_a_nonce_jump():
    assert Verdict.JUMP.reason == "nonce-jump"
    assert {v.reason for v in Verdict if v is not Verdict.JUMP} == {"replayed-nonce"}


def test_the_mark_table_is_bounded_and_gives_up_only_idle_registrants():
    g = guard(max_slots=2)
    g.accept(SLOT, A, 1, 0.0)
    g.accept(OTHER, A, 1, 1.0)
    third: Slot = ("site-a", 9, 0)
    assert g.room_for(SLOT, A, lambda slot: True)  # it has a mark already
    assert not g.room_for(third, A, lambda slot: True)
    assert g.room_for(third, A, lambda slot: slot != OTHER)
    assert (OTHER, A) not in g.marks
    assert (SLOT, A) in g.marks


def test_a_confirmed_challenge_sets_the_mark_down_as_well_as_up():
    g = guard()
    g.accept(SLOT, A, 1000, 0.0)
    src = ctl(A)
    assert g.challenge(SLOT, 20, src, "held register", key=77, now=1.0)
    assert g.pending(77, 1.0) is not None
    ch = g.confirm(77, 2.0)
    assert ch is not None
    assert (ch.held, ch.nonce, ch.src) == ("held register", 20, src)
    assert g.marks[(SLOT, A)] == 20
    assert g.ceilings[SLOT] == 1000  # the highest ever accepted stays
    assert g.confirm(77, 2.0) is None  # once
    assert g.sizes()["challenges"] == 0


def test_challenges_expire_unanswered():
    g = guard()
    assert g.challenge(SLOT, 5, ctl(A), "held", key=1, now=0.0)
    assert g.pending(1, 5.0) is not None
    assert g.pending(1, 5.1) is None
    assert g.confirm(1, 5.1) is None
    assert (SLOT, A) not in g.marks
    g.expire(5.1)
    assert g.sizes()["challenges"] == 0


def test_challenges_are_bounded_per_source_per_slot_and_in_all():
    g = guard(max_challenges=100, challenges_per_source=2)
    key = iter(range(1000))
    assert g.challenge(SLOT, 1, ctl(A), "h", next(key), 0.0)
    assert g.challenge(SLOT, 2, ctl(A), "h", next(key), 0.0)
    assert not g.challenge(SLOT, 3, ctl(A), "h", next(key), 0.0)  # per source
    assert g.challenge(SLOT, 3, ctl(B), "h", next(key), 0.0)
    assert g.challenge(SLOT, 4, ctl(B), "h", next(key), 0.0)
    assert not g.challenge(SLOT, 5, ctl(MS_IP), "h", next(key), 0.0)  # per slot
    assert g.challenge(OTHER, 1, ctl(A), "h", 999, 0.0)
    assert not g.challenge(OTHER, 2, ctl(B), "h", 999, 0.0)  # a key in use
    small = guard(max_challenges=1)
    assert small.challenge(SLOT, 1, ctl(A), "h", 1, 0.0)
    assert not small.challenge(OTHER, 1, ctl(B), "h", 2, 0.0)  # in all
    assert small.challenge(OTHER, 1, ctl(B), "h", 2, 10.0)  # the first expired


def test_prune_forgets_idle_marks_and_ceilings_of_registrants_that_hold_nothing():
    g = guard(retention=100.0)
    g.accept(SLOT, A, 5, 0.0)
    g.accept(OTHER, A, 5, 0.0)
    g.prune(50.0, lambda slot: False)  # not idle for long enough yet
    assert len(g.marks) == 2
    g.prune(150.0, lambda slot: slot == SLOT)
    assert list(g.marks) == [(SLOT, A)]  # SLOT holds a registration: kept
    assert list(g.ceilings) == [SLOT]
    g.prune(200.0, lambda slot: False)  # touched at 150: still fresh
    assert g.sizes() == {"nonce_marks": 1, "nonce_ceilings": 1, "challenges": 0}
    g.prune(250.0, lambda slot: False)
    assert g.sizes() == {"nonce_marks": 0, "nonce_ceilings": 0, "challenges": 0}
