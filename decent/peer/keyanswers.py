"""The ETR half of RFC 8061: answering keyed probes, receive keys, RLOC owners.

An ITR's keyed RLOC-probe (decent.peer.roles.keys) is answered with our key
in the probed RLOC's record only when it comes from a registered RLOC and
names that RLOC (or another of the same registrant's) as its own, within a
rate per RLOC, and, with node
identities, signed by the node whose registration lists the RLOC. One from
an RLOC nobody registered gets no answer at all rather than an answer
without a key: a node that just restarted has not relearned its peers yet,
and "no key" would tell a peer that requires encryption to stop sending
(it retries instead). An ITR public key that a newer one replaced is never
taken again, so a captured request replayed later cannot swap an old key
back in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.peer import counters as C
from decent.peer.config import Addr
from decent.peer.context import Ctx
from decent.peer.keystore import RxKey
from decent.peer.ratelimit import Buckets
from decent.wire import (
    IPAddress,
    MapRecord,
    MapRequest,
    SecurityKey,
    find_security_key,
)
from decent.wire.crypto import (
    IV_LEN,
    BadPublicKey,
    Cipher,
    derive_key,
    keypair,
    shared_secret,
)
from decent.wire.errors import DecodeError
from decent.wire.trust import (
    find_address_signature,
    key_exchange_digest,
    node_xtr_id,
    sign,
    signature_locator,
    verify,
)

#: Keyed requests per second one ITR RLOC may make us answer, and burst.
REQUEST_RATE: Final = 10.0
REQUEST_BURST: Final = 20.0
#: ITR public keys remembered as replaced, per receive-key slot we hold.
_RETIRED_PER_SLOT: Final = 4


class RlocOwners:
    """Which registrant (xTR-ID) lists which RLOC, rebuilt when the
    registrations change, and whose signature may speak for an RLOC."""

    def __init__(self, ctx: Ctx, registry: Callable[[], int]) -> None:
        self.ctx = ctx
        self._registry = registry
        self._owners: dict[IPAddress, set[int | None]] = {}
        self._version = -1

    def of(self, rloc: IPAddress) -> set[int | None] | None:
        """The xTR-IDs whose registrations list rloc (None: nobody's)."""
        return self._index().get(rloc)

    def hosts(self) -> set[str]:
        return {str(rloc) for rloc in self._index()}

    def _index(self) -> dict[IPAddress, set[int | None]]:
        version = self._registry()
        if version != self._version:
            owners: dict[IPAddress, set[int | None]] = {}
            for _, entry in self.ctx.ms.db.items():
                for reg in entry.children.values():
                    for loc in reg.record.locators:
                        if loc.rloc is not None:
                            owners.setdefault(loc.rloc, set()).add(reg.xtr_id)
            self._owners = owners
            self._version = version
        return self._owners

    def signed_by_owner(
        self, found: tuple[bytes, bytes], digest: bytes, rloc: IPAddress, now: float
    ) -> str:
        """Why the (certificate, signature) is not by the node that
        registered rloc ("" when it is)."""
        trust = self.ctx.trust
        assert trust is not None
        cert, why = trust.certificate_of(found[0], now)
        if why:
            return why
        assert cert is not None
        if not verify(cert.public_key, digest, found[1]):
            return "signature-invalid"
        if node_xtr_id(cert.public_key) not in (self.of(rloc) or ()):
            return "not-rloc-owner"
        return ""


class KeyAnswers:
    """Our side of other ITRs' exchanges: the keys their packets open with."""

    def __init__(self, ctx: Ctx, owners: RlocOwners) -> None:
        self.ctx = ctx
        self.owners = owners
        self.mode = ctx.config.encrypt
        self.max_peers = ctx.config.limits.max_keyed_peers
        #: Receiving keys by (peer RLOC, key-id); the data plane reads it.
        self.rx: dict[tuple[str, int], RxKey] = {}
        self._asks = Buckets[IPAddress](REQUEST_RATE, REQUEST_BURST, self.max_peers)
        self._retired: OrderedDict[bytes, None] = OrderedDict()

    def answer(
        self,
        req: MapRequest,
        record: MapRecord,
        src: Addr,
        local: Addr | None,
        now: float,
    ) -> MapRecord | None:
        """The probe reply's record for req: with our key in the RLOC-record
        of the probed RLOC, unchanged (no key: RFC 8061 6), or None: do not
        answer at all (an RLOC nobody registered, see the module doc)."""
        sk = next((k for k in map(find_security_key, req.itr_rlocs) if k), None)
        if sk is None:
            return record
        ctx = self.ctx
        out = ctx.out
        out.counters[C.KEYS_ASKED] += 1
        itr = sk.address
        if self.mode == "off" or sk.cipher_suite not in IV_LEN or not sk.keys:
            return record
        if not isinstance(itr, IPv4Address | IPv6Address):
            out.drop(src, "key-rloc-mismatch")
            return record
        # Strangers before the rate limit: spoofed ones must not take (and
        # so evict and refill) the buckets of the RLOCs we do answer.
        owners = self.owners.of(itr)
        if owners is None and ctx.config.pull is not None and itr == src[0]:
            # Pull mode: we hold only our sets' registrations, so the ITR's
            # may be elsewhere. It asks from that RLOC (a spoofed source
            # never sees the answer), and the rate limit bounds strangers.
            owners = {None}
        if owners is None:
            out.drop(src, "key-unknown-rloc")
            return None
        if itr != src[0] and not (owners & (self.owners.of(src[0]) or set())) - {None}:
            # A key for another's RLOC would let one member cut another off.
            # One of the sender's own other RLOCs is fine: a node sends its
            # control messages from its first RLOC's socket, also for keys
            # it makes from its second when the first has failed.
            out.drop(src, "key-rloc-mismatch")
            return record
        if not self._asks.take(itr, now):
            out.drop(src, "key-rate-limited")
            return None
        if ctx.trust is not None:
            why = self._check_request(req, sk, itr, now)
            if why:
                out.reject(src, "key-" + why)
                return record
        if any(key in self._retired for key in sk.keys):
            out.drop(src, "key-replayed")
            return None
        host = str(itr)
        if sk.revoke:
            # Not retired: a spoofed revoke (without node identities) is
            # undone by the ITR's next KeyCheck, which sends the key again.
            for key_id in range(1, 4):
                self.rx.pop((host, key_id), None)
            out.counters[C.KEYS_REVOKED] += 1
            return record
        ours = self._our_rloc(record, local, itr)
        if ours is None:
            return record
        etr_keys = self._receive_keys(host, sk, req.nonce, now)
        keyed = SecurityKey(sk.cipher_suite, etr_keys, ours)
        locators = tuple(
            replace(loc, address=keyed, probed=True) if loc.rloc == ours else loc
            for loc in record.locators
        )
        if ctx.trust is not None:
            digest = key_exchange_digest(
                True, req.nonce, sk.cipher_suite, sk.keys, etr_keys, ours
            )
            signature = sign(ctx.trust.private_key, digest)
            locators += (signature_locator(ctx.trust.certificate_bytes, signature),)
        out.counters[C.KEYS_ANSWERED] += 1
        return replace(record, locators=locators)

    def _check_request(
        self, req: MapRequest, sk: SecurityKey, itr: IPAddress, now: float
    ) -> str:
        try:
            found = find_address_signature(req.source_eid)
        except DecodeError:
            return "signature-malformed"
        if found is None:
            return "signature-missing"
        digest = key_exchange_digest(
            False, req.nonce, sk.cipher_suite, sk.keys, (), sk.address
        )
        return self.owners.signed_by_owner(found, digest, itr, now)

    def _our_rloc(
        self, record: MapRecord, local: Addr | None, itr: IPAddress
    ) -> IPAddress | None:
        cfg = self.ctx.config
        ours = local[0] if local is not None and local[0] in cfg.rlocs else None
        if ours is None:
            ours = cfg.rloc_for(itr.version)
        if ours is None or not any(loc.rloc == ours for loc in record.locators):
            return None
        return ours

    def _receive_keys(
        self, host: str, sk: SecurityKey, nonce: int, now: float
    ) -> tuple[bytes, ...]:
        """Our public key for each key-id the ITR sent: unchanged where its
        key is (no rekey, RFC 8061 10), else a new pair and a new key."""
        out: list[bytes] = []
        suite = sk.cipher_suite
        for key_id, itr_public in enumerate(sk.keys, 1):
            rx = self.rx.get((host, key_id))
            if rx is not None and rx.itr_public == itr_public and rx.suite == suite:
                out.append(rx.etr_public)
                continue
            private, public = keypair(self.ctx.out.secret())
            try:
                shared = shared_secret(private, itr_public)
            except BadPublicKey:
                out.append(b"")
                continue
            cipher = Cipher(suite, derive_key(shared, nonce, suite))
            self._bound(host)
            self._retire(rx)
            self.rx[(host, key_id)] = RxKey(suite, cipher, itr_public, public, now, now)
            out.append(public)
        return tuple(out)

    def _retire(self, rx: RxKey | None) -> None:
        if rx is None:
            return
        self._retired[rx.itr_public] = None
        while len(self._retired) > _RETIRED_PER_SLOT * 3 * self.max_peers:
            self._retired.popitem(last=False)

    def _bound(self, host: str) -> None:
        hosts = {h for h, _ in self.rx}
        if host in hosts or len(hosts) < self.max_peers:
            return
        oldest = min(self.rx.items(), key=lambda item: item[1].used)[0][0]
        for key_id in range(1, 4):
            self.rx.pop((oldest, key_id), None)

    def sweep(self, now: float, idle: float) -> None:
        """Forget receive keys unused for `idle` seconds, and those of RLOCs
        nobody registers any more."""
        registered = self.owners.hosts()
        for key, rx in list(self.rx.items()):
            if now - rx.used > idle or key[0] not in registered:
                del self.rx[key]
