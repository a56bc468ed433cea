"""Find or build the ``helm`` command that the chart tests run (lint, template).

A ``helm`` on PATH wins. Otherwise we build the pinned release with the machine's Go
toolchain (``go install helm.sh/helm/v3/cmd/helm@<version>``, the same toolchain that builds
the control plane) and cache it per version under ``~/.cache/evictwatch/tools/helm-<version>/``,
so only the first run pays (about 70 s on 2 cores with an empty module cache).

The build stamps what Helm's own Makefile stamps: its version, and the Kubernetes version of
the client libraries it was built with. Without the latter, ``helm template`` and ``helm lint``
would assume Kubernetes v1.20 for ``.Capabilities.KubeVersion`` and the deprecation checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .binaries import build_command, cache_dir, run_with_progress, say, staged_into

HELM_VERSION = "v3.22.0"
"""The pinned release: the newest Helm 3, built with client-go v0.37 (Kubernetes 1.37, as
the test control plane) and requiring Go 1.26."""

HELM_MODULE = "helm.sh/helm/v3"
HELM_KUBE_VERSION = ("1", "37")
"""Major and minor of the k8s.io/client-go that HELM_VERSION requires (v0.37 is 1.37)."""

ENV_HELM = "EVICTWATCH_HELM"
"""Names a helm executable to use, before PATH and the cache."""


class HelmError(RuntimeError):
    """helm can't be found or built; the message says what to install or fix."""


def tools_dir() -> Path:
    """``<cache root>/tools``: the root is the one the control-plane binaries use."""
    # cache_dir() is <root>/k8s/<version>; share its root (EVICTWATCH_CACHE, XDG_CACHE_HOME, ~/.cache).
    return cache_dir().parent.parent / "tools"


def helm_cache_dir(version: str = HELM_VERSION) -> Path:
    return tools_dir() / f"helm-{version}"


def find_helm(version: str = HELM_VERSION) -> Path | None:
    """A ready helm without building: $EVICTWATCH_HELM, then PATH, then the cache."""
    named = os.environ.get(ENV_HELM)
    if named:
        path = Path(named)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise HelmError(f"{ENV_HELM}={named} is not an executable file; fix it or unset it.")
        return path
    on_path = shutil.which("helm")
    if on_path is not None:
        return Path(on_path)
    cached = helm_cache_dir(version) / "helm"
    return cached if cached.is_file() else None


def ensure_helm(version: str = HELM_VERSION, *, log: bool = True) -> Path:
    """Return a helm executable, building ``version`` once if none is found."""
    found = find_helm(version)
    if found is not None:
        return found
    return build_helm(version, log=log)


def _ldflags(version: str) -> str:
    major, minor = HELM_KUBE_VERSION
    stamps = {
        f"{HELM_MODULE}/internal/version.version": version,
        f"{HELM_MODULE}/internal/version.gitTreeState": "clean",
        f"{HELM_MODULE}/pkg/lint/rules.k8sVersionMajor": major,
        f"{HELM_MODULE}/pkg/lint/rules.k8sVersionMinor": minor,
        f"{HELM_MODULE}/pkg/chartutil.k8sVersionMajor": major,
        f"{HELM_MODULE}/pkg/chartutil.k8sVersionMinor": minor,
    }
    return "-s -w " + " ".join(f"-X {key}={value}" for key, value in stamps.items())


def build_helm(version: str = HELM_VERSION, *, log: bool = True) -> Path:
    """``go install`` helm ``version`` into its cache folder; returns the executable.

    The binary goes to a temporary folder beside the cache and is renamed into place, so an
    interrupted build never leaves a cache entry that a later run would trust.
    """
    go = shutil.which("go")
    if go is None:
        raise HelmError(
            f"Neither helm nor the Go toolchain is on PATH: install helm, or Go 1.26 or newer to build "
            f"helm {version}, or set {ENV_HELM} to a helm executable."
        )
    target = helm_cache_dir(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".helm-{version}-", dir=target.parent))
    staging.chmod(0o755)
    command = [
        go,
        "install",
        "-v",
        "-trimpath",
        "-ldflags",
        _ldflags(version),
        f"{HELM_MODULE}/cmd/helm@{version}",
    ]
    env = dict(os.environ, GOBIN=str(staging), CGO_ENABLED="0", GOFLAGS="-buildvcs=false", GO111MODULE="on")
    started = time.monotonic()
    say(log, f"evictwatch: building helm {version} with {go} (first run only; about 70 s on 2 cores)")
    with staged_into(staging, target, ["helm"], HelmError):
        run_with_progress(command, env, staging, log=log, started=started, what="helm", error=HelmError)
    say(log, f"evictwatch: built helm in {time.monotonic() - started:.0f} s into {target}")
    return target / "helm"


def run_helm(
    args: Sequence[str],
    *,
    values: Mapping[str, Any] | None = None,
    helm: Path | None = None,
    kubeconfig: Path | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``helm args...``; never raises on failure: the caller reads the returncode.

    ``values`` go in as a values file on stdin. Without ``kubeconfig`` helm sees no cluster.
    """
    command = [str(helm or ensure_helm()), *args]
    stdin = None
    if values is not None:
        command += ["--values", "-"]
        stdin = json.dumps(values)  # JSON is YAML
    # A private HOME for helm's own config and cache: no repositories, no plugins, nothing leaks in.
    with tempfile.TemporaryDirectory(prefix="evictwatch-helm-") as home:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": home,
            "HELM_CONFIG_HOME": os.path.join(home, "config"),
            "HELM_CACHE_HOME": os.path.join(home, "cache"),
            "HELM_DATA_HOME": os.path.join(home, "data"),
            "KUBECONFIG": str(kubeconfig) if kubeconfig else os.path.join(home, "no-cluster"),
        }
        return subprocess.run(command, input=stdin, env=env, capture_output=True, text=True, timeout=timeout)


def template(
    chart: Path,
    release: str,
    namespace: str,
    *,
    values: Mapping[str, Any] | None = None,
    include_crds: bool = False,
    helm: Path | None = None,
) -> str:
    """``helm template``: the rendered manifests as one YAML stream (no cluster is contacted)."""
    args = ["template", release, str(chart), "--namespace", namespace]
    if include_crds:
        args.append("--include-crds")
    result = run_helm(args, values=values, helm=helm)
    if result.returncode != 0:
        raise HelmError(f"helm template {release} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def main() -> int:
    """``python -m evictwatch.testing.helm``: build (or find) helm and print its path."""
    return build_command(ensure_helm, HelmError)


if __name__ == "__main__":
    raise SystemExit(main())
