"""``sim2real`` node: policy actions -> safe joint position commands at the controller rate.

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
Gripper: the action's 4th value, time-scaled like the arm (times ``policy_rate_hz`` x 12.5 ms, Meta-World's
env step: the same finger travel per policy step as in training), goes out on ``driver.gripper_topic``
(std_msgs/Float64, [-1, 1]).
"""
from __future__ import annotations

import json
from collections import deque

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64, Float64MultiArray, String
from std_srvs.srv import Trigger

from legion_kuka.sim2real import HAND_RESPONSES
from legion_ros import qos
from legion_ros.node_base import (
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

ARM_DOF = 7
TOPICS = {'action': '/legion/action', 'estop': '/legion/estop', 'active_step': '/legion/active_step',
          'station': '/legion/station'}

def read_finite(values, size: int, what: str) -> np.ndarray:
    """``size`` finite numbers from a JSON field, or ValueError saying what is wrong."""
    array = np.asarray(values, dtype=float)
    if array.shape != (size,) or not np.all(np.isfinite(array)):
        raise ValueError(f'{what} must be {size} finite numbers, got {values!r}')
    return array


PARAMETERS = {
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
    'task_frame': Param([], 'pose of the task frame in the robot base frame: x y z qw qx qy qz; empty: '
                        'the single-task placement (overridden by /legion/station)', type='double[]'),
}


class Sim2RealNode(Node):
    def __init__(self) -> None:
        super().__init__('sim2real')
        self.params = p = declare_parameters(self, PARAMETERS)
        from legion_kuka import description
        from legion_kuka.kinematics import IiwaKinematics
        from legion_kuka.safety import SafetyLimits, planning_kinematics

        self.joint_names = list(p['driver.joint_names']) or description.joint_names(p['driver.name'])
        if len(self.joint_names) != ARM_DOF or len(set(self.joint_names)) != ARM_DOF:
            raise NodeConfigError(f'driver.joint_names must name {ARM_DOF} distinct joints, '
                                  f'got {self.joint_names}')
        from legion_ros.nodes.real2sim import hand_offset

        self.kinematics = IiwaKinematics(tool='tcp')  # the safety filter's box bounds the gripper's tcp
        self.period_s = 1.0 / p['driver.controller_rate_hz']
        self.task_frame = None
        if p.task_frame:
            if len(p.task_frame) != 7:
                raise NodeConfigError(f'task_frame must be x y z qw qx qy qz, got {len(p.task_frame)} '
                                      'numbers')
            self.task_frame = (np.asarray(p.task_frame[:3]), np.asarray(p.task_frame[3:]))
        self.hand_box: tuple | None = None
        self._pending_workspace = None
        self.workspace = None
        self._task_boxes: dict[str, tuple] = {}
        if p.hand_box == 'task':
            import legion_kuka.metaworld_kuka  # noqa: F401  (slow first import: at start, not mid-run)
        self._limits_options = {'position_margin': np.radians(p.position_margin_deg),
                                'velocity_scale': p.velocity_scale}
        self._hand_offset = hand_offset(p.hand_offset_m)
        limits = SafetyLimits.from_description(**self._limits_options)
        # IK moves the policy's hand point inside the filter's position limits, as the chain does.
        self.planning = planning_kinematics(limits, self._hand_offset)
        self.translator = self._make_translator()
        self.safety = self._make_filter(limits)
        self.status = StatusPublisher(self)

        self.q: np.ndarray | None = None            # measured joints
        self.q_stamp_s: float | None = None
        self.last_js_ns: int | None = None
        self.stamps = StampWindow(p.stamp_window_s)
        self.anchored = False                       # translator anchored at the measured hand
        self.last_action_s: float | None = None     # node clock of the last accepted action
        self.source_ns: int | None = None           # source stamp of the current policy step
        self.commanded_js: int | None = None        # joint-state stamp whose cycle got a command
        self.pending_action = False                 # an action whose first target is not out yet
        self.holding = True
        self.estopped = False
        self.estop_requested = False
        self.sent = 0
        self.refused: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.transit_targets: deque[np.ndarray] = deque()  # joint targets to a new workcell station
        self._pending_transit = None  # a station's transit request waiting for a joint state / reset
        self._transit_under_way = None  # the request being moved on

        self.command_pub = self.create_publisher(Float64MultiArray, p['driver.command_topic'], qos.COMMAND)
        self.gripper_pub = self.create_publisher(Float64, p['driver.gripper_topic'], qos.COMMAND)
        self.create_subscription(JointState, p['driver.joint_states_topic'], self.on_joint_state, qos.SENSOR)
        self.create_subscription(Float32MultiArray, TOPICS['action'], self.on_action, qos.COMMAND)
        self.create_subscription(Bool, TOPICS['estop'], self.on_estop, qos.LATCHED)
        self.create_subscription(String, TOPICS['active_step'], self.on_active_step, qos.LATCHED)
        self.create_subscription(String, TOPICS['station'], self.on_station, qos.LATCHED)
        self.create_service(Trigger, '~/reset_estop', self.on_reset_estop)
        # Streaming already stops per cycle on stale actions; this timer only makes the hold visible (status),
        # so it need not wake the executor every control cycle.
        self.create_timer(min(p.action_timeout_s / 3.0, 0.1), self.on_watchdog)
        self.create_timer(1.0, self.publish_status)
        self.publish_status()

    def _make_translator(self):
        from legion_kuka.sim2real import Sim2Real

        box = self.hand_box
        kwargs = {} if box is None else {'hand_low': box[0], 'hand_high': box[1]}
        try:
            return Sim2Real(self.planning, task_frame=self.task_frame,
                            control_rate_hz=self.params['driver.controller_rate_hz'],
                            policy_rate_hz=self.params.policy_rate_hz,
                            hand_response=self.params.hand_response, **kwargs)
        except ValueError as error:
            raise NodeConfigError(str(error)) from None

    def publish_status(self) -> None:
        state = ('estop' if self.estopped else 'transit' if self.transit_targets
                 else 'holding' if self.holding else 'commanding')
        self.status.publish(state, commands_sent=self.sent, refused=dict(self.refused),
                            rejected=dict(self.rejected), joint_state=self.q is not None,
                            workspace=self.workspace)

    def reject(self, topic: str, reason: str) -> None:
        self.rejected[topic] = self.rejected.get(topic, 0) + 1
        self.status.publish('input_rejected', topic=topic, reason=reason, rejected=dict(self.rejected))
        self.get_logger().warning(f'rejected {topic}: {reason}', throttle_duration_sec=2.0)

    # -- inputs -----------------------------------------------------------------------------------
    def on_joint_state(self, message: JointState) -> None:
        topic = self.params['driver.joint_states_topic']
        try:
            q, stamp = read_joint_positions(message, self.joint_names)
            now_ns = self.get_clock().now().nanoseconds
            self.stamps.check(stamp, now_ns)
        except BadMessageError as error:
            self.reject(topic, str(error))
            return
        if self.last_js_ns is not None and stamp < self.last_js_ns:
            self.commanded_js = None  # the stamps re-anchored after a clock jump: cycles count afresh
        self.last_js_ns = stamp
        self.q = q
        # The filter's freshness check runs on this node's clock: the sample is fresh when it arrives.
        now_s = now_ns * 1e-9
        if self.q_stamp_s is not None and now_s < self.q_stamp_s and not self.safety.latched:
            # This node's clock went back (sim time: the twin restarted): the filter starts from rest at
            # the measured joints, as at a step boundary, instead of refusing every sample as out of order.
            self.safety.reset(now_s)
            self.holding, self.anchored = True, False
        self.q_stamp_s = now_s
        self.safety.update_joint_state(q, self.q_stamp_s)
        if self.safety.latched and not self.estopped:  # e.g. the arm is not where it was sent
            self._latched_by_filter()
            return
        if self._pending_transit is not None and not self.estopped:  # a station came before the arm
            self._apply_station()
        self.on_cycle()

    def _latched_by_filter(self) -> None:
        self.estopped = True
        reasons = list(self.safety.latch_reasons)
        self.get_logger().error(f'E-STOP by the safety filter: {", ".join(reasons)}')
        self.status.publish('estop', reasons=reasons, commands_sent=self.sent, refused=dict(self.refused),
                            rejected=dict(self.rejected))

    def on_action(self, message: Float32MultiArray) -> None:
        try:
            action = read_array(message, 4, 'action')
        except BadMessageError as error:
            self.reject(TOPICS['action'], str(error))
            return
        if self.estopped or self.q is None or self.transit_targets:  # (a transit: not there yet)
            return
        now = clock_s(self)
        if not self.anchored or self.holding:
            self.translator.reset(self.q, now=now)  # re-anchor at the measured hand: no jump on resume
            self.anchored = True
        try:
            plan = self.translator.plan(np.clip(action, -1.0, 1.0), self.q, now=now)
        except ValueError as error:
            self.reject(TOPICS['action'], f'cannot translate: {error}')
            return
        self.last_action_s = now
        self.source_ns = source_of(message)
        self.holding = False
        self.pending_action = True
        # The action's cycle is the joint state it was computed from (this node may not have seen that
        # sample yet): if that cycle has no command, its first target goes out now.
        # A source stamp is only believed inside the stamp window of the newest joint state: one far ahead
        # (a hostile label) would otherwise mark every later cycle as already commanded.
        if self.source_ns is not None and self.last_js_ns is not None \
                and self.source_ns - self.last_js_ns > self.stamps.window_ns:
            self.source_ns = None
        cycle = self.last_js_ns if self.source_ns is None else max(self.source_ns, self.last_js_ns or 0)
        if self.params.send_on_action and (self.commanded_js is None or cycle > self.commanded_js):
            self.send(self.translator.next_target(now), now, cycle)
        # The time-scaled command, as legion_kuka's chain sends it (see legion_kuka.sim2real): the raw action
        # would close the fingers 1/speed_scale (8x at 10 Hz) faster per policy step than in training,
        # before the hand has come down (push through the graph: stuck 6 cm above the puck, 0/2).
        self.gripper_pub.publish(Float64(data=float(plan.gripper_command)))  # after the arm's command

    def on_estop(self, message: Bool) -> None:
        self.estop_requested = bool(message.data)
        if message.data and not self.estopped:
            self.estopped = True
            self.safety.estop('estop_topic')
            self.get_logger().error('E-STOP: no more joint commands until ~/reset_estop')
            self.publish_status()

    def on_reset_estop(self, _request, response):
        if self.estop_requested:
            response.success = False
            response.message = 'the e-stop is still engaged on /legion/estop: publish false first'
            return response
        if not self.safety.reset(clock_s(self)):
            response.success = False
            response.message = 'no fresh joint state: the e-stop stays latched until the arm reports again'
            return response
        if self.transit_targets:  # an e-stop cut a transit short: plan it again from where the arm is
            self.transit_targets, self._pending_transit = deque(), self._transit_under_way
        self.stamps.reset()  # a reset also forgets the joint states' stamp order
        self.commanded_js = None
        if self._pending_workspace is not None:  # a new task's box waited for the reset
            self._rebuild_filter(self._pending_workspace)
        self.estopped = False
        self.holding, self.anchored = True, False
        response.success, response.message = True, 'e-stop reset; holding until the next action'
        self.publish_status()
        return response

    def on_active_step(self, message: String) -> None:
        # A new step starts from where the arm is, not from the previous step's hand target.
        self.anchored = False
        try:
            task = json.loads(message.data).get('task')
        except (ValueError, AttributeError):
            self.reject(TOPICS['active_step'], 'expected a JSON object')
            return
        if not isinstance(task, str) or self.params.hand_box != 'task':
            return
        box = self._task_box(task)
        if box is not None and (self.hand_box is None or not all(
                np.array_equal(a, b) for a, b in zip(box, self.hand_box, strict=True))):
            self.hand_box = box
            self.translator = self._make_translator()
            self._guard_with_task_box()

    def _task_workspace(self, box) -> tuple[np.ndarray, np.ndarray]:
        """The tcp box for a task's hand box (task frame), as legion_kuka's chain derives it."""
        from legion_kuka.real2sim import Frame, default_task_frame
        from legion_kuka.safety import hand_box_workspace

        frame = default_task_frame() if self.task_frame is None else Frame.of(self.task_frame)
        return hand_box_workspace(*box, frame, self._hand_offset)

    def _make_filter(self, limits):
        from legion_kuka.safety import SafetyFilter

        return SafetyFilter(limits, self.kinematics, control_period_s=self.period_s,
                            stale_after_s=self.params.joint_state_timeout_s)

    def _rebuild_filter(self, workspace) -> None:
        """A filter with the new box; it starts from rest at the measured joints (a step boundary)."""
        from legion_kuka.safety import SafetyLimits

        self.safety = self._make_filter(SafetyLimits.from_description(**self._limits_options,
                                                                      workspace=workspace))
        if self.q is not None and self.q_stamp_s is not None:
            self.safety.update_joint_state(self.q, self.q_stamp_s)
        self._pending_workspace = None
        self.workspace = [workspace[0].round(4).tolist(), workspace[1].round(4).tolist()]

    def _task_box(self, task: str) -> tuple | None:
        """The mocap box Meta-World clips the hand to in ``task`` (task frame), cached per task."""
        if task not in self._task_boxes:
            from legion_kuka.metaworld_kuka import kuka_env_class
            try:
                env = kuka_env_class(task)()
            except Exception as error:  # an unknown task: keep the previous box, say why
                self.status.publish('fault', reason=f'no hand box for {task}: {error}')
                return None
            self._task_boxes[task] = (np.asarray(env.mocap_low, dtype=float).copy(),
                                      np.asarray(env.mocap_high, dtype=float).copy())
            env.close()
        return self._task_boxes[task]

    def on_station(self, message: String) -> None:
        try:
            station = json.loads(message.data)
            frame = station['frame']
            task_frame = (np.asarray(frame['position'], dtype=float),
                          np.asarray(frame['quaternion_wxyz'], dtype=float))
            hand_box = self.hand_box
            if 'hand_low' in station and 'hand_high' in station:
                hand_box = (np.asarray(station['hand_low'], dtype=float),
                            np.asarray(station['hand_high'], dtype=float))
            transit = self._transit_request(station)
            previous = self.task_frame, self.hand_box
            self.task_frame, self.hand_box = task_frame, hand_box
            try:
                self.translator = self._make_translator()
            except NodeConfigError:
                self.task_frame, self.hand_box = previous
                raise
        except (ValueError, KeyError, TypeError, NodeConfigError) as error:
            self.reject(TOPICS['station'], f'bad station description: {error}')
            return
        self.anchored = False
        self._pending_transit = transit
        self._apply_station()

    def _apply_station(self) -> None:
        """Move to the new station if a transit is asked for and possible now (joint state known, no
        e-stop: else it waits for them); otherwise guard with the station's own box."""
        if self._pending_transit is not None and self.q is not None and not self.estopped:
            request, self._pending_transit = self._pending_transit, None
            if self._start_transit(*request):
                return
        self._guard_with_task_box()

    def _guard_with_task_box(self) -> None:
        """With ``workspace: task``, the filter's box becomes the current hand box's (during a transit:
        at its end; while e-stopped: at the reset, never releasing the e-stop)."""
        if self.hand_box is None or self.params.workspace != 'task' or self.transit_targets:
            return
        workspace = self._task_workspace(self.hand_box)
        if self.estopped:
            self._pending_workspace = workspace
        else:
            self._rebuild_filter(workspace)

    # -- transit between workcell stations --------------------------------------------------------
    def _transit_request(self, station: dict):
        """(start posture, workspace, swing height) of a workcell station message, or None."""
        if 'start_posture' not in station:
            return None
        goal = read_finite(station['start_posture'], ARM_DOF, 'start_posture')
        low = read_finite(station['workspace_low'], 3, 'workspace_low')
        high = read_finite(station['workspace_high'], 3, 'workspace_high')
        lift = float(station['lift_to_m'])
        if not np.isfinite(lift) or np.any(low >= high):
            raise ValueError('the workcell box or swing height is not valid')
        return goal, (low, high), lift

    def _start_transit(self, goal: np.ndarray, workspace, lift_to_m: float) -> bool:
        """Move the arm to a new station's start posture (legion_kuka.workcell.Transit) through a filter
        with the workcell's box; policy actions wait until it is there. False: no path."""
        from legion_kuka.safety import SafetyLimits
        from legion_kuka.workcell import TRANSIT_GRIPPER, TRANSIT_SETTLE_CYCLES, Transit

        limits = SafetyLimits.from_description(**self._limits_options, workspace=workspace)
        try:
            path = Transit(self.q, goal, limits, self.kinematics, control_period_s=self.period_s,
                           lift_to_m=lift_to_m)
        except ValueError as error:
            self.status.publish('fault', reason=f'no transit to the new station: {error}')
            return False
        self.safety = self._make_filter(limits)
        self.safety.update_joint_state(self.q, self.q_stamp_s)
        self._transit_under_way = (goal, workspace, lift_to_m)
        self.transit_targets = deque([*path.targets, *[goal] * TRANSIT_SETTLE_CYCLES])
        self.gripper_pub.publish(Float64(data=TRANSIT_GRIPPER))  # each skill starts with the fingers open
        self.holding, self.pending_action = False, False
        self.get_logger().info(f'transit to the next station: {path.duration_s:.1f} s')
        self.publish_status()
        return True

    def _transit_cycle(self, now: float) -> None:
        self.send(self.transit_targets.popleft(), now)
        if not self.transit_targets:  # there: the station's own box from now on
            self._apply_station()
            self.holding, self.anchored = True, False
            self.get_logger().info('at the station: waiting for actions')
            self.publish_status()

    # -- output -----------------------------------------------------------------------------------
    def on_cycle(self) -> None:
        """Once per joint state (the driver's control cycle): stream the interpolation of the current
        policy step, or the pending action's first target. At most one command per cycle, because the
        safety filter's velocity and acceleration bounds hold per call."""
        if self.estopped or self.q is None:
            return
        now = clock_s(self)
        done = self.commanded_js is not None and self.commanded_js >= self.last_js_ns
        if self.transit_targets and not done:
            self._transit_cycle(now)
            return
        if self.stale_actions(now) or not self.anchored or done:
            return
        if self.translator.cycles_per_step > 1 or self.pending_action:
            self.send(self.translator.next_target(now), now)

    def stale_actions(self, now: float) -> bool:
        return self.last_action_s is None or now - self.last_action_s > self.params.action_timeout_s

    def on_watchdog(self) -> None:
        """No action for action_timeout_s: stop streaming (a position controller holds its last
        command); the next action re-anchors at the measured hand."""
        if not self.estopped and not self.holding and not self.transit_targets \
                and self.stale_actions(clock_s(self)):
            self.holding = True
            self.get_logger().warning(f'no action for {self.params.action_timeout_s:.2f} s: holding')
            self.publish_status()

    def send(self, target: np.ndarray, now: float, cycle: int | None = None) -> None:
        decision = self.safety.command(target, stamp=self.q_stamp_s, now=now)
        if self.safety.latched and not self.estopped:  # the filter latched itself (tracking error)
            self._latched_by_filter()
            return
        if decision.position is None:
            for reason in decision.reasons or ['refused']:
                self.refused[reason] = self.refused.get(reason, 0) + 1
            return
        position = np.asarray(decision.position, dtype=np.float64)
        self.command_pub.publish(array_message(position, 'joint_positions', self.source_ns, double=True))
        self.commanded_js = self.last_js_ns if cycle is None else cycle
        self.pending_action = False
        self.sent += 1
        for reason in decision.reasons or []:
            self.refused[reason] = self.refused.get(reason, 0) + 1


def main(args=None) -> int:
    return run_node(Sim2RealNode, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
