"""The MuJoCo twin of the real arm: joint servo tracking, limits, pause/step/time, resets, ground truth."""
import math

import numpy as np
import pytest

from legion_kuka.description import HOME, IIWA7, joint_names
from legion_kuka.frames import Frame, default_task_frame, quat_to_matrix
from legion_kuka.kinematics import IiwaKinematics
from legion_kuka.metaworld_kuka import make_kuka_env
from legion_kuka.real2sim import Real2Sim
from legion_kuka.twin import Twin

KIN = IiwaKinematics(tool='tcp')


@pytest.fixture(scope='module')
def twin():
    return Twin('reach-v3', seed=0)


@pytest.fixture
def fresh(twin):
    twin.resume()
    twin.reset(task='reach-v3', seed=0)
    return twin


def test_joint_state_has_the_driver_profile_names(fresh):
    state = fresh.joint_state()
    assert state.names == joint_names('lbr')
    assert state.position.shape == state.velocity.shape == state.effort.shape == (7,)
    assert state.stamp_s == 0.0
    assert Twin('reach-v3', profile='iiwa_ros2').joint_state().names == [f'joint_a{i}' for i in range(1, 8)]


def test_does_not_move_without_commands(fresh):
    start = fresh.joint_state().position
    objects = fresh.object_poses()
    fresh.step(100)  # one second of holding the reset posture
    state = fresh.joint_state()
    assert np.abs(state.position - start).max() < 1e-4
    assert np.abs(state.velocity).max() < 1e-3
    # Objects only settle onto the table (Meta-World places them a fraction of a mm high).
    assert np.allclose(fresh.object_poses()['object_1'][0], objects['object_1'][0], atol=1e-3)


def test_mocap_does_not_move_the_arm(fresh):
    # Moving Meta-World's mocap target (as its step() would) must leave the arm where its joints hold it.
    start = fresh.joint_state().position
    fresh.data.mocap_pos[0] += [0.1, 0.0, 0.0]
    fresh.step(50)
    assert np.abs(fresh.joint_state().position - start).max() < 1e-4


def test_tracks_joint_targets_within_a_few_cycles(fresh):
    q0 = fresh.joint_state().position
    # A step of one 100 Hz cycle at 0.2 rad/s settles within 3 cycles without overshoot; a large step
    # of every joint at once (slewed at the velocity limits, torques saturating, so the joints push
    # each other around for a moment) still converges.
    for size, cycles, tolerance, worst in ((0.002, 3, 3e-4, 1.05), (0.05, 40, 1e-3, 2.0)):
        target = fresh.joint_state().position + size
        fresh.set_joint_targets(target)
        errors = []
        for _ in range(cycles):
            fresh.step(1)
            errors.append(np.abs(fresh.joint_state().position - target).max())
        assert errors[-1] < tolerance, (size, errors)
        assert max(errors) < size * worst
    # A ramp like sim2real streams (0.1 rad/s per joint) is followed with a small lag.
    q = fresh.joint_state().position
    worst = 0.0
    for k in range(1, 51):
        fresh.set_joint_targets(q + 0.001 * k)
        fresh.step(1)
        worst = max(worst, np.abs(fresh.joint_state().position - (q + 0.001 * k)).max())
    assert worst < 3e-3
    assert not np.allclose(q0, fresh.joint_state().position)


def test_never_leaves_the_joint_limits(fresh):
    lower, upper = fresh.joint_limits
    assert np.allclose(lower, IIWA7.lower, atol=1e-5) and np.allclose(upper, IIWA7.upper, atol=1e-5)
    held = fresh.set_joint_targets([4.0, -4.0, 4.0, -4.0, 4.0, -4.0, 4.0])
    assert np.all(held <= upper) and np.all(held >= lower)
    worst = 0.0
    for _ in range(150):
        fresh.step(1)
        q = fresh.joint_state().position
        worst = max(worst, float(np.max(np.maximum(q - upper, lower - q))))
    assert worst < math.radians(0.5)


def test_pause_single_step_and_time(fresh):
    assert fresh.control_period_s == pytest.approx(0.01)
    fresh.pause()
    assert fresh.tick() is False
    assert fresh.time_s == 0.0
    fresh.step(3)
    assert fresh.time_s == pytest.approx(0.03)
    fresh.resume()
    assert fresh.tick() is True
    assert fresh.time_s == pytest.approx(0.04)
    assert fresh.run(0.1) == 10
    assert fresh.time_s == pytest.approx(0.14)
    fresh.reset()
    assert fresh.time_s == 0.0
    with pytest.raises(ValueError, match='whole number'):
        fresh.step(1.5)


def test_reset_reproduces_the_tasks_initial_placement(twin):
    for seed in (1, 2):
        twin.reset(task='reach-v3', seed=seed)
        first = twin.object_poses()['object_1'][0], twin.goal_position()
        twin.set_joint_targets(twin.joint_state().position + 0.1)
        twin.step(30)
        twin.reset(seed=seed)
        again = twin.object_poses()['object_1'][0], twin.goal_position()
        assert np.allclose(first[0], again[0]) and np.allclose(first[1], again[1])
        # The same placement as the KUKA Meta-World env with that seed.
        env = make_kuka_env('reach-v3', seed)
        obs, _ = env.reset()
        frame = twin.station_frame()
        assert np.allclose(frame.apply(obs[4:7]), first[0], atol=1e-6)
        assert np.allclose(frame.apply(obs[36:39]), first[1], atol=1e-6)
    twin.reset(seed=1)
    one = twin.goal_position()
    twin.reset(seed=2)
    assert not np.allclose(one, twin.goal_position())


def test_home_keyframe(twin):
    twin.reset(task='reach-v3', seed=0, keyframe='home')
    assert np.allclose(twin.joint_state().position, HOME)
    twin.step(20)
    assert np.allclose(twin.joint_state().position, HOME, atol=1e-4)
    with pytest.raises(ValueError, match='unknown keyframe'):
        twin.reset(keyframe='zero')
    posture = np.asarray(HOME) + 0.1
    twin.reset(posture=posture)
    assert np.allclose(twin.joint_state().position, posture)
    twin.step(20)
    assert np.allclose(twin.joint_state().position, posture, atol=1e-4)
    with pytest.raises(ValueError, match='not both'):
        twin.reset(keyframe='home', posture=posture)


def test_station_frame_is_the_metaworld_placement(fresh):
    frame = fresh.station_frame('reach-v3')
    assert np.allclose(frame.matrix, default_task_frame().matrix, atol=1e-6)
    with pytest.raises(ValueError, match='holds'):
        fresh.station_frame('push-v3')


@pytest.mark.parametrize('task', ['reach-v3', 'peg-unplug-side-v3'])
def test_real2sim_of_the_twin_writes_the_metaworld_observation(task):
    # Exactly Meta-World's numbers, quaternions included: reach writes scipy's (x, y, z, w), peg-unplug-side
    # MuJoCo's (w, x, y, z); a policy does not know that q and -q are one orientation (a flipped sign
    # made the demo's reach fail on the twin).
    twin = Twin(task, seed=0)
    real2sim = Real2Sim(twin.hand_kinematics(), layout='full39', task_frame=twin.station_frame(), task=task)
    rng = np.random.default_rng(0)
    for _ in range(4):
        twin.set_joint_targets(twin.joint_state().position + rng.uniform(-0.05, 0.05, 7))
        twin.set_gripper(rng.uniform(-1, 1))
        twin.step(20)
        expected = twin.metaworld_observation()
        state = twin.joint_state()
        obs = real2sim.observation(state.position, twin.gripper_opening(), twin.object_poses(),
                                   twin.goal_position())
        assert np.abs(obs[0:3] - expected[0:3]).max() < 1e-3  # hand: FK tcp vs the scene's hand
        assert obs[3] == pytest.approx(expected[3])
        assert np.allclose(obs[4:18], expected[4:18], atol=1e-9)
        assert np.allclose(obs[36:39], expected[36:39], atol=1e-9)


def test_object_orientation_is_the_objects_rotation_in_the_base_frame(fresh):
    _, quat = fresh.object_poses()['object_1']  # (w, x, y, z) whatever Meta-World's convention
    geom = fresh.data.geom('objGeom').xmat.reshape(3, 3)
    to_base = Frame.of(fresh.station_frame())
    assert np.allclose(quat_to_matrix(quat), to_base.rotation @ geom, atol=1e-9)


def test_task_success_is_metaworlds_criterion(fresh):
    assert not fresh.task_success('reach-v3')
    goal = fresh.goal_position()
    hand = fresh.hand_kinematics()
    q = fresh.joint_state().position
    ik = hand.ik(goal, q, target_rot=hand.fk(q)[1])
    assert ik.position_error < 0.01  # this goal lies at the edge of the iiwa's reach: close is enough
    for fraction in np.linspace(0.0, 1.0, 201)[1:]:  # stream a 2 s joint-space ramp, as sim2real does
        fresh.set_joint_targets(q + fraction * (ik.q - q))
        fresh.step(1)
    fresh.step(20)
    assert np.linalg.norm(hand.fk(fresh.joint_state().position)[0] - goal) < 0.01
    assert fresh.task_success('reach-v3')


def test_object_poses_are_in_the_base_frame(fresh):
    pos, quat = fresh.object_poses()['object_1']
    world = fresh.metaworld_observation()[4:7]
    assert np.allclose(Frame.of(fresh.station_frame()).apply(world), pos)
    assert quat.shape == (4,)


def test_bad_commands_give_clear_errors(fresh):
    with pytest.raises(ValueError, match='joint targets contains NaN'):
        fresh.set_joint_targets([0, 0, 0, math.nan, 0, 0, 0])
    with pytest.raises(ValueError, match=r'joint targets must have shape \(7,\)'):
        fresh.set_joint_targets([0.0] * 6)
    with pytest.raises(ValueError, match='gripper command'):
        fresh.set_gripper(math.inf)
    with pytest.raises(ValueError, match='control_rate_hz'):
        Twin('reach-v3', control_rate_hz=0)


def test_gripper_opens_and_closes(fresh):
    fresh.set_gripper(-1.0)
    fresh.step(30)
    opened = fresh.gripper_opening()
    fresh.set_gripper(1.0)
    fresh.step(80)  # 80 mm at the gripper's top speed, 0.15 m/s (legion_kuka.gripper)
    closed = fresh.gripper_opening()
    assert opened > 0.9 and closed < 0.5 * opened


def test_reset_switches_task(twin):
    twin.reset(task='drawer-close-v3', seed=0)
    try:
        assert twin.task == 'drawer-close-v3'
        assert set(twin.object_poses()) == {'object_1'}
        frame = twin.station_frame('drawer-close-v3')
        assert np.allclose(frame.matrix, default_task_frame().matrix, atol=1e-6)
        assert not twin.task_success()  # Meta-World starts the drawer pulled out
    finally:
        twin.reset(task='reach-v3', seed=0)


@pytest.mark.parametrize('seed', [0, 1])
def test_an_object_pressed_by_the_arm_moves_with_the_hand_not_faster(seed):
    # twin_demo3's drawer policy presses the gripper pad onto the open drawer's wall. Without MuJoCo's
    # noslip solver the pad held the drawer still and then shot it closed (15 cm in one policy step);
    # the drawer must move with the hand, at most 1 cm a step (plus contact give).
    from legion_core.policy import load_policy, shipped_policies
    from legion_kuka.chain import ChainRunner

    policy = load_policy(shipped_policies()['twin_demo3'])
    drawer = []

    def act(obs):
        drawer.append(obs[4:7].copy())
        return policy.act(np.asarray(obs, np.float32)[None], 'drawer-close-v3')[0]

    result = ChainRunner(act, 'drawer-close-v3', seed=seed, layout=policy.layout).episode()
    assert np.abs(np.diff(drawer, axis=0)).max() < 0.02
    assert result.success  # closed by pushing, in about 50 steps
