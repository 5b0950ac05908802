"""The build on machines other than this one (snntorch_clif/_build.py, setup.py, the Makefile, setup.cfg).

* A compiler that refuses ``-fopenmp`` (Apple's clang) builds a working CPU kernel without
  it: the OpenMP probe against stand-in compilers, and a whole ``setup.py build_ext`` with
  clang dressed up as Apple's, whose library then loads and matches the reference.
* The CPU kernel compiles for aarch64 (Debian's cross compiler, and clang for aarch64
  without OpenMP, the closest this machine gets to a Mac with Apple silicon), against the
  installed torch's headers (compile only).
* ``make test`` builds the CUDA kernel exactly when nvcc is there, and says so.
* ``SNNTORCH_CLIF_STRICT_SKIPS=1`` (CI) turns a skip for a missing build or tool into a failure.
* The ``[tutorials]`` extra holds everything the notebooks import, and Jupyter: checked in an
  environment that has only what ``pip install ".[tutorials]"`` would install.

The compiler tests need ``clang++`` and ``aarch64-linux-gnu-g++`` (Debian: ``apt-get install
clang g++-aarch64-linux-gnu``; ``.ci/run`` installs them) and skip without them.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig
import textwrap
import venv
from importlib import metadata
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from snntorch_clif import _build

ROOT = Path(__file__).resolve().parents[1]
CLANG = shutil.which("clang++")
AARCH64_GXX = shutil.which("aarch64-linux-gnu-g++")
HOST_CXX = shutil.which("c++") or shutil.which("g++") or CLANG


def _gcc() -> str | None:
    """GCC's g++ (on macOS ``g++`` is Apple's clang, which has no OpenMP)."""
    gxx = shutil.which("g++")
    if gxx is None:
        return None
    version = subprocess.run([gxx, "--version"], capture_output=True, text=True).stdout
    return gxx if "Free Software Foundation" in version else None


GCC = _gcc()
needs_clang = pytest.mark.skipif(CLANG is None, reason="needs clang++ (Debian: apt-get install clang)")
needs_aarch64 = pytest.mark.skipif(
    AARCH64_GXX is None, reason="needs aarch64-linux-gnu-g++ (Debian: apt-get install g++-aarch64-linux-gnu)"
)
needs_host_cxx = pytest.mark.skipif(HOST_CXX is None, reason="no C++ compiler (c++, g++ or clang++)")

# The entry points of an OpenMP parallel region: GCC's libgomp and LLVM's libomp.
OPENMP_RUNTIME_SYMBOLS = (b"GOMP_parallel", b"__kmpc_fork_call")
EM_X86_64, EM_AARCH64 = 62, 183


def apple_clang(tmp_path: Path, real: str) -> str:
    """A compiler that behaves like Apple's clang on ``-fopenmp`` (refuses it) and runs ``real`` otherwise."""
    script = tmp_path / "apple-clang++"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        for arg in "$@"; do
          if [ "$arg" = "-fopenmp" ]; then echo "clang: error: unsupported option '-fopenmp'" >&2; exit 1; fi
        done
        exec {real} "$@"
        """))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


# --- the OpenMP probe -------------------------------------------------------------------------
def test_cxx_compiler_is_the_one_torch_runs() -> None:
    assert _build.cxx_compiler({}) == ["c++"]
    assert _build.cxx_compiler({"CXX": "ccache clang++"}) == ["ccache", "clang++"]


@pytest.mark.skipif(GCC is None, reason="no GCC")
def test_openmp_when_the_compiler_has_it() -> None:
    config = _build.openmp_config([GCC], switch="auto")
    assert (config.cflags, config.ldflags, config.threads) == (("-fopenmp",), ("-fopenmp",), True)
    assert "with OpenMP" in config.summary


@needs_host_cxx
def test_a_compiler_without_openmp_builds_without_it(tmp_path: Path) -> None:
    config = _build.openmp_config([apple_clang(tmp_path, HOST_CXX)], switch="auto")
    assert "-fopenmp" not in config.cflags and config.ldflags == () and not config.threads
    assert config.cflags in ((), ("-fopenmp-simd",))
    assert "does not compile and link -fopenmp" in config.summary and "threads do not need OpenMP" in config.summary


@needs_host_cxx
def test_openmp_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    off = _build.openmp_config([HOST_CXX], switch="off")
    assert not off.threads and "-fopenmp" not in off.cflags and "SNNTORCH_CLIF_OPENMP=0" in off.summary
    monkeypatch.setenv("SNNTORCH_CLIF_OPENMP", "0")  # the default switch is the environment's
    assert not _build.openmp_config([HOST_CXX]).threads
    monkeypatch.setenv("SNNTORCH_CLIF_OPENMP", "maybe")
    with pytest.raises(SystemExit, match="SNNTORCH_CLIF_OPENMP must be 1, 0 or auto"):
        _build.openmp_config([HOST_CXX])
    fake = apple_clang(tmp_path, HOST_CXX)
    with pytest.raises(SystemExit, match=r"SNNTORCH_CLIF_OPENMP=1 but the C\+\+ compiler \(.*apple-clang\+\+\)"):
        _build.openmp_config([fake], switch="on")


def test_build_info_records_openmp() -> None:
    def fields(text: str) -> dict:
        namespace: dict = {}
        exec(text, namespace)  # noqa: S102 - our own generated file
        return namespace

    assert fields(_build.build_info_text("2.5.0", None, True, False, "", openmp=False))["OPENMP"] is False
    assert fields(_build.build_info_text("2.5.0", None, True, False, "", openmp=True))["OPENMP"] is True
    assert fields(_build.build_info_text("2.5.0", None, False, False, "", openmp=True))["OPENMP"] is False


# --- whole builds and cross compiles ------------------------------------------------------------
def _package_tree(dest: Path) -> Path:
    """What ``setup.py`` needs of the repository: its metadata files and the package without built files."""
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "snntorch_clif", dest / "snntorch_clif",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "_build_info.py"))
    return dest


CHECK_BUILT = """
    import torch, snntorch_clif
    from snntorch_clif import _build_info, backends, clif_sequence, ops
    assert ops.LIBRARY_PATH is not None and ops.LIBRARY_PATH.startswith({root!r}), ops.LIBRARY_PATH
    assert backends.report().devices["cpu"] == "fused", snntorch_clif.backends()
    assert _build_info.OPENMP is False and _build_info.COMPILED is True
    torch.manual_seed(0)
    x = torch.randn(20, 4, 3000, dtype=torch.float64, requires_grad=True)
    beta = torch.full((3000,), 0.6, dtype=torch.float64, requires_grad=True)
    def run():
        spk, comp, mem = clif_sequence(x, beta=beta, return_sequences=True)
        (grads := torch.autograd.grad((spk * 1.3 + comp * 0.7 - mem * 0.2).sum(), (x, beta)))
        return (spk, comp, mem, *grads)
    fused = run()
    with backends.use_reference():
        ref = run()
    for name, a, b in zip(("spk", "comp", "mem", "dx", "dbeta"), fused, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=name)
    torch.set_num_threads(2)  # without OpenMP the kernel still shares a call with a helper thread
    backends.cpu_threads(policy="threads")
    before = backends.cpu_threads().threaded_calls
    threaded = run()
    assert backends.cpu_threads().threaded_calls > before, backends.cpu_threads()
    for name, a, b in zip(("spk", "comp", "mem", "dx", "dbeta"), threaded, fused):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    print(ops.LIBRARY_PATH)
"""


@pytest.mark.slow
@needs_clang
def test_clang_without_openmp_builds_a_working_kernel(tmp_path: Path) -> None:
    """``pip install`` on a Mac, as far as Linux can show it: clang that refuses ``-fopenmp``."""
    tree = _package_tree(tmp_path)
    env = dict(os.environ, CXX=apple_clang(tmp_path, CLANG), SNNTORCH_CLIF_CUDA="0", MAX_JOBS="2")
    env.pop("SNNTORCH_CLIF_OPENMP", None)
    build = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, env=env,
                           capture_output=True, text=True, timeout=1200)
    log = build.stdout + build.stderr
    assert build.returncode == 0, log[-5000:]
    assert "apple-clang++ does not compile and link -fopenmp: built with" in log
    libraries = list((tree / "snntorch_clif").glob("_C*.so"))
    assert len(libraries) == 1, libraries
    blob = libraries[0].read_bytes()
    assert not [s for s in OPENMP_RUNTIME_SYMBOLS if s in blob], "a library built without OpenMP calls its runtime"
    check = subprocess.run([sys.executable, "-c", textwrap.dedent(CHECK_BUILT.format(root=str(tree)))], cwd=tree,
                           env=dict(os.environ, PYTHONPATH=str(tree), SNNTORCH_CLIF_CACHE=str(tmp_path / "cache")),
                           capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stderr[-5000:]


def _compile_only(compiler: list[str], openmp: _build.OpenMP, source: Path, output: Path) -> subprocess.CompletedProcess:
    """``compiler -c source`` with the build's flags (those setup.py and torch's cpp_extension pass)."""
    flags = [*_build.CXX_FLAGS, *openmp.cflags,
             "-std=c++20", "-fPIC", "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C",
             f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
    includes = [arg for path in [*cpp_extension.include_paths(), sysconfig.get_paths()["include"]]
                for arg in ("-isystem", path)]
    return subprocess.run([*compiler, *flags, *includes, "-c", str(source), "-o", str(output)],
                          capture_output=True, text=True, timeout=900)


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF object"
    return struct.unpack_from("<H", header, 18)[0]


CPU_KERNEL = ROOT / "snntorch_clif" / "csrc" / "cpu" / "clif_cpu.cpp"


@pytest.mark.slow
@needs_aarch64
def test_cpu_kernel_compiles_for_aarch64(tmp_path: Path) -> None:
    """Linux on ARM (Graviton, Grace, Jetson): GCC with OpenMP, the kernel's aarch64 branches (FPCR, no x86 variants)."""
    openmp = _build.openmp_config([AARCH64_GXX], switch="auto")
    assert openmp.threads, openmp.summary
    out = tmp_path / "clif_cpu.o"
    result = _compile_only([AARCH64_GXX], openmp, CPU_KERNEL, out)
    assert result.returncode == 0, result.stderr[-5000:]
    assert _elf_machine(out) == EM_AARCH64


@pytest.mark.slow
@needs_clang
@needs_aarch64  # clang finds the aarch64 C++ headers (libstdc++) that the cross compiler installs
def test_cpu_kernel_compiles_for_aarch64_with_clang_without_openmp(tmp_path: Path) -> None:
    """The closest to Apple silicon this machine gets: clang, aarch64, no ``-fopenmp``."""
    target = "--target=aarch64-linux-gnu"
    openmp = _build.openmp_config([apple_clang(tmp_path, CLANG), target], switch="auto")
    assert "-fopenmp" not in openmp.cflags and not openmp.threads
    out = tmp_path / "clif_cpu.o"
    result = _compile_only([CLANG, target], openmp, CPU_KERNEL, out)
    assert result.returncode == 0, result.stderr[-5000:]
    assert _elf_machine(out) == EM_AARCH64


# --- make test and nvcc --------------------------------------------------------------------------
MAKE = shutil.which("make")
NO_NVCC_LINE = "make test: no nvcc found (CUDA_HOME, CUDA_PATH, /usr/local/cuda, PATH): CPU kernel only"


def _make_test_dry_run(tmp_path: Path, **env_updates: str) -> str:
    """What ``make test`` would run (``make -n``) on a fresh clone (a virtual environment not yet made)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_HOME", "CUDA_PATH", "SNNTORCH_CLIF_CUDA", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(env_updates)
    result = subprocess.run([MAKE, "-n", "-C", str(ROOT), "test", f"VENV={tmp_path / 'venv'}"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _fake_toolkit(tmp_path: Path) -> Path:
    home = tmp_path / "cuda"
    (home / "bin").mkdir(parents=True)
    nvcc = home / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\nexit 0\n")
    nvcc.chmod(0o755)
    return home


@pytest.mark.skipif(MAKE is None, reason="no make")
def test_make_test_builds_cuda_exactly_when_nvcc_is_there(tmp_path: Path) -> None:
    empty = tmp_path / "no-toolkit"
    empty.mkdir()
    toolkit = _fake_toolkit(tmp_path)
    # CUDA_HOME is where the build looks first (snntorch_clif/_build.py), so it hides /usr/local/cuda.
    without = _make_test_dry_run(tmp_path, CUDA_HOME=str(empty))
    assert without.count(NO_NVCC_LINE) == 1, without
    assert "SNNTORCH_CLIF_CUDA=0 " in without and "SNNTORCH_CLIF_CUDA=1 " not in without
    assert "touch " + str(tmp_path / "venv" / ".snntorch-clif-installed-cpu") in without

    with_nvcc = _make_test_dry_run(tmp_path, CUDA_HOME=str(toolkit))
    assert f"make test: building the CPU and the CUDA kernels (nvcc: {toolkit}/bin/nvcc)" in with_nvcc
    assert "SNNTORCH_CLIF_CUDA=1 " in with_nvcc and "SNNTORCH_CLIF_CUDA=0 " not in with_nvcc
    assert "touch " + str(tmp_path / "venv" / ".snntorch-clif-installed-cuda") in with_nvcc

    switched_off = _make_test_dry_run(tmp_path, CUDA_HOME=str(toolkit), SNNTORCH_CLIF_CUDA="0")
    assert "make test: SNNTORCH_CLIF_CUDA=0: CPU kernel only" in switched_off and "SNNTORCH_CLIF_CUDA=0 " in switched_off

    forced = _make_test_dry_run(tmp_path, CUDA_HOME=str(empty), SNNTORCH_CLIF_CUDA="1")  # CI: fails in the build
    assert "none found: the build will fail" in forced and "SNNTORCH_CLIF_CUDA=1 " in forced


# --- SNNTORCH_CLIF_STRICT_SKIPS -----------------------------------------------------------------
SAMPLE_TESTS = '''
import pytest

def test_cuda_build():
    pytest.skip("the CUDA kernel was not built")

@pytest.mark.skipif(True, reason="needs nvcc")
def test_nvcc():
    pass

def test_clang():
    pytest.skip("needs clang++ (Debian: apt-get install clang)")

def test_gpu():
    pytest.skip("needs a CUDA device")

@pytest.mark.xfail(reason="fused kernels not built", strict=True)
def test_expected_failure():
    assert False
'''


def _outcomes(tmp_path: Path, strict: bool) -> dict[str, str]:
    import xml.etree.ElementTree as ET

    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    shutil.copy2(ROOT / "tests" / "conftest.py", tests / "conftest.py")
    (tests / "test_sample.py").write_text(SAMPLE_TESTS)
    report = tmp_path / f"report-{strict}.xml"
    env = dict(os.environ, SNNTORCH_CLIF_STRICT_SKIPS="1" if strict else "0", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                    f"--junitxml={report}", str(tests)], env=env, cwd=tmp_path, capture_output=True, timeout=300)
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        outcomes[case.get("name")] = kinds[0] if kinds else "passed"
    return outcomes


def test_strict_skips_turn_a_missing_build_or_tool_into_a_failure(tmp_path: Path) -> None:
    assert _outcomes(tmp_path, strict=False) == {
        "test_cuda_build": "skipped", "test_nvcc": "skipped", "test_clang": "skipped", "test_gpu": "skipped",
        "test_expected_failure": "skipped",  # junit's spelling of xfail
    }
    strict = _outcomes(tmp_path, strict=True)
    assert {name: kind in ("failure", "error") for name, kind in strict.items()} == {
        "test_cuda_build": True, "test_nvcc": True, "test_clang": True,
        "test_gpu": False,  # a GPU is not a build tool: CI has none
        "test_expected_failure": False,
    }


# --- the [tutorials] extra -----------------------------------------------------------------------
def _extra_requirements(extra: str) -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")

    def lines(value: str) -> list[str]:
        return [line.split("#")[0].strip() for line in value.splitlines() if line.split("#")[0].strip()]

    return lines(config["options"]["install_requires"]) + lines(config["options.extras_require"][extra])


def _installed_closure(requirements: list[str]) -> tuple[dict[str, metadata.Distribution], list[str]]:
    """The installed distributions ``pip install`` of ``requirements`` would bring, and those not installed here."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, metadata.Distribution] = {}
    extras: dict[str, set[str]] = {}
    missing: list[str] = []
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in found and set(req.extras) <= extras[name]:
            continue
        try:
            dist = found.get(name) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        found[name] = dist
        extras.setdefault(name, set()).update(req.extras)
        for text in dist.requires or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras[name] | {""}):
                todo.append(child)
    return found, missing


def _notebook_imports() -> list[str]:
    statements = set()
    for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "\n".join(line for line in "".join(cell["source"]).splitlines()
                               if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and not node.level):
                    statements.add(ast.unparse(node))
    return sorted(statements)


def test_tutorials_extra_installs_what_the_notebooks_import_and_jupyter(tmp_path: Path) -> None:
    requirements = _extra_requirements("tutorials")
    found, missing = _installed_closure(requirements)
    assert not missing, f"not installed in this environment (make installs the [tutorials] extra): {missing}"
    imports = _notebook_imports()
    assert "import snntorch.spikeplot as splt" in imports  # the statement tutorial 1 starts with
    # An environment holding exactly those distributions (links into this one) and the package under test.
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False, symlinks=True)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    for dist in found.values():
        base = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or []}:
            if top not in ("..", "__pycache__") and (base / top).exists() and not (site / top).exists():
                (site / top).symlink_to(base / top)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg",
           "PYTHONNOUSERSITE": "1"}
    run = subprocess.run([python, "-c", "\n".join([*imports, "import ipykernel.kernelapp"])], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"a notebook import fails with only the [tutorials] extra installed:\n{run.stderr[-3000:]}"
    lab = subprocess.run([python, "-m", "jupyterlab", "--version"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert lab.returncode == 0 and re.match(r"\d+\.\d+", lab.stdout), lab.stderr[-3000:]
