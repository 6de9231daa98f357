"""sim_bridge with ``state_log``: its process records the scene and its joint positions at 25 Hz of
simulated time, a segment per scene, with the instruction's steps as notes, and writes the log when it
stops; the log holds exactly one state per 4 control cycles of the simulated time that passed."""
from __future__ import annotations

import json

import numpy as np
import pytest
from decision_graph import Probe, call_service, output_of, start_node, stop_node

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('legion_kuka.state_log')

PERIOD_S = 0.01
EVERY = 4  # 100 Hz / 25 Hz


def sim_time_s(message) -> float:
    return message.clock.sec + message.clock.nanosec * 1e-9


def test_the_state_log_covers_the_simulated_time_scene_by_scene(tmp_path):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import String
    from std_srvs.srv import SetBool

    from legion_kuka.state_log import load_state_log
    from legion_ros import qos

    path = tmp_path / 'states' / 'twin.npz'
    rclpy.init()
    node = start_node('sim_bridge', {'state_log': str(path), 'task': 'reach-v3', 'seed': 1})
    probe = Probe('state_log_probe')
    try:
        probe.listen(Clock, '/clock', qos.STATE)
        assert probe.wait_for(lambda: len(probe.messages['/clock']) > 50, 120), output_of(node)
        step = {'sequence_id': 3, 'index': 0, 'task': 'reach-v3', 'instruction': 'reach the goal'}
        probe.publish(String, '/legion/active_step', qos.LATCHED, String(data=json.dumps(step)))
        probe.spin(1.0)
        probe.publish(String, '/legion/step_success', qos.STATE,
                      String(data=json.dumps({**step, 'success': True})))
        # Another scene: a segment of its own, on the same simulated time.
        client = probe.node.create_client(SetParameters, '/legion/sim_bridge/set_parameters')
        answer = call_service(probe.node, client, SetParameters.Request(
            parameters=[Parameter('task', value='push-v3').to_parameter_msg()]), probe.wait_for, answer_s=60)
        assert answer.results[0].successful
        probe.spin(1.0)
        pause = probe.node.create_client(SetBool, '/legion/sim_bridge/set_pause')
        assert call_service(probe.node, pause, SetBool.Request(data=True), probe.wait_for).success
        # The paused twin's time: once the clock read stops advancing for a second (a loaded probe lags
        # behind the twin by more than a short spin).
        end_s = None
        for _ in range(30):
            probe.spin(1.0)
            latest = sim_time_s(probe.messages['/clock'][-1])
            if latest == end_s:
                break
            end_s = latest
    finally:
        probe.close()
        code = stop_node(node, timeout_s=30)
        rclpy.try_shutdown()
    assert code == 0, output_of(node)

    log = load_state_log(path)
    assert [s.scene.task for s in log.segments] == ['reach-v3', 'push-v3']
    assert all(s.scene.seed == 1 and not s.scene.workcell for s in log.segments)
    times = np.concatenate([s.times for s in log.segments])
    cycles = round(end_s / PERIOD_S)
    assert log.rows == cycles // EVERY + 1, (log.rows, end_s)
    np.testing.assert_allclose(times, np.arange(log.rows) * EVERY * PERIOD_S, atol=1e-9)
    noted = {n['topic']: n for n in log.notes}
    assert noted['active_step']['data'] == step
    assert noted['step_success']['data']['success'] is True
    assert 0 <= noted['active_step']['t'] <= noted['step_success']['t'] <= end_s
