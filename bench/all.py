"""Run every benchmark, one after the other, on one control plane.

    python -m bench.all [--quick] [--kubeconfig K] [--results-dir D] [--only webhook,storm]

Order: idle (first, on an empty cluster), webhook, added_latency, storm, watch_cost (last: it
leaves up to 50,000 Pods behind while their namespace is being deleted).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from bench import added_latency, common, idle, storm, watch_cost, webhook

ORDER = ("idle", "webhook", "added_latency", "storm", "watch_cost")


def plans(quick: bool) -> dict[str, tuple[Any, dict[str, Any]]]:
    if quick:
        return {
            "idle": (idle.run, {"seconds": 3.0}),
            "webhook": (webhook.run, {"requests": 20, "warmup": 5}),
            "added_latency": (added_latency.run, {"pairs": 10, "warmup": 3}),
            "storm": (
                storm.run,
                {
                    "pods": 20,
                    "nodes": 2,
                    "blocked_share": 0.5,
                    "retry_interval": 0.5,
                    "retries": 1,
                    "blocked_after": 1.0,
                },
            ),
            "watch_cost": (watch_cost.run, {"sizes": (100, 300), "window": 2.0}),
        }
    return {
        "idle": (idle.run, {}),
        "webhook": (webhook.run, {}),
        "added_latency": (added_latency.run, {}),
        "storm": (storm.run, {}),
        "watch_cost": (watch_cost.run, {}),
    }


async def run_all(target: common.Target, results_dir: str, quick: bool, only: tuple[str, ...]) -> None:
    chosen = plans(quick)
    for name in only:
        run, params = chosen[name]
        started = time.perf_counter()
        print(f"\n=== {name} ===", flush=True)
        await run(target, results_dir=results_dir, **params)
        print(f"=== {name}: {time.perf_counter() - started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = common.parser("Run every benchmark.")
    p.add_argument("--only", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    args = p.parse_args(argv)
    only = tuple(x for x in args.only.split(",") if x)
    unknown = set(only) - set(ORDER)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    common.stop_on_sigterm()
    with common.target_from(args.kubeconfig) as target:
        asyncio.run(run_all(target, args.results_dir, args.quick, only))


if __name__ == "__main__":
    main(sys.argv[1:])
