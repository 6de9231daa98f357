"""Closed-form, vectorised KL terms between the VAE posterior and the DPMM prior (torch).

The original built one ``MultivariateNormal`` per component in a python loop and took the
responsibilities from bnpy on the CPU (legion-original.md §2.5, §3.4). Here everything is a single
broadcast ``[B, K, d]`` expression on whatever device the tensors live on.

Shapes: ``B`` batch, ``K`` mixture components, ``d`` latent dimensions. ``variances`` are the
diagonals of the component covariances (not standard deviations, not log-variances).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def _check_components(means: Tensor, variances: Tensor) -> None:
    if means.dim() != 2 or means.shape != variances.shape:
        raise ValueError(f'means and variances must both be [K, d]; got {tuple(means.shape)} and '
                         f'{tuple(variances.shape)}')


def _check_batch(name: str, x: Tensor, d: int) -> None:
    if x.dim() != 2 or x.shape[1] != d:
        raise ValueError(f'{name} must be [B, {d}]; got {tuple(x.shape)}')


def diag_gaussian_log_likelihood(z: Tensor, means: Tensor, variances: Tensor) -> Tensor:
    """log N(z_b | m_k, diag v_k) for every pair: ``[B, d] x [K, d] -> [B, K]``.

    Uses the explicit difference (z - m)² rather than the expanded quadratic form: with the tight
    DPMM clusters (v ≈ 1e-5) the expansion cancels catastrophically in float32.
    """
    _check_components(means, variances)
    _check_batch('z', z, means.shape[1])
    diff = z.unsqueeze(1) - means.unsqueeze(0)  # [B, K, d]
    mahalanobis = (diff.square() / variances.unsqueeze(0)).sum(-1)
    log_det = torch.log(variances).sum(-1)  # [K]
    return -0.5 * (mahalanobis + log_det.unsqueeze(0) + means.shape[1] * LOG_2PI)


def responsibilities(z: Tensor, means: Tensor, variances: Tensor, log_weights: Tensor) -> Tensor:
    """Posterior component probabilities r_bk ∝ π_k N(z_b | m_k, v_k), softmax over k: ``[B, K]``."""
    if log_weights.dim() != 1 or log_weights.shape[0] != means.shape[0]:
        raise ValueError(f'log_weights must be [K={means.shape[0]}]; got {tuple(log_weights.shape)}')
    logits = diag_gaussian_log_likelihood(z, means, variances) + log_weights.unsqueeze(0)
    return torch.softmax(logits, dim=1)


def kl_diag_gaussians(mu: Tensor, logvar: Tensor, means: Tensor, variances: Tensor) -> Tensor:
    """KL(N(μ_b, diag e^{logvar_b}) ‖ N(m_k, diag v_k)) for every pair: ``[B, K]``, closed form."""
    _check_components(means, variances)
    _check_batch('mu', mu, means.shape[1])
    if logvar.shape != mu.shape:
        raise ValueError(f'logvar must have the shape of mu {tuple(mu.shape)}; got {tuple(logvar.shape)}')
    var_q = torch.exp(logvar).unsqueeze(1)  # [B, 1, d]
    diff = mu.unsqueeze(1) - means.unsqueeze(0)  # [B, K, d]
    v = variances.unsqueeze(0)  # [1, K, d]
    per_dim = torch.log(v) - logvar.unsqueeze(1) + (var_q + diff.square()) / v - 1.0
    return 0.5 * per_dim.sum(-1)


def soft_kl(mu: Tensor, logvar: Tensor, means: Tensor, variances: Tensor, resp: Tensor) -> Tensor:
    """The original's responsibility-weighted KL, Σ_k r_bk KL_bk: ``[B]``.

    Not the KL to the mixture density (no closed form exists); it is kept because LEGION trains
    with it (legion-original.md §2.5).
    """
    kl = kl_diag_gaussians(mu, logvar, means, variances)
    if resp.shape != kl.shape:
        raise ValueError(f'resp must be [B, K] = {tuple(kl.shape)}; got {tuple(resp.shape)}')
    return (resp * kl).sum(1)


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag e^{logvar}) ‖ N(0, I)): ``[B]``, the prior before the first DPMM fit."""
    if logvar.shape != mu.shape or mu.dim() != 2:
        raise ValueError(f'mu and logvar must both be [B, d]; got {tuple(mu.shape)} and '
                         f'{tuple(logvar.shape)}')
    return 0.5 * (torch.exp(logvar) + mu.square() - 1.0 - logvar).sum(1)


class DPMMPrior:
    """A fitted DPMM's (means, variances, log_weights) as tensors on one device, for the VAE's KL.

    Build it after every refit (``DPMMPrior(dpmm, device)``); the DPMM itself stays on the CPU.
    """

    def __init__(self, dpmm, device: str | torch.device = 'cpu', dtype: torch.dtype = torch.float32):
        if not getattr(dpmm, 'fitted', False):
            raise ValueError('DPMMPrior needs a fitted DPMM: call dpmm.fit(z, seed) first')
        self.device = torch.device(device)
        self.dtype = dtype
        self.means = self._tensor(dpmm.means)
        self.variances = self._tensor(dpmm.variances)
        self.log_weights = self._tensor(dpmm.log_weights)

    def _tensor(self, array: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(array), dtype=self.dtype, device=self.device)

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    def responsibilities(self, z: Tensor) -> Tensor:
        """[B, K] component probabilities of z, without gradient (they act as fixed targets)."""
        with torch.no_grad():
            return responsibilities(z.detach().to(self.dtype), self.means, self.variances,
                                    self.log_weights)

    def kl(self, mu: Tensor, logvar: Tensor, z: Tensor) -> Tensor:
        """[B] soft KL of q(z|·) = N(μ, e^{logvar}) to the mixture, weighted by the responsibilities
        of ``z`` (a sample, as the original, or μ: the caller decides). Gradients flow to μ, logvar.
        """
        resp = self.responsibilities(z)
        return soft_kl(mu, logvar, self.means, self.variances, resp)
