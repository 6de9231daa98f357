"""The safety filter: the last gate between any policy and the arm (pure Python, no ROS).

Every joint position command for the iiwa passes :meth:`SafetyFilter.command` once per control period.
What comes out is either a motion command, guaranteed to be

- inside the joint position limits shrunk by a margin (default 5 deg inside the datasheet's),
- at most ``velocity * dt`` from the previous emitted command in every joint (default 10 % of the
  datasheet velocities),
- at most ``acceleration * dt^2`` away from continuing the previous emitted step (the per-cycle change
  of velocity; from rest after a hold), and slow enough to stop at the target with that deceleration,
- with the tool point inside a Cartesian box of the robot base frame (or, when the arm is outside it,
  not moving further out),

or a hold: exactly the last emitted command again (the current measured position if nothing was
emitted yet). A hold stops the motion within one cycle; the acceleration bound applies to motion
commands (the next motion after a hold starts from rest). Nothing at all (``position=None``) comes out
before the first joint state.

Holds happen when the joint state or the target is stale, out of order or malformed (NaN, inf, wrong
size), when the target's tool point lies outside the box, and while the latched e-stop is set.
:meth:`SafetyFilter.estop` latches; only :meth:`SafetyFilter.reset` with a fresh joint state releases it.
A tracking error larger than ``max_tracking_error`` between the measured joints and the last emitted
command latches the e-stop too (the arm is not where it was sent: collision, driver fault, hand
guiding).

Call :meth:`SafetyFilter.command` once per control period: the velocity and acceleration bounds are
per cycle of ``control_period_s``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from legion_kuka.description import GRIPPER, IIWA7, IiwaDatasheet

ARM_DOF = 7

#: Default tool-point box in the robot base frame (m): Meta-World's task hand boxes (up to
#: (-0.5, 0.40, 0.05)..(0.5, 1.0, 0.5) in its world) with the base at METAWORLD_BASE_POSE, trimmed to
#: what the arm can reach with the tool down, and kept 2 cm above the table the base stands on (the
#: fingertips reach 15 mm below the tool point). Set it for every real cell.
DEFAULT_WORKSPACE_LOW = (0.20, -0.50, 0.02)
DEFAULT_WORKSPACE_HIGH = (0.90, 0.50, 0.60)
#: Default acceleration limit (rad/s^2, every joint): the 10 rad/s^2 of lbr_fri_ros2_stack's MoveIt
#: configuration scaled by MoveIt's default 0.1, the same scaling as the velocities. KUKA publishes no
#: acceleration limits.
DEFAULT_ACCELERATION = 1.0
DEFAULT_POSITION_MARGIN = math.radians(5.0)
DEFAULT_VELOCITY_SCALE = 0.1
#: Measured joints further than this from the last emitted command latch the e-stop (rad).
DEFAULT_MAX_TRACKING_ERROR = 0.2


class SafetyStatus(str, Enum):
    OK = 'ok'  # the target went out unchanged
    LIMITED = 'limited'  # a motion command, clipped or rate limited towards the target
    HOLD = 'hold'  # the last emitted command again (watchdog, bad input, workspace)
    ESTOP = 'estop'  # latched e-stop: hold until reset()
    NO_STATE = 'no_state'  # no joint state yet: nothing to command


@dataclass(frozen=True)
class SafetyDecision:
    """What to send this cycle: ``position`` (7 joint angles) or None (send nothing)."""

    position: np.ndarray | None
    status: SafetyStatus
    reasons: tuple[str, ...] = ()  # stable short codes, e.g. 'velocity_limit', 'stale_target'

    @property
    def moving(self) -> bool:
        return self.status in (SafetyStatus.OK, SafetyStatus.LIMITED)


def _vector(value, name: str, size: int = ARM_DOF) -> np.ndarray:
    array = np.array(value, dtype=float).reshape(-1) if np.ndim(value) else np.full(size, float(value))
    if array.shape != (size,):
        raise ValueError(f'{name} must have {size} values, got {array.shape[0]}')
    if not np.all(np.isfinite(array)):
        raise ValueError(f'{name} contains NaN or inf')
    return array


@dataclass(frozen=True, eq=False)  # numpy fields: compare by identity, not element-wise
class SafetyLimits:
    """Limits enforced by :class:`SafetyFilter` (rad, rad/s, rad/s^2, m in the robot base frame)."""

    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    workspace_low: np.ndarray | None = None  # tool-point box; None: no Cartesian check
    workspace_high: np.ndarray | None = None
    max_tracking_error: float | None = DEFAULT_MAX_TRACKING_ERROR  # None: no tracking check
    notes: dict = field(default_factory=dict, compare=False)  # how the numbers were derived

    def __post_init__(self):
        for name in ('lower', 'upper', 'velocity', 'acceleration'):
            object.__setattr__(self, name, _vector(getattr(self, name), name))
        if np.any(self.lower >= self.upper):
            raise ValueError(f'every lower limit must be below its upper limit: {self.lower} vs {self.upper}')
        if np.any(self.velocity <= 0) or np.any(self.acceleration <= 0):
            raise ValueError('velocity and acceleration limits must be positive')
        if (self.workspace_low is None) != (self.workspace_high is None):
            raise ValueError('give both workspace_low and workspace_high, or neither')
        if self.workspace_low is not None:
            low = _vector(self.workspace_low, 'workspace_low', 3)
            high = _vector(self.workspace_high, 'workspace_high', 3)
            if np.any(low >= high):
                raise ValueError(f'workspace_low must be below workspace_high: {low} vs {high}')
            object.__setattr__(self, 'workspace_low', low)
            object.__setattr__(self, 'workspace_high', high)
        if self.max_tracking_error is not None and not self.max_tracking_error > 0:
            raise ValueError(f'max_tracking_error must be positive or None, got {self.max_tracking_error}')

    @classmethod
    def from_description(cls, datasheet: IiwaDatasheet = IIWA7, *,
                         position_margin: float = DEFAULT_POSITION_MARGIN,
                         velocity_scale: float = DEFAULT_VELOCITY_SCALE,
                         acceleration=DEFAULT_ACCELERATION,
                         workspace: tuple | None = (DEFAULT_WORKSPACE_LOW, DEFAULT_WORKSPACE_HIGH),
                         max_tracking_error: float | None = DEFAULT_MAX_TRACKING_ERROR) -> SafetyLimits:
        """Limits from the datasheet: positions ``position_margin`` inside, velocities scaled by
        ``velocity_scale``, ``acceleration`` (one value or 7), ``workspace=(low, high)`` or None."""
        limits = np.asarray(datasheet.position_limits)
        if not 0 <= position_margin < limits.min():
            raise ValueError(f'position_margin must be in [0, {limits.min():.3f}) rad, got {position_margin}')
        if not 0 < velocity_scale <= 1:
            raise ValueError(f'velocity_scale must be in (0, 1], got {velocity_scale}')
        low, high = (None, None) if workspace is None else workspace
        return cls(lower=-limits + position_margin, upper=limits - position_margin,
                   velocity=np.asarray(datasheet.velocity_limits) * velocity_scale,
                   acceleration=acceleration, workspace_low=low, workspace_high=high,
                   max_tracking_error=max_tracking_error,
                   notes={'source': datasheet.model, 'position_margin_rad': position_margin,
                          'velocity_scale': velocity_scale})

    def within_positions(self, q, tol: float = 1e-9) -> bool:
        """Every posture in ``q`` (``[..., 7]``) within the position limits, ``tol`` allowed."""
        q = np.asarray(q, dtype=float)
        if q.shape != (ARM_DOF,):  # a batch of postures
            return bool(np.all(q >= self.lower - tol) and np.all(q <= self.upper + tol))
        # one posture on floats, not numpy calls: the safety filter asks this every control cycle
        return all(lo - tol <= v <= hi + tol
                   for v, lo, hi in zip(q.tolist(), self.lower.tolist(), self.upper.tolist(), strict=True))


class SafetyFilter:
    """Clamp, rate-limit, watchdog and latch joint position commands; see the module docstring.

    ``kinematics`` needs ``fk(q) -> (tool_position, tool_rotation)`` for the tool point the workspace
    box bounds (an :class:`~legion_kuka.kinematics.IiwaKinematics` with ``tool='tcp'``).
    ``stale_after_s``: a joint state or target older than this (or that far in the future) is stale.
    """

    def __init__(self, limits: SafetyLimits, kinematics, control_period_s: float, stale_after_s: float):
        if not control_period_s > 0 or not math.isfinite(control_period_s):
            raise ValueError(f'control_period_s must be a positive number, got {control_period_s}')
        if not stale_after_s > 0 or not math.isfinite(stale_after_s):
            raise ValueError(f'stale_after_s must be a positive number, got {stale_after_s}')
        if limits.workspace_low is not None and not hasattr(kinematics, 'fk'):
            raise ValueError('a workspace box needs kinematics with fk(q) -> (position, rotation)')
        self.limits = limits
        self.kinematics = kinematics
        self.control_period_s = float(control_period_s)
        self.stale_after_s = float(stale_after_s)
        dt = self.control_period_s
        # The gate runs every control cycle on 7 numbers: Python floats, not numpy's per-call overhead
        # on tiny arrays (the filter was a fifth of the decision path's latency, see legion bench loop).
        self._max_step = (limits.velocity * dt).tolist()  # rad per cycle
        self._max_step_change = (limits.acceleration * dt * dt).tolist()  # rad per cycle, per cycle
        self._lower, self._upper = limits.lower.tolist(), limits.upper.tolist()
        self._box = None if limits.workspace_low is None else (limits.workspace_low.tolist(),
                                                                limits.workspace_high.tolist())
        self._joint_state: np.ndarray | None = None
        self._joint_stamp: float | None = None
        self._latched = False
        self._latch_reasons: list[str] = []
        self.last_rejection: str | None = None  # why the last update_joint_state() was refused
        self._forget_history()

    def _forget_history(self) -> None:
        self._emitted: np.ndarray | None = None  # last position that went out
        self._step = [0.0] * ARM_DOF  # last motion step (0 after a hold)
        self._last_target_stamp: float | None = None
        self._last_now: float | None = None
        self._order_stamp: float | None = None  # joint-state stamps must not go back past this

    # ------------------------------------------------------------------ state
    @property
    def latched(self) -> bool:
        return self._latched

    @property
    def latch_reasons(self) -> tuple[str, ...]:
        return tuple(self._latch_reasons)

    @property
    def last_emitted(self) -> np.ndarray | None:
        return None if self._emitted is None else self._emitted.copy()

    def update_joint_state(self, position, stamp_s: float) -> bool:
        """Take a measured joint state; False (and ``last_rejection``) when it is refused.

        Refused: not 7 finite numbers, a non-finite stamp, or a stamp older than the previous one.
        """
        try:
            q = np.array(position, dtype=float).reshape(-1)
            stamp = float(stamp_s)
        except (TypeError, ValueError):
            return self._reject('joint state is not numeric')
        if q.shape != (ARM_DOF,):
            return self._reject(f'joint state must have {ARM_DOF} positions, got {q.shape[0]}')
        values = q.tolist()
        if not all(map(math.isfinite, values)):
            return self._reject('joint state contains NaN or inf')
        if not math.isfinite(stamp):
            return self._reject('joint state stamp is not finite')
        if self._order_stamp is not None and stamp < self._order_stamp:
            return self._reject(f'joint state stamp {stamp} is older than the previous {self._order_stamp}')
        self._order_stamp = stamp
        self._joint_state, self._joint_stamp = q, stamp
        self.last_rejection = None
        tracking = self.limits.max_tracking_error
        if tracking is not None and self._emitted is not None and not self._latched:
            error = max(abs(a - b) for a, b in zip(values, self._emitted.tolist(), strict=True))
            if error > tracking:
                self.estop('tracking_error')
        return True

    def _reject(self, reason: str) -> bool:
        self.last_rejection = reason
        return False

    def estop(self, reason: str = 'estop') -> None:
        """Latch the e-stop: every command is a hold until :meth:`reset` succeeds."""
        self._latched = True
        self._latch_reasons.append(str(reason))

    def reset(self, now_s: float | None = None) -> bool:
        """Release the e-stop and start over from the measured joints; needs a fresh joint state.

        ``now_s`` defaults to the latest time the filter has seen. On success the motion history
        is forgotten (the next command starts from rest at the measured position) and joint-state
        and target stamps may start again from any value (a simulator reset rewinds its clock).
        Returns False, and stays latched, without a joint state younger than ``stale_after_s``.
        """
        if self._latched:
            if self._joint_stamp is None:
                return False
            now = self._latest_time() if now_s is None else float(now_s)
            age = now - self._joint_stamp
            if not math.isfinite(age) or not -self.stale_after_s <= age <= self.stale_after_s:
                return False
        self._latched = False
        self._latch_reasons.clear()
        self._forget_history()
        return True

    def _latest_time(self) -> float:
        times = [t for t in (self._last_now, self._joint_stamp) if t is not None]
        return max(times) if times else -math.inf

    # ------------------------------------------------------------------ the gate
    def command(self, target, stamp_s: float | None = None, now_s: float | None = None, *,
                stamp: float | None = None, now: float | None = None) -> SafetyDecision:
        """Filter one joint position target taken at ``stamp_s``, for the cycle at ``now_s``.

        (``stamp``/``now`` are accepted as keyword aliases of ``stamp_s``/``now_s``.)
        """
        stamp_s = stamp if stamp_s is None else stamp_s
        now_s = now if now_s is None else now_s
        if stamp_s is None or now_s is None:
            raise TypeError('command() needs the target stamp_s and the current time now_s')
        if self._joint_state is None:
            return SafetyDecision(None, SafetyStatus.NO_STATE, ('no_joint_state',))
        if self._latched:
            return self._hold(SafetyStatus.ESTOP, 'estop')
        try:
            now_s, stamp_s = float(now_s), float(stamp_s)
        except (TypeError, ValueError):
            return self._hold(SafetyStatus.HOLD, 'invalid_time')
        if not math.isfinite(now_s):
            return self._hold(SafetyStatus.HOLD, 'invalid_time')
        if self._last_now is not None and now_s < self._last_now:
            return self._hold(SafetyStatus.HOLD, 'clock_backwards')
        self._last_now = now_s
        state_age = now_s - self._joint_stamp
        if not -self.stale_after_s <= state_age <= self.stale_after_s:
            return self._hold(SafetyStatus.HOLD, 'stale_joint_state')
        try:
            goal = np.array(target, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            return self._hold(SafetyStatus.HOLD, 'invalid_target')
        wanted = goal.tolist()
        if goal.shape != (ARM_DOF,) or not all(map(math.isfinite, wanted)) or not math.isfinite(stamp_s):
            return self._hold(SafetyStatus.HOLD, 'invalid_target')
        if not -self.stale_after_s <= now_s - stamp_s <= self.stale_after_s:
            return self._hold(SafetyStatus.HOLD, 'stale_target')
        if self._last_target_stamp is not None and stamp_s < self._last_target_stamp:
            return self._hold(SafetyStatus.HOLD, 'out_of_order_target')
        self._last_target_stamp = stamp_s

        reference = (self._joint_state if self._emitted is None else self._emitted).tolist()
        lower, upper = self._lower, self._upper
        if not self.limits.within_positions(reference):
            # before the first motion (or after a reset): the arm stands outside the safety limits; it
            # has to be brought inside by other means (pendant, the driver's own motion)
            return self._hold(SafetyStatus.HOLD, 'outside_position_limits')
        reasons = []
        clipped = [hi if g > hi else lo if g < lo else g
                   for g, lo, hi in zip(wanted, lower, upper, strict=True)]
        if clipped != wanted:
            reasons.append('position_limit')
        if self._box is not None and self._box_excess(clipped) > 0:
            return self._hold(SafetyStatus.HOLD, 'outside_workspace')
        position, rate_reasons = self._rate_limit(reference, clipped)
        reasons += rate_reasons
        # (unchanged by the rate limit: the tool point is the clipped target's, inside the box)
        if self._box is not None and position != clipped and (excess := self._box_excess(position)) > 0 \
                and excess > self._box_excess(reference) + 1e-12:
            # the joint-space path to an inside target bulges out of the box: wait at the edge
            return self._hold(SafetyStatus.HOLD, 'outside_workspace')
        self._step = [p - r for p, r in zip(position, reference, strict=True)]
        self._emitted = np.array(position)
        status = SafetyStatus.LIMITED if reasons else SafetyStatus.OK
        return SafetyDecision(np.array(position), status, tuple(reasons))

    def _hold(self, status: SafetyStatus, reason: str) -> SafetyDecision:
        if self._emitted is None:
            self._emitted = self._joint_state.copy()
        self._step = [0.0] * ARM_DOF
        reasons = (reason, *self._latch_reasons) if status is SafetyStatus.ESTOP else (reason,)
        return SafetyDecision(self._emitted.copy(), status, reasons)

    def _box_excess(self, q: list[float]) -> float:
        """How far (m) the tool point at ``q`` lies outside the workspace box; 0 inside."""
        tool, _ = self.kinematics.fk(np.array(q))
        low, high = self._box
        squares = 0.0
        for t, lo, hi in zip(tool.tolist(), low, high, strict=True):
            out = lo - t if t < lo else t - hi if t > hi else 0.0
            squares += out * out
        return math.sqrt(squares)

    def _rate_limit(self, reference: list[float], goal: list[float]) -> tuple[list[float], list[str]]:
        """One cycle from ``reference`` towards ``goal`` within the velocity and acceleration bounds.

        Per joint: the step is at most ``max_step`` (velocity), changes by at most ``change`` from the
        previous step (acceleration), and is no larger than the largest step from which braking at
        ``change`` per cycle still stops at the goal. Since the goal is inside the position limits,
        the emitted positions are too. Where one scale of the whole step satisfies every joint's
        bounds, all joints are scaled together so the arm stays on the commanded joint-space line
        (the tool stays on the Cartesian path sim2real planned); otherwise (braking out of an earlier
        motion) each joint is limited on its own.
        """
        max_step, change, previous = self._max_step, self._max_step_change, self._step
        delta = [g - r for g, r in zip(goal, reference, strict=True)]
        cap = []
        velocity_binds = braking_binds = False
        for d, m, c in zip(delta, max_step, change, strict=True):
            distance = abs(d)
            # Steps s, s - c, s - 2c, ... cover at most s^2 / (2c) + s / 2 + c / 8 (exact for s a
            # multiple of c, c / 8 covers the rest): the largest s that still stops within the distance.
            room = max(distance - c / 8.0, 0.0)
            braking = max(c * (math.sqrt(0.25 + 2.0 * room / c) - 0.5), min(distance, c))  # last step <= c
            cap.append(min(distance, m, braking))  # the joint's bound on |step|
            velocity_binds = velocity_binds or (m < distance and m <= braking)
            braking_binds = braking_binds or (braking < distance and braking < m)
        reasons = ['velocity_limit'] if velocity_binds else []

        step = None
        # (smaller distances are rounding; dividing by them would overflow)
        moving = [i for i, d in enumerate(delta) if abs(d) > 1e-12]
        if moving:
            scale = min(1.0, min(cap[i] / abs(delta[i]) for i in moving))
            # the acceleration bounds as an interval of scales, joint by joint
            lowest, highest = 0.0, scale
            for i in moving:
                low_end = (previous[i] - change[i]) / delta[i]
                high_end = (previous[i] + change[i]) / delta[i]
                lowest = max(lowest, min(low_end, high_end))
                highest = min(highest, max(low_end, high_end))
            still_at_rest = all(abs(previous[i]) <= change[i] for i in range(ARM_DOF) if i not in moving)
            # (the two ends meet exactly while braking along the line: allow rounding)
            if lowest <= highest + 1e-12 and still_at_rest:
                step = [highest * d for d in delta]
                if highest < scale or braking_binds:
                    reasons.append('acceleration_limit')
        if step is None:
            wanted = [c if d > 0 else -c if d < 0 else 0.0 for d, c in zip(delta, cap, strict=True)]
            step = [min(max(w, p - c), p + c) for w, p, c in zip(wanted, previous, change, strict=True)]
            if braking_binds or step != wanted:
                reasons.append('acceleration_limit')
        # guards against rounding: the bounds hold exactly
        position = []
        bounds = zip(reference, previous, change, max_step, self._lower, self._upper, strict=True)
        for s, (r, p, c, m, lo, hi) in zip(step, bounds, strict=True):
            s = min(max(min(max(s, p - c), p + c), -m), m)
            position.append(min(max(r + s, lo), hi))
        return position, reasons


#: How far inside the filter's position limits sim2real plans (rad).
PLANNING_INSET_RAD = math.radians(0.5)


def planning_position_limits(limits: SafetyLimits | None = None,
                             inset_rad: float = PLANNING_INSET_RAD) -> tuple[float, ...]:
    """The symmetric joint position limits (rad, A1..A7) that sim2real plans within: ``limits``' (the
    description's defaults when None) less ``inset_rad``. The training scene's arm has these ranges
    too (:mod:`legion_kuka.metaworld_kuka`), so a policy only learns postures the real arm may take."""
    limits = SafetyLimits.from_description() if limits is None else limits
    return tuple(float(v) for v in np.minimum(-limits.lower, limits.upper) - inset_rad)


def planning_kinematics(limits: SafetyLimits, tcp_offset: float, inset_rad: float = PLANNING_INSET_RAD):
    """IK kinematics for the policy's hand point whose solutions stay inside ``limits``' position
    limits by ``inset_rad``: targets the filter would clip would bend the hand's path and starve the
    IK of its warm start, so sim2real plans inside them and the filter only rate-limits."""
    from dataclasses import replace

    from legion_kuka.kinematics import IiwaKinematics

    inner = planning_position_limits(limits, inset_rad)
    return IiwaKinematics(tool='tcp', tcp_offset=tcp_offset, datasheet=replace(IIWA7, position_limits=inner))


def hand_box_workspace(hand_low, hand_high, frame, hand_offset: float, margin_m: float = 0.02,
                       floor_margin_m: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """The filter's tcp box for a task: Meta-World's hand box (task frame; ``frame`` maps it into the
    robot base frame) lowered by the hand-to-tcp distance (the tool points down), widened by
    ``margin_m`` and, at the bottom, only by ``floor_margin_m`` (the floor keeps the fingers off the
    table), so that only motions the task never asks for are held."""
    low, high = np.asarray(hand_low, dtype=float), np.asarray(hand_high, dtype=float)
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    in_base = frame.apply(low + corners * (high - low))
    tcp_below_hand = GRIPPER.tcp_offset - hand_offset
    box_low = in_base.min(axis=0) - margin_m
    box_low[2] = in_base[:, 2].min() - tcp_below_hand - floor_margin_m
    box_high = in_base.max(axis=0) + margin_m
    box_high[2] -= tcp_below_hand
    return box_low, box_high
