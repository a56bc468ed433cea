"""The controller: watch PodEvictions, settle each with N workers, enforce retention."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from lightkube import AsyncClient

from ..aio import cancel_and_wait
from ..config import ControllerConfig
from ..kube.listwatch import ListWatch
from ..kube.raw import JsonApi
from ..records.resource import PodEviction
from ..sinks.base import Sink
from . import retention
from .settle import Settler
from .workqueue import Key, WorkQueue

log = logging.getLogger("evictwatch.controller")


class Controller:
    def __init__(
        self, client: AsyncClient, api: JsonApi, sinks: Sequence[Sink], key: bytes, settings: ControllerConfig
    ) -> None:
        self.client = client
        self.key = key
        self.settings = settings
        self.settler = Settler(api, sinks, key, blocked_after=settings.blockedAfterSeconds)
        self.queue = WorkQueue()
        self.watch = ListWatch(client, PodEviction, self._on_record, "podevictions", api=api)

    async def _on_record(self, kind: str, record: dict[str, Any]) -> None:
        if kind == "DELETED" or self.settler.is_done(record):
            return
        metadata = record.get("metadata") or {}
        self.queue.add((str(metadata.get("namespace", "")), str(metadata.get("name", ""))))

    async def _work(self, key: Key) -> None:
        result = await self.settler.reconcile(*key)
        if result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)

    async def _retention_loop(self) -> None:
        policy = self.settings.retention
        await asyncio.sleep(min(policy.intervalSeconds, 10.0))  # let the first sync settle first
        while True:
            try:
                await retention.enforce(self.client, policy.ttlSeconds, policy.maxPerNamespace, self.key)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - try again next round
                log.warning("retention round failed: %s", error)
            await asyncio.sleep(policy.intervalSeconds)

    async def run(self) -> None:
        """Run until cancelled."""
        self.watch.resource_version = None  # (re)gaining the lead: re-list, so no pending retry is lost
        tasks = [
            asyncio.create_task(self.watch.run(), name="controller-watch"),
            asyncio.create_task(
                self.queue.run_workers(self.settings.workers, self._work), name="controller-workers"
            ),
            asyncio.create_task(self._retention_loop(), name="retention"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            await cancel_and_wait(tasks)
