"""Hypothesis strategies for every wire type, with field widths as on the wire."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address

from hypothesis import strategies as st

from decent.wire import (
    NO_ADDRESS,
    Address,
    AfiList,
    DistinguishedName,
    EncapsulatedControlMessage,
    InnerMessage,
    InstanceId,
    KeyValue,
    Locator,
    MapNotify,
    MapNotifyAck,
    MapRecord,
    MapReferral,
    MapRegister,
    MapReply,
    MapRequest,
    MulticastInfo,
    ReferralRecord,
    ReferralSignature,
    RequestRecord,
    Rle,
    RleEntry,
    SecurityKey,
    UnknownLcaf,
)
from decent.wire.afi import address_depth
from decent.wire.limits import MAX_LCAF_DEPTH


def uint(bits: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << bits) - 1)


ipv4 = st.builds(IPv4Address, uint(32))
ipv6 = st.builds(IPv6Address, uint(128))
ip = ipv4 | ipv6
names = st.builds(
    DistinguishedName,
    st.text(st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=40),
)


@st.composite
def multicast_info(draw: st.DrawFn) -> MulticastInfo:
    v6 = draw(st.booleans())
    fam: st.SearchStrategy[IPv4Address | IPv6Address] = ipv6 if v6 else ipv4
    width = 128 if v6 else 32
    return MulticastInfo(
        draw(uint(32)),
        draw(fam),
        draw(st.integers(0, width)),
        draw(fam),
        draw(st.integers(0, width)),
        draw(uint(8)),
        draw(st.booleans()),
    )


simple_address: st.SearchStrategy[Address] = st.one_of(
    st.just(NO_ADDRESS), ipv4, ipv6, names
)


def _extend(children: st.SearchStrategy[Address]) -> st.SearchStrategy[Address]:
    return st.one_of(
        st.builds(InstanceId, uint(32), children, uint(8)),
        st.builds(AfiList, st.lists(children, max_size=4).map(tuple)),
        st.builds(
            Rle,
            st.lists(
                st.builds(RleEntry, children, uint(8), st.none() | names),
                max_size=4,
            ).map(tuple),
        ),
        st.builds(KeyValue, children, children),
        st.builds(
            SecurityKey,
            uint(8),
            st.lists(st.binary(max_size=40), max_size=3).map(tuple),
            children,
            st.booleans(),
            uint(8),
        ),
        st.builds(
            UnknownLcaf,
            st.sampled_from([0, 3, 5, 10, 12, 14, 200]),
            st.binary(max_size=24),
            uint(8),
            uint(8),
            uint(8),
        ),
    )


# Depth 3 stays under MAX_LCAF_DEPTH once a Multicast Info leaf is added.
addresses: st.SearchStrategy[Address] = st.recursive(
    simple_address | multicast_info(), _extend, max_leaves=6
).filter(lambda a: _depth_ok(a))


def _depth_ok(addr: Address) -> bool:
    return address_depth(addr) <= MAX_LCAF_DEPTH


locators = st.builds(
    Locator,
    addresses,
    uint(8),
    uint(8),
    uint(8),
    uint(8),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
map_records = st.builds(
    MapRecord,
    addresses,
    uint(8),
    st.lists(locators, max_size=3).map(tuple),
    uint(32),
    uint(3),
    st.booleans(),
    uint(12),
)
request_records = st.builds(RequestRecord, addresses, uint(8), st.booleans())
trailers = st.just((None, 0)) | st.tuples(uint(128), uint(64))
auth = st.tuples(uint(8), uint(8), st.binary(max_size=40))


def _with_trailer(msg: MapRequest, trailer: tuple[int | None, int]) -> MapRequest:
    return dataclasses.replace(msg, xtr_id=trailer[0], site_id=trailer[1])


map_requests = st.builds(
    MapRequest,
    uint(64),
    st.lists(request_records, min_size=1, max_size=3).map(tuple),
    st.lists(addresses, min_size=1, max_size=4).map(tuple),
    addresses,
    st.none() | map_records,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
).flatmap(lambda m: trailers.map(lambda t: _with_trailer(m, t)))
map_replies = st.builds(
    MapReply,
    uint(64),
    st.lists(map_records, max_size=3).map(tuple),
    st.booleans(),
    st.booleans(),
    st.binary(max_size=16),
)


@st.composite
def map_registers(draw: st.DrawFn) -> MapRegister:
    key_id, alg_id, data = draw(auth)
    return MapRegister(
        draw(uint(64)),
        tuple(draw(st.lists(map_records, max_size=3))),
        key_id,
        alg_id,
        data,
        *draw(st.tuples(*[st.booleans()] * 6)),
        *draw(trailers),
    )


@st.composite
def map_notifies(draw: st.DrawFn) -> MapNotify | MapNotifyAck:
    kinds: list[type[MapNotify] | type[MapNotifyAck]] = [MapNotify, MapNotifyAck]
    cls = draw(st.sampled_from(kinds))
    key_id, alg_id, data = draw(auth)
    return cls(
        draw(uint(64)),
        tuple(draw(st.lists(map_records, max_size=3))),
        key_id,
        alg_id,
        data,
        *draw(trailers),
    )


signatures = st.builds(
    ReferralSignature,
    uint(32),
    uint(32),
    uint(32),
    uint(16),
    uint(8),
    st.binary(max_size=32),
)
map_referrals = st.builds(
    MapReferral,
    uint(64),
    st.lists(
        st.builds(
            ReferralRecord,
            addresses,
            uint(8),
            st.lists(locators, max_size=3).map(tuple),
            uint(32),
            uint(3),
            st.booleans(),
            st.booleans(),
            uint(12),
            st.lists(signatures, max_size=2).map(tuple),
        ),
        max_size=2,
    ).map(tuple),
)
inner_messages: st.SearchStrategy[InnerMessage] = st.one_of(
    map_requests, map_replies, map_registers(), map_notifies(), map_referrals
)


@st.composite
def ecms(draw: st.DrawFn) -> EncapsulatedControlMessage:
    v6 = draw(st.booleans())
    fam: st.SearchStrategy[IPv4Address | IPv6Address] = ipv6 if v6 else ipv4
    return EncapsulatedControlMessage(
        draw(inner_messages),
        draw(fam),
        draw(fam),
        draw(uint(16)),
        draw(uint(16)),
        *draw(st.tuples(st.booleans(), st.booleans(), st.booleans())),
        draw(uint(8)),
        0 if v6 else draw(uint(16)),  # IPv6 has no identification field
    )
