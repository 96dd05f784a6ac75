# Every set-up step lives here. Targets are idempotent: `make venv` does nothing
# when .venv is already up to date with pyproject.toml and requirements.lock.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: all venv run test lint bench clean-results

all: run

$(BIN)/python:
	$(PY) -m venv $(VENV)

# The stamp is newer than both dependency files once an install has succeeded.
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test,slurm]'
	touch $@

venv: $(VENV)/.installed

# Stage commands call `python -m pipeline ...`: put the venv first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

# Main job: the full default pipeline on the embedded data.
run: venv
	snakemake --cores $(CORES)

test: venv
	python -m pytest -q

# Benchmarks (docs/benchmarks.md): results/bench/*.json and a ratio table.
# BENCH_ARGS="--quick" or "--only binning" narrows it.
bench: venv
	python -m benchmarks $(BENCH_ARGS)

lint: venv
	snakemake --lint
