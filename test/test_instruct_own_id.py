"""`legion instruct` follows only its own instruction's status events (issue #15, 3).

The client used to take the first ``queued``/``rejected`` after its baseline for its own: with more
history on the latched ``/legion/status`` than it expected, or another client's instruction planned
just before its own, it reported that one's outcome (exit 0 after 4 s for a step that never ran). Here
the test process stands in for the instruction node, built from the node's own pieces (the
``Sequencer``, ``InstructionRequest``, the topics' QoS): on receiving the client's instruction it first
publishes another instruction's complete, successful sequence, then the client's own, which fails.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import String

from legion_ros.instructions import InstructionRequest, PlannedStep, Sequencer
from legion_ros.interfaces import INSTRUCTION, STATUS
from legion_ros.nodes.instruction import INSTRUCTION_QOS, NODE_NAME, STATUS_QOS

pytestmark = pytest.mark.ros


class StandIn:
    def __init__(self) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        # The instruction node's name: the client waits for that node, not for any subscriber.
        self.node = rclpy.create_node(NODE_NAME, context=self.context)
        self.status = self.node.create_publisher(String, STATUS.name, STATUS_QOS)
        self.node.create_subscription(String, INSTRUCTION.name, self.on_instruction, INSTRUCTION_QOS)
        self.sequencer = Sequencer(step_timeout_s=0.5)
        self.received: list[InstructionRequest] = []
        # Someone else's instruction already succeeded: it is in the latched history.
        self.other(text='reach the goal', ident='auto-1')
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def emit(self, events) -> None:
        for event in events:
            self.status.publish(String(data=json.dumps(event)))

    def other(self, text: str, ident: str) -> None:
        now = time.monotonic()
        self.emit(self.sequencer.load(text, [PlannedStep(0, text, 'reach-v3', 0.9)], now, ident))
        self.emit(self.sequencer.report_success(now + 0.1))

    def on_instruction(self, message) -> None:
        request = InstructionRequest.from_payload(message.data.encode())
        if any(r.id == request.id and request.id for r in self.received):
            return  # a resend: taken once, as the node does
        self.received.append(request)
        # Another client's instruction got in first and succeeds at once...
        self.other(text='reach the goal', ident='auto-2')
        # ...then the client's own runs and times out.
        text = request.text if isinstance(request.text, str) else request.text.decode()
        now = time.monotonic()
        self.emit(self.sequencer.load(text, [PlannedStep(0, text, 'button-press-v3', 0.9)], now, request.id))
        self.emit(self.sequencer.tick(now + 1.0))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def test_the_client_reports_its_own_instruction_not_another_one():
    stand_in = StandIn()
    try:
        cli = subprocess.Popen([sys.executable, '-m', 'legion_core.cli.main', 'instruct', 'press the button',
                                '--json', '--timeout', '20'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ))
        out, err = cli.communicate(timeout=90)
    finally:
        stand_in.close()
    events = [json.loads(line) for line in out.splitlines()]
    assert cli.returncode == 1, (out, err)  # its own step failed; the other's success is not its
    assert len(stand_in.received) == 1 and stand_in.received[0].id, stand_in.received
    assert events and all(e['instruction_id'] == stand_in.received[0].id for e in events)
    assert events[-1]['state'] == 'failed' and events[-1]['instruction'] == 'press the button'
