#!/usr/bin/env bash
# The webhook and watcher tests again, on the oldest Kubernetes evictwatch supports (1.31: the
# first minor that serves the CRD's selectableFields by default). Its etcd, kube-apiserver and
# kube-controller-manager are built once, like the pinned release's, from their own Go module
# (src/evictwatch/testing/gobuild/v1.31) into ~/.cache/evictwatch/k8s/v1.31.13.
# Run after scripts/test.sh, which makes the virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

export EVICTWATCH_KUBERNETES_VERSION=v1.31.13
.venv/bin/python -m evictwatch.testing.binaries >/dev/null
.venv/bin/python -m pytest tests/e2e/test_webhook.py tests/e2e/test_watchers.py "$@"
