"""Shared fixtures."""

import hashlib
import os
from pathlib import Path

import pytest
import torch

_ROOT = Path(__file__).resolve().parent.parent


def _package_digest() -> str:
    """A digest of the kernel sources and the fake kernels (ops.py)."""
    digest = hashlib.sha256()
    files = sorted((_ROOT / "snntorch_clif" / "csrc").rglob("*")) + [_ROOT / "snntorch_clif" / "ops.py"]
    for path in files:
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# Inductor's graph cache does not key on a custom op's fake kernel: graphs compiled against an
# older saved-buffer shape would fail their size asserts. One cache folder per version of ours.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_ROOT / "build" / "torchinductor" / _package_digest()))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    if not torch.cuda.is_available():
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip_cuda)
