"""`legion bench`: benchmarks that print one JSON object each.

Sub-commands come from the ``legion.benchmarks`` entry-point group (train and learn here, ik from
legion_kuka, loop from legion_ros). Benchmarks measure ratios side by side in one run and report
medians: these machines are noisy.
"""
from __future__ import annotations

import argparse

from legion_core.cli.main import register_plugins

BENCH_GROUP = 'legion.benchmarks'


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        'bench', help='benchmarks (train, learn, solve, ik, loop, language) that print JSON',
        description='Run a benchmark and print one JSON object with its measurements.')
    bench_subparsers = parser.add_subparsers(dest='benchmark', metavar='BENCHMARK')
    register_plugins(bench_subparsers, BENCH_GROUP)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)
