"""recurrent.py: RCLIF, the recurrent CLIF, against a plain-PyTorch reference written here.

The reference below is the neuron's definition, independent of the package: for each step

    h_t = beta u_{t-1} + x_t + W(s_{t-1}),  s_t = H(h_t - theta),
    m_t = sigmoid((1 - beta) h_t) m_{t-1} + s_t,  u_t = h_t - s_t (theta + sigmoid(m_t))  ("subtract")

with W an nn.Linear, an nn.Conv2d or an elementwise V, and the surrogate derivative written
out here too. Every call mode, reset mechanism and recurrent kind is checked against it, on
the fused kernel and on the reference path.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import math
import os
import pickle
import socket
from collections.abc import Iterator
from typing import Callable, Optional

import pytest
import snntorch as snn
import snntorch.functional as SF
import snntorch.surrogate as sns
import snntorch.utils
import torch
import torch._dynamo
import torch._dynamo.testing
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import Tensor, nn

import snntorch_clif
from snntorch_clif import CLIF, RCLIF, backends
from snntorch_clif.surrogate import ATan

BACKENDS = ["fused", "reference"]
RESETS = ["subtract", "zero", "none"]
KINDS = ["linear", "conv", "one_to_one"]
T, B, F_, C, HW = 8, 3, 5, 2, 4  # steps, batch, linear features, conv channels, conv height = width


# --- the reference -----------------------------------------------------------------------
def _derivative(z: Tensor, kind: str, param: float) -> Tensor:
    if kind == "rectangle":
        return (z.abs() <= 0.5 * param).to(z.dtype) / param
    if kind == "atan":
        return (0.5 * param) / (1 + (0.5 * math.pi * param * z) ** 2)
    if kind == "fast_sigmoid":
        return 1.0 / (param * z.abs() + 1.0) ** 2
    assert kind == "disabled"
    return torch.zeros_like(z)


class _Spike(torch.autograd.Function):
    """H(z) (fires at z >= 0) forward, the surrogate derivative backward."""

    @staticmethod
    def forward(ctx, z: Tensor, kind: str, param: float) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(z)
        ctx.kind, ctx.param = kind, param
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:  # noqa: ANN001
        (z,) = ctx.saved_tensors
        return grad * _derivative(z, ctx.kind, ctx.param), None, None


def reference(
    x_seq: Tensor, rec: Callable[[Tensor], Tensor], beta: Tensor, threshold: Tensor, reset: str,
    surrogate: tuple[str, float] = ("rectangle", 1.0), graded_spikes_factor: Tensor | float = 1.0,
    spk: Optional[Tensor] = None, comp: Optional[Tensor] = None, mem: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The [T, ...] spikes, comp and mem sequences of the recurrent CLIF (see the module docstring)."""
    zeros = torch.zeros_like(x_seq[0])
    s = zeros if spk is None else spk
    m = zeros if comp is None else comp
    u = zeros if mem is None else mem
    spikes, comps, mems = [], [], []
    for x in x_seq:
        h = beta * u + x + rec(s)
        fired = _Spike.apply(h - threshold, *surrogate)
        m = torch.sigmoid((1 - beta) * h) * m + fired
        if reset == "subtract":
            u = h - fired * (threshold + torch.sigmoid(m))
        elif reset == "zero":
            u = (1 - fired) * h - fired * torch.sigmoid(m)
        else:
            u = h
        s = fired * graded_spikes_factor
        spikes.append(s)
        comps.append(m)
        mems.append(u)
    return torch.stack(spikes), torch.stack(comps), torch.stack(mems)


def recurrent_of(rclif: RCLIF) -> Callable[[Tensor], Tensor]:
    """The layer's recurrent connection, written with torch.nn.functional (odd kernels: symmetric padding)."""
    if not rclif.all_to_all:
        return lambda s: s * rclif.V
    if rclif.linear_features is not None:
        return lambda s: F.linear(s, rclif.recurrent.weight, rclif.recurrent.bias)
    k = rclif.recurrent.weight.shape[-1]
    return lambda s: F.conv2d(s, rclif.recurrent.weight, rclif.recurrent.bias, padding=k // 2)


# --- helpers -----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # These tensors are tiny: a second thread gains nothing, and on a loaded machine two
    # OpenMP threads waiting on each other made the gradchecks 100x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    if name == "fused" and backends.report().devices.get("cpu") != "fused":
        pytest.skip("the fused CPU kernel is not built")
    with backends.use_reference() if name == "reference" else contextlib.nullcontext():
        yield


def neuron_shape(kind: str) -> tuple[int, ...]:
    return (B, C, HW, HW) if kind == "conv" else (B, F_)


def make(kind: str, **kwargs) -> RCLIF:
    torch.manual_seed(1)
    if kind == "linear":
        return RCLIF(linear_features=F_, **kwargs)
    if kind == "conv":
        return RCLIF(conv2d_channels=C, kernel_size=3, **kwargs)
    kwargs.setdefault("V", 0.6 * torch.rand(F_) - 0.3)
    return RCLIF(all_to_all=False, **kwargs)


def currents(kind: str, seed: int = 0, dtype: torch.dtype = torch.float32, steps: int = T) -> Tensor:
    """[T, ...] currents that make neurons fire now and then (not always, not never)."""
    g = torch.Generator().manual_seed(seed)
    return (1.6 * torch.rand(steps, *neuron_shape(kind), generator=g) - 0.2).to(dtype)


def drive(rclif: RCLIF, x: Tensor, mode: str) -> tuple[Tensor, Tensor, Tensor]:
    """Run ``rclif`` over ``x`` ([T, ...]) in a call mode; returns the spikes, comp and mem sequences."""
    if rclif.step_mode == "multi":
        if mode == "explicit":
            return rclif(x, *rclif.reset_mem())
        rclif.reset_mem()
        return rclif(x)
    spk, comp, mem = rclif.reset_mem()
    spikes, comps, mems = [], [], []
    for x_t in x:
        if mode == "explicit":
            spk, comp, mem = rclif(x_t, spk, comp, mem)
        else:
            spk, comp, mem = rclif(x_t)
        spikes.append(spk)
        comps.append(comp)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(comps), torch.stack(mems)


def weighted_loss(outputs: tuple[Tensor, ...]) -> Tensor:
    g = torch.Generator().manual_seed(7)
    return sum((out * torch.rand(out.shape, generator=g, dtype=out.dtype)).sum() for out in outputs)


def assert_fires_sometimes(spikes: Tensor) -> None:
    rate = (spikes != 0).double().mean().item()
    assert 0.05 < rate < 0.95, f"the case should fire now and then, fires at rate {rate}"


# --- against the reference ---------------------------------------------------------------
@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("step_mode", ["single", "multi"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference_with_learnable_values(kind: str, reset: str, step_mode: str, backend_name: str) -> None:
    """Spikes, both state sequences and every gradient (input, beta, threshold, recurrent
    weights or V) through the recurrence, with the rectangle surrogate, in float64."""
    with backend(backend_name):
        rclif = make(kind, beta=0.7, threshold=0.9, learn_beta=True, learn_threshold=True,
                     reset_mechanism=reset, step_mode=step_mode, state_sequences=True).double()
        x = currents(kind, dtype=torch.float64).requires_grad_()
        params = list(rclif.parameters())
        assert len(params) == (3 if kind == "one_to_one" else 4)  # beta, threshold, V / weight and bias
        out = drive(rclif, x, "explicit")
        expected = reference(x, recurrent_of(rclif), rclif.beta, rclif.threshold, reset)
        assert_fires_sometimes(expected[0])
        for got, want, name in zip(out, expected, ("spk", "comp", "mem")):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)
        grads = torch.autograd.grad(weighted_loss(out), [x, *params])
        expected_grads = torch.autograd.grad(weighted_loss(expected), [x, *params])
        assert any(g.abs().sum() > 0 for g in grads[1:])
        for got, want in zip(grads, expected_grads):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize(
    "spike_grad, surrogate",
    [(None, ("rectangle", 1.0)), (sns.atan(alpha=3.0), ("atan", 3.0)), (sns.fast_sigmoid(slope=10.0), ("fast_sigmoid", 10.0))],
    ids=["rectangle", "snntorch_atan", "snntorch_fast_sigmoid"],
)
def test_surrogates_and_graded_spikes_match_reference(spike_grad, surrogate, backend_name: str) -> None:
    with backend(backend_name):
        rclif = make("linear", spike_grad=spike_grad, graded_spikes_factor=0.8, state_sequences=True,
                     step_mode="multi").double()
        x = currents("linear", dtype=torch.float64).requires_grad_()
        out = rclif(x)
        expected = reference(x, recurrent_of(rclif), rclif.beta, rclif.threshold, "subtract", surrogate,
                             rclif.graded_spikes_factor)
        for got, want in zip(out, expected):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        leaves = [x, *rclif.parameters()]
        for got, want in zip(torch.autograd.grad(weighted_loss(out), leaves),
                             torch.autograd.grad(weighted_loss(expected), leaves)):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.cpu_kernel_only  # float64
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_through_the_recurrence(kind: str, reset: str) -> None:
    """Finite differences of every input: currents, the three initial states, beta, threshold,
    the recurrent weights or V. The spike is a step (finite difference 0): with the surrogate
    disabled, gradcheck checks every other path exactly, the feedback W s_{t-1} included."""
    rclif = make(kind, beta=0.6, threshold=0.9, learn_beta=True, learn_threshold=True, surrogate_disable=True,
                 reset_mechanism=reset, step_mode="multi", state_sequences=True).double()
    names = [name for name, _ in rclif.named_parameters()]
    x = currents(kind, dtype=torch.float64, steps=5)
    x = x[:, :1] if kind == "conv" else x  # one sample of [2, 4, 4] neurons
    g = torch.Generator().manual_seed(3)
    spk0 = (torch.rand(x.shape[1:], generator=g, dtype=torch.float64) > 0.5).double()
    comp0 = torch.rand(x.shape[1:], generator=g, dtype=torch.float64)
    mem0 = torch.rand(x.shape[1:], generator=g, dtype=torch.float64)

    def f(x, spk0, comp0, mem0, *values):  # noqa: ANN001, ANN202
        return torch.func.functional_call(rclif, dict(zip(names, values)), (x, spk0, comp0, mem0))

    inputs = tuple(t.detach().clone().requires_grad_() for t in (x, spk0, comp0, mem0, *rclif.parameters()))
    with torch.no_grad():
        assert_fires_sometimes(f(*inputs)[0])
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


# --- call modes ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_single_step_loop_equals_multi_step_call_exactly(kind: str) -> None:
    """Bits of spikes, states and gradients: a loop of single steps, one multi-step call,
    and a multi-step call in two chunks (the second starting from the first's spk[-1])."""
    x = currents(kind)
    runs = []
    for how in ("single", "multi", "chunks"):
        rclif = make(kind, learn_beta=True, step_mode="single" if how == "single" else "multi", state_sequences=True)
        xr = x.clone().requires_grad_()
        if how == "chunks":
            spk_a, comp_a, mem_a = rclif(xr[:3], *rclif.reset_mem())
            spk_b, comp_b, mem_b = rclif(xr[3:], spk_a[-1], comp_a[-1], mem_a[-1])
            out = (torch.cat([spk_a, spk_b]), torch.cat([comp_a, comp_b]), torch.cat([mem_a, mem_b]))
        else:
            out = drive(rclif, xr, "explicit")
        grads = torch.autograd.grad(weighted_loss(out), [xr, *rclif.parameters()])
        runs.append((out, grads))
    for out, grads in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(out, runs[0][0]))
        assert all(torch.equal(a, b) for a, b in zip(grads, runs[0][1]))


@pytest.mark.parametrize("step_mode", ["single", "multi"])
@pytest.mark.parametrize("kind", KINDS)
def test_explicit_implicit_and_init_hidden_agree(kind: str, step_mode: str) -> None:
    x = currents(kind)
    explicit = drive(make(kind, step_mode=step_mode, state_sequences=True), x, "explicit")
    implicit = drive(make(kind, step_mode=step_mode, state_sequences=True), x, "implicit")
    hidden = drive(make(kind, step_mode=step_mode, state_sequences=True, init_hidden=True, output=True), x, "implicit")
    assert_fires_sometimes(explicit[0])
    for a, b, c in zip(explicit, implicit, hidden):
        assert torch.equal(a, b) and torch.equal(a, c)
    only_spikes = make(kind, step_mode=step_mode, init_hidden=True)
    got = only_spikes(x) if step_mode == "multi" else torch.stack([only_spikes(x_t) for x_t in x])
    assert isinstance(got, Tensor) and torch.equal(got, explicit[0])
    assert torch.equal(only_spikes.spk, explicit[0][-1])  # the kept spike is the last one


def test_multi_step_returns_final_states_and_continues_from_kept_ones() -> None:
    x = currents("linear")
    whole = make("linear", step_mode="multi", state_sequences=True)(x)
    rclif = make("linear", step_mode="multi")
    spk_a, comp_a, mem_a = rclif(x[:5])
    assert torch.equal(comp_a, whole[1][4]) and torch.equal(mem_a, whole[2][4])
    spk_b, comp_b, mem_b = rclif(x[5:])  # implicit: carries all three states on
    assert torch.equal(torch.cat([spk_a, spk_b]), whole[0])
    assert torch.equal(mem_b, whole[2][-1]) and torch.equal(rclif.spk, whole[0][-1])
    empty = rclif(x[:0])  # T = 0: nothing runs, nothing changes
    assert empty[0].shape == (0, B, F_) and torch.equal(rclif.mem, whole[2][-1])


def test_the_first_step_adds_the_recurrent_bias_as_rleaky_does() -> None:
    rclif = make("linear", reset_mechanism="none")
    x = torch.zeros(B, F_)
    _, _, mem = rclif(x)
    assert torch.equal(mem, rclif.recurrent.bias.detach().expand(B, F_))  # h_0 = x_0 + W 0 + b


@pytest.mark.parametrize("kind", KINDS)
def test_reset_delay_is_clifs(kind: str) -> None:
    """With reset_delay=True RCLIF is a CLIF(reset_delay=True) driven by x_t + W(s_{t-1})."""
    x = currents(kind)
    rclif = make(kind, reset_delay=True, learn_recurrent=False)
    clif = CLIF(reset_delay=True)
    rec = recurrent_of(rclif)
    spk, comp, mem = rclif.reset_mem()
    s = torch.zeros(neuron_shape(kind))
    for x_t in x:
        spk, comp, mem = rclif(x_t, spk, comp, mem)
        s, c, h = clif(x_t + rec(s))
        assert torch.equal(spk, s) and torch.equal(comp, c) and torch.equal(mem, h)


def test_batch_size_change_starts_all_three_states_over() -> None:
    rclif = make("linear")
    for x_t in currents("linear")[:3]:
        rclif(x_t)
    small = 1.3 * torch.rand(2, F_)
    assert all(torch.equal(a, b) for a, b in zip(rclif(small), make("linear")(small)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_outputs_keep_the_input_dtype(dtype: torch.dtype) -> None:
    rclif = make("one_to_one")  # float32 V with a lower- or higher-precision input
    spk, comp, mem = rclif(currents("one_to_one", dtype=dtype)[0])
    assert spk.dtype == comp.dtype == mem.dtype == dtype


def test_autocast_with_a_recurrent_linear() -> None:
    net = nn.Sequential(nn.Linear(4, F_), make("linear", init_hidden=True, step_mode="multi"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spikes = net(torch.rand(T, B, 4))
    assert spikes.dtype == torch.bfloat16 and spikes.shape == (T, B, F_)
    spikes.float().sum().backward()
    assert net[1].recurrent.weight.grad.dtype == torch.float32


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")  # PyTorch's, about speed
def test_even_conv_kernel_keeps_the_shape() -> None:
    rclif = RCLIF(conv2d_channels=C, kernel_size=(2, 4), step_mode="multi")
    assert rclif(currents("conv"))[0].shape == (T, *neuron_shape("conv"))


def test_unbatched_conv_input_as_in_snntorchs_tutorial() -> None:
    rclif = RCLIF(beta=0.9, conv2d_channels=3, kernel_size=(5, 5))
    spk, comp, mem = rclif.init_rleaky()
    for _ in range(3):
        spk, comp, mem = rclif(torch.rand(3, 8, 8), spk, comp, mem)
    assert spk.shape == (3, 8, 8)


# --- parameters ----------------------------------------------------------------------------
def test_learn_recurrent_and_the_one_to_one_weight() -> None:
    fixed = RCLIF(linear_features=3, learn_recurrent=False)
    assert not any(p.requires_grad for p in fixed.recurrent.parameters())
    fixed_v = RCLIF(all_to_all=False, V=0.5, learn_recurrent=False)
    assert "V" in dict(fixed_v.named_buffers()) and not list(fixed_v.parameters())
    learned = RCLIF(all_to_all=False, V=torch.tensor([0.5, -0.2]))
    assert [name for name, _ in learned.named_parameters()] == ["V"]
    assert learned.recurrent.V is learned.V  # one parameter under RLeaky's two keys
    learned.double()
    assert learned.recurrent.V is learned.V and learned.V.dtype == torch.float64


def test_assigned_fixed_V_is_the_one_used() -> None:
    """snnTorch's tutorial sets ``rlif.V = torch.rand(1)`` after construction."""
    rclif = RCLIF(all_to_all=False, learn_recurrent=False, reset_mechanism="none")
    rclif.V = torch.tensor([0.25])
    _, _, mem = rclif(torch.ones(1), torch.ones(1), torch.zeros(1), torch.zeros(1))
    assert torch.equal(mem, torch.tensor([1.25]))


# --- resetting and detaching -------------------------------------------------------------
def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, F_), make("linear", init_hidden=True), nn.Linear(F_, F_),
                         make("one_to_one", init_hidden=True))


def _states(net: nn.Module) -> list[Tensor]:
    return [s for m in net.modules() if isinstance(m, RCLIF) for s in (m.spk, m.comp, m.mem)]


def _driven(net: nn.Module) -> nn.Module:
    x = 3 * torch.rand(B, 4, requires_grad=True)
    for _ in range(3):
        net(x)
    assert all(s.requires_grad for s in _states(net)) and any(s.abs().sum() > 0 for s in _states(net))
    return net


@pytest.mark.parametrize("how", ["snntorch_clif.reset", "snntorch.utils.reset", "reset_mem", "CLIF.reset_hidden",
                                 "snn.Leaky.reset_hidden"])
def test_resets_clear_all_three_states(how: str) -> None:
    net, other = _driven(_net()), _driven(_net())
    if how == "snntorch_clif.reset":
        snntorch_clif.reset(net)
    elif how == "snntorch.utils.reset":
        snntorch.utils.reset(net)
    elif how == "reset_mem":  # newer snnTorch's protocol: each neuron's reset_mem()
        for module in net.modules():
            if isinstance(module, snn.SpikingNeuron):
                module.reset_mem()
    elif how == "CLIF.reset_hidden":
        CLIF.reset_hidden()
    else:
        snn.Leaky.reset_hidden()
    assert all(s.abs().sum() == 0 and not s.requires_grad for s in _states(net))
    if how == "snntorch_clif.reset":
        assert any(s.abs().sum() > 0 for s in _states(other))  # only this network's
    # and the next step starts from zeros, as a fresh network does
    x = torch.rand(B, 4)
    assert torch.equal(net(x), _net()(x))


@pytest.mark.parametrize("how", ["snntorch_clif.detach", "CLIF.detach_hidden", "snn.Leaky.detach_hidden"])
def test_detaching_detaches_the_recurrent_spike_too(how: str) -> None:
    net, other = _driven(_net()), _driven(_net())
    x = torch.rand(B, 4, requires_grad=True)
    net(x).sum().backward()  # frees the graph that the kept states hang on
    values = [s.detach().clone() for s in _states(net)]
    if how == "snntorch_clif.detach":
        snntorch_clif.detach(net)
        assert all(s.requires_grad for s in _states(other))
    elif how == "CLIF.detach_hidden":
        CLIF.detach_hidden()
    else:
        snn.Leaky.detach_hidden()  # mem.detach_() in place: comp and spk follow
    assert not any(s.requires_grad for s in _states(net))
    assert all(torch.equal(a, b) for a, b in zip(_states(net), values))  # detached, not reset
    net(x).sum().backward()  # truncated BPTT: a state still on the freed graph would raise here


def test_assigning_mem_zeroes_spk_and_comp() -> None:
    rclif = _driven(_net())[1]
    rclif.mem = torch.full((B, F_), 0.3)
    assert torch.equal(rclif.spk, torch.zeros(B, F_)) and torch.equal(rclif.comp, torch.zeros(B, F_))


# --- copying, checkpoints, data parallel ---------------------------------------------------
def test_deepcopy_pickle_and_replicas_mid_sequence_keep_states_of_their_own() -> None:
    net = _driven(_net())
    rclif = net[1]
    x = 3 * torch.rand(B, 4)
    states = [s.detach().clone() for s in (rclif.spk, rclif.comp, rclif.mem)]
    for twin in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert all(torch.equal(a, b) for a, b in zip((twin[1].spk, twin[1].comp, twin[1].mem), states))
        assert torch.equal(twin(x), copy.deepcopy(net)(x))  # continues where the original is
    replica = rclif._replicate_for_data_parallel()
    replica(torch.full((B, F_), 5.0))
    assert not torch.equal(replica.spk, states[0]) or not torch.equal(replica.mem, states[2])
    assert all(torch.equal(a, b) for a, b in zip((rclif.spk, rclif.comp, rclif.mem), states))


def test_whole_model_save_load_and_state_dict_round_trip() -> None:
    net = _driven(_net())
    for module in net.modules():
        if isinstance(module, RCLIF):
            module.reset_mem()
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    twin = _net()
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
    twin.load_state_dict(net.state_dict())
    assert not any(k.endswith(("spk", "comp", "mem")) for k in net.state_dict())  # states are not saved
    x = 2 * torch.rand(T, B, 4)
    runs = []
    for model in (net, loaded, twin):
        snntorch_clif.reset(model)
        runs.append(torch.stack([model(x_t) for x_t in x]))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


# --- snn.RLeaky: state_dict and from_rleaky -------------------------------------------------
RLEAKY_CASES = {
    "linear": dict(linear_features=F_),
    "conv": dict(conv2d_channels=C, kernel_size=3),
    "one_to_one": dict(all_to_all=False, V=torch.tensor([0.3, -0.1, 0.2, 0.5, 0.0])),
    "one_to_one_fixed": dict(all_to_all=False, V=0.4, learn_recurrent=False),
    "learnable_values": dict(linear_features=F_, learn_beta=True, learn_threshold=True, learn_recurrent=False),
}


@pytest.mark.parametrize("case", list(RLEAKY_CASES))
def test_rleaky_state_dict_loads_into_rclif_built_with_the_same_arguments(case: str) -> None:
    kwargs = RLEAKY_CASES[case]
    rleaky = snn.RLeaky(beta=0.8, threshold=1.2, **kwargs)
    with torch.no_grad():  # "trained": every value differs from a fresh layer's
        for value in rleaky.state_dict().values():
            if value.is_floating_point():
                value.add_(0.125)
    rclif = RCLIF(beta=0.8, threshold=1.2, **kwargs)
    assert set(rclif.state_dict()) == set(rleaky.state_dict())
    rclif.load_state_dict(rleaky.state_dict())  # strict
    for key, value in rleaky.state_dict().items():
        assert torch.equal(rclif.state_dict()[key], value), key
    assert {n for n, _ in rclif.named_parameters()} == {n for n, _ in rleaky.named_parameters()}
    rleaky.load_state_dict(rclif.state_dict())  # and back


@pytest.mark.parametrize("case", list(RLEAKY_CASES))
def test_from_rleaky_copies_settings_and_values(case: str) -> None:
    rleaky = snn.RLeaky(beta=0.8, threshold=1.2, reset_mechanism="zero", spike_grad=sns.atan(alpha=3.0),
                        **RLEAKY_CASES[case])
    with torch.no_grad():
        for value in rleaky.state_dict().values():
            if value.is_floating_point():
                value.add_(0.125)
    rclif = RCLIF.from_rleaky(rleaky)
    assert rclif.spike_grad == ATan(3.0) and rclif.reset_mechanism == "zero" and rclif.reset_delay is True
    for key, value in rleaky.state_dict().items():
        assert torch.equal(rclif.state_dict()[key], value), key
    assert {n: p.requires_grad for n, p in rclif.named_parameters()} == {
        n: p.requires_grad for n, p in rleaky.named_parameters()}
    x = currents("conv" if case == "conv" else "linear")
    ours = RCLIF(beta=rleaky.beta.clone(), threshold=rleaky.threshold.clone(), reset_mechanism="zero",
                 spike_grad=sns.atan(alpha=3.0), reset_delay=True,
                 **{k: (rclif.V.detach() if k == "V" else v) for k, v in RLEAKY_CASES[case].items()})
    ours.load_state_dict(rclif.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(drive(rclif, x, "explicit"), drive(ours, x, "explicit")))


def test_from_rleaky_overrides_and_bad_input() -> None:
    rleaky = snn.RLeaky(beta=0.9, linear_features=4, surrogate_disable=True, init_hidden=True, output=True)
    rclif = RCLIF.from_rleaky(rleaky, reset_delay=False, step_mode="multi")
    assert rclif.surrogate_disable and rclif.init_hidden and rclif.output and rclif.step_mode == "multi"
    assert rclif.reset_delay is False and rclif.beta.item() == pytest.approx(0.9)
    with pytest.raises(TypeError, match="unknown RCLIF arguments.*'bogus'"):
        RCLIF.from_rleaky(rleaky, bogus=1)
    with pytest.raises(TypeError, match="layer must be an snntorch.RLeaky"):
        RCLIF.from_rleaky(snn.Leaky(beta=0.9))


# --- torch.compile ---------------------------------------------------------------------------
@pytest.mark.parametrize("step_mode", ["single", "multi"])
def test_compile_fullgraph_matches_eager(step_mode: str) -> None:
    if backends.report().devices.get("cpu") != "fused":
        pytest.skip("the fused CPU kernel is not built")
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, F_), make("linear", init_hidden=True, learn_beta=True, step_mode=step_mode),
                        nn.Linear(F_, F_), make("one_to_one", init_hidden=True, learn_threshold=True, threshold=0.5,
                                                step_mode=step_mode))

    def fn(net: nn.Module, x: Tensor) -> Tensor:
        return torch.stack([net(x_t) for x_t in x]) if step_mode == "single" else net(x)

    def run(f: Callable, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        snntorch_clif.reset(net)
        net.zero_grad()
        out = f(net, x)
        weighted_loss((out,)).backward()
        return out.detach(), [p.grad.clone() for p in net.parameters()]

    counter = torch._dynamo.testing.CompileCounterWithBackend("inductor")
    compiled = torch.compile(fn, fullgraph=True, backend=counter)  # a graph break raises
    x = 3 * torch.rand(4, B, 6)
    eager_out, eager_grads = run(fn, x)
    assert_fires_sometimes(eager_out)
    comp_out, comp_grads = run(compiled, x)
    torch.testing.assert_close(comp_out, eager_out, rtol=0, atol=0)
    for a, b in zip(comp_grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    frames = counter.frame_count
    run(compiled, x)
    assert counter.frame_count == frames  # reset states do not recompile


def test_no_graph_break_as_snntorchs_rleaky_test_checks() -> None:
    """snnTorch's test_rleaky_compile_fullgraph, on RCLIF."""
    torch._dynamo.reset()
    rclif = RCLIF(beta=0.5, V=0.5, all_to_all=False, surrogate_disable=True)
    explanation = torch._dynamo.explain(rclif)(torch.tensor([0.25]))
    assert explanation.graph_break_count == 0


# --- hostile input ---------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(), TypeError, "needs linear_features .* or conv2d_channels and kernel_size"),
    (dict(linear_features=4, conv2d_channels=2, kernel_size=3), TypeError, "linear_features .* not both"),
    (dict(linear_features=4, kernel_size=3), TypeError, "not both"),
    (dict(conv2d_channels=2), TypeError, "needs kernel_size"),
    (dict(kernel_size=3), TypeError, "needs conv2d_channels"),
    (dict(all_to_all=False, linear_features=4), TypeError, "all_to_all=False.*linear_features must not be given"),
    (dict(all_to_all=False, kernel_size=3, conv2d_channels=2), TypeError, "conv2d_channels, kernel_size must not"),
    (dict(linear_features=0), ValueError, "linear_features must be a positive int"),
    (dict(linear_features=2.5), ValueError, "linear_features must be a positive int"),
    (dict(conv2d_channels=2, kernel_size=(3,)), ValueError, "kernel_size must be an int or a pair"),
    (dict(conv2d_channels=2, kernel_size=0), ValueError, "kernel_size must be a positive int"),
    (dict(conv2d_channels=-1, kernel_size=3), ValueError, "conv2d_channels must be a positive int"),
    (dict(all_to_all=False, V="0.5"), TypeError, "V must be a float or a tensor"),
    (dict(all_to_all="yes", linear_features=4), TypeError, "all_to_all must be True or False"),
    (dict(linear_features=4, learn_recurrent=None), TypeError, "learn_recurrent must be True or False"),
    (dict(linear_features=4, reset_mechanism="hard"), ValueError, "reset_mechanism must be one of"),
    (dict(linear_features=4, step_mode="multistep"), ValueError, "step_mode must be one of"),
])
def test_bad_constructor_arguments_name_the_argument(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        RCLIF(**kwargs)


@pytest.mark.parametrize("build, call, error, match", [
    (dict(linear_features=4), lambda r: r(torch.rand(2, 5)), ValueError, r"linear_features=4 must equal the input's last"),
    (dict(linear_features=4), lambda r: r(torch.tensor(1.0)), ValueError, "linear_features=4"),
    (dict(linear_features=4, step_mode="multi"), lambda r: r(torch.rand(3, 2, 5)), ValueError, "linear_features=4"),
    (dict(conv2d_channels=2, kernel_size=3), lambda r: r(torch.rand(1, 3, 4, 4)), ValueError,
     r"conv2d_channels=2 must equal the input's channel dimension"),
    (dict(conv2d_channels=2, kernel_size=3), lambda r: r(torch.rand(2, 8)), ValueError, "conv2d_channels=2"),
    (dict(all_to_all=False, V=torch.rand(3)), lambda r: r(torch.rand(2, 4)), ValueError,
     r"V of shape \(3,\) does not broadcast to the neurons' shape \(2, 4\)"),
    (dict(linear_features=4), lambda r: r(torch.ones(2, 4, dtype=torch.long)), TypeError, "input_ must be float"),
    (dict(linear_features=4), lambda r: r([1.0, 2.0, 3.0, 4.0]), TypeError, "input_ must be a torch.Tensor"),
    (dict(linear_features=4, step_mode="multi"), lambda r: r(torch.tensor(1.0)), ValueError, "time-major"),
    (dict(linear_features=4), lambda r: r(torch.rand(2, 4), torch.zeros(2, 4), torch.zeros(2, 4)), TypeError,
     r"all three states or none; mem missing \(snn.RLeaky's `spk, mem = lif\(x, spk, mem\)`\?\)"),
    (dict(linear_features=4), lambda r: r(torch.rand(2, 4), r.reset_mem()), TypeError,
     r"spk got a tuple.*spk, comp, mem = rclif.reset_mem\(\)"),
    (dict(linear_features=4), lambda r: r(torch.rand(2, 4), torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(2, 4)),
     ValueError, r"spk must have shape \(2, 4\)"),
    (dict(linear_features=4, step_mode="multi"),
     lambda r: r(torch.rand(3, 2, 4), torch.zeros(3, 2, 4), torch.zeros(2, 4), torch.zeros(2, 4)),
     ValueError, r"pass the last spike, spk\[-1\]"),
    (dict(linear_features=4), lambda r: r(torch.rand(2, 4), torch.zeros(2, 4, dtype=torch.float64),
                                          torch.zeros(2, 4), torch.zeros(2, 4)), TypeError, "spk must have the input's dtype"),
    (dict(linear_features=4), lambda r: r(torch.rand(2, 4), torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(2, 4)),
     ValueError, "comp must have shape"),
    (dict(linear_features=4, init_hidden=True), lambda r: r(torch.rand(2, 4), *r.reset_mem()), TypeError,
     "should not be passed as arguments while `init_hidden=True`"),
])
def test_bad_forward_input_gets_a_clear_error(build: dict, call: Callable, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        call(RCLIF(**build))


def test_spk_assignment_must_be_a_tensor() -> None:
    with pytest.raises(TypeError, match="spk must be a torch.Tensor"):
        RCLIF(linear_features=2).spk = 1.0


# --- snnTorch's own RLeaky usage, swapped ---------------------------------------------------
@pytest.mark.parametrize("cls", [snn.RLeaky, RCLIF])
def test_snntorchs_rleaky_tests_hold_with_rclif(cls: type) -> None:
    """snnTorch's tests/test_snntorch/test_rleaky.py, on both neurons (RLeaky's two states
    become RCLIF's three)."""
    input_ = torch.Tensor([0.25, 0]).unsqueeze(-1)
    lif = cls(beta=0.5, V=0.5, all_to_all=False)
    states = lif.init_rleaky()
    mem_rec, spk_rec = [], []
    for i in range(2):
        states = lif(input_[i], *states)
        spk_rec.append(states[0])
        mem_rec.append(states[-1])
    assert mem_rec[1] == mem_rec[0] * 0.5 + input_[1] + spk_rec[0]
    assert spk_rec[0] == spk_rec[1]
    for reset, value in (("subtract", 0), ("zero", 1), ("none", 2)):
        other = cls(beta=0.5, V=0.5, all_to_all=False, reset_mechanism=reset)
        assert other.reset_mechanism_val == value
        other.reset_mechanism = RESETS[(value + 1) % 3]
        assert other.reset_mechanism_val == (value + 1) % 3
    hidden = cls(beta=0.5, V=0.5, all_to_all=False, init_hidden=True)
    assert hidden(input_[0]) == hidden(input_[1])
    with pytest.raises(TypeError):
        hidden(input_, input_, input_)


class TutorialNet(nn.Module):
    """snnTorch's regression tutorial 2 network (``Net``), word for word but for the neuron
    class and, for RCLIF, its third state (``comp``)."""

    def __init__(self, neuron: type, timesteps: int, inputs: int, hidden: int, beta: float) -> None:
        super().__init__()
        self.timesteps, self.clif = timesteps, neuron is RCLIF
        self.fc1 = torch.nn.Linear(in_features=inputs, out_features=hidden)
        self.rlif1 = neuron(beta=beta, linear_features=hidden)
        self.fc2 = torch.nn.Linear(in_features=hidden, out_features=10)
        self.rlif2 = neuron(beta=beta, linear_features=10)

    def forward(self, x: Tensor) -> Tensor:
        if self.clif:
            spk1, comp1, mem1 = self.rlif1.init_rleaky()
            spk2, comp2, mem2 = self.rlif2.init_rleaky()
        else:
            spk1, mem1 = self.rlif1.init_rleaky()
            spk2, mem2 = self.rlif2.init_rleaky()
        spk_recording = []
        for _ in range(self.timesteps):
            if self.clif:
                spk1, comp1, mem1 = self.rlif1(self.fc1(x), spk1, comp1, mem1)
                spk2, comp2, mem2 = self.rlif2(self.fc2(spk1), spk2, comp2, mem2)
            else:
                spk1, mem1 = self.rlif1(self.fc1(x), spk1, mem1)
                spk2, mem2 = self.rlif2(self.fc2(spk1), spk2, mem2)
            spk_recording.append(spk2)
        return torch.stack(spk_recording)


def generated_task(seed: int, n: int = 512, features: int = 32) -> tuple[Tensor, Tensor]:
    """Ten noisy class prototypes in [0, 1]^features: a small generated classification task."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(10, features, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return (prototypes[labels] + 0.25 * torch.randn(n, features, generator=g)).clamp(0, 1), labels


def train_tutorial_net(neuron: type, seed: int, epochs: int = 3) -> list[float]:
    """The tutorial's training loop (Adam, mse_count_loss); returns the loss of every batch."""
    x, y = generated_task(seed)
    torch.manual_seed(seed)
    model = TutorialNet(neuron, timesteps=10, inputs=x.shape[1], hidden=32, beta=0.9)
    loss_function = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    optimizer = torch.optim.Adam(params=model.parameters(), lr=5e-3)
    losses = []
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=torch.Generator().manual_seed(seed)).split(64):
            spk = model(x[batch])
            loss_val = loss_function(spk, y[batch])
            optimizer.zero_grad()
            loss_val.backward()
            optimizer.step()
            losses.append(loss_val.item())
    return losses


@pytest.mark.parametrize("neuron", [snn.RLeaky, RCLIF])
def test_snntorch_tutorial_network_trains_with_either_neuron(neuron: type) -> None:
    losses = train_tutorial_net(neuron, seed=0)
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.75 * first, (first, last)


# --- DistributedDataParallel ---------------------------------------------------------------
def ddp_net(mode: str) -> nn.Module:
    torch.manual_seed(0)
    if mode == "init_hidden":
        return nn.Sequential(nn.Linear(6, 12), RCLIF(linear_features=12, init_hidden=True, learn_beta=True),
                             nn.Linear(12, 3), RCLIF(all_to_all=False, V=0.5, init_hidden=True, output=True))

    class Explicit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(6, 12), nn.Linear(12, 3)
            self.lif1 = RCLIF(linear_features=12, learn_threshold=True)
            self.lif2 = RCLIF(all_to_all=False, V=torch.full((3,), 0.5))

        def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            spk1, comp1, mem1 = self.lif1.reset_mem()
            spk2, comp2, mem2 = self.lif2.reset_mem()
            mems = []
            for x_t in x:
                spk1, comp1, mem1 = self.lif1(self.fc1(x_t), spk1, comp1, mem1)
                spk2, comp2, mem2 = self.lif2(self.fc2(spk1), spk2, comp2, mem2)
                mems.append(mem2)
            return spk2, comp2, torch.stack(mems)

    return Explicit()


def ddp_train(net: nn.Module, mode: str, rank: int, world: int) -> None:
    g = torch.Generator().manual_seed(1)
    xs, ys = 2 * torch.rand(3, 4, 8, 6, generator=g), torch.randint(0, 3, (3, 8), generator=g)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    part = slice(rank * 8 // world, (rank + 1) * 8 // world)
    for x, y in zip(xs, ys):
        x, y = x[:, part], y[part]
        if mode == "init_hidden":
            snntorch_clif.reset(net)
            mems = torch.stack([net(x_t)[2] for x_t in x])
        else:
            mems = net(x)[2]
        loss = nn.functional.cross_entropy(mems.mean(0), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def ddp_worker(rank: int, world: int, port: int, mode: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ddp = nn.parallel.DistributedDataParallel(ddp_net(mode))
        ddp_train(ddp, mode, rank, world)
        torch.save({k: v.detach().clone() for k, v in ddp.module.state_dict().items()}, f"{out}.{rank}")
        del ddp  # DDP's reducer holds the group (see tests/test_ddp.py for the teardown)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    gc.collect()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["init_hidden", "explicit"])
def test_ddp_two_ranks_match_one_process(mode: str, tmp_path) -> None:
    """Each rank keeps the states of its own part of the batch (spk, comp and mem are not
    buffers, so broadcast_buffers never overwrites them with rank 0's)."""
    assert not {"spk", "comp", "mem"} & {n.rsplit(".", 1)[-1] for n, _ in ddp_net(mode).named_buffers()}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "state")
    mp.spawn(ddp_worker, args=(2, port, mode, out), nprocs=2, join=True)
    rank0, rank1 = (torch.load(f"{out}.{r}", weights_only=True) for r in (0, 1))
    single = ddp_net(mode)
    ddp_train(single, mode, 0, 1)
    reference_state, initial = single.state_dict(), ddp_net(mode).state_dict()
    assert any(not torch.equal(reference_state[k], initial[k]) for k in reference_state)
    for key, value in reference_state.items():
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)
        torch.testing.assert_close(rank0[key], value, rtol=0, atol=1e-6)


# --- CUDA -------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_cpu(kind: str) -> None:
    """The module moved to the GPU (its V buffer or recurrent layer with it) steps like on the CPU."""
    cpu = make(kind, learn_beta=True, step_mode="multi", state_sequences=True)
    gpu = copy.deepcopy(cpu).cuda()
    x = currents(kind)
    xc, xg = x.clone().requires_grad_(), x.cuda().requires_grad_()
    out_c, out_g = cpu(xc), gpu(xg)
    for a, b in zip(out_c, out_g):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-5)
    grads_c = torch.autograd.grad(weighted_loss(out_c), [xc, *cpu.parameters()])
    grads_g = torch.autograd.grad(weighted_loss(tuple(o.cpu() for o in out_g)), [xg, *gpu.parameters()])
    for a, b in zip(grads_c, grads_g):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5)


def test_docstring_examples_run() -> None:
    import doctest

    import snntorch_clif.recurrent as recurrent

    result = doctest.testmod(recurrent, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0
