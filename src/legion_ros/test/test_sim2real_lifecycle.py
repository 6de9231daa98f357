"""sim2real is a managed (lifecycle) node: no command reaches the driver unless it is active (issue #13).

Real rclpy over loopback (the legion_ros pytest plugin leases the domain): a probe plays the driver (joint
states that follow the commands, as a position controller does) and the policy (actions), and takes the
node through its states with the standard lifecycle services, as `ros2 lifecycle set` does.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from decision_graph import call_service, output_of, start_node, stop_node

from legion_ros.interfaces import SIM2REAL_STATUS

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('legion_kuka.commander')

COMMANDS, GRIPPER = '/lbr/forward_position_controller/commands', '/lbr/gripper/command'


class Driver:
    """The probe: the driver's joint states (following each command), the policy's actions, the node's
    status, and clients of its lifecycle and e-stop services."""

    def __init__(self, namespace: str = '') -> None:
        from lifecycle_msgs.srv import ChangeState, GetState
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float32MultiArray, Float64, Float64MultiArray, String
        from std_srvs.srv import Trigger

        from legion_kuka.description import HOME, joint_names
        from legion_ros import qos

        self.node = rclpy.create_node('driver_probe')
        self.executor = rclpy.executors.SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.q, self.names = np.array(HOME, dtype=float), joint_names('lbr')
        self.commands: list[np.ndarray] = []
        self.gripper: list[float] = []
        self.status: list[dict] = []
        every = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)  # every command
        self.node.create_subscription(Float64MultiArray, COMMANDS, self._on_command, every)
        self.node.create_subscription(Float64, GRIPPER, lambda m: self.gripper.append(m.data), every)
        self.node.create_subscription(String, f'{namespace}/sim2real/status',
                                      # checked as the instruction node reads it (its lifecycle)
                                      lambda m: self.status.append(SIM2REAL_STATUS.decode(m.data)),
                                      qos.LATCHED)
        self.joints = self.node.create_publisher(JointState, '/lbr/joint_states', qos.SENSOR)
        self.actions = self.node.create_publisher(Float32MultiArray, '/legion/action', qos.COMMAND)
        self.change = self.node.create_client(ChangeState, f'{namespace}/sim2real/change_state')
        self.get = self.node.create_client(GetState, f'{namespace}/sim2real/get_state')
        self.reset = self.node.create_client(Trigger, f'{namespace}/sim2real/reset_estop')
        self.JointState, self.Float32MultiArray = JointState, Float32MultiArray

    def _on_command(self, message) -> None:
        self.q = np.array(message.data, dtype=float)  # a position controller: there by the next cycle
        self.commands.append(self.q)

    def spin_until(self, predicate, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not predicate():
            self.executor.spin_once(timeout_sec=0.02)
        return bool(predicate())

    def call(self, client, request):
        return call_service(self.node, client, request, self.spin_until)

    def transition(self, label: str) -> bool:
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition.label = label
        return self.call(self.change, request).success

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(self.get, GetState.Request()).current_state.label

    def drive(self, seconds: float, act: bool = True) -> tuple[int, int]:
        """Joint states at 100 Hz and (``act``) an action every 10th cycle for ``seconds``; returns the
        arm and gripper commands that came meanwhile."""
        from legion_ros.provenance import array_message

        arm, fingers = len(self.commands), len(self.gripper)
        for cycle in range(int(seconds * 100)):
            state = self.JointState(name=self.names, position=[float(v) for v in self.q])
            state.header.stamp = self.node.get_clock().now().to_msg()
            self.joints.publish(state)
            if act and cycle % 10 == 0:
                self.actions.publish(array_message(np.array([0.3, 0.0, 0.0, 0.5]), 'action'))
            end = time.monotonic() + 0.01
            while time.monotonic() < end:
                self.executor.spin_once(timeout_sec=max(0.0, end - time.monotonic()))
        self.spin_until(lambda: False, 0.2)  # the last ones in flight
        return len(self.commands) - arm, len(self.gripper) - fingers

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def context():
    rclpy.init(args=['--ros-args', '-p', 'autostart:=false'])  # the test takes it through its states
    yield
    rclpy.try_shutdown()


def test_commands_reach_the_driver_only_while_the_node_is_active(context):
    from std_srvs.srv import Trigger

    from legion_ros.nodes.sim2real import Sim2RealNode

    node = Sim2RealNode()
    driver = Driver()
    driver.executor.add_node(node)
    try:
        assert driver.state() == 'unconfigured'
        assert driver.spin_until(lambda: driver.status and driver.status[-1]['state'] == 'unconfigured', 5)
        assert driver.drive(1.0) == (0, 0)  # no publisher, no subscription: nothing can leave
        answer = driver.call(driver.reset, Trigger.Request())
        assert not answer.success and 'unconfigured' in answer.message

        assert driver.transition('configure') and driver.state() == 'inactive'
        # The driver's side sees the node's publishers (else "nothing came" would prove nothing).
        assert driver.spin_until(lambda: driver.node.count_publishers(COMMANDS) == 1, 10)
        assert driver.drive(1.5) == (0, 0)  # configured, joint states followed, but not active
        assert driver.status[-1]['lifecycle'] == 'inactive' and driver.status[-1]['joint_state'] is True

        assert driver.transition('activate') and driver.state() == 'active'
        arm, fingers = driver.drive(1.0)
        assert arm > 50 and fingers >= 5  # one command per control cycle while actions come
        # Active, its state is the arm's: holding once the actions stop (the watchdog, action_timeout_s).
        assert driver.spin_until(lambda: driver.status[-1]['state'] == 'holding', 3), driver.status[-1]
        assert driver.status[-1]['lifecycle'] == 'active' and driver.status[-1]['commands_sent'] >= arm

        assert driver.transition('deactivate') and driver.state() == 'inactive'
        assert driver.drive(1.5) == (0, 0)  # the policy goes on; nothing reaches the driver
        assert driver.status[-1]['state'] == 'inactive'

        assert driver.transition('activate')
        assert driver.drive(0.5)[0] > 20  # resumes at the next action, from the measured hand
        assert driver.transition('deactivate') and driver.transition('cleanup')
        assert driver.state() == 'unconfigured' and driver.drive(0.5) == (0, 0)
        assert driver.spin_until(lambda: driver.node.count_publishers(COMMANDS) == 0, 10)  # released
        assert driver.transition('configure') and driver.transition('activate')  # configured again
        assert driver.drive(0.5)[0] > 20
    finally:
        driver.close()
        node.destroy_node()


def test_a_bad_configuration_at_start_ends_the_process_with_its_reason():
    # As the graphs start it (autostart): a launch with a wrong argument stops, saying why.
    process = start_node('sim2real', {'hand_response': 'instant'})
    try:
        code = process.wait(timeout=60)
    finally:
        stop_node(process)
    output = output_of(process)
    assert code == 2, output  # EXIT_CONFIG: the runners stop the graph and report it
    assert 'cannot configure' in output and 'hand_response' in output and 'instant' in output


def test_a_bad_configuration_fails_configure_with_its_reason_and_the_process_stays_up():
    # Brought up by an operator (autostart off): configuring fails, the node stays unconfigured, says why.
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    process = start_node('sim2real', {'hand_response': 'instant', 'autostart': False})
    rclpy.init()
    driver = Driver(namespace='/legion')
    try:
        assert driver.spin_until(lambda: driver.change.service_is_ready(), 60), output_of(process)
        assert not driver.transition('configure')
        assert driver.spin_until(lambda: any(s.get('reason') for s in driver.status), 60), output_of(process)
        status = driver.status[-1]
        assert status['state'] == 'unconfigured' and status['lifecycle'] == 'unconfigured'
        assert 'hand_response' in status['reason'] and 'instant' in status['reason']
        assert driver.state() == 'unconfigured' and process.poll() is None
        assert driver.node.count_publishers(COMMANDS) == 0  # nothing created: nothing can command
        # An operator sets it right and configures again, without a restart.
        set_parameters = driver.node.create_client(SetParameters, '/legion/sim2real/set_parameters')
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value='direct')
        request = SetParameters.Request(parameters=[Parameter(name='hand_response', value=value)])
        assert driver.call(set_parameters, request).results[0].successful
        assert driver.transition('configure') and driver.transition('activate')
        assert driver.drive(0.5)[0] > 20
        assert driver.spin_until(lambda: 'reason' not in driver.status[-1], 2)
    finally:
        driver.close()
        rclpy.try_shutdown()
        code = stop_node(process)
    assert code == 0, output_of(process)  # the shutdown transition, then a clean exit


def test_an_unknown_hand_response_fails_configure():
    rclpy.init(args=['--ros-args', '-p', 'hand_response:=instant', '-p', 'autostart:=false'])
    try:
        from rclpy.lifecycle import TransitionCallbackReturn

        from legion_ros.nodes.sim2real import Sim2RealNode

        node = Sim2RealNode()
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.lifecycle == 'unconfigured' and node.commander is None
        assert 'hand_response' in node.config_error
        assert node.status.last['state'] == 'unconfigured' and 'instant' in node.status.last['reason']
        node.destroy_node()
    finally:
        rclpy.try_shutdown()


def test_a_crash_while_configuring_leaves_nothing_behind_and_the_node_can_be_configured_again(context):
    from rclpy.lifecycle import TransitionCallbackReturn
    from std_msgs.msg import Float64

    from legion_ros.node_base import ManagedNode

    class Flaky(ManagedNode):
        crash = True

        def configure(self) -> None:
            self.create_lifecycle_publisher(Float64, '/flaky/command', 1)
            if self.crash:
                raise RuntimeError('the hardware answered nonsense')

    node = Flaky('flaky')
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.ERROR  # logged, then on_error
        assert node.lifecycle == 'unconfigured'
        assert not [p for p in node.publishers if p.topic_name == '/flaky/command']  # destroyed
        node.crash = False
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS and node.lifecycle == 'inactive'
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS and node.lifecycle == 'active'
        node.close()  # as run_node does at process stop: the shutdown transition
        assert node.lifecycle == 'finalized' and not [p for p in node.publishers
                                                      if p.topic_name == '/flaky/command']
    finally:
        node.destroy_node()
