#!/usr/bin/env bash
# Start a Docker engine for CI, unless one already answers `docker info`.
#
# Usage: .ci/start-docker.sh [PIDFILE]
# If we start dockerd, its PID is written to PIDFILE (default: $LOG_DIR/dockerd.pid)
# so the caller can stop exactly that process later (never by name).
# The engine log goes to $LOG_DIR/dockerd.log (LOG_DIR defaults to a fresh tmp dir).
set -euo pipefail

if docker info >/dev/null 2>&1; then
    echo "docker: an engine already answers; not starting one"
    exit 0
fi

log_dir=${LOG_DIR:-$(mktemp -d /tmp/ci-docker.XXXXXX)}
mkdir -p "$log_dir"
pidfile=${1:-$log_dir/dockerd.pid}

# --iptables=false: CI machines may have no usable netfilter; published ports then
# go through docker-proxy. --ip=127.0.0.1: published ports default to loopback only.
dockerd --iptables=false --ip=127.0.0.1 </dev/null >"$log_dir/dockerd.log" 2>&1 &
pid=$!
echo "$pid" >"$pidfile"
echo "docker: started dockerd (pid $pid, log $log_dir/dockerd.log)"

for _ in $(seq 60); do
    if docker info >/dev/null 2>&1; then
        echo "docker: engine ready ($(docker version --format '{{.Server.Version}}'))"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "docker: dockerd exited during start-up; last log lines:" >&2
        tail -n 30 "$log_dir/dockerd.log" >&2
        exit 1
    fi
    sleep 1
done
echo "docker: dockerd did not answer within 60 s; last log lines:" >&2
tail -n 30 "$log_dir/dockerd.log" >&2
exit 1
