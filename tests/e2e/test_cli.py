"""Every CLI command, run as a user runs it (a subprocess), against the real control plane."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from lightkube.resources.policy_v1 import PodDisruptionBudget

from evictwatch.operator import Operator
from evictwatch.testing.binaries import cache_dir
from evictwatch.testing.cluster import Cluster, wait_for
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.fixtures import StartOperator


async def cli(*args: str, kubeconfig: Path | str | None, timeout: float = 60) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = env.get("EVICTWATCH_TEST_HOME", "/nonexistent")  # no ~/.kube/config fallback
    env.setdefault("EVICTWATCH_CACHE", str(cache_dir().parents[1]))  # but the built binaries
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "evictwatch.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def operator(start_operator: StartOperator, cluster: Cluster) -> Operator:
    return await start_operator(
        {
            "capture": {"namespaces": [cluster.namespace]},
            "self": {"namespace": cluster.namespace},
            "controller": {"blockedAfterSeconds": 1, "leaderElection": {"enabled": False}},
            "sinks": {"log": {"enabled": False}},
        },
        record_key=b"cli",
    )


async def outcome_of(cluster: Cluster, pod: str, kubeconfig: Path) -> str:
    async def probe() -> str | None:
        code, out, _ = await cli("get", "-n", cluster.namespace, "-o", "json", kubeconfig=kubeconfig)
        assert code == 0
        for item in json.loads(out)["items"]:
            if item["spec"]["pod"]["name"] == pod and (item.get("status") or {}).get("outcome") != "Pending":
                return str(item["status"]["outcome"])
        return None

    return await wait_for(probe, timeout=30, what=f"{pod} to settle")


async def test_evict_get_describe_watch(
    cluster: Cluster, operator: Operator, control_plane: ControlPlane
) -> None:
    kubeconfig = control_plane.kubeconfig_path
    ns = cluster.namespace
    node = await cluster.create_node()
    for name in ("api-0", "api-1", "api-2"):
        await cluster.create_pod(name, labels={"app": "api"}, node=node, ready=True)
    await cluster.create_pdb("api", {"app": "api"}, min_available=3)

    code, out, err = await cli("evict", "api-0", "-n", ns, kubeconfig=kubeconfig)
    assert code == 4, (out, err)  # refused by the budget
    assert "disruption budget" in err and err.count("\n") == 1
    code, out, _ = await cli("evict", "api-1", "-n", ns, "--dry-run", kubeconfig=kubeconfig)
    assert code == 4  # a dry run meets the same budget
    assert await outcome_of(cluster, "api-0", kubeconfig) == "Blocked"  # settled while the budget stands
    await cluster.client.delete(PodDisruptionBudget, "api", namespace=ns)
    code, out, _ = await cli(
        "evict",
        "api-2",
        "-n",
        ns,
        "--grace-period",
        "5",
        "--policy-version",
        "v1beta1",
        kubeconfig=kubeconfig,
    )
    assert code == 0 and out.strip() == f"pod/api-2 evicted in {ns}"
    code, out, _ = await cli("evict", "api-1", "-n", ns, "--dry-run", kubeconfig=kubeconfig)
    assert code == 0 and "(dry run)" in out

    assert await outcome_of(cluster, "api-2", kubeconfig) == "Evicted"

    code, out, _ = await cli("get", "-n", ns, kubeconfig=kubeconfig)
    lines = out.strip().splitlines()
    assert lines[0].split() == [
        "NAMESPACE",
        "POD",
        "NODE",
        "SOURCE",
        "REQUESTER",
        "OUTCOME",
        "ATTEMPTS",
        "AGE",
    ]
    assert sorted(line.split()[1] for line in lines[1:]) == ["api-0", "api-2"]  # the dry runs left no record
    code, out, _ = await cli("get", "-A", "-o", "wide", "--outcome", "Blocked", kubeconfig=kubeconfig)
    assert code == 0
    rows = [line.split() for line in out.strip().splitlines()[1:] if line.split()[0] == ns]
    assert [r[1] for r in rows] == ["api-0"] and "PodDisruptionBudget" in out
    code, out, _ = await cli(
        "get", "-n", ns, "-o", "yaml", "--source", "EvictionAPI", "--since", "1h", kubeconfig=kubeconfig
    )
    assert len(yaml.safe_load(out)["items"]) == 2
    code, out, _ = await cli("get", "-n", ns, "--source", "Kubelet", kubeconfig=kubeconfig)
    assert code == 0 and out == ""
    code, _, err = await cli("get", "-n", ns, "--since", "soon", kubeconfig=kubeconfig)
    assert code == 2 and "not a duration" in err

    code, out, _ = await cli("describe", f"{ns}/api-2", kubeconfig=kubeconfig)
    assert code == 0
    for expected in (
        "Outcome:       Evicted",
        "User:        admin",
        "Attempts:    1",
        "gracePeriodSeconds",
        f"Node:          {node}",
    ):
        assert expected in out, out
    code, _, err = await cli("describe", f"{ns}/never-evicted", kubeconfig=kubeconfig)
    assert code == 1 and "no eviction recorded" in err

    code, out, _ = await cli("watch", "-n", ns, "--timeout", "3", kubeconfig=kubeconfig)
    assert code == 0
    assert out.splitlines()[0].split()[0] == "NAMESPACE"
    assert {line.split()[1] for line in out.splitlines()[1:]} == {"api-0", "api-2"}


async def test_errors_are_one_clear_line(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    code, _, err = await cli("get", kubeconfig=None)
    assert code == 3 and err.startswith("error: no Kubernetes configuration found") and err.count("\n") == 1

    token = await cluster.service_account_token("reader-without-rights")
    kubeconfig = control_plane.kubeconfig_for_token(token, "no-rights")
    code, _, err = await cli("get", "-n", cluster.namespace, kubeconfig=kubeconfig)
    assert code == 3 and "no permission to list podevictions.evictwatch.io" in err

    bad = tmp_path / "bad.yaml"
    bad.write_text("webhook:\n  timeoutSeconds: 99\n")
    code, _, err = await cli("run", "--config", str(bad), kubeconfig=control_plane.kubeconfig_path)
    assert code == 2 and "webhook.timeoutSeconds" in err


async def test_crd_not_installed_is_explained(control_plane: ControlPlane) -> None:
    with ControlPlane(binaries=control_plane.binaries, audit_log=False) as bare:
        code, _, err = await cli("get", "-A", kubeconfig=bare.kubeconfig_path)
    assert code == 3 and "CRD is not installed" in err


async def test_help_everywhere() -> None:
    for command in (
        "",
        "run",
        "get",
        "describe",
        "watch",
        "evict",
        "sandbox",
        "control-plane",
        "manifests",
        "report",
    ):
        code, out, _ = await cli(*([command] if command else []), "--help", kubeconfig=None)
        assert code == 0 and "Usage:" in out, command


async def test_manifests_are_the_rendered_chart() -> None:
    code, out, _ = await cli("manifests", kubeconfig=None)
    assert code == 0
    kinds = [doc["kind"] for doc in yaml.safe_load_all(out) if doc]
    for kind in (
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "Deployment",
        "ValidatingWebhookConfiguration",
    ):
        assert kind in kinds
    deploy = Path(__file__).parents[2] / "deploy" / "manifests"
    assert out == "---\n".join(p.read_text() for p in sorted(deploy.glob("*.yaml")))


async def test_sandbox_once_shows_a_blocked_and_an_evicted_pod() -> None:
    code, out, err = await cli("sandbox", "--once", kubeconfig=None, timeout=240)
    assert code == 0, err[-2000:]
    rows = [line.split() for line in out.splitlines() if line.startswith("demo ")]
    assert sorted(row[5] for row in rows) == ["Blocked", "Evicted"], out
    assert "explore with: export KUBECONFIG=" in out
    assert "stopped; nothing left running" in out
