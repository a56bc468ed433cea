#!/usr/bin/env bash
# Set up everything on a fresh machine and run the whole test suite:
#   1. a virtualenv in .venv with the package and its test dependencies (pip);
#   2. etcd, kube-apiserver and kube-controller-manager at the pinned release, built once with
#      the machine's Go toolchain from the Go module proxy into ~/.cache/evictwatch (reused after);
#   3. helm and cert-manager (for the chart tests) and Prometheus (for the dashboard's queries),
#      built the same way, and Debian's Chromium (for the report's browser test), when missing;
#   4. the real node's parts (as root): Debian's runc, CNI plugins and busybox-static, then
#      kubelet, kubectl, containerd and the pause and busybox images, built once the same way;
#   5. ruff, mypy --strict, the layer contracts (import-linter, pyproject.toml), then pytest (unit
#      and end-to-end on the real control plane and the real node).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

.venv/bin/python -m evictwatch.testing.binaries >/dev/null
.venv/bin/python -m evictwatch.testing.helm >/dev/null
.venv/bin/python -m evictwatch.testing.prometheus >/dev/null
.venv/bin/python -m evictwatch.testing.cert_manager >/dev/null
./scripts/install-chromium.sh
if [ "$(id -u)" -eq 0 ]; then
  ./scripts/install-node-packages.sh
  .venv/bin/python -m evictwatch.testing.node_binaries >/dev/null
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
