"""Headless Chromium through the DevTools protocol: open a page, watch its console, take a picture.

Used by ``evictwatch report --format png|pdf`` and by the browser test. The browser runs in its
own process group with a throwaway profile, no network features (no QUIC, sync, component
updates or background requests), and is driven over one WebSocket (aiohttp) to its page:
``Runtime``/``Log`` events collect console errors, uncaught exceptions and policy
violations; ``Network`` events list every request the page makes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import shutil
import signal
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

DEFAULT_PATHS = ("/usr/bin/chromium",)
INSTALL_HINT = "install it with: apt-get install chromium (or scripts/install-chromium.sh)"
MAX_SCREENSHOT_HEIGHT = 16000
"""Taller pages are cut here: a compositor surface beyond about 16k pixels is not reliable."""

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class BrowserNotFound(RuntimeError):
    """No Chromium on this machine; the message says how to get one."""

    def __init__(self) -> None:
        super().__init__(f"no Chromium found (/usr/bin/chromium, or chromium on PATH); {INSTALL_HINT}")


class BrowserError(RuntimeError):
    """Chromium did not start, or the page did not answer in time."""


def find_chromium() -> str | None:
    """``/usr/bin/chromium``, else ``chromium`` on ``PATH``; None when neither exists."""
    for path in DEFAULT_PATHS:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


def _console_text(params: dict[str, Any]) -> str:
    parts = []
    for arg in params.get("args") or []:
        value = arg.get("value", arg.get("description", arg.get("type", "")))
        parts.append(str(value))
    return " ".join(parts)


@dataclass
class Page:
    """One tab, driven over its DevTools WebSocket."""

    ws: aiohttp.ClientWebSocketResponse
    console_errors: list[str] = field(default_factory=list)
    """console.error/assert calls, uncaught exceptions, and browser log errors (CSP, failed loads)."""
    requests: list[str] = field(default_factory=list)
    """Every URL the page asked for (the document itself included)."""
    _next_id: int = 0
    _replies: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data: dict[str, Any] = message.json()
            if "id" in data:
                future = self._replies.pop(int(data["id"]), None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            method = str(data.get("method", ""))
            params: dict[str, Any] = data.get("params") or {}
            self._note(method, params)
            for waiter in self._waiters.pop(method, []):
                if not waiter.done():
                    waiter.set_result(params)
        error = BrowserError("the DevTools connection closed")
        for future in [*self._replies.values(), *(w for ws in self._waiters.values() for w in ws)]:
            if not future.done():
                future.set_exception(error)

    def _note(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console_errors.append(f"console.{params.get('type')}: {_console_text(params)}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails") or {}
            description = (details.get("exception") or {}).get("description") or details.get("text")
            self.console_errors.append(f"uncaught: {description}")
        elif method == "Log.entryAdded":
            entry = params.get("entry") or {}
            if entry.get("level") == "error":
                self.console_errors.append(f"log ({entry.get('source')}): {entry.get('text')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(str((params.get("request") or {}).get("url", "")))

    def expect(self, method: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``method`` event; create it before causing the event."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[method].append(future)
        return future

    async def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        self._next_id += 1
        ident = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[ident] = future
        await self.ws.send_json({"id": ident, "method": method, "params": params or {}})
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    async def enable(self) -> None:
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.send(f"{domain}.enable")

    async def goto(self, url: str, timeout: float = 60.0) -> None:
        loaded = self.expect("Page.loadEventFired")
        result = await self.send("Page.navigate", {"url": url}, timeout)
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        await asyncio.wait_for(loaded, timeout)

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page; a thrown error is raised here."""
        result = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    async def screenshot(self, width: int = 1400, max_height: int = MAX_SCREENSHOT_HEIGHT) -> bytes:
        """A PNG of the whole page laid out ``width`` CSS pixels wide (cut at ``max_height``)."""
        metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        await self.send("Emulation.setDeviceMetricsOverride", metrics)
        layout = await self.send("Page.getLayoutMetrics")
        size = layout.get("cssContentSize") or layout.get("contentSize") or {}
        height = min(max(math.ceil(float(size.get("height", 900))), 100), max_height)
        await self.send("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
        shot = await self.send(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": False, "fromSurface": True},
            timeout=120.0,
        )
        return base64.b64decode(shot["data"])

    async def pdf(self) -> bytes:
        """The page printed as a PDF: A4 landscape, backgrounds (the charts' colours) included.

        The report is laid out 1,360 CSS pixels wide; at 0.75 it fits the landscape page.
        """
        printed = await self.send(
            "Page.printToPDF",
            {
                "landscape": True,
                "printBackground": True,
                "paperWidth": 11.69,
                "paperHeight": 8.27,
                "marginTop": 0.4,
                "marginBottom": 0.4,
                "marginLeft": 0.4,
                "marginRight": 0.4,
                "scale": 0.75,
            },
            timeout=120.0,
        )
        return base64.b64decode(printed["data"])

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def _read_port(port_file: Path) -> int:
    """The port in Chromium's ``DevToolsActivePort`` file (0 while it is not written yet)."""
    try:
        return int(port_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return 0


class Chromium:
    """``async with Chromium() as browser: page = await browser.page()``."""

    def __init__(self, executable: str | None = None, *, start_timeout: float = 30.0) -> None:
        found = executable or find_chromium()
        if found is None:
            raise BrowserNotFound()
        self.executable = found
        self.start_timeout = start_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pages: list[Page] = []
        self.port = 0

    @property
    def log_path(self) -> Path:
        assert self._profile is not None
        return Path(self._profile.name) / "chromium.log"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def __aenter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="evictwatch-chromium-", ignore_cleanup_errors=True)
        profile = Path(self._profile.name) / "profile"
        profile.mkdir()
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                self.executable,
                *FLAGS,
                f"--user-data-dir={profile}",
                "about:blank",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            self.port = await self._wait_for_port(profile / "DevToolsActivePort")
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        except BaseException:
            await self._stop()
            raise
        return self

    async def _wait_for_port(self, port_file: Path) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        assert self.process is not None
        while loop.time() < deadline:
            if self.process.returncode is not None:
                raise BrowserError(
                    f"{self.executable} exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            port = _read_port(port_file)
            if port:
                return port
            await asyncio.sleep(0.05)
        raise BrowserError(f"{self.executable} did not open its DevTools port in time:\n{self.log_tail()}")

    async def page(self) -> Page:
        """A new tab with console, log and network events enabled."""
        assert self._session is not None
        async with self._session.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as reply:
            reply.raise_for_status()
            target = await reply.json()
        ws = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        page.start()
        self._pages.append(page)
        await page.enable()
        return page

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        for page in self._pages:
            with contextlib.suppress(Exception):
                await page.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        process = self.process
        if process is not None and process.returncode is None:
            # The browser's own process group (start_new_session): its renderers go with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None


async def pdf_html(html_path: Path, executable: str | None = None) -> bytes:
    """Open ``html_path`` (an absolute path) in headless Chromium and return it printed as a PDF."""
    async with Chromium(executable) as browser:
        page = await browser.page()
        await page.goto(html_path.as_uri())
        return await page.pdf()


async def screenshot_html(html_path: Path, width: int = 1400, executable: str | None = None) -> bytes:
    """Open ``html_path`` (an absolute path) in headless Chromium and return a PNG of the whole page."""
    async with Chromium(executable) as browser:
        page = await browser.page()
        await page.goto(html_path.as_uri())
        return await page.screenshot(width)
