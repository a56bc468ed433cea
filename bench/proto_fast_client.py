"""Prototype (not a benchmark of the product): the webhook's hot path over aiohttp instead of httpx2.

The recorded path of the webhook makes two API calls, GET the Pod and create (or patch) the
record, as plain JSON through ``evictwatch.kube.raw``, which borrows lightkube's ``httpx2``
client. Profiling shows most of the handler's CPU inside httpx2/httpcore2/anyio/h11 (URL parsing,
the connection pool, anyio's TLS stream), not in our code. This script runs the real
:class:`EvictionWebhook` and :class:`RecordStore` in this process twice, side by side on the same
cluster: as they are, and with ``kube.raw``'s HTTP client swapped for one aiohttp ``ClientSession``
(aiohttp is already a dependency: it serves the webhook). Both write identical, signed records.

    python -m bench.proto_fast_client [--reviews 300] [--rounds 2] [--kubeconfig K]

It prints CPU per review (this process's CPU time / reviews: the handler and its client only, no
HTTP server involved) and latency at concurrency 1 and 16, and writes ``proto_fast_client.json``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx2

from bench import common
from bench.common import Api, Target
from bench.webhook import body_for, load_templates
from evictwatch.capture.filtering import CaptureFilter
from evictwatch.capture.webhook import EvictionWebhook
from evictwatch.config import Filter, SelfIdentity
from evictwatch.kube.client import make_client
from evictwatch.records.install import ensure_crd
from evictwatch.records.store import RecordStore


class AiohttpTransport:
    """Stands in for the ``httpx2.AsyncClient`` that ``evictwatch.kube.raw`` takes from lightkube.

    ``get`` and ``request`` go over one aiohttp session with the same TLS identity; the answers are
    real ``httpx2.Response`` objects, so ``kube.raw``'s error handling (ApiError on 4xx/5xx, the
    store's 409 test) runs unchanged.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: str | bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx2.Response:
        data = content.encode() if isinstance(content, str) else content
        async with self.session.request(method, path, data=data, params=params, headers=headers) as reply:
            body = await reply.read()
            status = reply.status
        request = httpx2.Request(method, self.base_url + path, params=params)
        return httpx2.Response(status, content=body, request=request)

    async def get(self, path: str) -> httpx2.Response:
        return await self.request("GET", path)


class ClientWithAiohttp:
    """A lightkube AsyncClient whose plain-JSON hot path (``kube.raw``) runs over aiohttp."""

    def __init__(self, lightkube_client: Any, transport: AiohttpTransport) -> None:
        self._lightkube = lightkube_client
        self._client = SimpleNamespace(_client=transport)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lightkube, name)


async def measure(webhook: EvictionWebhook, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    pending = iter(bodies)

    async def worker() -> None:
        for body in pending:
            started = time.perf_counter()
            await webhook.review(body)
            latencies.append(time.perf_counter() - started)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "concurrency": concurrency,
        "reviews": len(bodies),
        "cpu_ms_per_review": round(1000 * cpu / len(bodies), 3),
        "reviews_per_second": round(len(bodies) / wall, 1),
        **common.latency_ms(latencies),
    }


async def run(
    target: Target, *, results_dir: str | Path | None = None, reviews: int = 300, rounds: int = 2
) -> dict[str, Any]:
    logging.getLogger("evictwatch").setLevel(logging.WARNING)
    recorded, _ = load_templates()
    template = dict(recorded)["arv1-pending-pod-policy-v1.json"]
    levels = (1, 16)
    variants = ("httpx2", "aiohttp")
    rows: list[dict[str, Any]] = []
    async with Api(target) as api:
        namespace = await api.create_namespace(f"ewb-{common.short_id()}-proto")
        chunks = rounds * len(levels) * len(variants)
        names = [f"p-{i:05d}" for i in range(reviews * chunks + 40)]
        await common.create_pods(api, namespace, names, labels=lambda i: {"app": "proto"})
        client = make_client(target.kubeconfig_path)
        await ensure_crd(client)
        connector = aiohttp.TCPConnector(ssl=target.context, limit=100)
        async with aiohttp.ClientSession(
            connector=connector, base_url=target.url, headers=target.headers()
        ) as session:
            fast: Any = ClientWithAiohttp(client, AiohttpTransport(session, target.url))
            capture = CaptureFilter(Filter(), SelfIdentity())
            webhooks = {
                "httpx2": EvictionWebhook(client, capture, RecordStore(client, b"k")),
                "aiohttp": EvictionWebhook(fast, capture, RecordStore(fast, b"k")),
            }
            for index, name in enumerate(names[:40]):  # warm both
                await webhooks[variants[index % 2]].review(body_for(template, namespace, name))
            position = 40
            for round_ in range(rounds):
                for level in levels:
                    for variant in variants:
                        batch = names[position : position + reviews]
                        position += reviews
                        bodies = [body_for(template, namespace, n) for n in batch]
                        row = {
                            "variant": variant,
                            "round": round_,
                            **await measure(webhooks[variant], bodies, level),
                        }
                        rows.append(row)
        await client.close()
        records = await api.records(namespace)
        await api.delete_namespace(namespace)
    result = {
        "benchmark": "proto_fast_client",
        "machine": common.machine_info(target),
        "params": {
            "reviews_per_cell": reviews,
            "rounds": rounds,
            "fixture": "arv1-pending-pod-policy-v1.json",
        },
        "results": rows,
        "records": len(records),
        "records_expected": len(names),
    }
    common.print_table(
        f"prototype: the webhook's API calls over aiohttp ({common.nproc_note()})",
        ["variant", "round", "conc", "cpu ms/review", "reviews/s", "p50 ms", "p90 ms", "p99 ms"],
        [
            [
                r["variant"],
                r["round"],
                r["concurrency"],
                r["cpu_ms_per_review"],
                r["reviews_per_second"],
                r["p50_ms"],
                r["p90_ms"],
                r["p99_ms"],
            ]
            for r in rows
        ],
    )
    print(f"records {len(records)}/{len(names)}", flush=True)
    common.write_result("proto_fast_client", result, results_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    p = common.parser("Prototype: the webhook's two API calls over aiohttp instead of lightkube/httpx2.")
    p.add_argument("--reviews", type=int, default=300, help="reviews per variant, level and round")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    common.main_with(
        run, args, reviews=30 if args.quick else args.reviews, rounds=1 if args.quick else args.rounds
    )


if __name__ == "__main__":
    main(sys.argv[1:])
