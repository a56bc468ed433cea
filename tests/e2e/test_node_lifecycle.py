"""The real node starts, runs a Pod, and leaves the host as it found it, also after SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from evictwatch.testing.cluster import Cluster
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.node import RealNode, why_no_real_node
from evictwatch.testing.node_host import HostSnapshot
from evictwatch.testing.node_pods import create_pod, pod_spec, wait_running


def test_a_machine_without_root_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure names the reason; not being root is one."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert why_no_real_node() == (
        "a real node needs root (the kubelet makes cgroups and containerd mounts filesystems)"
    )


@pytest.fixture
def needs_a_real_node() -> None:
    reason = why_no_real_node()
    if reason is not None:
        # No skip: scripts/test.sh installs and builds what a real node needs (run it as root).
        pytest.fail(f"these tests need a real node, but {reason}")


@pytest.mark.usefixtures("needs_a_real_node")
async def test_a_running_pod_changes_the_host_and_stop_undoes_it(
    control_plane: ControlPlane, cluster: Cluster
) -> None:
    before = HostSnapshot()
    node = RealNode(control_plane)
    await asyncio.to_thread(node.start)
    try:
        print(f"node Ready in {node.started_seconds:.1f} s, kubelet {node.kubelet_version()}")
        await create_pod(cluster.client, "web", cluster.namespace, pod_spec(node.name))
        await wait_running(cluster.client, cluster.namespace, count=1)
        changed = before.differences()
        # What a running Pod does to the host, seen by the same check that proves it undone.
        assert any(line.startswith("cgroup ") for line in changed), changed
        assert any(line.startswith("network link ewnode0") for line in changed), changed
        assert any(line.startswith("mount ") for line in changed), changed
        assert any(line.startswith("path /run/containerd") for line in changed), changed
    finally:
        began = time.monotonic()
        left = await asyncio.to_thread(node.stop)
        print(f"node stopped and host restored in {time.monotonic() - began:.1f} s")
    assert left == []
    assert before.differences() == []


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from evictwatch.testing.controlplane import ControlPlane
    from evictwatch.testing.node import RealNode
    with ControlPlane(workdir=Path(sys.argv[1])) as cp:
        node = RealNode(cp)
        try:
            node.start()
            print("ready", flush=True)
            time.sleep(120)
        finally:
            left = node.stop()
            print("left", left, flush=True)
    """
)


@pytest.mark.usefixtures("needs_a_real_node")
async def test_sigterm_stops_the_node_and_restores_the_host(tmp_path: Path) -> None:
    before = HostSnapshot()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(tmp_path / "cp"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(child.stdout.readline(), 180)).decode()
            lines.append(line)
            if line.strip() == "ready" or not line:
                break
        assert lines[-1].strip() == "ready", "".join(lines[-40:])
        assert before.differences() != []  # the node changed the host (sysctls, /run/containerd...)
        child.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(child.stdout.read(), 60)).decode()
        await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert "left []" in rest, rest[-3000:]
    assert before.differences() == []


@pytest.mark.usefixtures("needs_a_real_node")
async def test_a_node_killed_outright_is_cleaned_up_by_the_next(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """SIGKILL gives a node no chance to clean up; the next node finds its state file and does."""
    before = HostSnapshot()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(tmp_path / "cp"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert child.stdout is not None
    try:
        line = ""
        while line.strip() != "ready":
            line = (await asyncio.wait_for(child.stdout.readline(), 180)).decode()
            assert line, "the child exited before its node was ready"
    finally:
        child.kill()
        await child.wait()
    assert before.differences() != []  # what the killed node left: sysctls, /run/containerd, ...
    node = RealNode(control_plane)
    await asyncio.to_thread(node.start)
    try:
        assert node.recovered, "the next node found nothing to undo"
        assert any(line.startswith("sysctl ") for line in node.recovered), node.recovered
    finally:
        left = await asyncio.to_thread(node.stop)
    assert left == []
    assert before.differences() == []
