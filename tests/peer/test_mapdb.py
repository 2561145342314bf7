"""The mapping database: LPM, (S,G), names and negative prefixes."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from decent.peer.mapdb import MapDB
from decent.wire.eid import Eid, parse_eid

# ---------------------------------------------------------------- oracle

IP = IPv4Address | IPv6Address


def _span(addr: IP, mask_len: int) -> tuple[int, int]:
    lo = int(addr)
    return lo, lo | ((1 << (addr.max_prefixlen - mask_len)) - 1)


def _inside(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _source(eid: Eid) -> tuple[int, int]:
    assert isinstance(eid.address, IPv4Address | IPv6Address)
    return _span(eid.address, eid.mask_len)


def _group(eid: Eid) -> tuple[int, int]:
    assert eid.group is not None
    return _span(eid.group, eid.group_mask_len)


def _same_space(a: Eid, b: Eid) -> bool:
    return a.iid == b.iid and a.version == b.version and a.is_sg == b.is_sg


def brute_lookup(stored: dict[Eid, int], q: Eid) -> tuple[Eid, int] | None:
    if q.is_name:
        return (q, stored[q]) if q in stored else None
    if q.is_sg:
        groups = [
            e for e in stored if _same_space(e, q) and _inside(_group(e), _group(q))
        ]
        if not groups:
            return None
        longest = max(e.group_mask_len for e in groups)
        candidates = [
            e
            for e in groups
            if e.group_mask_len == longest and _inside(_source(e), _source(q))
        ]
    else:
        candidates = [
            e for e in stored if _same_space(e, q) and _inside(_source(e), _source(q))
        ]
    if not candidates:
        return None
    best = max(candidates, key=lambda e: e.mask_len)
    return best, stored[best]


def brute_overlaps(stored: dict[Eid, int], q: Eid) -> bool:
    return any(_same_space(e, q) and _overlap(_source(e), _source(q)) for e in stored)


def parent(eid: Eid) -> Eid:
    assert isinstance(eid.address, IPv4Address | IPv6Address)
    length = eid.mask_len - 1
    shift = eid.address.max_prefixlen - length
    addr = type(eid.address)(int(eid.address) >> shift << shift)
    return Eid(eid.iid, addr, length)


def host(eid: Eid, offset: int = 0) -> Eid:
    assert isinstance(eid.address, IPv4Address | IPv6Address)
    lo, hi = _source(eid)
    addr = type(eid.address)(min(lo + offset, hi))
    return Eid(eid.iid, addr, addr.max_prefixlen, eid.group, eid.group_mask_len)


def build(entries: list[Eid]) -> tuple[MapDB[int], dict[Eid, int]]:
    db: MapDB[int] = MapDB()
    stored: dict[Eid, int] = {}
    for value, eid in enumerate(entries):
        db.insert(eid, value)
        stored[eid] = value
    return db, stored


# ---------------------------------------------------------------- strategies

IIDS = st.sampled_from([0, 1, 7])
SMALL = st.integers(0, 3)


def _masked(value: int, bits: int, length: int) -> int:
    shift = bits - length
    return value >> shift << shift


@st.composite
def ip_prefix(draw: st.DrawFn, v6: bool | None = None) -> tuple[IP, int]:
    """A prefix in a small space, so that overlaps and collisions are common."""
    if v6 is None:
        v6 = draw(st.booleans())
    if v6:
        top = draw(st.sampled_from([0x2001, 0xFD00]))
        value = (top << 112) | (draw(SMALL) << 96) | (draw(SMALL) << 64) | draw(SMALL)
        length = draw(st.integers(0, 128))
        return IPv6Address(_masked(value, 128, length)), length
    top = draw(st.sampled_from([10, 11, 192]))
    value = (top << 24) | (draw(SMALL) << 16) | (draw(SMALL) << 8) | draw(SMALL)
    length = draw(st.integers(0, 32))
    return IPv4Address(_masked(value, 32, length)), length


@st.composite
def unicast(draw: st.DrawFn) -> Eid:
    addr, length = draw(ip_prefix())
    return Eid(draw(IIDS), addr, length)


@st.composite
def sg(draw: st.DrawFn, star_bias: bool = True) -> Eid:
    v6 = draw(st.booleans())
    source, source_len = draw(ip_prefix(v6))
    if star_bias and draw(st.booleans()):
        source, source_len = type(source)(0), 0
    bits = 128 if v6 else 32
    base = 0xFF00 << 112 if v6 else 0xE0 << 24
    value = base | (draw(SMALL) << (bits - 16)) | draw(SMALL)
    length = draw(st.integers(4, bits))
    group = type(source)(_masked(value, bits, length))
    return Eid(draw(st.sampled_from([0, 1])), source, source_len, group, length)


# ---------------------------------------------------------------- properties


@settings(max_examples=200)
@given(st.lists(unicast(), max_size=30), st.lists(unicast(), max_size=20))
def test_lookup_agrees_with_a_brute_force_scan(
    entries: list[Eid], queries: list[Eid]
) -> None:
    db, stored = build(entries)
    assert len(db) == len(stored)
    for q in queries + entries + [host(e, 5) for e in entries]:
        expected = brute_lookup(stored, q)
        assert db.lookup(q) == expected
        if q.mask_len == (32 if q.version == 4 else 128):
            assert isinstance(q.address, IPv4Address | IPv6Address)
            assert db.lookup_host(q.iid, q.version, int(q.address)) == expected


@given(st.lists(unicast(), max_size=30), st.data())
def test_lookup_after_removals_agrees_with_a_brute_force_scan(
    entries: list[Eid], data: st.DataObject
) -> None:
    db, stored = build(entries)
    for eid in data.draw(st.lists(st.sampled_from(entries))) if entries else []:
        assert db.remove(eid) == stored.pop(eid, None)
    assert len(db) == len(stored)
    assert sorted(db.items(), key=str) == sorted(stored.items(), key=str)
    for q in entries + [host(e, 1) for e in entries]:
        assert db.lookup(q) == brute_lookup(stored, q)


@settings(max_examples=200)
@given(st.lists(unicast(), max_size=30), unicast(), st.integers(0, 128))
def test_uncovered_prefix_is_the_least_specific_free_block(
    entries: list[Eid], q: Eid, within_len: int
) -> None:
    db, stored = build(entries)
    within = parent(q) if q.mask_len else q
    for _ in range(min(within_len, within.mask_len)):
        within = parent(within)
    for bound in (None, within):
        found = db.uncovered_prefix(q, bound)
        if brute_lookup(stored, q) is not None or brute_overlaps(stored, q):
            assert found is None
            continue
        assert found is not None
        assert found.iid == q.iid
        assert found.version == q.version
        assert _inside(_source(found), _source(q))
        assert not brute_overlaps(stored, found)
        floor = 0 if bound is None else bound.mask_len
        if bound is not None:
            assert _inside(_source(bound), _source(found))
        assert found.mask_len == floor or brute_overlaps(stored, parent(found))


@given(st.lists(unicast(), max_size=30), unicast())
def test_covered_lists_the_stored_more_specifics(entries: list[Eid], q: Eid) -> None:
    db, stored = build(entries)
    expected = {
        (e, v)
        for e, v in stored.items()
        if _same_space(e, q) and _inside(_source(q), _source(e)) and e != q
    }
    found = list(db.covered(q))
    assert len(found) == len(expected)
    assert set(found) == expected


@given(st.lists(sg(), max_size=25), st.lists(sg(star_bias=False), max_size=15))
def test_sg_lookup_agrees_with_a_brute_force_scan(
    entries: list[Eid], queries: list[Eid]
) -> None:
    db, stored = build(entries)
    for q in queries + entries:
        assert db.lookup(q) == brute_lookup(stored, q)


@given(st.lists(sg(), max_size=25), st.data())
def test_sg_lookup_after_removals_agrees_with_a_brute_force_scan(
    entries: list[Eid], data: st.DataObject
) -> None:
    db, stored = build(entries)
    for eid in data.draw(st.lists(st.sampled_from(entries))) if entries else []:
        assert db.remove(eid) == stored.pop(eid, None)
    assert len(db) == len(stored)
    for q in entries:
        assert db.lookup(q) == brute_lookup(stored, q)


def _corners(found: Eid, e: Eid) -> Eid | None:
    """A host (S,G) inside both found and e, if there is one."""
    s, g = _source(found), _group(found)
    es, eg = _source(e), _group(e)
    if not (_overlap(s, es) and _overlap(g, eg)):
        return None
    assert isinstance(found.address, IPv4Address | IPv6Address)
    assert found.group is not None
    kind = type(found.address)
    bits = found.address.max_prefixlen
    return Eid(found.iid, kind(max(s[0], es[0])), bits, kind(max(g[0], eg[0])), bits)


@given(st.lists(sg(), max_size=25), sg(star_bias=False))
def test_sg_uncovered_prefix_holds_no_matching_query(
    entries: list[Eid], q: Eid
) -> None:
    db, stored = build(entries)
    found = db.uncovered_prefix(q)
    if brute_lookup(stored, q) is not None:
        assert found is None
        return
    if found is None:
        # Only when the query holds stored entries of its own.
        assert any(_same_space(e, q) and _overlap(_group(e), _group(q)) for e in stored)
        return
    assert _inside(_source(found), _source(q))
    assert _inside(_group(found), _group(q))
    assert brute_lookup(stored, found) is None
    for e in stored:
        point = _corners(found, e) if _same_space(e, q) else None
        assert point is None or brute_lookup(stored, point) is None


@given(st.lists(st.sampled_from(["a", "b", "nexus-n1", "A"]), max_size=6), IIDS)
def test_names_match_exactly(names: list[str], iid: int) -> None:
    db, stored = build([Eid.name(n, iid) for n in names])
    for n in ["a", "b", "nexus-n1", "A", "nexus"]:
        for i in (iid, iid + 1):
            q = Eid.name(n, i)
            assert db.lookup(q) == brute_lookup(stored, q)
            assert db.get(q) == stored.get(q)


# ---------------------------------------------------------------- examples


def test_host_lookup_finds_the_longest_covering_prefix() -> None:
    db, _ = build([Eid.prefix("10.0.0.0/8"), Eid.prefix("10.1.0.0/16")])
    assert db.lookup(parse_eid("10.1.2.3")) == (Eid.prefix("10.1.0.0/16"), 1)
    assert db.lookup(parse_eid("10.2.2.3")) == (Eid.prefix("10.0.0.0/8"), 0)
    assert db.lookup(parse_eid("11.0.0.1")) is None
    assert db.lookup_host(0, 4, int(IPv4Address("10.1.9.9"))) == (
        Eid.prefix("10.1.0.0/16"),
        1,
    )


def test_prefix_query_is_matched_only_by_shorter_or_equal_prefixes() -> None:
    db, _ = build([Eid.prefix("10.0.0.0/8"), Eid.prefix("10.1.0.0/16")])
    assert db.lookup(parse_eid("10.0.0.0/12")) == (Eid.prefix("10.0.0.0/8"), 0)
    assert db.lookup(parse_eid("10.1.0.0/16")) == (Eid.prefix("10.1.0.0/16"), 1)
    assert db.lookup(parse_eid("0.0.0.0/0")) is None


def test_lookup_is_scoped_to_instance_id_and_family() -> None:
    db, _ = build([Eid.prefix("0.0.0.0/0", iid=5), Eid.prefix("::/0")])
    assert db.lookup(parse_eid("[5]1.2.3.4")) is not None
    assert db.lookup(parse_eid("1.2.3.4")) is None
    assert db.lookup(parse_eid("[5]2001:db8::1")) is None
    assert db.lookup_host(0, 4, 1) is None
    assert db.lookup_host(0, 6, 1) == (Eid.prefix("::/0"), 1)


def test_insert_replaces_the_value_of_an_existing_eid() -> None:
    db: MapDB[str] = MapDB()
    eid = Eid.prefix("10.1.0.0/16")
    db.insert(eid, "old")
    db.insert(eid, "new")
    assert len(db) == 1
    assert db.get(eid) == "new"
    assert eid in db
    assert Eid.prefix("10.1.0.0/17") not in db


def test_remove_returns_the_value_or_none_when_absent() -> None:
    db, _ = build([Eid.prefix("10.1.0.0/16"), parse_eid("(1.1.1.1, 224.1.1.1)")])
    assert db.remove(Eid.prefix("10.1.0.0/17")) is None
    assert db.remove(Eid.prefix("10.1.1.0/24")) is None
    assert db.remove(Eid.prefix("10.1.0.0/16", iid=3)) is None
    assert db.remove(parse_eid("(1.1.1.2, 224.1.1.1)")) is None
    assert db.remove(parse_eid("(1.1.1.1, 224.1.1.2)")) is None
    assert db.remove(parse_eid("[3](1.1.1.1, 224.1.1.1)")) is None
    assert db.remove(Eid.name("x")) is None
    assert db.remove(Eid.prefix("10.1.0.0/16")) == 0
    assert len(db) == 1
    assert db.lookup(parse_eid("10.1.2.3")) is None


def test_get_is_exact_for_every_kind() -> None:
    db, _ = build([Eid.prefix("10.1.0.0/16"), parse_eid("(1.1.1.1, 224.1.1.1)")])
    assert db.get(Eid.prefix("10.1.0.0/16")) == 0
    assert db.get(Eid.prefix("10.1.2.3/32")) is None
    assert db.get(Eid.prefix("10.1.0.0/16", iid=1)) is None
    assert db.get(parse_eid("(1.1.1.1, 224.1.1.1)")) == 1
    assert db.get(parse_eid("(1.1.1.1, 224.1.1.0/24)")) is None
    assert db.get(parse_eid("[2](1.1.1.1, 224.1.1.1)")) is None


def test_uncovered_prefix_is_the_largest_block_beside_a_stored_prefix() -> None:
    db, _ = build([Eid.prefix("10.1.0.0/16")])
    assert db.uncovered_prefix(parse_eid("10.2.0.9")) == Eid.prefix("10.2.0.0/15")
    assert db.uncovered_prefix(parse_eid("10.0.0.1")) == Eid.prefix("10.0.0.0/16")
    assert db.uncovered_prefix(parse_eid("192.0.2.1")) == Eid.prefix("128.0.0.0/1")


def test_uncovered_prefix_of_an_empty_space_is_the_whole_family() -> None:
    db, _ = build([Eid.prefix("10.1.0.0/16")])
    assert db.uncovered_prefix(parse_eid("[9]10.2.0.9")) == Eid.prefix("0.0.0.0/0", 9)
    assert db.uncovered_prefix(parse_eid("2001:db8::1")) == Eid.prefix("::/0")


def test_uncovered_prefix_is_none_when_the_query_is_covered_or_holds_entries() -> None:
    db, _ = build([Eid.prefix("10.1.0.0/16")])
    assert db.uncovered_prefix(parse_eid("10.1.2.3")) is None
    assert db.uncovered_prefix(parse_eid("10.0.0.0/8")) is None
    assert list(db.covered(parse_eid("10.0.0.0/8"))) == [(Eid.prefix("10.1.0.0/16"), 0)]


def test_uncovered_prefix_within_stays_inside_the_configured_prefix() -> None:
    db, _ = build([Eid.prefix("10.1.0.0/16")])
    site = Eid.prefix("10.2.0.0/24")
    assert db.uncovered_prefix(parse_eid("10.2.0.9"), within=site) == site
    assert db.uncovered_prefix(parse_eid("10.3.0.9"), within=site) is None
    assert (
        db.uncovered_prefix(parse_eid("10.2.0.9"), within=Eid.prefix("0.0.0.0/0", 1))
        is None
    )
    assert db.uncovered_prefix(parse_eid("10.2.0.9"), within=Eid.name("x")) is None


def test_uncovered_name_is_the_name_unless_registered() -> None:
    db, _ = build([Eid.name("nexus-n1")])
    assert db.uncovered_prefix(Eid.name("nexus-n1")) is None
    assert db.uncovered_prefix(Eid.name("nexus-n2")) == Eid.name("nexus-n2")
    assert db.uncovered_prefix(Eid.name("x"), within=Eid.name("x")) == Eid.name("x")
    assert db.uncovered_prefix(Eid.name("x"), within=Eid.name("y")) is None
    assert list(db.covered(Eid.name("nexus-n1"))) == []


def test_sg_lookup_falls_back_to_the_star_g_entry() -> None:
    db, _ = build(
        [parse_eid("(0.0.0.0/0, 224.1.1.1)"), parse_eid("(10.0.0.0/8, 224.1.1.1)")]
    )
    assert db.lookup(parse_eid("(10.1.1.1, 224.1.1.1)")) == (
        parse_eid("(10.0.0.0/8, 224.1.1.1)"),
        1,
    )
    assert db.lookup(parse_eid("(11.1.1.1, 224.1.1.1)")) == (
        parse_eid("(0.0.0.0/0, 224.1.1.1)"),
        0,
    )
    assert db.lookup(parse_eid("(11.1.1.1, 224.1.1.2)")) is None


def test_sg_and_unicast_never_match_each_other() -> None:
    db, _ = build([parse_eid("(0.0.0.0/0, 224.0.0.0/4)"), Eid.prefix("0.0.0.0/0")])
    assert db.lookup(parse_eid("(1.1.1.1, 224.1.1.1)")) == (
        parse_eid("(0.0.0.0/0, 224.0.0.0/4)"),
        0,
    )
    assert db.lookup(parse_eid("224.1.1.1")) == (Eid.prefix("0.0.0.0/0"), 1)
    assert db.lookup(parse_eid("[1](1.1.1.1, 224.1.1.1)")) is None


def test_sg_longest_group_decides_without_falling_back_to_shorter_groups() -> None:
    star = parse_eid("(0.0.0.0/0, 224.0.0.0/4)")
    specific = parse_eid("(10.0.0.0/8, 224.1.1.0/24)")
    db, _ = build([star, specific])
    assert db.lookup(parse_eid("(11.1.1.1, 224.1.1.1)")) is None
    db.remove(specific)
    assert db.lookup(parse_eid("(11.1.1.1, 224.1.1.1)")) == (star, 0)


def test_sg_uncovered_prefix_is_a_free_group_block_for_any_source() -> None:
    db, _ = build([parse_eid("(0.0.0.0/0, 224.1.0.0/16)")])
    assert db.uncovered_prefix(parse_eid("(1.2.3.4, 225.1.2.3)")) == parse_eid(
        "(0.0.0.0/0, 225.0.0.0/8)"
    )
    assert db.uncovered_prefix(parse_eid("(2001:db8::1, ff0e::1)")) == parse_eid(
        "(::/0, ::/0)"
    )
    assert db.uncovered_prefix(parse_eid("(1.2.3.4, 224.0.0.0/4)")) is None


def test_sg_uncovered_prefix_is_a_source_block_under_the_query_group() -> None:
    db, _ = build([parse_eid("(10.0.0.0/8, 224.1.0.0/16)")])
    assert db.uncovered_prefix(parse_eid("(11.1.1.1, 224.1.2.3)")) == parse_eid(
        "(11.0.0.0/8, 224.1.2.3)"
    )
    assert db.uncovered_prefix(parse_eid("(10.1.1.1, 224.1.2.3)")) is None
    db.insert(parse_eid("(12.0.0.0/8, 224.1.2.0/24)"), 1)
    assert db.uncovered_prefix(parse_eid("(11.1.1.1, 224.1.0.0/16)")) is None
    assert db.uncovered_prefix(parse_eid("(11.1.1.1, 224.1.1.0/24)")) == parse_eid(
        "(11.0.0.0/8, 224.1.1.0/24)"
    )


def test_sg_uncovered_prefix_within_stays_inside_the_configured_entry() -> None:
    db, _ = build([parse_eid("(10.0.0.0/8, 224.1.0.0/16)")])
    site = parse_eid("(11.0.0.0/16, 225.0.0.0/16)")
    assert db.uncovered_prefix(parse_eid("(11.0.1.1, 225.0.2.3)"), site) == site
    site = parse_eid("(11.0.0.0/16, 224.1.0.0/16)")
    assert db.uncovered_prefix(parse_eid("(11.0.1.1, 224.1.2.3)"), site) == (
        parse_eid("(11.0.0.0/16, 224.1.2.3)")
    )
    assert db.uncovered_prefix(parse_eid("(12.0.1.1, 224.1.2.3)"), site) is None
    assert db.uncovered_prefix(parse_eid("(11.0.1.1, 224.2.2.3)"), site) is None
    assert db.uncovered_prefix(parse_eid("11.0.1.1"), site) is None
    assert (
        db.uncovered_prefix(parse_eid("(11.0.1.1, 224.1.2.3)"), Eid.prefix("0.0.0.0/0"))
        is None
    )


def test_covered_lists_each_nested_more_specific_once() -> None:
    entries = [
        Eid.prefix("10.0.0.0/16"),
        Eid.prefix("10.0.1.0/24"),
        Eid.prefix("10.0.1.128/25"),
        Eid.prefix("10.0.0.0/8"),
        Eid.prefix("11.0.0.0/16"),
    ]
    db, _ = build(entries)
    found = sorted(str(e) for e, _ in db.covered(Eid.prefix("10.0.0.0/8")))
    assert found == ["[0]10.0.0.0/16", "[0]10.0.1.0/24", "[0]10.0.1.128/25"]


def test_covered_lists_sg_entries_inside_the_query() -> None:
    inner = parse_eid("(10.1.0.0/16, 224.1.1.0/24)")
    db, _ = build([parse_eid("(10.0.0.0/8, 224.1.0.0/16)"), inner])
    assert list(db.covered(parse_eid("(10.0.0.0/8, 224.1.0.0/16)"))) == [(inner, 1)]
    assert list(db.covered(parse_eid("(10.0.0.0/8, 224.2.0.0/16)"))) == []
    assert list(db.covered(parse_eid("[4](10.0.0.0/8, 224.1.0.0/16)"))) == []
    assert list(db.covered(Eid.prefix("0.0.0.0/0"))) == []


def test_items_sorted_items_and_clear_cover_every_kind() -> None:
    entries = [
        Eid.prefix("10.1.0.0/16", iid=1),
        parse_eid("(1.1.1.1, 224.1.1.1)"),
        Eid.name("b"),
        Eid.prefix("2001:db8::/32"),
        Eid.prefix("10.0.0.0/8"),
        Eid.name("a"),
    ]
    db, stored = build(entries)
    assert dict(db.items()) == stored
    assert [str(e) for e, _ in db.sorted_items()] == [
        "[0]'a'",
        "[0]'b'",
        "[0]10.0.0.0/8",
        "[0](1.1.1.1/32, 224.1.1.1/32)",
        "[0]2001:db8::/32",
        "[1]10.1.0.0/16",
    ]
    db.clear()
    assert len(db) == 0
    assert list(db.items()) == []
    assert db.lookup(parse_eid("10.1.1.1")) is None


# ---------------------------------------------------------------- free blocks
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 255), min_size=1, max_size=40, unique=True),
    st.integers(0, 255),
)
def test_free_block_never_covers_a_more_specific(hosts, query):
    db: MapDB[str] = MapDB()
    within = Eid.prefix("10.0.0.0/24")
    db.insert(within, "covering")
    for h in hosts:
        db.insert(Eid.prefix(f"10.0.0.{h}/32"), "host")
    point = Eid.prefix(f"10.0.0.{query}/32")
    hit = db.lookup(point)
    assert hit is not None
    block = db.free_block(point, hit[0])
    if hit[0] != within:
        return  # the host itself is registered: its own /32 answers
    assert block is not None
    assert block.contains(point)
    assert within.contains(block)
    net = IPv4Network(f"{block.address}/{block.mask_len}")
    assert not any(IPv4Address(f"10.0.0.{h}") in net for h in hosts)
    # and it is the largest such block: one bit shorter would hold a host
    if block.mask_len > 24:
        wider = net.supernet()
        assert any(IPv4Address(f"10.0.0.{h}") in wider for h in hosts)
