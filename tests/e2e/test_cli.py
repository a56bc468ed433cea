"""Every CLI command, run as a user runs it (a subprocess), against the real control plane."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import yaml
from lightkube.resources.policy_v1 import PodDisruptionBudget

from evictwatch import views
from evictwatch.kube.api import JsonApi
from evictwatch.operator import Operator
from evictwatch.records.install import ensure_crd
from evictwatch.testing.binaries import cache_dir
from evictwatch.testing.cluster import Cluster, wait_for
from evictwatch.testing.controlplane import ControlPlane, free_port
from evictwatch.testing.fixtures import StartOperator
from evictwatch.testing.tcpproxy import TcpProxy


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
    code, out, err = await cli("get", "-n", ns, "--source", "Kubelet", kubeconfig=kubeconfig)
    assert code == 0 and out == "" and err == f"No evictions found in namespace {ns}.\n"
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
    assert out.splitlines()[0].split()[:2] == ["TIME", "NAMESPACE"]
    assert {line.split()[2] for line in out.splitlines()[1:]} == {"api-0", "api-2"}


async def settled_names(cluster: Cluster, kubeconfig: Path, count: int) -> dict[str, str]:
    """Pod name -> record name, once ``count`` records (typos included) have settled."""

    async def probe() -> dict[str, str] | None:
        code, out, _ = await cli(
            "get", "-n", cluster.namespace, "--show-missing", "-o", "json", kubeconfig=kubeconfig
        )
        assert code == 0
        items = json.loads(out)["items"]
        if len(items) != count or any((i.get("status") or {}).get("outcome") == "Pending" for i in items):
            return None
        return {i["spec"]["pod"]["name"]: i["metadata"]["name"] for i in items}

    return await wait_for(probe, timeout=30, what=f"{count} records settled")


async def test_kubectl_habits(cluster: Cluster, operator: Operator, control_plane: ControlPlane) -> None:
    kubeconfig = control_plane.kubeconfig_path
    ns = cluster.namespace
    node = await cluster.create_node()
    labels = {
        "web-0": {"app": "web", "tier": "front"},
        "web-1": {"app": "web", "tier": "back"},
        "db-0": {"app": "db"},
    }
    for name, pod_labels in labels.items():
        await cluster.create_pod(name, labels=pod_labels, node=node, ready=True)
    await cluster.create_pdb("db", {"app": "db"}, min_available=0)
    assert (await cli("evict", f"{ns}/web-0", kubeconfig=kubeconfig))[0] == 0  # NS/POD
    assert (await cli("evict", "web-1", "-n", ns, kubeconfig=kubeconfig))[0] == 0
    assert (await cli("evict", f"{ns}/db-0", "--context", "admin", kubeconfig=kubeconfig))[0] == 0
    code, _, err = await cli("evict", f"{ns}/wbe-0", kubeconfig=kubeconfig)  # a typo
    assert code == 1 and "not found" in one_line(err)
    names = await settled_names(cluster, kubeconfig, 4)

    # The typo's PodGone record stays out of the way unless asked for.
    code, out, _ = await cli("get", "-n", ns, kubeconfig=kubeconfig)
    assert sorted(line.split()[1] for line in out.splitlines()[1:]) == ["db-0", "web-0", "web-1"]
    code, out, _ = await cli("get", "-n", ns, "--outcome", "PodGone", "--no-headers", kubeconfig=kubeconfig)
    assert [line.split()[1] for line in out.splitlines()] == ["wbe-0"]

    async def pods(*args: str) -> list[str]:
        code, out, err = await cli("get", "-n", ns, "--no-headers", *args, kubeconfig=kubeconfig)
        assert code == 0, err
        return [line.split()[1] for line in out.splitlines()]

    assert sorted(await pods("-l", "app=web")) == ["web-0", "web-1"]
    assert await pods("-l", "app=web,tier!=front") == ["web-1"]
    assert await pods("-l", "app in (db, cache)") == ["db-0"]
    assert await pods("--sort-by", ".spec.pod.name") == ["db-0", "web-0", "web-1"]
    assert await pods("--sort-by", "{.spec.pod.name}", "--since", "1h30m") == ["db-0", "web-0", "web-1"]
    code, _, err = await cli("get", "-n", ns, "-l", "app in (db", kubeconfig=kubeconfig)
    assert code == 2 and "not a label selector" in err

    # Aligned columns: every row's OUTCOME starts where the header's does.
    code, out, _ = await cli("get", "-n", ns, "-o", "wide", kubeconfig=kubeconfig)
    lines = out.splitlines()
    column = lines[0].index("OUTCOME")
    assert all(line[column:].startswith("Evicted") for line in lines[1:]), out
    assert "EvictionByEvictionAPI" not in out  # the door is not a why

    code, out, _ = await cli("get", "-n", ns, "-o", "name", kubeconfig=kubeconfig)
    assert sorted(out.split()) == sorted(f"podeviction.evictwatch.io/{names[p]}" for p in labels)
    code, out, _ = await cli("get", "-n", ns, "-o", "yaml", kubeconfig=kubeconfig)
    assert "managedFields" not in out and len(yaml.safe_load(out)["items"]) == 3

    # describe: NS/POD, POD -n NS, the record's name, and what -o name printed.
    for target in (
        ["describe", f"{ns}/web-1"],
        ["describe", "web-1", "-n", ns],
        ["describe", names["web-1"], "-n", ns],
    ):
        code, out, err = await cli(*target, kubeconfig=kubeconfig)
        assert code == 0 and f"Name:          {names['web-1']}" in out, (target, err)
    code, out, _ = await cli(
        "describe", f"podeviction.evictwatch.io/{names['db-0']}", "-n", ns, kubeconfig=kubeconfig
    )
    assert code == 0 and "Pod:           db-0" in out
    assert "ago (" in out and re.search(
        r"PDB: +db: \d+ healthy, 0 required, \d+ disruptions? allowed", out
    ), out
    assert re.search(r"Delivered \(Evicted\) after 1 try, \d+s ago", out), out
    assert "Why:" not in out  # nothing but the door's own DisruptionTarget reason was known

    code, out, _ = await cli("watch", "-n", ns, "-o", "json", "--timeout", "3", kubeconfig=kubeconfig)
    objects = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and sorted(o["spec"]["pod"]["name"] for o in objects) == ["db-0", "web-0", "web-1"]
    assert all("managedFields" not in o["metadata"] for o in objects)

    code, out, _ = await cli("version", kubeconfig=kubeconfig)
    assert code == 0 and out.splitlines()[0].startswith("Client:    evictwatch 0.1.0")
    assert "Operator:  0.1.0 (webhook configuration" in out and "Server:    Kubernetes v1.37.2" in out
    code, out, _ = await cli("completion", "bash", kubeconfig=None)
    assert code == 0 and "_EVICTWATCH_COMPLETE=bash_complete" in out


async def test_get_watch_follows_the_list(
    cluster: Cluster, operator: Operator, control_plane: ControlPlane
) -> None:
    ns = cluster.namespace
    node = await cluster.create_node()
    for name in ("early", "late"):
        await cluster.create_pod(name, node=node, ready=True)
    assert (await cluster.evict("early")).status == 201
    await settled_names(cluster, control_plane.kubeconfig_path, 1)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "evictwatch.cli",
        "get",
        "-w",
        "-n",
        ns,
        env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig_path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    seen = [await asyncio.wait_for(process.stdout.readline(), 30) for _ in range(2)]
    assert seen[0].split()[0] == b"NAMESPACE" and seen[1].split()[1] == b"early"
    assert (await cluster.evict("late")).status == 201
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line.split()[2] == b"late"  # TIME first, then the columns of the list
    process.send_signal(signal.SIGINT)
    await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130


async def test_explain_and_default_columns(cluster: Cluster) -> None:
    """What kubectl explain pev and kubectl get pev read: the published schema and the Table."""
    async with cluster.http() as http:
        openapi = (await http.get("/openapi/v3/apis/evictwatch.io/v1alpha1")).json()
        table = (
            await http.get(
                f"/apis/evictwatch.io/v1alpha1/namespaces/{cluster.namespace}/podevictions",
                headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
            )
        ).json()
    schema = openapi["components"]["schemas"]["io.evictwatch.v1alpha1.PodEviction"]
    spec = schema["properties"]["spec"]
    assert "who asked first" in spec["properties"]["requester"]["description"]
    assert "every distinct requester" in spec["properties"]["requesters"]["description"]
    assert "EvictedByKubelet" in schema["properties"]["status"]["properties"]["outcome"]["description"]
    default_columns = [c["name"] for c in table["columnDefinitions"] if c.get("priority", 0) == 0]
    assert "Attempts" in default_columns


# Every command that reads the cluster, with what each needs to get that far.
CLUSTER_COMMANDS = (
    ("get",),
    ("get", "-w"),
    ("describe", "demo/web-0"),
    ("watch", "-A"),
    ("evict", "demo/web-0"),
    ("version",),
)


def one_line(err: str) -> str:
    """The whole of stderr, which must be one line starting with 'error: '."""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    return err


def point_at(kubeconfig: Path, server: str, out: Path) -> Path:
    """A copy of a kubeconfig whose cluster is at ``server`` instead."""
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = server
    out.write_text(yaml.safe_dump(config))
    return out


async def test_no_kubeconfig_is_a_configuration_error(tmp_path: Path) -> None:
    for command in CLUSTER_COMMANDS:
        code, _, err = await cli(*command, kubeconfig=None)
        assert code == 2, (command, err)
        assert "no Kubernetes configuration found" in one_line(err) and "KUBECONFIG" in err
    missing = tmp_path / "nowhere" / "config"
    for command in CLUSTER_COMMANDS:
        code, _, err = await cli(*command, kubeconfig=missing)
        assert code == 2 and f"KUBECONFIG names {missing}, which does not exist" in one_line(err), command
    code, _, err = await cli("get", "--kubeconfig", str(missing), kubeconfig=None)
    assert code == 2 and f"--kubeconfig {missing}: no such file" in one_line(err)


async def test_unknown_context_names_the_known_ones(control_plane: ControlPlane) -> None:
    code, _, err = await cli("get", "--context", "prod", kubeconfig=control_plane.kubeconfig_path)
    assert code == 2 and "has no context 'prod' (it has: admin)" in one_line(err)


async def test_stopped_server_is_named_with_what_to_do(control_plane: ControlPlane, tmp_path: Path) -> None:
    server = f"https://127.0.0.1:{free_port()}"  # nothing listens there: a stopped API server
    kubeconfig = point_at(control_plane.kubeconfig_path, server, tmp_path / "stopped.kubeconfig")
    results = await asyncio.gather(*(cli(*command, kubeconfig=kubeconfig) for command in CLUSTER_COMMANDS))
    for command, (code, out, err) in zip(CLUSTER_COMMANDS, results, strict=True):
        assert code == 3, (command, err)
        line = one_line(err)
        assert f"cannot reach the API server at {server}" in line and "is the cluster running?" in line, (
            command
        )
        assert str(kubeconfig) in line
        if command[0] != "version":
            assert out == "", command  # no header line before the error


async def test_no_permission_is_one_line_for_every_command(
    cluster: Cluster, control_plane: ControlPlane
) -> None:
    token = await cluster.service_account_token("reader-without-rights")
    kubeconfig = control_plane.kubeconfig_for_token(token, "no-rights")
    commands = [
        ("get", "-n", cluster.namespace),
        ("get", "-w", "-n", cluster.namespace),
        ("describe", f"{cluster.namespace}/web-0"),
        ("watch", "-n", cluster.namespace),
    ]
    results = await asyncio.gather(*(cli(*command, kubeconfig=kubeconfig) for command in commands))
    for command, (code, out, err) in zip(commands, results, strict=True):
        assert code == 3 and out == "", (command, err)
        line = one_line(err)
        assert (
            "no permission to" in line and "podevictions.evictwatch.io" in line and control_plane.url in line
        )
    code, _, err = await cli("evict", f"{cluster.namespace}/web-0", kubeconfig=kubeconfig)
    assert code == 3 and "no permission to evict pod/web-0" in one_line(err) and "pods/eviction" in err
    code, out, err = await cli("version", kubeconfig=kubeconfig)
    assert code == 0 and "Operator:  unknown (no permission to list validatingwebhookconfigurations" in out


async def test_config_error_in_run(control_plane: ControlPlane, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("webhook:\n  timeoutSeconds: 99\n")
    code, _, err = await cli("run", "--config", str(bad), kubeconfig=control_plane.kubeconfig_path)
    assert code == 2 and "webhook.timeoutSeconds" in err


async def test_crd_not_installed_is_explained(control_plane: ControlPlane) -> None:
    commands = [("get", "-A"), ("get", "-w"), ("describe", "default/web-0"), ("watch", "-A")]
    with ControlPlane(binaries=control_plane.binaries, audit_log=False) as bare:
        results = await asyncio.gather(*(cli(*c, kubeconfig=bare.kubeconfig_path) for c in commands))
        version = await cli("version", kubeconfig=bare.kubeconfig_path)
    for command, (code, _, err) in zip(commands, results, strict=True):
        assert code == 3, (command, err)
        line = one_line(err)
        assert f"the API server at {bare.url}" in line and "has no PodEviction CRD" in line, command
        assert "install the Helm chart" in line
    code, out, _ = version
    assert code == 0 and "Operator:  not installed" in out and "Server:    Kubernetes v1.37" in out


async def test_watch_gives_up_when_the_server_goes_and_exits_130_on_ctrl_c(
    cluster: Cluster, control_plane: ControlPlane, tmp_path: Path
) -> None:
    api = JsonApi(cluster.client)
    await ensure_crd(api)  # when this test runs alone, no operator has installed it
    await api.close()
    host, port = control_plane.url.removeprefix("https://").rsplit(":", 1)
    proxy = await TcpProxy([(host, int(port))]).start()
    kubeconfig = point_at(
        control_plane.kubeconfig_path, f"https://127.0.0.1:{proxy.port}", tmp_path / "p.yaml"
    )
    watching = asyncio.create_task(cli("watch", "-n", cluster.namespace, kubeconfig=kubeconfig, timeout=90))
    await asyncio.sleep(4)  # listed, and watching through the proxy
    await proxy.stop()  # the server goes away mid-stream, and stays away
    code, out, err = await watching
    assert out.split() == ["TIME", *views.COLUMNS], (code, out, err)
    assert code == 3 and "cannot reach the API server at https://127.0.0.1:" in one_line(err)

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "evictwatch.cli",
        "watch",
        "-n",
        cluster.namespace,
        env={**os.environ, "KUBECONFIG": str(control_plane.kubeconfig_path)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    header = await asyncio.wait_for(process.stdout.readline(), 30)
    assert header.split()[0] == b"TIME"
    process.send_signal(signal.SIGINT)
    _, err_bytes = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130 and b"Traceback" not in err_bytes


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
