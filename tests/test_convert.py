"""CLIF-to-LIF conversion (snntorch_clif.convert), the HardResetLIF neuron, and NIR export/import."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from snntorch_clif import CLIF
from snntorch_clif.convert import HardResetLIF, export_nir, import_nir, lif_to_nir, reset_nir_states, to_leaky
from snntorch_clif.recipes import SpikingMLP, reset_states

nir = pytest.importorskip("nir")
snn_export = pytest.importorskip("snntorch.export_nir")
snn_import = pytest.importorskip("snntorch.import_nir")


def _run_steps(net: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    return torch.stack([net(x) for x in x_seq])


def _two_layer(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 12), CLIF(init_hidden=True), nn.Linear(12, 4), CLIF(init_hidden=True))
    with torch.no_grad():  # make the second layer fire too
        net[2].weight.mul_(3.0)
        net[2].bias.fill_(0.4)
    return net


# --- HardResetLIF ---------------------------------------------------------------------

def test_hard_reset_to_v_reset_by_hand() -> None:
    lif = HardResetLIF(beta=0.5, threshold=1.0, v_reset=-0.1)
    mem = lif.reset_mem()
    spikes, mems = [], []
    for x in (1.2, 0.3, 0.9, 0.0):
        spk, mem = lif(torch.tensor([x]), mem)
        spikes.append(spk.item())
        mems.append(mem.item())
    # t1: h=1.2 fires -> -0.1; t2: h=-0.05+0.3=0.25; t3: h=0.125+0.9=1.025 fires -> -0.1; t4: -0.05
    assert spikes == [1.0, 0.0, 1.0, 0.0]
    assert mems == pytest.approx([-0.1, 0.25, -0.1, -0.05])


def test_fires_at_threshold_exactly_like_clif() -> None:
    spk, _ = HardResetLIF(beta=0.5, threshold=1.0).step(torch.tensor([1.0, 0.999]), torch.zeros(2))
    assert spk.tolist() == [1.0, 0.0]


@pytest.mark.parametrize("mechanism, expected", [("subtract", [0.2, 0.6]), ("none", [1.2, 1.1])])
def test_other_resets(mechanism: str, expected: list[float]) -> None:
    lif = HardResetLIF(beta=0.5, v_reset=-0.5, reset_mechanism=mechanism, init_hidden=True, output=True)
    mems = [lif(torch.tensor([x]))[1].item() for x in (1.2, 0.5)]
    assert mems == pytest.approx(expected)


def test_multi_step_equals_step_loop_and_carries_state() -> None:
    torch.manual_seed(1)
    x = torch.rand(7, 3, 5) * 1.5
    single = HardResetLIF(v_reset=-0.06, init_hidden=True)
    multi = HardResetLIF(v_reset=-0.06, init_hidden=True, step_mode="multi")
    expected = _run_steps(single, x)
    got = torch.cat([multi(x[:3]), multi(x[3:])])  # state carried across calls
    assert torch.equal(got, expected)
    assert expected.sum() > 0
    multi.reset_mem()
    assert float(multi.mem.abs().sum()) == 0.0


def test_gradient_flows_through_hard_reset() -> None:
    x = torch.full((4, 1), 0.8, requires_grad=True)
    spk = HardResetLIF(v_reset=-0.06, step_mode="multi", init_hidden=True)(x)
    spk.sum().backward()
    assert x.grad is not None and bool((x.grad != 0).any())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="reset_mechanism"):
        HardResetLIF(reset_mechanism="soft")
    with pytest.raises(ValueError, match="beta"):
        HardResetLIF(beta=1.5)
    with pytest.raises(TypeError, match="init_hidden"):
        HardResetLIF(init_hidden=True)(torch.zeros(2), torch.zeros(2))


# --- to_leaky -------------------------------------------------------------------------

def test_to_leaky_copies_and_keeps_parameters() -> None:
    beta = torch.linspace(0.2, 0.9, 12)
    net = nn.Sequential(nn.Linear(6, 12), CLIF(beta=beta, threshold=0.7, init_hidden=True, learn_beta=True))
    lif_net = to_leaky(net, v_reset=-0.06)
    assert isinstance(net[1], CLIF), "the original must be untouched"
    lif = lif_net[1]
    assert isinstance(lif, HardResetLIF)
    assert torch.equal(lif.beta, beta)
    assert float(lif.threshold) == pytest.approx(0.7)
    assert float(lif.v_reset) == pytest.approx(-0.06)
    assert torch.equal(lif_net[0].weight, net[0].weight)
    assert lif_net[0].weight is not net[0].weight
    assert not any(isinstance(m, CLIF) for m in lif_net.modules())


def test_to_leaky_refuses_explicit_state_layers() -> None:
    with pytest.raises(ValueError, match=r"init_hidden=True; layer '1' takes and returns its states"):
        to_leaky(nn.Sequential(nn.Linear(2, 2), CLIF()))


def test_output_layer_keeps_snntorchs_leaky_return_convention() -> None:
    net = nn.Sequential(nn.Linear(3, 4), CLIF(init_hidden=True, output=True))
    lif_net = to_leaky(net)
    assert lif_net[1].output and lif_net[1].init_hidden
    spk, mem = lif_net(torch.rand(2, 3))  # (spk, mem), as snn.Leaky(output=True) returns
    assert spk.shape == mem.shape == (2, 4)


def _nir_notebook_network() -> nn.Sequential:
    """snnTorch's NIR export notebook's network, snn.Leaky swapped for CLIF."""
    torch.manual_seed(7)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 500), CLIF(beta=0.9, init_hidden=True),
        nn.Linear(500, 10), CLIF(beta=0.9, init_hidden=True, output=True),
    )
    with torch.no_grad():  # make the output layer fire within a few steps
        net[3].weight.mul_(4.0)
        net[3].bias.fill_(0.3)
    return net


@pytest.mark.parametrize("v_reset", [0.0, -0.06])
def test_nir_notebook_network_round_trips_with_its_output_layer(v_reset: float) -> None:
    lif_net = to_leaky(_nir_notebook_network(), v_reset=v_reset)
    graph = export_nir(lif_net, torch.randn(1, 784))
    lifs = {k: v for k, v in graph.nodes.items() if isinstance(v, nir.LIF)}
    assert sorted(lifs) == ["2", "4"] and lifs["4"].v_reset.shape == (10,)
    np.testing.assert_allclose(lifs["4"].v_reset, v_reset)
    back = import_nir(graph) if v_reset else snn_import.import_from_nir(graph)
    torch.manual_seed(8)
    # one sample per step: snnTorch exports nn.Flatten as NIR Flatten(start_dim=0) and its
    # importer flattens the batch dimension too (for snn.Leaky networks as well)
    x = torch.rand(10, 1, 784)
    reset_nir_states(lif_net)
    reset_nir_states(back)
    expected = [lif_net(step) for step in x]  # (spk, mem) per step: output=True
    got = [back(step)[0] for step in x]
    assert torch.stack([e[0] for e in expected]).sum() > 0, "the output layer fires"
    assert all(torch.equal(e[0].flatten(), g.flatten()) for e, g in zip(expected, got))


def test_single_layer_spikes_agree_until_the_first_spike() -> None:
    torch.manual_seed(2)
    x = torch.rand(10, 64, 32) * 0.9  # most neurons fire after a few steps
    clif = CLIF(step_mode="multi", init_hidden=True)
    lif = to_leaky(clif, v_reset=-0.2)
    s_clif, s_lif = clif(x), lif(x)
    fired = s_clif.cumsum(0)
    before_or_at_first = (fired - s_clif) == 0  # no earlier spike of that neuron
    assert bool(before_or_at_first.any()) and bool((~before_or_at_first).any())
    assert torch.equal(s_clif[before_or_at_first], s_lif[before_or_at_first])
    assert not torch.equal(s_clif, s_lif), "after the first reset the two neurons differ"


def test_converted_network_reproduces_clif_exactly_without_spikes() -> None:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 12), CLIF(init_hidden=True), nn.Linear(12, 4), CLIF(init_hidden=True))
    lif_net = to_leaky(net, v_reset=-0.06)
    x = torch.rand(8, 5, 6) * 0.05  # sub-threshold: no spikes anywhere
    assert torch.equal(_run_steps(net, x), _run_steps(lif_net, x))
    assert torch.equal(net[3].mem, lif_net[3].mem), "membrane potentials coincide bit for bit"
    assert float(net[3].mem.detach().abs().sum()) > 0


def test_demo_network_converts_and_v_reset_matters() -> None:
    torch.manual_seed(4)
    model = SpikingMLP(10, 3, hidden=32, neuron="clif", T=6).eval()
    x = torch.randn(16, 10) * 3
    with torch.no_grad():
        out_clif = model(x)
        outs = {v: to_leaky(model, v_reset=v)(x) for v in (-0.2, 0.0)}
    assert outs[0.0].shape == out_clif.shape
    assert not torch.equal(outs[-0.2], outs[0.0])
    reset_states(model)


# --- NIR ------------------------------------------------------------------------------

def test_snntorch_exporter_refuses_unconverted_clif() -> None:
    net = _two_layer()
    with pytest.raises(TypeError, match="to_leaky"):
        snn_export.export_to_nir(net, torch.rand(1, 6), ignore_dims=[0])
    with pytest.raises(TypeError, match="to_leaky"):
        export_nir(net, torch.rand(1, 6))


def test_guard_leaves_snntorch_leaky_to_snntorch() -> None:
    import snntorch as snn

    net = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=torch.full((4,), 0.9), threshold=torch.ones(4), init_hidden=True))
    graph = snn_export.export_to_nir(net, torch.rand(1, 3), ignore_dims=[0])
    np.testing.assert_allclose(graph.nodes["1"].v_reset, 0.0)
    np.testing.assert_allclose(graph.nodes["1"].tau, 1e-3, rtol=1e-5)


def test_export_writes_lif_nodes_with_v_reset() -> None:
    graph = export_nir(to_leaky(_two_layer(), v_reset=-0.06), torch.rand(2, 6))
    lifs = {k: v for k, v in graph.nodes.items() if isinstance(v, nir.LIF)}
    assert sorted(lifs) == ["1", "3"]
    assert lifs["1"].v_reset.shape == (12,)
    np.testing.assert_allclose(lifs["1"].v_reset, -0.06, rtol=1e-6)
    np.testing.assert_allclose(lifs["3"].tau, 2e-4, rtol=1e-6)  # dt / (1 - beta), beta = 0.5
    np.testing.assert_allclose(lifs["3"].r, 2.0, rtol=1e-6)
    np.testing.assert_allclose(lifs["3"].v_threshold, 1.0)
    assert isinstance(graph.nodes["0"], nir.Affine)


def test_soft_reset_lif_has_no_nir_node() -> None:
    lif = HardResetLIF(reset_mechanism="subtract")
    lif(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="zero"):
        lif_to_nir(lif)


def _compare_roundtrip(lif_net: nn.Module, back: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    reset_nir_states(lif_net)
    reset_nir_states(back)
    expected = _run_steps(lif_net, x)
    got = torch.stack([back(step)[0] for step in x])
    return expected, got


def test_round_trip_through_snntorch_importer_zero_reset() -> None:
    lif_net = to_leaky(_two_layer(), v_reset=0.0)
    back = snn_import.import_from_nir(export_nir(lif_net, torch.rand(1, 6)))
    torch.manual_seed(5)
    expected, got = _compare_roundtrip(lif_net, back, torch.rand(12, 3, 6) * 2)
    assert expected.sum() > 0
    assert torch.equal(expected, got)


def test_round_trip_restores_non_zero_v_reset() -> None:
    lif_net = to_leaky(_two_layer(), v_reset=-0.3)
    graph = export_nir(lif_net, torch.rand(1, 6))
    torch.manual_seed(6)
    x = torch.rand(12, 3, 6) * 2
    expected, got = _compare_roundtrip(lif_net, import_nir(graph), x)
    assert expected.sum() > 0
    assert torch.equal(expected, got)
    # snnTorch's own importer drops v_reset (resets to zero): that is why import_nir exists
    _, plain = _compare_roundtrip(lif_net, snn_import.import_from_nir(graph), x)
    assert not torch.equal(expected, plain)
