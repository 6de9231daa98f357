"""scripts/bench_gripper_response.py: the finger model makes the twin's fingers Meta-World's, and leaves
the twin as it was afterwards."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'bench_gripper_response.py'


def test_the_finger_model_closes_the_twins_fingers_as_meta_worlds_and_the_plain_twin_does_not():
    done = subprocess.run([sys.executable, str(SCRIPT), 'table', '--values', '0.15', '--steps', '12'],
                          capture_output=True, text=True, check=True)
    rows = {row['embodiment']: row['opening_every_3_steps']
            for row in map(json.loads, done.stdout.splitlines())}
    kuka, twin, modelled = rows['kuka'], rows['twin'], rows['twin + finger model']
    assert len(kuka) == len(twin) == len(modelled) == 4
    assert max(abs(a - b) for a, b in zip(kuka, modelled, strict=True)) < 0.03
    assert twin[-1] < kuka[-1] - 0.05  # a small closing value: the real gripper's slowest speed


def test_the_finger_model_is_undone_after_its_block():
    from legion_kuka import twin

    spec = importlib.util.spec_from_file_location('bench_gripper_response', SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    before = twin.Twin.reset, twin.Twin.set_gripper
    with script.finger_model():
        assert (twin.Twin.reset, twin.Twin.set_gripper) != before
    assert (twin.Twin.reset, twin.Twin.set_gripper) == before
    # a full close: Meta-World's finger reaches the stroke's end and stays there
    closing, speed = 0.0, 0.0
    for _ in range(40):
        closing, speed = script.finger_step(closing, speed, 1.0)
    assert closing == script.GRIPPER.finger_stroke
