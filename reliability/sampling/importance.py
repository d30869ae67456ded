"""Importance sampling with a mean shift to the design point, mixed with the nominal law.

The proposal is ``q = a N(0, I) + (1 - a) N(mu, I)`` in the chips' latent space, with ``mu`` the
design point: the most probable latent vector (smallest norm) on the boundary of a smooth
surrogate of the event, found by the HL-RF iteration ``z <- (grad g . z - g) grad g / |grad g|^2``
on ``g(z) = soft count(z) - (k + 1/2)`` (soft count: sum over samples of sigmoid(margin / T)),
with gradients from the network's backward pass through the mapping.  Weights are
``w = 1 / (a + (1 - a) exp(mu . z - |mu|^2 / 2))``; any ``mu`` gives an unbiased estimate, the design
point only makes it efficient.  Diagnostics: effective sample size of the weighted indicators and
the Pareto shape k-hat of their largest weights (PSIS,
:func:`~reliability.sampling.verdicts.pareto_khat`): k-hat > 0.7 means the variance estimate, and
hence the interval, cannot be trusted.

Measured findings (docs/tail-estimation.md): in 10^3..10^5 latent dimensions a single mean shift
misses much of the failure mass; this estimator is kept as a swappable strategy and compared with
subset simulation by the benchmark, not used by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reliability import streams
from reliability.errors import ReliabilityError
from reliability.sampling.protocol import EstimatorRun, TailProblem
from reliability.sampling.results import TailEstimate
from reliability.sampling.verdicts import HIDDEN_LAYERS_REASON, MAX_KHAT, MIN_EVENTS, pareto_khat

__all__ = ["MeanShiftImportanceSampling", "MeanShiftRun", "WeightedEstimate"]


@dataclass(frozen=True)
class MeanShiftRun:
    """The chips of a mean-shift run (:meth:`MeanShiftImportanceSampling.simulate`).

    Attributes
    ----------
    logw : numpy.ndarray
        Log importance weights of the chips.
    counts : numpy.ndarray
        Their numbers of correct samples.
    mu_norm : float
        Norm of the design point (the shift).
    temperature : float
        Temperature of the soft count the design point was searched on.
    evaluations : int
        Chip evaluations, pilot and design-point search included.
    """

    logw: np.ndarray
    counts: np.ndarray
    mu_norm: float
    temperature: float
    evaluations: int


@dataclass(frozen=True)
class WeightedEstimate:
    """``P(count <= k)`` from weighted chips (:meth:`MeanShiftImportanceSampling.estimate`): the
    estimate, its standard error, the effective sample size, the Pareto k-hat of the event's weights
    (nan with fewer than 20 chips in the event) and the chips in the event."""

    p: float
    se: float
    ess: float
    khat: float
    n_in_event: int


class MeanShiftImportanceSampling:
    """One mean shift to the design point (module docstring); a
    :class:`~reliability.sampling.protocol.TailEstimator` for thresholds only.

    Parameters
    ----------
    defensive : float
        Weight ``a`` of the nominal law in the proposal, in (0, 1).
    search_iterations : int
        HL-RF steps of the design-point search.
    temperature : float, optional
        Temperature of the soft count (default: from a pilot of nominal chips).
    """

    name = "importance-sampling (mean shift)"

    def __init__(self, defensive: float = 0.1, search_iterations: int = 30, temperature: float | None = None):
        if not (0 < defensive < 1):
            raise ReliabilityError(f"defensive={defensive!r}: the nominal law's weight must be in (0, 1); "
                                   "the default is 0.1.")
        self.a = defensive
        self.iterations = search_iterations
        self.temperature = temperature
        self.max_norm = 8.0   # Phi(-8) ~ 6e-16

    # ------------------------------------------------------------------ design point
    def design_point(self, scorer, latent, k: int, T: float):
        z = [np.zeros((1,) + s, dtype=np.float64) for _, _, s in latent.blocks]
        for _ in range(self.iterations):
            g, gr = scorer.gradient([b.astype(latent.dtype) for b in z], k, T)
            gg = sum(float(np.sum(v * v)) for v in gr)
            if gg <= 0:
                break
            gz = sum(float(np.sum(v * b)) for v, b in zip(gr, z))
            c = (gz - g) / gg
            new = [c * v for v in gr]
            norm = math.sqrt(sum(float(np.sum(b * b)) for b in new))
            if norm > self.max_norm:          # beyond any probability of interest: keep the direction
                new = [b * (self.max_norm / norm) for b in new]
            z = [0.5 * (a + b) for a, b in zip(z, new)]   # damped HL-RF step
        return z

    # ------------------------------------------------------------------ the estimator
    def run(self, problem: TailProblem, *, budget: int, rng=0, checkpoint=None, progress=None) -> EstimatorRun:
        """Estimate the problem's events (quantiles are refused; ``checkpoint`` and ``progress`` are
        not supported and ignored)."""
        if problem.quantiles:
            raise ReliabilityError(f"quantiles={list(problem.quantiles)}: mean-shift importance sampling estimates "
                                   "thresholds (below) only; use the default method for quantiles.")
        seed = streams.as_seed(rng)
        scorer = problem.scorer
        out = self.simulate(scorer, problem.latent, list(problem.count_thresholds), int(budget), seed)
        hidden = scorer.analog_layers > 1
        estimates = []
        for a, k in zip(problem.below, problem.count_thresholds):
            e = self.estimate(out.logw, out.counts, k)
            p, se, ess, khat = e.p, e.se, e.ess, e.khat
            reasons = []
            if e.n_in_event < MIN_EVENTS:
                reasons.append(f"only {e.n_in_event} weighted chips in the event (< {MIN_EVENTS})")
            if math.isfinite(khat) and khat > MAX_KHAT:
                reasons.append(f"Pareto k-hat {khat:.2f} > {MAX_KHAT}: weights too heavy-tailed for a trustworthy "
                               "variance")
            if ess < 30:
                reasons.append(f"effective sample size {ess:.0f} < 30")
            if hidden:
                reasons.append(HIDDEN_LAYERS_REASON)
            lo, hi = max(p - 1.96 * se, 0.0), min(p + 1.96 * se, 1.0)
            estimates.append(TailEstimate(a, p, se, (lo, hi), self.name, int(out.evaluations), ess, not reasons,
                                          "; ".join(reasons) or None, int(k), None if not math.isfinite(khat) else khat))
        return EstimatorRun(tuple(estimates), (), int(out.evaluations), self.name, True,
                            {"latent_dim": problem.latent.dim, "design_point_norm": out.mu_norm,
                             "temperature": out.temperature})

    def simulate(self, scorer, latent, count_thresholds: list[int], budget: int, seed: int,
                 chunk: int = 256) -> MeanShiftRun:
        """Pilot, design point of the deepest event, then ``budget`` minus the evaluations so far
        chips from the shifted mixture (keyed by ``seed``)."""
        if not count_thresholds:
            raise ReliabilityError("count_thresholds=[]: importance sampling estimates thresholds (below); "
                                   "give at least one.")
        # tie-breaker scale and temperature from a small pilot at the nominal law
        pilot = min(100, budget // 20)
        z0 = latent.draw_chips(seed, np.arange(pilot))
        _, mg0 = getattr(scorer, "local", scorer).sample_margins(z0)
        # temperature: the typical chip-to-chip spread of one sample's margin
        T = self.temperature or float(max(np.median(np.std(mg0, axis=0)), 1e-3))
        kmin = min(count_thresholds)
        mu = self.design_point(scorer, latent, kmin, T)
        mu32 = [b.astype(latent.dtype) for b in mu]
        mu_norm2 = float(sum(np.sum(b * b) for b in mu))
        rng = streams.stream(seed, streams.MEAN_SHIFT_IS)
        n = max(0, budget - scorer.evaluations)
        logw, counts = [], []
        for s0 in range(0, n, chunk):
            S = min(chunk, n - s0)
            z = latent.draw(rng, S)
            shifted = rng.random(S) >= self.a
            for b, m in zip(z, mu32):
                b[shifted] += m[0]
            dot = sum(np.sum((b.astype(np.float64) * m).reshape(S, -1), axis=1) for b, m in zip(z, mu))
            # log w = -log(a + (1 - a) exp(mu.z - |mu|^2 / 2))
            e = dot - 0.5 * mu_norm2
            logw.append(-np.logaddexp(math.log(self.a), math.log(1 - self.a) + e))
            cnt, _ = scorer.counts_and_margins(z)
            counts.append(cnt)
        logw = np.concatenate(logw)
        counts = np.concatenate(counts)
        return MeanShiftRun(logw, counts, math.sqrt(mu_norm2), T, scorer.evaluations)

    @staticmethod
    def estimate(logw, counts, k) -> WeightedEstimate:
        """Estimate, standard error, ESS and Pareto k-hat for P(count <= k)."""
        ind = counts <= k
        w = np.exp(logw)
        f = w * ind
        N = f.size
        p = float(f.mean())
        se = float(f.std(ddof=1) / math.sqrt(N)) if N > 1 else float("nan")
        ess = float(f.sum() ** 2 / np.sum(f * f)) if np.any(f > 0) else 0.0
        khat = pareto_khat(logw[ind]) if np.count_nonzero(ind) >= 20 else float("nan")
        return WeightedEstimate(p, se, ess, khat, int(np.count_nonzero(ind)))
