"""Forward+backward time of CLIF implementations over a time-major input ``[T, B, N]``.

Competitors, timed interleaved in one run (the machines drift by +-30%, so each
repetition times every competitor once, in turn, and the table reports medians of the
per-repetition ratios to the fused op):

* ``fused``: :func:`snntorch_clif.clif_sequence` on the fused op (this package's kernels);
* ``reference``: the same call forced onto the pure-PyTorch reference (a step loop);
* ``leaky``: ``snntorch.Leaky`` (a simpler neuron) in a Python step loop;
* ``sj_clif``: SpikingJelly's ``ComplementaryLIFNode(step_mode="m")``, when installed;
* ``floor``: 32 bytes per neuron-step (x in, spikes out, h and m saved) at this machine's
  measured copy bandwidth: what an implementation that saves h and m at every step moves at
  least. The fused kernels save m every 16 steps only (24.5 bytes), so they can beat it.

Plus single-step mode: ``clif_step`` in a Python loop, fused vs reference.

Usage::

    python benchmarks/bench_neuron.py                       # CPU, the default grid
    python benchmarks/bench_neuron.py --json out.json --T 16 --sizes 32x4096
    python benchmarks/bench_neuron.py --device cuda         # CUDA events, device bandwidth
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import time
from typing import Callable

import torch

import snntorch_clif
from snntorch_clif import backends, clif_sequence, clif_step
from snntorch_clif import surrogate as sg

BYTES_PER_NEURON_STEP = 32


class Timer:
    """Wall-clock on the CPU, CUDA events on a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], None]) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def repetition_order(names: list[str], repetition: int) -> list[str]:
    """The order in which repetition ``repetition`` runs the competitors: a shuffle seeded by it.

    Every competitor runs once per repetition, in an order that changes from one repetition
    to the next. A rotation would not do: it keeps who follows whom, so the competitor after
    a cache-flushing copy (or after a large allocation) would be the same one every time.

    Example::

        >>> sorted(repetition_order(["a", "b", "c"], 3))
        ['a', 'b', 'c']
    """
    order = list(names)
    random.Random(repetition).shuffle(order)
    return order


def copy_bandwidth(device: torch.device, timer: Timer, mib: int = 256, reps: int = 9) -> float:
    """Bytes per second moved by a large tensor copy (read + write)."""
    src = torch.empty(mib * 2**20 // 4, device=device).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = [timer(lambda: dst.copy_(src)) for _ in range(reps)]
    return 2 * src.numel() * 4 / statistics.median(times)


def leaky_step_loop(x: torch.Tensor, grad: torch.Tensor, device: torch.device | str) -> Callable[[], None]:
    """``snn.Leaky`` in a Python step loop over ``x`` ``[T, ...]``, forward + backward of ``grad``.

    The competitor every benchmark here times. It steps over ``x.unbind(0)``: ``x[t]`` would
    give each step a full-size zero gradient. Raises ``ImportError`` without snnTorch.
    """
    import snntorch as snn

    leaky = snn.Leaky(beta=0.5).to(device)

    def run() -> None:
        x.grad = None
        mem = leaky.reset_mem()
        spikes = []
        for xt in x.unbind(0):
            spk, mem = leaky(xt, mem)
            spikes.append(spk)
        torch.stack(spikes).backward(grad)

    return run


def make_competitors(T: int, B: int, N: int, device: torch.device, dtype: torch.dtype) -> dict[str, Callable]:
    """name -> a function that runs one forward+backward."""
    x = (torch.randn(T, B, N, device=device, dtype=dtype) * 1.5 + 0.3).requires_grad_()
    grad = torch.randn(T, B, N, device=device, dtype=dtype)
    rect = sg.Rectangle(1.0)

    # Every run starts with x.grad = None (no accumulation pass), and step loops take
    # x.unbind(0): x[t] would give each step a full-size zero gradient (O(T^2) work).
    def fused() -> None:
        x.grad = None
        spk = clif_sequence(x, beta=0.5, spike_grad=rect).spk
        spk.backward(grad)

    def reference() -> None:
        x.grad = None
        with backends.use_reference():
            spk = clif_sequence(x, beta=0.5, spike_grad=rect).spk
        spk.backward(grad)

    def fused_step() -> None:
        x.grad = None
        comp = mem = None
        spikes = []
        for xt in x.unbind(0):
            spk, comp, mem = clif_step(xt, comp, mem, beta=0.5, spike_grad=rect)
            spikes.append(spk)
        torch.stack(spikes).backward(grad)

    def reference_step() -> None:
        with backends.use_reference():
            fused_step()

    out: dict[str, Callable] = {"fused": fused, "reference": reference}
    try:
        out["leaky"] = leaky_step_loop(x, grad, device)
    except ImportError:
        pass
    try:
        from spikingjelly.activation_based import functional as sj_functional
        from spikingjelly.activation_based import neuron as sj_neuron

        node = sj_neuron.ComplementaryLIFNode(tau=2.0, step_mode="m").to(device)

        def sj_clif() -> None:
            x.grad = None
            sj_functional.reset_net(node)
            node(x).backward(grad)

        out["sj_clif"] = sj_clif
    except ImportError:
        pass
    out["fused_step"] = fused_step
    out["reference_step"] = reference_step
    return out


def bench_case(T: int, B: int, N: int, device: torch.device, dtype: torch.dtype, reps: int,
               bandwidth: float, timer: Timer) -> dict:
    competitors = make_competitors(T, B, N, device, dtype)
    for fn in competitors.values():  # warm-up (allocator, lazy init, one-time warnings)
        fn()
    times: dict[str, list[float]] = {name: [] for name in competitors}
    for r in range(reps):
        for name in repetition_order(list(competitors), r):
            times[name].append(timer(competitors[name]))
    neuron_steps = T * B * N
    floor = BYTES_PER_NEURON_STEP * neuron_steps / bandwidth
    row: dict = {"T": T, "B": B, "N": N, "neuron_steps": neuron_steps, "floor_ms": floor * 1e3, "impl": {}}
    for name, ts in times.items():
        base = "fused_step" if name.endswith("_step") else "fused"
        ratios = [t / f for t, f in zip(ts, times[base])]
        row["impl"][name] = {
            "median_ms": statistics.median(ts) * 1e3,
            "neuron_steps_per_s": neuron_steps / statistics.median(ts),
            "median_ratio_to_" + base: statistics.median(ratios),
        }
    fused_ts = times["fused"]
    row["fused_over_floor"] = statistics.median(fused_ts) / floor
    row["fused_bytes_per_s"] = BYTES_PER_NEURON_STEP * neuron_steps / statistics.median(fused_ts)
    return row


def print_table(rows: list[dict], bandwidth: float) -> None:
    print(f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s; floor = {BYTES_PER_NEURON_STEP} B/neuron-step")
    head = f"{'T':>4} {'B':>4} {'N':>6} | {'impl':<15} {'ms':>9} {'Mnst/s':>9} {'x fused':>8}"
    print(head)
    print("-" * len(head))
    for row in rows:
        for name, r in row["impl"].items():
            ratio = next(v for k, v in r.items() if k.startswith("median_ratio"))
            label = name if not name.endswith("_step") else name + " (1)"
            print(f"{row['T']:>4} {row['B']:>4} {row['N']:>6} | {label:<15} {r['median_ms']:>9.3f} "
                  f"{r['neuron_steps_per_s'] / 1e6:>9.1f} {ratio:>8.2f}")
        print(f"{row['T']:>4} {row['B']:>4} {row['N']:>6} | {'floor':<15} {row['floor_ms']:>9.3f} "
              f"{row['neuron_steps'] / row['floor_ms'] / 1e3:>9.1f} {row['floor_ms'] / row['impl']['fused']['median_ms']:>8.2f}"
              f"   (fused = {row['fused_over_floor']:.2f}x floor)")
    print("x fused: median over repetitions of (time / fused time); '(1)' rows: clif_step in a Python loop, "
          "ratio to the fused single step")


def cpu_model() -> str:
    """The processor's model name (Linux ``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> str | None:
    """The widest x86 vector extension the CPU reports (``AVX-512``, ``AVX2``), else None."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    return "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--T", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--sizes", nargs="+", default=["32x1024", "32x4096"], help="BxN neurons per step")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    timer = Timer(device)
    bandwidth = copy_bandwidth(device, timer)
    rows = []
    for size in args.sizes:
        B, N = (int(v) for v in size.lower().split("x"))
        for T in args.T:
            rows.append(bench_case(T, B, N, device, dtype, args.reps, bandwidth, timer))
    print_table(rows, bandwidth)
    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "date": datetime.date.today().isoformat(),
        "isa": cpu_isa() if device.type == "cpu" else None,
        "logical_cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "repetitions": args.reps,
        "load_average_at_start": load_at_start,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "backends": str(snntorch_clif.backends()),
        "copy_bandwidth_bytes_per_s": bandwidth,
        "bytes_per_neuron_step_floor": BYTES_PER_NEURON_STEP,
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
