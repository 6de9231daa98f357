"""The deployable policy artefact: ``policy.pt``, and the ``LegionPolicy`` that acts from it.

``export_policy`` writes ``policy.pt`` with only what inference needs (VAE encoder, actor, the frozen
skills' encoders and actors, the task names, descriptions and language embeddings, the observation
layout, the config and the DPMM for cluster ids); ``load_policy`` gives a ``LegionPolicy`` (used by the
ROS nodes, ``legion sim`` and ``legion eval``) from that file, a training checkpoint or a run
directory. The file format and its atomic writing are :mod:`legion_core.checkpoint`'s; this module
never imports the trainer.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from legion_core.checkpoint import (
    CHECKPOINT_DIR,
    CHECKPOINT_FORMAT,
    POLICY_FILE,
    POLICY_FORMAT,
    atomic_save,
    load_checkpoint,
)


def _descriptions(tasks: list[str]) -> list[str]:
    try:
        from legion_core.language import load_task_descriptions

        table = load_task_descriptions()
    except Exception:  # descriptions are informative only; a policy without them still acts
        return ['' for _ in tasks]
    out = []
    for task in tasks:
        entry = table.get(task, table.get(task.removesuffix('-v3'), '')) if isinstance(table, dict) else ''
        if isinstance(entry, (list, tuple)):
            entry = entry[0] if entry else ''
        elif isinstance(entry, dict):
            entry = entry.get('description', next(iter(entry.values()), ''))
        out.append(str(entry))
    return out


def _part(weights: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of a module's state dict under ``prefix.``, without it."""
    return {k.removeprefix(f'{prefix}.'): v for k, v in weights.items() if k.startswith(f'{prefix}.')}


def acting_weights(agent: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The encoder's and actor's weights of an agent's state that its deterministic actions use: the
    Polyak average where the run kept one (``agent.policy_average``), else the live networks."""
    average = agent.get('policy_average')
    if average is not None:
        return _part(average, 'encoder'), _part(average, 'actor')
    return _part(agent['vae'], 'encoder'), agent['actor']


def frozen_skills(agent: dict[str, Any]) -> dict[int, dict[str, dict[str, Any]]]:
    """The frozen skills of an agent's state (``agent.freeze_skills``): per task index, the encoder's and
    actor's weights that task acts with; empty where the run kept none or has the switch off."""
    if not agent['config'].get('freeze_skills'):
        return {}
    return {int(task): {'encoder': _part(weights, 'encoder'), 'actor': _part(weights, 'actor')}
            for task, weights in (agent.get('skills') or {}).items()}


def export_policy(source: str | Path, out: str | Path | None = None) -> Path:
    """Write the inference-only artefact of a run directory or checkpoint; returns its path.

    Default destination: ``<run_dir>/policy.pt`` (``source`` a run dir) or next to the checkpoint.
    """
    source = Path(source)
    state = load_checkpoint(source)
    if state['format'] == POLICY_FORMAT:
        raise ValueError(f'{source} is already an exported policy')
    agent, cfg = state['agent'], state['config']
    encoder, actor = acting_weights(agent)
    policy = {
        'format': POLICY_FORMAT,
        'tasks': list(state['tasks']),
        'descriptions': _descriptions(list(state['tasks'])),
        'task_embeddings': agent['task_embeddings'],
        'dims': agent['dims'],
        'agent_config': agent['config'],
        'encoder': encoder,
        'actor': actor,
        'dpmm': agent.get('dpmm'),
        'skills': frozen_skills(agent),
        'env': cfg['env'],
        'config': cfg,
        'trained': {'phase': state['position']['phase'], 'env_steps': state['position']['env_steps'],
                    'success_matrix': np.asarray(state['success_matrix']).tolist()},
    }
    if out is None:
        out = (source if source.is_dir() else source.parent.parent if source.parent.name == CHECKPOINT_DIR
               else source.parent) / POLICY_FILE
    return atomic_save(policy, out)


class LegionPolicy:
    """A trained LEGION policy for inference: encoder + actor + language table (+ DPMM for clusters).

    A task with a frozen skill (``agent.freeze_skills``) acts with that skill's encoder and actor when it
    is named, or given by its own embedding; any other embedding (an instruction the stream never had)
    acts with the shared networks, as does every task with ``shared=True``."""

    def __init__(self, state: dict[str, Any], device: str | torch.device = 'cpu', shared: bool = False):
        from legion_core.agent import AgentConfig
        from legion_core.networks import Actor, VAEEncoder

        self.device = torch.device(device)
        self.config = AgentConfig.from_dict(state['agent_config'])
        self.tasks: list[str] = list(state['tasks'])
        self.descriptions: list[str] = list(state.get('descriptions') or [''] * len(self.tasks))
        self.task_embeddings = torch.as_tensor(state['task_embeddings'], dtype=torch.float32,
                                               device=self.device)
        self.obs_dim, self.action_dim = int(state['dims']['obs_dim']), int(state['dims']['action_dim'])
        self.env = dict(state['env'])
        self.layout = self.env['layout']
        self.metadata = state.get('trained', {})
        c = self.config
        if c.num_threads:
            # The run's intra-op threads, as its agent had: on shared cores a second thread spins on these
            # small networks (measured: 7 ms against 0.1 ms per layer of a 10-row batch beside a busy core).
            torch.set_num_threads(int(c.num_threads))

        def networks(weights: dict[str, Any]) -> tuple[VAEEncoder, Actor]:
            encoder = VAEEncoder(self.obs_dim, self.task_embeddings.shape[1], c.latent_dim, c.vae_hidden,
                                 c.vae_layers, c.logvar_clamp).to(self.device)
            encoder.load_state_dict(weights['encoder'])
            actor = Actor(self.obs_dim, c.latent_dim, self.action_dim, c.actor_hidden, c.actor_layers,
                          c.log_std_bounds, c.actor_body).to(self.device)
            actor.load_state_dict(weights['actor'])
            return encoder.eval(), actor.eval()

        self.encoder, self.actor = networks(state)
        #: Frozen skills by task index: (encoder, actor) that task acts with.
        self.skills = {} if shared else {int(task): networks(weights)
                                         for task, weights in (state.get('skills') or {}).items()}
        self.dpmm = None
        if state.get('dpmm') is not None:
            from legion_core.dpmm import load_dpmm

            self.dpmm = load_dpmm(state['dpmm'])

    def task_index(self, task: str) -> int:
        name = task if task in self.tasks else f'{task}-v3'
        if name not in self.tasks:
            raise ValueError(f'unknown task {task!r}; this policy knows {self.tasks}')
        return self.tasks.index(name)

    def embedding(self, task: str | np.ndarray | torch.Tensor) -> torch.Tensor:
        """[E] language embedding of a known task name, or a given embedding (e.g. of an instruction)."""
        if isinstance(task, str):
            return self.task_embeddings[self.task_index(task)]
        emb = torch.as_tensor(np.asarray(task) if not torch.is_tensor(task) else task, dtype=torch.float32,
                              device=self.device).reshape(-1)
        if emb.shape[0] != self.task_embeddings.shape[1]:
            raise ValueError(f'embedding has {emb.shape[0]} dims, the policy expects '
                             f'{self.task_embeddings.shape[1]}')
        return emb

    def _obs(self, obs) -> tuple[torch.Tensor, bool]:
        s = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        single = s.ndim == 1
        s = s.reshape(-1, s.shape[-1])
        if s.shape[1] != self.obs_dim:
            raise ValueError(f'observations have {s.shape[1]} values, the policy expects {self.obs_dim} '
                             f'(layout {self.layout!r})')
        return s, single

    @torch.no_grad()
    def act(self, obs, task: str | np.ndarray | torch.Tensor, deterministic: bool = True) -> np.ndarray:
        """Actions [N, 4] in [-1, 1] for observations [N, D] (or [4] for one [D] observation)."""
        s, single = self._obs(obs)
        emb = self.embedding(task)
        encoder, actor = self.skills.get(self._known_task(task, emb), (self.encoder, self.actor))
        emb = emb.expand(s.shape[0], -1)
        mu, logvar = encoder(s, emb)
        sample_z = not deterministic or self.config.eval_z == 'sample'
        z = encoder.sample(mu, logvar) if sample_z else mu
        action = actor.mean_action(s, z) if deterministic else actor.sample(s, z)[0]
        out = action.cpu().numpy()
        return out[0] if single else out

    def _known_task(self, task: str | np.ndarray | torch.Tensor, emb: torch.Tensor) -> int | None:
        """The index of the stream's task that ``task`` names or whose embedding it is, else None."""
        if isinstance(task, str):
            return self.task_index(task)
        same = (self.task_embeddings == emb).all(dim=1).nonzero()
        return int(same[0, 0]) if len(same) else None

    @torch.no_grad()
    def latent(self, obs, emb) -> tuple[np.ndarray, np.ndarray]:
        """(z = μ [N, d], DPMM cluster [N]; -1 where the policy has no fitted DPMM)."""
        s, _single = self._obs(obs)
        mu, _ = self.encoder(s, self.embedding(emb).expand(s.shape[0], -1))
        z = mu.cpu().numpy()
        cluster = self.dpmm.predict(z.astype(np.float64)) if self.dpmm is not None else np.full(len(z), -1)
        return z, cluster


POLICIES_DIR = Path(__file__).resolve().parent / 'data' / 'policies'
#: The default policy (`legion sim`, `make demo`): the full stream's that does the demo's job in 9 of 10
#: seeds, as the three-skill twin_demo3 did (README, "What it shows today").
SHIPPED_POLICY = POLICIES_DIR / 'legion10_recipe' / 'policy.pt'


def shipped_policies() -> dict[str, Path]:
    """The policies shipped with the package, by name (their directory under ``data/policies``; each
    has the command that trained it and its metrics beside it)."""
    return {path.parent.name: path for path in sorted(POLICIES_DIR.glob('*/policy.pt'))}


def resolve_policy(value: str | Path) -> Path:
    """``value`` as a path where it exists, else the shipped policy of that name (``legion10_twin``),
    else the path unchanged (loading it then says that nothing is there)."""
    path = Path(value).expanduser()
    if path.exists():
        return path
    return shipped_policies().get(str(value), path)


def default_policy_path() -> Path | None:
    """The policy to load when none is named: ``$LEGION_POLICY`` if it points at a file or names a
    shipped policy, else the default shipped policy, else None."""
    value = os.environ.get('LEGION_POLICY', '').strip()
    chosen = resolve_policy(value) if value else None
    if chosen is not None and chosen.exists():
        return chosen
    return SHIPPED_POLICY if SHIPPED_POLICY.is_file() else None


def load_policy(path: str | Path, device: str | torch.device = 'cpu', shared: bool = False) -> LegionPolicy:
    """A ``LegionPolicy`` from ``policy.pt``, a training checkpoint, or a run directory (``shared``: every
    task acts with the shared networks, frozen skills aside)."""
    return policy_from_state(load_checkpoint(path, map_location=device), device, shared)


def policy_from_state(state: dict[str, Any], device: str | torch.device = 'cpu',
                      shared: bool = False) -> LegionPolicy:
    """A ``LegionPolicy`` from an already loaded policy or training checkpoint."""
    if state['format'] == CHECKPOINT_FORMAT:
        agent = state['agent']
        encoder, actor = acting_weights(agent)
        state = {'tasks': state['tasks'], 'descriptions': _descriptions(list(state['tasks'])),
                 'task_embeddings': agent['task_embeddings'], 'dims': agent['dims'],
                 'agent_config': agent['config'], 'encoder': encoder,
                 'actor': actor, 'dpmm': agent.get('dpmm'), 'skills': frozen_skills(agent),
                 'env': state['config']['env'],
                 'trained': {'phase': state['position']['phase'],
                             'env_steps': state['position']['env_steps']}}
    return LegionPolicy(state, device, shared)
