"""surrogate.py: snnTorch's factories map onto ours and match their autograd functions."""

import contextlib
import pickle

import pytest
import snntorch.surrogate as sns
import torch

from snntorch_clif import backends, ops, surrogate
from snntorch_clif.functional import clif_step
from snntorch_clif.surrogate import resolve, spike

SNNTORCH_CASES = [
    (lambda: sns.atan(alpha=3.0), surrogate.ATan(3.0)),
    (lambda: sns.atan(), surrogate.ATan(2.0)),
    (lambda: sns.fast_sigmoid(slope=10), surrogate.FastSigmoid(10)),
    (lambda: sns.sigmoid(slope=5), surrogate.Sigmoid(5)),
    (lambda: sns.triangular(threshold=0.7), surrogate.Triangular(0.7)),
    (lambda: sns.straight_through_estimator(), surrogate.StraightThrough()),
]


@pytest.mark.parametrize("make, expected", SNNTORCH_CASES)
def test_snntorch_factories_resolve_to_known_surrogates(make, expected) -> None:
    assert resolve(make()) == expected


@pytest.mark.parametrize("make, ours", SNNTORCH_CASES)
def test_derivative_matches_snntorch_autograd(make, ours) -> None:
    z = torch.linspace(-0.5, 0.5, 1001, dtype=torch.float64)
    z = z[z != 0]  # snnTorch fires on z > 0, we on z >= 0: compare gradients, where both agree
    z_theirs = z.clone().requires_grad_()
    make()(z_theirs).sum().backward()
    # snnTorch's triangular multiplies its float32 spike gradient by c: float32 rounding.
    tol = 1e-7 if isinstance(ours, surrogate.Triangular) else 1e-12
    torch.testing.assert_close(ours.derivative(z), z_theirs.grad, rtol=tol, atol=tol)


def test_sigmoid_is_finite_where_snntorch_overflows() -> None:
    z = torch.tensor([-10.0, 10.0])
    assert torch.isfinite(surrogate.Sigmoid(25).derivative(z)).all()


def test_rectangle_is_the_papers_window() -> None:
    r = surrogate.rectangle(alpha=0.5)
    z = torch.tensor([-0.3, -0.26, -0.25, 0.0, 0.24, 0.25, 0.26, 1.0])
    # |z| <= alpha/2: the edges +-0.25 are inside, as in the paper authors' code
    assert torch.equal(r.derivative(z), torch.tensor([0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0]))


def _rectangle_gradient_at_threshold_offsets(z: torch.Tensor, device: str, alpha: float) -> torch.Tensor:
    """dspk/dx of one CLIF step with the input placed so that h - theta = z exactly."""
    x = (1.0 + z).to(device).requires_grad_()  # mem = 0, theta = 1: h - theta = x - 1 = z
    spk, _, _ = clif_step(x, spike_grad=surrogate.rectangle(alpha))
    spk.sum().backward()
    return x.grad.cpu()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_rectangle_window_edge_on_every_backend(device: str, fused: bool) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if fused and not ops.has_kernel(device):
        pytest.skip(f"no fused {device} kernel in this build")
    alpha = 0.5  # alpha/2 = 0.25; 1 +- 0.25 and the offsets below are exact in float32
    z = torch.tensor([-0.375, -0.25, -0.125, 0.0, 0.125, 0.25, 0.375])
    with (contextlib.nullcontext() if fused else backends.use_reference()):
        grad = _rectangle_gradient_at_threshold_offsets(z, device, alpha)
    assert torch.equal(grad, torch.tensor([0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.0]))


@pytest.mark.parametrize("s", [surrogate.rectangle(), surrogate.atan(), surrogate.fast_sigmoid(),
                               surrogate.sigmoid(), surrogate.triangular(), surrogate.straight_through_estimator(),
                               surrogate.Disabled()])
def test_forward_fires_on_zero_and_surrogates_pickle(s) -> None:
    z = torch.tensor([-1e-7, 0.0, 1e-7], requires_grad=True)
    out = s(z)
    assert out.tolist() == [0.0, 1.0, 1.0]
    out.sum().backward()
    torch.testing.assert_close(z.grad, s.derivative(z.detach()))
    assert pickle.loads(pickle.dumps(s)) == s


def test_custom_callable_keeps_the_forward_rule_and_its_gradient() -> None:
    def smooth(z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(4 * z)

    z = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    out = spike(z, resolve(smooth))
    assert out.tolist() == [0.0, 1.0, 1.0]
    out.sum().backward()
    expected = 4 * torch.sigmoid(4 * z.detach()) * (1 - torch.sigmoid(4 * z.detach()))
    torch.testing.assert_close(z.grad, expected)


def test_resolve_rejects_non_callables_and_defaults_to_rectangle() -> None:
    with pytest.raises(TypeError, match="spike_grad must be callable"):
        resolve("atan")
    assert resolve(None) == surrogate.Rectangle(1.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        surrogate.rectangle(0.0)
