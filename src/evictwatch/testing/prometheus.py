"""A real Prometheus server, so that tests can check the dashboard's PromQL against our /metrics.

A dashboard panel is only right if its query means what its title says on the metrics the
operator really exports: a typo in a label, a ``rate`` over a gauge or a histogram without
``le`` all pass a JSON lint and show an empty panel in production. So the tests scrape the
operator with the real PromQL engine and TSDB and ask the HTTP API (``/api/v1/query_range``),
as Grafana does.

We build Prometheus with the machine's Go toolchain from the Go module beside this file
(``promserver/``, which pins the release) and cache it per version under
``~/.cache/evictwatch/tools/prometheus/<version>/``, so only the first run pays. The build
uses the ``remove_all_sd`` tag: every service-discovery plugin but file and http is left
out (static targets are all we need), which spares compiling the cloud SDKs. The web UI's
JavaScript is not in the Go module and is not embedded (no ``builtinassets`` tag); the HTTP
API does not need it and the server starts without it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .binaries import build_command, run_with_progress, say, staged_into
from .controlplane import _die_with_parent, free_port
from .helm import tools_dir

PROMETHEUS_VERSION = "v0.316.0"
"""The pinned Go module version. Must match ``require github.com/prometheus/prometheus`` in
promserver/go.mod; Prometheus tags its Go module v0.3XX.Y for release 3.XX.Y."""

PROMETHEUS_RELEASE = "3.16.0"
"""The release that PROMETHEUS_VERSION is (the module's VERSION file); stamped into the binary
so that ``--version`` and ``/api/v1/status/buildinfo`` say what it is."""

PROMETHEUS_PACKAGE = "github.com/prometheus/prometheus/cmd/prometheus"
GO_MODULE_DIR = Path(__file__).with_name("promserver")
BUILD_TAGS = ("remove_all_sd",)
"""Left-out service discovery (see the module's plugins/*.go build constraints)."""

ENV_PROMETHEUS = "EVICTWATCH_PROMETHEUS"
"""Names a prometheus executable to use instead of the cache (e.g. a downloaded release)."""


class PrometheusError(RuntimeError):
    """Prometheus can't be built, won't start, or refused a query; the message says why."""


def prometheus_cache_dir(version: str = PROMETHEUS_VERSION) -> Path:
    """``<cache root>/tools/prometheus/<version>``: the root the control-plane binaries use."""
    return tools_dir() / "prometheus" / version


def find_prometheus(version: str = PROMETHEUS_VERSION) -> Path | None:
    """A ready prometheus without building: $EVICTWATCH_PROMETHEUS, then the cache.

    A ``prometheus`` on PATH is deliberately not taken: its PromQL could be another release's,
    and a test that passes or fails on one machine only is worse than a one-off build.
    """
    named = os.environ.get(ENV_PROMETHEUS)
    if named:
        path = Path(named)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise PrometheusError(f"{ENV_PROMETHEUS}={named} is not an executable file; fix it or unset it.")
        return path
    cached = prometheus_cache_dir(version) / "prometheus"
    return cached if cached.is_file() else None


def ensure_prometheus(log: bool = True) -> Path:
    """Return a prometheus executable, building PROMETHEUS_VERSION once if none is found."""
    found = find_prometheus()
    if found is not None:
        return found
    return build_prometheus(log=log)


def _ldflags() -> str:
    """Strip symbols, and stamp the version the way the release build (promu) does."""
    pkg = "github.com/prometheus/common/version"
    stamps = {
        "Version": PROMETHEUS_RELEASE,
        "Revision": PROMETHEUS_VERSION,
        "Branch": "HEAD",
        "BuildUser": "evictwatch",
        "BuildDate": time.strftime("%Y%m%d-%H:%M:%S", time.gmtime()),
    }
    return "-s -w " + " ".join(f"-X {pkg}.{key}={value}" for key, value in stamps.items())


def build_prometheus(log: bool = True) -> Path:
    """``go build`` prometheus into its cache folder; returns the executable.

    The binary goes to a temporary folder beside the cache and is renamed into place, so an
    interrupted build never leaves a cache entry that a later run would trust.
    """
    go = shutil.which("go")
    if go is None:
        raise PrometheusError(
            f"The Go toolchain is not on PATH: install Go 1.26.7 or newer to build Prometheus "
            f"{PROMETHEUS_RELEASE}, or set {ENV_PROMETHEUS} to a prometheus executable."
        )
    target = prometheus_cache_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{PROMETHEUS_VERSION}-", dir=target.parent))
    staging.chmod(0o755)
    command = [
        go,
        "build",
        "-v",
        "-trimpath",
        "-tags",
        ",".join(BUILD_TAGS),
        "-ldflags",
        _ldflags(),
        "-o",
        str(staging / "prometheus"),
        PROMETHEUS_PACKAGE,
    ]
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
    started = time.monotonic()
    say(
        log,
        f"evictwatch: building Prometheus {PROMETHEUS_RELEASE} with {go} "
        "(first run only; 2 to 4 minutes on 2 cores)",
    )
    with staged_into(staging, target, ["prometheus"], PrometheusError):
        run_with_progress(
            command, env, GO_MODULE_DIR, log=log, started=started, what="Prometheus", error=PrometheusError
        )
    say(log, f"evictwatch: built Prometheus in {time.monotonic() - started:.0f} s into {target}")
    return target / "prometheus"


def _seconds(value: float | datetime) -> str:
    """The API takes RFC 3339 or Unix seconds; Unix seconds never have a time-zone doubt."""
    return repr(value.timestamp() if isinstance(value, datetime) else float(value))


@dataclass
class PrometheusServer:
    """Scrapes ``targets`` (``host:port``) every ``scrape_interval`` s; query it over HTTP.

    Start with :meth:`start` (or ``with PrometheusServer([...]) as prom``), stop with
    :meth:`stop`. Everything (config, TSDB, log) lives in one temporary folder that is
    removed on stop unless ``keep_workdir``; the process gets ``PR_SET_PDEATHSIG`` so a
    killed test run leaves no server behind.
    """

    targets: Sequence[str]
    metrics_path: str = "/metrics"
    scrape_interval: float = 1.0
    job: str = "evictwatch"
    binary: Path | None = None
    workdir: Path | None = None
    keep_workdir: bool = False
    start_timeout: float = 60.0
    extra_args: list[str] = field(default_factory=list)

    host: str = "127.0.0.1"
    port: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = None
    _owns_workdir: bool = False

    # ---- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None, "Prometheus has not been started"
        return self.workdir / "prometheus.log"

    def config_text(self) -> str:
        """The prometheus.yml: one static job over ``targets``, scraped and evaluated every interval.

        JSON is YAML, so no YAML writer is needed. The scrape timeout is the interval, because
        Prometheus rejects a timeout longer than the interval it belongs to.
        """
        interval = f"{round(self.scrape_interval * 1000)}ms"
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "metrics_path": self.metrics_path,
                    "static_configs": [{"targets": list(self.targets)}],
                }
            ],
        }
        return json.dumps(config, indent=2) + "\n"

    def start(self) -> PrometheusServer:
        """Write the config, start the server and wait until ``/-/ready`` answers 200."""
        binary = self.binary or ensure_prometheus()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="evictwatch-prometheus-"))
            self._owns_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config_text())
        self.port = self.port or free_port()
        args = [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            # Hidden flag: how often new static targets are handed to the scrape manager. Its
            # 5 s default delays the first scrape by ~5 s; a test wants its first sample now.
            "--scrape.discovery-reload-interval=200ms",
            *self.extra_args,
        ]
        atexit.register(self.stop)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # Run in the work folder: the UI code resolves its (absent) asset folder from the cwd.
        self._process = subprocess.Popen(
            args,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (Prometheus flushes its head block), SIGKILL after ``grace`` s; safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        atexit.unregister(self.stop)
        if self._owns_workdir and not self.keep_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._owns_workdir = False

    def tail(self, lines: int = 25) -> str:
        """The end of the server's log, for error messages."""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise PrometheusError(
                    f"prometheus exited with code {code} while starting; the end of its log:\n{self.tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise PrometheusError(
            f"prometheus was not ready within {self.start_timeout:.0f} s; the end of its log:\n{self.tail()}"
        )

    # ---- HTTP API --------------------------------------------------------------------------
    def api(
        self, endpoint: str, params: dict[str, str] | None = None, *, post: bool = True, timeout: float = 30.0
    ) -> Any:
        """Call ``/api/v1/<endpoint>`` with ``params``; return the reply's ``data``.

        Queries are POSTed form-encoded, because a dashboard's expressions can outgrow a URL;
        ``post=False`` is for the endpoints that only take GET (``targets``). A reply whose
        status is not ``success`` (a PromQL syntax error, an unknown function) raises
        PrometheusError with Prometheus's own error text, so a test failure names the query.
        """
        encoded = urllib.parse.urlencode(params or {})
        url = f"{self.url}/api/v1/{endpoint}"
        if post:
            request = urllib.request.Request(
                url, data=encoded.encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}
            )
        else:
            request = urllib.request.Request(f"{url}?{encoded}" if encoded else url)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                document: dict[str, Any] = json.load(reply)
        except urllib.error.HTTPError as error:
            # 400/422/503 carry a JSON body with errorType and error: that is the useful part.
            text = error.read().decode(errors="replace")
            try:
                document = json.loads(text)
            except ValueError:
                raise PrometheusError(f"/api/v1/{endpoint} answered {error.code}: {text[:500]}") from error
        if document.get("status") != "success":
            raise PrometheusError(
                f"/api/v1/{endpoint} failed ({document.get('errorType')}): {document.get('error')}; "
                f"params {params}"
            )
        return document.get("data")

    def query(self, expr: str, at: float | datetime | None = None) -> dict[str, Any]:
        """An instant query: ``{"resultType": ..., "result": [...]}`` at ``at`` (default: now)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = _seconds(at)
        data: dict[str, Any] = self.api("query", params)
        return data

    def query_range(
        self, expr: str, start: float | datetime, end: float | datetime, step: float | str
    ) -> dict[str, Any]:
        """A range query, as a Grafana time-series panel runs it: a ``matrix`` of ``[t, "v"]`` pairs.

        ``start``/``end`` are Unix seconds or aware datetimes; ``step`` is seconds or a
        Prometheus duration such as ``"1s"``.
        """
        params = {
            "query": expr,
            "start": _seconds(start),
            "end": _seconds(end),
            "step": step if isinstance(step, str) else repr(float(step)),
        }
        data: dict[str, Any] = self.api("query_range", params)
        return data

    def targets_up(self) -> bool:
        """Whether every configured target has been scraped and its last scrape succeeded."""
        data: dict[str, Any] = self.api("targets", {"state": "active"}, post=False)
        active = [t for t in data.get("activeTargets", []) if t.get("scrapePool") == self.job]
        return len(active) == len(self.targets) and all(t.get("health") == "up" for t in active)

    def wait_for_targets(self, timeout: float = 30.0) -> None:
        """Block until :meth:`targets_up`: the first scrape lands up to one interval after start."""
        deadline = time.monotonic() + timeout
        while not self.targets_up():
            if time.monotonic() > deadline:
                detail = self.api("targets", {"state": "active"}, post=False)
                raise PrometheusError(f"targets not up within {timeout:.0f} s: {json.dumps(detail)[:2000]}")
            time.sleep(0.2)


def main() -> int:
    """``python -m evictwatch.testing.prometheus``: build (or find) Prometheus and print its path."""
    return build_command(ensure_prometheus, PrometheusError)


if __name__ == "__main__":
    raise SystemExit(main())
