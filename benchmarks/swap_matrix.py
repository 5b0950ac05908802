r"""The swap matrix: snnTorch's own recipes with ``snn.Leaky``, the plain CLIF swap, and ``from_leaky``.

Every recipe of ``swap_recipes.py`` (snnTorch's tutorials 5, 6, 7, the quickstart, the
regression and population-coding tutorials, ``snntorch.backprop``'s ``BPTT`` / ``TBPTT`` /
``RTRL``, and each of ``ce_rate_loss``, ``ce_count_loss``, ``mse_count_loss``,
``mse_membrane_loss``) runs in four columns that differ in one call on the model:

* ``leaky``: the recipe as snnTorch writes it;
* ``plain``: ``from_leaky(net, readout=None, spike_grad="paper")``: the paper's neuron with
  its defaults (rectangle surrogate, same-step reset in every layer);
* ``recommended``: ``from_leaky(net)``: each layer keeps its Leaky's surrogate and the last
  layer delays its reset (``reset_delay=True``);
* ``keep_readout``: ``from_leaky(net, keep="last")``: the same, with the last layer left an
  ``snn.Leaky``.

Each column runs three seeds (the seed sets the initial weights, identical across columns,
and the batch order). The table gives each recipe's final metric (test accuracy, or the
regression tutorial's L1 loss) as the median [min-max] over the seeds, and the training
iterations each CLIF column needs to first reach the Leaky column's median final value
(``-`` when a column never does in the median seed). A ``*`` marks a CLIF cell that
trails Leaky by more than 1 point of accuracy (10 % of a loss).

Run it all (about 30-40 minutes on 2 cores; two worker processes of one thread each)::

    .venv/bin/python benchmarks/swap_matrix.py

which prints the table and writes ``benchmarks/results/swap_matrix.json`` (the machine,
date, versions, sizes and every run with its curves and per-layer diagnostics) and
``benchmarks/results/swap_matrix.rst`` (the table the documentation includes). Options:
``--quick`` (tiny sizes, one seed, seconds; writes to ``--json``/``--rst`` only when
given), ``--recipes``, ``--columns`` (also the diagnostic columns of :data:`EXTRA_COLUMNS`),
``--seeds``, ``--jobs``.

Example::

    .venv/bin/python benchmarks/swap_matrix.py --quick --json /tmp/swap.json --rst /tmp/swap.rst
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import snntorch as snn  # noqa: E402
import torch  # noqa: E402
from bench_neuron import cpu_model  # noqa: E402
from swap_recipes import COLUMNS, DIAGNOSTICS, RECIPES, Converter, Probe  # noqa: E402

import snntorch_clif  # noqa: E402

RESULTS = HERE / "results"
CHEAPEST_FIRST = ("population_10", "population_500", "regression1", "bptt", "tbptt", "rtrl", "quickstart_fc",
                  "ce_rate_loss", "ce_count_loss", "mse_count_loss", "mse_membrane_loss", "tutorial5",
                  "quickstart_conv", "tutorial6", "tutorial7")
BASE_COLUMNS = ("leaky", "plain", "recommended", "keep_readout")

def _leaky_names(net: torch.nn.Module) -> list[str]:
    return [name for name, module in net.named_modules() if type(module) is snn.Leaky]


#: Diagnostic columns, run with ``--columns``.
EXTRA_COLUMNS: dict[str, Converter] = {
    # every layer delays its reset (and detaches it, as snn.Leaky does), not only the read-out
    "delay_all": lambda net: snntorch_clif.from_leaky(net, readout=_leaky_names(net)),
    # snnTorch's atan surrogate in every layer, whatever the recipe's Leaky used
    "atan_all": lambda net: snntorch_clif.from_leaky(net, spike_grad=snn.surrogate.atan()),
}


def all_columns() -> dict[str, Converter]:
    """The three matrix columns and the prototype ones."""
    return {**COLUMNS, **EXTRA_COLUMNS}


# --- one run ---------------------------------------------------------------------------------
def run_one(task: tuple[str, str, int, bool]) -> dict[str, Any]:
    """Run one (recipe, column, seed) on one thread; the result row of the JSON."""
    recipe_name, column, seed, quick = task
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", DeprecationWarning)
    snn.SpikingNeuron.instances.clear()  # snnTorch 1.0 keeps every neuron ever built; runs share a process
    recipe = {**RECIPES, **DIAGNOSTICS}[recipe_name]
    size = recipe.quick if quick else recipe.full
    probe = Probe()
    start, cpu_start = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", snntorch_clif.SilentLayerWarning)
        result = recipe.run(all_columns()[column], seed, size, probe)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    silent_warnings = sorted({str(w.message).split(" has emitted")[0] for w in caught
                              if issubclass(w.category, snntorch_clif.SilentLayerWarning)})
    return {"recipe": recipe_name, "column": column, "seed": seed, "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2), **result,
            "silent_layer_warnings": silent_warnings, "probe": probe.records}


def run_all(tasks: list[tuple[str, str, int, bool]], jobs: int, log: Optional[Path] = None) -> list[dict[str, Any]]:
    """Run the tasks on ``jobs`` single-threaded worker processes, printing one line per run
    (and appending each run to the JSON-lines file ``log``)."""
    results = []

    def report(row: dict[str, Any]) -> None:
        results.append(row)
        print(f"  {row['recipe']:<18} {row['column']:<14} seed {row['seed']}: {row['final']:.4f} "
              f"({row['seconds']:.0f} s, {row['cpu_seconds']:.0f} s CPU)", flush=True)
        if log is not None:
            with open(log, "a") as f:
                f.write(json.dumps(row) + "\n")

    if jobs <= 1:
        for task in tasks:
            report(run_one(task))
        return results
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs, maxtasksperchild=8) as pool:
        for row in pool.imap_unordered(run_one, tasks):
            report(row)
    return results


# --- summary ---------------------------------------------------------------------------------
def first_reached(curve: list[list[float]], level: float, higher_is_better: bool) -> Optional[int]:
    """The first iteration of ``curve`` ([iteration, value] pairs) whose value reaches ``level``."""
    for iteration, value in curve:
        if (value >= level - 1e-9) if higher_is_better else (value <= level + 1e-9):
            return int(iteration)
    return None


def _median_iterations(values: list[Optional[int]]) -> Optional[float]:
    ordered = sorted(math.inf if v is None else v for v in values)
    median = statistics.median(ordered)
    return None if math.isinf(median) else median


def summarize(runs: list[dict[str, Any]], columns: list[str]) -> list[dict[str, Any]]:
    """Per recipe: each column's median, min, max of the final metric and the iterations to Leaky's level."""
    rows = []
    for name, recipe in {**RECIPES, **DIAGNOSTICS}.items():
        mine = [r for r in runs if r["recipe"] == name]
        if not mine:
            continue
        row: dict[str, Any] = {"recipe": name, "metric": recipe.metric, "source": recipe.source,
                               "summary": recipe.summary, "columns": {}}
        leaky = [r["final"] for r in mine if r["column"] == "leaky"]
        level = statistics.median(leaky) if leaky else None
        row["leaky_level"] = level
        for column in columns:
            finals = [r for r in mine if r["column"] == column]
            if not finals:
                continue
            values = [r["final"] for r in finals]
            cell: dict[str, Any] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                                    "seeds": [r["seed"] for r in finals], "values": values}
            if level is not None and column != "leaky":
                reached = [first_reached(r["curve"], level, recipe.higher_is_better) for r in finals]
                cell["iterations_to_leaky"] = reached
                cell["median_iterations_to_leaky"] = _median_iterations(reached)
                gap = cell["median"] - level if recipe.higher_is_better else level - cell["median"]
                cell["trails_leaky"] = bool(-gap > 0.01) if recipe.higher_is_better else bool(-gap > 0.1 * level)
            row["columns"][column] = cell
        rows.append(row)
    return rows


def _value(metric: str, v: float) -> str:
    return f"{100 * v:.1f}" if metric == "accuracy" else f"{v:.3f}"


def _cell(row: dict[str, Any], column: str) -> str:
    cell = row["columns"].get(column)
    if cell is None:
        return ""
    m = row["metric"]
    text = f"{_value(m, cell['median'])} [{_value(m, cell['min'])}-{_value(m, cell['max'])}]"
    return text + (" *" if cell.get("trails_leaky") else "")


def _iterations(row: dict[str, Any], column: str) -> str:
    cell = row["columns"].get(column)
    if cell is None or "median_iterations_to_leaky" not in cell:
        return ""
    median = cell["median_iterations_to_leaky"]
    return "-" if median is None else f"{median:g}"


#: Column headings of the printed and RST tables.
LABELS = {"leaky": "snn.Leaky", "plain": "plain swap", "recommended": "from_leaky(net)",
          "keep_readout": "keep='last'"}


def table_rows(summary: list[dict[str, Any]], columns: list[str]) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows as text."""
    clif_columns = [c for c in columns if c not in ("leaky", "plain")]  # the plain swap never gets there
    header = (["recipe", "metric"] + [LABELS.get(c, c) for c in columns]
              + [f"iterations to Leaky: {LABELS.get(c, c)}" for c in clif_columns])
    body = []
    for row in summary:
        metric = "accuracy %" if row["metric"] == "accuracy" else "L1 loss"
        body.append([row["recipe"], metric] + [_cell(row, c) for c in columns]
                    + [_iterations(row, c) for c in clif_columns])
    return header, body


def print_table(summary: list[dict[str, Any]], columns: list[str]) -> None:
    """Print the matrix as an aligned text table."""
    header, body = table_rows(summary, columns)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths]] + body:
        print("  ".join(text.ljust(w) for text, w in zip(r, widths)))


#: Column headings of the RST table (literals render the calls as code).
RST_LABELS = {"leaky": "``snn.Leaky``", "plain": "plain swap", "recommended": "``from_leaky(net)``",
              "keep_readout": '``keep="last"``'}


def rst_table(result: dict[str, Any]) -> str:
    """The RST page fragment the documentation includes: a sentence on the run and a list-table."""
    columns = result["settings"]["columns"]
    reaching = [c for c in columns if c not in ("leaky", "plain")]
    header = (["recipe"] + [RST_LABELS.get(c, c) for c in columns]
              + ([f"iterations to Leaky's level: {' / '.join(RST_LABELS.get(c, c) for c in reaching)}"]
                 if reaching else []))
    body = []
    for row in result["summary"]:
        unit = "" if row["metric"] == "accuracy" else ", L1 loss: lower is better"
        cells = [f"``{row['recipe']}``: {row['summary']}{unit}"]
        cells += [_cell(row, c).replace("*", "\\*") or " " for c in columns]
        if reaching:
            cells.append(" / ".join(_iterations(row, c).replace("-", "not reached") or " " for c in reaching))
        body.append(cells)
    machine = result["machine"]
    lines = [
        ".. This file is generated by benchmarks/swap_matrix.py; do not edit it by hand.",
        "",
        f"Measured on {result['date']} on {machine['cpu']} ({machine['logical_cores']} cores, one thread per run), "
        f"torch {machine['versions']['torch']}, snnTorch {machine['versions']['snntorch']}, "
        f"{len(result['settings']['seeds'])} seeds per cell: median [min-max] of the final metric "
        "(test accuracy in %, or the regression tutorial's L1 loss), and the training iterations a CLIF "
        "column needs to first reach the Leaky column's median final value. "
        "``*``: trails Leaky by more than 1 point (10 % of a loss). "
        "Reproduce with ``python benchmarks/swap_matrix.py``.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
    ]
    for cells in [header] + body:
        lines.append("   * - " + cells[0])
        lines.extend("     - " + text for text in cells[1:])
    return "\n".join(lines) + "\n"


def diagnostics(runs: list[dict[str, Any]], recipe: str, columns: list[str]) -> list[str]:
    """Lines comparing the columns' per-layer diagnostics on ``recipe`` (medians over the seeds).

    At each probed optimizer step: each spiking layer's firing rate (spikes per neuron and
    step) and silent fraction (neurons without a spike in that step's window), and each
    weight's gradient norm.
    """
    lines = [f"diagnostics: {recipe} (median over seeds; rate = spikes per neuron-step, silent = share "
             "of neurons without a spike in the step's window, |g| = gradient norm)"]
    for column in columns:
        mine = [r for r in runs if r["recipe"] == recipe and r["column"] == column and r.get("probe")]
        if not mine:
            continue
        steps = sorted({rec["step"] for r in mine for rec in r["probe"]})
        lines.append(f"  {column}")
        for step in steps:
            records = [rec for r in mine for rec in r["probe"] if rec["step"] == step]
            layers = sorted({name for rec in records for name in rec["layers"]})
            params = sorted({name for rec in records for name in rec["grad_norm"] if name.endswith("weight")})
            parts = []
            for name in layers:
                rate = statistics.median(rec["layers"][name]["rate"] for rec in records if name in rec["layers"])
                silent = statistics.median(rec["layers"][name]["silent"] for rec in records if name in rec["layers"])
                parts.append(f"{name}: rate {rate:.3f} silent {silent:.2f}")
            for name in params:
                norm = statistics.median(rec["grad_norm"][name] for rec in records if name in rec["grad_norm"])
                parts.append(f"|g {name}| {norm:.3g}")
            lines.append(f"    step {step:>5}: " + "; ".join(parts))
    return lines


def _significant(value: Any, digits: int = 4) -> Any:
    """``value`` with every float rounded to ``digits`` significant digits (dicts and lists walked)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _significant(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_significant(v, digits) for v in value]
    return value


def dumps(result: dict[str, Any]) -> str:
    """The result as JSON: indented, one line per run (probe values to 4 significant digits)."""
    head = json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1)
    runs = ",\n".join("  " + json.dumps({**run, "probe": _significant(run.get("probe", []))})
                       for run in result["runs"])
    return head[:-2] + ',\n "runs": [\n' + runs + "\n ]\n}\n"


def machine() -> dict[str, Any]:
    """The machine and the library versions."""
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "snntorch": snn.__version__, "snntorch_clif": getattr(snntorch_clif, "__version__", None)},
        "backend": {"cpu": snntorch_clif.backends().devices.get("cpu")},
    }


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    """Parse the options, run the matrix, print it, write the JSON and RST files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one seed (a smoke test)")
    parser.add_argument("--recipes", nargs="*", choices=list(RECIPES) + list(DIAGNOSTICS),
                        help="default: every recipe of the matrix (DIAGNOSTICS: variants that isolate a cause)")
    parser.add_argument("--columns", nargs="*", help=f"default: {' '.join(BASE_COLUMNS)}")
    parser.add_argument("--seeds", type=int, nargs="*", help="default: 0 1 2 (0 with --quick)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--json", help="default: benchmarks/results/swap_matrix.json (none with --quick)")
    parser.add_argument("--rst", help="default: benchmarks/results/swap_matrix.rst (none with --quick)")
    parser.add_argument("--runs-log", help="append each finished run to this JSON-lines file; with --resume, "
                        "the runs already in it are not run again")
    parser.add_argument("--resume", action="store_true", help="reuse the runs of --runs-log")
    parser.add_argument("--reuse", nargs="*", default=[], metavar="JSONL",
                        help="runs-log files of other invocations: their runs are not run again and join "
                        "the table (without it, the leaky column is always run)")
    parser.add_argument("--table-only", action="store_true",
                        help="run nothing: the table of the runs in --reuse / --runs-log so far")
    parser.add_argument("--diagnose", nargs="*", default=[], metavar="RECIPE",
                        help="also print these recipes' per-layer diagnostics ('trailing': the rows where "
                        "from_leaky(net) trails Leaky)")
    args = parser.parse_args(argv)
    columns = args.columns or list(BASE_COLUMNS)
    unknown = sorted(set(columns) - set(all_columns()))
    if unknown:
        parser.error(f"unknown columns {unknown}; choose from {sorted(all_columns())}")
    if "leaky" not in columns:
        columns = ["leaky"] + columns  # the reference every other column is measured against
    leaky_optional = bool(args.reuse) and args.columns is not None and "leaky" not in args.columns
    recipes = args.recipes or list(RECIPES)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    json_path = args.json or (None if args.quick else str(RESULTS / "swap_matrix.json"))
    rst_path = args.rst or (None if args.quick else str(RESULTS / "swap_matrix.rst"))

    # cheapest recipes first: their rows are complete early (the order does not change any result)
    cost = {name: i for i, name in enumerate(CHEAPEST_FIRST)}
    tasks = [(name, column, seed, args.quick) for name in sorted(recipes, key=lambda n: cost.get(n, -1))
             for seed in seeds for column in columns]
    log = Path(args.runs_log) if args.runs_log else None
    sources = [Path(p) for p in args.reuse] + ([log] if args.resume and log is not None else [])
    wanted = set(tasks)
    done: list[dict[str, Any]] = []
    for source in sources:
        if source.exists():
            done += [row for row in map(json.loads, source.read_text().splitlines())
                     if (row["recipe"], row["column"], row["seed"], args.quick) in wanted]
    finished = {(row["recipe"], row["column"], row["seed"], args.quick) for row in done}
    done = list({(r["recipe"], r["column"], r["seed"]): r for r in done}.values())  # one row per run
    tasks = [task for task in tasks if task not in finished and not (leaky_optional and task[1] == "leaky")]
    if args.table_only:
        tasks = []
    info = machine()
    print(f"swap matrix: {len(tasks)} runs on {args.jobs} worker(s), {info['cpu']}"
          + (f" ({len(done)} reused)" if done else ""), flush=True)
    start = time.perf_counter()
    runs = done + run_all(tasks, args.jobs, log)
    elapsed = time.perf_counter() - start
    known = {**RECIPES, **DIAGNOSTICS}
    order = {name: i for i, name in enumerate(known)}
    runs.sort(key=lambda r: (order[r["recipe"]], columns.index(r["column"]), r["seed"]))
    info["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result = {
        "benchmark": "swap_matrix",
        "date": datetime.date.today().isoformat(),
        "machine": info,
        "settings": {"quick": args.quick, "seeds": seeds, "columns": columns, "jobs": args.jobs,
                     "threads_per_run": 1, "sizes": {n: (known[n].quick if args.quick else known[n].full)
                                                     for n in recipes},
                     "recipes": {n: {"source": known[n].source, "summary": known[n].summary,
                                     "metric": known[n].metric} for n in recipes}},
        "wall_seconds": round(elapsed, 1),
        "cpu_seconds": round(sum(r["cpu_seconds"] for r in runs), 1),
        "summary": summarize(runs, columns),
        "runs": runs,
    }
    print()
    print_table(result["summary"], columns)
    trailing = [row["recipe"] for row in result["summary"]
                if row["columns"].get("recommended", {}).get("trails_leaky")]
    for name in [n for n in args.diagnose if n != "trailing"] + (trailing if "trailing" in args.diagnose else []):
        print("\n" + "\n".join(diagnostics(runs, name, columns)))
    print(f"\n{len(runs)} runs in {elapsed / 60:.1f} min ({result['cpu_seconds'] / 60:.1f} CPU-minutes)")
    if json_path:
        Path(json_path).write_text(dumps(result))
        print(f"wrote {json_path}")
    if rst_path:
        Path(rst_path).write_text(rst_table(result))
        print(f"wrote {rst_path}")
    return result


if __name__ == "__main__":
    main()
