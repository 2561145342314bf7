"""RFC 8061 key exchange: the data plane's keys, who we encrypt to and why not.

The ITR sends its X25519 key in an RLOC-probe straight to the ETR's RLOC,
not through the mapping system: in a Decent mesh each node answers its own
lookups (RFC 9962 4), so a keyed request would never reach the ETR, and
RFC 8061 10 wants a direct Map-Request to every RLOC encrypted to anyway.
The ETR puts its key in that RLOC's record of the probe reply: one round
trip (README, "Encryption", says more).

One key per (ITR RLOC, ETR RLOC, key-id). The ITR rekeys after
`rekey_seconds` or `rekey_packets`, alternating key-ids 1 and 2 and
resending the other id's key unchanged, so the ETR keeps both while packets
under the old one are in flight (RFC 8061 10). The ETR keeps at most one key
per key-id per ITR RLOC, forgets keys unused for two rekey periods, and on
an R (revoke) bit forgets the keys named. Every KeyCheck the ITR resends its
key unchanged: an ETR that restarted answers with a new one.

A keyed request is answered only from a registered RLOC, for the RLOC it
came from, at a bounded rate. With node identities both halves are signed
by the node key whose registration lists the RLOC, so no member can splice
its key into an exchange between two others.

Policy (`NodeConfig.encrypt`): "required" never sends clear text and drops
clear packets; "preferred" sends clear to a peer that answers without a
key (a plain xTR); "off" answers keyed requests without a key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

from decent.peer import counters as C
from decent.peer.config import Addr
from decent.peer.context import Ctx
from decent.peer.events import KeyStateChanged
from decent.peer.keyanswers import KeyAnswers, RlocOwners
from decent.peer.keystore import PeerKeys, RxKey, TxKey
from decent.wire import (
    NO_ADDRESS,
    Address,
    Eid,
    IPAddress,
    MapRecord,
    MapReply,
    MapRequest,
    RequestRecord,
    SecurityKey,
)
from decent.wire.crypto import (
    BadPublicKey,
    Cipher,
    derive_key,
    keypair,
    shared_secret,
)
from decent.wire.errors import DecodeError
from decent.wire.trust import (
    find_signature,
    key_exchange_digest,
    sign,
    signature_locator,
)

#: What we know of a peer RLOC as an ITR.
ENCRYPTED: Final = "encrypted"
KEYING: Final = "keying"
CLEAR: Final = "clear"
REFUSED: Final = "refused"
#: Tries of one exchange before the peer counts as not answering.
_TRIES: Final = 3
#: Seconds before a peer that refused or never answered is asked again.
RETRY_AFTER: Final = 30.0
#: KeyChecks in a row that found a sending key unused before it is dropped
#: (the next packet keys again): a peer we stopped talking to costs nothing.
IDLE_CHECKS: Final = 30


@dataclass(frozen=True, slots=True)
class KeyTimeout:
    nonce: int


@dataclass(frozen=True, slots=True)
class Rekey:
    host: str


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """Resend every sending key unchanged: an ETR that restarted (and so
    lost our key) answers with a new one, and one that stopped encrypting
    answers without (RFC 8061 10: probing without rekeying)."""


@dataclass(frozen=True, slots=True)
class KeySweep:
    """Forget receive keys nobody uses and peers we no longer talk to."""


@dataclass(slots=True)
class _Exchange:
    nonce: int
    host: str
    rloc: IPAddress
    eid: Eid
    key_id: int
    suite: int
    private: bytes
    public: bytes
    sent_keys: tuple[bytes, ...]
    #: Our RLOC the exchange is from: the ETR keys by the source address.
    source: IPAddress
    tries: int = 1
    #: Resending the current key, not making a new one (KeyCheck).
    check: bool = False


class KeyRole:
    """Key exchanges in both directions and the keys they yield."""

    timer_keys: Final = (KeyTimeout, Rekey, KeyCheck, KeySweep)

    def __init__(self, ctx: Ctx, registry: Callable[[], int], now: float) -> None:
        self.ctx = ctx
        self._registry = registry
        cfg = ctx.config
        self.mode = cfg.encrypt
        self.suite = cfg.cipher_suite
        self.max_peers = cfg.limits.max_keyed_peers
        #: Sending keys by peer RLOC (the data plane reads this dict).
        self.tx: dict[str, TxKey] = {}
        self.owners = RlocOwners(ctx, registry)
        self.answers = KeyAnswers(ctx, self.owners)
        #: Receiving keys by (peer RLOC, key-id) (the data plane reads it).
        self.rx: dict[tuple[str, int], RxKey] = self.answers.rx
        self.peers: OrderedDict[str, PeerKeys] = OrderedDict()
        self._pending: dict[int, _Exchange] = {}
        self._pending_for: dict[str, int] = {}
        #: Seconds between KeyChecks: how long an ETR that lost our key
        #: (it restarted) may drop our packets.
        self.check_interval = cfg.probe_interval or 10.0
        if self.mode != "off":
            ctx.timers.set(KeySweep(), now + cfg.rekey_seconds)
            ctx.timers.set(KeyCheck(), now + self.check_interval)

    # ============================================================ ITR side
    def want(
        self, host: str, rloc: IPAddress, eid: Eid, source: IPAddress, now: float
    ) -> None:
        """The data plane has packets for rloc, to send from our RLOC
        `source`, and no key for that pair: ask for one (once; a peer that
        refused or never answered is asked again only after RETRY_AFTER)."""
        tx = self.tx.get(host)
        if tx is not None and tx.source != source:
            # Our RLOC failed over: the ETR knows the key by the old one.
            del self.tx[host]
            tx = None
        if host in self._pending_for:
            return
        peer = self.peers.get(host)
        if peer is not None and peer.state in (CLEAR, REFUSED) and now < peer.retry_at:
            return
        key_id = 1 if tx is None else 3 - tx.key_id
        self._start(host, rloc, eid, key_id, source, now)

    def rekey(self, host: str, now: float) -> None:
        """Start a new key for host while the current one keeps sealing."""
        tx = self.tx.get(host)
        if tx is not None and host not in self._pending_for:
            self.ctx.out.counters[C.KEYS_REKEYED] += 1
            self._start(host, tx.rloc, tx.eid, 3 - tx.key_id, tx.source, now)

    def _start(
        self,
        host: str,
        rloc: IPAddress,
        eid: Eid,
        key_id: int,
        source: IPAddress,
        now: float,
    ) -> None:
        ctx = self.ctx
        if source not in ctx.config.rlocs or len(self._pending) >= self.max_peers:
            return
        private, public = keypair(ctx.out.secret())
        tx = self.tx.get(host)
        # Key-id 2 is announced with key-id 1's key unchanged, so the ETR
        # keeps that one for the packets still in flight.
        sent = (tx.public, public) if key_id == 2 and tx is not None else (public,)
        suite = self.suite
        ex = _Exchange(0, host, rloc, eid, key_id, suite, private, public, sent, source)
        peer = self.peers.get(host)
        # A rekey goes on sealing with the current key, and a peer asked
        # again whether it encrypts now goes on in clear meanwhile.
        if tx is None and (peer is None or peer.state != CLEAR):
            self._note(host, KEYING, now, "")
        self._send(ex, now)

    def _send(self, ex: _Exchange, now: float) -> None:
        ctx = self.ctx
        own = ex.source
        ex.nonce = nonce = ctx.out.nonce()
        source = self._sign_request(nonce, ex.suite, ex.sent_keys, own)
        addr, mask = ex.eid.to_wire()
        req = MapRequest(
            nonce,
            (RequestRecord(addr, mask),),
            (SecurityKey(ex.suite, ex.sent_keys, own),),
            source_eid=source,
            probe=True,
        )
        self._pending[nonce] = ex
        self._pending_for[ex.host] = nonce
        ctx.out.counters[C.KEYS_REQUESTED] += 1
        ctx.out.send(req.encode(), (ex.rloc, ctx.config.control_port), "key-request")
        ctx.timers.set(KeyTimeout(nonce), now + ctx.config.probe_timeout)

    def _sign_request(
        self, nonce: int, suite: int, keys: tuple[bytes, ...], own: IPAddress
    ) -> Address:
        """The keyed request's Source-EID: our signature (where lispers.net
        puts its Map-Request signatures), or no address."""
        trust = self.ctx.trust
        if trust is None:
            return NO_ADDRESS
        digest = key_exchange_digest(False, nonce, suite, keys, (), own)
        signature = sign(trust.private_key, digest)
        return signature_locator(trust.certificate_bytes, signature).address

    def _timeout(self, nonce: int, now: float) -> None:
        ex = self._pending.pop(nonce)
        del self._pending_for[ex.host]
        if ex.tries < _TRIES and ex.source in self.ctx.config.rlocs:
            ex.tries += 1
            self._send(ex, now)
            return
        self.ctx.out.counters[C.KEYS_UNANSWERED] += 1
        self._refused(ex, "no answer", now)

    def on_reply(self, rep: MapReply, src: Addr, now: float) -> bool:
        """Take the answer to a keyed request; False if rep is not one."""
        ex = self._pending.pop(rep.nonce, None)
        if ex is None:
            return False
        del self._pending_for[ex.host]
        self.ctx.timers.cancel(KeyTimeout(rep.nonce))
        found = self._reply_key(rep, ex)
        if found is None:
            # RFC 8061 6: no Security Key LCAF means the ETR will not decrypt.
            if ex.check:
                self.tx.pop(ex.host, None)
            self._refused(ex, "answered without a key", now)
            return True
        record, sk = found
        why = self._check_reply(record, sk, ex, now)
        if why:
            self.ctx.out.reject(src, "key-" + why)
            self._refused(ex, why, now, clear_ok=False)
            return True
        etr_public = sk.keys[ex.key_id - 1]
        tx = self.tx.get(ex.host)
        if ex.check and tx is not None and tx.etr_public == etr_public:
            return True  # the ETR still holds our key
        try:
            shared = shared_secret(ex.private, etr_public)
        except BadPublicKey:
            self._refused(ex, "bad public key", now, clear_ok=False)
            return True
        cipher = Cipher(ex.suite, derive_key(shared, ex.nonce, ex.suite))
        cfg = self.ctx.config
        self.tx[ex.host] = TxKey(
            ex.key_id,
            ex.suite,
            cipher,
            ex.private,
            ex.public,
            etr_public,
            ex.sent_keys,
            ex.eid,
            ex.rloc,
            ex.source,
            now,
            limit=cfg.rekey_packets,
        )
        if not ex.check:
            self.ctx.timers.set(Rekey(ex.host), now + cfg.rekey_seconds)
        self.ctx.out.counters[C.KEYS_ESTABLISHED] += 1
        self._note(ex.host, ENCRYPTED, now, "")
        return True

    def _reply_key(
        self, rep: MapReply, ex: _Exchange
    ) -> tuple[MapRecord, SecurityKey] | None:
        for record in rep.records:
            for loc in record.locators:
                sk = loc.security_key
                if sk is not None and sk.address == ex.rloc:
                    return record, sk
        return None

    def _check_reply(
        self, record: MapRecord, sk: SecurityKey, ex: _Exchange, now: float
    ) -> str:
        """Why the ETR's key is not to be used ("" if it is)."""
        if sk.cipher_suite != ex.suite or len(sk.keys) < ex.key_id:
            return "suite-mismatch"
        if self.ctx.trust is None:
            return ""
        try:
            found = find_signature(record)
        except DecodeError:
            return "signature-malformed"
        if found is None:
            return "signature-missing"
        digest = key_exchange_digest(
            True, ex.nonce, ex.suite, ex.sent_keys, sk.keys, sk.address
        )
        return self.owners.signed_by_owner(found, digest, ex.rloc, now)

    def _refused(
        self, ex: _Exchange, reason: str, now: float, clear_ok: bool = True
    ) -> None:
        self.ctx.out.counters[C.KEYS_REFUSED] += 1
        if ex.host in self.tx:
            return  # a rekey failed: the current key keeps working until it expires
        state = CLEAR if clear_ok and self.mode == "preferred" else REFUSED
        self._note(ex.host, state, now, reason)

    def _note(self, host: str, state: str, now: float, reason: str) -> None:
        peer = self.peers.get(host)
        retry = now + RETRY_AFTER if state in (CLEAR, REFUSED) else 0.0
        if peer is not None and peer.state == state and peer.reason == reason:
            peer.retry_at = retry  # asked again and answered the same
            return
        self.peers[host] = PeerKeys(state, now, reason, retry)
        self.peers.move_to_end(host)
        while len(self.peers) > self.max_peers:
            old, _ = self.peers.popitem(last=False)
            self.tx.pop(old, None)
        self.ctx.out.emit(KeyStateChanged(host, state, reason))

    # ============================================================ ETR side
    def answer(
        self,
        req: MapRequest,
        record: MapRecord,
        src: Addr,
        local: Addr | None,
        now: float,
    ) -> MapRecord | None:
        """The probe reply's record for a keyed request (KeyAnswers.answer)."""
        return self.answers.answer(req, record, src, local, now)

    def _check(self, now: float) -> None:
        for host, tx in list(self.tx.items()):
            tx.idle = tx.idle + 1 if tx.counter == tx.checked else 0
            tx.checked = tx.counter
            # In pull mode a peer's registration is held at its sets, not here.
            pull = self.ctx.config.pull is not None
            gone = not pull and self.owners.of(tx.rloc) is None
            if tx.idle >= IDLE_CHECKS or gone or tx.source not in self.ctx.config.rlocs:
                del self.tx[host]
                self.peers.pop(host, None)
                continue
            if host in self._pending_for:
                continue
            ex = _Exchange(
                0,
                host,
                tx.rloc,
                tx.eid,
                tx.key_id,
                tx.suite,
                tx.private,
                tx.public,
                tx.sent_keys,
                tx.source,
                check=True,
            )
            self._send(ex, now)
        self.ctx.timers.set(KeyCheck(), now + self.check_interval)

    def rlocs_changed(self, now: float) -> None:
        """Our RLOCs changed: keys are per RLOC pair, so what we sealed with
        from an RLOC we no longer have is no use (the ETR keys by source)."""
        for host in list(self.tx):
            del self.tx[host]
            self._note(host, KEYING, now, "our RLOC changed")

    # ============================================================ upkeep
    def _sweep(self, now: float) -> None:
        self.answers.sweep(now, 2 * self.ctx.config.rekey_seconds)
        self.ctx.timers.set(KeySweep(), now + self.ctx.config.rekey_seconds)

    def handle_timer(self, key: Hashable, now: float) -> None:
        if isinstance(key, KeyTimeout):
            self._timeout(key.nonce, now)
        elif isinstance(key, Rekey):
            if key.host in self.tx:
                # Again later unless this rekey succeeds (its answer sets the
                # next): one that meets a key check under way, or goes
                # unanswered, must not be the last.
                self.ctx.timers.set(key, now + RETRY_AFTER)
            self.rekey(key.host, now)
        elif isinstance(key, KeyCheck):
            self._check(now)
        elif isinstance(key, KeySweep):  # pragma: no branch - routed by type
            self._sweep(now)

    def sizes(self) -> dict[str, int]:
        return {
            "send-keys": len(self.tx),
            "receive-keys": len(self.rx),
            "key-exchanges": len(self._pending),
        }
