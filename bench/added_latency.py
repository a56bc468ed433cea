"""Added latency: the Eviction API call through the real kube-apiserver with and without the webhook.

Two namespaces of Pending Pods (the API server deletes those at once): one that the webhook's
``namespaceSelector`` selects, one that it excludes. Each round makes, in a random order, one
eviction in each namespace, one ``?dryRun=All`` eviction in each (the webhook is called, as its
``sideEffects`` is NoneOnDryRun, but answers without any API call), and two API writes through
the client the webhook writes with (``evictwatch.kube.http1``) on a connection of their own: a
bare PodEviction create (the floor's write) and a ConfigMap create (for comparison). The evictions
go through one client, one keep-alive HTTPS connection.

Reported: the median paired difference of the real evictions (covered minus excluded: what the
webhook adds), the same for the dry runs (what calling a do-nothing webhook costs here), and the
floor *measured alongside*: do-nothing webhook + one record create, both taken in the same rounds
and so under the same load. This machine's speed drifts by tens of percent within minutes (two
cores shared with other tenants), so only a floor taken alongside is a fair yardstick; the fixed
figures of the issue (4.3 ms, goal 5.16 ms) are reported too.

The operator runs as a separate process; by default with the controller and the watchers off, so
only what sits on the eviction's path is measured (``--with-controller`` runs everything). Its
Pod-facts cache is on, as by default, so the Pods (created before it starts) are looked up
without a GET; ``--no-pod-cache`` measures the GET-per-review path instead.

    python -m bench.added_latency [--pairs 300] [--with-controller] [--no-pod-cache] [--quick]
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from evictwatch.kube.http1 import Http1Pool

from bench import common
from bench.common import Api, OperatorProcess, Target

FLOOR_MS = 4.3  # a do-nothing webhook (~1.8 ms) plus one API write (~2.5 ms) on these machines
TARGET_MS = 5.0


async def wait_webhook_active(api: Api, operator: OperatorProcess, namespace: str, pod: str) -> None:
    """The API server picks a new configuration up a moment after it is created: dry-run until it calls us."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = common.metric_sum(await operator.metrics(), "evictwatch_webhook_requests_total")
        await api.evict(namespace, pod, dry_run=True)
        if common.metric_sum(await operator.metrics(), "evictwatch_webhook_requests_total") > before:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the API server did not call the webhook within 30 s:\n{operator.log_tail()}")


ROUND_STEPS = ("on", "off", "dry_on", "dry_off", "create_podeviction", "create_configmap")


async def rounds(
    api: Api,
    lean: Http1Pool,
    covered: str,
    excluded: str,
    names: list[str],
    dry_names: list[str],
    *,
    rng: random.Random,
    tag: str,
    auth: dict[str, str],
) -> tuple[dict[str, list[float]], list[int]]:
    """One round per name: every measured call once, in a random order; seconds per step."""
    times: dict[str, list[float]] = {step: [] for step in ROUND_STEPS}
    statuses: list[int] = []
    records = f"/apis/evictwatch.io/v1alpha1/namespaces/{excluded}/podevictions"
    configmaps = f"/api/v1/namespaces/{excluded}/configmaps"

    async def lean_create(path: str, body: dict[str, Any]) -> None:
        reply = await lean.request("POST", path, json.dumps(body).encode(), {**JSON, **auth})
        if reply.status != 201:
            raise RuntimeError(f"POST {path}: {reply.status}")

    async def call(step: str, name: str, dry: str, own: str) -> int:
        if step in ("on", "off", "dry_on", "dry_off"):
            namespace = covered if step.endswith("on") else excluded
            status, _ = await api.evict(
                namespace, dry if step.startswith("dry") else name, dry_run=step.startswith("dry")
            )
            return status
        if step == "create_podeviction":
            await lean_create(records, bare_record(own))
        else:
            await lean_create(
                configmaps, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": own}}
            )
        return 201

    for i, name in enumerate(names):
        order = list(ROUND_STEPS)
        rng.shuffle(order)
        for step in order:
            started = time.perf_counter()
            status = await call(step, name, dry_names[i % len(dry_names)], f"floor-{tag}-{i}")
            times[step].append(time.perf_counter() - started)
            if step not in ("create_podeviction", "create_configmap"):
                statuses.append(status)
    return times, statuses


def bare_record(name: str) -> dict[str, Any]:
    """The least a PodEviction can hold: what "one API write" of this design costs at the least."""
    return {
        "apiVersion": "evictwatch.io/v1alpha1",
        "kind": "PodEviction",
        "metadata": {"name": name},
        "spec": {"pod": {"name": name}, "source": "EvictionAPI", "attempts": 1},
    }


JSON = {"Content-Type": "application/json", "Accept": "application/json"}


async def get_pod_ms(target: Target, namespace: str, pod: str, count: int) -> dict[str, Any]:
    """A Pod GET from a lean client: the webhook's lookup without its cache."""
    pool = Http1Pool(target.url, target.context, size=1)

    async def timed() -> float:
        started = time.perf_counter()
        reply = await pool.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods/{pod}", None, target.headers()
        )
        if reply.status != 200:
            raise RuntimeError(f"GET Pod {namespace}/{pod}: {reply.status}")
        return time.perf_counter() - started

    try:
        for _ in range(10):
            await timed()
        return common.latency_ms([await timed() for _ in range(count)])
    finally:
        await pool.close()


def summarise(on: list[float], off: list[float]) -> dict[str, Any]:
    diffs = [(a - b) for a, b in zip(on, off, strict=True)]
    with_webhook, without = common.latency_ms(on), common.latency_ms(off)
    return {
        "with_webhook": with_webhook,
        "without_webhook": without,
        "added_median_ms": round(with_webhook["p50_ms"] - without["p50_ms"], 3),
        "added_p99_ms": round(with_webhook["p99_ms"] - without["p99_ms"], 3),
        "paired_difference_ms": {
            "p50_ms": round(common.percentile(diffs, 50) * 1000, 3),
            "mean_ms": round(sum(diffs) / len(diffs) * 1000, 3) if diffs else None,
            "p90_ms": round(common.percentile(diffs, 90) * 1000, 3),
        },
    }


async def run(
    target: Target,
    *,
    results_dir: str | Path | None = None,
    pairs: int = 300,
    warmup: int = 20,
    with_controller: bool = False,
    pod_cache: bool = True,
    seed: int = 1,
) -> dict[str, Any]:
    run_id = common.short_id()
    rng = random.Random(seed)
    # The floor's writes go through the client the webhook writes with, one connection.
    lean = Http1Pool(target.url, target.context, size=1)
    async with Api(target) as setup, Api(target, connections=1) as api:
        covered = await setup.create_namespace(f"ewb-{run_id}-on", {"evictwatch.io/bench-run": run_id})
        excluded = await setup.create_namespace(f"ewb-{run_id}-off")
        names = [f"p-{i:05d}" for i in range(warmup + pairs)]
        dry_names = [f"dry-{i:02d}" for i in range(10)]
        for namespace in (covered, excluded):
            await common.create_pods(setup, namespace, names + dry_names)
        enabled = {"enabled": with_controller}
        config = common.operator_config(
            run_id,
            controller={**enabled, "blockedAfterSeconds": 2},
            watchers=enabled,
            webhook={**common.operator_config(run_id)["webhook"], "podCache": pod_cache},
        )
        operator = OperatorProcess(target, config)
        await operator.start(setup)
        try:
            if with_controller:
                await operator.wait_leading(setup)
            await wait_webhook_active(api, operator, covered, dry_names[0])
            if pod_cache:
                await asyncio.sleep(1.5)  # the cache uses a Pod's facts once they are a second old
            await rounds(
                api,
                lean,
                covered,
                excluded,
                names[:warmup],
                dry_names,
                rng=rng,
                tag="warm",
                auth=target.headers(),
            )
            usage_sampler = common.Sampler(operator.pid).start()
            times, statuses = await rounds(
                api,
                lean,
                covered,
                excluded,
                names[warmup:],
                dry_names,
                rng=rng,
                tag="run",
                auth=target.headers(),
            )
            usage = await usage_sampler.stop()
            samples = await operator.metrics()
            records = [
                r for r in await setup.records(covered) if not r["metadata"]["name"].startswith("floor-")
            ]
            get_pod = await get_pod_ms(target, excluded, dry_names[0], max(10, min(pairs, 100)))
        finally:
            await operator.stop(setup)
            await lean.close()
        for namespace in (covered, excluded):
            await setup.delete_namespace(namespace)
    return report(
        times,
        statuses,
        samples,
        records,
        get_pod,
        usage,
        pairs=pairs,
        warmup=warmup,
        with_controller=with_controller,
        pod_cache=pod_cache,
        machine=common.machine_info(target),
        results_dir=results_dir,
    )


def report(
    times: dict[str, list[float]],
    statuses: list[int],
    samples: Any,
    records: list[dict[str, Any]],
    get_pod: dict[str, Any],
    usage: dict[str, Any],
    *,
    pairs: int,
    warmup: int,
    with_controller: bool,
    pod_cache: bool,
    machine: dict[str, Any],
    results_dir: str | Path | None,
) -> dict[str, Any]:
    real = summarise(times["on"], times["off"])
    dry = summarise(times["dry_on"], times["dry_off"])
    handling = {}
    for decision in ("recorded", "dry_run"):
        count = common.metric_sum(samples, "evictwatch_webhook_handling_seconds_count", decision=decision)
        total = common.metric_sum(samples, "evictwatch_webhook_handling_seconds_sum", decision=decision)
        handling[decision] = round(1000 * total / count, 3) if count else None
    attempts = sum(int((r.get("spec") or {}).get("attempts") or 0) for r in records)
    added = real["paired_difference_ms"]["p50_ms"]
    do_nothing = dry["paired_difference_ms"]["p50_ms"]
    writes = {step: common.latency_ms(times[step]) for step in ("create_podeviction", "create_configmap")}
    lookups = {
        result: int(common.metric_sum(samples, "evictwatch_pod_cache_lookups_total", result=result))
        for result in ("hit", "miss", "recent", "unsynced")
    }
    # With the cache the lookup is free (no API call); without it, a GET is on the path.
    lookup_ms = 0.0 if pod_cache else get_pod["p50_ms"]
    floor_here = round(do_nothing + lookup_ms + writes["create_podeviction"]["p50_ms"], 3)
    ratio = round(added / floor_here, 3) if floor_here > 0 else None
    result = {
        "benchmark": "added_latency",
        "machine": machine,
        "params": {
            "pairs": pairs,
            "warmup_rounds": warmup,
            "pods": "Pending (deleted at once by the server)",
            "client": "httpx2, one keep-alive HTTPS connection, admin client certificate",
            "how": "rounds in a random order: an eviction in a namespace the webhook's namespaceSelector "
            "selects and in one it excludes, the same two as dry runs, a bare PodEviction create and a "
            "ConfigMap create from a lean client (evictwatch.kube.http1, as the webhook's write)",
            "operator": "separate process; controller and watchers " + ("on" if with_controller else "off"),
            "failurePolicy": "Ignore (default)",
            "pod_cache": pod_cache,
        },
        "pod_cache_lookups": lookups,
        "eviction": real,
        "dry_run_eviction": dry,
        "write_path_cost_ms": round(added - do_nothing, 3),
        "server_side_mean_ms": handling,
        "api_writes_alongside": writes,
        "get_pod_after": get_pod,
        "floor_alongside_ms": {
            "do_nothing_webhook": do_nothing,
            "get_pod_p50": get_pod["p50_ms"] if not pod_cache else None,
            "create_podeviction_p50": writes["create_podeviction"]["p50_ms"],
            "create_configmap_p50": writes["create_configmap"]["p50_ms"],
            "sum": floor_here,
            "added_over_floor": ratio,
            "note": "do-nothing webhook + bare record create (+ GET Pod without the cache), medians of "
            "the same rounds as the evictions",
        },
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "completeness": {
            "evictions_covered": pairs + warmup,
            "records": len(records),
            "attempts_in_records": attempts,
            "complete": len(records) == pairs + warmup and attempts == pairs + warmup,
        },
        "operator_usage": usage,
        "targets": {
            "added_median_ms_under": TARGET_MS,
            "floor_ms": FLOOR_MS,
            "goal_ms": round(1.2 * FLOOR_MS, 2),
            "met_target": added < TARGET_MS,
            "met_goal": added <= 1.2 * FLOOR_MS,
            "met_goal_against_floor_alongside": ratio is not None and ratio <= 1.2,
        },
    }
    rows = [
        [
            label,
            data["with_webhook"]["n"],
            data["without_webhook"]["p50_ms"],
            data["with_webhook"]["p50_ms"],
            data["without_webhook"]["p99_ms"],
            data["with_webhook"]["p99_ms"],
            data["paired_difference_ms"]["p50_ms"],
        ]
        for label, data in (("eviction", real), ("dry-run eviction", dry))
    ]
    common.print_table(
        f"added latency of the webhook ({common.nproc_note()})",
        ["series", "pairs", "p50 off", "p50 on", "p99 off", "p99 on", "median paired diff ms"],
        rows,
    )
    print(
        f"floor measured alongside: do-nothing webhook {do_nothing} ms + create PodEviction "
        f"{writes['create_podeviction']['p50_ms']} ms"
        + ("" if pod_cache else f" + GET Pod {get_pod['p50_ms']} ms")
        + f" = {floor_here} ms (create ConfigMap {writes['create_configmap']['p50_ms']} ms); "
        f"added {added} ms = {ratio} x floor (goal <= 1.2): "
        f"{'met' if result['targets']['met_goal_against_floor_alongside'] else 'MISSED'}",
        flush=True,
    )
    print(
        f"issue's fixed figures: added median < {TARGET_MS} ms, goal <= {1.2 * FLOOR_MS:.2f} ms: "
        f"{'met' if added <= 1.2 * FLOOR_MS else 'MISSED'}; server-side mean handling {handling} ms; "
        f"records {len(records)}/{pairs + warmup}; pod cache lookups {lookups}",
        flush=True,
    )
    common.write_result("added_latency", result, results_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    p = common.parser("Latency the webhook adds to an Eviction API call.")
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--with-controller", action="store_true", help="run the controller and watchers too")
    p.add_argument("--no-pod-cache", action="store_true", help="GET the Pod per review")
    args = p.parse_args(argv)
    common.main_with(
        run,
        args,
        pairs=10 if args.quick else args.pairs,
        warmup=3 if args.quick else 20,
        with_controller=args.with_controller,
        pod_cache=not args.no_pod_cache,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
