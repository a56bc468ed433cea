"""``evictwatch run`` as a child process: start, wait until ready, stop, SIGKILL, restart.

The fault tests need what an in-process :class:`~evictwatch.operator.Operator` cannot give:
a process that dies at once (SIGKILL, no cleanup, no lease release), its own memory to
measure (``/proc/<pid>/status``), and its own log output to search. The settings are
written to a YAML file and passed with ``--config``, exactly as the Deployment does;
stdout and stderr go to files in the work folder, kept across restarts (appended), so a
test can read everything the operator ever printed.

Readiness is what a kubelet would probe: ``/readyz`` on the metrics port answers 200 (the
webhook is listening), and ``/metrics`` is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx2
import yaml
from prometheus_client.parser import text_string_to_metric_families

from . import pki
from .controlplane import free_port

_PR_SET_PDEATHSIG = 1


class OperatorProcessError(RuntimeError):
    """The child exited or did not become ready; the message carries the end of its log."""


@dataclass(frozen=True)
class WebhookCertificates:
    """A CA and a serving certificate it signed, as files (what cert-manager would mount)."""

    ca: pki.KeyPair
    ca_file: Path
    cert_file: Path
    key_file: Path

    def webhook_settings(self) -> dict[str, str]:
        """The ``webhook`` settings that serve with these files."""
        return {"certFile": str(self.cert_file), "keyFile": str(self.key_file)}


def webhook_certificates(
    folder: Path, host: str = "127.0.0.1", ca: pki.KeyPair | None = None
) -> WebhookCertificates:
    """Write ``ca.crt``, ``tls.crt`` and ``tls.key`` for serving on ``host`` (an IP or a DNS name)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = ca or pki.make_ca("evictwatch-test-webhook-ca")
    is_ip = host.replace(".", "").isdigit() or ":" in host
    serving = pki.issue(ca, host, dns_names=() if is_ip else (host,), ip_addresses=(host,) if is_ip else ())
    files = {"ca.crt": ca.cert_pem, "tls.crt": serving.cert_pem, "tls.key": serving.key_pem}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        (folder / name).chmod(0o600)
    return WebhookCertificates(ca, folder / "ca.crt", folder / "tls.crt", folder / "tls.key")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class OperatorProcess:
    """One replica as a child process.

    ``config`` is the settings document (as in the chart's ConfigMap); ``webhook.port`` and
    ``metricsPort`` are chosen here (free ports, fixed for the life of this object, so a
    restarted replica serves the same URL). ``env`` is added to this process's environment
    (``EVICTWATCH_RECORD_KEY``, sink secrets); ``name`` becomes ``POD_NAME``.
    """

    config: dict[str, Any]
    workdir: Path
    kubeconfig: Path
    name: str = "evictwatch-0"
    env: Mapping[str, str] = field(default_factory=dict)
    self_signed: bool = False
    install_crd: bool = True
    handler_files: Sequence[Path] = ()
    extra_args: Sequence[str] = ()
    webhook_port: int = 0
    metrics_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _out: IO[bytes] | None = None
    _err: IO[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.webhook_port = self.webhook_port or free_port()
        self.metrics_port = self.metrics_port or free_port()

    # ---- files -----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}.yaml"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"{self.name}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}.stderr"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output(self) -> str:
        """Everything printed so far, both streams, every run."""
        return self.stdout() + self.stderr()

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr (``logFormat: json``); other lines are skipped."""
        lines = []
        for line in self.stderr().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:])

    # ---- lifecycle -------------------------------------------------------------------------
    def command(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "evictwatch.cli",
            "run",
            "--config",
            str(self.config_path),
            "--kubeconfig",
            str(self.kubeconfig),
            "--port",
            str(self.webhook_port),
            "--metrics-port",
            str(self.metrics_port),
        ]
        if self.self_signed:
            args.append("--self-signed")
        if not self.install_crd:
            args.append("--no-install-crd")
        for path in self.handler_files:
            args += ["--file", str(path)]
        return args + list(self.extra_args)

    def spawn(self) -> None:
        """Start the child without waiting for it (see :meth:`start`)."""
        if self.running:
            raise OperatorProcessError(f"{self.name} is already running (pid {self.pid})")
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        environ = {**os.environ, **self.env, "POD_NAME": self.name, "PYTHONUNBUFFERED": "1"}
        environ.pop("KUBECONFIG", None)
        self._close_files()
        self._out = self.stdout_path.open("ab")
        self._err = self.stderr_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=environ,
            cwd=self.workdir,
            preexec_fn=_die_with_parent,
        )
        self.starts += 1

    async def start(self, timeout: float = 60.0) -> OperatorProcess:
        """Start the child and wait until it is ready."""
        self.spawn()
        await self.wait_ready(timeout)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx2.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if not self.running:
                    code = self.process.returncode if self.process is not None else None
                    raise OperatorProcessError(
                        f"{self.name} exited with code {code} while starting:\n{self.tail()}"
                    )
                try:
                    # The probes are on the metrics port (plain HTTP, as the kubelet's are), so
                    # this works when the webhook port demands a client certificate too.
                    ready = await http.get(f"http://127.0.0.1:{self.metrics_port}/readyz")
                    metrics = await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")
                    if ready.status_code == 200 and metrics.status_code == 200:
                        return
                except httpx2.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise OperatorProcessError(f"{self.name} was not ready within {timeout:.0f} s:\n{self.tail()}")

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (a clean shutdown: the lease is released), then SIGKILL after ``grace``."""
        return await self._signal(signal.SIGTERM, grace)

    async def kill(self) -> int | None:
        """SIGKILL: no cleanup at all, as when a node dies or the OOM killer strikes."""
        return await self._signal(signal.SIGKILL, 10.0)

    async def restart(self, timeout: float = 60.0) -> OperatorProcess:
        await self.stop()
        return await self.start(timeout)

    async def _signal(self, sig: signal.Signals, grace: float) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                await asyncio.to_thread(process.wait, grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.to_thread(process.wait)
        self._close_files()
        return process.returncode

    def _close_files(self) -> None:
        for handle in (self._out, self._err):
            if handle is not None:
                handle.close()
        self._out = self._err = None

    # ---- what it shows ---------------------------------------------------------------------
    def rss_bytes(self) -> int:
        """Resident memory of the child now (``VmRSS`` in ``/proc/<pid>/status``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise OperatorProcessError(f"no VmRSS for pid {self.pid}")

    async def metrics_text(self) -> str:
        async with httpx2.AsyncClient(timeout=5.0) as http:
            reply = await http.get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        reply.raise_for_status()
        return reply.text

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
        total = 0.0
        for family in text_string_to_metric_families(await self.metrics_text()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total
