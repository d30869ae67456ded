"""Bayesian device fitting (PyMC NUTS, ArviZ diagnostics): the maximum-likelihood model of
:mod:`reliability.fit.device` with every parameter given a posterior, so that the uncertainty of a
small campaign (few chips, few hundred devices per level) is carried into the tails.

Model (mirrors the parts of :class:`~reliability.devices.model.DeviceModel`)
---------------------------------------------------------------------------
Levels ``k`` (distinct targets, or 16 quantile bins, as in the MLE path), chips ``c``, read times
``t_i`` (the first is ``t_1``), ``L(t) = log(max(t, t0)/t0)``, ``R(t) = log((t + t_read)/(2 t_read))``.

* **Programming** (family ``normal``, or ``student_t`` with a ``df`` shape): a programmable device
  at level ``k`` has ``g0 = T_k + loc_k + s_k z``.  ``loc_k`` is free per level; with four levels or
  more ``log s_k`` is partially pooled towards a polynomial of degree ``scale_degree`` in the
  standardized target ``u_k`` in [-1, 1] (``log s_k ~ N(b0 + b1 u_k + b2 u_k^2, tau_s)``): the scale
  is a smooth function of the target, and a level departs from the curve only as far as its data
  demand (level by level centred or non-centred, whichever has no funnel).
* **Chip to chip**: log gain ``a_c ~ N(0, sigma_chip)`` multiplies every reading of chip ``c``; with
  ``chip_groups`` (chip -> wafer or lot) ``a_c = w_{wafer(c)} + e_c``, ``w ~ N(0, sigma_wafer)``,
  ``e ~ N(0, sigma_chip)``, and the device model's ``ChipGain.sigma`` is
  ``sqrt(sigma_wafer^2 + sigma_chip^2)`` (a new chip from a new wafer).
* **Drift and read noise** (two or more read times): the drift exponent is hierarchical over
  devices, ``nu_d ~ N(nu_mean_k, nu_std_k)`` for the devices of level ``k`` (integrated out
  analytically), with per-level population parameters ``nu_mean_k``, ``nu_std_k`` and read-noise
  amplitude ``q_k``.  (Pooling these over levels was tried and dropped: every level's drift is
  pinned by hundreds of devices, and for profiles where most levels share one value, as the PCM
  preset's clipped drift, the level-to-level spread has a funnel NUTS cannot cross.)  With device
  ids the likelihood is that of the MLE path: per device, contrasts of log conductance across read
  times are multivariate normal with mean ``-nu_mean * dL`` and covariance
  ``nu_std^2 dL dL' + q^2 dR``.  Without ids: the mean and variance of log conductance per level and
  read time (free level offset and variance at the first read).  Without ids, or with two read
  times, the variance growth cannot be split reliably between drift spread and read noise (without
  ids three read times give three variances for three unknowns per level, and the posterior runs
  along a ridge down to ``q = 0``), so the growth is assigned to the drift spread and the read noise
  present at the first read stays in the programming spread (the MLE path does the same for two
  read times).
* **First read**: readings at ``t_1`` of the programmable devices of chip ``c`` at level ``k`` are
  ``exp(a_c) * (M_k e^{-nu_mean L1} + S z)`` where the spread adds the drift spread and read noise
  present at ``t_1`` to the programming spread (so ``s_k`` is the programming spread alone, as the
  MLE path's deflation makes it); censored readings (``censor``, and 0 uS) enter through the CDF.
* **Stuck-at faults**: devices stuck low/high with probabilities ``p_low``/``p_high``.  The stuck
  indicator is marginalised: the components are located by the MLE path's EM (they lie beyond six
  robust standard deviations of every level they are counted at, so the per-device responsibilities
  are 0 or 1 to machine precision and the mixture likelihood factorises into a binomial count per
  component times the bulk likelihood); levels whose bulk overlaps a stuck value carry no
  information about its probability and are left out of its count (as in the MLE path).  Stuck
  values and their spreads are kept at the EM estimates.

Sufficient statistics make the cost independent of the number of rows for the normal family
(per chip and level: count, mean, sum of squares, censored counts; per drift level: contrast mean and
scatter matrix).  The ``student_t`` family needs one term per first-read row.  Every free
parameter is sampled in standardized coordinates ``theta = (param - estimate) / standard_error``
(estimates from the MLE path's moment estimators); the priors below are stated on the parameters
themselves, so this only conditions the sampler (unit-scale posterior, short trajectories).

Priors (weakly informative; units stated; also in :data:`PRIORS` and every fitted model's metadata).
The prior on the level means is placed on the chip-averaged means ``M'_k = M_k exp(mean_c a_c)``;
under it the common-mode chip offset ``mean_c a_c`` is not informed by the data and keeps its prior
``N(0, sigma_chip^2 / n_chips)``: the honest uncertainty of a population mean seen through a few
chips, carried into ``loc`` and ``scale``.

Diagnostics are checked after every fit (R-hat, bulk and tail ESS, divergences; E-BFMI and tree-depth
saturation reported); a fit that fails raises :class:`FitFailedError` with the table and what to try.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time as _time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl
from scipy import special

from reliability.devices.components import ChipGain, Drift, ProgrammingVariation, ReadNoise, StuckAt
from reliability.devices.model import DeviceModel
from reliability.devices.posterior import PosteriorDeviceModel
from reliability.devices.state import Spline
from reliability.errors import ReliabilityError
from reliability.fit.effects import (
    ChipGainFit, estimate_chip_gains, estimate_drift, estimate_stuck, table_rows,
)

__all__ = ["fit_device_bayes", "BayesFitResult", "FitFailedError", "PRIORS", "THRESHOLDS", "BAYES_FAMILIES"]

BAYES_FAMILIES = ("normal", "student_t")

#: Convergence thresholds checked after every fit (override with ``thresholds=``).  ESS thresholds
#: are totals over chains (400 = 100 per chain for 4 chains, Vehtari et al. 2021, "Rank-normalization,
#: folding, and localization", Bayesian Analysis 16(2)); R-hat 1.01 from the same paper.
#: Divergent transitions: at most 0.1 % of the draws (4 of 4,000), each reported in the notes; more
#: means the sampler cannot explore part of the posterior and the fit fails.
THRESHOLDS = {"rhat_max": 1.01, "ess_bulk_min": 400.0, "ess_tail_min": 400.0, "max_divergence_fraction": 0.001}

#: The priors, with units.  ``range`` is max - min of the targets (uS), ``gmax`` the largest |target|.
PRIORS = {
    "loc_k": "Normal(0, 0.5 * max(range, gmax)) uS: offset of level k's chip-averaged mean from its target",
    "log scale b0": "Normal(log(0.05 * gmax), 3) log-uS (normal/student_t scale at the middle target)",
    "log scale b1, b2": "Normal(0, 1) log-units per half target range (slope, curvature of log scale)",
    "scale tau_s": "Gamma(2, rate 10) (mean 0.2) log-units: level-to-level departure of log scale from the "
                   "polynomial; zero-avoiding (Chung et al. 2013, Psychometrika 78) so that the hierarchy has no funnel",
    "log scale (<= 3 levels)": "Normal(log(0.05 * gmax), 3) log-uS per level",
    "df": "2 + Gamma(2, rate 0.1) (student_t only; mean 22, dimensionless)",
    "sigma_chip": "HalfNormal(0.1) log-units: chip-to-chip gain spread (10 % is a large chip-to-chip spread)",
    "sigma_wafer": "HalfNormal(0.1) log-units (with chip_groups)",
    "nu_mean_k": "Normal(0.05, 0.1) per level (dimensionless drift exponent, population mean of the devices' "
                 "exponents at level k)",
    "nu_std_k": "Gamma(2, rate 50) per level (mean 0.04, mode 0.02; dimensionless device-to-device spread of the "
                "exponent); zero-avoiding, so that a level whose data cannot tell a small spread from none has no "
                "long tail towards zero",
    "q_k": "Gamma(2, rate 50) per level (mean 0.04; relative 1/f read-noise amplitude); zero-avoiding",
    "no device ids: log nu_std, log q": "quadratic in standardized log target, c0 ~ Normal(log 0.02, 1.5), "
                                        "c1, c2 ~ Normal(0, 1)",
    "no device ids: level offset m0_k, log variance at the first read V1_k": "Normal(log T_k, 5) log-uS; "
                                                                              "Normal(log 0.01, 5) log(log-units^2)",
    "p_low, p_high": "Beta(0.5, 0.5) (Jeffreys), fraction of devices",
}

_LOG = logging.getLogger(__name__)
_LOG_2PI = math.log(2 * math.pi)


class FitFailedError(ReliabilityError):
    """The sampler's diagnostics failed: the posterior is not trustworthy and no model is returned.

    Attributes
    ----------
    diagnostics : polars.DataFrame
        One row per failing parameter (r_hat, ess_bulk, ess_tail) plus the sampler-level checks.
    suggestions : tuple of str
        What to try.
    result : BayesFitResult
        The failed fit (``success`` False, ``model`` None) for inspection: ``idata``, ``summary``.
    """

    def __init__(self, message: str, diagnostics: pl.DataFrame, suggestions: Sequence[str], result=None):
        super().__init__(message)
        self.diagnostics = diagnostics
        self.suggestions = tuple(suggestions)
        self.result = result


# =====================================================================================================
# data preparation (same preprocessing as the MLE path)
# =====================================================================================================
@dataclass
class _Data:
    """What a fit keeps of its data (saved beside the trace): rows, their indices, the design."""

    family: str
    source: str
    x: np.ndarray            # raw conductance (uS)
    target: np.ndarray       # target (uS)
    tidx: np.ndarray         # read-time index per row
    chip: np.ndarray         # chip index per row
    level: np.ndarray        # level index per row
    cens: np.ndarray         # -1 left-censored, +1 right-censored, 0 observed
    bulk_resp: np.ndarray    # EM probability that the row's device is programmable
    tbar: np.ndarray         # level target (mean target of the level's first-read rows), uS
    chips: np.ndarray        # chip ids (str)
    times: np.ndarray        # read times, s
    knots: np.ndarray        # drift levels' targets (empty without drift)
    lo: float
    hi: float                # nan: no upper censoring
    stuck: np.ndarray        # [p_low, p_high, g_low, g_high, spread_low, spread_high] EM estimates (nan: none)
    t0_s: float
    t_read_s: float

    def to_npz(self, path) -> None:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["family"] = np.array(self.family)
        d["source"] = np.array(self.source)
        d["chips"] = np.asarray(self.chips).astype(str)
        np.savez_compressed(path, **{k: np.asarray(v) for k, v in d.items()})

    @classmethod
    def from_npz(cls, path) -> "_Data":
        z = np.load(path, allow_pickle=False)
        kw = {}
        for f in fields(cls):
            v = z[f.name]
            if f.name in ("family", "source"):
                v = str(v)
            elif f.name in ("lo", "hi", "t0_s", "t_read_s"):
                v = float(v)
            kw[f.name] = v
        return cls(**kw)

    @property
    def first(self) -> np.ndarray:
        return self.tidx == 0

    def aligned(self) -> np.ndarray:
        """Readings moved to their level's target: ``x - (target - tbar[level])`` (exact for distinct
        levels; for binned targets the chip gain times the in-bin offset is neglected)."""
        return self.x - (self.target - self.tbar[self.level])


def _as_frame(data) -> tuple[pl.DataFrame, str]:
    from reliability.data import MeasurementTable, read_measurements

    if isinstance(data, MeasurementTable):
        return data.frame, data.source
    t = read_measurements(data)
    return t.frame, t.source


def _contrasts(k: int) -> np.ndarray:
    """Orthonormal contrasts (k x (k-1)), columns orthogonal to the ones vector."""
    q, _ = np.linalg.qr(np.column_stack([np.ones(k), np.eye(k)[:, : k - 1]]))
    return q[:, 1:k]


def _robust(v):
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med)))


@dataclass
class _Prep:
    data: _Data
    notes: list
    groups: dict            # first-read sufficient statistics per (chip, level)
    rows: dict              # first-read observed rows (student_t)
    init: dict              # estimates and standard errors for the standardized coordinates
    stuck_counts: dict      # name -> (k, n, EM estimate)
    drift: dict | None      # drift statistics
    L: np.ndarray
    R: np.ndarray
    wafer_of_chip: np.ndarray | None
    n_wafers: int
    cg: ChipGainFit


def _prepare(frame, source, *, family, censor, stuck, chip_gain, chip_groups, t0_s, t_read_s) -> _Prep:
    rows = table_rows(frame, source, censor)
    x_raw, T, t, n, chip, device_key = rows.x_raw, rows.T, rows.t, rows.n, rows.chip, rows.device_key
    level, centres, times, tidx, group = rows.level, rows.centres, rows.times, rows.tidx, rows.group
    n_devices, lo, hi, cens, notes = rows.n_devices, rows.lo, rows.hi, rows.cens, rows.notes
    K = centres.size

    chips, chip_idx = np.unique(chip, return_inverse=True)
    usable = cens == 0
    cg = ChipGainFit(None, {}, {}, float("nan"), "chip gain not estimated (disabled)")
    if chip_gain and chips.size >= 2:
        cg = estimate_chip_gains(x_raw, T, group, chip, usable)
        if cg.component is None:
            notes.append(cg.message + "; chip gain left out of the Bayesian model")
    elif chip_gain:
        cg = ChipGainFit(None, {}, {}, float("nan"), "one chip in the data: chip-to-chip gain not estimated")
        notes.append(cg.message)
    use_chips = cg.component is not None
    gain_row = np.array([cg.gains.get(c, 1.0) for c in chips])[chip_idx] if use_chips else np.ones(n)
    x = x_raw / gain_row
    lo_b = np.full(n, lo) / gain_row
    hi_b = (np.full(n, hi) / gain_row) if hi is not None else None
    if family == "lognormal":
        raise ReliabilityError("family 'lognormal' is not available in the Bayesian fit; use 'normal' or 'student_t'.")

    st = estimate_stuck(x, T, group, cens, lo_b, hi_b, device_key, n_devices, mode=stuck)
    bulk = st.bulk_resp >= 0.5
    notes.append(st.message)
    dr = estimate_drift(x, t, level, centres, bulk, cens, device_key, t0_s=t0_s, t_read_s=t_read_s)
    notes.append(dr.message)

    first = tidx == 0
    tbar = np.array([T[first & (level == k)].mean() if np.any(first & (level == k)) else np.nan for k in range(K)])
    if np.any(~np.isfinite(tbar)):
        missing = centres[~np.isfinite(tbar)]
        raise ReliabilityError(f"{source}: levels {missing.tolist()} uS have no reading at the first read time "
                               f"{times[0]:g} s; the Bayesian fit needs every level read at the first time.")

    # ---- drift statistics
    Lf = Drift(t0_s=t0_s).log_factor(times)
    Rf = ReadNoise(t_read_s=t_read_s).time_factor(times)
    drift = None
    if dr.drift is not None and dr.table:
        drift = _drift_stats(x_raw, level, tidx, times, Lf, Rf, bulk, cens, device_key, centres, dr.table)
        if drift is None:
            notes.append("drift: no level had enough complete devices for the Bayesian drift block; drift left out")
    knots = tbar[drift["levels"]] if drift is not None else np.zeros(0)
    if knots.size and np.any(np.diff(knots) <= 0):
        raise ReliabilityError("internal: drift level targets are not increasing")

    # ---- stuck-at counts (first read, informative levels only)
    stuck_arr = np.full(6, np.nan)
    stuck_counts: dict[str, tuple[float, float, float]] = {}
    if st.component is not None:
        s = st.component
        stuck_arr = np.array([s.p_low, s.p_high, s.g_low, s.g_high, s.spread_low, s.spread_high])
        r_st = 1.0 - st.bulk_resp
        near_low = np.abs(x - s.g_low) <= np.abs(x - s.g_high)
        for name, p_em, g_st, sp, is_comp in (("p_low", s.p_low, s.g_low, s.spread_low, near_low),
                                              ("p_high", s.p_high, s.g_high, s.spread_high, ~near_low)):
            if p_em <= 0:
                continue
            inf_rows = np.zeros(n, dtype=bool)
            for k in range(K):
                sel = first & (level == k)
                b = sel & bulk & (cens == 0)
                if np.sum(b) < 3:
                    continue
                med, mad = _robust(x[b])
                if abs(med - g_st) > 6.0 * max(mad, 1e-9) + 3 * sp:
                    inf_rows |= sel
            n_inf = float(np.sum(inf_rows))
            k_inf = float(np.sum(r_st[inf_rows & is_comp]))
            if n_inf < 1:
                notes.append(f"stuck-at: no level separates the {name[2:]} component from the bulk; its fraction "
                             f"is kept at the EM estimate {p_em:.3g}")
                continue
            stuck_counts[name] = (k_inf, n_inf, p_em)
        if stuck_counts:
            notes.append("stuck-at fractions: " + ", ".join(
                f"{k}: {v[0]:.1f} of {v[1]:.0f} first-read devices on informative levels" for k, v in stuck_counts.items()))

    data = _Data(family=family, source=source, x=x_raw, target=T, tidx=tidx.astype(np.int64),
                 chip=chip_idx.astype(np.int64), level=level.astype(np.int64), cens=cens, bulk_resp=st.bulk_resp,
                 tbar=tbar, chips=chips.astype(str), times=times, knots=knots, lo=lo,
                 hi=float("nan") if hi is None else hi, stuck=stuck_arr, t0_s=float(t0_s), t_read_s=float(t_read_s))

    # ---- first-read sufficient statistics per (chip, level), bulk devices only
    C = chips.size if use_chips else 1
    cidx = chip_idx if use_chips else np.zeros(n, dtype=int)
    xa = data.aligned()
    sel_first = first & bulk
    gi = cidx * K + level
    obs = sel_first & (cens == 0)
    n_obs = np.bincount(gi[obs], minlength=C * K).astype(float)
    s1 = np.bincount(gi[obs], weights=xa[obs], minlength=C * K)
    mean = np.divide(s1, n_obs, out=np.zeros_like(s1), where=n_obs > 0)
    ss = np.bincount(gi[obs], weights=(xa[obs] - mean[gi[obs]]) ** 2, minlength=C * K)
    n_left = np.bincount(gi[sel_first & (cens < 0)], minlength=C * K).astype(float)
    n_right = np.bincount(gi[sel_first & (cens > 0)], minlength=C * K).astype(float)
    present = (n_obs + n_left + n_right) > 0
    gid = np.nonzero(present)[0]
    groups = {"chip": gid // K, "level": gid % K, "n": n_obs[gid], "mean": mean[gid], "ss": ss[gid],
              "n_left": n_left[gid], "n_right": n_right[gid]}
    for k in range(K):
        if n_obs[k::K].sum() < 2:
            raise ReliabilityError(f"{source}: level {tbar[k]:.4g} uS has {int(n_obs[k::K].sum())} uncensored first-read "
                                   "readings of programmable devices; the Bayesian fit needs at least 2 per level.")
    rows = {"x": xa[obs], "chip": cidx[obs], "level": level[obs]}

    # ---- wafer/lot grouping
    wafer_of_chip = None
    n_wafers = 0
    if chip_groups is not None and use_chips:
        missing = [c for c in chips if str(c) not in chip_groups]
        if missing:
            raise ReliabilityError(f"chip_groups has no wafer/lot for chips {missing[:5]}; give every chip id of the data.")
        w_ids, wafer_of_chip = np.unique([str(chip_groups[str(c)]) for c in chips], return_inverse=True)
        n_wafers = int(w_ids.size)
        if n_wafers < 2:
            notes.append("chip_groups: one wafer/lot only; the wafer level is left out")
            wafer_of_chip = None
            n_wafers = 0

    init = _initial_estimates(data, groups, rows, cg if use_chips else None, dr, drift, Lf, Rf, C, K)
    return _Prep(data, notes, groups, rows, init, stuck_counts, drift, Lf, Rf, wafer_of_chip, n_wafers, cg)


def _drift_stats(x, level, tidx, times, L, R, bulk, cens, device_key, centres, table):
    """Sufficient statistics of log conductance for the drift block, for the levels the MLE path
    estimated (same selection: positive target, at most 5 % non-positive readings, >= 10 devices)."""
    nt = times.size
    has_q = nt >= 3
    lv_ids = [int(np.argmin(np.abs(centres - tg))) for tg in table["target"]]
    out_levels, est = [], {k: [] for k in ("nu_mean", "nu_mean_se", "nu_std", "nu_std_se", "q", "q_se")}
    if device_key is not None:
        Kc = _contrasts(nt)
        a = L @ Kc
        Dm = Kc.T @ np.diag(R) @ Kc
        st = {"n": [], "cbar": [], "S": []}
        for row, k in enumerate(lv_ids):
            sel = (level == k) & bulk & (cens == 0) & (x > 0)
            keys = device_key[sel]
            uk, inv = np.unique(keys, return_inverse=True)
            Y = np.full((uk.size, nt), np.nan)
            Y[inv, tidx[sel]] = np.log(x[sel])
            Y = Y[np.all(np.isfinite(Y), axis=1)]
            if Y.shape[0] < 10:
                continue
            Cm = Y @ Kc
            cbar = Cm.mean(axis=0)
            d = Cm - cbar
            st["n"].append(float(Y.shape[0]))
            st["cbar"].append(cbar)
            st["S"].append(d.T @ d)
            out_levels.append(k)
            for key in est:
                est[key].append(float(table[key][row]))
        if not out_levels:
            return None
        n_ = np.array(st["n"])
        cbar = np.array(st["cbar"])
        S = np.array(st["S"])
        res = {"ids": True, "levels": np.array(out_levels), "n": n_, "has_q": has_q, "m": nt - 1}
        if has_q:
            Dinv = np.linalg.inv(Dm)
            w = Dinv @ a
            res.update(gamma=float(a @ w), logdetD=float(np.linalg.slogdet(Dm)[1]),
                       tS=np.einsum("ij,kji->k", Dinv, S), wSw=np.einsum("i,kij,j->k", w, S, w),
                       cDc=np.einsum("ki,ij,kj->k", cbar, Dinv, cbar), wc=cbar @ w)
        else:
            res.update(a=float(a[0]), S1=S[:, 0, 0], cbar1=cbar[:, 0])
    else:
        st = {"n": [], "ybar": [], "v": []}
        for row, k in enumerate(lv_ids):
            ns, ys, vs = [], [], []
            for i in range(nt):
                sel = (level == k) & (tidx == i) & bulk & (cens == 0) & (x > 0)
                y = np.log(x[sel])
                ns.append(float(y.size))
                ys.append(float(y.mean()) if y.size else 0.0)
                vs.append(float(y.var(ddof=1)) if y.size > 1 else 0.0)
            if min(ns) < 10:
                continue
            st["n"].append(ns)
            st["ybar"].append(ys)
            st["v"].append(vs)
            out_levels.append(k)
            for key in est:
                est[key].append(float(table[key][row]))
        if not out_levels:
            return None
        # without device ids the split of the variance growth between drift spread and read noise is
        # not identified well enough to sample (a ridge down to q = 0): the growth is the drift spread's
        res = {"ids": False, "levels": np.array(out_levels), "n": np.array(st["n"]), "ybar": np.array(st["ybar"]),
               "v": np.array(st["v"]), "has_q": False}
    res["est"] = {k: np.array(v, dtype=float) for k, v in est.items()}
    return res


def _tobit(y, n_left, lo, n_right, hi, m0, s0):
    """Censored-normal ML estimate ``(mean, se, sd, se of log sd)`` (None when it fails)."""
    from scipy import optimize

    def nll(th):
        m, ls = th
        sd = math.exp(ls)
        out = -np.sum(_normal_lp(y, m, sd))
        if n_left:
            out -= n_left * special.log_ndtr((lo - m) / sd)
        if n_right and np.isfinite(hi):
            out -= n_right * special.log_ndtr((m - hi) / sd)
        return out

    res = optimize.minimize(nll, np.array([m0, math.log(max(s0, 1e-12))]), method="Nelder-Mead",
                            options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    if not res.success:
        return None
    m, ls = res.x
    h = np.array([max(abs(m) * 1e-4, 1e-6 * math.exp(ls)), 1e-4])
    H = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h[i], np.eye(2)[j] * h[j]
            H[i, j] = (nll(res.x + ei + ej) - nll(res.x + ei - ej) - nll(res.x - ei + ej) + nll(res.x - ei - ej)) / (4 * h[i] * h[j])
    try:
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.diag(cov) > 0):
        return None
    return float(m), float(math.sqrt(cov[0, 0])), float(math.exp(ls)), float(math.sqrt(cov[1, 1]))


def _initial_estimates(data: _Data, groups, rows, cg, dr, drift, L, R, C, K) -> dict:
    """Moment estimates and rough standard errors: centre and scale of the sampler's coordinates."""
    init: dict[str, Any] = {}
    tbar = data.tbar
    gmax = float(max(np.max(np.abs(tbar)), 1e-9))
    L1, R1 = float(L[0]), float(R[0])
    # drift (per drift level), mapped to block-A levels
    if drift is not None:
        e = drift["est"]
        nu = e["nu_mean"]
        nu_se = np.clip(np.nan_to_num(e["nu_mean_se"], nan=0.01), 1e-5, 0.05)
        nstd = np.maximum(np.abs(e["nu_std"]), 2e-3)
        lns_se = np.clip(np.nan_to_num(e["nu_std_se"], nan=0.0) / nstd, 0.02, 1.0)
        q = np.maximum(np.abs(e["q"]), 2e-3)
        lq_se = np.clip(np.nan_to_num(e["q_se"], nan=0.0) / q, 0.02, 1.0)
        init["drift"] = {"nu": nu, "nu_se": nu_se, "lns": np.log(nstd), "lns_se": lns_se, "lq": np.log(q), "lq_se": lq_se}
        if not drift["ids"]:
            yb, v, nn = drift["ybar"], drift["v"], drift["n"]
            # effective drift spread: least-squares slope of the variance growth on L^2 - L1^2
            dL2 = L ** 2 - L1 ** 2
            a_eff = np.maximum(((v - v[:, :1]) @ dL2) / max(float(dL2 @ dL2), 1e-12), 4e-6)
            nstd = np.sqrt(a_eff)
            v_se = v * np.sqrt(2.0 / np.maximum(nn - 1, 1))
            lns_se = np.clip(0.5 * np.sqrt(v_se[:, 0] ** 2 + v_se[:, -1] ** 2) / (a_eff * max(dL2[-1], 1e-12)), 0.02, 1.0)
            init["drift"].update(lns=np.log(nstd), lns_se=lns_se)
            m0 = yb[:, 0] + nu * L1
            init["drift"].update(m0=m0, m0_se=np.sqrt(v[:, 0] / nn[:, 0]) + 1e-6, lv1=np.log(np.maximum(v[:, 0], 1e-12)),
                                 lv1_se=np.sqrt(2.0 / nn[:, 0]) + 0.01)
        knots = tbar[drift["levels"]]
        map_k = np.array([int(np.argmin(np.abs(knots - tb))) for tb in tbar])
        nuK = nu[map_k]
        e_nu = nstd[map_k] ** 2 * L1 ** 2
        e_q = q[map_k] ** 2 * R1 if drift["has_q"] else np.zeros(K)
        extraK = e_nu + e_q
        # standard error of the extra variance (relative), from those of log nu_std and log q
        extra_se = np.sqrt((2 * e_nu * lns_se[map_k]) ** 2 + ((2 * e_q * lq_se[map_k]) if drift["has_q"] else 0.0) ** 2)
        D1 = np.exp(-nuK * L1)
        init["map_k"] = map_k
    else:
        D1 = np.ones(K)
        extraK = np.zeros(K)
        extra_se = np.zeros(K)
        init["map_k"] = np.zeros(K, dtype=int)
    # chip gains
    chip_g = np.ones(C)
    if cg is not None:
        chip_g = np.array([cg.gains.get(c, 1.0) for c in data.chips])
    g_ch, g_lv, n_g, m_g, ss_g = groups["chip"], groups["level"], groups["n"], groups["mean"], groups["ss"]
    gn = chip_g[g_ch]
    m1 = np.zeros(K)
    v1 = np.zeros(K)
    nk = np.zeros(K)
    for k in range(K):
        s = (g_lv == k) & (n_g > 0)
        w = n_g[s]
        m1[k] = np.sum(w * m_g[s] / gn[s]) / w.sum()
        dof = max(np.sum(np.maximum(w - 1, 0)), 1.0)
        v1[k] = max(np.sum(ss_g[s] / gn[s] ** 2) / dof, 1e-12 * (abs(m1[k]) + 1) ** 2)
        nk[k] = w.sum()
    m1_se = np.sqrt(v1 / nk)
    v1_se = v1 * np.sqrt(2.0 / nk)
    # censored levels: censored-normal (Tobit) estimates, as the moments of the uncensored rows are biased
    n_left = np.bincount(g_lv, weights=groups["n_left"], minlength=K)
    n_right = np.bincount(g_lv, weights=groups["n_right"], minlength=K)
    for k in np.nonzero(n_left + n_right > 0)[0]:
        sel = rows["level"] == k
        y = rows["x"][sel] / chip_g[rows["chip"][sel]]
        hi_b = data.hi / float(np.mean(chip_g)) if np.isfinite(data.hi) else np.inf
        est = _tobit(y, n_left[k], data.lo, n_right[k], hi_b, m1[k], math.sqrt(v1[k]))
        if est is not None:
            m1[k], m1_se[k], sd_k, lsd_se = est
            v1[k] = sd_k ** 2
            v1_se[k] = 2 * v1[k] * lsd_se
            nk[k] += n_left[k] + n_right[k]
    M = m1 / D1
    s2 = np.maximum(v1 - (m1 ** 2 + v1) * extraK, 0.05 * v1)
    s_hat = np.sqrt(s2) / D1
    init["loc"] = M - tbar
    init["loc_se"] = m1_se / D1 + 1e-9 * (gmax + 1)
    init["ls"] = np.log(s_hat)
    # se of log s: the sample variance's and the subtracted drift/read-noise variance's (delta method)
    var_s2 = v1_se ** 2 * (1 - extraK) ** 2 + ((m1 ** 2 + v1) * extra_se) ** 2
    init["ls_se"] = np.clip(0.5 * np.sqrt(var_s2) / s2, 1.0 / np.sqrt(2 * nk), 3.0)
    init["gmax"] = gmax
    init["range"] = float(np.ptp(tbar)) if K > 1 else 0.0
    lo_t, hi_t = float(np.min(tbar)), float(np.max(tbar))
    u = (tbar - 0.5 * (lo_t + hi_t)) / (0.5 * (hi_t - lo_t)) if hi_t > lo_t else np.zeros(K)
    init["u"] = u
    # chips: centred log gains and their standard error
    if cg is not None:
        lg = np.log(chip_g)
        lg -= lg.mean()
        prec = np.zeros(C)
        for c in range(C):
            s = (g_ch == c) & (n_g > 1)
            sd = np.sqrt(np.maximum(ss_g[s] / np.maximum(n_g[s] - 1, 1), 1e-300))
            prec[c] = np.sum(n_g[s] * (m_g[s] / sd) ** 2)
        se_a = float(1.0 / np.sqrt(np.median(prec))) if np.median(prec) > 0 else 0.01
        se_a = float(np.clip(se_a, 1e-5, 0.05))
        Q = _contrasts(C)
        init["chip"] = {"u": Q.T @ lg, "se": se_a, "Q": Q, "lsig": math.log(max(float(np.std(lg, ddof=1)), 2 * se_a, 5e-3)),
                        "lsig_se": 1.0 / math.sqrt(2 * max(C - 1, 1))}
    return init


# =====================================================================================================
# the PyMC model
# =====================================================================================================
def _normal_lp(x, mu, sd):
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * _LOG_2PI


def _matvec(A: np.ndarray, v):
    """``A @ v`` for a small constant matrix, as elementwise products and a sum: without a BLAS
    library PyTensor's matrix-vector product falls back to Python and dominates the gradient."""
    import pytensor.tensor as pt

    return pt.sum(np.asarray(A, dtype=float) * v[None, :], axis=1)


def _build_model(p: _Prep, family: str, scale_degree: int):
    import pymc as pm
    import pytensor.tensor as pt
    from pymc.distributions.dist_math import normal_lcdf

    d = p.data
    init = p.init
    K = d.tbar.size
    use_chips = "chip" in init
    C = d.chips.size if use_chips else 1
    drift = p.drift
    L1, R1 = float(p.L[0]), float(p.R[0])
    coords = {"level": d.tbar.tolist()}
    if use_chips:
        coords["chip"] = [str(c) for c in d.chips]
    if drift is not None:
        coords["drift_level"] = d.knots.tolist()

    def nlp(x, mu, sd):  # normal log density without the constant
        return -0.5 * ((x - mu) / sd) ** 2 - pt.log(sd)

    def half_normal_log(logv, scale):  # HalfNormal(scale) on v = exp(logv), with the log Jacobian
        return -0.5 * (pt.exp(logv) / scale) ** 2 + logv

    def gamma2_log(logv, mean):  # Gamma(2, rate 2/mean) on v = exp(logv) (zero-avoiding), log Jacobian
        return 2.0 * logv - 2.0 * pt.exp(logv) / mean

    with pm.Model(coords=coords) as model:
        def free(name, est, se, dims=None):
            est = np.asarray(est, dtype=float)
            se = np.asarray(se, dtype=float)
            if dims is not None:
                z = pm.Flat(name + "_z", dims=dims)
            else:
                z = pm.Flat(name + "_z", shape=est.shape)
            return est + se * z

        def pooled(name, est, se, mean_expr, mean_hat, tau_mean, min_tau, dims):
            """A per-level vector ``x_j ~ N(mean_j, tau)`` partially pooled towards ``mean_expr``.

            Level by level centred where the data pin the level (standard error below a quarter of the
            spread ``tau`` between levels) and non-centred (``x_j = mean_j + tau * eta_j``) where they
            do not, so that neither kind of level makes a funnel.  Returns ``(x, log prior)``."""
            est = np.asarray(est, dtype=float)
            se = np.asarray(se, dtype=float)
            n_ = est.size
            r = est - mean_hat
            tau_hat = float(np.sqrt(max(np.var(r, ddof=1) - np.mean(se ** 2), min_tau ** 2)))
            # robust spread (MAD) decides the parameterization: one outlying level must not make the
            # others centred when most levels agree within their standard errors
            mad = 1.4826 * float(np.median(np.abs(r - np.median(r))))
            tau_rob = float(np.sqrt(max(mad ** 2 - float(np.median(se)) ** 2, min_tau ** 2)))
            ltau = free(name + "_log_tau", math.log(tau_hat), 0.7)
            tau = pt.exp(ltau)
            prior = gamma2_log(ltau, tau_mean)
            nc = se > 0.25 * min(tau_hat, tau_rob)
            x = pt.zeros(n_)
            if np.any(~nc):
                ic = np.nonzero(~nc)[0]
                xc = free(name + "_c", est[ic], se[ic])
                x = pt.set_subtensor(x[ic], xc)
                prior = prior + pt.sum(nlp(xc, mean_expr[ic], tau))
            if np.any(nc):
                inc = np.nonzero(nc)[0]
                eta = free(name + "_eta", (est[inc] - mean_hat[inc]) / tau_hat, np.minimum(se[inc] / tau_hat, 1.0))
                x = pt.set_subtensor(x[inc], mean_expr[inc] + tau * eta)
                prior = prior + pt.sum(-0.5 * eta ** 2)
            pm.Deterministic(name + "_tau", tau)
            return x, prior

        def per_level(name, est, se, prior_mean, prior_sd, dims):
            """Per-level vector with independent weakly informative priors ``N(prior_mean, prior_sd)``."""
            x = free(name, est, se, dims=dims)
            pm.Potential(name + "_prior", pt.sum(nlp(x, prior_mean, prior_sd)))
            return x

        def per_level_spread(name, est, se, mean, dims):
            """Per-level log of a spread with independent zero-avoiding ``Gamma(2, rate 2/mean)`` priors on
            the spread: no long tail towards zero where the data cannot tell a small spread from none."""
            x = free(name, est, se, dims=dims)
            pm.Potential(name + "_prior", pt.sum(gamma2_log(x, mean)))
            return x

        # ---- programming: level locations and the smooth log scale
        loc_obs = free("loc_obs", init["loc"], init["loc_se"], dims="level")
        loc_sd = 0.5 * max(init["range"], init["gmax"])
        pm.Potential("loc_prior", pt.sum(nlp(loc_obs, 0.0, loc_sd)))
        b0_mean = math.log(0.05 * init["gmax"])
        if K >= 4:  # at least two residual degrees of freedom for the level-to-level spread tau
            deg = int(min(scale_degree, K - 3))
            V = np.vander(init["u"], deg + 1, increasing=True)
            W = 1.0 / init["ls_se"]
            b_hat, *_ = np.linalg.lstsq(V * W[:, None], init["ls"] * W, rcond=None)
            resid = init["ls"] - V @ b_hat
            tau_hat = max(float(np.std(resid)), 0.02)
            cov = np.linalg.pinv((V * W[:, None] ** 2).T @ V) + tau_hat ** 2 * np.linalg.pinv(V.T @ V)
            b_se = np.maximum(np.sqrt(np.abs(np.diag(cov))), 0.01)
            b = free("scale_coef", b_hat, b_se)
            ls, prior_ls = pooled("scale", init["ls"], init["ls_se"], _matvec(V, b), V @ b_hat, 0.2, 0.02, "level")
            prior_b = nlp(b[0], b0_mean, 3.0) + (pt.sum(nlp(b[1:], 0.0, 1.0)) if deg > 0 else 0.0)
            pm.Potential("scale_prior", prior_b + prior_ls)
        else:
            ls = free("log_scale_obs", init["ls"], init["ls_se"], dims="level")
            pm.Potential("scale_prior", pt.sum(nlp(ls, b0_mean, 3.0)))
        vz = 1.0
        df = None
        if family == "student_t":
            ld = free("log_df_minus_2", math.log(8.0), 0.5)
            df = pm.Deterministic("df", 2.0 + pt.exp(ld))
            pm.Potential("df_prior", 2.0 * ld - 0.1 * pt.exp(ld))  # Gamma(2, 0.1) on df - 2, log Jacobian
            vz = df / (df - 2.0)

        # ---- chips
        if use_chips:
            ci = init["chip"]
            Q = ci["Q"]
            u = free("chip_u", ci["u"], ci["se"])
            atil = _matvec(Q, u)
            if p.wafer_of_chip is None:
                lsig = free("log_chip_sigma", ci["lsig"], ci["lsig_se"])
                sig = pt.exp(lsig)
                pm.Potential("chip_prior", half_normal_log(lsig, 0.1) - (C - 1) * lsig - pt.sum(u ** 2) / (2 * sig ** 2))
                zeta = pm.Normal("chip_common_z", 0.0, 1.0)
                abar = sig * zeta / math.sqrt(C)
                pm.Deterministic("chip_sigma", sig)
            else:
                # a = atil + abar ~ N(0, sigma_chip^2 I + sigma_wafer^2 Z Z'): per wafer block
                # sigma_c^2 I + sigma_w^2 11', inverted and its determinant taken in closed form;
                # the common mode abar = (sigma_total / sqrt(C)) zeta is a free coordinate (with its Jacobian)
                Z = np.eye(p.n_wafers)[p.wafer_of_chip]
                n_w = Z.sum(axis=0)
                lsw = free("log_wafer_sigma", ci["lsig"], 0.7)
                lsc = free("log_chip_within_sigma", ci["lsig"], 0.7)
                sw, sc = pt.exp(lsw), pt.exp(lsc)
                k = pt.sqrt(sw ** 2 + sc ** 2) / math.sqrt(C)
                zeta = free("chip_common", 0.0, 1.0)
                abar = k * zeta
                a_all = atil + abar
                sums = _matvec(Z.T, a_all)
                blk = sc ** 2 + n_w * sw ** 2
                quad = (pt.sum(a_all ** 2) - pt.sum(sw ** 2 * sums ** 2 / blk)) / sc ** 2
                logdet = (C - p.n_wafers) * 2 * lsc + pt.sum(pt.log(blk))
                pm.Potential("chip_prior", half_normal_log(lsw, 0.1) + half_normal_log(lsc, 0.1)
                             - 0.5 * logdet - 0.5 * quad + pt.log(k))
                pm.Deterministic("wafer_sigma", sw)
                pm.Deterministic("chip_within_sigma", sc)
                pm.Deterministic("chip_sigma", pt.sqrt(sw ** 2 + sc ** 2))
            pm.Deterministic("chip_offset", atil, dims="chip")
            pm.Deterministic("chip_log_gain", atil + abar, dims="chip")
        else:
            atil = pt.zeros(1)
            abar = 0.0

        # ---- drift and read noise
        if drift is not None:
            di = init["drift"]
            nu = per_level("nu_mean", di["nu"], di["nu_se"], 0.05, 0.1, "drift_level")
            lns = per_level_spread("log_nu_std", di["lns"], di["lns_se"], 0.04, "drift_level")
            alpha = pt.exp(2 * lns)
            pm.Deterministic("nu_mean", nu, dims="drift_level")
            pm.Deterministic("nu_std", pt.exp(lns), dims="drift_level")
            if drift["has_q"]:
                lq = per_level_spread("log_q", di["lq"], di["lq_se"], 0.04, "drift_level")
                beta = pt.exp(2 * lq)
                pm.Deterministic("q", pt.exp(lq), dims="drift_level")
            else:
                beta = None
            if drift["ids"]:
                n_ = drift["n"]
                if drift["has_q"]:
                    m = drift["m"]
                    g = drift["gamma"]
                    logdet = m * pt.log(beta) + drift["logdetD"] + pt.log1p(alpha * g / beta)
                    kap = alpha / (beta + alpha * g)
                    tr = (drift["tS"] - kap * drift["wSw"]) / beta
                    wr = drift["wc"] + nu * g
                    quad = (drift["cDc"] + 2 * nu * drift["wc"] + nu ** 2 * g - kap * wr ** 2) / beta
                    ll_drift = pt.sum(-0.5 * n_ * logdet - 0.5 * tr - 0.5 * n_ * quad)
                else:
                    a0 = drift["a"]
                    var = alpha * a0 ** 2
                    ll_drift = pt.sum(-0.5 * n_ * pt.log(var)
                                      - (drift["S1"] + n_ * (drift["cbar1"] + nu * a0) ** 2) / (2 * var))
            else:
                m0 = free("log_level_t0_obs", di["m0"], di["m0_se"], dims="drift_level")
                # nuisances: level offset at t0 and variance of log conductance at the first read
                # (the latter, not the variance at t0, so that it is not confounded with the read noise)
                lv1 = free("log_var_first_obs", di["lv1"], di["lv1_se"], dims="drift_level")
                pm.Potential("level_t0_prior", pt.sum(nlp(m0, np.log(np.maximum(d.knots, 1e-12)), 5.0))
                             + pt.sum(nlp(lv1, math.log(0.01), 5.0)))
                Vt = pt.exp(lv1)[:, None] + alpha[:, None] * (p.L ** 2 - p.L[0] ** 2)[None, :]
                if beta is not None:
                    Vt = Vt + beta[:, None] * (p.R - p.R[0])[None, :]
                nn, yb, vv = drift["n"], drift["ybar"], drift["v"]
                resid = yb - m0[:, None] + nu[:, None] * p.L[None, :]
                ll_drift = pt.sum(-0.5 * nn * pt.log(Vt) - ((nn - 1) * vv + nn * resid ** 2) / (2 * Vt))
            pm.Potential("loglik_drift", ll_drift)
            mk = init["map_k"]
            nuK = nu[mk]
            extra = alpha[mk] * L1 ** 2 + (beta[mk] * R1 if beta is not None else 0.0)
            D1 = pt.exp(-nuK * L1) if L1 > 0 else pt.ones(K)
        else:
            extra = pt.zeros(K)
            D1 = pt.ones(K)

        # ---- first read
        M1 = (d.tbar + loc_obs) * D1
        s1sq = pt.exp(2 * ls) * D1 ** 2
        S1 = pt.sqrt(s1sq + (M1 ** 2 + s1sq * vz) * extra / vz)
        pm.Deterministic("first_read_mean", M1, dims="level")
        pm.Deterministic("first_read_sd", S1, dims="level")
        G = p.groups
        gain = pt.exp(atil[G["chip"]]) if use_chips else 1.0
        mu_g = gain * M1[G["level"]]
        sd_g = gain * S1[G["level"]]
        terms = []
        if family == "normal":
            terms.append(pt.sum(-G["n"] * pt.log(sd_g) - (G["ss"] + G["n"] * (G["mean"] - mu_g) ** 2) / (2 * sd_g ** 2)))
        else:
            r = p.rows
            gr = pt.exp(atil[r["chip"]]) if use_chips else 1.0
            terms.append(pt.sum(pm.logp(pm.StudentT.dist(nu=df, mu=gr * M1[r["level"]], sigma=gr * S1[r["level"]]),
                                        r["x"])))
        left = np.nonzero(G["n_left"] > 0)[0]
        if left.size:
            if family == "normal":
                terms.append(pt.sum(G["n_left"][left] * normal_lcdf(mu_g[left], sd_g[left], d.lo)))
            else:
                terms.append(pt.sum(G["n_left"][left] * pm.logcdf(pm.StudentT.dist(nu=df, mu=mu_g[left], sigma=sd_g[left]),
                                                                   d.lo)))
        right = np.nonzero(G["n_right"] > 0)[0]
        if right.size:
            if family == "normal":
                terms.append(pt.sum(G["n_right"][right] * normal_lcdf(-mu_g[right], sd_g[right], -d.hi)))
            else:
                terms.append(pt.sum(G["n_right"][right] * pm.logcdf(pm.StudentT.dist(nu=df, mu=-mu_g[right],
                                                                                      sigma=sd_g[right]), -d.hi)))
        pm.Potential("loglik_first_read", sum(terms))

        # ---- stuck-at fractions (binomial counts, Jeffreys prior, logit coordinates)
        for name, (k_, n_, p_em) in p.stuck_counts.items():
            ph = min(max((k_ + 0.5) / (n_ + 1.0), 1e-6), 1 - 1e-6)
            lp = free("logit_" + name, special.logit(ph), 1.0 / math.sqrt(max(n_ * ph * (1 - ph), 0.25)))
            pm.Potential(name + "_loglik", (k_ + 0.5) * (-pt.softplus(-lp)) + (n_ - k_ + 0.5) * (-pt.softplus(lp)))
            pm.Deterministic(name, pt.sigmoid(lp))

        # ---- population-level programming parameters (chip common mode removed)
        pm.Deterministic("loc", (d.tbar + loc_obs) * pt.exp(-abar) - d.tbar, dims="level")
        pm.Deterministic("scale", pt.exp(ls - abar), dims="level")
    return model


# =====================================================================================================
# diagnostics
# =====================================================================================================
def _flat_names(da) -> list[str]:
    if da.ndim == 2:
        return [da.name]
    dims = [dd for dd in da.dims if dd not in ("chain", "draw")]
    idx = np.ndindex(*[da.sizes[dd] for dd in dims])
    return [f"{da.name}[{','.join(map(str, i))}]" for i in idx]


def _diagnose(idata, thresholds) -> tuple[pl.DataFrame, dict]:
    import arviz as az

    post = idata.posterior
    names, rh, eb, et = [], [], [], []
    rhat = az.rhat(post)
    essb = az.ess(post, method="bulk")
    esst = az.ess(post, method="tail")
    for v in post.data_vars:
        names += _flat_names(post[v])
        rh += list(np.atleast_1d(rhat[v].values).ravel())
        eb += list(np.atleast_1d(essb[v].values).ravel())
        et += list(np.atleast_1d(esst[v].values).ravel())
    table = pl.DataFrame({"parameter": names, "r_hat": np.array(rh, dtype=float), "ess_bulk": np.array(eb, dtype=float),
                          "ess_tail": np.array(et, dtype=float)})
    ss = idata.sample_stats
    div = int(ss["diverging"].sum()) if "diverging" in ss else 0
    depth = int(ss["reached_max_treedepth"].sum()) if "reached_max_treedepth" in ss else 0
    try:
        bfmi = float(np.min(az.bfmi(idata)))
    except Exception:  # noqa: BLE001 - E-BFMI is informative only
        bfmi = float("nan")
    finite = table.filter(pl.col("r_hat").is_not_nan())
    n_draws = int(post.sizes["chain"] * post.sizes["draw"])
    diag = {
        "max_r_hat": float(finite["r_hat"].max()) if finite.height else float("nan"),
        "min_ess_bulk": float(finite["ess_bulk"].min()) if finite.height else float("nan"),
        "min_ess_tail": float(finite["ess_tail"].min()) if finite.height else float("nan"),
        "divergences": div, "max_treedepth_hits": depth, "min_bfmi": bfmi,
        "chains": int(post.sizes["chain"]), "draws": n_draws,
        "mean_tree_size": float(ss["n_steps"].mean()) if "n_steps" in ss else float("nan"),
        "step_size": float(ss["step_size"].mean()) if "step_size" in ss else float("nan"),
        "thresholds": dict(thresholds),
    }
    return table, diag


def _check(table: pl.DataFrame, diag: dict, thresholds: dict, settings: dict) -> tuple[bool, str, pl.DataFrame, list]:
    th = thresholds
    bad = table.filter((pl.col("r_hat") > th["rhat_max"]) | (pl.col("ess_bulk") < th["ess_bulk_min"])
                       | (pl.col("ess_tail") < th["ess_tail_min"]))
    problems, tips = [], []
    if bad.filter(pl.col("r_hat") > th["rhat_max"]).height:
        problems.append(f"R-hat up to {diag['max_r_hat']:.3f} > {th['rhat_max']}")
        tips.append(f"chains disagree: sample longer (tune={2 * settings['tune']}, draws={2 * settings['draws']}) or "
                    f"with more chains (chains=4); if it persists the posterior may be multimodal")
    if bad.filter((pl.col("ess_bulk") < th["ess_bulk_min"]) | (pl.col("ess_tail") < th["ess_tail_min"])).height:
        problems.append(f"effective sample size bulk {diag['min_ess_bulk']:.0f} / tail {diag['min_ess_tail']:.0f} "
                        f"< {th['ess_bulk_min']:.0f} / {th['ess_tail_min']:.0f}")
        tips.append(f"more draws (draws={max(2 * settings['draws'], 1000)}) and tuning (tune={max(2 * settings['tune'], 1000)})")
    allowed = int(math.floor(th["max_divergence_fraction"] * diag["draws"]))
    if diag["divergences"] > allowed:
        problems.append(f"{diag['divergences']} divergent transitions (allowed {allowed}, "
                        f"{100 * th['max_divergence_fraction']:g} % of {diag['draws']} draws)")
        nxt = "0.99" if settings["target_accept"] >= 0.95 else "0.95 or 0.99"
        tips.append(f"raise target_accept (now {settings['target_accept']}; try {nxt}) and tune; if they remain, "
                    "simplify the model: scale_degree=1, chip_gain=False, stuck=False, or fewer levels")
    if 0 < diag["divergences"] <= allowed:
        tips.append(f"{diag['divergences']} divergent transition(s) among {diag['draws']} draws (within the allowed "
                    f"{100 * th['max_divergence_fraction']:g} %); target_accept=0.99 removes them at some cost")
    if np.isfinite(diag["min_bfmi"]) and diag["min_bfmi"] < 0.3:
        tips.append(f"E-BFMI {diag['min_bfmi']:.2f} < 0.3: the energy is poorly explored; more tuning helps")
    if diag["max_treedepth_hits"] > 0:
        tips.append(f"{diag['max_treedepth_hits']} draws hit the maximum tree depth: longer tuning or a simpler model")
    ok = not problems
    rows = bad.with_columns(pl.lit("parameter").alias("check"))
    summary_rows = pl.DataFrame({
        "parameter": ["(sampler) divergences", "(sampler) min E-BFMI", "(sampler) max tree depth hits"],
        "r_hat": [float("nan")] * 3, "ess_bulk": [float("nan")] * 3, "ess_tail": [float("nan")] * 3,
        "check": [f"{diag['divergences']} (allowed {allowed})", f"{diag['min_bfmi']:.3g}",
                  str(diag["max_treedepth_hits"])],
    })
    return ok, "; ".join(problems) if problems else "all convergence checks passed", pl.concat([rows, summary_rows]), tips


# =====================================================================================================
# result
# =====================================================================================================
@dataclass(frozen=True)
class BayesFitResult:
    """Result of :func:`fit_device_bayes`.

    Attributes
    ----------
    model : PosteriorDeviceModel or None
        The fitted device model with its posterior draws (None when the fit failed).
    idata : arviz.InferenceData
        The trace (posterior of free coordinates, population parameters and sampler statistics).
    summary : polars.DataFrame
        Population parameters: mean, sd, 5/50/95 % quantiles, R-hat, bulk/tail ESS.
    diagnostics : dict
        Worst R-hat, ESS, divergences, E-BFMI, tree depth, thresholds.
    success, message, notes
        Verdict and what the preprocessing found.
    seconds : dict
        ``prepare``, ``sample`` (compile + tune + draws), ``total``.
    settings : dict
        The arguments of the fit.
    """

    model: PosteriorDeviceModel | None
    idata: Any
    summary: pl.DataFrame
    diagnostics: dict
    success: bool
    message: str
    notes: tuple[str, ...]
    seconds: dict
    settings: dict
    _data: _Data = field(repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.settings.get("name", "bayes"))

    @property
    def map_model(self) -> DeviceModel | None:
        """A point :class:`DeviceModel`: every parameter at its posterior median (not a joint mode)."""
        return None if self.model is None else self.model.point_model()

    def report(self) -> str:
        d = self.diagnostics
        lines = [f"Bayesian fit ({self.settings.get('family')}) of {self._data.x.size} rows, {self._data.tbar.size} levels, "
                 f"{self._data.chips.size} chips, read times {list(map(float, self._data.times))} s in "
                 f"{self.seconds.get('total', float('nan')):.1f} s: {'success' if self.success else 'FAILED'} "
                 f"({self.message})",
                 f"  NUTS: {d['chains']} chains x {d['draws'] // max(d['chains'], 1)} draws; max R-hat {d['max_r_hat']:.4f}, "
                 f"min ESS bulk {d['min_ess_bulk']:.0f} / tail {d['min_ess_tail']:.0f}, divergences {d['divergences']}, "
                 f"min E-BFMI {d['min_bfmi']:.2f}"]
        lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    # ---------------------------------------------------------------- pointwise log-likelihood, LOO
    def log_likelihood(self, max_draws: int | None = None):
        """Pointwise log-likelihood of every first-read row (the observation model of programming,
        chip gain and stuck-at; the drift contrasts are not included), as an InferenceData with
        ``posterior`` and ``log_likelihood`` groups.  Draws are thinned evenly to at most
        ``max_draws`` (default: all, or fewer so that draws x rows <= 2e7)."""
        key = ("ll", max_draws)
        if key in self._cache:
            return self._cache[key]
        import arviz as az
        import xarray as xr

        post = self.idata.posterior
        dd = self._data
        first = dd.first
        n_rows = int(first.sum())
        nc, nd = post.sizes["chain"], post.sizes["draw"]
        cap = max_draws if max_draws is not None else max(50, int(2e7 // max(n_rows, 1)))
        step = max(1, int(math.ceil(nc * nd / cap)))
        sub = post.isel(draw=slice(None, None, step))
        M1 = sub["first_read_mean"].values
        S1 = sub["first_read_sd"].values
        if "chip_offset" in sub:
            a = sub["chip_offset"].values[..., dd.chip[first]]
        else:
            a = np.zeros(M1.shape[:2] + (n_rows,))
        g = np.exp(a)
        lev = dd.level[first]
        mu = g * M1[..., lev]
        sd = g * S1[..., lev]
        xa = dd.aligned()[first]
        cens = dd.cens[first]
        x = dd.x[first]
        df = sub["df"].values[..., None] if "df" in sub else None
        ll = np.empty(mu.shape)
        obs, left, right = cens == 0, cens < 0, cens > 0
        if df is None:
            ll[..., obs] = _normal_lp(xa[obs], mu[..., obs], sd[..., obs])
            ll[..., left] = special.log_ndtr((dd.lo - mu[..., left]) / sd[..., left])
            ll[..., right] = special.log_ndtr((mu[..., right] - dd.hi) / sd[..., right])
        else:
            z = (xa[obs] - mu[..., obs]) / sd[..., obs]
            ll[..., obs] = (special.gammaln((df + 1) / 2) - special.gammaln(df / 2) - 0.5 * np.log(df * np.pi)
                            - (df + 1) / 2 * np.log1p(z * z / df) - np.log(sd[..., obs]))
            ll[..., left] = np.log(special.stdtr(df, (dd.lo - mu[..., left]) / sd[..., left]))
            ll[..., right] = np.log(special.stdtr(df, (mu[..., right] - dd.hi) / sd[..., right]))
        pl_, ph_, gl, gh, sl, sh = dd.stuck
        plow = sub["p_low"].values[..., None] if "p_low" in sub else (np.nan_to_num(pl_) * np.ones(ll.shape[:2] + (1,)))
        phigh = sub["p_high"].values[..., None] if "p_high" in sub else (np.nan_to_num(ph_) * np.ones(ll.shape[:2] + (1,)))
        parts = [np.log1p(-(plow + phigh)) + ll]
        tol = 1e-9 * max(1.0, float(np.max(np.abs(dd.x))))
        for p_, gv, sp in ((plow, gl, sl), (phigh, gh, sh)):
            if not np.isfinite(gv) or np.all(p_ <= 0):
                continue
            comp = np.full(n_rows, -np.inf)
            if sp > 0:
                comp[obs] = _normal_lp(x[obs], gv, sp)
                comp[left] = special.log_ndtr((dd.lo - gv) / sp)
                if np.any(right):
                    comp[right] = special.log_ndtr((gv - dd.hi) / sp)
            else:
                comp[obs & (np.abs(x - gv) <= tol)] = 0.0
                comp[left] = 0.0 if gv <= dd.lo + tol else -np.inf
                if np.any(right):
                    comp[right] = 0.0 if gv >= dd.hi - tol else -np.inf
            with np.errstate(divide="ignore"):
                parts.append(np.log(p_) + comp)
        tot = np.logaddexp.reduce(parts, axis=0) if len(parts) > 1 else parts[0]
        da = xr.DataArray(tot, dims=("chain", "draw", "first_read_row"),
                          coords={"chain": sub.chain.values, "draw": sub.draw.values})
        out = az.InferenceData(posterior=sub, log_likelihood=xr.Dataset({"first_read": da}))
        self._cache[key] = out
        return out

    def loo(self, max_draws: int | None = None, pointwise: bool = False):
        """PSIS-LOO (``arviz.loo``) over the first-read rows; look at ``pareto_k`` (> 0.7: unreliable)."""
        import arviz as az

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return az.loo(self.log_likelihood(max_draws), pointwise=pointwise)

    def compare(self, *others: "BayesFitResult", names: Sequence[str] | None = None) -> pl.DataFrame:
        """``arviz.compare`` (PSIS-LOO, log scale) of this fit and ``others`` fitted to the same data.

        Returns one row per model, best first: ``elpd_loo``, ``p_loo``, ``elpd_diff``, ``dse``,
        ``weight``, ``warning``.
        """
        import arviz as az

        fits = (self,) + tuple(others)
        n = {int(f._data.first.sum()) for f in fits}
        if len(n) != 1 or any(not np.array_equal(f._data.x[f._data.first], self._data.x[self._data.first]) for f in fits):
            raise ReliabilityError("compare needs fits of the same data (the same first-read rows); got different data.")
        labels = list(names) if names is not None else [f.name for f in fits]
        if len(set(labels)) != len(labels):
            labels = [f"{lab}#{i}" for i, lab in enumerate(labels)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            cmp = az.compare({lab: f.log_likelihood() for lab, f in zip(labels, fits)}, ic="loo")
        df = cmp.reset_index().rename(columns={"index": "model"})
        return pl.from_pandas(df)

    # ---------------------------------------------------------------- posterior predictive checks
    def ppc(self, n_draws: int = 100, seed=0, probs: Sequence[float] = (0.01, 0.05, 0.5, 0.95, 0.99)) -> pl.DataFrame:
        """Posterior predictive check of the whole device model, per level and read time.

        For ``n_draws`` posterior draws (evenly spaced), the campaign is simulated again with that
        draw's device model and that draw's chip gains (same chips, levels, devices per chip and
        level, read times); the observed quantiles ``probs`` and standard deviation of every
        (level, time) are compared with their predictive distribution.  ``p_value`` is two-sided
        (``2 min(P(rep <= obs), P(rep >= obs))``).
        """
        if self.model is None:
            raise ReliabilityError("the fit failed: there is no posterior model to check.")
        key = ("ppc", n_draws, seed, tuple(probs))
        if key in self._cache:
            return self._cache[key]
        from reliability.devices.model import as_generator

        rng = as_generator(seed)
        dd = self._data
        m = self.model
        K, nt = dd.tbar.size, dd.times.size
        idx = np.unique(np.linspace(0, m.n_draws - 1, min(n_draws, m.n_draws)).round().astype(int))
        post = self.idata.posterior
        lg = (post["chip_log_gain"].stack(sample=("chain", "draw")).transpose("sample", ...).values
              if "chip_log_gain" in post else np.zeros((m.n_draws, 1)))
        first = dd.first
        chips_present = np.unique(dd.chip[first])
        grids = {c: (dd.target[first & (dd.chip == c)], dd.level[first & (dd.chip == c)]) for c in chips_present}
        stats_names = [f"q{100 * p:g}" for p in probs] + ["std"]

        def stats(v):
            return np.concatenate([np.quantile(v, probs), [np.std(v, ddof=1)]]) if v.size > 1 else np.full(len(stats_names), np.nan)

        obs = np.full((K, nt, len(stats_names)), np.nan)
        for k in range(K):
            for i in range(nt):
                obs[k, i] = stats(dd.x[(dd.level == k) & (dd.tidx == i)])
        rep = np.full((idx.size, K, nt, len(stats_names)), np.nan)
        for s, j in enumerate(idx):
            mj = m.model_at(int(j))
            vals = {(k, i): [] for k in range(K) for i in range(nt)}
            for c in chips_present:
                tg, lv = grids[c]
                gain = float(np.exp(lg[j, c])) if lg.shape[1] > 1 else 1.0
                prog = mj.program(tg, rng, gain=gain)
                for i, tt in enumerate(dd.times):
                    r = mj.read(prog, float(tt), rng)
                    for k in np.unique(lv):
                        vals[(k, i)].append(r[lv == k])
            for (k, i), v in vals.items():
                if v:
                    rep[s, k, i] = stats(np.concatenate(v))
        rows = []
        for k in range(K):
            for i in range(nt):
                for q, sname in enumerate(stats_names):
                    r = rep[:, k, i, q]
                    o = obs[k, i, q]
                    if not np.isfinite(o) or not np.any(np.isfinite(r)):
                        continue
                    r = r[np.isfinite(r)]
                    pv = float(min(1.0, 2 * min(np.mean(r <= o), np.mean(r >= o))))
                    lo_, med, hi_ = np.quantile(r, [0.05, 0.5, 0.95])
                    rows.append({"target_uS": float(dd.tbar[k]), "time_s": float(dd.times[i]), "stat": sname,
                                 "observed": float(o), "pred_q5": float(lo_), "pred_q50": float(med),
                                 "pred_q95": float(hi_), "p_value": pv})
        out = pl.DataFrame(rows)
        self._cache[key] = out
        return out

    def ppc_plot(self, path, n_draws: int = 100, seed=0):
        """Plot :meth:`ppc`: per read time, observed quantiles (minus the target) against their 90 %
        predictive bands across levels; writes ``path`` (format from the extension)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        tab = self.ppc(n_draws=n_draws, seed=seed)
        times = sorted(set(tab["time_s"].to_list()))
        fig, axes = plt.subplots(1, len(times), figsize=(4.2 * len(times), 3.6), squeeze=False, sharey=False)
        stats_q = [s for s in dict.fromkeys(tab["stat"].to_list()) if s != "std"]
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, tt in zip(axes[0], times):
            sub = tab.filter(pl.col("time_s") == tt)
            for ci_, s in enumerate(stats_q):
                r = sub.filter(pl.col("stat") == s).sort("target_uS")
                x = r["target_uS"].to_numpy()
                col = colors[ci_ % len(colors)]
                ax.fill_between(x, r["pred_q5"].to_numpy() - x, r["pred_q95"].to_numpy() - x, color=col, alpha=0.25,
                                linewidth=0)
                ax.plot(x, r["observed"].to_numpy() - x, "o", ms=3, color=col, label=s)
            ax.set_title(f"t = {tt:g} s")
            ax.set_xlabel("target (uS)")
            ax.set_ylabel("quantile - target (uS)")
        axes[0][0].legend(fontsize=7, title="observed (dots)\n90 % predictive (bands)", title_fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return Path(path)

    # ---------------------------------------------------------------- persistence
    def save(self, directory, overwrite: bool = False) -> Path:
        """Write the fit to ``directory``: ``device.json`` + ``device.posterior.npz`` (the model),
        ``device.trace.nc`` (InferenceData, NetCDF), ``fit.json`` (settings, diagnostics, notes),
        ``summary.parquet`` and ``data.npz`` (the rows, for :meth:`loo`/:meth:`ppc` after loading)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = ["fit.json", "summary.parquet", "data.npz", "device.json", "device.posterior.npz", "device.trace.nc"]
        if not overwrite:
            for f in files:
                if (directory / f).exists():
                    raise FileExistsError(f"{directory / f} exists; pass overwrite=True or choose another folder.")
        if self.model is not None:
            self.model.save(directory / "device.json", overwrite=True, trace=self.idata)
        else:
            self.idata.to_netcdf(str(directory / "device.trace.nc"))
        self.summary.write_parquet(directory / "summary.parquet")
        self._data.to_npz(directory / "data.npz")
        from reliability._json import jsonable

        doc = {"format": "nvcim-reliability/bayes-fit-v1", "success": self.success, "message": self.message,
               "notes": list(self.notes), "seconds": self.seconds, "settings": self.settings,
               "diagnostics": self.diagnostics}
        (directory / "fit.json").write_text(json.dumps(jsonable(doc), indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory) -> "BayesFitResult":
        """Read a fit written by :meth:`save`."""
        import arviz as az

        directory = Path(directory)
        try:
            doc = json.loads((directory / "fit.json").read_text())
        except FileNotFoundError:
            raise ReliabilityError(f"{directory} holds no Bayesian fit (fit.json missing).") from None
        if doc.get("format") != "nvcim-reliability/bayes-fit-v1":
            raise ReliabilityError(f"{directory / 'fit.json'} is not a Bayesian fit record.")
        idata = az.from_netcdf(str(directory / "device.trace.nc"))
        idata.load()
        model = PosteriorDeviceModel.load(directory / "device.json") if (directory / "device.json").exists() else None
        return cls(model=model, idata=idata, summary=pl.read_parquet(directory / "summary.parquet"),
                   diagnostics=doc["diagnostics"], success=bool(doc["success"]), message=doc["message"],
                   notes=tuple(doc["notes"]), seconds=doc["seconds"], settings=doc["settings"],
                   _data=_Data.from_npz(directory / "data.npz"))


# =====================================================================================================
# posterior -> device model
# =====================================================================================================
_SUMMARY_VARS = ("loc", "scale", "scale_tau", "df", "chip_sigma", "wafer_sigma", "chip_within_sigma", "chip_log_gain",
                 "nu_mean", "nu_std", "q", "nu_mean_tau", "log_nu_std_tau", "log_q_tau", "p_low", "p_high")


def _summary(idata, table: pl.DataFrame) -> pl.DataFrame:
    post = idata.posterior
    rows = []
    diag = {r["parameter"]: r for r in table.iter_rows(named=True)}
    for v in _SUMMARY_VARS:
        if v not in post:
            continue
        da = post[v]
        vals = da.stack(sample=("chain", "draw")).transpose("sample", ...).values.reshape(
            da.sizes["chain"] * da.sizes["draw"], -1)
        for name, col in zip(_flat_names(da), vals.T):
            q5, q50, q95 = np.quantile(col, [0.05, 0.5, 0.95])
            dg = diag.get(name, {})
            rows.append({"parameter": name, "mean": float(col.mean()), "sd": float(col.std(ddof=1)), "q5": float(q5),
                         "q50": float(q50), "q95": float(q95), "r_hat": dg.get("r_hat", float("nan")),
                         "ess_bulk": dg.get("ess_bulk", float("nan")), "ess_tail": dg.get("ess_tail", float("nan"))})
    return pl.DataFrame(rows)


def _posterior_model(p: _Prep, idata, family: str, name: str, metadata: dict) -> tuple[PosteriorDeviceModel, list]:
    post = idata.posterior
    d = p.data
    notes = []

    def arr(v):
        da = post[v]
        return da.stack(sample=("chain", "draw")).transpose("sample", ...).values.reshape(
            da.sizes["chain"] * da.sizes["draw"], -1)

    cols, names, paths = [], [], []

    def add(v, label, path_fmt):
        a = arr(v)
        for i in range(a.shape[1]):
            cols.append(a[:, i])
            names.append(label.format(i=i))
            paths.append(path_fmt.format(i=i))

    add("loc", "programming.loc[{i}]", "programming/loc/values/{i}")
    add("scale", "programming.scale[{i}]", "programming/scale/values/{i}")
    shape = {}
    if family == "student_t":
        dfa = arr("df")[:, 0]
        n_cap = int(np.sum(dfa > 999.0))
        if n_cap:
            notes.append(f"{n_cap} posterior draws of df above 999 (indistinguishable from normal) held at 999, the "
                         "family's upper bound")
        dfa = np.minimum(dfa, 999.0)
        cols.append(dfa)
        names.append("programming.df")
        paths.append("programming/shape/df")
        shape = {"df": float(np.median(dfa))}
    drift = read_noise = None
    if p.drift is not None:
        add("nu_mean", "drift.nu_mean[{i}]", "drift/nu_mean/values/{i}")
        add("nu_std", "drift.nu_std[{i}]", "drift/nu_std/values/{i}")
        if "q" in post:
            add("q", "read_noise.q[{i}]", "read_noise/q/values/{i}")
    chip_gain = None
    if "chip_sigma" in post:
        add("chip_sigma", "chip_gain.sigma", "chip_gain/sigma")
        chip_gain = ChipGain(float(np.median(arr("chip_sigma"))))
    stuck = None
    if np.isfinite(d.stuck[0]):
        pl_, ph_, gl, gh, sl, sh = (float(v) for v in d.stuck)
        if "p_low" in post:
            add("p_low", "stuck.p_low", "stuck/p_low")
            pl_ = float(np.median(arr("p_low")))
        if "p_high" in post:
            add("p_high", "stuck.p_high", "stuck/p_high")
            ph_ = float(np.median(arr("p_high")))
        stuck = StuckAt(pl_, ph_, gl, gh, sl, sh)
    table = np.column_stack(cols)
    med = np.median(table, axis=0)
    byname = dict(zip(names, med))
    K = d.tbar.size
    knots = tuple(map(float, d.tbar))
    prog = ProgrammingVariation(family, loc=Spline(knots, tuple(byname[f"programming.loc[{k}]"] for k in range(K))),
                                scale=Spline(knots, tuple(byname[f"programming.scale[{k}]"] for k in range(K)), 0.0),
                                shape=shape)
    if p.drift is not None:
        J = d.knots.size
        dk = tuple(map(float, d.knots))
        drift = Drift(nu_mean=Spline(dk, tuple(byname[f"drift.nu_mean[{j}]"] for j in range(J))),
                      nu_std=Spline(dk, tuple(byname[f"drift.nu_std[{j}]"] for j in range(J)), 0.0),
                      t0_s=d.t0_s, fold=True)
        if "q" in post:
            read_noise = ReadNoise(q=Spline(dk, tuple(byname[f"read_noise.q[{j}]"] for j in range(J)), 0.0),
                                   t_read_s=d.t_read_s)
    g_lo, g_hi = float(np.min(d.target)), float(np.max(d.target))
    point = DeviceModel(name=name, unit="uS", programming=prog, drift=drift, read_noise=read_noise, stuck=stuck,
                        chip_gain=chip_gain, g_range=(g_lo, g_hi) if g_hi > g_lo else None, floor=0.0,
                        description=f"Bayesian hierarchical fit ({family}, PyMC NUTS) of {d.x.size} readings; "
                                    "point values are posterior medians",
                        source=f"fitted by nvcim-reliability from {d.source}", metadata=metadata)
    return PosteriorDeviceModel.from_point(point, names, paths, table), notes


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
            warnings.simplefilter("ignore", FutureWarning)
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
    seed: int | None = 0,
    target_accept: float = 0.95,
    thresholds: Mapping[str, float] | None = None,
    init: str = "jitter+adapt_diag",
    name: str = "fitted-bayes",
    progressbar: bool = False,
    verbose: bool = False,
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
    draws, tune, chains, cores, seed, target_accept
        NUTS settings: draws and tuning steps per chain, number of chains, worker processes
        (default ``min(chains, 2)``), seed (reproducible for a given number of chains), target
        acceptance rate.
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
    """
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
    frame, source = _as_frame(data)
    prep = _prepare(frame, source, family=family, censor=censor, stuck=stuck, chip_gain=chip_gain,
                    chip_groups=chip_groups, t0_s=t0_s, t_read_s=t_read_s)
    t_prep = _time.perf_counter() - start
    settings = {"family": family, "chip_gain": chip_gain, "chip_groups": dict(chip_groups) if chip_groups else None,
                "stuck": stuck, "censor": list(censor) if censor else None, "t0_s": t0_s, "t_read_s": t_read_s,
                "scale_degree": scale_degree, "draws": int(draws), "tune": int(tune), "chains": int(chains),
                "cores": int(cores), "seed": seed, "target_accept": float(target_accept), "init": init, "name": name}

    import pymc as pm

    t1 = _time.perf_counter()
    with _quiet_pymc(verbose):
        model = _build_model(prep, family, scale_degree)
        with model:
            idata = pm.sample(draws=int(draws), tune=int(tune), chains=int(chains), cores=int(cores), random_seed=seed,
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
                        "t0_s": t0_s, "n_chips": int(prep.data.chips.size), "success": True, "warnings": [],
                        "diagnostics": {k: v for k, v in diag.items() if k != "thresholds"}, "thresholds": th,
                        "priors": PRIORS, "settings": {k: v for k, v in settings.items() if k != "chip_groups"}}}
    post_model, more = _posterior_model(prep, idata, family, name, metadata)
    notes += more
    res = BayesFitResult(post_model, idata, summary, diag, True, message, tuple(notes), seconds, settings, prep.data)
    # a quick posterior predictive check of the tails (cached: res.ppc(50, seed) returns it again)
    tab = res.ppc(n_draws=50, seed=seed)
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
    seconds["total"] = _time.perf_counter() - start
    return dataclasses.replace(res, notes=tuple(notes), seconds=seconds)
