"""EID-records and locator (RLOC) records (RFC 9301 section 5.4, RFC 8111 6.4)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.wire.afi import (
    Address,
    AfiList,
    DistinguishedName,
    IPAddress,
    Rle,
    RleEntry,
    SecurityKey,
    address_depth,
    read_address,
    write_address,
)
from decent.wire.buffer import Reader, Writer, check_uint
from decent.wire.limits import MAX_LCAF_DEPTH, MAX_LOCATORS, MAX_SIGNATURES


class Action(IntEnum):
    """Map-Reply action codes (RFC 9301 section 12.3)."""

    NO_ACTION = 0
    NATIVELY_FORWARD = 1
    SEND_MAP_REQUEST = 2
    DROP_NO_REASON = 3
    DROP_POLICY_DENIED = 4
    DROP_AUTH_FAILURE = 5
    # lispers.net extensions, accepted on receipt (protocol notes 2.2).
    SEND_SUBSCRIBE = 6
    NOT_REGISTERED_YET = 7


class ReferralAction(IntEnum):
    """Map-Referral action codes (RFC 8111 section 6.4.1)."""

    NODE_REFERRAL = 0
    MS_REFERRAL = 1
    MS_ACK = 2
    MS_NOT_REGISTERED = 3
    DELEGATION_HOLE = 4
    NOT_AUTHORITATIVE = 5


LOC_LOCAL: Final = 0x0004
LOC_PROBED: Final = 0x0002
LOC_REACHABLE: Final = 0x0001
REC_AUTHORITATIVE: Final = 0x1000
REC_INCOMPLETE: Final = 0x0800
TTL_RECEIVER_DECIDES: Final = 0xFFFFFFFF


def _check_address(name: str, addr: Address) -> None:
    if address_depth(addr) > MAX_LCAF_DEPTH:
        raise ValueError(f"{name} nests LCAFs deeper than {MAX_LCAF_DEPTH}")


@dataclass(frozen=True, slots=True)
class Locator:
    """One RLOC-record: an RLOC with its unicast and multicast preferences."""

    address: Address
    priority: int = 1
    weight: int = 100
    m_priority: int = 255
    m_weight: int = 0
    local: bool = False
    probed: bool = False
    reachable: bool = True

    def __post_init__(self) -> None:
        # One combined test on the common path: this runs for every locator
        # of every message decoded; the detail only on failure.
        if not (
            0 <= self.priority < 256
            and 0 <= self.weight < 256
            and 0 <= self.m_priority < 256
            and 0 <= self.m_weight < 256
        ):
            check_uint("priority", self.priority, 8)
            check_uint("weight", self.weight, 8)
            check_uint("m_priority", self.m_priority, 8)
            check_uint("m_weight", self.m_weight, 8)
        _check_address("locator", self.address)

    @property
    def rloc(self) -> IPAddress | None:
        """The IP address to encapsulate to: the locator itself, or the
        first IP address of an AFI list, which lispers.net sends as
        {address, name} (protocol notes gotcha 10). None for the rest (an
        RLE, a bare name). A Security Key LCAF (RFC 8061) names its RLOC
        inside, alone or, as lispers.net sends it, in an AFI list."""
        addr = self.address
        if isinstance(addr, IPv4Address | IPv6Address):
            return addr
        if isinstance(addr, SecurityKey):
            inner = addr.address
            return inner if isinstance(inner, IPv4Address | IPv6Address) else None
        if isinstance(addr, AfiList):
            for item in addr.items:
                if isinstance(item, IPv4Address | IPv6Address):
                    return item
                if isinstance(item, SecurityKey) and isinstance(
                    item.address, IPv4Address | IPv6Address
                ):
                    return item.address
        return None

    @property
    def security_key(self) -> SecurityKey | None:
        """The RFC 8061 key this locator carries, alone or in an AFI list."""
        return find_security_key(self.address)

    @property
    def name(self) -> str | None:
        """The RLOC name an AFI-list locator carries beside its address."""
        addr = self.address
        if isinstance(addr, AfiList):
            for item in addr.items:
                if isinstance(item, DistinguishedName):
                    return item.name
        return None

    def write(self, w: Writer) -> None:
        w.u8(self.priority)
        w.u8(self.weight)
        w.u8(self.m_priority)
        w.u8(self.m_weight)
        w.u16(
            (LOC_LOCAL if self.local else 0)
            | (LOC_PROBED if self.probed else 0)
            | (LOC_REACHABLE if self.reachable else 0)
        )
        write_address(w, self.address)

    @classmethod
    def read(cls, r: Reader) -> Locator:
        priority = r.u8()
        weight = r.u8()
        m_priority = r.u8()
        m_weight = r.u8()
        flags = r.u16()
        address = read_address(r)
        return cls(
            address,
            priority,
            weight,
            m_priority,
            m_weight,
            bool(flags & LOC_LOCAL),
            bool(flags & LOC_PROBED),
            bool(flags & LOC_REACHABLE),
        )


def _read_locators(r: Reader, count: int) -> tuple[Locator, ...]:
    if count > MAX_LOCATORS:
        raise r.fail(f"{count} locators exceed the limit of {MAX_LOCATORS}")
    return tuple(Locator.read(r) for _ in range(count))


@dataclass(frozen=True, slots=True)
class MapRecord:
    """An EID-record: an EID-prefix with its locator set (RFC 9301 5.4).

    `ttl` is in minutes, as on the wire. A record with no locators is
    negative and its `action` says what to do with matching packets.
    """

    eid: Address
    mask_len: int
    locators: tuple[Locator, ...] = ()
    ttl: int = 1440
    action: int = Action.NO_ACTION
    authoritative: bool = False
    map_version: int = 0

    def __post_init__(self) -> None:
        if not (
            0 <= self.mask_len < 256
            and 0 <= self.ttl < 1 << 32
            and 0 <= self.action < 8
            and 0 <= self.map_version < 1 << 12
        ):
            check_uint("mask_len", self.mask_len, 8)
            check_uint("ttl", self.ttl, 32)
            check_uint("action", self.action, 3)
            check_uint("map_version", self.map_version, 12)
        if len(self.locators) > MAX_LOCATORS:
            raise ValueError(f"more than {MAX_LOCATORS} locators")
        _check_address("EID", self.eid)

    def write(self, w: Writer) -> None:
        w.u32(self.ttl)
        w.u8(len(self.locators))
        w.u8(self.mask_len)
        w.u16((self.action << 13) | (REC_AUTHORITATIVE if self.authoritative else 0))
        w.u16(self.map_version)
        write_address(w, self.eid)
        for loc in self.locators:
            loc.write(w)

    @classmethod
    def read(cls, r: Reader) -> MapRecord:
        ttl = r.u32()
        count = r.u8()
        mask_len = r.u8()
        flags = r.u16()
        map_version = r.u16() & 0x0FFF
        eid = read_address(r)
        locators = _read_locators(r, count)
        return cls(
            eid,
            mask_len,
            locators,
            ttl,
            flags >> 13,
            bool(flags & REC_AUTHORITATIVE),
            map_version,
        )


@dataclass(frozen=True, slots=True)
class ReferralSignature:
    """A Map-Referral signature section (RFC 8111 section 6.4.1)."""

    original_ttl: int
    expiration: int
    inception: int
    key_tag: int
    algorithm: int
    signature: bytes

    def __post_init__(self) -> None:
        check_uint("original_ttl", self.original_ttl, 32)
        check_uint("expiration", self.expiration, 32)
        check_uint("inception", self.inception, 32)
        check_uint("key_tag", self.key_tag, 16)
        check_uint("algorithm", self.algorithm, 8)
        check_uint("signature length", len(self.signature), 16)


@dataclass(frozen=True, slots=True)
class ReferralRecord:
    """A Map-Referral record: an EID-prefix with its referral set."""

    eid: Address
    mask_len: int
    referrals: tuple[Locator, ...] = ()
    ttl: int = 1440
    action: int = ReferralAction.NODE_REFERRAL
    authoritative: bool = False
    incomplete: bool = False
    map_version: int = 0
    signatures: tuple[ReferralSignature, ...] = ()

    def __post_init__(self) -> None:
        check_uint("mask_len", self.mask_len, 8)
        check_uint("ttl", self.ttl, 32)
        check_uint("action", self.action, 3)
        check_uint("map_version", self.map_version, 12)
        if len(self.referrals) > MAX_LOCATORS:
            raise ValueError(f"more than {MAX_LOCATORS} referrals")
        if len(self.signatures) > MAX_SIGNATURES:
            raise ValueError(f"more than {MAX_SIGNATURES} signatures")
        _check_address("EID", self.eid)

    def write(self, w: Writer) -> None:
        w.u32(self.ttl)
        w.u8(len(self.referrals))
        w.u8(self.mask_len)
        w.u16(
            (self.action << 13)
            | (REC_AUTHORITATIVE if self.authoritative else 0)
            | (REC_INCOMPLETE if self.incomplete else 0)
        )
        w.u16((len(self.signatures) << 12) | self.map_version)
        write_address(w, self.eid)
        for ref in self.referrals:
            ref.write(w)
        for sig in self.signatures:
            w.u32(sig.original_ttl)
            w.u32(sig.expiration)
            w.u32(sig.inception)
            w.u16(sig.key_tag)
            w.u16(len(sig.signature))
            w.u8(sig.algorithm)
            w.u8(0)
            w.u16(0)
            w.put(sig.signature)

    @classmethod
    def read(cls, r: Reader) -> ReferralRecord:
        ttl = r.u32()
        count = r.u8()
        mask_len = r.u8()
        flags = r.u16()
        word = r.u16()
        eid = read_address(r)
        referrals = _read_locators(r, count)
        signatures = []
        for _ in range(word >> 12):
            original_ttl = r.u32()
            expiration = r.u32()
            inception = r.u32()
            key_tag = r.u16()
            sig_len = r.u16()
            algorithm = r.u8()
            r.u8()
            r.u16()
            signatures.append(
                ReferralSignature(
                    original_ttl,
                    expiration,
                    inception,
                    key_tag,
                    algorithm,
                    r.take(sig_len),
                )
            )
        return cls(
            eid,
            mask_len,
            referrals,
            ttl,
            flags >> 13,
            bool(flags & REC_AUTHORITATIVE),
            bool(flags & REC_INCOMPLETE),
            word & 0x0FFF,
            tuple(signatures),
        )


def encode_record(record: MapRecord) -> bytes:
    """One EID-record's bytes, as they stand inside a message."""
    w = Writer()
    record.write(w)
    return w.raw()


def find_security_key(addr: Address) -> SecurityKey | None:
    """The Security Key LCAF of an ITR-RLOC or locator address, if any."""
    if isinstance(addr, SecurityKey):
        return addr
    if isinstance(addr, AfiList):
        for item in addr.items:
            if isinstance(item, SecurityKey):
                return item
    return None


def rle_entries(loc: Locator) -> list[RleEntry]:
    """The members of a locator that is an RLE (as lispers.net sends it too,
    inside an AFI-List); none for any other locator."""
    addr = loc.address
    if isinstance(addr, AfiList):  # lispers.net wraps the RLE (gotcha 10)
        for item in addr.items:
            if isinstance(item, Rle):
                return list(item.entries)
        return []
    return list(addr.entries) if isinstance(addr, Rle) else []
