r"""The recurrent CLIF neuron :class:`RCLIF`: CLIF with the spike feedback of ``snn.RLeaky``.

Each step adds the layer's own previous spikes, through a recurrent connection, to the
input current, then runs one CLIF step (the fused kernel where one applies):

.. math::
    h_t = \beta u_{t-1} + x_t + \mathcal{W}(s_{t-1})

with :math:`\mathcal{W}` an ``nn.Linear``, an ``nn.Conv2d`` or an elementwise :math:`V`.

Example::

    >>> import torch
    >>> from snntorch_clif import RCLIF
    >>> rclif = RCLIF(beta=0.5, linear_features=16)
    >>> spk, comp, mem = rclif.reset_mem()
    >>> for x in torch.rand(10, 4, 16):           # [T, batch, features]
    ...     spk, comp, mem = rclif(x, spk, comp, mem)
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import snntorch as snn
import torch
from torch import Tensor, nn

from .neuron import CLIF
from .surrogate import SpikeGrad

__all__ = ["RCLIF"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_RCLIF_IDIOM = (
    "RCLIF has three states, spk, comp and mem (snn.RLeaky has two, spk and mem): start with "
    "`spk, comp, mem = rclif.reset_mem()` and step with `spk, comp, mem = rclif(x, spk, comp, mem)`"
)


class _OneToOne(nn.Module):
    """Holds a learnable one-to-one weight ``V`` where ``snn.RLeaky`` keeps it (``recurrent.V``).

    It exists so that an RLeaky's ``state_dict`` and an RCLIF's have the same keys. The
    connection itself, :math:`V \\odot s`, is computed by :class:`RCLIF` from its own ``V``
    (the same parameter), which also works for a fixed ``V`` that is a buffer.
    """

    def __init__(self, V: Optional[nn.Parameter]) -> None:
        super().__init__()
        if V is not None:
            self.V = V

    def forward(self, spk: Tensor) -> Tensor:
        """:math:`V \\odot s`, with the learnable ``V`` held here."""
        if "V" not in self._parameters:
            raise RuntimeError("this one-to-one connection holds no V (it is fixed): use RCLIF.V")
        return spk * self.V


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _kernel_size(value: object) -> Union[int, tuple[int, int]]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"kernel_size must be an int or a pair of ints, got {value!r}")
        return (_positive_int(value[0], "kernel_size"), _positive_int(value[1], "kernel_size"))
    return _positive_int(value, "kernel_size")


def _check_recurrent_kind(
    all_to_all: bool, linear_features: Optional[int], conv2d_channels: Optional[int], kernel_size: object
) -> None:
    """snn.RLeaky's rules for the recurrent connection's arguments, as ``TypeError`` (as RLeaky raises)."""
    if not all_to_all:
        given = [name for name, value in (("linear_features", linear_features), ("conv2d_channels", conv2d_channels),
                                          ("kernel_size", kernel_size)) if value is not None]
        if given:
            raise TypeError(
                f"with all_to_all=False the recurrent connection is the elementwise weight V: "
                f"{', '.join(given)} must not be given"
            )
        return
    conv = conv2d_channels is not None or kernel_size is not None
    if linear_features is not None and conv:
        raise TypeError(
            "give either linear_features (a recurrent nn.Linear) or conv2d_channels and kernel_size "
            "(a recurrent nn.Conv2d), not both"
        )
    if linear_features is None and not conv:
        raise TypeError(
            "with all_to_all=True, RCLIF needs linear_features (a recurrent nn.Linear) or conv2d_channels "
            "and kernel_size (a recurrent nn.Conv2d); for one-to-one feedback pass all_to_all=False and V"
        )
    if conv and conv2d_channels is None:
        raise TypeError("a recurrent nn.Conv2d needs conv2d_channels (the layer's channels) as well as kernel_size")
    if conv and kernel_size is None:
        raise TypeError("a recurrent nn.Conv2d needs kernel_size as well as conv2d_channels")


class RCLIF(CLIF):
    r"""Recurrent CLIF neuron: :class:`~snntorch_clif.CLIF` with ``snn.RLeaky``'s spike feedback.

    A drop-in for ``snn.RLeaky``: the same constructor arguments (and ``state_dict`` keys),
    the CLIF neuron. For input current :math:`x_t`, each step feeds the layer's previous
    output spikes :math:`s_{t-1}` back through the recurrent connection :math:`\mathcal{W}`:

    .. math::
        h_t &= \beta\, u_{t-1} + x_t + \mathcal{W}(s_{t-1}) \\
        s_t &= H(h_t - \theta) \quad (\text{fires when } h_t \ge \theta) \\
        m_t &= \sigma\big((1-\beta)\, h_t\big)\, m_{t-1} + s_t \\
        u_t &= h_t - s_t\,\big(\theta + \sigma(m_t)\big) \quad (\texttt{"subtract"};
               \texttt{"zero"} \text{ and } \texttt{"none"} \text{ as in CLIF})

    i.e. one :class:`~snntorch_clif.CLIF` step on the current
    :math:`x_t + \mathcal{W}(s_{t-1})`, which runs the fused kernel where CLIF's does.
    :math:`s_{-1} = 0`; the fed-back spike is the output spike (times
    ``graded_spikes_factor``), as in RLeaky. The recurrent connection, as in ``snn.RLeaky``:

    * ``linear_features=n`` (with ``all_to_all=True``, the default): ``recurrent`` is an
      ``nn.Linear(n, n)``, :math:`\mathcal{W}(s) = W s + b` (the bias is added at every
      step, the first included); the input's last dimension must be ``n``.
    * ``conv2d_channels=c, kernel_size=k``: ``recurrent`` is an ``nn.Conv2d(c, c, k)`` with
      ``"same"`` padding; the input is ``[batch, c, H, W]`` (or ``[c, H, W]``).
    * ``all_to_all=False``: one-to-one feedback, :math:`\mathcal{W}(s) = V \odot s`, with
      ``V`` a float or a per-neuron tensor (learnable unless ``learn_recurrent=False``).

    Call modes (``spk`` before ``comp`` before ``mem``, in and out):

    * explicit: ``spk, comp, mem = rclif(x, spk, comp, mem)``, starting from
      ``spk, comp, mem = rclif.reset_mem()`` (empty states, which mean zeros);
    * implicit: ``spk, comp, mem = rclif(x)``, states kept on the module;
    * ``init_hidden=True``: ``spk = rclif(x)`` (``spk, comp, mem`` with ``output=True``).

    With ``step_mode="multi"`` the input is a time-major sequence ``[T, ...]``; the call
    returns the ``[T, ...]`` spikes and the final ``comp`` and ``mem`` (their ``[T, ...]``
    sequences with ``state_sequences=True``). The feedback makes each step depend on the
    last one, so the steps run one after another, each a fused CLIF step. To continue a
    sequence with explicit states, pass the last spike, ``spk[-1]``.

    Everything else is :class:`~snntorch_clif.CLIF`'s: ``reset_delay``, surrogates
    (default: the paper's rectangle; any snnTorch surrogate), learnable values, how kept
    states start over when the batch size changes. ``spk`` is a third kept state that
    follows the other two: :func:`snntorch_clif.reset`, ``snntorch.utils.reset``,
    ``reset_mem()`` and assigning ``rclif.mem`` zero it, and once ``mem`` is detached
    from the graph (:func:`snntorch_clif.detach`, ``snn.Leaky.detach_hidden``) ``spk``
    is detached too.

    Defaults differ from ``snn.RLeaky`` where CLIF's do (the paper's): ``beta=0.5``,
    the rectangle surrogate, and ``reset_delay=False``. :meth:`from_rleaky` copies an
    RLeaky's settings and weights.

    ``beta``, ``threshold``, ``spike_grad``, ``surrogate_disable``, ``init_hidden``,
    ``inhibition``, ``learn_beta``, ``learn_threshold``, ``reset_mechanism``,
    ``state_quant``, ``output``, ``reset_delay``, ``graded_spikes_factor``,
    ``learn_graded_spikes_factor``, ``step_mode`` and ``state_sequences`` are
    :class:`~snntorch_clif.CLIF`'s arguments. The recurrent connection's:

    Args:
        V: one-to-one recurrent weight (``all_to_all=False``): a float or a tensor that
            broadcasts to the neurons. Default 1.
        all_to_all: feedback through a dense or convolutional layer (default) instead of
            the one-to-one ``V``.
        linear_features: size of the recurrent ``nn.Linear`` (the input's last dimension).
        conv2d_channels: channels of the recurrent ``nn.Conv2d`` (the input's channel dimension).
        kernel_size: the recurrent ``nn.Conv2d``'s kernel size, an int or a pair.
        learn_recurrent: train the recurrent weights (``V``, or the layer's weight and bias).

    Example::

        >>> import torch
        >>> from snntorch_clif import RCLIF
        >>> rclif = RCLIF(beta=0.9, all_to_all=False, V=0.5)    # one-to-one feedback
        >>> spk, comp, mem = rclif.reset_mem()
        >>> for x in torch.full((3, 1), 0.6):
        ...     spk, comp, mem = rclif(x, spk, comp, mem)
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16),
        ...                           RCLIF(linear_features=16, init_hidden=True, step_mode="multi"))
        >>> net(torch.rand(10, 4, 8)).shape                      # [T, batch, features]
        torch.Size([10, 4, 16])
    """

    def __init__(
        self,
        beta: Union[Tensor, float] = 0.5,
        V: Union[Tensor, float] = 1.0,
        all_to_all: bool = True,
        linear_features: Optional[int] = None,
        conv2d_channels: Optional[int] = None,
        kernel_size: Optional[Union[int, tuple[int, int]]] = None,
        threshold: Union[Tensor, float] = 1.0,
        spike_grad: Optional[SpikeGrad] = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        learn_recurrent: bool = True,
        reset_mechanism: str = "subtract",
        state_quant: Union[Callable[[Tensor], Tensor], bool] = False,
        output: bool = False,
        reset_delay: bool = False,
        graded_spikes_factor: Union[Tensor, float] = 1.0,
        learn_graded_spikes_factor: bool = False,
        step_mode: str = "single",
        state_sequences: bool = False,
    ) -> None:
        if not isinstance(all_to_all, bool):
            raise TypeError(f"all_to_all must be True or False, got {all_to_all!r}")
        if not isinstance(learn_recurrent, bool):
            raise TypeError(f"learn_recurrent must be True or False, got {learn_recurrent!r}")
        _check_recurrent_kind(all_to_all, linear_features, conv2d_channels, kernel_size)
        super().__init__(
            beta=beta, threshold=threshold, spike_grad=spike_grad, surrogate_disable=surrogate_disable,
            init_hidden=init_hidden, inhibition=inhibition, learn_beta=learn_beta,
            learn_threshold=learn_threshold, reset_mechanism=reset_mechanism, state_quant=state_quant,
            output=output, graded_spikes_factor=graded_spikes_factor,
            learn_graded_spikes_factor=learn_graded_spikes_factor, step_mode=step_mode,
            state_sequences=state_sequences, reset_delay=reset_delay,
        )
        self.all_to_all = all_to_all
        self.learn_recurrent = learn_recurrent
        self.linear_features = linear_features
        self.conv2d_channels = conv2d_channels
        self.kernel_size = kernel_size
        if not all_to_all:
            self._rclif_register_V(V, learn_recurrent)
        elif linear_features is not None:
            n = _positive_int(linear_features, "linear_features")
            self.recurrent = nn.Linear(n, n)
        else:
            channels = _positive_int(conv2d_channels, "conv2d_channels")
            self.recurrent = nn.Conv2d(channels, channels, _kernel_size(kernel_size), padding="same")
        if all_to_all and not learn_recurrent:
            for param in self.recurrent.parameters():
                param.requires_grad_(False)
        self._rclif_spk = torch.zeros(0)

    def _rclif_register_V(self, V: Union[Tensor, float], learnable: bool) -> None:
        if isinstance(V, Tensor):
            if not V.is_floating_point():
                V = V.to(torch.get_default_dtype())
        elif isinstance(V, bool) or not isinstance(V, (int, float)):
            raise TypeError(f"V must be a float or a tensor, got {type(V).__name__}")
        else:
            V = torch.as_tensor(float(V), dtype=torch.get_default_dtype())
        if learnable:
            self.V = nn.Parameter(V)
            self.recurrent = _OneToOne(self.V)  # the same parameter, under RLeaky's second key
        else:
            self.register_buffer("V", V)
            self.recurrent = _OneToOne(None)

    # --- hidden state -------------------------------------------------------------
    @property
    def mem(self) -> Tensor:
        """Membrane potential :math:`u` after the last step (empty before the first).

        Assigning it (``rclif.mem = v``, what ``snn.Leaky.reset_hidden`` and
        ``snntorch.utils.reset`` do) starts the neuron from membrane ``v`` with ``comp``
        and ``spk`` at zero.
        """
        return CLIF.mem.fget(self)

    @mem.setter
    def mem(self, value: Tensor) -> None:
        CLIF.mem.fset(self, value)
        self._rclif_spk = torch.zeros_like(value)

    @property
    def spk(self) -> Tensor:
        """The last output spike :math:`s_{t-1}`, fed back at the next step (empty before the first)."""
        return self._rclif_kept_spk()

    @spk.setter
    def spk(self, value: Tensor) -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"spk must be a torch.Tensor, got {type(value).__name__}")
        self._rclif_spk = value

    def _rclif_kept_spk(self) -> Tensor:
        # The spike leaves the graph when mem does: snnTorch and snntorch_clif.detach detach
        # only CLIF's states. mem carries a graph whenever the spike does (both come from h).
        spk = self._rclif_spk
        if spk.requires_grad and not self.mem.requires_grad:
            spk = self._rclif_spk = spk.detach()
        return spk

    def reset_mem(self) -> tuple[Tensor, Tensor, Tensor]:
        """Reset the three states and return ``(spk, comp, mem)``: empty tensors, which mean zeros.

        Example::

            >>> rclif = RCLIF(linear_features=3)
            >>> spk, comp, mem = rclif.reset_mem()
            >>> spk, comp, mem = rclif(torch.rand(2, 3), spk, comp, mem)   # starts from zeros
        """
        comp, mem = super().reset_mem()
        self._rclif_spk = self._rclif_spk.new_zeros(0)
        return self._rclif_spk, comp, mem

    def init_rleaky(self) -> tuple[Tensor, Tensor, Tensor]:
        """snnTorch's RLeaky name of :meth:`reset_mem`: returns ``(spk, comp, mem)``."""
        return self.reset_mem()

    # --- forward ------------------------------------------------------------------
    def forward(
        self,
        input_: Tensor,
        spk: Optional[Tensor] = None,
        comp: Optional[Tensor] = None,
        mem: Optional[Tensor] = None,
    ) -> Union[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """One step (``step_mode="single"``) or a ``[T, ...]`` sequence (``"multi"``).

        ``spk``, ``comp``, ``mem``: the states before this call (all three, or none to use
        those kept on the module); ``spk`` is the last output spike.
        """
        explicit = spk is not None or comp is not None or mem is not None
        if explicit:
            self._rclif_check_states(spk, comp, mem)
        multi = self.step_mode == "multi"
        if not isinstance(input_, Tensor):
            raise TypeError(f"input_ must be a torch.Tensor, got {type(input_).__name__}")
        if input_.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"input_ must be float16, bfloat16, float32 or float64, got {input_.dtype}")
        if multi and input_.ndim < 1:
            raise ValueError("input_ must be time-major [T, ...] with step_mode='multi', got a 0-d tensor")
        shape = input_.shape[1:] if multi else input_.shape
        self._rclif_check_shape(shape)
        spk = self._rclif_explicit_spk(spk, input_, shape) if explicit else self._rclif_spk_to_use(input_, shape)
        if not multi:
            out = self._rclif_clif_step(input_ + self._rclif_recurrent_input(spk, input_), comp, mem)
            self._rclif_spk = out if isinstance(out, Tensor) else out[0]
            return out
        if input_.shape[0] == 0:  # nothing to run: CLIF's empty outputs, states unchanged
            self._rclif_spk = spk
            return super().forward(input_, comp, mem) if explicit else super().forward(input_)
        spikes, comps, mems = [], [], []
        for x_t in input_.unbind(0):
            out = self._rclif_clif_step((x_t + self._rclif_recurrent_input(spk, x_t)).unsqueeze(0), comp, mem)
            spk_t = out if isinstance(out, Tensor) else out[0]  # [1, ...]
            spk = torch.ops.aten._unsafe_view(spk_t, shape)  # not a view: detach_() works on it
            spikes.append(spk_t)
            if not isinstance(out, Tensor):
                comps.append(out[1])
                mems.append(out[2])
                if explicit:  # the next step starts from these ([1, ...] with state_sequences)
                    comp, mem = (out[1][0], out[2][0]) if self.state_sequences else (out[1], out[2])
        self._rclif_spk = spk
        spk_seq = torch.cat(spikes)
        if not comps:
            return spk_seq
        if self.state_sequences:
            return spk_seq, torch.cat(comps), torch.cat(mems)
        return spk_seq, comps[-1], mems[-1]

    def _rclif_clif_step(
        self, current: Tensor, comp: Optional[Tensor], mem: Optional[Tensor]
    ) -> Union[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """The CLIF step (or a one-step sequence) on the current with the feedback added."""
        if comp is None:
            return super().forward(current)
        return super().forward(current, comp, mem)

    def _rclif_recurrent_input(self, spk: Tensor, like: Tensor) -> Tensor:
        r""":math:`\mathcal{W}(s_{t-1})`, in the input's dtype."""
        if self.all_to_all:
            rec = self.recurrent(spk)
        else:
            V = self._parameters["V"] if "V" in self._parameters else (
                self._buffers["V"] if "V" in self._buffers else self.V)  # a DataParallel replica's plain V
            if V.dtype != spk.dtype or V.device != spk.device:
                V = V.to(device=spk.device, dtype=spk.dtype)
            rec = spk * V
        if rec.shape != like.shape:
            raise ValueError(
                f"the recurrent connection maps the spikes {tuple(spk.shape)} to {tuple(rec.shape)}, "
                f"not the input's shape {tuple(like.shape)}"
            )
        return rec if rec.dtype == like.dtype else rec.to(like.dtype)

    def _rclif_check_states(self, spk: object, comp: object, mem: object) -> None:
        if self.init_hidden:
            raise TypeError("`spk`, `comp` and `mem` should not be passed as arguments while `init_hidden=True`")
        for state, name in ((spk, "spk"), (comp, "comp"), (mem, "mem")):
            if isinstance(state, (tuple, list)):
                raise TypeError(
                    f"{name} got a {type(state).__name__}, not a tensor: reset_mem()/init_rleaky() return "
                    f"all three states (spk, comp, mem). {_RCLIF_IDIOM}"
                )
        missing = [name for state, name in ((spk, "spk"), (comp, "comp"), (mem, "mem")) if state is None]
        if missing:
            raise TypeError(
                f"RCLIF takes all three states or none; {' and '.join(missing)} missing "
                f"(snn.RLeaky's `spk, mem = lif(x, spk, mem)`?). {_RCLIF_IDIOM}"
            )

    def _rclif_check_shape(self, shape: torch.Size) -> None:
        """The input's neuron shape against the recurrent connection's, with the argument named."""
        if not self.all_to_all:
            V = self.V
            if V.ndim > len(shape) or any(v != 1 and v != n for v, n in zip(reversed(V.shape), reversed(shape))):
                raise ValueError(
                    f"V of shape {tuple(V.shape)} does not broadcast to the neurons' shape {tuple(shape)}"
                )
        elif self.linear_features is not None:
            if len(shape) == 0 or shape[-1] != self.linear_features:
                raise ValueError(
                    f"linear_features={self.linear_features} must equal the input's last dimension "
                    f"(the neurons' shape is {tuple(shape)})"
                )
        elif len(shape) not in (3, 4) or shape[-3] != self.conv2d_channels:
            raise ValueError(
                f"conv2d_channels={self.conv2d_channels} must equal the input's channel dimension: the input "
                f"must be [batch, {self.conv2d_channels}, H, W] or [{self.conv2d_channels}, H, W] per step, "
                f"got neurons of shape {tuple(shape)}"
            )

    def _rclif_explicit_spk(self, spk: Tensor, like: Tensor, shape: torch.Size) -> Tensor:
        if not isinstance(spk, Tensor):
            raise TypeError(f"spk must be a torch.Tensor, got {type(spk).__name__}")
        if spk.numel() == 0 and spk.shape != shape:
            return like.new_zeros(shape)
        if spk.shape != shape:
            hint = " (in multi-step mode pass the last spike, spk[-1])" if spk.shape[1:] == shape else ""
            raise ValueError(f"spk must have shape {tuple(shape)} to match the input, got {tuple(spk.shape)}{hint}")
        if spk.dtype != like.dtype:
            raise TypeError(f"spk must have the input's dtype {like.dtype}, got {spk.dtype}")
        if spk.device != like.device:
            raise ValueError(f"spk must be on the input's device {like.device}, got {spk.device}")
        return spk

    def _rclif_spk_to_use(self, like: Tensor, shape: torch.Size) -> Tensor:
        spk = self._rclif_kept_spk()
        if spk.shape != shape:  # empty, or the input's shape changed: start over, as comp and mem do
            return like.new_zeros(shape)
        if spk.dtype != like.dtype or spk.device != like.device:
            return spk.to(device=like.device, dtype=like.dtype)
        return spk

    # --- snn.RLeaky -----------------------------------------------------------------
    @classmethod
    def from_rleaky(cls, layer: snn.RLeaky, **overrides: Any) -> RCLIF:
        """An RCLIF with ``layer``'s settings and trained values (an ``snn.RLeaky``).

        Copies the constructor arguments (``beta``, ``threshold``, ``V``, the recurrent
        connection's kind and size, ``spike_grad``, ``reset_mechanism``, ``reset_delay``,
        ``init_hidden``, ``output``, what is learnable, ...) and the trained values (the
        recurrent layer's weight and bias, ``V``, ``beta``, ``threshold``), on the layer's
        device and in its dtype. ``overrides`` replace constructor arguments, e.g. ``reset_delay=False``
        for the paper's same-step reset or ``spike_grad=None`` for the paper's rectangle
        (RLeaky defaults to ``reset_delay=True`` and ``atan``). The neuron is CLIF, not LIF:
        the copy behaves differently from ``layer`` and needs training (fine-tuning) as a CLIF.

        Example::

            >>> import snntorch as snn
            >>> rleaky = snn.RLeaky(beta=0.9, linear_features=16)
            >>> rclif = RCLIF.from_rleaky(rleaky, reset_delay=False)
            >>> torch.equal(rclif.recurrent.weight, rleaky.recurrent.weight)
            True
        """
        if not isinstance(layer, snn.RLeaky):
            raise TypeError(f"layer must be an snntorch.RLeaky, got {type(layer).__name__}")

        def value(name: str) -> Tensor:
            return getattr(layer, name).detach().clone()

        arguments: dict[str, Any] = dict(
            beta=value("beta"),
            all_to_all=bool(layer.all_to_all),
            linear_features=layer.linear_features if layer.all_to_all and layer.linear_features else None,
            conv2d_channels=layer.conv2d_channels if layer.all_to_all and not layer.linear_features else None,
            kernel_size=layer.kernel_size if layer.all_to_all and not layer.linear_features else None,
            threshold=value("threshold"),
            spike_grad=None if layer.surrogate_disable else layer.spike_grad,
            surrogate_disable=bool(layer.surrogate_disable),
            init_hidden=layer.init_hidden,
            inhibition=layer.inhibition,
            learn_beta=isinstance(layer.beta, nn.Parameter),
            learn_threshold=isinstance(layer.threshold, nn.Parameter),
            learn_recurrent=bool(layer.learn_recurrent),
            reset_mechanism=layer.reset_mechanism,
            state_quant=layer.state_quant,
            output=layer.output,
            reset_delay=bool(layer.reset_delay),
            graded_spikes_factor=value("graded_spikes_factor"),
            learn_graded_spikes_factor=isinstance(layer.graded_spikes_factor, nn.Parameter),
        )
        if not layer.all_to_all:
            # the V its forward multiplies by: RLeaky's recurrent.V (a fixed V later assigned
            # to layer.V leaves recurrent.V, and the layer's behaviour, unchanged)
            arguments["V"] = layer.recurrent.V.detach().clone()
        unknown = set(overrides) - set(arguments) - {"V", "step_mode", "state_sequences"}
        if unknown:
            raise TypeError(f"from_rleaky got unknown RCLIF arguments: {sorted(unknown)}")
        arguments.update(overrides)
        rclif = cls(**arguments).to(device=layer.threshold.device, dtype=layer.threshold.dtype)
        if rclif.all_to_all:  # beta, threshold, V, ... came in through the constructor
            rclif.recurrent.load_state_dict(layer.recurrent.state_dict())
        return rclif

    # --- copying ------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state["_rclif_spk"] = state["_rclif_spk"].detach()  # a copy owns its states, detached
        return state

    def extra_repr(self) -> str:
        if self.all_to_all:
            kind = "all_to_all=True"
        else:
            V = self.V
            kind = f"all_to_all=False, V={V.item() if V.numel() == 1 else f'tensor{tuple(V.shape)}'}"
        return f"{super().extra_repr()}, {kind}, learn_recurrent={self.learn_recurrent}"
