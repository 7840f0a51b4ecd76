#!/usr/bin/env bash
# Build the Python base image CI's compose stack uses, without pulling anything: Debian bookworm from
# Debian's own archive (debootstrap: Python 3.11, venv, pip), a venv on PATH (Debian's python refuses
# `pip install` into itself), this machine's CA certificates (pip in the build goes through the same
# network as this machine, and fails certificate checks without them), trimmed, then `docker import`.
# The Dockerfile takes it as `--build-arg PYTHON_IMAGE=...`; a laptop uses python:3.11-slim instead.
#
# Usage: .ci/build-python-image.sh [--force]    (skips the build if the image exists)
# Always ends by checking that the image runs Python 3.11 and can create a venv-installed package.
set -euo pipefail

IMAGE=${PYTHON_IMAGE:-workshop-python-base:local}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
force=no
[[ ${1:-} == --force ]] && force=yes
rootfs=''
# shellcheck disable=SC2317  # (it is called, by the trap)
cleanup() {
    [[ -n $rootfs ]] && rm -rf "$rootfs"
    true
}
trap cleanup EXIT

if [[ $force == no ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "python image: $IMAGE already exists; not rebuilding (use --force)"
else
    if ! command -v debootstrap >/dev/null; then
        echo "python image: installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q debootstrap >/dev/null
    fi
    old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
    rootfs=$(mktemp -d /tmp/python-rootfs.XXXXXX)
    echo "python image: debootstrap bookworm from $MIRROR (about a minute)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 \
        || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
    rm -f "$rootfs.log"
    chroot "$rootfs" python3 -m venv /opt/venv
    # This machine's trust store, as the image's: pip (in the venv) is pointed at it below.
    cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    # Trim what a container never reads: about 300 MB down to about 170 MB.
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/* "$rootfs"/tmp/*
    find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} +
    chmod 1777 "$rootfs/tmp"
    tar -C "$rootfs" --numeric-owner -cf - . | docker import \
        --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        - "$IMAGE" >/dev/null
    if [[ -n $old_id ]]; then docker rmi "$old_id" >/dev/null 2>&1 || true; fi
    echo "python image: built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
fi

# Smoke test: the venv's python is first on PATH and is Python 3.11.
version=$(docker run --rm "$IMAGE" python -c 'import sys, venv; print("%d.%d" % sys.version_info[:2], sys.prefix)')
if [[ $version != "3.11 /opt/venv" ]]; then
    echo "python image: $IMAGE runs '$version', expected Python 3.11 from /opt/venv" >&2
    exit 1
fi
echo "python image: $IMAGE runs Python $version"
