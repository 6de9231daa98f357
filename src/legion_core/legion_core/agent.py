"""`LegionAgent`: SAC on [s, z] with a language-conditioned VAE whose latent space has a DPMM prior.

Update order and losses follow the original (legion-original.md §2.5, §2.8): critic, actor,
per-task temperature, Polyak averaging, and every ``vae_update_every`` updates a VAE step with
0.5 L_dyn + L_sem + β L_KL (KL to N(0, I) before the first DPMM fit, the DPMM soft KL after).

Where the speed comes from (and why the semantics stay those of one SAC update):
- the encoder runs twice per update (on s and s') and without autograd, because RL gradients never
  reach the VAE; on VAE steps the s-pass is the VAE's own forward with autograd (z detached for RL);
- the decoders run only on VAE steps;
- the critic's parameters are frozen during the actor loss, so that backward skips the critic's
  weight gradients that the original computed and threw away;
- no host sync per update: losses are summed on the device and fetched by ``pop_metrics``;
- fused (or foreach) Adam and one ``_foreach_lerp_`` for the target network;
- optional ``torch.compile`` of the networks.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from legion_core.config_section import ConfigSection
from legion_core.networks import BODIES, VAE, Actor, TwinCritic, init_weights

METRIC_NAMES = ('critic_loss', 'actor_loss', 'alpha_loss', 'entropy', 'q_mean', 'target_mean')
VAE_METRIC_NAMES = ('vae_loss', 'dyn_loss', 'sem_loss', 'kl_loss')


@dataclass
class AgentConfig(ConfigSection):
    """Everything that shapes the agent (the ``agent`` group of the training config). Defaults are the
    reference values (legion-original.md §2.9); config/train/agent/legion.yaml holds our recipe, only
    where it departs from them."""

    GROUP: ClassVar[str] = 'agent'

    latent_dim: int = 10
    vae_hidden: int = 400
    vae_layers: int = 3
    logvar_clamp: list[float] | None = None  # None (original) or [low, high] bounds on the encoder's log σ²
    actor_hidden: int = 300
    actor_layers: int = 3
    critic_hidden: int = 300
    critic_layers: int = 3
    # legion (original: LayerNorm on the input block only) | layernorm (every hidden layer) | residual
    # (BRO blocks); legion_core.networks.legion_body says what each is and why.
    actor_body: str = 'legion'
    critic_body: str = 'legion'
    weight_decay: float = 0.0           # decoupled (AdamW) decay of actor and critic weights
    log_std_bounds: list[float] = field(default_factory=lambda: [-20.0, 2.0])
    gamma: float = 0.99
    n_step: int = 1                     # n-step returns (replay rows span up to n env steps)
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    vae_lr: float = 3e-4
    batch_size: int = 512
    init_temperature: float = 1.0
    target_entropy: float | None = None  # None: -|A|
    vae_update_every: int = 50
    beta_kl: float = 1e-3
    dyn_weight: float = 0.5
    sem_weight: float = 1.0
    # Switches for the original's defects (legion-original.md §8); defaults explained in docs/training.md.
    semantic_loss: str = 'sum'          # sum (original) | mean
    semantic_output: str = 'tanh'       # tanh (original) | linear
    eval_z: str = 'mean'                # mean (fix: deterministic μ) | sample (original)
    fix_terminal_obs: bool = True       # True (fix) | False: store the reset obs as s' (original bug)
    dpmm_fit_z: str = 'sample'          # sample (original) | mean
    # Lifelong: weight of the actor's cloning of its own end-of-phase actions on earlier tasks' replayed
    # states, relative to the batch's mean |Q| (0: the original, earlier tasks get the SAC loss only).
    distill: float = 0.0
    # Whose actions an earlier task clones: last (the actor's at the latest task switch, for every
    # earlier task: a task lost a little during each later phase carries that loss into the next target)
    # | own (the actor's at the end of the task's own phase, kept for the rest of the stream).
    distill_teacher: str = 'last'
    # Demonstration rows of a batch (train.demo_episodes): weight of cloning the demonstrated action where
    # the critic rates it above the actor's (Nair et al. 2018's Q-filter), relative to mean|Q| as distill.
    demo_bc: float = 0.0
    # Whether demo_bc clones only where the critic rates the demonstrated action above the actor's. Off:
    # always (TD3+BC's term), for an actor cloned first (train.demo_pretrain) that a critic trained on
    # expert actions alone would otherwise drag wherever it overrates the actor's own actions.
    demo_q_filter: bool = True
    # Polyak average of the encoder's and actor's weights, its decay per update (0: off, the original;
    # 0.999 averages about the last 1,000 updates). On: deterministic actions (evaluation, exported
    # policies, the teachers of finished tasks) use the average, exploration the live weights.
    policy_average: float = 0.0
    # Lifelong: a task whose phase ends solved keeps acting, deterministically, with a frozen copy of
    # the encoder and actor that solved it (parameter isolation; the task's language names it, as it
    # names the task's embedding). The shared networks go on learning every task (and cloning the
    # finished ones, distill). Off: every task acts with the shared networks, which drift.
    freeze_skills: bool = False
    optimizer: str = 'fused'            # fused | foreach | plain (torch.optim.Adam implementations)
    compile: bool = False               # torch.compile the networks
    num_threads: int | None = None      # torch intra-op threads; None leaves torch's default

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
               'semantic_loss': ('sum', 'mean'), 'semantic_output': ('tanh', 'linear'),
               'eval_z': ('mean', 'sample'), 'dpmm_fit_z': ('sample', 'mean'),
               'optimizer': ('fused', 'foreach', 'plain'), 'actor_body': BODIES, 'critic_body': BODIES,
               'distill_teacher': ('last', 'own')}

    def problems(self) -> list[str]:
        """What is wrong with this configuration, as sentences (empty if nothing)."""
        out = []
        for name in ('latent_dim', 'vae_hidden', 'vae_layers', 'actor_hidden', 'critic_hidden',
                     'batch_size', 'vae_update_every', 'n_step'):
            if int(getattr(self, name)) < 1:
                out.append(f'agent.{name} must be >= 1, got {getattr(self, name)}')
        for name in ('actor_layers', 'critic_layers'):
            if int(getattr(self, name)) < 0:
                out.append(f'agent.{name} must be >= 0, got {getattr(self, name)}')
        if not 0.0 <= self.gamma <= 1.0:
            out.append(f'agent.gamma must be in [0, 1], got {self.gamma}')
        if not 0.0 < self.tau <= 1.0:
            out.append(f'agent.tau must be in (0, 1], got {self.tau}')
        for name in ('actor_lr', 'critic_lr', 'alpha_lr', 'vae_lr', 'init_temperature'):
            if not float(getattr(self, name)) > 0:
                out.append(f'agent.{name} must be > 0, got {getattr(self, name)}')
        if self.beta_kl < 0:
            out.append(f'agent.beta_kl must be >= 0, got {self.beta_kl}')
        if not float(self.weight_decay) >= 0:
            out.append(f'agent.weight_decay must be >= 0, got {self.weight_decay}')
        if not float(self.distill) >= 0:
            out.append(f'agent.distill must be >= 0, got {self.distill}')
        if not float(self.demo_bc) >= 0:
            out.append(f'agent.demo_bc must be >= 0, got {self.demo_bc}')
        if not 0.0 <= float(self.policy_average) < 1.0:
            out.append(f'agent.policy_average must be in [0, 1), got {self.policy_average}')
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                out.append(f'agent.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}')
        if len(self.log_std_bounds) != 2 or not self.log_std_bounds[0] < self.log_std_bounds[1]:
            out.append(f'agent.log_std_bounds must be [low, high] with low < high, got {self.log_std_bounds}')
        if self.logvar_clamp is not None and (len(self.logvar_clamp) != 2
                                              or not self.logvar_clamp[0] < self.logvar_clamp[1]):
            out.append(f'agent.logvar_clamp must be null or [low, high], got {self.logvar_clamp}')
        return out


def _adam(params, lr: float, impl: str, device: torch.device, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam, or AdamW (decoupled decay) when ``weight_decay`` > 0, with the chosen kernel."""
    params = list(params)
    kind, extra = torch.optim.Adam, {}
    if weight_decay > 0:
        kind, extra = torch.optim.AdamW, {'weight_decay': weight_decay}
    if impl == 'fused':
        try:
            return kind(params, lr=lr, fused=True, **extra)
        except (RuntimeError, TypeError):  # no fused kernel for this device/dtype: use foreach
            pass
    return kind(params, lr=lr, foreach=impl != 'plain', **extra)


class LegionAgent:
    """The LEGION agent. ``task_embeddings`` [T, E] is the frozen language table (one row per task)."""

    def __init__(self, obs_dim: int, action_dim: int, task_embeddings: np.ndarray | torch.Tensor,
                 config: AgentConfig | None = None, dpmm: Any = None, device: str | torch.device = 'cpu'):
        self.config = cfg = config or AgentConfig()
        problems = cfg.problems()
        if problems:
            raise ValueError('; '.join(problems))
        if cfg.num_threads:
            torch.set_num_threads(int(cfg.num_threads))
        self.device = torch.device(device)
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.task_embeddings = torch.as_tensor(np.asarray(task_embeddings), dtype=torch.float32,
                                               device=self.device)
        if self.task_embeddings.ndim != 2:
            raise ValueError('task_embeddings must be [num_tasks, dim], got '
                             f'{tuple(self.task_embeddings.shape)}')
        self.num_tasks, self.emb_dim = self.task_embeddings.shape
        self.target_entropy = float(cfg.target_entropy if cfg.target_entropy is not None else -action_dim)

        self.vae = VAE(obs_dim, action_dim, self.emb_dim, cfg.latent_dim, cfg.vae_hidden, cfg.vae_layers,
                       cfg.semantic_output, cfg.logvar_clamp).to(self.device)
        self.actor = Actor(obs_dim, cfg.latent_dim, action_dim, cfg.actor_hidden, cfg.actor_layers,
                           cfg.log_std_bounds, cfg.actor_body).to(self.device)
        self.critic = TwinCritic(obs_dim, cfg.latent_dim, action_dim, cfg.critic_hidden,
                                 cfg.critic_layers, cfg.critic_body).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.full((self.num_tasks,), math.log(cfg.init_temperature), device=self.device,
                                    requires_grad=True)
        self._target_params = list(self.critic_target.parameters())
        self._critic_params = list(self.critic.parameters())
        self.reset_optimizers()
        # What deterministic actions use with config.policy_average: the Polyak average of the encoder
        # and actor. The live weights swing between evaluations (door-open's held-out success went 0.8,
        # 0.0, 0.7 10,000 steps apart); their average moves with what they learn, not with each batch.
        self.average: nn.ModuleDict | None = None
        if cfg.policy_average > 0:
            self.average = copy.deepcopy(self._live_policy()).requires_grad_(False)
            self._average_params = list(self.average.parameters())
            self._live_params = list(self._live_policy().parameters())
        if cfg.compile:
            for module in (self.vae.encoder, self.actor, self.critic, self.critic_target):
                module.compile()

        # Frozen copies of the encoder and actor taken at the last task switch, and how many tasks
        # (the first ones of the stream) they had learnt: the cloning targets of ``config.distill``.
        self.teacher: nn.ModuleDict | None = None
        self.teacher_tasks = 0
        # Frozen encoder and actor per task id (config.freeze_skills): the deterministic policy of that task.
        self.skills: dict[int, nn.ModuleDict] = {}
        self.dpmm = dpmm          # legion_core.dpmm DPMM, or None (then the KL is always to N(0, I))
        self.prior = None         # DPMMPrior built after each fit
        self.num_updates = 0
        self.num_vae_updates = 0
        self._metric_sum = torch.zeros(len(METRIC_NAMES), device=self.device)
        self._vae_metric_sum = torch.zeros(len(VAE_METRIC_NAMES), device=self.device)
        self._metric_count = 0
        self._vae_metric_count = 0

    # ------------------------------------------------------------------ resets at task switches
    def reset_optimizers(self) -> None:
        """Fresh Adam moments for every optimizer; weights and log α are kept (original semantics)."""
        cfg = self.config
        impl, dev = cfg.optimizer, self.device
        self.actor_optimizer = _adam(self.actor.parameters(), cfg.actor_lr, impl, dev, cfg.weight_decay)
        self.critic_optimizer = _adam(self.critic.parameters(), cfg.critic_lr, impl, dev, cfg.weight_decay)
        self.alpha_optimizer = _adam([self.log_alpha], cfg.alpha_lr, impl, dev)
        self.vae_optimizer = _adam(self.vae.parameters(), cfg.vae_lr, impl, dev)

    def reset_critics(self) -> None:
        """Re-initialise both critics and copy them into the target."""
        init_weights(self.critic)
        with torch.no_grad():
            for target, source in zip(self.critic_target.parameters(), self.critic.parameters(), strict=True):
                target.copy_(source)
        self.critic_optimizer = _adam(self.critic.parameters(), self.config.critic_lr, self.config.optimizer,
                                      self.device, self.config.weight_decay)

    def reset_vae(self) -> None:
        """Re-initialise the VAE (encoder and decoders) with its optimizer (and the encoder's average)."""
        init_weights(self.vae)
        if self.average is not None:
            self.average['encoder'].load_state_dict(self.vae.encoder.state_dict())
        self.vae_optimizer = _adam(self.vae.parameters(), self.config.vae_lr, self.config.optimizer,
                                   self.device)

    def restart_average(self) -> None:
        """The policy's average (``config.policy_average``) jumps to the live weights. After cloning
        (``train.demo_pretrain``) the phase starts from the cloned actor, and an average over the cloning
        updates acts with a blend of the actor before, during and after it: door-open's read 0.0 at the
        phase start where the cloned actor read 0.7."""
        if self.average is not None:
            self.average.load_state_dict(self._live_policy().state_dict())

    def remember_tasks(self, num_tasks: int) -> range:
        """At a task switch: freeze the current encoder and actor as the behaviour to keep on the first
        ``num_tasks`` tasks (used when ``config.distill`` > 0). Returns the tasks whose replayed rows are
        to be labelled with this teacher's actions (:meth:`teacher_actions`, the rows'
        ``teacher_action``): every one of them (``distill_teacher: last``), or only those it is the first
        teacher of (``own``: an earlier task keeps the actions of the end of its own phase).

        Why: after its phase a task learns only from its replayed transitions. SAC keeps moving its
        policy there although no new data of it arrive, and where its reward is nearly flat (reach
        pays 10 per step inside the 5 cm success radius and 9.9 at 6 cm) those moves lose the
        success: measured on reach's own replay alone, with the VAE and α frozen, its deterministic
        episode went from 3 cm to 6-10 cm off the goal within 2,500-5,000 updates.
        """
        # The deterministic policy, the one whose success ended the phase.
        self.teacher = copy.deepcopy(self.acting_policy()).requires_grad_(False)
        first = self.teacher_tasks if self.config.distill_teacher == 'own' else 0
        self.teacher_tasks = int(num_tasks)
        return range(min(first, self.teacher_tasks), self.teacher_tasks)

    def freeze_skill(self, task: int, weights: dict[str, Any] | None = None) -> None:
        """Task ``task`` acts from now on (deterministic actions) with a frozen copy of the acting encoder
        and actor, or of ``weights`` (such a copy's state dict: a skill solved before freeze_skills was
        switched on, from its phase checkpoint).

        Why: a skill that needs nearly all of its episode does not survive a shared actor that drifts a
        few percent from it, and no cloning weight, DART rows, frozen encoder or larger actor kept
        door-open's copy close enough (docs/training.md, "How door-open is lost")."""
        skill = copy.deepcopy(self.acting_policy()).requires_grad_(False)
        if weights is not None:
            skill.load_state_dict(weights)
        self.skills[int(task)] = skill

    @torch.no_grad()
    def teacher_actions(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The teacher's deterministic actions tanh(μ) at z = μ of its encoder [N, A]: the cloning targets
        of the rows (obs [N, D], task [N]) it is to keep. Stored with the rows at the switch, so that an
        update reads them instead of running the teacher."""
        if self.teacher is None:
            raise RuntimeError('no teacher yet: remember_tasks() is called at the first task switch')
        obs, task = obs.to(self.device), task.to(self.device).long()
        t_mu, _ = self.teacher['encoder'].forward_tasks(obs, task, self.task_embeddings)
        return self.teacher['actor'].mean_action(obs, t_mu)

    # ------------------------------------------------------------------ inference
    def _live_policy(self) -> nn.ModuleDict:
        return nn.ModuleDict({'encoder': self.vae.encoder, 'actor': self.actor})

    def acting_policy(self) -> nn.ModuleDict:
        """The encoder and actor that deterministic actions use: the Polyak average
        (``config.policy_average``) or the live networks."""
        return self.average if self.average is not None else self._live_policy()

    def _embeddings(self, task: Any, n: int) -> torch.Tensor:
        """Rows of the language table for task ids, or given embeddings, as [n, E] on the device."""
        if isinstance(task, (int, np.integer)):
            return self.task_embeddings[int(task)].expand(n, -1)
        t = torch.as_tensor(np.asarray(task) if not torch.is_tensor(task) else task, device=self.device)
        if t.dtype in (torch.int32, torch.int64):
            if t.numel() == 1:
                return self.task_embeddings[t.reshape(-1)].expand(n, -1)
            return self.task_embeddings[t]
        t = t.float()
        return t.expand(n, -1) if t.ndim == 1 else t

    @torch.no_grad()
    def encode(self, obs: np.ndarray | torch.Tensor, task: Any, use: str = 'mean') -> torch.Tensor:
        """z for a batch: ``task`` is a task id, ids [N], or embeddings [E] / [N, E]; ``use`` mean|sample."""
        s = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        mu, logvar = self.vae.encoder(s, self._embeddings(task, s.shape[0]))
        return mu if use == 'mean' else self.vae.encoder.sample(mu, logvar)

    @torch.no_grad()
    def act(self, obs: np.ndarray, task: Any, deterministic: bool = False) -> np.ndarray:
        """Actions [N, A] for observations [N, D] of one or several tasks (batched over env copies).

        Deterministic actions use tanh(μ) and, with ``eval_z='mean'``, z = μ of the encoder; a task given by
        id that has a frozen skill (``freeze_skills``) acts with that skill's encoder and actor.
        """
        s = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        squeeze = s.ndim == 1
        s = s.reshape(-1, self.obs_dim)
        emb = self._embeddings(task, s.shape[0])
        if not deterministic:
            return self._actions(self._live_policy(), s, emb, False, squeeze)
        ids = self._task_ids(task, s.shape[0])
        if ids is None or not self.skills or not any(int(i) in self.skills for i in ids.unique()):
            return self._actions(self.acting_policy(), s, emb, True, squeeze)
        out = np.empty((s.shape[0], self.action_dim), dtype=np.float32)
        for i in ids.unique().tolist():  # rows of each frozen skill, then the rest with the shared policy
            rows = ids == i
            out[rows.cpu().numpy()] = self._actions(self.skills.get(i, self.acting_policy()), s[rows],
                                                    emb[rows], True, False)
        return out[0] if squeeze else out

    def _task_ids(self, task: Any, n: int) -> torch.Tensor | None:
        """Task ids [n] for ``task`` given as ids, None where it is given as embeddings."""
        if isinstance(task, (int, np.integer)):
            return torch.full((n,), int(task), dtype=torch.long)
        t = torch.as_tensor(np.asarray(task) if not torch.is_tensor(task) else task)
        if t.dtype not in (torch.int32, torch.int64):
            return None
        return t.reshape(-1).long().cpu().expand(n) if t.numel() == 1 else t.reshape(-1).long().cpu()

    def _actions(self, policy: nn.ModuleDict, s: torch.Tensor, emb: torch.Tensor, deterministic: bool,
                 squeeze: bool) -> np.ndarray:
        encoder, actor = policy['encoder'], policy['actor']
        mu, logvar = encoder(s, emb)
        z = mu if deterministic and self.config.eval_z == 'mean' else encoder.sample(mu, logvar)
        action = actor.mean_action(s, z) if deterministic else actor.sample(s, z)[0]
        out = action.cpu().numpy()
        return out[0] if squeeze else out

    # ------------------------------------------------------------------ learning
    def update(self, batch: dict[str, torch.Tensor], clone: bool = False) -> None:
        """One SAC update (and a VAE step every ``vae_update_every`` updates) on a replay batch.

        ``clone``: behaviour cloning instead of the actor's SAC loss (train.demo_pretrain): the actor
        imitates the demonstrated action on the batch's ``demo`` rows and, with distill, its teacher on
        earlier tasks' rows; the critics learn as in every update; α stays where it is."""
        cfg = self.config
        obs, action, next_obs = batch['obs'], batch['action'], batch['next_obs']
        reward = batch['reward'].reshape(-1)
        not_done = 1.0 - batch['done'].reshape(-1).float()
        task = batch['task'].reshape(-1).long()
        vae_step = (self.num_updates + 1) % cfg.vae_update_every == 0

        # Encoder pass on s: with autograd only when the VAE learns on this update.
        if vae_step:
            mu, logvar = self.vae.encoder.forward_tasks(obs, task, self.task_embeddings)
            z_vae = self.vae.encoder.sample(mu, logvar)
            z = z_vae.detach()
            std = torch.exp(0.5 * logvar.detach())
            mu_d = mu.detach()
        else:
            with torch.no_grad():
                mu_d, logvar_d = self.vae.encoder.forward_tasks(obs, task, self.task_embeddings)
                std = torch.exp(0.5 * logvar_d)
                z = mu_d + std * torch.randn_like(mu_d)

        alpha_all = self.log_alpha.exp()
        alpha = alpha_all[task].detach()
        with torch.no_grad():
            next_mu, next_logvar = self.vae.encoder.forward_tasks(next_obs, task, self.task_embeddings)
            next_z = self.vae.encoder.sample(next_mu, next_logvar)
            next_action, next_logp = self.actor.sample(next_obs, next_z)
            q1_t, q2_t = self.critic_target(next_obs, next_z, next_action)
            # An n-step row bootstraps after its horizon: γ^horizon (exactly γ for one-step rows).
            discount = cfg.gamma if cfg.n_step == 1 else torch.pow(cfg.gamma, batch['horizon'].reshape(-1))
            target_q = reward + discount * not_done * (torch.min(q1_t, q2_t) - alpha * next_logp)

        q1, q2 = self.critic(obs, z, action)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        # The actor sees a fresh z sample (as in the original) from the same posterior: no new encoder pass.
        # Cloning fits the deterministic action at z = μ, where the policy acts when evaluated and where
        # distill clones: with z sampled (a fresh encoder's std is about 1) it learnt several times slower.
        z_pi = mu_d if clone else mu_d + std * torch.randn_like(mu_d)
        distill = cfg.distill > 0 and self.teacher is not None
        if distill:
            # Remembered tasks' samples are cloned at the deterministic action, i.e. at z = μ.
            old = task < self.teacher_tasks
            z_pi = torch.where(old.unsqueeze(-1), mu_d, z_pi)
        new_action, logp, pi_mean = self.actor.sample(obs, z_pi, with_mean=True)
        for param in self._critic_params:
            param.requires_grad_(False)
        q_pi = torch.min(*self.critic(obs, z_pi, new_action))
        for param in self._critic_params:
            param.requires_grad_(True)
        per_sample = alpha * logp - q_pi
        if clone:
            per_sample = self._demo_cloning(batch['demo'], action, pi_mean, q_pi, None, pure=True)
        elif cfg.demo_bc > 0 and 'demo' in batch:
            per_sample = per_sample + self._demo_cloning(batch['demo'], action, pi_mean, q_pi,
                                                         torch.min(q1, q2).detach())
        if distill:
            # Cloning weighs absolutely (1 per demonstration, distill per earlier task's row): the critics'
            # values grow fast while they first learn a task, and an actor loss that grows with them
            # outpaces Adam's step-size estimate (measured: cloned push 0.5 at 3,000 updates, 0.0 at 6,000).
            if 'teacher_action' not in batch:
                raise ValueError("agent.distill needs the batch's teacher_action (the replay's rows, "
                                 'labelled at the task switch by teacher_actions)')
            per_sample = self._distilled(per_sample, batch['teacher_action'], old, pi_mean,
                                         torch.ones_like(q_pi) if clone else q_pi)
        actor_loss = per_sample.mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()

        # Disentangled temperature: one log α per task; the loss uses α itself, as the original does.
        # Cloning leaves it: the entropy the actor will need online is not the demonstrations' business.
        alpha_terms = alpha_all[task] * (-logp.detach() - self.target_entropy)
        if distill:
            # A cloned task's actor no longer answers to its α: left free, α grew without bound (to
            # 13 and 66 for reach and drawer-close in `legion bench learn`) and inflated the shared
            # critic's targets. It stays at its value of the switch.
            alpha_terms = torch.where(old, torch.zeros_like(alpha_terms), alpha_terms)
        alpha_loss = alpha_terms.mean()
        if not clone:
            self.alpha_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_optimizer.step()

        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, cfg.tau)
            self._metric_sum += torch.stack([critic_loss.detach(), actor_loss.detach(), alpha_loss.detach(),
                                             -logp.detach().mean(), q1.detach().mean(), target_q.mean()])
        self._metric_count += 1

        if vae_step:
            self._vae_step(obs, action, next_obs, self.task_embeddings[task], mu, logvar, z_vae)
        if self.average is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self._average_params, self._live_params, 1.0 - cfg.policy_average)
        self.num_updates += 1

    def _demo_cloning(self, demo, action, pi_mean, q_pi, q_demo, pure: bool = False) -> torch.Tensor:
        """Per-sample cloning term of demonstration rows: ``demo_bc`` x mean|Q| x the squared distance
        between the actor's deterministic action and the demonstrated one, only where the critic values
        the demonstrated action above the actor's (the Q-filter, ``demo_q_filter``: a demonstration the
        agent has outgrown, or a failed one, stops pulling). Other rows: 0. ``pure`` (cloning before RL,
        train.demo_pretrain): weight 1 and no Q-filter, the critic knowing nothing of the task yet."""
        with torch.no_grad():
            keep = demo.reshape(-1).bool()
            if not pure and self.config.demo_q_filter:
                keep = keep & (q_demo > q_pi.detach())
            scale = 1.0 if pure else self.config.demo_bc * q_pi.detach().abs().mean()
        clone = scale * (torch.tanh(pi_mean) - action).pow(2).sum(dim=-1)
        return torch.where(keep, clone, torch.zeros_like(clone))

    def _distilled(self, per_sample, t_action, old, pi_mean, q_pi) -> torch.Tensor:
        """Actor loss per sample with earlier tasks' SAC term replaced by cloning the teacher.

        On a sample of a task the teacher knew, the loss is ``distill`` x mean|Q| x the squared distance
        between the actor's deterministic action tanh(μ) and the teacher's (``t_action``, the row's
        ``teacher_action``), each with z = μ of its own encoder (the actor's z on these samples is μ, set
        by the caller). Scaling by mean|Q| (as TD3+BC does) keeps the weight independent of the reward
        scale. The current task keeps the SAC loss; the critics learn every task as before; a cloned
        task's α is no longer updated.
        """
        with torch.no_grad():
            scale = self.config.distill * q_pi.abs().mean()
        clone = scale * (torch.tanh(pi_mean) - t_action).pow(2).sum(dim=-1)
        return torch.where(old, clone, per_sample)

    def _vae_step(self, obs, action, next_obs, emb, mu, logvar, z) -> None:
        cfg = self.config
        dyn_loss = F.mse_loss(self.vae.dynamics(obs, action, z), next_obs)
        sem_loss = F.mse_loss(self.vae.semantic(z), emb, reduction=cfg.semantic_loss)
        kl_loss = self.kl(mu, logvar, z).mean()
        vae_loss = cfg.dyn_weight * dyn_loss + cfg.sem_weight * sem_loss + cfg.beta_kl * kl_loss
        self.vae_optimizer.zero_grad(set_to_none=True)
        vae_loss.backward()
        self.vae_optimizer.step()
        with torch.no_grad():
            self._vae_metric_sum += torch.stack([vae_loss.detach(), dyn_loss.detach(), sem_loss.detach(),
                                                 kl_loss.detach()])
        self._vae_metric_count += 1
        self.num_vae_updates += 1

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """KL of q(z|s,e) to the prior [B]: N(0, I) before the first DPMM fit, the DPMM soft KL after."""
        if self.prior is None:
            return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)
        return self.prior.kl(mu, logvar, z)

    def fit_dpmm(self, obs: torch.Tensor, task: torch.Tensor, seed: int) -> int:
        """Fit the DPMM on latents of a replay sample (z per ``dpmm_fit_z``); returns K."""
        if self.dpmm is None:
            raise RuntimeError('this agent was built without a DPMM')
        from legion_core.dpmm.kl import DPMMPrior

        z = self.encode(obs, task.long(), use=self.config.dpmm_fit_z)
        self.dpmm.fit(z.cpu().numpy().astype(np.float64), seed=seed)
        self.prior = DPMMPrior(self.dpmm, self.device)
        return int(self.dpmm.num_components)

    def pop_metrics(self) -> dict[str, float]:
        """Means of the training losses since the last call (the only host sync of the update path)."""
        out: dict[str, float] = {}
        if self._metric_count:
            values = (self._metric_sum / self._metric_count).tolist()
            out.update(zip(METRIC_NAMES, values, strict=True))
        if self._vae_metric_count:
            values = (self._vae_metric_sum / self._vae_metric_count).tolist()
            out.update(zip(VAE_METRIC_NAMES, values, strict=True))
        self._metric_sum.zero_()
        self._vae_metric_sum.zero_()
        self._metric_count = self._vae_metric_count = 0
        return out

    def temperatures(self) -> np.ndarray:
        """α per task."""
        return self.log_alpha.detach().exp().cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """A snapshot (deep copy): later updates do not change it, loading it shares nothing."""
        return copy.deepcopy({
            'config': self.config.to_dict(),
            'dims': {'obs_dim': self.obs_dim, 'action_dim': self.action_dim},
            'task_embeddings': self.task_embeddings.cpu(),
            'vae': self.vae.state_dict(),
            'actor': self.actor.state_dict(),
            'critic': self.critic.state_dict(),
            'critic_target': self.critic_target.state_dict(),
            'log_alpha': self.log_alpha.detach().cpu(),
            'optimizers': {name: getattr(self, f'{name}_optimizer').state_dict()
                           for name in ('actor', 'critic', 'alpha', 'vae')},
            'dpmm': self.dpmm.state_dict() if self.dpmm is not None and self.dpmm.fitted else None,
            'num_updates': self.num_updates,
            'num_vae_updates': self.num_vae_updates,
            'teacher': self.teacher.state_dict() if self.teacher is not None else None,
            'teacher_tasks': self.teacher_tasks,
            'policy_average': self.average.state_dict() if self.average is not None else None,
            'skills': {task: skill.state_dict() for task, skill in self.skills.items()},
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dims = state['dims']
        if (dims['obs_dim'], dims['action_dim']) != (self.obs_dim, self.action_dim):
            raise ValueError(f'checkpoint is for obs/action dims {dims}, agent has '
                             f'{self.obs_dim}/{self.action_dim}')
        saved = state['task_embeddings'].to(self.device)
        grown = saved.shape[0] < self.num_tasks  # tasks appended to the stream since the save
        if grown and not torch.equal(saved, self.task_embeddings[:saved.shape[0]]):
            raise ValueError('the checkpoint\'s task embeddings differ from the first rows of this agent\'s')
        if not grown:
            self.task_embeddings = saved
        self.vae.load_state_dict(state['vae'])
        self.actor.load_state_dict(state['actor'])
        self.critic.load_state_dict(state['critic'])
        self.critic_target.load_state_dict(state['critic_target'])
        with torch.no_grad():  # a new task's temperature starts at init_temperature
            self.log_alpha[:saved.shape[0]] = state['log_alpha'].to(self.device)
        for name, opt_state in state['optimizers'].items():
            if grown and name == 'alpha':
                continue  # its moments are per task: a fresh optimizer, as at every task switch
            # Optimizer.load_state_dict keeps the given moment tensors: copy them so that two agents
            # loaded from one in-memory state never share (and double-update) Adam moments.
            getattr(self, f'{name}_optimizer').load_state_dict(copy.deepcopy(opt_state))
        self.prior = None
        if state.get('dpmm') is not None:
            if self.dpmm is None:
                raise ValueError('checkpoint holds a fitted DPMM but this agent was built without one')
            from legion_core.dpmm.kl import DPMMPrior

            self.dpmm.load_state_dict(state['dpmm'])
            self.prior = DPMMPrior(self.dpmm, self.device)
        self.num_updates = int(state['num_updates'])
        self.num_vae_updates = int(state['num_vae_updates'])
        self.teacher, self.teacher_tasks = None, 0
        if self.average is not None:  # switched on at a resume: the average starts from the live weights
            saved_average = state.get('policy_average')
            self.average.load_state_dict(saved_average if saved_average is not None
                                         else self._live_policy().state_dict())
        if state.get('teacher') is not None:  # checkpoints before the teacher existed have none
            self.remember_tasks(int(state['teacher_tasks']))
            self.teacher.load_state_dict(state['teacher'])
        self.skills = {}
        if self.config.freeze_skills:  # switched off at a resume: every task acts with the shared networks
            for task, weights in (state.get('skills') or {}).items():
                self.freeze_skill(int(task), weights)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
