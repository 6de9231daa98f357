"""Shapes, gradients, initialisation and log-probabilities of LEGION's networks."""
import math

import pytest
import torch
from torch import distributions as D  # noqa: N812

from legion_core.networks import VAE, Actor, DynamicsDecoder, SemanticDecoder, TwinCritic, VAEEncoder

B, OBS, ACT, EMB, LAT = 7, 12, 4, 384, 10


def _linears(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def test_encoder_shapes_gradients_and_reference_sizes():
    enc = VAEEncoder(OBS, EMB, LAT)
    widths = [(m.in_features, m.out_features) for m in _linears(enc)]
    # Trunk [s, e] -> 3 x 400 (ReLU after each), one fused head for μ and log σ².
    assert widths == [(OBS + EMB, 400), (400, 400), (400, 400), (400, 2 * LAT)]
    s, e = torch.randn(B, OBS), torch.randn(B, EMB)
    mu, logvar = enc(s, e)
    assert mu.shape == logvar.shape == (B, LAT)
    z = enc.sample(mu, logvar)
    assert z.shape == (B, LAT)
    (z.sum() + logvar.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


def test_encoder_logvar_clamp():
    enc = VAEEncoder(OBS, EMB, LAT, logvar_clamp=(-2.0, 1.0))
    with torch.no_grad():
        enc.heads.bias.fill_(50.0)
    _, logvar = enc(torch.randn(B, OBS), torch.randn(B, EMB))
    assert torch.all(logvar <= 1.0) and torch.all(logvar >= -2.0)


def test_xavier_init_and_zero_bias():
    for module in (VAE(OBS, ACT, EMB), Actor(OBS, LAT, ACT), TwinCritic(OBS, LAT, ACT)):
        for layer in _linears(module):
            assert torch.count_nonzero(layer.bias) == 0
            bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
            assert layer.weight.abs().max() <= bound + 1e-6


def test_decoders_shapes_and_output_modes():
    dyn = DynamicsDecoder(OBS, ACT, LAT)
    assert dyn(torch.randn(B, OBS), torch.randn(B, ACT), torch.randn(B, LAT)).shape == (B, OBS)
    tanh = SemanticDecoder(LAT, EMB, output='tanh')
    linear = SemanticDecoder(LAT, EMB, output='linear')
    linear.load_state_dict(tanh.state_dict())
    z = torch.randn(B, LAT) * 10
    out_t, out_l = tanh(z), linear(z)
    assert out_t.shape == (B, EMB) and out_t.abs().max() <= 1.0
    assert torch.allclose(out_t, torch.tanh(out_l))
    with pytest.raises(ValueError, match='tanh'):
        SemanticDecoder(LAT, EMB, output='sigmoid')


def test_actor_structure_and_log_std_bounds():
    actor = Actor(OBS, LAT, ACT)
    kinds = [type(m).__name__ for m in actor.body]
    assert kinds == ['Linear', 'LayerNorm', 'Tanh'] + ['Linear', 'LeakyReLU'] * 3 + ['Linear']
    assert actor.body[-1].out_features == 2 * ACT
    s, z = torch.randn(B, OBS) * 100, torch.randn(B, LAT) * 100
    _, log_std = actor(s, z)
    assert torch.all(log_std >= -20) and torch.all(log_std <= 2)


def test_actor_log_prob_matches_tanh_transformed_gaussian():
    torch.manual_seed(0)
    actor = Actor(OBS, LAT, ACT)
    s, z = torch.randn(B, OBS), torch.randn(B, LAT)
    torch.manual_seed(1)
    action, logp = actor.sample(s, z)
    mu, log_std = actor(s, z)
    dist = D.TransformedDistribution(D.Normal(mu, log_std.exp()), [D.TanhTransform(cache_size=1)])
    expected = dist.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    assert action.shape == (B, ACT) and torch.all(action.abs() < 1)
    assert torch.allclose(logp, expected, atol=1e-3)
    logp.sum().backward()
    assert all(p.grad is not None for p in actor.parameters())
    assert torch.allclose(actor.mean_action(s, z), torch.tanh(mu))


def test_twin_critic_independent_heads_and_gradients():
    critic = TwinCritic(OBS, LAT, ACT)
    s, z, a = torch.randn(B, OBS), torch.randn(B, LAT), torch.rand(B, ACT)
    q1, q2 = critic(s, z, a)
    assert q1.shape == q2.shape == (B,)
    assert not torch.allclose(q1, q2)  # two separately initialised bodies
    q1.sum().backward()
    assert all(p.grad is not None for p in critic.q1.parameters())
    assert all(p.grad is None for p in critic.q2.parameters())


def test_sizes_are_configurable_and_checked():
    actor = Actor(OBS, LAT, ACT, hidden=32, num_layers=1)
    assert [m.out_features for m in _linears(actor)] == [32, 32, 2 * ACT]
    with pytest.raises(ValueError, match='latent_dim'):
        VAEEncoder(OBS, EMB, latent_dim=0)
    with pytest.raises(ValueError, match='log_std_bounds'):
        Actor(OBS, LAT, ACT, log_std_bounds=(2, -20))


def test_encoder_task_table_path_equals_concatenated_input():
    torch.manual_seed(0)
    enc = VAEEncoder(OBS, EMB, LAT, hidden=64)
    table = torch.randn(3, EMB, requires_grad=True)
    task = torch.tensor([0, 2, 1, 2, 0, 1, 1])
    s = torch.randn(B, OBS)
    mu_a, logvar_a = enc(s, table[task])
    grads_a = torch.autograd.grad((mu_a.sum() + logvar_a.square().sum()), list(enc.parameters()))
    mu_b, logvar_b = enc.forward_tasks(s, task, table)
    grads_b = torch.autograd.grad((mu_b.sum() + logvar_b.square().sum()), list(enc.parameters()))
    assert torch.allclose(mu_a, mu_b, atol=1e-5) and torch.allclose(logvar_a, logvar_b, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(grads_a, grads_b, strict=True))


@pytest.mark.parametrize('body', ['legion', 'layernorm', 'residual'])
def test_bodies_keep_their_layer_count_and_normalise_where_they_say(body):
    torch.manual_seed(0)
    critic = TwinCritic(OBS, LAT, ACT, hidden=32, num_layers=2, body=body)
    linears = _linears(critic.q1)
    assert [m.out_features for m in linears] == [32, 32, 32, 1]  # input block + 2 hidden + output
    norms = sum(isinstance(m, torch.nn.LayerNorm) for m in critic.q1.modules())
    assert norms == {'legion': 1, 'layernorm': 3, 'residual': 3}[body]
    q1, q2 = critic(torch.randn(B, OBS), torch.randn(B, LAT), torch.randn(B, ACT))
    assert q1.shape == q2.shape == (B,) and torch.isfinite(q1).all()
    # Features stay bounded when the inputs are huge (the normalised input block in every body).
    big = critic.q1[:-1](torch.randn(B, OBS + LAT + ACT) * 1e4)
    assert big.abs().max() < 50


def test_unknown_body_is_refused():
    with pytest.raises(ValueError, match="unknown body 'bro'"):
        Actor(OBS, LAT, ACT, body='bro')
