"""The twin run as a driver (legion_kuka.twin_driver), without ROS: what sim_bridge decides."""
import math

import numpy as np
import pytest

from legion_kuka.description import IIWA7
from legion_kuka.state_log import load_state_log
from legion_kuka.twin import Twin
from legion_kuka.twin_driver import TwinDriver, build_twin, command_problem, start_limits

MARGIN = math.radians(5.0)


@pytest.fixture
def driver():
    return TwinDriver(Twin('reach-v3', seed=0), start_margin_rad=MARGIN, poses_every=5)


def test_a_bad_joint_command_is_rejected_with_its_reason_and_the_target_held(driver):
    target = driver.twin.joint_targets.copy()
    assert not driver.command([0.0] * 6)
    assert not driver.command([0.0] * 6 + [math.nan])
    assert not driver.gripper(math.inf)
    assert driver.rejected == 3
    assert driver.last_rejection == 'gripper command: non-finite value inf'
    assert np.array_equal(driver.twin.joint_targets, target)
    assert command_problem([0.0] * 6 + [math.nan]) == 'non-finite joint positions at indices [6]: [nan]'
    assert driver.command(target + 0.01)
    assert np.allclose(driver.twin.joint_targets, target + 0.01)
    assert driver.status()[1]['rejected_commands'] == 3


def test_simulated_time_advances_only_with_the_twin_and_step_only_while_paused(driver):
    polls = [driver.tick()[0] for _ in range(10)]
    assert polls == [False, False, False, False, True] * 2  # object poses every 5th cycle
    assert driver.sim_time_ns == 10 * driver.period_ns
    assert 'not paused' in driver.step()
    driver.twin.pause()
    driver.tick()
    assert driver.sim_time_ns == 10 * driver.period_ns and driver.status()[0] == 'paused'
    assert driver.step() is None
    assert driver.sim_time_ns == 11 * driver.period_ns
    driver.reset()
    assert driver.sim_time_ns == 11 * driver.period_ns  # /clock never jumps back


def test_a_reset_starts_the_arm_inside_the_limits_and_announces_that_posture(driver):
    outside = driver.twin.joint_state().position.copy()
    outside[3] = IIWA7.lower[3] + 0.01  # where an arm jogged to its elbow limit stands
    driver.twin.reset(posture=outside)
    driver.reset()  # the scene's own start is inside: nothing to jog
    assert start_limits(MARGIN).within_positions(driver.twin.joint_state().position)
    driver.twin.reset(posture=outside)
    assert driver.start_inside()
    scene = driver.scene()
    assert scene['task'] == 'reach-v3' and scene['seed'] == 0
    assert start_limits(MARGIN).within_positions(np.array(scene['posture']))
    assert np.allclose(scene['posture'], driver.twin.joint_state().position)
    unjogged = TwinDriver(driver.twin, start_margin_rad=0.0)  # margin 0: the scene's posture as is
    driver.twin.reset(posture=outside)
    assert not unjogged.start_inside()


def test_object_names_are_reported_once_and_again_after_a_reset(driver):
    first = driver.objects()
    assert first.names[-1] == 'goal' and len(first.poses) == len(first.names) and first.names_changed
    assert not driver.objects().names_changed
    assert driver.reset('home') == 'reset reach-v3 seed 0 to home'
    assert driver.objects().names_changed


def test_a_scene_that_does_not_load_keeps_the_current_one(driver):
    with pytest.raises(ValueError, match="cannot load 'no-such-task-v3' seed 0"):
        driver.load('no-such-task-v3', 0)
    assert driver.twin.task == 'reach-v3'
    assert driver.load('push-v3', 1) == 'scene'
    assert (driver.twin.task, driver.twin.seed) == ('push-v3', 1)


def test_workcell_stations_switch_without_moving_the_arm_and_a_seed_loads_a_scene():
    stations = ['drawer-close-v3', 'button-press-topdown-v3']
    with pytest.raises(ValueError, match='not one of the workcell'):
        build_twin('reach-v3', workcell=stations)
    driver = TwinDriver(build_twin('drawer-close-v3', seed=1, workcell=stations), start_margin_rad=MARGIN)
    posture = driver.twin.joint_state().position.copy()
    assert driver.load('button-press-topdown-v3', 1, workcell=True) == 'station'
    assert driver.twin.task == 'button-press-topdown-v3'
    assert np.array_equal(driver.twin.joint_state().position, posture)
    with pytest.raises(ValueError):
        driver.load('reach-v3', 1, workcell=True)
    assert driver.load('drawer-close-v3', 2, workcell=True) == 'scene'
    assert (driver.twin.task, driver.twin.seed) == ('drawer-close-v3', 2)


def test_the_state_log_keeps_a_segment_per_scene_at_its_rate_with_notes(tmp_path):
    path = tmp_path / 'states.npz'
    driver = TwinDriver(Twin('reach-v3', seed=0), state_log_every=4, state_log_path=str(path))
    for _ in range(8):
        driver.tick()
    driver.note('active_step', {'index': 0})
    assert driver.load('push-v3', 0) == 'scene'
    saved = load_state_log(path)  # the scene before is on disk as soon as another loads
    assert [(s.scene.task, len(s)) for s in saved.segments] == [('reach-v3', 3), ('push-v3', 1)]
    assert np.allclose(saved.segments[0].times, [0.0, 0.04, 0.08])  # every 4th cycle of 10 ms
    assert saved.notes == [{'t': pytest.approx(0.08), 'topic': 'active_step', 'data': {'index': 0}}]
    for _ in range(4):
        driver.tick()
    driver.save_state_log()
    assert [len(s) for s in load_state_log(path).segments] == [3, 2]
    TwinDriver(Twin('reach-v3', seed=0)).note('active_step', {})  # no log: nothing kept, nothing raised
