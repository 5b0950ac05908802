"""Open Neuromorphic's SNN library benchmark, run as its authors wrote it, on this CPU, next to CLIF.

Open Neuromorphic's "Spiking Neural Network (SNN) Library Benchmarks" (blog post of 2023,
updated 2024) times one ``Linear(n, n)`` layer followed by one spiking layer on a random
time-major input ``randn(500, 16, n)``: the forward pass, then the backward pass of
``output.sum()``, and reports the time of each and the peak memory, per library. Their code is
``docker/run_benchmark.py`` and ``docker/utils.py`` beside the post in the
``open-neuromorphic/open-neuromorphic.github.io`` repository. This script runs the same
protocol on the CPU:

* ``snntorch``, ``spikingjelly``, ``norse``: their three PyTorch models as they wrote them.
  snnTorch: ``snn.Leaky(beta=0.95)`` with the ``Linear`` inside the Python step loop.
  SpikingJelly: its multi-step ``layer.Linear`` and ``neuron.LIFNode(tau=5, ATan)``, the net
  reset in every forward. Norse: ``SequentialState(Linear, LIFBoxCell(p))`` under
  ``torch.compile(mode="reduce-overhead")``. Their Norse model hands the whole ``[T, B, n]``
  tensor to a single-step cell, which treats T as one more batch dimension: it runs one Euler
  step, not 500, and the post's own input makes it emit no spike.
* ``clif_loop``: their snnTorch model with ``snn.Leaky(beta=0.95)`` swapped for
  ``CLIF(beta=0.95)``: what a user gets by changing one line.
* ``clif_multi``: the same network written for CLIF's multi-step mode: the ``Linear`` over the
  whole sequence (one matrix product), then one fused CLIF call over the 500 steps.
* ``sj_clif``: SpikingJelly's own CLIF (``ComplementaryLIFNode(tau=2)``) in their SpikingJelly
  model. Not in their benchmark: the same neuron as CLIF from another library.

The protocol is theirs (``utils.timeit`` and ``benchmark_framework``): build the model and the
input, and run one forward under ``torch.no_grad()``; time the forward (one warm-up call, then
calls until there are at least 3 and they took more than 2 s together); run one more forward;
time ``output.sum().backward(retain_graph=True)`` on that one graph the same way. The times
reported are the means. Their memory figure is ``torch.cuda.max_memory_allocated()``: every
tensor of the process at its peak (parameters, input, graphs). On a CPU this script reports the
process's peak resident set (Linux ``VmHWM``) over the same protocol minus its resident set
once the libraries are imported: one fresh process per model and size, as their Docker runs use
one process per library.

Usage::

    python benchmarks/bench_libraries.py --threads 1 --json benchmarks/results/open_neuromorphic_cpu.json
    python benchmarks/bench_libraries.py --quick              # n = 512 only: about a minute
    python benchmarks/bench_libraries.py --sizes 4096 8192 16384 --only clif_multi snntorch
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_neuron import cpu_model  # noqa: E402

BATCH = 16
STEPS = 500
DEFAULT_SIZES = (4096, 8192)  # theirs: 4096, 8192, 16384 (see --sizes)
REFERENCE = "clif_multi"
MIN_RUNS = 3
MIN_TIME_S = 2.0
SOURCE = {
    "post": "https://open-neuromorphic.org/blog/spiking-neural-network-framework-benchmarking/",
    "code": "open-neuromorphic/open-neuromorphic.github.io: content/blog/"
            "spiking-neural-network-framework-benchmarking/docker/run_benchmark.py, utils.py",
}
MEMORY_METHOD = (
    "peak resident set of the process (Linux VmHWM) over building the model and input, the timed forwards "
    "and the timed backwards, minus the resident set once the libraries are imported; one fresh process per "
    "model and size"
)


# --- the models -------------------------------------------------------------------------
class SnntorchModel(nn.Module):
    """Open Neuromorphic's snnTorch model: ``Linear`` and ``snn.Leaky(beta=0.95)`` in a step loop."""

    def __init__(self, n: int, beta: float = 0.95) -> None:
        super().__init__()
        import snntorch

        self.fc = nn.Linear(n, n)
        self.lif = snntorch.Leaky(beta=beta)
        self.mem = self.lif.init_leaky()

    def forward(self, x: Tensor) -> Tensor:
        mem, spikes = self.mem, []
        for step in x:  # iterating a tensor unbinds it: one view per step
            spk, mem = self.lif(self.fc(step), mem)
            spikes.append(spk)
        return torch.stack(spikes)


class ClifLoopModel(nn.Module):
    """Their snnTorch model with ``snn.Leaky`` swapped for :class:`~snntorch_clif.CLIF`."""

    def __init__(self, n: int, beta: float = 0.95) -> None:
        super().__init__()
        from snntorch_clif import CLIF

        self.fc = nn.Linear(n, n)
        self.lif = CLIF(beta=beta)

    def forward(self, x: Tensor) -> Tensor:
        comp, mem = self.lif.reset_mem()
        spikes = []
        for step in x:
            spk, comp, mem = self.lif(self.fc(step), comp, mem)
            spikes.append(spk)
        return torch.stack(spikes)


class ClifMultiModel(nn.Module):
    """The same network for CLIF's multi-step mode: one ``Linear`` call, one fused CLIF call."""

    def __init__(self, n: int, beta: float = 0.95) -> None:
        super().__init__()
        from snntorch_clif import CLIF

        self.fc = nn.Linear(n, n)
        self.lif = CLIF(beta=beta, step_mode="multi")

    def forward(self, x: Tensor) -> Tensor:
        comp, mem = self.lif.reset_mem()  # every sequence starts from zero states
        spk, _, _ = self.lif(self.fc(x), comp, mem)
        return spk


class SpikingJellyModel(nn.Module):
    """Open Neuromorphic's SpikingJelly model: multi-step ``layer.Linear`` and a neuron node.

    ``node="lif"`` is theirs (``LIFNode(tau=5, surrogate_function=ATan())``); ``node="clif"``
    puts SpikingJelly's ``ComplementaryLIFNode(tau=2)`` in its place.
    """

    def __init__(self, n: int, node: str = "lif") -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        if node == "lif":
            spiking = neuron.LIFNode(tau=5.0, surrogate_function=surrogate.ATan(), step_mode="m")
        elif node == "clif":
            spiking = neuron.ComplementaryLIFNode(tau=2.0, step_mode="m")
        else:
            raise ValueError(f"node must be 'lif' or 'clif', got {node!r}")
        self._reset_net = functional.reset_net
        self.model = nn.Sequential(layer.Linear(n, n), spiking)

    def forward(self, x: Tensor) -> Tensor:
        self._reset_net(self.model)
        return self.model(x)


class NorseModel(nn.Module):
    """Open Neuromorphic's Norse model: ``SequentialState(Linear, LIFBoxCell(p))``, compiled.

    ``LIFBoxCell`` is a single-step cell: called on ``[T, B, n]`` it runs one Euler step over
    ``T * B`` neurons-rows, as their benchmark does. ``compile=False`` runs it eagerly.
    """

    def __init__(self, n: int, compile: bool = True) -> None:
        super().__init__()
        with warnings.catch_warnings():  # norse scripts functions with the deprecated torch.jit
            warnings.simplefilter("ignore")
            from norse.torch import LIFBoxCell, LIFBoxParameters, SequentialState

        params = LIFBoxParameters(
            tau_mem_inv=torch.tensor([100.0]), v_leak=torch.tensor([0.0]), v_th=torch.tensor([1.0]),
            v_reset=torch.tensor([0.0]), alpha=torch.tensor([100.0]),
        )
        net = SequentialState(nn.Linear(n, n), LIFBoxCell(params))
        self.net = torch.compile(net, mode="reduce-overhead") if compile else net

    def forward(self, x: Tensor) -> Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return self.net(x)[0]


@dataclass(frozen=True)
class Entry:
    """One row: a label, who wrote the model, and its factory ``n -> nn.Module``."""

    label: str
    origin: str
    build: Callable[[int], nn.Module]
    package: str


MODELS: dict[str, Entry] = {
    "clif_multi": Entry("CLIF, multi-step (fused)", "this package", ClifMultiModel, "snntorch_clif"),
    "clif_loop": Entry("CLIF in their snnTorch model", "their snnTorch model, neuron swapped",
                       ClifLoopModel, "snntorch_clif"),
    "snntorch": Entry("snnTorch Leaky, their model", "Open Neuromorphic", SnntorchModel, "snntorch"),
    "spikingjelly": Entry("SpikingJelly LIFNode, their model", "Open Neuromorphic", SpikingJellyModel, "spikingjelly"),
    "norse": Entry("Norse LIFBoxCell, their model (1 step)", "Open Neuromorphic", NorseModel, "norse"),
    "sj_clif": Entry("SpikingJelly CLIF node in their model", "their SpikingJelly model, node swapped",
                     lambda n: SpikingJellyModel(n, node="clif"), "spikingjelly"),
}


def available(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The models whose library imports, and ``name -> reason`` for the others."""
    import importlib

    ok, skipped = [], {}
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(MODELS[name].package)
            ok.append(name)
        except ImportError as exc:
            skipped[name] = f"{MODELS[name].package} is not installed ({exc})"
    return ok, skipped


def make_input(n: int, batch: int = BATCH, steps: int = STEPS) -> Tensor:
    """Their input: ``randn(steps, batch, n)``, time-major, no gradient."""
    return torch.randn(steps, batch, n)


# --- their protocol ----------------------------------------------------------------------
def timeit(fn: Callable[[], object], min_runs: int = MIN_RUNS, min_time: float = MIN_TIME_S,
           warmup: int = 1, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each call of ``fn``: ``warmup`` untimed calls, then calls until there are at
    least ``min_runs`` and they took more than ``min_time`` seconds together (their ``timeit``)."""
    if min_runs < 1:
        raise ValueError(f"min_runs must be >= 1, got {min_runs}")
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while sum(times) <= min_time or len(times) < min_runs:
        start = clock()
        fn()
        times.append(clock() - start)
    return times


def run_protocol(model: nn.Module, x: Tensor, min_runs: int = MIN_RUNS, min_time: float = MIN_TIME_S,
                 clock: Callable[[], float] = time.perf_counter) -> dict:
    """Their ``benchmark_framework``: forward timed, one more forward, backward timed on it.

    Returns the per-call seconds of both passes and the output's spikes per neuron-step.
    """
    state: dict[str, Tensor] = {}

    def forward() -> None:
        state["output"] = model(x)

    def backward() -> None:
        state["output"].sum().backward(retain_graph=True)

    with torch.no_grad():  # their prepare_fn's warm-up call
        model(x)
    forward_s = timeit(forward, min_runs, min_time, clock=clock)
    forward()
    if state["output"].shape != x.shape:
        raise RuntimeError(f"output shape {tuple(state['output'].shape)} is not the input's {tuple(x.shape)}")
    spike_rate = float(state["output"].detach().float().mean())
    backward_s = timeit(backward, min_runs, min_time, clock=clock)
    return {"forward_s": forward_s, "backward_s": backward_s, "spikes_per_neuron_step": spike_rate}


def _proc_status_kib(key: str) -> Optional[int]:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def measure(name: str, n: int, batch: int = BATCH, steps: int = STEPS, min_runs: int = MIN_RUNS,
            min_time: float = MIN_TIME_S) -> dict:
    """One model at one size, in this process: times, spikes and the peak memory growth."""
    available([name])  # import the library first: its import is not the model's memory
    base = _proc_status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    except OSError:
        base = None
    torch.manual_seed(0)
    model = MODELS[name].build(n)
    x = make_input(n, batch, steps)
    out = run_protocol(model, x, min_runs, min_time)
    peak = _proc_status_kib("VmHWM")
    out["peak_mib"] = (peak - base) / 1024 if base is not None and peak is not None else None
    return out


def measure_in_subprocess(name: str, n: int, threads: Optional[int], timeout: float) -> dict:
    """:func:`measure` in a fresh interpreter; ``{"error": ...}`` when it fails or times out."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, str(n)]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(raw: dict[str, dict], reference: str = REFERENCE) -> dict[str, dict]:
    """Per model: mean forward and backward seconds (theirs), runs, the ratio of the total to
    ``reference``'s, peak MiB and spikes per neuron-step; errors are kept as they are."""
    def total(r: dict) -> float:
        return sum(r["forward_s"]) / len(r["forward_s"]) + sum(r["backward_s"]) / len(r["backward_s"])

    ref = raw.get(reference)
    ref_total = total(ref) if ref and "error" not in ref else None
    out = {}
    for name, r in raw.items():
        entry = {"label": MODELS[name].label if name in MODELS else name,
                 "origin": MODELS[name].origin if name in MODELS else ""}
        if "error" in r:
            out[name] = {**entry, "error": r["error"]}
            continue
        fwd = sum(r["forward_s"]) / len(r["forward_s"])
        bwd = sum(r["backward_s"]) / len(r["backward_s"])
        out[name] = {
            **entry,
            "forward_s": fwd,
            "backward_s": bwd,
            "total_s": fwd + bwd,
            "forward_runs": len(r["forward_s"]),
            "backward_runs": len(r["backward_s"]),
            "forward_times_s": r["forward_s"],
            "backward_times_s": r["backward_s"],
            f"total_over_{reference}": (fwd + bwd) / ref_total if ref_total else None,
            "peak_mib": r.get("peak_mib"),
            "spikes_per_neuron_step": r.get("spikes_per_neuron_step"),
        }
    return out


def machine_description(threads: Optional[int] = None) -> dict:
    """CPU model and instruction set, logical cores, torch threads, load, and the versions."""
    from importlib.metadata import PackageNotFoundError, version

    flags = ""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("snntorch-clif", "snntorch", "spikingjelly", "norse"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu_model(),
        "isa": "AVX-512" if " avx512f" in flags else ("AVX2" if " avx2" in flags else None),
        "logical_cores": os.cpu_count(),
        "threads": threads or torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def run(sizes: list[int], names: list[str], threads: Optional[int], max_seconds: float, timeout: float,
        log: Callable[[str], None] = print, save: Optional[Callable[[dict], None]] = None) -> dict:
    """The whole benchmark, one subprocess per model and size; the result as written to JSON.

    A model whose forward+backward took more than ``max_seconds`` at one size is not run at
    the larger ones. ``save`` is called with the result so far after each size (a long run
    that is stopped keeps the sizes it finished).
    """
    names, skipped = available(names)
    result: dict = {
        "benchmark": "open_neuromorphic",
        "source": SOURCE,
        "date": datetime.date.today().isoformat(),
        "shape": {"batch": BATCH, "steps": STEPS, "model": "Linear(n, n) -> spiking layer", "loss": "output.sum()"},
        "protocol": f"their timeit: 1 warm-up call, then >= {MIN_RUNS} calls and > {MIN_TIME_S:g} s; means",
        "memory_method": MEMORY_METHOD,
        "machine": machine_description(threads),
        "reference": REFERENCE,
        "skipped": skipped,
        "not_run_at_larger_n": {},
        "rows": [],
    }
    too_slow: dict[str, str] = result["not_run_at_larger_n"]
    for n in sorted(sizes):
        raw = {}
        for name in names:
            if name in too_slow:
                continue
            log(f"n={n} {name} ...")
            raw[name] = measure_in_subprocess(name, n, threads, timeout)
        impl = summarize(raw)
        for name, r in impl.items():
            if r.get("total_s", 0) > max_seconds:
                too_slow[name] = f"{r['total_s']:.0f} s at n = {n} (over --max-seconds {max_seconds:g})"
        result["rows"].append({"n": n, "impl": impl})
        log("\n".join(table_lines({**result, "rows": result["rows"][-1:]})))
        if save:
            save(result)
    return result


# --- reporting ----------------------------------------------------------------------------
def table_lines(result: dict) -> list[str]:
    """A Markdown table of a result: one line per (n, model)."""
    ref = result.get("reference", REFERENCE)
    lines = [
        f"| n | model | forward s | backward s | total s | x {ref} | peak MiB | spikes / neuron-step |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        for name, r in row["impl"].items():
            if "error" in r:
                lines.append(f"| {row['n']} | {r.get('label', name)} | {r['error']} | | | | | |")
                continue
            ratio, mem = r.get(f"total_over_{ref}"), r.get("peak_mib")
            lines.append(
                f"| {row['n']} | {r.get('label', name)} | {r['forward_s']:.2f} | {r['backward_s']:.2f} | "
                f"{r['total_s']:.2f} | {'' if ratio is None else f'{ratio:.2f}'} | "
                f"{'' if mem is None else f'{mem:.0f}'} | {r['spikes_per_neuron_step']:.3f} |"
            )
    return lines


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="n, neurons per step")
    parser.add_argument("--only", nargs="+", choices=list(MODELS), default=list(MODELS), help="models to run")
    parser.add_argument("--quick", action="store_true", help="n = 512 only (about a minute)")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="a model slower than this (forward+backward) is not run at larger n")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one model at one size may take")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        name, n = args.child
        print(json.dumps(measure(name, int(n))))
        return
    if any(n < 1 for n in args.sizes):
        parser.error(f"--sizes must be positive, got {args.sizes}")
    if args.max_seconds <= 0:
        parser.error(f"--max-seconds must be positive, got {args.max_seconds}")
    sizes = [512] if args.quick else args.sizes

    def save(result: dict) -> None:
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")

    result = run(sizes, list(args.only), args.threads, args.max_seconds, args.timeout, save=save)
    m = result["machine"]
    print(f"\nB = {BATCH}, T = {STEPS}; {m['cpu']}, {m['threads']} thread(s), {result['date']}")
    print("\n".join(table_lines(result)))
    for name, why in {**result["skipped"], **result["not_run_at_larger_n"]}.items():
        print(f"{name}: {why}")
    if args.json:
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
