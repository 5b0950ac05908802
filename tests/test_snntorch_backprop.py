"""snnTorch's own training utilities and class-level helpers on CLIF networks, unchanged.

``snntorch.backprop`` (BPTT, TBPTT, RTRL) unpacks the last layer's outputs by its class
and resets/detaches hidden state through ``snn.Leaky.reset_hidden``/``detach_hidden``;
users also call ``SpikingNeuron.detach`` on their states. Each must reach both CLIF
states, on the fused kernel and on the reference path.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Callable

import pytest
import snntorch as snn
import snntorch.functional as SF
import snntorch.surrogate as sns
import snntorch.utils
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snntorch_clif import CLIF, backends

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # "snntorch.backprop will be deprecated"
    from snntorch import backprop

T, N, FEATURES, CLASSES = 8, 48, 8, 3
BACKENDS = ["fused", "reference"]


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    with backends.use_reference() if name == "reference" else contextlib.nullcontext():
        yield


def clif_net() -> nn.Sequential:
    """snnTorch's docstring network for backprop, Leaky swapped for CLIF (atan, as Leaky's default)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(FEATURES, 16), CLIF(init_hidden=True, spike_grad=sns.atan()),
        nn.Linear(16, CLASSES), CLIF(init_hidden=True, output=True, spike_grad=sns.atan()),
    )


def sequences() -> tuple[torch.Tensor, torch.Tensor]:
    """[N, T, FEATURES] noisy class prototypes, labels [N]."""
    g = torch.Generator().manual_seed(0)
    prototypes = torch.rand(CLASSES, FEATURES, generator=g)
    labels = torch.arange(N) % CLASSES
    return 3 * (prototypes[labels].unsqueeze(1) + 0.1 * torch.rand(N, T, FEATURES, generator=g)), labels


# snnTorch 1.0's TBPTT reads an unset K_flag when K is given with time-varying data (for
# Leaky too), so TBPTT with K < T and RTRL (K = 1) run on static data, num_steps = T.
METHODS: dict[str, tuple[Callable, dict, bool]] = {
    "BPTT": (backprop.BPTT, dict(time_var=True, time_first=False), True),
    "TBPTT_K3": (backprop.TBPTT, dict(time_var=False, num_steps=T, K=3), False),
    "RTRL": (backprop.RTRL, dict(time_var=False, num_steps=T), False),
}


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("method", list(METHODS))
def test_snntorch_backprop_trains_a_clif_network(method: str, name: str) -> None:
    train, kwargs, time_varying = METHODS[method]
    x, labels = sequences()
    data = x if time_varying else x[:, 0]
    net = clif_net()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-2)
    losses = []
    with backend(name), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for _ in range(6):
            loader = DataLoader(TensorDataset(data, labels), batch_size=16)
            losses.append(float(train(net, loader, optimizer, SF.ce_rate_loss(), **kwargs).detach()))
    assert losses[-1] < 0.85 * losses[0], losses


def test_snntorch_counts_three_outputs_for_a_clif_output_layer_only() -> None:
    count = snntorch.utils._final_layer_check
    assert count(clif_net()) == 3  # spk, comp, mem -> snnTorch unpacks spk, _, mem
    leaky = nn.Sequential(nn.Linear(2, 2), snn.Leaky(beta=0.5, init_hidden=True, output=True))
    assert count(leaky) == 2  # snnTorch's own answer for everything else
    assert count(nn.Sequential(nn.Linear(2, 2), CLIF(init_hidden=True))) == 2  # as for Leaky
    assert count(nn.Sequential(nn.Linear(2, 2))) == 1


def driven(name: str, **kwargs) -> tuple[CLIF, CLIF]:
    """Two CLIF layers whose kept states hold a graph."""
    a, b = CLIF(init_hidden=True, **kwargs), CLIF(init_hidden=True, **kwargs)
    x = (3 * torch.rand(4 if kwargs.get("step_mode") == "multi" else 1, 2, 3)).requires_grad_()
    with backend(name):
        for layer in (a, b):
            layer(x if kwargs.get("step_mode") == "multi" else x[0])
    assert all(s.requires_grad for layer in (a, b) for s in (layer.comp, layer.mem))
    return a, b


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kwargs", [{}, {"step_mode": "multi"}, {"step_mode": "multi", "state_sequences": True}],
                         ids=["single", "multi", "multi_sequences"])
def test_snntorch_leaky_detach_hidden_detaches_both_states(name: str, kwargs: dict) -> None:
    a, b = driven(name, **kwargs)
    snn.Leaky.detach_hidden()  # snnTorch's class-level method: runs `mem.detach_()` on every Leaky
    assert not any(s.requires_grad for layer in (a, b) for s in (layer.comp, layer.mem))


@pytest.mark.parametrize("name", BACKENDS)
def test_snntorch_leaky_reset_hidden_zeroes_both_states(name: str) -> None:
    a, b = driven(name)
    snn.Leaky.reset_hidden()
    assert all(s.abs().sum() == 0 and not s.requires_grad for layer in (a, b) for s in (layer.comp, layer.mem))


@pytest.mark.parametrize("name", BACKENDS)
def test_spiking_neuron_detach_on_returned_and_kept_states(name: str) -> None:
    clif = CLIF()
    x = (3 * torch.rand(2, 3)).requires_grad_()
    with backend(name):
        comp, mem = clif.reset_mem()
        spk, comp, mem = clif(x, comp, mem)
        snn.SpikingNeuron.detach(comp, mem)  # snnTorch detaches in place: states are no views
        assert not comp.requires_grad and not mem.requires_grad
        clif(x)  # kept states with a graph again
        clif.detach(clif.mem)  # SpikingNeuron.detach, inherited, on the kept mem only
        assert not clif.comp.requires_grad and not clif.mem.requires_grad


@pytest.mark.parametrize("name", BACKENDS)
def test_truncated_bptt_by_hand_with_snntorch_detach_hidden(name: str) -> None:
    """The TBPTT pattern: backward every K steps, then snn.Leaky.detach_hidden()."""
    net = clif_net()
    x, _ = sequences()
    with backend(name):
        snntorch.utils.reset(net)
        for start in range(0, T, 4):
            loss = sum(net(x[:16, t])[2].pow(2).mean() for t in range(start, start + 4))
            loss.backward()  # a comp left attached would backward into the freed window
            snn.Leaky.detach_hidden()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
