"""Soak: thousands of training iterations keep memory, registries and graphs bounded.

A user trains for hours: every batch resets the states, networks are created, saved,
loaded and dropped (checkpoints, evaluation copies, hyper-parameter sweeps). Over a few
thousand iterations in both call modes this checks that

* resident memory settles: no growth over the second half of the run beyond a tolerance
  that a leak of one batch's autograd graph per iteration would exceed many times over;
* ``CLIF._live`` and ``snntorch.SpikingNeuron.instances`` hold only the networks alive now;
* after a reset, a batch's autograd graph does not reach the previous batch's: the graph
  has the same number of nodes every batch, and the previous batch's state tensors are
  freed while the next batch's graph is alive.

Run with ``-s`` to see the memory figures.
"""

import gc
import io
import os
import weakref

import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_clif
from snntorch_clif import CLIF

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads resident memory from /proc (Linux)"),
]

T, BATCH, FEATURES, HIDDEN, CLASSES = 8, 16, 8, 32, 4
ROUNDS, ITERATIONS_PER_ROUND = 30, 40  # x 2 call modes = 2,400 training iterations
# One batch's graph here keeps ~100 kB alive (T steps x 2 layers of saved activations, plus
# autograd nodes): a per-iteration leak would add > 100 MB over the second half.
GROWTH_TOLERANCE_BYTES = 16 * 2**20


def resident_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (second field, in pages)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Explicit(nn.Module):
    """Explicit-state network: states are created by ``reset_mem`` and passed by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(FEATURES, HIDDEN), nn.Linear(HIDDEN, CLASSES)
        self.lif1, self.lif2 = CLIF(learn_beta=True), CLIF(learn_threshold=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        comp1, mem1 = self.lif1.reset_mem()  # the reset of every batch
        comp2, mem2 = self.lif2.reset_mem()
        mems = []
        for xt in x:
            spk1, comp1, mem1 = self.lif1(self.fc1(xt), comp1, mem1)
            _, comp2, mem2 = self.lif2(self.fc2(spk1), comp2, mem2)
            mems.append(mem2)
        return torch.stack(mems)


def make_net(mode: str) -> nn.Module:
    if mode == "explicit":
        return Explicit()
    return nn.Sequential(
        nn.Linear(FEATURES, HIDDEN), CLIF(init_hidden=True, learn_beta=True),
        nn.Linear(HIDDEN, CLASSES), CLIF(init_hidden=True, learn_threshold=True, output=True),
    )


def membrane_trace(net: nn.Module, mode: str, x: torch.Tensor) -> torch.Tensor:
    if mode == "explicit":
        return net(x)
    snntorch_clif.reset(net)  # the reset of every batch
    return torch.stack([net(xt)[2] for xt in x])


def last_state(net: nn.Module) -> torch.Tensor:
    """The output layer's membrane potential after the last step (a tensor of the graph)."""
    return [m for m in net.modules() if isinstance(m, CLIF)][-1].mem


def graph_nodes(tensor: torch.Tensor) -> int:
    """How many autograd nodes ``tensor``'s graph has (everything reachable from its grad_fn)."""
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


def checkpoint_round_trip(net: nn.Module, mode: str) -> nn.Module:
    """torch.save/load twice, as a training script might: the state dict, then the whole module."""
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    fresh = make_net(mode)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    buffer = io.BytesIO()
    torch.save(fresh, buffer)  # pickles the CLIF modules (they re-register on load)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def train_round(mode: str, generator: torch.Generator, graph_sizes: set[int]) -> None:
    net = make_net(mode)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    previous_state = None
    for _ in range(ITERATIONS_PER_ROUND):
        x = 2 * torch.rand(T, BATCH, FEATURES, generator=generator)
        y = torch.randint(0, CLASSES, (BATCH,), generator=generator)
        loss = nn.functional.cross_entropy(membrane_trace(net, mode, x).mean(0), y)
        graph_sizes.add(graph_nodes(loss))
        # The previous batch's last state is gone (freed by reference counting, no gc
        # needed) while this batch's graph is alive: nothing of this graph, and nothing on
        # the module, still refers to it.
        assert previous_state is None or previous_state() is None, "the last batch's graph outlived its reset"
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        previous_state = weakref.ref(last_state(net))
    reloaded = checkpoint_round_trip(net, mode)
    for saved, loaded in zip(net.parameters(), reloaded.parameters()):
        assert torch.equal(saved, loaded)


def test_long_training_keeps_memory_registries_and_graphs_bounded() -> None:
    generator = torch.Generator().manual_seed(0)
    graph_sizes: dict[str, set[int]] = {"explicit": set(), "init_hidden": set()}
    gc.collect()
    # Neurons other tests left alive, if any, are a constant offset.
    live_before, instances_before = len(CLIF._live), len(snn.SpikingNeuron.instances)
    rss, live, instances = [], [], []
    for _ in range(ROUNDS):
        for mode in ("explicit", "init_hidden"):
            train_round(mode, generator, graph_sizes[mode])
        gc.collect()
        rss.append(resident_bytes())
        live.append(len(CLIF._live))
        instances.append(len(snn.SpikingNeuron.instances))

    half = ROUNDS // 2
    growth = max(rss[half:]) - rss[half]
    mib = 2**20
    print(
        f"\nsoak: {2 * ROUNDS * ITERATIONS_PER_ROUND} iterations; RSS first round {rss[0] / mib:.1f} MiB, "
        f"mid-run {rss[half] / mib:.1f} MiB, end {rss[-1] / mib:.1f} MiB, max {max(rss) / mib:.1f} MiB; "
        f"growth over the second half {growth / mib:+.2f} MiB (tolerance {GROWTH_TOLERANCE_BYTES / mib:.0f} MiB); "
        f"CLIF._live max {max(live)}, SpikingNeuron.instances max {max(instances)}"
    )
    assert growth < GROWTH_TOLERANCE_BYTES, [f"{r / mib:.1f}" for r in rss]
    # Every network of a round (trained, re-created from the state dict, unpickled) has
    # been dropped by the end of it: none of their neurons stays registered.
    assert set(live) == {live_before} and set(instances) == {instances_before}, (live, instances)
    # The graph of every batch has one size per call mode: no batch reaches into the last one.
    assert all(len(sizes) == 1 for sizes in graph_sizes.values()), graph_sizes
