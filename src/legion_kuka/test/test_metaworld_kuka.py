"""Meta-World tasks on the KUKA iiwa: same interface and semantics as the Sawyer envs, a plausible arm."""
import metaworld
import mujoco
import numpy as np
import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from legion_kuka import metaworld_kuka as mk
from legion_kuka.chain import expert_policy

TASKS = list(mk.KUKA_TASKS)


@pytest.fixture(scope='module')
def variants():
    """The first goal variants of MT1(task, seed=0), built once per task."""
    cache = {}

    def get(task, n=1):
        if task not in cache:
            cache[task] = metaworld.MT1(task, seed=0).train_tasks
        return cache[task][:n]
    return get


def _env(task, variant):
    env = mk.kuka_env_class(task)()
    env.set_task(variant)
    return env


@pytest.mark.parametrize('task', TASKS)
def test_each_task_resets_and_steps_like_the_sawyer(task, variants):
    (variant,) = variants(task)
    kuka = _env(task, variant)
    sawyer = ALL_V3_ENVIRONMENTS[task]()
    sawyer.set_task(variant)
    assert isinstance(kuka, type(sawyer)), 'the KUKA env must be a subclass of the Sawyer task class'
    assert kuka.action_space.shape == (4,) and kuka.observation_space.shape == (39,)

    obs_k, _ = kuka.reset()
    obs_s, _ = sawyer.reset()
    assert obs_k.shape == (39,) and np.all(np.isfinite(obs_k))
    # Same placement: objects and goal (visible, MT1 construction) agree with the Sawyer's.
    np.testing.assert_allclose(obs_k[36:39], obs_s[36:39], atol=1e-3)  # push: z = settled puck height
    assert np.linalg.norm(obs_k[36:39]) > 0
    np.testing.assert_allclose(obs_k[4:7], obs_s[4:7], atol=0.01)
    assert obs_k[3] > 0.95, 'the gripper starts open, observed opening ~1 as on the Sawyer'

    rng = np.random.default_rng(0)
    for _ in range(20):
        obs, reward, terminated, truncated, info = kuka.step(rng.uniform(-1, 1, 4).astype(np.float32))
        assert obs.shape == (39,) and np.all(np.isfinite(obs))
        assert 0.0 <= float(reward) <= 10.0
        assert not terminated and not truncated
        assert 'success' in info and 'near_object' in info
    kuka.close()
    sawyer.close()


def test_model_keeps_metaworld_layout_and_names():
    model = mk.kuka_env_class('pick-place-v3')().model
    names = [model.joint(i).name for i in range(9)]
    assert names == [f'lbr_A{i}' for i in range(1, 8)] + ['r_close', 'l_close']
    assert model.jnt_qposadr[9] == 9, 'object joints must start at qpos[9]'
    assert model.nu == 2 and model.nmocap == 1
    for body in ('hand', 'rightclaw', 'leftclaw', 'rightpad', 'leftpad', 'mocap'):
        assert model.body(body).id >= 0
    for geom in ('rightpad_geom', 'leftpad_geom', 'objGeom'):
        assert model.geom(geom).id >= 0
    assert not any('right_l' in model.body(i).name for i in range(model.nbody)), 'no Sawyer left'
    weld = [i for i in range(model.neq) if model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD]
    assert len(weld) == 1
    assert {model.body(model.eq_obj1id[weld[0]]).name, model.body(model.eq_obj2id[weld[0]]).name} == \
        {'mocap', 'hand'}
    assert np.all(model.jnt_limited[:9])


def test_reset_puts_the_arm_at_the_hand_and_tool_down(variants):
    env = _env('reach-v3', variants('reach-v3')[0])
    obs, _ = env.reset()
    np.testing.assert_allclose(obs[:3], env.hand_init_pos, atol=0.005)
    # tcp (between the fingertips) 45 mm below the hand, tool pointing down, fingers along world y.
    np.testing.assert_allclose(env.tcp_center, obs[:3] - [0, 0, mk.HAND_ABOVE_FINGERTIPS], atol=0.003)
    tool_axis = env.data.site('flange').xmat.reshape(3, 3)[:, 2]
    assert tool_axis[2] < -0.999
    finger_axis = env.data.body('leftclaw').xpos - env.data.body('rightclaw').xpos
    assert abs(finger_axis[1]) / np.linalg.norm(finger_axis) > 0.999 and finger_axis[1] > 0
    assert np.max(np.abs(env.data.qvel[:7])) < 0.05, 'the arm has settled'


def _hand_track(env, action, steps):
    obs, _ = env.reset()
    track = [obs[:3].copy()]
    for _ in range(steps):
        obs, *_ = env.step(np.asarray(action, dtype=np.float32))
        track.append(obs[:3].copy())
    return np.array(track)


@pytest.mark.parametrize('axis,sign', [(0, 1), (0, -1), (1, 1), (2, 1)])
def test_hand_moves_like_the_sawyers(axis, sign, variants):
    variant = variants('reach-v3')[0]
    sawyer = ALL_V3_ENVIRONMENTS['reach-v3']()
    sawyer.set_task(variant)
    action = np.zeros(4)
    action[axis] = sign
    kuka_track = _hand_track(_env('reach-v3', variant), action, 15)
    sawyer_track = _hand_track(sawyer, action, 15)
    # Steady state: 1 cm per step along the commanded axis, nothing across it.
    per_step = np.diff(kuka_track[5:], axis=0)
    np.testing.assert_allclose(per_step[:, axis] * sign, 0.01, atol=0.0015)
    assert np.max(np.abs(np.delete(per_step, axis, axis=1))) < 0.003
    np.testing.assert_allclose(kuka_track[-1], sawyer_track[-1], atol=0.02)


def test_hand_stops_at_the_mocap_limit(variants):
    env = _env('drawer-close-v3', variants('drawer-close-v3')[0])
    track = _hand_track(env, [0, 0, -1, 0], 40)
    assert track[-1][2] == pytest.approx(env.mocap_low[2], abs=0.01)
    assert np.all(np.abs(np.diff(track[-5:, 2])) < 0.002)


def test_gripper_closes_and_opens(variants):
    env = _env('reach-v3', variants('reach-v3')[0])
    env.reset()
    for _ in range(15):
        obs, *_ = env.step(np.array([0, 0, 0, 1.0], dtype=np.float32))
    assert obs[3] < 0.3
    for _ in range(15):
        obs, *_ = env.step(np.array([0, 0, 0, -1.0], dtype=np.float32))
    assert obs[3] > 0.95


@pytest.mark.parametrize('task', ['reach-v3', 'push-v3', 'drawer-close-v3'])
def test_experts_solve_kuka_within_limits_and_off_the_table(task, variants):
    policy = expert_policy(task)
    env = mk.kuka_env_class(task)()
    model, data = env.model, env.data
    low, high = model.jnt_range[:7, 0], model.jnt_range[:7, 1]
    arm_bodies = {model.body(f'lbr_link_{i}').id for i in range(1, 8)} | {model.body('lbr_gripper').id}
    table = model.body('tablelink').id
    tolerance = np.radians(0.5)
    for variant in variants(task, 3):
        env.set_task(variant)
        obs, _ = env.reset()
        solved = False
        for _ in range(150):
            obs, _, _, _, info = env.step(policy(obs))
            q = data.qpos[:7]
            assert np.all(q >= low - tolerance) and np.all(q <= high + tolerance), np.degrees(q)
            for contact in data.contact[:data.ncon]:
                bodies = {model.geom_bodyid[contact.geom1], model.geom_bodyid[contact.geom2]}
                assert not (table in bodies and bodies & arm_bodies), 'the arm touched the table'
            if info['success']:
                solved = True
                break
        assert solved, f'the scripted expert failed {task} on the KUKA'


def test_episodes_are_deterministic(variants):
    variant = variants('push-v3')[0]
    policy = expert_policy('push-v3')
    tracks = []
    for _ in range(2):
        env = _env('push-v3', variant)
        obs, _ = env.reset()
        track = [obs]
        for _ in range(30):
            obs, *_ = env.step(policy(obs))
            track.append(obs)
        tracks.append(np.array(track))
    np.testing.assert_array_equal(tracks[0], tracks[1])


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match='no KUKA variant of task'):
        mk.kuka_env_class('drawer-open-v3')
    with pytest.raises(ValueError, match='reach-v3'):
        mk.make_kuka_env('reach', 0)


def test_factory_through_legion_core_entry_point():
    from legion_core import envs

    assert 'kuka' in envs.available_embodiments()
    env = envs.make_task_env('reach-v3', embodiment='kuka', layout='full39', seed=3)
    assert type(env.env).__name__ == 'KukaReachEnvV3'
    obs = env.reset()
    assert obs.shape == (39,)
    sawyer = envs.make_task_env('reach-v3', layout='full39', seed=3)
    np.testing.assert_allclose(obs[36:39], sawyer.reset()[36:39], atol=1e-9)  # same goal variant
    obs, _, _, _, info = env.step(np.array([0.0, 0.0, 1.0, 0.0]))
    assert obs.shape == (39,) and 'success' in info
    env.close()
    sawyer.close()


def test_pickle_round_trip(variants):
    """Meta-World envs pickle (model by name, state, task); the generated KUKA classes must too."""
    import pickle

    env = _env('reach-v3', variants('reach-v3')[0])
    env.reset()
    for _ in range(5):
        env.step(np.array([1.0, 0.0, 0.0, 0.0]))
    clone = pickle.loads(pickle.dumps(env))
    assert type(clone) is type(env) and clone.model.nq == env.model.nq
    np.testing.assert_allclose(clone.data.qpos, env.data.qpos)
    assert clone.model.camera('gripperPOV').id >= 0


@pytest.mark.parametrize('task', ['window-close-v3', 'button-press-topdown-v3', 'reach-v3'])
def test_the_arm_learns_only_postures_the_safety_filter_allows(task):
    # The scene's arm has the ranges sim2real plans within (the filter's limits less 0.5 deg), so every
    # reset posture and every posture a policy drives it to is one the real arm may take. These two
    # tasks ask for a start hand position that only the datasheet's elbow limit reaches: their reset
    # posture lies inside the filter's limits now, and the twin starts exactly there too.
    from legion_kuka.chain import ChainRunner
    from legion_kuka.safety import SafetyLimits, planning_position_limits

    env = mk.make_kuka_env(task, 1)
    model = env.unwrapped.model
    assert np.allclose(model.jnt_range[:7, 1], planning_position_limits())
    assert np.allclose(model.jnt_range[:7, 0], -np.asarray(planning_position_limits()))
    obs, _ = env.reset()
    assert SafetyLimits.from_description().within_positions(env.unwrapped.arm_qpos)
    runner = ChainRunner(lambda _: np.zeros(4), task, seed=1, layout='full39', max_steps=1)
    runner.twin.reset(task=task, seed=1)
    assert runner.twin.metaworld_observation()[:3] == pytest.approx(obs[:3], abs=2e-3)


def test_a_blocked_hand_is_not_pushed_by_a_runaway_mocap():
    # Reaching out past the arm's reach: Meta-World's mocap would run on to its box (y = 1.0, 25 cm and
    # more ahead, a force no arm has); here it stays within sim2real's lead limit of the hand.
    from legion_kuka.sim2real import MAX_LEAD_M

    env = mk.make_kuka_env('reach-v3', 0)
    mw = env.unwrapped
    env.reset()
    leads = []
    for _ in range(60):
        env.step(np.array([0.0, 1.0, 0.0, 0.0]))
        leads.append(float(np.linalg.norm(mw.data.mocap_pos[0] - mw.get_endeff_pos())))
    # (measured after the step: the hand has moved on from where the limit was applied)
    assert max(leads) <= 1.1 * MAX_LEAD_M
    assert leads[-1] > 0.85 * MAX_LEAD_M  # out of reach, the limit binds
