"""Slim watch decoding: what the caches read is the same as from a full ``json.loads``."""

from __future__ import annotations

import json
from typing import Any, cast

from evictwatch.capture.podcache import PodFactsCache, pod_collection
from evictwatch.kube import slim
from evictwatch.kube.api import JsonApi
from evictwatch.model.outcome import disruption_target
from evictwatch.model.podfacts import pod_info_from_json, sighting_from_pod
from evictwatch.records.cache import RecordCache

MANAGED = [{"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:status": {"f:phase": {}}}}]


def pod(**status: Any) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "uid": "u1",
            "resourceVersion": "42",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {
                "evictwatch.io/pre-eviction-hooks": "flush-cache",
                "kubectl.kubernetes.io/last-applied-configuration": '{"kind": "Pod"}',
            },
            "deletionTimestamp": "2026-12-03T12:00:00Z",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Other", "name": "o", "uid": "o1"},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "r1"}
                | {"controller": True},
            ],
            "managedFields": MANAGED,
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "pause"}]},
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Ready", "status": "True", "lastProbeTime": None},
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": "preempted",
                    "lastTransitionTime": "2026-12-03T12:00:01Z",
                },
            ],
            "containerStatuses": [{"name": "app", "ready": True}],
            **status,
        },
    }


def line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode()


def test_a_pod_event_keeps_what_the_cache_reads_and_drops_the_rest() -> None:
    full = pod()
    event = slim.pod_event(line("MODIFIED", full))
    obj = event["object"]
    assert event["type"] == "MODIFIED"
    assert obj["metadata"]["resourceVersion"] == "42"  # the watch resumes from it
    assert pod_info_from_json(obj) == pod_info_from_json(full)
    assert pod_info_from_json(obj).hooks_annotation == "flush-cache"  # what the hooks read
    assert obj["metadata"]["annotations"] == {"evictwatch.io/pre-eviction-hooks": "flush-cache"}
    assert disruption_target(obj) == {
        k: v for k, v in (disruption_target(full) or {}).items() if k != "lastProbeTime"
    }
    assert obj["metadata"]["deletionTimestamp"] == "2026-12-03T12:00:00Z"
    assert obj["metadata"]["ownerReferences"][1]["controller"] is True
    assert "managedFields" not in obj["metadata"] and "containers" not in obj["spec"]
    assert "containerStatuses" not in obj["status"]


def test_a_kubelet_eviction_keeps_its_reason_and_message() -> None:
    message = "The node was low on resource: memory. Container app was using 180Mi, request is 0."
    full = pod(phase="Failed", reason="Evicted", message=message)
    obj = slim.pod_event(line("MODIFIED", full))["object"]
    assert sighting_from_pod(obj, "now") == sighting_from_pod(full, "now")


def test_a_page_of_pods_keeps_its_continue_token() -> None:
    page = {"metadata": {"resourceVersion": "7", "continue": "abc"}, "items": [pod(), pod()]}
    decoded = slim.pod_page(json.dumps(page).encode())
    assert decoded["metadata"] == {"resourceVersion": "7", "continue": "abc"}
    assert [pod_info_from_json(item) for item in decoded["items"]] == [pod_info_from_json(pod())] * 2


def test_a_watch_error_or_an_unexpected_type_falls_back_to_the_full_decode() -> None:
    gone = {"kind": "Status", "status": "Failure", "message": "too old", "reason": "Expired", "code": 410}
    assert slim.pod_event(line("ERROR", gone))["object"] == gone
    odd = pod()
    odd["metadata"]["labels"] = {"app": 7}  # no API server writes this; a fake one might
    assert slim.pod_event(line("ADDED", odd))["object"] == odd


def test_a_record_event_is_the_whole_record_but_its_managed_fields() -> None:
    record = {
        "apiVersion": "evictwatch.io/v1alpha1",
        "kind": "PodEviction",
        "metadata": {
            "name": "r",
            "namespace": "shop",
            "resourceVersion": "9",
            "annotations": {"a": "b"},
            "managedFields": MANAGED,
        },
        "spec": {"pod": {"name": "web-1", "labels": {"app": "web"}}, "attempts": 2, "note": "é"},
        "status": {"outcome": "Evicted", "deliveries": {"log": {"state": "Delivered"}}},
    }
    obj = slim.record_event(line("ADDED", record))["object"]
    del record["metadata"]["managedFields"]
    assert obj == record
    assert slim.loads(slim.compact(obj)) == record


async def test_the_record_cache_hands_its_subscribers_the_record() -> None:
    cache = RecordCache(cast(JsonApi, object()))
    seen: list[dict[str, Any] | None] = []
    cache.subscribers.append(lambda _kind, _key, record: seen.append(record))
    record = {"metadata": {"name": "r", "namespace": "shop", "managedFields": MANAGED}, "spec": {"a": 1}}
    await cache.watch.handler("ADDED", record)
    assert seen == [{"metadata": {"name": "r", "namespace": "shop"}, "spec": {"a": 1}}]
    assert cache.get("shop", "r") == seen[0]


def test_the_pod_watch_asks_only_for_the_namespaces_captured() -> None:
    assert pod_collection(["shop"], []) == ("/api/v1/namespaces/shop/pods", None)
    assert pod_collection(["shop", "shop"], ["x"]) == ("/api/v1/namespaces/shop/pods", None)
    assert pod_collection(["a", "b"], []) == ("/api/v1/pods", None)
    assert pod_collection([], ["kube-system", "b"]) == (
        "/api/v1/pods",
        "metadata.namespace!=b,metadata.namespace!=kube-system",
    )
    assert pod_collection([], []) == ("/api/v1/pods", None)


async def test_pods_of_namespaces_not_captured_are_not_kept() -> None:
    cache = PodFactsCache(cast(JsonApi, object()), namespaces=["a", "shop"])
    other = pod()
    other["metadata"] = {**other["metadata"], "namespace": "elsewhere"}
    await cache.watch.handler("ADDED", pod())
    await cache.watch.handler("ADDED", other)
    assert list(cache.pods) == [("shop", "web-1")]
    assert cache.watch.path == "/api/v1/pods"
