#!/usr/bin/env bash
# The deployment test's prerequisites on a fresh Debian machine (as root), idempotently: Docker's engine and
# compose and debootstrap from Debian, the engine started, and docker/'s images built with no other network
# (docker/build_local.sh; its cache makes a second run take seconds). PYTHON: the interpreter whose pip makes the
# wheelhouse.
set -euo pipefail
cd "$(dirname "$0")/.."
compose() { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; }
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! compose; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >&2
fi
if ! docker info >/dev/null 2>&1; then
    nohup dockerd > /var/log/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
start=$(date +%s)
docker/build_local.sh >&2
echo "docker/build_local.sh: $(( $(date +%s) - start )) s" >&2
