"""Every tutorial notebook runs top to bottom under strict nbval: outputs are compared.

Each notebook runs in its own ``pytest --nbval`` subprocess (with the kernel of this very
environment), so a failing cell shows up here with nbval's diff of expected and actual
output. Volatile output is masked by ``tutorials/nbval_sanitize.cfg``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
SANITIZE = TUTORIALS / "nbval_sanitize.cfg"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["01_clif_neuron", "02_swap_leaky_for_clif", "03_why_clif_trains_better", "04_fast_clif",
            "05_coming_from_leaky"]


def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_tutorial_set_is_complete() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names == [n for n in EXPECTED if (TUTORIALS / f"{n}.ipynb").exists()]
    assert names[:2] == EXPECTED[:2]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_with_outputs(notebook: Path) -> None:
    cells = _code_cells(notebook)
    assert cells, "no code cells"
    missing = [i for i, c in enumerate(cells) if c["execution_count"] is None]
    assert not missing, f"code cells {missing} were never executed: commit the notebook with outputs"
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"not run top to bottom in one go: {counts}"
    images = sum("image/png" in o.get("data", {}) for c in cells for o in c["outputs"])
    assert images >= 1, "a tutorial shows at least one plot"
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"committed outputs contain errors: {errors[0].get('ename')}"


@pytest.mark.docs
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_passes_nbval(notebook: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "pytest", str(notebook),
        "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
        "--nbval-cell-timeout", "300",
        "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--no-header",
        "-o", "addopts=", "--rootdir", str(tmp_path),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"nbval failed for {notebook.name}:\n{tail}"
    assert " passed" in proc.stdout and "failed" not in proc.stdout, tail
