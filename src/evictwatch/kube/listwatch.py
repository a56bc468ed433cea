"""List-then-watch with bookmarks, 410 re-lists and reconnect backoff, on raw JSON.

Objects stay plain dicts (typed decoding of every Pod and Event would cost CPU we do not need
to spend), nothing is kept here (the caches of :mod:`.informer` keep what they need), and the
stream resumes from the last resourceVersion it saw:

* list in pages (``limit``/``continue``), hand every item to the handler as ``SYNC``;
* watch from the list's resourceVersion with ``allowWatchBookmarks``; a BOOKMARK only moves
  the resume point;
* on 410 Gone (the version fell out of the server's window) list again; on any other error
  reconnect after an exponential backoff (0.2 s doubling to 30 s), keeping the version.

The handlers must be idempotent: a re-list hands over objects already seen.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .. import telemetry
from .api import JsonApi
from .errors import Gone as GoneError

log = logging.getLogger("evictwatch.watch")

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]


class Gone(Exception):
    """The server said 410: the resume version is too old."""


@dataclass
class ListWatch:
    """One collection (``path``, e.g. ``/api/v1/pods``), optionally narrowed by selectors."""

    api: JsonApi
    path: str
    handler: Handler
    name: str
    field_selector: str | None = None
    label_selector: str | None = None
    page_size: int = 500
    server_timeout: int = 300
    resource_version: str | None = None
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    relists: int = 0
    on_list_start: Callable[[], None] | None = None
    """Called before a full list; with :attr:`on_list_done` a cache can drop what vanished."""
    on_list_done: Callable[[], None] | None = None
    decode_event: Callable[[bytes], dict[str, Any]] = json.loads
    """Reads one line of the stream: a slim schema (:mod:`.slim`) keeps only what the handler reads."""
    decode_page: Callable[[bytes], dict[str, Any]] | None = None
    """Reads one page of the list (``None``: all of it, ``json.loads``)."""
    live: bool = False
    """True while a watch stream is open: what a cache has seen is then current (up to the
    stream's own delay); False while listing, reconnecting or backing off."""

    def _params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        return params

    async def _get_page(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            return await self.api.request("GET", self.path, params=params, decode=self.decode_page)
        except GoneError:
            raise Gone() from None

    async def list_once(self) -> str:
        """Hand every current object to the handler; return the list's resourceVersion."""
        params = {**self._params(), "limit": str(self.page_size)}
        if self.on_list_start is not None:
            self.on_list_start()
        while True:
            data = await self._get_page(params)
            for item in data.get("items") or []:
                await self.handler("SYNC", item)
            metadata = data.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                if self.on_list_done is not None:
                    self.on_list_done()
                return str(metadata.get("resourceVersion") or "")
            params["continue"] = token

    def watch_path(self, resource_version: str) -> str:
        params = {
            **self._params(),
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.server_timeout),
        }
        return f"{self.path}?{urlencode(params)}"

    async def watch_once(self, resource_version: str) -> None:
        """Follow the stream until the server closes it; keep :attr:`resource_version` current."""
        try:
            async with self.api.stream(
                self.watch_path(resource_version), read_timeout=self.server_timeout + 30.0
            ) as lines:
                self.live = True
                try:
                    async for line in lines:
                        await self._on_line(line)
                finally:
                    self.live = False
        except GoneError:
            raise Gone() from None

    async def _on_line(self, line: bytes) -> None:
        if not line or line.isspace():
            return
        event = self.decode_event(line)
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise RuntimeError(f"watch error: {obj.get('message')}")
        if kind != "BOOKMARK":
            await self.handler(str(kind), obj)
        # Only after the handler succeeded: a failure resumes before this event.
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = str(version)

    async def run(self) -> None:
        """Forever: list (when needed), then watch; survive 410s, disconnects and restarts."""
        delay = 0.2
        while True:
            try:
                if not self.resource_version:
                    self.resource_version = await self.list_once()
                    self.relists += 1
                    self.synced.set()
                await self.watch_once(self.resource_version)
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Gone:
                telemetry.WATCH_RESTARTS.labels(self.name, "gone").inc()
                log.info("watch of %s expired (410 Gone); listing again", self.name)
                self.resource_version = None
            except Exception as error:  # noqa: BLE001 - a watch must outlive any one failure
                telemetry.WATCH_RESTARTS.labels(self.name, "error").inc()
                log.warning(
                    "watch of %s failed (%s: %s); reconnecting in %.1f s",
                    self.name,
                    type(error).__name__,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
