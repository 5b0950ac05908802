"""Parity with an independent implementation: SpikingJelly 2.0's ComplementaryLIFNode."""

import pytest
import torch

from snntorch_clif import CLIF

neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")


@pytest.mark.parametrize("T", [1, 8, 32])
def test_same_spikes_states_and_input_gradients(T: int) -> None:
    x = (1.6 * torch.rand(T, 16, 24, dtype=torch.float64) - 0.2)
    w_spk, w_mem, w_comp = (torch.randn(T, 16, 24, dtype=torch.float64) for _ in range(3))

    x_sj = x.clone().requires_grad_()
    sj = neuron.ComplementaryLIFNode(tau=2.0, v_threshold=1.0, surrogate_function=sj_surrogate.Rect(alpha=1.0),
                                     step_mode="m", store_state_seqs=True)
    spk_sj = sj(x_sj)
    mem_sj, comp_sj = sj.state_seqs

    x_ours = x.clone().requires_grad_()
    spk, comp, mem = CLIF(beta=0.5, threshold=1.0, step_mode="multi", state_sequences=True)(x_ours)

    assert torch.equal(spk, spk_sj)
    assert spk.sum() > 0 and (1 - spk).sum() > 0  # both regimes exercised
    torch.testing.assert_close(mem, mem_sj, rtol=0, atol=1e-10)
    torch.testing.assert_close(comp, comp_sj, rtol=0, atol=1e-10)

    loss_sj = (w_spk * spk_sj + w_mem * mem_sj + w_comp * comp_sj).sum()
    loss = (w_spk * spk + w_mem * mem + w_comp * comp).sum()
    (g_sj,) = torch.autograd.grad(loss_sj, x_sj)
    (g,) = torch.autograd.grad(loss, x_ours)
    torch.testing.assert_close(g, g_sj, rtol=0, atol=1e-10)
