"""Every AdmissionReview captured from a real kube-apiserver decodes to the expected attempt.

The expectations are written from what each case did (``cases.jsonl``), not from the decoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evictwatch.model.admission import build_response, decode_eviction, parse_review
from evictwatch.model.types import Component, ServiceAccountRef

FIXTURES = Path(__file__).parents[1] / "fixtures" / "admission-reviews"
SA = ServiceAccountRef("evict-lab", "evictor")

# file -> (pod, dry_run, grace, precondition uid, propagation, field manager, username)
EXPECTED: dict[str, tuple[str, bool, int | None, str | None, str | None, str, str]] = {
    "arv1-already-terminating": ("arv1-bound", False, None, None, None, "", "admin"),
    "arv1-bound-pod-grace0": ("arv1-bound0", False, 0, None, None, "unknown", "admin"),
    "arv1-bound-pod-grace30": ("arv1-bound", False, 30, None, None, "unknown", "admin"),
    "arv1-dryrun-body": ("arv1-dry", True, None, None, None, "unknown", "admin"),
    "arv1-dryrun-both": ("arv1-dry", True, None, None, None, "unknown", "admin"),
    "arv1-dryrun-query-with-deleteoptions": ("arv1-dry", True, 5, None, None, "unknown", "admin"),
    "arv1-dryrun-query": ("arv1-dry", True, None, None, None, "", "admin"),
    "arv1-kubectl-drain-1": ("arv1-drain-b", False, 10, None, None, "kubectl", "admin"),
    "arv1-kubectl-drain-2": ("arv1-drain-a", False, 10, None, None, "kubectl", "admin"),
    "arv1-labeled-pod": ("arv1-labeled", False, None, None, None, "", "admin"),
    "arv1-nonexistent-pod": ("arv1-does-not-exist", False, None, None, None, "", "admin"),
    "arv1-pdb-allowed": ("arv1-api-a", False, None, None, None, "", "admin"),
    "arv1-pdb-blocked-dryrun": ("arv1-web-b", True, None, None, None, "", "admin"),
    "arv1-pdb-blocked": ("arv1-web-a", False, None, None, None, "", "admin"),
    "arv1-pdb-budget-used": ("arv1-api-b", False, None, None, None, "", "admin"),
    "arv1-pending-pod-policy-v1": ("arv1-pending", False, None, None, None, "", "admin"),
    "arv1-pending-pod-policy-v1beta1": ("arv1-pending-b", False, None, None, None, "", "admin"),
    "arv1-preconditions-uid-match": (
        "arv1-dry",
        False,
        None,
        "9822b699-f712-4ab0-857e-3bc544ee9f8e",
        "Background",
        "unknown",
        "admin",
    ),
    "arv1-preconditions-uid-mismatch": (
        "arv1-precond",
        False,
        None,
        "00000000-0000-0000-0000-000000000000",
        None,
        "unknown",
        "admin",
    ),
    "arv1-running-bound-no-pdb": ("arv1-running", False, None, None, None, "", "admin"),
    "arv1-serviceaccount-evictor": (
        "arv1-sa-target",
        False,
        None,
        None,
        None,
        "",
        "system:serviceaccount:evict-lab:evictor",
    ),
    "arv1-webhook-denies-429": ("deny429-arv1", False, None, None, None, "", "admin"),
    "arv1-webhook-denies": ("deny-arv1", False, None, None, None, "", "admin"),
    "arv1beta1-bound-pod-grace30": ("arv1beta1-bound", False, 30, None, None, "unknown", "admin"),
    "arv1beta1-dryrun-query": ("arv1beta1-dry", True, None, None, None, "", "admin"),
    "arv1beta1-nonexistent-pod": ("arv1beta1-does-not-exist", False, None, None, None, "", "admin"),
    "arv1beta1-pdb-blocked": ("arv1beta1-web-a", False, None, None, None, "", "admin"),
    "arv1beta1-pending-pod-policy-v1": ("arv1beta1-pending", False, None, None, None, "", "admin"),
    "arv1beta1-pending-pod-policy-v1beta1": ("arv1beta1-pending-b", False, None, None, None, "", "admin"),
    "arv1beta1-serviceaccount-evictor": (
        "arv1beta1-sa-target",
        False,
        None,
        None,
        None,
        "",
        "system:serviceaccount:evict-lab:evictor",
    ),
}


def load(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def test_every_fixture_has_an_expectation() -> None:
    on_disk = {path.stem for path in FIXTURES.glob("*.json")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_decodes(name: str) -> None:
    pod, dry_run, grace, precondition, propagation, manager, username = EXPECTED[name]
    request = parse_review(load(name))
    attempt = decode_eviction(request)
    assert request.api_version == (
        "admission.k8s.io/v1beta1" if name.startswith("arv1beta1-") else "admission.k8s.io/v1"
    )
    assert request.operation == "CREATE"
    assert (attempt.namespace, attempt.pod_name) == ("evict-lab", pod)
    assert attempt.dry_run is dry_run
    assert attempt.delete_options.grace_period_seconds == grace
    assert attempt.delete_options.precondition_uid == precondition
    assert attempt.delete_options.propagation_policy == propagation
    assert attempt.requester.field_manager == manager
    assert attempt.requester.username == username
    assert (
        attempt.policy_version == "policy/v1"
    )  # the server converts v1beta1 bodies (matchPolicy Equivalent)
    assert "system:authenticated" in attempt.requester.groups
    if username.startswith("system:serviceaccount:"):
        assert attempt.requester.service_account == SA
        assert "system:serviceaccounts:evict-lab" in attempt.requester.groups
    else:
        assert attempt.requester.service_account is None
    expected_component = Component.KUBECTL if manager == "kubectl" else Component.UNKNOWN
    assert attempt.requester.component == expected_component


@pytest.mark.parametrize("name", ["arv1-pending-pod-policy-v1", "arv1beta1-pending-pod-policy-v1"])
def test_answer_is_in_the_version_asked_and_echoes_uid(name: str) -> None:
    raw: dict[str, Any] = json.loads(load(name))
    request = parse_review(load(name))
    answer = build_response(request)
    assert answer["apiVersion"] == raw["apiVersion"]
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"] == {"uid": raw["request"]["uid"], "allowed": True}


def test_body_only_dry_run_is_recognised_although_request_dry_run_is_false() -> None:
    request = parse_review(load("arv1-dryrun-body"))
    assert request.dry_run is False
    assert decode_eviction(request).dry_run is True
