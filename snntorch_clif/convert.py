r"""Deploy CLIF-trained networks as plain LIF networks, and export them to NIR.

The CLIF paper's repository runs CLIF-trained weights on an ordinary LIF neuron with a
hard reset slightly below zero (CIFAR-10 ResNet18: 95.08% at :math:`v_{reset} = -0.06`
against 95.41% with CLIF). :func:`to_leaky` does that swap:

.. math::
    \text{CLIF}(\beta, \theta) \;\longmapsto\;
    h_t = \beta u_{t-1} + x_t,\ s_t = H(h_t - \theta),\ u_t = (1 - s_t) h_t + s_t v_{reset}

Neuromorphic tool chains read the Neuromorphic Intermediate Representation (NIR), which
has a ``LIF`` node but no complementary potential, so only a converted network can be
exported: :func:`export_nir` goes through snnTorch's exporter, and :func:`import_nir`
through snnTorch's importer (restoring ``v_reset``, which that importer drops).

Importing this module also guards snnTorch's exporter: ``snntorch.export_nir`` maps
every ``snn.Leaky`` subclass to a NIR ``LIF``, and :class:`~snntorch_clif.CLIF` is such a
subclass, so an unconverted CLIF would be exported silently as the wrong neuron. The
guard raises a ``TypeError`` naming :func:`to_leaky` instead, and maps
:class:`HardResetLIF` with its ``v_reset``.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from snntorch_clif import CLIF
    >>> from snntorch_clif.convert import to_leaky, export_nir, import_nir
    >>> net = nn.Sequential(nn.Linear(4, 8), CLIF(init_hidden=True),
    ...                     nn.Linear(8, 2), CLIF(init_hidden=True))
    >>> lif_net = to_leaky(net, v_reset=-0.06)
    >>> graph = export_nir(lif_net, torch.rand(1, 4))
    >>> graph.nodes["1"].v_reset[:2]
    array([-0.06, -0.06], dtype=float32)
    >>> back = import_nir(graph)     # a torch.fx GraphModule: out, state = back(x)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ._lif import HardResetLIF
from .neuron import CLIF
from .swap import from_leaky

__all__ = [
    "HardResetLIF", "from_leaky", "to_leaky", "export_nir", "import_nir", "lif_to_nir", "reset_nir_states",
    "install_export_guard",
]

# snnTorch's exporter and importer convert beta <-> tau with this time step.
NIR_DT = 1e-4


def to_leaky(model: nn.Module, v_reset: float = 0.0, reset_mechanism: str = "zero") -> nn.Module:
    r"""A deep copy of ``model`` with every CLIF replaced by a :class:`HardResetLIF`.

    Each LIF keeps its CLIF's :math:`\beta`, :math:`\theta`, surrogate, graded spike
    factor, step mode and ``init_hidden``; it drops the complementary potential and
    resets to ``v_reset`` in the step it fires (``reset_mechanism="subtract"`` gives
    the soft-reset LIF instead):

    .. math:: u_t = (1 - s_t)\, h_t + s_t\, v_{reset}

    Until a neuron first fires, CLIF and the LIF follow identical dynamics
    (:math:`m_t = 0`, :math:`u_t = h_t`), so their spikes agree exactly there.
    Learnable ``beta``/``threshold`` are frozen to their current values. ``model`` is
    not modified.

    Only CLIF layers built with ``init_hidden=True`` (the ``nn.Sequential`` style) are
    converted: a CLIF called as ``spk, comp, mem = clif(x, comp, mem)`` sits in code
    that passes and unpacks two states, which a LIF cannot take, so such layers raise a
    ``ValueError`` naming them. A layer with ``output=True`` becomes a LIF with
    ``output=True``, which returns ``(spk, mem)``: snnTorch's convention for its
    ``Leaky`` class, so snnTorch's exporter, importer and ``snntorch.backprop`` treat the
    converted network as they treat a ``Leaky`` one (the NIR notebook's network, whose
    last layer has ``output=True``, exports and imports unchanged).

    Example::

        >>> from torch import nn
        >>> from snntorch_clif import CLIF
        >>> from snntorch_clif.convert import to_leaky
        >>> net = nn.Sequential(nn.Linear(4, 8), CLIF(init_hidden=True))
        >>> to_leaky(net, v_reset=-0.06)[1]
        HardResetLIF(beta=0.5, threshold=1, v_reset=-0.06, reset_mechanism='zero', step_mode='single', init_hidden=True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, module in model.named_modules():
        if isinstance(module, CLIF) and not module.init_hidden:
            raise ValueError(
                f"to_leaky converts CLIF layers built with init_hidden=True; layer {name or '<model>'!r} "
                f"takes and returns its states (spk, comp, mem = clif(x, comp, mem)), which a LIF "
                f"cannot replace in the calling code"
            )
    if isinstance(model, CLIF):
        return _lif_like(model, v_reset, reset_mechanism)
    copied = copy.deepcopy(model)
    _replace_clif(copied, v_reset, reset_mechanism)
    return copied


def _lif_like(clif: CLIF, v_reset: float, reset_mechanism: str) -> HardResetLIF:
    lif = HardResetLIF(
        beta=clif.beta.detach().clamp(0, 1),
        threshold=clif.threshold.detach(),
        v_reset=v_reset,
        spike_grad=clif.spike_grad,
        reset_mechanism=reset_mechanism,
        init_hidden=clif.init_hidden,
        output=clif.output,
        graded_spikes_factor=clif.graded_spikes_factor.detach(),
        step_mode=clif.step_mode,
    )
    return lif.to(clif.threshold.device)


def _replace_clif(parent: nn.Module, v_reset: float, reset_mechanism: str) -> None:
    for name, child in parent.named_children():
        if isinstance(child, CLIF):
            setattr(parent, name, _lif_like(child, v_reset, reset_mechanism))
        else:
            _replace_clif(child, v_reset, reset_mechanism)


def _per_neuron(value: Tensor, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(value.detach().cpu().numpy(), shape).astype(np.float32).copy()


def lif_to_nir(lif: HardResetLIF) -> Any:
    r"""The NIR ``LIF`` node of a :class:`HardResetLIF` that has run at least one step.

    NIR's leaky integrator :math:`\tau \dot v = (v_{leak} - v) + r\, I`, discretised by
    snnTorch with :math:`\Delta t = 10^{-4}`, is :math:`v_t = \beta v_{t-1} + x_t` for
    :math:`\tau = \Delta t / (1-\beta)`, :math:`r = \tau/\Delta t`, :math:`v_{leak} = 0`;
    the node's ``v_reset`` is the LIF's. Parameters are per-neuron arrays of the
    neuron shape seen in the last forward (NIR's type inference needs them).

    Example::

        >>> import torch
        >>> from snntorch_clif.convert import HardResetLIF, lif_to_nir
        >>> lif = HardResetLIF(v_reset=-0.06)
        >>> _ = lif(torch.zeros(1, 3))
        >>> lif_to_nir(lif).tau
        array([0.0002, 0.0002, 0.0002], dtype=float32)
    """
    import nir

    if lif.reset_mechanism != "zero":
        raise ValueError(
            f"NIR's LIF resets to v_reset; a {lif.reset_mechanism!r} reset has no NIR node. "
            f"Convert with reset_mechanism='zero'"
        )
    if lif.neuron_shape is None:
        raise ValueError("HardResetLIF has not run yet: its neuron count is unknown; run one forward first")
    shape = lif.neuron_shape
    beta = _per_neuron(lif.beta, shape)
    if bool((beta >= 1).any()):
        raise ValueError("beta = 1 (no leak) has no finite NIR time constant")
    tau = (NIR_DT / (1 - beta)).astype(np.float32)
    return nir.LIF(
        tau=tau,
        r=(tau / NIR_DT).astype(np.float32),
        v_leak=np.zeros(shape, dtype=np.float32),
        v_threshold=_per_neuron(lif.threshold, shape),
        v_reset=_per_neuron(lif.v_reset, shape),
    )


def _guarded(extract: Callable[[nn.Module], Any]) -> Callable[[nn.Module], Any]:
    @functools.wraps(extract)
    def extract_module(module: nn.Module) -> Any:
        if isinstance(module, CLIF):
            raise TypeError(
                "snntorch_clif.CLIF has no NIR equivalent (NIR's LIF has no complementary potential); "
                "snnTorch's exporter would write it as a plain LIF. Convert first: "
                "snntorch_clif.convert.to_leaky(model, v_reset=...), then export_nir(...)"
            )
        if isinstance(module, HardResetLIF):
            return lif_to_nir(module)
        return extract(module)

    extract_module._snntorch_clif_guard = True  # type: ignore[attr-defined]
    return extract_module


def install_export_guard() -> bool:
    """Wrap snnTorch's NIR module extractor so CLIF fails loudly and HardResetLIF exports.

    Idempotent; called when this module is imported. Returns False when snnTorch's NIR
    support (``nir``/``nirtorch``) is not installed. Only the one module-level function
    ``snntorch.export_nir._extract_snntorch_module`` is wrapped; every other module type
    goes to snnTorch's own mapping unchanged.

    Example::

        >>> from snntorch_clif.convert import install_export_guard
        >>> install_export_guard()
        True
    """
    try:
        from snntorch import export_nir as snn_export
    except ImportError:
        return False
    current = snn_export._extract_snntorch_module
    if not getattr(current, "_snntorch_clif_guard", False):
        snn_export._extract_snntorch_module = _guarded(current)
    return True


def export_nir(model: nn.Module, sample_data: Tensor, model_name: str = "snntorch") -> Any:
    """Export a converted (CLIF-free) network to a NIR graph with snnTorch's exporter.

    ``sample_data`` is one batch of a single time step, ``[batch, ...]`` (the batch
    dimension is left out of the NIR types); multi-step LIF layers are traced one step
    at a time. Raises ``TypeError`` if a CLIF is left.
    Each :class:`HardResetLIF` becomes a NIR ``LIF`` (see :func:`lif_to_nir`).

    Example::

        >>> import torch
        >>> from torch import nn
        >>> from snntorch_clif.convert import HardResetLIF, export_nir
        >>> net = nn.Sequential(nn.Linear(3, 2), HardResetLIF(init_hidden=True))
        >>> sorted(export_nir(net, torch.rand(1, 3)).nodes)
        ['0', '1', 'input', 'output']
    """
    if not install_export_guard():
        raise ImportError("NIR export needs the `nir` and `nirtorch` packages")
    from snntorch.export_nir import export_to_nir

    lifs = [m for m in model.modules() if isinstance(m, HardResetLIF)]
    modes = [lif.step_mode for lif in lifs]
    for lif in lifs:
        lif.reset_mem()  # the exporter's tracing forward starts from rest
        lif.step_mode = "single"  # NIR describes one time step; sample_data is one step
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # snnTorch 1.0 calls nirtorch's deprecated extract_nir_graph: not the user's to fix
            warnings.filterwarnings("ignore", message=".*extract_nir_graph.*", category=DeprecationWarning)
            graph = export_to_nir(model, sample_data, model_name=model_name, ignore_dims=[0])
    finally:
        for lif, mode in zip(lifs, modes):
            lif.step_mode = mode
            lif.reset_mem()
    return graph


def import_nir(graph: Any) -> nn.Module:
    """Load a NIR graph with snnTorch's importer, then restore non-zero ``v_reset``.

    snnTorch's importer turns every NIR ``LIF`` into an ``snn.Leaky`` with a reset to
    zero, dropping ``v_reset``; each such node with a non-zero ``v_reset`` becomes a
    :class:`HardResetLIF` with the node's parameters instead. Returns snnTorch's
    ``torch.fx.GraphModule``: call it per step as ``out, state = net(x_t)``, with
    stateful neurons (reset them with :func:`reset_nir_states`).

    Example::

        >>> import torch
        >>> from torch import nn
        >>> from snntorch_clif.convert import HardResetLIF, export_nir, import_nir
        >>> net = nn.Sequential(nn.Linear(3, 2), HardResetLIF(v_reset=-0.1, init_hidden=True))
        >>> back = import_nir(export_nir(net, torch.rand(1, 3)))
        >>> type(back.get_submodule("1")).__name__
        'HardResetLIF'
    """
    import nir
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # snnTorch's importer prints progress notes
        imported = import_from_nir(graph)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.LIF) and not np.allclose(node.v_reset, 0.0):
            beta = torch.as_tensor(1 - NIR_DT / np.asarray(node.tau, dtype=np.float64), dtype=torch.float32)
            lif = HardResetLIF(
                beta=beta,
                threshold=torch.as_tensor(np.asarray(node.v_threshold), dtype=torch.float32),
                v_reset=torch.as_tensor(np.asarray(node.v_reset), dtype=torch.float32),
                init_hidden=True,
            )
            imported.add_submodule(name, lif)
    return imported


def reset_nir_states(model: nn.Module) -> None:
    """Zero the membrane potential of every neuron of an imported (or converted) network.

    Example::

        >>> from torch import nn
        >>> reset_nir_states(nn.Sequential(HardResetLIF(init_hidden=True)))
    """
    import snntorch as snn

    for module in model.modules():
        if isinstance(module, HardResetLIF):
            module.reset_mem()
        elif isinstance(module, snn.Leaky) and not isinstance(module, CLIF):
            module.mem = torch.zeros_like(module.mem)


install_export_guard()
