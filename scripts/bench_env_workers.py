"""Env steps per second of `legion train` with the training copies stepped by 0, 1, 2, ... worker
processes (`train.env_workers`), the settings alternating side by side; prints one JSON object with the
medians and the ratios to in-process (workers 0).

    .venv/bin/python scripts/bench_env_workers.py [--embodiment twin] [--workers 0,1,2] [--num-envs 2]
        [--steps 1500] [--rounds 3]

One task (window-close), the defaults otherwise. Each measurement follows 400 env steps (warm-up and
its burst of updates done) and times the steady state: from the first vector step of the measured run
to its last, so the env's construction (a worker's start) is not in it. Besides wall-clock env steps per
second it reports the learner process's own CPU milliseconds per env step (``learner_cpu_ms_per_step``):
what stays on the learner's core when the workers take the env steps, which other jobs on a shared
machine do not inflate.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

if __name__ == '__main__':  # the workers are spawned: they import this file again
    import torch

    from legion_core.config import compose_config
    from legion_core.trainer import Trainer

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--embodiment', default='twin')
    parser.add_argument('--workers', default='0,1,2', help='comma-separated worker counts')
    parser.add_argument('--num-envs', type=int, default=2)
    parser.add_argument('--steps', type=int, default=1500, help='measured env steps per run')
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    counts = [int(w) for w in args.workers.split(',')]
    rates: dict[int, list[float]] = {w: [] for w in counts}
    cpu_ms: dict[int, list[float]] = {w: [] for w in counts}
    for r in range(args.rounds):
        for workers in counts:
            cfg = compose_config([f'env.embodiment={args.embodiment}', 'stream.tasks=[window-close-v3]',
                                  'stream.name=bench', 'train.warmup_steps=300', 'train.eval_every=0',
                                  'train.checkpoint_every=0', 'train.log_every=100000',
                                  f'train.num_envs={args.num_envs}', f'train.env_workers={workers}',
                                  'replay.capacity=20000', f'seed={r}', 'device=cpu'])
            with tempfile.TemporaryDirectory() as run_dir:
                trainer = Trainer(cfg, run_dir, progress=False)
                trainer.run(max_env_steps=400, checkpoint_at_stop=False)
                stamps: list[tuple[float, float]] = []
                step_envs = trainer._step_envs

                def timed(*a, step_envs=step_envs, stamps=stamps, **k):
                    if not stamps:
                        stamps.append((time.perf_counter(), time.process_time()))
                    out = step_envs(*a, **k)
                    stamps.append((time.perf_counter(), time.process_time()))
                    return out

                trainer._step_envs = timed
                trainer.run(max_env_steps=args.steps, checkpoint_at_stop=False)
                steps = (len(stamps) - 1) * args.num_envs
                rates[workers].append(steps / (stamps[-1][0] - stamps[0][0]))
                cpu_ms[workers].append((stamps[-1][1] - stamps[0][1]) / steps * 1e3)
            print(f'round {r} env_workers={workers}: {rates[workers][-1]:.1f} env steps/s, learner '
                  f'{cpu_ms[workers][-1]:.2f} CPU ms/step', file=sys.stderr)
    medians = {w: statistics.median(v) for w, v in rates.items()}
    print(json.dumps({
        'embodiment': args.embodiment, 'num_envs': args.num_envs, 'steps': args.steps, 'rounds': args.rounds,
        'env_steps_per_s': {str(w): round(v, 1) for w, v in medians.items()},
        'ratio_to_in_process': {str(w): round(v / medians[counts[0]], 3) for w, v in medians.items()},
        'learner_cpu_ms_per_step': {str(w): round(statistics.median(v), 2) for w, v in cpu_ms.items()},
        'runs': {str(w): [round(x, 1) for x in v] for w, v in rates.items()},
        'runs_learner_cpu_ms': {str(w): [round(x, 2) for x in v] for w, v in cpu_ms.items()},
        'load_average_1min': os.getloadavg()[0]}))
