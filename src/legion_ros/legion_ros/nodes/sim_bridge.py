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
the same step through the pure chain does (:func:`start_inside_limits`).
"""
from __future__ import annotations

import math
import sys
import time

from geometry_msgs.msg import Pose, PoseArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger

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

ARM_DOF = 7
# What the state log notes beside the states (the instruction node's and the task monitor's topics).
NOTED_TOPICS = {'active_step': ACTIVE_STEP, 'step_success': STEP_SUCCESS}
MAX_NOTE_BYTES = 4096
REPORT_EVERY = 100  # control cycles between status updates with the real-time factor

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


def command_problem(values, expected: int = ARM_DOF) -> str | None:
    """Why a joint command must not be applied, or ``None`` when it is fine."""
    if len(values) != expected:
        return f'expected {expected} joint positions, got {len(values)}'
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        return f'non-finite joint positions at indices {bad}: {[values[i] for i in bad]}'
    return None


def start_limits(margin_rad: float):
    """The joint limits a twin's arm starts inside: the datasheet's shrunk by ``margin_rad`` (sim2real's
    safety filter's position limits; no tcp box). One :class:`~legion_kuka.safety.SafetyLimits` serves
    every scene load, reset and station change (the margin is read-only)."""
    from legion_kuka.safety import SafetyLimits

    return SafetyLimits.from_description(position_margin=float(margin_rad), workspace=None)


def station_description(twin, limits) -> Station:
    """What sim2real and real2sim need of a workcell's active station (the ``interfaces.STATION`` message):
    its task frame and hand box, where its task starts the arm (inside ``limits``, :func:`start_limits`),
    and for the transit there the workcell's tcp box and swing height."""
    from legion_kuka.workcell import station_start, workcell_workspace

    frame = twin.station_frame()
    low, high = workcell_workspace(twin)
    start = station_start(twin, limits)
    return Station(task=twin.task, stations=list(twin.tasks),
                   frame=Frame(position=frame.translation.tolist(), quaternion_wxyz=frame.quat.tolist()),
                   hand_low=twin.hand_low.tolist(), hand_high=twin.hand_high.tolist(),
                   start_posture=start.tolist(), workspace_low=low.tolist(), workspace_high=high.tolist(),
                   lift_to_m=twin.swing_height())


def start_inside_limits(twin, limits) -> bool:
    """Move a freshly reset twin's arm inside ``limits`` (:func:`start_limits`; None: leave it as the
    scene put it) if it stands outside them, to the posture the pure chain starts its episodes from
    (:func:`legion_kuka.chain.posture_inside_limits`); True if it moved."""
    from legion_kuka.chain import posture_inside_limits

    if limits is None:
        return False
    posture = posture_inside_limits(twin, limits)
    if posture is None:
        return False
    twin.reset(posture=posture)
    return True


class SimBridge(Node):
    def __init__(self) -> None:
        super().__init__('sim_bridge')
        self.params = p = declare_parameters(self, PARAMETERS)
        if p['driver.joint_names'] and len(p['driver.joint_names']) != ARM_DOF:
            raise NodeConfigError(f'driver.joint_names must name {ARM_DOF} joints, '
                                  f'got {p["driver.joint_names"]}')
        if p.workcell and p.task not in p.workcell:
            raise NodeConfigError(f'task {p.task!r} is not one of the workcell\'s stations {p.workcell}: '
                                  'task (task:=) picks the active station, one of workcell (workcell:=)')
        from legion_kuka.twin import Twin  # MuJoCo + Meta-World: heavy, only once parameters are fine

        try:
            if p.workcell:
                from legion_kuka.workcell import WorkcellTwin
                self.twin = WorkcellTwin(p.workcell, p.task, seed=p.seed, profile=p['driver.name'],
                                         control_rate_hz=p.control_rate_hz)
            else:
                self.twin = Twin(p.task, seed=p.seed, profile=p['driver.name'],
                                 control_rate_hz=p.control_rate_hz)
        except (ValueError, KeyError) as error:
            what = f'the workcell {p.workcell}' if p.workcell else f'the twin for task {p.task!r}'
            raise NodeConfigError(f'cannot build {what}: {error}') from None
        margin_rad = math.radians(p.start_inside_margin_deg)
        self.limits = start_limits(margin_rad)  # where each scene starts the arm, the station's start too
        self._jog_limits = self.limits if margin_rad > 0 else None  # 0: the scene's posture as is
        self._start_inside()
        self.joint_names = list(p['driver.joint_names']) or list(self.twin.joint_names)
        self.period_s = self.twin.control_period_s
        self.sim_time_ns = 0  # /clock: advances with the twin, never jumps back on reset
        self.rejected = 0
        self.last_rejection: str | None = None
        if p.start_paused:
            self.twin.pause()

        self.status = StatusPublisher(self)
        self.joint_state_pub = self.create_publisher(JointState, p['driver.joint_states_topic'], qos.STATE)
        self.clock_pub = self.create_publisher(Clock, '/clock', qos.STATE) if p.publish_clock else None
        self.poses_pub = self.create_publisher(PoseArray, p.object_poses_topic, qos.STATE)
        self.names_pub = self.create_publisher(String, p.object_names_topic, qos.LATCHED)
        self.success_pub = self.create_publisher(Bool, '~/task_success', qos.STATE)
        self.opening_pub = self.create_publisher(Float64, p.gripper_opening_topic, qos.STATE)
        self.station_pub = (self.create_publisher(String, STATION.name, qos.LATCHED) if p.workcell
                            else None)
        self.scene_pub = self.create_publisher(String, SCENE.name, qos.LATCHED)
        self.create_subscription(Float64MultiArray, p['driver.command_topic'], self.on_command, qos.COMMAND)
        self.create_subscription(Float64, p['driver.gripper_topic'], self.on_gripper, qos.COMMAND)
        self.create_service(Trigger, '~/reset', self.on_reset)
        self.create_service(Trigger, '~/reset_home', self.on_reset_home)
        self.create_service(SetBool, '~/set_pause', self.on_set_pause)
        self.create_service(Trigger, '~/step', self.on_step)
        self._poses_every = max(1, round(p.control_rate_hz / p.object_poses_rate_hz))
        self._cycle = 0
        self._rate_mark: tuple[int, int] | None = None
        self._names: list[str] = []
        self.publish_scene()
        self.publish_state(with_poses=True)
        self.publish_station()
        self.state_log = None
        if p.state_log:
            from legion_kuka.state_log import StateRecorder

            self.state_log = StateRecorder(every=max(1, round(p.control_rate_hz / p.state_log_rate_hz)))
            self._begin_state_segment()
            for name, topic in NOTED_TOPICS.items():
                self.create_subscription(String, topic.name, lambda m, name=name: self.on_noted(name, m),
                                         qos.LATCHED if name == 'active_step' else qos.STATE)
        self.timer = self.create_timer(self.period_s, self.on_timer)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.report('ready')
        self.get_logger().info(
            f'twin of {p.task} (seed {p.seed}) as driver {p["driver.name"]}: '
            f'{p["driver.joint_states_topic"]} <- {p["driver.command_topic"]} at {1 / self.period_s:.0f} Hz'
            + (' (paused)' if self.twin.paused else ''))

    def _start_inside(self) -> None:
        """After a reset to a task's initial state: jog the arm inside the safety limits if needed."""
        if start_inside_limits(self.twin, self._jog_limits):
            q = self.twin.joint_state().position
            self.get_logger().info(
                f'{self.twin.task} starts the arm outside the joint limits less '
                f'{self.params.start_inside_margin_deg:g} deg: starting from the nearest posture inside '
                f'them instead (deg: {", ".join(f"{math.degrees(v):.1f}" for v in q)})')

    def publish_scene(self) -> None:
        """The arm was placed at a scene's start (``interfaces.SCENE``): announced before the joint
        states that show the jump, so that sim2real expects it."""
        posture = self.twin.joint_state().position
        self.scene_pub.publish(String(data=SCENE.encode(Scene(task=self.twin.task, seed=int(self.twin.seed),
                                                              posture=posture.tolist()))))

    def publish_station(self) -> None:
        """Workcell: the active station, latched, for real2sim and sim2real (``interfaces.STATION``)."""
        if self.station_pub is not None:
            self.station_pub.publish(String(data=STATION.encode(station_description(self.twin, self.limits))))

    # -- status -----------------------------------------------------------------------------------
    def report(self, event: str, **fields) -> None:
        self.status.publish('paused' if self.twin.paused else 'running', event=event, task=self.twin.task,
                            seed=self.twin.seed, sim_time_s=self.sim_time_ns * 1e-9,
                            rejected_commands=self.rejected, last_rejection=self.last_rejection, **fields)

    # -- stepping ---------------------------------------------------------------------------------
    def on_timer(self) -> None:
        if self.twin.tick():
            self.sim_time_ns += round(self.period_s * 1e9)
            self._record_state()
        self._cycle += 1
        self.publish_state(with_poses=self._cycle % self._poses_every == 0)
        if self._cycle % REPORT_EVERY == 0:
            self.report_rate()

    # -- state log --------------------------------------------------------------------------------
    def _record_state(self) -> None:
        # Every `every`-th cycle of simulated time, so that the log's rate holds however the twin is paced.
        if self.state_log is not None and self.state_log.due(round(self.sim_time_ns * 1e-9 / self.period_s)):
            self.state_log.record(self.sim_time_ns * 1e-9, self.twin.scene_state())

    def _begin_state_segment(self) -> None:
        from legion_kuka.state_log import Scene

        self.state_log.begin(Scene.of(self.twin), self.twin.model.nq)
        self._record_state()

    def on_noted(self, name: str, message: String) -> None:
        if len(message.data) > MAX_NOTE_BYTES:  # a step is a few hundred bytes; nothing else is shown
            return
        try:
            data = NOTED_TOPICS[name].decode(message.data)
        except BadMessageError:
            data = message.data  # kept as it came: the video shows no step for it
        self.state_log.note(self.sim_time_ns * 1e-9, name, data)

    def save_state_log(self) -> None:
        """Write the state log (atomically); a failure is logged, never raised: the twin goes on."""
        if self.state_log is None:
            return
        from legion_kuka.state_log import save_state_log

        try:
            path = save_state_log(self.params.state_log, self.state_log.snapshot())
        except Exception as error:  # a full disk or a bad path must not stop the twin
            self.get_logger().error(f'cannot write the state log {self.params.state_log}: '
                                    f'{type(error).__name__}: {error}')
            return
        self.get_logger().info(f'state log: {self.state_log.rows} states in {path}')

    def close(self) -> None:
        self.save_state_log()

    def report_rate(self) -> None:
        """Status with the real-time factor: below 1 the machine cannot step the twin at the controller
        rate, and everything downstream sees a slow arm."""
        wall_ns = time.monotonic_ns()
        sim_ns = self.sim_time_ns
        if self._rate_mark is not None and wall_ns > self._rate_mark[0]:
            factor = (sim_ns - self._rate_mark[1]) / (wall_ns - self._rate_mark[0])
            self.report('tick', real_time_factor=round(factor, 3))
        self._rate_mark = (wall_ns, sim_ns)

    def publish_state(self, with_poses: bool) -> None:
        stamp = self._stamp()
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=stamp if self.params.sim_time_stamps else self._sim_stamp()))
        state = self.twin.joint_state()
        message = JointState(name=self.joint_names, position=state.position.tolist(),
                             velocity=state.velocity.tolist(), effort=state.effort.tolist())
        message.header.stamp = stamp
        self.joint_state_pub.publish(message)
        self.opening_pub.publish(Float64(data=self.twin.gripper_opening()))
        if with_poses:
            self.publish_objects(stamp)

    def publish_objects(self, stamp) -> None:
        poses = self.twin.object_poses()
        names = [*poses, 'goal']
        array = PoseArray()
        array.header.stamp = stamp
        array.header.frame_id = self.params['driver.base_frame']
        for name in names:
            if name == 'goal':
                position, quat_wxyz = self.twin.goal_position(), (1.0, 0.0, 0.0, 0.0)
            else:
                position, quat_wxyz = poses[name]
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
            w, x, y, z = (float(v) for v in quat_wxyz)
            pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = x, y, z, w
            array.poses.append(pose)
        if names != self._names:
            self._names = names
            self.names_pub.publish(String(data=OBJECT_NAMES.encode(names)))
        self.poses_pub.publish(array)
        self.success_pub.publish(Bool(data=self.twin.task_success()))

    def _sim_stamp(self):
        from builtin_interfaces.msg import Time
        return Time(sec=self.sim_time_ns // 1_000_000_000, nanosec=self.sim_time_ns % 1_000_000_000)

    def _stamp(self):
        if self.clock_pub is None or not self.params.sim_time_stamps:
            return self.get_clock().now().to_msg()
        return self._sim_stamp()

    # -- commands ---------------------------------------------------------------------------------
    def reject(self, what: str, reason: str) -> None:
        self.rejected += 1
        self.last_rejection = f'{what}: {reason}'
        self.get_logger().warning(f'rejected {what} ({reason}); holding the previous target')
        self.report('rejected_command')

    def on_command(self, message: Float64MultiArray) -> None:
        values = list(message.data)
        problem = command_problem(values)
        if problem is not None:
            self.reject('joint command', problem)
            return
        self.twin.set_joint_targets(values)

    def on_gripper(self, message: Float64) -> None:
        if not math.isfinite(message.data):
            self.reject('gripper command', f'non-finite value {message.data}')
            return
        self.twin.set_gripper(message.data)

    # -- services ---------------------------------------------------------------------------------
    def _reset(self, response, keyframe: str | None):
        self.twin.reset(keyframe=keyframe)
        if keyframe is None:
            self._start_inside()
        # A reset also re-asserts the latched descriptions: one a hostile publisher replaced on
        # object_names_topic or /legion/station would otherwise stand until the scene changes.
        self._names = []
        self.publish_scene()
        self.publish_state(with_poses=True)
        self.publish_station()
        response.success = True
        response.message = f'reset {self.twin.task} seed {self.twin.seed}' + (
            f' to {keyframe}' if keyframe else '')
        self.report('reset', keyframe=keyframe)
        return response

    def on_reset(self, _request, response):
        return self._reset(response, None)

    def on_reset_home(self, _request, response):
        return self._reset(response, 'home')

    def on_set_parameters(self, parameters) -> SetParametersResult:
        """A new ``task`` or ``seed`` loads that scene (its initial state), or is refused with why."""
        changes = {p.name: p.value for p in parameters if p.name in ('task', 'seed')}
        if not changes:
            return SetParametersResult(successful=True)
        task, seed = changes.get('task', self.twin.task), changes.get('seed', self.twin.seed)
        if self.params.workcell and seed == self.twin.seed:
            # Another station of the same workcell: nothing moves, the arm goes there by transit.
            try:
                self.twin.select(task)
            except ValueError as error:
                return SetParametersResult(successful=False, reason=str(error))
            self.publish_state(with_poses=True)
            self.publish_station()
            self.report('station')
            self.get_logger().info(f'station {task} active')
            return SetParametersResult(successful=True)
        try:
            self.twin.reset(task=task, seed=seed)
        except Exception as error:  # unknown task, scene that does not build: keep the current one
            reason = f'cannot load {task!r} seed {seed}: {type(error).__name__}: {error}'
            self.get_logger().warning(reason)
            return SetParametersResult(successful=False, reason=reason)
        self._start_inside()
        if self.state_log is not None:
            self._begin_state_segment()
            self.save_state_log()  # what the scene before recorded is safe on disk
        self.publish_scene()
        self.publish_state(with_poses=True)
        self.publish_station()
        self.report('scene')
        self.get_logger().info(f'scene {task} (seed {seed}) loaded')
        return SetParametersResult(successful=True)

    def on_set_pause(self, request, response):
        if request.data:
            self.twin.pause()
        else:
            self.twin.resume()
        response.success = True
        response.message = 'paused' if request.data else 'running'
        self.report('pause' if request.data else 'resume')
        return response

    def on_step(self, _request, response):
        if not self.twin.paused:
            response.success = False
            response.message = 'not paused: ~/step advances one cycle only while paused (~/set_pause true)'
            return response
        self.twin.step(1)
        self.sim_time_ns += round(self.period_s * 1e9)
        self.publish_state(with_poses=True)
        response.success = True
        response.message = f'stepped to {self.sim_time_ns * 1e-9:.3f} s'
        return response


def main(args: list[str] | None = None) -> int:
    return run_node(SimBridge, args)


if __name__ == '__main__':
    sys.exit(main())
