"""The workcell: several task stations around one arm, each seen exactly as its task's own scene."""
import math

import mujoco
import numpy as np
import pytest

from legion_kuka.chain import expert_policy, posture_inside_limits
from legion_kuka.frames import Frame
from legion_kuka.kinematics import IiwaKinematics
from legion_kuka.safety import SafetyLimits
from legion_kuka.twin import Twin
from legion_kuka.workcell import (
    MAX_STATIONS,
    WorkcellTwin,
    run_sequence,
    station_yaws,
    transit,
    workcell_workspace,
)

STATIONS = ('drawer-close-v3', 'button-press-topdown-v3', 'window-close-v3')
TCP = IiwaKinematics(tool='tcp')


@pytest.fixture(scope='module')
def cell():
    return WorkcellTwin(STATIONS, seed=1)


@pytest.fixture
def fresh(cell):
    cell.reset(task=STATIONS[0], seed=1)
    return cell


def _turn(yaw: float) -> Frame:
    c, s = math.cos(yaw), math.sin(yaw)
    return Frame(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), np.zeros(3))


def test_stations_are_turned_about_a1_ahead_left_right():
    assert station_yaws(3) == [0.0, math.pi / 2, -math.pi / 2]
    with pytest.raises(ValueError, match='1 to 3 stations'):
        station_yaws(MAX_STATIONS + 1)
    with pytest.raises(ValueError, match='distinct'):
        WorkcellTwin(['reach-v3', 'reach-v3'])
    with pytest.raises(ValueError, match='no KUKA station'):
        WorkcellTwin(['reach-v3', 'assembly-v3'])


def test_each_station_starts_as_its_task_alone(fresh):
    # Every station's objects, goal and task frame are the single-task twin's, turned by the station's
    # yaw about A1; its Meta-World observation of objects and goal is identical.
    for task in STATIONS:
        fresh.select(task)
        alone = Twin(task, seed=1)
        turn = _turn(fresh.station_yaw(task))
        frame, single = fresh.station_frame(task), alone.station_frame(task)
        assert np.allclose(frame.matrix, turn.compose(single).matrix, atol=1e-9)
        ours, theirs = fresh.metaworld_observation(), alone.metaworld_observation()
        assert np.allclose(ours[4:18], theirs[4:18], atol=1e-9)
        assert np.allclose(ours[36:], theirs[36:], atol=1e-9)
        assert np.allclose(fresh.goal_position(), turn.apply(alone.goal_position()), atol=1e-9)
        for name, (pos, _) in alone.object_poses().items():
            assert np.allclose(fresh.object_poses()[name][0], turn.apply(pos), atol=1e-9)
        assert not fresh.task_success(task)


def test_the_arm_is_moved_by_its_joints_only(fresh):
    model = fresh.model
    assert model.nmocap == 0
    assert not any(model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD for i in range(model.neq))
    start = fresh.joint_state().position
    fresh.step(50)
    assert np.abs(fresh.joint_state().position - start).max() < 1e-4


def test_a_station_sees_what_happens_in_the_workcell(fresh):
    # Push the drawer shut in the workcell (its slide joint): drawer-close's own success criterion,
    # evaluated on its shadow, sees it; the other stations do not change.
    task = 'drawer-close-v3'
    fresh.select(task)
    before = fresh.metaworld_observation()[4:7].copy()
    joint = fresh.model.joint('station0/goal_slidey')
    fresh.data.qpos[joint.qposadr[0]] = 0.0  # closed
    fresh.step(1)
    assert not np.allclose(fresh.metaworld_observation()[4:7], before, atol=1e-3)
    assert fresh.task_success(task)
    assert not fresh.task_success('window-close-v3')
    assert fresh.task == task  # asking another station does not switch the active one


def test_transit_reaches_every_station_within_the_limits(fresh):
    limits = SafetyLimits.from_description(workspace=workcell_workspace(fresh))
    inside = posture_inside_limits(fresh, limits)
    if inside is not None:
        fresh.reset(posture=inside)
    for task in (*STATIONS[1:], STATIONS[0]):
        result = transit(fresh, task, limits)
        assert result.reached, (task, result)
        assert 'estop' not in result.safety_reasons
        assert fresh.task == task
        q = fresh.joint_state().position
        assert limits.within_positions(q, tol=1e-3)
        # Arrived at the station's start: its task's own hand start, seen from that station.
        goal = posture_inside_limits(fresh, limits, q=fresh.start_posture(task))
        expected = fresh.start_posture(task) if goal is None else goal
        assert np.allclose(q, expected, atol=math.radians(0.5))


def test_scripted_experts_do_a_three_step_job_in_one_workcell():
    # Meta-World's experts through real2sim -> sim2real -> safety filter, station after station, the
    # arm carried between them by transits: each step succeeds as it does on its task alone.
    steps = [(task, expert_policy(task)) for task in STATIONS]
    results = run_sequence(steps, seed=0, layout='full39')
    assert [r.task for r in results] == list(STATIONS)
    assert all(r.transit.reached for r in results), [r.transit for r in results]
    assert [r.success for r in results] == [True, True, True]


def test_consecutive_steps_get_neighbouring_stations():
    from legion_kuka.workcell import station_order

    assert station_order(['a', 'b', 'c']) == ['b', 'a', 'c']  # a left, b ahead, c right: quarter turns
    assert station_order(['a', 'b', 'a']) == ['a', 'b']
    with pytest.raises(ValueError, match='1 to 3 distinct tasks'):
        station_order(['a', 'b', 'c', 'd'])


def test_legion_kuka_workcell_reports_each_step(capsys):
    import argparse
    import json

    from legion_kuka.cli import _workcell

    assert _workcell(argparse.Namespace(tasks=['reach-v3', 'push-v3'], seeds=1, json=True)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['stations'] == ['reach-v3', 'push-v3']
    assert [(s['task'], s['station_yaw_deg']) for s in report['steps']] == [('reach-v3', 0), ('push-v3', 90)]
    assert all(s['success_rate'] == 1.0 and s['transit_reached'] for s in report['steps'])
    assert report['steps'][1]['transit_s_median'] > report['steps'][0]['transit_s_median']
    assert _workcell(argparse.Namespace(tasks=['reach-v3', 'no-such-task-v3'], seeds=1, json=True)) == 2


def test_a_side_station_moves_the_arm_as_the_station_ahead():
    # What a policy learnt at its task's scene holds at every station: the same actions move the hand
    # the same way (the elbow's redundancy is kept turned with the station, not pulled back ahead).
    actions = np.tile([0.3, 0.8, -0.6, 0.0], (12, 1))
    hands = {}
    for stations in (['drawer-close-v3'], ['reach-v3', 'drawer-close-v3']):
        seen, replay = [], iter(actions)

        def policy(obs, seen=seen, replay=replay):
            seen.append(np.array(obs[:3]))
            return next(replay, np.zeros(4))

        step = run_sequence([('drawer-close-v3', policy)], seed=0, layout='full39', stations=stations,
                            max_steps=len(actions))[0]
        hands[len(stations)] = (np.array(seen), step.episode)
    (ahead, at_ahead), (side, at_side) = hands[1], hands[2]
    assert np.linalg.norm(ahead[-1] - ahead[0]) > 0.03  # the hand did move
    assert np.allclose(side, ahead, atol=1e-4)
    assert at_side.safety_reasons == at_ahead.safety_reasons


def test_every_step_starts_with_the_gripper_open_as_trained():
    def grip(obs):  # a first step that ends with the fingers closed
        return np.array([0.0, 0.0, 0.0, 1.0])

    seen = []

    def look(obs):
        seen.append(float(obs[3]))
        return np.zeros(4)

    steps = run_sequence([('reach-v3', grip), ('drawer-close-v3', look)], seed=0, layout='full39',
                         max_steps=10)
    assert steps[0].episode.steps == 10
    assert seen[0] > 0.99  # Meta-World's opening: 1 = open
