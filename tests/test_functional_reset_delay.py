"""``reset_delay=True`` in the functional core: reference.py, functional.py and the fused op.

With the delayed reset the ``mem`` state passed in and returned is :math:`h`, the membrane
before the reset, and step t-1's reset is applied at the start of step t with its spike and
:math:`\\sigma(m_{t-1})` detached (reference.py). Checked here: the fused op (the CPU kernel,
and the CUDA source executed on the CPU, tests/cuda_emulator.py) against the reference, over
resets, states given or absent, per-neuron parameters, state sequences, chunks, T = 0 and the
step form; both against finite differences where the detached values have none; the spikes
and ``comp`` against ``reset_delay=False``; opcheck and torch.compile; the current
``CLIF(reset_delay=True)`` module rebuilt from the functional API; and planted bugs in the
CUDA source that these checks catch.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import cuda_emulator
import pytest
import torch
from torch import Tensor

from snntorch_clif import CLIF, backends, ops
from snntorch_clif import surrogate as sg
from snntorch_clif.functional import clif_sequence, clif_step
from snntorch_clif.reference import clif_sequence_reference, clif_step_reference

pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason=f"fused kernels not built: {ops.LOAD_ERROR}")

RESETS = ["subtract", "zero", "none"]
INPUTS = ("x", "comp", "mem", "beta", "threshold", "gsf")
TOL = {torch.float64: 1e-12, torch.float32: 2e-6}  # per element: |a - b| <= tol (1 + |b|)
HALF_TOL = {torch.float16: 2e-3, torch.bfloat16: 1e-2}
ATAN = sg.ATan(2.0)


@pytest.fixture(params=["cpu", "cuda_emulated"], autouse=True)
def kernel(request: pytest.FixtureRequest) -> Iterator[str]:
    """Which kernel the op runs on: the CPU one, or the CUDA source executed on the CPU."""
    yield from cuda_emulator.each_kernel(request, "a property of the CPU kernel, or float64 (no CUDA kernel for it)")


def make_case(T: int, shape: tuple[int, ...], dtype: torch.dtype, *, seed: int = 0, per_neuron: bool = False,
              states: bool = True, learnable: bool = True, x_scale: float = 1.5) -> dict:
    """Inputs in ``dtype`` whose neurons fire now and then: x [T, *shape], states, parameters."""
    g = torch.Generator().manual_seed(seed)
    acc = torch.float64 if dtype == torch.float64 else torch.float32

    def rand(*size: int, lo: float = 0.0, hi: float = 1.0, dt: torch.dtype = dtype) -> Tensor:
        return (lo + (hi - lo) * torch.rand(size, generator=g, dtype=torch.float64)).to(dt)

    case = {
        "x": (torch.randn((T, *shape), generator=g, dtype=torch.float64) * x_scale + 0.4).to(dtype),
        # mem0 is h_{-1}: about half of it at or above the threshold, so its reset is pending
        "comp": rand(*shape, hi=2.0) if states else None,
        "mem": rand(*shape, lo=-0.5, hi=2.0) if states else None,
    }
    if per_neuron:
        case["beta"] = rand(*shape[-1:], lo=0.1, hi=0.95, dt=acc)
        case["threshold"] = rand(*shape, lo=0.5, hi=1.5, dt=acc)
        case["gsf"] = rand(*((1,) * (len(shape) - 1) + shape[-1:]), lo=0.5, hi=1.5, dt=acc)
    else:
        case["beta"] = torch.tensor(0.6, dtype=acc)
        case["threshold"] = torch.tensor(0.9, dtype=acc)
        case["gsf"] = torch.tensor(1.25, dtype=acc)
    for k in ("x", "comp", "mem"):
        if case[k] is not None:
            case[k].requires_grad_(True)
    for k in ("beta", "threshold", "gsf"):
        case[k].requires_grad_(learnable)
    return case


def run(case: dict, fused: bool, reset: str, seqs: bool, *, step: bool = False, delay: bool = True,
        spike_grad: sg.Surrogate = ATAN, dtype: torch.dtype | None = None, seed: int = 1,
        ) -> tuple[list[Tensor], list[Tensor]]:
    """Outputs and the gradients of a random linear loss on all of them, fused or reference."""
    args = {}
    for k in INPUTS:
        v = case[k]
        if v is not None:
            v = v.detach() if dtype is None or k not in ("x", "comp", "mem") else v.detach().to(dtype)
            v = v.requires_grad_(case[k].requires_grad)
        args[k] = v
    a = [args[k] for k in INPUTS]
    if step:
        x = a[0][0]
        if fused:
            outs = ops.clif_step_fused(x, *a[1:], spike_grad, reset, reset_delay=delay)
        else:
            outs = clif_step_reference(x, a[1], a[2], a[3], a[4], spike_grad, reset, a[5], reset_delay=delay)
    elif fused:
        outs = ops.clif_sequence_fused(*a, spike_grad, reset, seqs, reset_delay=delay)
    else:
        outs = clif_sequence_reference(*a[:5], spike_grad, reset, a[5], seqs, reset_delay=delay)
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype) for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    wanted = [args[k] for k in INPUTS if args[k] is not None and args[k].requires_grad]
    grads = torch.autograd.grad(loss, wanted, allow_unused=True) if loss.requires_grad else [None] * len(wanted)
    grads = [torch.zeros_like(w) if gr is None else gr for w, gr in zip(wanted, grads)]
    return [o.detach() for o in outs], list(grads)


def assert_matches_reference(case: dict, reset: str, seqs: bool, *, step: bool = False,
                             spike_grad: sg.Surrogate = ATAN) -> None:
    """The fused op against the reference: the same spikes; states and gradients within the
    dtype's tolerance (float16 / bfloat16: against the reference in float32 on the same values;
    a scalar parameter's gradient, a sum over every neuron-step, within sqrt(count) times it)."""
    dtype = case["x"].dtype
    half = dtype in HALF_TOL
    want = run(case, False, reset, seqs, step=step, spike_grad=spike_grad, dtype=torch.float32 if half else None)
    got = run(case, True, reset, seqs, step=step, spike_grad=spike_grad)
    assert torch.equal(got[0][0], want[0][0].to(dtype)), "spikes differ"
    names = ["comp", "mem"] + [k for k in INPUTS if case[k] is not None and case[k].requires_grad]
    for name, a, b in zip(names, got[0][1:] + got[1], want[0][1:] + want[1]):
        assert a.shape == b.shape, name
        scale = 1.0
        if name in ("beta", "threshold", "gsf") and case[name].numel() < case["x"].numel():
            scale = (case["x"].numel() / case[name].numel()) ** 0.5
        tol = (HALF_TOL[dtype] if half else TOL[dtype]) * scale
        torch.testing.assert_close(a.to(b.dtype), b, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")


# --- the fused op equals the reference ---------------------------------------------------------
CASES = list(itertools.product(RESETS, [False, True], [False, True]))  # reset x states x per-neuron


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("T", [1, 2, 17, 40])  # 17, 40: the backward's checkpoint chunks of 16 steps
def test_fused_sequence_matches_reference(T: int, dtype: torch.dtype) -> None:
    for i, (reset, states, per_neuron) in enumerate(CASES):
        case = make_case(T, (3, 7), dtype, seed=T + i, per_neuron=per_neuron, states=states)
        for seqs in (False, True):
            assert_matches_reference(case, reset, seqs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_fused_step_matches_reference(dtype: torch.dtype) -> None:
    for i, (reset, states, per_neuron) in enumerate(CASES):
        case = make_case(1, (4, 6), dtype, seed=100 + i, per_neuron=per_neuron, states=states)
        assert_matches_reference(case, reset, False, step=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_matches_the_float32_reference(dtype: torch.dtype) -> None:
    for i, (reset, states, per_neuron) in enumerate(CASES):
        case = make_case(17, (2, 9), dtype, seed=200 + i, per_neuron=per_neuron, states=states)
        assert_matches_reference(case, reset, seqs=bool(i % 2))


@pytest.mark.parametrize("kind", range(7))
def test_every_surrogate_matches_reference(kind: int) -> None:
    surrogates = [sg.Rectangle(1.0), sg.ATan(2.0), sg.FastSigmoid(25.0), sg.Sigmoid(5.0), sg.Triangular(1.0),
                  sg.StraightThrough(), sg.Disabled()]
    for reset in RESETS:
        case = make_case(9, (5,), torch.float32, seed=300 + kind, per_neuron=True)
        assert_matches_reference(case, reset, seqs=True, spike_grad=surrogates[kind])


def test_parameters_without_gradients_and_many_blocks() -> None:
    # learnable=False: the kernels skip the parameter sums; N > 1024: several CPU blocks / CUDA blocks
    for reset, states in itertools.product(RESETS, [False, True]):
        case = make_case(18, (3, 700), torch.float32, seed=7, per_neuron=True, states=states, learnable=False)
        assert_matches_reference(case, reset, seqs=True)


# --- what the option does ---------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("reset", RESETS)
def test_spikes_and_comp_are_those_without_delay_and_mem_is_h(fused: bool, reset: str) -> None:
    # From fresh states both neurons are one: same spikes and comp bit for bit, and the delayed
    # mem sequence is h_t = beta u_{t-1} + x_t, u from reset_delay=False (bits: the same operations)
    case = make_case(23, (4, 9), torch.float32, seed=11, per_neuron=True, states=False)
    (spk1, comp1, h), _ = run(case, fused, reset, True, delay=True)
    (spk0, comp0, u), _ = run(case, fused, reset, True, delay=False)
    assert 0 < spk1.sum() < spk1.numel()
    assert torch.equal(spk1, spk0) and torch.equal(comp1, comp0)
    x, beta = case["x"].detach(), case["beta"].detach()
    u_prev = torch.cat([torch.zeros_like(u[:1]), u[:-1]])
    assert torch.equal(h, beta * u_prev + x)
    if reset == "none":
        assert torch.equal(h, u)  # without a reset the option changes nothing
    else:
        assert not torch.equal(h, u)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_reset_none_changes_nothing(fused: bool) -> None:
    case = make_case(17, (3, 5), torch.float32, seed=12, per_neuron=True)
    for seqs in (False, True):
        with_delay = run(case, fused, "none", seqs, delay=True)
        without = run(case, fused, "none", seqs, delay=False)
        for a, b in zip(with_delay[0] + with_delay[1], without[0] + without[1]):
            assert torch.equal(a, b)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_a_given_mem_is_h_and_gets_its_reset_none_and_empty_do_not(fused: bool, reset: str) -> None:
    # threshold -0.2: h_{-1} = 0 fires, so zeros given as mem are reset (u_{-1} = -0.3 subtract,
    # -0.5 zero); None and an empty tensor mean no step before: u_{-1} = 0, h_0 = x_0.
    x = torch.tensor([[0.3, -0.4, 1.0]])
    comp = torch.zeros(3)
    with contextlib.nullcontext() if fused else backends.use_reference():
        kw = dict(beta=0.5, threshold=-0.2, reset_mechanism=reset, reset_delay=True)
        fresh = clif_sequence(x, comp, None, **kw).mem
        empty = clif_sequence(x, comp, torch.zeros(0), **kw).mem
        zeros = clif_sequence(x, comp, torch.zeros(3), **kw).mem
        step = clif_step(x[0], comp, torch.zeros(3), **kw).mem
    u = -0.3 if reset == "subtract" else -0.5
    assert torch.equal(fresh, x[0]) and torch.equal(empty, x[0])
    torch.testing.assert_close(zeros, x[0] + 0.5 * u, rtol=0, atol=1e-7)
    assert torch.equal(step, zeros)


@pytest.mark.parametrize("reset", RESETS)
def test_two_calls_equal_one_call(reset: str) -> None:
    # Chunks carrying (comp, h): the t = 0 reset of a given mem is the in-sequence reset, bit for
    # bit, forward; backward the gradients flow across the boundary as within one call.
    case = make_case(30, (3, 11), torch.float32, seed=13, per_neuron=True)
    x, comp, mem = (case[k].detach().requires_grad_() for k in ("x", "comp", "mem"))
    params = [case[k].detach() for k in ("beta", "threshold", "gsf")]
    w = torch.randn(30, 3, 11, generator=torch.Generator().manual_seed(0))
    outs = []
    for split in (None, 13):
        pieces = [(0, 30)] if split is None else [(0, split), (split, 30)]
        c, m, spikes, hs = comp, mem, [], []
        for lo, hi in pieces:
            spk, cs, ms = ops.clif_sequence_fused(x[lo:hi], c, m, *params, sg.ATan(2.0), reset, True, reset_delay=True)
            c, m = cs[-1], ms[-1]
            spikes.append(spk)
            hs.append(ms)
        spk, h = torch.cat(spikes), torch.cat(hs)
        gx, gcomp, gmem = torch.autograd.grad((spk * w).sum() + (h * w.flip(0)).sum() + c.sum(), (x, comp, mem))
        outs.append([spk, h, c, gx, gcomp, gmem])
    for name, a, b in zip(["spk", "h", "comp", "grad x", "grad comp", "grad mem"], *outs):
        if name in ("spk", "h", "comp"):
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("seqs", [False, True])
def test_empty_sequence_returns_the_given_h_unreset(fused: bool, seqs: bool) -> None:
    # T = 0: nothing happens, not even the pending reset; the gradient of mem passes unchanged.
    case = make_case(0, (2, 5), torch.float32, seed=14)
    (spk, comp, mem), _ = run(case, fused, "subtract", seqs)
    assert spk.shape == (0, 2, 5)
    if seqs:
        assert comp.shape == mem.shape == (0, 2, 5)
        return
    assert torch.equal(comp, case["comp"].detach()) and torch.equal(mem, case["mem"].detach())
    m0 = case["mem"].detach().requires_grad_()
    x, params = case["x"].detach(), [case[k].detach() for k in ("beta", "threshold", "gsf")]
    if fused:
        out = ops.clif_sequence_fused(x, None, m0, *params, sg.ATan(2.0), "subtract", False, reset_delay=True)
    else:
        out = clif_sequence_reference(x, None, m0, *params[:2], sg.ATan(2.0), "subtract", params[2],
                                      reset_delay=True)
    g = torch.rand(2, 5)
    assert torch.equal(torch.autograd.grad(out[2], m0, g)[0], g)


# --- gradients against finite differences -----------------------------------------------------
def _gradcheck_inputs(T: int, seed: int) -> tuple[Tensor, ...]:
    # float64; mem0 = h_{-1} kept 0.2 away from the threshold (a finite difference must not flip
    # its spike); comp0 not differentiated: its sigma() in the reset is detached by design.
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    mem0 = 0.2 + 0.6 * torch.rand(3, 4, generator=g, dtype=d)
    mem0 = torch.where(torch.rand(3, 4, generator=g, dtype=d) < 0.5, mem0, mem0 + 1.0)  # [0.2, .8] or [1.2, 1.8]
    # one step: x in [-0.5, 1.5], any spikes; several: x in [-0.5, 0.05], so h_t < theta = 1
    x = torch.rand(T, 3, 4, generator=g, dtype=d)
    x = 2 * x - 0.5 if T == 1 else 0.55 * x - 0.5
    comp0 = 2 * torch.rand(3, 4, generator=g, dtype=d)
    beta = torch.linspace(0.3, 0.9, 4, dtype=d)
    threshold = torch.tensor(1.0, dtype=d)
    gsf = torch.tensor(1.3, dtype=d)
    return x, comp0, mem0, beta, threshold, gsf


@pytest.mark.cpu_kernel_only
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("T", [1, 4])
def test_gradcheck(fused: bool, reset: str, T: int) -> None:
    # Finite differences are the true derivative; the delayed reset's detached spike and sigma(m)
    # agree with it where they are constant in every input: one step from a given (comp, h) (T=1,
    # any spikes), or several steps where only h_{-1} = mem0 fires (T=4: x keeps h_t < theta),
    # whose reset uses sigma(comp0), a constant here. Surrogate disabled: the spike's derivative
    # is 0 on both sides. Covers the charge, the reset of mem0 (c, and -s for theta), the carry
    # over steps, and dbeta with u_{-1} the reset value.
    x, comp0, mem0, beta, threshold, gsf = _gradcheck_inputs(T, seed=T)
    spike_grad = sg.Disabled()

    def f(x: Tensor, mem0: Tensor, beta: Tensor, threshold: Tensor, gsf: Tensor) -> tuple[Tensor, ...]:
        if fused:
            return ops.clif_sequence_fused(x, comp0, mem0, beta, threshold, gsf, spike_grad, reset, True,
                                           reset_delay=True)
        return clif_sequence_reference(x, comp0, mem0, beta, threshold, spike_grad, reset, gsf, True,
                                       reset_delay=True)

    inputs = [t.clone().requires_grad_() for t in (x, mem0, beta, threshold, gsf)]
    spk = f(*inputs)[0]
    assert 0 < (mem0 >= 1).sum() < mem0.numel(), "some pending resets, not everywhere"
    if T > 1 and reset != "none":  # ("none": nothing is detached, any spikes will do)
        assert spk.sum() == 0, "only mem0 may fire for this check"
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.cpu_kernel_only
@pytest.mark.parametrize("reset", RESETS)
def test_gradcheck_of_the_step_form(reset: str) -> None:
    x, comp0, mem0, beta, threshold, gsf = _gradcheck_inputs(1, seed=5)

    def f(x: Tensor, mem0: Tensor, beta: Tensor, threshold: Tensor, gsf: Tensor) -> tuple[Tensor, ...]:
        return ops.clif_step_fused(x, comp0, mem0, beta, threshold, gsf, sg.Disabled(), reset, reset_delay=True)

    inputs = [t.clone().requires_grad_() for t in (x[0], mem0, beta, threshold, gsf)]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_gradients_differ_from_the_same_step_reset(reset: str) -> None:
    # The delayed reset is detached: a loss on the spikes alone gets other gradients than with
    # the paper's same-step reset (which differentiates through it), on both paths.
    case = make_case(12, (4, 6), torch.float32, seed=15, states=False)
    x = case["x"].detach()
    grads = {}
    for delay, fused in itertools.product((False, True), (False, True)):
        xg = x.clone().requires_grad_()
        if fused:
            spk = ops.clif_sequence_fused(xg, None, None, *(case[k].detach() for k in ("beta", "threshold", "gsf")),
                                          sg.ATan(2.0), reset, False, reset_delay=delay)[0]
        else:
            spk = clif_sequence_reference(xg, None, None, case["beta"], case["threshold"], sg.ATan(2.0), reset,
                                          case["gsf"], reset_delay=delay)[0]
        grads[delay, fused] = torch.autograd.grad(spk.sum(), xg)[0]
    torch.testing.assert_close(grads[True, True], grads[True, False], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[False, True], grads[False, False], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(grads[True, True], grads[False, True])


# --- the op's argument: opcheck, defaults, the direct entry, torch.compile ------------------------
def _op_args(T: int, neurons: tuple[int, ...], dtype: torch.dtype, requires_grad: bool) -> tuple:
    g = torch.Generator().manual_seed(T)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    x = (torch.randn(T, *neurons, generator=g) * 1.5).to(dtype)
    comp, mem = torch.rand(neurons, generator=g).to(dtype), (2 * torch.rand(neurons, generator=g)).to(dtype)
    beta, thr, gsf = torch.full(neurons, 0.5, dtype=acc), torch.tensor([1.0], dtype=acc), torch.ones(1, dtype=acc)
    for t in (x, comp, mem, beta, thr, gsf):
        t.requires_grad_(requires_grad)
    return x, comp, mem, beta, thr, gsf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("seqs", [False, True])
def test_opcheck_forward_and_backward(dtype: torch.dtype, seqs: bool) -> None:
    fwd, bwd = torch.ops.snntorch_clif.clif_forward.default, torch.ops.snntorch_clif.clif_backward.default
    for reset, states in [(0, True), (1, True), (0, False), (2, True)]:
        x, comp, mem, *params = _op_args(6, (2, 5), dtype, True)
        comp0, mem0 = (comp, mem) if states else (None, None)
        torch.library.opcheck(fwd, (x, comp0, mem0, *params, reset, 1, 2.0, seqs, True, False, True))
        torch.library.opcheck(fwd, (x.detach()[0].requires_grad_(), comp0, mem0, *params, reset, 1, 2.0, seqs, True,
                                    True, True))  # the step form
        with torch.no_grad():
            spk, c, m, saved = fwd(x, comp0, mem0, *params, reset, 1, 2.0, seqs, True, False, True)
        grads = (torch.randn_like(spk), torch.randn_like(c), torch.randn_like(m))
        torch.library.opcheck(bwd, (*grads, saved, None if mem0 is None else mem0.detach(),
                                    *(p.detach() for p in params), reset, 1, 2.0, True, True))


def test_the_argument_defaults_to_false_everywhere() -> None:
    x, comp, mem, *params = _op_args(5, (7,), torch.float32, False)
    fwd = torch.ops.snntorch_clif.clif_forward
    base = fwd(x, comp, mem, *params, 0, 1, 2.0, True, True)
    for explicit in (fwd(x, comp, mem, *params, 0, 1, 2.0, True, True, False, False),
                     fwd(x, comp, mem, *params, 0, 1, 2.0, True, True, reset_delay=False)):
        assert all(torch.equal(a, b) for a, b in zip(base, explicit))
    fresh = fwd(x, None, None, *params, 0, 1, 2.0, True, True)
    delayed = fwd(x, None, None, *params, 0, 1, 2.0, True, True, reset_delay=True)
    assert torch.equal(delayed[0], fresh[0]) and torch.equal(delayed[1], fresh[1])
    delayed = fwd(x, comp, mem, *params, 0, 1, 2.0, True, True, reset_delay=True)
    assert torch.equal(delayed[3][:5], delayed[2])  # the mem sequence is h, the saved rows
    assert not torch.equal(delayed[2], base[2])
    grads = (torch.randn_like(base[0]), None, torch.randn_like(base[2]))
    bwd = torch.ops.snntorch_clif.clif_backward
    a = bwd(*grads, base[3], mem, *params, 0, 1, 2.0, True)
    b = bwd(*grads, base[3], mem, *params, 0, 1, 2.0, True, False)
    assert all(torch.equal(p, q) for p, q in zip(a, b))


@pytest.mark.skipif(ops._forward_entry is None, reason="a library without the direct entry")
def test_direct_entry_takes_the_argument() -> None:
    x, comp, mem, *params = _op_args(9, (3, 4), torch.float32, True)
    for delay in (False, True):
        args = (x, comp, mem, *params, 1, 1, 2.0, True, True, False, delay)
        direct, via_torch_ops = ops._forward_entry(*args), torch.ops.snntorch_clif.clif_forward(*args)
        for a, b in zip(direct, via_torch_ops):
            assert torch.equal(a, b)
        grads = [torch.randn_like(t) for t in direct[:3]]
        inputs = (x, comp, mem, *params)
        for a, b in zip(torch.autograd.grad(direct[:3], inputs, grads),
                        torch.autograd.grad(via_torch_ops[:3], inputs, grads)):
            assert torch.equal(a, b)
    assert ops._forward_entry(*args[:-1], 1) is NotImplemented  # an int for the bool: torch.ops decides


@pytest.mark.cpu_kernel_only
def test_compile_fullgraph_matches_eager() -> None:
    torch._dynamo.reset()
    beta = torch.full((6,), 0.7, requires_grad=True)

    def run_both(x: Tensor, comp: Tensor, mem: Tensor) -> Tensor:
        spk, comp, h = clif_sequence(x, comp, mem, beta=beta, threshold=0.8, spike_grad=sg.ATan(2.0),
                                     reset_delay=True)
        for xt in x:  # and the step form, carrying h on
            s, comp, h = clif_step(xt, comp, h, beta=beta, threshold=0.8, reset_mechanism="zero", reset_delay=True)
            spk = spk + s
        return spk.sum(0) + h + comp

    x = torch.randn(5, 3, 6) * 1.5 + 0.5
    comp, mem = torch.rand(3, 6), 2 * torch.rand(3, 6)
    results = []
    for fn in (run_both, torch.compile(run_both, fullgraph=True, backend="aot_eager")):
        xg = x.clone().requires_grad_()
        out = fn(xg, comp, mem)
        results.append([out, *torch.autograd.grad(out.square().sum(), (xg, beta))])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)


# --- the module's reset_delay, rebuilt from the functional API ------------------------------------
def functional_clif(x: Tensor, comp: Tensor | None, mem: Tensor | None, multi: bool, **kw: object
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """What ``CLIF(reset_delay=True)`` returns, from clif_sequence / clif_step: mem is h; an
    empty state (reset_mem()) means no step before. Multi: the [T, ...] state sequences."""
    if multi:
        return clif_sequence(x, comp, mem, return_sequences=True, reset_delay=True, **kw)
    spikes, comps, hs = [], [], []
    for xt in x:
        spk, comp, mem = clif_step(xt, comp, mem, reset_delay=True, **kw)
        spikes.append(spk)
        comps.append(comp)
        hs.append(mem)
    return torch.stack(spikes), torch.stack(comps), torch.stack(hs)


def module_clif(x: Tensor, multi: bool, **kw: object) -> tuple[CLIF, tuple[Tensor, Tensor, Tensor]]:
    clif = CLIF(reset_delay=True, step_mode="multi" if multi else "single", state_sequences=multi, **kw)
    comp, mem = clif.reset_mem()
    if multi:
        return clif, clif(x, comp, mem)
    spikes, comps, hs = [], [], []
    for xt in x:
        spk, comp, mem = clif(xt, comp, mem)
        spikes.append(spk)
        comps.append(comp)
        hs.append(mem)
    return clif, (torch.stack(spikes), torch.stack(comps), torch.stack(hs))


@pytest.mark.cpu_kernel_only
@pytest.mark.parametrize("backend", ["fused", "reference"])
@pytest.mark.parametrize("multi", [False, True], ids=["single", "multi"])
@pytest.mark.parametrize("reset", RESETS)
def test_the_functional_api_reproduces_the_module(backend: str, multi: bool, reset: str) -> None:
    # The lead moves CLIF(reset_delay=True) onto this API: outputs and gradients (x, beta,
    # threshold) must be the module's, on both paths.
    g = torch.Generator().manual_seed(21)
    x = 1.6 * torch.rand(12, 4, 6, generator=g) - 0.2
    w = torch.randn(12, 4, 6, generator=g)
    results = []
    for how in ("module", "functional"):
        xg = x.clone().requires_grad_()
        kw = dict(beta=torch.linspace(0.5, 0.9, 6), threshold=torch.tensor(0.9), spike_grad=sg.ATan(2.0),
                  reset_mechanism=reset)
        with contextlib.nullcontext() if backend == "fused" else backends.use_reference():
            if how == "module":
                clif, (spk, comp, mem) = module_clif(xg, multi, learn_beta=True, learn_threshold=True, **kw)
                beta, threshold = clif.beta, clif.threshold
            else:
                beta, threshold = (kw.pop(k).clone().requires_grad_() for k in ("beta", "threshold"))
                spk, comp, mem = functional_clif(xg, torch.zeros(0), torch.zeros(0), multi, beta=beta,
                                                 threshold=threshold, **kw)
        loss = ((spk + 0.1 * mem + 0.1 * comp) * w).sum()
        results.append([spk, comp, mem, *torch.autograd.grad(loss, (xg, beta, threshold))])
    module, functional = results
    assert 0 < module[0].sum() < module[0].numel()
    assert torch.equal(functional[0], module[0])
    for name, a, b in zip(["comp", "mem", "grad x", "grad beta", "grad threshold"], functional[1:], module[1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


# --- planted bugs: these checks catch them ---------------------------------------------------------
MUTANTS = {
    # the forward forgets the pending reset of a given mem0
    "forgets_mem0_reset": {"cuda/clif_cuda.cu": {"if (a.delay && a.mem0 && T > 0) {": "if (false) {"}},
    # the backward keeps the same-step reset's gradient
    "keeps_reset_gradient": {"cuda/clif_cuda.cu": {"gsf, a.sc, in.dspk, in.du, in.dm, GU, GM, pg,\n"
                                                   "                                                                  delay);":
                                                   "gsf, a.sc, in.dspk, in.du, in.dm, GU, GM, pg, false);"}},
    # the backward does not carry the gradient through the detached reset (c and -s)
    "skips_reset_backward": {"clif_math.h": {"  if (RESET == RESET_SUBTRACT) ptheta -= GU * s;\n"
                                             "  if (RESET == RESET_ZERO) GU = GU * (S(1) - s);": ""}},
    # at t = 0 the backward takes u_{-1} = mem0 (no reset) for dbeta
    "dbeta_from_unreset_mem0": {"cuda/clif_cuda.cu": {
        "if (delay && a.mem0) u_prev = clif_delayed_reset<float, RESET>(h_prev, m_chunk[i], theta);": ""}},
}


@pytest.mark.slow
@pytest.mark.cpu_kernel_only
@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_planted_bugs_fail_the_comparison_with_the_reference(mutant: str) -> None:
    # Each mutant is the CUDA source with one bug, built for the emulator: the fused-vs-reference
    # check above (one case per reset, with states) must fail on it and pass on the real source.
    namespace = f"snntorch_clif_mutant_{mutant}"
    cuda_emulator.load_mutant(namespace, MUTANTS[mutant])
    cases = [(reset, make_case(18, (3, 7), torch.float32, seed=400 + i, per_neuron=True))
             for i, reset in enumerate(["subtract", "zero"])]
    with cuda_emulator.emulated_cuda_kernels():
        for reset, case in cases:
            assert_matches_reference(case, reset, seqs=True)
    with cuda_emulator.emulated_cuda_kernels(namespace):
        caught = 0
        for reset, case in cases:
            try:
                assert_matches_reference(case, reset, seqs=True)
            except AssertionError:
                caught += 1
    assert caught > 0, f"{mutant} passed the comparison"
