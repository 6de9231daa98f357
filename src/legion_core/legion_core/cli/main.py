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
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        entry.load()(subparsers)
    return parser


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
