"""The policy node's decisions without ROS (legion_kuka.acting.PolicyRunner): when the arm gets an action
and when it holds."""
from __future__ import annotations

import numpy as np
import pytest

from legion_kuka.acting import PolicyRunner, file_stamp

STEP = {'task': 'reach-v3', 'sequence_id': 1, 'index': 0}


class FakePolicy:
    """A LEGION policy artefact: ``act(obs[None], task, deterministic)``; records what it saw."""

    def __init__(self, tasks=('reach-v3', 'push-v3'), layout='legion12', action=(0.5, -2.0, 0.0, 1.0)):
        self.tasks, self.layout, self.action = list(tasks), layout, action
        self.seen: list[tuple[np.ndarray, str, bool]] = []

    def act(self, obs, task, deterministic=True):
        self.seen.append((obs.copy(), task, deterministic))
        return np.array(self.action)


def legion(policy=None, **options) -> PolicyRunner:
    runner = PolicyRunner('legion', **options)
    assert runner.begin_load()
    runner.loaded(policy or FakePolicy(), '/ckpt', None)
    return runner


def test_acts_on_a_fresh_observation_and_clips_the_action():
    runner = legion(observation_timeout_s=0.5)
    runner.start_step(STEP)
    runner.observe(12, np.ones(12), source_ns=77, now_s=10.0)
    decision = runner.act(10.2)
    np.testing.assert_allclose(decision.action, [0.5, -1.0, 0.0, 1.0])
    assert decision.source_ns == 77 and decision.problem is None
    assert runner.policy.seen[-1][1:] == ('reach-v3', True)


def test_holds_without_step_or_fresh_observation():
    runner = legion(observation_timeout_s=0.5)
    runner.observe(12, np.ones(12), None, 10.0)
    assert runner.act(10.0).action is None  # no active step
    runner.start_step(STEP)
    assert runner.act(10.0).action is None  # the observation belonged to no step: forgotten
    runner.observe(39, np.ones(39), None, 10.0)
    assert runner.act(10.0).action is None  # not the layout the policy acts on
    runner.observe(12, np.ones(12), None, 10.0)
    assert runner.act(10.6).action is None  # stale
    assert runner.act(10.4).action is not None
    runner.start_step({'task': None})
    assert runner.act(10.4).action is None  # the sequence ended


def test_a_new_step_forgets_the_previous_steps_observation():
    runner = legion()
    runner.start_step(STEP)
    runner.observe(12, np.ones(12), None, 0.0)
    runner.start_step(STEP)  # the same step again (latched republish): the observation stays
    assert runner.act(0.0).action is not None
    runner.start_step({**STEP, 'index': 1})
    assert runner.act(0.0).action is None
    runner.observe(12, np.ones(12), None, 0.0)
    runner.start_step({**STEP, 'task': 'push-v3'})
    assert runner.act(0.0).action is None


def test_refuses_a_task_the_policy_has_not_learnt_and_says_so_once():
    runner = legion()
    runner.start_step({**STEP, 'task': 'door-open-v3'})
    runner.observe(12, np.ones(12), None, 0.0)
    first = runner.act(0.0)
    assert first.action is None and 'has not learnt door-open-v3' in first.problem
    assert runner.act(0.0).problem is None  # reported once, not at the policy rate
    runner.start_step(STEP)  # a learnt task acts again
    runner.observe(12, np.ones(12), None, 0.0)
    assert runner.act(0.0).action is not None


def test_no_policy_loaded_and_invalid_actions_are_problems():
    runner = PolicyRunner('legion')
    runner.start_step(STEP)
    runner.observe(12, np.ones(12), None, 0.0)
    assert runner.act(0.0).problem == 'no policy loaded yet'
    runner = legion(FakePolicy(action=(np.nan, 0, 0, 0)))
    runner.start_step(STEP)
    runner.observe(12, np.ones(12), None, 0.0)
    decision = runner.act(0.0)
    assert decision.action is None and 'invalid action' in decision.problem


def test_switches_policy_and_skill_with_the_active_step():
    runner = legion()
    for task in ('reach-v3', 'push-v3'):
        runner.start_step({**STEP, 'task': task})
        runner.observe(12, np.ones(12), None, 0.0)
        runner.act(0.0)
    assert [seen[1] for seen in runner.policy.seen] == ['reach-v3', 'push-v3']
    newer = FakePolicy(action=(0.0, 0.0, 0.1, 0.0))
    assert runner.begin_load() and not runner.begin_load()  # one load at a time
    runner.loaded(newer, '/ckpt2', None)
    np.testing.assert_allclose(runner.act(0.0).action, [0.0, 0.0, 0.1, 0.0])
    assert runner.begin_load()
    runner.loaded(None, '/broken', None)  # a failed load keeps the running policy
    assert runner.policy is newer and runner.policy_path == '/ckpt2'


def test_full39_policies_see_the_previous_policy_steps_frame():
    runner = legion(FakePolicy(layout='full39'))
    assert runner.observation_size() == 39
    runner.start_step(STEP)
    first, second = np.full(39, 1.0), np.full(39, 2.0)
    runner.observe(39, first, None, 0.0)
    runner.act(0.0)
    runner.observe(39, second, None, 0.0)
    runner.act(0.0)
    seen = [obs[0] for obs, _, _ in runner.policy.seen]
    np.testing.assert_allclose(seen[0][18:36], first[:18])  # the first stacks on itself
    np.testing.assert_allclose(seen[1][18:36], first[:18])  # then the frame of the last policy step


def test_experts_are_built_at_the_step_and_unknown_tasks_refused():
    built = []

    def make_expert(task):
        if task == 'nope-v3':
            raise KeyError(f'Meta-World has no scripted expert for {task!r}')
        built.append(task)
        return lambda obs: np.full(4, 0.25)

    runner = PolicyRunner('expert', make_expert=make_expert)
    assert runner.observation_size() == 39
    assert runner.start_step(STEP) is None and built == ['reach-v3']  # before the first cycle
    runner.observe(39, np.zeros(39), None, 0.0)
    np.testing.assert_allclose(runner.act(0.0).action, np.full(4, 0.25))
    assert 'no scripted expert' in runner.start_step({**STEP, 'task': 'nope-v3'})
    runner.observe(39, np.zeros(39), None, 0.0)
    assert runner.act(0.0).action is None


def test_the_expert_of_a_task_is_this_grippers_approach_where_there_is_one():
    from legion_kuka.acting import expert_for
    from legion_kuka.approaches import APPROACHES

    obs = np.zeros(39)
    obs[4:7] = (0.0, 0.6, 0.1)
    approach = expert_for('peg-unplug-side-v3')
    assert approach.__qualname__.startswith(APPROACHES['peg-unplug-side-v3'].__name__)
    assert np.asarray(approach(obs)).shape == (4,)
    assert np.asarray(expert_for('reach-v3')(obs)).shape == (4,)  # Meta-World's
    with pytest.raises(KeyError, match='no scripted expert'):
        expert_for('nope-v3')


def test_the_twins_demonstrations_come_from_an_expert_a_policy_of_the_observation_can_copy():
    # train.demo_episodes on the twin: the approach where Meta-World's expert fails through the twin
    # (door-open), Meta-World's stateless expert where it works and the approach counts steps
    # (peg-unplug-side).
    from legion_core.demos import expert
    from legion_kuka.approaches import APPROACHES

    obs = np.zeros(39)
    obs[4:7] = (0.0, 0.6, 0.1)
    door = expert('twin', 'door-open-v3')
    assert door.__qualname__.startswith(APPROACHES['door-open-v3'].__name__)
    peg = expert('twin', 'peg-unplug-side-v3')
    assert type(peg.__self__).__name__ == 'SawyerPegUnplugSideV3Policy'  # Meta-World's, no memory
    assert np.asarray(peg(obs)).shape == (4,)
    assert np.asarray(expert('kuka', 'peg-unplug-side-v3')(obs)).shape == (4,)


def test_a_rewritten_checkpoint_is_noticed_once(tmp_path):
    path = tmp_path / 'policy.pt'
    path.write_bytes(b'one')
    runner = PolicyRunner('legion')
    assert not runner.checkpoint_changed()  # nothing loaded
    runner.begin_load()
    runner.loaded(FakePolicy(), str(path), file_stamp(str(path)))
    assert not runner.checkpoint_changed()
    path.write_bytes(b'two, longer')
    assert runner.checkpoint_changed() and not runner.checkpoint_changed()
    with pytest.raises(ValueError):
        PolicyRunner('random')
