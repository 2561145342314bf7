"""Normalised EIDs: instance ID plus prefix, name or (S,G), and their text forms.

On the wire an EID is an address plus a mask length, and instance ID 0 may be
written with or without an Instance-ID LCAF (lispers.net omits it). `Eid` is
the one normalised form the rest of the code keys on. Text follows the
lispers.net/lig convention: `[iid]prefix`, `[iid](S, G)`, `[iid]'name'`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

from decent.wire.afi import (
    Address,
    AfiList,
    DistinguishedName,
    InstanceId,
    IPAddress,
    KeyValue,
    MulticastInfo,
    NoAddress,
    Rle,
    SecurityKey,
)
from decent.wire.buffer import check_uint


def _host_bits_clear(addr: IPAddress, mask_len: int) -> bool:
    bits = addr.max_prefixlen
    if not 0 <= mask_len <= bits:
        raise ValueError(f"mask length {mask_len} is out of range for {addr}")
    return not int(addr) & ((1 << (bits - mask_len)) - 1)


def _masked(addr: IPAddress, mask_len: int) -> IPAddress:
    bits = addr.max_prefixlen
    if not 0 <= mask_len <= bits:
        raise ValueError(f"mask length {mask_len} is out of range for {addr}")
    value = int(addr) >> (bits - mask_len) << (bits - mask_len) if mask_len else 0
    return type(addr)(value)


@dataclass(frozen=True, slots=True, order=False)
class Eid:
    """An EID in one instance ID: an IP prefix, a name, or an (S,G) pair.

    For (S,G) entries `address`/`mask_len` are the source and `group` /
    `group_mask_len` the group. Host bits beyond the mask are always zero.
    """

    iid: int
    address: IPAddress | DistinguishedName
    mask_len: int
    group: IPAddress | None = None
    group_mask_len: int = 0
    # EIDs key every table of the core; hashing five fields per dict access
    # showed in profiles, so the hash is computed once.
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __hash__(self) -> int:
        return self._hash

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_hash",
            hash(
                (self.iid, self.address, self.mask_len, self.group, self.group_mask_len)
            ),
        )
        check_uint("iid", self.iid, 32)
        if isinstance(self.address, DistinguishedName):
            if self.mask_len != 0 or self.group is not None:
                raise ValueError("a name EID has no mask length or group")
            return
        if not _host_bits_clear(self.address, self.mask_len):
            raise ValueError(f"{self.address}/{self.mask_len} has host bits set")
        if self.group is not None:
            if self.group.version != self.address.version:
                raise ValueError("source and group must be of one address family")
            if not _host_bits_clear(self.group, self.group_mask_len):
                raise ValueError(
                    f"{self.group}/{self.group_mask_len} has host bits set"
                )

    # ------------------------------------------------------------ builders

    @classmethod
    def prefix(cls, text: str, iid: int = 0) -> Eid:
        net = ip_network(text, strict=False)
        return cls(iid, net.network_address, net.prefixlen)

    @classmethod
    def name(cls, name: str, iid: int = 0) -> Eid:
        return cls(iid, DistinguishedName(name), 0)

    @classmethod
    def sg(cls, source: str, group: str, iid: int = 0) -> Eid:
        s = ip_network(source, strict=False)
        g = ip_network(group, strict=False)
        return cls(iid, s.network_address, s.prefixlen, g.network_address, g.prefixlen)

    @classmethod
    def from_wire(cls, addr: Address, mask_len: int) -> Eid:
        """Normalise an EID-record's address; host bits are cleared.

        Raises ValueError for addresses that are not EIDs we index.
        """
        iid = 0
        if isinstance(addr, InstanceId):
            iid = addr.iid
            addr = addr.address
        if isinstance(addr, IPv4Address | IPv6Address):
            if not _host_bits_clear(addr, mask_len):
                addr = _masked(addr, mask_len)
            return cls(iid, addr, mask_len)
        if isinstance(addr, DistinguishedName):
            return cls(iid, addr, 0)
        if isinstance(addr, MulticastInfo) and iid == 0:
            return cls(
                addr.iid,
                _masked(addr.source, addr.source_mask_len),
                addr.source_mask_len,
                _masked(addr.group, addr.group_mask_len),
                addr.group_mask_len,
            )
        raise ValueError(f"not an indexable EID: {type(addr).__name__}")

    def to_wire(self, *, plain_iid0: bool = True) -> tuple[Address, int]:
        """The EID-record address and mask length for this EID.

        With plain_iid0, instance ID 0 is sent as a plain AFI, as lispers.net
        does and every peer accepts.
        """
        if self.group is not None:
            assert not isinstance(self.address, DistinguishedName)
            mc = MulticastInfo(
                self.iid, self.address, self.mask_len, self.group, self.group_mask_len
            )
            return mc, self.mask_len
        mask_len = self.mask_len
        if isinstance(self.address, DistinguishedName):
            # lispers.net sends a name's length in bits as its mask length;
            # receivers ignore it for names, so match the deployed peer.
            mask_len = min(8 * len(self.address.name), 255)
        if self.iid == 0 and plain_iid0:
            return self.address, mask_len
        return InstanceId(self.iid, self.address), mask_len

    # ------------------------------------------------------------ queries

    @property
    def is_name(self) -> bool:
        return isinstance(self.address, DistinguishedName)

    @property
    def is_sg(self) -> bool:
        return self.group is not None

    @property
    def version(self) -> int:
        """4 or 6 for IP EIDs, 0 for names."""
        if isinstance(self.address, DistinguishedName):
            return 0
        return self.address.version

    def contains(self, other: Eid) -> bool:
        """True when other lies inside this prefix (same iid, same kind)."""
        if other.iid != self.iid or other.is_sg or self.is_sg:
            return self == other
        a, b = self.address, other.address
        if isinstance(a, DistinguishedName) or isinstance(b, DistinguishedName):
            return a == b
        if a.version != b.version or other.mask_len < self.mask_len:
            return False
        return _masked(b, self.mask_len) == a

    def __str__(self) -> str:
        if isinstance(self.address, DistinguishedName):
            return f"[{self.iid}]'{self.address.name}'"
        if self.group is not None:
            return (
                f"[{self.iid}]({self.address}/{self.mask_len}, "
                f"{self.group}/{self.group_mask_len})"
            )
        return f"[{self.iid}]{self.address}/{self.mask_len}"


_IID = re.compile(r"^\s*\[(\d+)\]\s*(.*)$", re.S)
_SG_ARROW = re.compile(r"^(.+?)\s*->\s*(.+)$", re.S)
_SG_PAREN = re.compile(r"^\(\s*(.+?)\s*,\s*(.+?)\s*\)$", re.S)


def parse_eid(text: str, default_iid: int = 0) -> Eid:
    """Parse an EID as a person writes it; raise ValueError with the reason.

    Accepts `1.1.1.1`, `10.0.0.0/8`, `2001:db8::/32`, `[iid]` before any form,
    `'name'`, `S->G` and `(S, G)`. A bare address is a host prefix.
    """
    rest = text.strip()
    iid = default_iid
    m = _IID.match(rest)
    if m:
        iid = int(m.group(1))
        rest = m.group(2).strip()
        if iid >= 1 << 32:
            raise ValueError(f"instance ID {iid} does not fit in 32 bits")
    if not rest:
        raise ValueError(f"no EID in {text!r}")
    if len(rest) >= 2 and rest[0] == rest[-1] == "'":
        return Eid.name(rest[1:-1], iid)
    m = _SG_PAREN.match(rest) or _SG_ARROW.match(rest)
    if m:
        source, group = _parse_net(m.group(1)), _parse_net(m.group(2))
        if source.version != group.version:
            raise ValueError("source and group must be of one address family")
        return Eid(
            iid,
            source.network_address,
            source.prefixlen,
            group.network_address,
            group.prefixlen,
        )
    net = _parse_net(rest)
    return Eid(iid, net.network_address, net.prefixlen)


def _parse_net(text: str) -> IPv4Network | IPv6Network:
    text = text.strip()
    try:
        if "/" not in text:
            addr = ip_address(text)
            return ip_network(f"{addr}/{addr.max_prefixlen}")
        return ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an address or prefix (try 10.1.0.0/16, "
            "[iid]address, 'name' or S->G)"
        ) from None


def address_text(addr: Address) -> str:
    """A one-line rendering of any wire address (for logs and pages)."""
    if isinstance(addr, IPv4Address | IPv6Address):
        return str(addr)
    if isinstance(addr, DistinguishedName):
        return f"'{addr.name}'"
    if isinstance(addr, InstanceId):
        return f"[{addr.iid}]{address_text(addr.address)}"
    if isinstance(addr, MulticastInfo):
        return (
            f"[{addr.iid}]({addr.source}/{addr.source_mask_len}, "
            f"{addr.group}/{addr.group_mask_len})"
        )
    if isinstance(addr, NoAddress):
        return "-"
    if isinstance(addr, AfiList):
        return "{" + ", ".join(address_text(a) for a in addr.items) + "}"
    if isinstance(addr, Rle):
        return (
            "RLE{"
            + ", ".join(
                f"{address_text(e.address)}"
                + (f"({e.name.name})" if e.name else "")
                + f"/L{e.level}"
                for e in addr.entries
            )
            + "}"
        )
    if isinstance(addr, KeyValue):
        return f"KV{{{address_text(addr.key)}: {address_text(addr.value)}}}"
    if isinstance(addr, SecurityKey):
        return f"{address_text(addr.address)} (key, suite {addr.cipher_suite})"
    return f"LCAF{addr.lcaf_type}({addr.body.hex()})"
