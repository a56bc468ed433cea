"""The ValidatingAdmissionWebhook for ``pods/eviction``: record every attempt, allow it always.

The decision path, in order (each step cheaper than the next):

1. bad body -> HTTP 400 with the reason (the API server then applies failurePolicy);
2. not CREATE -> allowed, not recorded; 3. not an Eviction -> ``allowed: false``, code 400;
4. dry run (``?dryRun=All`` or ``deleteOptions.dryRun``) -> allowed, not recorded;
5. namespace filtered out -> allowed; 6. look the Pod up (the review never carries it: from
   the Pod-facts cache, else a GET), then the label filter and our own Pods -> allowed;
7. create or merge the record -> allowed.

Our own trouble never blocks an eviction: a failed lookup or write is logged at error level,
counted in ``evictwatch_records_lost_total``, and the answer is still ``allowed: true``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .. import telemetry
from ..kube.pods import lookup_pod
from ..model.admission import (
    AdmissionRequest,
    NotAnEviction,
    ReviewError,
    build_response,
    decode_eviction,
    parse_review,
)
from ..model.record import PodInfo
from ..model.types import EvictionAttempt, Source
from ..records.store import RecordStore, WriteResult
from .filtering import CaptureFilter

log = logging.getLogger("evictwatch.webhook")

MAX_LATE_WRITES = 1000
"""Writes still going after their answer was sent; past this many, a slow write is given up."""


@dataclass(frozen=True)
class Answer:
    """What to send back: an HTTP status and a JSON document."""

    http_status: int
    body: dict[str, Any]
    decision: str


PodLookup = Callable[[str, str, str], Awaitable[PodInfo]]
"""(namespace, name, uid the Eviction requires or "") -> the Pod's facts."""


class EvictionWebhook:
    """The HTTP-independent handler: bytes in, :class:`Answer` out."""

    def __init__(
        self,
        capture_filter: CaptureFilter,
        store: RecordStore,
        *,
        lookup: PodLookup | None = None,
        write_timeout: float = 3.0,
    ) -> None:
        self.store = store
        self.filter = capture_filter
        self.lookup: PodLookup = lookup or (lambda ns, name, _uid: lookup_pod(store.api, ns, name))
        self.write_timeout = write_timeout
        self._late: set[asyncio.Task[WriteResult | None]] = set()

    async def review(self, body: bytes) -> Answer:
        started = time.perf_counter()
        answer = await self._review(body, started)
        telemetry.WEBHOOK_SECONDS.labels(answer.decision).observe(time.perf_counter() - started)
        telemetry.WEBHOOK_REQUESTS.labels(answer.decision).inc()
        return answer

    async def _review(self, body: bytes, started: float) -> Answer:
        try:
            request = parse_review(body)
        except ReviewError as error:
            log.warning("rejected a malformed AdmissionReview: %s", error, extra={"reason": str(error)})
            return Answer(400, {"error": f"malformed AdmissionReview: {error}"}, "bad_request")
        if request.operation != "CREATE":
            return self._allow(request, "not_create")
        try:
            attempt = decode_eviction(request)
        except NotAnEviction as error:
            return Answer(
                200, build_response(request, allowed=False, code=400, message=str(error)), "wrong_kind"
            )
        except ReviewError as error:
            log.warning("rejected an undecodable Eviction: %s", error, extra={"reason": str(error)})
            return Answer(400, {"error": f"malformed Eviction: {error}"}, "bad_request")
        if attempt.dry_run:
            log.debug("dry-run eviction of %s not recorded", attempt.key, extra=_pod_extra(attempt))
            return self._allow(request, "dry_run")
        if not self.filter.namespace(attempt.namespace).capture:
            return self._allow(request, "filtered")
        write = asyncio.create_task(self._record(attempt))
        try:
            # The answer must not wait past write_timeout, but the write need not die with it.
            async with asyncio.timeout(self.write_timeout):  # lighter than wait_for: no extra task
                result = await asyncio.shield(write)
        except TimeoutError:
            if len(self._late) >= MAX_LATE_WRITES:
                write.cancel()
                self._lost(attempt, TimeoutError(f"{len(self._late)} late writes already pending"))
                return self._allow(request, "lost")
            self._late.add(write)
            write.add_done_callback(lambda task: self._late_done(attempt, task))
            telemetry.RECORDS_LATE.labels(str(Source.EVICTION_API)).inc()
            log.warning(
                "recording the eviction attempt of %s takes longer than %.1f s: answered, the write goes on",
                attempt.key,
                self.write_timeout,
                extra=_pod_extra(attempt),
            )
            return self._allow(request, "late")
        except Exception as error:  # noqa: BLE001 - any failure of ours must still allow
            self._lost(attempt, error)
            return self._allow(request, "lost")
        if result is None:
            return self._allow(request, "filtered")
        elapsed_ms = (time.perf_counter() - started) * 1000
        telemetry.ATTEMPTS.labels(
            attempt.namespace, str(Source.EVICTION_API), str(attempt.requester.component)
        ).inc()
        # Logged once the answer is on its way (the callback runs after the server has written
        # it): the eviction need not wait for the log line's formatting and write.
        asyncio.get_running_loop().call_soon(
            functools.partial(
                log.info,
                "eviction attempt %d at %s by %s recorded in %.1f ms",
                result.attempts,
                attempt.key,
                attempt.requester.username,
                elapsed_ms,
                extra={
                    **_pod_extra(attempt),
                    "requester": attempt.requester.username,
                    "component": str(attempt.requester.component),
                    "attempts": result.attempts,
                    "record": result.name,
                    "handling_ms": round(elapsed_ms, 2),
                },
            )
        )
        return self._allow(request, "recorded")

    def _lost(self, attempt: EvictionAttempt, error: BaseException) -> None:
        telemetry.RECORDS_LOST.labels(str(Source.EVICTION_API)).inc()
        log.error(
            "LOST the eviction attempt of %s: %s: %s",
            attempt.key,
            type(error).__name__,
            error,
            extra={**_pod_extra(attempt), "requester": attempt.requester.username},
        )

    def _late_done(self, attempt: EvictionAttempt, task: asyncio.Task[WriteResult | None]) -> None:
        self._late.discard(task)
        if task.cancelled():
            self._lost(attempt, asyncio.CancelledError("the late write was cancelled"))
        elif task.exception() is not None:
            self._lost(attempt, task.exception() or RuntimeError())
        else:
            log.info("late write of the eviction attempt of %s done", attempt.key, extra=_pod_extra(attempt))

    async def _record(self, attempt: EvictionAttempt) -> WriteResult | None:
        pod = await self.lookup(
            attempt.namespace, attempt.pod_name, attempt.delete_options.precondition_uid or ""
        )
        decision = self.filter.pod(pod)
        if not decision.capture:
            log.debug(
                "eviction of %s not recorded: %s", attempt.key, decision.reason, extra=_pod_extra(attempt)
            )
            return None
        return await self.store.record_api_attempt(attempt, pod)

    @staticmethod
    def _allow(request: AdmissionRequest, decision: str) -> Answer:
        return Answer(200, build_response(request, allowed=True), decision)


def _pod_extra(attempt: EvictionAttempt) -> dict[str, str]:
    return {"namespace": attempt.namespace, "pod": attempt.pod_name}


def encode(answer: Answer) -> bytes:
    return json.dumps(answer.body, separators=(",", ":")).encode()
