"""The eviction webhook on the real control plane: what the evicting client saw, what was recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

from evictwatch import telemetry
from evictwatch.capture.podcache import QUIET_SECONDS
from evictwatch.config import Config, parse_config
from evictwatch.kube.client import from_manifest
from evictwatch.logsetup import JsonFormatter
from evictwatch.operator import Operator
from evictwatch.records.resource import PodEviction
from evictwatch.testing.cluster import Cluster
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.fixtures import LOCAL, StartOperator, merge


async def records(
    kube: AsyncClient, namespace: str, fields: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The namespace's records, filtered on the server by the CRD's selectable fields if asked."""
    return [dict(item) async for item in kube.list(PodEviction, namespace=namespace, fields=fields)]


async def only_record(kube: AsyncClient, namespace: str) -> dict[str, Any]:
    found = await records(kube, namespace)
    assert len(found) == 1, [r["metadata"]["name"] for r in found]
    return found[0]


async def test_policy_v1_eviction_is_recorded(cluster: Cluster, start_operator: StartOperator) -> None:
    await start_operator()
    node = await cluster.create_node()
    pod = await cluster.create_pod("web-1", labels={"app": "web"}, node=node, ready=True)
    reply = await cluster.evict("web-1", delete_options={"gracePeriodSeconds": 30})
    assert reply.status == 201, reply.body
    record = await only_record(cluster.client, cluster.namespace)
    spec = record["spec"]
    assert pod.metadata is not None
    assert spec["pod"] == {
        "name": "web-1",
        "found": True,
        "uid": pod.metadata.uid,
        "labels": {"app": "web"},
        "nodeName": node,
        "phase": "Running",
    }
    assert spec["source"] == "EvictionAPI"
    assert spec["attempts"] == 1
    assert spec["firstAttemptTime"] == spec["lastAttemptTime"]
    assert spec["requester"]["username"] == "admin"
    assert "system:masters" in spec["requester"]["groups"]
    assert spec["deleteOptions"] == {"gracePeriodSeconds": 30}
    # The controller settles it within milliseconds of the Pod terminating: either may be seen.
    assert record["status"]["outcome"] in ("Pending", "Evicted")
    assert record["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "evictwatch"}
    selected = {
        "spec.pod.uid": str(pod.metadata.uid),
        "spec.pod.name": "web-1",
        "spec.pod.nodeName": node,
        "spec.source": "EvictionAPI",
        "spec.requester.component": spec["requester"]["component"],
    }
    found = await records(cluster.client, cluster.namespace, selected)
    assert [r["metadata"]["name"] for r in found] == [record["metadata"]["name"]]
    for field, other in (("spec.pod.nodeName", "another-node"), ("status.outcome", "Blocked")):
        assert await records(cluster.client, cluster.namespace, {**selected, field: other}) == []
    # spec and status are atomic: one managedFields entry each, not one per leaf field
    written = {entry["manager"]: entry["fieldsV1"] for entry in record["metadata"]["managedFields"]}
    assert written["evictwatch"]["f:spec"] == {}


async def test_each_recorded_attempt_logs_one_structured_line(
    cluster: Cluster, start_operator: StartOperator, caplog: pytest.LogCaptureFixture
) -> None:
    await start_operator()
    caplog.set_level(logging.INFO, logger="evictwatch.webhook")
    for _ in range(2):
        reply = await cluster.evict("gone-twice")
        assert reply.status == 404, reply.body
    lines = [r for r in caplog.records if r.name == "evictwatch.webhook" and "recorded in" in r.getMessage()]
    assert [getattr(r, "attempts", None) for r in lines] == [1, 2]
    record = await only_record(cluster.client, cluster.namespace)
    for line in lines:
        data = json.loads(JsonFormatter().format(line))
        assert data["namespace"] == cluster.namespace and data["pod"] == "gone-twice"
        assert data["requester"] == "admin" and data["record"] == record["metadata"]["name"]
        assert data["level"] == "info" and 0 < data["handling_ms"] < 5000
        assert f"at {cluster.namespace}/gone-twice by admin" in data["message"]


async def test_policy_v1beta1_body_is_recorded(cluster: Cluster, start_operator: StartOperator) -> None:
    await start_operator()
    await cluster.create_pod("old-client")
    reply = await cluster.evict("old-client", policy_version="v1beta1")
    # v1.37 still accepts a policy/v1beta1 body on the subresource and converts it.
    assert reply.status == 201, reply.body
    record = await only_record(cluster.client, cluster.namespace)
    assert record["spec"]["pod"]["name"] == "old-client"
    assert record["spec"]["policyVersion"] == "policy/v1"


@pytest.mark.parametrize("how", ["query", "body"])
async def test_dry_runs_are_allowed_and_not_recorded(
    cluster: Cluster, start_operator: StartOperator, how: str
) -> None:
    await start_operator()
    await cluster.create_pod("dry")
    if how == "query":
        reply = await cluster.evict("dry", dry_run_query=True)
    else:
        reply = await cluster.evict("dry", delete_options={"dryRun": ["All"]})
    assert reply.status == 201, reply.body
    assert await cluster.pod_or_none("dry") is not None
    # A real eviction afterwards is recorded, so the webhook was listening all along.
    assert (await cluster.evict("dry")).status == 201
    record = await only_record(cluster.client, cluster.namespace)
    assert record["spec"]["attempts"] == 1


async def test_pdb_blocked_eviction_retried_five_times_is_one_record(
    cluster: Cluster, start_operator: StartOperator
) -> None:
    await start_operator()
    node = await cluster.create_node()
    for name in ("db-0", "db-1"):
        await cluster.create_pod(name, labels={"app": "db"}, node=node, ready=True)
    await cluster.create_pdb("db", {"app": "db"}, min_available=2)
    for _ in range(5):
        reply = await cluster.evict("db-0", user_agent="kubectl-drain/v1.37.2")
        assert reply.status == 429, reply.body
    record = await only_record(cluster.client, cluster.namespace)
    assert record["spec"]["attempts"] == 5
    assert record["spec"]["firstAttemptTime"] < record["spec"]["lastAttemptTime"]
    assert record["spec"]["pod"]["name"] == "db-0"


async def test_missing_pod_is_recorded_with_what_the_request_carries(
    cluster: Cluster, start_operator: StartOperator
) -> None:
    await start_operator()
    reply = await cluster.evict("ghost")
    assert reply.status == 404, reply.body
    record = await only_record(cluster.client, cluster.namespace)
    assert record["spec"]["pod"] == {"name": "ghost", "found": False}
    # an absent field selects as the empty string
    found = await records(cluster.client, cluster.namespace, {"spec.pod.name": "ghost", "spec.pod.uid": ""})
    assert [r["metadata"]["name"] for r in found] == [record["metadata"]["name"]]


async def test_service_account_requester(cluster: Cluster, start_operator: StartOperator) -> None:
    await start_operator()
    await cluster.create_pod("target")
    token = await cluster.service_account_token(
        "cluster-autoscaler", rules=[{"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}]
    )
    reply = await cluster.evict("target", token=token)
    assert reply.status == 201, reply.body
    requester = (await only_record(cluster.client, cluster.namespace))["spec"]["requester"]
    assert requester["username"] == f"system:serviceaccount:{cluster.namespace}:cluster-autoscaler"
    assert requester["serviceAccount"] == {"namespace": cluster.namespace, "name": "cluster-autoscaler"}
    assert requester["component"] == "cluster-autoscaler"


async def test_a_quiet_pod_comes_from_the_watch_without_a_get(
    cluster: Cluster, start_operator: StartOperator, control_plane: ControlPlane
) -> None:
    # Without the controller, which reads Pods to settle records, only the webhook could GET it.
    operator = await start_operator({"controller": {"enabled": False}})
    cache = operator.pod_cache
    assert cache is not None
    node = await cluster.create_node()
    pod = await cluster.create_pod("steady", labels={"app": "web"}, node=node, ready=True)
    assert pod.metadata is not None
    # The watch delivers the Pod, and once its facts have been still for a second they are used.
    await eventually(
        lambda: operator.pod_cache is not None and operator.pod_cache.pods.get((cluster.namespace, "steady"))
    )
    await asyncio.sleep(QUIET_SECONDS + 0.2)
    hits = metric_value("evictwatch_pod_cache_lookups_total", {"result": "hit"})
    gets = pod_gets(control_plane, cluster.namespace, "steady")
    reply = await cluster.evict("steady")
    assert reply.status == 201, reply.body
    spec = (await only_record(cluster.client, cluster.namespace))["spec"]
    assert spec["pod"]["uid"] == pod.metadata.uid
    assert (spec["pod"]["labels"], spec["pod"]["nodeName"]) == ({"app": "web"}, node)
    assert metric_value("evictwatch_pod_cache_lookups_total", {"result": "hit"}) == hits + 1
    # The API server's audit log agrees: nobody read the Pod for this eviction.
    assert pod_gets(control_plane, cluster.namespace, "steady") == gets


async def test_a_pod_replaced_under_its_name_is_recorded_as_the_new_one(
    cluster: Cluster, start_operator: StartOperator
) -> None:
    """A StatefulSet's web-0 deleted and made again: the eviction names the new incarnation (its
    own record, not the old one's), and the new Pod's young facts are read from the server.
    (Within the watch's own delay, milliseconds, the cache could still hold the old one: the
    design accepts that window, see docs/DESIGN.md.)"""
    operator = await start_operator({"controller": {"enabled": False}})
    cache = operator.pod_cache
    assert cache is not None
    node = await cluster.create_node()
    old = await cluster.create_pod("web-0", labels={"app": "web", "v": "1"}, node=node, ready=True)
    await eventually(lambda: (cluster.namespace, "web-0") in cache.pods)
    await asyncio.sleep(QUIET_SECONDS + 0.2)  # the old one is quiet: the cache would answer for it
    await cluster.client.delete(Pod, "web-0", namespace=cluster.namespace, grace_period=0)
    new = await cluster.create_pod("web-0", labels={"app": "web", "v": "2"}, node=node, ready=True)
    assert new.metadata is not None and new.metadata.uid
    new_uid = new.metadata.uid
    # Once the watch has told of the new one, its facts are young: read from the server.
    await eventually(
        lambda: (
            cache.pods.get((cluster.namespace, "web-0"), (None,))[0] is not None
            and cache.pods[(cluster.namespace, "web-0")][0].uid == new_uid
        )
    )
    recent = metric_value("evictwatch_pod_cache_lookups_total", {"result": "recent"})
    assert (await cluster.evict("web-0")).status == 201
    assert metric_value("evictwatch_pod_cache_lookups_total", {"result": "recent"}) == recent + 1
    spec = (await only_record(cluster.client, cluster.namespace))["spec"]
    assert old.metadata is not None
    assert spec["pod"]["uid"] == new_uid != old.metadata.uid
    assert spec["pod"]["labels"] == {"app": "web", "v": "2"}


async def test_without_the_pod_cache_each_review_gets_the_pod(
    cluster: Cluster, start_operator: StartOperator, control_plane: ControlPlane
) -> None:
    operator = await start_operator({"webhook": {"podCache": False}, "controller": {"enabled": False}})
    assert operator.pod_cache is not None  # the watchers' Pod watch; the webhook does not read it
    await cluster.create_pod("plain", labels={"app": "web"})
    gets = pod_gets(control_plane, cluster.namespace, "plain")
    assert (await cluster.evict("plain")).status == 201
    assert (await only_record(cluster.client, cluster.namespace))["spec"]["pod"]["labels"] == {"app": "web"}
    assert pod_gets(control_plane, cluster.namespace, "plain") == gets + 1


async def test_an_exec_plugin_identity_is_presented_on_every_path(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """An exec credential plugin (as cloud kubeconfigs use) is run by our one client: the hot
    path's record write and the Pod cache's list and watch all present its token."""
    account = "exec-admin"
    token = await cluster.service_account_token(account)
    binding = f"{cluster.namespace}-{account}"
    await cluster.client.create(
        from_manifest(
            ClusterRoleBinding,
            {
                "metadata": {"name": binding},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": cluster.namespace}],
            },
        )
    )
    plugin = tmp_path / "credential-plugin"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": token},
    }
    plugin.write_text(f"#!/bin/sh\necho '{json.dumps(credential)}'\n")
    plugin.chmod(0o755)
    kubeconfig = yaml.safe_load(control_plane.kubeconfig_for_token("unused", user=account).read_text())
    kubeconfig["users"][0]["user"] = {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
    }
    (tmp_path / "exec.kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    config = merge(LOCAL, {"controller": {"enabled": False}, "watchers": {"enabled": False}})
    operator = Operator(parse_config(config), kubeconfig=tmp_path / "exec.kubeconfig", self_signed=True)
    await operator.start()
    try:
        cache = operator.pod_cache
        assert cache is not None and cache.api.credentials.user is not None
        assert cache.api.credentials.user.exec is not None
        node = await cluster.create_node()
        pod = await cluster.create_pod("via-exec", labels={"app": "web"}, node=node, ready=True)
        await eventually(lambda: (cluster.namespace, "via-exec") in cache.pods)
        await asyncio.sleep(QUIET_SECONDS + 0.2)
        hits = metric_value("evictwatch_pod_cache_lookups_total", {"result": "hit"})
        assert (await cluster.evict("via-exec")).status == 201
        spec = (await only_record(cluster.client, cluster.namespace))["spec"]
        assert pod.metadata is not None and spec["pod"]["uid"] == pod.metadata.uid
        assert (spec["pod"]["labels"], spec["pod"]["nodeName"]) == ({"app": "web"}, node)
        assert metric_value("evictwatch_pod_cache_lookups_total", {"result": "hit"}) == hits + 1
    finally:
        await operator.stop()
        await cluster.client.delete(ClusterRoleBinding, binding)


def pod_gets(control_plane: ControlPlane, namespace: str, name: str) -> int:
    """GET requests for one Pod in the API server's audit log."""
    count = 0
    with control_plane.audit_log_path.open() as log:
        for line in log:
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if (
                event.get("verb") == "get"
                and ref.get("resource") == "pods"
                and not ref.get("subresource")
                and (ref.get("namespace"), ref.get("name")) == (namespace, name)
            ):
                count += 1
    return count


def metric_value(name: str, labels: dict[str, str]) -> float:
    return telemetry.REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_pod_filtered_out_by_label(cluster: Cluster, start_operator: StartOperator) -> None:
    await start_operator({"capture": {"podSelector": {"matchLabels": {"evictwatch": "yes"}}}})
    await cluster.create_pod("ignored", labels={"evictwatch": "no"})
    await cluster.create_pod("watched", labels={"evictwatch": "yes"})
    assert (await cluster.evict("ignored")).status == 201
    assert (await cluster.evict("watched")).status == 201
    record = await only_record(cluster.client, cluster.namespace)
    assert record["spec"]["pod"]["name"] == "watched"


async def test_pod_filtered_out_by_namespace(cluster: Cluster, start_operator: StartOperator) -> None:
    await start_operator({"capture": {"excludeNamespaces": [cluster.namespace]}})
    await cluster.create_pod("skipped")
    assert (await cluster.evict("skipped")).status == 201
    assert await records(cluster.client, cluster.namespace) == []


async def test_own_pods_are_never_recorded(cluster: Cluster, start_operator: StartOperator) -> None:
    await start_operator(
        {"self": {"namespace": cluster.namespace, "labels": {"app.kubernetes.io/name": "evictwatch"}}}
    )
    await cluster.create_pod("evictwatch-abc", labels={"app.kubernetes.io/name": "evictwatch"})
    await cluster.create_pod("neighbour", labels={"app.kubernetes.io/name": "other"})
    assert (await cluster.evict("evictwatch-abc")).status == 201
    assert (await cluster.evict("neighbour")).status == 201
    record = await only_record(cluster.client, cluster.namespace)
    assert record["spec"]["pod"]["name"] == "neighbour"


async def test_webhook_down_with_failure_policy_ignore_lets_evictions_through(
    cluster: Cluster, start_operator: StartOperator
) -> None:
    operator = await start_operator()
    assert operator.webhook_server is not None
    await operator.webhook_server.stop()  # the registration stays: the API server calls a dead port
    await cluster.create_pod("unseen")
    reply = await cluster.evict("unseen")
    assert reply.status == 201, reply.body
    assert await cluster.pod_or_none("unseen") is None
    # No attempt was seen by the webhook (a record, if any, is the backstop's, with no attempts).
    assert [r["spec"]["attempts"] for r in await records(cluster.client, cluster.namespace)] in ([], [0])


def _client_for(operator: Operator) -> httpx2.AsyncClient:
    context = ssl.create_default_context(cadata=operator.ca_pem.decode())
    return httpx2.AsyncClient(verify=context, timeout=10)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b'{"kind": "AdmissionReview"}', "review.request is missing"),
        (b'{"apiVersion": "admission.k8s.io/v1", "request": {"operation": "CREATE"}}', "request.uid"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'{"request": "x"}', "review.request must be an object"),
    ],
)
async def test_malformed_body_gets_400_with_reason(
    start_operator: StartOperator, body: bytes, reason: str
) -> None:
    operator = await start_operator()
    async with _client_for(operator) as http:
        reply = await http.post(
            operator.webhook_url, content=body, headers={"Content-Type": "application/json"}
        )
    assert reply.status_code == 400
    assert reason in reply.json()["error"]


async def test_other_kind_is_denied_with_code_400(start_operator: StartOperator) -> None:
    operator = await start_operator()
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Binding"},
            "name": "p",
            "namespace": "n",
            "userInfo": {"username": "x"},
            "object": {},
        },
    }
    async with _client_for(operator) as http:
        reply = await http.post(operator.webhook_url, json=review)
    assert reply.status_code == 200
    response = reply.json()["response"]
    assert response["uid"] == "u-1"
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert "Binding" in response["status"]["message"]


async def test_non_create_is_allowed_without_record(start_operator: StartOperator, cluster: Cluster) -> None:
    operator = await start_operator()
    review = {
        "apiVersion": "admission.k8s.io/v1beta1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-2", "operation": "DELETE", "namespace": cluster.namespace, "name": "p"},
    }
    async with _client_for(operator) as http:
        reply = await http.post(operator.webhook_url, json=review)
    assert reply.json() == {
        "apiVersion": "admission.k8s.io/v1beta1",
        "kind": "AdmissionReview",
        "response": {"uid": "u-2", "allowed": True},
    }
    assert await records(cluster.client, cluster.namespace) == []


def test_config_defaults_match_the_safety_model() -> None:
    webhook = Config().webhook
    assert (webhook.failurePolicy, webhook.timeoutSeconds, webhook.sideEffects, webhook.matchPolicy) == (
        "Ignore",
        5,
        "NoneOnDryRun",
        "Equivalent",
    )
    assert webhook.admissionReviewVersions == ["v1", "v1beta1"]
