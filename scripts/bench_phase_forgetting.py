"""What does the next phase cost a finished task? Replay one phase of a lifelong run with other settings.

    .venv/bin/python scripts/bench_phase_forgetting.py RUN --phase P --out DIR [KEY=VALUE ...]
        [--eval door-open-v3] [--episodes 20] [--dart EPISODES --noise SIGMA]

Builds DIR as a copy of RUN at the end of phase P: checkpoints/phase_P.pt (the agent, demonstrations
and position after the switch to phase P+1) with the replay rows of tasks 0..P taken from RUN's last.pt
(a fifo replay holds rows in the order written, so these are exactly the rows phase P ended with, their
teacher labels included). KEY=VALUE set DIR's config.yaml before it is resumed (any key, sizes aside:
this is a diagnostic, not a resume of RUN). It then trains phase P+1 to its end, as `legion train
--resume` would, and evaluates the finished tasks (``--eval``, default task P) before and after it on
``--episodes`` held-out episodes each (the run's evaluation seeds). ``--dart`` first adds that many
episodes of task P's phase-end policy with Gaussian noise ``--noise`` on its actions to task P's rows,
labelled with its clean actions (DART, Laskey et al. 2017): rows around the teacher's own path.
Prints one JSON line. RUN is only read.
"""
import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from legion_core.checkpoint import CHECKPOINT_DIR, LAST, load_checkpoint, save_checkpoint
from legion_core.envs import TaskVectorEnv, evaluate
from legion_core.policy import policy_from_state
from legion_core.replay import NStepReturns
from legion_core.trainer import CONFIG_FILE, EVAL_SEED_OFFSET, resume_trainer

DART_SEED = 4242


class PhaseEndedError(Exception):
    """Raised after the replayed phase's end (its evaluation, DPMM summary and checkpoint)."""


def replay_up_to(replay: dict, tasks: int) -> dict:
    """The fifo replay's state holding only the rows of tasks 0..tasks-1 (its first rows)."""
    if replay['config']['policy'] != 'fifo':
        raise SystemExit(f"needs a fifo replay, this run's is {replay['config']['policy']}")
    task = replay['storage']['task'][:int(replay['size'])]
    n = int((task < tasks).sum())
    if int(replay['seen']) > int(replay['config']['capacity']) or not bool((task[:n] < tasks).all()):
        raise SystemExit('the replay wrapped or interleaves tasks: its first rows are not phase P\'s')
    out = dict(replay, size=n, seen=n, position=n, high_water=n)
    out['storage'] = {name: rows[:n].clone() for name, rows in replay['storage'].items()}
    out['runs'] = None if replay['runs'] is None else [run for run in replay['runs'] if run[0] < tasks]
    return out


def append_rows(replay: dict, rows: dict) -> None:
    n, m = int(replay['size']), len(rows['obs'])
    for name, stored in replay['storage'].items():
        new = torch.as_tensor(rows[name]).to(stored.dtype).reshape(m, *stored.shape[1:])
        replay['storage'][name] = torch.cat([stored, new])
    replay.update(size=n + m, seen=n + m, position=n + m, high_water=n + m)
    if replay['runs'] is not None:
        replay['runs'].append([int(rows['task'][0]), n, n + m])


def dart_rows(state: dict, task: int, episodes: int, noise: float) -> tuple[dict, float]:
    """Rows of ``episodes`` noisy episodes of the checkpoint's acting policy on ``task`` (n-step, as the
    run stores them), each labelled with the policy's clean action; and the episodes' success rate."""
    policy, cfg = policy_from_state(state), state['config']
    name, copies = state['tasks'][task], min(10, episodes)
    env = TaskVectorEnv(name, copies, autoreset=False, copy_seed=DART_SEED, seed=DART_SEED,
                        embodiment=cfg['env']['embodiment'], layout=cfg['env']['layout'],
                        episode_length=cfg['env']['episode_length'], goal=cfg['env']['goal'],
                        reward_scale=cfg['env']['reward_scale'], success_bonus=cfg['env']['success_bonus'])
    rng = np.random.default_rng(DART_SEED)
    pending = [NStepReturns(cfg['agent']['n_step'], cfg['agent']['gamma'], 1) for _ in range(copies)]
    parts, successes = [], []
    for _ in range(-(-episodes // copies)):
        obs = env.reset()
        while env.active.any():
            active = env.active.copy()
            action = np.clip(policy.act(obs, name) + rng.normal(0.0, noise, (copies, 4)), -1.0, 1.0)
            next_obs, reward, terminated, truncated, info = env.step(action)
            ended = terminated | truncated
            successes += [bool(info['episode_success'][i]) for i in np.flatnonzero(ended)]
            for i in np.flatnonzero(active):
                one = slice(i, i + 1)
                rows = pending[i].push(obs[one], action[one], reward[one], next_obs[one], terminated[one],
                                       ended[one], np.array([task]))
                if rows is not None:
                    parts.append(rows)
            obs = next_obs
    env.close()
    rows = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    rows['teacher_action'] = policy.act(rows['obs'], name)
    return rows, float(np.mean(successes))


def success(policy, cfg: dict, tasks: list[str], episodes: int, seed: int) -> dict:
    out = {}
    for name in tasks:
        env = TaskVectorEnv(name, episodes, autoreset=False, copy_seed=seed + EVAL_SEED_OFFSET, seed=seed,
                            embodiment=cfg['env']['embodiment'], layout=cfg['env']['layout'],
                            episode_length=cfg['env']['episode_length'], goal=cfg['env']['goal'])
        result = evaluate(lambda obs, name=name: policy.act(obs, name), name, episodes, env=env,
                          until_success=True)
        env.close()
        out[name] = {'rate': result['success_rate'], 'steps': result['episode_success_steps']}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run', type=Path, help='a lifelong run directory (fifo replay, phase checkpoints)')
    parser.add_argument('--phase', type=int, required=True, help='continue from the end of this phase')
    parser.add_argument('--out', type=Path, required=True, help='the copy to train in (replaced)')
    parser.add_argument('--eval', default=None, help='comma-separated tasks (default: task P)')
    parser.add_argument('--episodes', type=int, default=20)
    parser.add_argument('--dart', type=int, default=0, help="noisy episodes of task P's phase-end policy")
    parser.add_argument('--noise', type=float, default=0.3, help='their action noise (std)')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE')
    args = parser.parse_intermixed_args()  # overrides may follow the options
    torch.set_num_threads(1)

    state = load_checkpoint(args.run / CHECKPOINT_DIR / f'phase_{args.phase}.pt')
    cfg = yaml.safe_load((args.run / CONFIG_FILE).read_text())
    for override in args.overrides:
        key, _, value = override.partition('=')
        section, _, name = key.partition('.')
        cfg[section][name] = yaml.safe_load(value)
    cfg['run_dir'] = str(args.out)
    cfg['train']['checkpoint_every'] = 0
    state['config'] = cfg
    replay = load_checkpoint(args.run)['replay']
    state['replay'] = replay_up_to(replay, args.phase + 1)
    del replay
    record = {'run': str(args.run), 'phase': args.phase, 'overrides': args.overrides}
    if args.dart:
        rows, rate = dart_rows(state, args.phase, args.dart, args.noise)
        append_rows(state['replay'], rows)
        record['dart'] = {'episodes': args.dart, 'noise': args.noise, 'rows': len(rows['obs']),
                          'success': rate}
    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / CHECKPOINT_DIR).mkdir(parents=True)
    (args.out / CONFIG_FILE).write_text(yaml.safe_dump(cfg, sort_keys=False))
    save_checkpoint(state, args.out, LAST)

    tasks = args.eval.split(',') if args.eval else [state['tasks'][args.phase]]
    record['before'] = success(policy_from_state(state), cfg, tasks, args.episodes, int(cfg['seed']))
    trainer = resume_trainer(args.out, progress=False)
    finish = trainer._finish_phase

    def finish_and_stop(phase: int, last: bool) -> None:
        finish(phase, last)
        if phase == args.phase + 1:
            raise PhaseEndedError

    trainer._finish_phase = finish_and_stop
    started = time.perf_counter()
    try:
        trainer.run()
    except PhaseEndedError:
        pass
    finally:
        trainer.close()
    wall = round(time.perf_counter() - started)
    record['next_phase'] = {**trainer.position['advanced'][-1], 'wall_s': wall}
    after = load_checkpoint(args.out / CHECKPOINT_DIR / f'phase_{args.phase + 1}.pt')
    record['after'] = success(policy_from_state(after), cfg, tasks, args.episodes, int(cfg['seed']))
    print(json.dumps(record), flush=True)


if __name__ == '__main__':
    main()
