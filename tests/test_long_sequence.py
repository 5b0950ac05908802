"""Long sequences: T = 10,000 trains, and the fused path's saved memory is linear in T."""

import pytest
import torch
from test_ops import saved_bytes

from snntorch_clif import CLIF, backends, clif_sequence, ops, surrogate

pytestmark = pytest.mark.slow

fused_cpu = pytest.mark.skipif(backends.report().devices.get("cpu") != "fused", reason="fused CPU kernel not built")


@fused_cpu
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_ten_thousand_steps_forward_backward_stay_finite(reset: str) -> None:
    T = 10_000
    x = (1.5 * torch.rand(T, 4, 64)).requires_grad_()
    clif = CLIF(step_mode="multi", learn_beta=True, learn_threshold=True, reset_mechanism=reset)
    spk, comp, mem = clif(x)
    (spk.sum() + mem.sum() + comp.sum()).backward()
    assert 0 < spk.sum() < spk.numel()
    assert torch.isfinite(comp).all() and torch.isfinite(mem).all()
    assert torch.isfinite(x.grad).all() and x.grad[0].abs().sum() > 0  # the first step still gets gradient
    assert torch.isfinite(clif.beta.grad) and torch.isfinite(clif.threshold.grad)


@fused_cpu
def test_saved_memory_grows_linearly_at_four_and_a_quarter_bytes_per_neuron_step() -> None:
    """The forward saves h_t (4 B in float32) at every step and m only every 16 steps: 4.25 B
    per neuron-step, not the 8 of saving h_t and m_t (issue 12, goal 6: at most 4.5)."""
    N = 1024
    sizes = [1_000, 4_000, 10_000]
    measured = []
    for T in sizes:
        x = torch.rand(T, N, requires_grad=True)
        measured.append(saved_bytes(lambda x=x: clif_sequence(x, spike_grad=surrogate.rectangle())))
    slopes = [(b - a) / ((t1 - t0) * N) for (t0, a), (t1, b) in zip(zip(sizes, measured), zip(sizes[1:], measured[1:]))]
    print(f"\nsaved bytes per neuron-step, T {sizes[0]}..{sizes[-1]}: {[round(s, 4) for s in slopes]}")
    assert all(s == pytest.approx(4 + 4 / ops.SAVE_CHUNK, rel=2e-3) for s in slopes), slopes
    assert all(s <= 4.5 for s in slopes), slopes
    assert measured[-1] <= 4 * ops.saved_rows(sizes[-1]) * N + 64  # plus the scalar parameters
