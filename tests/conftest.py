"""Shared test fixtures and the two test lanes.

``python -m pytest -q`` (the README's command, run by ``.ci/run``) runs everything.  The fast lane
``python -m pytest -m "not slow" -q -n 2`` (two pytest-xdist workers) leaves out the tests marked
``@pytest.mark.slow`` (statistical coverage studies, Bayesian fits, end-to-end command-line and
fresh-interpreter runs) and takes under a minute on 2 cores.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def public_case():
    """The public benchmark case ``digits_mlp_s05`` shipped in the package (loaded once)."""
    from reliability.bench import load_case

    return load_case("digits_mlp_s05")
