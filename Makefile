# The project's interface. `make demo` runs the local stack; `make test` runs every test.
# Both install what they need first (scripts/bootstrap.sh, cached under ~/.cache/obs-stack).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# PYTHON (an interpreter for the venvs) passed on explicitly: `make up PYTHON=...` sets it
# for the recipes, but make 4.3 does not give it to $(shell).
VENV := $(shell PYTHON='$(PYTHON)' scripts/bootstrap.sh --print-venv)
PY := $(VENV)/bin/python
# up/status/open/down run from a small venv of their own: Python >= 3.10 and PyYAML.
DEPLOY_VENV := $(shell PYTHON='$(PYTHON)' scripts/bootstrap.sh --print-deploy-venv)
PYTEST := $(PY) -m pytest
# The fast lane: every test that needs no backend, image or control plane (tests/README.md).
FAST := not (integration or e2e or images or validate or k8s or node or browser)

.PHONY: help check bootstrap bootstrap-python bootstrap-deploy bootstrap-images bootstrap-k8s bootstrap-browser validate test-images up status open down services demo mail test test-e2e lint format lock clean views bench

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

bootstrap: ## Install everything (Python venv, Prometheus, Alertmanager, Jaeger, Elasticsearch)
	scripts/bootstrap.sh all

bootstrap-python: ## Install only the Python environment
	scripts/bootstrap.sh python

bootstrap-deploy: ## Install only the deploy tool (up/status/open/down): Python >= 3.10 and PyYAML
	scripts/bootstrap.sh deploy

bootstrap-images: ## Install podman and the base image the service images build on (a local stand-in if no registry)
	scripts/bootstrap.sh images

bootstrap-browser: ## Install Debian's chromium and chromium-driver for the browser tests
	scripts/bootstrap.sh browser

bootstrap-k8s: ## Build a Kubernetes control plane, kwok, KSM, Prometheus 3 tools from source; checkov (15-25 min cold)
	scripts/bootstrap.sh k8s

services: bootstrap-python ## Run frontend (:5000) and backend (:5001) in the foreground until Ctrl-C
	$(VENV)/bin/obs-stack services

demo: bootstrap ## Run the whole local stack (services, Prometheus, Alertmanager, Jaeger, Elasticsearch, mail)
	$(VENV)/bin/obs-stack demo

mail: bootstrap-python ## List the e-mails caught by `make demo`; `make mail N=2` shows one
	$(VENV)/bin/obs-stack mail $(N)

lint: bootstrap-python ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

check: lint ## The fast lane: lint and the tests that need only Python (under a minute)
	$(PYTEST) -q -m "$(FAST)" tests

test: bootstrap bootstrap-images bootstrap-k8s bootstrap-browser lint ## Every test: unit, integration, config checks, e2e against the real backends
	CI=$${CI:-} $(PYTEST) tests

test-e2e: bootstrap bootstrap-k8s ## Only the end-to-end tests against the real backends (the crash-loop ones need the control plane)
	CI=$${CI:-} $(PYTEST) -m e2e tests

bench: ## Telemetry cost vs the bare app (wrk, real Jaeger): docs/benchmarks.{json,md,png}; ~16 min
	scripts/bootstrap.sh bench
	$(VENV)/bin/obs-bench all docs/benchmarks.json

validate: bootstrap-python bootstrap-k8s ## Check the k8s/ render offline: schema, a real API server (Pod Security), cross-references, promtool/amtool/Jaeger, checkov
	CI=$${CI:-} $(PYTEST) -m validate tests/k8s

test-images: bootstrap-python bootstrap-images ## Only the image tests: build and run both service images with podman
	CI=$${CI:-} $(PYTEST) -m images tests

format: bootstrap-python ## Apply ruff's formatting and safe fixes
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

lock: bootstrap-python ## Re-resolve the pinned dependency locks
	$(PY) -m uv pip compile --quiet --python-version 3.11 --generate-hashes \
	  services/requirements.in -o services/requirements.lock
	$(PY) -m uv pip compile --quiet --python-version 3.11 --generate-hashes \
	  requirements/dev.in -o requirements/dev.lock
	$(PY) -m uv pip compile --quiet --python-version 3.11 --generate-hashes \
	  requirements/checkov.in -o requirements/checkov.lock
	$(PY) -m uv pip compile --quiet --python-version 3.10 --generate-hashes \
	  requirements/deploy.in -o requirements/deploy.lock

views: bootstrap-python ## Regenerate Grafana dashboards, Kibana saved objects and the kube-prometheus-stack PrometheusRules (tools/obs_tools/views/)
	$(VENV)/bin/obs-views

up: bootstrap-deploy ## Deploy to Minikube (starts it, builds the images); UP_ARGS="--skip-minikube --registry R" for another cluster
	$(DEPLOY_VENV)/bin/obs-deploy up $(UP_ARGS)

status: bootstrap-deploy ## What of the Kubernetes deployment runs and what is not ready (exit 1 if anything is not)
	$(DEPLOY_VENV)/bin/obs-deploy status $(UP_ARGS)

open: bootstrap-deploy ## Port-forward the UIs (Grafana, Kibana, Jaeger, ...) to 127.0.0.1 until Ctrl-C
	$(DEPLOY_VENV)/bin/obs-deploy open $(UP_ARGS)

down: bootstrap-deploy ## Remove everything `make up` deployed, and nothing else (Fluent Bit's node state /var/lib/fluent-bit stays: see docs/kubernetes.md)
	$(DEPLOY_VENV)/bin/obs-deploy down $(UP_ARGS)

clean: ## Remove local run state (.run/); the install cache stays
	rm -rf .run
