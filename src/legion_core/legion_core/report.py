"""Reports of a training run: success-matrix heatmap, learning curves and a markdown summary.

A run directory holds two files written by the trainer.

``metrics.json`` — one JSON object, written at the end of the run (and may be rewritten after each
phase)::

    {
      "tasks": ["reach-v3", ...],            # stream order; column k of the matrix is tasks[k]
      "success_matrix": [[0.9, 0.0, ...], ...],  # phase x task, E[j][k] at the end of phase j;
                                             # null = not evaluated
      "final_success": 0.82,                 # the summary numbers of legion_core.metrics.summarise
      "forgetting": 0.03,                    # (null where undefined, e.g. forgetting in multi-task)
      "max_forgetting": 0.10,
      "own_phase": 0.85,
      "stream_average": 0.48,                # mean overall success over all periodic evaluations
      "dpmm": [{"phase": 0, "num_components": 1, "purity": 1.0}, ...],  # after each phase
      "phases": [{"phase": 0, "task": "reach-v3", "local_steps": 30000, "solved": true,
                  "env_steps": 30000}, ...],  # optional: each finished phase's length
      "frozen_skills": ["reach-v3"],         # optional: tasks acting with their phase-end networks
      "wall_time_s": 3600.0,
      "env_steps": 1500000,
      "mode": "lifelong",                    # or "multitask"
      "config": {...}                        # the resolved training configuration
    }

``tasks`` and ``success_matrix`` are required (the matrix has one row per finished phase, none
before the first phase ends, and one column per task); every other key may be missing or null, and
the summary numbers are then recomputed from the matrix (``stream_average`` from ``evals.jsonl``).
Without ``mode``, a one-row matrix over several tasks is read as a multi-task run.

``evals.jsonl`` — one JSON object per line, one line per task per periodic evaluation::

    {"env_steps": 10000, "phase": 0, "task": "reach-v3", "success": 0.9, "return": 1234.5}

``env_steps`` counts training env steps since the start of the run, ``phase`` is the phase being
trained when the evaluation ran, ``success`` the fraction of successful evaluation episodes and
``return`` their mean return (under ``train.eval_until_success`` summed up to each episode's first
success, so a learnt task's return falls as it succeeds sooner); ``"frozen": true`` marks a frozen
skill's row, its phase-end evaluation standing for it (the same weights on the same episodes). It may
be empty (no periodic evaluation).

``write_report(run_dir, out_dir)`` writes ``success_matrix.png``, ``learning_curves.png`` and
``report.md`` into ``out_dir`` (default: ``run_dir``); with ``clips=True`` also one GIF per task of one
deterministic evaluation episode of the run's policy (``clips/<task>.gif``, :mod:`legion_core.clips`),
shown in the report.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from legion_core.metrics import stream_average, summarise

METRICS_FILE = 'metrics.json'
EVALS_FILE = 'evals.jsonl'
CONFIG_CHANGES_FILE = 'config_changes.jsonl'  # settings changed at a resume, phases ended by hand
SUMMARY_KEYS = ('final_success', 'own_phase', 'forgetting', 'max_forgetting', 'stream_average')
EVAL_KEYS = {'env_steps': int, 'phase': int, 'task': str, 'success': float, 'return': float}


class ReportError(ValueError):
    """A run directory that cannot be reported on; the message names the file and the problem."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_metrics(path: Path) -> dict[str, Any]:
    """Read and check ``metrics.json``; the matrix comes back as a float array with NaN for null."""
    if not path.is_file():
        raise ReportError(f'{path}: file not found (the trainer writes it at the end of a run)')
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f'{path}: not valid JSON: {error}') from error
    if not isinstance(data, dict):
        raise ReportError(f'{path}: expected a JSON object, got {type(data).__name__}')
    tasks = data.get('tasks')
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ReportError(f'{path}: "tasks" must be a non-empty list of task names')
    rows = data.get('success_matrix')
    if not isinstance(rows, list):
        raise ReportError(f'{path}: "success_matrix" must be a list of rows (phase x task)')
    for j, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(tasks):
            raise ReportError(f'{path}: success_matrix row {j} must be a list of {len(tasks)} values '
                              f'(one per task), got {row!r}')
        for value in row:
            if value is not None and not (_is_number(value) and 0.0 <= value <= 1.0):
                raise ReportError(f'{path}: success_matrix row {j} holds {value!r}; expected a success '
                                  'rate in [0, 1] or null')
    if len(rows) > len(tasks):
        raise ReportError(f'{path}: {len(rows)} phases for {len(tasks)} tasks')
    for key in (*SUMMARY_KEYS, 'wall_time_s', 'env_steps'):
        if data.get(key) is not None and not _is_number(data[key]):
            raise ReportError(f'{path}: "{key}" must be a number or null, got {data[key]!r}')
    dpmm = data.get('dpmm') or []
    if not isinstance(dpmm, list) or not all(isinstance(d, dict) for d in dpmm):
        raise ReportError(f'{path}: "dpmm" must be a list of objects {{"phase", "num_components", '
                          '"purity"}}')
    data['dpmm'] = dpmm
    data['success_matrix'] = np.array([[np.nan if v is None else float(v) for v in row] for row in rows],
                                      dtype=float).reshape(len(rows), len(tasks))
    if data.get('mode') is not None and not isinstance(data['mode'], str):
        raise ReportError(f'{path}: "mode" must be "lifelong", "multitask" or null, got {data["mode"]!r}')
    # A run whose mode is not recorded: a single row for several tasks reads as multi-task.
    data['multitask'] = data.get('mode') == 'multitask' if data.get('mode') else (
        len(rows) == 1 and len(tasks) > 1)
    if data['multitask'] and len(rows) > 1:
        raise ReportError(f'{path}: a multi-task run has one success-matrix row, got {len(rows)}')
    return data


def load_evals(path: Path) -> list[dict[str, Any]]:
    """Read and check ``evals.jsonl`` (one object per line, blank lines skipped)."""
    if not path.is_file():
        raise ReportError(f'{path}: file not found (the trainer appends one line per task per '
                          'periodic evaluation)')
    evals = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ReportError(f'{path}, line {number}: not valid JSON: {error}') from error
        if not isinstance(record, dict):
            raise ReportError(f'{path}, line {number}: expected a JSON object')
        for key, kind in EVAL_KEYS.items():
            value = record.get(key)
            valid = isinstance(value, str) if kind is str else _is_number(value) and (
                kind is float or float(value).is_integer())
            if not valid:
                raise ReportError(f'{path}, line {number}: "{key}" must be a{"n" if kind is int else ""} '
                                  f'{kind.__name__}, got {value!r}')
        evals.append(record)
    return evals


def task_series(evals: Sequence[dict[str, Any]], tasks: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps [E], success [E, T]) per evaluation and task, NaN where an evaluation left a task out
    (``train.eval_tasks: seen`` evaluates inside a phase only the tasks seen so far). An evaluation is
    identified by (phase, env_steps): the last evaluation of a phase and the first of the next may share
    a step count, and both count."""
    by_eval: dict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    for record in evals:
        by_eval[int(record['phase']), int(record['env_steps'])][record['task']] = float(record['success'])
    keys = sorted(by_eval, key=lambda key: (key[1], key[0]))
    steps = np.array([step for _phase, step in keys], dtype=np.int64)
    success = np.array([[by_eval[key].get(t, np.nan) for t in tasks] for key in keys], dtype=float)
    return steps, success.reshape(len(keys), len(tasks))


def overall_curve(evals: Sequence[dict[str, Any]], tasks: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps, mean success over ``tasks``) of the evaluations that cover every task: a mean over
    the tasks seen so far would rise and fall with the set of tasks, not with the policy (the trainer's
    stream average counts the same evaluations)."""
    steps, success = task_series(evals, tasks)
    complete = ~np.isnan(success).any(axis=1)
    return steps[complete], success[complete].mean(axis=1)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'n/a'
    if isinstance(value, float):
        return f'{value:.{digits}f}'
    return str(value)


def _short(task: str) -> str:
    return task.removesuffix('-v3')


def plot_success_matrix(matrix: np.ndarray, tasks: Sequence[str], path: Path, title: str = '',
                        multitask: bool = False) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    phases, num_tasks = matrix.shape
    if phases == 0:  # no phase has ended yet: an empty frame that says so
        fig, ax = plt.subplots(figsize=(1.0 + 0.75 * num_tasks, 2.5), dpi=110)
        ax.text(0.5, 0.5, 'no phase finished yet', ha='center', va='center', transform=ax.transAxes)
        ax.set_xticks(np.arange(num_tasks) / max(num_tasks - 1, 1), [_short(t) for t in tasks], rotation=45,
                      ha='right')
        ax.set_yticks([])
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * num_tasks, 1.2 + 0.6 * phases), dpi=110)
    image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap='viridis', aspect='auto')
    ax.set_facecolor('#dddddd')  # cells never evaluated
    for j in range(phases):
        for k in range(num_tasks):
            if not np.isnan(matrix[j, k]):
                ax.text(k, j, f'{matrix[j, k]:.2f}', ha='center', va='center', fontsize=8,
                        color='black' if matrix[j, k] > 0.6 else 'white')
    ax.set_xticks(range(num_tasks), [_short(t) for t in tasks], rotation=45, ha='right')
    ylabels = ['multi-task'] if multitask else [f'phase {j}: {_short(tasks[j])}' for j in range(phases)]
    ax.set_yticks(range(phases), ylabels)
    ax.set_xlabel('evaluated task')
    ax.set_ylabel('end of phase (task trained)')
    ax.set_title(title or 'success matrix E[phase, task]')
    fig.colorbar(image, ax=ax, label='success rate', fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_learning_curves(evals: Sequence[dict[str, Any]], tasks: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    if not evals:
        ax.text(0.5, 0.5, f'no periodic evaluations in {EVALS_FILE}', ha='center', va='center',
                transform=ax.transAxes)
    else:
        colours = plt.get_cmap('tab10' if len(tasks) <= 10 else 'tab20')
        steps, success = task_series(evals, tasks)
        for k, task in enumerate(tasks):
            if not np.isnan(success[:, k]).all():
                # A NaN (evaluation without this task) breaks the line: no straight line across a gap.
                ax.plot(steps, success[:, k], lw=1.0, alpha=0.8, marker='.', ms=3,
                        color=colours(k % colours.N), label=_short(task))
        steps, means = overall_curve(evals, tasks)
        ax.plot(steps, means, lw=2.8, color='black', marker='o', ms=4, label='mean over tasks')
        # A phase boundary is the first evaluation that belongs to a new phase.
        first_step: dict[int, int] = {}
        for record in evals:
            phase = int(record['phase'])
            first_step[phase] = min(first_step.get(phase, record['env_steps']), record['env_steps'])
        for phase in sorted(first_step)[1:]:
            ax.axvline(first_step[phase], color='grey', ls='--', lw=0.8)
            ax.text(first_step[phase], 1.02, f'phase {phase}', rotation=90, va='bottom', ha='center',
                    fontsize=7, color='grey', transform=ax.get_xaxis_transform())
        ax.legend(loc='center left', bbox_to_anchor=(1.01, 0.5), fontsize=8)
    ax.set_xlabel('training env steps')
    ax.set_ylabel('success rate')
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summary_numbers(metrics: dict[str, Any], evals: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The summary of a run: the trainer's numbers where it wrote them, else recomputed."""
    matrix = metrics['success_matrix']
    computed = summarise(matrix, multitask=metrics['multitask']) if len(matrix) else {}
    computed['stream_average'] = stream_average(overall_curve(evals, metrics['tasks'])[1]) if evals else None
    return {key: metrics[key] if metrics.get(key) is not None else computed.get(key) for key in SUMMARY_KEYS}


def load_config_changes(path: Path) -> list[dict[str, Any]]:
    """The records of ``config_changes.jsonl`` (settings changed at a resume, phases ended by hand);
    [] without the file. Lines that are not JSON objects are skipped: the report is for reading."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding='utf-8').splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _ended(phase: dict[str, Any], by_hand: set) -> str:
    if phase.get('phase') in by_hand or phase.get('ended') == 'by hand':
        return 'by hand (--end-phase)'
    if phase.get('ended') == 'stalled':
        return 'stalled on saved steps'
    return 'solved' if phase.get('solved') else 'at its budget'


def _change(record: dict[str, Any]) -> str:
    ended = record.get('ended_phase')
    if isinstance(ended, dict):
        task = _short(str(ended.get('task', '')))
        return (f'phase {_fmt(ended.get("phase"))} ({task}) ended by hand after '
                f'{_fmt(ended.get("local_steps"))} steps')
    changed = record.get('changed')
    if isinstance(changed, dict):
        return ', '.join(f'`{key}` {json.dumps(pair[0])} → {json.dumps(pair[1])}' if isinstance(pair, list)
                         and len(pair) == 2 else f'`{key}`' for key, pair in changed.items())
    return json.dumps(record)


def _clip_lines(clips: Sequence[dict[str, Any]], out: Path) -> list[str]:
    lines = ['## Evaluation clips', '', 'One deterministic episode per task with the run\'s policy and its '
             'training settings (`legion report --clips`).', '']
    for clip in clips:
        ended = (f'succeeded at step {clip["success_step"]}' if clip['success']
                 else f'no success in {clip["steps"]} steps')
        path = Path(clip['clip'])
        link = path.relative_to(out).as_posix() if path.is_relative_to(out) else path.as_posix()
        lines += [f'**{clip["task"]}**: {ended}', '', f'![{clip["task"]}]({link})', '']
    return lines


def markdown_report(metrics: dict[str, Any], evals: Sequence[dict[str, Any]], run_dir: Path,
                    clips: Sequence[dict[str, Any]] = (), out_dir: Path | None = None) -> str:
    tasks, matrix = metrics['tasks'], metrics['success_matrix']
    summary = summary_numbers(metrics, evals)
    lines = [f'# LEGION run report: `{run_dir.name}`', '']
    facts = [('mode', metrics.get('mode')), ('tasks', len(tasks)), ('phases', matrix.shape[0]),
             ('env steps', metrics.get('env_steps')), ('periodic evaluations',
                                                        len({(r['phase'], r['env_steps']) for r in evals})),
             ('wall time', None if metrics.get('wall_time_s') is None
              else f'{metrics["wall_time_s"] / 3600:.2f} h ({metrics["wall_time_s"]:.0f} s)')]
    lines += ['| | |', '|---|---|'] + [f'| {name} | {_fmt(value)} |' for name, value in facts] + ['']
    lines += ['## Summary', '', '| metric | value |', '|---|---|']
    lines += [f'| {key.replace("_", " ")} | {_fmt(summary[key])} |' for key in SUMMARY_KEYS]
    lines += ['', 'Definitions (legion-original.md §6.2): final = mean of the last row; own-phase = mean '
              'of E[k,k]; forgetting = mean over k < last of E[k,k] − E[last,k]; max-forgetting = mean '
              'of max_{j∈[k,last)} E[j,k] − E[last,k]; stream average = mean overall success over all '
              'periodic evaluations.', '']
    lines += ['## Success matrix', '', 'Rows: end of phase (task trained). Columns: evaluated task.', '']
    frozen = metrics.get('frozen_skills') or []
    if frozen:  # agent.freeze_skills: these columns keep their phase-end value by construction
        lines += [f'Frozen skills (`agent.freeze_skills`): {", ".join(_short(t) for t in frozen)} act with '
                  'the networks that solved them at their phase end, so their columns keep that value; '
                  '`legion eval RUN --shared` shows what the shared networks alone kept.', '']
    header = ['phase'] + [_short(t) for t in tasks] + ['mean']
    lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for j, row in enumerate(matrix):
        label = 'multi-task' if metrics['multitask'] else f'{j}: {_short(tasks[j])}'
        mean = float(np.nanmean(row)) if not np.isnan(row).all() else None
        lines.append('| ' + ' | '.join([label, *(_fmt(float(v), 2) for v in row), _fmt(mean)]) + ' |')
    lines.append('')
    phases = [p for p in metrics.get('phases') or [] if isinstance(p, dict)]
    changes = load_config_changes(run_dir / CONFIG_CHANGES_FILE)
    by_hand = {c['ended_phase'].get('phase') for c in changes if isinstance(c.get('ended_phase'), dict)}
    if phases:  # train.advance_on_success: how long each phase ran and whether it ended solved
        lines += ['## Phases', '', '| phase | task | env steps in the phase | ended | env steps at its end |',
                  '|---|---|---|---|---|']
        lines += [f'| {_fmt(p.get("phase"))} | {_short(str(p.get("task", "")))} | '
                  f'{_fmt(p.get("local_steps"))} | {_ended(p, by_hand)} | '
                  f'{_fmt(p.get("env_steps"))} |' for p in phases]
        lines.append('')
    if changes:  # legion train --resume RUN KEY=VALUE / --end-phase
        lines += ['## Changed on the way', '', f'From `{CONFIG_CHANGES_FILE}`.', '',
                  '| env steps | change |', '|---|---|']
        lines += [f'| {_fmt(c.get("env_steps"))} | {_change(c)} |' for c in changes]
        lines.append('')
    if metrics['dpmm']:
        lines += ['## DPMM', '', '| phase | components | purity |', '|---|---|---|']
        lines += [f'| {_fmt(d.get("phase"))} | {_fmt(d.get("num_components"))} | {_fmt(d.get("purity"))} |'
                  for d in metrics['dpmm']]
        lines.append('')
    lines += ['## Figures', '', '![success matrix](success_matrix.png)', '',
              '![learning curves](learning_curves.png)', '']
    if clips:
        lines += _clip_lines(clips, Path(out_dir) if out_dir is not None else run_dir)
    config = metrics.get('config')
    if config:
        lines += ['## Configuration', '', '```json', json.dumps(config, indent=2, sort_keys=True), '```', '']
    return '\n'.join(lines)


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *, clips: bool = False,
                 progress: bool = False) -> dict[str, Path]:
    """Read ``run_dir``'s metrics.json and evals.jsonl and write the report files into ``out_dir``;
    ``clips``: also one evaluation clip per task (needs the run's policy, offscreen OpenGL)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f'{run_dir}: not a directory (expected a run directory with {METRICS_FILE} and '
                          f'{EVALS_FILE})')
    metrics = load_metrics(run_dir / METRICS_FILE)
    evals = load_evals(run_dir / EVALS_FILE)
    unknown = sorted({r['task'] for r in evals} - set(metrics['tasks']))
    if unknown:
        raise ReportError(f'{run_dir / EVALS_FILE}: tasks {unknown} are not in {METRICS_FILE} "tasks"')
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    paths = {'success_matrix': out / 'success_matrix.png', 'learning_curves': out / 'learning_curves.png',
             'report': out / 'report.md'}
    final = summary_numbers(metrics, evals)['final_success']
    plot_success_matrix(metrics['success_matrix'], metrics['tasks'], paths['success_matrix'],
                        title=f'success matrix (final {_fmt(final)})', multitask=metrics['multitask'])
    plot_learning_curves(evals, metrics['tasks'], paths['learning_curves'])
    made = []
    if clips:
        from legion_core.clips import write_clips

        try:
            made = write_clips(run_dir, out, progress=progress)
        except (FileNotFoundError, ValueError) as error:  # no checkpoint or policy in the run directory
            raise ReportError(f'{run_dir}: no evaluation clips: {error}') from error
        paths.update({f'clip {c["task"]}': Path(c['clip']) for c in made})
    paths['report'].write_text(markdown_report(metrics, evals, run_dir, made, out))
    return paths
