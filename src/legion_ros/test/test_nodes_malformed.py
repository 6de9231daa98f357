"""Malformed input on every input topic of the decision path, a dead policy, and the e-stop.

real2sim, policy (Meta-World's scripted expert) and sim2real run as processes; the test process plays
the driver (:class:`decision_graph.FakeArm`, joint states at 100 Hz following every command). Whatever
arrives, the nodes keep running, every command that reaches the driver is inside the safety limits,
and the nodes' status says what they rejected.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import rclpy
from decision_graph import FakeArm, Probe, output_of, start_node, stop_node
from geometry_msgs.msg import Pose, PoseArray
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64, String

from legion_ros import qos
from legion_ros.provenance import array_message, source_of

pytestmark = pytest.mark.ros

DRIVER = {'driver.name': 'lbr', 'driver.joint_names': list(FakeArm.JOINTS),
          'driver.joint_states_topic': '/lbr/joint_states',
          'driver.command_topic': '/lbr/forward_position_controller/commands',
          'driver.gripper_topic': '/lbr/gripper/command'}
POLICY = {'policy_type': 'expert', 'rate_hz': 10.0, 'follow_trainer': False, 'watch_checkpoint': False}
STEP = {'sequence_id': 1, 'index': 0, 'task': 'reach-v3', 'instruction': 'reach the goal'}


@pytest.fixture(scope='module')
def graph():
    rclpy.init()
    arm = FakeArm()
    nodes = {'real2sim': start_node('real2sim', {**DRIVER, 'success_source': 'observation'}),
             'policy': start_node('policy', POLICY),
             'sim2real': start_node('sim2real', DRIVER)}
    probe = Probe('malformed_probe')
    for name in nodes:
        probe.listen(String, f'/legion/{name}/status', qos.LATCHED)
    probe.publish(String, '/legion/active_step', qos.LATCHED, String(data=json.dumps(STEP)))
    started = time.monotonic()
    ok = probe.wait_for(lambda: len(arm.commands_since(started)) > 20, 90.0)
    assert ok, '\n'.join(output_of(p) for p in nodes.values() if p.poll() is not None) or 'no commands'
    yield probe, arm, nodes
    probe.close()
    arm.close()
    codes = {name: stop_node(process) for name, process in nodes.items()}
    rclpy.try_shutdown()
    assert all(code == 0 for code in codes.values()), codes


def _limits():
    from legion_kuka.safety import SafetyLimits
    return SafetyLimits.from_description()


def assert_within_limits(timed_commands: list, period_s: float = 0.01) -> None:
    """Every command inside the position limits, and no faster than the velocity limit over time.

    Received commands may be dropped (command QoS keeps only the newest) or bunched by scheduling, so
    speed is checked between commands 10 apart: displacement <= limit x (elapsed time + 2 periods).
    """
    limits = _limits()
    assert timed_commands, 'no commands'
    times = np.array([t for t, _ in timed_commands])
    q = np.asarray([c for _, c in timed_commands], dtype=float)
    assert q.ndim == 2 and q.shape[1] == 7 and np.all(np.isfinite(q))
    assert np.all(q >= limits.lower - 1e-9) and np.all(q <= limits.upper + 1e-9)
    span = min(10, len(q) - 1)
    if span >= 1:
        moved = np.abs(q[span:] - q[:-span])
        allowed = limits.velocity[None, :] * (times[span:] - times[:-span] + 2 * period_s)[:, None]
        assert np.all(moved <= allowed + 1e-9), (moved / allowed).max()


def _statuses(probe, node: str) -> list[dict]:
    return probe.json(f'/legion/{node}/status')


def _rejected(probe, node: str, topic: str) -> bool:
    # The status is latched (depth 1): a burst may coalesce, so the per-topic counts are checked too.
    return any(s.get('topic') == topic or topic in (s.get('rejected') or {})
               for s in _statuses(probe, node) if s['state'] in ('input_rejected', 'holding', 'commanding'))


def test_commands_flow_and_stay_within_limits(graph):
    probe, arm, _ = graph
    since = time.monotonic()
    probe.spin(1.0)
    commands = arm.commands_since(since)
    assert len(commands) >= 50  # ~100 Hz
    assert_within_limits(arm.commands_since(since, with_times=True))


def _joint_state(names, positions, stamp_ns=None):
    message = JointState(name=list(names), position=[float(v) for v in positions])
    stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns
    message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return message


BAD_JOINT_STATES = {
    'wrong joint names': lambda: _joint_state([f'joint_a{i}' for i in range(1, 8)], [0.0] * 7),
    'NaN position': lambda: _joint_state(FakeArm.JOINTS, [0.0, float('nan'), 0, 0, 0, 0, 0]),
    'inf position': lambda: _joint_state(FakeArm.JOINTS, [0.0, 0, float('inf'), 0, 0, 0, 0]),
    'fewer positions than names': lambda: _joint_state(FakeArm.JOINTS, [0.0] * 6),
    'out-of-order stamp': lambda: _joint_state(FakeArm.JOINTS, [0.0] * 7, stamp_ns=1_000_000_000),
}


@pytest.mark.parametrize('kind', list(BAD_JOINT_STATES))
def test_malformed_joint_states_are_rejected(graph, kind):
    probe, arm, nodes = graph
    since = time.monotonic()
    for _ in range(3):
        probe.publish(JointState, '/lbr/joint_states', qos.STATE, BAD_JOINT_STATES[kind]())
        probe.spin(0.05)
    assert probe.wait_for(lambda: _rejected(probe, 'real2sim', '/lbr/joint_states')
                          and _rejected(probe, 'sim2real', '/lbr/joint_states'), 5.0)
    probe.spin(0.5)
    assert all(p.poll() is None for p in nodes.values())
    assert_within_limits(arm.commands_since(since, with_times=True))
    assert len(arm.commands_since(time.monotonic() - 0.3)) > 0  # still commanding


@pytest.mark.parametrize(('topic', 'message', 'node'), [
    ('/legion/action', array_message([0.1, 0.2, 0.3], 'action'), 'sim2real'),
    ('/legion/action', array_message([np.nan, 0, 0, 0], 'action'), 'sim2real'),
    ('/legion/action', array_message([0, np.inf, 0, 0], 'action'), 'sim2real'),
    ('/legion/observation_full', array_message(np.zeros(12), 'observation'), 'policy'),
    ('/legion/observation_full', array_message(np.full(39, np.nan), 'observation'), 'policy'),
    ('/legion/observation', array_message(np.zeros(5000), 'observation'), 'policy'),
])
def test_malformed_arrays_are_rejected(graph, topic, message, node):
    probe, arm, nodes = graph
    since = time.monotonic()
    msg_qos = qos.COMMAND if topic == '/legion/action' else qos.STATE
    for _ in range(3):
        probe.publish(Float32MultiArray, topic, msg_qos, message)
        probe.spin(0.05)
    assert probe.wait_for(lambda: _rejected(probe, node, topic), 5.0)
    assert all(p.poll() is None for p in nodes.values())
    assert_within_limits(arm.commands_since(since, with_times=True))


def test_huge_valid_actions_are_clipped_not_obeyed(graph):
    probe, arm, _ = graph
    since = time.monotonic()
    for _ in range(20):
        probe.publish(Float32MultiArray, '/legion/action', qos.COMMAND,
                      array_message([1e9, -1e9, 1e9, 1e9], 'action'))
        probe.spin(0.02)
    probe.spin(0.3)
    assert_within_limits(arm.commands_since(since, with_times=True))


@pytest.mark.parametrize(('topic', 'payload', 'nodes_expected'), [
    ('/legion/active_step', 'not json', ('policy', 'real2sim', 'sim2real')),
    ('/legion/active_step', 'x' * 1_000_000, ('policy', 'real2sim', 'sim2real')),
    ('/legion/active_step', '', ('policy', 'real2sim', 'sim2real')),
    ('/legion/object_names', '{"a": 1}', ('real2sim',)),
    ('/legion/station', '{"frame": 3}', ('real2sim', 'sim2real')),
    # A workcell station whose transit request is poisoned: sim2real refuses to move anywhere.
    ('/legion/station', json.dumps({'task': 'reach-v3', 'frame': {'position': [0.5, 0, 0],
                                                                  'quaternion_wxyz': [1, 0, 0, 0]},
                                    'start_posture': [float('nan')] * 7, 'workspace_low': [0, 0, 0],
                                    'workspace_high': [1, 1, 1], 'lift_to_m': 0.4}), ('sim2real',)),
])
def test_malformed_strings_are_rejected(graph, topic, payload, nodes_expected):
    probe, arm, nodes = graph
    since = time.monotonic()
    probe.publish(String, topic, qos.LATCHED, String(data=payload))
    assert probe.wait_for(lambda: all(_rejected(probe, n, topic) for n in nodes_expected), 5.0)
    # Restore the good state the malformed message replaced (latched topics keep only the last).
    if topic == '/legion/active_step':
        probe.publish(String, topic, qos.LATCHED, String(data=json.dumps(STEP)))
    if topic == '/legion/object_names':
        probe.publish(String, topic, qos.LATCHED, String(data=json.dumps(['object_1', 'goal'])))
    probe.spin(1.0)
    assert all(p.poll() is None for p in nodes.values())
    assert_within_limits(arm.commands_since(since, with_times=True))
    assert probe.wait_for(lambda: len(arm.commands_since(time.monotonic() - 0.3)) > 0, 5.0)


def test_malformed_poses_and_gripper_opening_are_rejected(graph):
    probe, arm, nodes = graph
    since = time.monotonic()
    bad = PoseArray()
    bad.poses = [Pose(), Pose()]
    bad.poses[0].position.x = float('nan')
    short = PoseArray()
    short.poses = [Pose()]
    poses = probe.publisher(PoseArray, '/legion/object_poses', qos.STATE)
    opening = probe.publisher(Float64, '/legion/gripper_opening', qos.STATE)
    rejected = lambda: (_rejected(probe, 'real2sim', '/legion/object_poses')  # noqa: E731
                        and _rejected(probe, 'real2sim', '/legion/gripper_opening'))
    deadline = time.monotonic() + 10.0
    while not rejected() and time.monotonic() < deadline:  # new publishers: repeat until matched
        for message in (bad, short):
            poses.publish(message)
        for value in (float('nan'), 7.0):
            opening.publish(Float64(data=value))
        probe.spin(0.1)
    assert rejected()
    probe.spin(0.5)
    assert all(p.poll() is None for p in nodes.values())
    assert_within_limits(arm.commands_since(since, with_times=True))


def test_one_joint_state_stamped_an_hour_ahead_does_not_blind_the_command_path(graph):
    """Issue #15 (2): the future stamp used to become the reference, and every real sample after it was
    'older than the previous' until the clock caught up: no observation, no command."""
    probe, arm, nodes = graph
    ahead = _joint_state(FakeArm.JOINTS, list(arm.q), stamp_ns=time.time_ns() + 3600 * 10**9)
    probe.publish(JointState, '/lbr/joint_states', qos.STATE, ahead)
    ahead_rejected = lambda node: any('ahead' in (s.get('reason') or '')  # noqa: E731
                                      for s in _statuses(probe, node))
    assert probe.wait_for(lambda: ahead_rejected('real2sim') and ahead_rejected('sim2real'), 5.0)
    since = time.monotonic()
    probe.spin(1.0)
    assert len(arm.commands_since(since)) > 30  # ~100 Hz: the driver's own samples still count
    assert all(p.poll() is None for p in nodes.values())
    assert_within_limits(arm.commands_since(since, with_times=True))


def test_an_action_labelled_far_ahead_does_not_stop_the_command_stream(graph):
    """An action's source stamp names the cycle it was computed for; one an hour ahead used to mark
    every later cycle as already commanded."""
    probe, arm, nodes = graph
    probe.publish(Float32MultiArray, '/legion/action', qos.COMMAND,
                  array_message([0.0, 0.0, 0.0, 0.0], 'action', time.time_ns() + 3600 * 10**9))
    probe.spin(0.3)
    since = time.monotonic()
    probe.spin(1.0)
    assert len(arm.commands_since(since)) > 30
    assert all(p.poll() is None for p in nodes.values())
    assert_within_limits(arm.commands_since(since, with_times=True))


def test_dead_policy_makes_sim2real_hold_and_a_restart_resumes(graph):
    probe, arm, nodes = graph
    nodes['policy'].kill()  # SIGKILL: no goodbye, like a crash
    nodes['policy'].wait(10)
    probe.spin(0.6)  # action_timeout_s 0.3 s, plus margin
    quiet_from = time.monotonic()
    probe.spin(1.0)
    assert arm.commands_since(quiet_from) == []  # the watchdog stopped streaming: the arm holds
    assert any(s['state'] == 'holding' for s in _statuses(probe, 'sim2real'))
    nodes['policy'] = start_node('policy', POLICY)
    restarted = time.monotonic()
    assert probe.wait_for(lambda: len(arm.commands_since(restarted)) > 20, 60.0), output_of(nodes['policy'])
    assert_within_limits(arm.commands_since(restarted, with_times=True))


def test_estop_stops_commands_until_released_and_reset(graph):
    probe, arm, _ = graph
    probe.publish(Bool, '/legion/estop', qos.LATCHED, Bool(data=True))
    probe.spin(0.5)
    stopped = time.monotonic()
    probe.spin(1.0)
    assert arm.commands_since(stopped) == []
    assert any(s['state'] == 'estop' for s in _statuses(probe, 'sim2real'))
    response = probe.trigger('/legion/sim2real/reset_estop')
    assert not response.success and 'publish false' in response.message
    probe.spin(0.5)
    assert arm.commands_since(stopped) == []
    probe.publish(Bool, '/legion/estop', qos.LATCHED, Bool(data=False))
    probe.spin(0.3)
    assert probe.trigger('/legion/sim2real/reset_estop').success
    resumed = time.monotonic()
    assert probe.wait_for(lambda: len(arm.commands_since(resumed)) > 20, 10.0)
    assert_within_limits(arm.commands_since(resumed, with_times=True))


# -- task_inference: its own small graph with a real (barely trained) LEGION artefact ----------------

def _tiny_run(tmp_path_factory, layout: str) -> str:
    """A LEGION run of the real trainer stopped after its first env steps (preset tiny): a checkpoint."""
    from legion_core.config import compose_config, to_container
    from legion_core.trainer import Trainer

    run_dir = tmp_path_factory.mktemp(f'tiny_run_{layout}')
    cfg = to_container(compose_config(['preset=tiny', 'train.eval_every=0', f'env.layout={layout}']))
    Trainer(cfg, run_dir, progress=False).run(max_env_steps=4)
    return str(run_dir)


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    return _tiny_run(tmp_path_factory, 'legion12')


def test_task_inference_encodes_the_observation_layout_of_its_policy(graph, tmp_path_factory):
    probe, _, _ = graph
    node = start_node('task_inference', {'checkpoint': _tiny_run(tmp_path_factory, 'full39'),
                                         'max_rate_hz': 100.0, 'follow_trainer': False})
    try:
        probe.listen(Float32MultiArray, '/legion/latent', qos.STATE)
        embedding = np.zeros(384)
        embedding[0] = 1.0
        probe.publisher(Float32MultiArray, '/legion/active_embedding', qos.LATCHED).publish(
            array_message(embedding, 'embedding'))
        short = probe.publisher(Float32MultiArray, '/legion/observation', qos.STATE)
        full = probe.publisher(Float32MultiArray, '/legion/observation_full', qos.STATE)
        sources = lambda: {source_of(m) for m in probe.messages['/legion/latent']}  # noqa: E731
        deadline = time.monotonic() + 30.0
        while 39 not in sources() and time.monotonic() < deadline:
            short.publish(array_message(np.full(12, 0.1), 'observation', source_ns=12))
            full.publish(array_message(np.full(39, 0.1), 'observation', source_ns=39))
            probe.spin(0.05)
        # A full39 policy encodes Meta-World's 39 and ignores the 12-d topic (real2sim's own
        # observations, stamped with joint states, may be encoded too).
        assert 39 in sources() and 12 not in sources(), output_of(node)
    finally:
        assert stop_node(node) == 0, output_of(node)
        probe.messages['/legion/latent'].clear()  # the graph's probe is shared by the next tests


def test_task_inference_publishes_latents_and_rejects_malformed_input(graph, tiny_checkpoint):
    from std_msgs.msg import Int32

    probe, _, _ = graph
    node = start_node('task_inference', {'checkpoint': tiny_checkpoint, 'max_rate_hz': 100.0,
                                         'follow_trainer': True})
    try:
        probe.listen(Float32MultiArray, '/legion/latent', qos.STATE)
        probe.listen(Int32, '/legion/cluster', qos.STATE)
        probe.listen(String, '/legion/task_inference/status', qos.LATCHED)
        embedding = np.zeros(384)
        embedding[0] = 1.0
        emb_pub = probe.publisher(Float32MultiArray, '/legion/active_embedding', qos.LATCHED)
        obs_pub = probe.publisher(Float32MultiArray, '/legion/observation', qos.STATE)
        emb_pub.publish(array_message(embedding, 'embedding'))
        deadline = time.monotonic() + 60.0
        while not probe.messages['/legion/latent'] and time.monotonic() < deadline:
            obs_pub.publish(array_message(np.full(12, 0.1), 'observation', source_ns=42))
            probe.spin(0.05)
        assert probe.messages['/legion/latent'], output_of(node)
        latent = probe.messages['/legion/latent'][-1]
        assert len(latent.data) > 0 and np.all(np.isfinite(latent.data))
        # Every latent names the observation's source (ours: 42; real2sim's: a joint-state stamp).
        assert all(source_of(m) in (42,) or source_of(m) > 10**18 for m in probe.messages['/legion/latent'])
        assert probe.wait_for(lambda: probe.messages['/legion/cluster'], 5.0)

        for bad in (array_message(np.zeros(5), 'observation'), array_message(np.full(12, np.inf), 'o')):
            obs_pub.publish(bad)
        assert probe.wait_for(lambda: _rejected(probe, 'task_inference', '/legion/observation'), 5.0)
        emb_pub.publish(array_message(np.full(384, np.nan), 'embedding'))
        assert probe.wait_for(lambda: _rejected(probe, 'task_inference', '/legion/active_embedding'), 5.0)
        probe.spin(0.3)
        count = len(probe.messages['/legion/latent'])
        for _ in range(10):  # no embedding to infer with: no latents from here on
            obs_pub.publish(array_message(np.full(12, 0.1), 'observation'))
            probe.spin(0.05)
        assert len(probe.messages['/legion/latent']) == count
        probe.publish(String, '/legion/checkpoint', qos.LATCHED, String(data='/nonexistent/policy.pt'))
        faulted = lambda: any(s['state'] == 'fault' for s in _statuses(probe, 'task_inference'))  # noqa: E731
        assert probe.wait_for(faulted, 10.0)
        assert node.poll() is None
    finally:
        assert stop_node(node) == 0, output_of(node)
