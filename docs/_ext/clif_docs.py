"""Sphinx directives that write parts of the site from the code and the data while it builds.

* ``.. clif-api::`` documents the public API of :mod:`snntorch_clif`: the names the package
  exports (``snntorch_clif.__all__``), then each public module (the modules the package
  exports, and ``PUBLIC_MODULES``), with the names in its ``__all__`` less the internals named
  in ``INTERNAL_NAMES``. Every other submodule is internal and listed in ``INTERNAL_MODULES``;
  ``tests/test_docs.py`` fails on a submodule that is in neither list.
* ``.. clif-gpu-results::`` renders a table from each ``benchmarks/results/gpu_*.json`` written
  by ``benchmarks/bench_gpu.py``, with a GB/s column, or says that none is committed.
* ``.. clif-cuda-resources::`` renders ``benchmarks/results/cuda_resources_<arch>.json``
  (``benchmarks/cuda_resources.py``): registers and local memory of the compiled CUDA kernels.

Nothing is written into the source tree.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import pkgutil
from pathlib import Path
from types import ModuleType

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

PACKAGE = "snntorch_clif"
ROOT = Path(__file__).resolve().parents[2]
GPU_RESULTS = "benchmarks/results/gpu_*.json"
# public modules beyond those the package exports (snntorch_clif.__all__)
PUBLIC_MODULES = ("recipes",)
# submodules whose public objects are exported at the top (documented there), and internals
INTERNAL_MODULES = ("build", "demo", "neuron", "ops", "recurrent", "swap")
# names in a public module's __all__ that are not for users
INTERNAL_NAMES = {
    "backends": ("cuda_arch_problem", "fused_unsupported_reason"),
    "convert": ("install_export_guard",),
    "recipes": ("main",),
}


# --- API ------------------------------------------------------------------------------
def public_modules(package: ModuleType) -> list[str]:
    """The public submodules: those the package exports, then ``PUBLIC_MODULES``."""
    exported = [name for name in package.__all__ if inspect.ismodule(getattr(package, name))]
    return exported + [name for name in PUBLIC_MODULES if name not in exported]


def submodules(package: ModuleType) -> list[str]:
    """Every submodule without a leading underscore, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def module_public_names(module: ModuleType) -> list[str]:
    """``__all__`` (or the public functions and classes it defines) less ``INTERNAL_NAMES``."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == module.__name__
        ]
    hidden = INTERNAL_NAMES.get(module.__name__.rpartition(".")[2], ())
    return [name for name in names if name not in hidden]


def _directive_for(obj: object) -> str:
    if inspect.isclass(obj):
        return "autoclass"
    if callable(obj) or inspect.ismodule(obj):
        return "autofunction"
    return "autodata"


def api_rst() -> list[str]:
    """The reStructuredText of the API reference."""
    package = importlib.import_module(PACKAGE)
    exported = {name: getattr(package, name) for name in package.__all__}
    top = {name: obj for name, obj in exported.items() if not inspect.ismodule(obj)}
    lines = [
        "The package",
        "-----------",
        "",
        f".. automodule:: {PACKAGE}",
        "",
        f"Everything below is importable as ``from {PACKAGE} import <name>``.",
        "",
    ]
    for name, obj in top.items():
        lines += [f".. {_directive_for(obj)}:: {PACKAGE}.{name}"]
        if inspect.isclass(obj):
            lines += ["   :members:"]
        lines += [""]
    for short in public_modules(package):
        module = importlib.import_module(f"{PACKAGE}.{short}")
        names = module_public_names(module)
        already = [n for n in names if any(getattr(module, n, None) is obj for obj in top.values())]
        own = [n for n in names if n not in already]
        title = f"``{PACKAGE}.{short}``"
        lines += [title, "-" * len(title), "", f".. automodule:: {PACKAGE}.{short}", ""]
        for name in own:
            obj = getattr(module, name)
            lines += [f".. {_directive_for(obj)}:: {PACKAGE}.{short}.{name}"]
            if inspect.isclass(obj):
                lines += ["   :members:"]
            lines += [""]
        if already:
            refs = ", ".join(f":obj:`{PACKAGE}.{n}`" for n in already)
            lines += [f"Also defined here, documented above: {refs}.", ""]
    return lines


class ClifApi(SphinxDirective):
    """``.. clif-api::``: the API reference of :mod:`snntorch_clif`."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(api_rst(), source="<clif-api>"), container)
        return container.children


# --- GPU results -------------------------------------------------------------------------
def result_files() -> list[Path]:
    """The committed results of ``bench_gpu.py``, sorted by name."""
    return sorted(ROOT.glob(GPU_RESULTS))


def _ratio(impl: dict) -> str:
    for key, value in impl.items():
        if key.startswith("median_ratio") and isinstance(value, (int, float)):
            return f"{value:.2f}"
    return ""


def _has_bandwidth(result: dict) -> bool:
    return any("bytes_per_s" in impl for case in result["rows"] for impl in case.get("impl", {}).values())


def _table_rows(result: dict) -> list[list[str]]:
    with_gbs = _has_bandwidth(result)
    rows = []
    for case in result["rows"]:
        shape = f"{case.get('T', '?')}x{case.get('B', '?')}x{case.get('N', '?')}"
        for name, impl in case.get("impl", {}).items():
            label = f"{name[:-5]} (single step)" if name.endswith("_step") else name
            ms = impl.get("median_ms")
            rate = impl.get("neuron_steps_per_s")
            rows.append([
                shape, label,
                f"{ms:.3f}" if isinstance(ms, (int, float)) else impl.get("error", ""),
                f"{rate / 1e6:.1f}" if isinstance(rate, (int, float)) else "",
                _ratio(impl),
            ])
            if with_gbs:
                gbs = impl.get("bytes_per_s")
                rows[-1].append(f"{gbs / 1e9:.0f}" if isinstance(gbs, (int, float)) else "")
        floor = case.get("floor_ms")
        if isinstance(floor, (int, float)):
            fused = case.get("impl", {}).get("fused", {}).get("median_ms")
            steps = case.get("neuron_steps")
            rows.append([
                shape, "floor (32 B / neuron-step)", f"{floor:.3f}",
                f"{steps / floor / 1e3:.1f}" if isinstance(steps, (int, float)) and floor else "",
                f"{floor / fused:.2f}" if isinstance(fused, (int, float)) and fused else "",
            ])
            if with_gbs:
                bandwidth = result.get("copy_bandwidth_bytes_per_s")
                rows[-1].append(f"{bandwidth / 1e9:.0f}" if isinstance(bandwidth, (int, float)) else "")
    return rows


def benchmark_rst(paths: list[Path]) -> list[str]:
    if not paths:
        return [
            ".. note::",
            "",
            "   No GPU results are committed: the CUDA kernel has not been timed on a GPU yet.",
            "   ``make gpu-check`` on a machine with one writes ``benchmarks/results/gpu_<device>_<dtype>.json``,",
            "   and this page renders every such file when the site builds.",
            "",
        ]
    lines: list[str] = []
    for path in paths:
        rel = path.relative_to(ROOT).as_posix()
        title = f"``{rel}``"
        lines += [title, "~" * len(title), ""]
        try:
            result = json.loads(path.read_text())
            rows = _table_rows(result)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            lines += [f"*Not shown: this file is not a bench_gpu.py result ({type(exc).__name__}).*", ""]
            continue
        facts = [
            ("date", result.get("date")),
            ("device", result.get("device_name") or result.get("device")),
            ("threads", result.get("threads")),
            ("capability", result.get("capability")),
            ("dtype", result.get("dtype")),
            ("torch", result.get("torch")),
        ]
        bandwidth = result.get("copy_bandwidth_bytes_per_s")
        if isinstance(bandwidth, (int, float)):
            facts.append(("copy bandwidth", f"{bandwidth / 1e9:.1f} GB/s"))
        lines += [", ".join(f"{k}: {v}" for k, v in facts if v not in (None, "")) + ".", ""]
        lines += [
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - TxBxN",
            "     - implementation",
            "     - ms (median)",
            "     - M neuron-steps/s",
            "     - x fused (median ratio)",
        ] + (["     - GB/s (32 B / neuron-step)"] if _has_bandwidth(result) else [])
        for row in rows:
            lines += [f"   * - {row[0]}"] + [f"     - {cell}" if cell else "     -" for cell in row[1:]]
        lines += [""]
        backends = result.get("backends")
        if isinstance(backends, str) and backends.strip():
            lines += ["Backends of that run:", "", ".. code-block:: text", ""]
            lines += ["   " + line for line in backends.splitlines()] + [""]
    return lines


class ResultFilesDirective(SphinxDirective):
    """A directive that renders committed result files as reStructuredText: subclasses name
    the files (``files``) and write their text (``rst``); a change to a file rebuilds the page."""

    has_content = False

    def files(self) -> list[Path]:
        raise NotImplementedError

    def rst(self, paths: list[Path]) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        paths = self.files()
        for path in paths:
            self.env.note_dependency(str(path))
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(self.rst(paths), source=f"<{self.name}>"), container)
        return container.children


class ClifGpuResults(ResultFilesDirective):
    """``.. clif-gpu-results::``: tables from the committed ``bench_gpu.py`` results."""

    def files(self) -> list[Path]:
        return result_files()

    def rst(self, paths: list[Path]) -> list[str]:
        return benchmark_rst(paths)


# --- CUDA kernel resources ---------------------------------------------------------------
def _cuda_resources_module():  # noqa: ANN202 - benchmarks/ is not a package
    spec = importlib.util.spec_from_file_location("cuda_resources", ROOT / "benchmarks" / "cuda_resources.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cuda_resources_rst(paths: list[Path]) -> list[str]:
    """Tables from ``benchmarks/results/cuda_resources_<arch>.json``."""
    if not paths:
        return ["*No* ``benchmarks/results/cuda_resources_*.json`` *committed:* "
                "``python benchmarks/cuda_resources.py`` *writes one.*", ""]
    module = _cuda_resources_module()
    lines: list[str] = []
    for path in paths:
        result = json.loads(path.read_text())
        lines += [f"``{path.relative_to(ROOT).as_posix()}``: compiled for {result['arch']}"
                  + (f" by {result['nvcc']}" if result.get("nvcc") else "") + ".", ""]
        lines += [".. list-table::", "   :header-rows: 1", ""]
        lines += ["   * - kernel", "     - dtype", "     - neurons per thread", "     - offsets", "     - registers",
                  "     - blocks per SM", "     - local memory: stack B / spill B / LDL+STL", "     - SASS instructions"]
        for row in module.summary_rows(result["kernels"]):
            cells = _narrow(module.SUMMARY_HEADER, row)
            lines += [f"   * - {cells[0]}"] + [f"     - {cell}" for cell in cells[1:]]
        lines += [""]
    return lines


def _narrow(header: tuple[str, ...], row: list[str]) -> list[str]:
    """A ``cuda_resources.summary_rows`` row in the page's narrower columns: the three
    local-memory columns in one ("stack B / spill B / LDL+STL"), no instance count."""
    cell = dict(zip(header, row))
    local = " / ".join(cell[k] for k in ("stack B", "spill B", "LDL+STL"))
    return [cell["kernel"], cell["dtype"], cell["neurons/thread"], cell["offsets"], cell["registers"],
            cell["blocks/SM"], local, cell["SASS instructions"]]


class ClifCudaResources(ResultFilesDirective):
    """``.. clif-cuda-resources::``: registers and local memory of the compiled CUDA kernels."""

    def files(self) -> list[Path]:
        return sorted(ROOT.glob("benchmarks/results/cuda_resources_*.json"))

    def rst(self, paths: list[Path]) -> list[str]:
        return cuda_resources_rst(paths)


def setup(app: Sphinx) -> dict:
    app.add_directive("clif-api", ClifApi)
    app.add_directive("clif-cuda-resources", ClifCudaResources)
    app.add_directive("clif-gpu-results", ClifGpuResults)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
