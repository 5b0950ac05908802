r"""snnTorch's own training recipes, at CPU sizes, for the swap matrix (``swap_matrix.py``).

Each recipe builds its network with ``snn.Leaky`` exactly as the snnTorch tutorial or
docstring it comes from writes it, passes it through one call, ``convert`` (the column of
the matrix: the identity, ``from_leaky(net, readout=None, spike_grad="paper")`` or
``from_leaky(net)``), and then runs the recipe's own forward and training code unchanged.
MNIST is replaced by sklearn's 8x8 digits upsampled to 28x28 (1437 train / 360 test
images, a fixed split), N-MNIST by the same digits turned into two-polarity event frames
(:func:`digit_events`), so nothing is downloaded.

=====================  ==================================================================
recipe                 snnTorch source
=====================  ==================================================================
``tutorial5``          ``docs/tutorials/tutorial_5.rst``: FC 784-1000-10, beta 0.95, CE on
                       the membrane at every step, Adam 5e-4; spike-count accuracy
``tutorial6``          ``tutorial_6.rst``: 12C5-MP2-64C5-MP2-FC10, fast_sigmoid(25), beta
                       0.5, ``ce_rate_loss``, Adam 1e-2
``tutorial7``          ``tutorial_7.rst``: 12C5-MP2-32C5-MP2-800FC10 on event frames, atan,
                       beta 0.5, ``mse_count_loss(0.8, 0.2)``, Adam 2e-2
``quickstart_conv``    ``examples/quickstart.ipynb``: 8C5-MP2-16C5-MP2-FC10, fast_sigmoid,
                       beta 0.9, ``mse_count_loss(0.8, 0.2)``, Adam 2e-3
``quickstart_fc``      the quickstart's FC 784-300-10 with a learnable per-neuron beta
``regression1``        ``tutorial_regression_1.rst``: 1-128-128-1, random per-neuron beta and
                       threshold, a leaky integrator read-out, MSE on the membrane
``population_10``,     ``tutorial_pop.rst``: FC 784-128-10 and 784-128-500 (a population
``population_500``     code), one time step, ``backprop.BPTT``, ``mse_count_loss(1, 0)``
``bptt``, ``tbptt``,   ``snntorch/backprop.py`` docstrings: FC 784-500-10, beta 0.9,
``rtrl``               ``mse_count_loss()``, Adam 5e-4, static input (``time_var=False``)
``ce_rate_loss``, ...  ``snntorch/functional/loss.py`` docstrings: each loss on the backprop
                       docstring's network, trained with tutorial 6's loop
=====================  ==================================================================

Every recipe function has the signature ``run(convert, seed, size, probe) -> dict`` and
returns its final metric, a curve of that metric over training iterations, the training
loss per iteration and extra numbers; ``probe`` (a :class:`Probe`) records firing rates,
silent-neuron fractions and gradient norms per layer at a few iterations.

Example::

    >>> from swap_recipes import COLUMNS, RECIPES, Probe      # with benchmarks/ on sys.path
    >>> recipe = RECIPES["quickstart_fc"]
    >>> result = recipe.run(COLUMNS["recommended"], 0, recipe.quick, Probe())
    >>> 0.0 <= result["final"] <= 1.0
    True
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import snntorch as snn
import snntorch.functional as SF
import torch
import torch.nn.functional as F
from snntorch import surrogate, utils
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from snntorch_clif import DropInCLIF, from_leaky

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # "snntorch.backprop will be deprecated"
    from snntorch import backprop

__all__ = ["COLUMNS", "DIAGNOSTICS", "RECIPES", "Probe", "Recipe", "digit_events", "digits_28x28"]

Converter = Callable[[nn.Module], nn.Module]

#: The columns of the matrix: the one call that differs between them.
COLUMNS: dict[str, Converter] = {
    "leaky": lambda net: net,
    "plain": lambda net: from_leaky(net, readout=None, spike_grad="paper"),
    "recommended": lambda net: from_leaky(net),
    "keep_readout": lambda net: from_leaky(net, keep="last"),
}

TEST_SIZE = 360


# --- data --------------------------------------------------------------------------------
_DIGITS: dict[int, tuple[Tensor, Tensor]] = {}


def _digits(size: int) -> tuple[Tensor, Tensor]:
    """All 1797 sklearn digits as [N, 1, size, size] in [0, 1], and their labels."""
    if size not in _DIGITS:
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        images = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
        if size != 8:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
        _DIGITS[size] = (images, torch.as_tensor(y))
    return _DIGITS[size]


def _split(n: int) -> tuple[Tensor, Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))  # one split for every run
    return order[TEST_SIZE:], order[:TEST_SIZE]


def digits_28x28() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sklearn digits upsampled to MNIST's [N, 1, 28, 28] in [0, 1]: (x_train, y_train, x_test, y_test).

    Example::

        >>> x_train, y_train, x_test, y_test = digits_28x28()
        >>> tuple(x_train.shape), tuple(x_test.shape)
        ((1437, 1, 28, 28), (360, 1, 28, 28))
    """
    images, labels = _digits(28)
    train, test = _split(len(labels))
    return images[train], labels[train], images[test], labels[test]


def digit_events(steps: int, contrast: float = 0.08, keep: float = 0.8, noise: float = 0.002
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""N-MNIST-like event frames from the digits: ``[N, steps, 2, 34, 34]`` (uint8), labels.

    Like the N-MNIST recording (a digit on a screen seen by an event camera making three
    saccades), each 28x28 digit sits in a 34x34 frame and moves along a triangle (three
    straight saccades, up to 3 pixels); an ON (OFF) event fires at a pixel whose brightness
    rose (fell) by more than ``contrast`` since the last frame, each kept with probability
    ``keep``, plus background events with probability ``noise``. Fixed seed: every run sees
    the same events. Returns (x_train, y_train, x_test, y_test).

    Example::

        >>> x_train, y_train, x_test, y_test = digit_events(steps=12)
        >>> tuple(x_train.shape[1:]), x_train.dtype
        ((12, 2, 34, 34), torch.uint8)
    """
    images, labels = _digits(28)
    canvas = F.pad(images, (3, 3, 3, 3))  # [N, 1, 34, 34]
    corners = torch.tensor([[0.0, 0.0], [3.0, 1.5], [0.0, 3.0], [0.0, 0.0]])  # pixels (dx, dy)
    g = torch.Generator().manual_seed(1234)
    frames = []
    for t in range(steps + 1):
        phase = 3 * t / steps
        leg = min(int(phase), 2)
        shift = corners[leg] + (phase - leg) * (corners[leg + 1] - corners[leg])
        theta = torch.tensor([[1.0, 0.0, -2 * float(shift[0]) / 34], [0.0, 1.0, -2 * float(shift[1]) / 34]])
        grid = F.affine_grid(theta.expand(len(canvas), 2, 3), list(canvas.shape), align_corners=False)
        frames.append(F.grid_sample(canvas, grid, align_corners=False))
    events = []
    for before, after in zip(frames[:-1], frames[1:]):
        change = (after - before).squeeze(1)
        on, off = change > contrast, change < -contrast
        polarity = torch.stack([on, off], 1)
        kept = torch.rand(polarity.shape, generator=g) < keep
        background = torch.rand(polarity.shape, generator=g) < noise
        events.append(((polarity & kept) | background).to(torch.uint8))
    x = torch.stack(events, 1)  # [N, T, 2, 34, 34]
    train, test = _split(len(labels))
    return x[train], labels[train], x[test], labels[test]


def _loader(x: Tensor, y: Tensor, batch_size: int, seed: int, drop_last: bool = True,
            collate_fn: Optional[Callable] = None) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed), collate_fn=collate_fn)


def _batches(loader: DataLoader, iters: int):
    """The loader's batches, epoch after epoch, ``iters`` of them: (iteration number from 1, data, targets)."""
    done = 0
    while True:
        for data, targets in loader:
            done += 1
            yield done, data, targets
            if done == iters:
                return


def _eval_points(iters: int, evals: int) -> set[int]:
    return {max(1, round(iters * (i + 1) / evals)) for i in range(evals)}


# --- instrumentation ---------------------------------------------------------------------
class Probe:
    """Per-layer training diagnostics: firing rate, silent fraction, gradient norms.

    ``watch(net, optimizer)`` hooks the spiking layers (``snn.Leaky`` or ``DropInCLIF``)
    and the optimizer. Between two optimizer steps it sums each layer's training spikes per
    neuron; at the probed optimizer steps (1, 2, 5, 10, 20, 50, ... and every ``every``-th)
    it records, per spiking layer, the spikes per neuron and step (``rate``) and the
    fraction of neurons that emitted no spike for any sample in that window (``silent``),
    and per parameter the gradient's L2 norm. Records go to ``self.records``.
    """

    def __init__(self, every: int = 0) -> None:
        self.every = every
        self.records: list[dict[str, Any]] = []
        self._steps = 0
        self._counts: dict[str, Tensor] = {}
        self._calls: dict[str, int] = {}

    def _probed(self, step: int) -> bool:
        if self.every and step % self.every == 0:
            return True
        mantissa = step / 10 ** math.floor(math.log10(step))
        return mantissa in (1, 2, 5)

    def watch(self, net: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Hook ``net``'s spiking layers and ``optimizer``'s steps."""
        names = {id(p): name for name, p in net.named_parameters()}
        for name, module in net.named_modules():
            if isinstance(module, (snn.Leaky, DropInCLIF)):
                module.register_forward_hook(self._spikes_hook(name or "neuron"))

        def before_step(opt: torch.optim.Optimizer, *_: Any) -> None:
            self._steps += 1
            if self._probed(self._steps):
                grads = {}
                for group in opt.param_groups:
                    for p in group["params"]:
                        if p.grad is not None and id(p) in names:
                            grads[names[id(p)]] = float(p.grad.norm())
                layers = {}
                for layer, counts in self._counts.items():
                    samples = self._calls[layer]
                    layers[layer] = {
                        "rate": float(counts.sum() / (counts.numel() * max(samples, 1))),
                        "silent": float((counts.sum(0) == 0).float().mean()),
                    }
                self.records.append({"step": self._steps, "layers": layers, "grad_norm": grads})
            self._counts, self._calls = {}, {}

        optimizer.register_step_pre_hook(before_step)

    def _spikes_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not module.training or not torch.is_grad_enabled():
                return
            spk = (output[0] if isinstance(output, tuple) else output).detach()
            counts = (spk != 0).float()  # [batch, neurons...]: spikes of this step
            if name in self._counts and self._counts[name].shape == counts.shape:
                self._counts[name] += counts
                self._calls[name] += 1
            else:
                self._counts[name], self._calls[name] = counts, 1
        return hook


# --- helpers shared by the recipes --------------------------------------------------------
_last_output_rates: dict[str, float] = {}


def _spike_count_accuracy(spk_rec: Tensor, targets: Tensor) -> float:
    """``SF.accuracy_rate``; also notes the output layer's firing rates for :func:`_result`."""
    correct = nn.functional.one_hot(targets, spk_rec.shape[-1]).bool()
    rates = (spk_rec != 0).float().mean(0)  # [batch, outputs]: spikes per step
    _last_output_rates.clear()
    _last_output_rates.update(correct_class=float(rates[correct].mean()), other_classes=float(rates[~correct].mean()))
    return float(SF.accuracy_rate(spk_rec, targets))


def _result(final: float, curve: list[tuple[int, float]], losses: list[float], **extra: Any) -> dict[str, Any]:
    """A run's result; ``extra`` gains the output rates of the last spike-count evaluation."""
    if _last_output_rates:
        extra["output_rate"] = dict(_last_output_rates)
        _last_output_rates.clear()
    return {"final": final, "curve": [[i, round(v, 6)] for i, v in curve],
            "loss": [round(v, 6) for v in losses], "extra": extra}


def _forward_pass(net: nn.Module, num_steps: int, data: Tensor) -> tuple[Tensor, Tensor]:
    """Tutorial 6's ``forward_pass``: reset, then ``num_steps`` calls of an ``init_hidden`` network."""
    mem_rec = []
    spk_rec = []
    utils.reset(net)  # resets hidden states for all LIF neurons in net
    for _ in range(num_steps):
        spk_out, mem_out = net(data)
        spk_rec.append(spk_out)
        mem_rec.append(mem_out)
    return torch.stack(spk_rec), torch.stack(mem_rec)


def _train_static(net: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, size: dict, seed: int,
                  probe: Probe, use_mem: bool = False, membrane_accuracy: bool = False) -> dict[str, Any]:
    """Tutorial 6's training loop on the digits (static images, ``num_steps`` steps each)."""
    x_train, y_train, x_test, y_test = digits_28x28()
    train_loader = _loader(x_train, y_train, size["batch_size"], seed)
    num_steps = size["num_steps"]
    probe.watch(net, optimizer)
    evals = _eval_points(size["iters"], size["evals"])
    curve, losses = [], []

    def test_accuracy() -> tuple[float, float]:
        with torch.no_grad():
            net.eval()
            spk_rec, mem_rec = _forward_pass(net, num_steps, x_test)
            by_mem = float((mem_rec.mean(0).argmax(1) == y_test).float().mean())
            return (by_mem if membrane_accuracy else _spike_count_accuracy(spk_rec, y_test)), \
                _spike_count_accuracy(spk_rec, y_test)

    for i, data, targets in _batches(train_loader, size["iters"]):
        net.train()
        spk_rec, mem_rec = _forward_pass(net, num_steps, data)
        loss_val = loss_fn(mem_rec if use_mem else spk_rec, targets)
        optimizer.zero_grad()
        loss_val.backward()
        optimizer.step()
        losses.append(loss_val.item())
        if i in evals:
            curve.append((i, test_accuracy()[0]))
    final, by_spikes = test_accuracy()
    return _result(final, curve, losses, spike_count_accuracy=by_spikes)


# --- the recipes ---------------------------------------------------------------------------
def tutorial5(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """Tutorial 5: a class-based FC network, explicit ``mem``, CE on the membrane at every step."""
    num_inputs, num_hidden, num_outputs = 28 * 28, 1000, 10
    num_steps, beta = size["num_steps"], 0.95

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(num_inputs, num_hidden)
            self.lif1 = snn.Leaky(beta=beta)
            self.fc2 = nn.Linear(num_hidden, num_outputs)
            self.lif2 = snn.Leaky(beta=beta)

        def forward(self, x):
            mem1 = self.lif1.init_leaky()
            mem2 = self.lif2.init_leaky()
            spk2_rec = []
            mem2_rec = []
            for _step in range(num_steps):
                cur1 = self.fc1(x)
                spk1, mem1 = self.lif1(cur1, mem1)
                cur2 = self.fc2(spk1)
                spk2, mem2 = self.lif2(cur2, mem2)
                spk2_rec.append(spk2)
                mem2_rec.append(mem2)
            return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)

    torch.manual_seed(seed)
    net = convert(Net())
    x_train, y_train, x_test, y_test = digits_28x28()
    train_loader = _loader(x_train, y_train, size["batch_size"], seed)
    loss = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
    probe.watch(net, optimizer)
    evals = _eval_points(size["iters"], size["evals"])
    curve, losses = [], []

    def test_accuracy() -> tuple[float, float, float]:
        with torch.no_grad():
            net.eval()
            test_spk, test_mem = net(x_test.view(x_test.size(0), -1))
            by_mem = float((test_mem[-1].argmax(1) == y_test).float().mean())
            return _spike_count_accuracy(test_spk, y_test), by_mem, float(test_spk.sum(-1).mean())

    for i, data, targets in _batches(train_loader, size["iters"]):
        net.train()
        spk_rec, mem_rec = net(data.view(data.size(0), -1))
        loss_val = torch.zeros((1), dtype=torch.float)
        for step in range(num_steps):
            loss_val += loss(mem_rec[step], targets)
        optimizer.zero_grad()
        loss_val.backward()
        optimizer.step()
        losses.append(loss_val.item())
        if i in evals:
            curve.append((i, test_accuracy()[0]))
    final, by_mem, out_spikes = test_accuracy()
    return _result(final, curve, losses, membrane_accuracy=by_mem, output_spikes_per_step=out_spikes)


def tutorial6(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """Tutorial 6: the convolutional SNN in ``nn.Sequential``, ``ce_rate_loss``."""
    spike_grad = surrogate.fast_sigmoid(slope=25)
    beta = 0.5
    torch.manual_seed(seed)
    net = convert(nn.Sequential(nn.Conv2d(1, 12, 5),
                                nn.MaxPool2d(2),
                                snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
                                nn.Conv2d(12, 64, 5),
                                nn.MaxPool2d(2),
                                snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
                                nn.Flatten(),
                                nn.Linear(64 * 4 * 4, 10),
                                snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True, output=True)))
    loss_fn = SF.ce_rate_loss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.9, 0.999))
    return _train_static(net, optimizer, loss_fn, size, seed, probe)


def tutorial7(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """Tutorial 7: the CSNN on (generated) N-MNIST-like event frames, ``mse_count_loss(0.8, 0.2)``."""
    spike_grad = surrogate.atan()
    beta = 0.5
    torch.manual_seed(seed)
    net = convert(nn.Sequential(nn.Conv2d(2, 12, 5),
                                nn.MaxPool2d(2),
                                snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
                                nn.Conv2d(12, 32, 5),
                                nn.MaxPool2d(2),
                                snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
                                nn.Flatten(),
                                nn.Linear(32 * 5 * 5, 10),
                                snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True, output=True)))

    def forward_pass(net, data):
        spk_rec = []
        utils.reset(net)  # resets hidden states for all LIF neurons in net
        for step in range(data.size(0)):  # data.size(0) = number of time steps
            spk_out, mem_out = net(data[step])
            spk_rec.append(spk_out)
        return torch.stack(spk_rec)

    def time_first(batch):  # tonic's PadTensors(batch_first=False): [T, B, 2, 34, 34]
        frames, targets = zip(*batch)
        return torch.stack(frames, 1).float(), torch.stack(targets)

    x_train, y_train, x_test, y_test = digit_events(size["num_steps"])
    trainloader = _loader(x_train, y_train, size["batch_size"], seed, drop_last=False, collate_fn=time_first)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-2, betas=(0.9, 0.999))
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    probe.watch(net, optimizer)
    evals = _eval_points(size["iters"], size["evals"])
    curve, losses = [], []

    def test_accuracy() -> float:
        with torch.no_grad():
            net.eval()
            spk_rec = forward_pass(net, x_test.transpose(0, 1).float())
            return _spike_count_accuracy(spk_rec, y_test)

    for i, data, targets in _batches(trainloader, size["iters"]):
        net.train()
        spk_rec = forward_pass(net, data)
        loss_val = loss_fn(spk_rec, targets)
        optimizer.zero_grad()
        loss_val.backward()
        optimizer.step()
        losses.append(loss_val.item())
        if i in evals:
            curve.append((i, test_accuracy()))
    return _result(test_accuracy(), curve, losses)


def _quickstart_loop(net: nn.Module, forward: Callable[[Tensor], Tensor], seed: int, size: dict,
                     probe: Probe) -> dict[str, Any]:
    """The quickstart's training loop: ``mse_count_loss(0.8, 0.2)``, Adam 2e-3, spike-count accuracy."""
    x_train, y_train, x_test, y_test = digits_28x28()
    train_loader = _loader(x_train, y_train, size["batch_size"], seed, drop_last=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3, betas=(0.9, 0.999))
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    probe.watch(net, optimizer)
    evals = _eval_points(size["iters"], size["evals"])
    curve, losses = [], []

    def test_accuracy() -> float:
        with torch.no_grad():
            net.eval()
            return _spike_count_accuracy(forward(x_test), y_test)

    for i, data, targets in _batches(train_loader, size["iters"]):
        net.train()
        spk_rec = forward(data)
        loss_val = loss_fn(spk_rec, targets)
        optimizer.zero_grad()
        loss_val.backward()
        optimizer.step()
        losses.append(loss_val.item())
        if i in evals:
            curve.append((i, test_accuracy()))
    return _result(test_accuracy(), curve, losses)


def quickstart_conv(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """The quickstart's convolutional SNN (``nn.Sequential``, ``init_hidden=True``)."""
    beta = 0.9
    spike_grad = surrogate.fast_sigmoid()
    num_steps = size["num_steps"]
    torch.manual_seed(seed)
    net = convert(nn.Sequential(nn.Conv2d(1, 8, 5),
                                nn.MaxPool2d(2),
                                snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
                                nn.Conv2d(8, 16, 5),
                                nn.MaxPool2d(2),
                                snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True),
                                nn.Flatten(),
                                nn.Linear(16 * 4 * 4, 10),
                                snn.Leaky(beta=beta, spike_grad=spike_grad, init_hidden=True, output=True)))

    def forward_pass(net, data, num_steps):
        spk_rec = []
        utils.reset(net)
        for _step in range(num_steps):
            spk_out, mem_out = net(data)
            spk_rec.append(spk_out)
        return torch.stack(spk_rec)

    return _quickstart_loop(net, lambda data: forward_pass(net, data, num_steps), seed, size, probe)


def quickstart_fc(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """The quickstart's class-based FC network: a fixed beta, then a learnable per-neuron one."""
    num_steps = size["num_steps"]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            num_inputs = 784
            num_hidden = 300
            num_outputs = 10
            beta1 = 0.9
            beta2 = torch.rand((num_outputs), dtype=torch.float)
            self.fc1 = nn.Linear(num_inputs, num_hidden)
            self.lif1 = snn.Leaky(beta=beta1)
            self.fc2 = nn.Linear(num_hidden, num_outputs)
            self.lif2 = snn.Leaky(beta=beta2, learn_beta=True)

        def forward(self, x):
            mem1 = self.lif1.init_leaky()
            mem2 = self.lif2.init_leaky()
            spk2_rec = []
            mem2_rec = []
            for _step in range(num_steps):
                cur1 = self.fc1(x.flatten(1))
                spk1, mem1 = self.lif1(cur1, mem1)
                cur2 = self.fc2(spk1)
                spk2, mem2 = self.lif2(cur2, mem2)
                spk2_rec.append(spk2)
                mem2_rec.append(mem2)
            return torch.stack(spk2_rec), torch.stack(mem2_rec)

    torch.manual_seed(seed)
    net = convert(Net())
    return _quickstart_loop(net, lambda data: net(data)[0], seed, size, probe)


def regression1(convert: Converter, seed: int, size: dict, probe: Probe, unit_threshold: bool = False
                ) -> dict[str, Any]:
    """Regression tutorial 1: one ``sqrt`` curve learnt by the output membrane; final L1 loss.

    ``unit_threshold`` (a diagnostic, not the tutorial): the hidden thresholds are 1, not U(0, 1).
    """
    timesteps, hidden = size["num_steps"], 128

    class Net(torch.nn.Module):
        def __init__(self, timesteps, hidden):
            super().__init__()
            self.timesteps = timesteps
            self.hidden = hidden
            spike_grad = surrogate.fast_sigmoid()
            beta_in = torch.rand(self.hidden)
            thr_in = torch.rand(self.hidden)
            thr_in = torch.ones(self.hidden) if unit_threshold else thr_in
            self.fc_in = torch.nn.Linear(in_features=1, out_features=self.hidden)
            self.lif_in = snn.Leaky(beta=beta_in, threshold=thr_in, learn_beta=True, spike_grad=spike_grad)
            beta_hidden = torch.rand(self.hidden)
            thr_hidden = torch.rand(self.hidden)
            thr_hidden = torch.ones(self.hidden) if unit_threshold else thr_hidden
            self.fc_hidden = torch.nn.Linear(in_features=self.hidden, out_features=self.hidden)
            self.lif_hidden = snn.Leaky(beta=beta_hidden, threshold=thr_hidden, learn_beta=True,
                                        spike_grad=spike_grad)
            beta_out = torch.rand(1)
            self.fc_out = torch.nn.Linear(in_features=self.hidden, out_features=1)
            self.li_out = snn.Leaky(beta=beta_out, threshold=1.0, learn_beta=True, spike_grad=spike_grad,
                                    reset_mechanism="none")

        def forward(self, x):
            mem_1 = self.lif_in.init_leaky()
            mem_2 = self.lif_hidden.init_leaky()
            mem_3 = self.li_out.init_leaky()
            mem_3_rec = []
            for step in range(self.timesteps):
                x_timestep = x[step, :, :]
                cur_in = self.fc_in(x_timestep)
                spk_in, mem_1 = self.lif_in(cur_in, mem_1)
                cur_hidden = self.fc_hidden(spk_in)
                spk_hidden, mem_2 = self.lif_hidden(cur_hidden, mem_2)
                cur_out = self.fc_out(spk_hidden)
                _, mem_3 = self.li_out(cur_out, mem_3)
                mem_3_rec.append(mem_3)
            return torch.stack(mem_3_rec)

    # the tutorial's RegressionDataset(mode="sqrt", num_samples=1): a ramp from 0 to a random end,
    # the target sqrt(slope * ramp), drawn from the seed
    g = torch.Generator().manual_seed(seed)
    end, slope = float(torch.rand(1, generator=g)), float(torch.rand(1, generator=g))
    feature = torch.linspace(0.0, end, timesteps).view(timesteps, 1, 1)  # [T, batch 1, 1]
    label = torch.sqrt(feature * slope)
    torch.manual_seed(seed)
    model = convert(Net(timesteps=timesteps, hidden=hidden))
    optimizer = torch.optim.Adam(params=model.parameters(), lr=1e-3)
    loss_function = torch.nn.MSELoss()
    probe.watch(model, optimizer)
    evals = _eval_points(size["iters"], size["evals"])
    curve, losses = [], []

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            model.eval()
            mem = model(feature)
            rel_err = torch.linalg.norm(mem - label, dim=-1) / torch.linalg.norm(label, dim=-1)
            return float(torch.nn.L1Loss()(mem, label)), float(rel_err[1:, :].mean())

    for i in range(1, size["iters"] + 1):
        model.train()
        mem = model(feature)
        loss_val = loss_function(mem, label)
        optimizer.zero_grad()
        loss_val.backward()
        optimizer.step()
        losses.append(loss_val.item())
        if i in evals:
            curve.append((i, evaluate()[0]))
    l1, rel_err = evaluate()
    return _result(l1, curve, losses, relative_error=rel_err, target_end=math.sqrt(end * slope))


def _population(convert: Converter, seed: int, size: dict, probe: Probe, num_outputs: int) -> dict[str, Any]:
    """The population-coding tutorial: one time step, ``backprop.BPTT``, ``mse_count_loss(1, 0)``."""
    num_inputs, num_hidden, num_steps = 28 * 28, 128, 1
    beta = 0.9
    grad = surrogate.fast_sigmoid()
    population_code = num_outputs > 10
    torch.manual_seed(seed)
    net = convert(nn.Sequential(nn.Flatten(),
                                nn.Linear(num_inputs, num_hidden),
                                snn.Leaky(beta=beta, spike_grad=grad, init_hidden=True),
                                nn.Linear(num_hidden, num_outputs),
                                snn.Leaky(beta=beta, spike_grad=grad, init_hidden=True, output=True)))
    x_train, y_train, x_test, y_test = digits_28x28()
    train_loader = _loader(x_train, y_train, size["batch_size"], seed, drop_last=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3, betas=(0.9, 0.999))
    if population_code:
        loss_fn = SF.mse_count_loss(correct_rate=1.0, incorrect_rate=0.0, population_code=True, num_classes=10)
    else:
        loss_fn = SF.mse_count_loss(correct_rate=1.0, incorrect_rate=0.0)
    probe.watch(net, optimizer)

    def test_accuracy() -> float:
        with torch.no_grad():
            net.eval()
            utils.reset(net)
            spk_rec, _ = net(x_test)
            return float(SF.accuracy_rate(spk_rec.unsqueeze(0), y_test, population_code=population_code,
                                          num_classes=10 if population_code else False))

    curve, losses = [], []
    for epoch in range(size["epochs"]):
        avg_loss = backprop.BPTT(net, train_loader, num_steps=num_steps, optimizer=optimizer, criterion=loss_fn,
                                 time_var=False, device="cpu")
        losses.append(float(avg_loss.detach()))
        curve.append(((epoch + 1) * len(train_loader), test_accuracy()))
    return _result(curve[-1][1], curve, losses)


def population_10(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """The population tutorial's first network: 10 outputs, no population code."""
    return _population(convert, seed, size, probe, 10)


def population_500(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """The population tutorial's second network: 500 outputs, 50 per class."""
    return _population(convert, seed, size, probe, 500)


def _docstring_net() -> nn.Sequential:
    """``snntorch.backprop``'s docstring network."""
    lif1 = snn.Leaky(beta=0.9, init_hidden=True)
    lif2 = snn.Leaky(beta=0.9, init_hidden=True, output=True)
    return nn.Sequential(nn.Flatten(),
                         nn.Linear(784, 500),
                         lif1,
                         nn.Linear(500, 10),
                         lif2)


def _backprop(convert: Converter, seed: int, size: dict, probe: Probe, method: str) -> dict[str, Any]:
    """``snntorch.backprop.BPTT`` / ``TBPTT`` / ``RTRL`` as their docstrings use them, ``mse_count_loss()``."""
    num_steps = size["num_steps"]
    torch.manual_seed(seed)
    net = convert(_docstring_net())
    x_train, y_train, x_test, y_test = digits_28x28()
    train_loader = _loader(x_train, y_train, size["batch_size"], seed, drop_last=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
    loss_fn = SF.mse_count_loss()
    probe.watch(net, optimizer)
    kwargs = dict(optimizer=optimizer, criterion=loss_fn, num_steps=num_steps, time_var=False, device="cpu")

    def test_accuracy() -> float:
        with torch.no_grad():
            net.eval()
            spk_rec, _ = _forward_pass(net, num_steps, x_test)
            return _spike_count_accuracy(spk_rec, y_test)

    curve, losses = [], []
    for epoch in range(size["epochs"]):
        if method == "bptt":
            loss = backprop.BPTT(net, train_loader, **kwargs)
        elif method == "tbptt":
            loss = backprop.TBPTT(net, train_loader, K=size["K"], **kwargs)
        else:
            loss = backprop.RTRL(net, train_loader, **kwargs)
        losses.append(float(loss.detach()))
        curve.append(((epoch + 1) * len(train_loader), test_accuracy()))
    return _result(curve[-1][1], curve, losses, final_epoch_loss=losses[-1])


def bptt(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """``backprop.BPTT``: one update per sequence."""
    return _backprop(convert, seed, size, probe, "bptt")


def tbptt(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """``backprop.TBPTT`` with an explicit ``K``: an update every ``K`` steps, states detached."""
    return _backprop(convert, seed, size, probe, "tbptt")


def rtrl(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """``backprop.RTRL``: an update every step (``K = 1``)."""
    return _backprop(convert, seed, size, probe, "rtrl")


def _loss_recipe(loss_fn: Any, use_mem: bool = False) -> Callable[[Converter, int, dict, Probe], dict[str, Any]]:
    def run(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
        torch.manual_seed(seed)
        net = convert(_docstring_net())
        optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
        return _train_static(net, optimizer, loss_fn(), size, seed, probe, use_mem=use_mem, membrane_accuracy=use_mem)
    return run


@dataclass(frozen=True)
class Recipe:
    """One row of the matrix: where it comes from, its metric and sizes, and how to run it."""

    name: str
    source: str
    summary: str
    metric: str  # "accuracy" (higher is better) or "l1_loss" (lower is better)
    run: Callable[[Converter, int, dict, Probe], dict[str, Any]]
    full: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger final metric is a better one."""
        return self.metric == "accuracy"


_FC = dict(batch_size=128, num_steps=25, iters=100, evals=10)
_FC_QUICK = dict(batch_size=32, num_steps=4, iters=3, evals=1)
_BACKPROP = dict(batch_size=128, num_steps=12, epochs=8, K=5)
_BACKPROP_QUICK = dict(batch_size=256, num_steps=4, epochs=1, K=3)

def regression1_unit_threshold(convert: Converter, seed: int, size: dict, probe: Probe) -> dict[str, Any]:
    """Diagnostic: regression tutorial 1 with every hidden threshold 1 (CLIF's reset is theta + sigma(m))."""
    return regression1(convert, seed, size, probe, unit_threshold=True)


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("tutorial5", "docs/tutorials/tutorial_5.rst", "FC 784-1000-10, CE on mem every step", "accuracy",
           tutorial5, dict(batch_size=128, num_steps=25, iters=150, evals=10), _FC_QUICK),
    Recipe("tutorial6", "docs/tutorials/tutorial_6.rst", "CSNN 12C5-64C5, ce_rate_loss", "accuracy",
           tutorial6, dict(batch_size=64, num_steps=25, iters=60, evals=6), dict(_FC_QUICK, iters=2)),
    Recipe("tutorial7", "docs/tutorials/tutorial_7.rst", "CSNN on event frames, mse_count_loss(0.8, 0.2)",
           "accuracy", tutorial7, dict(batch_size=64, num_steps=24, iters=60, evals=6),
           dict(_FC_QUICK, num_steps=3, iters=2)),
    Recipe("quickstart_conv", "examples/quickstart.ipynb", "CSNN 8C5-16C5, mse_count_loss(0.8, 0.2)", "accuracy",
           quickstart_conv, dict(batch_size=64, num_steps=25, iters=80, evals=8), dict(_FC_QUICK, iters=2)),
    Recipe("quickstart_fc", "examples/quickstart.ipynb", "FC 784-300-10, learnable beta, mse_count_loss(0.8, 0.2)",
           "accuracy", quickstart_fc, dict(batch_size=128, num_steps=25, iters=150, evals=10), _FC_QUICK),
    Recipe("regression1", "docs/tutorials/tutorial_regression_1.rst", "1-128-128-1 regression, MSE on mem",
           "l1_loss", regression1, dict(num_steps=50, iters=100, evals=10), dict(num_steps=10, iters=3, evals=1)),
    Recipe("population_10", "docs/tutorials/tutorial_pop.rst", "FC 784-128-10, 1 step, BPTT", "accuracy",
           population_10, dict(batch_size=128, epochs=20), dict(batch_size=256, epochs=1)),
    Recipe("population_500", "docs/tutorials/tutorial_pop.rst", "FC 784-128-500 population code, 1 step, BPTT",
           "accuracy", population_500, dict(batch_size=128, epochs=20), dict(batch_size=256, epochs=1)),
    Recipe("bptt", "snntorch/backprop.py", "FC 784-500-10, mse_count_loss(), BPTT", "accuracy", bptt,
           _BACKPROP, _BACKPROP_QUICK),
    Recipe("tbptt", "snntorch/backprop.py", "same, TBPTT K=5", "accuracy", tbptt, _BACKPROP, _BACKPROP_QUICK),
    Recipe("rtrl", "snntorch/backprop.py", "same, RTRL", "accuracy", rtrl, _BACKPROP, _BACKPROP_QUICK),
    Recipe("ce_rate_loss", "snntorch/functional/loss.py", "FC 784-500-10, ce_rate_loss()", "accuracy",
           _loss_recipe(SF.ce_rate_loss), _FC, _FC_QUICK),
    Recipe("ce_count_loss", "snntorch/functional/loss.py", "FC 784-500-10, ce_count_loss()", "accuracy",
           _loss_recipe(SF.ce_count_loss), _FC, _FC_QUICK),
    Recipe("mse_count_loss", "snntorch/functional/loss.py", "FC 784-500-10, mse_count_loss(0.75, 0.25)",
           "accuracy", _loss_recipe(lambda: SF.mse_count_loss(correct_rate=0.75, incorrect_rate=0.25)), _FC,
           _FC_QUICK),
    Recipe("mse_membrane_loss", "snntorch/functional/loss.py", "FC 784-500-10, mse_membrane_loss(), "
           "membrane accuracy", "accuracy", _loss_recipe(SF.mse_membrane_loss, use_mem=True), _FC, _FC_QUICK),
]}

#: Variants of a recipe that isolate a cause (not rows of the matrix; run them with ``--recipes``).
DIAGNOSTICS: dict[str, Recipe] = {r.name: r for r in [
    Recipe("regression1_unit_threshold", "docs/tutorials/tutorial_regression_1.rst",
           "regression 1 with hidden thresholds 1 instead of U(0, 1)", "l1_loss", regression1_unit_threshold,
           RECIPES["regression1"].full, RECIPES["regression1"].quick),
    # three times the training: does a CLIF column that trails on a high-rate count target catch up?
    *[Recipe(f"{name}_x3", RECIPES[name].source, f"{RECIPES[name].summary}, 3x the iterations",
             RECIPES[name].metric, RECIPES[name].run,
             dict(RECIPES[name].full, iters=3 * RECIPES[name].full["iters"], evals=3 * RECIPES[name].full["evals"]),
             RECIPES[name].quick)
      for name in ("quickstart_conv", "mse_count_loss")],
]}
