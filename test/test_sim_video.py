"""`legion sim --video`: a one-step job through the whole ROS graph, then its video, drawn in a separate
process from the twin's state log: the file the JSON result names, as long as the job on the twin's
clock (from 1 s before the step to 2 s after the instruction ended), its last frames after the step's
success."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from legion_core.video import offscreen_problem, read_frames

pytestmark = [pytest.mark.slow, pytest.mark.ros]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    problem = offscreen_problem()
    if problem is not None:
        pytest.skip(f'no offscreen rendering here: {problem}')
    out = tmp_path_factory.mktemp('video')
    proc = subprocess.run(
        [sys.executable, '-m', 'legion_core.cli.main', 'sim', '--policy', 'expert', '-i', 'reach the goal',
         '--bag-dir', str(out / 'bags'), '--video', str(out / 'job.mp4'), '--video-size', '320x180',
         '--json'],
        capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return proc, json.loads(proc.stdout.strip().splitlines()[-1]), out


def test_the_video_shows_the_whole_job(run):
    from legion_kuka.state_log import load_state_log
    from legion_kuka.video import LEAD_S, TAIL_S

    proc, result, out = run
    assert proc.returncode == 0 and result['success'], proc.stderr[-3000:]
    assert result['video'] == str(out / 'job.mp4')
    made = result['video_render']
    frames = read_frames(result['video'])
    assert len(frames) == made['frames'] and frames[0].shape == (180, 320, 3)
    # The twin's log: the step's start, its success and the instruction's end, all inside the log.
    (path,) = made['logs']
    log = load_state_log(path)
    times = log.segments[-1].times
    steps = [n for n in log.notes if n['topic'] == 'active_step']
    started = next(n['t'] for n in steps if n['data']['task'])
    ended = next(n['t'] for n in steps if n['t'] > started and not n['data']['task'])
    success = next(n['t'] for n in log.notes if n['topic'] == 'step_success')
    assert started < success <= ended < times[-1]
    # One frame per 40 ms of the twin's time, from LEAD_S before the step to TAIL_S after the end (or
    # the log's end, when the graph stopped sooner).
    expected = (min(ended + TAIL_S, times[-1]) - (started - LEAD_S)) * 25
    assert abs(len(frames) - expected) <= 2, (len(frames), expected)
    assert result['steps'][0]['duration_s'] < made['duration_s']
