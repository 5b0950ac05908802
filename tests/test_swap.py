"""snntorch_clif.swap: from_leaky and DropInCLIF (snn.Leaky's call signature on the paper's neuron)."""

from __future__ import annotations

import warnings

import pytest
import snntorch as snn
import snntorch.surrogate as sns
import torch
from torch import nn

import snntorch_clif
from snntorch_clif import CLIF, DropInCLIF, from_leaky, surrogate


class TwoLayer(nn.Module):
    """snnTorch tutorial 5's network shape, with its forward code (explicit `mem`)."""

    def __init__(self, beta: float = 0.9, **leaky: object) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 5)
        self.lif1 = snn.Leaky(beta=beta, **leaky)
        self.fc2 = nn.Linear(5, 3)
        self.lif2 = snn.Leaky(beta=beta, **leaky)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spikes, mems = [], []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[step]), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spikes.append(spk2)
            mems.append(mem2)
        return torch.stack(spikes), torch.stack(mems)


def _explicit_clif_run(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same network stepped with plain CLIF layers and both states passed by hand."""
    plain = [CLIF(beta=net.lif1.beta, threshold=net.lif1.threshold, spike_grad=net.lif1.spike_grad,
                  reset_delay=net.lif1.reset_delay),
             CLIF(beta=net.lif2.beta, threshold=net.lif2.threshold, spike_grad=net.lif2.spike_grad,
                  reset_delay=net.lif2.reset_delay)]
    (c1, m1), (c2, m2) = plain[0].reset_mem(), plain[1].reset_mem()
    spikes, mems = [], []
    for step in range(x.shape[0]):
        s1, c1, m1 = plain[0](net.fc1(x[step]), c1, m1)
        s2, c2, m2 = plain[1](net.fc2(s1), c2, m2)
        spikes.append(s2)
        mems.append(m2)
    return torch.stack(spikes), torch.stack(mems)


def test_converted_forward_code_runs_unchanged_and_is_the_paper_neuron() -> None:
    torch.manual_seed(0)
    net = TwoLayer()
    clif_net = from_leaky(net)
    assert type(clif_net.lif1) is DropInCLIF and type(clif_net.lif2) is DropInCLIF
    assert type(net.lif1) is snn.Leaky  # the model passed in is not modified
    x = torch.rand(12, 4, 6) * 3
    x_ref = x.clone().requires_grad_()
    x.requires_grad_()
    spk, mem = clif_net(x)
    spk_ref, mem_ref = _explicit_clif_run(clif_net, x_ref)
    assert spk.sum() > 0
    torch.testing.assert_close(spk, spk_ref, rtol=0, atol=0)
    torch.testing.assert_close(mem, mem_ref, rtol=0, atol=0)
    (spk.sum() + mem.square().sum()).backward()
    (spk_ref.sum() + mem_ref.square().sum()).backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_options_and_values_are_carried_over() -> None:
    beta = torch.rand(5)
    leaky = snn.Leaky(beta=beta, threshold=0.7, learn_beta=True, learn_threshold=True, reset_mechanism="zero",
                      spike_grad=sns.fast_sigmoid(slope=10), graded_spikes_factor=2.0, init_hidden=True, output=True)
    clif = from_leaky(nn.Sequential(nn.Linear(3, 5), leaky), readout="none")[1]
    assert isinstance(clif.beta, nn.Parameter) and isinstance(clif.threshold, nn.Parameter)
    assert torch.equal(clif.beta.detach(), beta) and float(clif.threshold.detach()) == pytest.approx(0.7)
    assert clif.reset_mechanism == "zero" and clif.spike_grad == surrogate.fast_sigmoid(10)
    assert float(clif.graded_spikes_factor) == 2.0 and clif.init_hidden and clif.output and not clif.reset_delay
    assert "graded_spikes_factor" in dict(clif.named_buffers())
    spk, mem = clif(torch.rand(2, 5) * 3)
    assert set(spk.unique().tolist()) <= {0.0, 2.0} and mem.shape == (2, 5)


@pytest.mark.parametrize("spike_grad, expected", [
    ("leaky", surrogate.atan(2.0)), ("paper", surrogate.rectangle(1.0)), (surrogate.sigmoid(5), surrogate.sigmoid(5)),
])
def test_surrogate_choice(spike_grad: object, expected: object) -> None:
    clif = from_leaky(snn.Leaky(beta=0.5), spike_grad=spike_grad)
    assert clif.spike_grad == expected


def test_state_dict_of_a_trained_leaky_model_loads_and_round_trips() -> None:
    torch.manual_seed(1)
    net = TwoLayer(learn_beta=True)
    with torch.no_grad():
        net.lif1.beta.fill_(0.8)
    clif_net = from_leaky(TwoLayer(learn_beta=True))
    clif_net.load_state_dict(net.state_dict())
    assert float(clif_net.lif1.beta.detach()) == pytest.approx(0.8)
    assert torch.equal(clif_net.fc2.weight, net.fc2.weight)
    again = from_leaky(TwoLayer(learn_beta=True))
    again.load_state_dict(clif_net.state_dict())
    x = torch.rand(5, 2, 6) * 3
    for a, b in zip(again(x), clif_net(x)):
        assert torch.equal(a, b)


def test_readout_gets_the_delayed_reset() -> None:
    clif_net = from_leaky(TwoLayer())
    assert not clif_net.lif1.reset_delay and clif_net.lif2.reset_delay
    named = from_leaky(TwoLayer(), readout=["lif1"])
    assert named.lif1.reset_delay and not named.lif2.reset_delay
    with pytest.raises(ValueError, match="readout names no snn.Leaky layer.*lif3"):
        from_leaky(TwoLayer(), readout=["lif3"])
    with pytest.raises(ValueError, match="readout must be"):
        from_leaky(TwoLayer(), readout="first")


def test_keep_leaves_named_layers_as_leaky() -> None:
    torch.manual_seed(0)
    net = TwoLayer()
    kept = from_leaky(net, keep="last")
    assert type(kept.lif1) is DropInCLIF and type(kept.lif2) is snn.Leaky
    assert not kept.lif1.reset_delay  # the read-out is the kept layer, no CLIF gets the delayed reset
    assert kept.lif2 is not net.lif2  # a copy: the model given is not modified
    kept.load_state_dict(net.state_dict())
    x = torch.rand(6, 4, 6)
    spk, mem = kept(x)
    # the kept layer is snnTorch's Leaky fed by CLIF's spikes: step it by hand
    plain = from_leaky(net)
    mem1, mem2 = plain.lif1.init_leaky(), net.lif2.init_leaky()
    for step in range(x.shape[0]):
        s1, mem1 = plain.lif1(net.fc1(x[step]), mem1)
        s2, mem2 = net.lif2(net.fc2(s1), mem2)
        torch.testing.assert_close(spk[step], s2)
        torch.testing.assert_close(mem[step], mem2)
    with pytest.raises(RuntimeError, match="Reset or detach the model's states first"):
        from_leaky(net, keep="last")  # the kept Leaky holds a state inside an autograd graph
    snn.utils.reset(net)
    every = from_leaky(net, keep=["lif1", "lif2"])
    assert every is not net and not any(isinstance(m, CLIF) for m in every.modules())
    with pytest.raises(ValueError, match="keep names no snn.Leaky layer.*lif3"):
        from_leaky(net, keep=["lif3"])
    with pytest.raises(ValueError, match="keep must be"):
        from_leaky(net, keep="first")


def test_a_kept_init_hidden_leaky_is_reset_by_snntorch() -> None:
    """snnTorch resets init_hidden Leaky states through its class registry: the kept copy is in it."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), snn.Leaky(beta=0.9, init_hidden=True),
                        nn.Linear(5, 3), snn.Leaky(beta=0.9, init_hidden=True, output=True))
    kept = from_leaky(net, keep="last")
    x = torch.rand(4, 2, 6)
    for _epoch in range(2):  # the second backward fails if the kept layer's state still holds the first graph
        snn.utils.reset(kept)
        assert not kept[3].mem.requires_grad
        mems = []
        for step in range(x.shape[0]):
            _spk, mem = kept(x[step])
            mems.append(mem)
        torch.stack(mems).sum().backward()


def test_comp_starts_over_when_the_caller_does() -> None:
    lif = DropInCLIF(beta=0.9)
    x = torch.full((2, 3), 1.5)
    mem = lif.init_leaky()
    for _ in range(3):
        spk, mem = lif(x, mem)
    assert float(lif.comp.abs().sum()) > 0
    carried = lif.comp.clone()
    spk, mem2 = lif(x, mem.detach())  # a detached alias carries comp on
    fresh = DropInCLIF(beta=0.9)
    _, c, _ = CLIF(beta=0.9)(x, carried, mem)
    torch.testing.assert_close(lif.comp, c)
    spk, _ = lif(x, torch.zeros(2, 3))  # any other tensor starts comp from zero
    _, c0, _ = CLIF(beta=0.9)(x, torch.zeros(2, 3), torch.zeros(2, 3))
    torch.testing.assert_close(lif.comp, c0)
    spk, _ = lif(torch.rand(4, 3), torch.zeros(2, 3))  # another shape: zeros, as snn.Leaky
    assert fresh.reset_mem().numel() == 0


def test_snntorch_backprop_unpacks_two_values() -> None:
    from snntorch import utils

    net = from_leaky(nn.Sequential(nn.Linear(2, 2), snn.Leaky(beta=0.5, init_hidden=True, output=True)))
    assert utils._final_layer_check(net) == 2


def test_no_leaky_layer_returns_the_model_and_says_so() -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    with pytest.warns(UserWarning, match="no snn.Leaky or snn.RLeaky layer"):
        assert from_leaky(model) is model


def test_other_neurons_stay_and_are_named() -> None:
    model = nn.Sequential(nn.Linear(2, 2), snn.Synaptic(alpha=0.9, beta=0.8), snn.Leaky(beta=0.5))
    with pytest.warns(UserWarning, match=r"1 \(Synaptic\)"):
        out = from_leaky(model)
    assert type(out[1]) is snn.Synaptic and type(out[2]) is DropInCLIF


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        from_leaky("net")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spike_grad must be 'leaky', 'paper'"):
        from_leaky(snn.Leaky(beta=0.5), spike_grad="atan")
    lif = DropInCLIF(init_hidden=True)
    with pytest.raises(TypeError, match="`mem` should not be passed"):
        lif(torch.rand(2), torch.rand(2))
    with pytest.raises(TypeError, match="mem must be a torch.Tensor"):
        DropInCLIF()(torch.rand(2), [0.0, 0.0])


def test_silent_output_layer_warns_once_with_the_fix() -> None:
    net = nn.Sequential(nn.Linear(4, 3), CLIF(init_hidden=True))
    x = torch.rand(8, 4) * 0.01
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3000):
            net(x)
    silent = [w for w in caught if issubclass(w.category, snntorch_clif.SilentLayerWarning)]
    assert len(silent) == 1 and "build it with reset_delay=True" in str(silent[0].message)
    assert "surrogate.atan()" in str(silent[0].message)  # the rectangle, CLIF's default
    delayed = nn.Sequential(nn.Linear(4, 3), CLIF(init_hidden=True, reset_delay=True, spike_grad=sns.atan()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3000):
            delayed(x)
    (message,) = [str(w.message) for w in caught if issubclass(w.category, snntorch_clif.SilentLayerWarning)]
    assert "from_leaky(model, keep='last')" in message and "build it with" not in message and "atan()" not in message
    firing = nn.Sequential(nn.Linear(4, 3), CLIF(init_hidden=True))
    with torch.no_grad():
        firing[0].bias.fill_(5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", snntorch_clif.SilentLayerWarning)
        for _ in range(1500):
            firing(x)
        net.eval()
        for _ in range(1500):
            net(x)


class RecurrentNet(nn.Module):
    """An snn.RLeaky layer stepped as snnTorch's docs step it (explicit spk and mem)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 5)
        self.rlif1 = snn.RLeaky(beta=0.9, linear_features=5, learn_beta=True)
        self.fc2 = nn.Linear(5, 3)
        self.lif2 = snn.Leaky(beta=0.9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spk1, mem1 = self.rlif1.init_rleaky()
        mem2 = self.lif2.init_leaky()
        mems = []
        for step in range(x.shape[0]):
            spk1, mem1 = self.rlif1(self.fc1(x[step]), spk1, mem1)
            _, mem2 = self.lif2(self.fc2(spk1), mem2)
            mems.append(mem2)
        return torch.stack(mems)


def test_rleaky_becomes_a_drop_in_rclif_with_its_weights() -> None:
    torch.manual_seed(3)
    net = RecurrentNet()
    clif_net = from_leaky(net)
    assert type(clif_net.rlif1) is snntorch_clif.DropInRCLIF and not clif_net.rlif1.reset_delay
    assert clif_net.lif2.reset_delay  # the last layer is the read-out
    assert isinstance(clif_net.rlif1.beta, nn.Parameter)
    assert torch.equal(clif_net.rlif1.recurrent.weight, net.rlif1.recurrent.weight)
    clif_net.load_state_dict(net.state_dict())
    x = torch.rand(8, 4, 6) * 3
    out = clif_net(x)
    # the same steps through RCLIF's own three-state signature
    rclif = snntorch_clif.RCLIF.from_rleaky(net.rlif1, reset_delay=False, spike_grad=surrogate.atan())
    readout = CLIF(beta=0.9, spike_grad=surrogate.atan(), reset_delay=True)
    spk, comp, mem = rclif.reset_mem()
    c2, m2 = readout.reset_mem()
    expected = []
    for step in range(x.shape[0]):
        spk, comp, mem = rclif(clif_net.fc1(x[step]), spk, comp, mem)
        _, c2, m2 = readout(clif_net.fc2(spk), c2, m2)
        expected.append(m2)
    torch.testing.assert_close(out, torch.stack(expected), rtol=0, atol=0)
    out.sum().backward()
    assert clif_net.rlif1.recurrent.weight.grad.abs().sum() > 0
