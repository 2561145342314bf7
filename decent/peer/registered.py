"""What the registrations we hold mean to the data plane: routed EIDs, heard RLOCs."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from decent.peer.node import Node
from decent.wire import rle_entries


def routed_prefixes(node: Node, iid: int) -> dict[int, set[int]]:
    """What the ITR encapsulates, and so what the shell routes into the
    TUN: every registered unicast IP EID-prefix of instance `iid` that is
    not one of ours, per IP version as `int(address) << 8 | mask`. Ints
    only: this runs over every registration whenever the registered set
    changes, and an address object or a string each would cost seconds at
    a million EIDs."""
    ours = {m.eid for m in node.database_mappings()}
    out: dict[int, set[int]] = {4: set(), 6: set()}
    add4, add6 = out[4].add, out[6].add
    for entry in node.registrations(ordered=False):
        eid = entry.eid
        addr = eid.address
        if (
            eid.group is None
            and eid.iid == iid
            and isinstance(addr, IPv4Address | IPv6Address)
            and eid not in ours
        ):
            (add4 if addr.version == 4 else add6)(int(addr) << 8 | eid.mask_len)
    return out


def registered_rlocs(node: Node) -> frozenset[str]:
    """Every RLOC that a registration we hold names: the ETR accepts
    encapsulated packets from these and from no one else (LISP-MN 13)."""
    hosts: set[str] = set()
    for entry in node.registrations():
        for loc in entry.record.locators:
            if loc.rloc is not None:
                hosts.add(str(loc.rloc))
            for member in rle_entries(loc):
                if isinstance(member.address, IPv4Address | IPv6Address):
                    hosts.add(str(member.address))
    return frozenset(hosts)
