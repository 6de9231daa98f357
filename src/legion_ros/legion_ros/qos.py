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
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

SENSOR = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                    reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
STATE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                   reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
COMMAND = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
