#!/usr/bin/env bash
# Install headless Chromium (Debian package) for `evictwatch report --format png` and the
# browser test (tests/e2e/test_report_browser.py). Idempotent: does nothing when a Chromium
# is already installed. Needs root (or sudo) and the distribution's package mirror.
set -euo pipefail

if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "install-chromium.sh: Chromium is missing and this is not root; run: apt-get install -y chromium" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "install-chromium.sh: chromium still not on PATH" >&2; exit 1; }
