r"""The main-job demo: the same small SNN trained twice, with CLIF and with snnTorch's ``Leaky``.

``python -m snntorch_clif.demo`` (or ``snntorch-clif-demo``) trains a direct-encoded
spiking MLP (Linear-BatchNorm-neuron twice, then a Linear read-out; 256 wide; T = 6)
on two data sets that need no download:

* ``digits``: scikit-learn's 8x8 handwritten digits (shipped inside scikit-learn);
* ``mnist1d``: MNIST-1D built by the ``mnist1d`` package's procedural generator
  (Greydanus, 2020; 4000 train / 1000 test signals of length 40).

Both neurons get the same seed (same initial weights, same batches), the same data and
the paper's recipe: SGD lr 0.1, momentum 0.9, cosine schedule, weight decay 5e-5, the
TET-style loss :math:`0.95\,\mathrm{CE} + 0.05\,\mathrm{MSE}(o_t, 1)` on the per-step
outputs, prediction by the mean output over steps. The ``Leaky`` twin is
``snn.Leaky(beta=0.5, threshold=1, reset_mechanism="subtract", reset_delay=False)``
with CLIF's rectangle surrogate: both charge :math:`h_t = \beta u_{t-1} + x_t`, fire on
:math:`h_t \ge \theta` and reset in the same step; CLIF's reset also subtracts
:math:`\sigma(m_t)`, the complementary potential.

It prints a table (final test accuracy mean +- std over seeds, seconds per training
epoch, backend) and writes ``results.json`` and ``curves.png`` under ``--out``.
Torchvision's MNIST, Fashion-MNIST and CIFAR-10 work when ``--data-root`` points at an
existing copy (a small spiking CNN is used); nothing is ever downloaded.

Example (shell)::

    python -m snntorch_clif.demo                                  # digits + mnist1d, 3 seeds
    python -m snntorch_clif.demo --dataset mnist1d --epochs 40 --seeds 5
    python -m snntorch_clif.demo --dataset mnist --data-root ~/data --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from . import __version__
from .recipes import NEURONS, SpikingConvNet, SpikingMLP, evaluate, paper_optimizer, train_step

__all__ = [
    "DATASETS", "Data", "DataError", "load_data", "build_model", "backend_name", "train_one", "run", "run_demo",
    "main", "format_table", "plot_curves", "build_parser", "parse_args",
]

TABULAR = ("digits", "mnist1d", "mnist1d-seq")
TORCHVISION = ("mnist", "fashion-mnist", "cifar10")
DATASETS = TABULAR + TORCHVISION
DEFAULT_DATASETS = ("digits", "mnist1d")
# Per-data-set defaults: (epochs, batch size, T). Sized so the default run (both sets,
# both neurons, 3 seeds) takes a few minutes on 2 CPU cores.
DEFAULTS = {
    "digits": (10, 128, 6),
    "mnist1d": (30, 128, 6),
    "mnist1d-seq": (30, 128, 8),
    "mnist": (5, 128, 6),
    "fashion-mnist": (5, 128, 6),
    "cifar10": (10, 128, 6),
}


class DataError(Exception):
    """A data set could not be loaded (absent, or would need a download)."""


@dataclass
class Data:
    """A data set held in memory: ``x`` float (or uint8 images), ``y`` int64 labels."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    kind: str  # "vector", "sequence" or "image"


def _standardise(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def _load_digits() -> Data:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    xtr, xte = _standardise(torch.tensor(xtr, dtype=torch.float32), torch.tensor(xte, dtype=torch.float32))
    return Data("digits", xtr, torch.tensor(ytr), xte, torch.tensor(yte), 10, "vector")


def _load_mnist1d(T: int, sequential: bool) -> Data:
    from mnist1d.data import get_dataset_args, make_dataset

    # The generator, not get_dataset(): that one downloads a pickle by default.
    raw = make_dataset(get_dataset_args())
    xtr = torch.tensor(raw["x"], dtype=torch.float32)
    xte = torch.tensor(raw["x_test"], dtype=torch.float32)
    name = "mnist1d-seq" if sequential else "mnist1d"
    if not sequential:
        return Data(name, xtr, torch.tensor(raw["y"]), xte, torch.tensor(raw["y_test"]), 10, "vector")
    # One chunk of the signal per step: the label depends on what arrived early.
    length = xtr.shape[1]
    chunk = math.ceil(length / T)
    pad = chunk * T - length
    xtr, xte = (nn.functional.pad(x, (0, pad)).reshape(len(x), T, chunk) for x in (xtr, xte))
    return Data(name, xtr, torch.tensor(raw["y"]), xte, torch.tensor(raw["y_test"]), 10, "sequence")


def _load_torchvision(name: str, root: Path) -> Data:
    import torchvision

    cls = {
        "mnist": torchvision.datasets.MNIST,
        "fashion-mnist": torchvision.datasets.FashionMNIST,
        "cifar10": torchvision.datasets.CIFAR10,
    }[name]
    try:
        train = cls(str(root), train=True, download=False)
        test = cls(str(root), train=False, download=False)
    except (RuntimeError, FileNotFoundError, OSError) as err:
        raise DataError(
            f"{name} not found under {root} (torchvision's layout expected, e.g. "
            f"{root / cls.__name__}/raw for MNIST or {root / 'cifar-10-batches-py'} for CIFAR-10); "
            f"the demo never downloads: {err}"
        ) from None

    def images(ds: Any) -> Tensor:
        data = torch.as_tensor(ds.data)
        return data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2).contiguous()

    return Data(
        name, images(train), torch.as_tensor(train.targets), images(test), torch.as_tensor(test.targets),
        10, "image",
    )


def load_data(name: str, T: int, data_root: Optional[str] = None) -> Data:
    """Load data set ``name`` into memory; never downloads.

    ``digits`` and ``mnist1d`` (``mnist1d-seq``: the length-40 signal cut into ``T``
    chunks, one per step) are built locally; ``mnist``, ``fashion-mnist`` and
    ``cifar10`` are read from ``data_root``. Raises :class:`DataError` when the data
    is not there.

    Example::

        >>> from snntorch_clif.demo import load_data
        >>> data = load_data("digits", T=6)
        >>> data.x_train.shape
        torch.Size([1347, 64])
    """
    if name == "digits":
        return _load_digits()
    if name in ("mnist1d", "mnist1d-seq"):
        return _load_mnist1d(T, sequential=name == "mnist1d-seq")
    if name in TORCHVISION:
        if data_root is None:
            raise DataError(f"--dataset {name} needs --data-root pointing at an existing torchvision copy")
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f"--data-root {root} does not exist or is not a folder (the demo never downloads)")
        return _load_torchvision(name, root)
    raise DataError(f"unknown data set {name!r}; choose from {DATASETS}")


def build_model(data: Data, neuron: str, T: int, hidden: int = 256) -> nn.Module:
    """The demo's network for ``data``: :class:`~snntorch_clif.recipes.SpikingMLP` or a small CNN.

    Example::

        >>> from snntorch_clif.demo import load_data, build_model
        >>> net = build_model(load_data("digits", 6), "clif", T=6)
    """
    if data.kind == "image":
        channels, size = data.x_train.shape[1], data.x_train.shape[-1]
        return SpikingConvNet(channels, data.num_classes, neuron=neuron, T=T, image_size=size)
    return SpikingMLP(data.x_train.shape[-1], data.num_classes, hidden=hidden, layers=2, neuron=neuron, T=T)


def backend_name(neuron: str, device: torch.device) -> str:
    """Which implementation runs ``neuron`` on ``device``: CLIF's backend, or snnTorch's eager Leaky.

    Uses ``snntorch_clif.backends()`` where the package provides it, else ``"reference"``
    (the pure-PyTorch CLIF).

    Example::

        >>> import torch
        >>> backend_name("leaky", torch.device("cpu"))
        'snntorch (eager)'
    """
    if neuron != "clif":
        return "snntorch (eager)"
    import snntorch_clif

    backends = getattr(snntorch_clif, "backends", None)
    if backends is None:
        return "reference"
    try:
        info = backends() if callable(backends) else backends
    except Exception as err:  # report, never fail the demo over a label
        return f"unknown ({type(err).__name__})"
    # snntorch_clif.backends() returns a report whose .devices maps device type -> use
    devices = getattr(info, "devices", info)
    if isinstance(devices, dict):
        picked = devices.get(device.type, devices.get(str(device)))
        if picked is None:
            return ", ".join(f"{k}: {v}" for k, v in devices.items())
        isa = getattr(info, "cpu_isa", None)
        if picked == "fused" and device.type == "cpu" and isa:
            return f"fused ({isa})"
        return str(picked)
    if isinstance(info, (list, tuple, set)):
        return ", ".join(map(str, info))
    return str(info)


class _Batches:
    """Shuffled mini-batches of in-memory tensors, normalising uint8 images on the fly."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, device: torch.device,
                 generator: Optional[torch.Generator] = None, stats: Optional[tuple[Tensor, Tensor]] = None) -> None:
        self.x, self.y, self.batch_size, self.device = x, y, batch_size, device
        self.generator, self.stats = generator, stats

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):  # noqa: ANN204 - a plain generator
        order = (torch.randperm(len(self.y), generator=self.generator) if self.generator is not None
                 else torch.arange(len(self.y)))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.x[idx]
            if self.stats is not None:
                mean, std = self.stats
                x = (x.float() / 255 - mean) / std
            yield x.to(self.device), self.y[idx].to(self.device)


def _image_stats(x: Tensor) -> Optional[tuple[Tensor, Tensor]]:
    if x.dtype != torch.uint8:
        return None
    sample = x[:10000].float() / 255
    return sample.mean((0, 2, 3)).view(-1, 1, 1), sample.std((0, 2, 3)).view(-1, 1, 1)


def train_one(
    data: Data, neuron: str, seed: int, epochs: int, T: int, batch_size: int, device: torch.device,
    lr: float = 0.1, weight_decay: float = 5e-5, hidden: int = 256, progress: bool = True,
    return_model: bool = False,
) -> dict:
    """Train one network with the paper's recipe; returns its per-epoch curves and final accuracy.

    The seed fixes the initial weights and the batch order, so CLIF and ``Leaky`` runs
    with the same seed see identical starting points and data. With ``return_model`` the
    trained network is returned under ``"model"`` too.

    .. math:: \\text{test accuracy} = \\frac{1}{N}\\sum_i [\\arg\\max_c \\tfrac{1}{T}\\textstyle\\sum_t o_{t,c}(x_i) = y_i]

    Example::

        >>> from snntorch_clif.demo import load_data, train_one
        >>> import torch
        >>> r = train_one(load_data("digits", 2), "clif", 0, 1, 2, 256, torch.device("cpu"), progress=False)
        >>> sorted(r)
        ['final_test_acc', 'loss', 'seconds_per_epoch', 'test_acc', 'train_acc']
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    model = build_model(data, neuron, T, hidden).to(device)
    stats = _image_stats(data.x_train)
    gen = torch.Generator().manual_seed(seed)
    train_batches = _Batches(data.x_train, data.y_train, batch_size, device, gen, stats)
    test_batches = _Batches(data.x_test, data.y_test, 1000, device, None, stats)
    opt, sched = paper_optimizer(model, epochs, len(train_batches), lr=lr, weight_decay=weight_decay)
    curves: dict[str, list[float]] = {"loss": [], "train_acc": [], "test_acc": []}
    seconds = []
    bar = tqdm(range(epochs), desc=f"{data.name:>11} {neuron:>5} seed {seed}", disable=not progress,
               leave=False, file=sys.stderr, dynamic_ncols=True)
    for _ in bar:
        start = time.perf_counter()
        total_loss = correct = seen = 0.0
        for x, y in train_batches:
            loss, c = train_step(model, x, y, opt)
            sched.step()
            total_loss += loss * len(y)
            correct += c
            seen += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        test_acc = evaluate(model, test_batches)
        curves["loss"].append(total_loss / seen)
        curves["train_acc"].append(correct / seen)
        curves["test_acc"].append(test_acc)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", test=f"{100 * test_acc:.1f}%")
    bar.close()
    result = {**curves, "final_test_acc": curves["test_acc"][-1],
              "seconds_per_epoch": statistics.fmean(seconds) if seconds else 0.0}
    if return_model:
        result["model"] = model
    return result


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def format_table(results: dict) -> str:
    """The summary table of :func:`run`'s results, one row per (data set, neuron).

    Example::

        >>> print(format_table({"digits": {"clif": {"acc_mean": 0.98, "acc_std": 0.002, "n_seeds": 3,
        ...     "seconds_per_epoch": 0.2, "backend": "reference"}}}))   # doctest: +NORMALIZE_WHITESPACE
        data set  neuron  test accuracy (mean ± std)  seeds  s/epoch  backend
        digits    clif    98.00 ± 0.20 %              3      0.20     reference
    """
    header = ("data set", "neuron", "test accuracy (mean ± std)", "seeds", "s/epoch", "backend")
    rows = [header]
    for dataset, per_neuron in results.items():
        for neuron, r in per_neuron.items():
            rows.append((dataset, neuron, f"{100 * r['acc_mean']:.2f} ± {100 * r['acc_std']:.2f} %",
                         str(r["n_seeds"]), f"{r['seconds_per_epoch']:.2f}", r["backend"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def plot_curves(results: dict, path: Path) -> None:
    """Test accuracy per epoch (mean over seeds, +- std band) for each data set and neuron.

    Example::

        >>> plot_curves(results, Path("curves.png"))   # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, (dataset, per_neuron) in zip(axes[0], results.items()):
        for neuron, r in per_neuron.items():
            acc = 100 * np.array([run["test_acc"] for run in r["runs"]])
            epochs = np.arange(1, acc.shape[1] + 1)
            mean, std = acc.mean(0), acc.std(0)
            label = f"{'CLIF' if neuron == 'clif' else 'LIF (snn.Leaky)'}: {mean[-1]:.1f}%"
            ax.plot(epochs, mean, label=label)
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.25)
        ax.set_title(f"{dataset} (n={len(next(iter(per_neuron.values()))['runs'])} seeds)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace, datasets: dict[str, Data]) -> dict:
    """Train every (data set, neuron, seed) of ``args`` on the loaded ``datasets``; returns the results.

    Example::

        >>> results = run(parse_args(["--dataset", "digits", "--epochs", "1"]), {...})   # doctest: +SKIP
    """
    device = torch.device(args.device)
    results: dict[str, dict] = {}
    for name, data in datasets.items():
        epochs, batch_size, T = _settings(args, name)
        results[name] = {}
        for neuron in args.neurons:
            runs = [
                train_one(data, neuron, seed, epochs, T, batch_size, device, lr=args.lr,
                          weight_decay=args.weight_decay, hidden=args.hidden, progress=not args.quiet)
                for seed in range(args.seed, args.seed + args.seeds)
            ]
            mean, std = _mean_std([r["final_test_acc"] for r in runs])
            results[name][neuron] = {
                "acc_mean": mean, "acc_std": std, "n_seeds": len(runs),
                "accs": [r["final_test_acc"] for r in runs],
                "seconds_per_epoch": statistics.fmean(r["seconds_per_epoch"] for r in runs),
                "backend": backend_name(neuron, device), "epochs": epochs, "batch_size": batch_size, "T": T,
                "runs": runs,
            }
            if not args.quiet:
                print(f"{name:>11} {neuron:>5}: {100 * mean:.2f} ± {100 * std:.2f} % over {len(runs)} seeds",
                      file=sys.stderr, flush=True)
    return results


def _settings(args: argparse.Namespace, name: str) -> tuple[int, int, int]:
    epochs, batch_size, T = DEFAULTS[name]
    return (args.epochs or epochs, args.batch_size or batch_size, args.T or T)


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The demo's command-line interface.

    Example::

        >>> build_parser().parse_args(["--dataset", "mnist1d", "--seeds", "5"]).seeds
        5
    """
    p = argparse.ArgumentParser(
        prog="snntorch-clif-demo",
        description="Train the same small SNN with CLIF and with snnTorch's Leaky (beta=0.5, reset_delay=False) "
                    "under the CLIF paper's recipe, and compare. Nothing is downloaded.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", nargs="+", choices=DATASETS, default=list(DEFAULT_DATASETS), metavar="NAME",
                   help=f"data set(s): {', '.join(DATASETS)} (the last three need --data-root)")
    p.add_argument("--neurons", nargs="+", choices=NEURONS, default=list(NEURONS), help="neuron model(s)")
    p.add_argument("--T", type=_positive(int), default=None, help="time steps (default: 6; 8 for mnist1d-seq)")
    p.add_argument("--epochs", type=_positive(int), default=None,
                   help="epochs (default per data set: " + ", ".join(f"{k} {v[0]}" for k, v in DEFAULTS.items()) + ")")
    p.add_argument("--seeds", type=_positive(int), default=3, help="number of seeds (mean ± std over them)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--batch-size", type=_positive(int), default=None, help="batch size (default 128)")
    p.add_argument("--lr", type=_positive(float), default=0.1, help="SGD learning rate (momentum 0.9, cosine)")
    p.add_argument("--weight-decay", type=float, default=5e-5)
    p.add_argument("--hidden", type=_positive(int), default=256, help="width of the MLP's hidden layers")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--threads", type=_positive(int), default=1,
                   help="CPU threads for torch; the demo's networks are small, and one thread avoids "
                        "OpenMP threads spinning against each other on a busy machine")
    p.add_argument("--out", default="outputs/demo", help="folder for results.json and curves.png")
    p.add_argument("--data-root", default=None,
                   help="folder with an existing torchvision copy of MNIST/Fashion-MNIST/CIFAR-10")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and check the command line; errors exit through argparse with a clear message.

    Example::

        >>> parse_args(["--neurons", "clif"]).neurons
        ['clif']
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.dataset = list(dict.fromkeys(args.dataset))
    args.neurons = list(dict.fromkeys(args.neurons))
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a torch device")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available here")
    needs_root = [d for d in args.dataset if d in TORCHVISION]
    if needs_root and args.data_root is None:
        parser.error(f"--dataset {' '.join(needs_root)} needs --data-root pointing at an existing torchvision copy "
                     "(the demo never downloads)")
    if args.data_root is not None and not Path(args.data_root).expanduser().is_dir():
        parser.error(f"--data-root {args.data_root}: no such folder")
    return args


def run_demo(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the demo: train, print the table, write ``results.json`` and ``curves.png``.

    Returns the JSON document (with the per-epoch curves of every run). Exits with
    status 2 and a clear message on bad arguments or missing data.

    Example::

        >>> doc = run_demo(["--dataset", "digits", "--epochs", "2", "--seeds", "2"])   # doctest: +SKIP
        >>> doc["results"]["digits"]["clif"]["acc_mean"]                               # doctest: +SKIP
        0.95...
    """
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    datasets: dict[str, Data] = {}
    for name in args.dataset:
        try:
            datasets[name] = load_data(name, _settings(args, name)[2], args.data_root)
        except DataError as err:
            build_parser().error(str(err))
    results = run(args, datasets)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "config": {k: v for k, v in vars(args).items()},
        "results": results,
        "environment": {
            "snntorch_clif": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "machine": platform.machine(),
        },
        "total_seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(document, indent=1))
    plot_curves(results, out / "curves.png")
    print(format_table(results))
    print(f"LIF twin: snn.Leaky(beta=0.5, threshold=1.0, reset_mechanism='subtract', reset_delay=False), "
          f"same rectangle surrogate. Total {document['total_seconds']:.0f} s. Wrote {out / 'results.json'} "
          f"and {out / 'curves.png'}.")
    return document


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point (``snntorch-clif-demo``, ``python -m snntorch_clif.demo``); returns 0.

    Example (shell)::

        python -m snntorch_clif.demo --dataset digits --epochs 5 --seeds 2 --out /tmp/demo
    """
    run_demo(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
