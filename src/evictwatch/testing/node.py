"""A real Kubernetes node on this machine: containerd and a kubelet against a ControlPlane.

The fake nodes of the other tests are Node objects that nothing runs behind; a Pod bound to
one never starts, and a kubelet eviction there is a status we write ourselves. This node runs
Pods for real (runc containers from images built locally, see :mod:`.node_binaries`), so a
drain waits for containers to stop and the kubelet evicts under real pressure.

It needs root and a cgroup filesystem, and it changes the host (sysctls, cgroups, mounts,
a bridge), so :class:`RealNode` records the host state first and puts it back on every way
out: normal exit, exception, Ctrl-C, SIGTERM. Only one can run on a machine at a time (a
lock file says so). :func:`why_no_real_node` tells a caller when this machine cannot run one.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from . import pki
from .controlplane import ControlPlane, _die_with_parent, free_port
from .node_binaries import NodeBinaries, ensure_node_binaries
from .node_config import (
    CNI_BIN_DIR,
    DEFAULT_EVICTION_HARD,
    SERVICE_IP,
    cni_config,
    containerd_config,
    kubelet_config,
)
from .node_host import HostSnapshot

LOCK_PATH = Path("/run/evictwatch-node.lock")
STATE_PATH = Path("/run/evictwatch-node.json")
"""The host snapshot and folder of the running node: what the next node restores first if
this one's process was killed (SIGKILL leaves no chance to clean up)."""
NODE_NAME = "evictwatch-node"
_CHILD_PATH = "/usr/bin:/bin"
"""The PATH of containerd and the kubelet: without /usr/sbin they find no iptables, so the
kubelet makes no iptables chains (runc is named by its full path)."""


class NodeError(RuntimeError):
    """The node failed to start or stop cleanly; the message carries the end of a log."""


def why_no_real_node() -> str | None:
    """Why this machine cannot run a real node, or None if it can."""
    if os.geteuid() != 0:
        return "a real node needs root (the kubelet makes cgroups and containerd mounts filesystems)"
    if not Path("/sys/fs/cgroup/cgroup.controllers").is_file() and not Path("/sys/fs/cgroup/memory").is_dir():
        return "a real node needs a cgroup filesystem with the memory controller at /sys/fs/cgroup"
    if shutil.which("runc") is None:
        return "runc is not installed (Debian package runc; scripts/test.sh installs it)"
    missing = [p for p in ("bridge", "host-local") if not (CNI_BIN_DIR / p).is_file()]
    if missing:
        return (
            f"CNI plugins {', '.join(missing)} missing in {CNI_BIN_DIR} (Debian containernetworking-plugins)"
        )
    return None


def node_ip() -> str:
    """The address of the default route's interface: the kubelet refuses a loopback node IP."""
    route = subprocess.run(["ip", "-4", "-o", "route", "get", "192.0.2.255"], capture_output=True, text=True)
    words = route.stdout.split()
    if "src" in words:
        return words[words.index("src") + 1]
    raise NodeError(f"no non-loopback IPv4 address to give the kubelet ({route.stderr.strip()})")


@dataclass
class _Process:
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def tail(self, lines: int = 30) -> str:
        self.log_file.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class RealNode:
    """Start with ``with RealNode(control_plane) as node``; every host change is undone on exit."""

    control_plane: ControlPlane
    name: str = NODE_NAME
    eviction_hard: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_EVICTION_HARD))
    binaries: NodeBinaries | None = None
    start_timeout: float = 120.0
    api_from_pods: bool = False
    """Let Pods reach the API server at the ``kubernetes`` Service's address (see
    :func:`.node_config.cni_config`); the caller forwards that address's port 443."""
    workdir: Path | None = None
    started_seconds: float = 0.0
    recovered: list[str] = field(default_factory=list)
    """What a killed node had left on the host, undone before this one started."""
    _processes: dict[str, _Process] = field(default_factory=dict)
    _snapshot: HostSnapshot | None = None
    _lock: IO[str] | None = None
    _old_handlers: dict[int, Any] = field(default_factory=dict)

    def __enter__(self) -> RealNode:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def kubectl(self) -> Path:
        assert self.binaries is not None
        return self.binaries.kubectl

    def start(self) -> RealNode:
        """Build what is missing, then start containerd and the kubelet; wait for Node Ready."""
        reason = why_no_real_node()
        if reason is not None:
            raise NodeError(reason)
        if self.binaries is None:
            self.binaries = ensure_node_binaries()
        began = time.monotonic()
        self._take_lock()
        self.recovered = self._recover_killed_node()
        self._snapshot = HostSnapshot()
        self.workdir = Path(tempfile.mkdtemp(prefix="evictwatch-node-", dir="/var/tmp"))
        STATE_PATH.write_text(json.dumps({"workdir": str(self.workdir), "host": self._snapshot.to_json()}))
        self._trap_signals()
        atexit.register(self.stop)
        try:
            self._start_containerd()
            self._import_images()
            self._start_kubelet()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - began
        return self

    def stop(self) -> list[str]:
        """Stop everything and undo the host changes; returns what could not be undone.

        Each step runs even if one before it failed, so that a stuck kubelet never keeps the
        host from being restored; safe to call twice.
        """
        problems: list[str] = []
        steps: list[tuple[str, Callable[[], object]]] = [
            ("stop the kubelet", lambda: self._stop_process("kubelet")),
            ("kill the containers", self._kill_containers),
            ("stop containerd", lambda: self._stop_process("containerd")),
            ("kill the shims", self._kill_shims),
            ("delete the Node", self._delete_node_object),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as error:  # noqa: BLE001 - reported, and the next steps still run
                problems.append(f"{what}: {error}")
        if self._snapshot is not None and self.workdir is not None:
            problems += self._snapshot.restore(under=self.workdir)
            self._snapshot = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            STATE_PATH.unlink(missing_ok=True)
        self._release()
        return problems

    def _recover_killed_node(self) -> list[str]:
        """Undo what a killed node left (its state file survives it); returns what was found."""
        if not STATE_PATH.is_file():
            return []
        state = json.loads(STATE_PATH.read_text())
        snapshot, workdir = HostSnapshot.from_json(state["host"]), Path(state["workdir"])
        left = snapshot.differences()
        snapshot.kill_cgroup_processes()
        self._kill_shims()
        problems = snapshot.restore(under=workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        if problems:
            raise NodeError(f"a killed node's host changes could not all be undone: {problems}")
        STATE_PATH.unlink()
        return left

    def _kill_containers(self) -> None:
        if self._snapshot is not None:
            self._snapshot.kill_cgroup_processes()

    # ---- containerd ------------------------------------------------------------------------
    def _start_containerd(self) -> None:
        assert self.workdir is not None and self.binaries is not None
        (self.workdir / "cni").mkdir()
        conflist = cni_config(self.workdir, api_from_pods=self.api_from_pods)
        (self.workdir / "cni" / "10-evictwatch.conflist").write_text(conflist)
        if self.api_from_pods:  # the Service address is the host's (on lo: the bridge takes one only)
            subprocess.run(
                ["ip", "addr", "add", f"{SERVICE_IP}/32", "dev", "lo"], check=True, capture_output=True
            )
        config = self.workdir / "containerd.toml"
        config.write_text(containerd_config(self.workdir, runc=str(shutil.which("runc"))))
        self._spawn("containerd", [str(self.binaries.containerd), "--config", str(config)])
        self._wait("containerd", lambda: self._ctr("version").returncode == 0)

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.workdir is not None and self.binaries is not None
        socket = self.workdir / "containerd" / "containerd.sock"
        command = [str(self.binaries.ctr), "--address", str(socket), "--namespace", "k8s.io", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    def _import_images(self) -> None:
        assert self.binaries is not None
        for archive in (self.binaries.pause_image, self.binaries.busybox_image):
            self.import_image(archive)

    def import_image(self, archive: Path) -> None:
        """Make a local image archive (docker save layout) available to the node's Pods."""
        result = self._ctr("images", "import", str(archive))
        if result.returncode != 0:
            raise NodeError(f"ctr images import {archive} failed: {result.stderr.strip()}")

    def _kill_shims(self) -> None:
        """SIGKILL the runc shims our containerd started (they outlive it by design)."""
        if self.binaries is None:
            return
        shim = str(self.binaries.shim)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "exe") == shim:
                        os.kill(int(entry.name), signal.SIGKILL)

    # ---- kubelet ---------------------------------------------------------------------------
    def _start_kubelet(self) -> None:
        cp, w = self.control_plane, self.workdir
        assert self.binaries is not None and w is not None and cp.ca is not None
        ip = node_ip()
        identity = pki.issue(
            cp.ca,
            f"system:node:{self.name}",
            organizations=("system:nodes", "system:masters"),
            server=False,
            client=True,
        )
        kubeconfig = w / "kubelet.kubeconfig"
        kubeconfig.write_text(cp._kubeconfig_text(identity, f"system:node:{self.name}"))
        config = w / "kubelet.yaml"
        config.write_text(
            kubelet_config(
                w,
                node_ip=ip,
                port=free_port(),
                healthz_port=free_port(),
                ca_file=cp.ca_path,
                eviction_hard=self.eviction_hard,
            )
        )
        args = [str(self.binaries.kubelet), f"--config={config}", f"--kubeconfig={kubeconfig}"]
        args += [f"--root-dir={w / 'kubelet'}", f"--cert-dir={w / 'kubelet-pki'}", f"--node-ip={ip}"]
        args += [f"--hostname-override={self.name}", "--v=2"]
        self._spawn("kubelet", args)

    def _wait_ready(self) -> None:
        def ready() -> bool:
            node = self.api("GET", f"/api/v1/nodes/{self.name}")
            conditions = (node or {}).get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self._wait("kubelet", ready)

    def _delete_node_object(self) -> None:
        if self.workdir is not None:  # started: the Node object may exist
            self.api("DELETE", f"/api/v1/nodes/{self.name}")

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """One admin call to the API server; None for 404 (what the node's own helpers need)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.control_plane.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(
                request, context=self.control_plane.ssl_context(), timeout=10
            ) as reply:
                result: dict[str, Any] = json.load(reply)
                return result
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise NodeError(f"{method} {path}: {error.code} {error.read()[:300]!r}") from error
        except (urllib.error.URLError, ssl.SSLError) as error:
            raise NodeError(f"{method} {path}: {error}") from error

    def kubelet_version(self) -> str:
        node = self.api("GET", f"/api/v1/nodes/{self.name}") or {}
        return str(node.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""))

    def log_tail(self, name: str, lines: int = 30) -> str:
        process = self._processes.get(name)
        return process.tail(lines) if process is not None else ""

    # ---- plumbing --------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> None:
        assert self.workdir is not None
        log_path = self.workdir / f"{name}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed in _stop_process
        env = dict(os.environ, PATH=_CHILD_PATH)
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._processes[name] = _Process(process, log_path, log_file)

    def _stop_process(self, name: str, grace: float = 10.0) -> None:
        entry = self._processes.pop(name, None)
        if entry is None:
            return
        if entry.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(entry.process.pid, signal.SIGTERM)
            try:
                entry.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(entry.process.pid, signal.SIGKILL)
                entry.process.wait()
        entry.log_file.close()

    def _wait(self, name: str, probe: Any) -> None:
        entry = self._processes[name]
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = entry.process.poll()
            if code is not None:
                raise NodeError(f"{name} exited with code {code} while starting:\n{entry.tail()}")
            with contextlib.suppress(NodeError):
                if probe():
                    return
            time.sleep(0.3)
        raise NodeError(f"{name} was not ready within {self.start_timeout:.0f} s:\n{entry.tail()}")

    def _take_lock(self) -> None:
        lock = open(LOCK_PATH, "a+")  # noqa: SIM115 - closed in _release
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise NodeError(f"another real node runs on this machine ({LOCK_PATH} is locked)") from None
        self._lock = lock

    def _release(self) -> None:
        atexit.unregister(self.stop)
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()
        if self._lock is not None:
            self._lock.close()
            LOCK_PATH.unlink(missing_ok=True)
            self._lock = None

    def _trap_signals(self) -> None:
        """SIGTERM and SIGINT become exceptions, so the ``finally`` of the caller cleans up."""

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        with contextlib.suppress(ValueError):  # only the main thread may set handlers
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._old_handlers[signum] = signal.signal(signum, interrupt)
