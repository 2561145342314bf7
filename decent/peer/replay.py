"""Map-Register replay protection (RFC 9301 5.6) that one registrant cannot poison.

RFC 9301 5.6 has the Map-Server keep the last nonce of each (registrant,
key) and drop a Map-Register whose nonce is not greater. Taken literally,
anyone holding the key (every member of a Decent group shares one) can send
nonce 2**64-1 under another member's xTR-ID: that member is then refused for
good, and the mark is saved across restarts. The rule here keeps the RFC's
guarantee (no Map-Register is applied twice, nor one older than what was
applied) without letting one party lock another out:

- Marks per source. A registrant's nonces are checked against the mark of
  the address they come from: a forged Map-Register from the attacker's own
  address moves only the mark of that address, which the real registrant's
  Map-Registers (from its own) are never checked against.
- A forward window. A nonce up to `window` above the mark is fresh and
  moves it; the mark itself is a duplicate, dropped; anything below it or
  above the window is out of window. From an address with no mark yet (a
  registrant that moved, or a new one), a nonce must be above the highest
  the slot ever accepted (its ceiling, which is what a snapshot keeps), so
  a captured Map-Register replayed from a fresh address gains nothing.
- An authenticated Map-Register out of window is not applied. Instead the
  Map-Server sends a challenge to its source: a Map-Notify carrying the
  registration's records, whose nonce holds the Map-Register's own (its
  low 32 bits) above 32 fresh random bits. A registrant answers with a
  Map-Notify-Ack only when that nonce is one of its latest Map-Registers'
  and the records are exactly what it registers now (decent.peer.node,
  `_on_notify`). The answer proves that a key holder (HMAC) at the source
  (only that address got the challenge) sent the Map-Register lately, and
  it is fresh (the random bits): no earlier answer can be replayed. The
  registration is then applied, and the source's mark moves to its nonce,
  down as well as up (what lies between is the registrant's own latest).

So a key holder can still speak for another member's xTR-ID from an
address of its own, as anyone holding a shared key can (per-node keys bind
xTR-IDs to nodes later); what it can no longer do is lock that member out,
nor set the mark the member is checked against: a forged nonce far ahead
is never confirmed by the member, and one within the window, sent with the
member's address faked, costs the member one round trip. A poisoned
ceiling costs a registrant one round trip when it registers from a new
address (it roamed, or restarted without its state). An outsider replaying
a captured Map-Register gets nowhere: the registrant confirms neither old
nonces nor records it no longer registers, and nobody without the key can
forge the Map-Notify-Ack. The same exchange absorbs datagrams that arrive
out of order: a Map-Register overtaken by a later one from the same
registrant is confirmed, not lost.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from decent.peer.config import Addr, ChildKey

P = TypeVar("P")
K = TypeVar("K")
#: (site name, registrant identity: xTR-ID or source address, key ID).
Slot = tuple[str, ChildKey, int]


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
    """Marks per slot and source, ceilings per slot, and the challenges
    that re-synchronise them."""

    def __init__(
        self,
        *,
        window: int,
        retention: float,
        max_slots: int,
        max_challenges: int,
        challenge_timeout: float,
        challenges_per_source: int = 8,
    ) -> None:
        self.window = window
        self.retention = retention
        self.max_slots = max_slots
        self.max_challenges = max_challenges
        self.challenge_timeout = challenge_timeout
        #: Outstanding per (slot, source): a registrant sends a few
        #: Map-Registers a round, each challenged on its own.
        self.challenges_per_source = challenges_per_source
        #: The last accepted nonce per slot and source address.
        self.marks: dict[tuple[Slot, Hashable], int] = {}
        #: The highest nonce a slot ever accepted, from any source (what a
        #: snapshot keeps: a restart then treats every source as new).
        self.ceilings: dict[Slot, int] = {}
        #: When each mark was last used, oldest first.
        self._used: OrderedDict[tuple[Slot, Hashable], float] = OrderedDict()
        self._challenges: dict[int, Challenge[P]] = {}
        self._challenged: Counter[tuple[Slot, Hashable]] = Counter()
        self._per_slot: Counter[Slot] = Counter()

    def check(self, slot: Slot, src: Hashable, nonce: int) -> Verdict:
        mark = self.marks.get((slot, src))
        if mark is None:
            ceiling = self.ceilings.get(slot)
            if ceiling is None:
                return Verdict.FRESH
            # A new source must not replay what another source sent.
            mark = ceiling
            if nonce == mark:
                return Verdict.STALE
        if mark < nonce <= mark + self.window:
            return Verdict.FRESH
        if nonce > mark:
            return Verdict.JUMP
        return Verdict.DUPLICATE if nonce == mark else Verdict.STALE

    def room_for(self, slot: Slot, src: Hashable, live: Callable[[Slot], bool]) -> bool:
        """Whether (slot, src) has a mark or one can be made: the table is
        bounded, and only a mark whose registrant holds nothing may go."""
        if (slot, src) in self.marks or len(self.marks) < self.max_slots:
            return True
        for old in self._used:
            if not live(old[0]):
                self._forget(old)
                return True
        return False

    def accept(self, slot: Slot, src: Hashable, nonce: int, now: float) -> None:
        """Record a fresh (or confirmed) nonce as the source's mark."""
        self.marks[(slot, src)] = nonce
        if nonce > self.ceilings.get(slot, -1):
            self.ceilings[slot] = nonce
        self._used[(slot, src)] = now
        self._used.move_to_end((slot, src))

    # ------------------------------------------------------------ challenges
    def challenge(
        self, slot: Slot, nonce: int, src: Addr, held: P, key: int, now: float
    ) -> bool:
        """Hold a refused Map-Register under challenge nonce `key`; False when
        too many are outstanding for this slot and source, for the slot or
        in all (each costs a datagram and memory, and an outsider can replay
        captured Map-Registers from any source)."""
        self.expire(now)
        per_source = self.challenges_per_source
        if (
            self._challenged[(slot, src[0])] >= per_source
            or self._per_slot[slot] >= 2 * per_source
            or len(self._challenges) >= self.max_challenges
            or key in self._challenges
        ):
            return False
        self._challenges[key] = Challenge(
            slot, nonce, src, held, now + self.challenge_timeout
        )
        self._challenged[(slot, src[0])] += 1
        self._per_slot[slot] += 1
        return True

    def pending(self, key: int, now: float) -> Challenge[P] | None:
        ch = self._challenges.get(key)
        return None if ch is None or ch.expires < now else ch

    def confirm(self, key: int, now: float) -> Challenge[P] | None:
        """The registrant answered challenge `key`: it vouched that the
        held Map-Register is one of its latest, so its nonce is the mark of
        the address it registers from, down as well as up."""
        ch = self.pending(key, now)
        if ch is None:
            return None
        self._drop_challenge(key)
        self.accept(ch.slot, ch.src[0], ch.nonce, now)
        return ch

    def expire(self, now: float) -> None:
        for key in [k for k, c in self._challenges.items() if c.expires < now]:
            self._drop_challenge(key)

    def prune(self, now: float, live: Callable[[Slot], bool]) -> None:
        """Forget marks unused for `retention` whose registrant holds nothing
        (the table must not keep every registrant ever seen), and ceilings
        of slots left with no mark and nothing held."""
        self.expire(now)
        while self._used:
            key, when = next(iter(self._used.items()))
            if now - when < self.retention:
                break
            if live(key[0]):
                self._used[key] = now
                self._used.move_to_end(key)
            else:
                self._forget(key)
        marked = {slot for slot, _ in self.marks}
        for slot in [s for s in self.ceilings if s not in marked and not live(s)]:
            del self.ceilings[slot]

    def sizes(self) -> dict[str, int]:
        return {
            "nonce_marks": len(self.marks),
            "nonce_ceilings": len(self.ceilings),
            "challenges": len(self._challenges),
        }

    def _forget(self, key: tuple[Slot, Hashable]) -> None:
        self.marks.pop(key, None)
        self._used.pop(key, None)

    def _drop_challenge(self, key: int) -> None:
        ch = self._challenges.pop(key)
        _count_down(self._challenged, (ch.slot, ch.src[0]))
        _count_down(self._per_slot, ch.slot)


def _count_down(table: Counter[K], key: K) -> None:
    table[key] -= 1
    if not table[key]:
        del table[key]


__all__ = ["Challenge", "ReplayGuard", "Slot", "Verdict"]
