# The workshop's entry points. Each target sets up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.installed

.PHONY: venv demo test check lab check-env exercises catch-up check-exercises notebooks bench-feedback bench-api bench-loop bench-limits bench-scale bench-cluster bench-cost bench-capstone test-faults up offline-kit figures docs docs-check slides slides-check

# WORKSHOP_OFFLINE_KIT=/path/to/kit (a folder `make offline-kit` wrote): install from its wheels only, no network.
KIT_PIP := $(if $(WORKSHOP_OFFLINE_KIT),--no-index --find-links "$(WORKSHOP_OFFLINE_KIT)/wheels")

$(READY): pyproject.toml
	@[ -z "$(WORKSHOP_OFFLINE_KIT)" ] || ls "$(WORKSHOP_OFFLINE_KIT)"/wheels/*.whl >/dev/null 2>&1 || { echo "WORKSHOP_OFFLINE_KIT=$(WORKSHOP_OFFLINE_KIT) has no wheels in wheels/: point it at the folder make offline-kit wrote (the one with README.txt and wheels/)."; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(KIT_PIP) --upgrade pip
	$(BIN)/pip install --quiet $(KIT_PIP) -e '.[dev]'
	@# an editable install skips pyproject's data-files: the Lab settings that keep notebooks as committed
	install -D -m 644 workshop/jupyter_server_config.json $(VENV)/etc/jupyter/jupyter_server_config.json
	touch $(READY)

# WORKSHOP_ENV_READY=1 (set in the stack's image, so in the dev container): this Python already has every
# package, so the targets use it as it is and no .venv is made.
ifeq ($(WORKSHOP_ENV_READY),1)
BIN := $(patsubst %/,%,$(dir $(shell command -v python3)))
venv:
	@echo "WORKSHOP_ENV_READY=1: using the Python at $(BIN), no .venv"
else
venv: $(READY)
endif

demo: venv            ## run the most advanced chapter's pipeline end to end
	$(BIN)/python -m workshop demo

# Two processes, each with a Redis of its own, a test file each at a time (a module's shared workers stay
# in one process): about 7 minutes on 2 cores. TEST_WORKERS=0 runs in one process, about twice as long.
TEST_WORKERS ?= 2
test: venv            ## the whole test suite against the solutions
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

# One exercise's own tests on your code (chapters/): its verdict in seconds. EX=5.3; TARGET=solutions for the key.
# --opt=value, not --opt value: pytest reads the command line before tests/conftest.py adds these options,
# and would take `chapters` (a folder) for the tests to run, and never load that conftest.
check: venv           ## EX=N.M: run exercise N.M's own tests on your code (chapters/), e.g. make check EX=5.3
	@test -n "$(EX)" || { echo "make check: say which exercise, e.g. make check EX=5.3 (ids: grep -rn 'exercise [0-9]' chapters)"; exit 2; }
	$(BIN)/python -m pytest --exercise=$(EX) --target=$(or $(TARGET),chapters) -q $(PYTEST_ARGS)

# Chapters 2-5's tests again, the pipeline's client losing a seeded share of Redis replies (workshop/redis_faults.py):
# each such command runs twice. These modules send every script and counted write; the summary says how many faults.
REDIS_FAULTS ?= lost-reply:0.05,seed:7
FAULT_TESTS  ?= tests/test_ch02_segmented.py tests/test_ch03_signals.py tests/test_ch04_rate_limits.py tests/test_ch05_reporting.py
test-faults: venv     ## chapters 2-5's tests with lost Redis replies (REDIS_FAULTS=lost-reply:0.05,seed:7): every write safe twice
	REDIS_FAULTS=$(REDIS_FAULTS) $(BIN)/python -m pytest $(FAULT_TESTS) $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

lab: venv             ## JupyterLab on the chapters; LAB_ARGS="--port 8899 --IdentityProvider.token=..." for more
	$(BIN)/jupyter lab --notebook-dir chapters $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) $(LAB_ARGS)

# A live view of a running day (over SSH, on a projector), read from Redis and the API's /_stats only:
# REDIS_URL (the stack's: redis://127.0.0.1:6379/0) and API_URL as the pipeline's; WATCH_ARGS="--loop ch04
# --day 2026-01-15 --redis URL --api URL --once" for another loop, day, Redis or API, or a single frame.
.PHONY: watch
watch: venv           ## a live view of a day: stages, leases, requests/s, 429s, dead letters, budget, the loop
	$(BIN)/python -m workshop watch $(WATCH_ARGS)

check-env: venv       ## OK, FAIL or SKIP per prerequisite
	$(BIN)/python -m workshop check-env

exercises: venv       ## regenerate chapters/ exercise code from solutions/
	$(BIN)/python -m workshop exercises build

catch-up: venv        ## CHAPTER=N: copy the solutions of the chapters before N into chapters/ (yours kept in chapters/.backup/)
	@test -n "$(CHAPTER)" || { echo "make catch-up: say which chapter you want to start, e.g. make catch-up CHAPTER=3"; exit 2; }
	$(BIN)/python -m workshop catch-up $(CHAPTER)

check-exercises: venv ## fail when chapters/ is out of date with solutions/
	$(BIN)/python -m workshop exercises check

notebooks: venv       ## execute every chapter notebook on the solutions, save it with its outputs (NOTEBOOKS="..." for some)
	$(BIN)/python -m workshop.notebooks run $(NOTEBOOKS)

bench-feedback: venv  ## per exercise: seconds to a verdict on the stub, a wrong attempt and the solution (about 3 min)
	$(BIN)/python -m workshop.bench_feedback --out slides/figures/feedback.json $(BENCH_ARGS)

bench-api: venv       ## the fake API's throughput
	$(BIN)/python -m workshop bench-api

# The tree the benchmarks measure (their workers follow WORKSHOP_TARGET too): WORKSHOP_TARGET=chapters
# measures your own code, once the chapters it runs are done.
BENCH_TREE := $(or $(WORKSHOP_TARGET),solutions)
bench_ready = $(if $(filter chapters,$(BENCH_TREE)),$(BIN)/python -m workshop catch-up --check $(1) &&)

bench-loop: venv      ## chapter 1's periodic pipeline, chapter 2's segments on beat, chapter 3's loop: same day, side by side
	$(call bench_ready,3) PYTHONPATH=$(BENCH_TREE) $(BIN)/python -m ch03_signals.benchmark $(BENCH_ARGS)

bench-limits: venv    ## chapter 4's global limiter vs Celery's per-worker rate_limit (and chapter 1), two workers
	$(call bench_ready,4) PYTHONPATH=$(BENCH_TREE) $(BIN)/python -m ch04_rate_limits.bench $(BENCH_ARGS)

bench-scale: venv     ## chapter 4's loop unthrottled at 1k, 10k, 100k stations: cost per batch; a turn vs a raw task making the same API call (exits 1 on a miss)
	$(call bench_ready,4) PYTHONPATH=$(BENCH_TREE) $(BIN)/python -m ch04_rate_limits.bench_scale $(BENCH_ARGS)

bench-cluster: venv   ## chapter 4's days with their state on 1 Redis vs a 3-master Redis Cluster: stations/s, Redis CPU and commands per node
	$(call bench_ready,4) PYTHONPATH=$(BENCH_TREE) $(BIN)/python -m workshop.bench_cluster $(BENCH_ARGS)

bench-cost: venv      ## what a day costs: chapter 1's periodic pipeline, chapter 4's loop, chapter 5's budget-aware loop
	$(call bench_ready,5) PYTHONPATH=$(BENCH_TREE) $(BIN)/python -m ch05_reporting.bench_cost $(BENCH_ARGS)

bench-capstone: venv  ## chapter 6: periodic vs looped, scale-out (1, 2, 4 workers), a Redis restart under a naive pipeline and the loop
	$(call bench_ready,6) PYTHONPATH=$(BENCH_TREE) $(BIN)/python -m ch06_capstone.bench $(BENCH_ARGS)

# KIT_PYTHONS="3.11 3.12" and KIT_PLATFORMS="linux-x86_64 linux-aarch64 macos-x86_64 macos-arm64" (the defaults;
# "current" for this machine's) narrow the wheelhouse; see workshop/offline_kit.py.
KIT_DIR ?= offline-kit
offline-kit: venv     ## the USB kit for a room without Wi-Fi in KIT_DIR (offline-kit/): wheels, docker images, slides
	$(BIN)/python -m workshop offline-kit --out "$(KIT_DIR)"

# The compose stack (docker/stack.sh): `docker compose` if the Docker CLI has it, else docker-compose 1.29
# (COMPOSE="..." to choose). STACK_WORKERS workers; `make day` runs STATIONS stations through them.
.PHONY: down day
STACK_WORKERS ?= 3
STATIONS ?= 2000
up:                   ## redis, API, workers (3), beat, flower, jupyter in containers, in the background; prints the URLs
	@bash docker/stack.sh up $(STACK_WORKERS)

day:                  ## a day of the last chapter's pipeline through the stack's workers (STATIONS=2000): watch it in Flower
	@bash docker/stack.sh day $(STATIONS)

down:                 ## stop the stack (DOWN_ARGS=-v also drops Redis's data)
	@bash docker/stack.sh down $(DOWN_ARGS)

# The deck (slides/README.md): figures measured by the benchmarks, then Marp and mermaid-cli from
# slides/package-lock.json, rendered with Debian's Chromium. Nothing is fetched at render time.
figures: venv         ## run the benchmarks at small sizes, write the plots and numbers the deck and the prose show (about 6 min)
	$(call bench_ready,6) $(BIN)/python slides/figures.py $(FIGURES_ARGS)
	$(BIN)/python -m workshop.docs build

# The numbers the READMEs, deep dives, instructor notes and notebooks quote from a benchmark, filled from
# slides/figures/values.json (`<!-- fig: name -->...<!-- /fig -->` spans; workshop/docs.py).
docs: venv            ## fill every measured figure the prose quotes from slides/figures/ (make figures measures them)
	$(BIN)/python -m workshop.docs build

docs-check: venv      ## fail when a quoted figure is not the one in slides/figures/values.json
	$(BIN)/python -m workshop.docs check

slides/node_modules/.installed: slides/package.json slides/package-lock.json
	npm ci --prefix slides --no-audit --no-fund
	touch $@

slides: venv slides/node_modules/.installed  ## build slides/dist/workshop.html (and .pdf with Chromium) from slides/workshop.md
	$(BIN)/python slides/build.py

slides-check: venv    ## open the built deck in headless Chromium: no network, no console error, every chapter and figure
	@$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/pip install --quiet -e '.[slides]'
	$(BIN)/python slides/check.py
