"""The hybrid estimator's one-dimensional proposals: :class:`ModeMixture` (a mode, then its coordinate
from a tabulated density, the rest of the chip from the prior), the per-mode count models
(:func:`fit_count_model`) and the variance-optimal proposal built from them (:func:`sqrt_optimal`)
(:mod:`reliability.sampling.hybrid`, step 4)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["GRID_SPAN", "GRID_STEP", "ModeMixture", "count_mean", "fit_count_model", "sqrt_optimal"]

#: the tabulated one-dimensional densities live on ``[cut, cut + GRID_SPAN]`` in bins of ``GRID_STEP``
GRID_STEP = 0.01
GRID_SPAN = 10.0


@dataclass
class ModeMixture:
    """An importance-sampling proposal that changes one coordinate of the chip: mode ``m`` with
    probability ``pi[m]``, then ``t_m = u_m . z`` from a one-dimensional density ``g_m`` on
    ``[cut, inf)``, the rest of ``z`` exactly from the prior.  ``g_m`` is a defensive truncated prior
    (weight ``defensive``) plus a piecewise-constant body (``mass[m]`` over the bins ``edges``), so
    that drawing and evaluating use the same density exactly.  ``q / phi`` depends on the ``K``
    projections only: ``sum_m pi_m 1(t_m >= cut) g_m(t_m) / phi(t_m)``, at least
    ``min pi * defensive / Phi(-cut)`` on ``H``."""

    cut: float
    defensive: float
    pi: np.ndarray          # (K,)
    edges: np.ndarray       # (B + 1,)
    mass: np.ndarray        # (K, B), rows sum to 1

    @staticmethod
    def grid(cut: float) -> np.ndarray:
        return cut + np.arange(0.0, GRID_SPAN + GRID_STEP / 2, GRID_STEP)

    @classmethod
    def from_normals(cls, cut: float, defensive: float, K: int, components) -> "ModeMixture":
        """Every mode alike: the body is an equal mixture of normals truncated to ``[cut, inf)``."""
        edges = cls.grid(cut)
        mass = sum(_normal_bins(edges, m, s) for m, s in components)
        mass /= mass.sum()
        return cls(cut, defensive, np.full(K, 1.0 / K), edges, np.tile(mass, (K, 1)))

    @property
    def K(self) -> int:
        return int(self.pi.size)

    def log_g(self, m: int, t: np.ndarray) -> np.ndarray:
        """Log density of mode ``m``'s one-dimensional proposal at ``t >= cut``."""
        t = np.asarray(t, dtype=np.float64)
        a = math.log(self.defensive) + stats.norm.logpdf(t) - stats.norm.logsf(self.cut)
        i = np.searchsorted(self.edges, t, side="right") - 1
        inside = (i >= 0) & (i < self.mass.shape[1])
        with np.errstate(divide="ignore"):
            body = np.log(self.mass[m, np.clip(i, 0, self.mass.shape[1] - 1)] / GRID_STEP)
        b = np.where(inside, math.log(1 - self.defensive) + body, -np.inf)
        return np.logaddexp(a, b)

    def blend(self, other: "ModeMixture", a: float) -> "ModeMixture":
        """The mixture ``(1 - a) self + a other`` (same cut, defensive weight and grid), exactly."""
        pi = (1 - a) * self.pi + a * other.pi
        mass = ((1 - a) * self.pi[:, None] * self.mass + a * other.pi[:, None] * other.mass) / pi[:, None]
        return ModeMixture(self.cut, self.defensive, pi, self.edges, mass)

    def log_ratio(self, proj: np.ndarray) -> np.ndarray:
        """``log(q / phi)`` for chips with projections ``proj`` (..., K); ``-inf`` outside H."""
        proj = np.asarray(proj, dtype=np.float64)
        terms = []
        for m in range(self.K):
            tt = np.maximum(proj[..., m], self.cut)
            lr = math.log(self.pi[m]) + self.log_g(m, tt) - stats.norm.logpdf(tt)
            terms.append(np.where(proj[..., m] >= self.cut, lr, -np.inf))
        return np.logaddexp.reduce(np.stack(terms), axis=0)

    def sample(self, rng: np.random.Generator, S: int) -> tuple[np.ndarray, np.ndarray]:
        """Modes and their coordinates for ``S`` chips."""
        mode = rng.choice(self.K, size=S, p=self.pi)
        prior = rng.random(S) < self.defensive
        u = rng.random(S)
        t = stats.norm.isf(u * stats.norm.sf(self.cut))          # the truncated prior
        cdf = np.cumsum(self.mass, axis=1)
        for m in np.unique(mode[~prior]):
            sel = (~prior) & (mode == m)
            i = np.minimum(np.searchsorted(cdf[m], rng.random(int(sel.sum())), side="right"), self.mass.shape[1] - 1)
            t[sel] = self.edges[i] + rng.random(i.size) * GRID_STEP
        return mode, np.maximum(t, self.cut)

    def coefficients(self, rng: np.random.Generator, proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For prior draws ``xi`` with projections ``proj`` (S, K): a mode ``m`` and ``t ~ g_m`` per
        chip, and ``C`` (S, K) such that the chip ``z = xi + C @ U`` is ``xi + (t - u_m . xi) u_m``;
        returns the drawn modes and ``C`` (:func:`reliability.sampling.modes.shift` applies it)."""
        S = proj.shape[0]
        mode, t = self.sample(rng, S)
        C = np.zeros((S, self.K))
        rows = np.arange(S)
        C[rows, mode] = t - proj[rows, mode]
        return mode, C

    def describe(self) -> dict:
        return {"kind": "mode-mixture", "mode_probabilities": [float(x) for x in self.pi]}


def _normal_bins(edges: np.ndarray, mean: float, sd: float) -> np.ndarray:
    """The bins' shares of a normal truncated to the grid."""
    cdf = stats.norm.cdf((edges - mean) / sd)
    return np.diff(cdf) / max(cdf[-1] - cdf[0], 1e-300)


def fit_count_model(t: np.ndarray, counts: np.ndarray) -> dict | None:
    """The number of correct samples given a mode coordinate ``t`` (the rest of the chip from the
    prior): a quadratic mean fitted by least squares after one pass of outlier removal (five robust
    standard deviations: chips failing through another mode), a constant robust spread, and the range
    of ``t`` it was fitted on (outside it the mean continues along its tangent).  ``None`` with fewer
    than 30 chips."""
    t = np.asarray(t, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if t.size < 30 or np.ptp(t) <= 0:
        return None
    coef = np.polyfit(t, c, 2)
    r = c - np.polyval(coef, t)
    sd = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    keep = np.abs(r) <= 5 * max(sd, 0.5)
    coef = np.polyfit(t[keep], c[keep], 2)
    r = c[keep] - np.polyval(coef, t[keep])
    sd = max(1.4826 * float(np.median(np.abs(r))), 0.5)
    lo, hi = (float(q) for q in np.quantile(t, [0.02, 0.98]))
    return {"coef": [float(x) for x in coef], "sd": sd, "range": [lo, hi], "chips": int(t.size)}


def count_mean(model: dict, t: np.ndarray) -> np.ndarray:
    lo, hi = model["range"]
    tc = np.clip(t, lo, hi)
    coef = np.asarray(model["coef"])
    return np.polyval(coef, tc) + np.polyval(np.polyder(coef), tc) * (t - tc)


def sqrt_optimal(cut: float, defensive: float, floor: float, models: list, targets, fallback_norms) -> ModeMixture:
    """The proposal that minimises the variance of importance sampling over the mode coordinate.

    For one mode and one event, with ``P(F | t)`` the probability that a chip with coordinate ``t``
    (the rest from the prior) is in the event, the estimator ``w 1_F`` has second moment
    ``int phi(t)^2 P(F | t) / g(t) dt``, smallest for ``g ~ phi(t) sqrt(P(F | t))`` (not for the
    event's own distribution ``phi(t) P(F | t)``, which gives no gain over plain Monte Carlo where
    ``P(F | t)`` is small).  ``P(F | t)`` comes from each mode's count model,
    ``Phi((k + 0.5 - mean(t)) / sd)``.  Each event gets an equal share of the chips; within an event
    the modes are weighted by their ``int phi sqrt(P(F | t)) dt`` (the optimal allocation), and every
    mode keeps at least ``floor / K`` of them."""
    edges = ModeMixture.grid(cut)
    mid = 0.5 * (edges[1:] + edges[:-1])
    K = len(models)
    mass = np.zeros((K, mid.size))
    logphi = stats.norm.logpdf(mid)
    used = 0
    for k in targets:
        logh = np.full((K, mid.size), -np.inf)
        for m, model in enumerate(models):
            if model is not None:
                logh[m] = logphi + 0.5 * stats.norm.logcdf((k + 0.5 - count_mean(model, mid)) / model["sd"])
        top = logh.max()
        if not np.isfinite(top):
            continue
        h = np.exp(logh - top)
        mass += h / h.sum()
        used += 1
    for m in range(K):
        if mass[m].sum() <= 0:   # no model for this mode (or no event probability): a normal at its beta
            mass[m] = _normal_bins(edges, max(fallback_norms[m], cut), 0.5) * (1.0 / K) * max(used, 1)
    share = mass.sum(axis=1)
    pi = (1 - floor) * share / share.sum() + floor / K
    return ModeMixture(cut, defensive, pi, edges, mass / share[:, None])
