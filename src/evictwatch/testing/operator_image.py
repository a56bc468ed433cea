"""Build the operator's image the Dockerfile's way, without a Docker engine or a registry.

The Dockerfile installs the wheel and its dependencies on a slim Debian Python. Here the same
parts come from where this machine can reach: Debian's Python 3.11 packages (``apt-get
download``, unpacked with ``dpkg-deb -x``: no maintainer scripts run, nothing is installed on
the host) form the root filesystem, pip installs the project's wheel with its binary wheels for
CPython 3.11 into ``/opt/evictwatch/lib``, and the result is one layer in the ``docker save``
layout that ``ctr images import`` reads. The entry point and environment match the Dockerfile's,
so the chart's ``args: [run, --config, ...]`` run unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .binaries import say
from .node_binaries import NodeBinariesError, write_image_archive

IMAGE = "evictwatch.local/evictwatch:0.1.0"
DEBIAN_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib")
"""The Python runtime; their dependencies are added by apt, less what a Python never runs."""
_SKIPPED = {"dpkg", "install-info", "perl", "perl-base", "perl-modules-5.36", "libperl5.36", "tar"}
_SKIPPED |= {"mailcap", "mime-support"}
REPO_ROOT = Path(__file__).parents[3]


def _run(command: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeBinariesError(f"{' '.join(command[:3])} ... failed: {result.stderr.strip()[-800:]}")
    return result.stdout


def _debian_packages() -> list[str]:
    skip = ("--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces")
    listing = _run(
        ["apt-cache", "depends", "--recurse", *skip, "--no-enhances", "--no-pre-depends", *DEBIAN_PACKAGES]
    )
    names = {line for line in listing.splitlines() if line and not line.startswith((" ", "<"))}
    return sorted(names - _SKIPPED)


def _root_filesystem(work: Path) -> Path:
    """Unpack Debian's Python and its libraries into ``work/rootfs``."""
    debs, rootfs = work / "debs", work / "rootfs"
    debs.mkdir()
    try:
        _run(["apt-get", "download", *_debian_packages()], cwd=debs)
    except NodeBinariesError:  # a fresh machine has no package lists yet
        _run(["apt-get", "update", "-qq"])
        _run(["apt-get", "download", *_debian_packages()], cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(rootfs)])
    return rootfs


def _install_wheel(rootfs: Path, work: Path) -> None:
    """The project's wheel and its dependencies, binary wheels for CPython 3.11 on x86-64 only."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "wheels"), str(REPO_ROOT)])
    wheel = next((work / "wheels").glob("evictwatch-*.whl"))
    platforms = [
        f"--platform={p}" for p in ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
    ]
    target = ("--target", str(rootfs / "opt" / "evictwatch" / "lib"))
    python = ("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311")
    _run(
        [
            *pip,
            "install",
            "--quiet",
            "--no-compile",
            "--only-binary=:all:",
            *python,
            *platforms,
            *target,
            str(wheel),
        ]
    )


def _layer_contents(rootfs: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    for top, folders, names in os.walk(rootfs):
        for name in [*names, *(f for f in folders if (Path(top) / f).is_symlink())]:
            path = Path(top) / name
            relative = str(path.relative_to(rootfs))
            if path.is_symlink():
                links[relative] = os.readlink(path)
            elif path.is_file():
                files[relative] = path.read_bytes()
    return files, links


def build_operator_image(target: Path, *, log: bool = True) -> Path:
    """Write the operator image archive to ``target`` (a .tar); returns it."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="evictwatch-image-") as folder:
        work = Path(folder)
        rootfs = _root_filesystem(work)
        _install_wheel(rootfs, work)
        shutil.rmtree(rootfs / "usr" / "share" / "doc", ignore_errors=True)
        files, links = _layer_contents(rootfs)
        env = [
            "PATH=/usr/bin:/bin",
            "PYTHONPATH=/opt/evictwatch/lib",
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
        ]
        write_image_archive(
            target, IMAGE, files, links, ["/usr/bin/python3.11", "-m", "evictwatch.cli"], env=env
        )
    say(log, f"evictwatch: built the operator image in {time.monotonic() - started:.0f} s into {target}")
    return target
