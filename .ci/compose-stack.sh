#!/usr/bin/env bash
# Start docker-compose.yml's stack for real, offline, the way an attendee does (`make up`, `make day`,
# `make down`), and check it: the images are built here (the base from Debian's archive,
# .ci/build-python-image.sh; Redis from Debian's redis-server), `make up` runs it with 3 workers and
# prints the URLs, and each check prints one line. Ends with `make down` (and its volumes), whatever happened.
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
# The Makefile picks `docker compose` or docker-compose the same way (docker/stack.sh).
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
export COMPOSE="${compose[*]}"
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
    rm -f chapters/ci-owner-probe.ipynb "${cookies:-}" "${up_log:-}"
    make down DOWN_ARGS=-v >/dev/null 2>&1 || true
}
trap down EXIT

bash .ci/build-python-image.sh
bash .ci/build-redis-image.sh >/dev/null
# Built every time (from the cache: seconds; one service builds the image they all run), so that the
# stack runs this checkout's Dockerfile; `make up` alone builds only a missing image.
echo "compose: building the workshop image on $PYTHON_IMAGE"
build_log=$(mktemp /tmp/compose-build.XXXXXX)
"${compose[@]}" build api >"$build_log" 2>&1 || { tail -n 40 "$build_log" >&2; exit 1; }
rm -f "$build_log"
echo "compose: make up (3 workers)"
up_log=$(mktemp /tmp/compose-up.XXXXXX)
up_start=$SECONDS
make up >"$up_log" 2>&1 || { cat "$up_log" >&2; exit 1; }
echo "compose: make up took $((SECONDS - up_start)) s; it printed:"
sed -n '/^The stack is up/,$p' "$up_log"

wait_for() {   # wait_for seconds command...: until the command succeeds
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}
flower_workers() {
    curl -fsS "http://127.0.0.1:$FLOWER_PORT/api/workers?refresh=1" | python3 -c \
        'import json, sys; n = len(json.load(sys.stdin)); print(f"{n} workers"); sys.exit(n != 3)'
}
wait_for 60 curl -fsS "http://127.0.0.1:$API_PORT/_health"
wait_for 90 flower_workers || true
wait_for 60 curl -fsS "http://127.0.0.1:$JUPYTER_PORT/api"

prints() { grep -F -- "$1" "$up_log" >/dev/null && echo "$1"; }
check "make up prints Flower's URL" prints "http://127.0.0.1:$FLOWER_PORT"
check "make up prints Jupyter's URL" prints "http://127.0.0.1:$JUPYTER_PORT/lab"
check "make up prints the API's URL" prints "http://127.0.0.1:$API_PORT/_stats"
check "Redis answers PING" bash -c "[[ \$(${compose[*]} exec -T redis redis-cli ping | tr -d '\r') == PONG ]] && echo PONG"
check "Redis keeps an append-only file" bash -c \
    "${compose[*]} exec -T redis redis-cli config get appendonly | tr -d '\r' | paste -sd' ' | grep -x 'appendonly yes'"
check "the API is healthy" curl -fsS "http://127.0.0.1:$API_PORT/_health"
check "Flower's API lists 3 workers" flower_workers
check "Jupyter answers" bash -c "curl -fsS http://127.0.0.1:$JUPYTER_PORT/api | head -c 60"
check "beat sends the watchdog" wait_for 30 bash -c \
    "${compose[*]} logs worker | grep -q 'ch05_reporting.watchdog.*received'"

# Jupyter saves as the checkout's owner: a notebook written through Jupyter's own API (what Lab's save
# does) lands in chapters/ owned by whoever owns the checkout, and Jupyter calls it writable. The same
# start-up adopts any other owner too: a container on a folder of uid 4321 runs as 4321.
cookies=$(mktemp /tmp/compose-jupyter.XXXXXX)
jupyter_api() {   # jupyter_api METHOD PATH [JSON]: with the _xsrf cookie Lab would send
    [[ -s $cookies ]] || curl -fsS -c "$cookies" -o /dev/null "http://127.0.0.1:$JUPYTER_PORT/lab"
    curl -fsS -b "$cookies" -H "X-XSRFToken: $(awk '$6 == "_xsrf" {print $7}' "$cookies")" -X "$1" \
        -H 'Content-Type: application/json' ${3:+-d "$3"} "http://127.0.0.1:$JUPYTER_PORT/api/contents/$2"
}
saved_as_owner() {
    local owner probe=chapters/ci-owner-probe.ipynb
    owner=$(stat -c %u:%g .)
    jupyter_api PUT ci-owner-probe.ipynb \
        '{"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}' >/dev/null
    [[ $(stat -c %u:%g "$probe") == "$owner" ]] || { echo "saved as $(stat -c %u:%g "$probe"), checkout is $owner"; return 1; }
    jupyter_api GET 'ci-owner-probe.ipynb?content=0' | grep -q '"writable": true' || { echo "Jupyter calls it read-only"; return 1; }
    jupyter_api DELETE ci-owner-probe.ipynb >/dev/null
    [[ ! -e $probe ]] || { echo "Jupyter could not delete it"; return 1; }
    ! compgen -G '.Trash-*' >/dev/null || { echo "Jupyter moved it to $(compgen -G '.Trash-*'), in the checkout"; return 1; }
    echo "saved, writable and deleted as $owner, the checkout's owner"
}
adopts_owner() {   # the command runs as the owner, and so does `docker exec -u workshop` (the dev container's user)
    local dir cid exec_ids file_ids
    dir=$(mktemp -d /tmp/compose-owner.XXXXXX)
    chown 4321:4321 "$dir"
    cid=$(docker run -d -v "$dir:/workshop" workshop-python:local sh -c 'touch /workshop/probe && sleep 30')
    # The probe exists once the start-up is done (user `workshop` changed, command started).
    docker exec "$cid" sh -c 'until [ -e /workshop/probe ]; do sleep 0.2; done'
    exec_ids=$(docker exec -u workshop "$cid" sh -c 'echo "$(id -u):$(id -g)"')
    docker rm -f "$cid" >/dev/null
    file_ids=$(stat -c %u:%g "$dir/probe")
    rm -rf "$dir"
    [[ $file_ids == 4321:4321 && $exec_ids == 4321:4321 ]] \
        && echo "its command wrote a file owned by $file_ids; docker exec -u workshop runs as $exec_ids"
}
check "Jupyter saves a notebook as the checkout's owner" saved_as_owner
check "a container adopts the owner of another checkout (uid 4321)" adopts_owner
check "FLOWER_URL reaches Flower from inside the jupyter container" "${compose[@]}" exec -T jupyter python -c \
    "from ch06_capstone import watch; print(watch.STACK_URL, len(watch.workers(watch.STACK_URL)), 'workers'); \
assert watch.STACK_URL == 'http://flower:5555' and len(watch.workers(watch.STACK_URL)) == 3"

echo "compose: make day STATIONS=$STATIONS"
check "make day completes, equal to the answer key" bash -c "set -o pipefail; make day STATIONS=$STATIONS 2>&1 | tail -n 1"
flower_saw_the_day() {   # what `make day` says to watch: Flower's Tasks, from the workers' events
    curl -fsS "http://127.0.0.1:$FLOWER_PORT/api/tasks" | python3 -c 'import collections, json, sys
tasks = json.load(sys.stdin).values()
seen = collections.Counter(t["name"] for t in tasks if t.get("state") == "SUCCESS" and "fetch" in (t["name"] or ""))
print(", ".join(f"{n} {name}" for name, n in seen.items())); sys.exit(not seen)'
}
check "Flower's Tasks show the day's fetches" flower_saw_the_day

echo "compose: a day of $STATIONS stations through the stack's workers, Redis restarted in the middle"
day() { "${compose[@]}" exec -T jupyter python -m workshop stack-day "$@"; }
check "the day starts" day start "$STATIONS"
sleep 2
check "the day is still running" day running "$STATIONS"
check "${compose[*]} restart redis mid-run" bash -c "${compose[*]} restart redis >/dev/null 2>&1 && echo restarted"
check "the day equals the answer key, nothing lost" day check "$STATIONS"

down_start=$SECONDS
check "make down" bash -c "make down DOWN_ARGS=-v >/dev/null 2>&1 && [[ -z \$(${compose[*]} ps -q) ]] && echo 'no container left'"
echo "compose: make down took $((SECONDS - down_start)) s"

if ((failures)); then
    echo "compose: $failures check(s) failed" >&2
    exit 1
fi
echo "compose: every check passed"
