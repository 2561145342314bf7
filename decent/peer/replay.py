"""Map-Register replay protection (RFC 9301 5.6) that one registrant cannot poison.

RFC 9301 5.6 has the Map-Server keep the last nonce of each (registrant,
key) and drop a Map-Register whose nonce is not greater. Taken literally,
anyone holding the key (every member of a Decent group shares one) can send
nonce 2**64-1 under another member's xTR-ID: that member is then refused for
good, and the mark is saved across restarts. The rule here keeps the RFC's
guarantee (no Map-Register is applied twice, nor one older than what was
applied) without letting one party set another's high-water mark:

- A forward window. A nonce up to `window` above the mark is fresh and
  moves the mark; the mark itself is a duplicate, dropped; anything below it
  or above the window is out of window.
- An authenticated Map-Register out of window is not applied. Instead the
  Map-Server sends a challenge to its source: a Map-Notify carrying the
  registration's records under a fresh random nonce. A registrant answers
  with a Map-Notify-Ack only when the records are exactly what it registers
  now (decent.peer.node, `_on_notify`). That answer proves three things: it
  comes from a key holder (HMAC), it is fresh (the random nonce) and it
  comes from the address the registration claims (only that address got
  the challenge). The mark then moves to the challenged nonce, up or down,
  and the registration is applied.

The same exchange absorbs datagrams that arrive out of order: a Map-Register
overtaken by a later one of the same registrant is confirmed, not lost.

So a poisoned mark costs the real registrant one round trip, not its
membership. An outsider replaying a captured Map-Register gets nowhere: the
registrant does not confirm records it no longer registers, and nobody
without the key can forge the Map-Notify-Ack. A restarted registrant whose
nonce jumped past the window (it lost its reservation) re-synchronises the
same way. What remains needs both the key and the ability to receive at the
victim's address, and the trust issue's per-node keys close it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from decent.peer.config import Addr

P = TypeVar("P")
#: (site name, registrant identity: xTR-ID or source address, key ID).
Slot = tuple[str, Hashable, int]


class Verdict(Enum):
    FRESH = "fresh"
    #: The mark itself: the same Map-Register again.
    DUPLICATE = "duplicate"
    #: Below the mark: a replay, a late datagram, or a registrant whose mark
    #: someone else pushed up.
    STALE = "stale"
    #: Above the window: a poisoning attempt, or a restart that lost state.
    JUMP = "jump"

    @property
    def reason(self) -> str:
        """The rejection reason counted (RFC 9301 5.6's replay, or a jump)."""
        return "nonce-jump" if self is Verdict.JUMP else "replayed-nonce"


@dataclass(slots=True)
class Challenge(Generic[P]):
    """A Map-Register held until its registrant confirms it."""

    slot: Slot
    #: The held Map-Register's own nonce: the mark once confirmed.
    nonce: int
    src: Addr
    held: P
    expires: float


class ReplayGuard(Generic[P]):
    """Marks per slot, and the challenges that re-synchronise them."""

    def __init__(
        self,
        *,
        window: int,
        retention: float,
        max_slots: int,
        max_challenges: int,
        challenge_timeout: float,
        challenges_per_slot: int = 2,
    ) -> None:
        self.window = window
        self.retention = retention
        self.max_slots = max_slots
        self.max_challenges = max_challenges
        self.challenge_timeout = challenge_timeout
        self.challenges_per_slot = challenges_per_slot
        #: The last accepted nonce per slot (saved in snapshots).
        self.marks: dict[Slot, int] = {}
        #: When each slot was last used, oldest first.
        self._used: OrderedDict[Slot, float] = OrderedDict()
        self._challenges: dict[int, Challenge[P]] = {}
        self._challenged: dict[tuple[Slot, object], int] = {}
        self._per_slot: Counter[Slot] = Counter()

    def check(self, slot: Slot, nonce: int) -> Verdict:
        mark = self.marks.get(slot)
        if mark is None or mark < nonce <= mark + self.window:
            return Verdict.FRESH
        if nonce > mark:
            return Verdict.JUMP
        return Verdict.DUPLICATE if nonce == mark else Verdict.STALE

    def room_for(self, slot: Slot, live: Callable[[Slot], bool]) -> bool:
        """Whether slot has a mark or one can be made: the table is bounded,
        and only a slot whose registrant holds nothing any more may go."""
        if slot in self.marks or len(self.marks) < self.max_slots:
            return True
        for old in self._used:
            if not live(old):
                self._forget(old)
                return True
        return False

    def accept(self, slot: Slot, nonce: int, now: float) -> None:
        """Record a fresh nonce (check() said so) as the mark."""
        self.marks[slot] = nonce
        self._touch(slot, now)

    # ------------------------------------------------------------ challenges
    def challenge(
        self, slot: Slot, nonce: int, src: Addr, held: P, key: int, now: float
    ) -> bool:
        """Hold a refused Map-Register under challenge nonce `key`; False when
        one is already outstanding for this slot and source, or too many
        are, for the slot or in all (each costs a datagram and memory, and
        an outsider can replay captured Map-Registers from any source)."""
        self.expire(now)
        if (
            (slot, src[0]) in self._challenged
            or self._per_slot[slot] >= self.challenges_per_slot
            or len(self._challenges) >= self.max_challenges
            or key in self._challenges
        ):
            return False
        self._challenges[key] = Challenge(
            slot, nonce, src, held, now + self.challenge_timeout
        )
        self._challenged[(slot, src[0])] = key
        self._per_slot[slot] += 1
        return True

    def pending(self, key: int, now: float) -> Challenge[P] | None:
        ch = self._challenges.get(key)
        return None if ch is None or ch.expires < now else ch

    def confirm(self, key: int, now: float) -> Challenge[P] | None:
        """The registrant answered challenge `key`: its nonce is the mark."""
        ch = self.pending(key, now)
        if ch is None:
            return None
        self._drop_challenge(key)
        self.accept(ch.slot, ch.nonce, now)
        return ch

    def expire(self, now: float) -> None:
        for key in [k for k, c in self._challenges.items() if c.expires < now]:
            self._drop_challenge(key)

    def prune(self, now: float, live: Callable[[Slot], bool]) -> None:
        """Forget marks unused for `retention` whose registrant holds nothing:
        the table must not keep every registrant ever seen."""
        self.expire(now)
        for slot in self.marks.keys() - self._used.keys():
            self._touch(slot, now)  # set straight into marks by a restore
        while self._used:
            slot, when = next(iter(self._used.items()))
            if now - when < self.retention:
                break
            if live(slot):
                self._touch(slot, now)
            else:
                self._forget(slot)

    def sizes(self) -> dict[str, int]:
        return {"nonce_marks": len(self.marks), "challenges": len(self._challenges)}

    def _touch(self, slot: Slot, now: float) -> None:
        self._used[slot] = now
        self._used.move_to_end(slot)

    def _forget(self, slot: Slot) -> None:
        self.marks.pop(slot, None)
        self._used.pop(slot, None)

    def _drop_challenge(self, key: int) -> None:
        ch = self._challenges.pop(key)
        del self._challenged[(ch.slot, ch.src[0])]
        self._per_slot[ch.slot] -= 1
        if not self._per_slot[ch.slot]:
            del self._per_slot[ch.slot]


__all__ = ["Challenge", "ReplayGuard", "Slot", "Verdict"]
