r"""What both builds of the kernels share, and the facts about a build the package checks when it loads.

The code behind :mod:`snntorch_clif.build` (documented there): the sources, the compiler
flags, the CUDA architecture list and the rules of which GPU runs which architecture, the
build record ``_build_info.py`` and the rebuild cache. It lives in a private module so that
:mod:`snntorch_clif.ops` can use it without importing ``snntorch_clif.build`` (which
``python -m snntorch_clif.build`` runs as ``__main__``). ``setup.py`` loads this file by path,
before the package can be imported, and the rebuild runs it as a script in a fresh
interpreter: it imports only the standard library at module level.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, Optional

__all__ = [
    "DEFAULT_CUDA_ARCHS",
    "REBUILD_COMMAND",
    "Arch",
    "OpenMP",
    "arch_runs_on",
    "cache_dir",
    "cached_library",
    "cxx_compiler",
    "openmp_config",
    "parse_arch_list",
    "resolve_cuda_arch_list",
    "main",
]

#: The GPUs targeted when none is visible at build time: T4 (7.5), A100 (8.0), A10/RTX 30xx
#: (8.6), L4/RTX 40xx (8.9), H100 (9.0), and PTX that newer GPUs compile when the library loads.
DEFAULT_CUDA_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"

#: The one command that rebuilds the kernels for the installed torch (named in warnings and docs).
REBUILD_COMMAND = "python -m snntorch_clif.build"

PACKAGE_DIR = Path(__file__).resolve().parent
CSRC = PACKAGE_DIR / "csrc"
BUILD_INFO_FILE = PACKAGE_DIR / "_build_info.py"

# -ffp-contract=off: no fused multiply-adds beyond the explicit ones, so every ISA variant
# (and the GPU, with --fmad=false) computes bit-identical results. GCC's and clang's spelling;
# OpenMP's flags come from openmp_config(), which asks the compiler.
CXX_FLAGS = ("-O3", "-ffp-contract=off")
# --ftz=true: subnormal floats flushed to zero, as the CPU kernel does (clif_math.h).
NVCC_FLAGS = ("-O3", "--fmad=false", "--ftz=true", "-lineinfo")
CUDA_MACRO = "SNNTORCH_CLIF_WITH_CUDA"


# --- CUDA architectures ------------------------------------------------------------------
class Arch(NamedTuple):
    """One entry of an architecture list: compute capability ``major.minor``, its kind of code."""

    major: int
    minor: int
    specific: bool  # "a" suffix: runs on exactly this capability
    ptx: bool  # "+PTX": also PTX, JIT-compiled by the driver for newer GPUs


_ARCH_RE = re.compile(r"^(\d+)\.(\d+)([af]?)(\+PTX)?$", re.IGNORECASE)


def parse_arch_list(text: str) -> list[Arch]:
    """The entries of a ``TORCH_CUDA_ARCH_LIST``-style string (``;``, ``,`` or space separated).

    Entries that are not ``X.Y[a|f][+PTX]`` (``native``, family names) are skipped.

    Example: ``parse_arch_list("8.0;9.0+PTX")`` gives two :class:`Arch`, the second with ``ptx=True``.
    """
    archs = []
    for token in re.split(r"[;,\s]+", text.strip()):
        match = _ARCH_RE.match(token)
        if match:
            archs.append(Arch(int(match[1]), int(match[2]), match[3].lower() == "a", match[4] is not None))
    return archs


def arch_runs_on(capability: tuple[int, int], archs: Sequence[Arch]) -> bool:
    """Whether a library built for ``archs`` has code that a GPU of ``capability`` can run.

    A cubin ``sm_XY`` runs on capability ``X.y`` with ``y >= Y`` (``sm_XYa``: exactly ``X.Y``);
    PTX for ``X.Y`` runs on any capability ``>= X.Y`` (``compute_XYa``: exactly ``X.Y``).

    Example::

        >>> arch_runs_on((7, 5), parse_arch_list("8.0;9.0+PTX"))
        False
    """
    major, minor = capability
    for arch in archs:
        if arch.specific:
            if (major, minor) == (arch.major, arch.minor):
                return True
            continue
        if major == arch.major and minor >= arch.minor:
            return True
        if arch.ptx and (major, minor) >= (arch.major, arch.minor):
            return True
    return False


def resolve_cuda_arch_list(
    env_value: Optional[str], capabilities: Sequence[tuple[int, int]], max_supported: Optional[tuple[int, int]] = None,
) -> str:
    """The ``TORCH_CUDA_ARCH_LIST`` a build uses: ``env_value`` when set, else the visible GPUs, else the default.

    With GPUs visible (``capabilities``) and no list set, the build targets exactly those GPUs
    (newest one also as PTX), each clamped to ``max_supported`` (the newest architecture the
    installed torch was built for, which its nvcc can compile), as PyTorch itself does.
    Without a GPU: :data:`DEFAULT_CUDA_ARCHS`.

    Example::

        >>> resolve_cuda_arch_list(None, [(8, 6)])
        '8.6+PTX'
        >>> resolve_cuda_arch_list(None, [])
        '7.5;8.0;8.6;8.9;9.0+PTX'
    """
    if env_value and env_value.strip() and env_value.strip().lower() != "native":
        return env_value.strip()
    if not capabilities:
        return DEFAULT_CUDA_ARCHS
    clamped = sorted({min(tuple(c), max_supported) if max_supported else tuple(c) for c in capabilities})
    names = [f"{major}.{minor}" for major, minor in clamped]
    names[-1] += "+PTX"
    return ";".join(names)


def arch_macro_value(arch_list: str) -> str:
    """The arch list as the bare tokens register.cpp stringifies (``;`` would end a shell command)."""
    return ",".join(t for t in re.split(r"[;,\s]+", arch_list.strip()) if t)


def _device_arch_list() -> str:
    """:func:`resolve_cuda_arch_list` for this machine (imports torch)."""
    import torch

    capabilities = []
    max_supported = None
    if torch.cuda.is_available():
        capabilities = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())]
        sms = [int(m[0]) for a in torch.cuda.get_arch_list() for m in [re.findall(r"sm_(\d+)", a)] if m]
        if sms:
            top = max(sms)
            max_supported = (top // 10, top % 10)
    return resolve_cuda_arch_list(os.environ.get("TORCH_CUDA_ARCH_LIST"), capabilities, max_supported)


# --- toolchain -----------------------------------------------------------------------------
def find_cuda_home() -> Optional[str]:
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


def cxx_compiler(environ: Optional[dict] = None) -> list[str]:
    """The C++ compiler the build runs, as torch's ``cpp_extension`` picks it: ``$CXX``, else ``c++``.

    Example: ``CXX="ccache clang++"`` gives ``["ccache", "clang++"]``.
    """
    environ = os.environ if environ is None else environ
    return shlex.split(environ.get("CXX") or "c++")


class OpenMP(NamedTuple):
    """The OpenMP flags of the CPU kernel's build, and whether it links OpenMP.

    ``threads``: compiled with ``-fopenmp``. The kernel's threads are its own (a pool of
    ``std::thread`` helpers, up to ``torch.get_num_threads()``), so every build runs on
    threads; OpenMP only serves the ``#pragma omp simd`` loops, which ``-fopenmp-simd``
    vectorises as well without a runtime.
    """

    cflags: tuple[str, ...]
    ldflags: tuple[str, ...]
    threads: bool
    summary: str  # one line for the build log


_OPENMP_PROBE = """#include <omp.h>
extern "C" int snntorch_clif_probe(const float* x, int n) {
  int positive = 0;
#pragma omp parallel for reduction(+ : positive)
  for (int i = 0; i < n; ++i) positive += x[i] > 0.0f && omp_get_num_threads() > 0;
  return positive;
}
"""
_SIMD_PROBE = """extern "C" void snntorch_clif_probe(float* x, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) x[i] *= 2.0f;
}
"""


def _compiler_accepts(compiler: Sequence[str], flags: Sequence[str], source: str, link: bool) -> bool:
    """Whether ``compiler flags`` compiles ``source`` (and, with ``link``, links it into a shared library)."""
    with tempfile.TemporaryDirectory(prefix="snntorch_clif_probe_") as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text(source)
        out = Path(tmp) / ("probe.so" if link else "probe.o")
        command = [*compiler, *flags, "-fPIC", "-shared" if link else "-c", str(src), "-o", str(out)]
        try:
            result = subprocess.run(command, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return False
        return result.returncode == 0 and out.is_file()


def openmp_config(compiler: Optional[Sequence[str]] = None, switch: Optional[str] = None) -> OpenMP:
    """The OpenMP flags for ``compiler`` (default :func:`cxx_compiler`), found by compiling a probe.

    ``switch`` (default: the ``SNNTORCH_CLIF_OPENMP`` environment variable, see
    :func:`env_switch`): ``"auto"`` uses ``-fopenmp`` when the compiler compiles and links an
    OpenMP loop with it (GCC; clang with its ``libomp``), else builds without it (Apple's
    clang refuses ``-fopenmp``); ``"on"`` requires it; ``"off"`` never uses it. Without
    ``-fopenmp`` the ``#pragma omp simd`` loops still vectorise under ``-fopenmp-simd`` when
    the compiler accepts that (it needs no runtime); either way the kernel runs on its own
    threads.

    Example::

        >>> openmp_config(["g++"]).cflags
        ('-fopenmp',)
    """
    compiler = list(compiler) if compiler is not None else cxx_compiler()
    switch = env_switch("SNNTORCH_CLIF_OPENMP") if switch is None else switch
    name = " ".join(compiler)
    if switch != "off":
        if _compiler_accepts(compiler, ["-fopenmp"], _OPENMP_PROBE, link=True):
            return OpenMP(("-fopenmp",), ("-fopenmp",), True, f"{name} with OpenMP")
        if switch == "on":
            raise SystemExit(f"SNNTORCH_CLIF_OPENMP=1 but the C++ compiler ({name}) cannot compile and link an "
                             "OpenMP loop with -fopenmp (set CXX to one that can, or unset SNNTORCH_CLIF_OPENMP)")
        why = f"{name} does not compile and link -fopenmp"
    else:
        why = "SNNTORCH_CLIF_OPENMP=0"
    simd = ("-fopenmp-simd",) if _compiler_accepts(compiler, ["-fopenmp-simd", "-Werror"], _SIMD_PROBE, link=False) else ()
    return OpenMP(simd, (), False, f"{why}: built with {simd[0] if simd else 'no OpenMP flag'} "
                  "(the CPU kernel's threads do not need OpenMP)")


def env_switch(name: str, environ: Optional[dict] = None) -> str:
    """``SNNTORCH_CLIF_CUDA``-style switch: ``"on"``, ``"off"`` or ``"auto"`` (unset, empty, ``auto``)."""
    environ = os.environ if environ is None else environ
    value = str(environ.get(name, "auto")).strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value in ("1", "true", "yes", "on"):
        return "on"
    if value in ("0", "false", "no", "off"):
        return "off"
    raise SystemExit(f"{name} must be 1, 0 or auto, got {environ[name]!r}")


def source_files(with_cuda: bool, csrc: Path = CSRC) -> list[str]:
    """The kernel sources: the schemas, the autograd, the Python entry and the CPU kernel, + the CUDA kernel."""
    sources = [csrc / "register.cpp", csrc / "autograd.cpp", csrc / "python_call.cpp", csrc / "cpu" / "clif_cpu.cpp"]
    if with_cuda:
        sources.append(csrc / "cuda" / "clif_cuda.cu")
    return [str(s) for s in sources]


# --- the build record ----------------------------------------------------------------------
def build_info_text(
    torch_version: str, torch_cuda: Optional[str], compiled: bool, with_cuda: bool, cuda_archs: str,
    openmp: bool = True,
) -> str:
    """The text of ``snntorch_clif/_build_info.py``, which ``setup.py`` writes (gitignored).

    ``OPENMP``: whether the CPU kernel was compiled with ``-fopenmp`` (it runs on its own threads either way).
    """
    return (
        '"""Written by setup.py when the kernels were built; read by snntorch_clif.ops. Do not edit."""\n\n'
        f"TORCH_VERSION = {torch_version!r}\n"
        f"TORCH_CUDA = {torch_cuda!r}\n"
        f"COMPILED = {compiled!r}\n"
        f"WITH_CUDA = {with_cuda!r}\n"
        f"CUDA_ARCHS = {arch_macro_value(cuda_archs) if with_cuda else ''!r}\n"
        f"OPENMP = {bool(compiled and openmp)!r}\n"
    )


def write_build_info(path: Path, **fields: object) -> None:
    """Write the build record (only when it changed, so an unchanged build stays up to date)."""
    text = build_info_text(**fields)  # type: ignore[arg-type]
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# --- the rebuild cache ---------------------------------------------------------------------
def sources_digest(csrc: Path = CSRC) -> str:
    """A short hash of the kernel sources: a library built from other sources is not reused."""
    digest = hashlib.sha256()
    for path in sorted(p for p in csrc.rglob("*") if p.is_file() and p.suffix in (".h", ".cpp", ".cu")):
        digest.update(path.relative_to(csrc).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def cache_key(torch_version: str) -> str:
    """A folder name for one torch + Python + kernel sources combination (a library built for one fails on another)."""
    tag = sysconfig.get_config_var("SOABI") or f"py{sys.version_info[0]}{sys.version_info[1]}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"torch-{torch_version}-{tag}-{sources_digest()}")


def cache_dir(torch_version: Optional[str] = None) -> Path:
    """Where :func:`main` puts the library for ``torch_version`` (default: the installed torch)."""
    if torch_version is None:
        import torch

        torch_version = torch.__version__
    root = os.environ.get("SNNTORCH_CLIF_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "snntorch_clif")
    return Path(root) / cache_key(torch_version)


def cached_library(torch_version: Optional[str] = None) -> Optional[Path]:
    """The library :func:`main` built for ``torch_version``, or ``None`` when there is none."""
    path = cache_dir(torch_version) / "_C.so"
    return path if path.is_file() else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m snntorch_clif.build``: compile the kernels for the installed torch into the cache."""
    parser = argparse.ArgumentParser(
        prog="python -m snntorch_clif.build",
        description="Rebuild snntorch-clif's fused kernels for the installed PyTorch (into a cache folder "
        "the package loads when its installed library does not load).",
    )
    parser.add_argument("--cuda", choices=("auto", "1", "0"), default=os.environ.get("SNNTORCH_CLIF_CUDA", "auto"),
                        help="build the CUDA kernel: auto (when nvcc and a CUDA torch are found), 1 (must), 0 (never)")
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.in_process:
        # Compile (and test-load) in a fresh interpreter that has not imported snntorch_clif: a
        # process that already loaded a library registering the ops cannot load a second one.
        child = [sys.executable, str(Path(__file__).resolve()), "--in-process", "--cuda", args.cuda]
        return subprocess.run(child + (["--verbose"] if args.verbose else [])).returncode
    return _compile(env_switch("--cuda", {"--cuda": args.cuda}), args.verbose)


def _compile(cuda_switch: str, verbose: bool) -> int:
    cuda_home = find_cuda_home() if cuda_switch != "off" else None
    if cuda_home:
        os.environ["CUDA_HOME"] = cuda_home  # read once, when torch.utils.cpp_extension is imported
    import torch
    from torch.utils import cpp_extension

    has_nvcc = bool(cuda_home) and os.path.exists(os.path.join(str(cuda_home), "bin", "nvcc"))
    with_cuda = has_nvcc and torch.version.cuda is not None and cuda_switch != "off"
    if cuda_switch == "on" and not with_cuda:
        print(f"--cuda 1 but nvcc was not found (CUDA_HOME={cuda_home}) or torch {torch.__version__} "
              "is not a CUDA build", file=sys.stderr)
        return 2
    out = cache_dir(torch.__version__)
    out.mkdir(parents=True, exist_ok=True)
    openmp = openmp_config()
    cflags = [*CXX_FLAGS, *openmp.cflags]
    arch_list = ""
    if with_cuda:
        arch_list = _device_arch_list()
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch_list
        cflags += [f"-D{CUDA_MACRO}", f"-DSNNTORCH_CLIF_CUDA_ARCHS={arch_macro_value(arch_list)}"]
    what = f"CPU + CUDA ({arch_list})" if with_cuda else "CPU"
    print(f"snntorch-clif: building the {what} kernels for torch {torch.__version__} into {out}", file=sys.stderr)
    print(f"snntorch-clif: {openmp.summary}", file=sys.stderr)
    cpp_extension.load(  # builds out/_C.so, then loads it here: a library that does not load fails now
        name="_C",
        sources=source_files(with_cuda),
        extra_cflags=cflags,
        extra_cuda_cflags=[f"-D{CUDA_MACRO}", *NVCC_FLAGS] if with_cuda else None,
        extra_ldflags=list(openmp.ldflags),
        build_directory=str(out),
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=verbose,
    )
    print(f"snntorch-clif: built {out / '_C.so'}; new Python processes load it when the installed library "
          "does not (check: python -c 'import snntorch_clif; print(snntorch_clif.backends())')", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
