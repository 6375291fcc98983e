# eventshop — `make help` lists the targets. Everything runs through uv in one workspace virtualenv.
SHELL := /bin/bash
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
STACK := $(UV) run --quiet python -m eventshop_tools.stack
DATA ?=
LIMIT ?= 5000
RATE ?=

.DEFAULT_GOAL := help
.PHONY: help install up infra down status logs schemas test test-unit test-faults lint replay dlq dlq-redrive clean bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## install uv (if missing) and every workspace package with pinned versions
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --quiet --user "uv==$(UV_VERSION)"
	@$(UV) sync --quiet

up: install ## start Kafka, the registry, topics + schemas and every service (native JVMs, no Docker)
	@$(STACK) up

infra: install ## start only Kafka, the registry, topics + schemas
	@$(STACK) infra

down: ## stop everything `make up` started
	@$(STACK) down

status: ## what runs, with its URL
	@$(STACK) status

logs: ## follow the logs (make logs N=order for one)
	@$(STACK) logs $(N)

schemas: install ## create topics and register schemas (compatibility BACKWARD) on the running cluster
	@$(UV) run --quiet python -m eventkit.provision

test: install ## the whole suite: unit, integration (real Kafka + registry) and end-to-end
	@$(UV) run pytest

test-faults: install ## the fault-injection suite alone (kills and restarts local processes)
	@$(UV) run pytest -m faults

test-unit: install ## unit tests only (no broker)
	@$(UV) run pytest -m "not integration and not e2e"

lint: install ## ruff and mypy
	@$(UV) run ruff check . && $(UV) run ruff format --check . && $(UV) run mypy libs/eventkit/src services/*/src tools/src

bench: install ## every benchmark as same-run ratios (starts the stack if needed): bench/results/latest.{json,md}
	@$(UV) run python bench/run_all.py

replay: install ## POST real invoices to the order API: make replay DATA=<file> LIMIT=n RATE=r
	@$(UV) run python -m eventshop_tools.replay $(DATA) $(if $(LIMIT),--limit $(LIMIT)) $(if $(RATE),--rate $(RATE))

dlq: install ## list dead letters (T=orders.placed for one topic)
	@$(UV) run --quiet python -m eventshop_tools.dlq list $(if $(T),--topic $(T))

dlq-redrive: install ## put dead letters back on their original topics after a fix (T=..., DRY=1)
	@$(UV) run --quiet python -m eventshop_tools.dlq redrive $(if $(T),--topic $(T)) $(if $(DRY),--dry-run)

clean: down ## stop, and delete broker data, registry data and service state (keeps downloaded jars)
	@rm -rf .run
