"""The CUDA kernel (csrc/cuda/clif_cuda.cu): the built library, and its results.

The first test runs everywhere a CUDA build exists: it checks that the compiled library
really contains the kernels for every requested architecture. The others run twice through
the ``gpu`` fixture: on a GPU (skipped without one) and on the CUDA source executed on the
CPU (tests/cuda_emulator.py), so every line of them runs in CI. Only the stream test needs
a real GPU.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import struct
import subprocess
import sysconfig
from dataclasses import dataclass

import cuda_emulator
import pytest
import torch

from snntorch_clif import CLIF, ops
from snntorch_clif import surrogate as sg
from snntorch_clif.reference import clif_sequence_reference

KERNELS = (b"clif_forward_kernel", b"clif_backward_kernel")
FATBIN_MAGIC = 0xBA55ED50
needs_cuda_build = pytest.mark.skipif(
    not (ops.AVAILABLE and ops._C.WITH_CUDA), reason="the CUDA kernel was not built"
)
needs_gpu = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.has_kernel("cuda")), reason="needs a GPU and the CUDA kernel"
)


def library_path() -> str:
    return ops._C.__file__


def fatbin_entries(blob: bytes) -> list[tuple[str, int]]:
    """(kind, sm) of every entry in the CUDA fat binaries embedded in ``blob``.

    A fat binary is a 16-byte header (magic 0xBA55ED50, version, header size, payload size)
    followed by entries, each with its own header: kind (1 PTX, 2 ELF cubin) at offset 0,
    header size at 4, payload size at 8, the sm number at 28.
    """
    entries = []
    magic = struct.pack("<I", FATBIN_MAGIC)
    start = blob.find(magic)
    while start != -1:
        _, _, header_size, fat_size = struct.unpack_from("<IHHQ", blob, start)
        pos, end = start + header_size, start + header_size + fat_size
        while pos + 32 <= end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", blob, pos)
            (sm,) = struct.unpack_from("<I", blob, pos + 28)
            if kind not in (1, 2) or entry_header == 0:
                break
            entries.append(({1: "ptx", 2: "elf"}[kind], sm))
            pos += entry_header + payload
        start = blob.find(magic, max(end, start + 1))
    return entries


def requested_archs() -> list[tuple[str, int]]:
    """The (kind, sm) entries the build's TORCH_CUDA_ARCH_LIST asks for."""
    wanted = []
    for arch in ops._C.CUDA_ARCHS.split(","):
        arch = arch.strip()
        if not arch or arch == "native":
            continue
        number = arch.replace("+PTX", "")
        sm = int(float(number) * 10) if "." in number else int(number)
        wanted.append(("elf", sm))
        if arch.endswith("+PTX"):
            wanted.append(("ptx", sm))
    return wanted


def find_cuobjdump() -> str | None:
    candidates = [shutil.which("cuobjdump")]
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home:
            candidates.append(os.path.join(home, "bin", "cuobjdump"))
    # the pip wheel nvidia-cuda-cuobjdump
    candidates += glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "*", "bin", "cuobjdump"))
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@needs_cuda_build
def test_built_library_contains_the_kernels() -> None:
    with open(library_path(), "rb") as f:
        blob = f.read()
    entries = fatbin_entries(blob)
    for want in requested_archs():
        assert want in entries, f"{want} missing from the fat binary; found {entries}"
    # the host-side launch stubs name every kernel
    for name in KERNELS:
        assert name in blob
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        return  # the parse above already checked the fat binary
    listing = subprocess.run([cuobjdump, "--list-elf", library_path()], capture_output=True, text=True, check=True)
    symbols = subprocess.run([cuobjdump, "-symbols", library_path()], capture_output=True, text=True, check=True)
    for kind, sm in requested_archs():
        if kind == "elf":
            assert f"sm_{sm}" in listing.stdout, listing.stdout
    for name in KERNELS:
        # 3 resets x 3 I/O dtypes forward, x 7 surrogates backward, in every cubin
        count = symbols.stdout.count(name.decode())
        assert count >= 9, f"{name!r} appears {count} times in cuobjdump -symbols"


# --- on a GPU, or on the CUDA source executed on the CPU ---------------------------------
@dataclass(frozen=True)
class Gpu:
    """Where the GPU-side half of a test runs: a real GPU, or the emulated CUDA kernels."""

    device: str
    emulated: bool

    def kernels(self) -> contextlib.AbstractContextManager:
        """Inside this block the ops run the CUDA kernels (for the emulator: switched in)."""
        return cuda_emulator.emulated_cuda_kernels() if self.emulated else contextlib.nullcontext()


@pytest.fixture(params=["cuda", "emulated"])
def gpu(request: pytest.FixtureRequest) -> Gpu:
    if request.param == "cuda":
        if not (torch.cuda.is_available() and ops.has_kernel("cuda")):
            pytest.skip("needs a GPU and the CUDA kernel")
        return Gpu("cuda", emulated=False)
    if not ops.AVAILABLE:
        pytest.skip(f"fused kernels not built: {ops.LOAD_ERROR}")
    cuda_emulator.load()
    return Gpu("cpu", emulated=True)


SURROGATES = [
    sg.Rectangle(1.0), sg.ATan(2.0), sg.FastSigmoid(25.0), sg.Sigmoid(5.0), sg.Triangular(1.0),
    sg.StraightThrough(), sg.Disabled(),
]
RESET_IDS = {"subtract": 0, "zero": 1, "none": 2}
BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _case(device: str, dtype: torch.dtype, T: int = 9, shape: tuple = (4, 33), per_neuron: bool = True,
          seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((T, *shape), generator=g) * 1.5 + 0.4
    comp = torch.rand(shape, generator=g)
    mem = torch.rand(shape, generator=g) * 2 - 1
    if per_neuron:
        beta = torch.rand(shape[-1:], generator=g) * 0.8 + 0.1
        thr = torch.rand(shape, generator=g) + 0.5
        gsf = torch.rand(shape[-1:], generator=g) + 0.5
    else:
        beta, thr, gsf = torch.tensor(0.6), torch.tensor(0.9), torch.tensor(1.25)
    return [t.to(device=device, dtype=dtype).requires_grad_() for t in (x, comp, mem, beta, thr, gsf)]


def _run(args: list[torch.Tensor], spike_grad: sg.Surrogate, reset: str, seqs: bool, fused: bool,
         weight_dtype: torch.dtype, reset_delay: bool = False) -> list[torch.Tensor]:
    """Outputs, then the gradients of sum(output * weight) for every input (zeros where unused).

    The weights are drawn in float32 and rounded to ``weight_dtype`` on both sides of a
    comparison, so a half-precision run and its float32 reference differentiate the same loss.
    """
    if fused:
        outs = ops.clif_sequence_fused(*args[:3], *args[3:], spike_grad, reset, seqs, reset_delay=reset_delay)
    else:
        x, comp, mem, beta, thr, gsf = args
        outs = clif_sequence_reference(x, comp, mem, beta, thr, spike_grad, reset, gsf, seqs, reset_delay=reset_delay)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(o.shape, generator=g).to(weight_dtype).to(o) for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    # At T = 0 nothing reads beta / threshold / gsf: their gradients are None, i.e. zero.
    grads = torch.autograd.grad(loss, args, allow_unused=True)
    grads = [torch.zeros_like(a) if gr is None else gr for a, gr in zip(args, grads)]
    return [o.detach() for o in outs] + list(grads)


def _clone(args: list[torch.Tensor], **to: object) -> list[torch.Tensor]:
    return [a.detach().to(**to).requires_grad_() for a in args]  # type: ignore[arg-type]


def _same_bits(got: torch.Tensor, want: torch.Tensor) -> bool:
    got = got.cpu()
    return got.shape == want.shape and got.dtype == want.dtype and torch.equal(
        got.view(BITS[got.dtype]), want.view(BITS[want.dtype])
    )


def _ops_run(args: list[torch.Tensor], reset: str, kind: int, seqs: bool, reset_delay: bool = False
             ) -> list[torch.Tensor]:
    """The two ops called directly: forward with save, backward with every gradient present."""
    x, comp, mem, beta, thr, gsf = (a.detach() for a in args)
    flat = [x.reshape(x.shape[0], -1), comp.reshape(-1), mem.reshape(-1)]
    n = flat[1].numel()
    params = [p.float().expand(x.shape[1:]).reshape(n).contiguous() if p.numel() > 1 else p.float().reshape(1)
              for p in (beta, thr, gsf)]
    sgr = SURROGATES[kind]
    spk, c, m, saved = torch.ops.snntorch_clif.clif_forward(
        *flat, *params, RESET_IDS[reset], sgr.kind, sgr.param, seqs, True, False, reset_delay)
    g = torch.Generator().manual_seed(2)
    gspk, gc, gm = (torch.randn(t.shape, generator=g).to(t) for t in (spk, c, m))
    grads = torch.ops.snntorch_clif.clif_backward(
        gspk, gc, gm, saved, flat[2], *params, RESET_IDS[reset], sgr.kind, sgr.param, True, reset_delay)
    return [spk, c, m, *grads]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(("reset", "kind"), list(itertools.product(["subtract", "zero", "none"], range(7))))
def test_cuda_matches_cpu_kernel(gpu: Gpu, reset: str, kind: int, dtype: torch.dtype) -> None:
    # Same arithmetic (clif_math.h, no FMA contraction on either side): every output of both ops
    # is bit-identical, sequences and per-neuron parameter sums included.
    for seqs, per_neuron in [(False, True), (True, False)]:
        cpu = _case("cpu", dtype, seed=kind, per_neuron=per_neuron)
        want = _ops_run(cpu, reset, kind, seqs)
        with gpu.kernels():
            got = _ops_run(_clone(cpu, device=gpu.device), reset, kind, seqs)
        names = ["spk", "comp", "mem", "dx", "dcomp0", "dmem0", "dbeta", "dthreshold", "dgsf"]
        for name, a, b in zip(names, got, want):
            assert _same_bits(a, b), f"{name} differs (seqs={seqs}, per_neuron={per_neuron})"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("per_neuron", [False, True])
def test_cuda_matches_reference(gpu: Gpu, dtype: torch.dtype, per_neuron: bool) -> None:
    args = _case(gpu.device, dtype, T=16, per_neuron=per_neuron)
    ref_args = _clone(args, dtype=torch.float32)  # the kernel computes in float32
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    for reset in ("subtract", "zero", "none"):
        with gpu.kernels():
            got = _run(args, sg.ATan(2.0), reset, True, fused=True, weight_dtype=dtype)
        want = _run(ref_args, sg.ATan(2.0), reset, True, fused=False, weight_dtype=dtype)
        assert torch.equal(got[0].float(), want[0])
        for a, b in zip(got[1:], want[1:]):
            assert a.dtype == dtype
            scale = (b.numel() and max(1.0, (args[0].numel() / b.numel()) ** 0.5))
            torch.testing.assert_close(a.float(), b, rtol=tol * scale, atol=tol * scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_cuda_reset_delay_matches_cpu_kernel_and_reference(gpu: Gpu, reset: str, dtype: torch.dtype) -> None:
    # reset_delay=True (mem is h, mem0's reset pending): the CPU kernel's bits, and the reference
    for seqs, per_neuron, T in [(False, True, 9), (True, False, 17)]:
        cpu = _case("cpu", dtype, T=T, seed=7, per_neuron=per_neuron)
        want = _ops_run(cpu, reset, 1, seqs, reset_delay=True)
        with gpu.kernels():
            got = _ops_run(_clone(cpu, device=gpu.device), reset, 1, seqs, reset_delay=True)
        names = ["spk", "comp", "mem", "dx", "dcomp0", "dmem0", "dbeta", "dthreshold", "dgsf"]
        for name, a, b in zip(names, got, want):
            assert _same_bits(a, b), f"{name} differs (seqs={seqs}, per_neuron={per_neuron})"
        args = _case(gpu.device, dtype, T=T, seed=8, per_neuron=per_neuron)
        with gpu.kernels():
            got = _run(args, sg.ATan(2.0), reset, seqs, fused=True, weight_dtype=dtype, reset_delay=True)
        want = _run(_clone(args, dtype=torch.float32), sg.ATan(2.0), reset, seqs, fused=False, weight_dtype=dtype,
                    reset_delay=True)
        tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
        assert torch.equal(got[0], want[0].to(dtype))
        for a, b in zip(got[1:], want[1:]):
            scale = max(1.0, (args[0].numel() / b.numel()) ** 0.5)
            torch.testing.assert_close(a.float(), b, rtol=tol * scale, atol=tol * scale)


@pytest.mark.parametrize(("T", "shape"), [(0, (3, 4)), (5, (0,)), (1, (1,)), (3, (1000, 257))])
def test_cuda_sizes_and_noncontiguous(gpu: Gpu, T: int, shape: tuple) -> None:
    args = _case(gpu.device, torch.float32, T=T, shape=shape)
    x = args[0].detach().transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_()
    args[0] = x
    with gpu.kernels():
        got = _run(args, sg.Rectangle(), "subtract", False, fused=True, weight_dtype=torch.float32)
    want = _run(_clone(args), sg.Rectangle(), "subtract", False, fused=False, weight_dtype=torch.float32)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("seqs", [False, True])
def test_cuda_opcheck(gpu: Gpu, dtype: torch.dtype, seqs: bool) -> None:
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(6, 10, generator=g) * 1.5).to(gpu.device, dtype)
    comp, mem = torch.rand(10, generator=g).to(x), torch.randn(10, generator=g).to(x)
    with gpu.kernels():
        for requires_grad, n_params in [(True, 1), (True, 10), (False, 1)]:
            params = [torch.full((n_params,), v, device=gpu.device) for v in (0.5, 1.0, 1.0)]
            args = [t.detach().requires_grad_(requires_grad) for t in (x, comp, mem, *params)]
            torch.library.opcheck(
                torch.ops.snntorch_clif.clif_forward.default, (*args, 0, 1, 2.0, seqs, requires_grad))
        spk, c, m, saved = torch.ops.snntorch_clif.clif_forward(x, comp, mem, *params, 1, 3, 5.0, seqs, True)
        gspk, gc, gm = torch.randn_like(spk), torch.randn_like(c), torch.randn_like(m)
        for param_grads, grads in [(True, (gc, gm)), (False, (None, gm)), (True, (None, None))]:
            torch.library.opcheck(
                torch.ops.snntorch_clif.clif_backward.default,
                (gspk, *grads, saved, mem, *params, 1, 3, 5.0, param_grads))


@pytest.mark.cuda
@needs_gpu
def test_cuda_uses_the_current_stream() -> None:
    # The default stream spins; the op runs on a side stream. Launched on the current (side)
    # stream, its results are complete while the default stream is still busy; launched on the
    # default stream, they would still be queued behind the spin.
    args = _case("cuda", torch.float32, T=32, shape=(64, 1024))
    want = _ops_run(args, "zero", 3, False)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    torch.cuda._sleep(2_000_000_000)  # ~1 s of GPU time on the default stream
    with torch.cuda.stream(side):
        got = _ops_run(args, "zero", 3, False)
        done = torch.cuda.Event()
        done.record(side)
    done.synchronize()
    assert not torch.cuda.default_stream().query(), "the default stream finished first: the test proves nothing"
    with torch.cuda.stream(side):
        got = [t.cpu() for t in got]
    for a, b in zip(got, want):
        assert torch.equal(a, b.cpu())
    torch.cuda.synchronize()


@pytest.mark.parametrize("step_mode", ["single", "multi"])
def test_cuda_compile_fullgraph(gpu: Gpu, step_mode: str) -> None:
    torch._dynamo.reset()
    lif = CLIF(beta=0.7, learn_beta=True, spike_grad=sg.ATan(2.0), step_mode=step_mode).to(gpu.device)
    x = torch.randn(6, 8, 32, device=gpu.device) * 2

    def f(x: torch.Tensor) -> torch.Tensor:
        comp = mem = torch.zeros_like(x[0])
        if step_mode == "multi":
            return lif(x, comp, mem)[0].sum(0)
        total = torch.zeros_like(x[0])
        for t in range(x.shape[0]):
            spk, comp, mem = lif(x[t], comp, mem)
            total = total + spk
        return total

    # inductor on a GPU; the emulated kernels are switched in below inductor's CPU code, so
    # there aot_eager (same graph capture, eager kernels) keeps the test quick
    backend = "aot_eager" if gpu.emulated else "inductor"
    with gpu.kernels():
        eager = f(x)
        compiled = torch.compile(f, fullgraph=True, backend=backend)(x)
    torch.testing.assert_close(compiled, eager)
