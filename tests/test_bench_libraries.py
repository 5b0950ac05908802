"""benchmarks/bench_libraries.py (Open Neuromorphic's library benchmark) and benchmarks/plot_results.py.

No benchmark is run: the protocol runs on a fake clock, the models once at a toy size (each
must compute the benchmark's shape as its authors wrote it), and the reporting on made-up
results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_libraries as bl  # noqa: E402
import plot_results  # noqa: E402


def fake_raw() -> dict[str, dict]:
    return {
        "clif_multi": {"forward_s": [1.0, 2.0, 3.0], "backward_s": [2.0, 2.0], "spikes_per_neuron_step": 0.03,
                       "peak_mib": 700.0},
        "snntorch": {"forward_s": [10.0, 12.0, 14.0], "backward_s": [16.0, 16.0, 16.0], "spikes_per_neuron_step": 0.05,
                     "peak_mib": 2100.0},
        "norse": {"error": "norse is not installed"},
    }


def fake_result() -> dict:
    return {
        "benchmark": "open_neuromorphic", "date": "2027-01-02",
        "shape": {"batch": 16, "steps": 500},
        "machine": {"cpu": "Fake CPU 9000", "isa": "AVX-512", "logical_cores": 2, "threads": 1,
                    "load_average_at_start": [3.5, 3.0, 2.0], "versions": {"torch": "2.x"}},
        "reference": "clif_multi",
        "not_run_at_larger_n": {"snntorch": "30 s at n = 4096 (over --max-seconds 20)"},
        "rows": [{"n": 4096, "impl": bl.summarize(fake_raw())}],
    }


# --- their protocol -------------------------------------------------------------------------
def test_timeit_runs_a_warmup_then_until_three_runs_and_two_seconds():
    calls = []
    ticks = iter(float(t) for t in range(0, 1000, 1))  # every call "takes" one second

    times = bl.timeit(lambda: calls.append(1), clock=lambda: next(ticks))
    # 1 warm-up (untimed), then 3 calls of 1 s: at least 3 runs, and 3 s > 2 s
    assert len(calls) == 4 and times == [1.0, 1.0, 1.0]
    ticks = iter(float(t) for t in range(0, 1000, 1))
    times = bl.timeit(lambda: None, min_runs=1, min_time=2.0, clock=lambda: next(ticks))
    assert times == [1.0, 1.0, 1.0]  # 2 s is not more than 2 s: a third run
    with pytest.raises(ValueError, match="min_runs"):
        bl.timeit(lambda: None, min_runs=0)


def test_protocol_times_forward_then_backward_on_one_retained_graph():
    torch.manual_seed(0)
    model = bl.ClifMultiModel(8)
    x = bl.make_input(8, batch=2, steps=5) * 4
    out = bl.run_protocol(model, x, min_runs=3, min_time=0.0)
    assert len(out["forward_s"]) == 3 and len(out["backward_s"]) == 3
    assert 0 < out["spikes_per_neuron_step"] < 1
    # the warm-up and the three timed backward passes ran on one graph (retain_graph) and accumulated
    single = bl.ClifMultiModel(8)
    single.load_state_dict(model.state_dict())
    single(x).sum().backward()
    torch.testing.assert_close(model.fc.weight.grad, 4 * single.fc.weight.grad)


def test_summarize_reports_means_and_the_ratio_to_clif_multi():
    out = bl.summarize(fake_raw())
    assert out["clif_multi"]["forward_s"] == pytest.approx(2.0)  # mean, as theirs
    assert out["clif_multi"]["backward_s"] == pytest.approx(2.0)
    assert out["snntorch"]["total_s"] == pytest.approx(28.0)
    assert out["snntorch"]["total_over_clif_multi"] == pytest.approx(7.0)
    assert (out["snntorch"]["forward_runs"], out["clif_multi"]["backward_runs"]) == (3, 2)
    assert out["norse"] == {"label": bl.MODELS["norse"].label, "origin": "Open Neuromorphic",
                            "error": "norse is not installed"}


def test_table_lines_show_every_model_with_its_numbers():
    lines = bl.table_lines(fake_result())
    assert lines[0].startswith("| n | model | forward s | backward s | total s |")
    body = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]}
    assert body[bl.MODELS["snntorch"].label] == ["4096", bl.MODELS["snntorch"].label, "12.00", "16.00", "28.00",
                                                 "7.00", "2100", "0.050"]
    assert body[bl.MODELS["norse"].label][2] == "norse is not installed"


def test_machine_description_names_the_cpu_threads_and_versions():
    m = bl.machine_description(threads=1)
    assert m["cpu"] and m["logical_cores"] >= 1 and m["threads"] == 1
    assert m["versions"]["torch"] == torch.__version__


def test_command_line_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit):
        bl.main(["--sizes", "0"])
    assert "--sizes must be positive" in capsys.readouterr().err


# --- the models, as their authors wrote them ------------------------------------------------
@pytest.mark.parametrize("name", list(bl.MODELS))
def test_every_model_maps_the_input_shape_and_trains_its_linear(name):
    ok, skipped = bl.available([name])
    if not ok:
        pytest.skip(skipped[name])
    torch.manual_seed(0)
    # Norse's model eagerly: torch.compile takes most of a minute (the benchmark compiles it)
    model = bl.NorseModel(8, compile=False) if name == "norse" else bl.MODELS[name].build(8)
    x = bl.make_input(8, batch=3, steps=6)
    out = model(x)
    assert out.shape == x.shape  # their benchmark asserts this too
    out.sum().backward()
    weights = [p for p in model.parameters() if p.dim() == 2]
    assert len(weights) == 1 and weights[0].grad is not None
    assert set(out.detach().unique().tolist()) <= {0.0, 1.0}  # spikes


def test_their_snntorch_model_steps_the_linear_and_leaky_095():
    pytest.importorskip("snntorch")
    import snntorch

    torch.manual_seed(0)
    model = bl.SnntorchModel(8)
    assert isinstance(model.lif, snntorch.Leaky) and float(model.lif.beta) == pytest.approx(0.95)
    x = bl.make_input(8, batch=2, steps=4)
    lif, mem, expected = snntorch.Leaky(beta=0.95), model.lif.init_leaky(), []
    for t in range(4):
        spk, mem = lif(model.fc(x[t]), mem)
        expected.append(spk)
    assert torch.equal(model(x), torch.stack(expected))


def test_their_norse_model_runs_one_step_over_the_whole_sequence():
    pytest.importorskip("norse")
    torch.manual_seed(0)
    model = bl.NorseModel(8, compile=False)
    x = bl.make_input(8, batch=2, steps=5) * 50  # large enough to cross the threshold in one step
    out = model(x)
    # one Euler step from v = 0 for every (t, b): v = dt * tau_mem_inv * i = 0.1 * i, spike where v >= 1;
    # a 5-step integration would also fire at t > 0 where 0.1 * i < 1 (v keeps growing)
    current = model.net[0](x)
    assert torch.equal(out, (0.1 * current >= 1.0).to(out.dtype))
    assert bl.run_protocol(bl.NorseModel(8, compile=False), bl.make_input(8, 2, 5), 1, 0.0)[
        "spikes_per_neuron_step"] == 0.0  # their input: no spike


def test_the_clif_rows_compute_the_same_spikes_and_gradients():
    torch.manual_seed(0)
    multi, loop = bl.ClifMultiModel(16), bl.ClifLoopModel(16)
    loop.load_state_dict(multi.state_dict())
    x = bl.make_input(16, batch=4, steps=20) * 3
    spikes = multi(x)
    assert spikes.sum() > 0
    assert torch.equal(spikes, loop(x))
    multi(x).sum().backward()
    loop(x).sum().backward()
    torch.testing.assert_close(multi.fc.weight.grad, loop.fc.weight.grad)
    assert torch.equal(multi(x), spikes)  # every call starts from zero states


def test_spikingjelly_model_rejects_an_unknown_node():
    pytest.importorskip("spikingjelly")
    with pytest.raises(ValueError, match="node must be 'lif' or 'clif'"):
        bl.SpikingJellyModel(4, node="izhikevich")


def test_repetition_order_shuffles_who_follows_whom():
    # bench_neuron.py and bench_sweep.py: a rotation would keep the competitor after the
    # cache-flushing copy the same in every repetition; the shuffle must not.
    from bench_neuron import repetition_order

    names = ["fused", "op", "kernel", "forward", "mul", "copy"]
    orders = [repetition_order(names, r) for r in range(7)]
    assert all(sorted(order) == sorted(names) for order in orders)
    assert orders == [repetition_order(names, r) for r in range(7)]  # seeded: reproducible
    after_copy = {order[(order.index("copy") + 1) % len(order)] for order in orders}
    assert len(after_copy) >= 3


# --- plot_results.py: tables, README blocks and figures from the JSON -----------------------
def sweep_result(threads: int) -> dict:
    rows = []
    for n in (4096, 131072):
        for t, ns in ((4, 6.0), (16, 4.0)):
            steps = t * n
            rows.append({"T": t, "N": n, "neuron_steps": steps, "floor_ms": 2.0 * steps / 1e6,
                         "fused_over_floor": ns / 2.0,
                         "impl": {"fused": {"median_ms": ns * steps / 1e6, "ns_per_neuron_step": ns},
                                  **({"leaky": {"median_ms": 50 * steps / 1e6}} if t == 16 else {})}})
    return {"date": "2027-01-02", "device_name": "Fake CPU", "cpu_count": 2, "threads": threads, "torch": "2.x",
            "rows": rows, "call_overhead": {"us_per_call": {"clif_step_fwd_bwd": 50.0, "leaky_step_fwd_bwd": 150.0},
                                            "clif_over_leaky_fwd_bwd": 0.33}}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    (tmp_path / "open_neuromorphic_cpu.json").write_text(json.dumps(fake_result()))
    for threads, name in zip((1, 2), plot_results.SWEEP_FILES):
        (tmp_path / name).write_text(json.dumps(sweep_result(threads)))
    return tmp_path


def test_tables_carry_the_date_machine_and_numbers(results: Path):
    sweep = "\n".join(plot_results.table_sweep(results))
    assert "Measured 2027-01-02, Fake CPU (2 cores), torch 2.x" in sweep
    assert "| 2 | 131,072 | 6.00 (3.00) | 4.00 (2.00) |" in sweep
    assert "`CLIF` 50 us, `snn.Leaky` 150 us (0.33x)" in sweep
    lib = "\n".join(plot_results.table_open_neuromorphic(results))
    assert ("Measured 2027-01-02, Fake CPU 9000 (AVX-512, 2 cores), 1 thread, torch 2.x, load average 3.5 at the "
            "start; batch 16, T = 500.") in lib
    assert f"| 4,096 | {bl.MODELS['snntorch'].label} | 12.00 | 16.00 | 7.00 | 2100 | 0.050 |" in lib
    assert "`snntorch` was not run at larger n: 30 s at n = 4096" in lib
    assert plot_results.table_neuron(results) == ["*No bench_neuron.py result committed.*"]


def test_update_readme_rewrites_only_the_marked_blocks(results: Path):
    text = "intro\n<!-- table:bench_sweep -->\nold\n<!-- /table -->\nmiddle\n<!-- table:bench_libraries -->\n" \
           "old\n<!-- /table -->\nend\n"
    new = plot_results.update_readme(text, results)
    assert new.startswith("intro\n<!-- table:bench_sweep -->\nMeasured 2027-01-02") and "middle\n" in new
    assert "old" not in new and new.endswith("<!-- /table -->\nend\n")
    assert plot_results.update_readme(new, results) == new  # idempotent
    with pytest.raises(KeyError, match="unknown table 'nope'"):
        plot_results.update_readme("<!-- table:nope -->x<!-- /table -->", results)


def test_figures_draw_the_json(results: Path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    fig = plot_results.figure_cost_over_t(results)
    assert len(fig.axes) == 2  # one panel per thread count
    fused = fig.axes[0].lines[0]
    assert list(fused.get_xdata()) == [4, 16] and list(fused.get_ydata()) == pytest.approx([6.0, 4.0])
    assert list(fig.axes[0].lines[1].get_ydata()) == pytest.approx([2.0, 2.0])  # the floor
    time_fig = plot_results.figure_open_neuromorphic_time(results)
    widths = sorted(round(p.get_width(), 3) for p in time_fig.axes[0].patches)
    assert widths == [2.0, 2.0, 12.0, 16.0]  # forward and backward of the two models that ran
    mem = plot_results.figure_open_neuromorphic_memory(results)
    assert sorted(p.get_height() for p in mem.axes[0].patches) == [700.0, 2100.0]
    empty = plot_results.figure_neuron_comparison(results)  # no bench_neuron.py result here
    assert "no neuron_cpu_1thread.json" in empty.axes[0].texts[0].get_text()
