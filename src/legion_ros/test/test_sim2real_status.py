"""What sim2real's status says in each lifecycle state (legion_ros.sim2real_status, pure: no ROS)."""
from __future__ import annotations

import pytest

from legion_ros.provenance import StampWindow
from legion_ros.sim2real_status import Sim2RealStatus

pytest.importorskip('legion_kuka.commander')


def test_the_state_is_the_arms_while_active_the_lifecycles_otherwise_and_estop_always():
    from legion_kuka.commander import ArmCommander, CommanderConfig

    report = Sim2RealStatus()
    assert report.fields('unconfigured', None, 'cannot configure: x') == {
        'state': 'unconfigured', 'lifecycle': 'unconfigured', 'rejected': {}, 'estop_resets': 0,
        'reason': 'cannot configure: x'}
    commander = ArmCommander(CommanderConfig(task_hand_box=False), active=False)
    fields = report.fields('inactive', commander)
    assert fields['state'] == 'inactive' and fields['commands_sent'] == 0 and 'reason' not in fields
    assert report.fields('active', commander)['state'] == 'holding'
    commander.estop(True)
    assert report.fields('inactive', commander)['state'] == 'estop'  # the instruction node stops on it
    assert report.reject('/legion/action') == {'/legion/action': 1}
    assert report.fields('active', commander)['rejected'] == {'/legion/action': 1}


def test_a_source_stamp_far_ahead_of_the_newest_joint_state_is_not_believed():
    window = StampWindow(0.5)
    assert window.believe(None, 10) is None
    assert window.believe(10, None) == 10  # nothing to compare with yet
    assert window.believe(10 + 500_000_000, 10) == 10 + 500_000_000
    assert window.believe(11 + 500_000_000, 10) is None
