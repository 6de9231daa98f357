"""Training checkpoints on disk: their format, atomic writing and reading.

Training checkpoints (``<run_dir>/checkpoints/last.pt``, ``phase_<k>.pt``) are written atomically:
to a temporary file in the same directory, flushed to disk, then ``os.replace``d over the old one, so
a process killed at any moment leaves either the previous or the new checkpoint, never a torn one.
They hold the agent (networks, target, optimizers, log α, DPMM), the replay buffer (``train.
checkpoint_replay: full``) or not (``none``), the RNG states (python, numpy, torch, warm-up), the
trainer position (phase, local step, env steps, schedules) and the success matrix so far.

This module only reads and writes files and imports nothing above it: the trainer builds and restores
the state (``legion_core.trainer.resume_trainer`` continues a run from ``last.pt``), and
:mod:`legion_core.policy` turns a checkpoint into the inference artefact ``policy.pt``, whose format tag
and file name are here because ``load_checkpoint`` reads both kinds of file.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from legion_core.atomic_file import atomic_replace

CHECKPOINT_FORMAT = 'legion-checkpoint/1'
POLICY_FORMAT = 'legion-policy/1'
CHECKPOINT_DIR = 'checkpoints'
LAST = 'last.pt'
POLICY_FILE = 'policy.pt'
#: While a `legion train` trains (or rewrites a run's config to resume it) it holds an exclusive lock on
#: this file of the run directory: a second process on the same run, e.g. a resume started before a
#: stopped run had finished its last evaluation and exited, is refused instead of interleaving its
#: evaluations and checkpoints with the first's. The lock goes with the process, however it ends.
LOCK_FILE = 'train.lock'


class RunInUseError(RuntimeError):
    """Another process holds the run directory's :data:`LOCK_FILE`."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block; :class:`RunInUseError` (naming the holder's pid) if another
    process holds it."""
    path = Path(run_dir) / LOCK_FILE
    with open(path, 'a+', encoding='utf-8') as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or 'another process'
            raise RunInUseError(f'{run_dir} is in use by {holder} (a `legion train` of this run that has not '
                           'exited yet; SIGTERM stops it with a checkpoint after its current step or '
                           'evaluation): wait for it, then resume') from None
        try:
            file.seek(0)
            file.truncate()
            file.write(f'pid {os.getpid()}\n')
            file.flush()
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically."""
    atomic_replace(Path(path), lambda f: torch.save(obj, f))
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    atomic_replace(Path(path), lambda f: f.write(text.encode()))
    return Path(path)


def save_checkpoint(state: dict[str, Any], run_dir: str | Path, name: str = LAST) -> Path:
    return atomic_save(state, Path(run_dir) / CHECKPOINT_DIR / name)


def find_checkpoint(source: str | Path) -> Path:
    """The checkpoint file for a run directory (its ``last.pt``) or a checkpoint path."""
    source = Path(source)
    if source.is_dir():
        for candidate in (source / CHECKPOINT_DIR / LAST, source / POLICY_FILE):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f'{source} has no {CHECKPOINT_DIR}/{LAST} or {POLICY_FILE}: is it a run '
                                'directory of `legion train`?')
    if not source.is_file():
        raise FileNotFoundError(f'no such checkpoint: {source}')
    return source


def load_checkpoint(source: str | Path, map_location: str | torch.device = 'cpu') -> dict[str, Any]:
    path = find_checkpoint(source)
    # Our own files hold numpy arrays and python RNG states, which the weights-only loader refuses.
    # mmap: a multi-GB replay buffer in last.pt is paged in only where it is read.
    state = torch.load(path, map_location=map_location, weights_only=False, mmap=True)
    if not isinstance(state, dict) or state.get('format') not in (CHECKPOINT_FORMAT, POLICY_FORMAT):
        raise ValueError(f'{path} is not a LEGION checkpoint or policy')
    return state
