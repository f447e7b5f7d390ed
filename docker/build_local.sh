#!/usr/bin/env bash
# Builds every image of docker/ with no network but Debian's and Python's package registries (no Docker Hub):
# the base images are Debian bookworm roots made by debootstrap, and pip installs from a wheelhouse made on this
# host (`pip wheel`, with the host's pip settings: here the CPU torch wheel comes from disk). Root, Docker running.
# The roots' tarballs and the wheelhouse are kept in $VLM_RL_DOCKER_CACHE (default ~/.cache/vlm_rl_assets/docker)
# and the imported bases keep their ids, so a second build reuses all of it and Docker's layers.
#   docker/build_local.sh            # vlm_rl_assets_user_code, vlm_rl_assets_dagster, vlm_rl_assets_postgres
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${VLM_RL_DOCKER_CACHE:-$HOME/.cache/vlm_rl_assets/docker}
python=${PYTHON:-python3}
mkdir -p "$cache/wheelhouse"

# base_image NAME PACKAGES: a Debian root with PACKAGES, imported as the image NAME
base_image() {
    local tarball="$cache/$1.tar"
    if [ ! -f "$tarball" ]; then
        local root
        root=$(mktemp -d)
        debootstrap --variant=minbase --include="$2" bookworm "$root" http://deb.debian.org/debian >&2
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
        rm -rf "$root"
    fi
    docker image inspect "$1" >/dev/null 2>&1 || docker import - "$1" < "$tarball" >/dev/null
}
base_image vlm_rl_assets_base_python python3,python3-venv,ca-certificates
base_image vlm_rl_assets_base_postgres postgresql-15

# The wheelhouse: every dependency of '.[deploy]' (the Dagster image's packages are among them) and the build
# backend, as wheels for this Python; made again when pyproject.toml changes.
stamp=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$cache/wheelhouse/.pyproject.sha256" 2>/dev/null)" != "$stamp" ]; then
    "$python" -m pip wheel --quiet --wheel-dir "$cache/wheelhouse" --find-links "$cache/wheelhouse" \
        torch==2.13.0 setuptools '.[deploy]'
    rm -f "$cache"/wheelhouse/vlm_rl_assets-*.whl
    echo "$stamp" > "$cache/wheelhouse/.pyproject.sha256"
fi

# pip in the build reads the wheelhouse over HTTP on the host's loopback (builds on the host network), so no wheel
# lands in a layer; the URL stays the same from build to build, and so do the cached layers
port=${VLM_RL_WHEELHOUSE_PORT:-8765}
"$python" -m http.server --bind 127.0.0.1 --directory "$cache/wheelhouse" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server' EXIT
until "$python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null; do
    kill -0 $server || { echo "no wheelhouse server on port $port (VLM_RL_WHEELHOUSE_PORT)" >&2; exit 1; }
    sleep 0.2
done
offline=(--network host --build-arg BASE_IMAGE=vlm_rl_assets_base_python --build-arg PIP_NO_INDEX=1
         --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$port/")
docker build -q "${offline[@]}" -f docker/Dockerfile.user_code -t vlm_rl_assets_user_code .
docker build -q "${offline[@]}" -f docker/Dockerfile.dagster -t vlm_rl_assets_dagster .
docker build -q --build-arg BASE_IMAGE=vlm_rl_assets_base_postgres -f docker/Dockerfile.postgres_debian \
    -t vlm_rl_assets_postgres .
