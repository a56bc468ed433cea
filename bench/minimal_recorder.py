"""The yardstick: the least an eviction recorder can do, as a webhook process of its own.

For every non-dry-run Eviction it is sent, it creates one bare PodEviction (through the same
HTTP stack as evictwatch, one connection) and allows the eviction; nothing else: no Pod
lookup, no cache, no controller. ``bench.added_latency`` runs it beside the operator, pinned to
the same core, and measures what it adds in the same rounds; the operator as installed must
stay within 1.2 x of that.

    python -m bench.minimal_recorder --kubeconfig K --selector key=value --name N --ready-file F
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import signal
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from evictwatch.kube.api import JsonApi
from evictwatch.kube.client import load_config
from evictwatch.testing import pki

CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def configuration(name: str, url: str, ca_pem: bytes, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "minimal.bench.evictwatch.io",
                "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods/eviction"],
                        "operations": ["CREATE"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": selector},
                "admissionReviewVersions": ["v1"],
                "sideEffects": "NoneOnDryRun",
                "failurePolicy": "Ignore",
                "timeoutSeconds": 10,
            }
        ],
    }


def serving_context() -> tuple[ssl.SSLContext, bytes]:
    """A TLS context with a fresh self-signed certificate for 127.0.0.1, and its CA."""
    with tempfile.TemporaryDirectory(prefix="ewb-minimal-") as folder:
        ca = pki.make_ca("minimal-recorder-ca")
        serving = pki.issue(ca, "127.0.0.1", ip_addresses=("127.0.0.1",))
        Path(folder, "tls.crt").write_bytes(serving.cert_pem)
        Path(folder, "tls.key").write_bytes(serving.key_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(Path(folder, "tls.crt"), Path(folder, "tls.key"))
    return context, ca.cert_pem


async def serve(kubeconfig: str, selector: dict[str, str], name: str, ready_file: Path) -> None:
    api = JsonApi(load_config(kubeconfig), pool_size=1, user_agent="minimal-recorder")
    numbers = itertools.count()

    async def review(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        req = body["request"]
        if not req.get("dryRun"):
            record = {
                "apiVersion": "evictwatch.io/v1alpha1",
                "kind": "PodEviction",
                "metadata": {"name": f"{req['name']}.{next(numbers)}"},
                "spec": {"pod": {"name": req["name"]}, "source": "EvictionAPI", "attempts": 1},
            }
            await api.request(
                "POST", f"/apis/evictwatch.io/v1alpha1/namespaces/{req['namespace']}/podevictions", record
            )
        answer = {"uid": req["uid"], "allowed": True}
        return web.json_response(
            {"apiVersion": body["apiVersion"], "kind": "AdmissionReview", "response": answer}
        )

    context, ca_pem = serving_context()
    app = web.Application()
    app.router.add_post("/review", review)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    manifest = configuration(name, f"https://127.0.0.1:{port}/review", ca_pem, selector)
    await api.request("POST", CONFIGURATIONS, manifest)
    await asyncio.to_thread(ready_file.write_text, str(port))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await api.request("DELETE", f"{CONFIGURATIONS}/{name}")
        await runner.cleanup()
        await api.close()


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--selector", required=True, help="key=value: the namespaces it records")
    p.add_argument("--name", required=True, help="its ValidatingWebhookConfiguration's name")
    p.add_argument("--ready-file", required=True, type=Path)
    args = p.parse_args(argv)
    key, _, value = args.selector.partition("=")
    asyncio.run(serve(args.kubeconfig, {key: value}, args.name, args.ready_file))


if __name__ == "__main__":
    main(sys.argv[1:])
