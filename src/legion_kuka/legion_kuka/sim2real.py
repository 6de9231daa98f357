"""Sim2Real: a Meta-World policy action, turned into joint position targets for a 100 Hz controller.

A Meta-World action is ``(dx, dy, dz, gripper)`` in [-1, 1]: the hand's mocap target moves by
``action[:3] * 1 cm`` per env step (12.5 ms, so up to 0.8 m/s per axis), clipped to the task's hand box,
with a fixed hand orientation. The real arm must not move that fast, and its driver wants joint
positions at the controller rate. So this translator keeps the *geometry* of a policy step (the same
1 cm per unit action, in the same task frame, inside the same box: the policy sees the consequences it
learnt) and stretches *time*: one policy step lasts ``1 / policy_rate_hz`` (10 Hz → at most 0.1 m/s per
axis). For each policy step it solves IK once for the new hand target (fixed tool orientation,
warm-started from the last joint target) and interpolates linearly in joint space over the control
cycles of the step, either as a list (:meth:`Sim2Real.plan`) or one target per call
(:meth:`Sim2Real.next_target`) for a streaming 100 Hz loop.

The gripper is time-scaled like the arm, by modelling it. Meta-World's fingers are heavy position
servos: under the action they speed up over several env steps and then close at a speed proportional
to it (a small value hardly moves them for the first steps). A policy step lasts 1/speed_scale env
steps' time here, so a gripper sent the action itself would travel that much further per step (closing
before the hand has come down, for instance). ``gripper_command`` is instead where Meta-World's finger
(:class:`legion_kuka.gripper.MetaworldFinger`) would be after one env step of the action, in metres of
closing, from where it was after the previous one: a position the gripper reaches within the step
(:func:`legion_kuka.gripper.command_from_effort`), so the fingers move per policy step as in training.
``reset`` starts the finger open, as Meta-World's reset does, or where the caller says the fingers are.

The tool orientation is fixed (Meta-World's hand never turns), with one exception: a hand position that the
arm cannot reach with the upright tool inside its joint limits is solved again with the tool tilted,
by the smallest of a few angles up to ``max_tool_tilt_rad``, about the horizontal axis across the line
from the base axis to the target (the tilt that moves the wrist further from or closer to the
shoulder, which is what limits the elbow). The iiwa's wrist stands straight above a downward tool, so
with the tool upright the elbow angle A4 is fixed by the hand position alone: no null-space motion
can change it. Near the base (Meta-World's drawer tasks put the hand 0.40 m from the base axis) the
elbow would need more bend than the safety margin allows, and a few degrees of tilt bring it back
inside. The observation has no hand orientation, so the policy sees the same state; the next step
goes back upright as soon as that reaches.

The hand target accumulates like Meta-World's mocap (it is not re-read from the measured hand every
step), but it is kept within ``max_lead_m`` of the measured hand so that a blocked or held arm does
not build up a large jump. The arm is not sent to that target itself: Meta-World's hand trails its mocap
through a weld (1.6 mm after the first full step, then up to 1 cm a step, 2.7 steps behind), and a
policy trained there reads that motion in its observation (the previous frame). So each step sends
the hand where the training env's hand would be after the step, from the measured hand of this and
the previous step and the target (``hand_response='metaworld'``, a linear model fitted to the env);
``'direct'`` sends it to the target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from legion_kuka.frames import Frame, _finite_vector, default_task_frame, quat_to_matrix
from legion_kuka.gripper import METAWORLD_SUBSTEP_S, METAWORLD_SUBSTEPS, MetaworldFinger

METAWORLD_STEP_S = METAWORLD_SUBSTEPS * METAWORLD_SUBSTEP_S  # 12.5 ms: one Meta-World env step
METAWORLD_ACTION_SCALE = 0.01  # metres of hand motion per unit action and env step
# SawyerXYZEnv's default hand box (hand_low/hand_high, which mocap_low/high default to), task frame.
METAWORLD_HAND_LOW = (-0.2, 0.55, 0.05)
METAWORLD_HAND_HIGH = (0.2, 0.75, 0.3)
# How the hand of the Meta-World KUKA env follows its mocap target m through the weld, per env step and
# axis (``hand_response='metaworld'``):
#     x[t+1] = x[t] + a (x[t] - x[t-1]) + b (m[t+1] - x[t]) + c (m[t] - x[t]).
# Fitted by least squares on 1,200 free-space steps of random actions; it predicts the env's next hand
# position to 0.1 mm (median, against 3.5 mm rms motion per step); test_sim2real.py re-measures it.
METAWORLD_HAND_RESPONSE = (0.2591, 0.1578, 0.0631)
# How far the hand target may run ahead of the hand: a target far ahead of a blocked hand is a force
# the arm's torque limits do not allow. The training scene keeps its mocap within it too.
MAX_LEAD_M = 0.05
HAND_RESPONSES = ('metaworld', 'direct')


@dataclass(frozen=True)
class PolicyStepPlan:
    """What one policy step becomes: joint targets for its control cycles and the gripper command."""

    targets: np.ndarray  # (cycles, 7) joint position targets, one per control cycle, in order
    hand_target: np.ndarray  # the policy's hand target (Meta-World's mocap) in the task frame, clipped
    hand_target_base: np.ndarray  # where the step sends the hand, robot base frame
    gripper: float  # the policy's gripper action in [-1, 1] (-1 open, +1 close, Meta-World's convention)
    gripper_command: float  # what the gripper gets: Meta-World's finger closing (m) after the step (module)
    ik_success: bool  # False: no posture within the IK tolerance (the arm goes as close as it can)
    ik_position_error: float  # metres
    clipped: bool  # the hand target was clipped to the hand box or to max_lead_m
    start_s: float  # time of the first cycle of this step
    control_period_s: float
    tool_tilt_rad: float = 0.0  # how far the step's posture tilts the tool from its fixed orientation
    arm_target: np.ndarray | None = None  # the same point in the task frame (see hand_response)


def _clip3(point: list[float], low: list[float], high: list[float]) -> list[float]:
    return [lo if v < lo else hi if v > hi else v for v, lo, hi in zip(point, low, high, strict=True)]


def station_yaw(task_frame: Any) -> float:
    """How far (rad) a task frame is turned about the base's vertical axis from the single-task
    station's (:func:`~legion_kuka.frames.default_task_frame`): a workcell station's yaw."""
    turn = Frame.of(task_frame).rotation @ default_task_frame().rotation.T
    return math.atan2(float(turn[1, 0]), float(turn[0, 0]))


class Sim2Real:
    """Translates policy actions into joint position targets at the controller rate.

    Args:
        kinematics: ``fk(q) -> (pos, rot)`` and ``ik(target_pos, q_init, target_rot=None) ->
            IKResult(q, success, position_error, iterations)`` of the tool centre point, robot base
            frame (:class:`legion_kuka.kinematics.IiwaKinematics`); the tool tilt (below) also passes
            ``restarts=0`` to ``ik``.
        task_frame: pose of the task frame in the robot base frame (see :mod:`legion_kuka.frames`);
            None: the single-task placement ``METAWORLD_BASE_POSE``.
        speed_scale: real speed / Meta-World speed; sets ``policy_rate_hz = 80 Hz * speed_scale``.
            Give either this or ``policy_rate_hz``.
        control_rate_hz: rate of the joint position controller (lbr/kroshu: 100 Hz).
        policy_rate_hz: policy steps per second (default 10 Hz → 0.1 m/s per axis at most).
        hand_low, hand_high: the task's hand box in the task frame (Meta-World's mocap_low/high).
        action_scale: metres per unit action per step (Meta-World: 0.01).
        tool_rotation: fixed tool orientation (3x3, base frame); None: taken from the joints at reset.
        max_lead_m: how far the hand target may run ahead of the measured hand.
        ik_tolerance_m, ik_tolerance_rad: an IK solution this close to the hand target (position and
            tool orientation) counts as reached. Beyond the arm's reach the closest posture IK finds
            is used if it brings the hand closer (Meta-World's hand lags its mocap target there
            too); otherwise the arm holds.
        max_tool_tilt_rad: the largest tool tilt used to reach a hand position the upright tool cannot
            reach within the joint limits (see the module); 0: the tool never tilts.
        tilt_step_rad: the tilts tried are the multiples of this up to ``max_tool_tilt_rad``.
        hand_response: how the hand follows the hand target within a step. ``'metaworld'``: as the
            hand of the Meta-World KUKA env follows its mocap through the weld
            (``METAWORLD_HAND_RESPONSE``, from the measured hand of this and the previous step), so
            that the policy sees the motion it learnt on; ``'direct'``: the hand reaches the target
            within the step.
    """

    def __init__(self, kinematics: Any, task_frame: Any = None, speed_scale: float | None = None,
                 control_rate_hz: float = 100.0, policy_rate_hz: float | None = None,
                 hand_low: Any = METAWORLD_HAND_LOW, hand_high: Any = METAWORLD_HAND_HIGH,
                 action_scale: float = METAWORLD_ACTION_SCALE, tool_rotation: Any = None,
                 max_lead_m: float = MAX_LEAD_M, ik_tolerance_m: float = 0.005,
                 ik_tolerance_rad: float = 0.05, max_tool_tilt_rad: float = math.radians(10.0),
                 tilt_step_rad: float = math.radians(2.0), hand_response: str = 'metaworld') -> None:
        for name in ('fk', 'ik'):
            if not callable(getattr(kinematics, name, None)):
                raise TypeError(f'kinematics must provide {name}()')
        if speed_scale is not None and policy_rate_hz is not None:
            raise ValueError('give speed_scale or policy_rate_hz, not both (one determines the other)')
        if speed_scale is not None:
            if not 0 < speed_scale <= 1:
                raise ValueError(f'speed_scale must be in (0, 1] (1 = Meta-World speed), got {speed_scale}')
            policy_rate_hz = speed_scale / METAWORLD_STEP_S
        if policy_rate_hz is None:
            policy_rate_hz = 10.0
        if not control_rate_hz > 0 or not policy_rate_hz > 0:
            raise ValueError('control_rate_hz and policy_rate_hz must be positive')
        ratio = control_rate_hz / policy_rate_hz
        if ratio < 1 - 1e-9 or abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(f'control_rate_hz / policy_rate_hz must be a whole number >= 1 (got '
                             f'{control_rate_hz} / {policy_rate_hz} = {ratio:.4g}): each policy step must '
                             'span whole control cycles')
        low = _finite_vector(hand_low, 3, 'hand_low')
        high = _finite_vector(hand_high, 3, 'hand_high')
        if np.any(low > high):
            raise ValueError(f'hand_low {low} must be <= hand_high {high}')
        if not action_scale > 0 or not max_lead_m > 0 or not ik_tolerance_m > 0 or not ik_tolerance_rad > 0:
            raise ValueError('action_scale, max_lead_m and the IK tolerances must be positive')
        if not 0 <= max_tool_tilt_rad < math.pi / 4 or not tilt_step_rad > 0:
            raise ValueError(f'max_tool_tilt_rad must be in [0, pi/4) and tilt_step_rad positive, got '
                             f'{max_tool_tilt_rad} and {tilt_step_rad}')
        if hand_response not in HAND_RESPONSES:
            raise ValueError(f'hand_response must be one of {HAND_RESPONSES}, got {hand_response!r}')
        self.hand_response = hand_response
        self.ik_tolerance_m, self.ik_tolerance_rad = float(ik_tolerance_m), float(ik_tolerance_rad)
        count = math.floor(max_tool_tilt_rad / tilt_step_rad + 1e-9)
        tilts = [tilt_step_rad * k for k in range(1, count + 1)]
        if max_tool_tilt_rad > 0 and (not tilts or tilts[-1] < max_tool_tilt_rad - 1e-9):
            tilts.append(max_tool_tilt_rad)
        self.tool_tilts = tuple(float(t) for t in tilts)
        self.kinematics = kinematics
        self.control_rate_hz = float(control_rate_hz)
        self.policy_rate_hz = float(policy_rate_hz)
        self.cycles_per_step = round(ratio)
        # where each control cycle of a step lies on its segment (k / cycles, k = 1..cycles)
        self._fractions = np.arange(1, self.cycles_per_step + 1)[:, None] / self.cycles_per_step
        self.control_period_s = 1.0 / self.control_rate_hz
        self.hand_low, self.hand_high = low, high
        self._hand_box = (low.tolist(), high.tolist())
        self.action_scale = float(action_scale)
        self.max_lead_m = float(max_lead_m)
        self._fixed_rotation = None if tool_rotation is None else Frame(tool_rotation, np.zeros(3)).rotation
        self.tool_rotation: np.ndarray | None = self._fixed_rotation
        self.set_task_frame(task_frame)
        self._hand_target: np.ndarray | None = None
        self._measured_before: list[float] | None = None  # the hand at the previous step (task frame)
        self._last_target: np.ndarray | None = None
        self._plan: PolicyStepPlan | None = None
        self._plan_start_q: np.ndarray | None = None
        self._plan_time = 0.0
        self._finger = MetaworldFinger()

    # -- configuration ------------------------------------------------------------------------------
    @property
    def speed_scale(self) -> float:
        """Real speed over Meta-World speed (same distance per step, longer steps)."""
        return self.policy_rate_hz * METAWORLD_STEP_S

    @property
    def max_axis_speed_m_s(self) -> float:
        """Highest hand speed along one task-frame axis that a policy can command."""
        return self.action_scale * self.policy_rate_hz

    @property
    def policy_period_s(self) -> float:
        return self.cycles_per_step * self.control_period_s

    def set_task_frame(self, task_frame: Any) -> None:
        if task_frame is None:
            task_frame = default_task_frame()
        self.task_frame = Frame.of(task_frame)
        self._base_to_task = self.task_frame.inverse()
        self._hand_target = None
        # The IK's redundancy leans towards a rest posture given for the single-task station: turn it
        # with the station about A1, or at a workcell's side station the elbow swings back towards the
        # front one (joint motions ten times those ahead, for the same hand motion).
        if callable(getattr(self.kinematics, 'turn_rest_posture', None)):
            self.kinematics.turn_rest_posture(station_yaw(self.task_frame))

    # -- state --------------------------------------------------------------------------------------
    def reset(self, joint_positions: Any, now: float = 0.0, gripper_closing: float = 0.0) -> None:
        """Anchor the hand target at the arm's current tool position (start of an episode), the
        modelled finger at rest ``gripper_closing`` metres closed (0: open, as at an episode start)."""
        q = _finite_vector(joint_positions, 7, 'joint_positions')
        self._finger.reset(gripper_closing)
        pos, rot = self.kinematics.fk(q)
        self._hand_target = self._base_to_task.apply(np.asarray(pos, dtype=np.float64).reshape(3))
        self._measured_before = self._hand_target.tolist()  # at rest, as after Meta-World's reset
        self.tool_rotation = (np.asarray(rot, dtype=np.float64).reshape(3, 3)
                              if self._fixed_rotation is None else self._fixed_rotation)
        self._last_target = q.copy()
        self._plan = None
        self._plan_start_q = q.copy()
        self._plan_time = float(now)

    @property
    def gripper_closing(self) -> float:
        """Where the modelled finger is (m closed, 0 = open): the last ``gripper_command``."""
        return self._finger.closing

    @property
    def hand_target(self) -> np.ndarray | None:
        """The current hand target in the task frame (None before reset)."""
        return None if self._hand_target is None else self._hand_target.copy()

    # -- translation --------------------------------------------------------------------------------
    def plan(self, action: Any, joint_positions: Any, now: float | None = None) -> PolicyStepPlan:
        """Translate one policy action; returns the joint targets of the step's control cycles.

        ``joint_positions`` are the measured joints (used for the lead limit and as the IK start at
        the first step); ``now`` is the time of the step's first control cycle (default: right after
        the previous step).
        """
        if self._hand_target is None or self._last_target is None:
            raise RuntimeError('call reset(joint_positions) before plan(): the hand target needs an anchor')
        act = _finite_vector(action, 4, 'action')
        q_measured = _finite_vector(joint_positions, 7, 'joint_positions')
        start = (self._plan_time if self._plan is None
                 else self._plan.start_s + self.policy_period_s) if now is None else float(now)
        # 3-vectors as Python floats: this runs every control cycle, where numpy's per-call overhead on
        # tiny arrays would cost more than the arithmetic.
        act = [min(max(v, -1.0), 1.0) for v in act.tolist()]
        low, high = self._hand_box
        wanted = [h + a * self.action_scale for h, a in zip(self._hand_target.tolist(), act, strict=False)]
        target = _clip3(wanted, low, high)
        measured_pos, _ = self.kinematics.fk(q_measured)
        measured_pos = np.asarray(measured_pos, dtype=np.float64).reshape(3).tolist()
        measured = self._base_to_task.apply_point(measured_pos)
        lead = [t - m for t, m in zip(target, measured, strict=True)]
        lead_norm = math.sqrt(lead[0] * lead[0] + lead[1] * lead[1] + lead[2] * lead[2])
        if lead_norm > self.max_lead_m:
            shrink = self.max_lead_m / lead_norm
            target = _clip3([m + d * shrink for m, d in zip(measured, lead, strict=True)], low, high)
        clipped = any(abs(t - w) > 1e-12 for t, w in zip(target, wanted, strict=True))
        arm = target
        if self.hand_response == 'metaworld':
            a, b, c = METAWORLD_HAND_RESPONSE
            before, mocap = self._measured_before, self._hand_target.tolist()  # both set by reset()
            arm = _clip3([x + a * (x - p) + b * (t - x) + c * (m - x)
                          for x, p, t, m in zip(measured, before, target, mocap, strict=True)], low, high)
        self._measured_before = measured
        target_base = np.array(self.task_frame.apply_point(arm))
        target, arm = np.array(target), np.array(arm)
        # The controller currently holds the end of the last segment (or its current point if a new
        # step interrupts one): the new segment starts there, so targets stay continuous.
        q_start = self.next_target(start) if self._plan is not None else self._last_target
        result = self.kinematics.ik(target_base, q_start, target_rot=self.tool_rotation)
        success, oriented = self._reached(result)
        upright = success  # solved with the fixed tool orientation: its tilt is the IK's orientation error
        if not success and self.tool_tilts:
            tilted = self._tilted_ik(target_base, q_start)
            if tilted is not None:
                result, success, oriented = tilted, True, True
        q_goal = np.asarray(result.q, dtype=np.float64).reshape(7)
        # Out of reach: go as far as the arm gets towards the target (the posture IK found is within
        # the joint limits), as Meta-World's hand does when its mocap target is out of reach; hold
        # when that brings the hand no closer or tilts the tool.
        moves = success
        if not success:
            start_error = float(np.linalg.norm(np.asarray(self.kinematics.fk(q_start)[0]) - target_base))
            moves = oriented and float(result.position_error) < start_error - 1e-4
        if moves:
            self._hand_target, hand_target_base = target, target_base
        else:
            q_goal = q_start.copy()  # hold: never stream a posture that does not help
            upright = False
            hand_target_base = np.asarray(self.kinematics.fk(q_start)[0], dtype=np.float64).reshape(3)
            arm = self._base_to_task.apply(hand_target_base)
        targets = q_start[None, :] + self._fractions * (q_goal - q_start)[None, :]
        plan = PolicyStepPlan(targets=targets, hand_target=self._hand_target.copy(), arm_target=arm,
                              hand_target_base=hand_target_base,
                              gripper=float(act[3]), gripper_command=self._finger.step(act[3]),
                              ik_success=success,
                              ik_position_error=float(result.position_error), clipped=clipped,
                              start_s=start, control_period_s=self.control_period_s,
                              tool_tilt_rad=(float(result.orientation_error) if upright
                                             else self._tilt_of(q_goal)))
        self._plan, self._plan_start_q, self._last_target = plan, q_start.copy(), q_goal
        return plan

    def _reached(self, result: Any) -> tuple[bool, bool]:
        """(reached, oriented): the IK result is within the position and orientation tolerances."""
        q = np.asarray(result.q, dtype=np.float64)
        oriented = (float(getattr(result, 'orientation_error', 0.0)) <= self.ik_tolerance_rad
                    and bool(np.isfinite(q).all()))
        return oriented and float(result.position_error) <= self.ik_tolerance_m, oriented

    def _tilt_of(self, q: np.ndarray) -> float:
        """Angle (rad) between the tool orientation at ``q`` and the fixed one."""
        rotation = np.asarray(self.kinematics.fk(q)[1], dtype=np.float64).reshape(3, 3)
        cosine = (float(np.trace(self.tool_rotation.T @ rotation)) - 1.0) / 2.0
        return math.acos(min(1.0, max(-1.0, cosine)))

    def _tilted_ik(self, target_base: np.ndarray, q_start: np.ndarray) -> Any:
        """The IK solution with the smallest tool tilt that reaches ``target_base``, or None.

        The tilt axis is horizontal and across the line from the base axis to the target, so the
        wrist (which stands above a downward tool) moves towards or away from the shoulder. The
        largest tilt is tried first in both directions: an unreachable target (the common case out of
        reach) costs two solves; only a reachable one is refined to the smallest angle that works.
        """
        radial = np.array([target_base[0], target_base[1], 0.0])
        norm = float(np.linalg.norm(radial))
        if norm < 1e-6:
            return None
        axis = np.array([-radial[1], radial[0], 0.0]) / norm

        def solve(angle: float) -> Any:
            turn = quat_to_matrix([math.cos(angle / 2), *(math.sin(angle / 2) * axis)])  # about axis
            rotation = turn @ self.tool_rotation
            # Warm-started from the posture being held: no restarts, which would cost most of a
            # control period per try on targets that cannot be reached.
            return self.kinematics.ik(target_base, q_start, target_rot=rotation, restarts=0)

        largest = self.tool_tilts[-1]
        for sign in (1.0, -1.0):
            result = solve(sign * largest)
            if not self._reached(result)[0]:
                continue
            for angle in self.tool_tilts[:-1]:
                smaller = solve(sign * angle)
                if self._reached(smaller)[0]:
                    return smaller
            return result
        return None

    def next_target(self, now: float) -> np.ndarray:
        """The joint target for a control cycle at time ``now`` (streaming use at the controller rate).

        Cycle k of a step (k = 1..cycles) is due at ``start_s + (k - 1) * control_period_s`` and
        targets the k-th interpolation point; after the step the arm holds its last point.
        """
        if self._last_target is None:
            raise RuntimeError('call reset(joint_positions) before next_target()')
        if self._plan is None:
            return self._last_target.copy()
        cycle = math.floor((now - self._plan.start_s) / self.control_period_s + 1e-9)
        if cycle < 0:
            return self._plan_start_q.copy()
        return self._plan.targets[min(cycle, self.cycles_per_step - 1)].copy()

