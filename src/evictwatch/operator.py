"""Process wiring: the CRD, the webhook server and its registration, metrics; start and stop.

``evictwatch run``, the sandbox and the end-to-end tests all start the operator through
:class:`Operator`, so what is tested is what runs.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from lightkube import AsyncClient
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from . import telemetry
from .capture import registration
from .capture.filtering import CaptureFilter
from .capture.server import CertificateReloader, WebhookServer, make_server_context
from .capture.webhook import EvictionWebhook
from .config import Config, ConfigError
from .kube.client import make_client
from .records.install import ensure_crd
from .testing import pki

log = logging.getLogger("evictwatch")


@dataclass
class Operator:
    """One replica: serves the webhook (and later the controller and watchers)."""

    config: Config
    kubeconfig: str | Path | None = None
    self_signed: bool = False
    install_crd: bool = True
    client: AsyncClient | None = None
    webhook_server: WebhookServer | None = None
    webhook_url: str = ""
    ca_pem: bytes = b""
    _metrics_runner: web.AppRunner | None = None
    _registered: bool = False
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    metrics_port: int = field(default=0)

    async def start(self) -> None:
        settings = self.config.webhook
        self.client = self.client or make_client(self.kubeconfig)
        if self.install_crd:
            await ensure_crd(self.client)
        context = self._tls_context()
        webhook = EvictionWebhook(self.client, CaptureFilter(self.config.capture, self.config.self))
        reloader = None
        if not self.self_signed:
            assert settings.certFile is not None and settings.keyFile is not None
            reloader = CertificateReloader(context, settings.certFile, settings.keyFile)
        self.webhook_server = WebhookServer(
            webhook,
            settings.host,
            settings.port,
            context,
            path=settings.path,
            max_body_bytes=settings.maxBodyBytes,
            reloader=reloader,
        )
        port = await self.webhook_server.start()
        self.webhook_url = f"https://{settings.advertiseHost}:{port}{settings.path}"
        if self.self_signed:
            manifest = registration.webhook_configuration(
                settings, registration.url_client_config(self.webhook_url, self.ca_pem)
            )
            await registration.register(self.client, manifest)
            self._registered = True
            log.info(
                "registered ValidatingWebhookConfiguration %s -> %s",
                settings.configurationName,
                self.webhook_url,
            )
        if self.config.metricsPort or self.metrics_port:
            await self._start_metrics()

    def _tls_context(self) -> ssl.SSLContext:
        settings = self.config.webhook
        if self.self_signed:
            self._tmp = tempfile.TemporaryDirectory(prefix="evictwatch-webhook-")
            folder = Path(self._tmp.name)
            ca = pki.make_ca("evictwatch-webhook-ca")
            host = settings.advertiseHost
            is_ip = host.replace(".", "").isdigit() or ":" in host
            serving = pki.issue(
                ca, host, dns_names=() if is_ip else (host,), ip_addresses=(host,) if is_ip else ()
            )
            (folder / "tls.crt").write_bytes(serving.cert_pem)
            (folder / "tls.key").write_bytes(serving.key_pem)
            self.ca_pem = ca.cert_pem
            return make_server_context(folder / "tls.crt", folder / "tls.key", settings.clientCAFile)
        if settings.certFile is None or settings.keyFile is None:
            raise ConfigError(
                "webhook.certFile and webhook.keyFile are required unless --self-signed is given"
            )
        return make_server_context(settings.certFile, settings.keyFile, settings.clientCAFile)

    async def _start_metrics(self) -> None:
        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(telemetry.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self._metrics_runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._metrics_runner.setup()
        port = self.metrics_port or self.config.metricsPort
        site = web.TCPSite(self._metrics_runner, self.config.webhook.host, port)
        await site.start()
        server = site._server
        if server is not None and server.sockets:  # type: ignore[attr-defined]
            self.metrics_port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._registered and self.client is not None:
            try:
                await registration.unregister(self.client, self.config.webhook.configurationName)
                log.info("removed ValidatingWebhookConfiguration %s", self.config.webhook.configurationName)
            except Exception as error:
                log.warning("could not remove the webhook configuration: %s", error)
            self._registered = False
        if self.webhook_server is not None:
            await self.webhook_server.stop()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
