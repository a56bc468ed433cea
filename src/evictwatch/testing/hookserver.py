"""A pre-eviction hook to test against: an HTTP server that works a while, then says done.

It answers 202 ("still working") until ``work_seconds`` have passed since the first call with
an Idempotency-Key, then 200 ("done"). It keeps every call (when, which key, the body) and the
most calls it ever had in flight at once, so a test can tell that one eviction started one job
and that no two calls overlapped::

    hook = await HookServer(work_seconds=10).start()
    config = {"hooks": [{"name": "flush-cache", "url": hook.url}]}
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .receiver import serve_locally


@dataclass
class HookServer:
    """A pre-eviction hook that works ``work_seconds`` from its first call (then answers 200)."""

    work_seconds: float = 10.0
    calls: list[tuple[float, str]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    done_at: float | None = None
    _first: dict[str, float] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/pre-evict"

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            key = request.headers.get("Idempotency-Key", "")
            now = time.monotonic()
            self.calls.append((now, key))
            self.bodies.append(await request.json())
            await asyncio.sleep(0.05)  # a call takes a moment: overlapping calls would show
            first = self._first.setdefault(key, now)
            if now - first >= self.work_seconds:
                if self.done_at is None:
                    self.done_at = time.monotonic()
                return web.Response(status=200, text="done")
            return web.Response(status=202, text="working")
        finally:
            self.in_flight -= 1

    async def start(self) -> HookServer:
        app = web.Application()
        app.router.add_post("/pre-evict", self._handle)
        self._runner, self.port = await serve_locally(app)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
