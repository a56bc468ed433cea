#!/usr/bin/env bash
# Set up everything on a fresh machine and run evictwatch against a local sandbox control plane:
# a virtualenv with the package (pip), etcd + kube-apiserver + kube-controller-manager built once
# with the machine's Go toolchain (cached in ~/.cache/evictwatch), then `evictwatch sandbox`.
# As root, the demo's Pods run on a real node: Debian's runc, CNI plugins and busybox-static are
# installed when missing, and kubelet, kubectl and containerd are built once the same way.
# Pass --once to exit after the demo; otherwise it runs until Ctrl-C. --node fake skips the real
# node; --output json prints one document {node, records}.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
if [ "$(id -u)" -eq 0 ]; then
  ./scripts/install-node-packages.sh
fi
exec .venv/bin/evictwatch sandbox "$@"
