"""Calling pre-eviction hooks: an HTTP endpoint, or a Python handler in the operator's process.

The HTTP protocol: a POST of the PodEviction record as JSON, with an ``Idempotency-Key`` that is
the same for every call about one eviction of one Pod (so a hook called again, after a restart
or a fail-over, knows it is the same job) and, with a key configured, the HTTP sink's HMAC
signature (``X-Evictwatch-Signature``). ``200`` means done, ``202`` still working; anything
else, or no answer within the call timeout, is a failed call, asked again later.

A Python handler is an ``async def`` taking the record (:class:`~evictwatch.model.podeviction.PodEviction`):
returning means done, raising means a failed call. Register one with
``@evictwatch.before_eviction("flush-cache")`` in a module loaded with ``evictwatch run -m``,
or name it in the config as ``handler: module:function``.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import aiohttp

from ..config import ConfigError, Hook
from ..model.podeviction import PodEviction
from .http import post_signed

HookFn = Callable[[PodEviction], Awaitable[Any]]
Answer = Literal["done", "working"]

HANDLERS: dict[str, HookFn] = {}
"""Python hooks registered with :func:`before_eviction`, by hook name."""


class HookCallError(RuntimeError):
    """A call that did not say done or working; the message is safe to store (never the URL)."""


class HookCaller(Protocol):
    async def call(self, record: Mapping[str, Any], idempotency_key: str) -> Answer: ...


def before_eviction(name: str) -> Callable[[HookFn], HookFn]:
    """Register an async function as the pre-eviction hook ``name`` (which the config must list).

    It is called with the Pod's record before the Pod may go; the eviction is held until it
    returns (or until the hook's ``timeoutSeconds``). Raising is a failed call: it is called
    again after ``retryAfterSeconds``.
    """

    def register(fn: HookFn) -> HookFn:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@before_eviction needs an async function, got {fn!r}")
        HANDLERS[name] = fn
        return fn

    return register


@dataclass
class HttpHook:
    name: str
    url: str
    timeout: float = 10.0
    secret: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None

    async def call(self, record: Mapping[str, Any], idempotency_key: str) -> Answer:
        body = json.dumps(record, separators=(",", ":")).encode()
        headers = {**self.headers, "Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        try:
            status = await post_signed(self.session, self.url, body, headers, self.secret, self.timeout)
        except TimeoutError:
            raise HookCallError(f"no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as error:
            raise HookCallError(f"{type(error).__name__}") from None
        if status == 200:
            return "done"
        if status == 202:
            return "working"
        raise HookCallError(f"HTTP {status}")


@dataclass
class PythonHook:
    name: str
    fn: HookFn

    async def call(self, record: Mapping[str, Any], idempotency_key: str) -> Answer:
        try:
            await self.fn(PodEviction.from_json(record))
        except Exception as error:  # noqa: BLE001 - a handler's failure is a failed call
            raise HookCallError(f"{type(error).__name__}: {error}"[:512]) from None
        return "done"


def _import_handler(reference: str, where: str) -> HookFn:
    module_name, _, attribute = reference.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{where}.handler: cannot load {reference}: {error}") from None
    if not inspect.iscoroutinefunction(fn):
        raise ConfigError(f"{where}.handler: {reference} is not an async function")
    return fn  # type: ignore[no-any-return]


def build_hook_callers(
    hooks: Sequence[Hook], environ: Mapping[str, str], session: aiohttp.ClientSession | None
) -> dict[str, HookCaller]:
    """One caller per configured hook; a hook that cannot be called fails the start, named."""
    callers: dict[str, HookCaller] = {}
    for index, hook in enumerate(hooks):
        where = f"hooks.{index}"
        url = hook.url or (environ.get(hook.urlEnv) if hook.urlEnv else None)
        if url:
            secret = environ.get(hook.hmacSecretEnv, "").encode() if hook.hmacSecretEnv else None
            callers[hook.name] = HttpHook(
                hook.name, url, hook.callTimeoutSeconds, secret or None, dict(hook.headers), session
            )
        elif hook.handler:
            callers[hook.name] = PythonHook(hook.name, _import_handler(hook.handler, where))
        elif hook.name in HANDLERS:
            callers[hook.name] = PythonHook(hook.name, HANDLERS[hook.name])
        else:
            raise ConfigError(
                f"{where}: set url, urlEnv or handler, or register @evictwatch.before_eviction({hook.name!r})"
            )
    unknown = sorted(set(HANDLERS) - {hook.name for hook in hooks})
    if unknown:
        names = ", ".join(unknown)
        raise ConfigError(f"hooks: @before_eviction names {names}, which the config does not list")
    return callers
