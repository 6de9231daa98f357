"""Report of a sweep: many runs of `legion train` (seeds, stream orders) summarised with confidence.

A sweep directory is any directory whose subdirectories (at any depth) are run directories with a
``metrics.json`` (``legion train -m seed=0,1,2 stream.order=curriculum,random`` writes
``runs/multirun/<date>/<time>/<job>/``). Runs are grouped by what they were run with, apart from the
seed: the stream, its order, the mode and the embodiment. For each group:

- mean and 95 % confidence interval (Student's t over the seeds) of final success, forgetting,
  own-phase success and stream average (recomputed from the success matrix where a run left them
  out, as ``legion report`` does);
- the mean overall success curve with its 95 % band, on the evaluation steps the runs share;
- the original's published numbers beside ours where the original reported that group
  (legion-original.md §6.1-6.2: legion10 on the KUKA, curriculum, random and reverse orders).

``write_sweep_report(sweep_dir, out_dir)`` writes ``sweep_report.md`` and ``sweep_curves.png``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from legion_core.report import (
    EVALS_FILE,
    METRICS_FILE,
    ReportError,
    _fmt,
    load_evals,
    load_metrics,
    overall_curve,
    summary_numbers,
)

METRICS = ('final_success', 'forgetting', 'own_phase', 'stream_average')
# legion-original.md §6.1 (7 seeds) and §6.2 (5 logs each): mean ± std over seeds, as published.
PUBLISHED = {
    ('legion10', 'curriculum'): {'final_success': '0.821 ± 0.052 (7 seeds)', 'stream_average': '0.476'},
    ('legion10', 'random'): {'final_success': '0.712 ± 0.117 (5 logs)', 'forgetting': '-0.047 ± 0.081',
                             'own_phase': '0.670'},
    ('legion10', 'reverse'): {'final_success': '0.572 ± 0.171 (5 logs)', 'forgetting': '0.084 ± 0.144',
                              'own_phase': '0.648'},
}


def find_runs(sweep_dir: Path) -> list[Path]:
    """The run directories below ``sweep_dir`` (those holding a metrics.json), in path order."""
    return sorted(path.parent for path in sweep_dir.rglob(METRICS_FILE) if path.parent != sweep_dir)


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """Mean and the half-width of its ``level`` confidence interval (Student's t); half-width None for
    fewer than two values."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None, None
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return mean, half


def group_key(metrics: dict[str, Any]) -> tuple[str, str, str, str]:
    """(stream, order, mode, embodiment) of a run, from its saved config."""
    config = metrics.get('config') or {}
    stream = config.get('stream') or {}
    return (str(stream.get('name', stream.get('tasks', '?'))), str(stream.get('order', 'curriculum')),
            str(metrics.get('mode') or config.get('train', {}).get('mode', '?')),
            str((config.get('env') or {}).get('embodiment', '?')))


def load_sweep(sweep_dir: Path) -> dict[tuple, list[dict[str, Any]]]:
    """Runs grouped by ``group_key``; each run: its dir, seed, summary numbers and overall curve."""
    runs = find_runs(sweep_dir)
    if not runs:
        raise ReportError(f'{sweep_dir}: no run directories (with {METRICS_FILE}) below it')
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        metrics = load_metrics(run / METRICS_FILE)
        evals = load_evals(run / EVALS_FILE) if (run / EVALS_FILE).is_file() else []
        steps, curve = overall_curve(evals, metrics['tasks']) if evals else (np.zeros(0), np.zeros(0))
        groups[group_key(metrics)].append({
            'dir': run, 'seed': (metrics.get('config') or {}).get('seed'),
            'complete': bool(metrics.get('complete', True)),
            'summary': summary_numbers(metrics, evals), 'steps': steps, 'curve': curve})
    return dict(groups)


def band(runs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps shared by every run's curve, the mean overall success there and its 95 % half-width."""
    shared = sorted(set.intersection(*(set(r['steps'].tolist()) for r in runs))) if runs else []
    means, halves = [], []
    for step in shared:
        # The last evaluation at a step counts (a phase's end and the next phase's start share one).
        values = [float(r['curve'][np.flatnonzero(r['steps'] == step)[-1]]) for r in runs]
        mean, half = mean_ci(values)
        means.append(mean)
        halves.append(0.0 if half is None else half)
    return np.asarray(shared), np.asarray(means), np.asarray(halves)


def markdown(groups: dict[tuple, list[dict[str, Any]]], sweep_dir: Path) -> str:
    lines = [f'# LEGION sweep report: `{sweep_dir.name}`', '',
             f'{sum(len(r) for r in groups.values())} runs in {len(groups)} group(s). Each cell: mean ± '
             'the half-width of the 95 % confidence interval over the group\'s runs (Student\'s t); the '
             'original\'s numbers (legion-original.md §6) are mean ± standard deviation as published.', '']
    for key, runs in groups.items():
        stream, order, mode, embodiment = key
        lines += [f'## {stream}, {order} order, {mode}, {embodiment} ({len(runs)} runs)', '',
                  '| metric | ours | original |', '|---|---|---|']
        published = PUBLISHED.get((stream, order), {}) if mode == 'lifelong' else {}
        for name in METRICS:
            mean, half = mean_ci([r['summary'].get(name) for r in runs])
            ours = 'n/a' if mean is None else _fmt(mean) + ('' if half is None else f' ± {half:.3f}')
            lines.append(f'| {name.replace("_", " ")} | {ours} | {published.get(name, "")} |')
        lines += ['', '| run | seed | complete | ' + ' | '.join(m.replace('_', ' ') for m in METRICS) + ' |',
                  '|---|---|---|' + '---|' * len(METRICS)]
        for r in runs:
            cells = [_fmt(r['summary'].get(m)) for m in METRICS]
            lines.append(f'| `{r["dir"].relative_to(sweep_dir)}` | {_fmt(r["seed"])} | '
                         f'{"yes" if r["complete"] else "no"} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    lines += ['![mean overall success with 95 % bands](sweep_curves.png)', '']
    return '\n'.join(lines)


def plot_bands(groups: dict[tuple, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    for key, runs in groups.items():
        steps, mean, half = band(runs)
        if not len(steps):
            continue
        line, = ax.plot(steps, mean, lw=2, label=f'{key[0]}, {key[1]} ({len(runs)} runs)')
        ax.fill_between(steps, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1), alpha=0.25,
                        color=line.get_color())
    ax.set_xlabel('training env steps')
    ax.set_ylabel('mean success over the stream\'s tasks')
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_sweep_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    sweep_dir = Path(sweep_dir)
    groups = load_sweep(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    paths = {'report': out / 'sweep_report.md', 'curves': out / 'sweep_curves.png'}
    plot_bands(groups, paths['curves'])
    paths['report'].write_text(markdown(groups, sweep_dir))
    return paths
