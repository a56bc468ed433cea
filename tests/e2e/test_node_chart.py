"""The Helm chart on the real node: the operator image, its Pod under its own RBAC, its webhook.

The operator image is built the Dockerfile's way without Docker (Debian's Python and the wheel,
see evictwatch.testing.operator_image) and imported into the node's containerd. The API server
reaches the webhook through its Service with ``--enable-aggregator-routing`` (straight to the
endpoint, as there is no kube-proxy); the Pod reaches the API server at the ``kubernetes``
Service's address, which the host forwards to the API server on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Pod

from evictwatch.records.resource import PodEviction
from evictwatch.testing.cluster import Cluster, admin_client, create_namespace, wait_for
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.helm import run_helm
from evictwatch.testing.node import RealNode, why_no_real_node
from evictwatch.testing.node_config import SERVICE_IP
from evictwatch.testing.node_pods import create_pod, pod_spec, wait_running
from evictwatch.testing.operator_image import IMAGE, build_operator_image
from evictwatch.testing.tcpproxy import TcpProxy

CHART = Path(__file__).parents[2] / "deploy" / "helm" / "evictwatch"
RELEASE, NAMESPACE = "evictwatch", "evictwatch-system"


@pytest.fixture(scope="module")
def chart_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, RealNode]]:
    reason = why_no_real_node()
    if reason is not None:
        # No skip: scripts/test.sh installs and builds what a real node needs (run it as root).
        pytest.fail(f"these tests need a real node, but {reason}")
    image = build_operator_image(tmp_path_factory.mktemp("image") / "operator.tar")
    cp = ControlPlane(with_controller_manager=True, extra_apiserver_args=["--enable-aggregator-routing=true"])
    cp.start()
    try:
        node = RealNode(cp, api_from_pods=True).start()
        try:
            node.import_image(image)
            yield cp, node
        finally:
            left = node.stop()
        assert not left, left
    finally:
        cp.stop()


@pytest.fixture
async def api_for_pods(chart_cluster: tuple[ControlPlane, RealNode]) -> AsyncIterator[TcpProxy]:
    cp, _ = chart_cluster
    async with TcpProxy([("127.0.0.1", cp.apiserver_port)], host=SERVICE_IP, port=443) as proxy:
        yield proxy


def diagnose(cp: ControlPlane, node: RealNode) -> str:
    """The operator Pods' status and logs, and the kubelet's last lines: why it is not Ready."""
    kubectl = [str(node.kubectl), f"--kubeconfig={cp.kubeconfig_path}", "--namespace", NAMESPACE]
    parts = []
    for args in (
        ["get", "pods", "-o", "yaml"],
        ["logs", "--tail=40", "-l", "app.kubernetes.io/name=evictwatch"],
    ):
        result = subprocess.run([*kubectl, *args], capture_output=True, text=True, timeout=30, check=False)
        parts.append(result.stdout[-4000:] + result.stderr[-1000:])
    parts.append(node.log_tail("kubelet", 20))
    return "\n---\n".join(parts)


def kubectl(cp: ControlPlane, node: RealNode, *args: str) -> str:
    command = [str(node.kubectl), f"--kubeconfig={cp.kubeconfig_path}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def helm(cp: ControlPlane, *args: str, values: dict[str, Any] | None = None) -> str:
    result = run_helm(list(args), values=values, kubeconfig=cp.kubeconfig_path, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


async def install_and_wait_ready(cp: ControlPlane, node: RealNode, client: AsyncClient) -> None:
    """``helm install`` with the local image and self-signed certificates; wait for the Pod."""
    name, tag = IMAGE.rsplit(":", 1)
    values = {
        "replicaCount": 1,
        "image": {"repository": name, "tag": tag, "pullPolicy": "Never"},
        "certificates": {"mode": "self-signed"},
        "podDisruptionBudget": {"enabled": False},
        "nodeSelector": {"kubernetes.io/hostname": node.name},
    }
    helm(cp, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace", values=values)
    system = Cluster(cp, client, NAMESPACE)

    async def ready() -> bool:
        # No scheduler runs: bind the chart's Pods to the node as kube-scheduler would.
        async for pod in client.list(Pod, namespace=NAMESPACE):
            if pod.metadata and pod.metadata.name and pod.spec and not pod.spec.nodeName:
                await system.bind(pod.metadata.name, node.name)
        deployment = await client.get(Deployment, RELEASE, namespace=NAMESPACE)
        return bool(deployment.status and deployment.status.readyReplicas == 1)

    try:
        await wait_for(ready, timeout=120, interval=1, what="the operator Deployment to be Ready")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{diagnose(cp, node)}") from None


async def uninstall_leaves_nothing(cp: ControlPlane, node: RealNode) -> None:
    helm(cp, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
    assert json.loads(helm(cp, "list", "--all-namespaces", "--output", "json")) == []
    selector = f"app.kubernetes.io/instance={RELEASE}"
    cluster_kinds = "clusterroles,clusterrolebindings,validatingwebhookconfigurations"
    kinds = "deployments,pods,services,secrets,configmaps,serviceaccounts,roles,rolebindings"

    async def nothing_left() -> bool:
        left = kubectl(cp, node, "get", cluster_kinds, "-l", selector, "-o", "name").split()
        left += kubectl(cp, node, "get", kinds, "-n", NAMESPACE, "-l", selector, "-o", "name").split()
        return not left

    # The operator's Pod goes last: it stops on SIGTERM once its Deployment is deleted.
    await wait_for(nothing_left, timeout=60, interval=1, what="helm uninstall to leave nothing")


async def test_chart_installs_runs_records_and_uninstalls(
    chart_cluster: tuple[ControlPlane, RealNode], api_for_pods: TcpProxy
) -> None:
    cp, node = chart_cluster
    client: AsyncClient = admin_client(cp.kubeconfig_path)
    try:
        await install_and_wait_ready(cp, node, client)
        assert api_for_pods.connections, "the operator never called the API server"

        workload = await create_namespace(client, "shop")
        cluster = Cluster(cp, client, workload)
        await create_pod(client, "web", workload, pod_spec(node.name))
        await wait_running(client, workload, count=1)
        assert (await cluster.evict("web")).status == 201

        async def recorded() -> dict[str, Any] | None:
            async for item in client.list(PodEviction, namespace=workload):
                data: dict[str, Any] = item.to_dict()
                if (data.get("status") or {}).get("outcome") == "Evicted":
                    return data
            return None

        record = await wait_for(recorded, timeout=60, interval=1, what="the in-cluster operator's record")
        assert record["spec"]["pod"]["name"] == "web"
        # Only the webhook knows who asked: the watchers' backstop would record no requester.
        requester = record["spec"].get("requester") or {}
        assert requester.get("username") == "admin", f"the webhook was not reached: {record['spec']}"
        await client.delete(Namespace, workload)
    finally:
        try:
            await uninstall_leaves_nothing(cp, node)
        finally:
            await client.close()
