"""The mapping database: longest-prefix match over EIDs (RFC 9301 5.5, 8.4)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Generic, TypeVar

from decent.wire.afi import DistinguishedName
from decent.wire.eid import Eid

__all__ = ["MapDB"]

T = TypeVar("T")
V = TypeVar("V")

_Key = tuple[int, int]  # (instance ID, IP version)
_SortKey = tuple[int, int, int, int, int, int, str]


class _Table(Generic[T]):
    """The prefixes of one instance ID and address family.

    A dict per populated mask length, keyed by the prefix bits shifted down,
    answers exact and longest-prefix queries. A sorted multiset of prefix
    start addresses answers "which stored prefixes lie in this block".
    """

    __slots__ = ("bits", "by_len", "probe", "starts")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.by_len: dict[int, dict[int, T]] = {}
        # (shift, dict.get) per populated length, longest first: the probe
        # order of a longest match, kept sorted here so lookups never sort.
        self.probe: list[tuple[int, Callable[[int], T | None]]] = []
        self.starts: list[int] = []

    def get(self, start: int, mask: int) -> T | None:
        d = self.by_len.get(mask)
        return None if d is None else d.get(start >> (self.bits - mask))

    def put(self, start: int, mask: int, value: T) -> bool:
        """Store value under start/mask; True when the prefix is new."""
        shift = self.bits - mask
        d = self.by_len.get(mask)
        if d is None:
            d = self.by_len[mask] = {}
            self.probe.append((shift, d.get))
            self.probe.sort(key=lambda p: p[0])
        key = start >> shift
        new = key not in d
        d[key] = value
        if new:
            insort(self.starts, start)
        return new

    def pop(self, start: int, mask: int) -> T | None:
        shift = self.bits - mask
        d = self.by_len.get(mask)
        value = None if d is None else d.pop(start >> shift, None)
        if d is None or value is None:
            return None
        del self.starts[bisect_left(self.starts, start)]
        if not d:
            del self.by_len[mask]
            self.probe = [p for p in self.probe if p[0] != shift]
        return value

    def best(self, start: int, mask: int) -> T | None:
        """The longest stored prefix no longer than mask that covers start."""
        min_shift = self.bits - mask
        for shift, get in self.probe:
            if shift >= min_shift:
                hit = get(start >> shift)
                if hit is not None:
                    return hit
        return None

    def gap(self, start: int, mask: int, floor: int) -> int | None:
        """The shortest free block length around start, from floor to mask.

        A block is free when it overlaps no stored prefix. None when even the
        query start/mask overlaps one.
        """
        if self.best(start, mask) is not None:
            return None
        # Prefixes either nest or are disjoint, and none covers the query, so
        # a block around start overlaps a stored prefix exactly when it holds
        # that prefix's start. A block is an interval: it holds some stored
        # start iff it holds the nearest one below or at/above start.
        starts = self.starts
        i = bisect_left(starts, start)
        length = floor
        for near in starts[max(i - 1, 0) : i + 1]:
            length = max(length, self.bits + 1 - (near ^ start).bit_length())
        return length if length <= mask else None

    def inside(self, start: int, mask: int) -> Iterator[T]:
        """Stored prefixes within start/mask, the block itself included."""
        bits = self.bits
        last = start | ((1 << (bits - mask)) - 1)
        window = self.starts[
            bisect_left(self.starts, start) : bisect_right(self.starts, last)
        ]
        for s in dict.fromkeys(window):
            for length, d in self.by_len.items():
                shift = bits - length
                # Only the prefixes that start at s, so each is seen once.
                if length >= mask and (s >> shift) << shift == s:
                    hit = d.get(s >> shift)
                    if hit is not None:
                        yield hit

    def values(self) -> Iterator[T]:
        for d in self.by_len.values():
            yield from d.values()


def _gap(table: _Table[T] | None, start: int, mask: int, floor: int) -> int | None:
    return floor if table is None else table.gap(start, mask, floor)


def _block(addr: IPv4Address | IPv6Address, length: int) -> IPv4Address | IPv6Address:
    shift = addr.max_prefixlen - length
    return type(addr)(int(addr) >> shift << shift)


def _covers(outer: Eid, inner: Eid) -> bool:
    """Whether inner lies in outer, both unicast, both (S,G) or both names."""
    if outer.group is None or inner.group is None:
        return outer.group is None and inner.group is None and outer.contains(inner)
    return Eid(outer.iid, outer.group, outer.group_mask_len).contains(
        Eid(inner.iid, inner.group, inner.group_mask_len)
    ) and Eid(outer.iid, outer.address, outer.mask_len).contains(
        Eid(inner.iid, inner.address, inner.mask_len)
    )


def _sort_key(eid: Eid) -> _SortKey:
    addr = eid.address
    if isinstance(addr, DistinguishedName):
        return (eid.iid, 0, 0, 0, 0, 0, addr.name)
    # -1 puts unicast entries before the (S,G) entries of their family.
    group = -1 if eid.group is None else int(eid.group)
    return (
        eid.iid,
        addr.version,
        group,
        eid.group_mask_len,
        int(addr),
        eid.mask_len,
        "",
    )


class MapDB(Generic[V]):
    """EID-keyed table with exact and longest-prefix-match lookups.

    IP prefixes are matched within one instance ID and address family.
    Distinguished names match exactly. An (S,G) EID is matched in two stages,
    as lispers.net does: the longest stored group covering the query group is
    chosen, then the longest source within that group; (*,G) is simply the
    source /0. Unicast and (S,G) entries never match each other.
    """

    def __init__(self) -> None:
        self._unicast: dict[_Key, _Table[tuple[Eid, V]]] = {}
        self._groups: dict[_Key, _Table[_Table[tuple[Eid, V]]]] = {}
        self._names: dict[Eid, tuple[Eid, V]] = {}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, eid: Eid) -> bool:
        return self._exact(eid) is not None

    def insert(self, eid: Eid, value: V) -> None:
        """Store value under exactly eid, replacing any previous value."""
        addr = eid.address
        if isinstance(addr, DistinguishedName):
            new = eid not in self._names
            self._names[eid] = (eid, value)
        else:
            key, bits = (eid.iid, addr.version), addr.max_prefixlen
            if eid.group is None:
                table = self._unicast.get(key)
                if table is None:
                    table = self._unicast[key] = _Table(bits)
            else:
                groups = self._groups.get(key)
                if groups is None:
                    groups = self._groups[key] = _Table(bits)
                group, group_mask = int(eid.group), eid.group_mask_len
                table = groups.get(group, group_mask)
                if table is None:
                    table = _Table(bits)
                    groups.put(group, group_mask, table)
            new = table.put(int(addr), eid.mask_len, (eid, value))
        self._len += new

    def remove(self, eid: Eid) -> V | None:
        """Delete exactly eid; return its value, or None if it was absent."""
        addr = eid.address
        if isinstance(addr, DistinguishedName):
            hit = self._names.pop(eid, None)
        else:
            key = (eid.iid, addr.version)
            if eid.group is None:
                table = self._unicast.get(key)
                hit = None if table is None else table.pop(int(addr), eid.mask_len)
            else:
                groups = self._groups.get(key)
                group, group_mask = int(eid.group), eid.group_mask_len
                sources = None if groups is None else groups.get(group, group_mask)
                if groups is None or sources is None:
                    hit = None
                else:
                    hit = sources.pop(int(addr), eid.mask_len)
                    # An empty group entry would hide shorter groups from lookup.
                    if not sources.starts:
                        groups.pop(group, group_mask)
        if hit is None:
            return None
        self._len -= 1
        return hit[1]

    def get(self, eid: Eid) -> V | None:
        """The value stored under exactly eid."""
        hit = self._exact(eid)
        return None if hit is None else hit[1]

    def clear(self) -> None:
        self._unicast.clear()
        self._groups.clear()
        self._names.clear()
        self._len = 0

    def items(self) -> Iterator[tuple[Eid, V]]:
        """Every entry, in no particular order."""
        yield from self._names.values()
        for table in self._unicast.values():
            yield from table.values()
        for groups in self._groups.values():
            for sources in groups.values():
                yield from sources.values()

    def sorted_items(self) -> list[tuple[Eid, V]]:
        """Every entry ordered by instance ID, family, group and prefix."""
        return sorted(self.items(), key=lambda item: _sort_key(item[0]))

    def lookup(self, eid: Eid) -> tuple[Eid, V] | None:
        """The most specific stored entry covering eid, with its value.

        A prefix query is covered only by stored prefixes at most as long.
        """
        addr = eid.address
        if isinstance(addr, DistinguishedName):
            return self._names.get(eid)
        key = (eid.iid, addr.version)
        if eid.group is None:
            table = self._unicast.get(key)
            return None if table is None else table.best(int(addr), eid.mask_len)
        groups = self._groups.get(key)
        sources = (
            None if groups is None else groups.best(int(eid.group), eid.group_mask_len)
        )
        return None if sources is None else sources.best(int(addr), eid.mask_len)

    def lookup_host(self, iid: int, version: int, addr: int) -> tuple[Eid, V] | None:
        """Longest match for one unicast address given as an int (4 or 6)."""
        table = self._unicast.get((iid, version))
        if table is not None:
            # _Table.best inlined: this is the per-packet path.
            for shift, get in table.probe:
                hit = get(addr >> shift)
                if hit is not None:
                    return hit
        return None

    def covered(self, eid: Eid) -> Iterator[tuple[Eid, V]]:
        """Stored entries inside eid other than eid itself (RFC 9301 5.5)."""
        addr = eid.address
        if isinstance(addr, DistinguishedName):
            return
        key = (eid.iid, addr.version)
        if eid.group is None:
            table = self._unicast.get(key)
            if table is not None:
                for hit in table.inside(int(addr), eid.mask_len):
                    if hit[0].mask_len > eid.mask_len:
                        yield hit
            return
        groups = self._groups.get(key)
        if groups is None:
            return
        for sources in groups.inside(int(eid.group), eid.group_mask_len):
            for hit in sources.inside(int(addr), eid.mask_len):
                if hit[0] != eid:
                    yield hit

    def uncovered_prefix(self, eid: Eid, within: Eid | None = None) -> Eid | None:
        """The least-specific EID around eid that no lookup can match.

        This is the EID-prefix of a negative Map-Reply (RFC 9301 section
        8.4): it contains eid and overlaps no stored prefix, so the asker may
        cache it. With `within`, the answer also stays inside that EID (a
        configured site prefix). None when there is no such EID: eid is
        covered, eid holds stored more-specifics (see `covered`), or eid is
        not inside `within`. A name gives itself; an (S,G) EID gives a group
        block with any source, or a source block under the query group.
        """
        if within is not None and not _covers(within, eid):
            return None
        addr = eid.address
        if isinstance(addr, DistinguishedName):
            return None if eid in self._names else eid
        key = (eid.iid, addr.version)
        if eid.group is None:
            floor = 0 if within is None else within.mask_len
            length = _gap(self._unicast.get(key), int(addr), eid.mask_len, floor)
            return (
                None if length is None else Eid(eid.iid, _block(addr, length), length)
            )
        groups = self._groups.get(key)
        group, group_mask = int(eid.group), eid.group_mask_len
        if groups is None or (sources := groups.best(group, group_mask)) is None:
            # No group covers the query, so every source in a free group
            # block is negative.
            floor = 0 if within is None else within.group_mask_len
            length = _gap(groups, group, group_mask, floor)
            if length is None:
                return None
            source = Eid(eid.iid, type(addr)(0), 0) if within is None else within
            return Eid(
                eid.iid,
                source.address,
                source.mask_len,
                _block(eid.group, length),
                length,
            )
        # Lookups inside the query group consult this group entry alone,
        # unless longer group entries lie inside the query group.
        if any(other is not sources for other in groups.inside(group, group_mask)):
            return None
        floor = 0 if within is None else within.mask_len
        length = sources.gap(int(addr), eid.mask_len, floor)
        if length is None:
            return None
        return Eid(eid.iid, _block(addr, length), length, eid.group, group_mask)

    def free_block(self, host: Eid, within: Eid) -> Eid | None:
        """The least-specific prefix that holds the unicast address `host`,
        lies inside `within` (host's longest stored match) and holds no
        stored prefix longer than `within`.

        A Map-Reply may carry `within`'s mapping for this prefix in place of
        `within` and all its more-specifics (RFC 9301 5.5), when those do
        not fit one datagram: the asker caches nothing too broad. None for
        names, (S,G) EIDs, or a host that is not inside `within`.
        """
        addr = host.address
        if (
            isinstance(addr, DistinguishedName)
            or host.group is not None
            or within.group is not None
            or not _covers(within, host)
        ):
            return None
        table = self._unicast.get((host.iid, addr.version))
        bits, q, length = addr.max_prefixlen, int(addr), within.mask_len
        if table is not None:
            assert not isinstance(within.address, DistinguishedName)
            lo = int(within.address)
            hi = lo | ((1 << (bits - within.mask_len)) - 1)
            starts = table.starts
            i = bisect_right(starts, q)
            # Stored prefixes nest or are disjoint, and none longer than
            # `within` holds q: a block around q overlaps one exactly when it
            # holds its start, so the nearest starts on either side decide.
            for near in starts[max(i - 1, 0) : i + 1]:
                if not lo <= near <= hi:
                    continue
                if near == lo and not any(
                    table.get(lo, n) is not None
                    for n in table.by_len
                    if n > within.mask_len
                ):
                    continue  # only `within` itself starts there
                if near == q:
                    return None  # a longer prefix holds q: not its best match
                length = max(length, bits + 1 - (near ^ q).bit_length())
        return Eid(host.iid, _block(addr, length), length)

    def _exact(self, eid: Eid) -> tuple[Eid, V] | None:
        addr = eid.address
        if isinstance(addr, DistinguishedName):
            return self._names.get(eid)
        key = (eid.iid, addr.version)
        if eid.group is None:
            table = self._unicast.get(key)
            return None if table is None else table.get(int(addr), eid.mask_len)
        groups = self._groups.get(key)
        sources = (
            None if groups is None else groups.get(int(eid.group), eid.group_mask_len)
        )
        return None if sources is None else sources.get(int(addr), eid.mask_len)
