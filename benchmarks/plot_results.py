"""Figures and tables of the committed benchmark results, for the docs site and ``benchmarks/README.md``.

Reads the JSON that the benchmark scripts write into ``benchmarks/results/``:

* ``cpu_sweep_1thread.json``, ``cpu_sweep_2threads.json`` (``bench_sweep.py``): the fused
  call's cost per neuron-step over T, against the memory-bandwidth floor;
* ``neuron_cpu_1thread.json`` (``bench_neuron.py``): one layer, CLIF against the PyTorch
  reference, ``snn.Leaky`` and SpikingJelly's CLIF;
* ``open_neuromorphic_cpu.json`` (``bench_libraries.py``): Open Neuromorphic's library
  benchmark, time and memory.

Each ``figure_*`` function returns a matplotlib figure (the site's ``.. plot::`` directives
call them while the site builds); each ``table_*`` function returns Markdown lines. Usage::

    python benchmarks/plot_results.py                     # PNGs into benchmarks/results/
    python benchmarks/plot_results.py --update-readme     # and the tables of benchmarks/README.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Optional

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent / "README.md"
SWEEP_FILES = ("cpu_sweep_1thread.json", "cpu_sweep_2threads.json")
NEURON_FILE = "neuron_cpu_1thread.json"
OPEN_NEUROMORPHIC_FILE = "open_neuromorphic_cpu.json"

NEURON_LABELS = {  # bench_neuron.py's rows, in the order they are drawn
    "fused": "CLIF, fused kernel",
    "reference": "CLIF, PyTorch reference (step loop)",
    "leaky": "snn.Leaky, step loop",
    "sj_clif": "SpikingJelly ComplementaryLIFNode",
}


def load(name: str, results: Path = RESULTS) -> Optional[dict]:
    """A result file of ``results`` as a dict, or None when it is not there."""
    path = Path(results) / name
    return json.loads(path.read_text()) if path.is_file() else None


def machine_line(result: dict, threads: bool = True) -> str:
    """When and where a result ran: '2026-12-07, Intel Xeon (AVX-512, 2 cores), 1 thread, torch 2.14.1,
    load average 0.3 at the start' (the load: what else the machine was running)."""
    machine = result.get("machine", {})
    cpu = machine.get("cpu") or result.get("device_name") or result.get("device", "?")
    isa = machine.get("isa") or result.get("isa")
    cores = machine.get("logical_cores") or result.get("logical_cores") or result.get("cpu_count")
    details = ", ".join(d for d in (isa, f"{cores} cores" if cores else None) if d)
    count = machine.get("threads", result.get("threads", "?"))
    torch_version = machine.get("versions", {}).get("torch") or result.get("torch", "?")
    parts = [result.get("date", "undated"), f"{cpu} ({details})" if details else cpu]
    if threads:
        parts.append(f"{count} thread{'s' if count != 1 else ''}")
    parts.append(f"torch {torch_version}")
    load = machine.get("load_average_at_start") or result.get("load_average_at_start")
    if isinstance(load, list) and load:
        parts.append(f"load average {load[0]:.1f} at the start")
    return ", ".join(parts)


# --- bench_sweep.py: cost per neuron-step over T ----------------------------------------------
def sweep_series(result: dict) -> dict[int, dict[str, list[float]]]:
    """N -> {"T", "fused_ns", "floor_ns", "leaky_ns"} (ns per neuron-step; leaky where timed, else NaN)."""
    out: dict[int, dict[str, list[float]]] = {}
    for row in sorted(result["rows"], key=lambda r: (r["N"], r["T"])):
        series = out.setdefault(row["N"], {"T": [], "fused_ns": [], "floor_ns": [], "leaky_ns": []})
        steps = row["neuron_steps"]
        series["T"].append(row["T"])
        series["fused_ns"].append(row["impl"]["fused"]["median_ms"] * 1e6 / steps)
        series["floor_ns"].append(row["floor_ms"] * 1e6 / steps)
        leaky = row["impl"].get("leaky")
        series["leaky_ns"].append(leaky["median_ms"] * 1e6 / steps if leaky else float("nan"))
    return out


def figure_cost_over_t(results: Path = RESULTS):
    """Fused CLIF forward+backward, ns per neuron-step against T, with the floor; one panel per thread count."""
    import matplotlib.pyplot as plt

    sweeps = [r for r in (load(name, results) for name in SWEEP_FILES) if r]
    if not sweeps:
        return _empty_figure(f"no {' / '.join(SWEEP_FILES)} in benchmarks/results")
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.2 * len(sweeps), 3.9), sharey=True, squeeze=False)
    for ax, result in zip(axes[0], sweeps):
        for i, (n, s) in enumerate(sweep_series(result).items()):
            color = f"C{i}"
            ax.plot(s["T"], s["fused_ns"], "o-", color=color, label=f"CLIF fused, N = {n:,}")
            ax.plot(s["T"], s["floor_ns"], "--", color=color, lw=1, label=f"floor, N = {n:,}")
            ax.plot(s["T"], s["leaky_ns"], "x", color=color, ms=8, mew=2, label=f"snn.Leaky loop, N = {n:,}")
        threads = result.get("threads", "?")
        ax.set_title(f"{threads} thread{'s' if threads != 1 else ''}", fontsize=10)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted({t for s in sweep_series(result).values() for t in s["T"]}))
        _plain_ticks(ax)
        ax.set_xlabel("time steps T")
        ax.grid(which="both", alpha=0.3)
    axes[0][0].set_ylabel("ns per neuron-step (forward+backward)")
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.suptitle(machine_line(sweeps[0], threads=False), fontsize=8, y=0.995)
    fig.tight_layout()
    return fig


def table_sweep(results: Path = RESULTS) -> list[str]:
    """Markdown: fused ns per neuron-step (x the floor) per thread count, N and T."""
    sweeps = [r for r in (load(name, results) for name in SWEEP_FILES) if r]
    if not sweeps:
        return ["*No sweep results committed.*"]
    ts = sorted({row["T"] for r in sweeps for row in r["rows"]})
    lines = [f"Measured {machine_line(sweeps[0], threads=False)}; float32, beta = 0.5. "
             "Each cell: ns per neuron-step of a `clif_sequence` forward+backward (x the floor).", "",
             "| threads | N | " + " | ".join(f"T={t}" for t in ts) + " |",
             "|---:|---:|" + "---:|" * len(ts)]
    for result in sweeps:
        by_n: dict[int, dict[int, dict]] = {}
        for row in result["rows"]:
            by_n.setdefault(row["N"], {})[row["T"]] = row
        for n, rows in sorted(by_n.items()):
            cells = []
            for t in ts:
                row = rows.get(t)
                cells.append(f"{row['impl']['fused']['ns_per_neuron_step']:.2f} ({row['fused_over_floor']:.2f})"
                             if row else "")
            lines.append(f"| {result.get('threads', '?')} | {n:,} | " + " | ".join(cells) + " |")
    overhead = [(r.get("threads"), r.get("call_overhead")) for r in sweeps if r.get("call_overhead")]
    if overhead:
        lines += ["", "One single-step call on `[8, 16]`, host time, forward+backward:"]
        for threads, o in overhead:
            u = o["us_per_call"]
            lines.append(f"{threads} thread{'s' if threads != 1 else ''}: `CLIF` {u['clif_step_fwd_bwd']:.0f} us, "
                         f"`snn.Leaky` "
                         f"{u['leaky_step_fwd_bwd']:.0f} us ({o['clif_over_leaky_fwd_bwd']:.2f}x).")
    return lines


# --- bench_neuron.py: one layer against snn.Leaky and SpikingJelly ------------------------
def figure_neuron_comparison(results: Path = RESULTS):
    """ns per neuron-step of each implementation, grouped by T (log scale)."""
    import matplotlib.pyplot as plt

    result = load(NEURON_FILE, results)
    if result is None:
        return _empty_figure(f"no {NEURON_FILE} in benchmarks/results")
    rows = sorted(result["rows"], key=lambda r: r["T"])
    names = [n for n in NEURON_LABELS if any(n in r["impl"] for r in rows)]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(8.5, 3.9))
    for i, name in enumerate(names):
        xs, ns = [], []
        for k, row in enumerate(rows):
            impl = row["impl"].get(name)
            if impl and "median_ms" in impl:
                xs.append(k + (i - (len(names) - 1) / 2) * width)
                ns.append(impl["median_ms"] * 1e6 / row["neuron_steps"])
        bars = ax.bar(xs, ns, width, label=NEURON_LABELS[name], color=f"C{i}")
        if name != "fused":
            continue
        for bar, value in zip(bars, ns):
            ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom",
                        fontsize=7)
    ax.set_xticks(range(len(rows)), [f"T = {r['T']}\n{r['B']} x {r['N']:,} neurons" for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ns per neuron-step (forward+backward)")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.set_title(machine_line(result), fontsize=8)
    fig.tight_layout()
    return fig


def table_neuron(results: Path = RESULTS) -> list[str]:
    """Markdown: ms per forward+backward of each implementation (x the fused kernel), per T."""
    result = load(NEURON_FILE, results)
    if result is None:
        return ["*No bench_neuron.py result committed.*"]
    rows = sorted(result["rows"], key=lambda r: r["T"])
    names = [n for n in NEURON_LABELS if any(n in r["impl"] for r in rows)]
    shapes = sorted({f"{r['B']} x {r['N']:,}" for r in rows})
    lines = [f"Measured {machine_line(result)}; float32, {' and '.join(shapes)} neurons. Each cell: ms per "
             "forward+backward (x the fused kernel).",
             "", "| T | " + " | ".join(NEURON_LABELS[n] for n in names) + " |",
             "|---:|" + "---:|" * len(names)]
    for row in rows:
        cells = []
        for name in names:
            impl = row["impl"].get(name, {})
            ratio = impl.get("median_ratio_to_fused")
            cells.append(f"{impl['median_ms']:.2f} ({ratio:.2f})" if "median_ms" in impl else "")
        lines.append(f"| {row['T']} | " + " | ".join(cells) + " |")
    return lines


# --- bench_libraries.py: Open Neuromorphic's benchmark ----------------------------------------
def _open_neuromorphic_rows(result: dict) -> list[tuple[int, str, dict]]:
    return [(row["n"], name, impl) for row in result["rows"] for name, impl in row["impl"].items()]


def figure_open_neuromorphic_time(results: Path = RESULTS):
    """Forward and backward seconds per model (stacked bars), one panel per n."""
    import matplotlib.pyplot as plt

    result = load(OPEN_NEUROMORPHIC_FILE, results)
    if result is None:
        return _empty_figure(f"no {OPEN_NEUROMORPHIC_FILE} in benchmarks/results")
    rows = result["rows"]
    fig, axes = plt.subplots(1, len(rows), figsize=(5.4 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows):
        impls = [(name, r) for name, r in row["impl"].items() if "total_s" in r][::-1]
        labels = [r["label"] for _, r in impls]
        fwd = [r["forward_s"] for _, r in impls]
        bwd = [r["backward_s"] for _, r in impls]
        ys = range(len(impls))
        ax.barh(ys, fwd, color="C0", label="forward")
        ax.barh(ys, bwd, left=fwd, color="C1", label="backward")
        for y, f, b in zip(ys, fwd, bwd):
            ax.annotate(f" {f + b:.1f} s", (f + b, y), va="center", fontsize=7)
        ax.set_yticks(list(ys), labels, fontsize=8)
        ax.set_xlabel("seconds (mean of their timed runs)")
        ax.set_title(f"n = {row['n']:,}", fontsize=10)
        ax.set_xlim(0, max(f + b for f, b in zip(fwd, bwd)) * 1.25)
        ax.grid(axis="x", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="lower center", ncol=2, frameon=False)
    threads = result.get("machine", {}).get("threads", "?")
    fig.suptitle(f"batch {result['shape']['batch']}, T = {result['shape']['steps']}, {result.get('date', 'undated')}, "
                 f"{threads} thread{'s' if threads != 1 else ''}", fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def figure_open_neuromorphic_memory(results: Path = RESULTS):
    """Peak memory of each model's process (MiB), bars grouped by n."""
    import matplotlib.pyplot as plt

    result = load(OPEN_NEUROMORPHIC_FILE, results)
    if result is None:
        return _empty_figure(f"no {OPEN_NEUROMORPHIC_FILE} in benchmarks/results")
    rows = result["rows"]
    names: list[str] = []
    labels: dict[str, str] = {}
    for _, name, impl in _open_neuromorphic_rows(result):
        if name not in names:
            names.append(name)
            labels[name] = impl.get("label", name)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for i, name in enumerate(names):
        xs, mib = [], []
        for k, row in enumerate(rows):
            impl = row["impl"].get(name, {})
            if isinstance(impl.get("peak_mib"), (int, float)):
                xs.append(k + (i - (len(names) - 1) / 2) * width)
                mib.append(impl["peak_mib"])
        bars = ax.bar(xs, mib, width, label=labels[name], color=f"C{i}")
        for bar, value in zip(bars, mib):
            ax.annotate(f"{value:.0f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom",
                        fontsize=7)
    ax.set_xticks(range(len(rows)), [f"n = {row['n']:,}" for row in rows])
    ax.set_ylabel("peak memory of the process, MiB")
    ax.grid(axis="y", alpha=0.3)
    handles, names_ = ax.get_legend_handles_labels()
    fig.legend(handles, names_, fontsize=8, loc="lower center", ncol=3, frameon=False)
    ax.set_title(machine_line(result), fontsize=8)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


def table_open_neuromorphic(results: Path = RESULTS) -> list[str]:
    """Markdown: their forward and backward means, the total against CLIF multi-step, memory, spikes."""
    result = load(OPEN_NEUROMORPHIC_FILE, results)
    if result is None:
        return ["*No bench_libraries.py result committed.*"]
    ref = result.get("reference", "clif_multi")
    lines = [f"Measured {machine_line(result)}; batch {result['shape']['batch']}, "
             f"T = {result['shape']['steps']}.", "",
             "| n | model | forward s | backward s | x CLIF multi-step | peak MiB | spikes / neuron-step |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for n, name, r in _open_neuromorphic_rows(result):
        if "error" in r:
            lines.append(f"| {n:,} | {r.get('label', name)} | {r['error']} | | | | |")
            continue
        ratio = r.get(f"total_over_{ref}")
        mem = r.get("peak_mib")
        lines.append(f"| {n:,} | {r.get('label', name)} | {r['forward_s']:.2f} | {r['backward_s']:.2f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}'} | {'' if mem is None else f'{mem:.0f}'} | "
                     f"{r['spikes_per_neuron_step']:.3f} |")
    for name, why in result.get("not_run_at_larger_n", {}).items():
        lines.append(f"\n`{name}` was not run at larger n: {why}.")
    return lines


# --- output ---------------------------------------------------------------------------------
# --- bench_busy.py: a CPU with a busy core -----------------------------------------------------
BUSY_FILE = "busy_cpu.json"


def table_busy(results: Path = RESULTS) -> list[str]:
    """Markdown: per size, the fused call's idle one-thread time, and each case as a multiple of it."""
    result = load(BUSY_FILE, results)
    if result is None:
        return ["*No bench_busy.py result committed.*"]
    cases = [("fused@2", "idle", "fused, 2 threads, idle"), ("fused@2", "busy", "fused, 2 threads, busy"),
             ("reference@2", "busy", "reference, 2 threads, busy")]
    by_size: dict[tuple, dict[str, dict]] = {}
    for row in result["results"]:
        by_size.setdefault((row["T"], row["B"], row["N"]), {})[row["condition"]] = row["impl"]
    lines = [f"Measured {str(result.get('date', 'undated'))[:10]}, {result.get('cpu', '?')} "
             f"({result.get('cpus', '?')} cores), torch {result.get('torch', '?')}, {result.get('reps', '?')} "
             "interleaved repetitions; busy: one process spinning beside the benchmark. Each case: the median "
             "over repetitions of its time over the fused call's median on one thread of the idle machine.",
             "", "| `[T, B, N]` | fused, 1 thread, idle | " + " | ".join(label for *_, label in cases) + " |",
             "|---|---:|" + "---:|" * len(cases)]
    for (t, b, n), conditions in sorted(by_size.items()):
        idle = conditions.get("idle", {}).get("fused@1", {}).get("median_ms")
        cells = [f"{idle:.2f} ms" if idle else ""]
        for impl, condition, _ in cases:
            value = conditions.get(condition, {}).get(impl, {}).get("x_idle_fused_1thread")
            cells.append(f"{value:.2f} x" if value is not None else "")
        lines.append(f"| `[{t}, {b}, {n}]` | " + " | ".join(cells) + " |")
    return lines


FIGURES = {
    "cost_over_T.png": figure_cost_over_t,
    "neuron_comparison.png": figure_neuron_comparison,
    "open_neuromorphic_time.png": figure_open_neuromorphic_time,
    "open_neuromorphic_memory.png": figure_open_neuromorphic_memory,
}
TABLES = {"bench_sweep": table_sweep, "bench_neuron": table_neuron, "bench_libraries": table_open_neuromorphic,
          "bench_busy": table_busy}


def _plain_ticks(ax) -> None:  # noqa: ANN001
    """Log axes labelled 4, 16, 64 rather than 2^2, 2^4, 2^6."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(NullFormatter())


def _empty_figure(text: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def update_readme(text: str, results: Path = RESULTS) -> str:
    """``text`` with each block between ``<!-- table:NAME -->`` and ``<!-- /table -->`` rewritten."""
    def block(match: re.Match) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r} in README (known: {sorted(TABLES)})")
        return f"<!-- table:{name} -->\n" + "\n".join(TABLES[name](results)) + "\n<!-- /table -->"

    return re.sub(r"<!-- table:(\w+) -->.*?<!-- /table -->", block, text, flags=re.S)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON files are")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the PNG files go")
    parser.add_argument("--update-readme", action="store_true", help="rewrite the tables of benchmarks/README.md")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, make in FIGURES.items():
        fig = make(args.results)
        fig.savefig(args.out_dir / name, dpi=110)
        plt.close(fig)
        print(f"wrote {args.out_dir / name}")
    if args.update_readme:
        README.write_text(update_readme(README.read_text(), args.results))
        print(f"updated the tables of {README}")
    else:
        for name, make in TABLES.items():
            print(f"\n## {name}\n" + "\n".join(make(args.results)))


if __name__ == "__main__":
    main()
