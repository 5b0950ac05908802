"""GPU benchmark of one CLIF layer, forward + backward: the fused CUDA kernel against the
pure-PyTorch reference and snnTorch's ``snn.Leaky`` in a step loop.

Run by ``make gpu-check`` (or by hand on a machine with a CUDA GPU)::

    python benchmarks/bench_gpu.py                        # fp32 and bf16, T in {4, 16, 64}
    python benchmarks/bench_gpu.py --T 16 --sizes 64x8192 --dtypes float32 --reps 10

Input ``x`` is ``[T, B, N]`` with ``requires_grad``; one repetition is forward + backward
(``spk.backward(grad)``, ``x.grad`` cleared first), timed with CUDA events. The
implementations run interleaved (each repetition times each once, in a shuffled order) and
``x fused`` is the median of the per-repetition ratios. Reported per implementation:
median ms, G neuron-steps/s, and GB/s counted against 32 bytes per neuron-step (input, spike,
saved h and m: what a fused kernel that saves h and m must move at least), next to the
device's measured copy bandwidth (the ``floor`` row: those 32 bytes at that bandwidth).

One JSON file per dtype, ``benchmarks/results/gpu_<device>_<dtype>.json``, in the schema of
``bench_neuron.py``; the documentation's benchmarks page renders every such file. Without a
GPU the script exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_neuron import Timer, leaky_step_loop, repetition_order  # noqa: E402  (shared with the CPU benchmark)

BYTES_PER_NEURON_STEP = 32
DEFAULT_T = (4, 16, 64)
DEFAULT_SIZES = ("64x1024", "64x8192", "64x65536")
DEFAULT_DTYPES = ("float32", "bfloat16")
RESULTS = Path(__file__).resolve().parent / "results"
NO_GPU = "bench_gpu.py needs a CUDA GPU and torch with CUDA; torch.cuda.is_available() is False here"


# --- pure parts (unit-tested without a GPU) ---------------------------------------------------
def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"64x1024,64x65536"`` -> ``[(64, 1024), (64, 65536)]``."""
    sizes = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(\d+)x(\d+)\s*", item)
        if not match:
            raise argparse.ArgumentTypeError(f"sizes must look like 64x1024,64x65536; got {item!r}")
        sizes.append((int(match[1]), int(match[2])))
    return sizes


def summarize_case(T: int, B: int, N: int, times: dict[str, list[Optional[float]]], bandwidth: float) -> dict:
    """One result row from per-repetition seconds (``None``: that implementation ran out of memory)."""
    neuron_steps = T * B * N
    floor = BYTES_PER_NEURON_STEP * neuron_steps / bandwidth
    row: dict = {"T": T, "B": B, "N": N, "neuron_steps": neuron_steps, "floor_ms": floor * 1e3, "impl": {}}
    fused = times.get("fused", [])
    for name, ts in times.items():
        if not ts or any(t is None for t in ts):
            row["impl"][name] = {"error": "out of memory"}
            continue
        median = statistics.median(ts)
        entry = {
            "median_ms": median * 1e3,
            "neuron_steps_per_s": neuron_steps / median,
            "bytes_per_s": BYTES_PER_NEURON_STEP * neuron_steps / median,
        }
        if fused and len(fused) == len(ts) and all(f is not None for f in fused):
            entry["median_ratio_to_fused"] = statistics.median(t / f for t, f in zip(ts, fused))
        row["impl"][name] = entry
    if "median_ms" in row["impl"].get("fused", {}):
        fused_s = row["impl"]["fused"]["median_ms"] / 1e3
        row["fused_over_floor"] = fused_s / floor
        row["fused_bytes_per_s"] = BYTES_PER_NEURON_STEP * neuron_steps / fused_s
    return row


def format_table(result: dict) -> str:
    """The rows of a result as a text table (ms, G neuron-steps/s, GB/s, x fused)."""
    lines = [f"{result.get('device_name')}, {result.get('dtype')}, torch {result.get('torch')}, "
             f"copy bandwidth {result['copy_bandwidth_bytes_per_s'] / 1e9:.0f} GB/s",
             f"{'T x B x N':>16} {'impl':>10} {'ms':>9} {'Gnst/s':>8} {'GB/s':>7} {'x fused':>8}"]
    for row in result["rows"]:
        shape = f"{row['T']}x{row['B']}x{row['N']}"
        for name, impl in row["impl"].items():
            if "median_ms" not in impl:
                lines.append(f"{shape:>16} {name:>10} {impl.get('error', '?'):>9}")
                continue
            ratio = impl.get("median_ratio_to_fused")
            lines.append(f"{shape:>16} {name:>10} {impl['median_ms']:9.3f} {impl['neuron_steps_per_s'] / 1e9:8.2f} "
                         f"{impl['bytes_per_s'] / 1e9:7.0f} {'' if ratio is None else f'{ratio:8.2f}'}")
        lines.append(f"{shape:>16} {'floor':>10} {row['floor_ms']:9.3f}")
    return "\n".join(lines)


def output_path(out_dir: Path, device_name: str, dtype: str) -> Path:
    """``<out_dir>/gpu_<device>_<dtype>.json`` with the device name made file-safe."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "gpu"
    return out_dir / f"gpu_{slug}_{dtype}.json"


# --- measuring (needs a GPU) -------------------------------------------------------------------
def cuda_time(fn: Callable[[], None]) -> float:
    """Seconds ``fn`` takes on the GPU, by CUDA events around it on the current stream."""
    return Timer(torch.device("cuda"))(fn)


def copy_bandwidth(mib: int = 1024, reps: int = 9) -> float:
    """Bytes per second a large device-to-device copy moves (read + write)."""
    src = torch.empty(mib * 2**20 // 4, device="cuda").uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    seconds = statistics.median(cuda_time(lambda: dst.copy_(src)) for _ in range(reps))
    return 2 * src.numel() * 4 / seconds


def make_implementations(T: int, B: int, N: int, dtype: torch.dtype) -> dict[str, Callable[[], None]]:
    """name -> one forward+backward on the same ``[T, B, N]`` input."""
    from snntorch_clif import backends, clif_sequence
    from snntorch_clif import surrogate as sg

    x = (torch.randn(T, B, N, device="cuda", dtype=dtype) * 1.5 + 0.3).requires_grad_()
    grad = torch.randn(T, B, N, device="cuda", dtype=dtype)
    rect = sg.Rectangle(1.0)

    def fused() -> None:
        x.grad = None
        clif_sequence(x, beta=0.5, spike_grad=rect).spk.backward(grad)

    def reference() -> None:
        x.grad = None
        with backends.use_reference():
            spk = clif_sequence(x, beta=0.5, spike_grad=rect).spk
        spk.backward(grad)

    impls: dict[str, Callable[[], None]] = {"fused": fused, "reference": reference}
    try:
        impls["leaky"] = leaky_step_loop(x, grad, "cuda")
    except ImportError:
        pass
    return impls


def _timed_or_none(fn: Callable[[], None]) -> Optional[float]:
    try:
        return cuda_time(fn)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def bench_case(T: int, B: int, N: int, dtype: torch.dtype, reps: int, bandwidth: float) -> dict:
    impls = make_implementations(T, B, N, dtype)
    times: dict[str, list[Optional[float]]] = {name: [] for name in impls}
    for fn in impls.values():  # warm-up: allocator, lazy init, one-time warnings
        _timed_or_none(fn)
    for r in range(reps):
        for name in repetition_order(list(impls), r):
            times[name].append(_timed_or_none(impls[name]))
    del impls
    torch.cuda.empty_cache()
    return summarize_case(T, B, N, times, bandwidth)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--T", type=int, nargs="+", default=list(DEFAULT_T), help="time steps")
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes(",".join(DEFAULT_SIZES)),
                        help="B x N neuron shapes, comma separated (default: %(default)s)")
    parser.add_argument("--dtypes", nargs="+", default=list(DEFAULT_DTYPES), choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON files go")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2
    import snntorch_clif

    device_name = torch.cuda.get_device_name()
    bandwidth = copy_bandwidth()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        rows = [bench_case(T, B, N, dtype, args.reps, bandwidth) for T in args.T for B, N in args.sizes]
        result = {
            "device": "cuda",
            "device_name": device_name,
            "capability": ".".join(map(str, torch.cuda.get_device_capability())),
            "dtype": dtype_name,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "backends": str(snntorch_clif.backends()),
            "timing": "CUDA events, forward + backward, median of interleaved repetitions",
            "reps": args.reps,
            "copy_bandwidth_bytes_per_s": bandwidth,
            "bytes_per_neuron_step_floor": BYTES_PER_NEURON_STEP,
            "rows": rows,
        }
        path = output_path(args.out_dir, device_name, dtype_name)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(format_table(result))
        print(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
