"""Forward+backward time of CLIF on a CPU that another program keeps busy.

A laptop running a notebook usually has other programs on some of its cores. A parallel
region that waits for a thread the operating system has not scheduled pays a scheduler
slice (milliseconds) for work that takes a fraction of one. This benchmark times, for each
size ``[T, B, N]``:

* ``fused``: :func:`snntorch_clif.clif_sequence` on the fused op, forward + backward;
* ``reference``: the same call on the pure-PyTorch reference (a step loop of small ops);

each with one thread and with torch's default thread count, under three conditions:

* ``idle``: nothing else started by the benchmark;
* ``busy``: one Python process spinning beside it, placed by the operating system;
* ``busy-pinned``: the same, pinned to the last CPU.

Competitors are timed interleaved (every repetition runs each once, in a shuffled order) and
the table reports medians of per-repetition ratios, which survive a machine that drifts:
``x 1 thread`` (to the fused call on one thread in the same condition and repetition) and
``x reference`` (to the reference with the same threads), plus ``x idle 1t`` (the median time
over the idle median of the fused call on one thread). Other programs also share the machine:
the load average before and after each condition is printed and saved, with the CPUs this
process could actually use at the start (``effective CPUs``: one spinning loop per CPU, timed
against one alone), and the fused kernel's thread-policy counters
(:func:`snntorch_clif.backends.cpu_threads`) say how its calls ran.

Usage::

    python benchmarks/bench_busy.py                  # the default sizes, all conditions
    python benchmarks/bench_busy.py --sizes 4x32x1024 --conditions idle busy --reps 31
    python benchmarks/bench_busy.py --json ''        # print only
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch

import snntorch_clif
from snntorch_clif import backends, clif_sequence
from snntorch_clif import surrogate as sg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_neuron import cpu_model  # noqa: E402

CONDITIONS = ("idle", "busy", "busy-pinned")
RESULTS = Path(__file__).resolve().parent / "results"


def count_down(n: int) -> None:  # pragma: no cover - runs in child processes
    while n:
        n -= 1


def effective_cpus(n: int = 5_000_000) -> float:
    """How many CPUs' worth of work this machine gives us now: k loops on k processes at once
    (k = the CPUs we may use) against one loop alone. An idle k-CPU machine gives about k."""
    k = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ctx = multiprocessing.get_context("spawn")
    times = []
    for procs in (1, k):
        workers = [ctx.Process(target=count_down, args=(n,)) for _ in range(procs)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        times.append(time.perf_counter() - t0)
    return k * times[0] / times[1]


def spin(cpu: Optional[int]) -> None:  # pragma: no cover - runs in a child process
    """Keep one CPU busy forever (pinned to ``cpu`` when given)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    while True:
        pass


class Spinner:
    """A busy process for the length of a ``with`` block (none for ``idle``)."""

    def __init__(self, condition: str) -> None:
        self.condition = condition
        self.process: Optional[multiprocessing.Process] = None

    def __enter__(self) -> Spinner:
        if self.condition != "idle":
            cpu = max(os.sched_getaffinity(0)) if self.condition == "busy-pinned" else None
            self.process = multiprocessing.get_context("spawn").Process(target=spin, args=(cpu,), daemon=True)
            self.process.start()
            time.sleep(0.5)  # running, and the scheduler has placed it
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.join()


def make_competitors(T: int, B: int, N: int, threads: dict[str, int]) -> dict[str, Callable[[], None]]:
    """name -> one forward + backward; names ``<impl>@<threads label>``."""
    x = (torch.randn(T, B, N) * 1.5 + 0.3).requires_grad_()
    grad = torch.randn(T, B, N)
    rect = sg.Rectangle(1.0)

    def make(impl: str, n: int) -> Callable[[], None]:
        def run() -> None:
            torch.set_num_threads(n)
            x.grad = None
            if impl == "reference":
                with backends.use_reference():
                    spk = clif_sequence(x, beta=0.5, spike_grad=rect).spk
            else:
                spk = clif_sequence(x, beta=0.5, spike_grad=rect).spk
            spk.backward(grad)

        return run

    return {f"{impl}@{label}": make(impl, n) for impl in ("fused", "reference") for label, n in threads.items()}


def time_condition(T: int, B: int, N: int, threads: dict[str, int], reps: int) -> dict[str, list[float]]:
    competitors = make_competitors(T, B, N, threads)
    for fn in competitors.values():  # warm-up: allocator, lazy init, one-time warnings
        fn()
    times: dict[str, list[float]] = {name: [] for name in competitors}
    for r in range(reps):
        order = list(competitors)
        random.Random(r).shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            competitors[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def policy_counters() -> Optional[dict]:
    try:
        return backends.cpu_threads()._asdict()
    except RuntimeError:  # a library without the thread policy
        return None


def summarize(times: dict[str, list[float]], threads: dict[str, int], idle_1t: Optional[float]) -> dict:
    out = {}
    for name, ts in times.items():
        impl, label = name.split("@")
        same_1t = times[f"fused@{list(threads)[0]}"]
        ref = times[f"reference@{label}"]
        row = {
            "median_ms": statistics.median(ts) * 1e3,
            "mean_ms": statistics.fmean(ts) * 1e3,
            "max_ms": max(ts) * 1e3,
            "x_fused_1thread": statistics.median(t / b for t, b in zip(ts, same_1t)),
            "x_reference": statistics.median(t / b for t, b in zip(ts, ref)),
        }
        if idle_1t:
            row["x_idle_fused_1thread"] = statistics.median(ts) / idle_1t
        out[name] = row
    return out


def print_table(results: list[dict]) -> None:
    head = (f"{'T x B x N':>13} {'condition':<12} {'impl':<16} {'median ms':>9} {'mean ms':>8} {'max ms':>8} "
            f"{'x 1 thread':>10} {'x reference':>11} {'x idle 1t':>9}")
    print(head)
    print("-" * len(head))
    for res in results:
        size = f"{res['T']}x{res['B']}x{res['N']}"
        for name, r in res["impl"].items():
            idle = r.get("x_idle_fused_1thread")
            print(f"{size:>13} {res['condition']:<12} {name:<16} {r['median_ms']:>9.3f} {r['mean_ms']:>8.3f} "
                  f"{r['max_ms']:>8.2f} {r['x_fused_1thread']:>10.2f} {r['x_reference']:>11.2f} "
                  f"{'' if idle is None else f'{idle:.2f}':>9}")
        print(f"{'':>13} {'':<12} load average {res['load_before'][0]:.2f} -> {res['load_after'][0]:.2f}, "
              f"effective CPUs {res['effective_cpus']:.2f}"
              + (f"; fused policy: {res['policy']}" if res.get("policy") else ""))
    print("x 1 thread / x reference: medians over repetitions of (time / the fused call on one thread, same "
          "condition) and (time / the reference with the same threads); x idle 1t: median / idle median of "
          "fused@1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["4x32x1024", "16x32x4096", "64x32x4096"], help="TxBxN")
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--json", default=str(RESULTS / "busy_cpu.json"), help="write the results here ('': no file)")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    threads = {"1": 1} if default_threads == 1 else {"1": 1, str(default_threads): default_threads}
    results = []
    for size in args.sizes:
        T, B, N = (int(v) for v in size.lower().split("x"))
        idle_1t = None
        for condition in args.conditions:
            before = os.getloadavg()
            cpus = effective_cpus()
            counters_before = policy_counters()
            with Spinner(condition):
                times = time_condition(T, B, N, threads, args.reps)
            counters_after = policy_counters()
            if condition == "idle":
                idle_1t = statistics.median(times["fused@1"])
            res = {"T": T, "B": B, "N": N, "condition": condition, "load_before": before,
                   "load_after": os.getloadavg(), "effective_cpus": cpus, "impl": summarize(times, threads, idle_1t)}
            if counters_before and counters_after:
                res["policy"] = {k: counters_after[k] - counters_before[k]
                                 for k in ("threaded_calls", "single_calls", "contended_calls")}
            results.append(res)
            torch.set_num_threads(default_threads)
    print_table(results)
    out = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "nice": os.nice(0),  # this process's priority (the spinner's too); other programs keep theirs
        "threads": threads,
        "torch": torch.__version__,
        "backends": str(snntorch_clif.backends()),
        "reps": args.reps,
        "results": results,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
