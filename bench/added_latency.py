"""Added latency and cost of the operator as installed, beside a minimal recorder, in the same rounds.

Four namespaces of Pending Pods (the API server deletes those at once), each behind a
different webhook, and one eviction in each per round, in a random order:

* ``installed``: evictwatch as installed (default config: webhook, controller, watchers, the
  default sinks: Events, metrics, logs);
* ``webhook_only``: a second evictwatch with the controller and the watchers off (a partial
  configuration: the second row);
* ``minimal``: the yardstick, ``bench.minimal_recorder``: one record create per attempt,
  nothing else;
* ``off``: no webhook.

What a webhook adds is the median paired difference with ``off`` in the same round, so the
machine's drift (tens of percent within minutes on two shared cores) cancels out. The goal:
the operator as installed adds at most 1.2 x what the minimal recorder adds.

As in a cluster, where the operator runs on its own node, the control plane (and this client)
keep to CPU 0 and the webhook processes to CPU 1 (``taskset``; ``--no-pin`` to share both).
After the rounds it waits until every record of the installed operator is settled and
delivered, then reports per eviction: the operator's API calls by verb and resource (the API
server's audit log, by the operator's User-Agent), the API server's ``apiserver_request_total``
over the run (every client), and the operator's CPU time.

    python -m bench.added_latency [--pairs 300] [--no-pin] [--quick]
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common
from bench.common import Api, OperatorProcess, Target

SERIES = ("installed", "webhook_only", "minimal", "off")
GOAL_RATIO = 1.2
FINAL = {"Evicted", "Blocked", "PodGone", "Failed"}


async def wait_webhook_active(api: Api, namespace: str, pod: str, count_calls: Any) -> None:
    """The API server picks a new configuration up a moment after it is created: dry-run until it calls."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = await count_calls()
        await api.evict(namespace, pod, dry_run=True)
        if await count_calls() > before:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the API server did not call the webhook of {namespace} within 30 s")


class MinimalRecorder:
    """``bench.minimal_recorder`` as a child process on the operator's CPU."""

    def __init__(self, target: Target, selector: str, name: str, cpus: set[int] | None) -> None:
        self.target, self.selector, self.name, self.cpus = target, selector, name, cpus
        self.tmp = tempfile.TemporaryDirectory(prefix="ewb-minimal-")
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, ready: Path) -> None:
        log = open(Path(self.tmp.name) / "log", "wb")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.minimal_recorder", "--kubeconfig", str(self.target.kubeconfig_path),
             "--selector", self.selector, "--name", self.name, "--ready-file", str(ready)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=common.child_setup(self.cpus), cwd=common.REPO,
        )  # fmt: skip

    async def start(self) -> None:
        ready = Path(self.tmp.name) / "ready"
        self._spawn(ready)
        assert self.process is not None
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the minimal recorder did not start: {(Path(self.tmp.name) / 'log').read_text()}"
                )
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            for _ in range(100):
                if self.process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            if self.process.poll() is None:
                self.process.kill()
        self.tmp.cleanup()


async def rounds(
    api: Api, namespaces: dict[str, str], names: list[str], rng: random.Random
) -> tuple[dict[str, list[float]], list[int]]:
    """One round per name: an eviction in each namespace, in a random order; seconds per series."""
    times: dict[str, list[float]] = {series: [] for series in SERIES}
    statuses: list[int] = []
    for name in names:
        order = list(SERIES)
        rng.shuffle(order)
        for series in order:
            started = time.perf_counter()
            status, _ = await api.evict(namespaces[series], name)
            times[series].append(time.perf_counter() - started)
            statuses.append(status)
    return times, statuses


def paired(on: list[float], off: list[float]) -> dict[str, Any]:
    diffs = [a - b for a, b in zip(on, off, strict=True)]
    return {
        "latency": common.latency_ms(on),
        "added_p50_ms": round(common.percentile(diffs, 50) * 1000, 3),
        "added_mean_ms": round(sum(diffs) / len(diffs) * 1000, 3) if diffs else None,
        "added_p90_ms": round(common.percentile(diffs, 90) * 1000, 3),
    }


async def settled(api: Api, namespace: str, count: int, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Every record of ``namespace`` settled and delivered to every sink (or the timeout)."""
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = await api.records(namespace)
        done = [
            r for r in records
            if (r.get("status") or {}).get("outcome") in FINAL
            and (r.get("status") or {}).get("deliveries")
            and all(d.get("state") in ("Delivered", "Skipped", "Failed")
                    for d in r["status"]["deliveries"].values())
        ]  # fmt: skip
        if len(records) >= count and len(done) == len(records):
            return records
        await asyncio.sleep(0.5)
    return records


async def run(
    target: Target,
    *,
    results_dir: str | Path | None = None,
    pairs: int = 300,
    warmup: int = 20,
    pin: bool = True,
    seed: int = 1,
) -> dict[str, Any]:
    everywhere = os.sched_getaffinity(0)
    pin = pin and len(everywhere) >= 2 and common.pin_control_plane(target, {min(everywhere)})
    try:
        if pin:
            os.sched_setaffinity(0, {min(everywhere)})  # this client is one of the cluster's others
        return await _run(target, results_dir, pairs, warmup, pin, seed, everywhere)
    finally:
        if pin:  # as it was, for whatever runs next on this control plane
            os.sched_setaffinity(0, everywhere)
            common.pin_control_plane(target, everywhere)


async def _run(
    target: Target,
    results_dir: str | Path | None,
    pairs: int,
    warmup: int,
    pin: bool,
    seed: int,
    everywhere: set[int],
) -> dict[str, Any]:
    run_id = common.short_id()
    rng = random.Random(seed)
    operator_cpus = {max(everywhere)} if pin else None
    names = [f"p-{i:05d}" for i in range(warmup + pairs)]
    async with Api(target) as setup, Api(target, connections=1) as api:
        namespaces = {
            "installed": await setup.create_namespace(
                f"ewb-{run_id}-in", {"evictwatch.io/bench-run": run_id}
            ),
            "webhook_only": await setup.create_namespace(
                f"ewb-{run_id}-wo", {"evictwatch.io/bench-run": f"{run_id}-wo"}
            ),
            "minimal": await setup.create_namespace(
                f"ewb-{run_id}-mr", {"evictwatch.io/bench-minimal": run_id}
            ),
            "off": await setup.create_namespace(f"ewb-{run_id}-off"),
        }
        for namespace in namespaces.values():
            await common.create_pods(setup, namespace, [*names, "dry"])
        installed = OperatorProcess(
            target,
            common.operator_config(run_id, capture={"namespaces": [namespaces["installed"]]}),
            cpus=operator_cpus,
            identity=f"bench-installed-{run_id}",
        )
        webhook_only = OperatorProcess(
            target,
            common.operator_config(
                f"{run_id}-wo",
                capture={"namespaces": [namespaces["webhook_only"]]},
                controller={"enabled": False},
                watchers={"enabled": False},
            ),
            cpus=operator_cpus,
            identity=f"bench-webhook-only-{run_id}",
            # A key of its own: the installed operator's controller must not settle its records.
            record_key="evictwatch-bench-webhook-only-key",
        )
        minimal = MinimalRecorder(
            target, f"evictwatch.io/bench-minimal={run_id}", f"ewb-minimal-{run_id}", operator_cpus
        )
        try:
            await installed.start(setup)
            await webhook_only.start(setup)
            await minimal.start()
            await installed.wait_leading(setup)
            for series, process in (("installed", installed), ("webhook_only", webhook_only)):

                async def reviews(process: OperatorProcess = process) -> float:
                    return common.metric_sum(await process.metrics(), "evictwatch_webhook_requests_total")

                await wait_webhook_active(api, namespaces[series], "dry", reviews)

            await asyncio.sleep(2.0)  # the minimal recorder's configuration is picked up too, and the
            # Pod cache answers for Pods whose facts are a second old
            await rounds(api, namespaces, names[:warmup], rng)
            await settled(setup, namespaces["installed"], warmup)
            if not await setup.records(namespaces["minimal"]):
                raise RuntimeError("the minimal recorder was not called during the warm-up rounds")
            await common.wait_quiet(installed.pid, window=1.0, below=0.05, timeout=60)
            audit_from = common.audit_position(target)
            requests_before = await common.apiserver_requests(setup)
            cpu_before = {p.identity: common.proc_cpu_seconds(p.pid) for p in (installed, webhook_only)}
            assert minimal.process is not None
            minimal_cpu_before = common.proc_cpu_seconds(minimal.process.pid)
            times, statuses = await rounds(api, namespaces, names[warmup:], rng)
            records = await settled(setup, namespaces["installed"], warmup + pairs)
            cpu = {
                p.identity: common.proc_cpu_seconds(p.pid) - cpu_before[p.identity]
                for p in (installed, webhook_only)
            }
            minimal_cpu = common.proc_cpu_seconds(minimal.process.pid) - minimal_cpu_before
            requests = common.request_delta(requests_before, await common.apiserver_requests(setup))
            calls = {
                "installed": common.audit_calls(
                    target, audit_from, f"evictwatch/{_version()} ({installed.identity})"
                ),
                "webhook_only": common.audit_calls(
                    target, audit_from, f"evictwatch/{_version()} ({webhook_only.identity})"
                ),
                "minimal": common.audit_calls(target, audit_from, "minimal-recorder"),
            }
            samples = await installed.metrics()
        finally:
            await minimal.stop()
            await webhook_only.stop(setup)
            await installed.stop(setup)
        for namespace in namespaces.values():
            await setup.delete_namespace(namespace)
    return report(
        times, statuses, records, calls, requests, cpu, minimal_cpu, samples,
        pairs=pairs, warmup=warmup, pinned=pin, machine=common.machine_info(target),
        identities=(installed.identity, webhook_only.identity), results_dir=results_dir,
    )  # fmt: skip


def _version() -> str:
    from evictwatch import __version__

    return __version__


def report(
    times: dict[str, list[float]],
    statuses: list[int],
    records: list[dict[str, Any]],
    calls: dict[str, dict[str, int]],
    requests: dict[str, int],
    cpu: dict[str, float],
    minimal_cpu: float,
    samples: Any,
    *,
    pairs: int,
    warmup: int,
    pinned: bool,
    machine: dict[str, Any],
    identities: tuple[str, str],
    results_dir: str | Path | None,
) -> dict[str, Any]:
    series = {name: paired(times[name], times["off"]) for name in ("installed", "webhook_only", "minimal")}
    series["off"] = {"latency": common.latency_ms(times["off"])}
    minimal_added = series["minimal"]["added_p50_ms"]
    ratio = {
        name: round(series[name]["added_p50_ms"] / minimal_added, 3) if minimal_added > 0 else None
        for name in ("installed", "webhook_only")
    }
    per_eviction = {
        name: {
            "total": round(sum(counted.values()) / pairs, 3),
            "by_call": {call: round(n / pairs, 3) for call, n in counted.items()},
        }
        for name, counted in calls.items()
    }
    outcomes: dict[str, int] = {}
    for record in records:
        outcome = str((record.get("status") or {}).get("outcome"))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    lookups = {
        result: int(common.metric_sum(samples, "evictwatch_pod_cache_lookups_total", result=result))
        for result in ("hit", "miss", "recent", "unsynced")
    }
    fallbacks = common.metric_sum(samples, "evictwatch_cache_fallbacks_total")
    result = {
        "benchmark": "added_latency",
        "machine": machine,
        "params": {
            "pairs": pairs,
            "warmup_rounds": warmup,
            "pods": "Pending (deleted at once by the server), no owner",
            "how": "each round evicts once in each of four namespaces, in a random order: behind evictwatch "
            "as installed, behind evictwatch with controller and watchers off, behind a minimal recorder "
            "(one create per attempt), and behind no webhook",
            "pinned": "control plane and client on CPU 0, webhook processes on CPU 1" if pinned else "no",
            "client": "httpx2, one keep-alive HTTPS connection, admin client certificate",
        },
        "series": series,
        "added_over_minimal_recorder": ratio,
        "goal": {
            "ratio_at_most": GOAL_RATIO,
            "met": ratio["installed"] is not None and ratio["installed"] <= GOAL_RATIO,
        },
        "api_calls_per_eviction": per_eviction,
        "apiserver_request_total_over_the_run": requests,
        "operator_cpu_ms_per_eviction": {
            "installed": round(1000 * cpu[identities[0]] / pairs, 3),
            "webhook_only": round(1000 * cpu[identities[1]] / pairs, 3),
            "minimal_recorder": round(1000 * minimal_cpu / pairs, 3),
        },
        "installed_records": {"count": len(records), "outcomes": outcomes, "expected": warmup + pairs},
        "pod_cache_lookups": lookups,
        "cache_fallbacks": fallbacks,
        "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
    }
    common.print_table(
        f"added latency per eviction, same rounds ({common.nproc_note()}; pinned: {pinned})",
        ["series", "n", "p50 ms", "p99 ms", "added p50 ms", "x minimal", "API calls", "CPU ms"],
        [
            [
                name,
                series[name]["latency"]["n"],
                series[name]["latency"]["p50_ms"],
                series[name]["latency"]["p99_ms"],
                series[name].get("added_p50_ms", "-"),
                ratio.get(name, "-") if name != "minimal" else 1.0,
                per_eviction.get(name, {}).get("total", "-"),
                result["operator_cpu_ms_per_eviction"].get(
                    {"minimal": "minimal_recorder"}.get(name, name), "-"
                ),
            ]
            for name in ("installed", "webhook_only", "minimal", "off")
        ],
    )
    print(
        f"installed: {per_eviction['installed']['by_call']} per eviction; records {outcomes}; "
        f"pod cache lookups {lookups}; cache fallbacks {fallbacks}; goal <= {GOAL_RATIO} x minimal: "
        f"{'met' if result['goal']['met'] else 'MISSED'}",
        flush=True,
    )
    common.write_result("added_latency", result, results_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    p = common.parser("Latency and API cost the operator as installed adds to an eviction.")
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--no-pin", action="store_true", help="do not pin the control plane and webhooks to CPUs")
    args = p.parse_args(argv)
    common.main_with(
        run,
        args,
        pairs=10 if args.quick else args.pairs,
        warmup=3 if args.quick else 20,
        pin=not args.no_pin,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
