"""The one PodEviction codec: JSON in, typed record out, and back; one set of defaults; one path."""

from __future__ import annotations

import datetime
from typing import Any

from evictwatch.model.notice import notice_from_record
from evictwatch.model.podeviction import Budget, PodEviction, record_path
from evictwatch.model.record import OwnerRef, PodInfo, new_api_record_spec
from evictwatch.model.types import (
    Component,
    DeleteOptions,
    EvictionAttempt,
    Outcome,
    Requester,
    ServiceAccountRef,
    Source,
)

ATTEMPT = EvictionAttempt(
    namespace="shop",
    pod_name="web-0",
    requester=Requester(
        username="system:serviceaccount:kube-system:cluster-autoscaler",
        uid="u-1",
        groups=("system:serviceaccounts",),
        service_account=ServiceAccountRef("kube-system", "cluster-autoscaler"),
        component=Component.CLUSTER_AUTOSCALER,
    ),
    delete_options=DeleteOptions(grace_period_seconds=30, precondition_uid="pod-uid"),
)
POD = PodInfo(
    "web-0", "shop", "pod-uid", {"app": "web"}, "node-1", OwnerRef("StatefulSet", "web", "ss-uid", "apps/v1")
)


def full_record() -> dict[str, Any]:
    """A record as the API returns it after the webhook wrote it and the controller settled it."""
    spec = new_api_record_spec(ATTEMPT, POD, "2026-03-02T10:00:00.000001Z")
    spec["attempts"] = 3
    spec["lastAttemptTime"] = "2026-03-02T10:00:10.000001Z"
    return {
        "apiVersion": "evictwatch.io/v1alpha1",
        "kind": "PodEviction",
        "metadata": {
            "name": "web-0.0123abcd",
            "namespace": "shop",
            "uid": "rec-uid",
            "resourceVersion": "42",
            "creationTimestamp": "2026-03-02T10:00:00Z",
            "labels": {"app.kubernetes.io/managed-by": "evictwatch"},
            "annotations": {"evictwatch.io/signature": "abc"},
        },
        "spec": spec,
        "status": {
            "outcome": "Blocked",
            "outcomeTime": "2026-03-02T10:00:40Z",
            "outcomeReason": "PodDisruptionBudget web allows no disruption",
            "why": {
                "component": "cluster-autoscaler",
                "reason": "ScaleDown",
                "message": "node-1 is unneeded",
            },
            "owners": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "ss-uid"}],
            "node": {"name": "node-1", "labels": {"zone": "a"}, "unschedulable": True},
            "disruptionBudgets": [
                {
                    "name": "web",
                    "disruptionsAllowed": 0,
                    "currentHealthy": 3,
                    "desiredHealthy": 3,
                    "expectedPods": 3,
                }
            ],
            "deliveries": {"events": {"state": "Delivered", "attempts": 1, "outcome": "Blocked"}},
            "observedAttempts": 3,
        },
    }


def test_a_full_record_reads_typed_and_writes_back_the_same_json() -> None:
    original = full_record()
    record = PodEviction.from_json(original)
    assert record.spec.pod == POD
    assert record.spec.requester == ATTEMPT.requester
    assert record.spec.delete_options == ATTEMPT.delete_options
    assert record.spec.attempts == 3 and record.status.outcome is Outcome.BLOCKED
    assert record.top_owner == OwnerRef("StatefulSet", "web", "ss-uid", "apps/v1")
    assert record.status.disruption_budgets == (Budget("web", 0, 3, 3, 3),)
    assert record.status.deliveries["events"].state == "Delivered"
    assert record.last_attempt == datetime.datetime(2026, 3, 2, 10, 0, 10, 1, tzinfo=datetime.UTC)
    assert record.to_json() == original
    assert PodEviction.from_json(record.to_json()) == record


def test_one_set_of_defaults_for_a_bare_record() -> None:
    record = PodEviction.from_json(
        {"metadata": {"name": "x.1", "namespace": "n"}, "spec": {"pod": {"name": "x"}}}
    )
    assert record.spec.attempts == 0
    assert record.status.outcome is Outcome.PENDING
    assert record.spec.source is Source.EVICTION_API
    assert record.spec.requester is None and record.status.why is None
    assert record.spec.pod.exists is True
    assert record.all_sources == ("EvictionAPI",)
    assert record.top_owner is None and record.node_name == ""
    # the notice the sinks get agrees (the old decoders said 0 in one place and 1 in another)
    notice = notice_from_record(record.to_json())
    assert notice.attempts == 0 and notice.outcome is Outcome.PENDING and notice.requester == ""


def test_fields_of_the_wrong_type_read_as_absent() -> None:
    hostile: dict[str, Any] = {
        "metadata": {"name": 7, "namespace": ["x"]},
        "spec": {
            "pod": "web-0",
            "attempts": True,
            "sources": "Kubelet",
            "requester": {"groups": "admins", "component": "no-such"},
            "pressure": [1],
        },
        "status": {
            "outcome": "Exploded",
            "owners": ["x", {"kind": "Job"}],
            "disruptionBudgets": [{"name": 3}],
        },
    }
    record = PodEviction.from_json(hostile)
    assert record.metadata.name == "" and record.spec.pod.name == ""
    assert record.spec.attempts == 0 and record.spec.sources == ()
    assert record.spec.requester is not None and record.spec.requester.groups == ()
    assert record.spec.requester.component is Component.UNKNOWN
    assert record.spec.pressure is None
    assert record.status.outcome is Outcome.PENDING and record.status.owners == ()
    assert record.status.disruption_budgets == (Budget(""),)


def test_the_node_falls_back_to_the_controllers_and_times_to_creation() -> None:
    record = PodEviction.from_json(
        {
            "metadata": {"creationTimestamp": "2026-03-02T10:00:00Z"},
            "spec": {"pod": {"name": "p"}, "source": "Kubelet", "sources": ["Kubelet", "EvictionAPI"]},
            "status": {"node": {"name": "node-9"}},
        }
    )
    assert record.node_name == "node-9"
    assert (
        record.first_attempt == record.last_attempt == datetime.datetime(2026, 3, 2, 10, tzinfo=datetime.UTC)
    )
    assert record.spec.source is Source.KUBELET and record.all_sources == ("Kubelet", "EvictionAPI")


def test_a_budget_that_can_never_allow_a_disruption() -> None:
    assert Budget("all-required", 0, 3, 3, 3).never_allows  # minAvailable 3 of 3, or maxUnavailable 0
    assert Budget("more-than-there-are", 0, 2, 4, 2).never_allows
    assert not Budget("one-may-go", 0, 2, 2, 3).never_allows  # blocked now, not forever
    assert not Budget("unknown", 0).never_allows
    assert not Budget("no-pods", 0, 0, 0, 0).never_allows


def test_record_paths_are_quoted() -> None:
    assert record_path("shop") == "/apis/evictwatch.io/v1alpha1/namespaces/shop/podevictions"
    assert record_path("shop", "web-0.0123abcd").endswith("/podevictions/web-0.0123abcd")
    assert record_path("shop", "a b/../c?d") == (
        "/apis/evictwatch.io/v1alpha1/namespaces/shop/podevictions/a%20b%2F..%2Fc%3Fd"
    )
    assert PodEviction.from_json(full_record()).path == record_path("shop", "web-0.0123abcd")
