"""Launch mixins: :mod:`legion_bringup.graph` descriptions turned into ROS 2 launch actions.

In the spirit of lbr_bringup's mixins: each static method returns launch actions for one part of a
graph, so ``launch/*.launch.py`` stay short and every launch file declares the same arguments with the
same defaults, help and ``choices``. Needs ``launch`` and ``launch_ros`` (a ROS 2 install); the
pip-only runner uses the graph descriptions directly.
"""
from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, LogInfo
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from legion_bringup.graph import (
    PACKAGE,
    SHUTDOWN_TIMEOUT_S,
    ArgValue,
    Condition,
    Graph,
    IncludeSpec,
    NodeSpec,
    ProcessSpec,
)
from legion_bringup.graph import split_placeholders as _split


def substitutions(text: str) -> list:
    """``'driver_{driver}.yaml'`` -> ``['driver_', LaunchConfiguration('driver'), '.yaml']``."""
    return [LaunchConfiguration(value) if kind == 'arg' else value for kind, value in _split(text)] or ['']


class LegionMixin:
    @staticmethod
    def arguments(graph: Graph) -> list[DeclareLaunchArgument]:
        return [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      **({'choices': list(a.choices)} if a.choices else {}))
                for a in graph.arguments]

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
        inline = {key: ParameterValue(LaunchConfiguration(value.argument), value_type=value.type)
                  if isinstance(value, ArgValue) else value for key, value in spec.parameters.items()}
        if inline:
            parameters.append(inline)
        # A process hosting several nodes gets no name: a name would rename every node in it.
        return Node(package=spec.package, executable=spec.executable, name=None if spec.hosts else spec.name,
                    namespace=substitutions(spec.namespace), parameters=parameters,
                    remappings=[(substitutions(a), substitutions(b)) for a, b in spec.remappings],
                    ros_arguments=['--log-level', LaunchConfiguration('log_level')],
                    output='screen', emulate_tty=True, sigterm_timeout=str(SHUTDOWN_TIMEOUT_S),
                    condition=LegionMixin.condition(spec.condition))

    @staticmethod
    def process(spec: ProcessSpec) -> ExecuteProcess:
        return ExecuteProcess(cmd=[substitutions(part) for part in spec.cmd], name=spec.name, output='screen',
                              sigterm_timeout=str(SHUTDOWN_TIMEOUT_S),
                              condition=LegionMixin.condition(spec.condition))

    @staticmethod
    def include(spec: IncludeSpec) -> IncludeLaunchDescription:
        source = PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare(spec.package), 'launch', spec.launch_file]))
        return IncludeLaunchDescription(
            source, launch_arguments=[(key, substitutions(value)) for key, value in spec.arguments.items()],
            condition=LegionMixin.condition(spec.condition))


def launch_description(graph: Graph) -> LaunchDescription:
    """Every argument, include, node and process of ``graph``, in that order."""
    return LaunchDescription([
        *LegionMixin.arguments(graph),
        LogInfo(msg=f'LEGION-ROS {graph.name} graph: {graph.description}'),
        *(LegionMixin.include(spec) for spec in graph.includes),
        *(LegionMixin.node(spec) for spec in graph.nodes),
        *(LegionMixin.process(spec) for spec in graph.processes),
    ])
