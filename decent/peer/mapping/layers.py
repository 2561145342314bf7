"""Layered seed-groups (RFC 9962 4.4): which layer group answers for which EIDs.

A core seed-group holds the layers, not their EIDs. A member of a layer
is a member of its layer's push group (`NodeConfig.group`), and registers
into the core (`NodeConfig.core`, core members' addresses) two kinds of
merged record, each with an RLE of its own RLOC: the layer group's
membership (0/0, G'), as RFC 9962 4.4 has it, and each EID-prefix the
layer serves (`NodeConfig.layer_prefixes`). The core's members then hold
every layer's members per EID-prefix, and no layer EID.

A lookup our own layer holds no registration for goes to the core; its
answer for an EID of another layer is that layer's prefix, whose locator
is an RLE of the layer's members (a referral, as a DDT node gives one). We
keep it here, bounded, and ask one of those members, the next in turn on
each retry, for the EID itself. A referral already known is taken as the
answer, so two layers that refer to each other cannot loop.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.peer.config import Addr
from decent.peer.context import Ctx
from decent.wire import Eid, IPAddress, MapRecord, rle_entries

#: Layer prefixes remembered from referrals (oldest forgotten first).
MAX_LAYERS: Final = 256


class Layers:
    """The layer prefixes we were referred to, and where to ask."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.known: dict[Eid, tuple[IPAddress, ...]] = {}

    def covering(self, eid: Eid) -> tuple[Eid, tuple[IPAddress, ...]] | None:
        """The known layer prefix covering eid (the longest) and its members."""
        best: Eid | None = None
        for prefix in self.known:
            if prefix.contains(eid) and (
                best is None or prefix.mask_len > best.mask_len
            ):
                best = prefix
        return None if best is None else (best, self.known[best])

    def resolvers_for(self, eid: Eid) -> tuple[Addr, ...] | None:
        """Where to ask about eid: a known layer's members, or the core
        when our own layer holds nothing for it; None: as without layers."""
        ctx = self.ctx
        port = ctx.config.control_port
        layer = self.covering(eid)
        if layer is not None:
            members = layer[1]
            if any(ctx.own(m) for m in members):
                return None  # our own layer: we hold it, or nobody does
            return tuple((m, port) for m in members)
        if ctx.config.core and ctx.ms.db.lookup(eid) is None:
            return ctx.config.core
        return None

    def referred(self, eid: Eid, records: tuple[MapRecord, ...]) -> bool:
        """A reply about eid that names a layer instead (a covering prefix
        whose locators are RLEs): remember the layer, and say to ask it."""
        for rec in records:
            try:
                prefix = Eid.from_wire(rec.eid, rec.mask_len)
            except ValueError:
                return False
            if prefix == eid or prefix.group is not None or not prefix.contains(eid):
                continue
            members = tuple(
                e.address
                for loc in rec.locators
                for e in rle_entries(loc)
                if isinstance(e.address, IPv4Address | IPv6Address)
            )
            if not members or self.known.get(prefix) == members:
                continue
            self.known.pop(prefix, None)
            if len(self.known) >= MAX_LAYERS:
                del self.known[next(iter(self.known))]
            self.known[prefix] = members
            self.ctx.out.counters["layer.referral"] += 1
            return True
        return False
