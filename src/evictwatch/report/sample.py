"""Synthetic PodEviction records shaped like a day of drains (pure and seeded).

For the report's tests, its size and speed measurements, and the picture in docs/report.md:
nodes drained one after another by kubectl, the cluster autoscaler or Karpenter, some Pods
held by PodDisruptionBudgets for a while (Blocked), kubelet pressure evictions scattered
over the window, and a few Pods that were gone or still pending at the end.

``python -m evictwatch.report.sample 300 out.html`` writes a report of 300 such records;
``python -m evictwatch.report.sample 200 docs/images/report.png --nodes 6 --listed 2`` made the
picture in docs/report.md.
"""

from __future__ import annotations

import datetime
import hashlib
import random
import sys
from pathlib import Path
from typing import Any

from .window import Window

_WORKLOADS = (
    ("shop", "Deployment", "checkout"),
    ("shop", "Deployment", "cart"),
    ("shop", "StatefulSet", "redis"),
    ("search", "Deployment", "indexer"),
    ("search", "StatefulSet", "opensearch"),
    ("payments", "Deployment", "api"),
    ("payments", "StatefulSet", "postgres"),
    ("batch", "Job", "nightly-report"),
    ("monitoring", "StatefulSet", "prometheus"),
    ("ingress", "Deployment", "ingress-nginx"),
)
_DRAINERS = (
    {"username": "alice@example.com", "component": "kubectl"},
    {
        "username": "system:serviceaccount:kube-system:cluster-autoscaler",
        "component": "cluster-autoscaler",
        "serviceAccount": {"namespace": "kube-system", "name": "cluster-autoscaler"},
    },
    {
        "username": "system:serviceaccount:karpenter:karpenter",
        "component": "karpenter",
        "serviceAccount": {"namespace": "karpenter", "name": "karpenter"},
    },
)
_DESCHEDULER = {
    "username": "system:serviceaccount:kube-system:descheduler",
    "component": "descheduler",
    "serviceAccount": {"namespace": "kube-system", "name": "descheduler"},
}
_PRESSURE = (
    ("memory", "The node was low on resource: memory. Threshold quantity: 100Mi, available: 63Mi.", "7.6Gi"),
    ("ephemeral-storage", "The node was low on resource: ephemeral-storage.", "18Gi"),
    ("nodefs.inodesFree", "The node was low on resource: inodes.", "96%"),
    ("pid", "The node was low on resource: pids.", "31000"),
)


def _time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hex(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _door(
    rng: random.Random, window: Window, drained_at: datetime.datetime, drainer: dict[str, Any]
) -> tuple[str, dict[str, Any] | None, dict[str, str] | None, datetime.datetime]:
    """``(source, requester, pressure, first attempt)``: a drain mostly; the kubelet, a descheduler."""
    span = window.seconds
    roll = rng.random()
    if roll < 0.12:
        resource, message, usage = rng.choice(_PRESSURE)
        first = window.start + datetime.timedelta(seconds=rng.uniform(0, span))
        return "Kubelet", None, {"resource": resource, "usage": usage, "message": message}, first
    if roll < 0.17:
        return (
            "EvictionAPI",
            dict(_DESCHEDULER),
            None,
            window.start + datetime.timedelta(seconds=rng.uniform(0, span)),
        )
    first = drained_at + datetime.timedelta(seconds=rng.uniform(0, min(span * 0.03, 900)))
    return "EvictionAPI", dict(drainer), None, first


def _outcome(rng: random.Random, source: str) -> tuple[str, int]:
    """``(outcome, attempts)``."""
    outcome_roll = rng.random()
    if source == "Kubelet":
        return "EvictedByKubelet", 1  # what the controller calls a kubelet eviction
    if outcome_roll < 0.08:
        return "Blocked", rng.randint(5, 60)
    if outcome_roll < 0.11:
        return "PodGone", 1  # no such Pod when the attempt came: the record knows only its name
    if outcome_roll < 0.14:
        return "Pending", rng.randint(1, 4)
    return "Evicted", 1 if rng.random() < 0.8 else rng.randint(2, 6)


def _owners(kind: str, workload: str) -> list[dict[str, str]]:
    """The owner chain (ReplicaSet, then Deployment; or the StatefulSet or Job itself)."""
    replica_set = f"{workload}-{_hex('rs', workload)[:10]}" if kind == "Deployment" else ""
    owner_name = replica_set or workload
    owners = [
        {
            "apiVersion": "batch/v1" if kind == "Job" else "apps/v1",
            "kind": "ReplicaSet" if kind == "Deployment" else kind,
            "name": owner_name,
            "uid": _hex("o", owner_name)[:36],
        }
    ]
    if kind == "Deployment":
        owners.append(
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload, "uid": _hex("d", workload)[:36]}
        )
    return owners


def _blocked_status(workload: str, owners: list[dict[str, str]]) -> dict[str, Any]:
    # a StatefulSet's budget requires both of its 2 Pods (it can never allow an eviction);
    # a Deployment's allows one of 3 to go, and is only blocked while one is unhealthy
    expected = 2 if owners and owners[-1].get("kind") == "StatefulSet" else 3
    why = f"Cannot evict pod as it would violate the pod's disruption budget {workload}-pdb."
    return {
        "why": {"component": "kube-apiserver", "reason": "DisruptionBudget", "message": why},
        "disruptionBudgets": [
            {
                "name": f"{workload}-pdb",
                "disruptionsAllowed": 0,
                "currentHealthy": 2,
                "desiredHealthy": 2,
                "expectedPods": expected,
            }
        ],
    }


def sample_records(
    count: int, window: Window, *, nodes: int | None = None, seed: int = 7
) -> list[dict[str, Any]]:
    """``count`` records inside ``window``, on ``nodes`` nodes (default: about one per 40 records)."""
    rng = random.Random(seed)
    node_count = nodes or max(3, min(60, count // 40))
    node_names = [f"ip-10-0-{i // 250}-{i % 250 + 10}.eu-west-1.compute.internal" for i in range(node_count)]
    drained_at = [
        window.start + datetime.timedelta(seconds=window.seconds * (0.05 + 0.85 * i / node_count))
        for i in range(node_count)
    ]
    drainer = [rng.choice(_DRAINERS) for _ in range(node_count)]
    records: list[dict[str, Any]] = []
    for index in range(count):
        node_index = rng.randrange(node_count)
        namespace, kind, workload = rng.choice(_WORKLOADS)
        source, requester, pressure, first = _door(rng, window, drained_at[node_index], drainer[node_index])
        outcome, attempts = _outcome(rng, source)
        last = min(first + datetime.timedelta(seconds=(attempts - 1) * rng.uniform(5, 30)), window.end)
        first = min(first, last)
        settled = min(last + datetime.timedelta(seconds=rng.uniform(0.5, 40)), window.end)
        suffix = _hex(seed, index)
        owners = _owners(kind, workload)
        pod = f"{workload}-{index % 5}" if kind == "StatefulSet" else f"{owners[0]['name']}-{suffix[9:14]}"
        spec: dict[str, Any] = {
            "pod": {
                "name": pod,
                "uid": _hex("pod", seed, index)[:36],
                "found": True,
                "labels": {"app.kubernetes.io/name": workload, "app.kubernetes.io/part-of": namespace},
                "nodeName": node_names[node_index],
                "phase": "Running",
                "owner": owners[0],
            },
            "source": source,
            "sources": [source],
            "attempts": attempts,
            "firstAttemptTime": _time(first),
            "lastAttemptTime": _time(last),
        }
        if outcome == "PodGone":
            spec["pod"] = {"name": pod, "found": False}
            owners = []
        if requester is not None:
            spec["requester"] = requester
        if pressure is not None:
            spec.update(pressure=pressure, reason="Evicted", message=pressure["message"])
        status: dict[str, Any] = {"outcome": outcome, "owners": owners}
        if outcome != "Pending":
            status["outcomeTime"] = _time(settled)
        if outcome == "Blocked":
            status.update(_blocked_status(workload, owners))
        metadata = {
            "name": f"{pod}.{suffix[14:22]}",
            "namespace": namespace,
            "creationTimestamp": first.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        records.append(
            {
                "apiVersion": "evictwatch.io/v1alpha1",
                "kind": "PodEviction",
                "metadata": metadata,
                "spec": spec,
                "status": status,
            }
        )
    return records


def main(argv: list[str]) -> int:
    """``python -m evictwatch.report.sample COUNT OUT.html|OUT.png [--nodes N] [--listed N]``."""
    import argparse
    import asyncio
    import tempfile

    from .browser import screenshot_html
    from .render import render

    parser = argparse.ArgumentParser(prog="python -m evictwatch.report.sample")
    parser.add_argument("count", type=int)
    parser.add_argument("out", type=Path, help="an .html page, or a .png of it (needs Chromium)")
    parser.add_argument("--nodes", type=int, default=None)
    parser.add_argument("--listed", type=int, default=None, help="records listed (default: all)")
    args = parser.parse_args(argv)
    window = Window.last("12h", datetime.datetime(2026, 3, 2, 18, 0, tzinfo=datetime.UTC))
    records = sample_records(args.count, window, nodes=args.nodes)
    page = render(records, window, max_listed=args.listed)
    if args.out.suffix != ".png":
        args.out.write_text(page, encoding="utf-8")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        html_path = Path(folder).resolve() / "sample.html"
        html_path.write_text(page, encoding="utf-8")
        args.out.write_bytes(asyncio.run(screenshot_html(html_path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
