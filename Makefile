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
	$(BIN)/pip install --quiet -c requirements.lock -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Main job: the full default pipeline on the embedded data.
run: venv
	$(BIN)/snakemake --cores $(CORES)

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/snakemake --lint
