"""The gripper's command: opening, speed and grip force set apart, as a real parallel gripper takes them.

A real gripper (the original LEGION used a Robotiq 2F-85) is sent a target opening, the speed to move
at and the force to grip with: the fingers travel towards the opening at that speed, and an object
that stops them on the way is squeezed with that force. :class:`GripperCommand` is that command, its
limits are the ones of :data:`legion_kuka.description.GRIPPER` (opening 0 to ``max_opening``, speed
and force ranges of the 2F-85); the twin (:class:`legion_kuka.twin.Twin`) simulates it with a
force-limited position servo on each finger, so the commanded force is the force on the object.

A Meta-World policy has one gripper channel, the 4th action in [-1, 1], and the driver's gripper
topic carries one float too (``std_msgs/Float64``). In Meta-World the action is the target of each
finger's position servo, in metres of closing (``ctrl = (a, -a)``; the stroke is 4 cm, so anything
beyond 0.04 closes fully and anything below 0 opens), and the servo drives a heavy, damped finger: a
small value hardly moves it for the first steps, a full one closes it in about 12 steps.
:class:`MetaworldFinger` is that finger, stepped once per policy step: sim2real sends the gripper where
Meta-World's finger would be after the step (:mod:`legion_kuka.sim2real`), so the real fingers move as
the ones the policy learnt with, however long a policy step lasts.

:func:`command_from_effort` is the one mapping from the topic's float to a command: the opening where
Meta-World's servo would hold the finger, ``max_opening - 2 * clip(effort, 0, stroke)``, at the
gripper's fastest speed (the float is a position: sim2real has already shaped the motion; a full
step's travel takes the fingers under a fifth of a 10 Hz step), and ``GRIPPER.grip_force`` (100 N)
unless given. Before 2026-12-07 the float was the action times sim2real's speed scale and the speed
followed it; the gripper's slowest speed (20 mm/s) then closed the fingers at once under a small value,
where Meta-World's hardly moved them, and the pad came down on the puck (docs/training.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from legion_kuka.description import GRIPPER

#: Meta-World's finger drive (xyz_base.xml, every task XML): position servos on r_close / l_close ...
FINGER_KP = 400.0
#: ... and the finger joints' reflected inertia and damping, which set how fast the fingers close
#: (legion_kuka.metaworld_kuka builds them into the KUKA scene).
FINGER_ARMATURE = 100.0
FINGER_DAMPING = 1000.0
#: Meta-World's env step: ``frame_skip`` 5 physics steps of 2.5 ms.
METAWORLD_SUBSTEPS = 5
METAWORLD_SUBSTEP_S = 0.0025
#: Meta-World's normalised finger distance (obs[3]) is ``(OPEN_FINGER_DISTANCE - 2 * closing) / 0.1``,
#: clipped to [0, 1] (measured on the KUKA scene: 0.2477 at 39.6 mm closed, 0.9034 at 6.8 mm).
OPEN_FINGER_DISTANCE = 0.104


@dataclass(frozen=True)
class GripperCommand:
    """Target opening between the pads (m), speed of the opening (m/s), grip force (N); checked against
    :data:`~legion_kuka.description.GRIPPER`'s limits (:func:`gripper_command` clips instead)."""

    opening_m: float
    speed_m_s: float
    force_n: float

    def __post_init__(self) -> None:
        for name, value, (low, high) in self._fields():
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f'gripper {name} must be a finite number, got {value!r}')
            if not low <= value <= high:
                raise ValueError(f'gripper {name} {value} is outside [{low}, {high}]')

    def _fields(self):
        return (('opening_m', self.opening_m, (0.0, GRIPPER.max_opening)),
                ('speed_m_s', self.speed_m_s, GRIPPER.speed_range),
                ('force_n', self.force_n, GRIPPER.force_range))


def gripper_command(opening_m: float, speed_m_s: float | None = None, force_n: float | None = None,
                    *, clip: bool = True) -> GripperCommand:
    """A command; NaN or inf is refused (ValueError), an out-of-range value clipped to the gripper's
    limits like a driver's command limits (``clip=False``: refused). Speed None: the gripper's
    fastest; force None: ``GRIPPER.grip_force``."""
    values = {'opening_m': opening_m,
              'speed_m_s': GRIPPER.speed_range[1] if speed_m_s is None else speed_m_s,
              'force_n': GRIPPER.grip_force if force_n is None else force_n}
    limits = {'opening_m': (0.0, GRIPPER.max_opening), 'speed_m_s': GRIPPER.speed_range,
              'force_n': GRIPPER.force_range}
    for name, value in values.items():
        value = _finite(name, value)
        if clip:
            value = min(max(value, limits[name][0]), limits[name][1])
        values[name] = value
    return GripperCommand(**values)


def _finite(name: str, value: Any) -> float:
    """``value`` as a float; a ValueError naming the gripper's ``name`` if it is no number or not finite."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f'gripper {name} must be a number, got {value!r}') from None
    if not math.isfinite(value):
        raise ValueError(f'gripper {name} must be finite, got {value}')
    return value


def command_from_effort(effort: float, *, speed_m_s: float | None = None,
                        force_n: float | None = None) -> GripperCommand:
    """The command for the gripper float ``effort`` in [-1 open, +1 close] (see the module): the
    opening where Meta-World's servo holds a finger targeted at ``effort``, at the gripper's fastest
    speed unless ``speed_m_s``, with ``force_n`` or the default grip force."""
    return gripper_command(GRIPPER.max_opening - 2.0 * closing_of(effort), speed_m_s, force_n)


def closing_of(effort: float) -> float:
    """Where Meta-World's servo holds a finger targeted at the gripper float ``effort`` (m closed per
    finger: 0 for any value <= 0, the stroke for any beyond it)."""
    return min(max(_finite('effort', effort), 0.0), GRIPPER.finger_stroke)


def observed_opening(closing: float) -> float:
    """Meta-World's observation of a finger ``closing`` metres closed (obs[3], 1 = open)."""
    return min(max((OPEN_FINGER_DISTANCE - 2.0 * closing) / 0.1, 0.0), 1.0)


class MetaworldFinger:
    """Meta-World's finger, one env step at a time: a position servo (``FINGER_KP``) on a joint with
    ``FINGER_ARMATURE`` and ``FINGER_DAMPING``, within the stroke, integrated as MuJoCo's Euler
    integrator does (damping implicit). ``step(action)`` returns the closing (m, 0 = open) after one env
    step with Meta-World's gripper action ``action``; an object between the fingers is not modelled
    (the gripper's force limit squeezes it)."""

    def __init__(self, closing: float = 0.0) -> None:
        self.reset(closing)

    def reset(self, closing: float = 0.0) -> None:
        """At rest, ``closing`` metres closed (0: open, as after Meta-World's reset)."""
        self.closing = min(max(_finite('closing', closing), 0.0), GRIPPER.finger_stroke)
        self.speed = 0.0

    def step(self, action: float) -> float:
        target = min(max(_finite('action', action), -1.0), 1.0)
        dt, x, v = METAWORLD_SUBSTEP_S, self.closing, self.speed
        mass = FINGER_ARMATURE + dt * FINGER_DAMPING  # the damping integrated implicitly
        for _ in range(METAWORLD_SUBSTEPS):
            v = (FINGER_ARMATURE * v + dt * FINGER_KP * (target - x)) / mass
            x += dt * v
            if x <= 0.0 or x >= GRIPPER.finger_stroke:  # the joint's range stops it
                x, v = min(max(x, 0.0), GRIPPER.finger_stroke), 0.0
        self.closing, self.speed = x, v
        return x


def effort_of(command: GripperCommand) -> float:
    """The gripper value whose opening is ``command``'s (inverse of :func:`command_from_effort` in the
    opening; fully open reads as -1, as Meta-World's experts open)."""
    closing = (GRIPPER.max_opening - command.opening_m) / 2.0
    return closing if closing > 0.0 else -1.0
