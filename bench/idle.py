"""Idle cost: RSS and CPU% of an operator with nothing to do.

The operator runs as a separate process with everything on (webhook, controller with leader
election, watchers, default sinks) against a cluster with no evictions; after start-up has gone
quiet, RSS and CPU are sampled every second for ``--seconds`` (default 60).

    python -m bench.idle [--seconds 60] [--quick]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Api, OperatorProcess, Target

TARGET_RSS_MB = 120.0


async def run(
    target: Target, *, results_dir: str | Path | None = None, seconds: float = 60.0, interval: float = 1.0
) -> dict[str, Any]:
    run_id = common.short_id()
    async with Api(target) as api:
        waited = await api.wait_bench_namespaces_gone()
        operator = OperatorProcess(target, common.operator_config(run_id))
        await operator.start(api)
        try:
            await operator.wait_leading(api)
            quiet = await common.wait_quiet(operator.pid, window=2.0, below=0.03, timeout=120)
            rss_after_start = common.proc_rss_mb(operator.pid)
            cpu_start = common.proc_cpu_seconds(operator.pid)
            sampler = common.Sampler(operator.pid, interval=interval).start()
            await asyncio.sleep(seconds)
            usage = await sampler.stop()
            hwm = common.proc_hwm_mb(operator.pid)
            pods = await api.call("GET", "/api/v1/pods", params={"limit": 1})
        finally:
            await operator.stop(api)
    meta = pods[1].get("metadata") or {}
    result = {
        "benchmark": "idle",
        "machine": common.machine_info(target),
        "params": {
            "seconds": seconds,
            "interval_seconds": interval,
            "waited_for_earlier_namespaces_seconds": round(waited, 1),
            "operator": "separate process, everything on (webhook, controller, leader election, watchers)",
            "pods_in_cluster": len(pods[1].get("items") or []) + int(meta.get("remainingItemCount") or 0),
        },
        "results": {
            "startup_seconds": round(operator.started_seconds, 2),
            "seconds_until_quiet": round(quiet, 2),
            "cpu_seconds_at_start": round(cpu_start, 2),
            "rss_mb_after_start": round(rss_after_start, 1),
            **usage,
            "peak_rss_mb": round(hwm, 1),
        },
        "targets": {"idle_rss_mb_under": TARGET_RSS_MB, "met": usage.get("rss_mb_max", 1e9) < TARGET_RSS_MB},
    }
    common.print_table(
        f"idle operator ({common.nproc_note()})",
        ["seconds", "RSS mean MB", "RSS max MB", "peak (VmHWM) MB", "CPU %", "CPU s", "start s"],
        [
            [
                usage.get("seconds"),
                usage.get("rss_mb_mean"),
                usage.get("rss_mb_max"),
                round(hwm, 1),
                usage.get("cpu_percent"),
                usage.get("cpu_seconds"),
                round(operator.started_seconds, 2),
            ]
        ],
    )
    print(
        f"target: idle RSS < {TARGET_RSS_MB:.0f} MB: {'met' if result['targets']['met'] else 'MISSED'}",
        flush=True,
    )
    common.write_result("idle", result, results_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    p = common.parser("RSS and CPU of an idle operator.")
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args(argv)
    common.main_with(run, args, seconds=3.0 if args.quick else args.seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
