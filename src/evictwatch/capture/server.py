"""HTTPS serving of the webhook: TLS 1.2+, certificate reload, body cap, health endpoints.

aiohttp serves directly (rather than kopf's webhook server) for four reasons measured or
checked against kopf 1.45: kopf answers a review without ``request`` with HTTP 500 (a
KeyError), it needs its resource discovery to finish before it can answer, it runs each
review through its generic handler machinery (memos, diffs, patches) that an eviction never
needs, and it has no body cap. Certificate reload works the way kopf's does (re-read the
files on a timer) but without restarting the listener: the new chain is loaded into the
live SSLContext and applies to every new handshake.

Hardened against clients that are not the API server (anything that can reach the port can
talk to it): see SECURITY.md.

* a body over ``max_body_bytes`` is refused with 413 as soon as its ``Content-Length`` says so,
  without reading it (the connection is closed instead of drained); a chunked body is cut off
  at the limit;
* a declared content type other than JSON is refused with 415 (the API server always sends
  ``application/json``; a missing type is accepted, the body is checked either way);
* deadlines: the TLS handshake (``handshake_timeout``), the request head and idle keep-alive
  connections (``idle_timeout``), and the body (``body_timeout``, then 408), so slow or stalled
  clients hold a socket for a bounded time and never hold up other requests (each connection
  is served on its own, and the review itself never waits for a client);
* malformed JSON, absurd nesting and wrong shapes are a 400 with the reason (see
  :func:`~evictwatch.model.admission.parse_review`), never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .webhook import EvictionWebhook, encode

log = logging.getLogger("evictwatch.webhook.server")


def make_server_context(
    cert_file: Path, key_file: Path, client_ca_file: Path | None = None
) -> ssl.SSLContext:
    """A server TLS context: TLS 1.2 or newer, optional client-certificate verification.

    With a client CA, a client without a certificate that chains to it fails the handshake
    (the probes are served on the metrics port, over plain HTTP, for that reason).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    if client_ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca_file))
    return context


@dataclass
class CertificateReloader:
    """Polls the certificate files and loads a changed pair into the live context."""

    context: ssl.SSLContext
    cert_file: Path
    key_file: Path
    interval: float = 10.0
    reloads: int = 0
    _digest: str = field(default="", init=False)

    def _read_digest(self) -> str:
        hasher = hashlib.sha256()
        for path in (self.cert_file, self.key_file):
            hasher.update(path.read_bytes())
        return hasher.hexdigest()

    def check(self) -> bool:
        """Reload if the files changed since the last look; True when it reloaded."""
        try:
            digest = self._read_digest()
        except OSError as error:  # mid-rotation: a file briefly missing
            log.warning("cannot read the serving certificate: %s", error)
            return False
        if not self._digest:
            self._digest = digest
            return False
        if digest == self._digest:
            return False
        try:
            self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (ssl.SSLError, OSError) as error:  # a half-written pair: try again next time
            log.warning("the new serving certificate does not load yet: %s", error)
            return False
        self._digest = digest
        self.reloads += 1
        log.info("reloaded the serving certificate from %s", self.cert_file)
        return True

    async def run(self) -> None:
        self.check()
        while True:
            await asyncio.sleep(self.interval)
            self.check()


def _is_json(content_type: str) -> bool:
    """``application/json`` (any parameters) or a ``+json`` type; an absent type passes too."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or (media.startswith("application/") and media.endswith("+json"))


def build_app(
    webhook: EvictionWebhook,
    path: str,
    *,
    max_body_bytes: int,
    ready: asyncio.Event,
    body_timeout: float = 10.0,
    require_client_cert: bool = False,
) -> web.Application:
    """The aiohttp application: the review endpoint and the probes.

    ``require_client_cert``: only a client that presented a verified certificate may post
    reviews (defence in depth: a context that verifies client certificates already refuses
    the others in the handshake).
    """

    async def review(request: web.Request) -> web.Response:
        if require_client_cert and not _peer_certificate(request):
            return _error(403, "a client certificate is required", close=True)
        if request.content_length is not None and request.content_length > max_body_bytes:
            return _error(
                413, f"the body is {request.content_length} bytes; the limit is {max_body_bytes}", close=True
            )
        content_type = request.headers.get("Content-Type", "")
        if not _is_json(content_type):
            return _error(
                415, f"the content type must be application/json, not {content_type[:100]!r}", close=True
            )
        try:
            async with asyncio.timeout(body_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the body is larger than the limit of {max_body_bytes} bytes", close=True)
        except TimeoutError:
            return _error(408, f"the body did not arrive within {body_timeout:g} s", close=True)
        answer = await webhook.review(body)
        return web.Response(status=answer.http_status, body=encode(answer), content_type="application/json")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if ready.is_set():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready")

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post(path, review)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def _peer_certificate(request: web.Request) -> bool:
    """True when the client presented a certificate that the handshake verified."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return isinstance(ssl_object, ssl.SSLObject) and bool(ssl_object.getpeercert())


def _error(status: int, reason: str, *, close: bool = False) -> web.Response:
    response = web.json_response({"error": reason}, status=status)
    if close:
        # Do not read (or drain) the rest of a body we refused: say so, and close after answering.
        response.force_close()
    return response


class _Site(web.TCPSite):
    """A TCPSite whose TLS handshakes have a deadline (asyncio's default is 60 s)."""

    def __init__(self, *args: Any, handshake_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handshake_timeout = handshake_timeout

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            server,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            ssl_handshake_timeout=self.handshake_timeout if self._ssl_context is not None else None,
        )


@dataclass
class WebhookServer:
    """Runs the application on host:port with TLS until :meth:`stop`."""

    webhook: EvictionWebhook
    host: str
    port: int
    context: ssl.SSLContext | None
    path: str = "/validate-pods-eviction"
    max_body_bytes: int = 1024 * 1024
    reloader: CertificateReloader | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    handshake_timeout: float = 10.0
    idle_timeout: float = 120.0
    body_timeout: float = 10.0
    _runner: web.AppRunner | None = field(default=None, init=False)
    _reload_task: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        app = build_app(
            self.webhook,
            self.path,
            max_body_bytes=self.max_body_bytes,
            ready=self.ready,
            body_timeout=self.body_timeout,
            require_client_cert=self.context is not None and self.context.verify_mode != ssl.CERT_NONE,
        )
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=5.0,
            # From the connection's start (or the last answer) to a complete request head;
            # also how long an idle keep-alive connection stays open. Longer than the API
            # server's own idle timeout (90 s), so that it closes idle connections first and
            # never sends a review on one we are closing.
            keepalive_timeout=self.idle_timeout,
            # Never read on through a body that was refused (413/415/408): close instead.
            lingering_time=0,
        )
        await self._runner.setup()
        site = _Site(
            self._runner,
            self.host,
            self.port,
            ssl_context=self.context,
            backlog=512,
            handshake_timeout=self.handshake_timeout,
        )
        await site.start()
        server = site._server
        if self.port == 0 and server is not None and server.sockets:  # type: ignore[attr-defined]
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        if self.reloader is not None:
            self._reload_task = asyncio.create_task(self.reloader.run())
        self.ready.set()
        log.info("webhook listening on %s:%d%s", self.host, self.port, self.path)
        return self.port

    async def stop(self) -> None:
        self.ready.clear()
        if self._reload_task is not None:
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload_task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
