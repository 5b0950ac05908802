"""functional.py: the stateless API, its argument checks and edge shapes."""

import pytest
import torch

from snntorch_clif.functional import CLIFOutput, clif_sequence, clif_step
from snntorch_clif.reference import clif_sequence_reference
from snntorch_clif.surrogate import Rectangle


def test_sequence_matches_reference_and_returns_named_tuple() -> None:
    x = 2 * torch.rand(5, 3, 4)
    out = clif_sequence(x, beta=0.7, threshold=0.9, reset_mechanism="zero")
    assert isinstance(out, CLIFOutput)
    z = torch.zeros(3, 4)
    ref = clif_sequence_reference(x, z, z, 0.7, 0.9, Rectangle(), "zero")
    assert all(torch.equal(a, b) for a, b in zip(out, ref))


def test_chunks_with_carried_states_equal_one_call() -> None:
    x = 2 * torch.rand(10, 2, 3)
    spk_a, comp, mem = clif_sequence(x[:3])
    spk_b, comp, mem = clif_sequence(x[3:], comp, mem)
    whole = clif_sequence(x)
    assert torch.equal(torch.cat([spk_a, spk_b]), whole.spk)
    assert torch.equal(comp, whole.comp) and torch.equal(mem, whole.mem)


def test_empty_states_mean_zeros() -> None:
    x = 2 * torch.rand(2, 3)
    a = clif_step(x, torch.empty(0), torch.empty(0))
    b = clif_step(x)
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_zero_size_inputs_give_empty_outputs() -> None:
    spk, comp, mem = clif_sequence(torch.rand(0, 2, 3))
    assert spk.shape == (0, 2, 3) and comp.shape == (2, 3) and mem.shape == (2, 3)
    spk, comp, mem = clif_sequence(torch.rand(0, 2, 3), return_sequences=True)
    assert spk.shape == comp.shape == mem.shape == (0, 2, 3)
    spk, comp, mem = clif_step(torch.rand(0, 5))
    assert spk.shape == comp.shape == mem.shape == (0, 5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"reset_mechanism": "soft"}, ValueError, "reset_mechanism must be one of"),
        ({"beta": -0.1}, ValueError, r"beta must lie in \[0, 1\]"),
        ({"threshold": torch.ones(2, 2, 5)}, ValueError, "threshold of shape"),
        ({"graded_spikes_factor": "2"}, TypeError, "graded_spikes_factor must be a float or a tensor"),
        ({"spike_grad": 1.0}, TypeError, "spike_grad must be callable"),
    ],
)
def test_bad_keyword_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        clif_sequence(torch.rand(3, 2, 5), **kwargs)


@pytest.mark.parametrize("value", [1, 0, "yes", None, torch.tensor(True)])
def test_reset_delay_must_be_a_bool(value: object) -> None:
    with pytest.raises(TypeError, match="reset_delay must be True or False"):
        clif_sequence(torch.rand(3, 2), reset_delay=value)
    with pytest.raises(TypeError, match="reset_delay must be True or False"):
        clif_step(torch.rand(2), reset_delay=value)


def test_reset_delay_chunks_carry_h() -> None:
    # mem returned with reset_delay is h, the membrane before the reset; passed back, its reset
    # is applied first: two calls give one call's spikes and states.
    x = 2 * torch.rand(10, 2, 3)
    spk_a, comp, h = clif_sequence(x[:4], reset_delay=True)
    spk_b, comp, h = clif_sequence(x[4:], comp, h, reset_delay=True)
    whole = clif_sequence(x, reset_delay=True, return_sequences=True)
    assert torch.equal(torch.cat([spk_a, spk_b]), whole.spk)
    assert torch.equal(comp, whole.comp[-1]) and torch.equal(h, whole.mem[-1])
    assert torch.equal(whole.spk, clif_sequence(x).spk)


def test_bad_positional_arguments() -> None:
    with pytest.raises(TypeError, match="x_seq must be a torch.Tensor"):
        clif_sequence([[1.0]])
    with pytest.raises(ValueError, match=r"mem must have shape \(2, 5\)"):
        clif_sequence(torch.rand(3, 2, 5), None, torch.zeros(3, 2, 5))
    with pytest.raises(TypeError, match="x must be float16, bfloat16, float32 or float64"):
        clif_step(torch.ones(3, dtype=torch.int32))


def test_float_parameters_made_under_inference_mode_still_train() -> None:
    # float parameters become tensors made once and reused; one first made under
    # inference_mode must still be usable (and saved for backward) outside it
    x = torch.randn(5, 3)
    with torch.inference_mode():
        first = clif_sequence(x, beta=0.3125, threshold=0.8125).spk
    xg = x.clone().requires_grad_()
    spk = clif_sequence(xg, beta=0.3125, threshold=0.8125).spk
    spk.sum().backward()
    assert torch.equal(spk.detach(), first) and xg.grad is not None


def test_float_parameters_keep_the_sign_of_zero() -> None:
    # -0.0 and 0.0 are equal as dict keys; as parameters they keep their own bits
    x = torch.tensor([[0.0, 1.5]])
    for gsf in (0.0, -0.0, 0.0):
        spk = clif_sequence(x, graded_spikes_factor=gsf).spk
        assert torch.equal(torch.signbit(spk[0, 1]), torch.tensor(gsf < 0 or str(gsf).startswith("-")))


def test_float_parameters_are_made_once_per_value_dtype_and_device() -> None:
    # NaN is never equal to itself: as a plain dict key it would make a new tensor every call
    from snntorch_clif.functional import _constant

    for value in (0.25, 0.0, -0.0, float("nan"), float("inf")):
        for dtype in (torch.float32, torch.float64):
            first = _constant(value, dtype, torch.device("cpu"))
            assert first.dtype == dtype and _constant(value, dtype, torch.device("cpu")) is first
            assert torch.equal(torch.signbit(first), torch.tensor(str(value).startswith("-")))
    assert _constant(0.25, torch.float32, torch.device("cpu")) is not _constant(0.25, torch.float64, torch.device("cpu"))


def test_prepared_float_arguments_are_checked_and_keyed_by_every_argument() -> None:
    # Float parameters are prepared once per call signature (functional._PREPARED): a cached
    # call must still check what differs, and give what an uncached call gives.
    import snntorch.surrogate

    from snntorch_clif.surrogate import ATan

    x = (2 * torch.rand(6, 5)).requires_grad_()
    clif_sequence(x, beta=0.6, threshold=0.8)
    for bad in ("subtracted", ["subtract"]):
        with pytest.raises(ValueError, match="reset_mechanism"):
            clif_sequence(x, beta=0.6, threshold=0.8, reset_mechanism=bad)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(ValueError, match="beta must lie in"):
            clif_sequence(x, beta=1.5)
    # every surrogate gets its own gradient, int and float thresholds the same result
    cases = [(Rectangle(1.0), 1), (ATan(2.0), 1.0), (snntorch.surrogate.atan(alpha=2.0), 1), (None, 1.0)]
    z = torch.zeros(5)
    for spike_grad, threshold in cases + cases:
        out = clif_sequence(x, beta=0.6, threshold=threshold, spike_grad=spike_grad, reset_mechanism="zero")
        ref = clif_sequence_reference(x, z, z, 0.6, float(threshold), spike_grad or Rectangle(1.0), "zero")
        torch.testing.assert_close(out.spk, ref[0], rtol=0, atol=0)
        torch.testing.assert_close(out.mem, ref[2])
        (grad,) = torch.autograd.grad(out.mem.sum(), x)
        (ref_grad,) = torch.autograd.grad(ref[2].sum(), x)
        torch.testing.assert_close(grad, ref_grad)
    # float64 input: parameters in float64, not the float32 ones cached for the same values
    assert clif_sequence(x.detach().double(), beta=0.6, threshold=0.8).mem.dtype == torch.float64


def test_prepared_arguments_cache_is_bounded() -> None:
    from snntorch_clif import functional

    x = torch.rand(2, 3)
    for i in range(1100):
        clif_sequence(x, threshold=1.0 + i / 4096)
    assert 0 < len(functional._PREPARED) <= 1024
