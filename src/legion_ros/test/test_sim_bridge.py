"""sim_bridge against a client in another process: the real driver's topics on the MuJoCo twin,
commands followed, malformed ones rejected without harm, reset/pause/step services, /clock, objects."""
from __future__ import annotations

import json
import math
import subprocess
import time

import numpy as np
import pytest
from decision_graph import call_service

from legion_ros.graph import graph
from legion_ros.runner import node_command

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('legion_kuka.twin')

PERIOD_S = 0.01  # 100 Hz controller (config/sim_bridge.yaml)
LBR_JOINTS = [f'lbr_A{i}' for i in range(1, 8)]


class Client:
    """A test-side node: latest joint state, clock, status, object poses; commands and services."""

    def __init__(self) -> None:
        from geometry_msgs.msg import PoseArray
        from rclpy.executors import SingleThreadedExecutor
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64, Float64MultiArray, String
        from std_srvs.srv import SetBool, Trigger

        from legion_ros import qos

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('sim_bridge_test_client', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.joint_states, self.clock, self.status, self.poses, self.names = [], [], [], [], []
        n = self.node
        n.create_subscription(JointState, '/lbr/joint_states', self.joint_states.append, qos.SENSOR)
        n.create_subscription(Clock, '/clock', self.clock.append, qos.SENSOR)
        n.create_subscription(String, '/legion/sim_bridge/status',
                              lambda m: self.status.append(json.loads(m.data)), qos.LATCHED)
        n.create_subscription(PoseArray, '/legion/object_poses', self.poses.append, qos.SENSOR)
        n.create_subscription(String, '/legion/object_names', lambda m: self.names.append(json.loads(m.data)),
                              qos.LATCHED)
        self.opening = []
        n.create_subscription(Float64, '/legion/gripper_opening', lambda m: self.opening.append(m.data),
                              qos.SENSOR)
        self.gripper_pub = n.create_publisher(Float64, '/lbr/gripper/command', qos.COMMAND)
        self.Float64 = Float64
        self.command_pub = n.create_publisher(Float64MultiArray, '/lbr/forward_position_controller/commands',
                                              qos.COMMAND)
        self.Float64MultiArray = Float64MultiArray
        self.reset = n.create_client(Trigger, '/legion/sim_bridge/reset')
        self.pause = n.create_client(SetBool, '/legion/sim_bridge/set_pause')
        self.step = n.create_client(Trigger, '/legion/sim_bridge/step')
        self.Trigger, self.SetBool = Trigger, SetBool

    def spin_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return True
        return False

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def position(self) -> np.ndarray:
        return np.array(self.joint_states[-1].position)

    def stamp_s(self) -> float:
        stamp = self.joint_states[-1].header.stamp
        return stamp.sec + stamp.nanosec * 1e-9

    def command(self, values) -> None:
        self.command_pub.publish(self.Float64MultiArray(data=[float(v) for v in values]))

    def call(self, client, request, timeout_s: float = 10.0):
        return call_service(self.node, client, request, self.spin_until, answer_s=timeout_s,
                            ready_s=timeout_s)

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture(scope='module')
def bridge(tmp_path_factory):
    """One sim_bridge process, started exactly as `legion launch sim` starts it."""
    (node,) = [n for n in graph('sim').resolve().nodes if n.name == 'sim_bridge']
    command = node_command(node, tmp_path_factory.mktemp('params'))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    client = Client()
    try:
        if not client.spin_until(lambda: len(client.joint_states) > 5, 90):
            process.kill()
            pytest.fail('sim_bridge published no joint states:\n' + process.communicate()[0])
        yield client, process
    finally:
        client.close()
        process.terminate()
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            code = 'killed'
    assert code == 0, f'sim_bridge did not stop cleanly on SIGTERM ({code}):\n{process.stdout.read()}'


def test_driver_interface_and_rate(bridge):
    client, _ = bridge
    assert client.joint_states[-1].name == LBR_JOINTS
    count = len(client.joint_states)
    client.spin_for(1.0)
    rate = len(client.joint_states) - count
    assert 50 <= rate <= 130, f'{rate} joint states in 1 s, expected ~100'
    # Sim time on /clock and in the stamps advances one controller period per cycle.
    stamps = [m.clock.sec + m.clock.nanosec * 1e-9 for m in client.clock[-20:]]
    steps = np.round(np.diff(stamps) / PERIOD_S)
    assert np.all(steps >= 1), stamps
    # Once a second the status says how fast the twin runs compared with the wall clock.
    assert client.spin_until(lambda: 'real_time_factor' in client.status[-1], 3.0)
    assert 0.2 < client.status[-1]['real_time_factor'] < 1.5


def test_joint_states_follow_commands(bridge):
    client, _ = bridge
    start = client.position()
    target = start + np.array([0.15, -0.10, 0.0, 0.10, 0.0, 0.05, 0.0])
    client.command(target)
    reached = client.spin_until(lambda: np.max(np.abs(client.position() - target)) < 0.01, 5.0)
    assert reached, f'at {client.position()}, target {target}'
    # The target is held: no drift after the command stops.
    client.spin_for(0.3)
    assert np.max(np.abs(client.position() - target)) < 0.01


@pytest.mark.parametrize('values, reason', [
    ([0.1, 0.2, 0.3], 'expected 7 joint positions, got 3'),
    ([0.0] * 8, 'expected 7 joint positions, got 8'),
    ([0.0, math.nan, 0, 0, 0, 0, 0], 'non-finite'),
    ([math.inf, 0, 0, 0, 0, 0, -math.inf], 'non-finite'),
])
def test_malformed_commands_are_rejected_and_the_arm_holds(bridge, values, reason):
    client, process = bridge
    client.spin_for(0.1)
    held = client.position()
    before = client.status[-1]['rejected_commands'] if client.status else 0
    client.command(values)
    assert client.spin_until(
        lambda: client.status and client.status[-1]['rejected_commands'] == before + 1, 5.0)
    assert reason in client.status[-1]['last_rejection']
    count = len(client.joint_states)
    client.spin_for(0.3)
    assert process.poll() is None, 'sim_bridge died on a malformed command'
    assert len(client.joint_states) > count + 10, 'joint states stopped'
    assert np.max(np.abs(client.position() - held)) < 0.01, 'a rejected command moved the arm'


def test_pause_step_and_resume(bridge):
    client, _ = bridge
    response = client.call(client.pause, client.SetBool.Request(data=True))
    assert response.success
    client.spin_for(0.2)
    frozen = client.stamp_s()
    client.spin_for(0.3)
    assert client.stamp_s() == pytest.approx(frozen), 'sim time advanced while paused'
    response = client.call(client.step, client.Trigger.Request())
    assert response.success, response.message
    assert client.spin_until(lambda: client.stamp_s() > frozen, 2.0)
    assert client.stamp_s() == pytest.approx(frozen + PERIOD_S, abs=1e-6)
    assert client.status[-1]['state'] == 'paused'
    response = client.call(client.pause, client.SetBool.Request(data=False))
    assert response.success
    client.spin_for(0.3)
    assert client.stamp_s() > frozen + 0.1
    response = client.call(client.step, client.Trigger.Request())
    assert not response.success and 'not paused' in response.message


def test_reset_restores_the_initial_state(bridge):
    client, _ = bridge
    response = client.call(client.reset, client.Trigger.Request())
    assert response.success and 'reach-v3' in response.message
    client.spin_for(0.3)
    initial = client.position()
    client.command(initial + 0.1)
    assert client.spin_until(lambda: np.max(np.abs(client.position() - initial - 0.1)) < 0.02, 5.0)
    seen = len(client.status)
    response = client.call(client.reset, client.Trigger.Request())
    assert response.success
    client.spin_for(0.3)
    assert np.max(np.abs(client.position() - initial)) < 0.01
    assert 'reset' in [s['event'] for s in client.status[seen:]]


def test_object_poses_in_the_base_frame(bridge):
    client, _ = bridge
    assert client.spin_until(lambda: client.poses and client.names, 5.0)
    names = client.names[-1]
    assert names[-1] == 'goal' and 'object_1' in names
    poses = client.poses[-1]
    assert poses.header.frame_id == 'lbr_link_0'
    assert len(poses.poses) == len(names)
    for pose in poses.poses:  # Meta-World tables are within reach: ~0.3..1 m in front of the base
        assert 0.05 < math.hypot(pose.position.x, pose.position.y) < 1.2


def test_gripper_follows_commands_and_rejects_nan(bridge):
    client, process = bridge
    assert client.spin_until(lambda: client.opening, 5.0)
    client.gripper_pub.publish(client.Float64(data=1.0))  # close
    assert client.spin_until(lambda: client.opening[-1] < 0.3, 5.0), client.opening[-1]
    closed = client.opening[-1]
    before = client.status[-1]['rejected_commands']
    client.gripper_pub.publish(client.Float64(data=math.nan))
    assert client.spin_until(lambda: client.status[-1]['rejected_commands'] == before + 1, 5.0)
    assert 'gripper command' in client.status[-1]['last_rejection']
    client.spin_for(0.3)
    assert abs(client.opening[-1] - closed) < 0.1 and process.poll() is None
    client.gripper_pub.publish(client.Float64(data=-1.0))  # open again
    assert client.spin_until(lambda: client.opening[-1] > 0.7, 5.0), client.opening[-1]


def test_task_parameter_switches_the_scene(bridge):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    client, _ = bridge
    parameters = AsyncParameterClient(client.node, '/legion/sim_bridge')
    assert parameters.wait_for_services(timeout_sec=10)

    def set_parameter(name, value):
        future = parameters.set_parameters([Parameter(name, value=value)])
        assert client.spin_until(future.done, 30), 'no answer from set_parameters'
        return future.result().results[0]

    def goal():
        position = client.poses[-1].poses[-1].position  # the goal comes last
        return np.array([position.x, position.y, position.z])

    goal_before = goal()
    try:
        result = set_parameter('task', 'push-v3')
        assert result.successful, result.reason
        assert client.spin_until(lambda: client.status[-1].get('task') == 'push-v3', 5.0)
        client.spin_for(0.3)
        # reach's goal is in the air, push's on the table: the new scene is really loaded.
        assert np.linalg.norm(goal() - goal_before) > 0.01, 'the goal did not move with the new scene'
        result = set_parameter('task', 'no-such-task-v3')
        assert not result.successful and 'no-such-task-v3' in result.reason
        assert client.status[-1]['task'] == 'push-v3'  # the twin kept its scene
        result = set_parameter('control_rate_hz', 50.0)
        assert not result.successful  # read-only: it would not take effect while running
    finally:
        assert set_parameter('task', 'reach-v3').successful


def test_a_scene_at_the_joint_limits_starts_inside_the_safety_limits(bridge):
    """button-press-topdown resets the arm at A4 -120, A6 120 deg, outside sim2real's limits (datasheet
    less 5 deg), where the safety filter would hold every command: the twin starts it inside them, on a
    scene switch and on ~/reset alike (config/sim_bridge.yaml start_inside_margin_deg)."""
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    from legion_kuka.safety import SafetyLimits

    client, _ = bridge
    limits = SafetyLimits.from_description(position_margin=math.radians(5.0), workspace=None)
    parameters = AsyncParameterClient(client.node, '/legion/sim_bridge')
    assert parameters.wait_for_services(timeout_sec=10)

    def set_task(task):
        future = parameters.set_parameters([Parameter('task', value=task)])
        assert client.spin_until(future.done, 30), 'no answer from set_parameters'
        assert future.result().results[0].successful
        assert client.spin_until(lambda: client.status[-1].get('task') == task, 5.0)

    try:
        set_task('button-press-topdown-v3')
        client.spin_for(0.3)
        assert limits.within_positions(client.position()), np.degrees(client.position()).round(1)
        response = client.call(client.reset, client.Trigger.Request())
        assert response.success and 'button-press-topdown-v3' in response.message
        client.spin_for(0.3)
        assert limits.within_positions(client.position()), np.degrees(client.position()).round(1)
    finally:
        set_task('reach-v3')
