"""The command path recovers from a clock that jumps back (issue #15, 2).

real2sim, policy (scripted expert) and sim2real on simulated time (use_sim_time), the test process plays
a simulated driver that publishes /clock and joint states stamped with it. Its clock then jumps back an
hour, as a restarted simulator's (or a driver's after an NTP step) does: the stamps and the nodes'
clocks go back together. Before, every sample after the jump was 'older than the previous' until the
clock had caught up again (an hour): no observation, no command.
"""
from __future__ import annotations

import json
import time

import pytest
import rclpy
from decision_graph import FakeArm, Probe, output_of, start_node, stop_node
from std_msgs.msg import String

from legion_ros import qos

pytestmark = pytest.mark.ros

SIM = {'use_sim_time': True}
DRIVER = {'driver.name': 'lbr', 'driver.joint_names': list(FakeArm.JOINTS),
          'driver.joint_states_topic': '/lbr/joint_states',
          'driver.command_topic': '/lbr/forward_position_controller/commands',
          'driver.gripper_topic': '/lbr/gripper/command'}
STEP = {'sequence_id': 1, 'index': 0, 'task': 'reach-v3', 'instruction': 'reach the goal'}


def test_commands_resume_after_the_clock_jumps_back_an_hour():
    rclpy.init()
    arm = FakeArm(sim_clock=True)
    arm.sim_time_ns = 3600 * 10**9  # an hour into the simulation
    nodes = {'real2sim': start_node('real2sim', {**DRIVER, **SIM, 'success_source': 'observation'}),
             'policy': start_node('policy', {'policy_type': 'expert', 'rate_hz': 10.0,
                                             'follow_trainer': False, 'watch_checkpoint': False, **SIM}),
             'sim2real': start_node('sim2real', {**DRIVER, **SIM})}
    probe = Probe('clock_jump_probe')
    try:
        probe.publish(String, '/legion/active_step', qos.LATCHED, String(data=json.dumps(STEP)))
        started = time.monotonic()
        assert probe.wait_for(lambda: len(arm.commands_since(started)) > 20, 120.0), \
            '\n'.join(output_of(p) for p in nodes.values() if p.poll() is not None) or 'no commands'
        arm.sim_time_ns = 0  # the clock (and every stamp) goes back an hour
        jumped = time.monotonic()
        resumed = probe.wait_for(lambda: len(arm.commands_since(jumped + 1.0)) > 20, 15.0)
        assert resumed, 'no commands after the clock jumped back'
        assert all(p.poll() is None for p in nodes.values())
    finally:
        probe.close()
        arm.close()
        codes = {name: stop_node(process) for name, process in nodes.items()}
        rclpy.try_shutdown()
    assert all(code == 0 for code in codes.values()), codes
