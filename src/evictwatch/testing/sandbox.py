"""``evictwatch sandbox``: everything on one machine, for people without a cluster.

It starts the local control plane (building it on first use), runs the operator against it
with a self-signed webhook, makes a demo Deployment whose Pods run on a fake Node, protects
them with a PodDisruptionBudget, and evicts: one allowed, one refused by the budget (and
retried, as kubectl drain does), one dry run. Then it shows the records, and keeps
everything running for exploring with kubectl until Ctrl-C (or exits with ``--once``).

It lives in the harness because it is the harness at work (the control plane, the fake Node,
the Cluster helpers), and needs nothing beyond the runtime dependencies (no pytest). The CLI's
``sandbox`` and ``control-plane`` commands import it when they run, and only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace

from .. import views
from ..config import parse_config
from ..operator import Operator
from ..records.resource import PodEviction
from .binaries import BinariesError
from .cluster import Cluster, create_namespace, wait_for
from .controlplane import ControlPlane, ControlPlaneError

DEMO_NAMESPACE = "demo"
Say = Callable[[str], None]
START_ERRORS = (BinariesError, ControlPlaneError)
"""What starting the local control plane can raise: no binaries (and no Go to build them), or no start."""


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


async def run_demo(cp: ControlPlane, operator: Operator, say: Say) -> list[dict[str, Any]]:
    """Make the demo workload, evict as a drain would, and return the settled records."""
    client = operator.client
    assert client is not None
    blocked_after = operator.config.controller.blockedAfterSeconds
    await asyncio.wait_for(operator.leading.wait(), 30)
    existing = [n.metadata.name async for n in client.list(Namespace) if n.metadata is not None]
    if DEMO_NAMESPACE not in existing:
        await create_namespace(client, DEMO_NAMESPACE)
    cluster = Cluster(cp, client, DEMO_NAMESPACE)
    node = await cluster.create_node("sandbox-node-1")
    pods = await cluster.create_deployment("shop", {"app": "shop"}, replicas=3)
    for pod in pods:
        await cluster.bind(pod, node)
        await cluster.mark_ready(pod)
    await cluster.create_pdb("shop", {"app": "shop"}, min_available=2)
    say(f"Deployment demo/shop: 3 Pods on {node}, PodDisruptionBudget minAvailable=2")
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


async def _demo(cp: ControlPlane, once: bool, say: Say, echo: Say) -> None:
    operator = await start_operator(cp)
    try:
        say(f"kube-apiserver {cp.version()['gitVersion']} at {cp.url}; webhook at {operator.webhook_url}")
        records = await run_demo(cp, operator, say)
        echo(f"\n{show(records)}\n")
        say(
            f"explore with: export KUBECONFIG={cp.kubeconfig_path}; kubectl get pev -A; "
            "evictwatch get -A; evictwatch describe demo/<pod>"
        )
        if not once:
            say("running until Ctrl-C")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        await operator.stop()
        if operator.client is not None:
            await operator.client.close()


def run_sandbox(once: bool, say: Say, echo: Say) -> None:
    """``evictwatch sandbox``: start the control plane, run the demo, stop everything at the end.

    ``say`` tells the demo's story line by line, ``echo`` prints the records' table as it is.
    Raises one of :data:`START_ERRORS` when the control plane cannot start.
    """
    say("starting etcd, kube-apiserver and kube-controller-manager ...")
    cp = ControlPlane(with_controller_manager=True).start()
    try:
        asyncio.run(_demo(cp, once, say, echo))
    finally:
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
