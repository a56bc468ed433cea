"""Webhook handler: requests per second and latency, HTTPS straight to the operator's webhook.

The bodies are the real AdmissionReviews in tests/fixtures/admission-reviews/, rewritten to Pods
that exist in a namespace of this run, each with a fresh ``request.uid``. Three kinds of request:

* ``recorded``: the first attempt at a Pod: GET the Pod, create its record (one API write);
* ``repeat``: another attempt at an already recorded Pod (kubectl drain retrying a 429): GET the
  Pod, create -> 409, GET the record, replace it;
* ``dry_run``: ``arv1-dryrun-query.json``: answered without any API call.

Each at concurrency 1, 16 and 64 over keep-alive connections (aiohttp). The operator runs as a
separate process with the controller and the watchers off, so its CPU is the webhook's alone.

    python -m bench.webhook [--requests 500] [--concurrency 1,16,64] [--kubeconfig K] [--quick]
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench import common
from bench.common import Api, OperatorProcess, Target

DRY_RUN_FIXTURE = "arv1-dryrun-query.json"


def load_templates() -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """The fixtures that are recorded (CREATE of an Eviction, not a dry run), and the dry-run one."""
    recorded = []
    for path in sorted(common.FIXTURES.glob("*.json")):
        review = json.loads(path.read_text())
        request = review["request"]
        delete_options = (request.get("object") or {}).get("deleteOptions") or {}
        dry = (
            request.get("dryRun")
            or "All" in ((request.get("options") or {}).get("dryRun") or [])
            or "All" in (delete_options.get("dryRun") or [])
        )
        if request.get("operation") == "CREATE" and not dry:
            recorded.append((path.name, review))
    dry_run = json.loads((common.FIXTURES / DRY_RUN_FIXTURE).read_text())
    return recorded, dry_run


def body_for(template: dict[str, Any], namespace: str, name: str) -> bytes:
    review = json.loads(json.dumps(template))
    request = review["request"]
    request["uid"] = str(uuid.uuid4())
    request["namespace"] = namespace
    request["name"] = name
    obj = request.get("object") or {}
    obj.setdefault("metadata", {}).update({"name": name, "namespace": namespace})
    return json.dumps(review).encode()


async def load(
    session: aiohttp.ClientSession, url: str, bodies: list[bytes], concurrency: int
) -> tuple[list[float], float, dict[str, int]]:
    """POST every body, ``concurrency`` in flight; returns (latencies s, wall s, errors by kind)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(bodies):
            body = bodies[position]
            position += 1
            started = time.perf_counter()
            try:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as reply:
                    data = await reply.read()
                    status = reply.status
            except aiohttp.ClientError as error:
                errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                continue
            latencies.append(time.perf_counter() - started)
            if status != 200 or b'"allowed":true' not in data:
                errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, errors


async def run(
    target: Target,
    *,
    results_dir: str | Path | None = None,
    requests: int = 500,
    concurrency: tuple[int, ...] = (1, 16, 64),
    warmup: int = 30,
    profile: str | None = None,
) -> dict[str, Any]:
    run_id = common.short_id()
    recorded_templates, dry_template = load_templates()
    rng = random.Random(7)
    async with Api(target) as api:
        namespace = await api.create_namespace(f"ewb-{run_id}-wh", {"evictwatch.io/bench-run": run_id})
        names = [f"wh-{i:05d}" for i in range(requests * len(concurrency) + warmup)]
        pods_per_second = await common.create_pods(
            api, namespace, names, labels=lambda i: {"app": f"a{i % 10}"}
        )
        operator = OperatorProcess(
            target,
            common.operator_config(run_id, controller={"enabled": False}, watchers={"enabled": False}),
            profile=profile,
        )
        await operator.start(api)
        await asyncio.sleep(1.5)  # the Pod-facts cache lists the Pods and uses them a second later
        rows: list[dict[str, Any]] = []
        try:
            pid = operator.pid
            rss_start = common.proc_rss_mb(pid)
            context = ssl.create_default_context(cadata=operator.ca_pem.decode())
            url = operator.webhook_url + "?timeout=5s"
            warm, rest = names[:warmup], names[warmup:]
            sampler = common.Sampler(pid, interval=0.25).start()
            for index, level in enumerate(concurrency):
                pods = rest[index * requests : (index + 1) * requests]
                connector = aiohttp.TCPConnector(limit=level, ssl=context)
                async with aiohttp.ClientSession(connector=connector) as session:
                    if index == 0:  # warm the connections, the handler and the operator's API client
                        await load(
                            session,
                            url,
                            [body_for(rng.choice(recorded_templates)[1], namespace, n) for n in warm],
                            4,
                        )
                        await load(session, url, [body_for(dry_template, namespace, n) for n in warm], 4)
                    for mode in ("recorded", "repeat", "dry_run"):
                        order = list(pods)
                        if mode == "repeat":
                            rng.shuffle(order)
                        template = (
                            (lambda: dry_template)
                            if mode == "dry_run"
                            else (lambda: rng.choice(recorded_templates)[1])
                        )
                        bodies = [body_for(template(), namespace, n) for n in order]
                        cpu_before = common.proc_cpu_seconds(pid)
                        latencies, wall, errors = await load(session, url, bodies, level)
                        cpu = common.proc_cpu_seconds(pid) - cpu_before
                        row = {
                            "mode": mode,
                            "concurrency": level,
                            "requests": len(bodies),
                            "errors": errors,
                            "rps": round(len(latencies) / wall, 1),
                            **common.latency_ms(latencies),
                            "cpu_ms_per_request": round(1000 * cpu / len(bodies), 3),
                            "operator_cpu_percent": round(100 * cpu / wall, 1),
                            "rss_mb": round(common.proc_rss_mb(pid), 1),
                        }
                        rows.append(row)
            usage = await sampler.stop()
            samples = await operator.metrics()
            records = await api.records(namespace)
        finally:
            await operator.stop(api)
        await api.delete_namespace(namespace)

    recorded_requests = sum(r["requests"] for r in rows if r["mode"] in ("recorded", "repeat")) + warmup
    attempts = sum(int((r.get("spec") or {}).get("attempts") or 0) for r in records)
    decisions = {
        d: int(common.metric_sum(samples, "evictwatch_webhook_requests_total", decision=d))
        for d in ("recorded", "dry_run", "filtered", "lost", "bad_request")
    }
    handling = {}
    for decision in ("recorded", "dry_run"):
        count = common.metric_sum(samples, "evictwatch_webhook_handling_seconds_count", decision=decision)
        total = common.metric_sum(samples, "evictwatch_webhook_handling_seconds_sum", decision=decision)
        handling[decision] = round(1000 * total / count, 3) if count else None
    result = {
        "benchmark": "webhook",
        "machine": common.machine_info(target),
        "params": {
            "requests_per_level": requests,
            "concurrency": list(concurrency),
            "warmup": warmup,
            "client": "aiohttp keep-alive, connection pool = concurrency",
            "operator": "separate process (python -m evictwatch.cli run), controller and watchers off",
            "recorded_fixtures": [name for name, _ in recorded_templates],
            "dry_run_fixture": DRY_RUN_FIXTURE,
            "pods_created_per_second": round(pods_per_second, 1),
        },
        "results": rows,
        "operator": {
            "startup_seconds": round(operator.started_seconds, 2),
            "rss_mb_start": round(rss_start, 1),
            **{f"run_{k}": v for k, v in usage.items()},
        },
        "server_side_mean_ms": handling,
        "completeness": {
            "pods_recorded_expected": len(names),
            "records": len(records),
            "attempts_sent": recorded_requests,
            "attempts_in_records": attempts,
            "decisions": decisions,
            "complete": len(records) == len(names) and attempts == recorded_requests,
        },
    }
    common.print_table(
        f"webhook handler ({common.nproc_note()})",
        ["mode", "conc", "req/s", "p50 ms", "p90 ms", "p99 ms", "cpu ms/req", "op cpu %", "RSS MB", "errors"],
        [
            [
                r["mode"],
                r["concurrency"],
                r["rps"],
                r["p50_ms"],
                r["p90_ms"],
                r["p99_ms"],
                r["cpu_ms_per_request"],
                r["operator_cpu_percent"],
                r["rss_mb"],
                sum(r["errors"].values()),
            ]
            for r in rows
        ],
    )
    print(
        f"records {len(records)}/{len(names)}, attempts {attempts}/{recorded_requests}; "
        f"server-side mean handling {handling} ms; RSS max {usage.get('rss_mb_max')} MB",
        flush=True,
    )
    common.write_result("webhook", result, results_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    p = common.parser("Webhook handler throughput, latency, CPU and RSS.")
    p.add_argument("--requests", type=int, default=500, help="requests per mode and concurrency level")
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated levels")
    p.add_argument("--profile", help="run the operator under cProfile and write the profile here")
    args = p.parse_args(argv)
    requests = 20 if args.quick else args.requests
    levels = tuple(int(x) for x in args.concurrency.split(","))
    common.main_with(
        run, args, requests=requests, concurrency=levels, warmup=5 if args.quick else 30, profile=args.profile
    )


if __name__ == "__main__":
    main(sys.argv[1:])
