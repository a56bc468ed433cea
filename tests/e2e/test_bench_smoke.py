"""The benchmarks run: each at a tiny size on the session control plane, into a temporary folder.

Only shape and sanity are checked here (keys, counts, completeness); never timings, which belong
to ``bench/README.md`` and depend on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evictwatch.testing.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `python -m pytest` from the repo root has it already; plain `pytest` not
    sys.path.insert(0, str(REPO))

from bench import added_latency, storm, watch_cost, webhook  # noqa: E402
from bench.common import Target  # noqa: E402

MACHINE_KEYS = {"nproc", "python", "kubernetes", "date", "load_average", "memory_mb"}


@pytest.fixture(scope="module")
def target(control_plane: ControlPlane) -> Target:
    return Target.from_control_plane(control_plane)


def load(folder: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / f"{name}.json").read_text())
    assert data["benchmark"] == name
    assert set(data["machine"]) >= MACHINE_KEYS
    assert data["machine"]["kubernetes"].startswith("v1.")
    assert data["machine"]["nproc"] >= 1
    return data


def sane_latency(stats: dict[str, Any], n: int) -> None:
    assert stats["n"] == n
    assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]


async def test_webhook_bench(target: Target, tmp_path: Path) -> None:
    await webhook.run(target, results_dir=tmp_path, requests=20, concurrency=(1, 4), warmup=4)
    data = load(tmp_path, "webhook")
    rows = data["results"]
    assert [(r["mode"], r["concurrency"]) for r in rows] == [
        (mode, level) for level in (1, 4) for mode in ("recorded", "repeat", "dry_run")
    ]
    for row in rows:
        assert row["requests"] == 20 and row["errors"] == {}, row
        sane_latency(row, 20)
        assert row["rps"] > 0 and row["rss_mb"] > 0 and row["cpu_ms_per_request"] >= 0
    completeness = data["completeness"]
    assert completeness["complete"], completeness
    assert completeness["records"] == completeness["pods_recorded_expected"] == 44
    assert completeness["attempts_in_records"] == completeness["attempts_sent"] == 84
    assert completeness["decisions"]["lost"] == 0
    assert completeness["decisions"]["dry_run"] == 44
    assert data["operator"]["rss_mb_start"] > 0


async def test_added_latency_bench(target: Target, tmp_path: Path) -> None:
    # Not pinned: the control plane is the test session's, shared with the other tests.
    await added_latency.run(target, results_dir=tmp_path, pairs=10, warmup=2, pin=False)
    data = load(tmp_path, "added_latency")
    for series in ("installed", "webhook_only", "minimal", "off"):
        sane_latency(data["series"][series]["latency"], 10)
    assert set(data["statuses"]) == {"201"}
    assert data["installed_records"] == {"count": 12, "outcomes": {"Evicted": 12}, "expected": 12}
    calls = data["api_calls_per_eviction"]
    # Pods without owners: the record's create, one status write, one Event on the Pod (and the
    # Lease's renewals, every 5 s whatever the load).
    per_eviction = {k: v for k, v in calls["installed"]["by_call"].items() if not k.endswith(" leases")}
    assert per_eviction == {
        "create events": 1.0,
        "create podevictions": 1.0,
        "update podevictions/status": 1.0,
    }, calls
    assert calls["webhook_only"]["by_call"] == calls["minimal"]["by_call"] == {"create podevictions": 1.0}
    minimal = data["series"]["minimal"]["added_p50_ms"]
    assert data["added_over_minimal_recorder"]["installed"] == round(
        data["series"]["installed"]["added_p50_ms"] / minimal, 3
    )
    assert data["apiserver_request_total_over_the_run"]["post pods/eviction"] >= 40
    assert data["operator_cpu_ms_per_eviction"]["installed"] > 0


async def test_storm_bench(target: Target, tmp_path: Path) -> None:
    await storm.run(
        target,
        results_dir=tmp_path,
        pods=20,
        nodes=2,
        blocked_share=0.5,
        retry_interval=0.3,
        retries=2,
        blocked_after=1.0,
        settle_timeout=90,
    )
    data = load(tmp_path, "storm")
    results, completeness = data["results"], data["completeness"]
    assert results["statuses"] == {"201": 10, "429": 30}
    assert results["outcomes"] == results["expected_outcomes"] == {"Evicted": 10, "Blocked": 10}
    assert completeness["complete"] and completeness["percent"] == 100.0, completeness
    assert completeness["records"] == completeness["pods_attempted"] == 20
    assert completeness["attempts_in_records"] == completeness["attempts_reached_webhook"] == 40
    assert completeness["records_lost_metric"] == 0
    sane_latency(results["settle_latency"], 20)
    # A Blocked outcome waits blockedAfterSeconds after the last recorded attempt, by construction.
    # Both times are the operator's: the client's clock sees the answer later (by the API server's
    # PDB check), and a retry that comes after the Pod was called Blocked keeps the first
    # outcomeTime, so the client-side settle latency is no fit for this check.
    assert results["blocked_after_last_attempt_n"] >= 1
    assert results["blocked_after_last_attempt_min_ms"] >= 1000
    assert results["wall_seconds"] >= results["first_pass_seconds"] > 0
    assert data["operator"]["rss_mb_max"] > 0
    # The yardstick drained the same Pods: one bare record per attempt that reached it.
    assert data["minimal_recorder"]["records"] == 40
    assert data["minimal_recorder"]["wall_seconds"] > 0


async def test_watch_cost_bench(target: Target, tmp_path: Path) -> None:
    await watch_cost.run(target, results_dir=tmp_path, sizes=(50, 100), window=1.0)
    data = load(tmp_path, "watch_cost")
    rows = data["results"]
    assert len(rows) == 2
    assert rows[0]["pods_in_cluster"] >= 50 and rows[1]["pods_in_cluster"] >= rows[0]["pods_in_cluster"] + 50
    for row in rows:
        assert row["rss_mb"] > 0 and row["peak_rss_mb"] >= row["rss_mb_max_window"] > 0
        assert row["cpu_seconds_until_quiet"] > 0
    assert data["fit"]["rss_kb_per_pod"] is not None
    assert data["targets"]["rss_kb_per_pod_under"] == 1.0


def test_idle_bench_from_the_command_line(control_plane: ControlPlane, tmp_path: Path) -> None:
    """The documented command, pointed at the session's control plane."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.idle",
            "--kubeconfig",
            str(control_plane.kubeconfig_path),
            "--results-dir",
            str(tmp_path),
            "--seconds",
            "2",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "idle operator" in done.stdout
    data = load(tmp_path, "idle")
    results = data["results"]
    assert results["rss_mb_max"] >= results["rss_mb_mean"] > 0
    assert results["cpu_percent"] >= 0 and results["seconds"] >= 2
    assert data["targets"]["idle_rss_mb_under"] == 120.0
    assert isinstance(data["targets"]["met"], bool)
