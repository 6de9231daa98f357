"""Reference trajectories of the chain (legion_kuka.chain.ChainRunner), the training env of
``env.embodiment=twin``: fixed random action sequences, their joint positions after every policy step and
the episodes' records. ``python chain_reference.py`` records them into data/chain_reference.npz (first
with the chain before it used the commander; again for the gripper model of legion_kuka.gripper, which
changed only the fingers' opening, obs[3], by up to 0.19 of its range, and the objects they touch by up
to 9 mm: same successes, steps and filter interventions; and again when sim2real began to drive the
gripper as Meta-World's finger (2026-12-07): obs[3] by up to 0.59, objects by up to 9 mm, joints by up to
0.9 mrad, the same successes, steps, filter interventions and reasons); test_chain_reference.py checks
the chain still matches."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASKS = ('drawer-close-v3', 'window-close-v3')
SEEDS = (0, 1, 2)
STEPS = 40
PATH = Path(__file__).parent / 'data' / 'chain_reference.npz'
FIELDS = ('success', 'steps', 'first_success_step', 'sim_time_s', 'ik_failures', 'safety_interventions',
          'max_hand_speed_m_s', 'max_joint_speed', 'max_tool_tilt_rad')


def actions(task: str, seed: int) -> np.ndarray:
    """Random actions, each held for 5 steps: the hand travels (to the box's edges too) and the filter
    steps in when an action turns."""
    rng = np.random.default_rng([seed, TASKS.index(task)])
    return np.repeat(rng.uniform(-1.0, 1.0, size=(STEPS // 5, 4)), 5, axis=0)


def run(task: str, seed: int) -> dict[str, np.ndarray]:
    from legion_kuka.chain import ChainRunner

    runner = ChainRunner(None, task, seed=seed, layout='full39', stop_on_success=False)
    runner.reset_episode()
    result = runner.begin()
    positions, observations = [], []
    for action in actions(task, seed):
        runner.act(action, result)
        positions.append(runner.twin.joint_state().position.copy())
        observations.append(runner.observe())
    record = {'positions': np.array(positions), 'observations': np.array(observations)}
    for name in FIELDS:
        value = getattr(result, name)
        record[name] = np.asarray(-1 if value is None else value, dtype=float)
    record['reasons'] = np.array(json.dumps({'safety': result.safety_reasons, 'estop': result.estop_reasons},
                                            sort_keys=True))
    return record


def record_all() -> dict[str, np.ndarray]:
    out = {}
    for task in TASKS:
        for seed in SEEDS:
            for name, value in run(task, seed).items():
                out[f'{task}/{seed}/{name}'] = value
    return out


if __name__ == '__main__':
    np.savez(PATH, **record_all())
    print(f'wrote {PATH}')
