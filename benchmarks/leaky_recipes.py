"""snnTorch's training recipes with snn.Leaky swapped for CLIF: what changes, measured.

Two recipes, on sklearn's 8x8 digits upsampled to MNIST's 28x28 (1437 train / 360 test;
no download):

``tutorial5``
    snnTorch tutorial 5: FC 784-1000-10, ``beta=0.95``, 25 steps of the static image,
    cross-entropy on the output layer's membrane at *every* step, Adam(5e-4), batch 128;
    test accuracy by **spike count**. Variants: ``leaky``; ``clif`` (the plain swap);
    ``clif_none`` (output layer ``reset_mechanism="none"``); ``clif_delay`` (the one
    documented change: output layer ``reset_delay=True``, which reports the membrane before
    the reset).
``count``
    snnTorch's quickstart / tutorial 7 target: ``mse_count_loss(correct_rate=0.8,
    incorrect_rate=0.2)`` (the correct neuron should fire in 80 % of the steps), the
    quickstart's neuron settings (``beta=0.5``, atan surrogate, Adam(1e-2)) on an FC
    784-100-10 network (the quickstart's convolutions are slow on a CPU), 25 steps, batch 128. Reports
    the iterations until the running train loss and the running spike-count accuracy first
    reach a level. Variants: ``leaky``, ``clif``, ``clif_lr2`` (twice the learning rate),
    ``clif_none`` (output ``reset_mechanism="none"``).

Usage::

    .venv/bin/python benchmarks/leaky_recipes.py tutorial5 --seeds 0 1 --json t5.json
    .venv/bin/python benchmarks/leaky_recipes.py count --iters 300 --json count.json

Measured tutorial-5 runs (469 iterations, every variant): ``benchmarks/recipes/tutorial5_reset_delay.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import snntorch as snn
import snntorch.functional as SF
import snntorch.surrogate as sns
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from snntorch_clif import CLIF


def digits_28x28(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sklearn digits as [N, 1, 28, 28] in [0, 1] (MNIST's shape and range), a fixed split."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    images = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    labels = torch.as_tensor(y)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    test, train = order[:360], order[360:]
    return images[train], labels[train], images[test], labels[test]


def neuron(kind: str, beta: float, output: bool = False, **extra) -> nn.Module:
    if kind == "leaky":
        return snn.Leaky(beta=beta, init_hidden=True, output=output, **extra)
    reset = "none" if (output and kind == "clif_none") else "subtract"
    delay = output and kind == "clif_delay"
    return CLIF(beta=beta, init_hidden=True, output=output, reset_mechanism=reset, reset_delay=delay, **extra)


def run_steps(net: nn.Sequential, x: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Reset, then feed the static image for ``steps`` steps: ([T, B, 10] spikes, membranes)."""
    for m in net.modules():
        if isinstance(m, CLIF):
            m.reset_mem()
        elif isinstance(m, snn.Leaky):
            m.mem = torch.zeros(0)
    spikes, mems = [], []
    for _ in range(steps):
        out = net(x)
        spikes.append(out[0])
        mems.append(out[-1])
    return torch.stack(spikes), torch.stack(mems)


def spike_count_accuracy(net: nn.Sequential, x: Tensor, y: Tensor, steps: int) -> float:
    with torch.no_grad():
        spk, _ = run_steps(net, x, steps)
    return (spk.sum(0).argmax(1) == y).float().mean().item()


def batches(x: Tensor, y: Tensor, size: int, generator: torch.Generator):
    while True:
        order = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y) - size + 1, size):  # full batches only, as drop_last
            yield x[order[i:i + size]], y[order[i:i + size]]


def tutorial5(kind: str, seed: int, iters: int) -> dict:
    xtr, ytr, xte, yte = digits_28x28()
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), neuron(kind, 0.95),
                        nn.Linear(1000, 10), neuron(kind, 0.95, output=True))
    opt = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
    ce = nn.CrossEntropyLoss()
    data = batches(xtr, ytr, 128, torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    for _ in range(iters):
        x, y = next(data)
        _, mem = run_steps(net, x, 25)
        loss = sum(ce(m, y) for m in mem)  # tutorial 5: CE on the membrane at every step
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        spk, mem = run_steps(net, xte, 25)
    return {
        "recipe": "tutorial5", "kind": kind, "seed": seed, "iters": iters,
        "spike_count_accuracy": (spk.sum(0).argmax(1) == yte).float().mean().item(),
        "membrane_accuracy": (mem[-1].argmax(1) == yte).float().mean().item(),
        "output_spikes_per_step": spk.mean().item() * 10,
        "seconds": time.perf_counter() - start,
    }


def first_reached(values: list[float], level: float, below: bool) -> int | None:
    for i, v in enumerate(values):
        if (v <= level) if below else (v >= level):
            return i + 1
    return None


def count(kind: str, seed: int, iters: int) -> dict:
    xtr, ytr, xte, yte = digits_28x28()
    torch.manual_seed(seed)
    atan = sns.atan()
    base = "clif" if kind.startswith("clif") else kind
    out_kind = "clif_none" if kind == "clif_none" else base
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 100), neuron(base, 0.5, spike_grad=atan),
        nn.Linear(100, 10), neuron(out_kind, 0.5, output=True, spike_grad=atan),
    )
    lr = 2e-2 if kind == "clif_lr2" else 1e-2
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999))
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    data = batches(xtr, ytr, 128, torch.Generator().manual_seed(seed))
    losses, accs, run_loss, run_acc = [], [], None, None
    start = time.perf_counter()
    for _ in range(iters):
        x, y = next(data)
        spk, _ = run_steps(net, x, 25)
        loss = loss_fn(spk, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc = (spk.sum(0).argmax(1) == y).float().mean().item()
        run_loss = loss.item() if run_loss is None else 0.9 * run_loss + 0.1 * loss.item()
        run_acc = acc if run_acc is None else 0.9 * run_acc + 0.1 * acc
        losses.append(run_loss)
        accs.append(run_acc)
    return {
        "recipe": "count", "kind": kind, "seed": seed, "iters": iters,
        "iters_to_running_acc": {str(a): first_reached(accs, a, below=False) for a in (0.5, 0.7, 0.8, 0.9)},
        "iters_to_running_loss": {str(v): first_reached(losses, v, below=True) for v in (1.5, 1.0, 0.7, 0.5)},
        "running_loss_every_20": losses[19::20],
        "running_acc_every_20": accs[19::20],
        "final_running_loss": losses[-1],
        "test_spike_count_accuracy": spike_count_accuracy(net, xte, yte, 25),
        "seconds": time.perf_counter() - start,
    }


RECIPES: dict[str, tuple[Callable[[str, int, int], dict], tuple[str, ...], int]] = {
    "tutorial5": (tutorial5, ("leaky", "clif", "clif_none", "clif_delay"), 60),
    "count": (count, ("leaky", "clif", "clif_lr2", "clif_none"), 150),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", choices=list(RECIPES))
    parser.add_argument("--kinds", nargs="*", help="variants to run (default: all of the recipe's)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--iters", type=int, help="training iterations (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run, kinds, iters = RECIPES[args.recipe]
    results = []
    for seed in args.seeds:
        for kind in args.kinds or kinds:
            result = run(kind, seed, args.iters or iters)
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
