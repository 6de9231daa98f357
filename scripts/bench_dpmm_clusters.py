"""How many DPMM clusters would a lifelong run have found at each phase end under other DPMM options?

    .venv/bin/python scripts/bench_dpmm_clusters.py RUN [--options 'sF=0.03;sF=0.1'] [--seeds 0,1,2]
        [--batch 3000] [--backend sklearn] [--fit-z sample|mean]

LEGION wants one cluster per skill: K = tasks seen after every phase. For each phase checkpoint of
RUN (checkpoints/phase_P.pt) this encodes a balanced sample of the replayed rows of tasks 0..P (from
RUN's last.pt, which holds the whole replay: every earlier task's rows are exactly those it had at
phase P's end) with phase P's live encoder, as a refit during training does, fits a fresh DPMM per
option set and seed, and reports K and cluster purity (clusters of mu against task ids, on a second
balanced sample), next to what the run itself recorded. One JSON line per option set; a table at the
end. Offline and read-only: the run is not changed.
"""
import argparse
import json
import re

import numpy as np
import torch

from legion_core.checkpoint import find_checkpoint, load_checkpoint
from legion_core.dpmm import make_dpmm
from legion_core.metrics import cluster_purity
from legion_core.policy import policy_from_state


def parse_options(text: str) -> list[dict]:
    """'sF=0.03,gamma0=1;sF=0.1' -> [{'sF': 0.03, 'gamma0': 1.0}, {'sF': 0.1}] ('' is the run's own)."""
    sets = []
    for chunk in text.split(';'):
        options = {}
        for pair in filter(None, chunk.split(',')):
            key, _, value = pair.partition('=')
            options[key.strip()] = int(value) if re.fullmatch(r'-?\d+', value.strip()) else float(value)
        sets.append(options)
    return sets


def balanced(task: torch.Tensor, tasks: int, size: int, generator: torch.Generator,
             newest_first: int | None = None) -> torch.Tensor:
    """Row indices: ``size`` rows split equally over tasks 0..tasks-1, drawn with replacement; the last
    task's from its first ``newest_first`` rows only, when given (the replay is in the order written)."""
    share, extra = divmod(size, tasks)
    parts = []
    for k in range(tasks):
        rows = torch.nonzero(task == k).flatten()
        if k == tasks - 1 and newest_first:
            rows = rows[:newest_first]
        parts.append(rows[torch.randint(len(rows), (share + (k < extra),), generator=generator)])
    return torch.cat(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run', help='a lifelong run directory with checkpoints/phase_*.pt and last.pt')
    parser.add_argument('--options', default='', help="';'-separated option sets of the DPMM backend, "
                        "each 'key=value,...' over the run's own options ('' alone: the run's)")
    parser.add_argument('--seeds', default='0,1,2', help='fit seeds per phase and option set')
    parser.add_argument('--batch', type=int, default=None,
                        help="rows per fit (default: the run's dpmm.batch)")
    parser.add_argument('--backend', default=None, help="DPMM backend (default: the run's)")
    parser.add_argument('--current-rows', type=int, default=None,
                        help="the phase's own task contributes only its first N rows: what the run's refit "
                             "at dpmm.start local steps saw (default: all of them, as at the phase end)")
    parser.add_argument('--fit-z', choices=('sample', 'mean'), default=None,
                        help="z the fit sees (default: the run's agent.dpmm_fit_z)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    last = load_checkpoint(args.run)
    config = last['config']
    storage, size = last['replay']['storage'], int(last['replay']['size'])
    obs_all, task_all = storage['obs'][:size], storage['task'][:size].long()
    backend = args.backend or config['dpmm']['backend']
    batch = args.batch or int(config['dpmm']['batch'])
    fit_z = args.fit_z or config['agent']['dpmm_fit_z']
    seeds = [int(s) for s in args.seeds.split(',')]
    run_options = dict(config['dpmm']['options']) if backend == config['dpmm']['backend'] else {}
    recorded = {entry['phase']: entry['num_components'] for entry in last['dpmm_log']}
    checkpoints = find_checkpoint(args.run).parent  # beside last.pt
    phases = sorted(int(m.group(1)) for m in (re.fullmatch(r'phase_(\d+)\.pt', p.name)
                                              for p in checkpoints.glob('phase_*.pt')) if m)
    encoders = {}
    for phase in phases:
        state = load_checkpoint(checkpoints / f'phase_{phase}.pt')
        state['agent'] = dict(state['agent'], policy_average=None)  # the live encoder, as a refit uses
        encoders[phase] = policy_from_state(state)

    results = []
    for overrides in parse_options(args.options):
        options = {**run_options, **overrides}
        row = {'backend': backend, 'options': options, 'K': {}, 'purity': {}}
        for phase in phases:
            policy, tasks = encoders[phase], phase + 1
            ks, purities = [], []
            for seed in seeds:
                generator = torch.Generator().manual_seed(seed)
                fit_rows, check_rows = (balanced(task_all, tasks, batch, generator, args.current_rows)
                                        for _ in range(2))
                with torch.no_grad():
                    mu, logvar = policy.encoder(obs_all[fit_rows].float(),
                                                policy.task_embeddings[task_all[fit_rows]])
                    z = mu if fit_z == 'mean' else policy.encoder.sample(mu, logvar)
                    check_mu, _ = policy.encoder(obs_all[check_rows].float(),
                                                 policy.task_embeddings[task_all[check_rows]])
                dpmm = make_dpmm(backend, **options)
                dpmm.fit(z.numpy().astype(np.float64), seed=seed)
                ks.append(int(dpmm.num_components))
                labels = dpmm.predict(check_mu.numpy().astype(np.float64))
                purities.append(round(float(cluster_purity(labels, task_all[check_rows].numpy())), 4))
            row['K'][phase], row['purity'][phase] = ks, min(purities)
        row['phases_with_K_equal_tasks'] = sum(all(k == p + 1 for k in ks) for p, ks in row['K'].items())
        print(json.dumps(row), flush=True)
        results.append(row)

    print(f"\nK at each phase end (tasks seen: {', '.join(str(p + 1) for p in phases)}); "
          f"fit z: {fit_z}, {batch} rows, seeds {seeds}")
    print('the run itself: ' + ' | '.join(str(recorded.get(p)) for p in phases))
    for row in results:
        cells = ' | '.join(','.join(map(str, row['K'][p])) for p in phases)
        print(f"{row['options']}: {cells}  -> K = tasks in {row['phases_with_K_equal_tasks']}/{len(phases)}"
              f" phases, purity >= {min(row['purity'].values()):.3f}")


if __name__ == '__main__':
    main()
