"""The benchmark page's tables and figures, drawn from the committed JSON while the site builds.

The tables and figures themselves are made by ``benchmarks/plot_results.py`` (the same
functions write the PNGs and the tables of ``benchmarks/README.md``), so the page, the README
and the PNGs always show the same numbers:

* ``.. clif-results-table:: NAME`` renders ``plot_results.TABLES[NAME]`` (Markdown lines:
  paragraphs and one pipe table) as reStructuredText;
* :func:`figure` returns ``plot_results.FIGURES[NAME]``'s figure for a ``.. plot::`` directive.

A change to a result file rebuilds the page. Nothing is written into the source tree.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from clif_docs import ResultFilesDirective
from sphinx.application import Sphinx

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def plot_results() -> ModuleType:
    """``benchmarks/plot_results.py``, loaded by path (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("plot_results", ROOT / "benchmarks" / "plot_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def figure(name: str, results: Path = RESULTS):  # noqa: ANN201 - a matplotlib figure
    """The figure ``name`` of ``plot_results.FIGURES`` (e.g. ``"cost_over_T.png"``)."""
    return plot_results().FIGURES[name](results)


def _inline(text: str) -> str:
    """Markdown inline code (`x`) as reStructuredText literals (``x``)."""
    return re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)


def markdown_to_rst(lines: list[str]) -> list[str]:
    """Paragraphs and pipe tables (the output of ``plot_results.table_*``) as reStructuredText."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if not table:
            return
        out.extend([".. list-table::", "   :header-rows: 1", "   :class: clif-results", ""])
        for row in table:
            out.append(f"   * - {row[0] or ' '}")
            out.extend(f"     - {cell}" if cell else "     -" for cell in row[1:])
        out.append("")
        table.clear()

    for line in lines:
        for piece in line.split("\n"):
            stripped = piece.strip()
            if stripped.startswith("|"):
                cells = [_inline(c.strip()) for c in stripped.strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):  # not the separator row
                    table.append(cells)
                continue
            flush()
            out.append(_inline(stripped))
    flush()
    out.append("")
    return out


class ClifResultsTable(ResultFilesDirective):
    """``.. clif-results-table:: NAME``: one of ``plot_results.TABLES``, from the committed JSON."""

    required_arguments = 1

    def files(self) -> list[Path]:
        return sorted(RESULTS.glob("*.json"))

    def rst(self, paths: list[Path]) -> list[str]:
        tables = plot_results().TABLES
        name = self.arguments[0]
        if name not in tables:
            raise self.error(f"unknown results table {name!r}; known: {sorted(tables)}")
        return markdown_to_rst(tables[name](RESULTS))


def setup(app: Sphinx) -> dict:
    app.add_directive("clif-results-table", ClifResultsTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
