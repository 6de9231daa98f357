# LEGION-ROS workspace. `make help` lists the targets. Every target sets up .venv first (idempotent:
# seconds when it is already there) and runs ROS processes on loopback with their own domain.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export PYTHONDONTWRITEBYTECODE := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MUJOCO_GL ?= egl

.PHONY: help setup demo test test-fast lint colcon lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup:  ## create or verify .venv with the pinned stack (idempotent)
	@LEGION_VENV=$(VENV) scripts/bootstrap.sh

demo: setup  ## the main job: the most complete end-to-end run the project has
	@$(BIN)/legion demo

test: setup  ## the full test suite: lint, unit tests, colcon build + test, integration tests
	@scripts/test.sh

test-fast: setup  ## unit tests only, in this process tree (no colcon)
	@$(BIN)/python -m pytest -q -m "not slow" src test

lint: setup  ## ruff over the workspace
	@$(BIN)/ruff check src test launch scripts

lock: setup  ## re-pin every installed package into requirements/constraints.txt
	@$(BIN)/python -m pip freeze --exclude-editable | grep -v '^bnpy' > requirements/constraints.txt
	@echo "bnpy==0.1.7" >> requirements/constraints.txt

clean:  ## remove build products (keeps .venv)
	rm -rf build install log .pytest_cache runs/tmp
