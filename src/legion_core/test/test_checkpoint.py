"""Atomic checkpoints and exact resume."""
import json

import numpy as np
import pytest
import torch
from test_trainer import small_config

from legion_core import checkpoint as ckpt
from legion_core.checkpoint import atomic_save
from legion_core.trainer import Trainer, resume_trainer

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
