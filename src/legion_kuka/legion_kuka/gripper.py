"""The gripper's command: opening, speed and grip force set apart, as a real parallel gripper takes them.

A real gripper (the original LEGION used a Robotiq 2F-85) is sent a target opening, the speed to move
at and the force to grip with: the fingers travel towards the opening at that speed, and an object
that stops them on the way is squeezed with that force. :class:`GripperCommand` is that command, its
limits are the ones of :data:`legion_kuka.description.GRIPPER` (opening 0 to ``max_opening``, speed
and force ranges of the 2F-85); the twin (:class:`legion_kuka.twin.Twin`) simulates it with a
force-limited position servo on each finger, so the commanded force is the force on the object.

A Meta-World policy has one gripper channel, the 4th action in [-1, 1], and the driver's gripper
topic carries one float too (``std_msgs/Float64``, sim2real's time-scaled action). In Meta-World that
value is the target of each finger's position servo, in metres of closing (``ctrl = (a, -a)``, the
finger stroke is 4 cm, so anything beyond 0.04 closes fully and anything below 0 opens), and the
fingers move towards it at ``FINGER_KP / FINGER_DAMPING`` = 0.4 m/s per metre it lies ahead of them.
:func:`command_from_effort` is the one mapping from that float to a command:

- opening: where Meta-World's servo would settle, ``max_opening - 2 * clip(effort, 0, stroke)``;
- speed: Meta-World's finger speed for the value at mid-stroke, ``2 * 0.4 /s * |effort - 0.02 m|`` of
  the opening, clipped to the gripper's speed range: sim2real's time scaling carries over, the fingers
  travel about as far per policy step as in training (the twin's fingers, closing at sim2real's 0.125
  from open, stay within 3 mm of the former twin's);
- force: ``GRIPPER.grip_force`` (100 N) unless given: the grip no longer weakens with the speed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from legion_kuka.description import GRIPPER
from legion_kuka.metaworld_kuka import FINGER_DAMPING, FINGER_KP

#: Meta-World's finger speed per metre its servo target lies ahead of the finger (1/s).
METAWORLD_FINGER_RATE = FINGER_KP / FINGER_DAMPING


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
    """The command for Meta-World's gripper value ``effort`` in [-1 open, +1 close] (see the module);
    ``speed_m_s`` / ``force_n`` replace the derived speed / the default force."""
    effort = min(max(_finite('effort', effort), -1.0), 1.0)
    closing = min(max(effort, 0.0), GRIPPER.finger_stroke)
    if speed_m_s is None:  # Meta-World's finger speed for this target, at mid-stroke
        speed_m_s = 2.0 * METAWORLD_FINGER_RATE * abs(effort - GRIPPER.finger_stroke / 2.0)
    speed = speed_m_s
    return gripper_command(GRIPPER.max_opening - 2.0 * closing, speed, force_n)


def effort_of(command: GripperCommand) -> float:
    """The gripper value whose opening is ``command``'s (inverse of :func:`command_from_effort` in the
    opening; fully open reads as -1, as Meta-World's experts open)."""
    closing = (GRIPPER.max_opening - command.opening_m) / 2.0
    return closing if closing > 0.0 else -1.0
