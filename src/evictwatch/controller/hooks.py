"""The hook runner: the leader calls each held Pod's pre-eviction hooks, one call at a time.

Only the leader runs hooks, and it runs one task per record, which calls the record's hooks
one after another (in the order the config lists them), so exactly one hook call is in flight
per Pod across all replicas. Progress lives in the record's ``status.hooks`` (state, start,
end, calls, last error), written whenever a hook's state changes, with a compare-and-swap of
the status like the settling write; every replica's webhook answers from it. A new leader (a
restart, a fail-over) reads that progress and goes on with the same hook and the same
``Idempotency-Key``: a hook that was ``Running`` is asked again, never started as new.

The hold's clock is the record's (``spec.hold.since``): each hook may take until
``since + timeoutSeconds``; past that it is ``TimedOut`` and the next one is considered.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from .. import telemetry
from ..aio import cancel_and_wait
from ..kube.api import JsonApi
from ..kube.errors import Conflict, NotFound
from ..model.hooks import (
    DONE,
    FAILED,
    FINISHED,
    HOOKS_DONE,
    RELEASED_TIMED_OUT,
    RUNNING,
    TIMED_OUT,
    HookProgress,
    HookRule,
    hold_since,
    next_call_at,
    progress_from_status,
)
from ..model.outcome import parse_time
from ..model.podeviction import record_path
from ..records.cache import RecordCache
from ..records.signing import verify
from ..sinks.prehooks import HookCaller, HookCallError

log = logging.getLogger("evictwatch.hooks")

Key = tuple[str, str]
PROGRESS_WRITE_INTERVAL = datetime.timedelta(seconds=30)
"""While a hook keeps answering 202, its calls are written this often (and at every change of
state), not after each call: a long hook costs a write per 30 s, and a crash loses at most the
count of the calls since the last write, never the hook's state or start."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def idempotency_key(record: Mapping[str, Any], hook: str) -> str:
    """The same for every call of ``hook`` about this eviction of this Pod (the Pod's uid)."""
    pod = (record.get("spec") or {}).get("pod") or {}
    uid = str(pod.get("uid") or (record.get("metadata") or {}).get("uid") or "")
    return f"{uid}/{hook}"


def needs_hooks(record: Mapping[str, Any], rules: Mapping[str, HookRule]) -> bool:
    """Some hook of this record is not finished, or an unknown name was not reported yet."""
    spec = record.get("spec") or {}
    status = record.get("status") or {}
    progress = progress_from_status(status)
    pending = [
        name
        for name in spec.get("hooks") or []
        if name in rules and progress.get(name, HookProgress(name)).state not in FINISHED
    ]
    reported = set(status.get("unknownHooks") or [])
    return bool(pending) or any(name not in reported for name in spec.get("unknownHooks") or [])


class HookRunner:
    """One task per held record while this replica leads."""

    def __init__(
        self,
        api: JsonApi,
        records: RecordCache,
        rules: Sequence[HookRule],
        callers: Mapping[str, HookCaller],
        key: bytes,
    ) -> None:
        self.api = api
        self.records = records
        self.rules = {rule.name: rule for rule in rules}
        self.callers = dict(callers)
        self.key = key
        self._tasks: dict[Key, asyncio.Task[None]] = {}

    def consider(self, key: Key, record: Mapping[str, Any] | None) -> None:
        """A record changed (or is there when the lead begins): start its task if it needs one."""
        if record is None or key in self._tasks:
            return
        if not needs_hooks(record, self.rules) or not verify(self.key, dict(record)):
            return
        task = asyncio.create_task(self._run(key), name=f"hooks {key[0]}/{key[1]}")
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    async def stop(self) -> None:
        """Losing the lead: stop calling. The next leader goes on from the status."""
        await cancel_and_wait(list(self._tasks.values()))
        self._tasks.clear()

    async def _run(self, key: Key) -> None:
        try:
            await self._hooks_of(key)
        except asyncio.CancelledError:
            raise
        except Exception:  # one record's trouble never stops the runner
            extra = {"namespace": key[0], "record": key[1]}
            log.exception("pre-eviction hooks of %s/%s failed", *key, extra=extra)

    async def _hooks_of(self, key: Key) -> None:
        record = self.records.get(*key)
        if record is None:
            return
        await self._report_unknown(record)
        spec = record.get("spec") or {}
        names = [name for name in spec.get("hooks") or [] if name in self.rules and name in self.callers]
        progress = progress_from_status(record.get("status"))
        if names and not progress:
            self._event(record, "EvictionHeld", "Normal", f"held for pre-eviction hooks {', '.join(names)}")
        for name in names:
            current = progress.get(name, HookProgress(name))
            if current.state in FINISHED:
                continue
            progress[name] = await self._one(key, self.rules[name], current, progress)
        if names:
            self._released(record, names, progress)

    async def _one(
        self, key: Key, rule: HookRule, current: HookProgress, progress: dict[str, HookProgress]
    ) -> HookProgress:
        """Call one hook until it is done or its time is up; its final progress."""
        record = self.records.get(*key) or {}
        now = _now()
        deadline = hold_since(record.get("spec"), now) + datetime.timedelta(seconds=rule.timeout_seconds)
        if not current.state:
            current = HookProgress(rule.name, RUNNING, start_time=_stamp(now))
            await self._write(key, {**progress, rule.name: current})
        extra = {"namespace": key[0], "record": key[1], "hook": rule.name}
        log.info("pre-eviction hook %s of %s/%s: %s", rule.name, *key, current.state, extra=extra)
        caller = self.callers[rule.name]
        last_call = parse_time(current.last_call_time)
        written = _now()
        while True:
            now = _now()
            if last_call is not None and current.calls:
                spec = (self.records.get(*key) or record).get("spec") or {}
                due = next_call_at(
                    last_call, parse_time(spec.get("lastAttemptTime")), rule.retry_after_seconds
                )
                pause = min((due - now).total_seconds(), (deadline - now).total_seconds())
                if pause > 0:
                    await asyncio.sleep(pause)
                    now = _now()
            if now >= deadline:
                current = _ended(current, TIMED_OUT, now)
                telemetry.HOOK_RESULTS.labels(rule.name, TIMED_OUT).inc()
                log.warning("pre-eviction hook %s of %s/%s timed out", rule.name, *key, extra=extra)
                await self._write(key, {**progress, rule.name: current})
                return current
            record = self.records.get(*key) or record
            last_call = now
            answer: str
            try:
                async with asyncio.timeout(max((deadline - now).total_seconds(), 0.001)):
                    answer = await caller.call(record, idempotency_key(record, rule.name))
                error = ""
            except (HookCallError, TimeoutError) as failure:
                answer, error = "failed", str(failure) or "no answer before the hook's time was up"
            telemetry.HOOK_CALLS.labels(rule.name, answer).inc()
            state = DONE if answer == "done" else FAILED if error else RUNNING
            updated = HookProgress(
                rule.name,
                state,
                current.start_time,
                "",
                current.calls + 1,
                error[:512] if error else current.last_error,
                _stamp(now),
            )
            if state == DONE:
                updated = _ended(updated, DONE, _now())
                telemetry.HOOK_RESULTS.labels(rule.name, DONE).inc()
                log.info("pre-eviction hook %s of %s/%s done", rule.name, *key, extra=extra)
            if state != current.state or now - written >= PROGRESS_WRITE_INTERVAL:
                await self._write(key, {**progress, rule.name: updated})
                written = now
            current = updated
            if state == DONE:
                return current

    async def _write(self, key: Key, progress: Mapping[str, HookProgress]) -> None:
        """Put ``status.hooks`` on the record, keeping the rest of its status."""
        await self._write_status(key, {"hooks": [item.to_json() for item in progress.values()]})

    async def _write_status(self, key: Key, change: Mapping[str, Any]) -> None:
        """A compare-and-swap of the status with ``change`` folded in, on the cached record.

        The settling write is a compare-and-swap too, so neither loses the other's fields: the
        one that loses the race is made again on the newer record the watch brings.
        """
        for attempt in range(8):
            record = self.records.get(*key)
            if record is None:
                return
            body = {**record, "status": {**(record.get("status") or {}), **change}}
            try:
                written = await self.api.request(
                    "PUT", record_path(*key) + "/status", body, {"fieldManager": "evictwatch-controller"}
                )
            except Conflict:
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            except NotFound:
                return
            self.records.write_through(written)
            return
        raise RuntimeError(f"the status of {key[0]}/{key[1]} kept changing under the hook runner")

    async def _report_unknown(self, record: Mapping[str, Any]) -> None:
        spec = record.get("spec") or {}
        status = record.get("status") or {}
        reported = [name for name in status.get("unknownHooks") or [] if isinstance(name, str)]
        asked = [name for name in spec.get("unknownHooks") or [] if isinstance(name, str)]
        new = [name for name in asked if name not in reported]
        if not new:
            return
        telemetry.HOOK_RESULTS.labels("unknown", "Unknown").inc(len(new))
        names = ", ".join(new)
        self._event(
            record,
            "UnknownPreEvictionHook",
            "Warning",
            f"the Pod asks for pre-eviction hooks that evictwatch's config does not have: {names} "
            "(the eviction is not held for them)",
        )
        metadata = record.get("metadata") or {}
        key = (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        await self._write_status(key, {"unknownHooks": reported + new})

    def _released(
        self, record: Mapping[str, Any], names: Sequence[str], progress: Mapping[str, HookProgress]
    ) -> None:
        everything_done = all(progress[name].state == DONE for name in names if name in progress)
        released = HOOKS_DONE if everything_done else RELEASED_TIMED_OUT
        since = hold_since(record.get("spec"), _now())
        held = max((_now() - since).total_seconds(), 0.0)
        telemetry.HOOK_HOLD_SECONDS.labels(released).observe(held)
        states = ", ".join(f"{name} {progress[name].state}" for name in names if name in progress)
        self._event(
            record, "EvictionReleased", "Normal", f"pre-eviction hooks finished after {held:.0f} s: {states}"
        )

    def _event(self, record: Mapping[str, Any], reason: str, kind: str, message: str) -> None:
        """An Event on the Pod, in the background: it tells people, it never holds the hooks up."""
        task = asyncio.create_task(post_pod_event(self.api, record, reason, kind, message))
        task.add_done_callback(_log_event_failure)


def _ended(progress: HookProgress, state: str, now: datetime.datetime) -> HookProgress:
    return HookProgress(
        progress.name,
        state,
        progress.start_time or _stamp(now),
        _stamp(now),
        progress.calls,
        progress.last_error,
        progress.last_call_time,
    )


def _log_event_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not write a hook Event: %s", task.exception())


async def post_pod_event(
    api: JsonApi, record: Mapping[str, Any], reason: str, kind: str, message: str
) -> None:
    """Create the Event; its name is the record's and the reason's, so a repeat is a 409, dropped."""
    metadata = record.get("metadata") or {}
    pod = (record.get("spec") or {}).get("pod") or {}
    namespace = str(metadata.get("namespace") or "")
    now = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
    target = {"apiVersion": "v1", "kind": "Pod", "name": pod.get("name", ""), "namespace": namespace}
    if pod.get("uid"):
        target["uid"] = pod["uid"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{str(metadata.get('name') or '')[:200]}.{reason.lower()}",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "evictwatch"},
        },
        "involvedObject": target,
        "reason": reason,
        "type": kind,
        "message": message[:1024],
        "source": {"component": "evictwatch"},
        "reportingComponent": "evictwatch.io/controller",
        "reportingInstance": "evictwatch",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await api.request("POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/events", event)
    except Conflict:
        return
