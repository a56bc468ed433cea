"""Watch cost: RSS and CPU of the operator (watchers on) while the cluster holds 1k, 10k, 50k Pods.

Pods are created through the API (plain Pending Pods, a few labels). At each size a fresh operator
process starts (webhook, controller, watchers: everything on), lists and watches every Pod and
Event, and is measured once its initial list has settled (its CPU has gone quiet): RSS, the peak
RSS during the list (VmHWM), CPU spent on the list, and RSS and CPU% over a steady window. The
per-Pod memory slope is a least-squares fit of RSS against the number of Pods in the cluster.

    python -m bench.watch_cost [--sizes 1000,10000,50000] [--window 10] [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Api, OperatorProcess, Target

TARGET_KB_PER_POD = 1.0


async def cluster_pods(api: Api) -> int:
    _, data = await api.call("GET", "/api/v1/pods", params={"limit": 1})
    return len(data.get("items") or []) + int((data.get("metadata") or {}).get("remainingItemCount") or 0)


async def run(
    target: Target,
    *,
    results_dir: str | Path | None = None,
    sizes: tuple[int, ...] = (1000, 10000, 50000),
    window: float = 10.0,
    concurrency: int = 50,
) -> dict[str, Any]:
    run_id = common.short_id()
    rows: list[dict[str, Any]] = []
    async with Api(target, connections=concurrency) as api:
        namespace = await api.create_namespace(f"ewb-{run_id}-watch")
        waited = await api.wait_bench_namespaces_gone(keep=[namespace])
        created = 0
        try:
            for size in sorted(sizes):
                if size > created:
                    print(f"creating Pods {created}..{size} ...", flush=True)
                    rate = await common.create_pods(
                        api,
                        namespace,
                        [f"w-{i:06d}" for i in range(created, size)],
                        labels=lambda i: {"app": f"app-{i % 50}", "tier": "bench"},
                        concurrency=concurrency,
                        progress=True,
                    )
                    created = size
                    print(f"  {rate:.0f} Pods/s", flush=True)
                in_cluster = await cluster_pods(api)
                operator = OperatorProcess(target, common.operator_config(run_id + f"-{size}"))
                started = time.perf_counter()
                await operator.start(api)
                try:
                    await operator.wait_leading(api)
                    quiet_after = await common.wait_quiet(operator.pid, window=2.0, below=0.03, timeout=600)
                    settle_seconds = time.perf_counter() - started
                    list_cpu = common.proc_cpu_seconds(operator.pid)
                    hwm = common.proc_hwm_mb(operator.pid)
                    sampler = common.Sampler(operator.pid, interval=0.5).start()
                    await asyncio.sleep(window)
                    usage = await sampler.stop()
                finally:
                    await operator.stop(api)
                row = {
                    "pods_in_cluster": in_cluster,
                    "startup_seconds": round(operator.started_seconds, 2),
                    "seconds_until_quiet": round(settle_seconds, 2),
                    "quiet_wait_seconds": round(quiet_after, 2),
                    "cpu_seconds_until_quiet": round(list_cpu, 2),
                    "rss_mb": usage.get("rss_mb_mean"),
                    "rss_mb_max_window": usage.get("rss_mb_max"),
                    "peak_rss_mb": round(hwm, 1),
                    "cpu_percent_steady": usage.get("cpu_percent"),
                }
                rows.append(row)
                print(f"  {in_cluster} Pods: {row}", flush=True)
        finally:
            print("deleting the Pods (namespace) ...", flush=True)
            await api.delete_namespace(namespace, force_pods=False)

    xs = [float(r["pods_in_cluster"]) for r in rows]
    slope, intercept, r2 = common.linear_fit(xs, [float(r["rss_mb"]) for r in rows])
    peak_slope, _, _ = common.linear_fit(xs, [float(r["peak_rss_mb"]) for r in rows])
    cpu_slope, _, _ = common.linear_fit(xs, [float(r["cpu_seconds_until_quiet"]) for r in rows])
    kb_per_pod = slope * 1024 if len(rows) > 1 else None
    result = {
        "benchmark": "watch_cost",
        "machine": common.machine_info(target),
        "params": {
            "sizes": list(sizes),
            "window_seconds": window,
            "waited_for_earlier_namespaces_seconds": round(waited, 1),
            "pods": "Pending, 2 labels, one container",
            "operator": "separate process per size, everything on (webhook, controller, watchers: "
            "pods-failed, pods, events)",
        },
        "results": rows,
        "fit": {
            "rss_kb_per_pod": round(kb_per_pod, 4) if kb_per_pod is not None else None,
            "rss_mb_intercept": round(intercept, 2) if len(rows) > 1 else None,
            "r2": round(r2, 3) if len(rows) > 2 else None,
            "peak_rss_kb_per_pod": round(peak_slope * 1024, 4) if len(rows) > 1 else None,
            "list_cpu_ms_per_pod": round(cpu_slope * 1000, 4) if len(rows) > 1 else None,
        },
        "targets": {
            "rss_kb_per_pod_under": TARGET_KB_PER_POD,
            "met": kb_per_pod is not None and kb_per_pod < TARGET_KB_PER_POD,
        },
    }
    common.print_table(
        f"watch cost ({common.nproc_note()})",
        ["pods", "RSS MB", "peak RSS MB", "list CPU s", "until quiet s", "steady CPU %"],
        [
            [
                r["pods_in_cluster"],
                r["rss_mb"],
                r["peak_rss_mb"],
                r["cpu_seconds_until_quiet"],
                r["seconds_until_quiet"],
                r["cpu_percent_steady"],
            ]
            for r in rows
        ],
    )
    fit = result["fit"]
    print(
        f"RSS slope {fit['rss_kb_per_pod']} KB/Pod (peak {fit['peak_rss_kb_per_pod']} KB/Pod, list CPU "
        f"{fit['list_cpu_ms_per_pod']} ms/Pod); target < {TARGET_KB_PER_POD} KB/Pod: "
        f"{'met' if result['targets']['met'] else 'MISSED'}",
        flush=True,
    )
    common.write_result("watch_cost", result, results_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    p = common.parser("Memory and CPU of the watchers against the number of Pods in the cluster.")
    p.add_argument("--sizes", default="1000,10000,50000", help="comma-separated Pod counts")
    p.add_argument("--window", type=float, default=10.0, help="seconds of steady sampling at each size")
    args = p.parse_args(argv)
    sizes = (100, 300) if args.quick else tuple(int(x) for x in args.sizes.split(","))
    common.main_with(run, args, sizes=sizes, window=2.0 if args.quick else args.window)


if __name__ == "__main__":
    main(sys.argv[1:])
