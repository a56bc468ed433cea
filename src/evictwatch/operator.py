"""Process wiring: the CRD, the webhook server, leader election, the controller, the watchers.

Every replica serves the webhook. The replica holding the Lease also runs the controller
(settle, deliver, retention) and the watchers; if it loses the Lease it stops them, and
another replica takes over. ``evictwatch run``, the sandbox and the end-to-end tests all start
the operator through :class:`Operator`, so what is tested is what runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from . import __version__, pki, telemetry
from .aio import cancel_and_wait
from .capture import registration
from .capture.evictionrequests import EvictionRequestWatcher
from .capture.filtering import CaptureFilter
from .capture.podcache import PodFactsCache
from .capture.server import CertificateReloader, WebhookServer, make_server_context
from .capture.watchers import Watchers
from .capture.webhook import EvictionWebhook
from .config import Config, ConfigError, Hook
from .controller.hooks import HookRunner
from .controller.leader import LeaderElector, LeaseApi
from .controller.loop import Controller
from .kube.api import JsonApi
from .kube.client import cluster_config
from .kube.errors import Conflict
from .model.hooks import HookRule
from .records.cache import RecordCache
from .records.install import ensure_crd
from .records.signing import load_key
from .records.store import RecordStore
from .sinks.build import build_sinks
from .sinks.handlers import load_handlers
from .sinks.prehooks import build_hook_callers

log = logging.getLogger("evictwatch")


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Operator:
    """One replica of the operator."""

    config: Config
    kubeconfig: str | Path | None = None
    self_signed: bool = False
    install_crd: bool = True
    client: Any = None
    """Where to connect, in place of ``kubeconfig``: a lightkube ``KubeConfig`` or ``SingleConfig``,
    or a lightkube client (its configuration is taken; its HTTP stack is not used)."""
    identity: str = field(default_factory=default_identity)
    record_key: bytes | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    handler_modules: Sequence[str] = ()
    handler_files: Sequence[str] = ()
    metrics_port: int = 0
    webhook_server: WebhookServer | None = None
    webhook_url: str = ""
    ca_pem: bytes = b""
    controller: Controller | None = None
    watchers: Watchers | None = None
    eviction_requests: EvictionRequestWatcher | None = None
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    _metrics_runner: web.AppRunner | None = None
    _registered: bool = False
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _background: asyncio.Task[None] | None = None
    _elector: LeaderElector | None = None
    _http: aiohttp.ClientSession | None = None
    _store: RecordStore | None = None
    api: JsonApi | None = None
    records: RecordCache | None = None
    pod_cache: PodFactsCache | None = None
    """The process's one Pod watch: the webhook's lookups (``webhook.podCache``), the
    controller's Pod states and the watchers' sightings."""
    _caches: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self.config.check_environment(self.environ)
        load_handlers(self.handler_modules, self.handler_files)
        if self.config.hooks and not self.config.controller.enabled:
            raise ConfigError("hooks: pre-eviction hooks need controller.enabled (the leader calls them)")
        build_hook_callers(self.config.hooks, self.environ, None)  # a hook that cannot be called fails here
        settings = self.config.webhook
        self.client = self.client or cluster_config(self.kubeconfig)
        api = self.api = JsonApi(self.client, user_agent=f"evictwatch/{__version__} ({self.identity})")
        if self.install_crd:
            await ensure_crd(api)
        key = self.record_key or load_key(self.environ)
        # One watch per kind per process, shared by the webhook, the watchers and the controller.
        self.records = RecordCache(api)
        self._caches.append(asyncio.create_task(self.records.run(), name="cache-podevictions"))
        store = self._store = RecordStore(api, key, records=self.records)
        capture_filter = CaptureFilter(self.config.capture, self.config.self)
        context = self._tls_context()
        acting = self.config.controller.enabled or self.config.watchers.enabled
        if settings.podCache or acting:
            capture = self.config.capture
            self.pod_cache = PodFactsCache(
                api, namespaces=capture.namespaces, exclude_namespaces=capture.excludeNamespaces
            )
            self._caches.append(asyncio.create_task(self.pod_cache.run(), name="pod-cache"))
        lookup = self.pod_cache.lookup if settings.podCache and self.pod_cache is not None else None
        rules = hook_rules(self.config.hooks)
        await self._serve(EvictionWebhook(capture_filter, store, lookup=lookup, hooks=rules), context)
        if self.config.metricsPort or self.metrics_port:
            await self._start_metrics()
        if acting:
            await self._start_acting(api, store, capture_filter, rules, key)

    async def _serve(self, webhook: EvictionWebhook, context: ssl.SSLContext) -> None:
        """The webhook's HTTPS server; with ``--self-signed``, its registration too."""
        api = self.api
        assert api is not None
        settings = self.config.webhook
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
            await registration.register(api, manifest)
            self._registered = True
            log.info(
                "registered ValidatingWebhookConfiguration %s -> %s",
                settings.configurationName,
                self.webhook_url,
            )

    async def _start_acting(
        self,
        api: JsonApi,
        store: RecordStore,
        capture_filter: CaptureFilter,
        rules: Sequence[HookRule],
        key: bytes,
    ) -> None:
        """The sinks, the controller (with the hook runner) and the watchers; then the election."""
        assert self.pod_cache is not None and self.records is not None
        self._http = aiohttp.ClientSession(trust_env=True)  # proxies from the environment, as before
        sinks = build_sinks(self.config, api, self._http, self.environ)
        watching = self.config.watchers
        if self.config.controller.enabled:
            callers = build_hook_callers(self.config.hooks, self.environ, self._http)
            runner = HookRunner(api, self.records, rules, callers, key)
            self.controller = Controller(
                api,
                self.records,
                self.pod_cache,
                sinks,
                key,
                self.config.controller,
                events=watching.events,
                hooks=runner,
            )
        if watching.enabled and watching.pods:
            self.watchers = Watchers(store, self.records, self.pod_cache, capture_filter)
        if watching.enabled and watching.evictionRequests:
            self.eviction_requests = EvictionRequestWatcher(store, capture_filter)
        if self.config.controller.leaderElection.enabled:
            await self._ensure_namespace(self.config.self.namespace)
        self._background = asyncio.create_task(self._lead(), name="leader")

    async def _lead(self) -> None:
        """Run the controller and watchers while leading; go back to waiting when the lease is lost.

        Nothing here may end the loop but cancellation: an unreachable API server, a crashed
        task, a lost Lease all lead to a fresh round after a pause.
        """
        assert self.client is not None
        election = self.config.controller.leaderElection
        while True:
            lost = asyncio.Event()
            tasks: list[asyncio.Task[Any]] = []
            try:
                if election.enabled:
                    assert self.api is not None
                    self._elector = LeaderElector(
                        LeaseApi(self.api),
                        self.config.self.namespace,
                        election.leaseName,
                        self.identity,
                        election.leaseDurationSeconds,
                        election.renewSeconds,
                    )
                    tasks.append(asyncio.create_task(self._elector.run(self.leading, lost), name="elector"))
                    await self.leading.wait()
                else:
                    self.leading.set()
                if self.controller is not None:
                    tasks.append(asyncio.create_task(self.controller.run(), name="controller"))
                if self.watchers is not None:
                    tasks.append(asyncio.create_task(self.watchers.run(), name="watchers"))
                if self.eviction_requests is not None:
                    tasks.append(asyncio.create_task(self.eviction_requests.run(), name="eviction-requests"))
                waiter = asyncio.create_task(lost.wait(), name="lost")
                tasks.append(waiter)  # cancelled with the others, however this round ends
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if waiter in done:
                    log.warning("lost leadership; stopping the controller and watchers")
                else:
                    for task in done:
                        log.error(
                            "%s stopped unexpectedly (%r); starting over", task.get_name(), task.exception()
                        )
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - e.g. the API server is unreachable: try again
                log.error("leadership round failed: %s: %s", type(error).__name__, error)
            finally:
                await cancel_and_wait(tasks)
                self.leading.clear()
            await asyncio.sleep(election.renewSeconds)

    async def _ensure_namespace(self, name: str) -> None:
        """Local runs may lack the namespace that holds the Lease; in a cluster the chart makes it."""
        if not self.self_signed:
            return
        assert self.api is not None
        with contextlib.suppress(Conflict):
            await self.api.request(
                "POST",
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )

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
        async def metrics(request: web.Request) -> web.Response:
            # OpenMetrics when the scraper asks for it: its _created lines let Prometheus (with
            # created-timestamp-zero-ingestion) count a series' first increment too.
            encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
            return web.Response(body=encoder(telemetry.REGISTRY), headers={"Content-Type": content_type})

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def readyz(_: web.Request) -> web.Response:
            ready = self.webhook_server is not None and self.webhook_server.ready.is_set()
            return web.Response(text="ok") if ready else web.Response(status=503, text="not ready")

        # Probes come here, over plain HTTP: the webhook port may demand a client certificate
        # (webhook.clientCAFile), which the kubelet's probes do not have.
        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        self._metrics_runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._metrics_runner.setup()
        port = self.metrics_port or self.config.metricsPort
        site = web.TCPSite(self._metrics_runner, self.config.webhook.host, port)
        await site.start()
        server = site._server
        if server is not None and server.sockets:  # type: ignore[attr-defined]
            self.metrics_port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
            self._background = None
        await cancel_and_wait(self._caches)
        self._caches = []
        if self._elector is not None:
            await self._elector.release()
            self._elector = None
        if self._registered and self.api is not None:
            try:
                await registration.unregister(self.api, self.config.webhook.configurationName)
                log.info("removed ValidatingWebhookConfiguration %s", self.config.webhook.configurationName)
            except Exception as error:  # noqa: BLE001 - shutdown goes on
                log.warning("could not remove the webhook configuration: %s", error)
            self._registered = False
        if self.webhook_server is not None:
            await self.webhook_server.stop()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self.api is not None:
            await self.api.close()
            self.api = None
            self._store = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


def hook_rules(hooks: Sequence[Hook]) -> tuple[HookRule, ...]:
    """The configured hooks as the webhook and the runner see them."""
    return tuple(
        HookRule(
            name=hook.name,
            timeout_seconds=hook.timeoutSeconds,
            retry_after_seconds=hook.retryAfterSeconds,
            namespaces=tuple(hook.namespaces),
            pod_selector=hook.podSelector.model_dump(exclude_defaults=True) if hook.podSelector else None,
        )
        for hook in hooks
    )
