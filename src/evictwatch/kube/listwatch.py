"""List-then-watch with bookmarks, 410 re-lists and reconnect backoff, on raw JSON.

lightkube's own watch decodes every object into typed models and does not ask for
bookmarks; for Pods and Events in a large cluster both cost CPU we do not need to spend.
Here objects stay plain dicts, nothing is cached (memory does not grow with the cluster),
and the stream resumes from the last resourceVersion it saw:

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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient

from .. import telemetry
from .raw import JsonApi, status_code

log = logging.getLogger("evictwatch.watch")

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]


class Gone(Exception):
    """The server said 410: the resume version is too old."""


def _request(
    client: AsyncClient, resource: Any, namespace: str | None, params: Mapping[str, Any], watch: bool
) -> httpx2.Request:
    inner = client._client  # the generic client: builds URLs and auth for any resource
    br = inner.prepare_request("list", res=resource, namespace=namespace, watch=watch, params=dict(params))
    request: httpx2.Request = inner.build_adapter_request(br)
    return request


def _path(api: JsonApi, request: httpx2.Request) -> str:
    """What lightkube built for this request, relative to the server URL.

    Compared as parsed URLs, not strings: in a Pod the server is ``https://<ip>:443``, which
    the built URL writes without the default port; a server URL may also carry a path prefix.
    """
    prefix = httpx2.URL(api.base).raw_path.decode("ascii").rstrip("/")
    full = request.url.raw_path.decode("ascii")
    if prefix and not full.startswith(prefix + "/"):
        raise RuntimeError(f"{request.url} is not under the API server's URL {api.base}")
    return full[len(prefix) :]


async def _send(client: AsyncClient, request: httpx2.Request, *, stream: bool) -> httpx2.Response:
    response: httpx2.Response = await client._client.send(request, stream=stream)  # type: ignore[no-untyped-call]
    if response.status_code >= 400:
        if stream:
            await response.aread()
        code = response.status_code
        await response.aclose()
        if code == 410:
            raise Gone()
        client._client.raise_for_status(response)  # type: ignore[no-untyped-call]
    return response


@dataclass
class ListWatch:
    """One resource kind, optionally narrowed by a field or label selector."""

    client: AsyncClient
    resource: Any
    handler: Handler
    name: str
    namespace: str | None = None
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
    live: bool = False
    """True while a watch stream is open: what a cache has seen is then current (up to the
    stream's own delay); False while listing, reconnecting or backing off."""
    api: JsonApi | None = None
    """When given (and it can speak for the identity), lists go through its HTTP/1.1 client and
    watches through its aiohttp session: several times less CPU per event than lightkube's
    httpx2 stream."""

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        return params

    def _fast_api(self) -> JsonApi | None:
        return self.api if self.api is not None and self.api.fast else None

    async def _get_page(self, params: Mapping[str, Any]) -> dict[str, Any]:
        request = _request(self.client, self.resource, self.namespace or "*", params, False)
        api = self._fast_api()
        if api is None:
            response = await _send(self.client, request, stream=False)
            page: dict[str, Any] = response.json()
            return page
        try:
            return await api.request("GET", _path(api, request))
        except (ApiError, httpx2.HTTPStatusError) as error:
            if status_code(error) == 410:
                raise Gone() from None
            raise

    async def list_once(self) -> str:
        """Hand every current object to the handler; return the list's resourceVersion."""
        params = {**self._params(), "limit": self.page_size}
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

    async def watch_once(self, resource_version: str) -> None:
        """Follow the stream until the server closes it; keep :attr:`resource_version` current."""
        params = {
            **self._params(),
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": self.server_timeout,
        }
        request = _request(self.client, self.resource, self.namespace or "*", params, True)
        api = self._fast_api()
        if api is not None:
            try:
                async with api.stream(_path(api, request), read_timeout=self.server_timeout + 30.0) as lines:
                    self.live = True
                    try:
                        async for line in lines:
                            await self._on_line(line)
                    finally:
                        self.live = False
            except (ApiError, httpx2.HTTPStatusError) as error:
                if status_code(error) == 410:
                    raise Gone() from None
                raise
            return
        request.extensions["timeout"] = {
            "connect": 10.0,
            "read": self.server_timeout + 30.0,
            "write": 10.0,
            "pool": 10.0,
        }
        response = await _send(self.client, request, stream=True)
        self.live = True
        try:
            async for text in response.aiter_lines():
                await self._on_line(text)
        finally:
            self.live = False
            await response.aclose()

    async def _on_line(self, line: str | bytes) -> None:
        if not line or line.isspace():
            return
        event = json.loads(line)
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
