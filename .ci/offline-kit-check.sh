#!/usr/bin/env bash
# The offline kit for real: build a small one (this machine's Python and platform only, no images, to stay
# fast), then do what an attendee without Wi-Fi does: in a copy of the checkout,
# `make venv WORKSHOP_OFFLINE_KIT=KIT` creates a fresh .venv from the kit alone, and the kit's checks run
# in it. pip is cut off from everything else: no config file (PIP_CONFIG_FILE=/dev/null: this machine's
# find-links and extra indexes), no PIP_* settings, and a dead proxy for any HTTP(S) it would still try.
# Redis: a redis-server of our own on a free 127.0.0.1 port, stopped by its PID.
#
# Usage: .ci/offline-kit-check.sh        (from anywhere; needs .venv, python3 with venv, redis-server, make)
# One line per check, OK or FAIL; exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d /tmp/offline-kit-check.XXXXXX)
redis_pid=''
# shellcheck disable=SC2317  # (it is called, by the trap)
cleanup() {
    if [[ -n $redis_pid ]]; then kill "$redis_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
check() {   # check "what" command...: one line, OK or FAIL (with the command's last lines on a FAIL)
    local what=$1 out rc=0
    shift
    out=$("$@" 2>&1) || rc=$?
    if ((rc == 0)); then
        echo "offline-kit check OK   $what${out:+: $(tail -n 1 <<<"$out")}"
    else
        echo "offline-kit check FAIL $what (exit $rc):"
        tail -n 15 <<<"$out" | sed 's/^/    /'
        failures=$((failures + 1))
    fi
}

version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
kit=$tmp/kit
echo "offline-kit: building a kit for Python $version, this platform, into $kit"
started=$SECONDS
KIT_PYTHONS=$version KIT_PLATFORMS=current .venv/bin/python -m workshop offline-kit --out "$kit" \
    --no-images --strict || { echo "offline-kit check FAIL building the kit"; exit 1; }
echo "offline-kit: built in $((SECONDS - started)) s"

# A copy of the checkout, as an attendee has it (without .venv); CI's own files stay untouched.
src=$tmp/workshop
mkdir -p "$src"
cp -r Makefile pyproject.toml README.md workshop solutions chapters tests "$src"/
find "$src" -name __pycache__ -prune -exec rm -rf {} +

# From here on pip sees the kit and nothing else; while it installs, any HTTP(S) goes to a dead proxy
# (only then: the workshop's own requests to 127.0.0.1 would go there too).
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_NO_INDEX PIP_REQUIRE_VIRTUALENV
no_network=(env http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9
            HTTPS_PROXY=http://127.0.0.1:9 no_proxy='' NO_PROXY='')

mkdir -p "$tmp/empty"
no_kit() {   # a folder without wheels: make stops with its one sentence, before creating .venv
    local out rc=0
    out=$("${no_network[@]}" make -C "$src" venv WORKSHOP_OFFLINE_KIT="$tmp/empty" PYTHON="$PYTHON" 2>&1) || rc=$?
    ((rc != 0)) && grep -q "has no wheels in wheels/" <<<"$out" && [[ ! -e $src/.venv ]] \
        && echo "refused: $(grep -m1 'has no wheels' <<<"$out")"
}
check "make venv with an empty WORKSHOP_OFFLINE_KIT stops with one sentence" no_kit

started=$SECONDS
check "make venv WORKSHOP_OFFLINE_KIT=kit (fresh .venv, no index, no network)" \
    "${no_network[@]}" make --no-print-directory -C "$src" venv WORKSHOP_OFFLINE_KIT="$kit" PYTHON="$PYTHON"
echo "offline-kit: installed in $((SECONDS - started)) s"
bin=$src/.venv/bin
[[ -x $bin/python ]] || { echo "offline-kit check FAIL: no .venv was created"; exit 1; }
cd "$src"   # imports below come from the fresh .venv and the copy, never from the CI checkout
check "pip check (every dependency installed and compatible)" "$bin/pip" check
check "packages in the fresh .venv" bash -c "echo \$('$bin/pip' list --format=freeze 2>/dev/null | wc -l) installed"
check "the checkout is installed editable from the kit" \
    "$bin/python" -c "import workshop, pathlib; p = pathlib.Path(workshop.__file__).resolve(); \
assert p.is_relative_to(pathlib.Path('$src').resolve()), p; print(p)"
# The compiled wheels (numpy, pandas, matplotlib, pyzmq, ...) load on this machine; matplotlib draws.
check "the heavy packages import and matplotlib draws" "$bin/python" -c "
import matplotlib; matplotlib.use('Agg')
import io, numpy, pandas, pandera, matplotlib.pyplot as plt, zmq, tornado, jupyterlab, flower, ipykernel, nbclient
fig = plt.figure(); plt.plot(numpy.arange(5)); buf = io.BytesIO(); fig.savefig(buf, format='png')
print(f'numpy {numpy.__version__}, pandas {pandas.__version__}, a {len(buf.getvalue())}-byte png')"

port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$tmp/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
export REDIS_URL=redis://127.0.0.1:$port/0
unset WORKSHOP_TARGET
export CH02_DB=$tmp/summaries.sqlite3 CH05_REPORTS=$tmp/reports   # the demo's files, gone with $tmp

check "python -m workshop check-env" "$bin/python" -m workshop check-env
check "the kit's self-check (python -m workshop demo --pipeline workshop.selfcheck)" \
    "$bin/python" -m workshop demo --pipeline workshop.selfcheck
check "make demo (the last chapter's pipeline end to end)" make demo WORKSHOP_OFFLINE_KIT="$kit"
check "pytest with xdist and timeout from the kit (two kit test files, -n 2)" \
    "$bin/python" -m pytest -q -n 2 -p no:cacheprovider tests/test_kit_settings.py tests/test_kit_progress.py

if ((failures)); then
    echo "offline-kit: $failures check(s) failed"
    exit 1
fi
echo "offline-kit: all checks passed"
