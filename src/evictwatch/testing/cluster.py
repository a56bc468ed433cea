"""Helpers that act on the test control plane as real clients do.

Each helper writes what the real actor writes: Pods as a Deployment would leave them (or
bound to a fake Node, made Running and Ready as a kubelet would report), PDBs, and evictions
through the real Eviction subresource, as any identity (impersonation or a ServiceAccount's
own token). Raw HTTP is used for evictions so that the body (``policy/v1`` or
``policy/v1beta1``), ``deleteOptions`` and ``?dryRun=All`` are exactly what a client sends.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Node, Pod, ServiceAccount
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from ..kube.client import FIELD_MANAGER, from_manifest, load_config
from .controlplane import ControlPlane

T = TypeVar("T")


def admin_client(kubeconfig: str | Path, *, timeout: float = 10.0) -> AsyncClient:
    """A lightkube client for tests to set the scene with (typed objects, lightkube's own HTTP
    stack). The product never makes one: it calls the API server through ``kube.api.JsonApi``."""
    return AsyncClient(
        load_config(kubeconfig),
        timeout=httpx2.Timeout(timeout),
        field_manager=FIELD_MANAGER,
        lazy=False,
        trust_env=False,
    )


@dataclass(frozen=True)
class HttpReply:
    """What the evicting client saw."""

    status: int
    body: dict[str, Any]

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


async def wait_for(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 20.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@dataclass
class Cluster:
    """Bound to one namespace; cleans up the cluster-scoped objects it made."""

    cp: ControlPlane
    client: AsyncClient
    namespace: str
    _nodes: list[str] = field(default_factory=list)
    _webhooks: list[str] = field(default_factory=list)

    # ---- HTTP --------------------------------------------------------------------------------
    def http(self, *, token: str | None = None, impersonate: str | None = None) -> httpx2.AsyncClient:
        """A raw client: the admin certificate, or only a bearer token; optionally impersonating."""
        headers: dict[str, str] = {}
        if impersonate:
            headers["Impersonate-User"] = impersonate
        if token:
            headers["Authorization"] = f"Bearer {token}"
            context = ssl.create_default_context(cafile=str(self.cp.ca_path))
        else:
            context = self.cp.ssl_context()
        return httpx2.AsyncClient(base_url=self.cp.url, verify=context, headers=headers, timeout=30.0)

    async def evict(
        self,
        name: str,
        *,
        namespace: str | None = None,
        policy_version: str = "v1",
        delete_options: Mapping[str, Any] | None = None,
        dry_run_query: bool = False,
        token: str | None = None,
        impersonate: str | None = None,
        body_namespace: bool = True,
        user_agent: str | None = None,
    ) -> HttpReply:
        """POST an Eviction for ``name``; the reply is what the evicting client would see."""
        ns = namespace or self.namespace
        metadata: dict[str, str] = {"name": name}
        if body_namespace:
            metadata["namespace"] = ns
        body: dict[str, Any] = {
            "apiVersion": f"policy/{policy_version}",
            "kind": "Eviction",
            "metadata": metadata,
        }
        if delete_options is not None:
            body["deleteOptions"] = dict(delete_options)
        params = {"dryRun": "All"} if dry_run_query else {}
        headers = {"User-Agent": user_agent} if user_agent else {}
        async with self.http(token=token, impersonate=impersonate) as http:
            reply = await http.post(
                f"/api/v1/namespaces/{ns}/pods/{name}/eviction", json=body, params=params, headers=headers
            )
        try:
            data = reply.json()
        except json.JSONDecodeError:
            data = {"raw": reply.text}
        return HttpReply(reply.status_code, data)

    # ---- objects -----------------------------------------------------------------------------
    async def create_node(self, name: str | None = None, labels: Mapping[str, str] | None = None) -> str:
        """A Node object with no kubelet behind it (so bound Pods never finish terminating)."""
        node_name = name or unique("fake-node")
        await self.client.create(Node(metadata=ObjectMeta(name=node_name, labels=dict(labels or {}))))
        self._nodes.append(node_name)
        return node_name

    async def create_pod(
        self,
        name: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        node: str | None = None,
        ready: bool = False,
        owner: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Pod:
        """A Pod, Pending unless ``node`` binds it; ``ready`` reports it Running and Ready."""
        ns = namespace or self.namespace
        manifest: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name or unique("pod"), "namespace": ns, "labels": dict(labels or {})},
            "spec": {
                "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                "terminationGracePeriodSeconds": 30,
            },
        }
        if owner is not None:
            manifest["metadata"]["ownerReferences"] = [dict(owner)]
        if annotations:
            manifest["metadata"]["annotations"] = dict(annotations)
        if node is not None:
            manifest["spec"]["nodeName"] = node
        pod = await self.client.create(from_manifest(Pod, manifest))
        if ready:
            pod = await self.mark_ready(manifest["metadata"]["name"], namespace=ns)
        return pod

    async def mark_ready(self, name: str, *, namespace: str | None = None) -> Pod:
        """Patch pods/status as the kubelet would for a started, ready container."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                ],
            }
        }
        status_resource: Any = Pod.Status
        ns = namespace or self.namespace
        pod: Pod = await self.client.patch(status_resource, name, status, namespace=ns)
        return pod

    async def create_deployment(self, name: str, labels: Mapping[str, str], replicas: int = 2) -> list[str]:
        """A Deployment; kube-controller-manager makes its ReplicaSet and Pods. Returns the Pod names."""
        manifest = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
                },
            },
        }
        await self.client.create(from_manifest(Deployment, manifest))

        async def pods() -> list[str] | None:
            names = [
                p.metadata.name
                async for p in self.client.list(Pod, namespace=self.namespace, labels=dict(labels))
                if p.metadata is not None and p.metadata.name
            ]
            return sorted(names) if len(names) >= replicas else None

        found = await wait_for(pods, what=f"{replicas} Pods of Deployment {name}")
        return found

    async def bind(self, pod: str, node: str) -> None:
        """Bind a Pending Pod to a Node, as the scheduler does (pods/binding)."""
        async with self.http() as http:
            reply = await http.post(
                f"/api/v1/namespaces/{self.namespace}/pods/{pod}/binding",
                json={
                    "apiVersion": "v1",
                    "kind": "Binding",
                    "metadata": {"name": pod},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                },
            )
        reply.raise_for_status()

    async def create_pdb(
        self,
        name: str,
        match_labels: Mapping[str, str],
        *,
        min_available: int | str | None = None,
        max_unavailable: int | str | None = None,
        wait_observed: bool = True,
    ) -> PodDisruptionBudget:
        """A policy/v1 PDB; waits until kube-controller-manager has computed its status."""
        spec: dict[str, Any] = {"selector": {"matchLabels": dict(match_labels)}}
        if min_available is not None:
            spec["minAvailable"] = min_available
        if max_unavailable is not None:
            spec["maxUnavailable"] = max_unavailable
        manifest = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }
        pdb: PodDisruptionBudget = await self.client.create(from_manifest(PodDisruptionBudget, manifest))
        if wait_observed:

            async def observed() -> PodDisruptionBudget | None:
                current = await self.client.get(PodDisruptionBudget, name, namespace=self.namespace)
                generation = current.metadata.generation if current.metadata else None
                seen = current.status.observedGeneration if current.status else None
                return current if seen is not None and seen == generation else None

            pdb = await wait_for(observed, what=f"PDB {name} status from kube-controller-manager")
        return pdb

    async def service_account_token(
        self, name: str, *, rules: list[dict[str, Any]] | None = None, expiration: int = 3600
    ) -> str:
        """A ServiceAccount (with a Role of ``rules`` when given) and a token from TokenRequest."""
        await self.client.create(ServiceAccount(metadata=ObjectMeta(name=name, namespace=self.namespace)))
        if rules:
            await self.client.create(
                from_manifest(Role, {"metadata": {"name": name, "namespace": self.namespace}, "rules": rules})
            )
            await self.client.create(
                from_manifest(
                    RoleBinding,
                    {
                        "metadata": {"name": name, "namespace": self.namespace},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": self.namespace}],
                    },
                )
            )
        async with self.http() as http:
            reply = await http.post(
                f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{name}/token",
                json={
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {"expirationSeconds": expiration},
                },
            )
        reply.raise_for_status()
        return str(reply.json()["status"]["token"])

    async def register_webhook(self, manifest: Mapping[str, Any]) -> str:
        """Create a ValidatingWebhookConfiguration (removed again by :meth:`cleanup`)."""
        obj = from_manifest(ValidatingWebhookConfiguration, dict(manifest))
        await self.client.create(obj)
        name = str(manifest["metadata"]["name"])
        self._webhooks.append(name)
        return name

    async def pod_or_none(self, name: str, namespace: str | None = None) -> Pod | None:
        try:
            pod: Pod = await self.client.get(Pod, name, namespace=namespace or self.namespace)
            return pod
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise

    async def cleanup(self) -> None:
        for name in self._webhooks:
            await _ignore_missing(self.client.delete(ValidatingWebhookConfiguration, name))
        for name in self._nodes:
            await _ignore_missing(self.client.delete(Node, name))


async def _ignore_missing(call: Awaitable[Any]) -> None:
    try:
        await call
    except ApiError as error:
        if error.status.code != 404:
            raise


async def create_namespace(client: AsyncClient, name: str, labels: Mapping[str, str] | None = None) -> str:
    """A namespace and its ``default`` ServiceAccount (which Pod admission requires).

    kube-controller-manager creates that account too, but a moment later; making it here
    means a test never races it.
    """
    await client.create(Namespace(metadata=ObjectMeta(name=name, labels=dict(labels or {}))))
    try:
        await client.create(ServiceAccount(metadata=ObjectMeta(name="default", namespace=name)))
    except ApiError as error:
        if error.status.code != 409:
            raise
    return name
