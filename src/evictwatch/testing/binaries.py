"""Find or build the control-plane binaries (etcd, kube-apiserver, kube-controller-manager).

Tests run against a real API server, so its binaries must exist on every machine that runs
them, including a fresh CI clone. We build them from the Go module proxy with the machine's
Go toolchain (the Go module beside this file pins the release) and cache the result per
version under ``~/.cache/evictwatch/k8s/<version>/``, so only the first run pays. An envtest
folder named by ``KUBEBUILDER_ASSETS`` wins over everything and nothing is built.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.37.2"
"""The pinned release. Must match ``require k8s.io/kubernetes`` in gobuild/go.mod."""

ETCD_VERSION = "v3.7.0"
"""The etcd server version that KUBERNETES_VERSION requires (see gobuild/go.mod)."""

OLDEST_VERSION = "v1.31.13"
"""The oldest release evictwatch supports: 1.31 is the first minor that serves CRD
``selectableFields`` by default (``CustomResourceFieldSelectors``, beta in 1.31). CI runs the
webhook and watcher tests on it too. (1.31.13, not .14: the module proxy serves every staging
module of .13, and lacks some of .14.)"""

GO_MODULE_DIR = Path(__file__).with_name("gobuild")
MODULES: dict[str, tuple[Path, str]] = {
    KUBERNETES_VERSION: (GO_MODULE_DIR, ETCD_VERSION),
    OLDEST_VERSION: (GO_MODULE_DIR / "v1.31", "v3.5.14"),
}
"""Each release that can be built: its Go module (with that release's replace lines), its etcd."""
VERSION_ENV = "EVICTWATCH_KUBERNETES_VERSION"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
_PACKAGES = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "etcd": "./etcd",
}


class BinariesError(RuntimeError):
    """The binaries can't be found or built; the message says what to install or fix."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the three executables, all of one release."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path | None
    version: str


def selected_version() -> str:
    """The release the tests run against: ``$EVICTWATCH_KUBERNETES_VERSION``, else the pin."""
    return os.environ.get(VERSION_ENV) or KUBERNETES_VERSION


def cache_dir(version: str = KUBERNETES_VERSION) -> Path:
    """Where the built binaries of ``version`` live; outside the repo, shared by checkouts."""
    root = os.environ.get("EVICTWATCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "evictwatch"
    )
    return Path(root) / "k8s" / version


def _version_ldflags(version: str) -> str:
    """Stamp the version into the binaries the way the release build does.

    Without it ``/version`` reports ``v0.0.0-master`` and the API server's compatibility
    version logic has nothing real to go on.
    """
    major, minor = version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    stamps = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return "-s -w " + " ".join(f"-X {pkg}.{key}={value}" for key, value in stamps.items())


def find_binaries(version: str | None = None) -> Binaries | None:
    """Return ready binaries without building: KUBEBUILDER_ASSETS first, then the cache."""
    version = version or selected_version()
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        folder = Path(assets)
        missing = [name for name in ("etcd", "kube-apiserver") if not (folder / name).is_file()]
        if missing:
            raise BinariesError(
                f"KUBEBUILDER_ASSETS={assets} lacks {', '.join(missing)}; "
                "point it at a folder holding etcd and kube-apiserver, or unset it to build them."
            )
        kcm = folder / "kube-controller-manager"
        return Binaries(folder / "etcd", folder / "kube-apiserver", kcm if kcm.is_file() else None, "assets")
    folder = cache_dir(version)
    if all((folder / name).is_file() for name in COMPONENTS):
        return Binaries(
            folder / "etcd", folder / "kube-apiserver", folder / "kube-controller-manager", version
        )
    return None


def ensure_binaries(version: str | None = None, *, log: bool = True) -> Binaries:
    """Return the binaries, building them once if neither the assets nor the cache have them.

    ``version`` defaults to :func:`selected_version` (the pin unless the environment names another).
    """
    version = version or selected_version()
    found = find_binaries(version)
    if found is not None:
        return found
    build(version, log=log)
    found = find_binaries(version)
    if found is None:  # pragma: no cover - build() raises before this can happen
        raise BinariesError(f"the build finished but {cache_dir(version)} is incomplete")
    return found


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BinariesError(
            "The Go toolchain is not on PATH: install Go 1.26 or newer (the 'go' command) to build "
            f"kube-apiserver {KUBERNETES_VERSION}, or set KUBEBUILDER_ASSETS to a folder of binaries."
        )
    return go


def build(version: str = KUBERNETES_VERSION, *, log: bool = True) -> Path:
    """Build every component with ``go build`` into the version's cache folder.

    The build goes to a temporary folder beside the cache and is renamed into place, so an
    interrupted build never leaves a half-filled cache that a later run would trust.
    """
    if version not in MODULES:
        raise BinariesError(
            f"Kubernetes {version} cannot be built: only {', '.join(MODULES)} have a Go module here"
        )
    module_dir, etcd_version = MODULES[version]
    go = _go()
    target = cache_dir(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    command = [
        go,
        "build",
        "-v",
        "-trimpath",
        "-tags",
        "providerless",
        "-ldflags",
        _version_ldflags(version),
        "-o",
        str(staging) + os.sep,
        *(_PACKAGES[name] for name in COMPONENTS),
    ]
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
    started = time.monotonic()
    say(
        log,
        f"evictwatch: building etcd {etcd_version}, kube-apiserver and kube-controller-manager "
        f"{version} with {go} (first run only; about 5 minutes on 2 cores)",
    )
    with staged_into(staging, target, COMPONENTS, BinariesError):
        run_with_progress(command, env, module_dir, log=log, started=started, what="the control plane")
    say(log, f"evictwatch: built in {time.monotonic() - started:.0f} s into {target}")
    return target


@contextlib.contextmanager
def staged_into(staging: Path, target: Path, names: Sequence[str], error: type[Exception]) -> Iterator[None]:
    """Build into ``staging``; then move it to ``target`` only if every file in ``names`` is there.

    An interrupted or failed build leaves no half-filled cache that a later run would trust, and
    a complete ``target`` another run finished meanwhile is kept as it is.
    """
    try:
        yield
        missing = [name for name in names if not (staging / name).is_file()]
        if missing:
            raise error(f"the Go build produced no {', '.join(missing)} in {staging}")
        if not all((target / name).is_file() for name in names):
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def run_with_progress(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    *,
    log: bool,
    started: float,
    what: str,
    error: type[Exception] = BinariesError,
) -> None:
    """Run a ``go build``/``go install``, printing a progress line every 15 s (packages done).

    A failure raises ``error`` with the end of Go's output and one sentence saying why.
    """
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(15):
            say(log, f"evictwatch: ... {len(lines)} packages compiled, {time.monotonic() - started:.0f} s")

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    assert process.stdout is not None
    try:
        for line in process.stdout:
            lines.append(line.rstrip())
        code = process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        done.set()
    if code != 0:
        tail = "\n".join(lines[-25:])
        hint = (
            "the Go module proxy could not be reached or refused a module: check the network and GOPROXY"
            if any("dial tcp" in s or "proxy" in s or "404 Not Found" in s for s in lines[-25:])
            else "go failed; the last lines above say why"
        )
        raise error(f"{tail}\nBuilding {what} failed ({code}): {hint}.")


def say(log: bool, message: str) -> None:
    if log:
        print(message, file=sys.stderr, flush=True)


def build_command(ensure: Callable[[], object], error: type[Exception]) -> int:
    """What each builder's ``python -m`` does: build (or find), print where, or say why not."""
    try:
        found = ensure()
    except error as failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    print(found)
    return 0


def main() -> int:
    """``python -m evictwatch.testing.binaries``: build (or find) and print the folder."""
    return build_command(lambda: ensure_binaries().kube_apiserver.parent, BinariesError)


if __name__ == "__main__":
    raise SystemExit(main())
