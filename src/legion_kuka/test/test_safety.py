"""The safety filter: deterministic cases and hypothesis properties over adversarial input sequences."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legion_kuka import description as desc
from legion_kuka.kinematics import IiwaKinematics
from legion_kuka.safety import SafetyFilter, SafetyLimits, SafetyStatus

DT = 0.01
STALE = 0.03
KIN = IiwaKinematics(tool='tcp')
LIMITS = SafetyLimits.from_description()
HOME = np.array(desc.HOME)
EPS = 1e-9


def make_filter(limits=LIMITS):
    return SafetyFilter(limits, KIN, control_period_s=DT, stale_after_s=STALE)


def started(q=HOME, t=0.0, limits=LIMITS):
    f = make_filter(limits)
    assert f.update_joint_state(q, t)
    return f


def run_to(f, target, t0, cycles, follow=True):
    """Command ``target`` for ``cycles`` cycles; the arm follows perfectly when ``follow``."""
    out, t = [], t0
    for _ in range(cycles):
        t += DT
        decision = f.command(target, t, t)
        out.append(decision)
        if follow and decision.position is not None:
            f.update_joint_state(decision.position, t)
    return out, t


# ------------------------------------------------------------------ limits
def test_default_limits_come_from_the_datasheet():
    assert np.allclose(LIMITS.upper, np.asarray(desc.IIWA7.position_limits) - math.radians(5))
    assert np.allclose(LIMITS.lower, -LIMITS.upper)
    assert np.allclose(LIMITS.velocity, 0.1 * np.asarray(desc.IIWA7.velocity_limits))
    assert np.allclose(LIMITS.acceleration, 1.0)
    assert LIMITS.workspace_low is not None
    tcp, _ = KIN.fk(HOME)
    assert np.all(tcp > LIMITS.workspace_low) and np.all(tcp < LIMITS.workspace_high)


@pytest.mark.parametrize('kwargs, message', [
    ({'position_margin': -0.1}, 'position_margin'),
    ({'velocity_scale': 0.0}, 'velocity_scale'),
    ({'velocity_scale': 1.5}, 'velocity_scale'),
    ({'acceleration': [1.0] * 6}, '7 values'),
    ({'acceleration': -1.0}, 'positive'),
    ({'workspace': ((0.5, 0, 0), (0.4, 1, 1))}, 'workspace_low must be below'),
    ({'max_tracking_error': 0.0}, 'max_tracking_error'),
])
def test_bad_limits_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SafetyLimits.from_description(**kwargs)


def test_bad_filter_arguments_are_rejected():
    with pytest.raises(ValueError, match='control_period_s'):
        SafetyFilter(LIMITS, KIN, control_period_s=0.0, stale_after_s=STALE)
    with pytest.raises(ValueError, match='stale_after_s'):
        SafetyFilter(LIMITS, KIN, control_period_s=DT, stale_after_s=math.nan)
    with pytest.raises(TypeError, match='now_s'):
        started().command(HOME, 0.0)


# ------------------------------------------------------------------ joint states
def test_nothing_goes_out_before_the_first_joint_state():
    f = make_filter()
    decision = f.command(HOME, 0.0, 0.0)
    assert decision.position is None and decision.status is SafetyStatus.NO_STATE


@pytest.mark.parametrize('position, stamp, message', [
    ([0.0] * 6, 1.0, '7 positions'),
    ([0.0] * 6 + [math.nan], 1.0, 'NaN or inf'),
    ([0.0] * 6 + [math.inf], 1.0, 'NaN or inf'),
    ([0.0] * 7, math.nan, 'stamp is not finite'),
    ([0.0] * 7, 0.5, 'older than the previous'),
    ('seven', 1.0, 'not numeric'),
])
def test_bad_joint_states_are_refused(position, stamp, message):
    f = started(t=0.9)
    assert not f.update_joint_state(position, stamp)
    assert message in f.last_rejection


# ------------------------------------------------------------------ holds
@pytest.mark.parametrize('target', [[math.nan] * 7, [0.1] * 6, [math.inf, 0, 0, 0, 0, 0, 0], None, 'x'])
def test_malformed_targets_hold_the_current_position(target):
    f = started()
    decision = f.command(target, 0.0, 0.0)
    assert decision.status is SafetyStatus.HOLD and decision.reasons == ('invalid_target',)
    assert np.array_equal(decision.position, HOME)


def test_stale_or_future_input_holds_the_last_emitted_command():
    f = started()
    target = HOME + 0.3
    moving, t = run_to(f, target, 0.0, 20)
    last = moving[-1].position
    assert moving[-1].moving
    # target stamped too long ago
    hold = f.command(target, t - 2 * STALE, t + DT)
    assert hold.status is SafetyStatus.HOLD and hold.reasons == ('stale_target',)
    assert np.array_equal(hold.position, last)
    # target from the future
    assert f.command(target, t + 1.0, t + 2 * DT).reasons == ('stale_target',)
    # joint state too old (the arm stopped reporting)
    hold = f.command(target, t + 10.0, t + 10.0)
    assert hold.reasons == ('stale_joint_state',) and np.array_equal(hold.position, last)
    # fresh again: motion restarts from rest
    f.update_joint_state(last, t + 10.0)
    again = f.command(target, t + 10.0, t + 10.0)
    assert again.moving
    assert np.all(np.abs(again.position - last) <= LIMITS.acceleration * DT * DT + EPS)


def test_out_of_order_targets_and_a_clock_going_back_hold():
    f = started()
    f.command(HOME, 0.01, 0.01)
    assert f.command(HOME, 0.005, 0.012).reasons == ('out_of_order_target',)
    assert f.command(HOME, 0.012, 0.011).reasons == ('clock_backwards',)


def test_targets_outside_the_workspace_box_hold():
    f = started()
    stretched = np.zeros(7)  # the candle: tool point 1.37 m up
    decision = f.command(stretched, 0.0, 0.0)
    assert decision.status is SafetyStatus.HOLD and decision.reasons == ('outside_workspace',)
    assert np.array_equal(decision.position, HOME)


def test_an_arm_outside_the_box_may_only_move_back_in():
    f = started(q=np.zeros(7))  # the candle, far above the box
    decisions, _ = run_to(f, HOME, 0.0, 1000)
    assert all(d.moving for d in decisions)
    heights = [KIN.fk(d.position)[0][2] for d in decisions]
    assert np.all(np.diff(heights) <= 1e-12) and heights[-1] < LIMITS.workspace_high[2]
    assert np.allclose(decisions[-1].position, HOME, atol=1e-9)


def test_an_arm_outside_the_position_limits_is_not_moved():
    q = HOME.copy()
    q[3] = -math.radians(118)  # inside the mechanical limit, outside the 5 deg margin
    f = started(q=q)
    decision = f.command(HOME, 0.0, 0.0)
    assert decision.status is SafetyStatus.HOLD and decision.reasons == ('outside_position_limits',)
    assert np.array_equal(decision.position, q)


# ------------------------------------------------------------------ limits on motion
def test_targets_beyond_the_limits_are_clipped_and_reached_without_overshoot():
    f = started()
    target = HOME.copy()
    target[3] = -3.0  # A4 beyond its -120 deg limit
    decisions, _ = run_to(f, target, 0.0, 600)
    assert all('position_limit' in d.reasons for d in decisions)
    a4 = np.array([d.position[3] for d in decisions])
    assert np.all(a4 >= LIMITS.lower[3] - EPS)
    assert a4[-1] == pytest.approx(LIMITS.lower[3], abs=1e-9)


def test_far_targets_ramp_up_cruise_and_stop_at_the_target():
    f = started()
    target = HOME.copy()
    target[0] = 0.5  # A1: 0.5 rad at 0.171 rad/s and 1 rad/s^2
    decisions, _ = run_to(f, target, 0.0, 500)
    a1 = np.array([HOME[0]] + [d.position[0] for d in decisions])
    steps = np.diff(a1)
    assert steps[0] == pytest.approx(LIMITS.acceleration[0] * DT * DT)
    assert steps.max() == pytest.approx(LIMITS.velocity[0] * DT)
    assert np.all(np.abs(np.diff(steps)) <= LIMITS.acceleration[0] * DT * DT + EPS)
    assert np.all(a1 <= 0.5 + EPS), 'no overshoot when starting from rest'
    assert a1[-1] == pytest.approx(0.5, abs=1e-12) and decisions[-1].status is SafetyStatus.OK
    assert 'velocity_limit' in decisions[100].reasons
    # time: ~ distance / velocity + velocity / acceleration
    arrival = int(np.argmax(np.isclose(a1, 0.5, atol=1e-12)))
    expected = 0.5 / LIMITS.velocity[0] + LIMITS.velocity[0] / LIMITS.acceleration[0]
    assert arrival * DT == pytest.approx(expected, rel=0.05)


def test_a_reversed_target_brakes_within_the_acceleration_limit():
    f = started()
    forward = HOME + 0.4
    decisions, t = run_to(f, forward, 0.0, 100)
    back, _ = run_to(f, HOME, t, 200)
    positions = np.array([HOME] + [d.position for d in decisions + back])
    steps = np.diff(positions, axis=0)
    assert np.all(np.abs(np.diff(steps, axis=0)) <= LIMITS.acceleration * DT * DT + EPS)
    assert np.allclose(positions[-1], HOME, atol=1e-12)


# ------------------------------------------------------------------ e-stop
def test_estop_latches_until_reset_with_a_fresh_joint_state():
    f = started()
    decisions, t = run_to(f, HOME + 0.2, 0.0, 30)
    last = decisions[-1].position
    f.estop('operator')
    for i in range(5):
        hold = f.command(HOME + 0.2, t + i * DT, t + i * DT)
        assert hold.status is SafetyStatus.ESTOP and np.array_equal(hold.position, last)
        assert 'operator' in hold.reasons
    assert f.latched and f.latch_reasons == ('operator',)
    assert not f.reset(now_s=t + 1.0), 'the last joint state is a second old'
    assert f.latched
    moved = last + 0.05  # someone pushed the arm during the stop
    f.update_joint_state(moved, t + 1.0)
    assert f.reset(now_s=t + 1.0) and not f.latched
    resumed = f.command(HOME + 0.2, t + 1.0, t + 1.0)
    assert resumed.moving
    assert np.all(np.abs(resumed.position - moved) <= LIMITS.acceleration * DT * DT + EPS), \
        'after a reset motion starts from the measured position, at rest'


def test_a_tracking_error_latches_the_estop():
    f = started()
    run_to(f, HOME + 0.1, 0.0, 10, follow=False)
    assert not f.latched
    f.update_joint_state(HOME + 0.5, 0.1)  # the arm is not where it was sent
    assert f.latched and f.latch_reasons == ('tracking_error',)
    assert f.command(HOME, 0.1, 0.1).status is SafetyStatus.ESTOP


def test_reset_lets_a_simulator_rewind_its_clock():
    f = started(t=5.0)
    f.command(HOME, 5.0, 5.0)
    assert f.reset()
    assert f.update_joint_state(HOME, 0.0)
    assert f.command(HOME, 0.0, 0.0).status is SafetyStatus.OK


# ------------------------------------------------------------------ properties
# Two configurations: the defaults (with the workspace box), and fast limits without a box so that
# short sequences reach the joint limits.
FAST = SafetyLimits.from_description(velocity_scale=1.0, acceleration=50.0, workspace=None,
                                     max_tracking_error=None)
_finite = st.floats(-4.0, 4.0, allow_nan=False)
_wild = st.one_of(_finite, st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300]))


def _offsets(scale):
    return st.lists(st.floats(-scale, scale, allow_nan=False), min_size=7, max_size=7).map(np.array)


_start = st.one_of(
    _offsets(0.2).map(lambda d: HOME + d),
    st.lists(st.floats(0.0, 1.0), min_size=7, max_size=7).map(  # anywhere inside the safety limits
        lambda u: LIMITS.lower + np.array(u) * (LIMITS.upper - LIMITS.lower)),
    st.lists(st.sampled_from([-1.0, 1.0]), min_size=7, max_size=7).map(  # just inside a limit
        lambda sign: np.where(np.array(sign) > 0, LIMITS.upper - 0.01, LIMITS.lower + 0.01)),
)
_target = st.one_of(
    st.tuples(st.just('relative'), _offsets(0.3)),  # moving around the start
    st.tuples(st.just('relative'), _offsets(3.0)),  # big jumps, often beyond the limits
    st.tuples(st.just('absolute'), st.lists(_finite, min_size=7, max_size=7)),
    st.tuples(st.just('absolute'), st.lists(_wild, min_size=7, max_size=7)),  # NaN, inf, huge
    st.tuples(st.just('absolute'), st.lists(_finite, min_size=0, max_size=9)),  # wrong sizes
)
_clock_step = st.one_of(st.just(DT), st.just(DT), st.just(DT), st.just(0.0), st.floats(-0.05, 0.2))
_stamp_lag = st.one_of(st.just(0.0), st.just(0.0), st.floats(-0.1, 0.1), st.sampled_from([math.nan, 1e9]))
_event = st.one_of(
    st.tuples(st.just('command'), _target, _clock_step, _stamp_lag),
    st.tuples(st.just('command'), _target, _clock_step, _stamp_lag),
    st.tuples(st.just('command'), _target, _clock_step, _stamp_lag),
    st.tuples(st.just('command'), _target, _clock_step, _stamp_lag),
    st.tuples(st.just('follow'), _stamp_lag),  # the arm reports the last emitted command
    st.tuples(st.just('state'), st.tuples(st.just('absolute'), st.lists(_wild, min_size=6, max_size=8)),
              _stamp_lag),
    st.tuples(st.just('state'), st.tuples(st.just('relative'), _offsets(0.05)), _stamp_lag),
    st.tuples(st.just('estop')),
    st.tuples(st.just('reset'), _stamp_lag),
)


def _resolve(spec, start):
    kind, value = spec
    return (start + value).tolist() if kind == 'relative' else value


@pytest.mark.parametrize('limits', [LIMITS, FAST], ids=['defaults', 'fast-no-box'])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=_start, events=st.lists(_event, min_size=1, max_size=80), late_start=st.booleans())
def test_every_emitted_command_is_safe(limits, start, events, late_start):
    f = make_filter(limits)
    change = limits.acceleration * DT * DT
    max_step = limits.velocity * DT
    now = 0.0
    measured = None  # last joint state the filter accepted
    emitted = None  # last position that went out (None before any, or after a reset)
    step = np.zeros(7)  # last motion step (zero after holds and resets)
    if not late_start:
        measured = start
        assert f.update_joint_state(measured, now)
    for event in events:
        kind = event[0]
        if kind in ('state', 'follow'):
            position = _resolve(event[1], start) if kind == 'state' else emitted
            if position is None:
                continue
            if f.update_joint_state(position, now + event[-1]):
                measured = np.array(position, dtype=float)
            continue
        if kind == 'estop':
            f.estop('test')
            continue
        if kind == 'reset':
            if f.reset(now_s=now + event[1]):
                emitted, step = None, np.zeros(7)
                assert not f.latched
            continue
        _, target, clock_step, lag = event
        latched = f.latched
        now += clock_step
        decision = f.command(_resolve(target, start), now + lag, now)
        if measured is None:
            assert decision.position is None and decision.status is SafetyStatus.NO_STATE
            continue
        assert decision.position is not None and np.all(np.isfinite(decision.position))
        reference = measured if emitted is None else emitted
        if latched:
            assert decision.status is SafetyStatus.ESTOP
        if not decision.moving:
            assert decision.status in (SafetyStatus.HOLD, SafetyStatus.ESTOP)
            assert np.array_equal(decision.position, reference), 'a hold repeats the last command'
            step = np.zeros(7)
        else:
            position = decision.position
            assert limits.within_positions(position), 'outside the position limits'
            new_step = position - reference
            assert np.all(np.abs(new_step) <= max_step + EPS), 'faster than the velocity limit'
            assert np.all(np.abs(new_step - step) <= change + EPS), 'beyond the acceleration limit'
            if limits.workspace_low is not None:
                tcp, _ = KIN.fk(position)
                low, high = limits.workspace_low - EPS, limits.workspace_high + EPS
                if not (np.all(tcp >= low) and np.all(tcp <= high)):
                    assert f._box_excess(position) <= f._box_excess(reference) + 1e-12, 'left the box'
            step = new_step
        emitted = decision.position.copy()


def test_multi_joint_moves_stay_on_the_joint_space_line():
    f = started()
    offset = np.array([0.3, -0.1, 0.2, 0.05, -0.25, 0.15, 0.4])
    decisions, _ = run_to(f, HOME + offset, 0.0, 400)
    direction = offset / np.linalg.norm(offset)
    for d in decisions:
        travelled = d.position - HOME
        along = travelled @ direction
        across = np.linalg.norm(travelled - along * direction)
        # on the line from the start to the target; in the last braking cycles, where each joint's
        # steps are quantised by the acceleration bound, within 0.2 mrad of it
        assert across < (1e-9 if along < 0.99 * np.linalg.norm(offset) else 2e-4)
    assert np.allclose(decisions[-1].position, HOME + offset, atol=1e-12)


def test_stamp_and_now_keywords_are_aliases():
    a, b = started(), started()
    one = a.command(HOME + 0.1, 0.01, 0.01)
    two = b.command(HOME + 0.1, stamp=0.01, now=0.01)
    assert one.status == two.status and np.array_equal(one.position, two.position)
