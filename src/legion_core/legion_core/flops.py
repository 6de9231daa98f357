"""Multiply-accumulate counts of one training update, from the nn.Linear layers it runs.

At batch 512 and 300- or 400-wide layers nearly all of an update's time on a CPU goes into the
matrix products of its Linear layers, so their count, divided by the GEMM rate the CPU sustains,
is the floor of the update's time (``legion bench train`` reports both).

A Linear layer applied to ``rows`` rows costs ``rows * in * out`` MACs forward. Its backward costs
that again for the weight gradient (when the weights take gradients) and again for the input gradient
(when anything below the layer needs one); autograd skips the products nobody needs. Bias terms,
activations, norms, losses and optimizer steps are not matrix products and are not counted.

The per-update schedules below mirror the code they describe: :func:`legion_update_macs` follows
``LegionAgent.update`` and ``_vae_step`` (legion_core/agent.py); :func:`sb3_sac_update_macs` follows
``stable_baselines3.SAC.train``. test_flops.py checks both against torch's own count of a real update.
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

# (rows, in_features, out_features) of one matrix product.
Product = tuple[int, int, int]


def linear_products(module: nn.Module, rows: int) -> list[Product]:
    """The products of every nn.Linear in ``module`` (in registration order) applied to ``rows`` rows."""
    return [(rows, layer.in_features, layer.out_features)
            for layer in module.modules() if isinstance(layer, nn.Linear)]


def forward_macs(products: Iterable[Product]) -> int:
    return sum(r * i * o for r, i, o in products)


def backward_macs(products: Sequence[Product], weight_grads: bool = True, input_grad: bool = False,
                  input_products: int = 1) -> int:
    """MACs of back-propagating through a chain of products.

    The first ``input_products`` products read the chain's input (more than one when a layer is split,
    as the VAE encoder's first layer is); the others read hidden activations. ``weight_grads``: the
    layers' weights take gradients (False when they are frozen); ``input_grad``: the chain's input needs a
    gradient. Hidden activations need one whenever anything below them does.
    """
    if not weight_grads and not input_grad:
        return 0
    total = 0
    for index, (r, i, o) in enumerate(products):
        macs = r * i * o
        if weight_grads:
            total += macs
        if index >= input_products or input_grad:
            total += macs
    return total


def _chains(module: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    return [getattr(module, name) for name in names]


def legion_update_macs(agent: Any, batch_size: int) -> dict[str, int]:
    """MACs of ``LegionAgent.update`` at ``batch_size``, by part.

    Keys: ``sac`` (every update: two encoder passes without autograd, the SAC losses and their backward
    passes), ``vae_step`` (what a VAE step adds: the decoders and the backward pass through the VAE),
    ``vae_update_every`` and ``per_update`` (the mean over a cycle: sac + vae_step / vae_update_every).
    The KL is the one to N(0, I) (no DPMM fitted, as in the benchmark): elementwise, no products.
    """
    b, encoder = batch_size, agent.vae.encoder
    first = encoder.trunk[0]
    obs_dim, emb_dim, hidden = encoder.obs_dim, encoder.emb_dim, first.out_features
    # forward_tasks splits the first layer: W_s s per sample, W_e e + b once per row of the task table.
    enc = [(b, obs_dim, hidden), (agent.num_tasks, emb_dim, hidden),
           *linear_products(encoder.trunk[1:], b), *linear_products(encoder.heads, b)]
    actor = linear_products(agent.actor.body, b)
    critics = [linear_products(q, b) for q in _chains(agent.critic, ('q1', 'q2'))]
    critic_fwd = sum(forward_macs(q) for q in critics)

    sac = {
        'encoder s and s\' (no autograd)': 2 * forward_macs(enc),
        'actor on s\' (no autograd)': forward_macs(actor),
        'target critics on s\'': critic_fwd,
        'critics on (s, a) forward': critic_fwd,
        # z is detached, a comes from the replay: the first layers need no input gradient.
        'critics on (s, a) backward': sum(backward_macs(q) for q in critics),
        'actor on s forward': forward_macs(actor),
        'critics on (s, pi(s)) forward': critic_fwd,
        # Critic weights frozen during the actor loss: input gradients only, down to the action.
        'critics on (s, pi(s)) backward': sum(backward_macs(q, weight_grads=False, input_grad=True)
                                              for q in critics),
        # The actor's input [s, z] needs no gradient (z's mean and std are detached).
        'actor backward': backward_macs(actor),
    }
    dynamics = linear_products(agent.vae.dynamics, b)
    semantic = linear_products(agent.vae.semantic, b)
    vae = {
        # Decoders read z, which carries the gradient back into the encoder.
        'dynamics decoder forward + backward': forward_macs(dynamics)
        + backward_macs(dynamics, input_grad=True),
        'semantic decoder forward + backward': forward_macs(semantic)
        + backward_macs(semantic, input_grad=True),
        # The encoder's forward on s runs with autograd instead of without: same products, counted above.
        'encoder backward': backward_macs(enc, input_products=2),
    }
    every = int(agent.config.vae_update_every)
    sac_total, vae_total = sum(sac.values()), sum(vae.values())
    return {'sac': sac_total, 'vae_step': vae_total, 'vae_update_every': every,
            'per_update': sac_total + vae_total / every,
            'parts': {**sac, **{f'VAE step: {k}': v for k, v in vae.items()}}}


def sb3_sac_update_macs(actor: nn.Module, critic: nn.Module, batch_size: int) -> dict[str, int]:
    """MACs of one gradient step of ``stable_baselines3.SAC.train`` at ``batch_size``, by part.

    ``actor`` and ``critic`` are ``model.actor`` and ``model.critic``; the target critic has the critic's
    shape. The features extractors are Flatten (MlpPolicy on a Box): no products.
    """
    b = batch_size
    actor_products = linear_products(actor, b)
    critics = [linear_products(q, b) for q in critic.q_networks]
    critic_fwd = sum(forward_macs(q) for q in critics)
    parts = {
        'actor on s forward': forward_macs(actor_products),
        # The entropy loss detaches log pi: its backward reaches no layer.
        'actor on s\' (no grad)': forward_macs(actor_products),
        'target critics on s\'': critic_fwd,
        'critics on (s, a) forward': critic_fwd,
        'critics on (s, a) backward': sum(backward_macs(q) for q in critics),
        'critics on (s, pi(s)) forward': critic_fwd,
        # SB3 leaves the critic's weights trainable here: their gradients are computed, then zeroed
        # by the next critic step.
        'critics on (s, pi(s)) backward': sum(backward_macs(q, input_grad=True) for q in critics),
        'actor backward': backward_macs(actor_products),
    }
    total = sum(parts.values())
    return {'per_update': total, 'parts': parts}


def gemm_gflops(m: int, k: int, n: int, transpose_a: bool = False, repeats: int = 15,
                seconds: float = 0.05, device: str = 'cpu') -> dict[str, float]:
    """Sustained fp32 rate of ``[m x k] @ [k x n]`` in GFLOP/s (2 per MAC), median over ``repeats``.

    Uses torch's current intra-op thread count. ``transpose_a`` multiplies a transposed view, as the
    weight-gradient products do. Each repeat runs enough products to last about ``seconds``. Returns
    rates per wall-second and per second of the process's CPU time (on CUDA both are wall time).
    """
    import time

    import torch

    cuda = str(device).startswith('cuda')

    def sync():
        if cuda:
            torch.cuda.synchronize()

    a = torch.randn(k, m, device=device).t() if transpose_a else torch.randn(m, k, device=device)
    b = torch.randn(k, n, device=device)
    out = torch.empty(m, n, device=device)
    torch.matmul(a, b, out=out)  # first call: allocation, kernel choice
    sync()
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 2 or count < 3:
        torch.matmul(a, b, out=out)
        count += 1
    sync()
    per_call = (time.perf_counter() - start) / count
    iterations = max(1, round(seconds / per_call))
    flops = 2.0 * m * k * n * iterations
    wall, cpu = [], []
    for _ in range(repeats):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iterations):
            torch.matmul(a, b, out=out)
        sync()
        t1, c1 = time.perf_counter(), time.process_time()
        wall.append(flops / (t1 - t0) / 1e9)
        cpu.append(flops / max(c1 - c0, 1e-9) / 1e9 if not cuda else wall[-1])
    return {'wall': statistics.median(wall), 'cpu': statistics.median(cpu)}
