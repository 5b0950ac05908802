"""Sweep of the fused CPU path over T, N and threads: cost per neuron-step, floor ratio, faults.

For every thread count, neuron count N and sequence length T this times, interleaved
(each repetition runs every competitor once, in an order shuffled anew for each repetition):

* ``fused``: :func:`snntorch_clif.clif_sequence` forward + backward, the call a user makes;
* ``op``: ``torch.ops.snntorch_clif.clif_forward`` called directly on ``x``, forward + backward
  through autograd: the call without our Python layer (:func:`~snntorch_clif.clif_sequence`'s
  checks and dispatch), the least any Python wrapper of the op can cost;
* ``kernel``: the two ops (``torch.ops.snntorch_clif.clif_forward`` with ``save``, then
  ``clif_backward``) called directly: the kernels without the Python layers and autograd;
* ``forward``: :func:`snntorch_clif.clif_sequence` under ``torch.no_grad()``;
* ``leaky``: ``snn.Leaky`` in a Python step loop, forward + backward (at ``--leaky-T`` only);
* ``mul``: ``(x * 0.5).backward(grad)``, the cheapest autograd forward + backward over the same
  ``[T, N]`` tensor: what any user-level call pays in host time and memory traffic at least;
* ``copy``: a copy of a 256 MiB buffer: the yardstick of the floor. The floor is 32 bytes
  per neuron-step (x in, spikes out, h and m saved; then the gradient in, h and m read back,
  dx out) at the bandwidth of that copy, taken in the same repetition, so that
  ``fused / floor`` is a ratio of two times measured side by side. (The kernels save m only
  every 16 steps, so they move 24.5 bytes and can run below the floor.)

Every column is the median over repetitions; ratios are medians of per-repetition ratios,
robust to the machine drifting (shared machines drift by 30-50 %). Minor page faults per call
are ``getrusage`` ``ru_minflt`` deltas (exact counts, not timings). Then a call-overhead
section times one single-step ``CLIF`` call on a ``[8, 16]`` input against ``snn.Leaky``
(forward+backward and forward only) and a multi-step call on ``[4, 8, 16]``, and a step-loop
section times :func:`snntorch_clif.clif_step` in a Python loop over ``x.unbind(0)`` (the fused
op with T = 1, forward + backward) against the same loop on the reference path
(``backends.use_reference()``), at every T and N of the sweep.

The numbers per neuron-step are ``time / (T * N)``; "flat" compares them across T.

Usage::

    python benchmarks/bench_sweep.py                  # T 4..1024, N 4096 and 131072, 1 and 2 threads
    python benchmarks/bench_sweep.py --quick          # fewer T and repetitions (~1 minute)
    python benchmarks/bench_sweep.py --threads 2 --N 131072 --T 16 256 --reps 9

It writes ``cpu_sweep_<k>thread(s).json`` per thread count into ``--json-dir``
(default ``benchmarks/results``; ``--json-dir ''`` writes nothing). Those files use
``bench_neuron.py``'s row format, so the docs' benchmark page renders them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import sys
import time
from typing import Callable

import torch

import snntorch_clif
from snntorch_clif import clif_sequence, surrogate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_neuron import (  # noqa: E402
    BYTES_PER_NEURON_STEP,
    cpu_isa,
    cpu_model,
    leaky_step_loop,
    make_competitors,
    repetition_order,
)

COPY_MIB = 256

Case = dict[str, Callable[[], None]]


def minor_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn: Callable[[], None], calls: int = 1) -> tuple[float, float]:
    """(seconds, minor page faults) per call, over ``calls`` back-to-back calls."""
    f0 = minor_faults()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t1 = time.perf_counter()
    return (t1 - t0) / calls, (minor_faults() - f0) / calls


def make_copy() -> Callable[[], None]:
    src = torch.empty(COPY_MIB * 2**20 // 4).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault the destination in once
    return lambda: dst.copy_(src)


def make_case(T: int, N: int, leaky: bool, beta: float = 0.5) -> Case:
    """name -> one call of that competitor on a fresh [T, N] problem (CLIF's decay ``beta``)."""
    x = (torch.randn(T, N) * 1.5 + 0.3).requires_grad_()
    grad = torch.randn(T, N)
    rect = surrogate.rectangle()

    def fused() -> None:
        x.grad = None
        clif_sequence(x, beta=beta, spike_grad=rect).spk.backward(grad)

    def forward() -> None:
        with torch.no_grad():
            clif_sequence(x, beta=beta, spike_grad=rect)

    xd = x.detach()
    zeros = torch.zeros(N)
    half, one = torch.full((1,), beta), torch.ones(1)
    fwd_op, bwd_op = torch.ops.snntorch_clif.clif_forward, torch.ops.snntorch_clif.clif_backward

    def op() -> None:
        x.grad = None
        fwd_op(x, None, None, half, one, one, 0, rect.kind, rect.param, False, True)[0].backward(grad)

    def kernel() -> None:
        saved = fwd_op(xd, zeros, zeros, half, one, one, 0, rect.kind, rect.param, False, True)[3]
        bwd_op(grad, None, None, saved, zeros, half, one, one, 0, rect.kind, rect.param, False)

    def mul() -> None:
        x.grad = None
        (x * 0.5).backward(grad)

    case: Case = {"fused": fused, "op": op, "kernel": kernel, "forward": forward, "mul": mul}
    if leaky:
        case["leaky"] = leaky_step_loop(x, grad, "cpu")
    return case


def run_interleaved(case: Case, reps: int, min_sample_s: float = 0.02) -> dict[str, list[tuple[float, float]]]:
    """Per competitor, ``reps`` samples of (seconds, faults) per call, in a shuffled order.

    A sample repeats a short call until it lasts ``min_sample_s``, so that a small case is not
    timed as one cold call right after the cache-flushing copy.
    """
    calls = {}
    for name, fn in case.items():  # warm-up (allocator, lazy initialisation, warnings), then calibrate
        fn()
        calls[name] = max(1, int(min_sample_s / max(timed(fn)[0], 1e-7)))
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in case}
    names = list(case)
    for r in range(reps):
        for name in repetition_order(names, r):
            out[name].append(timed(case[name], calls[name]))
    return out


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_case(T: int, N: int, reps: int, copy: Callable[[], None], leaky: bool, beta: float = 0.5) -> dict:
    case = make_case(T, N, leaky, beta)
    case["copy"] = copy
    runs = run_interleaved(case, reps)
    steps = T * N
    copy_s = [t for t, _ in runs["copy"]]
    # floor of one repetition: 32 B per neuron-step at that repetition's copy bandwidth
    floors = [BYTES_PER_NEURON_STEP * steps * c / (2 * COPY_MIB * 2**20) for c in copy_s]
    fused_s = [t for t, _ in runs["fused"]]
    row: dict = {
        "T": T, "B": 1, "N": N, "neuron_steps": steps,
        "floor_ms": statistics.median(floors) * 1e3,
        "copy_bandwidth_bytes_per_s": 2 * COPY_MIB * 2**20 / statistics.median(copy_s),
        "impl": {},
    }
    for name, samples in runs.items():
        if name == "copy":
            continue
        ts = [t for t, _ in samples]
        ratios = [t / f for t, f in zip(ts, fused_s)]
        row["impl"][name] = {
            "median_ms": statistics.median(ts) * 1e3,
            "neuron_steps_per_s": steps / statistics.median(ts),
            "median_ratio_to_fused": statistics.median(ratios),
            "ns_per_neuron_step": statistics.median(ts) / steps * 1e9,
            "over_floor": spread([t / f for t, f in zip(ts, floors)]),
            "minor_faults_per_call": statistics.median(f for _, f in samples),
        }
    row["fused_over_floor"] = row["impl"]["fused"]["over_floor"]["median"]
    row["fused_bytes_per_s"] = BYTES_PER_NEURON_STEP * steps / statistics.median(fused_s)
    return row


def call_overhead(reps: int, calls: int) -> dict:
    """Host time of one call on a tiny input: CLIF single step vs snn.Leaky, and CLIF multi-step."""
    import snntorch as snn

    x = torch.randn(8, 16, requires_grad=True)
    grad = torch.randn(8, 16)
    x_seq = torch.randn(4, 8, 16, requires_grad=True)
    grad_seq = torch.randn(4, 8, 16)
    clif = snntorch_clif.CLIF(beta=0.5)
    clif_multi = snntorch_clif.CLIF(beta=0.5, step_mode="multi")
    leaky = snn.Leaky(beta=0.5)

    def clif_fb() -> None:
        comp, mem = clif.reset_mem()
        spk, _, _ = clif(x, comp, mem)
        spk.backward(grad)

    def leaky_fb() -> None:
        mem = leaky.reset_mem()
        spk, _ = leaky(x, mem)
        spk.backward(grad)

    def clif_multi_fb() -> None:
        comp, mem = clif_multi.reset_mem()
        spk, _, _ = clif_multi(x_seq, comp, mem)
        spk.backward(grad_seq)

    def clif_fwd() -> None:
        with torch.no_grad():
            comp, mem = clif.reset_mem()
            clif(x, comp, mem)

    def leaky_fwd() -> None:
        with torch.no_grad():
            leaky(x, leaky.reset_mem())

    def loop(fn: Callable[[], None]) -> Callable[[], None]:
        def many() -> None:
            for _ in range(calls):
                fn()
        return many

    case = {name: loop(fn) for name, fn in [
        ("clif_step_fwd_bwd", clif_fb), ("leaky_step_fwd_bwd", leaky_fb), ("clif_multi_T4_fwd_bwd", clif_multi_fb),
        ("clif_step_fwd", clif_fwd), ("leaky_step_fwd", leaky_fwd),
    ]}
    runs = run_interleaved(case, reps, min_sample_s=0.0)
    us = {name: [t / calls * 1e6 for t, _ in samples] for name, samples in runs.items()}

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(us[a], us[b]))

    return {
        "input": [8, 16],
        "calls_per_repetition": calls,
        "us_per_call": {name: statistics.median(v) for name, v in us.items()},
        "clif_over_leaky_fwd_bwd": ratio("clif_step_fwd_bwd", "leaky_step_fwd_bwd"),
        "clif_over_leaky_fwd": ratio("clif_step_fwd", "leaky_step_fwd"),
        "clif_multi_over_single_fwd_bwd": ratio("clif_multi_T4_fwd_bwd", "clif_step_fwd_bwd"),
    }


def step_loops(Ts: list[int], Ns: list[int], reps: int) -> list[dict]:
    """``clif_step`` in a Python loop, fused vs reference, forward + backward, per (N, T)."""
    rows = []
    for n in Ns:
        for t in Ts:
            every = make_competitors(t, 1, n, torch.device("cpu"), torch.float32)
            case = {name: every[name] for name in ("fused_step", "reference_step")}
            runs = run_interleaved(case, reps, min_sample_s=0.0)
            fused_s = [x for x, _ in runs["fused_step"]]
            ref_s = [x for x, _ in runs["reference_step"]]
            ratios = [f / r for f, r in zip(fused_s, ref_s)]
            rows.append({
                "T": t, "N": n,
                "fused_step_ms": statistics.median(fused_s) * 1e3,
                "reference_step_ms": statistics.median(ref_s) * 1e3,
                "fused_over_reference": spread(ratios),
            })
            r = rows[-1]
            print(f"  step loop N={n:>7} T={t:>5}: fused clif_step {r['fused_step_ms']:9.2f} ms, reference "
                  f"{r['reference_step_ms']:9.2f} ms, fused/reference {r['fused_over_reference']['median']:.2f} "
                  f"({r['fused_over_reference']['min']:.2f}-{r['fused_over_reference']['max']:.2f})", flush=True)
            del every, case
    return rows


def summarize(rows: list[dict]) -> dict:
    """Flatness across T (max / min cost per neuron-step) and the floor ratios, per N."""
    out: dict = {}
    for n in sorted({r["N"] for r in rows}):
        sub = [r for r in rows if r["N"] == n]
        ns = [r["impl"]["fused"]["ns_per_neuron_step"] for r in sub]
        floor = [r["fused_over_floor"] for r in sub]
        op = [r["impl"]["op"]["ns_per_neuron_step"] for r in sub]
        kern = [r["impl"]["kernel"]["ns_per_neuron_step"] for r in sub]
        kern_floor = [r["impl"]["kernel"]["over_floor"]["median"] for r in sub]
        entry = {
            "T": [r["T"] for r in sub],
            "fused_ns_max_over_min": max(ns) / min(ns),
            "fused_over_floor_max_over_min": max(floor) / min(floor),
            "op_ns_max_over_min": max(op) / min(op),
            "op_over_floor": [r["impl"]["op"]["over_floor"]["median"] for r in sub],
            "kernel_ns_max_over_min": max(kern) / min(kern),
            "kernel_over_floor_max_over_min": max(kern_floor) / min(kern_floor),
            "fused_over_floor": floor,
            "fused_over_mul": [r["impl"]["mul"]["median_ratio_to_fused"] ** -1 for r in sub],
        }
        leaky = [r["impl"]["leaky"]["median_ratio_to_fused"] for r in sub if "leaky" in r["impl"]]
        if leaky:
            entry["leaky_over_fused"] = leaky
        out[str(n)] = entry
    return out


def print_header() -> None:
    head = (f"{'thr':>3} {'N':>7} {'T':>5} | {'fused ns/st':>11} {'/floor':>6} {'(min-max)':>11} "
            f"{'op':>6} {'/floor':>6} {'kernel':>7} {'/floor':>6} {'fwd-only':>8} {'mul':>6} {'faults':>8} {'kfaults':>8} {'leaky/fused':>11} {'GB/s':>5}")
    print(head)
    print("-" * len(head))


def print_rows(rows: list[dict], threads: int) -> None:
    for r in rows:
        f, o, k = r["impl"]["fused"], r["impl"]["op"], r["impl"]["kernel"]
        fw, mu = r["impl"]["forward"], r["impl"]["mul"]
        lk = r["impl"].get("leaky")
        print(f"{threads:>3} {r['N']:>7} {r['T']:>5} | {f['ns_per_neuron_step']:>11.2f} {f['over_floor']['median']:>6.2f} "
              f"{f['over_floor']['min']:>5.2f}-{f['over_floor']['max']:<5.2f} {o['ns_per_neuron_step']:>6.2f} "
              f"{o['over_floor']['median']:>6.2f} {k['ns_per_neuron_step']:>7.2f} "
              f"{k['over_floor']['median']:>6.2f} {fw['ns_per_neuron_step']:>8.2f} {mu['ns_per_neuron_step']:>6.2f} "
              f"{f['minor_faults_per_call']:>8.0f} "
              f"{k['minor_faults_per_call']:>8.0f} {lk['median_ratio_to_fused'] if lk else float('nan'):>11.2f} "
              f"{r['copy_bandwidth_bytes_per_s'] / 1e9:>5.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, nargs="+", default=None, help="sequence lengths (default 4 16 64 256 1024)")
    parser.add_argument("--N", type=int, nargs="+", default=[4096, 131072], help="neurons per step")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=None, help="repetitions per case (default 7, --quick 3)")
    parser.add_argument("--leaky-T", type=int, nargs="*", default=[16], help="T values that also time snn.Leaky")
    parser.add_argument("--quick", action="store_true", help="T 4 16 256, 3 repetitions")
    parser.add_argument("--beta", type=float, default=0.5,
                        help="CLIF's decay (default 0.5); at 0.9 silent neurons reach subnormals within ~30 steps")
    parser.add_argument("--no-overhead", action="store_true", help="skip the call-overhead section")
    parser.add_argument("--no-steps", action="store_true", help="skip the step-loop section")
    parser.add_argument("--json-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    for name in ("T", "N", "threads"):
        if any(v < 1 for v in getattr(args, name) or [1]):
            parser.error(f"--{name} values must be positive")
    Ts = args.T or ([4, 16, 256] if args.quick else [4, 16, 64, 256, 1024])
    reps = args.reps or (3 if args.quick else 7)
    if not snntorch_clif.ops.has_kernel("cpu"):
        raise SystemExit("the fused CPU kernel is not built: nothing to measure (see snntorch_clif.backends())")
    copy = make_copy()
    print(f"floor: {BYTES_PER_NEURON_STEP} B/neuron-step at a {COPY_MIB} MiB copy's bandwidth, timed in each repetition;"
          f" {reps} repetitions; ratios are medians of per-repetition ratios (min-max in brackets)")
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows = []
        print_header()
        for n in args.N:
            for t in Ts:
                rows.append(bench_case(t, n, reps, copy, leaky=t in args.leaky_T, beta=args.beta))
                print_rows(rows[-1:], threads)
        summary = summarize(rows)
        for n, s in summary.items():
            print(f"  {threads} thread(s), N={n}: fused ns/step max/min over T {s['fused_ns_max_over_min']:.2f} "
                  f"(floor ratio max/min {s['fused_over_floor_max_over_min']:.2f}); op without our Python "
                  f"{s['op_ns_max_over_min']:.2f}; kernel only "
                  f"{s['kernel_ns_max_over_min']:.2f} ({s['kernel_over_floor_max_over_min']:.2f}); fused / autograd mul "
                  f"over T: {' '.join(f'{v:.1f}' for v in s['fused_over_mul'])}")
        overhead = None if args.no_overhead else call_overhead(reps=max(reps, 5), calls=200)
        if overhead:
            u = overhead["us_per_call"]
            print(f"  call overhead, [8, 16], {threads} thread(s): CLIF step fwd+bwd {u['clif_step_fwd_bwd']:.0f} us vs "
                  f"snn.Leaky {u['leaky_step_fwd_bwd']:.0f} us (x{overhead['clif_over_leaky_fwd_bwd']:.2f}); "
                  f"forward only {u['clif_step_fwd']:.0f} vs {u['leaky_step_fwd']:.0f} us "
                  f"(x{overhead['clif_over_leaky_fwd']:.2f}); CLIF multi-step T=4 fwd+bwd {u['clif_multi_T4_fwd_bwd']:.0f} us "
                  f"(x{overhead['clif_multi_over_single_fwd_bwd']:.2f} a single step)")
        steps = None if args.no_steps else step_loops(Ts, args.N, reps=max(3, reps // 2))
        result = {
            "benchmark": "bench_sweep.py",
            "device": "cpu",
            "device_name": cpu_model(),
            "date": datetime.date.today().isoformat(),
            "isa": cpu_isa(),
            "cpu_count": os.cpu_count(),
            "threads": threads,
            "dtype": "float32",
            "beta": args.beta,
            "torch": torch.__version__,
            "backends": str(snntorch_clif.backends()),
            "copy_bandwidth_bytes_per_s": statistics.median(r["copy_bandwidth_bytes_per_s"] for r in rows),
            "bytes_per_neuron_step_floor": BYTES_PER_NEURON_STEP,
            "repetitions": reps,
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "rows": rows,
            "summary": summary,
            "call_overhead": overhead,
            "step_loop": steps,
        }
        if args.json_dir:
            os.makedirs(args.json_dir, exist_ok=True)
            path = os.path.join(args.json_dir, f"cpu_sweep_{threads}thread{'s' if threads > 1 else ''}.json")
            with open(path, "w") as f:
                json.dump(result, f, indent=2)
            print(f"  wrote {path}")


if __name__ == "__main__":
    main()
