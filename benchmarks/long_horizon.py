r"""Long-horizon study: CLIF against snnTorch's Leaky on sequences of 29 to 1066 steps, feed-forward and recurrent.

One command runs it all on the CPU (under an hour on 2 cores) and writes
``benchmarks/results/long_horizon.json``; ``--plot`` draws the figures of the docs' *Long
sequences* page from that file::

    python benchmarks/long_horizon.py                 # the study (3 seeds per cell)
    python benchmarks/long_horizon.py --quick --out /tmp/lh.json   # a smoke run, seconds
    python benchmarks/long_horizon.py --plot          # figures into docs/_static/long_horizon/

Tasks (``long_horizon_tasks.py``, nothing downloaded): sklearn's digits pixel by pixel
(T = 64, raster and permuted order), MNIST-1D value by value (T = 40) and stretched
(T = 160, 640), a delayed-cue evidence-accumulation task (delay 50, 200, 1000 steps;
T = 116, 266, 1066) and UCI's Japanese Vowels (12 channels, T = 29) when ``sktime`` is
installed.

Network, the same for every neuron: input Linear, BatchNorm, spiking layer (H = 64
neurons), Linear, BatchNorm, spiking layer (H), and a Linear read-out of the second layer's
spike rate over the task's final ``window`` steps:

.. math:: \text{logits} = W_o\,\frac{1}{W}\sum_{t=T-W+1}^{T} s^{(2)}_t + b_o

Neurons, all with the same :math:`\beta`, :math:`\theta = 1`, the rectangle surrogate of
width 1, soft reset in the same step, nothing detached:

========== ==============================================================================
clif       :class:`snntorch_clif.CLIF`, multi-step (one fused call per layer)
clif-lb    CLIF with a learnable per-neuron :math:`\beta`
leaky      ``snn.Leaky(reset_mechanism="subtract", reset_delay=False)`` in a step loop
leaky-lb   the same Leaky with a learnable per-neuron :math:`\beta`
rclif      first layer :class:`snntorch_clif.RCLIF` (all-to-all spike feedback), second CLIF
rleaky     first layer ``snn.RLeaky`` (same feedback, same reset), second Leaky
========== ==============================================================================

:math:`\beta = 0.95` (:math:`\tau = 20` steps); a task stretched :math:`k` times uses
:math:`\beta^{1/k}` (:func:`cell_beta`). MNIST-1D (T = 40) and the 50-step delay also run at
the paper's :math:`\beta = 0.5` (:math:`\tau = 2`) with CLIF, Leaky, RCLIF and RLeaky.
Every cell trains with the same seeds (same initial weights, same batches): Adam, cosine
schedule, gradient norm clipped at 1, cross-entropy on the read-out, the number of updates
of :data:`PLAN` (the same for every horizon of a task family). On the longest delayed-cue task it also measures the gradient reaching the
input at each step, :math:`\lVert \partial L / \partial x_t \rVert`, before and after training.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import snntorch as snn
import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from long_horizon_tasks import (  # noqa: E402
    SequenceTask,
    TaskUnavailable,
    delayed_cue,
    japanese_vowels,
    mnist1d_sequence,
    sequential_digits,
)

from snntorch_clif import CLIF, RCLIF, surrogate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "long_horizon.json"
DEFAULT_FIGURES = ROOT / "docs" / "_static" / "long_horizon"

NEURONS = ("clif", "clif-lb", "leaky", "leaky-lb", "rclif", "rleaky")
LABELS = {
    "clif": "CLIF",
    "clif-lb": "CLIF, learned β",
    "leaky": "Leaky",
    "leaky-lb": "Leaky, learned β",
    "rclif": "RCLIF",
    "rleaky": "RLeaky",
}
RECURRENT = {"rclif": "clif", "rleaky": "leaky"}  # the recurrent first layer's feed-forward second layer

# task -> training plan: (Adam updates, batch size). Every horizon of a family gets the same
# number of updates, so the horizon is what changes along a family. Sized for under an hour of
# CPU time on 2 cores (the long cells dominate: T x updates).
PLAN = {
    "digits-seq": (64, 128),
    "digits-perm": (64, 128),
    "mnist1d": (32, 128),
    "mnist1d-x4": (32, 128),
    "mnist1d-x16": (32, 128),
    "cue-d50": (32, 128),
    "cue-d200": (32, 128),
    "cue-d1000": (32, 128),
    "vowels": (120, 32),
}
TASKS = tuple(PLAN)
GRADIENT_TASK = "cue-d1000"
BETA = 0.95  # tau = 20 steps; at the paper's tau = 2 nothing is carried past a few steps (the PAPER_TAU cells)
PAPER_BETA = 0.5
PAPER_TAU_TASKS = ("mnist1d", "cue-d50")
PAPER_TAU_NEURONS = ("clif", "leaky", "rclif", "rleaky")


# --- tasks --------------------------------------------------------------------------------
def build_task(name: str, quick: bool = False) -> SequenceTask:
    """The task called ``name`` (one of :data:`TASKS`, or ``cue-d<delay>``); ``quick`` keeps a small subset.

    Raises :class:`~long_horizon_tasks.TaskUnavailable` where the data cannot be had offline.

    Example::

        >>> build_task("cue-d50", quick=True).x_train.shape[1]
        116
    """
    if name in ("digits-seq", "digits-perm"):
        task = sequential_digits(permuted=name == "digits-perm")
    elif name.startswith("mnist1d"):
        task = mnist1d_sequence(stretch=_stretch(name, "mnist1d"))
    elif name.startswith("vowels"):
        task = japanese_vowels(stretch=_stretch(name, "vowels"))
    elif name.startswith("cue-d"):
        delay = int(name[len("cue-d"):])
        task = delayed_cue(delay, n_train=128, n_test=64) if quick else delayed_cue(delay)
    else:
        raise ValueError(f"unknown task {name!r}; choose from {TASKS} or cue-d<delay>")
    if quick:
        task.x_train, task.y_train = task.x_train[:128], task.y_train[:128]
        task.x_test, task.y_test = task.x_test[:64], task.y_test[:64]
    return task


def cell_beta(task: str, beta: float) -> float:
    r"""The membrane decay a task's cell uses: ``beta``, or :math:`\beta^{1/k}` for a task stretched ``k`` times.

    Holding each value for :math:`k` steps is the same signal sampled :math:`k` times finer;
    :math:`\beta^{1/k}` keeps the membrane's time constant the same in units of the signal
    (:math:`\tau = 1/(1-\beta)` steps becomes about :math:`k\tau`), so the forward dynamics barely
    change and only the number of steps a gradient must cross grows.

    Example::

        >>> round(cell_beta("mnist1d-x4", 0.95), 4), cell_beta("cue-d200", 0.95)
        (0.9873, 0.95)
    """
    for base in ("mnist1d", "vowels"):
        if task.startswith(base):
            return beta ** (1.0 / _stretch(task, base))
    return beta


def task_unavailable(name: str) -> Optional[str]:
    """Why task ``name`` cannot run on this machine (a package it needs is missing), or ``None``.

    Example::

        >>> task_unavailable("cue-d50") is None
        True
    """
    if name.startswith("vowels") and importlib.util.find_spec("sktime") is None:
        try:
            japanese_vowels()
        except TaskUnavailable as err:
            return str(err)
    return None


def _stretch(name: str, base: str) -> int:
    rest = name[len(base):]
    if not rest:
        return 1
    if not rest.startswith("-x") or not rest[2:].isdigit():
        raise ValueError(f"unknown task {name!r}: expected {base} or {base}-x<k>")
    return int(rest[2:])


# --- spiking layers, all [T, batch, H] currents -> [T, batch, H] spikes ----------------------
def _beta(beta: float, hidden: int, learn: bool) -> Any:
    return torch.full((hidden,), beta) if learn else beta


class ClifLayer(nn.Module):
    """CLIF over a whole sequence in one multi-step (fused) call, from rest."""

    def __init__(self, hidden: int, beta: float, learn_beta: bool = False) -> None:
        super().__init__()
        self.neuron = CLIF(beta=_beta(beta, hidden, learn_beta), learn_beta=learn_beta, threshold=1.0,
                           spike_grad=surrogate.rectangle(alpha=1.0), reset_mechanism="subtract", step_mode="multi")

    def forward(self, current: Tensor) -> Tensor:
        """Spikes ``[T, batch, H]``."""
        comp, mem = self.neuron.reset_mem()
        spk, _, _ = self.neuron(current, comp, mem)
        return spk


class LeakyLayer(nn.Module):
    """``snn.Leaky`` (same-step soft reset, nothing detached) in a Python step loop, from rest."""

    def __init__(self, hidden: int, beta: float, learn_beta: bool = False) -> None:
        super().__init__()
        self.neuron = snn.Leaky(beta=_beta(beta, hidden, learn_beta), learn_beta=learn_beta, threshold=1.0,
                                spike_grad=surrogate.rectangle(alpha=1.0), reset_mechanism="subtract",
                                reset_delay=False)

    def forward(self, current: Tensor) -> Tensor:
        """Spikes ``[T, batch, H]``."""
        mem = torch.zeros_like(current[0])
        spikes = []
        for x in current.unbind(0):
            spk, mem = self.neuron(x, mem)
            spikes.append(spk)
        return torch.stack(spikes)


class RecurrentClifLayer(nn.Module):
    r"""RCLIF with all-to-all feedback, :math:`h_t = \beta u_{t-1} + x_t + W s_{t-1} + b`, step by step."""

    def __init__(self, hidden: int, beta: float) -> None:
        super().__init__()
        self.neuron = RCLIF(beta=beta, linear_features=hidden, threshold=1.0, spike_grad=surrogate.rectangle(alpha=1.0),
                            reset_mechanism="subtract")

    def forward(self, current: Tensor) -> Tensor:
        """Spikes ``[T, batch, H]``."""
        spk, comp, mem = self.neuron.reset_mem()
        spikes = []
        for x in current.unbind(0):
            spk, comp, mem = self.neuron(x, spk, comp, mem)
            spikes.append(spk)
        return torch.stack(spikes)


class RecurrentLeakyLayer(nn.Module):
    """``snn.RLeaky`` with all-to-all feedback, the same reset as :class:`LeakyLayer`, step by step."""

    def __init__(self, hidden: int, beta: float) -> None:
        super().__init__()
        self.neuron = snn.RLeaky(beta=beta, linear_features=hidden, threshold=1.0,
                                 spike_grad=surrogate.rectangle(alpha=1.0), reset_mechanism="subtract",
                                 reset_delay=False)

    def forward(self, current: Tensor) -> Tensor:
        """Spikes ``[T, batch, H]``."""
        spk = mem = torch.zeros_like(current[0])
        spikes = []
        for x in current.unbind(0):
            spk, mem = self.neuron(x, spk, mem)
            spikes.append(spk)
        return torch.stack(spikes)


def make_layer(neuron: str, hidden: int, beta: float) -> nn.Module:
    """The spiking layer for ``neuron`` (one of :data:`NEURONS`; for ``rclif``/``rleaky`` the recurrent one).

    Example::

        >>> make_layer("leaky", 4, 0.5)(torch.rand(3, 2, 4)).shape
        torch.Size([3, 2, 4])
    """
    if neuron == "clif":
        return ClifLayer(hidden, beta)
    if neuron == "clif-lb":
        return ClifLayer(hidden, beta, learn_beta=True)
    if neuron == "leaky":
        return LeakyLayer(hidden, beta)
    if neuron == "leaky-lb":
        return LeakyLayer(hidden, beta, learn_beta=True)
    if neuron == "rclif":
        return RecurrentClifLayer(hidden, beta)
    if neuron == "rleaky":
        return RecurrentLeakyLayer(hidden, beta)
    raise ValueError(f"neuron must be one of {NEURONS}, got {neuron!r}")


class SequenceNet(nn.Module):
    r"""Two spiking layers and a rate read-out over the final ``window`` steps; input ``[batch, T, C]``.

    .. math::
        s^{(1)} = \mathrm{layer}_1(\mathrm{BN}(W_1 x)),\quad
        s^{(2)} = \mathrm{layer}_2(\mathrm{BN}(W_2 s^{(1)})),\quad
        \text{logits} = W_o\,\overline{s^{(2)}}_{\,T-W+1..T} + b_o

    BatchNorm normalises each channel over batch and time. For a recurrent ``neuron`` the
    first layer has spike feedback and the second is its feed-forward kind.

    Example::

        >>> net = SequenceNet(3, 2, "rclif", hidden=8, window=5)
        >>> net(torch.rand(4, 20, 3)).shape
        torch.Size([4, 2])
    """

    def __init__(self, channels: int, classes: int, neuron: str, hidden: int = 64, beta: float = 0.5,
                 window: int = 1) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be at least one step, got {window}")
        self.window = window
        self.fc1, self.bn1 = nn.Linear(channels, hidden), nn.BatchNorm1d(hidden)
        self.layer1 = make_layer(neuron, hidden, beta)
        self.fc2, self.bn2 = nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden)
        self.layer2 = make_layer(RECURRENT.get(neuron, neuron), hidden, beta)
        self.readout = nn.Linear(hidden, classes)

    @staticmethod
    def _dense(fc: nn.Linear, bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
        return bn(fc(x).flatten(0, 1)).unflatten(0, x.shape[:2])

    def spikes(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Both layers' spikes ``[T, batch, H]`` for input ``x`` ``[batch, T, C]``."""
        s1 = self.layer1(self._dense(self.fc1, self.bn1, x.transpose(0, 1)))
        s2 = self.layer2(self._dense(self.fc2, self.bn2, s1))
        return s1, s2

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[batch, classes]``."""
        _, s2 = self.spikes(x)
        return self.readout(s2[-self.window:].mean(0))


# --- training -------------------------------------------------------------------------------
def _batches(n: int, batch: int, generator: Optional[torch.Generator]) -> list[Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(order.split(batch))


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch: int = 256) -> float:
    """Accuracy (fraction) of ``model`` on ``(x, y)``, in eval mode.

    Example::

        >>> net = SequenceNet(1, 3, "clif", hidden=4)
        >>> 0.0 <= evaluate(net, torch.rand(5, 6, 1), torch.tensor([0, 1, 2, 0, 1])) <= 1.0
        True
    """
    model.eval()
    correct = 0
    for idx in _batches(len(y), batch, None):
        correct += int((model(x[idx]).argmax(1) == y[idx]).sum())
    return correct / len(y)


def train(model: nn.Module, task: SequenceTask, updates: int, batch: int, seed: int, lr: float = 5e-3,
          clip: float = 1.0) -> dict:
    """Train ``model`` on ``task`` for ``updates`` Adam steps (cosine schedule, clipped gradients).

    Batches are drawn without replacement, epoch after epoch, in an order set by ``seed``.
    Returns ``test_acc``, ``train_acc`` and ``loss`` (over the last epoch's worth of updates),
    ``train_s`` (wall seconds of training) and ``train_cpu_s`` (this process's CPU seconds,
    which other jobs on the machine disturb less).

    Example::

        >>> from long_horizon_tasks import delayed_cue
        >>> task = delayed_cue(5, n_train=16, n_test=8)
        >>> net = SequenceNet(task.channels, 2, "clif", hidden=8, window=task.window)
        >>> sorted(train(net, task, updates=3, batch=8, seed=0))
        ['loss', 'test_acc', 'train_acc', 'train_cpu_s', 'train_s']
    """
    gen = torch.Generator().manual_seed(seed)
    per_epoch = math.ceil(len(task.y_train) / batch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, updates))
    wall, cpu = time.perf_counter(), time.process_time()
    recent: list[tuple[float, int, int]] = []  # (loss sum, correct, samples) of the last per_epoch updates
    model.train()
    done = 0
    while done < updates:
        for idx in _batches(len(task.y_train), batch, gen):
            if done == updates:
                break
            x, y = task.x_train[idx], task.y_train[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
            done += 1
            recent = (recent + [(float(loss.detach()) * len(y), int((logits.detach().argmax(1) == y).sum()),
                                 len(y))])[-per_epoch:]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    seen = max(1, sum(r[2] for r in recent))
    return {
        "test_acc": evaluate(model, task.x_test, task.y_test),
        "train_acc": sum(r[1] for r in recent) / seen,
        "loss": sum(r[0] for r in recent) / seen,
        "train_s": wall,
        "train_cpu_s": cpu,
    }


# --- the gradient over time -------------------------------------------------------------------
def input_gradient_norms(model: nn.Module, x: Tensor, y: Tensor,
                         loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> Tensor:
    r"""The gradient of the batch loss reaching the input at each step: :math:`\lVert \partial L / \partial x_t \rVert_2`.

    ``x`` is ``[batch, T, C]``; the norm runs over batch and channels, giving ``[T]``. The
    model runs in eval mode, so BatchNorm uses its running statistics and adds no path
    between steps: what reaches :math:`x_t` from a read-out at the end went through the
    neurons' states (and recurrent connections).

    .. math:: g_t = \Big(\sum_{b, c} \big(\partial L / \partial x_{b,t,c}\big)^2\Big)^{1/2},
              \qquad L = \frac{1}{B} \sum_b \mathrm{CE}(f(x_b), y_b)

    Example::

        >>> net = SequenceNet(1, 2, "clif", hidden=4, window=1)
        >>> input_gradient_norms(net, torch.rand(3, 7, 1), torch.tensor([0, 1, 0])).shape
        torch.Size([7])
    """
    was_training = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(model(x), y), x)
    finally:
        model.train(was_training)
    return grad.transpose(0, 1).flatten(1).norm(dim=1)


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, x: Tensor, batch: int = 128) -> None:
    """Set every BatchNorm's running statistics to their average over ``x`` (an untrained model's are 0 and 1).

    Example::

        >>> net = SequenceNet(1, 2, "leaky", hidden=4)
        >>> calibrate_batchnorm(net, torch.rand(8, 5, 1))
        >>> float(net.bn1.running_var.mean()) != 1.0
        True
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calls below
    model.train()
    for idx in _batches(len(x), batch, None):
        model(x[idx])
    for m, (momentum, _) in zip(norms, saved):
        m.momentum = momentum
    model.eval()


# --- the study ----------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)


def _build_model(task: SequenceTask, neuron: str, seed: int, hidden: int, beta: float) -> SequenceNet:
    _seed_everything(seed)  # the same Linear/BatchNorm initial weights for every neuron
    return SequenceNet(task.channels, task.num_classes, neuron, hidden=hidden, beta=beta, window=task.window)


_TASK_CACHE: dict[tuple[str, bool], SequenceTask] = {}


def _task(name: str, quick: bool) -> SequenceTask:
    key = (name, quick)
    if key not in _TASK_CACHE:
        _TASK_CACHE[key] = build_task(name, quick)
    return _TASK_CACHE[key]


def _rounded(values: Tensor) -> list[float]:
    return [float(f"{v:.4g}") for v in values.tolist()]


def run_cell(job: dict) -> dict:
    """Train one (task, beta, neuron, seed) and return its record (a JSON-able dict).

    ``job``: ``task``, ``neuron``, ``seed``, ``beta`` (the cell's, see :func:`cell_beta`),
    ``updates``, ``batch``, ``hidden``, ``lr``, ``quick``, ``threads``, and optionally
    ``gradient_samples``: then the record also holds :func:`input_gradient_norms` on that many
    test samples at initialisation (``grad_init``, BatchNorm calibrated on training data)
    and after training (``grad_trained``).

    Example::

        >>> rec = run_cell(dict(task="cue-d5", neuron="leaky", seed=0, beta=0.9, updates=2, batch=64, hidden=4,
        ...                     lr=5e-3, quick=True, threads=1))
        >>> rec["neuron"], 0.0 <= rec["test_acc"] <= 1.0
        ('leaky', True)
    """
    torch.set_num_threads(job.get("threads", 1))
    task = _task(job["task"], job["quick"])
    model = _build_model(task, job["neuron"], job["seed"], job["hidden"], job["beta"])
    record = {"task": task.name, "T": task.T, "beta": job["beta"], "neuron": job["neuron"], "seed": job["seed"],
              "updates": job["updates"], "batch": job["batch"], "lr": job["lr"]}
    samples = job.get("gradient_samples")
    if samples:
        x, y = task.x_test[:samples], task.y_test[:samples]
        calibrate_batchnorm(model, task.x_train[: 4 * samples])
        record["grad_init"] = _rounded(input_gradient_norms(model, x, y))
    record.update(train(model, task, job["updates"], job["batch"], job["seed"], lr=job["lr"]))
    if samples:
        record["grad_trained"] = _rounded(input_gradient_norms(model, x, y))
    with torch.no_grad():  # how much the layers fire on the test set (a silent layer explains a chance score)
        model.eval()
        s1, s2 = model.spikes(task.x_test[:256])
    record["rate1"], record["rate2"] = round(float(s1.mean()), 4), round(float(s2.mean()), 4)
    return record


def gradient_at_init(task: SequenceTask, neuron: str, beta: float, hidden: int, samples: int, seed: int = 0) -> dict:
    """:func:`input_gradient_norms` of an untrained network (BatchNorm calibrated), as a JSON-able dict.

    Example::

        >>> from long_horizon_tasks import delayed_cue
        >>> len(gradient_at_init(delayed_cue(3, n_train=8, n_test=4), "clif", 0.5, 4, 4)["norms"])  # T = 56 + 3 + 10
        69
    """
    model = _build_model(task, neuron, seed, hidden, beta)
    calibrate_batchnorm(model, task.x_train[: 4 * samples])
    norms = input_gradient_norms(model, task.x_test[:samples], task.y_test[:samples])
    return {"neuron": neuron, "beta": beta, "stage": "init", "norms": _rounded(norms)}


def _cost(job: dict) -> float:
    """A rough relative cost, for scheduling the longest jobs first."""
    per_step = {"clif": 1.0, "clif-lb": 1.0, "rclif": 2.0, "leaky": 5.0, "leaky-lb": 5.0, "rleaky": 6.0}
    task = job["task"]
    T = {"digits-seq": 64, "digits-perm": 64, "mnist1d": 40, "vowels": 29}.get(task)
    if T is None:
        T = 40 * _stretch(task, "mnist1d") if task.startswith("mnist1d") else (
            29 * _stretch(task, "vowels") if task.startswith("vowels") else 66 + int(task[len("cue-d"):]))
    return per_step[job["neuron"]] * T * job["updates"] * job["batch"] ** 0.5


def summarise(cells: list[dict]) -> list[dict]:
    """Mean, standard deviation (over seeds; 0 for one seed) and min/max of each (task, beta, neuron) cell.

    Example::

        >>> summarise([{"task": "a", "T": 5, "beta": 0.9, "neuron": "clif", "test_acc": 0.5, "train_s": 1.0,
        ...             "train_cpu_s": 1.0, "updates": 3},
        ...            {"task": "a", "T": 5, "beta": 0.9, "neuron": "clif", "test_acc": 0.7, "train_s": 3.0,
        ...             "train_cpu_s": 2.0, "updates": 3}])[0]["acc_mean"]
        0.6
    """
    groups: dict[tuple[str, float, str], list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["task"], cell["beta"], cell["neuron"]), []).append(cell)
    rows = []
    for (task, beta, neuron), group in groups.items():
        accs = [c["test_acc"] for c in group]
        rows.append({
            "task": task, "T": group[0]["T"], "beta": beta, "neuron": neuron, "seeds": len(group),
            "updates": group[0]["updates"],
            "acc_mean": round(statistics.fmean(accs), 6),
            "acc_std": round(statistics.stdev(accs), 6) if len(accs) > 1 else 0.0,
            "acc_min": min(accs), "acc_max": max(accs),
            "train_s_mean": round(statistics.fmean(c["train_s"] for c in group), 3),
            "train_cpu_s_mean": round(statistics.fmean(c["train_cpu_s"] for c in group), 3),
        })
    order = {t: i for i, t in enumerate(TASKS)}
    rows.sort(key=lambda r: (-r["beta"] if r["beta"] != PAPER_BETA else 0, order.get(r["task"], len(order)), r["T"],
                             r["task"], NEURONS.index(r["neuron"])))
    return rows


def format_table(summary: list[dict], seconds: str = "train_cpu_s_mean") -> str:
    """A plain-text table: one row per (task, beta), test accuracy % (mean +- std over seeds) per neuron,
    then each neuron's training seconds per run (``seconds``: CPU or wall).

    Example::

        >>> print(format_table([{"task": "a", "T": 5, "beta": 0.9, "neuron": "clif", "seeds": 1, "acc_mean": 0.5,
        ...                      "acc_std": 0.0, "train_cpu_s_mean": 2.0}]).splitlines()[0])
        task            T   beta |        clif |     s clif
    """
    neurons = [n for n in NEURONS if any(r["neuron"] == n for r in summary)]
    by = {(r["task"], r["beta"], r["neuron"]): r for r in summary}
    rows = list(dict.fromkeys((r["task"], r["T"], r["beta"]) for r in summary))
    head = f"{'task':<12} {'T':>4} {'beta':>6} | " + " | ".join(f"{n:>11}" for n in neurons)
    head += " | " + " ".join(f"{'s ' + n:>10}" for n in neurons)
    lines = [head, "-" * len(head)]
    for task, T, beta in rows:
        accs, secs = [], []
        for n in neurons:
            r = by.get((task, beta, n))
            accs.append(f"{100 * r['acc_mean']:5.1f} +- {100 * r['acc_std']:3.1f}" if r else "-")
            secs.append(f"{r[seconds]:10.1f}" if r else f"{'-':>10}")
        lines.append(f"{task:<12} {T:>4} {beta:>6.4g} | " + " | ".join(f"{a:>11}" for a in accs) + " | "
                     + " ".join(secs))
    return "\n".join(lines)


def machine_info() -> dict:
    """The machine a run used: CPU model, core count, load average, torch and snnTorch versions."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "snntorch": snn.__version__,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _jobs(args: argparse.Namespace, tasks: Sequence[str]) -> list[dict]:
    """Every (task, beta, neuron, seed) to train: the main grid at ``args.beta``, and the paper's tau = 2 cells."""
    grid = [(task, cell_beta(task, args.beta), neuron) for task in tasks for neuron in args.neurons]
    grid += [(task, PAPER_BETA, neuron) for task in args.paper_tau_tasks if task in tasks
             for neuron in PAPER_TAU_NEURONS if neuron in args.neurons]
    jobs = []
    for task, beta, neuron in grid:
        updates, batch = (2, 64) if args.quick else PLAN.get(task, (40, 128))
        if args.updates is not None:
            updates = args.updates
        for seed in range(args.seeds):
            job = dict(task=task, neuron=neuron, seed=seed, beta=beta, updates=updates, batch=batch, hidden=args.hidden,
                       lr=args.lr, quick=args.quick, threads=1)
            if task == args.gradient_task and seed == 0 and beta == cell_beta(task, args.beta):
                job["gradient_samples"] = args.gradient_samples
            jobs.append(job)
    return jobs


def _cells_of_result(result: dict) -> dict:
    """The runs of a written study, with the seed-0 gradient curves put back on their runs (to resume it)."""
    cells = [dict(c) for c in result["cells"]]
    grad = result.get("gradient") or {}
    for curve in grad.get("curves", []):
        for c in cells:
            if (c["task"], c["neuron"], c["beta"], c["seed"]) == (grad["task"], curve["neuron"], curve["beta"], 0):
                c["grad_" + curve["stage"]] = curve["norms"]
    return {"cells": cells, "wall_s": result.get("wall_s", 0.0)}


def run_study(args: argparse.Namespace) -> dict:
    """Run every cell (in ``args.workers`` processes, one thread each), print the table, return the result dict."""
    tasks, unavailable = [], {}
    for task in args.tasks:
        reason = task_unavailable(task)
        if reason:
            unavailable[task] = reason
            print(f"skipping {task}: {reason}", flush=True)
        else:
            tasks.append(task)
    # longest first keeps every worker busy to the end; --short-first finishes the most cells early
    # (the learned-beta variants after the others)
    jobs = sorted(_jobs(args, tasks), key=lambda j: (j["neuron"].endswith("-lb"), _cost(j)) if args.short_first
                  else (False, -_cost(j)))
    started = time.perf_counter()
    machine = machine_info()
    cells: list[dict] = []
    partial = args.out.with_name(args.out.stem + ".partial.json")  # every finished run, as it finishes
    earlier_wall = 0.0
    if (args.resume or args.finish) and (partial.exists() or args.out.exists()):
        saved = json.loads(partial.read_text()) if partial.exists() else _cells_of_result(json.loads(args.out.read_text()))
        cells, earlier_wall = saved["cells"], saved.get("wall_s") or 0.0
        finished = {(c["task"], c["beta"], c["neuron"], c["seed"]) for c in cells}
        jobs = [j for j in jobs if (j["task"], j["beta"], j["neuron"], j["seed"]) not in finished]
        print(f"resuming: {len(cells)} runs from {partial}, {len(jobs)} to go", flush=True)
    missing = [{k: j[k] for k in ("task", "beta", "neuron", "seed")} for j in jobs] if args.finish else []
    if args.finish:
        jobs = []

    def done(record: dict) -> None:
        cells.append(record)
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"cells": cells, "wall_s": earlier_wall + time.perf_counter() - started})
                           + "\n")
        print(f"[{time.perf_counter() - started:7.1f} s] {record['task']:<11} T={record['T']:<5} "
              f"beta={record['beta']:<6.4g} {record['neuron']:<9} seed {record['seed']}: "
              f"test {100 * record['test_acc']:5.1f} %  train {record['train_s']:6.1f} s "
              f"(CPU {record['train_cpu_s']:6.1f} s)  rates {record['rate1']:.3f}/{record['rate2']:.3f}", flush=True)

    if args.workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.workers) as pool:
            for record in pool.imap_unordered(run_cell, jobs):
                done(record)
    else:
        torch.set_num_threads(1)
        for job in jobs:
            done(run_cell(job))

    gradient = None
    if args.gradient_task in tasks:  # the trained runs' curves, and untrained ones at the paper's tau = 2
        task = _task(args.gradient_task, args.quick)
        curves = [{"neuron": c["neuron"], "beta": c["beta"], "stage": stage, "test_acc": c["test_acc"],
                   "norms": c[key]}
                  for c in cells if "grad_init" in c for stage, key in (("init", "grad_init"), ("trained", "grad_trained"))]
        main_beta = cell_beta(args.gradient_task, args.beta)
        trained = {c["neuron"] for c in curves}
        # untrained curves at the main beta for neurons whose seed-0 run did not finish (--finish)
        curves += [gradient_at_init(task, neuron, main_beta, args.hidden, args.gradient_samples)
                   for neuron in args.neurons if neuron not in trained]
        curves += [gradient_at_init(task, neuron, PAPER_BETA, args.hidden, args.gradient_samples)
                   for neuron in args.neurons]
        gradient = {"task": task.name, "T": task.T, "window": task.window, "samples": args.gradient_samples,
                    "curves": curves}
    for c in cells:
        c.pop("grad_init", None)
        c.pop("grad_trained", None)
    partial.unlink(missing_ok=True)
    wall = earlier_wall + time.perf_counter() - started
    cpu_total = sum(c["train_cpu_s"] for c in cells)
    summary = summarise(cells)
    cells.sort(key=lambda c: (c["task"], -c["beta"], c["neuron"], c["seed"]))
    result = {
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/long_horizon.py " + " ".join(args.argv),
        "machine": {**machine, "load_average_end": [round(v, 2) for v in os.getloadavg()]
                    if hasattr(os, "getloadavg") else None, "workers": args.workers, "threads_per_worker": 1},
        "wall_s": None if args.finish else round(wall, 1),  # --finish: the runs' wall time is not known
        "train_cpu_s_total": round(cpu_total, 1),
        "config": {"hidden": args.hidden, "beta": args.beta, "paper_beta": PAPER_BETA,
                   "stretched_beta": "beta ** (1 / k) for a task stretched k times", "threshold": 1.0,
                   "surrogate": "rectangle(alpha=1)", "reset": "subtract, same step, nothing detached",
                   "lr": args.lr, "optimizer": "Adam, cosine schedule, gradient norm clipped at 1",
                   "readout": "Linear on the second layer's spike rate over the task's final window",
                   "seeds": args.seeds, "quick": args.quick,
                   "plan": {t: dict(zip(("updates", "batch"), (2, 64) if args.quick else PLAN.get(t, (40, 128))))
                            for t in tasks}},
        "unavailable": unavailable,
        "missing": missing,
        "summary": summary,
        "cells": cells,
        "gradient": gradient,
    }
    print()
    print(format_table(summary))
    print(f"\n{len(cells)} runs, {cpu_total / 60:.1f} min of training CPU time ({wall / 60:.1f} min wall in this call), "
          f"on {machine['cpu']} ({machine['cores']} cores; {args.workers} workers, 1 thread each); "
          f"load average at start {machine['load_average']}, at end {result['machine']['load_average_end']}")
    return result


# --- figures -------------------------------------------------------------------------------------
COLORS = {"clif": "tab:orange", "clif-lb": "tab:red", "leaky": "tab:blue", "leaky-lb": "tab:cyan",
          "rclif": "tab:brown", "rleaky": "tab:purple"}


def _family(task: str) -> str:
    return {"digits": "sequential digits", "mnist1d": "MNIST-1D", "cue": "delayed cue",
            "vowels": "Japanese Vowels"}[task.split("-")[0]]


def plot(result: dict, out_dir: Path) -> list[Path]:
    """Draw ``accuracy.png`` (accuracy against horizon, every seed shown) and ``gradient.png`` into ``out_dir``,
    and write the page's tables there (``*_table.txt``, :func:`rst_tables`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    main_beta = result["config"]["beta"]
    cells = [c for c in result["cells"] if c["beta"] != PAPER_BETA or main_beta == PAPER_BETA]
    families: dict[str, list[tuple[int, str]]] = {}
    for c in cells:
        entry = (c["T"], c["task"])
        if entry not in families.setdefault(_family(c["task"]), []):
            families[_family(c["task"])].append(entry)
    fig, axes = plt.subplots(1, len(families), figsize=(3.6 * len(families), 3.9), squeeze=False)
    for ax, (title, entries) in zip(axes[0], families.items()):
        entries.sort()
        xs = list(range(len(entries)))
        for k, neuron in enumerate(NEURONS):
            pts = [(i, c["test_acc"]) for i, (_, t) in enumerate(entries) for c in cells
                   if c["task"] == t and c["neuron"] == neuron]
            if not pts:
                continue
            offset = (k - 2.5) * 0.05
            have = [i for i in xs if any(j == i for j, _ in pts)]  # horizons with a finished run
            means = [statistics.fmean(a for j, a in pts if j == i) for i in have]
            ax.plot([i + offset for i in have], [100 * m for m in means], marker="o", markersize=4,
                    color=COLORS[neuron], label=LABELS[neuron], linestyle="--" if neuron.startswith("r") else "-")
            ax.scatter([i + offset for i, _ in pts], [100 * a for _, a in pts], color=COLORS[neuron], s=8, alpha=0.45)
        ax.set_xticks(xs, [f"{t}\nT={T}" for T, t in entries], fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%): mean line, dots = seeds")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    grad = result.get("gradient")
    if grad:
        panels = [("init", main_beta, f"untrained, beta = {main_beta:g}"),
                  ("trained", main_beta, f"trained, beta = {main_beta:g}"),
                  ("init", PAPER_BETA, f"untrained, beta = {PAPER_BETA:g} (paper's tau = 2)")]
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.9), sharey=True)
        for ax, (stage, beta, title) in zip(axes, panels):
            for curve in grad["curves"]:
                if curve["stage"] != stage or curve["beta"] != beta:
                    continue
                g = torch.tensor(curve["norms"])
                ax.semilogy(range(1, len(g) + 1), g.clamp_min(1e-30), color=COLORS[curve["neuron"]],
                            label=LABELS[curve["neuron"]], linestyle="--" if curve["neuron"].startswith("r") else "-",
                            linewidth=1.1)
            ax.axvspan(grad["T"] - grad["window"] + 1, grad["T"], color="0.85", zorder=0)
            ax.set_xlabel(f"input step t ({grad['task']}, T = {grad['T']})")
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3, which="both")
        axes[0].set_ylabel(r"$\|\partial L / \partial x_t\|$ (floored at 1e-30)")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "gradient.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    for name, text in rst_tables(result).items():
        path = out_dir / f"{name}_table.txt"  # not .rst: Sphinx would build it as a page
        path.write_text(text)
        written.append(path)
    return written


def _rst_table(header: list[str], rows: list[list[str]], caption: str, widths: Optional[list[int]] = None) -> str:
    lines = [f".. list-table:: {caption}", "   :header-rows: 1"]
    if widths:
        lines.append("   :widths: " + " ".join(str(w) for w in widths))
    lines.append("")
    for row in [header] + rows:
        lines.append("   * - " + row[0])
        lines += ["     - " + cell for cell in row[1:]]
    return "\n".join(lines) + "\n"


def rst_tables(result: dict) -> dict[str, str]:
    """The docs page's tables from a study's result: ``accuracy``, ``time`` and ``gradient`` (reStructuredText).

    In the accuracy table the best mean of each row is bold; ``time`` is training CPU
    seconds per run (mean over seeds).
    """
    summary = result["summary"]
    planned = result["config"]["seeds"]
    neurons = [n for n in NEURONS if any(r["neuron"] == n for r in summary)]
    by = {(r["task"], r["beta"], r["neuron"]): r for r in summary}
    rows_acc, rows_time = [], []
    for task, T, beta in dict.fromkeys((r["task"], r["T"], r["beta"]) for r in summary):
        cells = [by.get((task, beta, n)) for n in neurons]
        best = max(r["acc_mean"] for r in cells if r)
        acc = []
        for r in cells:
            if r is None:
                acc.append("—")  # a bare "-" would be a bullet list in reStructuredText
                continue
            mean = f"**{100 * r['acc_mean']:.1f}**" if r["acc_mean"] == best else f"{100 * r['acc_mean']:.1f}"
            spread = f" ± {100 * r['acc_std']:.1f}" if r["seeds"] > 1 else ""
            acc.append(mean + spread + ("" if r["seeds"] >= planned else f" ({r['seeds']} of {planned})"))
        updates = next(r["updates"] for r in cells if r)
        rows_acc.append([task, str(T), f"{beta:.4g}", str(updates)] + acc)
        rows_time.append([task, str(T)] + ["—" if r is None else f"{r['train_cpu_s_mean']:.1f}" for r in cells])
    missing = ("; (k of n): only k of the n seeds finished; —: no run finished" if result.get("missing") else "")
    tables = {
        "accuracy": _rst_table(["task", "T", "β", "updates"] + [LABELS[n] for n in neurons], rows_acc,
                               f"Test accuracy (%), mean ± standard deviation over {planned} seeds{missing}"),
        "time": _rst_table(["task", "T"] + [LABELS[n] for n in neurons], rows_time,
                           "Training time per run: CPU seconds, one thread, mean over seeds"),
    }
    grad = result.get("gradient")
    if grad:
        T = grad["T"]
        ks = [k for k in (0, 10, 50, 200, 500, T - 1) if k < T]
        rows = []
        for curve in sorted(grad["curves"], key=lambda c: (-c["beta"], c["stage"] != "init",
                                                          NEURONS.index(c["neuron"]))):
            rows.append([LABELS[curve["neuron"]], f"{curve['beta']:.4g}", curve["stage"]]
                        + [f"{curve['norms'][T - 1 - k]:.1e}" for k in ks])
        tables["gradient"] = _rst_table(["neuron", "β", "network"] + [f"t = {T - k}" for k in ks], rows,
                                        f"‖∂L/∂x_t‖ on {grad['task']} (T = {T}; the read-out averages the last "
                                        f"{grad['window']} steps), {grad['samples']} test samples")
    return tables


def gradient_table(result: dict, steps_before_end: Sequence[int] = (0, 10, 50, 200, 1000)) -> str:
    """The gradient curves' values at a few steps before the end, as a plain-text table.

    ``k`` steps before the end is input step :math:`t = T - k`.
    """
    grad = result.get("gradient")
    if not grad:
        return "(no gradient analysis in this run)"
    T = grad["T"]
    ks = [k for k in steps_before_end if k < T]
    head = f"{'neuron':<9} {'beta':>5} {'stage':<8} | " + " ".join(f"{'t=' + str(T - k):>9}" for k in ks)
    lines = [head, "-" * len(head)]
    for curve in grad["curves"]:
        vals = " ".join(f"{curve['norms'][T - 1 - k]:9.2e}" for k in ks)
        lines.append(f"{curve['neuron']:<9} {curve['beta']:>5.3g} {curve['stage']:<8} | {vals}")
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: two small tasks, 2 updates, 2 seeds, hidden 16")
    p.add_argument("--tasks", nargs="+", default=None, help=f"tasks (default: {' '.join(TASKS)})")
    p.add_argument("--neurons", nargs="+", default=list(NEURONS), choices=NEURONS)
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3; 2 with --quick)")
    p.add_argument("--updates", type=int, default=None, help="override every task's number of Adam updates")
    p.add_argument("--hidden", type=int, default=None, help="neurons per layer (default 64; 16 with --quick)")
    p.add_argument("--beta", type=float, default=BETA,
                   help=f"membrane decay of every neuron (default {BETA}); stretched tasks use beta ** (1/k)")
    p.add_argument("--paper-tau-tasks", nargs="*", default=None,
                   help=f"tasks also run at the paper's beta = {PAPER_BETA} with {', '.join(PAPER_TAU_NEURONS)} "
                        f"(default: {' '.join(PAPER_TAU_TASKS)}; none with --quick)")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam's learning rate (default 5e-3)")
    p.add_argument("--workers", type=int, default=None, help="processes, one thread each (default: 2; 1 with --quick)")
    p.add_argument("--gradient-task", default=None, help=f"task of the gradient analysis (default {GRADIENT_TASK})")
    p.add_argument("--gradient-samples", type=int, default=128)
    p.add_argument("--out", type=Path, default=DEFAULT_JSON, help="the JSON to write (read, with --plot)")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs of an interrupted study (<out>.partial.json, else --out) and run the rest")
    p.add_argument("--short-first", action="store_true",
                   help="run the cheapest runs first (learned beta last), so that most cells finish early on a busy machine")
    p.add_argument("--finish", action="store_true",
                   help="write --out from the runs an interrupted study saved, without running the rest "
                        "(the JSON lists them under 'missing')")
    p.add_argument("--plot", action="store_true", help="only draw the figures from --out into --figures")
    p.add_argument("--figures", type=Path, default=DEFAULT_FIGURES)
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse ``argv`` and fill the defaults that depend on ``--quick``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.tasks is None:
        args.tasks = ["digits-seq", "cue-d20"] if args.quick else list(TASKS)
    if args.paper_tau_tasks is None:
        args.paper_tau_tasks = [] if args.quick else list(PAPER_TAU_TASKS)
    if args.seeds is None:
        args.seeds = 2 if args.quick else 3
    if args.hidden is None:
        args.hidden = 16 if args.quick else 64
    if args.workers is None:
        args.workers = 1 if args.quick else 2
    if args.gradient_task is None:
        args.gradient_task = args.tasks[-1] if args.quick else GRADIENT_TASK
    if args.quick:
        args.gradient_samples = min(args.gradient_samples, 32)
    for value, name in ((args.seeds, "--seeds"), (args.hidden, "--hidden"), (args.workers, "--workers"),
                        (args.gradient_samples, "--gradient-samples")):
        if value < 1:
            raise SystemExit(f"{name} must be at least 1, got {value}")
    if not 0 <= args.beta <= 1:
        raise SystemExit(f"--beta must be in [0, 1], got {args.beta}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the study (or, with ``--plot``, only the figures) and write the JSON."""
    args = parse_args(argv)
    if args.plot:
        result = json.loads(args.out.read_text())
        for path in plot(result, args.figures):
            print(f"wrote {path}")
        print(format_table(result["summary"]))
        print()
        print(gradient_table(result))
        return result
    result = run_study(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    print()
    print(gradient_table(result))
    return result


if __name__ == "__main__":
    main()
