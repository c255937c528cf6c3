#!/usr/bin/env bash
# System packages the tests need: Debian's Chromium for the end-to-end browser test.
# Skipped when already there or when apt is not available (then the e2e test says why it skipped).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "note: chromium not installed (needs apt-get as root); the browser test will be skipped" >&2
fi
