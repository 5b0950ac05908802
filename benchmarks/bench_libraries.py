"""The open-neuromorphic SNN-library benchmark shape, run on this machine's CPU.

Open Neuromorphic's "SNN library benchmarks" (open-neuromorphic.github.io, 2023-2024)
times one fully-connected layer followed by one spiking layer, ``Linear(n, n) -> neuron``,
on a random time-major input ``[T=500, B=16, n]`` (no gradient on the input), forward and
then backward of ``output.sum()``, and reports time and peak memory per library. This
script runs that shape with, side by side:

* ``clif_multi``: :class:`snntorch_clif.CLIF` with ``step_mode="multi"`` (the fused
  sequence kernel: one call for all 500 steps); the reference of the ratios;
* ``clif_step``: the same neuron stepped from a Python loop (``step_mode="single"``);
* ``leaky``: ``snntorch.Leaky`` stepped from a Python loop (a simpler neuron: no
  complementary potential);
* ``leaky_fc_in_loop``: open-neuromorphic's own snnTorch model: ``Linear`` *inside* the
  step loop (500 small matrix products, and 500 weight-gradient accumulations);
* ``sj_clif``: SpikingJelly's ``ComplementaryLIFNode`` (the CLIF of the paper's authors),
  multi-step, torch backend (the CuPy/Triton ones are GPU-only), after SpikingJelly's
  multi-step ``layer.Linear``;
* ``norse_lif``: Norse's ``LIF`` (a current-based LIF: two states, no complementary
  potential) in ``SequentialState(Linear, LIF)``, as open-neuromorphic builds it;
* ``linear_only``: the ``Linear`` layer alone (output = its current): the part of every
  row's time that is not the neuron.

Except in ``leaky_fc_in_loop``, the ``Linear`` runs once over the whole ``[T*B, n]``
input (one matrix product), so the rows differ in the neuron only. Neuron parameters:
decay 0.5 for CLIF, snn.Leaky and SpikingJelly (tau = 2), Norse's defaults; the cost of
the dense computation does not depend on them.

Time: each repetition runs every implementation once, in a shuffled order (the machine
drifts), and the ratio column is the median over repetitions of ``time / clif_multi time``
in the same repetition. Peak memory: each implementation runs one forward+backward in a
fresh subprocess, which reports its peak resident set during that call (Linux ``VmHWM``,
reset just before it) minus its resident set just before (model and input already built):
the memory the call needs on top of its inputs and parameters, as the operating system saw it.

Usage::

    python benchmarks/bench_libraries.py                    # n = 512, 2048, 4096 (several minutes)
    python benchmarks/bench_libraries.py --quick            # n = 512 only, 3 reps
    python benchmarks/bench_libraries.py --sizes 1024 --reps 5 --json out.json
    python benchmarks/bench_libraries.py --only clif_multi leaky --no-memory
    python benchmarks/bench_libraries.py --max-seconds 10   # drop slow rows sooner
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor, nn

BATCH = 16
STEPS = 500
REFERENCE = "clif_multi"
DEFAULT_SIZES = (512, 2048, 4096)
# repetitions per size in the default run: n = 4096 takes seconds per repetition here
DEFAULT_REPS = {512: 5, 2048: 3, 4096: 2}
MEMORY_METHOD = (
    "peak resident set during one forward+backward minus the resident set just before it "
    "(Linux VmHWM, reset through /proc/self/clear_refs), in a fresh subprocess per "
    "implementation and size, model and input built before"
)


# --- the models -----------------------------------------------------------------------
class LinearOnly(nn.Module):
    """``Linear(n, n)`` alone: the output is the current."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n, n)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


class ClifMulti(nn.Module):
    """``Linear`` over the sequence, then :class:`~snntorch_clif.CLIF` in multi-step mode."""

    def __init__(self, n: int) -> None:
        super().__init__()
        from snntorch_clif import CLIF

        self.fc = nn.Linear(n, n)
        self.lif = CLIF(beta=0.5, step_mode="multi")

    def forward(self, x: Tensor) -> Tensor:
        comp, mem = self.lif.reset_mem()  # empty states: every sequence starts from zeros
        spk, _, _ = self.lif(self.fc(x), comp, mem)
        return spk


class ClifStepLoop(nn.Module):
    """``Linear`` over the sequence, then :class:`~snntorch_clif.CLIF` stepped in Python."""

    def __init__(self, n: int) -> None:
        super().__init__()
        from snntorch_clif import CLIF

        self.fc = nn.Linear(n, n)
        self.lif = CLIF(beta=0.5)

    def forward(self, x: Tensor) -> Tensor:
        comp, mem = self.lif.reset_mem()
        spikes = []
        for cur in self.fc(x).unbind(0):  # unbind, not cur[t]: no full-size zero gradient per step
            spk, comp, mem = self.lif(cur, comp, mem)
            spikes.append(spk)
        return torch.stack(spikes)


class LeakyStepLoop(nn.Module):
    """``Linear`` over the sequence, then ``snntorch.Leaky`` stepped in Python."""

    def __init__(self, n: int) -> None:
        super().__init__()
        import snntorch as snn

        self.fc = nn.Linear(n, n)
        self.lif = snn.Leaky(beta=0.5)

    def forward(self, x: Tensor) -> Tensor:
        mem = self.lif.reset_mem()
        spikes = []
        for cur in self.fc(x).unbind(0):
            spk, mem = self.lif(cur, mem)
            spikes.append(spk)
        return torch.stack(spikes)


class LeakyFcInLoop(LeakyStepLoop):
    """Open-neuromorphic's snnTorch model: ``Linear`` and ``snntorch.Leaky`` both in the step loop."""

    def forward(self, x: Tensor) -> Tensor:
        mem = self.lif.reset_mem()
        spikes = []
        for xt in x.unbind(0):
            spk, mem = self.lif(self.fc(xt), mem)
            spikes.append(spk)
        return torch.stack(spikes)


class SpikingJellyClif(nn.Module):
    """SpikingJelly's multi-step ``layer.Linear`` and ``ComplementaryLIFNode`` (torch backend)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        from spikingjelly.activation_based import functional, layer, neuron

        self._reset_net = functional.reset_net
        self.fc = layer.Linear(n, n, step_mode="m")
        self.lif = neuron.ComplementaryLIFNode(tau=2.0, step_mode="m")

    def forward(self, x: Tensor) -> Tensor:
        self._reset_net(self)
        return self.lif(self.fc(x))


class NorseLif(nn.Module):
    """Norse's ``SequentialState(Linear, LIF)`` with Norse's default LIF parameters."""

    def __init__(self, n: int) -> None:
        super().__init__()
        import warnings

        with warnings.catch_warnings():  # norse 1.1 scripts functions with torch.jit (deprecated)
            warnings.simplefilter("ignore", FutureWarning)
            from norse.torch import LIF, SequentialState

        self.net = SequentialState(nn.Linear(n, n), LIF())

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.net(x)  # no state passed in: starts from Norse's initial state
        return out


@dataclass(frozen=True)
class Implementation:
    """One row of the benchmark: a label for tables and a model factory ``n -> nn.Module``."""

    label: str
    build: Callable[[int], nn.Module]
    package: Optional[str] = None  # the module that must import for this row to run


IMPLEMENTATIONS: dict[str, Implementation] = {
    "clif_multi": Implementation("CLIF, multi-step (fused)", ClifMulti, "snntorch_clif"),
    "clif_step": Implementation("CLIF, single-step loop", ClifStepLoop, "snntorch_clif"),
    "leaky": Implementation("snn.Leaky, step loop", LeakyStepLoop, "snntorch"),
    "leaky_fc_in_loop": Implementation("snn.Leaky, Linear in the loop (ON's model)", LeakyFcInLoop, "snntorch"),
    "sj_clif": Implementation("SpikingJelly ComplementaryLIFNode", SpikingJellyClif, "spikingjelly"),
    "norse_lif": Implementation("Norse LIF", NorseLif, "norse"),
    "linear_only": Implementation("Linear alone (no neuron)", LinearOnly),
}


def available(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The implementations whose package imports, and ``name -> reason`` for the others."""
    import importlib
    import warnings

    ok, skipped = [], {}
    for name in names:
        package = IMPLEMENTATIONS[name].package
        try:
            if package:
                with warnings.catch_warnings():  # norse 1.1 uses the deprecated torch.jit.script
                    warnings.simplefilter("ignore", FutureWarning)
                    importlib.import_module(package)
            ok.append(name)
        except ImportError as exc:
            skipped[name] = f"{package} not importable ({exc})"
    return ok, skipped


def make_input(n: int, batch: int = BATCH, steps: int = STEPS, seed: int = 0) -> Tensor:
    """The benchmark's input: standard normal ``[steps, batch, n]``, no gradient."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(steps, batch, n, generator=gen)


def forward_backward(model: nn.Module, x: Tensor) -> None:
    """One repetition: forward, ``output.sum().backward()``; parameter gradients start at None."""
    for p in model.parameters():
        p.grad = None
    model(x).sum().backward()


# --- measuring --------------------------------------------------------------------------
def interleaved_times(fns: dict[str, Callable[[], None]], reps: int,
                      clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds of each function over ``reps`` rounds; each round runs all, in a shuffled order."""
    from bench_neuron import repetition_order  # (same folder) imports snntorch_clif: only when timing

    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        for name in repetition_order(names, r):
            t0 = clock()
            fns[name]()
            times[name].append(clock() - t0)
    return times


def _proc_status_kib(key: str) -> Optional[int]:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_memory_child(name: str, n: int, threads: Optional[int]) -> dict:
    """Run in a subprocess: one forward+backward of ``name`` at size ``n``; peak RSS growth.

    Linux resets the peak resident set (``VmHWM``) on ``echo 5 > /proc/self/clear_refs``, so
    the peak is that of the call alone (imports and set-up peaks do not hide it); elsewhere
    it falls back to ``ru_maxrss`` (whose growth can then read low).
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = IMPLEMENTATIONS[name].build(n)
    x = make_input(n)
    rss_before = _proc_status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        method = "VmHWM after clear_refs"
    except OSError:
        method = "ru_maxrss"
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    forward_backward(model, x)
    peak = _proc_status_kib("VmHWM") if method.startswith("VmHWM") else None
    if peak is None:
        method = "ru_maxrss"
        rss_before, peak = peak_before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss_before_mib": rss_before / 1024, "peak_mib": peak / 1024,
            "peak_growth_mib": (peak - rss_before) / 1024, "method": method}


def peak_memory(name: str, n: int, threads: Optional[int]) -> dict:
    """:func:`peak_memory_child` in a fresh interpreter (so no earlier run set the peak)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", name, str(n)]
    if threads:
        cmd += ["--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(times: dict[str, list[float]], reference: str = REFERENCE,
              single: Optional[dict[str, float]] = None) -> dict[str, dict]:
    """Per implementation: median / min / max ms, every time, and the median ratio to ``reference``.

    ``times`` holds the interleaved repetitions (the same count for every name);
    ``single`` the implementations timed once only (their ratio is to the reference's median).
    """
    if reference not in times:
        raise ValueError(f"reference {reference!r} is not among the timed implementations {list(times)}")
    ref = times[reference]
    out = {}
    for name, ts in list(times.items()) + [(k, [v]) for k, v in (single or {}).items()]:
        repeated = name not in (single or {})
        if repeated and len(ts) != len(ref):
            raise ValueError(f"{name} has {len(ts)} times, {reference} has {len(ref)}: not interleaved")
        ratios = [t / r for t, r in zip(ts, ref)] if repeated else [ts[0] / statistics.median(ref)]
        out[name] = {
            "label": IMPLEMENTATIONS[name].label if name in IMPLEMENTATIONS else name,
            "runs": len(ts),
            "median_ms": statistics.median(ts) * 1e3,
            "min_ms": min(ts) * 1e3,
            "max_ms": max(ts) * 1e3,
            "times_ms": [t * 1e3 for t in ts],
            f"median_ratio_to_{reference}": statistics.median(ratios),
        }
    return out


def machine_description() -> dict:
    """CPU model (``/proc/cpuinfo``), logical cores, threads, and the software's versions."""
    cpu, flags = "", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not cpu:
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value.split()
    except OSError:  # not Linux
        pass
    cpu = cpu or platform.processor() or platform.machine()
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in ("snntorch_clif", "snntorch", "spikingjelly", "norse"):
        try:
            from importlib.metadata import version

            versions[package] = version(package.replace("_", "-"))
        except Exception:  # not installed: the row is skipped and says why
            versions[package] = None
    return {
        "cpu": cpu,
        "isa": "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else None),
        "logical_cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def run(sizes: list[int], names: list[str], reps: Optional[int], memory: bool,
        threads: Optional[int], max_seconds: float = 30.0, log: Callable[[str], None] = print) -> dict:
    """The whole benchmark; the result as written to JSON.

    An implementation whose first (warm-up) run at some ``n`` takes longer than
    ``max_seconds`` is reported from that one run and not run at larger ``n``.
    """
    names, skipped = available(names)
    if REFERENCE not in names:
        raise SystemExit(f"{REFERENCE} is the reference of the ratios and must run")
    result: dict = {
        "benchmark": "libraries",
        "shape": {"batch": BATCH, "steps": STEPS, "model": "Linear(n, n) -> neuron", "loss": "output.sum()"},
        "machine": machine_description(),
        "reference": REFERENCE,
        "memory_method": MEMORY_METHOD if memory else None,
        "max_seconds": max_seconds,
        "skipped": skipped,
        "rows": [],
    }
    too_slow: dict[str, str] = {}
    for n in sorted(sizes):
        n_reps = reps or DEFAULT_REPS.get(n, 3)
        active = [name for name in names if name not in too_slow]
        torch.manual_seed(0)
        models = {name: IMPLEMENTATIONS[name].build(n) for name in active}
        x = make_input(n)
        fns = {name: (lambda m=model, inp=x: forward_backward(m, inp)) for name, model in models.items()}
        log(f"n={n}: one warm-up run each, then {n_reps} interleaved repetitions")
        single: dict[str, float] = {}
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t0
            if seconds > max_seconds and name != REFERENCE:
                single[name] = seconds
                too_slow[name] = f"one run took {seconds:.0f} s at n={n} (over --max-seconds {max_seconds:g})"
                log(f"  {name}: {seconds:.1f} s, over --max-seconds: this run is its result, none at larger n")
        impl = summarize(interleaved_times({k: f for k, f in fns.items() if k not in single}, n_reps),
                         single=single)
        del models, fns, x
        if memory:
            for name in active:
                impl[name]["memory"] = peak_memory(name, n, threads)
        result["rows"].append({"n": n, "reps": n_reps, "impl": impl})
        log("\n".join(table_lines({**result, "rows": result["rows"][-1:]})))
    result["not_run_at_larger_n"] = too_slow
    return result


# --- reporting --------------------------------------------------------------------------
def table_lines(result: dict) -> list[str]:
    """A Markdown table of a result: one line per (n, implementation)."""
    ref = result.get("reference", REFERENCE)
    lines = [
        f"| n | implementation | runs | ms (median) | min-max ms | x {ref} | peak MiB |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        for name, r in row["impl"].items():
            ratio = r.get(f"median_ratio_to_{ref}")
            mem = r.get("memory", {}).get("peak_growth_mib")
            lines.append(
                f"| {row['n']} | {r.get('label', name)} | {r.get('runs', '')} | {r['median_ms']:.0f} | "
                f"{r['min_ms']:.0f}-{r['max_ms']:.0f} | "
                f"{'' if ratio is None else f'{ratio:.2f}'} | {'' if mem is None else f'{mem:.0f}'} |"
            )
    return lines


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="n (neurons)")
    parser.add_argument("--reps", type=int, default=None,
                        help=f"repetitions per size (default: {DEFAULT_REPS}, 3 for other sizes)")
    parser.add_argument("--only", nargs="+", choices=list(IMPLEMENTATIONS), default=list(IMPLEMENTATIONS),
                        help=f"implementations to run ({REFERENCE} always runs)")
    parser.add_argument("--quick", action="store_true", help="n = 512 only, 3 repetitions")
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="an implementation slower than this per run is run once, and not at larger n")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--memory-child", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        name, n = args.memory_child
        print(json.dumps(peak_memory_child(name, int(n), args.threads)))
        return
    if any(n < 1 for n in args.sizes):
        parser.error(f"--sizes must be positive, got {args.sizes}")
    if args.max_seconds <= 0:
        parser.error(f"--max-seconds must be positive, got {args.max_seconds}")
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes, reps = ([512], 3) if args.quick else (args.sizes, args.reps)
    names = [REFERENCE] + [name for name in args.only if name != REFERENCE]
    result = run(sizes, names, reps, memory=not args.no_memory, threads=args.threads,
                 max_seconds=args.max_seconds)
    print(f"\nB={BATCH}, T={STEPS}; {result['machine']['cpu']}, {result['machine']['threads']} threads")
    print("\n".join(table_lines(result)))
    for name, why in {**result["skipped"], **result["not_run_at_larger_n"]}.items():
        print(f"{name}: {why}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
