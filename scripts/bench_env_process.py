"""Wall milliseconds per env step of `legion train` with the env in-process and in a worker process
(`train.env_process`), alternating side by side; prints one JSON object with the medians.

    .venv/bin/python scripts/bench_env_process.py [EMBODIMENT=twin] [STEPS=1500] [ROUNDS=2]

One task (window-close), one copy, the defaults otherwise; each measurement follows 400 steps (warm-up
done, updates running) and includes the env's construction (a worker's start). Pause other jobs first.
"""
import json
import statistics
import sys
import tempfile
import time

if __name__ == '__main__':  # the worker process is spawned: it imports this file again
    import torch

    from legion_core.config import compose_config
    from legion_core.trainer import Trainer

    torch.set_num_threads(1)
    embodiment = sys.argv[1] if len(sys.argv) > 1 else 'twin'
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    ms = {False: [], True: []}
    for r in range(rounds):
        for in_worker in (False, True):
            cfg = compose_config([f'env.embodiment={embodiment}', 'stream.tasks=[window-close-v3]',
                                  'stream.name=bench', 'train.warmup_steps=300', 'train.eval_every=0',
                                  'train.checkpoint_every=0', 'train.log_every=100000',
                                  f'train.env_process={str(in_worker).lower()}', 'replay.capacity=20000',
                                  f'seed={r}', 'device=cpu'])
            with tempfile.TemporaryDirectory() as run_dir:
                trainer = Trainer(cfg, run_dir, progress=False)
                trainer.run(max_env_steps=400, checkpoint_at_stop=False)
                start = time.perf_counter()
                trainer.run(max_env_steps=steps, checkpoint_at_stop=False)
                ms[in_worker].append((time.perf_counter() - start) / steps * 1e3)
            print(f'round {r} env_process={in_worker}: {ms[in_worker][-1]:.2f} ms/step', file=sys.stderr)
    here, there = statistics.median(ms[False]), statistics.median(ms[True])
    print(json.dumps({'embodiment': embodiment, 'steps': steps, 'rounds': rounds,
                      'ms_per_step_in_process': round(here, 2), 'ms_per_step_env_process': round(there, 2),
                      'speedup': round(here / there, 3)}))
