"""pytest plugin (auto-loaded through the ``pytest11`` entry point of legion_ros).

Every pytest process, and every xdist worker, leases its own ROS domain at start-up and keeps DDS on
loopback, so test runs in parallel, CI and a user's running graph never see each other's topics. A
``ROS_DOMAIN_ID`` exported by the user is deliberately overridden: a test must never talk to a real
robot's graph.
"""
from __future__ import annotations

import os

from legion_ros.environment import DISCOVERY_VAR, DOMAIN_VAR, lease_domain

_lease = None


def pytest_configure(config) -> None:
    global _lease
    os.environ[DISCOVERY_VAR] = 'LOCALHOST'
    _lease = lease_domain(role='test')
    os.environ[DOMAIN_VAR] = str(_lease.domain_id)


def pytest_report_header(config) -> str:
    return f'ROS: {DOMAIN_VAR}={os.environ.get(DOMAIN_VAR)} {DISCOVERY_VAR}={os.environ.get(DISCOVERY_VAR)}'


def pytest_unconfigure(config) -> None:
    if _lease is not None:
        _lease.release()
