"""Hostile input: NaN/Inf, empty and zero-size tensors, odd layouts, fuzzed configurations.

Every case runs the public API (which dispatches to a fused kernel where one fits) and
compares it with :mod:`snntorch_clif.reference`.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snntorch_clif import CLIF, surrogate
from snntorch_clif.functional import clif_sequence, clif_step
from snntorch_clif.reference import clif_sequence_reference

SURROGATES = [surrogate.rectangle(), surrogate.atan(), surrogate.fast_sigmoid(), surrogate.sigmoid(),
              surrogate.triangular(), surrogate.straight_through_estimator()]


def reference(x, comp, mem, beta, threshold, spike_grad, reset, gsf, return_sequences=False):
    """The oracle, computed in x's dtype, or in fp32 for half types (as the kernels compute)."""
    wide = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    cast = [t.to(wide) if isinstance(t, torch.Tensor) else t for t in (x, comp, mem, beta, threshold, gsf)]
    out = clif_sequence_reference(cast[0], cast[1], cast[2], cast[3], cast[4], spike_grad, reset, cast[5],
                                  return_sequences)
    return tuple(t.to(x.dtype) for t in out)


def test_nan_and_inf_propagate_as_in_the_reference() -> None:
    x = 2 * torch.rand(5, 3, 4)
    x[1, 0, 0] = float("nan")
    x[2, 1, 1] = float("inf")
    x[3, 2, 2] = -float("inf")
    z = torch.zeros(3, 4)
    got = clif_sequence(x, return_sequences=True)
    want = clif_sequence_reference(x, z, z, torch.tensor(0.5), torch.tensor(1.0), surrogate.rectangle(),
                                   return_sequences=True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, equal_nan=True)
    assert torch.isnan(got.mem[1:, 0, 0]).all()  # NaN stays in that neuron and nowhere else
    assert not torch.isnan(got.mem[:, 0, 1]).any()


@pytest.mark.parametrize("shape", [(0, 4, 3), (5, 0, 3), (5, 4, 0)])
def test_zero_size_dimensions_give_empty_outputs(shape) -> None:
    x = torch.rand(shape, requires_grad=True)
    spk, comp, mem = CLIF(step_mode="multi")(x)
    assert spk.shape == shape and comp.shape == mem.shape == shape[1:]
    spk.sum().backward()
    assert x.grad.shape == shape


def test_empty_batch_single_step() -> None:
    spk, comp, mem = CLIF()(torch.rand(0, 7))
    assert spk.shape == comp.shape == mem.shape == (0, 7)


def _assert_same_sequence(x: torch.Tensor, contiguous: torch.Tensor) -> None:
    a = clif_sequence(x, return_sequences=True)
    b = clif_sequence(contiguous, return_sequences=True)
    for p, q in zip(a, b):
        assert torch.equal(p, q)


def test_non_contiguous_channels_last_and_expanded_inputs() -> None:
    x = 2 * torch.rand(6, 5, 4)
    transposed = x.transpose(1, 2).contiguous().transpose(1, 2)
    assert not transposed.is_contiguous()
    _assert_same_sequence(transposed, x)
    _assert_same_sequence(x[:, ::2], x[:, ::2].contiguous())
    expanded = x[:, :1].expand(6, 5, 4)
    _assert_same_sequence(expanded, expanded.contiguous())
    image = 2 * torch.rand(2, 3, 4, 5)
    channels_last = image.to(memory_format=torch.channels_last)
    single = [clif_step(t) for t in (channels_last, image)]
    assert all(torch.equal(p, q) for p, q in zip(*single))
    _assert_same_sequence(channels_last.unsqueeze(0).expand(3, -1, -1, -1, -1), image.unsqueeze(0).expand(3, -1, -1, -1, -1))


@st.composite
def configurations(draw):
    T = draw(st.integers(0, 6))
    neurons = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
    layout = draw(st.sampled_from(["contiguous", "transposed", "sliced", "expanded"]))
    per_neuron = draw(st.booleans())
    beta = draw(st.floats(0.0, 1.0))
    threshold = draw(st.floats(-0.5, 2.0))
    gsf = draw(st.floats(0.1, 3.0))
    reset = draw(st.sampled_from(["subtract", "zero", "none"]))
    surrogate_index = draw(st.integers(0, len(SURROGATES) - 1))
    seed = draw(st.integers(0, 2**16))
    return T, neurons, dtype, layout, per_neuron, beta, threshold, gsf, reset, surrogate_index, seed


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "transposed" and x.dim() >= 3:
        return x.transpose(1, -1).contiguous().transpose(1, -1)
    if layout == "sliced":
        return torch.cat([x, x], dim=0)[::2]
    if layout == "expanded" and x.dim() >= 2:
        return x[:, :1].expand_as(x) if x.shape[1] > 0 else x
    return x


@settings(max_examples=60, deadline=None, derandomize=True)
@given(configurations())
def test_fuzzed_configurations_match_the_reference(config) -> None:
    T, neurons, dtype, layout, per_neuron, beta, threshold, gsf, reset, surrogate_index, seed = config
    g = torch.Generator().manual_seed(seed)
    x = _layout((3 * torch.rand((T, *neurons), generator=g) - 0.5).to(dtype), layout).requires_grad_()
    comp = torch.rand(neurons, generator=g).to(dtype).requires_grad_()
    mem = torch.rand(neurons, generator=g).to(dtype).requires_grad_()
    shape = neurons[-1:] if per_neuron else ()
    beta_t = torch.full(shape, beta, dtype=dtype)
    thr_t = (threshold + 0.1 * torch.rand(shape, generator=g)).to(dtype)
    gsf_t = torch.full(shape, gsf, dtype=dtype)
    spike_grad = SURROGATES[surrogate_index]

    got = clif_sequence(x, comp, mem, beta=beta_t, threshold=thr_t, spike_grad=spike_grad, reset_mechanism=reset,
                        graded_spikes_factor=gsf_t, return_sequences=True)
    want = reference(x, comp, mem, beta_t, thr_t, spike_grad, reset, gsf_t, return_sequences=True)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    if x.numel():
        weights = [torch.rand(t.shape, generator=g).to(dtype) for t in got]
        grads_got = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, got)), (x, comp, mem))
        grads_want = torch.autograd.grad(sum((w * t).sum() for w, t in zip(weights, want)), (x, comp, mem))
        for a, b in zip(grads_got, grads_want):
            torch.testing.assert_close(a, b, rtol=10 * tol, atol=10 * tol)
