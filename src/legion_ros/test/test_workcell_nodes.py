"""A workcell through the nodes: sim_bridge holds two stations, a new active station makes sim2real
carry the arm there (lift, swing about A1, down) through its safety filter, in separate processes."""
from __future__ import annotations

import json
import math
import subprocess
import time

import numpy as np
import pytest

from legion_bringup.graph import graph
from legion_ros.runner import node_command

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('legion_kuka.workcell')

STATIONS = ['reach-v3', 'push-v3']  # ahead, left (+90 deg about A1)
PERIOD_S = 0.01


@pytest.fixture(scope='module')
def cell(tmp_path_factory):
    params = tmp_path_factory.mktemp('params')
    resolved = graph('sim').resolve({'composition': 'false', 'use_sim_time': 'false', 'record': 'false'})
    extra = {'sim_bridge': {'workcell': STATIONS, 'task': STATIONS[0]}}
    nodes = {n.name: n.with_parameters(extra, params) for n in resolved.nodes}
    processes = [subprocess.Popen(node_command(nodes[name], params), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for name in ('sim_bridge', 'sim2real')]
    probe = Probe()
    try:
        if not probe.spin_until(lambda: probe.joint_states and probe.stations and probe.sim2real, 120):
            for process in processes:
                process.kill()
            pytest.fail('the workcell did not come up:\n' + '\n'.join(p.communicate()[0][-3000:]
                                                                       for p in processes))
        yield probe
    finally:
        probe.close()
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


class Probe:
    def __init__(self) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, String

        from legion_ros import qos

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('workcell_probe', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.joint_states, self.commands, self.stations, self.sim2real = [], [], [], []
        n = self.node
        n.create_subscription(JointState, '/lbr/joint_states', self.joint_states.append, qos.SENSOR)
        n.create_subscription(Float64MultiArray, '/lbr/forward_position_controller/commands',
                              lambda m: self.commands.append((time.monotonic(), np.array(m.data))),
                              qos.COMMAND)
        n.create_subscription(String, '/legion/station', lambda m: self.stations.append(json.loads(m.data)),
                              qos.LATCHED)
        n.create_subscription(String, '/legion/sim2real/status',
                              lambda m: self.sim2real.append(json.loads(m.data)), qos.LATCHED)

    def spin_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return True
        return False

    def position(self) -> np.ndarray:
        return np.array(self.joint_states[-1].position)

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def test_a_new_station_moves_the_arm_there_within_the_limits(cell):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    from legion_kuka.safety import SafetyLimits

    probe = cell
    assert probe.stations[-1]['task'] == STATIONS[0] and probe.stations[-1]['stations'] == STATIONS
    start = probe.position()
    parameters = AsyncParameterClient(probe.node, '/legion/sim_bridge')
    assert parameters.wait_for_services(timeout_sec=10)
    future = parameters.set_parameters([Parameter('task', value=STATIONS[1])])
    assert probe.spin_until(future.done, 30) and future.result().results[0].successful
    since = time.monotonic()
    assert probe.spin_until(lambda: probe.stations[-1]['task'] == STATIONS[1], 10)
    goal = np.array(probe.stations[-1]['start_posture'])
    assert probe.spin_until(lambda: probe.sim2real[-1]['state'] == 'transit', 10), probe.sim2real[-1]
    assert probe.spin_until(lambda: probe.sim2real[-1]['state'] == 'holding', 120), probe.sim2real[-1]
    probe.spin_until(lambda: False, 0.5)

    # There: the station's start posture, A1 a quarter turn from where it was.
    arrived = probe.position()
    assert np.abs(arrived - goal).max() < math.radians(1.0), np.degrees(arrived - goal).round(2)
    assert abs((arrived[0] - start[0]) - math.pi / 2) < math.radians(30)
    # Every command of the way inside the filter's position and velocity limits (config/sim2real.yaml).
    limits = SafetyLimits.from_description(position_margin=math.radians(5.0), velocity_scale=0.1,
                                           workspace=None)
    sent = [q for t, q in probe.commands if t >= since]
    assert len(sent) > 100
    for q in sent:
        assert limits.within_positions(q, tol=1e-9)
    steps = np.abs(np.diff(np.array(sent), axis=0))
    assert np.all(steps <= limits.velocity * PERIOD_S + 1e-9)
    # From now on the filter guards the new station's own box.
    box = probe.sim2real[-1]['workspace']
    assert box is not None and box[0][1] > 0.2, box  # push's table lies to the left (base +y)
