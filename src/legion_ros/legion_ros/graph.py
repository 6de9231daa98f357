"""The LEGION-ROS node graphs (sim, real, train) as plain data: the single source of the wiring.

``launch/*.launch.py`` turn a :class:`Graph` into a ROS 2 ``LaunchDescription``
(:mod:`legion_bringup.launch_mixins`), and ``legion launch`` (:mod:`legion_ros.runner`) starts the
very same nodes as processes with the very same parameter files, inline parameters (a file keyed by
the node's full name, as launch_ros writes it), remappings and log level on machines without
``launch``. This module imports neither ``launch`` nor ``rclpy`` (:mod:`legion_ros.interfaces`, the names
of the wire, is plain Python).

It lives in legion_ros, the package whose executables it lists, so that both runners import it from
below: legion_bringup (the mixins, the launch files) imports it, nothing here imports legion_bringup.
The parameter files stay legion_bringup's data (``config/``, installed into its share): they are found
by path, never imported (:func:`config_directory`), and ``resolve`` takes a ``config_dir`` to use others.

Values that depend on launch arguments are written two ways:

* strings with ``{argument}`` placeholders (namespaces, parameter file names, remappings, commands);
* :class:`ArgValue` for a parameter whose value *is* an argument, converted to a ROS type.

A graph's ``checks`` see all argument values at once, for what no single argument can tell (the
workcell's active station must be one of its stations).
"""
from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legion_ros import interfaces
from legion_ros.interfaces import NAMESPACE

# The package whose share holds config/ (data looked up by name; legion_ros imports nothing of it).
CONFIG_PACKAGE = 'legion_bringup'
NODE_PACKAGE = 'legion_ros'
CONFIG_ENV = 'LEGION_CONFIG_DIR'
# Seconds a node gets between SIGINT and SIGTERM, in launch files and in the runner alike: nodes that
# import torch can spend several seconds in interpreter shutdown after a clean stop.
SHUTDOWN_TIMEOUT_S = 15.0
# A process that is not essential (the recorder: not on the command path) is restarted when it dies, at
# most RESTART_LIMIT times a run, RESTART_DELAY_S apart; it never takes the rest of the graph down.
RESTART_DELAY_S = 1.0
RESTART_LIMIT = 3
_PLACEHOLDER = re.compile(r'{(\w+)}')
_PLAIN = re.compile(r'[A-Za-z_/][\w./-]*')  # YAML reads these as the same string, unquoted
_YAML_WORDS = {'true', 'false', 'yes', 'no', 'on', 'off', 'y', 'n', 'null', 'nan', 'inf'}


class GraphError(ValueError):
    """Bad launch arguments or an inconsistent graph; the message says what to change."""


@dataclass(frozen=True)
class Argument:
    """A launch argument: ``name:=value`` on the command line of ``ros2 launch`` and ``legion launch``."""

    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.choices and self.default not in self.choices:
            raise GraphError(f'argument {self.name}: default {self.default!r} is not one of {self.choices}')


@dataclass(frozen=True)
class ArgValue:
    """A node parameter set from a launch argument, typed (``str``, ``bool``, ``int``, ``float``), or
    ``list`` for a ``string[]`` parameter written comma-separated: ``'a, b'`` -> ``['a', 'b']``, ``''`` ->
    ``[]`` (which a parameter file carries as "not set": the node keeps its default, an empty list)."""

    argument: str
    type: type = str

    def convert(self, text: str) -> Any:
        if self.type is bool:
            if text.lower() not in ('true', 'false'):
                raise GraphError(f'argument {self.argument} must be true or false, got {text!r}')
            return text.lower() == 'true'
        if self.type is list:
            items = [item.strip() for item in text.split(',')] if text.strip() else []
            if '' in items:
                raise GraphError(f'argument {self.argument} has an empty item in {text!r}; write the items '
                                 'comma-separated, e.g. a,b, or nothing for none')
            return items
        try:
            return self.type(text)
        except ValueError:
            raise GraphError(f'argument {self.argument} must be a {self.type.__name__}, '
                             f'got {text!r}') from None


@dataclass(frozen=True)
class Condition:
    """Start an entity only when every named argument has the given value."""

    equals: tuple[tuple[str, str], ...]

    def holds(self, values: Mapping[str, str]) -> bool:
        return all(values[name] == expected for name, expected in self.equals)

    def arguments(self) -> list[str]:
        return [name for name, _ in self.equals]


def when(**equals: str) -> Condition:
    return Condition(tuple(sorted(equals.items())))


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph: an executable of ``legion_ros`` with its parameters."""

    executable: str
    name: str
    namespace: str = NAMESPACE  # the names in legion_ros.interfaces resolve in it
    parameter_files: tuple[str, ...] = ()            # file names in config/, placeholders allowed
    parameters: Mapping[str, Any] = field(default_factory=dict)  # inline overrides, after the files
    remappings: tuple[tuple[str, str], ...] = ()
    condition: Condition | None = None
    package: str = NODE_PACKAGE
    hosts: tuple[str, ...] = ()  # a process of several nodes: their names (each keeps its own)
    # False: the graph goes on without it (restarted, or reported) when it dies; True: its death ends the run.
    essential: bool = True


@dataclass(frozen=True)
class ProcessSpec:
    """A non-node process (``ros2 bag record``), only for the ROS 2 launch files."""

    name: str
    cmd: tuple[str, ...]
    condition: Condition | None = None
    essential: bool = True


@dataclass(frozen=True)
class IncludeSpec:
    """Another package's launch file (a robot driver), only for the ROS 2 launch files."""

    package: str
    launch_file: str
    arguments: Mapping[str, str] = field(default_factory=dict)
    condition: Condition | None = None


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    arguments: tuple[Argument, ...]
    nodes: tuple[NodeSpec, ...]
    processes: tuple[ProcessSpec, ...] = ()
    includes: tuple[IncludeSpec, ...] = ()
    # Each gets every argument's value and raises GraphError for a combination that cannot work.
    checks: tuple[Callable[[Mapping[str, str]], None], ...] = ()
    # Parameters of two nodes that must be equal; checked on the resolved graph (files, arguments, defaults).
    couplings: tuple[Coupling, ...] = ()

    def argument(self, name: str) -> Argument:
        for argument in self.arguments:
            if argument.name == name:
                return argument
        raise GraphError(f'{self.name} graph has no argument {name!r}; '
                         f'arguments: {", ".join(a.name for a in self.arguments)}')

    def referenced_arguments(self) -> set[str]:
        """Every argument name that nodes, processes and includes use (for consistency checks)."""
        used: set[str] = {'log_level'} if self.nodes else set()  # every node's --log-level
        texts: list[str] = []
        for node in self.nodes:
            texts += [node.namespace, *node.parameter_files, *(a for pair in node.remappings for a in pair)]
            used.update(v.argument for v in node.parameters.values() if isinstance(v, ArgValue))
            used.update(node.condition.arguments() if node.condition else [])
        for process in self.processes:
            texts += list(process.cmd)
            used.update(process.condition.arguments() if process.condition else [])
        for include in self.includes:
            texts += list(include.arguments.values())
            used.update(include.condition.arguments() if include.condition else [])
        for text in texts:
            used.update(_PLACEHOLDER.findall(text))
        return used

    def resolve(self, overrides: Mapping[str, str] | None = None, config_dir: Path | None = None
                ) -> ResolvedGraph:
        """Validate ``overrides`` (``name -> value``) and fill every placeholder, as launch would."""
        values = {argument.name: argument.default for argument in self.arguments}
        for name, value in (overrides or {}).items():
            argument = self.argument(name)
            if argument.choices and value not in argument.choices:
                raise GraphError(f'{name}:={value} is not allowed; choose one of: '
                                 f'{", ".join(argument.choices)} ({argument.description})')
            values[name] = value
        for check in self.checks:
            check(values)
        config = Path(config_dir) if config_dir is not None else config_directory()
        nodes = []
        for node in self.nodes:
            if node.condition is not None and not node.condition.holds(values):
                continue
            files = []
            for file_name in node.parameter_files:
                path = config / fill(file_name, values)
                if not path.is_file():
                    raise GraphError(f'node {node.name}: parameter file {path} does not exist')
                files.append(path)
            parameters = {key: value.convert(values[value.argument]) if isinstance(value, ArgValue) else value
                          for key, value in node.parameters.items()}
            nodes.append(ResolvedNode(
                executable=node.executable, name=node.name, namespace=fill(node.namespace, values),
                parameter_files=tuple(files), parameters=parameters, package=node.package,
                remappings=tuple((fill(a, values), fill(b, values)) for a, b in node.remappings),
                log_level=values.get('log_level', 'info'), hosts=node.hosts, essential=node.essential))
        started = [process for process in self.processes
                   if process.condition is None or process.condition.holds(values)]
        processes = tuple((process.name, tuple(fill(part, values) for part in process.cmd))
                          for process in started)
        includes = tuple(f'{include.package}/{include.launch_file}' for include in self.includes
                         if include.condition is None or include.condition.holds(values))
        optional = tuple(process.name for process in started if not process.essential)
        for coupling in self.couplings:
            coupling.check(nodes)
        return ResolvedGraph(self.name, values, tuple(nodes), processes, includes, optional)


@dataclass(frozen=True)
class Coupling:
    """Two parameters, ``(node, parameter)`` each, that must hold the same value whenever both nodes run:
    a mismatch is a :class:`GraphError` naming both, before any node starts, under either runner."""

    first: tuple[str, str]
    second: tuple[str, str]
    why: str

    def check(self, nodes: tuple[ResolvedNode, ...]) -> None:
        found = [effective_parameter(nodes, node, name) for node, name in (self.first, self.second)]
        if None in found:
            return  # one of the two nodes does not run in this graph
        (first, first_from), (second, second_from) = found
        if first != second:
            raise GraphError(f'{self.first[0]} {self.first[1]} is {first!r} ({first_from}) but '
                             f'{self.second[0]} {self.second[1]} is {second!r} ({second_from}); they must be '
                             f'equal: {self.why}')


def _sections_for(table: Any, node: str) -> list[Mapping[str, Any]]:
    """The ``ros__parameters`` of a parameter file that reach ``node`` (``/**``, ``/**/node``, ``node``,
    ``/legion/node``), in file order; rcl lets a later entry win."""
    sections = []
    for key, body in (table or {}).items():
        if str(key).rstrip('/').split('/')[-1] in (node, '**', '*') and isinstance(body, Mapping):
            sections.append(body.get('ros__parameters') or {})
    return sections


def _lookup(section: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """``driver.controller_rate_hz`` in a nested or flat (``'driver.x': ...``) section."""
    if dotted in section:
        return True, section[dotted]
    head, dot, rest = dotted.partition('.')
    if dot and isinstance(section.get(head), Mapping):
        return _lookup(section[head], rest)
    return False, None


def effective_parameter(nodes: tuple[ResolvedNode, ...], node: str, name: str) -> tuple[Any, str] | None:
    """The value ``node`` starts with and where it comes from: the inline parameters (launch arguments),
    else the last parameter file that sets it, else the default in ``legion_ros.nodes.<node>``; ``None``
    when no process of ``nodes`` runs ``node``."""
    import yaml

    process = next((resolved for resolved in nodes if node in resolved.hosted), None)
    if process is None:
        return None
    if name in process.parameters:
        return process.parameters[name], 'set by the graph from a launch argument'
    found = None
    for path in process.parameter_files:
        for section in _sections_for(yaml.safe_load(Path(path).read_text(encoding='utf-8')), node):
            present, value = _lookup(section, name)
            if present:
                found = value, f'config/{Path(path).name}'
    if found is not None:
        return found
    import importlib

    # Lazily: node modules import rclpy, which this module must not need to be imported itself.
    spec = importlib.import_module(f'{NODE_PACKAGE}.nodes.{node}').PARAMETERS[name]
    return spec.default, f'the default in {NODE_PACKAGE}/nodes/{node}.py'


@dataclass(frozen=True)
class ResolvedNode:
    executable: str
    name: str
    namespace: str
    parameter_files: tuple[Path, ...]
    parameters: Mapping[str, Any]
    remappings: tuple[tuple[str, str], ...]
    package: str = NODE_PACKAGE
    log_level: str = 'info'
    hosts: tuple[str, ...] = ()
    essential: bool = True

    @property
    def fully_qualified_name(self) -> str:
        return self.namespace.rstrip('/') + '/' + self.name

    @property
    def hosted(self) -> tuple[str, ...]:
        """The names of the ROS nodes this process runs (its own name unless it hosts several)."""
        return self.hosts or (self.name,)

    @property
    def node_names(self) -> tuple[str, ...]:
        """The fully qualified names of the ROS nodes this process runs."""
        prefix = self.namespace.rstrip('/') + '/'
        return tuple(prefix + name for name in self.hosted)

    def inline_parameters_file(self, directory: Path) -> Path | None:
        """Write the inline parameters as launch_ros does: a parameter file keyed by the node's fully
        qualified name, passed after the graph's files. (``-p name:=value`` would not do: rcl files
        ``-p`` under ``/**``, and a ``/**/<node>`` entry of a parameter file beats that.)"""
        if not self.parameters:
            return None
        import yaml

        path = Path(directory) / (self.fully_qualified_name.strip('/').replace('/', '__') + '.yaml')
        table = {name: {'ros__parameters': dict(self.parameters)} for name in self.node_names}
        path.write_text(yaml.safe_dump(table, default_flow_style=False), encoding='utf-8')
        return path

    def with_parameters(self, extra: Mapping[str, Mapping[str, Any]], directory: Path) -> ResolvedNode:
        """This node (or process of nodes) with its inline parameters plus ``extra[<node name>]`` for each
        node it runs, written to a parameter file in ``directory`` (one section per node)."""
        from dataclasses import replace

        import yaml

        table = {f'/**/{name}': {'ros__parameters': {**self.parameters, **extra.get(name, {})}}
                 for name in self.hosted}
        path = Path(directory) / f'{self.name}.yaml'
        path.write_text(yaml.safe_dump(table), encoding='utf-8')
        return replace(self, parameters={}, parameter_files=(*self.parameter_files, path))

    def ros_args(self, parameters_dir: Path | None = None) -> list[str]:
        """The ``--ros-args`` that give this process exactly what launch_ros would give the node;
        ``parameters_dir`` receives the inline parameter file (needed when there are inline parameters)."""
        # A process hosting several nodes must not rename them all to one name.
        rename = () if self.hosts else ('-r', f'__node:={self.name}')
        args = ['--ros-args', *rename, '-r', f'__ns:={self.namespace}']
        files = list(self.parameter_files)
        if self.parameters:
            if parameters_dir is None:
                raise GraphError(f'node {self.name} has inline parameters: ros_args() needs a parameters_dir')
            files.append(self.inline_parameters_file(parameters_dir))
        for path in files:
            args += ['--params-file', str(path)]
        for source, target in self.remappings:
            args += ['-r', f'{source}:={target}']
        args += ['--log-level', self.log_level]
        return args


@dataclass(frozen=True)
class ResolvedGraph:
    name: str
    values: Mapping[str, str]
    nodes: tuple[ResolvedNode, ...]
    processes: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, command line)
    includes: tuple[str, ...] = ()  # other packages' launch files: only ``ros2 launch`` starts them
    optional_processes: tuple[str, ...] = ()  # names of the processes that are not essential


def fill(text: str, values: Mapping[str, str]) -> str:
    """``'driver_{driver}.yaml'`` -> ``'driver_lbr.yaml'``; an unknown name is a graph bug."""
    try:
        return string.Formatter().vformat(text, (), dict(values))
    except KeyError as error:
        raise GraphError(f'{text!r} refers to undeclared argument {error.args[0]!r}') from None


def split_placeholders(text: str) -> list[tuple[str, str]]:
    """``'a_{x}.yaml'`` -> ``[('text', 'a_'), ('arg', 'x'), ('text', '.yaml')]`` (for launch)."""
    parts, position = [], 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append(('text', text[position:match.start()]))
        parts.append(('arg', match.group(1)))
        position = match.end()
    if position < len(text):
        parts.append(('text', text[position:]))
    return parts


def ros_yaml(value: Any) -> str:
    """A Python value as the YAML that ``-p name:=...`` parses back to the same ROS parameter type.

    Mind rcl's precedence: ``-p`` values live under ``/**`` and lose against a parameter file's
    ``/**/<node>`` entry; the graph itself therefore passes inline parameters as a file.
    """
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return repr(value) if '.' in repr(value) or 'e' in repr(value) else f'{value}.0'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
            return value
        return "'" + value.replace("'", "''") + "'"  # quoted: '' stays a string, 'true' stays text
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(ros_yaml(item) for item in value) + ']'
    raise GraphError(f'cannot pass {value!r} as a ROS parameter')


def config_directory() -> Path:
    """Where the node parameter files are: $LEGION_CONFIG_DIR, the installed share, or the source tree."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    # A source checkout: src/legion_ros/legion_ros/graph.py -> src/legion_bringup/config (-> ../../config).
    source = Path(__file__).resolve().parents[2] / CONFIG_PACKAGE / 'config'
    if source.is_dir():
        return source
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            return Path(get_package_share_directory(CONFIG_PACKAGE)) / 'config'
        except (PackageNotFoundError, LookupError, ValueError):
            pass
    except ImportError:
        pass
    raise GraphError(f'cannot find the {CONFIG_PACKAGE} config directory; set {CONFIG_ENV}')


# ----------------------------------------------------------------------------------------------------
# Reusable arguments (one definition, the same name, default and help in every launch file).

DRIVERS = ('lbr', 'iiwa_ros2')
BOOL = ('true', 'false')
LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')

DRIVER = Argument('driver', 'lbr', 'robot driver whose interface the graph speaks: lbr '
                  '(lbr_fri_ros2_stack, namespace /lbr, joints lbr_A1..A7) or iiwa_ros2 (ICube, '
                  'namespace /, joints joint_a1..a7); config/driver_<driver>.yaml', DRIVERS)
MODEL = Argument('model', 'iiwa7', 'robot model (the twin and the safety limits exist for the '
                 'LBR iiwa 7 R800)', ('iiwa7',))
CHECKPOINT = Argument('checkpoint', '', 'LEGION checkpoint (file or run directory) for the policy; '
                      'empty: config/policy.yaml decides')
RECORD = Argument('record', 'false', 'record every topic of the run to a rosbag2 (MCAP) directory', BOOL)
RECORDER = Argument('recorder', 'legion', 'who records when record:=true: legion (the recorder node, '
                    'adds run metadata; works without ROS installed) or rosbag2 (`ros2 bag record -s mcap`, '
                    'ros2 launch only)', ('legion', 'rosbag2'))
BAG_DIR = Argument('bag_dir', 'runs/bags', 'directory that receives one bag directory per run')
LOG_LEVEL = Argument('log_level', 'info', 'log level of every node', LOG_LEVELS)
COMPOSITION = Argument('composition', 'true', 'true: real2sim, policy and sim2real share one process and '
                       'hand messages over directly (decision_path, lowest latency); false: one process '
                       'each (restart or debug one alone)', BOOL)


# A workcell holds this many stations at most: legion_kuka.workcell.MAX_STATIONS (not imported: it
# pulls in MuJoCo; test_launch_static checks the two agree).
WORKCELL_MAX_STATIONS = 3
WORKCELL = Argument('workcell', '', 'Meta-World tasks of a workcell, comma-separated (at most '
                    f'{WORKCELL_MAX_STATIONS}, distinct, e.g. reach-v3,drawer-close-v3,window-close-v3): the '
                    'twin puts every task\'s station around the arm in one scene (ahead, left, right) and '
                    'task:= picks the active station, so it must be one of them; empty: one task\'s scene')
WORKCELL_VALUE = ArgValue('workcell', list)


def check_workcell(values: Mapping[str, str]) -> None:
    """``workcell:=`` and ``task:=`` fit together: at most :data:`WORKCELL_MAX_STATIONS` distinct
    stations, the active one among them. (Whether each names a task of the KUKA embodiment the twin
    itself checks when it builds the scene: sim_bridge then stops with the list of those it has.)"""
    stations = WORKCELL_VALUE.convert(values['workcell'])
    if not stations:
        return
    given = f'workcell:={values["workcell"]}'
    if len(stations) > WORKCELL_MAX_STATIONS:
        raise GraphError(f'{given} names {len(stations)} stations; a workcell holds at most '
                         f'{WORKCELL_MAX_STATIONS}')
    twice = sorted({task for task in stations if stations.count(task) > 1})
    if twice:
        raise GraphError(f'{given} names {", ".join(twice)} more than once; each station is a different task')
    if values['task'] not in stations:
        raise GraphError(f'task:={values["task"]} is not one of the stations of {given}; task:= picks the '
                         f'active station: one of {", ".join(stations)}')


def use_sim_time(default: str) -> Argument:
    return Argument('use_sim_time', default, 'nodes follow /clock (published by the MuJoCo twin)', BOOL)


def recording(extra_args: tuple[str, ...] = ()) -> tuple[NodeSpec, ProcessSpec]:
    """The two ways of recording a run, chosen by ``recorder:=``."""
    node = NodeSpec('recorder', 'recorder', parameter_files=('recorder.yaml',),
                    parameters={'bag_dir': ArgValue('bag_dir'),
                                'use_sim_time': ArgValue('use_sim_time', bool)},
                    condition=when(record='true', recorder='legion'), essential=False)
    # rosbag2 names its bag rosbag2_<date>_<time> in the working directory, which must exist.
    record = ' '.join(('ros2', 'bag', 'record', '--all', '--storage', 'mcap', '--include-hidden-topics',
                       *extra_args))
    shell = f'mkdir -p "{{bag_dir}}" && cd "{{bag_dir}}" && exec {record}'
    process = ProcessSpec('ros2_bag_record', ('sh', '-c', shell),
                          condition=when(record='true', recorder='rosbag2'), essential=False)
    return node, process


# Parameters documented as "must equal" in two nodes, checked by every graph that runs both.
POLICY_RATE = Coupling(('policy', 'rate_hz'), ('sim2real', 'policy_rate_hz'),
                       'sim2real spreads each action over the cycles of one policy step; at another rate '
                       'than the policy\'s the arm moves faster or slower than the policy was trained for')
TWIN_MARGIN = Coupling(('sim_bridge', 'start_inside_margin_deg'), ('sim2real', 'position_margin_deg'),
                       'the twin starts the arm inside the safety filter\'s joint limits; with a smaller '
                       'margin than the filter\'s, sim2real holds every command of a scene that starts '
                       'near a limit')
TWIN_RATE = Coupling(('sim_bridge', 'control_rate_hz'), ('sim2real', 'driver.controller_rate_hz'),
                     'the twin plays the driver\'s controller, one cycle per joint state; sim2real times '
                     'each policy step in those cycles')


def legion_nodes(simulated: bool = False) -> tuple[NodeSpec, ...]:
    """The learning side, identical for sim and real: language -> task -> policy -> arm; on a simulator
    sim2real also follows the twin's scene announcements (``accept_scenes``)."""
    sim_time = {'use_sim_time': ArgValue('use_sim_time', bool)}
    scenes = {'accept_scenes': True} if simulated else {}
    driver = ('driver_{driver}.yaml',)
    separate = when(composition='false')
    return (
        NodeSpec('instruction', 'instruction', parameter_files=('instruction.yaml',), parameters=sim_time),
        NodeSpec('task_inference', 'task_inference', parameter_files=('task_inference.yaml',),
                 parameters={**sim_time, 'checkpoint': ArgValue('checkpoint')}),
        NodeSpec('decision_path', 'decision_path',
                 parameter_files=(*driver, 'sim2real.yaml', 'real2sim.yaml', 'policy.yaml'),
                 parameters={**sim_time, **scenes, 'checkpoint': ArgValue('checkpoint')},
                 condition=when(composition='true'), hosts=('sim2real', 'real2sim', 'policy')),
        NodeSpec('policy', 'policy', parameter_files=(*driver, 'policy.yaml'),
                 parameters={**sim_time, 'checkpoint': ArgValue('checkpoint')}, condition=separate),
        NodeSpec('real2sim', 'real2sim', parameter_files=(*driver, 'real2sim.yaml'), parameters=sim_time,
                 condition=separate),
        NodeSpec('sim2real', 'sim2real', parameter_files=(*driver, 'sim2real.yaml'),
                 parameters={**sim_time, **scenes}, condition=separate),
    )


def sim_graph() -> Graph:
    recorder, bag = recording(('--use-sim-time',))
    return Graph(
        'sim', 'LEGION on the MuJoCo twin of the iiwa, which speaks the real driver\'s topics',
        arguments=(DRIVER, MODEL, CHECKPOINT,
                   Argument('task', 'reach-v3', 'Meta-World task whose scene the twin loads first (with '
                            'workcell:=, the active station)'),
                   WORKCELL, use_sim_time('true'), COMPOSITION, RECORD, RECORDER, BAG_DIR, LOG_LEVEL),
        nodes=(NodeSpec('sim_bridge', 'sim_bridge',
                        parameter_files=('driver_{driver}.yaml', 'sim_bridge.yaml'),
                        parameters={'task': ArgValue('task'), 'workcell': WORKCELL_VALUE,
                                    'model': ArgValue('model'),
                                    'publish_clock': ArgValue('use_sim_time', bool),
                                    'use_sim_time': False}),
               *legion_nodes(simulated=True), recorder),
        processes=(bag,),
        checks=(check_workcell,),
        couplings=(POLICY_RATE, TWIN_MARGIN, TWIN_RATE),
    )


def real_graph() -> Graph:
    recorder, bag = recording()
    return Graph(
        'real', 'LEGION on the physical iiwa through its ROS 2 driver (start the driver first, in T1)',
        arguments=(DRIVER, MODEL, CHECKPOINT, use_sim_time('false'),
                   Argument('start_driver', 'false', 'also include the driver\'s own launch file '
                            '(lbr: lbr_bringup hardware.launch.py; iiwa_ros2: iiwa_bringup iiwa.launch.py); '
                            'ros2 launch only', BOOL),
                   COMPOSITION, RECORD, RECORDER, BAG_DIR, LOG_LEVEL),
        nodes=(*legion_nodes(), recorder),
        processes=(bag,),
        couplings=(POLICY_RATE,),
        includes=(
            IncludeSpec('lbr_bringup', 'hardware.launch.py',
                        {'model': '{model}', 'ctrl': 'forward_position_controller'},
                        condition=when(start_driver='true', driver='lbr')),
            IncludeSpec('iiwa_bringup', 'iiwa.launch.py',
                        {'use_fake_hardware': 'false', 'robot_controller': 'forward_position_controller',
                         'start_rviz': 'false'},
                        condition=when(start_driver='true', driver='iiwa_ros2')),
        ),
    )


TRAIN_CONFIGS = ('legion', 'tiny', 'original', 'bench_learn')  # legion: config/train/config.yaml as is;
# the others: presets in config/train/preset/<name>.yaml


def train_graph() -> Graph:
    recorder, bag = recording()
    return Graph(
        'train', f'lifelong LEGION training as a node: tasks requested on {interfaces.LEARN.name}, progress '
        f'on {interfaces.TRAINING_PROGRESS.name}, each learnt policy announced on '
        f'{interfaces.CHECKPOINT.name}',
        arguments=(Argument('run_dir', 'runs/ros_train', 'directory of the training runs (checkpoints, '
                            'policy.pt)'),
                   Argument('train_config', 'legion', 'training configuration: legion (config/train as is) '
                            'or a preset of config/train/preset', TRAIN_CONFIGS),
                   use_sim_time('false'), RECORD, RECORDER, BAG_DIR, LOG_LEVEL),
        nodes=(NodeSpec('trainer', 'trainer', parameter_files=('trainer.yaml',),
                        parameters={'run_dir': ArgValue('run_dir'), 'config_name': ArgValue('train_config'),
                                    'use_sim_time': ArgValue('use_sim_time', bool)}),
               recorder),
        processes=(bag,),
    )


GRAPHS = {'sim': sim_graph, 'real': real_graph, 'train': train_graph}


def graph(name: str) -> Graph:
    try:
        return GRAPHS[name]()
    except KeyError:
        raise GraphError(f'unknown graph {name!r}; one of: {", ".join(GRAPHS)}') from None


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``['driver:=lbr', 'record:=true']`` -> dict, the ``ros2 launch`` argument syntax."""
    values = {}
    for item in items:
        name, sep, value = item.partition(':=')
        if not sep or not name:
            raise GraphError(f'argument {item!r} is not of the form name:=value')
        values[name] = value
    return values
