"""`legion doctor` checks for the ROS layer (contributed through the ``legion.doctor`` group)."""
from __future__ import annotations

import os
import subprocess
import sys

from legion_core.cli.doctor import FIX_INSTALL, Check, version_check
from legion_ros.environment import DISCOVERY_VAR, describe

MESSAGE_PACKAGES = ['std_msgs', 'std_srvs', 'sensor_msgs', 'geometry_msgs', 'rosgraph_msgs',
                    'diagnostic_msgs', 'trajectory_msgs', 'lifecycle_msgs']


def checks() -> list[Check]:
    result = [
        version_check('ros-jazzy-rclpy', purpose='ROS 2 Jazzy client library'),
        version_check('ros-jazzy-rmw-fastrtps-cpp', purpose='DDS middleware'),
        version_check('rosbags', purpose='rosbag2 recording'),
        version_check('mcap-ros2-support', purpose='bag read-back'),
        version_check('colcon-core', purpose='workspace build'),
    ]
    # rclpy loads its middleware at import: do it in a child so a broken install cannot take the
    # doctor down, and so this process stays free of ROS state.
    probe = ('import rclpy, ' + ', '.join(f'{m}.msg' if m != 'std_srvs' else 'std_srvs.srv'
                                           for m in MESSAGE_PACKAGES) + '; print("ok")')
    proc = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, timeout=60)
    if proc.returncode == 0:
        result.append(Check('rclpy import', True, 'rclpy and the message packages import'))
    else:
        last = (proc.stderr.strip().splitlines() or ['unknown error'])[-1]
        result.append(Check('rclpy import', False, last,
                            f'{FIX_INSTALL}; `ros-jazzy-rmw-fastrtps-cpp` must be installed explicitly'))
    settings = describe()
    for name, value in settings.items():
        result.append(Check(name, None, value))
    if os.environ.get(DISCOVERY_VAR) not in (None, 'LOCALHOST'):
        result.append(Check('discovery range', None,
                            f'{DISCOVERY_VAR}={os.environ[DISCOVERY_VAR]}: DDS traffic may leave loopback'))
    return result
