"""Closed-form KL and responsibilities of dpmm.kl against torch.distributions and brute force."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Independent, Normal, kl_divergence

from legion_core.dpmm import make_dpmm
from legion_core.dpmm.kl import (
    DPMMPrior,
    diag_gaussian_log_likelihood,
    kl_diag_gaussians,
    kl_standard_normal,
    responsibilities,
    soft_kl,
)

B, K, D = 7, 4, 10


@pytest.fixture
def params():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(B, D, generator=g, dtype=torch.float64)
    logvar = torch.randn(B, D, generator=g, dtype=torch.float64) - 1.0
    means = 2 * torch.randn(K, D, generator=g, dtype=torch.float64)
    variances = torch.rand(K, D, generator=g, dtype=torch.float64) + 0.05
    log_weights = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    return mu, logvar, means, variances, log_weights


def diag_normal(mean, var):
    return Independent(Normal(mean, var.sqrt()), 1)


def test_log_likelihood_matches_torch_distributions(params):
    z, _, means, variances, _ = params
    got = diag_gaussian_log_likelihood(z, means, variances)
    assert got.shape == (B, K)
    for k in range(K):
        expected = diag_normal(means[k], variances[k]).log_prob(z)
        torch.testing.assert_close(got[:, k], expected)


def test_kl_matches_torch_distributions(params):
    mu, logvar, means, variances, _ = params
    got = kl_diag_gaussians(mu, logvar, means, variances)
    assert got.shape == (B, K)
    q = diag_normal(mu, logvar.exp())
    for k in range(K):
        p = diag_normal(means[k].expand(B, D), variances[k].expand(B, D))
        torch.testing.assert_close(got[:, k], kl_divergence(q, p))


def test_kl_standard_normal_matches_torch_distributions(params):
    mu, logvar, *_ = params
    expected = kl_divergence(diag_normal(mu, logvar.exp()),
                             diag_normal(torch.zeros_like(mu), torch.ones_like(mu)))
    torch.testing.assert_close(kl_standard_normal(mu, logvar), expected)


def test_responsibilities_sum_to_one_and_match_brute_force(params):
    z, _, means, variances, log_weights = params
    resp = responsibilities(z, means, variances, log_weights)
    torch.testing.assert_close(resp.sum(1), torch.ones(B, dtype=torch.float64))
    brute = torch.empty(B, K, dtype=torch.float64)
    for b in range(B):
        joint = [log_weights[k] + diag_normal(means[k], variances[k]).log_prob(z[b]) for k in range(K)]
        joint = torch.stack(joint)
        brute[b] = torch.exp(joint - torch.logsumexp(joint, 0))
    torch.testing.assert_close(resp, brute)


def test_soft_kl_is_responsibility_weighted_sum(params):
    mu, logvar, means, variances, log_weights = params
    resp = responsibilities(mu, means, variances, log_weights)
    kl = kl_diag_gaussians(mu, logvar, means, variances)
    expected = torch.stack([sum(resp[b, k] * kl[b, k] for k in range(K)) for b in range(B)])
    torch.testing.assert_close(soft_kl(mu, logvar, means, variances, resp), expected)


def test_tight_clusters_stay_accurate_in_float32():
    # The original's clusters have variances ~1e-5 and z of magnitude ~5: an expanded quadratic form
    # would lose every digit in float32.
    means = torch.tensor([[5.0, -4.0], [5.01, -4.0]])
    variances = torch.full((2, 2), 1e-5)
    z = torch.tensor([[5.0005, -4.0]])
    resp = responsibilities(z, means, variances, torch.log(torch.tensor([0.5, 0.5])))
    expected = responsibilities(z.double(), means.double(), variances.double(),
                                torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)))
    torch.testing.assert_close(resp.double(), expected, atol=1e-5, rtol=1e-4)
    assert resp[0, 0] > 0.98  # exp(-4.5) odds: 0.0005 away from one mean, 0.0095 from the other


def test_shape_errors_are_clear(params):
    mu, logvar, means, variances, log_weights = params
    with pytest.raises(ValueError, match=r'z must be \[B, 10\]'):
        diag_gaussian_log_likelihood(mu[:, :3], means, variances)
    with pytest.raises(ValueError, match='means and variances'):
        kl_diag_gaussians(mu, logvar, means, variances[:2])
    with pytest.raises(ValueError, match='log_weights'):
        responsibilities(mu, means, variances, log_weights[:2])
    with pytest.raises(ValueError, match='resp'):
        soft_kl(mu, logvar, means, variances, torch.ones(B, K + 1))


def test_dpmm_prior_gradients_and_values():
    rng = np.random.default_rng(0)
    centers = np.array([[3.0] * 4, [-3.0] * 4, [3.0, -3.0, 3.0, -3.0]])
    z = centers[rng.integers(0, 3, 600)] + 0.2 * rng.normal(size=(600, 4))
    dpmm = make_dpmm('sklearn', sF=0.01, truncation=8)
    dpmm.fit(z, seed=0)
    prior = DPMMPrior(dpmm, device='cpu')
    assert prior.num_components == dpmm.num_components == 3

    mu = torch.tensor(z[:16], dtype=torch.float32, requires_grad=True)
    logvar = torch.full((16, 4), -3.0, requires_grad=True)
    kl = prior.kl(mu, logvar, mu)
    assert kl.shape == (16,)
    kl.sum().backward()
    assert mu.grad is not None and torch.all(torch.isfinite(mu.grad))
    # Same value as the functional form with the DPMM's own (numpy) responsibilities.
    resp = torch.tensor(dpmm.responsibilities(z[:16]), dtype=torch.float32)
    expected = soft_kl(mu.detach(), logvar.detach(), prior.means, prior.variances, resp)
    torch.testing.assert_close(kl.detach(), expected, rtol=1e-4, atol=1e-4)


def test_dpmm_prior_needs_a_fitted_model():
    with pytest.raises(ValueError, match='fitted'):
        DPMMPrior(make_dpmm('sklearn'))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 12), k=st.integers(1, 6))
def test_kl_is_nonnegative_and_zero_only_on_equal_gaussians(seed, d, k):
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(k, d, generator=g, dtype=torch.float64)
    variances = torch.exp(torch.randn(k, d, generator=g, dtype=torch.float64))
    mu = 3 * torch.randn(5, d, generator=g, dtype=torch.float64)
    logvar = torch.randn(5, d, generator=g, dtype=torch.float64)
    assert torch.all(kl_diag_gaussians(mu, logvar, means, variances) >= -1e-12)
    # q equal to component j: its KL to j is 0, and the soft KL with a one-hot r is 0.
    same = kl_diag_gaussians(means, torch.log(variances), means, variances)
    torch.testing.assert_close(torch.diagonal(same), torch.zeros(k, dtype=torch.float64))
    onehot = torch.eye(k, dtype=torch.float64)
    torch.testing.assert_close(soft_kl(means, torch.log(variances), means, variances, onehot),
                               torch.zeros(k, dtype=torch.float64))
