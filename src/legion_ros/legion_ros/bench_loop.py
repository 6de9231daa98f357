"""``legion bench loop``: latency of the whole decision path, joint state in -> joint command out.

The benchmark process plays the robot driver: it publishes ``sensor_msgs/JointState`` at the
controller rate (stamped with the wall clock) and the scene's object poses, and tracks the joint
commands it receives (a perfect position controller). Between the two run the real nodes with the
graph's parameter files, in its ``decision_path`` process (or one process each with ``--processes``):
``real2sim`` -> ``policy`` (acting on every observation) -> ``sim2real`` (IK, interpolation, safety
filter, sending a new action's target at once), plus ``task_inference`` on the side when a LEGION
checkpoint is used.

Attribution: every observation, action and command carries the ``header.stamp`` of the joint state it
was computed from (:mod:`legion_ros.provenance`), so each command's latency is measured against exactly
the sample that caused it, not against "the latest". A cycle is *missed* when no command computed from
its joint state arrived before the next joint state was due.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from legion_ros.provenance import source_of

EPILOG = """\
examples:
  legion bench loop --duration 20                 scripted expert in the loop (no checkpoint needed)
  legion bench loop --checkpoint runs/x/policy.pt the LEGION actor in the loop
"""

LBR_JOINTS = [f'lbr_A{i}' for i in range(1, 8)]


def register_bench_loop(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'loop', help='latency from a joint state to its command through the ROS graph (JSON)',
        description='Measure, at the controller rate, the latency from a joint-state message to the joint\n'
                    'command computed from it through real2sim -> policy -> sim2real (safety filter),\n'
                    'in the graph\'s decision_path process (--processes: one process per node),\n'
                    'attributed by the joint state\'s stamp carried along.\n'
                    'Prints one JSON object with latency_p50_ms, latency_p99_ms, missed_cycles, cycles\n'
                    'and the arrival time of each stage. Goal on 2 CPU cores: p99 <= 3 ms, no missed cycle.',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--duration', type=float, default=300.0, metavar='S',
                        help='measurement time after warm-up (default 300 s)')
    parser.add_argument('--rate', type=float, default=100.0, metavar='HZ',
                        help='controller rate: joint states per second (default 100)')
    parser.add_argument('--warmup', type=float, default=3.0, metavar='S',
                        help='seconds of traffic before measuring (default 3)')
    parser.add_argument('--policy', choices=('auto', 'legion', 'expert'), default='auto',
                        help='auto: legion with --checkpoint, else Meta-World\'s scripted expert')
    parser.add_argument('--checkpoint', default='', metavar='PATH', help='LEGION policy artefact')
    parser.add_argument('--task', default='reach-v3', help='the active step\'s task (default reach-v3)')
    parser.add_argument('--processes', action='store_true',
                        help='one process per node (the graph\'s composition:=false) instead of the '
                             'decision_path process that hands messages over directly')
    parser.add_argument('--realtime', type=int, default=0, metavar='PRIORITY',
                        help='run the driver and the nodes under SCHED_FIFO with this priority (1-99), as a '
                             'ros2_control loop on a real-time kernel would; needs CAP_SYS_NICE or an rtprio '
                             'limit (0: normal scheduling, the default)')
    parser.add_argument('--floor', action='store_true',
                        help='measure the floor instead: one process that turns each joint state straight '
                             'into a command (no real2sim, policy, IK or filter), spun like decision_path: '
                             'what rclpy, the middleware and this machine cost before any of our work')
    parser.add_argument('--log', default='', metavar='FILE', help='node output (default: a temporary file)')
    parser.add_argument('--samples', default='', metavar='CSV',
                        help='also write every measured cycle: joint-state stamp [ns], how late the driver '
                             'published it, and the latency of its command [ms] (empty: missed)')
    parser.set_defaults(handler=run_bench_loop)


def _nodes(args, policy_type: str, params_dir: Path):
    """The decision-path nodes of the sim graph, configured for one action per control cycle."""
    from legion_ros.graph import graph

    resolved = graph('sim').resolve({'use_sim_time': 'false', 'record': 'false',
                                     'checkpoint': args.checkpoint,
                                     'composition': 'false' if args.processes else 'true'})
    extra = {
        'policy': {'policy_type': policy_type, 'trigger': 'observation', 'rate_hz': args.rate,
                   'watch_checkpoint': False, 'follow_trainer': False},
        'sim2real': {'policy_rate_hz': args.rate, 'driver.controller_rate_hz': args.rate,
                     'send_on_action': True},
        'real2sim': {'success_source': 'observation'},
        'task_inference': {'follow_trainer': False},
    }
    wanted = {'real2sim', 'policy', 'sim2real'} | ({'task_inference'} if policy_type == 'legion' else set())
    nodes = [node.with_parameters(extra, params_dir) for node in resolved.nodes
             if wanted & set(node.hosted)]
    return nodes, dict(resolved.values)


class Echo:
    """The ``--floor`` node: each joint state straight back as a command, stamped with its source."""

    def __init__(self) -> None:
        from rclpy.node import Node
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from legion_ros import qos
        from legion_ros.provenance import array_message, stamp_ns

        self.node = Node('bench_loop_floor')
        publisher = self.node.create_publisher(Float64MultiArray, '/lbr/forward_position_controller/commands',
                                               qos.COMMAND)

        def echo(message) -> None:
            source = stamp_ns(message.header.stamp)
            publisher.publish(array_message(message.position, 'joint_positions', source, double=True))

        self.node.create_subscription(JointState, '/lbr/joint_states', echo, qos.SENSOR)


def floor_main(args=None) -> int:
    """Entry point of the ``--floor`` process (the same executor as decision_path)."""
    from legion_ros.node_base import run_nodes

    return run_nodes([lambda: Echo().node], args, name='bench_loop_floor', control_loop=True)


def summarise(latencies_ms, cycles: int, missed: int, extra: dict | None = None) -> dict:
    lat = np.asarray(latencies_ms, dtype=np.float64)
    out = {
        'cycles': int(cycles), 'missed_cycles': int(missed),
        'latency_p50_ms': round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        'latency_p99_ms': round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        'latency_max_ms': round(float(lat.max()), 3) if lat.size else None,
        'latency_mean_ms': round(float(lat.mean()), 3) if lat.size else None,
        'commands_measured': int(lat.size),
    }
    out.update(extra or {})
    return out


class LoopDriver:
    """The fake driver: joint states out at the rate, commands in, latency per source stamp."""

    def __init__(self, node, rate_hz: float, task: str, policy_type: str) -> None:
        from geometry_msgs.msg import Pose, PoseArray
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float32MultiArray, Float64MultiArray, String

        from legion_kuka.description import HOME
        from legion_ros import qos
        from legion_ros.interfaces import (
            ACTION,
            ACTIVE_STEP,
            OBJECT_NAMES,
            OBJECT_POSES,
            OBSERVATION,
            OBSERVATION_FULL,
            ActiveStep,
        )

        self.node, self.period_ns = node, round(1e9 / rate_hz)
        self.q = np.asarray(HOME, dtype=np.float64)
        self.sent: dict[int, int] = {}        # source stamp -> index of the cycle
        self.latency_ns: dict[int, int] = {}  # source stamp -> first command's latency (rmw reception)
        self.callback_ns: dict[int, int] = {}  # the same, when this process's executor ran the callback
        self.measuring = False
        self.cycle_stamps: list[int] = []
        self.lateness_ns: list[int] = []  # how late this process published each joint state
        self._JointState, self._String = JointState, String
        self.js_pub = node.create_publisher(JointState, '/lbr/joint_states', qos.STATE)
        self.poses_pub = node.create_publisher(PoseArray, OBJECT_POSES.name, qos.STATE)
        names_pub = node.create_publisher(String, OBJECT_NAMES.name, qos.LATCHED)
        step_pub = node.create_publisher(String, ACTIVE_STEP.name, qos.LATCHED)
        node.create_subscription(Float64MultiArray, '/lbr/forward_position_controller/commands',
                                 self.on_command, qos.COMMAND)
        # Where the time goes: arrival of each intermediate message, by the same source stamp.
        self.hops: dict[str, dict[int, int]] = {'observation': {}, 'action': {}}
        observation = OBSERVATION_FULL if policy_type == 'expert' else OBSERVATION
        node.create_subscription(Float32MultiArray, observation.name,
                                 lambda m, i: self._hop('observation', m, i), qos.SENSOR)
        node.create_subscription(Float32MultiArray, ACTION.name, lambda m, i: self._hop('action', m, i),
                                 qos.COMMAND)
        names_pub.publish(String(data=OBJECT_NAMES.encode(['object_1', 'goal'])))
        step_pub.publish(String(data=ACTIVE_STEP.encode(ActiveStep(sequence_id=1, index=0, task=task,
                                                                   instruction='benchmark'))))
        # A goal far from the hand keeps the policy moving the arm for the whole run.
        self.poses = PoseArray()
        self.poses.header.frame_id = 'lbr_link_0'
        for x, y, z in ((0.7, 0.0, 0.02), (0.55, -0.25, 0.30)):
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = x, y, z
            pose.orientation.w = 1.0
            self.poses.poses.append(pose)
        self.next_ns = time.time_ns()

    def publish_cycle(self, due_ns: int) -> None:
        now = time.time_ns()
        message = self._JointState(name=LBR_JOINTS, position=self.q.tolist(), velocity=[0.0] * 7,
                                   effort=[0.0] * 7)
        message.header.stamp.sec, message.header.stamp.nanosec = divmod(now, 1_000_000_000)
        self.poses.header.stamp = message.header.stamp
        self.js_pub.publish(message)  # first: the joint state starts the cycle's command
        self.poses_pub.publish(self.poses)
        if self.measuring:
            self.cycle_stamps.append(now)
            self.lateness_ns.append(now - due_ns)

    def on_command(self, message, info) -> None:
        # The middleware's reception time is when a driver could use the command; this Python process's
        # own executor delay (a C++ ros2_control driver has none of it) is reported apart.
        handled = time.time_ns()
        received = info.get('received_timestamp') or handled
        data = np.asarray(message.data, dtype=np.float64)
        if data.shape == (7,) and np.all(np.isfinite(data)):
            self.q = data  # a perfect position controller
        source = source_of(message)
        if source is not None and source not in self.latency_ns:
            self.latency_ns[source] = received - source
            self.callback_ns[source] = handled - source

    def _hop(self, name: str, message, info) -> None:
        source = source_of(message)
        if source is not None and source not in self.hops[name]:
            self.hops[name][source] = (info.get('received_timestamp') or time.time_ns()) - source

    def hop_summary(self) -> dict:
        """Median arrival time of each stage after the joint state [ms] (the bench sees all topics)."""
        out = {}
        for name, table in self.hops.items():
            values = [table[s] / 1e6 for s in self.cycle_stamps if s in table]
            out[f'{name}_p50_ms'] = round(float(np.median(values)), 3) if values else None
            out[f'{name}_p99_ms'] = round(float(np.percentile(values, 99)), 3) if values else None
        callbacks = [self.callback_ns[s] / 1e6 for s in self.cycle_stamps if s in self.callback_ns]
        if callbacks:
            out['driver_callback_p50_ms'] = round(float(np.median(callbacks)), 3)
            out['driver_callback_p99_ms'] = round(float(np.percentile(callbacks, 99)), 3)
        return out

    def machine_summary(self) -> dict:
        """How late the driver process itself published its joint states: the machine's scheduling,
        before any node is involved. A stall longer than a period costs a cycle whatever the graph does."""
        late = np.asarray(self.lateness_ns, dtype=np.float64) / 1e6
        if not late.size:
            return {}
        period_ms = self.period_ns / 1e6
        return {'driver_late_p99_ms': round(float(np.percentile(late, 99)), 3),
                'driver_late_max_ms': round(float(late.max()), 3),
                'driver_stalls': int(np.sum(late > period_ms / 2))}

    def write_samples(self, path: Path) -> None:
        """One row per measured cycle, for plots of when the late commands happened."""
        with open(path, 'w', encoding='utf-8') as out:
            out.write('stamp_ns,driver_late_ms,latency_ms\n')
            for stamp, late in zip(self.cycle_stamps, self.lateness_ns, strict=True):
                latency = self.latency_ns.get(stamp)
                out.write(f'{stamp},{late / 1e6:.4f},{"" if latency is None else f"{latency / 1e6:.4f}"}\n')

    def results(self) -> tuple[list[float], int, int]:
        latencies, missed = [], 0
        for stamp in self.cycle_stamps:
            latency = self.latency_ns.get(stamp)
            if latency is None or latency > self.period_ns:
                missed += 1
            if latency is not None:
                latencies.append(latency / 1e6)
        return latencies, len(self.cycle_stamps), missed


def run_bench_loop(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from legion_ros.environment import apply_ros_defaults
    from legion_ros.graph import ResolvedGraph
    from legion_ros.runner import Runner

    if not args.rate > 0 or not args.duration > 0:
        print('legion bench loop: --rate and --duration must be positive', file=sys.stderr)
        return 2
    policy_type = args.policy if args.policy != 'auto' else ('legion' if args.checkpoint else 'expert')
    if policy_type == 'legion' and not args.checkpoint:
        print('legion bench loop: --policy legion needs --checkpoint', file=sys.stderr)
        return 2
    if args.realtime:
        try:  # before rclpy.init and the node processes: DDS threads and children inherit the policy
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.realtime))
        except (PermissionError, ValueError, OSError) as error:
            print(f'legion bench loop: cannot use SCHED_FIFO priority {args.realtime}: {error} (needs '
                  'CAP_SYS_NICE, or an rtprio limit in /etc/security/limits.conf)', file=sys.stderr)
            return 2
    lease = apply_ros_defaults()  # a private domain: nothing else on the machine hears the benchmark
    work = Path(tempfile.mkdtemp(prefix='legion_bench_loop_'))
    log_path = Path(args.log) if args.log else work / 'nodes.log'
    if args.floor:
        nodes, values = [_floor_node()], {}
        policy_type = 'none (floor)'
    else:
        nodes, values = _nodes(args, policy_type, work)
    rclpy.init()
    node = rclpy.create_node('bench_loop')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    with open(log_path, 'w', encoding='utf-8') as log:
        runner = Runner(ResolvedGraph('bench_loop', values, tuple(nodes), ()), output=log)
        try:
            runner.start()
            driver = LoopDriver(node, args.rate, args.task, policy_type)
            # Wait until commands come back (the nodes load Meta-World, torch, the checkpoint).
            deadline = time.monotonic() + 120.0
            print(f'[bench loop] starting {len(nodes)} nodes ({policy_type} policy); node output in '
                  f'{log_path}', file=sys.stderr)
            while not driver.latency_ns and time.monotonic() < deadline:
                _cycle(executor, driver)
                if any(c.process.poll() is not None for c in runner.children):
                    raise RuntimeError('a node died during start-up')
            if not driver.latency_ns:
                raise RuntimeError('no joint command came back within 120 s')
            _run_for(executor, driver, args.warmup)
            driver.measuring = True
            _run_for(executor, driver, args.duration, progress=True)
            driver.measuring = False
            _run_for(executor, driver, 0.2)  # let the last commands arrive
            latencies, cycles, missed = driver.results()
            if args.samples:
                driver.write_samples(Path(args.samples))
            result = summarise(latencies, cycles, missed, {
                'rate_hz': args.rate, 'duration_s': args.duration, 'policy': policy_type, 'task': args.task,
                'nodes': [n.name for n in nodes], 'composition': not args.processes,
                'scheduling': f'SCHED_FIFO {args.realtime}' if args.realtime else 'normal',
                'measured_at': 'rmw reception of the command in the driver process',
                'goal_p99_ms': 3.0, 'stages': driver.hop_summary(), 'machine': driver.machine_summary(),
                'path': ('joint_states -> echo -> command (--floor)' if args.floor else
                         'joint_states -> real2sim -> policy -> sim2real (IK + safety filter) -> command')})
            print(json.dumps(result))
        except RuntimeError as error:
            print(f'legion bench loop: {error} (see {log_path})', file=sys.stderr)
            code = 1
        finally:
            runner.request_stop('benchmark done')
            runner.shutdown()
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown()
            if lease is not None:
                lease.release()
    return code


def _floor_node():
    """The ``--floor`` process as a graph node the runner can start (``floor_main`` of this module)."""
    from legion_ros.graph import ResolvedNode
    from legion_ros.interfaces import NAMESPACE

    return ResolvedNode(name='bench_loop_floor', package='legion_ros', executable='bench_loop_floor',
                        namespace=NAMESPACE, parameter_files=(), parameters={}, remappings=())


def _cycle(executor, driver) -> None:
    """Publish one joint state when due, spinning (receiving commands) until then."""
    driver.publish_cycle(driver.next_ns)
    driver.next_ns += driver.period_ns
    now = time.time_ns()
    if driver.next_ns < now - driver.period_ns:  # fell behind (descheduled): do not burst to catch up
        driver.next_ns = now
    while (remaining := driver.next_ns - time.time_ns()) > 0:
        executor.spin_once(timeout_sec=remaining / 1e9)


def _run_for(executor, driver, seconds: float, progress: bool = False) -> None:
    end = time.monotonic() + seconds
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=int(seconds), unit='s', desc='bench loop', file=sys.stderr, leave=False)
    shown = 0
    while time.monotonic() < end:
        _cycle(executor, driver)
        if bar is not None and int(seconds - (end - time.monotonic())) > shown:
            bar.update(1)
            shown += 1
    if bar is not None:
        bar.close()
