"""benchmarks/bench_libraries.py and its docs renderer, on fake timings (no benchmark run).

The models themselves are run once at a toy size: every row must compute the benchmark's
shape, and the fused and stepped CLIF rows the same spikes and gradients.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import bench_libraries as bl  # noqa: E402


def fake_result() -> dict:
    times = {"clif_multi": [1.0, 2.0, 1.5], "leaky": [3.0, 4.0, 6.0], "linear_only": [0.5, 0.5, 0.5]}
    impl = bl.summarize(times, single={"sj_clif": 45.0})
    impl["clif_multi"]["memory"] = {"peak_growth_mib": 160.4}
    impl["leaky"]["memory"] = {"error": "MemoryError"}
    return {
        "benchmark": "libraries",
        "shape": {"batch": 16, "steps": 500},
        "machine": {"cpu": "Fake CPU 9000", "isa": "AVX-512", "logical_cores": 2, "threads": 2,
                    "load_average_at_start": [3.5, 3.0, 2.0], "versions": {"torch": "2.x", "norse": None}},
        "reference": "clif_multi",
        "skipped": {"norse_lif": "norse not importable (No module named 'norse')"},
        "not_run_at_larger_n": {"sj_clif": "one run took 45 s at n=512"},
        "rows": [{"n": 512, "reps": 3, "impl": impl}],
    }


# --- the numbers --------------------------------------------------------------------------
def test_summarize_medians_spread_and_per_repetition_ratios():
    out = bl.summarize({"clif_multi": [1.0, 2.0, 1.5], "leaky": [3.0, 4.0, 6.0]})
    assert out["clif_multi"]["median_ms"] == pytest.approx(1500.0)
    assert out["leaky"]["median_ms"] == pytest.approx(4000.0)
    assert (out["leaky"]["min_ms"], out["leaky"]["max_ms"]) == pytest.approx((3000.0, 6000.0))
    # ratios per repetition: 3, 2, 4 -> median 3 (not 4000 / 1500 = 2.67)
    assert out["leaky"]["median_ratio_to_clif_multi"] == pytest.approx(3.0)
    assert out["clif_multi"]["median_ratio_to_clif_multi"] == pytest.approx(1.0)
    assert out["leaky"]["runs"] == 3 and out["leaky"]["label"] == bl.IMPLEMENTATIONS["leaky"].label


def test_summarize_single_runs_compare_with_the_reference_median():
    out = bl.summarize({"clif_multi": [1.0, 2.0, 1.5]}, single={"norse_lif": 30.0})
    assert out["norse_lif"]["runs"] == 1
    assert out["norse_lif"]["median_ratio_to_clif_multi"] == pytest.approx(20.0)


def test_summarize_rejects_missing_reference_and_uneven_repetitions():
    with pytest.raises(ValueError, match="reference 'clif_multi'"):
        bl.summarize({"leaky": [1.0]})
    with pytest.raises(ValueError, match="not interleaved"):
        bl.summarize({"clif_multi": [1.0, 2.0], "leaky": [1.0]})


def test_interleaved_times_runs_each_once_per_repetition_in_its_order_and_times_each_call():
    from bench_neuron import repetition_order

    calls: list[str] = []
    ticks = iter(range(1000))

    def clock() -> float:
        return float(next(ticks))

    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = bl.interleaved_times(fns, reps=3, clock=clock)
    assert calls == [name for r in range(3) for name in repetition_order(list("abc"), r)]
    assert times == {"a": [1.0, 1.0, 1.0], "b": [1.0, 1.0, 1.0], "c": [1.0, 1.0, 1.0]}
    with pytest.raises(ValueError, match="reps must be >= 1"):
        bl.interleaved_times(fns, reps=0)


def test_table_lines_show_every_row_with_its_ratio_and_memory():
    lines = bl.table_lines(fake_result())
    assert lines[0].startswith("| n | implementation | runs |")
    body = {line.split("|")[2].strip(): line for line in lines[2:]}
    assert set(body) == {bl.IMPLEMENTATIONS[n].label for n in ("clif_multi", "leaky", "linear_only", "sj_clif")}
    fused = [c.strip() for c in body["CLIF, multi-step (fused)"].split("|")]
    assert fused[1:8] == ["512", "CLIF, multi-step (fused)", "3", "1500", "1000-2000", "1.00", "160"]
    leaky = [c.strip() for c in body["snn.Leaky, step loop"].split("|")]
    assert leaky[6:8] == ["3.00", ""]  # a failed memory child leaves the cell empty
    sj = [c.strip() for c in body[bl.IMPLEMENTATIONS["sj_clif"].label].split("|")]
    assert sj[3:7] == ["1", "45000", "45000-45000", "30.00"]


def test_json_round_trip_keeps_the_table(tmp_path):
    path = tmp_path / "libraries_cpu.json"
    path.write_text(json.dumps(fake_result()))
    assert bl.table_lines(json.loads(path.read_text())) == bl.table_lines(fake_result())


def test_machine_description_names_the_cpu_and_versions():
    m = bl.machine_description()
    assert m["cpu"] and m["logical_cores"] >= 1 and m["threads"] == torch.get_num_threads()
    assert m["versions"]["torch"] == torch.__version__


def test_command_line_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit):
        bl.main(["--sizes", "0"])
    assert "--sizes must be positive" in capsys.readouterr().err


# --- the models ------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(bl.IMPLEMENTATIONS))
def test_every_row_maps_the_benchmark_shape_and_trains_the_linear(name):
    ok, skipped = bl.available([name])
    if not ok:
        pytest.skip(skipped[name])
    torch.manual_seed(0)
    model = bl.IMPLEMENTATIONS[name].build(8)
    x = bl.make_input(8, batch=3, steps=6)
    out = model(x)
    assert out.shape == (6, 3, 8)
    bl.forward_backward(model, x)
    weights = [p for p in model.parameters() if p.dim() == 2]
    assert len(weights) == 1 and weights[0].grad is not None and weights[0].grad.abs().sum() > 0
    if name != "linear_only":  # neurons emit spikes: 0 or 1
        assert set(out.detach().unique().tolist()) <= {0.0, 1.0}


def test_fused_and_stepped_clif_rows_agree():
    torch.manual_seed(0)
    multi, step = bl.ClifMulti(16), bl.ClifStepLoop(16)
    step.load_state_dict(multi.state_dict())
    x = bl.make_input(16, batch=4, steps=20) * 3
    spikes = multi(x)
    assert spikes.sum() > 0  # the input drives the neurons past threshold
    assert torch.equal(spikes, step(x))
    bl.forward_backward(multi, x)
    bl.forward_backward(step, x)
    torch.testing.assert_close(multi.fc.weight.grad, step.fc.weight.grad)
    # a second call starts from zero states again (no state carried between repetitions)
    assert torch.equal(multi(x), spikes)


# --- the docs page ------------------------------------------------------------------------
def test_docs_render_the_table_and_the_machine(tmp_path):
    clif_libraries = pytest.importorskip("clif_libraries")
    path = tmp_path / "libraries_cpu.json"
    path.write_text(json.dumps(fake_result()))
    rst = "\n".join(clif_libraries.library_rst([path], root=tmp_path))
    assert "``libraries_cpu.json``" in rst
    assert "Fake CPU 9000 (AVX-512), 2 logical cores, 2 threads" in rst
    assert "load average 3.5" in rst
    assert "     - CLIF, multi-step (fused)\n     - 3\n     - 1500\n     - 1000-2000\n     - 1.00\n     - 160" in rst
    assert "``sj_clif``: one run took 45 s at n=512" in rst and "``norse_lif``: norse not importable" in rst


def test_docs_say_so_for_a_file_that_is_not_a_result(tmp_path):
    clif_libraries = pytest.importorskip("clif_libraries")
    path = tmp_path / "libraries_other.json"
    path.write_text(json.dumps({"rows": []}))
    assert "*Not shown" in "\n".join(clif_libraries.library_rst([path], root=tmp_path))
    assert "No library comparison" in "\n".join(clif_libraries.library_rst([], root=tmp_path))


def test_plot_draws_one_bar_per_implementation_and_size(tmp_path):
    clif_libraries = pytest.importorskip("clif_libraries")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    result = fake_result()
    result["rows"].append({"n": 2048, "reps": 3, "impl": bl.summarize({"clif_multi": [4.0], "leaky": [9.0]})})
    path = tmp_path / "libraries_cpu.json"
    path.write_text(json.dumps(result))
    fig = clif_libraries.plot_results([path])
    ax_time, ax_mem = fig.axes
    heights = sorted(round(p.get_height(), 3) for p in ax_time.patches)
    assert heights == sorted([1.5, 4.0, 0.5, 45.0, 4.0, 9.0])  # seconds: 4 rows at 512, 2 at 2048
    assert [round(p.get_height(), 1) for p in ax_mem.patches] == [160.4]  # only the measured one
    assert [t.get_text() for t in ax_time.get_xticklabels()] == ["n = 512", "n = 2048"]
    empty = clif_libraries.plot_results([])
    assert "no benchmarks/results/libraries_" in empty.axes[0].texts[0].get_text()


def test_repetition_order_shuffles_who_follows_whom():
    # A rotation keeps the competitor after a cache-flushing copy the same in every
    # repetition (bench_sweep's fused call followed its copy in every one): the shuffle must not.
    from bench_neuron import repetition_order

    names = ["fused", "op", "kernel", "forward", "mul", "copy"]
    orders = [repetition_order(names, r) for r in range(7)]
    assert all(sorted(order) == sorted(names) for order in orders)
    assert orders == [repetition_order(names, r) for r in range(7)]  # seeded: reproducible
    after_copy = {order[(order.index("copy") + 1) % len(order)] for order in orders}
    assert len(after_copy) >= 3
    assert len({tuple(order) for order in orders}) == len(orders)
