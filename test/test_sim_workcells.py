"""`legion sim` with an opposite pair on one object (open the window, then close it) on the twin with
Meta-World's experts: the job runs as a sequence of workcells (legion_kuka.job), and window-close
starts from the window window-open left, where it stood (not where window-close's own start puts it,
elsewhere on the table). Both steps succeed; the change of workcell is announced and nothing latches.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ros]

INSTRUCTION = 'open the window, then close the window'
TASKS = ['window-open-v3', 'window-close-v3']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    bags = tmp_path_factory.mktemp('bags')
    proc = subprocess.run(
        [sys.executable, '-m', 'legion_core.cli.main', 'sim', '--policy', 'expert', '-i', INSTRUCTION,
         '--seed', '1', '--bag-dir', str(bags), '--json'],
        capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


def messages(bag: str, topics: set[str]) -> list[tuple[str, int, object]]:
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic in topics]
        return [(c.topic, t, typestore.deserialize_cdr(raw, c.msgtype))
                for c, t, raw in reader.messages(connections=connections)]


def test_window_close_starts_from_the_window_window_open_left(run):
    proc, result = run
    assert result['scene'] == 'workcells' and result['workcells'] == [[TASKS[0]], [TASKS[1]]], result
    assert [s['skill'] for s in result['steps']] == TASKS, result
    assert all(s['success'] for s in result['steps']), (result, proc.stderr[-3000:])
    recorded = messages(result['bag'], {'/legion/scene', '/legion/object_poses', '/legion/sim2real/status'})
    scenes = [t for topic, t, _ in recorded if topic == '/legion/scene']
    assert len(scenes) >= 2, 'the change of workcell was not announced'
    handle = [(t, np.array([m.poses[0].position.x, m.poses[0].position.y, m.poses[0].position.z]))
              for topic, t, m in recorded if topic == '/legion/object_poses']
    before = [p for t, p in handle if t < scenes[-1]]
    start, left = before[0], before[-1]  # the window as window-open found and left it ...
    found = next(p for t, p in handle if t > scenes[-1])  # ... and as window-close found it
    slide = left - start
    assert np.linalg.norm(slide) > 0.1, 'window-open did not move the handle'
    # The window stands where window-open left it: across its slide the handle has not moved (window-close's
    # own placement for seed 1 is 9.5 cm off). Along the slide the two tasks report different points of
    # the handle (5 cm apart); the slide's carry-over is checked without ROS (test_job.py).
    across = (found - left) - (found - left) @ slide / (slide @ slide) * slide
    assert np.linalg.norm(across) < 0.005, (left, found)
    statuses = [json.loads(m.data) for topic, _, m in recorded if topic == '/legion/sim2real/status']
    assert not [s for s in statuses if s['state'] == 'estop']
    assert max(s.get('estop_resets', 0) for s in statuses) == 0
