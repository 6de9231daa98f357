"""`legion kuka ...` and `legion bench ik` (contributed through the legion.commands / legion.benchmarks
entry points). Heavy imports (MuJoCo) happen inside the handlers so that `legion --help` stays instant.
"""
from __future__ import annotations

import argparse
import json
import math
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `legion kuka` with its sub-commands."""
    parser = subparsers.add_parser(
        'kuka', help='the KUKA LBR iiwa 7 embodiment: robot description, experts',
        description='Tools for the KUKA LBR iiwa 7 R800 embodiment: print its robot description '
                    '(URDF with the joint names of a ROS 2 driver) and its datasheet numbers.')
    kuka_sub = parser.add_subparsers(dest='kuka_command', metavar='KUKA_COMMAND')

    urdf = kuka_sub.add_parser(
        'urdf', help='print the iiwa7 URDF with the joint names of a driver',
        description='Print (or write) the iiwa 7 R800 + gripper URDF. --profile picks the joint and '
                    'link names: lbr (lbr_fri_ros2_stack: lbr_A1..lbr_A7) or iiwa_ros2 (joint_a1..).')
    urdf.add_argument('--profile', default='lbr', choices=_profiles(),
                      help='joint-name profile (default lbr)')
    urdf.add_argument('--output', '-o', help='write to this file instead of standard output')
    urdf.set_defaults(handler=_urdf)

    info = kuka_sub.add_parser(
        'info', help='print the datasheet table, home posture and Meta-World base pose as JSON',
        description='Print the numbers the kinematics, the twin and the safety filter use: link offsets, '
                    'joint limits (rad, rad/s), masses, home posture, where the base stands in Meta-World.')
    info.add_argument('--profile', default='lbr', choices=_profiles(),
                      help='joint-name profile (default lbr)')
    info.set_defaults(handler=_info)

    workcell = kuka_sub.add_parser(
        'workcell', help='Meta-World\'s experts do a multi-step job in one workcell, through the chain',
        description='Put the given tasks\' stations around the arm in one MuJoCo scene (up to 3: '
                    'ahead, left, right), then for each task in turn move the arm to its station '
                    '(lift, swing about A1, down, through the safety filter) and run Meta-World\'s '
                    'scripted expert there through real2sim -> sim2real -> safety filter -> twin. '
                    'Prints per step the success over the seeds, the transit and episode times.',
        epilog='example: legion kuka workcell drawer-close-v3 button-press-topdown-v3 window-close-v3 '
               '--seeds 3')
    workcell.add_argument('tasks', nargs='+', metavar='TASK', help='the job\'s steps (Meta-World task names)')
    workcell.add_argument('--seeds', type=_positive, default=1,
                          help='run the job with seeds 0..N-1 (goal variants; default 1)')
    workcell.add_argument('--json', action='store_true', help='print one JSON object instead of a table')
    workcell.set_defaults(handler=_workcell)

    _register_experts(kuka_sub)
    _register_video(kuka_sub)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


def _register_video(kuka_sub) -> None:
    from legion_kuka import video  # numpy only until it renders

    parser = kuka_sub.add_parser(
        'video', help='render the twin\'s state logs into an MP4 or GIF (what `legion sim --video` does)',
        description='Rebuild the twin\'s scene of each state log (written by the sim_bridge with its '
                    'state_log parameter, e.g. under runs/bags/<run>.states/ by `legion sim --video`), put '
                    'it at each recorded state and draw it offscreen (MuJoCo with EGL, no GPU or display '
                    'needed), one frame per 1/fps of the twin\'s time, with the instruction\'s active step '
                    'and each step\'s result written on the frames.',
        epilog='example: legion kuka video runs/bags/sim_20261205_101500_000000.states/*.npz -o job.mp4')
    video.add_arguments(parser)
    parser.set_defaults(handler=video.run)


def _workcell(args: argparse.Namespace) -> int:
    import statistics

    from legion_kuka.chain import expert_policy
    from legion_kuka.workcell import run_sequence, station_order, station_yaws

    try:
        stations = station_order(args.tasks)
        yaws = dict(zip(stations, station_yaws(len(stations)), strict=True))
        steps = [(task, expert_policy(task)) for task in args.tasks]
    except ValueError as error:
        print(f'legion kuka workcell: {error}', file=sys.stderr)
        return 2
    runs = [run_sequence(steps, seed=seed, layout='full39', stations=stations) for seed in range(args.seeds)]
    rows = []
    for index, task in enumerate(args.tasks):
        results = [run[index] for run in runs]
        rows.append({'step': index + 1, 'task': task, 'station_yaw_deg': round(math.degrees(yaws[task])),
                     'success_rate': sum(r.success for r in results) / len(results),
                     'transit_s_median': round(statistics.median(r.transit.duration_s for r in results), 1),
                     'transit_reached': all(r.transit.reached for r in results),
                     'episode_s_median': round(statistics.median(r.episode.sim_time_s for r in results), 1)})
    report = {'stations': stations, 'seeds': args.seeds, 'steps': rows}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f'workcell stations: {", ".join(stations)} (ahead, left, right); seeds 0..{args.seeds - 1}')
    print(f'{"step":>4}  {"task":<26} {"yaw":>5}  {"success":>7}  {"transit s":>9}  {"episode s":>9}')
    for row in rows:
        print(f'{row["step"]:>4}  {row["task"]:<26} {row["station_yaw_deg"]:>5}  {row["success_rate"]:>7.2f}'
              f'  {row["transit_s_median"]:>9.1f}  {row["episode_s_median"]:>9.1f}')
    return 0


def _register_experts(kuka_sub: argparse._SubParsersAction) -> None:
    """`legion kuka experts` lives in legion_kuka.experts_cli, a module that may not exist yet."""
    try:
        from legion_kuka.experts_cli import register as register_experts
    except ImportError as error:
        if error.name not in ('legion_kuka.experts_cli', None):
            raise  # the module exists but one of its imports is broken: say so
        return
    register_experts(kuka_sub)


def _profiles() -> list[str]:
    from legion_kuka.description import JOINT_NAME_PROFILES
    return sorted(JOINT_NAME_PROFILES)


def _urdf(args: argparse.Namespace) -> int:
    from legion_kuka.description import urdf_text

    text = urdf_text(args.profile)
    if args.output:
        with open(args.output, 'w') as handle:
            handle.write(text)
        print(f'wrote {args.output}', file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _info(args: argparse.Namespace) -> int:
    from legion_kuka import description as desc

    sheet = desc.IIWA7
    print(json.dumps({
        'model': sheet.model,
        'joint_names': desc.joint_names(args.profile),
        'link_offsets_m': sheet.link_offsets,
        'reach_m': sheet.reach,
        'position_limits_rad': sheet.position_limits,
        'velocity_limits_rad_s': sheet.velocity_limits,
        'effort_limits_nm': sheet.effort_limits,
        'link_masses_kg': sheet.link_masses,
        'mass_kg': round(sheet.mass, 6),
        'gripper': {'finger_stroke_m': desc.GRIPPER.finger_stroke, 'tcp_offset_m': desc.GRIPPER.tcp_offset},
        'home_rad': desc.HOME,
        'metaworld_base_pose_xyz_yaw': desc.METAWORLD_BASE_POSE,
        'workspace_low_m': desc.WORKSPACE_LOW,
        'workspace_high_m': desc.WORKSPACE_HIGH,
        'urdf': str(desc.urdf_path()),
    }, indent=2))
    return 0


# --------------------------------------------------------------------------- legion bench ik
def register_bench_ik(subparsers: argparse._SubParsersAction) -> None:
    """Add `legion bench ik`."""
    parser = subparsers.add_parser(
        'ik', help='inverse kinematics speed and success over the Meta-World workspace (JSON)',
        description=(
            'Time the iiwa7 IK the way sim2real uses it: single targets along a random walk through the '
            'Meta-World hand workspace (robot base frame, 1 cm steps like one Meta-World action), each '
            'warm-started from the previous solution; also cold starts from the home posture and one '
            'vectorised batch. Targets are tool-down poses in the workspace box, which the tests show '
            'to be reachable; any_orientation solves poses taken from the forward kinematics of random '
            'postures. Prints one JSON object; goals: median <= 200 us, success >= 0.99.'))
    parser.add_argument('--targets', type=_positive, default=5000,
                        help='warm-started single-target solves along the walk (default 5000)')
    parser.add_argument('--cold', type=_positive, default=1000,
                        help='single-target solves from the home posture (default 1000)')
    parser.add_argument('--batch', type=_positive, default=2000,
                        help='targets solved in one vectorised call (default 2000)')
    parser.add_argument('--step', type=float, default=0.01, help='walk step length in m (default 0.01)')
    parser.add_argument('--tool', choices=('tcp', 'flange'), default='tcp', help='tool point (default tcp)')
    parser.add_argument('--position-margin-deg', type=float, default=5.0,
                        help='keep solutions this far inside the joint limits (default 5, the safety '
                             "filter's margin)")
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar on standard error')
    parser.set_defaults(handler=_bench_ik)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be a positive integer, got {text}')
    return value


def run_bench_ik(targets: int = 5000, cold: int = 1000, batch: int = 2000, step: float = 0.01,
                 tool: str = 'tcp', seed: int = 0, progress: bool = False,
                 position_margin_deg: float = 5.0) -> dict:
    """The measurements of `legion bench ik` as a dict (microseconds, rates in [0, 1])."""
    import math
    import platform
    import time

    import numpy as np
    from tqdm import tqdm

    from legion_kuka import description as desc
    from legion_kuka.kinematics import IiwaKinematics

    if not 0 < step <= 0.1:
        raise ValueError(f'--step must be in (0, 0.1] m, got {step}')
    kin = IiwaKinematics(tool=tool, position_margin=math.radians(position_margin_deg))
    low, high = np.array(desc.WORKSPACE_LOW), np.array(desc.WORKSPACE_HIGH)
    if tool == 'flange':  # same tool-down poses, the flange sits tcp_offset higher
        lift = np.array([0.0, 0.0, desc.GRIPPER.tcp_offset])
        low, high = low + lift, high + lift
    rng = np.random.default_rng(seed)
    clock = time.perf_counter_ns

    # the walk: start at home's tool point, random directions, reflected into the box
    start, _ = kin.fk(np.asarray(desc.HOME))
    walk = np.empty((targets, 3))
    point = start.copy()
    for i in range(targets):
        direction = rng.normal(size=3)
        point = point + step * direction / np.linalg.norm(direction)
        point = np.where(point < low, 2 * low - point, point)
        point = np.where(point > high, 2 * high - point, point)
        walk[i] = point
    for _ in range(200):  # warm the interpreter's caches before timing
        kin.ik(walk[0], np.asarray(desc.HOME))

    def timed(goals, start_from_previous, label):
        times = np.empty(len(goals))
        iterations = np.empty(len(goals))
        success = np.empty(len(goals), dtype=bool)
        errors = np.empty(len(goals))
        q = np.asarray(desc.HOME, dtype=float)
        home = q.copy()
        for i in tqdm(range(len(goals)), desc=label, disable=not progress, file=sys.stderr):
            goal = goals[i]
            t0 = clock()
            result = kin.ik(goal, q if start_from_previous else home)
            times[i] = (clock() - t0) / 1000.0
            iterations[i], success[i], errors[i] = result.iterations, result.success, result.position_error
            if start_from_previous and result.success:
                q = result.q
        return times, iterations, success, errors

    warm_t, warm_it, warm_ok, warm_err = timed(walk, True, 'ik warm')
    cold_goals = rng.uniform(low, high, size=(cold, 3))
    cold_t, cold_it, cold_ok, _ = timed(cold_goals, False, 'ik cold')
    batch_goals = rng.uniform(low, high, size=(batch, 3))
    t0 = clock()
    batch_result = kin.ik(batch_goals, np.asarray(desc.HOME))
    batch_us = (clock() - t0) / 1000.0
    # any orientation: poses from the FK of random postures within the limits whose tool point lies
    # in the box (reachable by construction), solved from home in one batch
    postures = rng.uniform(kin.lower, kin.upper, size=(100 * batch, 7))
    pose_pos, pose_rot = kin.fk(postures)
    inside = np.all((pose_pos >= low) & (pose_pos <= high), axis=1)
    pose_pos, pose_rot = pose_pos[inside][:batch], pose_rot[inside][:batch]
    posed = kin.ik(pose_pos, np.asarray(desc.HOME), target_rot=pose_rot, max_iters=200)
    posed_all = kin.ik(pose_pos, np.asarray(desc.HOME), target_rot=pose_rot, max_iters=200,
                       restarts=len(kin.restart_postures))

    median, p99 = float(np.median(warm_t)), float(np.percentile(warm_t, 99))
    success = float(warm_ok.mean())
    return {
        'ik_solve_us_median': round(median, 1),
        'ik_solve_us_p99': round(p99, 1),
        'ik_success_rate': round(success, 5),
        'ik_iterations_mean': round(float(warm_it.mean()), 3),
        'ik_position_error_max_m': float(warm_err[warm_ok].max()) if warm_ok.any() else None,
        'targets': targets,
        'step_m': step,
        'cold': {
            'targets': cold,
            'solve_us_median': round(float(np.median(cold_t)), 1),
            'solve_us_p99': round(float(np.percentile(cold_t, 99)), 1),
            'success_rate': round(float(cold_ok.mean()), 5),
            'iterations_median': float(np.median(cold_it)),
            'iterations_max': int(cold_it.max()),
        },
        'batch': {
            'targets': batch,
            'total_ms': round(batch_us / 1000.0, 2),
            'us_per_target': round(batch_us / batch, 2),
            'success_rate': round(float(batch_result.success.mean()), 5),
        },
        'any_orientation': {
            'targets': len(pose_pos),
            'success_rate': round(float(posed.success.mean()), 5),
            'success_rate_all_restarts': round(float(posed_all.success.mean()), 5),
            'iterations_median': float(np.median(posed.iterations)),
        },
        'tool': tool,
        'position_margin_deg': position_margin_deg,
        'workspace_low_m': low.tolist(),
        'workspace_high_m': high.tolist(),
        'goals': {'median_us': 200, 'success_rate': 0.99},
        'meets_goals': bool(median <= 200 and success >= 0.99),
        'python': platform.python_version(),
        'numpy': np.__version__,
        'machine': platform.machine(),
    }


def _bench_ik(args: argparse.Namespace) -> int:
    try:
        report = run_bench_ik(args.targets, args.cold, args.batch, args.step, args.tool, args.seed,
                              progress=not args.no_progress and sys.stderr.isatty(),
                              position_margin_deg=args.position_margin_deg)
    except ValueError as error:
        print(f'legion bench ik: {error}', file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0
