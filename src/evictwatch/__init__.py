"""evictwatch: capture every Kubernetes Pod eviction: who asked for it, why, and what came of it.

The public face for user handlers::

    import evictwatch

    @evictwatch.on_eviction(namespaces=["shop"], outcomes=["Evicted"])
    async def page_someone(eviction: evictwatch.Eviction) -> None:
        ...

    @evictwatch.before_eviction("flush-cache")   # a hook the config lists under hooks:
    async def flush(record: evictwatch.PodEviction) -> None:
        ...   # the eviction is held (429) until this returns
"""

from importlib.metadata import PackageNotFoundError, version

from .model.notice import Eviction
from .model.podeviction import PodEviction
from .model.types import Component, Outcome, Source
from .sinks.handlers import on_eviction
from .sinks.prehooks import before_eviction

try:
    __version__ = version("evictwatch")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Component",
    "Eviction",
    "Outcome",
    "PodEviction",
    "Source",
    "__version__",
    "before_eviction",
    "on_eviction",
]
