"""`legion train` and `legion eval` from the command line: help, validation, run, resume, evaluate."""
import json
import subprocess
import sys

import pytest
import torch
from test_trainer import SMALL

from legion_core.cli.main import main

torch.set_num_threads(1)


def test_train_help_explains_groups_and_examples():
    out = subprocess.run([sys.executable, '-m', 'legion_core.cli.main', 'train', '--help'],
                         capture_output=True, text=True, check=True).stdout
    for text in ('--resume', '-m, --multirun', 'config groups', 'preset', 'tiny', 'original', 'stream',
                 'legion10', 'replay', 'reservoir', 'legion train -m seed=0,1,2'):
        assert text in out


@pytest.mark.parametrize(('overrides', 'message'), [
    (['stream.tasks=[reach-v3,pussh-v3]'], "unknown Meta-World task 'pussh-v3'. Did you mean push-v3"),
    (['env.layout=legion13'], "env.layout must be one of ['full39', 'legion12']"),
    (['agent.batch_size=4096', 'replay.capacity=1000'], 'agent.batch_size (4096) exceeds replay.capacity'),
    (['train.steps_per_task=-5'], 'train.steps_per_task must be a positive integer'),
    (['agent.latent_dim=0'], 'agent.latent_dim must be >= 1'),
    (['agent.eval_z=median'], "agent.eval_z must be one of ['mean', 'sample']"),
    (['replay.policy=lru'], "replay.policy must be one of ['fifo', 'reservoir', 'task_quota']"),
    (['+train.stepz=3'], "unknown train setting(s) ['stepz']"),
    (['nosuchkey=1'], "bad override: Could not override 'nosuchkey'"),
    (['dpmm=nosuch'], 'bad override'),
])
def test_bad_configs_exit_2_with_the_reason(tmp_path, capsys, overrides, message):
    code = main(['train', f'run_dir={tmp_path}/run', *overrides])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert not (tmp_path / 'run').exists()  # nothing started


def test_resume_refuses_missing_runs_and_sweeps(tmp_path, capsys):
    assert main(['train', '--resume', str(tmp_path / 'nothing')]) == 2
    assert 'not a run directory' in capsys.readouterr().err
    assert main(['train', '-m', '--resume', str(tmp_path), 'seed=3']) == 2
    assert 'takes no -m' in capsys.readouterr().err


def test_resume_changes_only_the_settings_a_checkpoint_does_not_depend_on(tmp_path, capsys):
    run_dir = tmp_path / 'run'
    assert main(['train', '--no-progress', '--max-steps', '60', f'run_dir={run_dir}', *SMALL,
                 'train.steps_per_task=120', 'train.eval_every=0']) == 0
    saved = (run_dir / 'config.yaml').read_text()
    for override, message in (('seed=3', 'seed cannot change in a resumed run'),
                              ('agent.actor_hidden=64', 'agent.actor_hidden cannot change'),
                              ('train.eval_every=-1', 'train.eval_every must be an integer >= 0'),
                              ('train.eval_tasks', 'an override is KEY=VALUE'),
                              ('train.eval_every=[1,', "bad override 'train.eval_every=[1,'")):
        assert main(['train', '--resume', str(run_dir), override]) == 2
        assert message in capsys.readouterr().err
        assert (run_dir / 'config.yaml').read_text() == saved  # a refused change changes nothing
    assert not (run_dir / 'config_changes.jsonl').exists()

    assert main(['train', '--resume', str(run_dir), '--no-progress', '--max-steps', '30',
                 'train.eval_every=30', 'train.eval_tasks=seen', 'agent.demo_bc=0.5',
                 'agent.demo_q_filter=true']) == 0  # the value in force: not a change
    capsys.readouterr()
    [change] = [json.loads(line) for line in (run_dir / 'config_changes.jsonl').read_text().splitlines()]
    assert change['env_steps'] == 60 and change['changed'] == {
        'train.eval_every': [0, 30], 'train.eval_tasks': ['all', 'seen'], 'agent.demo_bc': [0.0, 0.5]}
    rows = [json.loads(line) for line in (run_dir / 'evals.jsonl').read_text().splitlines()]
    assert [(r['env_steps'], r['task']) for r in rows] == [(90, 'reach-v3')]  # local step 90, seen tasks
    # A later plain resume goes on with the changed settings.
    from legion_core.trainer import resume_trainer

    again = resume_trainer(run_dir, progress=False)
    assert again.config.train.eval_every == 30 and again.agent_config.demo_bc == 0.5


def test_resume_with_overrides_after_an_append_killed_before_its_checkpoint(tmp_path, capsys):
    from legion_core.trainer import resume_trainer

    run_dir = tmp_path / 'run'
    assert main(['train', '--no-progress', '--max-steps', '60', f'run_dir={run_dir}', *SMALL,
                 'train.steps_per_task=120', 'train.eval_every=0']) == 0
    resume_trainer(run_dir, progress=False, append_tasks=['drawer-close'])  # config.yaml lists 3, killed
    trainer = resume_trainer(run_dir, progress=False, overrides=['train.eval_every=30'])
    assert trainer.tasks == ['reach-v3', 'push-v3', 'drawer-close-v3']
    assert trainer.agent.task_embeddings.shape[0] == 3 and trainer.config.train.eval_every == 30


def test_train_stop_resume_and_evaluate(tmp_path, capsys):
    run_dir = tmp_path / 'run'
    args = ['train', '--no-progress', '--max-steps', '60', f'run_dir={run_dir}', *SMALL,
            'train.steps_per_task=120', 'train.eval_every=0']
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first['env_steps'] == 60 and not first['complete']
    assert main(['train', '--resume', str(run_dir), '--no-progress']) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done['complete'] and done['env_steps'] == 240 and done['final_success'] is not None

    assert main(['eval', str(run_dir), '--episodes', '2', '--json']) == 0
    table = json.loads(capsys.readouterr().out)
    assert [row['task'] for row in table['tasks']] == ['reach-v3', 'push-v3']
    assert all(0.0 <= row['success'] <= 1.0 and row['episodes'] == 2 for row in table['tasks'])
    for row in table['tasks']:  # which episodes failed, as well as how many
        assert len(row['episode_successes']) == 2 and sum(row['episode_successes']) / 2 == row['success']
        assert [s is not None for s in row['episode_success_steps']] == row['episode_successes']
    assert main(['eval', str(run_dir), '--episodes', '1', '--tasks', 'push']) == 0
    out = capsys.readouterr().out
    assert 'push-v3' in out and 'reach-v3' not in out and 'mean' in out
    assert main(['eval', str(run_dir), '--tasks', 'door-open']) == 2
    assert 'unknown task' in capsys.readouterr().err


def test_eval_loads_a_shipped_policy_by_name(capsys):
    # sawyer: Meta-World's own arm, there without legion_kuka; the policy's name is what is checked.
    assert main(['eval', 'legion10_twin', '--tasks', 'window-close', '--episodes', '1',
                 '--embodiment', 'sawyer', '--json']) == 0
    table = json.loads(capsys.readouterr().out)
    assert table['checkpoint'].endswith('legion10_twin/policy.pt')
    assert [row['task'] for row in table['tasks']] == ['window-close-v3']


def test_sigterm_stops_a_run_with_a_checkpoint_that_resumes(tmp_path, capsys):
    import signal
    import time

    run_dir = tmp_path / 'run'
    trainer = subprocess.Popen(
        [sys.executable, '-m', 'legion_core.cli.main', 'train', '--no-progress', f'run_dir={run_dir}', *SMALL,
         'train.steps_per_task=1000000', 'train.eval_every=0', 'train.checkpoint_every=0'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((run_dir / 'tb').glob('events.*')) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # well into training
        trainer.send_signal(signal.SIGTERM)
        _out, err = trainer.communicate(timeout=120)
    finally:
        trainer.kill()
    assert trainer.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert 'stopped by SIGTERM with a checkpoint at env step' in err and f'--resume {run_dir}' in err
    saved = torch.load(run_dir / 'checkpoints' / 'last.pt', weights_only=False)['position']['env_steps']
    assert saved > 0
    assert main(['train', '--resume', str(run_dir), '--no-progress', '--max-steps', '10']) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])['env_steps'] >= saved + 10


@pytest.mark.slow
def test_tiny_preset_end_to_end_from_the_command_line(tmp_path):
    run_dir = tmp_path / 'tiny'
    out = subprocess.run([sys.executable, '-m', 'legion_core.cli.main', 'train', 'preset=tiny',
                          f'run_dir={run_dir}', '--no-progress'], capture_output=True, text=True, check=True)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary['complete'] and summary['env_steps'] == 2000
    metrics = json.loads((run_dir / 'metrics.json').read_text())
    assert len(metrics['success_matrix']) == 2 and len(metrics['dpmm']) == 2
    assert (run_dir / 'checkpoints' / 'last.pt').is_file() and list((run_dir / 'tb').iterdir())


@pytest.mark.slow
def test_multirun_sweep_writes_one_run_per_job(tmp_path):
    sweep = tmp_path / 'sweep'
    out = subprocess.run([sys.executable, '-m', 'legion_core.cli.main', 'train', '-m', *SMALL, 'seed=0,1',
                          f'hydra.sweep.dir={sweep}', '--max-steps', '4', '--no-progress'],
                         capture_output=True, text=True, check=True)
    runs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{')]
    assert [r['run_dir'] for r in runs] == [str(sweep / '0'), str(sweep / '1')]
    seeds = [json.loads((sweep / str(i) / 'metrics.json').read_text())['config']['seed'] for i in (0, 1)]
    assert seeds == [0, 1]


def test_a_finished_stream_goes_on_with_appended_tasks(tmp_path, capsys):
    from legion_core.trainer import resume_trainer

    run = tmp_path / 'run'
    small = [o for o in SMALL if not o.startswith('train.steps_per_task')]
    assert main(['train', '--no-progress', f'run_dir={run}', *small, 'train.steps_per_task=100',
                 'agent.distill=1.0', 'train.eval_every=0']) == 0
    capsys.readouterr()
    before = torch.load(run / 'checkpoints' / 'last.pt', weights_only=False)
    assert main(['train', '--no-progress', '--resume', str(run), '--append', 'drawer-close',
                 '--max-steps', '60']) == 0
    capsys.readouterr()
    trainer = resume_trainer(run, progress=False)  # config.yaml now lists three tasks
    assert trainer.tasks == ['reach-v3', 'push-v3', 'drawer-close-v3']
    # Phase 2 went on from the learnt agent: 60 new steps, the earlier tasks' replay kept, not retrained.
    assert trainer.position['phase'] == 2 and trainer.position['local_step'] == 60
    assert trainer.position['env_steps'] == before['position']['env_steps'] + 60
    assert trainer.replay.task_counts() == {0: 100, 1: 100, 2: 60}
    assert trainer.agent.teacher_tasks == 2  # the switch the finished run had skipped
    assert torch.equal(trainer.agent.log_alpha[:2].cpu(), before['agent']['log_alpha'])
    assert torch.equal(trainer.agent.task_embeddings[:2].cpu(), before['agent']['task_embeddings'])
    trainer.run()
    metrics = json.loads((run / 'metrics.json').read_text())
    assert metrics['complete'] and len(metrics['success_matrix']) == 3
    assert metrics['success_matrix'][0][:2] == [float(v) for v in before['success_matrix'][0]]


@pytest.mark.parametrize(('args', 'message'), [
    (['--append', 'push'], '--append adds tasks to an existing run'),
    (['--resume', '{run}', '--append', 'reach'], 'reach-v3 already in the stream'),
    (['--resume', '{run}', '--append', 'pussh'], "unknown Meta-World task 'pussh'"),
])
def test_append_refusals(tmp_path, capsys, args, message):
    run = tmp_path / 'run'
    assert main(['train', '--no-progress', f'run_dir={run}', *SMALL, 'train.eval_every=0',
                 'train.steps_per_task=60']) == 0
    capsys.readouterr()
    assert main(['train', '--no-progress', *[a.format(run=run) for a in args]]) == 2
    assert message in capsys.readouterr().err


def test_a_run_that_another_process_trains_is_refused_and_left_as_it_is(tmp_path, capsys):
    # A resume started before a stopped run had exited (its SIGTERM waits for the evaluation under way)
    # would write the same run's evaluations and checkpoints beside it.
    import os

    from legion_core.checkpoint import LOCK_FILE, run_lock

    run_dir = tmp_path / 'run'
    assert main(['train', '--no-progress', '--max-steps', '30', f'run_dir={run_dir}', *SMALL]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in run_dir.rglob('*') if p.is_file() and p.name != LOCK_FILE}
    with run_lock(run_dir):  # this process stands for the run still training
        second = subprocess.run([sys.executable, '-m', 'legion_core.cli.main', 'train', '--resume',
                                 str(run_dir), '--no-progress', '--max-steps', '10',
                                 'train.eval_every=500'], capture_output=True, text=True, timeout=300)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f'in use by pid {os.getpid()}' in second.stderr
    after = {p: p.read_bytes() for p in run_dir.rglob('*') if p.is_file() and p.name != LOCK_FILE}
    assert after == before  # neither config.yaml (the override) nor anything else was touched
    assert main(['train', '--resume', str(run_dir), '--no-progress', '--max-steps', '10']) == 0  # once free


def _earlier_run(run_dir):
    run_dir.mkdir()
    (run_dir / 'config.yaml').write_text('seed: 99\n')
    (run_dir / 'evals.jsonl').write_text('{"env_steps": 1}\n')
    return {p.name: p.read_text() for p in run_dir.iterdir()}


def test_a_run_directory_holding_an_earlier_run_is_refused_before_anything_is_written(tmp_path, capsys):
    """Issue #15 (4): a rerun into an earlier run's directory kept its config.yaml and appended to its
    evals.jsonl; a later --resume would have read the wrong config."""
    run_dir = tmp_path / 'run'
    before = _earlier_run(run_dir)
    code = main(['train', '--no-progress', '--max-steps', '60', f'run_dir={run_dir}', *SMALL])
    err = capsys.readouterr().err
    assert code == 2, err
    assert 'is not empty' in err and '--resume' in err and '--overwrite' in err
    assert {p.name: p.read_text() for p in run_dir.iterdir()} == before  # untouched


def test_overwrite_starts_afresh_but_never_removes_foreign_files(tmp_path, capsys):
    run_dir = tmp_path / 'run'
    _earlier_run(run_dir)
    (run_dir / 'notes.txt').write_text('mine')
    assert main(['train', '--overwrite', f'run_dir={run_dir}', *SMALL]) == 2
    assert 'notes.txt' in capsys.readouterr().err
    assert (run_dir / 'notes.txt').read_text() == 'mine' and (run_dir / 'config.yaml').is_file()
    (run_dir / 'notes.txt').unlink()
    args = ['train', '--overwrite', '--no-progress', '--max-steps', '60', f'run_dir={run_dir}', *SMALL,
            'train.eval_every=0']
    assert main(args) == 0
    assert 'seed: 99' not in (run_dir / 'config.yaml').read_text()
    evals = run_dir / 'evals.jsonl'
    assert not evals.exists() or '"env_steps": 1}' not in evals.read_text()
    assert main(['train', '--overwrite', '--resume', str(run_dir)]) == 2
    assert 'neither --resume' in capsys.readouterr().err


def test_end_phase_ends_the_current_task_where_it_stands_and_goes_on_with_the_next(tmp_path, capsys):
    run = tmp_path / 'run'
    assert main(['train', '--no-progress', '--max-steps', '80', f'run_dir={run}', *SMALL,
                 'train.eval_every=0']) == 0  # reach's phase: 80 of its 200 steps
    assert main(['train', '--no-progress', '--end-phase', str(run)]) == 2
    assert '--end-phase ends the current phase of an existing run' in capsys.readouterr().err
    assert main(['train', '--no-progress', '--resume', str(run), '--end-phase']) == 0
    metrics = json.loads((run / 'metrics.json').read_text())
    assert metrics['complete'] and metrics['env_steps'] == 80 + 200  # push had its own budget, no more
    assert [(p['local_steps'], p['ended']) for p in metrics['phases']] == [(80, 'by hand'), (200, 'budget')]
    finals = [json.loads(line) for line in (run / 'evals.jsonl').read_text().splitlines()]
    assert [(r['env_steps'], r['phase']) for r in finals if r['final']] == [(80, 0), (80, 0), (280, 1),
                                                                             (280, 1)]
    (change,) = [json.loads(line) for line in (run / 'config_changes.jsonl').read_text().splitlines()]
    assert change['env_steps'] == 80
    assert change['ended_phase'] == {'phase': 0, 'task': 'reach-v3', 'local_steps': 80}
    capsys.readouterr()
    assert main(['train', '--no-progress', '--resume', str(run), '--end-phase']) == 2  # nothing left
    assert 'has not finished its stream' in capsys.readouterr().err


def test_eval_says_which_tasks_acted_with_frozen_skills_and_shared_acts_without(tmp_path, capsys):
    from test_trainer import _SolvesEachTaskAtOnce, small_config

    cfg = small_config('train.advance_on_success=0.9', 'train.advance_evals=1', 'train.eval_every=50',
                       'train.steps_per_task=100', 'train.checkpoint_every=0', 'agent.freeze_skills=true',
                       'train.eval_until_success=true')
    _SolvesEachTaskAtOnce(cfg, tmp_path, progress=False).run()
    assert main(['eval', str(tmp_path), '--episodes', '1', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['frozen_skills'] == ['reach-v3', 'push-v3']
    assert main(['eval', str(tmp_path), '--episodes', '1', '--json', '--shared']) == 0
    assert json.loads(capsys.readouterr().out)['frozen_skills'] == []
    assert main(['eval', str(tmp_path), '--episodes', '1', '--tasks', 'push']) == 0
    assert 'acted with frozen skills: push-v3 (' in capsys.readouterr().out
