"""Read-only snapshots of a running Node as plain dicts, for the web API and CLI."""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final

from decent.peer.config import rloc_order
from decent.peer.display import locator_dict, time_text
from decent.peer.events import (
    Event,
    KeyStateChanged,
    LocatorStateChanged,
    MapCacheCleared,
    MapCacheExpired,
    MapCacheUpdated,
    MergedSetChanged,
    NatChanged,
    RegisterAcknowledged,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationNacked,
    RegistrationRejected,
    RegistrationRemoved,
    RelayClientChanged,
    RlocsChanged,
    SessionDown,
    SessionUp,
)
from decent.peer.mapcache import CacheEntry
from decent.peer.mapping.nat import RELAY_PRIORITY
from decent.peer.mapping.pull import MapServerSet, PullMapping
from decent.peer.mapping.pullhash import LISPERS
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
#: locators' state, our acknowledged Map-Registers, our own RLOCs,
#: refused registrations (the Peers page lists them), and reliable-transport
#: sessions coming and going or refusing one of our EIDs.
PAGE_EVENTS = (
    RegistrationAccepted,
    RegistrationRemoved,
    RegistrationExpired,
    MergedSetChanged,
    MapCacheUpdated,
    MapCacheExpired,
    MapCacheCleared,
    LocatorStateChanged,
    KeyStateChanged,
    RegisterAcknowledged,
    RlocsChanged,
    RegistrationRejected,
    SessionUp,
    SessionDown,
    RegistrationNacked,
    NatChanged,
    RelayClientChanged,
)
#: A node no member has accepted after this many registration periods from
#: its start is "not joined": by then it registered to its seeds three
#: times (and retransmitted), so silence is no longer a slow network.
JOIN_PERIODS: Final = 3
NOT_JOINED: Final = (
    "no member accepted us: wrong key, expired certificate or seed unreachable"
)
#: Pull mode: no Map-Server set resolved yet after JOIN_PERIODS periods, and
#: no resolution failed either (the shell's DNS never answered).
NOT_RESOLVED: Final = "DNS has not answered for every map-server set yet"
#: What an operator pastes into POST /api/revoke: this prefix, then the
#: encoded revocation in base64url (padding optional).
REVOKE_PREFIX: Final = "decent-revoke1:"
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def revocation_bytes(token: str) -> bytes:
    """The encoded revocation a `decent-revoke1:` token carries.
    Raises ValueError saying what is wrong with the token."""
    text = token.strip()
    if not text.startswith(REVOKE_PREFIX):
        raise ValueError(f"not a revocation token: it must start with {REVOKE_PREFIX}")
    body = text[len(REVOKE_PREFIX) :]
    if not body or not _BASE64URL.fullmatch(body):
        raise ValueError(
            "not a revocation token: the part after the prefix is not base64url"
        )
    body = body.rstrip("=")
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except binascii.Error:  # a length no whole bytes make
        raise ValueError(
            "not a revocation token: the part after the prefix is not base64url"
        ) from None


@dataclass(slots=True)
class Rejection:
    """Registrations refused from one source for one reason and EID: a
    member with a wrong key re-sends every period, record by record."""

    first: float
    last: float
    count: int = 1


RejectionKey = tuple[IPAddress, int, str, str | None, str | None]
#: Seconds the wall clock may drift from the monotonic one before the times
#: shown follow it (an NTP step, the operator setting the clock).
CLOCK_STEP: Final = 1.0
#: A member's traffic before the data plane has counted any.
_NO_TRAFFIC: Final[dict[str, Any]] = {
    "rx_packets": 0,
    "rx_bytes": 0,
    "last_rx_at": None,
    "tx_packets": 0,
    "tx_bytes": 0,
    "last_tx_at": None,
}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _held(expires: float) -> bool:
    """Whether a registration is held by a reliable-transport session: it
    has no timeout while the session is up (`expires` is infinite)."""
    return math.isinf(expires)


def _left(expires: float, now: float) -> float | None:
    """`ttl_s`: seconds until `expires`, None while a session holds it."""
    return None if _held(expires) else round(expires - now, 3)


def _deadline(expires: float) -> float | None:
    """`expires` for an `_at` field: None while a session holds it (JSON
    has no infinity, and no time to show)."""
    return None if _held(expires) else expires


class NodeStatus:
    """Adapts a Node (and the shell's clock) into JSON-ready dicts.

    The JSON convention (README, "JSON for scripts"): a point in time is
    `<what>_at`, RFC 3339 UTC with milliseconds; a duration carries its unit
    in its name (`_s`, `_min`, `_ms`). The Node runs on `clock()` (monotonic
    seconds), so a time t of the Node is shown as `wall() - (clock() - t)`;
    remaining lifetimes (`ttl_s`) are against `clock()`. `started` is that
    clock's reading when the node started, from which the join deadline
    runs. The shell hands it the node's events (`note`), which move
    `changes()` and fill the recent rejections. `flush` is the shell's:
    what the web layer changes (`clear_map_cache`, `revoke`) is then
    reported like any input.
    `restored` is how many registrations the daemon restored from its
    snapshot: until a live member confirms us, they are shown as stale.
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
        restored: int = 0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.clock = clock
        self.wall = wall
        self._offset: float | None = None
        self.name = name
        self.started = started
        self.register_interval = register_interval
        self.errors = errors or dict
        self.dataplane = dataplane or (lambda: {"enabled": False})
        self.flush = flush
        self.restored = restored
        self._version = 0
        #: Recent rejections, oldest first; a repeat moves its entry to the
        #: end, so one member re-sending a refused registration every period
        #: cannot push every other offender out of the bound.
        self._rejections: OrderedDict[RejectionKey, Rejection] = OrderedDict()

    # ------------------------------------------------------------ helpers
    def _times(self) -> Callable[[float | None], str | None]:
        """A converter of the Node's (monotonic) times to `_at` strings. The
        offset between the two clocks is kept while it holds within
        CLOCK_STEP, so the same moment reads the same in every answer (a
        script may compare them), and taken anew when the wall clock is set."""
        offset = self.wall() - self.clock()
        if self._offset is None or abs(offset - self._offset) > CLOCK_STEP:
            self._offset = offset
        offset = self._offset

        def at(t: float | None) -> str | None:
            return None if t is None else time_text(t + offset)

        return at

    def names(self) -> dict[IPAddress, str]:
        """RLOC -> node name, from the distinguished-name EIDs registered."""
        out: dict[IPAddress, str] = {}
        for entry in self.node.registrations(ordered=False):
            name = entry.eid.address
            locators = entry.record.locators
            # A member behind NAT names its relay's address and its NAT's:
            # neither is its own (decent.peer.mapping.nat).
            if isinstance(name, DistinguishedName) and all(
                loc.priority != 255 for loc in locators
            ):
                for loc in locators:
                    if loc.rloc is not None:
                        out.setdefault(loc.rloc, name.name)
        return out

    def seeds(self) -> list[IPAddress]:
        """The seeds configured: the Map-Servers we register to, besides our
        own RLOC and the group address."""
        cfg = self.node.config
        return [a for a, _ in cfg.map_servers if a not in cfg.rlocs and a != cfg.group]

    def stale(self) -> bool:
        """Whether what we show was restored from a snapshot and no live
        member has confirmed us since (it may be long gone)."""
        node = self.node
        return (
            self.restored > 0
            and node.config.group is not None
            and node.confirmed_at is None
        )

    def health(self) -> dict[str, Any]:
        """Whether the node is in its group, as /healthz answers it.

        Our own Map-Server always lists us, so the membership proves
        nothing: only a peer's word does (`Node.confirmed_at`). A node with
        no group, or confirmed, is "ok"; one with no seeds and no other
        member known is "alone" (the first member of a new mesh), also ok.
        Any other is "joining" until JOIN_PERIODS registration periods
        after its start, then "not joined". Members restored from a
        snapshot count as known, never as a join. Pull mode has no group:
        its health is DNS's (`_pull_health`)."""
        node, cfg = self.node, self.node.config
        members = node.membership()
        out: dict[str, Any] = {"ok": True, "status": "ok", "members": len(members)}
        if node.pull is not None:
            return self._pull_health(node.pull, out)
        if cfg.group is None or node.confirmed_at is not None:
            return out
        others = [m for m in members if m not in cfg.rlocs]
        if not others and not self.seeds():
            out["status"] = "alone"
            return out
        out["ok"] = False
        waited = self.clock() - self.started
        if waited < JOIN_PERIODS * cfg.register_interval:
            out["status"] = "joining"
            out["reason"] = (
                "restored from a snapshot, no member has confirmed us yet"
                if self.stale()
                else "no member has accepted us yet"
            )
        else:
            out["status"] = "not joined"
            out["reason"] = NOT_JOINED
        return out

    def _pull_health(self, pull: PullMapping, out: dict[str, Any]) -> dict[str, Any]:
        """Pull mode's health: there is no group to join, only DNS to hear
        from. "ok" once every Map-Server set is resolved; "dns failing"
        while any set's last resolution failed (its last addresses are
        still used); "resolving" before the first answers, which turns
        not ok after JOIN_PERIODS registration periods, as joining does."""
        failing = [s for s in pull.sets if s.error]
        if failing:
            out["ok"] = False
            out["status"] = "dns failing"
            out["reason"] = "; ".join(_set_failure(s) for s in failing)
            out["failing"] = [
                {
                    "name": s.name,
                    "reason": s.error,
                    "addresses_kept": [str(a) for a in s.addresses],
                }
                for s in failing
            ]
            return out
        waiting = [s for s in pull.sets if s.resolved_at is None]
        if not waiting:
            return out
        out["status"] = "resolving"
        waited = self.clock() - self.started
        if waited < JOIN_PERIODS * self.node.config.register_interval:
            out["reason"] = (
                f"waiting for DNS: {len(waiting)} of {len(pull.sets)} "
                "map-server sets not resolved yet"
            )
        else:
            out["ok"] = False
            out["reason"] = NOT_RESOLVED + ": " + ", ".join(s.name for s in waiting)
        return out

    def note(self, event: Event) -> None:
        """Take one of the node's events (NodeShell.subscribe)."""
        if isinstance(event, PAGE_EVENTS):
            self._version += 1
            if isinstance(event, RegistrationRejected):
                self._rejected(event)

    def _rejected(self, event: RegistrationRejected) -> None:
        now = self.clock()
        ip, port = event.peer
        eid = None if event.eid is None else str(event.eid)
        key = (ip, port, event.reason, eid, event.name)
        seen = self._rejections.get(key)
        if seen is not None:
            seen.last = now
            seen.count += 1
            self._rejections.move_to_end(key)
            return
        self._rejections[key] = Rejection(now, now)
        while len(self._rejections) > max(0, self.node.config.limits.refused_shown):
            self._rejections.popitem(last=False)

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

    def revoke(self, token: str) -> dict[str, Any]:
        """Hand the node the revocation a `decent-revoke1:` token carries
        (the operator's only other state-changing action; the web app
        decides who may call it): {"ok", "reason"}, reason "" when taken.
        Raises ValueError for a token that does not decode, and
        NotImplementedError while the node cannot take revocations."""
        data = revocation_bytes(token)
        reason = self.node.add_revocation(data, self.clock())
        if self.flush is not None:
            self.flush()
        return {"ok": not reason, "reason": reason}

    # ------------------------------------------------------------ views
    def node_info(self) -> dict[str, Any]:
        node, cfg, now = self.node, self.node.config, self.clock()
        at = self._times()
        sizes = node.soft_state_sizes()
        return {
            "name": self.name,
            "rloc": str(cfg.rlocs[0]),
            "rlocs": [str(r) for r in cfg.rlocs],
            "xtr_id": f"{cfg.xtr_id:032x}",
            "mode": "pull" if cfg.pull is not None else cfg.group_mode,
            "group": str(cfg.group) if cfg.group else None,
            "instance_id": cfg.group_iid,
            "control_port": cfg.control_port,
            "data_port": cfg.data_port,
            "started_at": at(self.started),
            "uptime_s": round(now - self.started, 3),
            "health": self.health(),
            "stale": self.stale(),
            "restored": self.restored,
            "confirmed_at": at(node.confirmed_at),
            "counts": {
                "registrations": sizes["registrations"],
                "peers": len(node.membership()),
                "map_cache": sizes["map_cache"],
            },
            "counters": dict(sorted(node.counters.items())),
            "refused": self.refused(),
            "socket_errors": dict(self.errors()),
            "dataplane": self.dataplane_view(),
            "reliable": self.reliable(),
            "nat": self.nat(),
            "pull": self.pull(),
            "layer": self.layer(),
            "state": sizes,
        }

    def pull(self) -> dict[str, Any] | None:
        """Pull mode (RFC 9962 5): the hash that picks an EID's Map-Server
        set, and each set as DNS last gave it (`ours` when it lists one of
        our RLOCs: we are its Map-Server; `error` the last resolution's
        failure, its addresses kept meanwhile). None in push mode."""
        pull = self.node.pull
        if pull is None:
            return None
        cfg, now = pull.pull, self.clock()
        at = self._times()
        ours = {s.index for s in pull.ours()}
        return {
            "modulus": cfg.modulus,
            "hash": cfg.hash,
            "hash_mask": cfg.hash_mask,
            "dns_suffix": cfg.dns_suffix,
            "lookup_lengths": [
                {"prefix": str(eid), "length": length}
                for eid, length in cfg.lookup_lengths
            ],
            "dns_refresh_s": cfg.dns_refresh,
            "dns_min_ttl_s": cfg.dns_min_ttl,
            "sets": [
                {
                    "index": s.index,
                    "name": s.name,
                    "addresses": [str(a) for a in s.addresses],
                    "ours": s.index in ours,
                    "resolved_at": at(s.resolved_at),
                    "refresh_in_s": (
                        None if s.refresh_at is None else round(s.refresh_at - now, 3)
                    ),
                    "error": s.error or None,
                    "failures": s.failures,
                    "waiting": len(s.waiting),
                }
                for s in pull.sets
            ],
            "ours": sorted(ours),
        }

    def layer(self) -> dict[str, Any] | None:
        """Layered seed-groups (RFC 9962 4.4): our layer (its group, the
        core's members we register it to, the prefixes it serves) and the
        layers the core referred us to; None when there is neither."""
        cfg, known = self.node.config, self.node.mapping.layers.known
        if not cfg.core and not known:
            return None
        return {
            "group": str(cfg.group) if cfg.core else None,
            "core": [str(a) for a, _ in cfg.core],
            "prefixes": [str(p) for p in cfg.layer_prefixes],
            "known": [
                {"prefix": str(p), "members": [str(m) for m in members]}
                for p, members in known.items()
            ],
        }

    def layer_choice(self, eid: Eid) -> dict[str, Any] | None:
        """Which layer answers for eid, and why; None without layers."""
        node, cfg = self.node, self.node.config
        layer = node.mapping.layers.covering(eid)
        if layer is not None:
            prefix, members = layer
            listed = ", ".join(str(m) for m in members)
            ours = any(m in cfg.rlocs for m in members)
            return {
                "prefix": str(prefix),
                "members": [str(m) for m in members],
                "ours": ours,
                "why": f"{prefix} is served by the layer of {listed}"
                + (" (ours)" if ours else ", as the core's referral said"),
            }
        if not cfg.core:
            return None
        core = ", ".join(str(a) for a, _ in cfg.core)
        held = node.registration(eid, exact=False) is not None
        return {
            "prefix": None,
            "members": [],
            "ours": held,
            "why": "our layer holds it"
            if held
            else f"not in our layer: asked of the core ({core}), whose answer "
            "names the layer that serves it",
        }

    def pull_choice(self, eid: Eid) -> dict[str, Any] | None:
        """Which Map-Server set eid's lookup (or registration) goes to, and
        why: the exact string hashed, and the sum, as one line. None in
        push mode."""
        pull = self.node.pull
        if pull is None:
            return None
        cfg = pull.pull
        text = pull.hashed(eid)
        if cfg.hash == LISPERS:
            hashed = f'hmac-sha256("lisp-decent", "{text}")[:6]'
        else:
            hashed = f'sha256("{text}")'
        s = pull.set_for(eid)
        ours = any(s is o for o in pull.ours())
        return {
            "string": text,
            "hash": cfg.hash,
            "index": s.index,
            "name": s.name,
            "addresses": [str(a) for a in s.addresses],
            "ours": ours,
            "why": f"{hashed} mod {cfg.modulus} = {s.index} → {s.name}",
        }

    def reliable(self) -> dict[str, Any]:
        """Reliable transport (TCP registrations): whether it is on, with
        any peer, and each session, by peer, ours to it first. `up_s` is
        how long a session has been up (null before), `up_since_at` when
        it came up; `registrations_held` what it registered with us (no
        timeout while it lasts), `registrations_sent` ours the peer holds,
        `refused` ours the peer refused (NACKed)."""
        cfg, now = self.node.config, self.clock()
        at = self._times()
        sessions = self.node.reliable.describe(now)
        names = {str(k): v for k, v in self.names().items()} if sessions else {}
        rows = [
            {
                **s,
                "name": names.get(str(s["peer"])),
                "up_since_at": (
                    at(now - s["up_s"]) if isinstance(s["up_s"], int | float) else None
                ),
            }
            for s in sessions
        ]
        return {"enabled": cfg.reliable_anywhere, "sessions": rows}

    def nat(self) -> dict[str, Any]:
        """NAT traversal: how we are reached (`state` "direct", "relayed",
        "no-relay", "checking" or "off"; our `relay`, and `global_address`, the
        address and port peers see us from), whether we offer to relay and
        whom we carry (`clients`), and how each member with a name is
        reached (`members`: "direct", or "relayed" `via` a relay with the
        `global` address its NAT gives it, from its registration)."""
        nat, cfg, now = self.node.nat, self.node.config, self.clock()
        relays = {*nat.relay_list(), *nat.relays}
        return {
            "mode": cfg.nat,
            "state": nat.state,
            "relay": None if nat.relay is None else str(nat.relay),
            "global_address": (
                None if nat.seen is None else f"{nat.seen[0]}:{nat.seen[1]}"
            ),
            "advertised": [str(a) for a in cfg.advertise],
            "offers_relay": cfg.relay,
            "relays_known": [str(r) for r in sorted(relays, key=rloc_order)],
            "clients": [
                {
                    "binding": f"{c.binding[0]}:{c.binding[1]}",
                    "private": str(c.private),
                    "eids": sorted(str(e) for e in c.eids),
                    "idle_s": round(now - c.seen, 1),
                    "up_s": round(now - c.since, 1),
                }
                for c in nat.clients.values()
            ],
            "members": [_reach(e) for e in self.node.registrations() if e.eid.is_name],
        }

    def refused(self) -> list[dict[str, Any]]:
        """Registrants refused lately for a quota or their rate, newest first."""
        at = self._times()
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
                "first_at": at(r.first),
                "last_at": at(r.last),
            }
            for r in reversed(self.node.refused_registrants())
        ]

    def rejections(self) -> list[dict[str, Any]]:
        """Registrations refused lately (RegistrationRejected), newest first:
        source, reason, EID and the name a refused certificate gives; a
        repeat counts on its entry. At most `[limits] refused_shown`."""
        at = self._times()
        return [
            {
                "source": str(ip),
                "port": port,
                "reason": reason,
                "eid": eid,
                "name": name,
                "count": r.count,
                "first_at": at(r.first),
                "last_at": at(r.last),
            }
            for (ip, port, reason, eid, name), r in reversed(self._rejections.items())
        ]

    def site_entry(
        self, entry: SiteEntry, names: dict[IPAddress, str]
    ) -> dict[str, Any]:
        now = self.clock()
        at = self._times()
        children = sorted(entry.children.values(), key=lambda c: c.first)
        latest = max(children, key=lambda c: c.last)
        # The entry lives as long as its longest-lived child.
        expires = max(c.expires for c in children)
        eid = entry.eid
        return {
            "site": entry.site,
            "eid": str(eid),
            "instance_id": eid.iid,
            "group": None if eid.group is None else f"{eid.group}/{eid.group_mask_len}",
            "registered": True,
            "first_registered_at": at(entry.first_registered),
            "last_registered_at": at(entry.last_registered),
            "last_registerer": f"{entry.last_registerer[0]}",
            "ttl_s": _left(expires, now),
            "expires_at": at(_deadline(expires)),
            "held_by_session": _held(expires),
            "record_ttl_min": entry.record.ttl,
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
                    "first_registered_at": at(c.first),
                    "last_registered_at": at(c.last),
                    "ttl_s": _left(c.expires, now),
                    "expires_at": at(_deadline(c.expires)),
                    "held_by_session": _held(c.expires),
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
        at = self._times()
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
        dataplane = self.dataplane_view()
        traffic = {p["rloc"]: p for p in dataplane.get("peers", ())}
        rtts = self.rtts()
        eids = self.member_eids()
        out = []
        for member in node.membership():
            times = heard.get(member)
            rloc = str(member)
            row = traffic.get(rloc, {})
            held = times is not None and _held(times[2])
            # A member registered over a session is refreshed only when
            # something changes: its silence is no sign of age.
            aging = times is None or (
                not held and now - times[1] > 1.5 * self.register_interval
            )
            out.append(
                {
                    "rloc": rloc,
                    "name": names.get(member),
                    "self": member in node.config.rlocs,
                    "eids": eids.get(member, []),
                    "first_seen_at": None if times is None else at(times[0]),
                    "last_heard_at": None if times is None else at(times[1]),
                    "ttl_s": None if times is None else _left(times[2], now),
                    "held_by_session": held,
                    "state": "aging-out" if aging else "current",
                    # RFC 8061: what our traffic to this member is, once
                    # the data plane has sent it any ("-" before); None
                    # without a data plane.
                    "encryption": (
                        None
                        if not dataplane.get("enabled")
                        else "off"
                        if dataplane.get("encrypt", "off") == "off"
                        else row.get("state", "-")
                    ),
                    "cipher": row.get("cipher"),
                    # Packets and bytes each way (None without a data plane).
                    "traffic": (
                        {k: row.get(k, _NO_TRAFFIC[k]) for k in _NO_TRAFFIC}
                        if dataplane.get("enabled")
                        else None
                    ),
                    "rtt_ms": rtts.get(rloc),
                }
            )
        return out

    def member_eids(self) -> dict[IPAddress, list[str]]:
        """Each member's EIDs, IP and name: the registrations it made (as
        registrant) or that name one of its RLOCs; group EIDs left out."""
        out: dict[IPAddress, set[str]] = {}
        for entry in self.node.registrations(ordered=False):
            if entry.eid.group is not None:
                continue
            eid = str(entry.eid)
            for child in entry.children.values():
                out.setdefault(child.registrant[0], set()).add(eid)
                for loc in child.record.locators:
                    if loc.rloc is not None:
                        out.setdefault(loc.rloc, set()).add(eid)
        return {member: sorted(e) for member, e in out.items()}

    def rtts(self) -> dict[str, float]:
        """The RTT of each RLOC RLOC-probed (RFC 9301 8.1), in ms: the best
        one over the map-cache entries that name it."""
        out: dict[str, float] = {}
        for entry in self.node.cache_entries():
            for state in entry.locators:
                rtt = _ms(state.rtt)
                if rtt is None or state.locator.rloc is None:
                    continue
                rloc = str(state.locator.rloc)
                out[rloc] = min(rtt, out.get(rloc, rtt))
        return out

    def dataplane_view(self) -> dict[str, Any]:
        """The data plane's state, its `peers` one row per peer RLOC like
        `wg show`: encryption (the sealing state), packets and bytes each
        way with the time of the last, and the RLOC-probe RTT. The shell's
        `traffic` rows (monotonic times) are folded into `peers`."""
        view = dict(self.dataplane())
        sealing = {str(p["rloc"]): p for p in view.get("peers", ())}
        traffic = {str(t["rloc"]): t for t in view.pop("traffic", ())}
        if not view.get("enabled") or not (sealing or traffic or "peers" in view):
            return view
        at = self._times()
        now = self.clock()
        names = {str(k): v for k, v in self.names().items()}
        rtts = self.rtts()
        encrypt = view.get("encrypt", "off")
        rows = []
        for rloc in sorted({*sealing, *traffic}):
            keys = dict(sealing.get(rloc, {}))
            since = keys.pop("since_s", None)
            t = traffic.get(rloc, {})
            rows.append(
                {
                    "rloc": rloc,
                    "name": names.get(rloc),
                    **keys,
                    "state": "off" if encrypt == "off" else keys.get("state", "-"),
                    "since_at": None if since is None else at(now - since),
                    "rx_packets": t.get("rx_packets", 0),
                    "rx_bytes": t.get("rx_bytes", 0),
                    "last_rx_at": at(t.get("rx_last")),
                    "tx_packets": t.get("tx_packets", 0),
                    "tx_bytes": t.get("tx_bytes", 0),
                    "last_tx_at": at(t.get("tx_last")),
                    "rtt_ms": rtts.get(rloc),
                }
            )
        view["peers"] = rows
        return view

    def cache_entry(self, entry: CacheEntry) -> dict[str, Any]:
        now = self.clock()
        at = self._times()
        names = self.names()
        return {
            "eid": str(entry.eid),
            "created_at": at(entry.created),
            "uptime_s": round(now - entry.created, 3),
            "ttl_s": _left(entry.expires, now),
            "expires_at": at(_deadline(entry.expires)),
            "record_ttl_min": entry.record.ttl,
            "source": entry.source,
            "negative": entry.negative,
            "action": Action(entry.record.action).name.lower().replace("_", "-")
            if entry.negative
            else None,
            "rlocs": [
                {
                    **locator_dict(s.locator, names),
                    "state": "up" if s.up else "down",
                    "rtt_ms": _ms(s.rtt),
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
        extra = self._choice(eid)
        if hit is not None:
            return {
                "query": str(eid),
                "found": True,
                "entry": self.site_entry(hit, self.names()),
                **extra,
            }
        return {"query": str(eid), "found": False, **self.negative(eid), **extra}

    def _choice(self, eid: Eid) -> dict[str, Any]:
        """Where a lookup of eid goes: pull mode's set, or the layer."""
        pull, layer = self.pull_choice(eid), self.layer_choice(eid)
        return {
            **({} if pull is None else {"pull": pull}),
            **({} if layer is None else {"layer": layer}),
        }

    def negative(self, eid: Eid) -> dict[str, Any]:
        prefix, ttl, action = self.node.negative_answer(eid)
        return {
            "prefix": str(prefix),
            "ttl_min": ttl,
            "action": Action(action).name.lower().replace("_", "-"),
        }

    def cache_lookup(self, text: str) -> dict[str, Any]:
        """The map-cache entry covering an EID (a negative one included). On a
        miss, `resolver` is what the ITR's Map-Request would be answered with:
        a Decent member is its own Map-Resolver, so that is `lookup`'s answer.
        Raises ValueError for bad input."""
        eid = parse_eid(text, self.node.config.group_iid)
        entry = self.node.cache_entry(eid)
        extra = self._choice(eid)
        if entry is None:
            answer = self.resolve(eid)
            del answer["query"]
            answer.pop("pull", None)
            answer.pop("layer", None)
            return {"query": str(eid), "found": False, "resolver": answer, **extra}
        return {
            "query": str(eid),
            "found": True,
            "entry": self.cache_entry(entry),
            **extra,
        }


def _set_failure(s: MapServerSet) -> str:
    return f"map-server set {s.name} not resolved: {s.error}"


def _reach(entry: SiteEntry) -> dict[str, Any]:
    """How a member is reached, from its name's registration: a member
    behind NAT registers its relay at priority 1 and the address its NAT
    gives it at 255 (decent.peer.mapping.nat); a relay its RLOCs at 254."""
    locators = entry.record.locators
    usable = [str(loc.rloc) for loc in locators if loc.priority < 255 and loc.rloc]
    nat = [str(loc.rloc) for loc in locators if loc.priority == 255 and loc.rloc]
    return {
        "name": getattr(entry.eid.address, "name", str(entry.eid.address)),
        "reach": "relayed" if nat else "direct",
        "via": usable[0] if nat and usable else None,
        "global": nat[0] if nat else None,
        "relay": any(loc.priority == RELAY_PRIORITY for loc in locators),
        "rlocs": usable,
    }
