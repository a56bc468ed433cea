"""Make docs/images/dashboard.png: the dashboard's panels over a few minutes of real evictions.

A local control plane, the operator (webhook, controller, watchers) and a real Prometheus
scraping it every second; then three waves, each a minute apart:

1. ``kubectl drain``-like evictions of node-a as the admin, retried every 5 s while a
   PodDisruptionBudget holds one Pod, until the budget is relaxed;
2. the cluster autoscaler (an impersonated service account) scaling node-b down;
3. the kubelet evicting three Pods of node-c for memory pressure (their status set as the
   kubelet sets it), which the watchers record.

Then every panel's PromQL is evaluated and the preview is rendered in Chromium.

    python scripts/dashboard_picture.py [docs/images/dashboard.png]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from lightkube import AsyncClient
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding

from evictwatch.config import parse_config
from evictwatch.kube.client import from_manifest, make_client
from evictwatch.operator import Operator
from evictwatch.report.dashboard import dashboard
from evictwatch.report.preview import HttpProm, Window, evaluate, render_preview
from evictwatch.report.preview_command import write_page
from evictwatch.testing.cluster import Cluster, create_namespace
from evictwatch.testing.controlplane import ControlPlane, free_port
from evictwatch.testing.prometheus import PrometheusServer

AUTOSCALER = "system:serviceaccount:kube-system:cluster-autoscaler"
PAUSE = 45.0
PRESSURE = (
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi. "
    "Container app was using 612Mi, request is 256Mi, has larger consumption of memory."
)


Placed = dict[str, list[tuple[Cluster, str]]]
"""node -> (the Pod's namespace, as a Cluster helper; the Pod's name)"""


async def workloads(client: AsyncClient, cp: ControlPlane, nodes: list[str]) -> Placed:
    """Deployments in three namespaces, their Pods bound round-robin to the nodes and Ready."""
    placed: Placed = {}
    plan = {"shop": {"checkout": 4, "cart": 3}, "search": {"indexer": 3}, "payments": {"api": 3}}
    index = 0
    for namespace, deployments in plan.items():
        await create_namespace(client, namespace)
        cluster = Cluster(cp, client, namespace)
        for name, replicas in deployments.items():
            for pod in await cluster.create_deployment(name, {"app": name}, replicas=replicas):
                node = nodes[index % len(nodes)]
                index += 1
                await cluster.bind(pod, node)
                await cluster.mark_ready(pod)
                placed.setdefault(node, []).append((cluster, pod))
    await Cluster(cp, client, "shop").create_pdb("cart", {"app": "cart"}, min_available=3)
    return placed


async def drain(placed: Placed, node: str, *, impersonate: str | None = None) -> None:
    """Evict every Pod of ``node``; retry the refused ones every 5 s, as kubectl drain does."""
    pending = list(placed.get(node, []))
    tries = 0
    while pending:
        refused = []
        for cluster, pod in pending:
            reply = await cluster.evict(pod, impersonate=impersonate, user_agent="kubectl-drain")
            if reply.status == 429:
                refused.append((cluster, pod))
        pending = refused
        tries += 1
        if pending and tries == 4:  # the owner relaxes the budget; the next retry passes
            await pending[0][0].client.delete(PodDisruptionBudget, "cart", namespace="shop")
        if pending:
            await asyncio.sleep(5)


async def allow_autoscaler(client: AsyncClient) -> None:
    """The autoscaler's RBAC to evict (impersonating it is not enough: authorization comes first)."""
    rule = {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}
    await client.create(
        from_manifest(ClusterRole, {"metadata": {"name": "autoscaler-evict"}, "rules": [rule]})
    )
    binding = {
        "metadata": {"name": "autoscaler-evict"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "autoscaler-evict",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "cluster-autoscaler", "namespace": "kube-system"}],
    }
    await client.create(from_manifest(ClusterRoleBinding, binding))


async def kubelet_pressure(placed: Placed, node: str) -> None:
    """What the kubelet writes when it evicts a Pod for memory pressure."""
    for cluster, pod in placed.get(node, [])[:3]:
        async with cluster.http() as http:
            reply = await http.patch(
                f"/api/v1/namespaces/{cluster.namespace}/pods/{pod}/status",
                json={"status": {"phase": "Failed", "reason": "Evicted", "message": PRESSURE}},
                headers={"Content-Type": "application/merge-patch+json"},
            )
        reply.raise_for_status()


async def main(target: Path) -> None:
    with ControlPlane(with_controller_manager=True) as cp:
        client = make_client(cp.kubeconfig_path)
        metrics_port = free_port()
        config = {
            "webhook": {"host": "127.0.0.1", "port": 0},
            "metricsPort": metrics_port,
            # Short, so that the Pod the drain keeps retrying shows as Blocked between tries.
            "controller": {"blockedAfterSeconds": 3},
        }
        operator = Operator(parse_config(config), kubeconfig=cp.kubeconfig_path, self_signed=True)
        await operator.start()
        try:
            nodes = []
            seed = Cluster(cp, client, "default")
            for name in ("node-a", "node-b", "node-c"):
                nodes.append(await seed.create_node(name))
            placed = await workloads(client, cp, nodes)
            await allow_autoscaler(client)
            # With start timestamps, each series' first increment counts too (docs/report.md).
            server = PrometheusServer(
                [f"127.0.0.1:{metrics_port}"],
                scrape_interval=1.0,
                extra_args=["--enable-feature=created-timestamp-zero-ingestion"],
            )
            with server as prom:
                await asyncio.to_thread(prom.wait_for_targets)
                started = time.time()
                await asyncio.sleep(PAUSE / 3)
                print("wave 1: kubectl drain node-a", flush=True)
                await drain(placed, "node-a")
                await asyncio.sleep(PAUSE)
                print("wave 2: cluster-autoscaler scales node-b down", flush=True)
                await drain(placed, "node-b", impersonate=AUTOSCALER)
                await asyncio.sleep(PAUSE)
                print("wave 3: the kubelet evicts Pods of node-c (memory)", flush=True)
                await kubelet_pressure(placed, "node-c")
                await asyncio.sleep(PAUSE)
                window = Window(start=started, end=time.time(), step=2, scrape_interval=1)
                model = dashboard()
                async with HttpProm(prom.url) as api:
                    results = await evaluate(model, api, window, {"namespace": ".*"})
                page = render_preview(model, results, window, source="Prometheus 3.16 on the sandbox")
            await asyncio.to_thread(write_page, page, target, "png")
            errors = sum(len(r.errors) for r in results)
            with_data = sum(1 for r in results if r.queries and r.has_data)
            print(f"wrote {target}: {with_data} panels with data, {errors} query errors", flush=True)
        finally:
            await operator.stop()
            await client.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/dashboard.png")))
