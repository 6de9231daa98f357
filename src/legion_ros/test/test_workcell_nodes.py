"""A workcell through the nodes: sim_bridge holds two stations, a new active station makes sim2real
carry the arm there (lift, swing about A1, down) through its safety filter, in separate processes."""
from __future__ import annotations

import json
import math
import subprocess
import time

import numpy as np
import pytest
from decision_graph import Probe

from legion_ros.graph import graph
from legion_ros.runner import node_command

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('legion_kuka.workcell')

STATIONS = ['reach-v3', 'push-v3']  # ahead, left (+90 deg about A1)
PERIOD_S = 0.01
COMMANDS = '/lbr/forward_position_controller/commands'


@pytest.fixture(scope='module')
def cell(tmp_path_factory):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray, String

    from legion_ros import qos

    params = tmp_path_factory.mktemp('params')
    resolved = graph('sim').resolve({'composition': 'false', 'use_sim_time': 'false', 'record': 'false',
                                     'workcell': ','.join(STATIONS), 'task': STATIONS[0]})
    nodes = {n.name: n for n in resolved.nodes}
    processes = [subprocess.Popen(node_command(nodes[name], params), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for name in ('sim_bridge', 'sim2real')]
    rclpy.init()
    probe = Probe('workcell_probe')
    probe.listen(JointState, '/lbr/joint_states', qos.SENSOR)
    # Every command, not only the newest (the graph's COMMAND profile keeps one): a deep reliable reader.
    probe.listen(Float64MultiArray, COMMANDS, QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    for topic in ('/legion/station', '/legion/sim2real/status'):
        probe.listen(String, topic, qos.LATCHED)
    try:
        if not probe.wait_for(lambda: all(probe.messages[t] for t in (
                '/lbr/joint_states', '/legion/station', '/legion/sim2real/status')), 120):
            for process in processes:
                process.kill()
            pytest.fail('the workcell did not come up:\n' + '\n'.join(p.communicate()[0][-3000:]
                                                                       for p in processes))
        yield probe
    finally:
        probe.close()
        rclpy.try_shutdown()
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _last(probe, topic: str) -> dict:
    return json.loads(probe.messages[topic][-1].data)


def test_a_new_station_moves_the_arm_there_within_the_limits(cell):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    from legion_kuka.safety import SafetyLimits

    probe = cell
    station = '/legion/station'

    def state() -> str:
        return _last(probe, '/legion/sim2real/status')['state']

    def position() -> np.ndarray:
        return np.array(probe.messages['/lbr/joint_states'][-1].position)

    assert _last(probe, station)['task'] == STATIONS[0] and _last(probe, station)['stations'] == STATIONS
    start = position()
    parameters = AsyncParameterClient(probe.node, '/legion/sim_bridge')
    assert parameters.wait_for_services(timeout_sec=10)
    future = parameters.set_parameters([Parameter('task', value=STATIONS[1])])
    assert probe.wait_for(future.done, 30) and future.result().results[0].successful
    since = time.monotonic()
    assert probe.wait_for(lambda: _last(probe, station)['task'] == STATIONS[1], 10)
    goal = np.array(_last(probe, station)['start_posture'])
    assert probe.wait_for(lambda: state() == 'transit', 10), state()
    assert probe.wait_for(lambda: state() == 'holding', 120), state()
    probe.spin(0.5)

    # There: the station's start posture, A1 a quarter turn from where it was.
    arrived = position()
    assert np.abs(arrived - goal).max() < math.radians(1.0), np.degrees(arrived - goal).round(2)
    assert abs((arrived[0] - start[0]) - math.pi / 2) < math.radians(30)
    # Every command of the way inside the filter's position and velocity limits (config/sim2real.yaml).
    limits = SafetyLimits.from_description(position_margin=math.radians(5.0), velocity_scale=0.1,
                                           workspace=None)
    sent = [np.array(m.data) for m, t in zip(probe.messages[COMMANDS], probe.times[COMMANDS], strict=True)
            if t >= since]
    assert len(sent) > 100
    for q in sent:
        assert limits.within_positions(q, tol=1e-9)
    steps = np.abs(np.diff(np.array(sent), axis=0))
    assert np.all(steps <= limits.velocity * PERIOD_S + 1e-9)
    # From now on the filter guards the new station's own box.
    box = _last(probe, '/legion/sim2real/status')['workspace']
    assert box is not None and box[0][1] > 0.2, box  # push's table lies to the left (base +y)
