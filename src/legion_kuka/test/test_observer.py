"""real2sim's observation without ROS (legion_kuka.observer): what the policy relies on seeing, and not."""
from __future__ import annotations

import numpy as np
import pytest

from legion_kuka.description import HOME
from legion_kuka.frames import default_task_frame
from legion_kuka.kinematics import IiwaKinematics
from legion_kuka.observer import Observer, StaleObjectsError
from legion_kuka.real2sim import Real2Sim

HAND_OFFSET = 0.075  # the KUKA Meta-World scenes' hand point (legion_kuka.observer.hand_offset)
PUCK, GOAL = (0.0, 0.6, 0.02), (0.1, 0.8, 0.2)  # task frame


def observer(**options) -> Observer:
    real2sim = Real2Sim(IiwaKinematics(tool='tcp', tcp_offset=HAND_OFFSET), layout='full39')
    return Observer(real2sim, **options)


def base(point) -> tuple:
    """A task-frame point in the robot base frame, where the poses arrive."""
    return tuple(default_task_frame().apply_point(point))


def seen(o: Observer, now_s: float = 0.0) -> None:
    o.set_object_names(['object_1', 'goal'])
    assert o.set_objects([(base(PUCK), (1, 0, 0, 0)), (base(GOAL), (0, 0, 0, 0))], now_s)


def test_builds_metaworlds_observation_in_the_task_frame():
    o = observer()
    seen(o)
    obs39, obs12 = o.observe(HOME, 0.1)
    assert obs39.shape == (39,) and obs12.shape == (12,)
    hand = o.real2sim.hand_position(HOME)
    np.testing.assert_allclose(obs39[0:3], hand, atol=1e-9)
    assert obs39[3] == pytest.approx(1.0)  # Meta-World starts open; nothing measured or commanded yet
    np.testing.assert_allclose(obs39[4:7], PUCK, atol=1e-9)
    np.testing.assert_allclose(obs39[36:39], GOAL, atol=1e-9)  # the goal: its position only
    np.testing.assert_allclose(obs12, o.real2sim.legion12_from_full39(obs39))


def test_no_observation_before_the_objects_or_their_names():
    o = observer()
    assert o.observe(HOME, 0.0) is None
    assert not o.set_objects([(base(PUCK), (1, 0, 0, 0))], 0.0)  # no names to pair them with
    assert o.observe(HOME, 0.0) is None


def test_rejects_nan_joint_states_and_poses_keeping_the_last_good_ones():
    o = observer()
    seen(o)
    with pytest.raises(ValueError):
        o.observe([np.nan, *HOME[1:]], 0.1)
    with pytest.raises(ValueError, match='NaN'):
        o.set_objects([((np.nan, 0, 0), (1, 0, 0, 0)), (base(GOAL), (0, 0, 0, 0))], 0.2)
    with pytest.raises(ValueError, match='1 poses for 2 names'):
        o.set_objects([(base(PUCK), (1, 0, 0, 0))], 0.2)
    np.testing.assert_allclose(o.observe(HOME, 0.3)[0][4:7], PUCK, atol=1e-9)


def test_stale_object_poses_give_no_observation():
    o = observer(objects_timeout_s=0.5)
    seen(o, now_s=10.0)
    assert o.observe(HOME, 10.4) is not None
    with pytest.raises(StaleObjectsError) as stale:
        o.observe(HOME, 10.7)
    assert stale.value.age_s == pytest.approx(0.7)


def test_waits_for_the_twins_scene_of_the_active_task_when_asked():
    o = observer(require_scene_match=True)
    seen(o)
    o.set_scene_task('reach-v3')
    o.start_step('push-v3')
    assert o.observe(HOME, 0.0) is None  # the twin still shows reach
    o.set_scene_task('push-v3')
    assert o.observe(HOME, 0.0) is not None
    assert o.real2sim.task == 'push-v3'  # how the observation writes this task's quaternions


def test_measured_opening_wins_over_the_estimate_and_is_range_checked():
    o = observer()
    seen(o)
    o.commanded_gripper(1.0, 0.0)  # closing
    closing = o.observe(HOME, 0.2)[0][3]
    assert closing < 0.9
    o.measured_opening(1.03)  # noise above fully open: clipped
    assert o.observe(HOME, 0.3)[0][3] == 1.0
    for bad in (1.2, -0.5, float('nan')):
        with pytest.raises(ValueError, match='not in'):
            o.measured_opening(bad)
    assert o.gripper_opening == 1.0


def test_a_new_step_restarts_the_frame_history():
    o = observer()
    seen(o)
    o.observe(HOME, 0.0)
    moved = np.array(HOME, dtype=float)
    moved[1] += 0.1
    obs = o.observe(moved, 0.1)[0]
    assert not np.allclose(obs[18:21], obs[0:3])  # the previous frame: the hand before the move
    o.start_step('reach-v3')
    obs = o.observe(moved, 0.2)[0]
    np.testing.assert_allclose(obs[18:36], obs[0:18])  # stacked on itself, as at Meta-World's reset


def test_station_moves_the_task_frame_and_names_the_scene():
    o = observer()
    seen(o)
    before = o.observe(HOME, 0.0)[0]
    o.set_station({'task': 'push-v3',
                   'frame': {'position': [0.1, 0.0, 0.0], 'quaternion_wxyz': [1, 0, 0, 0]}})
    assert o.scene_task == 'push-v3'
    after = o.observe(HOME, 0.0)[0]
    assert not np.allclose(before[0:3], after[0:3])
    with pytest.raises(ValueError):  # a zero quaternion is no pose; the frame stays
        o.set_station({'frame': {'position': [0, 0, 0], 'quaternion_wxyz': [0, 0, 0, 0]}})
    np.testing.assert_allclose(o.observe(HOME, 0.0)[0][0:3], after[0:3])
