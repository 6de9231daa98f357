"""Frames: rigid transforms and quaternions, as every part of legion_kuka writes them.

Conventions (used across legion_kuka):

- A *frame* is a rigid transform ``p_parent = R @ p_child + t``. A task frame (``task_frame``) is the
  pose of the task frame expressed in the robot base frame, so ``p_base = R @ p_task + t``. A pose can
  be given as a 4x4 matrix, ``(x, y, z, yaw)``, ``(position, quaternion wxyz)``, ``(position, 3x3
  rotation)`` or a :class:`Frame` (:meth:`Frame.of`).
- Quaternions are MuJoCo's ``(w, x, y, z)``.

Pure numpy: real2sim, sim2real, the twin, the workcell and the commander all map poses through here.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _finite_vector(value: Any, size: int, what: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f'{what} must have shape ({size},), got {array.shape}')
    if not np.isfinite(array).all():
        raise ValueError(f'{what} contains NaN or inf: {array.tolist()}')
    return array


def quat_to_matrix(quat: Any) -> np.ndarray:
    """Rotation matrix of a unit quaternion (w, x, y, z); the quaternion is normalised first."""
    q = _finite_vector(quat, 4, 'quaternion')
    norm = np.linalg.norm(q)
    if norm < 1e-9:
        raise ValueError('quaternion has zero norm')
    w, x, y, z = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z, w >= 0) of a rotation matrix (Shepperd's method, stable near 180°)."""
    m = np.asarray(rot, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    quat = np.asarray(q)
    quat /= np.linalg.norm(quat)
    return quat if quat[0] >= 0 else -quat


@dataclass(frozen=True)
class Frame:
    """A rigid transform ``p_parent = rotation @ p_child + translation``."""

    rotation: np.ndarray
    translation: np.ndarray

    def __post_init__(self) -> None:
        rot = np.asarray(self.rotation, dtype=np.float64)
        if rot.shape != (3, 3) or not np.all(np.isfinite(rot)):
            raise ValueError(f'frame rotation must be a finite 3x3 matrix, got shape {rot.shape}')
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6) or np.linalg.det(rot) < 0:
            raise ValueError('frame rotation is not a proper rotation matrix (orthonormal, det +1)')
        object.__setattr__(self, 'rotation', rot)
        object.__setattr__(self, 'translation', _finite_vector(self.translation, 3, 'frame translation'))
        # Float copies for single points and orientations, mapped every control cycle (real2sim, sim2real):
        # Python floats beat numpy's per-call overhead on 3-vectors.
        object.__setattr__(self, '_rows', tuple(tuple(row) for row in rot.tolist()))
        object.__setattr__(self, '_offset', tuple(self.translation.tolist()))
        object.__setattr__(self, '_turn', tuple(matrix_to_quat(rot).tolist()))

    @classmethod
    def identity(cls) -> Frame:
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def of(cls, pose: Any) -> Frame:
        """A Frame from a Frame, a 4x4 matrix, (x, y, z, yaw), (pos, quat wxyz) or (pos, 3x3 rotation)."""
        if isinstance(pose, Frame):
            return pose
        if isinstance(pose, str | bytes):
            raise ValueError(f'a pose must be numbers, not the text {pose!r}')
        if isinstance(pose, np.ndarray) and pose.shape == (4, 4):
            return cls(pose[:3, :3], pose[:3, 3])
        if isinstance(pose, Sequence | np.ndarray) and len(pose) == 4 and all(np.ndim(v) == 0 for v in pose):
            x, y, z, yaw = _finite_vector(pose, 4, '(x, y, z, yaw) pose')
            c, s = np.cos(yaw), np.sin(yaw)
            return cls(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), (x, y, z))
        if isinstance(pose, Sequence | np.ndarray) and len(pose) == 2:
            pos, orientation = pose
            orientation = np.asarray(orientation, dtype=np.float64)
            if orientation.shape == (4,):
                return cls(quat_to_matrix(orientation), pos)
            if orientation.shape == (3, 3):
                return cls(orientation, pos)
        raise ValueError('a pose must be a Frame, a 4x4 matrix, (x, y, z, yaw), (position[3], quaternion '
                         f'wxyz[4]) or (position[3], rotation[3x3]); got {type(pose).__name__}')

    @property
    def matrix(self) -> np.ndarray:
        out = np.eye(4)
        out[:3, :3] = self.rotation
        out[:3, 3] = self.translation
        return out

    @property
    def quat(self) -> np.ndarray:
        return matrix_to_quat(self.rotation)

    def inverse(self) -> Frame:
        return Frame(self.rotation.T, -self.rotation.T @ self.translation)

    def compose(self, child: Frame) -> Frame:
        """``self * child``: the child frame expressed in this frame's parent."""
        return Frame(self.rotation @ child.rotation, self.rotation @ child.translation + self.translation)

    def apply(self, points: Any) -> np.ndarray:
        """Map point(s) from this frame's child coordinates to its parent's (shape (3,) or (N, 3))."""
        p = np.asarray(points, dtype=np.float64)
        if p.shape == (3,):
            return np.array(self.apply_point(p.tolist()))
        return p @ self.rotation.T + self.translation

    def apply_point(self, point) -> tuple[float, float, float]:
        """:meth:`apply` for one point given as 3 floats (no checks: the hot path of the control loop)."""
        x, y, z = point
        (r00, r01, r02), (r10, r11, r12), (r20, r21, r22) = self._rows
        tx, ty, tz = self._offset
        return (r00 * x + r01 * y + r02 * z + tx, r10 * x + r11 * y + r12 * z + ty,
                r20 * x + r21 * y + r22 * z + tz)

    def rotate_quat(self, quat: Any) -> np.ndarray:
        """An orientation (wxyz) expressed in the child frame, re-expressed in the parent frame
        (normalised, w >= 0)."""
        q = _finite_vector(quat, 4, 'quaternion')
        norm = math.sqrt(float(q @ q))
        if norm < 1e-9:
            raise ValueError('quaternion has zero norm')
        bw, bx, by, bz = (v / norm for v in q.tolist())
        aw, ax, ay, az = self._turn
        # the Hamilton product turn * q: the rotation matrix product rotation @ R(q) as a quaternion
        out = (aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
               aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw)
        scale = 1.0 / math.sqrt(sum(v * v for v in out))
        if out[0] < 0:
            scale = -scale
        return np.array([v * scale for v in out])


def default_task_frame(task: str | None = None) -> Frame:
    """The single-task station: Meta-World's world frame seen from the robot base, i.e. the inverse of
    the base's placement in ``task``'s world (:func:`legion_kuka.description.base_pose`; None or a
    task without its own placement: ``METAWORLD_BASE_POSE``)."""
    from legion_kuka.description import base_pose

    return Frame.of(base_pose(task)).inverse()
