"""The Map-Resolver role: Map-Requests in, Map-Replies or forwarded ECMs out.

It answers from our own database and from the registrations our
Map-Server holds (every registration of the group, in push mode), with
every more-specific under the best match, within one datagram and a
bounded multiple of what the requester sent; it forwards to the ETR when
a registration asked for no proxy reply; it answers RLOC-probes for our
EIDs; and it rate-limits all of it.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.peer import counters as C
from decent.peer.config import Addr, DatabaseMapping
from decent.peer.context import Ctx, ItrNotes, KeyAnswers, Members
from decent.peer.mapping.pullhash import LISPERS, lookup_eid
from decent.peer.mapserver import SiteEntry, proxy_record
from decent.peer.ratelimit import Bucket, Buckets
from decent.wire import (
    Action,
    Eid,
    EncapsulatedControlMessage,
    InstanceId,
    IPAddress,
    MapRecord,
    MapRequest,
    RequestRecord,
    SecurityKey,
    encode_record,
    map_reply_bytes,
)


class MapResolverRole:
    """Answers Map-Requests for the whole mapping system we hold."""

    def __init__(self, ctx: Ctx, members: Members, notes: ItrNotes, now: float) -> None:
        self.ctx = ctx
        self.members = members
        self.notes = notes
        #: Adds our RFC 8061 key to the answer of a keyed probe.
        self.keys: KeyAnswers | None = None
        config, limits = ctx.config, ctx.config.limits
        self._reply_buckets: Buckets[IPAddress] = Buckets(
            config.map_reply_rate, config.map_reply_burst, limits.reply_buckets
        )
        #: RFC 9301 5.4's per-destination limit alone lets a requester spread
        #: spoofed requests over many victims: this bounds the sum, in bytes.
        self._reply_bytes_out = Bucket(
            limits.reply_global_rate, limits.reply_global_burst, now
        )

    def on_request(
        self,
        req: MapRequest,
        src: Addr,
        now: float,
        ecm: EncapsulatedControlMessage | None,
        local: Addr | None,
        size: int,
    ) -> None:
        """Answer a Map-Request (`size` bytes as it arrived).

        RFC 9301 5.5 wants the best match and every more-specific under it
        in one Map-Reply; RFC 9301 5 wants one datagram within the path MTU,
        and a spoofed requester must not get more bytes sent to its victim
        than a bounded multiple of what it sent itself (Limits). When the
        whole answer does not fit, each best match is narrowed instead to
        the largest prefix around the query that holds no more-specific
        (MapDB.free_block): smaller, but never wrong."""
        target = self._reply_target(req, src, ecm)
        if target is None:
            self.ctx.out.drop(src, "no-itr-rloc")
            return
        if req.probe:
            if ecm is not None:  # RFC 9301 5.8: RLOC-probes are never ECM'd
                self.ctx.out.drop(src, "probe-in-ecm")
                return
            eid = Eid.from_wire(req.records[0].eid, req.records[0].mask_len)
            hit = self.ctx.database.lookup(eid) or self._relayed(eid)
            if hit is None:  # C8: an MR/MS MUST drop probes not for its EIDs
                self.ctx.out.drop(src, "probe-not-for-us")
                return
            record = self._database_record(hit[1], local)
            if self.keys is not None:
                keyed = self.keys.answer(req, record, src, local, now)
                if keyed is None:  # counted by the key role
                    return
                record = keyed
            self._reply(req.nonce, [encode_record(record)], target, now, size, True)
            return
        records: list[bytes] = []
        wide: list[_Wide] = []
        ms_db = self.ctx.ms.db
        for rec in req.records:
            # A host query (the common case) is matched on its integer; the
            # Eid is built only when the answer needs it.
            host = _host_key(rec.eid, rec.mask_len)
            query: Eid | None = None
            if host is None:
                query = Eid.from_wire(rec.eid, rec.mask_len)
                own = self.ctx.database.lookup(query)
                reg = ms_db.lookup(query)
            else:
                own = self.ctx.database.lookup_host(*host)
                reg = ms_db.lookup_host(*host)
            if own is not None:
                self.notes.note_itr(own[0], target[0], now)
                # The Map-Server's entry wins when it is at least as specific:
                # it holds what every registrant sent (a merged group entry
                # lists all members, our own database only us). The ETR
                # answers what was forwarded to it, or what no one registered.
                if (
                    (ecm is not None and ecm.to_etr)
                    or reg is None
                    or own[0].mask_len > reg[0].mask_len
                ):
                    records.append(encode_record(self._database_record(own[1], None)))
                    continue
            if reg is not None and not reg[1].proxy_reply and len(req.records) == 1:
                self._forward_to_etr(req, reg[1], src, ecm)
                return
            if reg is not None:
                # RFC 9301 5.5: with the best match, every more-specific under
                # it, so the ITR does not cache a too-broad mapping (a host
                # match has none).
                records.append(reg[1].reply_record)
                if host is None or reg[0].mask_len != rec.mask_len:
                    more = self.ctx.ms.more_specifics(reg[1])
                    if more:
                        point = _query_point(rec, host)
                        wide.append((len(records) - 1, len(more), point))
                        records.extend(e.reply_record for e in more)
            else:
                query = query or Eid.from_wire(rec.eid, rec.mask_len)
                records.append(self._negative_record(query))
        if wide and not self._fits(records, target, size):
            narrowed = self._narrowed(records, wide)
            if narrowed is not None:
                self.ctx.out.counters[C.REPLY_NARROWED] += 1
                records = narrowed
        self._reply(req.nonce, records, target, now, size)

    def _narrowed(self, records: list[bytes], wide: list[_Wide]) -> list[bytes] | None:
        """`records` with each best match that lists more-specifics replaced
        by one record for the largest prefix around the query holding none.
        None when a query is a name or an (S,G) EID (nothing to narrow)."""
        out: list[bytes] = []
        done = 0
        db = self.ctx.ms.db
        for index, count, point in wide:
            if point is None:
                return None
            hit = db.lookup(point)
            block = None if hit is None else db.free_block(point, hit[0])
            if hit is None or block is None:
                return None
            addr, mask = block.to_wire()
            record = dataclasses.replace(
                proxy_record(hit[1].record), eid=addr, mask_len=mask
            )
            out.extend(records[done:index])
            out.append(encode_record(record))
            done = index + 1 + count
        out.extend(records[done:])
        return out

    def _fits(self, records: list[bytes], target: Addr, size: int) -> bool:
        """Whether a Map-Reply of these records may go to target: one byte
        counts the records, one datagram carries them, and a requester that
        is not a member gets at most `reply_amplification` times its own
        Map-Request (it may have spoofed its victim's address)."""
        if len(records) > 255:
            return False
        limits = self.ctx.config.limits
        total = 12 + sum(map(len, records))
        headers = 28 if target[0].version == 4 else 48
        if total > limits.underlay_mtu - headers:
            return False
        return (
            total <= limits.reply_amplification * size
            or target[0] in self.members.membership()
        )

    def _reply(
        self,
        nonce: int,
        records: list[bytes],
        target: Addr,
        now: float,
        size: int,
        probe: bool = False,
    ) -> None:
        if not self._fits(records, target, size):
            self.ctx.out.drop(target, "reply-too-large")
            return
        data = map_reply_bytes(nonce, records, probe)
        if self._rate_limited(target, now, len(data)):
            return
        self.ctx.out.send(data, target, "map-reply")

    def _reply_target(
        self, req: MapRequest, src: Addr, ecm: EncapsulatedControlMessage | None
    ) -> Addr | None:
        """The ITR-RLOC to answer (RFC 9301 5.3: a routable RLOC of the
        requester), preferring the family the request came in on."""
        port = ecm.inner_sport if ecm is not None else src[1]
        version = src[0].version
        first = None
        for item in req.itr_rlocs:
            # RFC 8061 6: a keyed request's ITR-RLOC is a Security Key LCAF.
            rloc = item.address if isinstance(item, SecurityKey) else item
            if isinstance(rloc, _IP_TYPES):
                if rloc.version == version:
                    return (rloc, port)
                if first is None:
                    first = rloc
        return None if first is None else (first, port)

    def _rate_limited(self, target: Addr, now: float, size: int) -> bool:
        """RFC 9301 5.4: Map-Replies MUST be rate-limited. A token bucket per
        destination RLOC bounds what one victim of spoofed requests gets;
        a byte budget over all destinations bounds the sum."""
        if not self._reply_buckets.take(target[0], now):
            self.ctx.out.drop(target, "rate-limited")
            return True
        if not self._reply_bytes_out.take(now, size):
            self.ctx.out.drop(target, "global-rate-limited")
            return True
        return False

    def _relayed(self, eid: Eid) -> tuple[Eid, DatabaseMapping] | None:
        """A mapping we are a locator of without holding it: a member's
        behind NAT, registered with us, its relay, at a usable priority. Its
        relay answers its RLOC-probes (the relay is what an ITR reaches)."""
        hit = self.ctx.ms.db.lookup(eid)
        if hit is None:
            return None
        rec = hit[1].record
        if not any(
            self.ctx.own(loc.rloc) and loc.priority < 255 for loc in rec.locators
        ):
            return None
        return hit[0], DatabaseMapping(hit[0], rec.locators, rec.ttl)

    def _database_record(
        self, mapping: DatabaseMapping, local: Addr | None
    ) -> MapRecord:
        locators = mapping.locators
        if local is not None:
            # RFC 9301 5.4: the p bit marks the locator the probe arrived on.
            locators = tuple(
                dataclasses.replace(loc, probed=True)
                if loc.address == local[0]
                else loc
                for loc in locators
            )
        addr, mask = mapping.eid.to_wire()
        return MapRecord(addr, mask, locators, mapping.ttl, authoritative=True)

    def negative_answer(self, eid: Eid) -> tuple[Eid, int, Action]:
        """The Map-Resolver's negative answer for an unregistered eid: the
        least-specific prefix covering it and no registered prefix, its TTL
        in minutes, and the action (RFC 9301 8.3/8.4)."""
        configured = self.ctx.ms.configured(eid)
        if configured is not None:
            within = self._answerable(eid, configured)
            prefix = self.ctx.ms.db.uncovered_prefix(eid, within=within) or eid
            return (
                prefix,
                self.ctx.config.negative_ttl_unregistered,
                Action.SEND_MAP_REQUEST,
            )
        # Not an EID: the least-specific prefix that covers no known
        # EID-prefix (RFC 9301 8.4). Configured site prefixes are EID space
        # even while nothing in them is registered, and registrations lie
        # inside them, so the configured prefixes alone decide.
        prefix = self.ctx.ms.configured_db.uncovered_prefix(eid) or eid
        return prefix, self.ctx.config.negative_ttl_unknown, Action.NATIVELY_FORWARD

    def _answerable(self, eid: Eid, configured: Eid) -> Eid:
        """The most a negative answer about eid may cover. A pull-mode
        Map-Server holds only what hashes to its sets (RFC 9962 5.1), so
        its answer covers only what hashes as eid does: the EID as looked
        up (its lookup-length block, 5.2). Said of a wider prefix, an ITR
        would cache every other set's EIDs as unregistered."""
        pull = self.ctx.config.pull
        if pull is None:
            return configured
        scope = eid if pull.hash == LISPERS else lookup_eid(eid, pull.lookup_lengths)
        return configured if configured.mask_len > scope.mask_len else scope

    def _negative_record(self, eid: Eid) -> bytes:
        prefix, ttl, action = self.negative_answer(eid)
        addr, mask = prefix.to_wire()
        return encode_record(MapRecord(addr, mask, (), ttl, action))

    def _forward_to_etr(
        self,
        req: MapRequest,
        entry: SiteEntry,
        src: Addr,
        ecm: EncapsulatedControlMessage | None,
    ) -> None:
        """RFC 9301 8.3: without proxy-reply, the unchanged Map-Request goes to
        one registered ETR in an ECM, and that ETR answers the ITR directly.
        An RLOC the ETR marked unreachable (R clear) or unusable (priority
        255) is the last choice (RFC 9301 5.4)."""
        etrs = [loc for loc in entry.record.locators if loc.rloc is not None]
        if not etrs:
            self.ctx.out.drop(src, "no-etr-rloc")
            return
        best = min(etrs, key=lambda loc: not loc.reachable or loc.priority == 255)
        etr = best.rloc
        assert etr is not None
        inner_src = ecm.inner_src if ecm is not None else src[0]
        inner_dst = ecm.inner_dst if ecm is not None else etr
        if inner_src.version != inner_dst.version:
            inner_dst = inner_src
        out = EncapsulatedControlMessage(
            req,
            inner_src,
            inner_dst,
            ecm.inner_sport if ecm is not None else src[1],
            self.ctx.config.control_port,
            to_etr=True,
        )
        self.ctx.out.send(out.encode(), (etr, self.ctx.config.control_port), "ecm")

    def sweep(self, now: float) -> None:
        self._reply_buckets.prune(now)

    def sizes(self) -> dict[str, int]:
        return {"reply_buckets": len(self._reply_buckets)}


_IP_TYPES: Final = (IPv4Address, IPv6Address)


def _host_key(addr: object, mask_len: int) -> tuple[int, int, int] | None:
    """(iid, version, address) of a full-length IP EID-record, for
    `MapDB.lookup_host`; None for prefixes, names and the rest."""
    iid = 0
    if isinstance(addr, InstanceId):
        iid, addr = addr.iid, addr.address
    if isinstance(addr, _IP_TYPES) and mask_len == addr.max_prefixlen:
        return iid, addr.version, int(addr)
    return None


#: An answer listing more-specifics: where its best match sits in the
#: records, how many more-specifics follow it, and the unicast address to
#: narrow around (None: a name or (S,G) query, which cannot be narrowed).
_Wide = tuple[int, int, Eid | None]


def _query_point(rec: RequestRecord, host: tuple[int, int, int] | None) -> Eid | None:
    """The unicast host a query is about: itself, or a prefix's first address."""
    if host is not None:
        iid, version, addr = host
        ip = IPv4Address(addr) if version == 4 else IPv6Address(addr)
        return Eid(iid, ip, ip.max_prefixlen)
    query = Eid.from_wire(rec.eid, rec.mask_len)
    if query.is_name or query.group is not None:
        return None
    assert isinstance(query.address, IPv4Address | IPv6Address)
    return Eid(query.iid, query.address, query.address.max_prefixlen)
