"""`legion kuka experts`: Meta-World's scripted experts on the Sawyer and on the KUKA iiwa, side by side.

The experts (``metaworld.policies``, e.g. ``SawyerReachV3Policy``) read the 39-d observation and act in
hand space, so the same expert drives both arms. Episode i of a task uses the goal variant that seed
``seed + i`` picks (:func:`legion_kuka.metaworld_kuka.goal_variant`, the rule of both embodiment
factories and of the twin chain), so both arms see the same placements. An episode succeeds if any of
its first ``max_steps`` steps has ``info['success']`` (Meta-World's and the original's rule).
``--through-twin`` adds the expert run through real2sim -> sim2real -> safety on the MuJoCo twin
(:func:`legion_kuka.chain.run_expert_through_twin`); there, where Meta-World's expert only grazes with
this gripper, the approach written for it (:mod:`legion_kuka.approaches`: peg-unplug-side) runs instead
unless ``--metaworld-only``. The measured table and why a task falls short
through the twin: docs/experts.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

ARMS = ('sawyer', 'kuka')


@dataclass
class ExpertRun:
    """Outcome of one arm's expert on one task."""

    successes: list[bool] = field(default_factory=list)
    first_success_step: list[int | None] = field(default_factory=list)
    steps: int = 0
    step_seconds: float = 0.0  # time inside env.step only (not the expert, not resets)

    @property
    def rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else float('nan')

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.step_seconds if self.step_seconds > 0 else float('nan')


def make_arm_env(arm: str, task_name: str):
    """An env of ``task_name`` on ``arm`` ('sawyer': Meta-World's own class; 'kuka': ours), task unset."""
    if arm == 'sawyer':
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        return ALL_V3_ENVIRONMENTS[task_name]()
    if arm == 'kuka':
        from legion_kuka.metaworld_kuka import kuka_env_class

        return kuka_env_class(task_name)()
    raise ValueError(f'unknown arm {arm!r}; choose one of {", ".join(ARMS)}')


def run_expert(env, policy: Callable[[np.ndarray], np.ndarray], variants: Sequence,
               max_steps: int = 150, on_episode: Callable[[], None] | None = None) -> ExpertRun:
    """Run ``policy`` for one episode per goal variant; stop an episode at its first success."""
    run = ExpertRun()
    env.max_path_length = max(int(env.max_path_length), max_steps)
    for variant in variants:
        env.set_task(variant)
        obs, _ = env.reset()
        first = None
        for step in range(max_steps):
            action = np.clip(policy(obs), -1.0, 1.0)
            start = time.perf_counter()
            obs, _reward, _terminated, _truncated, info = env.step(action)
            run.step_seconds += time.perf_counter() - start
            run.steps += 1
            if info['success']:
                first = step
                break
        run.successes.append(first is not None)
        run.first_success_step.append(first)
        if on_episode is not None:
            on_episode()
    return run


def expert_table(tasks: Sequence[str], episodes: int = 10, seed: int = 0, max_steps: int = 150,
                 arms: Sequence[str] = ARMS, progress: bool = True) -> dict[str, dict[str, ExpertRun]]:
    """``{task: {arm: ExpertRun}}`` over ``episodes`` goal variants (seeds ``seed .. seed+episodes-1``)."""
    from tqdm import tqdm

    from legion_kuka.chain import expert_policy
    from legion_kuka.metaworld_kuka import goal_variant

    results: dict[str, dict[str, ExpertRun]] = {}
    with tqdm(total=len(tasks) * len(arms) * episodes, desc='experts', unit='episode',
              disable=not progress, file=sys.stderr) as bar:
        for task in tasks:
            policy = expert_policy(task)
            variants = [goal_variant(task, seed + i) for i in range(episodes)]
            results[task] = {}
            for arm in arms:
                bar.set_postfix_str(f'{task} {arm}')
                env = make_arm_env(arm, task)
                try:
                    results[task][arm] = run_expert(env, policy, variants, max_steps, bar.update)
                finally:
                    env.close()
    return results


# --------------------------------------------------------------------------------------------------
# Command line

def register(kuka_subparsers: argparse._SubParsersAction) -> None:
    """Add ``experts`` to ``legion kuka``."""
    from legion_kuka.metaworld_kuka import KUKA_TASKS

    parser = kuka_subparsers.add_parser(
        'experts', help="Meta-World's scripted experts on the Sawyer and the KUKA: success per task",
        description="Run Meta-World's scripted expert of each task on the Sawyer (Meta-World's own env) "
                    'and on the KUKA iiwa (embodiment=kuka) over the same goal variants (episode i uses '
                    "the variant of seed+i), and print each arm's success rate per task. An episode "
                    "succeeds if any step within --max-steps reports info['success'].")
    parser.add_argument('--tasks', nargs='+', default=list(KUKA_TASKS), metavar='TASK',
                        help='Meta-World v3 task names (default: the legion10 tasks); "-v3" may be left off')
    parser.add_argument('--episodes', type=int, default=10,
                        help='goal variants per task and arm (default 10)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the first goal variant (default 0)')
    parser.add_argument('--max-steps', type=int, default=150,
                        help="steps per episode (default 150, the original's episode length)")
    parser.add_argument('--json', action='store_true', help='print one JSON object instead of a table')
    parser.add_argument('--through-twin', action='store_true',
                        help='add a column: the expert through real2sim -> sim2real -> safety on the '
                             'MuJoCo twin (legion_kuka.chain)')
    parser.add_argument('--metaworld-only', action='store_true',
                        help="through the twin too, Meta-World's expert of every task (default: the approach "
                             'written for this gripper where there is one, legion_kuka.approaches)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar on standard error')
    parser.set_defaults(handler=main)


def _task_names(names: Sequence[str]) -> list[str]:
    from legion_kuka.metaworld_kuka import KUKA_TASKS

    tasks = []
    for name in names:
        task = name if name.endswith('-v3') else f'{name}-v3'
        if task not in KUKA_TASKS:
            raise ValueError(f'no KUKA variant of task {name!r}; choose from {", ".join(KUKA_TASKS)}')
        tasks.append(task)
    return tasks


def _twin_runner() -> Callable[..., float]:
    try:
        from legion_kuka.chain import run_expert_through_twin
    except ImportError as error:
        raise RuntimeError('--through-twin needs legion_kuka.chain.run_expert_through_twin, which is not '
                           f'available in this installation ({error})') from error
    return run_expert_through_twin


def main(args: argparse.Namespace) -> int:
    try:
        tasks = _task_names(args.tasks)
        if args.episodes < 1:
            raise ValueError(f'--episodes must be >= 1, got {args.episodes}')
        if args.max_steps < 1:
            raise ValueError(f'--max-steps must be >= 1, got {args.max_steps}')
        twin = _twin_runner() if args.through_twin else None
    except (ValueError, RuntimeError) as error:
        print(f'legion kuka experts: {error}', file=sys.stderr)
        return 2

    progress = not args.no_progress
    results = expert_table(tasks, args.episodes, args.seed, args.max_steps, progress=progress)
    twin_rates: dict[str, float | None] = {task: None for task in tasks}
    if twin is not None:
        for task in tasks:
            twin_rates[task] = float(twin(task, args.episodes, args.seed, args.max_steps,
                                          gripper_approaches=not args.metaworld_only))

    report = {
        'tasks': {task: {'sawyer': runs['sawyer'].rate, 'kuka': runs['kuka'].rate, 'twin': twin_rates[task]}
                  for task, runs in results.items()},
        'episodes': args.episodes,
        'seed': args.seed,
        'max_steps': args.max_steps,
        'mean': {arm: float(np.mean([runs[arm].rate for runs in results.values()])) for arm in ARMS},
        'first_success_step': {task: {arm: runs[arm].first_success_step for arm in ARMS}
                               for task, runs in results.items()},
        'steps_per_second': {arm: _pooled_rate([runs[arm] for runs in results.values()]) for arm in ARMS},
    }
    if twin is not None:
        report['mean']['twin'] = float(np.mean([twin_rates[task] for task in tasks]))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report, show_twin=twin is not None)
    return 0


def _pooled_rate(runs: Sequence[ExpertRun]) -> float:
    seconds = sum(run.step_seconds for run in runs)
    return sum(run.steps for run in runs) / seconds if seconds > 0 else float('nan')


def _print_table(report: dict, show_twin: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Scripted experts: success over {report['episodes']} goal variants "
                        f"(seeds {report['seed']}..{report['seed'] + report['episodes'] - 1}, "
                        f"{report['max_steps']} steps)")
    table.add_column('task')
    columns = [*ARMS, 'twin'] if show_twin else list(ARMS)
    for column in columns:
        table.add_column(column, justify='right')
    for task, rates in report['tasks'].items():
        table.add_row(task, *(f'{rates[column]:.2f}' for column in columns))
    table.add_section()
    table.add_row('mean', *(f"{report['mean'][column]:.2f}" for column in columns))
    rates = report['steps_per_second']
    table.caption = f"env.step: sawyer {rates['sawyer']:.0f} steps/s, kuka {rates['kuka']:.0f} steps/s"
    Console().print(table)
