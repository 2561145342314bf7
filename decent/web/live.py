"""Live page updates: one model per view and tick, shared by all its subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Protocol

from decent.web import views


class LiveSource(views.Source, Protocol):
    """The read side plus the change counter the feeds poll."""

    def changes(self) -> int: ...


class Feed:
    """The latest encoded model of one (view, eid), rebuilt by one task.

    Subscribers hold no timer and build nothing: each writes the shared
    bytes and waits on `updated`, which the next build sets. So N live
    pages cost one status poll and one build a tick, plus N writes; the
    control plane, sharing the loop, keeps its time. `payload` is None once
    the feed has ended (shutdown)."""

    def __init__(self, hub: LiveHub, view: str, eid: str) -> None:
        self.view, self.eid = view, eid
        self.subscribers = 0
        self.payload: bytes | None = None
        self.updated = asyncio.Event()
        self._hub = hub
        self._last_change: int | None = None
        self._last_built = float("-inf")
        # Built before the first subscriber waits: "the model at once".
        self._tick(hub.loop.time())
        self._task = hub.loop.create_task(self._run())

    def _tick(self, now: float) -> None:
        hub = self._hub
        change = hub.status.changes()
        if change == self._last_change and now - self._last_built < hub.refresh:
            return
        model = views.build(hub.status, self.view, self.eid)
        self._last_change, self._last_built = change, now
        self._publish(b"data: " + json.dumps(model).encode() + b"\n\n")

    def _publish(self, payload: bytes | None) -> None:
        woken, self.updated = self.updated, asyncio.Event()
        self.payload = payload
        woken.set()

    async def _run(self) -> None:
        hub = self._hub
        try:
            while not hub.closing.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(hub.interval):
                        await hub.closing.wait()
                if not hub.closing.is_set():
                    self._tick(hub.loop.time())
        finally:
            self._publish(None)

    def stop(self) -> None:
        self._task.cancel()
        self._publish(None)


class LiveHub:
    """The live feeds of one app, and how many subscribers they have."""

    def __init__(
        self,
        status: LiveSource,
        *,
        interval: float,
        refresh: float,
        max_clients: int,
        closing: asyncio.Event,
    ) -> None:
        self.status = status
        self.interval = interval
        self.refresh = refresh
        self.max_clients = max_clients
        self.closing = closing
        self.subscribers = 0
        self._feeds: dict[tuple[str, str], Feed] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def full(self) -> bool:
        return self.subscribers >= self.max_clients

    @property
    def feeds(self) -> int:
        return len(self._feeds)

    @contextlib.contextmanager
    def subscribe(self, view: str, eid: str) -> Iterator[Feed]:
        """The feed of (view, eid), started for its first subscriber and
        stopped when its last one leaves."""
        key = (view, eid)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = Feed(self, view, eid)
        feed.subscribers += 1
        self.subscribers += 1
        try:
            yield feed
        finally:
            feed.subscribers -= 1
            self.subscribers -= 1
            if feed.subscribers == 0 and self._feeds.get(key) is feed:
                del self._feeds[key]
                feed.stop()

    def stop(self) -> None:
        for feed in self._feeds.values():
            feed.stop()
        self._feeds.clear()
