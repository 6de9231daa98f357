"""How well a lifelong run keeps its earlier tasks when it goes on learning, measured offline: the run's
agent continues on its own replay (no env steps) and its earlier tasks are checked as it goes.

    .venv/bin/python scripts/bench_offline_forgetting.py RUN_DIR [--updates 8000] [--checks 4]
        [KEY=VALUE ...]

The run is loaded from its checkpoint as `legion train --resume` would (KEY=VALUE: resumable settings,
e.g. train.current_ratio=0.5; agent.distill=W changes the cloning weight for this measurement only).
Nothing in RUN_DIR is written: copy it first if the run is still going. Each check prints one JSON line
with, per earlier task, the squared distance between the policy's deterministic action (with
`agent.policy_average`, its average's) and the rows' teacher action on 4,096 of its replayed rows
(what distill pulls towards), and its held-out success on the run's evaluation episodes.
"""
import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from legion_core.envs import evaluate
from legion_core.trainer import CONFIG_FILE, resume_trainer

PROBE_ROWS = 4096


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run_dir', type=Path)
    parser.add_argument('--updates', type=int, default=8000)
    parser.add_argument('--checks', type=int, default=4, help='checks after the first (at 0 updates)')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE')
    args = parser.parse_intermixed_args()
    distill = [o for o in args.overrides if o.startswith('agent.distill=')]
    overrides = [o for o in args.overrides if o not in distill]
    with tempfile.TemporaryDirectory() as scratch:  # resume rewrites config.yaml: not the run's own
        run = Path(scratch) / 'run'
        run.mkdir()
        for name in (CONFIG_FILE, 'config_changes.jsonl', 'evals.jsonl', 'metrics.json'):
            if (args.run_dir / name).exists():
                shutil.copy(args.run_dir / name, run / name)
        (run / 'checkpoints').symlink_to((args.run_dir / 'checkpoints').resolve())
        trainer = resume_trainer(run, overrides=overrides, progress=False)
        measure(trainer, args.updates, args.checks, float(distill[-1].split('=', 1)[1]) if distill else None)


def measure(trainer, updates: int, checks: int, distill: float | None) -> None:
    torch.manual_seed(0)
    agent, replay = trainer.agent, trainer.replay
    if distill is not None:
        agent.config.distill = distill
    earlier = range(agent.teacher_tasks)
    slots = replay.stored_slots()
    generator = torch.Generator().manual_seed(1)
    probes = {}
    for k in earlier:
        rows = slots[replay.storage['task'][slots] == k]
        probes[k] = rows[torch.randint(0, len(rows), (PROBE_ROWS,), generator=generator)]

    def check(done: int) -> None:
        record = {'updates': done, 'distance': {}, 'success': {}}
        for k, rows in probes.items():
            obs, task = replay.storage['obs'][rows], replay.storage['task'][rows]
            with torch.no_grad():
                policy = agent.acting_policy()  # what acts: the average, with agent.policy_average
                mu, _ = policy['encoder'].forward_tasks(obs, task, agent.task_embeddings)
                action = policy['actor'].mean_action(obs, mu)
            distance = (action - replay.storage['teacher_action'][rows]).pow(2).sum(-1).mean()
            record['distance'][trainer.tasks[k]] = round(float(distance), 5)
            result = evaluate(lambda o, k=k: agent.act(o, k, deterministic=True), trainer.tasks[k],
                              trainer.config.train.eval_episodes, env=trainer._eval_env(k))
            record['success'][trainer.tasks[k]] = result['success_rate']
        print(json.dumps(record), flush=True)

    check(0)
    every = max(updates // checks, 1)
    for done in range(1, updates + 1):
        agent.update(trainer._batch(agent.config.batch_size))
        if done % every == 0:
            check(done)
    trainer.close()


if __name__ == '__main__':
    main()
