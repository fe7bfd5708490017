# siku — the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench sample clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/siku demo --home ./demo-data --sample deploy/demo/sample

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check node protocol storage sync tests deploy
	$(VENV)/bin/ruff format --check node protocol storage sync tests deploy

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m tests.bench $(BENCH_ARGS)

sample: $(STAMP)
	$(PY) deploy/demo/make_sample.py deploy/demo/sample

clean:
	rm -rf $(VENV) demo-data bench-data .mypy_cache .ruff_cache .pytest_cache
