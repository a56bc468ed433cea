"""``evictwatch sandbox --once --output json`` on a real node and on a fake one."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest

from evictwatch.testing.binaries import KUBERNETES_VERSION, cache_dir
from evictwatch.testing.node import why_no_real_node


async def sandbox_json(*args: str, timeout: float = 300) -> tuple[int, dict[str, Any] | None, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.setdefault("EVICTWATCH_CACHE", str(cache_dir().parents[1]))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "evictwatch.cli",
        "sandbox",
        "--once",
        "--output",
        "json",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    document = json.loads(out) if process.returncode == 0 else None
    return process.returncode, document, err.decode()


def outcomes(document: dict[str, Any]) -> list[str]:
    return sorted(r["status"]["outcome"] for r in document["records"])


async def test_sandbox_runs_its_pods_on_a_real_node() -> None:
    reason = why_no_real_node()
    if reason is not None:
        # No skip: scripts/test.sh installs and builds what a real node needs (run it as root).
        pytest.fail(f"this test needs a real node, but {reason}")
    code, document, err = await sandbox_json("--node", "real")
    assert code == 0 and document is not None, err[-3000:]
    assert document["node"] == {"name": "evictwatch-node", "real": True, "kubeletVersion": KUBERNETES_VERSION}
    assert outcomes(document) == ["Blocked", "Evicted"], document
    for record in document["records"]:
        assert record["kind"] == "PodEviction" and record["metadata"]["namespace"] == "demo"
        assert record["spec"]["pod"]["phase"] == "Running"  # a real container, running when evicted
        assert record["spec"]["pod"]["nodeName"] == "evictwatch-node"
    assert "real node evictwatch-node Ready in" in err
    assert "stopped; nothing left running" in err
    assert "left host changes behind" not in err


async def test_sandbox_says_when_its_node_is_fake() -> None:
    code, document, err = await sandbox_json("--node", "fake")
    assert code == 0 and document is not None, err[-3000:]
    assert document["node"] == {"name": "sandbox-node-1", "real": False, "kubeletVersion": None}
    assert outcomes(document) == ["Blocked", "Evicted"], document
    assert {r["spec"]["pod"]["phase"] for r in document["records"]} == {"Running"}  # marked by hand
    assert "a fake node (no kubelet)" in err
