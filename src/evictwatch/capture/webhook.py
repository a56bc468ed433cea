"""The ValidatingAdmissionWebhook for ``pods/eviction``: record every attempt, allow it always.

The decision path, in order (each step cheaper than the next):

1. bad body -> HTTP 400 with the reason (the API server then applies failurePolicy);
2. not CREATE -> allowed, not recorded; 3. not an Eviction -> ``allowed: false``, code 400;
4. dry run (``?dryRun=All`` or ``deleteOptions.dryRun``) -> allowed, not recorded;
5. namespace filtered out -> allowed; 6. look the Pod up (the review never carries it: from
   the Pod-facts cache, else a GET), then the label filter and our own Pods -> allowed;
7. create or merge the record -> allowed.

A Pod with pre-eviction hooks (``hooks`` in the config, or its ``evictwatch.io/pre-eviction-hooks``
annotation) is answered from the record this replica holds (see :mod:`..model.hooks`): denied
with 429 while a hook works, allowed once every hook is done or past its time. The hold goes
into the attempt's one write; a dry run gets the same answer and writes nothing. Pods without
hooks take the path above unchanged.

Our own trouble never blocks an eviction: a failed lookup or write is logged at error level,
counted in ``evictwatch_records_lost_total``, and the answer is still ``allowed: true``.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
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
from ..model.hooks import HoldAnswer, HookRule, answer_hold, hooks_for
from ..model.record import PodInfo, record_name
from ..model.types import EvictionAttempt, Source
from ..records.signing import verify
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
        hooks: Sequence[HookRule] = (),
    ) -> None:
        self.store = store
        self.filter = capture_filter
        self.hooks = tuple(hooks)
        self.lookup: PodLookup = lookup or (lambda ns, name, _uid: lookup_pod(store.api, ns, name))
        self.write_timeout = write_timeout
        self._late: set[asyncio.Task[tuple[WriteResult, HoldAnswer | None] | None]] = set()

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
            if self.hooks:  # without configured hooks an annotation names only unknown ones
                return await self._dry_run_hold(request, attempt)
            return self._allow(request, "dry_run")
        if not self.filter.namespace(attempt.namespace).capture:
            return self._allow(request, "filtered")
        write = asyncio.create_task(self._record(attempt))
        try:
            # The answer must not wait past write_timeout, but the write need not die with it.
            async with asyncio.timeout(self.write_timeout):  # lighter than wait_for: no extra task
                written = await asyncio.shield(write)
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
        if written is None:
            return self._allow(request, "filtered")
        result, hold = written
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
        if hold is not None and hold.hooks.hooks:
            return self._hold_answer(request, attempt, hold)
        return self._allow(request, "recorded")

    def _hold(self, pod: PodInfo) -> HoldAnswer | None:
        """The hold answer for ``pod`` from the record this replica holds; None without hooks."""
        hooks = hooks_for(self.hooks, pod.namespace, pod.labels, pod.hooks_annotation)
        if not hooks.hooks and not hooks.unknown:
            return None
        records = self.store.records
        record = records.get(pod.namespace, record_name(pod.name, pod.uid)) if records is not None else None
        if record is not None and not verify(self.store.key, record):
            record = None  # not ours: its hold's clock and hooks are not evidence (SECURITY.md)
        now = datetime.datetime.now(datetime.UTC)
        return answer_hold(hooks, (record or {}).get("spec"), (record or {}).get("status"), now)

    def _hold_answer(self, request: AdmissionRequest, attempt: EvictionAttempt, hold: HoldAnswer) -> Answer:
        if hold.allowed:
            return self._allow(request, "released")
        telemetry.HOOK_HELD_ATTEMPTS.labels(attempt.namespace).inc()
        log.info(
            "eviction of %s held: %s",
            attempt.key,
            hold.message,
            extra={**_pod_extra(attempt), "hooks": ",".join(hold.waiting_for)},
        )
        return Answer(200, build_response(request, allowed=False, code=429, message=hold.message), "held")

    async def _dry_run_hold(self, request: AdmissionRequest, attempt: EvictionAttempt) -> Answer:
        """A dry run at a Pod with hooks gets the answer a real attempt would, with no write and
        no hook started (``sideEffects: NoneOnDryRun``)."""
        if not self.filter.namespace(attempt.namespace).capture:
            return self._allow(request, "dry_run")
        try:
            pod = await self.lookup(
                attempt.namespace, attempt.pod_name, attempt.delete_options.precondition_uid or ""
            )
        except Exception as error:  # noqa: BLE001 - our trouble never blocks, not even a dry run
            log.warning("dry run at %s: Pod lookup failed: %s", attempt.key, error, extra=_pod_extra(attempt))
            return self._allow(request, "dry_run")
        hold = self._hold(pod) if pod.exists and self.filter.pod(pod).capture else None
        if hold is None or not hold.hooks.hooks or hold.allowed:
            return self._allow(request, "dry_run")
        return Answer(
            200, build_response(request, allowed=False, code=429, message=hold.message), "dry_run_held"
        )

    def _lost(self, attempt: EvictionAttempt, error: BaseException) -> None:
        telemetry.RECORDS_LOST.labels(str(Source.EVICTION_API)).inc()
        log.error(
            "LOST the eviction attempt of %s: %s: %s",
            attempt.key,
            type(error).__name__,
            error,
            extra={**_pod_extra(attempt), "requester": attempt.requester.username},
        )

    def _late_done(
        self, attempt: EvictionAttempt, task: asyncio.Task[tuple[WriteResult, HoldAnswer | None] | None]
    ) -> None:
        self._late.discard(task)
        if task.cancelled():
            self._lost(attempt, asyncio.CancelledError("the late write was cancelled"))
        elif task.exception() is not None:
            self._lost(attempt, task.exception() or RuntimeError())
        else:
            log.info("late write of the eviction attempt of %s done", attempt.key, extra=_pod_extra(attempt))

    async def _record(self, attempt: EvictionAttempt) -> tuple[WriteResult, HoldAnswer | None] | None:
        pod = await self.lookup(
            attempt.namespace, attempt.pod_name, attempt.delete_options.precondition_uid or ""
        )
        decision = self.filter.pod(pod)
        if not decision.capture:
            log.debug(
                "eviction of %s not recorded: %s", attempt.key, decision.reason, extra=_pod_extra(attempt)
            )
            return None
        hold = self._hold(pod) if pod.exists else None
        return await self.store.record_api_attempt(attempt, pod, hold), hold

    @staticmethod
    def _allow(request: AdmissionRequest, decision: str) -> Answer:
        return Answer(200, build_response(request, allowed=True), decision)


def _pod_extra(attempt: EvictionAttempt) -> dict[str, str]:
    return {"namespace": attempt.namespace, "pod": attempt.pod_name}


def encode(answer: Answer) -> bytes:
    return json.dumps(answer.body, separators=(",", ":")).encode()
