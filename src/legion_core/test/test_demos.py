"""Demonstrations (train.demo_episodes): a scripted expert's episodes in a buffer of their own, a share
of every update batch, kept across phases and checkpoints."""
import json

import pytest
import torch
from test_trainer import small_config

from legion_core.demos import demonstrate, expert, expert_factory
from legion_core.envs import TaskVectorEnv
from legion_core.replay import ReplayBuffer
from legion_core.tasks import resolve_stream
from legion_core.trainer import Trainer, resume_trainer

torch.set_num_threads(1)


def _buffer(capacity=1000):
    return ReplayBuffer(capacity, 12, 4, 2)


def test_the_sawyer_expert_demonstrates_reach_and_every_step_is_stored():
    env = TaskVectorEnv('reach-v3', 1, episode_length=60, goal='random', seed=3)
    buffer = _buffer()
    stats = demonstrate(env, expert('sawyer', 'reach-v3'), 3, 1, buffer.add)
    assert stats['episodes'] == 3 and stats['env_steps'] == 180 == len(buffer)
    assert stats['successes'] == 3  # Meta-World's expert reaches within 60 steps
    rows = buffer.storage
    assert (rows['task'][:180] == 1).all()
    assert rows['action'][:180].abs().max() <= 1.0
    # Inside an episode s' is the next row's s (the expert's own trajectory, in the agent's layout).
    assert torch.equal(rows['next_obs'][:59], rows['obs'][1:60])


def test_n_step_demonstrations_are_stored_as_the_training_loop_stores_them():
    env = TaskVectorEnv('reach-v3', 1, episode_length=20, seed=0)
    buffer = _buffer()
    stats = demonstrate(env, expert('sawyer', 'reach-v3'), 2, 0, buffer.add, n_step=3, gamma=0.9)
    assert stats['env_steps'] == 40 == len(buffer)  # every transition once, none across an episode
    horizon = buffer.storage['horizon'][:40]
    assert set(horizon.tolist()) == {1.0, 2.0, 3.0} and (horizon == 3).sum() == 36


@pytest.mark.parametrize('task', resolve_stream('legion10'))
def test_every_legion10_expert_demonstrates_though_some_edit_their_observation(task):
    # Meta-World's door-open expert shifts the door's position in the observation it is given: the
    # env's own observations are read-only, so it must get a copy (it crashed `legion bench solve`).
    env = TaskVectorEnv(task, 1, episode_length=5, seed=0)
    buffer = _buffer()
    assert demonstrate(env, expert('sawyer', task), 1, 0, buffer.add)['env_steps'] == 5 == len(buffer)


def test_an_embodiment_or_task_without_an_expert_is_a_clear_error():
    with pytest.raises(ValueError, match="embodiment 'mars-rover' has no scripted expert"):
        expert_factory('mars-rover')
    with pytest.raises(ValueError, match=r"no scripted expert of 'not-a-task-v3'.*demo_episodes=0"):
        expert('sawyer', 'not-a-task-v3')


def test_config_checks_the_demonstration_switches():
    from legion_core.config import validate

    assert any('train.demo_episodes must be an integer >= 0' in p
               for p in validate(small_config('train.demo_episodes=-1')))
    assert any('train.demo_ratio must be a share in [0, 1)' in p
               for p in validate(small_config('train.demo_ratio=1.0')))


def _recording_trainer(path, record, *overrides) -> Trainer:
    """A Sawyer trainer with two demonstrations per task whose every update is shown to ``record``
    (batch, clone) first."""
    cfg = small_config('env.embodiment=sawyer', 'train.demo_episodes=2', 'train.eval_every=0', *overrides)
    trainer = Trainer(cfg, path, progress=False)
    update = trainer.agent.update

    def recorded(batch, clone=False):
        record(batch, clone)
        return update(batch, clone)

    trainer.agent.update = recorded
    return trainer


def test_a_stream_with_demonstrations_learns_from_them_and_keeps_them(tmp_path):
    batches = []
    trainer = _recording_trainer(tmp_path / 'a', lambda batch, _clone: batches.append(
        (batch['task'].clone(), batch['demo'].clone())), 'train.demo_ratio=0.5')
    metrics = trainer.run()

    # Two episodes of 40 steps per task, counted in the run's env steps and apart.
    assert metrics['demo_env_steps'] == 160 and metrics['env_steps'] == 400 + 160
    assert [(d['task'], d['episodes'], d['env_steps']) for d in metrics['demonstrations']] == \
        [('reach-v3', 2, 80), ('push-v3', 2, 80)]
    assert len(trainer.demos) == 160 and len(trainer.replay) == 400
    on_disk = json.loads((tmp_path / 'a' / 'metrics.json').read_text())
    assert on_disk['demo_env_steps'] == 160
    # Half of every batch is demonstrations, of the task being learnt: reach's in phase 1, push's in
    # phase 2 (reach's stay in the buffer; its own replay rows still come up).
    assert all(len(task) == 32 and demo.sum() == 16 for task, demo in batches)
    first, last = batches[:50], batches[-50:]
    assert set(torch.cat([task[demo] for task, demo in first]).tolist()) == {0}
    assert set(torch.cat([task[demo] for task, demo in last]).tolist()) == {1}
    assert set(torch.cat([task[~demo] for task, demo in last]).tolist()) == {0, 1}

    # The checkpoint keeps them: a resumed run does not demonstrate again.
    resumed = resume_trainer(tmp_path / 'a', progress=False)
    assert len(resumed.demos) == 160
    assert torch.equal(resumed.demos.storage['obs'][:160], trainer.demos.storage['obs'][:160])
    assert resumed.metrics()['demo_env_steps'] == 160


def test_demonstrations_switched_on_at_resume_cover_the_tasks_seen(tmp_path):
    trainer = Trainer(small_config('train.eval_every=0'), tmp_path, progress=False)
    trainer.run(max_env_steps=250)  # into phase 2 (push), without demonstrations
    cfg = small_config('train.eval_every=0', 'train.demo_episodes=1')
    resumed = Trainer(cfg, tmp_path, progress=False)
    from legion_core.checkpoint import load_checkpoint

    resumed.load_state_dict(load_checkpoint(tmp_path / 'checkpoints' / 'last.pt'))
    metrics = resumed.run()
    assert [d['task'] for d in metrics['demonstrations']] == ['reach-v3', 'push-v3']
    assert metrics['demo_env_steps'] == 80 and len(resumed.demos) == 80


def test_no_demonstrations_by_default_and_batches_come_from_the_replay(tmp_path):
    trainer = Trainer(small_config('train.eval_every=0'), tmp_path, progress=False)
    assert trainer.demos is None
    metrics = trainer.run(max_env_steps=100, checkpoint_at_stop=False)
    assert metrics['demo_env_steps'] == 0 and metrics['demonstrations'] == []
    assert len(trainer._batch(32)['task']) == 32


def test_demo_bc_pulls_the_actor_to_the_demonstrated_actions_and_ignores_other_rows():
    from test_agent import B, make_agent, make_batch

    target = torch.tensor([0.8, -0.6, 0.5, 0.7])

    def batch(i, demo):
        b = make_batch(i, task=0)
        b['reward'] = torch.zeros(B)  # no reward: only the cloning can move the actor towards the target
        b['action'][: B // 2] = target
        b['demo'] = torch.arange(B) < B // 2 if demo else torch.zeros(B, dtype=torch.bool)
        return b

    def mean_action(weight, demo):
        agent = make_agent(demo_bc=weight)
        for i in range(300):
            agent.update(batch(i, demo))
        return torch.as_tensor(agent.act(make_batch(999)['obs'].numpy(), 0, deterministic=True)).mean(0)

    cloned = mean_action(5.0, demo=True)
    assert (cloned - target).abs().max() < 0.25
    # Without the weight, or without demonstration rows, nothing pulls the actor there.
    for weight, demo in ((0.0, True), (5.0, False)):
        assert (mean_action(weight, demo) - target).abs().max() > 0.4


def test_cloning_updates_copy_the_demonstrated_action_and_leave_the_temperature():
    from test_agent import B, make_agent, make_batch

    target = torch.tensor([0.8, -0.6, 0.5, 0.7])
    agent = make_agent()
    alpha = agent.log_alpha.detach().clone()
    for i in range(600):
        b = make_batch(i, task=0)
        b['reward'] = torch.zeros(B)  # the critic rates nothing: cloning alone moves the actor
        b['action'][:] = target
        b['demo'] = torch.ones(B, dtype=torch.bool)
        agent.update(b, clone=True)
    action = torch.as_tensor(agent.act(make_batch(999)['obs'].numpy(), 0, deterministic=True))
    assert (action - target).abs().max() < 0.15  # from about 0 at the start
    assert torch.equal(agent.log_alpha.detach(), alpha)
    assert agent.num_updates == 600  # the critics learnt on every one of them


def test_demo_pretrain_clones_each_phase_once_before_its_first_step_and_skips_warm_up(tmp_path):
    calls = []
    trainer = _recording_trainer(tmp_path / 'a', lambda batch, clone: calls.append(
        (clone, len(trainer.replay), batch['task'][batch['demo']].unique().tolist())),
        'train.demo_pretrain=30')
    metrics = trainer.run()

    clones = [i for i, call in enumerate(calls) if call[0]]
    # 30 cloning updates per phase, each before any of the phase's own steps: reach's on an empty replay
    # (the whole batch demonstrations), push's after reach's 200 steps, on push's demonstrations.
    assert len(clones) == 60 and clones[:30] == list(range(30))
    assert all(call[1] == 0 and call[2] == [0] for call in calls[:30])
    second = calls[clones[30]:clones[-1] + 1]
    assert all(call[0] and call[1] == 200 and call[2] == [1] for call in second)
    # No random warm-up after cloning: online updates start as soon as the replay fills a batch.
    assert sum(not call[0] for call in calls) > 2 * 200 - 2 * 32 - 10
    assert trainer.position['pretrained'] == [0, 1]
    assert metrics['env_steps'] == 400 + 160
    # Resumed at the end, nothing is cloned again.
    resumed = resume_trainer(tmp_path / 'a', progress=False)
    assert resumed.position['pretrained'] == [0, 1]


def test_the_policy_average_starts_from_the_cloned_actor(tmp_path):
    cloned = []
    trainer = _recording_trainer(tmp_path, lambda batch, clone: cloned.append(clone),
                                 'train.demo_pretrain=30', 'agent.policy_average=0.999')
    trainer.run(max_env_steps=1)  # the demonstrations, the cloning, then one env step
    assert cloned == [True] * 30  # no online update yet (the replay holds less than a batch)
    live = trainer.agent._live_policy().state_dict()
    for name, value in trainer.agent.average.state_dict().items():
        assert torch.equal(value, live[name])


def test_demo_pretrain_needs_demonstrations():
    from legion_core.config import validate

    assert any('train.demo_pretrain clones demonstrations: it needs train.demo_episodes > 0' in p
               for p in validate(small_config('train.demo_pretrain=10')))
    assert any('train.demo_pretrain must be an integer >= 0' in p
               for p in validate(small_config('train.demo_episodes=1', 'train.demo_pretrain=-3')))


def test_the_q_filter_can_be_switched_off_so_every_demonstration_row_pulls():
    from test_agent import make_agent

    demo = torch.tensor([True, True, False])
    action, pi_mean = torch.full((3, 4), 0.5), torch.zeros(3, 4)
    q_pi, q_demo = torch.full((3,), 10.0), torch.full((3,), 5.0)  # the critic rates the actor higher
    filtered = make_agent(demo_bc=1.0)._demo_cloning(demo, action, pi_mean, q_pi, q_demo)
    assert torch.equal(filtered, torch.zeros(3))
    always = make_agent(demo_bc=1.0, demo_q_filter=False)._demo_cloning(demo, action, pi_mean, q_pi, q_demo)
    assert torch.allclose(always, torch.tensor([10.0, 10.0, 0.0]))  # 1 x mean|Q| x 4 x 0.5^2


def test_a_run_stopped_by_its_demonstrations_evaluates_the_phase_start_once(tmp_path):
    # legion bench solve advances a trainer an evaluation interval at a time; demonstrations longer
    # than that interval had made the phase-start evaluation twice, and two equal points "solved".
    cfg = small_config('env.embodiment=sawyer', 'train.demo_episodes=2', 'train.eval_every=100')
    trainer = Trainer(cfg, tmp_path, progress=False)
    trainer.run(max_env_steps=50, checkpoint_at_stop=False)  # the 80 demonstration steps end it
    trainer.run(max_env_steps=150, checkpoint_at_stop=False)
    rows = [json.loads(line) for line in (tmp_path / 'evals.jsonl').read_text().splitlines()]
    steps = [row['env_steps'] for row in rows if row['task'] == 'reach-v3']
    assert steps == [80, 180]


def test_legion_bench_solve_goes_on_when_the_demonstrations_outlast_an_interval(tmp_path):
    from legion_core.cli.bench_solve import Ours

    cfg = small_config('env.embodiment=sawyer', 'train.demo_episodes=2', 'train.eval_every=50',
                       'stream.tasks=[reach-v3]')  # the bench trains one task a run
    ours = Ours(cfg, tmp_path, progress=False)
    try:
        assert ours.advance(50) == []  # the 80 demonstration steps: nothing evaluated yet
        assert [step for step, _ in ours.advance(50)] == [80, 130]
    finally:
        ours.close()


def test_demonstrations_and_training_carry_the_success_bonus(tmp_path):
    trainer = Trainer(small_config('env.embodiment=sawyer', 'train.demo_episodes=2', 'train.eval_every=0',
                                   'env.success_bonus=100'), tmp_path, progress=False)
    trainer.run(max_env_steps=120)  # reach's two expert episodes and 40 steps of its own
    demo_rewards = trainer.demos.storage['reward'][:len(trainer.demos)]
    assert demo_rewards.max() >= 100  # the expert reaches: its solved steps are paid the bonus
    assert demo_rewards.min() < 10  # and its first steps are not
    assert trainer.env_kwargs['success_bonus'] == 100.0  # what the training and evaluation envs get
