"""Sphinx configuration of the toolkit's documentation (Markdown pages through myst-parser).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` from the repository root.
The results page (``results.md``) is generated from ``benchmarks/results/*.json`` by
``gen_results.py`` at every build; it is not kept in git.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import gen_results  # noqa: E402

gen_results.generate(ROOT / "benchmarks" / "results", HERE / "results.md")

project = "nvcim-reliability"
author = "nvcim-reliability developers"
copyright = "nvcim-reliability developers, BSD-3-Clause"

try:
    from reliability import __version__ as release
except Exception:  # the pages still build; api.md would then fail loudly on its own
    release = "unknown"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
smartquotes = False  # keep "--flag" and quotes in prose as written
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["dollarmath", "deflist"]
myst_heading_anchors = 3

napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"

try:
    import furo  # noqa: F401

    html_theme = "furo"
except ImportError:
    html_theme = "alabaster"
html_title = "nvcim-reliability"
