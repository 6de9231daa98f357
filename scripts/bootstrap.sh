#!/usr/bin/env bash
# Create or refresh the workspace's virtual environment (.venv by default).
#
# Idempotent: a stamp records a hash of everything that decides the environment (the pinned
# constraints, the top-level requirement list, each package's setup.py). When nothing changed and
# the venv's interpreter still works, this costs well under a second and installs nothing.
#
#   scripts/bootstrap.sh            # set up or verify
#   LEGION_VENV=/opt/venv scripts/bootstrap.sh
#   scripts/bootstrap.sh --force    # rebuild from scratch
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${LEGION_VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
STAMP="$VENV/.legion-stamp"

state() {
  cat requirements/stack.txt requirements/constraints.txt src/*/setup.py scripts/bootstrap.sh \
    | sha256sum | cut -d' ' -f1
}

if [ "${1:-}" = "--force" ]; then rm -rf "$VENV"; fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(state)" ] && "$VENV/bin/python" -c '' 2>/dev/null; then
  exit 0
fi

echo "bootstrap: setting up $VENV (first run takes a few minutes)" >&2
if ! "$VENV/bin/python" -c '' 2>/dev/null; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q "pip==26.3"
# Every package, direct or transitive, is pinned in constraints.txt so fresh machines agree.
"${PIP[@]}" install -q -c requirements/constraints.txt -r requirements/stack.txt
# bnpy 0.1.7 pins joblib 0.14.1, which does not install on Python 3.11: take it without its
# declared dependencies; its real run-time needs are in stack.txt. Our bnpy backend patches the
# rest at import time (see legion_core/dpmm/bnpy_backend.py).
"${PIP[@]}" install -q --no-deps -c requirements/constraints.txt bnpy
# setuptools warns loudly about editable installs; keep the noise in a log unless it fails.
"${PIP[@]}" install -q --no-deps --no-build-isolation \
  -e src/legion_core -e src/legion_kuka -e src/legion_ros -e src/legion_bringup \
  >"$VENV/.editable.log" 2>&1 || { cat "$VENV/.editable.log" >&2; exit 1; }
state > "$STAMP"
echo "bootstrap: $VENV ready" >&2
