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


# A skip for a missing kernel build or build tool. Under SNNTORCH_CLIF_STRICT_SKIPS=1 (.ci/run,
# where nvcc, the CUDA build, clang and the aarch64 cross compiler must all be there) such a
# skip fails the test instead.
TOOLCHAIN_SKIP_REASONS = ("not built", "in this build", "needs nvcc", "needs clang", "needs aarch64")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ARG001
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("SNNTORCH_CLIF_STRICT_SKIPS") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if any(part in reason for part in TOOLCHAIN_SKIP_REASONS):
            report.outcome = "failed"
            report.longrepr = f"SNNTORCH_CLIF_STRICT_SKIPS=1, and this test would skip: {reason}"
