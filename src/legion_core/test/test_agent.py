"""LegionAgent: SAC + VAE updates, per-task temperature, DPMM prior, resets, persistence."""
import numpy as np
import pytest
import torch

from legion_core.agent import AgentConfig, LegionAgent
from legion_core.dpmm import make_dpmm

OBS, ACT, T, B = 12, 4, 3, 32
torch.set_num_threads(1)  # the test machines are shared: one thread avoids OpenMP spin contention


def small_config(**overrides):
    values = dict(vae_hidden=32, actor_hidden=32, critic_hidden=32, batch_size=B, vae_update_every=5,
                  optimizer='foreach')
    values.update(overrides)
    return AgentConfig(**values)


def make_agent(seed=0, dpmm=None, **overrides):
    torch.manual_seed(seed)
    emb = np.random.default_rng(seed).normal(size=(T, 24)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return LegionAgent(OBS, ACT, emb, small_config(**overrides), dpmm=dpmm)


def labelled(agent, batch):
    """The batch with its rows' teacher actions, as the trainer stores them at a task switch."""
    return {**batch, 'teacher_action': agent.teacher_actions(batch['obs'], batch['task'])}


def make_batch(seed=0, task=None):
    g = torch.Generator().manual_seed(seed)
    tasks = torch.randint(0, T, (B,), generator=g) if task is None else torch.full((B,), task)
    obs = torch.randn(B, OBS, generator=g)
    return {'obs': obs, 'action': torch.rand(B, ACT, generator=g) * 2 - 1,
            'reward': torch.randn(B, generator=g), 'next_obs': obs + 0.1 * torch.randn(B, OBS, generator=g),
            'done': torch.zeros(B), 'task': tasks}


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_update_changes_actor_critic_and_losses_are_finite():
    agent = make_agent()
    actor, critic, target = params(agent.actor), params(agent.critic), params(agent.critic_target)
    encoder = params(agent.vae.encoder)
    for i in range(3):  # no VAE step yet (every 5)
        agent.update(make_batch(i))
    assert changed(actor, agent.actor) and changed(critic, agent.critic)
    assert changed(target, agent.critic_target)
    # RL gradients never reach the VAE: the encoder only moves on VAE steps.
    assert not changed(encoder, agent.vae.encoder)
    metrics = agent.pop_metrics()
    assert set(metrics) >= {'critic_loss', 'actor_loss', 'alpha_loss', 'entropy'}
    assert all(np.isfinite(v) for v in metrics.values())
    assert 'vae_loss' not in metrics
    assert agent.pop_metrics() == {}  # accumulators were reset


def test_vae_step_every_n_updates_uses_kl_to_standard_normal_before_dpmm():
    agent = make_agent()
    encoder = params(agent.vae.encoder)
    for i in range(10):
        agent.update(make_batch(i))
    assert agent.num_updates == 10 and agent.num_vae_updates == 2
    assert changed(encoder, agent.vae.encoder)
    metrics = agent.pop_metrics()
    assert np.isfinite(metrics['vae_loss']) and metrics['kl_loss'] >= 0
    expected = 0.5 * metrics['dyn_loss'] + metrics['sem_loss'] + 1e-3 * metrics['kl_loss']
    assert metrics['vae_loss'] == pytest.approx(expected, rel=1e-4)


def test_semantic_loss_reduction_sum_vs_mean():
    batch = make_batch(0)
    losses = {}
    for reduction in ('sum', 'mean'):
        agent = make_agent(semantic_loss=reduction, vae_update_every=1)
        agent.update(batch)
        losses[reduction] = agent.pop_metrics()['sem_loss']
    assert losses['sum'] == pytest.approx(losses['mean'] * B * 24, rel=1e-3)


def test_encoder_runs_twice_per_update_and_decoders_only_on_vae_steps(monkeypatch):
    agent = make_agent(vae_update_every=2)
    calls = []
    encode = agent.vae.encoder.forward_tasks
    monkeypatch.setattr(agent.vae.encoder, 'forward_tasks', lambda *a: calls.append('enc') or encode(*a))
    agent.vae.encoder.register_forward_hook(lambda *_: calls.append('enc'))
    agent.vae.dynamics.register_forward_hook(lambda *_: calls.append('dyn'))
    agent.vae.semantic.register_forward_hook(lambda *_: calls.append('sem'))
    agent.update(make_batch(0))
    assert calls == ['enc', 'enc']
    calls.clear()
    agent.update(make_batch(1))  # the VAE step reuses the s-pass (with autograd) for its loss
    assert sorted(calls) == ['dyn', 'enc', 'enc', 'sem']


def test_temperature_is_per_task():
    agent = make_agent()
    before = agent.log_alpha.detach().clone()
    agent.update(make_batch(0, task=1))
    after = agent.log_alpha.detach()
    assert after[1] != before[1]
    assert after[0] == before[0] and after[2] == before[2]


def test_act_batched_deterministic_and_stochastic():
    agent = make_agent()
    obs = np.random.default_rng(0).normal(size=(5, OBS)).astype(np.float32)
    a1, a2 = agent.act(obs, 1, deterministic=True), agent.act(obs, 1, deterministic=True)
    assert a1.shape == (5, ACT) and np.array_equal(a1, a2)  # eval_z=mean: no sampling at all
    assert np.all(np.abs(a1) <= 1)
    s1, s2 = agent.act(obs, 1), agent.act(obs, 1)
    assert not np.array_equal(s1, s2)
    mixed = agent.act(obs, np.array([0, 1, 2, 1, 0]), deterministic=True)
    assert np.allclose(mixed[1], a1[1], atol=1e-6) and np.allclose(mixed[3], a1[3], atol=1e-6)
    assert agent.act(obs[0], 1, deterministic=True).shape == (ACT,)
    sampled = make_agent(eval_z='sample')
    assert not np.array_equal(sampled.act(obs, 1, True), sampled.act(obs, 1, True))


def test_dpmm_fit_switches_kl_to_the_mixture_prior():
    agent = make_agent(dpmm=make_dpmm('sklearn', truncation=4), vae_update_every=1)
    assert agent.prior is None
    batch = make_batch(0)
    k = agent.fit_dpmm(batch['obs'].repeat(4, 1), batch['task'].repeat(4), seed=0)
    assert k >= 1 and agent.prior is not None
    mu, logvar = torch.randn(B, 10), torch.zeros(B, 10)
    assert not torch.allclose(agent.kl(mu, logvar, mu), 0.5 * (mu.pow(2)).sum(-1))
    agent.update(batch)
    assert np.isfinite(agent.pop_metrics()['kl_loss'])


def test_resets():
    agent = make_agent()
    for i in range(3):
        agent.update(make_batch(i))
    assert agent.critic_optimizer.state
    log_alpha = agent.log_alpha.detach().clone()
    agent.reset_optimizers()
    assert not agent.critic_optimizer.state and torch.equal(agent.log_alpha.detach(), log_alpha)
    agent.reset_critics()
    for p, q in zip(agent.critic.parameters(), agent.critic_target.parameters(), strict=True):
        assert torch.equal(p, q)
    encoder = params(agent.vae.encoder)
    agent.reset_vae()
    assert changed(encoder, agent.vae.encoder)


def assert_same_update(agent, other, batch, seed: int) -> None:
    """The same update (same batch, same random draws) leaves both agents' actors identical."""
    for a in (agent, other):
        torch.manual_seed(seed)
        a.update(batch)
    for p, q in zip(agent.actor.parameters(), other.actor.parameters(), strict=True):
        assert torch.equal(p, q)


def test_state_dict_round_trip_gives_identical_updates():
    agent = make_agent(dpmm=make_dpmm('sklearn', truncation=4))
    batch = make_batch(0)
    agent.fit_dpmm(batch['obs'].repeat(4, 1), batch['task'].repeat(4), seed=0)
    for i in range(4):
        agent.update(make_batch(i))
    state = agent.state_dict()
    other = make_agent(seed=1, dpmm=make_dpmm('sklearn', truncation=4))
    other.load_state_dict(state)
    assert_same_update(agent, other, make_batch(9), seed=7)
    assert other.num_updates == agent.num_updates
    assert torch.equal(agent.log_alpha, other.log_alpha)


def test_bad_config_is_rejected_with_the_reason():
    with pytest.raises(ValueError, match='latent_dim must be >= 1'):
        make_agent(latent_dim=0)
    with pytest.raises(ValueError, match='eval_z must be one of'):
        make_agent(eval_z='median')
    with pytest.raises(ValueError, match='unknown agent setting'):
        AgentConfig.from_dict({'latnet_dim': 3})


def test_distill_keeps_remembered_tasks_actions_and_sac_moves_them_otherwise():
    """After a task switch, SAC updates on an earlier task's replay move its actions (what lost reach in
    `legion bench learn`); with ``distill`` the actor clones its end-of-phase actions there instead."""
    pool = torch.randn(64, OBS, generator=torch.Generator().manual_seed(5))  # task 0's replayed states

    def batch(i):  # task 0's replay: states from its pool, random actions and rewards
        b = make_batch(i, task=0)
        g = torch.Generator().manual_seed(100 + i)
        b['obs'] = pool[torch.randint(0, len(pool), (B,), generator=g)]
        b['next_obs'] = b['obs'] + 0.1 * torch.randn(B, OBS, generator=g)
        return b

    def drift(distill):
        agent = make_agent(distill=distill)
        for i in range(5):
            agent.update(make_batch(i, task=0))
        agent.remember_tasks(1)  # the switch to task 1, as the trainer does it: task 0 is remembered
        agent.reset_optimizers()
        before = agent.act(pool, 0, deterministic=True)
        actor, alpha = params(agent.actor), agent.temperatures()[0]
        agent.update(labelled(agent, batch(10)))
        # At the teacher's own actions the cloning gradient is zero: the actor does not move at all.
        assert changed(actor, agent.actor) is (distill == 0)
        for i in range(40):
            agent.update(labelled(agent, batch(20 + i)))
        # A cloned task's actor ignores its α, so α stays put (left free, it grew without bound).
        assert bool(agent.temperatures()[0] == alpha) is (distill > 0)
        return np.abs(agent.act(pool, 0, deterministic=True) - before).max()

    plain = drift(0.0)
    assert plain > 0.1
    assert drift(1.0) < 0.1 * plain  # what still moves it is the encoder's VAE steps


def test_teacher_survives_state_dict_round_trip():
    agent = make_agent(distill=1.0)
    agent.update(make_batch(0))
    agent.remember_tasks(2)
    agent.update(labelled(agent, make_batch(1)))
    other = make_agent(seed=1, distill=1.0)
    assert other.teacher is None
    other.load_state_dict(agent.state_dict())
    assert other.teacher_tasks == 2
    for p, q in zip(agent.teacher.parameters(), other.teacher.parameters(), strict=True):
        assert torch.equal(p, q) and not q.requires_grad
    assert_same_update(agent, other, labelled(agent, make_batch(2)), seed=3)


@pytest.mark.parametrize(('teacher', 'second'), [('last', range(0, 3)), ('own', range(1, 3))])
def test_each_switch_names_the_tasks_its_teacher_labels(teacher, second):
    agent = make_agent(distill=1.0, distill_teacher=teacher)
    assert agent.remember_tasks(1) == range(0, 1)
    assert agent.remember_tasks(3) == second  # own: task 0 keeps the actions of its own phase's end
    obs, task = torch.randn(5, OBS), torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        mu, _ = agent.vae.encoder.forward_tasks(obs, task, agent.task_embeddings)
        expected = agent.actor.mean_action(obs, mu)
    torch.testing.assert_close(agent.teacher_actions(obs, task), expected)  # the networks at the switch


def test_distilling_without_the_rows_teacher_actions_is_a_clear_error():
    agent = make_agent(distill=1.0)
    agent.remember_tasks(1)
    with pytest.raises(ValueError, match="needs the batch's teacher_action"):
        agent.update(make_batch(0, task=0))


def test_weight_decay_shrinks_actor_and_critic_weights_not_the_vae():
    plain, decayed = make_agent(weight_decay=0.0), make_agent(weight_decay=0.5)
    assert type(decayed.critic_optimizer) is torch.optim.AdamW
    assert type(plain.critic_optimizer) is torch.optim.Adam
    assert type(decayed.vae_optimizer) is torch.optim.Adam
    for _ in range(20):
        batch = make_batch(seed=1)
        plain.update(batch)
        decayed.update(batch)
    norm = lambda m: sum(p.detach().norm() ** 2 for p in m.parameters() if p.ndim == 2)  # noqa: E731
    assert norm(decayed.critic) < norm(plain.critic) and norm(decayed.actor) < norm(plain.actor)
    decayed.reset_critics()  # a re-created critic optimizer keeps the decay
    assert type(decayed.critic_optimizer) is torch.optim.AdamW


@pytest.mark.parametrize('body', ['layernorm', 'residual'])
def test_other_bodies_learn_and_round_trip(body):
    agent = make_agent(actor_body=body, critic_body=body)
    before = params(agent.critic)
    for seed in range(3):
        agent.update(make_batch(seed))
    assert changed(before, agent.critic)
    copy = make_agent(seed=1, actor_body=body, critic_body=body)
    copy.load_state_dict(agent.state_dict())
    obs = np.random.default_rng(0).normal(size=(5, OBS)).astype(np.float32)
    assert np.array_equal(copy.act(obs, 0, deterministic=True), agent.act(obs, 0, deterministic=True))


def test_n_step_rows_bootstrap_with_gamma_to_their_horizon(monkeypatch):
    targets = []
    original = torch.nn.functional.mse_loss

    def spy(q, target):  # the first call of an update is the critic loss against its TD target
        targets.append(target.detach().clone())
        return original(q, target)

    monkeypatch.setattr(torch.nn.functional, 'mse_loss', spy)
    bootstraps = []
    for horizon in (torch.ones(B), torch.tensor([1.0, 3.0] * (B // 2))):
        agent = make_agent(seed=0, n_step=3, gamma=0.5)  # identical agents ...
        batch = {**make_batch(seed=2), 'horizon': horizon}
        targets.clear()
        torch.manual_seed(5)  # ... and identical noise in the update
        agent.update(batch)
        bootstraps.append(targets[0] - batch['reward'])  # γ^h (min Q' - α log π')
    one_step, mixed = bootstraps
    torch.testing.assert_close(mixed[0::2], one_step[0::2])
    torch.testing.assert_close(mixed[1::2], 0.25 * one_step[1::2])


def test_deterministic_actions_use_the_polyak_average_of_encoder_and_actor():
    decay = 0.75
    agent = make_agent(policy_average=decay)

    def live():
        return [p.detach().clone() for p in [*agent.vae.encoder.parameters(), *agent.actor.parameters()]]

    expected = live()
    for i in range(6):  # a VAE step at the fifth: the encoder's average moves too
        agent.update(make_batch(i))
        expected = [decay * e + (1 - decay) * q for e, q in zip(expected, live(), strict=True)]
    for e, a in zip(expected, agent.average.parameters(), strict=True):
        assert torch.allclose(e, a, atol=1e-6) and not a.requires_grad
    obs = make_batch(9)['obs']
    with torch.no_grad():
        mu, _ = agent.average['encoder'](obs, agent.task_embeddings[1].expand(B, -1))
        averaged = agent.average['actor'].mean_action(obs, mu).numpy()
        mu, _ = agent.vae.encoder(obs, agent.task_embeddings[1].expand(B, -1))
        live_action = agent.actor.mean_action(obs, mu).numpy()
    assert np.allclose(agent.act(obs, 1, deterministic=True), averaged, atol=1e-6)
    assert not np.allclose(averaged, live_action, atol=1e-3)
    # The teacher of the finished tasks is the policy that was evaluated: the average.
    agent.remember_tasks(1)
    assert np.allclose(agent.teacher_actions(obs, torch.ones(B)).numpy(), averaged, atol=1e-6)


def test_the_average_survives_a_round_trip_and_starts_from_the_live_weights_when_switched_on():
    agent = make_agent(policy_average=0.9)
    for i in range(4):
        agent.update(make_batch(i))
    other = make_agent(seed=1, policy_average=0.9)
    other.load_state_dict(agent.state_dict())
    for p, q in zip(agent.average.parameters(), other.average.parameters(), strict=True):
        assert torch.equal(p, q)
    plain = make_agent()
    plain.update(make_batch(0))
    assert plain.state_dict()['policy_average'] is None
    switched_on = make_agent(seed=2, policy_average=0.9)  # `legion train --resume RUN agent.policy_average=`
    switched_on.load_state_dict(plain.state_dict())
    obs = make_batch(5)['obs']
    assert np.allclose(switched_on.act(obs, 0, deterministic=True), plain.act(obs, 0, deterministic=True))
    with pytest.raises(ValueError, match=r'policy_average must be in \[0, 1\)'):
        make_agent(policy_average=1.0)


def test_a_frozen_skill_keeps_its_tasks_actions_while_the_shared_networks_learn_on():
    agent = make_agent(freeze_skills=True)
    for i in range(3):
        agent.update(make_batch(i))
    obs = torch.randn(6, OBS, generator=torch.Generator().manual_seed(9)).numpy()
    task0 = agent.act(obs, 0, deterministic=True)
    agent.freeze_skill(0)
    for i in range(3, 23):
        agent.update(make_batch(i))
    shared = make_agent(freeze_skills=False)
    shared.load_state_dict(agent.state_dict())  # the same networks, the skill switched off
    assert np.array_equal(agent.act(obs, 0, deterministic=True), task0)
    assert np.abs(shared.act(obs, 0, deterministic=True) - task0).max() > 1e-3  # the shared actor moved
    # Rows of several tasks at once: each row acts with its own task's policy.
    ids = np.array([0, 1, 0, 2, 1, 0])
    mixed = agent.act(obs, ids, deterministic=True)
    for row, task in enumerate(ids):
        expected = task0[row] if task == 0 else agent.act(obs[row], int(task), deterministic=True)
        np.testing.assert_allclose(mixed[row], expected, atol=1e-6)
    np.testing.assert_allclose(agent.act(obs, 1, deterministic=True), shared.act(obs, 1, deterministic=True))
    # Exploration always samples from the shared (live) networks.
    torch.manual_seed(0)
    explored = agent.act(obs, 0)
    torch.manual_seed(0)
    np.testing.assert_allclose(explored, shared.act(obs, 0))


def test_frozen_skills_survive_a_state_dict_round_trip():
    agent = make_agent(freeze_skills=True)
    agent.update(make_batch(0))
    agent.freeze_skill(1)
    agent.update(make_batch(1))
    other = make_agent(seed=1, freeze_skills=True)
    other.load_state_dict(agent.state_dict())
    assert set(other.skills) == {1}
    for p, q in zip(agent.skills[1].parameters(), other.skills[1].parameters(), strict=True):
        assert torch.equal(p, q) and not q.requires_grad
    obs = torch.randn(4, OBS).numpy()
    assert np.array_equal(other.act(obs, 1, deterministic=True), agent.act(obs, 1, deterministic=True))
