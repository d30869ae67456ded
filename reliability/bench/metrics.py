"""How well an estimator did over repeated runs against a reference: the suite's metrics.

A reference is either exact (closed form, ``reference_se = 0``) or itself plain Monte Carlo with a
relative standard error; every run is compared with the same reference, so the reference's error is
counted in the interval check the way pystra's literature tests count a published value's error:
an interval "holds" the reference when the reference lies within the interval's log-normal
half-width widened by the reference's relative error.  The estimators' 95 % intervals are
log-normal (:func:`reliability.sampling.verdicts.lognormal_ci`); their 90 % intervals are derived
from the same log-scale standard error.

The gain over plain Monte Carlo is computed from the exact Bernoulli variance ``p (1 - p) / N``
for the same mean number of evaluations ``N`` as the runs: ``gain = p (1 - p) / (N MSE)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import special

from reliability.errors import ReliabilityError

__all__ = ["run_metrics", "interval_holds", "mc_evaluations"]

Z95 = 1.959963984540054
Z = {0.90: float(special.ndtri(0.95)), 0.95: Z95}


def mc_evaluations(p: float, relative_error: float) -> float:
    """Plain Monte Carlo's chips for relative standard error ``relative_error`` at probability ``p``
    (``(1 - p) / (relative_error^2 p)``, from the Bernoulli variance)."""
    return (1 - p) / (relative_error ** 2 * p)


def interval_holds(intervals: Sequence[tuple[float, float]], reference: float, reference_rel_se: float = 0.0,
                   level: float = 0.95) -> np.ndarray:
    """For each 95 % log-normal interval ``(lo, hi)``: does the ``level`` interval with the same centre
    and log-scale standard error, widened by the reference's relative error, hold ``reference``?"""
    if level not in Z:
        raise ReliabilityError(f"level={level!r}: one of {sorted(Z)}.")
    iv = np.asarray(intervals, dtype=float).reshape(-1, 2)
    lo, hi = iv[:, 0], iv[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where((lo > 0) & (hi > lo), np.log(hi / lo) / (2 * Z95), np.inf)
        centre = np.where(lo > 0, 0.5 * np.log(lo * hi), np.log(np.maximum(hi, 1e-300)))
    return np.abs(centre - math.log(reference)) <= Z[level] * np.sqrt(s ** 2 + reference_rel_se ** 2)


def run_metrics(estimates, std_errors, intervals, evaluations, reference: float, reference_se: float = 0.0, *,
                failures: int = 0, target_rel_error: float = 0.1) -> dict:
    """The metrics of repeated runs of one estimator on one event.

    Parameters
    ----------
    estimates, std_errors : sequences of float
        Each successful run's probability and its reported standard error (NaN where the estimator
        could give none; left out of ``se_ratio``).
    intervals : sequence of (lo, hi)
        Each run's 95 % interval.
    evaluations : sequence of int
        Chip evaluations each run spent (counted, not reported).
    reference, reference_se : float
        The reference probability and its standard error (0 for a closed form).
    failures : int
        Runs that raised, returned a non-finite or out-of-range value, or overspent the budget.
    target_rel_error : float
        For ``evaluations_for_target``: the evaluations the estimator needs for this relative RMSE
        (RMSE ~ 1/sqrt(N)).

    Returns
    -------
    dict
        ``runs``, ``failures``, ``failure_rate``, ``relative_bias`` (and its standard error),
        ``relative_rmse``, ``se_ratio`` (mean reported / empirical standard deviation),
        ``coverage_90`` and ``coverage_95`` (with the reference's error counted),
        ``under_estimation_rate``, ``mean_evaluations``, ``gain_over_mc``,
        ``evaluations_for_target`` and ``mc_evaluations_for_target``.
    """
    x = np.asarray(estimates, dtype=float)
    se = np.asarray(std_errors, dtype=float)
    ev = np.asarray(evaluations, dtype=float)
    R = int(x.size)
    if not (reference > 0 and math.isfinite(reference)) or reference_se < 0:
        raise ReliabilityError(f"reference={reference!r}, reference_se={reference_se!r}: a positive probability and "
                               f"a non-negative standard error.")
    if se.size != R or ev.size != R or len(intervals) != R:
        raise ReliabilityError(f"estimates ({R}), std_errors ({se.size}), intervals ({len(intervals)}) and "
                               f"evaluations ({ev.size}) must have one entry per run.")
    out = {"runs": R, "failures": int(failures),
           "failure_rate": failures / (R + failures) if R + failures else float("nan")}
    if R == 0:
        return out
    ratio = x / reference
    rel_err = ratio - 1
    sd = float(np.std(x, ddof=1)) if R > 1 else float("nan")
    rel_rmse = float(np.sqrt(np.mean(rel_err ** 2)))
    ref_rel = reference_se / reference
    n_mean = float(ev.mean())
    mse = float(np.mean((x - reference) ** 2))
    out.update({
        "relative_bias": float(rel_err.mean()),
        "relative_bias_se": float(np.std(ratio, ddof=1) / math.sqrt(R)) if R > 1 else float("nan"),
        "relative_rmse": rel_rmse,
        "se_ratio": float(np.nanmean(se) / sd) if R > 1 and sd > 0 and np.any(np.isfinite(se)) else float("nan"),
        "coverage_90": float(interval_holds(intervals, reference, ref_rel, 0.90).mean()),
        "coverage_95": float(interval_holds(intervals, reference, ref_rel, 0.95).mean()),
        "under_estimation_rate": float(np.mean(x < reference)),
        "mean_evaluations": n_mean,
        "gain_over_mc": float(reference * (1 - reference) / (n_mean * mse)) if mse > 0 else float("inf"),
        "evaluations_for_target": n_mean * (rel_rmse / target_rel_error) ** 2,
        "mc_evaluations_for_target": mc_evaluations(reference, target_rel_error),
    })
    return out

