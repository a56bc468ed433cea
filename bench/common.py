"""Shared plumbing of the benchmarks: the cluster, the operator process, sampling, statistics, output.

Every benchmark runs against a real control plane: the one it is given (a
:class:`evictwatch.testing.controlplane.ControlPlane` object, or ``--kubeconfig`` of one that is
already running, e.g. ``evictwatch control-plane --kubeconfig-out /tmp/kc``), or one it starts
itself. Where a benchmark needs the operator's memory or CPU, the operator runs as a separate
process exactly as deployed (``python -m evictwatch.cli run ...``) and is sampled through
``/proc/<pid>``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import datetime
import json
import math
import os
import platform
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import yaml
from prometheus_client.parser import text_string_to_metric_families

from evictwatch.testing.controlplane import ControlPlane, free_port

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
FIXTURES = REPO / "tests" / "fixtures" / "admission-reviews"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BENCH_LABEL = "evictwatch.io/bench"


# ---- the cluster --------------------------------------------------------------------------------
@dataclass
class Target:
    """Where the benchmarks send their requests: the API server URL and admin credentials."""

    url: str
    kubeconfig_path: Path
    context: ssl.SSLContext
    control_plane: ControlPlane | None = None
    token: str | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def from_control_plane(cls, cp: ControlPlane) -> Target:
        return cls(cp.url, cp.kubeconfig_path, cp.ssl_context(), cp)

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> Target:
        """A kubeconfig with embedded certificate data (as ``evictwatch control-plane`` writes)."""
        doc = yaml.safe_load(Path(path).read_text())
        current = doc.get("current-context")
        ctx = next(
            (c["context"] for c in doc["contexts"] if c["name"] == current), doc["contexts"][0]["context"]
        )
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        tmp = tempfile.TemporaryDirectory(prefix="evictwatch-bench-kc-")
        folder = Path(tmp.name)
        ca = base64.b64decode(cluster["certificate-authority-data"])
        context = ssl.create_default_context(cadata=ca.decode())
        if "client-certificate-data" in user:
            (folder / "tls.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
            (folder / "tls.key").write_bytes(base64.b64decode(user["client-key-data"]))
            context.load_cert_chain(str(folder / "tls.crt"), str(folder / "tls.key"))
        target = cls(cluster["server"], Path(path), context, None, tmp)
        if "token" in user:
            target.token = user["token"]
        return target

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def version(self) -> dict[str, Any]:
        with httpx2.Client(verify=self.context, headers=self.headers(), timeout=10) as http:
            data: dict[str, Any] = http.get(f"{self.url}/version").json()
            return data

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


@contextlib.contextmanager
def target_from(kubeconfig: str | None) -> Iterator[Target]:
    """The cluster of ``kubeconfig``, or a fresh local control plane (stopped on the way out)."""
    if kubeconfig:
        target = Target.from_kubeconfig(kubeconfig)
        try:
            yield target
        finally:
            target.close()
        return
    print("starting a local control plane (etcd, kube-apiserver, kube-controller-manager) ...", flush=True)
    cp = ControlPlane(with_controller_manager=True).start()
    try:
        yield Target.from_control_plane(cp)
    finally:
        cp.stop()


class ApiError(RuntimeError):
    pass


class Api:
    """A raw JSON client of the API server (no model decoding: the benchmark's own CPU stays small)."""

    def __init__(self, target: Target, *, connections: int = 50, timeout: float = 60.0) -> None:
        self.target = target
        self.http = httpx2.AsyncClient(
            base_url=target.url,
            verify=target.context,
            headers=target.headers(),
            timeout=timeout,
            limits=httpx2.Limits(max_connections=connections, max_keepalive_connections=connections),
            trust_env=False,
        )

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        ok: Iterable[int] = (200, 201, 202),
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any]]:
        content = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else {}
        reply = await self.http.request(method, path, content=content, params=params, headers=headers)
        try:
            data = reply.json()
        except ValueError:
            data = {"raw": reply.text}
        if reply.status_code not in set(ok):
            raise ApiError(f"{method} {path}: {reply.status_code} {data.get('message', data)}")
        return reply.status_code, data

    async def get(self, path: str, **kw: Any) -> dict[str, Any] | None:
        status, data = await self.call("GET", path, ok=(200, 404), **kw)
        return data if status == 200 else None

    async def list_all(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query = {**(params or {}), "limit": 500}
        while True:
            _, data = await self.call("GET", path, params=query)
            items.extend(data.get("items") or [])
            token = (data.get("metadata") or {}).get("continue")
            if not token:
                return items
            query["continue"] = token

    async def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        meta = {"name": name, "labels": {BENCH_LABEL: "true", **(labels or {})}}
        await self.call(
            "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
        )
        # Pod admission needs the default ServiceAccount; kube-controller-manager makes it a moment later.
        await self.call(
            "POST",
            f"/api/v1/namespaces/{name}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
            ok=(201, 409),
        )
        return name

    async def delete_namespace(self, name: str, *, force_pods: bool = True) -> None:
        """Force-delete its Pods first (bound Pods with no kubelet would otherwise stay Terminating)."""
        if force_pods:
            await self.call(
                "DELETE", f"/api/v1/namespaces/{name}/pods", params={"gracePeriodSeconds": 0}, ok=(200, 404)
            )
        await self.call("DELETE", f"/api/v1/namespaces/{name}", ok=(200, 202, 404))

    async def wait_bench_namespaces_gone(self, keep: Iterable[str] = (), timeout: float = 600.0) -> float:
        """Wait until earlier runs' namespaces (and their Pods, records, Events) are deleted.

        A namespace being deleted still streams Pod and Event changes to the watchers, which
        would be measured as this run's cost. Returns the seconds waited.
        """
        keep = set(keep)
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            left = [
                n["metadata"]["name"]
                for n in await self.list_all("/api/v1/namespaces", {"labelSelector": BENCH_LABEL})
                if n["metadata"]["name"] not in keep
            ]
            if not left:
                break
            await asyncio.sleep(2.0)
        return time.perf_counter() - started

    async def create_node(self, name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {BENCH_LABEL: "true"}},
        }
        await self.call("POST", "/api/v1/nodes", body, ok=(201, 409))

    async def delete_node(self, name: str) -> None:
        await self.call("DELETE", f"/api/v1/nodes/{name}", ok=(200, 404))

    async def create_pod(
        self,
        namespace: str,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        node: str | None = None,
        ready: bool = False,
    ) -> dict[str, Any]:
        """A small Pod: Pending unless bound to ``node``; ``ready`` patches it Running and Ready."""
        spec: dict[str, Any] = {
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
            "terminationGracePeriodSeconds": 30,
        }
        if node:
            spec["nodeName"] = node
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": spec,
        }
        _, pod = await self.call("POST", f"/api/v1/namespaces/{namespace}/pods", body)
        if ready:
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            status = {
                "status": {
                    "phase": "Running",
                    "conditions": [
                        {"type": t, "status": "True", "lastTransitionTime": now}
                        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                    ],
                }
            }
            _, pod = await self.call(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                status,
                content_type="application/merge-patch+json",
            )
        return pod

    async def evict(self, namespace: str, name: str, *, dry_run: bool = False) -> tuple[int, dict[str, Any]]:
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        return await self.call(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods/{name}/eviction",
            body,
            params={"dryRun": "All"} if dry_run else None,
            ok=range(100, 600),
        )

    async def records(self, namespace: str) -> list[dict[str, Any]]:
        return await self.list_all(f"/apis/evictwatch.io/v1alpha1/namespaces/{namespace}/podevictions")


async def gather_limited(concurrency: int, jobs: Iterable[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the jobs with at most ``concurrency`` at a time; results in order."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


async def create_pods(
    api: Api,
    namespace: str,
    names: Sequence[str],
    *,
    concurrency: int = 50,
    labels: Callable[[int], dict[str, str]] | None = None,
    node: Callable[[int], str | None] | None = None,
    ready: bool = False,
    progress: bool = False,
) -> float:
    """Create the Pods ``concurrency`` at a time; returns the Pods per second."""
    started = time.perf_counter()
    done = 0

    async def make(index: int, name: str) -> None:
        nonlocal done
        await api.create_pod(
            namespace,
            name,
            labels=labels(index) if labels else None,
            node=node(index) if node else None,
            ready=ready,
        )
        done += 1
        if progress and done % 5000 == 0:
            print(f"  {done}/{len(names)} Pods in {time.perf_counter() - started:.0f} s", flush=True)

    await gather_limited(concurrency, (lambda i=i, n=n: make(i, n) for i, n in enumerate(names)))
    elapsed = time.perf_counter() - started
    return len(names) / elapsed if elapsed > 0 else 0.0


def short_id() -> str:
    return uuid.uuid4().hex[:6]


# ---- the operator as a process ------------------------------------------------------------------
def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def child_setup(cpus: set[int] | None) -> Callable[[], None]:
    """What a benchmark's child does between fork and exec: die with us, and keep to ``cpus``."""

    def setup() -> None:  # pragma: no cover - runs in the child
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


def pin_control_plane(target: Target, cpus: set[int]) -> bool:
    """Every thread of etcd, kube-apiserver and kube-controller-manager onto ``cpus`` (taskset)."""
    cp = target.control_plane
    if cp is None or not shutil.which("taskset"):
        return False
    cpu_list = ",".join(str(c) for c in sorted(cpus))
    for component in cp._components.values():
        subprocess.run(
            ["taskset", "-a", "-cp", cpu_list, str(component.process.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return True


def audit_position(target: Target) -> int:
    """How many audit events the API server has written so far (0 without an audit log)."""
    cp = target.control_plane
    if cp is None or not cp.audit_log_path.exists():
        return 0
    with cp.audit_log_path.open("rb") as log:
        return sum(1 for _ in log)


def audit_calls(target: Target, since: int, agent: str) -> dict[str, int]:
    """Completed requests since audit event ``since`` whose User-Agent starts with ``agent``, as
    {"verb resource[/subresource]": count} (a refused call gets its code: "create events (409)");
    watches are left out (one long request per kind)."""
    cp = target.control_plane
    counted: dict[str, int] = {}
    if cp is None:
        return counted
    with cp.audit_log_path.open() as log:
        for index, line in enumerate(log):
            if index < since:
                continue
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete" or event.get("verb") == "watch":
                continue
            if not str(event.get("userAgent", "")).startswith(agent):
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            code = int((event.get("responseStatus") or {}).get("code") or 0)
            key = f"{event.get('verb')} {resource}" + ("" if 200 <= code < 300 else f" ({code})")
            counted[key] = counted.get(key, 0) + 1
    return dict(sorted(counted.items()))


async def apiserver_requests(api: Api) -> dict[str, float]:
    """``apiserver_request_total`` summed by "verb resource[/subresource]" (every client)."""
    reply = await api.http.get("/metrics")
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(reply.text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = sample.labels
            if labels.get("verb") == "WATCH":
                continue
            sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
            key = f"{labels.get('verb', '').lower()} {labels.get('resource', '')}{sub}"
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def request_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    return {k: int(v - before.get(k, 0.0)) for k, v in sorted(after.items()) if v - before.get(k, 0.0) > 0}


def operator_config(run_id: str, **overrides: Any) -> dict[str, Any]:
    """Settings of a benchmark's operator: its own webhook configuration name, Lease namespace and
    a namespaceSelector so it only sees the namespaces of this run (labelled ``evictwatch.io/bench-run``).
    """
    config: dict[str, Any] = {
        "webhook": {
            "host": "127.0.0.1",
            "configurationName": f"evictwatch-bench-{run_id}",
            "namespaceSelector": {"matchLabels": {"evictwatch.io/bench-run": run_id}},
        },
        "self": {"namespace": f"ewb-{run_id}-self"},
        "logFormat": "json",
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


@dataclass
class OperatorProcess:
    """``python -m evictwatch.cli run --self-signed ...`` as a child process of the benchmark."""

    target: Target
    config: dict[str, Any]
    record_key: str = "evictwatch-bench-record-key"
    profile: str | None = None
    """Write a cProfile of the whole operator process here (``python -m cProfile -o``)."""
    cpus: set[int] | None = None
    """Run it on these CPUs only (its own node, as in a cluster)."""
    identity: str = ""
    """Its identity (``POD_NAME``): also in the User-Agent of every API call it makes."""
    process: subprocess.Popen[bytes] | None = None
    webhook_url: str = ""
    ca_pem: bytes = b""
    metrics_port: int = 0
    started_seconds: float = 0.0
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    _log: Any = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log_path(self) -> Path:
        assert self._tmp is not None
        return Path(self._tmp.name) / "operator.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _spawn(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="evictwatch-bench-op-")
        config_path = Path(self._tmp.name) / "config.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        self.metrics_port = free_port()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop
        env = {**os.environ, "EVICTWATCH_RECORD_KEY": self.record_key}
        if self.identity:
            env["POD_NAME"] = self.identity
        self.process = subprocess.Popen(
            [
                sys.executable,
                *(["-m", "cProfile", "-o", self.profile] if self.profile else []),
                "-m",
                "evictwatch.cli",
                "run",
                "--self-signed",
                "--kubeconfig",
                str(self.target.kubeconfig_path),
                "--port",
                "0",
                "--metrics-port",
                str(self.metrics_port),
                "--config",
                str(config_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=child_setup(self.cpus),
        )

    async def start(self, api: Api, timeout: float = 60.0) -> OperatorProcess:
        started = time.perf_counter()
        self._spawn()
        assert self.process is not None
        name = self.config["webhook"]["configurationName"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
            vwc = await api.get(
                f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}"
            )
            if vwc:
                client_config = vwc["webhooks"][0]["clientConfig"]
                self.webhook_url = client_config["url"]
                self.ca_pem = base64.b64decode(client_config["caBundle"])
                self.started_seconds = time.perf_counter() - started
                return self
            await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(
            f"the operator did not register its webhook within {timeout:.0f} s:\n{self.log_tail()}"
        )

    async def wait_leading(self, api: Api, timeout: float = 60.0) -> None:
        """Wait until it holds its Lease, i.e. runs the controller and the watchers."""
        namespace = self.config["self"]["namespace"]
        lease = ((self.config.get("controller") or {}).get("leaderElection") or {}).get(
            "leaseName", "evictwatch-controller"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = await api.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{lease}")
            if data and (data.get("spec") or {}).get("holderIdentity"):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the operator did not take its Lease within {timeout:.0f} s:\n{self.log_tail()}")

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The operator's /metrics as {(sample name, sorted labels): value}."""
        async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
            text = (await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    async def stop(self, api: Api | None = None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            while self.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if api is not None:  # a killed process leaves its configuration behind
            name = self.config["webhook"]["configurationName"]
            await api.call(
                "DELETE",
                f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}",
                ok=(200, 404),
            )
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def metric_sum(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for (sample, sample_labels), value in samples.items():
        if sample == name and all((k, v) in sample_labels for k, v in labels.items()):
            total += value
    return total


# ---- /proc sampling -----------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the process, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def proc_rss_mb(pid: int) -> float:
    return proc_status_kb(pid, "VmRSS") / 1024


def proc_hwm_mb(pid: int) -> float:
    return proc_status_kb(pid, "VmHWM") / 1024


@dataclass
class Sampler:
    """Samples RSS and CPU time of a process every ``interval`` seconds in the background."""

    pid: int
    interval: float = 0.5
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (time, rss MB, cpu s)
    _task: asyncio.Task[None] | None = None

    def sample(self) -> tuple[float, float, float]:
        point = (time.perf_counter(), proc_rss_mb(self.pid), proc_cpu_seconds(self.pid))
        self.samples.append(point)
        return point

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> Sampler:
        self.samples.clear()
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()
        return self.summary()

    def summary(self) -> dict[str, float]:
        if len(self.samples) < 2:
            return {}
        (t0, _, c0), (t1, _, c1) = self.samples[0], self.samples[-1]
        rss = [s[1] for s in self.samples]
        return {
            "seconds": round(t1 - t0, 2),
            "cpu_seconds": round(c1 - c0, 3),
            "cpu_percent": round(100 * (c1 - c0) / (t1 - t0), 2) if t1 > t0 else 0.0,
            "rss_mb_mean": round(sum(rss) / len(rss), 1),
            "rss_mb_max": round(max(rss), 1),
            "rss_mb_last": round(rss[-1], 1),
        }


async def wait_quiet(pid: int, *, window: float = 3.0, below: float = 0.03, timeout: float = 300.0) -> float:
    """Wait until the process used less than ``below`` of a core over the last ``window`` seconds.

    Returns the seconds waited.
    """
    started = time.perf_counter()
    last_t, last_cpu = started, proc_cpu_seconds(pid)
    while time.perf_counter() - started < timeout:
        await asyncio.sleep(window)
        now, cpu = time.perf_counter(), proc_cpu_seconds(pid)
        if (cpu - last_cpu) / (now - last_t) < below:
            return now - started
        last_t, last_cpu = now, cpu
    return time.perf_counter() - started


# ---- statistics ---------------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """n, mean and p50/p90/p99/max of durations given in seconds, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "mean_ms": round(sum(ms) / len(ms), 3),
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
    }


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares ``y = slope * x + intercept``; returns (slope, intercept, r squared)."""
    n = len(xs)
    if n < 2:
        return math.nan, math.nan, math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    syy = sum((y - my) ** 2 for y in ys)
    slope = sxy / sxx if sxx else math.nan
    intercept = my - slope * mx
    r2 = (sxy * sxy) / (sxx * syy) if sxx and syy else math.nan
    return slope, intercept, r2


# ---- output -------------------------------------------------------------------------------------
def machine_info(target: Target) -> dict[str, Any]:
    try:
        kube_version = target.version().get("gitVersion", "")
    except (httpx2.HTTPError, OSError, ValueError):
        kube_version = ""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total = 0
    with contextlib.suppress(OSError, ValueError):
        mem_total = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if commit and changed:
            commit += " (src/ has uncommitted changes)"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_mb": mem_total,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kubernetes": kube_version,
        "evictwatch_commit": commit,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_result(name: str, data: dict[str, Any], results_dir: str | Path | None = None) -> Path:
    folder = Path(results_dir) if results_dir else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    print(f"wrote {path}", flush=True)
    return path


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = [title, "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells)
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--kubeconfig", help="an already running control plane (default: start one)")
    p.add_argument("--results-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    p.add_argument(
        "--quick", action="store_true", help="small sizes: a check that it runs, not a measurement"
    )
    return p


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the control plane, operator and namespaces are cleaned up."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main_with(run: Callable[..., Awaitable[dict[str, Any]]], args: argparse.Namespace, **params: Any) -> None:
    stop_on_sigterm()
    with target_from(args.kubeconfig) as target:
        asyncio.run(run(target, results_dir=args.results_dir, **params))


def nproc_note() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load {load}"
