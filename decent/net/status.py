"""Read-only snapshots of a running Node as plain dicts, for the web API and CLI."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from decent.peer.display import locator_dict
from decent.peer.events import (
    Event,
    LocatorStateChanged,
    MapCacheCleared,
    MapCacheExpired,
    MapCacheUpdated,
    MergedSetChanged,
    RegisterAcknowledged,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationRemoved,
    RlocsChanged,
)
from decent.peer.mapcache import CacheEntry
from decent.peer.mapserver import SiteEntry
from decent.peer.node import Node
from decent.wire import (
    Action,
    DistinguishedName,
    Eid,
    IPAddress,
    parse_eid,
    rle_entries,
)

AUTH_NAMES = {0: "none", 1: "hmac-sha-1", 2: "hmac-sha-256", 3: "hmac-sha-256-hkdf"}
#: The events after which the pages show something else: registrations
#: (refreshes move their ages), merged sets, the map-cache and its
#: locators' state, our acknowledged Map-Registers, our own RLOCs.
PAGE_EVENTS = (
    RegistrationAccepted,
    RegistrationRemoved,
    RegistrationExpired,
    MergedSetChanged,
    MapCacheUpdated,
    MapCacheExpired,
    MapCacheCleared,
    LocatorStateChanged,
    RegisterAcknowledged,
    RlocsChanged,
)


class NodeStatus:
    """Adapts a Node (and the shell's clock) into JSON-ready dicts.

    Ages and remaining lifetimes are computed against `clock()`, the same
    monotonic time the Node runs on. The shell hands it the node's events
    (`note`), which move `changes()`. `flush` is the shell's: what the web
    layer changes (`clear_map_cache`) is then reported like any input.
    """

    def __init__(
        self,
        node: Node,
        clock: Callable[[], float],
        *,
        name: str,
        started: float,
        register_interval: float,
        errors: Callable[[], dict[str, int]] | None = None,
        dataplane: Callable[[], dict[str, Any]] | None = None,
        flush: Callable[[], None] | None = None,
    ) -> None:
        self.node = node
        self.clock = clock
        self.name = name
        self.started = started
        self.register_interval = register_interval
        self.errors = errors or dict
        self.dataplane = dataplane or (lambda: {"enabled": False})
        self.flush = flush
        self._version = 0

    # ------------------------------------------------------------ helpers
    def names(self) -> dict[IPAddress, str]:
        """RLOC -> node name, from the distinguished-name EIDs registered."""
        out: dict[IPAddress, str] = {}
        for entry in self.node.registrations(ordered=False):
            name = entry.eid.address
            if isinstance(name, DistinguishedName):
                for loc in entry.record.locators:
                    if loc.rloc is not None:
                        out.setdefault(loc.rloc, name.name)
        return out

    def health(self) -> dict[str, Any]:
        members = self.node.membership()
        own = self.node.config.rlocs[0]
        # A node with no group (a classic xTR of outside systems) joins none.
        joined = self.node.config.group is None or own in members
        return {
            "ok": joined,
            "status": "ok" if joined else "joining",
            "members": len(members),
        }

    def note(self, event: Event) -> None:
        """Take one of the node's events (NodeShell.subscribe)."""
        if isinstance(event, PAGE_EVENTS):
            self._version += 1

    def changes(self) -> int:
        """A number that moves whenever what the pages show changes shape
        (registrations, membership, map-cache), so live views know when to
        push at once rather than at their next periodic refresh."""
        return self._version

    def clear_map_cache(self) -> int:
        """The one state-changing action of the web layer (operator's
        "clear cache"); the web app decides who may call it."""
        cleared = self.node.clear_map_cache()
        if self.flush is not None:
            self.flush()
        return cleared

    # ------------------------------------------------------------ views
    def node_info(self) -> dict[str, Any]:
        node, cfg, now = self.node, self.node.config, self.clock()
        sizes = node.soft_state_sizes()
        return {
            "name": self.name,
            "rloc": str(cfg.rlocs[0]),
            "rlocs": [str(r) for r in cfg.rlocs],
            "xtr_id": f"{cfg.xtr_id:032x}",
            "mode": cfg.group_mode,
            "group": str(cfg.group) if cfg.group else None,
            "instance_id": cfg.group_iid,
            "control_port": cfg.control_port,
            "data_port": cfg.data_port,
            "uptime": round(now - self.started, 3),
            "health": self.health(),
            "counts": {
                "registrations": sizes["registrations"],
                "peers": len(node.membership()),
                "map_cache": sizes["map_cache"],
            },
            "counters": dict(sorted(node.counters.items())),
            "refused": self.refused(),
            "socket_errors": dict(self.errors()),
            "dataplane": self.dataplane(),
            "state": sizes,
        }

    def refused(self) -> list[dict[str, Any]]:
        """Registrants refused lately for a quota or their rate, newest first."""
        now = self.clock()
        return [
            {
                "registrant": (
                    f"{r.registrant:032x}"
                    if isinstance(r.registrant, int)
                    else str(r.registrant)
                ),
                "source": str(r.source[0]),
                "reason": r.reason,
                "count": r.count,
                "first": round(now - r.first, 3),
                "last": round(now - r.last, 3),
            }
            for r in reversed(self.node.refused_registrants())
        ]

    def site_entry(
        self, entry: SiteEntry, names: dict[IPAddress, str]
    ) -> dict[str, Any]:
        now = self.clock()
        children = sorted(entry.children.values(), key=lambda c: c.first)
        latest = max(children, key=lambda c: c.last)
        eid = entry.eid
        return {
            "site": entry.site,
            "eid": str(eid),
            "instance_id": eid.iid,
            "group": None if eid.group is None else f"{eid.group}/{eid.group_mask_len}",
            "registered": True,
            "first_registered": round(now - entry.first_registered, 3),
            "last_registered": round(now - entry.last_registered, 3),
            "last_registerer": f"{entry.last_registerer[0]}",
            "ttl": round(max(c.expires for c in children) - now, 3),
            "flags": latest.flags,
            "merge": entry.merge,
            "proxy_reply": entry.proxy_reply,
            "auth": AUTH_NAMES.get(latest.alg_id, str(latest.alg_id)),
            "rlocs": [locator_dict(loc, names) for loc in entry.record.locators],
            "registrations": [
                {
                    "xtr_id": None if c.xtr_id is None else f"{c.xtr_id:032x}",
                    "site_id": c.site_id,
                    "registrant": str(c.registrant[0]),
                    # A plain xTR's registration carried on by this member.
                    "via": None if c.via is None else str(c.via),
                    "first_registered": round(now - c.first, 3),
                    "last_registered": round(now - c.last, 3),
                    "ttl": round(c.expires - now, 3),
                    "flags": c.flags,
                    "rlocs": [locator_dict(loc, names) for loc in c.record.locators],
                }
                for c in children
            ],
        }

    def sites(self) -> list[dict[str, Any]]:
        names = self.names()
        return [self.site_entry(e, names) for e in self.node.registrations()]

    def peers(self) -> list[dict[str, Any]]:
        node, now = self.node, self.clock()
        names = self.names()
        group = node.config.group_eid
        entry = node.registration(group) if group is not None else None
        heard: dict[IPAddress, tuple[float, float, float]] = {}
        if entry is not None:
            for child in entry.children.values():
                for loc in child.record.locators:
                    for e in rle_entries(loc):
                        if isinstance(e.address, IPv4Address | IPv6Address):
                            heard[e.address] = (child.first, child.last, child.expires)
        out = []
        for member in node.membership():
            times = heard.get(member)
            aging = times is None or now - times[1] > 1.5 * self.register_interval
            out.append(
                {
                    "rloc": str(member),
                    "name": names.get(member),
                    "self": member in node.config.rlocs,
                    "first_seen": None if times is None else round(now - times[0], 3),
                    "last_heard": None if times is None else round(now - times[1], 3),
                    "ttl": None if times is None else round(times[2] - now, 3),
                    "state": "aging-out" if aging else "current",
                }
            )
        return out

    def cache_entry(self, entry: CacheEntry) -> dict[str, Any]:
        now = self.clock()
        names = self.names()
        return {
            "eid": str(entry.eid),
            "uptime": round(now - entry.created, 3),
            "ttl": round(entry.expires - now, 3),
            "source": entry.source,
            "negative": entry.negative,
            "action": Action(entry.record.action).name.lower().replace("_", "-")
            if entry.negative
            else None,
            "rlocs": [
                {
                    **locator_dict(s.locator, names),
                    "state": "up" if s.up else "down",
                    "rtt": s.rtt,
                    "packet-count": s.packets,
                    "byte-count": s.bytes,
                }
                for s in entry.locators
            ],
            "packet-count": entry.packets,
            "byte-count": entry.bytes,
        }

    def map_cache(self) -> list[dict[str, Any]]:
        return [self.cache_entry(e) for e in self.node.cache_entries()]

    def lookup(self, text: str) -> dict[str, Any]:
        """The longest registered match for an EID, or the negative answer
        the Map-Resolver would give. Raises ValueError for bad input."""
        return self.resolve(parse_eid(text, self.node.config.group_iid))

    def resolve(self, eid: Eid) -> dict[str, Any]:
        """`lookup` of a parsed EID (its "query" is the EID itself)."""
        hit = self.node.registration(eid, exact=False)
        if hit is not None:
            return {
                "query": str(eid),
                "found": True,
                "entry": self.site_entry(hit, self.names()),
            }
        return {"query": str(eid), "found": False, **self.negative(eid)}

    def negative(self, eid: Eid) -> dict[str, Any]:
        prefix, ttl, action = self.node.negative_answer(eid)
        return {
            "prefix": str(prefix),
            "ttl": ttl * 60,
            "action": Action(action).name.lower().replace("_", "-"),
        }

    def cache_lookup(self, text: str) -> dict[str, Any]:
        """The map-cache entry covering an EID (a negative one included). On a
        miss, `resolver` is what the ITR's Map-Request would be answered with:
        a Decent member is its own Map-Resolver, so that is `lookup`'s answer.
        Raises ValueError for bad input."""
        eid = parse_eid(text, self.node.config.group_iid)
        entry = self.node.cache_entry(eid)
        if entry is None:
            answer = self.resolve(eid)
            del answer["query"]
            return {"query": str(eid), "found": False, "resolver": answer}
        return {"query": str(eid), "found": True, "entry": self.cache_entry(entry)}
