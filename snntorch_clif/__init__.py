"""snntorch-clif: the CLIF neuron (Huang et al., ICML 2024) for snnTorch users.

Example::

    >>> import torch
    >>> from snntorch_clif import CLIF
    >>> clif = CLIF(beta=0.5, threshold=1.0)
    >>> spk, comp, mem = clif(torch.rand(32, 128))
"""

import torch

from . import backends, convert, functional, reference, surrogate
from .functional import CLIFOutput, clif_sequence, clif_step
from .neuron import CLIF, SilentLayerWarning, detach, reset
from .recurrent import RCLIF
from .swap import DropInCLIF, DropInRCLIF, from_leaky

__version__ = "0.1.0"

# torch 2.14: torch.distributed.nn, imported for the first time after init_process_group (DDP's
# constructor imports it, through torch._dynamo), keeps the default process group alive past
# destroy_process_group() in its functions' default arguments, and a rank may then abort at exit
# with the group's gloo threads still running. Imported here, before a script creates any group.
if torch.distributed.is_available():
    import torch.distributed.nn  # noqa: F401

__all__ = [
    "CLIF",
    "CLIFOutput",
    "RCLIF",
    "DropInCLIF",
    "DropInRCLIF",
    "SilentLayerWarning",
    "backends",
    "clif_sequence",
    "clif_step",
    "convert",
    "detach",
    "from_leaky",
    "functional",
    "reference",
    "reset",
    "surrogate",
]
