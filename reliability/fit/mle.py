"""The one shared maximum-likelihood fitter for every variation family.

Observations are deviations from their target in the family's space (``x - target`` for
additive families, ``log(x / target)`` for ``lognormal``), possibly censored at the measurement
range, possibly mixed with fixed stuck-at components.  The fitter estimates location and scale per
level with the family's shape shared across levels, and gives standard errors from the numerical
Hessian of the negative log-likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from reliability.devices.families import Family

__all__ = ["LevelData", "numerical_hessian", "standard_errors", "fit_shape_pooled", "fit_level", "level_loglik"]

_LOG_2PI = np.log(2 * np.pi)


@dataclass
class LevelData:
    """One level's observations in deviation space.

    ``y``: deviations; ``cens``: 0 observed, -1 left-censored (true value <= y), +1 right-censored;
    ``log_jac``: log-Jacobian of the transform to conductance (0 for additive families);
    ``stuck_ll``: log-density (or log-probability, for censored rows) of the fixed stuck-at
    components, already weighted by their fractions (-inf where none); ``log_bulk``: log(1 - p_stuck).
    """

    target: float
    y: np.ndarray
    cens: np.ndarray
    log_jac: np.ndarray
    stuck_ll: np.ndarray
    log_bulk: float
    clean: np.ndarray | None = None   # rows believed programmable and uncensored (for starting values)

    def clean_y(self) -> np.ndarray:
        keep = (self.cens == 0) if self.clean is None else (self.clean & (self.cens == 0))
        return self.y[keep]

    @property
    def n(self) -> int:
        return int(self.y.size)


def level_loglik(fam: Family, data: LevelData, loc: float, scale: float, shape: tuple) -> np.ndarray:
    """Per-observation log-likelihood of one level (bulk family mixed with stuck components)."""
    if not (scale > 0 and np.isfinite(scale)):
        return np.full(data.y.shape, -np.inf)
    with np.errstate(over="ignore"):        # a scale near 0 sends far rows to +-inf: log-likelihood -inf
        z = (data.y - loc) / scale
    ll = np.empty_like(z)
    obs = data.cens == 0
    if np.all(obs):
        ll = fam.logpdf(z, *shape) - np.log(scale) + data.log_jac
    else:
        ll[obs] = fam.logpdf(z[obs], *shape) - np.log(scale) + data.log_jac[obs]
        left = data.cens < 0
        right = data.cens > 0
        if np.any(left):
            ll[left] = fam.logcdf(z[left], *shape)
        if np.any(right):
            ll[right] = fam.logsf(z[right], *shape)
    ll = ll + data.log_bulk
    if np.all(np.isneginf(data.stuck_ll)):
        return ll
    return np.logaddexp(ll, data.stuck_ll)


def numerical_hessian(f, x, rel_step: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian of scalar ``f`` at ``x``."""
    x = np.asarray(x, dtype=float)
    k = x.size
    h = rel_step * np.maximum(np.abs(x), 1.0)
    H = np.empty((k, k))
    # differences of huge values (a likelihood near a degenerate scale) overflow to inf: the
    # Hessian is then not positive definite and the caller reports no standard error
    with np.errstate(over="ignore", invalid="ignore"):
        f0 = f(x)
        for i in range(k):
            ei = np.zeros(k)
            ei[i] = h[i]
            H[i, i] = (f(x + ei) - 2 * f0 + f(x - ei)) / h[i] ** 2
            for j in range(i + 1, k):
                ej = np.zeros(k)
                ej[j] = h[j]
                H[i, j] = H[j, i] = ((f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej))
                                     / (4 * h[i] * h[j]))
    return H


def standard_errors(nll, x) -> tuple[np.ndarray, bool]:
    """Standard errors from the inverse Hessian of ``nll`` at ``x``; ``ok`` false if not positive definite."""
    H = numerical_hessian(nll, x)
    try:
        cov = np.linalg.inv(H)
        d = np.diag(cov)
        ok = bool(np.all(np.isfinite(d)) and np.all(d > 0) and np.all(np.linalg.eigvalsh(0.5 * (H + H.T)) > 0))
        return np.sqrt(np.where(d > 0, d, np.nan)), ok
    except np.linalg.LinAlgError:
        return np.full(x.size, np.nan), False


# --- shape parameters: unconstrained transform ---------------------------------------------------
def _to_unc(fam: Family, shape: tuple) -> np.ndarray:
    out = []
    for v, (lo, hi) in zip(shape, fam.domains):
        p = (v - lo) / (hi - lo)
        p = min(max(p, 1e-9), 1 - 1e-9)
        out.append(np.log(p / (1 - p)))
    return np.array(out)


def _from_unc(fam: Family, u: np.ndarray) -> tuple:
    return tuple(lo + (hi - lo) * special.expit(ui) for ui, (lo, hi) in zip(u, fam.domains))


def _robust_center_scale(y: np.ndarray) -> tuple[float, float]:
    med = float(np.median(y))
    mad = float(np.median(np.abs(y - med))) * 1.4826
    if not mad > 0:
        mad = float(np.std(y)) or 1e-6
    return med, mad


_SHAPE_STARTS = {
    "student_t": [(3.0,), (10.0,), (50.0,)],
    "skew_normal": [(-2.0,), (0.0,), (2.0,)],
    "gaussian_mixture": [(0.1, 0.0, 3.0), (0.2, 2.0, 1.0), (0.2, -2.0, 1.0), (0.05, 0.0, 8.0)],
}


def fit_shape_pooled(fam: Family, levels: list[LevelData], max_rows: int = 40000, rng=None):
    """Estimate the family's shape from pooled, robustly standardized deviations of all levels.

    Each level's uncensored bulk observations are centred and scaled by their median and MAD, then
    the full family (loc, scale, shape) is fitted to the pool (subsampled to ``max_rows`` rows with
    a fixed seed).  Returns ``(shape, shape_se)``.
    """
    if not fam.shape_names:
        return (), np.zeros(0)
    pooled = []
    for lv in levels:
        y = lv.clean_y()
        if y.size < 5:
            continue
        c, s = _robust_center_scale(y)
        pooled.append((y - c) / s)
    z = np.concatenate(pooled) if pooled else np.zeros(0)
    if z.size < 20:
        return tuple(fam.default_shape), np.full(len(fam.shape_names), np.nan)
    if z.size > max_rows:
        z = np.random.default_rng(12345 if rng is None else rng).choice(z, max_rows, replace=False)

    def nll(theta):
        loc, logs = theta[0], theta[1]
        shape = _from_unc(fam, theta[2:])
        s = np.exp(logs)
        v = -np.sum(fam.logpdf((z - loc) / s, *shape) - logs)
        return v if np.isfinite(v) else 1e300

    best = None
    for start in _SHAPE_STARTS.get(fam.name, [fam.default_shape]):
        x0 = np.concatenate([[0.0, 0.0], _to_unc(fam, start)])
        res = optimize.minimize(nll, x0, method="Nelder-Mead",
                                options={"maxiter": 600, "xatol": 1e-4, "fatol": 1e-6})
        if best is None or res.fun < best.fun:
            best = res
    shape = _from_unc(fam, best.x[2:])
    se_unc, _ = standard_errors(nll, best.x)
    # delta method back to the shape's own scale
    se = []
    for i, (lo, hi) in enumerate(fam.domains):
        u = best.x[2 + i]
        sig = special.expit(u)
        se.append((hi - lo) * sig * (1 - sig) * se_unc[2 + i])
    return shape, np.array(se)


def fit_level(fam: Family, data: LevelData, shape: tuple, start: tuple[float, float] | None = None):
    """MLE of (loc, scale) of one level with the shape fixed.

    Returns ``dict(loc, scale, loc_se, scale_se, loglik, converged)``.
    """
    y_obs = data.clean_y()
    if y_obs.size == 0:
        y_obs = data.y
    closed_form = (fam.name in ("normal", "lognormal") and np.all(data.cens == 0)
                   and np.all(np.isneginf(data.stuck_ll)))
    if closed_form:
        loc = float(np.mean(data.y))
        scale = float(np.std(data.y))
        if scale <= 0:
            scale = 1e-12
        ll = float(np.sum(level_loglik(fam, data, loc, scale, shape)))
        n = data.n
        return dict(loc=loc, scale=scale, loc_se=scale / np.sqrt(n), scale_se=scale / np.sqrt(2 * n),
                    loglik=ll, converged=True)
    if start is None:
        c, s = _robust_center_scale(y_obs)
        # move the robust centre to the family's location convention
        mu = fam.mean(*shape)
        sd = np.sqrt(fam.var(*shape)) if np.isfinite(fam.var(*shape)) else 1.0
        s = s / max(sd, 1e-6) if fam.name != "student_t" else s
        c = c - mu * s
        start = (c, max(s, 1e-9))

    def nll(theta):
        v = -np.sum(level_loglik(fam, data, theta[0], np.exp(theta[1]), shape))
        return v if np.isfinite(v) else 1e300

    x0 = np.array([start[0], np.log(start[1])])
    res = optimize.minimize(nll, x0, method="L-BFGS-B")
    if not res.success or not np.isfinite(res.fun):
        res2 = optimize.minimize(nll, x0, method="Nelder-Mead", options={"maxiter": 400})
        if res2.fun < res.fun:
            res = res2
    se, ok = standard_errors(nll, res.x)
    scale = float(np.exp(res.x[1]))
    return dict(loc=float(res.x[0]), scale=scale, loc_se=float(se[0]), scale_se=float(scale * se[1]),
                loglik=float(-res.fun), converged=bool(np.isfinite(res.fun) and ok))
