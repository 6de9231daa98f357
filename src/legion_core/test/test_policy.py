"""The exported policy artefact: written from a run, loaded from it or from a checkpoint, and the
shipped one."""
from pathlib import Path

import numpy as np
import pytest
import torch
from test_trainer import small_config

from legion_core import policy as policy_module
from legion_core.policy import export_policy, load_policy
from legion_core.trainer import Trainer

torch.set_num_threads(1)


@pytest.mark.parametrize('average', [0.0, 0.9])
def test_exported_policy_acts_like_the_agent(tmp_path, average):
    """...deterministically: with ``agent.policy_average``, the average's actions, not the live ones."""
    cfg = small_config('train.eval_every=0', 'train.steps_per_task=120', f'agent.policy_average={average}')
    trainer = Trainer(cfg, tmp_path, progress=False)
    trainer.run(max_env_steps=120)
    path = export_policy(tmp_path)
    assert path == tmp_path / 'policy.pt'
    state = torch.load(path, weights_only=False)
    assert 'critic' not in state and 'replay' not in state  # inference only
    policy = load_policy(path)
    assert policy.tasks == ['reach-v3', 'push-v3'] and policy.layout == 'legion12'
    assert all(isinstance(d, str) and d for d in policy.descriptions)
    obs = np.random.default_rng(1).normal(size=(3, 12)).astype(np.float32)
    expected = trainer.agent.act(obs, 1, deterministic=True)
    assert np.allclose(policy.act(obs, 'push-v3'), expected, atol=1e-6)
    assert np.allclose(policy.act(obs, 'push'), expected, atol=1e-6)
    assert np.allclose(policy.act(obs, policy.task_embeddings[1].numpy()), expected, atol=1e-6)
    assert policy.act(obs[0], 'reach-v3').shape == (4,)
    z, cluster = policy.latent(obs, 'reach-v3')
    assert z.shape == (3, 10) and cluster.shape == (3,) and cluster.min() >= 0
    with pytest.raises(ValueError, match='unknown task'):
        policy.act(obs, 'door-open-v3')
    with pytest.raises(ValueError, match='expects 12'):
        policy.act(np.zeros((2, 39)), 'reach-v3')
    # A training checkpoint loads the same way.
    from_ckpt = load_policy(tmp_path / 'checkpoints' / 'last.pt')
    assert np.allclose(from_ckpt.act(obs, 'push-v3'), expected, atol=1e-6)


def test_default_policy_path_is_the_environment_then_the_shipped_policy(tmp_path, monkeypatch):
    monkeypatch.delenv('LEGION_POLICY', raising=False)
    assert policy_module.default_policy_path() == policy_module.SHIPPED_POLICY
    monkeypatch.setenv('LEGION_POLICY', str(tmp_path / 'missing.pt'))
    assert policy_module.default_policy_path() == policy_module.SHIPPED_POLICY
    (tmp_path / 'policy.pt').write_bytes(b'x')
    monkeypatch.setenv('LEGION_POLICY', str(tmp_path / 'policy.pt'))
    assert policy_module.default_policy_path() == tmp_path / 'policy.pt'
    monkeypatch.setenv('LEGION_POLICY', 'legion10_twin')  # a shipped policy by name
    assert policy_module.default_policy_path() == policy_module.shipped_policies()['legion10_twin']
    monkeypatch.setattr(policy_module, 'SHIPPED_POLICY', tmp_path / 'not-shipped.pt')
    monkeypatch.delenv('LEGION_POLICY')
    assert policy_module.default_policy_path() is None


def test_a_shipped_policy_is_found_by_name_unless_a_path_of_that_name_exists(tmp_path, monkeypatch):
    shipped = policy_module.shipped_policies()
    assert {'legion10_recipe', 'legion10_twin', 'twin_demo3'} <= set(shipped)
    assert shipped['legion10_recipe'] == policy_module.SHIPPED_POLICY
    assert policy_module.resolve_policy('legion10_twin') == shipped['legion10_twin']
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'legion10_twin').mkdir()  # a run directory of the user's that happens to share the name
    assert policy_module.resolve_policy('legion10_twin') == Path('legion10_twin')
    assert policy_module.resolve_policy('nothing_here.pt') == Path('nothing_here.pt')  # load says why


@pytest.mark.parametrize('name', ['legion10_recipe', 'legion10_twin'])
def test_the_shipped_full_stream_policies_know_the_ten_skills(name):
    from legion_core.tasks import resolve_stream

    policy = load_policy(policy_module.shipped_policies()[name])
    assert policy.tasks == resolve_stream('legion10')
    assert policy.env['embodiment'] == 'twin' and policy.env['goal'] == 'random'
    assert policy.dpmm is not None and policy.dpmm.num_components == 10  # one cluster per skill
    obs = np.zeros((2, policy.obs_dim), dtype=np.float32)
    for task in policy.tasks:
        assert np.all(np.abs(policy.act(obs, task)) <= 1)


def test_the_shipped_policy_loads_and_acts_on_its_tasks():
    policy = load_policy(policy_module.SHIPPED_POLICY)
    assert {'reach-v3', 'drawer-close-v3', 'window-close-v3'} <= set(policy.tasks)  # the demo's job
    assert policy.env['embodiment'] == 'twin'  # trained through the arm's own chain
    obs = np.zeros((3, policy.obs_dim), dtype=np.float32)
    for task in policy.tasks:
        actions = policy.act(obs, task)
        assert actions.shape == (3, 4) and np.all(np.abs(actions) <= 1)
    beside = policy_module.SHIPPED_POLICY.parent
    assert (beside / 'metrics.json').is_file() and 'legion train' in (beside / 'README.md').read_text()
    # Every phase of its stream ended solved: each skill acts with the networks that solved it.
    assert sorted(policy.skills) == list(range(len(policy.tasks)))


def test_a_loaded_policy_acts_on_its_runs_torch_threads():
    # A second intra-op thread spins on these small networks when the other core is busy (a ROS graph,
    # a training run): the policy takes the thread count its run trained with, as its agent did.
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        policy = load_policy(policy_module.SHIPPED_POLICY)
        assert policy.config.num_threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_frozen_skill_acts_for_its_task_by_name_or_embedding_and_shared_skips_it(tmp_path):
    cfg = small_config('train.eval_every=0', 'train.steps_per_task=120', 'agent.freeze_skills=true')
    trainer = Trainer(cfg, tmp_path, progress=False)
    trainer.run(max_env_steps=60)
    obs = np.random.default_rng(1).normal(size=(3, 12)).astype(np.float32)
    before = trainer.agent.act(obs, 0, deterministic=True)
    trainer.agent.freeze_skill(0)
    trainer.run(max_env_steps=120)  # the shared networks learn on; reach keeps its frozen skill
    trainer.save_checkpoint()
    policy = load_policy(export_policy(tmp_path))
    shared = load_policy(tmp_path, shared=True)
    assert set(policy.skills) == {0} and shared.skills == {}
    np.testing.assert_allclose(policy.act(obs, 'reach-v3'), before, atol=1e-6)
    np.testing.assert_allclose(policy.act(obs, policy.task_embeddings[0].numpy()), before, atol=1e-6)
    assert np.abs(shared.act(obs, 'reach-v3') - before).max() > 1e-4
    # An instruction the stream never had acts with the shared networks; so does a task without a skill.
    other = policy.task_embeddings[0].numpy() * 0.5 + policy.task_embeddings[1].numpy() * 0.5
    np.testing.assert_allclose(policy.act(obs, other), shared.act(obs, other), atol=1e-6)
    np.testing.assert_allclose(policy.act(obs, 'push-v3'), shared.act(obs, 'push-v3'), atol=1e-6)
