"""``decision_path``: sim2real, real2sim and policy in one process, handing messages over directly.

The command path of a control cycle is joint state -> real2sim -> policy -> sim2real -> command.
Run as three processes, each hop is a DDS round through another executor; here the three nodes share
one executor and :class:`legion_ros.composition.IntraProcess` turns the hops into direct calls (their
topics are still published for recorders and monitors). Each node keeps its own name, parameter
file section (``/**/real2sim`` ...), services and ``~/status``; the graph's ``composition`` argument
picks this process or the three separate ones.

As a control loop (``run_nodes(control_loop=True)``) the process spins rclpy's C++
``EventsExecutor`` (experimental in Jazzy; the single-threaded executor rebuilds its wait set in
Python on every wake-up, which the command path would pay each cycle; ``LEGION_EVENTS_EXECUTOR=0`` in
the environment falls back to it) and collects garbage between callbacks, not in the middle of a
control cycle (:class:`legion_ros.node_base.DeferredCollection`).
"""
from __future__ import annotations

from legion_ros.node_base import run_nodes

HOSTED = ('sim2real', 'real2sim', 'policy')  # sim2real first: it sees each joint state before the chain


def main(args=None) -> int:
    from legion_ros.composition import IntraProcess
    from legion_ros.nodes.policy import PolicyNode
    from legion_ros.nodes.real2sim import Real2SimNode
    from legion_ros.nodes.sim2real import Sim2RealNode

    classes = {'sim2real': Sim2RealNode, 'real2sim': Real2SimNode, 'policy': PolicyNode}

    def connect(nodes) -> None:
        links = IntraProcess(nodes)
        nodes[0].get_logger().info(f'decision path in one process: {links.describe()}')

    return run_nodes([classes[name] for name in HOSTED], args, name='decision_path', connect=connect,
                     control_loop=True)


if __name__ == '__main__':
    import sys

    sys.exit(main())
