"""Meta-World task envs on the real simulator: layouts, vector stepping, auto-reset, goals, evaluation."""
import numpy as np
import pytest
from metaworld.policies import SawyerReachV3Policy

from legion_core import envs
from legion_core.envs import (
    LAYOUTS,
    TaskVectorEnv,
    available_embodiments,
    evaluate,
    goal_slice,
    make_task_env,
    project_observation,
)

SHORT = 6  # episode length for the auto-reset tests: a few steps are enough


@pytest.fixture(scope='module')
def reach3():
    env = TaskVectorEnv('reach', 3, episode_length=SHORT, seed=0)
    yield env
    env.close()


def test_legion12_projection_picks_hand_objects_and_goal(reach3):
    reach3.reset()
    raw = reach3.envs[0]._get_obs()  # Meta-World's own 39-d observation of copy 0
    obs = project_observation(raw, 'legion12')
    assert obs.shape == (12,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[0:3], reach3.envs[0].get_endeff_pos(), atol=1e-6)  # hand
    np.testing.assert_allclose(obs[3:6], raw[4:7], rtol=1e-6)  # object 1
    np.testing.assert_allclose(obs[6:9], raw[11:14], rtol=1e-6)  # object 2 (zeros for reach)
    np.testing.assert_allclose(obs[9:12], reach3.envs[0]._target_pos, atol=1e-6)  # the visible goal
    assert np.abs(obs[9:12]).sum() > 0
    batch = project_observation(np.stack([raw, raw]), 'full39')
    assert batch.shape == (2, 39)
    with pytest.raises(ValueError, match='39'):
        project_observation(np.zeros(12), 'legion12')
    with pytest.raises(ValueError, match='legion12'):
        project_observation(raw, 'legion13')


def test_vector_env_shapes_and_dtypes(reach3):
    obs = reach3.reset()
    assert (reach3.num_envs, reach3.obs_dim, reach3.action_dim, reach3.task) == (3, 12, 4, 'reach-v3')
    assert obs.shape == (3, 12) and obs.dtype == np.float32
    obs, reward, terminated, truncated, info = reach3.step(np.zeros((3, 4)))
    assert obs.shape == (3, 12) and reward.shape == (3,)
    assert terminated.dtype == truncated.dtype == info['success'].dtype == np.bool_
    assert info['final_obs'].shape == (3, 12) and info['episode_success'].shape == (3,)
    with pytest.raises(ValueError, match=r'\(3, 4\)'):
        reach3.step(np.zeros((2, 4)))


def test_auto_reset_at_episode_length_keeps_the_true_final_observation(reach3):
    first = reach3.reset()
    rng = np.random.default_rng(0)
    for t in range(1, SHORT + 1):
        obs, _reward, terminated, truncated, info = reach3.step(rng.uniform(-1, 1, (3, 4)))
        assert not terminated.any()
        if t < SHORT:
            assert not truncated.any()
            np.testing.assert_array_equal(info['final_obs'], obs)
    assert truncated.all()
    # Fixed goal and a deterministic simulator: every reset gives the same first observation.
    np.testing.assert_allclose(obs, first, atol=1e-6)
    final = info['final_obs']
    assert np.abs(final[:, :3] - first[:, :3]).max() > 1e-3  # the hand moved: not the reset obs
    np.testing.assert_allclose(final[:, 9:], first[:, 9:])  # same episode, same goal
    assert info['episode_length'].tolist() == [SHORT] * 3
    # The next step continues the new episode.
    _obs, _r, _te, truncated, info = reach3.step(np.zeros((3, 4)))
    assert not truncated.any() and (reach3._elapsed == 1).all()


def test_fixed_goals_are_shared_and_constant_random_goals_vary():
    fixed = TaskVectorEnv('push', 2, episode_length=2, goal='fixed', seed=1)
    random = TaskVectorEnv('push', 2, episode_length=2, goal='random', seed=1)
    goal = goal_slice('legion12')
    fixed_goals, random_goals = [], []
    for _ in range(3):
        fixed_goals.append(fixed.reset()[:, goal])
        random_goals.append(random.reset()[:, goal])
    fixed_goals, random_goals = np.stack(fixed_goals), np.stack(random_goals)  # [resets, copies, 3]
    assert np.ptp(fixed_goals.reshape(-1, 3), axis=0).max() < 1e-9  # every copy, every reset
    assert np.ptp(random_goals[:, 0], axis=0).max() > 1e-3  # new goal at each reset
    assert np.abs(random_goals[:, 0] - random_goals[:, 1]).max() > 1e-3  # copies differ
    # Auto-reset draws a new random goal too.
    random.step(np.zeros((2, 4)))
    obs, *_ = random.step(np.zeros((2, 4)))
    assert np.abs(obs[:, goal] - random_goals[-1]).max() > 1e-3
    # The seed chooses the fixed variant: another seed, another goal; the same seed, the same goal.
    other = TaskVectorEnv('push', 1, episode_length=2, seed=2).reset()[0, goal]
    again = TaskVectorEnv('push', 1, episode_length=2, seed=1).reset()[0, goal]
    assert np.abs(other - fixed_goals[0, 0]).max() > 1e-3
    np.testing.assert_array_equal(again, fixed_goals[0, 0])


def test_single_env_truncates_and_needs_a_reset():
    env = make_task_env('reach-v3', episode_length=3, layout='full39')
    obs = env.reset()
    assert obs.shape == (LAYOUTS['full39'],) and env.obs_dim == 39
    results = [env.step(np.zeros(4)) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]
    assert all(isinstance(r[4]['success'], bool) and isinstance(r[1], float) for r in results)
    with pytest.raises(RuntimeError, match='reset'):
        env.step(np.zeros(4))
    with pytest.raises(ValueError, match=r'\(4,\)'):
        env.step(np.zeros(3))


def _expert_policy(obs: np.ndarray) -> np.ndarray:
    expert = SawyerReachV3Policy()
    return np.stack([expert.get_action(o) for o in obs])


@pytest.mark.filterwarnings('ignore:Constant')  # Meta-World's expert warns about its own gains
def test_evaluate_expert_succeeds_and_zero_policy_fails():
    expert = evaluate(_expert_policy, 'reach', episodes=4, layout='full39', goal='random', seed=0)
    assert expert['success_rate'] == 1.0 and len(expert['episode_successes']) == 4
    idle = evaluate(lambda obs: np.zeros((len(obs), 4)), 'reach', episodes=2, seed=0)
    assert idle['success_rate'] == 0.0 and idle['episode_successes'] == [False, False]
    assert idle['mean_return'] > 0  # Meta-World's shaped reward is positive even when idle
    # Deterministic for a given seed, also in rounds smaller than the episode count.
    again = evaluate(_expert_policy, 'reach', episodes=4, num_envs=3, layout='full39', goal='random',
                     seed=0)
    assert again['episode_successes'] == expert['episode_successes']
    np.testing.assert_allclose(again['episode_returns'][:3], expert['episode_returns'][:3])
    steps = expert['episode_success_steps']
    assert all(1 < s <= 150 for s in steps) and again['episode_success_steps'][:3] == steps[:3]
    assert idle['episode_success_steps'] == [None, None]
    # The step at which an episode first succeeded: one step shorter, that episode fails.
    short = evaluate(_expert_policy, 'reach', episodes=4, layout='full39', goal='random', seed=0,
                     episode_length=min(steps) - 1)
    assert [short['episode_successes'][i] for i in range(4) if steps[i] == min(steps)] == [False] * \
        steps.count(min(steps))
    with pytest.raises(ValueError, match='policy returned'):
        evaluate(lambda obs: np.zeros((len(obs), 3)), 'reach', episodes=1)


class _Entry:
    """An entry point as importlib.metadata gives it (name, value, load)."""

    def __init__(self, name, factory):
        self.name, self.value, self._factory = name, f'tests:{name}', factory

    def load(self):
        if isinstance(self._factory, Exception):
            raise self._factory
        return self._factory


class _PlainEnv:
    """A Meta-World-like env exposing only reset/step (no goal sampler), as a plugin might."""

    def __init__(self, task, seed):
        self._env = envs.make_sawyer_env(task, seed)

    def reset(self):
        return self._env.reset()

    def step(self, action):
        return self._env.step(action)


def test_embodiments_from_entry_points(monkeypatch):
    assert available_embodiments()[0] == 'sawyer'
    plugins = [_Entry('plain', _PlainEnv), _Entry('broken', ImportError('no module named gripper'))]
    monkeypatch.setattr(envs, 'entry_points', lambda group: plugins)
    assert available_embodiments() == ['sawyer', 'broken', 'plain']
    env = TaskVectorEnv('reach', 1, embodiment='plain', episode_length=2)
    assert env.reset().shape == (1, 12)
    assert env.step(np.zeros((1, 4)))[3].tolist() == [False]
    with pytest.raises(ValueError, match="goal='random'"):
        TaskVectorEnv('reach', 1, embodiment='plain', goal='random')
    with pytest.raises(ValueError, match='available: sawyer, broken, plain'):
        make_task_env('reach', embodiment='ur5')
    with pytest.raises(RuntimeError, match='gripper'):
        make_task_env('reach', embodiment='broken')


@pytest.mark.parametrize(('kwargs', 'message'), [
    ({'goal': 'moving'}, 'fixed, random'),
    ({'layout': 'rgb'}, 'legion12'),
    ({'episode_length': 0}, 'episode_length'),
    ({'task': 'rech'}, 'reach-v3'),
])
def test_bad_options_are_rejected(kwargs, message):
    options = {'task': 'reach', **kwargs}
    with pytest.raises(ValueError, match=message):
        TaskVectorEnv(options.pop('task'), 1, **options)


def test_fast_quaternion_equals_scipy():
    from scipy.spatial.transform import Rotation

    from legion_core.envs import _MatrixQuaternion

    matrices = [*Rotation.random(300, random_state=0).as_matrix(), np.eye(3),
                *(Rotation.from_euler(axis, angle, degrees=True).as_matrix()
                  for axis in 'xyz' for angle in (90, 180, -90))]
    for matrix in matrices:
        np.testing.assert_array_equal(_MatrixQuaternion.from_matrix(matrix).as_quat(),
                                      Rotation.from_matrix(matrix).as_quat())


@pytest.mark.parametrize('task', ['reach-v3', 'hammer-v3', 'faucet-open-v3'])
def test_accelerated_observation_is_bit_exact(task):
    # reach: quaternion through scipy; hammer: its reward reads the quaternion; faucet: MuJoCo's own.
    stock, fast = envs.make_sawyer_env(task, 0), envs.make_sawyer_env(task, 0)
    assert envs.accelerate_observation(fast) and not envs.accelerate_observation(_PlainEnv(task, 0))
    for env in (stock, fast):
        env.max_path_length = 30
    actions = np.random.default_rng(0).uniform(-1, 1, (45, 4))
    np.testing.assert_array_equal(stock.reset()[0], fast.reset()[0])
    for t, action in enumerate(actions):
        if t == 30:
            np.testing.assert_array_equal(stock.reset()[0], fast.reset()[0])
        obs_a, reward_a, _, _, info_a = stock.step(action)
        obs_b, reward_b, _, _, info_b = fast.step(action)
        np.testing.assert_array_equal(obs_a, obs_b)
        assert reward_a == reward_b and info_a['success'] == info_b['success']


class _CountingEnv(TaskVectorEnv):
    """Counts the copies it steps: the env steps an evaluation costs."""
    stepped = 0

    def step(self, actions):
        self.stepped += int(self.active.sum())
        return super().step(actions)


@pytest.mark.filterwarnings('ignore:Constant')
def test_an_evaluation_until_success_gives_the_same_outcomes_in_the_steps_that_decide_them():
    def run(until_success: bool):
        env = _CountingEnv('reach', 4, layout='full39', goal='random', episode_length=150, seed=0,
                           autoreset=False)
        return evaluate(_expert_policy, 'reach', 4, env=env, until_success=until_success), env.stepped

    (full, full_steps), (short, short_steps) = run(False), run(True)
    assert short['episode_successes'] == full['episode_successes'] == [True] * 4
    assert short['episode_success_steps'] == full['episode_success_steps']
    assert full_steps == 4 * 150 and short_steps == sum(full['episode_success_steps'])
    assert all(s < f for s, f in zip(short['episode_returns'], full['episode_returns'], strict=True))
    # An episode that never succeeds runs to its time limit either way.
    idle = _CountingEnv('reach', 2, episode_length=20, autoreset=False)
    result = evaluate(lambda obs: np.zeros((len(obs), 4)), 'reach', 2, env=idle, until_success=True)
    assert result['episode_successes'] == [False, False] and idle.stepped == 2 * 20
    with pytest.raises(RuntimeError, match='autoreset=False'):
        TaskVectorEnv('reach', 1, episode_length=2).end([0])


def test_evaluate_reuses_an_env_and_scales_rewards():
    plain = evaluate(lambda obs: np.zeros((len(obs), 4)), 'reach', episodes=2, episode_length=10)
    env = TaskVectorEnv('reach', 2, episode_length=10, reward_scale=0.5, autoreset=False)
    scaled = evaluate(lambda obs: np.zeros((len(obs), 4)), 'reach', episodes=3, env=env)
    assert len(scaled['episode_returns']) == 3  # two rounds on two copies, cut to three episodes
    assert scaled['mean_return'] == pytest.approx(0.5 * plain['mean_return'])
    with pytest.raises(ValueError, match='autoreset=False'):
        evaluate(lambda obs: obs, 'reach', env=TaskVectorEnv('reach', 1, episode_length=2))


@pytest.mark.filterwarnings('ignore:Constant')
def test_success_bonus_is_paid_on_every_solved_step_before_scaling():
    plain = TaskVectorEnv('reach', 2, layout='full39', goal='random', episode_length=60, autoreset=False)
    bonused = TaskVectorEnv('reach', 2, layout='full39', goal='random', episode_length=60, autoreset=False,
                            success_bonus=5.0, reward_scale=0.5)
    obs = plain.reset()
    bonused.reset()
    solved_steps = 0
    for _ in range(60):
        actions = _expert_policy(obs)
        obs, reward, *_rest, info = plain.step(actions)
        _, reward_b, *_rest, info_b = bonused.step(actions)
        np.testing.assert_array_equal(info['success'], info_b['success'])
        np.testing.assert_allclose(reward_b, 0.5 * (reward + 5.0 * info['success']))
        solved_steps += int(info['success'].sum())
    assert solved_steps > 0  # the expert reaches: the bonus was paid
