"""LEGION on the MuJoCo twin: ros2 launch legion_bringup sim.launch.py [driver:=lbr|iiwa_ros2] ...

The twin (sim_bridge) publishes the chosen driver's joint_states and takes its position commands, so
the LEGION nodes run unchanged against it; workcell:=reach-v3,push-v3 task:=push-v3 puts both tasks'
stations around the arm, push-v3's active. `ros2 launch legion_bringup sim.launch.py --show-args`
lists every argument; the graph itself is legion_ros.graph.sim_graph(), which `legion launch sim`
runs without ROS 2 launch installed.
"""
from launch import LaunchDescription

from legion_bringup.launch_mixins import LegionMixin
from legion_ros.graph import sim_graph


def generate_launch_description() -> LaunchDescription:
    graph = sim_graph()
    ld = LaunchDescription()
    for action in LegionMixin.arguments(graph):
        ld.add_action(action)
    for check in LegionMixin.checks(graph):  # workcell:= with task:=, coupled parameters: before any node
        ld.add_action(check)
    for action in LegionMixin.session(graph):  # one ROS domain, SIGINT/SIGTERM stop every node
        ld.add_action(action)
    for node in graph.nodes:  # sim_bridge, instruction ... sim2real, recorder (if record:=true)
        ld.add_action(LegionMixin.node(node))
    for process in graph.processes:  # ros2 bag record (record:=true recorder:=rosbag2)
        ld.add_action(LegionMixin.process(process))
    return ld
