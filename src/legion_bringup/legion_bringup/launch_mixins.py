"""Launch mixins: :mod:`legion_bringup.graph` descriptions turned into ROS 2 launch actions.

In the spirit of lbr_bringup's mixins: each static method returns launch actions for one part of a
graph, so ``launch/*.launch.py`` stay short and every launch file declares the same arguments with the
same defaults, help and ``choices``. Needs ``launch`` and ``launch_ros`` (a ROS 2 install); the
pip-only runner uses the graph descriptions directly.
"""
from __future__ import annotations

from typing import List  # noqa: UP035 (see parameter_value)

from launch import LaunchDescription, Substitution
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    LogInfo,
    OpaqueFunction,
)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from legion_bringup.graph import (
    PACKAGE,
    RESTART_DELAY_S,
    SHUTDOWN_TIMEOUT_S,
    ArgValue,
    Condition,
    Graph,
    IncludeSpec,
    NodeSpec,
    ProcessSpec,
    ros_yaml,
)
from legion_bringup.graph import split_placeholders as _split


def restart(essential: bool) -> dict:
    """launch's own restart for a process that is not essential (``NodeSpec.essential``); an essential
    one is not restarted behind the user's back."""
    return {} if essential else {'respawn': True, 'respawn_delay': RESTART_DELAY_S}


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


def parameter_value(value: ArgValue) -> ParameterValue:
    """The launch_ros parameter of an :class:`ArgValue`, of the type the graph gives it."""
    if value.type is list:
        # typing.List: launch's type check accepts only that object (``List[str]``), not ``list[str]``.
        return ParameterValue(ConvertedArgument(value), value_type=List[str])  # noqa: UP006
    return ParameterValue(LaunchConfiguration(value.argument), value_type=value.type)


class LegionMixin:
    @staticmethod
    def arguments(graph: Graph) -> list[DeclareLaunchArgument]:
        return [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({'choices': list(a.choices)} if a.choices else {}))
                for a in graph.arguments]

    @staticmethod
    def checks(graph: Graph) -> list[OpaqueFunction]:
        """The graph's checks of its argument values, run before any node starts (launch stops with
        the GraphError's message, as ``legion launch`` does)."""
        def run(context, check):
            check({a.name: context.launch_configurations[a.name] for a in graph.arguments})
            return []

        return [OpaqueFunction(function=run, args=[check]) for check in graph.checks]

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
    def node(spec: NodeSpec) -> Node:
        # A parameter file is one concatenated substitution list (Jazzy's PathJoinSubstitution
        # takes no nested lists, and 'driver_{driver}.yaml' needs one).
        parameters: list = [[FindPackageShare(PACKAGE), '/config/', *substitutions(name)]
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
                    output='screen', emulate_tty=True, sigterm_timeout=str(SHUTDOWN_TIMEOUT_S),
                    condition=LegionMixin.condition(spec.condition), **restart(spec.essential))

    @staticmethod
    def process(spec: ProcessSpec) -> ExecuteProcess:
        return ExecuteProcess(cmd=[substitutions(part) for part in spec.cmd], name=spec.name, output='screen',
                              sigterm_timeout=str(SHUTDOWN_TIMEOUT_S),
                              condition=LegionMixin.condition(spec.condition), **restart(spec.essential))

    @staticmethod
    def include(spec: IncludeSpec) -> IncludeLaunchDescription:
        source = PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare(spec.package), 'launch', spec.launch_file]))
        return IncludeLaunchDescription(
            source, launch_arguments=[(key, substitutions(value)) for key, value in spec.arguments.items()],
            condition=LegionMixin.condition(spec.condition))


def launch_description(graph: Graph) -> LaunchDescription:
    """Every argument, check, include, node and process of ``graph``, in that order."""
    return LaunchDescription([
        *LegionMixin.arguments(graph),
        *LegionMixin.checks(graph),
        LogInfo(msg=f'LEGION-ROS {graph.name} graph: {graph.description}'),
        *(LegionMixin.include(spec) for spec in graph.includes),
        *(LegionMixin.node(spec) for spec in graph.nodes),
        *(LegionMixin.process(spec) for spec in graph.processes),
    ])
