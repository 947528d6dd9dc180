# One entry point for set-up: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch and torchvision are pinned as a pair: this pair installs from the local wheel cache.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install install-test demo demo-minilm screenshots test test-keras-tf lint format bench bench-llm bench-llmcompressor clean

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

# tensorflow-model-optimization (the Keras benchmark's anchor) needs Keras 2: tf-keras goes into
# the TensorFlow venv beside Keras 3 and is used only where TF_USE_LEGACY_KERAS=1 is set
# (benchmarks/_keras_tfmot.py, in its own process).
$(VENV_TF)/.bench-keras: $(VENV_TF)/.keras-tf
	$(VENV_TF)/bin/python -m pip install -q tensorflow-model-optimization 'tf-keras==2.21.*'
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
	bench-llama7b-meta bench-default-importance bench-optimize bench-timm-zoo bench-detection \
	bench-rnn bench-llmcompressor bench-keras bench-optimize-latency bench-minilm

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
bench-timm-zoo: $(VENV)/.bench
	$(PY) benchmarks/timm_zoo.py --jobs $(BENCH_JOBS)
bench-detection: $(VENV)/.bench
	$(PY) benchmarks/detection.py
bench-rnn: $(VENV)/.bench
	$(PY) benchmarks/rnn.py

# llm-compressor pins torch and transformers of its own: its benchmark anchor gets its own venv.
# It only reads the saved checkpoint and token files; the same perplexity script scores both.
VENV_LLMC := .venv-llmc
LLMC_PINS := llmcompressor==0.14.0.1 torch==2.14.0
$(VENV_LLMC)/.llmc:
	test -x $(VENV_LLMC)/bin/python || $(PYTHON) -m venv $(VENV_LLMC)
	$(VENV_LLMC)/bin/python -m pip install -q --upgrade pip
	$(VENV_LLMC)/bin/python -m pip install -q $(LLMC_PINS)
	touch $@

bench-llm: $(VENV)/.bench
	$(PY) benchmarks/llm_calibrated.py

bench-llmcompressor: $(VENV)/.bench $(VENV_LLMC)/.llmc
	$(PY) benchmarks/llm_calibrated.py --llmcompressor $(VENV_LLMC)/bin/python

# the same benchmark on both Keras backends; tfmot runs in the TensorFlow venv for both
bench-keras: $(VENV)/.bench $(VENV_TF)/.bench-keras
	KERAS_BACKEND=tensorflow $(VENV_TF)/bin/python benchmarks/keras_digits.py
	KERAS_BACKEND=torch $(PY) benchmarks/keras_digits.py --tfmot-python $(VENV_TF)/bin/python
bench-optimize-latency: $(VENV)/.bench
	$(PY) benchmarks/optimize_latency.py
bench-minilm: $(VENV)/.bench
	$(PY) benchmarks/minilm.py

clean:
	rm -rf $(VENV) $(VENV_TF) $(VENV_LLMC) build dist src/*.egg-info
