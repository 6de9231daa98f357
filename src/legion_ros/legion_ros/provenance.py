"""Message helpers of the decision path: checked array decoding, source stamps, raw strings.

The decision path (joint state -> observation -> action -> joint command) uses only standard
messages, and ``std_msgs/*MultiArray`` has no header. To make the latency of every command
attributable to the joint-state sample it was computed from, each array carries its *source stamp*
(the ``header.stamp`` of that joint state, in nanoseconds) in the label of its single layout
dimension: ``'observation@1700000000123456789'``. Drivers read only ``data``, so the label is
harmless on the wire to a real ``forward_position_controller``.

Inputs are untrusted: :func:`read_array` rejects wrong sizes and non-finite values with a message
saying what was wrong, and :func:`decode_string` reads a ``std_msgs/String`` from its raw CDR bytes so
that invalid UTF-8 is detected instead of silently replaced.
"""
from __future__ import annotations

import array
import struct

import numpy as np
from std_msgs.msg import Float32MultiArray, Float64MultiArray, MultiArrayDimension

from legion_ros.interfaces import BadMessageError  # (its home: interfaces; importers of it here keep working)
from legion_ros.node_base import Param


def stamp_ns(stamp) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def array_message(values, label: str, source_ns: int | None = None, double: bool = False):
    """A Float32MultiArray (or Float64 with ``double``) whose one dimension is ``label[@source_ns]``."""
    message = Float64MultiArray() if double else Float32MultiArray()
    data = np.asarray(values, dtype=np.float64 if double else np.float32).reshape(-1)
    # An array.array of the field's type is taken as is; a list would be range-checked value by value.
    message.data = array.array('d' if double else 'f', data.tobytes())
    name = label if source_ns is None else f'{label}@{int(source_ns)}'
    message.layout.dim = [MultiArrayDimension(label=name, size=data.size, stride=data.size)]
    return message


def source_of(message) -> int | None:
    """The source stamp [ns] carried by an array message, None if it has none."""
    dims = message.layout.dim
    if not dims:
        return None
    _, sep, stamp = dims[0].label.rpartition('@')
    if not sep:
        return None
    try:
        return int(stamp)
    except ValueError:
        return None


def read_array(message, size: int | tuple[int, ...], what: str) -> np.ndarray:
    """The message's data as float64, checked: the expected size(s) and only finite values."""
    sizes = (size,) if isinstance(size, int) else tuple(size)
    data = np.asarray(message.data, dtype=np.float64)
    if data.size not in sizes:
        expected = ' or '.join(map(str, sizes))
        raise BadMessageError(f'{what} has {data.size} values, expected {expected}')
    if not np.isfinite(data).all():
        raise BadMessageError(f'{what} contains NaN or inf')
    return data


def decode_string(raw: bytes) -> bytes:
    """The payload bytes of a CDR-serialised ``std_msgs/String`` (no UTF-8 decoding yet)."""
    if len(raw) < 8:
        raise BadMessageError('truncated std_msgs/String message')
    little = raw[1] == 1  # CDR encapsulation: 0x0001 = little endian, 0x0000 = big endian
    (length,) = struct.unpack('<I' if little else '>I', raw[4:8])
    payload = raw[8:8 + length]
    if len(payload) != length:
        raise BadMessageError('truncated std_msgs/String message')
    return payload[:-1] if payload.endswith(b'\x00') else payload


def read_joint_positions(message, joint_names: list[str]) -> tuple[np.ndarray, int]:
    """(positions in ``joint_names`` order, stamp in ns) of a ``sensor_msgs/JointState``.

    Raises :class:`BadMessageError` for mismatched name/position counts, missing joints (another
    driver profile's names) and NaN/inf. Whether the stamp is acceptable is :class:`StampWindow`'s call.
    """
    names = list(message.name)
    if len(message.position) != len(names):
        raise BadMessageError(f'{len(names)} names but {len(message.position)} positions')
    if names == joint_names:  # the driver's own order (every cycle): no reordering
        q = np.array(message.position, dtype=np.float64)
    else:
        missing = [n for n in joint_names if n not in names]
        if missing:
            raise BadMessageError(f'joint state lacks joints {missing} (got {names})')
        q = np.array([message.position[names.index(n)] for n in joint_names], dtype=np.float64)
    if not np.isfinite(q).all():
        raise BadMessageError('joint positions contain NaN or inf')
    return q, stamp_ns(message.header.stamp)


# The one home of the acceptance window (both nodes that read joint states declare this parameter).
STAMP_WINDOW_S = 0.5
STAMP_WINDOW_PARAM = Param(STAMP_WINDOW_S, 'a joint state stamped further than this ahead of or behind this '
                           'node\'s clock is rejected (driver and graph clocks must agree this well) [s]',
                           range=(0.01, 60.0))


class StampWindow:
    """Which joint-state stamps a node accepts, judged against its own (receiving) clock.

    * A stamp more than ``window_s`` ahead of or behind the receiving clock is rejected, and it never
      becomes the reference for the next one: a single message stamped an hour ahead used to make
      every real driver message "older than the previous" until the clock caught up.
    * Inside the window stamps must not go backwards. The previous stamp counts only while it is itself
      inside the window, so after a clock jump (driver restart, NTP step, simulator reset with sim time)
      ordering starts again from the first stamp that agrees with the receiving clock: at most
      ``window_s`` of rejected samples, with no message counting and no reset needed (:meth:`reset`
      forgets the reference at once). Why not "re-anchor after N messages": N stamps from a clock that
      disagrees with ours prove nothing about freshness; agreement with the receiving clock does.
    * Before the receiving clock runs (sim time before the first ``/clock``: 0) only the order counts.
    """

    def __init__(self, window_s: float = STAMP_WINDOW_S) -> None:
        if not window_s > 0:
            raise ValueError(f'window_s must be positive, got {window_s}')
        self.window_ns = int(window_s * 1e9)
        self.previous_ns: int | None = None

    def check(self, stamp: int, now: int) -> int:
        """``stamp`` [ns] if acceptable at receiving time ``now`` [ns], else :class:`BadMessageError`."""
        running = now > 0
        if running and stamp > now + self.window_ns:
            raise BadMessageError(f'stamp is {(stamp - now) * 1e-9:.3f} s ahead of this node\'s clock '
                                  f'(window {self.window_ns * 1e-9:g} s)')
        if running and stamp < now - self.window_ns:
            raise BadMessageError(f'stamp is {(now - stamp) * 1e-9:.3f} s behind this node\'s clock (window '
                                  f'{self.window_ns * 1e-9:g} s): stale, or the clocks disagree')
        previous = self.previous_ns
        if previous is not None and stamp < previous and (
                not running or abs(previous - now) <= self.window_ns):
            raise BadMessageError(f'stamp {stamp} ns is older than the previous {previous} ns')
        self.previous_ns = stamp
        return stamp

    def reset(self) -> None:
        self.previous_ns = None

    def believe(self, source: int | None, newest: int | None) -> int | None:
        """A message's source stamp [ns] if believable, else None: one more than the window ahead of the
        newest joint state seen (a hostile label) would mark every later cycle as already commanded."""
        if source is not None and newest is not None and source - newest > self.window_ns:
            return None
        return source
