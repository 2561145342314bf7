"""Node identities in the core: registrations signed and judged, revocations kept.

A member's certificate (decent.wire.trust) is signed by the mesh authority
and names the node, its key and the EID-prefixes it may register. Every
group registration carries the signer's certificate and a signature over
its nonce, xTR-ID and records (locators and TTLs included), so a captured
one cannot be replayed with other RLOCs. The group's HMAC key still guards
the door (RFC 9301); the certificate decides what a member may register.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from decent.peer.config import TrustConfig
from decent.peer.mapdb import MapDB
from decent.peer.mapserver import SiteEntry
from decent.wire import (
    DecodeError,
    DistinguishedName,
    Eid,
    IPAddress,
    MapRecord,
    rle_entries,
)
from decent.wire.trust import (
    REVOKED_PREFIX,
    Certificate,
    Revocation,
    find_revocation,
    find_signature,
    node_xtr_id,
    register_digest,
    revocation_locator,
    revocation_name,
    sign,
    signature_locator,
    verify,
    without_signature,
)

#: Certificates verified once and kept (by fingerprint): a member re-sends
#: its certificate with every registration, and its mesh signature need not
#: be checked each time.
CERTIFICATE_CACHE: Final = 1024


def revocation_eid(rev: Revocation, iid: int) -> Eid:
    """The name EID a revocation travels under, one per certificate."""
    return Eid.name(revocation_name(rev.serial), iid)


@dataclass(frozen=True, slots=True)
class Judgement:
    """What a signed registration may do: its records without signatures,
    the certificate that signed it, and why not ("" when it may)."""

    records: tuple[MapRecord, ...]
    certificate: Certificate | None
    reason: str = ""
    #: The mesh-signed revocations it carries, verified.
    revocations: tuple[Revocation, ...] = ()


def _is_default(eid: Eid) -> bool:
    return eid.group is None and not eid.is_name and eid.mask_len == 0


class Trust:
    """The mesh authority's key, our certificate and key, the certificates
    seen and the revocations known."""

    def __init__(self, config: TrustConfig, max_revocations: int) -> None:
        self.mesh_key = config.mesh_public_key
        self.private_key = config.node_private_key
        self.certificate = Certificate.decode(config.certificate)
        self.certificate_bytes = config.certificate
        #: Unix time at the node clock's zero: certificates expire in Unix time.
        self.epoch = config.epoch
        self.max_revocations = max_revocations
        self._certificates: OrderedDict[bytes, Certificate] = OrderedDict()
        #: Revoked node keys, with the revocation (kept until it expires).
        self.revoked: dict[bytes, Revocation] = {}

    # ------------------------------------------------------------ signing
    def sign(
        self, nonce: int, xtr_id: int | None, site_id: int, records: Sequence[MapRecord]
    ) -> tuple[MapRecord, ...]:
        """records with our signature locator added to the first."""
        digest = register_digest(nonce, xtr_id, site_id, records)
        locator = signature_locator(
            self.certificate_bytes, sign(self.private_key, digest)
        )
        first = dataclasses.replace(
            records[0], locators=(*records[0].locators, locator)
        )
        return (first, *records[1:])

    # ------------------------------------------------------------ judging
    def certificate_of(self, data: bytes, now: float) -> tuple[Certificate | None, str]:
        try:
            cert = Certificate.decode(data)
        except DecodeError:
            return None, "certificate-malformed"
        key = cert.fingerprint()
        known = self._certificates.get(key)
        if known is None:
            if not cert.verify(self.mesh_key):
                return None, "certificate-forged"
            self._certificates[key] = known = cert
            if len(self._certificates) > CERTIFICATE_CACHE:
                self._certificates.popitem(last=False)
        else:
            self._certificates.move_to_end(key)
        if known.not_after <= self.epoch + now:
            return known, "certificate-expired"
        if known.public_key in self.revoked:
            return known, "certificate-revoked"
        return known, ""

    def judge(
        self,
        nonce: int,
        xtr_id: int | None,
        site_id: int,
        records: tuple[MapRecord, ...],
        eids: Sequence[Eid],
        source: IPAddress,
        holders: MapDB[SiteEntry],
        now: float,
    ) -> Judgement:
        """Check a group registration: signed by a certificate of this mesh,
        bound to its xTR-ID, and for EIDs the certificate grants."""
        try:
            found = find_signature(records[0]) if records else None
        except DecodeError:
            return Judgement(records, None, "signature-malformed")
        if found is None:
            return Judgement(records, None, "signature-missing")
        cert_bytes, signature = found
        cert, reason = self.certificate_of(cert_bytes, now)
        plain = tuple(without_signature(r) for r in records)
        if reason:
            return Judgement(plain, cert, reason)
        assert cert is not None
        if xtr_id != node_xtr_id(cert.public_key):
            return Judgement(plain, cert, "certificate-other-key")
        digest = register_digest(nonce, xtr_id, site_id, plain)
        if not verify(cert.public_key, digest, signature):
            return Judgement(plain, cert, "signature-invalid")
        revocations = []
        for rec, eid in zip(plain, eids, strict=True):
            why, rev = self._owns(cert, xtr_id, rec, eid, source, holders)
            if why:
                return Judgement(plain, cert, why)
            if rev is not None:
                revocations.append(rev)
        return Judgement(plain, cert, "", tuple(revocations))

    def _owns(
        self,
        cert: Certificate,
        xtr_id: int,
        rec: MapRecord,
        eid: Eid,
        source: IPAddress,
        holders: MapDB[SiteEntry],
    ) -> tuple[str, Revocation | None]:
        """Why cert may not register rec ("" if it may), and the revocation
        it carries, if it is one."""
        if eid.is_name:
            assert isinstance(eid.address, DistinguishedName)
            name = eid.address.name
            if name.startswith(REVOKED_PREFIX):
                return self._revocation(rec, eid)
            return ("" if name == cert.name else "hijack-name"), None
        if (
            eid.group is not None
            and eid.mask_len == 0
            and eid.group_mask_len in (32, 128)
        ):
            # The group's membership (0/0, G): any member may join, but only
            # as itself: its RLE may name no address but its own source.
            for loc in rec.locators:
                for entry in rle_entries(loc):
                    if entry.address != source:
                        return "hijack-membership", None
            return "", None
        if eid in cert.eids:
            return "", None  # granted by name: an exit node, a PETR, a shared prefix
        if _is_default(eid) or not any(
            g.contains(eid) for g in cert.eids if g.iid == eid.iid
        ):
            return "hijack-not-granted", None
        # Granted only inside a wider prefix: not where another registrant
        # already holds an overlapping one (it would take its traffic).
        hit = holders.lookup(eid)
        covering = [] if hit is None else [hit[1]]
        overlapping = [*covering, *(e for _, e in holders.covered(eid))]
        if any(set(e.children) - {xtr_id} for e in overlapping):
            return "hijack-overlap", None
        return "", None

    def _revocation(self, rec: MapRecord, eid: Eid) -> tuple[str, Revocation | None]:
        try:
            rev = find_revocation(rec)
        except DecodeError:
            return "revocation-malformed", None
        if rev is None or eid != revocation_eid(rev, eid.iid):
            return "revocation-malformed", None
        why = self.verify_revocation(rev)
        return why, None if why else rev

    # ------------------------------------------------------------ revocations
    def revoke(self, rev: Revocation, now: float) -> bool:
        """Keep a verified revocation; False if known, expired or no room."""
        if rev.public_key in self.revoked or rev.not_after <= self.epoch + now:
            return False
        if len(self.revoked) >= self.max_revocations:
            return False
        self.revoked[rev.public_key] = rev
        return True

    def verify_revocation(self, rev: Revocation) -> str:
        """Why a revocation is not this mesh authority's ("" if it is)."""
        if rev.mesh != self.certificate.mesh or not rev.verify(self.mesh_key):
            return "revocation-forged"
        return ""

    def expire(self, now: float) -> list[Revocation]:
        """Forget revocations whose certificates have expired anyway."""
        gone = [r for r in self.revoked.values() if r.not_after <= self.epoch + now]
        for rev in gone:
            del self.revoked[rev.public_key]
        return gone

    def revocation_record(self, rev: Revocation, iid: int, ttl: int) -> MapRecord:
        eid = revocation_eid(rev, iid)
        addr, mask = eid.to_wire()
        return MapRecord(
            addr, mask, (revocation_locator(rev),), ttl, authoritative=True
        )

    def sizes(self) -> dict[str, int]:
        return {
            "certificates": len(self._certificates),
            "revocations": len(self.revoked),
        }
