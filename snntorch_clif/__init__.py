"""snntorch-clif: the CLIF neuron (Huang et al., ICML 2024) for snnTorch users.

Example::

    >>> import torch
    >>> from snntorch_clif import CLIF
    >>> clif = CLIF(beta=0.5, threshold=1.0)
    >>> spk, comp, mem = clif(torch.rand(32, 128))
"""

from . import backends, convert, functional, reference, surrogate
from .functional import CLIFOutput, clif_sequence, clif_step
from .neuron import CLIF, detach, reset

__version__ = "0.1.0"

__all__ = [
    "CLIF",
    "CLIFOutput",
    "backends",
    "clif_sequence",
    "clif_step",
    "convert",
    "detach",
    "functional",
    "reference",
    "reset",
    "surrogate",
]
