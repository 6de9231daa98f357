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
"""
from __future__ import annotations

import importlib
import json
import os
import re
import socket
import sys
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from std_msgs.msg import String

from legion_ros import qos
from legion_ros.interfaces import INSTRUCTION, RUN_INFO, RunInfo
from legion_ros.node_base import NodeConfigError, Param, StatusPublisher, declare_parameters, run_node
from legion_ros.provenance import decode_string

# Copies of one message through several subscriptions arrive within moments of each other.
RECENT_MESSAGES = 4096
_INFINITE_NS = 2**63 - 1 - 1_000_000_000  # rmw durations at or above this mean 'infinite'

PARAMETERS = {
    'bag_dir': Param('runs/bags', 'directory that receives the bag directory of this run'),
    'bag_name': Param('', 'bag directory name; empty: legion_<UTC date>_<time>'),
    'discovery_period_s': Param(0.5, 'how often new topics are looked for [s]', range=(0.05, 60.0)),
    'exclude_regex': Param('', 'topics matching this regular expression are not recorded'),
    'metadata_topics': Param([INSTRUCTION.name], 'std_msgs/String topics whose newest message goes '
                             'into metadata.yaml custom_data'),
}


def instruction_text(payload: str) -> str:
    """The instruction itself, also when it came as a client's ``{"id", "text"}`` message."""
    from legion_ros.instructions import InstructionRejectedError, InstructionRequest

    try:
        text = InstructionRequest.from_payload(payload.encode('utf-8')).text
    except InstructionRejectedError:
        return payload
    return text.decode('utf-8', errors='replace') if isinstance(text, bytes) else text


def message_class(type_name: str):
    """``'std_msgs/msg/String'`` -> the rclpy message class (ImportError if not installed)."""
    package, kind, name = type_name.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


class Recorder(Node):
    def __init__(self) -> None:
        super().__init__('recorder')
        self.params = declare_parameters(self, PARAMETERS)
        try:
            self._exclude = re.compile(self.params.exclude_regex) if self.params.exclude_regex else None
        except re.error as error:
            raise NodeConfigError(f'exclude_regex {self.params.exclude_regex!r} is not a regular '
                                  f'expression: {error}') from None
        started = datetime.now(timezone.utc)
        bag_dir = Path(self.params.bag_dir).expanduser().resolve()
        if self.params.bag_name:
            self.path = bag_dir / self.params.bag_name
            if self.path.exists():
                raise NodeConfigError(f'bag directory {self.path} already exists; choose another bag_name')
        else:  # automatic name: never collide with a run started in the same second
            stem = started.strftime('legion_%Y%m%d_%H%M%S')
            self.path = bag_dir / stem
            suffix = 1
            while self.path.exists():
                suffix += 1
                self.path = bag_dir / f'{stem}_{suffix}'
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._typestore = get_typestore(Stores.ROS2_JAZZY)
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._bag_connections = {}
        self._classes = {}
        self._recorded: dict[str, dict[tuple[bool, bool], object]] = {}  # topic -> kind -> subscription
        self._recent: dict[str, OrderedDict] = {}  # topic -> (source stamp, sequence number) seen lately
        self._not_recorded: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.undecodable: dict[str, int] = {}
        self.metadata: dict[str, str] = {}
        self.run_info = RunInfo(
            bag=str(self.path), started_utc=started.isoformat(), host=socket.gethostname(),
            ros_domain_id=os.environ.get('ROS_DOMAIN_ID', ''), pid=os.getpid(), python=sys.version.split()[0])
        self.status = StatusPublisher(self)
        self._run_info_publisher = self.create_publisher(String, RUN_INFO.name, qos.LATCHED)
        self._run_info_publisher.publish(String(data=RUN_INFO.encode(self.run_info)))
        self._discover()
        self._timer = self.create_timer(self.params.discovery_period_s, self._discover)
        self.get_logger().info(f'recording to {self.path}')

    # -- discovery --------------------------------------------------------------------------------
    def _discover(self) -> None:
        new = 0
        for topic, types in self.get_topic_names_and_types():
            if topic in self._recorded:
                self._match_writers(topic)
                continue
            if topic in self._not_recorded:
                continue
            if self._exclude is not None and self._exclude.search(topic):
                self._not_recorded[topic] = 'excluded'
                continue
            if len(types) != 1:
                self._not_recorded[topic] = f'several types {types}'
                self.get_logger().warning(f'not recording {topic}: published with several types {types}')
                continue
            if not self.get_publishers_info_by_topic(topic):
                # Seen only through a subscriber so far: the writers' QoS (latched or not) is not
                # known yet, and guessing wrong loses a latched message. Decide once one appears.
                continue
            new += self._subscribe(topic, types[0])
        if new:
            self.status.publish('recording', bag=str(self.path), topics=sorted(self._recorded))

    def _subscribe(self, topic: str, type_name: str) -> int:
        try:
            cls = message_class(type_name)
            self._ensure_type(type_name)
            connection = self._writer.add_connection(topic, type_name, typestore=self._typestore,
                                                     offered_qos_profiles=self._offered_qos(topic))
        except Exception as error:  # an unknown or uninstalled type must not stop the recording
            self._not_recorded[topic] = str(error)
            self.get_logger().warning(f'not recording {topic} ({type_name}): {error}')
            return 0
        self._bag_connections[topic] = connection
        self._classes[topic] = cls
        self.counts[topic] = 0
        self._recorded[topic] = {}
        self._recent[topic] = OrderedDict()
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

    def _ensure_type(self, type_name: str) -> None:
        """Teach the typestore a message type it lacks, from the installed ``.msg`` definition."""
        if type_name in self._typestore.fielddefs:
            return
        package, kind, name = type_name.split('/')
        module = importlib.import_module(f'{package}.{kind}')
        candidates = [Path(module.__file__).resolve().parents[i] / 'share' / package / kind / f'{name}.msg'
                      for i in range(2, 6)]
        prefix = os.environ.get('AMENT_PREFIX_PATH', '')
        candidates += [Path(p) / 'share' / package / kind / f'{name}.msg' for p in prefix.split(':') if p]
        for path in candidates:
            if path.is_file():
                self._typestore.register(get_types_from_msg(path.read_text(), type_name))
                return
        raise LookupError(f'no message definition for {type_name} (not in the Jazzy typestore, '
                          f'no {name}.msg found)')

    def _offered_qos(self, topic: str) -> list[Qos]:
        """The writers' QoS, stored like rosbag2 does so that ``ros2 bag play`` replays latched topics
        as latched."""
        def duration(value) -> QosTime:
            nanoseconds = value.nanoseconds
            if nanoseconds >= _INFINITE_NS:  # rmw's "infinite", as rosbag2 writes it
                return QosTime(sec=2147483647, nsec=4294967295)
            return QosTime(sec=nanoseconds // 1_000_000_000, nsec=nanoseconds % 1_000_000_000)

        profiles = []
        for info in self.get_publishers_info_by_topic(topic):
            q = info.qos_profile
            profiles.append(Qos(history=QosHistory(int(q.history)), depth=q.depth,
                                reliability=QosReliability(int(q.reliability)),
                                durability=QosDurability(int(q.durability)), deadline=duration(q.deadline),
                                lifespan=duration(q.lifespan), liveliness=QosLiveliness(int(q.liveliness)),
                                liveliness_lease_duration=duration(q.liveliness_lease_duration),
                                avoid_ros_namespace_conventions=False))
        return profiles

    # -- writing ----------------------------------------------------------------------------------
    def _on_message(self, topic: str, data: bytes, info: dict | None = None) -> None:
        if info is not None:  # the same message through another kind's subscription: once is enough
            key = (info.get('source_timestamp'), info.get('publication_sequence_number'))
            recent = self._recent[topic]
            if key in recent:
                return
            recent[key] = None
            if len(recent) > RECENT_MESSAGES:
                recent.popitem(last=False)
        # Receive time on the node clock: simulated time with use_sim_time. Messages that arrive before
        # the first /clock (latched state of the graph) are kept, stamped 0, so the bag stays ordered.
        stamp = max(self.get_clock().now().nanoseconds, 0)
        try:
            message = deserialize_message(data, self._classes[topic])  # raises on bytes that are not CDR
            msgtype = self._bag_connections[topic].msgtype
            try:  # a strict reader too: rclpy accepts bytes appended after a valid message, rosbags not
                self._typestore.deserialize_cdr(data, msgtype)
            except Exception:
                # The message as the graph read it, serialised again; if even that is not readable
                # (a fuzzed ParameterEvent was not), it is left out like any undecodable message.
                data = serialize_message(message)
                self._typestore.deserialize_cdr(data, msgtype)
            is_text = self._bag_connections[topic].msgtype == 'std_msgs/msg/String'
            text = decode_string(data).decode('utf-8') if is_text else None
        except Exception as error:  # whatever the bytes are, the recording goes on
            self._reject(topic, error)
            return
        self._writer.write(self._bag_connections[topic], stamp, data)
        self.counts[topic] += 1
        if text is not None and topic in self.params.metadata_topics:
            self.metadata[topic] = text

    def _reject(self, topic: str, error: Exception) -> None:
        self.undecodable[topic] = self.undecodable.get(topic, 0) + 1
        reason = f'not a valid {self._bag_connections[topic].msgtype}: {type(error).__name__}: {error}'
        self.status.publish('input_rejected', topic=topic, reason=reason[:300], undecodable=self.undecodable,
                            bag=str(self.path), topics=sorted(self._recorded))
        self.get_logger().warning(f'not recorded: a message on {topic} {reason}', throttle_duration_sec=2.0)

    def close(self) -> None:
        """Write metadata and finish the bag; safe to call twice."""
        if self._writer is None:
            return
        info = dict(self.run_info, stopped_utc=datetime.now(timezone.utc).isoformat(),
                    messages=sum(self.counts.values()), topics=self.counts, not_recorded=self._not_recorded,
                    undecodable=self.undecodable)
        self._writer.set_custom_data('legion.run_info', json.dumps(info))
        for topic, text in self.metadata.items():
            key = 'legion.instruction' if topic.endswith('/instruction') else 'legion.' + topic.strip('/')
            self._writer.set_custom_data(key, instruction_text(text) if key == 'legion.instruction' else text)
        self._writer.close()
        self._writer = None
        print(f'recorder: wrote {info["messages"]} messages on {len(self.counts)} topics to {self.path}',
              file=sys.stderr, flush=True)


def main(args: list[str] | None = None) -> int:
    return run_node(Recorder, args)


if __name__ == '__main__':
    sys.exit(main())
