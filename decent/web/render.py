"""Server-side HTML of the status pages, every value through html.escape."""

from __future__ import annotations

from html import escape
from typing import Any, Final

from decent.web.views import FLAGS, Block, Cell, Model

#: Sections a page can show, in page order: (id, heading, its own URL).
SECTIONS: Final = {
    "sites": ("Site information", "/sites"),
    "pull-sets": ("Map-Server sets (pull mode)", "/"),
    "layer": ("Layers (RFC 9962 4.4)", "/"),
    "peers": ("Peers", "/peers"),
    "reach": ("Reachability", "/peers"),
    "relay-clients": ("Relay clients (members behind NAT we relay for)", "/peers"),
    "sessions": ("Reliable-transport sessions", "/peers"),
    "refused": ("Refused registrants (over a quota or their rate)", "/peers"),
    "rejections": ("Recent rejections", "/peers"),
    "map-cache": ("Map-cache", "/map-cache"),
}
#: Blocks shown at the top of another's section rather than in their own:
#: this node's reachability above the members', pull mode's hash above
#: its Map-Server sets.
INSIDE: Final = {"nat": "reach", "pull": "pull-sets"}
NAV: Final = (
    ("/", "Overview"),
    ("/sites", "Sites"),
    ("/peers", "Peers"),
    ("/map-cache", "Map-cache"),
    ("/mesh", "Mesh"),
    ("/metrics", "Metrics"),
    ("/api/v1/node", "JSON API"),
)
HEADER_FIELDS: Final = (
    ("rloc", "RLOC"),
    ("mode", "Mode"),
    ("group", "Group"),
    ("uptime", "Uptime"),
    ("health", "Health"),
    ("counts", "Holds"),
    ("reach", "Reachability"),
)
#: Header fields whose value carries a class (ok, warn, bad) of its own.
HEADER_CLASSES: Final = {"reach": "reach_cls"}
EID_HINT: Final = "1.1.1.1, 10.0.0.0/8, [iid]address, 'name' or S->G"


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _attrs(**attrs: str | None) -> str:
    return "".join(
        f' {k.rstrip("_").replace("_", "-")}="{e(v)}"'
        for k, v in attrs.items()
        if v is not None and v != ""
    )


def cell(c: Cell, tag: str = "td") -> str:
    lines = c.get("lines")
    parts = [str(x) for x in lines] if lines is not None else [str(c.get("text", ""))]
    out = []
    href = c.get("href")
    for i, line in enumerate(parts):
        if i == 0 and isinstance(href, str) and href.startswith("/"):
            out.append(f'<a href="{e(href)}">{e(line)}</a>')
        else:
            out.append(e(line))
    return (
        f"<{tag}{_attrs(class_=c.get('cls'), title=c.get('title'))}>"
        f"{'<br>'.join(out)}</{tag}>"
    )


def block_body(b: Block) -> str:
    kind = b.get("kind")
    if kind == "table":
        head = "".join(cell(c, "th") for c in b["columns"])
        rows = "".join(
            f"<tr{_attrs(class_=r.get('cls'))}>"
            + "".join(cell(c) for c in r["cells"])
            + "</tr>"
            for r in b["rows"]
        )
        out = (
            f'<table class="grid"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
        if not b["rows"]:
            out += f'<p class="empty">{e(b.get("empty"))}</p>'
        if b.get("more"):
            more = f"{b['more']} more not shown: {b['more_hint']}"
            out += f'<p class="more">{e(more)}</p>'
        return out
    if kind == "facts":
        items = "".join(
            f"<div><dt>{e(i['label'])}</dt>{cell(i['value'], 'dd')}</div>"
            for i in b["items"]
        )
        return f'<dl class="facts">{items}</dl>'
    text = b.get("text", "")
    return f'<p class="{e(b.get("cls", "notice"))}">{e(text)}</p>' if text else ""


def block(name: str, b: Block) -> str:
    return f'<div class="block" id="b-{e(name)}">{block_body(b)}</div>'


def lookup_form(where: str, value: str = "") -> str:
    label = "Site-Cache" if where == "sites" else "Map-Cache"
    return (
        f'<form class="lookup" action="/lookup" method="get">'
        f'<input type="hidden" name="in" value="{e(where)}">'
        f"<label>Enter EID for {label} lookup: "
        f'<input type="text" name="eid" value="{e(value)}" '
        f'placeholder="{e(EID_HINT)}" required></label> '
        f'<button type="submit">Submit</button></form>'
    )


def clear_form() -> str:
    return (
        '<form class="clear" action="/map-cache/clear" method="post">'
        '<button type="submit">clear cache</button> '
        '<label>admin token <input type="password" name="token" '
        'autocomplete="off"></label> '
        '<span class="hint">(allowed from this host, or elsewhere with '
        "[web] admin_token)</span></form>"
    )


def flags_legend() -> str:
    items = "".join(f"<li><b>{e(c)}</b> {e(text)}</li>" for c, text in FLAGS)
    return (
        '<details class="legend"><summary>Registration flags '
        "p-s-I-t-r-m-n: upper case = set</summary>"
        f"<ul>{items}</ul></details>"
    )


def section(name: str, model: Model, lookup_value: str = "") -> str:
    """One section of a page; "" for a `hidden` block (a feature that is
    off, such as reliable transport), which the page then leaves out, and
    for a block shown `INSIDE` another's section."""
    if name in INSIDE:
        return ""
    heading, url = SECTIONS[name]
    if model["blocks"][name].get("hidden"):
        return ""
    extra_top = "".join(
        block(inner, model["blocks"][inner])
        for inner, host in INSIDE.items()
        if host == name and inner in model["blocks"]
    )
    extra_bottom = ""
    if name == "sites":
        extra_top += lookup_form("sites", lookup_value)
        extra_bottom = flags_legend()
    elif name == "map-cache":
        extra_top += lookup_form("map-cache", lookup_value) + clear_form()
    return (
        f'<section id="s-{e(name)}"><h2><a href="{e(url)}">{e(heading)}</a></h2>'
        f"{extra_top}{block(name, model['blocks'][name])}{extra_bottom}</section>"
    )


def page(
    model: Model,
    *,
    title: str,
    body: str,
    view: str = "",
    eid: str = "",
    message: Block | None = None,
    scripts: tuple[str, ...] = (),
) -> str:
    """A whole page: header from the model, then body (already escaped HTML).

    `view` names the live view (assets/page.js subscribes to /events for it);
    pages without one (lookup answers, errors) stay as served, unless one of
    `scripts` (more of /assets, after page.js) updates them itself.
    """
    h: dict[str, Any] = model["header"]
    health = "ok" if h.get("health_ok") else "bad"
    classes = {"health": health} | {
        key: str(h.get(cls) or "") for key, cls in HEADER_CLASSES.items()
    }
    fields = "".join(
        f'<div><dt>{e(label)}</dt><dd id="h-{e(key)}"'
        + _attrs(class_=classes.get(key))
        + f">{e(h.get(key, ''))}</dd></div>"
        for key, label in HEADER_FIELDS
    )
    nav = "".join(f'<a href="{e(url)}">{e(text)}</a>' for url, text in NAV)
    js = "".join(
        f'<script src="/assets/{e(name)}" defer></script>'
        for name in ("page.js", *scripts)
    )
    note = ""
    if message is not None:
        note = f'<div class="message">{block_body(message)}</div>'
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · {e(h.get('name'))} · decent</title>"
        '<link rel="stylesheet" href="/assets/page.css">'
        '<link rel="icon" href="data:,">'
        f"{js}</head>"
        f"<body{_attrs(data_view=view, data_eid=eid)}>"
        '<header><div class="title"><h1>decent <span id="h-name">'
        f"{e(h.get('name'))}</span></h1>"
        '<span id="live" class="live" title="updates itself while this is green">'
        f"{'live' if view else ''}</span></div>"
        f'<dl class="hdr">{fields}</dl>'
        f'<p id="h-stale" class="stale">{e(h.get("stale"))}</p>'
        f"<nav>{nav}</nav></header>"
        f"<main>{note}{body}</main></body></html>\n"
    )
