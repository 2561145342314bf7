"""Page models: the status dicts turned into tables and facts, for HTML and live JS.

One model feeds both renderers: `render.py` turns it into escaped HTML on the
server, and `assets/page.js` rebuilds the same blocks with DOM text nodes when
a live update arrives, so the two can never disagree about what a column
holds. A model is plain JSON: a header dict and named blocks, each a table
(`columns`, `rows` of cells) or a list of facts (label, cell). A cell is
`{"text": ...}` or `{"lines": [...]}`, optionally with `href` (always a path
on this server), `title` (a tooltip) and `cls` (a CSS class).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, Final, Protocol
from urllib.parse import quote

from decent.peer.display import time_value

Cell = dict[str, Any]
Block = dict[str, Any]
Model = dict[str, Any]

#: Rows per table; a mapping system of 100k EIDs is looked up, not scrolled.
MAX_ROWS: Final = 1000

#: The p-s-I-t-r-m-n registration flags (upper case = set), as lispers.net
#: shows them; `decent.peer.display.flags_text` produces the string.
FLAGS: Final = (
    ("p", "proxy Map-Reply: the Map-Server answers for the registrant"),
    ("s", "security capable (LISP-SEC)"),
    ("i", "xTR-ID and Site-ID present"),
    ("t", "TTL timeout: the record TTL is the registration lifetime"),
    ("r", "reserved (was the LISP-MN bit)"),
    ("m", "merge semantics: registrants' RLOC sets are merged (RFC 8378)"),
    ("n", "want Map-Notify"),
)
FLAGS_LEGEND: Final = "; ".join(f"{c}: {text}" for c, text in FLAGS)
_FLAG_SHORT: Final = (
    "proxy Map-Reply",
    "security",
    "xTR-ID",
    "TTL timeout",
    "reserved",
    "merge",
    "want Map-Notify",
)


class Source(Protocol):
    """The read side of the status source (see decent.web.app.StatusSource)."""

    def node_info(self) -> dict[str, Any]: ...
    def sites(self) -> list[dict[str, Any]]: ...
    def peers(self) -> list[dict[str, Any]]: ...
    def map_cache(self) -> list[dict[str, Any]]: ...
    def rejections(self) -> list[dict[str, Any]]: ...
    def lookup(self, text: str) -> dict[str, Any]: ...
    def cache_lookup(self, text: str) -> dict[str, Any]: ...


# ---------------------------------------------------------------- formatting
def age(seconds: float | None) -> str:
    """Seconds as lispers.net's "0:00:29" (hours grow past 24)."""
    if seconds is None or math.isnan(seconds):
        return "never"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def ago(at: object, now: float | None = None) -> str:
    """How long ago an `_at` time of the JSON API was, as `age` shows it;
    `now` is Unix seconds (default: this host's clock)."""
    then = time_value(at)
    if then is None:
        return "never"
    return age((time.time() if now is None else now) - then)


def size_text(n: object) -> str:
    """Bytes as `wg show` gives them: "0 B", "1.21 KiB", "3.40 MiB"."""
    value = float(n) if isinstance(n, int | float) else 0.0
    if value < 1024:
        return f"{int(value)} B"
    units = ("KiB", "MiB", "GiB", "TiB")
    step = 0
    value /= 1024
    while value >= 1024 and step < len(units) - 1:
        value /= 1024
        step += 1
    return f"{value:.2f} {units[step]}"


#: What a TTL-left cell says of a registration held by a reliable-transport
#: session (`held_by_session`): no countdown, it lasts as long as the session.
SESSION_TTL: Final = "session"
SESSION_TTL_TITLE: Final = (
    "held by a reliable-transport session: no timeout while it is up; "
    "if it drops, the registration lives its normal lifetime from then"
)


def ttl_text(d: dict[str, Any], unknown: str = "never") -> str:
    """A `ttl_s` as `age` shows it, "session" while a session holds the
    registration, `unknown` when there is none."""
    if d.get("held_by_session"):
        return SESSION_TTL
    ttl = d.get("ttl_s")
    return unknown if ttl is None else age(ttl)


def _ttl(d: dict[str, Any], unknown: str = "never") -> Cell:
    if d.get("held_by_session"):
        return _text(SESSION_TTL, title=SESSION_TTL_TITLE, cls="ok")
    return _text(ttl_text(d, unknown))


def rtt_text(ms: object) -> str:
    return f"{ms:.2f} ms" if isinstance(ms, int | float) else "-"


def flags_title(flags: str) -> str:
    """A tooltip saying what each letter of one flag string means."""
    letters = flags.split("-")
    return ", ".join(
        f"{got} {short} {'set' if got.isupper() else 'clear'}"
        for short, got in zip(_FLAG_SHORT, letters, strict=False)
    )


def site_href(eid: str) -> str:
    return "/sites/" + quote(eid, safe="")


def _text(text: object, **extra: Any) -> Cell:
    return {"text": "" if text is None else str(text), **extra}


def _lines(lines: Iterable[str], **extra: Any) -> Cell:
    return {"lines": list(lines) or ["-"], **extra}


def member_text(m: dict[str, Any]) -> str:
    name = m.get("name")
    return f"{m['address']}(L{m['level']})" + (f" {name}" if name else "")


def locator_lines(loc: dict[str, Any]) -> list[str]:
    """One line per RLOC; an RLE is one line per member (address, level, name)."""
    rle = loc.get("rle")
    if rle is not None:
        return [f"rle: {member_text(m)}" for m in rle] or ["rle: (empty)"]
    name = loc.get("name")
    return [f"{loc['address']} {name}" if name else str(loc["address"])]


def rloc_set(locs: list[dict[str, Any]]) -> Cell:
    """A registered RLOC-set as one cell, a line per RLOC or RLE member."""
    return _lines((line for loc in locs for line in locator_lines(loc)), cls="rlocs")


def _table(
    columns: list[Cell], rows: list[dict[str, Any]], empty: str, more_hint: str
) -> Block:
    shown = rows[:MAX_ROWS]
    return {
        "kind": "table",
        "columns": columns,
        "rows": shown,
        "empty": empty,
        "more": len(rows) - len(shown),
        "more_hint": more_hint,
    }


def _facts(items: list[tuple[str, Cell]]) -> Block:
    return {"kind": "facts", "items": [{"label": k, "value": v} for k, v in items]}


def notice(text: str, cls: str = "notice") -> Block:
    return {"kind": "notice", "text": text, "cls": cls}


# ---------------------------------------------------------------- header
#: The page's note while what it shows came from a snapshot (`stale`).
STALE_NOTE: Final = (
    "Registrations and membership restored from a snapshot at start, not yet "
    "confirmed by a live member: some of them may be gone."
)


def health_text(health: dict[str, Any]) -> str:
    """ "ok (3 members)", or the status and why (not joined, joining)."""
    status = health.get("status", "?")
    reason = health.get("reason")
    if reason:
        return f"{status} ({reason})"
    return f"{status} ({health.get('members', 0)} members)"


def header(node: dict[str, Any]) -> dict[str, Any]:
    health = node.get("health", {})
    counts = node.get("counts", {})
    return {
        "name": node.get("name", ""),
        "rloc": node.get("rloc", ""),
        "mode": node.get("mode") or "-",
        "group": node.get("group") or "-",
        "uptime": age(node.get("uptime_s")),
        "health": health_text(health),
        "health_ok": bool(health.get("ok")),
        "stale": STALE_NOTE if node.get("stale") else "",
        "counts": (
            f"{counts.get('registrations', 0)} registrations, "
            f"{counts.get('peers', 0)} peers, "
            f"{counts.get('map_cache', 0)} map-cache entries"
        ),
        "reach": reach_text(node.get("nat")),
        "reach_cls": reach_class(node.get("nat")),
    }


# ---------------------------------------------------------------- sections
SITES_COLUMNS: Final = [
    _text("Site Name"),
    _text("EID-Prefix or (S,G)"),
    _text("Registered"),
    _text("Last Registerer"),
    _text("Last Registered"),
    _text("First Registered"),
    _text("TTL left"),
    _text("Registration Flags", title=FLAGS_LEGEND),
    _text("RLOC-set"),
]


def sites_table(sites: list[dict[str, Any]], now: float | None = None) -> Block:
    """Every registration, grouped by site; the site name opens its group."""
    now = time.time() if now is None else now
    rows = []
    ordered = sorted(enumerate(sites), key=lambda p: (p[1].get("site", ""), p[0]))
    last_site = None
    for _, s in ordered:
        site = s.get("site", "")
        first = site != last_site
        last_site = site
        registered = "yes (dynamic)" if s.get("registered") else "no"
        rows.append(
            {
                "cls": "site-start" if first else "",
                "cells": [
                    _text(site if first else ""),
                    _text(s["eid"], href=site_href(s["eid"]), cls="eid"),
                    _text(registered),
                    _text(s.get("last_registerer")),
                    _text(ago(s.get("last_registered_at"), now)),
                    _text(ago(s.get("first_registered_at"), now)),
                    _ttl(s),
                    _text(s.get("flags", ""), title=flags_title(s.get("flags", ""))),
                    rloc_set(s.get("rlocs", [])),
                ],
            }
        )
    return _table(
        SITES_COLUMNS,
        rows,
        "No registrations yet.",
        "use the site-cache lookup or GET /api/v1/sites for the rest",
    )


PEERS_COLUMNS: Final = [
    _text("RLOC"),
    _text("Name"),
    _text("First Seen"),
    _text("Last Heard"),
    _text("TTL left"),
    _text("State"),
]

#: How a member's traffic state shows (RFC 8061); "clear" and "refused"
#: stand out, since either may be a peer that cannot or will not encrypt.
_TRAFFIC_CLASS: Final = {"encrypted": "ok", "clear": "warn", "refused": "bad"}


def peers_table(peers: list[dict[str, Any]], now: float | None = None) -> Block:
    """The peer group; with a data plane, a Traffic column says whether our
    traffic to each member is encrypted (RFC 8061) or not, and the columns
    after it what went each way, when last, and the RLOC-probe RTT."""
    now = time.time() if now is None else now
    traffic = any(p.get("encryption") is not None for p in peers)
    rows = []
    for p in peers:
        state = "current" if p.get("state") == "current" else "aging out"
        rloc = p["rloc"] + (" (this node)" if p.get("self") else "")
        rows.append(
            {
                "cls": "",
                "cells": [
                    _text(rloc),
                    _text(p.get("name") or "-"),
                    _text(ago(p.get("first_seen_at"), now)),
                    _text(ago(p.get("last_heard_at"), now)),
                    _ttl(p, "-"),
                    _text(state, cls="ok" if state == "current" else "warn"),
                    *(_traffic_cells(p, now) if traffic else []),
                ],
            }
        )
    columns = [*PEERS_COLUMNS, *(TRAFFIC_COLUMNS if traffic else [])]
    return _table(columns, rows, "No peers known yet.", "GET /api/v1/peers")


#: The peers table's data-plane columns, `wg show`'s per-peer facts.
TRAFFIC_COLUMNS: Final = [
    _text("Traffic"),
    _text("Packets in/out", title="packets and inner bytes received / sent"),
    _text("Last in/out", title="time since the last packet received / sent"),
    _text("RTT", title="round-trip time of the last RLOC probe"),
]


def traffic_lines(t: dict[str, Any] | None, now: float) -> tuple[list[str], list[str]]:
    """A peer's packets and bytes, and the age of its last packet, each way."""
    t = t or {}
    counts = [
        f"{way} {t.get(f'{k}_packets', 0):,} ({size_text(t.get(f'{k}_bytes', 0))})"
        for way, k in (("in", "rx"), ("out", "tx"))
    ]
    last = [
        f"{way} {ago(t.get(f'last_{k}_at'), now)}"
        for way, k in (("in", "rx"), ("out", "tx"))
    ]
    return counts, last


def _traffic_cells(peer: dict[str, Any], now: float) -> list[Cell]:
    if peer.get("self"):
        return [_text("-"), _text("-"), _text("-"), _text("-")]
    counts, last = traffic_lines(peer.get("traffic"), now)
    return [
        _traffic(peer),
        _lines(counts, cls="num"),
        _lines(last),
        _text(rtt_text(peer.get("rtt_ms")), cls="num"),
    ]


def _traffic(peer: dict[str, Any]) -> Cell:
    if peer.get("self"):
        return _text("-")
    state = str(peer.get("encryption") or "-")
    text = {"off": "clear (encryption off)", "-": "no traffic yet"}.get(state, state)
    return _text(text, cls=_TRAFFIC_CLASS.get(state, ""))


REFUSED_COLUMNS: Final = [
    _text("Registrant (xTR-ID or address)"),
    _text("Source"),
    _text("Reason"),
    _text("Refused"),
    _text("First"),
    _text("Last"),
]


def refused_table(refused: list[dict[str, Any]], now: float | None = None) -> Block:
    """Registrants refused lately for going over a quota or their rate."""
    now = time.time() if now is None else now
    rows = [
        {
            "cls": "",
            "cells": [
                _text(r.get("registrant"), cls="mono"),
                _text(r.get("source")),
                _text(r.get("reason"), cls="warn"),
                _text(f"{r.get('count', 0):,} records or messages"),
                _text(ago(r.get("first_at"), now)),
                _text(ago(r.get("last_at"), now)),
            ],
        }
        for r in refused
    ]
    return _table(
        REFUSED_COLUMNS,
        rows,
        "No registrant has gone over its quota or rate.",
        "GET /api/v1/node (refused)",
    )


REJECTIONS_COLUMNS: Final = [
    _text("Source"),
    _text("Reason"),
    _text("EID"),
    _text("Name (certificate)"),
    _text("Times"),
    _text("First"),
    _text("Last"),
]


def rejections_table(
    rejections: list[dict[str, Any]], now: float | None = None
) -> Block:
    """Registrations this node refused lately (bad key, certificate, quota),
    newest first."""
    now = time.time() if now is None else now
    rows = [
        {
            "cls": "",
            "cells": [
                _text(r.get("source")),
                _text(r.get("reason"), cls="warn"),
                _text(r.get("eid") or "-", cls="eid"),
                _text(r.get("name") or "-"),
                _text(f"{r.get('count', 0):,}", cls="num"),
                _text(ago(r.get("first_at"), now)),
                _text(ago(r.get("last_at"), now)),
            ],
        }
        for r in rejections
    ]
    return _table(
        REJECTIONS_COLUMNS,
        rows,
        "No registration has been rejected.",
        "GET /api/v1/rejections",
    )


SESSIONS_COLUMNS: Final = [
    _text("Peer"),
    _text("Name"),
    _text(
        "Direction",
        title="to peer: we connected and register our EIDs over it; "
        "from peer: the peer connected and registers its EIDs with us",
    ),
    _text("State"),
    _text("Up", title="how long the session has been up"),
    _text("Messages in/out", title="transport messages received / sent"),
    _text("Bytes in/out"),
    _text(
        "Registrations held",
        title="the peer's registrations this session holds here: no "
        "timeout while it is up",
    ),
    _text("Registrations sent", title="our registrations the peer holds"),
    _text("Refused", title="our EIDs the peer refused (NACKed)"),
]
_DIRECTIONS: Final = {
    "to-peer": "to peer (we register)",
    "from-peer": "from peer (it registers)",
}
_SESSION_CLASS: Final = {
    "up": "ok",
    "connecting": "warn",
    "open": "warn",
    "closed": "bad",
}
SESSIONS_EMPTY: Final = (
    "No session yet: one opens once the peer has authenticated a UDP "
    "Map-Register with the r bit (ours to it, or its to us)."
)
#: The reliable-transport section when it is off: not on the page at all.
SESSIONS_OFF: Final = "Reliable transport (TCP registrations) is off."


def session_row(s: dict[str, Any]) -> dict[str, Any]:
    up = s.get("up_s")
    state = str(s.get("state", "-"))
    direction = str(s.get("direction", "-"))
    refused = s.get("refused", 0)
    return {
        "cls": "",
        "cells": [
            _text(s.get("peer")),
            _text(s.get("name") or "-"),
            _text(_DIRECTIONS.get(direction, direction)),
            _text(state, cls=_SESSION_CLASS.get(state, "")),
            _text("-" if up is None else age(up)),
            _text(
                f"{s.get('messages_in', 0):,} / {s.get('messages_out', 0):,}",
                cls="num",
            ),
            _text(
                f"{size_text(s.get('bytes_in', 0))} / "
                f"{size_text(s.get('bytes_out', 0))}",
                cls="num",
            ),
            _text(f"{s.get('registrations_held', 0):,}", cls="num"),
            _text(f"{s.get('registrations_sent', 0):,}", cls="num"),
            _text(f"{refused:,}", cls="num warn" if refused else "num"),
        ],
    }


def sessions_table(reliable: dict[str, Any] | None) -> Block:
    """The reliable-transport sessions (`reliable` of /api/v1/node); while
    reliable transport is off, a `hidden` notice saying so (the page leaves
    the section out, the CLI prints the line)."""
    reliable = reliable or {}
    if not reliable.get("enabled"):
        return {**notice(SESSIONS_OFF), "hidden": True}
    return _table(
        SESSIONS_COLUMNS,
        [session_row(s) for s in reliable.get("sessions", [])],
        SESSIONS_EMPTY,
        "GET /api/v1/node (reliable)",
    )


# ---------------------------------------------------------------- NAT traversal
#: How this node's reachability line stands out, by `state` of `nat` in
#: /api/v1/node: green when reached directly, amber while it checks, red
#: behind a NAT with no relay (unreachable but from where it sends).
_REACH_CLASS: Final = {"direct": "ok", "checking": "warn", "no-relay": "bad"}
#: What the page says while the node does not report `nat` (an older decent).
NAT_MISSING: Final = "This node does not report NAT traversal."
REACH_COLUMNS: Final = [
    _text("Name"),
    _text(
        "Reached",
        title="direct: at its RLOCs; relayed via R: it is behind a NAT, and "
        "what is for it goes to its relay R, which passes it on",
    ),
    _text(
        "Global address (NAT)",
        title="the address its NAT gives it: registered at priority 255, "
        "never sent to; its packets from there are accepted",
    ),
    _text("Offers relay", title="whether it relays for members behind NAT"),
    _text("RLOCs", title="the RLOCs it is reached at"),
]
REACH_EMPTY: Final = "No member has registered its name yet."
CLIENTS_COLUMNS: Final = [
    _text("Binding", title="the address and port its NAT gives it: we send there"),
    _text("Private address", title="its own RLOC, behind the NAT"),
    _text("EIDs", title="the EIDs it registered through us"),
    _text("Idle", title="time since we last heard from it over the binding"),
    _text("Up", title="how long we have been relaying for it"),
]
CLIENTS_EMPTY: Final = "No member behind NAT relays through this node yet."
#: The relay clients section of a node that does not offer to relay.
CLIENTS_OFF: Final = "This node does not offer to relay ([decent] relay)."


def reach_text(nat: dict[str, Any] | None) -> str:
    """This node's reachability in one line: "reached directly", "behind
    NAT, relayed via R (seen as A:P)", "behind NAT, no relay found",
    "checking for a NAT" or "NAT traversal off"; "-" when not reported.
    A relay with clients says how many it carries."""
    if nat is None:
        return "-"
    state = nat.get("state")
    seen = nat.get("global_address")
    seen_text = f" (seen as {seen})" if seen else ""
    if state == "direct":
        advertised = ", ".join(str(a) for a in nat.get("advertised") or ())
        text = "reached directly" + (f" (as {advertised})" if advertised else "")
    elif state == "relayed":
        text = f"behind NAT, relayed via {nat.get('relay') or '-'}{seen_text}"
    elif state == "no-relay":
        text = f"behind NAT{seen_text}, no relay found"
    elif state == "checking":
        text = "checking for a NAT"
    elif state == "off":
        text = "NAT traversal off"
    else:
        text = str(state or "-")
    clients = len(nat.get("clients") or ())
    if clients:
        text += f", relay for {clients} member{'s' if clients != 1 else ''}"
    return text


def reach_class(nat: dict[str, Any] | None) -> str:
    """The CSS class of `reach_text`: ok directly, bad with no relay."""
    return "" if nat is None else _REACH_CLASS.get(str(nat.get("state")), "")


def nat_facts(nat: dict[str, Any] | None) -> Block:
    """This node's side of NAT traversal (`nat` of /api/v1/node), as facts
    shown above the members' reachability; a `hidden` notice when the node
    does not report it."""
    if nat is None:
        return {**notice(NAT_MISSING), "hidden": True}
    clients = len(nat.get("clients") or ())
    offers = "yes" if nat.get("offers_relay") else "no"
    if nat.get("offers_relay"):
        offers += f" ({clients} client{'s' if clients != 1 else ''})"
    advertised = [str(a) for a in nat.get("advertised") or ()]
    return _facts(
        [
            ("This node", _text(reach_text(nat), cls=reach_class(nat))),
            ("NAT traversal", _text(nat.get("mode") or "-")),
            ("Relay", _text(nat.get("relay") or "-")),
            (
                "Global address (NAT)",
                _text(
                    nat.get("global_address") or "-",
                    title="the address and port peers see us from",
                ),
            ),
            ("Advertised", _lines(advertised)),
            ("Offers to relay", _text(offers)),
            ("Relays known", _lines(str(r) for r in nat.get("relays_known") or ())),
        ]
    )


def reach_row(m: dict[str, Any], own: str = "") -> dict[str, Any]:
    relayed = m.get("reach") == "relayed"
    via = m.get("via")
    if relayed:
        reached = f"relayed via {via}" if via else "relayed (no relay listed)"
    else:
        reached = str(m.get("reach") or "-")
    name = str(m.get("name") or "-")
    return {
        "cls": "",
        "cells": [
            _text(name + (" (this node)" if own and name == own else "")),
            _text(reached, cls="" if relayed else "ok"),
            _text(m.get("global") or "-"),
            _text("yes" if m.get("relay") else "no"),
            _lines(str(r) for r in m.get("rlocs") or ()),
        ],
    }


def reach_table(nat: dict[str, Any] | None, own: str = "") -> Block:
    """How each member with a name is reached (`nat.members`): directly, or
    relayed via a relay, with the address its NAT gives it; `own` marks
    this node's row. `hidden` while the node does not report it."""
    if nat is None:
        return {**notice(NAT_MISSING), "hidden": True}
    return _table(
        REACH_COLUMNS,
        [reach_row(m, own) for m in nat.get("members") or ()],
        REACH_EMPTY,
        "GET /api/v1/node (nat)",
    )


def client_row(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "cls": "",
        "cells": [
            _text(c.get("binding")),
            _text(c.get("private")),
            _lines((str(e) for e in c.get("eids") or ()), cls="eid"),
            _text(age(c.get("idle_s"))),
            _text(age(c.get("up_s"))),
        ],
    }


def clients_table(nat: dict[str, Any] | None) -> Block:
    """The members behind NAT this node relays for (`nat.clients`); a
    `hidden` notice when it does not offer to relay and carries none."""
    nat = nat or {}
    clients = nat.get("clients") or []
    if not nat.get("offers_relay") and not clients:
        return {**notice(CLIENTS_OFF), "hidden": True}
    return _table(
        CLIENTS_COLUMNS,
        [client_row(c) for c in clients],
        CLIENTS_EMPTY,
        "GET /api/v1/node (nat)",
    )


# ---------------------------------------------------------------- pull mode
#: The Map-Server sets section of a push-mode node: not on the page at all.
PULL_OFF: Final = "This node runs in push mode: no Map-Server sets."
PULL_COLUMNS: Final = [
    _text("Index", title="the EID hash modulo the modulus selects the set"),
    _text("DNS name", title="<index>.<dns suffix>: its A and AAAA records"),
    _text("Map-Servers", title="the addresses DNS gave for the name"),
    _text("This node", title="whether DNS lists one of our RLOCs in the set"),
    _text("Resolved", title="time since DNS last answered for the name"),
    _text("Next", title="time until the name is resolved again"),
    _text("State"),
]
PULL_EMPTY: Final = "No Map-Server set (modulus 0)."
_HASH_TEXT: Final = {
    "rfc9962": "rfc9962: SHA-256 of the EID string, modulo the modulus",
    "lispers.net": 'lispers.net: HMAC-SHA-256 keyed "lisp-decent", first 6 bytes',
}


def set_state(s: dict[str, Any]) -> tuple[str, str]:
    """A set's state line and its class: failing (the error, and whether
    its last addresses are still used), resolving, or resolved."""
    error = s.get("error")
    if error:
        kept = ", last addresses kept" if s.get("addresses") else ""
        tries = int(s.get("failures") or 0)
        again = f" ({tries} failures)" if tries > 1 else ""
        return f"not resolved: {error}{again}{kept}", "bad"
    if s.get("resolved_at") is None:
        return "resolving", "warn"
    return "resolved", "ok"


def pull_set_row(s: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    state, cls = set_state(s)
    ours = bool(s.get("ours"))
    refresh = s.get("refresh_in_s")
    return {
        "cls": " ".join(
            c for c in ("ours" if ours else "", "failing" if cls == "bad" else "") if c
        ),
        "cells": [
            _text(s.get("index"), cls="num"),
            _text(s.get("name"), cls="mono"),
            _lines((str(a) for a in s.get("addresses") or ()), cls="rlocs"),
            _text("ours (Map-Server)" if ours else "-", cls="ok" if ours else ""),
            _text(ago(s.get("resolved_at"), now)),
            _text("-" if refresh is None else age(refresh)),
            _text(state, cls=cls),
        ],
    }


def pull_sets_table(pull: dict[str, Any] | None, now: float | None = None) -> Block:
    """Pull mode's Map-Server sets (`pull.sets` of /api/v1/node), ours and
    failing ones marked; a `hidden` notice in push mode."""
    if pull is None:
        return {**notice(PULL_OFF), "hidden": True}
    now = time.time() if now is None else now
    return _table(
        PULL_COLUMNS,
        [pull_set_row(s, now) for s in pull.get("sets") or ()],
        PULL_EMPTY,
        "GET /api/v1/node (pull)",
    )


def pull_facts(pull: dict[str, Any] | None) -> Block:
    """How pull mode picks a set (modulus, hash, mask, DNS suffix, lookup
    lengths), which sets are ours, and whether DNS answers for all; shown
    above the sets. A `hidden` notice in push mode."""
    if pull is None:
        return {**notice(PULL_OFF), "hidden": True}
    sets = list(pull.get("sets") or ())
    failing = [s for s in sets if s.get("error")]
    waiting = [s for s in sets if not s.get("error") and s.get("resolved_at") is None]
    if failing:
        dns = _text(
            f"{len(failing)} of {len(sets)} failing: "
            + ", ".join(str(s.get("name")) for s in failing),
            cls="bad",
        )
    elif waiting:
        dns = _text(f"{len(waiting)} of {len(sets)} not resolved yet", cls="warn")
    else:
        dns = _text(f"all {len(sets)} resolved", cls="ok")
    mask = int(pull.get("hash_mask") or 0)
    ours = [str(i) for i in pull.get("ours") or ()]
    lengths = [
        f"{r.get('prefix')} looked up as /{r.get('length')}"
        for r in pull.get("lookup_lengths") or ()
    ]
    hash_name = str(pull.get("hash") or "-")
    return _facts(
        [
            ("Mode", _text("pull (RFC 9962 5): Map-Server sets named by DNS")),
            ("Modulus", _text(pull.get("modulus"))),
            ("Hash", _text(_HASH_TEXT.get(hash_name, hash_name))),
            (
                "Hash mask",
                _text(f"{mask} bytes of the EID string" if mask else "0 (all of it)"),
            ),
            ("DNS names", _text(f"<index>.{pull.get('dns_suffix')}", cls="mono")),
            ("Lookup lengths", _lines(lengths)),
            (
                "This node serves",
                _text(
                    "set " + ", ".join(ours)
                    if ours
                    else "no set (DNS lists none of our RLOCs)"
                ),
            ),
            ("DNS", dns),
        ]
    )


def pull_choice_facts(choice: dict[str, Any]) -> list[tuple[str, Cell]]:
    """Why a looked-up EID goes to its Map-Server set (`pull` of a lookup)."""
    addresses = [str(a) for a in choice.get("addresses") or ()]
    if choice.get("ours"):
        here = "in this set: it holds the set's registrations and answers itself"
    else:
        here = (
            "not in this set: lookups go to the set's Map-Servers, and only "
            "they hold its registrations"
        )
    return [
        (
            "Map-Server set",
            _text(f"{choice.get('index')} ({choice.get('name')})", cls="mono"),
        ),
        ("Chosen by", _text(choice.get("why"), cls="mono")),
        ("Hashed string", _text(choice.get("string"), cls="eid")),
        ("Set's Map-Servers", _lines(addresses or ["none yet (not resolved)"])),
        ("This node", _text(here, cls="ok" if choice.get("ours") else "")),
    ]


# ---------------------------------------------------------------- layers
LAYER_OFF: Final = "This node is in no layer and knows of none (RFC 9962 4.4)."


def layer_facts(layer: dict[str, Any] | None) -> Block:
    """Layered seed-groups (`layer` of /api/v1/node): our layer, the core
    we register it to, and the layers the core referred us to."""
    if layer is None:
        return {**notice(LAYER_OFF), "hidden": True}
    rows: list[tuple[str, Cell]] = []
    if layer.get("group"):
        prefixes = ", ".join(str(p) for p in layer.get("prefixes") or ())
        rows.append(("Our layer", _text(f"group {layer['group']}, serving {prefixes}")))
        rows.append(
            ("Core seed-group", _lines(str(a) for a in layer.get("core") or ()))
        )
    known = [
        f"{k.get('prefix')}: " + ", ".join(str(m) for m in k.get("members") or ())
        for k in layer.get("known") or ()
    ]
    rows.append(
        ("Layers known", _lines(known or ["none yet (a lookup asks the core)"]))
    )
    return _facts(rows)


CACHE_COLUMNS: Final = [
    _text("EID-Prefix or (S,G)"),
    _text("Uptime"),
    _text("TTL"),
    _text("RLOC Record"),
    _text("Map-Reply Source"),
    _text("RLOC State"),
    _text("Unicast Priority/Weight"),
    _text("Multicast Priority/Weight"),
    _text("packet-count"),
    _text("byte-count"),
]


def cache_row(e: dict[str, Any]) -> dict[str, Any]:
    locs = e.get("rlocs", [])
    if e.get("negative") or not locs:
        record = [f"negative, action {e.get('action') or 'none'}"]
        state, unicast, multicast = ["-"], ["-"], ["-"]
    else:
        record, state, unicast, multicast = [], [], [], []
        for loc in locs:
            lines = locator_lines(loc)
            record.extend(lines)
            pad = [""] * (len(lines) - 1)
            state += [loc.get("state", "-"), *pad]
            unicast += [f"{loc['priority']}/{loc['weight']}", *pad]
            multicast += [f"{loc['m_priority']}/{loc['m_weight']}", *pad]
    return {
        "cls": "negative" if e.get("negative") else "",
        "cells": [
            _text(e["eid"], cls="eid"),
            _text(age(e.get("uptime_s"))),
            _text(age(e.get("ttl_s"))),
            _lines(record, cls="rlocs"),
            _text(e.get("source", "-")),
            _lines(state),
            _lines(unicast),
            _lines(multicast),
            _text(e.get("packet-count", 0), cls="num"),
            _text(e.get("byte-count", 0), cls="num"),
        ],
    }


def cache_table(entries: list[dict[str, Any]]) -> Block:
    return _table(
        CACHE_COLUMNS,
        [cache_row(e) for e in entries],
        "The map-cache is empty.",
        "use the map-cache lookup or GET /api/v1/map-cache for the rest",
    )


# ---------------------------------------------------------------- site detail
RLOC_COLUMNS: Final = [
    _text("RLOC"),
    _text("State"),
    _text("up/uw/mp/mw", title="unicast priority/weight, multicast priority/weight"),
    _text("RLE members (level, name)"),
]
REG_COLUMNS: Final = [
    _text("xTR-ID"),
    _text("Site-ID"),
    _text("Registrant"),
    _text("First Registered"),
    _text("Last Registered"),
    _text("TTL left"),
    _text("Registration Flags", title=FLAGS_LEGEND),
    _text("RLOC-set"),
]


def _rloc_rows(rlocs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for loc in rlocs:
        members = [member_text(m) for m in loc.get("rle") or []]
        rows.append(
            {
                "cls": "",
                "cells": [
                    _text("rle" if "rle" in loc else locator_lines(loc)[0]),
                    _text("up-state" if loc.get("reachable", True) else "down-state"),
                    _text(
                        f"{loc['priority']}/{loc['weight']}/"
                        f"{loc['m_priority']}/{loc['m_weight']}"
                    ),
                    _lines(members or ["-"], cls="rlocs"),
                ],
            }
        )
    return rows


def site_blocks(s: dict[str, Any], now: float | None = None) -> dict[str, Block]:
    """The detail of one registration: facts, RLOC set, per-xTR registrations."""
    now = time.time() if now is None else now
    regs = s.get("registrations", [])
    latest = (
        max(regs, key=lambda r: time_value(r.get("last_registered_at")) or 0.0)
        if regs
        else {}
    )
    semantics = "merge" if s.get("merge") else "replacement"
    facts = [
        ("Site name", _text(s.get("site"))),
        ("EID-prefix", _text(s["eid"], cls="eid")),
        ("Registered", _text("yes, dynamic" if s.get("registered") else "no")),
        ("Last registerer", _text(s.get("last_registerer"))),
        ("xTR-ID", _text(latest.get("xtr_id") or "-")),
        ("Site-ID", _text(latest.get("site_id", 0))),
        ("First registered", _text(ago(s.get("first_registered_at"), now))),
        ("Last registered", _text(ago(s.get("last_registered_at"), now))),
        ("TTL left", _ttl(s)),
        ("Auth type", _text(s.get("auth", "-"))),
        (
            "Registration flags",
            _text(s.get("flags", ""), title=flags_title(s.get("flags", ""))),
        ),
        ("Proxy Map-Reply", _text("yes" if s.get("proxy_reply") else "no")),
        ("RLOC-set semantics", _text(f"{semantics}-semantics")),
    ]
    reg_rows = [
        {
            "cls": "",
            "cells": [
                _text(r.get("xtr_id") or "-", cls="mono"),
                _text(r.get("site_id", 0)),
                _text(
                    f"{r.get('registrant')} via {r['via']}"
                    if r.get("via")
                    else r.get("registrant")
                ),
                _text(ago(r.get("first_registered_at"), now)),
                _text(ago(r.get("last_registered_at"), now)),
                _ttl(r),
                _text(r.get("flags", ""), title=flags_title(r.get("flags", ""))),
                rloc_set(r.get("rlocs", [])),
            ],
        }
        for r in regs
    ]
    return {
        "facts": _facts(facts),
        "rlocs": _table(
            RLOC_COLUMNS,
            _rloc_rows(s.get("rlocs", [])),
            "No RLOCs registered.",
            "GET /api/v1/sites",
        ),
        "registrations": _table(
            REG_COLUMNS, reg_rows, "No registrations.", "GET /api/v1/sites"
        ),
    }


# ---------------------------------------------------------------- lookups
def lookup_block(result: dict[str, Any], where: str) -> Block:
    """The answer of a site-cache or map-cache lookup, as facts; in pull
    mode followed by the Map-Server set the EID hashes to, and why."""
    block = _lookup_facts(result, where)
    choice = result.get("pull")
    if isinstance(choice, dict):
        block["items"] += _facts(pull_choice_facts(choice))["items"]
    layer = result.get("layer")
    if isinstance(layer, dict):
        block["items"] += _facts([("Layer", _text(layer.get("why")))])["items"]
    return block


def _lookup_facts(result: dict[str, Any], where: str) -> Block:
    query = _text(result.get("query"), cls="eid")
    if where == "map-cache":
        if not result.get("found"):
            return _facts(
                [
                    ("Query", query),
                    (
                        "Answer",
                        _text(
                            "not in map-cache: no entry covers it, so the ITR "
                            "would send a Map-Request"
                        ),
                    ),
                    *_resolver_facts(result.get("resolver") or {}),
                ]
            )
        e = result["entry"]
        row = cache_row(e)["cells"]
        items = [("Query", query), ("Longest match", _text(e["eid"], cls="eid"))]
        if e.get("negative") or not e.get("rlocs"):
            items += [
                ("Answer", _text("negative map-cache entry")),
                ("Prefix", _text(e["eid"], cls="eid")),
                ("TTL left", _text(age(e.get("ttl_s")))),
                ("Action", _text(e.get("action") or "-")),
            ]
        else:
            items += [
                ("RLOC Record", row[3]),
                ("RLOC State", row[5]),
                ("Unicast Priority/Weight", row[6]),
                ("TTL left", _text(age(e.get("ttl_s")))),
            ]
        items.append(("Map-Reply Source", _text(e.get("source"))))
        return _facts(items)
    if not result.get("found"):
        return _facts(
            [
                ("Query", query),
                ("Answer", _text("negative: no registration covers it")),
                ("Negative prefix", _text(result.get("prefix"), cls="eid")),
                ("TTL", _text(_minutes(result.get("ttl_min")))),
                ("Action", _text(result.get("action"))),
            ]
        )
    s = result["entry"]
    return _facts(
        [
            ("Query", query),
            ("Longest match", _text(s["eid"], href=site_href(s["eid"]), cls="eid")),
            ("RLOC-set", rloc_set(s.get("rlocs", []))),
            ("Last registerer", _text(s.get("last_registerer"))),
            ("TTL left", _ttl(s)),
            ("Registration flags", _text(s.get("flags", ""))),
        ]
    )


def _resolver_facts(answer: dict[str, Any]) -> list[tuple[str, Cell]]:
    """What this node's Map-Resolver would answer for a map-cache miss."""
    if answer.get("found"):
        s = answer["entry"]
        return [
            ("Map-Resolver answer", _text("registered")),
            ("Registered match", _text(s["eid"], href=site_href(s["eid"]), cls="eid")),
            ("RLOC-set", rloc_set(s.get("rlocs", []))),
        ]
    if "prefix" not in answer:
        return []
    return [
        ("Map-Resolver answer", _text("negative: no registration covers it")),
        ("Negative prefix", _text(answer.get("prefix"), cls="eid")),
        ("TTL", _text(_minutes(answer.get("ttl_min")))),
        ("Action", _text(answer.get("action"))),
    ]


def _minutes(ttl_min: object) -> str:
    """A record TTL (minutes on the wire) as `age` shows a duration."""
    return age(ttl_min * 60.0) if isinstance(ttl_min, int | float) else "-"


# ---------------------------------------------------------------- pages
#: The live views and the blocks each shows.
VIEWS: Final = {
    "overview": (
        "sites",
        "pull",
        "pull-sets",
        "layer",
        "peers",
        "sessions",
        "map-cache",
    ),
    "sites": ("sites",),
    "peers": (
        "peers",
        "nat",
        "reach",
        "relay-clients",
        "sessions",
        "refused",
        "rejections",
    ),
    "map-cache": ("map-cache",),
    "site": ("facts", "rlocs", "registrations"),
}


def find_site(status: Source, eid: str) -> dict[str, Any] | None:
    return next((s for s in status.sites() if s["eid"] == eid), None)


def build(status: Source, view: str, eid: str = "") -> Model:
    """The model of one live view (KeyError for an unknown view)."""
    blocks: dict[str, Block] = {}
    info = status.node_info()
    for name in VIEWS[view]:
        if name == "sites":
            blocks[name] = sites_table(status.sites())
        elif name == "peers":
            blocks[name] = peers_table(status.peers())
        elif name == "sessions":
            blocks[name] = sessions_table(info.get("reliable"))
        elif name == "nat":
            blocks[name] = nat_facts(info.get("nat"))
        elif name == "pull":
            blocks[name] = pull_facts(info.get("pull"))
        elif name == "layer":
            blocks[name] = layer_facts(info.get("layer"))
        elif name == "pull-sets":
            blocks[name] = pull_sets_table(info.get("pull"))
        elif name == "reach":
            blocks[name] = reach_table(info.get("nat"), str(info.get("name") or ""))
        elif name == "relay-clients":
            blocks[name] = clients_table(info.get("nat"))
        elif name == "refused":
            blocks[name] = refused_table(info.get("refused", []))
        elif name == "rejections":
            blocks[name] = rejections_table(status.rejections())
        elif name == "map-cache":
            blocks[name] = cache_table(status.map_cache())
    if view == "site":
        entry = find_site(status, eid)
        if entry is None:
            blocks["facts"] = notice(
                f"{eid} is not registered (any more).", "notice warn"
            )
            blocks["rlocs"] = notice("")
            blocks["registrations"] = notice("")
        else:
            blocks.update(site_blocks(entry))
    return {"header": header(info), "blocks": blocks}
