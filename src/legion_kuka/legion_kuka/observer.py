"""What real2sim knows of the scene, and the observation it makes of each joint state (no ROS).

The ``real2sim`` node (``legion_ros.nodes.real2sim``) decodes messages and hands them here; an
:class:`Observer` keeps the newest object poses (paired with their names), the gripper opening (measured,
else estimated from the commands, :class:`legion_kuka.real2sim.GripperEstimate`), the active step's and
the twin's scene task, and turns one joint-state sample into Meta-World's 39-d observation and LEGION's
12-d one, or into nothing when that would mislead the policy:

* no object poses yet (nothing to observe; the arm holds without observations);
* ``require_scene_match`` and the twin still shows another task's scene;
* object poses older than ``objects_timeout_s`` (:class:`StaleObjectsError`);
* joint positions or opening that are not finite (``ValueError`` from :class:`Real2Sim`).

Times are the node clock's seconds (simulated under ``use_sim_time``).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from legion_kuka.real2sim import GripperEstimate, Real2Sim

# Meta-World's observation names its first two objects and the goal; other poses are ignored.
OBJECT_NAMES = ('object_1', 'object_2')
GOAL_NAME = 'goal'
# A measured opening a little outside [0, 1] is sensor noise (clipped); further out it is a wrong unit.
OPENING_TOLERANCE = 0.05


class StaleObjectsError(Exception):
    """The object poses are too old to observe the scene with."""

    def __init__(self, age_s: float) -> None:
        super().__init__(f'object poses are {age_s:.3f} s old')
        self.age_s = age_s


class Observer:
    def __init__(self, real2sim: Real2Sim, objects_timeout_s: float = 1.0, require_scene_match: bool = False,
                 gripper_estimate: GripperEstimate | None = None) -> None:
        self.real2sim = real2sim
        self.objects_timeout_s = objects_timeout_s
        self.require_scene_match = require_scene_match
        self.object_names: list[str] = []
        self.objects: dict[str, Any] | None = None
        self.objects_s: float | None = None          # when the poses arrived
        self.gripper_opening: float | None = None     # measured; None: estimated from the commands
        self.gripper_estimate = gripper_estimate or GripperEstimate()  # Meta-World starts open
        self.task: str | None = None                  # the active step's
        self.scene_task: str | None = None            # the twin's (or the station's) scene

    # -- inputs -----------------------------------------------------------------------------------
    def set_object_names(self, names: Sequence[str]) -> None:
        self.object_names = list(names)

    def set_objects(self, poses: Sequence[tuple[Any, Any]], now_s: float) -> bool:
        """``(position xyz, quaternion wxyz)`` per name, in the order of :meth:`set_object_names`.

        False (and nothing kept) while no names have arrived: nothing to pair the poses with. Raises
        ValueError, keeping the previous poses, when the count does not match or a pose is not finite.
        """
        if not self.object_names:
            return False
        if len(poses) != len(self.object_names):
            raise ValueError(f'{len(poses)} poses for {len(self.object_names)} names {self.object_names}')
        objects = {}
        for name, (position, quat) in zip(self.object_names, poses, strict=True):
            position, quat = np.asarray(position, dtype=float), np.asarray(quat, dtype=float)
            if not (np.all(np.isfinite(position)) and np.all(np.isfinite(quat))):
                raise ValueError(f'pose of {name} contains NaN or inf')
            # Articulated objects (window, drawer handles) have no orientation in Meta-World's
            # observation: a zero quaternion means "position only", not a rotation.
            objects[name] = (position, quat) if np.linalg.norm(quat) > 1e-9 else position
        self.objects, self.objects_s = objects, now_s
        return True

    def measured_opening(self, value: float) -> None:
        """A measured gripper opening in [0, 1]; from now on it wins over the estimate."""
        if not (np.isfinite(value) and -OPENING_TOLERANCE <= value <= 1 + OPENING_TOLERANCE):
            raise ValueError(f'opening {value} is not in [0, 1]')
        self.gripper_opening = min(1.0, max(0.0, float(value)))

    def commanded_gripper(self, value: float, now_s: float) -> None:
        if np.isfinite(value):
            self.gripper_estimate.command(float(value), now_s)

    def start_step(self, task: str | None) -> None:
        """The active step's task (None: no step); a step starts the observation history afresh."""
        self.task = task
        if task is not None:
            self.real2sim.reset()

    def set_station(self, station: dict) -> None:
        """A station description (``frame: {position, quaternion_wxyz}``, optional ``task``).

        Raises ValueError (the frame unchanged) for a pose :class:`legion_kuka.real2sim.Frame` refuses.
        """
        frame = station['frame']
        self.real2sim.set_task_frame((np.asarray(frame['position'], dtype=float),
                                      np.asarray(frame['quaternion_wxyz'], dtype=float)))
        self.set_scene_task(station.get('task', self.scene_task))

    def set_scene_task(self, task: str | None) -> None:
        self.scene_task = self.real2sim.task = task  # how Meta-World writes this task's quaternions

    # -- the observation --------------------------------------------------------------------------
    def observe(self, joint_positions: Any, now_s: float) -> tuple[np.ndarray, np.ndarray] | None:
        """``(full39, legion12)`` of one joint-state sample, or None when there is nothing to observe.

        Raises :class:`StaleObjectsError` for old object poses, ValueError for a sample that cannot be
        observed (NaN, wrong size).
        """
        if self.objects is None:
            return None
        if self.require_scene_match and self.task is not None and self.scene_task != self.task:
            return None  # the twin still shows another task's scene: observing it would mislead the policy
        age_s = now_s - self.objects_s
        if age_s > self.objects_timeout_s:
            raise StaleObjectsError(age_s)
        opening = (self.gripper_opening if self.gripper_opening is not None
                   else self.gripper_estimate.opening(now_s))
        objects = [self.objects[k] for k in OBJECT_NAMES if k in self.objects]
        goal = self.objects.get(GOAL_NAME)
        goal = goal[0] if isinstance(goal, tuple) else goal
        obs39 = self.real2sim.observation(joint_positions, opening, objects, goal)
        return obs39, self.real2sim.legion12_from_full39(obs39)


def hand_offset(value: float) -> float:
    """``value`` if given (>= 0), else the hand offset of the iiwa in the KUKA Meta-World scenes (the
    same arm and gripper in every task): the point the policy calls the hand, not the gripper tcp."""
    return float(value) if value >= 0 else _scene_hand_offset()


@functools.cache  # real2sim and sim2real in one decision_path process: build the scene once
def _scene_hand_offset() -> float:
    from legion_kuka.metaworld_kuka import kuka_env_class

    env = kuka_env_class('reach-v3')()
    try:
        return float(env._kuka_hand_offset)
    finally:
        env.close()
