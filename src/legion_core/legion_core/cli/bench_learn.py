"""`legion bench learn`: a short lifelong stream that shows learning, forgetting and the DPMM on a CPU.

The stream and sizes are the ``bench_learn`` preset (config/train/preset/bench_learn.yaml): reach ->
drawer-close -> button-press-topdown, 15,000 env steps per task, 128-wide networks, one update per
env step, finished tasks kept by cloning their end-of-phase actions (``agent.distill``). It is a
benchmark (minutes of CPU), not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'learn', help='a short lifelong stream on the CPU: success, forgetting, DPMM K (JSON)',
        description=('Train LEGION on a short lifelong stream (preset bench_learn: reach -> drawer-close '
                     '-> button-press-topdown) and print one JSON object with the final success, '
                     'forgetting, the success matrix and the DPMM\'s number of components and cluster '
                     'purity per phase. Takes about 30 minutes on 2 CPU cores. Extra KEY=VALUE '
                     'arguments override the preset (e.g. train.steps_per_task=10000).'))
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE', help='Hydra overrides of the preset')
    parser.add_argument('--run-dir', default=None,
                        help='where to write the run (default: a new temporary directory)')
    parser.add_argument('--progress', action='store_true', help='show a progress bar on stderr')
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from legion_core.config import compose_config, to_container, validate

    try:
        cfg = compose_config(['preset=bench_learn', *args.overrides])
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        print(f'legion bench learn: bad override: {error}', file=sys.stderr)
        return 2
    problems = validate(cfg)
    if problems:
        print('legion bench learn: invalid configuration:\n' + '\n'.join(f'  - {p}' for p in problems),
              file=sys.stderr)
        return 2
    from legion_core.trainer import Trainer

    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix='legion-bench-learn-'))
    trainer = Trainer(to_container(cfg), run_dir, progress=args.progress)
    metrics = trainer.run()
    keep = ('tasks', 'final_success', 'per_task_final', 'forgetting', 'max_forgetting', 'own_phase',
            'stream_average', 'success_matrix', 'wall_time_s', 'env_steps', 'updates')
    result = {k: metrics[k] for k in keep}
    result['dpmm'] = [{'phase': d['phase'], 'num_components': d['num_components'], 'purity': d['purity']}
                      for d in metrics['dpmm']]
    result['env_steps_per_s'] = metrics['env_steps'] / max(metrics['wall_time_s'], 1e-9)
    result['run_dir'] = str(run_dir)
    result['config'] = {'steps_per_task': cfg.train.steps_per_task, 'num_envs': cfg.train.num_envs,
                        'hidden': cfg.agent.actor_hidden, 'batch_size': cfg.agent.batch_size,
                        'replay': cfg.replay.policy, 'dpmm': cfg.dpmm.backend, 'seed': cfg.seed}
    print(json.dumps(result))
    return 0
