#!/usr/bin/env bash
# Build the Redis image CI uses, without pulling anything: Debian's redis-server
# (and redis-cli, for compose's healthcheck) plus the shared libraries they link,
# packed into a tar root filesystem and loaded with `docker import`.
#
# Usage: .ci/build-redis-image.sh [--force]    (skips the build if the image exists)
# Always ends by checking that a container of the image answers PING on a published port.
set -euo pipefail

IMAGE=${REDIS_IMAGE:-workshop-redis:local}
force=no
[[ ${1:-} == --force ]] && force=yes
rootfs='' cid=''
# shellcheck disable=SC2317  # (it is called, by the trap)
cleanup() {
    [[ -n $rootfs ]] && rm -rf "$rootfs"
    [[ -n $cid ]] && docker rm -f "$cid" >/dev/null 2>&1
    true
}
trap cleanup EXIT

if [[ $force == no ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "redis image: $IMAGE already exists; not rebuilding (use --force)"
else
    old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
    rootfs=$(mktemp -d /tmp/redis-rootfs.XXXXXX)
    # Same merged-/usr layout as Debian, so the loader path baked into the binary
    # (/lib64/ld-linux-x86-64.so.2) and ldd's /lib/... paths all resolve.
    mkdir -p "$rootfs"/usr/{bin,lib,lib64} "$rootfs"/{data,tmp,etc}
    ln -s usr/bin "$rootfs/bin"; ln -s usr/lib "$rootfs/lib"; ln -s usr/lib64 "$rootfs/lib64"
    chmod 1777 "$rootfs/tmp"
    echo 'root:x:0:0:root:/data:/bin/false' >"$rootfs/etc/passwd"
    echo 'root:x:0:' >"$rootfs/etc/group"

    # cp -L: on Debian redis-server is a symlink to redis-check-rdb, and redis picks
    # its mode from argv[0], so the file must really be called redis-server.
    for bin in redis-server redis-cli; do
        cp -L "$(command -v "$bin")" "$rootfs/usr/bin/$bin"
        # ldd lines: "libx.so.1 => /path (0x..)" or "/lib64/ld-linux-x86-64.so.2 (0x..)"
        ldd "$(command -v "$bin")" | grep -o '/[^ ]*' | while read -r lib; do
            mkdir -p "$rootfs$(dirname "$lib")"
            cp -L "$lib" "$rootfs$lib"
        done
    done

    # The CMD args matter: Redis defaults to protected mode, which refuses clients
    # that come through docker's port proxy (not loopback inside the container).
    tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -cf - . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'WORKDIR /data' \
        --change 'EXPOSE 6379' \
        --change 'CMD ["/usr/bin/redis-server","--bind","0.0.0.0","--protected-mode","no"]' \
        - "$IMAGE" >/dev/null
    # --force: drop the image we replaced (fails harmlessly if a container uses it)
    if [[ -n $old_id ]]; then docker rmi "$old_id" >/dev/null 2>&1 || true; fi
    echo "redis image: built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
fi

# Smoke test: run it with a random loopback port and PING it from the host.
cid=$(docker run -d -p 127.0.0.1::6379 "$IMAGE")
port=$(docker port "$cid" 6379/tcp | head -n1 | sed 's/.*://')
for _ in $(seq 30); do
    if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]; then
        echo "redis image: $IMAGE answers PONG on 127.0.0.1:$port"
        exit 0
    fi
    sleep 0.5
done
echo "redis image: $IMAGE did not answer PING on 127.0.0.1:$port; container log:" >&2
docker logs "$cid" >&2 || true
exit 1
