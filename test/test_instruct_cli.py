"""`legion instruct` against a running instruction node: streaming, exit codes, rejection, no graph."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import rclpy
from std_msgs.msg import String

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'src' / 'legion_ros' / 'test'))

from decision_graph import Probe, output_of, start_node, stop_node

from legion_ros import qos

pytestmark = pytest.mark.ros


def legion(*args, env=None):
    return subprocess.Popen([sys.executable, '-m', 'legion_core.cli.main', *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or dict(os.environ))


@pytest.fixture(scope='module')
def instruction_node():
    rclpy.init()
    node = start_node('instruction', {'step_timeout_s': 3.0})
    probe = Probe('instruct_cli_probe')
    probe.listen(String, '/legion/active_step', qos.LATCHED)
    publisher = probe.publisher(String, '/legion/instruction', qos.STATE)
    assert probe.wait_for(lambda: publisher.get_subscription_count() > 0, 60.0), output_of(node)
    yield probe
    probe.close()
    code = stop_node(node)
    rclpy.try_shutdown()
    assert code == 0


def test_succeeding_sequence_streams_and_exits_0(instruction_node):
    probe = instruction_node
    cli = legion('instruct', 'reach the goal, then close the window', '--json', '--timeout', '60')

    def report_successes():  # the task monitor's part: report each step as done once it is active
        reported = set()
        while cli.poll() is None and len(reported) < 2:
            probe.spin(0.05)
            steps = probe.json('/legion/active_step')
            step = steps[-1] if steps else None
            if step and step['task'] and (step['sequence_id'], step['index']) not in reported:
                reported.add((step['sequence_id'], step['index']))
                probe.publish(String, '/legion/step_success', qos.STATE, String(data=json.dumps(
                    {**step, 'success': True})))

    reporter = threading.Thread(target=report_successes)
    reporter.start()
    out, err = cli.communicate(timeout=120)
    reporter.join(timeout=10)
    events = [json.loads(line) for line in out.splitlines()]
    assert cli.returncode == 0, (out, err)
    assert events[0]['event'] == 'queued' and events[-1]['state'] == 'succeeded'
    assert [s['task'] for s in events[-1]['steps']] == ['reach-v3', 'window-close-v3']


def test_timed_out_step_exits_1(instruction_node):
    cli = legion('instruct', 'press the button')
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 1, (out, err)
    assert 'timed out' in out and 'failed: 0/1' in out


def test_rejected_instruction_exits_2(instruction_node):
    cli = legion('instruct', 'make me a sandwich')
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 2, (out, err)
    assert out.startswith('rejected:') and 'no learned skill' in out


def test_no_graph_exits_3(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'ROS_DOMAIN_ID'}
    env['XDG_RUNTIME_DIR'] = str(tmp_path)  # an empty lease directory: no graph runs
    cli = legion('instruct', 'reach the goal', env=env)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 3, (out, err)
    assert 'no running LEGION graph' in err


def test_no_client_resets_the_estop():
    """Only an operator resets sim2real's e-stop (docs/real-robot.md): neither command holds a client of
    the reset service, nor names it (legion sim once reset it after each scene change)."""
    import ast
    import inspect

    from legion_ros import instruct_cli, sim_cli
    from legion_ros.interfaces import RESET_ESTOP

    for module in (instruct_cli, sim_cli):
        tree = ast.parse(inspect.getsource(module))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
            {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        strings = [n.value for n in ast.walk(tree)
                   if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert 'RESET_ESTOP' not in names, module.__name__
        assert not any(RESET_ESTOP.name in s or 'reset_estop' in s for s in strings), module.__name__
