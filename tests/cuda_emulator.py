"""The CUDA kernels executed on the CPU: build, load and switch in the emulated-CUDA library.

``csrc/cuda/clif_cuda.cu`` is compiled with the host compiler against ``tests/cuda_shim/``
(CUDA's built-ins and the c10 CUDA headers replaced; every block and thread of a launch run
in turn, after the launch-configuration checks a GPU makes). The result is a library with the
ops ``torch.ops.snntorch_clif_emu.clif_forward`` / ``clif_backward`` on CPU tensors, whose
outputs start as NaN so that an element a kernel never writes shows.

The build is cached under ``build/cuda_emulator/<hash of the sources and flags>/`` and made
once per change of the kernel sources. ``SNNTORCH_CLIF_EMULATOR_SANITIZE=address`` builds it
with AddressSanitizer (the process must then preload libasan; see test_cuda_emulated.py).

:func:`load_mutant` builds a copy of the sources with a planted bug (text replacements) as
ops in a namespace of its own: tests use it to show that a check catches that bug.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator, Mapping

import torch
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIM = os.path.join(ROOT, "tests", "cuda_shim")
CSRC = os.path.join(ROOT, "snntorch_clif", "csrc")
SOURCE = os.path.join(SHIM, "clif_cuda_emulated.cpp")
OPS = ("clif_forward", "clif_backward")


def _inputs() -> list[str]:
    files = [SOURCE, os.path.join(CSRC, "cuda", "clif_cuda.cu")]
    for folder in (SHIM, CSRC):
        for dirpath, _, names in os.walk(folder):
            files += [os.path.join(dirpath, n) for n in names if n.endswith((".h", ".cuh"))]
    return sorted(set(files))


def _command(output: str, sanitize: str | None, root: str = ROOT, namespace: str = "snntorch_clif_emu") -> list[str]:
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    shim = os.path.join(root, "tests", "cuda_shim")
    flags = [
        "g++", "-std=c++20", "-shared", "-fPIC", "-O1", "-g", "-ffp-contract=off", "-Wall", "-Wno-unused-function",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        "-DCLIF_CUDA_EMULATION", "-DCLIF_POISON_OUTPUTS",
        f"-DCLIF_CUDA_LIBRARY={namespace}", "-DCLIF_CUDA_DISPATCH_KEY=CPU",
        "-I", os.path.join(shim, "include"),  # the c10/cuda stubs come before torch's own headers
    ]
    for path in cpp_extension.include_paths():
        flags += ["-isystem", path]
    flags += ["-isystem", sysconfig.get_paths()["include"]]
    if sanitize:
        flags += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer"]
    flags += [os.path.join(shim, os.path.basename(SOURCE)), "-o", output, f"-L{torch_lib}", "-lc10", "-ltorch_cpu",
              "-ltorch", f"-Wl,-rpath,{torch_lib}"]
    return flags


def _compile(folder: str, command: list[str], output: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "w") as lock:  # one build at a time (pytest-xdist)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(output):
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"building the emulated CUDA kernels failed:\n{result.stderr[-6000:]}")
            os.replace(output + ".tmp", output)


def build(sanitize: str | None = None) -> str:
    """Compile the emulated library if its sources changed; return the path of the ``.so``."""
    digest = hashlib.sha256()
    for path in _inputs():
        digest.update(path.encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    digest.update(" ".join(_command("out", sanitize)).encode())
    folder = os.path.join(ROOT, "build", "cuda_emulator", digest.hexdigest()[:16])
    output = os.path.join(folder, "clif_cuda_emulated.so")
    _compile(folder, _command(output + ".tmp", sanitize), output)
    return output


def load_mutant(namespace: str, replacements: Mapping[str, Mapping[str, str]]) -> None:
    """Build and load the emulated kernels from a copy of the sources with a planted bug.

    ``replacements`` maps a file (relative to ``snntorch_clif/csrc``) to ``{old: new}`` text
    replacements, each of which must match exactly once. The ops are defined as
    ``torch.ops.<namespace>.clif_forward`` / ``clif_backward``; switch them in with
    ``emulated_cuda_kernels(namespace)``.
    """
    if hasattr(torch.ops, namespace) and hasattr(getattr(torch.ops, namespace), "clif_forward"):
        return  # loaded already (a namespace is one mutant)
    digest = hashlib.sha256(namespace.encode())
    for path in _inputs():
        with open(path, "rb") as f:
            digest.update(f.read())
    digest.update(repr(sorted((k, sorted(v.items())) for k, v in replacements.items())).encode())
    folder = os.path.join(ROOT, "build", "cuda_emulator", "mutant-" + digest.hexdigest()[:16])
    output = os.path.join(folder, "clif_cuda_emulated.so")
    if not os.path.exists(output):
        copy = os.path.join(folder, "src")
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(SHIM, os.path.join(copy, "tests", "cuda_shim"))
        shutil.copytree(CSRC, os.path.join(copy, "snntorch_clif", "csrc"))
        for name, changes in replacements.items():
            path = os.path.join(copy, "snntorch_clif", "csrc", name)
            with open(path) as f:
                text = f.read()
            for old, new in changes.items():
                if text.count(old) != 1:
                    raise ValueError(f"{name}: the text to replace occurs {text.count(old)} times: {old!r}")
                text = text.replace(old, new)
            with open(path, "w") as f:
                f.write(text)
        _compile(folder, _command(output + ".tmp", None, copy, namespace), output)
    torch.ops.load_library(output)


_loaded: str | None = None


def load() -> None:
    """Build (if needed) and load the emulated library: defines ``torch.ops.snntorch_clif_emu``."""
    global _loaded
    if _loaded is None:
        path = build(os.environ.get("SNNTORCH_CLIF_EMULATOR_SANITIZE") or None)
        torch.ops.load_library(path)
        _loaded = path


@contextlib.contextmanager
def emulated_cuda_kernels(namespace: str = "snntorch_clif_emu") -> Iterator[None]:
    """Within the block, the CPU kernels of ``snntorch_clif``'s ops are the emulated CUDA ones.

    Everything above the kernels (ops.py's autograd and fake kernels, functional, the module)
    then runs unchanged on the CUDA source (``namespace``: a mutant's, see :func:`load_mutant`).
    Leaving the block restores the CPU kernels.
    """
    if namespace == "snntorch_clif_emu":
        load()
    library = torch.library.Library("snntorch_clif", "IMPL")
    try:
        for name in OPS:
            library.impl(name, getattr(getattr(torch.ops, namespace), name).default, "CPU")
        yield
    finally:
        library._destroy()


def each_kernel(request, cpu_only_reason: str) -> Iterator[str]:  # noqa: ANN001 - pytest's FixtureRequest
    """The body of a fixture parametrized over ``"cpu"`` and ``"cuda_emulated"``: yields the
    parameter, under :func:`emulated_cuda_kernels` for the latter, which skips tests marked
    ``cpu_kernel_only`` (``cpu_only_reason``) and float64 ones (no CUDA kernel for float64)."""
    import pytest

    if request.param != "cuda_emulated":
        yield request.param
        return
    if request.node.get_closest_marker("cpu_kernel_only"):
        pytest.skip(cpu_only_reason)
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("dtype") == torch.float64:
        pytest.skip("the CUDA kernel has no float64 (float64 on a GPU runs the reference)")
    with emulated_cuda_kernels():
        yield request.param
