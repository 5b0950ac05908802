r"""The stateful :class:`CLIF` module with snnTorch's neuron API, and :func:`reset`."""

from __future__ import annotations

import functools
import warnings
import weakref
from typing import Any, Callable, ClassVar, Optional, Union

import snntorch as snn
import torch
from torch import Tensor, nn

from .functional import (
    check_input,
    check_reset_mechanism,
    clif_sequence,
    clif_step,
)
from .surrogate import Disabled, Rectangle, SpikeGrad, resolve

__all__ = ["CLIF", "SilentLayerWarning", "reset", "detach", "install_snntorch_backprop_support"]

STEP_MODES = ("single", "multi")
_RESET_NAMES = list(snn.SpikingNeuron.reset_dict)  # index = reset_mechanism_val
_VALUE_NAMES = ("beta", "threshold", "graded_spikes_factor")  # parameters or buffers


def _forget_proxy(proxy: Any) -> None:
    instances = snn.SpikingNeuron.instances
    for i, entry in enumerate(instances):
        if entry is proxy:
            del instances[i]
            return


def _not_a_view(state: Tensor) -> Tensor:
    # snnTorch detaches hidden states in place (Leaky.detach_hidden, SpikingNeuron.detach),
    # which autograd refuses on views: keep states as tensors of their own (no copy).
    # (torch.compile cannot trace _is_view(); there the aliasing op costs nothing anyway)
    if torch.compiler.is_compiling() or state._is_view():
        return torch.ops.aten._unsafe_view(state, state.shape)
    return state


class SilentLayerWarning(UserWarning):
    """A training CLIF layer has stopped firing; the message names the usual fix.

    Silence it for one layer with ``warnings.filterwarnings("ignore", category=SilentLayerWarning)``.
    """


_LEAKY_IDIOM = (
    "CLIF has two hidden states, comp and mem (snn.Leaky has one): start with "
    "`comp, mem = clif.reset_mem()` and step with `spk, comp, mem = clif(x, comp, mem)`"
)


def _as_float_tensor(value: Union[Tensor, float], name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value if value.is_floating_point() else value.to(torch.get_default_dtype())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    return torch.as_tensor(float(value), dtype=torch.get_default_dtype())


class _SilenceWatch:
    """Counts a layer's training calls and how many sampled ones emitted no spike (see ``CLIF._watch_silence``)."""

    def __init__(self) -> None:
        self.calls = 0
        self.silent_samples = 0
        self.warned = False


# A training call of every SILENCE_SAMPLE_EVERY is checked for spikes (one device sync);
# SILENT_SAMPLES_TO_WARN samples in a row (about 500 calls) in which at most SILENT_FRACTION of
# the layer's neurons fired give the warning.
SILENCE_SAMPLE_EVERY = 64
SILENT_SAMPLES_TO_WARN = 8
SILENT_FRACTION = 5e-3


class _KeptStates:
    """The states a CLIF keeps between calls. A plain object: storing them after every step
    then skips ``nn.Module.__setattr__`` (about 1 us per attribute, several per step)."""

    def __init__(
        self, comp: Optional[Tensor] = None, mem: Optional[Tensor] = None, mem_had_graph: bool = False
    ) -> None:
        self.comp = torch.zeros(0) if comp is None else comp
        self.mem = torch.zeros(0) if mem is None else mem
        self.mem_had_graph = mem_had_graph  # the kept mem carried a graph when it was stored


class CLIF(snn.Leaky):
    r"""Complementary Leaky Integrate-and-Fire neuron (Huang et al., ICML 2024).

    A drop-in for ``snn.Leaky``: same constructor arguments, plus a second hidden state,
    the complementary potential ``comp`` (:math:`m`). For input current :math:`x_t`:

    .. math::
        h_t &= \beta\, u_{t-1} + x_t \\
        s_t &= H(h_t - \theta) \quad (\text{fires when } h_t \ge \theta) \\
        m_t &= \sigma\big((1-\beta)\, h_t\big)\, m_{t-1} + s_t \\
        u_t &= h_t - s_t\,\big(\theta + \sigma(m_t)\big) \quad (\texttt{"subtract"}, \text{the paper's soft reset})\\
        u_t &= (1 - s_t)\, h_t - s_t\, \sigma(m_t) \quad (\texttt{"zero"}, \text{hard reset})\\
        u_t &= h_t \quad (\texttt{"none"})

    :math:`u` is ``mem`` (with ``reset_delay=True``, :math:`h`: see below), :math:`m` is
    ``comp``; the output is :math:`s_t` times
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
    (e.g. the last, smaller batch of an epoch). States passed explicitly must have the
    input's shape or broadcast to it: a per-neuron ``[features]`` state is repeated over
    the batch, and a one-element state such as snnTorch tutorial 3's
    ``mem = torch.zeros(1)`` fills every neuron (snnTorch's ``Leaky`` instead replaces a
    state of another shape by zeros); any other shape raises ``ValueError``.

    snnTorch's own helpers reach both states, on every backend: assigning
    ``clif.mem = v`` (what ``Leaky.reset_hidden`` and ``snntorch.utils.reset`` do) starts
    the neuron from membrane potential ``v`` with ``comp`` back at zero, and detaching
    the kept ``mem`` in place (``Leaky.detach_hidden``, ``SpikingNeuron.detach``, as in
    ``snntorch.backprop.TBPTT``) detaches ``comp`` with it. Returned states are never
    views, so ``state.detach_()`` works on them.

    **reset_delay.** By default (``reset_delay=False``, the paper's neuron) the returned
    ``mem`` is :math:`u_t`, the membrane after this step's reset, and the gradient flows
    through the reset. With ``reset_delay=True`` (snn.Leaky's default) the returned and
    carried ``mem`` is :math:`h_t`, the membrane *before* the reset, and step t's reset is
    applied at the start of step t+1, from the carried :math:`h_t` and :math:`m_t`, with
    its spike :math:`H(h_t - \theta)` and :math:`\sigma(m_t)` detached, as snn.Leaky
    detaches its delayed reset. The spikes and ``comp`` are exactly those of ``reset_delay=False``;
    only the reported membrane and the gradient through the reset differ. Use it on an
    output layer read out by its membrane (cross-entropy on ``mem`` at every step, as in
    snnTorch's tutorial 5) whose spikes are also counted: with the same-step reset and its
    gradient, that loss teaches the layer never to fire (see the *Coming from snn.Leaky*
    page). It runs on the fused kernels like every other setting. With
    ``reset_mechanism="none"`` the option changes nothing.

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
        reset_delay: report and carry the membrane before the reset, :math:`h_t`, and
            apply the reset (detached) at the next step, as ``snn.Leaky`` does.
            Default ``False``: the paper's same-step reset.

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
        >>> readout = CLIF(reset_delay=True)  # an output layer read out by its membrane
        >>> spk, comp, h = readout(torch.tensor([1.5, 0.5]))
        >>> spk, h                            # h_0 = x_0: the membrane before the reset
        (tensor([1., 0.]), tensor([1.5000, 0.5000]))
    """

    _live: ClassVar[weakref.WeakSet[CLIF]] = weakref.WeakSet()
    #: With ``init_hidden=True, output=True`` a call returns ``(spk, comp, mem)``.
    _returns_comp: ClassVar[bool] = True

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
        reset_delay: bool = False,
    ) -> None:
        # snnTorch's __init__ chain would keep a strong global reference and pick atan;
        # CLIF sets up its own attributes (and registers a weak one, see _register_live).
        nn.Module.__init__(self)
        check_reset_mechanism(reset_mechanism)
        if step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be one of {STEP_MODES}, got {step_mode!r}")
        if not isinstance(reset_delay, bool):
            raise TypeError(f"reset_delay must be True or False, got {reset_delay!r}")
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
        self.reset_delay = reset_delay

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
        self._kept = _KeptStates()
        self._silence = _SilenceWatch()
        self._register_live()

    def _replicate_for_data_parallel(self) -> CLIF:
        # nn.DataParallel's replicas copy __dict__ shallowly: each gets states of its own
        replica = super()._replicate_for_data_parallel()
        replica._kept = _KeptStates(self._kept.comp, self._kept.mem, self._kept.mem_had_graph)
        return replica

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
        return self._kept.mem

    @mem.setter
    def mem(self, value: Tensor) -> None:
        self._kept.mem = value
        self._kept.comp = torch.zeros_like(value)
        self._kept.mem_had_graph = False

    @property
    def comp(self) -> Tensor:
        """Complementary potential :math:`m` after the last step (empty before the first)."""
        self._follow_mem_detach()
        return self._kept.comp

    @comp.setter
    def comp(self, value: Tensor) -> None:
        self._kept.comp = value

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

    def _keep(self, comp: Tensor, mem: Tensor) -> None:
        # comp and mem are not views (the caller applied _not_a_view once)
        self._kept.comp, self._kept.mem = comp, mem
        self._kept.mem_had_graph = mem.requires_grad

    def _values(self) -> tuple[Tensor, Tensor, Tensor]:
        """``beta``, ``threshold``, ``graded_spikes_factor``, read from the module's dicts.

        ``self.beta`` first misses the instance and every class of the MRO, and Python builds
        an AttributeError before ``nn.Module.__getattr__`` finds the value: ~8,000
        instructions (~1 us) for each read. A DataParallel replica keeps learnable values
        as plain attributes: ``getattr`` finds those.
        """
        params, buffers = self._parameters, self._buffers
        beta, threshold, graded_spikes_factor = [
            params[name] if name in params else buffers[name] if name in buffers else getattr(self, name)
            for name in _VALUE_NAMES
        ]
        return beta, threshold, graded_spikes_factor

    def _follow_mem_detach(self) -> None:
        # snnTorch detaches the kept `mem` in place (Leaky.detach_hidden, called by
        # snntorch.backprop.TBPTT and snntorch.utils.reset; SpikingNeuron.detach) and
        # knows nothing of `comp`: once `mem` has left the graph, `comp` leaves it too.
        if self._kept.mem_had_graph and not self._kept.mem.requires_grad:
            self._kept.comp = self._kept.comp.detach()
            self._kept.mem_had_graph = False

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
        self._kept.comp = self._kept.comp.new_zeros(0)
        self._kept.mem = self._kept.mem.new_zeros(0)
        self._kept.mem_had_graph = False
        return self._kept.comp, self._kept.mem

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
        self._kept.comp = self._kept.comp.detach()
        self._kept.mem = self._kept.mem.detach()
        self._kept.mem_had_graph = False

    def _explicit_state(self, state: Any, name: str, shape: torch.Size) -> Optional[Tensor]:
        """A state passed to forward, broadcast to the input's neuron shape where it can be."""
        if not isinstance(state, Tensor) or state.numel() == 0 or state.shape == shape:
            return state  # functional.check_state gives the error for a non-tensor
        if state.numel() == 1:  # snnTorch tutorial 3: `mem = torch.zeros(1)` with a 0-d input
            return state.reshape(()).expand(shape)
        try:
            fits = torch.broadcast_shapes(state.shape, shape) == shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"{name} must have shape {tuple(shape)} to match the input (or broadcast to it), "
                f"got {tuple(state.shape)}"
            )
        return state.expand(shape)

    def _kept_state(self, state: Tensor, shape: torch.Size, like: Tensor) -> Optional[Tensor]:
        if state.shape != shape:
            return None  # zeros: made by the reference path, never read by the fused op
        if state.dtype != like.dtype or state.device != like.device:
            return state.to(device=like.device, dtype=like.dtype)
        return state

    # --- forward ------------------------------------------------------------------
    def forward(
        self, input_: Tensor, comp: Optional[Tensor] = None, mem: Optional[Tensor] = None
    ) -> Union[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Advance one step (``step_mode="single"``) or a ``[T, ...]`` sequence (``"multi"``)."""
        if comp is not None or mem is not None:
            self._check_explicit_states(comp, mem)
        multi = self.step_mode == "multi"
        check_input(input_, "input_", sequence=multi)
        shape = input_.shape[1:] if multi else input_.shape
        if comp is None:
            self._follow_mem_detach()
            comp = self._kept_state(self._kept.comp, shape, input_)
            mem = self._kept_state(self._kept.mem, shape, input_)
        else:
            comp = self._explicit_state(comp, "comp", shape)
            mem = self._explicit_state(mem, "mem", shape)
        beta, threshold, graded_spikes_factor = self._values()
        if beta.requires_grad:
            beta = beta.clamp(0, 1)
        common = self._step_arguments(beta, threshold, graded_spikes_factor)
        if multi:
            spk, comp, mem = clif_sequence(
                input_, comp, mem, return_sequences=self.state_sequences, **common
            )
            comp, mem = _not_a_view(comp), _not_a_view(mem)
            if self.state_sequences and input_.shape[0] > 0:
                self._keep(_not_a_view(comp[-1]), _not_a_view(mem[-1]))
            elif not self.state_sequences:
                self._keep(comp, mem)
        else:
            spk, comp, mem = clif_step(input_, comp, mem, **common)
            comp, mem = _not_a_view(comp), _not_a_view(mem)
            self._keep(comp, mem)
        return self._returned(spk, comp, mem)

    def _check_explicit_states(self, comp: object, mem: object) -> None:
        if self.init_hidden:
            raise TypeError("`comp` and `mem` should not be passed as arguments while `init_hidden=True`")
        for state, name in ((comp, "comp"), (mem, "mem")):
            if isinstance(state, (tuple, list)):
                raise TypeError(
                    f"{name} got a {type(state).__name__}, not a tensor: reset_mem()/init_leaky() "
                    f"return both states (comp, mem). {_LEAKY_IDIOM}"
                )
        if (comp is None) != (mem is None):
            raise TypeError(
                "CLIF takes both hidden states or neither; got only "
                f"{'comp' if mem is None else 'mem'} (snn.Leaky's `spk, mem = lif(x, mem)`?). {_LEAKY_IDIOM}"
            )

    def _watch_silence(self, spk: Tensor) -> None:
        """Warn once when a layer that trains (its spikes carry a gradient) has (almost) stopped firing.

        Two traps silence a CLIF layer and both look like "the network does not learn": an
        output layer trained on its membrane with the same-step reset learns never to fire
        (the fix: ``reset_delay=True``), and a layer far below threshold gets no gradient
        through the rectangle surrogate (the fix: ``spike_grad=snntorch.surrogate.atan()``).
        The cost is an integer increment per call and one check every
        ``SILENCE_SAMPLE_EVERY`` training calls.
        """
        watch = self._silence
        watch.calls += 1
        if watch.calls % SILENCE_SAMPLE_EVERY or watch.warned or not spk.requires_grad or not self.training:
            return
        if int(spk.detach().count_nonzero()) > SILENT_FRACTION * spk.numel():
            watch.silent_samples = 0
            return
        watch.silent_samples += 1
        if watch.silent_samples < SILENT_SAMPLES_TO_WARN:
            return
        watch.warned = True
        warnings.warn(self._silence_message(), SilentLayerWarning, stacklevel=4)

    def _silence_message(self) -> str:
        """What :meth:`_watch_silence` says: the fixes that apply to this layer's settings."""
        said = (f"{self!r} has almost stopped firing (at most {SILENT_FRACTION:.1%} of its neurons spiked in each of "
                f"{SILENT_SAMPLES_TO_WARN} sampled training calls out of the last "
                f"{SILENT_SAMPLES_TO_WARN * SILENCE_SAMPLE_EVERY}), while its spikes carry a gradient.")
        if not self.reset_delay:
            said += (" If the loss reads this layer's membrane (e.g. cross-entropy on mem), build it with "
                     "reset_delay=True.")
        else:
            said += (" It already reports its membrane before the reset (reset_delay=True); if the loss pulls that "
                     "membrane to a target value (mse_membrane_loss, regression), keep this layer an snn.Leaky: "
                     "snntorch_clif.from_leaky(model, keep='last').")
        if isinstance(self.spike_grad, Rectangle):
            said += (" If the network starts or drifts below threshold, the rectangle surrogate passes no gradient "
                     "there: use spike_grad=snntorch.surrogate.atan().")
        return said + " See the docs' 'Coming from snn.Leaky' page."

    def _returned(self, spk: Tensor, comp: Tensor, mem: Tensor) -> Union[Tensor, tuple[Tensor, Tensor, Tensor]]:
        if not torch.compiler.is_compiling():
            self._watch_silence(spk)
        if self.init_hidden and not self.output:
            return spk
        return spk, comp, mem

    def _step_arguments(self, beta: Tensor, threshold: Tensor, graded_spikes_factor: Tensor) -> dict[str, Any]:
        return dict(
            beta=beta,
            threshold=threshold,
            spike_grad=self.spike_grad,
            reset_mechanism=self._reset_mechanism,
            graded_spikes_factor=graded_spikes_factor,
            inhibition=self.inhibition,
            state_quant=self.state_quant or None,
            reset_delay=self.reset_delay,
        )

    # --- copying ------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        # a copy owns its states, detached (a graph cannot be copied)
        state["_kept"] = _KeptStates(self._kept.comp.detach(), self._kept.mem.detach())
        return state

    def __setstate__(self, state: dict) -> None:
        if "_kept" not in state and "_mem" in state:  # pickled before the states moved into _KeptStates
            state["_kept"] = _KeptStates(state.pop("_comp"), state.pop("_mem"), state.pop("_mem_had_graph", False))
        state.setdefault("_silence", _SilenceWatch())  # pickled before the silence warning existed
        super().__setstate__(state)
        self._register_live()

    def extra_repr(self) -> str:
        beta = round(self.beta.item(), 6) if self.beta.numel() == 1 else f"tensor{tuple(self.beta.shape)}"
        thr = round(self.threshold.item(), 6) if self.threshold.numel() == 1 else f"tensor{tuple(self.threshold.shape)}"
        return (
            f"beta={beta}, threshold={thr}, reset_mechanism={self._reset_mechanism!r}, "
            f"spike_grad={self.spike_grad!r}, step_mode={self.step_mode!r}, init_hidden={self.init_hidden}"
            + (", reset_delay=True" if self.reset_delay else "")
        )


def _clif_layers(net: nn.Module) -> list[CLIF]:
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    return [m for m in net.modules() if isinstance(m, CLIF)]


def reset(net: nn.Module) -> None:
    """Reset both states of exactly the CLIF layers of ``net`` (nested ones too): the next call starts from zeros.

    The states are emptied (an empty state means zeros, shaped like the next input) and
    leave the autograd graph. Unlike snnTorch 1.0's ``snntorch.utils.reset``, no other
    network's neurons are touched. Call it before each new batch of sequences.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> import snntorch_clif
        >>> net = nn.Sequential(nn.Linear(4, 8), snntorch_clif.CLIF(init_hidden=True))
        >>> spk = net(torch.rand(2, 4))
        >>> snntorch_clif.reset(net)
        >>> net[1].mem.numel()                  # empty: the next step starts from zeros
        0
    """
    for layer in _clif_layers(net):
        layer.reset_mem()


def detach(net: nn.Module) -> None:
    """Detach both states of exactly the CLIF layers of ``net`` (truncated BPTT).

    Example::

        >>> import torch
        >>> from torch import nn
        >>> import snntorch_clif
        >>> net = nn.Sequential(snntorch_clif.CLIF(init_hidden=True))
        >>> spk = net(torch.rand(2, 4, requires_grad=True))
        >>> snntorch_clif.detach(net)
        >>> net[0].mem.requires_grad
        False
    """
    for layer in _clif_layers(net):
        layer._detach_states()


def _returns_three(layer: nn.Module) -> bool:
    return isinstance(layer, CLIF) and layer._returns_comp and layer.init_hidden and layer.output


def _count_clif_outputs(final_layer_check: Callable[[nn.Module], int]) -> Callable[[nn.Module], int]:
    @functools.wraps(final_layer_check)
    def count_outputs(net: nn.Module) -> int:
        layers = list(net._modules.values())
        if layers and _returns_three(layers[-1]):
            return 3  # (spk, comp, mem): unpacked as `spk, _, mem`, as for snn.Synaptic
        return final_layer_check(net)

    count_outputs._snntorch_clif_outputs = True  # type: ignore[attr-defined]
    return count_outputs


def install_snntorch_backprop_support() -> None:
    """Let ``snntorch.backprop`` (``BPTT``, ``TBPTT``, ``RTRL``) unpack a CLIF output layer.

    snnTorch decides how many values a network returns per step from the class of its
    last layer, and a CLIF is an ``snn.Leaky`` to it (two values, ``spk, mem``). A CLIF
    built with ``init_hidden=True, output=True`` returns three, ``spk, comp, mem``, in
    the order of snnTorch's ``Synaptic`` (``spk, syn, mem``), for which snnTorch unpacks
    ``spk, _, mem``. This wraps the one function that makes the choice,
    ``snntorch.utils._final_layer_check``, to answer 3 for such a layer; every other
    network gets snnTorch's own answer. Idempotent; called when this module is imported.
    Detaching and resetting need nothing here: snnTorch's ``Leaky.detach_hidden`` and
    ``Leaky.reset_hidden`` reach both CLIF states (see :class:`CLIF`).

    Example::

        >>> import snntorch.utils
        >>> from torch import nn
        >>> from snntorch_clif import CLIF
        >>> install_snntorch_backprop_support()
        >>> snntorch.utils._final_layer_check(nn.Sequential(nn.Linear(2, 2), CLIF(init_hidden=True, output=True)))
        3
    """
    from snntorch import utils

    current = utils._final_layer_check
    if not getattr(current, "_snntorch_clif_outputs", False):
        utils._final_layer_check = _count_clif_outputs(current)


install_snntorch_backprop_support()
