"""recorder: every topic of a run into a rosbag2 directory (MCAP storage), with run metadata.

The pure-Python counterpart of ``ros2 bag record --all -s mcap`` for installs without rosbag2: topics
are discovered periodically, subscribed with ``raw=True`` and their CDR bytes handed unchanged to
``rosbags``' writer, so the bag is byte-identical to what travelled on the wire and opens in
``ros2 bag``, rosbags and ``mcap``'s readers alike. The newest instruction (and any other
``metadata_topics``) plus run information land in ``metadata.yaml`` ``custom_data``; the run
information is also published, latched, on ``/legion/run_info`` and so recorded in the bag itself.

Inputs are untrusted: every message is checked by deserialising it (the bytes must be valid CDR of the
topic's type, for rclpy and for rosbags' stricter reader) before it goes into the bag; bytes a writer
appended after a valid message are dropped (the message goes in serialised again), and one that is
not valid is left out, counted per topic
(``undecodable``) and reported on ``~/status`` (``input_rejected``), so that no publisher can end the
recording and the bag decodes completely in any reader.

Each topic is subscribed per kind of writer, as rosbag2 adapts to each publisher: one subscription
per (reliability, durability) of the writers seen so far, added when a writer of a new kind appears
(a volatile ``ros2 topic pub --once`` after a latched client), so that every writer is matched
with its own guarantees (a latched message is replayed, a reliable one is not lost). A writer is
matched by several of them: a message is recorded once, by its writer's source timestamp and
sequence number. The first writers' QoS is stored as rosbag2 stores it. Messages are stamped with their
receive time on the node clock (simulated time with ``use_sim_time``; 0 before the first ``/clock``).

The bag is finished when the node stops (SIGINT/SIGTERM): :meth:`Recorder.close` writes the
metadata and closes the writer. A SIGKILL loses ``metadata.yaml``, the MCAP summary and the
messages not yet in a completed chunk (rosbags writes 1 MiB chunks): stop recorders with SIGINT.

A thin adapter: :class:`legion_ros.recording.Recording` decides what is recorded, once, and checks each
message (no rclpy, tested without ROS).
"""
from __future__ import annotations

import importlib
import os
import socket
import sys
from datetime import datetime, timezone

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from std_msgs.msg import String

from legion_ros import qos
from legion_ros.interfaces import INSTRUCTION, RUN_INFO, RunInfo
from legion_ros.node_base import NodeConfigError, Param, StatusPublisher, declare_parameters, run_node
from legion_ros.recording import Recording, bag_path, ensure_type, exclude_pattern, offered_qos

PARAMETERS = {
    'bag_dir': Param('runs/bags', 'directory that receives the bag directory of this run'),
    'bag_name': Param('', 'bag directory name; empty: legion_<UTC date>_<time>'),
    'discovery_period_s': Param(0.5, 'how often new topics are looked for [s]', range=(0.05, 60.0)),
    'exclude_regex': Param('', 'topics matching this regular expression are not recorded'),
    'metadata_topics': Param([INSTRUCTION.name], 'std_msgs/String topics whose newest message goes '
                             'into metadata.yaml custom_data'),
}


def message_class(type_name: str):
    """``'std_msgs/msg/String'`` -> the rclpy message class (ImportError if not installed)."""
    package, kind, name = type_name.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


class Recorder(Node):
    """Thin adapter: discovery, subscriptions and the bag writer over :class:`legion_ros.recording.
    Recording`, which decides what is recorded and how (tested without ROS)."""

    def __init__(self) -> None:
        super().__init__('recorder')
        self.params = p = declare_parameters(self, PARAMETERS)
        started = datetime.now(timezone.utc)
        try:
            self.recording = Recording(exclude_pattern(p.exclude_regex), p.metadata_topics)
            self.path = bag_path(p.bag_dir, p.bag_name, started)
        except (ValueError, FileExistsError) as error:
            raise NodeConfigError(str(error)) from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._typestore = get_typestore(Stores.ROS2_JAZZY)
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._bag_connections = {}
        self._classes = {}
        self._recorded: dict[str, dict[tuple[bool, bool], object]] = {}  # topic -> writer kind -> sub
        self.run_info = RunInfo(
            bag=str(self.path), started_utc=started.isoformat(), host=socket.gethostname(),
            ros_domain_id=os.environ.get('ROS_DOMAIN_ID', ''), pid=os.getpid(), python=sys.version.split()[0])
        self.status = StatusPublisher(self)
        self._run_info_publisher = self.create_publisher(String, RUN_INFO.name, qos.LATCHED)
        self._run_info_publisher.publish(String(data=RUN_INFO.encode(self.run_info)))
        self._discover()
        self._timer = self.create_timer(p.discovery_period_s, self._discover)
        self.get_logger().info(f'recording to {self.path}')

    # -- discovery --------------------------------------------------------------------------------
    def _discover(self) -> None:
        new = 0
        for topic, types in self.get_topic_names_and_types():
            if topic in self._recorded:
                self._match_writers(topic)
                continue
            if topic in self.recording.not_recorded:
                continue
            type_name = self.recording.consider(topic, types, bool(self.get_publishers_info_by_topic(topic)))
            if type_name is not None:
                new += self._subscribe(topic, type_name)
            elif self.recording.not_recorded.get(topic, '').startswith('several types'):
                self.get_logger().warning(f'not recording {topic}: published with several types {types}')
        if new:
            self.status.publish('recording', bag=str(self.path), topics=self.recording.topics)

    def _subscribe(self, topic: str, type_name: str) -> int:
        try:
            cls = message_class(type_name)
            ensure_type(self._typestore, type_name)
            offered = offered_qos(info.qos_profile for info in self.get_publishers_info_by_topic(topic))
            connection = self._writer.add_connection(topic, type_name, typestore=self._typestore,
                                                     offered_qos_profiles=offered)
        except Exception as error:  # an unknown or uninstalled type must not stop the recording
            self.recording.not_recorded[topic] = str(error)
            self.get_logger().warning(f'not recording {topic} ({type_name}): {error}')
            return 0
        self._bag_connections[topic] = connection
        self._classes[topic] = cls
        self._recorded[topic] = {}
        self.recording.add(topic, type_name)
        self._match_writers(topic)
        self.get_logger().debug(f'recording {topic} [{type_name}]')
        return 1

    def _match_writers(self, topic: str) -> None:
        """A subscription for each kind of writer on ``topic`` that has none yet."""
        for info in self.get_publishers_info_by_topic(topic):
            kind = (info.qos_profile.reliability == ReliabilityPolicy.RELIABLE,
                    info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL)
            if kind in self._recorded[topic]:
                continue
            reliable, latched = kind
            profile = QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=100,
                reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            self._recorded[topic][kind] = self.create_subscription(
                self._classes[topic], topic, lambda data, info, t=topic: self._on_message(t, data, info),
                profile, raw=True)

    # -- writing ----------------------------------------------------------------------------------
    def _on_message(self, topic: str, data: bytes, info: dict | None = None) -> None:
        if not self.recording.first_delivery(topic, info):
            return
        # Receive time on the node clock: simulated time with use_sim_time. Messages that arrive before
        # the first /clock (latched state of the graph) are kept, stamped 0, so the bag stays ordered.
        stamp = max(self.get_clock().now().nanoseconds, 0)
        try:
            data, text = self.recording.check(
                topic, data, lambda raw: deserialize_message(raw, self._classes[topic]),
                self._typestore.deserialize_cdr, serialize_message)
        except Exception as error:  # whatever the bytes are, the recording goes on
            reason = self.recording.rejected(topic, error)
            self.status.publish('input_rejected', topic=topic, reason=reason[:300],
                                undecodable=self.recording.undecodable, bag=str(self.path),
                                topics=self.recording.topics)
            self.get_logger().warning(f'not recorded: a message on {topic} {reason}',
                                      throttle_duration_sec=2.0)
            return
        self._writer.write(self._bag_connections[topic], stamp, data)
        self.recording.written(topic, text)

    def close(self) -> None:
        """Write metadata and finish the bag; safe to call twice."""
        if self._writer is None:
            return
        stopped = datetime.now(timezone.utc).isoformat()
        for key, value in self.recording.custom_data(self.run_info, stopped).items():
            self._writer.set_custom_data(key, value)
        self._writer.close()
        self._writer = None
        counts = self.recording.counts
        print(f'recorder: wrote {sum(counts.values())} messages on {len(counts)} topics to {self.path}',
              file=sys.stderr, flush=True)


def main(args: list[str] | None = None) -> int:
    return run_node(Recorder, args)


if __name__ == '__main__':
    sys.exit(main())
