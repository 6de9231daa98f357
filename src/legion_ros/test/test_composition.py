"""Nodes hosted in one process hand messages over directly and still talk to everybody else."""
from __future__ import annotations

import json
import time

import pytest
import rclpy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, String

from legion_ros import qos
from legion_ros.composition import IntraProcess

pytestmark = pytest.mark.ros


@pytest.fixture
def context():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def spin(nodes, seconds: float) -> None:
    executor = rclpy.executors.SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)
    for node in nodes:
        executor.remove_node(node)


def test_local_hand_over_is_synchronous_once_and_external_messages_still_arrive(context):
    calls = []
    upstream = rclpy.create_node('upstream')
    downstream = rclpy.create_node('downstream')
    monitor = rclpy.create_node('monitor')  # another process in a real graph: hears everything via DDS
    outsider = rclpy.create_node('outsider')
    out = upstream.create_publisher(Float32MultiArray, '/t/action', qos.COMMAND)
    downstream.create_subscription(Float32MultiArray, '/t/action',
                                   lambda m: calls.append(('downstream', list(m.data))), qos.COMMAND)
    monitor.create_subscription(Float32MultiArray, '/t/action',
                                lambda m: calls.append(('monitor', list(m.data))), qos.COMMAND)
    links = IntraProcess([upstream, downstream])
    assert links.local_topics == {'/t/action': ['downstream']}
    external = outsider.create_publisher(Float32MultiArray, '/t/action', qos.COMMAND)
    spin([upstream, downstream, monitor, outsider], 1.0)  # discovery

    out.publish(Float32MultiArray(data=[1.0]))
    assert calls == [('downstream', [1.0])]  # delivered inside publish(), before any spinning
    spin([upstream, downstream, monitor, outsider], 0.5)  # (command QoS keeps 1: one message at a time)
    external.publish(Float32MultiArray(data=[2.0]))
    spin([upstream, downstream, monitor, outsider], 1.0)
    # The DDS copy of the local message is not handled twice; the outsider's message is handled.
    assert sorted(c for c in calls if c[0] == 'downstream') == [('downstream', [1.0]), ('downstream', [2.0])]
    assert sorted(c for c in calls if c[0] == 'monitor') == [('monitor', [1.0]), ('monitor', [2.0])]
    for node in (upstream, downstream, monitor, outsider):
        node.destroy_node()


def test_an_external_topic_several_nodes_read_is_taken_once_and_given_in_hosting_order(context):
    order = []
    first, second = rclpy.create_node('first'), rclpy.create_node('second')
    driver = rclpy.create_node('driver')
    for node in (second, first):  # created in the other order: hosting order must decide
        name = node.get_name()
        node.create_subscription(JointState, '/t/joint_states', lambda m, n=name: order.append(n), qos.SENSOR)
    links = IntraProcess([first, second])
    assert links.shared_topics == {'/t/joint_states': ['first', 'second']}
    assert len([s for s in second.subscriptions if s.topic_name == '/t/joint_states']) == 0
    publisher = driver.create_publisher(JointState, '/t/joint_states', qos.STATE)
    spin([first, second, driver], 1.0)
    publisher.publish(JointState(name=['a'], position=[0.0]))
    spin([first, second, driver], 0.5)
    assert order == ['first', 'second']
    for node in (first, second, driver):
        node.destroy_node()


def test_decision_path_process_runs_the_three_nodes_and_commands_the_arm():
    """The composed process behaves like the three nodes: each is visible by name, and joint states
    plus a scene and an active step give joint commands (Meta-World's scripted expert acting)."""
    from decision_graph import FakeArm, Probe, output_of, start_node, stop_node

    process = start_node('decision_path', {'policy_type': 'expert', 'trigger': 'observation',
                                           'rate_hz': 100.0, 'policy_rate_hz': 100.0,
                                           'success_source': 'observation'})
    rclpy.init()
    arm = probe = None
    try:
        probe = Probe()
        arm = FakeArm()
        step = String(data=json.dumps({'sequence_id': 1, 'index': 0, 'task': 'reach-v3',
                                       'instruction': 'reach'}))
        probe.publish(String, '/legion/active_step', qos.LATCHED, step)
        assert probe.wait_for(lambda: len(arm.commands_since(0.0)) > 20, 90.0), output_of(process)
        assert all(len(c) == 7 for c in arm.commands_since(0.0))
        names = {f'{ns.rstrip("/")}/{name}' for name, ns in probe.node.get_node_names_and_namespaces()}
        assert {'/legion/real2sim', '/legion/policy', '/legion/sim2real'} <= names
    finally:
        if arm is not None:
            arm.close()
        if probe is not None:
            probe.close()
        rclpy.try_shutdown()
        assert stop_node(process) == 0


def test_the_graph_hosts_what_the_decision_path_process_runs_in_its_order():
    from legion_ros.graph import graph
    from legion_ros.nodes.decision_path import HOSTED

    for name in ('sim', 'real'):
        (process,) = [n for n in graph(name).resolve().nodes if n.executable == 'decision_path']
        assert process.hosts == HOSTED
