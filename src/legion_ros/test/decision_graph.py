"""Test helpers for the decision-path nodes: start nodes as processes, probe their topics.

Each node runs as its own process (as in a real graph), in the pytest process's leased ROS domain
(the legion_ros pytest plugin sets ROS_DOMAIN_ID). The probe is an rclpy node in the test process.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import rclpy
from rclpy.node import Node

from legion_ros import services
from legion_ros.graph import ros_yaml

#: How long a probe waits for a service's client to be ready. On loopback it is within milliseconds;
#: a client that is not ready by then may never be (call_service below says why and goes on).
DISCOVERY_TIMEOUT_S = 30.0


def call_service(node: Node, client, request, spin_until, answer_s: float = 10.0,
                 ready_s: float = DISCOVERY_TIMEOUT_S):
    """``client``'s answer to ``request``; ``spin_until(predicate, seconds)`` spins the probe. The
    graph's clients' own call (:func:`legion_ros.services.call`): a client left "not ready" by
    rmw_fastrtps while a server is seen sends the request anyway."""
    return services.call(node, client, request, spin_until, ready_s=ready_s, answer_s=answer_s)


def start_node(module: str, parameters: dict | None = None, name: str | None = None,
               namespace: str = '/legion', log_file=None) -> subprocess.Popen:
    """``python -m legion_ros.nodes.<module> --ros-args ...`` in a new process group."""
    args = [sys.executable, '-m', f'legion_ros.nodes.{module}', '--ros-args', '-r', f'__ns:={namespace}']
    if name:
        args += ['-r', f'__node:={name}']
    for key, value in (parameters or {}).items():
        args += ['-p', f'{key}:={ros_yaml(value)}']
    env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
    return subprocess.Popen(args, stdout=log_file or subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def stop_node(process: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGINT, then SIGKILL; returns the exit code (0 = clean shutdown)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def output_of(process: subprocess.Popen) -> str:
    if process.stdout is None:
        return ''
    with contextlib.suppress(Exception):
        return process.stdout.read().decode('utf-8', errors='replace')
    return ''


def watch_latched_then_interrupt(process: subprocess.Popen, topics: dict, done, timeout_s: float,
                                 settle_s: float = 0.0) -> str:
    """For a graph started by ``legion launch`` (text output): spin a probe on latched std_msgs/String
    ``topics`` ({topic: callback(parsed JSON)}) until ``done()``, the process ends or ``timeout_s``;
    wait ``settle_s``, then Ctrl-C the graph as its user would and return everything it printed."""
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from legion_ros import qos

    context = rclpy.Context()
    rclpy.init(context=context)
    output = ''
    try:
        node = rclpy.create_node('graph_probe', context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        for topic, callback in topics.items():
            node.create_subscription(String, topic, lambda m, c=callback: c(json.loads(m.data)), qos.LATCHED)
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline and process.poll() is None:
            executor.spin_once(timeout_sec=0.2)
        node.destroy_node()
        time.sleep(settle_s)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        rclpy.try_shutdown(context=context)
        if process.poll() is None:
            process.kill()
            output = process.communicate()[0]
    return output


class Probe:
    """Publishes to and records from topics of the graph under test."""

    def __init__(self, name: str = 'probe') -> None:
        self.node: Node = rclpy.create_node(name)
        self.messages: dict[str, list] = defaultdict(list)
        self.times: dict[str, list[float]] = defaultdict(list)
        self._publishers = {}

    def listen(self, msg_type, topic: str, qos_profile) -> None:
        def record(message, topic=topic):
            self.messages[topic].append(message)
            self.times[topic].append(time.monotonic())
        self.node.create_subscription(msg_type, topic, record, qos_profile)

    def publisher(self, msg_type, topic: str, qos_profile):
        key = (topic, msg_type)
        if key not in self._publishers:
            self._publishers[key] = self.node.create_publisher(msg_type, topic, qos_profile)
        return self._publishers[key]

    def publish(self, msg_type, topic: str, qos_profile, message) -> None:
        self.publisher(msg_type, topic, qos_profile).publish(message)

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=min(0.02, max(0.0, deadline - time.monotonic())))

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.02)
        return predicate()

    def trigger(self, service: str):
        """Call a ``std_srvs/Trigger`` service and return its response."""
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, service)
        return call_service(self.node, client, Trigger.Request(), self.wait_for)

    def json(self, topic: str) -> list[dict]:
        return [json.loads(m.data) for m in self.messages[topic]]

    def close(self) -> None:
        self.node.destroy_node()


class FakeArm:
    """A driver stand-in in the test process: joint states at ``rate_hz`` (header stamped with the wall
    clock) that follow every joint command exactly, plus a static scene (object, goal) in the base frame.

    It spins its own node on a background thread, so the test can inject messages and wait meanwhile.
    """

    JOINTS = tuple(f'lbr_A{i}' for i in range(1, 8))

    def __init__(self, rate_hz: float = 100.0, name: str = 'fake_arm', sim_clock: bool = False) -> None:
        import threading

        import numpy as np
        from geometry_msgs.msg import Pose, PoseArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, String

        from legion_kuka.description import HOME
        from legion_ros import qos

        self.node = rclpy.create_node(name)
        self.q = np.asarray(HOME, dtype=float)
        self.commands: list[tuple[float, list[float]]] = []
        self.publishing = True
        self._JointState = JointState
        self._lock = threading.Lock()
        self.js_pub = self.node.create_publisher(JointState, '/lbr/joint_states', qos.STATE)
        self.poses_pub = self.node.create_publisher(PoseArray, '/legion/object_poses', qos.STATE)
        self.node.create_publisher(String, '/legion/object_names', qos.LATCHED).publish(
            String(data=json.dumps(['object_1', 'goal'])))
        self.node.create_subscription(Float64MultiArray, '/lbr/forward_position_controller/commands',
                                      self._on_command, qos.COMMAND)
        self.poses = PoseArray()
        for x, y, z in ((0.7, 0.0, 0.02), (0.6, -0.2, 0.3)):
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = x, y, z
            pose.orientation.w = 1.0
            self.poses.poses.append(pose)
        # sim_clock: stamps (and /clock) in simulated time, sim_time_ns, advanced one period per tick;
        # a test may set sim_time_ns back, as a restarted simulator does.
        self.sim_time_ns = 0 if sim_clock else None
        self._period_ns = round(1e9 / rate_hz)
        self.clock_pub = None
        if sim_clock:
            from rosgraph_msgs.msg import Clock
            self._Clock = Clock
            self.clock_pub = self.node.create_publisher(Clock, '/clock', qos.STATE)
        self.node.create_timer(1.0 / rate_hz, self._tick)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _tick(self) -> None:
        if not self.publishing:
            return
        if self.sim_time_ns is None:
            now = time.time_ns()
        else:
            self.sim_time_ns += self._period_ns
            now = self.sim_time_ns
            clock = self._Clock()
            clock.clock.sec, clock.clock.nanosec = divmod(now, 1_000_000_000)
            self.clock_pub.publish(clock)
        message = self._JointState(name=list(self.JOINTS), position=[float(v) for v in self.q])
        message.header.stamp.sec, message.header.stamp.nanosec = divmod(now, 1_000_000_000)
        self.poses.header.stamp = message.header.stamp
        self.poses_pub.publish(self.poses)
        self.js_pub.publish(message)

    def _on_command(self, message) -> None:
        import numpy as np

        data = list(message.data)
        with self._lock:
            self.commands.append((time.monotonic(), data))
        if len(data) == 7 and all(np.isfinite(data)):
            self.q = np.asarray(data, dtype=float)

    def commands_since(self, t: float, with_times: bool = False) -> list:
        with self._lock:
            return [(s, c) if with_times else c for s, c in self.commands if s >= t]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
