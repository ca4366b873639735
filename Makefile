# cookiecutter-hf-classifier: the template's own tasks. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= $(or $(VIRTUAL_ENV),.venv)
BIN := $(abspath $(VENV))/bin
# This workplace keeps a CPU wheel of torch 2.13.0 on disk; elsewhere pick your build, e.g.
#   make install TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
DATA ?=
EXAMPLE_DIR ?= build
EXAMPLE := $(EXAMPLE_DIR)/support-ticket-classifier
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1
export DVC_NO_ANALYTICS := 1
export PATH := $(BIN):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: help install example test test-fast bench bench-train bench-data bench-clock bench-profile bench-openmp bench-threads bench-startup clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

install: ## create .venv (or use the active venv), install PyTorch ($(TORCH)), then requirements.txt (the hfclf library editable + test tools)
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	python -m pip install -q --upgrade pip
	python -m pip install -q $(TORCH)
	python -m pip install -q -r requirements.txt

example: ## bake the default project into build/ and run its whole pipeline with this checkout's library; DATA=path/to/local.csv (else the Hub dataset)
	@rm -rf $(EXAMPLE)
	cookiecutter . --no-input --output-dir $(EXAMPLE_DIR) $(if $(DATA),dataset=$(abspath $(DATA)))
	$(MAKE) -C $(EXAMPLE) all   # this venv already holds the library (editable, from ./hfclf) that the project pins

# Tests run on 2 workers (pytest-xdist; JOBS=1 for one): much of a test's time is one process starting
# or waiting, so two share the cores well. Each file stays on one worker (its module fixtures are built
# once; a session fixture, such as the Bitext-trained project, at most once per worker).
JOBS ?= 2
test: ## every test: the hfclf library's (once), then the template's (bake, run what was baked, the project's own test inside); JOBS=2
	cd hfclf && python -m pytest -q -p no:cacheprovider tests -n $(JOBS) --dist loadfile --durations=10
	python -m pytest -q tests -n $(JOBS) --dist loadfile --durations=15

test-fast: ## the library's and the template's tests that do not train a real model
	cd hfclf && python -m pytest -q -p no:cacheprovider tests -m "not slow"
	python -m pytest -q tests -m "not slow"

bench: bench-train bench-data ## both benchmarks below (long: hours on a small CPU); REPEATS=3 for both

bench-train: ## yardstick (plain Trainer) vs the baked project's train stage, alternating, category + intent; REPEATS=3
	python bench/run.py --repeats $(or $(REPEATS),3) --csv $(or $(DATA),../shared/data/bitext/customer_support_sample.csv)

bench-data: ## the defaults vs a fixed 5 epochs, baselines, plan's estimate error on real datasets built offline (bench/results/convergence.md); DATASETS=bitext,debian-1k,debian-3k,debian-10k,man,debtags REPEATS=3 (1 with SEEDS=42,7,13: a run per seed); ALSO="window1: train.patience_window=1" adds the defaults with those overrides
	python bench/convergence.py --repeats $(or $(REPEATS),$(if $(SEEDS),1,3)) $(if $(DATASETS),--datasets $(DATASETS)) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(ALSO),--also "$(ALSO)")

bench-clock: ## the smoke test's clock, one round vs the median of rounds, quiet and under a 3-second spell (Debian 10k)
	python bench/clock.py --dataset debian-10k --trials 5 --spell 3

bench-profile: ## where the yardstick's time goes (cProfile of one epoch, by phase)
	python bench/profile_yardstick.py

bench-openmp: ## training-step time by OpenMP wait policy, idle and beside a busy process (what hfclf/infra/openmp.py decides from)
	python bench/openmp_wait.py

bench-threads: ## one text at a time: latency under one thread, all threads, the 0.4.8 rule and the current one (MODEL=<project>/models/model, or SHAPE=12,768 for a random BERT; PRECISION=fp32)
	python bench/threads.py $(if $(MODEL),--model-dir $(MODEL),--shape $(SHAPE)) --precision $(PRECISION)
bench-threads: SHAPE ?= 6,384
bench-threads: PRECISION ?= auto

bench-startup: ## the train stage's time outside its loop, this checkout's library against BASE=<git revision>'s, alternating (LABEL=category REPEATS=6; FRESH=1: a fresh MLflow store each run)
	python bench/startup.py --base $(BASE) --label $(or $(LABEL),category) --repeats $(or $(REPEATS),6) $(if $(FRESH),--fresh-store)

clean: ## remove baked examples and caches
	rm -rf $(EXAMPLE_DIR) .pytest_cache
