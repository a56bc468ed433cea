"""The newer doors, decided from plain values: unknown reasons, device taints, their Events."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest

from evictwatch import telemetry
from evictwatch.capture import unknown_reasons
from evictwatch.model.devicetaints import claim_names, device_taint_causes, is_claim_of, tolerates_forever
from evictwatch.model.evictionrequests import (
    eviction_entry,
    merge_eviction,
    merge_request,
    new_request_spec,
    request_entry,
    target_pod,
)
from evictwatch.model.outcome import REQUESTED_RECHECK_SECONDS, decide
from evictwatch.model.podfacts import sighting_from_pod
from evictwatch.model.record import PodInfo, Sighting
from evictwatch.model.types import Outcome, Source
from evictwatch.model.why import pick_why
from evictwatch.testing import binaries


def pod_with(reason: str | None, *, phase: str = "Running", status_reason: str = "") -> dict[str, Any]:
    conditions = []
    if reason is not None:
        conditions.append(
            {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": f"said by {reason}"}
        )
    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if status_reason:
        status["reason"] = status_reason
        status["message"] = "Pod ephemeral local storage usage exceeds the total limit of containers 1Mi. "
    return {
        "metadata": {"name": "p", "namespace": "n", "uid": "u"},
        "spec": {"nodeName": "n1"},
        "status": status,
    }


def test_every_reason_of_1_37_has_its_door() -> None:
    doors = {
        "EvictionByEvictionAPI": Source.EVICTION_API,
        "PreemptionByScheduler": Source.PREEMPTION,
        "DeletionByTaintManager": Source.TAINT_MANAGER,
        "DeletionByPodGC": Source.POD_GC,
        "TerminationByKubelet": Source.KUBELET,
        "DeletionByDeviceTaintManager": Source.DEVICE_TAINT_MANAGER,
    }
    for reason, source in doors.items():
        sighting = sighting_from_pod(pod_with(reason), "now")
        assert sighting is not None and sighting.source is source, reason


def test_an_unknown_reason_is_kept_verbatim_as_other() -> None:
    sighting = sighting_from_pod(pod_with("DeletionByQuantumScheduler"), "now")
    assert sighting is not None
    assert sighting.source is Source.OTHER
    assert sighting.reason == "DeletionByQuantumScheduler"
    assert sighting.message == "said by DeletionByQuantumScheduler"


def test_a_kubelet_eviction_needs_no_condition() -> None:
    # The ephemeral-storage limit eviction: Failed, reason Evicted, no DisruptionTarget.
    sighting = sighting_from_pod(pod_with(None, phase="Failed", status_reason="Evicted"), "now")
    assert sighting is not None and sighting.source is Source.KUBELET and sighting.reason == "Evicted"
    assert "ephemeral local storage" in sighting.message
    assert sighting_from_pod(pod_with(None, phase="Failed", status_reason="Error"), "now") is None


def test_unknown_reason_metric_labels_are_bounded() -> None:
    unknown_reasons._labelled.clear()
    sighting = Sighting(PodInfo("p", "n", "u"), Source.OTHER, "now", reason="BrandNewDoor")
    counter = telemetry.UNKNOWN_DISRUPTION_REASONS.labels("BrandNewDoor")
    before = counter._value.get()
    unknown_reasons.note_unknown_reason(sighting, "p.1234")
    assert counter._value.get() == before + 1
    for number in range(unknown_reasons.MAX_REASON_LABELS + 5):
        unknown_reasons.reason_label(f"Reason{number}")
    assert len(unknown_reasons._labelled) == unknown_reasons.MAX_REASON_LABELS
    assert unknown_reasons.reason_label("OneMore") == unknown_reasons.OVERFLOW_LABEL
    assert unknown_reasons.reason_label("BrandNewDoor") == "BrandNewDoor"  # known ones keep theirs
    unknown_reasons._labelled.clear()


CLAIM = {
    "metadata": {"name": "gpu", "namespace": "n"},
    "status": {
        "allocation": {
            "devices": {
                "results": [
                    {"request": "req", "driver": "gpu.example.com", "pool": "node-1", "device": "gpu-0"},
                    {"request": "req", "driver": "gpu.example.com", "pool": "node-1", "device": "gpu-1"},
                ]
            }
        },
        "reservedFor": [{"resource": "pods", "name": "p", "uid": "u"}],
    },
}
SLICE = {
    "metadata": {"name": "node-1-gpus"},
    "spec": {
        "driver": "gpu.example.com",
        "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
        "devices": [
            {"name": "gpu-0", "taints": [{"key": "example.com/ecc", "value": "bad", "effect": "NoExecute"}]},
            {"name": "gpu-1", "taints": [{"key": "example.com/hot", "effect": "NoSchedule"}]},
        ],
    },
}


def rule(name: str, selector: dict[str, str] | None, effect: str = "NoExecute") -> dict[str, Any]:
    spec: dict[str, Any] = {"taint": {"key": "example.com/maintenance", "effect": effect}}
    if selector is not None:
        spec["deviceSelector"] = selector
    return {"metadata": {"name": name}, "spec": spec}


def test_device_taint_causes_name_claim_device_taint_and_origin() -> None:
    rules = [
        rule("drain-gpu-1", {"driver": "gpu.example.com", "device": "gpu-1"}),
        rule("other-driver", {"driver": "fpga.example.com"}),
        rule("no-selector", None),
        rule("informational", {"pool": "node-1"}, effect="None"),
    ]
    causes = device_taint_causes([CLAIM], [SLICE], rules)
    assert causes == [
        {
            "claim": "gpu",
            "request": "req",
            "driver": "gpu.example.com",
            "pool": "node-1",
            "device": "gpu-0",
            "taint": {"key": "example.com/ecc", "value": "bad", "effect": "NoExecute"},
            "slice": "node-1-gpus",
        },
        {
            "claim": "gpu",
            "request": "req",
            "driver": "gpu.example.com",
            "pool": "node-1",
            "device": "gpu-1",
            "taint": {"key": "example.com/maintenance", "effect": "NoExecute"},
            "rule": "drain-gpu-1",
        },
    ]


def test_a_taint_tolerated_for_good_is_no_cause() -> None:
    taint = {"key": "example.com/ecc", "value": "bad", "effect": "NoExecute"}
    assert tolerates_forever([{"key": "example.com/ecc", "operator": "Exists"}], taint)
    assert tolerates_forever([{"key": "example.com/ecc", "operator": "Equal", "value": "bad"}], taint)
    assert not tolerates_forever([{"key": "example.com/ecc", "operator": "Equal", "value": "ok"}], taint)
    assert not tolerates_forever([{"operator": "Exists", "tolerationSeconds": 30}], taint)
    tolerant = {**CLAIM, "status": {**CLAIM["status"]}}
    results = CLAIM["status"]["allocation"]["devices"]["results"]
    tolerant["status"]["allocation"] = {
        "devices": {"results": [{**results[0], "tolerations": [{"operator": "Exists"}]}]}
    }
    assert device_taint_causes([tolerant], [SLICE], []) == []


def test_which_claims_are_the_pods() -> None:
    pod = {
        "spec": {"resourceClaims": [{"name": "a", "resourceClaimName": "shared"}, {"name": "b"}]},
        "status": {"resourceClaimStatuses": [{"name": "b", "resourceClaimName": "p-b-x7k2"}]},
    }
    assert claim_names(pod) == ["shared", "p-b-x7k2"]
    assert is_claim_of(CLAIM, "u") and not is_claim_of(CLAIM, "other")
    owned = {"metadata": {"ownerReferences": [{"kind": "Pod", "uid": "v"}]}, "status": {}}
    assert is_claim_of(owned, "v")


def test_the_device_taint_event_is_the_why_but_not_its_cancellation() -> None:
    marking = {
        "reason": "DeviceTaintManagerEviction",
        "message": "Marking for deletion",
        "source": {"component": "device-taint-eviction-controller"},
        "lastTimestamp": "2026-12-03T10:00:00Z",
    }
    killing = {"reason": "Killing", "message": "Stopping container", "source": {"component": "kubelet"}}
    assert pick_why([killing, marking]) == {
        "component": "kube-controller-manager",
        "reason": "DeviceTaintManagerEviction",
        "message": "Marking for deletion",
        "eventTime": "2026-12-03T10:00:00Z",
    }
    assert pick_why([{**marking, "message": "Cancelling deletion"}]) is None


REQUEST = {
    "metadata": {
        "name": "drain-p",
        "creationTimestamp": "2026-12-03T10:00:00Z",
        "managedFields": [{"manager": "acme-drainer", "operation": "Create"}],
    },
    "spec": {
        "target": {"pod": {"name": "p", "uid": "u"}},
        "requester": "acme.io/drainer",
        "intent": "Eviction",
    },
}


def test_eviction_requests_fold_into_the_spec() -> None:
    assert target_pod(REQUEST) == ("p", "u")
    assert target_pod({"spec": {"target": {}}}) is None
    entry = request_entry(REQUEST)
    assert entry == {
        "name": "drain-p",
        "requester": "acme.io/drainer",
        "intent": "Eviction",
        "time": "2026-12-03T10:00:00Z",
        "fieldManager": "acme-drainer",
    }
    spec = merge_request(new_request_spec({"name": "p", "uid": "u", "found": True}, "t0"), entry)
    assert spec is not None and spec["source"] == "EvictionRequest" and spec["evictionRequests"] == [entry]
    assert merge_request(spec, entry) is None  # seen again: nothing to write
    withdrawn = request_entry({**REQUEST, "spec": {**REQUEST["spec"], "intent": "Withdrawn"}})
    changed = merge_request(spec, withdrawn)
    assert changed is not None and [r["intent"] for r in changed["evictionRequests"]] == ["Withdrawn"]
    deleted = merge_request(
        spec, request_entry({"metadata": {"name": "drain-p"}, "spec": {}}, deleted_at="t9")
    )
    assert deleted is not None
    assert deleted["evictionRequests"][0]["intent"] == "Eviction"  # what it last said stays
    assert deleted["evictionRequests"][0]["deletedTime"] == "t9"


def test_an_eviction_keeps_its_responders_progress() -> None:
    eviction = {
        "metadata": {"name": "u"},
        "spec": {"target": {"pod": {"name": "p", "uid": "u"}}},
        "status": {
            "requesters": [{"name": "acme.io/drainer", "intent": "Eviction"}],
            "targetResponders": [
                {"name": "acme.io/checkpointer", "priority": 5000, "state": "Completed"},
                {"name": "imperative-eviction.k8s.io/evictor", "priority": 100, "state": "Active"},
            ],
            "responders": [
                {
                    "name": "acme.io/checkpointer",
                    "startTime": "t1",
                    "completionTime": "t2",
                    "message": "saved",
                },
                {"name": "imperative-eviction.k8s.io/evictor", "startTime": "t3"},
            ],
            "conditions": [{"type": "TargetEvicted", "status": "False", "reason": "AwaitingEviction"}],
        },
    }
    entry = eviction_entry(eviction)
    assert entry["requesters"] == [{"name": "acme.io/drainer", "intent": "Eviction"}]
    assert entry["responders"] == [
        {
            "name": "acme.io/checkpointer",
            "state": "Completed",
            "priority": 5000,
            "startTime": "t1",
            "completionTime": "t2",
            "message": "saved",
        },
        {"name": "imperative-eviction.k8s.io/evictor", "state": "Active", "priority": 100, "startTime": "t3"},
    ]
    assert entry["conditions"] == [{"type": "TargetEvicted", "status": "False", "reason": "AwaitingEviction"}]
    spec = merge_eviction({"source": "Kubelet", "sources": ["Kubelet"]}, entry)
    assert spec is not None and spec["sources"] == ["Kubelet", "EvictionRequest"]
    assert merge_eviction(spec, entry) is None


def test_a_requested_eviction_is_pending_until_done_or_withdrawn() -> None:
    now = datetime.datetime(2026, 12, 3, 10, 0, tzinfo=datetime.UTC)
    running = {"metadata": {"uid": "u"}, "status": {"conditions": []}}
    spec: dict[str, Any] = {
        "pod": {"name": "p", "uid": "u", "found": True},
        "source": "EvictionRequest",
        "sources": ["EvictionRequest"],
        "attempts": 0,
        "lastAttemptTime": "2026-12-03T09:00:00Z",  # an hour ago: still only asked for
        "evictionRequests": [{"name": "r", "requester": "acme.io/x", "intent": "Eviction"}],
    }
    pending = decide(spec, running, [], now, 30)
    assert pending.outcome is None and pending.recheck_after == REQUESTED_RECHECK_SECONDS
    assert decide(spec, None, [], now, 30).outcome is Outcome.EVICTED
    gone = {**spec, "pod": {"name": "p", "uid": "u", "found": False}}
    assert decide(gone, None, [], now, 30).outcome is Outcome.POD_GONE
    withdrawn = {**spec, "evictionRequests": [{"name": "r", "intent": "Withdrawn"}]}
    blocked = decide(withdrawn, running, [], now, 30)
    assert blocked.outcome is Outcome.BLOCKED and "withdrawn" in blocked.reason
    deleted = {**spec, "evictionRequests": [{"name": "r", "intent": "Eviction", "deletedTime": "t"}]}
    assert decide(deleted, running, [], now, 30).outcome is Outcome.BLOCKED
    # Once the default responder called the Eviction API, the attempt's rules apply (PDBs, 30 s).
    attempted = {**spec, "sources": ["EvictionRequest", "EvictionAPI"], "attempts": 1}
    attempted["lastAttemptTime"] = "2026-12-03T09:59:50Z"
    assert decide(attempted, running, [], now, 30).recheck_after == 20
    budget = [{"name": "batch", "disruptionsAllowed": 0}]
    attempted["lastAttemptTime"] = "2026-12-03T09:59:00Z"
    assert "PodDisruptionBudget batch" in decide(attempted, running, budget, now, 30).reason


def test_each_buildable_release_has_its_own_module(monkeypatch: pytest.MonkeyPatch) -> None:
    for version, (module_dir, etcd_version) in binaries.MODULES.items():
        go_mod = (module_dir / "go.mod").read_text()
        assert f"k8s.io/kubernetes {version}\n" in go_mod, module_dir
        assert f"go.etcd.io/etcd/server/v3 {etcd_version}\n" in go_mod, module_dir
        minor = version.lstrip("v").rsplit(".", 1)[0]
        assert f"k8s.io/api => k8s.io/api v0.{minor.split('.')[1]}." in go_mod  # its own replace lines
    assert binaries.OLDEST_VERSION in binaries.MODULES
    with pytest.raises(binaries.BinariesError, match=re.escape("only v1.37.2, v1.31.13 have a Go module")):
        binaries.build("v1.99.0")
    monkeypatch.setenv(binaries.VERSION_ENV, binaries.OLDEST_VERSION)
    assert binaries.selected_version() == "v1.31.13"
    monkeypatch.delenv(binaries.VERSION_ENV)
    assert binaries.selected_version() == binaries.KUBERNETES_VERSION
