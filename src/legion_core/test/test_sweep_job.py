"""Sweep jobs (`legion train -m`): launcher configs, a job's run directory across attempts, stopping and
checkpointing on request (what a preempted job does), and the command line around them.

The sweeps through the real engines (submitit's local executor, a single-node SLURM) are in
test_sweep_engines.py."""
import json
import subprocess
import sys

import pytest
import torch
from test_trainer import SMALL, small_config

from legion_core.checkpoint import CHECKPOINT_DIR, LAST, load_checkpoint
from legion_core.cli.main import main
from legion_core.config import compose_config
from legion_core.sweep_job import SweepJobError, prepare_job_dir, scheduler_notices
from legion_core.trainer import Trainer

torch.set_num_threads(1)


@pytest.mark.parametrize(('launcher', 'settings'), [
    ('slurm', {'timeout_min': 240, 'cpus_per_task': 2, 'mem_gb': 8, 'max_num_timeout': 50, 'partition': 'gpu',
               '_target_': 'hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher'}),
    ('local', {'timeout_min': 10080,
               '_target_': 'hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher'}),
])
def test_launcher_configs_extend_the_submitit_plugins(launcher, settings):
    cfg = compose_config([f'hydra/launcher={launcher}', 'hydra.launcher.partition=gpu'
                          if launcher == 'slurm' else 'seed=0'], with_hydra=True)
    for key, value in settings.items():
        assert cfg.hydra.launcher[key] == value


def test_cfg_prints_a_launchers_settings_and_a_launcher_needs_a_sweep(capsys):
    assert main(['train', '--cfg', 'hydra/launcher=slurm', 'hydra.launcher.gres=gpu:1', 'preset=tiny']) == 0
    out = capsys.readouterr().out
    assert 'timeout_min: 240' in out and 'gres: gpu:1' in out and 'steps_per_task: 1000' in out
    assert main(['train', 'hydra/launcher=slurm', 'preset=tiny']) == 2
    assert 'add -m' in capsys.readouterr().err
    assert main(['train', '-m', '--cfg', 'seed=0,1']) == 2
    assert 'no -m' in capsys.readouterr().err


def test_help_lists_the_launchers():
    out = subprocess.run([sys.executable, '-m', 'legion_core.cli.main', 'train', '--help'],
                         capture_output=True, text=True, check=True).stdout
    assert 'basic, local, slurm, submitit_local, submitit_slurm' in out
    assert "hydra/launcher=slurm hydra.launcher.partition=gpu 'seed=range(10)'" in out


def _job_dir(tmp_path, **overrides):
    data = small_config(*[f'{k}={v}' for k, v in overrides.items()])
    run_dir = tmp_path / '0'
    (run_dir / '.hydra').mkdir(parents=True)
    (run_dir / 'train.log').write_text('')
    return run_dir, data


def test_a_fresh_job_directory_starts_a_run(tmp_path):
    run_dir, data = _job_dir(tmp_path)
    assert prepare_job_dir(run_dir, data, ('train.log',)) is False
    assert prepare_job_dir(tmp_path / 'absent', data) is False


def test_a_job_finds_its_own_checkpoint_and_refuses_anything_else(tmp_path):
    run_dir, data = _job_dir(tmp_path)
    Trainer({**data, 'run_dir': str(run_dir)}, run_dir, progress=False).run(max_env_steps=20)
    assert (run_dir / CHECKPOINT_DIR / LAST).is_file()
    # run_dir's default holds the time of composition: a later attempt composes another one.
    assert prepare_job_dir(run_dir, {**data, 'run_dir': 'elsewhere'}, ('train.log',)) is True

    other = {**data, 'seed': 7}
    with pytest.raises(SweepJobError, match=r"another configuration \(seed: 0 there, 7 in this job\)"):
        prepare_job_dir(run_dir, other, ('train.log',))
    # Files beside the run (`legion report RUN_DIR` writes its figures there) stay and do not matter.
    (run_dir / 'report.md').write_text('mine')
    assert prepare_job_dir(run_dir, data, ('train.log',)) is True
    assert (run_dir / 'report.md').exists() and (run_dir / CHECKPOINT_DIR / LAST).exists()
    # A directory without a run of `legion train` in it is not this job's.
    (tmp_path / '1').mkdir()
    (tmp_path / '1' / 'notes.txt').write_text('mine')
    with pytest.raises(SweepJobError, match=r'holds notes\.txt but no run of `legion train`'):
        prepare_job_dir(tmp_path / '1', data, ('train.log',))


def test_a_job_requeued_across_an_upgrade_that_added_keys_continues_its_run(tmp_path):
    from omegaconf import OmegaConf

    from legion_core.trainer import CONFIG_FILE

    run_dir, data = _job_dir(tmp_path)
    Trainer({**data, 'run_dir': str(run_dir)}, run_dir, progress=False).run(max_env_steps=20)
    # As written before train.env_workers existed (env_process: true then meant one worker).
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE))
    del saved['train']['env_workers']
    OmegaConf.save(OmegaConf.create(saved), run_dir / CONFIG_FILE)
    assert prepare_job_dir(run_dir, data, ('train.log',)) is True
    # A key that differs from what the old run had is still another configuration.
    with pytest.raises(SweepJobError, match=r'train\.env_workers: 0 there, 1 in this job'):
        prepare_job_dir(run_dir, {**data, 'train': {**data['train'], 'env_workers': 1}}, ('train.log',))


def test_an_attempt_killed_before_its_first_checkpoint_starts_again(tmp_path):
    run_dir, data = _job_dir(tmp_path)
    trainer = Trainer(data, run_dir, progress=False)
    trainer._write_config()
    (run_dir / 'evals.jsonl').write_text('{"env_steps": 0}\n')
    (run_dir / 'notes.txt').write_text('mine')
    assert prepare_job_dir(run_dir, data, ('train.log',)) is False
    assert sorted(p.name for p in run_dir.iterdir()) == ['.hydra', 'notes.txt', 'train.log']


def _stop_at(trainer, env_steps, request):
    """Call ``request`` (request_stop / request_checkpoint) once the trainer has passed ``env_steps``,
    from inside the loop, as a signal handler would."""
    learn = trainer._learn

    def hooked(*args):
        learn(*args)
        if trainer.position['env_steps'] >= env_steps and not getattr(hooked, 'done', False):
            hooked.done = True
            request()

    trainer._learn = hooked


def test_a_requested_stop_ends_the_run_with_a_checkpoint_at_the_next_step(tmp_path):
    from legion_core.trainer import resume

    data = small_config('train.checkpoint_every=100000')
    trainer = Trainer(data, tmp_path, progress=False)
    _stop_at(trainer, 62, trainer.request_stop)
    metrics = trainer.run()
    assert not metrics["complete"] and metrics["env_steps"] == 62  # at the step boundary after the request
    assert load_checkpoint(tmp_path / CHECKPOINT_DIR / LAST)["position"]["env_steps"] == 62
    done = resume(tmp_path, progress=False)
    assert done['complete'] and done['env_steps'] == 400


def test_a_requested_checkpoint_is_written_at_the_next_step_and_the_run_goes_on(tmp_path):
    data = small_config('train.checkpoint_every=100000', 'train.steps_per_task=100')
    trainer = Trainer(data, tmp_path, progress=False)
    saved = []
    save = trainer.save_checkpoint
    trainer.save_checkpoint = lambda *a, **k: (saved.append(trainer.position['env_steps']), save(*a, **k))[1]
    _stop_at(trainer, 30, trainer.request_checkpoint)
    metrics = trainer.run()
    assert metrics['complete'] and metrics['env_steps'] == 200
    assert saved == [30, 100, 200]  # the requested one, then the two phase ends


def test_outside_a_submitit_job_no_signal_handler_changes(tmp_path):
    import signal

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR2)}
    with scheduler_notices(object()) as notice:
        assert {s: signal.getsignal(s) for s in before} == before
    assert notice == {}


@pytest.mark.slow
def test_the_same_sweep_given_again_continues_its_runs(tmp_path):
    sweep = tmp_path / 'sweep'
    base = [sys.executable, '-m', 'legion_core.cli.main', 'train', '-m', *SMALL, f'hydra.sweep.dir={sweep}']
    first = subprocess.run([*base, 'seed=0,1', '--max-steps', '20', '--no-progress'], capture_output=True,
                           text=True, check=True)
    assert [json.loads(line)['env_steps'] for line in first.stdout.splitlines() if line.startswith('{')] \
        == [20, 20]
    again = subprocess.run([*base, 'seed=0,1', '--no-progress'], capture_output=True, text=True, check=True)
    runs = [json.loads(line) for line in again.stdout.splitlines() if line.startswith('{')]
    assert [(r['env_steps'], r['complete']) for r in runs] == [(400, True), (400, True)]
    assert f'{sweep / "0"} continues from its checkpoint at env step 20' in again.stderr
    # Another configuration into the same job directories is refused, and leaves them alone.
    other = subprocess.run([*base, 'seed=5,6', '--no-progress'], capture_output=True, text=True)
    assert other.returncode == 2 and 'another configuration (seed: 0 there, 5 in this job)' in other.stderr
    assert json.loads((sweep / '0' / 'metrics.json').read_text())['complete']
