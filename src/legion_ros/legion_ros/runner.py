"""The pip-only graph runner behind ``legion launch sim|real|train [name:=value ...]``.

It starts every node of a :mod:`legion_ros.graph` description as its own process with exactly
the ``--ros-args`` that ``ros2 launch`` would give it, so a PyPI-only install runs the same graph as a
ROS 2 install. What a process launcher must do, it does:

* one leased ROS domain for the whole graph (``apply_ros_defaults(role='graph')``), inherited by the
  nodes, so ``legion instruct`` finds the graph and nothing else hears it;
* each output line prefixed with ``[node]``;
* SIGINT/SIGTERM to the runner -> SIGINT to every node, wait ``shutdown_timeout_s``, then SIGTERM,
  then SIGKILL: a node gets the chance to close its files (the recorder's bag) first;
* an essential node that exits on its own ends the run: the runner names it with its exit code, stops
  the others and exits non-zero;
* a node that is not essential (``NodeSpec.essential=False``: the recorder, off the command path) never
  ends the run: when it dies the runner says so and restarts it (``RESTART_LIMIT`` times a run,
  ``RESTART_DELAY_S`` apart); after a configuration error (exit code 2: it would fail the same way) or
  past the limit it reports it lost and the graph goes on without it.

``ros2 launch`` keeps the same rules through :mod:`legion_bringup.launch_mixins` (docs/architecture.md,
"Running a graph").
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TextIO

from legion_ros.environment import apply_ros_defaults
from legion_ros.graph import (
    RESTART_DELAY_S,
    RESTART_LIMIT,
    SHUTDOWN_TIMEOUT_S,
    GraphError,
    ResolvedGraph,
    ResolvedNode,
)

EXIT_NODE_DIED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_NODE_CONFIG = 2  # a node's own exit code for a configuration error (node_base.EXIT_CONFIG)
KILL_GRACE_S = 3.0


_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)


def _die_with_parent() -> None:
    """In the child between fork and exec: SIGTERM it when the runner dies (Linux prctl)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def console_scripts(package: str = 'legion_ros') -> dict[str, str]:
    """Executable name -> ``module:function`` of the console scripts a package installs."""
    return {entry.name: entry.value for entry in entry_points(group='console_scripts')
            if entry.dist is not None and entry.dist.name.replace('-', '_') == package}


def node_command(node: ResolvedNode, parameters_dir: Path, scripts: Mapping[str, str] | None = None
                 ) -> list[str]:
    """The command line of one node: this interpreter importing the console script's function, with
    its inline parameters written to a file in ``parameters_dir``.

    Going through ``sys.executable`` (not a script on PATH) guarantees the node runs in the same
    environment as the runner, whatever PATH says.
    """
    scripts = console_scripts(node.package) if scripts is None else scripts
    if node.executable not in scripts:
        raise GraphError(f'node {node.name}: {node.package} has no executable {node.executable!r} '
                         f'(installed: {", ".join(sorted(scripts)) or "none"}); is {node.package} installed?')
    module, _, function = scripts[node.executable].partition(':')
    bootstrap = f'import sys; from {module} import {function} as main; sys.exit(main())'
    return [sys.executable, '-c', bootstrap, *node.ros_args(parameters_dir)]


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    reader: threading.Thread | None = None
    tail: list[str] = field(default_factory=list)
    essential: bool = True
    restarts: int = 0
    restart_at: float | None = None  # monotonic time of a pending restart
    lost: bool = False               # not essential, died and not restarted


class Runner:
    """Start, watch and stop the processes of one resolved graph."""

    def __init__(self, graph: ResolvedGraph, output: TextIO | None = None,
                 shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
                 environ: Mapping[str, str] | None = None) -> None:
        if graph.includes:
            raise GraphError(f'{", ".join(graph.includes)} can only be started by `ros2 launch`; start the '
                             'driver yourself (see docs/real-robot.md) and keep start_driver:=false')
        self.graph = graph
        self.output = output or sys.stdout
        self.shutdown_timeout_s = shutdown_timeout_s
        self.environ = dict(os.environ if environ is None else environ)
        # Unbuffered, uncoloured child output so that prefixed lines arrive whole and in time.
        self.environ.setdefault('PYTHONUNBUFFERED', '1')
        self.environ.setdefault('RCUTILS_COLORIZED_OUTPUT', '0')
        self.environ.setdefault('RCUTILS_LOGGING_BUFFERED_STREAM', '0')
        for name, command in graph.processes:
            if shutil.which(command[0]) is None or (command[0] == 'sh' and shutil.which('ros2') is None):
                raise GraphError(f'{name} needs `ros2` on PATH (a ROS 2 install); use recorder:=legion')
        scripts = console_scripts()
        # The nodes' inline parameter files, removed when the graph has stopped.
        self.parameters_dir = Path(tempfile.mkdtemp(prefix=f'legion_{graph.name}_params_'))
        try:
            self.children = [Child(node.name, node_command(node, self.parameters_dir, scripts),
                                   essential=node.essential) for node in graph.nodes]
        except GraphError:
            shutil.rmtree(self.parameters_dir, ignore_errors=True)
            raise
        self.children += [Child(name, list(command), essential=name not in graph.optional_processes)
                          for name, command in graph.processes]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.stop_reason: str | None = None
        self.died: list[tuple[str, int]] = []   # essential children that exited: the run ends
        self.lost: list[tuple[str, int]] = []   # non-essential children given up on: the run goes on

    # -- output -----------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        with self._lock:
            self.output.write(f'[legion launch] {text}\n')
            self.output.flush()

    def _pump(self, child: Child) -> None:
        width = max(len(c.name) for c in self.children)
        for raw in iter(child.process.stdout.readline, b''):
            line = raw.decode('utf-8', errors='replace').rstrip('\n')
            child.tail = [*child.tail[-19:], line]
            with self._lock:
                self.output.write(f'[{child.name:<{width}}] {line}\n')
                self.output.flush()
        child.process.stdout.close()

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        # All processes first, readers after: no Python thread runs while we fork (the pipes buffer
        # the first output meanwhile).
        for child in self.children:
            self._spawn(child)
        for child in self.children:
            child.reader = threading.Thread(target=self._pump, args=(child,), daemon=True)
            child.reader.start()

    def _spawn(self, child: Child) -> None:
        # A new session: a Ctrl-C in the terminal reaches the runner only, which then stops the
        # nodes in order instead of every process racing its own shutdown. PDEATHSIG: should the
        # runner itself be killed (SIGKILL), the kernel ends its nodes too.
        child.process = subprocess.Popen(child.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.environ,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        self.say(f'started {child.name} (pid {child.process.pid})')

    def supervise(self) -> list[tuple[str, int]]:
        """One look at the children: restart or give up on non-essential ones that exited (see the
        module docstring); returns the essential ones that exited, (name, exit code)."""
        dead = []
        for child in self.children:
            code = None if child.process is None else child.process.poll()
            if code is None or child.lost:
                continue
            if child.essential:
                dead.append((child.name, code))
            elif child.restart_at is None:
                why = ('a configuration error' if code == EXIT_NODE_CONFIG
                       else f'restarted {child.restarts} times' if child.restarts >= RESTART_LIMIT else None)
                if why is not None:
                    child.lost = True
                    self.lost.append((child.name, code))
                    self.say(f'{child.name} exited with code {code}; not restarted ({why}); it is not on '
                             'the command path: the graph goes on without it; its last output:\n    '
                             + '\n    '.join(child.tail[-8:]))
                    continue
                child.restart_at = time.monotonic() + RESTART_DELAY_S
                self.say(f'{child.name} exited with code {code}; it is not on the command path: restarting '
                         f'it in {RESTART_DELAY_S:g} s ({child.restarts + 1} of {RESTART_LIMIT})')
            elif time.monotonic() >= child.restart_at and not self._stop.is_set():
                if child.reader is not None:
                    child.reader.join(timeout=1.0)  # the old pipe's last lines first
                child.restart_at = None
                child.restarts += 1
                self._spawn(child)
                child.reader = threading.Thread(target=self._pump, args=(child,), daemon=True)
                child.reader.start()
        return dead

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    def wait(self, poll_s: float = 0.1, until: Callable[[], bool] | None = None) -> int:
        """Block until a stop request or a node exits; then stop everything. Returns the exit code."""
        while not self._stop.is_set():
            for name, code in self.supervise():
                self.died.append((name, code))
                self.request_stop(f'{name} exited with code {code}')
            if until is not None and until():
                self.request_stop('done')
            self._stop.wait(poll_s)
        return self.shutdown()

    def shutdown(self) -> int:
        alive = [c for c in self.children if c.process is not None and c.process.poll() is None]
        if alive:
            self.say(f'stopping {", ".join(c.name for c in alive)} ({self.stop_reason})')
        for sig, grace in ((signal.SIGINT, self.shutdown_timeout_s), (signal.SIGTERM, KILL_GRACE_S),
                           (signal.SIGKILL, KILL_GRACE_S)):
            alive = [c for c in alive if c.process.poll() is None]
            if not alive:
                break
            if sig != signal.SIGINT:
                self.say(f'{", ".join(c.name for c in alive)} still running: sending {sig.name}')
            for child in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, sig)  # the node and anything it started
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(c.process.poll() is None for c in alive):
                time.sleep(0.05)
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=2.0)
        shutil.rmtree(self.parameters_dir, ignore_errors=True)
        failed = [(c.name, c.process.returncode) for c in self.children
                  if c.process is not None and not c.lost and c.restart_at is None
                  and c.process.returncode not in (0, -signal.SIGINT)]
        for name, code in self.died:
            tail = next((c.tail for c in self.children if c.name == name), [])
            self.say(f'node {name} died (exit code {code}); its last output:\n    '
                     + '\n    '.join(tail[-8:]))
        if self.died:
            return EXIT_NODE_DIED
        if self.lost:
            self.say('lost on the way (not essential, the run went on): '
                     + ', '.join(f'{n} exit code {c}' for n, c in self.lost))
        if failed:
            self.say('unclean shutdown: ' + ', '.join(f'{n} exit code {c}' for n, c in failed))
            return EXIT_NODE_DIED
        self.say('all nodes stopped cleanly')
        return 0


def run_graph(graph: ResolvedGraph, output: TextIO | None = None,
              shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S) -> int:
    """Run ``graph`` in the foreground until SIGINT/SIGTERM or a node dies; returns the exit code."""
    lease = apply_ros_defaults(role='graph')  # the whole graph shares one domain, held by the runner
    try:
        runner = Runner(graph, output=output, shutdown_timeout_s=shutdown_timeout_s)
        previous = {}

        def on_signal(signum, _frame):
            runner.request_stop(f'received {signal.Signals(signum).name}')

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
        try:
            runner.say(f'graph {graph.name} in ROS domain {os.environ.get("ROS_DOMAIN_ID")} '
                       f'({os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")}); '
                       + ' '.join(f'{k}:={v}' for k, v in graph.values.items()))
            try:
                runner.start()
            except OSError as error:  # a process that cannot even start: stop those that did
                runner.request_stop(f'cannot start: {error}')
                runner.died.append(('runner', EXIT_NODE_DIED))
                return runner.shutdown()
            return runner.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        if lease is not None:
            lease.release()
