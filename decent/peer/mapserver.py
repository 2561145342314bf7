"""Map-Server state: sites, registrations, merging (RFC 9301 8.2, RFC 8378 5)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from typing import TypeVar

from decent.peer.config import Addr, ChildKey, Limits, Site
from decent.peer.display import flags_text
from decent.peer.mapdb import MapDB
from decent.peer.replay import ReplayGuard, Slot
from decent.wire import (
    Eid,
    Locator,
    MapRecord,
    MapRegister,
    Rle,
    RleEntry,
    check_auth,
    encode_record,
    rle_entries,
)

K = TypeVar("K")


def _decrement(table: Counter[K], key: K) -> None:
    """Count one down, and forget the key at zero (len() counts holders)."""
    left = table[key] - 1
    if left:
        table[key] = left
    else:
        del table[key]


@dataclass(frozen=True, slots=True)
class RegisterIntent:
    """What a registrant asks of the Map-Server, whatever carried it: a UDP
    Map-Register today, a reliable-transport session's Registration message
    later. The store applies either the same way."""

    records: tuple[MapRecord, ...]
    xtr_id: int | None
    site_id: int
    proxy_reply: bool
    merge: bool
    #: The T bit: each record's lifetime is its TTL (RFC 9301 8.2), not
    #: the Map-Server's registration timeout.
    ttl_timeout: bool
    alg_id: int
    #: The p-s-I-t-r-m-n text the status pages show (see flags_text).
    flags: str
    #: The member that carried a plain xTR's registration on to us.
    via: IPv4Address | IPv6Address | None = None

    @classmethod
    def from_register(
        cls, msg: MapRegister, via: IPv4Address | IPv6Address | None = None
    ) -> RegisterIntent:
        return cls(
            msg.records,
            msg.xtr_id,
            msg.site_id,
            msg.proxy_reply,
            msg.merge,
            msg.ttl_timeout,
            msg.alg_id,
            flags_text(msg),
            via,
        )


@dataclass(slots=True)
class Registration:
    """One registrant's registration of an EID (a child, under merge semantics)."""

    record: MapRecord
    registrant: Addr
    xtr_id: int | None
    site_id: int
    first: float
    last: float
    expires: float
    #: The p-s-I-t-r-m-n text of the status pages (see flags_text).
    flags: str
    alg_id: int
    #: The Map-Register's T bit: the lifetime is the Record TTL (RFC 9301
    #: 8.2), not the Map-Server's timeout; kept as data for the snapshot.
    ttl_timeout: bool = False
    #: The member that carried this plain xTR's registration on to us.
    via: IPv4Address | IPv6Address | None = None


@dataclass(slots=True)
class SiteEntry:
    """What a Map-Server holds for one EID: its children and their effective union."""

    eid: Eid
    site: str
    merge: bool
    proxy_reply: bool
    children: dict[ChildKey, Registration]
    first_registered: float
    last_registered: float
    last_registerer: Addr
    record: MapRecord
    #: The record as a proxy Map-Reply carries it (A clear, RFC 9301 5.4),
    #: encoded once per change so replies only prepend a header and nonce.
    reply_record: bytes
    #: The registered entries more specific than this one (RFC 9301 5.5),
    #: cached until the set of registered EIDs changes (MapServer.generation).
    covered: list[SiteEntry] = field(default_factory=list)
    covered_generation: int = -1

    def members(self) -> list[IPv4Address | IPv6Address]:
        """RLE member addresses of a merged entry (the peer group)."""
        out: list[IPv4Address | IPv6Address] = []
        for loc in self.record.locators:
            for entry in rle_entries(loc):
                if isinstance(entry.address, IPv4Address | IPv6Address):
                    out.append(entry.address)
        return out


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of one record of a Map-Register, for the Node to act on."""

    eid: Eid
    child: ChildKey
    removed: bool
    new: bool
    #: The entry's effective locator set changed (members must be notified).
    changed: bool
    entry: SiteEntry | None
    #: Why the record was refused (a quota), or "" when it was applied.
    refused: str = ""


@dataclass(frozen=True, slots=True)
class HeldRegister:
    """An authenticated Map-Register refused for its nonce alone, held while
    its registrant is asked to confirm it (decent.peer.replay)."""

    msg: MapRegister
    raw: bytes
    eids: tuple[Eid, ...]
    site: Site


def _address_key(addr: object) -> tuple[int, bytes]:
    if isinstance(addr, IPv4Address | IPv6Address):
        return (addr.version, addr.packed)
    return (9, repr(addr).encode())


def merge_records(records: list[MapRecord]) -> MapRecord:
    """The union of several registrants' records (RFC 8378 5.1.3).

    RLE entries are merged into one RLE, without duplicates; other locators are
    merged by address. Sorted, so every Map-Server computes identical bytes.
    """
    first = records[0]
    rle: dict[tuple[int, bytes, str], RleEntry] = {}
    rle_template: Locator | None = None
    plain: dict[tuple[int, bytes], Locator] = {}
    for rec in records:
        for loc in rec.locators:
            entries = rle_entries(loc)
            if entries or isinstance(loc.address, Rle):
                rle_template = rle_template or loc
                for e in entries:
                    name = e.name.name if e.name else ""
                    rle[(*_address_key(e.address), name)] = e
            else:
                plain.setdefault(_address_key(loc.address), loc)
    locators = [plain[k] for k in sorted(plain)]
    if rle_template is not None:
        merged = Rle(tuple(rle[k] for k in sorted(rle)))
        locators.append(replace(rle_template, address=merged))
    ttl = min(r.ttl for r in records)
    return replace(first, locators=tuple(locators), ttl=ttl)


def proxy_record(record: MapRecord) -> MapRecord:
    """A registered record as a proxy Map-Reply carries it: RFC 9301 5.4,
    a Map-Server answering for an ETR clears the A bit, and the L bit of
    every locator (they are local to the ETR, not to us)."""
    if not record.authoritative and not any(loc.local for loc in record.locators):
        return record
    locators = tuple(
        replace(loc, local=False) if loc.local else loc for loc in record.locators
    )
    return replace(record, authoritative=False, locators=locators)


class MapServer:
    """Registration state of the sites this node serves (no I/O, no timers)."""

    def __init__(
        self,
        sites: tuple[Site, ...],
        registration_timeout: float,
        limits: Limits | None = None,
    ) -> None:
        self.sites = sites
        self.registration_timeout = registration_timeout
        self.limits = limits = limits or Limits()
        self.db: MapDB[SiteEntry] = MapDB()
        #: Bumped whenever an EID is added to or removed from db.
        self.generation = 0
        self._by_name = {site.name: site for site in sites}
        #: Every configured IP prefix: EID space even while nothing in it is
        #: registered, so no negative Map-Reply for a non-EID may cover it.
        self.configured_db: MapDB[Site] = MapDB()
        for site in sites:
            for allowed in site.allowed:
                if not allowed.eid.is_name:
                    self.configured_db.insert(allowed.eid, site)
        self.replay: ReplayGuard[HeldRegister] = ReplayGuard(
            window=limits.nonce_window,
            retention=limits.nonce_retention,
            max_slots=limits.max_nonce_marks,
            max_challenges=limits.max_challenges,
            challenge_timeout=limits.challenge_timeout,
        )
        #: The highest nonce accepted per (site, registrant identity, key
        #: ID): RFC 9301 5.6's state, which snapshots keep (replay.py).
        self.nonces = self.replay.ceilings
        #: Registrations held: in all, per registrant identity, per source.
        self.held = 0
        self.held_by: Counter[ChildKey] = Counter()
        self.held_from: Counter[IPv4Address | IPv6Address] = Counter()

    def site_for(self, eid: Eid) -> Site | None:
        """The site whose most specific allowed prefix covers eid."""
        best: Site | None = None
        best_len = -1
        for site in self.sites:
            for allowed in site.allowed:
                if allowed.specificity > best_len and allowed.allows(eid):
                    best, best_len = site, allowed.specificity
        return best

    def _site_of(self, eid: Eid) -> Site | None:
        """site_for(eid), from the entry when eid is registered: sites are
        fixed, so it is the site the entry was created under, and a lookup
        is far cheaper than the scan on every periodic re-registration."""
        entry = self.db.get(eid)
        if entry is not None:
            return self._by_name[entry.site]
        return self.site_for(eid)

    def configured(self, eid: Eid) -> Eid | None:
        """The configured (allowed) prefix that covers eid, if any. A name a
        site may register is its own configured prefix."""
        best: Eid | None = None
        best_len = -1
        for site in self.sites:
            for allowed in site.allowed:
                if not allowed.allows(eid):
                    continue
                if eid.is_name:
                    return eid
                if allowed.specificity > best_len:
                    best, best_len = allowed.eid, allowed.specificity
        return best

    def authorize(
        self, msg: MapRegister, raw: bytes, eids: list[Eid]
    ) -> tuple[Site | None, str]:
        """Check site ownership and authentication; say why not.

        Changes nothing: the nonce (`replay`) is checked by the caller once
        this passes, so a forged Map-Register cannot move it.
        """
        if not eids:
            return None, "no-records"
        site = self._site_of(eids[0])
        if site is None:
            return None, "no-site"
        for eid in eids[1:]:
            if self._site_of(eid) is not site:
                return None, "foreign-prefix"
        if msg.alg_id == 0:
            if not site.allow_unauthenticated:
                return None, "auth-required"
        elif msg.alg_id not in site.algorithms:
            return None, "algorithm-refused"
        else:
            key = site.key(msg.key_id)
            if key is None:
                return None, "unknown-key-id"
            if not check_auth(raw, key):
                return None, "auth-failed"
        return site, ""

    @staticmethod
    def slot(site: Site, msg: MapRegister, src: Addr) -> Slot:
        """The replay slot of a Map-Register (RFC 9301 5.6: per xTR-ID and key)."""
        who: ChildKey = msg.xtr_id if msg.xtr_id is not None else src[0]
        return (site.name, who, msg.key_id)

    def holds(self, slot: Slot) -> bool:
        """Whether the registrant of a replay slot holds any registration."""
        return slot[1] in self.held_by

    def _quota(self, key: ChildKey, src: Addr) -> str:
        """Why a registrant may not add one more registration ("" if it may)."""
        limits = self.limits
        if self.held >= limits.max_registrations:
            return "registration-limit"
        held = self.held_by.get(key, 0)
        if held == 0 and len(self.held_by) >= limits.max_registrants:
            return "registrant-limit"
        if held >= limits.registrant_eids:
            return "registrant-quota"
        if self.held_from.get(src[0], 0) >= limits.registrant_eids:
            return "source-quota"
        return ""

    def _put(self, entry: SiteEntry, key: ChildKey, child: Registration) -> None:
        old = entry.children.get(key)
        if old is not None:
            self._uncount(key, old)
        entry.children[key] = child
        self.held += 1
        self.held_by[key] += 1
        self.held_from[child.registrant[0]] += 1

    def _pop(self, entry: SiteEntry, key: ChildKey) -> None:
        self._uncount(key, entry.children.pop(key))

    def _uncount(self, key: ChildKey, child: Registration) -> None:
        self.held -= 1
        _decrement(self.held_by, key)
        _decrement(self.held_from, child.registrant[0])

    def apply(
        self,
        msg: RegisterIntent,
        eids: list[Eid],
        site: Site,
        src: Addr,
        now: float,
    ) -> list[Change]:
        """Store an authorized registration's records; report what changed.

        A record that would take the registrant (or its source) over its
        quota is refused, alone: its refreshes and removals still apply."""
        child_key: ChildKey = msg.xtr_id if msg.xtr_id is not None else src[0]
        changes = []
        for rec, eid in zip(msg.records, eids, strict=True):
            entry = self.db.get(eid)
            # RFC 8378 5.1.3: an entry with merge semantics keeps one child per
            # registrant, and (S,G) entries always have them. A registrant that
            # leaves the merge bit out still replaces only its own child, or
            # one Map-Register could wipe every member's.
            merged = (
                msg.merge
                or eid.group is not None
                or (entry is not None and entry.merge)
            )
            if rec.ttl == 0:
                changes.append(self._remove(eid, entry, child_key, merged))
                continue
            old = entry.children.get(child_key) if entry else None
            if old is None:
                refused = self._quota(child_key, src)
                if refused:
                    changes.append(
                        Change(eid, child_key, False, False, False, None, refused)
                    )
                    continue
            # A registration a reliable-transport session holds (no timeout)
            # stays held: a UDP Map-Register sent before the session came up
            # may arrive after it, and must not give it a lifetime back.
            held = old is not None and old.expires == math.inf
            expires = math.inf if held else now + self.lifetime(rec, msg.ttl_timeout)
            child = Registration(
                rec,
                src,
                msg.xtr_id,
                msg.site_id,
                old.first if old else now,
                now,
                expires,
                msg.flags,
                msg.alg_id,
                msg.ttl_timeout,
                msg.via,
            )
            proxy = msg.proxy_reply or site.force_proxy_reply
            if entry is None:
                entry = SiteEntry(
                    eid, site.name, merged, proxy, {}, now, now, src, rec, b""
                )
                self._put(entry, child_key, child)
                self.db.insert(eid, entry)
                self.generation += 1
                self._refresh(entry)
                changes.append(Change(eid, child_key, False, True, True, entry))
                continue
            if not merged:
                for other in [k for k in entry.children if k != child_key]:
                    self._pop(entry, other)
            self._put(entry, child_key, child)
            entry.merge, entry.proxy_reply = merged, proxy
            entry.last_registered, entry.last_registerer = now, src
            changed = self._refresh(entry)
            changes.append(Change(eid, child_key, False, old is None, changed, entry))
        return changes

    def expire(self, eid: Eid, child_key: ChildKey, now: float) -> Change | None:
        """Drop one child whose lifetime ended at `now` (if it did not renew)."""
        entry = self.db.get(eid)
        if entry is None:
            return None
        child = entry.children.get(child_key)
        if child is None or child.expires > now:
            return None
        return self._remove(eid, entry, child_key, True)

    def drop(self, child_key: ChildKey) -> list[Change]:
        """Remove every registration of one registrant (a revoked node)."""
        held = [
            (eid, entry)
            for eid, entry in self.db.items()
            if child_key in entry.children
        ]
        return [self._remove(eid, entry, child_key, True) for eid, entry in held]

    def _remove(
        self, eid: Eid, entry: SiteEntry | None, child_key: ChildKey, merge: bool
    ) -> Change:
        if entry is None or (merge and child_key not in entry.children):
            return Change(eid, child_key, True, False, False, None)
        if merge:
            self._pop(entry, child_key)
        else:
            for key in list(entry.children):
                self._pop(entry, key)
        if not entry.children:
            self.db.remove(eid)
            self.generation += 1
            return Change(eid, child_key, True, False, True, None)
        return Change(eid, child_key, True, False, self._refresh(entry), entry)

    def lifetime(self, record: MapRecord, ttl_timeout: bool) -> float:
        """The longest a registration lives: its Record TTL with the T bit
        (RFC 9301 8.2), else our registration timeout."""
        return record.ttl * 60.0 if ttl_timeout else self.registration_timeout

    def restore(
        self,
        eid: Eid,
        site: str,
        merge: bool,
        proxy: bool,
        children: list[Registration],
    ) -> SiteEntry | None:
        """Reinstate an entry saved before a restart (children still alive),
        if the site configured now still owns eid; within today's quotas."""
        owner = self.site_for(eid)
        if not children or owner is None or owner.name != site or eid in self.db:
            return None
        last = max(children, key=lambda c: c.last)
        entry = SiteEntry(
            eid,
            site,
            merge or eid.group is not None,
            proxy,
            {},
            min(c.first for c in children),
            last.last,
            last.registrant,
            last.record,
            b"",
        )
        for child in children:
            key = child.xtr_id if child.xtr_id is not None else child.registrant[0]
            if key not in entry.children and not self._quota(key, child.registrant):
                self._put(entry, key, child)
        if not entry.children:
            return None
        self._refresh(entry)
        self.db.insert(eid, entry)
        self.generation += 1
        return entry

    def more_specifics(self, entry: SiteEntry) -> list[SiteEntry]:
        """Registered entries inside entry's prefix, looked up once per change
        of the registered set rather than once per Map-Request."""
        if entry.covered_generation != self.generation:
            entry.covered = [e for _, e in self.db.covered(entry.eid)]
            entry.covered_generation = self.generation
        return entry.covered

    def _refresh(self, entry: SiteEntry) -> bool:
        """Recompute the effective record; True when its locators changed."""
        children = sorted(entry.children.values(), key=lambda c: c.first)
        records = [c.record for c in children]
        record = merge_records(records) if entry.merge else records[-1]
        changed = not entry.reply_record or record.locators != entry.record.locators
        # A periodic re-registration usually repeats the record: keep its
        # encoding then, as reply_record is a function of record alone.
        if changed or record != entry.record:
            entry.reply_record = encode_record(proxy_record(record))
        entry.record = record
        return changed


__all__ = [
    "Change",
    "HeldRegister",
    "MapServer",
    "RegisterIntent",
    "Registration",
    "SiteEntry",
    "merge_records",
    "proxy_record",
]
