"""Which path runs (snntorch_clif/_dispatch.py, snntorch_clif/backends.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import snntorch_clif
from snntorch_clif import CLIF, _dispatch, backends, clif_sequence, clif_step, ops
from snntorch_clif import surrogate as sg

needs_ext = pytest.mark.skipif(not ops.AVAILABLE, reason=f"fused kernels not built: {ops.LOAD_ERROR}")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Count calls of the fused and the reference implementations."""
    counts = {"fused": 0, "reference": 0}

    def spy(name: str, fn):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(_dispatch.ops, "clif_sequence_fused", spy("fused", ops.clif_sequence_fused))
    monkeypatch.setattr(_dispatch.ops, "clif_step_fused", spy("fused", ops.clif_step_fused))
    monkeypatch.setattr(_dispatch, "clif_sequence_reference", spy("reference", _dispatch.clif_sequence_reference))
    monkeypatch.setattr(_dispatch, "clif_step_reference", spy("reference", _dispatch.clif_step_reference))
    monkeypatch.setattr(backends, "_warned", set())
    return counts


@needs_ext
@pytest.mark.parametrize("spike_grad", [None, sg.ATan(2.0), sg.Sigmoid(25.0), sg.Disabled()])
def test_known_surrogates_run_fused(calls: dict, spike_grad: object) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clif_sequence(torch.rand(4, 3, 5), spike_grad=spike_grad)
        clif_step(torch.rand(3, 5), spike_grad=spike_grad)
    # (the fused step is the sequence op with T = 1: it counts twice)
    assert calls["reference"] == 0 and calls["fused"] >= 2


@needs_ext
def test_snntorch_factories_run_fused(calls: dict) -> None:
    import snntorch.surrogate

    clif_sequence(torch.rand(4, 3), spike_grad=snntorch.surrogate.fast_sigmoid(slope=10))
    assert calls["fused"] == 1


@needs_ext
def test_float64_runs_fused_on_cpu(calls: dict) -> None:
    clif_sequence(torch.rand(4, 3, dtype=torch.float64))
    assert calls["fused"] == 1


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"spike_grad": lambda z: torch.sigmoid(4 * z)}, "is not fused"),
        ({"inhibition": True}, "inhibition is not fused"),
        ({"state_quant": lambda t: t}, "state_quant is not fused"),
    ],
)
def test_unsupported_features_fall_back_with_one_warning(calls: dict, kwargs: dict, reason: str) -> None:
    x = torch.rand(4, 2, 5)
    with pytest.warns(RuntimeWarning, match=reason):
        clif_sequence(x, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same reason warns only once
        clif_sequence(x, **kwargs)
        clif_step(x[0], **kwargs)
    assert calls == {"fused": 0, "reference": 3}


@needs_ext
def test_reset_delay_runs_fused_and_reaches_the_reference(calls: dict) -> None:
    # The option needs no fallback: fused for a sequence and a step. With inhibition (reference
    # path) the reference gets it too: the same spikes as without it, mem the membrane before the
    # reset (the given zeros start from their own reset, None from nothing).
    x = 3 * torch.rand(5, 2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clif_sequence(x, reset_delay=True)
        clif_step(x[0], torch.zeros(2, 4), torch.zeros(2, 4), reset_delay=True)
    assert calls["reference"] == 0 and calls["fused"] >= 2  # (the fused step counts twice: see above)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        delayed = clif_sequence(x, inhibition=True, reset_delay=True, return_sequences=True)
        same_step = clif_sequence(x, inhibition=True, return_sequences=True)
    assert calls["reference"] == 2
    assert torch.equal(delayed.spk, same_step.spk) and torch.equal(delayed.comp, same_step.comp)
    assert torch.equal(delayed.mem[1:], 0.5 * same_step.mem[:-1] + x[1:])  # h_t = beta u_{t-1} + x_t


def test_custom_callable_warning_names_it(calls: dict) -> None:
    def my_surrogate(z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(z)

    with pytest.warns(RuntimeWarning, match="my_surrogate"):
        clif_step(torch.rand(3), spike_grad=my_surrogate)


def test_use_reference_forces_the_reference_silently(calls: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with backends.use_reference():
            assert backends.get_backend() == "reference"
            clif_sequence(torch.rand(4, 3))
            clif_step(torch.rand(3))
    assert backends.get_backend() == "auto"
    assert calls["reference"] == 2 and calls["fused"] == 0


def test_set_backend_validates() -> None:
    with pytest.raises(ValueError, match="backend"):
        backends.set_backend("triton")


def test_device_without_kernel_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_warned", set())
    x = torch.empty(3, device="meta")
    with pytest.warns(RuntimeWarning, match="device type 'meta'"):
        reason = backends.fused_unsupported_reason(x, sg.Rectangle(), False, None)
    assert reason is not None


@needs_ext
def test_fused_and_reference_agree_through_the_module() -> None:
    x = torch.randn(6, 4, 7) * 2
    outs = {}
    for name in ("fused", "reference"):
        net = CLIF(beta=0.8, step_mode="multi", state_sequences=True, learn_threshold=True)
        xr = x.clone().requires_grad_()
        if name == "reference":
            with backends.use_reference():
                spk, comp, mem = net(xr)
        else:
            spk, comp, mem = net(xr)
        (gx, gthr) = torch.autograd.grad((spk + comp + mem).sum(), [xr, net.threshold])
        outs[name] = (spk, comp, mem, gx, gthr)
    for a, b in zip(outs["fused"], outs["reference"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_backends_report() -> None:
    info = snntorch_clif.backends()
    assert isinstance(info, backends.BackendReport)
    assert info.extension_loaded == ops.AVAILABLE
    assert info.cpu_kernel == ops.has_kernel("cpu")
    assert info.devices["cpu"] == ("fused" if ops.AVAILABLE else info.devices["cpu"])
    if ops.AVAILABLE:
        assert info.cpu_isa in ("avx512", "avx2", "generic")
        assert info.cuda_kernel == bool(ops._C.WITH_CUDA)
        if info.cuda_kernel:
            assert info.cuda_archs, "a CUDA build records its architectures"
    assert "CPU kernel" in str(info)
    with backends.use_reference():
        assert snntorch_clif.backends().devices["cpu"] == "reference (forced)"


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", textwrap.dedent(code)], env=dict(os.environ, **env),
        capture_output=True, text=True, timeout=120,
    )


def test_env_switch_forces_reference() -> None:
    proc = _run_python(
        """
        import snntorch_clif
        print(snntorch_clif.backends().backend)
        """,
        SNNTORCH_CLIF_BACKEND="reference",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "reference"


def test_without_extension_runs_reference_with_one_warning() -> None:
    proc = _run_python(
        """
        import sys
        sys.modules["snntorch_clif._C"] = None      # as if nothing had been compiled
        import torch, snntorch_clif
        from snntorch_clif import clif_sequence, clif_step, CLIF
        assert not snntorch_clif.ops.AVAILABLE
        spk = clif_sequence(torch.rand(5, 3)).spk
        clif_step(torch.rand(3))
        CLIF(step_mode="multi")(torch.rand(5, 3))
        print(snntorch_clif.backends().devices["cpu"])
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("could not be loaded") == 1, proc.stderr
    assert proc.stdout.startswith("reference (extension not loaded")
