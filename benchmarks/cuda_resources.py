"""What the CUDA kernels cost in registers, local memory and instructions: no GPU needed.

Compiles ``snntorch_clif/csrc/cuda/clif_cuda.cu`` with the package's nvcc flags for one
architecture (default ``sm_90``, the H100) and ``-Xptxas -v``, and prints, for every kernel
instance (forward / backward x dtype x neurons per thread x reset x surrogate x offset type):

- neurons per thread ("lanes": 2 for the forward's paired float16 / bfloat16 accesses);
- registers per thread, and the blocks of 256 threads an SM can hold with that many
  (registers alone; 2048 threads per SM from sm_80 on, so at most 8);
- the stack frame and spill bytes (local memory: per-thread arrays the compiler could not
  keep in registers, or registers it ran out of);
- with a ``cuobjdump`` at hand (the CUDA toolkit's, or the one Triton ships), the SASS
  instruction count and its local-memory loads/stores (``LDL``/``STL``).

These are facts of the compiled code, exact and repeatable on any machine with nvcc; timings
need a GPU (``bench_gpu.py``). Writes ``benchmarks/results/cuda_resources_<arch>.json``
(``--json ''`` writes nothing)::

    python benchmarks/cuda_resources.py              # sm_90
    python benchmarks/cuda_resources.py --arch sm_80
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections import Counter
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "snntorch_clif" / "csrc" / "cuda" / "clif_cuda.cu"
RESULTS = ROOT / "benchmarks" / "results"
THREADS_PER_BLOCK = 256  # clif_cuda.cu's kThreads
REGISTERS_PER_SM = 65536
MAX_THREADS_PER_SM = 2048  # sm_80, sm_90

DTYPES = {"float": "float32", "c10::Half": "float16", "c10::BFloat16": "bfloat16"}
RESETS = {"0": "subtract", "1": "zero", "2": "none"}
SURROGATES = {
    "0": "rectangle", "1": "atan", "2": "fast_sigmoid", "3": "sigmoid", "4": "triangular",
    "5": "straight_through", "6": "disabled",
}


def _build_module():  # noqa: ANN202 - loaded by path, as setup.py does
    import importlib.util

    spec = importlib.util.spec_from_file_location("_snntorch_clif_build", ROOT / "snntorch_clif" / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def find_nvcc() -> Optional[str]:
    """The nvcc the package build would use, or None."""
    home = _build_module().find_cuda_home()
    nvcc = os.path.join(home, "bin", "nvcc") if home else None
    return nvcc if nvcc and os.path.exists(nvcc) else shutil.which("nvcc")


def find_cuobjdump(nvcc: str) -> Optional[str]:
    """The toolkit's cuobjdump, else Triton's bundled copy, else None."""
    candidates = [os.path.join(os.path.dirname(nvcc), "cuobjdump"), shutil.which("cuobjdump")]
    try:
        import triton

        candidates.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump"))
    except ImportError:
        pass
    return next((c for c in candidates if c and os.path.exists(c)), None)


def nvcc_version() -> str:
    """nvcc's release line, e.g. ``Cuda compilation tools, release 13.0, V13.0.88``."""
    nvcc = find_nvcc()
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout if nvcc else ""
    return next((line for line in out.splitlines() if "release" in line), "")


def compile_kernels(nvcc: str, arch: str, output: Path) -> str:
    """Compile the CUDA source to an object for ``arch``; return ptxas's report."""
    from torch.utils.cpp_extension import include_paths

    build = _build_module()
    includes = [f"-I{p}" for p in include_paths()] + [f"-I{sysconfig.get_paths()['include']}"]
    command = [
        nvcc, *build.NVCC_FLAGS, "-std=c++20", f"-arch={arch}", "-Xptxas", "-v", "-Xcompiler", "-fPIC",
        "-DTORCH_EXTENSION_NAME=_C", *includes, "-c", str(SOURCE), "-o", str(output),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nvcc failed:\n{result.stderr[-4000:]}")
    return result.stdout + result.stderr


def demangle(names: list[str]) -> dict[str, str]:
    """Mangled -> demangled, with c++filt where there is one (else the names unchanged)."""
    filt = shutil.which("c++filt")
    if not filt or not names:
        return {n: n for n in names}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


# The offset type is absent from kernels older than the 32-bit backward (64-bit offsets).
_KERNEL_RE = re.compile(r"clif_(forward|backward)_kernel<([^,]+), (\d+)(?:, (\d+))?(?:, (int|long))?(?:, (\d+))?>")


def describe(demangled: str) -> Optional[dict]:
    """``clif_backward_kernel<float, 0, 1, int>`` -> kernel, dtype, reset, surrogate, offsets, neurons per thread."""
    match = _KERNEL_RE.search(demangled)
    if not match:
        return None
    kernel, dtype, reset, kind, index, lanes = match.groups()
    return {
        "kernel": kernel, "dtype": DTYPES.get(dtype.strip(), dtype.strip()), "reset": RESETS[reset],
        "surrogate": SURROGATES[kind] if kind is not None else "-", "offsets": "32-bit" if index == "int" else "64-bit",
        "lanes": int(lanes) if lanes else 1,
    }


def parse_ptxas(report: str) -> dict[str, dict]:
    """Per mangled kernel name: registers, stack frame, spill stores and loads (bytes)."""
    kernels: dict[str, dict] = {}
    current = None
    for line in report.splitlines():
        if match := re.search(r"Function properties for (\S+)", line):
            current = kernels.setdefault(match[1], {})
        elif current is not None and (match := re.search(
                r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)):
            current.update(stack=int(match[1]), spill_stores=int(match[2]), spill_loads=int(match[3]))
        elif current is not None and (match := re.search(r"Used (\d+) registers", line)):
            current["registers"] = int(match[1])
            current = None
    return kernels


def parse_sass(text: str) -> dict[str, dict]:
    """Per mangled kernel name: SASS instructions in all, and its LDL / STL count."""
    counts: dict[str, dict] = {}
    for chunk in re.split(r"\n\s*Function : ", text)[1:]:
        name = chunk.split("\n", 1)[0].strip()
        ops = Counter()
        for instruction in re.findall(r"/\*[0-9a-f]{4}\*/\s+([^;]*);", chunk):
            words = instruction.split()
            op = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
            ops[op.split(".")[0]] += 1
        counts[name] = {"instructions": sum(ops.values()), "ldl": ops["LDL"], "stl": ops["STL"]}
    return counts


def blocks_per_sm(registers: int) -> int:
    """Blocks of 256 threads one SM holds with ``registers`` per thread (registers only)."""
    per_warp = -(-registers * 32 // 256) * 256  # allocated per warp in units of 256
    by_registers = REGISTERS_PER_SM // (per_warp * (THREADS_PER_BLOCK // 32))
    return min(by_registers, MAX_THREADS_PER_SM // THREADS_PER_BLOCK)


def measure(arch: str = "sm_90") -> list[dict]:
    """One row per kernel instance of the CUDA source compiled for ``arch``."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise RuntimeError("cuda_resources.py needs nvcc (CUDA_HOME/bin or PATH)")
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "clif_cuda.o"
        ptxas = parse_ptxas(compile_kernels(nvcc, arch, obj))
        cuobjdump = find_cuobjdump(nvcc)
        sass = parse_sass(subprocess.run([cuobjdump, "-sass", str(obj)], capture_output=True, text=True).stdout) \
            if cuobjdump else {}
    names = demangle(sorted(ptxas))
    rows = []
    for mangled, info in ptxas.items():
        what = describe(names[mangled])
        if what is None:
            continue
        row = {**what, **info, "blocks_per_sm": blocks_per_sm(info["registers"])}
        if mangled in sass:
            row.update(sass[mangled])
        rows.append(row)
    order = ("kernel", "dtype", "lanes", "reset", "surrogate", "offsets")
    return sorted(rows, key=lambda r: tuple(r[k] for k in order))


SUMMARY_HEADER = ("kernel", "dtype", "neurons/thread", "offsets", "instances", "registers", "blocks/SM",
                  "stack B", "spill B", "SASS instructions", "LDL+STL")


def summary_rows(rows: list[dict]) -> list[list[str]]:
    """Kernel instances grouped by kernel, dtype, neurons per thread and offsets: each column
    the range over resets and surrogates (``SUMMARY_HEADER``; shared with the docs site)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["kernel"], row["dtype"], row.get("lanes", 1), row["offsets"]), []).append(row)

    def span(values: list[int]) -> str:
        if not values:
            return "-"
        return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"

    table = []
    for (kernel, dtype, lanes, offsets), group in groups.items():
        table.append([
            kernel, dtype, str(lanes), offsets, str(len(group)),
            span([r["registers"] for r in group]), span([r["blocks_per_sm"] for r in group]),
            span([r["stack"] for r in group]), span([r["spill_stores"] + r["spill_loads"] for r in group]),
            span([r["instructions"] for r in group if "instructions" in r]),
            span([r["ldl"] + r["stl"] for r in group if "ldl" in r]),
        ])
    return table


def print_table(rows: list[dict], arch: str) -> None:
    print(f"CUDA kernels compiled for {arch}: registers, local memory, SASS ({len(rows)} instances)")
    widths = [max(len(h), 8) for h in SUMMARY_HEADER]
    print(" | ".join(h.rjust(w) for h, w in zip(SUMMARY_HEADER, widths)))
    for cells in summary_rows(rows):
        print(" | ".join(c.rjust(w) for c, w in zip(cells, widths)))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="sm_90", help="nvcc -arch value (default sm_90)")
    parser.add_argument("--json", default=None, help="output file (default benchmarks/results/cuda_resources_<arch>.json; '' none)")
    args = parser.parse_args(argv)
    try:
        rows = measure(args.arch)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 2
    print_table(rows, args.arch)
    path = RESULTS / f"cuda_resources_{args.arch}.json" if args.json is None else (Path(args.json) if args.json else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        result = {"arch": args.arch, "nvcc": nvcc_version(), "threads_per_block": THREADS_PER_BLOCK, "kernels": rows}
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
