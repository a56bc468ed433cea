#!/usr/bin/env bash
# Set up everything on a fresh machine and run evictwatch against a local sandbox control plane:
# a virtualenv with the package (pip), etcd + kube-apiserver + kube-controller-manager built once
# with the machine's Go toolchain (cached in ~/.cache/evictwatch), then `evictwatch sandbox`.
# Pass --once to exit after the demo; otherwise it runs until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/evictwatch sandbox "$@"
