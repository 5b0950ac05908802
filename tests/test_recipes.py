"""The paper's recipe (snntorch_clif.recipes): loss, neurons, networks, one optimiser step."""

from __future__ import annotations

import math

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F

from snntorch_clif import CLIF
from snntorch_clif.recipes import (
    Cutout,
    LeakySequence,
    SpikingMLP,
    cifar_loaders,
    evaluate,
    main,
    make_neuron,
    paper_optimizer,
    spiking_resnet18,
    tet_loss,
    train_step,
)


def test_tet_loss_matches_its_formula() -> None:
    torch.manual_seed(0)
    out, y = torch.randn(6, 4, 10), torch.randint(0, 10, (4,))
    ce = sum(F.cross_entropy(o, y) for o in out) / 6
    mse = ((out - 1.0) ** 2).mean()
    assert float(tet_loss(out, y)) == pytest.approx(float(0.95 * ce + 0.05 * mse), rel=1e-6)
    assert float(tet_loss(out, y, lamb=0.0)) == pytest.approx(float(ce), rel=1e-6)


def test_make_neuron_kinds() -> None:
    clif = make_neuron("clif")
    assert isinstance(clif, CLIF) and clif.step_mode == "multi"
    leaky = make_neuron("leaky")
    assert isinstance(leaky.leaky, snn.Leaky) and leaky.leaky.reset_delay is False
    assert float(leaky.leaky.beta) == 0.5
    with pytest.raises(ValueError, match="neuron must be one of"):
        make_neuron("izhikevich")


def test_leaky_twin_matches_clif_until_first_spike_and_starts_from_rest() -> None:
    torch.manual_seed(1)
    x = torch.rand(8, 32, 16) * 0.9
    s_clif, s_leaky = make_neuron("clif")(x), LeakySequence()(x)
    first = (s_clif.cumsum(0) - s_clif) == 0
    assert torch.equal(s_clif[first], s_leaky[first])
    assert not torch.equal(s_clif, s_leaky)  # CLIF's reset also subtracts sigmoid(m)
    leaky = LeakySequence()
    assert torch.equal(leaky(x), leaky(x)), "each call starts from rest"


def test_mlp_is_stateless_across_calls() -> None:
    torch.manual_seed(2)
    net = SpikingMLP(5, 3, hidden=16, T=4).eval()
    x = torch.randn(6, 5) * 2
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_paper_optimizer_is_sgd_with_cosine() -> None:
    net = torch.nn.Linear(2, 2)
    opt, sched = paper_optimizer(net, epochs=2, steps_per_epoch=3)
    group = opt.param_groups[0]
    assert group["lr"] == 0.1 and group["momentum"] == 0.9 and group["weight_decay"] == 5e-5
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("neuron", ["clif", "leaky"])
def test_resnet18_one_optimiser_step(neuron: str) -> None:
    torch.manual_seed(3)
    net = spiking_resnet18(neuron, num_classes=10, T=6)
    opt, _ = paper_optimizer(net, epochs=1)
    x, y = torch.randn(2, 3, 16, 16) * 2, torch.tensor([1, 7])
    before = net.stem.weight.detach().clone()
    out = net(x)
    assert out.shape == (6, 2, 10)
    loss, correct = train_step(net, x, y, opt)
    assert math.isfinite(loss) and 0 <= correct <= 2
    assert net.stem.weight.grad is not None and float(net.stem.weight.grad.abs().sum()) > 0
    assert not torch.equal(before, net.stem.weight)


def test_train_step_with_cpu_autocast() -> None:
    torch.manual_seed(4)
    net = SpikingMLP(5, 3, hidden=16, T=3)
    opt, _ = paper_optimizer(net, epochs=1)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    loss, _ = train_step(net, x, y, opt, amp=True)
    assert math.isfinite(loss)
    assert 0.0 <= evaluate(net, [(x, y)], amp=True) <= 1.0


def test_training_learns_a_separable_task() -> None:
    torch.manual_seed(5)
    x = torch.randn(256, 8)
    y = (x[:, 0] > 0).long()
    net = SpikingMLP(8, 2, hidden=32, T=4)
    opt, _ = paper_optimizer(net, epochs=1)
    for _ in range(30):
        train_step(net, x, y, opt)
    assert evaluate(net, [(x, y)]) > 0.9


def test_cutout_zeroes_a_square() -> None:
    torch.manual_seed(6)
    img = Cutout(8)(torch.ones(3, 32, 32))
    zeros = (img[0] == 0).sum()
    assert 0 < zeros <= 64
    assert torch.equal(img[0] == 0, img[2] == 0)


def test_cifar_missing_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        cifar_loaders(tmp_path, "cifar10")
    with pytest.raises(FileNotFoundError, match="cifar100 not found"):
        main(["--data-root", str(tmp_path), "--dataset", "cifar100", "--workers", "0"])


def test_recipe_cli_requires_data_root(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "--data-root" in capsys.readouterr().err
