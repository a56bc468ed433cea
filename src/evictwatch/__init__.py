"""evictwatch: capture every Kubernetes Pod eviction: who asked for it, why, and what came of it.

The public face for user handlers::

    import evictwatch

    @evictwatch.on_eviction(namespaces=["shop"], outcomes=["Evicted"])
    async def page_someone(eviction: evictwatch.Eviction) -> None:
        ...
"""

from importlib.metadata import PackageNotFoundError, version

from .model.notice import Eviction
from .model.types import Component, Outcome, Source
from .sinks.handlers import on_eviction

try:
    __version__ = version("evictwatch")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["Component", "Eviction", "Outcome", "Source", "__version__", "on_eviction"]
