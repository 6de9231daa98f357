"""`legion bench train`: env steps/s and updates/s of our trainer next to stable-baselines3 SAC.

Both sides run the same Meta-World task with one env, one gradient update per env step, batch 512,
actor/critic bodies of 4 x 300, the same warm-up of random steps, and the same torch thread count.
Ours additionally runs the LEGION VAE encoder (3 x 400) on s and s' in every update and a VAE step
every 50 updates: the comparison is LEGION's full update against plain SAC. Repeats alternate between
the two sides (side by side, so that machine noise hits both) and the medians are reported.

``--env-workers W`` steps our ``--num-envs`` copies (default: W, at least 1) in W worker processes
(legion_core.env_workers, as ``train.env_workers``), the env step overlapping the updates as in
``legion train``; actions for all copies come from one batched forward pass and each vector step is
followed by one update per copy. The peer keeps its one in-process env.

The matrix-product floor, in the same run: the multiply-adds of one update of each side, counted from
its nn.Linear layers and the passes its update runs (legion_core.flops), and the fp32 GEMM rate this
CPU sustains at the update's shapes with the same thread count (measured between the repeats). Their
quotient is the most updates per second either side could reach if it did nothing but its products
at that rate; rates are per second of the process's CPU time (wall time on CUDA).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'train', help='training throughput: ours vs stable-baselines3 SAC (JSON)',
        description=('Measure env steps/s and gradient updates/s of the LEGION trainer at the reference '
                     'network sizes (one update per env step) and, in the same run, of '
                     'stable-baselines3 SAC with equal sizes (net_arch 4 x 300, batch 512) on the same '
                     'task, and the matrix-product floor of each side (its multiply-adds per update over '
                     'the GEMM rate measured here). Prints one JSON object with medians over --repeats.'))
    parser.add_argument('--task', default='reach-v3', help='Meta-World task (default reach-v3)')
    parser.add_argument('--steps', type=int, default=200, help='measured env steps per repeat (default 200)')
    parser.add_argument('--warmup', type=int, default=600,
                        help='random steps before measuring (fills the replay; default 600)')
    parser.add_argument('--repeats', type=int, default=3, help='repeats per side (default 3)')
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads for both (default 1)')
    parser.add_argument('--batch-size', type=int, default=512, help='batch size for both (default 512)')
    parser.add_argument('--device', default='cpu', help='torch device for both (default cpu)')
    parser.add_argument('--embodiment', default='sawyer',
                        help='embodiment of both sides\' env: sawyer (default), kuka, twin')
    parser.add_argument('--env-workers', type=int, default=0,
                        help='our env copies in this many worker processes (0, the default: in-process)')
    parser.add_argument('--num-envs', type=int, default=None,
                        help='our env copies stepped together (default: --env-workers, at least 1)')
    parser.add_argument('--optimizer', default='fused', choices=('fused', 'foreach', 'plain'),
                        help='our Adam implementation (default fused)')
    parser.add_argument('--compile', action='store_true', help='torch.compile our networks')
    parser.add_argument('--no-peer', action='store_true', help='measure ours only')
    parser.add_argument('--no-defaults', action='store_true',
                        help='skip the at_defaults block (ours at `legion train`\'s defaults vs SB3 '
                             'at its own)')
    parser.set_defaults(handler=run)


# Product shapes of the update: [batch x width] @ [width x width] (forward, input gradient) and
# [width x batch] @ [batch x width] (weight gradient), at the actor/critic and the VAE widths.
GEMM_WIDTHS = (300, 400)


def _our_agent(args, seed: int):
    import numpy as np
    import torch

    from legion_core.agent import AgentConfig, LegionAgent
    from legion_core.envs import LAYOUTS

    torch.manual_seed(seed)
    emb = np.random.default_rng(seed).normal(size=(1, 384)).astype(np.float32)
    emb /= np.linalg.norm(emb)
    if getattr(args, 'agent_config', None) is not None:  # the at_defaults block: `legion train`'s agent
        config = AgentConfig.from_dict({**args.agent_config, 'optimizer': args.optimizer,
                                        'compile': args.compile, 'num_threads': args.threads})
    else:
        config = AgentConfig(batch_size=args.batch_size, optimizer=args.optimizer, compile=args.compile,
                             num_threads=args.threads)
    return LegionAgent(LAYOUTS[args.layout], 4, emb, config, device=args.device)


def _peer_model(args, seed: int):
    from stable_baselines3 import SAC

    from legion_core.envs import make_gymnasium_env

    env = make_gymnasium_env(args.task, episode_length=150, seed=seed, layout=args.layout,
                             embodiment=args.embodiment)
    sizes = {} if args.peer_defaults else {'policy_kwargs': {'net_arch': [300, 300, 300, 300]},
                                           'batch_size': args.batch_size}
    return SAC('MlpPolicy', env, learning_starts=args.warmup, train_freq=1, gradient_steps=1,
               buffer_size=args.warmup + args.steps + 10, device=args.device, seed=seed, verbose=0, **sizes)


def measure_gemm(args) -> dict[str, dict[str, float]]:
    """GFLOP/s per product shape of the update (see legion_core.flops.gemm_gflops)."""
    from legion_core.flops import gemm_gflops

    b, out = args.batch_size, {}
    for width in GEMM_WIDTHS:
        out[f'{b}x{width} @ {width}x{width}'] = gemm_gflops(b, width, width, device=args.device)
        out[f'{width}x{b} @ {b}x{width}'] = gemm_gflops(width, b, width, transpose_a=True, device=args.device)
    return out


def measure_ours(args, seed: int) -> dict[str, float]:
    import numpy as np
    import torch

    from legion_core.envs import LAYOUTS, TaskVectorEnv
    from legion_core.replay import ReplayBuffer

    agent = _our_agent(args, seed)
    n = args.num_envs
    kwargs = {'seed': seed, 'layout': args.layout, 'embodiment': args.embodiment}
    if args.env_workers:
        from legion_core.env_workers import EnvPool

        env = EnvPool(args.task, n, workers=args.env_workers, **kwargs)
    else:
        env = TaskVectorEnv(args.task, n, **kwargs)
    vector_steps = -(-args.steps // n)  # the measured env steps, rounded up to whole vector steps
    replay = ReplayBuffer(args.warmup + vector_steps * n + n, LAYOUTS[args.layout], 4, 1,
                          device=args.device, seed=seed)
    rng = np.random.default_rng(seed)
    task = np.zeros(n, dtype=np.int64)
    batch = agent.config.batch_size

    def learn():
        for _ in range(n):  # one update per env step, as legion train's default
            agent.update(replay.sample(batch))

    def step(action, updates):
        # In workers the copies step while this process updates (legion train's overlap); the
        # updates then see the replay up to the previous transition.
        nonlocal obs
        if args.env_workers:
            env.step_async(action)
            updates()
            next_obs, reward, terminated, _truncated, info = env.step_wait()
        else:
            next_obs, reward, terminated, _truncated, info = env.step(action)
            updates()
        replay.add(obs, action, reward, info['final_obs'], terminated.astype(np.float32), task)
        obs = next_obs

    try:
        obs = env.reset()
        for _ in range(-(-args.warmup // n)):
            step(rng.uniform(-1, 1, (n, 4)).astype(np.float32), lambda: None)
        for _ in range(5):  # first calls allocate / compile: not part of the steady state
            agent.update(replay.sample(batch))
        if args.device.startswith('cuda'):
            torch.cuda.synchronize()
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(vector_steps):
            step(agent.act(obs, task, deterministic=False), learn)  # all copies in one forward pass
        agent.pop_metrics()  # the one host sync, as in training
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        env.close()
    steps = vector_steps * n
    # cpu: this process's CPU time (the learner's); the workers' is not in it.
    return {'env_steps_per_s': steps / wall, 'updates_per_s': steps / wall, 'cpu_updates_per_s': steps / cpu}


def measure_peer(args, seed: int) -> dict[str, float]:
    import torch

    torch.set_num_threads(args.threads)
    model = _peer_model(args, seed)
    model.learn(total_timesteps=args.warmup + 5)  # warm-up steps and the first 5 updates
    if args.device.startswith('cuda'):
        torch.cuda.synchronize()
    updates0 = model._n_updates
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=args.steps, reset_num_timesteps=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    updates = model._n_updates - updates0
    return {'env_steps_per_s': args.steps / wall, 'updates_per_s': updates / wall,
            'cpu_updates_per_s': updates / cpu}


def run(args: argparse.Namespace) -> int:
    if args.num_envs is None:
        args.num_envs = max(args.env_workers, 1)
    for name in ('steps', 'warmup', 'repeats', 'threads', 'batch_size', 'num_envs'):
        if getattr(args, name) < 1:
            print(f'legion bench train: --{name.replace("_", "-")} must be >= 1', file=sys.stderr)
            return 2
    if not 0 <= args.env_workers <= args.num_envs:
        print(f'legion bench train: --env-workers ({args.env_workers}) must be between 0 and --num-envs '
              f'({args.num_envs})', file=sys.stderr)
        return 2
    if args.warmup < args.batch_size:
        print(f'legion bench train: --warmup ({args.warmup}) must be >= --batch-size ({args.batch_size})',
              file=sys.stderr)
        return 2
    import torch

    from legion_core.envs import available_embodiments
    from legion_core.tasks import normalise_task_name

    try:
        args.task = normalise_task_name(args.task)
        if args.embodiment not in available_embodiments():
            raise ValueError(f'unknown embodiment {args.embodiment!r}; available: '
                             f'{", ".join(available_embodiments())}')
    except ValueError as error:
        print(f'legion bench train: {error}', file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    args.agent_config, args.peer_defaults, args.layout = None, False, 'legion12'  # the reference run
    ours, peer, gemm = [], [], []
    for repeat in range(args.repeats):
        ours.append(measure_ours(args, seed=repeat))
        if not args.no_peer:
            peer.append(measure_peer(args, seed=repeat))
        gemm.append(measure_gemm(args))
    result = {
        'device': args.device if not args.device.startswith('cuda')
        else f'{args.device} ({torch.cuda.get_device_name(0)})',
        'task': args.task, 'threads': args.threads, 'batch_size': args.batch_size, 'steps': args.steps,
        'repeats': args.repeats, 'optimizer': args.optimizer, 'compile': args.compile,
        'embodiment': args.embodiment, 'num_envs': args.num_envs, 'env_workers': args.env_workers,
        'env_steps_per_s': statistics.median(r['env_steps_per_s'] for r in ours),
        'updates_per_s': statistics.median(r['updates_per_s'] for r in ours),
        'cpu_updates_per_s': statistics.median(r['cpu_updates_per_s'] for r in ours),
        'load_average_1min': os.getloadavg()[0],
        'runs': {'ours': ours, 'peer': peer},
    }
    if peer:
        result['peer'] = 'stable-baselines3 SAC, net_arch 4 x 300'
        result['peer_env_steps_per_s'] = statistics.median(r['env_steps_per_s'] for r in peer)
        result['peer_updates_per_s'] = statistics.median(r['updates_per_s'] for r in peer)
        result['peer_cpu_updates_per_s'] = statistics.median(r['cpu_updates_per_s'] for r in peer)
        result['ratio_vs_peer'] = result['updates_per_s'] / result['peer_updates_per_s']
        # Updates per second of the process's own CPU time: robust to other load on a shared machine.
        result['ratio_vs_peer_cpu_time'] = result['cpu_updates_per_s'] / result['peer_cpu_updates_per_s']
    result.update(_floor(args, ours, peer, gemm))
    if not args.no_defaults:
        result['at_defaults'] = _at_defaults(args)
    print(json.dumps(result))
    return 0


def _at_defaults(args) -> dict:
    """Ours at `legion train`'s default agent and observation layout against SB3 SAC at its own
    defaults (MlpPolicy 256 x 256, batch 256) on the same task: what a user of each gets, per update."""
    from legion_core.config import compose_config, to_container

    cfg = to_container(compose_config([]))
    args.agent_config, args.peer_defaults = cfg['agent'], True
    args.layout = cfg['env']['layout']
    ours, peer = [], []
    for repeat in range(args.repeats):
        ours.append(measure_ours(args, seed=repeat))
        if not args.no_peer:
            peer.append(measure_peer(args, seed=repeat))
    a = cfg['agent']
    out = {
        'layout': args.layout,
        'ours': {'actor': f'{a["actor_body"]} {a["actor_layers"] + 1} x {a["actor_hidden"]}',
                 'critic': f'{a["critic_body"]} {a["critic_layers"] + 1} x {a["critic_hidden"]}',
                 'vae': f'{a["vae_layers"]} x {a["vae_hidden"]}', 'batch_size': a['batch_size'],
                 'cpu_updates_per_s': statistics.median(r['cpu_updates_per_s'] for r in ours),
                 'updates_per_s': statistics.median(r['updates_per_s'] for r in ours)},
        'runs': {'ours': ours, 'peer': peer},
    }
    if peer:
        out['peer'] = {'net_arch': '256 x 256', 'batch_size': 256,
                       'cpu_updates_per_s': statistics.median(r['cpu_updates_per_s'] for r in peer),
                       'updates_per_s': statistics.median(r['updates_per_s'] for r in peer)}
        out['ratio_vs_peer_cpu_time'] = out['ours']['cpu_updates_per_s'] / out['peer']['cpu_updates_per_s']
    return out


def _floor(args, ours: list[dict], peer: list[dict], gemm: list[dict]) -> dict:
    """The matrix-product floor of both sides and how close each comes to it (keys of the JSON)."""
    from legion_core.flops import legion_update_macs, sb3_sac_update_macs

    # CPU-time rates on the CPU, where other load on a shared machine inflates wall time; wall on CUDA.
    basis = 'wall' if args.device.startswith('cuda') else 'cpu'
    rate_key = 'updates_per_s' if basis == 'wall' else 'cpu_updates_per_s'
    shapes = {shape: statistics.median(run[shape][basis] for run in gemm) for shape in gemm[0]}
    # The best shape's rate: the floor is then a bound no side can beat at these shapes, generous to us.
    gflops = max(shapes.values())
    macs = legion_update_macs(_our_agent(args, seed=0), args.batch_size)
    flops = 2 * macs['per_update']
    out = {
        'gemm_gflops': gflops, 'gemm_gflops_by_shape': shapes,
        'gemm_rate_basis': 'process CPU time' if basis == 'cpu' else 'wall time',
        'flops_per_update': flops,
        'floor_updates_per_s': gflops * 1e9 / flops,
        'fraction_of_floor': statistics.median(r[rate_key] for r in ours) * flops / (gflops * 1e9),
        'flops_breakdown': {'ours': {'sac_update': 2 * macs['sac'], 'vae_step': 2 * macs['vae_step'],
                                     'vae_update_every': macs['vae_update_every'],
                                     'parts': {k: 2 * v for k, v in macs['parts'].items()}}},
    }
    if peer:
        model = _peer_model(args, seed=0)
        peer_macs = sb3_sac_update_macs(model.actor, model.critic, args.batch_size)
        peer_flops = 2 * peer_macs['per_update']
        peer_rate = statistics.median(r[rate_key] for r in peer)
        out.update({
            'peer_flops_per_update': peer_flops,
            'peer_floor_updates_per_s': gflops * 1e9 / peer_flops,
            'peer_fraction_of_floor': peer_rate * peer_flops / (gflops * 1e9),
            # Ours at the GEMM ceiling against the peer as measured: the best ratio equal semantics allow.
            'max_ratio_at_equal_semantics': gflops * 1e9 / flops / peer_rate,
        })
        out['flops_breakdown']['peer'] = {'parts': {k: 2 * v for k, v in peer_macs['parts'].items()}}
    return out
