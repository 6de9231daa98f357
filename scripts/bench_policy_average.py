"""Live policy against Polyak averages of it, on one training run: the measurement behind
`agent.policy_average` (docs/training.md, "The policy's average"). Prints one JSON line per evaluation,
then a summary line.

    .venv/bin/python scripts/bench_policy_average.py --task door-open-v3 [--budget 120000]
        [--eval-every 5000] [--decays 0.999,0.9997,0.9999] [--embodiment twin] [--seed 0]
        [--run-dir DIR] [KEY=VALUE ...]

One `legion train` run of the task alone, with the stream's recipe (50 demonstrations, 3,000 cloning
updates, `demo_bc=5` without the Q-filter) and `agent.policy_average=0`, so that its own evaluations
score the live networks. Beside it, each decay of ``--decays`` keeps its own average of the encoder's
and actor's weights, updated after every update and restarted after cloning as `LegionAgent` does it
(the measurements in docs/training.md predate the restart). At each evaluation every
average acts on the same held-out episodes as the live policy. The averages are side copies: the run
trains exactly as it would without them. KEY=VALUE overrides go to the run's config.
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from legion_core.config import compose_config, to_container
from legion_core.envs import evaluate
from legion_core.trainer import Trainer

RECIPE = ('train.demo_episodes=50', 'train.demo_pretrain=3000', 'agent.demo_bc=5.0',
          'agent.demo_q_filter=false')


class Averages:
    """Polyak averages of the agent's encoder and actor for several decays, and their evaluation."""

    def __init__(self, trainer: Trainer, decays: list[float]):
        self.trainer, self.decays = trainer, decays
        agent = trainer.agent
        self.live = [*agent.vae.encoder.parameters(), *agent.actor.parameters()]
        self.averages = {d: [p.detach().clone() for p in self.live] for d in decays}
        self._update, self._evaluate_all = agent.update, trainer.evaluate_all
        agent.update, trainer.evaluate_all = self.update, self.evaluate_all
        agent.restart_average = self.restart  # after cloning, as LegionAgent.restart_average
        self.rows: list[dict] = []

    def restart(self) -> None:
        with torch.no_grad():
            for average in self.averages.values():
                torch._foreach_copy_(average, [p.detach() for p in self.live])

    def update(self, *args, **kwargs) -> None:
        self._update(*args, **kwargs)
        with torch.no_grad():
            for d, average in self.averages.items():
                torch._foreach_lerp_(average, [p.detach() for p in self.live], 1.0 - d)

    def evaluate_all(self, phase: int, final: bool) -> list[float]:
        trainer, agent = self.trainer, self.trainer.agent
        rates = self._evaluate_all(phase, final)
        row = {'env_steps': trainer.position['env_steps'], 'updates': agent.num_updates, 'live': rates[-1]}
        live = [p.detach().clone() for p in self.live]
        with torch.no_grad():
            for d, average in self.averages.items():
                torch._foreach_copy_(self.live, average)
                result = evaluate(lambda obs: agent.act(obs, 0, deterministic=True), trainer.tasks[0],
                                  trainer.config.train.eval_episodes, env=trainer._eval_env(0))
                row[str(d)] = result['success_rate']
            torch._foreach_copy_(self.live, live)
        print(json.dumps(row), flush=True)
        self.rows.append(row)
        return rates


def summary(rows: list[dict], decays: list[float], skip: int = 2) -> dict:
    """Mean, min and max success per policy over the evaluations after the first ``skip`` (an average
    starts where the live weights were before cloning, and lags the cloned actor for a while)."""
    out = {}
    for key in ['live', *map(str, decays)]:
        values = [r[key] for r in rows[skip:]] or [r[key] for r in rows]
        out[key] = {'mean': round(statistics.mean(values), 3), 'min': min(values), 'max': max(values),
                    'curve': [r[key] for r in rows]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', default='door-open-v3')
    parser.add_argument('--budget', type=int, default=120_000, help='env steps of training')
    parser.add_argument('--eval-every', type=int, default=5_000)
    parser.add_argument('--eval-episodes', type=int, default=10)
    parser.add_argument('--decays', default='0.999,0.9997,0.9999', help='comma-separated, each in (0, 1)')
    parser.add_argument('--embodiment', default='twin')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--run-dir', default=None, help='where the run writes (default: a temporary one)')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE')
    args = parser.parse_args()
    decays = [float(d) for d in args.decays.split(',')]
    if not all(0.0 < d < 1.0 for d in decays):
        parser.error(f'--decays must lie in (0, 1), got {args.decays}')
    cfg = to_container(compose_config([
        f'stream.tasks=[{args.task}]', f'stream.name={args.task}', f'seed={args.seed}', 'device=cpu',
        f'env.embodiment={args.embodiment}', f'train.steps_per_task={args.budget}',
        f'train.eval_every={args.eval_every}', f'train.eval_episodes={args.eval_episodes}',
        f'train.eval_envs={args.eval_episodes}', 'train.advance_on_success=null',
        'train.checkpoint_every=0', 'train.keep_phase_checkpoints=false',
        f'replay.capacity={args.budget + 20_000}', 'train.env_workers=1', *RECIPE,
        *args.overrides, 'agent.policy_average=0.0']))
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(cfg, Path(args.run_dir or scratch), progress=False)
        averages = Averages(trainer, decays)
        started, cpu = time.perf_counter(), time.process_time()
        try:
            trainer.run()
        finally:
            trainer.close()
    print(json.dumps({'task': args.task, 'seed': args.seed, 'embodiment': args.embodiment,
                      'env_steps': trainer.position['env_steps'],
                      'wall_s': round(time.perf_counter() - started),
                      'learner_cpu_s': round(time.process_time() - cpu),
                      'success': summary(averages.rows, decays)}))


if __name__ == '__main__':
    main()
