"""`legion bench train` and `legion bench learn`: the JSON they print (tiny settings, not the numbers)."""
import json

import pytest
import torch

from legion_core.cli.main import main

torch.set_num_threads(1)


@pytest.mark.slow
def test_bench_train_reports_ours_and_the_peer(capsys):
    code = main(['bench', 'train', '--steps', '3', '--warmup', '64', '--batch-size', '64', '--repeats', '1'])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in ('device', 'env_steps_per_s', 'updates_per_s', 'peer_updates_per_s', 'peer_env_steps_per_s',
                'ratio_vs_peer', 'cpu_updates_per_s', 'peer_cpu_updates_per_s', 'ratio_vs_peer_cpu_time'):
        assert result[key] is not None
    assert result['device'] == 'cpu' and result['updates_per_s'] > 0 and result['peer_updates_per_s'] > 0
    assert result['ratio_vs_peer'] == pytest.approx(result['updates_per_s'] / result['peer_updates_per_s'])
    # One update per env step on both sides.
    assert result['updates_per_s'] == pytest.approx(result['env_steps_per_s'])
    assert result['peer_updates_per_s'] == pytest.approx(result['peer_env_steps_per_s'], rel=0.01)
    # Each side at its own defaults too: `legion train`'s agent and layout, SB3's MlpPolicy 256 x 256.
    at = result['at_defaults']
    assert at['peer']['net_arch'] == '256 x 256' and at['ours']['cpu_updates_per_s'] > 0
    assert at['ratio_vs_peer_cpu_time'] == pytest.approx(
        at['ours']['cpu_updates_per_s'] / at['peer']['cpu_updates_per_s'])
    assert (result['env_workers'], result['num_envs'], result['embodiment']) == (0, 1, 'sawyer')


def test_bench_train_steps_our_copies_in_env_workers(capsys):
    code = main(['bench', 'train', '--steps', '4', '--warmup', '32', '--batch-size', '32', '--repeats', '1',
                 '--env-workers', '2', '--no-peer', '--no-defaults'])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert (result['env_workers'], result['num_envs']) == (2, 2)
    # One update per env step: 4 env steps are 2 vector steps of 2 copies, each followed by 2 updates.
    assert result['updates_per_s'] == pytest.approx(result['env_steps_per_s'])
    assert [run['env_steps_per_s'] > 0 for run in result['runs']['ours']] == [True]


@pytest.mark.parametrize(('args', 'message'), [
    (['--steps', '0'], '--steps must be >= 1'),
    (['--env-workers', '3', '--num-envs', '2'], '--env-workers (3) must be between 0 and --num-envs (2)'),
    (['--env-workers', '-1'], '--env-workers (-1) must be between 0 and --num-envs (1)'),
    (['--embodiment', 'robot'], "unknown embodiment 'robot'; available: sawyer"),
    (['--warmup', '10', '--batch-size', '64'], '--warmup (10) must be >= --batch-size (64)'),
    (['--task', 'reachh'], "unknown Meta-World task 'reachh'"),
])
def test_bench_train_rejects_bad_arguments(capsys, args, message):
    assert main(['bench', 'train', *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_bench_learn_prints_the_stream_summary(tmp_path, capsys):
    tiny = ['train.steps_per_task=60', 'train.warmup_steps=30', 'train.eval_every=0',
            'train.eval_episodes=1', 'train.eval_envs=1', 'env.episode_length=30', 'dpmm.start=40',
            'dpmm.batch=60', 'dpmm.purity_batch=60', 'dpmm.options.truncation=3', 'agent.batch_size=16',
            'agent.actor_hidden=16', 'agent.critic_hidden=16', 'agent.vae_hidden=16', 'replay.capacity=1000']
    assert main(['bench', 'learn', '--run-dir', str(tmp_path), *tiny]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['tasks'] == ['reach-v3', 'drawer-close-v3', 'button-press-topdown-v3']
    assert len(result['success_matrix']) == 3 and [d['phase'] for d in result['dpmm']] == [0, 1, 2]
    assert all(d['num_components'] >= 1 for d in result['dpmm'])
    assert result['env_steps'] == 180 and result['forgetting'] is not None
    assert (tmp_path / 'metrics.json').is_file()
    assert main(['bench', 'learn', 'train.steps_per_task=0']) == 2


TINY_SOLVE = ['--tasks', 'reach', '--budget', '400', '--eval-every', '200', '--eval-episodes', '2',
              'agent.batch_size=32', 'agent.actor_hidden=16', 'agent.critic_hidden=16', 'agent.vae_hidden=16',
              'train.warmup_steps=100', 'dpmm.start=150', 'dpmm.batch=100', 'dpmm.purity_batch=100',
              'env.episode_length=50']


@pytest.mark.slow
def test_bench_solve_reports_both_sides_and_resumes_from_its_output(tmp_path, capsys):
    output = tmp_path / 'solve.json'
    plot = tmp_path / 's.png'
    assert main(['bench', 'solve', *TINY_SOLVE, '--output', str(output), '--plot', str(plot)]) == 0
    assert plot.stat().st_size > 5000
    result = json.loads(capsys.readouterr().out)
    assert result['tasks'] == ['reach-v3'] and result['pairs'] == 1 and result['goal'] == 'random'
    pair = result['results']['reach-v3']['0']
    for side in ('ours', 'peer'):
        assert set(pair[side]) >= {'steps_to_solve', 'cpu_s_to_solve', 'wall_s_to_solve', 'success_curve'}
        assert pair[side]['steps_to_solve'] is None  # 400 steps of tiny networks learn nothing
        assert pair[side]['cpu_s'] > 0 and pair[side]['success_curve'][-1]['env_steps'] == 400
    assert [p['env_steps'] for p in pair['ours']['success_curve']] == [0, 200, 400]
    assert [p['env_steps'] for p in pair['peer']['success_curve']] == [0, 200, 400]
    cpu = [p['cpu_s'] for p in pair['peer']['success_curve']]
    assert 0 == cpu[0] < cpu[1] < cpu[2] == pair['peer']['cpu_s']  # step 0: before any CPU was spent
    # Both unsolved: each counted at its whole budget's CPU time.
    assert result['ratio_cpu_s'] == pytest.approx(pair['peer']['cpu_s'] / pair['ours']['cpu_s'], rel=1e-2)
    assert json.loads(output.read_text())['results'] == result['results']

    # A rerun with the same output finds the pair finished and trains nothing.
    assert main(['bench', 'solve', *TINY_SOLVE, '--output', str(output)]) == 0
    assert json.loads(capsys.readouterr().out)['results'] == result['results']
    # Other settings would mix two experiments in one file: refused.
    assert main(['bench', 'solve', *TINY_SOLVE, '--budget', '600', '--output', str(output)]) == 2
    assert 'written with other settings (budget)' in capsys.readouterr().err


def test_bench_solve_ratio_counts_an_unsolved_side_at_its_budget():
    from legion_core.cli.bench_solve import ratio_cpu_s

    def side(solved, spent):
        return {'cpu_s_to_solve': solved, 'cpu_s': spent}

    results = {
        'a': {'0': {'ours': side(10.0, 12.0), 'peer': side(50.0, 60.0)},     # 5x
              '1': {'ours': side(10.0, 12.0), 'peer': side(30.0, 60.0)}},    # 3x -> median 4x
        'b': {'0': {'ours': side(20.0, 30.0), 'peer': side(None, 200.0)}},   # peer unsolved: 10x
        'c': {'0': {'ours': side(None, 100.0), 'peer': side(None, 100.0)}},  # neither: 1x
    }
    assert ratio_cpu_s(results) == 4.0  # median of 4, 10, 1
    assert ratio_cpu_s({'a': {'0': {'ours': side(1.0, 1.0)}}}) is None  # --no-peer


def test_bench_solve_keeps_our_env_in_its_process_where_its_cpu_clock_sees_it():
    import argparse

    from legion_core.cli.bench_solve import _config

    args = argparse.Namespace(embodiment='kuka', goal='random', budget=40_000, eval_every=5000,
                              eval_episodes=10, threshold=0.9, consecutive=2,
                              overrides=['preset=legion10_recipe', 'train.env_workers=1'])
    cfg = _config(args, 'reach-v3', 0)
    assert cfg['train']['env_workers'] == 0 and cfg['train']['demo_episodes'] == 50  # the preset's recipe
    assert cfg['env']['embodiment'] == 'kuka' and cfg['train']['eval_every'] == 5000  # the bench's own


@pytest.mark.parametrize(('args', 'message'), [
    (['--budget', '0'], '--budget must be >= 1'),
    (['--threshold', '1.5'], '--threshold must be in (0, 1]'),
    (['--tasks', 'reachh'], "unknown Meta-World task 'reachh'"),
    (['--tasks', 'reach', 'agent.critic_body=bro'], 'agent.critic_body must be one of'),
])
def test_bench_solve_rejects_bad_arguments(capsys, args, message):
    assert main(['bench', 'solve', *args]) == 2
    assert message in capsys.readouterr().err
