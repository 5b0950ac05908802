"""Mixed precision: bf16 autocast on the CPU (fp16 autocast on CUDA) trains like fp32, and
half-precision inputs keep float32 parameters and gradients (snntorch_clif/functional.py,
snntorch_clif/reference.py)."""

import contextlib

import pytest
import torch
from torch import nn

import snntorch_clif
from snntorch_clif import CLIF, backends, ops

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


# --- half-precision inputs keep float32 parameters ------------------------------------------
# GradScaler's default scale: a float16 sum of a parameter's gradient over every neuron and
# step overflows with it (measured before the fix: inf/NaN beta.grad on both paths).
LOSS_SCALE = 65536.0
# Stated tolerance of a half-input parameter gradient against the float32-input one
# (relative, in norm; measured: under 4%, bfloat16 reference path the worst).
GRAD_RTOL = 0.10

PATHS = ["fused", "reference"]
HALF_CASES = [
    pytest.param(device, dtype, path, marks=[pytest.mark.cuda] if device == "cuda" else [],
                 id=f"{device}-{str(dtype).removeprefix('torch.')}-{path}")
    for device in ("cpu", "cuda") for dtype in (torch.float16, torch.bfloat16) for path in PATHS
]


def scaled_parameter_grads(
    x32: torch.Tensor, dtype: torch.dtype, path: str, per_neuron_beta: bool
) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...]]:
    """The unscaled gradients of fp32 beta/threshold/gsf for inputs of ``dtype``, and the outputs."""
    n = x32.shape[-1]
    beta = (torch.full((n,), 0.7) if per_neuron_beta else torch.tensor(0.7)).to(x32.device).requires_grad_()
    threshold = torch.tensor(1.0, device=x32.device, requires_grad=True)
    gsf = torch.tensor(1.0, device=x32.device, requires_grad=True)
    x = x32.to(dtype).requires_grad_()
    with backends.use_reference() if path == "reference" else contextlib.nullcontext():
        out = snntorch_clif.clif_sequence(
            x, beta=beta, threshold=threshold, graded_spikes_factor=gsf, return_sequences=True
        )
    # a per-sample loss (sum over features, mean over steps and batch), scaled like GradScaler
    loss = (out.spk.float().sum(-1).mean() + out.mem.float().pow(2).sum(-1).mean()) * LOSS_SCALE
    loss.backward()
    return [p.grad / LOSS_SCALE for p in (beta, threshold, gsf)], tuple(out)


@pytest.mark.parametrize("device, dtype, path", HALF_CASES)
@pytest.mark.parametrize("per_neuron_beta", [False, True])
def test_half_inputs_keep_fp32_parameter_gradients_under_a_scaled_loss(
    device: str, dtype: torch.dtype, path: str, per_neuron_beta: bool
) -> None:
    if path == "fused" and not ops.has_kernel(device):
        pytest.skip(f"no fused kernel for {device}: {ops.LOAD_ERROR}")
    x32 = (1.5 * torch.rand(16, 64, 512)).to(device)
    full, _ = scaled_parameter_grads(x32, torch.float32, path, per_neuron_beta)
    half, outputs = scaled_parameter_grads(x32, dtype, path, per_neuron_beta)
    assert all(t.dtype == dtype for t in outputs)  # outputs stay in the input dtype
    for name, g, g32 in zip(("beta", "threshold", "gsf"), half, full):
        assert g.dtype == torch.float32, name
        assert torch.isfinite(g).all(), f"{name}.grad is not finite: {g}"
        rel = ((g - g32).norm() / g32.norm()).item()
        assert rel <= GRAD_RTOL, f"{name}.grad {rel:.3f} off the fp32-input gradient"


@pytest.mark.parametrize("path", PATHS)
def test_module_with_learnable_parameters_and_float16_input(path: str) -> None:
    # the path a user takes: float32 nn.Parameters, float16 activations, a scaled loss
    if path == "fused" and not ops.AVAILABLE:
        pytest.skip(f"fused kernels not built: {ops.LOAD_ERROR}")
    clif = CLIF(step_mode="multi", learn_beta=True, learn_threshold=True, state_sequences=True)
    x = (1.5 * torch.rand(16, 64, 512)).half()
    with backends.use_reference() if path == "reference" else contextlib.nullcontext():
        spk, comp, mem = clif(x)
    assert mem.dtype == torch.float16
    (mem.float().pow(2).sum(-1).mean() * LOSS_SCALE).backward()
    for p in (clif.beta, clif.threshold):
        assert p.dtype == p.grad.dtype == torch.float32
        assert torch.isfinite(p.grad).all()
