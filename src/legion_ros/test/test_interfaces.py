"""The wire contract (legion_ros.interfaces): round trips, one error for every malformed message, and
one home for the graph's names. No ROS needed."""
from __future__ import annotations

import ast
import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legion_ros import interfaces
from legion_ros.instructions import PlannedStep, Sequencer
from legion_ros.interfaces import BadMessageError, JsonMessage

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = Path(__file__).resolve().parents[3]
CODECS = list(dict.fromkeys(topic.json for topic in interfaces.TOPICS if topic.json is not None))

STEP = {'index': 0, 'instruction': 'reach the goal', 'task': 'reach-v3', 'score': 0.93, 'state': 'running',
        'duration_s': None, 'reason': None}
# Per codec: the fullest message its producer writes and the least a reader must accept.
EXAMPLES = {
    interfaces.ACTIVE_STEP_JSON: [
        {'sequence_id': 3, 'index': 1, 'task': 'drawer-close-v3', 'instruction': 'close the drawer'},
        {'sequence_id': 3, 'index': None, 'task': None, 'instruction': None},
        {'task': 'reach-v3'}],
    interfaces.STEP_SUCCESS_JSON: [
        {'sequence_id': 3, 'index': 1, 'task': 'push-v3', 'success': True, 'source': 'observation',
         'distance': 0.01234},
        {'success': False}],
    interfaces.STATION_JSON: [
        {'task': 'reach-v3', 'stations': ['reach-v3', 'drawer-close-v3'],
         'frame': {'position': [0.6, 0.0, 0.0], 'quaternion_wxyz': [1.0, 0.0, 0.0, 0.0]},
         'hand_low': [-0.5, 0.4, 0.05], 'hand_high': [0.5, 1.0, 0.5], 'start_posture': [0.0] * 7,
         'workspace_low': [-1, -1, 0], 'workspace_high': [1, 1, 1.2], 'lift_to_m': 0.4},
        {'frame': {'position': [0, 0, 0], 'quaternion_wxyz': [1, 0, 0, 0]}}],
    interfaces.SCENE_JSON: [
        {'task': 'drawer-close-v3', 'seed': 0, 'posture': [0.0, 0.5, 0.0, -1.2, 0.0, 1.0, 0.0]}],
    interfaces.INSTRUCTION_STATUS_JSON: [
        {'sequence_id': 2, 'instruction_id': 'cli-1', 'event': 'step_succeeded', 'state': 'running',
         'instruction': 'reach the goal', 'active_index': None, 'steps': [STEP],
         'reasons': [{'code': 'failed', 'message': 'step 1 failed', 'extra': [1, 2]}], 'step': 0,
         'stamp': 12.5, 'step_clock': '/clock', 'real_time_factor': None},
        {'sequence_id': 0, 'instruction_id': None, 'event': 'idle', 'state': 'idle', 'instruction': '',
         'active_index': None, 'steps': [], 'reasons': []},
        {'sequence_id': 3, 'instruction_id': 'cli-2', 'event': 'step_paused', 'state': 'running',
         'instruction': 'reach the goal', 'active_index': 0, 'steps': [{**STEP, 'paused_s': 1.5}],
         'reasons': [], 'step': 0, 'waiting': {'code': 'sim2real_inactive', 'sim2real': 'inactive',
                                               'message': 'waiting for sim2real to be active'}}],
    interfaces.OBJECT_NAMES_JSON: [['object_1', 'goal'], []],
    interfaces.TRAINING_PROGRESS_JSON: [
        {'event': 'phase_done', 'stamp': 1.7e9, 'queue': ['push-v3'], 'learned': ['reach-v3'],
         'request': 'learn to reach', 'task': 'reach-v3', 'tasks': ['reach-v3'], 'learnt_before': [],
         'reasons': [{'code': 'learnt', 'message': 'reach-v3 is learnt already'}], 'reason': 'x',
         'run_dir': 'runs/ros_train/run_1', 'total_steps': 2000, 'phase': 0, 'env_steps': 1000,
         'checkpoint': '/tmp/policy.pt', 'success_row': [1.0, None]},
        {'event': 'queued', 'stamp': 0, 'queue': [], 'learned': []}],
    interfaces.RUN_INFO_JSON: [
        {'bag': 'runs/bags/x', 'started_utc': '2026-01-01T00:00:00+00:00', 'host': 'h', 'ros_domain_id': '',
         'pid': 4, 'python': '3.11.7'}],
    interfaces.NODE_STATUS_JSON: [
        {'node': '/legion/sim_bridge', 'state': 'running', 'stamp': 3.25, 'task': 'reach-v3'},
        {'state': 'recording'}],
    interfaces.MANAGED_NODE_STATUS_JSON: [
        {'node': '/legion/sim2real', 'state': 'estop', 'stamp': 3.25, 'reasons': ['joint_limit'],
         'rejected': {'/legion/action': 2}, 'lifecycle': 'inactive', 'reason': 'cannot configure: x'},
        {'state': 'input_rejected'}],
}


def test_importable_without_rclpy():
    code = "import sys; sys.modules['rclpy'] = None; import legion_ros.interfaces"  # None: import fails
    subprocess.run([sys.executable, '-c', code], check=True, cwd=PACKAGE)


def test_every_json_message_has_examples():
    assert set(EXAMPLES) == set(CODECS)


@pytest.mark.parametrize('codec', CODECS, ids=lambda c: c.name)
def test_round_trip(codec: JsonMessage):
    for message in EXAMPLES[codec]:
        text = codec.encode(message)
        assert codec.decode(text) == message
        assert codec.decode(text.encode('utf-8')) == message  # raw CDR payloads come as bytes


def test_encode_writes_numpy_values_as_json():
    np = pytest.importorskip('numpy')
    station = {'frame': {'position': np.array([0.6, 0.0, 0.0]), 'quaternion_wxyz': np.ones(4) / 2},
               'lift_to_m': np.float64(0.4)}
    decoded = interfaces.STATION.decode(interfaces.STATION.encode(station))
    assert decoded['frame']['quaternion_wxyz'] == [0.5] * 4 and decoded['lift_to_m'] == 0.4


def test_the_sequencers_events_are_instruction_status():
    """Every event the instruction node's sequencer emits, through a whole life, decodes."""
    sequencer = Sequencer(step_timeout_s=1.0)
    plan = [PlannedStep(i, f'step {i}', task, 0.9) for i, task in enumerate(('reach-v3', 'push-v3', 'x-v3'))]
    events = [sequencer.status('idle')]
    events += sequencer.load('three steps', plan, 0.0, 'id-1')
    events += sequencer.report_success(0.5)
    events += sequencer.skip(0.6)
    events += sequencer.tick(5.0)          # the last step times out: the sequence fails
    events += sequencer.load('again', plan[:1], 6.0)
    events += sequencer.pause(6.1, {'code': 'sim2real_inactive', 'sim2real': 'inactive', 'message': 'wait'})
    events += sequencer.resume(6.2)
    events += sequencer.halt(6.5, 'the arm stopped in an e-stop')
    events += sequencer.load('and again', plan[:1], 7.0)
    events += sequencer.cancel(7.5)
    events += sequencer.reject('nonsense', [{'code': 'unknown_skill', 'message': 'no skill'}])
    kinds = set()
    for event in events:
        decoded = interfaces.STATUS.decode(interfaces.STATUS.encode({**event, 'stamp': 1.0}))
        kinds.add(decoded['event'])
    assert kinds == {'idle', 'queued', 'step_started', 'step_succeeded', 'step_skipped', 'step_failed',
                     'step_paused', 'step_resumed', 'failed', 'cancelled', 'rejected'}


# -- malformed messages: one error, naming the field --------------------------------------------------

MALFORMED = [
    # (codec, payload, what the error must say)
    (interfaces.ACTIVE_STEP_JSON, 'not json', 'not JSON'),
    (interfaces.ACTIVE_STEP_JSON, '', 'not JSON'),
    (interfaces.ACTIVE_STEP_JSON, b'{"task": "\xff"}', 'not UTF-8'),
    (interfaces.ACTIVE_STEP_JSON, '[1, 2]', 'must be a JSON object'),
    (interfaces.ACTIVE_STEP_JSON, 'null', 'must be a JSON object'),
    (interfaces.OBJECT_NAMES_JSON, '{"a": 1}', 'must be a list'),
    (interfaces.ACTIVE_STEP_JSON, '{}', 'missing key "task"'),
    (interfaces.STATION_JSON, '{"frame": {"position": [0, 0, 0]}}', 'missing key "frame.quaternion_wxyz"'),
    (interfaces.STATUS.json, json.dumps({**EXAMPLES[interfaces.INSTRUCTION_STATUS_JSON][0],
                                         'steps': [{'index': 0}]}), 'missing key "steps[0].instruction"'),
    (interfaces.ACTIVE_STEP_JSON, '{"task": 3}', '"task" must be a string or null'),
    (interfaces.ACTIVE_STEP_JSON, '{"task": "reach-v3", "index": true}', '"index" must be an integer'),
    (interfaces.ACTIVE_STEP_JSON, '{"task": "reach-v3", "sequence_id": 1.5}',
     '"sequence_id" must be an integer'),
    (interfaces.STEP_SUCCESS_JSON, '{"success": "yes"}', '"success" must be true or false'),
    (interfaces.STATION_JSON, '{"frame": 3}', '"frame" must be a JSON object'),
    (interfaces.SCENE_JSON, '{"task": "reach-v3", "seed": 0, "posture": [0, 0, 0]}', '"posture"'),
    (interfaces.STATION_JSON, '{"frame": {"position": [0, 0], "quaternion_wxyz": [1, 0, 0, 0]}}',
     '"frame.position" must have 3 items'),
    (interfaces.OBJECT_NAMES_JSON, '["object_1", 2]', '"[1]" must be a string'),
    (interfaces.STATION_JSON, '{"frame": {"position": [0, 0, NaN], "quaternion_wxyz": [1, 0, 0, 0]}}',
     '"frame.position[2]" must be a finite number'),
    (interfaces.STEP_SUCCESS_JSON, '{"success": true, "distance": Infinity}', '"distance" must be a finite'),
    (interfaces.STEP_SUCCESS_JSON, '{"success": true, "distance": 1e400}', '"distance" must be a finite'),
    (interfaces.STEP_SUCCESS_JSON, '{"success": true, "distance": ' + '9' * 400 + '}',
     '"distance" must be a finite'),
    (interfaces.NODE_STATUS_JSON, '{"node": "n", "state": "s", "stamp": 0, "counts": {"a": [-Infinity]}}',
     '"counts.a[0]" must be a finite number'),  # undeclared keys are passed on: held to the same rule
    (interfaces.STEP_SUCCESS_JSON, '{"success": true, "source": "guess"}', '"source" is "guess", not one of'),
    (interfaces.SIM2REAL_STATUS.json, '{"state": "holding", "lifecycle": "sleeping"}',
     '"lifecycle" is "sleeping", not one of'),
    (interfaces.STATUS.json, json.dumps({**EXAMPLES[interfaces.INSTRUCTION_STATUS_JSON][1], 'state': 'done'}),
     '"state" is "done", not one of'),
    (interfaces.TRAINING_PROGRESS_JSON, '{"event": "paused", "stamp": 0, "queue": [], "learned": []}',
     '"event" is "paused", not one of'),
    (interfaces.ACTIVE_STEP_JSON, '{"task": "' + 'x' * 70_000 + '"}', 'more than the 65536 accepted'),
    (interfaces.ACTIVE_STEP_JSON, '[' * 5000 + ']' * 5000, 'nested too deeply'),
]


@pytest.mark.parametrize(('codec', 'payload', 'said'), MALFORMED,
                         ids=[f'{c.name}-{said[:30]}' for c, _, said in MALFORMED])
def test_malformed_messages_raise_the_one_error(codec: JsonMessage, payload, said):
    with pytest.raises(BadMessageError) as caught:
        codec.decode(payload)
    assert said in str(caught.value)
    assert str(caught.value).startswith(f'{codec.name}: ')


def test_the_error_is_the_one_nodes_already_catch():
    pytest.importorskip('std_msgs')  # provenance builds ROS messages
    from legion_ros import provenance

    assert provenance.BadMessageError is BadMessageError and issubclass(BadMessageError, ValueError)


def test_the_size_limit_counts_bytes_not_characters():
    codec = JsonMessage(interfaces.ActiveStep, max_bytes=64)
    fits = json.dumps({'task': 'é' * 20}, ensure_ascii=False)  # 20 characters, 40 bytes
    codec.decode(fits)
    with pytest.raises(BadMessageError, match='more than the 64'):
        codec.decode(json.dumps({'task': 'é' * 30}, ensure_ascii=False))


# -- fuzz: whatever arrives, decode answers with a message or BadMessageError ---------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300, max_value=10**330)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


def _decode_or_reject(codec: JsonMessage, payload) -> None:
    with contextlib.suppress(BadMessageError):
        codec.decode(payload)


def _near_miss(codec: JsonMessage):
    """Objects with the schema's own keys (some missing) and arbitrary values: past the first checks."""
    if not isinstance(codec.schema, type):
        return st.lists(JSON_VALUES, max_size=4)
    keys = list(interfaces._hints(codec.schema))
    return st.dictionaries(st.sampled_from(keys), JSON_VALUES, max_size=len(keys))


@pytest.mark.parametrize('codec', CODECS, ids=lambda c: c.name)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decode_raises_nothing_else(codec: JsonMessage, data):
    _decode_or_reject(codec, data.draw(st.text(max_size=200), label='text'))
    _decode_or_reject(codec, data.draw(st.binary(max_size=200), label='bytes'))
    _decode_or_reject(codec, json.dumps(data.draw(JSON_VALUES, label='json')))
    near = data.draw(_near_miss(codec), label='near miss')
    _decode_or_reject(codec, json.dumps(near))
    # A valid example with one key's value replaced reaches the deepest checks.
    example = dict(EXAMPLES[codec][0]) if isinstance(EXAMPLES[codec][0], dict) else None
    if example:
        key = data.draw(st.sampled_from(sorted(example)), label='replaced key')
        example[key] = data.draw(JSON_VALUES, label='value')
        _decode_or_reject(codec, json.dumps(example))


# -- one home ------------------------------------------------------------------------------------------

def _sources() -> list[Path]:
    """The Python that talks on the wire: legion_ros, legion_bringup and the launch files (no tests)."""
    roots = [PACKAGE / 'legion_ros', ROOT / 'src' / 'legion_bringup' / 'legion_bringup', ROOT / 'launch']
    return [path for root in roots if root.is_dir() for path in sorted(root.rglob('*.py'))
            if path.name != 'interfaces.py']


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_graph_names_are_spelt_only_in_interfaces():
    """A ``/legion/...`` name (or the namespace itself) in code outside interfaces.py is a second home:
    the two would drift apart. Docstrings and comments may name topics."""
    sources = _sources()
    assert len(sources) > 20, 'the sources were not found'
    found = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding='utf-8'))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip \
                    and (interfaces.NAMESPACE + '/' in node.value or node.value == interfaces.NAMESPACE):
                found.append(f'{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}')
    assert not found, 'use legion_ros.interfaces:\n' + '\n'.join(found)


def test_publishers_and_subscriptions_use_each_topics_type():
    """``create_publisher(String, ACTIVE_STEP.name, ...)``: the class is the one interfaces names."""
    checked, wrong = 0, []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ('create_publisher', 'create_subscription')
                    and len(node.args) >= 2):
                continue
            cls, name = node.args[:2]
            if not (isinstance(cls, ast.Name) and isinstance(name, ast.Attribute) and name.attr == 'name'
                    and isinstance(name.value, ast.Name)):
                continue
            topic = getattr(interfaces, name.value.id, None)
            if isinstance(topic, interfaces.Topic):
                checked += 1
                if topic.type.rsplit('/', 1)[-1] != cls.id:
                    wrong.append(f'{path.relative_to(ROOT)}:{node.lineno}: {cls.id} on {topic.name}')
    assert checked > 30, checked
    assert not wrong, wrong


def test_config_names_are_those_of_interfaces():
    """Parameter files may set a topic parameter to a graph name: one that interfaces knows."""
    config = ROOT / 'config'
    if not config.is_dir():
        pytest.skip('no source tree')
    known = {topic.name for topic in interfaces.TOPICS}
    pattern = re.compile(r'(?<![\w/])/legion/[\w/]+')
    # Values only: the comments name nodes too (`ros2 param describe /legion/policy`). Most files set
    # no topic today (the defaults are the nodes'), so the pattern is checked on a line of its own.
    assert pattern.findall("    objects_topic: /legion/object_poses   # x") == ['/legion/object_poses']
    used = {name for path in config.glob('*.yaml')
            for line in path.read_text(encoding='utf-8').splitlines()
            for name in pattern.findall(line.split('#')[0])}
    assert used <= known, used - known


def test_names_are_unique_and_in_the_namespace():
    names = [t.name for t in interfaces.TOPICS] + [s.name for s in interfaces.SERVICES]
    assert len(names) == len(set(names))
    assert all(name.startswith(interfaces.NAMESPACE + '/') for name in names)


def test_architecture_doc_shows_the_wire_contract():
    doc = ROOT / 'docs' / 'architecture.md'
    if not doc.is_file():
        pytest.skip('no source tree')
    assert interfaces.markdown_tables() in doc.read_text(encoding='utf-8'), \
        'regenerate the table in docs/architecture.md with `python -m legion_ros.interfaces`'
