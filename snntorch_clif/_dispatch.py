"""Choose the implementation that runs a step or a sequence.

Arguments arrive checked and converted by :mod:`snntorch_clif.functional` (states are
tensors in the input's dtype and device, parameters on its device in float32, float64 for
float64 inputs; the surrogate is resolved).
The fused op (:mod:`snntorch_clif.ops`) runs when :func:`snntorch_clif.backends.fused_unsupported_reason`
finds nothing against it; otherwise :mod:`snntorch_clif.reference` does.
"""

from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor

from . import backends, ops
from .reference import clif_sequence_reference, clif_step_reference
from .surrogate import SpikeGrad


def run_step(
    x: Tensor, comp: Optional[Tensor], mem: Optional[Tensor], beta: Tensor, threshold: Tensor, gsf: Tensor,
    spike_grad: SpikeGrad, reset_mechanism: str, inhibition: bool,
    state_quant: Optional[Callable[[Tensor], Tensor]], reset_delay: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One step: the fused op where it applies, else the reference (see :mod:`snntorch_clif.backends`).

    ``comp`` / ``mem`` ``None`` mean zeros (a ``mem`` of ``None`` with ``reset_delay``: no
    step before, nothing to reset); both paths take ``None`` as it is.
    """
    if backends.fused_unsupported_reason(x, spike_grad, inhibition, state_quant) is None:
        return ops.clif_step_fused(x, comp, mem, beta, threshold, gsf, spike_grad, reset_mechanism,  # type: ignore[arg-type]
                                   reset_delay)
    return clif_step_reference(
        x, comp, mem, beta, threshold, spike_grad, reset_mechanism, gsf, inhibition, state_quant, reset_delay
    )


def run_sequence(
    x_seq: Tensor, comp: Optional[Tensor], mem: Optional[Tensor], beta: Tensor, threshold: Tensor, gsf: Tensor,
    spike_grad: SpikeGrad, reset_mechanism: str, return_sequences: bool, inhibition: bool,
    state_quant: Optional[Callable[[Tensor], Tensor]], reset_delay: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """A ``[T, ...]`` sequence: the fused op where it applies, else the reference."""
    if backends.fused_unsupported_reason(x_seq, spike_grad, inhibition, state_quant) is None:
        return ops.clif_sequence_fused(
            x_seq, comp, mem, beta, threshold, gsf, spike_grad, reset_mechanism, return_sequences,  # type: ignore[arg-type]
            False, reset_delay,
        )
    return clif_sequence_reference(
        x_seq, comp, mem, beta, threshold, spike_grad, reset_mechanism, gsf, return_sequences,
        inhibition, state_quant, reset_delay,
    )
