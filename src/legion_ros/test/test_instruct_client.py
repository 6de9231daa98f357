"""How `legion sim` / `legion instruct` hand an instruction to the graph's instruction node."""
from __future__ import annotations

import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from legion_ros import qos
from legion_ros.instruct_cli import StatusFollower, deliver
from legion_ros.interfaces import INSTRUCTION
from legion_ros.nodes.instruction import INSTRUCTION_QOS, NODE_NAME

pytestmark = pytest.mark.ros


@pytest.fixture
def executor():
    rclpy.init()
    executor = SingleThreadedExecutor()
    yield executor
    executor.shutdown()
    rclpy.try_shutdown()


def spin(executor, predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()


def test_the_client_waits_for_the_instruction_node_not_for_the_recorder(executor):
    client = rclpy.create_node('legion_cli_test')
    follower = StatusFollower(client)
    # The recorder subscribes to the instruction topic (to keep it in the bag) long before a loaded
    # instruction node has built its intent model: an instruction sent then reaches only the recorder.
    recorder = rclpy.create_node('recorder', namespace='/legion')
    recorder.create_subscription(String, INSTRUCTION.name, lambda _m: None, qos.LATCHED)
    for node in (client, recorder):
        executor.add_node(node)
    assert spin(executor, lambda: client.get_subscriptions_info_by_topic(INSTRUCTION.name), 10.0)
    assert not follower.ready()
    instruction = rclpy.create_node(NODE_NAME, namespace='/legion')
    instruction.create_subscription(String, INSTRUCTION.name, lambda _m: None, INSTRUCTION_QOS)
    executor.add_node(instruction)
    assert spin(executor, follower.ready, 10.0)


def test_an_instruction_nobody_confirms_is_reported_not_waited_for_forever(executor):
    client = rclpy.create_node('legion_cli_test')
    follower = StatusFollower(client)
    executor.add_node(client)
    started = time.monotonic()
    assert deliver(client, follower, 'reach the goal', attempts=2, confirm_s=0.2) is False
    assert time.monotonic() - started < 5.0
