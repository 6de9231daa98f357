"""The wire contract of the LEGION-ROS graph: every ``/legion`` topic and service, and the JSON messages.

One home for each fact that two processes must agree on:

* every topic name of the graph's namespace (:data:`NAMESPACE`) with its ROS message type, as a
  :class:`Topic` constant (:data:`TOPICS` lists them) and every service a client calls by name as a
  :class:`Service` (:data:`SERVICES`). Nodes create a node's own topics as ``~/status``; the
  constants spell the name they resolve to in the graphs (namespace ``/legion``, the node's own name).
  The driver's topics (``/lbr/...``) are not here: they are node parameters (``config/driver_*.yaml``).
* the shape of every JSON message on a ``std_msgs/String`` topic, as a ``TypedDict`` (its keys, each
  key's type, which keys may be missing) with a :class:`JsonMessage` codec: ``encode(message) -> str``
  and ``decode(text) -> message``.

Decoding is the trust boundary. :meth:`JsonMessage.decode` raises :class:`BadMessageError` and nothing
else, with a message naming the schema and the field, for: a payload over the codec's ``max_bytes``
(checked before parsing), bytes that are not UTF-8, text that is not JSON (or nested too deeply to
parse), a document that is not an object (or not the list a list message is), a missing key, a value
of the wrong type or length, a non-finite number (``NaN``, ``Infinity``, ``1e400``, anywhere in the
message: extra keys included) and a value outside its enumeration. Keys the schema does not name are
kept, so that a newer producer does not break an older reader. What a node does with the error is the
node's rule: log it, count it on its ``~/status`` (``input_rejected``) and drop the message.

Encoding does not check: producers are checked by the tests (a producer's slip must never stop a
node); :meth:`JsonMessage.encode` writes what it is given, numpy values as lists.

Plain Python: no rclpy, so that ``legion_ros.graph``, the tests and tools can import it anywhere.
``python -m legion_ros.interfaces`` prints the wire-contract table of docs/architecture.md.
"""
# (no `from __future__ import annotations`: TypedDict reads NotRequired from evaluated annotations)
import json
import math
import types
from dataclasses import dataclass
from enum import Enum
from typing import (
    Annotated,
    Any,
    Generic,
    Literal,
    NotRequired,
    TypedDict,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

NAMESPACE = '/legion'
MAX_MESSAGE_BYTES = 64 * 1024  # a station or a step is under 1 KiB; bounds what a reader parses


class BadMessageError(ValueError):
    """An input message that a node must not act on; the text says why."""


# ----------------------------------------------------------------------------------------------------
# Vocabularies that are part of the wire (the instruction node's sequencer uses the same enums)


class StepState(str, Enum):
    QUEUED = 'queued'
    RUNNING = 'running'
    SUCCEEDED = 'succeeded'
    FAILED = 'failed'
    SKIPPED = 'skipped'
    CANCELLED = 'cancelled'


class SequenceState(str, Enum):
    IDLE = 'idle'
    QUEUED = 'queued'
    RUNNING = 'running'
    SUCCEEDED = 'succeeded'
    FAILED = 'failed'
    REJECTED = 'rejected'
    CANCELLED = 'cancelled'


# What happened, per status event of /legion/status: a sequence's state change, or a step's
# (``step_<state>``, with ``step`` its index).
# ``step_paused`` / ``step_resumed``: the active step's clock stopped / goes on (sim2real not active /
# active again).
InstructionEvent = Literal['idle', 'queued', 'step_started', 'step_succeeded', 'step_failed', 'step_skipped',
                           'step_paused', 'step_resumed', 'succeeded', 'failed', 'cancelled', 'rejected']
#: The states a managed (lifecycle) node rests in (ROS 2 design "Managed nodes"; what ``ros2 lifecycle get``
#: prints): sim2real's ``lifecycle`` on its status.
Lifecycle = Literal['unconfigured', 'inactive', 'active', 'finalized']
LIFECYCLE_STATES: tuple[str, ...] = get_args(Lifecycle)
TrainingEvent = Literal['queued', 'rejected', 'started', 'progress', 'phase_done', 'done', 'failed',
                        'stopped']


@dataclass(frozen=True)
class Length:
    """``Annotated[list[float], Length(3)]``: exactly that many items."""

    items: int


Vector3 = Annotated[list[float], Length(3)]


# ----------------------------------------------------------------------------------------------------
# The JSON messages


class ActiveStep(TypedDict):
    """``/legion/active_step``: the step the arm works on. ``task`` null: nothing runs (the instruction
    node then writes ``index`` and ``instruction`` null too). A hand-written step may leave out the ids."""

    task: str | None
    sequence_id: NotRequired[int]
    index: NotRequired[int | None]
    instruction: NotRequired[str | None]


class StepSuccess(TypedDict):
    """``/legion/step_success``: the task monitor saw the step succeed; the ids say which step (missing
    or null: whichever is active)."""

    success: bool
    sequence_id: NotRequired[int | None]
    index: NotRequired[int | None]
    task: NotRequired[str | None]
    source: NotRequired[Literal['sim', 'observation']]
    distance: NotRequired[float]  # with source observation: the criterion's distance [m]


class Frame(TypedDict):
    position: Vector3                                        # [m], robot base frame
    quaternion_wxyz: Annotated[list[float], Length(4)]


class Station(TypedDict):
    """``/legion/station``: a workcell's active station. With ``start_posture`` sim2real carries the arm
    there first (a transit inside the workcell box, lifted to ``lift_to_m``)."""

    frame: Frame                                             # the station's task frame
    task: NotRequired[str]
    stations: NotRequired[list[str]]
    hand_low: NotRequired[Vector3]                           # the task's hand box, task frame
    hand_high: NotRequired[Vector3]
    start_posture: NotRequired[Annotated[list[float], Length(7)]]  # [rad], A1 first
    workspace_low: NotRequired[Vector3]                      # the workcell's tcp box, base frame
    workspace_high: NotRequired[Vector3]
    lift_to_m: NotRequired[float]


class Scene(TypedDict):
    """``/legion/scene``: the twin (re)loaded a scene and placed the arm at ``posture``, a jump no real
    arm makes. Published (latched) before the joint states of the new scene, so that sim2real
    re-anchors there instead of seeing a tracking error (``legion_kuka.commander.ArmCommander.scene``);
    a joint state anywhere else is checked as always. On a real arm nothing publishes it."""

    task: str
    seed: int
    posture: Annotated[list[float], Length(7)]               # [rad], A1 first


class Problem(TypedDict):
    """Why something was rejected, failed or cancelled: a stable ``code`` and a sentence."""

    code: str
    message: str


class StepStatus(TypedDict):
    index: int
    instruction: str
    task: str
    score: float
    state: StepState
    duration_s: float | None                                 # the step's own time: pauses left out
    reason: str | None
    paused_s: NotRequired[float]                             # time its clock stood still (ended pauses)


class Waiting(TypedDict):
    """Why the active step's clock stands still: sim2real is not ``active`` (``sim2real``: its state)."""

    code: Literal['sim2real_inactive', 'sim2real_unconfigured']
    message: str
    sim2real: Lifecycle


class InstructionStatus(TypedDict):
    """``/legion/status``: one event of the instruction node's sequencer (a history, not a state)."""

    sequence_id: int
    instruction_id: str | None                               # the sender's id, echoed
    event: InstructionEvent
    state: SequenceState
    instruction: str
    active_index: int | None
    steps: list[StepStatus]
    reasons: list[Problem]
    step: NotRequired[int]                                   # step_<state>: the step's index
    stamp: NotRequired[float]                                # node clock [s]
    step_clock: NotRequired[str]                             # steps timed on this Clock topic
    real_time_factor: NotRequired[float | None]              # of that clock, null until measured
    waiting: NotRequired[Waiting]                            # a step runs, its clock paused: why


class TrainingProgress(TypedDict):
    """``/legion/training_progress``: one event of the trainer node (a history, like the status)."""

    event: TrainingEvent
    stamp: float                                             # wall clock [s]
    queue: list[str]
    learned: list[str]
    request: NotRequired[str | None]
    task: NotRequired[str]
    tasks: NotRequired[list[str]]
    learnt_before: NotRequired[list[str]]
    reasons: NotRequired[list[Problem]]
    reason: NotRequired[str]
    run_dir: NotRequired[str]
    total_steps: NotRequired[int]
    phase: NotRequired[int]
    env_steps: NotRequired[int]
    checkpoint: NotRequired[str]
    success_row: NotRequired[list[float | None] | None]    # null: the task was not evaluated


class RunInfo(TypedDict):
    """``/legion/run_info``: the recorder's run, latched (so recorded in the bag itself)."""

    bag: str
    started_utc: str
    host: str
    ros_domain_id: str
    pid: int
    python: str


class NodeStatus(TypedDict):
    """``<node>/status`` of every node (``node_base.StatusPublisher``): a short ``state`` word and
    whatever fields the node adds (sim_bridge its ``task``, the recorder its ``topics``, ...). The
    publisher always writes ``node`` and ``stamp``; readers need only ``state``."""

    state: str
    node: NotRequired[str]
    stamp: NotRequired[float]                                # node clock [s]


class ManagedNodeStatus(NodeStatus):
    """``~/status`` of a managed node (sim2real, :mod:`legion_ros.sim2real_status`): a state message carries
    its ``lifecycle`` state; an event (``input_rejected``, ``fault``) may not."""

    lifecycle: NotRequired[Lifecycle]
    reason: NotRequired[str]                                 # why configuring failed


ObjectNames = list[str]  # /legion/object_names: the names of the PoseArray's poses, in its order


# ----------------------------------------------------------------------------------------------------
# Codec

M = TypeVar('M')
_JSON_TYPES = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string',
               list: 'a list', dict: 'an object'}


def _jsonable(value: Any) -> Any:
    if hasattr(value, 'tolist'):  # numpy arrays and scalars
        return value.tolist()
    return str(value)


@dataclass(frozen=True)
class JsonMessage(Generic[M]):
    """A JSON message: its schema (a TypedDict, or ``list[...]``) and the largest payload decoded."""

    schema: Any
    name: str = ''  # (default: the TypedDict's name)
    max_bytes: int = MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, 'name', self.schema.__name__)

    def encode(self, message: M) -> str:
        """The message as JSON (numpy arrays and scalars as lists and numbers, anything else unknown
        as its ``str``), unchecked: see the module docstring."""
        return json.dumps(message, default=_jsonable)

    def decode(self, data: str | bytes) -> M:
        """The message in ``data``, checked against the schema; :class:`BadMessageError` otherwise."""
        size = len(data)
        if size <= self.max_bytes and isinstance(data, str):  # chars <= bytes: count only when it matters
            size = len(data.encode('utf-8', errors='surrogatepass'))
        if size > self.max_bytes:
            raise BadMessageError(f'{self.name}: payload of {size} bytes, more than the {self.max_bytes} '
                                  'accepted')
        try:
            text = data.decode('utf-8') if isinstance(data, bytes) else data
        except UnicodeDecodeError as error:
            raise BadMessageError(f'{self.name}: not UTF-8 (byte {error.start})') from None
        try:
            document = json.loads(text)
        except RecursionError:
            raise BadMessageError(f'{self.name}: JSON nested too deeply') from None
        except ValueError as error:  # json.JSONDecodeError, and integers of more than 4300 digits
            raise BadMessageError(f'{self.name}: not JSON ({error})') from None
        try:
            _check(document, self.schema, (), self.name)
        except RecursionError:  # a deep document in a free-form field
            raise BadMessageError(f'{self.name}: JSON nested too deeply') from None
        return document


def _where(path: tuple) -> str:
    if not path:
        return 'the message'
    text = ''.join(f'[{p}]' if isinstance(p, int) else f'.{p}' for p in path).lstrip('.')
    return f'"{text}"'


def _shown(value: Any) -> str:
    kind = next((name for cls, name in _JSON_TYPES.items() if isinstance(value, cls)), 'null')
    if kind == 'true or false':
        kind = 'a boolean'
    text = json.dumps(value)
    return f'{kind} ({text[:40]}{"..." if len(text) > 40 else ""})'


def _describe(hint: Any) -> str:
    """What ``hint`` expects, in words (for an error message)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return _describe(args[0])
    if origin in (Union, types.UnionType):
        return ' or '.join(_describe(a) if a is not type(None) else 'null' for a in args)
    if origin is list:
        return f'a list, each {_describe(args[0])}'
    if origin is Literal:
        return 'one of ' + ', '.join(map(repr, args))
    if isinstance(hint, type) and issubclass(hint, Enum):
        return 'one of ' + ', '.join(repr(m.value) for m in hint)
    if is_typeddict(hint):
        return 'an object'
    return _JSON_TYPES.get(hint, str(hint))


def _check(value: Any, hint: Any, path: tuple, name: str, expected: str = '') -> None:
    """Raise :class:`BadMessageError` unless ``value`` (parsed JSON) is what ``hint`` describes
    (``expected``: that in words, when ``hint`` is part of a union)."""
    def bad(problem: str) -> BadMessageError:
        return BadMessageError(f'{name}: {_where(path)} {problem}')

    def wrong() -> BadMessageError:
        return bad(f'must be {expected or _describe(hint)}, got {_shown(value)}')

    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        _check(value, args[0], path, name)
        for mark in args[1:]:
            if isinstance(mark, Length) and len(value) != mark.items:
                raise bad(f'must have {mark.items} items, got {len(value)}')
        return
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) not in args:
                raise wrong()
            return
        (kind,) = (a for a in args if a is not type(None))  # the schemas use only "X | None"
        _check(value, kind, path, name, _describe(hint))
        return
    if hint is Any:
        _check_finite(value, path, name)
        return
    if origin is Literal or (isinstance(hint, type) and issubclass(hint, Enum)):
        allowed = args if origin is Literal else tuple(m.value for m in hint)
        if not isinstance(value, str):
            raise wrong()
        if value not in allowed:
            raise bad(f'is {json.dumps(value)[:40]}, not {_describe(hint)}')
        return
    if origin is list:
        if not isinstance(value, list):
            raise wrong()
        for index, item in enumerate(value):
            _check(item, args[0], (*path, index), name)
        return
    if is_typeddict(hint):
        if not isinstance(value, dict):
            raise bad(f'must be a JSON object, got {_shown(value)}')
        hints = _hints(hint)
        for key in hints:  # in the schema's order
            if key not in value and key in hint.__required_keys__:
                raise BadMessageError(f'{name}: missing key {_where((*path, key))}')
        for key, item in value.items():
            if key in hints:
                _check(item, hints[key], (*path, key), name)
            else:  # kept for the reader, so held to the same rule on numbers
                _check_finite(item, (*path, key), name)
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong()
        if not _finite(value):
            raise bad(f'must be a finite number, got {_shown(value)}')
        return
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        return
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise wrong()
        return
    raise TypeError(f'{name}: no check for {hint!r} at {_where(path)}')  # a schema bug, found by the tests


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond any float
        return False


def _check_finite(value: Any, path: tuple, name: str) -> None:
    """No NaN or infinity anywhere below ``value`` (a free-form part of a message)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise BadMessageError(f'{name}: {_where(path)} must be a finite number, got {_shown(value)}')
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(item, (*path, index), name)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, (*path, key), name)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(schema: type) -> dict[str, Any]:
    """A TypedDict's key types, with Annotated kept and NotRequired taken off (resolved once)."""
    if schema not in _HINTS:
        hints = get_type_hints(schema, include_extras=True)
        _HINTS[schema] = {key: get_args(hint)[0] if get_origin(hint) is NotRequired else hint
                          for key, hint in hints.items()}
    return _HINTS[schema]


ACTIVE_STEP_JSON = JsonMessage(ActiveStep)
STEP_SUCCESS_JSON = JsonMessage(StepSuccess)
STATION_JSON = JsonMessage(Station)
SCENE_JSON = JsonMessage(Scene)
# An instruction may be 64 KiB (the node's max_bytes at most), and each event echoes it and its steps.
INSTRUCTION_STATUS_JSON = JsonMessage(InstructionStatus, max_bytes=1024 * 1024)
TRAINING_PROGRESS_JSON = JsonMessage(TrainingProgress)
RUN_INFO_JSON = JsonMessage(RunInfo)
NODE_STATUS_JSON = JsonMessage(NodeStatus)
MANAGED_NODE_STATUS_JSON = JsonMessage(ManagedNodeStatus)
OBJECT_NAMES_JSON = JsonMessage(ObjectNames, 'ObjectNames')


# ----------------------------------------------------------------------------------------------------
# Names


@dataclass(frozen=True)
class Topic:
    """A topic of the graph: its name, ROS message type, what it carries and, for JSON, its codec."""

    name: str
    type: str
    about: str
    json: JsonMessage | None = None

    def encode(self, message: Any) -> str:
        return self._codec().encode(message)

    def decode(self, data: str | bytes) -> Any:
        return self._codec().decode(data)

    def _codec(self) -> JsonMessage:
        if self.json is None:
            raise TypeError(f'{self.name} carries no JSON message')
        return self.json


@dataclass(frozen=True)
class Service:
    name: str
    type: str
    about: str


def node_name(node: str, name: str) -> str:
    """What a node's private ``~/<name>`` resolves to in the graphs (namespace :data:`NAMESPACE`)."""
    return f'{NAMESPACE}/{node}/{name}'


STRING, BOOL, FLOAT64, INT32 = 'std_msgs/msg/String', 'std_msgs/msg/Bool', 'std_msgs/msg/Float64', \
    'std_msgs/msg/Int32'
FLOAT32_ARRAY, POSE_ARRAY = 'std_msgs/msg/Float32MultiArray', 'geometry_msgs/msg/PoseArray'
TRIGGER = 'std_srvs/srv/Trigger'

# Language and sequencing
INSTRUCTION = Topic(f'{NAMESPACE}/instruction', STRING, 'an instruction: plain text, or JSON {id, text} '
                    '(`instructions.InstructionRequest`); read as raw bytes')
STATUS = Topic(f'{NAMESPACE}/status', STRING, 'the instruction node\'s events (transient local, 32 deep)',
               INSTRUCTION_STATUS_JSON)
ACTIVE_STEP = Topic(f'{NAMESPACE}/active_step', STRING, 'the step the arm works on (latched)',
                    ACTIVE_STEP_JSON)
ACTIVE_EMBEDDING = Topic(f'{NAMESPACE}/active_embedding', FLOAT32_ARRAY,
                         'the active task\'s language embedding (latched)')
STEP_SUCCESS = Topic(f'{NAMESPACE}/step_success', STRING, 'real2sim\'s task monitor: the step succeeded',
                     STEP_SUCCESS_JSON)
# Decision path
OBSERVATION = Topic(f'{NAMESPACE}/observation', FLOAT32_ARRAY, 'real2sim: 12 values (LEGION\'s layout)')
OBSERVATION_FULL = Topic(f'{NAMESPACE}/observation_full', FLOAT32_ARRAY,
                         'real2sim: 39 values (Meta-World\'s layout)')
#: The observation topics by length: real2sim publishes both, a policy reads the one its layout needs.
OBSERVATIONS = {12: OBSERVATION, 39: OBSERVATION_FULL}
ACTION = Topic(f'{NAMESPACE}/action', FLOAT32_ARRAY, 'policy: dx, dy, dz, gripper in [-1, 1]')
ESTOP = Topic(f'{NAMESPACE}/estop', BOOL, 'true stops every command until reset (latched)')
STATION = Topic(f'{NAMESPACE}/station', STRING, 'sim_bridge (workcell): the active station (latched)',
                STATION_JSON)
SCENE = Topic(f'{NAMESPACE}/scene', STRING, 'sim_bridge: a scene (re)load, the arm placed at its start '
              'posture (latched)', SCENE_JSON)
# The scene, as the twin or perception sees it (defaults of the nodes' *_topic parameters)
OBJECT_POSES = Topic(f'{NAMESPACE}/object_poses', POSE_ARRAY, 'objects, then the goal, robot base frame')
OBJECT_NAMES = Topic(f'{NAMESPACE}/object_names', STRING, 'names of the poses, in order (latched)',
                     OBJECT_NAMES_JSON)
GRIPPER_OPENING = Topic(f'{NAMESPACE}/gripper_opening', FLOAT64, 'measured finger opening in [0, 1]')
SIM_TASK_SUCCESS = Topic(node_name('sim_bridge', 'task_success'), BOOL, 'the twin\'s success criterion')
# Learning
LATENT = Topic(f'{NAMESPACE}/latent', FLOAT32_ARRAY, 'task_inference: the VAE latent of the observation')
CLUSTER = Topic(f'{NAMESPACE}/cluster', INT32, 'task_inference: the DPMM cluster (-1: no mixture)')
CHECKPOINT = Topic(f'{NAMESPACE}/checkpoint', STRING, 'trainer: path of the newest policy artefact, plain '
                   'text (latched)')
LEARN = Topic(f'{NAMESPACE}/learn', STRING, 'a task to learn, by name or in words; read as raw bytes')
TRAINING_PROGRESS = Topic(f'{NAMESPACE}/training_progress', STRING, 'the trainer\'s events (transient '
                          'local, 32 deep)', TRAINING_PROGRESS_JSON)
RUN_INFO = Topic(f'{NAMESPACE}/run_info', STRING, 'the recorder\'s run (latched)', RUN_INFO_JSON)
# Node states read by other processes (every node has one: node_status)
SIM2REAL_STATUS = Topic(node_name('sim2real', 'status'), STRING, 'sim2real\'s state and `lifecycle`; '
                        '`estop` stops the instruction, not `active` pauses its step (latched)',
                        MANAGED_NODE_STATUS_JSON)
SIM_BRIDGE_STATUS = Topic(node_name('sim_bridge', 'status'), STRING, 'the twin\'s state and scene `task` '
                          '(latched)', NODE_STATUS_JSON)
RECORDER_STATUS = Topic(node_name('recorder', 'status'), STRING, 'the recorder\'s state and `topics` '
                        '(latched)', NODE_STATUS_JSON)

TOPICS = (INSTRUCTION, STATUS, ACTIVE_STEP, ACTIVE_EMBEDDING, STEP_SUCCESS, OBSERVATION, OBSERVATION_FULL,
          ACTION, ESTOP, STATION, SCENE, OBJECT_POSES, OBJECT_NAMES, GRIPPER_OPENING, SIM_TASK_SUCCESS,
          LATENT, CLUSTER, CHECKPOINT, LEARN, TRAINING_PROGRESS, RUN_INFO, SIM2REAL_STATUS, SIM_BRIDGE_STATUS,
          RECORDER_STATUS)


def node_status(node: str) -> Topic:
    """The latched ``~/status`` (``NodeStatus`` JSON) of the graph's node ``node``."""
    return Topic(node_name(node, 'status'), STRING, f'{node}\'s state (latched)', NODE_STATUS_JSON)


CANCEL = Service(node_name('instruction', 'cancel'), TRIGGER, 'cancel the running instruction')
SKIP = Service(node_name('instruction', 'skip'), TRIGGER, 'skip the active step')
RESET_ESTOP = Service(node_name('sim2real', 'reset_estop'), TRIGGER,
                      're-enable commands once /legion/estop is false')
SIM_SET_PARAMETERS = Service(node_name('sim_bridge', 'set_parameters'), 'rcl_interfaces/srv/SetParameters',
                             'the twin\'s `task` (a workcell\'s station) and `seed`')
SIM2REAL_CHANGE_STATE = Service(node_name('sim2real', 'change_state'), 'lifecycle_msgs/srv/ChangeState',
                                'sim2real\'s lifecycle: `ros2 lifecycle set /legion/sim2real deactivate` '
                                'stops its commands, `activate` resumes')
SIM2REAL_GET_STATE = Service(node_name('sim2real', 'get_state'), 'lifecycle_msgs/srv/GetState',
                             'sim2real\'s lifecycle state (unconfigured, inactive, active, finalized)')
SERVICES = (CANCEL, SKIP, RESET_ESTOP, SIM2REAL_CHANGE_STATE, SIM2REAL_GET_STATE, SIM_SET_PARAMETERS)


# ----------------------------------------------------------------------------------------------------
# The table of docs/architecture.md


def shape(schema: Any) -> str:
    """A JSON schema in one line: ``{a, b?, c: {d, e}}`` (``?``: may be missing)."""
    origin, args = get_origin(schema), get_args(schema)
    if origin is Annotated:
        return shape(args[0])
    if origin is list:
        return f'[{shape(args[0]) or _describe(args[0]).split()[-1]}, ...]'
    if not is_typeddict(schema):
        return ''
    parts = []
    for key, hint in _hints(schema).items():
        inner = hint
        if get_origin(inner) in (Union, types.UnionType):
            inner = next(a for a in get_args(inner) if a is not type(None))
        nested = shape(inner) if is_typeddict(inner) or (
            get_origin(inner) is list and is_typeddict(get_args(inner)[0])) else ''
        optional = '' if key in schema.__required_keys__ else '?'
        parts.append(f'{key}{optional}' + (f': {nested}' if nested else ''))
    return '{' + ', '.join(parts) + '}'


def markdown_tables() -> str:
    """The wire contract as the two markdown tables of docs/architecture.md (a test keeps them equal)."""
    def row(*cells: str) -> str:
        return '| ' + ' | '.join(cells) + ' |'

    rows = [row('name', 'type', 'JSON', 'what'), row('---', '---', '---', '---')]
    for topic in TOPICS:
        rows.append(row(f'`{topic.name}`', topic.type.replace('/msg/', '/'),
                        f'`{topic.json.name}`' if topic.json else '-', topic.about))
    for service in SERVICES:
        rows.append(row(f'`{service.name}`', service.type.replace('/srv/', '/') + ' (service)', '-',
                        service.about))
    rows += ['', row('JSON', 'keys (`?`: may be missing; other keys are kept)'), row('---', '---')]
    for codec in dict.fromkeys(topic.json for topic in TOPICS if topic.json is not None):
        rows.append(row(f'`{codec.name}`', f'`{shape(codec.schema)}`'))
    return '\n'.join(rows)


if __name__ == '__main__':
    print(markdown_tables())
