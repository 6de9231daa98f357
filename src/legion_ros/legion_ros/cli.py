"""``legion`` sub-commands of the ROS layer (``legion.commands`` / ``legion.benchmarks`` entry points).

``legion launch`` lives here. ``legion sim``, ``legion instruct``, ``legion bench loop`` and ``legion
bench language`` are registered here but implemented in :mod:`legion_ros.sim_cli`,
:mod:`legion_ros.instruct_cli`, :mod:`legion_ros.bench_loop` and :mod:`legion_ros.bench_language`;
if such a module is missing or broken, the command still shows in ``legion --help`` and says why it
cannot run. Nothing here imports rclpy: ``legion --help`` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

LAUNCH_EPILOG = """\
examples:
  legion launch sim                                  MuJoCo twin + LEGION nodes, lbr interface
  legion launch sim driver:=iiwa_ros2 record:=true   ICube topic names, record an MCAP bag
  legion launch real checkpoint:=runs/legion10       against a running driver (docs/real-robot.md)
  legion launch sim --show-args                      list the arguments of a graph
  legion launch sim --dry-run                        print each node's command line, start nothing

The same graphs are the ROS 2 launch files: ros2 launch legion_bringup sim.launch.py driver:=lbr
"""


def register_launch(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'launch', help='start a ROS graph (sim, real, train) without ros2 launch',
        description='Start every node of a LEGION-ROS graph as its own process, with the parameters '
                    'the launch files in share/legion_bringup/launch would give it. Ctrl-C stops the '
                    'nodes cleanly (SIGINT, then SIGTERM/SIGKILL after --shutdown-timeout). The run '
                    'ends, non-zero, as soon as one node dies, naming it.',
        epilog=LAUNCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.__class__ = _IntermixedParser  # options may come after name:=value, as with ros2 launch
    parser.add_argument('graph', choices=('sim', 'real', 'train'), help='which graph to start')
    parser.add_argument('assignments', nargs='*', metavar='name:=value',
                        help='launch arguments, as for ros2 launch (see --show-args)')
    parser.add_argument('--show-args', action='store_true', help='list the graph\'s arguments and exit')
    parser.add_argument('--dry-run', action='store_true', help='print the node command lines and exit')
    parser.add_argument('--shutdown-timeout', type=float, default=15.0, metavar='S',
                        help='seconds a node gets to exit after SIGINT before SIGTERM (default 15)')
    parser.set_defaults(handler=launch_command)


class _IntermixedParser(argparse.ArgumentParser):
    """Accepts options between and after the positionals (``sim --dry-run driver:=lbr``)."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:  # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def launch_command(args: argparse.Namespace) -> int:
    from legion_ros.graph import GraphError, graph, parse_assignments

    description = graph(args.graph)
    if args.show_args:
        print(f'{description.name}: {description.description}\n\narguments:')
        for argument in description.arguments:
            choices = f' (one of: {", ".join(argument.choices)})' if argument.choices else ''
            print(f"  {argument.name}:='{argument.default}'{choices}\n      {argument.description}")
        return 0
    try:
        resolved = description.resolve(parse_assignments(args.assignments))
        if args.dry_run:
            import tempfile
            from pathlib import Path

            from legion_ros.runner import node_command
            kept = Path(tempfile.mkdtemp(prefix=f'legion_{args.graph}_params_'))
            print(f'# inline parameter files in {kept} (kept for you to run these lines)')
            for node in resolved.nodes:
                command = node_command(node, kept)
                print(f'# {node.fully_qualified_name}\n' + ' '.join(_quote(p) for p in command))
            for name, command in resolved.processes:
                print(f'# {name}\n' + ' '.join(_quote(p) for p in command))
            return 0
        from legion_ros.runner import run_graph
        return run_graph(resolved, shutdown_timeout_s=args.shutdown_timeout)
    except GraphError as error:
        print(f'legion launch {args.graph}: {error}', file=sys.stderr)
        return 2


def _quote(text: str) -> str:
    import shlex
    return shlex.quote(text)


def _delegate(module_name: str, function: str, command: str, subparsers, help_text: str) -> None:
    """Let ``module_name.function(subparsers)`` register ``command``; if it cannot, say so when run."""
    try:
        register = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as error:
        message = f'{type(error).__name__}: {error}'
        parser = subparsers.add_parser(command, help=f'{help_text} (unavailable: {module_name} missing)')

        def unavailable(_args: argparse.Namespace) -> int:
            print(f'legion {command}: cannot load {module_name}.{function}: {message}', file=sys.stderr)
            return 2

        parser.set_defaults(handler=unavailable)
        return
    register(subparsers)


def register_sim(subparsers: argparse._SubParsersAction) -> None:
    _delegate('legion_ros.sim_cli', 'register_sim', 'sim', subparsers,
              'run language instructions on the simulated arm')


def register_instruct(subparsers: argparse._SubParsersAction) -> None:
    _delegate('legion_ros.instruct_cli', 'register_instruct', 'instruct', subparsers,
              'send an instruction to a running graph')


def register_bench_language(subparsers: argparse._SubParsersAction) -> None:
    _delegate('legion_ros.bench_language', 'register_bench_language', 'language', subparsers,
              'instructions to skills: held-out accuracy, opposites, refusals')


def register_bench_loop(subparsers: argparse._SubParsersAction) -> None:
    _delegate('legion_ros.bench_loop', 'register_bench_loop', 'loop', subparsers,
              'latency of the ROS control loop')
