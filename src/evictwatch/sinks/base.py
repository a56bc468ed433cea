"""What a sink is: a name, a filter, a retry budget, and ``deliver`` that raises on failure.

The controller owns retries and delivery state (in the record's status), so a sink is a
plain async function of one :class:`~evictwatch.model.notice.Eviction`; it never loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..config import SinkFilter
from ..model.notice import Eviction
from ..model.selector import matches


class Sink(Protocol):
    name: str
    filter: SinkFilter
    max_attempts: int

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before try ``attempt + 1``."""
        ...

    async def deliver(self, eviction: Eviction) -> None: ...


def exponential(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    return float(min(base * (2 ** max(attempt - 1, 0)), cap))


@dataclass
class SinkBase:
    """Shared fields; concrete sinks add ``deliver``."""

    name: str
    filter: SinkFilter
    max_attempts: int = 8
    backoff_base: float = 1.0
    backoff_cap: float = 300.0

    def backoff(self, attempt: int) -> float:
        return exponential(attempt, self.backoff_base, self.backoff_cap)


def wants(sink_filter: SinkFilter, eviction: Eviction) -> bool:
    """True when the eviction passes the sink's filter."""
    if sink_filter.namespaces and eviction.namespace not in sink_filter.namespaces:
        return False
    if eviction.namespace in sink_filter.excludeNamespaces:
        return False
    if sink_filter.sources and str(eviction.source) not in sink_filter.sources:
        return False
    if sink_filter.outcomes and str(eviction.outcome) not in sink_filter.outcomes:
        return False
    selector = sink_filter.podSelector
    return selector is None or matches(selector.model_dump(), eviction.labels)
