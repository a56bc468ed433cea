"""User-written Python handlers: ``@evictwatch.on_eviction(...)`` on an async function.

Each handler is a sink of its own (``handler:<module>.<function>``), with its own filter,
delivery state and retries, so one that raises never stops the others.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import LabelSelector, SinkFilter
from ..model.notice import Eviction
from .base import SinkBase

HandlerFn = Callable[[Eviction], Awaitable[Any]]


@dataclass
class Registration:
    fn: HandlerFn
    filter: SinkFilter
    name: str


@dataclass
class HandlerRegistry:
    handlers: list[Registration] = field(default_factory=list)

    def clear(self) -> None:
        self.handlers.clear()


REGISTRY = HandlerRegistry()


def on_eviction(
    *,
    namespaces: Iterable[str] = (),
    labels: dict[str, str] | None = None,
    sources: Iterable[str] = (),
    outcomes: Iterable[str] = (),
    name: str | None = None,
) -> Callable[[HandlerFn], HandlerFn]:
    """Register an async function to be called once per settled eviction that passes the filters.

    ``labels`` match the Pod's labels; ``sources`` and ``outcomes`` take the values of
    :class:`~evictwatch.Source` and :class:`~evictwatch.Outcome`. A handler that raises is
    retried with backoff, then marked failed in the record.
    """

    def register(fn: HandlerFn) -> HandlerFn:
        import inspect

        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@on_eviction needs an async function, got {fn!r}")
        sink_filter = SinkFilter.model_validate(
            {
                "namespaces": list(namespaces),
                "podSelector": LabelSelector(matchLabels=labels) if labels else None,
                "sources": list(sources),
                "outcomes": list(outcomes),
            }
        )
        handler_name = name or f"{fn.__module__}.{fn.__qualname__}"
        REGISTRY.handlers.append(Registration(fn, sink_filter, handler_name))
        return fn

    return register


def load_handlers(modules: Iterable[str] = (), files: Iterable[str | Path] = ()) -> None:
    """Import handler modules by name (``-m``) or path (``--file``); their decorators register."""
    for module in modules:
        importlib.import_module(module)
    for path in files:
        file = Path(path)
        spec = importlib.util.spec_from_file_location(f"evictwatch_user_{file.stem}", file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load handlers from {file}")
        module_obj = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module_obj
        spec.loader.exec_module(module_obj)


@dataclass
class HandlerSink(SinkBase):
    fn: HandlerFn | None = None

    async def deliver(self, eviction: Eviction) -> None:
        assert self.fn is not None
        await self.fn(eviction)


def handler_sinks(max_attempts: int, backoff: float) -> list[HandlerSink]:
    return [
        HandlerSink(
            name=f"handler:{r.name}",
            filter=r.filter,
            max_attempts=max_attempts,
            backoff_base=backoff,
            backoff_cap=300.0,
            fn=r.fn,
        )
        for r in REGISTRY.handlers
    ]
