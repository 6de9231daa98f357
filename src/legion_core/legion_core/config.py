"""Training configuration: the packaged Hydra config tree, composition, and validation.

The tree lives in the workspace's ``config/train`` and travels with the package through the link
``legion_core/config``. ``compose_config`` builds a config without starting a Hydra app (tests, resume,
benchmarks); ``legion train`` is the Hydra app itself (``legion_core.cli.train``).
``validate`` checks everything that can be checked before a single env step, and returns every problem
as a sentence, so that a bad run fails in a second with one clear message instead of an hour in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from legion_core.agent import AgentConfig

CONFIG_DIR = Path(__file__).resolve().parent / 'config'
CONFIG_NAME = 'config'
MODES = ('lifelong', 'multitask')
CHECKPOINT_REPLAY = ('full', 'none')
KNOWN_KEYS = {
    'stream': {'name', 'tasks', 'order'},
    'env': {'embodiment', 'layout', 'episode_length', 'goal', 'reward_scale'},
    'replay': {'policy', 'capacity', 'task_quota'},
    'dpmm': {'backend', 'options', 'start', 'every', 'batch', 'purity_batch'},
    'train': {'mode', 'steps_per_task', 'num_envs', 'warmup_steps', 'warmup_burst', 'updates_per_step',
              'reset_optimizers', 'reset_critics', 'reset_vae', 'eval_every', 'eval_episodes', 'eval_envs',
              'log_every', 'checkpoint_every', 'checkpoint_replay', 'keep_phase_checkpoints',
              'advance_on_success', 'advance_evals', 'env_process'},
}


class ConfigError(ValueError):
    """A training configuration that cannot work; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__('invalid training configuration:\n' + '\n'.join(f'  - {p}' for p in problems))


def compose_config(overrides: list[str] | tuple[str, ...] = (), *, with_hydra: bool = False) -> DictConfig:
    """The resolved training config for Hydra-style ``overrides`` (e.g. ``['preset=tiny', 'seed=3']``);
    ``with_hydra`` keeps Hydra's own node (``hydra.launcher`` and the rest)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(f'the training configs are missing: {CONFIG_DIR} (the link to '
                                'config/train); reinstall legion_core')
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


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(cfg: DictConfig | dict) -> list[str]:
    """Every problem of a training config, as sentences naming the key (empty list: valid)."""
    if isinstance(cfg, DictConfig):
        cfg = to_container(cfg)
    problems: list[str] = []
    for group in ('stream', 'agent', 'dpmm', 'replay', 'train', 'env'):
        if not isinstance(cfg.get(group), dict):
            problems.append(f'the config has no {group!r} section')
    if problems:
        return problems
    stream, train, replay, dpmm, env = cfg['stream'], cfg['train'], cfg['replay'], cfg['dpmm'], cfg['env']
    for group, known in KNOWN_KEYS.items():
        unknown = sorted(set(cfg[group]) - known)
        if unknown:
            problems.append(f'unknown {group} setting(s) {unknown}; known: {sorted(known)}')

    # Stream: task names and order.
    from legion_core.tasks import resolve_stream

    num_tasks = 0
    try:
        num_tasks = len(resolve_stream(stream.get('tasks'), order=stream.get('order', 'curriculum'),
                                       seed=int(cfg.get('seed', 0))))
    except (ValueError, TypeError) as error:
        problems.append(f'stream.tasks / stream.order: {error}')

    # Environment.
    from legion_core.envs import GOALS, LAYOUTS

    if env.get('layout') not in LAYOUTS:
        problems.append(f'env.layout must be one of {sorted(LAYOUTS)}, got {env.get("layout")!r}')
    if env.get('goal') not in GOALS:
        problems.append(f'env.goal must be one of {list(GOALS)}, got {env.get("goal")!r}')
    if not _int(env.get('episode_length')) or env['episode_length'] < 1:
        problems.append(f'env.episode_length must be a positive integer, got {env.get("episode_length")!r}')
    if env.get('embodiment') != 'sawyer':
        from legion_core.envs import available_embodiments

        if env.get('embodiment') not in available_embodiments():
            problems.append(f'env.embodiment {env.get("embodiment")!r} is not installed; available: '
                            f'{["sawyer", *available_embodiments()]}')

    # Agent.
    try:
        agent = AgentConfig.from_dict(dict(cfg['agent']))
        problems += agent.problems()
    except (TypeError, ValueError) as error:
        problems.append(str(error))
        agent = None

    # Training loop.
    if train.get('mode') not in MODES:
        problems.append(f'train.mode must be one of {list(MODES)}, got {train.get("mode")!r}')
    for key in ('steps_per_task', 'num_envs', 'eval_episodes', 'eval_envs', 'log_every'):
        if not _int(train.get(key)) or train[key] < 1:
            problems.append(f'train.{key} must be a positive integer, got {train.get(key)!r}')
    for key in ('warmup_steps', 'eval_every', 'checkpoint_every'):
        if not _int(train.get(key)) or train[key] < 0:
            problems.append(f'train.{key} must be an integer >= 0, got {train.get(key)!r}')
    ups = train.get('updates_per_step')
    if isinstance(ups, bool) or not isinstance(ups, (int, float)) or ups < 0:
        problems.append(f'train.updates_per_step must be a number >= 0, got {ups!r}')
    advance = train.get('advance_on_success')
    if advance is not None and (isinstance(advance, bool) or not isinstance(advance, (int, float))
                                or not 0 < advance <= 1):
        problems.append(f'train.advance_on_success must be null or a success rate in (0, 1], got {advance!r}')
    if 'advance_evals' in train and (not _int(train['advance_evals']) or train['advance_evals'] < 1):
        problems.append(f'train.advance_evals must be a positive integer, got {train["advance_evals"]!r}')
    if 'env_process' in train and not isinstance(train['env_process'], bool):
        problems.append(f'train.env_process must be true or false, got {train["env_process"]!r}')
    if train.get('checkpoint_replay') not in CHECKPOINT_REPLAY:
        problems.append(f'train.checkpoint_replay must be one of {list(CHECKPOINT_REPLAY)}, '
                        f'got {train.get("checkpoint_replay")!r}')
    if (_int(train.get('warmup_steps')) and _int(train.get('steps_per_task'))
            and 0 < train['steps_per_task'] <= train['warmup_steps']):
        problems.append(f'train.warmup_steps ({train["warmup_steps"]}) must be smaller than '
                        f'train.steps_per_task ({train["steps_per_task"]}): no step would be learnt')

    # Replay.
    from legion_core.replay import POLICIES

    if replay.get('policy') not in POLICIES:
        problems.append(f'replay.policy must be one of {list(POLICIES)}, got {replay.get("policy")!r}')
    capacity = replay.get('capacity')
    if not _int(capacity) or capacity < 1:
        problems.append(f'replay.capacity must be a positive integer, got {capacity!r}')
    elif agent is not None and _int(agent.batch_size) and agent.batch_size > capacity:
        problems.append(f'agent.batch_size ({agent.batch_size}) exceeds replay.capacity ({capacity})')
    quota = replay.get('task_quota')
    if quota is not None and replay.get('policy') != 'task_quota':
        problems.append(f'replay.task_quota is only used with replay.policy=task_quota, not '
                        f'{replay.get("policy")!r}')

    # DPMM.
    from legion_core.dpmm import BACKENDS

    if dpmm.get('backend') not in BACKENDS:
        problems.append(f'dpmm.backend must be one of {sorted(BACKENDS)}, got {dpmm.get("backend")!r}')
    for key in ('start', 'every', 'batch', 'purity_batch'):
        if not _int(dpmm.get(key)) or dpmm[key] < 1:
            problems.append(f'dpmm.{key} must be a positive integer, got {dpmm.get(key)!r}')
    if not isinstance(dpmm.get('options', {}), dict):
        problems.append('dpmm.options must be a mapping of backend options')
    elif dpmm.get('backend') in BACKENDS and not problems:
        from legion_core.dpmm import make_dpmm

        try:
            make_dpmm(dpmm['backend'], **dpmm.get('options', {}))
        except (ValueError, TypeError) as error:
            problems.append(f'dpmm.options: {error}')
        except ImportError as error:
            problems.append(f'dpmm.backend {dpmm["backend"]!r} cannot be imported: {error}')

    device = str(cfg.get('device', 'auto'))
    if device not in ('auto', 'cpu') and not device.startswith('cuda'):
        problems.append(f'device must be auto, cpu, cuda or cuda:N, got {device!r}')
    elif device.startswith('cuda'):
        import torch

        if not torch.cuda.is_available():
            problems.append(f'device={device} but no CUDA device is usable here (use device=cpu or auto)')
    if not _int(cfg.get('seed')):
        problems.append(f'seed must be an integer, got {cfg.get("seed")!r}')
    del num_tasks
    return problems


def check(cfg: DictConfig | dict) -> None:
    """Raise ConfigError listing every problem of ``cfg``."""
    problems = validate(cfg)
    if problems:
        raise ConfigError(problems)


def resolve_device(name: str) -> str:
    import torch

    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    return name
