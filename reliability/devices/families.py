"""Variation families, declared once: parameters, domains, and the standardized distribution.

A family describes the standardized deviation ``z = (x - loc) / scale`` of a device from its target
(for ``lognormal``, ``z = (log(x / target) - loc) / scale``).  Each family declares its shape
parameters with their domains and supplies ``logpdf``, ``logcdf``, ``logsf``, ``ppf`` and ``rvs``
of ``z``; everything else (location/scale, state dependence, censoring, mixtures with stuck
devices, maximum likelihood) is written once, in :mod:`reliability.devices.components` and
:mod:`reliability.fit`, for all families.  Adding a family touches this file only.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import special

from reliability.errors import ModelSpecError

__all__ = ["Family", "FAMILIES", "get_family", "family_names"]


@dataclass(frozen=True)
class Family:
    """A standardized variation family.

    Attributes
    ----------
    name : str
        Identifier used in JSON files and on the command line.
    shape_names : tuple of str
        Names of the shape parameters (location and scale are handled outside).
    domains : tuple of (low, high)
        Open interval of each shape parameter.
    transform : {"additive", "log"}
        ``additive``: ``x = target + loc + scale * z`` (loc, scale in the conductance unit).
        ``log``: ``x = target * exp(loc + scale * z)`` (loc, scale dimensionless).
    """

    name: str
    shape_names: tuple[str, ...]
    domains: tuple[tuple[float, float], ...]
    transform: str
    _logpdf: Callable
    _logcdf: Callable
    _logsf: Callable
    _ppf: Callable
    _rvs: Callable
    _var: Callable
    _mean: Callable
    default_shape: tuple[float, ...] = ()
    description: str = ""

    def __reduce__(self):
        # families are registry singletons: pickle (for worker processes) by name
        return (get_family, (self.name,))

    def check_shape(self, shape: dict[str, float]) -> tuple[float, ...]:
        """Validate a shape-parameter dict and return the values in declared order."""
        unknown = set(shape) - set(self.shape_names)
        if unknown:
            raise ModelSpecError(
                f"family {self.name!r} has shape parameters {list(self.shape_names)}; got unknown {sorted(unknown)}."
            )
        values = []
        for name, (lo, hi), default in zip(self.shape_names, self.domains, self.default_shape):
            v = float(shape.get(name, default))
            if not (lo < v < hi):
                raise ModelSpecError(
                    f"family {self.name!r}: shape parameter {name}={v!r} is outside its domain ({lo}, {hi})."
                )
            values.append(v)
        return tuple(values)

    def logpdf(self, z, *shape):
        return self._logpdf(np.asarray(z, dtype=float), *shape)

    def logcdf(self, z, *shape):
        return self._logcdf(np.asarray(z, dtype=float), *shape)

    def logsf(self, z, *shape):
        return self._logsf(np.asarray(z, dtype=float), *shape)

    def cdf(self, z, *shape):
        return np.exp(self.logcdf(z, *shape))

    def ppf(self, u, *shape):
        return self._ppf(np.asarray(u, dtype=float), *shape)

    def ppf_of_normal(self, z, *shape):
        """``ppf(Phi(z))``: the family's variable at standard-normal ``z`` (the latent chips'
        transform).  Families whose quantile has no closed form (the Gaussian mixture) read it from
        a cached cubic Hermite table in ``z`` whose accuracy is checked when it is built (1e-10 in
        the standardized variable); elsewhere, and for any family, the exact quantile."""
        z = np.asarray(z, dtype=float)
        if self.name == "gaussian_mixture":
            table = _mixture_table(tuple(float(v) for v in shape))
            if table is not None:
                return table(z)
            return _mix_ppf_of_normal(z, *shape)
        return self._ppf(special.ndtr(z), *shape)

    def rvs(self, rng: np.random.Generator, size, *shape) -> np.ndarray:
        return self._rvs(rng, size, *shape)

    def var(self, *shape) -> float:
        """Variance of the standardized variable ``z`` (inf where it does not exist)."""
        return float(self._var(*shape))

    def mean(self, *shape) -> float:
        """Mean of the standardized variable ``z``."""
        return float(self._mean(*shape))


# --- normal and lognormal -----------------------------------------------------------------------
def _norm_rvs(rng, size):
    return rng.standard_normal(size)


_LOG_2PI = float(np.log(2 * np.pi))


def _norm_logpdf(z):
    return -0.5 * z * z - 0.5 * _LOG_2PI


_normal_kw = dict(
    shape_names=(), domains=(), _logpdf=_norm_logpdf, _logcdf=special.log_ndtr,
    _logsf=lambda z: special.log_ndtr(-z), _ppf=special.ndtri, _rvs=_norm_rvs,
    _var=lambda: 1.0, _mean=lambda: 0.0,
)

NORMAL = Family(name="normal", transform="additive", description="Gaussian deviation, g = target + loc + scale*z", **_normal_kw)
LOGNORMAL = Family(name="lognormal", transform="log",
                   description="multiplicative deviation, g = target*exp(loc + scale*z), loc/scale dimensionless", **_normal_kw)

# --- Student-t ------------------------------------------------------------------------------------
def _t_logpdf(z, df):
    c = special.gammaln((df + 1) / 2) - special.gammaln(df / 2) - 0.5 * np.log(df * np.pi)
    return c - (df + 1) / 2 * np.log1p(z * z / df)


def _t_logcdf(z, df):
    return np.log(special.stdtr(df, z))


def _t_logsf(z, df):
    return np.log(special.stdtr(df, -z))


STUDENT_T = Family(
    name="student_t", shape_names=("df",), domains=((0.5, 1000.0),), transform="additive", default_shape=(5.0,),
    _logpdf=_t_logpdf, _logcdf=_t_logcdf, _logsf=_t_logsf, _ppf=lambda u, df: special.stdtrit(df, u),
    _rvs=lambda rng, size, df: rng.standard_t(df, size),
    _var=lambda df: df / (df - 2.0) if df > 2 else np.inf, _mean=lambda df: 0.0,
    description="heavy-tailed deviation (degrees of freedom df)",
)


# --- skew-normal ----------------------------------------------------------------------------------
def _skew_rvs(rng, size, a):
    delta = a / np.sqrt(1.0 + a * a)
    u0 = rng.standard_normal(size)
    v = rng.standard_normal(size)
    return delta * np.abs(u0) + np.sqrt(1.0 - delta * delta) * v


def _skew_mean(a):
    return np.sqrt(2 / np.pi) * a / np.sqrt(1 + a * a)


def _skew_ppf(u, a):
    from scipy import stats        # scipy.stats costs most of a second to import: only when used

    return stats.skewnorm.ppf(u, a)


def _skew_logpdf(z, a):
    return np.log(2.0) - 0.5 * z * z - 0.5 * _LOG_2PI + special.log_ndtr(a * z)


def _skew_cdf(z, a):
    # Owen's T function: F(z) = Phi(z) - 2 T(z, a)
    return np.clip(special.ndtr(z) - 2.0 * special.owens_t(z, a), 0.0, 1.0)


def _skew_logcdf(z, a):
    with np.errstate(divide="ignore"):
        return np.log(_skew_cdf(z, a))


def _skew_logsf(z, a):
    # by symmetry, 1 - F(z; a) = F(-z; -a)
    return _skew_logcdf(-np.asarray(z), -a)


SKEW_NORMAL = Family(
    name="skew_normal", shape_names=("alpha",), domains=((-50.0, 50.0),), transform="additive", default_shape=(0.0,),
    _logpdf=_skew_logpdf, _logcdf=_skew_logcdf, _logsf=_skew_logsf, _ppf=lambda u, a: _skew_ppf(u, a),
    _rvs=_skew_rvs, _var=lambda a: 1.0 - _skew_mean(a) ** 2, _mean=_skew_mean,
    description="asymmetric deviation (skewness parameter alpha; loc/scale are the family's, not mean/std)",
)


# --- two-component Gaussian mixture ---------------------------------------------------------------
def _mix_logpdf(z, w, m2, r2):
    a = np.log1p(-w) + _norm_logpdf(z)
    b = np.log(w) + _norm_logpdf((z - m2) / r2) - np.log(r2)
    return np.logaddexp(a, b)


def _mix_logcdf(z, w, m2, r2):
    return np.logaddexp(np.log1p(-w) + special.log_ndtr(z), np.log(w) + special.log_ndtr((z - m2) / r2))


def _mix_logsf(z, w, m2, r2):
    return np.logaddexp(np.log1p(-w) + special.log_ndtr(-z), np.log(w) + special.log_ndtr(-(z - m2) / r2))


def _mix_ppf(u, w, m2, r2):
    """Quantile by a safeguarded Newton iteration (:func:`_mix_solve`)."""
    u = np.asarray(u, dtype=float)
    q = np.clip(u, 1e-300, 1.0 - 1e-16)
    upper = q > 0.5
    x = _mix_solve(special.ndtri(q), upper, np.where(upper, np.log1p(-q), np.log(q)), w, m2, r2)
    return np.where(u <= 0, -np.inf, np.where(u >= 1, np.inf, x))


def _mix_ppf_of_normal(z, w, m2, r2):
    """``ppf(Phi(z))`` without forming ``Phi(z)``: the upper tail keeps its digits beyond z = 8.3,
    where ``Phi(z)`` rounds to 1."""
    z = np.asarray(z, dtype=float)
    upper = z > 0
    return _mix_solve(z, upper, special.log_ndtr(np.where(upper, -z, z)), w, m2, r2)


def _mix_solve(z1, upper, target, w, m2, r2):
    """The mixture quantile whose log CDF (``upper`` False) or log survival function (True) equals
    ``target``; ``z1`` is the first component's quantile at the same probability.  A Newton
    iteration on the log CDF below the median and on the log survival function above it (so tail
    quantiles keep their digits), each step kept inside the bracket known to hold the root (a
    bisection step otherwise), iterating only on the entries not yet converged (to ~1e-13 in z)."""
    shape = np.shape(z1)
    z1, upper, target = (np.ravel(a) for a in np.broadcast_arrays(z1, upper, target))
    z2 = m2 + r2 * z1
    # the mixture CDF lies between its components' CDFs, so its quantile lies between theirs
    pad = 1e-9 * (1.0 + np.abs(z1) + np.abs(z2))
    lo, hi = np.minimum(z1, z2) - pad, np.maximum(z1, z2) + pad
    sign = np.where(upper, 1.0, -1.0)
    x = np.clip((1 - w) * z1 + w * z2, lo, hi)
    act = np.flatnonzero(np.isfinite(x))
    for _ in range(100):
        if not act.size:
            break
        xa, up = x[act], upper[act]
        lv = np.empty_like(xa)
        lv[up] = _mix_logsf(xa[up], w, m2, r2)
        lv[~up] = _mix_logcdf(xa[~up], w, m2, r2)
        g = lv - target[act]
        root_above = np.where(up, g > 0, g < 0)       # F(x) below the target probability
        lo[act] = np.where(root_above, xa, lo[act])
        hi[act] = np.where(root_above, hi[act], xa)
        new = xa + sign[act] * g * np.exp(lv - _mix_logpdf(xa, w, m2, r2))
        la, ha = lo[act], hi[act]
        new = np.where((new > la) & (new < ha), new, 0.5 * (la + ha))
        x[act] = new
        act = act[np.abs(new - xa) > 1e-13 * (1.0 + np.abs(xa))]
    return x.reshape(shape)


class _HermiteTable:
    """``Q(z) = ppf(Phi(z))`` on a uniform grid with its derivative ``phi(z) / f(Q)``, evaluated by
    cubic Hermite interpolation; outside the grid the exact quantile (``exact(z)``)."""

    def __init__(self, z0, h, q, d, exact):
        self.z0, self.h, self.q, self.d, self.exact = z0, h, q, d, exact

    def __call__(self, z):
        t = (z - self.z0) / self.h
        inside = (t >= 0) & (t <= self.q.size - 1)
        tc = np.where(inside, t, 0.0)
        i = np.minimum(tc.astype(np.int64), self.q.size - 2)
        s = tc - i
        s2, s3 = s * s, s * s * s
        out = ((2 * s3 - 3 * s2 + 1) * self.q[i] + (s3 - 2 * s2 + s) * self.h * self.d[i]
               + (-2 * s3 + 3 * s2) * self.q[i + 1] + (s3 - s2) * self.h * self.d[i + 1])
        if not inside.all():
            out[~inside] = self.exact(z[~inside])
        return out


@functools.lru_cache(maxsize=64)
def _mixture_table(shape: tuple, span: float = 37.0, tolerance: float = 1e-10):
    """The mixture's :class:`_HermiteTable` for ``shape``, the grid halved until the interpolation
    error at the cell midpoints is within ``tolerance`` (``None`` when even 2^-9 spacing is not
    enough: the exact quantile is used)."""
    def exact(z):
        return _mix_ppf_of_normal(z, *shape)

    def deriv(z, q):
        return np.exp(_norm_logpdf(z) - _mix_logpdf(q, *shape))

    for n in (4096, 8192, 16384, 32768):
        z = np.linspace(-span, span, 2 * n + 1)        # grid points and cell midpoints, interleaved
        q = exact(z)
        grid, mid = z[::2], z[1::2]
        table = _HermiteTable(-span, grid[1] - grid[0], q[::2], deriv(grid, q[::2]), exact)
        err = np.abs(table(mid) - q[1::2]) / (1.0 + np.abs(q[1::2]))
        if np.all(np.isfinite(q)) and err.max() <= tolerance:
            return table
    return None


def _mix_rvs(rng, size, w, m2, r2):
    z = rng.standard_normal(size)
    second = rng.random(size) < w
    return np.where(second, m2 + r2 * z, z)


GAUSSIAN_MIXTURE = Family(
    name="gaussian_mixture", shape_names=("w", "m2", "r2"),
    domains=((1e-6, 0.5), (-30.0, 30.0), (0.02, 50.0)), transform="additive", default_shape=(0.1, 0.0, 3.0),
    _logpdf=_mix_logpdf, _logcdf=_mix_logcdf, _logsf=_mix_logsf, _ppf=_mix_ppf, _rvs=_mix_rvs,
    _var=lambda w, m2, r2: (1 - w) + w * (r2 * r2 + m2 * m2) - (w * m2) ** 2, _mean=lambda w, m2, r2: w * m2,
    description="(1-w)*N(0,1) + w*N(m2, r2^2) in standardized units (second component: weight w <= 0.5)",
)

FAMILIES: dict[str, Family] = {f.name: f for f in (NORMAL, LOGNORMAL, STUDENT_T, SKEW_NORMAL, GAUSSIAN_MIXTURE)}

#: Every programming-variation family a model (and a fit) can use: the parametric ones, then the
#: non-parametric ``empirical`` lookup table (:class:`~reliability.devices.components.EmpiricalVariation`).
VARIATION_FAMILIES: tuple[str, ...] = (*FAMILIES, "empirical")


def family_names() -> list[str]:
    """Names of the parametric families (the non-parametric ``empirical`` model is separate)."""
    return list(FAMILIES)


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ModelSpecError(
            f"unknown variation family {name!r}; use one of {list(VARIATION_FAMILIES)}."
        ) from None
