"""evictwatch: capture every Kubernetes Pod eviction: who asked for it, why, and what came of it.

The public face for user handlers::

    import evictwatch

    @evictwatch.on_eviction(namespaces=["shop"], outcomes=["Evicted"])
    async def page_someone(eviction: evictwatch.Eviction) -> None:
        ...
"""

from .model.notice import Eviction
from .model.types import Component, Outcome, Source
from .sinks.handlers import on_eviction

__all__ = ["Component", "Eviction", "Outcome", "Source", "on_eviction"]
