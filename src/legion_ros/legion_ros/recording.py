"""The recorder's decisions without rclpy (``legion_ros.nodes.recorder`` is the node over them).

:class:`Recording` decides which discovered topics go into the bag, records each message once although
several subscriptions (one per kind of writer) deliver it, checks every message before it is written
(valid CDR for rclpy *and* for rosbags' stricter reader; a bad one is counted and left out, the
recording goes on) and writes the run's ``custom_data`` at the end. :func:`bag_path`,
:func:`offered_qos` and :func:`ensure_type` are the bag's naming, the writers' QoS as rosbag2 stores it
and the message definitions the typestore lacks.
"""
from __future__ import annotations

import importlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.typesys import get_types_from_msg

from legion_ros.provenance import decode_string

# Copies of one message through several subscriptions arrive within moments of each other.
RECENT_MESSAGES = 4096
_INFINITE_NS = 2**63 - 1 - 1_000_000_000  # rmw durations at or above this mean 'infinite'
STRING_TYPE = 'std_msgs/msg/String'


def instruction_text(payload: str) -> str:
    """The instruction itself, also when it came as a client's ``{"id", "text"}`` message."""
    from legion_ros.instructions import InstructionRejectedError, InstructionRequest

    try:
        text = InstructionRequest.from_payload(payload.encode('utf-8')).text
    except InstructionRejectedError:
        return payload
    return text.decode('utf-8', errors='replace') if isinstance(text, bytes) else text


def bag_path(bag_dir: str | Path, bag_name: str, started: datetime) -> Path:
    """The run's bag directory: ``bag_name`` (FileExistsError if taken), else ``legion_<date>_<time>``
    with a suffix that never collides with a run started in the same second."""
    folder = Path(bag_dir).expanduser().resolve()
    if bag_name:
        path = folder / bag_name
        if path.exists():
            raise FileExistsError(f'bag directory {path} already exists; choose another bag_name')
        return path
    stem = started.strftime('legion_%Y%m%d_%H%M%S')
    path, suffix = folder / stem, 1
    while path.exists():
        suffix += 1
        path = folder / f'{stem}_{suffix}'
    return path


def exclude_pattern(regex: str) -> re.Pattern | None:
    try:
        return re.compile(regex) if regex else None
    except re.error as error:
        raise ValueError(f'exclude_regex {regex!r} is not a regular expression: {error}') from None


class Recording:
    def __init__(self, exclude: re.Pattern | None = None, metadata_topics: Iterable[str] = ()) -> None:
        self.exclude = exclude
        self.metadata_topics = set(metadata_topics)
        self.msgtypes: dict[str, str] = {}            # recorded topic -> its type
        self.not_recorded: dict[str, str] = {}        # topic -> why
        self.counts: dict[str, int] = {}
        self.undecodable: dict[str, int] = {}
        self.metadata: dict[str, str] = {}            # metadata topic -> its newest text
        self._recent: dict[str, OrderedDict] = {}     # topic -> (source stamp, sequence number) seen lately

    @property
    def topics(self) -> list[str]:
        return sorted(self.msgtypes)

    def consider(self, topic: str, types: list[str], has_writers: bool) -> str | None:
        """The type to record a newly discovered ``topic`` with, or None (not now, or never: the
        reason in :attr:`not_recorded`)."""
        if topic in self.msgtypes or topic in self.not_recorded:
            return None
        if self.exclude is not None and self.exclude.search(topic):
            self.not_recorded[topic] = 'excluded'
            return None
        if len(types) != 1:
            self.not_recorded[topic] = f'several types {types}'
            return None
        # Seen only through a subscriber so far: the writers' QoS (latched or not) is not known yet,
        # and guessing wrong loses a latched message. Decide once one appears.
        return types[0] if has_writers else None

    def add(self, topic: str, msgtype: str) -> None:
        self.msgtypes[topic] = msgtype
        self.counts[topic] = 0
        self._recent[topic] = OrderedDict()

    def first_delivery(self, topic: str, info: dict | None) -> bool:
        """False for a message another kind's subscription delivered already (same writer stamp and
        sequence number): once in the bag is enough."""
        if info is None:
            return True
        key = (info.get('source_timestamp'), info.get('publication_sequence_number'))
        recent = self._recent[topic]
        if key in recent:
            return False
        recent[key] = None
        if len(recent) > RECENT_MESSAGES:
            recent.popitem(last=False)
        return True

    def check(self, topic: str, data: bytes, lenient: Callable[[bytes], Any],
              strict: Callable[[bytes, str], Any],
              serialize: Callable[[Any], bytes]) -> tuple[bytes, str | None]:
        """The bytes to write for one message, and its text on a String topic: ``data`` if both readers
        take it, else the message as ``lenient`` (rclpy) read it serialised again. Raises (nothing to
        write) when that is not readable either, or a String is not UTF-8; the exception says why."""
        message = lenient(data)  # raises on bytes that are not CDR
        msgtype = self.msgtypes[topic]
        try:  # a strict reader too: rclpy accepts bytes appended after a valid message, rosbags not
            strict(data, msgtype)
        except Exception:
            # The message as the graph read it, serialised again; if even that is not readable
            # (a fuzzed ParameterEvent was not), it is left out like any undecodable message.
            data = serialize(message)
            strict(data, msgtype)
        return data, decode_string(data).decode('utf-8') if msgtype == STRING_TYPE else None

    def written(self, topic: str, text: str | None) -> None:
        self.counts[topic] += 1
        if text is not None and topic in self.metadata_topics:
            self.metadata[topic] = text

    def rejected(self, topic: str, error: Exception) -> str:
        """Count an undecodable message on ``topic``; the reason to report."""
        self.undecodable[topic] = self.undecodable.get(topic, 0) + 1
        return f'not a valid {self.msgtypes[topic]}: {type(error).__name__}: {error}'

    def custom_data(self, run_info: dict, stopped_utc: str) -> dict[str, str]:
        """``metadata.yaml`` ``custom_data``: the run information and summary, and the metadata topics'
        newest texts (the instruction as its text)."""
        info = dict(run_info, stopped_utc=stopped_utc, messages=sum(self.counts.values()), topics=self.counts,
                    not_recorded=self.not_recorded, undecodable=self.undecodable)
        data = {'legion.run_info': json.dumps(info)}
        for topic, text in self.metadata.items():
            key = 'legion.instruction' if topic.endswith('/instruction') else 'legion.' + topic.strip('/')
            data[key] = instruction_text(text) if key == 'legion.instruction' else text
        return data


def offered_qos(profiles: Iterable[Any]) -> list[Qos]:
    """The writers' rmw QoS profiles, stored like rosbag2 does so that ``ros2 bag play`` replays latched
    topics as latched."""
    def duration(value) -> QosTime:
        nanoseconds = value.nanoseconds
        if nanoseconds >= _INFINITE_NS:  # rmw's "infinite", as rosbag2 writes it
            return QosTime(sec=2147483647, nsec=4294967295)
        return QosTime(sec=nanoseconds // 1_000_000_000, nsec=nanoseconds % 1_000_000_000)

    return [Qos(history=QosHistory(int(q.history)), depth=q.depth,
                reliability=QosReliability(int(q.reliability)), durability=QosDurability(int(q.durability)),
                deadline=duration(q.deadline),
                lifespan=duration(q.lifespan), liveliness=QosLiveliness(int(q.liveliness)),
                liveliness_lease_duration=duration(q.liveliness_lease_duration),
                avoid_ros_namespace_conventions=False) for q in profiles]


def ensure_type(typestore, type_name: str) -> None:
    """Teach ``typestore`` a message type it lacks, from the installed ``.msg`` definition."""
    if type_name in typestore.fielddefs:
        return
    package, kind, name = type_name.split('/')
    module = importlib.import_module(f'{package}.{kind}')
    candidates = [Path(module.__file__).resolve().parents[i] / 'share' / package / kind / f'{name}.msg'
                  for i in range(2, 6)]
    prefix = os.environ.get('AMENT_PREFIX_PATH', '')
    candidates += [Path(p) / 'share' / package / kind / f'{name}.msg' for p in prefix.split(':') if p]
    for path in candidates:
        if path.is_file():
            typestore.register(get_types_from_msg(path.read_text(), type_name))
            return
    raise LookupError(f'no message definition for {type_name} (not in the Jazzy typestore, '
                      f'no {name}.msg found)')
