"""Env copies in worker processes: the same transitions as in-process whatever the worker count, clear
errors naming the worker, nothing left behind."""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from legion_core.env_workers import EnvPool, EnvWorker, EnvWorkerError, split_copies
from legion_core.envs import TaskVectorEnv

ENV = {'embodiment': 'sawyer', 'layout': 'full39', 'goal': 'random', 'seed': 4, 'episode_length': 30}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone as far as work goes.
    with open(f'/proc/{pid}/stat') as f:
        return f.read().rsplit(')', 1)[1].split()[0] != 'Z'


def _wait_gone(pids, timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [pid for pid in pids if _alive(pid)]
        if not left:
            return []
        time.sleep(0.1)
    return left


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc's parent links)."""
    parents = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    parents[int(entry)] = int(f.read().rsplit(')', 1)[1].split()[1])
            except OSError:
                continue
    out, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        out += children
        frontier = children
    return out


def test_copies_are_split_evenly_and_contiguously():
    assert split_copies(5, 2) == [(0, 3), (3, 5)]
    assert split_copies(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert split_copies(3, 1) == [(0, 3)]
    with pytest.raises(ValueError, match='cannot split 2 env copies over 3 workers'):
        split_copies(2, 3)


def test_same_seeds_and_actions_give_the_same_transitions_whatever_the_worker_count():
    # 3 copies: 2 workers get uneven shares (2 + 1); past two episode ends (auto-reset) of each copy.
    actions = np.random.default_rng(0).uniform(-1, 1, (70, 3, 4))
    local = TaskVectorEnv('reach-v3', 3, **ENV)
    with EnvPool('reach-v3', 3, workers=1, **ENV) as one, EnvPool('reach-v3', 3, workers=2, **ENV) as two:
        assert one.seeds == two.seeds == local.seeds
        first = local.reset()
        assert np.array_equal(first, one.reset()) and np.array_equal(first, two.reset())
        ended = 0
        for action in actions:
            expected = local.step(action)
            for pool in (one, two):
                got = pool.step(action)
                for a, b in zip(expected[:4], got[:4], strict=True):
                    assert a.dtype == b.dtype and np.array_equal(a, b)
                assert expected[4].keys() == got[4].keys()
                assert all(np.array_equal(expected[4][key], got[4][key]) for key in expected[4])
            ended += int(expected[3].sum())
        assert ended == 6
        # Re-seeding repeats the episodes in every copy, wherever it steps.
        local.reseed(), two.reseed()
        assert np.array_equal(local.reset(), two.reset())
        assert np.array_equal(local.active, two.active)


def test_pool_results_do_not_change_under_the_caller():
    # The next step overwrites the shared block: what step_wait returned must be the caller's own.
    with EnvPool('reach-v3', 2, workers=2, **ENV) as pool:
        obs = pool.reset()
        kept = obs.copy()
        transition = pool.step(np.ones((2, 4)))
        pool.step(-np.ones((2, 4)))
        assert np.array_equal(obs, kept) and not np.array_equal(transition[0], obs)


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
    with pytest.raises(EnvWorkerError, match=r"env worker 1/1 of 'reach copies' \(copies 0-0, pid \d+\) "
                                             r"died with exit code -9"):
        worker.step(np.zeros((1, 4)))
    assert time.monotonic() - started < 5.0
    worker.close()


@pytest.mark.parametrize('in_flight', [False, True])
def test_a_pool_worker_that_dies_is_named_and_never_hangs(in_flight):
    pool = EnvPool('reach-v3', 4, workers=2, name='reach copies', **ENV)
    try:
        pool.reset()
        victim, survivor = pool.pids[1], pool.pids[0]
        if in_flight:  # killed while the caller does its updates
            pool.step_async(np.zeros((4, 4)))
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(EnvWorkerError) as error:
            if in_flight:
                pool.step_wait()  # the victim may have answered this step before the kill reached it:
            pool.step(np.zeros((4, 4)))  # then the next call finds it dead
        assert time.monotonic() - started < 5.0
        assert str(error.value) == (f"env worker 2/2 of 'reach copies' (copies 2-3, pid {victim}) died with "
                                    f"exit code -9")
    finally:
        pool.close()
    assert _wait_gone([survivor, victim]) == []


def test_an_error_in_a_pool_worker_names_it_and_the_pool_goes_on():
    with EnvPool('reach-v3', 2, workers=2, **ENV) as pool:
        with pytest.raises(EnvWorkerError, match=r'(?s)env worker 1/2 .* failed:.*call reset.*'
                                                 r'env worker 2/2 .* failed:.*call reset'):
            pool.step(np.zeros((2, 4)))  # stepping before reset: each env's own error
        pool.reset()
        assert pool.step(np.zeros((2, 4)))[0].shape == (2, 39)


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
    with pytest.raises(ValueError, match='cannot split 1 env copies over 2 workers'):
        EnvPool('reach-v3', 1, workers=2)
    assert len(multiprocessing.active_children()) == before


def test_a_worker_whose_env_cannot_be_built_stops_the_pool_with_its_traceback():
    # Each worker builds its own copies: a failure there comes back from both, and nothing stays up.
    with pytest.raises(EnvWorkerError, match=r"(?s)env worker 1/2 .* failed:.*unexpected keyword argument "
                                             r"'no_such_argument'.*env worker 2/2 .* failed"):
        EnvPool('reach-v3', 2, workers=2, no_such_argument=1, **ENV)
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize('workers', ['train.env_process=true', 'train.env_workers=2'])
def test_training_with_env_workers_leaves_no_process(tmp_path, capsys, workers):
    from test_trainer import SMALL

    from legion_core.cli.main import main

    run_dir = tmp_path / 'run'
    assert main(['train', '--no-progress', f'run_dir={run_dir}', *SMALL, 'train.steps_per_task=120',
                 'train.eval_every=0', workers]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary['complete'] and summary['env_steps'] == 240
    assert multiprocessing.active_children() == []


def test_bad_worker_settings_are_named(tmp_path, capsys):
    from test_trainer import SMALL

    from legion_core.cli.main import main

    assert main(['train', '--no-progress', f'run_dir={tmp_path / "bad"}', *SMALL,
                 'train.env_process=yes']) == 2
    assert 'train.env_process must be true or false' in capsys.readouterr().err
    assert main(['train', '--no-progress', f'run_dir={tmp_path / "bad"}', *SMALL,  # SMALL: 2 copies
                 'train.env_workers=3']) == 2
    assert 'train.env_workers (3) must be at most train.num_envs (2)' in capsys.readouterr().err
    assert main(['train', '--no-progress', f'run_dir={tmp_path / "bad"}', *SMALL,
                 'train.env_workers=-1']) == 2
    assert 'train.env_workers must be an integer >= 0, got -1' in capsys.readouterr().err
    assert not (tmp_path / 'bad').exists()


def test_a_killed_trainer_leaves_no_worker():
    script = ("from legion_core.env_workers import EnvPool\n"
              "if __name__ == '__main__':\n"
              f"    w = EnvPool('reach-v3', 2, workers=2, **{ENV!r})\n"
              "    w.reset()\n    w.step_async([[0.0] * 4] * 2)\n"  # one step in flight
              "    print(*w.pids, flush=True)\n    import time\n    time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(workers) == 2
    everything = _descendants(parent.pid)  # the workers and multiprocessing's resource tracker
    parent.kill()
    parent.wait()
    left = _wait_gone(everything)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], 'processes outlived their killed parent'


@pytest.mark.slow
def test_ctrl_c_stops_training_with_a_checkpoint_and_leaves_no_process(tmp_path):
    # Ctrl-C in a terminal: SIGINT to the whole process group, the workers included.
    from test_trainer import SMALL

    run_dir = tmp_path / 'run'
    # -X faulthandler: a trainer that does not stop is made to print where every thread stands (SIGABRT).
    command = [sys.executable, '-X', 'faulthandler', '-m', 'legion_core.cli.main', 'train', '--no-progress',
               f'run_dir={run_dir}', *SMALL, 'train.steps_per_task=100000', 'train.eval_every=0',
               'train.checkpoint_every=0', 'train.env_workers=2']
    # Its log goes to a file: a pipe nobody reads while it runs would fill and block the trainer's writes.
    log = tmp_path / 'train.log'
    with open(log, 'w') as stderr:
        # A terminal's Ctrl-C: SIGINT at its default, even where this test runs with it ignored (a shell
        # without job control ignores it for background commands, and Python then raises no
        # KeyboardInterrupt: the trainer would rightly go on).
        trainer = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while len(workers) < 2 and time.monotonic() < deadline and trainer.poll() is None:
            time.sleep(0.2)
            workers = [pid for pid in _descendants(trainer.pid) if _is_env_worker(pid)]
        assert len(workers) == 2, log.read_text() if trainer.poll() is not None else 'no two workers'
        everything = _descendants(trainer.pid)
        time.sleep(3.0)  # stepping and updating
        os.killpg(trainer.pid, signal.SIGINT)
        try:
            code = trainer.wait(120)
        except subprocess.TimeoutExpired:
            trainer.send_signal(signal.SIGABRT)
            trainer.wait(30)
            pytest.fail(f'the trainer did not stop on Ctrl-C; where it stood:\n{log.read_text()}')
    finally:
        if trainer.poll() is None:
            os.killpg(trainer.pid, signal.SIGKILL)
    assert code == 130, log.read_text()
    assert (run_dir / 'checkpoints' / 'last.pt').is_file()
    assert _wait_gone(everything) == []


def _is_env_worker(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return b'spawn_main' in f.read()
    except OSError:
        return False
