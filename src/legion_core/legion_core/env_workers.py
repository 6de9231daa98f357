"""Env copies stepped in worker processes, so that the learner's updates and the simulation overlap.

SAC on one CPU core alternates two costs per env step: the simulation (0.3 ms for Meta-World's KUKA env,
about 4 ms for the twin embodiment, which runs sim2real, the safety filter and the joint servo) and the
gradient update (about 10 ms at the default sizes). :class:`EnvPool` runs the N copies of a
:class:`~legion_core.envs.TaskVectorEnv` split over W worker processes (``train.env_workers``): the
trainer writes the actions (:meth:`EnvPool.step_async`), does its updates, and then collects the
transition (:meth:`EnvPool.step_wait`), so a step costs about the larger of the two instead of their
sum, and with W > 1 the copies also step in parallel with each other. The updates of a step then see
the replay up to the previous transition (one step later than in-process), which changes the results in
distribution only.

Data path: actions, observations, rewards, flags and the episode statistics live in one block of
shared memory (a ``multiprocessing`` heap block, unlinked from the file system as soon as it exists,
so even a killed trainer leaves no segment behind); each worker reads and writes its own rows. The
pipes carry only the commands and one short reply each (``ok`` or an error's traceback), which also
orders the memory accesses of both sides.

Worker w steps copies ``[a_w, b_w)`` (contiguous, sizes differing by at most one) with the seeds those
copies have in the whole env, so the same seeds and actions give the same transitions whatever W is
(including W = 0, the env in the learner's process). A worker ignores SIGINT (Ctrl-C reaches the whole
process group; the trainer handles it and writes its checkpoint), SIGTERM and a scheduler's SIGUSR1 /
SIGUSR2 (SLURM sends them to every process of a job step at a preemption or before a time limit; the
trainer checkpoints and goes on or requeues), and ends when its parent goes away (its pipe closes: a
killed trainer leaves no worker). A worker that dies raises :class:`EnvWorkerError` naming it (index,
its copies, pid, exit code) as soon as the parent waits on it, never a hang (the parent waits on the
processes' sentinels as well as on the pipes); an exception in a worker's env comes back with its
traceback. Workers are started with ``spawn`` (no fork of a process holding torch's threads): a script
that trains with ``train.env_workers`` needs the ``if __name__ == '__main__':`` guard (``legion train``
has it).

Measured: docs/benchmarks.md (``Env stepping in worker processes``).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import time
import traceback
from typing import Any

import numpy as np

#: What a vector step returns: (obs, reward, terminated, truncated, info), as TaskVectorEnv.step.
Step = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]
#: The shared arrays, per copy: name -> (dtype, shape after the copy axis). ``obs`` and ``final_obs``
#: take the layout's width (``None`` here).
_FIELDS: dict[str, tuple[str, tuple]] = {
    'actions': ('float64', (4,)), 'obs': ('float32', (None,)), 'final_obs': ('float32', (None,)),
    'reward': ('float64', ()), 'episode_return': ('float64', ()), 'episode_length': ('int64', ()),
    'terminated': ('bool', ()), 'truncated': ('bool', ()), 'success': ('bool', ()),
    'episode_success': ('bool', ()), 'active': ('bool', ()),
}
_INFO = ('success', 'final_obs', 'episode_success', 'episode_return', 'episode_length')


class EnvWorkerError(RuntimeError):
    """An env worker died, did not answer, or its env raised (the worker's traceback is in the message)."""


def split_copies(num_envs: int, workers: int) -> list[tuple[int, int]]:
    """The copies ``[a, b)`` of each of ``workers`` workers: contiguous, sizes differing by at most one."""
    if not 1 <= workers <= num_envs:
        raise ValueError(f'cannot split {num_envs} env copies over {workers} workers (1 to {num_envs})')
    base, extra = divmod(num_envs, workers)
    bounds, start = [], 0
    for w in range(workers):
        stop = start + base + (w < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def _views(buffer: Any, num_envs: int, obs_dim: int) -> dict[str, np.ndarray]:
    """Numpy views of the shared block, the same layout in the parent and every worker."""
    out, offset = {}, 0
    for name, (dtype, tail) in _FIELDS.items():
        shape = (num_envs, *(obs_dim if d is None else d for d in tail))
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        out[name] = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)
        offset += -(-count * dtype.itemsize // 8) * 8  # keep every array 8-byte aligned
    return out


def _block_size(num_envs: int, obs_dim: int) -> int:
    size = 0
    for dtype, tail in _FIELDS.values():
        count = num_envs * int(np.prod([obs_dim if d is None else d for d in tail]))
        size += -(-count * np.dtype(dtype).itemsize // 8) * 8
    return size


def _serve(conn: Any, buffer: Any, rows: tuple[int, int], num_envs: int, seeds: list[int], task: str,
           env_kwargs: dict[str, Any]) -> None:
    """A worker process: build its copies, then answer commands until told to close or until the
    parent's end of the pipe closes. Results go into its rows of the shared block."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A scheduler's notices (SIGUSR2 before a time limit or at a preemption, SIGUSR1 on some clusters)
    # reach every process of a SLURM job step; the trainer's process acts on them (legion_core.sweep_job).
    # SIGTERM too: a preempted job's trainer checkpoints and steps on until SLURM kills and requeues it.
    for notice in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
        signal.signal(notice, signal.SIG_IGN)
    from legion_core.envs import TaskVectorEnv

    a, b = rows
    try:
        env = TaskVectorEnv(task, b - a, seeds=seeds[a:b], **env_kwargs)
        mine = {name: view[a:b] for name, view in _views(buffer, num_envs, env.obs_dim).items()}
    except BaseException:
        conn.send(('error', traceback.format_exc()))
        return
    conn.send(('ok', None))
    while True:
        try:
            command = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        try:
            if command == 'step':
                obs, reward, terminated, truncated, info = env.step(mine['actions'])
                mine['obs'][:], mine['reward'][:] = obs, reward
                mine['terminated'][:], mine['truncated'][:] = terminated, truncated
                for name in _INFO:
                    mine[name][:] = info[name]
            elif command == 'reset':
                mine['obs'][:] = env.reset()
            elif command == 'reseed':
                env.reseed()
            elif command == 'close':
                env.close()
                conn.send(('ok', None))
                break
            else:
                raise ValueError(f'unknown env worker command {command!r}')
            mine['active'][:] = env.active
        except Exception:
            conn.send(('error', traceback.format_exc()))
            continue
        conn.send(('ok', None))
    conn.close()


class EnvPool:
    """The copies of a :class:`~legion_core.envs.TaskVectorEnv` (same arguments) split over ``workers``
    processes, with its API: ``reset``, ``step``, ``reseed``, ``active``, ``close``, ``num_envs``,
    ``seeds``, and :meth:`step_async` / :meth:`step_wait`, which split ``step`` so that the caller can
    work while the copies step. Close it (or use it as a context manager): each process is asked to
    close its env and joined, and killed if it does not end within ``close_timeout_s``.
    """

    def __init__(self, task: str, num_envs: int, *, workers: int = 1, name: str | None = None,
                 start_timeout_s: float = 300.0, close_timeout_s: float = 5.0, **env_kwargs: Any) -> None:
        from legion_core.envs import ACTION_DIM, LAYOUTS, _check_common, copy_seeds

        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f'num_envs must be a positive integer, got {num_envs!r}')
        layout = env_kwargs.get('layout', 'legion12')
        # The same argument checks as in-process, here, before a process starts.
        self.task = _check_common(task, env_kwargs.get('embodiment', 'sawyer'), layout,
                                  env_kwargs.get('episode_length', 150), env_kwargs.get('goal', 'fixed'))
        self.num_envs = int(num_envs)
        self.rows = split_copies(self.num_envs, int(workers))
        self.name = name or f'{self.task} x{self.num_envs}'
        self.obs_dim, self.action_dim = LAYOUTS[layout], ACTION_DIM
        self.autoreset = bool(env_kwargs.get('autoreset', True))
        seed = env_kwargs.get('seed', 0)
        copy_seed = env_kwargs.pop('copy_seed', None)
        self.seeds = copy_seeds(seed if copy_seed is None else copy_seed, self.num_envs)
        self.close_timeout_s = float(close_timeout_s)
        self._waiting = False
        self._closed = False
        context = multiprocessing.get_context('spawn')  # no fork of a process holding torch's threads
        # One block for all workers; RawArray: no lock (each row has one writer, the pipes order access).
        self._buffer = context.RawArray('b', _block_size(self.num_envs, self.obs_dim))
        self._shared = _views(self._buffer, self.num_envs, self.obs_dim)
        self._conns: list[Any] = []
        self._processes: list[Any] = []
        try:
            for w, rows in enumerate(self.rows):
                conn, child = context.Pipe()
                process = context.Process(
                    target=_serve, args=(child, self._buffer, rows, self.num_envs, self.seeds, task,
                                         dict(env_kwargs)),
                    name=f'legion-env {self.name} {w + 1}/{len(self.rows)}', daemon=True)
                try:
                    process.start()
                except BaseException:
                    conn.close()
                    raise
                finally:
                    child.close()
                self._conns.append(conn)  # only started ones: close() joins every process listed
                self._processes.append(process)
            self._gather(range(self.workers), timeout_s=start_timeout_s)
        except BaseException:
            self.close()
            raise

    @property
    def workers(self) -> int:
        return len(self.rows)

    @property
    def pids(self) -> list[int | None]:
        return [process.pid for process in self._processes]

    def worker_name(self, w: int) -> str:
        """How errors name worker ``w``: its place, its env, its copies and its pid."""
        a, b = self.rows[w]
        return (f'env worker {w + 1}/{self.workers} of {self.name!r} (copies {a}-{b - 1}, '
                f'pid {self._processes[w].pid})')

    def _died(self, w: int) -> str:
        process = self._processes[w]
        process.join(self.close_timeout_s)  # reaped: its exit code is known
        return f'{self.worker_name(w)} died with exit code {process.exitcode}'

    def _gather(self, workers: Any, timeout_s: float | None = None) -> None:
        """Wait for one reply from each of ``workers``, or its death; then raise the first problem.

        Every worker is waited for (a failed step leaves the others' replies read, so the pool stays in
        step), each on its pipe and on its process's sentinel, so a dead worker ends the wait at once.
        """
        pending = {w for w in workers}
        problems: dict[int, str] = {}  # by worker, reported in worker order
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pending:
            waitables = {self._conns[w]: w for w in pending}
            waitables.update({self._processes[w].sentinel: w for w in pending})
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            ready = multiprocessing.connection.wait(list(waitables), timeout=left)
            if not ready:
                for w in pending:
                    problems[w] = f'{self.worker_name(w)} did not answer within {timeout_s:.0f} s'
                break
            for w in {waitables[r] for r in ready}:
                conn = self._conns[w]
                try:
                    # A worker that exited after its reply still has the reply in the pipe.
                    status, payload = conn.recv() if conn.poll() else ('died', None)
                except (EOFError, OSError):
                    status, payload = 'died', None
                pending.discard(w)
                if status == 'died':
                    problems[w] = self._died(w)
                elif status == 'error':
                    problems[w] = f'{self.worker_name(w)} failed:\n{payload}'
        if problems:
            raise EnvWorkerError('\n'.join(problems[w] for w in sorted(problems)))

    def _send(self, command: str) -> None:
        if self._closed:
            raise EnvWorkerError(f'the env workers of {self.name!r} are closed')
        if self._waiting:
            raise RuntimeError('a step is already in flight: call step_wait() first')
        sent = []
        try:
            for w, conn in enumerate(self._conns):
                conn.send(command)
                sent.append(w)
        except (BrokenPipeError, OSError):
            problems = [self._died(len(sent))]
            try:
                self._gather(sent)  # the replies of those that got it, so the pool stays in step
            except EnvWorkerError as error:
                problems.append(str(error))
            raise EnvWorkerError('\n'.join(problems)) from None

    def _call(self, command: str) -> None:
        self._send(command)
        self._gather(range(self.workers))

    def reset(self) -> np.ndarray:
        self._call('reset')
        return self._shared['obs'].copy()

    def reseed(self) -> None:
        self._call('reseed')

    @property
    def active(self) -> np.ndarray:
        """Which copies are running (as of the last reset or collected step)."""
        return self._shared['active'].copy()

    def step_async(self, actions: Any) -> None:
        """Hand the actions to the workers; they step while the caller goes on. :meth:`step_wait` collects."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, self.action_dim):
            raise ValueError(f'expected actions of shape ({self.num_envs}, {self.action_dim}), '
                             f'got {actions.shape}')
        if self._waiting:
            raise RuntimeError('a step is already in flight: call step_wait() first')
        self._shared['actions'][:] = actions
        self._send('step')
        self._waiting = True

    def step_wait(self) -> Step:
        if not self._waiting:
            raise RuntimeError('no step in flight: call step_async(actions) first')
        self._waiting = False
        self._gather(range(self.workers))
        # Copies: the caller keeps these while the next step overwrites the shared block.
        shared = self._shared
        info = {name: shared[name].copy() for name in _INFO}
        return (shared['obs'].copy(), shared['reward'].copy(), shared['terminated'].copy(),
                shared['truncated'].copy(), info)

    def step(self, actions: Any) -> Step:
        self.step_async(actions)
        return self.step_wait()

    def close(self) -> None:
        """End the workers (idempotent): ask each to close its env, then join; kill one that hangs."""
        if self._closed:
            return
        self._closed = True
        alive = [w for w, process in enumerate(self._processes) if process.is_alive()]
        # Whatever goes wrong here (a worker dead or hung), every process is joined or killed below.
        if self._waiting:
            with contextlib.suppress(EnvWorkerError):
                self._gather(alive, timeout_s=self.close_timeout_s)
        self._waiting = False
        for w in alive:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conns[w].send('close')
        with contextlib.suppress(EnvWorkerError):
            self._gather([w for w in alive if self._processes[w].is_alive()], timeout_s=self.close_timeout_s)
        deadline = time.monotonic() + self.close_timeout_s
        for process in self._processes:
            process.join(max(deadline - time.monotonic(), 0.0))
            if process.is_alive():
                process.kill()
                process.join()
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, '_closed', True):
            self.close()

    def __repr__(self) -> str:
        return f'EnvPool({self.name!r}, workers={self.workers}, pids={self.pids})'


class EnvWorker(EnvPool):
    """All copies in one worker process (``train.env_workers=1``, formerly ``train.env_process``)."""

    def __init__(self, task: str, num_envs: int, **kwargs: Any) -> None:
        super().__init__(task, num_envs, workers=1, **kwargs)

    @property
    def pid(self) -> int | None:
        return self._processes[0].pid
