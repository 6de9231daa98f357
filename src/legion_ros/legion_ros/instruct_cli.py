"""``legion instruct`` (talk to a running graph) and ``legion sim`` (bring one up and run an instruction).

Both send a natural-language instruction on ``/legion/instruction`` and follow ``/legion/status`` (the
instruction node's latched JSON status) until the sequence ends. Exit codes: 0 every step succeeded,
1 a step failed / was skipped or cancelled / the run timed out, 2 the instruction was rejected (or bad
usage), 3 no graph to talk to.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field

from legion_ros.interfaces import (
    ACTIVE_STEP,
    CANCEL,
    INSTRUCTION,
    RECORDER_STATUS,
    RESET_ESTOP,
    SIM2REAL_STATUS,
    SIM_BRIDGE_STATUS,
    SIM_SET_PARAMETERS,
    STATUS,
    BadMessageError,
)

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_REJECTED, EXIT_NO_GRAPH = 0, 1, 2, 3
TERMINAL = ('succeeded', 'failed', 'rejected', 'cancelled')


def exit_code(state: str) -> int:
    return {'succeeded': EXIT_SUCCEEDED, 'rejected': EXIT_REJECTED}.get(state, EXIT_FAILED)


def describe_event(event: dict) -> str:
    """One human-readable line for a status event of the instruction node."""
    state, kind = event.get('state'), event.get('event')
    steps = event.get('steps') or []
    if state == 'rejected':
        return 'rejected: ' + '; '.join(r.get('message', '?') for r in event.get('reasons', []))
    if kind in ('queued',):
        plan = ', '.join(f'{s["index"] + 1}. "{s["instruction"]}" -> {s["task"]}' for s in steps)
        return f'queued {len(steps)} step(s): {plan}'
    if kind and kind.startswith('step_'):
        index = event.get('active_index') if kind == 'step_started' else event.get('step')
        if index is None or index >= len(steps):
            return kind
        step = steps[index]
        line = f'step {index + 1}/{len(steps)} {step["task"]}: {step["state"]}'
        if step.get('duration_s') is not None:
            line += f' after {step["duration_s"]:.2f} s'
        if step.get('reason'):
            line += f' ({step["reason"]})'
        return line
    if state in TERMINAL:
        done = sum(s['state'] == 'succeeded' for s in steps)
        reasons = '; '.join(r.get('message', '') for r in event.get('reasons', []))
        tail = '' if state == 'succeeded' else f' - {reasons}'
        return f'{state}: {done}/{len(steps)} step(s) succeeded{tail}'
    return f'{state}'


@dataclass
class StatusFollower:
    """Sends one instruction and collects the status events of the sequence it started.

    The instruction goes out with an id of its own (:class:`legion_ros.instructions.InstructionRequest`)
    and only events that echo that id count: the latched history of ``/legion/status`` holds other
    instructions' events (an older sequence's ``succeeded`` once passed for ours), and a resend of the
    same id is taken once by the node.
    """

    node: object
    events: list[dict] = field(default_factory=list)
    sequence_id: int | None = None
    final: dict | None = None
    instruction_id: str = field(default_factory=lambda: f'cli-{uuid.uuid4().hex[:16]}')
    _instruction: str = ''

    def __post_init__(self):
        from std_msgs.msg import String

        from legion_ros import qos

        # Latched: a recorder that discovers the topic after the one message still records it.
        self._publisher = self.node.create_publisher(String, INSTRUCTION.name, qos.LATCHED)
        from legion_ros.nodes.instruction import STATUS_QOS

        self.node.create_subscription(String, STATUS.name, self._on_status, STATUS_QOS)

    def _on_status(self, message) -> None:
        try:
            event = STATUS.decode(message.data)
        except BadMessageError:
            return
        if event['instruction_id'] != self.instruction_id:
            return
        if self.final is not None:
            return
        if self.sequence_id is None:
            self.sequence_id = event['sequence_id']
        self.events.append(event)
        if event.get('state') in TERMINAL:
            self.final = event

    def ready(self) -> bool:
        """The instruction node listens. Its own subscription counts, not any: the recorder subscribes to
        the topic first (legion sim waits for it), and under load the instruction node took 27 s longer
        to load its intent model; an instruction sent to the recorder alone was lost and the run hung."""
        from legion_ros.nodes.instruction import NODE_NAME

        readers = self.node.get_subscriptions_info_by_topic(INSTRUCTION.name)
        return any(info.node_name == NODE_NAME for info in readers)

    def send(self, instruction: str) -> None:
        from std_msgs.msg import String

        from legion_ros.instructions import InstructionRequest

        self._instruction = instruction
        request = InstructionRequest(instruction, self.instruction_id)
        self._publisher.publish(String(data=request.to_json()))


DELIVER_ATTEMPTS, CONFIRM_S = 5, 3.0  # sends of an unconfirmed instruction, and the wait after each


def deliver(node, follower: StatusFollower, instruction: str, on_spin=None, attempts: int = DELIVER_ATTEMPTS,
            confirm_s: float = CONFIRM_S) -> bool:
    """Send until the instruction node confirms (its status starts a new sequence); False if it never
    did within ``attempts`` x ``confirm_s``.

    Seeing the node's subscription does not mean the node has matched this publisher yet; a sample
    sent in between is lost for a volatile reader, so an unconfirmed instruction is sent again (with
    the same id: the node takes it once).
    """
    for _ in range(attempts):
        follower.send(instruction)
        if spin_until(node, lambda: follower.sequence_id is not None, confirm_s, on_spin):
            return True
    return False


def unconfirmed(attempts: int = DELIVER_ATTEMPTS, confirm_s: float = CONFIRM_S) -> str:
    return (f'the instruction node did not take the instruction ({attempts} tries in '
            f'{attempts * confirm_s:g} s): is it overloaded or stuck? (see its log)')


def spin_until(node, predicate, timeout_s: float | None, on_spin=None) -> bool:
    """Spin ``node`` until ``predicate()`` or ``timeout_s`` (None: forever); True if it held."""
    import rclpy

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not predicate():
        if deadline is not None and time.monotonic() >= deadline:
            return False
        rclpy.spin_once(node, timeout_sec=0.05)
        if on_spin is not None:
            on_spin()
    return True


def follow_instruction(node, instruction: str, *, wait_s: float, timeout_s: float | None,
                       on_event=None) -> tuple[int, dict | None, str]:
    """Send ``instruction`` and stream its events; returns (exit code, final event, message)."""
    follower = StatusFollower(node)
    if not spin_until(node, follower.ready, wait_s):
        return EXIT_NO_GRAPH, None, (f'no instruction node listens on {INSTRUCTION.name} after '
                                     f'{wait_s:g} s (is the graph up? `legion sim` or `legion launch sim`)')
    if not deliver(node, follower, instruction):
        return EXIT_NO_GRAPH, None, unconfirmed()
    shown = 0

    def stream():
        nonlocal shown
        while on_event is not None and shown < len(follower.events):
            on_event(follower.events[shown])
            shown += 1

    finished = spin_until(node, lambda: follower.final is not None, timeout_s, stream)
    stream()
    if not finished:
        return EXIT_FAILED, follower.events[-1] if follower.events else None, \
            f'the sequence did not end within {timeout_s:g} s'
    return exit_code(follower.final['state']), follower.final, ''


def cancel_running(node, timeout_s: float = 2.0) -> bool:
    from std_srvs.srv import Trigger

    client = node.create_client(Trigger, CANCEL.name)
    if not client.wait_for_service(timeout_sec=timeout_s):
        return False
    future = client.call_async(Trigger.Request())
    spin_until(node, future.done, timeout_s)
    return future.done() and future.result().success


# ----------------------------------------------------------------------------------------------------
# legion instruct

def register_instruct(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'instruct', help='send a natural-language instruction to the running graph and follow it',
        description='Send a (multi-step) natural-language instruction to the running LEGION graph '
                    '(`legion sim` or `legion launch`), print each step\'s progress and wait until the '
                    'sequence ends. Joins the newest graph started on this machine unless ROS_DOMAIN_ID is '
                    'set. Exit status: 0 every step succeeded, 1 a step failed or was skipped/cancelled '
                    'or the run timed out, 2 the instruction was rejected (unknown/ambiguous skill, empty, '
                    'too long, bad characters), 3 no graph to talk to.',
        epilog='example: legion instruct "open the drawer, then press the button"')
    parser.add_argument('instruction', help='what to do, e.g. "reach the goal and then close the window"')
    parser.add_argument('--timeout', type=float, default=None, metavar='S',
                        help='give up after S seconds (default: wait until the sequence ends)')
    parser.add_argument('--wait', type=float, default=10.0, metavar='S',
                        help='how long to wait for the graph\'s instruction node (default 10 s)')
    parser.add_argument('--json', action='store_true', help='print every status event as one JSON line')
    parser.add_argument('--no-cancel', action='store_true',
                        help='on Ctrl-C leave the sequence running (default: cancel it)')
    parser.set_defaults(handler=run_instruct)


def run_instruct(args: argparse.Namespace) -> int:
    from legion_ros.environment import DOMAIN_VAR, apply_ros_defaults, running_graph_domain

    if not os.environ.get(DOMAIN_VAR) and running_graph_domain() is None:
        print('legion instruct: no running LEGION graph found on this machine; start one with '
              '`legion sim` or `legion launch sim`, or set ROS_DOMAIN_ID to talk to a graph elsewhere.',
              file=sys.stderr)
        return EXIT_NO_GRAPH
    lease = apply_ros_defaults(join_graph=True)
    import rclpy

    rclpy.init()
    node = rclpy.create_node('legion_instruct')
    printer = (lambda e: print(json.dumps(e), flush=True)) if args.json else \
        (lambda e: print(describe_event(e), flush=True))
    try:
        code, _final, message = follow_instruction(node, args.instruction, wait_s=args.wait,
                                                  timeout_s=args.timeout, on_event=printer)
        if message:
            print(f'legion instruct: {message}', file=sys.stderr)
        return code
    except KeyboardInterrupt:
        if not args.no_cancel:
            print('legion instruct: interrupted, cancelling the sequence', file=sys.stderr)
            cancel_running(node)
        return EXIT_FAILED
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        if lease is not None:
            lease.release()


# ----------------------------------------------------------------------------------------------------
# legion sim

SIM_EPILOG = """\
examples:
  legion sim --policy expert -i "reach the goal, then push the puck to the goal"
  legion sim --checkpoint runs/legion10/policy.pt -i "open the window and then close the window" --json
  legion sim --policy expert          bring the graph up and wait for `legion instruct` (Ctrl-C ends)
  legion sim --seed 1 -i "reach the goal, then close the drawer" --video job.mp4

Scenes (--scene): `workcell` (the default for up to 3 distinct tasks) puts every task of the
instruction around the arm at once, one station per task (legion_kuka.workcell; seed --seed): what
a step moves stays moved, and the arm travels from station to station by joint motions through the
safety filter (back, up, swing, down: about 25-40 s at the default 10 % joint speed). `per-step`
reloads the twin with each step's own task scene instead, and re-synchronises the safety filter
with the arm after the jump.

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
                        help='LEGION policy artefact or run directory (default: the shipped policy)')
    parser.add_argument('--seed', type=int, default=0, help='goal variant of every step\'s scene (default 0)')
    parser.add_argument('--driver', choices=('lbr', 'iiwa_ros2'), default='lbr',
                        help='driver interface the twin speaks (default lbr)')
    parser.add_argument('--scene', choices=('auto', 'workcell', 'per-step'), default='auto',
                        help='workcell: all the instruction\'s tasks around the arm at once (up to 3); '
                             'per-step: the twin reloads each step\'s task scene; auto (default): workcell '
                             'when it fits')
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


@dataclass
class SimGraph:
    """The sim graph as two runners: the twin (restarted per scene) and everything else."""

    nodes: list
    values: dict
    output: object
    seed: int
    stations: tuple[str, ...] = ()  # a workcell's tasks (station order); empty: one scene per step
    bridge_runner: object = None
    rest_runner: object = None
    scene_task: str | None = None
    state_log_dir: object = None  # a Path: each twin process records its states there (--video)
    scenes_loaded: int = 0

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

    def load_scene(self, task: str) -> None:
        """(Re)start the twin with ``task``'s scene: a fresh initial state of that task for the seed."""
        from dataclasses import replace
        from pathlib import Path

        import yaml

        from legion_ros.graph import graph
        from legion_ros.runner import Runner

        if self.bridge_runner is not None:
            self.bridge_runner.request_stop(f'scene change to {task}')
            self.bridge_runner.shutdown()
        bridge = next(n for n in self.nodes if n.executable == 'sim_bridge')
        scene = Path(bridge.parameter_files[-1]).with_name(f'sim_bridge_{task}.yaml')
        # task and workcell as `legion launch sim task:=... workcell:=...` give them (the sim graph
        # converts and checks them); the seed is legion sim's own.
        arguments = {**self.values, 'task': task, 'workcell': ','.join(self.stations)}
        (resolved,) = [n for n in graph('sim').resolve(arguments).nodes if n.executable == 'sim_bridge']
        values = {'task': resolved.parameters['task'], 'workcell': resolved.parameters['workcell'],
                  'seed': self.seed}
        if self.state_log_dir is not None:  # one log per twin process, in the order they ran
            values['state_log'] = str(Path(self.state_log_dir) / f'{self.scenes_loaded:02d}_{task}.npz')
        self.scenes_loaded += 1
        scene.write_text(yaml.safe_dump({'/**/sim_bridge': {'ros__parameters': values}}), encoding='utf-8')
        bridge = replace(bridge, parameter_files=(*bridge.parameter_files, scene))
        self.bridge_runner = Runner(self._graph([bridge]), output=self.output)
        self.bridge_runner.start()
        self.scene_task = task

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


def _sim_nodes(args, first_task: str, bag_name: str, params_dir, skills: list[str] = ()):
    """The resolved sim graph, with this run's parameters on its nodes.

    The run's values go into one more parameter file per node, after the graph's own: ``-p`` overrides
    lose against the node-specific (``/**/<node>``) entries of those files, a later file wins.
    """
    from pathlib import Path

    from legion_ros.graph import graph

    resolved = graph('sim').resolve({
        'driver': args.driver, 'checkpoint': args.checkpoint, 'task': first_task,
        # Wall-clock time: the twin is restarted per scene, and a restarted /clock would run backwards.
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


def workcell_stations(plan, scene: str) -> tuple[str, ...] | None:
    """The workcell's tasks in station order (:func:`legion_kuka.workcell.station_order`), () for one
    scene per step, or None when a workcell was asked for and the tasks do not fit."""
    from legion_kuka.workcell import MAX_STATIONS, station_order

    if scene == 'per-step':
        return ()
    tasks = [p.task for p in plan or []]
    if not tasks or len(set(tasks)) > MAX_STATIONS:  # (without an instruction the tasks are not known)
        return None if scene == 'workcell' else ()
    return tuple(station_order(tasks))


def policy_skills(args) -> list[str]:
    """The skills the run's policy has learnt: a LEGION checkpoint's tasks; [] (legion10) for the
    experts, or when the checkpoint cannot be read (that is reported when the graph starts)."""
    if args.policy != 'legion':
        return []
    from legion_ros.nodes.policy import default_checkpoint, load_legion_policy

    path = args.checkpoint or default_checkpoint()
    if not path:
        return []
    try:
        return list(getattr(load_legion_policy(path), 'tasks', []))
    except Exception:  # a bad checkpoint: the policy node says why
        return []


def _plan_locally(instruction: str, skills: list[str]):
    """Plan as the instruction node will (same intent model, the policy's skills), to reject early
    and to know the first scene."""
    from legion_core.language import LanguageEncoder, load_task_descriptions
    from legion_ros.nodes.instruction import PARAMETERS, make_matcher

    matcher = make_matcher(LanguageEncoder(), load_task_descriptions(), skills)
    return matcher.plan(instruction, PARAMETERS['max_bytes'].default, PARAMETERS['max_steps'].default)


class SceneFollower:
    """Reloads the twin's scene when the active step's task changes, then re-syncs sim2real.

    The arm jumps to the new scene's start, which sim2real's safety filter sees as a tracking error and
    latches (as it must on a real arm). For a while after each reload, a latched sim2real is reset once
    the new twin publishes: the filter then starts over from the arm's new position.
    """

    RESYNC_WINDOW_S = 20.0

    def __init__(self, node, sim: SimGraph, say) -> None:
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from legion_ros import qos

        self.node, self.sim, self.say = node, sim, say
        self.pending: str | None = None
        self.bridge_task: str | None = None
        self.sim2real_state: str | None = None
        self.resync_until = 0.0
        self._reset_future = None
        self._client = node.create_client(Trigger, RESET_ESTOP.name)
        self._request = Trigger.Request
        node.create_subscription(String, ACTIVE_STEP.name, self._on_step, qos.LATCHED)
        node.create_subscription(String, SIM_BRIDGE_STATUS.name, self._on_bridge, qos.LATCHED)
        node.create_subscription(String, SIM2REAL_STATUS.name, self._on_sim2real, qos.LATCHED)

    def _on_bridge(self, message) -> None:
        try:
            task = SIM_BRIDGE_STATUS.decode(message.data).get('task')
        except BadMessageError:
            return
        self.bridge_task = task if isinstance(task, str) else self.bridge_task

    def _on_sim2real(self, message) -> None:
        try:
            self.sim2real_state = SIM2REAL_STATUS.decode(message.data)['state']
        except BadMessageError:
            return

    def _on_step(self, message) -> None:
        try:
            task = ACTIVE_STEP.decode(message.data)['task']
        except BadMessageError:
            return
        if task is not None and task != self.sim.scene_task:
            self.pending = task

    def _select_station(self, task: str) -> None:
        """Workcell: make ``task``'s station the active one (sim2real then moves the arm there)."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, SIM_SET_PARAMETERS.name)
        try:
            if not client.wait_for_service(timeout_sec=10.0):
                self.say(f'warning: the twin offers no parameter service; {task} not selected')
                return
            future = client.call_async(SetParameters.Request(
                parameters=[Parameter('task', value=task).to_parameter_msg()]))
            if not spin_until(self.node, future.done, 30.0) or not future.result().results[0].successful:
                self.say(f'warning: the twin did not select the station of {task}')
                return
        finally:
            self.node.destroy_client(client)
        self.sim.scene_task = task
        self.say(f'station {task}: moving the arm there')

    def service(self) -> None:
        """Between spins: do a pending scene change (blocks while the twin restarts), re-sync sim2real."""
        if self.pending is not None and self.pending in self.sim.stations:
            task, self.pending = self.pending, None
            self._select_station(task)
        if self.pending is not None:
            task, self.pending = self.pending, None
            self.say(f'loading the scene of {task}')
            self.bridge_task = None
            self.sim.load_scene(task)
            if not spin_until(self.node, lambda: self.bridge_task == task, 120.0):
                self.say(f'warning: the twin did not come up with {task} within 120 s')
            self.resync_until = time.monotonic() + self.RESYNC_WINDOW_S
        if self._reset_future is not None:
            if not self._reset_future.done():
                return
            result = self._reset_future.result()
            self._reset_future = None
            if result is not None and result.success:
                self.say('safety filter re-synchronised with the new scene')
                self.sim2real_state = None
        if time.monotonic() < self.resync_until and self.sim2real_state == 'estop' \
                and self.bridge_task == self.sim.scene_task and self._client.service_is_ready():
            self._reset_future = self._client.call_async(self._request())


def run_sim(args: argparse.Namespace) -> int:
    import contextlib
    import io
    from datetime import datetime, timezone
    from pathlib import Path

    from legion_ros.environment import apply_ros_defaults
    from legion_ros.instructions import InstructionRejectedError
    from legion_ros.node_base import NodeConfigError

    def say(text: str) -> None:
        print(f'[legion sim] {text}', file=sys.stderr, flush=True)

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
            plan = _plan_locally(args.instruction, skills)
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
        from legion_ros.nodes.policy import default_checkpoint
        if not default_checkpoint():
            print('legion sim: no LEGION checkpoint given and none is shipped; pass --checkpoint PATH '
                  '(a policy.pt or run directory) or use --policy expert', file=sys.stderr)
            return EXIT_REJECTED
    bag_name = 'sim_' + datetime.now(timezone.utc).strftime('%Y%m%d_%H%M%S_%f')
    bag_path = Path(args.bag_dir) / bag_name
    log_path = Path(args.bag_dir) / f'{bag_name}.log'
    log_path.parent.mkdir(parents=True, exist_ok=True)
    first_task = plan[0].task if plan else 'reach-v3'
    stations = workcell_stations(plan, args.scene)
    if stations is None:
        print('legion sim: --scene workcell needs an instruction of 1 to 3 distinct tasks (a workcell '
              'holds 3 stations); use --scene per-step', file=sys.stderr)
        return EXIT_REJECTED
    if args.step_timeout is None:
        args.step_timeout = 120.0 if stations else 60.0
    try:
        nodes, values = _sim_nodes(args, first_task, bag_name, Path(args.bag_dir) / f'{bag_name}.params',
                                   skills)
    except Exception as error:  # GraphError, a bad config directory
        print(f'legion sim: {error}', file=sys.stderr)
        return EXIT_REJECTED
    lease = apply_ros_defaults(role='graph')
    import rclpy

    with open(log_path, 'w', encoding='utf-8') as log:
        sim = SimGraph(nodes, values, log, int(args.seed), stations,
                       state_log_dir=Path(args.bag_dir) / f'{bag_name}.states' if args.video else None)
        say(f'graph in ROS domain {os.environ.get("ROS_DOMAIN_ID")}, node output in {log_path}')
        rclpy.init()
        node = rclpy.create_node('legion_sim')
        code, final, message = EXIT_FAILED, None, ''
        started = time.monotonic()
        try:
            # The instruction publisher (latched) exists before the recorder looks at the topic, so the
            # recorder subscribes to it as latched and the bag keeps the instruction.
            follower = StatusFollower(node)
            scenes = SceneFollower(node, sim, say)
            sim.load_scene(first_task)
            if not spin_until(node, lambda: scenes.bridge_task == first_task, 120.0,
                              lambda: _raise_if_dead(sim)):
                raise RuntimeError(f'the twin did not come up with {first_task} within 120 s')
            sim.start_rest()

            def on_spin():
                scenes.service()
                _raise_if_dead(sim)

            if plan is None:
                say('graph is up; send instructions with `legion instruct "..."`; Ctrl-C stops it')
                with contextlib.suppress(KeyboardInterrupt):
                    spin_until(node, lambda: False, None, on_spin)
                return 0
            printer = None if args.json else (lambda e: print(describe_event(e), flush=True))
            if not args.no_record:
                _wait_for_recorder(node, on_spin)
            code, final, message = _follow_with(node, follower, args, printer, on_spin)
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
    result = _sim_result(final, args, plan, bag_path if not args.no_record and bag_path.exists() else None,
                         time.monotonic() - started, log_path, stations)
    if message:
        result['error'] = message
        say(message + f' (see {log_path})')
    if stop_code and code == EXIT_SUCCEEDED:
        say(f'the graph did not stop cleanly (see {log_path})')
    if args.video is not None:
        result.update(render_video(args.video, video_size, sim.state_log_dir, result, say))
    if args.json:
        print(json.dumps(result))
    else:
        buffer = io.StringIO()
        for step in result['steps']:
            mark = 'ok  ' if step['success'] else 'FAIL'
            duration = '-' if step['duration_s'] is None else f'{step["duration_s"]:.1f} s'
            print(f'{mark} {step["skill"]:<26} {duration:>8}  "{step["instruction"]}"', file=buffer)
        factor = result['real_time_factor']
        rate = '' if factor is None else f'; twin at {factor:g} x real time (step times are twin time)'
        print(buffer.getvalue() + f'{result["state"]}; bag: {result["bag"] or "-"}{rate}')
        if result.get('video'):
            made = result['video_render']
            print(f'video: {result["video"]} ({made["duration_s"]:.0f} s, {made["frames"]} frames, '
                  f'{made["bytes"] / 1e6:.1f} MB, rendered in {made["render_s"]:.0f} s)')
    return code


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


def _follow_with(node, follower, args, printer, on_spin):
    """follow_instruction with the scene follower and the node watchdog running between spins."""
    if not spin_until(node, follower.ready, 120.0, on_spin):
        return EXIT_NO_GRAPH, None, 'the instruction node did not come up within 120 s'
    spin_until(node, lambda: False, 0.3, on_spin)
    if not deliver(node, follower, args.instruction, on_spin):
        return EXIT_NO_GRAPH, None, unconfirmed()
    shown = 0

    def tick():
        nonlocal shown
        on_spin()
        while printer is not None and shown < len(follower.events):
            printer(follower.events[shown])
            shown += 1

    if not spin_until(node, lambda: follower.final is not None, args.timeout, tick):
        return EXIT_FAILED, follower.events[-1] if follower.events else None, \
            f'the instruction did not finish within {args.timeout:g} s'
    tick()
    return exit_code(follower.final['state']), follower.final, ''


def _sim_result(final, args, plan, bag, elapsed_s: float, log_path, stations=()) -> dict:
    steps = (final or {}).get('steps') or [
        {'instruction': p.instruction, 'task': p.task, 'state': 'not_run', 'duration_s': None}
        for p in plan or []]
    return {
        'instruction': args.instruction,
        'policy': args.policy, 'checkpoint': args.checkpoint or None, 'seed': args.seed,
        'scene': 'workcell' if stations else 'per-step', 'stations': list(stations),
        'steps': [{'instruction': s['instruction'], 'skill': s['task'], 'success': s['state'] == 'succeeded',
                   'state': s['state'], 'duration_s': s['duration_s']} for s in steps],
        'success': bool(final) and final.get('state') == 'succeeded',
        'state': (final or {}).get('state', 'failed'),
        'bag': str(bag) if bag else None, 'log': str(log_path), 'video': None, 'wall_s': round(elapsed_s, 2),
        # Step durations are in the twin's time; below 1 the machine could not keep it at real time.
        'real_time_factor': (final or {}).get('real_time_factor'),
    }
