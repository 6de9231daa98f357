"""The launch files under the real ROS 2 Jazzy launch, as a ROS user runs them: ``ros2 launch
legion_bringup <file>`` from ``../shared/ros2-launch`` (the upstream launch, launch_ros and ros2launch
wheels) over a colcon build of this workspace.

For each launch file and its main argument sets: the graph's nodes come up in one ROS domain with
the parameters ``legion launch`` gives them; SIGTERM and SIGINT (with and without a terminal) stop
every process cleanly and leave nothing running; an essential node that dies ends the launch with
exit code 1 while a dead recorder is restarted: the rules of both runners (docs/architecture.md,
"Running a graph"). Each test starts one launch: 4-21 s each, about 90 s for the module with the
workspace build, measured on 2 cores shared with two training runs.
"""
from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from legion_ros.environment import DOMAIN_VAR, lease_dir
from legion_ros.graph import graph

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SHARED_LAUNCH = ROOT.parent / 'shared' / 'ros2-launch'
UP_TIMEOUT_S = 150.0  # the whole graph discoverable, policy loaded, on 2 cores shared with training
STOP_TIMEOUT_S = 60.0


@pytest.fixture(scope='module')
def ros2_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a shell with the launch stack installed and this workspace built and sourced
    (``install/setup.bash``: ament's index then finds legion_bringup's launch files and config)."""
    if not (SHARED_LAUNCH / 'install.sh').is_file():
        pytest.skip(f'{SHARED_LAUNCH} is absent: the real ROS 2 launch stack (launch, launch_ros, '
                    'ros2launch wheels) comes from there; see shared/README.md')
    base = tmp_path_factory.mktemp('ros2_launch')
    subprocess.run(['bash', str(SHARED_LAUNCH / 'install.sh'), sys.executable, str(base / 'launch')],
                   check=True, capture_output=True, timeout=300)
    colcon = Path(sys.executable).with_name('colcon')
    build = subprocess.run([str(colcon), '--log-base', str(base / 'log'), 'build', '--symlink-install',
                            '--base-paths', 'src', '--build-base', str(base / 'build'),
                            '--install-base', str(base / 'install'),
                            '--event-handlers', 'console_cohesion-', 'status-', 'summary-'],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    shell = subprocess.run(['bash', '-c', f'source "{base}/install/setup.bash" && env -0'], check=True,
                           capture_output=True, text=True, timeout=60)
    env = dict(item.split('=', 1) for item in shell.stdout.split('\0') if '=' in item)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(base / 'launch'), env.get('PYTHONPATH')]))
    env['PATH'] = os.pathsep.join([str(base / 'launch' / 'bin'), str(Path(sys.executable).parent),
                                   env['PATH']])
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', RCUTILS_COLORIZED_OUTPUT='0',
               PYTHONUNBUFFERED='1')
    return env


class Launch:
    """``ros2 launch legion_bringup <file> <arguments>`` in its own session, its output collected."""

    STARTED = re.compile(r'\[(\S+)-\d+\]: process started with pid \[(\d+)\]')

    def __init__(self, env: dict[str, str], launch_file: str, arguments: dict[str, str], cwd: Path,
                 terminal: bool = False, package: str | None = 'legion_bringup') -> None:
        self.lines: list[str] = []
        self.started: list[tuple[str, int]] = []  # (process name, pid), in start order
        terminal_fds = pty.openpty() if terminal else None
        # A terminal on stdin makes launch "interactive" (a user at a shell, `docker run -it`); without
        # one it is what a service manager runs.
        stdin = terminal_fds[1] if terminal_fds else subprocess.DEVNULL
        command = ['ros2', 'launch', *filter(None, [package, launch_file])]
        self.process = subprocess.Popen(
            [*command, *(f'{k}:={v}' for k, v in arguments.items())],
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            cwd=cwd, start_new_session=True)
        self._terminal = terminal_fds
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            line = line.rstrip('\n')
            match = self.STARTED.search(line)
            if match:
                self.started.append((match.group(1), int(match.group(2))))
            self.lines.append(line)

    @property
    def output(self) -> str:
        return '\n'.join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float = UP_TIMEOUT_S) -> re.Match:
        regex, deadline, seen = re.compile(pattern), time.monotonic() + timeout_s, 0
        while time.monotonic() < deadline:
            for line in self.lines[seen:]:
                match = regex.search(line)
                if match:
                    return match
            seen = len(self.lines)
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f'no line matching {pattern!r}:\n{self.output[-6000:]}')

    def domain(self) -> int:
        return int(self.wait_for(r'\[legion\]: \w+ graph in ROS domain (\d+)', 30).group(1))

    def pid(self, name: str) -> int:
        return [pid for process, pid in self.started if process == name][-1]

    def stop(self, signum: int | None = None) -> int:
        """Send ``signum`` to the launcher alone (as ``kill``, ``docker stop`` and systemd do) unless
        None, and wait for it to end; returns its exit code."""
        if signum is not None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self.close()
        self._reader.join(timeout=10)
        return code

    def close(self) -> None:
        """Leave nothing behind, whatever happened: kill the launcher and every process it started."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for _, pid in self.started:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        if self._terminal:
            for fd in self._terminal:
                os.close(fd)
            self._terminal = None


class Launches(list):
    def start(self, env: dict[str, str], launch_file: str, arguments: dict[str, str], **options) -> Launch:
        launch = Launch(env, launch_file, arguments, self.cwd, **options)
        self.append(launch)
        return launch


@pytest.fixture
def launches(tmp_path):
    """Start launches in a folder of the test's own (relative paths such as bag_dir's default land
    there); whatever happens, nothing they started is left running."""
    started = Launches()
    started.cwd = tmp_path
    yield started
    for launch in started:
        launch.close()


def running(pid: int) -> bool:
    try:
        return 'zombie' not in Path(f'/proc/{pid}/status').read_text().lower()
    except FileNotFoundError:
        return False


def left_running(launch: Launch, timeout_s: float = 10.0) -> list[tuple[str, int]]:
    deadline = time.monotonic() + timeout_s
    alive = launch.started
    while alive and time.monotonic() < deadline:
        alive = [(name, pid) for name, pid in alive if running(pid)]
        time.sleep(0.1)
    return alive


def assert_stopped_cleanly(launch: Launch, killed: tuple[int, ...] = ()) -> None:
    """Every process the launch started has ended, each with exit code 0 unless the test killed it."""
    assert not left_running(launch), f'still running after the launch ended: {left_running(launch)}'
    for name, pid in launch.started:
        if pid not in killed:
            assert f'process has finished cleanly [pid {pid}]' in launch.output, \
                f'{name} (pid {pid}) did not stop cleanly:\n{launch.output[-6000:]}'


# -- the graph as ROS sees it -----------------------------------------------------------------------

def legion_launch_parameters(name: str, arguments: dict[str, str], directory: Path) -> dict[str, dict]:
    """Fully qualified node name -> the parameter overrides rcl reads from the command line that
    ``legion launch`` gives the node's process (None: rcl's "not set", e.g. an empty list)."""
    import rclpy
    from rclpy.parameter import Parameter

    expected = {}
    for node in graph(name).resolve(arguments).nodes:
        context = rclpy.Context()
        rclpy.init(args=node.ros_args(directory), context=context)
        try:
            for hosted in node.hosted:
                probe = rclpy.create_node(hosted, namespace=node.namespace, context=context)
                expected[probe.get_fully_qualified_name()] = {
                    key: None if value.type_ == Parameter.Type.NOT_SET else plain(value.value)
                    for key, value in probe._parameter_overrides.items()}
                probe.destroy_node()
        finally:
            rclpy.try_shutdown(context=context)
    return expected


def plain(value):
    return list(value) if not isinstance(value, str) and hasattr(value, '__len__') else value


def live_graph(domain: int, expected: set[str], launch: Launch) -> tuple[dict[str, dict], dict[str, str]]:
    """Join ``domain``, wait until every node in ``expected`` is discoverable there, and read each one's
    parameters through its parameter services: fully qualified name -> {parameter: value}; and the
    lifecycle state of each managed node among them (its ``get_state`` service): name -> label."""
    import rclpy
    from lifecycle_msgs.srv import GetState
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        probe = rclpy.create_node('ros2_launch_probe', context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        deadline = time.monotonic() + UP_TIMEOUT_S
        seen: set[str] = set()
        while not expected <= seen and time.monotonic() < deadline and launch.process.poll() is None:
            executor.spin_once(timeout_sec=0.5)
            seen = {f'{ns.rstrip("/")}/{n}' for n, ns in probe.get_node_names_and_namespaces()}
        assert expected <= seen, (f'not in ROS domain {domain}: {sorted(expected - seen)}; seen there: '
                                  f'{sorted(seen)}\n{launch.output[-6000:]}')

        def result(future, what):
            end = time.monotonic() + 60
            while not future.done() and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.2)
            assert future.done(), f'{what}: no answer within 60 s'
            return future.result()

        live = {}
        for name in sorted(expected):
            client = AsyncParameterClient(probe, name)
            assert client.wait_for_services(timeout_sec=60), f'{name}: no parameter services'
            names = result(client.list_parameters(), f'{name} list_parameters').result.names
            values = result(client.get_parameters(names), f'{name} get_parameters').values
            assert len(values) == len(names), f'{name}: get_parameters({names}) answered {values}'
            live[name] = {key: plain(parameter_value_to_python(value))
                          for key, value in zip(names, values, strict=True)}
        services = {service for service, _ in probe.get_service_names_and_types()}
        states = {}
        for name in sorted(expected):
            if f'{name}/get_state' in services:
                client = probe.create_client(GetState, f'{name}/get_state')
                assert client.wait_for_service(timeout_sec=60), f'{name}: no get_state service'
                answer = result(client.call_async(GetState.Request()), f'{name} get_state')
                states[name] = answer.current_state.label
        probe.destroy_node()
        return live, states
    finally:
        rclpy.try_shutdown(context=context)


def assert_parameters_equal_legion_launch(live: dict[str, dict], expected: dict[str, dict]) -> None:
    """Every parameter a running node has that ``legion launch`` sets equals ``legion launch``'s value
    (the rest are the node's own defaults under both runners)."""
    assert set(live) == set(expected)
    for name, parameters in live.items():
        compared = {key for key, value in expected[name].items() if key in parameters and value is not None}
        assert 'use_sim_time' in compared, f'{name}: nothing to compare ({sorted(parameters)})'
        different = {key: (parameters[key], expected[name][key]) for key in compared
                     if parameters[key] != expected[name][key]}
        assert not different, f'{name}: ros2 launch != legion launch (live, expected): {different}'


def check_graph(launch: Launch, name: str, arguments: dict[str, str], domain: int, tmp_path: Path
                ) -> dict[str, dict]:
    expected = legion_launch_parameters(name, arguments, tmp_path)
    live, states = live_graph(domain, set(expected), launch)
    assert_parameters_equal_legion_launch(live, expected)
    # The managed node that commands the driver comes up active with nobody to configure it (autostart).
    assert ('/legion/sim2real' in states) == ('/legion/sim2real' in expected), states
    assert all(state == 'active' for state in states.values()), states
    return live


# -- the tests ----------------------------------------------------------------------------------------

def test_sim_without_a_domain_runs_in_one_leased_domain_and_stops_on_sigterm(ros2_env, launches, tmp_path):
    """Issue #13 (1, 2): with ROS_DOMAIN_ID unset (the README's quick start, the Docker image) every node
    used to lease a domain of its own; SIGTERM (docker stop, systemd) ended the launcher and left every
    node running."""
    env = {key: value for key, value in ros2_env.items() if key != DOMAIN_VAR}
    launch = launches.start(env, 'sim.launch.py', {})
    domain = launch.domain()
    assert f'sim graph in ROS domain {domain} (leased for this launch' in launch.output
    assert (lease_dir() / f'{domain}.lock').read_text().split() == ['graph', str(launch.process.pid)]
    check_graph(launch, 'sim', {}, domain, tmp_path)
    node_pids = {str(pid) for _, pid in launch.started}
    own_leases = [path.name for path in lease_dir().glob('*.lock')
                  if path.read_text().split()[1:2] and path.read_text().split()[1] in node_pids]
    assert not own_leases, f'nodes leased domains of their own: {own_leases}'
    assert launch.stop(signal.SIGTERM) == 0, launch.output[-6000:]
    assert 'SIGTERM received: stopping every process' in launch.output
    assert_stopped_cleanly(launch)


def test_sim_one_process_per_node_with_a_workcell_and_recorder_stops_on_sigint(ros2_env, launches,
                                                                             tmp_path):
    arguments = {'composition': 'false', 'workcell': 'reach-v3,push-v3', 'task': 'push-v3',
                 'record': 'true', 'bag_dir': str(tmp_path / 'bags')}
    launch = launches.start(ros2_env, 'sim.launch.py', arguments)
    domain = launch.domain()
    assert domain == int(ros2_env[DOMAIN_VAR])  # an exported domain wins
    assert 'ROS_DOMAIN_ID as exported' in launch.output
    live = check_graph(launch, 'sim', arguments, domain, tmp_path)
    assert live['/legion/sim_bridge']['workcell'] == ['reach-v3', 'push-v3']
    assert live['/legion/sim_bridge']['task'] == 'push-v3'
    assert launch.stop(signal.SIGINT) == 0, launch.output[-6000:]
    assert_stopped_cleanly(launch)
    (bag,) = (tmp_path / 'bags').iterdir()
    assert (bag / 'metadata.yaml').is_file()  # the recorder closed its bag


def test_real_with_a_terminal_stops_every_node_on_sigint(ros2_env, launches, tmp_path):
    """`docker run -it`, then `docker stop` (the image stops with SIGINT): with a terminal on stdin,
    Jazzy's launch took any SIGINT for the terminal's Ctrl-C, which would have reached every process
    already, and signalled none of them; the nodes got SIGTERM only after the 15 s timeout, past the
    10 s docker waits."""
    arguments = {'driver': 'iiwa_ros2'}
    launch = launches.start(ros2_env, 'real.launch.py', arguments, terminal=True)
    live = check_graph(launch, 'real', arguments, launch.domain(), tmp_path)
    assert live['/legion/sim2real']['driver.joint_names'][0] == 'joint_a1'
    assert launch.stop(signal.SIGINT) == 0, launch.output[-6000:]
    for name, _ in launch.started:
        assert f"sending signal 'SIGINT' to process[{name}" in launch.output
    assert 'escalating' not in launch.output
    assert_stopped_cleanly(launch)


def test_a_dead_essential_node_ends_the_launch_a_dead_recorder_is_restarted(ros2_env, launches, tmp_path):
    """The rule of both runners (docs/architecture.md): the recorder is not essential, it is restarted
    and the graph goes on; the trainer is, and its death stops everything with exit code 1."""
    arguments = {'record': 'true', 'bag_dir': str(tmp_path / 'bags'), 'run_dir': str(tmp_path / 'runs')}
    launch = launches.start(ros2_env, 'train.launch.py', arguments)
    check_graph(launch, 'train', arguments, launch.domain(), tmp_path)
    first = launch.pid('recorder')
    os.kill(first, signal.SIGKILL)
    launch.wait_for(r'recorder exited with code -9; it is not on the command path: restarting it in 1 s '
                    r'\(1 of 3\)', 30)
    launch.wait_for(rf'\[recorder-\d+\]: process started with pid \[(?!{first}\])\d+\]', 30)  # a new one
    time.sleep(1.0)
    assert launch.process.poll() is None, launch.output[-6000:]  # the graph went on
    trainer = launch.pid('trainer')
    os.kill(trainer, signal.SIGKILL)
    assert launch.stop() == 1, launch.output[-6000:]
    assert f'essential process trainer exited with code {-signal.SIGKILL}' in launch.output
    assert_stopped_cleanly(launch, killed=(first, trainer))


def test_the_launch_description_tests_run_with_the_real_launch_library(ros2_env):
    """test_launch_static's checks that need ``launch`` (skipped where it is not importable) run here."""
    result = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-rs',
                             str(ROOT / 'src' / 'legion_ros' / 'test' / 'test_launch_static.py')],
                            env=ros2_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert 'skipped' not in result.stdout, result.stdout[-4000:]


def test_nodes_do_not_outlive_a_killed_launcher(ros2_env, launches):
    """SIGKILL (the OOM killer, a crash) gives launch no chance to stop anything: each node stops itself
    when its launcher dies, as under legion launch (test_runner)."""
    launch = launches.start(ros2_env, 'train.launch.py', {})
    live_graph(launch.domain(), {'/legion/trainer'}, launch)  # up and answering
    os.kill(launch.process.pid, signal.SIGKILL)
    launch.process.wait(timeout=10)
    assert launch.started and not left_running(launch, timeout_s=20), launch.output[-6000:]


# Processes under the launch mixins' exit rule: two essential ones, one of which fails to stop cleanly,
# and two that are not: one fails on its configuration (exit code 2, node_base.EXIT_CONFIG), one always
# fails otherwise.
RULE_LAUNCH = """
from launch import LaunchDescription

from legion_ros.graph import Graph, ProcessSpec
from legion_bringup.launch_mixins import LegionMixin

PYTHON = {python!r}
SPECS = (
    ProcessSpec('steady', (PYTHON, '-c', 'import signal, sys, time; '
                           'signal.signal(signal.SIGINT, lambda *_: sys.exit(0)); time.sleep(120)')),
    ProcessSpec('sloppy', (PYTHON, '-c', 'import signal, sys, time; '
                           'signal.signal(signal.SIGINT, lambda *_: sys.exit(3)); time.sleep(120)')),
    ProcessSpec('broken', (PYTHON, '-c', 'import sys; sys.exit(2)'), essential=False),
    ProcessSpec('flaky', (PYTHON, '-c', 'import sys; sys.exit(1)'), essential=False),
)


def generate_launch_description():
    graph = Graph('rule', 'the exit rule', (), ())
    return LaunchDescription([*LegionMixin.session(graph), *(LegionMixin.process(spec) for spec in SPECS)])
"""


def test_restarts_and_an_unclean_stop_as_under_legion_launch(ros2_env, launches, tmp_path):
    """The same restarts as legion launch's (test_runner): none after a configuration error,
    RESTART_LIMIT after any other exit, the graph going on meanwhile; and a process that does not stop
    cleanly makes the exit code 1."""
    path = tmp_path / 'rule.launch.py'
    path.write_text(RULE_LAUNCH.format(python=sys.executable))
    launch = launches.start(ros2_env, str(path), {}, package=None)
    launch.wait_for(r'broken exited with code 2; not restarted \(a configuration error\)', 60)
    launch.wait_for(r'flaky exited with code 1; not restarted \(restarted 3 times\)', 60)
    assert launch.process.poll() is None, launch.output[-6000:]  # steady, the essential one, goes on
    assert [name for name, _ in launch.started].count('broken') == 1
    assert [name for name, _ in launch.started].count('flaky') == 4
    assert 'restarting it in 1 s (3 of 3)' in launch.output
    assert launch.stop(signal.SIGTERM) == 1, launch.output[-6000:]
    assert 'sloppy did not stop cleanly (exit code 3)' in launch.output
    assert f'process has finished cleanly [pid {launch.pid("steady")}]' in launch.output
    assert not left_running(launch)


COUPLED_LAUNCH = """
from dataclasses import replace

from launch import LaunchDescription

from legion_bringup.launch_mixins import LegionMixin
from legion_ros.graph import real_graph

graph = real_graph()
# The policy node at 5 Hz while sim2real keeps its default 10 Hz: a graph that must not start.
graph = replace(graph, nodes=tuple(
    replace(node, parameters={**node.parameters, 'rate_hz': 5.0}) if node.name in ('decision_path', 'policy')
    else node for node in graph.nodes))


def generate_launch_description():
    return LaunchDescription([*LegionMixin.arguments(graph), *LegionMixin.checks(graph),
                              *LegionMixin.session(graph), *(LegionMixin.node(node) for node in graph.nodes)])
"""


def test_coupled_parameters_that_disagree_stop_the_launch_before_any_node(ros2_env, launches, tmp_path):
    """The graph's couplings hold under ros2 launch as under legion launch (test_graph)."""
    path = tmp_path / 'coupled.launch.py'
    path.write_text(COUPLED_LAUNCH)
    launch = launches.start(ros2_env, str(path), {}, package=None)
    assert launch.stop() != 0, launch.output[-6000:]
    assert 'policy rate_hz is 5.0' in launch.output and 'sim2real policy_rate_hz is 10.0' in launch.output
    assert not launch.started, launch.output[-6000:]
