"""Eviction storm: a drain of N Running+Ready Pods with concurrency 50, PDBs blocking a share of them.

N Pods (default 2,000) on several fake Nodes, in groups of 10; a share of the groups (default
10%) has a PodDisruptionBudget with minAvailable = the whole group, so every eviction there is
refused with 429. The client retries a 429 like ``kubectl drain``: every ``--retry-interval``
seconds, up to ``--retries`` times. The operator runs as a separate process with everything on
(webhook, controller, watchers, the default sinks) and ``controller.blockedAfterSeconds`` small.

Measured: wall time, evictions per second, completeness (records == distinct Pods attempted;
sum of spec.attempts == attempts that reached the webhook) and the time from the eviction to
the settled outcome (status.outcomeTime minus the client's time of the last attempt).

    python -m bench.storm [--pods 2000] [--nodes 20] [--blocked-share 0.1] [--concurrency 50]
                          [--retry-interval 5] [--retries 3] [--blocked-after 2] [--quick]
"""

from __future__ import annotations

import asyncio
import datetime
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from bench import common
from bench.added_latency import MinimalRecorder
from bench.common import Api, OperatorProcess, Target
from evictwatch import __version__
from evictwatch.kube.api import JsonApi
from evictwatch.kube.client import load_config
from evictwatch.records.install import ensure_crd

FINAL = {"Evicted", "Blocked", "PodGone", "Failed"}


def blocked_groups(groups: int, share: float) -> set[int]:
    """Evenly spread groups, ``floor(groups * share)`` of them."""
    return {g for g in range(groups) if int((g + 1) * share) > int(g * share)}


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def wait_pdbs(api: Api, namespace: str, count: int, size: int, timeout: float = 120.0) -> None:
    """Until kube-controller-manager has computed every PDB's status (all Pods healthy, 0 allowed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = await api.list_all(f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets")
        ready = [
            p
            for p in items
            if (p.get("status") or {}).get("observedGeneration") == p["metadata"].get("generation")
            and (p.get("status") or {}).get("currentHealthy") == size
        ]
        if len(ready) == count:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(
        f"the PDBs of {namespace} were not observed by kube-controller-manager in {timeout:.0f} s"
    )


@dataclass
class Drain:
    """One drain's client-side facts."""

    wall: float
    first_pass: float
    ended: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    last_attempt: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


async def drain(
    api: Api, namespace: str, names: list[str], concurrency: int, retries: int, retry_interval: float
) -> Drain:
    """Evict every Pod, ``concurrency`` at a time, retrying a 429 like ``kubectl drain``."""
    semaphore = asyncio.Semaphore(concurrency)
    attempts: list[dict[str, Any]] = []
    last_attempt: dict[str, float] = {}
    first_pass_done: list[float] = []
    latencies: list[float] = []

    async def one(name: str) -> None:
        for attempt in range(retries + 1):
            async with semaphore:
                started = time.perf_counter()
                try:
                    status, body = await api.evict(namespace, name)
                except httpx2.HTTPError as error:  # a client-side timeout: counted, not retried
                    status, body = 0, {"message": f"{type(error).__name__}: {error}"}
                latencies.append(time.perf_counter() - started)
                seen = time.time()
            reached = status == 201 or (
                status == 429 and "disruption budget" in str(body.get("message", "")).lower()
            )
            attempts.append({"pod": name, "status": status, "reached": reached, "try": attempt})
            last_attempt[name] = seen
            if attempt == 0:
                first_pass_done.append(time.perf_counter())
            if status != 429 or attempt == retries:
                return
            await asyncio.sleep(retry_interval)

    started = time.perf_counter()
    await asyncio.gather(*(one(name) for name in names))
    ended = time.perf_counter()
    return Drain(ended - started, max(first_pass_done) - started, ended, attempts, last_attempt, latencies)


async def populate(
    api: Api, namespace: str, names: list[str], group_size: int, blocked: set[int], node_names: list[str]
) -> float:
    """The drain's Pods (Running and Ready, in groups) and the PDBs of the blocked groups."""
    per_second = await common.create_pods(
        api,
        namespace,
        names,
        labels=lambda i: {"group": f"g{i // group_size}"},
        node=lambda i: node_names[i % len(node_names)],
        ready=True,
    )
    for group in sorted(blocked):
        body = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": f"g{group}"},
            "spec": {"minAvailable": group_size, "selector": {"matchLabels": {"group": f"g{group}"}}},
        }
        await api.call("POST", f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets", body)
    await wait_pdbs(api, namespace, len(blocked), group_size)
    return per_second


async def run(target: Target, *, pin: bool = True, **options: Any) -> dict[str, Any]:
    """The storm; with ``pin``, the control plane and the draining client on one CPU and the
    operator on the other, in both drains (in a cluster the operator runs on its own node)."""
    everywhere = os.sched_getaffinity(0)
    pin = pin and len(everywhere) >= 2 and common.pin_control_plane(target, {min(everywhere)})
    try:
        if pin:
            os.sched_setaffinity(0, {min(everywhere)})
        return await _run(target, operator_cpus={max(everywhere)} if pin else None, **options)
    finally:
        if pin:  # as it was, for whatever runs next on this control plane
            os.sched_setaffinity(0, everywhere)
            common.pin_control_plane(target, everywhere)


async def _run(
    target: Target,
    *,
    operator_cpus: set[int] | None = None,
    results_dir: str | Path | None = None,
    pods: int = 2000,
    nodes: int = 20,
    group_size: int = 10,
    blocked_share: float = 0.1,
    concurrency: int = 50,
    retry_interval: float = 5.0,
    retries: int = 3,
    blocked_after: float = 2.0,
    workers: int | None = None,
    settle_timeout: float = 300.0,
    profile: str | None = None,
) -> dict[str, Any]:
    run_id = common.short_id()
    groups = max(1, pods // group_size)
    blocked = blocked_groups(groups, blocked_share)
    names = [f"s-{i:05d}" for i in range(pods)]
    group_of = {name: i // group_size for i, name in enumerate(names)}
    node_names = [f"ewb-{run_id}-node-{j:02d}" for j in range(nodes)]
    async with Api(target, connections=concurrency) as api:
        namespace = await api.create_namespace(f"ewb-{run_id}-storm", {"evictwatch.io/bench-run": run_id})
        baseline = await api.create_namespace(f"ewb-{run_id}-off")  # no webhook: the drain without us
        # The yardstick: the same drain with a recorder that makes one create per attempt and
        # nothing else (bench.minimal_recorder, on the operator's CPU).
        yardstick = await api.create_namespace(f"ewb-{run_id}-mr", {"evictwatch.io/bench-minimal": run_id})
        for node in node_names:
            await api.create_node(node)
        print(f"creating 3 x {pods} Running+Ready Pods on {nodes} Nodes ...", flush=True)
        for where in (baseline, yardstick, namespace):
            pods_per_second = await populate(api, where, names, group_size, blocked, node_names)
        print(f"draining {pods} Pods without the operator (concurrency {concurrency}) ...", flush=True)
        without = await drain(api, baseline, names, concurrency, retries, retry_interval)
        print(f"draining {pods} Pods with the minimal recorder ...", flush=True)
        minimal = MinimalRecorder(
            target, f"evictwatch.io/bench-minimal={run_id}", f"ewb-minimal-{run_id}", operator_cpus
        )
        setup = JsonApi(load_config(target.kubeconfig_path))
        try:  # the records' CRD, which the operator would install when it starts
            await ensure_crd(setup)
        finally:
            await setup.close()
        await minimal.start()
        try:
            await asyncio.sleep(2.0)  # the API server picks its configuration up
            with_minimal = await drain(api, yardstick, names, concurrency, retries, retry_interval)
        finally:
            await minimal.stop()
        minimal_records = len(await api.records(yardstick))
        config = common.operator_config(
            run_id,
            # Its own namespace only, as in bench.added_latency: the drain without the operator left
            # 1,800 Pods terminating with a DisruptionTarget, which the watchers would otherwise record
            # (and the controller settle) during the measured drain.
            capture={"namespaces": [namespace]},
            controller={
                "blockedAfterSeconds": blocked_after,
                **({"workers": workers} if workers else {}),
                "leaderElection": {"leaseName": f"ewb-{run_id}"},
                # The default (1000 per namespace) would delete the oldest records of a 2,000-Pod drain.
                "retention": {"maxPerNamespace": 1_000_000},
            },
        )
        operator = OperatorProcess(
            target, config, profile=profile, identity=f"bench-storm-{run_id}", cpus=operator_cpus
        )
        await operator.start(api)
        try:
            await operator.wait_leading(api)
            # The API server picks the new configuration up a moment later: dry-run until it calls us.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                await api.evict(namespace, names[0], dry_run=True)
                samples = await operator.metrics()
                if common.metric_sum(samples, "evictwatch_webhook_requests_total", decision="dry_run"):
                    break
                await asyncio.sleep(0.2)
            await common.wait_quiet(operator.pid, window=1.0, below=0.05, timeout=60)
            cpu_before = common.proc_cpu_seconds(operator.pid)
            audit_from = common.audit_position(target)
            sampler = common.Sampler(operator.pid, interval=0.5).start()
            print(f"evicting {pods} Pods, concurrency {concurrency} ...", flush=True)
            drained_with = await drain(api, namespace, names, concurrency, retries, retry_interval)
            attempts, last_attempt, latencies = (
                drained_with.attempts,
                drained_with.last_attempt,
                drained_with.latencies,
            )
            wall, first_pass, drained = drained_with.wall, drained_with.first_pass, drained_with.ended
            drained_wall_clock = time.time()

            # Wait for every record to settle.
            attempted = {a["pod"] for a in attempts if a["reached"]}
            records: list[dict[str, Any]] = []
            while time.perf_counter() - drained < settle_timeout:
                records = await api.records(namespace)
                settled = [r for r in records if (r.get("status") or {}).get("outcome") in FINAL]
                if len(records) >= len(attempted) and len(settled) == len(records):
                    break
                await asyncio.sleep(1.0)
            all_settled = time.perf_counter() - drained
            usage = await sampler.stop()
            operator_cpu = common.proc_cpu_seconds(operator.pid) - cpu_before
            calls = common.audit_calls(target, audit_from, f"evictwatch/{__version__} ({operator.identity})")
            hwm = round(common.proc_hwm_mb(operator.pid), 1)
            samples = await operator.metrics()
        finally:
            await operator.stop(api)
        for where in (namespace, baseline, yardstick):
            await api.delete_namespace(where)
        for node in node_names:
            await api.delete_node(node)

    reached = [a for a in attempts if a["reached"]]
    statuses: dict[str, int] = {}
    for a in attempts:
        statuses[str(a["status"])] = statuses.get(str(a["status"]), 0) + 1
    attempts_in_records = sum(int((r.get("spec") or {}).get("attempts") or 0) for r in records)
    record_pods = {((r.get("spec") or {}).get("pod") or {}).get("name") for r in records}
    outcomes: dict[str, int] = {}
    settle: dict[str, list[float]] = {}
    blocked_waits: list[float] = []  # outcomeTime - lastAttemptTime, both the operator's clock
    for r in records:
        status = r.get("status") or {}
        outcome = str(status.get("outcome"))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        pod = ((r.get("spec") or {}).get("pod") or {}).get("name")
        when = parse_time(status.get("outcomeTime"))
        if when is not None and pod in last_attempt:
            settle.setdefault(outcome, []).append(when - last_attempt[pod])
        last = parse_time((r.get("spec") or {}).get("lastAttemptTime"))
        # A record called Blocked before a late retry keeps its first outcomeTime: skip those.
        if outcome == "Blocked" and when is not None and last is not None and when >= last:
            blocked_waits.append(when - last)
    expected_blocked = len([n for n in names if group_of[n] in blocked])
    outcome_times: dict[str, list[float]] = {}
    for r in records:
        when = parse_time((r.get("status") or {}).get("outcomeTime"))
        if when is not None:
            outcome_times.setdefault(str((r.get("status") or {}).get("outcome")), []).append(when)
    evicted = statuses.get("201", 0)
    all_settle = [x for values in settle.values() for x in values]
    result = {
        "benchmark": "storm",
        "machine": common.machine_info(target),
        "params": {
            "pods": pods,
            "nodes": nodes,
            "group_size": group_size,
            "blocked_share": blocked_share,
            "pdbs": len(blocked),
            "pinned": (
                f"control plane and client on the other CPUs, operator on CPU {min(operator_cpus)}"
                if operator_cpus
                else "no"
            ),
            "concurrency": concurrency,
            "retry_interval_seconds": retry_interval,
            "retries": retries,
            "controller.blockedAfterSeconds": blocked_after,
            "controller.workers": workers,
            "controller.retention.maxPerNamespace": 1_000_000,
            "operator": "separate process, everything on (webhook, controller, watchers, "
            "default sinks: events, metrics, log)",
            "pods_created_per_second": round(pods_per_second, 1),
        },
        "without_operator": {
            "wall_seconds": round(without.wall, 2),
            "first_pass_seconds": round(without.first_pass, 2),
            "statuses": dict(Counter(str(a["status"]) for a in without.attempts)),
            "eviction_call_latency": common.latency_ms(without.latencies),
        },
        "drain_wall_ratio_with_over_without": round(wall / without.wall, 3) if without.wall > 0 else None,
        "minimal_recorder": {
            "wall_seconds": round(with_minimal.wall, 2),
            "first_pass_seconds": round(with_minimal.first_pass, 2),
            "records": minimal_records,
            "wall_ratio_over_without": round(with_minimal.wall / without.wall, 3)
            if without.wall > 0
            else None,
            "note": "one bare PodEviction create per attempt, nothing else; drained between the two others",
        },
        "api_calls": {
            "by_call": calls,
            "per_eviction": round(sum(calls.values()) / max(evicted, 1), 3),
            "note": "the operator's completed requests (audit log, by its User-Agent), watches left out, "
            "per Pod evicted; blocked retries and the Blocked-then-Evicted records add writes",
        },
        "operator_cpu_ms_per_eviction": round(1000 * operator_cpu / max(evicted, 1), 3),
        "settled_after_drain_end_seconds": {
            outcome: round(max(times) - drained_wall_clock, 2)
            for outcome, times in outcome_times.items()
            if times
        },
        "results": {
            "wall_seconds": round(wall, 2),
            "first_pass_seconds": round(first_pass, 2),
            "evicted": evicted,
            "evictions_per_second": round(evicted / first_pass, 1) if first_pass > 0 else None,
            "attempts": len(attempts),
            "attempts_per_second_first_pass": round(pods / first_pass, 1) if first_pass > 0 else None,
            "statuses": statuses,
            "eviction_call_latency": common.latency_ms(latencies),
            "seconds_until_all_settled_after_drain": round(all_settled, 2),
            "settle_latency": common.latency_ms(all_settle),
            "settle_latency_by_outcome": {k: common.latency_ms(v) for k, v in settle.items()},
            "blocked_after_last_attempt_min_ms": round(min(blocked_waits) * 1000, 3)
            if blocked_waits
            else None,
            "blocked_after_last_attempt_n": len(blocked_waits),
            "outcomes": outcomes,
            "expected_outcomes": {"Evicted": pods - expected_blocked, "Blocked": expected_blocked},
        },
        "completeness": {
            "pods_attempted": len(attempted),
            "records": len(records),
            "records_for_attempted_pods": len(attempted & record_pods),
            "attempts_reached_webhook": len(reached),
            "attempts_in_records": attempts_in_records,
            "records_lost_metric": common.metric_sum(samples, "evictwatch_records_lost_total"),
            "webhook_decisions": {
                d: common.metric_sum(samples, "evictwatch_webhook_requests_total", decision=d)
                for d in ("recorded", "dry_run", "filtered", "lost")
            },
            "complete": len(records) == len(attempted)
            and attempted <= record_pods
            and attempts_in_records == len(reached),
            "percent": round(
                100
                * min(
                    len(attempted & record_pods) / max(len(attempted), 1),
                    min(attempts_in_records, len(reached)) / max(len(reached), 1),
                ),
                2,
            ),
        },
        "operator": {**usage, "cpu_seconds_total": round(operator_cpu, 2), "hwm_mb": hwm},
    }
    res = result["results"]
    common.print_table(
        f"eviction storm ({common.nproc_note()})",
        [
            "pods",
            "wall s",
            "without s",
            "x without",
            "minimal s",
            "x without (minimal)",
            "1st pass s",
            "evict/s",
            "attempts",
            "settle p50 s",
            "settle p99 s",
            "records",
            "complete",
        ],
        [
            [
                pods,
                res["wall_seconds"],
                result["without_operator"]["wall_seconds"],
                result["drain_wall_ratio_with_over_without"],
                result["minimal_recorder"]["wall_seconds"],
                result["minimal_recorder"]["wall_ratio_over_without"],
                res["first_pass_seconds"],
                res["evictions_per_second"],
                len(attempts),
                round(common.percentile(all_settle, 50), 3) if all_settle else "-",
                round(common.percentile(all_settle, 99), 3) if all_settle else "-",
                f"{len(records)}/{len(attempted)}",
                result["completeness"]["complete"],
            ]
        ],
    )
    print(
        f"outcomes {outcomes} (expected {res['expected_outcomes']}); statuses {statuses}; "
        f"attempts in records {attempts_in_records}/{len(reached)}; by outcome: "
        + ", ".join(
            f"{k} p50 {v['p50_ms'] / 1000:.2f} s p99 {v['p99_ms'] / 1000:.2f} s"
            for k, v in res["settle_latency_by_outcome"].items()
        )
        + f"; operator CPU {operator_cpu:.1f} s ({result['operator_cpu_ms_per_eviction']} ms per eviction), "
        f"RSS max {usage.get('rss_mb_max')} MB; API calls per eviction {result['api_calls']['per_eviction']} "
        f"{calls}; settled after the drain's end {result['settled_after_drain_end_seconds']} s",
        flush=True,
    )
    common.write_result("storm", result, results_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    p = common.parser("A drain storm: throughput, completeness and time to the settled outcome.")
    p.add_argument("--pods", type=int, default=2000)
    p.add_argument("--nodes", type=int, default=20)
    p.add_argument("--blocked-share", type=float, default=0.1)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--retry-interval", type=float, default=5.0)
    p.add_argument("--retries", type=int, default=3)
    p.add_argument(
        "--blocked-after", type=float, default=2.0, help="the operator's controller.blockedAfterSeconds"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="the operator's controller.workers (default: its own)"
    )
    p.add_argument("--profile", help="run the operator under cProfile and write the profile here")
    p.add_argument("--no-pin", action="store_true", help="do not pin the control plane and operator to CPUs")
    args = p.parse_args(argv)
    quick = args.quick
    common.main_with(
        run,
        args,
        pods=20 if quick else args.pods,
        nodes=2 if quick else args.nodes,
        blocked_share=0.5 if quick else args.blocked_share,
        concurrency=args.concurrency,
        retry_interval=0.5 if quick else args.retry_interval,
        retries=1 if quick else args.retries,
        blocked_after=1.0 if quick else args.blocked_after,
        workers=args.workers,
        profile=args.profile,
        pin=not args.no_pin,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
