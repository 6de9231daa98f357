"""Forward kinematics, Jacobian and damped-least-squares inverse kinematics of the iiwa 7 (pure numpy).

The chain is computed from :data:`legion_kuka.description.IIWA7` (not from MuJoCo): at the zero posture
all joint frames are parallel to the base frame and the arm stands on the z axis, A2 at 0.340 m, A4 at
0.740 m, A6 at 1.140 m, the flange at 1.266 m; A1, A3, A5, A7 turn about the local z axis, A2 and A6
about +y, A4 about -y. Each link rotation is applied column by column (R @ Rz(q) mixes only two
columns), so one forward pass is ~150 multiply-adds.

The same code runs on two kinds of numbers: Python floats (one configuration: CPython float
arithmetic beats numpy's per-call overhead on 3-vectors, which is what makes a warm-started solve take
tens of microseconds) and 1-D numpy arrays (a batch of configurations, one numpy call per
multiply-add over the whole batch). Vectors are tuples of components, matrices tuples of columns.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from legion_kuka.description import GRIPPER, HOME, IIWA7, IiwaDatasheet

#: Meta-World's fixed hand orientation for the iiwa tool, in the robot base frame: tool z (along the
#: fingers) straight down, finger travel (tool y) along the base -x axis. With the base at
#: METAWORLD_BASE_POSE the fingers slide along Meta-World's world y axis, like the Sawyer's, so objects
#: are grasped the way the Meta-World tasks expect. The tool has this orientation at :data:`HOME`
#: (A7 = -90 deg). Columns are the tool's x, y, z axes.
TOOL_DOWN = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


@dataclass
class IKResult:
    """Result of :meth:`IiwaKinematics.ik`; leading dimensions follow the targets."""

    q: np.ndarray  # (..., 7), always within the joint limits
    success: np.ndarray  # (...) bool: position and orientation within tolerance
    position_error: np.ndarray  # (...) m
    orientation_error: np.ndarray  # (...) rad, rotation angle between reached and target orientation
    iterations: np.ndarray  # (...) iterations used (0: q_init already solved it)


class _Floats:
    """Arithmetic for one configuration: Python floats."""

    sin = staticmethod(math.sin)
    cos = staticmethod(math.cos)
    sqrt = staticmethod(math.sqrt)

    @staticmethod
    def minimum(a, b):
        return a if a < b else b

    @staticmethod
    def maximum(a, b):
        return a if a > b else b

    @staticmethod
    def all(flags) -> bool:
        return bool(flags)


class _Arrays:
    """Arithmetic for a batch: 1-D numpy arrays, one element per configuration."""

    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    sqrt = staticmethod(np.sqrt)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)

    @staticmethod
    def all(flags) -> bool:
        return bool(np.all(flags))


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _mix(ca, a, cb, b):
    """ca * a + cb * b for 3-vectors."""
    return (ca * a[0] + cb * b[0], ca * a[1] + cb * b[1], ca * a[2] + cb * b[2])


def _along(p, length, axis):
    return (p[0] + length * axis[0], p[1] + length * axis[1], p[2] + length * axis[2])


class IiwaKinematics:
    """Kinematics of the iiwa 7 arm to the ``'tcp'`` (gripper tool point) or the ``'flange'``.

    Angles in rad, lengths in m, everything in the robot base frame. ``position_margin`` keeps IK
    solutions that far inside the datasheet's joint limits: give it the safety filter's margin so
    that the filter never has to clip a solution (and the tool does reach the target).
    """

    def __init__(self, tool: str = 'tcp', datasheet: IiwaDatasheet = IIWA7,
                 tcp_offset: float = GRIPPER.tcp_offset, rest_posture=HOME, position_margin: float = 0.0):
        if tool not in ('tcp', 'flange'):
            raise ValueError(f"tool must be 'tcp' or 'flange', not {tool!r}")
        if not 0.0 <= position_margin < min(datasheet.position_limits):
            raise ValueError(f'position_margin must be in [0, {min(datasheet.position_limits):.3f}) rad, '
                             f'got {position_margin}')
        self.tool = tool
        self.datasheet = datasheet
        self.position_margin = float(position_margin)
        self.shoulder, self.upper_arm, self.forearm, flange = datasheet.link_offsets
        self.hand = flange + (tcp_offset if tool == 'tcp' else 0.0)  # A6 -> tool point
        self.lower = np.asarray(datasheet.lower, dtype=float) + position_margin
        self.upper = np.asarray(datasheet.upper, dtype=float) - position_margin
        self._lower = [float(v) for v in self.lower]
        self._upper = [float(v) for v in self.upper]
        self._tool_down_columns = TOOL_DOWN.T.tolist()
        self._set_rest_posture(rest_posture)
        self.station_rest = self.rest.copy()  # the constructor's rest posture (see turn_rest_posture)

    def turn_rest_posture(self, yaw: float) -> None:
        """Lean the IK's redundancy towards the constructor's rest posture turned by ``yaw`` (rad) about
        A1: a workcell station turned by ``yaw`` sees the arm as the station ahead does. Absolute, so a
        kinematics shared by the planners of several stations is right for the last one set."""
        rest = self.station_rest.copy()
        rest[0] += float(yaw)
        self._set_rest_posture(rest)

    def _set_rest_posture(self, rest_posture: Any) -> None:
        """The posture the IK's redundancy leans towards (the elbow's swivel), and the restarts around it."""
        rest = np.asarray(rest_posture, dtype=float)
        if rest.shape != (7,) or not np.all(np.isfinite(rest)):
            raise ValueError(f'rest_posture must have 7 finite joint angles, got {rest_posture!r}')
        self.rest = rest
        self._rest = [float(v) for v in self.rest]
        #: starting postures tried, in order, when a solve fails: the rest posture, then with A7 set
        #: around its range, then A5, A3, A1 turned (a wrist or upper-arm flip gets a local solver
        #: around a joint limit).
        settings = [(6, 0.0), (6, math.pi / 2), (6, 2.9), (6, -2.9), (6, -math.pi / 2)]
        settings += [(j, self.rest[j] + turn) for j in (4, 2, 0) for turn in (math.pi / 2, -math.pi / 2)]
        postures = [self.rest.copy()]
        for joint, angle in settings:
            posture = self.rest.copy()
            posture[joint] = np.clip(angle, self.lower[joint], self.upper[joint])
            if not any(np.allclose(posture, p) for p in postures):
                postures.append(posture)
        self.restart_postures = np.array(postures)
        self._restart_lists = self.restart_postures.tolist()

    # ------------------------------------------------------------------ chain
    def _chain(self, xp, q):
        """Tool position, rotation columns, and per joint the world axis and a point on it."""
        c = [xp.cos(v) for v in q]
        s = [xp.sin(v) for v in q]
        zero = 0.0 * c[0]
        one = zero + 1.0
        origin = (zero, zero, zero)
        # A1 about z
        x, y, z = (c[0], s[0], zero), (-s[0], c[0], zero), (zero, zero, one)
        shoulder = (zero, zero, zero + self.shoulder)
        axes = [(zero, zero, one), y]
        points = [origin, shoulder]
        # A2 about +y
        x, z = _mix(c[1], x, -s[1], z), _mix(s[1], x, c[1], z)
        axes.append(z)
        points.append(shoulder)
        # A3 about z
        x, y = _mix(c[2], x, s[2], y), _mix(-s[2], x, c[2], y)
        elbow = _along(shoulder, self.upper_arm, z)
        axes.append((-y[0], -y[1], -y[2]))
        points.append(elbow)
        # A4 about -y
        x, z = _mix(c[3], x, s[3], z), _mix(-s[3], x, c[3], z)
        axes.append(z)
        points.append(elbow)
        # A5 about z
        x, y = _mix(c[4], x, s[4], y), _mix(-s[4], x, c[4], y)
        wrist = _along(elbow, self.forearm, z)
        axes.append(y)
        points.append(wrist)
        # A6 about +y
        x, z = _mix(c[5], x, -s[5], z), _mix(s[5], x, c[5], z)
        axes.append(z)
        points.append(wrist)
        # A7 about z
        x, y = _mix(c[6], x, s[6], y), _mix(-s[6], x, c[6], y)
        tool = _along(wrist, self.hand, z)
        return tool, (x, y, z), axes, points

    @staticmethod
    def _jacobian_columns(tool, axes, points):
        columns = []
        for axis, point in zip(axes, points, strict=True):
            lever = (tool[0] - point[0], tool[1] - point[1], tool[2] - point[2])
            columns.append((*_cross(axis, lever), *axis))
        return columns  # 7 columns of 6 components: linear then angular velocity

    # ------------------------------------------------------------------ public API
    def _as_batch(self, q, name='q'):
        q = np.asarray(q, dtype=float)
        if q.ndim == 0 or q.shape[-1] != 7:
            raise ValueError(f'{name} must have shape (..., 7), got {q.shape}')
        return q.reshape(-1, 7), q.shape[:-1]

    def fk(self, q):
        """Tool pose for joint angles ``q[..., 7]``: position ``[..., 3]`` and rotation ``[..., 3, 3]``."""
        q = np.asarray(q, dtype=float)
        if q.shape == (7,):  # one configuration: Python floats are ~10x faster than tiny arrays
            tool, rot, _, _ = self._chain(_Floats, q.tolist())
            return np.array(tool), np.array(rot).T
        flat, lead = self._as_batch(q)
        tool, rot, _, _ = self._chain(_Arrays, list(flat.T))
        position = np.stack(tool, axis=-1)
        rotation = np.stack([np.stack(col, axis=-1) for col in rot], axis=-1)
        return position.reshape(*lead, 3), rotation.reshape(*lead, 3, 3)

    def jacobian(self, q):
        """Geometric Jacobian ``[..., 6, 7]`` at the tool point: rows vx, vy, vz, wx, wy, wz."""
        flat, lead = self._as_batch(q)
        tool, _, axes, points = self._chain(_Arrays, list(flat.T))
        columns = self._jacobian_columns(tool, axes, points)
        jac = np.stack([np.stack(col, axis=-1) for col in columns], axis=-1)
        return jac.reshape(*lead, 6, 7)

    def ik(self, target_pos, q_init, *, target_rot=None, max_iters: int = 100, tol: float = 1e-4,
           rot_tol: float = 1e-3, rest_gain: float = 0.1, limit_margin: float = math.radians(10.0),
           restarts: int = 3):
        """Joint angles that put the tool at ``target_pos[..., 3]`` with orientation ``target_rot``.

        Damped least squares (Levenberg-Marquardt damping that grows with the error, so far targets
        take bounded steps and near ones converge quadratically), started from ``q_init[..., 7]``
        (broadcast against the targets). Redundancy moves the arm in the Jacobian's null space
        towards the rest posture (gain ``rest_gain``) and away from joints within ``limit_margin`` of
        a limit; each step is clipped into the joint limits, so every returned ``q`` is within them.
        ``target_rot`` defaults to :data:`TOOL_DOWN`, the fixed hand orientation of Meta-World.
        Success: position error < ``tol`` (m) and orientation error < ``rot_tol`` (rad). A solve that
        fails from ``q_init`` (a local minimum against the joint limits, typical of far-away starting
        postures) is run again from up to ``restarts`` other postures: the rest posture first, then
        the rest posture with the wrist or the upper arm turned (:attr:`restart_postures`), until it
        succeeds; ``iterations`` counts every run. Each restart of a target that cannot be reached
        costs up to ``max_iters`` more iterations: keep ``restarts`` small in control loops.
        """
        if restarts < 0:
            raise ValueError(f'restarts must be >= 0, got {restarts}')
        if max_iters < 0:
            raise ValueError(f'max_iters must be >= 0, got {max_iters}')
        if not tol > 0 or not rot_tol > 0:
            raise ValueError('tol and rot_tol must be positive')
        options = (max_iters, tol, rot_tol, rest_gain, limit_margin, restarts)
        target_pos = np.asarray(target_pos, dtype=float)
        q_init = np.asarray(q_init, dtype=float)
        if target_pos.shape == (3,) and q_init.shape == (7,) and (target_rot is None
                                                                  or np.shape(target_rot) == (3, 3)):
            # one target: the hot path of sim2real, kept lean
            goal, q = target_pos.tolist(), q_init.tolist()
            if target_rot is None:
                columns = self._tool_down_columns
            else:
                columns = np.asarray(target_rot, dtype=float).T.tolist()
                if not all(math.isfinite(v) for column in columns for v in column):
                    raise ValueError('target_rot contains NaN or inf')
            if not all(map(math.isfinite, goal)) or not all(map(math.isfinite, q)):
                raise ValueError('target_pos or q_init contains NaN or inf')
            return self._solve_one(q, goal, columns, options)
        if target_pos.ndim == 0 or target_pos.shape[-1] != 3:
            raise ValueError(f'target_pos must have shape (..., 3), got {target_pos.shape}')
        if q_init.ndim == 0 or q_init.shape[-1] != 7:
            raise ValueError(f'q_init must have shape (..., 7), got {q_init.shape}')
        target_rot = TOOL_DOWN if target_rot is None else np.asarray(target_rot, dtype=float)
        if target_rot.ndim < 2 or target_rot.shape[-2:] != (3, 3):
            raise ValueError(f'target_rot must have shape (..., 3, 3), got {target_rot.shape}')
        for name, value in (('target_pos', target_pos), ('q_init', q_init), ('target_rot', target_rot)):
            if not np.all(np.isfinite(value)):
                raise ValueError(f'{name} contains NaN or inf')
        lead = np.broadcast_shapes(target_pos.shape[:-1], q_init.shape[:-1], target_rot.shape[:-2])
        if lead == ():
            return self._solve_one(q_init.tolist(), target_pos.tolist(), target_rot.T.tolist(), options)
        n = math.prod(lead)
        q0 = np.clip(np.broadcast_to(q_init, (*lead, 7)).reshape(n, 7), self.lower, self.upper)
        pos = np.broadcast_to(target_pos, (*lead, 3)).reshape(n, 3)
        rot = np.broadcast_to(target_rot, (*lead, 3, 3)).reshape(n, 3, 3)
        q, pos_err, rot_err, iters = self._solve(
            _Arrays, list(q0.T.copy()), list(pos.T.copy()), [list(rot[:, :, j].T.copy()) for j in range(3)],
            *options[:5])
        q = np.stack(q, axis=-1)
        tol, rot_tol = options[1], options[2]
        success = (pos_err < tol) & (rot_err < rot_tol)
        for seed in self.restart_postures[:restarts]:
            # failed rows, except those that started from this very posture
            again = np.flatnonzero(~success & np.any(np.abs(q0 - seed) > 1e-12, axis=1))
            if again.size == 0:
                continue
            start = np.broadcast_to(seed, (again.size, 7))
            q2, pos2, rot2, iters2 = self._solve(
                _Arrays, list(start.T.copy()), list(pos[again].T.copy()),
                [list(rot[again][:, :, j].T.copy()) for j in range(3)], *options[:5])
            q[again], pos_err[again], rot_err[again] = np.stack(q2, axis=-1), pos2, rot2
            iters[again] += iters2
            success = (pos_err < tol) & (rot_err < rot_tol)
        return IKResult(q.reshape(*lead, 7), success.reshape(lead), pos_err.reshape(lead),
                        rot_err.reshape(lead), iters.astype(int).reshape(lead))

    # ------------------------------------------------------------------ solver
    def _solve_one(self, q, goal, goal_columns, options):
        lower, upper = self._lower, self._upper
        q = [lo if v < lo else hi if v > hi else v for v, lo, hi in zip(q, lower, upper, strict=True)]
        start = q
        q, pos_err, rot_err, iters = self._solve(_Floats, list(start), goal, goal_columns, *options[:5])
        tol, rot_tol, restarts = options[1], options[2], options[5]
        success = pos_err < tol and rot_err < rot_tol
        for seed in self._restart_lists[:restarts]:
            if success:
                break
            if seed == start:
                continue
            used = iters
            q, pos_err, rot_err, iters = self._solve(_Floats, list(seed), goal, goal_columns, *options[:5])
            iters += used
            success = pos_err < tol and rot_err < rot_tol
        return IKResult(np.array(q), np.array(success), np.array(pos_err), np.array(rot_err),
                        np.array(int(iters)))

    def _solve(self, xp, q, goal, goal_rot, max_iters, tol, rot_tol, rest_gain, limit_margin):
        """The DLS loop on components (floats or 1-D arrays); returns q, errors, iterations used."""
        lower, upper, rest = self._lower, self._upper, self._rest
        gx, gy, gz = goal_rot
        iterations = 0 * q[0]
        # Damping floor (m^2): keeps steps bounded at singularities (arm stretched, A2/A4/A6 = 0),
        # small enough that it does not slow convergence elsewhere.
        floor = 1e-6
        # 0 for a joint whose last step ran into its limit: the next step leaves it out of the task
        # Jacobian so that the other joints take over instead of the solve stalling at the limit.
        free = [1.0] * 7
        for it in range(max_iters + 1):
            tool, (x, y, z), axes, points = self._chain(xp, q)
            ep = (goal[0] - tool[0], goal[1] - tool[1], goal[2] - tool[2])
            # Orientation error as a rotation vector (axis * angle): half the sum of the column cross
            # products is sin(angle) * axis; rescale it by angle / sin(angle) so that errors beyond
            # 90 deg still pull at full strength.
            eo = [0.5 * (a + b + c) for a, b, c in zip(_cross(x, gx), _cross(y, gy), _cross(z, gz),
                                                       strict=True)]
            sin2 = _dot(eo, eo)
            cos_angle = 0.5 * (_dot(x, gx) + _dot(y, gy) + _dot(z, gz) - 1.0)
            sin_angle = xp.sqrt(sin2)
            ratio = _angle_over_sin(xp, sin_angle, cos_angle)
            eo = [eo[0] * ratio, eo[1] * ratio, eo[2] * ratio]
            pos_err2 = _dot(ep, ep)
            rot_err2 = _dot(eo, eo)
            done = (pos_err2 < tol * tol) & (rot_err2 < rot_tol * rot_tol)
            if it == max_iters or xp.all(done):
                break
            active = 1.0 - done
            iterations = iterations + active
            # bound the task-space step: 0.1 m and 0.5 rad per iteration
            scale_p = xp.minimum(1.0, 0.1 / xp.sqrt(pos_err2 + 1e-300))
            scale_o = xp.minimum(1.0, 0.5 / xp.sqrt(rot_err2 + 1e-300))
            e = [ep[0] * scale_p, ep[1] * scale_p, ep[2] * scale_p,
                 eo[0] * scale_o, eo[1] * scale_o, eo[2] * scale_o]
            jac = self._jacobian_columns(tool, axes, points)
            if xp is _Arrays or 0.0 in free:
                jac = [tuple(f * c for c in col) for f, col in zip(free, jac, strict=True)]
            # null-space preference: towards the rest posture, away from the limits
            v = []
            for i in range(7):
                push = (xp.maximum(0.0, lower[i] + limit_margin - q[i])
                        - xp.maximum(0.0, q[i] - (upper[i] - limit_margin)))
                v.append(rest_gain * (rest[i] - q[i]) + push)
            # dq = v + J^T (J J^T + lambda^2 I)^-1 (e - J v): the damped task step plus the part of v
            # the task does not see; one 6x6 solve. lambda^2 is the squared (bounded) error: large
            # steps far away, Gauss-Newton speed close to the target.
            clamped2 = pos_err2 * scale_p * scale_p + rot_err2 * scale_o * scale_o
            w = _damped_solve(jac, e, v, clamped2 + floor, xp.sqrt)
            w0, w1, w2, w3, w4, w5 = w
            for i in range(7):
                c0, c1, c2, c3, c4, c5 = jac[i]
                step = v[i] + c0 * w0 + c1 * w1 + c2 * w2 + c3 * w3 + c4 * w4 + c5 * w5
                moved = q[i] + active * step
                free[i] = 1.0 * ((moved <= upper[i]) & (moved >= lower[i]))
                q[i] = xp.minimum(upper[i], xp.maximum(lower[i], moved))
        return q, xp.sqrt(pos_err2), xp.sqrt(rot_err2), iterations


def nearest_reachable_posture(kinematics: IiwaKinematics, target_pos, target_rot, q_init, *,
                              step_m: float = 0.01, max_m: float = 0.30
                              ) -> tuple[np.ndarray, np.ndarray, bool]:
    """A posture that puts the tool at ``target_pos`` (base frame) with ``target_rot``, or, where the
    arm cannot reach it within its limits, at the nearest point straight outwards from the base axis
    that it reaches (``step_m`` apart, up to ``max_m``): the start an operator would choose for a
    target too close to the base for the tool-down arm. Returns ``(q, point, reached)``: the posture,
    the point it puts the tool at (base frame) and whether one was found; otherwise ``q`` is the last
    attempt's (within the limits).
    """
    target = np.asarray(target_pos, dtype=float)
    outwards = np.array([target[0], target[1], 0.0])
    outwards /= max(float(np.linalg.norm(outwards)), 1e-9)
    q, point = np.asarray(q_init, dtype=float), target
    for distance in np.arange(0.0, max_m + 1e-9, step_m):
        point = target + distance * outwards
        result = kinematics.ik(point, q_init, target_rot=target_rot, max_iters=300)
        q = np.asarray(result.q, dtype=float)
        if bool(np.all(result.success)):
            return q, point, True
    return q, point, False


def _angle_over_sin(xp, sin_angle, cos_angle):
    """angle / sin(angle) for angle = atan2(sin, cos) in [0, pi]; 1 at 0, capped near pi."""
    if xp is _Floats:
        angle = math.atan2(sin_angle, cos_angle)
        return angle / sin_angle if sin_angle > 1e-9 else 1.0
    angle = np.arctan2(sin_angle, cos_angle)
    return np.where(sin_angle > 1e-9, angle / np.maximum(sin_angle, 1e-9), 1.0)


def _damped_solve(jac, e, v, damping, sqrt):
    """w = (J J^T + damping I)^-1 (e - J v) for the 6x7 Jacobian given as 7 columns.

    Written out (Cholesky of the 6x6 matrix, lower triangle only) because a single configuration
    is solved in Python floats, where loops and indexing would cost more than the arithmetic.
    """
    r0, r1, r2, r3, r4, r5 = e
    a00 = a10 = a11 = a20 = a21 = a22 = a30 = a31 = a32 = a33 = damping * 0.0
    a40 = a41 = a42 = a43 = a44 = a50 = a51 = a52 = a53 = a54 = a55 = a00
    for (j0, j1, j2, j3, j4, j5), vi in zip(jac, v, strict=True):
        r0 = r0 - j0 * vi
        r1 = r1 - j1 * vi
        r2 = r2 - j2 * vi
        r3 = r3 - j3 * vi
        r4 = r4 - j4 * vi
        r5 = r5 - j5 * vi
        a00 = a00 + j0 * j0
        a10 = a10 + j1 * j0
        a11 = a11 + j1 * j1
        a20 = a20 + j2 * j0
        a21 = a21 + j2 * j1
        a22 = a22 + j2 * j2
        a30 = a30 + j3 * j0
        a31 = a31 + j3 * j1
        a32 = a32 + j3 * j2
        a33 = a33 + j3 * j3
        a40 = a40 + j4 * j0
        a41 = a41 + j4 * j1
        a42 = a42 + j4 * j2
        a43 = a43 + j4 * j3
        a44 = a44 + j4 * j4
        a50 = a50 + j5 * j0
        a51 = a51 + j5 * j1
        a52 = a52 + j5 * j2
        a53 = a53 + j5 * j3
        a54 = a54 + j5 * j4
        a55 = a55 + j5 * j5
    # Cholesky A = L L^T; d_i = 1 / L_ii
    l00 = sqrt(a00 + damping)
    d0 = 1.0 / l00
    l10, l20, l30, l40, l50 = a10 * d0, a20 * d0, a30 * d0, a40 * d0, a50 * d0
    d1 = 1.0 / sqrt(a11 + damping - l10 * l10)
    l21 = (a21 - l20 * l10) * d1
    l31 = (a31 - l30 * l10) * d1
    l41 = (a41 - l40 * l10) * d1
    l51 = (a51 - l50 * l10) * d1
    d2 = 1.0 / sqrt(a22 + damping - l20 * l20 - l21 * l21)
    l32 = (a32 - l30 * l20 - l31 * l21) * d2
    l42 = (a42 - l40 * l20 - l41 * l21) * d2
    l52 = (a52 - l50 * l20 - l51 * l21) * d2
    d3 = 1.0 / sqrt(a33 + damping - l30 * l30 - l31 * l31 - l32 * l32)
    l43 = (a43 - l40 * l30 - l41 * l31 - l42 * l32) * d3
    l53 = (a53 - l50 * l30 - l51 * l31 - l52 * l32) * d3
    d4 = 1.0 / sqrt(a44 + damping - l40 * l40 - l41 * l41 - l42 * l42 - l43 * l43)
    l54 = (a54 - l50 * l40 - l51 * l41 - l52 * l42 - l53 * l43) * d4
    d5 = 1.0 / sqrt(a55 + damping - l50 * l50 - l51 * l51 - l52 * l52 - l53 * l53 - l54 * l54)
    # L y = r
    y0 = r0 * d0
    y1 = (r1 - l10 * y0) * d1
    y2 = (r2 - l20 * y0 - l21 * y1) * d2
    y3 = (r3 - l30 * y0 - l31 * y1 - l32 * y2) * d3
    y4 = (r4 - l40 * y0 - l41 * y1 - l42 * y2 - l43 * y3) * d4
    y5 = (r5 - l50 * y0 - l51 * y1 - l52 * y2 - l53 * y3 - l54 * y4) * d5
    # L^T w = y
    w5 = y5 * d5
    w4 = (y4 - l54 * w5) * d4
    w3 = (y3 - l43 * w4 - l53 * w5) * d3
    w2 = (y2 - l32 * w3 - l42 * w4 - l52 * w5) * d2
    w1 = (y1 - l21 * w2 - l31 * w3 - l41 * w4 - l51 * w5) * d1
    w0 = (y0 - l10 * w1 - l20 * w2 - l30 * w3 - l40 * w4 - l50 * w5) * d0
    return w0, w1, w2, w3, w4, w5
