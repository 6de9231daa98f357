"""``sim2real`` node: policy actions -> safe joint position commands at the controller rate.

A thin adapter: parameters, subscriptions, message decoding, publishing and status over
:class:`legion_kuka.commander.ArmCommander`, which decides every command (pure, tested without ROS).

A managed (lifecycle) node, the only one that commands the driver: no command leaves it unless it is
``active``. ``on_configure`` reads the parameters, builds the commander and creates the driver publishers
(lifecycle publishers) and the subscriptions; a bad parameter fails it with the reason in the log and on the
status, and the node stays unconfigured (at an ``autostart``, the process then ends with exit code 2 as for
any node's bad parameter; otherwise it stays up for another ``configure``). ``inactive``: the arm holds (the
controller keeps the last command), actions are dropped, joint states, e-stop, scenes and stations are still
followed; a transit cut short goes on from where the arm is once active. ``on_activate``: holding until the
next action, which anchors at the measured hand. ``on_cleanup`` / ``on_shutdown`` release the commander and
what ``on_configure`` created. With ``autostart`` (the default) the node configures and activates itself at
start, as a lifecycle manager would, under both runners; the standard services (``~/change_state``,
``~/get_state``: ``ros2 lifecycle set /legion/sim2real deactivate``) take it back. Stopping the process runs
the shutdown transition. ``~/status`` and ``~/reset_estop`` work in every state
(:mod:`legion_ros.sim2real_status`; unconfigured, a reset is refused: there is nothing to reset).

Chain per policy action: :class:`legion_kuka.sim2real.Sim2Real` (task-frame hand target, IK, time
scaling, interpolation over the control cycles of one policy step) -> :class:`legion_kuka.safety.
SafetyFilter` (joint limits with margin, velocity/acceleration limits, workspace, fresh joint state,
e-stop) -> ``driver.command_topic`` (std_msgs/Float64MultiArray, 7 positions, like a
``forward_position_controller``). Nothing reaches the driver without passing the safety filter.

Timing: commands are clocked by the driver, like a ros2_control update loop: every joint state is one
control cycle and gets at most one command (the safety filter's velocity and acceleration bounds
hold per call), the next target of the current policy step's interpolation. A new action sends its
first target at once if its cycle has no command yet (``send_on_action``), so the latency from a
joint-state sample to its command is not a timer phase; every command carries the source stamp of the
joint state it was computed from (see :mod:`legion_ros.provenance`). No joint state, no command.

Watchdog: when no action came for ``action_timeout_s`` (policy dead, step ended, observation stale),
streaming stops and the position controller holds the last commanded target; the next action
re-anchors the hand target at the measured hand, so resuming never jumps. E-stop: ``/legion/estop``
(std_msgs/Bool, latched) true stops all commands at once; ``~/reset_estop`` (std_srvs/Trigger)
re-enables them once the e-stop topic is false (and re-synchronises the filter with the arm).
Workcell: a ``/legion/station`` message with a ``start_posture`` (from sim_bridge's workcell) moves the
arm to that station first: a :class:`legion_kuka.workcell.Transit` (lift, swing about A1, down) streamed
one target per cycle through a filter with the workcell's box; actions are ignored until it is there
(status ``transit``), then the filter takes the station's own box.
Scenes (``accept_scenes``, set by the sim graph only): a ``/legion/scene`` message (sim_bridge, at each
scene (re)load) announces the posture the twin puts the arm at; the joint state there re-anchors the
filter (holding until the next action) instead of latching the e-stop on the jump. On the real arm
nothing may move it but the arm itself, so there sim2real does not listen to that topic. Only an
operator resets the e-stop: no LEGION program calls ``~/reset_estop`` (the status counts the requests,
``estop_resets``).
Gripper: where Meta-World's finger would be after one env step of the action's 4th value (metres of
closing, :class:`legion_kuka.gripper.MetaworldFinger`: the same finger travel per policy step as in
training, however long the step), goes out on ``driver.gripper_topic`` (std_msgs/Float64, [-1, 1]).
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64, Float64MultiArray, String
from std_srvs.srv import Trigger

from legion_kuka.commander import ArmCommander, CommanderConfig, Station
from legion_kuka.sim2real import HAND_RESPONSES
from legion_ros import qos
from legion_ros.interfaces import ACTION, ACTIVE_STEP, ESTOP, SCENE, STATION
from legion_ros.node_base import (
    UNCONFIGURED,
    ManagedNode,
    NodeConfigError,
    Param,
    StatusPublisher,
    clock_s,
    declare_parameters,
    run_node,
)
from legion_ros.provenance import (
    STAMP_WINDOW_PARAM,
    BadMessageError,
    StampWindow,
    array_message,
    read_array,
    read_joint_positions,
    source_of,
)
from legion_ros.sim2real_status import Sim2RealStatus

PARAMETERS = {
    'autostart': Param(True, 'configure and activate at start, as a lifecycle manager would; false: stay '
                       'unconfigured until `ros2 lifecycle set` (read once, at start)'),
    'driver.name': Param('lbr', 'driver profile', choices=('lbr', 'iiwa_ros2')),
    'driver.joint_names': Param([], 'the 7 arm joint names, A1 first; empty: the profile\'s names',
                                type='string[]'),
    'driver.joint_states_topic': Param('/lbr/joint_states', 'sensor_msgs/JointState topic of the driver'),
    'driver.command_topic': Param('/lbr/forward_position_controller/commands',
                                  'std_msgs/Float64MultiArray joint position command topic'),
    'driver.gripper_topic': Param('/lbr/gripper/command', 'std_msgs/Float64 gripper command topic'),
    'driver.controller_rate_hz': Param(100.0, 'rate of the joint position controller [Hz]',
                                       range=(1.0, 1000.0)),
    'policy_rate_hz': Param(10.0, 'policy steps per second; each action is spread over '
                            'controller_rate_hz / policy_rate_hz cycles (0.1 m/s per axis at 10 Hz)',
                            range=(0.5, 1000.0)),
    'action_timeout_s': Param(0.3, 'hold the arm when no action came for this long [s]', range=(0.005, 10.0)),
    'joint_state_timeout_s': Param(0.05, 'the safety filter refuses to command on an older joint state [s]',
                                   range=(0.005, 5.0)),
    'velocity_scale': Param(0.1, 'joint velocity limit as a fraction of the datasheet\'s (start low: 0.1)',
                            range=(0.01, 1.0)),
    'position_margin_deg': Param(5.0, 'joint position limits are this far inside the datasheet\'s [deg]',
                                 range=(0.0, 30.0)),
    'hand_box': Param('task', 'hand box the policy\'s hand target is clipped to: task (the active task\'s '
                      'Meta-World mocap box, as in training) or default (Meta-World\'s default box)',
                      choices=('task', 'default')),
    'hand_offset_m': Param(-1.0, 'flange -> the point the policy calls the hand, along the tool axis '
                           '[m]; negative: read from the KUKA Meta-World scene (the trained hand point)',
                           range=(-1.0, 0.5)),
    'workspace': Param('task', 'the safety filter\'s tcp box: task (the active task\'s hand box in the base '
                       'frame, lowered by the hand-to-tcp distance, 2 cm wider, floor 5 mm below: only '
                       'motions the task never asks for are held) or cell (legion_kuka\'s default cell box)',
                       choices=('task', 'cell')),
    'hand_response': Param('metaworld', 'how the hand follows the policy\'s hand target within a step: '
                           'metaworld (as the training scene\'s hand trails its mocap: what the policy '
                           'learnt) or direct (reached within the step)', choices=HAND_RESPONSES),
    'stamp_window_s': STAMP_WINDOW_PARAM,
    'send_on_action': Param(True, 'send a new action\'s first target at once instead of at the next cycle'),
    'accept_scenes': Param(False, f'follow a simulator\'s scene announcements ({SCENE.name}): re-anchor at '
                           'the announced start posture instead of latching on the jump; the sim graph sets '
                           'it, a real arm\'s graph never does'),
    'task_frame': Param([], 'pose of the task frame in the robot base frame: x y z qw qx qy qz; empty: '
                        f'the single-task placement (overridden by {STATION.name})', type='double[]'),
}


RESET_ANSWERS = {None: 'e-stop reset; holding until the next action',
                 UNCONFIGURED: 'unconfigured: nothing to reset (configure sim2real first)',
                 'estop_requested': f'the e-stop is still engaged on {ESTOP.name}: publish false first',
                 'no_fresh_joint_state': 'no fresh joint state: the e-stop stays latched until the arm '
                                         'reports again'}


def task_frame(p) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``task_frame`` parameter as (position, quaternion wxyz); None: the single-task placement."""
    if not p.task_frame:
        return None
    if len(p.task_frame) != 7:
        raise NodeConfigError(f'task_frame must be x y z qw qx qy qz, got {len(p.task_frame)} numbers')
    return np.asarray(p.task_frame[:3]), np.asarray(p.task_frame[3:])


def commander_config(p) -> CommanderConfig:
    from legion_kuka.observer import hand_offset

    return CommanderConfig(
        controller_rate_hz=p['driver.controller_rate_hz'], policy_rate_hz=p.policy_rate_hz,
        action_timeout_s=p.action_timeout_s, joint_state_timeout_s=p.joint_state_timeout_s,
        velocity_scale=p.velocity_scale, position_margin_rad=np.radians(p.position_margin_deg),
        hand_offset_m=hand_offset(p.hand_offset_m), hand_response=p.hand_response,
        task_workspace=p.workspace == 'task', task_hand_box=p.hand_box == 'task',
        send_on_action=p.send_on_action)


class Sim2RealNode(ManagedNode):
    """A managed node (see module): parameters, subscriptions, decoding and publishing over
    :class:`legion_kuka.commander.ArmCommander`, which decides every command."""

    def __init__(self) -> None:
        super().__init__('sim2real')
        self.commander: ArmCommander | None = None
        self.report = Sim2RealStatus()
        self.status = StatusPublisher(self)  # a plain publisher: the status goes out in every state
        self.create_service(Trigger, '~/reset_estop', self.on_reset_estop)
        self.create_timer(1.0, self.publish_status)
        self.start(declare_parameters(self, {'autostart': PARAMETERS['autostart']}).autostart)

    q = property(lambda self: self.commander.q, doc='the measured joints')
    translator = property(lambda self: self.commander.translator)

    # -- lifecycle (legion_ros.node_base.ManagedNode) -----------------------------------------------
    def configure(self) -> None:
        self.params = p = declare_parameters(self, PARAMETERS)
        from legion_kuka import description

        self.joint_names = description.driver_joint_names(p['driver.joint_names'], p['driver.name'])
        self.commander = ArmCommander(commander_config(p), task_frame=task_frame(p), active=False)
        self.stamps = StampWindow(p.stamp_window_s)
        self.source_ns: int | None = None  # source stamp of the current policy step (provenance)
        self.command_pub = self.create_lifecycle_publisher(Float64MultiArray, p['driver.command_topic'],
                                                           qos.COMMAND)
        self.gripper_pub = self.create_lifecycle_publisher(Float64, p['driver.gripper_topic'], qos.COMMAND)
        if p.accept_scenes:
            # Before the joint states: when both wait, the executor takes subscriptions in creation order,
            # and a scene's announcement must come before the joint state of its jump.
            self.create_subscription(String, SCENE.name, self.on_scene, qos.LATCHED)
        self.create_subscription(JointState, p['driver.joint_states_topic'], self.on_joint_state, qos.SENSOR)
        self.create_subscription(Float32MultiArray, ACTION.name, self.on_action, qos.COMMAND)
        self.create_subscription(Bool, ESTOP.name, self.on_estop, qos.LATCHED)
        self.create_subscription(String, ACTIVE_STEP.name, self.on_active_step, qos.LATCHED)
        self.create_subscription(String, STATION.name, self.on_station, qos.LATCHED)
        # Streaming already stops per cycle on stale actions; this timer only makes the hold visible (status),
        # so it need not wake the executor every control cycle.
        self.create_timer(min(p.action_timeout_s / 3.0, 0.1),
                          lambda: self.emit(self.commander.watchdog(clock_s(self))))

    def activate(self) -> None:
        self.emit(self.commander.activate(clock_s(self)))

    def deactivate(self) -> None:
        self.emit(self.commander.deactivate())

    def release(self) -> None:
        self.commander = None

    # -- output -----------------------------------------------------------------------------------
    def publish_status(self, **extra) -> None:
        fields = self.report.fields(self.lifecycle, self.commander, self.config_error)
        self.status.publish(fields.pop('state'), **fields, **extra)

    def reject(self, topic: str, reason: str) -> None:
        self.status.publish('input_rejected', topic=topic, reason=reason, rejected=self.report.reject(topic))
        self.get_logger().warning(f'rejected {topic}: {reason}', throttle_duration_sec=2.0)

    def emit(self, commands) -> None:
        """Send what the commander decided, in its order (the lifecycle publishers drop it unless active),
        then report."""
        for kind, value in commands.in_order():
            if kind == 'gripper':
                self.gripper_pub.publish(Float64(data=value))
            else:
                self.command_pub.publish(array_message(value, 'joint_positions', self.source_ns, double=True))
        log = self.get_logger()
        for event in commands.events:
            if event.kind == 'rejected':
                self.reject(ACTION.name, event.text)
            elif event.kind == 'fault':
                self.status.publish('fault', reason=event.text)
            else:  # a change of state (rclpy refuses two severities from one call site: a line each)
                if event.kind in ('estop', 'filter_estop'):
                    log.error(event.text)
                elif event.kind == 'holding':
                    log.warning(event.text)
                else:
                    log.info(event.text)
                self.publish_status(**({'reasons': list(event.reasons)} if event.reasons else {}))

    # -- inputs -----------------------------------------------------------------------------------
    def on_joint_state(self, message: JointState) -> None:
        try:
            q, stamp = read_joint_positions(message, self.joint_names)
            now_ns = self.get_clock().now().nanoseconds
            self.stamps.check(stamp, now_ns)
        except BadMessageError as error:
            self.reject(self.params['driver.joint_states_topic'], str(error))
            return
        # The stamp is the control cycle's id; the filter's freshness check runs on this node's clock.
        self.emit(self.commander.joint_state(q, stamp, now_ns * 1e-9))

    def on_action(self, message: Float32MultiArray) -> None:
        try:
            action = read_array(message, 4, 'action')
        except BadMessageError as error:
            self.reject(ACTION.name, str(error))
            return
        if not self.commander.takes_actions:  # (inactive, e-stop, transit) the streaming step's provenance
            return  # stays
        # The action's cycle is the joint state it was computed from (this node may not have seen it yet).
        previous, self.source_ns = self.source_ns, self.stamps.believe(source_of(message),
                                                                       self.commander.cycle)
        commands = self.commander.action(action, clock_s(self), cycle=self.source_ns)
        if any(event.kind == 'rejected' for event in commands.events):  # not translated: the streaming
            self.source_ns = previous  # step keeps its provenance
        self.emit(commands)

    def on_estop(self, message: Bool) -> None:
        self.emit(self.commander.estop(bool(message.data)))

    def on_reset_estop(self, _request, response):
        self.report.estop_resets += 1
        refused = UNCONFIGURED if self.commander is None else self.commander.reset_estop(clock_s(self))
        response.success, response.message = refused is None, RESET_ANSWERS[refused]
        if refused is None:
            self.stamps.reset()  # a reset also forgets the joint states' stamp order
            self.publish_status()
        return response

    def on_active_step(self, message: String) -> None:
        try:
            task = ACTIVE_STEP.decode(message.data)['task']
        except BadMessageError as error:
            self.emit(self.commander.new_step())
            self.reject(ACTIVE_STEP.name, str(error))
            return
        self.emit(self.commander.step(task))

    def on_scene(self, message: String) -> None:
        try:
            commands = self.commander.scene(SCENE.decode(message.data)['posture'])
        except ValueError as error:  # BadMessageError
            self.reject(SCENE.name, f'bad scene: {error}')
            return
        self.emit(commands)

    def on_station(self, message: String) -> None:
        try:
            station = Station.from_message(STATION.decode(message.data))
            commands = self.commander.station(station)
        except (ValueError, KeyError, TypeError) as error:  # BadMessageError, or a station the arm cannot use
            self.reject(STATION.name, f'bad station description: {error}')
            return
        self.emit(commands)


def main(args=None) -> int:
    return run_node(Sim2RealNode, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
