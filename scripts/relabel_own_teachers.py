"""Give a stopped lifelong run's finished tasks the teacher of their own phase end
(`agent.distill_teacher: own`), for a run that has so far run with `last`.

    .venv/bin/python scripts/relabel_own_teachers.py RUN_DIR

Under `last`, every task switch labelled all earlier tasks' replayed rows with that switch's actions,
so a task that lost ground in a later phase carries the loss in its targets. Each phase checkpoint
(`checkpoints/phase_<k>.pt`, `train.keep_phase_checkpoints`) holds the teacher taken at the end of
phase k, which is what `own` labels task k's rows with. This labels every finished task's rows in
`last.pt` from its own phase checkpoint, sets `agent.distill_teacher=own` as a resume does (recorded in
config_changes.jsonl), and writes `last.pt` again. Stop the run first (SIGTERM writes its checkpoint);
then `legion train --resume RUN_DIR`. Prints what it labelled as one JSON line.
"""
import argparse
import copy
import json
from pathlib import Path

import torch

from legion_core import checkpoint as ckpt
from legion_core.trainer import resume_trainer


def relabel(run_dir: Path) -> dict[str, int]:
    trainer = resume_trainer(run_dir, overrides=['agent.distill_teacher=own'], progress=False)
    agent, labelled = trainer.agent, {}
    if agent.teacher is None:
        raise SystemExit(f'{run_dir}: no task has been finished yet (no teacher): nothing to relabel')
    latest = copy.deepcopy(agent.teacher.state_dict())
    for k in range(agent.teacher_tasks):
        path = run_dir / ckpt.CHECKPOINT_DIR / f'phase_{k}.pt'
        if not path.exists():
            raise SystemExit(f'{path} is missing (train.keep_phase_checkpoints): task {k} keeps its labels')
        state = torch.load(path, map_location=agent.device, weights_only=False)['agent']
        agent.teacher.load_state_dict(state['teacher'])  # the teacher taken at the end of phase k
        labelled[trainer.tasks[k]] = trainer.replay.set_teacher_actions([k], agent.teacher_actions)
    agent.teacher.load_state_dict(latest)
    ckpt.save_checkpoint(trainer.state_dict(), run_dir)
    trainer.close()
    return labelled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run_dir', type=Path)
    print(json.dumps({'labelled_rows': relabel(parser.parse_args().run_dir)}))


if __name__ == '__main__':
    main()
