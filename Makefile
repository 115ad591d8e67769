# repro: reproducible framework benchmarks. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
WORKLOAD ?= resnet-50
FRAMEWORK ?= torch
SWEEP ?= sweeps/frameworks-small.yaml
# Whether FRAMEWORK was given (not the default above): a lesson's default framework is its own.
FRAMEWORK_GIVEN := $(if $(filter file,$(origin FRAMEWORK)),,1)
# Every value a user gives is data, never code: read raw (no make expansion of `$(...)`),
# exported, and quoted in recipes as "$$NAME", so no value is pasted into a shell command.
# An empty WORKLOAD= or FRAMEWORK= reaches repro as an empty argument: an error, not the default.
USER_VARS := WORKLOAD FRAMEWORK PARAMS KERNEL UNPINNED ALLOW_DRIFT FORCE_MEMORY RUNS_DIR REBUILD \
	RUNS FAIL_IF_SLOWER ALLOW_MIXED REPORT TRUST TOLERANCE RUN HAVE SWEEP ADDRESS RETRIES DEST \
	UPGRADE NAME BY THRESHOLD PORT IP TOKEN YES
$(foreach v,$(USER_VARS),$(eval override $(v) := $$(value $(v))))
export $(USER_VARS)
REPRO := $(VENV)/bin/repro
# repro names an option by its make variable (ALLOW_MIXED=1, not --allow-mixed) when make ran it.
export REPRO_MAKE_VARS := $(USER_VARS)
# A run parameter given as a make variable (`make run STEPS=5`) would be ignored: stop instead,
# showing the PARAMS form. The names come from plan.py (makevars.py), asked only when the command
# line sets a variable not in USER_VARS, so `make help` stays instant; values are shown, never run.
OTHER_VARS := $(filter-out $(USER_VARS),$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))))
PARAM_VARS := $(if $(OTHER_VARS),$(shell python3 repro/driver/makevars.py))
AS_PARAMS := $(foreach v,$(OTHER_VARS),$(if $(filter $(v):%,$(PARAM_VARS)),$(v)))
PARAM_OF = $(patsubst $(1):%,%,$(filter $(1):%,$(PARAM_VARS)))
$(if $(AS_PARAMS),$(error run parameters go in PARAMS, not in make variables ($(AS_PARAMS)): \
	make $(or $(firstword $(MAKECMDGOALS)),run) PARAMS="$(strip $(PARAMS) \
	$(foreach v,$(AS_PARAMS),$(call PARAM_OF,$(v))=$(value $(v))))"))
export JUPYTER_PATH := $(CURDIR)/.jupyter$(if $(JUPYTER_PATH),:$(JUPYTER_PATH))

.DEFAULT_GOAL := help

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_.-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo ""
	@echo "  make run WORKLOAD=resnet-50 FRAMEWORK=jax PARAMS=\"batch_size=4 steps=20\""
	@echo "  options: UNPINNED=1 (existing interpreter), ALLOW_DRIFT=1, KERNEL=torch-cpu, FORCE_MEMORY=1,"
	@echo "  RUNS_DIR=path (default runs/). Values reach repro as data: quote them for your shell."

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --progress-bar off -e ".[dev]"  # not quiet: the first run says what it does
	touch $@

$(VENV)/.sweep: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e ".[dev,sweep]"
	touch $@

$(VENV)/.lab: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e ".[dev,lab]"
	touch $@

$(VENV)/.data: $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -e ".[dev,data]"
	touch $@

venv: $(VENV)/.installed ## Create the project's own environment (driver: papermill, nbconvert, uv)

run: venv ## Run a workload notebook in its pinned kernel (builds the kernel on first use)
	$(REPRO) run "$$WORKLOAD" --framework "$$FRAMEWORK" --params "$$PARAMS" \
		$(if $(KERNEL),--kernel "$$KERNEL") $(if $(RUNS_DIR),--runs-dir "$$RUNS_DIR") \
		$(if $(UNPINNED),--unpinned) $(if $(ALLOW_DRIFT),--allow-drift) \
		$(if $(FORCE_MEMORY),--force-memory)

lesson: venv ## Run a lesson (a benchmarking pitfall, measured here): make lesson NAME=async-dispatch [FRAMEWORK=jax]; no NAME: list them
	$(REPRO) lesson $(if $(NAME),"$$NAME") $(if $(FRAMEWORK_GIVEN),--framework "$$FRAMEWORK") \
		--params "$$PARAMS" $(if $(RUNS_DIR),--runs-dir "$$RUNS_DIR")

list: venv ## List workloads, frameworks, kernels and parameters
	$(REPRO) list

kernels: venv ## Build (if needed), register and verify every pinned kernel; REBUILD=1 forces it
	$(REPRO) kernels $(if $(REBUILD),--rebuild)

lock: venv ## Recompile kernelspecs/*/requirements.lock from requirements.in (uv, hashes; seconds); UPGRADE=1 moves every pin
	$(REPRO) lock $(if $(UPGRADE),--upgrade)

# A run keeps about one core busy: two pytest-xdist workers fill this 2-core machine. Tests that
# share a session- or module-scoped fixture stay on one worker (tests/conftest.py).
TEST_WORKERS ?= 2

test: venv $(VENV)/.sweep $(VENV)/.data $(VENV)/.lab ## Lint, build/verify the kernels, then run every test (real notebooks in real kernels)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(REPRO) kernels
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25

test-fast: lint $(VENV)/.data $(VENV)/.lab ## Lint, then every test that starts no kernel (under a minute)
	$(VENV)/bin/python -m pytest -m "not kernel"

data: $(VENV)/.data ## Write a small real data set: make data DEST=data/digits [NAME=pydoc DEST=data/pydoc.npy]
	$(REPRO) data "$${NAME:-digits}" "$$DEST"

lint: venv ## Check style with ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# RUNS is expanded unquoted on purpose: the shell splits it into paths and expands globs such as
# runs/*_resnet-tiny_*, but never parses an expansion as a command (no ;, $(...) or `...`).
compare: venv ## Comparison report, first run = baseline: make compare RUNS="runs/a runs/b" [FAIL_IF_SLOWER=5%]
	$(REPRO) compare $$RUNS $(if $(FAIL_IF_SLOWER),--fail-if-slower "$$FAIL_IF_SLOWER") \
		$(if $(ALLOW_MIXED),--allow-mixed) $(if $(RUNS_DIR),--runs-dir "$$RUNS_DIR")

history: venv ## Throughput and latency of every run over time, regressions flagged: make history [RUNS="runs/a runs/sweep_x"] [BY=commit] [THRESHOLD=5%]
	$(REPRO) history $$RUNS $(if $(BY),--by "$$BY") $(if $(THRESHOLD),--threshold "$$THRESHOLD") \
		$(if $(RUNS_DIR),--runs-dir "$$RUNS_DIR")

sweep: $(VENV)/.sweep ## Run a sweep's matrix on Ray, then compare: make sweep SWEEP=sweeps/x.yaml [ADDRESS=host:6379]
	$(REPRO) sweep "$$SWEEP" $(if $(ADDRESS),--address "$$ADDRESS") \
		$(if $(RETRIES),--retries "$$RETRIES") $(if $(RUNS_DIR),--runs-dir "$$RUNS_DIR")

rerun: venv ## Rerun a report from the file alone: make rerun REPORT=path/to/report.ipynb [TRUST=1] [TOLERANCE=10%] [YES=1]
	$(REPRO) rerun "$$REPORT" $(if $(TRUST),--trust) $(if $(TOLERANCE),--tolerance "$$TOLERANCE") \
		$(if $(RUNS_DIR),--runs-dir "$$RUNS_DIR") $(if $(FORCE_MEMORY),--force-memory) \
		$(if $(YES),--yes)

verify: venv ## Check a run folder, bundle or report for edits: make verify REPORT=runs/<run>
	$(REPRO) verify "$$REPORT"

bundle: venv ## Pack a run folder into one .tar.gz to share: make bundle RUN=runs/<run>
	$(REPRO) bundle "$$RUN"

device-bundle: venv ## Offline wheels of repro's runtime for a GPU box with no network: [HAVE=its-pip-freeze.txt]
	$(REPRO) wheelhouse --out .device $(if $(HAVE),--have "$$HAVE")

lab: $(VENV)/.lab ## JupyterLab on the checkout, pinned kernels built on first start; Ctrl-C stops it: [PORT=8888] [IP=0.0.0.0] [TOKEN=...]
	$(REPRO) lab $(if $(PORT),--port "$$PORT") $(if $(IP),--ip "$$IP") $(if $(TOKEN),--token "$$TOKEN")

index: venv ## Write runs/index.html: every run, comparison, sweep, history and lesson with its headline [RUNS_DIR=path]
	$(REPRO) index $(if $(RUNS_DIR),--runs-dir "$$RUNS_DIR")

clean: ## Remove built environments (runs/ is kept)
	rm -rf $(VENV) .kernels .jupyter

.PHONY: help venv run lesson list kernels lock test test-fast data lint compare history sweep rerun verify bundle lab index clean
