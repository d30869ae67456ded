"""The tail-accuracy benchmark suite: cases with references, any estimator plugged in, metrics
over repeated runs, a results file and its leaderboard.

- :mod:`~reliability.bench.catalog`: the cases.  Shipped folders with brute-force references
  (``digits_mlp_s05`` and the others :func:`available_cases` lists; each folder's ``case.json``
  says how its reference was made) and the exact cases of :mod:`reliability.bench.exact` (linear
  limit states and series systems in 10^3 to 10^5 dimensions, probabilities 1e-3 to 1e-7 in closed
  form), built on demand by name.
- :mod:`~reliability.bench.problem`: what an estimator is given (a problem whose evaluation counter
  enforces the budget).
- :mod:`~reliability.bench.plugins`: the registered estimators and any other one by import path.
- :mod:`~reliability.bench.runner`: repeated runs, one JSON Lines record each, failures recorded.
- :mod:`~reliability.bench.metrics` and :mod:`~reliability.bench.leaderboard`: the metrics and the
  table built from a results file.

>>> from reliability.bench import load_case
>>> case = load_case("digits_mlp_s05")
>>> p, se = case.reference_probability(526)    # P(count <= 526), about 1.4e-3
"""

from __future__ import annotations

from reliability.bench.catalog import CASES_DIR, Case, available_cases, default_events, load_case
from reliability.bench.exact import EXACT_CASES, ExactCase, exact_case

__all__ = ["Case", "ExactCase", "available_cases", "load_case", "exact_case", "default_events", "CASES_DIR",
           "EXACT_CASES"]
