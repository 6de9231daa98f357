"""LEGION on the physical iiwa: ros2 launch legion_bringup real.launch.py driver:=lbr [...]

Bring the driver up first, in T1, with its own launch file (docs/real-robot.md), e.g.
  ros2 launch lbr_bringup hardware.launch.py model:=iiwa7 ctrl:=forward_position_controller
or let this file include it with start_driver:=true. The LEGION nodes only ever command the arm
through sim2real's safety filter. The graph is legion_ros.graph.real_graph().
"""
from launch import LaunchDescription

from legion_bringup.launch_mixins import LegionMixin
from legion_ros.graph import real_graph


def generate_launch_description() -> LaunchDescription:
    graph = real_graph()
    ld = LaunchDescription()
    for action in LegionMixin.arguments(graph):
        ld.add_action(action)
    for check in LegionMixin.checks(graph):  # arguments and coupled parameters, before any node starts
        ld.add_action(check)
    for action in LegionMixin.session(graph):  # one ROS domain, SIGINT/SIGTERM stop every node
        ld.add_action(action)
    for include in graph.includes:  # the driver's own launch file, only with start_driver:=true
        ld.add_action(LegionMixin.include(include))
    for node in graph.nodes:
        ld.add_action(LegionMixin.node(node))
    for process in graph.processes:
        ld.add_action(LegionMixin.process(process))
    return ld
