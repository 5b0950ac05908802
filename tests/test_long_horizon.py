"""benchmarks/long_horizon.py and long_horizon_tasks.py: the long-horizon study's tasks, networks and measurements.

The task generators are checked for shape, balance and meaning (the delayed-cue answer is
in the cues, a permutation is a permutation); the gradient-over-time measurement against
gradients worked out by hand; ``--quick`` end to end (valid JSON, figures). No accuracy
or timing is asserted.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import long_horizon as lh  # noqa: E402
import long_horizon_tasks as tasks  # noqa: E402


# --- task generators ------------------------------------------------------------------------
def _balance(labels: torch.Tensor, classes: int) -> float:
    counts = torch.bincount(labels, minlength=classes)
    return float(counts.min()) / float(counts.max())


def test_sequential_digits_one_pixel_per_step() -> None:
    task = tasks.sequential_digits()
    assert task.x_train.shape == (1347, 64, 1) and task.x_test.shape == (450, 64, 1)
    assert task.x_train.dtype == torch.float32 and task.y_train.dtype == torch.int64
    assert 0.0 <= float(task.x_train.min()) and float(task.x_train.max()) <= 1.0
    assert task.num_classes == 10 and set(task.y_train.tolist()) == set(range(10))
    assert _balance(task.y_train, 10) > 0.95 and _balance(task.y_test, 10) > 0.9
    assert task.window == 7 and task.T == 64


def test_pixel_permutation_is_a_fixed_permutation() -> None:
    order = tasks.pixel_permutation(64, seed=0)
    assert sorted(order.tolist()) == list(range(64))
    assert not torch.equal(order, torch.arange(64))
    assert torch.equal(order, tasks.pixel_permutation(64, seed=0))  # the same order every time
    assert not torch.equal(order, tasks.pixel_permutation(64, seed=1))
    plain, permuted = tasks.sequential_digits(), tasks.sequential_digits(permuted=True)
    assert torch.equal(permuted.x_train, plain.x_train[:, order])  # every image reordered the same way
    assert torch.equal(permuted.y_test, plain.y_test)
    # a permutation keeps each image's pixels: sorted values agree
    assert torch.equal(permuted.x_test.sort(dim=1).values, plain.x_test.sort(dim=1).values)


def test_mnist1d_sequence_and_its_stretch() -> None:
    base = tasks.mnist1d_sequence()
    assert base.x_train.shape == (4000, 40, 1) and base.x_test.shape == (1000, 40, 1)
    assert abs(float(base.x_train.mean())) < 1e-4 and abs(float(base.x_train.std()) - 1) < 1e-4
    assert _balance(base.y_train, 10) > 0.9 and base.window == 4
    stretched = tasks.mnist1d_sequence(stretch=4)
    assert stretched.x_train.shape == (4000, 160, 1) and stretched.window == 16
    for offset in range(4):  # each value held for 4 steps
        assert torch.equal(stretched.x_train[:, offset::4], base.x_train)
    assert torch.equal(stretched.y_train, base.y_train)
    with pytest.raises(ValueError, match="stretch"):
        tasks.mnist1d_sequence(stretch=0)


@pytest.mark.parametrize("delay", [0, 50, 1000])
def test_delayed_cue_layout(delay: int) -> None:
    task = tasks.delayed_cue(delay, n_train=64, n_test=32, seed=3)
    T = 7 * 8 + delay + 10
    assert task.x_train.shape == (64, T, 3) and task.x_test.shape == (32, T, 3)
    assert task.T == T and task.window == 10 and task.num_classes == 2
    x = task.x_train
    assert torch.all(x[:, 56:T - 10] == 0), "the delay is silent"
    assert torch.all(x[:, T - 10:, tasks.GO_CHANNEL] == 1) and torch.all(x[:, : T - 10, tasks.GO_CHANNEL] == 0)
    assert torch.all(x[:, :, :2].sum(-1) <= 1), "one cue at a time"
    counts = tasks.cue_counts(x)
    assert torch.all(counts.sum(1) == 7)


def test_delayed_cue_answer_is_the_side_with_more_cues() -> None:
    task = tasks.delayed_cue(20, n_train=256, n_test=128)
    for x, y in ((task.x_train, task.y_train), (task.x_test, task.y_test)):
        counts = tasks.cue_counts(x)
        assert torch.equal((counts[:, 1] > counts[:, 0]).long(), y)
        margins = (counts[:, 1] - counts[:, 0]).abs()
        assert set(margins.tolist()) == {1, 3, 5, 7}  # close calls and clear ones
        # the cues are runs of whole cues (two in neighbouring slots may touch): 4, 8, ... steps at 1
        for trial in x[:20]:
            for channel in trial[:, :2].T:
                edges = torch.diff(torch.cat([torch.zeros(1), channel, torch.zeros(1)]))
                lengths = edges.eq(-1).nonzero().flatten() - edges.eq(1).nonzero().flatten()
                assert torch.all(lengths % 4 == 0) and int(lengths.sum()) == 4 * int(channel.sum() / 4)


def test_delayed_cue_labels_balanced_and_splits_independent() -> None:
    task = tasks.delayed_cue(10, n_train=200, n_test=100)
    assert torch.bincount(task.y_train).tolist() == [100, 100]
    assert torch.bincount(task.y_test).tolist() == [50, 50]
    assert not torch.equal(task.x_train[:100], task.x_test)
    again = tasks.delayed_cue(10, n_train=200, n_test=100)
    assert torch.equal(again.x_train, task.x_train)  # reproducible from its seed
    assert not torch.equal(tasks.delayed_cue(10, n_train=200, n_test=100, seed=1).x_train, task.x_train)


@pytest.mark.parametrize("kwargs, match", [
    (dict(delay=-1), "delay"), (dict(delay=5, n_cues=6), "odd"), (dict(delay=5, cue_length=9), "slot"),
    (dict(delay=5, n_train=0), "n_train"),
])
def test_delayed_cue_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tasks.delayed_cue(**kwargs)


def test_japanese_vowels_when_sktime_ships_it() -> None:
    pytest.importorskip("sktime", reason="sktime (which ships Japanese Vowels) is not installed")
    task = tasks.japanese_vowels()
    assert task.x_train.shape == (270, 29, 12) and task.x_test.shape == (370, 29, 12)
    assert task.num_classes == 9 and torch.bincount(task.y_train).tolist() == [30] * 9
    assert set(task.y_test.tolist()) == set(range(9))
    # padded with zeros at the start: every utterance has data at its last step
    assert torch.all(task.x_train[:, -1].abs().sum(-1) > 0)
    lengths = (torch.cat([task.x_train, task.x_test]).abs().sum(-1) > 0).sum(1)
    assert int(lengths.min()) == 7 and int(lengths.max()) == 29


def test_readout_window_and_stretched_beta() -> None:
    assert [tasks.readout_window(t) for t in (1, 29, 40, 64, 160, 640)] == [1, 3, 4, 7, 16, 64]
    with pytest.raises(ValueError):
        tasks.readout_window(0)
    assert lh.cell_beta("cue-d1000", 0.95) == 0.95 and lh.cell_beta("mnist1d", 0.95) == 0.95
    # beta ** (1/k): k steps of the stretched task decay as one step of the original
    assert lh.cell_beta("mnist1d-x16", 0.95) ** 16 == pytest.approx(0.95)
    assert lh.cell_beta("vowels-x10", 0.9) ** 10 == pytest.approx(0.9)


# --- networks ------------------------------------------------------------------------------
def test_every_neuron_starts_from_the_same_weights() -> None:
    task = tasks.delayed_cue(5, n_train=8, n_test=4)
    nets = {n: lh._build_model(task, n, seed=7, hidden=8, beta=0.9) for n in lh.NEURONS}
    # like with like: the feed-forward kinds share every weight, the two recurrent kinds share
    # theirs (recurrent weights included); the recurrent layer draws its weights before fc2's
    for group in (("clif", "clif-lb", "leaky", "leaky-lb"), ("rclif", "rleaky")):
        ref = dict(nets[group[0]].named_parameters())
        for name in group[1:]:
            for key, value in nets[name].named_parameters():
                if not key.endswith("beta"):
                    assert torch.equal(value, ref[key]), (name, key)
    for name, net in nets.items():
        assert torch.equal(net.fc1.weight, nets["clif"].fc1.weight), name
        out = net(task.x_test)
        assert out.shape == (4, 2) and torch.isfinite(out).all()
    # the recurrent kinds hold a recurrent weight, the others none; learned beta is per neuron
    assert isinstance(nets["rclif"].layer1.neuron.recurrent, nn.Linear)
    assert isinstance(nets["rleaky"].layer1.neuron.recurrent, nn.Linear)
    for name in ("clif-lb", "leaky-lb"):
        beta = nets[name].layer1.neuron.beta
        assert isinstance(beta, nn.Parameter) and beta.shape == (8,)
    for name in ("clif", "leaky"):
        assert not isinstance(nets[name].layer1.neuron.beta, nn.Parameter)


def test_leaky_layer_is_the_same_step_soft_reset() -> None:
    """One hand-computed sequence: beta 0.5, theta 1, h_t = beta u_{t-1} + x_t, u_t = h_t - s_t."""
    layer = lh.make_layer("leaky", 1, 0.5)
    x = torch.tensor([0.6, 0.9, 1.3, 0.0]).reshape(4, 1, 1)
    # h: 0.6 (no), 1.2 (spike, u = 0.2), 1.4 (spike, u = 0.4), 0.2 (no)
    assert layer(x).flatten().tolist() == [0.0, 1.0, 1.0, 0.0]


# --- the gradient over time --------------------------------------------------------------------
class _Linear(nn.Module):
    """logits[b, k] = sum_{t, c} W[k, t, c] x[b, t, c]: every input gradient known in closed form."""

    def __init__(self, W: torch.Tensor) -> None:
        super().__init__()
        self.W = nn.Parameter(W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ktc,btc->bk", self.W, x)


def test_input_gradient_norms_by_hand_on_a_linear_model() -> None:
    torch.manual_seed(0)
    B, T, C, K = 3, 5, 2, 4
    W = torch.randn(K, T, C, dtype=torch.float64)
    x = torch.randn(B, T, C, dtype=torch.float64)
    y = torch.tensor([0, 3, 1])
    measured = lh.input_gradient_norms(_Linear(W), x, y)
    # by hand: L = mean_b CE, dL/dlogits = (softmax - onehot) / B, dL/dx[b,t,c] = sum_k dL/dlogits[b,k] W[k,t,c]
    logits = torch.einsum("ktc,btc->bk", W, x)
    dlogits = (torch.softmax(logits, 1) - nn.functional.one_hot(y, K).double()) / B
    expected = [math.sqrt(sum(float((dlogits[b] * W[:, t, c]).sum()) ** 2 for b in range(B) for c in range(C)))
                for t in range(T)]
    assert measured.shape == (T,)
    assert measured.tolist() == pytest.approx(expected, rel=1e-12)


class _LastSpike(nn.Module):
    """One neuron of ``layer`` on a one-channel sequence; logit 0 is its spike at the last step."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s_last = self.layer(x.transpose(0, 1))[-1]  # [B, 1]
        return torch.cat([s_last, torch.zeros_like(s_last)], dim=1)


def _first_logit(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # noqa: ARG001
    return logits[:, 0].sum()


@pytest.mark.parametrize("neuron", ["leaky", "clif"])
def test_input_gradient_norms_by_hand_through_time(neuron: str) -> None:
    """beta = 0.5, theta = 1, rectangle surrogate (1 within 1/2 of the threshold), L = s_3.

    x = (0.4, 0.2, 0.8): h = 0.4, 0.4, 1.0; the first two steps are outside the surrogate's
    window and do not fire, so du_t/dh_t = 1 and m stays 0 (CLIF is Leaky there), and
    dL/dh_3 = g(0) = 1. Hence dL/dx_t = beta^(3 - t) = 0.25, 0.5, 1 for both neurons.
    """
    model = _LastSpike(lh.make_layer(neuron, 1, 0.5))
    x = torch.tensor([[0.4, 0.2, 0.8]]).unsqueeze(-1)
    norms = lh.input_gradient_norms(model, x, torch.tensor([0]), loss_fn=_first_logit)
    assert norms.tolist() == pytest.approx([0.25, 0.5, 1.0], abs=1e-6)
    # two identical samples: the norm over the batch is sqrt(2) times one sample's
    x2 = torch.cat([x, x])
    assert lh.input_gradient_norms(model, x2, torch.tensor([0, 0]), loss_fn=_first_logit).tolist() == pytest.approx(
        [0.25 * math.sqrt(2), 0.5 * math.sqrt(2), math.sqrt(2)], abs=1e-6)


def test_a_step_in_the_window_cuts_leakys_gradient_but_not_clifs() -> None:
    """x = (1.2, 0.2, 0.8): step 1 fires inside the window. Leaky: du_1/dh_1 = 1 - theta g = 0, so
    nothing reaches x_1; CLIF's reset also depends on sigmoid(m_1), which keeps a path open."""
    x = torch.tensor([[1.2, 0.2, 0.8]]).unsqueeze(-1)
    grads = {n: lh.input_gradient_norms(_LastSpike(lh.make_layer(n, 1, 0.5)), x, torch.tensor([0]),
                                        loss_fn=_first_logit) for n in ("leaky", "clif")}
    assert grads["leaky"][0] == 0 and grads["clif"][0] > 0


def test_input_gradient_norms_use_eval_mode_and_restore_it() -> None:
    task = tasks.delayed_cue(5, n_train=32, n_test=8)
    net = lh._build_model(task, "clif", seed=0, hidden=8, beta=0.9)
    lh.calibrate_batchnorm(net, task.x_train)
    assert net.bn1.num_batches_tracked > 0 and not torch.allclose(net.bn1.running_var, torch.ones(8))
    net.train()
    before = net.bn1.running_mean.clone()
    norms = lh.input_gradient_norms(net, task.x_test, task.y_test)
    assert net.training and torch.equal(net.bn1.running_mean, before)  # eval inside: stats untouched
    assert norms.shape == (task.T,) and torch.isfinite(norms).all()


# --- the command ---------------------------------------------------------------------------------
def test_quick_run_writes_valid_json_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "lh.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "long_horizon.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert not out.with_name("lh.partial.json").exists()
    assert {"date", "command", "machine", "wall_s", "config", "summary", "cells", "gradient"} <= set(result)
    assert result["config"]["quick"] is True and result["machine"]["cores"] >= 1
    assert len(result["cells"]) == 2 * len(lh.NEURONS) * 2  # tasks x neurons x seeds
    for cell in result["cells"]:
        assert 0.0 <= cell["test_acc"] <= 1.0 and cell["train_cpu_s"] >= 0 and cell["updates"] == 2
        assert 0.0 <= cell["rate1"] <= 1.0 and 0.0 <= cell["rate2"] <= 1.0
    assert len(result["summary"]) == 2 * len(lh.NEURONS)
    for row in result["summary"]:
        group = [c["test_acc"] for c in result["cells"] if (c["task"], c["neuron"]) == (row["task"], row["neuron"])]
        assert row["seeds"] == 2 and row["acc_mean"] == pytest.approx(sum(group) / 2, abs=1e-6)
        assert row["acc_min"] - 1e-6 <= row["acc_mean"] <= row["acc_max"] + 1e-6  # the mean is rounded
    grad = result["gradient"]
    assert grad["task"] == "cue-d20" and grad["T"] == 86
    kinds = {(c["neuron"], c["beta"], c["stage"]) for c in grad["curves"]}
    for neuron in lh.NEURONS:
        assert {(neuron, 0.95, "init"), (neuron, 0.95, "trained"), (neuron, 0.5, "init")} <= kinds
    assert all(len(c["norms"]) == 86 and min(c["norms"]) >= 0 for c in grad["curves"])
    assert "clif" in proc.stdout and "wrote" in proc.stdout

    figures = tmp_path / "figures"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "long_horizon.py"), "--plot", "--out", str(out),
                           "--figures", str(figures)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("accuracy.png", "gradient.png"):
        assert (figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_committed_results_account_for_the_whole_grid() -> None:
    """Every planned run of the committed study either finished (in ``cells``) or is listed in ``missing``."""
    path = ROOT / "benchmarks" / "results" / "long_horizon.json"
    if not path.exists():
        pytest.skip("no committed study yet")
    result = json.loads(path.read_text())
    assert result["config"]["quick"] is False and result["config"]["seeds"] >= 3
    args = lh.parse_args([])
    planned = {(j["task"], j["beta"], j["neuron"], j["seed"]) for j in lh._jobs(args, list(lh.TASKS))
               if j["task"] not in result["unavailable"]}
    done = [(c["task"], c["beta"], c["neuron"], c["seed"]) for c in result["cells"]]
    missing = [(m["task"], m["beta"], m["neuron"], m["seed"]) for m in result.get("missing", [])]
    assert len(done) == len(set(done)), "a run is in the results twice"
    assert set(done) | set(missing) == planned and not set(done) & set(missing)
    horizons = {c["T"] for c in result["cells"]}
    assert max(horizons) >= 1000 and {40, 160, 640} <= horizons
    for row in result["summary"]:
        group = [c for c in result["cells"] if (c["task"], c["beta"], c["neuron"]) == (row["task"], row["beta"],
                                                                                       row["neuron"])]
        assert row["seeds"] == len(group) and row["acc_min"] - 1e-6 <= row["acc_mean"] <= row["acc_max"] + 1e-6  # the mean is rounded
