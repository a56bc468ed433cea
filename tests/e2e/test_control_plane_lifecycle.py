"""The harness cleans up after itself on every way out, and says clearly what went wrong."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evictwatch.testing import binaries
from evictwatch.testing.binaries import BinariesError, ensure_binaries, find_binaries
from evictwatch.testing.controlplane import ControlPlane, ControlPlaneError


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait(predicate: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def start_in_subprocess(tmp_path: Path) -> tuple[subprocess.Popen[bytes], list[int], int]:
    kubeconfig = tmp_path / "kubeconfig"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evictwatch.cli",
            "control-plane",
            "--without-controller-manager",
            "--kubeconfig-out",
            str(kubeconfig),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait(kubeconfig.exists, 60), "the control plane did not come up"
    assert wait(lambda: len(children_of(process.pid)) == 2, 10)
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    port = int(server.rsplit(":", 1)[1])
    assert port_open(port)
    return process, children_of(process.pid), port


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_process_or_port_left_behind(tmp_path: Path, how: signal.Signals) -> None:
    process, children, port = start_in_subprocess(tmp_path)
    process.send_signal(how)
    process.wait(timeout=30)
    # Ctrl-C and SIGTERM stop the children; SIGKILL leaves it to PR_SET_PDEATHSIG.
    assert wait(lambda: not any(alive(pid) for pid in children), 20), [p for p in children if alive(p)]
    assert wait(lambda: not port_open(port), 10)


def test_startup_failure_shows_the_components_log(control_plane: ControlPlane) -> None:
    failing = ControlPlane(binaries=control_plane.binaries, extra_apiserver_args=["--no-such-flag"])
    with pytest.raises(ControlPlaneError) as caught:
        failing.start()
    message = str(caught.value)
    assert "kube-apiserver exited" in message and "unknown flag: --no-such-flag" in message
    assert failing._components == {}  # etcd, which had started, was stopped again


def test_kubebuilder_assets_are_used_as_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = ensure_binaries()
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("etcd", "kube-apiserver"):
        (assets / name).symlink_to(getattr(built, name.replace("-", "_")))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    found = find_binaries()
    assert found is not None and found.version == "assets" and found.kube_controller_manager is None
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path / "empty"))
    with pytest.raises(BinariesError, match="lacks etcd, kube-apiserver"):
        find_binaries()


def test_missing_go_is_one_clear_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("EVICTWATCH_CACHE", str(tmp_path / "cache"))  # nothing built here
    monkeypatch.setenv("PATH", str(tmp_path))  # and no go on PATH
    with pytest.raises(BinariesError, match=r"^The Go toolchain is not on PATH: install Go 1.26 or newer"):
        binaries.ensure_binaries(log=False)
    assert not binaries.cache_dir().exists()  # no half-built cache left to trust later
