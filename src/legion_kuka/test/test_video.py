"""The twin's state log and the video drawn from it, without ROS: a few seconds of a real twin recorded
as the sim_bridge records them, written, read back, rendered offscreen into an MP4 of the expected
length whose captions follow the recorded instruction steps."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from legion_core.video import GREEN, WHITE, offscreen_problem, read_frames
from legion_kuka.state_log import Scene, StateLog, StateRecorder, load_state_log, save_state_log
from legion_kuka.twin import Twin
from legion_kuka.video import Captions, captions_of, plan_frames, render_state_logs

SECONDS = 3.0
EVERY = 4  # control cycles per recorded state: 25 Hz at 100 Hz
SIZE = (320, 180)


@pytest.fixture(scope='module')
def recorded(tmp_path_factory):
    """3 s of the reach-v3 twin moving its arm, recorded every 4th control cycle, with the notes an
    instruction leaves: step 1 starts at 1.0 s, succeeds at 2.0 s, the instruction ends at 2.5 s."""
    twin = Twin('reach-v3', seed=0)
    recorder = StateRecorder(every=EVERY)
    recorder.begin(Scene.of(twin), twin.model.nq)
    start = twin.joint_state().position
    notes = {100: ('active_step', {'sequence_id': 1, 'index': 0, 'task': 'reach-v3',
                                   'instruction': 'reach the goal'}),
             200: ('step_success', {'sequence_id': 1, 'index': 0, 'task': 'reach-v3', 'success': True}),
             250: ('active_step', {'sequence_id': 1, 'index': None, 'task': None, 'instruction': None})}
    cycles = round(SECONDS / twin.control_period_s)
    for cycle in range(cycles):
        t = cycle * twin.control_period_s
        twin.set_joint_targets(start + np.array([0.6, 0.3, 0, -0.4, 0, 0.3, 0]) * min(1.0, t / 2.0))
        if cycle in notes:
            recorder.note(t, *notes[cycle])
        if recorder.due(cycle):
            recorder.record(t, twin.scene_state())
        twin.step(1)
    path = save_state_log(tmp_path_factory.mktemp('log') / 'twin.npz', recorder.snapshot())
    return twin, path, cycles // EVERY


@pytest.fixture(scope='module')
def can_render():
    problem = offscreen_problem()
    if problem is not None:
        pytest.skip(f'no offscreen rendering here: {problem}')


def test_the_log_reads_back_as_recorded(recorded):
    twin, path, rows = recorded
    log = load_state_log(path)
    assert len(log.segments) == 1 and log.rows == rows
    segment = log.segments[0]
    assert segment.scene == Scene(('reach-v3',), 'reach-v3', 0, workcell=False)
    assert segment.qpos.shape == (rows, twin.model.nq)
    np.testing.assert_allclose(np.diff(segment.times), EVERY * twin.control_period_s)
    assert [n['topic'] for n in log.notes] == ['active_step', 'step_success', 'active_step']
    assert [p.name for p in path.parent.iterdir()] == ['twin.npz']  # no temporary file left behind


def test_a_rebuilt_scene_at_a_recorded_state_is_the_twin_at_that_moment(recorded):
    twin, path, _ = recorded
    last = load_state_log(path).segments[0]
    replica = last.scene.build()
    replica.show_state(twin.scene_state())
    np.testing.assert_allclose(replica.hand_pose()[0], twin.hand_pose()[0], atol=1e-9)
    np.testing.assert_allclose(replica.goal_position(), twin.goal_position(), atol=1e-9)
    with pytest.raises(ValueError, match='joint positions'):
        replica.show_state(np.zeros(3))


def test_a_failed_write_keeps_the_previous_log_whole(recorded, tmp_path, monkeypatch):
    _, path, rows = recorded
    log = load_state_log(path)
    target = save_state_log(tmp_path / 'log.npz', log)

    def broken(*_args, **_kwargs):
        raise OSError('disk full')

    monkeypatch.setattr(np, 'savez', broken)
    with pytest.raises(OSError, match='disk full'):
        save_state_log(target, log)
    monkeypatch.undo()
    assert load_state_log(target).rows == rows
    assert [p.name for p in tmp_path.iterdir()] == ['log.npz']


def test_recording_a_state_is_cheap():
    """The sim_bridge records in its 100 Hz timer callback: a record must cost microseconds."""
    import time

    recorder = StateRecorder(every=1, capacity=16)
    recorder.begin(Scene(('reach-v3',), 'reach-v3', 0), 30)
    qpos = np.arange(30.0)
    start = time.perf_counter()
    for k in range(20000):  # the buffers grow from 16 rows on the way
        recorder.record(k * 0.01, qpos)
    per_record_us = (time.perf_counter() - start) / 20000 * 1e6
    assert recorder.rows == 20000 and recorder.snapshot().segments[0].qpos[-1, 29] == 29.0
    assert per_record_us < 50, f'{per_record_us:.1f} µs a record'


def test_frames_follow_the_twins_time_and_trim_to_the_job(recorded):
    _, path, rows = recorded
    log = load_state_log(path)
    every = plan_frames([log], 25.0, trim=False)
    assert len(every) == rows and [f.row for f in every] == list(range(rows))
    # Trimmed: from LEAD_S (1 s) before the first step to the end of the log (TAIL_S after the end
    # of the instruction lies beyond it).
    trimmed = plan_frames([log], 25.0, trim=True)
    assert trimmed[0].t == pytest.approx(0.0) and len(trimmed) == rows
    half = plan_frames([log], 12.5, trim=False)  # half the rate: every other state
    assert [f.row for f in half] == list(range(0, rows, 2))


def test_captions_follow_the_steps(recorded):
    _, path, _ = recorded
    captions = Captions(load_state_log(path), {'instruction': 'reach the goal',
                                               'steps': [{'skill': 'reach-v3', 'success': True}]})
    assert captions.lines(0.5, 0.5)[0][0] == 'waiting for the instruction'
    running, _ = captions.lines(1.5, 1.5)
    assert running[0] == 'step 1/1: reach the goal  [reach-v3]' and 'succeeded' not in running[1]
    done, colours = captions.lines(2.1, 2.1)
    assert done[1].endswith('step 1 succeeded') and colours[1] != colours[0]
    assert captions.lines(2.9, 2.9)[0][0] == 'instruction done: 1/1 steps succeeded'


def test_notes_of_another_shape_are_not_shown_and_notes_are_bounded(recorded):
    """The notes come from topics anyone can publish on: what is not a step is kept but never shown,
    and a flood of them does not grow the twin's memory."""
    _, path, _ = recorded
    log = load_state_log(path)
    odd = [{'t': 0.2, 'topic': 'active_step', 'data': data} for data in (
        'not json', {'sequence_id': 'x', 'index': 0, 'task': 'reach-v3'}, {'sequence_id': 1, 'index': [0]},
        {'sequence_id': 1, 'index': 0, 'task': 7}, [1, 2])]
    odd.append({'t': 0.3, 'topic': 'step_success', 'data': {'sequence_id': 1, 'index': 0, 'success': 'yes'}})
    captions = Captions(StateLog(log.segments, odd))
    assert captions.lines(0.9, 0.9) == (['waiting for the instruction', 't =   0.9 s'], [WHITE, WHITE])
    recorder = StateRecorder()
    recorder.max_notes = 3
    kept = [recorder.note(k * 0.01, 'active_step', {}) for k in range(5)]
    assert kept == [True, True, True, False, False] and recorder.dropped_notes == 2


def test_a_later_log_starts_with_the_last_result_of_the_one_before(recorded):
    """Per-step scenes: one twin process, and log, per step; the next step's log knows only its own."""
    _, path, _ = recorded
    first = load_state_log(path)
    step = {'sequence_id': 1, 'index': 1, 'task': 'push-v3', 'instruction': 'push the puck'}
    second = StateLog(first.segments, [{'t': 0.0, 'topic': 'active_step', 'data': step}])
    job = {'steps': [{'success': True}, {'success': False}]}
    captions = captions_of([first, second], job)
    lines, colours = captions[1].lines(0.5, 3.5)
    assert lines == ['step 2/2: push the puck  [push-v3]', 't =   3.5 s    step 1 succeeded']
    assert colours[1] == GREEN


def test_the_log_renders_to_an_mp4_of_the_expected_length(recorded, can_render, tmp_path):
    _, path, rows = recorded
    out = tmp_path / 'run.mp4'
    result = render_state_logs([path], out, size=SIZE, trim=False, progress=False)
    assert result['frames'] == rows and result['fps'] == 25.0
    assert result['duration_s'] == pytest.approx(rows / 25.0)
    frames = read_frames(out)
    assert len(frames) == rows
    assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    band = slice(SIZE[1] - 30, SIZE[1])  # the caption band along the bottom edge
    scene = slice(0, SIZE[1] - 40)
    waiting, running = frames[10], frames[30]  # 0.4 s: waiting; 1.2 s: step 1 runs
    # The caption changed where it is drawn; the arm moved in the scene above it.
    assert np.abs(waiting[band].astype(int) - running[band].astype(int)).mean() > 2
    assert np.abs(frames[0][scene].astype(int) - frames[-1][scene].astype(int)).mean() > 1
    assert [p.name for p in tmp_path.iterdir()] == ['run.mp4']


def test_the_command_renders_a_gif_in_its_own_process(recorded, can_render, tmp_path):
    _, path, _ = recorded
    out = tmp_path / 'run.gif'
    proc = subprocess.run([sys.executable, '-m', 'legion_kuka.video', str(path), '-o', str(out), '--size',
                           '160x90', '--fps', '5', '--json', '--no-progress'], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # 1.0 - 1 s lead to the end at 2.96 s, at 5 fps
    assert result['frames'] == 15 and result['video'] == str(out) and out.stat().st_size == result['bytes']
    bad = subprocess.run([sys.executable, '-m', 'legion_kuka.video', str(path), '-o',
                          str(tmp_path / 'x.avi')], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and '.mp4 or .gif' in bad.stderr


def test_a_workcell_a_job_carried_an_object_into_is_drawn_with_the_object_where_the_job_left_it(tmp_path):
    """window-open then window-close: the second workcell's window stands where window-open's did
    (Meta-World's placement carried over), and the scene built again from the saved log agrees, which
    the recorded joints alone could not say."""
    import mujoco

    from legion_kuka.workcell import WorkcellTwin

    def window(twin):
        mujoco.mj_forward(twin.model, twin.data)
        return twin.data.xpos[twin.model.body('station0/window').id].copy()

    live = WorkcellTwin(job=['window-open-v3', 'window-close-v3'], seed=1)
    assert live.enter('window-close-v3') == 'scene'
    own = WorkcellTwin(['window-close-v3'], seed=1)  # window-close alone puts its window elsewhere
    assert not np.allclose(window(own), window(live), atol=1e-3)

    recorder = StateRecorder(every=1)
    recorder.begin(Scene.of(live), live.model.nq)
    recorder.record(0.0, live.scene_state())
    path = save_state_log(tmp_path / 'job.npz', recorder.snapshot())
    segment = load_state_log(path).segments[0]
    assert [name for name, _ in segment.scene.placements] == ['sawyer_window_horizontal']
    drawn = segment.scene.build()
    drawn.show_state(segment.qpos[0])
    assert np.allclose(window(drawn), window(live), atol=1e-9)
