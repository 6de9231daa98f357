"""`legion launch sim workcell:=...`: the twin comes up with the asked-for stations, and a workcell that
cannot be built is refused with a message that names the problem, as its user sees it. (The graph
comes up to the twin's station message and stops: about 9 s each, measured on 2 shared cores.)"""
from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros

LEGION = [sys.executable, '-m', 'legion_core.cli.main']


def launch(*arguments: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*LEGION, 'launch', 'sim', *arguments], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.fixture
def domain(monkeypatch):
    """The graph and this test in one ROS domain (the runner leases its own when none is set)."""
    if not os.environ.get('ROS_DOMAIN_ID'):
        monkeypatch.setenv('ROS_DOMAIN_ID', str(random.randint(102, 200)))
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')


@pytest.mark.parametrize(('workcell', 'message'), [
    ('push-v3,drawer-close-v3', 'task:=reach-v3 is not one of the stations of workcell:=push-v3,'
                                'drawer-close-v3; task:= picks the active station: one of push-v3, '
                                'drawer-close-v3'),
    ('reach-v3,push-v3,drawer-close-v3,window-close-v3', 'names 4 stations; a workcell holds at most 3'),
    ('reach-v3,push-v3,reach-v3', 'names reach-v3 more than once'),
])
def test_a_workcell_that_cannot_work_is_refused_before_anything_starts(workcell, message):
    proc = subprocess.run([*LEGION, 'launch', 'sim', f'workcell:={workcell}'], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert 'started' not in proc.stdout  # no node was started


def test_a_station_the_kuka_twin_does_not_have_stops_the_graph_with_sim_bridges_reason(domain):
    """Task names are the twin's to check (legion_kuka's stations): sim_bridge refuses the workcell and
    the runner ends the run, showing sim_bridge's reason."""
    proc = launch('workcell:=reach-v3,nope-v3', 'record:=false')
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, output
    assert "cannot build the workcell ['reach-v3', 'nope-v3']: no KUKA station for ['nope-v3']" in output
    assert 'node sim_bridge died' in output


def test_legion_launch_sim_brings_up_a_two_station_workcell(domain):
    pytest.importorskip('rclpy')
    from decision_graph import watch_latched_then_interrupt

    proc = launch('workcell:=reach-v3,push-v3', 'task:=push-v3', 'record:=false')
    stations: list[dict] = []
    output = watch_latched_then_interrupt(proc, {'/legion/station': stations.append}, lambda: bool(stations),
                                          timeout_s=180)
    assert stations, f'no /legion/station message:\n{output[-4000:]}'
    assert stations[-1]['stations'] == ['reach-v3', 'push-v3'] and stations[-1]['task'] == 'push-v3'
    assert len(stations[-1]['start_posture']) == 7
    assert proc.returncode == 0, output[-4000:]
