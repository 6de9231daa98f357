"""`legion kuka experts`: Meta-World's scripted experts on both arms, through the real command line."""
import json
import sys

import metaworld
import pytest

from legion_core.cli.main import main as legion
from legion_kuka import experts_cli
from legion_kuka.chain import expert_policy
from legion_kuka.metaworld_kuka import KUKA_TASKS


def test_run_expert_counts_successes_and_steps():
    variants = metaworld.MT1('reach-v3', seed=0).train_tasks[:2]
    env = experts_cli.make_arm_env('kuka', 'reach-v3')
    run = experts_cli.run_expert(env, expert_policy('reach-v3'), variants, max_steps=150)
    assert run.successes == [True, True]
    assert all(0 < step < 150 for step in run.first_success_step)
    # Episodes stop at their first success: the step count is exactly the steps taken.
    assert run.steps == sum(step + 1 for step in run.first_success_step)
    assert run.rate == 1.0 and run.steps_per_second > 0


def test_too_few_steps_fail():
    variants = metaworld.MT1('reach-v3', seed=0).train_tasks[:1]
    env = experts_cli.make_arm_env('sawyer', 'reach-v3')
    run = experts_cli.run_expert(env, expert_policy('reach-v3'), variants, max_steps=3)
    assert run.successes == [False] and run.first_success_step == [None] and run.steps == 3


def test_cli_json(capsys):
    code = legion(['kuka', 'experts', '--tasks', 'reach', 'drawer-close-v3', '--episodes', '1', '--seed', '2',
                   '--json', '--no-progress'])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report['tasks']) == ['reach-v3', 'drawer-close-v3']
    for rates in report['tasks'].values():
        assert rates == {'sawyer': 1.0, 'kuka': 1.0, 'twin': None}
    assert report['episodes'] == 1 and report['seed'] == 2 and report['max_steps'] == 150
    assert report['mean'] == {'sawyer': 1.0, 'kuka': 1.0}
    assert set(report['steps_per_second']) == {'sawyer', 'kuka'}


def test_cli_table(capsys):
    assert legion(['kuka', 'experts', '--tasks', 'reach', '--episodes', '1', '--no-progress']) == 0
    out = capsys.readouterr().out
    assert 'reach-v3' in out and 'sawyer' in out and 'kuka' in out and 'steps/s' in out


@pytest.mark.parametrize('argv,message', [
    (['--tasks', 'drawer-open'], 'no KUKA variant'),
    (['--episodes', '0'], '--episodes must be >= 1'),
    (['--max-steps', '0'], '--max-steps must be >= 1'),
])
def test_cli_rejects_bad_input(argv, message, capsys):
    assert legion(['kuka', 'experts', *argv, '--no-progress']) == 2
    assert message in capsys.readouterr().err


def test_through_twin_without_the_chain_says_so(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'legion_kuka.chain', None)  # import fails as if absent
    assert legion(['kuka', 'experts', '--tasks', 'reach', '--through-twin', '--no-progress']) == 2
    assert 'run_expert_through_twin' in capsys.readouterr().err


def test_through_twin_column(capsys):
    pytest.importorskip('legion_kuka.chain')
    code = legion(['kuka', 'experts', '--tasks', 'reach', '--episodes', '1', '--through-twin', '--json',
                   '--no-progress'])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report['tasks']['reach-v3']['twin'] <= 1.0
    assert 'twin' in report['mean']


@pytest.mark.slow
def test_kuka_solves_the_legion10_tasks_about_as_often_as_the_sawyer():
    results = experts_cli.expert_table(list(KUKA_TASKS), episodes=5, seed=0, progress=False)
    # Door-open's expert pushes the door with the mocap far ahead of a hand the door blocks: a force the
    # KUKA scene no longer allows (its mocap stays within sim2real's 5 cm lead, as on the arm), so it
    # fails there (0/5) as it does through the twin (docs/experts.md). The others: one episode in five of
    # slack.
    others = {task: runs for task, runs in results.items() if task != 'door-open-v3'}
    for task, runs in others.items():
        assert runs['kuka'].rate >= runs['sawyer'].rate - 0.21, (task, runs['kuka'].successes,
                                                                   runs['sawyer'].successes)
    mean = {arm: sum(runs[arm].rate for runs in others.values()) / len(others) for arm in experts_cli.ARMS}
    assert mean['kuka'] >= mean['sawyer'] - 0.05, mean
