"""The CUDA kernel (csrc/cuda/clif_cuda.cu): the built library, and (on a GPU) its results.

The first test runs everywhere a CUDA build exists (CI has no GPU): it checks that the
compiled library really contains the kernels for every requested architecture. The
others are marked ``cuda`` and skipped without a GPU; they run unchanged where one is.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import struct
import subprocess
import sysconfig

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


# --- on a GPU ------------------------------------------------------------------------------
SURROGATES = [
    sg.Rectangle(1.0), sg.ATan(2.0), sg.FastSigmoid(25.0), sg.Sigmoid(5.0), sg.Triangular(1.0),
    sg.StraightThrough(), sg.Disabled(),
]


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


def _run(args: list[torch.Tensor], spike_grad: sg.Surrogate, reset: str, seqs: bool, fused: bool) -> list:
    if fused:
        outs = ops.clif_sequence_fused(*args[:3], *args[3:], spike_grad, reset, seqs)
    else:
        x, comp, mem, beta, thr, gsf = args
        outs = clif_sequence_reference(x, comp, mem, beta, thr, spike_grad, reset, gsf, seqs)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(o.shape, generator=g).to(o) for o in outs]
    grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), args)
    return [o.detach() for o in outs] + list(grads)


def _clone(args: list[torch.Tensor], **to: object) -> list[torch.Tensor]:
    return [a.detach().to(**to).requires_grad_() for a in args]  # type: ignore[arg-type]


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize(("reset", "kind"), list(itertools.product(["subtract", "zero", "none"], range(7))))
def test_cuda_matches_cpu_kernel(reset: str, kind: int) -> None:
    # Same arithmetic (clif_math.h, no FMA contraction on either side): per-element results
    # agree to rounding; spikes are identical.
    cpu = _case("cpu", torch.float32, seed=kind)
    gpu = _clone(cpu, device="cuda")
    for seqs in (False, True):
        want = _run(cpu, SURROGATES[kind], reset, seqs, fused=True)
        got = _run(gpu, SURROGATES[kind], reset, seqs, fused=True)
        assert torch.equal(got[0].cpu(), want[0])
        for a, b in zip(got[1:], want[1:]):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("per_neuron", [False, True])
def test_cuda_matches_reference(dtype: torch.dtype, per_neuron: bool) -> None:
    args = _case("cuda", dtype, T=16, per_neuron=per_neuron)
    ref_args = _clone(args, dtype=torch.float32)  # the kernel computes in float32
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    for reset in ("subtract", "zero", "none"):
        got = _run(args, sg.ATan(2.0), reset, True, fused=True)
        want = _run(ref_args, sg.ATan(2.0), reset, True, fused=False)
        assert torch.equal(got[0].float(), want[0])
        for a, b in zip(got[1:], want[1:]):
            assert a.dtype == dtype
            scale = (b.numel() and max(1.0, (args[0].numel() / b.numel()) ** 0.5))
            torch.testing.assert_close(a.float(), b, rtol=tol * scale, atol=tol * scale)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize(("T", "shape"), [(0, (3, 4)), (5, (0,)), (1, (1,)), (3, (1000, 257))])
def test_cuda_sizes_and_noncontiguous(T: int, shape: tuple) -> None:
    args = _case("cuda", torch.float32, T=T, shape=shape)
    x = args[0].detach().transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_()
    args[0] = x
    got = _run(args, sg.Rectangle(), "subtract", False, fused=True)
    want = _run(_clone(args), sg.Rectangle(), "subtract", False, fused=False)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@needs_gpu
def test_cuda_uses_the_current_stream() -> None:
    args = _case("cuda", torch.float32, T=32, shape=(64, 1024))
    want = _run(args, sg.Sigmoid(5.0), "zero", False, fused=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = _run(args, sg.Sigmoid(5.0), "zero", False, fused=True)
    torch.cuda.current_stream().wait_stream(side)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("step_mode", ["single", "multi"])
def test_cuda_compile_fullgraph(step_mode: str) -> None:
    torch._dynamo.reset()
    lif = CLIF(beta=0.7, learn_beta=True, spike_grad=sg.ATan(2.0), step_mode=step_mode).cuda()
    x = torch.randn(6, 8, 32, device="cuda") * 2

    def f(x: torch.Tensor) -> torch.Tensor:
        comp = mem = torch.zeros_like(x[0])
        if step_mode == "multi":
            return lif(x, comp, mem)[0].sum(0)
        total = torch.zeros_like(x[0])
        for t in range(x.shape[0]):
            spk, comp, mem = lif(x[t], comp, mem)
            total = total + spk
        return total

    eager = f(x)
    compiled = torch.compile(f, fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager)
