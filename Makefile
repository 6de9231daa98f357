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

.PHONY: help setup demo test test-fast lint lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup:  ## create or verify .venv with the pinned stack (idempotent)
	@LEGION_VENV=$(VENV) scripts/bootstrap.sh

DEMO_INSTRUCTION ?= reach the goal, then close the drawer, then close the window
# Goal variant 1: the shipped policy misses variant 0's reach goal, in Meta-World itself as well.
DEMO_SEED ?= 1

demo: setup  ## the main job: the simulated arm carries out a 3-step instruction with the shipped policy
	@$(BIN)/legion sim --seed $(DEMO_SEED) -i "$(DEMO_INSTRUCTION)"; rc=$$?; \
	if [ $$rc -eq 1 ]; then echo "demo: the run completed; a step failed (see above)"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

test: setup  ## the full test suite: lint, unit tests, colcon build + test, integration tests
	@scripts/test.sh

test-fast: setup  ## unit tests only, in this process tree (no colcon), one pytest per package
	@# (their test modules share basenames such as test_lint.py, which one pytest session cannot import twice)
	@status=0; for dir in src/*/test test; do $(BIN)/python -m pytest -q -m "not slow" $$dir || status=1; done; \
	exit $$status

lint: setup  ## ruff over the workspace
	@$(BIN)/ruff check src test launch scripts

lock: setup  ## re-pin every installed package into requirements/constraints.txt
	@{ echo '# Every package of the workspace venv, pinned. Regenerate with `make lock` after changing stack.txt.'; \
	  $(BIN)/python -m pip freeze --all --exclude-editable | grep -v '^pip=='; } > requirements/constraints.txt

clean:  ## remove build products (keeps .venv)
	rm -rf build install log .pytest_cache runs/tmp
