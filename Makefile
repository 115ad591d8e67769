# repro: reproducible framework benchmarks. `make help` lists the targets.
# The variables set on the command line, before this Makefile sets any (v, the loop's, after it)
override GIVEN := $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))) \
	$(if $(filter command line,$(origin v)),v)
# Settings: the variables a user gives (make VAR=value, or the environment). Every value is data,
# never code: read raw (no make expansion of `$(...)`), exported, and quoted in recipes as
# "$$NAME", so no value is pasted into a shell command; recipes give options as --opt="$$NAME"
# and positional values after `--`, so no value is an option. An empty WORKLOAD= or FRAMEWORK=
# reaches repro as an empty argument: an error, not the default.
override USER_VARS := WORKLOAD MODEL FRAMEWORK PARAMS KERNEL UNPINNED ALLOW_DRIFT FORCE_MEMORY RUNS_DIR \
	REBUILD RUNS FAIL_IF_SLOWER ALLOW_MIXED REPORT TRUST TOLERANCE RUN HAVE SWEEP ADDRESS RETRIES \
	DEST UPGRADE NAME BY THRESHOLD PORT IP TOKEN YES
# yes/no settings: on with 1, true or yes; off with 0, false, no or empty (any case)
override BOOL_VARS := UNPINNED ALLOW_DRIFT FORCE_MEMORY REBUILD ALLOW_MIXED TRUST UPGRADE YES
# make's own settings: the interpreter that builds .venv, pytest's workers, Jupyter's search path
override SETTINGS := $(USER_VARS) PYTHON TEST_WORKERS JUPYTER_PATH
override OTHER_VARS := $(filter-out $(SETTINGS),$(GIVEN))
override SHELL := /bin/bash
override .SHELLFLAGS := -c
$(foreach v,$(SETTINGS),$(if $(filter-out undefined,$(origin $(v))),$(eval override $(v) := $$(value $(v)))))
# Any other command-line variable would be ignored, or would change the Makefile's or make's own
# (VENV=, SHELL=, MAKEFILE_LIST=): make stops before reading any. A run parameter (`make run
# STEPS=5`) is shown in the PARAMS form; the names come from plan.py (makevars.py), asked only
# then, so `make help` stays instant. Values are shown, never run.
override PARAM_VARS := $(if $(OTHER_VARS),$(shell python3 repro/driver/makevars.py))
override AS_PARAMS := $(foreach v,$(OTHER_VARS),$(if $(filter $(v):%,$(PARAM_VARS)),$(v)))
override PARAM_OF = $(patsubst $(1):%,%,$(filter $(1):%,$(PARAM_VARS)))
$(if $(filter-out $(AS_PARAMS),$(OTHER_VARS)),$(error not a setting of this Makefile: \
	$(filter-out $(AS_PARAMS),$(OTHER_VARS)) (`make help` shows the settings)))
$(if $(AS_PARAMS),$(error run parameters go in PARAMS, not in make variables ($(AS_PARAMS)): \
	make $(or $(firstword $(MAKECMDGOALS)),run) PARAMS="$(strip $(PARAMS) \
	$(foreach v,$(AS_PARAMS),$(call PARAM_OF,$(v))=$(value $(v))))"))

PYTHON ?= python3
VENV := .venv
# Whether FRAMEWORK was given (before its default): a lesson's default framework is its own.
FRAMEWORK_GIVEN := $(if $(filter undefined,$(origin FRAMEWORK)),,1)
# Whether WORKLOAD and MODEL were given: MODEL= (your own model) takes the place of WORKLOAD's
# default; both given is repro's error, and an empty MODEL= reaches repro as an empty argument.
WORKLOAD_GIVEN := $(if $(filter undefined,$(origin WORKLOAD)),,1)
MODEL_GIVEN := $(if $(filter undefined,$(origin MODEL)),,1)
WORKLOAD ?= resnet-50
FRAMEWORK ?= torch
SWEEP ?= sweeps/frameworks-small.yaml
# A run keeps about one core busy: two pytest-xdist workers fill this 2-core machine. Tests that
# share a session- or module-scoped fixture stay on one worker (tests/conftest.py).
TEST_WORKERS ?= 2
export $(SETTINGS)
REPRO := $(VENV)/bin/repro
# repro names an option by its make variable (ALLOW_MIXED=1, not --allow-mixed) when make ran it.
export REPRO_MAKE_VARS := $(USER_VARS)
override JUPYTER_PATH := $(CURDIR)/.jupyter$(if $(JUPYTER_PATH),:$(JUPYTER_PATH))

# The values make reads itself, checked before any target. $(call on,NAME): whether the yes/no
# setting NAME is on; $(call swap,text,from,to): each letter in from replaced by the one in to.
swap = $(if $(2),$(call swap,$(subst $(firstword $(2)),$(firstword $(3)),$(1)),$(wordlist 2,26,$(2)),$(wordlist 2,26,$(3))),$(1))
yesno = $(call swap,$($(1)),A B C D E F G H I J K L M N O P Q R S T U V W X Y Z,a b c d e f g h i j k l m n o p q r s t u v w x y z)
on = $(filter 1 true yes,$(call yesno,$(1)))
$(foreach v,$(BOOL_VARS),\
	$(if $(filter-out 1 true yes 0 false no,$(call yesno,$(v)))$(filter-out 0 1,$(words $($(v)))),\
	$(error $(v) takes 1, true or yes (on), or 0, false, no or nothing (off))))
WORKERS := auto $(foreach t,_ 1 2 3 4 5 6 7 8 9,$(foreach u,0 1 2 3 4 5 6 7 8 9,$(subst _,,$(t))$(u)))
$(if $(and $(filter $(WORKERS),$(TEST_WORKERS)),$(filter 1,$(words $(TEST_WORKERS)))),,\
	$(error TEST_WORKERS takes a number of test workers, 0 to 99, or auto))

.DEFAULT_GOAL := help

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_.-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo ""
	@echo "  make run WORKLOAD=resnet-50 FRAMEWORK=jax PARAMS=\"batch_size=4 steps=20\""
	@echo "  options: UNPINNED=1 (existing interpreter), ALLOW_DRIFT=1, KERNEL=torch-cpu, FORCE_MEMORY=1,"
	@echo "  RUNS_DIR=path (default runs/). Values reach repro as data: quote them for your shell."
	@echo "  yes/no options take 1, true or yes, or 0, false, no or nothing."

$(VENV)/.installed: pyproject.toml
	@command -v -- "$$PYTHON" >/dev/null || { printf '%s\n' \
		"PYTHON=$$PYTHON: no such command; give an interpreter, e.g. PYTHON=python3.12" >&2; exit 2; }
	"$$PYTHON" -m venv $(VENV)
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

run: venv ## Run a workload notebook in its pinned kernel (builds the kernel on first use); MODEL=hf:DIR or MODEL=module:FILE.py:FUNCTION runs your own model
	$(REPRO) run --framework="$$FRAMEWORK" --params="$$PARAMS" \
		$(if $(KERNEL),--kernel="$$KERNEL") $(if $(RUNS_DIR),--runs-dir="$$RUNS_DIR") \
		$(if $(call on,UNPINNED),--unpinned) $(if $(call on,ALLOW_DRIFT),--allow-drift) \
		$(if $(call on,FORCE_MEMORY),--force-memory) $(if $(MODEL_GIVEN),--model="$$MODEL") \
		-- $(if $(or $(WORKLOAD_GIVEN),$(if $(MODEL_GIVEN),,1)),"$$WORKLOAD")

lesson: venv ## Run a lesson (a benchmarking pitfall, measured here): make lesson NAME=async-dispatch [FRAMEWORK=jax]; no NAME: list them
	$(REPRO) lesson $(if $(FRAMEWORK_GIVEN),--framework="$$FRAMEWORK") --params="$$PARAMS" \
		$(if $(RUNS_DIR),--runs-dir="$$RUNS_DIR") $(if $(NAME),-- "$$NAME")

list: venv ## List workloads, frameworks, kernels and parameters
	$(REPRO) list

kernels: venv ## Build (if needed), register and verify every pinned kernel; REBUILD=1 forces it
	$(REPRO) kernels $(if $(call on,REBUILD),--rebuild)

lock: venv ## Recompile kernelspecs/*/requirements.lock from requirements.in (uv, hashes; seconds); UPGRADE=1 moves every pin
	$(REPRO) lock $(if $(call on,UPGRADE),--upgrade)

test: venv $(VENV)/.sweep $(VENV)/.data $(VENV)/.lab ## Lint, build/verify the kernels, then run every test (real notebooks in real kernels)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(REPRO) kernels
	$(VENV)/bin/python -m pytest --numprocesses="$$TEST_WORKERS" --dist load --durations=25

test-fast: lint $(VENV)/.data $(VENV)/.lab ## Lint, then every test that starts no kernel (under a minute)
	$(VENV)/bin/python -m pytest -m "not kernel"

data: $(VENV)/.data ## Write a small real data set: make data DEST=data/digits [NAME=pydoc DEST=data/pydoc.npy]
	$(REPRO) data -- "$${NAME:-digits}" "$$DEST"

lint: venv ## Check style with ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# RUNS is expanded unquoted on purpose: the shell splits it into paths and expands globs such as
# runs/*_resnet-tiny_*, but never parses an expansion as a command (no ;, $(...) or `...`).
compare: venv ## Comparison report, first run = baseline: make compare RUNS="runs/a runs/b" [FAIL_IF_SLOWER=5%]
	$(REPRO) compare $(if $(FAIL_IF_SLOWER),--fail-if-slower="$$FAIL_IF_SLOWER") \
		$(if $(call on,ALLOW_MIXED),--allow-mixed) $(if $(RUNS_DIR),--runs-dir="$$RUNS_DIR") -- $$RUNS

history: venv ## Throughput and latency of every run over time, regressions flagged: make history [RUNS="runs/a runs/sweep_x"] [BY=commit] [THRESHOLD=5%]
	$(REPRO) history $(if $(BY),--by="$$BY") $(if $(THRESHOLD),--threshold="$$THRESHOLD") \
		$(if $(RUNS_DIR),--runs-dir="$$RUNS_DIR") -- $$RUNS

sweep: $(VENV)/.sweep ## Run a sweep's matrix on Ray, then compare: make sweep SWEEP=sweeps/x.yaml [ADDRESS=host:6379]
	$(REPRO) sweep $(if $(ADDRESS),--address="$$ADDRESS") $(if $(RETRIES),--retries="$$RETRIES") \
		$(if $(RUNS_DIR),--runs-dir="$$RUNS_DIR") -- "$$SWEEP"

rerun: venv ## Rerun a report from the file alone: make rerun REPORT=path/to/report.ipynb [TRUST=1] [TOLERANCE=10%] [YES=1]
	$(REPRO) rerun $(if $(call on,TRUST),--trust) $(if $(TOLERANCE),--tolerance="$$TOLERANCE") \
		$(if $(RUNS_DIR),--runs-dir="$$RUNS_DIR") $(if $(call on,FORCE_MEMORY),--force-memory) \
		$(if $(call on,YES),--yes) \
		-- "$$REPORT"

verify: venv ## Check a run folder, bundle or report for edits: make verify REPORT=runs/<run>
	$(REPRO) verify -- "$$REPORT"

bundle: venv ## Pack a run folder into one .tar.gz to share: make bundle RUN=runs/<run>
	$(REPRO) bundle -- "$$RUN"

device-bundle: venv ## Offline wheels of repro's runtime for a GPU box with no network: [HAVE=its-pip-freeze.txt]
	$(REPRO) wheelhouse --out .device $(if $(HAVE),--have="$$HAVE")

lab: $(VENV)/.lab ## JupyterLab on the checkout, pinned kernels built on first start; Ctrl-C stops it: [PORT=8888] [IP=0.0.0.0] [TOKEN=...]
	$(REPRO) lab $(if $(PORT),--port="$$PORT") $(if $(IP),--ip="$$IP") $(if $(TOKEN),--token="$$TOKEN")

index: venv ## Write runs/index.html: every run, comparison, sweep, history and lesson with its headline [RUNS_DIR=path]
	$(REPRO) index $(if $(RUNS_DIR),--runs-dir="$$RUNS_DIR")

clean: ## Remove built environments (runs/ is kept)
	rm -rf $(VENV) .kernels .jupyter

.PHONY: help venv run lesson list kernels lock test test-fast data lint compare history sweep rerun verify bundle device-bundle lab index clean
