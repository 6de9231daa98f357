"""``real2sim`` node: the arm's joint states and the objects' poses -> the policy's observation.

Topics (absolute names, remappable; the driver's come from ``config/driver_<driver>.yaml``):

* sub ``driver.joint_states_topic`` (sensor_msgs/JointState, sensor QoS): the 7 arm joints by name, in
  any order, extra joints ignored. Every accepted sample produces one observation, stamped (in the
  array label) with the joint state's ``header.stamp``, so latency stays attributable downstream.
* sub ``objects_topic`` (geometry_msgs/PoseArray, robot base frame) + ``object_names_topic`` (String JSON
  list, latched): poses named ``object_1``, ``object_2``, ``goal`` (the sim bridge's ground truth, or
  perception on the real arm).
* sub ``gripper_opening_topic`` (std_msgs/Float64 in [0, 1], Meta-World's normalised finger distance);
  while none arrives the opening is estimated from the gripper commands on ``driver.gripper_topic``
  (:class:`legion_kuka.real2sim.GripperEstimate`: each command is a position the fingers move to at the
  gripper's speed).
* sub ``/legion/active_step`` (latched) and ``/legion/station`` (String JSON ``{task, frame: {position,
  quaternion_wxyz}, hand_low, hand_high}``, latched; optional: the pose of the active task's frame in the
  robot base frame; default the ``task_frame`` parameter, else the single-task placement).
* pub ``/legion/observation`` (Float32MultiArray, 12 = LEGION's layout) and ``/legion/observation_full``
  (39 = Meta-World's layout, for the scripted experts), in the task frame.
* pub ``/legion/step_success`` (String JSON ``{sequence_id, index, task, success, source}``): the task
  monitor (:mod:`legion_ros.task_monitor`) judges the active step from the simulator's ground truth
  (``sim_success_topic``) when it describes the active task, else from Meta-World's criterion on the
  observation.

A thin adapter: :class:`legion_kuka.observer.Observer` assembles the observation and
:class:`legion_ros.task_monitor.StepJudge` judges the step (both pure, tested without ROS).

Malformed input (wrong sizes, NaN/inf, unknown or missing joint names, stamps going backwards or
outside ``stamp_window_s`` of this node's clock, see :class:`legion_ros.provenance.StampWindow`) is
dropped with a reason on ``~/status``; no observation is built from it.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64, String

# hand_offset is also sim2real's (imported from here): one hand point for the observation and the command.
from legion_kuka.observer import Observer, StaleObjectsError, hand_offset
from legion_ros import qos
from legion_ros.interfaces import (
    ACTIVE_STEP,
    GRIPPER_OPENING,
    OBJECT_NAMES,
    OBJECT_POSES,
    OBSERVATION,
    OBSERVATION_FULL,
    SIM_BRIDGE_STATUS,
    SIM_TASK_SUCCESS,
    STATION,
    STEP_SUCCESS,
    StepSuccess,
)
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
    read_joint_positions,
)
from legion_ros.task_monitor import StepJudge

PARAMETERS = {
    'driver.name': Param('lbr', 'driver profile', choices=('lbr', 'iiwa_ros2')),
    'driver.joint_names': Param([], 'the 7 arm joint names, A1 first; empty: the profile\'s names',
                                type='string[]'),
    'driver.joint_states_topic': Param('/lbr/joint_states', 'sensor_msgs/JointState topic of the driver'),
    'driver.gripper_topic': Param('/lbr/gripper/command', 'std_msgs/Float64 gripper command [-1 open, +1 '
                                  'closed] (used to estimate the opening when it is not measured)'),
    'objects_topic': Param(OBJECT_POSES.name, 'geometry_msgs/PoseArray of objects and goal, base frame'),
    'object_names_topic': Param(OBJECT_NAMES.name, 'std_msgs/String JSON list naming the poses'),
    'gripper_opening_topic': Param(GRIPPER_OPENING.name, 'std_msgs/Float64 measured opening in [0, 1]'),
    'task_frame': Param([], 'pose of the task frame in the robot base frame: x y z qw qx qy qz; empty: '
                        f'the single-task placement (overridden by {STATION.name})', type='double[]'),
    'objects_timeout_s': Param(1.0, 'no observation while the object poses are older than this [s]',
                               range=(0.01, 60.0)),
    'success_source': Param('auto', 'task monitor: sim (the twin\'s task_success), observation '
                            '(Meta-World\'s criterion on the observation) or auto (sim when it describes '
                            'the active task)', choices=('auto', 'sim', 'observation')),
    'sim_success_topic': Param(SIM_TASK_SUCCESS.name, 'std_msgs/Bool ground truth of the twin'),
    'sim_status_topic': Param(SIM_BRIDGE_STATUS.name, 'the twin\'s latched status (its scene\'s task)'),
    'require_scene_match': Param(False, 'simulation only: publish no observation while the twin\'s scene '
                                 '(sim_status_topic) is not the active step\'s task, e.g. while it reloads'),
    'hand_offset_m': Param(-1.0, 'flange -> the point the policy calls the hand, along the tool axis '
                           '[m]; negative: read from the KUKA Meta-World scene (the trained hand point)',
                           range=(-1.0, 0.5)),
    'stamp_window_s': STAMP_WINDOW_PARAM,
    'success_hold': Param(3, 'consecutive successful samples before a step counts as done', range=(1, 100)),
}


class Real2SimNode(Node):
    """Thin adapter: decodes the inputs for :class:`legion_kuka.observer.Observer` (the observation) and
    :class:`legion_ros.task_monitor.StepJudge` (the step's success), publishes what they produce."""

    def __init__(self) -> None:
        super().__init__('real2sim')
        self.params = p = declare_parameters(self, PARAMETERS)
        from legion_kuka import description
        from legion_kuka.kinematics import IiwaKinematics
        from legion_kuka.real2sim import Real2Sim

        try:
            self.joint_names = description.driver_joint_names(p['driver.joint_names'], p['driver.name'])
        except ValueError as error:
            raise NodeConfigError(str(error)) from None
        # The observation's hand is the point Meta-World calls the hand, not the gripper tcp.
        real2sim = Real2Sim(IiwaKinematics(tool='tcp', tcp_offset=hand_offset(p.hand_offset_m)),
                            layout='full39', task_frame=self._frame_parameter(p.task_frame))
        self.observer = Observer(real2sim, p.objects_timeout_s, p.require_scene_match)
        self.judge = StepJudge(p.success_source, p.success_hold)
        self.status = StatusPublisher(self)
        self.stamps = StampWindow(p.stamp_window_s)
        self.rejected: dict[str, int] = {}
        self.observations = 0

        self.obs_pub = self.create_publisher(Float32MultiArray, OBSERVATION.name, qos.STATE)
        self.obs_full_pub = self.create_publisher(Float32MultiArray, OBSERVATION_FULL.name, qos.STATE)
        self.success_pub = self.create_publisher(String, STEP_SUCCESS.name, qos.STATE)
        self.create_subscription(JointState, p['driver.joint_states_topic'], self.on_joint_state, qos.SENSOR)
        self.create_subscription(PoseArray, p.objects_topic, self.on_objects, qos.SENSOR)
        self.create_subscription(String, p.object_names_topic, self.on_object_names, qos.LATCHED)
        self.create_subscription(Float64, p.gripper_opening_topic, self.on_gripper_opening, qos.SENSOR)
        self.create_subscription(Float64, p['driver.gripper_topic'], self.on_gripper_command, qos.COMMAND)
        self.create_subscription(String, ACTIVE_STEP.name, self.on_active_step, qos.LATCHED)
        self.create_subscription(String, STATION.name, self.on_station, qos.LATCHED)
        if p.success_source != 'observation':
            self.create_subscription(Bool, p.sim_success_topic, self.on_sim_success, qos.SENSOR)
            self.create_subscription(String, p.sim_status_topic, self.on_sim_status, qos.LATCHED)
        self.status.publish('ready', joints=self.joint_names)

    @staticmethod
    def _frame_parameter(values):
        if not values:
            return None
        if len(values) != 7:
            raise NodeConfigError(f'task_frame must be x y z qw qx qy qz (7 numbers), got {len(values)}')
        return (np.asarray(values[:3]), np.asarray(values[3:]))

    def reject(self, topic: str, reason: str) -> None:
        self.rejected[topic] = self.rejected.get(topic, 0) + 1
        self.status.publish('input_rejected', topic=topic, reason=reason, rejected=dict(self.rejected))
        self.get_logger().warning(f'rejected {topic}: {reason}', throttle_duration_sec=2.0)

    # -- inputs -----------------------------------------------------------------------------------
    def on_object_names(self, message: String) -> None:
        try:
            self.observer.set_object_names(OBJECT_NAMES.decode(message.data))
        except BadMessageError as error:
            self.reject(self.params.object_names_topic, str(error))

    def on_objects(self, message: PoseArray) -> None:
        poses = [((m.position.x, m.position.y, m.position.z),
                  (m.orientation.w, m.orientation.x, m.orientation.y, m.orientation.z))
                 for m in message.poses]
        try:
            self.observer.set_objects(poses, clock_s(self))
        except ValueError as error:
            self.reject(self.params.objects_topic, str(error))

    def on_gripper_opening(self, message: Float64) -> None:
        try:
            self.observer.measured_opening(message.data)
        except ValueError as error:
            self.reject(self.params.gripper_opening_topic, str(error))

    def on_gripper_command(self, message: Float64) -> None:
        self.observer.commanded_gripper(message.data, clock_s(self))

    def on_active_step(self, message: String) -> None:
        try:
            step = ACTIVE_STEP.decode(message.data)
        except BadMessageError as error:
            self.reject(ACTIVE_STEP.name, str(error))
            return
        self.judge.start(step)
        self.observer.start_step(step['task'])

    def on_station(self, message: String) -> None:
        try:
            self.observer.set_station(STATION.decode(message.data))
        except ValueError as error:  # BadMessageError, or a pose Frame.of refuses (a zero quaternion)
            self.reject(STATION.name, f'bad station description: {error}')

    def on_sim_status(self, message: String) -> None:
        try:
            task = SIM_BRIDGE_STATUS.decode(message.data).get('task')
        except BadMessageError:
            return
        if isinstance(task, str):
            self.observer.set_scene_task(task)

    def on_sim_success(self, message: Bool) -> None:
        self._report(self.judge.sim(message.data, self.observer.scene_task))

    def on_joint_state(self, message: JointState) -> None:
        topic = self.params['driver.joint_states_topic']
        try:
            q, stamp = read_joint_positions(message, self.joint_names)
            self.stamps.check(stamp, self.get_clock().now().nanoseconds)
        except BadMessageError as error:
            self.reject(topic, str(error))
            return
        try:
            observed = self.observer.observe(q, clock_s(self))
        except StaleObjectsError as stale:
            self.status.publish('stale_objects', age_s=round(stale.age_s, 3))
            return
        except ValueError as error:
            self.reject(topic, f'cannot build the observation: {error}')
            return
        if observed is None:
            return  # nothing to observe yet, or another task's scene: no observation, the arm holds
        obs39, obs12 = observed
        self.obs_full_pub.publish(array_message(obs39, 'observation_full', stamp))
        self.obs_pub.publish(array_message(obs12, 'observation', stamp))
        self.observations += 1
        self._report(self.judge.observation(obs39, self.observer.scene_task))

    def _report(self, report: StepSuccess | None) -> None:
        if report is not None:
            self.success_pub.publish(String(data=STEP_SUCCESS.encode(report)))
            self.get_logger().info(f'step {report["index"]} ({report["task"]}) succeeded '
                                   f'({report["source"]})')


def main(args=None) -> int:
    return run_node(Real2SimNode, args)


if __name__ == '__main__':
    import sys

    sys.exit(main())
