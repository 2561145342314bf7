"""The data plane's RFC 8061 half: sealing to peers, opening theirs, clear-text policy.

A packet buffer holds the inner packet at offset P = 8 + 12: room in front
for the LISP header and the longest IV, and the shell leaves 16 bytes after
it for the tag. A clear packet's header goes at P - 8; a sealed one's at
P - iv_len - 8, the IV after it, and the payload is encrypted where it
lies (decent.wire.crypto). Which key seals to which peer RLOC, and whether
a peer without one gets clear text, is the key role's
(decent.peer.roles.keys); this module only applies it, per packet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from ipaddress import ip_address
from typing import Final

from decent.peer import counters as C
from decent.peer.events import KeyStateChanged
from decent.peer.missqueue import MissQueue
from decent.peer.roles.keys import CLEAR, ENCRYPTED, REFUSED, KeyRole
from decent.wire import Eid, IPAddress
from decent.wire.crypto import MAX_IV_LEN, SUITE_NAMES, TAG_LEN
from decent.wire.data import DATA_HEADER_LEN

#: Where the inner packet starts in every data-plane buffer.
P: Final = DATA_HEADER_LEN + MAX_IV_LEN
#: Where a clear packet's LISP header starts.
CLEAR_AT: Final = P - DATA_HEADER_LEN


class Sealing:
    """Seals and opens packets with the key role's keys."""

    def __init__(
        self,
        keys: KeyRole,
        mode: str,
        waiting: MissQueue,
        queue_size: int,
        counters: Counter[str],
        stamp: Callable[[bytearray, int, int], None],
        release: Callable[[Eid, float], None],
    ) -> None:
        """`stamp(buf, at, key_id)` writes a LISP header at buf[at:];
        `release(eid, now)` sends again what waited for eid's mapping."""
        self.keys = keys
        self._tx, self._rx = keys.tx, keys.rx
        self._encrypt = mode != "off"
        self._required = mode == "required"
        self._waiting = waiting
        self._queue_size = queue_size
        self._counters = counters
        self._stamp = stamp
        self._release = release
        #: Mappings with packets held for a key, by the peer RLOC they await.
        self._keying: dict[str, set[Eid]] = {}

    def seal(
        self,
        buf: bytearray,
        n: int,
        host: str,
        eid: Eid,
        source: IPAddress,
        now: float,
    ) -> int:
        """Write the LISP header in front of the packet in buf[P:P + n] and,
        with a key for host, seal it (RFC 8061 9). Returns where the packet
        now starts, or -1 if it waits for a key or must not go in clear.
        It ends at P + n, or P + n + TAG_LEN when sealed (start != CLEAR_AT)."""
        if not self._encrypt:
            self._stamp(buf, CLEAR_AT, 0)
            return CLEAR_AT
        tx = self._tx.get(host)
        if tx is None or (tx.source is not source and tx.source != source):
            return self._no_key(buf, n, host, eid, source, now)
        cipher = tx.cipher
        start = P - cipher.iv_len - DATA_HEADER_LEN
        self._stamp(buf, start, tx.key_id)
        tx.counter = counter = tx.counter + 1
        cipher.seal(memoryview(buf), P, n, counter)
        if counter >= tx.limit:
            self.keys.rekey(host, now)
        return start

    def _no_key(
        self,
        buf: bytearray,
        n: int,
        host: str,
        eid: Eid,
        source: IPAddress,
        now: float,
    ) -> int:
        keys = self.keys
        peer = keys.peers.get(host)
        if peer is not None and peer.state == CLEAR:
            # "preferred": this peer answered without a key (a plain xTR).
            # It is asked again now and then: a stripped answer must not
            # downgrade it for good.
            if now >= peer.retry_at:
                keys.want(host, ip_address(host), eid, source, now)
            self._stamp(buf, CLEAR_AT, 0)
            return CLEAR_AT
        keys.want(host, ip_address(host), eid, source, now)
        peer = keys.peers.get(host)  # want() may have started an exchange
        if peer is not None and peer.state == REFUSED and host not in self._keying:
            self._counters[C.DROP_PEER_UNENCRYPTED] += 1
            return -1
        waiting = self._keying.setdefault(host, set())
        if self._waiting.room(now) and len(waiting) < self._queue_size:
            waiting.add(eid)
            self._waiting.hold(eid, bytes(buf[P : P + n]), now)
            self._counters[C.DATAPLANE_AWAITING_KEY] += 1
        else:
            self._counters[C.DROP_QUEUE_FULL] += 1
        return -1

    def key_state(self, event: KeyStateChanged, now: float) -> None:
        """A key exchange ended: send what waited for it, or drop it."""
        if event.state not in (ENCRYPTED, CLEAR, REFUSED):
            return
        for eid in self._keying.pop(event.rloc, ()):
            if event.state in (ENCRYPTED, CLEAR):
                self._release(eid, now)
            else:
                self._waiting.drop(eid)

    def clear_refused(self, host: str) -> bool:
        """Whether a clear packet from host is to be dropped: always when
        encryption is required, and from a peer that keys with us (its clear
        packets can only be forged)."""
        if self._required:
            return True
        rx = self._rx
        return self._encrypt and ((host, 1) in rx or (host, 2) in rx or (host, 3) in rx)

    def open(self, buf: bytearray, n: int, host: str, key_id: int, now: float) -> int:
        """Authenticate and decrypt a sealed packet in buf[:n] in place (RFC
        8061 9): where its inner packet starts (it ends TAG_LEN before n),
        or -1, dropped and counted."""
        rx = self._rx.get((host, key_id))
        if rx is None:
            self._counters[C.DROP_NO_KEY] += 1
            return -1
        cipher = rx.cipher
        p = DATA_HEADER_LEN + cipher.iv_len
        if n < p + TAG_LEN + 20:
            self._counters[C.DROP_SHORT_PACKET] += 1
            return -1
        view = memoryview(buf)
        counter = cipher.counter(view, p)
        window = rx.window
        if not window.fresh(counter):
            self._counters[C.DROP_REPLAYED] += 1
            return -1
        if not cipher.open(view, p, n, counter):
            self._counters[C.DROP_DECRYPT_FAILED] += 1
            return -1
        # Only an authentic packet moves the window: a forged counter
        # must not push the real ones out of it.
        window.accept(counter)
        rx.used = now
        rx.packets += 1
        return p

    def peers(self, now: float) -> list[dict[str, object]]:
        """Each peer RLOC we key with, either way: what we send it (state,
        suite, key-id, packets sealed) and what we hold to open its packets
        (key-ids, packets opened). For the page, the CLI and /metrics."""
        keys = self.keys
        hosts = {*keys.peers, *self._tx, *(h for h, _ in self._rx)}
        out: list[dict[str, object]] = []
        for host in sorted(hosts):
            peer = keys.peers.get(host)
            tx = self._tx.get(host)
            rx = [(k, self._rx[(host, k)]) for k in (1, 2, 3) if (host, k) in self._rx]
            out.append(
                {
                    "rloc": host,
                    "state": peer.state if peer is not None else "-",
                    "reason": peer.reason if peer is not None else "",
                    "since_s": None if peer is None else round(now - peer.since, 3),
                    "cipher": None if tx is None else SUITE_NAMES[tx.suite],
                    "key_id": None if tx is None else tx.key_id,
                    "sealed_packets": 0 if tx is None else tx.counter,
                    "receive_key_ids": [k for k, _ in rx],
                    "opened_packets": sum(r.packets for _, r in rx),
                }
            )
        return out
