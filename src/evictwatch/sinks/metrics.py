"""Prometheus: one count per settled eviction and outcome (restart-safe: driven by delivery state)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import telemetry
from ..model.notice import Eviction
from .base import SinkBase


@dataclass
class MetricsSink(SinkBase):
    async def deliver(self, eviction: Eviction) -> None:
        telemetry.EVICTIONS.labels(
            eviction.namespace, str(eviction.source), eviction.component or "unknown", str(eviction.outcome)
        ).inc()
