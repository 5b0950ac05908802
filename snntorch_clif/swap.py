r"""Swap ``snn.Leaky`` for CLIF in an existing model, in one call: :func:`from_leaky`.

snnTorch code is written for ``snn.Leaky``'s signature: ``mem = lif.init_leaky()``, then
``spk, mem = lif(x, mem)`` in the time loop, or ``spk, mem = net(x)`` from an
``nn.Sequential`` whose last layer has ``output=True``. :func:`from_leaky` replaces every
``snn.Leaky`` of a model by a :class:`DropInCLIF`: the paper's neuron behind exactly that
signature (it keeps its complementary potential ``comp`` on the module), so the model's
own forward code and training loop run unchanged:

.. math::
    h_t = \beta u_{t-1} + x_t,\quad s_t = H(h_t - \theta),\quad
    m_t = \sigma((1-\beta)h_t)\, m_{t-1} + s_t,\quad u_t = h_t - s_t(\theta + \sigma(m_t))

Two settings decide whether the swap learns as well as the Leaky it replaces (measured on
snnTorch's own recipes in the docs' *Coming from snn.Leaky* page), and :func:`from_leaky`
applies both by default:

* the surrogate gradient: each layer keeps its Leaky's (snnTorch's default ``atan``), not
  the paper's rectangle, which passes no gradient to a layer far below threshold;
* the read-out layer (the last Leaky) reports its membrane before the reset and delays the
  reset's gradient (``reset_delay=True``, as ``snn.Leaky`` does), so that a loss on its
  membrane does not teach it to stop firing.

Example::

    >>> import torch, snntorch as snn
    >>> from torch import nn
    >>> from snntorch_clif import from_leaky
    >>> net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=0.9, init_hidden=True),
    ...                     nn.Linear(8, 2), snn.Leaky(beta=0.9, init_hidden=True, output=True))
    >>> clif_net = from_leaky(net)
    >>> spk, mem = clif_net(torch.rand(3, 4))      # the same call as before
    >>> type(clif_net[1]).__name__, clif_net[3].reset_delay
    ('DropInCLIF', True)
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from typing import Any, ClassVar, Optional, Union

import snntorch as snn
import torch
from torch import Tensor, nn

from .functional import broadcasts_to
from .neuron import CLIF
from .recurrent import RCLIF
from .surrogate import SpikeGrad, rectangle, resolve

__all__ = ["DropInCLIF", "DropInRCLIF", "from_leaky"]

#: ``snn.Leaky`` options that :class:`DropInCLIF` takes under the same name.
_COPIED_OPTIONS = ("init_hidden", "inhibition", "output", "reset_mechanism", "state_quant")
_VALUES = ("beta", "threshold", "graded_spikes_factor")


class _LeakySignature:
    """snnTorch's one-membrane call signature over a CLIF layer; ``comp`` stays on the module."""

    _returns_comp: ClassVar[bool] = False
    _kept: Any

    def _comp_for(self, mem: Tensor) -> Tensor:
        # comp carries on only where mem is what this layer returned last (or a detached alias)
        kept = self._kept
        if mem.numel() == 0 or kept.comp.shape != mem.shape:
            return kept.comp.new_zeros(0)
        if mem is kept.mem:
            return kept.comp
        if torch.compiler.is_compiling() or kept.mem.numel() == 0 or mem.data_ptr() != kept.mem.data_ptr():
            return kept.comp.new_zeros(0)
        return kept.comp if mem.requires_grad else kept.comp.detach()

    def _leaky_mem(self, mem: object, input_: object, multi: bool) -> Tensor:
        """``mem`` as snn.Leaky takes it: checked, and empty (zeros) when its shape cannot serve."""
        if not isinstance(mem, Tensor):
            raise TypeError(f"mem must be a torch.Tensor or None, got {type(mem).__name__}")
        shape = getattr(input_, "shape", None)
        if multi and shape is not None:
            shape = shape[1:]
        if shape is not None and mem.numel() > 1 and not broadcasts_to(mem.shape, shape):
            return mem.new_zeros(0)  # snn.Leaky starts a state of another shape over from zeros
        return mem

    @staticmethod
    def _without_comp(out: Union[Tensor, tuple[Tensor, ...]]) -> Union[Tensor, tuple[Tensor, Tensor]]:
        return out if isinstance(out, Tensor) else (out[0], out[-1])


class DropInCLIF(_LeakySignature, CLIF):
    r"""CLIF with ``snn.Leaky``'s call signature: one state in, one state out.

    The neuron is :class:`~snntorch_clif.CLIF`'s, exactly (same spikes, states and
    gradients); only the calls differ. Like ``snn.Leaky``:

    * ``mem = lif.reset_mem()`` (or ``init_leaky()``), then ``spk, mem = lif(x, mem)``;
    * ``spk, mem = lif(x)`` with the states kept on the module;
    * ``init_hidden=True``: ``spk = lif(x)``, and ``spk, mem = lif(x)`` with ``output=True``.

    The complementary potential ``comp`` (:math:`m`) lives on the module. It carries on
    from step to step while the caller passes back the ``mem`` this layer returned (or a
    detached copy of it, as in truncated BPTT: ``comp`` is then detached too), and starts
    from zero whenever the caller starts over: after ``reset_mem()`` / ``init_leaky()``,
    with an empty ``mem``, or with any other tensor (e.g. ``torch.zeros(...)``). A ``mem``
    of another shape than the input's that does not broadcast to it starts over from zeros,
    as ``snn.Leaky`` does. :func:`from_leaky` builds these from a model's ``snn.Leaky``
    layers; constructing one directly takes :class:`~snntorch_clif.CLIF`'s arguments.

    Example::

        >>> import torch
        >>> from snntorch_clif import DropInCLIF
        >>> lif = DropInCLIF(beta=0.9)
        >>> mem = lif.init_leaky()
        >>> for x in torch.rand(5, 2, 3):          # [T, batch, features]
        ...     spk, mem = lif(x, mem)
        >>> lif.comp.shape                         # the second state, kept on the module
        torch.Size([2, 3])
    """

    def forward(self, input_: Tensor, mem: Optional[Tensor] = None) -> Union[Tensor, tuple[Tensor, Tensor]]:  # type: ignore[override]
        """Advance one step (or a ``[T, ...]`` sequence with ``step_mode="multi"``) from ``mem``."""
        if mem is None:
            return self._without_comp(CLIF.forward(self, input_))
        if self.init_hidden:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        mem = self._leaky_mem(mem, input_, self.step_mode == "multi")
        return self._without_comp(CLIF.forward(self, input_, self._comp_for(mem), mem))

    def reset_mem(self) -> Tensor:  # type: ignore[override]
        """Reset both states and return ``mem``: an empty tensor, which means zeros.

        Example::

            >>> lif = DropInCLIF()
            >>> mem = lif.reset_mem()
            >>> spk, mem = lif(torch.rand(2, 3), mem)
        """
        return CLIF.reset_mem(self)[1]

    def init_leaky(self) -> Tensor:  # type: ignore[override]
        """snnTorch's older name of :meth:`reset_mem`."""
        return self.reset_mem()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        _clamp_fixed_beta(self)


class DropInRCLIF(_LeakySignature, RCLIF):
    r"""RCLIF with ``snn.RLeaky``'s call signature: ``spk, mem = rlif(x, spk, mem)``.

    The neuron is :class:`~snntorch_clif.RCLIF`'s (CLIF with spike feedback,
    :math:`h_t = \beta u_{t-1} + x_t + \mathcal{W}(s_{t-1})`); ``comp`` lives on the
    module as in :class:`DropInCLIF`. ``spk, mem = rlif.reset_mem()`` (or
    ``init_rleaky()``) returns empty states, which mean zeros. :func:`from_leaky` builds
    these from a model's ``snn.RLeaky`` layers.

    Example::

        >>> import torch
        >>> from snntorch_clif.swap import DropInRCLIF
        >>> rlif = DropInRCLIF(beta=0.9, linear_features=3)
        >>> spk, mem = rlif.init_rleaky()
        >>> for x in torch.rand(5, 2, 3):
        ...     spk, mem = rlif(x, spk, mem)
        >>> spk.shape, rlif.comp.shape
        (torch.Size([2, 3]), torch.Size([2, 3]))
    """

    def forward(  # type: ignore[override]
        self, input_: Tensor, spk: Optional[Tensor] = None, mem: Optional[Tensor] = None
    ) -> Union[Tensor, tuple[Tensor, Tensor]]:
        """Advance one step (or a ``[T, ...]`` sequence) from the last spike ``spk`` and ``mem``."""
        if spk is None and mem is None:
            return self._without_comp(RCLIF.forward(self, input_))
        if self.init_hidden:
            raise TypeError("`spk` and `mem` should not be passed as arguments while `init_hidden=True`")
        if spk is None or mem is None:
            raise TypeError("pass both `spk` and `mem` (as snn.RLeaky's `spk, mem = rlif(x, spk, mem)`), or neither")
        mem = self._leaky_mem(mem, input_, self.step_mode == "multi")
        if mem.numel() == 0 and isinstance(spk, Tensor):
            spk = spk.new_zeros(0)  # starting over: no spike to feed back
        return self._without_comp(RCLIF.forward(self, input_, spk, self._comp_for(mem), mem))

    def reset_mem(self) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """Reset the states and return ``(spk, mem)``: empty tensors, which mean zeros."""
        spk, _, mem = RCLIF.reset_mem(self)
        return spk, mem

    def init_rleaky(self) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """snnTorch's older name of :meth:`reset_mem`."""
        return self.reset_mem()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        _clamp_fixed_beta(self)


def _clamp_fixed_beta(layer: CLIF) -> None:
    beta = layer._buffers.get("beta")
    if beta is not None:  # snnTorch clamps beta to [0, 1] in every step; a fixed CLIF beta must lie there
        with torch.no_grad():
            beta.clamp_(0, 1)


def _surrogate_for(leaky: snn.Leaky, spike_grad: Union[str, SpikeGrad]) -> tuple[SpikeGrad, bool]:
    """The converted layer's ``(spike_grad, surrogate_disable)``."""
    if leaky.surrogate_disable:
        return rectangle(), True
    if isinstance(spike_grad, str):
        if spike_grad == "leaky":
            return resolve(leaky.spike_grad), False
        if spike_grad == "paper":
            return rectangle(), False
        raise ValueError(f"spike_grad must be 'leaky', 'paper' or a surrogate, got {spike_grad!r}")
    if not callable(spike_grad):
        raise TypeError(f"spike_grad must be 'leaky', 'paper' or a callable surrogate, got {type(spike_grad).__name__}")
    return resolve(spike_grad), False


_CONVERTED = (snn.Leaky, snn.RLeaky)  # exactly these classes; subclasses may change the dynamics


def _drop_in(
    leaky: Union[snn.Leaky, snn.RLeaky], name: str, memo: dict, spike_grad: Union[str, SpikeGrad], reset_delay: bool
) -> Union[DropInCLIF, DropInRCLIF]:
    """A :class:`DropInCLIF` (or :class:`DropInRCLIF`) with ``leaky``'s options and values."""
    surrogate, disabled = _surrogate_for(leaky, spike_grad)
    if isinstance(leaky, snn.RLeaky):
        rclif = DropInRCLIF.from_rleaky(leaky, spike_grad=surrogate, surrogate_disable=disabled, reset_delay=reset_delay)
        _clamp_fixed_beta(rclif)
        return rclif.train(leaky.training)
    options = {option: getattr(leaky, option) for option in _COPIED_OPTIONS}
    if options["state_quant"] is not False and not callable(options["state_quant"]):
        raise ValueError(
            f"layer {name or '<model>'!r}: state_quant must be False or a callable, got {options['state_quant']!r}"
        )
    clif = DropInCLIF(spike_grad=surrogate, surrogate_disable=disabled, reset_delay=reset_delay, **options)
    device = leaky.threshold.device
    for value_name in _VALUES:
        value = getattr(leaky, value_name)
        if not isinstance(value, Tensor):
            value = torch.as_tensor(float(value), dtype=torch.get_default_dtype(), device=device)
        value = copy.deepcopy(value, memo)  # parameters shared between layers stay shared
        clif._parameters.pop(value_name, None)
        clif._buffers.pop(value_name, None)
        if isinstance(value, nn.Parameter):
            clif.register_parameter(value_name, value)
        else:
            if value_name == "beta":
                value = value.clamp(0, 1)  # snn.Leaky clamps a fixed beta in every step
            clif.register_buffer(value_name, value)
    clif.reset_mechanism_val = clif.reset_mechanism_val.to(device)
    clif.train(leaky.training)
    return clif


def _layer_names(arg: str, value: Union[str, Iterable[str], None], leaky_names: list[str]) -> set[str]:
    """The layer names ``value`` (the argument ``arg`` of :func:`from_leaky`) selects."""
    if value is None or value == "none":
        return set()
    if value == "last":
        return set(leaky_names[-1:])
    if isinstance(value, str):
        raise ValueError(f"{arg} must be 'last', 'none', None or an iterable of layer names, got {value!r}")
    names = set(value)
    unknown = sorted(names - set(leaky_names))
    if unknown:
        raise ValueError(f"{arg} names no snn.Leaky layer of the model: {unknown}; its Leaky layers are {leaky_names}")
    return names


def _other_neurons(model: nn.Module) -> list[str]:
    return [
        f"{name or '<model>'} ({type(module).__name__})"
        for name, module in model.named_modules()
        if isinstance(module, snn.SpikingNeuron) and type(module) not in _CONVERTED and not isinstance(module, CLIF)
    ]


def from_leaky(
    model: nn.Module,
    *,
    readout: Union[str, Iterable[str], None] = "last",
    spike_grad: Union[str, SpikeGrad] = "leaky",
    keep: Union[str, Iterable[str], None] = None,
) -> nn.Module:
    r"""A copy of ``model`` with every ``snn.Leaky`` (nested ones too) replaced by a :class:`DropInCLIF`.

    Every ``snn.RLeaky`` becomes a :class:`DropInRCLIF` the same way (its recurrent weights
    and ``V`` carried over, see :meth:`~snntorch_clif.RCLIF.from_rleaky`). Each CLIF takes its Leaky's ``beta`` (scalar or per-neuron; a learnable one stays an
    ``nn.Parameter``, with its current value), ``threshold``, ``graded_spikes_factor`` and
    their ``learn_*`` flags, ``reset_mechanism``, ``init_hidden``, ``output``,
    ``inhibition`` and ``state_quant``, so a trained Leaky model's ``state_dict`` loads into
    the result, and the model's forward code runs unchanged (see :class:`DropInCLIF`). Every
    layer runs the paper's neuron with its same-step reset,

    .. math:: u_t = h_t - s_t\,(\theta + \sigma(m_t)),

    except the read-out layers, which get ``reset_delay=True`` (report :math:`h_t`, the
    membrane before the reset, and take the reset's gradient one step late, as
    ``snn.Leaky`` does).

    Args:
        model: the network (or a single ``snn.Leaky``). It is not modified.
        readout: the layers whose membrane the loss reads: ``"last"`` (default: the last
            ``snn.Leaky`` or ``snn.RLeaky`` in ``model.named_modules()`` order, the output layer of a
            feed-forward model), ``"none"`` / ``None``, or the layers' names as
            ``named_modules()`` gives them. A layer trained only on its spikes
            (``ce_rate_loss``, ``mse_count_loss``) learns as well either way.
        spike_grad: ``"leaky"`` (default: each layer keeps its Leaky's surrogate,
            snnTorch's ``atan`` when it had none), ``"paper"`` (the paper's rectangle, the
            plain :class:`~snntorch_clif.CLIF` default), or one surrogate for every layer.
        keep: layers left as they are (``snn.Leaky`` / ``snn.RLeaky``), named as ``readout``
            names them (``"last"``, ``None``, or names). ``keep="last"`` suits a model trained
            on its output membrane against a target value (``mse_membrane_loss``, regression):
            CLIF's reset of :math:`\theta + \sigma(m)` pulls that membrane off the target. See
            :doc:`/migration` for the measured effect of each choice.

    Other neurons (``snn.Synaptic``, ``snn.Alpha``, subclasses of ``snn.Leaky``, ...) stay
    in place, named in a warning; a model without ``snn.Leaky`` or ``snn.RLeaky`` layers is
    returned as it is, with a warning.
    Learnable ``beta`` outside [0, 1] is clamped in the forward pass, as ``snn.Leaky``
    does; a fixed one is clamped once here.

    Example::

        >>> import snntorch as snn
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=0.9, init_hidden=True),
        ...                     nn.Linear(8, 2), snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> clif_net = from_leaky(net)
        >>> clif_net[1].reset_delay, clif_net[3].reset_delay, clif_net[1].spike_grad
        (False, True, ATan(alpha=2.0))
        >>> clif_net.load_state_dict(net.state_dict())     # a trained Leaky model's weights
        <All keys matched successfully>
        >>> type(from_leaky(net, keep="last")[3]).__name__  # the output layer stays snn.Leaky
        'Leaky'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    leakies = [(name, module) for name, module in model.named_modules() if type(module) in _CONVERTED]
    others = _other_neurons(model)
    if others:
        warnings.warn(
            f"from_leaky converts snn.Leaky and snn.RLeaky layers only; these neurons stay as they are: {', '.join(others)}",
            stacklevel=2,
        )
    if not leakies:
        warnings.warn("from_leaky: the model has no snn.Leaky or snn.RLeaky layer; it is returned unchanged", stacklevel=2)
        return model
    names = [name for name, _ in leakies]
    kept = _layer_names("keep", keep, names)
    delayed = _layer_names("readout", readout, names) - kept
    leakies = [(name, leaky) for name, leaky in leakies if name not in kept]
    memo: dict[int, Any] = {}
    converted: dict[int, DropInCLIF] = {}
    for name, leaky in leakies:
        if id(leaky) not in converted:  # a layer used twice is converted once
            converted[id(leaky)] = _drop_in(leaky, name, memo, spike_grad, reset_delay=name in delayed)
    if id(model) in converted:
        return converted[id(model)]
    memo.update(converted)  # deepcopy puts each converted layer where its Leaky was
    try:
        result = copy.deepcopy(model, memo)
    except RuntimeError as error:
        if "deepcopy" not in str(error):
            raise
        raise RuntimeError(
            "from_leaky copies the model, and a module other than snn.Leaky holds a state that is part of "
            f"an autograd graph ({error}). Reset or detach the model's states first "
            "(e.g. snntorch.utils.reset(model))"
        ) from error
    # snnTorch resets and detaches Leaky states through the class-level registry its __init__
    # fills; a copied (kept) Leaky is not in it until added
    registry = snn.SpikingNeuron.instances
    for module in result.modules():
        if type(module) in _CONVERTED and not any(entry is module for entry in registry):
            registry.append(module)
    return result
