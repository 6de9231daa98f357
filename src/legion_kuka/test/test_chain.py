"""The policy → arm chain without ROS: real2sim → policy → sim2real → safety filter → twin."""
import math

import numpy as np
import pytest

from legion_kuka.chain import ChainRunner, expert_policy, run_expert_through_twin


def reach_goal(obs12: np.ndarray) -> np.ndarray:
    """A legion12 policy: proportional steps of the hand towards the goal (like Meta-World's reach expert)."""
    return np.append(np.clip(25.0 * (obs12[9:12] - obs12[0:3]), -1.0, 1.0), -1.0)


def test_expert_solves_reach_through_the_twin():
    assert run_expert_through_twin('reach-v3', episodes=2, seed=0, max_steps=150) == 1.0


def test_legion12_policy_through_the_chain_respects_speed_scaling():
    runner = ChainRunner(reach_goal, 'reach-v3', seed=3, layout='legion12', policy_rate_hz=10.0, safety=False)
    observation = runner.observe()
    assert observation.shape == (12,)
    assert np.allclose(observation[9:12], runner.twin.metaworld_observation()[36:39])
    result = runner.episode()
    assert result.success and result.ik_failures == 0
    # At most 1 cm per 100 ms step per axis: |v| <= sqrt(3) * 0.1 m/s (plus the servo's transients).
    assert result.max_hand_speed_m_s <= math.sqrt(3) * 0.1 * 1.15
    assert result.sim_time_s == pytest.approx(result.steps * 0.1)
    slow = ChainRunner(reach_goal, 'reach-v3', seed=3, policy_rate_hz=5.0, safety=False,
                       twin=runner.twin).episode()
    assert slow.success
    assert slow.max_hand_speed_m_s < 0.6 * result.max_hand_speed_m_s
    assert slow.sim_time_s > 1.5 * result.sim_time_s


def test_safety_filter_bounds_the_joint_speeds_in_the_chain():
    runner = ChainRunner(reach_goal, 'reach-v3', seed=3, policy_rate_hz=10.0)
    result = runner.episode()
    assert result.success
    assert result.safety_interventions > 0  # 10 % of the datasheet velocities: the filter is binding
    assert np.all(result.max_joint_speed <= runner.safety_limits.velocity * 1.1)


def test_safety_workspace_covers_the_task_hand_box():
    runner = ChainRunner(reach_goal, 'reach-v3', seed=0)
    low, high = runner.safety_limits.workspace_low, runner.safety_limits.workspace_high
    frame = runner.twin.station_frame()
    corners = [[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    hand_low, hand_high = runner.twin.hand_low, runner.twin.hand_high
    for corner in np.asarray(corners, dtype=float):
        hand = frame.apply(hand_low + corner * (hand_high - hand_low))
        tcp = hand - [0.0, 0.0, 0.105 - runner.twin.hand_offset]  # the tool points down
        assert np.all(tcp >= low) and np.all(tcp <= high)
    assert low[2] > -0.01  # the floor keeps the fingers off the table


def test_an_arm_reset_at_its_limits_starts_inside_the_safety_limits():
    # Meta-World's button-press-topdown starts the hand where the iiwa (tool down) reaches only at its
    # joint limits; the filter would not move it, so the chain starts from the closest posture inside.
    runner = ChainRunner(reach_goal, 'button-press-topdown-v3', seed=0, max_steps=1)
    runner.episode()
    q = runner.twin.joint_state().position
    assert runner.safety_limits.within_positions(q, tol=1e-3)


def test_drawer_close_expert_reaches_the_drawer_inside_the_safety_limits():
    # The expert lowers the hand 0.40 m from the base axis, where the upright tool needs the elbow at
    # ~118 deg, beyond the filter's 115: sim2real tilts the tool instead (it used to hold there, 0/3).
    runner = ChainRunner(expert_policy('drawer-close-v3'), 'drawer-close-v3', seed=0, layout='full39')
    result = runner.episode()
    assert result.success and result.ik_failures == 0
    assert 0.0 < result.max_tool_tilt_rad <= math.radians(10.0) + 1e-9
    assert 'position_limit' not in result.safety_reasons and not runner.safety.latched


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='no scripted expert'):
        expert_policy('reach-v9')
    with pytest.raises(TypeError, match='callable'):
        ChainRunner('reach the goal', 'reach-v3')
    with pytest.raises(RuntimeError, match='no policy'):
        ChainRunner(None, 'reach-v3').episode()
    with pytest.raises(ValueError, match='max_steps'):
        ChainRunner(reach_goal, 'reach-v3', max_steps=0)


@pytest.mark.slow
@pytest.mark.parametrize('task', ['push-v3', 'pick-place-v3', 'faucet-open-v3', 'button-press-topdown-v3',
                                  'window-open-v3', 'window-close-v3', 'drawer-close-v3'])
def test_experts_solve_legion10_tasks_through_the_twin(task):
    # Measured with the default chain (10 Hz, stiff arm, default safety limits), seeds 0-4: these
    # 5/5 (and reach, above); door-open 0/5 (see legion_kuka.chain's module docstring); peg-unplug-side
    # with this gripper's approach below.
    assert run_expert_through_twin(task, episodes=3, seed=0) >= 2 / 3


def test_the_twins_hand_moves_as_the_training_envs_hand_for_the_same_actions():
    # What a policy learnt: the hand of the Meta-World KUKA env under its actions. Through sim2real
    # (hand_response='metaworld') the twin's joint-servoed arm repeats that motion to a millimetre or two;
    # a hand that reaches each target within the step ('direct') drifts centimetres from it.
    from legion_kuka.metaworld_kuka import make_kuka_env

    rng = np.random.default_rng(0)
    actions = np.repeat(np.c_[rng.uniform(-1, 1, (8, 3)), np.zeros(8)], 5, axis=0)
    env = make_kuka_env('reach-v3', 0)
    obs, _ = env.reset()
    trained = [obs[:3].copy()]
    for action in actions:
        obs, *_ = env.step(action)
        trained.append(obs[:3].copy())
    errors = {}
    for response in ('metaworld', 'direct'):
        seen, replay = [], iter(actions)

        def policy(observation, seen=seen, replay=replay):
            seen.append(np.array(observation[:3]))
            return next(replay, np.zeros(4))

        runner = ChainRunner(policy, 'reach-v3', seed=0, layout='full39', safety=False, stop_on_success=False,
                             max_steps=len(actions) + 1)
        runner.sim2real.hand_response = response
        runner.episode(0)
        errors[response] = np.linalg.norm(np.array(seen) - np.array(trained), axis=1).max()
    assert errors['metaworld'] < 0.003
    assert errors['direct'] > 0.01


def test_a_latched_safety_filter_ends_the_episode_unsuccessful():
    import mujoco

    steps = []

    def policy(obs):
        steps.append(obs)
        if len(steps) == 3:  # a collision: A2 knocked 0.3 rad off the commanded path
            runner.twin.data.qpos[runner.twin._qadr[1]] += 0.3
            mujoco.mj_forward(runner.twin.model, runner.twin.data)
        return np.array([0.0, 0.5, 0.0, 0.0])

    runner = ChainRunner(policy, 'reach-v3', seed=0, layout='full39')
    result = runner.episode()
    assert result.estop_reasons == ('tracking_error',)
    assert result.steps == 3 and len(steps) == 3  # the arm stands: no more policy steps
    assert not result.success


@pytest.mark.slow
def test_peg_unplug_side_unplugs_through_the_twin_with_the_approach_and_with_meta_worlds_expert():
    # The approach of legion_kuka.approaches aligns, comes down open, grips with the default force and
    # pulls: 20/20 over seeds 0-19. Meta-World's expert, stateless and what the twin's demonstrations of
    # this task come from, 19/20 since the socket's firm fit (0/10 in Meta-World's 2,700 N press).
    assert run_expert_through_twin('peg-unplug-side-v3', episodes=3, seed=0) == 1.0
    assert run_expert_through_twin('peg-unplug-side-v3', episodes=3, seed=0, gripper_approaches=False) == 1.0


def _door_open_episode(seed):
    from legion_kuka.approaches import door_open

    policy, phases = door_open(), []

    def logged(obs):
        action = policy(obs)
        phases.append(policy.phase)
        return action

    return ChainRunner(logged, 'door-open-v3', seed=seed, layout='full39').episode(), phases


def test_the_door_open_approach_opens_the_door_within_metaworlds_150_steps():
    # Goal variant 8 is the slowest of 0-9 (first success at step 145, docs/experts.md): the approach
    # for this gripper hooks the bar, pulls it, crosses over the panel's top and pushes the panel's back,
    # inside the safety filter's limits.
    result, phases = _door_open_episode(8)
    assert result.success and result.first_success_step <= 150
    assert not result.estop_reasons and result.ik_failures == 0
    assert result.max_tool_tilt_rad < math.radians(0.1)
    assert 'position_limit' not in result.safety_reasons
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [
        'over_hook', 'down_hook', 'pull', 'over_push', 'push']


@pytest.mark.slow
def test_the_door_open_approach_succeeds_in_every_goal_variant_within_150_steps():
    # seeds 0-9: first success at steps 129-145 (before the crossing was reworked: 5/10, 141-158)
    assert run_expert_through_twin('door-open-v3', episodes=10, seed=0) >= 0.9
