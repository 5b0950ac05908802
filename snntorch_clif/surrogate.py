r"""Surrogate gradients for CLIF's spike.

Every path of ``snntorch_clif`` fires with the same rule,

.. math::
    s = H(h - \theta), \qquad H(z) = \begin{cases} 1 & z \ge 0 \\ 0 & z < 0 \end{cases}

(``>=``, as the paper and SpikingJelly do; snnTorch's own surrogates use ``>``). In the
backward pass :math:`dH/dz` is replaced by a surrogate derivative :math:`g(z)`.

The surrogates here are small picklable objects with a kernel id and one float
parameter, so the fused kernels can evaluate them and ``torch.save(model)`` works.
:func:`resolve` maps snnTorch's surrogate factories (``snntorch.surrogate.atan(alpha)``
and friends) onto them; any other callable is kept as it is and runs on the reference
path.

Example::

    >>> import torch
    >>> from snntorch_clif import surrogate
    >>> z = torch.tensor([-0.6, -0.2, 0.0, 0.3], requires_grad=True)
    >>> s = surrogate.rectangle(alpha=1.0)(z)
    >>> s.detach()
    tensor([0., 0., 1., 1.])
    >>> s.sum().backward(); z.grad
    tensor([0., 1., 1., 1.])
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Union

import torch
from torch import Tensor

__all__ = [
    "Surrogate",
    "Rectangle",
    "ATan",
    "FastSigmoid",
    "Sigmoid",
    "Triangular",
    "StraightThrough",
    "Disabled",
    "rectangle",
    "atan",
    "fast_sigmoid",
    "sigmoid",
    "triangular",
    "straight_through_estimator",
    "resolve",
    "spike",
    "surrogate_derivative",
]

# Kernel ids: csrc/clif_math.h switches on the same numbers.
RECTANGLE, ATAN, FAST_SIGMOID, SIGMOID, TRIANGULAR, STRAIGHT_THROUGH, DISABLED = range(7)


def surrogate_derivative(z: Tensor, kind: int, param: float) -> Tensor:
    r"""The surrogate derivative :math:`g(z)` of surrogate ``kind`` with parameter ``param``.

    Computed in ``z``'s dtype. This is the formula the fused kernels implement.

    Example::

        >>> import torch
        >>> from snntorch_clif.surrogate import surrogate_derivative, ATAN
        >>> surrogate_derivative(torch.zeros(1), ATAN, 2.0)
        tensor([1.])
    """
    if kind == RECTANGLE:
        # |z| <= alpha/2, edges included, as the paper authors' code (and the kernels) do
        return (z.abs() <= 0.5 * param).to(z.dtype) / param
    if kind == ATAN:
        return (0.5 * param) / (1 + (0.5 * math.pi * param * z) ** 2)
    if kind == FAST_SIGMOID:
        return 1.0 / (param * z.abs() + 1.0) ** 2
    if kind == SIGMOID:
        sig = torch.sigmoid(param * z)
        return param * sig * (1 - sig)
    if kind == TRIANGULAR:
        return torch.where(z >= 0, z.new_tensor(-param), z.new_tensor(param))
    if kind == STRAIGHT_THROUGH:
        return torch.ones_like(z)
    if kind == DISABLED:
        return torch.zeros_like(z)
    raise ValueError(f"unknown surrogate kind {kind!r}")


class _Heaviside(torch.autograd.Function):
    """H(z) = (z >= 0) forward; g(z) backward."""

    @staticmethod
    def forward(z: Tensor, kind: int, param: float) -> Tensor:
        return (z >= 0).to(z.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        z, kind, param = inputs
        ctx.save_for_backward(z)
        ctx.kind, ctx.param = kind, param

    @staticmethod
    def backward(ctx: Any, grad_spike: Tensor) -> tuple:
        (z,) = ctx.saved_tensors
        return grad_spike * surrogate_derivative(z, ctx.kind, ctx.param), None, None


_Heaviside.__name__ = "Heaviside"


class Surrogate:
    r"""Base class: a picklable surrogate that the fused kernels know by :attr:`kind`.

    Calling it on :math:`z = h - \theta` returns :math:`H(z)` with :math:`g(z)` as the
    gradient, so an instance can also be passed to snnTorch neurons as ``spike_grad``.
    """

    kind: int = -1
    param_name: str = ""

    def __init__(self, param: float = 0.0) -> None:
        param = float(param)
        if not math.isfinite(param):
            raise ValueError(f"{type(self).__name__}: {self.param_name} must be finite, got {param}")
        self.param = param

    def __call__(self, z: Tensor) -> Tensor:
        return _Heaviside.apply(z, self.kind, self.param)

    def derivative(self, z: Tensor) -> Tensor:
        """The surrogate derivative :math:`g(z)`."""
        return surrogate_derivative(z, self.kind, self.param)

    def __repr__(self) -> str:
        if not self.param_name:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}({self.param_name}={self.param})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.param == self.param  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.param))


class Rectangle(Surrogate):
    r"""The paper's rectangle: width :math:`\alpha`, height :math:`1/\alpha`, centred on 0.

    .. math:: g(z) = \frac{1}{\alpha}\,\mathbb{1}\left[|z| \le \tfrac{\alpha}{2}\right]

    The window includes its edges :math:`z = \pm\alpha/2`, as in the paper authors' code.

    Example::

        >>> Rectangle(alpha=1.0).derivative(torch.tensor([0.0, 0.5, 0.51]))
        tensor([1., 1., 0.])
    """

    kind = RECTANGLE
    param_name = "alpha"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)
        if self.param <= 0:
            raise ValueError(f"Rectangle: alpha must be > 0, got {alpha}")


class ATan(Surrogate):
    r"""snnTorch's arc-tangent surrogate.

    .. math:: g(z) = \frac{\alpha/2}{1 + (\frac{\pi}{2}\alpha z)^2}

    Example::

        >>> ATan(alpha=2.0).derivative(torch.tensor([0.0]))
        tensor([1.])
    """

    kind = ATAN
    param_name = "alpha"

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__(alpha)


class FastSigmoid(Surrogate):
    r"""snnTorch's fast sigmoid (SuperSpike) surrogate.

    .. math:: g(z) = \frac{1}{(1 + k|z|)^2}

    Example::

        >>> FastSigmoid(slope=25).derivative(torch.tensor([0.0]))
        tensor([1.])
    """

    kind = FAST_SIGMOID
    param_name = "slope"

    def __init__(self, slope: float = 25.0) -> None:
        super().__init__(slope)


class Sigmoid(Surrogate):
    r"""snnTorch's sigmoid surrogate.

    .. math:: g(z) = k\,\sigma(kz)\,(1 - \sigma(kz))

    The same value as snnTorch's :math:`k e^{-kz} / (e^{-kz} + 1)^2`, evaluated without
    the overflow that turns snnTorch's into NaN for large negative :math:`kz`.

    Example::

        >>> Sigmoid(slope=4).derivative(torch.tensor([0.0]))
        tensor([1.])
    """

    kind = SIGMOID
    param_name = "slope"

    def __init__(self, slope: float = 25.0) -> None:
        super().__init__(slope)


class Triangular(Surrogate):
    r"""snnTorch 1.0's ``triangular`` surrogate, reproduced as it computes.

    .. math:: g(z) = \begin{cases} -c & z \ge 0 \\ c & z < 0 \end{cases}

    (``c`` is snnTorch's ``threshold`` argument.)

    Example::

        >>> Triangular(threshold=1).derivative(torch.tensor([-1.0, 1.0]))
        tensor([ 1., -1.])
    """

    kind = TRIANGULAR
    param_name = "threshold"

    def __init__(self, threshold: float = 1.0) -> None:
        super().__init__(threshold)


class StraightThrough(Surrogate):
    r"""Straight-through estimator: :math:`g(z) = 1`.

    Example::

        >>> StraightThrough().derivative(torch.tensor([5.0]))
        tensor([1.])
    """

    kind = STRAIGHT_THROUGH


class Disabled(Surrogate):
    r"""No surrogate: the spike's true derivative, :math:`g(z) = 0` (``surrogate_disable``).

    Example::

        >>> Disabled().derivative(torch.tensor([0.0]))
        tensor([0.])
    """

    kind = DISABLED


def rectangle(alpha: float = 1.0) -> Rectangle:
    r"""The paper's rectangle surrogate (CLIF's default): :math:`g(z) = \mathbb{1}[|z| \le \alpha/2] / \alpha`.

    Example::

        >>> from snntorch_clif import CLIF, surrogate
        >>> lif = CLIF(spike_grad=surrogate.rectangle(alpha=1.0))
    """
    return Rectangle(alpha)


def atan(alpha: float = 2.0) -> ATan:
    """Picklable twin of ``snntorch.surrogate.atan``. Example: ``CLIF(spike_grad=atan(2.0))``."""
    return ATan(alpha)


def fast_sigmoid(slope: float = 25.0) -> FastSigmoid:
    """Picklable twin of ``snntorch.surrogate.fast_sigmoid``. Example: ``CLIF(spike_grad=fast_sigmoid(25))``."""
    return FastSigmoid(slope)


def sigmoid(slope: float = 25.0) -> Sigmoid:
    """Picklable twin of ``snntorch.surrogate.sigmoid``. Example: ``CLIF(spike_grad=sigmoid(25))``."""
    return Sigmoid(slope)


def triangular(threshold: float = 1.0) -> Triangular:
    """Picklable twin of ``snntorch.surrogate.triangular``. Example: ``CLIF(spike_grad=triangular())``."""
    return Triangular(threshold)


def straight_through_estimator() -> StraightThrough:
    """Picklable twin of ``snntorch.surrogate.straight_through_estimator``.

    Example: ``CLIF(spike_grad=straight_through_estimator())``.
    """
    return StraightThrough()


# snnTorch factory name -> (closure variable holding its parameter, our class)
_SNNTORCH_FACTORIES: dict[str, tuple[str | None, type[Surrogate]]] = {
    "atan": ("alpha", ATan),
    "fast_sigmoid": ("slope", FastSigmoid),
    "sigmoid": ("slope", Sigmoid),
    "triangular": ("threshold", Triangular),
    "straight_through_estimator": (None, StraightThrough),
}

SpikeGrad = Union[Surrogate, Callable[[Tensor], Tensor]]


def resolve(spike_grad: SpikeGrad | None) -> SpikeGrad:
    """Map ``spike_grad`` onto a known :class:`Surrogate` where possible.

    ``None`` gives the paper's ``rectangle(1.0)``; snnTorch's factories
    (``snntorch.surrogate.atan(alpha)``, ``fast_sigmoid``, ``sigmoid``, ``triangular``,
    ``straight_through_estimator``) become the matching picklable object; any other
    callable is returned unchanged (it runs on the reference path).

    Example::

        >>> import snntorch.surrogate
        >>> resolve(snntorch.surrogate.atan(alpha=3.0))
        ATan(alpha=3.0)
    """
    if spike_grad is None:
        return Rectangle(1.0)
    if isinstance(spike_grad, Surrogate):
        return spike_grad
    if not callable(spike_grad):
        raise TypeError(
            "spike_grad must be callable (a snntorch.surrogate factory's result or a "
            f"snntorch_clif.surrogate object), got {type(spike_grad).__name__}"
        )
    qualname = getattr(spike_grad, "__qualname__", "")
    if getattr(spike_grad, "__module__", None) == "snntorch.surrogate" and qualname.endswith(
        ".<locals>.inner"
    ):
        entry = _SNNTORCH_FACTORIES.get(qualname.split(".")[0])
        if entry is not None:
            param_name, cls = entry
            if param_name is None:
                return cls()
            nonlocals = inspect.getclosurevars(spike_grad).nonlocals
            if param_name in nonlocals:
                return cls(nonlocals[param_name])
    return spike_grad


def spike(z: Tensor, spike_grad: SpikeGrad) -> Tensor:
    r"""Fire: :math:`H(z)` (``z >= 0``) forward, ``spike_grad``'s derivative backward.

    A custom callable ``f`` is used for its gradient only: the result is
    ``H(z) + (f(z) - f(z).detach())``, so the forward rule stays ``>=`` on every path.

    Example::

        >>> spike(torch.tensor([0.0, -1.0]), Rectangle(1.0))
        tensor([1., 0.])
    """
    if isinstance(spike_grad, Surrogate):
        return spike_grad(z)
    fired = (z >= 0).to(z.dtype)
    out = spike_grad(z)
    return fired + (out - out.detach()).to(z.dtype)
