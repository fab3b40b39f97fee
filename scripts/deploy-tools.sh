#!/usr/bin/env bash
# The tools scripts/check-deploy.sh validates the deployment files with, none of which
# needs a container engine: Debian's docker-compose (`config` parses and checks a compose
# file offline) and promtool (in Debian's prometheus package). Safe to run again.
set -euo pipefail

missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "deployment checks: $(docker-compose version --short), $(promtool --version | head -n 1)"
