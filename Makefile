# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test corpus bench clean

# torch is pinned here, not in the package metadata: this exact CPU wheel lies on the build machine's disk.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[train,test,serve,bench]' torch==2.13.0
	touch $(STAMP)

install: $(STAMP)

# Train the default model on data/ (skipped when runs/default already holds a model of the same
# config and data), then tag the example articles.
run: install
	$(VENV)/bin/newstagger check --strict data/train.jsonl data/validation.jsonl data/test.jsonl
	$(PY) train.py --config configs/default.yaml --skip-if-trained
	$(PY) predict.py --model runs/default data/examples/ --pretty

test: install
	$(PY) -m pytest -q --durations=15 tests

# Rebuild data/{train,validation,test}.jsonl from data/source/ (deterministic).
corpus: install
	$(PY) data/build_corpus.py

bench: install
	$(PY) bench/baselines.py
	$(PY) bench/bench_predict.py

clean:
	rm -rf runs .pytest_cache
