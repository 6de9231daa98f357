"""`legion bench loop`: a short run through the real node processes gives sane, attributable numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from legion_ros.bench_loop import summarise

pytestmark = pytest.mark.ros


def test_summary_counts_misses_and_percentiles():
    result = summarise([1.0, 2.0, 3.0, 4.0], cycles=6, missed=2, extra={'rate_hz': 100.0})
    assert result['cycles'] == 6 and result['missed_cycles'] == 2 and result['commands_measured'] == 4
    assert result['latency_p50_ms'] == 2.5 and result['latency_max_ms'] == 4.0
    assert summarise([], cycles=3, missed=3)['latency_p99_ms'] is None


@pytest.mark.parametrize('processes', [False, True], ids=['decision_path', 'one_process_per_node'])
def test_short_loop_run_reports_latency_of_every_cycle(tmp_path, processes):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'legion_core.cli.main', 'bench', 'loop', '--duration', '3', '--warmup', '1',
         '--log', str(tmp_path / 'nodes.log'), *(['--processes'] if processes else [])],
        capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr + (tmp_path / 'nodes.log').read_text()
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) >= {'latency_p50_ms', 'latency_p99_ms', 'missed_cycles', 'cycles', 'stages'}
    assert 200 <= result['cycles'] <= 330  # 100 Hz for 3 s, with the driver's own jitter
    assert 0 <= result['missed_cycles'] <= result['cycles']
    # Most cycles' commands come back, each attributed to its own joint state.
    assert result['commands_measured'] >= 0.5 * result['cycles']
    assert 0 < result['latency_p50_ms'] <= result['latency_p99_ms'] <= result['latency_max_ms']
    stages = result['stages']
    assert stages['observation_p50_ms'] > 0
    if processes:  # a hop each; in decision_path the observation goes out after the command
        assert stages['observation_p50_ms'] <= result['latency_p50_ms'] + 1e-6
    nodes = ['policy', 'real2sim', 'sim2real'] if processes else ['decision_path']
    assert result['policy'] == 'expert' and result['nodes'] == nodes
    assert result['composition'] is not processes


def test_floor_run_measures_the_same_path_without_our_work(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'legion_core.cli.main', 'bench', 'loop', '--floor', '--duration', '2',
         '--warmup', '1', '--log', str(tmp_path / 'nodes.log'), '--samples', str(tmp_path / 'cycles.csv')],
        capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr + (tmp_path / 'nodes.log').read_text()
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['nodes'] == ['bench_loop_floor'] and 'echo' in result['path']
    assert result['commands_measured'] >= 0.5 * result['cycles'] > 0
    assert 0 < result['latency_p50_ms'] <= result['latency_p99_ms']
    machine = result['machine']
    assert 0 <= machine['driver_late_p99_ms'] <= machine['driver_late_max_ms']
    assert 0 <= machine['driver_stalls'] <= result['cycles']
    # --samples: one row per measured cycle, the same numbers the summary was made of
    header, *rows = (tmp_path / 'cycles.csv').read_text().splitlines()
    assert header == 'stamp_ns,driver_late_ms,latency_ms' and len(rows) == result['cycles']
    latencies = sorted(float(r.split(',')[2]) for r in rows if r.split(',')[2])
    assert len(latencies) == result['commands_measured']
    assert abs(latencies[-1] - result['latency_max_ms']) < 1e-3


def test_bad_arguments():
    proc = subprocess.run([sys.executable, '-m', 'legion_core.cli.main', 'bench', 'loop', '--rate', '0'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and 'positive' in proc.stderr
    proc = subprocess.run([sys.executable, '-m', 'legion_core.cli.main', 'bench', 'loop',
                           '--realtime', '100'], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and 'SCHED_FIFO' in proc.stderr  # priorities are 1..99
