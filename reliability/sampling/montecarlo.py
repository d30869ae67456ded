"""Plain Monte Carlo: independent chips keyed by index, exact binomial intervals, order-statistic
quantiles.  The reference every other estimator is checked against where it is precise enough."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from reliability import streams
from reliability.sampling.protocol import EstimatorRun, TailProblem
from reliability.sampling.results import QuantileEstimate, TailEstimate
from reliability.sampling.subset import score_indexed
from reliability.sampling.verdicts import MIN_EVENTS

__all__ = ["PlainMonteCarlo"]


class PlainMonteCarlo:
    """Plain Monte Carlo (a :class:`~reliability.sampling.protocol.TailEstimator`): ``budget``
    chips ``0 .. budget - 1`` of the seed, the events' fractions with exact (Clopper-Pearson)
    intervals and the quantiles' order statistics with binomial intervals.

    Parameters
    ----------
    chunk : int
        Chips scored per call of the scorer (does not change the result).
    """

    name = "monte-carlo"

    def __init__(self, chunk: int = 2048):
        self.chunk = int(chunk)

    def run(self, problem: TailProblem, *, budget: int, rng=0, checkpoint=None, progress=None) -> EstimatorRun:
        """Estimate the problem's events and quantiles from ``budget`` independent chips
        (``checkpoint`` is not supported and ignored)."""
        seed = streams.as_seed(rng)
        budget = int(budget)
        n = problem.n_samples
        counts = []
        for s0 in range(0, budget, self.chunk):
            c, _ = score_indexed(problem.scorer, problem.latent, seed, range(s0, min(budget, s0 + self.chunk)))
            counts.append(c)
            if progress is not None:
                progress(min(budget, s0 + self.chunk), budget)
        counts = np.concatenate(counts)
        N = counts.size
        est = []
        for a, k in zip(problem.below, problem.count_thresholds):
            m = int(np.sum(counts <= k))
            p = m / N
            ci = stats.binomtest(m, N).proportion_ci(0.95, method="exact")
            reasons = [] if m >= MIN_EVENTS else [f"only {m} chips in the event (< {MIN_EVENTS})"]
            est.append(TailEstimate(a, p, math.sqrt(p * (1 - p) / N), (float(ci.low), float(ci.high)), self.name, N,
                                    float(N), not reasons, "; ".join(reasons) or None, int(k)))
        qs = []
        srt = np.sort(counts)
        for kq in problem.quantiles:
            i = max(int(math.ceil(kq * N)) - 1, 0)
            # order-statistic interval for the quantile (binomial)
            lo_i = int(stats.binom.ppf(0.025, N, kq))
            hi_i = min(int(stats.binom.ppf(0.975, N, kq)), N - 1)
            ok = kq * N >= MIN_EVENTS
            qs.append(QuantileEstimate(kq, srt[i] / n, (srt[max(lo_i - 1, 0)] / n, srt[hi_i] / n), ok,
                                       None if ok else f"k x N = {kq * N:.1f} < {MIN_EVENTS} chips below the quantile"))
        return EstimatorRun(tuple(est), tuple(qs), N, self.name, True, {"latent_dim": problem.latent.dim})
