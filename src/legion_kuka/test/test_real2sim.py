"""Real2Sim: the 12-d and 39-d observations, input validation (pure, no simulator)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legion_kuka.description import HOME, METAWORLD_BASE_POSE
from legion_kuka.frames import Frame, default_task_frame, quat_to_matrix
from legion_kuka.kinematics import IiwaKinematics
from legion_kuka.real2sim import METAWORLD_WXYZ_TASKS, Real2Sim, metaworld_quat, quat_from_metaworld

KIN = IiwaKinematics(tool='tcp')


def test_hand_is_the_tcp_in_the_task_frame():
    real2sim = Real2Sim(KIN)
    # HOME puts the tcp at Meta-World's initial hand position (0, 0.6, 0.2).
    assert np.allclose(real2sim.hand_position(HOME), [0.0, 0.6, 0.2], atol=1e-3)
    rng = np.random.default_rng(3)
    for _ in range(5):
        q = np.asarray(HOME) + rng.uniform(-0.3, 0.3, 7)
        pos, _ = KIN.fk(q)
        expected = default_task_frame().inverse().apply(pos)
        assert np.allclose(real2sim.hand_position(q), expected, atol=1e-12)


def test_legion12_layout():
    real2sim = Real2Sim(KIN, layout='legion12')
    base = Frame.of(METAWORLD_BASE_POSE).inverse()  # world -> base
    obj_world, goal_world = np.array([0.05, 0.7, 0.02]), np.array([-0.1, 0.8, 0.2])
    obs = real2sim.observation(HOME, 0.8, [base.apply(obj_world)], base.apply(goal_world))
    assert obs.shape == (12,)
    assert np.allclose(obs[0:3], [0.0, 0.6, 0.2], atol=1e-3)
    assert np.allclose(obs[3:6], obj_world)
    assert np.all(obs[6:9] == 0.0)  # one-object task: the second slot is zeros
    assert np.allclose(obs[9:12], goal_world)
    two = real2sim.observation(HOME, 0.8, {'object_1': base.apply(obj_world),
                                           'object_2': (base.apply(goal_world), [1, 0, 0, 0])}, None)
    assert np.allclose(two[6:9], goal_world) and np.all(two[9:12] == 0.0)


def test_full39_layout_stacks_the_previous_frame():
    real2sim = Real2Sim(KIN, layout='full39', task_frame=Frame.identity())
    yaw_quat = [math.cos(0.25), 0, 0, math.sin(0.25)]
    first = real2sim.observation(HOME, 0.5, [([0.6, 0.0, 0.0], yaw_quat)], [0.5, 0.1, 0.3])
    assert first.shape == (39,)
    assert first[3] == 0.5
    assert np.allclose(first[7:11], [0, 0, math.sin(0.25), math.cos(0.25)])  # scipy's (x, y, z, w)
    assert np.all(first[11:18] == 0.0)
    assert np.allclose(first[18:36], first[0:18])  # first frame: previous = current (Meta-World's reset)
    q = np.asarray(HOME) + 0.05
    second = real2sim.observation(q, 0.4, [([0.61, 0.0, 0.0], yaw_quat)], [0.5, 0.1, 0.3])
    assert np.allclose(second[18:36], first[0:18])
    assert np.allclose(second[36:39], [0.5, 0.1, 0.3])
    legion12 = Real2Sim(KIN, task_frame=Frame.identity()).legion12(q, [[0.61, 0, 0]], [0.5, 0.1, 0.3])
    assert np.allclose(Real2Sim.legion12_from_full39(second), legion12)
    real2sim.reset()
    third = real2sim.observation(q, 0.4, [([0.61, 0.0, 0.0], yaw_quat)], [0.5, 0.1, 0.3])
    assert np.allclose(third[18:36], third[0:18])
    # A zero quaternion is "no orientation" (Meta-World's articulated objects): zeros, no error.
    no_orientation = real2sim.observation(HOME, 0.5, [([0.6, 0.0, 0.0], np.zeros(4))], None)
    assert np.all(no_orientation[7:11] == 0.0)


def test_object_orientation_is_rotated_into_the_task_frame():
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    for task, written in (('reach-v3', [0, 0, s, c]), ('peg-unplug-side-v3', [c, 0, 0, s])):
        real2sim = Real2Sim(KIN, layout='full39', task=task)  # base yawed by +90° in the task frame
        obs = real2sim.observation(HOME, 1.0, [([0.6, 0.0, 0.0], [1, 0, 0, 0])], None)
        assert np.allclose(obs[7:11], written, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda v: np.linalg.norm(v) > 0.1),
       st.sampled_from(['reach-v3', 'pick-place-v3', 'peg-unplug-side-v3', 'button-press-topdown-v3']))
def test_quaternions_are_written_as_metaworld_writes_them(values, task):
    from scipy.spatial.transform import Rotation

    quat = np.asarray(values) / np.linalg.norm(values)
    written = metaworld_quat(task, quat)
    # q and -q give the same four numbers: the sign Meta-World's own code would produce.
    assert np.array_equal(written, metaworld_quat(task, -quat))
    if task in METAWORLD_WXYZ_TASKS:  # MuJoCo's body quaternion
        assert written[0] >= 0 and min(np.abs(written - quat).max(), np.abs(written + quat).max()) < 1e-12
    else:  # scipy's Rotation.from_matrix(geom xmat).as_quat()
        assert np.allclose(written, Rotation.from_matrix(quat_to_matrix(quat)).as_quat(), atol=1e-12)
    back = quat_from_metaworld(task, written)
    assert min(np.abs(back - quat).max(), np.abs(back + quat).max()) < 1e-9


@pytest.mark.parametrize(('args', 'message'), [
    (([0.0] * 6, 1.0, None, None), r'joint_positions must have shape \(7,\)'),
    (([0.0] * 6 + [math.nan], 1.0, None, None), 'joint_positions contains NaN'),
    ((HOME, math.nan, None, None), 'gripper_opening contains NaN'),
    ((HOME, 1.5, None, None), r'gripper_opening must be in \[0, 1\]'),
    ((HOME, 1.0, [[0, 0, 0]] * 3, None), 'at most 2 objects'),
    ((HOME, 1.0, [[0, 0, math.inf]], None), 'object 1 position contains NaN or inf'),
    ((HOME, 1.0, [[0, 0]], None), r'object 1 must be a position\[3\]'),
    ((HOME, 1.0, {'cube': [0, 0, 0]}, None), 'keys must be among'),
    ((HOME, 1.0, None, [0, 0]), r'goal must have shape \(3,\)'),
])
def test_bad_input_gives_a_clear_error(args, message):
    for layout in ('legion12', 'full39'):
        with pytest.raises(ValueError, match=message):
            Real2Sim(KIN, layout=layout).observation(*args)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match='unknown observation layout'):
        Real2Sim(KIN, layout='legion13')
    with pytest.raises(TypeError, match='fk'):
        Real2Sim(object())


def test_gripper_estimate_follows_the_kuka_fingers():
    """Without an opening sensor the estimate follows the commands sim2real sends (Meta-World's finger
    after each step, :class:`legion_kuka.gripper.MetaworldFinger`) at a 10 Hz policy; checked against
    the KUKA Meta-World scene's own finger opening after each env step: full, small and opening
    commands, and a reversal mid-stroke."""
    from legion_kuka.gripper import MetaworldFinger
    from legion_kuka.metaworld_kuka import make_kuka_env
    from legion_kuka.real2sim import GRIPPER_CLOSED_OPENING, GripperEstimate

    env = make_kuka_env('reach-v3', 0)
    obs, _ = env.reset(seed=0)
    estimate, finger, now, errors = GripperEstimate(float(obs[3])), MetaworldFinger(), 0.0, []
    for action, steps in ((1.0, 30), (-1.0, 30), (0.125, 80), (-0.5, 40), (0.5, 8), (-1.0, 8)):
        for _ in range(steps):
            obs, *_ = env.step(np.array([0.0, 0.0, 0.0, action]))
            estimate.command(finger.step(action), now)
            now += 0.1  # one policy step
            errors.append(abs(estimate.opening(now) - float(obs[3])))
    env.close()
    assert max(errors) < 0.03 and float(np.mean(errors)) < 0.01  # measured: 0.014 and 0.0027
    assert estimate.opening(now) == 1.0 and GripperEstimate(0.0).opening(0.0) == GRIPPER_CLOSED_OPENING
    assert estimate.opening(now - 1.0) == 1.0  # an older time does not run the model back
    with pytest.raises(ValueError, match='finite'):
        estimate.command(math.nan, now)


def test_policy_step_frames_stack_the_frame_of_the_previous_policy_step():
    from legion_kuka.real2sim import PolicyStepFrames

    frames = PolicyStepFrames()
    first, second = np.arange(39.0), np.arange(39.0) + 100.0
    out = frames.observe(first)  # a step starts: the frame stacks itself, as Meta-World's reset
    assert np.array_equal(out[18:36], first[:18]) and np.array_equal(out[36:], first[36:])
    # real2sim's own previous frame (10 ms old) is replaced by the frame the policy acted on last.
    out = frames.observe(second)
    assert np.array_equal(out[:18], second[:18]) and np.array_equal(out[18:36], first[:18])
    assert np.array_equal(out[36:], second[36:])
    frames.reset()
    assert np.array_equal(frames.observe(first)[18:36], first[:18])
    with pytest.raises(ValueError, match='39-d'):
        frames.observe(np.zeros(12))


@pytest.mark.parametrize('quat', [(0.0, 0.0, 0.0, 1.0), (0.0, -0.6, 0.8, 0.0), (-0.0, 0.0, -1.0, 0.0)])
def test_a_half_turn_is_written_one_way_whatever_its_sign(quat):
    quat, task = np.asarray(quat), 'peg-unplug-side-v3'  # a task whose observation writes w, x, y, z
    assert np.array_equal(metaworld_quat(task, quat), metaworld_quat(task, -quat))
