"""Launch mixins: :mod:`legion_ros.graph` descriptions turned into ROS 2 launch actions.

In the spirit of lbr_bringup's mixins: each static method returns launch actions for one part of a
graph, so ``launch/*.launch.py`` stay short and every launch file declares the same arguments with the
same defaults, help and ``choices``. Needs ``launch`` and ``launch_ros`` (a ROS 2 install); the
pip-only runner uses the graph descriptions directly.

:meth:`LegionMixin.session` gives ``ros2 launch`` the rules ``legion launch`` (:mod:`legion_ros.runner`)
keeps, so that a graph behaves the same under both runners (docs/architecture.md, "Running a graph"):
one ROS domain for the whole graph, SIGINT and SIGTERM both stop every node in order, an essential node
that exits ends the run with exit code 1 and one that is not is restarted (:func:`exit_rule`).
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import List  # noqa: UP035 (see parameter_value)

import launch.logging
from launch import Action, LaunchDescription, Substitution
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    LogInfo,
    OpaqueFunction,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from legion_ros.environment import DISCOVERY_VAR, DOMAIN_VAR, LAUNCHER_VAR, apply_ros_defaults
from legion_ros.graph import (
    CONFIG_PACKAGE,
    RESTART_DELAY_S,
    RESTART_LIMIT,
    SHUTDOWN_TIMEOUT_S,
    ArgValue,
    Condition,
    Graph,
    IncludeSpec,
    NodeSpec,
    ProcessSpec,
    config_directory,
    ros_yaml,
)
from legion_ros.graph import split_placeholders as _split
from legion_ros.runner import EXIT_NODE_CONFIG, KILL_GRACE_S

_logger = launch.logging.get_logger('legion')
# A stopping process gets SIGINT, SIGTERM after SHUTDOWN_TIMEOUT_S, SIGKILL KILL_GRACE_S later: the
# escalation of legion launch.
STOP_TIMEOUTS = {'sigterm_timeout': str(SHUTDOWN_TIMEOUT_S), 'sigkill_timeout': str(KILL_GRACE_S)}
# The launcher holds its graph's domain lease until it exits (the lease is an open, locked file).
_leases: list = []


class RunFailedError(RuntimeError):
    """Raised inside ``ros2 launch`` so that it exits with code 1, as ``legion launch`` does: when an
    essential process exits while the graph runs (launch then stops every other process) or a process
    does not stop cleanly."""


def stopped_cleanly(name: str, event) -> None:
    """While the graph stops: exit code 0, or the SIGINT's own (a process that keeps the default
    handler), is a clean stop, as in ``legion launch``."""
    if event.returncode not in (0, -signal.SIGINT):
        raise RunFailedError(f'{name} did not stop cleanly (exit code {event.returncode})')


def essential_exit(name: str, event, context) -> None:
    if context.is_shutdown:
        return stopped_cleanly(name, event)
    raise RunFailedError(
        f'essential process {name} exited with code {event.returncode} while the graph ran: stopping '
        'every other process (a dead node on the command path must not leave the rest commanding the arm)')


def optional_exit(name: str, restarted: Callable[[int], Action], restarts: int, event, context
                  ) -> TimerAction | None:
    """A process that is not essential exited: restart it (a fresh action of the same spec) unless it
    failed on its configuration (it would fail the same way) or has been restarted ``RESTART_LIMIT``
    times; the graph goes on either way. Launch's own ``respawn`` cannot tell a configuration error."""
    if context.is_shutdown:
        return stopped_cleanly(name, event)
    code = event.returncode
    why = ('a configuration error' if code == EXIT_NODE_CONFIG
           else f'restarted {restarts} times' if restarts >= RESTART_LIMIT else None)
    if why is not None:
        _logger.error(f'{name} exited with code {code}; not restarted ({why}); it is not on the command '
                      'path: the graph goes on without it')
        return None
    _logger.warning(f'{name} exited with code {code}; it is not on the command path: restarting it in '
                    f'{RESTART_DELAY_S:g} s ({restarts + 1} of {RESTART_LIMIT})')
    return TimerAction(period=RESTART_DELAY_S, actions=[restarted(restarts + 1)])


def exit_rule(name: str, essential: bool, restarted: Callable[[int], Action], restarts: int) -> dict:
    """What a process's exit means, the rule of ``legion launch`` (docs/architecture.md, "Running a
    graph"): an essential one ends the run; one that is not (``NodeSpec.essential=False``, the recorder)
    is restarted by ``restarted(restarts + 1)`` (:func:`optional_exit`)."""
    if essential:
        return {'on_exit': partial(essential_exit, name)}
    return {'on_exit': partial(optional_exit, name, restarted, restarts)}


def one_domain(context, graph_name: str) -> list:
    """Lease the graph's ROS domain in the launcher, before any process starts, so that every node
    inherits it (each node would otherwise lease a domain of its own, unable to see the others); a
    ``ROS_DOMAIN_ID`` the user exported wins, as everywhere in the project."""
    exported = bool(context.environment.get(DOMAIN_VAR))
    # (an exported domain is claimed too when free, so that no leasing run picks it meanwhile)
    lease = apply_ros_defaults(context.environment, role='graph')  # launch's environment is os.environ
    if lease is not None:
        _leases.append(lease)
    environment = context.environment
    _logger.info(f'{graph_name} graph in ROS domain {environment[DOMAIN_VAR]} '
                 f'({"ROS_DOMAIN_ID as exported" if exported else "leased for this launch"}; '
                 f'{DISCOVERY_VAR}={environment[DISCOVERY_VAR]})')
    return []


def stop_on_signals(context) -> list:
    """SIGINT and SIGTERM both stop the graph: SIGINT to every process, SIGTERM after
    ``SHUTDOWN_TIMEOUT_S``, then SIGKILL, before the launcher exits.

    Jazzy's launch ends at once on SIGTERM (what ``docker stop`` and systemd send) and leaves every
    process running (ros2/launch#666); on SIGINT with a terminal on stdin it signals no process itself,
    trusting that the terminal's Ctrl-C reached them all, which a SIGINT sent by ``kill`` or
    ``docker stop`` does not. So both signals are taken over here; a node that also got the terminal's
    Ctrl-C just gets a second SIGINT, which our nodes treat as the first. Launch offers no public hook
    for its signals: this takes the handlers of its running signal manager.
    """
    from launch.utilities.signal_management import AsyncSafeSignalManager

    manager = getattr(AsyncSafeSignalManager, '_AsyncSafeSignalManager__current', None)
    if manager is None:  # not under a running LaunchService (a test evaluating the description)
        return []

    def stop(signum: int) -> None:
        if context.is_shutdown:
            return  # already stopping: the escalation timers run
        name = signal.Signals(signum).name
        _logger.warning(f'{name} received: stopping every process (SIGINT, SIGTERM after '
                        f'{SHUTDOWN_TIMEOUT_S:g} s, then SIGKILL)')
        context.emit_event_sync(Shutdown(reason=f'{name} received', due_to_sigint=False))

    for signum in (signal.SIGINT, signal.SIGTERM):
        manager.handle(signum, stop)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        # Python handles no SIGTERM by default, so the kernel would end the launcher before the manager
        # heard it; any Python handler makes the signal reach the manager.
        signal.signal(signal.SIGTERM, lambda *_: None)
    return []


def config_share() -> Path:
    """The config/ that :meth:`LegionMixin.node` passes (FindPackageShare); the graph's own lookup where
    the package is not installed (a test evaluating a launch description from the source tree)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return Path(get_package_share_directory(CONFIG_PACKAGE)) / 'config'
    except PackageNotFoundError:
        return config_directory()


def substitutions(text: str) -> list:
    """``'driver_{driver}.yaml'`` -> ``['driver_', LaunchConfiguration('driver'), '.yaml']``."""
    return [LaunchConfiguration(value) if kind == 'arg' else value for kind, value in _split(text)] or ['']


class ConvertedArgument(Substitution):
    """A launch argument converted exactly as ``legion launch`` converts it (:meth:`ArgValue.convert`),
    as the YAML that launch_ros reads back into that value: ``reach-v3,push-v3`` -> ``[reach-v3,
    push-v3]`` for a ``string[]`` parameter (launch_ros would take the argument itself for one string)."""

    def __init__(self, value: ArgValue) -> None:
        super().__init__()
        self.value = value

    def describe(self) -> str:
        return f'ConvertedArgument({self.value.argument!r}, {self.value.type.__name__})'

    def perform(self, context) -> str:
        return ros_yaml(self.value.convert(context.launch_configurations[self.value.argument]))


class LauncherPid(Substitution):
    """The pid of the process that runs the launch (``LEGION_LAUNCHER_PID`` of every node)."""

    def describe(self) -> str:
        return 'LauncherPid()'

    def perform(self, context) -> str:
        return str(os.getpid())


def parameter_value(value: ArgValue) -> ParameterValue:
    """The launch_ros parameter of an :class:`ArgValue`, of the type the graph gives it."""
    if value.type is list:
        # typing.List: launch's type check accepts only that object (``List[str]``), not ``list[str]``.
        return ParameterValue(ConvertedArgument(value), value_type=List[str])  # noqa: UP006
    return ParameterValue(LaunchConfiguration(value.argument), value_type=value.type)


class LegionMixin:
    @staticmethod
    def session(graph: Graph) -> list[OpaqueFunction]:
        """In every launch file, before any process: one ROS domain for the graph and the stop signals
        (see the module docstring)."""
        return [OpaqueFunction(function=one_domain, args=[graph.name]),
                OpaqueFunction(function=stop_on_signals)]

    @staticmethod
    def arguments(graph: Graph) -> list[DeclareLaunchArgument]:
        return [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({'choices': list(a.choices)} if a.choices else {}))
                for a in graph.arguments]

    @staticmethod
    def checks(graph: Graph) -> list[OpaqueFunction]:
        """The graph's checks, run before any node starts, as ``legion launch`` runs them: its argument
        values (``Graph.checks``) and the parameters two nodes must agree on (``Graph.couplings``) in the
        parameter files this launch passes. Launch stops with the GraphError's message."""
        def run(context):
            graph.resolve({a.name: context.launch_configurations[a.name] for a in graph.arguments},
                          config_dir=config_share())
            return []

        return [OpaqueFunction(function=run)]

    @staticmethod
    def condition(condition: Condition | None) -> IfCondition | None:
        """All of ``argument == value``, evaluated when the launch runs."""
        if condition is None:
            return None
        expression: list = []
        for index, (name, expected) in enumerate(condition.equals):
            expression += [' and ' if index else '', "'", LaunchConfiguration(name), f"' == '{expected}'"]
        return IfCondition(PythonExpression(expression))

    @staticmethod
    def node(spec: NodeSpec, restarts: int = 0) -> Node:
        """The node of ``spec``; ``restarts``: how often it was restarted already (:func:`exit_rule`)."""
        # A parameter file is one concatenated substitution list (Jazzy's PathJoinSubstitution
        # takes no nested lists, and 'driver_{driver}.yaml' needs one).
        parameters: list = [[FindPackageShare(CONFIG_PACKAGE), '/config/', *substitutions(name)]
                            for name in spec.parameter_files]
        inline = {key: parameter_value(value) if isinstance(value, ArgValue) else value
                  for key, value in spec.parameters.items()}
        if inline:
            parameters.append(inline)
        # A process hosting several nodes gets no name: a name would rename every node in it.
        return Node(package=spec.package, executable=spec.executable, name=None if spec.hosts else spec.name,
                    namespace=substitutions(spec.namespace), parameters=parameters,
                    remappings=[(substitutions(a), substitutions(b)) for a, b in spec.remappings],
                    ros_arguments=['--log-level', LaunchConfiguration('log_level')],
                    additional_env={LAUNCHER_VAR: LauncherPid()},  # a node stops with its launcher
                    output='screen', emulate_tty=True, **STOP_TIMEOUTS,
                    condition=LegionMixin.condition(spec.condition),
                    **exit_rule(spec.name, spec.essential, partial(LegionMixin.node, spec), restarts))

    @staticmethod
    def process(spec: ProcessSpec, restarts: int = 0) -> ExecuteProcess:
        rule = exit_rule(spec.name, spec.essential, partial(LegionMixin.process, spec), restarts)
        return ExecuteProcess(cmd=[substitutions(part) for part in spec.cmd], name=spec.name, output='screen',
                              condition=LegionMixin.condition(spec.condition), **STOP_TIMEOUTS, **rule)

    @staticmethod
    def include(spec: IncludeSpec) -> IncludeLaunchDescription:
        source = PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare(spec.package), 'launch', spec.launch_file]))
        return IncludeLaunchDescription(
            source, launch_arguments=[(key, substitutions(value)) for key, value in spec.arguments.items()],
            condition=LegionMixin.condition(spec.condition))


def launch_description(graph: Graph) -> LaunchDescription:
    """Every argument, check, the session, include, node and process of ``graph``, in that order."""
    return LaunchDescription([
        *LegionMixin.arguments(graph),
        *LegionMixin.checks(graph),
        *LegionMixin.session(graph),
        LogInfo(msg=f'LEGION-ROS {graph.name} graph: {graph.description}'),
        *(LegionMixin.include(spec) for spec in graph.includes),
        *(LegionMixin.node(spec) for spec in graph.nodes),
        *(LegionMixin.process(spec) for spec in graph.processes),
    ])
