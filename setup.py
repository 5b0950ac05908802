"""Build snntorch-clif's fused kernels: ``snntorch_clif._C`` (C++ on the CPU, + CUDA).

Metadata lives in setup.cfg. Install with ``pip install --no-build-isolation -e .`` so the
extension compiles against the torch already installed.

Environment switches (read at build time):

``SNNTORCH_CLIF_CUDA``
    ``1``: build the CUDA kernel, and fail the install if it cannot be built (CI);
    ``0``: CPU kernel only; unset or ``auto`` (default): build the CUDA kernel when
    ``nvcc`` is found and torch is a CUDA build. A GPU is never needed to compile.
``SNNTORCH_CLIF_BUILD``
    ``0``: compile nothing (pure Python; the package runs on its reference path).
``TORCH_CUDA_ARCH_LIST``
    the GPU targets; when unset and no GPU is visible, ``8.0;9.0+PTX`` (A100, H100, and
    PTX that newer GPUs compile at load time).
``CUDA_HOME``
    the toolkit; when unset, ``/usr/local/cuda`` or the one ``nvcc`` on PATH runs.

A failed build is fatal when the CUDA build was forced; otherwise it leaves a loud
warning and a package that runs on the (slower) reference path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("snntorch_clif", "csrc")


def _env_switch(name: str) -> str:
    value = os.environ.get(name, "auto").strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value in ("1", "true", "yes", "on"):
        return "on"
    if value in ("0", "false", "no", "off"):
        return "off"
    raise SystemExit(f"{name} must be 1, 0 or auto, got {os.environ[name]!r}")


def _find_cuda_home() -> str | None:
    """The CUDA toolkit root, resolved through wrapper scripts like /usr/local/bin/nvcc."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:  # `nvcc --version` does not print its path; ask the compiler driver where it lives
        out = subprocess.run([nvcc, "-dryrun", "--version"], capture_output=True, text=True, timeout=30)
        match = re.search(r"TOP=(\S+)", out.stdout + out.stderr)
        if match:
            return os.path.normpath(match.group(1))
    except (OSError, subprocess.SubprocessError):
        pass
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def _extensions() -> tuple[list, dict]:
    if _env_switch("SNNTORCH_CLIF_BUILD") == "off":
        return [], {}
    cuda_switch = _env_switch("SNNTORCH_CLIF_CUDA")
    cuda_home = _find_cuda_home() if cuda_switch != "off" else None
    if cuda_home:
        # torch.utils.cpp_extension reads CUDA_HOME once, at import.
        os.environ["CUDA_HOME"] = cuda_home
    import torch
    from torch.utils import cpp_extension

    has_nvcc = bool(cuda_home) and os.path.exists(os.path.join(cuda_home, "bin", "nvcc"))
    with_cuda = cuda_switch == "on" or (cuda_switch == "auto" and has_nvcc and torch.version.cuda is not None)
    if cuda_switch == "on" and not (has_nvcc and torch.version.cuda is not None):
        raise SystemExit(
            f"SNNTORCH_CLIF_CUDA=1 but nvcc was not found (CUDA_HOME={cuda_home}) or torch "
            f"{torch.__version__} is not a CUDA build"
        )

    sources = [os.path.join(CSRC, "register.cpp"), os.path.join(CSRC, "cpu", "clif_cpu.cpp")]
    # -ffp-contract=off: no fused multiply-adds beyond the explicit ones, so every ISA
    # variant (and the GPU, with --fmad=false) computes bit-identical results.
    cxx = ["-O3", "-fopenmp", "-ffp-contract=off"]
    macros: list[tuple[str, str | None]] = []
    kwargs: dict = {"extra_link_args": ["-fopenmp"]}
    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "native")
        sources.append(os.path.join(CSRC, "cuda", "clif_cuda.cu"))
        macros.append(("SNNTORCH_CLIF_WITH_CUDA", None))
        # Only register.cpp reads the list, so only the C++ compiler gets it (nvcc would split
        # a -D value at its commas); ';' would end the command in a shell, so ',' instead.
        cxx.append("-DSNNTORCH_CLIF_CUDA_ARCHS=" + arch_list.replace(";", ",").replace(" ", ","))
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": ["-O3", "--fmad=false", "-lineinfo"]}
        ext = cpp_extension.CUDAExtension("snntorch_clif._C", sources, define_macros=macros, **kwargs)
    else:
        kwargs["extra_compile_args"] = {"cxx": cxx}
        ext = cpp_extension.CppExtension("snntorch_clif._C", sources, define_macros=macros, **kwargs)
    print(f"snntorch-clif: building the CPU kernel{' and the CUDA kernel' if with_cuda else ''}", file=sys.stderr)

    class BuildExt(cpp_extension.BuildExtension):
        """Make a failed (unforced) build a warning: the package still works, on its reference path."""

        def build_extension(self, extension) -> None:  # type: ignore[no-untyped-def]
            try:
                super().build_extension(extension)
            except Exception as exc:  # noqa: BLE001 - any compiler failure
                if cuda_switch == "on":
                    raise
                warnings.warn(
                    f"snntorch-clif: could not build the fused kernels ({exc}); the package will run "
                    "on its pure-PyTorch reference path",
                    stacklevel=1,
                )

    return [ext], {"build_ext": BuildExt.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
