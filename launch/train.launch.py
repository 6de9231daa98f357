"""Lifelong LEGION training as a node: ros2 launch legion_bringup train.launch.py [run_dir:=...]

Progress and checkpoints are published on topics, so a training run can be watched and recorded
like any other graph. The graph is legion_ros.graph.train_graph().
"""
from launch import LaunchDescription

from legion_bringup.launch_mixins import LegionMixin
from legion_ros.graph import train_graph


def generate_launch_description() -> LaunchDescription:
    graph = train_graph()
    ld = LaunchDescription()
    for action in LegionMixin.arguments(graph):
        ld.add_action(action)
    for check in LegionMixin.checks(graph):  # arguments and coupled parameters, before any node starts
        ld.add_action(check)
    for action in LegionMixin.session(graph):  # one ROS domain, SIGINT/SIGTERM stop every node
        ld.add_action(action)
    for node in graph.nodes:
        ld.add_action(LegionMixin.node(node))
    for process in graph.processes:
        ld.add_action(LegionMixin.process(process))
    return ld
