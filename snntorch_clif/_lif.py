r"""A plain LIF neuron that resets to any ``v_reset``: the target of CLIF-to-LIF conversion.

snnTorch's ``Leaky`` resets to zero or by subtraction only; the deployment trick of the
CLIF paper's repository runs CLIF-trained weights on a LIF whose hard reset lands
slightly below zero (e.g. :math:`v_{reset} = -0.06`). :class:`HardResetLIF` is that
neuron, with the same charge and fire rule as :class:`snntorch_clif.CLIF` so that the two
coincide exactly until a neuron first fires.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from .surrogate import SpikeGrad, resolve, spike

__all__ = ["HardResetLIF"]

LIF_RESET_MECHANISMS = ("zero", "subtract", "none")
STEP_MODES = ("single", "multi")


def _as_tensor(value: Union[Tensor, float], name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().clone().to(torch.get_default_dtype())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    return torch.tensor(float(value))


class HardResetLIF(nn.Module):
    r"""Leaky integrate-and-fire neuron with a hard reset to ``v_reset`` in the step it fires.

    For input current :math:`x_t`, decay :math:`\beta`, threshold :math:`\theta`:

    .. math::
        h_t &= \beta\, u_{t-1} + x_t \\
        s_t &= H(h_t - \theta) \quad (\text{fires when } h_t \ge \theta) \\
        u_t &= (1 - s_t)\, h_t + s_t\, v_{reset} \quad (\texttt{"zero"}: \text{hard reset, default})\\
        u_t &= h_t - s_t\, \theta \quad (\texttt{"subtract"})\\
        u_t &= h_t \quad (\texttt{"none"})

    with :math:`u_0 = 0`. The charge and fire steps are CLIF's (same ``>=`` rule, same
    surrogate), so a CLIF layer and its converted LIF agree exactly until the first spike.
    Nothing is detached, so a converted network can be fine-tuned. This is NIR's ``LIF``
    node with ``v_leak = 0``, :math:`\tau = \Delta t / (1 - \beta)` and
    :math:`r = \tau / \Delta t`.

    The API follows snnTorch's ``Leaky``: ``spk, mem = lif(x, mem)`` per step, with
    ``mem = lif.reset_mem()`` before the loop; ``init_hidden=True`` keeps the state on the
    module and returns ``spk`` only (``spk, mem`` with ``output=True``);
    ``step_mode="multi"`` runs a time-major ``[T, ...]`` input in one call.

    Args:
        beta: membrane decay in [0, 1] (float or per-neuron tensor).
        threshold: firing threshold :math:`\theta` (float or per-neuron tensor).
        v_reset: membrane potential after a spike with ``reset_mechanism="zero"``.
        spike_grad: surrogate gradient, as for :class:`snntorch_clif.CLIF` (default: the
            paper's rectangle of width 1).
        reset_mechanism: ``"zero"`` (hard reset to ``v_reset``), ``"subtract"`` or ``"none"``.
        init_hidden: keep the state on the module and return ``spk`` only.
        output: with ``init_hidden=True``, also return ``mem``.
        graded_spikes_factor: scale of the output spikes.
        step_mode: ``"single"`` (one step per call) or ``"multi"`` (``[T, ...]`` input).

    Example::

        >>> import torch
        >>> from snntorch_clif.convert import HardResetLIF
        >>> lif = HardResetLIF(beta=0.5, v_reset=-0.06)
        >>> mem = lif.reset_mem()
        >>> for x in torch.tensor([[1.2], [0.3]]):
        ...     spk, mem = lif(x, mem)
        >>> mem   # fired at t=1 and reset to -0.06, then 0.5 * -0.06 + 0.3
        tensor([0.2700])
    """

    def __init__(
        self,
        beta: Union[Tensor, float] = 0.5,
        threshold: Union[Tensor, float] = 1.0,
        v_reset: Union[Tensor, float] = 0.0,
        spike_grad: Optional[SpikeGrad] = None,
        reset_mechanism: str = "zero",
        init_hidden: bool = False,
        output: bool = False,
        graded_spikes_factor: Union[Tensor, float] = 1.0,
        step_mode: str = "single",
    ) -> None:
        super().__init__()
        if reset_mechanism not in LIF_RESET_MECHANISMS:
            raise ValueError(f"reset_mechanism must be one of {LIF_RESET_MECHANISMS}, got {reset_mechanism!r}")
        if step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be one of {STEP_MODES}, got {step_mode!r}")
        beta_t = _as_tensor(beta, "beta")
        if bool(((beta_t < 0) | (beta_t > 1)).any()):
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        self.register_buffer("beta", beta_t)
        self.register_buffer("threshold", _as_tensor(threshold, "threshold"))
        self.register_buffer("v_reset", _as_tensor(v_reset, "v_reset"))
        self.register_buffer("graded_spikes_factor", _as_tensor(graded_spikes_factor, "graded_spikes_factor"))
        self.spike_grad = resolve(spike_grad)
        self.reset_mechanism = reset_mechanism
        self.init_hidden = init_hidden
        self.output = output
        self.step_mode = step_mode
        self.mem = torch.zeros(0)
        # Neuron shape (no batch/time dims) of the last input: NIR wants per-neuron arrays.
        self.neuron_shape: Optional[tuple[int, ...]] = None

    def reset_mem(self) -> Tensor:
        """Zero (and detach) the membrane potential and return it; empty before the first forward.

        Example::

            >>> lif = HardResetLIF()
            >>> mem = lif.reset_mem()
        """
        self.mem = torch.zeros_like(self.mem)
        return self.mem

    def detach_hidden(self) -> None:
        """Detach the kept membrane potential from the graph (truncated BPTT)."""
        self.mem = self.mem.detach()

    def step(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor]:
        r"""One step from ``mem`` (:math:`u_{t-1}`); returns ``(spk, mem)`` (see the class equations).

        Example::

            >>> lif = HardResetLIF(v_reset=-0.1)
            >>> lif.step(torch.tensor([1.5]), torch.zeros(1))
            (tensor([1.]), tensor([-0.1000]))
        """
        h = self.beta * mem + x
        s = spike(h - self.threshold, self.spike_grad)
        if self.reset_mechanism == "zero":
            mem = h + s * (self.v_reset - h)  # (1 - s) h + s v_reset, one fewer product
        elif self.reset_mechanism == "subtract":
            mem = h - s * self.threshold
        else:
            mem = h
        return s * self.graded_spikes_factor, mem

    def forward(self, x: Tensor, mem: Optional[Tensor] = None) -> Union[Tensor, tuple[Tensor, Tensor]]:
        """Advance one step (``step_mode="single"``) or a ``[T, ...]`` sequence (``"multi"``)."""
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        multi = self.step_mode == "multi"
        shape = x.shape[1:] if multi else x.shape
        self.neuron_shape = tuple(shape[1:])
        if mem is None:
            mem = self.mem
        if mem.shape != shape:  # empty, or the last smaller batch: start from zeros
            mem = x.new_zeros(shape)
        mem = mem.to(dtype=x.dtype, device=x.device)
        if multi:
            spikes = []
            for x_t in x.unbind(0):
                spk, mem = self.step(x_t, mem)
                spikes.append(spk)
            spk = torch.stack(spikes) if spikes else x.new_empty(x.shape)
        else:
            spk, mem = self.step(x, mem)
        self.mem = mem
        if self.init_hidden and not self.output:
            return spk
        return spk, mem

    def extra_repr(self) -> str:
        def show(t: Tensor) -> str:
            return f"{t.item():g}" if t.numel() == 1 else f"tensor{tuple(t.shape)}"

        return (
            f"beta={show(self.beta)}, threshold={show(self.threshold)}, v_reset={show(self.v_reset)}, "
            f"reset_mechanism={self.reset_mechanism!r}, step_mode={self.step_mode!r}, "
            f"init_hidden={self.init_hidden}"
        )
