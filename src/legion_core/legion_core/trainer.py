"""Training loops: lifelong (tasks one at a time) and multi-task (all tasks together).

A run directory holds:

- ``config.yaml``: the resolved configuration;
- ``evals.jsonl``: one line per evaluation per task ``{"env_steps", "phase", "task", "success", "return"}``;
- ``metrics.json``: the success matrix and its summary, DPMM K and cluster purity per phase
  (rewritten after every phase, ``"complete": true`` at the end);
- ``tb/``: TensorBoard events (losses every ``train.log_every`` env steps, evaluations, DPMM);
- ``checkpoints/last.pt`` (atomic, every ``train.checkpoint_every`` env steps and at every phase end)
  and ``checkpoints/phase_<k>.pt`` (the state at the end of phase k, without the replay buffer).

Lifelong mode follows the original (legion-original.md §1.4-1.5): at every task a warm-up of random
actions (``warmup_steps``), then ``updates_per_step`` updates per collected transition (with a burst
of ``warmup_steps`` updates when warm-up ends, as the original), the DPMM refitted at local step
``dpmm.start`` and every ``dpmm.every``, every task of the stream evaluated every ``eval_every`` env
steps and at the end of the phase (the success-matrix row), and the configured resets at a switch.

``resume(run_dir)`` (``resume_trainer`` for the trainer itself) rebuilds the trainer from
``config.yaml`` and ``checkpoints/last.pt`` and continues at the same phase and step. The envs restart
their episodes (MuJoCo state is not saved): a checkpoint taken at a phase end resumes exactly, one taken
mid-phase resumes with fresh episodes. :mod:`legion_core.checkpoint` only reads and writes the files.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from legion_core import checkpoint as ckpt
from legion_core.agent import LegionAgent
from legion_core.config import LanguageConfig, check, resolve_device, to_container
from legion_core.replay import store_step
from legion_core.report import CONFIG_CHANGES_FILE, EVALS_FILE, METRICS_FILE  # the run files' names

log = logging.getLogger(__name__)

CONFIG_FILE = 'config.yaml'
TB_DIR = 'tb'
# Evaluation copies are seeded this far from the run's seed: under goal=random they draw goals the
# training copies never see (held-out episodes), under goal=fixed nothing changes.
EVAL_SEED_OFFSET = 1_000_003
# train.carry_min_success looks at the best of this many evaluations: door-open's swing between 0.0 and
# 0.8 from one evaluation to the next while it is being learnt (docs/training.md).
CARRY_WINDOW = 3


def _advance_position() -> dict[str, Any]:
    """The trainer position's train.advance_on_success part: consecutive evaluations the current task
    passed, whether the current phase's start was evaluated, the steps finished phases saved by ending
    early and later ones have not spent (``carry``; train.saved_steps says how much of it the current
    phase may spend on top of its own), the current task's success at its last evaluations (``recent``,
    newest last), the budget an ``--end-phase`` fixed (``budget``), how the current phase ends
    (``ending``: solved, stalled, by hand; None: at its budget), and each finished phase's record."""
    return {'solved_streak': 0, 'start_evaluated': False, 'carry': 0, 'recent': [], 'budget': None,
            'ending': None, 'advanced': []}


def _demo_position() -> dict[str, Any]:
    """The trainer position's train.demo_episodes part: per demonstrated task its record (index, name,
    episodes, successes, env steps, mean return), and the env steps all demonstrations took."""
    return {'demonstrated': [], 'demo_env_steps': 0, 'pretrained': []}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def task_embeddings(tasks: list[str], language: LanguageConfig | dict[str, Any]) -> np.ndarray:
    """The language table [T, E] for ``tasks``: computed once per run (cached on disk by the encoder)."""
    from legion_core.language import LanguageEncoder

    if not isinstance(language, LanguageConfig):
        language = LanguageConfig.from_dict(language)
    encoder = LanguageEncoder(model_dir=language.model_dir, cache_dir=language.cache_dir,
                              normalize=language.normalize)
    return np.asarray(encoder.task_embeddings(tasks), dtype=np.float32)


def run_files() -> tuple[str, ...]:
    """The names a run of ``legion train`` writes into its run directory (and all that a fresh start
    there may remove)."""
    return (CONFIG_FILE, CONFIG_CHANGES_FILE, EVALS_FILE, METRICS_FILE, TB_DIR, ckpt.CHECKPOINT_DIR,
            ckpt.POLICY_FILE, ckpt.LOCK_FILE)


class Trainer:
    """Owns the agent, replay buffer, envs and run directory of one training run.

    ``cfg`` is kept as the plain dict it came as (what config.yaml, metrics.json and checkpoints hold);
    ``config`` is its typed reading (:class:`legion_core.config.RunConfig`), which the loop reads.
    """

    def __init__(self, cfg: DictConfig | dict, run_dir: str | Path, *, progress: bool = True,
                 embeddings: np.ndarray | None = None):
        from legion_core.dpmm import make_dpmm
        from legion_core.envs import ACTION_DIM, LAYOUTS
        from legion_core.metrics import SuccessMatrix
        from legion_core.replay import ReplayBuffer
        from legion_core.tasks import resolve_stream

        self.cfg = to_container(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
        self.config = c = check(self.cfg)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.seed = c.seed
        seed_everything(self.seed)
        self.mode = c.train.mode
        self.tasks = resolve_stream(c.stream.tasks, order=c.stream.order, seed=self.seed)
        self.device = resolve_device(c.device)
        env = c.env
        # Every env of the run (training, evaluation, demonstrations; bench solve's peer too) is built
        # with these.
        self.env_kwargs = {'embodiment': env.embodiment, 'layout': env.layout,
                           'episode_length': env.episode_length, 'goal': env.goal, 'seed': self.seed,
                           'reward_scale': float(env.reward_scale), 'success_bonus': float(env.success_bonus)}
        self.obs_dim, self.action_dim = LAYOUTS[env.layout], ACTION_DIM
        if embeddings is None:
            embeddings = task_embeddings(self.tasks, c.language)
        self.agent_config = c.agent
        dpmm = make_dpmm(c.dpmm.backend, **c.dpmm.options)
        self.agent = LegionAgent(self.obs_dim, self.action_dim, embeddings, self.agent_config, dpmm=dpmm,
                                 device=self.device)
        self.replay = ReplayBuffer(c.replay.capacity, self.obs_dim, self.action_dim, len(self.tasks),
                                   device=self.device, policy=c.replay.policy, task_quota=c.replay.task_quota,
                                   seed=self.seed)
        # Scripted-expert episodes (train.demo_episodes) in a buffer of their own, never overwritten
        # (legion_core.demos); every expert is looked up now, so a task without one fails before training.
        self.demos = None
        if c.train.demo_episodes > 0:
            from legion_core.demos import expert

            for task in self.tasks:
                expert(env.embodiment, task)
            self.demos = ReplayBuffer(c.train.demo_episodes * env.episode_length * len(self.tasks),
                                      self.obs_dim, self.action_dim, len(self.tasks), device=self.device,
                                      seed=self.seed + 1)
        self.success = SuccessMatrix(self.tasks, num_phases=len(self.tasks) if self.mode == 'lifelong' else 1)
        self.num_phases = self.success.num_phases
        self.rng = np.random.default_rng(self.seed)  # warm-up actions
        self.position: dict[str, Any] = {
            'phase': 0, 'local_step': 0, 'env_steps': 0, 'update_debt': 0.0,
            'warmup_end': c.train.warmup_steps, 'burst_done': False, 'dpmm_fits': 0, 'evals_lines': 0,
            'done': False, **_advance_position(), **_demo_position(),
        }
        self.dpmm_log: list[dict[str, Any]] = []
        self.eval_curve: list[float] = []
        self.elapsed = 0.0
        self._eval_envs: dict[int, Any] = {}
        # The latest evaluation of each task (evaluate_all). A frozen skill's is not replaced: its phase-end
        # one stands for all later ones (the same weights on the same held-out episodes succeed alike).
        self._latest_eval: dict[int, dict[str, Any]] = {}
        self._writer = None
        self._train_episodes: list[tuple[float, float]] = []
        # Set by request_checkpoint / request_stop (e.g. from a signal handler), acted on at the next
        # step boundary, where the state is whole.
        self._checkpoint_requested = False
        self._stop_requested = False

    # ------------------------------------------------------------------ run directory
    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run logged after its last checkpoint.
            self._writer = SummaryWriter(str(self.run_dir / TB_DIR),
                                         purge_step=self.position['env_steps'] or None)
        return self._writer

    def request_checkpoint(self) -> None:
        """Write a checkpoint at the next step boundary and go on (safe to call from a signal handler)."""
        self._checkpoint_requested = True

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` was called (the run ended early, with a checkpoint)."""
        return self._stop_requested

    def request_stop(self) -> None:
        """End :meth:`run` at the next step boundary with a checkpoint, as ``max_env_steps`` does (safe to
        call from a signal handler): what a preempted job does before it is requeued."""
        self._stop_requested = True

    def close(self) -> None:
        """Flush and close the TensorBoard writer (a trainer kept between runs closes it when done)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write_config(self) -> None:
        path = self.run_dir / CONFIG_FILE
        if not path.exists():
            OmegaConf.save(OmegaConf.create(self.cfg), path)

    def _append_evals(self, rows: list[dict[str, Any]]) -> None:
        with open(self.run_dir / EVALS_FILE, 'a') as f:
            for row in rows:
                f.write(json.dumps(row) + '\n')
        self.position['evals_lines'] += len(rows)

    def metrics(self) -> dict[str, Any]:
        """The content of metrics.json (success matrix, its summary, DPMM per phase, counts)."""
        from legion_core.metrics import stream_average

        summary = self.success.summarise() if len(self.success.matrix) else {}
        return {
            'tasks': self.tasks,
            'success_matrix': self.success.to_list(),
            'final_success': summary.get('final_success'),
            'per_task_final': summary.get('per_task_final'),
            'forgetting': summary.get('forgetting'),
            'max_forgetting': summary.get('max_forgetting'),
            'own_phase': summary.get('own_phase'),
            'stream_average': stream_average(self.eval_curve) if self.eval_curve else None,
            'dpmm': self.dpmm_log,
            # Per finished phase: its local steps and whether it ended early, solved (advance_on_success).
            'phases': self.position['advanced'],
            # Tasks acting with their phase-end networks (agent.freeze_skills): their columns of the
            # matrix keep their phase-end value.
            'frozen_skills': [self.tasks[j] for j in sorted(self.agent.skills)],
            # Scripted-expert episodes per task (train.demo_episodes); their env steps are in env_steps.
            'demonstrations': self.position['demonstrated'],
            'demo_env_steps': self.position['demo_env_steps'],
            'wall_time_s': round(self.elapsed, 2),
            'env_steps': self.position['env_steps'],
            'updates': self.agent.num_updates,
            'mode': self.mode,
            'complete': bool(self.position['done']),
            'config': self.cfg,
        }

    def _write_metrics(self) -> None:
        ckpt.atomic_write_text(self.run_dir / METRICS_FILE, json.dumps(self.metrics(), indent=2))

    # ------------------------------------------------------------------ state
    def state_dict(self, include_replay: bool | None = None) -> dict[str, Any]:
        if include_replay is None:
            include_replay = self.config.train.checkpoint_replay == 'full'
        state = {
            'format': ckpt.CHECKPOINT_FORMAT,
            'config': self.cfg,
            'tasks': self.tasks,
            'agent': self.agent.state_dict(),
            'replay': self.replay.state_dict() if include_replay else None,
            'demos': self.demos.state_dict() if self.demos is not None else None,  # small: always kept
            'position': dict(self.position),
            'success_matrix': self.success.matrix,
            'dpmm_log': list(self.dpmm_log),
            'eval_curve': list(self.eval_curve),
            'elapsed': self.elapsed,
            'rng': {
                'python': random.getstate(),
                'numpy': np.random.get_state(),
                'torch': torch.get_rng_state(),
                'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                'warmup': self.rng.bit_generator.state,
            },
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get('format') != ckpt.CHECKPOINT_FORMAT:
            raise ValueError(f'not a LEGION training checkpoint (format {state.get("format")!r})')
        done = list(state['tasks'])
        # A checkpoint of the first tasks of this stream: tasks were appended (open-ended stream).
        grown = len(done) < len(self.tasks) and self.tasks[:len(done)] == done and self.mode == 'lifelong'
        if done != self.tasks and not grown:
            raise ValueError(f'checkpoint tasks {state["tasks"]} differ from this run\'s {self.tasks}')
        self.agent.load_state_dict(state['agent'])
        # Older checkpoints lack these parts of the position.
        self.position = {**_advance_position(), **_demo_position(), **state['position']}
        self._load_demos(state.get('demos'))
        if state['replay'] is not None:
            self.replay.load_state_dict(state['replay'])
            if self.replay.teacher_actions_missing and self.agent.teacher is not None:
                # Saved before the rows carried their teacher's actions: the teacher of the save labels
                # them, as it would have cloned them update by update.
                self.replay.set_teacher_actions(range(self.agent.teacher_tasks), self.agent.teacher_actions)
        else:
            # No replay in the checkpoint: the buffer restarts empty, so the current task repeats its
            # random warm-up (and burst) before updating again.
            self.position['warmup_end'] = self.position['local_step'] + self.config.train.warmup_steps
            self.position['burst_done'] = False
        matrix = np.asarray(state['success_matrix'], dtype=float)
        for j, row in enumerate(matrix):
            for k, value in enumerate(row):
                if not np.isnan(value):
                    self.success.record(j, k, float(value))
        self.dpmm_log = list(state['dpmm_log'])
        self.eval_curve = list(state['eval_curve'])
        self.elapsed = float(state['elapsed'])
        rng = state['rng']
        random.setstate(rng['python'])
        np.random.set_state(rng['numpy'])
        torch.set_rng_state(rng['torch'])
        if rng.get('cuda') is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng['cuda'])
        self.rng.bit_generator.state = rng['warmup']
        if self.agent_config.freeze_skills and self.mode == 'lifelong':
            self._freeze_earlier_skills()
        if grown and self.position['done']:
            # The finished stream skipped the switch after its last task: make it now.
            self.position['done'] = False
            if self.agent_config.distill > 0:
                self._remember_tasks(len(done))
            self._switch_resets()
        # Evaluations logged after the checkpoint are replayed by the resumed run: drop them.
        evals = self.run_dir / EVALS_FILE
        if evals.exists():
            lines = evals.read_text().splitlines(keepends=True)[:int(self.position['evals_lines'])]
            ckpt.atomic_write_text(evals, ''.join(lines))

    def _freeze_earlier_skills(self) -> None:
        """agent.freeze_skills switched on at a resume: the tasks solved before freeze from the acting
        weights of their phase checkpoints (train.keep_phase_checkpoints), the weights that solved them."""
        from legion_core.policy import acting_weights

        for entry in self.position['advanced']:
            phase = int(entry['phase'])
            if not entry['solved'] or phase in self.agent.skills:
                continue
            path = self.run_dir / ckpt.CHECKPOINT_DIR / f'phase_{phase}.pt'
            if not path.is_file():
                log.warning('%s was solved before agent.freeze_skills was on, but %s is missing: it acts '
                            'with the shared networks', entry['task'], path)
                continue
            encoder, actor = acting_weights(ckpt.load_checkpoint(path)['agent'])
            self.agent.freeze_skill(phase, {**{f'encoder.{k}': v for k, v in encoder.items()},
                                            **{f'actor.{k}': v for k, v in actor.items()}})
            log.info('%s acts with its phase-%d weights from %s on (agent.freeze_skills)', entry['task'],
                     phase, path.name)

    def _load_demos(self, saved: dict[str, Any] | None) -> None:
        if self.demos is None:
            return
        if saved is None:  # demonstrations switched on for a run that had none: collected from now on
            self.position['demonstrated'] = []
            return
        if saved['config']['capacity'] == self.demos.capacity:
            self.demos.load_state_dict(saved)
        else:  # the stream has grown (more tasks, more room): the same rows into the larger buffer
            self.demos.add(**{name: rows[:saved['size']] for name, rows in saved['storage'].items()})

    def save_checkpoint(self, phase_end: int | None = None) -> Path:
        self._write_metrics()
        path = ckpt.save_checkpoint(self.state_dict(), self.run_dir)
        if phase_end is not None and self.config.train.keep_phase_checkpoints:
            ckpt.save_checkpoint(self.state_dict(include_replay=False), self.run_dir,
                                 name=f'phase_{phase_end}.pt')
        return path

    # ------------------------------------------------------------------ pieces of the loop
    def _remember_tasks(self, num_tasks: int) -> None:
        """At a task switch (agent.distill): the agent's teacher for the first ``num_tasks`` tasks, and
        its actions stored with the replayed rows it is to keep (agent.distill_teacher)."""
        tasks = self.agent.remember_tasks(num_tasks)
        rows = self.replay.set_teacher_actions(tasks, self.agent.teacher_actions)
        log.debug('teacher of tasks %s: %d replayed rows labelled', list(tasks), rows)

    def _eval_env(self, j: int):
        from legion_core.envs import TaskVectorEnv

        if j not in self._eval_envs:
            t = self.config.train
            self._eval_envs[j] = TaskVectorEnv(self.tasks[j], min(t.eval_envs, t.eval_episodes),
                                               autoreset=False, copy_seed=self.seed + EVAL_SEED_OFFSET,
                                               **self.env_kwargs)
        return self._eval_envs[j]

    def evaluate_all(self, phase: int, final: bool) -> list[float]:
        """Deterministic evaluation on the stream's tasks; returns their success rates in stream order.

        Every task at a phase's end (``final``: the success-matrix row) and, with the default
        ``train.eval_tasks: all``, inside a phase too; with ``seen`` the evaluations inside a lifelong
        phase stop at the current task, whose rate is then the last. Only evaluations of every task
        make a point of the stream-average curve."""
        from legion_core.envs import evaluate

        episodes = self.config.train.eval_episodes
        partial = not final and self.config.train.eval_tasks == 'seen' and self.mode == 'lifelong'
        tasks = self.tasks[:phase + 1] if partial else self.tasks
        rows, rates = [], []
        for j, task in enumerate(tasks):
            frozen = j in self.agent.skills
            result = self._latest_eval.get(j) if frozen else None
            if result is None:
                result = evaluate(lambda obs, j=j: self.agent.act(obs, j, deterministic=True), task, episodes,
                                  env=self._eval_env(j), until_success=self.config.train.eval_until_success)
                self._latest_eval[j] = result
            rates.append(result['success_rate'])
            rows.append({'env_steps': self.position['env_steps'], 'phase': phase, 'task': task,
                         'success': result['success_rate'], 'return': result['mean_return'],
                         'final': final, **({'frozen': True} if frozen else {})})
            self.writer.add_scalar(f'eval/success/{task}', result['success_rate'], self.position['env_steps'])
            self.writer.add_scalar(f'eval/return/{task}', result['mean_return'], self.position['env_steps'])
            if final:
                self.success.record(phase, j, result['success_rate'])
        self._append_evals(rows)
        if len(tasks) == len(self.tasks):
            mean = float(np.mean(rates))
            self.eval_curve.append(mean)
            self.writer.add_scalar('eval/success_mean', mean, self.position['env_steps'])
        return rates

    def fit_dpmm(self) -> int:
        batch = self._dpmm_batch(self.config.dpmm.batch)
        k = self.agent.fit_dpmm(batch['obs'], batch['task'], seed=self.seed + self.position['dpmm_fits'])
        self.position['dpmm_fits'] += 1
        self.writer.add_scalar('dpmm/num_components', k, self.position['env_steps'])
        return k

    def _dpmm_batch(self, size: int) -> dict[str, torch.Tensor]:
        # balanced: a task learnt in 20k steps weighs as much as one that took 500k; drawn uniformly, the
        # long task's many rows split into several clusters and the short one's few fall under
        # min_fraction (docs/training.md, "How many clusters").
        if self.config.dpmm.sample == 'balanced':
            return self.replay.sample_balanced(size)
        return self.replay.sample(size)

    def dpmm_summary(self, phase: int) -> dict[str, Any]:
        """K and cluster purity (clusters of μ vs task ids on a replay sample) at the end of a phase."""
        from legion_core.metrics import cluster_purity

        entry: dict[str, Any] = {'phase': phase, 'num_components': None, 'purity': None}
        dpmm = self.agent.dpmm
        if dpmm is not None and dpmm.fitted and len(self.replay):
            batch = self._dpmm_batch(self.config.dpmm.purity_batch)
            z = self.agent.encode(batch['obs'], batch['task'], use='mean').cpu().numpy()
            labels = dpmm.predict(z.astype(np.float64))
            entry['num_components'] = int(dpmm.num_components)
            entry['purity'] = cluster_purity(labels, batch['task'].cpu().numpy())
            self.writer.add_scalar('dpmm/purity', entry['purity'], self.position['env_steps'])
        return entry

    def _learn(self, transitions: int, local_per_step: int) -> None:
        """Updates owed for the ``transitions`` collected by the last vector step.

        Only transitions collected after warm-up count; warm-up's own transitions are paid for by the
        one-off burst when warm-up ends (the original's 1,500 updates at step 1,500), so a phase does
        ``updates_per_step`` x its transitions updates in all.
        """
        p, t = self.position, self.config.train
        batch_size = self.agent_config.batch_size
        after = min(local_per_step, p['local_step'] - p['warmup_end'])
        if after < 0 or len(self.replay) < batch_size:
            return
        n = 0
        if t.warmup_burst and not p['burst_done']:
            n = round(t.warmup_steps * transitions / local_per_step * float(t.updates_per_step))
        p['burst_done'] = True
        p['update_debt'] += transitions * after / local_per_step * float(t.updates_per_step)
        owed = int(p['update_debt'])
        p['update_debt'] -= owed
        for _ in range(n + owed):
            self.agent.update(self._batch(batch_size))

    def _batch(self, size: int) -> dict[str, torch.Tensor]:
        """One update batch: ``train.demo_ratio`` of it from the demonstrations of the task being learnt
        (once there are any), the rest from the agent's own replay."""
        share = self.config.train.demo_ratio
        rows = self._demo_rows()
        n = 0 if rows is None else min(round(size * share), size - 1)
        if n == 0:
            return self._replayed(size)
        own, demo = self._replayed(size - n), self.demos.sample(n, rows)
        batch = {name: torch.cat((own[name], demo[name])) for name in own}
        batch['demo'] = torch.arange(size, device=self.replay.device) >= size - n  # agent.demo_bc's rows
        return batch

    def _replayed(self, size: int) -> dict[str, torch.Tensor]:
        """``size`` rows of the agent's replay: uniform over every row, or (``train.current_ratio`` r,
        lifelong) r of them from the current task and the rest in equal shares from the earlier tasks, the
        remainder going round them update by update."""
        ratio = self.config.train.current_ratio
        if ratio is None or self.mode != 'lifelong':
            return self.replay.sample(size)
        sizes, current = self.replay.task_sizes(), self.position['phase']
        earlier = [k for k in range(current) if sizes.get(k)]
        if not earlier:
            return self.replay.sample(size)
        mine = round(size * ratio) if sizes.get(current) else 0
        share, extra = divmod(size - mine, len(earlier))
        turn = self.agent.num_updates % len(earlier)
        counts = {current: mine}
        counts.update({k: share + ((i - turn) % len(earlier) < extra) for i, k in enumerate(earlier)})
        return self.replay.sample_by_task(counts)

    def _demo_rows(self) -> tuple[int, int] | None:
        """The demonstration buffer's rows a batch draws from (start, stop): the current task's
        (lifelong), every task's (multi-task); None when there are none. Earlier tasks' demonstrations
        stay in the buffer but are not drawn: distill keeps those tasks, and a share split over every task
        seen would thin out the current one's (measured with the current task's alone). The buffer is
        appended to in the order of ``demonstrated`` and never overwritten, so a task's rows are a range."""
        if self.demos is None or len(self.demos) == 0:
            return None
        if self.mode != 'lifelong':
            return 0, len(self.demos)
        start = 0
        for record in self.position['demonstrated']:
            if record['index'] == self.position['phase']:
                return start, start + record['env_steps']
            start += record['env_steps']
        return None

    def _demonstrate(self, tasks) -> None:
        """Scripted-expert episodes (``train.demo_episodes``) of the tasks (indices) that have none yet,
        each in a one-copy env seeded apart from training and evaluation (legion_core.demos)."""
        if self.demos is None:
            return
        from legion_core.demos import DEMO_SEED_OFFSET, demonstrate, expert
        from legion_core.envs import TaskVectorEnv

        p, a = self.position, self.agent_config
        done = {record['index'] for record in p['demonstrated']}
        for j in tasks:
            if j in done:
                continue
            started = time.perf_counter()
            env = TaskVectorEnv(self.tasks[j], 1, copy_seed=self.seed + DEMO_SEED_OFFSET + j,
                                **self.env_kwargs)
            try:
                stats = demonstrate(env, expert(self.config.env.embodiment, self.tasks[j]),
                                    self.config.train.demo_episodes, j, self.demos.add, n_step=a.n_step,
                                    gamma=a.gamma, fix_terminal_obs=a.fix_terminal_obs)
            finally:
                env.close()
            p['demonstrated'].append({'index': j, 'task': self.tasks[j], **stats})
            p['env_steps'] += stats['env_steps']
            p['demo_env_steps'] += stats['env_steps']
            self._bar.update(stats['env_steps'])
            self.elapsed += time.perf_counter() - started
            log.info('%s: %d expert episodes demonstrated (%d successful, %d env steps)', self.tasks[j],
                     stats['episodes'], stats['successes'], stats['env_steps'])

    def _pretrain(self, phase: int, postfix: str) -> None:
        """``train.demo_pretrain`` updates of behaviour cloning on the phase's demonstrations before its
        first env step (:meth:`LegionAgent.update` with ``clone``); batches mix in the replay as online
        (``demo_ratio``) once it holds earlier tasks, whose rows distill keeps. A cloned actor acts well
        from the start, so the phase skips its random warm-up and its burst. Once per phase: a run resumed
        in the middle of a phase does not clone again."""
        p, updates = self.position, self.config.train.demo_pretrain
        if updates == 0 or phase in p['pretrained'] or p['local_step'] > 0 or self._demo_rows() is None:
            return
        started, size, rows = time.perf_counter(), self.agent_config.batch_size, self._demo_rows()
        self._bar.set_postfix_str('cloning demonstrations')
        for _ in range(updates):
            if len(self.replay) >= size:
                batch = self._batch(size)
            else:
                batch = self.demos.sample(size, rows)
                batch['demo'] = torch.ones(size, dtype=torch.bool, device=self.replay.device)
            self.agent.update(batch, clone=True)
        self.agent.restart_average()
        p['pretrained'].append(phase)
        p['warmup_end'], p['burst_done'] = p['local_step'], True
        self.elapsed += time.perf_counter() - started
        self._bar.set_postfix_str(postfix)
        log.info('phase %d: %d updates of cloning demonstrations (%.0f s)', phase + 1, updates,
                 time.perf_counter() - started)

    def _store(self, task_ids, obs, actions, next_obs, reward, terminated, truncated, info,
               n_step=None) -> None:
        # fix_terminal_obs: s' of an ended episode is its true last observation; the original stored
        # the first observation of the next episode (what next_obs holds after auto-reset).
        target = info['final_obs'] if self.agent_config.fix_terminal_obs else next_obs
        store_step(self.replay.add, obs, actions, reward, target, terminated, truncated, task_ids, n_step)
        ended = np.flatnonzero(terminated | truncated)
        for i in ended:
            self._train_episodes.append((float(info['episode_success'][i]), float(info['episode_return'][i])))

    def _log_training(self, steps_per_s: float, updates_per_s: float) -> None:
        step = self.position['env_steps']
        for name, value in self.agent.pop_metrics().items():
            self.writer.add_scalar(f'train/{name}', value, step)
        for j, alpha in enumerate(self.agent.temperatures()):
            self.writer.add_scalar(f'train/alpha/{self.tasks[j]}', float(alpha), step)
        if self._train_episodes:
            success, ret = np.mean(self._train_episodes, axis=0)
            self.writer.add_scalar('train/episode_success', success, step)
            self.writer.add_scalar('train/episode_return', ret, step)
            self._train_episodes.clear()
        self.writer.add_scalar('perf/env_steps_per_s', steps_per_s, step)
        self.writer.add_scalar('perf/updates_per_s', updates_per_s, step)

    def _switch_resets(self) -> None:
        t = self.config.train
        if t.reset_optimizers:
            self.agent.reset_optimizers()
        if t.reset_critics:
            self.agent.reset_critics()
        if t.reset_vae:
            self.agent.reset_vae()

    @staticmethod
    def _crossed(prev: int, now: int, every: int, start: int = 0) -> bool:
        """Whether a schedule firing at ``start`` and then at multiples of ``every`` fired in (prev, now]."""
        if every <= 0:
            return False
        return (prev < start <= now) or (now >= start and now // every > prev // every)

    # ------------------------------------------------------------------ the loop
    def run(self, max_env_steps: int | None = None, checkpoint_at_stop: bool = True) -> dict[str, Any]:
        """Train until the stream is done (or ``max_env_steps`` more env steps, or :meth:`request_stop`);
        returns metrics.json's dict.

        Stopping early with ``max_env_steps`` or :meth:`request_stop` leaves a checkpoint (unless
        ``checkpoint_at_stop`` is False: a caller that keeps this trainer and calls ``run`` again, as
        ``legion bench solve`` does to interleave two learners); ``resume`` continues from it.
        :class:`legion_core.checkpoint.RunInUseError` if another process trains in the run directory.
        """
        with ckpt.run_lock(self.run_dir):
            return self._run(max_env_steps, checkpoint_at_stop)

    def _run(self, max_env_steps: int | None, checkpoint_at_stop: bool) -> dict[str, Any]:
        from tqdm import tqdm

        self._write_config()
        t = self.config.train
        # Demonstrations' env steps count too (at most an episode length each: some end on success).
        total = len(self.tasks) * (t.steps_per_task + t.demo_episodes * self.config.env.episode_length)
        stop_at = None if max_env_steps is None else self.position['env_steps'] + int(max_env_steps)
        bar = tqdm(total=total, initial=self.position['env_steps'], unit='step', dynamic_ncols=True,
                   disable=not self.progress, desc=self.mode)
        self._bar = bar
        try:
            while not self.position['done']:
                if self._stopping(stop_at):
                    if checkpoint_at_stop:
                        self.save_checkpoint()
                    break
                if self.mode == 'lifelong':
                    self._run_phase(stop_at)
                else:
                    self._run_multitask(stop_at)
        except KeyboardInterrupt:
            log.warning('interrupted: writing a checkpoint at env step %d', self.position['env_steps'])
            self.save_checkpoint()
            raise
        finally:
            bar.close()
            if self._writer is not None:
                self._writer.flush()
        if self.position['done']:
            self._write_metrics()
        return self.metrics()

    def _stopping(self, stop_at: int | None) -> bool:
        return self._stop_requested or (stop_at is not None and self.position['env_steps'] >= stop_at)

    def _step_envs(self, envs, obs_list, task_ids_list, deterministic_warmup: bool, n_steps=None,
                   meanwhile=None):
        """One vector step of every env in ``envs``, actions for all chosen in one batch. ``meanwhile``:
        envs in worker processes; it runs while they step (the updates), before their transitions are
        stored."""
        obs_all = np.concatenate(obs_list)
        if deterministic_warmup:
            actions = self.rng.uniform(-1.0, 1.0, size=(obs_all.shape[0], self.action_dim)).astype(np.float32)
        else:
            actions = self.agent.act(obs_all, np.concatenate(task_ids_list), deterministic=False)
        per_env, offset = [], 0
        for obs in obs_list:
            per_env.append(actions[offset:offset + obs.shape[0]])
            offset += obs.shape[0]
        if meanwhile is not None:
            for env, act in zip(envs, per_env, strict=True):
                env.step_async(act)
            meanwhile()
        new_obs = []
        rows = zip(envs, obs_list, task_ids_list, per_env, strict=True)
        for e, (env, obs, task_ids, act) in enumerate(rows):
            next_obs, reward, terminated, truncated, info = env.step_wait() if meanwhile else env.step(act)
            self._store(task_ids, obs, act, next_obs, reward, terminated, truncated, info,
                        None if n_steps is None else n_steps[e])
            new_obs.append(next_obs)
        return new_obs

    def _make_env(self, task: str, num_envs: int):
        """The training copies of ``task``: in this process, or (``train.env_workers`` W >= 1) split over
        W worker processes whose stepping overlaps the updates (:mod:`legion_core.env_workers`)."""
        workers = self.config.train.worker_count()
        if workers:
            from legion_core.env_workers import EnvPool

            return EnvPool(task, num_envs, workers=workers, **self.env_kwargs)
        from legion_core.envs import TaskVectorEnv

        return TaskVectorEnv(task, num_envs, **self.env_kwargs)

    def _run_phase(self, stop_at: int | None) -> None:
        """Lifelong: train the current phase's task to the end of the phase (or ``stop_at``)."""
        p = self.position
        k, n = p['phase'], self.config.train.num_envs
        postfix = f'phase {k + 1}/{len(self.tasks)} {self.tasks[k]}'
        self._bar.set_postfix_str(postfix)
        self._demonstrate(range(k + 1))  # earlier tasks too, where demonstrations were switched on later
        self._pretrain(k, postfix)
        if p['local_step'] == 0:
            budget, own = self.phase_budget(), self.config.train.steps_per_task
            log.info('phase %d/%d %s: budget %d steps (its own %d + %d saved by earlier phases)', k + 1,
                     len(self.tasks), self.tasks[k], budget, own, budget - own)
        env = self._make_env(self.tasks[k], n)
        if not self._collect([env], [np.full(n, k, dtype=np.int64)], k, stop_at):
            return
        self._finish_phase(k, last=k + 1 >= len(self.tasks))

    def _run_multitask(self, stop_at: int | None) -> None:
        """Multi-task: every task of the stream stepped together in one phase."""
        n = self.config.train.num_envs
        self._demonstrate(range(len(self.tasks)))
        self._pretrain(0, '')
        envs = []
        try:
            for task in self.tasks:
                envs.append(self._make_env(task, n))
        except BaseException:
            for env in envs:
                env.close()
            raise
        task_ids = [np.full(n, j, dtype=np.int64) for j in range(len(self.tasks))]
        if not self._collect(envs, task_ids, 0, stop_at):
            return
        self._finish_phase(0, last=True)

    def _collect(self, envs, task_ids, phase: int, stop_at: int | None) -> bool:
        """Step ``envs`` and learn until the phase's local steps are done (True) or ``stop_at`` (False).

        Local steps count per task (each env copy's steps), env steps count every transition.
        """
        p, t, d = self.position, self.config.train, self.config.dpmm
        per_step = sum(env.num_envs for env in envs)
        local_per_step = envs[0].num_envs
        overlapped = all(hasattr(env, 'step_async') for env in envs)  # workers (train.env_workers)
        clock = last = time.perf_counter()
        obs = [env.reset() for env in envs]
        steps0, updates0 = p['env_steps'], self.agent.num_updates
        steps = self.phase_budget()
        n_steps = None
        if self.agent_config.n_step > 1:
            from legion_core.replay import NStepReturns

            n_steps = [NStepReturns(self.agent_config.n_step, self.agent_config.gamma, env.num_envs)
                       for env in envs]
        try:
            # The phase-start evaluation counts towards advance_on_success like any other (legion bench
            # solve counts it too): a task the agent already does, cloned or carried over, is done one
            # interval sooner. Not when stopping before the phase's first step (its demonstrations can
            # outlast a run's max_env_steps): the next run evaluates there, and one point counts once;
            # nor again when the run stopped after it, before the first step (a resumed run would count
            # the same policy on the same episodes twice).
            starting = p['local_step'] == 0 and not p['start_evaluated'] and t.eval_every > 0 \
                and not self._stopping(stop_at)
            if starting:
                p['start_evaluated'] = True
                if self._phase_over(phase, self.evaluate_all(phase, final=False)):
                    return True
            while p['local_step'] < steps:
                if self._stopping(stop_at):
                    return False
                prev, prev_global = p['local_step'], p['env_steps']

                def advance():
                    p['local_step'] += local_per_step
                    p['env_steps'] += per_step
                    self._learn(per_step, local_per_step)

                obs = self._step_envs(envs, obs, task_ids, p['local_step'] < p['warmup_end'], n_steps,
                                      meanwhile=advance if overlapped else None)
                if not overlapped:
                    advance()
                self._bar.update(per_step)
                now = p['local_step']
                if self._crossed(prev, now, d.every, d.start):
                    self.fit_dpmm()
                if self._crossed(prev_global, p['env_steps'], t.log_every):
                    wall = time.perf_counter() - clock
                    self._log_training((p['env_steps'] - steps0) / wall,
                                       (self.agent.num_updates - updates0) / wall)
                if now < steps and self._crossed(prev, now, t.eval_every) \
                        and self._phase_over(phase, self.evaluate_all(phase, final=False)):
                    return True
                due = self._crossed(prev_global, p['env_steps'], t.checkpoint_every)
                if now < steps and (due or self._checkpoint_requested):
                    if self._checkpoint_requested:
                        log.warning('checkpoint at env step %d, as requested', p['env_steps'])
                    self._checkpoint_requested = False
                    self.elapsed += time.perf_counter() - last
                    last = time.perf_counter()
                    self.save_checkpoint()
            return True
        finally:
            # Rows still waiting for their n steps leave with the steps they have (bootstrapped from
            # the current observation), so stopping between episodes loses no transition.
            for accumulator, current in zip(n_steps or [], obs, strict=False):
                rows = accumulator.flush(current)
                if rows is not None:
                    self.replay.add(**rows)
            self.elapsed += time.perf_counter() - last
            for env in envs:
                env.close()

    def phase_budget(self) -> int:
        """Local steps the current phase may take: its own, plus its share of what earlier phases saved
        by ending early (``train.advance_on_success`` and ``train.saved_steps``, lifelong mode); or
        where ``--end-phase`` stopped it."""
        p = self.position
        if p['budget'] is not None:
            return int(p['budget'])
        return self.config.train.steps_per_task + self._carry_share()

    def _carry_share(self) -> int:
        """Of the saved steps (``position['carry']``), those the current phase may spend: all of them
        (``train.saved_steps=next``), an equal share with the phases after it (spread), none."""
        saved, how = int(self.position['carry']), self.config.train.saved_steps
        if self.mode != 'lifelong' or how == 'none':
            return 0
        if how == 'spread':
            return max(saved, 0) // (len(self.tasks) - self.position['phase'])
        return saved  # next; negative only where an older --end-phase cut the phase short this way

    def _phase_over(self, phase: int, rates: list[float]) -> bool:
        """After an evaluation inside the phase: whether the phase ends here (its task solved, or
        stalled on saved steps). Lifelong mode only; sets ``position['ending']``."""
        p = self.position
        if self.mode != 'lifelong':
            return False
        p['recent'] = [*p['recent'], float(rates[phase])][-CARRY_WINDOW:]
        if self._solved(phase, rates):
            p['ending'] = 'solved'
            return True
        floor = self.config.train.carry_min_success
        own = self.config.train.steps_per_task
        if floor is None or p['local_step'] < own or max(p['recent']) >= float(floor):
            return False
        log.info('%s stalled at local step %d, past its own %d steps (best success %.2f at its last %d '
                 'evaluations, below train.carry_min_success=%s): the saved steps go on',
                 self.tasks[phase], p['local_step'], own, max(p['recent']), len(p['recent']), floor)
        p['ending'] = 'stalled'
        return True

    def _solved(self, phase: int, rates: list[float]) -> bool:
        """Whether the current task is learnt: ``train.advance_on_success`` (a success rate) reached on
        ``train.advance_evals`` consecutive evaluations of held-out episodes."""
        t, p = self.config.train, self.position
        threshold = t.advance_on_success
        if threshold is None:
            return False
        p['solved_streak'] = p['solved_streak'] + 1 if rates[phase] >= float(threshold) else 0
        if p['solved_streak'] < t.advance_evals:
            return False
        log.info('%s solved at local step %d (success >= %s at %d evaluations in a row): next task',
                 self.tasks[phase], p['local_step'], threshold, p['solved_streak'])
        return True

    def _finish_phase(self, phase: int, last: bool) -> None:
        """Final evaluation (the success-matrix row), DPMM summary, switch resets, checkpoint."""
        started = time.perf_counter()
        p = self.position
        self.evaluate_all(phase, final=True)
        if self.agent_config.freeze_skills and p['ending'] == 'solved':
            self.agent.freeze_skill(phase)  # the weights this evaluation just measured
        self.dpmm_log.append(self.dpmm_summary(phase))
        # The phase spent its share of the saved steps; what it left of its budget (ending solved or
        # stalled) is saved for the later ones. Under saved_steps=next this is the unused budget alone.
        unused = max(self.phase_budget() - p['local_step'], 0)
        ending = p['ending'] or 'budget'
        p['advanced'].append({'phase': phase, 'task': self.tasks[phase], 'local_steps': p['local_step'],
                              'env_steps': p['env_steps'], 'solved': ending == 'solved', 'ended': ending})
        p['carry'] = int(p['carry']) - self._carry_share() + unused if self.mode == 'lifelong' else 0
        p['solved_streak'] = 0
        p['recent'] = []
        p['budget'] = None
        p['ending'] = None
        p['start_evaluated'] = False
        p['phase'] = phase + 1
        p['local_step'] = 0
        p['warmup_end'] = self.config.train.warmup_steps
        p['burst_done'] = False
        p['done'] = last
        if not last:
            if self.agent_config.distill > 0:
                self._remember_tasks(phase + 1)
            self._switch_resets()
        self.elapsed += time.perf_counter() - started
        self.save_checkpoint(phase_end=phase)


def train(cfg: DictConfig | dict, run_dir: str | Path | None = None, *, progress: bool = True,
          max_env_steps: int | None = None) -> dict[str, Any]:
    """Build a trainer for ``cfg`` in ``run_dir`` (default: ``cfg.run_dir``) and run it."""
    data = to_container(cfg) if isinstance(cfg, DictConfig) else dict(cfg)
    trainer = Trainer(data, run_dir or data['run_dir'], progress=progress)
    return trainer.run(max_env_steps=max_env_steps)


def resume(run_dir: str | Path, *, progress: bool = True, max_env_steps: int | None = None,
           device: str | None = None, append_tasks: list[str] | None = None) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its last checkpoint; returns the final metrics."""
    trainer = resume_trainer(run_dir, progress=progress, device=device, append_tasks=append_tasks)
    return trainer.run(max_env_steps=max_env_steps)


def resume_trainer(run_dir: str | Path, *, progress: bool = True, device: str | None = None,
                   append_tasks: list[str] | None = None, overrides: list[str] | None = None,
                   end_phase: bool = False):
    """A ``Trainer`` restored from ``run_dir`` (config.yaml + checkpoints/last.pt), ready to ``run``.

    ``append_tasks`` makes the stream open-ended: the tasks are added after the run's own (lifelong
    runs, finished or not), and the learnt agent (networks, replay, DPMM, temperatures, teacher) goes
    on with them instead of training the earlier tasks again. config.yaml is rewritten with the longer
    stream first, so a later plain resume continues the same way.

    ``overrides`` (``key=value``, keys of :data:`legion_core.config.RESUMABLE`) change how the run goes
    on from its checkpoint: config.yaml is rewritten with them, and config_changes.jsonl records each
    change with the env step it took effect at. ValueError for any other key or a refused value.

    ``end_phase`` ends the current task's phase of a lifelong run where its checkpoint stands, as if
    its budget were spent: the run's next step is the phase's final evaluation (its success-matrix
    row), then the next task; the steps it had left are not handed on. For a task that is going
    nowhere. The checkpoint is rewritten first, then config_changes.jsonl records it.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f'{run_dir} has no {CONFIG_FILE}: not a run directory of `legion train`')
    with ckpt.run_lock(run_dir):  # it may rewrite config.yaml and the checkpoint: not under a live run
        return _restored_trainer(run_dir, progress, device, append_tasks, overrides, end_phase)


def _restored_trainer(run_dir: Path, progress: bool, device: str | None, append_tasks: list[str] | None,
                      overrides: list[str] | None, end_phase: bool):
    config_path = run_dir / CONFIG_FILE
    state = ckpt.load_checkpoint(run_dir / ckpt.CHECKPOINT_DIR / ckpt.LAST) \
        if (run_dir / ckpt.CHECKPOINT_DIR / ckpt.LAST).is_file() else None
    if state is None:
        raise FileNotFoundError(f'{run_dir} has no {ckpt.CHECKPOINT_DIR}/{ckpt.LAST}: nothing to resume')
    cfg = OmegaConf.to_container(OmegaConf.load(config_path), resolve=True)
    if device is not None:
        cfg['device'] = device
    embeddings = state['agent']['task_embeddings'].numpy()
    changed = {}
    if overrides:
        from legion_core.config import resume_overrides

        cfg, changed = resume_overrides(cfg, overrides)
    if append_tasks:
        cfg, embeddings = _appended(cfg, list(state['tasks']), embeddings, append_tasks)
    elif len(embeddings) < len(_config_tasks(cfg)):  # appended, killed before the next checkpoint
        cfg, embeddings = _appended(cfg, list(state['tasks']), embeddings, [])
    if append_tasks or changed:
        ckpt.atomic_write_text(config_path, OmegaConf.to_yaml(OmegaConf.create(cfg)))
    if changed:
        _record_change(run_dir, state['position']['env_steps'], changed=changed)
    trainer = Trainer(cfg, run_dir, progress=progress, embeddings=embeddings)
    trainer.load_state_dict(state)
    if changed and trainer.position['done']:
        # A finished stream runs no more steps: its checkpoint takes the change (agent.freeze_skills'
        # skills of the solved phases) for export_policy and `legion eval`; its success matrix stays
        # what its phases measured.
        trainer.save_checkpoint()
    if end_phase:
        _end_phase(trainer)
    return trainer


def _end_phase(trainer: Trainer) -> None:
    p = trainer.position
    if trainer.mode != 'lifelong' or p['done']:
        raise ValueError('ending a phase needs a lifelong run that has not finished its stream')
    # The phase's budget becomes the steps it has taken: the loop ends at once and _finish_phase hands
    # nothing on, as for a phase whose budget ran out (its share of the saved steps counts as spent).
    p['budget'] = int(p['local_step'])
    p['ending'] = 'by hand'
    trainer.save_checkpoint()
    _record_change(trainer.run_dir, p['env_steps'], ended_phase={
        'phase': p['phase'], 'task': trainer.tasks[p['phase']], 'local_steps': int(p['local_step'])})


def _record_change(run_dir: Path, env_steps: int, **what: Any) -> None:
    """One line of config_changes.jsonl: at which env step, what (``changed`` or ``ended_phase``), when."""
    record = {'env_steps': int(env_steps), **what, 'time': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
    with open(run_dir / CONFIG_CHANGES_FILE, 'a', encoding='utf-8') as file:
        file.write(json.dumps(record) + '\n')


def stream_tasks(run_dir: str | Path) -> list[str]:
    """The tasks of a run's stream as config.yaml lists them (appended ones included), in order."""
    return _config_tasks(OmegaConf.to_container(OmegaConf.load(Path(run_dir) / CONFIG_FILE), resolve=True))


def _config_tasks(cfg: dict[str, Any]) -> list[str]:
    from legion_core.config import StreamConfig
    from legion_core.tasks import resolve_stream

    stream = StreamConfig.from_dict(cfg['stream'])
    return resolve_stream(stream.tasks, order=stream.order, seed=int(cfg['seed']))


def _appended(cfg: dict[str, Any], done: list[str], embeddings, extra: list[str]):
    """The config and language table of the stream ``done`` + ``extra`` (and whatever config.yaml
    already lists after ``done``): resolved task names in curriculum order, the saved table's rows
    kept as they are and rows for the new tasks computed."""
    from legion_core.config import TrainConfig
    from legion_core.tasks import normalise_task_name

    if TrainConfig.from_dict(cfg['train']).mode != 'lifelong':
        raise ValueError('only a lifelong run can take more tasks (multitask trains one fixed set)')
    listed = _config_tasks(cfg)
    if listed[:len(done)] != done:
        raise ValueError(f'config.yaml lists {listed}, the checkpoint was trained on {done}')
    tasks = listed + [normalise_task_name(t) for t in extra]
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:
        raise ValueError(f'{", ".join(repeated)} already in the stream {listed}; a task appears once')
    cfg = {**cfg, 'stream': {**cfg['stream'], 'tasks': tasks, 'order': 'curriculum'}}
    new = task_embeddings(tasks[len(done):], cfg.get('language', {}))
    return cfg, np.concatenate([embeddings, new.astype(embeddings.dtype)])
