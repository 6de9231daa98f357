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


@pytest.mark.parametrize(('args', 'message'), [
    (['--steps', '0'], '--steps must be >= 1'),
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
