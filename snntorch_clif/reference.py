r"""The plain-PyTorch definition of the CLIF neuron: the numerics oracle.

Every other path (the module, the fused C++/CUDA kernels) is tested against this file.
One step, for input current :math:`x_t`, decay :math:`\beta`, threshold :math:`\theta`
(Huang et al., ICML 2024, eqs. 6-9, with :math:`\beta = 1 - 1/\tau`):

.. math::
    h_t &= \beta u_{t-1} + x_t                                  && \text{(charge)}\\
    s_t &= H(h_t - \theta)                                      && \text{(fire)}\\
    m_t &= \sigma\big((1-\beta) h_t\big)\, m_{t-1} + s_t         && \text{(complementary)}\\
    u_t &= h_t - s_t\,(\theta + \sigma(m_t))                    && \text{(reset "subtract")}\\
    u_t &= (1 - s_t)\, h_t - s_t\, \sigma(m_t)                   && \text{(reset "zero")}\\
    u_t &= h_t                                                  && \text{(reset "none")}

The output is :math:`s_t` times ``graded_spikes_factor``. Nothing is detached: the
gradient flows through the spike inside the reset, through :math:`\sigma(m_t)` and
through the gate :math:`\sigma((1-\beta)h_t)`, exactly as in the paper.

Precision: the step computes in ``x``'s dtype. Parameter tensors of a wider dtype (float32
parameters with float16/bfloat16 inputs, as :mod:`snntorch_clif.functional` passes them)
are broadcast to the neurons' shape before they are rounded to that dtype, so each
parameter's gradient, a sum over every neuron and step, is formed in the parameter's dtype.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from .surrogate import SpikeGrad, spike

__all__ = ["RESET_MECHANISMS", "clif_step_reference", "clif_sequence_reference"]

RESET_MECHANISMS = ("subtract", "zero", "none")


def _in_input_dtype(param: Tensor | float, x: Tensor) -> Tensor | float:
    # Expand first, then round: the cast's backward hands the [neurons] gradient back in the
    # parameter's dtype, and the expand's backward sums it there (in float16 a sum over many
    # neurons of a 65536-scaled loss overflows). Called every step, so the sum over steps is
    # also formed in the parameter's dtype.
    if not isinstance(param, Tensor) or param.dtype == x.dtype:
        return param
    return param.expand(torch.broadcast_shapes(param.shape, x.shape)).to(x.dtype)


def clif_step_reference(
    x: Tensor,
    comp: Tensor,
    mem: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    spike_grad: SpikeGrad,
    reset_mechanism: str = "subtract",
    graded_spikes_factor: Tensor | float = 1.0,
    inhibition: bool = False,
    state_quant: Optional[Callable[[Tensor], Tensor]] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One CLIF step. Returns ``(spk, comp, mem)`` at time :math:`t`.

    ``inhibition`` (snnTorch's winner-take-all along dim 1) keeps only the spike of the
    neuron with the largest :math:`h - \theta` per sample; ``state_quant`` is applied to
    :math:`h_t` before firing and to :math:`u_t` after the reset.

    Example::

        >>> import torch
        >>> from snntorch_clif.reference import clif_step_reference
        >>> from snntorch_clif.surrogate import rectangle
        >>> z = torch.zeros(1)
        >>> clif_step_reference(torch.tensor([1.5]), z, z, 0.5, 1.0, rectangle())
        (tensor([1.]), tensor([1.]), tensor([-0.2311]))
    """
    if reset_mechanism not in RESET_MECHANISMS:
        raise ValueError(f"reset_mechanism must be one of {RESET_MECHANISMS}, got {reset_mechanism!r}")
    beta = _in_input_dtype(beta, x)
    threshold = _in_input_dtype(threshold, x)
    graded_spikes_factor = _in_input_dtype(graded_spikes_factor, x)
    h = beta * mem + x
    if state_quant is not None:
        h = state_quant(h)
    s = spike(h - threshold, spike_grad)
    if inhibition:
        winner = torch.zeros_like(s)
        winner.scatter_(1, torch.argmax(h - threshold, dim=1, keepdim=True), 1.0)
        s = s * winner
    comp = torch.sigmoid((1 - beta) * h) * comp + s
    if reset_mechanism == "subtract":
        mem = h - s * (threshold + torch.sigmoid(comp))
    elif reset_mechanism == "zero":
        mem = (1 - s) * h - s * torch.sigmoid(comp)
    else:
        mem = h
    if state_quant is not None:
        mem = state_quant(mem)
    return s * graded_spikes_factor, comp, mem


def clif_sequence_reference(
    x_seq: Tensor,
    comp: Tensor,
    mem: Tensor,
    beta: Tensor | float,
    threshold: Tensor | float,
    spike_grad: SpikeGrad,
    reset_mechanism: str = "subtract",
    graded_spikes_factor: Tensor | float = 1.0,
    return_sequences: bool = False,
    inhibition: bool = False,
    state_quant: Optional[Callable[[Tensor], Tensor]] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`clif_step_reference` over the leading (time) dimension of ``x_seq``.

    Returns ``(spk_seq, comp, mem)``: the final states, or with ``return_sequences=True``
    the ``[T, ...]`` sequences of both states.

    Example::

        >>> x = torch.tensor([[1.5], [0.2], [1.0]])
        >>> z = torch.zeros(1)
        >>> spk, comp, mem = clif_sequence_reference(x, z, z, 0.5, 1.0, rectangle())
        >>> spk.flatten()
        tensor([1., 0., 0.])
    """
    spikes, comps, mems = [], [], []
    for x in x_seq.unbind(0):
        spk, comp, mem = clif_step_reference(
            x, comp, mem, beta, threshold, spike_grad, reset_mechanism,
            graded_spikes_factor, inhibition, state_quant,
        )
        spikes.append(spk)
        if return_sequences:
            comps.append(comp)
            mems.append(mem)
    if not spikes:  # T == 0: empty outputs, still connected to the graph
        if return_sequences:
            return x_seq.clone(), comp.unsqueeze(0)[:0], mem.unsqueeze(0)[:0]
        return x_seq.clone(), comp, mem
    if return_sequences:
        return torch.stack(spikes), torch.stack(comps), torch.stack(mems)
    return torch.stack(spikes), comp, mem
