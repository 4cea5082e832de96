#!/usr/bin/env bash
# Prepare a container engine on a Debian/Ubuntu machine without registry access:
# install podman (+ runc), write a containers.conf that works in this kind of sandbox, and import a
# debootstrapped base image from the machine's own Debian mirror. Idempotent.
# Usage: scripts/container-setup.sh [BASE_TAG] [SUITE]
set -euo pipefail
BASE_TAG=${1:-localhost/debian:trixie}
SUITE=${2:-trixie}
STATE=${CONTAINER_STATE_DIR:-$PWD/.dev/containers}
mkdir -p "$STATE"

apt_install() {
    for i in 1 2 3 4 5 6 7 8 9 10; do
        if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; then return 0; fi
        echo "apt-get install failed (attempt $i; dpkg lock?), retrying in 10s" >&2; sleep 10
    done
    return 1
}

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -q
    apt_install podman buildah runc debootstrap fuse-overlayfs uidmap slirp4netns ca-certificates
fi

CONF="$STATE/containers.conf"
cat > "$CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$CONF"

if ! podman image exists "$BASE_TAG"; then
    mirror=$(grep -hoE '^URIs: *http[^ ]*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
    mirror=${mirror:-$(grep -hoE '^deb +http[^ ]*debian/? ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')}
    mirror=${mirror:-http://deb.debian.org/debian}
    root="$STATE/rootfs-$SUITE"
    rm -rf "$root"
    echo "debootstrap $SUITE from $mirror (about a minute)" >&2
    debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$STATE/debootstrap.log" 2>&1 || {
        tail -20 "$STATE/debootstrap.log" >&2; exit 1; }
    # Same mirror inside the image, so `apt-get install` in builds works without a registry.
    echo "deb $mirror $SUITE main" > "$root/etc/apt/sources.list"
    # Slim it like debian:*-slim: no package cache, docs, man pages or locales (now and in later installs).
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
        "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    cat > "$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
SLIM
    tar -C "$root" -c . | podman import - "$BASE_TAG" >/dev/null
    rm -rf "$root"
fi
echo "CONTAINERS_CONF=$CONF"
