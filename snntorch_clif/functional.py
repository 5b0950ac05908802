r"""Pure functions on tensors: one CLIF step, or a whole ``[T, ...]`` sequence.

They own no state: the caller passes the states in and gets the new ones back. They
check their arguments, then hand over to the dispatcher, which runs the fused kernel
where one fits and :mod:`snntorch_clif.reference` otherwise. The equations are those of
:mod:`snntorch_clif.reference`:

.. math::
    h_t = \beta u_{t-1} + x_t,\quad s_t = H(h_t - \theta),\quad
    m_t = \sigma((1-\beta)h_t)\, m_{t-1} + s_t,\quad u_t = h_t - s_t(\theta + \sigma(m_t))

Example::

    >>> import torch
    >>> from snntorch_clif.functional import clif_sequence
    >>> x = torch.rand(8, 32, 100)            # [T, batch, features]
    >>> spk, comp, mem = clif_sequence(x)     # states start from zeros
    >>> spk.shape, mem.shape
    (torch.Size([8, 32, 100]), torch.Size([32, 100]))
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple, Optional

import torch
from torch import Tensor

from . import _dispatch
from .reference import RESET_MECHANISMS
from .surrogate import SpikeGrad, resolve

__all__ = ["CLIFOutput", "clif_step", "clif_sequence"]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class CLIFOutput(NamedTuple):
    """``(spk, comp, mem)``: spikes, complementary potential, membrane potential."""

    spk: Tensor
    comp: Tensor
    mem: Tensor


def check_input(x: object, name: str, sequence: bool) -> Tensor:
    """Raise a clear error unless ``x`` is a floating tensor (with a time dim if ``sequence``)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    if sequence and x.ndim < 1:
        raise ValueError(f"{name} must be time-major [T, ...] with at least one dimension, got a 0-d tensor")
    return x


def check_reset_mechanism(reset_mechanism: object) -> str:
    """Raise ``ValueError`` unless ``reset_mechanism`` is one of ``subtract``, ``zero``, ``none``."""
    if reset_mechanism not in RESET_MECHANISMS:
        raise ValueError(f"reset_mechanism must be one of {RESET_MECHANISMS}, got {reset_mechanism!r}")
    return reset_mechanism  # type: ignore[return-value]


def check_reset_delay(reset_delay: object) -> bool:
    """Raise ``TypeError`` unless ``reset_delay`` is ``True`` or ``False``."""
    if reset_delay is not True and reset_delay is not False:
        raise TypeError(f"reset_delay must be True or False, got {reset_delay!r}")
    return reset_delay


def check_state(state: Optional[Tensor], name: str, like: Tensor, shape: torch.Size) -> Tensor:
    """A state passed explicitly: ``None`` or empty means zeros; otherwise it must match exactly."""
    if state is None:
        return like.new_zeros(shape)
    if not isinstance(state, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(state).__name__}")
    if state.numel() == 0 and state.shape != shape:
        return like.new_zeros(shape)
    if state.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)} to match the input, got {tuple(state.shape)}")
    if state.dtype != like.dtype:
        raise TypeError(f"{name} must have the input's dtype {like.dtype}, got {state.dtype}")
    if state.device != like.device:
        raise ValueError(f"{name} must be on the input's device {like.device}, got {state.device}")
    return state


def broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether a tensor of ``shape`` broadcasts to ``target`` without changing it.

    Plain Python on the sizes: called for every parameter on every step, it must cost
    far less than the step (``torch.broadcast_shapes`` costs more than the fused kernel
    of a small layer).

    Example::

        >>> import torch
        >>> broadcasts_to(torch.Size([4]), torch.Size([2, 4])), broadcasts_to(torch.Size([3]), torch.Size([2, 4]))
        (True, False)
    """
    if not shape or shape == target:
        return True
    if len(shape) > len(target):
        return False
    return all(s == 1 or s == t for s, t in zip(reversed(shape), reversed(target)))


def parameter_dtype(input_dtype: torch.dtype) -> torch.dtype:
    """The dtype parameters are used in for inputs of ``input_dtype``: float64 for float64, else float32.

    Half-precision inputs keep float32 parameters (and float32 gradients, which sum over
    every neuron and step and would overflow in float16 under a scaled loss), as autocast
    does for a layer's weights.
    """
    return torch.float64 if input_dtype == torch.float64 else torch.float32


def as_parameter(value: Tensor | float, name: str, dtype: torch.dtype, device: torch.device, shape: torch.Size) -> Tensor:
    """``beta``/``threshold``/``graded_spikes_factor`` as a tensor in ``dtype`` on ``device``.

    The caller passes :func:`parameter_dtype` of the input's dtype (float32 for
    float16/bfloat16 inputs) and the input's device, read once for all three parameters.
    A tensor must broadcast to the neuron shape ``shape`` without changing it.

    Example::

        >>> import torch
        >>> from snntorch_clif.functional import as_parameter, parameter_dtype
        >>> x = torch.zeros(3, dtype=torch.bfloat16)
        >>> as_parameter(torch.tensor(0.5), "beta", parameter_dtype(x.dtype), x.device, x.shape).dtype
        torch.float32
    """
    if isinstance(value, Tensor):
        if not broadcasts_to(value.shape, shape):
            raise ValueError(
                f"{name} of shape {tuple(value.shape)} does not broadcast to the neurons' shape {tuple(shape)}"
            )
        if value.dtype != dtype or value.device != device:
            value = value.to(device=device, dtype=dtype)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    return _constant(float(value), dtype, device)


_CONSTANTS: dict[tuple[torch.dtype, torch.device], dict[float | str, Tensor]] = {}


def _constant(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    # A float parameter as a 0-d tensor, made once per (value, dtype, device) and reused:
    # torch.tensor costs ~2 us, and a call takes three. Nothing writes to these tensors.
    if torch.compiler.is_compiling():
        return torch.tensor(value, dtype=dtype, device=device)
    # The float is its own key, except where == would mix values up: -0.0 and 0.0, and NaN
    # (never equal to itself); float.hex tells those apart, at 0.2 us a call.
    key: float | str = value if value == value and value != 0.0 else value.hex()
    cache = _CONSTANTS.get((dtype, device))
    if cache is None:
        cache = _CONSTANTS[(dtype, device)] = {}
    tensor = cache.get(key)
    if tensor is None:
        if len(cache) >= 1024:
            cache.clear()
        with torch.inference_mode(False):  # usable outside inference mode, saved for backward
            tensor = cache[key] = torch.tensor(value, dtype=dtype, device=device)
    return tensor


def _state_or_none(state: Optional[Tensor], name: str, like: Tensor, shape: torch.Size) -> Optional[Tensor]:
    # A zero state stays None down to the dispatch: the fused op takes None for zeros and
    # never reads an [N] buffer of them; the reference path makes the zeros.
    if state is None or (isinstance(state, Tensor) and state.numel() == 0 and state.shape != shape):
        return None
    return check_state(state, name, like, shape)


# Plain-number parameters and the surrogate, prepared once per call signature: the common
# call (float beta/threshold/gsf) then costs one dict lookup instead of ~20 Python frames
# (clif_sequence: 101,867 -> 73,065 instructions a call; ~3 us in situ at T=16, N=4096, where
# the kernels evict the interpreter from the caches). Keys: the three numbers, id(spike_grad)
# (the entry holds the object, so its id is not reused while cached), the reset mechanism,
# x's dtype and device. Only checked arguments are cached, so a hit needs no checks.
_PREPARED: dict[tuple[object, ...], tuple[object, Tensor, Tensor, Tensor, SpikeGrad]] = {}
_NUMBERS = (float, int)
_CPU = torch.device("cpu")


def _cacheable(value: float) -> bool:
    # == tells every other number apart; 0.0 == -0.0 and NaN != NaN (see _constant)
    return value == value and value != 0


def _prepare(
    x: Tensor, comp: Optional[Tensor], mem: Optional[Tensor], beta: Tensor | float,
    threshold: Tensor | float, graded_spikes_factor: Tensor | float, spike_grad: SpikeGrad | None,
    reset_mechanism: str, sequence: bool,
) -> tuple[Optional[Tensor], Optional[Tensor], Tensor, Tensor, Tensor, SpikeGrad]:
    # The arguments checked and converted for the dispatch (see _dispatch); the neurons'
    # shape is x.shape[1:] for a sequence, x.shape for a step.
    device = _CPU if x.is_cpu else x.device  # x.device makes a new object on every read
    key = prepared = None
    if (type(beta) in _NUMBERS and type(threshold) in _NUMBERS and type(graded_spikes_factor) in _NUMBERS
            and type(reset_mechanism) is str and not torch.compiler.is_compiling()):
        key = (beta, threshold, graded_spikes_factor, id(spike_grad), reset_mechanism, x.dtype, device)
        prepared = _PREPARED.get(key)
    if prepared is None:
        check_reset_mechanism(reset_mechanism)
        if not isinstance(beta, Tensor) and not 0.0 <= float(beta) <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        dtype = parameter_dtype(x.dtype)
        shape = x.shape[1:] if sequence else x.shape
        prepared = (
            spike_grad,
            as_parameter(beta, "beta", dtype, device, shape),
            as_parameter(threshold, "threshold", dtype, device, shape),
            as_parameter(graded_spikes_factor, "graded_spikes_factor", dtype, device, shape),
            resolve(spike_grad),
        )
        if key is not None and _cacheable(beta) and _cacheable(threshold) and _cacheable(graded_spikes_factor):
            if len(_PREPARED) >= 1024:
                _PREPARED.clear()
            _PREPARED[key] = prepared
    _, beta_t, threshold_t, gsf_t, surrogate = prepared
    if comp is not None or mem is not None:
        shape = x.shape[1:] if sequence else x.shape
        comp = _state_or_none(comp, "comp", x, shape)
        mem = _state_or_none(mem, "mem", x, shape)
    return comp, mem, beta_t, threshold_t, gsf_t, surrogate  # type: ignore[return-value]


# CLIFOutput(spk, comp, mem) from a tuple, made in C (the namedtuple's own __new__ is Python).
_output = partial(tuple.__new__, CLIFOutput)


def clif_step(
    x: Tensor,
    comp: Optional[Tensor] = None,
    mem: Optional[Tensor] = None,
    *,
    beta: Tensor | float = 0.5,
    threshold: Tensor | float = 1.0,
    spike_grad: SpikeGrad | None = None,
    reset_mechanism: str = "subtract",
    graded_spikes_factor: Tensor | float = 1.0,
    inhibition: bool = False,
    state_quant: Optional[Callable[[Tensor], Tensor]] = None,
    reset_delay: bool = False,
) -> CLIFOutput:
    r"""One CLIF time step on ``x`` (any shape).

    ``comp`` and ``mem`` are the previous states (``None`` or empty: zeros); ``beta``,
    ``threshold`` and ``graded_spikes_factor`` are floats or tensors broadcastable to
    ``x.shape``. Returns :class:`CLIFOutput` ``(spk, comp, mem)``, all in ``x``'s dtype
    (for float16/bfloat16 ``x`` the parameters and their gradients stay float32).

    .. math::
        h = \beta\,\mathrm{mem} + x,\quad s = H(h-\theta),\quad
        \mathrm{comp}' = \sigma((1-\beta)h)\,\mathrm{comp} + s,\quad
        \mathrm{mem}' = h - s\,(\theta + \sigma(\mathrm{comp}'))

    With ``reset_delay=True`` (snn.Leaky's timing) ``mem`` in and out is :math:`h`, the
    membrane *before* the reset, and the reset of the previous step is applied first, its
    spike and :math:`\sigma(\mathrm{comp})` detached (``mem`` ``None`` or empty: no step
    before, nothing to reset); the spikes and ``comp`` are those of ``reset_delay=False``:

    .. math::
        u = R\big(\mathrm{mem},\ \mathrm{sg}[H(\mathrm{mem} - \theta)],\
        \mathrm{sg}[\sigma(\mathrm{comp})],\ \theta\big),\quad
        h = \beta u + x,\quad \mathrm{mem}' = h

    (:math:`R` the reset of :mod:`snntorch_clif.reference`, ``sg`` a detached value).

    Example::

        >>> import torch
        >>> from snntorch_clif.functional import clif_step
        >>> spk, comp, mem = clif_step(torch.tensor([1.5, 0.5]))
        >>> spk, comp
        (tensor([1., 0.]), tensor([1., 0.]))
        >>> spk, comp, h = clif_step(torch.tensor([1.5, 0.5]), reset_delay=True)
        >>> h                                   # before the reset
        tensor([1.5000, 0.5000])
        >>> clif_step(torch.tensor([0.2, 0.2]), comp, h, reset_delay=True).mem
        tensor([0.0845, 0.4500])
    """
    check_input(x, "x", sequence=False)
    if reset_delay is not False:
        check_reset_delay(reset_delay)
    comp, mem, beta_t, thr_t, gsf_t, surrogate = _prepare(
        x, comp, mem, beta, threshold, graded_spikes_factor, spike_grad, reset_mechanism, sequence=False
    )
    return _output(_dispatch.run_step(
        x, comp, mem, beta_t, thr_t, gsf_t, surrogate, reset_mechanism, inhibition, state_quant, reset_delay
    ))


def clif_sequence(
    x_seq: Tensor,
    comp: Optional[Tensor] = None,
    mem: Optional[Tensor] = None,
    *,
    beta: Tensor | float = 0.5,
    threshold: Tensor | float = 1.0,
    spike_grad: SpikeGrad | None = None,
    reset_mechanism: str = "subtract",
    graded_spikes_factor: Tensor | float = 1.0,
    return_sequences: bool = False,
    inhibition: bool = False,
    state_quant: Optional[Callable[[Tensor], Tensor]] = None,
    reset_delay: bool = False,
) -> CLIFOutput:
    r"""CLIF over a whole time-major sequence ``x_seq`` of shape ``[T, ...]`` in one call.

    ``comp`` and ``mem`` are the states before the first step, shaped ``x_seq.shape[1:]``
    (``None`` or empty: zeros). Returns :class:`CLIFOutput`: the ``[T, ...]`` spikes and
    the final states, or with ``return_sequences=True`` the ``[T, ...]`` state sequences.
    Feeding a long sequence in chunks, passing each call's final states to the next,
    gives the same result as one call (truncated BPTT: detach the states in between).
    With ``reset_delay=True`` every step is :func:`clif_step`'s delayed-reset step: ``mem``
    in and out (and its sequence) is :math:`h`, the membrane before the reset, still in one
    fused call.

    .. math:: \text{for } t = 1..T:\ (s_t, m_t, u_t) = \mathrm{clif\_step}(x_t, m_{t-1}, u_{t-1})

    Example::

        >>> import torch
        >>> from snntorch_clif.functional import clif_sequence
        >>> x = torch.rand(16, 4, 10)
        >>> spk_a, comp, mem = clif_sequence(x[:8])
        >>> spk_b, comp, mem = clif_sequence(x[8:], comp, mem)
        >>> torch.equal(torch.cat([spk_a, spk_b]), clif_sequence(x).spk)
        True
        >>> delayed = clif_sequence(x, reset_delay=True)   # mem is h_T, the membrane before the reset
        >>> torch.equal(delayed.spk, clif_sequence(x).spk)
        True
    """
    check_input(x_seq, "x_seq", sequence=True)
    if reset_delay is not False:
        check_reset_delay(reset_delay)
    comp, mem, beta_t, thr_t, gsf_t, surrogate = _prepare(
        x_seq, comp, mem, beta, threshold, graded_spikes_factor, spike_grad, reset_mechanism, sequence=True
    )
    return _output(_dispatch.run_sequence(
        x_seq, comp, mem, beta_t, thr_t, gsf_t, surrogate, reset_mechanism, return_sequences,
        inhibition, state_quant, reset_delay,
    ))
