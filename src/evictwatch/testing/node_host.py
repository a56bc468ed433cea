"""What a real node changes on the host, taken down before it starts and put back after.

A kubelet and containerd are not contained: the kubelet sets kernel sysctls and makes cgroups
under ``/kubepods``; containerd mounts overlay filesystems, shm and network namespaces and
leaves shim sockets in ``/run/containerd``; the CNI bridge plugin makes a bridge and veth pairs.
:class:`HostSnapshot` records the state of each of these before the node starts, and
:meth:`HostSnapshot.restore` undoes every difference afterwards, so the machine is left as it
was found even after a failed test or a Ctrl-C. :meth:`HostSnapshot.differences` says what is
still changed, which lets the tests prove the teardown is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
)
"""The kubelet's kernel tunables (``setupKernelTunables``) and the CNI plugins' forwarding."""

CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBEPODS = "kubepods"
NETNS_DIR = Path("/var/run/netns")
CREATED_PATHS = (
    Path("/run/containerd"),
    Path("/var/lib/kubelet"),
    Path("/var/log/pods"),
    Path("/var/log/containers"),
    Path("/var/lib/cni"),
    Path("/var/run/netns"),
    Path("/run/nri"),
    Path("/etc/cdi"),
    Path("/var/run/cdi"),
    Path("/opt/containerd"),
)
"""Paths the node's programs may create with their defaults; each is removed if it was absent."""

IPTABLES = ("iptables", "ip6tables")


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def mount_points() -> list[str]:
    """Mount points of this mount namespace, in the order they were mounted."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(fields[4].replace("\\040", " "))
    return points


def links() -> set[str]:
    return {path.name for path in Path("/sys/class/net").iterdir()}


def addresses() -> set[str]:
    """Every IPv4 address as "<address/prefix> <link>", e.g. "127.0.0.1/8 lo"."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False
    ).stdout
    found = set()
    for line in out.splitlines():
        words = line.split()
        if "inet" in words:
            found.add(f"{words[words.index('inet') + 1]} {words[1]}")
    return found


def netns() -> set[str]:
    return {path.name for path in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set()


def kubepods_cgroups() -> list[Path]:
    """Every ``kubepods`` folder at the top of a cgroup hierarchy (v1 and v2 layouts)."""
    found = [CGROUP_ROOT / KUBEPODS] if (CGROUP_ROOT / KUBEPODS).is_dir() else []
    if CGROUP_ROOT.is_dir():
        found += [p / KUBEPODS for p in CGROUP_ROOT.iterdir() if (p / KUBEPODS).is_dir()]
    return found


def iptables_dump(command: str) -> str:
    """``iptables-save`` output without comments and counters, or "" if iptables is absent."""
    save = shutil.which(f"{command}-save")
    if save is None:
        return ""
    out = subprocess.run([save], capture_output=True, text=True, check=False).stdout
    kept = [line for line in out.splitlines() if line and not line.startswith("#")]
    return "\n".join(line.split(" [")[0] if line.startswith(":") else line for line in kept)


@dataclass
class HostSnapshot:
    """The host state a node may change, recorded before the node starts."""

    sysctls: dict[str, str] = field(default_factory=read_sysctls)
    mounts: list[str] = field(default_factory=mount_points)
    links: set[str] = field(default_factory=links)
    addresses: set[str] = field(default_factory=addresses)
    netns: set[str] = field(default_factory=netns)
    cgroups: list[Path] = field(default_factory=kubepods_cgroups)
    iptables: dict[str, str] = field(default_factory=lambda: {c: iptables_dump(c) for c in IPTABLES})
    absent_paths: list[Path] = field(default_factory=lambda: [p for p in CREATED_PATHS if not p.exists()])

    def to_json(self) -> str:
        return json.dumps(
            {
                "sysctls": self.sysctls,
                "mounts": self.mounts,
                "links": sorted(self.links),
                "addresses": sorted(self.addresses),
                "netns": sorted(self.netns),
                "cgroups": [str(p) for p in self.cgroups],
                "iptables": self.iptables,
                "absent_paths": [str(p) for p in self.absent_paths],
            }
        )

    @classmethod
    def from_json(cls, text: str) -> HostSnapshot:
        data = json.loads(text)
        return cls(
            sysctls=dict(data["sysctls"]),
            mounts=list(data["mounts"]),
            links=set(data["links"]),
            addresses=set(data["addresses"]),
            netns=set(data["netns"]),
            cgroups=[Path(p) for p in data["cgroups"]],
            iptables=dict(data["iptables"]),
            absent_paths=[Path(p) for p in data["absent_paths"]],
        )

    def differences(self) -> list[str]:
        """What differs from the snapshot now, one line each (empty when all is restored)."""
        now = HostSnapshot()
        lines = [
            f"sysctl {name} = {now.sysctls.get(name)} (was {value})"
            for name, value in self.sysctls.items()
            if now.sysctls.get(name) != value
        ]
        lines += [f"mount {point}" for point in now.mounts if point not in self.mounts]
        lines += [f"network link {name}" for name in sorted(now.links - self.links)]
        lines += [f"address {entry}" for entry in sorted(now.addresses - self.addresses)]
        lines += [f"network namespace {name}" for name in sorted(now.netns - self.netns)]
        lines += [f"cgroup {path}" for path in now.cgroups if path not in self.cgroups]
        lines += [f"{c} rules changed" for c in IPTABLES if now.iptables[c] != self.iptables[c]]
        lines += [f"path {path}" for path in self.absent_paths if path.exists()]
        return lines

    def restore(self, *, under: Path) -> list[str]:
        """Undo every change made since the snapshot; ``under`` is the node's own folder.

        Returns what could not be undone (empty on success); never raises, so that one stuck
        piece does not keep the others from being cleaned up.
        """
        problems: list[str] = []
        self.kill_cgroup_processes()
        self._unmount_new(under)
        for name in sorted(netns() - self.netns):
            _quiet(["umount", str(NETNS_DIR / name)])
            with contextlib.suppress(OSError):
                (NETNS_DIR / name).unlink()
        for name in sorted(links() - self.links):
            _quiet(["ip", "link", "delete", name])
        for entry in sorted(addresses() - self.addresses):
            address, link = entry.split()
            _quiet(["ip", "addr", "del", address, "dev", link])
        self._remove_new_cgroups(problems)
        for name, value in self.sysctls.items():
            try:
                if _sysctl_path(name).read_text().strip() != value:
                    _sysctl_path(name).write_text(value)
            except OSError as error:
                problems.append(f"sysctl {name}: {error}")
        for command in IPTABLES:
            self._restore_iptables(command, problems)
        for path in self.absent_paths:
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
            elif path.exists():
                shutil.rmtree(path, ignore_errors=True)
        return problems + self.differences()

    def kill_cgroup_processes(self) -> None:
        """SIGKILL what still runs in new kubepods cgroups: our containers, nothing else's."""
        for _ in range(20):
            pids = {pid for root in self._new_cgroups() for pid in _cgroup_pids(root)}
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def _unmount_new(self, under: Path) -> None:
        """Lazily unmount new mounts, deepest first: those below ``under``, /run and netns."""
        roots = (str(under), "/run/containerd", str(NETNS_DIR), "/var/lib/kubelet")
        for point in reversed(mount_points()):
            if point not in self.mounts and point.startswith(roots):
                _quiet(["umount", "-l", point])

    def _new_cgroups(self) -> list[Path]:
        return [path for path in kubepods_cgroups() if path not in self.cgroups]

    def _remove_new_cgroups(self, problems: list[str]) -> None:
        for root in self._new_cgroups():
            # os.walk, not rglob: it shrugs off folders the kubelet removes while we look.
            folders = [Path(top) for top, _, _ in os.walk(root, topdown=False)]
            for folder in folders:
                for _ in range(20):
                    try:
                        folder.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError as error:  # EBUSY while the last process is reaped
                        last = error
                        time.sleep(0.1)
                else:
                    problems.append(f"cgroup {folder}: {last}")

    def _restore_iptables(self, command: str, problems: list[str]) -> None:
        """Put back the saved tables, and empty the tables that did not exist before."""
        before, now = self.iptables[command], iptables_dump(command)
        if before == now:
            return
        had = _tables(before)
        if before:
            restored = subprocess.run(
                [f"{command}-restore"], input=before + "\n", capture_output=True, text=True, check=False
            )
            if restored.returncode != 0:
                problems.append(f"{command}-restore: {restored.stderr.strip()}")
        for table in _tables(now) - had:
            _quiet([command, "-t", table, "-F"])
            _quiet([command, "-t", table, "-X"])


def _tables(dump: str) -> set[str]:
    return {line[1:] for line in dump.splitlines() if line.startswith("*")}


def _cgroup_pids(root: Path) -> set[int]:
    pids: set[int] = set()
    for top, _, _ in os.walk(root):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(line) for line in (Path(top) / "cgroup.procs").read_text().split())
    return pids


def _quiet(command: list[str]) -> None:
    subprocess.run(command, capture_output=True, check=False)
