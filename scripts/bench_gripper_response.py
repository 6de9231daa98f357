"""The twin's gripper against Meta-World's fingers: the measurement behind docs/training.md, "What fails
on the twin: the fingers close too early". A diagnostic: the product's twin is not changed.

    .venv/bin/python scripts/bench_gripper_response.py table [--values 0.15,0.3,0.6] [--steps 30]
    .venv/bin/python scripts/bench_gripper_response.py policy legion10_recipe [--tasks push-v3,...]
        [--episodes 20] [--seed 1000003]
    .venv/bin/python scripts/bench_gripper_response.py legion bench solve --tasks push --embodiment twin ...

Meta-World's finger is a position servo (kp 400, target = the gripper action in metres of closing) on a
100 kg armature with 1,000 Ns/m damping: a small value hardly moves it for the first steps. The twin's
gripper is the real one's model, whose slowest speed moves the fingers about 2 mm a policy step whatever
the value. ``finger model`` here steps a model of Meta-World's finger once per policy step (5 substeps of
2.5 ms, the unscaled action) and sends the twin's gripper the opening it reached, fast enough to get
there within the step.

- ``table``: the opening (obs[3], 1 = open) every 3 steps of a constant gripper value, the hand still,
  on the KUKA env (Meta-World's fingers), the twin, and the twin with the finger model. One JSON line
  per value and embodiment.
- ``policy``: a trained policy's success per task on the same held-out episodes through the twin as it
  is and with the finger model. One JSON line per task, then the means.
- ``legion ...``: any `legion` command with the finger model in this process (`legion bench solve`
  steps our env in its own process, so training and evaluation see it; the peer's env too). `legion
  train` needs `train.env_workers=0`: its env workers are spawned processes, which would not see it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys

import numpy as np

from legion_core.tasks import LEGION10
from legion_kuka import twin
from legion_kuka.description import GRIPPER
from legion_kuka.gripper import gripper_command
from legion_kuka.metaworld_kuka import FINGER_ARMATURE, FINGER_DAMPING, FINGER_KP
from legion_kuka.sim2real import METAWORLD_STEP_S

SUBSTEPS = 5  # Meta-World's frame_skip: one env step is 5 physics steps
POLICY_PERIOD_S = 0.1  # the twin env's policy step (sim2real at 10 Hz)
SPEED_SCALE = METAWORLD_STEP_S / POLICY_PERIOD_S  # the gripper value is the action times this


def finger_step(closing: float, speed: float, action: float) -> tuple[float, float]:
    """One Meta-World env step of a finger (closing in m, 0 = open) whose servo target is ``action``."""
    dt = METAWORLD_STEP_S / SUBSTEPS
    for _ in range(SUBSTEPS):
        speed += (FINGER_KP * (action - closing) - FINGER_DAMPING * speed) / FINGER_ARMATURE * dt
        closing += speed * dt
        if closing <= 0.0:  # the joint's range, as Meta-World's
            closing, speed = 0.0, max(speed, 0.0)
        elif closing >= GRIPPER.finger_stroke:
            closing, speed = GRIPPER.finger_stroke, min(speed, 0.0)
    return closing, speed


@contextlib.contextmanager
def finger_model():
    """The twin's gripper following Meta-World's finger, for the code run inside."""
    reset, set_gripper = twin.Twin.reset, twin.Twin.set_gripper

    def modelled_reset(self, *args, **kwargs):
        out = reset(self, *args, **kwargs)
        self._metaworld_finger = (0.0, 0.0)  # open and at rest, as after Meta-World's reset
        return out

    def modelled_set_gripper(self, command):
        set_gripper(self, command)  # checks the value and records it, as the twin does
        action = min(max(float(command) / SPEED_SCALE, -1.0), 1.0)
        before = self._metaworld_finger[0]
        self._metaworld_finger = finger_step(*self._metaworld_finger, action)
        closing = self._metaworld_finger[0]
        self._set_gripper_command(gripper_command(GRIPPER.max_opening - 2.0 * closing,
                                                  2.0 * abs(closing - before) / POLICY_PERIOD_S))

    twin.Twin.reset, twin.Twin.set_gripper = modelled_reset, modelled_set_gripper
    try:
        yield
    finally:
        twin.Twin.reset, twin.Twin.set_gripper = reset, set_gripper


def openings(embodiment: str, value: float, steps: int) -> list[float]:
    from legion_core.envs import TaskVectorEnv

    env = TaskVectorEnv('push-v3', 1, embodiment=embodiment, layout='full39', goal='random', seed=3,
                        autoreset=False)
    obs, out = env.reset(), []
    for step in range(1, steps + 1):
        obs = env.step(np.array([[0.0, 0.0, 0.0, value]]))[0]
        if step % 3 == 0:
            out.append(round(float(obs[0, 3]), 3))
    env.close()
    return out


def table(args) -> None:
    for value in args.values:
        for name, embodiment, modelled in (('kuka', 'kuka', False), ('twin', 'twin', False),
                                           ('twin + finger model', 'twin', True)):
            with finger_model() if modelled else contextlib.nullcontext():
                row = openings(embodiment, value, args.steps)
            print(json.dumps({'value': value, 'embodiment': name, 'opening_every_3_steps': row}), flush=True)


def success(policy, task: str, episodes: int, seed: int) -> float:
    from legion_core.envs import evaluate

    result = evaluate(lambda obs: policy.act(obs, task), task, episodes, embodiment='twin',
                      layout=policy.layout, goal='random', seed=seed)
    return result['success_rate']


def policy_success(args) -> None:
    from legion_core.policy import load_policy, resolve_policy

    policy = load_policy(resolve_policy(args.policy))
    rows = []
    for task in args.tasks:
        twin_as_is = success(policy, task, args.episodes, args.seed)
        with finger_model():
            modelled = success(policy, task, args.episodes, args.seed)
        rows.append((twin_as_is, modelled))
        print(json.dumps({'task': task, 'twin': twin_as_is, 'finger_model': modelled}), flush=True)
    print(json.dumps({'mean': {'twin': statistics.fmean(r[0] for r in rows),
                               'finger_model': statistics.fmean(r[1] for r in rows)}}))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['legion']:
        from legion_core.cli.main import main as legion

        with finger_model():
            return legion(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    t = sub.add_parser('table', help='finger opening under constant gripper values')
    t.add_argument('--values', type=lambda s: [float(v) for v in s.split(',')], default=[0.15, 0.3, 0.6])
    t.add_argument('--steps', type=int, default=30)
    p = sub.add_parser('policy', help="a policy's success through the twin, as is and with the finger model")
    p.add_argument('policy', help="checkpoint, policy.pt or a shipped policy's name")
    p.add_argument('--tasks', type=lambda s: s.split(','), default=list(LEGION10))
    p.add_argument('--episodes', type=int, default=20)
    p.add_argument('--seed', type=int, default=1_000_003)
    sub.add_parser('legion', help='a legion command with the finger model (the rest of the line)')
    args = parser.parse_args(argv)
    (table if args.command == 'table' else policy_success)(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
