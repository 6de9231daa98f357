"""Demonstrations: a few episodes of a scripted expert per task, replayed beside the agent's own.

Why: on the twin, SAC alone spends most of a task's budget finding the object at all (the legion10
stream on the twin took about 300k env steps before push's success rose above 0.1). A handful of
successful episodes in the replay shows where reward lies from the first update on. We follow RLPD
(Ball et al., 2023) and SERL: the demonstrations live in their own buffer that is never overwritten,
and every update batch draws a fixed share from the current task's (``train.demo_ratio``; RLPD's
symmetric sampling is 0.5) and the rest from the agent's replay. Earlier tasks' demonstrations stay in
that buffer (and in checkpoints) but are not drawn: distill keeps those tasks. Their env steps count
as env steps of the run (a real arm spends that time too) and are reported apart (``metrics.json``:
``demo_env_steps``).

The experts: Meta-World's scripted policies for the built-in Sawyer; an embodiment registers its own in
the ``legion.experts`` entry-point group (``name = module:function``, ``function(task) -> policy``,
``policy(obs39) -> action[4]``), as legion_kuka does for ``kuka`` and ``twin``. An expert acts on the
full 39-d observation whatever layout the agent observes.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import numpy as np

from legion_core.envs import BUILTIN_EMBODIMENT

EXPERT_GROUP = 'legion.experts'
# Demonstration copies are seeded this far from the run's seed (evaluation uses another offset): under
# goal=random their goals are neither the training copies' nor the held-out evaluation's.
DEMO_SEED_OFFSET = 2_000_003

Policy = Callable[[np.ndarray], np.ndarray]


def _metaworld_expert(task: str) -> Policy:
    from metaworld.policies import ENV_POLICY_MAP

    if task not in ENV_POLICY_MAP:
        raise KeyError(f'Meta-World has no scripted expert for {task!r}')
    return ENV_POLICY_MAP[task]().get_action


def expert_factory(embodiment: str) -> Callable[[str], Policy]:
    """``task -> policy`` of ``embodiment``'s scripted experts; ValueError where it registers none."""
    if embodiment == BUILTIN_EMBODIMENT:
        return _metaworld_expert
    entries = entry_points(group=EXPERT_GROUP)
    for entry in entries:
        if entry.name == embodiment:
            return entry.load()
    known = sorted({BUILTIN_EMBODIMENT, *(entry.name for entry in entries)})
    raise ValueError(f'embodiment {embodiment!r} has no scripted expert for demonstrations (experts: '
                     f'{", ".join(known)}); set train.demo_episodes=0')


def expert(embodiment: str, task: str) -> Policy:
    """The scripted expert of ``task`` on ``embodiment``; ValueError naming both when there is none."""
    factory = expert_factory(embodiment)
    try:
        return factory(task)
    except (KeyError, ValueError) as error:
        raise ValueError(f'no scripted expert of {task!r} on embodiment {embodiment!r} ({error}); set '
                         f'train.demo_episodes=0 or drop the task') from None


def demonstrate(env, policy: Policy, episodes: int, task_id: int, store: Callable[..., None], *,
                n_step: int = 1, gamma: float = 0.99, fix_terminal_obs: bool = True) -> dict[str, Any]:
    """Run ``policy`` for ``episodes`` whole episodes in ``env`` (a one-copy
    :class:`~legion_core.envs.TaskVectorEnv`) and hand every transition to ``store`` (a
    :meth:`~legion_core.replay.ReplayBuffer.add`), as n-step rows when ``n_step`` > 1, through the
    training loop's own :func:`~legion_core.replay.store_step`. Returns ``{'episodes', 'successes',
    'env_steps', 'mean_return'}``."""
    from legion_core.replay import NStepReturns, store_step

    if env.num_envs != 1:
        raise ValueError(f'demonstrate steps one env copy, got {env.num_envs}')
    accumulator = NStepReturns(n_step, gamma, 1) if n_step > 1 else None
    task = np.array([task_id], dtype=np.int64)
    obs = env.reset()
    done_episodes, successes, steps, returns = 0, 0, 0, []
    while done_episodes < episodes:
        # The expert gets a copy: Meta-World's edit theirs in place (door-open's `pos_door[0] -= 0.05`),
        # and the env's is read-only. The env clips as it steps; the replay keeps the action the env
        # carried out (the actor's range).
        chosen = policy(env.raw_observations[0].copy())
        action = np.clip(np.asarray(chosen, dtype=np.float32), -1.0, 1.0)[None]
        next_obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        target = info['final_obs'] if fix_terminal_obs else next_obs
        store_step(store, obs, action, reward, target, terminated, truncated, task, accumulator)
        if terminated[0] or truncated[0]:
            done_episodes += 1
            successes += int(info['episode_success'][0])
            returns.append(float(info['episode_return'][0]))
        obs = next_obs
    return {'episodes': done_episodes, 'successes': successes, 'env_steps': steps,
            'mean_return': float(np.mean(returns)) if returns else 0.0}
