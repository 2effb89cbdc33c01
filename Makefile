# closedloop — the verbs people type. Every target sets up what it needs from nothing.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
PIPELINE_VENV := .venv-pipeline
CHECKOV_VENV := .venv-checkov
RUNTIME_VENV := .venv-runtime
BIN := $(VENV)/bin
SAM := $(SAM_VENV)/bin/sam
# sam build needs python3.13 (the Lambda runtime) on PATH; pyenv provides it next to 3.11.
export PYENV_VERSION ?= 3.11.7:3.13.0
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
export POWERTOOLS_TRACE_DISABLED := 1

PIPELINE_DEFINITION := pipelines/definition.json
STACK_SOURCES := template.yaml $(shell find functions layers -name '*.py' -o -name '*.json' -o -name '*.txt' 2>/dev/null)

.PHONY: help
help:  ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.ready: requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(SAM_VENV)/.ready: requirements/sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet -r requirements/sam.txt
	touch $@

# checkov in its own environment (its pins clash with the development tools'), pinned to its full closure.
$(CHECKOV_VENV)/.ready: requirements/checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet --no-deps -r requirements/checkov.txt
	touch $@

# A function's import path on Lambda, for measuring cold starts: python3.13 with what the runtime
# provides (requirements/runtime.txt) and the layer's pinned packages, nothing else.
$(RUNTIME_VENV)/.ready: requirements/runtime.txt layers/shared/requirements.txt
	python3.13 -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet --no-deps -r requirements/runtime.txt -r layers/shared/requirements.txt
	touch $@

# The sagemaker SDK (build time only) in its own environment: it is ~1 GB and never enters a Lambda package.
$(PIPELINE_VENV)/.ready: requirements/pipeline.txt pyproject.toml
	$(PYTHON) -m venv $(PIPELINE_VENV)
	$(PIPELINE_VENV)/bin/pip install --quiet --upgrade pip
	$(PIPELINE_VENV)/bin/pip install --quiet -r requirements/pipeline.txt
	$(PIPELINE_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

# The offline pipeline definition is checked in (pipelines/definition.json), so the demo needs no SDK;
# `make test` fails when it is not what the code generates (tests/integration/test_pipeline_definition_current.py).
.PHONY: pipeline
pipeline: $(PIPELINE_VENV)/.ready  ## regenerate pipelines/definition.json offline with the sagemaker SDK (commit it)
	$(PIPELINE_VENV)/bin/python pipelines/definition.py --offline --output $(PIPELINE_DEFINITION)

.PHONY: pipeline-check
pipeline-check: $(PIPELINE_VENV)/.ready  ## fail when pipelines/definition.json is not what the code generates
	$(PIPELINE_VENV)/bin/python pipelines/definition.py --offline --check $(PIPELINE_DEFINITION)

.PHONY: venv
venv: $(VENV)/.ready $(SAM_VENV)/.ready  ## create the virtual environments

.PHONY: lint
lint: $(VENV)/.ready  ## ruff (style and bugs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: format
format: $(VENV)/.ready  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: typecheck
typecheck: $(VENV)/.ready  ## mypy --strict on the shared package
	$(BIN)/mypy layers/shared/closedloop

.PHONY: template
template: $(VENV)/.ready $(SAM_VENV)/.ready  ## cfn-lint and sam validate --lint
	$(BIN)/cfn-lint template.yaml
	$(SAM) validate --lint --template template.yaml --region $(AWS_DEFAULT_REGION)

# Debian's headless Chromium and its driver for the console's browser test (tests/e2e/test_ui_browser.py):
# Selenium drives the system browser, never a downloaded one.
.PHONY: browser
browser:  ## install Debian's chromium and chromium-driver when they are missing
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update && apt-get install -y chromium chromium-driver)

.PHONY: pytest
pytest: $(VENV)/.ready $(SAM_VENV)/.ready $(RUNTIME_VENV)/.ready $(PIPELINE_VENV)/.ready browser
	$(BIN)/pytest -q

.PHONY: workflows
workflows: $(VENV)/.ready  ## actionlint on .github/workflows (offline)
	$(BIN)/actionlint .github/workflows/*.yml

# Offline and the same on every machine: no download from the checkov platform, no version check,
# no personal configuration (~/.checkov.yaml, BC_API_KEY, CKV_CHECK / CKV_SKIP_CHECK) in the way.
.PHONY: security
security: $(CHECKOV_VENV)/.ready  ## checkov on template.yaml: zero failed checks; every skip has its reason in the template
	env -u BC_API_KEY -u CKV_CHECK -u CKV_SKIP_CHECK HOME=$(CURDIR)/build/checkov-home CKV_SKIP_PACKAGE_UPDATE_CHECK=true \
		$(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --compact --quiet --skip-download --skip-results-upload

.PHONY: test
test: lint typecheck template workflows security pytest  ## everything CI runs

.PHONY: demo
demo: $(VENV)/.ready  ## the whole closed loop on this machine (moto, no AWS account)
	$(BIN)/closedloop demo

# Needs the loop up (`closedloop demo --keep` or `closedloop local up` in another terminal).
.PHONY: notebook
notebook: $(VENV)/.ready  ## register .venv as the Jupyter kernel "closedloop (.venv)"; run docs/operator.ipynb against the local loop, saving its outputs
	$(BIN)/python -m ipykernel install --user --name closedloop --display-name "closedloop (.venv)"
	$(BIN)/jupyter execute --inplace --kernel_name=closedloop docs/operator.ipynb

.PHONY: bench
bench: $(VENV)/.ready $(SAM_VENV)/.ready $(RUNTIME_VENV)/.ready  ## measure cold init, package size, overhead, coalescing, drift, storms, demo
	PYTHONPATH=tests $(BIN)/python bench/run.py --python $(RUNTIME_VENV)/bin/python

.PHONY: build
build: $(SAM_VENV)/.ready  ## sam build (python3.13, arm64)
	$(SAM) build --template template.yaml

.PHONY: deploy
deploy: build  ## sam deploy to the environment in ENV (default dev)
	$(SAM) deploy --config-env $${ENV:-dev}

.PHONY: clean
clean:  ## remove build outputs (keeps the virtual environments)
	rm -rf build .aws-sam .pytest_cache .mypy_cache .ruff_cache
