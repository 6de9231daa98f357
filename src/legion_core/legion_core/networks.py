"""LEGION's networks: the VAE (task encoder and its two decoders), the SAC actor and twin critic.

Reference sizes follow the original code (docs: legion-original.md §2.3-2.7) and every size is a
constructor argument. All layers use Xavier-uniform weights and zero biases, as the original does.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the conventional alias

LOG_2PI = math.log(2.0 * math.pi)


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every Linear layer of ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


def relu_mlp(in_dim: int, hidden: int, num_layers: int, out_dim: int | None) -> nn.Sequential:
    """``num_layers`` x (Linear(hidden) + ReLU), then an optional linear output layer."""
    if num_layers < 1 or hidden < 1:
        raise ValueError(f'an MLP needs at least one hidden layer of width >= 1, got {num_layers} x {hidden}')
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    if out_dim is not None:
        layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


BODIES = ('legion', 'layernorm', 'residual')


def legion_body(in_dim: int, hidden: int, num_layers: int, out_dim: int,
                kind: str = 'legion') -> nn.Sequential:
    """The actor/critic body, ``num_layers`` hidden layers after the input block, then a linear output.

    - ``legion`` (the original): Linear -> LayerNorm -> Tanh, then ``num_layers`` x (Linear + LeakyReLU).
    - ``layernorm``: every hidden Linear followed by LayerNorm and ReLU. Normalised pre-activations keep
      the critic's features bounded however large the returns grow (Meta-World pays up to 10 a step,
      Q reaches ~1,000), the property BRO and SimBa build their sample efficiency on.
    - ``residual``: BRO's critic (Nauman et al. 2024): Linear -> LayerNorm -> ReLU, then
      ``num_layers // 2`` blocks x + LN(W2 ReLU(LN(W1 x))) (an odd layer count adds a plain LN layer).
    """
    if num_layers < 0 or hidden < 1:
        raise ValueError(f'bad actor/critic size: {num_layers} layers of width {hidden}')
    if kind == 'legion':
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.Tanh()]
        for _ in range(num_layers):
            layers += [nn.Linear(hidden, hidden), nn.LeakyReLU()]
    elif kind == 'layernorm':
        layers = [nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU()]
        for _ in range(num_layers):
            layers += [nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU()]
    elif kind == 'residual':
        layers = [nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU()]
        layers += [ResidualBlock(hidden) for _ in range(num_layers // 2)]
        if num_layers % 2:
            layers += [nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU()]
    else:
        raise ValueError(f'unknown body {kind!r}; valid: {", ".join(BODIES)}')
    layers.append(nn.Linear(hidden, out_dim))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """x + LN(W2 ReLU(LN(W1 x))): BRO's block, two hidden layers."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU(),
                                 nn.Linear(width, width), nn.LayerNorm(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class VAEEncoder(nn.Module):
    """q(z | s, e): the "task encoder" of the paper. Input [s, e], output (μ, log σ²).

    The trunk is evaluated once and feeds both heads (the original ran it once per head).
    ``logvar_clamp`` optionally bounds log σ² to keep exp() finite when the DPMM prior is tight.
    """

    def __init__(self, obs_dim: int, emb_dim: int, latent_dim: int = 10, hidden: int = 400,
                 num_layers: int = 3, logvar_clamp: Sequence[float] | None = None):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f'latent_dim must be >= 1, got {latent_dim}')
        self.obs_dim, self.emb_dim, self.latent_dim = obs_dim, emb_dim, latent_dim
        self.trunk = relu_mlp(obs_dim + emb_dim, hidden, num_layers, None)
        # One Linear for both heads: a single matmul, split afterwards.
        self.heads = nn.Linear(hidden, 2 * latent_dim)
        self.logvar_clamp = tuple(logvar_clamp) if logvar_clamp is not None else None
        init_weights(self)

    def forward(self, obs: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.heads(self.trunk(torch.cat([obs, emb], dim=-1))).chunk(2, dim=-1)
        if self.logvar_clamp is not None:
            logvar = logvar.clamp(*self.logvar_clamp)
        return mu, logvar

    def forward_tasks(self, obs: torch.Tensor, task: torch.Tensor, table: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward(obs, table[task])`` computed faster when embeddings come from a task table.

        The first layer is linear in [s, e], so W [s, e] + b = W_s s + (W_e e + b): the embedding part
        is computed once per task row ([T, H]) and gathered, instead of once per sample ([B, E] x [E, H]).
        Same function and gradients; only the floating-point summation order differs.
        """
        first = self.trunk[0]
        per_task = F.linear(table, first.weight[:, self.obs_dim:], first.bias)
        hidden = self.trunk[1:](F.linear(obs, first.weight[:, :self.obs_dim]) + per_task[task])
        mu, logvar = self.heads(hidden).chunk(2, dim=-1)
        if self.logvar_clamp is not None:
            logvar = logvar.clamp(*self.logvar_clamp)
        return mu, logvar

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Reparameterised z = μ + σ ε."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


class DynamicsDecoder(nn.Module):
    """p(s' | s, a, z): predicts the next observation."""

    def __init__(self, obs_dim: int, action_dim: int, latent_dim: int = 10, hidden: int = 400,
                 num_layers: int = 3):
        super().__init__()
        self.net = relu_mlp(obs_dim + action_dim + latent_dim, hidden, num_layers, obs_dim)
        init_weights(self)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action, z], dim=-1))


class SemanticDecoder(nn.Module):
    """p(e | z): reconstructs the language embedding; ``output`` 'tanh' (original) or 'linear'."""

    def __init__(self, latent_dim: int, emb_dim: int, hidden: int = 400, num_layers: int = 3,
                 output: str = 'tanh'):
        super().__init__()
        if output not in ('tanh', 'linear'):
            raise ValueError(f"semantic decoder output must be 'tanh' or 'linear', got {output!r}")
        self.net = relu_mlp(latent_dim, hidden, num_layers, emb_dim)
        self.output = output
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        return torch.tanh(out) if self.output == 'tanh' else out


class VAE(nn.Module):
    """Encoder plus both decoders, optimised together by one optimizer (as in the original)."""

    def __init__(self, obs_dim: int, action_dim: int, emb_dim: int, latent_dim: int = 10,
                 hidden: int = 400, num_layers: int = 3, semantic_output: str = 'tanh',
                 logvar_clamp: Sequence[float] | None = None):
        super().__init__()
        self.encoder = VAEEncoder(obs_dim, emb_dim, latent_dim, hidden, num_layers, logvar_clamp)
        self.dynamics = DynamicsDecoder(obs_dim, action_dim, latent_dim, hidden, num_layers)
        self.semantic = SemanticDecoder(latent_dim, emb_dim, hidden, num_layers, semantic_output)


class Actor(nn.Module):
    """π(a | s, z): a tanh-squashed diagonal Gaussian."""

    def __init__(self, obs_dim: int, latent_dim: int, action_dim: int, hidden: int = 300,
                 num_layers: int = 3, log_std_bounds: Sequence[float] = (-20.0, 2.0), body: str = 'legion'):
        super().__init__()
        self.action_dim = action_dim
        self.body = legion_body(obs_dim + latent_dim, hidden, num_layers, 2 * action_dim, body)
        self.log_std_min, self.log_std_max = (float(b) for b in log_std_bounds)
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f'log_std_bounds must be increasing, got {tuple(log_std_bounds)}')
        init_weights(self)

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std of the pre-tanh Gaussian; log-std squashed into the bounds by tanh."""
        mu, log_std = self.body(torch.cat([obs, z], dim=-1)).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1)
        return mu, log_std

    def sample(self, obs: torch.Tensor, z: torch.Tensor, with_mean: bool = False):
        """A reparameterised action and its log-probability [B] (with the tanh correction); with
        ``with_mean`` also the pre-tanh mean μ of the same forward pass."""
        mu, log_std = self(obs, z)
        noise = torch.randn_like(mu)
        pre_tanh = mu + noise * log_std.exp()
        action = torch.tanh(pre_tanh)
        gaussian = -0.5 * noise.pow(2) - log_std - 0.5 * LOG_2PI
        # log(1 - tanh(u)^2) computed stably as 2 (log 2 - u - softplus(-2u)).
        correction = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        logp = (gaussian - correction).sum(dim=-1)
        return (action, logp, mu) if with_mean else (action, logp)

    def mean_action(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The deterministic (evaluation) action tanh(μ)."""
        return torch.tanh(self(obs, z)[0])


class TwinCritic(nn.Module):
    """Q1, Q2(s, z, a), two independent bodies of the actor's shape ending in one output each."""

    def __init__(self, obs_dim: int, latent_dim: int, action_dim: int, hidden: int = 300,
                 num_layers: int = 3, body: str = 'legion'):
        super().__init__()
        in_dim = obs_dim + latent_dim + action_dim
        self.q1 = legion_body(in_dim, hidden, num_layers, 1, body)
        self.q2 = legion_body(in_dim, hidden, num_layers, 1, body)
        init_weights(self)

    def forward(self, obs: torch.Tensor, z: torch.Tensor, action: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, z, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)
