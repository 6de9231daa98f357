"""Steps are timed in the twin's time, with the real-time factor reported (issue #15, 7).

Under load the twin ran at 0.56 x real time and the shipped policy's reach step timed out: the
timeout counted wall seconds while the arm moved in simulated ones. Here the test plays a slow twin
(its /clock at half speed) for a real instruction node configured as `legion sim` configures it.
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import pytest
import rclpy
from decision_graph import Probe, output_of, start_node, stop_node
from std_msgs.msg import String

from legion_ros import qos
from legion_ros.instructions import TwinTime
from legion_ros.nodes.instruction import STATUS_QOS

pytestmark = pytest.mark.ros


def test_twin_time_counts_forward_only_and_measures_the_rate():
    clock = TwinTime()
    for k in range(201):  # 2 wall seconds at half speed, 100 Hz
        clock.update(k * 0.005, k * 0.01)
    assert clock.elapsed_s == pytest.approx(1.0)
    assert clock.real_time_factor(2.0) == pytest.approx(0.5, abs=0.01)
    clock.update(0.0, 2.01)      # a new twin starts at 0: nothing is added
    clock.update(3600.0, 2.02)   # one message an hour ahead: nothing either
    clock.update(0.01, 2.03)
    clock.update(0.02, 2.04)
    assert clock.elapsed_s == pytest.approx(1.01)


def _sim_step_parameters() -> dict:
    """The instruction node's parameters as `legion sim` sets them."""
    from legion_ros.sim_cli import _sim_nodes

    args = argparse.Namespace(driver='lbr', checkpoint='', no_record=True, bag_dir='/tmp', policy='expert',
                              step_timeout=2.0, seed=0)
    import tempfile
    nodes, _ = _sim_nodes(args, 'reach-v3', 'unused', tempfile.mkdtemp())
    import yaml
    (instruction,) = [n for n in nodes if n.name == 'instruction']
    table = yaml.safe_load(instruction.parameter_files[-1].read_text())
    (bridge,) = [n for n in nodes if n.name == 'sim_bridge']
    bridge_table = yaml.safe_load(bridge.parameter_files[-1].read_text())
    return table['/**/instruction']['ros__parameters'], bridge_table['/**/sim_bridge']['ros__parameters']


def test_legion_sim_times_steps_on_the_twins_clock():
    instruction, bridge = _sim_step_parameters()
    assert instruction['step_time_topic'] == '/clock'
    assert bridge['publish_clock'] is True and bridge['sim_time_stamps'] is False


def test_a_slow_twin_gives_a_step_its_full_time_and_the_rate_is_reported():
    from rosgraph_msgs.msg import Clock

    rclpy.init()
    parameters, _ = _sim_step_parameters()
    node = start_node('instruction', {'step_timeout_s': 2.0, 'step_time_topic': parameters['step_time_topic'],
                                      'use_sim_time': False})
    probe = Probe('slow_twin')
    stop = threading.Event()

    def slow_twin():  # /clock at half speed, 100 messages a second, as a loaded machine's twin
        context = rclpy.Context()
        rclpy.init(context=context)
        twin = rclpy.create_node('slow_twin_clock', context=context)
        publisher = twin.create_publisher(Clock, '/clock', qos.STATE)
        sim_ns = 0
        while not stop.is_set():
            message = Clock()
            message.clock.sec, message.clock.nanosec = divmod(sim_ns, 1_000_000_000)
            publisher.publish(message)
            sim_ns += 5_000_000
            time.sleep(0.01)
        twin.destroy_node()
        rclpy.try_shutdown(context=context)

    thread = threading.Thread(target=slow_twin, daemon=True)
    thread.start()
    try:
        events: list[dict] = []
        probe.node.create_subscription(String, '/legion/status', lambda m: events.append(json.loads(m.data)),
                                       STATUS_QOS)
        publisher = probe.publisher(String, '/legion/instruction', qos.STATE)
        ready = lambda: publisher.get_subscription_count() > 0 and events  # noqa: E731
        assert probe.wait_for(ready, 60.0), output_of(node)
        probe.spin(2.5)  # the rate window fills
        publisher.publish(String(data=json.dumps({'id': 'slow-1', 'text': 'reach the goal'})))
        started = lambda: [e for e in events if e.get('instruction_id') == 'slow-1'  # noqa: E731
                           and e['event'] == 'step_started']
        assert probe.wait_for(started, 20.0), events[-3:]
        step = started()[0]
        # 3 wall seconds: more than the 2 s timeout in wall time, 1.5 s of the twin's time.
        probe.spin(3.0)
        probe.publish(String, '/legion/step_success', qos.STATE, String(data=json.dumps(
            {'sequence_id': step['sequence_id'], 'index': 0, 'task': 'reach-v3', 'success': True})))
        final = lambda: [e for e in events if e.get('instruction_id') == 'slow-1'  # noqa: E731
                         and e['state'] in ('succeeded', 'failed')]
        assert probe.wait_for(final, 10.0)
        assert final()[0]['state'] == 'succeeded', final()[0]['reasons']
        assert final()[0]['real_time_factor'] == pytest.approx(0.5, abs=0.1)
        assert final()[0]['steps'][0]['duration_s'] == pytest.approx(1.5, abs=0.4)  # twin seconds
    finally:
        stop.set()
        thread.join(timeout=5)
        probe.close()
        code = stop_node(node)
        rclpy.try_shutdown()
    assert code == 0, output_of(node)


def test_the_twin_publishes_its_clock_with_wall_stamped_states_for_legion_sim():
    """legion sim's twin: /clock in simulated time for the step timeouts, joint states on the wall clock
    like every node of that graph (their stamps must agree with the receiving clocks)."""
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState

    _, bridge = _sim_step_parameters()
    rclpy.init()
    node = start_node('sim_bridge', {'publish_clock': bridge['publish_clock'],
                                     'sim_time_stamps': bridge['sim_time_stamps'], 'use_sim_time': False})
    probe = Probe('twin_clock_probe')
    try:
        probe.listen(Clock, '/clock', qos.SENSOR)
        probe.listen(JointState, '/lbr/joint_states', qos.SENSOR)
        assert probe.wait_for(lambda: len(probe.messages['/clock']) > 5
                              and len(probe.messages['/lbr/joint_states']) > 5, 90.0), output_of(node)
        stamp = probe.messages['/lbr/joint_states'][-1].header.stamp
        assert abs(stamp.sec + stamp.nanosec * 1e-9 - time.time()) < 1.0
        clock = probe.messages['/clock'][-1].clock
        assert clock.sec < 600  # simulated seconds since the twin started
    finally:
        probe.close()
        code = stop_node(node)
        rclpy.try_shutdown()
    assert code == 0, output_of(node)
