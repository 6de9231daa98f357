"""The recorder node records a real publisher in another process into an MCAP rosbag2 that rosbags and
mcap's own reader both read back, with the instruction in metadata.yaml, and survives SIGINT."""
from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from legion_ros.graph import Argument, ArgValue, Graph, NodeSpec
from legion_ros.runner import node_command

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')

PUBLISHER = r'''
import sys, rclpy
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray, String
from legion_ros import qos
rclpy.init()
node = Node('talker')
chatter = node.create_publisher(Float64MultiArray, '/legion_test/chatter', qos.STATE)
instruction = node.create_publisher(String, '/legion/instruction', qos.LATCHED)
instruction.publish(String(data='open the drawer, then close it'))
count = 0
def tick():
    global count
    count += 1
    chatter.publish(Float64MultiArray(data=[float(count)] * 7))
node.create_timer(0.02, tick)
try:
    rclpy.spin(node)
except BaseException:
    pass
rclpy.try_shutdown()
'''


def recorder_command(bag_dir, bag_name, **parameters) -> list[str]:
    """The recorder exactly as the graph starts it (config/recorder.yaml + inline overrides)."""
    graph = Graph('test', 'recorder under test', (Argument('bag_dir', str(bag_dir), 'bags'),
                                                  Argument('log_level', 'info', 'log level')),
                  (NodeSpec('recorder', 'recorder', parameter_files=('recorder.yaml',),
                            parameters={'bag_dir': ArgValue('bag_dir'), 'bag_name': bag_name,
                                        'discovery_period_s': 0.2, **parameters}),))
    return node_command(graph.resolve().nodes[0], bag_dir)


def wait_for_status(predicate, timeout_s: float):
    """Spin a client node until the recorder's latched status satisfies ``predicate``."""
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from legion_ros import qos

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node('recorder_test_client', context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        seen = []
        node.create_subscription(String, '/legion/recorder/status', lambda m: seen.append(json.loads(m.data)),
                                 qos.LATCHED)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if seen and predicate(seen[-1]):
                return seen[-1]
        return seen[-1] if seen else None
    finally:
        rclpy.try_shutdown(context=context)


def test_records_another_process_and_reads_back(tmp_path):
    publisher = subprocess.Popen([sys.executable, '-c', PUBLISHER])
    recorder = subprocess.Popen(recorder_command(tmp_path, 'run'), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        status = wait_for_status(lambda s: '/legion_test/chatter' in s.get('topics', []), timeout_s=15)
        assert status is not None and '/legion_test/chatter' in status['topics'], status
        time.sleep(1.0)  # ~50 messages
        recorder.send_signal(signal.SIGINT)
        output, _ = recorder.communicate(timeout=15)
    finally:
        publisher.send_signal(signal.SIGINT)
        publisher.wait(timeout=10)
        if recorder.poll() is None:
            recorder.kill()
    assert recorder.returncode == 0, output
    bag = tmp_path / 'run'
    metadata = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert metadata['storage_identifier'] == 'mcap'
    assert metadata['custom_data']['legion.instruction'] == 'open the drawer, then close it'
    run_info = json.loads(metadata['custom_data']['legion.run_info'])
    assert run_info['topics']['/legion_test/chatter'] >= 20

    # rosbags reads the bag directory and decodes the CDR it stored.
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore
    typestore = get_typestore(Stores.ROS2_JAZZY)
    with Reader(bag) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        assert topics['/legion_test/chatter'] == 'std_msgs/msg/Float64MultiArray'
        assert topics['/legion/run_info'] == 'std_msgs/msg/String'
        # The writers' QoS is kept (rosbag2's offered_qos_profiles): a latched topic replays latched.
        from rosbags.interfaces import QosDurability, QosReliability
        offered = {c.topic: c.ext.offered_qos_profiles for c in reader.connections}
        assert [q.durability for q in offered['/legion/instruction']] == [QosDurability.TRANSIENT_LOCAL]
        assert [(q.reliability, q.durability) for q in offered['/legion_test/chatter']] == [
            (QosReliability.RELIABLE, QosDurability.VOLATILE)]
        connections = [c for c in reader.connections if c.topic == '/legion_test/chatter']
        values = [typestore.deserialize_cdr(raw, c.msgtype).data[0]
                  for c, _, raw in reader.messages(connections=connections)]
        stamps = [t for _, t, _ in reader.messages(connections=connections)]
    assert len(values) == run_info['topics']['/legion_test/chatter']
    assert values == sorted(values) and len(set(values)) == len(values)  # in order, none twice
    assert stamps == sorted(stamps)

    # mcap's own reader (with the ROS 2 decoder of mcap-ros2-support) decodes the same file.
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    mcap_files = list(bag.glob('*.mcap'))
    assert len(mcap_files) == 1
    with open(mcap_files[0], 'rb') as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        decoded = {'/legion_test/chatter': [], '/legion/run_info': []}
        for _, channel, _, message in reader.iter_decoded_messages(topics=list(decoded)):
            decoded[channel.topic].append(message.data)
    assert [d[0] for d in decoded['/legion_test/chatter']] == values
    assert json.loads(decoded['/legion/run_info'][0])['bag'] == str(bag)


def test_existing_bag_directory_is_a_configuration_error(tmp_path):
    (tmp_path / 'taken').mkdir()
    proc = subprocess.run(recorder_command(tmp_path, 'taken'), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert 'already exists' in proc.stdout + proc.stderr


@pytest.mark.parametrize('parameters, message', [
    ({'discovery_period_s': 1}, 'must be of type double'),       # an int where a double is declared
    ({'discovery_period_s': 100.0}, 'allowed range (0.05, 60.0)'),
])
def test_bad_parameters_stop_the_node_with_a_clear_message(tmp_path, parameters, message):
    proc = subprocess.run(recorder_command(tmp_path, 'bad', **parameters), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / 'bad').exists()  # nothing half-written


def _invalid_string_cdr() -> bytes:
    """A std_msgs/String whose length field points 1000 bytes past the end of the buffer."""
    return b'\x00\x01\x00\x00' + (1000).to_bytes(4, 'little') + b'abc\x00'


@contextlib.contextmanager
def recording(tmp_path, node_name: str):
    """A recorder process writing ``tmp_path/run`` and a node of ours, in a context of its own, that
    reads the recorder's latched status: yields (recorder, node, statuses seen, spin_until)."""
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    from legion_ros import qos

    recorder = subprocess.Popen(recorder_command(tmp_path, 'run'), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(node_name, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        seen = []
        node.create_subscription(String, '/legion/recorder/status', lambda m: seen.append(json.loads(m.data)),
                                 qos.LATCHED)

        def spin_until(predicate, timeout_s):
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not predicate():
                executor.spin_once(timeout_sec=0.05)
            return predicate()

        yield recorder, node, seen, spin_until
    finally:
        rclpy.try_shutdown(context=context)
        if recorder.poll() is None:
            recorder.kill()


def recorded_texts(bag, topic: str) -> list[str]:
    """The std_msgs/String texts of ``topic`` in ``bag``, read by rosbags (a reader of its own)."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    with Reader(bag) as reader:
        return [typestore.deserialize_cdr(raw, c.msgtype).data for c, _, raw in reader.messages()
                if c.topic == topic]


def test_invalid_cdr_is_left_out_and_reported_not_fatal(tmp_path):
    """Issue #15 (1): bytes on /legion/instruction that are not valid CDR used to end the recorder (its
    metadata decoding raised), and with it the graph. Now they are left out of the bag, counted and
    reported on the status; the recording goes on and the next good instruction lands in the metadata."""
    from std_msgs.msg import String

    from legion_ros import qos

    with recording(tmp_path, 'hostile_publisher') as (recorder, node, seen, spin_until):
        publisher = node.create_publisher(String, '/legion/instruction', qos.STATE)
        assert spin_until(lambda: any('/legion/instruction' in s.get('topics', []) for s in seen), 20), seen
        spin_until(lambda: publisher.get_subscription_count() > 0, 5)
        for _ in range(3):
            publisher.publish(_invalid_string_cdr())
        assert spin_until(lambda: any(s.get('undecodable', {}).get('/legion/instruction') == 3 for s in seen),
                          10), seen
        rejection = next(s for s in seen if s['state'] == 'input_rejected')
        assert 'not a valid std_msgs/msg/String' in rejection['reason']
        # A valid message with bytes appended: rclpy reads it, a strict reader (rosbags) would not; the
        # bag gets it serialised again, without them.
        from rclpy.serialization import serialize_message
        publisher.publish(serialize_message(String(data='open the window')) + b'\x07' * 13)
        spin_until(lambda: False, 0.5)
        publisher.publish(String(data='close the drawer'))
        spin_until(lambda: False, 1.0)
        assert recorder.poll() is None, recorder.stdout.read()
        recorder.send_signal(signal.SIGINT)
        output, _ = recorder.communicate(timeout=15)
    assert recorder.returncode == 0, output
    metadata = yaml.safe_load((tmp_path / 'run' / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert metadata['custom_data']['legion.instruction'] == 'close the drawer'
    run_info = json.loads(metadata['custom_data']['legion.run_info'])
    assert run_info['undecodable'] == {'/legion/instruction': 3}
    # Every message in the bag decodes: the invalid ones were left out.
    assert recorded_texts(tmp_path / 'run', '/legion/instruction') == ['open the window', 'close the drawer']


def test_a_volatile_publisher_after_a_latched_one_is_recorded_once_each(tmp_path):
    """Issue #15 (5): the recorder chose one QoS from the first writers; a latched client's instruction
    made it a transient-local reader, and `ros2 topic pub --once` (volatile) could then never match it."""
    from std_msgs.msg import String

    from legion_ros import qos

    with recording(tmp_path, 'two_kinds_of_publisher') as (recorder, node, seen, spin_until):
        latched = node.create_publisher(String, '/legion/instruction', qos.LATCHED)  # legion instruct
        latched.publish(String(data='reach the goal'))
        assert spin_until(lambda: any('/legion/instruction' in s.get('topics', []) for s in seen), 20), seen
        once = node.create_publisher(String, '/legion/instruction', qos.STATE)  # ros2 topic pub --once
        assert spin_until(lambda: once.get_subscription_count() > 0, 10), 'the recorder never matched it'
        once.publish(String(data='close the drawer'))
        spin_until(lambda: False, 1.0)
        recorder.send_signal(signal.SIGINT)
        output, _ = recorder.communicate(timeout=15)
    assert recorder.returncode == 0, output
    # each once, though matched twice
    assert recorded_texts(tmp_path / 'run', '/legion/instruction') == ['reach the goal', 'close the drawer']
