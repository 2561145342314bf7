"""The aiohttp application: status pages, live events, metrics and the JSON API."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from importlib import resources
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from decent.web import meshview, metrics, render, views
from decent.web.limits import (
    HOSTS,
    LIMITS,
    HostCheck,
    WebLimits,
    limits_middleware,
    streaming,
)
from decent.web.live import LiveHub


class StatusSource(Protocol):
    """What the web layer may ask of a node; it never mutates the node."""

    def health(self) -> dict[str, Any]: ...
    def node_info(self) -> dict[str, Any]: ...
    def sites(self) -> list[dict[str, Any]]: ...
    def peers(self) -> list[dict[str, Any]]: ...
    def map_cache(self) -> list[dict[str, Any]]: ...
    def lookup(self, text: str) -> dict[str, Any]: ...
    def cache_lookup(self, text: str) -> dict[str, Any]: ...
    def rejections(self) -> list[dict[str, Any]]: ...
    def changes(self) -> int: ...
    # The two state-changing actions, and only after `admin_refusal` says yes.
    def clear_map_cache(self) -> int: ...
    def revoke(self, token: str) -> dict[str, Any]: ...


STATUS: web.AppKey[StatusSource] = web.AppKey("status", StatusSource)
ADMIN_TOKEN: web.AppKey[str | None] = web.AppKey("admin_token", str)
#: Set on shutdown so live streams end instead of holding cleanup up.
CLOSING: web.AppKey[asyncio.Event] = web.AppKey("closing", asyncio.Event)
LIVE_INTERVAL: web.AppKey[float] = web.AppKey("live_interval", float)
LIVE_REFRESH: web.AppKey[float] = web.AppKey("live_refresh", float)
LIVE: web.AppKey[LiveHub] = web.AppKey("live", LiveHub)
_ASSETS: Final = {
    "page.js": "text/javascript",
    "page.css": "text/css",
    # The /mesh page (decent.web.meshview): Chart.js 3.9.1, vendored.
    "mesh.js": "text/javascript",
    "chart.min.js": "text/javascript",
}
#: No external assets, no inline script, no framing: a value that slipped
#: through escaping still could not run.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: under it browsers send `Origin: null` even with a
    # same-origin form POST, which admin_refusal must treat as cross-site.
    "Referrer-Policy": "same-origin",
}
#: Bytes of a POST /api/revoke body: a token is a few hundred bytes.
MAX_REVOKE_BODY: Final = 4096


def _status(request: web.Request) -> StatusSource:
    return request.app[STATUS]


async def healthz(request: web.Request) -> web.Response:
    health = _status(request).health()
    return web.json_response(health, status=200 if health["ok"] else 503)


async def api_node(request: web.Request) -> web.Response:
    return web.json_response(_status(request).node_info())


async def api_sites(request: web.Request) -> web.Response:
    return web.json_response(_status(request).sites())


async def api_peers(request: web.Request) -> web.Response:
    return web.json_response(_status(request).peers())


async def api_map_cache(request: web.Request) -> web.Response:
    return web.json_response(_status(request).map_cache())


async def api_rejections(request: web.Request) -> web.Response:
    return web.json_response(_status(request).rejections())


async def api_lookup(request: web.Request) -> web.Response:
    text = request.query.get("eid", "")
    source = request.query.get("in", "sites")
    status = _status(request)
    try:
        if source == "map-cache":
            return web.json_response(status.cache_lookup(text))
        return web.json_response(status.lookup(text))
    except ValueError as exc:
        return web.json_response({"error": str(exc), "query": text}, status=400)


# ---------------------------------------------------------------- pages
def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


def _header_model(status: StatusSource) -> views.Model:
    return {"header": views.header(status.node_info()), "blocks": {}}


def _sections_page(
    request: web.Request, view: str, title: str, message: views.Block | None = None
) -> web.Response:
    model = views.build(_status(request), view)
    body = "".join(render.section(name, model) for name in views.VIEWS[view])
    return _html(render.page(model, title=title, body=body, view=view, message=message))


async def page_overview(request: web.Request) -> web.Response:
    return _sections_page(request, "overview", "Overview")


async def page_sites(request: web.Request) -> web.Response:
    return _sections_page(request, "sites", "Sites")


async def page_peers(request: web.Request) -> web.Response:
    return _sections_page(request, "peers", "Peers")


async def page_map_cache(request: web.Request) -> web.Response:
    cleared = request.query.get("cleared", "")
    message = None
    if cleared.isdigit():
        message = views.notice(f"Cleared {int(cleared)} map-cache entries.")
    return _sections_page(request, "map-cache", "Map-cache", message)


async def page_site(request: web.Request) -> web.Response:
    eid = request.match_info["eid"]
    status = _status(request)
    model = views.build(status, "site", eid)
    found = model["blocks"]["facts"]["kind"] == "facts"
    b = model["blocks"]
    body = (
        f'<section id="s-site"><h2>Site entry <span class="eid">'
        f"{render.e(eid)}</span></h2>"
        '<p><a href="/sites">all sites</a></p>'
        f"{render.block('facts', b['facts'])}"
        "<h3>Registered RLOC-set</h3>"
        f"{render.block('rlocs', b['rlocs'])}"
        "<h3>Individual registrations (per xTR-ID)</h3>"
        f"{render.block('registrations', b['registrations'])}"
        f"{render.flags_legend()}</section>"
    )
    text = render.page(model, title=eid, body=body, view="site", eid=eid)
    return _html(text, 200 if found else 404)


async def page_lookup(request: web.Request) -> web.Response:
    status = _status(request)
    where = "map-cache" if request.query.get("in") == "map-cache" else "sites"
    text = request.query.get("eid", "").strip()
    label = "map-cache" if where == "map-cache" else "site-cache"
    code = 200
    if not text:
        result = views.notice(
            f"Enter an EID for the {label} lookup, e.g. {render.EID_HINT}.",
            "error",
        )
        code = 400
    else:
        try:
            found = (
                status.cache_lookup(text)
                if where == "map-cache"
                else status.lookup(text)
            )
        except ValueError as exc:
            result = views.notice(f"Cannot look up {text!r}: {exc}", "error")
            code = 400
        else:
            result = views.lookup_block(found, where)
    body = (
        f'<section id="s-lookup"><h2>{render.e(label.capitalize())} lookup</h2>'
        f"{render.lookup_form('sites', text if where == 'sites' else '')}"
        f"{render.lookup_form('map-cache', text if where == 'map-cache' else '')}"
        f"{render.block('lookup', result)}</section>"
    )
    model = _header_model(status)
    return _html(render.page(model, title=f"{label} lookup", body=body), code)


# ---------------------------------------------------------------- live
#: Seconds a refused live client is asked to wait before trying again.
LIVE_RETRY_AFTER: Final = 30


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the view's model at once, then whenever the node's
    state changes (checked every LIVE_INTERVAL) and at least every LIVE_REFRESH.

    The model is built once per view and tick for all its subscribers (see
    decent.web.live), and at most `max_live_clients` may listen at once."""
    view = request.query.get("view", "overview")
    if view not in views.VIEWS:
        raise web.HTTPBadRequest(text=f"unknown view {view!r}")
    eid = request.query.get("eid", "")
    hub = request.app[LIVE]
    if hub.full:
        # The page degrades to a static one; the mapping system may not.
        raise web.HTTPServiceUnavailable(
            text="too many live clients, try again later\n",
            headers={"Retry-After": str(LIVE_RETRY_AFTER)},
        )
    stall = request.app[LIMITS].idle_timeout
    with hub.subscribe(view, eid) as feed:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        streaming(request)
        try:
            # A subscriber that stops reading would block in write once the
            # buffers fill, holding its slot for good: each write is bounded.
            async with asyncio.timeout(stall):
                await resp.write(b"retry: 1000\n\n")
            sent = None
            while (payload := feed.payload) is not None:
                if payload is sent:
                    await feed.updated.wait()
                    continue
                async with asyncio.timeout(stall):
                    await resp.write(payload)
                sent = payload
        except (ConnectionError, TimeoutError):  # gone, or not reading
            pass
    return resp


async def _close_streams(app: web.Application) -> None:
    app[CLOSING].set()


async def _stop_feeds(app: web.Application) -> None:
    app[LIVE].stop()


# ---------------------------------------------------------------- ops
async def metrics_text(request: web.Request) -> web.Response:
    status = _status(request)
    body = metrics.render(status.node_info(), status.map_cache())
    resp = web.Response(text=body)
    resp.headers["Content-Type"] = metrics.CONTENT_TYPE
    return resp


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = _ASSETS.get(name)
    if kind is None:
        raise web.HTTPNotFound()
    data = resources.files("decent.web").joinpath("assets", name).read_bytes()
    return web.Response(
        body=data,
        content_type=kind,
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


# ---------------------------------------------------------------- admin
def admin_refusal(
    remote: str | None,
    headers: Any,
    host: str,
    token: str | None,
    given: str | None,
    action: str = "clearing the map-cache",
) -> str | None:
    """Why a state-changing request (`action`) must be refused, or None to
    allow it.

    Allowed from loopback, or from anywhere with the configured admin token.
    A browser's cross-site request is refused even on loopback, so a page
    elsewhere cannot make a local browser clear the cache.
    """
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return "refused: a cross-site request may not change the node"
    origin = headers.get("Origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != host):
        return "refused: a cross-site request may not change the node"
    if token and given and hmac.compare_digest(given.encode(), token.encode()):
        return None
    try:
        if remote is not None and ipaddress.ip_address(remote).is_loopback:
            return None
    except ValueError:
        pass
    if token and given:
        return "refused: wrong admin token"
    return (
        f"refused: {action} needs a request from this host "
        "(loopback) or the admin token ([web] admin_token)"
    )


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def api_clear_cache(request: web.Request) -> web.Response:
    refusal = admin_refusal(
        request.remote,
        request.headers,
        request.host,
        request.app[ADMIN_TOKEN],
        _bearer(request),
    )
    if refusal:
        return web.json_response({"error": refusal}, status=403)
    return web.json_response({"cleared": _status(request).clear_map_cache()})


def _revoke_answer(ok: bool, reason: str, status: int) -> web.Response:
    body: dict[str, Any] = {"ok": ok, "reason": reason}
    if status >= 403:  # the API's errors carry "error" (decent.client.fetch)
        body["error"] = reason
    return web.json_response(body, status=status)


async def api_revoke(request: web.Request) -> web.Response:
    """Take a revocation token (`decent-revoke1:<base64url>`) as the body."""
    refusal = admin_refusal(
        request.remote,
        request.headers,
        request.host,
        request.app[ADMIN_TOKEN],
        _bearer(request),
        "revoking a certificate",
    )
    if refusal:
        return _revoke_answer(False, refusal, 403)
    too_big = f"a revocation token is at most {MAX_REVOKE_BODY} bytes"
    length = request.content_length
    if length is not None and length > MAX_REVOKE_BODY:
        return _revoke_answer(False, too_big, 413)
    # Read no more than the bound, whatever Content-Length claimed (or with
    # a chunked body, which has none).
    data = bytearray()
    while len(data) <= MAX_REVOKE_BODY:
        chunk = await request.content.read(MAX_REVOKE_BODY + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) > MAX_REVOKE_BODY:
        return _revoke_answer(False, too_big, 413)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return _revoke_answer(False, "not a revocation token: not ASCII text", 400)
    try:
        answer = _status(request).revoke(text)
    except ValueError as exc:
        return _revoke_answer(False, str(exc), 400)
    except NotImplementedError:
        return _revoke_answer(
            False, "this node cannot take revocations yet (no trust support)", 503
        )
    return web.json_response(answer, status=200 if answer["ok"] else 400)


async def form_clear_cache(request: web.Request) -> web.Response:
    form = await request.post()
    given = form.get("token")
    refusal = admin_refusal(
        request.remote,
        request.headers,
        request.host,
        request.app[ADMIN_TOKEN],
        given if isinstance(given, str) and given else _bearer(request),
    )
    if refusal:
        model = _header_model(_status(request))
        body = (
            '<section id="s-refused"><h2>Map-cache not cleared</h2>'
            f"{render.block('refusal', views.notice(refusal, 'error'))}"
            '<p><a href="/map-cache">back to the map-cache</a></p></section>'
        )
        return _html(render.page(model, title="refused", body=body), 403)
    cleared = _status(request).clear_map_cache()
    raise web.HTTPSeeOther(f"/map-cache?cleared={cleared}")


async def _security_headers(request: web.Request, resp: web.StreamResponse) -> None:
    for key, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(key, value)


def make_app(
    status: StatusSource,
    *,
    admin_token: str | None = None,
    live_interval: float = 0.2,
    live_refresh: float = 1.0,
    limits: WebLimits | None = None,
    traffic: meshview.TrafficSource | None = None,
) -> web.Application:
    """The node's web application.

    `admin_token` lets non-loopback clients clear the map-cache and post
    revocations. Live pages
    are told of a change within `live_interval` seconds (a new registration
    shows within it), and refreshed at least every `live_refresh` seconds
    (ages tick once a second). `limits` bounds live clients and the Host
    names answered; serve the app with `decent.web.limits.start_site` for
    its connection limits too. `traffic` is the traffic history the /mesh
    page charts (decent.net.traffic)."""
    limits = limits or WebLimits()
    app = web.Application(middlewares=[limits_middleware])
    app[STATUS] = status
    app[ADMIN_TOKEN] = admin_token
    app[CLOSING] = asyncio.Event()
    app[LIVE_INTERVAL] = live_interval
    app[LIVE_REFRESH] = live_refresh
    app[LIMITS] = limits
    app[HOSTS] = HostCheck(limits.allowed_hosts)
    app[LIVE] = LiveHub(
        status,
        interval=live_interval,
        refresh=live_refresh,
        max_clients=limits.max_live_clients,
        closing=app[CLOSING],
    )
    app.on_shutdown.append(_close_streams)
    app.on_cleanup.append(_stop_feeds)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", page_overview)
    app.router.add_get("/sites", page_sites)
    app.router.add_get("/sites/{eid:.+}", page_site)
    app.router.add_get("/peers", page_peers)
    app.router.add_get("/map-cache", page_map_cache)
    app.router.add_post("/map-cache/clear", form_clear_cache)
    app.router.add_get("/lookup", page_lookup)
    app.router.add_get("/events", events)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/assets/{name}", asset)
    app.router.add_post("/api/map-cache/clear", api_clear_cache)
    app.router.add_post("/api/revoke", api_revoke)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/node", api_node)
    app.router.add_get("/api/sites", api_sites)
    app.router.add_get("/api/peers", api_peers)
    app.router.add_get("/api/map-cache", api_map_cache)
    app.router.add_get("/api/rejections", api_rejections)
    app.router.add_get("/api/lookup", api_lookup)
    # The /mesh page and its JSON, /api/v1/mesh and /api/v1/traffic.
    meshview.setup(app, status, traffic)
    _version_api(app)
    return app


#: The JSON API's version prefix; README, "JSON for scripts".
API_V1: Final = "/api/v1/"


def _version_api(app: web.Application) -> None:
    """Serve every /api/... route at /api/v1/... too: the versioned paths
    are the API, the unversioned ones stay as aliases with the same body."""
    for route in list(app.router.routes()):
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/") and not path.startswith(API_V1):
            versioned = API_V1 + path.removeprefix("/api/")
            app.router.add_route(route.method, versioned, route.handler)
