"""The pure decisions: requester, outcome, why, merges, pressure parsing, filters, signing, retention."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

import pytest

from evictwatch.config import SinkFilter, parse_config
from evictwatch.controller.retention import plan
from evictwatch.controller.workqueue import WorkQueue
from evictwatch.model.admission import ReviewError, decode_eviction, parse_review
from evictwatch.model.notice import notice_from_record
from evictwatch.model.outcome import decide
from evictwatch.model.podfacts import parse_pressure, sighting_from_pod
from evictwatch.model.record import (
    PodInfo,
    Sighting,
    merge_api_attempt,
    merge_sighting,
    new_api_record_spec,
    new_sighting_spec,
    record_name,
)
from evictwatch.model.requester import build_requester, parse_service_account, recognise_component
from evictwatch.model.selector import matches
from evictwatch.model.types import Component, EvictionAttempt, Outcome, Requester, ServiceAccountRef, Source
from evictwatch.model.why import explains, pick_why
from evictwatch.records.signing import SIGNATURE_ANNOTATION, signature, verify
from evictwatch.sinks.base import wants
from evictwatch.sinks.slack import slack_message
from evictwatch.views import parse_duration

NOW = datetime.datetime(2026, 11, 27, 12, 0, 0, tzinfo=datetime.UTC)


def iso(seconds_ago: float) -> str:
    return (NOW - datetime.timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("username", "manager", "expected"),
    [
        ("system:serviceaccount:kube-system:cluster-autoscaler", "", Component.CLUSTER_AUTOSCALER),
        ("system:serviceaccount:karpenter:karpenter", "", Component.KARPENTER),
        ("system:serviceaccount:kube-system:descheduler-sa", "", Component.DESCHEDULER),
        ("system:serviceaccount:kube-system:node-controller", "", Component.KUBE_CONTROLLER_MANAGER),
        ("system:kube-controller-manager", "", Component.KUBE_CONTROLLER_MANAGER),
        ("alice", "kubectl", Component.KUBECTL),
        ("alice", "kubectl-drain", Component.KUBECTL),
        ("alice", "OpenAPI-Generator", Component.UNKNOWN),
        ("admin", "", Component.UNKNOWN),
    ],
)
def test_component_recognition(username: str, manager: str, expected: Component) -> None:
    assert recognise_component(username, manager) is expected


def test_service_account_parsing() -> None:
    assert parse_service_account("system:serviceaccount:ns:name") == ServiceAccountRef("ns", "name")
    for bad in (
        "system:serviceaccount:ns",
        "system:serviceaccount::x",
        "alice",
        "system:serviceaccount:a:b:c",
    ):
        assert parse_service_account(bad) is None
    requester = build_requester(
        "system:serviceaccount:a:b", extra={"authentication.kubernetes.io/pod-name": ["p-1"]}
    )
    assert requester.pod_name == "p-1" and requester.service_account == ServiceAccountRef("a", "b")


def test_decoder_takes_names_from_the_request_when_the_eviction_lacks_them() -> None:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "u",
            "operation": "CREATE",
            "kind": {"kind": "Eviction"},
            "name": "p",
            "namespace": "n",
            "userInfo": {"username": "x"},
            "object": {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {}, "unknownField": 1},
        },
    }
    attempt = decode_eviction(parse_review(json.dumps(review)))
    assert (attempt.namespace, attempt.pod_name, attempt.policy_version) == ("n", "p", "policy/v1beta1")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b'{"request": {"uid": 5}}', "request.uid must be a string, not a number"),
        (b'{"apiVersion": "admission.k8s.io/v2", "request": {"uid": "u"}}', "not supported"),
        (b"[" * 100 + b"]" * 100, "nests deeper"),
    ],
)
def test_review_errors_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(ReviewError, match=message):
        parse_review(body)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    """Label values and messages may hold brackets and escaped quotes; only structure counts."""
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u", "name": "p", "namespace": "n", "operation": "CREATE"},
        "note": ["\\", '\\"[' * 70, "{" * 200],
        "pad": [[i] for i in range(80)],  # many brackets, shallow: takes the scanning path
    }
    assert parse_review(json.dumps(review).encode()).uid == "u"
    deep = {"request": {"uid": "u"}, "x": json.loads("[" * 70 + "]" * 70), "s": "]" * 100}
    with pytest.raises(ReviewError, match="nests deeper"):
        parse_review(json.dumps(deep).encode())


def test_an_unterminated_string_is_scanned_once() -> None:
    """An escaped quote and no closing one: the guard reads to the end once (this 128 KiB body
    took over a minute when each later quote started a new scan to the end)."""
    body = b'{"a":[' + b"[" * 65 + b'"' + b'\\"' * 65_536
    with pytest.raises(ReviewError, match="nests deeper"):
        parse_review(body)


def test_only_utf8_bodies_are_read() -> None:
    review = '{"apiVersion": "admission.k8s.io/v1", "request": {"uid": "u"}}'
    with pytest.raises(ReviewError, match="not UTF-8"):
        parse_review(review.encode("utf-16"))
    with pytest.raises(ReviewError, match="not UTF-8"):
        parse_review(b'{"request": {"uid": "\xff"}}')


def api_spec(attempt_ago: float, *, found: bool = True, uid: str = "u1") -> dict[str, Any]:
    pod: dict[str, Any] = {"name": "p", "found": found}
    if found:
        pod["uid"] = uid
    return {
        "pod": pod,
        "source": "EvictionAPI",
        "sources": ["EvictionAPI"],
        "attempts": 1,
        "lastAttemptTime": iso(attempt_ago),
    }


def live(uid: str = "u1", *, deleting: bool = False, target: str | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {"metadata": {"uid": uid}, "status": {"conditions": []}}
    if deleting:
        pod["metadata"]["deletionTimestamp"] = iso(1)
    if target:
        pod["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True", "reason": target})
    return pod


def test_outcomes() -> None:
    pdb = [{"name": "web", "disruptionsAllowed": 0}]
    assert decide(api_spec(1, found=False), None, [], NOW, 30).outcome is Outcome.POD_GONE
    assert decide(api_spec(1), None, [], NOW, 30).outcome is Outcome.EVICTED
    assert decide(api_spec(1), live("other-uid"), [], NOW, 30).outcome is Outcome.EVICTED
    assert decide(api_spec(1), live(deleting=True), [], NOW, 30).outcome is Outcome.EVICTED
    assert decide(api_spec(1), live(target="EvictionByEvictionAPI"), [], NOW, 30).outcome is Outcome.EVICTED
    waiting = decide(api_spec(10), live(), pdb, NOW, 30)
    assert waiting.outcome is None and waiting.recheck_after == pytest.approx(20)
    blocked = decide(api_spec(31), live(), pdb, NOW, 30)
    assert blocked.outcome is Outcome.BLOCKED and "PodDisruptionBudget web" in blocked.reason
    assert "still running" in decide(api_spec(31), live(), [], NOW, 30).reason
    kubelet = {
        "pod": {"name": "p", "uid": "u1"},
        "source": "Kubelet",
        "sources": ["Kubelet"],
        "reason": "Evicted",
    }
    assert decide(kubelet, live(), [], NOW, 30).outcome is Outcome.EVICTED_BY_KUBELET
    stale = {
        "pod": {"name": "p", "uid": "u1"},
        "source": "Preemption",
        "sources": ["Preemption"],
        "lastAttemptTime": iso(60),
    }
    assert decide(stale, live(), [], NOW, 30).outcome is None
    stale["lastAttemptTime"] = iso(600)
    assert decide(stale, live(), [], NOW, 30).outcome is Outcome.BLOCKED


def test_why_prefers_the_evicting_component() -> None:
    events = [
        {"reason": "Killing", "message": "Stopping container", "source": {"component": "kubelet"}},
        {
            "reason": "ScaleDown",
            "message": "deleting pod for node scale down",
            "source": {"component": "cluster-autoscaler"},
            "lastTimestamp": "2026-11-27T10:00:00Z",
        },
        {"reason": "Evicted", "message": "ours", "source": {"component": "evictwatch"}},
    ]
    why = pick_why(events)
    assert why == {
        "component": "cluster-autoscaler",
        "reason": "ScaleDown",
        "message": "deleting pod for node scale down",
        "eventTime": "2026-11-27T10:00:00Z",
    }
    descheduled = pick_why(
        [
            {
                "reason": "RemoveDuplicates",
                "action": "Descheduled",
                "message": "pod evicted",
                "reportingController": "sigs.k8s.io/descheduler",
            }
        ]
    )
    assert descheduled is not None and descheduled["component"] == "descheduler"
    assert pick_why([{"reason": "Scheduled"}]) is None


def test_pressure_parsing() -> None:
    message = (
        "The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi, available: 500Mi. "
        "Container app was using 2Gi, request is 0, has larger consumption of ephemeral-storage. "
    )
    assert parse_pressure(message) == {
        "resource": "ephemeral-storage",
        "usage": "threshold=1Gi available=500Mi; app=2Gi",
    }
    assert parse_pressure("The node was low on resource: pids.") == {"resource": "pids"}
    assert parse_pressure("something else") == {}


def test_sightings_from_pods_and_events() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "n", "uid": "u"},
        "spec": {"nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "conditions": [
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByPodGC",
                    "lastTransitionTime": "2026-11-27T10:00:00Z",
                }
            ],
        },
    }
    sighting = sighting_from_pod(pod, "now")
    assert (
        sighting is not None and sighting.source is Source.POD_GC and sighting.time == "2026-11-27T10:00:00Z"
    )
    pod["status"]["conditions"][0]["status"] = "False"
    assert sighting_from_pod(pod, "now") is None


def test_an_event_explains_only_when_its_writer_may_say_so() -> None:
    forged = {"reason": "Preempted", "message": "by the attacker", "source": {"component": "someone"}}
    assert not explains(forged) and pick_why([forged]) is None
    forged["reportingController"] = "default-scheduler"
    assert explains(forged)
    kubelet = {"reason": "Evicted", "message": "low on memory", "source": {"component": "kubelet"}}
    assert pick_why([kubelet]) is not None
    assert pick_why([{**kubelet, "source": {"component": "kubectl"}}]) is None
    taint = {"reason": "TaintManagerEviction", "source": {"component": "taint-eviction-controller"}}
    assert explains(taint) and not explains({**taint, "source": {"component": "me"}})


def test_record_names_and_merges() -> None:
    assert record_name("web-0", "uid-a") != record_name("web-0", "uid-b")
    assert record_name("web-0", "uid-a") == record_name("web-0", "uid-a")
    assert len(record_name("x" * 300, "u")) <= 253
    pod = PodInfo("p", "n", "u1")
    attempt = EvictionAttempt("n", "p", Requester("bob"))
    merged = merge_api_attempt(
        {"attempts": 2, "sources": ["Kubelet"], "source": "Kubelet"}, attempt, pod, "t"
    )
    assert merged["attempts"] == 3 and merged["sources"] == ["Kubelet", "EvictionAPI"]
    assert merged["source"] == "Kubelet" and merged["requester"]["username"] == "bob"
    sighting = Sighting(pod, Source.PREEMPTION, "t", reason="PreemptionByScheduler")
    once = merge_sighting({"sources": ["EvictionAPI"], "pod": {"name": "p"}}, sighting)
    assert once is not None and once["sources"] == ["EvictionAPI", "Preemption"]
    assert merge_sighting(once, sighting) is None  # idempotent: nothing new, no write


def test_the_first_doors_requester_stays_and_every_requester_is_kept() -> None:
    pod = PodInfo("p", "n", "u1", node_name="node-7")
    pressure = Sighting(pod, Source.KUBELET, "t0", reason="Evicted", message="low on memory")
    spec = new_sighting_spec(pressure)
    kubelet = {"username": "system:node:node-7", "groups": ["system:nodes"], "component": "kubelet"}
    assert spec["requester"] == kubelet and spec["requesters"] == [kubelet]
    drain = EvictionAttempt(
        "n", "p", Requester("admin", field_manager="kubectl", component=Component.KUBECTL)
    )
    after = merge_api_attempt(spec, drain, pod, "t1")
    assert after["requester"] == kubelet  # a later drain never rewrites who evicted the Pod
    assert [r["username"] for r in after["requesters"]] == ["system:node:node-7", "admin"]
    again = merge_api_attempt(after, drain, pod, "t2")
    assert again["requesters"] == after["requesters"] and again["attempts"] == 2  # a retry adds no one
    autoscaler = EvictionAttempt("n", "p", Requester("system:serviceaccount:kube-system:cluster-autoscaler"))
    third = merge_api_attempt(again, autoscaler, pod, "t3")
    assert [r["username"] for r in third["requesters"]][-1].endswith("cluster-autoscaler")
    assert merge_sighting(third, pressure) is None  # the kubelet is known already: nothing to write
    # A drain first, the kubelet later: the drain stays first, the kubelet is added.
    first = new_api_record_spec(drain, pod, "t0")
    both = merge_sighting(first, pressure)
    assert both is not None and both["requester"]["username"] == "admin"
    assert [r["component"] for r in both["requesters"]] == ["kubectl", "kubelet"]
    # A record written before the list existed starts it from its requester.
    old = {"requester": {"username": "admin"}, "attempts": 1, "sources": ["EvictionAPI"]}
    upgraded = merge_api_attempt(old, autoscaler, pod, "t4")
    assert upgraded["requesters"][0]["username"] == "admin" and len(upgraded["requesters"]) == 2


def test_selector() -> None:
    labels = {"app": "web", "tier": "front"}
    assert matches(None, labels) and matches({}, labels)
    assert matches({"matchLabels": {"app": "web"}}, labels)
    assert not matches({"matchLabels": {"app": "db"}}, labels)
    assert matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}, labels)
    assert not matches(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}, labels
    )
    assert matches({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}, labels)
    assert not matches({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}, labels)


def test_signature_covers_identity() -> None:
    spec = {"pod": {"uid": "u"}, "firstAttemptTime": "t", "source": "EvictionAPI"}
    record = {
        "metadata": {
            "namespace": "n",
            "name": "r",
            "annotations": {SIGNATURE_ANNOTATION: signature(b"k", "n", "r", spec)},
        },
        "spec": spec,
    }
    assert verify(b"k", record)
    assert not verify(b"other-key", record)
    record["metadata"]["namespace"] = "elsewhere"
    assert not verify(b"k", record)


def test_retention_plan() -> None:
    def rec(name: str, ns: str, age: float, outcome: str = "Evicted", found: bool = True) -> dict[str, Any]:
        spec = {"pod": {"name": name, "found": found}, "source": "EvictionAPI"}
        return {
            "metadata": {
                "name": name,
                "namespace": ns,
                "creationTimestamp": iso(age),
                "annotations": {SIGNATURE_ANNOTATION: signature(b"k", ns, name, spec)},
            },
            "spec": spec,
            "status": {"outcome": outcome},
        }

    def doomed(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {
            (r["metadata"]["name"], why)
            for r, why in plan(records, NOW, ttl_seconds=500, max_per_namespace=2, key=b"k")
        }

    records = [
        rec("old", "a", 1000),
        rec("a1", "a", 30),
        rec("a2", "a", 20),
        rec("a3", "a", 10),
        rec("b1", "b", 5),
    ]
    assert doomed(records) == {("old", "ttl"), ("a1", "max_per_namespace")}
    records[1]["status"]["outcome"] = "Pending"  # not settled yet: kept; the next oldest settled one goes
    assert doomed(records) == {("old", "ttl"), ("a2", "max_per_namespace")}
    # Neither unsigned records nor the aggregate of missing Pods count toward the cap or make room,
    # however many and however new: only the TTL removes them.
    forged = [rec(f"forged-{i}", "a", 1 + i) for i in range(5)]
    for record in forged:
        record["metadata"]["annotations"][SIGNATURE_ANNOTATION] = "0" * 64
    missing = rec("missing-pods-0123", "a", 2, outcome="PodGone", found=False)
    assert doomed([*records, *forged, missing]) == {("old", "ttl"), ("a2", "max_per_namespace")}
    assert ("missing-pods-0123", "ttl") in doomed([rec("missing-pods-0123", "a", 900, found=False)])


def test_sink_filter_and_slack_escaping() -> None:
    record = {
        "metadata": {"namespace": "shop", "name": "r", "uid": "ru"},
        "spec": {"pod": {"name": "<b>x</b>", "labels": {"tier": "db"}}, "source": "Kubelet"},
        "status": {"outcome": "Failed"},
    }
    eviction = notice_from_record(record)
    assert wants(SinkFilter(), eviction)
    assert wants(SinkFilter(namespaces=["shop"], outcomes=["Failed"], sources=["Kubelet"]), eviction)
    assert not wants(SinkFilter(outcomes=["Evicted"]), eviction)
    assert not wants(SinkFilter(excludeNamespaces=["shop"]), eviction)
    assert not wants(SinkFilter.model_validate({"podSelector": {"matchLabels": {"tier": "web"}}}), eviction)
    text = slack_message(eviction)["blocks"][0]["text"]["text"]
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "<b>" not in text
    assert eviction.outcome is Outcome.EVICTED_BY_KUBELET  # "Failed" is read by its new name
    assert eviction.idempotency_key == "ru:EvictedByKubelet"
    assert SinkFilter(outcomes=["Failed"]).outcomes == ["EvictedByKubelet"]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"controller.workers: Input should be greater than or equal to 1"):
        parse_config({"controller": {"workers": 0}})
    with pytest.raises(ValueError, match=r"sinks.slack.0.name"):
        parse_config({"sinks": {"slack": [{"url": "x", "name": "Not A Name"}]}})
    with pytest.raises(ValueError, match=r"capture.bogus: Extra inputs are not permitted"):
        parse_config({"capture": {"bogus": 1}})


def test_durations() -> None:
    assert parse_duration("90s") == datetime.timedelta(seconds=90)
    assert parse_duration("12h") == datetime.timedelta(hours=12)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("12 hours")


async def test_workqueue_never_runs_a_key_twice_at_once() -> None:
    queue = WorkQueue()
    running: set[tuple[str, str]] = set()
    overlaps = 0
    done: list[tuple[str, str]] = []

    async def work(key: tuple[str, str]) -> None:
        nonlocal overlaps
        if key in running:
            overlaps += 1
        running.add(key)
        await asyncio.sleep(0.01)
        running.discard(key)
        done.append(key)

    for _ in range(5):
        queue.add(("n", "a"))
    queue.add(("n", "b"))
    task = asyncio.create_task(queue.run_workers(3, work))
    await asyncio.sleep(0.005)
    queue.add(("n", "a"))  # added while running: runs once more afterwards
    queue.add_after(("n", "c"), 0.02)
    for _ in range(500):  # until all four runs are done (or 5 s)
        if len(done) >= 4:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # and nothing more comes
    task.cancel()
    assert overlaps == 0
    assert sorted(done) == [("n", "a"), ("n", "a"), ("n", "b"), ("n", "c")]
