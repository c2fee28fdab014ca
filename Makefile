# sagakit: every command a newcomer needs. Python runs from .venv, created on first use.
#   make up / down / status   the local stack (PROFILE=test for the test suite's own stack;
#                             KAFKA_BROKERS=3 for a three-node Kafka, KAFKA_AUTH=scram for SASL)
#   make test                 the whole suite against real Kafka, PostgreSQL and Redis
#   make lint                 ruff and mypy
#   make bench                the benchmark, on its own stack (bench/README.md)
#   make chaos                sagas under killed services, broker, Redis, PostgreSQL; verified
#   make soak                 100 orders/s for 30 minutes; a verdict on growth (soak/README.md)

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
BENCH_INSTALLED := $(VENV)/.installed-bench
PROFILE ?= dev
PYTEST_ARGS ?=
# Empty: one Kafka broker without authentication, or whatever of ours already runs.
KAFKA_BROKERS ?=
KAFKA_AUTH ?=
KAFKA_OPTIONS := $(if $(KAFKA_BROKERS),--kafka-brokers $(KAFKA_BROKERS)) \
                 $(if $(KAFKA_AUTH),--kafka-auth $(KAFKA_AUTH))
BENCH_ARGS ?=
CHAOS_ARGS ?=

.PHONY: help install up down status test lint demo bench chaos soak

help:
	@echo "make install | up | down | status | test | lint | demo | bench | chaos | soak   (PROFILE=$(PROFILE))"

# Two distributions, both editable: the platform (pyproject.toml: shared/ and the sagakit
# command, what a wheel holds) and the repository's application (reference/pyproject.toml: the
# services, the local stack, the benchmark, the test tools, and the entry points that show the
# reference system to sagakit). Re-installed only when one of them changes (the stamp is
# older than it).
$(INSTALLED): pyproject.toml reference/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV) || { \
	  echo "python3 -m venv failed: apt-get install -y python3-venv (Python 3.11+ needed)" >&2; \
	  exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check -e . -e './reference[test]'
	@touch $@

install: $(INSTALLED)

# The benchmark's extra (matplotlib, for its plot) on top of the test tools.
$(BENCH_INSTALLED): $(INSTALLED)
	$(PY) -m pip install --quiet --disable-pip-version-check -e . -e './reference[test,bench]'
	@touch $@

up: install
	$(PY) -m deploy.localstack up --profile $(PROFILE) $(KAFKA_OPTIONS)

down: install
	$(PY) -m deploy.localstack down --profile $(PROFILE)

status: install
	@$(PY) -m deploy.localstack status --profile $(PROFILE)

# The suite starts the local stack's test profile itself (tests/infra.py) and stops it after.
# pytest exits 5 when it collects no tests: that is a failure here, and said so.
test: install
	@$(PY) -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict deploy tests/conftest.py tests/infra.py tests/integration/test_smoke.py \
	  tests/e2e/test_bench_smoke.py tests/e2e/test_chaos_smoke.py

# The README's first command: everything up, then the saga's scenarios, left running.
demo: up
	@$(PY) -m deploy.demo .stack/stack.env

# The benchmark on a stack of its own (the bench profile: its own ports, state and database
# cluster, so neither make up's stack nor the tests' is touched), started for the run and
# stopped after it whatever the outcome. Sizes and durations are BENCH_* variables
# (make bench BENCH_ORDERS=2000) or options in BENCH_ARGS; see bench/README.md.
# SAGAKIT_* variables of the shell are dropped: they would send the bench stack to servers
# of yours (a sourced .stack/stack.env: the dev stack's), whose tables a run empties.
bench: $(BENCH_INSTALLED)
	@unset $$(compgen -e | grep '^SAGAKIT_'); \
	trap '$(PY) -m deploy.localstack down --profile bench' EXIT; \
	$(PY) -m deploy.localstack up --profile bench && $(PY) -m bench $(BENCH_ARGS)

# Sagas while service instances, the broker, Redis and PostgreSQL are killed, then verify:
# on a stack of its own (the chaos profile: its own ports, state and database cluster, since
# it kills them), started for the run and stopped after it whatever the outcome. CHAOS_*
# variables size it (make chaos CHAOS_ORDERS=10000), or options in CHAOS_ARGS; the report
# goes to chaos/results/. SAGAKIT_* variables of the shell are dropped, as for make bench:
# the chaos stack must never be pointed at servers of yours.
chaos: install
	@unset $$(compgen -e | grep '^SAGAKIT_'); \
	trap '$(PY) -m deploy.localstack down --profile chaos' EXIT; \
	$(PY) -m deploy.localstack up --profile chaos && $(PY) -m deploy.chaos run $(CHAOS_ARGS)

# Sustained orders with the retention windows compressed, every series sampled every 10 s,
# then verify and a verdict on growth: on a stack of its own (the soak profile), which the run
# starts with the compressed settings and stops after it whatever the outcome. SOAK_*
# variables size it (make soak SOAK_RATE=50 SOAK_MINUTES=120); the report and a PNG go to
# soak/results/. SAGAKIT_* variables of the shell are dropped, as for make bench.
soak: $(BENCH_INSTALLED)
	@unset $$(compgen -e | grep '^SAGAKIT_'); $(PY) -m deploy.soak
