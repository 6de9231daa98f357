"""`legion eval`: per-task success of a trained policy (checkpoint, policy.pt or run directory)."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'eval', help='evaluate a trained policy on its tasks and print a success table',
        description=('Run deterministic episodes of a trained LEGION policy on each task it knows (or the '
                     'tasks given) and print the success rate and mean return per task. CHECKPOINT is a '
                     'run directory, a training checkpoint (checkpoints/*.pt), an exported policy.pt or '
                     'the name of a policy shipped with legion_core (legion10_recipe, legion10_twin, '
                     'twin_demo3). '
                     'Environment settings (embodiment, layout, episode length, goal) default to those '
                     'the policy was trained with.'))
    parser.add_argument('checkpoint', metavar='CHECKPOINT',
                        help='run directory, checkpoint, policy.pt or a shipped policy\'s name')
    parser.add_argument('--tasks', nargs='+', metavar='TASK',
                        help='tasks to evaluate (default: every task of the policy\'s stream)')
    parser.add_argument('--episodes', type=int, default=10, help='episodes per task (default 10)')
    parser.add_argument('--num-envs', type=int, default=None,
                        help='env copies stepped together per task (default: all episodes at once)')
    parser.add_argument('--seed', type=int, default=None,
                        help='env seed (default: the training seed, i.e. the training goal variants)')
    parser.add_argument('--goal', choices=('fixed', 'random'), default=None,
                        help='goal mode (default: the training one)')
    parser.add_argument('--embodiment', default=None, help='embodiment (default: the training one)')
    parser.add_argument('--episode-length', type=int, default=None, help='steps per episode')
    parser.add_argument('--stochastic', action='store_true', help='sample actions instead of tanh(μ)')
    parser.add_argument('--until-success', action='store_true',
                        help='end each episode at its first success: the same success rates in about half '
                        'the time for a learnt policy; returns are then summed up to that step (as a '
                        'run\'s own evaluations do under train.eval_until_success)')
    parser.add_argument('--shared', action='store_true',
                        help='act with the shared encoder and actor for every task, also where the run '
                        'froze a task\'s skill when its phase was solved (agent.freeze_skills): what the '
                        'shared networks alone have kept of each task')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object instead of a table, with every episode\'s success in '
                        'order and the step it first succeeded at (the same --seed and --num-envs give '
                        'the same episodes: which ones fail, and how close to the time limit the others '
                        'came)')
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        print(f'legion eval: --episodes must be >= 1, got {args.episodes}', file=sys.stderr)
        return 2
    from legion_core.checkpoint import load_checkpoint
    from legion_core.envs import evaluate
    from legion_core.policy import policy_from_state, resolve_policy

    path = resolve_policy(args.checkpoint)  # a shipped policy's name becomes its file
    try:
        state = load_checkpoint(path)
        policy = policy_from_state(state, shared=args.shared)
    except (FileNotFoundError, ValueError) as error:
        print(f'legion eval: {error}', file=sys.stderr)
        return 2
    config = state.get('config') or {}
    seed = args.seed if args.seed is not None else int(config.get('seed', 0))
    env = policy.env
    try:
        tasks = [policy.tasks[policy.task_index(t)] for t in args.tasks] if args.tasks else policy.tasks
    except ValueError as error:
        print(f'legion eval: {error}', file=sys.stderr)
        return 2
    rows = []
    for task in tasks:
        result = evaluate(lambda obs, task=task: policy.act(obs, task, deterministic=not args.stochastic),
                          task, args.episodes, num_envs=args.num_envs,
                          embodiment=args.embodiment or env['embodiment'], layout=env['layout'],
                          episode_length=args.episode_length or env['episode_length'],
                          goal=args.goal or env['goal'], seed=seed, until_success=args.until_success)
        rows.append({'task': task, 'success': result['success_rate'], 'return': result['mean_return'],
                     'episodes': args.episodes, 'episode_successes': result['episode_successes'],
                     'episode_success_steps': result['episode_success_steps']})
    mean = sum(r['success'] for r in rows) / len(rows)
    if args.json:
        print(json.dumps({'checkpoint': str(path), 'seed': seed, 'tasks': rows, 'mean_success': mean,
                          'frozen_skills': [policy.tasks[j] for j in sorted(policy.skills)]}))
    else:
        width = max(len(r['task']) for r in rows)
        print(f'{"task":<{width}}  success  mean return')
        for r in rows:
            print(f'{r["task"]:<{width}}  {r["success"]:>7.2f}  {r["return"]:>11.1f}')
        print(f'{"mean":<{width}}  {mean:>7.2f}')
        frozen = [r['task'] for r in rows if policy.task_index(r['task']) in policy.skills]
        if frozen:
            print(f'acted with frozen skills: {", ".join(frozen)} (--shared: the shared networks for every '
                  'task)')
    return 0
