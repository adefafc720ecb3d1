# Common tasks. Every target does its own set-up: `make demo` and `make test` work from a fresh clone.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export RECSYS_HOME ?= $(CURDIR)/var
# Quiet, predictable local Spark; Python workers must use the venv's interpreter.
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(BIN)/python
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test test-fast lint airflow airflow-stop bench-clean bench-scoring bench-quality bench-metrics bench-train clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt overrides.txt setup.cfg scripts/install.sh
	bash scripts/install.sh $(PY) $(VENV)
	touch $@

demo: install
	$(BIN)/python -m recsys.demo

test: install
	$(BIN)/python -m pytest -q tests

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

airflow: install
	bash scripts/airflow.sh start

airflow-stop:
	bash scripts/airflow.sh stop

bench-clean: install
	$(BIN)/recsys bench clean --events 10000000 --json .bench/clean.json

bench-scoring: install
	$(BIN)/recsys bench scoring --users 100000 --items 20000 --factors 64 --k 100 --json .bench/scoring.json

bench-quality: install
	$(BIN)/recsys bench quality --data ../shared/datasets/ml-100k --k 10 --seed 42 --json .bench/quality.json

bench-train: install  ## training throughput of every family: samples/s, wall s, peak RSS
	$(BIN)/recsys bench train --data ../shared/datasets/ml-100k --json .bench/train.json

bench-metrics: install
	$(BIN)/recsys bench metrics --users 6000 --items 4000 --k 10

clean:
	rm -rf $(VENV) var .pytest_cache

# A Spark standalone cluster on 127.0.0.1 (master + 2 workers) for RECSYS_ENV=standalone; see docs/cluster.md.
.PHONY: cluster cluster-stop cluster-status
cluster: install
	PYTHON=$(CURDIR)/$(BIN)/python bash scripts/cluster.sh start

cluster-stop:
	bash scripts/cluster.sh stop

cluster-status:
	bash scripts/cluster.sh status
