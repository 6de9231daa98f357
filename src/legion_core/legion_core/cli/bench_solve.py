"""`legion bench solve`: time to a learnt skill, ours against stable-baselines3 SAC, side by side.

For each task of a list and each seed, two learners start from scratch on that task alone:

- **ours**: a LEGION agent (VAE and DPMM included) with the defaults of ``legion train`` (any
  ``KEY=VALUE`` override applies to it), trained by the same ``Trainer`` as ``legion train``;
- **peer**: ``stable_baselines3.SAC('MlpPolicy')`` at its own defaults (256 x 256, batch 256, one
  update per step), with ``learning_starts`` set to our warm-up so both start learning at the same step.

Both see the same env (embodiment, observation layout, episode length, goal mode, seed) and are
evaluated the same way: every ``--eval-every`` env steps, ``--eval-episodes`` deterministic episodes
on evaluation copies seeded apart from training (under ``--goal random`` goals training never saw).
A side has *solved* the task when its success rate reaches ``--threshold`` at ``--consecutive``
evaluations in a row; its steps, process CPU seconds and wall seconds up to that evaluation
(evaluations included: a user waits for them too) are the time to a learnt skill.

The two learners run interleaved in one process, one evaluation interval each in turn, so that
machine noise (a shared VM's steal time, other jobs) falls on both. CPU seconds are the process's
own CPU time during each side's turns: robust to other load, unlike wall time.

The run is resumable: with ``--output FILE`` every finished (task, seed) is written to FILE at once,
and a rerun with the same FILE skips what is there (a killed run loses at most the pair in progress).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # About 30 minutes on 2 cores: two quick tasks, one seed.
    'quick': {'tasks': 'reach-v3,drawer-close-v3', 'seeds': '0', 'budget': 40_000, 'eval_every': 5_000},
    # The list: every legion10 task, 300k steps each (hours: resumable).
    'legion10': {'tasks': 'legion10', 'seeds': '0', 'budget': 300_000, 'eval_every': 10_000},
}
SIDES = ('ours', 'peer')
PEER = 'stable-baselines3 SAC, MlpPolicy defaults (256 x 256, batch 256)'


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'solve', help='time to a learnt skill: ours vs stable-baselines3 SAC, side by side (JSON)',
        description=(
            'Train a fresh LEGION agent (our defaults, VAE and DPMM included) and, interleaved in the same '
            'process, stable-baselines3 SAC at its defaults on each task alone, evaluate both every '
            '--eval-every env steps, and report when each solved the task (success >= --threshold at '
            '--consecutive evaluations in a row): env steps, process CPU seconds and wall seconds. '
            'Prints one JSON object; ratio_cpu_s is peer / ours (median over tasks, an unsolved side '
            'counted at its budget). With --output the run resumes where it stopped. Ours steps its env '
            'in this process (train.env_workers=0), so the CPU clock counts all of its work.'),
        epilog=('examples:\n'
                '  legion bench solve --preset quick                      # ~30 min on 2 cores\n'
                '  legion bench solve --preset legion10 --output runs/solve.json   # hours; rerun to resume\n'
                '  legion bench solve --tasks reach,push --budget 100000 agent.critic_body=legion\n'
                '  legion bench solve --preset quick preset=legion10_recipe   # ours with expert demos\n'),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE',
                        help='overrides of our training config (e.g. agent.batch_size=256)')
    parser.add_argument('--preset', choices=sorted(PRESETS), default=None,
                        help='quick: reach and drawer-close, 40k steps (~30 min); legion10: all ten, '
                             '300k steps each (explicit flags override the preset)')
    parser.add_argument('--tasks', default=None,
                        help='comma-separated tasks or a stream name (default: legion10)')
    parser.add_argument('--seeds', default=None, help='comma-separated seeds (default: 0)')
    parser.add_argument('--budget', type=int, default=None,
                        help='env steps per task and side (default 300000)')
    parser.add_argument('--eval-every', type=int, default=None, help='env steps between evaluations '
                        '(default 10000)')
    parser.add_argument('--eval-episodes', type=int, default=10, help='episodes per evaluation (default 10)')
    parser.add_argument('--threshold', type=float, default=0.9, help='success rate that counts (default 0.9)')
    parser.add_argument('--consecutive', type=int, default=2,
                        help='evaluations in a row at the threshold (default 2)')
    parser.add_argument('--embodiment', default='kuka', help='sawyer | kuka | twin (default kuka)')
    parser.add_argument('--goal', default='random', choices=('fixed', 'random'),
                        help='goal per episode (random, default) or one per task and seed (fixed)')
    parser.add_argument('--output', default=None,
                        help='JSON file that keeps finished tasks; an existing one is continued')
    parser.add_argument('--work-dir', default=None,
                        help='where our runs are written (default: a temporary directory, removed)')
    parser.add_argument('--no-peer', action='store_true', help='train ours only')
    parser.add_argument('--plot', default=None, metavar='PNG',
                        help='draw success against CPU seconds, ours and the peer, one panel per task')
    parser.add_argument('--progress', action='store_true', help='progress bars on stderr')
    parser.set_defaults(handler=run)


# ------------------------------------------------------------------------------------------- learners
class Ours:
    """Our trainer on one task, advanced one evaluation interval at a time."""

    def __init__(self, cfg: dict[str, Any], run_dir: Path, progress: bool):
        from legion_core.trainer import Trainer

        self.trainer = Trainer(cfg, run_dir, progress=progress)
        self.run_dir = run_dir

    def advance(self, steps: int) -> list[tuple[int, float]]:
        """Train ``steps`` more env steps (or to the end); the evaluations made, as (env steps, success)."""
        from legion_core.report import EVALS_FILE

        seen = self.trainer.position['evals_lines']
        self.trainer.run(max_env_steps=steps, checkpoint_at_stop=False)
        evals = self.run_dir / EVALS_FILE
        # None yet when the demonstrations outlasted the interval (the phase-start evaluation waits for
        # the phase's first step).
        lines = evals.read_text().splitlines()[seen:] if evals.is_file() else []
        out: list[tuple[int, float]] = []
        for row in map(json.loads, lines):
            # A phase that ends when solved evaluates once more at the same step: one point, not two.
            if not (row.get('final') and out and out[-1][0] == row['env_steps']):
                out.append((row['env_steps'], row['success']))
        return out

    @property
    def done(self) -> bool:
        return bool(self.trainer.position['done'])

    def close(self) -> None:
        self.trainer.close()


class Peer:
    """stable-baselines3 SAC at its defaults on the same env, evaluated like ours."""

    def __init__(self, task: str, env_kwargs: dict[str, Any], warmup: int, budget: int, episodes: int,
                 eval_seed: int, until_success: bool):
        from stable_baselines3 import SAC

        from legion_core.envs import TaskVectorEnv, make_gymnasium_env

        self.model = SAC('MlpPolicy', make_gymnasium_env(task, **env_kwargs), learning_starts=warmup,
                         buffer_size=budget, seed=env_kwargs['seed'], device='cpu', verbose=0)
        self.eval_env = TaskVectorEnv(task, episodes, autoreset=False, copy_seed=eval_seed, **env_kwargs)
        self.task, self.episodes, self.budget, self.steps = task, episodes, budget, 0
        self.until_success = until_success  # as ours' evaluations end (train.eval_until_success)

    def advance(self, steps: int) -> list[tuple[int, float]]:
        # Like ours, an evaluation before any step: an untrained policy may already succeed (ours
        # closes drawer-close's drawer at step 0), and both sides' streaks start there.
        out = [] if self.steps else [(0, self._success())]
        steps = min(steps, self.budget - self.steps)
        self.model.learn(total_timesteps=steps, reset_num_timesteps=False)
        self.steps += steps
        return [*out, (self.steps, self._success())]

    def _success(self) -> float:
        from legion_core.envs import evaluate

        result = evaluate(lambda obs: self.model.predict(obs, deterministic=True)[0], self.task,
                          self.episodes, env=self.eval_env, until_success=self.until_success)
        return result['success_rate']

    @property
    def done(self) -> bool:
        return self.steps >= self.budget

    def close(self) -> None:
        self.eval_env.close()
        self.model.get_env().close()


# ------------------------------------------------------------------------------------------- one task
class Clock:
    """Env steps, process CPU seconds and wall seconds one side has spent, and when it solved."""

    def __init__(self, threshold: float, consecutive: int):
        self.threshold, self.consecutive = threshold, consecutive
        self.cpu_s = self.wall_s = 0.0
        self.curve: list[dict[str, float]] = []
        self.streak = 0
        self.solved: dict[str, float] | None = None

    def record(self, evaluations: list[tuple[int, float]], cpu_s: float, wall_s: float) -> None:
        """A turn's evaluations: the last one closes the turn (the clock at its end), an earlier one
        (the evaluation before any step) is dated at the turn's start."""
        start = (self.cpu_s, self.wall_s)
        self.cpu_s += cpu_s
        self.wall_s += wall_s
        for i, (steps, success) in enumerate(evaluations):
            cpu, wall = (self.cpu_s, self.wall_s) if i == len(evaluations) - 1 else start
            self.curve.append({'env_steps': steps, 'success': success, 'cpu_s': round(cpu, 2),
                               'wall_s': round(wall, 2)})
            self.streak = self.streak + 1 if success >= self.threshold else 0
            if self.solved is None and self.streak >= self.consecutive:
                self.solved = {'steps': steps, 'cpu_s': cpu, 'wall_s': wall}

    def summary(self, budget: int) -> dict[str, Any]:
        solved = self.solved or {}
        return {'steps_to_solve': solved.get('steps'), 'cpu_s_to_solve': _round(solved.get('cpu_s')),
                'wall_s_to_solve': _round(solved.get('wall_s')), 'cpu_s': _round(self.cpu_s),
                'wall_s': _round(self.wall_s), 'budget': budget, 'success_curve': self.curve}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def solve_task(task: str, seed: int, cfg: dict[str, Any], args: argparse.Namespace, work_dir: Path
               ) -> dict[str, Any]:
    """Both sides on one task and seed, interleaved one evaluation interval at a time."""
    from legion_core.trainer import EVAL_SEED_OFFSET

    ours = Ours(cfg, work_dir / f'{task}_seed{seed}', args.progress)
    learners: dict[str, Any] = {'ours': ours}
    if not args.no_peer:  # the peer meets the same envs and warm-up
        train = ours.trainer.config.train
        learners['peer'] = Peer(task, dict(ours.trainer.env_kwargs), train.warmup_steps, args.budget,
                                args.eval_episodes, seed + EVAL_SEED_OFFSET, train.eval_until_success)
    clocks = {side: Clock(args.threshold, args.consecutive) for side in learners}
    # Both sides evaluate at step 0 too (inside their first turn).
    try:
        while any(not learner.done and clocks[side].solved is None for side, learner in learners.items()):
            for side, learner in learners.items():
                if learner.done or clocks[side].solved is not None:
                    continue
                wall, cpu = time.perf_counter(), time.process_time()
                evaluations = learner.advance(args.eval_every)
                clocks[side].record(evaluations, time.process_time() - cpu, time.perf_counter() - wall)
    finally:
        for learner in learners.values():
            learner.close()
    return {side: clock.summary(args.budget) for side, clock in clocks.items()}


# ------------------------------------------------------------------------------------------- the run
def _config(args: argparse.Namespace, task: str, seed: int) -> dict[str, Any]:
    from legion_core.config import compose_config, to_container

    cfg = to_container(compose_config([
        f'stream.tasks=[{task}]', f'stream.name={task}', f'seed={seed}', 'device=cpu',
        f'env.embodiment={args.embodiment}', f'env.goal={args.goal}',
        f'train.steps_per_task={args.budget}', f'train.eval_every={args.eval_every}',
        f'train.eval_episodes={args.eval_episodes}', f'train.eval_envs={args.eval_episodes}',
        f'train.advance_on_success={args.threshold}', f'train.advance_evals={args.consecutive}',
        'train.checkpoint_every=0', 'train.keep_phase_checkpoints=false',
        # One task's budget fits: the default 3 M-row replay would reserve a gigabyte for nothing.
        f'replay.capacity={max(args.budget, 1000)}',
        *args.overrides,
        # Ours steps its env in this process: the CPU clock (this process's) must see all of its work,
        # whatever a preset says (preset=legion10_recipe steps the twin in a worker).
        'train.env_workers=0', 'train.env_process=false']))
    return cfg


def ratio_cpu_s(results: dict[str, dict[str, Any]]) -> float | None:
    """peer / ours CPU seconds to a learnt skill: median over seeds per task, then over tasks. A side
    that did not solve is counted at the CPU seconds it spent on its whole budget."""
    per_task = []
    for seeds in results.values():
        ratios = []
        for pair in seeds.values():
            if 'peer' not in pair:
                continue
            ours, peer = (pair[side]['cpu_s_to_solve'] or pair[side]['cpu_s'] for side in SIDES)
            if ours:
                ratios.append(peer / ours)
        if ratios:
            per_task.append(statistics.median(ratios))
    return round(statistics.median(per_task), 3) if per_task else None


def _check(args: argparse.Namespace) -> list[str]:
    problems = []
    for name in ('budget', 'eval_every', 'eval_episodes', 'consecutive'):
        if getattr(args, name) < 1:
            problems.append(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    if not 0 < args.threshold <= 1:
        problems.append(f'--threshold must be in (0, 1], got {args.threshold}')
    return problems


def run(args: argparse.Namespace) -> int:
    preset = PRESETS.get(args.preset, {})
    for key, default in (('tasks', 'legion10'), ('seeds', '0'), ('budget', 300_000), ('eval_every', 10_000)):
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, default))
    problems = _check(args)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from legion_core.config import validate
    from legion_core.tasks import resolve_stream

    try:
        tasks = resolve_stream(args.tasks)
        seeds = [int(s) for s in str(args.seeds).split(',') if s.strip()]
        # Tasks and seeds differ only in names: the first pair's config checks the overrides for all.
        problems += validate(_config(args, tasks[0], seeds[0]))
    except (ValueError, HydraException, OmegaConfBaseException) as error:
        problems.append(str(error))
    if problems:
        print('legion bench solve: ' + '; '.join(problems), file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)  # both sides, one intra-op thread (shared cores: threads spin)
    output = Path(args.output) if args.output else None
    results: dict[str, dict[str, Any]] = {}
    if output is not None and output.is_file():
        earlier = json.loads(output.read_text())
        settings = _settings(args)
        differ = sorted(k for k, v in settings.items() if earlier.get(k) != v)
        if differ:
            print(f'legion bench solve: {output} was written with other settings ({", ".join(differ)}): '
                  'give another --output, or the same settings to continue it', file=sys.stderr)
            return 2
        results = earlier.get('results', {})
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix='legion-bench-solve-'))
    try:
        for task in tasks:
            for seed in seeds:
                if str(seed) in results.get(task, {}):
                    continue  # finished in an earlier run of this output file
                pair = solve_task(task, seed, _config(args, task, seed), args, work_dir)
                results.setdefault(task, {})[str(seed)] = pair
                if output is not None:
                    _write(output, _report(args, tasks, seeds, results))
    finally:
        if not args.work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    if args.plot:
        plot(results, Path(args.plot))
    print(json.dumps(_report(args, tasks, seeds, results)))
    return 0


def plot(results: dict[str, dict[str, Any]], path: Path) -> Path:
    """Success rate against process CPU seconds for each side, one panel per task (seeds overlaid)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    tasks = list(results)
    columns = min(len(tasks), 5) or 1
    rows = max(1, -(-len(tasks) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False,
                             sharey=True)
    colours = {'ours': 'tab:blue', 'peer': 'tab:orange'}
    for ax, task in zip(axes.flat, tasks, strict=False):
        for n, pair in enumerate(results[task].values()):
            for side, result in pair.items():
                curve = result['success_curve']
                ax.plot([p.get('cpu_s', 0.0) / 60 for p in curve], [p['success'] for p in curve],
                        color=colours[side], marker='.', label=side if n == 0 else None)
        ax.axhline(0.9, color='grey', lw=0.8, ls=':')
        ax.set_title(task, fontsize=9)
        ax.set_xlabel('CPU minutes')
    for ax in axes.flat[len(tasks):]:
        ax.axis('off')
    axes[0][0].set_ylabel('success (held-out)')
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a result depends on besides the task and seed: a continued output must match them."""
    return {'budget': args.budget, 'eval_every': args.eval_every, 'eval_episodes': args.eval_episodes,
            'threshold': args.threshold, 'consecutive': args.consecutive, 'embodiment': args.embodiment,
            'goal': args.goal, 'overrides': list(args.overrides),
            'peer': None if args.no_peer else PEER}


def _report(args: argparse.Namespace, tasks: list[str], seeds: list[int], results: dict) -> dict[str, Any]:
    solved = {side: sum(1 for task in results.values() for pair in task.values()
                        if side in pair and pair[side]['steps_to_solve'] is not None) for side in SIDES}
    return {
        'tasks': tasks, 'seeds': seeds, **_settings(args),
        'solved': solved, 'pairs': sum(len(task) for task in results.values()),
        'ratio_cpu_s': ratio_cpu_s(results),
        'results': results,
    }


def _write(path: Path, report: dict[str, Any]) -> None:
    from legion_core.checkpoint import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=1))
