"""Building and loading the kernels (snntorch_clif/build.py and _build.py, the loading in snntorch_clif/ops.py,
the GPU check in snntorch_clif/backends.py): CUDA architectures against simulated GPUs, a
library built for another torch, and the rebuild command. No GPU is needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import types
import warnings
from pathlib import Path

import pytest
import torch

import snntorch_clif
from snntorch_clif import _build, backends, build, ops
from snntorch_clif import surrogate as sg

OLD_DEFAULT = "8.0;9.0+PTX"  # before issue 9: no T4

# (GPU, compute capability)
T4, V100, A100, A10, ORIN, L4, H100, B200, RTX5090 = (
    (7, 5), (7, 0), (8, 0), (8, 6), (8, 7), (8, 9), (9, 0), (10, 0), (12, 0)
)


# --- which GPUs a library runs on ------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch_list", "capability", "runs"),
    [
        (build.DEFAULT_CUDA_ARCHS, T4, True),
        (build.DEFAULT_CUDA_ARCHS, A100, True),
        (build.DEFAULT_CUDA_ARCHS, A10, True),
        (build.DEFAULT_CUDA_ARCHS, ORIN, True),  # sm_86 cubin, minor 7 >= 6
        (build.DEFAULT_CUDA_ARCHS, L4, True),
        (build.DEFAULT_CUDA_ARCHS, H100, True),
        (build.DEFAULT_CUDA_ARCHS, B200, True),  # through the 9.0 PTX
        (build.DEFAULT_CUDA_ARCHS, RTX5090, True),
        (build.DEFAULT_CUDA_ARCHS, V100, False),  # older than every target
        (OLD_DEFAULT, T4, False),  # the issue: "no kernel image is available"
        (OLD_DEFAULT, A10, True),  # sm_80 cubin runs on 8.6
        (OLD_DEFAULT, B200, True),
        ("8.0", H100, False),  # a cubin does not run on another major version, no PTX
        ("8.6", A100, False),  # nor on a lower minor
        ("8.0+PTX", H100, True),  # PTX runs on anything newer
        ("9.0+PTX", A100, False),  # but not on older
        ("9.0a", H100, True),  # arch-specific: exactly 9.0
        ("9.0a", (9, 1), False),
        ("7.5 8.0,8.6;9.0", L4, True),  # any separator
    ],
)
def test_arch_runs_on(arch_list: str, capability: tuple[int, int], runs: bool) -> None:
    assert build.arch_runs_on(capability, build.parse_arch_list(arch_list)) is runs


def test_default_arch_list_covers_t4_to_h100() -> None:
    archs = build.parse_arch_list(build.DEFAULT_CUDA_ARCHS)
    assert [(a.major, a.minor) for a in archs] == [T4, A100, A10, L4, H100]
    assert archs[-1].ptx and not any(a.ptx for a in archs[:-1])


def test_parse_arch_list_skips_what_it_cannot_read() -> None:
    assert build.parse_arch_list("native") == []
    assert build.parse_arch_list("") == []
    assert build.parse_arch_list("Ampere;8.0") == [build.Arch(8, 0, False, False)]
    assert build.parse_arch_list("9.0a+PTX") == [build.Arch(9, 0, True, True)]


@pytest.mark.parametrize(
    ("env", "capabilities", "max_supported", "expected"),
    [
        (None, [], None, build.DEFAULT_CUDA_ARCHS),  # no GPU: the default list
        ("", [], None, build.DEFAULT_CUDA_ARCHS),
        ("native", [], None, build.DEFAULT_CUDA_ARCHS),
        ("8.0;9.0", [T4], None, "8.0;9.0"),  # the user's list wins
        (None, [A10], None, "8.6+PTX"),  # the visible GPU
        (None, [H100, A100, H100], None, "8.0;9.0+PTX"),  # each GPU once, newest with PTX
        (None, [RTX5090], (10, 0), "10.0+PTX"),  # newer than the toolkit: clamped, as torch does
    ],
)
def test_resolve_cuda_arch_list(env, capabilities, max_supported, expected) -> None:  # noqa: ANN001
    assert build.resolve_cuda_arch_list(env, capabilities, max_supported) == expected


def test_arch_macro_value_has_no_semicolons() -> None:
    assert _build.arch_macro_value("7.5;8.0 9.0+PTX") == "7.5,8.0,9.0+PTX"


# --- an unsupported GPU at run time ------------------------------------------------------------
def test_cuda_arch_problem_names_gpu_archs_and_command() -> None:
    assert backends.cuda_arch_problem(H100, ("8.0", "9.0+PTX")) is None
    assert backends.cuda_arch_problem(T4, ()) is None  # nothing recorded: trusted
    problem = backends.cuda_arch_problem(T4, ("8.0", "9.0+PTX"), "Tesla T4")
    assert problem is not None
    for part in ("Tesla T4", "7.5", "8.0, 9.0+PTX", build.REBUILD_COMMAND):
        assert part in problem


def fake_gpu(capability: tuple[int, int], name: str = "Tesla T4") -> types.SimpleNamespace:
    """What torch.cuda.get_device_properties returns, as far as backends reads it."""
    return types.SimpleNamespace(major=capability[0], minor=capability[1], name=name)


@pytest.fixture
def simulated_t4(monkeypatch: pytest.MonkeyPatch) -> None:
    """A visible Tesla T4 and a library with a CUDA kernel built for 8.0 and 9.0+PTX."""
    monkeypatch.setattr(ops, "AVAILABLE", True)
    monkeypatch.setattr(ops, "_KERNELS", {"cpu": True, "cuda": True})
    monkeypatch.setattr(ops, "_C", types.SimpleNamespace(CUDA_ARCHS="8.0,9.0+PTX", WITH_CUDA=1, cpu_isa=lambda: "avx2"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=None: fake_gpu(T4))
    monkeypatch.setattr(backends, "_cuda_device_problems", {})
    monkeypatch.setattr(backends, "_warned", set())


def test_unsupported_gpu_runs_the_reference_with_one_warning(simulated_t4: None) -> None:
    # fused_unsupported_reason reads only is_cpu, the device and the dtype of its input
    x = types.SimpleNamespace(is_cpu=False, device=torch.device("cuda", 0), dtype=torch.float16)
    with pytest.warns(RuntimeWarning, match=r"Tesla T4 \(compute capability 7\.5\).*reference path"):
        reason = backends.fused_unsupported_reason(x, sg.ATan(), False, None)
    assert reason is not None and build.REBUILD_COMMAND in reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once
        assert backends.fused_unsupported_reason(x, sg.ATan(), False, None) == reason


def test_backends_reports_an_unsupported_gpu(simulated_t4: None) -> None:
    info = snntorch_clif.backends()
    assert info.cuda_archs == ("8.0", "9.0+PTX")
    assert info.devices["cuda"].startswith("reference (Tesla T4 (compute capability 7.5)")
    assert "Tesla T4" in str(info)


def test_supported_gpu_is_fused(simulated_t4: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index=None: fake_gpu(A10, "NVIDIA A10"))
    x = types.SimpleNamespace(is_cpu=False, device=torch.device("cuda", 0), dtype=torch.float16)
    assert backends.fused_unsupported_reason(x, sg.ATan(), False, None) is None
    assert snntorch_clif.backends().devices["cuda"] == "fused"


# --- the build record and the rebuild cache ------------------------------------------------------
def test_build_info_round_trips() -> None:
    text = _build.build_info_text("2.3.0+cu121", "12.1", True, True, "7.5;9.0+PTX")
    fields: dict = {}
    exec(text, fields)  # noqa: S102 - our own generated file
    assert (fields["TORCH_VERSION"], fields["COMPILED"], fields["WITH_CUDA"], fields["CUDA_ARCHS"]) == (
        "2.3.0+cu121", True, True, "7.5,9.0+PTX"
    )


def test_cache_is_keyed_by_torch_and_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNNTORCH_CLIF_CACHE", str(tmp_path / "cache"))
    assert build.cache_dir("2.3.0").parent == tmp_path / "cache"
    assert build.cache_dir("2.3.0") != build.cache_dir("2.4.0")
    assert build.cached_library("2.3.0") is None
    (build.cache_dir("2.3.0")).mkdir(parents=True)
    (build.cache_dir("2.3.0") / "_C.so").write_bytes(b"")
    assert build.cached_library("2.3.0") == build.cache_dir("2.3.0") / "_C.so"
    # other kernel sources: another key, so a library built from old sources is never loaded
    csrc = tmp_path / "csrc"
    shutil.copytree(_build.CSRC, csrc)
    before = _build.sources_digest(csrc)
    assert before == _build.sources_digest(_build.CSRC)
    with open(csrc / "register.cpp", "a") as f:
        f.write("\n// changed\n")
    assert _build.sources_digest(csrc) != before


def test_csrc_ships_with_the_package() -> None:
    # python -m snntorch_clif.build compiles the installed package's sources
    config = (Path(__file__).resolve().parents[1] / "setup.cfg").read_text()
    assert "[options.package_data]" in config
    for pattern in ("csrc/*.h", "csrc/*.cpp", "csrc/*/*.cpp", "csrc/*/*.cu"):
        assert pattern in config
    for source in _build.source_files(with_cuda=True):
        assert Path(source).is_file()


# --- a library that does not load ---------------------------------------------------------------
def _package_copy(root: Path, built_for: str) -> Path:
    """A copy of the package whose ``_C`` is not a loadable library, recorded as built for ``built_for``."""
    package = root / "snntorch_clif"
    shutil.copytree(Path(snntorch_clif.__file__).parent, package,
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "_build_info.py"))
    (package / f"_C{sysconfig.get_config_var('EXT_SUFFIX')}").write_bytes(b"not a shared library")
    (package / "_build_info.py").write_text(_build.build_info_text(built_for, "12.1", True, False, ""))
    return root


def _run(code: str, pythonpath: Path, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(pythonpath), SNNTORCH_CLIF_CACHE=str(cache))
    cmd = [sys.executable, *args] if args else [sys.executable, "-W", "always", "-c", textwrap.dedent(code)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=pythonpath)


REPORT = """
    import torch, snntorch_clif
    from snntorch_clif import clif_sequence, ops
    x = torch.rand(6, 4, 5)
    clif_sequence(x); clif_sequence(x)
    info = snntorch_clif.backends()
    print(info.devices["cpu"]); print(info.built_for_torch); print(ops.LIBRARY_PATH)
"""


def test_library_built_for_another_torch_warns_once_with_the_fix(tmp_path: Path) -> None:
    root = _package_copy(tmp_path / "pkg", built_for="2.3.0+cu121")
    proc = _run(REPORT, root, tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("RuntimeWarning") == 1, proc.stderr
    warning = proc.stderr
    for part in ("could not be loaded", "built for torch 2.3.0+cu121", f"torch {torch.__version__} is running",
                 "python -m snntorch_clif.build"):
        assert part in warning, warning
    devices_cpu, built_for, path = proc.stdout.splitlines()
    assert devices_cpu.startswith("reference (extension not loaded") and "python -m snntorch_clif.build" in devices_cpu
    assert built_for == "2.3.0+cu121"
    assert path == "None"


@pytest.mark.slow
def test_rebuild_command_fixes_a_library_that_does_not_load(tmp_path: Path) -> None:
    root = _package_copy(tmp_path / "pkg", built_for="2.3.0+cu121")
    cache = tmp_path / "cache"
    built = _run("", root, cache, "-m", "snntorch_clif.build", "--cuda", "0")
    assert built.returncode == 0, built.stderr[-3000:]
    proc = _run(REPORT + """
    from snntorch_clif import backends
    with backends.use_reference():
        ref = clif_sequence(x, return_sequences=True)
    fused = clif_sequence(x, return_sequences=True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ref, fused))
    """, root, cache)
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeWarning" not in proc.stderr, proc.stderr
    devices_cpu, _, path = proc.stdout.splitlines()
    assert devices_cpu == "fused"
    assert Path(path).parent.parent == cache
