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

**Delayed reset** (``reset_delay=True``, snn.Leaky's default). The same neuron, with the
reset of step :math:`t-1` applied at the start of step :math:`t`: the ``mem`` state passed in
and returned is :math:`h` (the membrane *before* the reset), and

.. math::
    u_{t-1} &= R\big(h_{t-1},\ \mathrm{sg}[s_{t-1}],\ \mathrm{sg}[\sigma(m_{t-1})],\ \theta\big),
        \quad s_{t-1} = H(h_{t-1} - \theta) \\
    R(h, s, b, \theta) &= h - s\,(\theta + b) \ \text{("subtract")} \quad\text{or}\quad
        (1 - s)\, h - s\, b \ \text{("zero")}

then the charge, fire and complementary equations above, returning
:math:`(s_t \cdot \mathrm{gsf},\ m_t,\ h_t)`. :math:`\mathrm{sg}[\cdot]` is a detached value
(no gradient, as snn.Leaky detaches its delayed reset); :math:`\theta` is not detached. With
``inhibition``, :math:`s_{t-1}` is the winner's spike only; ``state_quant`` applies to
:math:`u_{t-1}`. A ``mem`` of ``None`` (or empty) means no step before: :math:`u_{-1} = 0`,
nothing to reset (a given tensor, even zeros, is :math:`h_{-1}` and gets its reset). The
spikes and ``comp`` are bit for bit those of ``reset_delay=False``; only the reported and
carried membrane and the gradient through the reset differ. With ``reset_mechanism="none"``
the option changes nothing.

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


def _absent(state: Optional[Tensor], x: Tensor) -> bool:
    # None, or an empty state for non-empty neurons (snnTorch's reset_mem() idiom): zeros
    return state is None or (state.numel() == 0 and state.shape != x.shape)


def _winner(h: Tensor, threshold: Tensor | float) -> Tensor:
    # inhibition: 1 for the neuron with the largest h - theta along dim 1, else 0
    winner = torch.zeros_like(h)
    winner.scatter_(1, torch.argmax(h - threshold, dim=1, keepdim=True), 1.0)
    return winner


def _delayed_reset(
    h: Tensor, comp: Tensor, threshold: Tensor | float, reset_mechanism: str, inhibition: bool,
    state_quant: Optional[Callable[[Tensor], Tensor]],
) -> Tensor:
    # u_{t-1} = R(h_{t-1}, sg[s_{t-1}], sg[sigma(m_{t-1})], theta): the spike step t-1 emitted
    # (the step's own rule and winner) and sigma(m) detached, theta not; the operations of the
    # step's reset below, so u has the bits it has without the delay.
    with torch.no_grad():
        s = (h - threshold >= 0).to(h.dtype)
        if inhibition:
            s = s * _winner(h, threshold)
        b = torch.sigmoid(comp)
    if reset_mechanism == "subtract":
        u = h - s * (threshold + b)
    else:
        u = (1 - s) * h - s * b
    return state_quant(u) if state_quant is not None else u


def clif_step_reference(
    x: Tensor,
    comp: Optional[Tensor],
    mem: Optional[Tensor],
    beta: Tensor | float,
    threshold: Tensor | float,
    spike_grad: SpikeGrad,
    reset_mechanism: str = "subtract",
    graded_spikes_factor: Tensor | float = 1.0,
    inhibition: bool = False,
    state_quant: Optional[Callable[[Tensor], Tensor]] = None,
    reset_delay: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One CLIF step. Returns ``(spk, comp, mem)`` at time :math:`t`.

    ``comp`` / ``mem`` ``None`` (or empty) mean zeros. ``inhibition`` (snnTorch's
    winner-take-all along dim 1) keeps only the spike of the neuron with the largest
    :math:`h - \theta` per sample; ``state_quant`` is applied to :math:`h_t` before firing and
    to :math:`u_t` after the reset. With ``reset_delay=True``, ``mem`` in and out is
    :math:`h` and the reset of the step before is applied first,
    :math:`u_{t-1} = R(h_{t-1}, \mathrm{sg}[s_{t-1}], \mathrm{sg}[\sigma(m_{t-1})], \theta)`
    (*Delayed reset* above).

    Example::

        >>> import torch
        >>> from snntorch_clif.reference import clif_step_reference
        >>> from snntorch_clif.surrogate import rectangle
        >>> z = torch.zeros(1)
        >>> clif_step_reference(torch.tensor([1.5]), z, z, 0.5, 1.0, rectangle())
        (tensor([1.]), tensor([1.]), tensor([-0.2311]))
        >>> spk, comp, h = clif_step_reference(torch.tensor([1.5]), z, None, 0.5, 1.0, rectangle(), reset_delay=True)
        >>> h                               # the membrane before the reset
        tensor([1.5000])
        >>> clif_step_reference(torch.tensor([0.2]), comp, h, 0.5, 1.0, rectangle(), reset_delay=True)[2]
        tensor([0.0845])
    """
    if reset_mechanism not in RESET_MECHANISMS:
        raise ValueError(f"reset_mechanism must be one of {RESET_MECHANISMS}, got {reset_mechanism!r}")
    beta = _in_input_dtype(beta, x)
    threshold = _in_input_dtype(threshold, x)
    graded_spikes_factor = _in_input_dtype(graded_spikes_factor, x)
    delay = reset_delay and reset_mechanism != "none"  # without a reset, h_t = u_t
    if _absent(comp, x):
        comp = torch.zeros_like(x)
    if _absent(mem, x):
        mem = torch.zeros_like(x)  # u_{-1} = 0: no step before, nothing to reset
    elif delay:
        mem = _delayed_reset(mem, comp, threshold, reset_mechanism, inhibition, state_quant)
    h = beta * mem + x
    if state_quant is not None:
        h = state_quant(h)
    s = spike(h - threshold, spike_grad)
    if inhibition:
        s = s * _winner(h, threshold)
    comp = torch.sigmoid((1 - beta) * h) * comp + s
    if delay:
        return s * graded_spikes_factor, comp, h
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
    comp: Optional[Tensor],
    mem: Optional[Tensor],
    beta: Tensor | float,
    threshold: Tensor | float,
    spike_grad: SpikeGrad,
    reset_mechanism: str = "subtract",
    graded_spikes_factor: Tensor | float = 1.0,
    return_sequences: bool = False,
    inhibition: bool = False,
    state_quant: Optional[Callable[[Tensor], Tensor]] = None,
    reset_delay: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`clif_step_reference` over the leading (time) dimension of ``x_seq``.

    Returns ``(spk_seq, comp, mem)``: the final states, or with ``return_sequences=True``
    the ``[T, ...]`` sequences of both states (with ``reset_delay``, ``mem`` is :math:`h`).
    ``comp`` / ``mem`` ``None`` (or empty) mean zeros (with ``reset_delay``: no step before).

    Example::

        >>> import torch
        >>> from snntorch_clif.surrogate import rectangle
        >>> x = torch.tensor([[1.5], [0.2], [1.0]])
        >>> z = torch.zeros(1)
        >>> spk, comp, mem = clif_sequence_reference(x, z, z, 0.5, 1.0, rectangle())
        >>> spk.flatten()
        tensor([1., 0., 1.])
    """
    shape = x_seq.shape[1:]
    if comp is None or (comp.numel() == 0 and comp.shape != shape):
        comp = x_seq.new_zeros(shape)
    if mem is not None and mem.numel() == 0 and mem.shape != shape:
        mem = None
    spikes, comps, mems = [], [], []
    for x in x_seq.unbind(0):
        spk, comp, mem = clif_step_reference(
            x, comp, mem, beta, threshold, spike_grad, reset_mechanism,
            graded_spikes_factor, inhibition, state_quant, reset_delay,
        )
        spikes.append(spk)
        if return_sequences:
            comps.append(comp)
            mems.append(mem)
    if not spikes:  # T == 0: empty outputs, still connected to the graph
        mem = x_seq.new_zeros(shape) if mem is None else mem
        if return_sequences:
            return x_seq.clone(), comp.unsqueeze(0)[:0], mem.unsqueeze(0)[:0]
        return x_seq.clone(), comp, mem
    if return_sequences:
        return torch.stack(spikes), torch.stack(comps), torch.stack(mems)
    return torch.stack(spikes), comp, mem
