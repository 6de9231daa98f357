"""sim_bridge's start posture: a scene that resets the arm outside the safety filter's position limits
starts it where legion_kuka's chain starts its episodes, inside them, so sim2real can move it (issue #5:
button-press-topdown, window-close and faucet-open failed through the graph, every command held)."""
from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip('rclpy')  # sim_bridge is a node module; the test itself starts no ROS process
pytest.importorskip('legion_kuka.twin')

MARGIN = math.radians(5.0)  # config/sim2real.yaml position_margin_deg and config/sim_bridge.yaml


def _filter(limits, twin):
    from legion_kuka.kinematics import IiwaKinematics
    from legion_kuka.safety import SafetyFilter

    safety = SafetyFilter(limits, IiwaKinematics(tool='tcp'), control_period_s=0.01, stale_after_s=0.03)
    safety.update_joint_state(twin.joint_state().position, 0.0)
    return safety


@pytest.mark.parametrize('task', ['button-press-topdown-v3', 'window-close-v3'])
def test_an_arm_outside_the_limits_starts_inside_them_as_the_chain_does(task):
    # These scenes used to reset the arm at the datasheet's elbow limit; the training scene now starts
    # inside the filter's limits (legion_kuka.metaworld_kuka), so put the arm there by hand, as a
    # real arm jogged to its limit would stand.
    from legion_kuka.chain import ChainRunner
    from legion_kuka.description import IIWA7
    from legion_kuka.safety import SafetyLimits
    from legion_kuka.twin import Twin
    from legion_kuka.twin_driver import start_inside_limits, start_limits

    limits = SafetyLimits.from_description(position_margin=MARGIN, workspace=None)
    twin = Twin(task, seed=1)
    assert limits.within_positions(twin.joint_state().position)  # the scene's own start: inside
    outside = twin.joint_state().position.copy()
    outside[3] = IIWA7.lower[3] + 0.01
    twin.reset(task=task, seed=1, posture=outside)
    scene_start = twin.joint_state().position
    assert not limits.within_positions(scene_start)
    # From there the filter holds every command: the arm can never move.
    step = scene_start + np.full(7, 0.01) * np.sign(-scene_start)
    decision = _filter(limits, twin).command(step, stamp=0.0, now=0.0)
    assert decision.reasons == ('outside_position_limits',)

    assert start_inside_limits(twin, start_limits(MARGIN))
    q = twin.joint_state().position
    assert limits.within_positions(q)
    assert np.allclose(twin.joint_targets, q)  # the servo holds the new posture, it does not pull back
    decision = _filter(limits, twin).command(q + 0.001, stamp=0.0, now=0.0)
    assert decision.moving, decision.reasons

    # The same posture as the pure chain's episode start for this task and seed.
    chain_twin = Twin(task, seed=1)
    chain_twin.reset(task=task, seed=1, posture=outside)
    runner = ChainRunner(lambda obs: np.zeros(4), task, seed=1, layout='full39', twin=chain_twin,
                         reset_twin=False)
    runner._bring_inside_limits(1)
    assert np.allclose(chain_twin.joint_state().position, q, atol=1e-9)


def test_a_scene_inside_the_limits_is_left_as_it_is():
    from legion_kuka.twin import Twin
    from legion_kuka.twin_driver import start_inside_limits, start_limits

    twin = Twin('push-v3', seed=1)
    before = twin.joint_state().position
    assert not start_inside_limits(twin, start_limits(MARGIN))
    assert np.array_equal(twin.joint_state().position, before)
    twin = Twin('button-press-topdown-v3', seed=1)
    before = twin.joint_state().position
    assert not start_inside_limits(twin, None)  # start_inside_margin_deg 0: the scene's posture as is
    assert np.array_equal(twin.joint_state().position, before)
