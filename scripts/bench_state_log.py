"""What the state log costs the twin's 100 Hz control cycle: the sim_bridge's timer callback
(`on_timer`: one twin control cycle, joint states, /clock, and every 4th cycle the state log's row),
timed in-process with and without `state_log`, alternating; prints one JSON object with the medians
and the 99th percentiles of each, and the time of writing the log at the end.

    .venv/bin/python scripts/bench_state_log.py [TASK=drawer-close-v3] [CYCLES=3000] [ROUNDS=3]

The callbacks are called back to back (no timer, no other node), so the numbers are the callback's own
cost; the log of one round holds CYCLES / 4 states. Pause other jobs first.
"""
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy

from legion_ros.environment import apply_ros_defaults
from legion_ros.nodes.sim_bridge import SimBridge


def timed_cycles(state_log: str, task: str, cycles: int) -> tuple[list[float], float, int, float | None]:
    """Microseconds per on_timer call, milliseconds to write the log at the end, states in it, and
    microseconds per recorded row alone."""
    rclpy.init(args=['--ros-args', '-r', '__ns:=/legion', '-p', f'task:={task}',
                     '-p', f'state_log:="{state_log}"'])
    try:
        node = SimBridge()
        for _ in range(200):  # warm-up: caches, the first joint-state messages
            node.on_timer()
        times = []
        for _ in range(cycles):
            start = time.perf_counter()
            node.on_timer()
            times.append((time.perf_counter() - start) * 1e6)
        start = time.perf_counter()
        node.save_state_log()
        save_ms = (time.perf_counter() - start) * 1e3
        rows = node.state_log.rows if node.state_log is not None else 0
        record_us = None
        if node.state_log is not None:  # the log's own part, alone: one row (on every 4th cycle)
            start = time.perf_counter()
            for _ in range(1000):
                node.state_log.record(node.sim_time_ns * 1e-9, node.twin.scene_state())
            record_us = (time.perf_counter() - start) * 1e3
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return times, save_ms, rows, record_us


if __name__ == '__main__':
    task = sys.argv[1] if len(sys.argv) > 1 else 'drawer-close-v3'
    cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    lease = apply_ros_defaults()
    samples = {'off': [], 'on': []}
    saves, sizes, rows, records = [], [], 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for mode in ('off', 'on'):
                path = str(Path(tmp) / f'log{r}.npz') if mode == 'on' else ''
                times, save_ms, count, record_us = timed_cycles(path, task, cycles)
                samples[mode] += times
                if path:
                    saves.append(save_ms)
                    sizes.append(Path(path).stat().st_size)
                    rows = count
                    records.append(record_us)

    def summary(values):
        return {'median_us': round(statistics.median(values), 1),
                'mean_us': round(statistics.fmean(values), 1),
                'p99_us': round(float(np.percentile(values, 99)), 1)}

    off, on = summary(samples['off']), summary(samples['on'])
    print(json.dumps({'task': task, 'cycles_per_round': cycles, 'rounds': rounds, 'without_state_log': off,
                      'with_state_log': on, 'extra_median_us': round(on['median_us'] - off['median_us'], 1),
                      'extra_mean_us': round(on['mean_us'] - off['mean_us'], 1),
                      'record_us_median': round(statistics.median(records), 2),
                      'save_ms_median': round(statistics.median(saves), 1),
                      'log_bytes': int(statistics.median(sizes)), 'states_per_log': rows}))
    if lease is not None:
        lease.release()
