#!/usr/bin/env bash
# Start docker-compose.yml's stack for real, offline, and check it: the images are built here (the base
# from Debian's archive, .ci/build-python-image.sh; Redis from Debian's redis-server), the stack runs
# with 3 workers, and each check prints one line. Ends with `down -v`, whatever happened.
#
# Usage: .ci/compose-stack.sh      (needs a running Docker engine; run from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_PROJECT_NAME=workshopci
export PYTHON_IMAGE=${PYTHON_IMAGE:-workshop-python-base:local}
export REDIS_IMAGE=${REDIS_IMAGE:-workshop-redis:local}
# Ports of our own, away from the defaults a developer's stack may hold; a slow API, so that a day
# lasts long enough to restart Redis in the middle of it.
export REDIS_PORT=16379 API_PORT=18700 FLOWER_PORT=15555 JUPYTER_PORT=18888
export API_RATE=10 API_BURST=5 API_MAX_BATCH=5
STATIONS=400   # 80 requests at 10/s: about 8 s of fetching
compose=(docker-compose)
failures=0
check() {   # check "what" command...: one line, OK or FAIL
    local what=$1
    shift
    if out=$("$@" 2>&1); then
        echo "compose check OK   $what${out:+: $out}"
    else
        echo "compose check FAIL $what: $out"
        failures=$((failures + 1))
    fi
}
# shellcheck disable=SC2317  # (it is called, by the trap)
down() {
    if ((failures)); then "${compose[@]}" logs --tail 40 >&2 || true; fi
    "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
}
trap down EXIT

bash .ci/build-python-image.sh
bash .ci/build-redis-image.sh >/dev/null
echo "compose: building the workshop image on $PYTHON_IMAGE"
build_log=$(mktemp /tmp/compose-build.XXXXXX)
"${compose[@]}" build --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" >"$build_log" 2>&1 \
    || { tail -n 40 "$build_log" >&2; exit 1; }
rm -f "$build_log"
echo "compose: up, 3 workers"
up_log=$(mktemp /tmp/compose-up.XXXXXX)
"${compose[@]}" up -d --scale worker=3 >"$up_log" 2>&1 || { cat "$up_log" >&2; exit 1; }
rm -f "$up_log"

wait_for() {   # wait_for seconds command...: until the command succeeds
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}
redis_cli() { "${compose[@]}" exec -T redis redis-cli "$@"; }
flower_workers() {
    curl -fsS "http://127.0.0.1:$FLOWER_PORT/api/workers?refresh=1" | python3 -c \
        'import json, sys; n = len(json.load(sys.stdin)); print(f"{n} workers"); sys.exit(n != 3)'
}
wait_for 60 curl -fsS "http://127.0.0.1:$API_PORT/_health"
wait_for 90 flower_workers || true
wait_for 60 curl -fsS "http://127.0.0.1:$JUPYTER_PORT/api"

check "Redis answers PING" bash -c "[[ \$(docker-compose exec -T redis redis-cli ping | tr -d '\r') == PONG ]] && echo PONG"
check "Redis keeps an append-only file" bash -c \
    "docker-compose exec -T redis redis-cli config get appendonly | tr -d '\r' | paste -sd' ' | grep -x 'appendonly yes'"
check "the API is healthy" curl -fsS "http://127.0.0.1:$API_PORT/_health"
check "Flower's API lists 3 workers" flower_workers
check "Jupyter answers" bash -c "curl -fsS http://127.0.0.1:$JUPYTER_PORT/api | head -c 60"
check "beat sends the watchdog" wait_for 30 bash -c \
    "docker-compose logs worker | grep -q 'ch05_reporting.watchdog.*received'"

echo "compose: a day of $STATIONS stations through the stack's workers, Redis restarted in the middle"
day() { "${compose[@]}" exec -T jupyter python /workshop/.ci/compose_day.py "$@"; }
check "the day starts" day start "$STATIONS"
sleep 2
check "the day is still running" day running "$STATIONS"
check "docker-compose restart redis mid-run" bash -c "docker-compose restart redis >/dev/null 2>&1 && echo restarted"
check "the day equals the answer key, nothing lost" day check "$STATIONS"

if ((failures)); then
    echo "compose: $failures check(s) failed" >&2
    exit 1
fi
echo "compose: every check passed"
