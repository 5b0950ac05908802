r"""The CLIF paper's training recipe, and the building blocks the demo shares with it.

Huang et al. (ICML 2024) train a pre-activation spiking ResNet18 on CIFAR with direct
encoding (the normalised image is the input current at each of :math:`T = 6` steps),
SGD (lr 0.1, momentum 0.9, weight decay 5e-5 on CIFAR-10, 5e-4 on CIFAR-100, cosine
schedule over 200 epochs, batch 128), fp16 autocast, and the TET-style loss

.. math::
    \mathcal{L} = (1 - \lambda)\,\frac{1}{T}\sum_{t=1}^{T} \mathrm{CE}(o_t, y)
                  + \lambda\,\frac{1}{T}\sum_{t=1}^{T} \mathrm{MSE}(o_t, \mathbf{1}),
    \qquad \lambda = 0.05,

predicting with the mean output over steps. :func:`main` runs that recipe on data
already on disk (``python -m snntorch_clif.recipes --data-root DIR``); nothing is
downloaded. The same network can be built with CLIF or with snnTorch's ``Leaky``
(:func:`make_neuron`) to compare the two under one recipe.

Example::

    >>> import torch
    >>> from snntorch_clif.recipes import spiking_resnet18, tet_loss
    >>> net = spiking_resnet18("clif", num_classes=10, T=2)
    >>> out = net(torch.rand(2, 3, 32, 32))          # [T, batch, classes]
    >>> tet_loss(out, torch.tensor([3, 7])).backward()
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Callable, Optional

import snntorch as snn
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import surrogate
from ._lif import HardResetLIF
from .neuron import CLIF
from .neuron import reset as reset_clif

__all__ = [
    "NEURONS",
    "LeakySequence",
    "make_neuron",
    "reset_states",
    "tet_loss",
    "TimeDistributed",
    "SpikingMLP",
    "SpikingConvNet",
    "PreActBlock",
    "SpikingResNet18",
    "spiking_resnet18",
    "paper_optimizer",
    "train_step",
    "evaluate",
    "Cutout",
    "cifar_loaders",
    "main",
]

NEURONS = ("clif", "leaky")


class LeakySequence(nn.Module):
    r"""snnTorch's ``Leaky`` run over a time-major ``[T, ...]`` input, from rest each call.

    The fair twin of CLIF: ``snn.Leaky(beta, threshold, reset_delay=False,
    reset_mechanism="subtract")`` with CLIF's surrogate, so both neurons charge
    :math:`h_t = \beta u_{t-1} + x_t`, fire on :math:`h_t \ge \theta` and reset by
    subtraction in the same step; only CLIF's complementary potential differs:

    .. math:: u_t = h_t - s_t\,\theta \qquad\text{vs CLIF's}\qquad u_t = h_t - s_t(\theta + \sigma(m_t))

    Example::

        >>> import torch
        >>> from snntorch_clif.recipes import LeakySequence
        >>> LeakySequence()(torch.rand(6, 2, 5)).shape
        torch.Size([6, 2, 5])
    """

    def __init__(self, beta: float = 0.5, threshold: float = 1.0, spike_grad: Optional[Callable] = None) -> None:
        super().__init__()
        self.leaky = snn.Leaky(
            beta=beta,
            threshold=threshold,
            spike_grad=surrogate.resolve(spike_grad),
            reset_mechanism="subtract",
            reset_delay=False,
        )

    def forward(self, x_seq: Tensor) -> Tensor:
        """Spikes ``[T, ...]`` for input currents ``x_seq`` ``[T, ...]``."""
        mem = torch.zeros_like(x_seq[0])
        spikes = []
        for x in x_seq.unbind(0):
            spk, mem = self.leaky(x, mem)
            spikes.append(spk)
        return torch.stack(spikes)


def make_neuron(kind: str, beta: float = 0.5, threshold: float = 1.0) -> nn.Module:
    r"""A spiking layer mapping input currents ``[T, ...]`` to spikes ``[T, ...]``.

    ``"clif"``: :class:`~snntorch_clif.CLIF` in multi-step mode (the paper's neuron,
    soft reset); ``"leaky"``: :class:`LeakySequence` (snnTorch's ``Leaky``, same
    :math:`\beta`, :math:`\theta`, reset in the same step, same rectangle surrogate).

    Example::

        >>> import torch
        >>> from snntorch_clif.recipes import make_neuron
        >>> make_neuron("clif")(torch.rand(4, 3)).shape
        torch.Size([4, 3])
    """
    spike_grad = surrogate.rectangle(alpha=1.0)
    if kind == "clif":
        return CLIF(beta=beta, threshold=threshold, spike_grad=spike_grad, step_mode="multi", init_hidden=True)
    if kind == "leaky":
        return LeakySequence(beta=beta, threshold=threshold, spike_grad=spike_grad)
    raise ValueError(f"neuron must be one of {NEURONS}, got {kind!r}")


def reset_states(net: nn.Module) -> None:
    """Start every stateful neuron of ``net`` (CLIF, :class:`HardResetLIF`) from rest.

    Example::

        >>> from snntorch_clif.recipes import SpikingMLP, reset_states
        >>> reset_states(SpikingMLP(4, 2))
    """
    reset_clif(net)
    for module in net.modules():
        if isinstance(module, HardResetLIF):
            module.reset_mem()


def tet_loss(outputs: Tensor, target: Tensor, lamb: float = 0.05, means: float = 1.0) -> Tensor:
    r"""The paper's TET-style loss on per-step outputs ``[T, batch, classes]``.

    .. math::
        \mathcal{L} = (1 - \lambda)\,\frac{1}{T}\sum_t \mathrm{CE}(o_t, y)
                      + \lambda\,\mathrm{MSE}(o, \text{means})

    Example::

        >>> import torch
        >>> from snntorch_clif.recipes import tet_loss
        >>> float(tet_loss(torch.zeros(3, 2, 4), torch.tensor([0, 1]), lamb=0.0))  # log(4)
        1.3862943649291992
    """
    steps = outputs.shape[0]
    ce = F.cross_entropy(outputs.flatten(0, 1), target.repeat(steps))
    if lamb == 0:
        return ce
    mse = F.mse_loss(outputs, torch.full_like(outputs, means))
    return (1 - lamb) * ce + lamb * mse


class TimeDistributed(nn.Module):
    """Apply a stateless layer to each step of a ``[T, batch, ...]`` input (as one big batch).

    .. math:: y_t = f(x_t), \\quad t = 1..T

    Example::

        >>> import torch
        >>> from torch import nn
        >>> TimeDistributed(nn.Linear(3, 2))(torch.rand(6, 4, 3)).shape
        torch.Size([6, 4, 2])
    """

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layer = layers[0] if len(layers) == 1 else nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``f`` on ``x.flatten(0, 1)``, reshaped back to ``[T, batch, ...]``."""
        y = self.layer(x.flatten(0, 1))
        return y.unflatten(0, x.shape[:2])


class SpikingMLP(nn.Module):
    r"""Direct-encoded spiking MLP: (Linear, BatchNorm, neuron) x ``layers``, then a Linear read-out.

    A static input ``[batch, features]`` is the input current at each of the ``T`` steps
    (the first Linear+BatchNorm is computed once and repeated); a sequence
    ``[batch, T, features]`` is fed one step at a time. Returns per-step logits
    ``[T, batch, classes]``; predict with their mean over steps.

    .. math:: o_t = W_{out}\, s^{(L)}_t,\qquad s^{(l)} = \text{neuron}(\mathrm{BN}(W_l\, s^{(l-1)}))

    Example::

        >>> import torch
        >>> from snntorch_clif.recipes import SpikingMLP
        >>> SpikingMLP(40, 10, neuron="leaky", T=6)(torch.rand(8, 40)).shape
        torch.Size([6, 8, 10])
    """

    def __init__(
        self, in_features: int, num_classes: int, hidden: int = 256, layers: int = 2,
        neuron: str = "clif", T: int = 6,
    ) -> None:
        super().__init__()
        self.T = T
        widths = [in_features] + [hidden] * layers
        self.stages = nn.ModuleList(
            nn.ModuleDict({
                "fc": TimeDistributed(nn.Linear(w_in, w_out, bias=False), nn.BatchNorm1d(w_out)),
                "neuron": make_neuron(neuron),
            })
            for w_in, w_out in zip(widths[:-1], widths[1:])
        )
        self.readout = TimeDistributed(nn.Linear(hidden, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Per-step logits ``[T, batch, classes]`` for ``x`` ``[batch, F]`` or ``[batch, T, F]``."""
        reset_states(self)
        if x.dim() == 2:  # direct encoding: the same current at every step
            current = self.stages[0]["fc"](x.unsqueeze(0)).expand(self.T, -1, -1)
        else:
            current = self.stages[0]["fc"](x.transpose(0, 1))
        spikes = self.stages[0]["neuron"](current)
        for stage in self.stages[1:]:
            spikes = stage["neuron"](stage["fc"](spikes))
        return self.readout(spikes)


class SpikingConvNet(nn.Module):
    r"""Small direct-encoded spiking CNN for 28x28 or 32x32 images (the demo's torchvision sets).

    conv3x3(32)-BN-neuron-avgpool2, conv3x3(64)-BN-neuron-avgpool2, Linear(256)-BN-neuron,
    Linear read-out; per-step logits ``[T, batch, classes]``.

    Example::

        >>> import torch
        >>> SpikingConvNet(1, 10, T=2)(torch.rand(3, 1, 28, 28)).shape
        torch.Size([2, 3, 10])
    """

    def __init__(self, in_channels: int, num_classes: int, neuron: str = "clif", T: int = 6, image_size: int = 28) -> None:
        super().__init__()
        self.T = T
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32))
        self.features = nn.Sequential(
            make_neuron(neuron),
            TimeDistributed(nn.AvgPool2d(2), nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64)),
            make_neuron(neuron),
            TimeDistributed(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64 * (image_size // 4) ** 2, 256, bias=False),
                            nn.BatchNorm1d(256)),
            make_neuron(neuron),
            TimeDistributed(nn.Linear(256, num_classes)),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Per-step logits ``[T, batch, classes]`` for images ``[batch, C, H, W]``."""
        reset_states(self)
        current = self.stem(x).unsqueeze(0).expand(self.T, *([-1] * x.dim()))
        return self.features(current)


class PreActBlock(nn.Module):
    r"""Pre-activation spiking basic block: BN-neuron-conv3x3, BN-neuron-conv3x3, plus shortcut.

    .. math::
        s_1 = \text{neuron}(\mathrm{BN}_1(x)),\quad
        y = W_2 * \text{neuron}(\mathrm{BN}_2(W_1 * s_1)) + \text{shortcut}(x, s_1)

    where the shortcut is :math:`x` itself, or a strided 1x1 convolution of :math:`s_1`
    when the shape changes. Works on ``[T, batch, C, H, W]``.

    Example::

        >>> import torch
        >>> PreActBlock(8, 16, stride=2, neuron="leaky")(torch.rand(2, 3, 8, 4, 4)).shape
        torch.Size([2, 3, 16, 2, 2])
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, neuron: str = "clif") -> None:
        super().__init__()
        self.bn1 = TimeDistributed(nn.BatchNorm2d(in_planes))
        self.act1 = make_neuron(neuron)
        self.conv1 = TimeDistributed(nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False))
        self.bn2 = TimeDistributed(nn.BatchNorm2d(planes))
        self.act2 = make_neuron(neuron)
        self.conv2 = TimeDistributed(nn.Conv2d(planes, planes, 3, padding=1, bias=False))
        self.shortcut: Optional[nn.Module] = None
        if stride != 1 or in_planes != planes:
            self.shortcut = TimeDistributed(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        """One block on ``[T, batch, C, H, W]``."""
        s = self.act1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(s)
        return self.conv2(self.act2(self.bn2(self.conv1(s)))) + skip


class SpikingResNet18(nn.Module):
    r"""Pre-activation spiking ResNet18 for CIFAR (the paper's network), direct encoding.

    conv3x3(64) stem on the image (computed once, the same current at each of ``T``
    steps), four stages of two :class:`PreActBlock` (64, 128, 256, 512 channels; strides
    1, 2, 2, 2), then BN-neuron, global average pooling and a Linear read-out.
    Returns per-step logits ``[T, batch, classes]``.

    Example::

        >>> import torch
        >>> SpikingResNet18("leaky", T=2)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 2, 10])
    """

    def __init__(self, neuron: str = "clif", num_classes: int = 10, T: int = 6, in_channels: int = 3) -> None:
        super().__init__()
        self.T = T
        self.stem = nn.Conv2d(in_channels, 64, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        in_planes = 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [PreActBlock(in_planes, planes, stride, neuron), PreActBlock(planes, planes, 1, neuron)]
            in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.bn = TimeDistributed(nn.BatchNorm2d(512))
        self.act = make_neuron(neuron)
        self.head = TimeDistributed(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Per-step logits ``[T, batch, classes]`` for images ``[batch, C, H, W]``."""
        reset_states(self)
        current = self.stem(x).unsqueeze(0).expand(self.T, -1, -1, -1, -1)
        return self.head(self.act(self.bn(self.blocks(current))))


def spiking_resnet18(neuron: str = "clif", num_classes: int = 10, T: int = 6) -> SpikingResNet18:
    """The paper's CIFAR network with ``neuron`` in ``("clif", "leaky")`` (see :class:`SpikingResNet18`).

    Example::

        >>> net = spiking_resnet18("clif", num_classes=100)
    """
    return SpikingResNet18(neuron=neuron, num_classes=num_classes, T=T)


def paper_optimizer(
    model: nn.Module, epochs: int, steps_per_epoch: int = 1, lr: float = 0.1, weight_decay: float = 5e-5,
    momentum: float = 0.9,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    r"""SGD (lr 0.1, momentum 0.9) with a cosine schedule stepped per iteration.

    .. math:: \eta_k = \tfrac{1}{2}\,\eta_0\,(1 + \cos(\pi k / K)),\quad K = \text{epochs}\times\text{steps per epoch}

    Example::

        >>> from torch import nn
        >>> opt, sched = paper_optimizer(nn.Linear(2, 2), epochs=10, steps_per_epoch=5)
    """
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * steps_per_epoch))
    return opt, sched


def train_step(
    model: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler] = None, amp: bool = False, lamb: float = 0.05,
) -> tuple[float, int]:
    r"""One optimiser step on the TET loss (:func:`tet_loss`); returns ``(loss, correct)``.

    With ``amp`` the forward runs under autocast (fp16 on CUDA, bf16 on the CPU) and a
    ``scaler`` scales the loss on CUDA. Predictions are the mean logits over steps.

    .. math:: \hat y = \arg\max_c \tfrac{1}{T}\sum_t o_{t,c}

    Example::

        >>> import torch
        >>> from snntorch_clif.recipes import SpikingMLP, train_step, paper_optimizer
        >>> net = SpikingMLP(4, 3, hidden=8, T=2)
        >>> opt, _ = paper_optimizer(net, epochs=1)
        >>> loss, correct = train_step(net, torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1]), opt)
    """
    model.train()
    dtype = torch.float16 if x.device.type == "cuda" else torch.bfloat16
    with torch.autocast(x.device.type, dtype=dtype, enabled=amp):
        out = model(x)
        loss = tet_loss(out.float(), y, lamb=lamb)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    correct = int((out.detach().float().mean(0).argmax(1) == y).sum())
    return float(loss.detach()), correct


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], amp: bool = False) -> float:
    """Accuracy (fraction) of the mean-over-steps prediction on ``(x, y)`` batches.

    Example::

        >>> import torch
        >>> from snntorch_clif.recipes import SpikingMLP, evaluate
        >>> acc = evaluate(SpikingMLP(4, 3, hidden=8, T=2), [(torch.rand(5, 4), torch.zeros(5, dtype=torch.long))])
    """
    model.eval()
    correct = total = 0
    for x, y in batches:
        dtype = torch.float16 if x.device.type == "cuda" else torch.bfloat16
        with torch.autocast(x.device.type, dtype=dtype, enabled=amp):
            out = model(x)
        correct += int((out.float().mean(0).argmax(1) == y).sum())
        total += int(y.numel())
    return correct / max(total, 1)


class Cutout:
    """Zero one random ``length`` x ``length`` square of a ``[C, H, W]`` image (DeVries & Taylor, 2017).

    .. math:: x'_{c,i,j} = 0 \\text{ for } |i - i_0| < L/2,\\ |j - j_0| < L/2

    Example::

        >>> import torch
        >>> img = Cutout(16)(torch.ones(3, 32, 32))
        >>> bool((img == 0).any())
        True
    """

    def __init__(self, length: int = 16) -> None:
        self.length = length

    def __call__(self, img: Tensor) -> Tensor:
        h, w = img.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        img = img.clone()
        img[..., max(0, cy - half):min(h, cy + half), max(0, cx - half):min(w, cx + half)] = 0
        return img


CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def cifar_loaders(
    data_root: str | Path, dataset: str = "cifar10", batch_size: int = 128, workers: int = 4,
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """Train/test loaders for CIFAR-10/100 already on disk, with the paper's augmentation.

    Random crop 32 (padding 4), horizontal flip, normalisation, Cutout(16). Raises
    ``FileNotFoundError`` (never downloads) when the data is not under ``data_root``.

    Example::

        >>> train, test = cifar_loaders("~/data", "cifar10")   # doctest: +SKIP
    """
    import torchvision
    from torchvision import transforms as tf

    if dataset not in CIFAR_STATS:
        raise ValueError(f"dataset must be one of {tuple(CIFAR_STATS)}, got {dataset!r}")
    root = Path(data_root).expanduser()
    mean, std = CIFAR_STATS[dataset]
    train_tf = tf.Compose([
        tf.RandomCrop(32, padding=4), tf.RandomHorizontalFlip(), tf.ToTensor(), tf.Normalize(mean, std), Cutout(16),
    ])
    test_tf = tf.Compose([tf.ToTensor(), tf.Normalize(mean, std)])
    cls = torchvision.datasets.CIFAR10 if dataset == "cifar10" else torchvision.datasets.CIFAR100
    try:
        train_set = cls(str(root), train=True, transform=train_tf, download=False)
        test_set = cls(str(root), train=False, transform=test_tf, download=False)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise FileNotFoundError(
            f"{dataset} not found under {root} (expected torchvision's layout, e.g. "
            f"{root / 'cifar-10-batches-py'}); nothing is downloaded: {err}"
        ) from None
    pin = torch.cuda.is_available()
    return (
        torch.utils.data.DataLoader(train_set, batch_size, shuffle=True, num_workers=workers, pin_memory=pin,
                                    drop_last=True, persistent_workers=workers > 0),
        torch.utils.data.DataLoader(test_set, 256, shuffle=False, num_workers=workers, pin_memory=pin),
    )


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m snntorch_clif.recipes",
        description="The CLIF paper's CIFAR recipe: spiking pre-activation ResNet18, T=6, SGD 0.1 cosine, "
                    "TET loss, AMP. Needs the data on disk (nothing is downloaded).",
    )
    p.add_argument("--data-root", required=True, help="folder holding torchvision's CIFAR files")
    p.add_argument("--dataset", choices=tuple(CIFAR_STATS), default="cifar10")
    p.add_argument("--neuron", choices=NEURONS, default="clif")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=None, help="default: 5e-5 (CIFAR-10), 5e-4 (CIFAR-100)")
    p.add_argument("--T", type=int, default=6)
    p.add_argument("--no-amp", action="store_true", help="train in fp32")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="runs/recipe", help="folder for the checkpoint and the JSON log")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.T < 1 or args.batch_size < 1:
        p.error("--epochs, --T and --batch-size must be positive")
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Train the paper's ResNet18 on CIFAR from ``--data-root``; returns (and writes) the log.

    Example (shell)::

        python -m snntorch_clif.recipes --data-root ~/data --dataset cifar10 --neuron clif
    """
    args = _parse(argv)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    wd = args.weight_decay if args.weight_decay is not None else (5e-5 if args.dataset == "cifar10" else 5e-4)
    train_loader, test_loader = cifar_loaders(args.data_root, args.dataset, args.batch_size, args.workers)
    num_classes = 10 if args.dataset == "cifar10" else 100
    model = spiking_resnet18(args.neuron, num_classes, args.T).to(device)
    opt, sched = paper_optimizer(model, args.epochs, len(train_loader), args.lr, wd)
    amp = not args.no_amp
    scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log: dict = {"args": vars(args), "epochs": []}
    best = 0.0
    for epoch in range(args.epochs):
        start, seen, correct = time.perf_counter(), 0, 0
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            _, c = train_step(model, x, y, opt, scaler, amp)
            sched.step()
            seen, correct = seen + len(y), correct + c
        test_acc = evaluate(model, ((x.to(device), y.to(device)) for x, y in test_loader), amp)
        best = max(best, test_acc)
        row = {"epoch": epoch + 1, "train_acc": correct / seen, "test_acc": test_acc,
               "seconds": time.perf_counter() - start}
        log["epochs"].append(row)
        print(f"epoch {epoch + 1}/{args.epochs} train {row['train_acc']:.4f} test {test_acc:.4f} best {best:.4f} "
              f"({row['seconds']:.0f} s)", flush=True)
        if math.isfinite(test_acc) and test_acc >= best:
            torch.save(model.state_dict(), out / f"{args.dataset}_{args.neuron}_best.pt")
        (out / f"{args.dataset}_{args.neuron}.json").write_text(json.dumps(log, indent=2))
    log["best_test_acc"] = best
    (out / f"{args.dataset}_{args.neuron}.json").write_text(json.dumps(log, indent=2))
    return log


if __name__ == "__main__":
    main()
