"""sim2real sends the gripper the time-scaled command that legion_kuka's chain sends, not the raw action
(issue #5: with the raw action the fingers closed 8x faster per policy step than in training and the
push expert's hand stuck above the puck through the graph, while the chain succeeded)."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('legion_kuka.sim2real')


@pytest.fixture
def context():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_gripper_command_is_the_chains_time_scaled_command(context):
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float32MultiArray, Float64

    from legion_kuka.description import HOME
    from legion_kuka.sim2real import METAWORLD_STEP_S
    from legion_ros import qos
    from legion_ros.nodes.sim2real import Sim2RealNode
    from legion_ros.provenance import array_message

    node = Sim2RealNode()  # defaults: lbr driver, 100 Hz controller, 10 Hz policy
    probe = rclpy.create_node('gripper_probe')
    gripper = []
    probe.create_subscription(Float64, '/lbr/gripper/command', lambda m: gripper.append(m.data), qos.COMMAND)
    joints = probe.create_publisher(JointState, '/lbr/joint_states', qos.SENSOR)
    actions = probe.create_publisher(Float32MultiArray, '/legion/action', qos.COMMAND)
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(probe)

    def spin_until(predicate, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not predicate():
            executor.spin_once(timeout_sec=0.02)
        return predicate()

    try:
        assert spin_until(lambda: actions.get_subscription_count() and joints.get_subscription_count(), 10)
        state = JointState(name=node.joint_names, position=[float(v) for v in HOME])
        state.header.stamp = probe.get_clock().now().to_msg()
        joints.publish(state)
        assert spin_until(lambda: node.q is not None, 5)
        for grip in (0.6, -1.0):
            seen = len(gripper)
            actions.publish(array_message(np.array([0.0, 0.0, 0.0, grip]), 'action'))
            assert spin_until(lambda: len(gripper) > seen, 5), gripper  # noqa: B023 (called right here)
            # Meta-World's 12.5 ms env step over the 100 ms policy step: 1/8 of the action.
            assert gripper[-1] == pytest.approx(grip * 10.0 * METAWORLD_STEP_S)
    finally:
        executor.shutdown()
        probe.destroy_node()
        node.destroy_node()
