"""benchmarks/bench_gpu.py without a GPU: its summary, table and JSON from made-up timings,
how the documentation renders that JSON, and its exit when no GPU is visible."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _import(folder: Path, name: str):  # noqa: ANN202
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


bench_gpu = _import(ROOT / "benchmarks", "bench_gpu")

# per-repetition seconds: fused 1 ms, reference 3x, leaky 2x, each with some jitter
FAKE_TIMES = {
    "fused": [1.0e-3, 1.1e-3, 0.9e-3],
    "reference": [3.0e-3, 3.3e-3, 2.7e-3],
    "leaky": [2.0e-3, 2.4e-3, 1.8e-3],
}


def fake_result() -> dict:
    row = bench_gpu.summarize_case(16, 64, 65536, FAKE_TIMES, bandwidth=2.0e12)
    oom = bench_gpu.summarize_case(64, 64, 65536, {"fused": [4e-3] * 3, "reference": [None] * 3}, 2.0e12)
    return {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "dtype": "bfloat16",
            "torch": "2.14.1", "copy_bandwidth_bytes_per_s": 2.0e12, "bytes_per_neuron_step_floor": 32,
            "rows": [row, oom]}


def test_summary_from_fake_timings() -> None:
    row = fake_result()["rows"][0]
    steps = 16 * 64 * 65536
    assert row["neuron_steps"] == steps
    fused, reference = row["impl"]["fused"], row["impl"]["reference"]
    assert fused["median_ms"] == pytest.approx(1.0)
    assert fused["neuron_steps_per_s"] == pytest.approx(steps / 1e-3)
    assert fused["bytes_per_s"] == pytest.approx(32 * steps / 1e-3)
    assert reference["median_ratio_to_fused"] == pytest.approx(3.0)
    assert row["impl"]["leaky"]["median_ratio_to_fused"] == pytest.approx(2.0)
    assert row["floor_ms"] == pytest.approx(32 * steps / 2.0e12 * 1e3)
    assert row["fused_over_floor"] == pytest.approx(1e-3 / (32 * steps / 2.0e12))


def test_out_of_memory_is_recorded_not_fatal() -> None:
    row = fake_result()["rows"][1]
    assert row["impl"]["reference"] == {"error": "out of memory"}
    assert "median_ratio_to_fused" in row["impl"]["fused"]


def test_table_and_file_name() -> None:
    table = bench_gpu.format_table(fake_result())
    assert "16x64x65536" in table and "out of memory" in table
    fused_line = next(line for line in table.splitlines() if "16x64x65536" in line and "fused" in line)
    # 1 ms for 67.1 M neuron-steps: 67.11 G neuron-steps/s, 2147 GB/s at 32 B each
    assert fused_line.split()[2:6] == ["1.000", "67.11", "2147", "1.00"]
    path = bench_gpu.output_path(Path("results"), "NVIDIA H100 80GB HBM3", "bfloat16")
    assert path == Path("results/gpu_nvidia-h100-80gb-hbm3_bfloat16.json")


def test_parse_sizes() -> None:
    assert bench_gpu.parse_sizes("64x1024, 64x65536") == [(64, 1024), (64, 65536)]
    with pytest.raises(Exception, match="64x1024"):
        bench_gpu.parse_sizes("64*1024")


def test_docs_render_the_gpu_json_with_a_bandwidth_column(tmp_path: Path) -> None:
    clif_docs = _import(ROOT / "docs" / "_ext", "clif_docs")
    path = tmp_path / "gpu_h100_bfloat16.json"
    path.write_text(json.dumps(fake_result()))
    old_root = clif_docs.ROOT
    clif_docs.ROOT = tmp_path
    try:
        text = "\n".join(clif_docs.benchmark_rst([path]))
    finally:
        clif_docs.ROOT = old_root
    assert "GB/s (32 B / neuron-step)" in text and "capability: 9.0" in text
    # shape, impl, ms, M neuron-steps/s, x fused, GB/s
    assert "   * - 16x64x65536\n     - reference\n     - 3.000\n     - 22369.6\n     - 3.00\n     - 716" in text
    assert "     - out of memory" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the script would run")
def test_exits_with_a_clear_message_without_a_gpu(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "needs a CUDA GPU" in proc.stderr
    assert not list(tmp_path.iterdir())
