"""`legion sim --scene per-step`: a job of 4 distinct tasks (more than a workcell holds) on the twin with
Meta-World's experts. The twin loads each step's scene and announces the arm's jump on /legion/scene;
sim2real must re-anchor on each jump and never latch its e-stop, and nobody may reset it: the run's bag
holds every sim2real status, which counts the reset requests it served.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ros]

INSTRUCTION = ('reach the goal, then close the drawer, then press the button from the top, '
               'then close the window')
TASKS = ['reach-v3', 'drawer-close-v3', 'button-press-topdown-v3', 'window-close-v3']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    bags = tmp_path_factory.mktemp('bags')
    proc = subprocess.run(
        [sys.executable, '-m', 'legion_core.cli.main', 'sim', '--policy', 'expert', '--scene', 'per-step',
         '-i', INSTRUCTION, '--seed', '0', '--bag-dir', str(bags), '--json'],
        capture_output=True, text=True, timeout=1500, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


def sim2real_statuses(bag: str) -> list[dict]:
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == '/legion/sim2real/status']
        return [json.loads(typestore.deserialize_cdr(raw, c.msgtype).data)
                for c, _, raw in reader.messages(connections=connections)]


def test_every_scene_change_is_announced_and_nothing_latches_or_resets(run):
    proc, result = run
    assert result['scene'] == 'per-step' and [s['skill'] for s in result['steps']] == TASKS, result
    # Every step ran to its own end (an e-stop would fail one step and cancel the rest).
    assert all(s['state'] in ('succeeded', 'failed') and s['duration_s'] for s in result['steps']), \
        (result, proc.stderr[-3000:])
    assert 'E-STOP' not in proc.stderr and 'estop' not in json.dumps(result)
    statuses = sim2real_statuses(result['bag'])
    assert statuses, 'the bag holds no sim2real status'
    assert not [s for s in statuses if s['state'] == 'estop'], [s for s in statuses if s['state'] == 'estop']
    assert max(s.get('estop_resets', 0) for s in statuses) == 0
    # The three loads after the first scene, each re-anchored at its announced posture (the first one
    # too, unless the twin's arm settled away from it before sim2real came up).
    assert statuses[-1]['scenes'] >= len(TASKS) - 1, statuses[-1]
