"""pytest fixtures for tests against the real local control plane.

Load with ``pytest_plugins = ["evictwatch.testing.fixtures"]``. The control plane is
session-scoped (one etcd, kube-apiserver and kube-controller-manager for the whole run,
about 10 s to start); every test gets a fresh namespace, so tests do not see each other.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from lightkube import AsyncClient

from ..kube.client import make_client
from .cluster import Cluster, create_namespace, unique
from .controlplane import ControlPlane


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


@pytest.fixture(scope="session")
async def kube(control_plane: ControlPlane) -> AsyncIterator[AsyncClient]:
    """An admin lightkube AsyncClient."""
    client = make_client(control_plane.kubeconfig_path)
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
