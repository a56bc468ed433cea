"""Build the configured sinks; secrets come from the environment, never from the config file."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from ..config import Config
from ..config import HttpSink as HttpSettings
from ..kube.api import JsonApi
from .base import Sink
from .events import EventsSink
from .handlers import handler_sinks
from .http import HttpSink
from .log import LogSink
from .metrics import MetricsSink
from .slack import SlackSink


def _http_kwargs(
    settings: HttpSettings, environ: Mapping[str, str], client: aiohttp.ClientSession
) -> dict[str, object]:
    url = settings.url or environ.get(settings.urlEnv or "", "")
    secret = environ.get(settings.hmacSecretEnv or "", "").encode() or None
    return {
        "filter": settings.filter,
        "max_attempts": settings.maxAttempts,
        "backoff_base": settings.backoffSeconds,
        "backoff_cap": settings.maxBackoffSeconds,
        "url": url,
        "timeout": settings.timeoutSeconds,
        "secret": secret,
        "headers": dict(settings.headers),
        "client": client,
    }


def build_sinks(
    config: Config, api: JsonApi, http: aiohttp.ClientSession, environ: Mapping[str, str]
) -> list[Sink]:
    settings = config.sinks
    sinks: list[Sink] = []
    if settings.metrics.enabled:
        sinks.append(MetricsSink("metrics", settings.metrics.filter, settings.metrics.maxAttempts))
    if settings.log.enabled:
        sinks.append(
            LogSink("log", settings.log.filter, settings.log.maxAttempts, stream_name=settings.log.stream)
        )
    if settings.events.enabled:
        sinks.append(
            EventsSink(
                "events",
                settings.events.filter,
                settings.events.maxAttempts,
                api=api,
                on_owner=settings.events.onOwner,
            )
        )
    for item in settings.http:
        if item.enabled:
            sinks.append(HttpSink(name=f"http:{item.name}", **_http_kwargs(item, environ, http)))  # type: ignore[arg-type]
    for item in settings.slack:
        if item.enabled:
            sinks.append(SlackSink(name=f"slack:{item.name}", **_http_kwargs(item, environ, http)))  # type: ignore[arg-type]
    sinks.extend(handler_sinks(settings.handlers.maxAttempts, settings.handlers.backoffSeconds))
    return sinks
