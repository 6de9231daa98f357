"""``legion sim``: bring up the sim graph (the MuJoCo twin and every LEGION node), run one instruction on
it, print each step's result, leave a bag and, on request, a video.

Reads top to bottom as the command runs: check the arguments and plan the scene (:func:`plan_scenes`,
before anything starts), start the twin on the first scene, then the rest of the graph, send the
instruction and follow it (the helpers of :mod:`legion_ros.instruct_cli`, as ``legion instruct`` does)
while :class:`SceneFollower` puts each step's task in front of the arm, stop the graph, report.

The client takes no part in control: it sends the instruction, sets the twin's ``task`` parameter when a
step needs another scene (what ``ros2 param set /legion/sim_bridge task ...`` does) and reads status.
The twin announces each scene's jump on ``/legion/scene`` and sim2real re-anchors there; nothing here
resets sim2real's e-stop (only an operator may, docs/real-robot.md).

Exit codes as ``legion instruct``'s, with 3 for a graph that failed (a node died).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass

from legion_ros.instruct_cli import (
    EXIT_FAILED,
    EXIT_NO_GRAPH,
    EXIT_REJECTED,
    EXIT_SUCCEEDED,
    StatusFollower,
    cancel_running,
    describe_event,
    follow_instruction,
    spin_until,
)
from legion_ros.interfaces import (
    ACTIVE_STEP,
    INSTRUCTION,
    RECORDER_STATUS,
    SIM_BRIDGE_STATUS,
    SIM_SET_PARAMETERS,
    BadMessageError,
)

FIRST_SCENE = 'reach-v3'  # the twin's scene while no instruction is known (the graph waits for one)

SIM_EPILOG = """\
examples:
  legion sim --policy expert -i "reach the goal, then push the puck to the goal"
  legion sim --checkpoint runs/legion10/policy.pt -i "open the window and then close the window" --json
  legion sim --checkpoint legion10_twin -i "press the button from the top, then open the faucet"
  legion sim --policy expert          bring the graph up and wait for `legion instruct` (Ctrl-C ends)
  legion sim --seed 1 -i "reach the goal, then close the drawer" --video job.mp4

Scenes (--scene): `workcell` (the default where one workcell holds the job) puts every task of the
instruction around the arm at once, one station per task (legion_kuka.workcell; seed --seed): what
a step moves stays moved, and the arm travels from station to station by joint motions through the
safety filter (back, up, swing, down: about 25-40 s at the default 10 % joint speed). `workcells`
(the default otherwise: more than 3 distinct tasks, or two tasks on one object such as window-open and
window-close) runs the job as a sequence of such workcells (legion_kuka.job): a step that does not fit
the current one loads the next with every object's state carried over (the window a step opened is the
one the next closes), and the arm jumps to that step's start. `per-step` loads each step's own task
scene into the twin instead, nothing carried over. A jump is announced by the twin, and sim2real's
safety filter starts over there.

Video (--video FILE.mp4 or .gif, off by default): the twin records its scene and joint positions at
25 Hz of its own time while the job runs (a row copy every 4th control cycle, nothing drawn); after
the graph has stopped, a separate process rebuilds the scene and draws it offscreen (MuJoCo with
software EGL: no GPU, no display), one frame per 40 ms of twin time, with the active step and each
step's result on the frames, from just before the first step to just after the last. It takes
0.1-0.15 s a frame on two CPU cores (640x360): 5-10 minutes for the 3-step demo job (87-173 s of
twin time, 1.2-1.9 MB). The state logs stay beside the bag (<bag>.states/): `legion kuka video` draws
them again.
"""

def register_sim(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'sim', help='run a language instruction on the simulated KUKA (MuJoCo twin + LEGION nodes)',
        description='Bring up the simulated graph (MuJoCo twin behind the lbr/iiwa_ros2 driver interface,\n'
                    'instruction, task inference, policy, real2sim, sim2real with the safety filter,\n'
                    'recorder), execute a (multi-step) natural-language instruction on it, print each\n'
                    'step\'s success and leave a rosbag2 (MCAP) of the run. Without --instruction the\n'
                    'graph stays up for `legion instruct` until Ctrl-C.\n\n'
                    'Exit status: 0 all steps succeeded, 1 a step failed, 2 rejected or bad usage,\n'
                    '3 the graph failed (a node died).',
        epilog=SIM_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--instruction', help='what to do, e.g. "reach the goal, then push the puck"')
    parser.add_argument('--policy', choices=('legion', 'expert'), default='legion',
                        help='legion: the LEGION actor of --checkpoint (default); expert: Meta-World\'s '
                             'scripted policy of each step\'s task')
    parser.add_argument('--checkpoint', default='', metavar='PATH',
                        help='LEGION policy artefact, run directory or the name of a policy shipped with '
                             'legion_core (legion10_recipe, all ten skills, the default; legion10_twin; '
                             'twin_demo3)')
    parser.add_argument('--seed', type=int, default=0, help='goal variant of every step\'s scene (default 0)')
    parser.add_argument('--driver', choices=('lbr', 'iiwa_ros2'), default='lbr',
                        help='driver interface the twin speaks (default lbr)')
    parser.add_argument('--scene', choices=('auto', 'workcell', 'workcells', 'per-step'), default='auto',
                        help='workcell: all the instruction\'s tasks around the arm at once (up to 3); '
                             'workcells: a sequence of workcells, every object\'s state carried over; '
                             'per-step: the twin reloads each step\'s task scene; auto (default): workcell '
                             'when one holds the job, else workcells')
    parser.add_argument('--step-timeout', type=float, default=None, metavar='S',
                        help='a step that has not succeeded after S seconds of the twin\'s time fails '
                             '(default 60, in a workcell 120: the move to the station counts)')
    parser.add_argument('--timeout', type=float, default=None, metavar='S',
                        help='give up on the whole instruction after S seconds')
    parser.add_argument('--bag-dir', default='runs/bags',
                        help='where the run\'s bag goes (default runs/bags)')
    parser.add_argument('--no-record', action='store_true', help='do not record a bag')
    parser.add_argument('--video', metavar='FILE', default=None,
                        help='after the run, render the job into FILE (.mp4, or .gif) from the twin\'s '
                             'recorded states, the active step written on the frames (see below; off by '
                             'default)')
    parser.add_argument('--video-size', metavar='WxH', default='640x360',
                        help='frame size of --video in pixels (default 640x360)')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object: {"steps": [{"instruction", "skill", "success", '
                             '"duration_s"}], "success", "state", "scene", "stations", "bag", "video", ...}')
    parser.set_defaults(handler=run_sim)

def run_sim(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone
    from pathlib import Path

    if args.checkpoint:  # a path, or the name of a shipped policy (legion10_twin): the nodes get a path
        from legion_core.policy import resolve_policy
        args.checkpoint = str(resolve_policy(args.checkpoint))
    checked = _check_arguments(args)
    if isinstance(checked, int):
        return checked
    plan, skills, stations, job, video_size = checked
    bag_name = 'sim_' + datetime.now(timezone.utc).strftime('%Y%m%d_%H%M%S_%f')
    bag_dir = Path(args.bag_dir)
    log_path = bag_dir / f'{bag_name}.log'
    log_path.parent.mkdir(parents=True, exist_ok=True)
    first_task = plan[0].task if plan else FIRST_SCENE
    try:
        nodes, values = _sim_nodes(args, first_task, bag_name, bag_dir / f'{bag_name}.params', skills)
    except Exception as error:  # GraphError, a bad config directory
        print(f'legion sim: {error}', file=sys.stderr)
        return EXIT_REJECTED
    started = time.monotonic()
    with open(log_path, 'w', encoding='utf-8') as log:
        sim = SimGraph(nodes, values, log, int(args.seed), stations, job=job,
                       state_log_dir=bag_dir / f'{bag_name}.states' if args.video else None)
        code, final, message, stop_code = _run_graph(sim, args, first_task, log_path)
    bag_path = bag_dir / bag_name
    result = _sim_result(final, args, plan, bag_path if not args.no_record and bag_path.exists() else None,
                         time.monotonic() - started, log_path, stations, job)
    if message:
        result['error'] = message
        say(message + f' (see {log_path})')
    if stop_code and code == EXIT_SUCCEEDED:
        say(f'the graph did not stop cleanly (see {log_path})')
    if args.video is not None:
        result.update(render_video(args.video, video_size, sim.state_log_dir, result, say))
    if args.instruction is None and not message:  # the graph served `legion instruct` until Ctrl-C
        return code
    print_result(result, args.json)
    return code


def say(text: str) -> None:
    print(f'[legion sim] {text}', file=sys.stderr, flush=True)


def _check_arguments(args: argparse.Namespace):
    """Everything that can be refused before a process starts: (plan, skills, stations, job, video
    size), or the exit code after saying why."""
    from legion_ros.instructions import InstructionRejectedError
    from legion_ros.node_base import NodeConfigError

    video_size = None
    if args.video is not None:
        problem = _video_problem(args)
        if problem:
            print(f'legion sim: {problem}', file=sys.stderr)
            return EXIT_REJECTED
        from legion_kuka.video import parse_size
        video_size = parse_size(args.video_size)
    plan = None
    skills = policy_skills(args)
    if args.instruction is not None:
        try:
            plan = plan_scenes(args.instruction, skills)
        except NodeConfigError as error:
            print(f'legion sim: {error}', file=sys.stderr)
            return EXIT_REJECTED
        except InstructionRejectedError as error:
            if args.json:
                print(json.dumps({'state': 'rejected', 'reasons': error.reasons, 'steps': []}))
            else:
                print('rejected: ' + '; '.join(r['message'] for r in error.reasons), file=sys.stderr)
            return EXIT_REJECTED
    if args.policy == 'legion' and not args.checkpoint:
        from legion_kuka.acting import default_checkpoint
        if not default_checkpoint():
            print('legion sim: no LEGION checkpoint given and none is shipped; pass --checkpoint PATH '
                  '(a policy.pt or run directory) or use --policy expert', file=sys.stderr)
            return EXIT_REJECTED
    stations = workcell_stations(plan, args.scene)
    if stations is None:
        print('legion sim: --scene workcell needs an instruction of 1 to 3 distinct tasks (a workcell '
              'holds 3 stations); use --scene per-step', file=sys.stderr)
        return EXIT_REJECTED
    job = job_tasks(plan, args.scene)
    if args.scene == 'workcells' and not job:
        print('legion sim: --scene workcells needs an instruction', file=sys.stderr)
        return EXIT_REJECTED
    if args.step_timeout is None:
        args.step_timeout = 120.0 if stations or job else 60.0
    return plan, skills, stations, job, video_size


def _run_graph(sim: SimGraph, args, first_task: str, log_path) -> tuple[int, dict | None, str, int]:
    """Start the graph, run the instruction (or wait for `legion instruct` until Ctrl-C), stop the graph:
    (exit code, final status event, message, the graph's stop code)."""
    import contextlib

    from legion_ros.environment import apply_ros_defaults

    lease = apply_ros_defaults(role='graph')
    import rclpy

    say(f'graph in ROS domain {os.environ.get("ROS_DOMAIN_ID")}, node output in {log_path}')
    rclpy.init()
    node = rclpy.create_node('legion_sim')
    code, final, message = EXIT_FAILED, None, ''
    try:
        # The instruction publisher (latched) exists before the recorder looks at the topic, so the
        # recorder subscribes to it as latched and the bag keeps the instruction.
        follower = StatusFollower(node)
        scenes = SceneFollower(node, sim, say)
        sim.start_twin(first_task)
        if not spin_until(node, lambda: scenes.bridge_task == first_task, 120.0, lambda: _raise_if_dead(sim)):
            raise RuntimeError(f'the twin did not come up with {first_task} within 120 s')
        sim.start_rest()

        def on_spin():
            scenes.service()
            _raise_if_dead(sim)

        if args.instruction is None:
            say('graph is up; send instructions with `legion instruct "..."`; Ctrl-C stops it')
            with contextlib.suppress(KeyboardInterrupt):
                spin_until(node, lambda: False, None, on_spin)
            code = EXIT_SUCCEEDED
        else:
            if not args.no_record:
                _wait_for_recorder(node, on_spin)
            printer = None if args.json else (lambda e: print(describe_event(e), flush=True))
            code, final, message = follow_instruction(node, args.instruction, wait_s=120.0,
                                                      timeout_s=args.timeout, on_event=printer,
                                                      on_spin=on_spin, follower=follower)
            if args.video is not None and final is not None:
                from legion_kuka.video import TAIL_S

                # The video ends TAIL_S after the instruction: the twin records (and notes the end) meanwhile.
                spin_until(node, lambda: False, TAIL_S + 0.5, on_spin)
    except RuntimeError as error:
        code, message = EXIT_NO_GRAPH, str(error)
    except KeyboardInterrupt:
        code, message = EXIT_FAILED, 'interrupted'
        with contextlib.suppress(Exception):
            cancel_running(node)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop_code = sim.stop()
        if lease is not None:
            lease.release()
    return code, final, message, stop_code

def plan_scenes(instruction: str, skills: list[str]):
    """The instruction's steps, planned with the instruction node's own planner (same intent model, the
    policy's skills) before the graph starts: the scene must be built first (a workcell's stations are
    fixed when the twin starts, and the twin starts on the first step's scene), and an instruction the
    node would reject is refused at once instead of after the graph came up. The instruction node plans
    again when it gets the instruction, and its plan is the one that runs."""
    from legion_core.language import LanguageEncoder, load_task_descriptions
    from legion_ros.nodes.instruction import PARAMETERS, make_matcher

    matcher = make_matcher(LanguageEncoder(), load_task_descriptions(), skills)
    return matcher.plan(instruction, PARAMETERS['max_bytes'].default, PARAMETERS['max_steps'].default)

def policy_skills(args) -> list[str]:
    """The skills the run's policy has learnt: a LEGION checkpoint's tasks; [] (legion10) for the
    experts, or when the checkpoint cannot be read (that is reported when the graph starts)."""
    if args.policy != 'legion':
        return []
    from legion_core.policy import load_policy
    from legion_kuka.acting import default_checkpoint

    path = args.checkpoint or default_checkpoint()
    if not path:
        return []
    try:
        return list(getattr(load_policy(path), 'tasks', []))
    except Exception:  # a bad checkpoint: the policy node says why
        return []

def workcell_stations(plan, scene: str) -> tuple[str, ...] | None:
    """The workcell's tasks in station order (:func:`legion_kuka.workcell.station_order`), () for one
    scene per step, or None when a workcell was asked for and the tasks do not fit."""
    from legion_kuka.workcell import MAX_STATIONS, station_order

    if scene in ('per-step', 'workcells'):
        return ()
    tasks = [p.task for p in plan or []]
    if not tasks or len(set(tasks)) > MAX_STATIONS:  # (without an instruction the tasks are not known)
        return None if scene == 'workcell' else ()
    if scene == 'auto' and job_tasks(plan, scene):
        return ()
    return tuple(station_order(tasks))


def job_tasks(plan, scene: str) -> tuple[str, ...]:
    """The tasks of the steps when the job runs as a sequence of workcells (--scene workcells, or auto
    where one workcell does not hold it: :func:`legion_kuka.job.plan_workcells`), else ()."""
    from legion_kuka.job import plan_workcells

    tasks = tuple(p.task for p in plan or [])
    if not tasks or scene not in ('auto', 'workcells'):
        return ()
    return tasks if scene == 'workcells' or len(plan_workcells(tasks)) > 1 else ()

def _sim_nodes(args, first_task: str, bag_name: str, params_dir, skills: list[str] = ()):
    """The resolved sim graph, with this run's parameters on its nodes.

    The run's values go into one more parameter file per node, after the graph's own: ``-p`` overrides
    lose against the node-specific (``/**/<node>``) entries of those files, a later file wins.
    """
    from pathlib import Path

    from legion_ros.graph import graph

    resolved = graph('sim').resolve({
        'driver': args.driver, 'checkpoint': args.checkpoint, 'task': first_task,
        # Wall-clock time for the nodes; steps are timed on the twin's /clock (instruction, below). (The
        # twin was once restarted per scene, whose /clock then ran backwards; it now keeps one process.)
        'use_sim_time': 'false', 'record': 'false' if args.no_record else 'true', 'recorder': 'legion',
        'bag_dir': args.bag_dir})
    extra = {
        'policy': {'policy_type': args.policy},
        'real2sim': {'success_source': 'sim', 'require_scene_match': True},
        # Steps are timed on the twin's /clock (its stamps stay on the wall clock, as the nodes' clocks):
        # on a loaded machine the twin runs slower than real time, and so does the arm.
        # Instructions may use the policy's skills only; a step meaning another is refused as not learnt.
        'instruction': {'step_timeout_s': float(args.step_timeout), 'step_time_topic': '/clock',
                        **({'tasks': list(skills)} if skills else {})},
        'recorder': {'bag_name': bag_name},
        # Object poses at the joint-state rate: an observation mixing fresh joints with object poses up
        # to 50 ms old sends Meta-World's experts (hand "ahead of" the drawer) into the wrong branch.
        'sim_bridge': {'seed': int(args.seed), 'object_poses_rate_hz': 100.0, 'publish_clock': True,
                       'sim_time_stamps': False},
    }
    nodes = []
    Path(params_dir).mkdir(parents=True, exist_ok=True)
    for n in resolved.nodes:
        nodes.append(n.with_parameters(extra, Path(params_dir)))
    return nodes, dict(resolved.values)

@dataclass
class SimGraph:
    """The sim graph as two runners: the twin, started first, and everything else."""

    nodes: list
    values: dict
    output: object
    seed: int
    stations: tuple[str, ...] = ()  # a workcell's tasks (station order); empty: one scene per step
    job: tuple[str, ...] = ()  # the steps' tasks where the job runs as a sequence of workcells
    bridge_runner: object = None
    rest_runner: object = None
    scene_task: str | None = None  # the scene (a workcell: the station) the twin was last asked for
    state_log_dir: object = None  # a Path: the twin records its states there (--video)

    def start_twin(self, task: str) -> None:
        """The twin, with ``task``'s scene (a workcell: station). Later scenes are parameter changes
        of this process (:class:`SceneFollower`), which the twin announces to sim2real."""
        from dataclasses import replace
        from pathlib import Path

        import yaml

        from legion_ros.graph import graph
        from legion_ros.runner import Runner

        bridge = next(n for n in self.nodes if n.executable == 'sim_bridge')
        scene = Path(bridge.parameter_files[-1]).with_name('sim_bridge_scene.yaml')
        # task and workcell as `legion launch sim task:=... workcell:=...` give them (the sim graph
        # converts and checks them); the seed is legion sim's own.
        arguments = {**self.values, 'task': task, 'workcell': ','.join(self.stations)}
        (resolved,) = [n for n in graph('sim').resolve(arguments).nodes if n.executable == 'sim_bridge']
        values = {'task': resolved.parameters['task'], 'workcell': resolved.parameters['workcell'],
                  'seed': self.seed}
        if self.job:  # the twin plans the job's workcells itself (legion_kuka.job)
            values['job'] = list(self.job)
        if self.state_log_dir is not None:  # one log, one segment per scene (legion_kuka.state_log)
            values['state_log'] = str(Path(self.state_log_dir) / 'twin.npz')
        scene.write_text(yaml.safe_dump({'/**/sim_bridge': {'ros__parameters': values}}), encoding='utf-8')
        bridge = replace(bridge, parameter_files=(*bridge.parameter_files, scene))
        self.bridge_runner = Runner(self._graph([bridge]), output=self.output)
        self.bridge_runner.start()
        self.scene_task = task

    def start_rest(self) -> None:
        """Everything but the twin (start the twin first: the recorder then sees the latched topics'
        publishers when it first looks, and records them as latched)."""
        from legion_ros.runner import Runner

        rest = [n for n in self.nodes if n.executable != 'sim_bridge']
        self.rest_runner = Runner(self._graph(rest), output=self.output)
        self.rest_runner.start()

    def _graph(self, nodes):
        from legion_ros.graph import ResolvedGraph
        return ResolvedGraph('sim', self.values, tuple(nodes), ())

    def dead(self) -> list[tuple[str, int]]:
        """The essential nodes that exited; a non-essential one (the recorder) is restarted or reported
        by its runner instead (:meth:`legion_ros.runner.Runner.supervise`)."""
        return [dead for runner in (self.rest_runner, self.bridge_runner) if runner is not None
                for dead in runner.supervise()]

    def stop(self) -> int:
        codes = []
        for runner in (self.bridge_runner, self.rest_runner):
            if runner is not None:
                runner.request_stop('done')
                codes.append(runner.shutdown())
        return max(codes, default=0)

def _raise_if_dead(sim: SimGraph) -> None:
    dead = sim.dead()
    if dead:
        raise RuntimeError('node(s) died: ' + ', '.join(f'{n} (exit {c})' for n, c in dead))

class SceneFollower:
    """Puts the active step's task in front of the arm: sets the twin's ``task`` parameter when the step's
    task is not the twin's scene. In a workcell that selects the task's station (sim2real then moves the
    arm there by a transit); with one scene per step the twin loads the task's scene, announces the jump
    of the arm to its start on ``/legion/scene`` and sim2real re-anchors there (it never latches on it,
    and nothing here resets it)."""

    def __init__(self, node, sim: SimGraph, say) -> None:
        from std_msgs.msg import String

        from legion_ros import qos

        self.node, self.sim, self.say = node, sim, say
        self.pending: str | None = None
        self.bridge_task: str | None = None
        node.create_subscription(String, ACTIVE_STEP.name, self._on_step, qos.LATCHED)
        node.create_subscription(String, SIM_BRIDGE_STATUS.name, self._on_bridge, qos.LATCHED)

    def _on_bridge(self, message) -> None:
        try:
            task = SIM_BRIDGE_STATUS.decode(message.data).get('task')
        except BadMessageError:
            return
        self.bridge_task = task if isinstance(task, str) else self.bridge_task

    def _on_step(self, message) -> None:
        try:
            task = ACTIVE_STEP.decode(message.data)['task']
        except BadMessageError:
            return
        if task is not None and task != self.sim.scene_task:
            self.pending = task

    def service(self) -> None:
        """Between spins: change the scene if a step asked for another (blocks while the twin loads it)."""
        if self.pending is None:
            return
        task, self.pending = self.pending, None
        station = task in self.sim.stations
        if self.sim.job:  # another station of this workcell, or the next workcell
            self.say(f'{task}: its station, or the next workcell with every object as it was left')
        else:
            self.say(f'station {task}: moving the arm there' if station else f'loading the scene of {task}')
        if not self._set_twin_task(task, 30.0 if station else 120.0):
            return
        self.sim.scene_task = task
        if not station and not spin_until(self.node, lambda: self.bridge_task == task, 10.0):
            self.say(f'warning: the twin does not report the scene of {task}')

    def _set_twin_task(self, task: str, timeout_s: float) -> bool:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        from legion_ros import services

        client = self.node.create_client(SetParameters, SIM_SET_PARAMETERS.name)
        request = SetParameters.Request(parameters=[Parameter('task', value=task).to_parameter_msg()])
        try:
            answer = services.call(self.node, client, request, lambda done, s: spin_until(self.node, done, s),
                                   ready_s=10.0, answer_s=timeout_s)
        except services.ServiceError as error:
            self.say(f'warning: {task} not selected: {error}')
            return False
        finally:
            self.node.destroy_client(client)
        if not answer.results[0].successful:
            self.say(f'warning: the twin did not take the task {task}: {answer.results[0].reason}')
            return False
        return True

def _wait_for_recorder(node, on_spin, timeout_s: float = 60.0) -> bool:
    """Until the recorder records the instruction topic: an instruction sent before it subscribed
    would be missing from the bag."""
    from std_msgs.msg import String

    from legion_ros import qos

    topics: set[str] = set()

    def on_status(message) -> None:
        try:
            recorded = RECORDER_STATUS.decode(message.data).get('topics')
        except BadMessageError:
            return
        if isinstance(recorded, list):
            topics.update(topic for topic in recorded if isinstance(topic, str))

    subscription = node.create_subscription(String, RECORDER_STATUS.name, on_status, qos.LATCHED)
    try:
        return spin_until(node, lambda: INSTRUCTION.name in topics, timeout_s, on_spin)
    finally:
        node.destroy_subscription(subscription)

def _sim_result(final, args, plan, bag, elapsed_s: float, log_path, stations=(), job=()) -> dict:
    steps = (final or {}).get('steps') or [
        {'instruction': p.instruction, 'task': p.task, 'state': 'not_run', 'duration_s': None}
        for p in plan or []]
    return {
        'instruction': args.instruction,
        'policy': args.policy, 'checkpoint': args.checkpoint or None, 'seed': args.seed,
        'scene': 'workcell' if stations else 'workcells' if job else 'per-step', 'stations': list(stations),
        'workcells': [list(w.stations) for w in _plan_workcells(job)],
        'steps': [{'instruction': s['instruction'], 'skill': s['task'], 'success': s['state'] == 'succeeded',
                   'state': s['state'], 'duration_s': s['duration_s']} for s in steps],
        'success': bool(final) and final.get('state') == 'succeeded',
        'state': (final or {}).get('state', 'failed'),
        'bag': str(bag) if bag else None, 'log': str(log_path), 'video': None, 'wall_s': round(elapsed_s, 2),
        # Step durations are in the twin's time; below 1 the machine could not keep it at real time.
        'real_time_factor': (final or {}).get('real_time_factor'),
    }

def _plan_workcells(job):
    from legion_kuka.job import plan_workcells
    return plan_workcells(job) if job else []


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    lines = []
    for step in result['steps']:
        mark = 'ok  ' if step['success'] else 'FAIL'
        duration = '-' if step['duration_s'] is None else f'{step["duration_s"]:.1f} s'
        lines.append(f'{mark} {step["skill"]:<26} {duration:>8}  "{step["instruction"]}"')
    factor = result['real_time_factor']
    rate = '' if factor is None else f'; twin at {factor:g} x real time (step times are twin time)'
    print(''.join(line + '\n' for line in lines) + f'{result["state"]}; bag: {result["bag"] or "-"}{rate}')
    if result.get('video'):
        made = result['video_render']
        print(f'video: {result["video"]} ({made["duration_s"]:.0f} s, {made["frames"]} frames, '
              f'{made["bytes"] / 1e6:.1f} MB, rendered in {made["render_s"]:.0f} s)')

def _video_problem(args) -> str | None:
    """Why ``--video``/``--video-size`` cannot work, checked before the graph starts, or None."""
    import argparse as _argparse
    from pathlib import Path

    from legion_core.video import VIDEO_SUFFIXES
    from legion_kuka.video import parse_size

    if Path(args.video).suffix.lower() not in VIDEO_SUFFIXES:
        return f'--video {args.video}: the video must end in {" or ".join(VIDEO_SUFFIXES)}'
    try:
        parse_size(args.video_size)
    except _argparse.ArgumentTypeError as error:
        return f'--video-size: {error}'
    return None

def render_video(path: str, size: tuple[int, int], state_log_dir, result: dict, say) -> dict:
    """Render the run's state logs into ``path`` in a child process (after the graph has stopped: the
    frames never compete with the control loop); returns ``{"video", "video_render"}`` or
    ``{"video": None, "video_error"}``. The child picks offscreen OpenGL before it imports MuJoCo."""
    import subprocess
    from pathlib import Path

    logs = sorted(Path(state_log_dir).glob('*.npz'))
    if not logs:
        say('no video: the twin recorded no states (did the graph come up?)')
        return {'video': None, 'video_error': f'no state logs in {state_log_dir}'}
    job = Path(state_log_dir) / 'job.json'
    job.write_text(json.dumps(result), encoding='utf-8')
    say(f'rendering the video {path} from {len(logs)} state log(s) in {state_log_dir}')
    command = [sys.executable, '-m', 'legion_kuka.video', *map(str, logs), '-o', str(path), '--job', str(job),
               '--size', f'{size[0]}x{size[1]}', '--json']
    # The progress bar and errors go to our standard error; the child's one JSON line is its answer.
    process = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if process.returncode != 0 or not process.stdout.strip():
        say(f'no video: rendering failed (exit {process.returncode}, see above)')
        return {'video': None, 'video_error': f'rendering failed with exit code {process.returncode}'}
    try:
        made = json.loads(process.stdout.strip().splitlines()[-1])
    except ValueError:
        return {'video': None, 'video_error': f'the renderer answered {process.stdout[-200:]!r}'}
    return {'video': made['video'], 'video_render': made}
