#!/usr/bin/env bash
# The compose stack for the day (docker-compose.yml), behind `make up`, `make day`, `make down`.
#
#   docker/stack.sh up [WORKERS]    build the image if missing, start everything in the background with
#                                   WORKERS workers (default 3), wait until Flower and Jupyter answer, print the URLs
#   docker/stack.sh urls            where each service is, how to watch and stop
#   docker/stack.sh day [STATIONS]  a day of the last chapter's pipeline through the stack's workers
#                                   (python -m workshop stack-day run, in the jupyter service): watch it in Flower
#   docker/stack.sh down [ARGS]     stop and remove the containers (ARGS: e.g. -v to drop Redis's data too)
#
# COMPOSE="docker compose" or COMPOSE=docker-compose chooses the tool; by default compose v2 if the
# Docker CLI has it, else docker-compose 1.29. Nothing here pulls an image except compose's own first
# `up` of a Redis image that is not there yet (see the top of docker-compose.yml).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z ${COMPOSE:-} ]]; then
    if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"
    elif command -v docker-compose >/dev/null; then COMPOSE=docker-compose
    else
        echo "Neither \`docker compose\` nor \`docker-compose\` is installed: install Docker Desktop, or Docker Engine" \
             "with its compose plugin (see TROUBLESHOOTING.md)." >&2
        exit 2
    fi
fi
read -r -a compose <<<"$COMPOSE"

need_docker() {
    docker info >/dev/null 2>&1 && return 0
    echo "Docker is not running (\`docker info\` does not answer): start Docker Desktop, or the Docker engine" \
         "(sudo systemctl start docker), then run this again (see TROUBLESHOOTING.md)." >&2
    exit 2
}

# host:port compose published a service's port on ("" when the service is not up).
published() { { "${compose[@]}" port "$1" "$2" 2>/dev/null || true; } | tail -n 1 | sed 's/^0\.0\.0\.0:/127.0.0.1:/'; }

answers() {   # answers URL: true once an HTTP GET of URL succeeds
    if command -v curl >/dev/null; then curl -fsS -o /dev/null --max-time 3 "$1"
    else python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' "$1"
    fi
}

wait_for() {   # wait_for SECONDS URL: until the URL answers; false after SECONDS
    local deadline=$((SECONDS + $1))
    until answers "$2" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

up() {
    local workers=${1:-3} image log
    need_docker
    image=$("${compose[@]}" config 2>/dev/null | sed -n 's/^ *image: *\(workshop-python[^ ]*\)$/\1/p' | head -n 1)
    # Built once: later `up`s start from it (offline too); the checkout is mounted over the image's copy of the
    # code. Rebuild after changing pyproject.toml or the Dockerfile: `docker compose build`. An image from
    # before docker/entrypoint.sh would run everything as root (compose starts it as root): rebuilt too.
    if [[ -n $image ]] && ! docker image inspect "$image" >/dev/null 2>&1; then
        echo "stack: building $image (once; a minute or two)"
        "${compose[@]}" build api
    elif [[ -n $image && $(docker image inspect -f '{{json .Config.Entrypoint}}' "$image") != *workshop-entrypoint* ]]; then
        echo "stack: $image predates its entrypoint (the containers' uid); rebuilding it"
        "${compose[@]}" build api
    fi
    log=$(mktemp)
    if ! "${compose[@]}" up -d --scale "worker=$workers" 2>&1 | tee "$log"; then
        if grep -qiE 'port is already allocated|address already in use' "$log"; then
            echo "stack: a port the stack publishes is taken (above): stop what holds it, or choose others," \
                 "e.g. REDIS_PORT=16379 API_PORT=18700 FLOWER_PORT=15555 JUPYTER_PORT=18888 make up" >&2
        fi
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    local flower jupyter
    flower=$(published flower 5555) jupyter=$(published jupyter 8888)
    wait_for 90 "http://$flower/api/workers" || echo "stack: Flower does not answer yet on http://$flower" >&2
    wait_for 90 "http://$jupyter/api" || echo "stack: Jupyter does not answer yet on http://$jupyter" >&2
    urls "$workers"
}

urls() {
    local workers=${1:-} flower jupyter api redis
    flower=$(published flower 5555) jupyter=$(published jupyter 8888)
    api=$(published api 8700) redis=$(published redis 6379)
    [[ -n $flower$jupyter ]] || { echo "stack: not running (make up starts it)"; return 1; }
    printf '\nThe stack is up%s, on this machine only (127.0.0.1):\n' "${workers:+ with $workers workers}"
    printf '  %-9s %-34s %s\n' \
        Flower "http://$flower" "workers, tasks, queues" \
        Jupyter "http://$jupyter/lab" "the chapters; no token (loopback only); saves as the checkout's owner" \
        "fake API" "http://$api/_stats" "requests, 429s, the bill" \
        Redis "redis://$redis/0" ""
    printf '\n  %-44s %s\n' \
        "make day" "a day through the stack's workers: watch it in Flower's Tasks tab" \
        "$COMPOSE logs -f worker" "what the workers do" \
        "$COMPOSE restart worker beat" "after editing code the workers run" \
        "make down" "stop it (DOWN_ARGS=-v also drops Redis's data)"
}

day() {
    local stations=${1:-2000} flower
    need_docker
    flower=$(published flower 5555)
    [[ -n $flower ]] || { echo "stack: not running: \`make up\` first." >&2; exit 2; }
    echo "stack: a day of $stations stations; watch it in Flower: http://$flower/tasks (and /workers)"
    # At the stack's default limit (20 requests/s, 50 stations a request) 2,000 stations take seconds.
    echo "stack: for a day long enough to watch: make down && API_RATE=5 API_MAX_BATCH=10 make up (about 40 s a day)"
    "${compose[@]}" exec -T jupyter python -m workshop stack-day run "$stations"
}

down() {
    need_docker
    "${compose[@]}" down --remove-orphans "$@"
}

command=${1:-}
shift || true
case $command in
    up) up "$@" ;;
    urls) urls "$@" ;;
    day) day "$@" ;;
    down) down "$@" ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
