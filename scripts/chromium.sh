#!/usr/bin/env bash
# Debian's chromium, which the report test (tests/e2e/test_report.py) opens
# `maas models report` in, headless, to check that its plots render. Safe to run again.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null
fi
echo "report checks: $(chromium --version 2>/dev/null | head -n 1)"
