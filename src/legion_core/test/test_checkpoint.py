"""Atomic checkpoints, exact resume, and the exported policy."""
import json

import numpy as np
import pytest
import torch
from test_trainer import small_config

from legion_core import checkpoint as ckpt
from legion_core.checkpoint import atomic_save, export_policy, load_policy, resume_trainer
from legion_core.trainer import Trainer

torch.set_num_threads(1)


def tensors_equal(a, b, path=''):
    """Recursively compare two state dicts; returns the paths that differ."""
    if isinstance(a, dict):
        return [d for k in a for d in tensors_equal(a[k], b[k], f'{path}/{k}')]
    if isinstance(a, (list, tuple)):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in tensors_equal(x, y, f'{path}[{i}]')]
    if torch.is_tensor(a):
        return [] if torch.equal(a, b) else [path]
    if isinstance(a, np.ndarray):
        return [] if np.array_equal(a, b, equal_nan=True) else [path]
    return [] if a == b else [path]


def test_atomic_save_never_leaves_a_torn_file(tmp_path, monkeypatch):
    path = tmp_path / 'c.pt'
    atomic_save({'x': 1}, path)

    def broken(obj, f):
        f.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(ckpt.torch, 'save', broken)
    with pytest.raises(OSError, match='disk full'):
        atomic_save({'x': 2}, path)
    monkeypatch.undo()
    assert torch.load(path) == {'x': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['c.pt']  # no temporary file left behind


def test_resume_after_a_phase_matches_an_uninterrupted_run(tmp_path):
    cfg = small_config('train.eval_every=0', 'train.checkpoint_every=0', 'train.steps_per_task=120')
    straight = Trainer(cfg, tmp_path / 'a', progress=False)
    straight.run()

    first = Trainer(cfg, tmp_path / 'b', progress=False)
    first.run(max_env_steps=120)  # exactly phase 0: stops after its checkpoint
    saved = torch.load(tmp_path / 'b' / 'checkpoints' / 'last.pt', weights_only=False)
    assert saved['position']['phase'] == 1 and saved['position']['local_step'] == 0

    resumed = resume_trainer(tmp_path / 'b', progress=False)
    # State identical after load.
    assert tensors_equal(first.agent.state_dict(), resumed.agent.state_dict()) == []
    assert tensors_equal(first.replay.state_dict(), resumed.replay.state_dict()) == []
    obs = np.random.default_rng(0).normal(size=(4, 12)).astype(np.float32)
    assert np.array_equal(first.agent.act(obs, 1, True), resumed.agent.act(obs, 1, True))

    metrics = resumed.run()
    # Continuing gives the state an uninterrupted run has: same weights, same success matrix.
    assert tensors_equal(straight.agent.state_dict(), resumed.agent.state_dict()) == []
    expected = json.loads((tmp_path / 'a' / 'metrics.json').read_text())
    assert metrics['success_matrix'] == expected['success_matrix']
    assert metrics['env_steps'] == expected['env_steps'] == 240
    a_rows = (tmp_path / 'a' / 'evals.jsonl').read_text()
    assert (tmp_path / 'b' / 'evals.jsonl').read_text() == a_rows


def test_killed_mid_phase_resumes_from_the_last_checkpoint(tmp_path):
    cfg = small_config('train.checkpoint_every=50', 'train.steps_per_task=120', 'train.eval_every=60')
    trainer = Trainer(cfg, tmp_path, progress=False)
    trainer.run(max_env_steps=80)  # periodic checkpoint at 50, stop checkpoint at 80
    state = torch.load(tmp_path / 'checkpoints' / 'last.pt', weights_only=False)
    assert state['position']['env_steps'] == 80 and state['position']['phase'] == 0
    # Simulate a kill after more work: evals logged after the checkpoint must not be duplicated.
    with open(tmp_path / 'evals.jsonl', 'a') as f:
        f.write('{"stale": true}\n')
    resumed = resume_trainer(tmp_path, progress=False)
    assert resumed.position['env_steps'] == 80
    metrics = resumed.run()
    assert metrics['complete'] and metrics['env_steps'] == 240
    rows = [json.loads(line) for line in (tmp_path / 'evals.jsonl').read_text().splitlines()]
    assert not any('stale' in r for r in rows)
    assert len(rows) == 2 * 3 * 2


def test_checkpoint_without_replay_rewarms(tmp_path):
    cfg = small_config('train.checkpoint_replay=none', 'train.eval_every=0')
    Trainer(cfg, tmp_path, progress=False).run(max_env_steps=120)
    resumed = resume_trainer(tmp_path, progress=False)
    assert len(resumed.replay) == 0
    assert resumed.position['warmup_end'] == 120 + 50  # the current task warms up again
    updates = resumed.agent.num_updates
    resumed.run(max_env_steps=40)
    assert resumed.agent.num_updates == updates  # still warming up: no updates on an empty buffer


def test_exported_policy_acts_like_the_agent(tmp_path):
    cfg = small_config('train.eval_every=0', 'train.steps_per_task=120')
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
    assert ckpt.default_policy_path() == ckpt.SHIPPED_POLICY
    monkeypatch.setenv('LEGION_POLICY', str(tmp_path / 'missing.pt'))
    assert ckpt.default_policy_path() == ckpt.SHIPPED_POLICY
    (tmp_path / 'policy.pt').write_bytes(b'x')
    monkeypatch.setenv('LEGION_POLICY', str(tmp_path / 'policy.pt'))
    assert ckpt.default_policy_path() == tmp_path / 'policy.pt'
    monkeypatch.setattr(ckpt, 'SHIPPED_POLICY', tmp_path / 'not-shipped.pt')
    monkeypatch.delenv('LEGION_POLICY')
    assert ckpt.default_policy_path() is None


def test_the_shipped_policy_loads_and_acts_on_its_tasks():
    policy = load_policy(ckpt.SHIPPED_POLICY)
    assert policy.tasks == ['reach-v3', 'drawer-close-v3', 'window-close-v3']
    assert policy.env['embodiment'] == 'twin'  # trained through the arm's own chain
    obs = np.zeros((3, policy.obs_dim), dtype=np.float32)
    for task in policy.tasks:
        actions = policy.act(obs, task)
        assert actions.shape == (3, 4) and np.all(np.abs(actions) <= 1)
    beside = ckpt.SHIPPED_POLICY.parent
    assert (beside / 'metrics.json').is_file() and 'legion train' in (beside / 'README.md').read_text()
