"""Test helpers for the decision-path nodes: start nodes as processes, probe their topics.

Each node runs as its own process (as in a real graph), in the pytest process's leased ROS domain
(the legion_ros pytest plugin sets ROS_DOMAIN_ID). The probe is an rclpy node in the test process.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import rclpy
from rclpy.node import Node

from legion_bringup.graph import ros_yaml


def start_node(module: str, parameters: dict | None = None, name: str | None = None,
               namespace: str = '/legion', log_file=None) -> subprocess.Popen:
    """``python -m legion_ros.nodes.<module> --ros-args ...`` in a new process group."""
    args = [sys.executable, '-m', f'legion_ros.nodes.{module}', '--ros-args', '-r', f'__ns:={namespace}']
    if name:
        args += ['-r', f'__node:={name}']
    for key, value in (parameters or {}).items():
        args += ['-p', f'{key}:={ros_yaml(value)}']
    env = dict(os.environ, PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0')
    return subprocess.Popen(args, stdout=log_file or subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def stop_node(process: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGINT, then SIGKILL; returns the exit code (0 = clean shutdown)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def output_of(process: subprocess.Popen) -> str:
    if process.stdout is None:
        return ''
    with contextlib.suppress(Exception):
        return process.stdout.read().decode('utf-8', errors='replace')
    return ''


class Probe:
    """Publishes to and records from topics of the graph under test."""

    def __init__(self, name: str = 'probe') -> None:
        self.node: Node = rclpy.create_node(name)
        self.messages: dict[str, list] = defaultdict(list)
        self.times: dict[str, list[float]] = defaultdict(list)
        self._publishers = {}

    def listen(self, msg_type, topic: str, qos_profile) -> None:
        def record(message, topic=topic):
            self.messages[topic].append(message)
            self.times[topic].append(time.monotonic())
        self.node.create_subscription(msg_type, topic, record, qos_profile)

    def publisher(self, msg_type, topic: str, qos_profile):
        key = (topic, msg_type)
        if key not in self._publishers:
            self._publishers[key] = self.node.create_publisher(msg_type, topic, qos_profile)
        return self._publishers[key]

    def publish(self, msg_type, topic: str, qos_profile, message) -> None:
        self.publisher(msg_type, topic, qos_profile).publish(message)

    def spin(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=min(0.02, max(0.0, deadline - time.monotonic())))

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.02)
        return predicate()

    def json(self, topic: str) -> list[dict]:
        return [json.loads(m.data) for m in self.messages[topic]]

    def close(self) -> None:
        self.node.destroy_node()
