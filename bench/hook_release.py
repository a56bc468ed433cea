"""Pre-eviction hooks: how long a held eviction takes to be released after its hook says done.

N Pods (default 20) get the hook ``flush-cache`` (by label). Each is "drained" the way
``kubectl drain`` does it: evict, and after a 429 try again every ``--retry-interval`` seconds
(5 s, drain's own). The hook is an HTTP server in this process that works a different time per
Pod (spread evenly over 2..12 s from its first call) and then answers 200. The operator runs as
installed (``evictwatch run --self-signed``, default config plus the hook, whose
``retryAfterSeconds`` is the default 5 s) on its own CPU, with the control plane on the other.

Measured per Pod: release = the allowed eviction's time minus the moment the hook first
answered 200. Its floor is what the hook protocol and the client's retry make it: the runner
sees "done" only when it asks (every ``retryAfterSeconds``), and the client only finds out on
its next try (every ``--retry-interval``). Also: how long each eviction was held in all, the
hook calls per Pod, and the operator's API calls per held eviction (audit log).

    python -m bench.hook_release [--pods 20] [--retry-interval 5] [--quick]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bench import common
from bench.common import Api, OperatorProcess, Target
from evictwatch import __version__
from evictwatch.testing.receiver import serve_locally


class Hook:
    """Works ``work[key]`` seconds from the first call with that Idempotency-Key, then says done."""

    def __init__(self, work: dict[str, float]) -> None:
        self.work = work
        self.first: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        await request.read()
        now = time.monotonic()
        self.calls[key] = self.calls.get(key, 0) + 1
        first = self.first.setdefault(key, now)
        if now - first >= self.work.get(key.split("/")[0], 5.0):
            self.done.setdefault(key, now)
            return web.Response(status=200)
        return web.Response(status=202)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/pre-evict", self.handle)
        self._runner, self.port = await serve_locally(app)
        return f"http://127.0.0.1:{self.port}/pre-evict"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def drain_one(api: Api, namespace: str, name: str, every: float, limit: float) -> tuple[float, int]:
    """Evict until allowed, as drain does; (when it was allowed, how many 429s it got)."""
    held = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, body = await api.evict(namespace, name)
        if status != 429:
            if status not in (200, 201):
                raise RuntimeError(f"eviction of {name}: HTTP {status} {body}")
            return time.monotonic(), held
        held += 1
        await asyncio.sleep(every)
    raise RuntimeError(f"{name} still held after {limit:.0f} s")


async def run(
    target: Target,
    *,
    results_dir: str | Path | None = None,
    pods: int = 20,
    retry_interval: float = 5.0,
    pin: bool = True,
) -> dict[str, Any]:
    run_id = common.short_id()
    everywhere = os.sched_getaffinity(0)
    pin = pin and len(everywhere) >= 2 and common.pin_control_plane(target, {min(everywhere)})
    operator_cpus = {max(everywhere)} if pin else None
    names = [f"h-{i:03d}" for i in range(pods)]
    async with Api(target) as api:
        namespace = await api.create_namespace(f"ewb-{run_id}-hooks", {"evictwatch.io/bench-run": run_id})
        uids = {}
        for name in names:
            pod = await api.create_pod(namespace, name, labels={"app": "cache"})
            uids[name] = pod["metadata"]["uid"]
        spread = [2.0 + 10.0 * i / max(pods - 1, 1) for i in range(pods)]
        hook = Hook({uids[name]: spread[i] for i, name in enumerate(names)})
        url = await hook.start()
        config = common.operator_config(
            run_id,
            controller={"leaderElection": {"leaseName": f"ewb-{run_id}"}},
            hooks=[{"name": "flush-cache", "url": url, "podSelector": {"matchLabels": {"app": "cache"}}}],
        )
        operator = OperatorProcess(target, config, identity=f"bench-hooks-{run_id}", cpus=operator_cpus)
        await operator.start(api)
        try:
            await operator.wait_leading(api)
            await asyncio.sleep(2)  # the API server picks the new webhook configuration up
            audit_from = common.audit_position(target)
            cpu_before = common.proc_cpu_seconds(operator.pid)
            print(f"draining {pods} held Pods (drain retries every {retry_interval:g} s) ...", flush=True)
            results = await asyncio.gather(
                *(drain_one(api, namespace, name, retry_interval, 120.0) for name in names)
            )
            cpu = common.proc_cpu_seconds(operator.pid) - cpu_before
            await asyncio.sleep(3)  # the last status writes and Events land in the audit log
            calls = common.audit_calls(target, audit_from, f"evictwatch/{__version__} (bench-hooks-{run_id})")
        finally:
            await operator.stop(api)
            await hook.stop()
            await api.delete_namespace(namespace)
    if pin:
        common.pin_control_plane(target, everywhere)
    releases, helds, per_pod_calls = [], [], []
    for name, (allowed_at, _held) in zip(names, results, strict=True):
        key = f"{uids[name]}/flush-cache"
        releases.append(allowed_at - hook.done[key])
        helds.append(allowed_at - hook.first[key])
        per_pod_calls.append(hook.calls[key])
    release = {f"p{p}": round(common.percentile(releases, p), 2) for p in (50, 90, 100)}
    held_total = {f"p{p}": round(common.percentile(helds, p), 2) for p in (50, 90, 100)}
    total_calls = sum(calls.values())
    result = {
        "pods": pods,
        "retry_interval_s": retry_interval,
        "hook_retry_after_s": 5.0,
        "pinned": pin,
        "release_after_done_s": release,
        "held_s": held_total,
        "hook_calls_per_pod": round(sum(per_pod_calls) / pods, 2),
        "api_calls_per_held_eviction": round(total_calls / pods, 2),
        "api_calls": calls,
        "operator_cpu_ms_per_held_eviction": round(cpu * 1000 / pods, 1),
        "machine": common.nproc_note(),
    }
    common.print_table(
        f"pre-eviction hook release ({pods} Pods, drain retry {retry_interval:g} s, hook retryAfter 5 s)",
        ["measure", "p50", "p90", "max"],
        [
            ["released after the hook said done (s)", release["p50"], release["p90"], release["p100"]],
            [
                "held in all (s; the hook worked 2..12 s)",
                held_total["p50"],
                held_total["p90"],
                held_total["p100"],
            ],
        ],
    )
    print(f"hook calls per Pod {result['hook_calls_per_pod']}")
    print(f"operator API calls per held eviction {result['api_calls_per_held_eviction']}: {calls}")
    print(f"operator CPU per held eviction {result['operator_cpu_ms_per_held_eviction']} ms")
    common.write_result("hook_release", result, results_dir)
    return result


def main(argv: list[str]) -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--pods", type=int, default=20)
    p.add_argument("--retry-interval", type=float, default=5.0)
    args = p.parse_args(argv)
    common.main_with(
        run,
        args,
        pods=4 if args.quick else args.pods,
        retry_interval=1.0 if args.quick else args.retry_interval,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
