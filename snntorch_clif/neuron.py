r"""The stateful :class:`CLIF` module with snnTorch's neuron API, and :func:`reset`."""

from __future__ import annotations

import weakref
from typing import Any, Callable, ClassVar, Optional, Union

import snntorch as snn
import torch
from torch import Tensor, nn

from .functional import check_input, check_reset_mechanism, clif_sequence, clif_step
from .surrogate import Disabled, SpikeGrad, resolve

__all__ = ["CLIF", "reset", "detach"]

STEP_MODES = ("single", "multi")
_RESET_NAMES = list(snn.SpikingNeuron.reset_dict)  # index = reset_mechanism_val


def _forget_proxy(proxy: Any) -> None:
    instances = snn.SpikingNeuron.instances
    for i, entry in enumerate(instances):
        if entry is proxy:
            del instances[i]
            return


def _as_float_tensor(value: Union[Tensor, float], name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value if value.is_floating_point() else value.to(torch.get_default_dtype())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    return torch.as_tensor(float(value), dtype=torch.get_default_dtype())


class CLIF(snn.Leaky):
    r"""Complementary Leaky Integrate-and-Fire neuron (Huang et al., ICML 2024).

    A drop-in for ``snn.Leaky``: same constructor arguments (less ``reset_delay``: CLIF
    resets in the step it fires, with gradient through the reset), plus a second hidden
    state, the complementary potential ``comp`` (:math:`m`). For input current
    :math:`x_t`:

    .. math::
        h_t &= \beta\, u_{t-1} + x_t \\
        s_t &= H(h_t - \theta) \quad (\text{fires when } h_t \ge \theta) \\
        m_t &= \sigma\big((1-\beta)\, h_t\big)\, m_{t-1} + s_t \\
        u_t &= h_t - s_t\,\big(\theta + \sigma(m_t)\big) \quad (\texttt{"subtract"}, \text{the paper's soft reset})\\
        u_t &= (1 - s_t)\, h_t - s_t\, \sigma(m_t) \quad (\texttt{"zero"}, \text{hard reset})\\
        u_t &= h_t \quad (\texttt{"none"})

    :math:`u` is ``mem``, :math:`m` is ``comp``; the output is :math:`s_t` times
    ``graded_spikes_factor``. Defaults are the paper's: :math:`\beta = 0.5`
    (:math:`\tau = 2`), :math:`\theta = 1`, the rectangle surrogate of width 1.

    Call modes, as in snnTorch (``comp`` before ``mem``, as ``snn.Synaptic`` orders
    its states):

    * explicit: ``spk, comp, mem = clif(x, comp, mem)``, with ``comp, mem =
      clif.reset_mem()`` before the time loop (it returns empty states, which mean zeros);
    * implicit: ``spk, comp, mem = clif(x)``, states kept on the module;
    * ``init_hidden=True``: ``spk = clif(x)`` (``spk, comp, mem`` with ``output=True``),
      for ``nn.Sequential``.

    With ``step_mode="multi"`` the input is a time-major sequence ``[T, ...]`` run in one
    call; it returns the ``[T, ...]`` spikes and the final states (the state sequences
    with ``state_sequences=True``). Consecutive calls carry the state on, so a long
    sequence can be fed in chunks.

    States kept on the module start over from zeros when the input's shape changes
    (e.g. the last, smaller batch of an epoch). Assigning ``clif.mem = v`` starts the
    neuron from membrane potential ``v`` with ``comp`` back at zero (this is what
    snnTorch 1.0's ``Leaky.reset_hidden`` does to every ``Leaky``, so its
    ``snntorch.utils.reset`` clears both states).

    Args:
        beta: membrane decay :math:`\beta = 1 - 1/\tau`, in [0, 1]; float or tensor
            broadcastable to the neurons (per-neuron). Clamped to [0, 1] when learnable.
        threshold: firing threshold :math:`\theta`; float or per-neuron tensor.
        spike_grad: surrogate gradient: a :mod:`snntorch.surrogate` factory's result
            (``atan``, ``fast_sigmoid``, ``sigmoid``, ``triangular``,
            ``straight_through_estimator``: these run fused) or one of
            :mod:`snntorch_clif.surrogate`; any other callable runs on the reference
            path. Default: ``surrogate.rectangle(alpha=1.0)``.
        surrogate_disable: no surrogate: the spike passes no gradient.
        init_hidden: keep the states on the module and return only ``spk``.
        inhibition: snnTorch's winner-take-all along dim 1 (reference path only).
        learn_beta, learn_threshold, learn_graded_spikes_factor: make that value an
            ``nn.Parameter`` (otherwise it is a buffer, as in snnTorch).
        reset_mechanism: ``"subtract"`` (default), ``"zero"`` or ``"none"``.
        state_quant: a function applied to :math:`h_t` and :math:`u_t` (reference path).
        output: with ``init_hidden=True``, also return ``comp`` and ``mem``.
        graded_spikes_factor: scale of the output spikes.
        step_mode: ``"single"`` (one step per call) or ``"multi"`` (``[T, ...]``).
        state_sequences: in multi-step mode, return the ``[T, ...]`` state sequences
            instead of the final states.

    Example::

        >>> import torch
        >>> from snntorch_clif import CLIF
        >>> clif = CLIF(beta=0.5)
        >>> comp, mem = clif.reset_mem()
        >>> for x in torch.rand(10, 32, 128):     # [T, batch, features]
        ...     spk, comp, mem = clif(x, comp, mem)
        >>> seq = CLIF(step_mode="multi", init_hidden=True)
        >>> seq(torch.rand(10, 32, 128)).shape
        torch.Size([10, 32, 128])
    """

    _live: ClassVar[weakref.WeakSet[CLIF]] = weakref.WeakSet()

    def __init__(
        self,
        beta: Union[Tensor, float] = 0.5,
        threshold: Union[Tensor, float] = 1.0,
        spike_grad: Optional[SpikeGrad] = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        reset_mechanism: str = "subtract",
        state_quant: Union[Callable[[Tensor], Tensor], bool] = False,
        output: bool = False,
        graded_spikes_factor: Union[Tensor, float] = 1.0,
        learn_graded_spikes_factor: bool = False,
        step_mode: str = "single",
        state_sequences: bool = False,
    ) -> None:
        # snnTorch's __init__ chain would keep a strong global reference and pick atan;
        # CLIF sets up its own attributes (and registers a weak one, see _register_live).
        nn.Module.__init__(self)
        check_reset_mechanism(reset_mechanism)
        if step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be one of {STEP_MODES}, got {step_mode!r}")
        if state_quant is not False and state_quant is not None and not callable(state_quant):
            raise TypeError(f"state_quant must be a callable or False, got {type(state_quant).__name__}")
        self.spike_grad = Disabled() if surrogate_disable else resolve(spike_grad)
        self.surrogate_disable = surrogate_disable
        self.init_hidden = init_hidden
        self.inhibition = inhibition
        self.state_quant = state_quant
        self.output = output
        self.step_mode = step_mode
        self.state_sequences = state_sequences

        beta_t = _as_float_tensor(beta, "beta")
        if not learn_beta and bool(((beta_t < 0) | (beta_t > 1)).any()):
            raise ValueError(f"beta must lie in [0, 1] when it is not learnable, got {beta}")
        self._register_value("beta", beta_t, learn_beta)
        self._register_value("threshold", _as_float_tensor(threshold, "threshold"), learn_threshold)
        self._register_value(
            "graded_spikes_factor",
            _as_float_tensor(graded_spikes_factor, "graded_spikes_factor"),
            learn_graded_spikes_factor,
        )
        self.register_buffer(
            "reset_mechanism_val", torch.as_tensor(_RESET_NAMES.index(reset_mechanism))
        )
        self._reset_mechanism = reset_mechanism
        self._comp = torch.zeros(0)
        self._mem = torch.zeros(0)
        self._register_live()

    def _register_value(self, name: str, value: Tensor, learnable: bool) -> None:
        if learnable:
            setattr(self, name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def _register_live(self) -> None:
        # CLIF.reset_hidden/detach_hidden reach every live CLIF; snnTorch 1.0's
        # Leaky.reset_hidden scans SpikingNeuron.instances: give it a weak proxy.
        CLIF._live.add(self)
        proxy = weakref.proxy(self)
        snn.SpikingNeuron.instances.append(proxy)
        weakref.finalize(self, _forget_proxy, proxy)

    # --- hidden state -------------------------------------------------------------
    @property
    def mem(self) -> Tensor:
        """Membrane potential :math:`u` after the last step (empty before the first)."""
        return self._mem

    @mem.setter
    def mem(self, value: Tensor) -> None:
        self._mem = value
        self._comp = torch.zeros_like(value)

    @property
    def comp(self) -> Tensor:
        """Complementary potential :math:`m` after the last step (empty before the first)."""
        return self._comp

    @comp.setter
    def comp(self, value: Tensor) -> None:
        self._comp = value

    @property
    def reset_mechanism(self) -> str:
        """``"subtract"``, ``"zero"`` or ``"none"``; stored in the ``reset_mechanism_val`` buffer."""
        return self._reset_mechanism

    @reset_mechanism.setter
    def reset_mechanism(self, value: str) -> None:
        check_reset_mechanism(value)
        self.reset_mechanism_val = torch.as_tensor(
            _RESET_NAMES.index(value), device=self.reset_mechanism_val.device
        )
        self._reset_mechanism = value

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # The buffer is the checkpoint's truth: follow it (snnTorch's Leaky does not).
        self._reset_mechanism = _RESET_NAMES[int(self.reset_mechanism_val)]

    def reset_mem(self) -> tuple[Tensor, Tensor]:
        """Reset both states and return ``(comp, mem)``: empty tensors, which mean zeros.

        An empty state is re-created as zeros shaped like the next input, so a reset does
        not tie the next step to the last batch size (and ``torch.compile`` sees the same
        state after every reset).

        Example::

            >>> clif = CLIF()
            >>> comp, mem = clif.reset_mem()
            >>> spk, comp, mem = clif(torch.rand(2, 3), comp, mem)   # starts from zeros
        """
        self._comp = self._comp.new_zeros(0)
        self._mem = self._mem.new_zeros(0)
        return self._comp, self._mem

    def init_leaky(self) -> tuple[Tensor, Tensor]:
        """Deprecated snnTorch name of :meth:`reset_mem`."""
        return self.reset_mem()

    @classmethod
    def reset_hidden(cls) -> None:
        """Zero both states of every live CLIF in the process (snnTorch's class-level API).

        To reset one network's neurons only, use :func:`snntorch_clif.reset`.
        """
        for neuron in list(CLIF._live):
            neuron.reset_mem()

    @classmethod
    def detach_hidden(cls) -> None:
        """Detach both states of every live CLIF from the graph (truncated BPTT).

        To detach one network's neurons only, use :func:`snntorch_clif.detach`.
        """
        for neuron in list(CLIF._live):
            neuron._detach_states()

    def _detach_states(self) -> None:
        self._comp = self._comp.detach()
        self._mem = self._mem.detach()

    def _kept_state(self, state: Tensor, shape: torch.Size, like: Tensor) -> Tensor:
        if state.shape != shape:
            return like.new_zeros(shape)
        if state.dtype != like.dtype or state.device != like.device:
            return state.to(device=like.device, dtype=like.dtype)
        return state

    # --- forward ------------------------------------------------------------------
    def forward(
        self, input_: Tensor, comp: Optional[Tensor] = None, mem: Optional[Tensor] = None
    ) -> Union[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Advance one step (``step_mode="single"``) or a ``[T, ...]`` sequence (``"multi"``)."""
        if self.init_hidden and (comp is not None or mem is not None):
            raise TypeError("`comp` and `mem` should not be passed as arguments while `init_hidden=True`")
        multi = self.step_mode == "multi"
        check_input(input_, "input_", sequence=multi)
        shape = input_.shape[1:] if multi else input_.shape
        if comp is None:
            comp = self._kept_state(self._comp, shape, input_)
        if mem is None:
            mem = self._kept_state(self._mem, shape, input_)
        beta = self.beta.clamp(0, 1) if self.beta.requires_grad else self.beta
        common = dict(
            beta=beta,
            threshold=self.threshold,
            spike_grad=self.spike_grad,
            reset_mechanism=self._reset_mechanism,
            graded_spikes_factor=self.graded_spikes_factor,
            inhibition=self.inhibition,
            state_quant=self.state_quant or None,
        )
        if multi:
            spk, comp, mem = clif_sequence(
                input_, comp, mem, return_sequences=self.state_sequences, **common
            )
            if self.state_sequences and input_.shape[0] > 0:
                self._comp, self._mem = comp[-1], mem[-1]
            elif not self.state_sequences:
                self._comp, self._mem = comp, mem
        else:
            spk, comp, mem = clif_step(input_, comp, mem, **common)
            self._comp, self._mem = comp, mem
        if self.init_hidden and not self.output:
            return spk
        return spk, comp, mem

    # --- copying ------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state["_comp"] = state["_comp"].detach()
        state["_mem"] = state["_mem"].detach()
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._register_live()

    def extra_repr(self) -> str:
        beta = self.beta.item() if self.beta.numel() == 1 else f"tensor{tuple(self.beta.shape)}"
        thr = self.threshold.item() if self.threshold.numel() == 1 else f"tensor{tuple(self.threshold.shape)}"
        return (
            f"beta={beta}, threshold={thr}, reset_mechanism={self._reset_mechanism!r}, "
            f"spike_grad={self.spike_grad!r}, step_mode={self.step_mode!r}, init_hidden={self.init_hidden}"
        )


def _clif_layers(net: nn.Module) -> list[CLIF]:
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    return [m for m in net.modules() if isinstance(m, CLIF)]


def reset(net: nn.Module) -> None:
    """Zero and detach both states of exactly the CLIF layers of ``net`` (nested ones too).

    Unlike snnTorch 1.0's ``snntorch.utils.reset``, no other network's neurons are
    touched. Call it before each new batch of sequences.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> import snntorch_clif
        >>> net = nn.Sequential(nn.Linear(4, 8), snntorch_clif.CLIF(init_hidden=True))
        >>> spk = net(torch.rand(2, 4))
        >>> snntorch_clif.reset(net)
        >>> float(net[1].mem.abs().sum())
        0.0
    """
    for layer in _clif_layers(net):
        layer.reset_mem()


def detach(net: nn.Module) -> None:
    """Detach both states of exactly the CLIF layers of ``net`` (truncated BPTT).

    Example::

        >>> net = nn.Sequential(snntorch_clif.CLIF(init_hidden=True))
        >>> spk = net(torch.rand(2, 4, requires_grad=True))
        >>> snntorch_clif.detach(net)
        >>> net[0].mem.requires_grad
        False
    """
    for layer in _clif_layers(net):
        layer._detach_states()
