"""Sim2Real: displacement, speed scaling, hand box, interpolation, streaming, failure handling."""
import math

import numpy as np
import pytest

from legion_kuka.description import HOME
from legion_kuka.frames import default_task_frame
from legion_kuka.gripper import MetaworldFinger
from legion_kuka.kinematics import IiwaKinematics
from legion_kuka.sim2real import Sim2Real

KIN = IiwaKinematics(tool='tcp')
TO_TASK = default_task_frame().inverse()


def hand(q):
    return TO_TASK.apply(KIN.fk(q)[0])


def test_one_step_reaches_the_commanded_displacement():
    s2r = Sim2Real(KIN, control_rate_hz=100, policy_rate_hz=10, hand_response='direct')
    s2r.reset(HOME)
    start = hand(HOME)
    plan = s2r.plan([1.0, -0.5, 0.25, 0.3], HOME)
    assert plan.targets.shape == (10, 7) and plan.ik_success and not plan.clipped
    assert plan.gripper == pytest.approx(0.3)
    # The gripper is time-scaled like the arm: where Meta-World's finger is after one env step (not the
    # action, which the gripper would reach within the policy step, 8 env steps' time at 10 Hz).
    finger = MetaworldFinger()
    assert plan.gripper_command == pytest.approx(finger.step(0.3)) and 0 < plan.gripper_command < 1e-3
    assert np.allclose(hand(plan.targets[-1]), start + np.array([0.01, -0.005, 0.0025]), atol=2e-4)
    assert np.allclose(plan.hand_target, start + np.array([0.01, -0.005, 0.0025]), atol=1e-12)
    # The tool keeps the orientation it had at reset (Meta-World's fixed hand orientation).
    assert np.allclose(KIN.fk(plan.targets[-1])[1], KIN.fk(HOME)[1], atol=2e-3)
    # Successive steps accumulate like Meta-World's mocap target.
    plan = s2r.plan([1.0, 0.0, 0.0, 0.0], plan.targets[-1])
    assert np.allclose(hand(plan.targets[-1]), start + np.array([0.02, -0.005, 0.0025]), atol=3e-4)


@pytest.mark.parametrize('hand_response', ['metaworld', 'direct'])
@pytest.mark.parametrize(('policy_rate_hz', 'axis_speed'), [(10.0, 0.1), (5.0, 0.05), (20.0, 0.2)])
def test_speed_scaling_bounds_the_cartesian_speed(policy_rate_hz, axis_speed, hand_response):
    s2r = Sim2Real(KIN, control_rate_hz=100, policy_rate_hz=policy_rate_hz, hand_response=hand_response)
    assert s2r.max_axis_speed_m_s == pytest.approx(axis_speed)
    s2r.reset(HOME)
    q = np.asarray(HOME)
    previous = hand(q)
    speeds = []
    rng = np.random.default_rng(0)
    actions = [[1, 0.5, -0.5, 0]] * 15 + [list(rng.uniform(-1, 1, 4)) for _ in range(10)]
    for action in actions:
        plan = s2r.plan(action, q)
        for target in plan.targets:
            point = hand(target)
            speeds.append(np.abs(point - previous) / s2r.control_period_s)
            previous = point
        q = plan.targets[-1]
    speeds = np.asarray(speeds)
    # Full-speed steps move every axis at (nearly exactly) the scaled speed, never faster (Meta-World's
    # hand comes up to that speed over a few steps, without overshoot).
    assert speeds.max() <= axis_speed * 1.05
    assert speeds[:15 * s2r.cycles_per_step].max() >= axis_speed * 0.9


def test_the_gripper_command_follows_meta_worlds_finger_across_steps_and_resets():
    s2r = Sim2Real(KIN, policy_rate_hz=10)
    s2r.reset(HOME)
    finger = MetaworldFinger()
    commands = [s2r.plan([0.0, 0.0, 0.0, 1.0], HOME).gripper_command for _ in range(14)]
    assert commands == pytest.approx([finger.step(1.0) for _ in range(14)])
    assert commands[-1] > 0.035 and s2r.gripper_closing == commands[-1]  # closed in about 14 steps
    s2r.reset(HOME)  # an episode start: open, at rest
    assert s2r.plan([0.0, 0.0, 0.0, 1.0], HOME).gripper_command == pytest.approx(MetaworldFinger().step(1.0))
    s2r.reset(HOME, gripper_closing=0.03)  # re-anchored with the fingers where they were
    assert s2r.plan([0.0, 0.0, 0.0, 0.03], HOME).gripper_command == pytest.approx(0.03)


def test_speed_scale_and_rates_are_consistent():
    s2r = Sim2Real(KIN, speed_scale=0.125)  # 1/8 of Meta-World's 80 Hz: 10 Hz
    assert s2r.policy_rate_hz == pytest.approx(10.0)
    assert s2r.cycles_per_step == 10 and s2r.policy_period_s == pytest.approx(0.1)
    assert s2r.speed_scale == pytest.approx(0.125)
    with pytest.raises(ValueError, match='not both'):
        Sim2Real(KIN, speed_scale=0.1, policy_rate_hz=10)
    with pytest.raises(ValueError, match='whole number'):
        Sim2Real(KIN, control_rate_hz=100, policy_rate_hz=30)
    with pytest.raises(ValueError, match='whole number'):
        Sim2Real(KIN, control_rate_hz=10, policy_rate_hz=20)
    with pytest.raises(ValueError, match='speed_scale'):
        Sim2Real(KIN, speed_scale=2.0)
    with pytest.raises(ValueError, match='hand_low'):
        Sim2Real(KIN, hand_low=(0, 0, 1), hand_high=(1, 1, 0))


def test_hand_target_is_clipped_to_the_hand_box():
    low, high = np.array([-0.2, 0.55, 0.05]), np.array([0.2, 0.75, 0.3])
    s2r = Sim2Real(KIN, hand_low=low, hand_high=high, hand_response='direct')
    s2r.reset(HOME)
    q = np.asarray(HOME)
    clipped = []
    for _ in range(20):
        plan = s2r.plan([0.0, 0.0, 1.0, 0.0], q)
        q = plan.targets[-1]
        clipped.append(plan.clipped)
    assert plan.hand_target[2] == pytest.approx(high[2])
    assert hand(q)[2] == pytest.approx(high[2], abs=2e-4)
    assert clipped[0] is False and clipped[-1] is True


def test_metaworld_response_is_the_kuka_envs_hand_response():
    # The constants predict the Meta-World KUKA env's next hand position from its mocap target, as
    # measured again here on free-space motion (the model the arm follows under hand_response='metaworld').
    from legion_kuka.metaworld_kuka import make_kuka_env
    from legion_kuka.sim2real import METAWORLD_HAND_RESPONSE

    a, b, c = METAWORLD_HAND_RESPONSE
    env = make_kuka_env('reach-v3', 0)
    mocap = env.unwrapped.data.mocap_pos
    rng = np.random.default_rng(0)
    errors, moves = [], []
    obs, _ = env.reset()
    x_before, x, m = obs[:3].copy(), obs[:3].copy(), mocap[0].copy()
    for t in range(120):
        action = rng.uniform(-1, 1, 3) if t % 4 == 0 else action  # noqa: F821 - set at t = 0
        action = np.where(np.abs(m - [0.0, 0.65, 0.2]) > [0.12, 0.08, 0.07], -np.sign(m - [0.0, 0.65, 0.2]),
                          action)  # keep clear of the puck, the table and the box
        obs, *_ = env.step(np.append(action, 0.0))
        m_next = mocap[0].copy()
        predicted = x + a * (x - x_before) + b * (m_next - x) + c * (m - x)
        errors.append(np.linalg.norm(predicted - obs[:3]))
        moves.append(np.linalg.norm(obs[:3] - x))
        x_before, x, m = x, obs[:3].copy(), m_next
    assert np.median(moves) > 5e-3  # the hand does move
    assert np.median(errors) < 2e-4 and max(errors) < 1e-3


def test_metaworld_response_follows_the_target_with_the_kuka_envs_lag():
    s2r = Sim2Real(KIN)  # hand_response='metaworld'
    s2r.reset(HOME)
    q, start, y = np.asarray(HOME), hand(HOME), []
    for _ in range(14):  # 14 cm along task +y, inside the hand box
        plan = s2r.plan([0.0, 1.0, 0.0, 0.0], q)
        q = plan.targets[-1]  # an arm that tracks its targets
        y.append(hand(q)[1] - start[1])
    steps = np.diff([0.0, *y])
    # Meta-World's hand: 1.6 mm in the first step, then up to the mocap's 1 cm a step, never beyond,
    # trailing its target by about 2.7 steps (the env: 0.6, 4.0, 5.8 mm, ..., lag 27 mm).
    assert steps[0] == pytest.approx(0.0016, abs=2e-4)
    assert np.all(np.diff(steps) > -1e-4) and steps.max() <= 0.0101
    assert plan.hand_target[1] - start[1] == pytest.approx(0.14, abs=1e-9)
    assert plan.hand_target[1] - start[1] - y[-1] == pytest.approx(0.027, abs=2e-3)
    for _ in range(25):  # stop: the hand settles on the target
        plan = s2r.plan([0.0, 0.0, 0.0, 0.0], q)
        q = plan.targets[-1]
    assert np.allclose(hand(q), plan.hand_target, atol=2e-4)
    with pytest.raises(ValueError, match='hand_response'):
        Sim2Real(KIN, hand_response='instant')


def test_streaming_targets_follow_the_plan():
    s2r = Sim2Real(KIN, control_rate_hz=100, policy_rate_hz=10)
    s2r.reset(HOME, now=1.0)
    assert np.allclose(s2r.next_target(1.0), HOME)
    plan = s2r.plan([0.0, 1.0, 0.0, 0.0], HOME, now=2.0)
    for k in range(10):
        assert np.allclose(s2r.next_target(2.0 + k * 0.01), plan.targets[k])
    assert np.allclose(s2r.next_target(5.0), plan.targets[-1])  # held after the step
    assert np.allclose(s2r.next_target(1.99), HOME)  # before the step: where it starts
    # Without an explicit time the next step starts right after this one.
    nxt = s2r.plan([0.0, 1.0, 0.0, 0.0], plan.targets[-1])
    assert nxt.start_s == pytest.approx(2.1)
    # Joint targets are continuous: the first of a step is one interpolation point from the last.
    assert np.abs(nxt.targets[0] - plan.targets[-1]).max() < np.abs(plan.targets[-1] - HOME).max()


def test_hand_target_stays_close_to_a_held_arm():
    s2r = Sim2Real(KIN, max_lead_m=0.03)
    s2r.reset(HOME)
    for _ in range(10):  # the arm does not follow (e.g. the safety filter holds it)
        plan = s2r.plan([1.0, 0.0, 0.0, 0.0], HOME)
    assert np.linalg.norm(plan.hand_target - hand(HOME)) == pytest.approx(0.03, abs=1e-9)
    assert plan.clipped


@pytest.mark.parametrize('max_tilt', [0.0, math.radians(10.0)])
def test_unreachable_target_goes_as_far_as_the_arm_reaches_then_holds(max_tilt):
    s2r = Sim2Real(KIN, hand_low=(-2, -2, -2), hand_high=(2, 2, 2), max_lead_m=10.0,
                   max_tool_tilt_rad=max_tilt)
    s2r.reset(HOME)
    q = np.asarray(HOME)
    plans = []
    for _ in range(120):  # 1.2 m further out along Meta-World's y: beyond the iiwa's 0.8 m reach
        plan = s2r.plan([0.0, 1.0, 0.0, 0.0], q)
        plans.append(plan)
        q = plan.targets[-1]
    assert not plans[-1].ik_success
    assert np.allclose(plans[-1].targets, plans[-2].targets[-1][None, :], atol=1e-6)  # stretched: holds
    reach = hand(q)[1] - hand(HOME)[1]
    assert 0.1 < reach < 1.2  # it got out as far as it could, not to the target
    for plan in plans:
        assert np.all(np.isfinite(plan.targets))
        assert np.all(plan.targets >= KIN.lower) and np.all(plan.targets <= KIN.upper)
        # the tool tilts no further than allowed on the way (near full reach a tilt reaches further)
        assert plan.tool_tilt_rad <= max_tilt + 0.01
        assert tool_tilt(plan.targets[-1]) == pytest.approx(plan.tool_tilt_rad, abs=1e-6)


def tool_tilt(q):
    cosine = (np.trace(KIN.fk(HOME)[1].T @ KIN.fk(q)[1]) - 1.0) / 2.0
    return math.acos(min(1.0, cosine))


def test_tool_tilts_where_the_upright_tool_would_need_the_elbow_beyond_its_limits():
    # Meta-World's drawer tasks put the hand 0.40 m from the base axis, low over the table: with the
    # tool straight down the elbow (A4) would need about 118 deg, beyond a planner that keeps 5.5 deg
    # inside the 120 deg limit. Nothing but the tool's tilt changes A4 there (the wrist stands above
    # the tool), so sim2real tilts it by as little as reaches, and goes back upright further out.
    from dataclasses import replace

    from legion_kuka.description import IIWA7

    inner = tuple(v - math.radians(5.5) for v in IIWA7.position_limits)
    planner = IiwaKinematics(tool='tcp', datasheet=replace(IIWA7, position_limits=inner))
    start = np.radians([8.0, 14.0, 4.0, -110.0, -1.0, 54.0, -78.0])
    low = np.array([0.405, 0.083, 0.15])  # base frame
    assert not planner.ik(low, start).success  # upright: out of the limits
    results = {}
    for max_tilt in (0.0, math.radians(10.0)):
        # (1 m per unit action: one step gets there from the start posture)
        s2r = Sim2Real(planner, hand_low=(-2, -2, -2), hand_high=(2, 2, 2), max_lead_m=10.0,
                       action_scale=1.0, max_tool_tilt_rad=max_tilt, hand_response='direct')
        s2r.reset(start)
        action = np.append(TO_TASK.apply(low) - s2r.hand_target, 0.0)
        assert np.abs(action).max() <= 1.0
        results[max_tilt] = s2r.plan(action, start)
    assert not results[0.0].ik_success  # the fixed tool orientation cannot get there
    tilted = results[math.radians(10.0)]
    assert tilted.ik_success
    assert 0.0 < tilted.tool_tilt_rad <= math.radians(10.0) + 1e-9
    q = tilted.targets[-1]
    assert np.all(q >= planner.lower) and np.all(q <= planner.upper)
    assert np.linalg.norm(planner.fk(q)[0] - low) < 0.005
    # further out the upright tool reaches again: the next step goes back upright
    out = s2r.plan([0.0, 0.1, 0.0, 0.0], q)  # task +y: 10 cm away from the base
    assert out.ik_success and out.tool_tilt_rad < 1e-3


def test_bad_input_gives_a_clear_error():
    s2r = Sim2Real(KIN)
    with pytest.raises(RuntimeError, match='reset'):
        s2r.plan([0, 0, 0, 0], HOME)
    s2r.reset(HOME)
    with pytest.raises(ValueError, match='action contains NaN'):
        s2r.plan([0, math.nan, 0, 0], HOME)
    with pytest.raises(ValueError, match=r'action must have shape \(4,\)'):
        s2r.plan([0, 0, 0], HOME)
    with pytest.raises(ValueError, match='joint_positions'):
        s2r.plan([0, 0, 0, 0], HOME[:6])
    with pytest.raises(TypeError, match='kinematics must provide'):
        Sim2Real(object())
    # Actions outside [-1, 1] are clipped like Meta-World's, not extrapolated.
    big = s2r.plan([5.0, 0, 0, -3.0], HOME)
    assert big.gripper == -1.0
    assert np.allclose(big.hand_target, hand(HOME) + np.array([0.01, 0, 0]), atol=1e-12)


def test_the_ik_leans_towards_the_rest_posture_of_the_current_station():
    # A workcell station turned about A1 sees the arm as the station ahead does; one kinematics shared
    # by the planners of successive stations (the sim2real node's) follows the current one.
    from legion_kuka.frames import Frame
    from legion_kuka.sim2real import station_yaw

    left = Frame(np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), np.zeros(3)).compose(
        default_task_frame())
    assert station_yaw(left) == pytest.approx(math.pi / 2)
    assert station_yaw(default_task_frame()) == pytest.approx(0.0)
    shared, fresh = IiwaKinematics(tool='tcp'), IiwaKinematics(tool='tcp')
    Sim2Real(shared, task_frame=left)
    assert shared.rest[0] == pytest.approx(fresh.rest[0] + math.pi / 2)
    assert np.allclose(shared.rest[1:], fresh.rest[1:])
    Sim2Real(shared, task_frame=default_task_frame())
    assert np.allclose(shared.rest, fresh.rest)
    assert np.allclose(shared.restart_postures, fresh.restart_postures)
