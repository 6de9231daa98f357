"""Replay buffer on the training device, with an explicit retention policy.

The original kept a 10 M-row FIFO on the host, as large as the whole stream, so nothing was ever
evicted (full replay, legion-original.md §1.6), and copied every batch to the GPU (§8.1.2). Here the
storage is preallocated torch tensors on ``device`` and ``sample`` draws indices there with
``torch.randint`` and the buffer's own ``torch.Generator``: no host sync, no host copy.

Stored per transition: ``obs`` [D] and ``next_obs`` [D] float32, ``action`` [A] float32, ``reward``
float32, ``done`` float32 (1 = terminal; a time-limit truncation is NOT terminal, so Meta-World's
transitions are all 0), ``task`` int64 (the task's index in the stream) and ``horizon`` float32 (the
env steps the row spans: 1, or up to n for the n-step rows of ``NStepReturns``, whose ``reward`` is
the discounted sum and ``next_obs`` the observation n steps later), and ``teacher_action`` [A]
float32: what the row's task is to keep doing at ``obs`` once it is learnt (``agent.distill``), set by
:meth:`ReplayBuffer.set_teacher_actions` at a task switch and 0 until then. ``sample`` returns those
keys with shapes [B, D], [B, A], [B], [B], [B], [B], [B, A].

Retention policies (what happens once the buffer is full):

- ``fifo``: a ring; the oldest row is overwritten. With ``capacity`` >= the stream length this is the
  original's full replay.
- ``reservoir``: classic reservoir sampling over the whole stream: the t-th transition (0-based) is
  kept with probability capacity / (t + 1), replacing a uniformly chosen row, so the buffer is a
  uniform sample of everything seen.
- ``task_quota``: each task seen so far owns at most ``capacity // tasks_seen`` rows (or the fixed
  ``task_quota``). A task fills its quota, then overwrites its own oldest rows (FIFO within the task,
  so the current task keeps its newest data). When a new task arrives, every older task is thinned to
  its new quota by keeping a uniformly random subset of its rows.

Sampling is uniform over the stored rows under every policy. ``sample_by_task`` draws given numbers
of rows per task instead (uniform within each task), for fifo and task_quota buffers: a lifelong
trainer can give the task being learnt a fixed share of each batch and its earlier tasks equal ones,
however long each one's phase ran (``train.current_ratio``). A fifo buffer keeps, for this, the runs
of consecutive rows of one task in the order they were added (one per task in a lifelong stream).
Decisions made while adding (reservoir slots, thinning) use a second, CPU generator, so ``add`` never
reads back from the device.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

POLICIES: tuple[str, ...] = ('fifo', 'reservoir', 'task_quota')
FIELDS: tuple[str, ...] = ('obs', 'action', 'reward', 'next_obs', 'done', 'task', 'horizon', 'teacher_action')
# Runs a fifo tracks for sample_by_task: a lifelong stream has one per task; rows of tasks interleaved
# step by step (multi-task training) would need one per add, so tracking stops there.
MAX_RUNS = 1024
LABEL_CHUNK = 65536  # rows per call of set_teacher_actions' function: bounded memory for millions of rows


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')
    return int(value)


def _runs(task: torch.Tensor, first: int) -> list[list[int]]:
    """[task, first, end) of each run of equal consecutive task ids, rows numbered from ``first``."""
    if task.numel() == 0:
        return []
    starts = torch.nonzero(task[1:] != task[:-1]).flatten().add(1).tolist()
    return [[int(task[a]), first + a, first + b]
            for a, b in zip([0, *starts], [*starts, task.numel()], strict=True)]


class ReplayBuffer:
    """Preallocated transitions on ``device`` with a fifo / reservoir / task_quota policy."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, num_tasks: int, *,
                 device: str | torch.device = 'cpu', policy: str = 'fifo', task_quota: int | None = None,
                 seed: int = 0):
        self.capacity = _positive_int('capacity', capacity)
        self.obs_dim = _positive_int('obs_dim', obs_dim)
        self.action_dim = _positive_int('action_dim', action_dim)
        self.num_tasks = _positive_int('num_tasks', num_tasks)
        if policy not in POLICIES:
            raise ValueError(f'unknown replay policy {policy!r}; valid: {", ".join(POLICIES)}')
        if task_quota is not None:
            if policy != 'task_quota':
                raise ValueError(f'task_quota is only used by policy=\'task_quota\', not {policy!r}')
            task_quota = _positive_int('task_quota', task_quota)
            if task_quota > self.capacity:
                raise ValueError(f'task_quota {task_quota} exceeds the capacity {self.capacity}')
        self.policy = policy
        self.task_quota = task_quota
        self.device = torch.device(device)
        self.seed = int(seed)
        c, d, a = self.capacity, self.obs_dim, self.action_dim
        self.storage: dict[str, torch.Tensor] = {
            'obs': torch.zeros(c, d, device=self.device),
            'action': torch.zeros(c, a, device=self.device),
            'reward': torch.zeros(c, device=self.device),
            'next_obs': torch.zeros(c, d, device=self.device),
            'done': torch.zeros(c, device=self.device),
            'task': torch.zeros(c, dtype=torch.int64, device=self.device),
            'horizon': torch.ones(c, device=self.device),
            'teacher_action': torch.zeros(c, a, device=self.device),
        }
        # Whether rows loaded from a checkpoint written before teacher_action existed still lack it.
        self.teacher_actions_missing = False
        self.sample_generator = torch.Generator(device=self.device)
        self.sample_generator.manual_seed(self.seed)
        self.add_generator = torch.Generator()  # host-side decisions (reservoir slots, thinning)
        self.add_generator.manual_seed(self.seed + 1)
        self.size = 0  # rows stored
        self.seen = 0  # transitions ever added (the reservoir counter)
        self.position = 0  # fifo write pointer
        # task_quota bookkeeping, all on the host: the slots each task owns (oldest first after
        # ``head``), a stack of free slots and the map from a sample index to a slot (on the device).
        self.owned: dict[int, torch.Tensor] = {}
        self.head: dict[int, int] = {}
        self.tasks_seen: list[int] = []
        self.free = torch.arange(c - 1, -1, -1)  # popped from the end: low slots are used first
        self.num_free = c
        # fifo bookkeeping for sample_by_task, on the host: [task, first, end) runs of the rows added,
        # counted from the first row ever added (row g sits in slot g % capacity while g >= seen - capacity).
        self.runs: list[list[int]] | None = []  # None: more than MAX_RUNS, not tracked
        self.high_water = 0  # 1 + the highest slot ever written
        self.slot_map = torch.zeros(c, dtype=torch.int64, device=self.device) \
            if policy == 'task_quota' else None

    # ----------------------------------------------------------------------------------------------
    # adding

    def _as_rows(self, name: str, value: Any, n: int | None, width: int | None, dtype) -> torch.Tensor:
        tensor = torch.as_tensor(value, dtype=dtype, device=self.device)
        if width is None:  # scalars per row: [N] or [N, 1]
            if tensor.dim() == 2 and tensor.shape[1] == 1:
                tensor = tensor[:, 0]
            expected = f'[{n if n is not None else "N"}] or [{n if n is not None else "N"}, 1]'
            if tensor.dim() != 1 or (n is not None and tensor.shape[0] != n):
                raise ValueError(f'{name}: expected shape {expected}, got {tuple(tensor.shape)}')
        elif tensor.dim() != 2 or tensor.shape[1] != width or (n is not None and tensor.shape[0] != n):
            raise ValueError(f'{name}: expected shape [{n if n is not None else "N"}, {width}], '
                             f'got {tuple(tensor.shape)}')
        return tensor

    def add(self, obs, action, reward, next_obs, done, task, horizon=None) -> None:
        """Add N transitions (torch tensors or numpy arrays); ``task`` is an int or [N] ints; ``horizon``
        [N] the env steps each row spans (default 1)."""
        rows = {'obs': self._as_rows('obs', obs, None, self.obs_dim, torch.float32)}
        n = rows['obs'].shape[0]
        if n == 0:
            return
        rows['action'] = self._as_rows('action', action, n, self.action_dim, torch.float32)
        rows['reward'] = self._as_rows('reward', reward, n, None, torch.float32)
        rows['next_obs'] = self._as_rows('next_obs', next_obs, n, self.obs_dim, torch.float32)
        rows['done'] = self._as_rows('done', done, n, None, torch.float32)
        rows['horizon'] = (torch.ones(n, device=self.device) if horizon is None
                           else self._as_rows('horizon', horizon, n, None, torch.float32))
        rows['teacher_action'] = torch.zeros(n, self.action_dim, device=self.device)
        # Task indices are checked and grouped on the host (they come from the trainer, not the GPU).
        task_host = torch.as_tensor(task, dtype=torch.int64, device='cpu')
        if task_host.dim() == 0:
            task_host = task_host.expand(n)
        elif task_host.dim() == 2 and task_host.shape[1] == 1:
            task_host = task_host[:, 0]
        if task_host.shape != (n,):
            raise ValueError(f'task: expected an int or shape [{n}], got {tuple(task_host.shape)}')
        if task_host.min() < 0 or task_host.max() >= self.num_tasks:
            raise ValueError(f'task indices must lie in [0, {self.num_tasks}), got '
                             f'{sorted(set(task_host.tolist()))}')
        rows['task'] = task_host.to(self.device)
        if self.policy == 'fifo':
            self._add_runs(task_host)
            self._add_fifo(rows, n)
        elif self.policy == 'reservoir':
            self._add_reservoir(rows, n)
        else:
            self._add_task_quota(rows, task_host)
        self.seen += n

    def _write(self, slots: torch.Tensor, rows: dict[str, torch.Tensor], select=None) -> None:
        slots = slots.to(self.device)
        if select is not None:
            select = select.to(self.device)
        for name, tensor in self.storage.items():
            tensor[slots] = rows[name] if select is None else rows[name][select]

    def _add_fifo(self, rows: dict[str, torch.Tensor], n: int) -> None:
        c = self.capacity
        if n > c:  # only the newest `capacity` rows survive
            rows = {name: value[n - c:] for name, value in rows.items()}
            self.position = (self.position + n - c) % c
            n = c
        # Slots computed on the device: the fifo path needs no host-to-device index copy.
        slots = (self.position + torch.arange(n, device=self.device)) % c
        self._write(slots, rows)
        self.position = (self.position + n) % c
        self.size = min(self.size + n, c)
        self.high_water = self.size

    def _add_runs(self, task_host: torch.Tensor) -> None:
        if self.runs is None:
            return
        for task, first, end in _runs(task_host, self.seen):
            if self.runs and self.runs[-1][0] == task and self.runs[-1][2] == first:
                self.runs[-1][2] = end
            else:
                self.runs.append([task, first, end])
        oldest = self.seen + task_host.numel() - self.capacity
        while self.runs and self.runs[0][2] <= oldest:  # overwritten entirely
            self.runs.pop(0)
        if len(self.runs) > MAX_RUNS:
            self.runs = None

    def _runs_from_storage(self) -> list[list[int]] | None:
        """The fifo's runs rebuilt from the stored task column (a state saved before they were kept)."""
        oldest = self.seen - self.size
        order = (oldest + torch.arange(self.size)) % self.capacity
        runs = _runs(self.storage['task'][order.to(self.device)].cpu(), oldest)
        return runs if len(runs) <= MAX_RUNS else None

    def _add_reservoir(self, rows: dict[str, torch.Tensor], n: int) -> None:
        c = self.capacity
        t = self.seen + torch.arange(n, dtype=torch.float64)
        draw = torch.floor(torch.rand(n, dtype=torch.float64, generator=self.add_generator) * (t + 1))
        slots = torch.where(t < c, t, draw).long()
        keep = slots < c
        row_index = torch.arange(n)[keep]
        slots = slots[keep]
        if slots.numel() > 1:
            # Rows replacing the same slot: the later one wins, as if they were added one by one.
            order = torch.sort(slots, stable=True)
            last = torch.ones_like(order.values, dtype=torch.bool)
            last[:-1] = order.values[1:] != order.values[:-1]
            slots, row_index = order.values[last], row_index[order.indices[last]]
        self._write(slots, rows, row_index)
        self.size = min(self.size + n, c)
        self.high_water = self.size

    # task_quota ------------------------------------------------------------------------------------

    def quota(self, task: int) -> int:
        """Rows task ``task`` may hold now (0 for a task not seen yet)."""
        if task not in self.tasks_seen:
            return 0
        if self.task_quota is not None:
            return self.task_quota
        m = len(self.tasks_seen)
        return self.capacity // m + (1 if self.tasks_seen.index(task) < self.capacity % m else 0)

    def _linear(self, task: int) -> torch.Tensor:
        """The slots of ``task``, oldest first."""
        owned = self.owned[task]
        return torch.cat([owned[self.head[task]:], owned[:self.head[task]]])

    def _new_task(self, task: int) -> None:
        needed = (len(self.tasks_seen) + 1) * (self.task_quota or 1)
        if needed > self.capacity:
            raise ValueError(f'task {task} does not fit: {len(self.tasks_seen) + 1} tasks x quota '
                             f'{self.task_quota or 1} > capacity {self.capacity}')
        self.tasks_seen.append(task)
        self.owned[task] = torch.zeros(0, dtype=torch.int64)
        self.head[task] = 0
        thinned = False
        for old in self.tasks_seen[:-1]:
            slots, quota = self._linear(old), self.quota(old)
            if slots.numel() > quota:
                # A uniformly random subset survives; sorted positions keep the oldest-first order.
                kept = torch.randperm(slots.numel(), generator=self.add_generator)[:quota].sort().values
                mask = torch.ones(slots.numel(), dtype=torch.bool)
                mask[kept] = False
                self._release(slots[mask])
                slots = slots[kept]
                thinned = True
            self.owned[old], self.head[old] = slots, 0
        if thinned:
            occupied = torch.cat([self.owned[k] for k in self.tasks_seen])
            self.size = occupied.numel()
            self.slot_map[:self.size] = occupied.to(self.device)

    def _release(self, slots: torch.Tensor) -> None:
        if self.free.numel() < self.num_free + slots.numel():
            self.free = torch.cat([self.free, torch.empty(slots.numel(), dtype=torch.int64)])
        self.free[self.num_free:self.num_free + slots.numel()] = slots.flip(0)
        self.num_free += slots.numel()

    def _add_task_quota(self, rows: dict[str, torch.Tensor], task_host: torch.Tensor) -> None:
        for task in dict.fromkeys(task_host.tolist()):  # tasks in order of first appearance
            if task not in self.tasks_seen:
                self._new_task(task)
            index = torch.nonzero(task_host == task).flatten()
            quota, owned = self.quota(task), self.owned[task]
            grow = min(index.numel(), quota - owned.numel())
            if grow > 0:
                fresh = self.free[self.num_free - grow:self.num_free].flip(0)
                self.num_free -= grow
                self._write(fresh, rows, index[:grow])
                self.slot_map[self.size:self.size + grow] = fresh.to(self.device)
                self.size += grow
                self.high_water = max(self.high_water, int(fresh.max()) + 1)
                owned = self.owned[task] = torch.cat([owned, fresh])
                index = index[grow:]
            if index.numel():  # the task is at its quota: overwrite its own oldest rows
                index = index[-quota:]
                positions = (self.head[task] + torch.arange(index.numel())) % quota
                self._write(owned[positions], rows, index)
                self.head[task] = (self.head[task] + index.numel()) % quota

    # ----------------------------------------------------------------------------------------------
    # sampling and inspection

    def sample(self, batch_size: int, rows: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        """``batch_size`` rows drawn uniformly with replacement, as tensors on the device. ``rows``
        (start, stop): only among those, counted in the order they were added; a fifo buffer that has
        never wrapped keeps that order (one task's rows of a buffer never overwritten)."""
        self._check_sample(batch_size)
        start, stop = (0, self.size) if rows is None else rows
        if rows is not None and not (self.policy == 'fifo' and self.seen <= self.capacity
                                     and 0 <= start < stop <= self.size):
            raise ValueError(f'rows {rows} are not rows {0}..{self.size} of a fifo buffer that has never '
                             f'wrapped ({self.policy}, {self.seen} added, capacity {self.capacity})')
        index = torch.randint(start, stop, (int(batch_size),), device=self.device,
                              generator=self.sample_generator)
        if self.slot_map is not None:
            index = self.slot_map[index]
        return {name: tensor[index] for name, tensor in self.storage.items()}

    def sample_balanced(self, batch_size: int) -> dict[str, torch.Tensor]:
        """``batch_size`` rows split equally over the tasks stored (the first ``batch_size % tasks``
        get one more), each drawn uniformly with replacement among that task's own rows, whatever the
        policy. For what should weigh every task alike however long each one ran (the DPMM's fits);
        it scans the task column, so it is for occasional batches, not every update."""
        self._check_sample(batch_size)
        slots = self.stored_slots()
        tasks = self.storage['task'][slots]
        present = torch.unique(tasks).tolist()
        share, extra = divmod(int(batch_size), len(present))
        parts = []
        for i, task in enumerate(present):
            count = share + (i < extra)
            if count:
                rows = slots[tasks == task]
                parts.append(rows[torch.randint(0, rows.numel(), (count,), device=self.device,
                                                generator=self.sample_generator)])
        index = torch.cat(parts)
        return {name: tensor[index] for name, tensor in self.storage.items()}

    def _check_sample(self, batch_size: int) -> None:
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f'batch_size must be a positive integer, got {batch_size!r}')
        if self.size == 0:
            raise ValueError('cannot sample from an empty replay buffer: add transitions first')

    def task_sizes(self) -> dict[int, int]:
        """Rows stored per task, from the bookkeeping of sample_by_task (fifo and task_quota; cheap
        enough to ask before every batch)."""
        if self.policy == 'task_quota':
            return {k: int(self.owned[k].numel()) for k in self.tasks_seen if self.owned[k].numel()}
        if self.policy != 'fifo':
            raise ValueError(f'rows per task are kept by fifo and task_quota buffers, not {self.policy!r}')
        if self.runs is None:
            raise ValueError(f'this fifo buffer holds tasks interleaved in more than {MAX_RUNS} runs '
                             '(multi-task rows): rows per task are not kept')
        oldest, sizes = self.seen - self.size, {}
        for task, first, end in self.runs:
            if end > oldest:
                sizes[task] = sizes.get(task, 0) + end - max(first, oldest)
        return sizes

    def sample_by_task(self, counts: dict[int, int]) -> dict[str, torch.Tensor]:
        """``counts[task]`` rows of each task, drawn uniformly with replacement among that task's rows,
        concatenated in the order of ``counts`` (fifo and task_quota buffers)."""
        sizes = self.task_sizes()
        parts = []
        for task, count in counts.items():
            if count <= 0:
                continue
            if not sizes.get(task):
                raise ValueError(f'no rows of task {task} to sample (rows per task: {sizes})')
            parts.append(self._task_slots(task, int(count), sizes[task]))
        if not parts:
            raise ValueError(f'sample_by_task needs a positive count, got {counts}')
        index = torch.cat(parts)
        return {name: tensor[index] for name, tensor in self.storage.items()}

    def _task_slots(self, task: int, count: int, size: int) -> torch.Tensor:
        draw = torch.randint(0, size, (count,), device=self.device, generator=self.sample_generator)
        if self.policy == 'task_quota':
            return self.owned[task].to(self.device)[draw]
        # The task's rows, oldest first, are the live parts of its runs: map a draw to its run.
        oldest = self.seen - self.size
        runs = [(max(first, oldest), end) for k, first, end in self.runs if k == task and end > oldest]
        if len(runs) == 1:
            return (runs[0][0] + draw) % self.capacity
        starts = torch.tensor([first for first, _ in runs], device=self.device)
        offsets = torch.tensor([0] + [end - first for first, end in runs], device=self.device).cumsum(0)
        which = torch.searchsorted(offsets[1:], draw, right=True)
        return (starts[which] + draw - offsets[which]) % self.capacity

    def __len__(self) -> int:
        return self.size

    def set_teacher_actions(self, tasks, teacher: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                            ) -> int:
        """Label the stored rows of ``tasks`` (task indices) with ``teacher(obs [N, D], task [N]) ->
        actions [N, A]`` as their ``teacher_action``, in chunks of at most LABEL_CHUNK rows; returns how
        many rows were labelled."""
        tasks = torch.as_tensor(list(tasks), dtype=torch.int64, device=self.device)
        slots = self.stored_slots()
        if tasks.numel() == 0 or slots.numel() == 0:
            return 0
        slots = slots[torch.isin(self.storage['task'][slots], tasks)]
        for start in range(0, slots.numel(), LABEL_CHUNK):
            chunk = slots[start:start + LABEL_CHUNK]
            actions = teacher(self.storage['obs'][chunk], self.storage['task'][chunk])
            self.storage['teacher_action'][chunk] = self._as_rows('teacher_action', actions, chunk.numel(),
                                                                  self.action_dim, torch.float32)
        return int(slots.numel())

    def stored_slots(self) -> torch.Tensor:
        """The slots holding data (device tensor), in no particular order."""
        if self.slot_map is not None:
            return self.slot_map[:self.size]
        return torch.arange(self.size, device=self.device)

    def task_counts(self) -> dict[int, int]:
        """Rows stored per task index (tasks with no rows are left out)."""
        if self.policy == 'task_quota':
            return {k: int(self.owned[k].numel()) for k in sorted(self.tasks_seen) if self.owned[k].numel()}
        counts = torch.bincount(self.storage['task'][:self.size], minlength=self.num_tasks).cpu().tolist()
        return {k: c for k, c in enumerate(counts) if c}

    def __repr__(self) -> str:
        return (f'ReplayBuffer({self.size}/{self.capacity}, policy={self.policy!r}, obs_dim={self.obs_dim}, '
                f'action_dim={self.action_dim}, device={str(self.device)!r})')

    # ----------------------------------------------------------------------------------------------
    # persistence

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: rows, counters, generator states (CPU tensors)."""
        hw = self.high_water
        return {
            'config': {'capacity': self.capacity, 'obs_dim': self.obs_dim, 'action_dim': self.action_dim,
                       'num_tasks': self.num_tasks, 'policy': self.policy, 'task_quota': self.task_quota},
            'storage': {name: tensor[:hw].cpu().clone() for name, tensor in self.storage.items()},
            'size': self.size, 'seen': self.seen, 'position': self.position, 'high_water': hw,
            'sample_generator': self.sample_generator.get_state(),
            'add_generator': self.add_generator.get_state(),
            'owned': {k: v.clone() for k, v in self.owned.items()}, 'head': dict(self.head),
            'tasks_seen': list(self.tasks_seen),
            'free': self.free[:self.num_free].clone(),
            'slot_map': None if self.slot_map is None else self.slot_map[:self.size].cpu().clone(),
            'runs': None if self.runs is None else [list(run) for run in self.runs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        config = {'capacity': self.capacity, 'obs_dim': self.obs_dim, 'action_dim': self.action_dim,
                  'num_tasks': self.num_tasks, 'policy': self.policy, 'task_quota': self.task_quota}
        saved_config = dict(state.get('config') or {})
        if saved_config.get('num_tasks', 0) <= self.num_tasks:  # a stream that has grown since
            saved_config['num_tasks'] = self.num_tasks
        if saved_config != config:
            raise ValueError(f'replay state was saved with {state.get("config")}, this buffer is {config}')
        hw = int(state['high_water'])
        self.teacher_actions_missing = False
        for name, tensor in self.storage.items():
            saved = state['storage'].get(name)
            if saved is None and name == 'horizon':  # saved before n-step rows existed: all one-step
                saved = torch.ones(hw)
            self.teacher_actions_missing |= saved is None and name == 'teacher_action'
            if saved is None and name == 'teacher_action':  # saved before it existed: the trainer labels
                saved = torch.zeros(hw, self.action_dim)
            if tuple(saved.shape) != (hw, *tensor.shape[1:]):
                raise ValueError(f'replay state {name}: expected shape {(hw, *tensor.shape[1:])}, '
                                 f'got {tuple(saved.shape)}')
            tensor[:hw] = saved.to(self.device)
        self.size, self.seen, self.position = int(state['size']), int(state['seen']), int(state['position'])
        self.high_water = hw
        self.sample_generator.set_state(state['sample_generator'])
        self.add_generator.set_state(state['add_generator'])
        self.owned = {int(k): v.clone() for k, v in state['owned'].items()}
        self.head = {int(k): int(v) for k, v in state['head'].items()}
        self.tasks_seen = [int(k) for k in state['tasks_seen']]
        self.free = state['free'].clone()
        self.num_free = self.free.numel()
        if self.slot_map is not None:
            self.slot_map[:self.size] = state['slot_map'].to(self.device)
        if self.policy == 'fifo':  # a state saved before the runs were kept: rebuilt from the rows
            if 'runs' not in state:
                self.runs = self._runs_from_storage()
            else:
                self.runs = None if state['runs'] is None else [list(run) for run in state['runs']]



def store_step(add, obs, action, reward, next_obs, terminated, truncated, task,
               n_step: NStepReturns | None = None) -> None:
    """One vector step's transitions into ``add`` (a :meth:`ReplayBuffer.add`): one-step rows, or through
    ``n_step`` n-step rows once they are whole (``next_obs``: s', the true last observation where an
    episode ended, when the caller fixes terminal observations)."""
    if n_step is None:
        add(obs, action, reward, next_obs, terminated.astype(np.float32), task)
        return
    rows = n_step.push(obs, action, reward, next_obs, terminated, terminated | truncated, task)
    if rows is not None:
        add(**rows)


class NStepReturns:
    """One-step transitions of N env copies in, n-step transitions out (for ``agent.n_step``).

    A row leaves when its copy has n steps after it: reward r_t + γ r_{t+1} + ... + γ^(n-1) r_{t+n-1},
    s' = s_{t+n}, horizon n (the critic bootstraps with γ^n). When an episode ends (terminal or time
    limit) every pending row of that copy leaves with the steps it has (horizon k < n, s' the episode's
    true last observation, ``done`` as the last step's), so no transition is lost or crosses an episode.
    ``flush`` empties every copy the same way (a training loop that stops between episodes).
    """

    def __init__(self, n: int, gamma: float, copies: int):
        self.n, self.gamma = _positive_int('n', n), float(gamma)
        self.pending: list[deque] = [deque() for _ in range(_positive_int('copies', copies))]

    def push(self, obs, action, reward, next_obs, done, ended, task) -> dict[str, np.ndarray] | None:
        """One vector step (arrays over the copies; ``ended``: the episode ended here). Returns the rows
        ready to store (keys of ``ReplayBuffer.add``), or None."""
        out: list[tuple] = []
        for i, queue in enumerate(self.pending):
            queue.append((obs[i], action[i], float(reward[i]), task[i]))
            if ended[i] or done[i]:
                self._emit(queue, len(queue), next_obs[i], float(done[i]), out)
            elif len(queue) == self.n:
                self._emit(queue, 1, next_obs[i], 0.0, out)
        return self._rows(out)

    def flush(self, last_obs) -> dict[str, np.ndarray] | None:
        """Every pending row, bootstrapped from ``last_obs`` [copies, D] (the copies' current obs)."""
        out: list[tuple] = []
        for i, queue in enumerate(self.pending):
            self._emit(queue, len(queue), last_obs[i], 0.0, out)
        return self._rows(out)

    def _emit(self, queue: deque, count: int, next_obs, done: float, out: list) -> None:
        """The first ``count`` rows of ``queue``, each summing the rewards from it to the queue's end."""
        for _ in range(count):
            ret = 0.0
            for k, (_o, _a, r, _t) in enumerate(queue):
                ret += self.gamma ** k * r
            o, a, _r, t = queue.popleft()
            out.append((o, a, ret, next_obs, done, t, len(queue) + 1))

    @staticmethod
    def _rows(out: list[tuple]) -> dict[str, np.ndarray] | None:
        if not out:
            return None
        obs, action, reward, next_obs, done, task, horizon = zip(*out, strict=True)
        return {'obs': np.stack(obs), 'action': np.stack(action), 'reward': np.asarray(reward),
                'next_obs': np.stack(next_obs), 'done': np.asarray(done), 'task': np.asarray(task),
                'horizon': np.asarray(horizon, dtype=np.float32)}
