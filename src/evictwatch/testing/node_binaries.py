"""Find or build what a real test node runs: kubelet, kubectl, containerd and two images.

The node must agree with the control plane, so kubelet and kubectl come from the same Go
module (``gobuild/``) at the same pinned release. containerd v2 comes from its own small Go
module (``containerd/``) beside this file. No image registry is reachable from the machines
that run the tests, so the two images a Pod needs are built here from local parts: the pause
image from the C source that ships inside the Kubernetes module, and a busybox image from
Debian's static busybox. Each piece is cached per version under ``~/.cache/evictwatch/node/``
(the same root as the control plane's), built into a staging folder and renamed into place, so
only the first run pays and an interrupted build is never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .binaries import (
    GO_MODULE_DIR,
    KUBERNETES_VERSION,
    _go,
    _version_ldflags,
    build_command,
    cache_dir,
    run_with_progress,
    say,
    staged_into,
)

CONTAINERD_VERSION = "v2.4.2"
"""The pinned containerd release. Must match ``require`` in containerd/go.mod."""

CONTAINERD_MODULE_DIR = Path(__file__).with_name("containerd")
PAUSE_IMAGE = "evictwatch.local/pause:3.10.2"
"""The sandbox image containerd is told to use; 3.10.2 is the Makefile tag at the pin."""
BUSYBOX_IMAGE = "evictwatch.local/busybox:latest"
"""The image every test Pod runs (``imagePullPolicy: Never``: nothing can be pulled)."""

_KUBE_COMMANDS = {"kubelet": "k8s.io/kubernetes/cmd/kubelet", "kubectl": "k8s.io/kubernetes/cmd/kubectl"}
_CONTAINERD_COMMANDS = ("containerd", "containerd-shim-runc-v2", "ctr")
_IMAGE_FILES = ("pause.tar", "busybox.tar")
BUSYBOX_BINARY = Path("/bin/busybox")


class NodeBinariesError(RuntimeError):
    """A node part can't be found or built; the message says what to install or fix."""


@dataclass(frozen=True)
class NodeBinaries:
    """Paths of every executable and image archive the node needs."""

    kubelet: Path
    kubectl: Path
    containerd: Path
    shim: Path
    ctr: Path
    pause_image: Path
    busybox_image: Path

    @property
    def containerd_dir(self) -> Path:
        """The folder that must be on containerd's PATH (it finds its shim there)."""
        return self.containerd.parent


def node_cache_root() -> Path:
    """``<cache root>/node``: the root is the one the control-plane binaries use."""
    return cache_dir().parent.parent / "node"


def _kube_dir() -> Path:
    return node_cache_root() / f"kubernetes-{KUBERNETES_VERSION}"


def _containerd_dir() -> Path:
    return node_cache_root() / f"containerd-{CONTAINERD_VERSION}"


def _images_dir() -> Path:
    return node_cache_root() / f"images-{KUBERNETES_VERSION}"


def find_node_binaries() -> NodeBinaries | None:
    """Return the cached parts without building, or None if any is missing."""
    kube, ctd, images = _kube_dir(), _containerd_dir(), _images_dir()
    wanted = [kube / name for name in _KUBE_COMMANDS]
    wanted += [ctd / name for name in _CONTAINERD_COMMANDS]
    wanted += [images / name for name in _IMAGE_FILES]
    if not all(path.is_file() for path in wanted):
        return None
    return NodeBinaries(
        kubelet=kube / "kubelet",
        kubectl=kube / "kubectl",
        containerd=ctd / "containerd",
        shim=ctd / "containerd-shim-runc-v2",
        ctr=ctd / "ctr",
        pause_image=images / "pause.tar",
        busybox_image=images / "busybox.tar",
    )


def ensure_node_binaries(*, log: bool = True) -> NodeBinaries:
    """Return the node's parts, building the missing ones once."""
    if not all((_kube_dir() / name).is_file() for name in _KUBE_COMMANDS):
        build_kube_commands(log=log)
    if not all((_containerd_dir() / name).is_file() for name in _CONTAINERD_COMMANDS):
        build_containerd(log=log)
    if not all((_images_dir() / name).is_file() for name in _IMAGE_FILES):
        build_images(log=log)
    found = find_node_binaries()
    if found is None:  # pragma: no cover - the builders raise before this can happen
        raise NodeBinariesError(f"the builds finished but {node_cache_root()} is incomplete")
    return found


def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))


def build_kube_commands(*, log: bool = True) -> Path:
    """``go build`` kubelet and kubectl from the control plane's module, stamped the same way."""
    go, target = _go(), _kube_dir()
    staging = _staging(target)
    command = [go, "build", "-v", "-trimpath", "-tags", "providerless", "-ldflags"]
    command += [_version_ldflags(KUBERNETES_VERSION), "-o", str(staging) + os.sep, *_KUBE_COMMANDS.values()]
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
    started = time.monotonic()
    say(log, f"evictwatch: building kubelet and kubectl {KUBERNETES_VERSION} (first run only)")
    with staged_into(staging, target, list(_KUBE_COMMANDS), NodeBinariesError):
        run_with_progress(
            command, env, GO_MODULE_DIR, log=log, started=started, what="kubelet", error=NodeBinariesError
        )
    say(log, f"evictwatch: built kubelet and kubectl in {time.monotonic() - started:.0f} s into {target}")
    return target


def build_containerd(*, log: bool = True) -> Path:
    """``go build`` containerd, its runc shim and ctr at the pinned release (static, no cgo)."""
    go, target = _go(), _containerd_dir()
    staging = _staging(target)
    stamp = f"-s -w -X github.com/containerd/containerd/v2/version.Version={CONTAINERD_VERSION}"
    packages = [f"github.com/containerd/containerd/v2/cmd/{name}" for name in _CONTAINERD_COMMANDS]
    command = [go, "build", "-v", "-trimpath", "-tags", "no_btrfs no_devmapper no_zfs", "-ldflags", stamp]
    command += ["-o", str(staging) + os.sep, *packages]
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
    started = time.monotonic()
    say(log, f"evictwatch: building containerd {CONTAINERD_VERSION} (first run only)")
    with staged_into(staging, target, _CONTAINERD_COMMANDS, NodeBinariesError):
        run_with_progress(
            command,
            env,
            CONTAINERD_MODULE_DIR,
            log=log,
            started=started,
            what="containerd",
            error=NodeBinariesError,
        )
    say(log, f"evictwatch: built containerd in {time.monotonic() - started:.0f} s into {target}")
    return target


def build_images(*, log: bool = True) -> Path:
    """Write the pause and busybox images as docker archives that ``ctr images import`` reads."""
    target = _images_dir()
    staging = _staging(target)
    started = time.monotonic()
    with staged_into(staging, target, _IMAGE_FILES, NodeBinariesError):
        pause = _compile_pause(staging)
        write_image_archive(staging / "pause.tar", PAUSE_IMAGE, {"pause": pause}, {}, ["/pause"])
        write_image_archive(staging / "busybox.tar", BUSYBOX_IMAGE, *_busybox_files(), ["/bin/sh"])
    say(log, f"evictwatch: built the pause and busybox images in {time.monotonic() - started:.1f} s")
    return target


def _compile_pause(workdir: Path) -> bytes:
    """Compile ``build/pause/linux/pause.c`` from the Kubernetes module, static as upstream does."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise NodeBinariesError("gcc is not on PATH: install gcc and libc6-dev to build the pause image.")
    listing = subprocess.run(
        [_go(), "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
        cwd=GO_MODULE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    source = Path(listing.stdout.strip()) / "build" / "pause" / "linux" / "pause.c"
    if listing.returncode != 0 or not source.is_file():
        raise NodeBinariesError(
            f"the Kubernetes module's pause.c was not found ({listing.stderr.strip()}); "
            "build the control plane first (python -m evictwatch.testing.binaries)."
        )
    output = workdir / "pause"
    compiled = subprocess.run(
        [gcc, "-Os", "-static", "-DVERSION=v3.10.2-evictwatch", "-o", str(output), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if compiled.returncode != 0:
        raise NodeBinariesError(f"compiling pause.c failed: {compiled.stderr.strip()}")
    data = output.read_bytes()
    output.unlink()
    return data


def _busybox_files() -> tuple[dict[str, bytes], dict[str, str]]:
    """``bin/busybox`` and a symlink per applet (sh, sleep, dd, ...), from Debian's static build."""
    if not BUSYBOX_BINARY.is_file():
        raise NodeBinariesError(
            f"{BUSYBOX_BINARY} is missing: install Debian's busybox-static to build the busybox image."
        )
    applets = subprocess.run(
        [str(BUSYBOX_BINARY), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    links = {f"bin/{name}": "busybox" for name in applets if name != "busybox"}
    return {"bin/busybox": BUSYBOX_BINARY.read_bytes()}, links


def write_image_archive(
    path: Path,
    reference: str,
    files: dict[str, bytes],
    links: dict[str, str],
    entrypoint: list[str],
    *,
    env: list[str] | None = None,
) -> None:
    """One-layer image in the ``docker save`` layout: manifest.json, config, layer tar.

    Files are executable and owned by root; ``links`` maps a path to a symlink target.
    """
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parents = {str(p) for name in [*files, *links] for p in Path(name).parents}
        for directory in sorted(parents - {"."} - set(links)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for name, target in sorted(links.items()):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": env or ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": ["layer.tar"]}]
    with tarfile.open(path, mode="w") as archive:
        for name, data in (
            ("manifest.json", json.dumps(manifest).encode()),
            (config_name, config_bytes),
            ("layer.tar", layer_bytes),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))


def main() -> int:
    """``python -m evictwatch.testing.node_binaries``: build (or find) and print the cache root."""
    return build_command(lambda: (ensure_node_binaries(), node_cache_root())[1], NodeBinariesError)


if __name__ == "__main__":
    raise SystemExit(main())
