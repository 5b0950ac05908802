"""The fused ops (snntorch_clif/ops.py, csrc/) against snntorch_clif/reference.py on the CPU.

Every case runs twice: on the CPU kernel, and on the CUDA kernel's source executed on the CPU
(tests/cuda_emulator.py), which takes float32, float16 and bfloat16 like a GPU.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import cuda_emulator
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from snntorch_clif import CLIF, ops
from snntorch_clif import surrogate as sg
from snntorch_clif.reference import clif_sequence_reference

pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason=f"fused kernels not built: {ops.LOAD_ERROR}")


@pytest.fixture(params=["cpu", "cuda_emulated"], autouse=True)
def kernel(request: pytest.FixtureRequest):  # noqa: ANN201
    """Which kernel the ops run on: the CPU one, or the CUDA source executed on the CPU."""
    yield from cuda_emulator.each_kernel(request, "tests a property of the CPU kernel")


SURROGATES = [
    sg.Rectangle(1.0), sg.ATan(2.0), sg.FastSigmoid(25.0), sg.Sigmoid(5.0), sg.Triangular(1.0),
    sg.StraightThrough(), sg.Disabled(),
]
RESETS = ["subtract", "zero", "none"]
TS = [1, 2, 7, 17, 64]  # 17: one checkpoint chunk of the saved m and one step
# Per-element results: within 1e-6 (fp32) / 1e-12 (fp64) of the reference, measured as
# |a - b| <= tol * (1 + |b|). Scalar-parameter gradients are sums over T*N terms whose
# rounding differs with the summation order, so their absolute tolerance grows with sqrt(T*N).
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}
# float16 / bfloat16 inputs run in float32 inside the kernel: compared with the reference
# run in float32 on the same (upcast) values, they may differ by the final rounding only.
HALF_TOL = {torch.float16: 2e-3, torch.bfloat16: 1e-2}


def make_case(
    T: int, shape: tuple[int, ...], dtype: torch.dtype, *, seed: int = 0, per_neuron: bool = False,
    learnable: bool = True, noncontiguous: bool = False,
) -> dict:
    """Inputs in ``dtype``: x [T, *shape] (scaled so that spikes are frequent), states, parameters."""
    g = torch.Generator().manual_seed(seed)

    def rand(*size: int, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(size, generator=g, dtype=torch.float64)).to(dtype)

    if noncontiguous and len(shape) >= 1:
        # a transposed, strided view of a larger buffer
        base = torch.randn((T, *reversed(shape), 2), generator=g, dtype=torch.float64).to(dtype) * 1.5 + 0.4
        x = base[..., 0].permute(0, *range(len(shape), 0, -1))
    else:
        x = (torch.randn((T, *shape), generator=g, dtype=torch.float64) * 1.5 + 0.4).to(dtype)
    case = {
        "x": x,
        "comp": rand(*shape, hi=2.0),
        "mem": rand(*shape, lo=-1.0, hi=1.0),
    }
    if per_neuron and len(shape) >= 1:
        last = shape[-1:]
        case["beta"] = rand(*last, lo=0.1, hi=0.95)
        case["threshold"] = rand(*shape, lo=0.5, hi=1.5)
        case["gsf"] = rand(*((1,) * (len(shape) - 1) + last), lo=0.5, hi=1.5)
    else:
        case["beta"] = torch.tensor(0.6, dtype=dtype)
        case["threshold"] = torch.tensor(0.9, dtype=dtype)
        case["gsf"] = torch.tensor(1.25, dtype=dtype)
    for k in ("x", "comp", "mem"):
        case[k].requires_grad_(True)
    for k in ("beta", "threshold", "gsf"):
        case[k].requires_grad_(learnable)
    return case


INPUTS = ("x", "comp", "mem", "beta", "threshold", "gsf")


def run(case: dict, fused: bool, spike_grad: sg.Surrogate, reset: str, seqs: bool, seed: int = 1,
        dtype: torch.dtype | None = None) -> tuple[list, list]:
    """Outputs and the gradients of a random linear loss, fused or reference (in ``dtype`` if given)."""
    args = {}
    for k in INPUTS:
        v = case[k].detach()
        if dtype is not None:
            v = v.to(dtype)
        args[k] = v.requires_grad_(case[k].requires_grad)
    if fused:
        outs = ops.clif_sequence_fused(
            args["x"], args["comp"], args["mem"], args["beta"], args["threshold"], args["gsf"],
            spike_grad, reset, seqs,
        )
    else:
        outs = clif_sequence_reference(
            args["x"], args["comp"], args["mem"], args["beta"], args["threshold"], spike_grad, reset,
            args["gsf"], seqs,
        )
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(case["x"].dtype).to(o.dtype) for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    wanted = [args[k] for k in INPUTS if args[k].requires_grad]
    grads = torch.autograd.grad(loss, wanted, allow_unused=True) if loss.requires_grad else [None] * len(wanted)
    grads = [torch.zeros_like(w) if gr is None else gr for w, gr in zip(wanted, grads)]
    return [o.detach() for o in outs], list(grads)


def assert_match(case: dict, spike_grad: sg.Surrogate, reset: str, seqs: bool) -> None:
    """Fused vs reference: identical spikes; states and gradients within the dtype's tolerance.

    float64: within 1e-12 * (1 + |reference|). float32: within 1e-6 * (1 + |exact|) of the
    float64 result, or, where gradients explode over many steps and the float32 reference
    itself is farther than that from it, no more than 4x the reference's own error or 8 ulp
    of the tensor's largest gradient (what rounding leaves of terms that cancel).
    float16 / bfloat16: compared with the float32 reference on the same values.
    """
    dtype = case["x"].dtype
    if dtype in HALF_TOL:
        ref_outs, ref_grads = run(case, False, spike_grad, reset, seqs, dtype=torch.float32)
        exact = None
    else:
        ref_outs, ref_grads = run(case, False, spike_grad, reset, seqs)
        exact = run(case, False, spike_grad, reset, seqs, dtype=torch.float64) if dtype == torch.float32 else None
    outs, grads = run(case, True, spike_grad, reset, seqs)
    assert torch.equal(outs[0].to(ref_outs[0].dtype), ref_outs[0]), "spikes differ"
    names = ["comp", "mem"] + [k for k in INPUTS if case[k].requires_grad]
    for i, (name, got, want) in enumerate(zip(names, outs[1:] + grads, ref_outs[1:] + ref_grads)):
        assert got.shape == want.shape and got.dtype == dtype, name
        # scalar-parameter gradients are sums over all neuron-steps: rounding grows with sqrt(count)
        scale = 1.0
        if name in ("beta", "threshold", "gsf") and case[name].numel() < case["x"].numel():
            scale = max(1.0, (case["x"].numel() / max(case[name].numel(), 1)) ** 0.5)
        if dtype in HALF_TOL:
            tol = HALF_TOL[dtype] * scale
            torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")
        elif exact is None:
            tol = TOL[dtype] * scale
            torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")
        else:
            truth = (exact[0][1:] + exact[1])[i]
            if truth.numel() == 0:
                continue
            err_fused = (got.double() - truth).abs() / (1 + truth.abs())
            err_ref = ((want.double() - truth).abs() / (1 + truth.abs())).max().item()
            # Exploding gradients (1e4 and more) cancel into small ones: an element is then
            # only as exact as float32 rounding of the largest terms (8 ulp of the tensor's max).
            cancellation = 8 * torch.finfo(torch.float32).eps * truth.abs().max().item() / (1 + truth.abs())
            bad = err_fused > torch.clamp(cancellation, min=max(TOL[dtype] * scale, 4 * err_ref))
            assert not bad.any(), (
                f"{name}: fused float32 is {err_fused.max().item():.3g} from the exact result, the float32 "
                f"reference {err_ref:.3g}"
            )


# --- the grid: reset x surrogate x learnable x dtype (T and sizes vary along it) ---------
GRID = list(itertools.product(RESETS, range(len(SURROGATES)), [False, True], [torch.float32, torch.float64]))


@pytest.mark.parametrize(("reset", "kind", "learnable", "dtype"), GRID)
def test_matches_reference_grid(reset: str, kind: int, learnable: bool, dtype: torch.dtype) -> None:
    i = GRID.index((reset, kind, learnable, dtype))
    T = TS[(i // 2) % len(TS)]  # every T meets both dtypes
    shape = [(3, 5), (7,), (2, 3, 5), (13,)][i // 8 % 4]
    case = make_case(T, shape, dtype, seed=i, per_neuron=bool(i % 3 == 0), learnable=learnable)
    assert_match(case, SURROGATES[kind], reset, seqs=bool(i % 2))


@pytest.mark.parametrize("T", TS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_matches_reference_over_time(T: int, dtype: torch.dtype) -> None:
    for reset, seqs in itertools.product(RESETS, [False, True]):
        case = make_case(T, (5, 17), dtype, seed=T, per_neuron=seqs)
        assert_match(case, sg.ATan(2.0), reset, seqs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_noncontiguous_and_per_neuron(dtype: torch.dtype) -> None:
    case = make_case(9, (4, 3, 11), dtype, seed=3, per_neuron=True, noncontiguous=True)
    assert not case["x"].is_contiguous()
    for reset in RESETS:
        assert_match(case, sg.Sigmoid(5.0), reset, seqs=True)


@pytest.mark.parametrize(("T", "shape"), [(0, (3, 4)), (5, (0,)), (4, (2, 0)), (0, (0,))])
@pytest.mark.parametrize("seqs", [False, True])
def test_zero_size(T: int, shape: tuple[int, ...], seqs: bool) -> None:
    case = make_case(T, shape, torch.float32)
    outs, grads = run(case, True, sg.Rectangle(), "subtract", seqs)
    ref_outs, ref_grads = run(case, False, sg.Rectangle(), "subtract", seqs)
    for got, want in zip(outs + grads, ref_outs + ref_grads):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want)


def test_multithreaded_matches_reference() -> None:
    # N above the kernel's grain size: at::parallel_for splits the neurons over threads.
    case = make_case(2, (40001,), torch.float32, seed=5, per_neuron=True)
    assert_match(case, sg.Rectangle(), "subtract", seqs=False)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    T=st.sampled_from([0, 1, 2, 3, 7, 16]),
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    reset=st.sampled_from(RESETS),
    kind=st.integers(0, len(SURROGATES) - 1),
    # float32-representable: surrogate.py's triangular rounds its parameter to float32 even for
    # float64 inputs (torch.where on Python scalars), the kernel does not
    param=st.floats(0.25, 8.0, width=32),
    per_neuron=st.booleans(),
    learnable=st.booleans(),
    seqs=st.booleans(),
    noncontiguous=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_hypothesis(
    kernel: str, T: int, shape: tuple, dtype: torch.dtype, reset: str, kind: int, param: float, per_neuron: bool,
    learnable: bool, seqs: bool, noncontiguous: bool, seed: int,
) -> None:
    assume(not (kernel == "cuda_emulated" and dtype == torch.float64))
    cls = type(SURROGATES[kind])
    spike_grad = cls(param) if cls.param_name else cls()
    case = make_case(T, shape, dtype, seed=seed, per_neuron=per_neuron, learnable=learnable,
                     noncontiguous=noncontiguous)
    assert_match(case, spike_grad, reset, seqs)


# --- gradcheck: the derived beta / threshold / gsf / initial-state gradients -------------
@pytest.mark.cpu_kernel_only  # float64
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("per_neuron", [False, True])
@pytest.mark.parametrize("seqs", [False, True])
@pytest.mark.parametrize("T", [5, 35])  # 35: the backward recomputes m over three checkpoint chunks
def test_gradcheck(reset: str, per_neuron: bool, seqs: bool, T: int) -> None:
    # The spike is a step: its finite difference is 0, which is the Disabled surrogate's
    # g = 0, so gradcheck checks every other path exactly (gate, sigma(m), reset, beta, theta).
    case = make_case(T, (2, 3), torch.float64, seed=11, per_neuron=per_neuron)
    spike_grad = sg.Disabled()

    def f(x, comp, mem, beta, threshold, gsf):  # noqa: ANN001, ANN202
        return ops.clif_sequence_fused(x, comp, mem, beta, threshold, gsf, spike_grad, reset, seqs)

    inputs = tuple(case[k].detach().requires_grad_() for k in INPUTS)
    with torch.no_grad():
        spk = f(*inputs)[0]
    assert 0 < (spk != 0).sum() < spk.numel(), "the case should spike, but not everywhere"
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.cpu_kernel_only  # float64
def test_surrogate_gradients_through_spike() -> None:
    # With a real surrogate, dL/dx at t=0 of a single step is g(h - theta) * gsf (+ gate terms):
    # compare the op's x-gradient with the surrogate formula on a no-reset, no-gate setup.
    x = torch.linspace(-2, 2, 41, dtype=torch.float64).reshape(1, 41).requires_grad_()
    z = torch.zeros(41, dtype=torch.float64)
    for spike_grad in SURROGATES:
        spk, _, _ = ops.clif_sequence_fused(
            x, z, z, torch.tensor(0.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64),
            torch.tensor(1.0, dtype=torch.float64), spike_grad, "none", False,
        )
        (gx,) = torch.autograd.grad(spk.sum(), x)
        want = sg.surrogate_derivative(x.detach() - 0.5, spike_grad.kind, spike_grad.param)
        torch.testing.assert_close(gx, want, rtol=1e-12, atol=1e-12, msg=repr(spike_grad))


# --- opcheck ------------------------------------------------------------------------------
def _op_args(T: int, N: int | tuple[int, ...], dtype: torch.dtype, requires_grad: bool, per_neuron: bool) -> tuple:
    neurons = (N,) if isinstance(N, int) else N
    x = torch.randn(T, *neurons, dtype=dtype) * 1.5
    comp, mem = torch.rand(neurons, dtype=dtype), torch.randn(neurons, dtype=dtype)
    pshape = neurons if per_neuron else (1,)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    beta = torch.full(pshape, 0.5, dtype=acc)
    thr = torch.full(pshape, 1.0, dtype=acc)
    gsf = torch.full(pshape, 1.0, dtype=acc)
    for t in (x, comp, mem, beta, thr, gsf):
        t.requires_grad_(requires_grad)
    return x, comp, mem, beta, thr, gsf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("seqs", [False, True])
def test_opcheck_forward(dtype: torch.dtype, seqs: bool) -> None:
    for requires_grad, per_neuron in [(True, False), (True, True), (False, False)]:
        args = _op_args(6, 10, dtype, requires_grad, per_neuron)
        torch.library.opcheck(
            torch.ops.snntorch_clif.clif_forward.default, (*args, 0, 1, 2.0, seqs, requires_grad)
        )
    x, _, _, *params = _op_args(6, 10, dtype, True, True)  # no initial states: zeros
    torch.library.opcheck(torch.ops.snntorch_clif.clif_forward.default, (x, None, None, *params, 0, 1, 2.0, seqs, True))
    x, comp, mem, *params = _op_args(1, (2, 5), dtype, True, True)  # the step form: x without a time dim
    x = x.detach()[0].requires_grad_()
    torch.library.opcheck(
        torch.ops.snntorch_clif.clif_forward.default, (x, comp, mem, *params, 0, 1, 2.0, seqs, True, True)
    )


@pytest.mark.parametrize("neurons", [(2, 5), (), (3, 0)])
def test_opcheck_any_neuron_shape(neurons: tuple[int, ...]) -> None:
    # the ops take [T, *neurons] as they are; one scalar parameter may have any shape
    for per_neuron in (False, True):
        x, comp, mem, beta, thr, gsf = _op_args(5, neurons, torch.float32, True, per_neuron)
        for seqs in (False, True):
            torch.library.opcheck(
                torch.ops.snntorch_clif.clif_forward.default,
                (x, comp, mem, beta.reshape(()) if not per_neuron else beta, thr, gsf, 0, 2, 1.0, seqs, True),
            )
            with torch.no_grad():
                spk, c, m, saved = torch.ops.snntorch_clif.clif_forward(
                    x, comp, mem, beta, thr, gsf, 0, 2, 1.0, seqs, True
                )
            assert spk.shape == x.shape and c.shape == m.shape == (x.shape if seqs else x.shape[1:])
            torch.library.opcheck(
                torch.ops.snntorch_clif.clif_backward.default,
                (torch.randn_like(spk), torch.randn_like(c), None, saved, mem.detach(), beta.detach(),
                 thr.detach(), gsf.detach(), 0, 2, 1.0, per_neuron),
            )


@pytest.mark.parametrize("seqs", [False, True])
def test_neuron_shape_gives_the_flat_bits(seqs: bool) -> None:
    # [T, 3, 4] with [3, 4] parameters and states is [T, 12] with [12] ones, in every output
    shaped = _op_args(7, (3, 4), torch.float32, True, True)
    flat = [t.detach().reshape(7, 12) if i == 0 else t.detach().reshape(12) for i, t in enumerate(shaped)]
    flat = [t.requires_grad_() for t in flat]
    outs = []
    for args in (shaped, flat):
        spk, c, m, _ = torch.ops.snntorch_clif.clif_forward(*args, 0, 1, 2.0, seqs, True)
        g = torch.Generator().manual_seed(3)
        loss = (spk * torch.randn(spk.shape, generator=g)).sum() + (c * torch.randn(c.shape, generator=g)).sum()
        loss = loss + (m * torch.randn(m.shape, generator=g)).sum()
        grads = torch.autograd.grad(loss, args)
        outs.append([spk, c, m, *grads])
    for a, b, arg in zip(outs[0], outs[1], ["spk", "comp", "mem", "x", "comp0", "mem0", "beta", "thr", "gsf"]):
        assert torch.equal(a.reshape(-1), b.reshape(-1)), arg
    assert outs[0][3].shape == (7, 3, 4) and outs[0][6].shape == (3, 4)


def test_absent_initial_states_are_zeros_and_get_no_gradient() -> None:
    """comp0 / mem0 None: the bits of explicit zeros, forward and backward (x and the
    parameters); autograd gives the absent states no gradient."""
    T, N = 19, 37
    x, _, _, beta, thr, gsf = _op_args(T, N, torch.float32, True, True)
    zeros = torch.zeros(N, requires_grad=True)

    def run(comp0, mem0):  # noqa: ANN001, ANN202
        for t in (x, beta, thr, gsf):
            t.grad = None
        outs = torch.ops.snntorch_clif.clif_forward(x, comp0, mem0, beta, thr, gsf, 0, 3, 5.0, True, True)
        w = torch.Generator().manual_seed(0)
        loss = sum((o * torch.randn(o.shape, generator=w)).sum() for o in outs[:3])
        loss.backward()
        return [o.detach() for o in outs[:3]] + [t.grad.clone() for t in (x, beta, thr, gsf)]

    absent = run(None, None)
    explicit = run(zeros, zeros)
    for a, b in zip(absent, explicit):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))
    assert zeros.grad is not None and zeros.grad.abs().sum() > 0  # the explicit states did get one


@pytest.mark.parametrize("seqs", [False, True])
def test_opcheck_backward(seqs: bool) -> None:
    x, comp, mem, beta, thr, gsf = _op_args(6, 10, torch.float32, False, True)
    spk, c, m, saved = torch.ops.snntorch_clif.clif_forward(x, comp, mem, beta, thr, gsf, 1, 3, 5.0, seqs, True)
    gspk = torch.randn_like(spk)
    gcomp, gmem = torch.randn_like(c), torch.randn_like(m)
    for param_grads, grads in [(True, (gcomp, gmem)), (False, (None, gmem)), (True, (None, None))]:
        torch.library.opcheck(
            torch.ops.snntorch_clif.clif_backward.default,
            (gspk, *grads, saved, mem, beta, thr, gsf, 1, 3, 5.0, param_grads),
        )


def test_ops_reject_bad_arguments() -> None:
    x, comp, mem, beta, thr, gsf = _op_args(3, 4, torch.float32, False, False)
    fwd = torch.ops.snntorch_clif.clif_forward
    with pytest.raises(RuntimeError, match="beta"):
        fwd(x, comp, mem, torch.ones(3), thr, gsf, 0, 0, 1.0, False, False)
    with pytest.raises(RuntimeError, match="compute dtype"):
        fwd(x, comp, mem, beta.double(), thr, gsf, 0, 0, 1.0, False, False)
    with pytest.raises(RuntimeError, match="reset"):
        fwd(x, comp, mem, beta, thr, gsf, 7, 0, 1.0, False, False)
    with pytest.raises(RuntimeError, match="time-major"):
        fwd(x[0, 0], None, None, beta, thr, gsf, 0, 0, 1.0, False, False)
    with pytest.raises(RuntimeError, match="neuron shape"):
        fwd(x.reshape(-1), comp, mem, beta, thr, gsf, 0, 0, 1.0, False, False)
    with pytest.raises(RuntimeError, match="1 or N=4"):
        fwd(x, comp, mem, torch.ones(2, 3), thr, gsf, 0, 0, 1.0, False, False)
    _, _, _, saved = fwd(x, comp, mem, beta, thr, gsf, 0, 0, 1.0, False, False)
    with pytest.raises(RuntimeError, match="save=False"):
        torch.ops.snntorch_clif.clif_backward(x, None, None, saved, None, beta, thr, gsf, 0, 0, 1.0, False)


# --- torch.compile -----------------------------------------------------------------------
class _Net(torch.nn.Module):
    def __init__(self, step_mode: str) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(12, 16)
        self.lif = CLIF(beta=0.7, learn_beta=True, learn_threshold=True, spike_grad=sg.ATan(2.0), step_mode=step_mode)
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [T, B, 12]
        cur = self.fc(x)
        comp, mem = torch.zeros_like(cur[0]), torch.zeros_like(cur[0])
        if self.step_mode == "multi":
            spk, comp, mem = self.lif(cur, comp, mem)
            return spk.sum(0) + mem
        total = torch.zeros_like(cur[0])
        for t in range(cur.shape[0]):
            spk, comp, mem = self.lif(cur[t], comp, mem)
            total = total + spk
        return total + mem


@pytest.mark.parametrize("step_mode", ["single", "multi"])
def test_compile_fullgraph_matches_eager(step_mode: str) -> None:
    torch._dynamo.reset()
    net = _Net(step_mode)
    x = torch.randn(5, 3, 12) * 2
    eager = net(x)
    eager_grads = torch.autograd.grad(eager.sum(), list(net.parameters()))
    explained = torch._dynamo.explain(net)(x)
    assert explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    grads = torch.autograd.grad(out.sum(), list(net.parameters()))
    torch.testing.assert_close(out, eager)
    for g, e in zip(grads, eager_grads):
        torch.testing.assert_close(g, e)


# --- memory kept for backward --------------------------------------------------------------
def saved_bytes(fn) -> int:  # noqa: ANN001
    """Bytes of the distinct storages autograd saves while ``fn()`` runs."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def test_saved_bytes_per_neuron_step() -> None:
    from snntorch_clif import backends, clif_sequence

    N = 4096

    def fused(T: int) -> int:
        x = torch.randn(T, 8, N // 8, requires_grad=True)
        return saved_bytes(lambda: clif_sequence(x, beta=0.5, spike_grad=sg.Rectangle()))

    def reference(T: int) -> int:
        x = torch.randn(T, 8, N // 8, requires_grad=True)
        with backends.use_reference():
            return saved_bytes(lambda: clif_sequence(x, beta=0.5, spike_grad=sg.Rectangle()))

    T = 64
    per_step = (fused(T) - fused(T // 2)) / ((T - T // 2) * N)
    total = fused(T)
    ref_total = reference(T)
    print(f"\nsaved for backward, T={T}, N={N}: fused {total / (T * N):.2f} B/neuron-step "
          f"(marginal {per_step:.2f}), reference {ref_total / (T * N):.2f} B/neuron-step")
    # h_t in float32 and m every ops.SAVE_CHUNK steps; nothing else grows with T
    assert per_step == pytest.approx(4 + 4 / ops.SAVE_CHUNK)
    assert total <= 4 * ops.saved_rows(T) * N + 64  # + the three scalar parameters
    assert ref_total > 4 * total


# --- ISA variants --------------------------------------------------------------------------
@pytest.mark.cpu_kernel_only  # the CPU's SIMD variants
def test_cpu_isa_variants_are_bit_identical() -> None:
    # SNNTORCH_CLIF_CPU_ISA caps the SIMD variant; every variant must give the same bits.
    script = textwrap.dedent(
        """
        import torch, sys
        from snntorch_clif import ops, surrogate
        g = torch.Generator().manual_seed(0)
        x = (torch.randn(9, 1000, generator=g) * 1.5).requires_grad_()
        z = torch.rand(1000, generator=g)
        outs = ops.clif_sequence_fused(x, z, -z, torch.tensor(0.6), torch.tensor(0.9), torch.tensor(1.0),
                                       surrogate.Sigmoid(4.0), "zero", True)
        (gx,) = torch.autograd.grad(sum(o.sum() for o in outs), x)
        torch.save([o.detach() for o in outs] + [gx], sys.argv[1])
        """
    )
    results = {}
    for isa in ["", "avx2", "generic"]:
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"clif_isa_{os.getpid()}_{isa or 'best'}.pt")
        env = dict(os.environ, SNNTORCH_CLIF_CPU_ISA=isa)
        subprocess.run([sys.executable, "-c", script, path], env=env, check=True, timeout=120)
        results[isa] = torch.load(path)
        os.remove(path)
    for isa in ["avx2", "generic"]:
        for a, b in zip(results[""], results[isa]):
            assert torch.equal(a, b), isa


def test_forward_without_anything_to_differentiate_skips_autograd_with_the_same_bits() -> None:
    # no input requires grad, or grad mode is off: the op goes straight to the kernel
    x, comp, mem, beta, thr, gsf = _op_args(9, 7, torch.float32, True, True)
    with_grad = torch.ops.snntorch_clif.clif_forward(x, comp, mem, beta, thr, gsf, 0, 1, 2.0, True, True)
    assert all(t.requires_grad for t in with_grad[:3]) and with_grad[0].grad_fn is not None
    detached = [t.detach() for t in (x, comp, mem, beta, thr, gsf)]
    with torch.no_grad():
        no_grad_mode = torch.ops.snntorch_clif.clif_forward(x, comp, mem, beta, thr, gsf, 0, 1, 2.0, True, True)
    no_inputs = torch.ops.snntorch_clif.clif_forward(*detached, 0, 1, 2.0, True, True)
    for outs in (no_grad_mode, no_inputs):
        assert not any(t.requires_grad for t in outs)
        for a, b in zip(outs, with_grad):
            assert torch.equal(a, b.detach())


class _OpCalls(TorchDispatchMode):
    """Records ``(op, args)`` of every op call that reaches the dispatcher's Python mode key."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[object, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.calls.append((func, args))
        return func(*args, **(kwargs or {}))


def test_backward_computes_parameter_gradients_only_when_asked() -> None:
    # The node asks the kernel for parameter gradients only when one of them is wanted.
    x, comp, mem, beta, thr, gsf = _op_args(6, 5, torch.float32, True, True)
    spk = torch.ops.snntorch_clif.clif_forward(x, comp, mem, beta, thr, gsf, 0, 1, 2.0, False, True)[0]
    grad = torch.randn_like(spk)
    with _OpCalls() as record:
        (dx_only,) = torch.autograd.grad(spk, x, grad, retain_graph=True)
        dx, dbeta = torch.autograd.grad(spk, (x, beta), grad)
    param_grads = [args[-1] for func, args in record.calls if func is torch.ops.snntorch_clif.clif_backward.default]
    assert param_grads == [False, True]
    assert torch.equal(dx_only, dx) and dbeta.abs().sum() > 0


# --- the op's step form (step=True: x without a time dim) -----------------------------------------
@pytest.mark.parametrize("neurons", [(), (5,), (3, 4)])
@pytest.mark.parametrize(("per_neuron", "seqs", "states"), [(False, False, False), (True, True, True)])
def test_step_form_gives_the_bits_and_gradients_of_a_one_step_sequence(
    neurons: tuple[int, ...], per_neuron: bool, seqs: bool, states: bool
) -> None:
    """step=True runs x as [1, *x.shape] below autograd: the same kernels, so the same bits,
    with spk (and state sequences) in x's shape and no view nodes around the op."""
    x1, comp, mem, beta, thr, gsf = _op_args(1, neurons, torch.float32, True, per_neuron and neurons != ())
    x = x1.detach()[0].requires_grad_()
    comp0, mem0 = (comp, mem) if states else (None, None)
    rest = (beta, thr, gsf, 1, sg.ATan(2.0).kind, 2.0, seqs, True)
    entries = [torch.ops.snntorch_clif.clif_forward]
    if ops._forward_entry is not None:
        entries.append(ops._forward_entry)
    for forward in entries:
        step = forward(x, comp0, mem0, *rest, True)
        seq = torch.ops.snntorch_clif.clif_forward(x1, comp0, mem0, *rest)
        assert step[0].shape == x.shape and step[0].grad_fn.name() == "ClifBackward"
        assert step[1].shape == step[2].shape == x.shape
        for a, b in zip(step[:3], seq[:3]):
            assert torch.equal(a, b.reshape(a.shape))
        grads = [torch.randn(x.shape) for _ in range(3)]
        inputs = [t for t in (comp0, mem0, beta, thr, gsf) if t is not None]
        d_step = torch.autograd.grad(step[:3], [x, *inputs], grads)
        d_seq = torch.autograd.grad(seq[:3], [x1, *inputs], [g.reshape(s.shape) for g, s in zip(grads, seq[:3])])
        assert d_step[0].shape == x.shape
        for a, b in zip(d_step, d_seq):
            assert torch.equal(a, b.reshape(a.shape))


def test_step_form_unused_spikes_get_zero_gradient_in_the_step_shape() -> None:
    """A loss on the states only: the node makes spk's zero gradient in x's shape, then the op's."""
    x = (torch.randn(3, 4) * 1.5).requires_grad_()
    one = torch.ones(1)
    _, comp, mem, _ = torch.ops.snntorch_clif.clif_forward(
        x, None, None, one * 0.5, one, one, 0, sg.Rectangle(1.0).kind, 1.0, False, True, True)
    (comp.sum() + mem.sum()).backward()
    x1 = x.detach()[None].requires_grad_()
    _, comp1, mem1, _ = torch.ops.snntorch_clif.clif_forward(
        x1, None, None, one * 0.5, one, one, 0, sg.Rectangle(1.0).kind, 1.0, False, True)
    (comp1.sum() + mem1.sum()).backward()
    assert torch.equal(x.grad, x1.grad[0])


# --- the library's direct entry to clif_forward (csrc/python_call.cpp) --------------------------
@pytest.mark.skipif(ops._forward_entry is None, reason="a library without the direct entry")
@pytest.mark.parametrize(("per_neuron", "seqs", "states"), [(False, False, False), (True, True, True)])
def test_direct_entry_gives_the_bits_and_gradients_of_torch_ops(per_neuron: bool, seqs: bool, states: bool) -> None:
    x, comp, mem, beta, thr, gsf = _op_args(19, (3, 4), torch.float32, True, per_neuron)
    comp0, mem0 = (comp, mem) if states else (None, None)
    args = (x, comp0, mem0, beta, thr, gsf, 0, sg.ATan(2.0).kind, 2.0, seqs, True)
    direct, via_torch_ops = ops._forward_entry(*args), torch.ops.snntorch_clif.clif_forward(*args)
    assert isinstance(direct, tuple) and len(direct) == 4
    inputs = [t for t in (x, comp0, mem0, beta, thr, gsf) if t is not None]
    grads = [torch.randn_like(t) for t in direct[:3]]
    for a, b in zip(direct, via_torch_ops):
        assert torch.equal(a, b)
    assert type(direct[0].grad_fn) is type(via_torch_ops[0].grad_fn)
    for a, b in zip(torch.autograd.grad(direct[:3], inputs, grads), torch.autograd.grad(via_torch_ops[:3], inputs, grads)):
        assert torch.equal(a, b)


@pytest.mark.skipif(ops._forward_entry is None, reason="a library without the direct entry")
def test_direct_entry_leaves_python_overrides_and_other_types_to_torch_ops() -> None:
    from torch.overrides import TorchFunctionMode

    x, comp, mem, beta, thr, gsf = _op_args(5, 6, torch.float32, False, False)
    args = [x, comp, mem, beta, thr, gsf, 0, 1, 2.0, False, False]

    class Sub(torch.Tensor):
        pass

    for at, value in [(0, x.as_subclass(Sub)), (8, 2), (9, 1), (6, True)]:  # a subclass, an int, bools
        assert ops._forward_entry(*args[:at], value, *args[at + 1:]) is NotImplemented
    assert ops._forward_entry(*args, 1) is NotImplemented  # step as an int
    with pytest.raises(TypeError, match="11 to 13 positional arguments"):
        ops._forward_entry(*args[:5])

    class Seen(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.funcs: list[object] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.funcs.append(func)
            return func(*args, **(kwargs or {}))

    with Seen() as seen:
        assert ops._forward_entry(*args) is NotImplemented
        spk = ops.clif_sequence_fused(x, comp, mem, beta, thr, gsf, sg.Rectangle(1.0), "subtract", False)[0]
    assert torch.ops.snntorch_clif.clif_forward in seen.funcs  # the mode saw the op, through torch.ops
    assert torch.equal(spk, torch.ops.snntorch_clif.clif_forward(*args)[0])


@pytest.mark.skipif(ops._forward_entry is None, reason="a library without the direct entry")
def test_direct_entry_is_seen_by_dispatch_modes_and_the_profiler() -> None:
    from snntorch_clif import clif_sequence

    x = torch.randn(4, 8, requires_grad=True)
    with _OpCalls() as seen:
        clif_sequence(x, beta=0.5).spk.sum().backward()
    funcs = [func for func, _ in seen.calls]
    assert torch.ops.snntorch_clif.clif_forward.default in funcs
    assert torch.ops.snntorch_clif.clif_backward.default in funcs
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        clif_sequence(x, beta=0.5)
    assert "snntorch_clif::clif_forward" in {event.key for event in prof.key_averages()}


def test_forward_mode_ad_is_refused_by_name() -> None:
    # A dual tensor's tangent must not vanish silently in the fused op.
    import torch.autograd.forward_ad as fwAD

    x, comp, mem, beta, thr, gsf = _op_args(4, 3, torch.float32, False, False)
    fwd = torch.ops.snntorch_clif.clif_forward
    with fwAD.dual_level():
        dual_x = fwAD.make_dual(x, torch.ones_like(x))
        with pytest.raises(RuntimeError, match="forward-mode AD"):
            fwd(dual_x, comp, mem, beta, thr, gsf, 0, 1, 2.0, False, False)
        dual_beta = fwAD.make_dual(beta, torch.ones_like(beta))
        with pytest.raises(RuntimeError, match="forward-mode AD"):
            fwd(x, comp, mem, dual_beta, thr, gsf, 0, 1, 2.0, False, False)
    with pytest.raises(RuntimeError, match="forward-mode AD"):
        torch.func.jvp(lambda t: fwd(t, comp, mem, beta, thr, gsf, 0, 1, 2.0, False, False)[0], (x,), (x,))


def test_save_false_with_inputs_that_need_grad_is_refused_at_the_forward() -> None:
    x, comp, mem, beta, thr, gsf = _op_args(4, 3, torch.float32, True, False)
    with pytest.raises(RuntimeError, match="save=False"):
        torch.ops.snntorch_clif.clif_forward(x, comp, mem, beta, thr, gsf, 0, 1, 2.0, False, False)


def test_a_long_chain_of_nodes_is_freed_without_deep_recursion() -> None:
    # 100,000 single steps chain 100,000 nodes; freeing them one inside the other would
    # overflow the stack (the graph's deleter has to unroll it).
    x = torch.randn(2, requires_grad=True)
    beta, thr = torch.full((1,), 0.5), torch.ones(1)
    comp = mem = None
    for _ in range(100_000):
        _, comp, mem, _ = torch.ops.snntorch_clif.clif_forward(
            x[None], comp, mem, beta, thr, thr, 0, 1, 2.0, False, True
        )
    assert mem.grad_fn is not None and mem.grad_fn.name() == "ClifBackward"
    del comp, mem  # a crash here is a stack overflow


def test_activation_checkpointing_and_saved_tensor_offload_give_the_same_gradients() -> None:
    # The node's saved tensors go through PyTorch's saved-tensor hooks like a built-in op's.
    from torch.utils.checkpoint import checkpoint

    x, comp, mem, beta, thr, gsf = _op_args(20, 6, torch.float32, True, True)
    inputs = (x, comp, mem, beta, thr, gsf)

    def loss() -> torch.Tensor:
        spk, c, m, _ = torch.ops.snntorch_clif.clif_forward(*inputs, 0, 1, 2.0, True, True)
        return (spk * torch.arange(20.0)[:, None]).sum() + c.square().sum() + m.sum()

    plain = torch.autograd.grad(loss(), inputs)
    with torch.autograd.graph.save_on_cpu():
        offloaded = torch.autograd.grad(loss(), inputs)
    recomputed = torch.autograd.grad(checkpoint(loss, use_reentrant=False), inputs)
    for a, b, c in zip(plain, offloaded, recomputed):
        assert a.abs().sum() > 0
        assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.cpu_kernel_only  # PyTorch's behaviour around the node, not the kernel's
def test_compiled_autograd_is_refused_by_name() -> None:
    # Documented as unsupported (docs/robustness.rst): the error must name the node, not be an
    # internal assert deep inside PyTorch (what the generic torch::autograd::Function gave).
    from torch._dynamo import compiled_autograd

    x, comp, mem, beta, thr, gsf = _op_args(3, 4, torch.float32, True, False)
    loss = torch.ops.snntorch_clif.clif_forward(x, comp, mem, beta, thr, gsf, 0, 1, 2.0, False, True)[2].sum()
    enable = getattr(compiled_autograd, "_enable", None) or compiled_autograd.enable  # torch < 2.6: enable
    # NotImplementedError; torch 2.4: RuntimeError
    with pytest.raises((NotImplementedError, RuntimeError), match="compiled_args not implemented: ClifBackward"):
        with enable(torch.compile(backend="eager")):
            loss.backward()


def test_torch_func_grad_equals_eager_autograd() -> None:
    # functorch's grad transform refused the generic C++ torch::autograd::Function; the node works
    x, comp, mem, beta, thr, gsf = _op_args(7, (2, 3), torch.float32, False, True)
    weights = torch.arange(7.0)[:, None, None]

    def loss(x: torch.Tensor, beta: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        spk, c, m, _ = torch.ops.snntorch_clif.clif_forward(x, comp, mem, beta, thr, gsf, 0, 1, 2.0, True, True)
        return (spk * weights).sum() + c.square().sum() + m.sum()

    grads = torch.func.grad(loss, argnums=(0, 1, 2))(x, beta, mem)
    eager_inputs = [t.clone().requires_grad_() for t in (x, beta, mem)]
    eager = torch.autograd.grad(loss(*eager_inputs), eager_inputs)
    for a, b in zip(grads, eager):
        assert b.abs().sum() > 0 and torch.equal(a, b)
