"""reference.py: hand-worked examples, gradients, and the paper's central claim."""

import math

import pytest
import snntorch as snn
import torch

from snntorch_clif import CLIF
from snntorch_clif.functional import clif_sequence, clif_step
from snntorch_clif.reference import clif_sequence_reference, clif_step_reference
from snntorch_clif.surrogate import Disabled, Rectangle


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


# beta = 0.5, theta = 1, x = (1.5, 0.2, 1.2), u0 = m0 = 0. Each row: (h, s, m, u), worked out
# from h = beta*u + x, s = [h >= 1], m = sigmoid(0.5*h)*m_prev + s and the reset rule.
HAND_WORKED = {
    # t1: h=1.5, s=1, m=sig(.75)*0+1=1, u=1.5-(1+sig(1))=-0.2310585786
    # t2: h=.5*-.2310585786+.2=.0844707107, s=0, m=sig(.0422353553)*1=.5105572695, u=h
    # t3: h=.0422353553+1.2=1.2422353553, s=1, m=sig(.6211176777)*.5105572695+1=1.3321035678,
    #     u=1.2422353553-(1+sig(1.3321035678))=-0.5489530213
    "subtract": [
        (1.5, 1.0, 1.0, -0.2310585786),
        (0.0844707107, 0.0, 0.5105572695, 0.0844707107),
        (1.2422353553, 1.0, 1.3321035678, -0.5489530213),
    ],
    # t1: u=(1-1)*1.5-sig(1)=-0.7310585786; t2: h=-.3655292893+.2=-.1655292893, s=0,
    # m=sig(-.0827646447)=.4793206419, u=h; t3: h=-.0827646447+1.2=1.1172353553, s=1,
    # m=sig(.5586176777)*.4793206419+1=1.3049115041, u=-sig(1.3049115041)=-0.7866604207
    "zero": [
        (1.5, 1.0, 1.0, -0.7310585786),
        (-0.1655292893, 0.0, 0.4793206419, -0.1655292893),
        (1.1172353553, 1.0, 1.3049115041, -0.7866604207),
    ],
    # no reset: u = h; t2: h=.75+.2=.95 < 1, m=sig(.475)=.6165665045;
    # t3: h=.475+1.2=1.675, m=sig(.8375)*.6165665045+1=1.4303254557
    "none": [
        (1.5, 1.0, 1.0, 1.5),
        (0.95, 0.0, 0.6165665045, 0.95),
        (1.675, 1.0, 1.4303254557, 1.675),
    ],
}


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_hand_worked_three_steps(reset: str) -> None:
    comp = mem = torch.zeros(1, dtype=torch.float64)
    for x, (_h, s, m, u) in zip((1.5, 0.2, 1.2), HAND_WORKED[reset]):
        spk, comp, mem = clif_step_reference(
            torch.tensor([x], dtype=torch.float64), comp, mem, 0.5, 1.0, Rectangle(), reset
        )
        assert spk.item() == s
        assert comp.item() == pytest.approx(m, abs=1e-9)
        assert mem.item() == pytest.approx(u, abs=1e-9)
    # the rows' h values are consistent with the worked u of the step before
    rows = HAND_WORKED[reset]
    for (_, _, _, u_prev), (h, *_), x in zip(rows, rows[1:], (0.2, 1.2)):
        assert h == pytest.approx(0.5 * u_prev + x, abs=1e-9)


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_hand_worked_three_steps_with_the_delayed_reset(reset: str) -> None:
    # reset_delay=True reports the table's h (the membrane before the reset), with the same
    # spikes and m; starting from mem=None (no step before). Then one more step from a given
    # mem = h_3: its pending reset gives the table's u_3, so h_4 = 0.5 u_3 + x_4.
    comp, mem = torch.zeros(1, dtype=torch.float64), None
    for x, (h, s, m, _u) in zip((1.5, 0.2, 1.2), HAND_WORKED[reset]):
        spk, comp, mem = clif_step_reference(
            torch.tensor([x], dtype=torch.float64), comp, mem, 0.5, 1.0, Rectangle(), reset, reset_delay=True
        )
        assert spk.item() == s
        assert comp.item() == pytest.approx(m, abs=1e-9)
        assert mem.item() == pytest.approx(h, abs=1e-9)
    _, _, h4 = clif_step_reference(torch.tensor([0.3], dtype=torch.float64), comp, mem, 0.5, 1.0, Rectangle(), reset,
                                   reset_delay=True)
    assert h4.item() == pytest.approx(0.5 * HAND_WORKED[reset][2][3] + 0.3, abs=1e-9)


def test_delayed_reset_detaches_the_spike_and_sigma_of_m_but_not_theta() -> None:
    # One step from a given (comp, h) with h >= theta, subtract: u = h - s (theta + sig(comp)),
    # h' = beta u + x. d h'/dh = beta (no surrogate term), d h'/dcomp = 0, d h'/dtheta = -beta s.
    h = torch.tensor([1.4], dtype=torch.float64, requires_grad=True)
    comp = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([0.1], dtype=torch.float64)
    _, _, h_next = clif_step_reference(x, comp, h, 0.5, theta, Rectangle(), "subtract", reset_delay=True)
    assert h_next.item() == pytest.approx(0.5 * (1.4 - (1.0 + sig(0.7))) + 0.1, abs=1e-12)
    dh, dcomp, dtheta = torch.autograd.grad(h_next.sum(), (h, comp, theta), allow_unused=True)
    assert dh.item() == pytest.approx(0.5, abs=1e-12) and dtheta.item() == pytest.approx(-0.5, abs=1e-12)
    assert dcomp is None or dcomp.item() == 0.0


def test_spike_rule_is_greater_or_equal() -> None:
    z = torch.zeros(1)
    spk, _, _ = clif_step_reference(torch.tensor([1.0]), z, z, 0.5, 1.0, Rectangle())
    assert spk.item() == 1.0  # h == theta fires
    spk, _, _ = clif_step_reference(torch.tensor([1.0 - 1e-6]), z, z, 0.5, 1.0, Rectangle())
    assert spk.item() == 0.0


def test_surrogate_term_enters_the_reset_gradient() -> None:
    # One step from rest, subtract reset, x = 1.2: s = 1, m = s, u = h - s*(theta + sig(m)).
    # du/dx = 1 - g*(theta + sig(1)) - s*sig'(1)*g with g = rectangle(1.2 - 1) = 1.
    x = torch.tensor([1.2], dtype=torch.float64, requires_grad=True)
    z = torch.zeros(1, dtype=torch.float64)
    _, comp, mem = clif_step_reference(x, z, z, 0.5, 1.0, Rectangle())
    (du_dx,) = torch.autograd.grad(mem.sum(), x, retain_graph=True)
    b = sig(1.0)
    assert du_dx.item() == pytest.approx(1 - (1 + b) - b * (1 - b), abs=1e-12)
    (dm_dx,) = torch.autograd.grad(comp.sum(), x)
    assert dm_dx.item() == pytest.approx(1.0, abs=1e-12)  # dm/dx = g, the gate multiplies m0 = 0


def _params(learn: bool, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    beta = torch.tensor(0.6, dtype=torch.float64, requires_grad=learn)
    thr = (0.8 + 0.4 * torch.rand(n, dtype=torch.float64)).requires_grad_(learn)
    gsf = torch.tensor(1.3, dtype=torch.float64, requires_grad=learn)
    return beta, thr, gsf


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_gradcheck_single_step(reset: str) -> None:
    # gradcheck compares with finite differences, so it needs the true derivative of the
    # forward: the spike's is 0 (surrogate disabled). The surrogate path is tested above.
    beta, thr, gsf = _params(True, 5)
    x = (2 * torch.rand(3, 5, dtype=torch.float64)).requires_grad_()
    comp = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    mem = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)

    def f(x, comp, mem, beta, thr, gsf):
        return tuple(clif_step(x, comp, mem, beta=beta, threshold=thr, graded_spikes_factor=gsf,
                               spike_grad=Disabled(), reset_mechanism=reset))

    assert torch.autograd.gradcheck(f, (x, comp, mem, beta, thr, gsf))


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_gradcheck_sequence(reset: str) -> None:
    beta, thr, gsf = _params(True, 4)
    x = (2 * torch.rand(6, 2, 4, dtype=torch.float64)).requires_grad_()
    comp = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)
    mem = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)

    def f(x, comp, mem, beta, thr, gsf):
        return tuple(clif_sequence(x, comp, mem, beta=beta, threshold=thr, graded_spikes_factor=gsf,
                                   spike_grad=Disabled(), reset_mechanism=reset, return_sequences=True))

    assert torch.autograd.gradcheck(f, (x, comp, mem, beta, thr, gsf))


@pytest.mark.parametrize("step_mode", ["single", "multi"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_gradcheck_module_learnable(reset: str, step_mode: str) -> None:
    clif = CLIF(beta=0.6, threshold=0.9, learn_beta=True, learn_threshold=True, surrogate_disable=True,
                reset_mechanism=reset, step_mode=step_mode).double()
    x = (2 * torch.rand(5, 3, dtype=torch.float64)).requires_grad_()
    if step_mode == "single":
        x = x[0].detach().requires_grad_()

    z = torch.zeros(3, dtype=torch.float64)

    def f(x, beta, thr):
        return torch.func.functional_call(clif, {"beta": beta, "threshold": thr}, (x, z, z))

    beta = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    thr = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x, beta, thr))


def test_sequence_return_sequences_matches_final_states() -> None:
    x = 2 * torch.rand(7, 3, 4)
    z = torch.zeros(3, 4)
    spk_a, comp_seq, mem_seq = clif_sequence_reference(x, z, z, 0.5, 1.0, Rectangle(), return_sequences=True)
    spk_b, comp, mem = clif_sequence_reference(x, z, z, 0.5, 1.0, Rectangle())
    assert torch.equal(spk_a, spk_b)
    assert torch.equal(comp_seq[-1], comp) and torch.equal(mem_seq[-1], mem)
    assert comp_seq.shape == mem_seq.shape == x.shape


@pytest.mark.parametrize("lif_surrogate", [None, Rectangle(1.0)], ids=["leaky-default-atan", "leaky-rectangle"])
def test_clif_carries_more_gradient_to_early_steps_than_lif(lif_surrogate) -> None:
    """The paper's claim: with the loss on the last step's spikes (T = 8), the gradient that
    reaches the first step's input is much larger under CLIF than under LIF."""
    T = 8
    x = (0.2 + 0.9 * torch.rand(T, 64, 32)).requires_grad_()

    clif = CLIF(beta=0.5, step_mode="multi")
    spk, _, _ = clif(x)
    (g_clif,) = torch.autograd.grad(spk[-1].sum(), x)

    lif = snn.Leaky(beta=0.5, reset_delay=False, spike_grad=lif_surrogate)
    mem = lif.reset_mem()
    for t in range(T):
        spk_lif, mem = lif(x[t], mem)
    (g_lif,) = torch.autograd.grad(spk_lif.sum(), x)

    clif_first, lif_first = g_clif[0].abs().mean().item(), g_lif[0].abs().mean().item()
    assert clif_first >= 3 * lif_first, (clif_first, lif_first)
