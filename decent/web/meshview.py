"""The /mesh page (mesh map, traffic over time) and its JSON: /api/v1/mesh, /traffic.

The map is this node's view of the mesh: itself, the group's members (the
membership), and the plain xTRs whose registrations a member carries on to
the group (`via` in a site registration: a relayed link; NAT relays come
later). A link from this node to a member is up or down by the RLOC-probe
state of that RLOC in the map-cache when the map-cache holds it, else by the
member's registration aging (current or aging out). Each node shows how
many registrations it made.

Both pictures are drawn by assets/mesh.js with Chart.js 3 (assets/
chart.min.js, vendored from Debian's libjs-chart.js, MIT; see
chart.LICENSE.txt), the map as a bubble chart (members on a circle round
this node, links as two-point line datasets) rather than as SVG built by
hand: one library draws both pictures with the same tooltips, legend and
resizing, it runs under the page's strict CSP (no inline script or style,
no eval), and text only ever reaches the canvas, never the DOM as HTML.
The page polls the two JSON endpoints; it says "stalled" when its node
stops answering.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

from aiohttp import web

from decent.web import render, views

#: Nodes drawn at most of each kind; the map of a larger mesh says how many
#: it left out (the peers table lists them all).
MAX_MEMBERS: Final = 64
MAX_XTRS: Final = 64
#: Seconds the page waits between two polls of /api/v1/mesh.
POLL_S: Final = 2.0


class MeshSource(views.Source, Protocol):
    def health(self) -> dict[str, Any]: ...


class TrafficSource(Protocol):
    """The traffic history (decent.net.traffic.TrafficHistory)."""

    def series(self) -> dict[str, Any]: ...


MESH_STATUS: web.AppKey[MeshSource] = web.AppKey("mesh_status", MeshSource)
TRAFFIC: web.AppKey[TrafficSource | None] = web.AppKey("traffic")
#: Scripts of the /mesh page, in load order (served by app.asset).
SCRIPTS: Final = ("chart.min.js", "mesh.js")


def _probe_states(cache: list[dict[str, Any]]) -> dict[str, tuple[str, float | None]]:
    """RLOC -> ("up" | "down", best RTT in ms) over the map-cache's locators:
    up if any entry has it up."""
    out: dict[str, tuple[str, float | None]] = {}
    for entry in cache:
        for loc in entry.get("rlocs", ()):
            rloc = loc.get("address")
            if not isinstance(rloc, str):
                continue
            state = "up" if loc.get("state") == "up" else "down"
            rtt = loc.get("rtt_ms")
            held = out.get(rloc)
            if held is not None:
                state = "up" if "up" in (state, held[0]) else "down"
                rtts = [r for r in (rtt, held[1]) if isinstance(r, int | float)]
                rtt = min(rtts) if rtts else None
            out[rloc] = (state, rtt if isinstance(rtt, int | float) else None)
    return out


def mesh(
    peers: list[dict[str, Any]],
    sites: list[dict[str, Any]],
    cache: list[dict[str, Any]],
) -> dict[str, Any]:
    """The mesh map's JSON from the peers, sites and map-cache of the JSON
    API."""
    registered: dict[str, int] = {}
    relayed: dict[str, int] = {}
    xtrs: dict[str, dict[str, Any]] = {}
    for site in sites:
        for reg in site.get("registrations", ()):
            who = str(reg.get("registrant"))
            registered[who] = registered.get(who, 0) + 1
            via = reg.get("via")
            if not via:
                continue
            relayed[via] = relayed.get(via, 0) + 1
            xtr = xtrs.setdefault(
                who, {"rloc": who, "site": site.get("site"), "via": via, "ttl_s": 0.0}
            )
            xtr["ttl_s"] = max(xtr["ttl_s"], float(reg.get("ttl_s") or 0.0))
    me = next((p["rloc"] for p in peers if p.get("self")), None)
    probes = _probe_states(cache)
    members, links = [], []
    for p in peers[:MAX_MEMBERS]:
        rloc = p["rloc"]
        members.append(
            {
                "rloc": rloc,
                "name": p.get("name"),
                "self": bool(p.get("self")),
                "state": p.get("state", "current"),
                "registrations": registered.get(rloc, 0),
                "relayed": relayed.get(rloc, 0),
            }
        )
        if p.get("self") or me is None:
            continue
        probed = probes.get(rloc)
        if probed is not None:
            state, rtt, source = probed[0], probed[1], "rloc-probe"
        else:
            up = p.get("state") == "current"
            state, rtt, source = ("up" if up else "down"), None, "membership"
        links.append(
            {
                "from": me,
                "to": rloc,
                "kind": "direct",
                "state": state,
                "source": source,
                "rtt_ms": rtt if rtt is not None else p.get("rtt_ms"),
            }
        )
    drawn = {m["rloc"] for m in members}
    shown_xtrs = []
    for xtr in sorted(xtrs.values(), key=lambda x: x["rloc"])[:MAX_XTRS]:
        state = "up" if xtr["ttl_s"] > 0 else "down"
        shown_xtrs.append(
            {
                "rloc": xtr["rloc"],
                "site": xtr["site"],
                "via": xtr["via"],
                "state": state,
                "registrations": registered.get(xtr["rloc"], 0),
            }
        )
        if xtr["via"] in drawn:
            links.append(
                {
                    "from": xtr["via"],
                    "to": xtr["rloc"],
                    "kind": "relayed",
                    "state": state,
                    "source": "registration",
                    "rtt_ms": None,
                }
            )
    return {
        "self": me,
        "members": members,
        "xtrs": shown_xtrs,
        "links": links,
        "not_shown": {
            "members": max(0, len(peers) - MAX_MEMBERS),
            "xtrs": max(0, len(xtrs) - MAX_XTRS),
        },
    }


#: What /api/v1/traffic says while no sampler runs (a bare make_app).
NO_TRAFFIC: Final[dict[str, Any]] = {
    "sample_s": None,
    "window_s": None,
    "series": [],
    "peers": [],
    "others": None,
    "samples": [],
}


def traffic(
    source: TrafficSource | None, peers: list[dict[str, Any]]
) -> dict[str, Any]:
    """The traffic history's series, each peer named as the peers table
    names it."""
    if source is None:
        return dict(NO_TRAFFIC)
    out = dict(source.series())
    names = {p["rloc"]: p.get("name") for p in peers}
    out["peers"] = [{**row, "name": names.get(row["rloc"])} for row in out["peers"]]
    return out


# ---------------------------------------------------------------- handlers
async def api_mesh(request: web.Request) -> web.Response:
    status = request.app[MESH_STATUS]
    model = mesh(status.peers(), status.sites(), status.map_cache())
    info = status.node_info()
    model["node"] = {
        "name": info.get("name"),
        "rloc": info.get("rloc"),
        "health": status.health(),
    }
    return web.json_response(model)


async def api_traffic(request: web.Request) -> web.Response:
    status = request.app[MESH_STATUS]
    return web.json_response(traffic(request.app[TRAFFIC], status.peers()))


_BODY: Final = (
    '<section id="s-mesh"><h2>Mesh map</h2>'
    '<p class="hint">This node, the members of its group and the plain xTRs '
    "a member relays, with the links this node sees. Bubble size: "
    "registrations made. Hover for details.</p>"
    '<div class="chart map"><canvas id="mesh-map" '
    'aria-label="mesh map" role="img"></canvas></div>'
    '<ul class="key">'
    '<li><i class="k-self"></i>this node</li>'
    '<li><i class="k-up"></i>member current, link up</li>'
    '<li><i class="k-aging"></i>member aging out</li>'
    '<li><i class="k-down"></i>link down (RLOC-probe or registration)</li>'
    '<li><i class="k-xtr"></i>plain xTR, relayed by a member</li>'
    "</ul>"
    '<p id="mesh-note" class="more"></p></section>'
    '<section id="s-traffic"><h2>Traffic, the last hour</h2>'
    '<p class="hint" id="traffic-note">Sampled every '
    '<span id="traffic-sample">-</span> s. Data plane: received above the '
    "axis, sent below it.</p>"
    '<div class="charts">'
    '<div class="chart"><h3>Bytes a second, per peer</h3>'
    '<canvas id="traffic-bytes" aria-label="bytes a second" role="img"></canvas>'
    "</div>"
    '<div class="chart"><h3>Packets a second, per peer</h3>'
    '<canvas id="traffic-packets" aria-label="packets a second" role="img">'
    "</canvas></div>"
    '<div class="chart"><h3>Control messages a second</h3>'
    '<canvas id="traffic-control" aria-label="control messages a second" '
    'role="img"></canvas></div></div></section>'
)


async def page_mesh(request: web.Request) -> web.Response:
    status = request.app[MESH_STATUS]
    model: views.Model = {"header": views.header(status.node_info()), "blocks": {}}
    text = render.page(model, title="Mesh", body=_BODY, scripts=SCRIPTS)
    return web.Response(text=text, content_type="text/html")


def setup(
    app: web.Application, status: MeshSource, traffic: TrafficSource | None
) -> None:
    """Add the /mesh page and its JSON to `app` (decent.web.app.make_app)."""
    app[MESH_STATUS] = status
    app[TRAFFIC] = traffic
    app.router.add_get("/mesh", page_mesh)
    # Versioned by app._version_api like the rest: /api/v1/mesh, /api/v1/traffic.
    app.router.add_get("/api/mesh", api_mesh)
    app.router.add_get("/api/traffic", api_traffic)
