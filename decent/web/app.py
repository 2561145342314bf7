"""The aiohttp application: JSON API over a read-only status source."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web


class StatusSource(Protocol):
    """What the web layer may ask of a node; it never mutates the node."""

    def health(self) -> dict[str, Any]: ...
    def node_info(self) -> dict[str, Any]: ...
    def sites(self) -> list[dict[str, Any]]: ...
    def peers(self) -> list[dict[str, Any]]: ...
    def map_cache(self) -> list[dict[str, Any]]: ...
    def lookup(self, text: str) -> dict[str, Any]: ...
    def cache_lookup(self, text: str) -> dict[str, Any]: ...


STATUS: web.AppKey[StatusSource] = web.AppKey("status", StatusSource)


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


def make_app(status: StatusSource) -> web.Application:
    app = web.Application()
    app[STATUS] = status
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/node", api_node)
    app.router.add_get("/api/sites", api_sites)
    app.router.add_get("/api/peers", api_peers)
    app.router.add_get("/api/map-cache", api_map_cache)
    app.router.add_get("/api/lookup", api_lookup)
    return app
