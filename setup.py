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
``SNNTORCH_CLIF_OPENMP``
    unset or ``auto`` (default): compile the CPU kernel with ``-fopenmp`` when the C++
    compiler (``$CXX``, else ``c++``) compiles and links an OpenMP probe with it, else
    without (Apple's clang: the kernel then runs on one thread per call); ``1``: require
    it; ``0``: never.
``TORCH_CUDA_ARCH_LIST``
    the GPU targets; when unset, those of the visible GPUs, or with none visible
    ``7.5;8.0;8.6;8.9;9.0+PTX`` (T4, A100, A10/RTX 30xx, L4/RTX 40xx, H100, and PTX that newer
    GPUs compile at load time).
``CUDA_HOME``
    the toolkit; when unset, ``/usr/local/cuda`` or the one ``nvcc`` on PATH runs.

A failed build is fatal when the CUDA build was forced; otherwise it leaves a loud
warning and a package that runs on the (slower) reference path.

What a build shares with ``python -m snntorch_clif.build`` (sources, flags, the arch list)
lives in ``snntorch_clif/_build.py``, loaded here by path. The build writes
``snntorch_clif/_build_info.py`` (the torch it compiled against; gitignored), which the
package names when its library does not load.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent


def _load_build_module():  # noqa: ANN202 - the package cannot be imported before it is built
    spec = importlib.util.spec_from_file_location("_snntorch_clif_build", ROOT / "snntorch_clif" / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_module()


def _extensions() -> tuple[list, dict]:
    build_switch = build.env_switch("SNNTORCH_CLIF_BUILD")
    cuda_switch = build.env_switch("SNNTORCH_CLIF_CUDA")
    cuda_home = build.find_cuda_home() if cuda_switch != "off" and build_switch != "off" else None
    if cuda_home:
        # torch.utils.cpp_extension reads CUDA_HOME once, at import.
        os.environ["CUDA_HOME"] = cuda_home
    import torch
    from torch.utils import cpp_extension

    if build_switch == "off":
        build.write_build_info(build.BUILD_INFO_FILE, torch_version=torch.__version__, torch_cuda=torch.version.cuda,
                               compiled=False, with_cuda=False, cuda_archs="", openmp=False)
        return [], {}
    has_nvcc = bool(cuda_home) and os.path.exists(os.path.join(cuda_home, "bin", "nvcc"))
    with_cuda = cuda_switch == "on" or (cuda_switch == "auto" and has_nvcc and torch.version.cuda is not None)
    if cuda_switch == "on" and not (has_nvcc and torch.version.cuda is not None):
        raise SystemExit(
            f"SNNTORCH_CLIF_CUDA=1 but nvcc was not found (CUDA_HOME={cuda_home}) or torch "
            f"{torch.__version__} is not a CUDA build"
        )

    sources = [os.path.relpath(s, ROOT) for s in build.source_files(with_cuda)]
    openmp = build.openmp_config()
    cxx = [*build.CXX_FLAGS, *openmp.cflags]
    macros: list[tuple[str, str | None]] = []
    kwargs: dict = {"extra_link_args": list(openmp.ldflags)}
    arch_list = ""
    if with_cuda:
        arch_list = build._device_arch_list()
        # Set it explicitly so torch compiles exactly the list the library records.
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
        macros.append((build.CUDA_MACRO, None))
        # Only register.cpp reads the list, so only the C++ compiler gets it (nvcc would split
        # a -D value at its commas); ';' would end the command in a shell, so ',' instead.
        cxx.append("-DSNNTORCH_CLIF_CUDA_ARCHS=" + build.arch_macro_value(arch_list))
        kwargs["extra_compile_args"] = {"cxx": cxx, "nvcc": list(build.NVCC_FLAGS)}
        ext = cpp_extension.CUDAExtension("snntorch_clif._C", sources, define_macros=macros, **kwargs)
    else:
        kwargs["extra_compile_args"] = {"cxx": cxx}
        ext = cpp_extension.CppExtension("snntorch_clif._C", sources, define_macros=macros, **kwargs)
    what = f" and the CUDA kernel ({arch_list})" if with_cuda else ""
    print(f"snntorch-clif: building the CPU kernel{what} for torch {torch.__version__}", file=sys.stderr)
    print(f"snntorch-clif: {openmp.summary}", file=sys.stderr)
    build.write_build_info(build.BUILD_INFO_FILE, torch_version=torch.__version__, torch_cuda=torch.version.cuda,
                           compiled=True, with_cuda=with_cuda, cuda_archs=arch_list, openmp=openmp.threads)

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
                    f"on its pure-PyTorch reference path (retry with: {build.REBUILD_COMMAND})",
                    stacklevel=1,
                )

    return [ext], {"build_ext": BuildExt.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
