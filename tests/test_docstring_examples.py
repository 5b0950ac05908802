"""Every example in the package's docstrings runs and prints what it shows (the API page renders them)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import snntorch_clif

MODULES = sorted(
    f"snntorch_clif.{info.name}" for info in pkgutil.iter_modules(snntorch_clif.__path__) if info.name != "_C"
)
SLOW = {"snntorch_clif.demo", "snntorch_clif.recipes"}  # their examples train small networks


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in MODULES]
)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples of {name} failed"


def test_the_public_modules_have_examples() -> None:
    for name in ("neuron", "functional", "reference", "surrogate", "swap", "convert", "recurrent"):
        finder = doctest.DocTestFinder()
        examples = sum(len(t.examples) for t in finder.find(importlib.import_module(f"snntorch_clif.{name}")))
        assert examples >= 3, f"snntorch_clif.{name} shows {examples} docstring examples"
