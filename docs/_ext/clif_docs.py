"""Sphinx directives that write parts of the site from the code and the data while it builds.

* ``.. clif-api::`` documents every public object of :mod:`snntorch_clif`: the names the
  package exports (``snntorch_clif.__all__``), then every public submodule (each name in
  its ``__all__``, or every public function and class it defines) that is not one of the
  exports already shown. A module added to the package appears without editing the page.
* ``.. clif-benchmarks::`` renders a table from each results file written by
  ``benchmarks/bench_neuron.py --json`` or ``benchmarks/bench_gpu.py`` (``benchmarks/results/*.json``
  or ``benchmarks/*.json``), or says where the numbers come from when there is none. Files
  whose rows carry ``bytes_per_s`` (the GPU benchmark) get a GB/s column.
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
RESULT_GLOBS = ("benchmarks/results/*.json", "benchmarks/*.json")


# --- API ------------------------------------------------------------------------------
def public_submodules(package: ModuleType) -> list[str]:
    """Names of the package's public submodules (no leading underscore), sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def module_public_names(module: ModuleType) -> list[str]:
    """``__all__`` if the module has one, else the public functions and classes it defines."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        name for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == module.__name__
    ]


def _directive_for(obj: object) -> str:
    if inspect.isclass(obj):
        return "autoclass"
    if callable(obj) or inspect.ismodule(obj):
        return "autofunction"
    return "autodata"


def api_rst() -> list[str]:
    """The reStructuredText of the whole API reference."""
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
    for short in public_submodules(package):
        module = importlib.import_module(f"{PACKAGE}.{short}")
        already = [n for n in module_public_names(module)
                   if any(getattr(module, n, None) is obj for obj in top.values())]
        title = f"``{PACKAGE}.{short}``"
        lines += [title, "-" * len(title), "", f".. automodule:: {PACKAGE}.{short}"]
        names = module_public_names(module)
        # autodoc's automodule skips some undocumented data (tuples, None): list data explicitly
        data = [n for n in names if n not in already and _directive_for(getattr(module, n, None)) == "autodata"]
        if getattr(module, "__all__", None) is not None:
            lines += ["   :members:", "   :undoc-members:"]  # autodoc follows __all__
        elif names:
            lines += [f"   :members: {', '.join(names)}", "   :undoc-members:"]
        if already or data:
            lines += [f"   :exclude-members: {', '.join(already + data)}"]
        lines += [""]
        for name in data:
            lines += [f".. autodata:: {PACKAGE}.{short}.{name}", ""]
        lines += [""]
        if already:
            refs = ", ".join(f":obj:`{PACKAGE}.{n}`" for n in already)
            lines += [f"Also defined here, documented above: {refs}.", ""]
    return lines


class ClifApi(SphinxDirective):
    """``.. clif-api::``: the full API reference of :mod:`snntorch_clif`."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(api_rst(), source="<clif-api>"), container)
        return container.children


# --- benchmarks -----------------------------------------------------------------------
def result_files() -> list[Path]:
    found: dict[Path, None] = {}
    for pattern in RESULT_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            # bench_libraries.py's (clif_libraries.py renders them) and cuda_resources.py's (below)
            if not path.name.startswith(("libraries_", "cuda_resources_")):
                found[path] = None
    return list(found)


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
            "   No benchmark results are committed yet. The numbers on this page come from",
            "   ``python benchmarks/bench_neuron.py --json benchmarks/results/<machine>.json``,",
            "   and the site renders every such file when it builds.",
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
            lines += [f"*Not shown: this file is not a bench_neuron.py result ({type(exc).__name__}).*", ""]
            continue
        facts = [
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


class ClifBenchmarks(ResultFilesDirective):
    """``.. clif-benchmarks::``: tables from the committed benchmark results."""

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
        for row in [list(module.SUMMARY_HEADER), *module.summary_rows(result["kernels"])]:
            lines += [f"   * - {row[0]}"] + [f"     - {cell}" for cell in row[1:]]
        lines += [""]
    return lines


class ClifCudaResources(ResultFilesDirective):
    """``.. clif-cuda-resources::``: registers and local memory of the compiled CUDA kernels."""

    def files(self) -> list[Path]:
        return sorted(ROOT.glob("benchmarks/results/cuda_resources_*.json"))

    def rst(self, paths: list[Path]) -> list[str]:
        return cuda_resources_rst(paths)


def setup(app: Sphinx) -> dict:
    app.add_directive("clif-api", ClifApi)
    app.add_directive("clif-cuda-resources", ClifCudaResources)
    app.add_directive("clif-benchmarks", ClifBenchmarks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
