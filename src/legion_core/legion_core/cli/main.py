"""`legion`: the command line of LEGION-ROS.

Each installed package contributes sub-commands through the ``legion.commands`` entry-point group
(a callable ``register(subparsers)``), so the core never imports the layers above it and a user who
installs only ``legion_core`` still gets ``legion train``. Heavy imports (torch, MuJoCo, rclpy)
happen inside the chosen command, never while the parser is built, so ``legion --help`` is instant.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from legion_core import __version__

COMMAND_GROUP = 'legion.commands'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='legion',
        description=(
            'LEGION-ROS: lifelong robot learning on KUKA arms. Train LEGION agents on Meta-World '
            'task streams, run them on the MuJoCo twin or the real iiwa through ROS 2, and check '
            'the installation. Every sub-command has its own --help.'
        ),
    )
    parser.add_argument('--version', action='version', version=f'legion {__version__}')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    register_plugins(subparsers, COMMAND_GROUP)
    return parser


def register_plugins(subparsers: argparse._SubParsersAction, group: str) -> None:
    """Let every ``group`` entry point add its sub-command; a broken one is reported, not fatal."""
    for entry in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            register = entry.load()
        except Exception as error:  # one broken package must not take the whole CLI down
            message = f'{type(error).__name__}: {error}'
            broken = subparsers.add_parser(entry.name, help=f'(unavailable: {message})')
            broken.set_defaults(handler=_unavailable(entry.name, entry.value, message))
            continue
        register(subparsers)


def _unavailable(name: str, target: str, message: str):
    def handler(_args: argparse.Namespace) -> int:
        print(f'legion {name}: cannot load {target}: {message}\n'
              'Run `legion doctor` to see what is missing.', file=sys.stderr)
        return 2
    return handler


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, 'handler', None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
