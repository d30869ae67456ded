"""Bayesian device fitting (PyMC NUTS, ArviZ diagnostics): the maximum-likelihood model of
:mod:`reliability.fit.device` with every parameter given a posterior, so that the uncertainty of a
small campaign (few chips, few hundred devices per level) is carried into the tails.

:func:`fit_device_bayes` is the entry point.  The data are prepared in :mod:`.prepare`, the PyMC
model and its priors are in :mod:`.model`, the convergence checks in :mod:`.diagnostics`, the result
in :mod:`.result`.  PyMC and ArviZ (the ``bayes`` extra) are imported only when a fit runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time as _time
import warnings
from contextlib import contextmanager
from typing import Mapping

import numpy as np
import polars as pl

from reliability.errors import FitFailedError, ReliabilityError
from reliability.fit.bayes.diagnostics import THRESHOLDS, _check, _diagnose, _summary
from reliability.fit.bayes.model import BAYES_FAMILIES, PRIORS, _build_model
from reliability.fit.bayes.prepare import _prepare
from reliability.fit.bayes.result import BayesFitResult, _posterior_model, quiet_third_party_warnings, require_bayes_extra
from reliability.fit.effects import as_frame

__all__ = ["fit_device_bayes", "BayesFitResult", "FitFailedError", "PRIORS", "THRESHOLDS", "BAYES_FAMILIES"]

_LOG = logging.getLogger(__name__)


def _pymc_seed(rng):
    """``rng`` as PyMC's ``random_seed`` takes it: an int seed or None unchanged, a SeedSequence as a
    Generator, a Generator as is."""
    if rng is None or isinstance(rng, (int, np.integer, np.random.Generator)):
        return rng
    from reliability.streams import as_generator

    return as_generator(rng)


@contextmanager
def _quiet_pymc(verbose: bool):
    if verbose:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("pymc", "pymc.sampling", "pymc.stats.convergence", "pytensor")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            quiet_third_party_warnings()
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        for lg, lv in zip(loggers, old):
            lg.setLevel(lv)


# =====================================================================================================
# entry point
# =====================================================================================================
def fit_device_bayes(
    data,
    *,
    family: str = "normal",
    chip_gain: bool = True,
    chip_groups: Mapping[str, str] | None = None,
    stuck: str | bool = "auto",
    censor: tuple[float | None, float | None] | None = None,
    t0_s: float = 20.0,
    t_read_s: float = 250e-9,
    scale_degree: int = 2,
    draws: int = 2000,
    tune: int = 1000,
    chains: int = 2,
    cores: int | None = None,
    rng=0,
    target_accept: float = 0.95,
    thresholds: Mapping[str, float] | None = None,
    init: str = "jitter+adapt_diag",
    name: str = "fitted-bayes",
    progressbar: bool = False,
    verbose: bool = False,
    drop_outliers: bool = False,
    time_origin: str = "programming",
) -> BayesFitResult:
    """Fit a hierarchical Bayesian device model with NUTS and check its convergence.

    Parameters
    ----------
    data : MeasurementTable, polars.DataFrame or path
        Long-format measurements (see :mod:`reliability.data`), as for :func:`~reliability.fit.fit_device`.
    family : {"normal", "student_t"}
        Programming-variation family.  ``normal`` uses sufficient statistics (cost independent of the
        number of rows); ``student_t`` adds a tail-shape parameter ``df`` with its posterior (one
        likelihood term per first-read row).
    chip_gain : bool
        Model chip-to-chip gain (needs two or more chips; the data's ``chip`` column).
    chip_groups : mapping chip id -> wafer/lot id, optional
        Adds a wafer (or lot) level to the chip hierarchy.
    stuck, censor, t0_s, t_read_s
        As in :func:`~reliability.fit.fit_device` (stuck-at detection "auto"/True/False, measurement
        range in uS, drift reference time and read-noise time constant in s).
    scale_degree : int
        Degree of the polynomial (in the standardized target) that the log programming scale is
        pooled towards (default 2; at most ``levels - 3``; with 3 levels or fewer each level's scale
        has its own prior).
    draws, tune, chains, cores, target_accept
        NUTS settings: draws and tuning steps per chain, number of chains, worker processes
        (default ``min(chains, 2)``), target acceptance rate.
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        The sampler's randomness (SPEC 7; default 0).  An int seed makes the fit reproducible for a
        given number of chains; it also seeds the posterior predictive check of the tails.
    thresholds : mapping, optional
        Overrides of :data:`THRESHOLDS` (``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``,
        ``max_divergence_fraction``).
    init : str
        PyMC initialisation (default ``"jitter+adapt_diag"``: the standardized coordinates start
        within one standard error of the moment estimates; ``"jitter+adapt_full"`` adapts a dense
        mass matrix).
    name : str
        Name of the fitted model.
    progressbar, verbose : bool
        Show PyMC's progress bar / log messages (off by default).
    drop_outliers : bool
        As :func:`~reliability.fit.fit_device`: gross outliers raise an error naming them, or are
        excluded and named in the notes.
    time_origin : "programming" or "t0"
        What the data's ``time_s`` counts from, as for :func:`~reliability.fit.fit_device`.

    Returns
    -------
    BayesFitResult
        With ``model`` a :class:`~reliability.devices.posterior.PosteriorDeviceModel`.

    Raises
    ------
    FitFailedError
        The diagnostics failed (R-hat, ESS or divergences); carries the diagnostics table, what to
        try and the failed result.
    ReliabilityError
        Invalid arguments or data that cannot be fitted.
    MissingDependencyError
        PyMC or ArviZ (the ``bayes`` extra) is not installed.
    """
    require_bayes_extra()
    start = _time.perf_counter()
    if family not in BAYES_FAMILIES:
        raise ReliabilityError(f"family must be one of {BAYES_FAMILIES} for the Bayesian fit; got {family!r}.")
    for nm, v, lo in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1), ("scale_degree", scale_degree, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ReliabilityError(f"{nm} must be an integer >= {lo}; got {v!r}.")
    if not (0.5 <= float(target_accept) < 1.0):
        raise ReliabilityError(f"target_accept must be in [0.5, 1); got {target_accept!r}.")
    th = dict(THRESHOLDS)
    if thresholds:
        unknown = sorted(set(thresholds) - set(th))
        if unknown:
            raise ReliabilityError(f"unknown thresholds {unknown}; known: {sorted(th)}.")
        th.update({k: float(v) for k, v in thresholds.items()})
    if cores is None:
        cores = min(int(chains), 2, os.cpu_count() or 1)
    frame, source = as_frame(data, time_origin, t0_s)
    prep = _prepare(frame, source, family=family, censor=censor, stuck=stuck, chip_gain=chip_gain,
                    chip_groups=chip_groups, t0_s=t0_s, t_read_s=t_read_s, drop_outliers=drop_outliers)
    t_prep = _time.perf_counter() - start
    settings = {"family": family, "chip_gain": chip_gain, "chip_groups": dict(chip_groups) if chip_groups else None,
                "stuck": stuck, "censor": list(censor) if censor else None, "t0_s": t0_s, "t_read_s": t_read_s,
                "scale_degree": scale_degree, "draws": int(draws), "tune": int(tune), "chains": int(chains),
                "cores": int(cores), "time_origin": time_origin, "rng": rng if rng is None or isinstance(rng, (int, np.integer)) else type(rng).__name__, "target_accept": float(target_accept), "init": init, "name": name}

    import pymc as pm

    t1 = _time.perf_counter()
    with _quiet_pymc(verbose):
        model = _build_model(prep, family, scale_degree)
        with model:
            idata = pm.sample(draws=int(draws), tune=int(tune), chains=int(chains), cores=int(cores), random_seed=_pymc_seed(rng),
                              target_accept=float(target_accept), progressbar=progressbar,
                              compute_convergence_checks=False, init=init, quiet=not verbose)
    t_sample = _time.perf_counter() - t1
    table, diag = _diagnose(idata, th)
    ok, message, bad, tips = _check(table, diag, th, settings)
    summary = _summary(idata, table)
    notes = list(prep.notes)
    seconds = {"prepare": t_prep, "sample": t_sample, "total": _time.perf_counter() - start}
    _LOG.info("fit_device_bayes: prepare %.1f s, compile+sample %.1f s", t_prep, t_sample)
    if not ok:
        res = BayesFitResult(None, idata, summary, diag, False, message, tuple(notes), seconds, settings, prep.data)
        msg = (f"Bayesian fit failed its convergence checks: {message}. What to try: " + "; ".join(tips)
               + f". Failing parameters: {', '.join(bad.filter(pl.col('check') == 'parameter')['parameter'].head(8).to_list())}"
               + ("..." if bad.filter(pl.col('check') == 'parameter').height > 8 else ""))
        raise FitFailedError(msg, bad, tips, res)
    notes += [f"note: {t}" for t in tips]
    metadata = {"fit": {"method": "Bayesian hierarchical model (PyMC NUTS, nvcim-reliability.fit.bayes)",
                        "family": family, "n_rows": int(prep.data.x.size), "read_times_s": list(map(float, prep.data.times)),
                        "t0_s": t0_s, "time_origin_of_the_data": time_origin,
                        "n_chips": int(prep.data.chips.size), "success": True, "warnings": [],
                        "diagnostics": {k: v for k, v in diag.items() if k != "thresholds"}, "thresholds": th,
                        "priors": PRIORS, "settings": {k: v for k, v in settings.items() if k != "chip_groups"}}}
    post_model, more = _posterior_model(prep, idata, family, name, metadata)
    notes += more
    res = BayesFitResult(post_model, idata, summary, diag, True, message, tuple(notes), seconds, settings, prep.data)
    # a quick posterior predictive check of the tails (cached: res.ppc(50, rng=rng) returns it again)
    tab = res.ppc(n_draws=50, rng=rng)
    tails = tab.filter(pl.col("stat").is_in(["q1", "q99"]))
    if tails.height:
        out = int(((tails["observed"] < tails["pred_q5"]) | (tails["observed"] > tails["pred_q95"])).sum())
        note = (f"posterior predictive check: {out} of {tails.height} observed 1 %/99 % quantiles (per level and read "
                f"time) outside their 90 % predictive band (about 10 % expected)")
        if out >= 3 and out > 0.3 * tails.height:
            note = ("WARNING: " + note + "; the model does not reproduce the tails of these data (try "
                    "family='student_t', compare with res.compare, look at res.ppc_plot)")
            post_model.metadata["fit"]["warnings"].append(note)
        notes.append(note)
    # one verdict rule for every fit: converged (above) and the tail check the MLE fit is judged by
    tc = res.tail_check()
    if not tc.ok:
        note = ("WARNING: tail check failed: " + tc.describe() + "; tail estimates built on this model are suspect "
                "(try family='student_t', or the maximum-likelihood fit's mixture families)")
        notes.append(note)
        post_model.metadata["fit"]["warnings"].append(note)
        message = f"{message}; tail check failed (see notes)"
    else:
        notes.append("tail check passed: " + tc.describe())
    post_model.metadata["fit"]["success"] = tc.ok
    post_model.metadata["fit"]["tail_check"] = dataclasses.asdict(tc)
    seconds["total"] = _time.perf_counter() - start
    return dataclasses.replace(res, notes=tuple(notes), seconds=seconds, success=tc.ok, message=message)
