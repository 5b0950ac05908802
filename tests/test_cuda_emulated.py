"""The CUDA kernel source (csrc/cuda/clif_cuda.cu) executed on the CPU, against the CPU kernel.

tests/cuda_emulator.py compiles the .cu with the host compiler against tests/cuda_shim/ and
runs every block and thread of each launch. Both kernels share csrc/clif_math.h and neither
contracts multiply-adds, so every output must agree bit for bit; what differs between them is
indexing, layout, launch configuration and the handling of optional arguments, which is what
these tests exist to catch. Emulated outputs start as NaN: an element never written shows.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import cuda_emulator
import pytest
import torch

from snntorch_clif import ops

pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason=f"fused kernels not built: {ops.LOAD_ERROR}")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
RESETS = {"subtract": 0, "zero": 1, "none": 2}
TS = [0, 1, 2, 7, 17, 64]  # 17 and 64: the backward's checkpoint chunks of 16 steps
NS = [0, 1, 255, 256, 257, 1000]  # around the CUDA kernel's 256-thread blocks
SURROGATES = [(0, 1.0), (1, 2.0), (2, 25.0), (3, 5.0), (4, 1.0), (5, 1.0), (6, 1.0)]  # (id, parameter)
BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


@pytest.fixture(scope="module", autouse=True)
def _emulator() -> None:
    cuda_emulator.load()


def same_bits(got: torch.Tensor, want: torch.Tensor) -> bool:
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    return torch.equal(got.view(BITS[got.dtype]), want.view(BITS[want.dtype]))


OPTIONS = {  # drawn per case; test_sweep_covers_every_pair_of_options checks the coverage
    "per_neuron": 8,  # bit k: beta, threshold, gsf per-neuron ([N]) or one value ([1])
    "grad_comp": 3,  # absent, [N] (final state), [T, N] (sequence)
    "grad_mem": 3,
    "pass_mem0": 2,  # the backward's mem0 is optional (u_{-1} = 0 without it)
    "pass_states": 2,  # the forward's comp0 / mem0 are optional (zeros without them)
    "param_grads": 2,
    "return_sequences": 2,
    "reset_delay": 2,  # mem is h, mem0's reset pending (the backward then gets mem0 exactly when the forward did)
}


def case_options(i: int) -> dict[str, int]:
    g = torch.Generator().manual_seed(i)
    return {name: int(torch.randint(count, (), generator=g)) for name, count in OPTIONS.items()}


def make_case(i: int, T: int, N: int, dtype: torch.dtype) -> dict:
    """Case ``i`` of a sweep: data, and which parameters are per-neuron, which gradients come in."""
    o = case_options(i)
    g = torch.Generator().manual_seed(1000 + i)

    def rand(*size: int, lo: float = 0.0, hi: float = 1.0, dt: torch.dtype = dtype) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(size, generator=g)).to(dt)

    def count(k: int) -> int:
        return N if (o["per_neuron"] >> k) & 1 else 1

    x = (torch.randn(T, N, generator=g) * 1.5 + 0.4).to(dtype)
    params = [
        rand(count(0), lo=0.1, hi=0.95, dt=torch.float32),
        rand(count(1), lo=0.5, hi=1.5, dt=torch.float32),
        rand(count(2), lo=0.5, hi=1.5, dt=torch.float32),
    ]

    def grad(kind: int) -> torch.Tensor | None:
        shape = [None, (N,), (T, N)][kind]
        return None if shape is None else torch.randn(shape, generator=g).to(dtype)

    return {
        "x": x, "comp0": rand(N, hi=2.0), "mem0": rand(N, lo=-1.0, hi=1.0), "params": params,
        "return_sequences": bool(o["return_sequences"]),
        "grad_spk": torch.randn(T, N, generator=g).to(dtype),
        "grad_comp": grad(o["grad_comp"]), "grad_mem": grad(o["grad_mem"]),
        "pass_mem0": bool(o["pass_mem0"]), "param_grads": bool(o["param_grads"]),
        "pass_states": bool(o["pass_states"]), "reset_delay": bool(o["reset_delay"]),
    }


def run_ops(namespace: str, case: dict, reset: int, surrogate: tuple[int, float]) -> list[torch.Tensor]:
    """Forward with save, then backward, through ``torch.ops.<namespace>``; every output."""
    lib = getattr(torch.ops, namespace)
    kind, param = surrogate
    comp0, mem0 = (case["comp0"], case["mem0"]) if case["pass_states"] else (None, None)
    delay = case.get("reset_delay", False)
    spk, comp, mem, saved = lib.clif_forward(
        case["x"], comp0, mem0, *case["params"], reset, kind, param, case["return_sequences"], True, False, delay
    )
    # the backward's mem0: with reset_delay the forward's (h_{-1}, whose reset it differentiates),
    # else optional (only dL/dbeta reads it)
    bwd_mem0 = mem0 if delay else (case["mem0"] if case["pass_mem0"] else None)
    grads = lib.clif_backward(
        case["grad_spk"], case["grad_comp"], case["grad_mem"], saved, bwd_mem0, *case["params"], reset, kind, param,
        case["param_grads"], delay,
    )
    # `saved` has one layout on both devices (clif_checks.h: h_t, then m every 16 steps)
    return [spk, comp, mem, saved, *grads]


NAMES = ["spk", "comp", "mem", "saved", "grad_x", "grad_comp0", "grad_mem0", "grad_beta", "grad_threshold", "grad_gsf"]


@pytest.mark.parametrize("reset", list(RESETS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_emulated_cuda_equals_cpu_kernel_bit_for_bit(dtype: torch.dtype, reset: str) -> None:
    # Every T x N x surrogate; each case draws its parameter mix, state-gradient shapes,
    # optional mem0, return_sequences and param_grads (see OPTIONS).
    failures = []
    for i, (T, N, surrogate) in enumerate(itertools.product(TS, NS, SURROGATES)):
        case = make_case(i, T, N, dtype)
        want = run_ops("snntorch_clif", case, RESETS[reset], surrogate)
        got = run_ops("snntorch_clif_emu", case, RESETS[reset], surrogate)
        for name, a, b in zip(NAMES, got, want):
            if not same_bits(a, b):
                failures.append(f"case {i} (T={T}, N={N}, surrogate {surrogate}): {name}")
    assert not failures, f"{len(failures)} mismatches, first: {failures[:5]}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_64_bit_index_kernels_equal_the_cpu_kernel(dtype: torch.dtype) -> None:
    # The sweep's sizes all run the 32-bit index kernels; with the limit at 0 every call takes
    # the 64-bit ones (calls of 2**31 elements or more would): same bits, every reset.
    old = torch.ops.snntorch_clif_emu.set_index32_limit(0)
    try:
        failures = []
        for i, (T, N, surrogate) in enumerate(itertools.product((1, 17, 64), (1, 257), SURROGATES)):
            case = make_case(i, T, N, dtype)
            for reset in RESETS.values():
                want = run_ops("snntorch_clif", case, reset, surrogate)
                got = run_ops("snntorch_clif_emu", case, reset, surrogate)
                failures += [f"case {i} reset {reset}: {name}" for name, a, b in zip(NAMES, got, want) if not same_bits(a, b)]
    finally:
        torch.ops.snntorch_clif_emu.set_index32_limit(old)
    assert old == 2**31 - 1
    assert not failures, f"{len(failures)} mismatches, first: {failures[:5]}"


def shaped(case: dict, neurons: tuple[int, ...]) -> dict:
    """``case`` with its N neurons laid out as ``neurons`` (the ops take any neuron shape)."""
    T = case["x"].shape[0]

    def layout(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None or t.numel() == 1:
            return t
        return t.reshape(neurons) if t.dim() == 1 else t.reshape(T, *neurons)

    out = {k: layout(v) if isinstance(v, torch.Tensor) or v is None else v for k, v in case.items()}
    out["params"] = [layout(p) for p in case["params"]]
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_emulated_cuda_takes_any_neuron_shape(dtype: torch.dtype) -> None:
    # [T, 5, 51] on the emulated CUDA kernel gives the CPU kernel's [T, 255] bits
    failures = []
    for i, (T, surrogate) in enumerate(itertools.product((1, 17), SURROGATES)):
        case = make_case(i, T, 255, dtype)
        want = run_ops("snntorch_clif", case, RESETS["subtract"], surrogate)
        got = run_ops("snntorch_clif_emu", shaped(case, (5, 51)), RESETS["subtract"], surrogate)
        for name, a, b in zip(NAMES, got, want):
            if name not in ("saved", "grad_beta", "grad_threshold", "grad_gsf"):
                assert a.shape[-2:] == (5, 51), name
            if not same_bits(a.reshape(b.shape), b):
                failures.append(f"case {i} (T={T}, surrogate {surrogate}): {name}")
    assert not failures, f"{len(failures)} mismatches, first: {failures[:5]}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_subnormals_flush_alike_on_both_kernels(dtype: torch.dtype) -> None:
    # Silent neurons: h settles near -30, so m decays ~0.05x a step, through the subnormal
    # range within ~30 steps.
    # Both kernels flush subnormals (FTZ/DAZ on the CPU, --ftz=true on the GPU, modelled by
    # the emulator), so the bits still agree, and no output holds a subnormal.
    failures = []
    for i, surrogate in enumerate(SURROGATES):
        case = make_case(i, 300, 257, dtype)
        case["x"] = torch.full_like(case["x"], -3.0)
        case["comp0"] = torch.ones_like(case["comp0"])
        case["pass_states"] = True
        want = run_ops("snntorch_clif", case, RESETS["subtract"], surrogate)
        got = run_ops("snntorch_clif_emu", case, RESETS["subtract"], surrogate)
        failures += [f"surrogate {surrogate}: {name}" for name, a, b in zip(NAMES, got, want) if not same_bits(a, b)]
        for name, t in zip(NAMES, got):
            t = t.float()
            assert not bool(((t != 0) & (t.abs() < torch.finfo(torch.float32).tiny)).any()), name
    assert not failures, f"{len(failures)} mismatches, first: {failures[:5]}"


def offset_by_one(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t``'s values in a contiguous view that starts one element into its storage."""
    if t is None:
        return None
    storage = torch.empty(t.numel() + 1, dtype=t.dtype)
    view = storage[1:].view(t.shape)
    view.copy_(t)
    return view


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("misaligned", ["none", "x", "comp0", "mem0"])
def test_forward_pairs_neurons_for_half_types_when_rows_allow(dtype: torch.dtype, misaligned: str) -> None:
    # float16 / bfloat16 with an even N and 4-byte aligned rows: two neurons per thread (one
    # 32-bit access per pair), so half the blocks; an input view starting at an odd element
    # takes the one-neuron kernel (the emulator raises on a misaligned paired access). Both
    # give the CPU kernel's bits.
    failures = []
    for i, (T, N) in enumerate(itertools.product((1, 17), (256, 1000, 1024))):
        case = make_case(i, T, N, dtype)
        case["pass_states"] = True
        if misaligned != "none":
            case[misaligned] = offset_by_one(case[misaligned])
            assert case[misaligned].data_ptr() % 4 != 0 or dtype == torch.float32
        want = run_ops("snntorch_clif", case, RESETS["zero"], SURROGATES[1])
        lib = torch.ops.snntorch_clif_emu
        lib.clif_forward(case["x"], case["comp0"], case["mem0"], *case["params"], RESETS["zero"], *SURROGATES[1],
                         case["return_sequences"], True)
        paired = dtype != torch.float32 and misaligned == "none"
        assert lib.last_launch_blocks() == -(-(N // 2 if paired else N) // 256), (T, N)
        got = run_ops("snntorch_clif_emu", case, RESETS["zero"], SURROGATES[1])
        failures += [f"T={T}, N={N}: {name}" for name, a, b in zip(NAMES, got, want) if not same_bits(a, b)]
    assert not failures, f"{len(failures)} mismatches, first: {failures[:5]}"


def test_sweep_covers_every_pair_of_options() -> None:
    # Within each (dtype, reset), the 210 cases meet every value pair of any two options.
    cases = [case_options(i) for i in range(len(TS) * len(NS) * len(SURROGATES))]
    for a, b in itertools.combinations(OPTIONS, 2):
        pairs = {(c[a], c[b]) for c in cases}
        assert len(pairs) == OPTIONS[a] * OPTIONS[b], (a, b)


@pytest.mark.parametrize(
    ("grid", "block"), [([1, 1, 1], [1, 1, 1]), ([3, 1, 1], [256, 1, 1]), ([2, 3, 2], [4, 2, 3])]
)
def test_launch_runs_every_thread_once(grid: list[int], block: list[int]) -> None:
    marks = torch.ops.snntorch_clif_emu.launch_self_test(grid, block)
    assert marks.numel() == torch.tensor(grid).prod() * torch.tensor(block).prod()
    assert bool((marks == 1).all())


@pytest.mark.parametrize(
    ("grid", "block", "message"),
    [
        ([0, 1, 1], [256, 1, 1], "zero blocks"),
        ([1, 1, 1], [1025, 1, 1], "block of"),
        ([1, 1, 1], [1, 1, 65], "block of"),
        ([1, 65536, 1], [1, 1, 1], "exceeds the limits"),
        ([1, 1, 1], [0, 1, 1], "block of"),
    ],
)
def test_launch_rejects_what_a_gpu_rejects(grid: list[int], block: list[int], message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        torch.ops.snntorch_clif_emu.launch_self_test(grid, block)


def test_switch_routes_the_ops_to_the_emulated_kernels() -> None:
    # The CUDA kernel refuses float64 and the CPU kernel takes it: the switch is really in place
    # inside the block, and gone after it.
    x = torch.rand(3, 4, dtype=torch.float64)
    z = torch.zeros(4, dtype=torch.float64)
    one = torch.ones(1, dtype=torch.float64)
    args = (x, z, z, one * 0.5, one, one, 0, 0, 1.0, False, False)
    with cuda_emulator.emulated_cuda_kernels(), pytest.raises(RuntimeError, match="the CUDA kernel takes"):
        torch.ops.snntorch_clif.clif_forward(*args)
    torch.ops.snntorch_clif.clif_forward(*args)


ASAN_SCRIPT = """
import sys, itertools, torch
sys.path.insert(0, sys.argv[1])
import test_cuda_emulated as t
t.cuda_emulator.load()
count = 0
for dtype, reset in itertools.product([torch.float32, torch.bfloat16], t.RESETS.values()):
    for i, (T, N, sg) in enumerate(itertools.product([0, 1, 7], [0, 1, 255, 257], t.SURROGATES)):
        t.run_ops("snntorch_clif_emu", t.make_case(i, T, N, dtype), reset, sg)
        count += 1
print("ran", count)
"""


def _libasan() -> str | None:
    path = subprocess.run(["g++", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.slow
@pytest.mark.skipif(_libasan() is None, reason="g++ has no libasan")
def test_emulated_kernels_under_address_sanitizer() -> None:
    # Out-of-bounds reads that happen to give equal numbers pass the bit-for-bit test; ASan
    # stops at the first one (heap buffers of the ops' tensors are instrumented too).
    env = dict(
        os.environ, LD_PRELOAD=_libasan(), SNNTORCH_CLIF_EMULATOR_SANITIZE="address",
        ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0",
    )
    result = subprocess.run(
        [sys.executable, "-c", ASAN_SCRIPT, os.path.dirname(__file__)], env=env, capture_output=True, text=True,
        timeout=900,
    )
    assert result.returncode == 0 and "ran 504" in result.stdout, result.stderr[-4000:]
