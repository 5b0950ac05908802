"""The SNN-library comparison on the benchmark page, from ``benchmarks/bench_libraries.py``'s JSON.

* ``.. clif-library-benchmarks::`` renders, for each ``benchmarks/results/libraries_*.json``,
  the machine it ran on and one table row per (n, implementation): median time, the spread,
  the median ratio to the fused CLIF, and the peak memory.
* :func:`plot_results` draws the same numbers (time and peak memory against n, one bar per
  implementation) for matplotlib's ``.. plot::`` directive on the page.

Nothing is written into the source tree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from clif_docs import ResultFilesDirective
from sphinx.application import Sphinx

ROOT = Path(__file__).resolve().parents[2]
LIBRARY_GLOB = "benchmarks/results/libraries_*.json"


def library_result_files(root: Path = ROOT) -> list[Path]:
    """The committed results of ``bench_libraries.py``, sorted by name."""
    return sorted(root.glob(LIBRARY_GLOB))


def load_result(path: Path) -> dict:
    """A ``bench_libraries.py`` result; ``ValueError`` if the file is not one."""
    result = json.loads(Path(path).read_text())
    if not isinstance(result, dict) or result.get("benchmark") != "libraries" or "rows" not in result:
        raise ValueError(f"{path} is not a bench_libraries.py result")
    return result


def machine_sentence(result: dict) -> str:
    """One line naming the machine and the software of a result."""
    m = result.get("machine", {})
    versions = m.get("versions", {})
    cpu = m.get("cpu") or "unknown CPU"
    isa = f" ({m['isa']})" if m.get("isa") else ""
    load = m.get("load_average_at_start")
    parts = [
        f"{cpu}{isa}, {m.get('logical_cores', '?')} logical cores, {m.get('threads', '?')} threads",
        ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]
    if isinstance(load, list) and load:
        parts.append(f"load average {load[0]:.1f} when the run started (the machine was shared)")
    shape = result.get("shape", {})
    head = f"Batch {shape.get('batch', '?')}, T = {shape.get('steps', '?')}. "
    return head + "; ".join(p for p in parts if p) + "."


def _fmt(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else ""


def table_rows(result: dict) -> list[list[str]]:
    """Cells of the table: n, implementation, runs, median ms, min-max ms, x reference, peak MiB."""
    ref = result.get("reference", "clif_multi")
    rows = []
    for case in result["rows"]:
        for name, impl in case["impl"].items():
            memory = impl.get("memory") or {}
            rows.append([
                str(case["n"]),
                impl.get("label", name),
                str(impl.get("runs", "")),
                _fmt(impl.get("median_ms"), ".0f"),
                f"{_fmt(impl.get('min_ms'), '.0f')}-{_fmt(impl.get('max_ms'), '.0f')}",
                _fmt(impl.get(f"median_ratio_to_{ref}"), ".2f"),
                _fmt(memory.get("peak_growth_mib"), ".0f"),
            ])
    return rows


def library_rst(paths: list[Path], root: Path = ROOT) -> list[str]:
    """The reStructuredText of every library result (a note when there is none)."""
    if not paths:
        return [
            ".. note::",
            "",
            "   No library comparison is committed yet: run",
            "   ``python benchmarks/bench_libraries.py --json benchmarks/results/libraries_cpu.json``.",
            "",
        ]
    lines: list[str] = []
    header = ["n", "implementation", "runs", "ms (median)", "min-max ms", "x CLIF fused (median ratio)",
              "peak MiB (growth)"]
    for path in paths:
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        title = f"``{rel}``"
        lines += [title, "~" * len(title), ""]
        try:
            result = load_result(path)
            rows = table_rows(result)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            lines += [f"*Not shown: this file is not a bench_libraries.py result ({type(exc).__name__}).*", ""]
            continue
        lines += [machine_sentence(result), ""]
        lines += [".. list-table::", "   :header-rows: 1", ""]
        lines += ["   * - " + header[0]] + [f"     - {h}" for h in header[1:]]
        for row in rows:
            lines += [f"   * - {row[0]}"] + [f"     - {cell}" if cell else "     -" for cell in row[1:]]
        lines += [""]
        slow = result.get("not_run_at_larger_n") or {}
        skipped = result.get("skipped") or {}
        if slow or skipped:
            lines += ["Not run at every size:", ""]
            lines += [f"* ``{name}``: {why}" for name, why in {**slow, **skipped}.items()] + [""]
    return lines


def plot_results(paths: Optional[list[Path]] = None):
    """Time and peak memory of each implementation against n (grouped bars, log scale).

    Returns the matplotlib figure (one row of two axes per result file); without result
    files, a figure that says so.
    """
    import matplotlib.pyplot as plt

    paths = library_result_files() if paths is None else paths
    results = []
    for path in paths:
        try:
            results.append((path, load_result(path)))
        except (OSError, ValueError):
            continue
    if not results:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no benchmarks/results/libraries_*.json committed", ha="center", va="center")
        return fig
    fig, axes = plt.subplots(len(results), 2, figsize=(11, 4.2 * len(results)), squeeze=False)
    for (path, result), (ax_time, ax_mem) in zip(results, axes):
        sizes = [case["n"] for case in result["rows"]]
        names: list[str] = []
        labels: dict[str, str] = {}
        for case in result["rows"]:
            for name, impl in case["impl"].items():
                if name not in names:
                    names.append(name)
                    labels[name] = impl.get("label", name)
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            xs, secs, mibs, xm = [], [], [], []
            for k, case in enumerate(result["rows"]):
                impl = case["impl"].get(name)
                if impl is None:
                    continue
                xs.append(k + (i - (len(names) - 1) / 2) * width)
                secs.append(impl["median_ms"] / 1e3)
                mib = (impl.get("memory") or {}).get("peak_growth_mib")
                if isinstance(mib, (int, float)) and mib > 0:
                    xm.append(xs[-1])
                    mibs.append(mib)
            color = f"C{i}"
            ax_time.bar(xs, secs, width, label=labels[name], color=color)
            ax_mem.bar(xm, mibs, width, label=labels[name], color=color)
        for ax, what in ((ax_time, "forward+backward, s (median)"), (ax_mem, "peak memory growth, MiB")):
            ax.set_yscale("log")
            ax.set_xticks(range(len(sizes)), [f"n = {n}" for n in sizes])
            ax.set_ylabel(what)
            ax.grid(axis="y", which="both", alpha=0.3)
        cpu = result.get("machine", {}).get("cpu", "")
        threads = result.get("machine", {}).get("threads", "?")
        ax_time.set_title(f"{path.name}: {cpu}, {threads} thread(s)", fontsize=9)
        ax_mem.set_title(f"B = {result['shape']['batch']}, T = {result['shape']['steps']}", fontsize=9)
    handles, labels_ = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12 / len(results), 1, 1))  # room for the legend below
    return fig


class ClifLibraryBenchmarks(ResultFilesDirective):
    """``.. clif-library-benchmarks::``: tables from the committed library comparisons."""

    def files(self) -> list[Path]:
        return library_result_files()

    def rst(self, paths: list[Path]) -> list[str]:
        return library_rst(paths)


def setup(app: Sphinx) -> dict:
    app.add_directive("clif-library-benchmarks", ClifLibraryBenchmarks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
