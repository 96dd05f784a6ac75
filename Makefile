# Every set-up step lives here. Targets are idempotent: `make venv` does nothing
# when .venv is already up to date with pyproject.toml and requirements.lock.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: all venv run test lint bench dag clean-results

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

# Main job: the full default pipeline on the embedded data, then Snakemake's outputs recorded in DVC's
# cache, so that `dvc status` is up to date and `dvc repro`, `dvc exp run` and queued experiments rerun only
# what a change touches (docs/pipeline.md, "Switching drivers").
run: venv
	snakemake --cores $(CORES)
	dvc repro --quiet check_params
	dvc commit --force --quiet

test: venv
	ruff check .
	ruff format --check .
	python -m pytest -q

# Benchmarks (docs/benchmarks.md, about 7 min on 2 cores): results/bench/*.json and a ratio table.
# BENCH_ARGS="--quick" or "--only binning" narrows it.
bench: venv
	python -m benchmarks $(BENCH_ARGS)

lint: venv
	snakemake --lint

# docs/dag.png, the stages as Snakemake sees them (needs Graphviz's dot: apt install graphviz).
dag: venv
	snakemake --rulegraph | python -c "import re,sys; d=sys.stdin.read(); n=re.search(r'(\d+)\[label = \"all\"', d).group(1); print('\n'.join(l for l in d.splitlines() if not re.search(rf'(^\s*{n}\[)|(-> {n}\b)', l)))" | dot -Tpng -Gdpi=80 -o docs/dag.png
