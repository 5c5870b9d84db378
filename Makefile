# Two commands matter: `make run` (the whole pipeline on the embedded local stack) and
# `make test` (every check). Both bootstrap .venv themselves with pinned dependencies.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIN_FILES := requirements.lock requirements-dev.txt layers/common/requirements.txt pyproject.toml
ARGS ?=

.PHONY: help venv run test lint typecheck cfn-lint unit integration e2e bench lock clean

help:
	@echo "make run     run the whole pipeline locally (ARGS=--serve keeps it up)"
	@echo "make test    lint, type-check, template checks and every test"
	@echo "make bench   benchmarks that print figures"

venv: $(STAMP)

# Finds pyenv's $(PYTHON_VERSION), else python$(PYTHON_VERSION), else any python3 >= 3.12.
$(STAMP): $(PIN_FILES)
	@set -e; \
	if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then rm -rf $(VENV); fi; \
	if [ ! -x $(PY) ]; then \
	  py=""; \
	  for c in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$(PYTHON_VERSION)*/bin/python3 2>/dev/null | sort -V | tail -n 1) \
	           $$(command -v python$(PYTHON_VERSION) || true) $$(command -v python3 || true); do \
	    if [ -x "$$c" ] && "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then py=$$c; break; fi; \
	  done; \
	  if [ -z "$$py" ]; then echo "error: Python >= 3.12 not found (pyenv install $(PYTHON_VERSION))" >&2; exit 1; fi; \
	  echo "creating $(VENV) with $$py"; \
	  "$$py" -m venv $(VENV); \
	fi; \
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip; \
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock \
	  -r layers/common/requirements.txt -r requirements-dev.txt; \
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .; \
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/clay-pipeline run $(ARGS)

test: lint typecheck cfn-lint
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

cfn-lint: $(STAMP)
	$(VENV)/bin/cfn-lint template.yaml

unit: $(STAMP)
	$(PY) -m pytest -m unit $(ARGS)

integration: $(STAMP)
	$(PY) -m pytest -m integration $(ARGS)

e2e: $(STAMP)
	$(PY) -m pytest -m e2e $(ARGS)

bench: $(STAMP)
	$(PY) bench/run_all.py $(ARGS)

# Re-pin every transitive dependency after changing a top-level pin.
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^clay-pipeline' > requirements.lock

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
