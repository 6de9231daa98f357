"""The arm's commander (legion_kuka.commander) without ROS: what an operator and the driver rely on.

The arm here is a position-controlled one that is where it was sent by the next control cycle (100 Hz,
joint-state stamps in ns as cycle ids), as the driver and the twin are within the filter's bounds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legion_kuka.commander import ArmCommander, ArmState, CommanderConfig, Station
from legion_kuka.description import HOME
from legion_kuka.frames import default_task_frame
from legion_kuka.gripper import MetaworldFinger
from legion_kuka.workcell import TRANSIT_GRIPPER

PERIOD_NS = 10_000_000
HAND_OFFSET = 0.075  # the KUKA Meta-World scenes' hand point (legion_ros.nodes.real2sim.hand_offset)
DRAWER_BOX = (np.array([-0.5, 0.40, 0.05]), np.array([0.5, 1.0, 0.5]))  # Meta-World's mocap box


def commander(**options) -> ArmCommander:
    return ArmCommander(CommanderConfig(hand_offset_m=HAND_OFFSET, **options))


class Arm:
    """The driver's side: one joint state per cycle; the arm is where the last command sent it."""

    def __init__(self, c: ArmCommander, q=HOME) -> None:
        self.c, self.q = c, np.array(q, dtype=float)
        self.stamp, self.t = 0, 0.0
        self.commands: list[np.ndarray] = []

    def cycle(self, stamp: int | None = None, t: float | None = None):
        self.stamp = self.stamp + PERIOD_NS if stamp is None else stamp
        self.t = self.t + PERIOD_NS * 1e-9 if t is None else t
        out = self.c.joint_state(self.q, self.stamp, self.t)
        self.take(out)
        return out

    def act(self, action, dt: float = 0.001, cycle: int | None = None):
        out = self.c.action(action, self.t + dt, cycle=cycle)
        self.take(out)
        return out

    def take(self, out) -> None:
        if out.position is not None:
            self.q = out.position
            self.commands.append(out.position)

    def cycles(self, n: int) -> list:
        return [self.cycle() for _ in range(n)]


def kinds(out) -> list[str]:
    return [event.kind for event in out.events]


# -- states and streaming ----------------------------------------------------------------------------
def test_nothing_goes_out_without_a_joint_state_or_an_action():
    c = commander()
    assert c.state is ArmState.HOLDING
    assert c.action([1.0, 0.0, 0.0, 0.0], 0.0).position is None  # no joint state: no command
    arm = Arm(c)
    assert all(out.position is None for out in arm.cycles(20))  # no action: holding, nothing sent
    assert c.state is ArmState.HOLDING and c.sent == 0


def test_an_action_goes_out_at_once_then_one_command_per_control_cycle():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    out = arm.act([1.0, 0.0, 0.0, 0.5])
    assert out.position is not None  # send_on_action: its cycle had no command yet
    assert out.gripper == pytest.approx(MetaworldFinger().step(0.5))  # Meta-World's finger after a step
    assert c.state is ArmState.COMMANDING
    # The same cycle again (a duplicate joint state): its command is out already.
    assert c.joint_state(arm.q, arm.stamp, arm.t + 0.002).position is None
    outs = arm.cycles(9)
    assert all(out.position is not None for out in outs) and c.sent == 10
    assert np.linalg.norm(arm.q - np.array(HOME)) > 1e-3  # the arm moved


def test_the_fingers_are_modelled_on_across_a_hold_and_open_at_a_new_scene():
    """A hold re-anchors the hand, not the fingers: an object held stays held (the closing goes on from
    where it was); a new scene (the twin reset, fingers open) starts the finger model open again."""
    c = commander()
    arm = Arm(c)
    arm.cycle()
    finger, closings = MetaworldFinger(), []
    for _ in range(15):
        closings.append(arm.act([0.0, 0.0, 0.0, 1.0]).gripper)
        arm.cycles(10)
    assert closings == pytest.approx([finger.step(1.0) for _ in range(15)])
    arm.t += 1.0  # no action for a second: holding
    c.watchdog(arm.t)
    assert c.state is ArmState.HOLDING
    assert arm.act([0.0, 0.0, 0.0, 1.0]).gripper == pytest.approx(finger.step(1.0))  # not from open
    c.scene(arm.q)
    arm.cycle()
    assert arm.act([0.0, 0.0, 0.0, 1.0]).gripper == pytest.approx(MetaworldFinger().step(1.0))


def test_without_send_on_action_the_first_target_waits_for_the_next_cycle():
    c = commander(send_on_action=False)
    arm = Arm(c)
    arm.cycle()
    out = arm.act([1.0, 0.0, 0.0, 0.0])
    assert out.position is None and out.gripper is not None
    assert arm.cycle().position is not None


def test_an_action_for_a_cycle_that_got_its_command_waits_for_the_next():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    arm.act([1.0, 0.0, 0.0, 0.0])
    out = arm.act([0.0, 1.0, 0.0, 0.0], cycle=arm.stamp)  # computed from the same joint state
    assert out.position is None and out.gripper is not None
    # One computed from a newer sample than seen here claims that cycle: out at once.
    assert arm.act([0.0, 1.0, 0.0, 0.0], cycle=arm.stamp + PERIOD_NS).position is not None
    assert arm.cycle().position is None  # ... and that cycle has had its command


def test_stale_actions_hold_and_the_next_action_resumes_from_the_measured_hand():
    c = commander(action_timeout_s=0.3)
    arm = Arm(c)
    arm.cycle()
    arm.act([1.0, 0.0, 0.0, 0.0])
    arm.cycles(30)
    sent = c.sent
    arm.cycles(5)  # 0.35 s after the action: nothing streams any more
    assert c.sent == sent
    assert kinds(c.watchdog(arm.t)) == ['holding'] and c.state is ArmState.HOLDING
    assert kinds(c.watchdog(arm.t)) == []  # said once
    held = arm.q.copy()
    out = arm.act([0.0, 0.0, 0.0, 0.0])  # a zero action after the hold: the arm stays where it is
    assert c.state is ArmState.COMMANDING
    assert np.allclose(out.position, held, atol=1e-3)


# -- e-stop ---------------------------------------------------------------------------------------------
def test_an_estop_stops_every_command_until_a_reset_that_follows_the_rules():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    arm.act([1.0, 0.0, 0.0, 0.0])
    assert kinds(c.estop(True)) == ['estop'] and c.state is ArmState.ESTOP
    assert kinds(c.estop(True)) == []  # latched once
    assert all(out.position is None for out in arm.cycles(5))
    assert arm.act([1.0, 0.0, 0.0, 1.0]).gripper is None  # actions are ignored, the gripper's too
    assert c.reset_estop(arm.t) == 'estop_requested'  # still requested: no reset
    c.estop(False)
    assert c.state is ArmState.ESTOP  # releasing the request does not release the latch
    assert c.reset_estop(arm.t + 1.0) == 'no_fresh_joint_state'  # the arm has not reported lately
    arm.cycle()
    assert c.reset_estop(arm.t) is None
    assert c.state is ArmState.HOLDING and c.safety.latched is False
    assert arm.cycle().position is None  # holding until the next action
    assert arm.act([1.0, 0.0, 0.0, 0.0]).position is not None


def test_the_filter_latches_when_the_arm_is_not_where_it_was_sent():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    arm.act([1.0, 0.0, 0.0, 0.0])
    arm.q = arm.q + 0.3  # hit something
    out = arm.cycle()
    assert out.position is None and kinds(out) == ['filter_estop']
    assert 'tracking_error' in out.events[0].reasons
    assert c.state is ArmState.ESTOP
    arm.cycle()
    assert c.reset_estop(arm.t) is None  # nobody requested it: a fresh joint state is enough



# -- scenes: a simulator's announced jump ----------------------------------------------------------------
def test_an_announced_scene_jump_re_anchors_instead_of_latching():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    arm.act([1.0, 0.0, 0.0, 0.0])
    arm.cycles(3)
    posture = np.array(HOME) + 0.3  # the next scene's start: far beyond the tracking limit
    assert kinds(c.scene(posture)) == ['scene']
    arm.q = posture + 0.001  # the twin reloaded (a cycle of sag)
    out = arm.cycle()
    assert kinds(out) == ['rescene'] and out.position is None
    assert c.state is ArmState.HOLDING and not c.safety.latched and c.scenes == 1
    assert arm.act([0.0, 1.0, 0.0, 0.0]).position is not None  # the next action starts from there
    assert np.max(np.abs(arm.q - posture)) < 0.05
    for _ in range(5):  # and streams without a tracking error
        assert 'filter_estop' not in kinds(arm.cycle())


def test_a_collision_still_latches_with_a_scene_announced():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    arm.act([1.0, 0.0, 0.0, 0.0])
    c.scene(np.array(HOME) + 0.3)
    arm.q = arm.q - 0.3  # not the announced posture: hit something
    out = arm.cycle()
    assert kinds(out) == ['filter_estop'] and c.state is ArmState.ESTOP
    arm.q = np.array(HOME) + 0.3  # the announced posture now does not release the latch
    assert arm.cycle().position is None and c.state is ArmState.ESTOP and c.safety.latched
    c.scene(arm.q)
    assert c.state is ArmState.ESTOP and c.safety.latched and c.scenes == 0


def test_a_scene_announced_after_its_jump_latched_waits_for_the_operator():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    arm.act([1.0, 0.0, 0.0, 0.0])
    arm.q = np.array(HOME) + 0.3
    assert kinds(arm.cycle()) == ['filter_estop']
    assert kinds(c.scene(arm.q)) == ['scene'] and c.state is ArmState.ESTOP
    arm.cycle()
    assert c.reset_estop(arm.t) is None and c.state is ArmState.HOLDING


def test_a_scene_at_the_arms_posture_before_any_command_just_holds():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    assert kinds(c.scene(arm.q)) == ['scene', 'rescene'] and c.state is ArmState.HOLDING
    with pytest.raises(ValueError):
        c.scene([0.0] * 6)
    assert arm.act([1.0, 0.0, 0.0, 0.0]).position is not None

# -- task boxes, stations, transits -------------------------------------------------------------------
def test_a_task_box_bounds_the_filter_and_waits_for_a_reset_while_estopped():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    c.new_step(DRAWER_BOX)
    low, high = c.task_workspace(DRAWER_BOX)
    assert np.allclose(c.safety.limits.workspace_low, low)
    assert np.allclose(c.safety.limits.workspace_high, high)
    c.estop(True)
    smaller = (DRAWER_BOX[0] + 0.1, DRAWER_BOX[1] - 0.1)
    c.new_step(smaller)
    assert c.safety.latched and np.allclose(c.safety.limits.workspace_low, low)  # never released by a box
    c.estop(False)
    arm.cycle()
    assert c.reset_estop(arm.t) is None
    assert np.allclose(c.safety.limits.workspace_low, c.task_workspace(smaller)[0])


def test_with_the_cell_workspace_a_task_box_changes_only_the_translator():
    c = commander(task_workspace=False)
    cell = c.safety.limits.workspace_low.copy()
    c.new_step(DRAWER_BOX)
    assert np.array_equal(c.translator.hand_low, DRAWER_BOX[0])
    assert np.array_equal(c.safety.limits.workspace_low, cell)


def station(turn_rad: float = 0.6) -> Station:
    frame = default_task_frame()
    goal = np.array(HOME)
    goal[0] += turn_rad
    box = (np.array([0.2, -0.8, 0.02]), np.array([0.9, 0.8, 0.6]))
    return Station((frame.translation, frame.quat), DRAWER_BOX, goal, box, 0.45)


def test_a_station_is_reached_by_a_transit_in_the_workcells_box_then_guarded_by_its_own():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    target = station()
    out = c.station(target)
    assert kinds(out) == ['transit'] and out.gripper == TRANSIT_GRIPPER  # fingers open for the way
    assert c.state is ArmState.TRANSIT
    assert np.allclose(c.safety.limits.workspace_low, target.workcell_box[0])
    assert arm.act([1.0, 0.0, 0.0, 1.0]).gripper is None  # not there yet: actions wait
    events = []
    for _ in range(3000):
        out = arm.cycle()
        assert out.position is not None  # one target every cycle
        events += kinds(out)
        if c.state is not ArmState.TRANSIT:
            break
    assert events == ['at_station'] and c.state is ArmState.HOLDING
    assert np.allclose(arm.q, target.start_posture, atol=1e-3)
    assert np.allclose(c.safety.limits.workspace_low, c.task_workspace(DRAWER_BOX)[0])
    arm.act([0.0, 0.0, -1.0, 0.0])  # the policy has the arm, from the next cycle (this one had its command)
    assert c.state is ArmState.COMMANDING and arm.cycle().position is not None


def test_a_station_before_the_first_joint_state_moves_the_arm_once_it_reports():
    c = commander()
    assert kinds(c.station(station())) == [] and c.state is ArmState.HOLDING
    arm = Arm(c)
    out = arm.cycle()
    assert 'transit' in kinds(out) and out.position is not None and c.state is ArmState.TRANSIT


def test_an_estop_cuts_a_transit_short_and_the_reset_plans_it_again_from_where_the_arm_is():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    target = station()
    c.station(target)
    arm.cycles(50)
    c.estop(True)
    c.estop(False)
    arm.cycle()
    assert c.reset_estop(arm.t) is None and c.state is ArmState.HOLDING
    out = arm.cycle()
    assert 'transit' in kinds(out) and c.state is ArmState.TRANSIT
    while c.state is ArmState.TRANSIT:
        arm.cycle()
    assert np.allclose(arm.q, target.start_posture, atol=1e-3)


# -- active and inactive (the sim2real node's lifecycle) ----------------------------------------------
def test_an_inactive_commander_commands_nothing_and_resumes_from_rest_once_active():
    c = ArmCommander(CommanderConfig(hand_offset_m=HAND_OFFSET), active=False)
    arm = Arm(c)
    arm.cycle()
    assert not c.takes_actions and arm.act([1.0, 0.0, 0.0, 1.0]).gripper is None  # dropped, fingers too
    assert all(out.position is None for out in arm.cycles(20)) and c.sent == 0
    assert kinds(c.activate(arm.t)) == ['active'] and c.state is ArmState.HOLDING
    assert arm.act([1.0, 0.0, 0.0, 0.0]).position is not None and c.state is ArmState.COMMANDING
    assert kinds(c.deactivate()) == ['inactive'] and c.state is ArmState.HOLDING
    sent = c.sent
    assert arm.act([1.0, 0.0, 0.0, 0.0]).position is None  # the policy goes on: nothing leaves
    assert all(out.position is None for out in arm.cycles(20)) and c.sent == sent
    c.activate(arm.t)
    assert all(out.position is None for out in arm.cycles(5))  # holding until the next action
    arm.act([1.0, 0.0, 0.0, 0.0])
    assert c.state is ArmState.COMMANDING and c.sent == sent + 1


def test_deactivating_cuts_a_transit_short_and_activating_plans_it_again_from_where_the_arm_is():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    target = station()
    c.station(target)
    arm.cycles(50)
    c.deactivate()
    assert c.state is ArmState.HOLDING and all(out.position is None for out in arm.cycles(10))
    c.activate(arm.t)
    out = arm.cycle()
    assert 'transit' in kinds(out) and out.position is not None and c.state is ArmState.TRANSIT
    while c.state is ArmState.TRANSIT:
        arm.cycle()
    assert np.allclose(arm.q, target.start_posture, atol=1e-3)


def test_activating_never_releases_a_latched_estop():
    c = commander()
    arm = Arm(c)
    arm.cycle()
    c.deactivate()
    c.estop(True)  # an e-stop while inactive latches as always
    c.estop(False)
    c.activate(arm.t)
    assert c.state is ArmState.ESTOP and c.safety.latched and not c.takes_actions
    arm.cycle()
    assert c.reset_estop(arm.t) is None and arm.act([1.0, 0.0, 0.0, 0.0]).position is not None


def test_commands_go_out_in_the_order_the_driver_needs():
    from legion_kuka.commander import Commands, Event

    q = np.zeros(7)
    assert Commands(position=q, gripper=0.5).in_order() == [('position', q), ('gripper', 0.5)]
    transit = Commands(position=q, gripper=-1.0, events=[Event('transit', '')])
    assert transit.in_order() == [('gripper', -1.0), ('position', q)]  # fingers open before moving
    assert Commands().in_order() == []


def test_a_station_the_translator_refuses_changes_nothing():
    c = commander()
    frame = default_task_frame()
    with pytest.raises(ValueError):
        c.station(Station((frame.translation, frame.quat), (DRAWER_BOX[1], DRAWER_BOX[0])))  # low > high
    assert c.hand_box is None and c.task_frame is None


# -- clocks --------------------------------------------------------------------------------------------
def test_cycle_ids_going_back_count_afresh():
    c = commander()
    arm = Arm(c, q=HOME)
    arm.stamp = 10**12
    arm.cycle()
    arm.act([1.0, 0.0, 0.0, 0.0])
    arm.cycles(3)
    # The stamps re-anchored after a clock jump: the next sample's cycle is a new one, not "done".
    assert arm.cycle(stamp=PERIOD_NS).position is not None


def test_the_clock_going_back_starts_over_from_rest_instead_of_refusing_every_sample():
    c = commander()
    arm = Arm(c)
    arm.t = 100.0
    arm.cycle()
    arm.act([1.0, 0.0, 0.0, 0.0])
    arm.cycles(3)
    out = arm.cycle(t=0.5)  # sim time: the twin restarted
    assert out.position is None and c.state is ArmState.HOLDING and not c.safety.latched
    assert arm.act([1.0, 0.0, 0.0, 0.0]).position is not None  # and the next action commands again
    assert arm.cycle().position is not None



def test_after_a_hold_only_a_new_action_moves_the_arm_even_if_the_clock_went_back():
    # The hold came from the clock (stale actions); the clock then went back behind the last action
    # (a restarted sim) with no joint state in between to notice: the old plan does not resume.
    c = commander(action_timeout_s=0.3)
    arm = Arm(c)
    arm.cycle()
    arm.act([1.0, 0.0, 0.0, 0.0], dt=0.005)
    assert kinds(c.watchdog(arm.t + 1.0)) == ['holding']
    assert arm.cycle(t=arm.t + 0.001).position is None

# -- every command inside the filter's bounds, whatever comes in --------------------------------------
finite = st.floats(-3.0, 3.0, allow_nan=False)
operation = st.one_of(
    st.tuples(st.just('cycles'), st.integers(1, 15)),
    st.tuples(st.just('cycle'), st.integers(0, 2)),  # the same cycle again, or one skipped
    st.tuples(st.just('action'), st.lists(finite, min_size=4, max_size=4)),  # a policy step:
    st.tuples(st.just('action'), st.lists(finite, min_size=4, max_size=4)),  # the action, then cycles
    st.tuples(st.just('watchdog'), st.floats(0.0, 1.0)),
    st.tuples(st.just('estop'), st.booleans()),
    st.tuples(st.just('reset'), st.just(0)),
    st.tuples(st.just('step'), st.booleans()),
    st.tuples(st.just('wait'), st.floats(0.0, 0.5)),  # a late joint state or action
    st.tuples(st.just('scene'), st.floats(-0.3, 0.3)),  # the twin announces a posture and jumps there
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=40))
def test_every_command_is_within_the_filters_limits_and_one_per_cycle(operations):
    c = commander()
    limits = c.safety.limits
    step = limits.velocity * c.period_s + 1e-9
    arm = Arm(c)
    arm.cycle()
    commanded = set()

    def check(out) -> None:
        if out.position is None:
            return
        assert c.state is not ArmState.ESTOP
        assert np.all(out.position >= limits.lower - 1e-9) and np.all(out.position <= limits.upper + 1e-9)
        assert np.all(np.abs(out.position - arm.q) <= step)  # from where the arm is, within one cycle
        assert c.cycle not in commanded or c.cycle is None
        commanded.add(c.cycle)

    def next_cycle():
        arm.stamp, arm.t = arm.stamp + PERIOD_NS, arm.t + 0.01
        out = c.joint_state(arm.q, arm.stamp, arm.t)
        check(out)
        arm.take(out)

    for kind, value in operations:
        if kind == 'cycles':
            for _ in range(value):
                next_cycle()
            continue
        if kind == 'cycle':
            arm.stamp, arm.t = arm.stamp + value * PERIOD_NS, arm.t + 0.01
            out = c.joint_state(arm.q, arm.stamp, arm.t)
        elif kind == 'action':
            out = c.action(value, arm.t + 0.001)
            check(out)
            arm.take(out)
            for _ in range(10):
                next_cycle()
            continue
        elif kind == 'watchdog':
            out = c.watchdog(arm.t + value)
        elif kind == 'estop':
            out = c.estop(value)
        elif kind == 'reset':
            if c.reset_estop(arm.t) is None:
                commanded.clear()  # a reset starts the count afresh (from rest at the measured joints)
            continue
        elif kind == 'step':
            out = c.new_step(DRAWER_BOX if value else None)
        elif kind == 'scene':
            # (inside the filter's limits, as sim_bridge starts every scene: start_inside_margin_deg)
            posture = np.clip(np.asarray(HOME, dtype=float) + value, limits.lower + 0.01, limits.upper - 0.01)
            estopped = c.state is ArmState.ESTOP
            out = c.scene(posture)
            check(out)
            arm.q = posture
            next_cycle()
            assert (c.state is ArmState.ESTOP) == estopped  # an announced jump neither latches nor releases
            continue
        else:
            arm.t += value
            continue
        check(out)
        arm.take(out)
    assert math.isfinite(c.sent)


def test_a_tasks_hand_box_is_meta_worlds_read_once_and_not_to_be_changed():
    from legion_kuka.commander import task_hand_box

    low, high = task_hand_box('drawer-close-v3')
    assert np.array_equal(low, DRAWER_BOX[0]) and np.array_equal(high, DRAWER_BOX[1])
    assert task_hand_box('drawer-close-v3')[0] is low  # cached: no second Meta-World env
    with pytest.raises(ValueError):
        low[0] = 0.0
    with pytest.raises(Exception):  # noqa: B017 (whatever Meta-World raises for it)
        task_hand_box('no-such-task-v3')


def test_a_step_takes_its_tasks_hand_box_and_an_unknown_task_keeps_the_previous_one():
    from legion_kuka.commander import task_hand_box

    c = commander()
    assert kinds(c.step('drawer-close-v3')) == []
    assert c.hand_box is task_hand_box('drawer-close-v3')
    out = c.step('no-such-task-v3')
    assert kinds(out) == ['fault'] and 'no-such-task-v3' in out.events[0].text
    assert c.hand_box is task_hand_box('drawer-close-v3') and not c.anchored  # a new step all the same
    kept = commander(task_hand_box=False)
    assert kinds(kept.step('drawer-close-v3')) == [] and kept.hand_box is None  # Meta-World's default box
