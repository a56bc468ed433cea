"""Find or build cert-manager's controller and cainjector, and its CRDs, for the tests.

The tests that check the chart's cert-manager wiring (a ``Certificate`` for the webhook, a
``ValidatingWebhookConfiguration`` annotated ``cert-manager.io/inject-ca-from``) need the real
cert-manager, not a stand-in that would only agree with our own reading of it. cert-manager's
``cmd/controller`` and ``cmd/cainjector`` are Go modules of their own that are not published on
the module proxy, so the Go module beside this file (``certmanager/``) holds two short ``main``
packages that wire up the upstream library packages at the pinned release; we build them with
the machine's Go toolchain, the same way as the control plane, and cache them per version under
``~/.cache/evictwatch/tools/cert-manager/<version>/`` so only the first run pays.

The CRDs come from the same module (its ``deploy/crds``, plain YAML) and are copied into the
cache beside the binaries, so nothing of cert-manager's is kept in this repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .binaries import build_command, run_with_progress, say, staged_into
from .controlplane import _die_with_parent
from .helm import tools_dir

CERT_MANAGER_VERSION = "v1.21.2"
"""The pinned release. Must match ``require github.com/cert-manager/cert-manager`` in
certmanager/go.mod."""

CERT_MANAGER_MODULE = "github.com/cert-manager/cert-manager"
GO_MODULE_DIR = Path(__file__).with_name("certmanager")
COMMANDS = ("controller", "cainjector")
"""The executables, named after their package folders in GO_MODULE_DIR."""

CRD_FILES = (
    "cert-manager.io_certificates.yaml",
    "cert-manager.io_certificaterequests.yaml",
    "cert-manager.io_issuers.yaml",
    "cert-manager.io_clusterissuers.yaml",
)
"""The CRDs the built controllers serve. The ACME Order and Challenge CRDs are left out: the
ACME controllers are not built in, and none of the others watches those kinds."""

CRD_DIR = "crds"


class CertManagerError(RuntimeError):
    """cert-manager can't be found or built; the message says what to install or fix."""


@dataclass(frozen=True)
class CertManager:
    """The built executables and the CRDs they need, all of one release.

    ``controller`` takes ``--kubeconfig PATH`` (required) and optionally ``--namespace``,
    ``--cluster-resource-namespace`` (default kube-system), ``--controllers a,b``, ``--workers``
    and ``-v N``. ``cainjector`` takes ``--kubeconfig PATH`` (required) and optionally
    ``--namespace``, ``--injectables a,b`` and ``-v N``. Both log to stderr and stop on SIGTERM.
    """

    controller: Path
    cainjector: Path
    crd_dir: Path
    version: str

    @property
    def crds(self) -> list[Path]:
        """The CRD files, in the order to apply them."""
        return [self.crd_dir / name for name in CRD_FILES]


def cert_manager_cache_dir(version: str = CERT_MANAGER_VERSION) -> Path:
    """``<cache root>/tools/cert-manager/<version>``, the root the control-plane binaries use."""
    return tools_dir() / "cert-manager" / version


def _required_files() -> list[str]:
    return [*COMMANDS, *(f"{CRD_DIR}/{name}" for name in CRD_FILES)]


def find_cert_manager(version: str = CERT_MANAGER_VERSION) -> CertManager | None:
    """The cached build of ``version`` if it is complete, without building."""
    folder = cert_manager_cache_dir(version)
    if all((folder / name).is_file() for name in _required_files()):
        return CertManager(folder / "controller", folder / "cainjector", folder / CRD_DIR, version)
    return None


def ensure_cert_manager(version: str = CERT_MANAGER_VERSION, *, log: bool = True) -> CertManager:
    """Return cert-manager's executables and CRDs, building them once if not cached."""
    found = find_cert_manager(version)
    if found is not None:
        return found
    build_cert_manager(version, log=log)
    found = find_cert_manager(version)
    if found is None:  # pragma: no cover - build_cert_manager() raises before this can happen
        raise CertManagerError(f"the build finished but {cert_manager_cache_dir(version)} is incomplete")
    return found


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise CertManagerError(
            f"The Go toolchain is not on PATH: install Go 1.26 or newer (the 'go' command) to build "
            f"cert-manager {CERT_MANAGER_VERSION} for the tests that need it."
        )
    return go


def _module_source(go: str, env: dict[str, str], version: str) -> Path:
    """The cert-manager module's folder in the Go module cache (downloading it if need be).

    ``go mod download -json`` in our module prints the folder as ``Dir``; the CRDs are read
    from there.
    """
    result = subprocess.run(
        [go, "mod", "download", "-json", f"{CERT_MANAGER_MODULE}@{version}"],
        cwd=GO_MODULE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        info = json.loads(result.stdout)
    except json.JSONDecodeError:
        info = {}
    folder = info.get("Dir") if isinstance(info, dict) else None
    if result.returncode != 0 or not isinstance(folder, str) or not folder:
        detail = (info.get("Error") if isinstance(info, dict) else None) or result.stderr.strip()
        raise CertManagerError(
            f"go mod download {CERT_MANAGER_MODULE}@{version} failed ({result.returncode}): {detail}\n"
            "The Go module proxy could not be reached or refused the module: check the network and GOPROXY."
        )
    return Path(folder)


def build_cert_manager(version: str = CERT_MANAGER_VERSION, *, log: bool = True) -> Path:
    """Build both commands and copy the CRDs into the version's cache folder; returns it.

    Everything goes to a temporary folder beside the cache and is renamed into place, so an
    interrupted build never leaves a half-filled cache that a later run would trust.
    """
    if version != CERT_MANAGER_VERSION:
        raise CertManagerError(
            f"only cert-manager {CERT_MANAGER_VERSION} can be built (certmanager/go.mod pins it)"
        )
    go = _go()
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false", GO111MODULE="on")
    target = cert_manager_cache_dir(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    staging.chmod(0o755)
    # cert-manager stamps its version into its User-Agent and /version the same way.
    ldflags = f"-s -w -X {CERT_MANAGER_MODULE}/pkg/util.AppVersion={version}"
    command = [
        go,
        "build",
        "-v",
        "-trimpath",
        "-ldflags",
        ldflags,
        "-o",
        str(staging) + os.sep,
        *(f"./{name}" for name in COMMANDS),
    ]
    started = time.monotonic()
    say(
        log,
        f"evictwatch: building cert-manager {version} (controller, cainjector) with {go} "
        "(first run only; about 5 minutes on 2 cores)",
    )
    with staged_into(staging, target, _required_files(), CertManagerError):
        source = _module_source(go, env, version) / "deploy" / "crds"
        (staging / CRD_DIR).mkdir()
        for name in CRD_FILES:
            if not (source / name).is_file():
                raise CertManagerError(f"{source} has no {name}: the pinned release's layout changed")
            shutil.copyfile(source / name, staging / CRD_DIR / name)
        run_with_progress(
            command, env, GO_MODULE_DIR, log=log, started=started, what="cert-manager", error=CertManagerError
        )
    say(log, f"evictwatch: built cert-manager in {time.monotonic() - started:.0f} s into {target}")
    return target


@dataclass
class CertManagerProcesses:
    """The controller and the cainjector running against one kubeconfig; logs kept in ``log_dir``.

    Both get ``PR_SET_PDEATHSIG`` (as the control plane's components do), so a killed test
    run leaves neither behind. The CRDs must be installed first (the cainjector waits for the
    Certificate CRD; the controller's informers need all of them).
    """

    binaries: CertManager
    kubeconfig: Path
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> CertManagerProcesses:
        if self.processes:
            raise RuntimeError("cert-manager is already running; stop() it first")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._spawn("controller", self.binaries.controller)
            self._spawn("cainjector", self.binaries.cainjector)
        except BaseException:
            self.stop()  # the one already started must not outlive a failed start
            raise
        return self

    def _spawn(self, name: str, binary: Path) -> None:
        with (self.log_dir / f"{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                [str(binary), f"--kubeconfig={self.kubeconfig}", "-v=2"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def stop(self, grace: float = 10.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def tail(self, lines: int = 20) -> str:
        """The end of each log, for an assertion message."""
        parts = []
        for name in COMMANDS:
            path = self.log_dir / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(parts)

    def __enter__(self) -> CertManagerProcesses:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def main() -> int:
    """``python -m evictwatch.testing.cert_manager``: build (or find) and print the folder."""
    return build_command(lambda: ensure_cert_manager().controller.parent, CertManagerError)


if __name__ == "__main__":
    raise SystemExit(main())
