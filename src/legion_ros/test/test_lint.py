"""ruff over this package: the ament_flake8 convention, with the workspace's ruff settings."""
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1]


@pytest.mark.linter
def test_ruff_clean():
    proc = subprocess.run([sys.executable, '-m', 'ruff', 'check', str(PACKAGE)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
