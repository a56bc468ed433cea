"""A real, local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager.

This is our envtest: the tests, the benchmarks and ``evictwatch sandbox`` all run against it.
Everything listens on 127.0.0.1 on free ports, lives in one temporary folder, and is stopped
on every way out (normal exit, exception, Ctrl-C, and the parent dying: each child gets
``PR_SET_PDEATHSIG`` so that even a SIGKILLed test run leaves no orphan behind).

RBAC is on, as in real clusters; the admin identity is a client certificate in
``system:masters``. The API server's audit log records every request, which later lets a
test compare what the operator did with what its RBAC grants.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

from . import pki
from .binaries import Binaries, ensure_binaries

_PR_SET_PDEATHSIG = 1

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""


class ControlPlaneError(RuntimeError):
    """A component failed to start or answer; the message carries the end of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGKILL this child when the process that started it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def tail(self, lines: int = 25) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class ControlPlane:
    """Start with :meth:`start` (or ``with ControlPlane() as cp``), stop with :meth:`stop`."""

    with_controller_manager: bool = False
    binaries: Binaries | None = None
    workdir: Path | None = None
    keep_workdir: bool = False
    start_timeout: float = 90.0
    audit_log: bool = True
    extra_apiserver_args: list[str] = field(default_factory=list)
    feature_gates: dict[str, bool] = field(default_factory=dict)
    """Test-only: feature gates for kube-apiserver and kube-controller-manager (an alpha API)."""
    runtime_config: dict[str, bool] = field(default_factory=dict)
    """Test-only: API groups/versions to serve or not (``--runtime-config``), e.g.
    ``{"lifecycle.k8s.io/v1alpha1": True}``; alpha versions also need this besides their gate."""

    host: str = "127.0.0.1"
    etcd_port: int = 0
    apiserver_port: int = 0
    ca: pki.KeyPair | None = None
    admin: pki.KeyPair | None = None
    _components: dict[str, _Component] = field(default_factory=dict)
    _owns_workdir: bool = False

    # ---- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.apiserver_port}"

    @property
    def kubeconfig_path(self) -> Path:
        assert self.workdir is not None, "the control plane has not been started"
        return self.workdir / "admin.kubeconfig"

    @property
    def audit_log_path(self) -> Path:
        assert self.workdir is not None, "the control plane has not been started"
        return self.workdir / "audit.log"

    @property
    def ca_path(self) -> Path:
        assert self.workdir is not None, "the control plane has not been started"
        return self.workdir / "ca.crt"

    def start(self) -> ControlPlane:
        """Start etcd, then kube-apiserver, then (if asked) kube-controller-manager."""
        if self.binaries is None:
            self.binaries = ensure_binaries()
        if self.with_controller_manager and self.binaries.kube_controller_manager is None:
            raise ControlPlaneError("kube-controller-manager was asked for but the binaries lack it")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="evictwatch-cp-"))
            self._owns_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            self._write_pki()
            self.start_etcd()
            self.start_apiserver()
            if self.with_controller_manager:
                self.start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process this object started, newest first; safe to call twice."""
        for name in reversed(list(self._components)):
            self.stop_component(name)
        atexit.unregister(self.stop)
        if self._owns_workdir and not self.keep_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._owns_workdir = False

    def stop_component(self, name: str, *, grace: float = 10.0) -> None:
        """Stop one component (SIGTERM, then SIGKILL after ``grace`` seconds)."""
        component = self._components.pop(name, None)
        if component is None:
            return
        process = component.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        component.log_file.close()

    def running(self, name: str) -> bool:
        component = self._components.get(name)
        return component is not None and component.process.poll() is None

    def compact_etcd(self) -> int:
        """Compact etcd up to its current revision, as the API server does every 5 minutes.

        After this, a watch that resumes from an older resourceVersion gets 410 Gone: the
        real fault a long disconnect produces, on demand. Returns the compacted revision.
        """
        base = f"http://{self.host}:{self.etcd_port}/v3/kv"
        # One write of our own first: compaction keeps the revision it is given, so without it the
        # newest API object's version would survive and a watch from just before it would not expire.
        marker = json.dumps(
            {
                "key": base64.b64encode(b"/evictwatch-compaction-marker").decode(),
                "value": base64.b64encode(b"x").decode(),
            }
        ).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/put", data=marker), timeout=10) as reply:
            revision = int(json.load(reply)["header"]["revision"])
        body = json.dumps({"revision": str(revision), "physical": True}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/compaction", data=body), timeout=30):
            pass
        return revision

    # ---- components ------------------------------------------------------------------------
    def start_etcd(self) -> None:
        assert self.binaries is not None and self.workdir is not None
        self.etcd_port = self.etcd_port or free_port()
        peer = free_port()
        client_url = f"http://{self.host}:{self.etcd_port}"
        peer_url = f"http://{self.host}:{peer}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait_until("etcd", lambda: self._http_ok(f"{client_url}/health", tls=False))

    def start_apiserver(self) -> None:
        """Start kube-apiserver; on a restart the same port, certificates and etcd are reused."""
        assert self.binaries is not None and self.workdir is not None
        self.apiserver_port = self.apiserver_port or free_port()
        w = self.workdir
        args = [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://{self.host}:{self.etcd_port}",
            f"--bind-address={self.host}",
            f"--advertise-address={self.host}",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={w / 'apiserver-certs'}",
            f"--tls-cert-file={w / 'apiserver.crt'}",
            f"--tls-private-key-file={w / 'apiserver.key'}",
            f"--client-ca-file={w / 'ca.crt'}",
            f"--service-account-key-file={w / 'sa.pub'}",
            f"--service-account-signing-key-file={w / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--v=1",
        ]
        if self.audit_log:
            (w / "audit-policy.yaml").write_text(AUDIT_POLICY)
            args += [
                f"--audit-policy-file={w / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
            ]
        self._spawn("kube-apiserver", args + self._gate_args(runtime_config=True) + self.extra_apiserver_args)
        self._wait_until("kube-apiserver", lambda: self._http_ok(f"{self.url}/readyz", tls=True))

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver on the same port: clients see a real outage."""
        self.stop_component("kube-apiserver")
        self.start_apiserver()

    def start_controller_manager(self) -> None:
        assert self.binaries is not None and self.binaries.kube_controller_manager is not None
        assert self.workdir is not None and self.ca is not None
        identity = pki.issue(
            self.ca,
            "system:kube-controller-manager",
            organizations=("system:masters",),
            server=False,
            client=True,
        )
        kubeconfig = self.workdir / "kcm.kubeconfig"
        kubeconfig.write_text(self._kubeconfig_text(identity, "kube-controller-manager"))
        port = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={self.host}",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.workdir / 'sa.key'}",
                f"--root-ca-file={self.workdir / 'ca.crt'}",
                "--concurrent-gc-syncs=5",
                "--v=1",
                *self._gate_args(runtime_config=False),
            ],
        )
        self._wait_until(
            "kube-controller-manager",
            lambda: self._http_ok(f"https://{self.host}:{port}/healthz", tls=True, verify=False),
        )

    def _gate_args(self, *, runtime_config: bool) -> list[str]:
        """``--feature-gates`` (and, for the API server, ``--runtime-config``); none by default."""
        args = []
        if self.feature_gates:
            gates = ",".join(f"{name}={str(on).lower()}" for name, on in sorted(self.feature_gates.items()))
            args.append(f"--feature-gates={gates}")
        if runtime_config and self.runtime_config:
            versions = ",".join(
                f"{name}={str(on).lower()}" for name, on in sorted(self.runtime_config.items())
            )
            args.append(f"--runtime-config={versions}")
        return args

    # ---- credentials -----------------------------------------------------------------------
    def _write_pki(self) -> None:
        assert self.workdir is not None
        w = self.workdir
        self.ca = pki.make_ca("evictwatch-test-ca")
        serving = pki.issue(
            self.ca,
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ip_addresses=(self.host, "10.96.0.1"),
        )
        self.admin = pki.issue(self.ca, "admin", organizations=("system:masters",), server=False, client=True)
        sa_key, sa_pub = pki.make_rsa_key_pair()
        files = {
            "ca.crt": self.ca.cert_pem,
            "apiserver.crt": serving.cert_pem,
            "apiserver.key": serving.key_pem,
            "admin.crt": self.admin.cert_pem,
            "admin.key": self.admin.key_pem,
            "sa.key": sa_key,
            "sa.pub": sa_pub,
        }
        for name, data in files.items():
            (w / name).write_bytes(data)
            (w / name).chmod(0o600)
        self.apiserver_port = self.apiserver_port or free_port()
        self.kubeconfig_path.write_text(self._kubeconfig_text(self.admin, "admin"))
        self.kubeconfig_path.chmod(0o600)

    def _kubeconfig_text(self, identity: pki.KeyPair | None, user: str, token: str | None = None) -> str:
        assert self.ca is not None
        creds: dict[str, str] = {}
        if identity is not None:
            creds["client-certificate-data"] = base64.b64encode(identity.cert_pem).decode()
            creds["client-key-data"] = base64.b64encode(identity.key_pem).decode()
        if token is not None:
            creds["token"] = token
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "evictwatch-local",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca.cert_pem).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": creds}],
            "contexts": [
                {
                    "name": user,
                    "context": {"cluster": "evictwatch-local", "user": user, "namespace": "default"},
                }
            ],
            "current-context": user,
        }
        return yaml.safe_dump(config, sort_keys=False)

    def kubeconfig_for_token(self, token: str, user: str = "token-user") -> Path:
        """A kubeconfig that authenticates with a bearer token (a ServiceAccount's, say)."""
        assert self.workdir is not None
        path = self.workdir / f"{user}.kubeconfig"
        path.write_text(self._kubeconfig_text(None, user, token=token))
        path.chmod(0o600)
        return path

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the API server and presents the admin certificate."""
        assert self.workdir is not None
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.load_cert_chain(str(self.workdir / "admin.crt"), str(self.workdir / "admin.key"))
        return context

    def version(self) -> dict[str, Any]:
        """The server's ``/version`` document."""
        with urllib.request.urlopen(f"{self.url}/version", context=self.ssl_context(), timeout=10) as reply:
            data: dict[str, Any] = json.load(reply)
            return data

    # ---- plumbing --------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> None:
        assert self.workdir is not None
        log_path = self.workdir / f"{name}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed in stop_component
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._components[name] = _Component(name, process, log_path, log_file)

    def _wait_until(self, name: str, probe: Any) -> None:
        component = self._components[name]
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = component.process.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {code} while starting; the end of its log:\n{component.tail()}"
                )
            if probe():
                return
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{name} did not become ready within {self.start_timeout:.0f} s; the end of its log:\n"
            f"{component.tail()}"
        )

    def _http_ok(self, url: str, *, tls: bool, verify: bool = True) -> bool:
        context: ssl.SSLContext | None = None
        if tls:
            if verify and self.workdir is not None:
                context = self.ssl_context()
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False
