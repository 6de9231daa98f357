"""Forward kinematics against MuJoCo's own, and IK over the Meta-World hand workspace."""
import math

import mujoco
import numpy as np
import pytest

from legion_kuka import description as desc
from legion_kuka.kinematics import TOOL_DOWN, IiwaKinematics
from legion_kuka.safety import SafetyLimits

LOW, HIGH = np.array(desc.WORKSPACE_LOW), np.array(desc.WORKSPACE_HIGH)


@pytest.fixture(scope='module')
def kin():
    return IiwaKinematics()


@pytest.fixture(scope='module')
def mj():
    model = desc.load_mujoco_model(actuators='none')
    return model, mujoco.MjData(model)


def _random_postures(kin, n, seed):
    return np.random.default_rng(seed).uniform(kin.lower, kin.upper, size=(n, 7))


@pytest.mark.parametrize('tool, site', [('tcp', desc.TCP_SITE), ('flange', desc.FLANGE_SITE)])
def test_fk_equals_mujoco_forward_kinematics(kin, mj, tool, site):
    model, data = mj
    kin = IiwaKinematics(tool=tool)
    q = _random_postures(kin, 200, seed=0)
    pos, rot = kin.fk(q)
    for qi, p, r in zip(q, pos, rot, strict=True):
        data.qpos[:7] = qi
        mujoco.mj_kinematics(model, data)
        assert np.allclose(p, data.site(site).xpos, atol=1e-6)
        assert np.allclose(r, data.site(site).xmat.reshape(3, 3), atol=1e-6)


def test_jacobian_equals_mujoco_site_jacobian(kin, mj):
    model, data = mj
    q = _random_postures(kin, 20, seed=1)
    jac = kin.jacobian(q)
    jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    for qi, j in zip(q, jac, strict=True):
        data.qpos[:7] = qi
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        mujoco.mj_jacSite(model, data, jp, jr, model.site(desc.TCP_SITE).id)
        assert np.allclose(j, np.vstack([jp, jr])[:, :7], atol=1e-9)


def test_fk_keeps_leading_dimensions(kin):
    q = _random_postures(kin, 6, seed=2).reshape(2, 3, 7)
    pos, rot = kin.fk(q)
    assert pos.shape == (2, 3, 3) and rot.shape == (2, 3, 3, 3)
    single_pos, single_rot = kin.fk(q[1, 2])
    assert single_pos.shape == (3,) and np.allclose(single_pos, pos[1, 2])
    assert np.allclose(single_rot, rot[1, 2])
    assert kin.jacobian(q).shape == (2, 3, 6, 7)


def test_zero_posture_and_home(kin):
    pos, rot = kin.fk(np.zeros(7))
    assert np.allclose(pos, [0, 0, 1.266 + desc.GRIPPER.tcp_offset]) and np.allclose(rot, np.eye(3))
    pos, rot = kin.fk(desc.HOME)
    assert np.allclose(pos, [0.5, 0, 0.2], atol=1e-3)
    assert np.allclose(rot, TOOL_DOWN, atol=1e-3)


def test_workspace_is_the_metaworld_hand_box_in_the_base_frame():
    corners = desc.metaworld_to_base([desc.METAWORLD_HAND_LOW, desc.METAWORLD_HAND_HIGH])
    assert np.all(corners.min(0) >= LOW) and np.all(corners.max(0) <= HIGH)
    back = desc.base_to_metaworld(corners)
    assert np.allclose(back, [desc.METAWORLD_HAND_LOW, desc.METAWORLD_HAND_HIGH])


def _check_solution(kin, result, targets, rotations=TOOL_DOWN):
    assert np.all(result.q >= kin.lower) and np.all(result.q <= kin.upper)
    pos, rot = kin.fk(result.q)
    assert np.all(np.linalg.norm(pos - targets, axis=-1) < 1e-3)
    assert np.all(np.linalg.norm(pos - targets, axis=-1) == pytest.approx(result.position_error, abs=1e-12))
    assert np.allclose(rot, rotations, atol=2e-3)


@pytest.mark.parametrize('margin_deg', [0.0, 5.0])
def test_ik_cold_starts_cover_the_metaworld_workspace(margin_deg):
    # 5 deg: the safety filter's default margin; the whole box is reachable without the filter
    # having to clip a solution
    kin = IiwaKinematics(position_margin=math.radians(margin_deg))
    # a grid over the whole box, corners and faces included, plus random points
    axes = [np.linspace(lo, hi, 7) for lo, hi in zip(LOW, HIGH, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, 3)
    targets = np.concatenate([grid, np.random.default_rng(3).uniform(LOW, HIGH, size=(500, 3))])
    result = kin.ik(targets, desc.HOME)
    assert result.success.all(), targets[~result.success]
    assert np.all(result.position_error < 1e-4)
    assert result.iterations.max() <= 20
    _check_solution(kin, result, targets)
    if margin_deg:
        assert SafetyLimits.from_description(position_margin=kin.position_margin).within_positions(result.q)


def test_ik_warm_started_along_a_path_converges_in_few_iterations(kin):
    rng = np.random.default_rng(4)
    q = np.array(desc.HOME)
    target = np.array([0.5, 0.0, 0.2])
    for _ in range(300):
        step = rng.normal(size=3)
        target = np.clip(target + 0.01 * step / np.linalg.norm(step), LOW, HIGH)  # Meta-World's 1 cm step
        result = kin.ik(target, q)
        assert result.success and result.iterations <= 3
        _check_solution(kin, result, target)
        q = result.q


@pytest.mark.parametrize('rotation', ['default', 'explicit'])
def test_single_and_batched_solves_agree(kin, rotation):
    rng = np.random.default_rng(5)
    targets = rng.uniform(LOW, HIGH, size=(20, 3))
    starts = _random_postures(kin, 20, seed=6)
    rot = None if rotation == 'default' else kin.fk(_random_postures(kin, 1, seed=7)[0])[1]
    batch = kin.ik(targets, starts, target_rot=rot)
    for i in range(20):
        one = kin.ik(targets[i], starts[i], target_rot=rot)
        assert bool(one.success) == bool(batch.success[i])
        assert int(one.iterations) == int(batch.iterations[i])
        assert np.allclose(one.q, batch.q[i], atol=1e-9)


def test_ik_reaches_arbitrary_reachable_poses(kin):
    q_true = _random_postures(kin, 100000, seed=7)
    pos, rot = kin.fk(q_true)
    inside = np.all((pos >= LOW) & (pos <= HIGH), axis=1)
    pos, rot = pos[inside][:500], rot[inside][:500]
    assert len(pos) == 500
    one_start = kin.ik(pos, desc.HOME, target_rot=rot, max_iters=200, restarts=0)
    # a local solver from one start: some orientations need A7 (or A1, A3, A5) on the far side of a
    # joint limit ...
    assert one_start.success.mean() >= 0.8
    # ... which the restarts from turned wrist or arm postures mostly find (measured: 98.5-99.6 %)
    result = kin.ik(pos, desc.HOME, target_rot=rot, max_iters=200, restarts=len(kin.restart_postures))
    assert result.success.mean() >= 0.98 and result.success.sum() >= one_start.success.sum()
    assert np.all(result.iterations >= one_start.iterations)
    ok = result.success
    _check_solution(kin, type(result)(result.q[ok], ok[ok], result.position_error[ok],
                                      result.orientation_error[ok], result.iterations[ok]), pos[ok], rot[ok])
    assert np.all(result.orientation_error[ok] < 1e-3)


def test_ik_from_far_starting_postures_retries_from_rest(kin):
    rng = np.random.default_rng(8)
    targets = rng.uniform(LOW, HIGH, size=(200, 3))
    starts = _random_postures(kin, 200, seed=9)
    without = kin.ik(targets, starts, max_iters=200, restarts=0)
    assert without.success.mean() < 0.95, 'random starts do get stuck at joint limits'
    result = kin.ik(targets, starts, max_iters=200)
    assert result.success.all()
    _check_solution(kin, result, targets)
    assert np.array_equal(result.q[without.success], without.q[without.success])


def test_unreachable_targets_fail_inside_the_limits(kin):
    targets = np.array([[2.0, 0.0, 0.5], [0.0, 0.0, -1.5], [0.0, 0.0, 0.0]])
    result = kin.ik(targets, desc.HOME, max_iters=50)
    assert not result.success.any()
    assert np.all(np.isfinite(result.q))
    assert np.all(result.q >= kin.lower) and np.all(result.q <= kin.upper)
    one = kin.ik(targets[0], desc.HOME, max_iters=50)
    assert not one.success and one.position_error > 0.5


def test_q_init_outside_the_limits_is_clipped_first(kin):
    start = np.array(desc.HOME)
    start[0] = 4.0
    result = kin.ik(np.array([0.5, 0.1, 0.2]), start)
    assert result.success and np.all(np.abs(result.q) <= kin.upper)


@pytest.mark.parametrize('kwargs, message', [
    ({'target_pos': [0.5, 0.0], 'q_init': desc.HOME}, 'target_pos must have shape'),
    ({'target_pos': [0.5, 0.0, 0.2], 'q_init': [0.0] * 6}, 'q_init must have shape'),
    ({'target_pos': [0.5, math.nan, 0.2], 'q_init': desc.HOME}, 'NaN or inf'),
    ({'target_pos': [[0.5, 0.0, math.inf]], 'q_init': desc.HOME}, 'NaN or inf'),
    ({'target_pos': [0.5, 0.0, 0.2], 'q_init': desc.HOME, 'target_rot': np.eye(2)}, 'target_rot must'),
    ({'target_pos': [0.5, 0.0, 0.2], 'q_init': desc.HOME, 'max_iters': -1}, 'max_iters'),
    ({'target_pos': [0.5, 0.0, 0.2], 'q_init': desc.HOME, 'restarts': -1}, 'restarts'),
    ({'target_pos': [0.5, 0.0, 0.2], 'q_init': desc.HOME, 'target_rot': np.full((3, 3), math.nan)},
     'NaN or inf'),
])
def test_bad_input_is_rejected_with_a_clear_message(kin, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kin.ik(**kwargs)


def test_bad_constructor_and_fk_input():
    with pytest.raises(ValueError, match="'tcp' or 'flange'"):
        IiwaKinematics(tool='wrist')
    with pytest.raises(ValueError, match=r'shape \(\.\.\., 7\)'):
        IiwaKinematics().fk(np.zeros(6))
    with pytest.raises(ValueError, match='position_margin'):
        IiwaKinematics(position_margin=-0.1)
