"""The compiled CUDA kernels keep their per-thread state in registers (benchmarks/cuda_resources.py).

Needs nvcc, not a GPU: the source is compiled for sm_90 and ptxas's report is read. A kernel
that put its chunk arrays or carries in local memory (the backward did, 144 bytes per thread,
until the loops were unrolled over the chunk) fails here, as does one whose registers would
leave fewer than 3 blocks of 256 threads per SM.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    cuda_resources = importlib.import_module("cuda_resources")
finally:
    sys.path.remove(str(ROOT / "benchmarks"))

PTXAS = """\
ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90'
ptxas info    : Function properties for _Z3fooPf
    144 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 0 barriers, 144 bytes cumulative stack size
ptxas info    : Function properties for _Z3barv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 74 registers, used 0 barriers
"""


def test_parse_ptxas_reads_registers_stack_and_spills() -> None:
    got = cuda_resources.parse_ptxas(PTXAS)
    assert got == {
        "_Z3fooPf": {"stack": 144, "spill_stores": 8, "spill_loads": 12, "registers": 40},
        "_Z3barv": {"stack": 0, "spill_stores": 0, "spill_loads": 0, "registers": 74},
    }


def test_parse_sass_counts_instructions_and_local_memory() -> None:
    sass = """
\t\tFunction : _Z3fooPf
        /*0000*/                   LDC R1, c[0x0][0x28] ;                 /* 0x00000a00ff017b82 */
        /*0010*/                   STL [R1], R2 ;                         /* 0x0000000201007387 */
        /*0020*/               @P0 LDL.LU R3, [R1] ;                      /* 0x0000000001037983 */
        /*0030*/                   EXIT ;                                 /* 0x000000000000794d */
"""
    assert cuda_resources.parse_sass(sass) == {"_Z3fooPf": {"instructions": 4, "ldl": 1, "stl": 1}}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("void snntorch_clif::(anonymous namespace)::clif_backward_kernel<float, 0, 1, int>(...)",
         ("backward", "float32", "subtract", "atan", "32-bit")),
        ("void snntorch_clif::(anonymous namespace)::clif_backward_kernel<c10::Half, 2, 6, long>(...)",
         ("backward", "float16", "none", "disabled", "64-bit")),
        ("void snntorch_clif::(anonymous namespace)::clif_backward_kernel<c10::BFloat16, 1, 3>(...)",
         ("backward", "bfloat16", "zero", "sigmoid", "64-bit")),  # before the offset type was a parameter
        ("void snntorch_clif::(anonymous namespace)::clif_forward_kernel<float, 1, int>(...)",
         ("forward", "float32", "zero", "-", "32-bit", 1)),  # before the neurons per thread were
        ("void snntorch_clif::(anonymous namespace)::clif_forward_kernel<c10::BFloat16, 0, long, 2>(...)",
         ("forward", "bfloat16", "subtract", "-", "64-bit", 2)),
    ],
)
def test_describe_names_each_kernel_instance(name: str, expected: tuple) -> None:
    row = cuda_resources.describe(name)
    got = (row["kernel"], row["dtype"], row["reset"], row["surrogate"], row["offsets"], row["lanes"])
    assert got == (expected if len(expected) == 6 else (*expected, 1))


@pytest.mark.parametrize(("registers", "blocks"), [(32, 8), (40, 6), (64, 4), (72, 3), (80, 3), (81, 2), (128, 2)])
def test_blocks_per_sm_from_registers(registers: int, blocks: int) -> None:
    assert cuda_resources.blocks_per_sm(registers) == blocks


@pytest.mark.slow
def test_no_cuda_kernel_uses_local_memory() -> None:
    if cuda_resources.find_nvcc() is None:
        pytest.skip("needs nvcc")
    rows = cuda_resources.measure("sm_90")
    # 3 dtypes x 2 offset types x (3 forward + 3 x 7 backward), + the paired forward of the
    # 2 half types x 2 offset types x 3 resets
    assert len(rows) == 3 * 2 * (3 + 21) + 2 * 2 * 3
    assert {(r["dtype"], r["lanes"]) for r in rows if r["kernel"] == "forward"} == {
        ("float32", 1), ("float16", 1), ("bfloat16", 1), ("float16", 2), ("bfloat16", 2)}
    local = [r for r in rows if r["stack"] or r["spill_stores"] or r["spill_loads"] or r.get("ldl") or r.get("stl")]
    assert not local, f"{len(local)} kernels use local memory, first: {local[:3]}"
    crowded = [r for r in rows if r["blocks_per_sm"] < 3]
    assert not crowded, f"{len(crowded)} kernels leave fewer than 3 blocks per SM, first: {crowded[:3]}"
