"""The configuration files of a real test node: containerd's, the CNI network's, the kubelet's.

Every path points into the node's own folder, so that what the node writes can be found and
removed; the settings that the host needs (this machine has cgroup v1 and a root without
CAP_SYS_RESOURCE) and the short timings that keep tests at seconds are explained where set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .node_binaries import PAUSE_IMAGE

CNI_BIN_DIR = Path("/usr/lib/cni")
"""Where Debian's containernetworking-plugins puts bridge, host-local and loopback."""
BRIDGE = "ewnode0"
POD_SUBNET = "10.213.0.0/24"
"""A private range no route of this machine uses; pods reach each other and nothing else."""

DEFAULT_EVICTION_HARD = {
    "memory.available": "100Mi",
    "nodefs.available": "2%",
    "imagefs.available": "2%",
    "nodefs.inodesFree": "2%",
}
"""All four thresholds, so none falls back to the 10-15 % disk defaults that a busy disk hits."""


def containerd_config(workdir: Path, *, runc: str) -> str:
    """containerd v2 config (version 3) with root, state, socket and CNI under ``workdir``."""
    w = workdir / "containerd"
    return f"""\
version = 3
root = "{w / "root"}"
state = "{w / "state"}"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{w / "containerd.sock"}"

[ttrpc]
  address = "{w / "containerd.sock.ttrpc"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{w / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to start
  # ("can't get final child's PID from pipe") when runc lowers the OOM score.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  cdi_spec_dirs = []

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["{CNI_BIN_DIR}"]
  conf_dir = "{workdir / "cni"}"

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "{runc}"
  SystemdCgroup = false
"""


SERVICE_IP = "10.96.0.1"
"""The ``kubernetes`` Service's address (the control plane's first service IP), where Pods
look for the API server."""


def cni_config(workdir: Path, *, api_from_pods: bool = False) -> str:
    """A bridge without masquerading and with no default route in the Pods: no way off the machine.

    ``api_from_pods`` gives the bridge the subnet's gateway address and the Pods one route, to
    the ``kubernetes`` Service's address through it, so that an in-cluster client (the chart's
    operator) reaches the API server; without it the host has no address on the pod network.
    """
    ipam: dict[str, Any] = {
        "type": "host-local",
        "ranges": [[{"subnet": POD_SUBNET}]],
        "dataDir": str(workdir / "cni-ipam"),
    }
    if api_from_pods:
        ipam["routes"] = [{"dst": f"{SERVICE_IP}/32"}]
    config = {
        "cniVersion": "1.0.0",
        "name": "evictwatch",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": api_from_pods,
                "isDefaultGateway": False,
                "ipMasq": False,
                "ipam": ipam,
            }
        ],
    }
    return json.dumps(config, indent=2)


def kubelet_config(
    workdir: Path,
    *,
    node_ip: str,
    port: int,
    healthz_port: int,
    ca_file: Path,
    eviction_hard: Mapping[str, str],
) -> str:
    """KubeletConfiguration for one test node on this host (cgroup v1, cgroupfs, no swap check)."""
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{workdir / 'containerd' / 'containerd.sock'}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,  # the machines that run the tests have cgroup v1
        "failSwapOn": False,
        "podLogsDir": str(workdir / "pod-logs"),
        "resolvConf": "",  # Pods get no DNS: there is none to reach
        "maxPods": 30,
        "serializeImagePulls": False,
        # Test timings: status every 2 s, a pressure condition held 5 s after it clears.
        "nodeStatusUpdateFrequency": "2s",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "evictionPressureTransitionPeriod": "5s",
        # emptyDir usage is measured this often (default 1 m): the ephemeral-storage limit's clock.
        "volumeStatsAggPeriod": "2s",
        "evictionHard": dict(eviction_hard),
        "evictionMaxPodGracePeriod": 5,
        # The memory threshold is checked on the kernel's notification, not only every 10 s.
        "kernelMemcgNotification": True,
        # Never remove the imported images: nothing could pull them back.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    }
    return yaml.safe_dump(config, sort_keys=False)
