# One entry point for set-up: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch and torchvision are pinned as a pair: this pair installs from the local wheel cache.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install install-test demo demo-minilm screenshots test test-keras-tf lint format bench clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[vision,report]'
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PIP) install -q -e '.[test]'
	touch $@

$(VENV)/.bench: $(VENV)/.test pyproject.toml
	$(PIP) install -q -e '.[bench]'
	touch $@

# The Keras tests on the TensorFlow backend, in their own venv (the main one stays TF-free).
VENV_TF := .venv-tf
$(VENV_TF)/.keras-tf: pyproject.toml
	test -x $(VENV_TF)/bin/python || $(PYTHON) -m venv $(VENV_TF)
	$(VENV_TF)/bin/python -m pip install -q --upgrade pip
	$(VENV_TF)/bin/python -m pip install -q torch==2.14.1 'tensorflow-cpu==2.21.*' keras==3.15.0
	$(VENV_TF)/bin/python -m pip install -q -e '.[keras]' pytest
	touch $@

install: $(VENV)/.base
install-test: $(VENV)/.test

demo: $(VENV)/.base
	$(VENV)/bin/netsculpt demo

# The MiniLM demo (about two minutes on two cores), saved as a sentence-transformers folder.
demo-minilm: $(VENV)/.base
	$(VENV)/bin/netsculpt demo --model minilm -o out/minilm

# The report pages of `make demo` (and of analyze) rendered in headless Chromium into docs/img/.
# Needs chromium: apt-get update && apt-get install -y chromium
screenshots: $(VENV)/.base
	$(VENV)/bin/netsculpt demo -o out/demo
	$(VENV)/bin/netsculpt analyze digits-cnn --data digits-image --blocks \
		--report out/demo/analyze.html > /dev/null
	$(PY) docs/screenshots.py \
		out/demo/digits-cnn/report.html:docs/img/report-run.png \
		out/demo/analyze.html:docs/img/report-analyze.png

test: $(VENV)/.test
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -n 2 --dist loadgroup

test-keras-tf: $(VENV_TF)/.keras-tf
	KERAS_BACKEND=tensorflow $(VENV_TF)/bin/python -m pytest -p no:cacheprovider tests/keras

lint: $(VENV)/.test
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/lint-imports

format: $(VENV)/.test
	$(VENV)/bin/ruff format src tests benchmarks examples
	$(VENV)/bin/ruff check --fix src tests benchmarks examples

# Every section of benchmarks/RESULTS.md, regenerated from the current commit (see
# benchmarks/README.md). BENCH_JOBS: processes for the scripts that take --jobs (2 cores here).
BENCH_JOBS ?= 2
BENCH_TARGETS := bench-zoo bench-speedup bench-heal bench-cut-grow bench-merge bench-hf \
	bench-llama7b-meta bench-default-importance bench-optimize bench-optimize-latency

.PHONY: $(BENCH_TARGETS)
bench: $(BENCH_TARGETS)

bench-zoo: $(VENV)/.bench
	$(PY) benchmarks/zoo.py
bench-speedup: $(VENV)/.bench
	$(PY) benchmarks/speedup.py
bench-heal: $(VENV)/.bench
	$(PY) benchmarks/heal_vs_torch_pruning.py
bench-cut-grow: $(VENV)/.bench
	$(PY) benchmarks/cut_grow.py --jobs $(BENCH_JOBS)
bench-merge: $(VENV)/.bench
	$(PY) benchmarks/merge.py
bench-hf: $(VENV)/.bench
	$(PY) benchmarks/hf_llm.py --jobs $(BENCH_JOBS)
bench-llama7b-meta: $(VENV)/.bench
	$(PY) benchmarks/llama7b_meta.py
bench-default-importance: $(VENV)/.bench
	$(PY) benchmarks/default_importance.py
bench-optimize: $(VENV)/.bench
	$(PY) benchmarks/optimize.py
bench-optimize-latency: $(VENV)/.bench
	$(PY) benchmarks/optimize_latency.py

clean:
	rm -rf $(VENV) $(VENV_TF) build dist src/*.egg-info
