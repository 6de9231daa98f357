#!/usr/bin/env bash
# The full test suite, as `make test` and CI run it.
#
#   1. set up (or verify) .venv                       scripts/bootstrap.sh
#   2. colcon build --symlink-install of src/         proves the packages build as ROS packages
#   3. colcon test: every package's test/ (unit tests, lint), each test run exactly once
#   4. pytest test/: cross-package integration tests (ROS graphs over loopback)
#
# Tests marked `slow` are skipped unless LEGION_TEST_SLOW=1 (CI sets it). Every pytest process
# leases its own ROS domain (legion_ros pytest plugin) and DDS stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# shellcheck disable=SC1091
source .venv/bin/activate
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONDONTWRITEBYTECODE=1
markers="not slow"
[ "${LEGION_TEST_SLOW:-0}" = "1" ] && markers=""

echo "== colcon build"
colcon --log-base log build --symlink-install --base-paths src \
  --event-handlers console_cohesion- status- summary+ >/dev/null
echo "== colcon test (package unit tests and lint)"
colcon --log-base log test --base-paths src --event-handlers console_direct+ status- \
  --pytest-args -q -p no:cacheprovider ${markers:+-m "$markers"}
status=0
colcon --log-base log test-result --test-result-base build --verbose || status=1
echo "== integration tests (test/)"
# Run even when a package failed, so one run shows every failure; the exit code keeps both.
python -m pytest -q -p no:cacheprovider ${markers:+-m "$markers"} test || status=$?
exit $status
