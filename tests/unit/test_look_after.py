"""When the controller looks at a changed record: soon, unless only time or the Pod can tell."""

from __future__ import annotations

import datetime
from typing import Any

from evictwatch.capture.podcache import PodState
from evictwatch.controller.loop import NUDGE_SECONDS, look_after
from evictwatch.model.record import PodInfo

NOW = datetime.datetime(2026, 12, 3, 12, 0, 10, tzinfo=datetime.UTC)
RUNNING = PodState(info=PodInfo(name="web-1", namespace="shop", uid="u1"))


def record(outcome: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "spec": {"pod": {"name": "web-1", "uid": "u1"}, "source": "EvictionAPI",
                 "lastAttemptTime": "2026-12-03T12:00:00Z", **spec},
        "status": {"outcome": outcome} if outcome else {},
    }  # fmt: skip


def test_a_pending_attempt_on_a_running_pod_waits_for_the_pod_or_the_blocked_deadline() -> None:
    assert look_after(record(), RUNNING, NOW, 30) == 20  # 30 s after the attempt at 12:00:00
    assert look_after(record("Pending"), RUNNING, NOW, 5) == NUDGE_SECONDS  # the deadline is past


def test_anything_the_controller_can_decide_now_is_looked_at_soon() -> None:
    terminating = PodState(info=RUNNING.info, terminating=True)
    disrupted = PodState(info=RUNNING.info, disruption={"type": "DisruptionTarget"})
    other_pod = PodState(info=PodInfo(name="web-1", namespace="shop", uid="u2"))
    for state in (terminating, disrupted, other_pod, None, False):
        assert look_after(record(), state, NOW, 30) == NUDGE_SECONDS, state
    assert look_after(record("Evicted"), RUNNING, NOW, 30) == NUDGE_SECONDS  # deliveries to make
    assert look_after(record(source="Kubelet"), RUNNING, NOW, 30) == NUDGE_SECONDS
    assert look_after(record(pod={"name": "web-1", "found": False}), RUNNING, NOW, 30) == NUDGE_SECONDS
