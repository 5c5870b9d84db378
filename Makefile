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

.PHONY: help venv run test lint typecheck cfn-lint sam-validate checkov bandit build deploy deploy-guided outputs unit integration e2e bench lock clean

# Every target the README mentions is listed here (tests/unit/test_readme.py checks it).
help:
	@echo "make run                 run the whole pipeline locally (ARGS=--serve keeps it up for curl and send)"
	@echo "make test                lint, type-check, template checks and every test"
	@echo "make unit, make integration, make e2e   one layer of tests (ARGS= goes to pytest)"
	@echo "make bench               benchmarks that print figures (bench/RESULTS.md; builds the artifact with sam)"
	@echo "make build               sam build (installs SAM CLI into .venv-tools if needed)"
	@echo "make deploy-guided       first deploy: sam deploy --guided, answers saved as [ENV] (default dev)"
	@echo "make deploy              sam deploy --config-env ENV (ENV=dev by default, ENV=prod)"
	@echo "make outputs             the deployed stack's outputs (ENV=dev by default, or STACK=name)"
	@echo "make lock                re-pin requirements.lock after changing a top-level pin"
	@echo "make clean               remove .venv, .venv-tools and caches"
	@echo "make help                this list"

venv: $(STAMP)

# Shell snippet: sets $$py to pyenv's $(PYTHON_VERSION), else python$(PYTHON_VERSION), else any python3 >= 3.12.
FIND_PYTHON = py=""; \
	for c in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$(PYTHON_VERSION)*/bin/python3 2>/dev/null | sort -V | tail -n 1) \
	         $$(command -v python$(PYTHON_VERSION) || true) $$(command -v python3 || true); do \
	  if [ -x "$$c" ] && "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then py=$$c; break; fi; \
	done; \
	if [ -z "$$py" ]; then echo "error: Python >= 3.12 not found (pyenv install $(PYTHON_VERSION))" >&2; exit 1; fi

$(STAMP): $(PIN_FILES)
	@set -e; \
	if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then rm -rf $(VENV); fi; \
	if [ ! -x $(PY) ]; then $(FIND_PYTHON); echo "creating $(VENV) with $$py"; "$$py" -m venv $(VENV); fi; \
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip; \
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock \
	  -r layers/common/requirements.txt -r requirements-dev.txt; \
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .; \
	touch $(STAMP)

# SAM CLI and checkov conflict with each other and with the project: each gets its own venv,
# installed from a full lock in tools/.
TOOLS := .venv-tools
SAM := $(TOOLS)/sam/bin/sam
CHECKOV := $(TOOLS)/checkov/bin/checkov

$(TOOLS)/%/.installed: tools/%.lock
	@set -e; $(FIND_PYTHON); rm -rf $(TOOLS)/$*; "$$py" -m venv $(TOOLS)/$*; \
	echo "installing $* into $(TOOLS)/$*"; \
	$(TOOLS)/$*/bin/pip install --quiet --disable-pip-version-check -r tools/$*.lock; touch $@

run: $(STAMP)
	$(VENV)/bin/clay-pipeline run $(ARGS)

test: lint typecheck cfn-lint sam-validate checkov bandit
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

cfn-lint: $(STAMP)
	$(VENV)/bin/cfn-lint template.yaml

sam-validate: $(TOOLS)/sam/.installed
	SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --region us-east-1

# Findings are fixed, or skipped in template.yaml's Metadata with the reason written there.
checkov: $(TOOLS)/checkov/.installed
	$(CHECKOV) --quiet --compact --skip-download --framework cloudformation -f template.yaml

bandit: $(STAMP)
	$(VENV)/bin/bandit --quiet --recursive layers/common/clay_pipeline functions local cli

# sam build needs the runtime's python on PATH; the layer is built for the template's arm64.
build: $(TOOLS)/sam/.installed
	@set -e; $(FIND_PYTHON); PATH="$$(dirname $$py):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM) build

deploy: build
	SAM_CLI_TELEMETRY=0 $(SAM) deploy --config-env $${ENV:-dev}

# --config-env here too, so the answers land in the section `make deploy` reads (not [default]).
# SAM asks "<Function> has no authentication. Is this okay? [y/N]" for each public route, and the
# default N aborts the deploy: the note says why y is right (README, Deploy).
deploy-guided: build
	@echo "Note: SAM will ask '... has no authentication. Is this okay? [y/N]' for CallbackFunction (twice),"
	@echo "IntakeFunction and, on the routine path, RunWebhookFunction. Answer y: API Gateway has no"
	@echo "authorizer on these routes on purpose, because Clay and web forms cannot send AWS credentials;"
	@echo "each function checks the caller itself (callback token, HMAC or JWT; the intake API key; the"
	@echo "run webhook's signature) and refuses everyone when its secret is unset or weak."
	SAM_CLI_TELEMETRY=0 $(SAM) deploy --guided --config-env $${ENV:-dev}

outputs: $(TOOLS)/sam/.installed
	SAM_CLI_TELEMETRY=0 $(SAM) list stack-outputs --output table \
	  --stack-name $${STACK:-clay-pipeline-$${ENV:-dev}} --region $${AWS_REGION:-$${AWS_DEFAULT_REGION:-us-east-1}}

unit: $(STAMP)
	$(PY) -m pytest -m unit $(ARGS)

integration: $(STAMP)
	$(PY) -m pytest -m integration $(ARGS)

e2e: $(STAMP)
	$(PY) -m pytest -m e2e $(ARGS)

bench: $(STAMP) $(TOOLS)/sam/.installed
	$(PY) bench/run_all.py $(ARGS)

# Re-pin every transitive dependency after changing a top-level pin.
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^clay-pipeline' > requirements.lock

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache
