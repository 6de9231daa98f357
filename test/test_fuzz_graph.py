"""Fuzz the running sim graph on every topic it subscribes to (issue #15).

The graph is `legion sim`'s own (the MuJoCo twin as the driver, instruction, task inference, the
command path in decision_path, recorder), real processes over loopback in this test's ROS domain. A
hypothesis-driven publisher sends, on every topic that a node of the graph subscribes to, random and
truncated bytes, messages of the topic's type with extreme values (NaN, inf, 1e308, empty and long
sequences, long strings) and odd stamps (0, an hour ahead or behind, nanoseconds past a second), and
on the JSON topics malformed or ill-typed JSON. Bounded: ``FUZZ_MESSAGES`` messages, derandomised so
a CI failure replays. Then:

* every node is alive (and the recorder was never restarted);
* every command sim2real sent stayed inside the safety filter's position and velocity limits;
* the nodes' status names the rejections (every fuzzed topic is named by some node or the recorder);
* after the documented recovery (docs/real-robot.md: e-stop false, reset), an instruction succeeds.

The counts go to stdout as one JSON line (and to ``$LEGION_FUZZ_REPORT`` when set).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ros]

FUZZ_MESSAGES = int(os.environ.get('LEGION_FUZZ_MESSAGES', '600'))
FUZZ_BUDGET_S = 180.0  # the fuzzing itself; start-up and the final instruction come on top
COMMAND_TOPIC = '/lbr/forward_position_controller/commands'
# A zero-length payload is left out: Fast DDS sends it, no remote reader ever accepts it, and the
# writer's reliable stream to that reader stalls behind it for good (measured: two processes, one raw
# publish of b'', nothing the writer sends afterwards arrives; another writer's messages do). No node
# can see or name it, and only that writer is cut off: test_empty_payload.py asserts the graph side of
# that. Before it was left out, it silenced the fuzz writer on whichever topics it hit first.
HOUR_NS = 3600 * 10**9
JSON_KEYS = ('task', 'sequence_id', 'index', 'success', 'frame', 'position', 'quaternion_wxyz',
             'start_posture', 'workspace_low', 'workspace_high', 'lift_to_m', 'hand_low', 'hand_high', 'id',
             'text', 'instruction', 'source')


# -- payloads ------------------------------------------------------------------------------------

def odd_stamps() -> st.SearchStrategy:
    """(sec, nanosec) never within a second of now: the stamp window must reject every one."""
    now = time.time_ns()
    choices = [0, 1, now + HOUR_NS, now - HOUR_NS, (2**31 - 1) * 10**9, now + 2 * 10**9]
    return st.one_of(
        st.sampled_from(choices).map(lambda ns: divmod(ns, 10**9)),
        st.tuples(st.sampled_from([0, 2**31 - 1, -(2**31)]), st.sampled_from([0, 10**9, 2**32 - 1])))


EXTREME_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 0.0, -0.0, 1e9]
ATOMS = st.one_of(st.none(), st.booleans(), st.text(max_size=12),
                  st.sampled_from([1e400, -1e400, 'NaN', 10**400, -(10**30), '']))
JSON_VALUES = st.recursive(ATOMS, lambda inner: st.one_of(
    st.lists(inner, max_size=8), st.dictionaries(st.sampled_from(JSON_KEYS), inner, max_size=5)),
    max_leaves=12)


def json_garbage() -> st.SearchStrategy:
    return st.one_of(
        st.dictionaries(st.sampled_from(JSON_KEYS), JSON_VALUES, max_size=8).map(json.dumps),
        JSON_VALUES.map(json.dumps),
        st.text(max_size=64),
        st.sampled_from(['{', '{"task": ', '[' * 200, 'x' * 100_000, '\x00\x01', '{"id": "a", "text": 3}']))


def value_strategy(slot, depth: int = 0) -> st.SearchStrategy:
    """Values of one message field, with the extremes first in line."""
    from rosidl_parser import definition as d

    if isinstance(slot, d.BasicType):
        name = slot.typename
        if name in ('double', 'float'):
            limit = 3.4e38 if name == 'float' else 1.7e308
            return st.sampled_from([v for v in EXTREME_FLOATS if not abs(v) > limit or math.isinf(v)
                                    or math.isnan(v)])
        if name == 'boolean':
            return st.booleans()
        if name in ('octet', 'uint8', 'char'):
            return st.integers(0, 255).map(lambda v: bytes([v]) if name == 'octet' else v)
        bits = int(''.join(c for c in name if c.isdigit()) or 32)
        low, high = (0, 2**bits - 1) if name.startswith('uint') else (-(2**(bits - 1)), 2**(bits - 1) - 1)
        return st.sampled_from([low, high, 0, 1, -1 if low < 0 else 1])
    if isinstance(slot, (d.UnboundedString, d.BoundedString, d.UnboundedWString, d.BoundedWString)):
        return st.one_of(st.text(max_size=24), st.sampled_from(['', 'x' * 10_000, 'lbr_A1', '\u202e']))
    if isinstance(slot, d.AbstractNestedType):  # sequences and arrays
        element = value_strategy(slot.value_type, depth + 1)
        if isinstance(slot, d.Array):
            return st.lists(element, min_size=slot.size, max_size=slot.size)
        size = slot.maximum_size if isinstance(slot, d.BoundedSequence) else 12
        lists = st.lists(element, max_size=size)
        if isinstance(slot.value_type, d.BasicType) and slot.value_type.typename in ('double', 'float') \
                and not isinstance(slot, d.BoundedSequence):
            lists = st.one_of(lists, st.sampled_from([[math.nan] * 5000, [1e30] * 7, [0.0] * 39]))
        return lists
    if isinstance(slot, d.NamespacedType):
        cls = getattr(importlib.import_module('.'.join(slot.namespaces)), slot.name)
        return message_strategy(cls, depth + 1)
    return st.none()


def message_strategy(cls, depth: int = 0) -> st.SearchStrategy:
    """Messages of ``cls`` whose every field is drawn from :func:`value_strategy`; stamps are odd."""
    if cls.__name__ == 'Time' and cls.__module__.startswith('builtin_interfaces'):
        return odd_stamps().map(lambda sn: cls(sec=sn[0], nanosec=sn[1]))
    if depth > 3:
        return st.just(cls())
    fields = dict(zip(cls.get_fields_and_field_types(), cls.SLOT_TYPES, strict=True))

    @st.composite
    def build(draw):
        message = cls()
        for name, slot in fields.items():
            value = draw(value_strategy(slot, depth))
            with contextlib.suppress(AssertionError, TypeError, ValueError, OverflowError):
                setattr(message, name, value)  # a value the type refuses keeps the default
        return message
    return build()


def payloads(cls) -> st.SearchStrategy:
    """(kind, message or bytes) for a topic of type ``cls``."""
    from rclpy.serialization import serialize_message

    valid = serialize_message(cls())
    raw = st.one_of(
        st.binary(min_size=1, max_size=96).map(lambda b: ('random_bytes', b)),
        st.integers(1, max(len(valid) - 1, 1)).map(lambda n: ('truncated', valid[:n])),
        st.binary(min_size=4, max_size=64).map(lambda b: ('cdr_header_garbage', b'\x00\x01\x00\x00' + b)),
        st.integers(1, 2**32 - 1).map(lambda n: ('length_past_end', b'\x00\x01\x00\x00'
                                                 + n.to_bytes(4, 'little') + b'ab')))
    kinds = [raw, message_strategy(cls).map(lambda m: ('extreme_values', m))]
    if cls.__name__ == 'String':
        kinds.append(json_garbage().map(lambda text: ('malformed_json', cls(data=text))))
    return st.one_of(*kinds)


# -- the graph -----------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def sim_graph(tmp_path_factory):
    """`legion sim --policy expert`'s graph, one workcell station (reach), recording."""
    import rclpy

    from legion_ros.instruct_cli import spin_until
    from legion_ros.sim_cli import SceneFollower, SimGraph, _sim_nodes

    tmp = tmp_path_factory.mktemp('fuzz')
    args = argparse.Namespace(driver='lbr', checkpoint='', no_record=False, bag_dir=str(tmp),
                              policy='expert', step_timeout=120.0, seed=0)
    nodes, values = _sim_nodes(args, 'reach-v3', 'fuzz_bag', tmp / 'params')
    log = open(tmp / 'nodes.log', 'w', encoding='utf-8')  # noqa: SIM115 (closed below)
    sim = SimGraph(nodes, values, log, 0, ('reach-v3',))
    rclpy.init()
    node = rclpy.create_node('fuzz_probe')
    scenes = SceneFollower(node, sim, lambda text: None)
    try:
        sim.start_twin('reach-v3')
        up = spin_until(node, lambda: scenes.bridge_task == 'reach-v3', 120.0)
        assert up, (tmp / 'nodes.log').read_text()
        sim.start_rest()
        yield node, sim, scenes, tmp
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        code = sim.stop()
        log.close()
        print((tmp / 'nodes.log').read_text()[-3000:] if code else '')
    # The bag the recorder finished decodes completely with an independent reader: it left out what
    # was not its topic's CDR.
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore
    typestore = get_typestore(Stores.ROS2_JAZZY)
    stored = 0
    with Reader(tmp / 'fuzz_bag') as reader:
        known = [c for c in reader.connections if c.msgtype in typestore.fielddefs]
        for connection, _, raw in reader.messages(connections=known):
            typestore.deserialize_cdr(raw, connection.msgtype)
            stored += 1
    print(json.dumps({'bag_messages_decoded': stored}))


def graph_inputs(node, own: set[str]) -> dict[str, tuple[type, int]]:
    """Every topic a node of the graph subscribes to (not only this test's probe): its type and how
    many readers the graph has on it."""
    inputs = {}
    for topic, types in node.get_topic_names_and_types():
        readers = [i for i in node.get_subscriptions_info_by_topic(topic) if i.node_name not in own]
        if readers and len(types) == 1:
            package, kind, name = types[0].split('/')
            inputs[topic] = (getattr(importlib.import_module(f'{package}.{kind}'), name), len(readers))
    return inputs


def test_fuzz_every_input_topic_then_an_instruction_still_succeeds(sim_graph):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Bool, Float64MultiArray, String

    from legion_kuka.safety import SafetyLimits
    from legion_ros import qos, services
    from legion_ros.instruct_cli import StatusFollower, deliver, spin_until

    node, sim, scenes, tmp = sim_graph
    follower = StatusFollower(node)
    keep_all = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    statuses: list[dict] = []
    node_names = ('sim_bridge', 'instruction', 'task_inference', 'sim2real', 'real2sim', 'policy', 'recorder')
    def on_status(message, name):
        with contextlib.suppress(ValueError, TypeError):  # the fuzz writes to some status topics too
            status = json.loads(message.data)
            if isinstance(status, dict) and status.get('node') == f'/legion/{name}':
                statuses.append({'from': name, **status})

    for name in node_names:
        node.create_subscription(String, f'/legion/{name}/status', lambda m, n=name: on_status(m, n),
                                 keep_all)
    commands: list[tuple[float, bytes]] = []
    keep_all_volatile = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.VOLATILE)
    node.create_subscription(Float64MultiArray, COMMAND_TOPIC, lambda raw: commands.append(
        (time.monotonic(), raw)), keep_all_volatile, raw=True)
    assert spin_until(node, lambda: follower.ready() and any(
        s['from'] == 'sim2real' for s in statuses), 180.0), 'the graph did not come up'
    spin_until(node, lambda: False, 2.0)
    inputs_and_readers = graph_inputs(node, {'fuzz_probe'})
    inputs = {topic: cls for topic, (cls, _) in inputs_and_readers.items()}
    # The driver's input is the twin's command topic: fuzz it, but tell our own commands from ours.
    assert {'/lbr/joint_states', '/legion/instruction', '/legion/action', '/legion/estop', COMMAND_TOPIC,
            '/legion/observation', '/legion/station', '/legion/active_step'} <= set(inputs), sorted(inputs)
    # Reliable and transient local: matched by every reader, latched ones included; deep enough that
    # no fuzz message is overwritten in the writer before every reader has it.
    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publishers = {topic: node.create_publisher(cls, topic, latched) for topic, cls in inputs.items()}
    # Every reader of the graph matches the new writers before the first message: a volatile reader
    # matched later never sees it (discovery of 30 writers takes seconds on 2 loaded cores).
    matched = lambda: all(publishers[t].get_subscription_count() >= n  # noqa: E731
                          for t, (_, n) in inputs_and_readers.items())
    assert spin_until(node, matched, 60.0), {t: (publishers[t].get_subscription_count(), n)
                                             for t, (_, n) in inputs_and_readers.items()}
    spin_until(node, lambda: False, 15.0)  # the count above includes the recorder's readers: all of them
    # The fuzz's own writer delivers an instruction before the fuzz and after it: the garbage it sent
    # in between did not stall its stream to the instruction node.
    events: list[dict] = []
    node.create_subscription(String, '/legion/status', lambda m: events.append(m.data), keep_all)

    def probe_instruction(ident: str) -> bool:
        publishers['/legion/instruction'].publish(String(data=json.dumps({'id': ident, 'text': 'make tea'})))
        return spin_until(node, lambda: any(ident in e for e in events), 15.0)

    delivered_before = probe_instruction('probe-before')
    strategies = {topic: payloads(cls) for topic, cls in inputs.items()}
    fuzzed_commands: set[bytes] = set()
    invalid_cdr: dict[str, int] = {}

    def decodes(raw: bytes, cls) -> bool:
        try:
            deserialize_message(raw, cls)
        except Exception:  # any failure to decode
            return False
        return True
    counts: dict[str, dict[str, int]] = {}
    started = time.monotonic()

    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.serialization import deserialize_message, serialize_message

    @settings(max_examples=FUZZ_MESSAGES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data):
        if time.monotonic() - started > FUZZ_BUDGET_S:
            return
        topic = data.draw(st.sampled_from(sorted(inputs)))
        kind, payload = data.draw(strategies[topic])
        if topic == COMMAND_TOPIC:
            fuzzed_commands.add(payload if isinstance(payload, bytes) else serialize_message(payload))
        try:
            publishers[topic].publish(payload)
        except RCLError:  # bytes this machine's own rmw will not even send: nobody can
            kind = 'refused_by_the_sending_rmw'
        else:
            # DDS pads a payload to 4 bytes (and drops an empty one), so only whole words reach a reader
            # exactly as sent: those, when not the type's CDR, the recorder must name.
            if isinstance(payload, bytes) and payload and len(payload) % 4 == 0 \
                    and not decodes(payload, inputs[topic]):
                invalid_cdr[topic] = invalid_cdr.get(topic, 0) + 1
        counts.setdefault(topic, {}).setdefault(kind, 0)
        counts[topic][kind] += 1
        spin_until(node, lambda: False, 0.002)

    fuzz()
    fuzz_s = time.monotonic() - started

    def recorder_named() -> dict[str, int]:
        last = [s for s in statuses if s['from'] == 'recorder' and isinstance(s.get('undecodable'), dict)]
        return last[-1]['undecodable'] if last else {}

    spin_until(node, lambda: set(invalid_cdr) <= set(recorder_named()), 10.0)
    delivered_after = probe_instruction('probe-after')
    assert delivered_before and delivered_after, (delivered_before, delivered_after)
    for publisher in publishers.values():  # the latched garbage goes with its writers
        node.destroy_publisher(publisher)

    # 1. every node alive, none restarted
    dead = sim.dead()
    children = [c for r in (sim.rest_runner, sim.bridge_runner) for c in r.children]
    assert not dead and all(c.process.poll() is None for c in children), (
        dead, (tmp / 'nodes.log').read_text()[-4000:])
    assert all(c.restarts == 0 for c in children), [(c.name, c.restarts) for c in children]

    # 3. the status names the rejections. Bytes that are not the topic's CDR: typed readers never see
    # them (rmw drops them in take); the recorder, which reads raw bytes, names what it got and leaves
    # it out of the bag. (Under this burst on 2 cores it does not get them all: see the report's
    # invalid_cdr_sent and recorder_undecodable.) Content the command path and the instruction node
    # check: the node that rejected it names the topic.
    def named() -> set[str]:
        topics: set[str] = set()
        for status in statuses:
            for key in ('rejected', 'undecodable'):
                if isinstance(status.get(key), dict):
                    topics.update(status[key])
            if status.get('state') == 'input_rejected' and isinstance(status.get('topic'), str):
                topics.add(status['topic'])
            if status['from'] == 'sim_bridge' and status.get('event') == 'rejected_command':
                topics.add(COMMAND_TOPIC if str(status.get('last_rejection')).startswith('joint')
                           else '/lbr/gripper/command')
        return topics

    assert recorder_named(), 'the recorder named no undecodable message'
    # (Not /legion/object_names: any JSON list of strings is a valid list of names.)
    checked = ('/lbr/joint_states', '/legion/action', '/legion/observation', '/legion/observation_full',
               '/legion/active_step', '/legion/station', '/legion/object_poses', '/legion/instruction',
               '/legion/step_success', COMMAND_TOPIC)
    sent = {t for t in checked if counts.get(t, {}).get('extreme_values', 0)
            + counts.get(t, {}).get('malformed_json', 0)}
    spin_until(node, lambda: sent <= named(), 30.0)  # the instruction node plans one at a time
    unnamed = sorted(sent - named())
    assert not unnamed, f'no status named a rejection on {unnamed}'

    # 4. the documented recovery (docs/real-robot.md), then an instruction succeeds: the latched state
    # a hostile publisher replaced is re-asserted by its owner (the twin's reset republishes the object
    # names and the station), the e-stop released and reset.
    from std_srvs.srv import Trigger

    def trigger(service: str):
        client = node.create_client(Trigger, service)
        return services.call(node, client, Trigger.Request(), lambda done, s: spin_until(node, done, s),
                             ready_s=10.0, answer_s=20.0)

    assert trigger('/legion/sim_bridge/reset').success
    estop = node.create_publisher(Bool, '/legion/estop', qos.LATCHED)
    estop.publish(Bool(data=False))
    spin_until(node, lambda: False, 1.0)
    reset = trigger('/legion/sim2real/reset_estop')
    deliver(node, follower, 'reach the goal', scenes.service)
    recovery = {'estop_reset': reset.success, 'estop_message': reset.message}
    assert spin_until(node, lambda: follower.final is not None, 180.0, scenes.service), follower.events[-2:]
    assert follower.final['state'] == 'succeeded', follower.final

    # 2. every command sim2real sent, during the fuzz and the instruction after it, inside the limits
    # (the fuzz's own messages on the command topic aside)
    ours = []
    for stamp, raw in commands:
        if raw in fuzzed_commands:
            continue
        message = deserialize_message(raw, Float64MultiArray)
        if message.layout.dim and message.layout.dim[0].label.startswith('joint_positions'):
            ours.append((stamp, list(message.data)))
    limits = SafetyLimits.from_description()
    q = np.asarray([c for _, c in ours], dtype=float).reshape(-1, 7)
    assert np.all(np.isfinite(q)) and np.all(q >= limits.lower - 1e-9) and np.all(q <= limits.upper + 1e-9)
    # The filter bounds each command's step from the previous one (one per control cycle, 10 ms): checked
    # between consecutive commands (a keep-all reader loses none), not over receive times, which come
    # in batches. A hold longer than 0.3 s (e-stop, no action) starts a new stream from the measured arm.
    times = np.array([t for t, _ in ours])
    step_bound = limits.velocity * 0.01
    for k in range(1, len(q)):
        if times[k] - times[k - 1] < 0.3:
            assert np.all(np.abs(q[k] - q[k - 1]) <= step_bound + 1e-9), (k, q[k] - q[k - 1], step_bound)

    report = {'messages_fuzzed': sum(sum(k.values()) for k in counts.values()), 'topics_fuzzed': len(counts),
              'by_kind': {kind: sum(k.get(kind, 0) for k in counts.values())
                          for kind in sorted({kind for k in counts.values() for kind in k})},
              'fuzz_s': round(fuzz_s, 1), 'nodes_alive': f'{len(children)}/{len(children)}',
              'commands_checked': len(ours), 'topics_named_in_status': len(named() & set(counts)),
              'invalid_cdr_sent': sum(invalid_cdr.values()), 'invalid_cdr_topics': len(invalid_cdr),
              'recorder_undecodable': sum(recorder_named().values()),
              'recorder_undecodable_topics': len(recorder_named()),
              'unnamed': unnamed, 'fuzz_writer_instruction_delivered': [delivered_before, delivered_after],
              'recovery': recovery, 'instruction_after': follower.final['state'],
              'step_duration_s': follower.final['steps'][0]['duration_s'], 'per_topic': counts}
    print(json.dumps(report))
    if os.environ.get('LEGION_FUZZ_REPORT'):
        Path(os.environ['LEGION_FUZZ_REPORT']).write_text(json.dumps(report, indent=1))
