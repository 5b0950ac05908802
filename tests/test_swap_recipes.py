"""benchmarks/swap_recipes.py and swap_matrix.py: ``from_leaky`` on snnTorch's own recipes.

Each recipe builds its ``snn.Leaky`` model and runs its own forward and training code; the
tests hand it a converter (the one call the matrix changes) that records what it was given
and what it returned, so every check runs on the recipe's real model and code.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import snntorch as snn
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from snntorch_clif import DropInCLIF, from_leaky
from snntorch_clif.surrogate import rectangle, resolve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import swap_matrix  # noqa: E402
import swap_recipes  # noqa: E402
from swap_recipes import COLUMNS, RECIPES, Probe  # noqa: E402

CONV = {"tutorial6", "tutorial7", "quickstart_conv"}


class _Stop(Exception):
    """Raised by a converter to end a recipe right after its model is built."""


def _build(name: str, seed: int = 0) -> nn.Module:
    """The recipe's own snn.Leaky model, as its code builds it for ``seed``."""
    built: list[nn.Module] = []

    def capture(net: nn.Module) -> nn.Module:
        built.append(net)
        raise _Stop

    with pytest.raises(_Stop):
        RECIPES[name].run(capture, seed, RECIPES[name].quick, Probe())
    return built[0]


def _leakies(net: nn.Module) -> list[tuple[str, snn.Leaky]]:
    return [(n, m) for n, m in net.named_modules() if type(m) is snn.Leaky]


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key].float(), b[key].float()), key


@pytest.fixture(autouse=True)
def _fresh_neuron_registry() -> None:
    snn.SpikingNeuron.instances.clear()  # snnTorch's utils.reset walks every neuron ever built


# --- conversion of every recipe's model ------------------------------------------------------
@pytest.mark.parametrize("name", list(RECIPES))
def test_every_leaky_becomes_a_drop_in_clif_with_its_values(name: str) -> None:
    leaky_net = _build(name)
    leakies = _leakies(leaky_net)
    assert leakies, "each recipe's model has snn.Leaky layers"
    for column, readout in (("recommended", leakies[-1][0]), ("plain", None)):
        clif_net = COLUMNS[column](leaky_net)
        assert not _leakies(clif_net)
        converted = dict(clif_net.named_modules())
        for layer_name, leaky in leakies:
            clif = converted[layer_name]
            assert type(clif) is DropInCLIF
            assert clif.reset_delay == (layer_name == readout)
            expected = resolve(leaky.spike_grad) if column == "recommended" else rectangle()
            assert clif.spike_grad == expected
            assert clif.reset_mechanism == leaky.reset_mechanism and clif.init_hidden == leaky.init_hidden
            assert clif.output == leaky.output
        # every parameter and buffer carried over, learnable ones still learnable
        assert dict(clif_net.named_parameters()).keys() == dict(leaky_net.named_parameters()).keys()
        _assert_same_state(clif_net.state_dict(), leaky_net.state_dict())
    kept = COLUMNS["keep_readout"](leaky_net)
    last = leakies[-1][0]
    assert type(kept.get_submodule(last)) is snn.Leaky and kept.get_submodule(last) is not leaky_net.get_submodule(last)
    for layer_name, _leaky in leakies[:-1]:
        assert type(kept.get_submodule(layer_name)) is DropInCLIF and not kept.get_submodule(layer_name).reset_delay
    _assert_same_state(kept.state_dict(), leaky_net.state_dict())


@pytest.mark.parametrize("name", list(RECIPES))
def test_state_dicts_round_trip(name: str) -> None:
    leaky_a, leaky_b = _build(name, seed=0), _build(name, seed=1)
    # a trained snn.Leaky model's weights load into the converted model
    clif_b = from_leaky(leaky_b)
    clif_b.load_state_dict(leaky_a.state_dict())
    _assert_same_state(clif_b.state_dict(), leaky_a.state_dict())
    # converted -> converted, after the weights moved (as training moves them)
    clif_a = from_leaky(leaky_a)
    with torch.no_grad():
        for p in clif_a.parameters():
            p.add_(0.01 * torch.randn_like(p))
    clif_c = from_leaky(_build(name, seed=2))
    clif_c.load_state_dict(clif_a.state_dict())
    _assert_same_state(clif_c.state_dict(), clif_a.state_dict())


@pytest.mark.parametrize("name", ["tutorial5", "quickstart_fc", "regression1", "tbptt", "mse_membrane_loss"])
def test_a_loaded_model_trains_exactly_as_the_one_it_was_saved_from(name: str) -> None:
    recipe = RECIPES[name]
    saved = from_leaky(_build(name, seed=0))
    loaded = from_leaky(_build(name, seed=3))
    loaded.load_state_dict(saved.state_dict())
    first = recipe.run(lambda net: saved, 0, recipe.quick, Probe())
    second = recipe.run(lambda net: loaded, 0, recipe.quick, Probe())
    assert first["loss"] == second["loss"] and first["final"] == second["final"]


# --- the fused kernel runs ---------------------------------------------------------------------
class _ClifOps(TorchDispatchMode):
    """Counts the fused op's forward and backward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.forward = self.backward = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is torch.ops.snntorch_clif.clif_forward.default:
            self.forward += 1
        elif func is torch.ops.snntorch_clif.clif_backward.default:
            self.backward += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", [n for n in RECIPES if n not in CONV] + [pytest.param(n, marks=pytest.mark.slow)
                                                                         for n in sorted(CONV)])
def test_every_converted_layer_step_runs_the_fused_op(name: str) -> None:
    recipe = RECIPES[name]
    steps = {"calls": 0, "training": 0}

    def count(module: nn.Module, args: Any, output: Any) -> None:
        steps["calls"] += 1
        steps["training"] += module.training and torch.is_grad_enabled()

    def convert(net: nn.Module) -> nn.Module:
        clif_net = from_leaky(net)
        for module in clif_net.modules():
            if isinstance(module, DropInCLIF):
                module.register_forward_hook(count)
        return clif_net

    with _ClifOps() as ops:
        recipe.run(convert, 0, recipe.quick, Probe())
    assert steps["calls"] > 0
    assert ops.forward == steps["calls"]  # one fused step per layer call, none on the reference path
    # the fused backward runs for the layers whose outputs reach the loss (a membrane-read read-out with
    # reset_delay=True reports h, computed beside the op, and needs none)
    assert 0 < ops.backward <= steps["training"]


def test_the_leaky_column_runs_no_clif() -> None:
    with _ClifOps() as ops:
        RECIPES["quickstart_fc"].run(COLUMNS["leaky"], 0, RECIPES["quickstart_fc"].quick, Probe())
    assert ops.forward == 0


# --- short training runs: the loss falls ---------------------------------------------------
SMALL: dict[str, dict[str, int]] = {
    "tutorial5": dict(batch_size=64, num_steps=8, iters=12, evals=1),
    "tutorial6": dict(batch_size=32, num_steps=6, iters=30, evals=1),  # the output layer is silent for ~6 iterations
    "tutorial7": dict(batch_size=32, num_steps=8, iters=30, evals=1),
    "quickstart_conv": dict(batch_size=32, num_steps=8, iters=30, evals=1),
    "quickstart_fc": dict(batch_size=64, num_steps=8, iters=12, evals=1),
    "regression1": dict(num_steps=20, iters=30, evals=1),
    "population_10": dict(batch_size=64, epochs=3),
    "population_500": dict(batch_size=64, epochs=3),
    "bptt": dict(batch_size=64, num_steps=6, epochs=3, K=3),
    "tbptt": dict(batch_size=64, num_steps=6, epochs=3, K=3),
    "rtrl": dict(batch_size=128, num_steps=4, epochs=2, K=1),
    "ce_rate_loss": dict(batch_size=64, num_steps=8, iters=12, evals=1),
    "ce_count_loss": dict(batch_size=64, num_steps=8, iters=12, evals=1),
    "mse_count_loss": dict(batch_size=64, num_steps=8, iters=12, evals=1),
    "mse_membrane_loss": dict(batch_size=64, num_steps=8, iters=12, evals=1),
}


def test_every_recipe_has_a_small_size() -> None:
    assert SMALL.keys() == RECIPES.keys()


@pytest.mark.parametrize("name", [n for n in RECIPES if n not in CONV] + [pytest.param(n, marks=pytest.mark.slow)
                                                                         for n in sorted(CONV)])
def test_the_recommended_swap_trains(name: str) -> None:
    torch.set_num_threads(1)
    result = RECIPES[name].run(COLUMNS["recommended"], 0, SMALL[name], Probe())
    losses = result["loss"]
    head, tail = losses[: max(1, len(losses) // 4)], losses[-max(1, len(losses) // 4):]
    assert sum(tail) / len(tail) < 0.95 * sum(head) / len(head), losses
    if RECIPES[name].higher_is_better and name != "quickstart_conv":  # its count targets lift every output first
        assert result["final"] > 0.2  # chance is 0.1


# --- the pieces --------------------------------------------------------------------------------
def test_digit_events_are_two_polarity_frames_of_a_moving_digit() -> None:
    x_train, y_train, x_test, y_test = swap_recipes.digit_events(steps=6)
    assert x_train.shape == (1437, 6, 2, 34, 34) and x_test.shape == (360, 6, 2, 34, 34)
    assert set(x_train.unique().tolist()) <= {0, 1}
    on, off = x_train[:, :, 0].float().mean(), x_train[:, :, 1].float().mean()
    assert 0.005 < on < 0.2 and 0.005 < off < 0.2 and 0.5 < on / off < 2  # edges move both ways
    border = x_train[..., :2, :].float().mean()  # the digit never reaches the top rows: noise only
    assert border < 0.01
    assert torch.equal(swap_recipes.digit_events(steps=6)[0], x_train)  # the same events every run
    assert torch.equal(y_train, swap_recipes.digits_28x28()[1]) and torch.equal(y_test, swap_recipes.digits_28x28()[3])


def test_probe_reports_rates_silence_and_gradients() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), snn.Leaky(beta=0.5, init_hidden=True),
                        nn.Linear(6, 3), snn.Leaky(beta=0.5, init_hidden=True, threshold=1e6, output=True))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    probe = Probe()
    probe.watch(net, opt)
    for _ in range(2):
        snn.utils.reset(net)
        spikes = [net(torch.rand(8, 4) * 4)[0] for _ in range(5)]
        opt.zero_grad()
        (torch.stack(spikes).sum() + net[0].weight.sum()).backward()
        opt.step()
    assert [r["step"] for r in probe.records] == [1, 2]
    hidden, out = probe.records[-1]["layers"]["1"], probe.records[-1]["layers"]["3"]
    assert 0 < hidden["rate"] <= 1 and out["rate"] == 0 and out["silent"] == 1
    assert probe.records[-1]["grad_norm"]["0.weight"] > 0


def test_summary_iterations_and_trailing_flag() -> None:
    def run(recipe: str, column: str, seed: int, final: float, curve: list) -> dict:
        return {"recipe": recipe, "column": column, "seed": seed, "final": final, "curve": curve}

    runs = [run("tutorial5", "leaky", s, v, [[10, v]]) for s, v in enumerate([0.90, 0.92, 0.95])]
    runs += [run("tutorial5", "recommended", s, v, c) for s, (v, c) in enumerate(
        [(0.93, [[5, 0.5], [10, 0.93]]), (0.91, [[5, 0.7], [10, 0.91]]), (0.95, [[5, 0.95], [10, 0.95]])])]
    runs += [run("regression1", "leaky", s, v, [[50, v]]) for s, v in enumerate([0.10, 0.12, 0.20])]
    runs += [run("regression1", "recommended", s, v, [[20, v + 0.1], [50, v]]) for s, v in enumerate([0.11, 0.2, 0.3])]
    summary = {row["recipe"]: row for row in swap_matrix.summarize(runs, ["leaky", "recommended"])}
    t5 = summary["tutorial5"]["columns"]["recommended"]
    assert summary["tutorial5"]["leaky_level"] == 0.92 and t5["median"] == 0.93
    assert t5["iterations_to_leaky"] == [10, None, 5] and t5["median_iterations_to_leaky"] == 10
    assert not t5["trails_leaky"]
    reg = summary["regression1"]["columns"]["recommended"]  # lower is better: 0.2 vs Leaky's 0.12
    assert reg["iterations_to_leaky"] == [50, None, None] and reg["median_iterations_to_leaky"] is None
    assert reg["trails_leaky"]
    header, body = swap_matrix.table_rows(list(summary.values()), ["leaky", "recommended"])
    assert body[0][3] == "93.0 [91.0-95.0]" and body[1][3].endswith("*") and body[0][-1] == "10"


@pytest.mark.slow
def test_quick_matrix_writes_valid_json_and_rst(tmp_path: Path) -> None:
    out, rst = tmp_path / "swap.json", tmp_path / "swap.rst"
    swap_matrix.main(["--quick", "--jobs", "1", "--json", str(out), "--rst", str(rst)])
    result = json.loads(out.read_text())
    assert result["machine"]["versions"]["snntorch"] == snn.__version__ and result["date"]
    assert len(result["runs"]) == len(swap_matrix.BASE_COLUMNS) * len(RECIPES)
    for row in result["runs"]:
        recipe = RECIPES[row["recipe"]]
        values = [row["final"]] + [v for _, v in row["curve"]]
        if recipe.higher_is_better:
            assert all(0.0 <= v <= 1.0 for v in values), row
        else:
            assert all(math.isfinite(v) and v >= 0 for v in values), row
        assert all(math.isfinite(v) for v in row["loss"]) and row["seconds"] > 0
        iterations = [i for i, _ in row["curve"]]
        assert iterations == sorted(iterations) and iterations[0] >= 1
        for record in row["probe"]:
            for layer in record["layers"].values():
                assert 0.0 <= layer["rate"] <= 1.0 and 0.0 <= layer["silent"] <= 1.0
    for row in result["summary"]:
        for cell in row["columns"].values():
            assert cell["min"] <= cell["median"] <= cell["max"]
    text = rst.read_text()
    assert ".. list-table::" in text and all(f"* - ``{name}``" in text for name in RECIPES)


def test_table_only_summarizes_logged_runs_without_running_any(tmp_path: Path) -> None:
    log = tmp_path / "runs.jsonl"
    rows = [{"recipe": "tutorial5", "column": column, "seed": seed, "final": final, "curve": [[150, final]],
             "loss": [1.0], "extra": {}, "seconds": 1.0, "cpu_seconds": 1.0, "probe": []}
            for column, finals in (("leaky", [0.9, 0.95, 0.92]), ("recommended", [0.5, 0.6, 0.7]))
            for seed, final in enumerate(finals)]
    log.write_text("".join(json.dumps(row) + "\n" for row in rows + rows[:1]))  # a run logged twice counts once
    out, rst = tmp_path / "swap.json", tmp_path / "swap.rst"
    result = swap_matrix.main(["--table-only", "--reuse", str(log), "--recipes", "tutorial5",
                               "--columns", "leaky", "recommended", "--json", str(out), "--rst", str(rst)])
    assert len(result["runs"]) == 6 and json.loads(out.read_text())["summary"] == result["summary"]
    cell = result["summary"][0]["columns"]["recommended"]
    assert cell["median"] == 0.6 and cell["trails_leaky"] and cell["iterations_to_leaky"] == [None] * 3
    assert "60.0 [50.0-70.0] \\*" in rst.read_text()
