"""sim_bridge: the MuJoCo twin of the iiwa behind the real driver's ROS interface.

Everything a LEGION node sees of the arm comes from the driver profile (``config/driver_<driver>.yaml``,
parameters ``driver.*``), so the same graph runs against this node or against lbr_fri_ros2_stack /
iiwa_ros2 unchanged:

* pub ``driver.joint_states_topic`` (sensor_msgs/JointState, the profile's joint names) every
  control cycle, like ``joint_state_broadcaster``;
* sub ``driver.command_topic`` (std_msgs/Float64MultiArray): exactly 7 finite joint positions [rad],
  held until the next command, like a ``forward_position_controller``. Anything else (wrong size,
  NaN, inf) is rejected with a logged reason and a ``~/status`` update, never applied;
* sub ``driver.gripper_topic`` (std_msgs/Float64 in [-1 open, +1 closed]);

and what only a simulator offers:

* ``/clock`` (rosgraph_msgs/Clock) when ``publish_clock``: simulated time, monotonic across resets;
  the messages above are then stamped in simulated time too, unless ``sim_time_stamps`` is false (a
  graph whose nodes keep wall time but time their steps on /clock: legion sim);
* ``object_poses_topic`` (geometry_msgs/PoseArray, robot base frame: the task's objects, then the
  goal) and ``object_names_topic`` (std_msgs/String, JSON list in the same order, latched);
* ``gripper_opening_topic`` (std_msgs/Float64, every cycle): the measured finger opening in [0, 1],
  what a real gripper's driver would report;
* ``~/task_success`` (std_msgs/Bool): Meta-World's success criterion on the twin's state;
* with ``workcell`` (up to 3 tasks): one scene with every task's station around the arm
  (:mod:`legion_kuka.workcell`); ``task`` names the active station, whose objects, goal and success
  the topics above report, and ``/legion/station`` (std_msgs/String JSON, latched) describes it (task
  frame, hand box, start posture, the workcell's box and swing height): sim2real moves the arm there
  (a transit through its safety filter) and real2sim switches to its frame;
* with ``job`` (the tasks of a job's steps, any number; instead of ``workcell``): the job's sequence of
  workcells (:mod:`legion_kuka.job`), starting with the first; a ``task`` of the next workcell loads it
  with every object's state carried over (the window a step opened is the one the next step closes),
  announced on ``/legion/scene`` like any scene load;
* ``/legion/scene`` (std_msgs/String JSON, latched) at every scene (re)load and ``~/reset``, before the
  first joint state of the new scene: the task, seed and the posture the arm jumped to, which no real
  arm does. sim2real re-anchors its safety filter there instead of latching its e-stop on the jump
  (:meth:`legion_kuka.commander.ArmCommander.scene`); nothing else resets it;
* with ``state_log`` (a path; empty: off): the scene and all its joint positions at ``state_log_rate_hz``
  in simulated time, and the instruction's ``/legion/active_step`` and ``/legion/step_success`` as
  timestamped notes, kept in memory (a row copy, microseconds) and written atomically when the node
  stops or loads another scene (:mod:`legion_kuka.state_log`): what ``legion kuka video`` draws a video
  of after the run, in another process, so the control loop never waits for a frame;
* parameters ``task`` and ``seed`` may be set at run time (``ros2 param set``): the twin loads that
  scene; every other parameter is read-only;
* services ``~/reset`` (Trigger: the task's initial state), ``~/reset_home`` (Trigger: the same
  with the arm at home), ``~/set_pause`` (SetBool), ``~/step`` (Trigger: one control cycle, only
  while paused).

The twin is stepped by a timer at ``control_rate_hz`` (100 Hz, the drivers' controller rate).

Start posture: some Meta-World resets put the hand where the tool-down iiwa reaches only at its joint
limits (hand start (0, 0.4, 0.2): button-press-topdown, window-*, faucet-*; A4 at -120 deg, A6 at 120
deg). sim2real's safety filter never moves an arm that stands outside its position limits (the
datasheet's shrunk by ``position_margin_deg``), so from such a start every command is a hold and the
step cannot succeed. On the real arm an operator jogs it in first; the twin does the same on every
scene (re)load and ``~/reset``: with ``start_inside_margin_deg`` > 0 an arm outside the limits shrunk by
that margin starts from the nearest reachable tool-down posture 1 deg inside them, exactly as
:class:`legion_kuka.chain.ChainRunner` starts its episodes, so a step through the graph starts where
the same step through the pure chain does (:func:`legion_kuka.twin_driver.start_inside_limits`).
"""
from __future__ import annotations

import math
import sys

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger

from legion_kuka.twin_driver import ARM_DOF, TwinDriver, build_twin
from legion_ros import qos
from legion_ros.interfaces import (
    ACTIVE_STEP,
    GRIPPER_OPENING,
    OBJECT_NAMES,
    OBJECT_POSES,
    SCENE,
    STATION,
    STEP_SUCCESS,
    BadMessageError,
    Frame,
    Scene,
    Station,
)
from legion_ros.node_base import NodeConfigError, Param, StatusPublisher, declare_parameters, run_node

# What the state log notes beside the states (the instruction node's and the task monitor's topics).
NOTED_TOPICS = {'active_step': ACTIVE_STEP, 'step_success': STEP_SUCCESS}
MAX_NOTE_BYTES = 4096

PARAMETERS = {
    'driver.name': Param('lbr', 'driver profile mirrored by the twin', choices=('lbr', 'iiwa_ros2'),
                         read_only=True),
    'driver.joint_names': Param([], 'the 7 arm joint names, A1 first, as the driver publishes them',
                                type='string[]', read_only=True),
    'driver.joint_states_topic': Param('/lbr/joint_states', 'sensor_msgs/JointState topic of the driver',
                                       read_only=True),
    'driver.command_topic': Param('/lbr/forward_position_controller/commands',
                                  'std_msgs/Float64MultiArray joint position command topic', read_only=True),
    'driver.gripper_topic': Param('/lbr/gripper/command', 'std_msgs/Float64 gripper command topic',
                                  read_only=True),
    'driver.base_frame': Param('lbr_link_0', 'frame_id of the robot base (object poses)', read_only=True),
    # task and seed may change at run time (ros2 param set): the twin loads that scene, as ~/reset does.
    'task': Param('reach-v3', 'Meta-World task whose scene the twin loads; set it to switch scenes (in a '
                  'workcell: the active station; the arm gets there by sim2real\'s transit)'),
    'workcell': Param([], 'tasks of a workcell of up to 3 stations around the arm (ahead, left, right), all '
                      'in one scene; empty: one task\'s scene', type='string[]', read_only=True),
    'job': Param([], 'tasks of a job\'s steps in order (any number): the twin runs its sequence of workcells '
                 '(legion_kuka.job), each object\'s state carried from one to the next; empty: off',
                 type='string[]', read_only=True),
    'seed': Param(0, 'goal variant of the task (object and goal placement)', range=(0, 2**31 - 1)),
    'model': Param('iiwa7', 'robot model', choices=('iiwa7',), read_only=True),
    'control_rate_hz': Param(100.0, 'controller rate: one twin control cycle per period [Hz]',
                             range=(1.0, 1000.0), read_only=True),
    'publish_clock': Param(True, 'publish simulated time on /clock', read_only=True),
    'sim_time_stamps': Param(True, 'with publish_clock: stamp joint states and poses in simulated time (for '
                             'nodes on use_sim_time); false: the wall clock', read_only=True),
    'start_paused': Param(False, 'start paused (advance with ~/step or ~/set_pause false)', read_only=True),
    'object_poses_rate_hz': Param(20.0, 'rate of object poses and task success [Hz]', range=(0.1, 1000.0),
                                  read_only=True),
    'object_poses_topic': Param(OBJECT_POSES.name, 'geometry_msgs/PoseArray of objects and goal',
                                read_only=True),
    'object_names_topic': Param(OBJECT_NAMES.name, 'std_msgs/String JSON names, PoseArray order',
                                read_only=True),
    'gripper_opening_topic': Param(GRIPPER_OPENING.name, 'std_msgs/Float64 measured finger opening in '
                                   '[0 closed, 1 open] (Meta-World\'s normalised finger distance)',
                                   read_only=True),
    'state_log': Param('', 'record the scene and its joint positions into this file (.npz, written when the '
                       'node stops or changes scene) for a video after the run (legion kuka video); empty: '
                       'off', read_only=True),
    'state_log_rate_hz': Param(25.0, 'rate of the state log in simulated time (a video\'s frame rate) [Hz]',
                               range=(1.0, 1000.0), read_only=True),
    'start_inside_margin_deg': Param(5.0, 'on a scene load or ~/reset, an arm closer than this to a '
                                     'datasheet joint limit starts from the nearest tool-down posture 1 deg '
                                     'inside (an operator jogging it in for the safety filter; keep it equal '
                                     'to sim2real\'s position_margin_deg); 0: the scene\'s posture as is '
                                     '[deg]',
                                     range=(0.0, 30.0), read_only=True),
}


def station_description(twin, limits) -> Station:
    """What sim2real and real2sim need of a workcell's active station (the ``interfaces.STATION`` message):
    its task frame and hand box, where its task starts the arm (inside ``limits``,
    :func:`legion_kuka.twin_driver.start_limits`), and for the transit there the workcell's tcp box and
    swing height."""
    from legion_kuka.workcell import station_start, workcell_workspace

    frame = twin.station_frame()
    low, high = workcell_workspace(twin)
    start = station_start(twin, limits)
    return Station(task=twin.task, stations=list(twin.tasks),
                   frame=Frame(position=frame.translation.tolist(), quaternion_wxyz=frame.quat.tolist()),
                   hand_low=twin.hand_low.tolist(), hand_high=twin.hand_high.tolist(),
                   start_posture=start.tolist(), workspace_low=low.tolist(), workspace_high=high.tolist(),
                   lift_to_m=twin.swing_height())


def pose_array(objects, stamp, frame_id: str) -> PoseArray:
    """The objects' and the goal's poses (:class:`legion_kuka.twin_driver.Objects`) as one message."""
    array = PoseArray()
    array.header.stamp = stamp
    array.header.frame_id = frame_id
    for position, quat_wxyz in objects.poses:
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
        w, x, y, z = (float(v) for v in quat_wxyz)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = x, y, z, w
        array.poses.append(pose)
    return array


def sim_stamp(sim_time_ns: int) -> Time:
    return Time(sec=sim_time_ns // 1_000_000_000, nanosec=sim_time_ns % 1_000_000_000)


class SimBridge(Node):
    """The ROS face of a :class:`~legion_kuka.twin_driver.TwinDriver`: parameters, topics, services."""

    def __init__(self) -> None:
        super().__init__('sim_bridge')
        self.params = p = declare_parameters(self, PARAMETERS)
        if p['driver.joint_names'] and len(p['driver.joint_names']) != ARM_DOF:
            raise NodeConfigError(f'driver.joint_names must name {ARM_DOF} joints, '
                                  f'got {p["driver.joint_names"]}')
        try:
            twin = build_twin(p.task, seed=p.seed, workcell=p.workcell, job=p.job, profile=p['driver.name'],
                              control_rate_hz=p.control_rate_hz)
        except ValueError as error:
            raise NodeConfigError(str(error)) from None
        self.driver = TwinDriver(
            twin, start_margin_rad=math.radians(p.start_inside_margin_deg),
            poses_every=round(p.control_rate_hz / p.object_poses_rate_hz),
            state_log_every=round(p.control_rate_hz / p.state_log_rate_hz) if p.state_log else None,
            state_log_path=p.state_log, logger=self.get_logger())
        self.twin = twin
        self.joint_names = list(p['driver.joint_names']) or list(twin.joint_names)
        if p.start_paused:
            twin.pause()

        self.status = StatusPublisher(self)
        self.joint_state_pub = self.create_publisher(JointState, p['driver.joint_states_topic'], qos.STATE)
        self.clock_pub = self.create_publisher(Clock, '/clock', qos.STATE) if p.publish_clock else None
        self.poses_pub = self.create_publisher(PoseArray, p.object_poses_topic, qos.STATE)
        self.names_pub = self.create_publisher(String, p.object_names_topic, qos.LATCHED)
        self.success_pub = self.create_publisher(Bool, '~/task_success', qos.STATE)
        self.opening_pub = self.create_publisher(Float64, p.gripper_opening_topic, qos.STATE)
        self.station_pub = (self.create_publisher(String, STATION.name, qos.LATCHED)
                            if p.workcell or p.job else None)
        self.scene_pub = self.create_publisher(String, SCENE.name, qos.LATCHED)
        self.create_subscription(Float64MultiArray, p['driver.command_topic'], self.on_command, qos.COMMAND)
        self.create_subscription(Float64, p['driver.gripper_topic'], self.on_gripper, qos.COMMAND)
        self.create_service(Trigger, '~/reset', lambda _q, r: self._reset(r, None))
        self.create_service(Trigger, '~/reset_home', lambda _q, r: self._reset(r, 'home'))
        self.create_service(SetBool, '~/set_pause', self.on_set_pause)
        self.create_service(Trigger, '~/step', self.on_step)
        self.publish_scene()
        if self.driver.state_log is not None:
            for name, topic in NOTED_TOPICS.items():
                self.create_subscription(String, topic.name, lambda m, name=name: self.on_noted(name, m),
                                         qos.LATCHED if name == 'active_step' else qos.STATE)
        self.timer = self.create_timer(twin.control_period_s, self.on_timer)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.report('ready')
        self.get_logger().info(
            f'twin of {p.task} (seed {p.seed}) as driver {p["driver.name"]}: '
            f'{p["driver.joint_states_topic"]} <- {p["driver.command_topic"]} at '
            f'{1 / twin.control_period_s:.0f} Hz' + (' (paused)' if twin.paused else ''))

    def publish_scene(self, scene: bool = True) -> None:
        """A scene's start (``interfaces.SCENE``) before the joint states that show the jump, so that
        sim2real expects it (``scene`` False: a station change, no jump); then the state and the station."""
        if scene:
            self.scene_pub.publish(String(data=SCENE.encode(Scene(**self.driver.scene()))))
        self.publish_state(with_poses=True)
        if self.station_pub is not None:
            station = station_description(self.twin, self.driver.limits)
            self.station_pub.publish(String(data=STATION.encode(station)))

    def report(self, event: str, **fields) -> None:
        state, status = self.driver.status()
        self.status.publish(state, event=event, **status, **fields)

    def on_timer(self) -> None:
        with_poses, real_time_factor = self.driver.tick()
        self.publish_state(with_poses=with_poses)
        if real_time_factor is not None:
            self.report('tick', real_time_factor=real_time_factor)

    def on_noted(self, name: str, message: String) -> None:
        if len(message.data) > MAX_NOTE_BYTES:  # a step is a few hundred bytes; nothing else is shown
            return
        try:
            data = NOTED_TOPICS[name].decode(message.data)
        except BadMessageError:
            data = message.data  # kept as it came: the video shows no step for it
        self.driver.note(name, data)

    def close(self) -> None:
        self.driver.save_state_log()

    def publish_state(self, with_poses: bool) -> None:
        sim_time = sim_stamp(self.driver.sim_time_ns)
        sim_stamps = self.clock_pub is not None and self.params.sim_time_stamps
        stamp = sim_time if sim_stamps else self.get_clock().now().to_msg()
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=sim_time))
        state = self.twin.joint_state()
        message = JointState(name=self.joint_names, position=state.position.tolist(),
                             velocity=state.velocity.tolist(), effort=state.effort.tolist())
        message.header.stamp = stamp
        self.joint_state_pub.publish(message)
        self.opening_pub.publish(Float64(data=self.twin.gripper_opening()))
        if with_poses:
            self.publish_objects(stamp)

    def publish_objects(self, stamp) -> None:
        objects = self.driver.objects()
        if objects.names_changed:
            self.names_pub.publish(String(data=OBJECT_NAMES.encode(objects.names)))
        self.poses_pub.publish(pose_array(objects, stamp, self.params['driver.base_frame']))
        self.success_pub.publish(Bool(data=objects.success))

    def on_command(self, message: Float64MultiArray) -> None:
        if not self.driver.command(message.data):
            self.report('rejected_command')

    def on_gripper(self, message: Float64) -> None:
        if not self.driver.gripper(message.data):
            self.report('rejected_command')

    def _reset(self, response, keyframe: str | None):
        response.message = self.driver.reset(keyframe)
        self.publish_scene()
        response.success = True
        self.report('reset', keyframe=keyframe)
        return response

    def on_set_parameters(self, parameters) -> SetParametersResult:
        """A new ``task`` or ``seed`` loads that scene (its initial state), or is refused with why."""
        changes = {p.name: p.value for p in parameters if p.name in ('task', 'seed')}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            event = self.driver.load(changes.get('task', self.twin.task), changes.get('seed', self.twin.seed),
                                     workcell=bool(self.params.workcell or self.params.job))
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self.publish_scene(scene=event == 'scene')
        self.report(event)
        return SetParametersResult(successful=True)

    def on_set_pause(self, request, response):
        (self.twin.pause if request.data else self.twin.resume)()
        response.success = True
        response.message = 'paused' if request.data else 'running'
        self.report('pause' if request.data else 'resume')
        return response

    def on_step(self, _request, response):
        problem = self.driver.step()
        if problem is None:
            self.publish_state(with_poses=True)
        response.success = problem is None
        response.message = problem or f'stepped to {self.driver.sim_time_s:.3f} s'
        return response


def main(args: list[str] | None = None) -> int:
    return run_node(SimBridge, args)


if __name__ == '__main__':
    sys.exit(main())
