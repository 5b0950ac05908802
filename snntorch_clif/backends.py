"""Which implementation runs CLIF: the fused kernels or the pure-PyTorch reference.

Call the module itself for a report of what was built and what each device uses::

    >>> import snntorch_clif
    >>> info = snntorch_clif.backends()
    >>> info.cpu_kernel, info.devices["cpu"]            # doctest: +SKIP
    (True, 'fused')

The fused op runs when the surrogate is a known one (:mod:`snntorch_clif.surrogate`, or
a snnTorch factory mapped onto one), ``inhibition`` is off, ``state_quant`` is unset, the
library has a kernel for the input's device and dtype (on a GPU: code for its compute
capability, see :func:`cuda_arch_problem`), and the reference is not forced.
Otherwise the reference path runs, and a warning says why, once per reason.

Forcing the reference (for debugging, or to compare): set the environment variable
``SNNTORCH_CLIF_BACKEND=reference`` before the import (``auto``, the default, picks the
fused op where it applies), or in code::

    >>> from snntorch_clif import backends
    >>> with backends.use_reference():
    ...     pass                                            # everything here: reference
    >>> backends.set_backend("reference"); backends.set_backend("auto")

Both backends fire with the same rule, :math:`s = H(h - \\theta)` with
:math:`H(z) = 1` for :math:`z \\ge 0`.

On the CPU the fused kernel uses up to ``torch.get_num_threads()`` threads, and keeps its
speed when other programs hold some of the cores: see :func:`cpu_threads`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

import torch

from . import ops
from ._build import REBUILD_COMMAND, arch_runs_on, parse_arch_list
from .surrogate import Surrogate

__all__ = [
    "BackendReport",
    "CpuThreads",
    "cpu_threads",
    "cuda_arch_problem",
    "fused_unsupported_reason",
    "get_backend",
    "report",
    "set_backend",
    "use_reference",
]

BACKENDS = ("auto", "reference")


def _backend_from_env() -> str:
    value = os.environ.get("SNNTORCH_CLIF_BACKEND", "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        warnings.warn(
            f"SNNTORCH_CLIF_BACKEND={value!r} is not one of {BACKENDS}; using 'auto'", RuntimeWarning, stacklevel=2
        )
        return "auto"
    return value


_backend: str = _backend_from_env()
_warned: set[str] = set()


def set_backend(name: str) -> None:
    """Select ``"auto"`` (fused where it applies) or ``"reference"`` (always the reference path).

    Example::

        >>> from snntorch_clif import backends
        >>> backends.set_backend("reference")
        >>> backends.get_backend()
        'reference'
        >>> backends.set_backend("auto")
    """
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _backend = name


def get_backend() -> str:
    """The selected backend, ``"auto"`` or ``"reference"``. Example: ``backends.get_backend()``."""
    return _backend


@contextlib.contextmanager
def use_reference() -> Iterator[None]:
    """Run everything inside the ``with`` block on the reference path.

    Example::

        >>> import torch
        >>> from snntorch_clif import backends, clif_sequence
        >>> with backends.use_reference():
        ...     spk = clif_sequence(torch.rand(4, 3)).spk
    """
    previous = _backend
    set_backend("reference")
    try:
        yield
    finally:
        set_backend(previous)


_INTERNAL_DIRS = (os.path.dirname(__file__), os.path.dirname(torch.nn.modules.__file__))


def _user_stacklevel() -> int:
    """The stack level of the first caller outside this package and torch.nn (the user's line)."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame, level = frame.f_back, level + 1
    return level


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(
            f"snntorch_clif: {reason}; running the pure-PyTorch reference path",
            RuntimeWarning,
            stacklevel=_user_stacklevel(),
        )


def library_cuda_archs() -> tuple[str, ...]:
    """The CUDA architectures compiled into the loaded library (``()`` without one)."""
    if not ops.AVAILABLE:
        return ()
    return tuple(a.strip() for a in str(getattr(ops._C, "CUDA_ARCHS", "")).split(",") if a.strip())


def cuda_arch_problem(capability: tuple[int, int], archs: tuple[str, ...], gpu_name: str = "this GPU") -> Optional[str]:
    """Why a library built for ``archs`` cannot run on a GPU of ``capability``, or ``None`` when it can.

    A pure function (the rules are :func:`snntorch_clif.build.arch_runs_on`'s): an empty or
    unreadable list is trusted (``None``), since nothing says the GPU is missing from it.

    Example::

        >>> from snntorch_clif import backends
        >>> backends.cuda_arch_problem((8, 6), ("8.0", "9.0+PTX")) is None
        True
        >>> print(backends.cuda_arch_problem((7, 5), ("8.0", "9.0+PTX"), "Tesla T4"))  # doctest: +ELLIPSIS
        Tesla T4 (compute capability 7.5) is not among the CUDA architectures the library was built for (8.0, 9.0+PTX); ...
    """
    parsed = parse_arch_list(",".join(archs))
    if not parsed or arch_runs_on(tuple(capability), parsed):
        return None
    return (
        f"{gpu_name} (compute capability {capability[0]}.{capability[1]}) is not among the CUDA architectures "
        f"the library was built for ({', '.join(archs)}); build the kernels for it with: {REBUILD_COMMAND}"
    )


# device index -> cuda_arch_problem for it (a GPU's capability does not change while we run)
_cuda_device_problems: dict[int, Optional[str]] = {}


def _cuda_device_problem(device: torch.device) -> Optional[str]:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _cuda_device_problems:
        try:  # get_device_properties: torch.compile folds it to a constant
            props = torch.cuda.get_device_properties(index)
            capability, name = (props.major, props.minor), props.name
        except Exception as exc:  # noqa: BLE001 - never crash on a query; the op reports real errors
            _cuda_device_problems[index] = None
            warnings.warn(f"snntorch_clif: could not read CUDA device {index}'s capability ({exc})",
                          RuntimeWarning, stacklevel=3)
        else:
            _cuda_device_problems[index] = cuda_arch_problem(capability, library_cuda_archs(), name)
    return _cuda_device_problems[index]


def fused_unsupported_reason(
    x: torch.Tensor, spike_grad: object, inhibition: bool, state_quant: Optional[Callable]
) -> Optional[str]:
    """``None`` when the fused op can run this call, else why not (and warn once for that reason).

    No warning when the reference was asked for (:func:`set_backend`).

    Example::

        >>> import torch
        >>> from snntorch_clif import backends, surrogate
        >>> backends.fused_unsupported_reason(torch.rand(2), surrogate.atan(), True, None)  # doctest: +SKIP
        'inhibition is not fused'
    """
    if _backend == "reference":
        return "forced"
    if not isinstance(spike_grad, Surrogate):
        name = getattr(spike_grad, "__qualname__", type(spike_grad).__name__)
        reason = f"the custom surrogate {name!r} is not fused (use one of snntorch_clif.surrogate)"
    elif inhibition:
        reason = "inhibition is not fused"
    elif state_quant is not None:
        reason = "state_quant is not fused"
    elif not ops.AVAILABLE:
        reason = f"the compiled kernels could not be loaded ({ops.LOAD_ERROR})"
    elif x.is_cpu:  # a bool; device.type builds a new string on every read
        if ops.has_kernel("cpu"):
            return None
        reason = "no fused kernel was built for device type 'cpu'"
    else:
        device = x.device
        device_type = device.type
        if not ops.has_kernel(device_type):
            reason = f"no fused kernel was built for device type {device_type!r}"
        elif x.dtype == torch.float64:
            reason = f"float64 is fused on the CPU only, not on {device_type!r}"
        elif device_type == "cuda" and _cuda_device_problem(device) is not None:
            reason = _cuda_device_problem(device)
        else:
            return None
    _warn_once(reason)
    return reason


class CpuThreads(NamedTuple):
    """How the fused CPU kernel has used threads in this process (:func:`cpu_threads`)."""

    policy: str  #: "adaptive" (default), "threads" or "single"
    contended: bool  #: calls run on one thread now, after threads that did not pay off ("adaptive")
    threaded_calls: int  #: kernel calls that shared their work with helper threads
    single_calls: int  #: calls big enough for threads that ran on the calling thread alone
    contended_calls: int  #: threaded calls whose helpers did not pay off (each starts a back-off)
    last_late_ms: float  #: the last threaded call: how late its first helper started
    last_wait_ms: float  #: the last threaded call: how long it then waited for helpers
    helper_threads: int  #: helper threads started (at most torch.get_num_threads() - 1)


_CPU_POLICIES = ("adaptive", "threads", "single")


def cpu_threads(policy: Optional[str] = None, contended_for: Optional[float] = None) -> CpuThreads:
    """The fused CPU kernel's thread policy and counters; optionally set the policy first.

    The kernel cuts the neurons into chunks that the calling thread and helper threads (up
    to ``torch.get_num_threads()`` threads in all, when the work pays for them) claim from
    one counter, so a call never waits for a helper that the operating system has not
    scheduled: the caller takes every chunk no helper took, and waits only for chunks a
    helper is running. With ``policy="adaptive"`` (the default) a threaded call whose helpers
    did not pay for themselves (it took more than 0.8 times the caller's CPU time per chunk
    times all the chunks: no helper came in time, the caller waited for a preempted one, or
    one shared the caller's core; another program holds the cores) sends the calls of the
    next 0.1 s to the calling thread alone; then threads are tried again (after 0.2 s if that try does not
    pay off either, then 0.4 s, up to 3.2 s; a try that pays off ends the back-off).
    ``"threads"`` and ``"single"`` force one behaviour (the environment variable
    ``SNNTORCH_CLIF_CPU_POLICY`` sets it at import). Results are the same bits whatever the
    policy and the thread count. ``contended_for`` (seconds) sends the calls of that long to
    one thread (``0``: ends a back-off), for tests and benchmarks.

    Raises ``RuntimeError`` when the compiled kernels are not loaded.

    Example::

        >>> from snntorch_clif import backends
        >>> backends.cpu_threads().policy                    # doctest: +SKIP
        'adaptive'
        >>> backends.cpu_threads(policy="single").policy     # doctest: +SKIP
        'single'
        >>> _ = backends.cpu_threads(policy="adaptive")      # doctest: +SKIP
    """
    if not ops.AVAILABLE or not hasattr(ops._C, "cpu_threads"):
        raise RuntimeError(f"the compiled CPU kernel is not loaded ({ops.LOAD_ERROR or 'a library without it'})")
    if policy is not None and policy not in _CPU_POLICIES:
        raise ValueError(f"policy must be one of {_CPU_POLICIES}, got {policy!r}")
    if contended_for is not None and not contended_for >= 0:
        raise ValueError(f"contended_for must be a number of seconds >= 0, got {contended_for!r}")
    state = ops._C.cpu_threads(
        -1 if policy is None else _CPU_POLICIES.index(policy),
        -1 if contended_for is None else int(contended_for * 1e9),
    )
    return CpuThreads(_CPU_POLICIES[state[0]], bool(state[1]), state[2], state[3], state[4], state[5] / 1e6,
                      state[6] / 1e6, state[7])


@dataclass(frozen=True)
class BackendReport:
    """What :func:`report` found. ``devices`` maps a device type to ``"fused"`` or ``"reference (why)"``."""

    extension_loaded: bool
    load_error: Optional[str]
    cpu_kernel: bool
    cpu_isa: Optional[str]
    cuda_kernel: bool
    cuda_archs: tuple[str, ...]
    backend: str
    devices: dict[str, str] = field(default_factory=dict)
    torch_version: str = torch.__version__
    built_for_torch: Optional[str] = None
    library_path: Optional[str] = None

    def __str__(self) -> str:
        lines = [
            f"snntorch_clif backend: {self.backend}",
            f"  extension loaded: {self.extension_loaded}" + (f" ({self.load_error})" if self.load_error else ""),
            f"  library: {self.library_path or 'none'} (torch {self.torch_version} running; "
            f"installed library built for {self.built_for_torch or 'an unrecorded torch'})",
            f"  CPU kernel: {self.cpu_kernel}" + (f" ({self.cpu_isa})" if self.cpu_isa else ""),
            f"  CUDA kernel: {self.cuda_kernel}" + (f" (archs {', '.join(self.cuda_archs)})" if self.cuda_archs else ""),
        ]
        lines += [f"  {dev}: {use}" for dev, use in self.devices.items()]
        return "\n".join(lines)


def report() -> BackendReport:
    """What was built (CPU / CUDA kernels, CUDA architectures) and what each device uses.

    ``snntorch_clif.backends()`` is the same call.

    Example::

        >>> import snntorch_clif
        >>> print(snntorch_clif.backends())                # doctest: +SKIP
        snntorch_clif backend: auto
          extension loaded: True
          CPU kernel: True (avx512)
          CUDA kernel: True (archs 8.0, 9.0+PTX)
          cpu: fused
          cuda: reference (no CUDA device is visible)
    """
    cpu = ops.has_kernel("cpu")
    cuda = ops.has_kernel("cuda")
    archs = library_cuda_archs()
    isa = ops._C.cpu_isa() if ops.AVAILABLE else None

    def use(device: str, built: bool) -> str:
        if _backend == "reference":
            return "reference (forced)"
        if not ops.AVAILABLE:
            return f"reference (extension not loaded: {ops.LOAD_ERROR})"
        if not built:
            return "reference (no kernel built for this device)"
        return "fused"

    devices = {"cpu": use("cpu", cpu)}
    if torch.cuda.is_available():
        devices["cuda"] = use("cuda", cuda)
        if devices["cuda"] == "fused":
            count = torch.cuda.device_count()
            for index in range(count):
                problem = _cuda_device_problem(torch.device("cuda", index))
                if problem is not None:  # one GPU: "cuda" says it; several: each one that cannot run it
                    devices["cuda" if count == 1 else f"cuda:{index}"] = f"reference ({problem})"
    else:
        devices["cuda"] = "fused when a GPU is visible (none is)" if cuda and _backend == "auto" else use("cuda", cuda)
    return BackendReport(
        extension_loaded=ops.AVAILABLE, load_error=ops.LOAD_ERROR, cpu_kernel=cpu, cpu_isa=isa,
        cuda_kernel=cuda, cuda_archs=archs, backend=_backend, devices=devices,
        built_for_torch=ops.BUILT_FOR_TORCH, library_path=ops.LIBRARY_PATH,
    )


class _CallableModule(types.ModuleType):
    """Lets ``snntorch_clif.backends()`` report while the module keeps its functions."""

    def __call__(self) -> BackendReport:
        return report()


sys.modules[__name__].__class__ = _CallableModule
