r"""Rebuild the fused kernels for the installed PyTorch: ``python -m snntorch_clif.build``.

Use it after upgrading torch, when an isolated ``pip install`` compiled the kernels against
another torch (the package then warns that its library does not load, naming both torch
versions), or on a GPU the installed library has no code for::

    python -m snntorch_clif.build            # CPU kernel, + CUDA when nvcc and a CUDA torch are found
    python -m snntorch_clif.build --cuda 0   # CPU kernel only

On a machine with a GPU it targets that GPU (``TORCH_CUDA_ARCH_LIST`` overrides). The
library goes into a cache folder named after the torch and Python versions and a hash of the
kernel sources (``$SNNTORCH_CLIF_CACHE``, else ``~/.cache/snntorch_clif``);
:mod:`snntorch_clif.ops` loads it from there, in preference to the installed
``snntorch_clif._C``, as long as that torch and those sources are the ones in use. Nothing
in the installed package is modified, so it also works for a read-only install.

CUDA architectures. A library built for ``X.Y`` (a cubin, ``sm_XY``) runs on a GPU of the
same major version and a minor version of at least ``Y``; ``X.Y+PTX`` also embeds PTX, which
the driver compiles at load time for any GPU of capability :math:`\ge` ``X.Y``; an ``a``
suffix (``9.0a``) runs on exactly that capability. :func:`arch_runs_on` implements this;
without ``TORCH_CUDA_ARCH_LIST`` and without a visible GPU, builds target
:data:`DEFAULT_CUDA_ARCHS`.

Example::

    >>> from snntorch_clif.build import arch_runs_on, parse_arch_list
    >>> archs = parse_arch_list("7.5,8.0,8.6,8.9,9.0+PTX")
    >>> arch_runs_on((8, 7), archs), arch_runs_on((12, 0), archs), arch_runs_on((7, 0), archs)
    (True, True, False)
"""

import sys

from . import _build
from ._build import *  # noqa: F403 - this module is the documented face of _build
from ._build import __all__  # noqa: F401

if __name__ == "__main__":
    sys.exit(_build.main())
