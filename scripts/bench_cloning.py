"""How far plain behaviour cloning of an embodiment's scripted experts goes, per task: the question
behind `train.demo_pretrain`. Prints one JSON line per task.

    .venv/bin/python scripts/bench_cloning.py [--tasks legion10] [--embodiment twin] [--episodes 20]
        [--steps 3000] [--eval-episodes 10] [--seed 0] [--episode-length 150]

Per task: ``--episodes`` expert episodes (random goals, seeded as `legion train` seeds its
demonstrations), an MLP (2 x 256, LayerNorm, ReLU, tanh output) fitted to their actions for ``--steps``
Adam steps (batch 256, lr 1e-3) on the full 39-d observation, then its deterministic actions on
``--eval-episodes`` held-out random-goal episodes. Numbers from one seed swing (docs/training.md).

``expert_memoryless``: the expert's own success on those episodes when it forgets everything between
steps (a fresh instance per step). A policy of the observation alone, as every cloned actor is, can
copy at most what the expert does without memory; where this is far below 1, the expert's success
rests on what it remembers (a phase, a counter) and cloning it is bound to miss.
"""
import argparse
import json
import time

import numpy as np
import torch

from legion_core.demos import DEMO_SEED_OFFSET, demonstrate, expert, expert_factory
from legion_core.envs import TaskVectorEnv, evaluate
from legion_core.networks import legion_body
from legion_core.tasks import resolve_stream

EVAL_SEED = 1_000_003  # apart from the demonstrations' seeds


def _mlp(obs_dim: int, action_dim: int) -> torch.nn.Sequential:
    # The agent's own 'layernorm' body (2 x 256 here), squashed as its actions are.
    return torch.nn.Sequential(legion_body(obs_dim, 256, 1, action_dim, 'layernorm'), torch.nn.Tanh())


def clone_task(task: str, embodiment: str, episodes: int, steps: int, eval_episodes: int,
               seed: int, episode_length: int = 150) -> dict:
    started = time.perf_counter()
    rows: dict[str, list] = {'obs': [], 'action': []}

    def store(obs, action, *_rest, **_named):
        rows['obs'].append(np.asarray(obs))
        rows['action'].append(np.asarray(action))

    kwargs = dict(embodiment=embodiment, layout='full39', episode_length=episode_length, goal='random',
                  seed=seed)
    env = TaskVectorEnv(task, 1, copy_seed=seed + DEMO_SEED_OFFSET, **kwargs)
    try:
        stats = demonstrate(env, expert(embodiment, task), episodes, 0, store)
    finally:
        env.close()
    demonstrated = time.perf_counter()
    obs = torch.as_tensor(np.concatenate(rows['obs']), dtype=torch.float32)
    action = torch.as_tensor(np.concatenate(rows['action']), dtype=torch.float32)
    torch.manual_seed(seed)
    net = _mlp(obs.shape[1], action.shape[1])
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(steps):
        index = torch.randint(len(obs), (256,))
        loss = (net(obs[index]) - action[index]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fitted = time.perf_counter()
    held_out = {**kwargs, 'seed': seed + EVAL_SEED}
    with torch.no_grad():
        result = evaluate(lambda o: net(torch.as_tensor(o, dtype=torch.float32)).numpy(), task,
                          eval_episodes, **held_out)
    evaluated = time.perf_counter()
    fresh = expert_factory(embodiment)
    memoryless = evaluate(lambda o: np.stack([fresh(task)(row) for row in o]), task, eval_episodes,
                          **held_out)
    return {'task': task, 'episodes': episodes, 'expert_successes': stats['successes'], 'rows': len(obs),
            'steps': steps, 'loss': round(float(loss.detach()), 5), 'success': result['success_rate'],
            'expert_memoryless': memoryless['success_rate'],
            'mean_return': round(result['mean_return'], 1), 'demonstrate_s': round(demonstrated - started, 1),
            'fit_s': round(fitted - demonstrated, 1), 'evaluate_s': round(evaluated - fitted, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tasks', default='legion10', help='a stream name or comma-separated tasks')
    parser.add_argument('--embodiment', default='twin')
    parser.add_argument('--episodes', type=int, default=20, help='expert episodes per task')
    parser.add_argument('--steps', type=int, default=3000, help='Adam steps of cloning')
    parser.add_argument('--eval-episodes', type=int, default=10)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--episode-length', type=int, default=150,
                        help='steps per episode (the twin preset: 200)')
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks = resolve_stream(args.tasks)
    for task in tasks:
        print(json.dumps(clone_task(task, args.embodiment, args.episodes, args.steps, args.eval_episodes,
                                    args.seed, args.episode_length)), flush=True)


if __name__ == '__main__':
    main()
