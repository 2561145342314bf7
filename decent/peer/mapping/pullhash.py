"""Pull mode's EID hash (RFC 9962 5.1, 5.2): EID string, hash mask, index, DNS name.

An EID selects its Map-Server set by a hash of its ASCII string,
`"[<iid>]<eid>/<ml>"` (`"[<iid>]<group>/<gml>-<source>/<sml>"` for (S,G)),
taken modulo the Modulus Value; the index names the DNS entry
`<index>.<dns_suffix>` whose A and AAAA records are the set's RLOCs.

Two hashes are in use. The RFC's: SHA-256 of the string, the whole digest
as a big-endian integer. lispers.net's: HMAC-SHA-256 keyed "lisp-decent",
its first six bytes, and no hash mask nor lookup lengths (it hashes the
prefix as registered and the EID as looked up). `HASHES` names both.

The hash mask (bytes of the string, 0 for all of it) lets a lookup of a
more-specific EID select the same set as the less-specific registered
prefix; a multicast EID's string is cut after its group (RFC 9962 5.1: the
mask MUST cover `[<iid>]<group>` and not the source). Lookup lengths (5.2)
widen a looked-up EID inside a configured range to the range's length.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Final

from decent.wire import Eid

RFC9962: Final = "rfc9962"
LISPERS: Final = "lispers.net"
HASHES: Final = (RFC9962, LISPERS)
#: lispers.net's hash key and width (LISP_DECENT_HASH_WIDTH, in bytes).
LISPERS_KEY: Final = b"lisp-decent"
LISPERS_WIDTH: Final = 6


def eid_string(eid: Eid) -> str:
    """The string RFC 9962 5.1 hashes: `[iid]eid/ml`, (S,G) as
    `[iid]group/gml-source/sml`, a name as lispers.net prints it."""
    if eid.group is None:
        return str(eid)
    return f"[{eid.iid}]{eid.group}/{eid.group_mask_len}-{eid.address}/{eid.mask_len}"


def lookup_eid(eid: Eid, ranges: Sequence[tuple[Eid, int]]) -> Eid:
    """RFC 9962 5.2: inside a configured range (the longest that covers
    eid wins) a lookup hashes the EID masked to the range's lookup length,
    never longer than the EID itself."""
    best: tuple[Eid, int] | None = None
    for covering, length in ranges:
        if covering.contains(eid) and (
            best is None or covering.mask_len > best[0].mask_len
        ):
            best = (covering, length)
    address = eid.address
    if best is None or not isinstance(address, IPv4Address | IPv6Address):
        return eid
    length = min(best[1], eid.mask_len)
    net = ip_network(f"{address}/{length}", strict=False)
    return Eid(eid.iid, net.network_address, length)


def hashed_string(eid: Eid, mask: int, algorithm: str = RFC9962) -> str:
    """What is hashed: the EID string cut to `mask` bytes (0: all of it).
    lispers.net hashes the whole string, and for a group only the group
    (its `print_prefix()`, `[iid]group/gml`)."""
    if algorithm == LISPERS:
        if eid.group is not None:
            return f"[{eid.iid}]{eid.group}/{eid.group_mask_len}"
        return str(eid)
    text = eid_string(eid)
    if eid.group is not None:
        # The mask MUST NOT reach the source: a (*,G) lookup and an (S,G)
        # registration of one group select one set.
        text = text.split("-", 1)[0].rsplit("/", 1)[0]
    return text[:mask] if mask > 0 else text


def index_of(text: str, modulus: int, algorithm: str = RFC9962) -> int:
    """The Map-Server set index of a hashed string (RFC 9962 5.1: the
    SHA-256 value modulo the Modulus Value)."""
    data = text.encode()
    if algorithm == LISPERS:
        digest = hmac.new(LISPERS_KEY, data, hashlib.sha256).digest()
        return int.from_bytes(digest[:LISPERS_WIDTH], "big") % modulus
    return int.from_bytes(hashlib.sha256(data).digest(), "big") % modulus


def dns_name(index: int, suffix: str) -> str:
    """RFC 9962 5.1: the set's DNS name, `<index>.<suffix>`."""
    return f"{index}.{suffix.strip('.')}"
