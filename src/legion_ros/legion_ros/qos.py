"""Named QoS profiles of the LEGION-ROS graph, one per kind of traffic.

Picking a profile by the role of the topic (not per call site) keeps publishers and subscribers
compatible across nodes written by different people:

* ``SENSOR``  -- subscriptions to high-rate measurements (joint states, observations). Best effort,
  keep last 5: a stale sample is worthless, and a best-effort reader accepts both best-effort and
  reliable writers (a real ``joint_state_broadcaster`` publishes reliable).
* ``STATE``   -- publishers of measurements that a driver would publish (reliable, keep last 10, as
  ros2_control's broadcasters do), so reliable *and* best-effort readers (``ros2 bag``, rviz) match.
* ``COMMAND`` -- joint/gripper commands: reliable, keep last 1. Only the newest target matters; an
  old one queued behind it would make the arm jump back.
* ``LATCHED`` -- slowly changing state that late joiners must see (e-stop, status, the active step
  of a run, an instruction): reliable + transient local, depth 1.

:class:`Watchdog` is the deadline helper: a node feeds it on every message and gets a callback when
the stream goes stale (it uses a timer, not the DDS ``deadline`` policy, so it behaves the same
against every writer, whatever QoS that writer offers).
"""
from __future__ import annotations

from collections.abc import Callable

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

SENSOR = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                    reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
STATE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                   reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
COMMAND = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)

PROFILES = {'sensor': SENSOR, 'state': STATE, 'command': COMMAND, 'latched': LATCHED}


def profile(name: str) -> QoSProfile:
    """The profile called ``name`` (for parameters such as ``qos: sensor``), with a clear error."""
    try:
        return PROFILES[name.lower()]
    except KeyError:
        raise ValueError(f'unknown QoS profile {name!r}; choose one of {sorted(PROFILES)}') from None


def with_deadline(base: QoSProfile, period_s: float) -> QoSProfile:
    """A copy of ``base`` that also asks DDS for a message at least every ``period_s`` seconds."""
    if not period_s > 0:
        raise ValueError(f'deadline period must be > 0 s, got {period_s}')
    return QoSProfile(history=base.history, depth=base.depth, reliability=base.reliability,
                      durability=base.durability, deadline=Duration(seconds=period_s))


class Watchdog:
    """Calls ``on_stale(age_s)`` once when no :meth:`feed` came for ``timeout_s``; re-arms on feed.

    ``age_s`` is ``None`` when nothing was ever fed. The check runs on a node timer at a quarter of
    the timeout, so a stale stream is noticed within 1.25 x ``timeout_s``.
    """

    def __init__(self, node, timeout_s: float, on_stale: Callable[[float | None], None],
                 on_fresh: Callable[[], None] | None = None) -> None:
        if not timeout_s > 0:
            raise ValueError(f'watchdog timeout must be > 0 s, got {timeout_s}')
        self._node = node
        self.timeout_s = float(timeout_s)
        self._on_stale = on_stale
        self._on_fresh = on_fresh
        self._last_ns: int | None = None
        self._started_ns = node.get_clock().now().nanoseconds
        self.stale = False
        self._timer = node.create_timer(self.timeout_s / 4.0, self._check)

    def feed(self) -> None:
        self._last_ns = self._node.get_clock().now().nanoseconds
        if self.stale:
            self.stale = False
            if self._on_fresh is not None:
                self._on_fresh()

    def age_s(self) -> float | None:
        if self._last_ns is None:
            return None
        return (self._node.get_clock().now().nanoseconds - self._last_ns) * 1e-9

    def _check(self) -> None:
        now = self._node.get_clock().now().nanoseconds
        reference = self._last_ns if self._last_ns is not None else self._started_ns
        if not self.stale and (now - reference) * 1e-9 > self.timeout_s:
            self.stale = True
            self._on_stale(self.age_s())

    def destroy(self) -> None:
        self._node.destroy_timer(self._timer)
