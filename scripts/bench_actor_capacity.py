"""Can an actor of a given size hold a lifelong run's finished tasks at once? A supervised fit, offline.

    .venv/bin/python scripts/bench_actor_capacity.py RUN_OR_CHECKPOINT [--sizes 128x1,300x3]
        [--steps 30000] [--eval door-open-v3,push-v3] [--episodes 20] [--horizon 150]

The run's finished tasks keep their skills by cloning their teachers' actions on their replayed rows
(agent.distill). This fits fresh actors of each size (WIDTHxHIDDEN_LAYERS, the run's actor body) to
exactly those targets: the rows' ``teacher_action`` at z = mu of the run's acting encoder, the
distill loss's inputs, with nothing else to learn. Per task it prints the squared distance to the
teachers on 5,000 held-out rows of each (and that of the run's own acting actor, for reference) and, for
``--eval`` tasks, the fitted actor's success on held-out episodes with the run's encoder: the step of
each episode's first success, so that a pace lost within ``--horizon`` shows. One JSON line per actor.
Reads the checkpoint only (last.pt, with its replay).
"""
import argparse
import json
import time

import torch

from legion_core.checkpoint import load_checkpoint
from legion_core.envs import evaluate
from legion_core.networks import Actor
from legion_core.policy import policy_from_state
from legion_core.trainer import EVAL_SEED_OFFSET

HELD_OUT = 5000
ROWS_PER_TASK = 40000
BATCH = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='a lifelong run directory or its last.pt (with the replay)')
    parser.add_argument('--sizes', default='128x1,256x2,300x3', help='actors to fit, WIDTHxLAYERS,...')
    parser.add_argument('--steps', type=int, default=30000, help='Adam steps per actor (batch 512)')
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--eval', default='', help='tasks to evaluate each fitted actor on')
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--horizon', type=int, default=None, help="episode length (default: the run's)")
    parser.add_argument('--rows', choices=('uniform', 'latest'), default='uniform',
                        help="each task's rows: drawn from all of them, or its newest (the end of its phase)")
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split('x')) for size in args.sizes.split(',')]
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    state = load_checkpoint(args.checkpoint)
    policy = policy_from_state(state)
    tasks, finished = list(state['tasks']), int(state['agent']['teacher_tasks'])
    if finished == 0:
        parser.error('no finished task yet: nothing carries a teacher action')
    train, test = finished_rows(state['replay'], finished, policy, args.seed, args.rows)
    names = tasks[:finished]

    def distance(actor) -> dict[str, float]:
        with torch.no_grad():
            return {names[k]: round(float((actor.mean_action(obs, z) - target).pow(2).sum(-1).mean()), 5)
                    for k, (obs, z, target) in enumerate(test)}

    print(json.dumps({'checkpoint': str(args.checkpoint), 'env_steps': state['position']['env_steps'],
                      'finished': names, 'rows': sum(len(rows[0]) for rows in train),
                      'acting_actor': f'{policy.config.actor_hidden}x{policy.config.actor_layers}',
                      'distance': distance(policy.actor)}), flush=True)
    obs, z, target = (torch.cat([rows[i] for rows in train]) for i in range(3))
    target = target.clamp(-0.999, 0.999)  # tanh reaches no further
    env = dict(policy.env, episode_length=args.horizon or policy.env['episode_length'])
    for hidden, layers in sizes:
        torch.manual_seed(args.seed)
        actor = Actor(policy.obs_dim, policy.config.latent_dim, policy.action_dim, hidden, layers,
                      policy.config.log_std_bounds, policy.config.actor_body)
        optimizer = torch.optim.Adam(actor.parameters(), args.lr)
        start = time.process_time()
        for _ in range(args.steps):
            batch = torch.randint(len(obs), (BATCH,))
            loss = (actor.mean_action(obs[batch], z[batch]) - target[batch]).pow(2).sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        record = {'actor': f'{hidden}x{layers}', 'parameters': sum(p.numel() for p in actor.parameters()),
                  'steps': args.steps, 'cpu_s': round(time.process_time() - start),
                  'distance': distance(actor)}
        policy.actor = actor.eval()
        for task in filter(None, args.eval.split(',')):
            result = evaluate(lambda o, task=task: policy.act(o, task), task, args.episodes,
                              embodiment=env['embodiment'], layout=env['layout'],
                              episode_length=env['episode_length'], goal=env['goal'],
                              seed=args.seed + EVAL_SEED_OFFSET)  # the run's own held-out episodes
            record.setdefault('success', {})[task] = {'rate': result['success_rate'],
                                                      'steps': result['episode_success_steps']}
        print(json.dumps(record), flush=True)


def finished_rows(replay: dict, finished: int, policy, seed: int, which: str = 'uniform'):
    """Per finished task: (obs, z = mu of the acting encoder, teacher action) of up to ROWS_PER_TASK
    replayed rows (``which``: drawn from all, or the newest), split into a training part and HELD_OUT
    held-out rows (a fifth if fewer), both in random order."""
    storage, size = replay['storage'], int(replay['size'])
    task = storage['task'][:size]
    capacity = int(replay['config']['capacity'])
    if which == 'latest' and replay['config']['policy'] != 'fifo':
        raise SystemExit(f"--rows latest needs a fifo replay (this one is {replay['config']['policy']})")
    # Slots in the order they were written: a fifo replay that wrapped starts at its write position.
    age = torch.arange(size)
    if size == capacity:
        age = (age - int(replay['position'])) % capacity
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for k in range(finished):
        rows = torch.nonzero(task == k).flatten()
        if which == 'latest':
            rows = rows[age[rows].argsort()[-ROWS_PER_TASK:]]
        rows = rows[torch.randperm(len(rows), generator=generator)[:ROWS_PER_TASK]]
        held_out = min(HELD_OUT, len(rows) // 5)  # a tiny run's few rows: a fifth
        if held_out == 0:
            raise SystemExit(f'task {k} has {len(rows)} replayed rows: too few to hold any out')
        obs = storage['obs'][rows].float()
        with torch.no_grad():
            z, _ = policy.encoder(obs, policy.task_embeddings[storage['task'][rows]])
        parts = (obs, z, storage['teacher_action'][rows].float())
        train.append(tuple(p[:-held_out] for p in parts))
        test.append(tuple(p[-held_out:] for p in parts))
    return train, test


if __name__ == '__main__':
    main()
