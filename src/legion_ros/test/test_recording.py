"""The recorder's decisions without rclpy (legion_ros.recording): what goes into the bag, once, and how."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from rosbags.typesys import Stores, get_typestore

from legion_ros.recording import Recording, bag_path, exclude_pattern

STORE = get_typestore(Stores.ROS2_JAZZY)
String = STORE.types['std_msgs/msg/String']


def cdr(text: str) -> bytes:
    return bytes(STORE.serialize_cdr(String(data=text), 'std_msgs/msg/String'))


def check(recording: Recording, topic: str, data: bytes):
    """As the node checks: rclpy's reader is the lenient one; here rosbags stands in for it."""
    kind = 'std_msgs/msg/String'
    return recording.check(topic, data, lambda raw: STORE.deserialize_cdr(cdr_of(raw), kind),
                           STORE.deserialize_cdr, lambda m: bytes(STORE.serialize_cdr(m, kind)))


def cdr_of(raw: bytes) -> bytes:
    """The valid message at the start of ``raw`` (a writer may append bytes after it)."""
    length = int.from_bytes(raw[4:8], 'little')
    return raw[:8 + length]


def test_topics_are_chosen_once_with_their_writers_known():
    recording = Recording(exclude_pattern('^/rosout$'))
    assert recording.consider('/rosout', ['rcl_interfaces/msg/Log'], True) is None
    assert recording.not_recorded['/rosout'] == 'excluded'
    assert recording.consider('/mixed', ['a/msg/A', 'b/msg/B'], True) is None
    assert recording.not_recorded['/mixed'].startswith('several types')
    assert recording.consider('/legion/instruction', ['std_msgs/msg/String'], False) is None  # wait
    assert '/legion/instruction' not in recording.not_recorded
    assert recording.consider('/legion/instruction', ['std_msgs/msg/String'], True) == 'std_msgs/msg/String'
    recording.add('/legion/instruction', 'std_msgs/msg/String')
    assert recording.consider('/legion/instruction', ['std_msgs/msg/String'], True) is None  # already
    with pytest.raises(ValueError, match='not a regular expression'):
        exclude_pattern('([')


def test_a_message_delivered_by_several_subscriptions_is_recorded_once():
    recording = Recording()
    recording.add('/t', 'std_msgs/msg/String')
    info = {'source_timestamp': 5, 'publication_sequence_number': 1}
    assert recording.first_delivery('/t', info)
    assert not recording.first_delivery('/t', dict(info))  # the latched subscription's copy
    assert recording.first_delivery('/t', {**info, 'publication_sequence_number': 2})


def test_a_bad_message_is_left_out_and_the_recording_goes_on():
    recording = Recording(metadata_topics=['/legion/instruction'])
    recording.add('/legion/instruction', 'std_msgs/msg/String')
    with pytest.raises(Exception):  # noqa: B017 (any reader's error: not CDR)
        check(recording, '/legion/instruction', b'\x00\x01')
    assert 'not a valid std_msgs/msg/String' in recording.rejected('/legion/instruction', ValueError('x'))
    data, text = check(recording, '/legion/instruction', cdr('reach the goal') + b'\xff' * 7)
    assert data == cdr('reach the goal') and text == 'reach the goal'  # trailing bytes dropped
    recording.written('/legion/instruction', text)
    assert recording.counts == {'/legion/instruction': 1}
    assert recording.undecodable == {'/legion/instruction': 1}
    assert recording.metadata == {'/legion/instruction': 'reach the goal'}


def test_custom_data_summarises_the_run_and_names_the_instruction():
    recording = Recording(metadata_topics=['/legion/instruction', '/legion/notes'])
    for topic in ('/legion/instruction', '/legion/notes'):
        recording.add(topic, 'std_msgs/msg/String')
    recording.written('/legion/instruction', json.dumps({'id': 'a1', 'text': 'open the drawer'}))
    recording.written('/legion/notes', 'hello')
    data = recording.custom_data({'bag': '/b'}, 'now')
    info = json.loads(data['legion.run_info'])
    assert info['messages'] == 2 and info['stopped_utc'] == 'now' and info['bag'] == '/b'
    assert data['legion.instruction'] == 'open the drawer'  # a client's {"id", "text"}: the text
    assert data['legion.legion/notes'] == 'hello'


def test_bag_names_never_collide(tmp_path):
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    first = bag_path(tmp_path, '', started)
    assert first.name == 'legion_20260102_030405'
    first.mkdir()
    assert bag_path(tmp_path, '', started).name == 'legion_20260102_030405_2'
    (tmp_path / 'mine').mkdir()
    with pytest.raises(FileExistsError):
        bag_path(tmp_path, 'mine', started)
