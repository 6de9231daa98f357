"""Replay buffer: retention policies, sampling, persistence and input checks."""
import io

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from legion_core.replay import ReplayBuffer

OBS, ACT = 3, 2


def add_rows(buffer: ReplayBuffer, start: int, n: int, task=0) -> None:
    """Add rows whose obs encodes the row id: obs = id, next_obs = id + 0.5, reward = id."""
    ids = np.arange(start, start + n, dtype=np.float32)
    obs = np.repeat(ids[:, None], OBS, axis=1)
    buffer.add(obs, np.zeros((n, ACT)), ids, obs + 0.5, np.zeros(n, dtype=bool), task)


def stored_ids(buffer: ReplayBuffer) -> list[int]:
    slots = buffer.stored_slots()
    return sorted(buffer.storage['obs'][slots, 0].long().tolist())


def test_fifo_keeps_the_newest_rows_when_it_wraps():
    buffer = ReplayBuffer(10, OBS, ACT, 2)
    add_rows(buffer, 0, 7)
    assert len(buffer) == 7 and stored_ids(buffer) == list(range(7))
    add_rows(buffer, 7, 8, task=1)
    assert len(buffer) == 10 and stored_ids(buffer) == list(range(5, 15))
    assert buffer.task_counts() == {0: 2, 1: 8}
    add_rows(buffer, 15, 23)  # a batch larger than the capacity
    assert stored_ids(buffer) == list(range(28, 38))
    batch = buffer.sample(256)
    assert set(batch['obs'][:, 0].long().tolist()) <= set(range(28, 38))
    np.testing.assert_array_equal(batch['next_obs'], batch['obs'] + 0.5)  # rows stay aligned
    np.testing.assert_array_equal(batch['reward'], batch['obs'][:, 0])


def test_sample_among_rows_of_a_fifo_that_never_wrapped_and_refuses_otherwise():
    buffer = ReplayBuffer(10, OBS, ACT, 2)
    add_rows(buffer, 0, 4)
    add_rows(buffer, 4, 3, task=1)
    batch = buffer.sample(256, (4, 7))  # the second task's rows, in the order they were added
    assert set(batch['obs'][:, 0].long().tolist()) == {4, 5, 6} and (batch['task'] == 1).all()
    with pytest.raises(ValueError, match='never wrapped'):
        buffer.sample(4, (5, 8))  # beyond the rows stored
    add_rows(buffer, 7, 5)  # wraps: rows no longer lie in the order they were added
    with pytest.raises(ValueError, match='never wrapped'):
        buffer.sample(4, (0, 3))


def test_sample_shapes_dtypes_and_device():
    buffer = ReplayBuffer(50, OBS, ACT, 4)
    add_rows(buffer, 0, 20, task=np.arange(20) % 4)
    batch = buffer.sample(16)
    shapes = {name: tuple(t.shape) for name, t in batch.items()}
    assert shapes == {'obs': (16, OBS), 'action': (16, ACT), 'reward': (16,), 'next_obs': (16, OBS),
                      'done': (16,), 'task': (16,), 'horizon': (16,), 'teacher_action': (16, ACT)}
    assert batch['task'].dtype == torch.int64 and batch['done'].dtype == torch.float32
    assert all(t.device == buffer.device for t in batch.values())
    torch.testing.assert_close(batch['task'], batch['obs'][:, 0].long() % 4)


def test_done_is_stored_as_float_terminal_flag():
    buffer = ReplayBuffer(4, OBS, ACT, 1)
    buffer.add(torch.zeros(2, OBS), torch.zeros(2, ACT), torch.zeros(2, 1), torch.zeros(2, OBS),
               torch.tensor([[True], [False]]), torch.tensor([0, 0]))
    assert buffer.storage['done'][:2].tolist() == [1.0, 0.0]


def test_reservoir_keeps_a_uniform_sample_of_the_stream():
    capacity, stream = 1000, 20000
    buffer = ReplayBuffer(capacity, OBS, ACT, 1, policy='reservoir', seed=3)
    for start in range(0, stream, 37):  # odd batch size: batches straddle the fill point
        add_rows(buffer, start, min(37, stream - start))
    ids = np.array(stored_ids(buffer))
    assert len(buffer) == capacity and len(np.unique(ids)) == capacity
    counts = np.bincount(ids // 1000, minlength=stream // 1000)  # 20 stream segments, 50 expected each
    assert chisquare(counts).pvalue > 1e-3, counts
    assert buffer.seen == stream


def test_reservoir_fills_in_order_before_it_is_full():
    buffer = ReplayBuffer(10, OBS, ACT, 1, policy='reservoir')
    add_rows(buffer, 0, 6)
    assert stored_ids(buffer) == list(range(6))
    np.testing.assert_array_equal(buffer.storage['obs'][:6, 0], np.arange(6))


def test_task_quota_thins_older_tasks_uniformly_when_a_task_arrives():
    buffer = ReplayBuffer(90, OBS, ACT, 5, policy='task_quota', seed=0)
    add_rows(buffer, 0, 100, task=0)
    assert buffer.task_counts() == {0: 90}
    assert stored_ids(buffer) == list(range(10, 100))  # FIFO within the task: its newest rows
    add_rows(buffer, 1000, 60, task=1)
    assert buffer.task_counts() == {0: 45, 1: 45}
    kept = [i for i in stored_ids(buffer) if i < 1000]
    assert set(kept) < set(range(10, 100)) and len(kept) == 45
    assert min(kept) < 55 <= max(kept)  # a random subset, not the newest or the oldest half
    assert [i for i in stored_ids(buffer) if i >= 1000] == list(range(1015, 1060))
    add_rows(buffer, 2000, 10, task=2)
    assert buffer.task_counts() == {0: 30, 1: 30, 2: 10}
    batch = buffer.sample(2000)
    sampled = set(batch['obs'][:, 0].long().tolist())
    assert sampled <= set(stored_ids(buffer)) and len(sampled) == 70
    torch.testing.assert_close(batch['task'], (batch['obs'][:, 0] // 1000).long())


def test_task_quota_thinning_is_uniform_over_rows():
    hits = np.zeros(40)
    for seed in range(150):
        buffer = ReplayBuffer(40, OBS, ACT, 2, policy='task_quota', seed=seed)
        add_rows(buffer, 0, 40, task=0)
        add_rows(buffer, 1000, 1, task=1)
        hits[[i for i in stored_ids(buffer) if i < 40]] += 1
    # Every row of task 0 survives with probability 20/40; compare in 8 blocks of 5 rows.
    assert chisquare(hits.reshape(8, 5).sum(1)).pvalue > 1e-3, hits


def test_fixed_task_quota_and_mixed_task_batches():
    buffer = ReplayBuffer(60, OBS, ACT, 4, policy='task_quota', task_quota=20)
    add_rows(buffer, 0, 150, task=np.arange(150) % 3)  # three tasks in one batch
    assert buffer.task_counts() == {0: 20, 1: 20, 2: 20}
    assert stored_ids(buffer) == list(range(90, 150))  # each task's newest 20
    with pytest.raises(ValueError, match='capacity 60'):
        add_rows(buffer, 0, 1, task=3)


@pytest.mark.parametrize('policy', ['fifo', 'reservoir', 'task_quota'])
def test_state_dict_round_trip_continues_identically(policy):
    buffer = ReplayBuffer(64, OBS, ACT, 3, policy=policy, seed=5)
    for task in range(3):
        add_rows(buffer, 100 * task, 50, task=task)
    buffer.sample(8)  # advance the sampling generator
    saved = io.BytesIO()
    torch.save(buffer.state_dict(), saved)
    saved.seek(0)
    restored = ReplayBuffer(64, OBS, ACT, 3, policy=policy, seed=99)
    restored.load_state_dict(torch.load(saved))
    assert len(restored) == len(buffer) and restored.task_counts() == buffer.task_counts()
    for copy in (buffer, restored):
        add_rows(copy, 900, 30, task=1)  # exercises the add generator (reservoir, thinning)
        add_rows(copy, 950, 5, task=0)
    first, second = buffer.sample(32), restored.sample(32)
    for name in first:
        torch.testing.assert_close(first[name], second[name])
    assert stored_ids(buffer) == stored_ids(restored)


def test_state_dict_from_another_configuration_is_refused():
    state = ReplayBuffer(8, OBS, ACT, 2).state_dict()
    with pytest.raises(ValueError, match='saved with'):
        ReplayBuffer(8, OBS, ACT, 2, policy='reservoir').load_state_dict(state)


def test_bad_input_names_expected_and_received_shapes():
    buffer = ReplayBuffer(8, OBS, ACT, 2)
    with pytest.raises(ValueError, match=r'obs: expected shape \[N, 3\], got \(2, 4\)'):
        buffer.add(np.zeros((2, 4)), np.zeros((2, ACT)), np.zeros(2), np.zeros((2, OBS)), np.zeros(2), 0)
    with pytest.raises(ValueError, match=r'action: expected shape \[2, 2\], got \(2, 3\)'):
        buffer.add(np.zeros((2, OBS)), np.zeros((2, 3)), np.zeros(2), np.zeros((2, OBS)), np.zeros(2), 0)
    with pytest.raises(ValueError, match=r'reward: expected shape \[2\] or \[2, 1\], got \(3,\)'):
        buffer.add(np.zeros((2, OBS)), np.zeros((2, ACT)), np.zeros(3), np.zeros((2, OBS)), np.zeros(2), 0)
    with pytest.raises(ValueError, match=r'task indices must lie in \[0, 2\)'):
        buffer.add(np.zeros((2, OBS)), np.zeros((2, ACT)), np.zeros(2), np.zeros((2, OBS)), np.zeros(2), 2)
    with pytest.raises(ValueError, match='empty'):
        buffer.sample(4)
    with pytest.raises(ValueError, match='capacity'):
        ReplayBuffer(0, OBS, ACT, 2)
    with pytest.raises(ValueError, match='fifo, reservoir, task_quota'):
        ReplayBuffer(8, OBS, ACT, 2, policy='lifo')
    with pytest.raises(ValueError, match='task_quota'):
        ReplayBuffer(8, OBS, ACT, 2, task_quota=4)


def test_reservoir_batched_add_equals_adding_row_by_row():
    # Rows of one batch that pick the same slot must resolve as if added one at a time (last wins).
    batched = ReplayBuffer(10, OBS, ACT, 1, policy='reservoir', seed=7)
    single = ReplayBuffer(10, OBS, ACT, 1, policy='reservoir', seed=7)
    for start in range(0, 200, 50):
        add_rows(batched, start, 50)
    for i in range(200):
        add_rows(single, i, 1)
    torch.testing.assert_close(batched.storage['obs'], single.storage['obs'])


def test_n_step_rows_sum_discounted_rewards_and_stop_at_episode_ends():
    from legion_core.replay import NStepReturns

    acc = NStepReturns(3, 0.5, copies=2)
    obs = lambda t: np.full((2, 1), float(t))  # noqa: E731 - observation = step index
    no = np.zeros(2, dtype=bool)
    rows = [acc.push(obs(t), obs(t), np.array([1.0, 10.0]), obs(t + 1), no, no, np.array([0, 1]))
            for t in range(2)]
    assert rows == [None, None]  # nothing has 3 steps after it yet
    out = acc.push(obs(2), obs(2), np.array([1.0, 10.0]), obs(3), no, no, np.array([0, 1]))
    assert out['obs'][:, 0].tolist() == [0.0, 0.0] and out['next_obs'][:, 0].tolist() == [3.0, 3.0]
    assert out['reward'].tolist() == [1.75, 17.5] and out['horizon'].tolist() == [3, 3]
    assert out['task'].tolist() == [0, 1] and out['done'].tolist() == [0, 0]
    # Copy 1's episode ends at step 3 (time limit): its two pending rows and this one leave, shorter.
    ended = np.array([False, True])
    out = acc.push(obs(3), obs(3), np.array([1.0, 10.0]), obs(4), no, ended, np.array([0, 1]))
    assert out['obs'][:, 0].tolist() == [1.0, 1.0, 2.0, 3.0]
    assert out['horizon'].tolist() == [3, 3, 2, 1] and out['reward'].tolist() == [1.75, 17.5, 15.0, 10.0]
    assert all(next_obs == 4.0 for next_obs in out['next_obs'][:, 0])
    assert [len(q) for q in acc.pending] == [2, 0]
    flushed = acc.flush(obs(4))  # copy 0's rest: bootstrapped from where it stands
    assert flushed['obs'][:, 0].tolist() == [2.0, 3.0] and flushed['horizon'].tolist() == [2, 1]
    assert acc.flush(obs(4)) is None


def test_replay_saved_before_horizons_loads_as_one_step_rows():
    buffer = ReplayBuffer(10, 3, 2, 1)
    buffer.add(np.ones((4, 3)), np.zeros((4, 2)), np.ones(4), np.ones((4, 3)), np.zeros(4), 0,
               horizon=[3, 3, 2, 1])
    state = buffer.state_dict()
    del state['storage']['horizon']
    restored = ReplayBuffer(10, 3, 2, 1)
    restored.load_state_dict(state)
    assert restored.storage['horizon'][:4].tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize('policy', ['fifo', 'reservoir', 'task_quota'])
def test_teacher_actions_label_only_the_given_tasks_and_stay_with_their_rows(policy, monkeypatch):
    monkeypatch.setattr('legion_core.replay.LABEL_CHUNK', 3)  # several chunks of a few rows
    buffer = ReplayBuffer(40, OBS, ACT, 3, policy=policy)
    add_rows(buffer, 0, 10, task=0)
    add_rows(buffer, 10, 10, task=1)
    calls = []

    def teacher(obs, task):  # an action that names its row: (row id, task)
        calls.append(len(obs))
        return torch.stack([obs[:, 0], task.float()], dim=1)

    assert buffer.set_teacher_actions(range(1), teacher) == 10 and max(calls) <= 3
    add_rows(buffer, 20, 30, task=2)  # fifo wraps, reservoir replaces, task_quota thins task 0 and 1
    slots = buffer.stored_slots()
    rows, label = buffer.storage['obs'][slots, 0], buffer.storage['teacher_action'][slots]
    task = buffer.storage['task'][slots]
    torch.testing.assert_close(label[task == 0, 0], rows[task == 0])  # task 0's rows kept their labels
    assert (label[task == 0, 1] == 0).all()
    assert (label[task != 0] == 0).all()  # the others were never labelled
    batch = buffer.sample(64)
    reach = batch['task'] == 0
    torch.testing.assert_close(batch['teacher_action'][reach, 0], batch['obs'][reach, 0])


def test_replay_saved_before_teacher_actions_loads_and_says_they_are_missing():
    buffer = ReplayBuffer(10, 3, 2, 1)
    add_rows(buffer, 0, 4)
    state = buffer.state_dict()
    restored = ReplayBuffer(10, 3, 2, 1)
    restored.load_state_dict(state)
    assert not restored.teacher_actions_missing
    del state['storage']['teacher_action']
    restored.load_state_dict(state)
    assert restored.teacher_actions_missing and (restored.storage['teacher_action'] == 0).all()


def _ids_by_task(batch):
    return {int(k): sorted(set(batch['obs'][batch['task'] == k, 0].long().tolist()))
            for k in batch['task'].unique()}


def test_sample_by_task_draws_the_asked_rows_of_each_task_among_its_own():
    buffer = ReplayBuffer(30, OBS, ACT, 3)
    add_rows(buffer, 0, 12, task=0)
    add_rows(buffer, 12, 4, task=1)
    add_rows(buffer, 16, 6, task=0)  # task 0 again: a second run of its rows
    assert buffer.task_sizes() == {0: 18, 1: 4}
    batch = buffer.sample_by_task({1: 300, 0: 500})
    assert batch['task'][:300].eq(1).all() and batch['task'][300:].eq(0).all()
    ids = _ids_by_task(batch)
    assert ids[1] == list(range(12, 16)) and ids[0] == [*range(12), *range(16, 22)]  # every row, no other
    assert set(batch) == set(buffer.storage)
    add_rows(buffer, 22, 20, task=2)  # wraps: ids 0-11 of task 0 are overwritten
    assert buffer.task_sizes() == {1: 4, 0: 6, 2: 20} == buffer.task_counts()
    assert _ids_by_task(buffer.sample_by_task({0: 200}))[0] == list(range(16, 22))
    with pytest.raises(ValueError, match='no rows of task 1'):
        add_rows(buffer, 42, 30, task=2)  # task 1's rows are gone too
        buffer.sample_by_task({1: 1})


def test_sample_by_task_under_task_quota_and_the_policies_that_cannot():
    quota = ReplayBuffer(20, OBS, ACT, 2, policy='task_quota')
    add_rows(quota, 0, 15, task=0)
    add_rows(quota, 15, 8, task=1)  # task 0 thinned to 10 rows
    sizes = quota.task_sizes()
    assert sizes == {0: 10, 1: 8}
    kept = set(_ids_by_task(quota.sample_by_task({0: 400}))[0])
    assert len(kept) == 10 and kept <= set(range(15))
    reservoir = ReplayBuffer(20, OBS, ACT, 2, policy='reservoir')
    add_rows(reservoir, 0, 5)
    with pytest.raises(ValueError, match='fifo and task_quota'):
        reservoir.sample_by_task({0: 1})
    interleaved = ReplayBuffer(5000, OBS, ACT, 2)
    for i in range(1100):  # multi-task rows: one run per add
        add_rows(interleaved, 2 * i, 2, task=np.array([0, 1]))
    with pytest.raises(ValueError, match='interleaved'):
        interleaved.task_sizes()


@pytest.mark.parametrize('policy', ['fifo', 'reservoir', 'task_quota'])
def test_sample_balanced_gives_every_stored_task_an_equal_share_of_its_own_rows(policy):
    buffer = ReplayBuffer(400, OBS, ACT, 3, policy=policy)
    add_rows(buffer, 0, 300, task=0)  # a long phase
    add_rows(buffer, 300, 5, task=2)  # a short one
    add_rows(buffer, 305, 40, task=1)
    stored = {int(k): set(buffer.storage['obs'][buffer.stored_slots()][buffer.storage['task'][
        buffer.stored_slots()] == k, 0].long().tolist()) for k in range(3)}
    batch = buffer.sample_balanced(3001)
    assert len(batch['task']) == 3001 and set(batch) == set(buffer.storage)
    assert torch.bincount(batch['task'].long()).tolist() == [1001, 1000, 1000]
    for task, ids in _ids_by_task(batch).items():
        assert set(ids) <= stored[task]
    assert set(_ids_by_task(batch)[2]) == stored[2]  # drawn among all of a task's rows
    with pytest.raises(ValueError, match='positive integer'):
        buffer.sample_balanced(0)


def test_runs_survive_a_state_round_trip_and_are_rebuilt_for_older_states():
    buffer = ReplayBuffer(10, OBS, ACT, 2)
    add_rows(buffer, 0, 6, task=0)
    add_rows(buffer, 6, 8, task=1)  # wraps
    state = buffer.state_dict()
    for saved in (state, {k: v for k, v in state.items() if k != 'runs'}):
        restored = ReplayBuffer(10, OBS, ACT, 2)
        restored.load_state_dict(saved)
        assert restored.task_sizes() == buffer.task_sizes() == {0: 2, 1: 8}
        assert _ids_by_task(restored.sample_by_task({0: 100}))[0] == [4, 5]
