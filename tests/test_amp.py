"""Mixed precision: bf16 autocast on the CPU (fp16 autocast on CUDA) trains like fp32."""

import pytest
import torch
from torch import nn

import snntorch_clif
from snntorch_clif import CLIF

# Spikes are thresholds: a half-precision rounding can flip one, so the runs are compared
# on the loss trajectory, not bit for bit. Stated tolerance: 5% relative per step (measured: under 1.5%).
LOSS_RTOL = 0.05


def train(device: str, dtype: torch.dtype | None, steps: int = 8) -> list[float]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 64), CLIF(init_hidden=True, step_mode="multi"),
                        nn.Linear(64, 4), CLIF(init_hidden=True, step_mode="multi", output=True)).to(device)
    x = (2 * torch.rand(6, 32, 20)).to(device)
    y = torch.randint(0, 4, (32,)).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    losses = []
    for _ in range(steps):
        snntorch_clif.reset(net)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            spk, comp, mem = net(x)
            if dtype is not None:
                assert spk.dtype == mem.dtype == dtype  # CLIF keeps the autocast dtype
            loss = nn.functional.cross_entropy(mem.float().mean(0) if mem.dim() == 3 else mem.float(), y)
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize(
    "device, dtype",
    [("cpu", torch.bfloat16), pytest.param("cuda", torch.float16, marks=pytest.mark.cuda)],
)
def test_autocast_training_stays_finite_and_close_to_fp32(device: str, dtype: torch.dtype) -> None:
    full = train(device, None)
    half = train(device, dtype)
    assert all(map(lambda v: v == v and abs(v) < float("inf"), half))
    for a, b in zip(full, half):
        assert abs(a - b) <= LOSS_RTOL * abs(a), (full, half)
    assert full[-1] < full[0]  # it is training, not standing still
