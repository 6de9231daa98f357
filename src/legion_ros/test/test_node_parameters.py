"""node_base.declare_parameters: an empty list default, read-only or not, overridden or not, is a value
the node's parameter services answer (``ros2 param get`` / ``dump``)."""
from __future__ import annotations

import pytest
import yaml

rclpy = pytest.importorskip('rclpy')

from legion_ros.node_base import Param, declare_parameters  # noqa: E402

SPEC = {'stations': Param([], 'tasks', type='string[]', read_only=True),
        'names': Param([], 'names', type='string[]')}


@pytest.mark.parametrize('override', [None, [], ['reach-v3', 'push-v3']])
def test_an_empty_list_parameter_has_a_value_and_stays_read_only(tmp_path, override):
    args = []
    if override is not None:  # [] is what `workcell:=` (empty) writes; rcl reads it as "not set"
        path = tmp_path / 'params.yaml'
        path.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'stations': override}}}))
        args = ['--ros-args', '--params-file', str(path)]
    context = rclpy.Context()
    rclpy.init(args=args, context=context)
    try:
        node = rclpy.create_node('probe', context=context)
        values = declare_parameters(node, SPEC)
        assert values.stations == (override or []) and values.names == []
        # What the get_parameters service does for each name: it fails the whole request on one
        # uninitialised parameter.
        assert list(node.get_parameter('stations').value) == (override or [])
        assert list(node.get_parameter('names').value) == []
        assert node.describe_parameter('stations').read_only
        assert not node.describe_parameter('names').read_only
        rejected = node.set_parameters([rclpy.parameter.Parameter('stations', value=['x'])])[0]
        assert not rejected.successful
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
