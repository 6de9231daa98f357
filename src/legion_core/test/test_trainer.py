"""The training loops end to end on real Meta-World tasks, with small networks and few steps."""
import json

import numpy as np
import pytest
import torch

from legion_core.config import compose_config, to_container
from legion_core.trainer import Trainer

torch.set_num_threads(1)  # shared test machines: one thread avoids OpenMP spin contention

SMALL = [
    'stream.tasks=[reach-v3,push-v3]', 'stream.name=small', 'device=cpu',
    'agent.vae_hidden=32', 'agent.actor_hidden=32', 'agent.critic_hidden=32', 'agent.batch_size=32',
    'agent.vae_update_every=10', 'agent.num_threads=1',
    'dpmm.start=100', 'dpmm.every=1000000', 'dpmm.batch=100', 'dpmm.purity_batch=100',
    'dpmm.options.truncation=3', 'replay.capacity=5000',
    'train.steps_per_task=200', 'train.num_envs=2', 'train.warmup_steps=50', 'train.eval_every=100',
    'train.eval_episodes=1', 'train.eval_envs=1', 'train.log_every=100', 'train.checkpoint_every=100',
    'env.episode_length=40', 'env.layout=legion12',
]


def small_config(*overrides):
    return to_container(compose_config([*SMALL, *overrides]))


def test_lifelong_two_task_stream_writes_the_run_directory(tmp_path):
    trainer = Trainer(small_config(), tmp_path, progress=False)
    metrics = trainer.run()

    # One update per env step: warm-up transitions are paid by the burst when warm-up ends.
    assert trainer.agent.num_updates == 400
    assert metrics['env_steps'] == 400 and metrics['complete'] and metrics['mode'] == 'lifelong'
    on_disk = json.loads((tmp_path / 'metrics.json').read_text())
    assert on_disk['tasks'] == ['reach-v3', 'push-v3']
    matrix = on_disk['success_matrix']
    assert len(matrix) == 2 and all(len(row) == 2 and None not in row for row in matrix)
    for key in ('final_success', 'forgetting', 'max_forgetting', 'own_phase', 'stream_average'):
        assert 0.0 <= abs(on_disk[key]) <= 1.0
    assert [d['phase'] for d in on_disk['dpmm']] == [0, 1]
    assert all(d['num_components'] >= 1 and 0.0 < d['purity'] <= 1.0 for d in on_disk['dpmm'])
    assert on_disk['config']['train']['steps_per_task'] == 200

    # Evaluations at local steps 0 and 100 and at each phase end, on both tasks.
    rows = [json.loads(line) for line in (tmp_path / 'evals.jsonl').read_text().splitlines()]
    assert len(rows) == 2 * 3 * 2
    assert {r['task'] for r in rows} == {'reach-v3', 'push-v3'}
    assert all(set(r) >= {'env_steps', 'phase', 'task', 'success', 'return'} for r in rows)
    assert [r['phase'] for r in rows if r['final']] == [0, 0, 1, 1]

    assert (tmp_path / 'config.yaml').is_file()
    assert {p.name for p in (tmp_path / 'checkpoints').iterdir()} == {'last.pt', 'phase_0.pt', 'phase_1.pt'}
    events = list((tmp_path / 'tb').glob('events.out.tfevents.*'))
    assert events and events[0].stat().st_size > 1000


@pytest.mark.parametrize('fix', [True, False])
def test_terminal_observation_fix(tmp_path, fix):
    cfg = small_config('train.num_envs=1', 'env.episode_length=10', f'agent.fix_terminal_obs={fix}',
                       'train.eval_every=0', 'agent.n_step=1')
    trainer = Trainer(cfg, tmp_path, progress=False)
    trainer.run(max_env_steps=15)
    storage = trainer.replay.storage
    obs, next_obs = storage['obs'][:15], storage['next_obs'][:15]
    # Inside an episode s' is the next row's s; the 10th transition ended the episode.
    assert torch.equal(next_obs[:9], obs[1:10])
    assert torch.equal(next_obs[10:14], obs[11:15])
    # The original stored the reset observation as s'; the fix keeps the true last observation.
    assert torch.equal(next_obs[9], obs[10]) is (not fix)


def test_multitask_mode_steps_all_tasks_together(tmp_path):
    cfg = small_config('train=multitask', 'train.steps_per_task=60', 'train.warmup_steps=20',
                       'train.num_envs=1', 'train.updates_per_step=0.5', 'train.eval_every=0',
                       'train.eval_episodes=1', 'train.eval_envs=1', 'dpmm.start=40', 'replay.capacity=5000')
    trainer = Trainer(cfg, tmp_path, progress=False)
    metrics = trainer.run()
    assert metrics['mode'] == 'multitask' and metrics['env_steps'] == 120
    assert np.asarray(metrics['success_matrix']).shape == (1, 2)
    assert metrics['forgetting'] is None
    assert trainer.replay.task_counts() == {0: 60, 1: 60}
    assert trainer.agent.num_updates == 40  # 0.5 per transition after the 2 x 20 warm-up transitions


def test_distill_remembers_the_finished_tasks_at_each_switch(tmp_path):
    from legion_core.trainer import resume_trainer

    cfg = small_config('stream.tasks=[reach-v3,push-v3,drawer-close-v3]', 'agent.distill=1.0',
                       'train.steps_per_task=100', 'train.eval_every=0')
    trainer = Trainer(cfg, tmp_path, progress=False)
    assert trainer.agent.teacher is None
    trainer.run(max_env_steps=100)  # phase 0 ends: reach is remembered as the policy acts now
    assert trainer.agent.teacher_tasks == 1
    acting = trainer.agent.acting_policy().state_dict()  # the average of agent.policy_average
    for name, value in trainer.agent.teacher.state_dict().items():
        assert torch.equal(value, acting[name])
    trainer.run(max_env_steps=100)
    assert trainer.agent.teacher_tasks == 2
    phase_0 = torch.load(tmp_path / 'checkpoints' / 'phase_0.pt', weights_only=False)
    assert phase_0['agent']['teacher_tasks'] == 1
    assert resume_trainer(tmp_path, progress=False).agent.teacher_tasks == 2  # kept by a resume


def _teacher_labels(trainer, task):
    replay = trainer.replay
    slots = replay.stored_slots()
    slots = slots[replay.storage['task'][slots] == task]
    return replay.storage['obs'][slots], replay.storage['teacher_action'][slots]


@pytest.mark.parametrize('teacher', ['last', 'own'])
def test_replayed_rows_carry_the_actions_of_their_teacher(tmp_path, teacher):
    from legion_core.trainer import resume_trainer

    cfg = small_config('stream.tasks=[reach-v3,push-v3,drawer-close-v3]', 'agent.distill=1.0',
                       f'agent.distill_teacher={teacher}', 'train.steps_per_task=100', 'train.eval_every=0')
    trainer = Trainer(cfg, tmp_path, progress=False)
    trainer.run(max_env_steps=100)  # reach's phase ends: its rows are labelled with the actor's actions
    obs, reach_first = _teacher_labels(trainer, 0)
    torch.testing.assert_close(reach_first, trainer.agent.teacher_actions(obs, torch.zeros(len(obs))))
    assert (_teacher_labels(trainer, 1)[1] == 0).all()  # push's rows: not yet
    trainer.run(max_env_steps=100)  # push's phase ends
    obs, reach_second = _teacher_labels(trainer, 0)
    latest = trainer.agent.teacher_actions(obs, torch.zeros(len(obs)))
    if teacher == 'own':  # reach keeps the actions of its own phase's end
        torch.testing.assert_close(reach_second, reach_first)
        assert not torch.allclose(reach_second, latest)
    else:  # every earlier task takes the latest teacher's actions
        torch.testing.assert_close(reach_second, latest)
    obs, push = _teacher_labels(trainer, 1)
    torch.testing.assert_close(push, trainer.agent.teacher_actions(obs, torch.ones(len(obs))))

    # A checkpoint saved before rows carried their teacher's actions: its teacher labels them on load.
    path = tmp_path / 'checkpoints' / 'last.pt'
    state = torch.load(path, weights_only=False)
    del state['replay']['storage']['teacher_action']
    torch.save(state, path)
    resumed = resume_trainer(tmp_path, progress=False)
    obs, reach_resumed = _teacher_labels(resumed, 0)
    torch.testing.assert_close(reach_resumed, resumed.agent.teacher_actions(obs, torch.zeros(len(obs))))


class _SolvesEachTaskAtOnce(Trainer):
    """The real evaluation, then the current task reported solved: what a learnt task looks like to the
    phase-advance rule, without training one for minutes."""

    def evaluate_all(self, phase, final):
        rates = super().evaluate_all(phase, final)
        return [1.0 if j == phase else rate for j, rate in enumerate(rates)]


def test_advance_on_success_ends_a_phase_early_and_hands_its_steps_on(tmp_path):
    from legion_core.trainer import resume_trainer

    cfg = small_config('train.advance_on_success=0.9', 'train.advance_evals=2', 'train.eval_every=50',
                       'train.steps_per_task=300', 'train.num_envs=1', 'train.checkpoint_every=0')
    trainer = _SolvesEachTaskAtOnce(cfg, tmp_path, progress=False)
    trainer.run(max_env_steps=70)
    # Solved at the evaluations of local steps 0 (the phase's start counts, as in legion bench solve)
    # and 50: phase 0 ended there, 250 steps unused.
    assert trainer.position['phase'] == 1 and trainer.position['carry'] == 250
    assert trainer.phase_budget() == 550
    resumed = resume_trainer(tmp_path, progress=False)  # the carry survives a restart
    assert resumed.phase_budget() == 550
    metrics = _SolvesEachTaskAtOnce(cfg, tmp_path / 'whole', progress=False).run()
    assert [(p['task'], p['local_steps'], p['solved']) for p in metrics['phases']] == [
        ('reach-v3', 50, True), ('push-v3', 50, True)]
    assert metrics['env_steps'] == 100 and metrics['complete']


class _StopsAfterThePhaseStartEvaluation(_SolvesEachTaskAtOnce):
    """SIGTERM during the phase-start evaluation: the run stops before the phase's first step."""

    def evaluate_all(self, phase, final):
        rates = super().evaluate_all(phase, final)
        self._stop_requested = not final and self.position['local_step'] == 0
        return rates


def test_a_run_stopped_after_its_phase_start_evaluation_does_not_count_it_twice(tmp_path):
    from legion_core.trainer import resume_trainer

    cfg = small_config('train.advance_on_success=0.9', 'train.advance_evals=2', 'train.eval_every=50',
                       'train.steps_per_task=300', 'train.num_envs=1', 'train.checkpoint_every=0')
    _StopsAfterThePhaseStartEvaluation(cfg, tmp_path, progress=False).run()
    resumed = resume_trainer(tmp_path, progress=False)
    resumed.__class__ = _SolvesEachTaskAtOnce  # solved at every evaluation from here on
    resumed.run(max_env_steps=1)
    # The phase-start evaluation counted once: one more evaluation (local step 50) ends the phase.
    assert resumed.position['phase'] == 0 and resumed.position['solved_streak'] == 1
    rows = [json.loads(line) for line in (tmp_path / 'evals.jsonl').read_text().splitlines()]
    assert [r['env_steps'] for r in rows if r['task'] == 'reach-v3'] == [0]


def test_a_task_done_at_its_phase_start_with_one_evaluation_needed_takes_no_steps(tmp_path):
    cfg = small_config('train.advance_on_success=0.9', 'train.advance_evals=1', 'train.eval_every=50',
                       'train.steps_per_task=300', 'train.num_envs=1', 'train.checkpoint_every=0')
    metrics = _SolvesEachTaskAtOnce(cfg, tmp_path, progress=False).run()
    assert [(p['local_steps'], p['solved']) for p in metrics['phases']] == [(0, True), (0, True)]
    assert metrics['env_steps'] == 0 and metrics['complete']


class _SolvesOnlyTheFirstTask(Trainer):
    """The first task solved at its phase start; every later one reads 0.0: a task going nowhere."""

    def evaluate_all(self, phase, final):
        rates = super().evaluate_all(phase, final)
        return [1.0 if j == 0 else 0.0 for j in range(len(rates))]


@pytest.mark.parametrize(('floor', 'phases', 'carry'), [
    # Past its own 100 steps, push's best success at its last three evaluations (0, 50, 100) is 0.0:
    # it stops there and the 100 saved steps stay saved.
    ('0.3', [(0, 'solved'), (100, 'stalled')], 100),
    ('null', [(0, 'solved'), (200, 'budget')], 0),  # it spends them all
])
def test_a_phase_spends_saved_steps_only_while_its_task_is_being_learnt(tmp_path, floor, phases, carry):
    cfg = small_config('train.advance_on_success=0.9', 'train.advance_evals=1', 'train.eval_every=50',
                       'train.steps_per_task=100', 'train.num_envs=1', 'train.checkpoint_every=0',
                       f'train.carry_min_success={floor}')
    trainer = _SolvesOnlyTheFirstTask(cfg, tmp_path, progress=False)
    metrics = trainer.run()
    assert [(p['local_steps'], p['ended']) for p in metrics['phases']] == phases
    assert [p['solved'] for p in metrics['phases']] == [True, False]
    assert trainer.position['carry'] == carry and metrics['env_steps'] == phases[1][0]


@pytest.mark.parametrize(('how', 'budgets'), [
    ('next', [100, 150, 100]),    # phase 0 ended at 50: its 50 saved steps all go to phase 1
    ('spread', [100, 125, 125]),  # shared by the two phases left
    ('none', [100, 100, 100]),
])
def test_saved_steps_go_to_the_next_phase_or_are_spread_over_the_phases_left(tmp_path, how, budgets):
    from legion_core.trainer import resume_trainer

    cfg = small_config('stream.tasks=[reach-v3,push-v3,drawer-close-v3]', 'train.advance_on_success=0.9',
                       'train.advance_evals=2', 'train.eval_every=50', 'train.steps_per_task=100',
                       'train.num_envs=1', 'train.checkpoint_every=0', 'train.carry_min_success=null',
                       f'train.saved_steps={how}')
    seen = []

    class _Records(Trainer):  # phase 0 solved at local steps 0 and 50, the others never
        def evaluate_all(self, phase, final):
            if not final and self.position['local_step'] == 0:
                seen.append(self.phase_budget())
            rates = super().evaluate_all(phase, final)
            return [1.0 if j == phase == 0 else 0.0 for j in range(len(rates))]

    trainer = _Records(cfg, tmp_path, progress=False)
    trainer.run(max_env_steps=60)
    assert trainer.position['phase'] == 1 and trainer.phase_budget() == budgets[1]
    resumed = resume_trainer(tmp_path, progress=False)  # the share survives a restart
    assert resumed.phase_budget() == budgets[1]
    resumed.__class__ = _Records
    metrics = resumed.run()
    assert seen == budgets
    assert [p['local_steps'] for p in metrics['phases']] == [50, *budgets[1:]]


def test_a_task_never_solved_runs_its_whole_phase(tmp_path):
    cfg = small_config('train.advance_on_success=1.0', 'train.steps_per_task=100', 'train.num_envs=1',
                       'train.eval_every=50', 'train.checkpoint_every=0')
    metrics = Trainer(cfg, tmp_path, progress=False).run()  # 200 steps of tiny nets: nothing solved
    assert [(p['local_steps'], p['solved']) for p in metrics['phases']] == [(100, False), (100, False)]


def test_eval_tasks_seen_evaluates_later_tasks_only_at_phase_ends(tmp_path):
    metrics = Trainer(small_config('train.eval_tasks=seen'), tmp_path, progress=False).run()
    rows = [json.loads(line) for line in (tmp_path / 'evals.jsonl').read_text().splitlines()]
    inside = [(r['phase'], r['task']) for r in rows if not r['final']]
    # Local steps 0 and 100 of each phase: phase 0 evaluates reach alone, phase 1 both tasks.
    assert inside == [(0, 'reach-v3')] * 2 + [(1, 'reach-v3'), (1, 'push-v3')] * 2
    assert [(r['phase'], r['task']) for r in rows if r['final']] == [
        (0, 'reach-v3'), (0, 'push-v3'), (1, 'reach-v3'), (1, 'push-v3')]
    assert all(None not in row for row in metrics['success_matrix'])  # the matrix stays whole
    # The stream average counts evaluations of every task: phase 1's two, the two phase ends.
    curve = torch.load(tmp_path / 'checkpoints' / 'last.pt', weights_only=False)['eval_curve']
    assert len(curve) == 4 and metrics['stream_average'] == pytest.approx(np.mean(curve))


@pytest.mark.parametrize(('key', 'value', 'message'), [
    ('train.advance_on_success', '1.5', 'train.advance_on_success must be null or a success rate'),
    ('train.advance_evals', '0', 'train.advance_evals must be a positive integer'),
    ('train.saved_steps', 'later', "train.saved_steps must be one of ['next', 'spread', 'none']"),
    ('train.carry_min_success', '2', 'train.carry_min_success must be null or a success rate in [0, 1]'),
    ('agent.critic_body', 'bro', "agent.critic_body must be one of ['legion', 'layernorm', 'residual']"),
    ('agent.weight_decay', '-1', 'agent.weight_decay must be >= 0'),
    ('train.eval_tasks', 'some', "train.eval_tasks must be one of ['all', 'seen']"),
])
def test_new_switches_are_validated(key, value, message):
    from legion_core.config import validate

    assert any(message in problem for problem in validate(small_config(f'{key}={value}')))


def test_evaluation_goals_are_held_out_from_training(tmp_path):
    cfg = small_config('env.goal=random', 'train.eval_envs=2', 'train.eval_episodes=2')
    trainer = Trainer(cfg, tmp_path, progress=False)
    from legion_core.envs import TaskVectorEnv

    train_env = TaskVectorEnv('reach-v3', 2, layout='legion12', episode_length=40, goal='random', seed=0)
    train_goals = train_env.reset()[:, 9:12]
    eval_goals = trainer._eval_env(0).reset()[:, 9:12]
    assert not np.isclose(train_goals[:, None], eval_goals[None]).all(axis=-1).any()


def test_n_step_training_stores_every_transition_once(tmp_path):
    cfg = small_config('agent.n_step=3', 'train.num_envs=2', 'env.episode_length=10', 'train.eval_every=0',
                       'train.checkpoint_every=0')
    trainer = Trainer(cfg, tmp_path, progress=False)
    trainer.run(max_env_steps=31, checkpoint_at_stop=False)  # stops mid-episode: pending rows flushed
    assert len(trainer.replay) == 32  # 16 vector steps of 2 copies
    horizon = trainer.replay.storage['horizon'][:32]
    assert set(horizon.tolist()) == {1.0, 2.0, 3.0} and (horizon == 3).sum() >= 20


def test_current_ratio_gives_the_task_being_learnt_its_share_and_earlier_tasks_equal_ones(tmp_path):
    cfg = small_config('stream.tasks=[reach-v3,push-v3,drawer-close-v3]', 'train.steps_per_task=100',
                       'train.eval_every=0', 'train.current_ratio=0.5')
    trainer = Trainer(cfg, tmp_path, progress=False)
    tasks_per_batch = []
    update = trainer.agent.update
    trainer.agent.update = lambda batch, clone=False: (tasks_per_batch.append(batch['task'].tolist()),
                                                       update(batch, clone))
    trainer.run()
    size = trainer.agent_config.batch_size
    counts = [tuple(tasks.count(k) for k in range(3)) for tasks in tasks_per_batch]
    assert counts[0] == (size, 0, 0)  # reach alone: every row is its own
    second, third = counts[len(counts) // 2], counts[-1]
    assert second == (size // 2, size // 2, 0)  # push's half, reach the rest
    # drawer-close's half, and reach and push a quarter each, however many rows each one stored
    assert third == (size // 4, size // 4, size // 2)
    assert trainer.replay.task_sizes() == trainer.replay.task_counts()


@pytest.mark.parametrize('sample', ['uniform', 'balanced'])
def test_dpmm_sample_balanced_fits_every_task_seen_on_equal_rows(tmp_path, sample):
    cfg = small_config('dpmm.start=60', 'train.eval_every=0', f'dpmm.sample={sample}')
    trainer = Trainer(cfg, tmp_path, progress=False)
    fits = []
    fit = trainer.agent.fit_dpmm
    trainer.agent.fit_dpmm = lambda obs, task, seed: (fits.append(task.tolist()), fit(obs, task, seed))[1]
    trainer.run()
    reach, push = fits[1].count(0), fits[1].count(1)  # 60 steps into push: 200 reach rows, 60 push rows
    assert reach + push == 100
    assert (reach, push) == (50, 50) if sample == 'balanced' else reach > 65


def test_a_solved_phase_freezes_its_skill_and_its_evaluations_stand_for_later_ones(tmp_path, monkeypatch):
    from legion_core import envs

    cfg = small_config('train.advance_on_success=0.9', 'train.advance_evals=2', 'train.eval_every=50',
                       'train.steps_per_task=300', 'train.num_envs=1', 'train.checkpoint_every=0',
                       'agent.freeze_skills=true')
    played = []
    real = envs.evaluate
    monkeypatch.setattr(envs, 'evaluate', lambda policy, task, *a, **k: played.append(task) or real(
        policy, task, *a, **k))
    trainer = _SolvesEachTaskAtOnce(cfg, tmp_path, progress=False)
    trainer.run()
    assert set(trainer.agent.skills) == {0, 1}
    assert json.loads((tmp_path / 'metrics.json').read_text())['frozen_skills'] == ['reach-v3', 'push-v3']
    rows = [json.loads(line) for line in (tmp_path / 'evals.jsonl').read_text().splitlines()]
    reach = [r for r in rows if r['task'] == 'reach-v3']
    # Phase 0: evaluations at local steps 0, 50 and its end; after it, reach's frozen skill is not played
    # again: its phase-end result (the same weights on the same episodes) stands for it.
    assert [r.get('frozen', False) for r in reach] == [False, False, False, True, True, True]
    assert len({(r['success'], r['return']) for r in reach[2:]}) == 1
    assert played.count('reach-v3') == 3
    # Exported, the policy acts on reach with the frozen skill: its phase-end weights.
    from legion_core.policy import load_policy

    phase_end = load_policy(tmp_path / 'checkpoints' / 'phase_0.pt', shared=True)
    final = load_policy(tmp_path)
    assert set(final.skills) == {0, 1} and load_policy(tmp_path, shared=True).skills == {}
    obs = np.random.default_rng(1).normal(size=(3, 12)).astype(np.float32)
    np.testing.assert_allclose(final.act(obs, 'reach-v3'), phase_end.act(obs, 'reach-v3'), atol=1e-6)


def test_freeze_skills_switched_on_at_a_resume_takes_the_solved_phases_weights(tmp_path):
    from legion_core.policy import load_policy
    from legion_core.trainer import resume_trainer

    cfg = small_config('train.advance_on_success=0.9', 'train.advance_evals=2', 'train.eval_every=50',
                       'train.steps_per_task=300', 'train.num_envs=1', 'train.checkpoint_every=0')
    _SolvesEachTaskAtOnce(cfg, tmp_path, progress=False).run(max_env_steps=70)  # reach solved, push begun
    assert resume_trainer(tmp_path, progress=False).agent.skills == {}
    resumed = resume_trainer(tmp_path, progress=False, overrides=['agent.freeze_skills=true'])
    assert set(resumed.agent.skills) == {0}
    obs = np.random.default_rng(2).normal(size=(3, 12)).astype(np.float32)
    phase_end = load_policy(tmp_path / 'checkpoints' / 'phase_0.pt', shared=True)
    np.testing.assert_allclose(resumed.agent.act(obs, 0, deterministic=True), phase_end.act(obs, 'reach-v3'),
                               atol=1e-6)


def test_freeze_skills_switched_on_for_a_finished_stream_is_kept_in_its_checkpoint(tmp_path):
    from legion_core.policy import load_policy
    from legion_core.trainer import resume_trainer

    cfg = small_config('train.advance_on_success=0.9', 'train.advance_evals=2', 'train.eval_every=50',
                       'train.steps_per_task=300', 'train.num_envs=1', 'train.checkpoint_every=0')
    matrix = _SolvesEachTaskAtOnce(cfg, tmp_path, progress=False).run()['success_matrix']
    assert load_policy(tmp_path).skills == {}
    resume_trainer(tmp_path, progress=False, overrides=['agent.freeze_skills=true'])
    assert set(load_policy(tmp_path).skills) == {0, 1}
    assert json.loads((tmp_path / 'metrics.json').read_text())['success_matrix'] == matrix
