"""The MuJoCo twin of the real arm: a Meta-World task scene with the iiwa moved only through its joints.

What a real KUKA setup offers, the twin offers with the same shapes: joint position targets at the
controller rate (the drivers' ``forward_position_controller``, 100 Hz by default), a gripper command,
``JointState`` with the driver profile's joint names, and (instead of perception) ground-truth object
poses in the robot base frame. On top of that it offers what only a simulator can: reset to a task's
initial state for a seed, pause / single-step, simulated time, and Meta-World's own success criterion.

How it is built (design):

- The scene is the embodiment's Meta-World task env (:func:`legion_kuka.metaworld_kuka.make_kuka_env`):
  the same table, objects, goal variants and ``evaluate_state`` as training. Meta-World drives the
  hand with a mocap weld; the twin switches that weld off after every reset, so nothing but the
  joints moves the arm.
- The arm is position controlled like the KUKA's joint position control: a new target is approached
  by a reference that ramps to it over one control cycle (the controller interpolates between
  setpoints, as the KUKA's does between FRI cycles), never faster than the joint velocity limits
  (a far target is slewed to over several cycles). Every physics step a computed-torque servo
  ``M(q) (ω² (q_ref - q) + 2 ζ ω (v_ref - q̇)) + c(q, q̇)`` makes each joint a critically damped
  second-order system of bandwidth ω, decoupled from the others. ``M`` is the mass matrix with the
  motors' reflected inertia, ``c`` the Coriolis and gravity torques that MuJoCo's ``gravcomp`` does
  not already cancel; the torque is clipped to the iiwa's limits. A control cycle spans
  ``control_period_s / timestep`` physics steps (4 at 100 Hz).
- The gripper takes a target opening, speed and grip force (:mod:`legion_kuka.gripper`): each finger
  is a position servo whose reference moves towards the target at the commanded speed and whose force
  is limited to the commanded grip force, so an object that stops the fingers is squeezed with it.
  ``set_gripper(value)`` maps the driver topic's single float (a position: sim2real sends where
  Meta-World's finger would be) through :func:`legion_kuka.gripper.command_from_effort`.
- Reset: Meta-World's own ``reset()`` places objects and goal (with the weld on, as in training), then
  the weld is switched off and the servo targets are set to where the arm is.
- Observation and success: :meth:`Twin.metaworld_observation` is the env's own 39-d observation
  function on the twin's state (so it is exactly what training saw for this state), and
  :meth:`Twin.task_success` hands it to the env's ``evaluate_state``.

This twin holds one task scene; :class:`legion_kuka.workcell.WorkcellTwin` holds several task stations
around the arm in one scene, with the same interface (``task`` arguments name a station).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from legion_kuka.description import GRIPPER
from legion_kuka.frames import Frame, _finite_vector, quat_to_matrix
from legion_kuka.gripper import GripperCommand, command_from_effort, effort_of
from legion_kuka.real2sim import quat_from_metaworld

ARM_DOF = 7


@dataclass(frozen=True)
class JointState:
    """The arm's joint state as a driver publishes it (``sensor_msgs/JointState`` fields)."""

    names: list[str]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray  # joint torque the servo applies (N m)
    stamp_s: float  # simulated time


def metaworld_task_env(env: Any, task: str) -> Any:
    """The Meta-World task env inside ``env`` (wrappers removed), checked for what the twin reads."""
    mw = getattr(env, 'unwrapped', env)
    for attr in ('evaluate_state', '_get_curr_obs_combined_no_goal', '_get_pos_objects', 'model'):
        if not hasattr(mw, attr):
            raise TypeError(f'the env for {task!r} is not a Meta-World task env (no {attr})')
    return mw


def _default_env_factory() -> Callable[[str, int], Any]:
    from legion_kuka.metaworld_kuka import make_kuka_env
    return make_kuka_env


#: Iterations of MuJoCo's noslip solver on the twin (0 in Meta-World's scenes), see Twin._adopt.
NOSLIP_ITERATIONS = 10
#: The twin's finger servo (see Twin._adopt): each finger's moving mass (kg, the finger body plus its
#: reflected drive inertia; Meta-World's 100 kg armature made its fingers as slow as its damping) and the
#: servo's natural frequency (Hz, critically damped; stiff enough that a finger stopped 8 mm short of
#: its target pushes with the largest grip force, 235 N).
FINGER_MASS_KG = 0.5
FINGER_BANDWIDTH_HZ = 40.0
#: How fast the finger reference (the opening) gets up to the commanded speed and back to rest (m/s²).
#: Meta-World's fingers reach their speed with a time constant of 0.1 s (armature / damping), which
#: costs them about 1 cm of travel at 0.1 m/s; this acceleration costs the same.
FINGER_ACCELERATION = 0.5
#: The finger actuators of the scene, Meta-World's names and order (ctrl = (a, -a)), and which way each
#: finger's joint closes.
FINGER_ACTUATORS = (('r_close', 1.0), ('l_close', -1.0))


class Twin:
    """The MuJoCo twin of the real arm at one Meta-World task.

    Args:
        task: Meta-World task name (``'reach-v3'``, ...).
        seed: selects the task's goal variant (object and goal placement), as the embodiment does.
        profile: joint-name profile of the driver being mirrored (``'lbr'`` or ``'iiwa_ros2'``).
        control_rate_hz: rate of the joint position controller.
        stiffness: None: stiff position control (below). A number or 7 numbers (N m/rad): joint
            impedance control as the iiwa's ``JointImpedanceControlMode`` offers it, ``K (q_ref - q) +
            D (v_ref - q̇)`` with ``D = 2 ζ sqrt(K M_ii)`` plus the same dynamics compensation: the arm
            yields to contacts like a spring (Meta-World's mocap weld is compliant too), at the cost of
            some tracking lag.
        bandwidth_hz, damping_ratio: the joint servo's natural frequency and damping ratio. 20 Hz,
            critically damped: a step within the velocity limits settles in about 3 control cycles,
            as a stiff KUKA position controller does.
        env_factory: ``factory(task, seed) -> Meta-World env`` of the scene (default: the KUKA tasks).
    """

    def __init__(self, task: str = 'reach-v3', *, seed: int = 0, profile: str = 'lbr',
                 control_rate_hz: float = 100.0, bandwidth_hz: float = 20.0, damping_ratio: float = 1.0,
                 stiffness: Any = None, env_factory: Callable[[str, int], Any] | None = None) -> None:
        from legion_kuka import description

        self.profile = profile
        self.joint_names = description.joint_names(profile)
        if not control_rate_hz > 0:
            raise ValueError(f'control_rate_hz must be positive, got {control_rate_hz}')
        self.control_rate_hz = float(control_rate_hz)
        if not bandwidth_hz > 0 or not damping_ratio > 0:
            raise ValueError('bandwidth_hz and damping_ratio must be positive')
        self._omega, self._zeta = 2.0 * np.pi * float(bandwidth_hz), float(damping_ratio)
        self.stiffness = None
        if stiffness is not None:
            self.stiffness = (np.full(ARM_DOF, float(stiffness)) if np.ndim(stiffness) == 0
                              else _finite_vector(stiffness, ARM_DOF, 'stiffness'))
            if not np.all(np.isfinite(self.stiffness)) or np.any(self.stiffness <= 0):
                raise ValueError(f'stiffness must be positive (N m/rad), got {stiffness}')
        self._armature = description.ARM_ARMATURE
        self._effort_limits = np.asarray(description.IIWA7.effort_limits, dtype=np.float64)
        self._velocity_limits = np.asarray(description.IIWA7.velocity_limits, dtype=np.float64)
        self._factory = env_factory or _default_env_factory()
        self._paused = False
        self.task: str | None = None
        self.seed: int | None = None
        self._env = None
        self.reset(task=task, seed=seed)

    # -- scene -------------------------------------------------------------------------------------
    def _load(self, task: str, seed: int) -> None:
        env = self._factory(task, int(seed))
        mw = metaworld_task_env(env, task)
        self._env, self._mw = env, mw
        self._adopt(mw.model, mw.data, task)
        self.task, self.seed = task, int(seed)

    def _adopt(self, model: Any, data: Any, task: str) -> None:
        """Run ``model`` (the scene: the arm's 7 hinge joints first) as the twin's physics."""
        arm_joints = list(range(ARM_DOF))
        if model.njnt < ARM_DOF or any(model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE for j in arm_joints):
            raise ValueError(f'the scene of {task!r} does not start with the 7 hinge joints of the arm')
        self.model, self.data = model, data
        self._qadr = model.jnt_qposadr[arm_joints].copy()
        self._dadr = model.jnt_dofadr[arm_joints].copy()
        # The real arm's limits are the datasheet's (the training scene keeps its arm inside the safety
        # filter's, see legion_kuka.metaworld_kuka): the filter, not the twin, must keep it from them.
        from legion_kuka.description import IIWA7

        model.jnt_range[arm_joints, 0], model.jnt_range[arm_joints, 1] = IIWA7.lower, IIWA7.upper
        self._lower = model.jnt_range[arm_joints, 0].copy()
        self._upper = model.jnt_range[arm_joints, 1].copy()
        self._welds = [i for i in range(model.neq) if model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD
                       and (model.body_mocapid[model.eq_obj1id[i]] >= 0
                            or model.body_mocapid[model.eq_obj2id[i]] >= 0)]
        # The real arm has no joint springs (the training scene may pull the elbow to a rest posture).
        model.jnt_stiffness[arm_joints] = 0.0
        model.dof_armature[self._dadr] = np.maximum(model.dof_armature[self._dadr], self._armature)
        # The servo supplies all damping (the training scene's passive joint damping would drag).
        model.dof_damping[self._dadr] = 0.0
        # MuJoCo's soft contacts let a stiff arm that presses on an object creep and then slip: pressed
        # onto the open drawer's wall with up to 300 N, the gripper pad held the 0.38 kg drawer still
        # and then shot it closed at 4 m/s within 40 ms (7 of 10 drawer-close episodes of the policy
        # trained here closed it that way). The noslip solver removes the slip: the drawer then moves
        # with the hand (at most 4 mm a policy step) and the same policy pushes it closed in 45-52
        # steps; Meta-World's experts through the chain and the cost of a step are unchanged.
        model.opt.noslip_iterations = max(int(model.opt.noslip_iterations), NOSLIP_ITERATIONS)
        self._adopt_fingers(model)
        self._accel = np.zeros(model.nv)
        self._mass_times = np.zeros(model.nv)
        self._substeps = max(1, round(1.0 / (self.control_rate_hz * model.opt.timestep)))
        self.control_period_s = self._substeps * model.opt.timestep
        # Robot base: the parent of the body that carries joint A1; its world pose is the task frame's
        # inverse (object poses are reported in the base frame, like perception on the real arm).
        self._base_body = int(model.body_parentid[model.jnt_bodyid[0]])
        self.hand_offset = self._hand_offset(model)

    def _adopt_fingers(self, model: Any) -> None:
        """Make the scene's finger actuators (Meta-World's position servos, kp 400 N/m towards a far
        target through heavy damping, whose force grew with their speed) the gripper of
        :mod:`legion_kuka.gripper`: light fingers, a stiff critically damped servo per finger, its force
        limited to the command's grip force. A scene without them has no gripper."""
        names = [model.actuator(i).name for i in range(model.nu)]
        if not all(name in names for name, _ in FINGER_ACTUATORS):
            self._finger_act = None
            return
        self._finger_act = [names.index(name) for name, _ in FINGER_ACTUATORS]
        self._finger_sign = [sign for _, sign in FINGER_ACTUATORS]
        joints = model.actuator_trnid[self._finger_act, 0]
        self._finger_qadr = model.jnt_qposadr[joints].copy()
        dofs = model.jnt_dofadr[joints]
        bodies = model.jnt_bodyid[joints]
        model.dof_armature[dofs] = np.maximum(FINGER_MASS_KG - model.body_subtreemass[bodies], 0.0)
        omega = 2.0 * np.pi * FINGER_BANDWIDTH_HZ
        kp, kv = FINGER_MASS_KG * omega ** 2, 2.0 * FINGER_MASS_KG * omega
        self._finger_gains = (kp, kv)
        # The servo's damping as joint damping, which MuJoCo's Euler integrator treats implicitly (stable
        # at this stiffness); it acts only while a finger moves, so a held grip's force is the actuator's.
        model.dof_damping[dofs] = kv
        act = self._finger_act
        model.actuator_gainprm[act, 0] = kp
        model.actuator_biasprm[act, :3] = (0.0, -kp, 0.0)
        model.actuator_forcelimited[act] = 1
        model.actuator_ctrllimited[act] = 0

    @staticmethod
    def _hand_offset(model: Any) -> float:
        """Flange -> Meta-World's ``hand`` point along the tool axis (what the observation calls hand)."""
        scratch = mujoco.MjData(model)
        mujoco.mj_kinematics(model, scratch)
        try:
            flange, hand = scratch.site('flange'), scratch.body('hand')
        except KeyError as error:
            raise ValueError(f"the scene has no 'flange' site or 'hand' body: {error}") from None
        return float(np.dot(hand.xpos - flange.xpos, flange.xmat.reshape(3, 3)[:, 2]))

    def hand_kinematics(self) -> Any:
        """iiwa kinematics to the point Meta-World's observation calls the hand (the ``hand`` body of
        the task scene, ``hand_offset`` beyond the flange): what real2sim and sim2real must use so that
        a policy sees and moves the same point as in training."""
        from legion_kuka.kinematics import IiwaKinematics

        return IiwaKinematics(tool='tcp', tcp_offset=self.hand_offset)

    @property
    def env(self) -> Any:
        """The Meta-World env whose scene the twin runs (for rendering; do not step it)."""
        return self._env

    @property
    def hand_low(self) -> np.ndarray:
        """The task's hand box (Meta-World's mocap_low/high), task frame."""
        return np.asarray(self._mw.mocap_low, dtype=np.float64).copy()

    @property
    def hand_high(self) -> np.ndarray:
        return np.asarray(self._mw.mocap_high, dtype=np.float64).copy()

    def station_frame(self, task: str | None = None) -> Frame:
        """Pose of ``task``'s frame (its Meta-World world frame) in the robot base frame."""
        self._check_task(task)
        mujoco.mj_kinematics(self.model, self.data)
        return self._task_base_frame(task).inverse()

    def _check_task(self, task: str | None) -> None:
        if task is not None and task != self.task:
            raise ValueError(f'this twin holds {self.task!r}, not {task!r}; reset(task={task!r}) switches')

    # -- reset -------------------------------------------------------------------------------------
    def reset(self, task: str | None = None, seed: int | None = None, keyframe: str | None = None,
              posture: Any = None) -> None:
        """Reset to the task's initial state for ``seed`` (objects, goal and hand as Meta-World places
        them); ``keyframe='home'`` then puts the arm at :data:`~legion_kuka.description.HOME`, or
        ``posture`` (7 joint angles) anywhere else, as if an operator had jogged it there."""
        task = self.task if task is None else task
        seed = (0 if self.seed is None else self.seed) if seed is None else int(seed)
        if keyframe not in (None, 'home'):
            raise ValueError(f"unknown keyframe {keyframe!r}; the twin knows 'home'")
        if task is None:
            raise ValueError('a task is needed for the first reset')
        self._gripper = -1.0
        self._reset_scene(task, seed)
        self._set_gripper_command(command_from_effort(self._gripper))
        if keyframe == 'home':
            from legion_kuka.description import HOME
            self.data.qpos[self._qadr] = HOME
        if posture is not None:
            if keyframe is not None:
                raise ValueError('give a keyframe or a posture, not both')
            self.data.qpos[self._qadr] = np.clip(_finite_vector(posture, ARM_DOF, 'posture'),
                                                 self._lower, self._upper)
        self.data.qvel[self._dadr] = 0.0
        self._target = self.data.qpos[self._qadr].copy()
        self._reference = self._target.copy()
        self.data.qfrc_applied[self._dadr] = 0.0
        self._finger_reference = self._finger_opening()
        self._finger_rate = 0.0
        mujoco.mj_forward(self.model, self.data)
        self._time0 = float(self.data.time)
        self._previous_frame = None
        self._stale = False
        self._last_action = np.array([0.0, 0.0, 0.0, self._gripper])

    def _reset_scene(self, task: str, seed: int) -> None:
        """Objects, goal and arm at the task's initial state for ``seed`` (Meta-World's reset)."""
        if self._env is None or task != self.task or seed != self.seed:
            self._load(task, seed)
        self.data.eq_active[self._welds] = 1  # Meta-World's reset places the hand with the mocap weld
        self._env.reset()
        self.data.eq_active[self._welds] = 0  # from here on only the joints move the arm

    # -- commands ----------------------------------------------------------------------------------
    def set_joint_targets(self, q: Any) -> np.ndarray:
        """Command joint positions (A1..A7, rad), held until the next command; clamped to the joint
        range like the driver's command limits. Returns the target actually held."""
        target = np.clip(_finite_vector(q, ARM_DOF, 'joint targets'), self._lower, self._upper)
        self._target = target
        return self._target.copy()

    def set_gripper(self, command: float) -> None:
        """Gripper command in [-1, 1]: -1 fully open, +1 closed (Meta-World's 4th action, the driver
        topic's float), mapped by :func:`legion_kuka.gripper.command_from_effort`."""
        value = float(_finite_vector([command], 1, 'gripper command')[0])
        self._gripper = float(np.clip(value, -1.0, 1.0))
        self._set_gripper_command(command_from_effort(self._gripper))
        self._last_action[3] = self._gripper

    def _set_gripper_command(self, command: GripperCommand) -> None:
        self._gripper_command = command
        if self._finger_act is not None:  # the grip force: the finger servos' force limit
            self.model.actuator_forcerange[self._finger_act] = (-command.force_n, command.force_n)

    def set_gripper_command(self, command: GripperCommand) -> None:
        """Target opening, speed and grip force (:class:`legion_kuka.gripper.GripperCommand`)."""
        if not isinstance(command, GripperCommand):
            raise TypeError(f'expected a GripperCommand, got {type(command).__name__}')
        self._set_gripper_command(command)
        self._gripper = effort_of(command)
        self._last_action[3] = self._gripper

    @property
    def gripper_command(self) -> GripperCommand:
        """The gripper command being executed."""
        return self._gripper_command

    @property
    def joint_limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) joint position limits of the model (rad)."""
        return self._lower.copy(), self._upper.copy()

    @property
    def joint_targets(self) -> np.ndarray:
        return self._target.copy()

    # -- time --------------------------------------------------------------------------------------
    @property
    def time_s(self) -> float:
        """Simulated time since the last reset."""
        return float(self.data.time) - self._time0

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def tick(self) -> bool:
        """One control cycle if running (what a real-time loop calls at the controller rate)."""
        if self._paused:
            return False
        self._advance(1)
        return True

    def step(self, n: int = 1) -> None:
        """Advance ``n`` control cycles, paused or not (single-stepping while paused)."""
        if int(n) != n or n < 0:
            raise ValueError(f'n must be a non-negative whole number of control cycles, got {n}')
        self._advance(int(n))

    def run(self, duration_s: float, realtime: bool = False) -> int:
        """Tick for ``duration_s`` of simulated time (paced to the wall clock if ``realtime``);
        returns the cycles advanced (0 while paused)."""
        cycles = round(duration_s / self.control_period_s)
        start = time.monotonic()
        done = 0
        for k in range(cycles):
            if realtime:
                time.sleep(max(0.0, start + k * self.control_period_s - time.monotonic()))
            done += self.tick()
        return done

    def _finger_opening(self) -> float:
        """Distance between the pads (m) from the finger joints (0 without fingers)."""
        if self._finger_act is None:
            return 0.0
        closing = sum(sign * self.data.qpos[adr] for adr, sign in zip(self._finger_qadr, self._finger_sign,
                                                                        strict=True))
        return float(GRIPPER.max_opening - closing)

    def _gripper_substep(self, dt: float) -> None:
        """Move the finger reference one physics step towards the commanded opening at the commanded
        speed; each finger's servo tracks it with at most the commanded force."""
        if self._finger_act is None:
            return
        command = self._gripper_command
        step = command.opening_m - self._finger_reference
        if step == 0.0 and self._finger_rate == 0.0:
            return  # at rest at the target: the controls stand
        # A trapezoidal profile: up to the commanded speed, braking in time to stop at the target.
        wanted = math.copysign(min(command.speed_m_s, math.sqrt(2.0 * FINGER_ACCELERATION * abs(step)),
                                   abs(step) / dt), step)
        change = FINGER_ACCELERATION * dt
        rate = min(max(wanted, self._finger_rate - change), self._finger_rate + change)
        if abs(rate * dt) >= abs(step):  # arrive, not overshoot
            rate = step / dt
            self._finger_reference, self._finger_rate = command.opening_m, 0.0
        else:
            self._finger_reference += rate * dt
            self._finger_rate = rate
        kp, kv = self._finger_gains
        # Per finger: closing = (max_opening - opening) / 2, velocity -rate / 2; the control is the
        # reference plus kv/kp times its velocity, so the servo tracks the moving reference without lag.
        closing = (GRIPPER.max_opening - self._finger_reference) / 2.0 - kv / kp * rate / 2.0
        ctrl = self.data.ctrl
        for act, sign in zip(self._finger_act, self._finger_sign, strict=True):
            ctrl[act] = sign * closing

    def _advance(self, cycles: int) -> None:
        model, data = self.model, self.data
        dadr, qadr = self._dadr, self._qadr
        n = self._substeps
        kp, kv = self._omega ** 2, 2.0 * self._zeta * self._omega
        stiffness = self.stiffness
        accel, mass_times = self._accel, self._mass_times
        dt = model.opt.timestep
        for _ in range(cycles):
            velocity = np.clip((self._target - self._reference) / self.control_period_s,
                               -self._velocity_limits, self._velocity_limits)
            start = self._reference
            for i in range(1, n + 1):
                reference = start + velocity * (i * dt)
                self._gripper_substep(dt)
                mujoco.mj_step1(model, data)  # mass matrix and bias forces of this state
                error, rate = reference - data.qpos[qadr], velocity - data.qvel[dadr]
                if stiffness is None:
                    accel[dadr] = kp * error + kv * rate
                    mujoco.mj_mulM(model, data, mass_times, accel)
                    torque = mass_times[dadr]
                else:
                    inertia = data.qM[model.dof_Madr[dadr]]
                    torque = stiffness * error + 2.0 * self._zeta * np.sqrt(stiffness * inertia) * rate
                torque = torque + data.qfrc_bias[dadr] - data.qfrc_gravcomp[dadr]
                data.qfrc_applied[dadr] = np.clip(torque, -self._effort_limits, self._effort_limits)
                mujoco.mj_step2(model, data)
            # Reached (or, slewing at the velocity limit, on its way to) the target.
            self._reference = reference
        self._stale = True

    def _refresh(self) -> None:
        """Bring derived quantities (contacts, sites) up to date with the state, as Meta-World's step
        does before it reads an observation."""
        if self._stale:
            mujoco.mj_forward(self.model, self.data)
            for site in self._mw._target_site_config:
                self._mw._set_pos_site(*site)
            self._stale = False

    # -- state -------------------------------------------------------------------------------------
    def joint_state(self) -> JointState:
        dadr = self._dadr
        return JointState(names=list(self.joint_names), position=self.data.qpos[self._qadr].copy(),
                          velocity=self.data.qvel[dadr].copy(),
                          effort=self.data.qfrc_applied[dadr].copy(),
                          stamp_s=self.time_s)

    def scene_state(self) -> np.ndarray:
        """Every joint position of the scene (MuJoCo's qpos: arm, fingers, objects), a copy: with the
        scene's identity, all it takes to draw this moment again (:mod:`legion_kuka.state_log`)."""
        return self.data.qpos.copy()

    def show_state(self, qpos: Any) -> None:
        """Put the scene at a recorded :meth:`scene_state`, at rest, with everything derived from it up
        to date (bodies, sites, the active station's view): for drawing, not for stepping on from."""
        qpos = np.asarray(qpos, dtype=np.float64)
        if qpos.shape != (self.model.nq,):
            raise ValueError(f'expected {self.model.nq} joint positions for this scene, got shape '
                             f'{qpos.shape}')
        self.data.qpos[:] = qpos
        self.data.qvel[:] = 0.0
        self._stale = True
        self._refresh()

    def gripper_opening(self) -> float:
        """Meta-World's normalised finger distance in [0, 1] (the 4th observation value)."""
        self._refresh()
        return float(self._mw._get_curr_obs_combined_no_goal()[3])

    def _base_frame(self) -> Frame:
        """The robot base in the simulation's world frame."""
        return Frame(self.data.xmat[self._base_body].reshape(3, 3).copy(),
                     self.data.xpos[self._base_body].copy())

    def _task_base_frame(self, task: str | None = None) -> Frame:
        """The robot base in ``task``'s frame (its Meta-World world frame), where the env's observation
        and goal live. One task scene: that is the simulation's world frame."""
        return self._base_frame()

    def object_poses(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Ground truth of the objects Meta-World's observation tracks for this task, robot base frame:
        ``{'object_1': (pos[3], quat wxyz[4]), 'object_2': ...}`` (articulated objects, whose
        observation carries no orientation, report a zero quaternion as Meta-World does)."""
        self._refresh()
        current = self._mw._get_curr_obs_combined_no_goal()
        to_base = self._task_base_frame().inverse()
        count = len(self._mw._get_pos_objects()) // 3
        poses = {}
        for i in range(min(count, 2)):
            pos = current[4 + 7 * i:7 + 7 * i]
            quat = current[7 + 7 * i:11 + 7 * i]
            poses[f'object_{i + 1}'] = (to_base.apply(pos),
                                        to_base.rotate_quat(quat_from_metaworld(self.task, quat))
                                        if np.linalg.norm(quat) > 1e-9 else np.zeros(4))
        return poses

    def hand_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Meta-World's hand body: position and rotation matrix in the robot base frame."""
        self._refresh()
        to_base = self._base_frame().inverse()
        hand = self.data.body('hand')
        return to_base.apply(hand.xpos.copy()), to_base.rotation @ hand.xmat.reshape(3, 3)

    def metaworld_hand_target(self) -> tuple[np.ndarray, np.ndarray]:
        """Where Meta-World's reset wanted the hand (its mocap pose), base frame: (pos, rotation)."""
        to_base = self._task_base_frame().inverse()
        model, data = self._mw.model, self._mw.data
        mocap = int(model.body_mocapid[model.body('mocap').id])
        return (to_base.apply(data.mocap_pos[mocap].copy()),
                to_base.rotation @ quat_to_matrix(data.mocap_quat[mocap]))

    def goal_position(self) -> np.ndarray:
        """The task's goal in the robot base frame."""
        self._refresh()
        return self._task_base_frame().inverse().apply(np.asarray(self._mw._get_pos_goal(), dtype=np.float64))

    def metaworld_observation(self) -> np.ndarray:
        """Meta-World's 39-d observation of the twin's state, task frame, computed by the env's own
        code (goal visible). The previous frame is the one of the previous call since reset."""
        self._refresh()
        current = np.asarray(self._mw._get_curr_obs_combined_no_goal(), dtype=np.float64)
        previous = current if self._previous_frame is None else self._previous_frame
        self._previous_frame = current
        return np.concatenate([current, previous, np.asarray(self._mw._get_pos_goal(), dtype=np.float64)])

    def task_success(self, task: str | None = None) -> bool:
        """Meta-World's success criterion of the task, evaluated on the twin's current state."""
        self._check_task(task)
        self._refresh()
        current = np.asarray(self._mw._get_curr_obs_combined_no_goal(), dtype=np.float64)
        obs = np.concatenate([current, current, np.asarray(self._mw._get_pos_goal(), dtype=np.float64)])
        _, info = self._mw.evaluate_state(obs, self._last_action.astype(np.float32))
        return bool(info['success'])
