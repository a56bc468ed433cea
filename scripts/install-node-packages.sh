#!/usr/bin/env bash
# Install the Debian packages the real test node needs (src/evictwatch/testing/node.py):
# runc (the container runtime containerd calls), containernetworking-plugins (the pod network's
# bridge and host-local IPAM), busybox-static (the busybox image's one binary) and gcc with
# libc6-dev (the static pause binary). Idempotent: does nothing when all are installed.
# Not root and without sudo: says so and exits 0, since the real-node tests then skip (outside CI).
set -euo pipefail

missing=()
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || [ -f /usr/lib/libc.a ] || missing+=(libc6-dev)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "install-node-packages.sh: not root; the real-node tests need root and ${missing[*]}" >&2
    exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
