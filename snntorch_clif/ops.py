r"""The fused CLIF kernels as ``torch.library`` custom ops, with fake kernels (autograd: ``csrc/autograd.cpp``).

The compiled library ``snntorch_clif._C`` defines two ops (schemas in
``csrc/register.cpp``; CPU kernel ``csrc/cpu/clif_cpu.cpp``, CUDA kernel
``csrc/cuda/clif_cuda.cu``, both built on the per-element math of ``csrc/clif_math.h``):

``torch.ops.snntorch_clif.clif_forward(x, comp0, mem0, beta, threshold, gsf, reset, surrogate, surrogate_param, return_sequences, save, step=False, reset_delay=False)``
    (``x`` time-major ``[T, *neurons]``, any neuron shape, read as :math:`N` neurons in a row;
    ``comp0``, ``mem0`` shaped ``neurons`` in ``x``'s dtype, or ``None`` for zeros; ``beta``,
    ``threshold``, ``gsf`` one value or :math:`N` values in the compute dtype, float32 or
    float64) runs :math:`T` steps of

    .. math::
        h_t = \beta u_{t-1} + x_t,\quad s_t = H(h_t - \theta),\quad
        m_t = \sigma((1-\beta)h_t)\, m_{t-1} + s_t,\quad u_t = \mathrm{reset}(h_t, s_t, \sigma(m_t))

    and returns ``(spk, comp, mem, saved)``: the spikes
    :math:`s_t \cdot` ``gsf`` in ``x``'s shape, the final states (``[T, *neurons]`` sequences with
    ``return_sequences``) and, with ``save``, the ``[T + ceil(T/16), N]`` buffer the
    backward needs (float32, float64 for float64 inputs): :math:`h_t` at every step and
    :math:`m` only every :data:`SAVE_CHUNK` steps (:math:`m_{-1}, m_{15}, m_{31}, \dots`);
    the backward recomputes :math:`m_t` inside each chunk from :math:`h` with the forward's
    own operations, so its results are the bits of saving every :math:`m_t`, at
    4.25 instead of 8 bytes per neuron-step. With ``step``, ``x`` is one step without the time
    dimension. With ``reset_delay`` (see
    :func:`snntorch_clif.reference.clif_step_reference`) ``mem0`` and the returned ``mem`` are
    :math:`h`, the membrane before the reset: a given ``mem0`` is reset (from ``comp0``) before
    the first step, ``None`` means no step before (:math:`u_{-1} = 0`, no reset).
``torch.ops.snntorch_clif.clif_backward(...)``
    the reverse pass: gradients of ``x``, ``comp0``, ``mem0`` and per-neuron partial sums
    for ``beta``, ``threshold`` and ``gsf``, which the op's autograd (C++, ``csrc/autograd.cpp``) reduces to the
    parameters' shapes.

Most code should call :func:`clif_sequence_fused` / :func:`clif_step_fused` (any neuron
shape) or, better, :mod:`snntorch_clif.functional`, which picks this path when it
applies. They call ``clif_forward`` through the library's own Python entry
(``csrc/python_call.cpp``: the same dispatcher call, without ``torch.ops``' generic
argument conversion, ~20,000 instructions a call), and through ``torch.ops`` under
``torch.compile``, a ``__torch_function__`` mode or a tensor subclass. The import never
fails: without the compiled library :data:`AVAILABLE` is ``False`` and :data:`LOAD_ERROR`
says why, naming the torch the library was built for, the one running, and the command
that rebuilds it (``python -m snntorch_clif.build``, see :mod:`snntorch_clif.build`). A
library that command built for the running torch and the package's kernel sources is
loaded in preference to the installed one.

Example::

    >>> import torch
    >>> from snntorch_clif import ops, surrogate
    >>> x = torch.rand(16, 32, 100, requires_grad=True)          # [T, batch, features]
    >>> z = torch.zeros(32, 100)
    >>> one = torch.tensor(1.0)
    >>> spk, comp, mem = ops.clif_sequence_fused(
    ...     x, z, z, torch.tensor(0.5), one, one, surrogate.rectangle(), "subtract", False)
    >>> spk.sum().backward()
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Optional

import torch
from torch import Tensor

from . import _build
from .surrogate import Surrogate

__all__ = [
    "AVAILABLE",
    "BUILT_FOR_TORCH",
    "LIBRARY_PATH",
    "LOAD_ERROR",
    "RESET_IDS",
    "SAVE_CHUNK",
    "clif_sequence_fused",
    "clif_step_fused",
    "has_kernel",
    "saved_rows",
]


def _built_for_torch() -> Optional[str]:
    """The torch version ``setup.py`` compiled ``_C`` against (its ``_build_info.py``), if recorded."""
    try:
        from . import _build_info
    except ImportError:
        return None
    return getattr(_build_info, "TORCH_VERSION", None) if getattr(_build_info, "COMPILED", True) else None


def _load_rebuilt(path: Path) -> ModuleType:
    """Load the library ``python -m snntorch_clif.build`` compiled, as ``snntorch_clif._C``."""
    name = f"{__package__}._C"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers torch.ops.snntorch_clif.*
    sys.modules[name] = module
    return module


def _mismatch_error(error: str, built_for: Optional[str]) -> str:
    """Why the kernels did not load, with the torch versions and the command that fixes it."""
    if built_for is None:
        why = f"the torch it was built for is not recorded, and torch {torch.__version__} is running"
    elif built_for != torch.__version__:
        why = f"the library was built for torch {built_for}, and torch {torch.__version__} is running"
    else:
        why = f"the library was built for this torch ({built_for})"
    return f"{error}; {why}. Rebuild the kernels for the installed torch with: {_build.REBUILD_COMMAND}"


def _load_library() -> tuple[Optional[ModuleType], Optional[str], Optional[str]]:
    """``(module, error, path)``: the library rebuilt for this torch if there is one, else the installed ``_C``."""
    # sys.modules[name] = None is Python's way to block an import: honour it (tests use it).
    blocked = sys.modules.get(f"{__package__}._C", ...) is None
    error = None
    rebuilt = None if blocked else _build.cached_library(torch.__version__)
    if rebuilt is not None:
        # The user built it for this torch, these sources and (with CUDA) this GPU: it wins.
        # Only one library per process can register the ops, so the installed one is tried after.
        try:
            return _load_rebuilt(rebuilt), None, str(rebuilt)
        except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from a broken build
            error = f"the rebuilt {rebuilt} did not load ({type(exc).__name__}: {exc})"
    try:
        from . import _C
    except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from a broken build
        installed_error = f"{type(exc).__name__}: {exc}"
        return None, _mismatch_error(installed_error + (f"; {error}" if error else ""), _built_for_torch()), None
    return _C, None, getattr(_C, "__file__", None)


_C, LOAD_ERROR, _library_path = _load_library()

#: Whether the compiled library loaded (the ops exist).
AVAILABLE: bool = _C is not None

#: The file the kernels were loaded from: the installed ``_C``, or the one
#: ``python -m snntorch_clif.build`` compiled for this torch; ``None`` when none loaded.
LIBRARY_PATH: Optional[str] = _library_path

#: The torch version ``setup.py`` compiled the installed library against (``None``: not recorded).
BUILT_FOR_TORCH: Optional[str] = _built_for_torch()

#: Reset mechanism -> the kernels' id (csrc/clif_math.h).
RESET_IDS = {"subtract": 0, "zero": 1, "none": 2}

#: The forward saves the complementary state m once every this many steps
#: (``kSaveChunk`` in ``csrc/clif_checks.h``; opcheck's fake-kernel test keeps them equal).
SAVE_CHUNK = 16


def saved_rows(T: int) -> int:
    """Rows of the fused forward's saved buffer for ``T`` steps: ``T`` rows of h, ``ceil(T/16)`` of m.

    Example::

        >>> from snntorch_clif.ops import saved_rows
        >>> saved_rows(1), saved_rows(16), saved_rows(17)
        (2, 17, 19)
    """
    return T + -(-T // SAVE_CHUNK)

_OP = "snntorch_clif::clif_forward"


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


#: The dtypes the kernels compute in (the values of _acc_dtype).
_COMPUTE_DTYPES = (torch.float32, torch.float64)


def _registered_kernels() -> dict[str, bool]:
    if not AVAILABLE:
        return {}
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return {"cpu": has(_OP, "CPU"), "cuda": has(_OP, "CUDA")}


# Looked up once: torch.compile traces has_kernel() as a plain dict lookup.
_KERNELS = _registered_kernels()

# The library's direct entry to clif_forward (csrc/python_call.cpp): the op through the same
# dispatcher call as torch.ops, without its generic argument conversion (~4 us a call in
# situ). None for a library built before it existed. torch.compile traces torch.ops instead.
_forward_entry = getattr(_C, "forward", None)


def has_kernel(device_type: str) -> bool:
    """Whether the fused op has a kernel for ``device_type`` (``"cpu"``, ``"cuda"``).

    Example::

        >>> from snntorch_clif import ops
        >>> ops.has_kernel("cpu") == ops.AVAILABLE
        True
    """
    return _KERNELS.get(device_type, False)


if AVAILABLE:

    @torch.library.register_fake("snntorch_clif::clif_forward")
    def _forward_fake(
        x: Tensor, comp0: Optional[Tensor], mem0: Optional[Tensor], beta: Tensor, threshold: Tensor, gsf: Tensor,
        reset: int, surrogate: int, surrogate_param: float, return_sequences: bool, save: bool,
        step: bool = False, reset_delay: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if step:  # one step, no time dim: the neurons are x's shape
            T, neurons = 1, x.shape
            state = neurons
        else:
            torch._check(x.dim() >= 1, lambda: "x must be time-major [T, ...], got a 0-d tensor")
            T, neurons = x.shape[0], x.shape[1:]
            state = x.shape if return_sequences else neurons
        acc = _acc_dtype(x.dtype)
        saved = x.new_empty((saved_rows(T), math.prod(neurons)), dtype=acc) if save else x.new_empty((0,), dtype=acc)
        return x.new_empty(x.shape), x.new_empty(state), x.new_empty(state), saved

    @torch.library.register_fake("snntorch_clif::clif_backward")
    def _backward_fake(
        grad_spk: Tensor, grad_comp: Optional[Tensor], grad_mem: Optional[Tensor], saved: Tensor,
        mem0: Optional[Tensor], beta: Tensor, threshold: Tensor, gsf: Tensor, reset: int, surrogate: int,
        surrogate_param: float, param_grads: bool, reset_delay: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        neurons = grad_spk.shape[1:]
        acc = _acc_dtype(grad_spk.dtype)
        pn = math.prod(neurons) if param_grads else 0
        return (
            grad_spk.new_empty(grad_spk.shape), grad_spk.new_empty(neurons), grad_spk.new_empty(neurons),
            grad_spk.new_empty((pn,), dtype=acc), grad_spk.new_empty((pn,), dtype=acc),
            grad_spk.new_empty((pn,), dtype=acc),
        )



def _op_param(p: Tensor, x: Tensor, step: bool) -> Tensor:
    # A parameter as the op takes it, in the compute dtype: one value (any shape) or one per
    # neuron. A broadcast one is expanded to the neurons' shape: autograd's expand then sums
    # the per-neuron gradient back to the parameter's own shape (sum_to_size) in float32,
    # and rounds to a float16/bfloat16 parameter's dtype once.
    if p.dtype not in _COMPUTE_DTYPES:
        p = p.to(_acc_dtype(p.dtype))
    if p.ndim == 0 or p.numel() == 1:  # ndim: an attribute, cheaper than a method call
        return p
    neurons = x.shape if step else x.shape[1:]
    if p.shape == neurons and p.is_contiguous():
        return p
    return p.expand(neurons).contiguous()


def clif_sequence_fused(
    x_seq: Tensor, comp: Optional[Tensor], mem: Optional[Tensor], beta: Tensor, threshold: Tensor, gsf: Tensor,
    spike_grad: Surrogate, reset_mechanism: str, return_sequences: bool, step: bool = False,
    reset_delay: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""CLIF over ``x_seq`` ``[T, ...]`` with the fused op: ``(spk, comp, mem)``.

    Same contract as :func:`snntorch_clif.reference.clif_sequence_reference` (without
    ``inhibition`` / ``state_quant``): ``comp``, ``mem`` shaped ``x_seq.shape[1:]`` (``None``:
    zeros, which the kernel then never reads from memory),
    ``beta``, ``threshold``, ``gsf`` tensors broadcastable to it (the states in ``x_seq``'s
    dtype, all on its device; parameters in any float dtype, used and differentiated in
    float32, float64 for float64 inputs); ``spike_grad`` a
    :class:`~snntorch_clif.surrogate.Surrogate`. Fires when :math:`h_t - \theta \ge 0`.
    With ``step=True``, ``x_seq`` is one time step without the time dimension (the neurons
    are its whole shape, :math:`T = 1`), and the spikes come back in its shape. With
    ``reset_delay=True``, ``mem`` (in and out) is :math:`h`, the membrane before the reset,
    whose reset is applied at the next step (``None``: no step before, nothing to reset), as
    in the reference.

    Example::

        >>> import torch
        >>> from snntorch_clif import ops, surrogate
        >>> x, z, c = torch.tensor([[1.5], [0.2]]), torch.zeros(1), torch.tensor(1.0)
        >>> spk, comp, mem = ops.clif_sequence_fused(
        ...     x, z, z, torch.tensor(0.5), c, c, surrogate.rectangle(), "subtract", False)
        >>> spk.flatten()
        tensor([1., 0.])
    """
    # The op takes and returns the neurons' shape as it is: no views (snnTorch detaches kept
    # states in place, which autograd refuses on views), no reshape nodes in the graph.
    x_seq = x_seq.contiguous()
    comp = None if comp is None else comp.contiguous()
    mem = None if mem is None else mem.contiguous()
    beta = _op_param(beta, x_seq, step)
    threshold = _op_param(threshold, x_seq, step)
    gsf = _op_param(gsf, x_seq, step)
    save = torch.is_grad_enabled() and (
        x_seq.requires_grad or beta.requires_grad or threshold.requires_grad or gsf.requires_grad
        or (comp is not None and comp.requires_grad) or (mem is not None and mem.requires_grad)
    )
    args = (x_seq, comp, mem, beta, threshold, gsf, RESET_IDS[reset_mechanism], spike_grad.kind, spike_grad.param,
            return_sequences, save, step, reset_delay)
    out = NotImplemented
    if _forward_entry is not None and not torch.compiler.is_compiling():
        out = _forward_entry(*args)  # NotImplemented where torch.ops must handle the call
    if out is NotImplemented:
        out = torch.ops.snntorch_clif.clif_forward(*args)
    return out[0], out[1], out[2]


def clif_step_fused(
    x: Tensor, comp: Optional[Tensor], mem: Optional[Tensor], beta: Tensor, threshold: Tensor, gsf: Tensor,
    spike_grad: Surrogate, reset_mechanism: str, reset_delay: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One CLIF step with the fused op (its step form: :math:`T = 1`, no time dimension).

    With ``reset_delay=True`` the ``mem`` passed and returned is :math:`h` (see
    :func:`clif_sequence_fused`).

    .. math:: h = \beta\,\mathrm{mem} + x,\ s = H(h - \theta),\
        \mathrm{comp}' = \sigma((1-\beta)h)\,\mathrm{comp} + s,\
        \mathrm{mem}' = \mathrm{reset}(h, s, \sigma(\mathrm{comp}'))

    Example::

        >>> import torch
        >>> from snntorch_clif import ops, surrogate
        >>> z, c = torch.zeros(2), torch.tensor(1.0)
        >>> spk, comp, mem = ops.clif_step_fused(
        ...     torch.tensor([1.5, 0.5]), z, z, torch.tensor(0.5), c, c, surrogate.rectangle(), "subtract")
        >>> spk
        tensor([1., 0.])
    """
    # The op's step form: no unsqueeze / squeeze views around it (~9 us a step, fwd+bwd).
    return clif_sequence_fused(
        x, comp, mem, beta, threshold, gsf, spike_grad, reset_mechanism, False, step=True, reset_delay=reset_delay
    )
