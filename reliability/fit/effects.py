"""Estimators for the parts of a device model other than the programming family:
chip-to-chip gain, stuck-at fractions (EM on a mixture), drift and read noise (multi-time reads).

Each returns the fitted component, its standard errors and a per-level table; the orchestration
lives in :mod:`reliability.fit.device`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from scipy import optimize, special

from reliability.devices.components import ChipGain, Drift, ReadNoise, StuckAt
from reliability.devices.state import Constant, Spline
from reliability.errors import DataValidationError, ReliabilityError, option
from reliability.fit.mle import standard_errors

__all__ = ["as_frame", "table_rows", "median_mad", "contrast_matrix", "level_index", "estimate_chip_gains", "estimate_stuck", "estimate_drift", "stuck_loglik",
           "ChipGainFit", "StuckFit", "DriftFit"]

MAX_DISTINCT_LEVELS = 32
N_BINS = 16
SMOOTH_WITHOUT_IDS = True


def level_index(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group rows into levels: distinct targets when there are at most 32, else 16 quantile bins.

    Returns ``(index per row, level centre)``; a bin's centre is the median target in it.
    """
    uniq, inv = np.unique(target, return_inverse=True)
    if uniq.size <= MAX_DISTINCT_LEVELS:
        return inv, uniq
    edges = np.unique(np.quantile(target, np.linspace(0, 1, N_BINS + 1)))
    idx = np.clip(np.searchsorted(edges, target, side="right") - 1, 0, edges.size - 2)
    uidx, idx = np.unique(idx, return_inverse=True)
    centres = np.array([np.median(target[idx == k]) for k in range(uidx.size)])
    return idx, centres


def median_mad(x):
    """Median and normal-consistent median absolute deviation (1.4826 MAD) of ``x``."""
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med))
    return med, mad


# --------------------------------------------------------------------------- chip gain
@dataclass(frozen=True)
class ChipGainFit:
    component: ChipGain | None
    gains: dict          # chip id -> multiplicative gain estimate (geometric mean 1)
    gain_se: dict        # chip id -> standard error of log gain
    sigma_se: float
    message: str


def estimate_chip_gains(x, target, group, chip, usable) -> ChipGainFit:
    """Per-chip multiplicative gain from medians within (level, time) groups.

    For every group with positive target the log ratio of a chip's median to the median of all
    chips' medians is taken; a chip's log gain is the mean of its ratios (centred to mean 0 over
    chips).  ``sigma`` is their sample standard deviation (ddof=1) less the estimation noise of
    each chip's gain; its standard error is ``sigma / sqrt(2 (n_chips - 1))``.
    """
    chips = np.unique(chip)
    if chips.size < 2:
        return ChipGainFit(None, {c: 1.0 for c in chips}, {c: 0.0 for c in chips}, float("nan"),
                           "one chip in the data: chip-to-chip gain not estimated")
    ratios = {c: [] for c in chips}
    for g in np.unique(group[usable]):
        sel = usable & (group == g) & (target > 0)
        if not np.any(sel):
            continue
        meds = {}
        for c in chips:
            v = x[sel & (chip == c)]
            v = v[v > 0]
            if v.size >= 5:
                meds[c] = np.median(v)
        if len(meds) < 2:
            continue
        ref = np.median(list(meds.values()))
        for c, m in meds.items():
            ratios[c].append(np.log(m / ref))
    if any(len(v) == 0 for v in ratios.values()):
        return ChipGainFit(None, {c: 1.0 for c in chips}, {c: 0.0 for c in chips}, float("nan"),
                           "some chips share no level with the others: chip gain not estimated")
    logg = np.array([np.mean(ratios[c]) for c in chips])
    se_c = np.array([np.std(ratios[c], ddof=1) / np.sqrt(len(ratios[c])) if len(ratios[c]) > 1 else 0.0 for c in chips])
    logg = logg - logg.mean()
    n = chips.size
    var = np.var(logg, ddof=1) - np.mean(se_c ** 2)
    sigma = float(np.sqrt(max(var, 0.0)))
    sigma_se = float(max(sigma, np.sqrt(np.mean(se_c ** 2))) / np.sqrt(2 * (n - 1)))
    msg = f"chip gain from {n} chips: sigma = {sigma:.4g} (log-units) +/- {sigma_se:.2g}"
    if n < 10:
        msg += f"; only {n} chips, so sigma is uncertain by about {100 / np.sqrt(2 * (n - 1)):.0f} %"
    return ChipGainFit(ChipGain(sigma), {c: float(np.exp(v)) for c, v in zip(chips, logg)},
                       {c: float(s) for c, s in zip(chips, se_c)}, sigma_se, msg)


# --------------------------------------------------------------------------- stuck-at
@dataclass(frozen=True)
class StuckFit:
    component: StuckAt | None
    bulk_resp: np.ndarray      # per row: probability the row is a programmable (not stuck) device
    se: dict
    n_devices: int
    message: str


def _comp_logp(x, cens, lo_b, hi_b, m, s, atom_tol):
    """log density (or probability for censored rows / atoms) of a stuck component at x."""
    out = np.full(x.shape, -np.inf)
    obs = cens == 0
    if s > 0:
        z = (x - m) / s
        out[obs] = -0.5 * z[obs] ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
        if lo_b is not None:
            out[cens < 0] = special.log_ndtr((lo_b[cens < 0] - m) / s)
        if hi_b is not None:
            out[cens > 0] = special.log_ndtr(-(hi_b[cens > 0] - m) / s)
    else:
        out[obs & (np.abs(x - m) <= atom_tol)] = 0.0
        if lo_b is not None:
            left = cens < 0
            out[left] = np.where(m <= lo_b[left] + atom_tol, 0.0, -np.inf)
        if hi_b is not None:
            right = cens > 0
            out[right] = np.where(m >= hi_b[right] - atom_tol, 0.0, -np.inf)
    return out


def stuck_loglik(stuck: StuckAt | None, x, cens, lo_b, hi_b, atom_tol):
    """Per-row log of ``p_low f_low(x) + p_high f_high(x)`` (``-inf`` when there is no stuck part)."""
    if stuck is None or (stuck.p_low == 0 and stuck.p_high == 0):
        return np.full(np.shape(x), -np.inf)
    parts = []
    if stuck.p_low > 0:
        parts.append(np.log(stuck.p_low) + _comp_logp(x, cens, lo_b, hi_b, stuck.g_low, stuck.spread_low, atom_tol))
    if stuck.p_high > 0:
        parts.append(np.log(stuck.p_high) + _comp_logp(x, cens, lo_b, hi_b, stuck.g_high, stuck.spread_high, atom_tol))
    return np.logaddexp.reduce(parts, axis=0) if len(parts) > 1 else parts[0]


def _candidate_cluster(vals, tgts):
    """A stuck cluster: >= 3 outliers from >= 2 levels whose values do not follow their targets."""
    if vals.size < 3 or np.unique(tgts).size < 2:
        return None
    med, mad = median_mad(vals)
    if mad > 0.25 * np.std(tgts):
        return None
    return med, mad


def estimate_stuck(x, target, group, cens, lo_b, hi_b, device_key, n_devices, mode="auto",
                   threshold=6.0, iterations=40) -> StuckFit:
    """Stuck-at-low/high fractions by EM on a mixture of per-group normal bulks and two
    target-independent stuck components (point masses when their spread is zero).

    ``mode``: "auto" detects candidate clusters among robust outliers (beyond ``threshold`` robust
    standard deviations of their (level, time) group, from at least two levels, with values that do
    not follow the target); True forces both components; False disables.
    """
    n = x.size
    ones = np.ones(n)
    if mode is False:
        return StuckFit(None, ones, {}, n_devices, "stuck-at faults not modelled (disabled)")
    groups = np.unique(group)
    med = np.zeros(n)
    mad = np.zeros(n)
    for g in groups:
        sel = group == g
        m, s = median_mad(x[sel & (cens == 0)]) if np.any(sel & (cens == 0)) else (np.median(x[sel]), 0.0)
        med[sel] = m
        mad[sel] = max(s, 1e-9 + 1e-6 * abs(m))
    z = (x - med) / mad
    lo_arr = lo_b if lo_b is not None else np.full(n, -np.inf)
    hi_arr = hi_b if hi_b is not None else np.full(n, np.inf)
    low = (z < -threshold) | ((cens < 0) & (med - threshold * mad > lo_arr))
    high = (z > threshold) | ((cens > 0) & (med + threshold * mad < hi_arr))
    atom_tol = 1e-9 * max(1.0, float(np.max(np.abs(x))))
    comps = {}
    for name, sel in (("low", low), ("high", high)):
        if mode is True and not np.any(sel):
            continue
        cl = _candidate_cluster(x[sel], target[sel])
        if cl is None and mode is True and np.sum(sel) >= 1:
            cl = median_mad(x[sel])
        if cl is not None:
            comps[name] = [cl[0], cl[1], max(np.mean(sel), 1e-4)]
    if not comps:
        return StuckFit(None, ones, {}, n_devices,
                        "no stuck-at devices detected (no target-independent cluster of outliers)")
    def informative(c):
        far = np.abs(med - c[0]) > threshold * mad + 3 * c[1]
        return far

    # EM
    mu = med.copy()
    sd = mad.copy()
    for _ in range(iterations):
        p_st = sum(c[2] for c in comps.values())
        lb = np.log1p(-p_st) + _bulk_logp(x, cens, lo_b, hi_b, mu, sd)
        parts = {k: np.log(c[2]) + _comp_logp(x, cens, lo_b, hi_b, c[0], c[1], atom_tol) for k, c in comps.items()}
        tot = np.logaddexp.reduce([lb] + list(parts.values()), axis=0)
        rb = np.exp(lb - tot)
        resp = {k: np.exp(v - tot) for k, v in parts.items()}
        if device_key is not None:
            rb = _per_device_mean(rb, device_key)
            resp = {k: _per_device_mean(v, device_key) for k, v in resp.items()}
        for k, c in comps.items():
            r = resp[k]
            # only groups whose bulk lies well away from the stuck value carry information about
            # the stuck component; elsewhere (e.g. stuck-low at 0 uS vs. a level at 0 uS) the
            # bulk and the component are confounded, so those rows are left out of the M-step
            inf_rows = informative(c)
            c[2] = float(np.clip(r[inf_rows].mean(), 1e-7, 0.5)) if np.any(inf_rows) else float(np.clip(r.mean(), 1e-7, 0.5))
            obs = (cens == 0) & (r > 1e-3) & inf_rows
            if c[1] > 0 and np.sum(r[obs]) > 2:
                m = np.sum(r[obs] * x[obs]) / np.sum(r[obs])
                v = np.sum(r[obs] * (x[obs] - m) ** 2) / np.sum(r[obs])
                c[0], c[1] = float(m), float(max(np.sqrt(v), atom_tol))
        for g in groups:
            sel = (group == g) & (cens == 0)
            w = rb[sel]
            if w.sum() > 2:
                m = np.sum(w * x[sel]) / w.sum()
                mu[group == g] = m
                sd[group == g] = max(np.sqrt(np.sum(w * (x[sel] - m) ** 2) / w.sum()), 1e-9)
    p_low = comps.get("low", [0, 0, 0.0])[2]
    p_high = comps.get("high", [0, 0, 0.0])[2]
    st = StuckAt(p_low=p_low, p_high=p_high,
                 g_low=comps.get("low", [0.0])[0], g_high=comps.get("high", [0.0])[0],
                 spread_low=comps.get("low", [0, 0.0])[1], spread_high=comps.get("high", [0, 0.0])[1])
    se = {"p_low": float(np.sqrt(p_low * (1 - p_low) / n_devices)),
          "p_high": float(np.sqrt(p_high * (1 - p_high) / n_devices))}
    msg = (f"stuck-at: low {p_low:.3%} (+/- {se['p_low']:.2%}) at {st.g_low:.4g}, "
           f"high {p_high:.3%} (+/- {se['p_high']:.2%}) at {st.g_high:.4g} ({n_devices} devices)")
    return StuckFit(st, rb, se, n_devices, msg)


def _bulk_logp(x, cens, lo_b, hi_b, mu, sd):
    z = (x - mu) / sd
    out = -0.5 * z ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
    if lo_b is not None:
        left = cens < 0
        out[left] = special.log_ndtr((lo_b[left] - mu[left]) / sd[left])
    if hi_b is not None:
        right = cens > 0
        out[right] = special.log_ndtr(-(hi_b[right] - mu[right]) / sd[right])
    return out


def _per_device_mean(v, key):
    _, inv = np.unique(key, return_inverse=True)
    s = np.bincount(inv, weights=v)
    c = np.bincount(inv)
    return (s / c)[inv]


# --------------------------------------------------------------------------- drift and read noise
@dataclass(frozen=True)
class DriftFit:
    drift: Drift | None
    read_noise: ReadNoise | None
    table: dict = field(default_factory=dict)   # per-level estimates and standard errors
    method: str = ""
    message: str = ""


def contrast_matrix(k: int) -> np.ndarray:
    """Orthonormal contrasts (k x (k-1)), columns orthogonal to the ones vector."""
    q, _ = np.linalg.qr(np.column_stack([np.ones(k), np.eye(k)[:, : k - 1]]))
    return q[:, 1:k]


def _fit_paired(Y, L, R):
    """REML-type ML for (nu_mean, nu_std, q) from per-device log-conductance rows Y (devices x times)."""
    K = contrast_matrix(Y.shape[1])
    C = Y @ K
    a = L @ K
    D = K.T @ np.diag(R) @ K

    def nll(th):
        m, ls, lq = th
        S = np.exp(2 * ls) * np.outer(a, a) + np.exp(2 * lq) * D
        try:
            Li = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            return 1e300
        r = C + m * a
        sol = np.linalg.solve(Li, r.T)
        return 0.5 * np.sum(sol ** 2) + C.shape[0] * np.sum(np.log(np.diag(Li)))

    m0 = -np.mean(C @ a) / (a @ a)
    if Y.shape[1] == 2:  # one contrast: drift spread and read noise are not separable; q := 0
        f2 = lambda th: nll(np.array([th[0], th[1], -30.0]))  # noqa: E731
        res = optimize.minimize(f2, np.array([m0, np.log(0.02)]), method="Nelder-Mead",
                                options={"maxiter": 2000, "xatol": 1e-6, "fatol": 1e-8})
        se2, ok = standard_errors(f2, res.x)
        m, ls = res.x
        return dict(nu_mean=m, nu_std=np.exp(ls), q=0.0, nu_mean_se=se2[0], nu_std_se=np.exp(ls) * se2[1],
                    q_se=np.nan, ok=ok)
    res = optimize.minimize(nll, np.array([m0, np.log(0.02), np.log(0.01)]), method="Nelder-Mead",
                            options={"maxiter": 2000, "xatol": 1e-6, "fatol": 1e-8})
    se, ok = standard_errors(nll, res.x)
    m, ls, lq = res.x
    return dict(nu_mean=m, nu_std=np.exp(ls), q=np.exp(lq), nu_mean_se=se[0], nu_std_se=np.exp(ls) * se[1],
                q_se=np.exp(lq) * se[2], ok=ok)


def _fit_marginal(ys_by_time, L, R):
    """Moment estimates without device ids: slope of mean log g on L, and the variance growth
    V_j = V0 + nu_std^2 L_j^2 + q^2 R_j by non-negative least squares."""
    means = np.array([np.mean(y) for y in ys_by_time])
    vars_ = np.array([np.var(y, ddof=1) for y in ys_by_time])
    ns = np.array([y.size for y in ys_by_time])
    w = ns / vars_
    A = np.column_stack([np.ones_like(L), L])
    W = np.diag(w)
    cov = np.linalg.inv(A.T @ W @ A)
    beta = cov @ A.T @ W @ means
    nu_mean = -beta[1]
    nu_mean_se = np.sqrt(cov[1, 1])
    se_var = vars_ * np.sqrt(2 / (ns - 1))
    if L.size >= 3:
        B = np.column_stack([np.ones_like(L), L ** 2, R]) / se_var[:, None]
        coef, _ = optimize.nnls(B, vars_ / se_var)
        v0, s2, q2 = coef
    else:
        B = np.column_stack([np.ones_like(L), L ** 2]) / se_var[:, None]
        coef, _ = optimize.nnls(B, vars_ / se_var)
        v0, s2 = coef
        q2 = 0.0
    try:
        cov2 = np.linalg.pinv(B.T @ B)
        se2 = np.sqrt(np.abs(np.diag(cov2)))
    except np.linalg.LinAlgError:
        se2 = np.full(3, np.nan)
    nu_std = np.sqrt(s2)
    q = np.sqrt(q2)
    return dict(nu_mean=nu_mean, nu_std=nu_std, q=q, nu_mean_se=nu_mean_se,
                nu_std_se=se2[1] / (2 * max(nu_std, 1e-12)),
                q_se=(se2[2] / (2 * max(q, 1e-12))) if se2.size > 2 else np.nan, ok=True)


def _smooth_log_quadratic(tg, vals, se):
    se = np.asarray(se, dtype=float)
    vals = np.asarray(vals, dtype=float)
    w = np.where(np.isfinite(se) & (se > 0), 1 / np.maximum(se, 1e-6) ** 2, 0.0)
    if np.count_nonzero(w) < 3:
        return vals
    x = np.log(tg)
    V = np.vander(x, 3, increasing=True)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(V * sw[:, None], vals * sw, rcond=None)
    return np.maximum(V @ coef, 0.0)


def estimate_drift(x, time, level, centres, bulk, cens, device_key, t0_s=20.0, t_read_s=250e-9) -> DriftFit:
    """Drift exponent statistics and 1/f read-noise amplitude per level, smoothed over targets.

    With device ids: for each level, devices read at every time give contrasts of log conductance
    free of their programmed value; (nu_mean, nu_std, q) maximize the multivariate-normal likelihood
    of the contrasts (mean -nu_mean*dL, covariance nu_std^2 dL dL' + q^2 dR).  Without device ids:
    moment estimates from the mean and variance of log conductance per read time.  Levels with
    non-positive targets or with more than 5 % non-positive reads are skipped.
    """
    drift_proto = Drift(t0_s=t0_s)
    rn_proto = ReadNoise(t_read_s=t_read_s)
    times = np.unique(time)
    L = drift_proto.log_factor(times)
    R = rn_proto.time_factor(times)
    if times.size < 2 or np.unique(L).size < 2:
        return DriftFit(None, None, {}, "none",
                        "one read time (or all reads before t0): drift and read noise not estimated; "
                        "the programming variation includes any read noise at that time")
    rows = []
    method = "paired-device contrasts (ML)" if device_key is not None else "moments of log conductance per time"
    for k, c in enumerate(centres):
        sel = (level == k) & bulk & (cens == 0)
        if c <= 0 or np.mean(x[(level == k)] <= 0) > 0.05:
            continue
        sel &= x > 0
        if device_key is not None:
            keys = device_key[sel]
            tt = np.searchsorted(times, time[sel])
            uk, inv = np.unique(keys, return_inverse=True)
            Y = np.full((uk.size, times.size), np.nan)
            Y[inv, tt] = np.log(x[sel])
            complete = np.all(np.isfinite(Y), axis=1)
            if complete.sum() < 10:
                continue
            est = _fit_paired(Y[complete], L, R)
        else:
            ys = [np.log(x[sel & (time == t)]) for t in times]
            if min(y.size for y in ys) < 10:
                continue
            est = _fit_marginal(ys, L, R)
        est["target"] = float(c)
        rows.append(est)
    if not rows:
        return DriftFit(None, None, {}, method, "no level had enough positive, non-stuck reads to estimate drift")
    tg = np.array([r["target"] for r in rows])
    table = {key: [float(r[key]) for r in rows] for key in
             ("target", "nu_mean", "nu_mean_se", "nu_std", "nu_std_se", "q", "q_se")}

    def smooth(vals, lower=None):
        vals = np.asarray(vals, dtype=float)
        return Spline(tuple(tg), tuple(vals), lower) if tg.size > 1 else Constant(float(vals[0]))

    nu_std_v = np.abs(table["nu_std"])
    qv = np.abs(table["q"])
    if SMOOTH_WITHOUT_IDS and device_key is None and tg.size >= 4:
        # without device ids the split between drift spread and read noise is weakly identified
        # per level; borrow strength across levels with a weighted quadratic in log(target)
        nu_std_v = _smooth_log_quadratic(tg, nu_std_v, table["nu_std_se"])
        qv = _smooth_log_quadratic(tg, qv, table["q_se"])
        table["nu_std_smoothed"] = nu_std_v.tolist()
        table["q_smoothed"] = qv.tolist()
        method += "; nu_std and q smoothed across levels (weighted quadratic in log target)"
    drift = Drift(nu_mean=smooth(table["nu_mean"]), nu_std=smooth(nu_std_v, 0.0), t0_s=t0_s, fold=True)
    read_noise = ReadNoise(q=smooth(qv, 0.0), t_read_s=t_read_s) if np.any(qv > 0) else None
    msg = (f"drift from {times.size} read times at {len(rows)} levels ({method}): nu_mean "
           f"{np.min(table['nu_mean']):.3g}..{np.max(table['nu_mean']):.3g}, read-noise q "
           f"{np.min(qv):.3g}..{np.max(qv):.3g}")
    if times.size == 2:
        msg += "; with 2 read times the read noise cannot be separated from the drift spread (assigned to drift)"
    return DriftFit(drift, read_noise, table, method, msg)


@dataclass
class Rows:
    """A measurement table's columns as arrays, with levels, read times and censoring, shared by the
    maximum-likelihood and Bayesian fits."""

    x_raw: np.ndarray          # conductance, uS
    T: np.ndarray              # target, uS
    t: np.ndarray              # read time, s (0 when the table has none)
    n: int
    chip: np.ndarray           # chip label per row (str)
    device_key: np.ndarray | None   # chip|device[|cycle] per row, when the table has device ids
    level: np.ndarray          # level index per row
    centres: np.ndarray        # level centres, uS
    times: np.ndarray          # distinct read times
    tidx: np.ndarray           # read-time index per row
    group: np.ndarray          # level * n_times + time index
    n_devices: int
    lo: float                  # left-censoring limit (0 uS unless given)
    hi: float | None           # right-censoring limit
    cens: np.ndarray           # -1 left-censored, +1 right-censored, 0 observed
    notes: list


TIME_ORIGINS = ("programming", "t0")


def as_frame(data, time_origin: str = "programming", t0_s: float = 20.0) -> tuple[pl.DataFrame, str]:
    """The validated long-format frame and its source name from a :class:`~reliability.data.MeasurementTable`,
    a polars DataFrame or a path (read with :func:`~reliability.data.read_measurements`).

    ``time_origin`` says what the data's ``time_s`` counts from: ``"programming"`` (the toolkit's
    convention, kept as is) or ``"t0"`` (the drift reference, ``t0_s`` seconds after programming,
    as aihwkit counts): then ``t0_s`` is added, so the fit and its model count from programming."""
    from reliability.data import MeasurementTable, read_measurements

    if time_origin not in TIME_ORIGINS:
        raise ReliabilityError(f"{option('time_origin', time_origin)} is not a time origin; use 'programming' (time_s "
                               f"counts from the end of programming) or 't0' (from the drift reference t0).")
    if isinstance(data, MeasurementTable):
        frame, source = data.frame, data.source
    else:
        t = read_measurements(data)
        frame, source = t.frame, t.source
    if time_origin == "t0":
        frame = frame.with_columns(pl.col("time_s") + float(t0_s))
    return frame, source


#: A reading is a gross outlier, which no variation family explains, when it exceeds this many times
#: the largest target in magnitude, or lies this many robust standard deviations (1.4826 MAD) from
#: its level's median.
GROSS_FACTOR = 100.0
GROSS_ROBUST_Z = 1e4


def gross_outliers(frame) -> np.ndarray:
    """Boolean mask of the readings no variation family can explain (see :data:`GROSS_FACTOR`)."""
    x = frame["conductance_uS"].to_numpy().astype(float)
    T = frame["target_uS"].to_numpy().astype(float)
    bad = np.abs(x) > GROSS_FACTOR * max(1.0, float(np.max(np.abs(T))) if T.size else 1.0)
    level, _ = level_index(T)
    for lv in np.unique(level):
        idx = np.flatnonzero((level == lv) & ~bad)
        if idx.size < 5:
            continue
        med = float(np.median(x[idx]))
        scale = 1.4826 * float(np.median(np.abs(x[idx] - med)))
        if scale > 0:
            bad[idx] |= np.abs(x[idx] - med) > GROSS_ROBUST_Z * scale
    return bad


def screen_outliers(frame, source: str, drop: bool):
    """``(frame, note)``: ``frame`` without its gross outliers when ``drop``, with a note naming
    them; without ``drop`` a :class:`~reliability.errors.DataValidationError` names them (row,
    value, target) and the two fixes.  Nothing is clipped."""

    bad = gross_outliers(frame)
    if not bad.any():
        return frame, None
    rows = frame["row"].to_numpy() if "row" in frame.columns else np.arange(1, frame.height + 1)
    x = frame["conductance_uS"].to_numpy()
    T = frame["target_uS"].to_numpy()
    idx = np.flatnonzero(bad)
    named = ", ".join(f"row {int(rows[i])}: {x[i]:.4g} uS (target {T[i]:.4g} uS)" for i in idx[:5])
    more = f" and {idx.size - 5} more" if idx.size > 5 else ""
    if not drop:
        raise DataValidationError(
            f"{source}: {idx.size} reading(s) no variation family can explain ({named}{more}): more than "
            f"{GROSS_FACTOR:g} x the largest target, or {GROSS_ROBUST_Z:g} robust standard deviations from their "
            f"level. Fix or remove those rows, or exclude them with {option('drop_outliers')}, which reports them.")
    return frame.filter(~bad), f"excluded {idx.size} gross outlier(s) no variation family can explain: {named}{more}"


def table_rows(frame, source: str, censor=None, drop_outliers: bool = False) -> Rows:
    """Arrays of a validated measurement frame (see :mod:`reliability.data.schema`) after the
    gross-outlier screen (:func:`screen_outliers`); errors on fewer than 20 rows."""
    frame, outlier_note = screen_outliers(frame, source, drop_outliers)
    x_raw = frame["conductance_uS"].to_numpy().astype(float)
    T = frame["target_uS"].to_numpy().astype(float)
    n = x_raw.size
    t = frame["time_s"].to_numpy().astype(float) if "time_s" in frame.columns else np.zeros(n)
    if n < 20:
        raise ReliabilityError(f"{source}: {n} usable rows; a device fit needs at least 20 (more per level).")
    chip = frame["chip"].cast(pl.String).to_numpy().astype(str) if "chip" in frame.columns else np.full(n, "0")
    device_key = None
    if "device" in frame.columns:
        device_key = np.char.add(np.char.add(chip, "|"), frame["device"].cast(pl.String).to_numpy().astype(str))
        if "cycle" in frame.columns:
            device_key = np.char.add(np.char.add(device_key, "|"), frame["cycle"].cast(pl.String).to_numpy().astype(str))
    level, centres = level_index(T)
    times = np.unique(t)
    tidx = np.searchsorted(times, t)
    group = level * times.size + tidx
    n_devices = int(np.unique(device_key).size) if device_key is not None else int(round(n / times.size))
    lo = 0.0 if censor is None or censor[0] is None else float(censor[0])
    hi = None if censor is None or censor[1] is None else float(censor[1])
    cens = np.zeros(n, dtype=np.int8)
    cens[x_raw <= lo] = -1
    if hi is not None:
        cens[x_raw >= hi] = 1
    notes: list[str] = [outlier_note] if outlier_note else []
    n_targets = int(np.unique(T).size)
    if n_targets > centres.size:
        notes.append(f"{n_targets} distinct targets (more than {MAX_DISTINCT_LEVELS}) grouped into {centres.size} levels "
                     f"of neighbouring targets (quantile bins)")
    if np.any(cens != 0):
        notes.append(f"censored: {int(np.sum(cens < 0))} readings at or below {lo:g} uS, "
                     f"{int(np.sum(cens > 0))} at or above {hi if hi is not None else float('inf'):g} uS")
    return Rows(x_raw, T, t, n, chip, device_key, level, centres, times, tidx, group, n_devices, lo, hi, cens, notes)
