"""Env copies in a worker process: the same transitions as in-process, clear errors, nothing left behind."""
import json
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

from legion_core.env_workers import EnvWorker, EnvWorkerError
from legion_core.envs import TaskVectorEnv

ENV = {'embodiment': 'sawyer', 'layout': 'full39', 'goal': 'random', 'seed': 4, 'episode_length': 30}


def test_same_seeds_and_actions_give_the_same_transitions():
    actions = np.random.default_rng(0).uniform(-1, 1, (70, 2, 4))  # past two episode ends (auto-reset)
    local = TaskVectorEnv('reach-v3', 2, **ENV)
    with EnvWorker('reach-v3', 2, **ENV) as worker:
        assert worker.seeds == local.seeds
        assert np.array_equal(local.reset(), worker.reset())
        for action in actions:
            expected, got = local.step(action), worker.step(action)
            for a, b in zip(expected[:4], got[:4], strict=True):
                assert np.array_equal(a, b)
            assert all(np.array_equal(expected[4][key], got[4][key]) for key in expected[4])


def test_the_caller_works_while_the_worker_steps():
    with EnvWorker('reach-v3', 1, **ENV) as worker:
        worker.reset()
        worker.step_async(np.zeros((1, 4)))
        with pytest.raises(RuntimeError, match='in flight'):
            worker.step_async(np.zeros((1, 4)))
        obs, reward, *_ = worker.step_wait()
        assert obs.shape == (1, 39) and reward.shape == (1,)
        with pytest.raises(RuntimeError, match='no step in flight'):
            worker.step_wait()


def test_a_worker_that_dies_is_named_and_never_hangs():
    worker = EnvWorker('reach-v3', 1, name='reach copies', **ENV)
    worker.reset()
    os.kill(worker.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(EnvWorkerError, match=r"'reach copies' \(pid \d+\) died with exit code -9"):
        worker.step(np.zeros((1, 4)))
    assert time.monotonic() - started < 5.0
    worker.close()


def test_an_error_in_the_env_comes_back_with_its_traceback():
    with EnvWorker('reach-v3', 1, **ENV) as worker:
        with pytest.raises(EnvWorkerError, match='call reset'):
            worker.step(np.zeros((1, 4)))  # stepping before reset: the env's own error
        worker.reset()  # and the worker goes on
        assert worker.step(np.zeros((1, 4)))[0].shape == (1, 39)


def test_ctrl_c_is_left_to_the_trainer():
    # Ctrl-C reaches the whole process group; the trainer writes its checkpoint, the worker must live on.
    with EnvWorker('reach-v3', 1, **ENV) as worker:
        worker.reset()
        os.kill(worker.pid, signal.SIGINT)
        time.sleep(0.2)
        assert worker.step(np.zeros((1, 4)))[0].shape == (1, 39)


def test_a_schedulers_notice_signals_are_left_to_the_trainer():
    # SLURM signals every process of a job step (SIGUSR2 before the time limit or at a preemption).
    with EnvWorker('reach-v3', 1, **ENV) as worker:
        worker.reset()
        for notice in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
            os.kill(worker.pid, notice)
        time.sleep(0.2)
        assert worker.step(np.zeros((1, 4)))[0].shape == (1, 39)


def test_bad_arguments_fail_before_a_process_starts():
    before = len(multiprocessing.active_children())
    with pytest.raises(ValueError, match='layout'):
        EnvWorker('reach-v3', 1, layout='legion99')
    assert len(multiprocessing.active_children()) == before


def test_training_with_the_env_in_a_worker_leaves_no_process(tmp_path, capsys):
    from test_trainer import SMALL

    from legion_core.cli.main import main

    run_dir = tmp_path / 'run'
    assert main(['train', '--no-progress', f'run_dir={run_dir}', *SMALL, 'train.steps_per_task=120',
                 'train.eval_every=0', 'train.env_process=true']) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary['complete'] and summary['env_steps'] == 240
    assert multiprocessing.active_children() == []
    assert main(['train', '--no-progress', f'run_dir={tmp_path / "bad"}', *SMALL,
                 'train.env_process=yes']) == 2
    assert 'train.env_process must be true or false' in capsys.readouterr().err


def test_a_killed_trainer_leaves_no_worker(tmp_path):
    import subprocess
    import sys

    script = ("from legion_core.env_workers import EnvWorker\n"
              f"w = EnvWorker('reach-v3', 1, **{ENV!r})\n"
              "w.reset()\nprint(w.pid, flush=True)\nimport time\ntime.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail('the env worker outlived its killed parent')
