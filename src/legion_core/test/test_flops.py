"""legion_core.flops: hand-checked counts on a tiny chain, and the update schedules against torch's count."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from legion_core.agent import AgentConfig, LegionAgent
from legion_core.flops import (
    backward_macs,
    forward_macs,
    legion_update_macs,
    linear_products,
    sb3_sac_update_macs,
)

torch.set_num_threads(1)


def tiny_chain():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def torch_flops(fn) -> int:
    """FLOPs of the matrix products ``fn`` runs, forward and backward, as torch counts them (2 per MAC)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_tiny_chain_by_hand():
    products = linear_products(tiny_chain(), rows=5)
    assert products == [(5, 3, 4), (5, 4, 2)]
    # Forward: 5*3*4 + 5*4*2 = 60 + 40.
    assert forward_macs(products) == 100
    # Weight gradients of both layers (60 + 40), input gradient of the second layer only (40).
    assert backward_macs(products) == 140
    # ... and of the first as well when the input needs one (+60).
    assert backward_macs(products, input_grad=True) == 200
    # Frozen weights: input gradients only, through both layers.
    assert backward_macs(products, weight_grads=False, input_grad=True) == 100
    # Frozen and no input gradient: autograd runs nothing.
    assert backward_macs(products, weight_grads=False, input_grad=False) == 0
    # A first layer split into two products reading the input: neither takes an input gradient.
    assert backward_macs([(5, 3, 4), (1, 6, 4), (5, 4, 2)], input_products=2) == 60 + 24 + 80


@pytest.mark.parametrize(('weight_grads', 'input_grad', 'macs'),
                         [(True, False, 140), (True, True, 200), (False, True, 100)])
def test_tiny_chain_matches_torch(weight_grads, input_grad, macs):
    net = tiny_chain().requires_grad_(weight_grads)
    x = torch.randn(5, 3, requires_grad=input_grad)
    assert torch_flops(lambda: net(x).sum().backward()) == 2 * (100 + macs)


def test_legion_update_matches_torch():
    """One SAC-only update and one update with a VAE step of a real (small) agent, counted by torch."""
    obs_dim, action_dim, tasks, batch = 5, 3, 2, 7
    torch.manual_seed(0)
    emb = np.random.default_rng(0).normal(size=(tasks, 6)).astype(np.float32)
    config = AgentConfig(latent_dim=2, vae_hidden=9, vae_layers=2, actor_hidden=8, actor_layers=2,
                         critic_hidden=4, critic_layers=1, batch_size=batch, vae_update_every=2,
                         optimizer='foreach')
    agent = LegionAgent(obs_dim, action_dim, emb, config)
    g = torch.Generator().manual_seed(0)
    batch_data = {'obs': torch.randn(batch, obs_dim, generator=g),
                  'action': torch.rand(batch, action_dim, generator=g) * 2 - 1,
                  'reward': torch.randn(batch, generator=g),
                  'next_obs': torch.randn(batch, obs_dim, generator=g),
                  'done': torch.zeros(batch), 'task': torch.tensor([0, 1, 1, 0, 1, 0, 0])}
    macs = legion_update_macs(agent, batch)
    assert torch_flops(lambda: agent.update(batch_data)) == 2 * macs['sac']  # update 1: no VAE step
    assert torch_flops(lambda: agent.update(batch_data)) == 2 * (macs['sac'] + macs['vae_step'])
    assert macs['per_update'] == macs['sac'] + macs['vae_step'] / 2
    assert sum(macs['parts'].values()) == macs['sac'] + macs['vae_step']


def test_reference_sizes_by_hand():
    """The reference agent (legion-original.md §2), batch 512: the sum written out layer by layer."""
    emb = np.zeros((1, 384), dtype=np.float32)
    agent = LegionAgent(12, 4, emb, AgentConfig())
    b = 512
    encoder = b * (12 * 400 + 2 * 400 * 400 + 400 * 20) + 384 * 400  # language part once per task row
    actor = b * (22 * 300 + 3 * 300 * 300 + 300 * 8)
    critic_body = b * (26 * 300 + 3 * 300 * 300 + 300)
    critic_first = b * 26 * 300
    sac = (2 * encoder + actor + critic_body * 2              # encoder x2, actor on s', target critics
           + 2 * (critic_body * 3 - critic_first)              # critic loss: forward + backward
           + actor + 2 * (2 * critic_body)                     # actor forward, frozen critics fwd + bwd
           + actor * 2 - b * 22 * 300)                         # actor backward
    assert legion_update_macs(agent, b)['sac'] == sac


def test_sb3_sac_update_matches_torch():
    gym = pytest.importorskip('gymnasium')
    sb3 = pytest.importorskip('stable_baselines3')

    class Box(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)

        def reset(self, *, seed=None, options=None):
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    batch = 7
    model = sb3.SAC('MlpPolicy', Box(), policy_kwargs={'net_arch': [6, 4]}, batch_size=batch,
                    learning_starts=10, buffer_size=100, device='cpu', seed=0)
    model.learn(total_timesteps=10)  # fills the replay, no update yet
    counted = torch_flops(lambda: model.train(gradient_steps=1, batch_size=batch))
    assert counted == 2 * sb3_sac_update_macs(model.actor, model.critic, batch)['per_update']


@pytest.mark.slow
def test_bench_train_reports_the_floor(capsys):
    import json

    from legion_core.cli.main import main

    tiny = ['--steps', '3', '--warmup', '64', '--batch-size', '64', '--repeats', '1']
    assert main(['bench', 'train', *tiny]) == 0
    result = json.loads(capsys.readouterr().out)
    emb = np.zeros((1, 384), dtype=np.float32)
    ours = legion_update_macs(LegionAgent(12, 4, emb, AgentConfig(batch_size=64)), 64)
    assert result['flops_per_update'] == 2 * ours['per_update']
    assert result['gemm_gflops'] == max(result['gemm_gflops_by_shape'].values()) > 0
    assert len(result['gemm_gflops_by_shape']) == 4
    for side, rate in (('', 'cpu_updates_per_s'), ('peer_', 'peer_cpu_updates_per_s')):
        floor = result['gemm_gflops'] * 1e9 / result[f'{side}flops_per_update']
        assert result[f'{side}floor_updates_per_s'] == pytest.approx(floor)
        assert result[f'{side}fraction_of_floor'] == pytest.approx(result[rate] / floor)
    assert result['max_ratio_at_equal_semantics'] == pytest.approx(
        result['floor_updates_per_s'] / result['peer_cpu_updates_per_s'])
