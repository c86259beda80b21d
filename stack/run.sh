#!/usr/bin/env bash
# `make stack`: build the production image from the unchanged Dockerfile, start the services
# of the unchanged docker-compose.yml with podman, prove them through their front door, and
# tear everything down again, on success or failure.
#
# Docker's engine and Docker Hub are not needed: the base images are made locally (Debian
# bookworm from debootstrap, a Python 3.11 layer standing in for python:3.11-slim, Debian's
# PostgreSQL and Redis standing in for postgres:16 and redis:7), and compose.stack.yml maps
# the services onto them. Everything podman stores lives in var/stack-run/ and is removed at
# the end; only the debootstrap tarball is kept, in var/stack-cache/, for the next run.
#
# Needs root (podman without a daemon, debootstrap) and installs its tools with apt-get when
# they are missing. Every wait has a time limit; traffic goes to 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=$ROOT/stack
CACHE=$ROOT/var/stack-cache
RUN=$ROOT/var/stack-run
LOGS=$ROOT/var/stack-logs # kept after the teardown, for a look at a failed run
PROJECT=drip-stack
VENV_BIN=${VENV_BIN:-$ROOT/.venv/bin}
ROOTFS_TAR=$CACHE/bookworm-minbase.tar
# A rootfs older than this is made again, so the stand-ins do not drift far behind Debian.
ROOTFS_MAX_AGE_DAYS=30
STARTED=$SECONDS

export CONTAINERS_CONF=$STACK/containers.conf
export CONTAINERS_STORAGE_CONF=$RUN/storage.conf

say() { printf '[stack %4ds] %s\n' "$((SECONDS - STARTED))" "$*"; }
die() {
    say "FAILED: $*" >&2
    exit 1
}

compose() {
    timeout "${COMPOSE_TIMEOUT:-180}" "$VENV_BIN/podman-compose" --in-pod false -p "$PROJECT" \
        -f "$RUN/project/docker-compose.yml" -f "$RUN/project/compose.stack.yml" "$@"
}

# Every container is named PROJECT_SERVICE_1 by podman-compose.
container() { echo "${PROJECT}_$1_1"; }

# --- tools -------------------------------------------------------------------------------

APT_PACKAGES=(podman runc conmon netavark aardvark-dns iptables debootstrap)

install_tools() {
    [ "$(id -u)" = 0 ] || die "make stack needs root (podman without a daemon, debootstrap)"
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing ${missing[*]}"
        timeout 300 apt-get update -qq || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null || die "could not install ${missing[*]}"
    fi
    [ -x "$VENV_BIN/podman-compose" ] ||
        die "$VENV_BIN/podman-compose is missing: install the dev extra (make stack does)"
}

# --- podman's private storage ------------------------------------------------------------

prepare_storage() {
    mkdir -p "$RUN/storage" "$RUN/runroot"
    cat >"$RUN/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$RUN/storage"
runroot = "$RUN/runroot"
EOF
    local graphroot
    graphroot=$(podman info --format '{{.Store.GraphRoot}}')
    [ "$graphroot" = "$RUN/storage" ] || die "podman uses $graphroot, not the stack's own storage"
    say "tools: $(podman --version), $("$VENV_BIN/podman-compose" --version | head -1)"
}

# Removes what a run made: the compose project, then every container, volume and image in
# the stack's private storage (nothing else lives there), then the storage itself. A subshell,
# so giving up on errors here does not leak into the rest of the script.
teardown() (
    set +e
    [ -f "$RUN/storage.conf" ] || return 0
    say "tearing down"
    local graphroot
    graphroot=$(timeout 60 podman info --format '{{.Store.GraphRoot}}' 2>/dev/null)
    if [ "$graphroot" != "$RUN/storage" ]; then
        say "podman does not answer with the stack's storage; leaving $RUN for a look" >&2
        return 1
    fi
    if [ -f "$RUN/project/docker-compose.yml" ]; then
        COMPOSE_TIMEOUT=120 compose down -v -t 5 >/dev/null 2>&1
    fi
    timeout 120 podman rm -a -f -t 5 >/dev/null 2>&1
    timeout 60 podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
    timeout 60 podman volume rm -a -f >/dev/null 2>&1
    timeout 120 podman rmi -a -f >/dev/null 2>&1
    if grep -q " $RUN/" /proc/mounts; then
        timeout 60 podman unmount -a >/dev/null 2>&1
        grep " $RUN/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r umount -l
    fi
    if grep -q " $RUN/" /proc/mounts; then
        say "mounts under $RUN remain; leaving it in place" >&2
        return 1
    fi
    rm -rf "$RUN"
    say "torn down"
)

# --- images ------------------------------------------------------------------------------

# Debian bookworm (minbase) from debootstrap, kept as a tarball between runs.
bookworm_rootfs() {
    if [ -s "$ROOTFS_TAR" ] && [ -z "$(find "$ROOTFS_TAR" -mtime +"$ROOTFS_MAX_AGE_DAYS")" ]; then
        say "bookworm rootfs: cached ($ROOTFS_TAR)"
        return
    fi
    say "bookworm rootfs: debootstrap (about a minute)"
    mkdir -p "$CACHE"
    local tree=$CACHE/rootfs.tmp
    rm -rf "$tree"
    timeout 600 debootstrap --variant=minbase bookworm "$tree" >"$LOGS/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $LOGS/debootstrap.log"
    # The host's own Debian sources (with updates and security) when it is bookworm too.
    if grep -qx 'VERSION_CODENAME=bookworm' /etc/os-release &&
        [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cp /etc/apt/sources.list.d/debian.sources "$tree/etc/apt/sources.list.d/"
        rm -f "$tree/etc/apt/sources.list"
    fi
    chroot "$tree" apt-get clean
    rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/*.bin
    tar -C "$tree" --numeric-owner -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$tree"
}

build() {
    local tag=$1
    shift
    say "building $tag"
    local name=${tag##*/}
    local log=$LOGS/build-${name%%:*}.log
    timeout 600 podman build --pull=never -t "$tag" "$@" >"$log" 2>&1 || {
        tail -30 "$log" >&2
        die "building $tag failed; see $log"
    }
}

build_images() {
    bookworm_rootfs
    say "importing the bookworm rootfs"
    timeout 300 podman import -q "$ROOTFS_TAR" localhost/drip-stack/bookworm:latest >/dev/null ||
        die "podman import failed"

    mkdir -p "$RUN/python-context"
    cp /etc/ssl/certs/ca-certificates.crt "$RUN/python-context/"
    build localhost/drip-stack/python:3.11-slim -f "$STACK/python.Containerfile" \
        "$RUN/python-context"
    build localhost/drip-stack/postgres:16 -f "$STACK/postgres.Containerfile" "$STACK"
    build localhost/drip-stack/redis:7 -f "$STACK/redis.Containerfile" "$STACK"

    # The project's image from its own Dockerfile, unchanged; only the base is swapped in.
    local begun=$SECONDS
    build localhost/drip-stack/app:latest --from localhost/drip-stack/python:3.11-slim \
        -f "$ROOT/Dockerfile" "$ROOT"
    say "the Dockerfile built in $((SECONDS - begun)) s"

    # The SendGrid stand-in is a development tool, so it gets its own image on top.
    mkdir -p "$RUN/sink-context"
    if [ -f "$ROOT/devtools/pyproject.toml" ]; then
        tar -C "$ROOT" --exclude=__pycache__ --exclude='*.egg-info' --exclude=build -cf - devtools |
            tar -C "$RUN/sink-context" -xf -
    fi
    build localhost/drip-stack/sink:latest -f "$STACK/sink.Containerfile" \
        --build-arg APP=localhost/drip-stack/app:latest "$RUN/sink-context"
}

# --- the compose project -----------------------------------------------------------------

secret() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }

prepare_project() {
    # The production compose file, byte for byte, beside the override and a fresh .env, so a
    # developer's own .env is never read and nothing is written into the work tree.
    mkdir -p "$RUN/project"
    cp "$ROOT/docker-compose.yml" "$RUN/project/docker-compose.yml"
    cp "$STACK/compose.stack.yml" "$RUN/project/compose.stack.yml"
    (
        umask 077
        cat >"$RUN/project/.env" <<EOF
POSTGRES_PASSWORD=$(secret)
FLOWER_USER=stack
FLOWER_PASSWORD=$(secret)
DRIP_SECRET_KEY=$(secret)
DRIP_BASE_URL=http://127.0.0.1:5000
DRIP_EMAIL_BACKEND=sendgrid
SENDGRID_API_KEY=SG.stack-$(secret)
DRIP_SENDGRID_HOST=http://sink:8025
DRIP_TICK_SECONDS=2
EOF
    )
}

# `podman healthcheck run` is the compose file's own healthcheck, run on demand: podman
# 4.3 schedules healthchecks with systemd timers, and no systemd runs here.
wait_healthy() {
    local service=$1 limit=$2 deadline=$((SECONDS + $2))
    until timeout 30 podman healthcheck run "$(container "$service")" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            podman logs --tail 30 "$(container "$service")" >&2
            die "$service not healthy after ${limit}s"
        fi
        sleep 1
    done
    say "$service healthy"
}

wait_exited_ok() {
    local service=$1 limit=$2 code
    code=$(timeout "$limit" podman wait "$(container "$service")") ||
        die "$service did not finish within ${limit}s"
    if [ "$code" != 0 ]; then
        podman logs --tail 30 "$(container "$service")" >&2
        die "$service exited with $code"
    fi
    say "$service finished"
}

# The ports docker-compose.yml and the override publish; a taken one (say `make run` on
# 5000) would only fail later, less clearly.
check_ports() {
    local port
    for port in 5000 5555 8025; do
        python3 -c 'import socket, sys; socket.create_server(("", int(sys.argv[1]))).close()' \
            "$port" 2>/dev/null || die "port $port is taken on this machine; free it first"
    done
}

start_stack() {
    # podman-compose cannot wait for service_healthy with podman 4.3, so the order that
    # depends_on describes is kept here, stage by stage.
    say "starting postgres, redis and the SendGrid stand-in"
    compose up -d --no-build --no-deps postgres redis sink >"$LOGS/up-1.log" 2>&1 ||
        die "compose up failed: $(tail -5 "$LOGS/up-1.log")"
    wait_healthy postgres 90
    wait_healthy redis 60
    say "migrating"
    compose up -d --no-build --no-deps migrate >"$LOGS/up-2.log" 2>&1 ||
        die "compose up migrate failed: $(tail -5 "$LOGS/up-2.log")"
    wait_exited_ok migrate 120
    say "starting web, worker, beat and flower"
    compose up -d --no-build --no-deps web worker beat flower >"$LOGS/up-3.log" 2>&1 ||
        die "compose up failed: $(tail -5 "$LOGS/up-3.log")"
    wait_healthy web 90
}

show_logs() {
    for service in postgres redis migrate web worker beat flower sink; do
        echo "----- $service" >&2
        timeout 30 podman logs --tail 20 "$(container "$service")" >&2 2>&1
    done
}

# STACK_KEEP=1 (never in CI) leaves the services up after the run for a look; the next run,
# or `make stack-down`, removes them.
on_exit() {
    local code=$?
    if [ "${STACK_KEEP:-}" = 1 ] && [ "${CI:-}" != true ]; then
        say "STACK_KEEP=1: left running; CONTAINERS_CONF=$CONTAINERS_CONF" \
            "CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF podman ps"
        exit "$code"
    fi
    teardown || code=1
    exit "$code"
}

main() {
    if [ "${1:-}" = down ]; then
        teardown
        return
    fi
    say "make stack: the production image and docker-compose services, proven end to end"
    install_tools
    trap on_exit EXIT
    trap 'die "interrupted"' INT TERM
    teardown || die "could not remove what an earlier run left in $RUN"
    rm -rf "$LOGS"
    mkdir -p "$LOGS"
    prepare_storage
    build_images
    prepare_project
    check_ports
    start_stack
    say "smoke test through the front door"
    if ! timeout 300 "$VENV_BIN/python" "$STACK/smoke.py" --env "$RUN/project/.env" \
        --worker "$(container worker)"; then
        show_logs
        die "smoke test failed"
    fi
    say "stack proven in $((SECONDS - STARTED)) s; tearing it down"
}

main "$@"
