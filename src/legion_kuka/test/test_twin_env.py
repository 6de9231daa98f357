"""``embodiment=twin``: Meta-World tasks stepped through the arm's chain (sim2real, safety filter, servo)."""
import numpy as np
import pytest

from legion_core.envs import TaskVectorEnv, available_embodiments
from legion_kuka.chain import ChainRunner, expert_policy
from legion_kuka.twin_env import TwinTaskEnv


def test_the_twin_is_an_embodiment_of_legion_train():
    assert 'twin' in available_embodiments()


def test_a_step_is_a_policy_step_of_the_chain():
    # The same actions from the same seed: the env's observations are the chain's, step for step.
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (12, 4))
    env = TwinTaskEnv('reach-v3', seed=2)
    seen = [env.reset()[0]]
    for action in actions:
        seen.append(env.step(action)[0])
    replay = iter(actions)
    chained = []

    def policy(obs):
        chained.append(np.array(obs))
        return next(replay, np.zeros(4))

    ChainRunner(policy, 'reach-v3', seed=2, layout='full39', stop_on_success=False,
                max_steps=len(actions) + 1).episode()
    assert np.allclose(np.array(seen), np.array(chained), atol=1e-9)


def test_the_safety_filter_bounds_the_arm_in_training():
    env = TwinTaskEnv('reach-v3', seed=0)
    env.reset()
    limits = env.runner.safety_limits
    rng = np.random.default_rng(0)
    q = [env.twin.joint_state().position]
    for _ in range(20):
        env.step(np.append(np.sign(rng.uniform(-1, 1, 3)), 0.0))  # full-speed zigzag
        q.append(env.twin.joint_state().position)
    step_speed = np.abs(np.diff(q, axis=0)).max(axis=0) / env.runner.sim2real.policy_period_s
    assert np.all(step_speed <= limits.velocity * 1.05)
    assert np.all(np.array(q) >= limits.lower - 1e-3) and np.all(np.array(q) <= limits.upper + 1e-3)


def test_an_arm_knocked_off_its_path_ends_the_episode_as_on_the_real_arm():
    import mujoco

    env = TwinTaskEnv('reach-v3', seed=0)
    env.reset()
    _, _, terminated, _, info = env.step(np.array([0.5, 0.0, 0.0, 0.0]))
    assert not terminated and 'estop' not in info
    twin = env.twin
    twin.data.qpos[twin._qadr[1]] += 0.3  # a collision: A2 is far from where the filter sent it
    mujoco.mj_forward(twin.model, twin.data)
    _, _, terminated, truncated, info = env.step(np.array([0.5, 0.0, 0.0, 0.0]))
    assert terminated and not truncated
    assert info['success'] is False and info['estop'] == ['tracking_error']


def test_the_expert_earns_metaworlds_reward_and_success():
    env = TaskVectorEnv('reach-v3', 1, embodiment='twin', layout='full39', seed=0)
    expert = expert_policy('reach-v3')
    obs = env.reset()
    returns, success = 0.0, False
    for _ in range(150):
        obs, reward, _, truncated, info = env.step(np.asarray(expert(obs[0]))[None])
        returns += reward[0]
        success |= bool(info['success'][0])
        assert 0.0 <= reward[0] <= 10.0  # Meta-World v3's reward range
        if truncated[0]:
            break
    assert success
    assert returns > 100.0


def test_random_goals_come_from_the_env_seed():
    def goals(seed):
        env = TaskVectorEnv('reach-v3', 1, embodiment='twin', layout='full39', goal='random', seed=seed,
                            episode_length=2)
        out = []
        for _ in range(3):
            out.append(env.reset()[0, 36:39].copy())
        return np.array(out)

    first = goals(5)
    assert np.allclose(first, goals(5))  # reproducible
    assert np.linalg.norm(first[0] - first[1]) > 1e-3  # a new goal at every reset


def test_step_before_reset_is_refused():
    with pytest.raises(RuntimeError, match='reset'):
        TwinTaskEnv('reach-v3').step(np.zeros(4))


def test_legion_train_runs_and_evaluates_on_the_twin(tmp_path, capsys):
    import json

    from legion_core.cli.main import main

    run_dir = tmp_path / 'twin'
    assert main(['train', '--no-progress', 'preset=tiny', 'env.embodiment=twin', f'run_dir={run_dir}',
                 'train.steps_per_task=100', 'train.warmup_steps=50', 'train.eval_every=0',
                 'train.eval_episodes=1', 'train.eval_envs=1', 'env.episode_length=20']) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary['complete'] and summary['env_steps'] == 200
    metrics = json.loads((run_dir / 'metrics.json').read_text())
    assert metrics['config']['env']['embodiment'] == 'twin'
    assert len(metrics['success_matrix']) == 2
