"""`legion report RUN_DIR`: figures and a markdown summary of a training run."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'report', help='success-matrix heatmap, learning curves and a markdown summary of a run',
        description=(
            'Read RUN_DIR/metrics.json (success matrix and summary numbers) and RUN_DIR/evals.jsonl '
            '(one line per task per periodic evaluation), both written by `legion train`, and write '
            'success_matrix.png, learning_curves.png and report.md. Summary numbers follow the '
            'LEGION paper: final success, own-phase success, forgetting, max-forgetting and stream '
            'average; missing ones are recomputed from the matrix. The file formats are documented '
            'in legion_core.report. Given a sweep directory instead (runs below it, e.g. from '
            '`legion train -m seed=0,1,2`), it writes sweep_report.md and sweep_curves.png: mean and '
            '95 %% confidence interval over the seeds of each group of runs, curves with bands, and '
            'the original\'s published numbers beside ours.'),
    )
    parser.add_argument('run_dir', metavar='RUN_DIR', help='run directory written by `legion train`, or a '
                        'directory of runs (a sweep)')
    parser.add_argument('--out', metavar='DIR', default=None,
                        help='where to write the report files (default: RUN_DIR)')
    parser.add_argument('--clips', action='store_true',
                        help='also run one deterministic evaluation episode per task with the run\'s policy '
                             'and its training settings and show each as a GIF in the report '
                             '(clips/<task>.gif; MuJoCo draws offscreen, no GPU or display needed; 5-15 s a '
                             'task on 2 cores). Off by default; one run directory only')
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from legion_core.report import METRICS_FILE, ReportError, write_report  # matplotlib only when run
    from legion_core.sweep_report import find_runs, write_sweep_report
    from legion_core.video import VideoError, use_offscreen_gl

    try:
        source = Path(args.run_dir)
        sweep = source.is_dir() and not (source / METRICS_FILE).exists() and find_runs(source)
        if sweep and args.clips:
            raise ReportError(f'{source}: --clips needs one run directory, not a sweep')
        if args.clips:
            use_offscreen_gl()  # before anything imports MuJoCo
        paths = write_sweep_report(source, args.out) if sweep else write_report(
            source, args.out, clips=args.clips, progress=args.clips)
    except (ReportError, VideoError) as error:
        print(f'legion report: {error}', file=sys.stderr)
        return 2
    for path in paths.values():
        print(path)
    return 0
