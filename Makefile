# Stockflow: the commands a developer and CI use. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
# nextest runs each test in its own process, in parallel; plain cargo test
# is the fallback on machines without it.
# Where cargo puts binaries: CARGO_TARGET_DIR when set (a target shared
# between clones), else target/ here.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
TEST_RUNNER := $(shell command -v cargo-nextest >/dev/null 2>&1 && echo "nextest run --retries 0" || echo test)
# Tests marked #[ignore] because they need more than `make services` (test-cluster).
IGNORED_ONLY := $(shell command -v cargo-nextest >/dev/null 2>&1 && echo "--run-ignored only" || echo "-- --ignored")

.PHONY: help services services-stop build run stop test contract contract-run lint fmt bench bench-quick bench-quick-run clean-test-dbs test-deploy test-cluster k8s-validate

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

services: ## Start PostgreSQL, RabbitMQ, the S3 server and nginx on 127.0.0.1 (installs what is missing)
	@bash scripts/services.sh up

services-stop: ## Stop only the services that `make services` started
	@bash scripts/services.sh down

build: ## Build every service binary
	$(CARGO) build --workspace --bins --locked

run: services build ## Start the whole system locally and print how to call it
	@STOCKFLOW_BIN_DIR=$(TARGET_DIR)/debug bash scripts/run.sh start

stop: ## Stop what `make run` started
	@bash scripts/run.sh stop

lint: ## Formatting and clippy, warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test: services lint ## Everything CI checks: services, lint, the whole test suite, the API contract, a quick bench round
	$(CARGO) $(TEST_RUNNER) --workspace --locked
	@$(MAKE) --no-print-directory contract-run
	@$(MAKE) --no-print-directory bench-quick-run

test-cluster: services ## Three-node RabbitMQ cluster on 127.0.0.1 (scripts/rabbitmq-cluster.sh): the api and worker through node and leader failures
	bash scripts/rabbitmq-cluster.sh up
	status=0; $(CARGO) $(TEST_RUNNER) --locked -p stockflow-api --test cluster $(IGNORED_ONLY) || status=$$?; \
		bash scripts/rabbitmq-cluster.sh down; exit $$status

test-deploy: services ## Build the four images and run the production compose stack end to end through nginx (scripts/test-deploy.sh; root)
	@bash scripts/test-deploy.sh

contract: services contract-run ## schemathesis --checks all against a running api (scripts/contract.sh)

contract-run:
	$(CARGO) build --locked -p stockflow-api -p stockflow-worker --bins
	STOCKFLOW_BIN_DIR=$(TARGET_DIR)/debug bash scripts/contract.sh

k8s-validate: ## Validate deploy/k8s/ (strict Kubernetes schemas) and its settings against .env.prod.example
	@bash scripts/k8s-validate.sh

fmt: ## Format the code
	$(CARGO) fmt --all

bench: services ## Run the benchmark scenarios; results in docs/benchmarks.md
	$(CARGO) build --workspace --bins --release --locked
	$(CARGO) build --release --locked -p stockflow-storage -p stockflow-queue --examples
	STOCKFLOW_BIN_DIR=$(TARGET_DIR)/release python3 bench/run.py

bench-quick: services bench-quick-run ## One short round of every scenario on debug binaries, to prove each runs; nothing is kept

bench-quick-run:
	$(CARGO) build --workspace --bins --locked
	$(CARGO) build --locked -p stockflow-storage -p stockflow-queue --examples
	STOCKFLOW_BIN_DIR=$(TARGET_DIR)/debug python3 bench/run.py --quick

clean-test-dbs: ## Drop test databases left behind by killed test runs, and old test templates
	@bash scripts/services.sh clean-test-dbs
