"""Sphinx configuration of the snntorch-clif documentation.

Build (warnings are errors)::

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

The tutorials are the committed notebooks in ``tutorials/`` (linked from
``docs/tutorials/``), rendered by nbsphinx with their stored outputs: nothing is executed
at build time. The API pages and the benchmark tables are generated while the site builds
(``docs/_ext/clif_docs.py``).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))

import snntorch_clif  # noqa: E402

project = "snntorch-clif"
author = "the snntorch-clif authors"
copyright = "2026, the snntorch-clif authors"
release = snntorch_clif.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "matplotlib.sphinxext.plot_directive",
    "myst_parser",
    "nbsphinx",
    "sphinx-mathjax-offline",  # serves MathJax from _static: the site works offline
    "clif_docs",
    "clif_benchmarks",  # the benchmark page's tables and figures (benchmarks/plot_results.py)
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"

# Curly quotes yes, but no dashes or ellipses: ``--max-seconds`` in running text stays two hyphens.
smartquotes_action = "q"

# --- HTML -----------------------------------------------------------------------------
html_theme = "furo"
html_title = f"snntorch-clif {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]

# --- autodoc --------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# --- notebooks: rendered from their committed outputs, never executed here --------------
nbsphinx_execute = "never"
nbsphinx_allow_errors = False
# The notebooks have no widgets: no require.js (nbsphinx would load it from a CDN; the site works offline).
nbsphinx_requirejs_path = ""
nbsphinx_prolog = r"""
{% set docname = env.doc2path(env.docname, base=None) | string %}
.. note::

   This page is the notebook ``tutorials/{{ docname.split('/')[-1] }}`` with its stored
   outputs. Open it in Jupyter, or run it top to bottom with
   ``.venv/bin/jupyter nbconvert --to notebook --execute tutorials/{{ docname.split('/')[-1] }}``;
   the test suite runs it under ``pytest --nbval`` and compares every output.
"""

# --- figures made at build time (matplotlib's plot directive) ---------------------------
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]

# nbsphinx converts Markdown cells with pandoc. Use the one on PATH, else the binary that
# the pypandoc-binary wheel ships (docs extra), so no system package is needed.
if shutil.which("pandoc") is None:
    try:
        import pypandoc

        os.environ["PATH"] = str(Path(pypandoc.get_pandoc_path()).parent) + os.pathsep + os.environ["PATH"]
    except (ImportError, OSError) as exc:  # pragma: no cover - reported by nbsphinx itself
        print(f"conf.py: no pandoc on PATH and pypandoc-binary unusable ({exc})", file=sys.stderr)
