"""pytest fixtures for tests against the real local control plane.

Load with ``pytest_plugins = ["evictwatch.testing.fixtures"]``; it needs the ``testing`` extra
(``pip install 'evictwatch[testing]'``: pytest and pytest-asyncio), the only part of the harness
that does. The control plane is
session-scoped (one etcd, kube-apiserver and kube-controller-manager for the whole run,
about 10 s to start); every test gets a fresh namespace, so tests do not see each other.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from typing import Any, Protocol

import pytest
from lightkube import AsyncClient

from ..config import parse_config
from ..operator import Operator
from .cluster import Cluster, admin_client, create_namespace, unique
from .controlplane import ControlPlane, free_port
from .node import RealNode, why_no_real_node


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, built on first use."""
    keep = os.environ.get("EVICTWATCH_KEEP_CONTROL_PLANE") == "1"
    cp = ControlPlane(with_controller_manager=True, keep_workdir=keep)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


EVICTION_REQUEST_GATES = {"EvictionRequestAPI": True}
EVICTION_REQUEST_VERSIONS = {"lifecycle.k8s.io/v1alpha1": True}


@pytest.fixture(scope="session")
def eviction_request_control_plane(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """A second control plane (etcd + kube-apiserver) that serves the alpha Eviction Request API.

    Only the tests that need ``lifecycle.k8s.io/v1alpha1`` use it; every other test keeps the
    default control plane, gates as they ship.
    """
    cp = ControlPlane(
        binaries=control_plane.binaries,
        audit_log=False,
        feature_gates=EVICTION_REQUEST_GATES,
        runtime_config=EVICTION_REQUEST_VERSIONS,
    )
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
async def kube(control_plane: ControlPlane) -> AsyncIterator[AsyncClient]:
    """An admin lightkube AsyncClient."""
    client = admin_client(control_plane.kubeconfig_path)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def namespace(kube: AsyncClient) -> AsyncIterator[str]:
    """A fresh namespace (with its default ServiceAccount), deleted after the test."""
    from lightkube.resources.core_v1 import Namespace

    name = await create_namespace(kube, unique("ew"))
    try:
        yield name
    finally:
        await kube.delete(Namespace, name)


@pytest.fixture
async def cluster(control_plane: ControlPlane, kube: AsyncClient, namespace: str) -> AsyncIterator[Cluster]:
    """Helpers bound to the test's namespace; removes the Nodes and webhooks it made."""
    helper = Cluster(control_plane, kube, namespace)
    try:
        yield helper
    finally:
        await helper.cleanup()


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, mappings merged key by key (a config overlay)."""
    merged = dict(base)
    for key, value in extra.items():
        old = merged.get(key)
        merged[key] = merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return merged


class StartOperator(Protocol):
    def __call__(self, config: Mapping[str, Any] | None = None, **options: Any) -> Awaitable[Operator]: ...


LOCAL = {"webhook": {"port": 0, "host": "127.0.0.1"}, "metricsPort": 0}


@pytest.fixture
async def start_operator(control_plane: ControlPlane) -> AsyncIterator[StartOperator]:
    """Start operators in this process against the control plane; all are stopped after the test.

    ``config`` is laid over a local default (free webhook port on 127.0.0.1, no metrics port);
    ``options`` go to :class:`Operator` (``self_signed`` defaults to True: the webhook registers
    itself with the control plane).
    """
    started: list[Operator] = []

    async def start(config: Mapping[str, Any] | None = None, **options: Any) -> Operator:
        options.setdefault("self_signed", True)
        operator = Operator(
            parse_config(merge(LOCAL, config or {})), kubeconfig=control_plane.kubeconfig_path, **options
        )
        await operator.start()
        started.append(operator)
        return operator

    try:
        yield start
    finally:
        for operator in reversed(started):
            await operator.stop()


async def settling_operator(
    start_operator: StartOperator, cluster: Cluster, *, blocked_after: float = 2.0
) -> Operator:
    """An operator with its metrics port open: webhook and controller (quick to call a Pod
    Blocked, quick to elect itself), no watchers, its Lease in the test's namespace."""
    return await start_operator(
        {
            "self": {"namespace": cluster.namespace},
            "controller": {
                "blockedAfterSeconds": blocked_after,
                "leaderElection": {
                    "leaseName": unique("evictwatch-settling"),
                    "leaseDurationSeconds": 4,
                    "renewSeconds": 1,
                },
            },
            "watchers": {"enabled": False},
        },
        record_key=b"settling-test-key",
        metrics_port=free_port(),
    )


@pytest.fixture
async def metrics_operator(start_operator: StartOperator, cluster: Cluster) -> Operator:
    """:func:`settling_operator` with the defaults."""
    return await settling_operator(start_operator, cluster)


@pytest.fixture(scope="module")
def real_node_options() -> dict[str, Any]:
    """Keyword arguments for :class:`RealNode`; a test module overrides this to change them."""
    return {}


@pytest.fixture(scope="module")
def real_node(control_plane: ControlPlane, real_node_options: dict[str, Any]) -> Iterator[RealNode]:
    """A real node (containerd + kubelet) registered with the control plane, one per module.

    Where the machine cannot run one (not root, no cgroups, no runc) the tests fail, naming
    what is missing, never skip: a skip would hide that the kubelet's behaviour went unproven
    (``scripts/test.sh`` installs the node's parts; run it as root). Teardown fails the test
    module if any host change could not be undone.
    """
    reason = why_no_real_node()
    if reason is not None:
        pytest.fail(f"the real-node tests need a machine that can run a node, but {reason}")
    node = RealNode(control_plane, **real_node_options).start()
    try:
        yield node
    finally:
        left = node.stop()
    assert not left, f"the real node left host changes behind: {left}"
