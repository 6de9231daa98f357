"""The policy node as a process: acts only on a fresh observation of an active step, carries stamps."""
from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import rclpy
from decision_graph import Probe, output_of, start_node, stop_node
from std_msgs.msg import Float32MultiArray, String

from legion_ros import qos
from legion_ros.provenance import array_message, source_of

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _obs39(hand=(0.0, 0.6, 0.2), goal=(0.1, 0.8, 0.2)) -> np.ndarray:
    obs = np.zeros(39)
    obs[0:3], obs[3], obs[4:7], obs[36:39] = hand, 1.0, (0.0, 0.7, 0.02), goal
    obs[18:21] = hand
    return obs


@contextlib.contextmanager
def expert_policy(probe_name: str, **parameters):
    """A policy node process with Meta-World's experts, and a probe that hears its actions and status."""
    node = start_node('policy', {'policy_type': 'expert', 'follow_trainer': False, 'watch_checkpoint': False,
                                 **parameters})
    probe = Probe(probe_name)
    try:
        probe.listen(Float32MultiArray, '/legion/action', qos.COMMAND)
        probe.listen(String, '/legion/policy/status', qos.LATCHED)
        obs_pub = probe.publisher(Float32MultiArray, '/legion/observation_full', qos.STATE)
        assert probe.wait_for(lambda: obs_pub.get_subscription_count() > 0, 20.0), output_of(node)
        yield node, probe, obs_pub
    finally:
        probe.close()
        assert stop_node(node) == 0, output_of(node)


def test_expert_policy_acts_on_active_step_with_source_stamp(ros):
    from metaworld.policies import ENV_POLICY_MAP

    with expert_policy('policy_probe', trigger='observation') as (_node, probe, obs_pub):

        # No active step: observations alone never move the arm.
        for k in range(5):
            obs_pub.publish(array_message(_obs39(), 'observation', source_ns=k))
            probe.spin(0.02)
        probe.spin(0.3)
        assert probe.messages['/legion/action'] == []

        probe.publish(String, '/legion/active_step', qos.LATCHED, String(data=json.dumps(
            {'sequence_id': 1, 'index': 0, 'task': 'reach-v3', 'instruction': 'reach the goal'})))
        probe.spin(0.5)
        obs = _obs39()
        expected = ENV_POLICY_MAP['reach-v3']().get_action(obs)
        stamps = list(range(1000, 1100))
        for stamp in stamps:
            obs_pub.publish(array_message(obs, 'observation', source_ns=stamp))
            probe.spin(0.03)
            if len(probe.messages['/legion/action']) >= 10:
                break
        assert len(probe.messages['/legion/action']) >= 10
        actions = probe.messages['/legion/action']
        for message in actions:
            assert len(message.data) == 4
            np.testing.assert_allclose(message.data, np.clip(expected, -1, 1), atol=1e-6)
        assert {source_of(m) for m in actions} <= set(stamps)

        # The step ends: no more actions.
        probe.publish(String, '/legion/active_step', qos.LATCHED, String(data=json.dumps(
            {'sequence_id': 1, 'index': None, 'task': None, 'instruction': None})))
        probe.spin(0.3)
        count = len(probe.messages['/legion/action'])
        for stamp in range(5):
            obs_pub.publish(array_message(obs, 'observation', source_ns=stamp))
            probe.spin(0.03)
        probe.spin(0.2)
        assert len(probe.messages['/legion/action']) == count

        # A task Meta-World has no expert for: a fault on the status topic, no action.
        probe.publish(String, '/legion/active_step', qos.LATCHED, String(data=json.dumps(
            {'sequence_id': 2, 'index': 0, 'task': 'fly-to-the-moon-v3', 'instruction': 'x'})))
        probe.spin(0.3)
        obs_pub.publish(array_message(obs, 'observation', source_ns=1))
        faulted = lambda: any(s['state'] == 'fault' for s in probe.json('/legion/policy/status'))  # noqa: E731
        assert probe.wait_for(faulted, 5.0)
        assert len(probe.messages['/legion/action']) == count
        fault = [s for s in probe.json('/legion/policy/status') if s['state'] == 'fault'][-1]
        assert 'fly-to-the-moon-v3' in fault['reason']


def test_timer_trigger_acts_at_rate_and_stops_on_stale_observation(ros):
    with expert_policy('policy_timer_probe', trigger='timer', rate_hz=20.0,
                       observation_timeout_s=0.2) as (_node, probe, obs_pub):
        probe.publish(String, '/legion/active_step', qos.LATCHED, String(data=json.dumps(
            {'sequence_id': 1, 'index': 0, 'task': 'reach-v3', 'instruction': 'reach'})))
        # The expert is built when the step arrives (Meta-World import): wait until the node acts.
        acting = lambda: any(s['state'] == 'acting' for s in probe.json('/legion/policy/status'))  # noqa: E731
        assert probe.wait_for(acting, 30.0)
        # Observations at 50 Hz for 1 s: the policy acts at its own 20 Hz.
        for stamp in range(50):
            obs_pub.publish(array_message(_obs39(), 'observation', source_ns=stamp))
            probe.spin(0.02)
        acted = len(probe.messages['/legion/action'])
        assert 12 <= acted <= 25, acted
        probe.spin(0.6)  # observations stop: within observation_timeout_s the policy goes quiet
        quiet = len(probe.messages['/legion/action'])
        probe.spin(0.5)
        assert len(probe.messages['/legion/action']) == quiet


def test_bad_parameter_is_a_configuration_error(ros):
    node = start_node('policy', {'policy_type': 'legion', 'checkpoint': '/nonexistent/policy.pt'})
    code = node.wait(30)
    out = output_of(node)
    assert code == 2, out
    assert '/nonexistent/policy.pt' in out


def test_a_new_step_is_not_acted_on_with_the_previous_steps_observation(ros):
    with expert_policy('policy_step_probe', trigger='timer', rate_hz=20.0,
                       observation_timeout_s=2.0) as (node, probe, obs_pub):

        def step(task, sequence):
            probe.publish(String, '/legion/active_step', qos.LATCHED, String(data=json.dumps(
                {'sequence_id': sequence, 'index': 0, 'task': task, 'instruction': task})))
            acting = lambda: any(s['state'] == 'acting' and s.get('task') == task  # noqa: E731
                                 for s in probe.json('/legion/policy/status'))
            assert probe.wait_for(acting, 30.0), output_of(node)

        step('reach-v3', 1)
        obs_pub.publish(array_message(_obs39(), 'observation', source_ns=7))
        assert probe.wait_for(lambda: len(probe.messages['/legion/action']) >= 2, 5.0)
        step('push-v3', 2)  # the twin loads another scene: the old observation is not of it
        acted = len(probe.messages['/legion/action'])
        probe.spin(0.5)  # 10 timer ticks, the old observation still younger than observation_timeout_s
        assert len(probe.messages['/legion/action']) == acted
        obs_pub.publish(array_message(_obs39(), 'observation', source_ns=8))
        assert probe.wait_for(lambda: len(probe.messages['/legion/action']) > acted, 5.0)
        assert source_of(probe.messages['/legion/action'][-1]) == 8
