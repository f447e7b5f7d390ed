#!/usr/bin/env bash
# Installs and starts what the integration tests need on a fresh Debian machine (as root), idempotently:
# a PostgreSQL server on loopback with a `vlm_rl` role that may create test databases, and headless Chromium.
# Prints the PostgreSQL URL the tests read from VLM_RL_TEST_POSTGRES_URL.
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null || ! command -v chromium >/dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql chromium >&2
fi

version=$(ls /usr/lib/postgresql | sort -n | tail -1)
pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >&2
pg_ctlcluster "$version" main status >/dev/null 2>&1 || pg_ctlcluster "$version" main start >&2
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')

as_postgres() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -tAc \"$1\""; }
if [ "$(as_postgres "SELECT 1 FROM pg_roles WHERE rolname = 'vlm_rl'")" != 1 ]; then
    as_postgres "CREATE ROLE vlm_rl LOGIN CREATEDB PASSWORD 'vlm_rl'" >&2
fi
if [ "$(as_postgres "SELECT 1 FROM pg_database WHERE datname = 'vlm_rl'")" != 1 ]; then
    as_postgres "CREATE DATABASE vlm_rl OWNER vlm_rl" >&2
fi
echo "postgresql://vlm_rl:vlm_rl@127.0.0.1:$port/vlm_rl"
