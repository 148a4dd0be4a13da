# The one interface to cascata: what the README, CI and people use.
#   make demo   set up on first use, then run the pipeline on the embedded emulator
#   make test   set up on first use, then run the whole suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov, the IaC scanner of the infrastructure tests, pins boto3 1.35.x exactly; the project
# pins 1.43.11 exactly (the emulator), so checkov gets an environment of its own, in ours.
SCAN_VENV := $(VENV)/tools/checkov
# The MSK variant's Lambda layer (confluent-kafka, the MSK IAM signer): wheels for the functions'
# runtime and architecture, downloaded from the hash-pinned lock and unzipped (no Docker).
KAFKA_LAYER := build/kafka-layer.json
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: setup kafka-layer lock browser demo test test-fast lint typecheck synth bench deploy destroy deploy-version destroy-version clean

setup: $(STAMP) $(KAFKA_LAYER)

$(STAMP): requirements.lock requirements-scan.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 13), "cascata needs Python 3.11 to 3.13, found " + sys.version.split()[0]'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the locked dependencies into $(VENV) (first run only, about a minute)"
	@# pip's own status decides; the filter only hides this machine's find-links warnings.
	@set -o pipefail; $(PY) -m pip install --quiet --require-hashes -r requirements.lock 2>&1 \
	  | { grep -v "^WARNING: Location" || true; } || { echo "pip install failed"; exit 1; }
	@# cascata itself, editable: the `cascata` command, the pytest plugin, cascata_runtime.
	@set -o pipefail; $(PY) -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 \
	  | { grep -v "^WARNING: Location" || true; } || { echo "pip install -e . failed"; exit 1; }
	@test -x $(SCAN_VENV)/bin/python || $(PYTHON) -m venv $(SCAN_VENV)
	@set -o pipefail; $(SCAN_VENV)/bin/python -m pip install --quiet --require-hashes \
	  -r requirements-scan.lock 2>&1 | { grep -v "^WARNING: Location" || true; } \
	  || { echo "pip install of the scanner failed"; exit 1; }
	@touch $@

kafka-layer: $(KAFKA_LAYER)

$(KAFKA_LAYER): requirements-layer.lock cascata/cdk/function.py cascata/cdk/kafka_layer.py | $(STAMP)
	@echo "building the Kafka client layer for the functions (build/kafka-layer)"
	@set -o pipefail; $(PY) -c "from cascata.cdk.kafka_layer import main; main()" 2>&1 \
	  | { grep -v -e "^WARNING: Location" -e "^b'!!" || true; } || { echo "kafka layer build failed"; exit 1; }

# requirements-dev.txt (and requirements.txt) are what we ask for; requirements.lock is what
# gets installed, every package pinned with its hashes. Regenerate it after changing either.
# requirements-scan.txt -> requirements-scan.lock: the same for the scanner's environment.
lock:
	@test -x $(VENV)/bin/uv || $(PY) -m pip install --quiet uv==0.9.30
	$(VENV)/bin/uv pip compile requirements-dev.txt --universal --python-version 3.11 \
	  --generate-hashes --no-header --quiet -o requirements.lock
	$(VENV)/bin/uv pip compile requirements-scan.txt --universal --python-version 3.11 \
	  --generate-hashes --no-header --quiet -o requirements-scan.lock
	$(VENV)/bin/uv pip compile requirements-layer.txt --no-deps --universal --python-version 3.12 \
	  --generate-hashes --no-header --quiet -o requirements-layer.lock

node_modules/.installed: package.json package-lock.json
	@echo "installing the pinned CDK CLI (first run only)"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: $(STAMP)
	$(PY) -m cascata demo $(ARGS)

test: $(STAMP) node_modules/.installed browser $(KAFKA_LAYER)
	$(PY) -m pytest -n 2 --dist loadfile $(ARGS)

# The console's browser tests drive a real headless Chromium: the distribution's, installed
# here when it is missing and this is a root shell with apt (about 20 s). Anywhere else those
# tests are skipped, saying why; nothing else needs a browser.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
	  true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium and chromium-driver from the distribution (first run only)"; \
	  { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 \
	    apt-get install -y -qq --no-install-recommends chromium chromium-driver; } >/dev/null 2>&1 \
	    || echo "could not install chromium: the console's browser tests will be skipped"; \
	else \
	  echo "no chromium, and no root apt to install it: the console's browser tests will be skipped"; \
	fi

test-fast: $(STAMP) node_modules/.installed $(KAFKA_LAYER)
	$(PY) -m pytest -n 2 --dist loadfile -m "not pipeline" $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

synth: $(STAMP) node_modules/.installed $(KAFKA_LAYER)
	@for stage in dev prod; do \
	  echo "synthesizing stage $$stage"; \
	  PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx cdk synth --no-notices --quiet -c stage=$$stage -o cdk.out/$$stage || exit 1; \
	done
	@echo "templates are in cdk.out/<stage>/"

bench: $(STAMP)
	$(PY) -m cascata bench $(ARGS)

deploy: $(STAMP) node_modules/.installed $(KAFKA_LAYER)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx cdk deploy --no-notices --all -c stage=$(or $(STAGE),dev)

destroy: $(STAMP) node_modules/.installed
	@# Version stacks use the base stack's key and alarm topic: they go first.
	@$(PY) -c 'import boto3, sys; stage = sys.argv[1]; names = [s["StackName"] for p in boto3.client("cloudformation").get_paginator("list_stacks").paginate(StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"]) for s in p["StackSummaries"] if s["StackName"].startswith(f"cascata-{stage}-v")]; names and sys.exit("destroy the version stacks first: " + ", ".join(names) + " (make destroy-version VERSION=...)")' $(or $(STAGE),dev)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx cdk destroy --no-notices --all -c stage=$(or $(STAGE),dev)

# A version of the views rebuilt by replay, beside the base stack (docs/reprocessing.md):
#   make deploy-version VERSION=v2 [FROM=stream|archive] [SINCE=<RFC 3339>] [UNTIL=<RFC 3339>]
deploy-version: $(STAMP) node_modules/.installed $(KAFKA_LAYER)
	@test -n "$(VERSION)" || { echo "VERSION=v2 (or another) is required"; exit 2; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx cdk deploy --no-notices cascata-$(or $(STAGE),dev)-$(VERSION) \
	  -c stage=$(or $(STAGE),dev) -c version=$(VERSION) -c replayFrom=$(or $(FROM),stream) \
	  $(if $(SINCE),-c replaySince=$(SINCE)) $(if $(UNTIL),-c replayUntil=$(UNTIL))

destroy-version: $(STAMP) node_modules/.installed
	@test -n "$(VERSION)" || { echo "VERSION=v2 (or another) is required"; exit 2; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx cdk destroy --no-notices cascata-$(or $(STAGE),dev)-$(VERSION) \
	  -c stage=$(or $(STAGE),dev) -c version=$(VERSION) -c replayFrom=$(or $(FROM),stream)

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache .mypy_cache .ruff_cache .hypothesis
