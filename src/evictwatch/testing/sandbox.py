"""``evictwatch sandbox``: everything on one machine, for people without a cluster.

It starts the local control plane (building it on first use), runs the operator against it
with a self-signed webhook, makes a demo Deployment, protects it with a PodDisruptionBudget,
and evicts: one allowed, one refused by the budget (and retried, as kubectl drain does), one
dry run. Then it shows the records, and keeps everything running for exploring with kubectl
until Ctrl-C (or exits with ``--once``).

Where the machine can run one (root, cgroups, runc: see :mod:`.testing.node`), the Pods run
on a real node, containerd and a kubelet, and are Running when they are evicted; elsewhere
they are bound to a Node object that nothing runs behind, and the sandbox says which it is.

It lives in the harness because it is the harness at work (the control plane, the fake Node,
the Cluster helpers), and needs nothing beyond the runtime dependencies (no pytest). The CLI's
``sandbox`` and ``control-plane`` commands import it when they run, and only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Namespace

from .. import views
from ..config import parse_config
from ..operator import Operator
from ..records.resource import PodEviction
from .binaries import BinariesError
from .cluster import Cluster, admin_client, create_namespace, wait_for
from .controlplane import ControlPlane, ControlPlaneError
from .node import NodeError, RealNode, why_no_real_node
from .node_binaries import NodeBinariesError
from .node_pods import deployment, pod_spec, wait_running

DEMO_NAMESPACE = "demo"
FAKE_NODE = "sandbox-node-1"
LABELS = {"app": "shop"}
READY_AFTER_SECONDS = 8
"""On a real node a replacement Pod is Ready this long after it starts, so that the budget
still refuses the second eviction while the demo retries it."""
Say = Callable[[str], None]
START_ERRORS = (BinariesError, ControlPlaneError, NodeError, NodeBinariesError)
"""What starting the local control plane can raise: no binaries (and no Go to build them), or no start."""


@dataclass(frozen=True)
class DemoNode:
    """Which node the demo's Pods are on: a real kubelet, or a Node object and nothing behind."""

    name: str
    real: bool
    kubelet_version: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "real": self.real, "kubeletVersion": self.kubelet_version}

    @classmethod
    def of(cls, node: RealNode | None) -> DemoNode:
        if node is None:
            return cls(FAKE_NODE, False, None)
        return cls(node.name, True, node.kubelet_version())


async def _records(client: AsyncClient) -> list[dict[str, Any]]:
    return [item.to_dict() async for item in client.list(PodEviction, namespace=DEMO_NAMESPACE)]


async def start_operator(cp: ControlPlane, *, blocked_after: float = 5.0) -> Operator:
    """The operator, in this process, with a self-signed webhook registered on the control plane."""
    config = parse_config(
        {
            "webhook": {"port": 0, "host": "127.0.0.1"},
            "metricsPort": 0,
            "controller": {"blockedAfterSeconds": blocked_after},
            "capture": {"excludeNamespaces": ["kube-system"]},
            "sinks": {"log": {"enabled": False}},
        }
    )
    operator = Operator(
        config, kubeconfig=cp.kubeconfig_path, self_signed=True, record_key=secrets.token_bytes(32)
    )
    await operator.start()
    return operator


async def _make_pods(cluster: Cluster, node: DemoNode) -> list[str]:
    """Three Pods of Deployment shop: running on the real node, or bound to the fake one."""
    if not node.real:
        await cluster.create_node(node.name)
        pods = await cluster.create_deployment("shop", LABELS, replicas=3)
        for pod in pods:
            await cluster.bind(pod, node.name)
            await cluster.mark_ready(pod)
        return pods
    spec = pod_spec(node.name, ready_after=READY_AFTER_SECONDS, grace_seconds=5)
    await cluster.client.create(from_dict(deployment("shop", DEMO_NAMESPACE, LABELS, spec, replicas=3)))
    running = await wait_running(cluster.client, DEMO_NAMESPACE, count=3, labels=LABELS, timeout=90)
    return sorted(p.metadata.name for p in running if p.metadata is not None and p.metadata.name)


async def run_demo(cp: ControlPlane, operator: Operator, say: Say, node: DemoNode) -> list[dict[str, Any]]:
    """Make the demo workload, evict as a drain would, and return the settled records."""
    client = admin_client(cp.kubeconfig_path)
    try:
        return await _demo(cp, client, operator, say, node)
    finally:
        await client.close()


async def _demo(
    cp: ControlPlane, client: AsyncClient, operator: Operator, say: Say, node: DemoNode
) -> list[dict[str, Any]]:
    blocked_after = operator.config.controller.blockedAfterSeconds
    await asyncio.wait_for(operator.leading.wait(), 30)
    existing = [n.metadata.name async for n in client.list(Namespace) if n.metadata is not None]
    if DEMO_NAMESPACE not in existing:
        await create_namespace(client, DEMO_NAMESPACE)
    cluster = Cluster(cp, client, DEMO_NAMESPACE)
    pods = await _make_pods(cluster, node)
    await cluster.create_pdb("shop", LABELS, min_available=2)
    state = "Running" if node.real else "marked Ready by hand"
    say(f"Deployment demo/shop: 3 Pods on {node.name} ({state}), PodDisruptionBudget minAvailable=2")
    first = await cluster.evict(pods[0])
    say(f"evict {pods[0]}: HTTP {first.status} (the budget allows one disruption)")
    for attempt in range(1, 4):
        second = await cluster.evict(pods[1])
        say(f"evict {pods[1]}: HTTP {second.status} {second.message} (try {attempt})")
        await asyncio.sleep(1.0)
    dry = await cluster.evict(pods[2], dry_run_query=True)
    say(f"evict {pods[2]} --dry-run: HTTP {dry.status} (a dry run changes nothing and is not recorded)")

    async def settled() -> list[dict[str, Any]] | None:
        records = await _records(client)
        outcomes = [(r.get("status") or {}).get("outcome") for r in records]
        return records if len(records) >= 2 and "Pending" not in outcomes else None

    say(f"waiting for the controller to settle the outcomes (Blocked after {blocked_after:.0f} s) ...")
    return await wait_for(settled, timeout=blocked_after + 30, what="the demo records to settle")


def show(records: list[dict[str, Any]]) -> str:
    now = datetime.datetime.now(datetime.UTC)
    headers = views.COLUMNS + views.WIDE
    return views.table([views.row(r, now, wide=True) for r in views.select(records, now=now)], headers)


def start_node(cp: ControlPlane, choice: str, say: Say) -> RealNode | None:
    """``auto``: a real node where the machine allows, else none; ``real``: one or an error."""
    if choice == "fake":
        return None
    reason = why_no_real_node()
    if reason is None:
        say("starting a real node: containerd and a kubelet (built on first use) ...")
        try:
            node = RealNode(cp).start()
        except (NodeError, NodeBinariesError) as error:
            if choice == "real":
                raise
            reason = str(error).splitlines()[0]
        else:
            say(f"real node {node.name} Ready in {node.started_seconds:.1f} s")
            return node
    if choice == "real":
        raise NodeError(f"no real node on this machine: {reason}")
    say(f"no real node here ({reason}); the demo's Pods go on a Node object with no kubelet behind it")
    return None


def document(node: DemoNode, records: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``--output json`` prints: the node the demo ran on and the records as the API has them."""
    return {"node": node.to_dict(), "records": records}


async def serve(
    cp: ControlPlane,
    node: DemoNode,
    real_node: RealNode | None,
    *,
    once: bool,
    output: str,
    echo: Say,
    say: Say,
) -> None:
    """Run the operator and the demo, print the records (``echo``), then wait for Ctrl-C."""
    operator = await start_operator(cp)
    try:
        say(f"kube-apiserver {cp.version()['gitVersion']} at {cp.url}; webhook at {operator.webhook_url}")
        kind = f"a real kubelet {node.kubelet_version}" if node.real else "a fake node (no kubelet)"
        say(f"node: {node.name}, {kind}")
        records = await run_demo(cp, operator, say, node)
        echo(json.dumps(document(node, records), indent=2) if output == "json" else f"\n{show(records)}\n")
        say(
            f"explore with: export KUBECONFIG={cp.kubeconfig_path}; kubectl get pev -A; "
            "evictwatch get -A; evictwatch describe demo/<pod>"
        )
        if real_node is not None:
            say(f"drain the real node with: {real_node.kubectl} drain {node.name} --ignore-daemonsets")
        if not once:
            say("running until Ctrl-C")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        await operator.stop()


def run_sandbox(once: bool, say: Say, echo: Say, *, node_choice: str = "auto", output: str = "table") -> None:
    """``evictwatch sandbox``: the control plane, a node (real where it can be), the demo; all
    stopped at the end.

    ``say`` tells the demo's story line by line, ``echo`` prints the records as they are.
    Raises one of :data:`START_ERRORS` when the control plane or the asked-for node cannot start.
    """
    say("starting etcd, kube-apiserver and kube-controller-manager ...")
    cp = ControlPlane(with_controller_manager=True).start()
    real_node: RealNode | None = None
    try:
        real_node = start_node(cp, node_choice, say)
        node = DemoNode.of(real_node)
        asyncio.run(serve(cp, node, real_node, once=once, output=output, echo=echo, say=say))
    finally:
        if real_node is not None:
            left = real_node.stop()
            if left:
                say(f"the real node left host changes behind: {left}")
        cp.stop()
        say("stopped; nothing left running")


def serve_control_plane(with_controller_manager: bool, kubeconfig_out: str | None, say: Say) -> None:
    """``evictwatch control-plane``: the local control plane until Ctrl-C (or SIGTERM)."""
    cp = ControlPlane(with_controller_manager=with_controller_manager).start()
    try:
        if kubeconfig_out:
            Path(kubeconfig_out).write_text(cp.kubeconfig_path.read_text())
        say(f"kube-apiserver {cp.version()['gitVersion']} at {cp.url}")
        say(f"export KUBECONFIG={kubeconfig_out or cp.kubeconfig_path}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            signal.pause()
    finally:
        cp.stop()
