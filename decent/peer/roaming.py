"""What our addresses, locators and RLEs become when our RLOCs change."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address

from decent.peer.config import Addr, Site, rloc_order
from decent.peer.context import Ctx, register_record
from decent.peer.mapserver import RegisterIntent
from decent.wire import (
    Address,
    AfiList,
    Eid,
    IPAddress,
    Locator,
    MapRegister,
    Rle,
    RleEntry,
)


def versions(addrs: Iterable[IPAddress]) -> set[int]:
    return {a.version for a in addrs}


def successor(
    addr: Address, old: tuple[IPAddress, ...], new: tuple[IPAddress, ...]
) -> Address | None:
    """What an address becomes when our RLOCs go from old to new: itself
    unless it was ours and is gone, then our new RLOC of its family (None
    when we have none)."""
    if addr not in old or addr in new:
        return addr
    assert isinstance(addr, IPv4Address | IPv6Address)
    return next((r for r in new if r.version == addr.version), None)


def moved_addrs(
    addrs: tuple[Addr, ...], old: tuple[IPAddress, ...], new: tuple[IPAddress, ...]
) -> tuple[Addr, ...]:
    out: dict[Addr, None] = {}
    for ip, port in addrs:
        moved = successor(ip, old, new)
        if isinstance(moved, IPv4Address | IPv6Address):
            out[(moved, port)] = None
    return tuple(out)


def moved_locators(
    locators: tuple[Locator, ...],
    old: tuple[IPAddress, ...],
    new: tuple[IPAddress, ...],
) -> tuple[Locator, ...]:
    """A locator set with our old RLOCs replaced by the new set, in place of
    the first of them. An address that stays keeps its locator (priority,
    weight, R bit); a new one copies the policy of our locator at its
    position. RLE entries naming an old RLOC name its successor instead."""
    own = [loc for loc in locators if loc.address in old]
    kept = {loc.address: loc for loc in own}
    out: list[Locator] = []
    placed = False
    for loc in locators:
        if isinstance(loc.address, Rle):
            out.append(
                dataclasses.replace(loc, address=moved_rle(loc.address, old, new))
            )
        elif isinstance(loc.address, AfiList):
            # lispers.net's form of the RLE: inside an AFI list (gotcha 10).
            items = tuple(
                moved_rle(item, old, new) if isinstance(item, Rle) else item
                for item in loc.address.items
            )
            out.append(dataclasses.replace(loc, address=AfiList(items)))
        elif loc.address not in old:
            out.append(loc)
        elif not placed:
            placed = True
            moved = [
                kept.get(rloc)
                or dataclasses.replace(
                    own[min(i, len(own) - 1)],
                    address=rloc,
                    reachable=True,
                    probed=False,
                )
                for i, rloc in enumerate(new)
            ]
            # Still in RFC 9301 5.5's ascending order.
            out.extend(sorted(moved, key=lambda loc: rloc_order(loc.address)))
    return tuple(out)


def moved_rle(rle: Rle, old: tuple[IPAddress, ...], new: tuple[IPAddress, ...]) -> Rle:
    entries: dict[Address, RleEntry] = {}
    for entry in rle.entries:
        moved = successor(entry.address, old, new)
        if moved is not None and moved not in entries:
            entries[moved] = dataclasses.replace(entry, address=moved)
    return Rle(tuple(entries.values()))


#: The Map-Server role's `apply` (decent.peer.roles.ms).
Apply = Callable[[RegisterIntent, list[Eid], Site, Addr, float], None]


def register_locally(ctx: Ctx, apply: Apply, now: float) -> None:
    """Put our new registrations into our own Map-Server at once: the
    membership it holds decides where the group's copies go next, and our
    old RLOC must not be among them (nor linger for our own ITR)."""
    config = ctx.config
    src = (config.rlocs[0], config.control_port)
    for _, mapping in list(ctx.database.items()):
        site = ctx.ms.site_for(mapping.eid)
        if site is None:
            continue
        msg = MapRegister(
            0,
            (register_record(mapping),),
            proxy_reply=mapping.proxy_reply,
            ttl_timeout=True,
            merge=mapping.merge,
            xtr_id=config.xtr_id,
            site_id=config.site_id,
        )
        intent = RegisterIntent.from_register(msg)
        apply(intent, [mapping.eid], site, src, now)
