"""CLIF inside snnTorch tooling: Sequential + init_hidden, spikegen, ce_rate_loss, utils.reset."""

import snntorch.functional as SF
import snntorch.surrogate
import snntorch.utils
import torch
from snntorch import spikegen
from torch import nn

import snntorch_clif
from snntorch_clif import CLIF


def test_training_with_snntorch_tools_lowers_the_loss() -> None:
    torch.manual_seed(1)
    n_in, n_out, T = 16, 3, 10
    prototypes = torch.rand(n_out, n_in)
    labels = torch.arange(n_out).repeat(8)
    data = (prototypes[labels] + 0.1 * torch.randn(len(labels), n_in)).clamp(0, 1)

    atan = snntorch.surrogate.atan()  # snnTorch's own surrogate, mapped onto the fused one
    net = nn.Sequential(nn.Linear(n_in, 32), CLIF(init_hidden=True, spike_grad=atan), nn.Linear(32, n_out),
                        CLIF(init_hidden=True, output=True, spike_grad=atan))
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
    loss_fn = SF.ce_rate_loss()

    def run(x: torch.Tensor) -> torch.Tensor:
        spikes = []
        for xt in spikegen.rate(x, num_steps=T):
            spk, comp, mem = net(xt)
            spikes.append(spk)
        return torch.stack(spikes)

    losses = []
    for step in range(30):
        snntorch.utils.reset(net) if step % 2 else snntorch_clif.reset(net)
        for layer in (net[1], net[3]):
            assert layer.mem.abs().sum() == 0 and layer.comp.abs().sum() == 0
        loss = loss_fn(run(data), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
