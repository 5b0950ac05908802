"""Checkpoints: state_dict and whole-model saves reload in a fresh process, identically."""

import subprocess
import sys
import textwrap

import torch
from torch import nn

import snntorch_clif
from snntorch_clif import CLIF


def make_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(5, 7),
        CLIF(init_hidden=True, learn_beta=True, beta=torch.full((7,), 0.4), reset_mechanism="zero"),
        nn.Linear(7, 3),
        CLIF(init_hidden=True, learn_threshold=True, learn_graded_spikes_factor=True, step_mode="single"),
    )


def outputs(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    snntorch_clif.reset(net)
    return torch.stack([net(xt) for xt in x])


FRESH_PROCESS = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_checkpoint import make_net, outputs
    x = torch.load({x!r}, weights_only=True)
    whole = torch.load({whole!r}, weights_only=False)
    net = make_net()
    for p in net.parameters():
        p.data.zero_()                     # make sure loading really restores the weights
    net.load_state_dict(torch.load({sd!r}, weights_only=True))
    torch.save({{"whole": outputs(whole, x), "state_dict": outputs(net, x)}}, {out!r})
    """
)


def test_reload_in_a_fresh_process_gives_identical_outputs(tmp_path) -> None:
    net = make_net()
    x = 2 * torch.rand(6, 4, 5)
    outputs(net, x).sum().backward()  # mid-training: states hold a graph when saved
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05)
    expected = outputs(net, x)
    paths = {k: str(tmp_path / f"{k}.pt") for k in ("x", "whole", "sd", "out")}
    torch.save(x, paths["x"])
    torch.save(net, paths["whole"])
    torch.save(net.state_dict(), paths["sd"])
    code = FRESH_PROCESS.format(tests=str(__import__("pathlib").Path(__file__).parent), **paths)
    subprocess.run([sys.executable, "-c", code], check=True)
    got = torch.load(paths["out"], weights_only=True)
    assert torch.equal(got["whole"], expected)
    assert torch.equal(got["state_dict"], expected)


def test_state_dict_holds_tensors_only() -> None:
    state = make_net().state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert {"1.beta", "1.reset_mechanism_val", "3.threshold", "3.graded_spikes_factor"} <= set(state)
