"""Real2Sim: the arm's and the objects' state, as a Meta-World-trained policy saw it in training.

A policy trained in Meta-World reads its observation in Meta-World's world frame (the *task frame*):
hand position, gripper opening, object positions and the goal. On the real arm (or its MuJoCo twin)
the same quantities are known in the robot base frame: joint positions from the driver, object poses
from perception (or the twin's ground truth). This module does the coordinate transformation and
assembles the observation, nothing else: no ROS, no simulator, no state beyond the previous frame that
Meta-World's 39-d layout stacks.

Conventions: frames (``task_frame``, the pose of the task frame in the robot base frame) and
quaternions (w, x, y, z) as :mod:`legion_kuka.frames` defines them for all of legion_kuka;
``gripper_opening`` is Meta-World's normalised finger distance in [0, 1] (0 closed, 1 fully open:
distance between the fingers divided by 0.1 m).

Layouts: ``legion12`` = hand xyz, object 1 xyz, object 2 xyz (zeros if the task has one object),
goal xyz (the LEGION paper's 12-d observation); ``full39`` = Meta-World's own 39-d observation: hand
xyz, gripper opening, object 1 xyz + quat, object 2 xyz + quat, the previous frame of these 18 values,
goal xyz. Its quaternions are written as Meta-World writes them for the task, which is not one
convention (:func:`metaworld_quat`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from legion_kuka.description import GRIPPER
from legion_kuka.frames import Frame, _finite_vector, default_task_frame, quat_to_matrix
from legion_kuka.gripper import closing_of, observed_opening

LAYOUTS = ('legion12', 'full39')
OBSERVATION_SIZE = {'legion12': 12, 'full39': 39}
MAX_OBJECTS = 2
OBJECT_KEYS = ('object_1', 'object_2')
# Meta-World's v3 tasks write an object's orientation into the observation in one of two conventions:
# these tasks give MuJoCo's body quaternion (w, x, y, z), the others scipy's Rotation.as_quat() of a
# geom's rotation matrix (x, y, z, w, with scipy's choice of sign), or zeros for articulated objects.
# A policy reads those four numbers, so the twin and the real arm must write them the same way.
METAWORLD_WXYZ_TASKS = frozenset({
    'assembly-v3', 'basketball-v3', 'bin-picking-v3', 'box-close-v3', 'button-press-topdown-v3',
    'button-press-topdown-wall-v3', 'button-press-v3', 'button-press-wall-v3', 'coffee-button-v3',
    'dial-turn-v3', 'disassemble-v3', 'door-lock-v3', 'door-unlock-v3', 'drawer-open-v3',
    'faucet-close-v3', 'faucet-open-v3', 'hammer-v3', 'hand-insert-v3', 'peg-unplug-side-v3',
    'pick-out-of-hole-v3', 'sweep-v3'})


def metaworld_quat(task: str | None, quat_wxyz: Any) -> np.ndarray:
    """An orientation (unit quaternion w, x, y, z) as ``task``'s Meta-World observation writes it (see
    ``METAWORLD_WXYZ_TASKS``); unknown tasks and None take scipy's convention, the more common one."""
    q = _finite_vector(quat_wxyz, 4, 'quaternion')
    if task in METAWORLD_WXYZ_TASKS:
        # MuJoCo's body quaternions of these scenes keep w >= 0; at w = 0 (a half turn) q and -q both
        # would, so the first non-zero component decides: one answer for the one rotation.
        lead = next((v for v in q.tolist() if v != 0.0), 0.0)
        return q if lead > 0 else -q
    from scipy.spatial.transform import Rotation

    # scipy's own matrix -> quaternion, so that its sign choice is reproduced exactly.
    return Rotation.from_matrix(quat_to_matrix(q)).as_quat()


def quat_from_metaworld(task: str | None, values: Any) -> np.ndarray:
    """The unit quaternion (w, x, y, z) of the four numbers ``task``'s Meta-World observation gives for
    an object's orientation (the inverse of :func:`metaworld_quat`, up to sign)."""
    q = _finite_vector(values, 4, 'Meta-World quaternion')
    return q.copy() if task in METAWORLD_WXYZ_TASKS else np.array([q[3], q[0], q[1], q[2]])


def _object_list(object_poses: Any) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Normalise object poses to [(pos, quat|None), ...] in Meta-World's order (object 1, object 2)."""
    if object_poses is None:
        return []
    if isinstance(object_poses, Mapping):
        unknown = set(object_poses) - set(OBJECT_KEYS)
        if unknown:
            raise ValueError(f'object_poses keys must be among {OBJECT_KEYS}, got {sorted(unknown)}')
        if 'object_2' in object_poses and 'object_1' not in object_poses:
            raise ValueError("object_poses has 'object_2' but no 'object_1'")
        items = [object_poses[k] for k in OBJECT_KEYS if k in object_poses]
    else:
        items = list(object_poses)
    if len(items) > MAX_OBJECTS:
        raise ValueError(f'at most {MAX_OBJECTS} objects fit the observation, got {len(items)}')
    out = []
    for index, item in enumerate(items, start=1):
        if isinstance(item, tuple | list) and len(item) == 2 and np.size(item[0]) == 3:
            pos = _finite_vector(item[0], 3, f'object {index} position')
            quat = _finite_vector(item[1], 4, f'object {index} quaternion')
            # A zero quaternion means "no orientation" (Meta-World's articulated objects): zeros stay.
            out.append((pos, quat if np.linalg.norm(quat) > 1e-9 else None))
        elif np.size(np.asarray(item, dtype=np.float64)) == 3:
            out.append((_finite_vector(item, 3, f'object {index} position'), None))
        else:
            raise ValueError(f'object {index} must be a position[3] or (position[3], quaternion wxyz[4])')
    return out


#: The iiwa gripper's opening as Meta-World observes it fully closed on nothing (finger distance / 0.1 m).
GRIPPER_CLOSED_OPENING = observed_opening(GRIPPER.finger_stroke)
#: How fast the observed opening follows a command: the gripper's fastest speed over the 0.1 m unit.
GRIPPER_OPENING_RATE = GRIPPER.speed_range[1] / 0.1


class GripperEstimate:
    """The finger opening for an arm whose gripper reports none, from the commands it was sent.

    A command is a position (:func:`legion_kuka.gripper.command_from_effort`: sim2real sends where
    Meta-World's finger would be), which the gripper moves to at its fastest speed: the estimate goes
    to the command's opening in the observation's units at ``rate`` per second. An object between the
    fingers stops them where the estimate goes on closing: with a gripper that reports its opening,
    use that instead. Times are seconds on one clock.
    """

    def __init__(self, opening: float = 1.0, rate: float = GRIPPER_OPENING_RATE) -> None:
        if not rate > 0:
            raise ValueError(f'rate must be positive, got {rate}')
        self.rate = float(rate)
        self._opening = min(max(float(opening), GRIPPER_CLOSED_OPENING), 1.0)
        self._target = self._opening
        self._since: float | None = None

    def command(self, value: float, now_s: float) -> None:
        """The gripper was sent ``value`` in [-1 open, +1 close] at ``now_s``."""
        if not math.isfinite(value) or not math.isfinite(now_s):
            raise ValueError(f'gripper command and time must be finite, got {value} at {now_s}')
        self.opening(now_s)
        self._target = observed_opening(closing_of(value))

    def opening(self, now_s: float) -> float:
        """The estimated opening at ``now_s`` (no earlier than the last call: time does not run back)."""
        if self._since is not None and now_s > self._since:
            step = self.rate * (now_s - self._since)
            self._opening += min(max(self._target - self._opening, -step), step)
        if self._since is None or now_s > self._since:
            self._since = now_s
        return self._opening


class Real2Sim:
    """Builds the policy observation of one task station from the arm's and the objects' state.

    ``kinematics`` is anything with ``fk(q) -> (position, rotation)`` of the tool centre point in the
    robot base frame (:class:`legion_kuka.kinematics.IiwaKinematics`). ``task_frame`` is the pose of
    the station's task frame (its Meta-World world frame) in the robot base frame; if omitted, the
    single-task placement of ``task`` (:func:`legion_kuka.description.base_pose`) is used.
    """

    def __init__(self, kinematics: Any, layout: str = 'legion12', task_frame: Any = None,
                 task: str | None = None) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f'unknown observation layout {layout!r}; choose one of {LAYOUTS}')
        if not callable(getattr(kinematics, 'fk', None)):
            raise TypeError('kinematics must provide fk(q) -> (position, rotation)')
        self.kinematics = kinematics
        self.layout = layout
        self.task = task  # the station's Meta-World task: how full39 writes quaternions
        self.set_task_frame(task_frame)
        self._previous: list[float] | None = None  # full39: the last frame (18 values)

    @property
    def size(self) -> int:
        return OBSERVATION_SIZE[self.layout]

    def set_task_frame(self, task_frame: Any) -> None:
        """Switch to another station (a workcell has one task frame per task)."""
        if task_frame is None:
            task_frame = default_task_frame(self.task)
        self.task_frame = Frame.of(task_frame)
        self._base_to_task = self.task_frame.inverse()
        self._previous = None

    def reset(self) -> None:
        """Forget the previous frame (call at the start of an episode; full39 stacks two frames)."""
        self._previous = None

    def hand_position(self, joint_positions: Any) -> np.ndarray:
        """Tool centre point in the task frame."""
        q = _finite_vector(joint_positions, 7, 'joint_positions')
        pos, _ = self.kinematics.fk(q)
        return np.array(self._base_to_task.apply_point(np.asarray(pos, dtype=np.float64).reshape(3).tolist()))

    def observation(self, joint_positions: Any, gripper_opening: float, object_poses: Any = None,
                    goal: Any = None) -> np.ndarray:
        """The observation in this instance's layout (see the module docstring).

        ``object_poses``: up to two objects, robot base frame, as a sequence (object 1 first) or a
        mapping with keys ``object_1``/``object_2``; each a position[3] or (position[3], quat wxyz[4]).
        ``goal``: goal position[3] in the robot base frame (None: zeros, Meta-World's hidden goal).
        """
        if self.layout == 'legion12':
            self._check_opening(gripper_opening)
            return self.legion12(joint_positions, object_poses, goal)
        return self.full39(joint_positions, gripper_opening, object_poses, goal)

    @staticmethod
    def _check_opening(gripper_opening: float) -> float:
        try:
            opening = float(gripper_opening)
        except (TypeError, ValueError):
            raise ValueError(f'gripper_opening must be a number, got {gripper_opening!r}') from None
        if not math.isfinite(opening):
            raise ValueError(f'gripper_opening contains NaN or inf: {opening}')
        if not -1e-6 <= opening <= 1.0 + 1e-6:
            raise ValueError(f'gripper_opening must be in [0, 1] (normalised finger distance), got {opening}')
        return min(max(opening, 0.0), 1.0)

    def _current(self, joint_positions: Any, object_poses: Any,
                 goal: Any) -> tuple[np.ndarray, list, np.ndarray]:
        hand = self.hand_position(joint_positions)
        objects = []
        for pos, quat in _object_list(object_poses):
            objects.append((self._base_to_task.apply(pos),
                            None if quat is None else self._base_to_task.rotate_quat(quat)))
        goal_task = np.zeros(3) if goal is None else self._base_to_task.apply(
            _finite_vector(goal, 3, 'goal'))
        return hand, objects, goal_task

    def legion12(self, joint_positions: Any, object_poses: Any = None, goal: Any = None) -> np.ndarray:
        """The 12-d LEGION observation (the gripper opening is not part of it)."""
        hand, objects, goal_task = self._current(joint_positions, object_poses, goal)
        obs = np.zeros(12)
        obs[0:3] = hand
        for i, (pos, _) in enumerate(objects):
            obs[3 + 3 * i:6 + 3 * i] = pos
        obs[9:12] = goal_task
        return obs

    def full39(self, joint_positions: Any, gripper_opening: float, object_poses: Any = None,
               goal: Any = None, previous: Any = None) -> np.ndarray:
        """Meta-World's 39-d observation. The previous frame is ``previous`` (18 values) if given,
        else the one of this instance's last call, else the current frame (as Meta-World's reset does).
        Object quaternions that are not given (or given as zeros) are zeros, as Meta-World reports for
        articulated objects.
        """
        opening = self._check_opening(gripper_opening)
        hand, objects, goal_task = self._current(joint_positions, object_poses, goal)
        current = [*hand.tolist(), opening]
        for pos, quat in objects:
            current += pos.tolist()
            current += [0.0] * 4 if quat is None else metaworld_quat(self.task, quat).tolist()
        current += [0.0] * (18 - len(current))
        if previous is not None:
            prev = _finite_vector(previous, 18, 'previous frame').tolist()
        else:
            prev = current if self._previous is None else self._previous
        self._previous = current
        return np.array(current + prev + goal_task.tolist())

    @staticmethod
    def legion12_from_full39(obs39: Any) -> np.ndarray:
        """The 12-d LEGION observation contained in a 39-d Meta-World observation."""
        obs = _finite_vector(obs39, 39, 'full39 observation')
        return np.concatenate([obs[0:3], obs[4:7], obs[11:14], obs[36:39]])


class PolicyStepFrames:
    """Meta-World's frame stacking at the policy's rate, for policies trained on the full39 layout.

    Meta-World's 39-d observation carries the frame of the previous *env step* (obs[18:36]); one
    policy step on the arm is one env step in training (both move the hand at most 1 cm), but real2sim
    assembles an observation every 10 ms control cycle, so its previous frame is a tenth of a policy
    step old and the motion it shows is a tenth of what the policy learnt to read. ``observe`` gives
    the policy the frame it acted on last instead (the current one at the start of a step, as
    Meta-World's reset does).
    """

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        """A new step (task or scene): the next observation stacks itself, like a reset."""
        self._previous = None

    def observe(self, observation: Any) -> np.ndarray:
        """The 39-d observation with obs[18:36] the frame of the previous call (this one's at the first)."""
        obs = np.array(observation, dtype=np.float64).reshape(-1)
        if obs.shape != (39,):
            raise ValueError(f'expected a 39-d observation, got shape {obs.shape}')
        current = obs[:18].copy()
        obs[18:36] = current if self._previous is None else self._previous
        self._previous = current
        return obs
