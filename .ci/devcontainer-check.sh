#!/usr/bin/env bash
# The dev container for real, offline: the Dev Containers CLI (pinned in .ci/devcontainer-cli/, `npm ci`)
# brings up .devcontainer/devcontainer.json from images built here (nothing is pulled: the CLI pulls only
# an image `docker inspect` cannot find), then runs `make check-env` and chapter 1's tests inside it, as the
# container's user, and tears it down (its containers and volumes), whatever happened.
#
# Usage: .ci/devcontainer-check.sh      (needs a running Docker engine and npm; run from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

export PYTHON_IMAGE=${PYTHON_IMAGE:-workshop-python-base:local}
export REDIS_IMAGE=${REDIS_IMAGE:-workshop-redis:local}
# Ports of our own, away from a developer's stack and from .ci/compose-stack.sh's.
export REDIS_PORT=26379 API_PORT=28700 FLOWER_PORT=25555 JUPYTER_PORT=28888
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
cli=.ci/devcontainer-cli/node_modules/.bin/devcontainer
failures=0
check() {   # check "what" command...: one line, OK or FAIL (the output's last lines on FAIL)
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        echo "devcontainer check OK   $what${out:+: $(tail -n 1 <<<"$out")}"
    else
        echo "devcontainer check FAIL $what:"
        tail -n 30 <<<"$out"
        failures=$((failures + 1))
    fi
}
# shellcheck disable=SC2317  # (it is called, by the trap)
teardown() {   # the CLI has no `down`: its compose project, found by the label it puts on the container
    local project
    project=$(docker ps -a --filter "label=devcontainer.local_folder=$PWD" \
        --format '{{.Label "com.docker.compose.project"}}' | head -n 1)
    [[ -n $project ]] || return 0
    "${compose[@]}" --project-name "$project" -f docker-compose.yml down -v --remove-orphans >/dev/null 2>&1 || true
    echo "devcontainer: removed compose project $project"
}
trap teardown EXIT

echo "devcontainer: the CLI from .ci/devcontainer-cli/package-lock.json"
npm ci --prefix .ci/devcontainer-cli --no-audit --no-fund --loglevel=error >/dev/null
echo "devcontainer: $("$cli" --version) (Dev Containers CLI)"

# Every image the dev container names, here before `up`: the base and Redis from Debian (as the compose
# check builds them), the workshop image on that base (compose's build: the CLI would build it otherwise).
bash .ci/build-python-image.sh >/dev/null
bash .ci/build-redis-image.sh >/dev/null
build_log=$(mktemp /tmp/devcontainer-build.XXXXXX)
"${compose[@]}" build api >"$build_log" 2>&1 || { tail -n 40 "$build_log" >&2; exit 1; }
rm -f "$build_log"
for image in "$PYTHON_IMAGE" "$REDIS_IMAGE" workshop-python:local; do
    docker image inspect "$image" >/dev/null || { echo "devcontainer: $image is not here" >&2; exit 1; }
done

up_log=$(mktemp /tmp/devcontainer-up.XXXXXX)
up_start=$SECONDS
if ! "$cli" up --workspace-folder . --log-level info >"$up_log" 2>&1; then
    tail -n 40 "$up_log" >&2
    exit 1
fi
echo "devcontainer: up in $((SECONDS - up_start)) s: $(tail -n 1 "$up_log")"
if grep -qiE '(^|[^a-z])(pulling|docker pull)' "$up_log"; then
    grep -iE 'pull' "$up_log" >&2
    echo "devcontainer: the CLI pulled an image (above); every image must be local" >&2
    exit 1
fi
rm -f "$up_log"

in_container() { "$cli" exec --workspace-folder . "$@"; }
owner=$(stat -c %u:%g .)
check "its user is the checkout's owner ($owner)" in_container bash -c \
    "[[ \$(id -u):\$(id -g) == $owner ]] && echo \"\$(id -un) is \$(id -u):\$(id -g)\""
# The image's Python, no .venv (WORKSHOP_ENV_READY=1); the Docker line is a SKIP there (Redis is the stack's).
# shellcheck disable=SC2016  # (expanded inside the container)
check "make check-env says ready, on the image's Python" in_container bash -c \
    'out=$(make check-env) && grep -q "no .venv" <<<"$out" && grep "^OK    Redis" <<<"$out" && tail -n 1 <<<"$out"'
check "chapter 1's tests pass inside" in_container \
    python -m pytest tests/test_ch01_periodic.py -q -p no:cacheprovider

if ((failures)); then
    echo "devcontainer: $failures check(s) failed" >&2
    exit 1
fi
echo "devcontainer: every check passed"
