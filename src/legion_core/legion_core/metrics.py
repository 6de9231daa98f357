"""Lifelong-learning metrics: the success matrix and its summary (legion-original.md §6.2).

``E[j, k]`` is the success rate on task k at the final evaluation of phase j (phase j trains the j-th
task of the stream). With ``L`` the last phase:

- final success ``= mean_k E[L, k]`` (over all tasks, untrained ones included, as the original);
- own-phase ``= mean_k E[k, k]``: how well each task was learnt when it was trained;
- forgetting ``F = mean_{k < L} (E[k, k] − E[L, k])``: negative values mean backward transfer;
- max-forgetting ``= mean_{k < L} (max_{j ∈ [k, L-1]} E[j, k] − E[L, k])``;
- stream average: the mean of the overall success over every periodic evaluation of the run.

A multi-task run has one phase that trains every task: own-phase equals final success and the two
forgetting numbers are undefined (``None``). Undefined numbers are ``None`` rather than NaN so that
summaries serialise to strict JSON.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _mean_or_none(values) -> float | None:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def _check_rate(success: float) -> float:
    success = float(success)
    if not 0.0 <= success <= 1.0:  # also rejects NaN
        raise ValueError(f'a success rate must lie in [0, 1], got {success!r}')
    return success


class SuccessMatrix:
    """Success rates per (phase, task), filled as evaluations arrive; NaN where not evaluated."""

    def __init__(self, tasks: Sequence[str], num_phases: int | None = None):
        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError('a success matrix needs at least one task')
        self.num_phases = len(self.tasks) if num_phases is None else int(num_phases)
        if self.num_phases < 1:
            raise ValueError(f'num_phases must be positive, got {num_phases!r}')
        self._values = np.full((self.num_phases, len(self.tasks)), np.nan)
        self._last_phase = -1

    def record(self, phase: int, task_index: int, success: float) -> None:
        """Store the success rate of task ``task_index`` at the end of ``phase`` (a later call for the
        same cell replaces it, so the last evaluation of a phase is the one that counts)."""
        if not 0 <= phase < self.num_phases:
            raise ValueError(f'phase {phase} outside [0, {self.num_phases})')
        if not 0 <= task_index < len(self.tasks):
            raise ValueError(f'task index {task_index} outside [0, {len(self.tasks)}) '
                             f'for tasks {self.tasks}')
        self._values[phase, task_index] = _check_rate(success)
        self._last_phase = max(self._last_phase, phase)

    @property
    def matrix(self) -> np.ndarray:
        """[P, T] copy, P = phases recorded so far (all rows of a finished run), NaN = not evaluated."""
        return self._values[:self._last_phase + 1].copy()

    def to_list(self) -> list[list[float | None]]:
        """The matrix as nested lists with ``None`` for cells not evaluated (for JSON)."""
        return [[None if math.isnan(v) else float(v) for v in row] for row in self.matrix]

    def summarise(self) -> dict:
        # A matrix built with one phase for several tasks is a multi-task run.
        return summarise(self.matrix, multitask=self.num_phases == 1 and len(self.tasks) > 1)


def summarise(E: np.ndarray, *, multitask: bool | None = None) -> dict:  # noqa: N803 (the paper's name)
    """Final success, per-task final, own-phase, forgetting and max-forgetting of a [P, T] matrix.

    Rows are phases, columns tasks in stream order (phase k trains task k). ``multitask`` marks a
    one-phase run that trained every task (default: any one-row matrix); P < T is a lifelong stream
    that stopped early (untrained tasks count in ``final_success`` only).
    """
    E = np.asarray(E, dtype=float)  # noqa: N806
    if E.ndim != 2 or E.size == 0:
        raise ValueError(f'expected a non-empty [phases, tasks] matrix, got shape {E.shape}')
    if E.shape[0] > E.shape[1]:
        raise ValueError(f'{E.shape[0]} phases for {E.shape[1]} tasks: each phase trains the next task of '
                         'the stream, so there cannot be more phases than tasks')
    finite = E[~np.isnan(E)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ValueError('success rates must lie in [0, 1]')
    last = E.shape[0] - 1
    final_row = E[last]
    summary = {
        'final_success': _mean_or_none(final_row),
        'per_task_final': [None if math.isnan(v) else float(v) for v in final_row],
        'num_phases': E.shape[0],
    }
    if multitask is None:
        multitask = last == 0
    if multitask and last != 0:
        raise ValueError(f'a multi-task run has one phase, got {E.shape[0]}')
    if multitask:  # one phase trains everything
        summary.update(own_phase=summary['final_success'], forgetting=None, max_forgetting=None)
        return summary
    diagonal = np.array([E[k, k] for k in range(last + 1)])
    summary['own_phase'] = _mean_or_none(diagonal)
    summary['forgetting'] = _mean_or_none(diagonal[:last] - final_row[:last])
    # nanmax over [k, L-1] ignores phases without an evaluation; an all-NaN column stays NaN.
    peaks = np.array([np.nan if np.isnan(E[k:last, k]).all() else np.nanmax(E[k:last, k])
                      for k in range(last)])
    summary['max_forgetting'] = _mean_or_none(peaks - final_row[:last])
    return summary


def stream_average(curve: Sequence[float] | np.ndarray) -> float | None:
    """Mean of the overall success over all periodic evaluations of a run (NaNs ignored)."""
    curve = np.asarray(curve, dtype=float)
    if curve.ndim != 1:
        raise ValueError(f'expected a 1-d curve of overall success values, got shape {curve.shape}')
    return _mean_or_none(curve)


def cluster_purity(labels: Sequence[int] | np.ndarray, tasks: Sequence[int] | np.ndarray) -> float:
    """Fraction of points whose cluster's majority task is their own task (1 = each cluster holds a
    single task; a single cluster over T balanced tasks gives 1/T). Splitting a task over several
    clusters is not penalised: pair it with the number of components."""
    labels, tasks = np.asarray(labels).ravel(), np.asarray(tasks).ravel()
    if labels.size == 0 or labels.size != tasks.size:
        raise ValueError(f'labels and tasks must be non-empty and equally long, got {labels.size} '
                         f'and {tasks.size}')
    _, label_ids = np.unique(labels, return_inverse=True)
    _, task_ids = np.unique(tasks, return_inverse=True)
    table = np.zeros((label_ids.max() + 1, task_ids.max() + 1), dtype=np.int64)
    np.add.at(table, (label_ids, task_ids), 1)
    return float(table.max(axis=1).sum() / labels.size)
