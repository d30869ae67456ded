"""Goodness of fit judged where tail accuracy is decided: KS, Anderson-Darling, QQ data and a tail
check of the 0.1 % and 99.9 % quantiles.

All tests work on probability-integral transforms ``u = F(x | target)`` of the non-stuck,
uncensored observations pooled over levels.  Parameters were estimated from the same data, so
KS/AD p-values are conservative (too large); the tail check is a binomial test of the counts
beyond the model's 0.1 % / 99.9 % quantiles and is the criterion used for model selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

__all__ = ["GoodnessOfFit", "TailCheck", "goodness_of_fit", "tail_check", "QQ_PROBS", "TAIL_P", "TAIL_ALPHA"]

QQ_PROBS = np.array([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999])
TAIL_P = 0.001
TAIL_ALPHA = 0.01


@dataclass(frozen=True)
class GoodnessOfFit:
    """Pooled goodness-of-fit statistics of one candidate model."""

    n: int
    ks_statistic: float
    ks_pvalue: float
    ad_statistic: float
    ad_pvalue: float
    tail_low_observed: int
    tail_high_observed: int
    tail_expected: float
    tail_low_pvalue: float
    tail_high_pvalue: float
    tail_quantile_error: dict = field(default_factory=dict)  # level -> (err at 0.1 %, err at 99.9 %) model units
    qq: dict = field(default_factory=dict)  # level -> {"probs", "empirical", "model"}

    @property
    def tail(self) -> "TailCheck":
        """The tail check (:class:`TailCheck`) of these statistics."""
        return TailCheck(self.n, self.tail_low_observed, self.tail_high_observed, self.tail_expected,
                         self.tail_low_pvalue, self.tail_high_pvalue)

    @property
    def tails_ok(self) -> bool:
        """Both tails' exceedance counts are consistent with 0.1 % (two-sided binomial p > 0.01)."""
        return self.tail.ok

    @property
    def tail_ratio(self) -> tuple[float, float]:
        """Observed / expected counts beyond the model's 0.1 % and 99.9 % quantiles."""
        return self.tail.ratio


@dataclass(frozen=True)
class TailCheck:
    """The tail check every fit's verdict rests on (maximum-likelihood and Bayesian alike): the
    counts of observations beyond the model's 0.1 % and 99.9 % quantiles, each tested against
    Binomial(n, 0.001); it passes when both two-sided p-values exceed ``TAIL_ALPHA`` (0.01)."""

    n: int
    low_observed: int
    high_observed: int
    expected: float
    low_pvalue: float
    high_pvalue: float

    @property
    def ok(self) -> bool:
        return bool(self.low_pvalue > TAIL_ALPHA and self.high_pvalue > TAIL_ALPHA)

    @property
    def ratio(self) -> tuple[float, float]:
        e = max(self.expected, 1e-12)
        return self.low_observed / e, self.high_observed / e

    def describe(self) -> str:
        return (f"{self.low_observed} and {self.high_observed} of {self.n} observations beyond the model's "
                f"0.1 %/99.9 % quantiles, {self.expected:.1f} expected each (binomial p = {self.low_pvalue:.2g}, "
                f"{self.high_pvalue:.2g}; both must exceed {TAIL_ALPHA:g})")


def tail_check(u: np.ndarray) -> TailCheck:
    """:class:`TailCheck` of probability-integral transforms ``u = F(x)`` of the tested rows."""
    u = np.asarray(u, dtype=float)
    n = int(u.size)
    lo = int(np.sum(u < TAIL_P))
    hi = int(np.sum(u > 1 - TAIL_P))
    return TailCheck(n, lo, hi, n * TAIL_P, _binom_two_sided(lo, n, TAIL_P), _binom_two_sided(hi, n, TAIL_P))


def _binom_two_sided(k: int, n: int, p: float) -> float:
    if n == 0:
        return 1.0
    return float(stats.binomtest(int(k), int(n), p).pvalue)


def goodness_of_fit(cdf, ppf, x, target, level, centres, keep) -> GoodnessOfFit:
    """Statistics for a model with vectorized ``cdf(x, target)`` and ``ppf(u, target)``.

    ``keep`` selects the rows to test (non-stuck, uncensored).
    """
    x = x[keep]
    target = target[keep]
    level = level[keep]
    u = np.clip(cdf(x, target), 1e-300, 1 - 1e-16)
    n = int(u.size)
    if n < 8:
        nan = float("nan")
        return GoodnessOfFit(n, nan, nan, nan, nan, 0, 0, 0.0, nan, nan)
    ks = stats.kstest(u, "uniform")
    zs = np.sort(special.ndtri(u))
    ad_stat, ad_p = _anderson_normal_known(zs)
    tc = tail_check(u)
    qq = {}
    terr = {}
    for k, c in enumerate(centres):
        sel = level == k
        if np.sum(sel) < 20:
            continue
        tk = float(np.median(target[sel]))
        # a level may be a bin of nearby targets: compare deviations, shifted to the bin's centre
        emp = np.quantile(x[sel] - target[sel], QQ_PROBS) + tk
        mod = ppf(QQ_PROBS, np.full(QQ_PROBS.shape, tk))
        qq[float(c)] = {"probs": QQ_PROBS.tolist(), "empirical": emp.tolist(), "model": np.asarray(mod).tolist()}
        terr[float(c)] = (float(mod[0] - emp[0]), float(mod[-1] - emp[-1]))
    return GoodnessOfFit(
        n=n, ks_statistic=float(ks.statistic), ks_pvalue=float(ks.pvalue), ad_statistic=ad_stat, ad_pvalue=ad_p,
        tail_low_observed=tc.low_observed, tail_high_observed=tc.high_observed, tail_expected=tc.expected,
        tail_low_pvalue=tc.low_pvalue, tail_high_pvalue=tc.high_pvalue,
        tail_quantile_error=terr, qq=qq,
    )


def _anderson_normal_known(z_sorted: np.ndarray) -> tuple[float, float]:
    """Anderson-Darling statistic of N(0,1) normal scores, p-value from the asymptotic law
    (case 0: fully specified null; Marsaglia & Marsaglia 2004 via scipy's ``anderson_ksamp`` is not
    applicable, so the limiting distribution is evaluated by its series)."""
    n = z_sorted.size
    logF = special.log_ndtr(z_sorted)
    logS = special.log_ndtr(-z_sorted[::-1])
    i = np.arange(1, n + 1)
    a2 = float(-n - np.sum((2 * i - 1) * (logF + logS)) / n)
    return a2, _ad_pvalue(a2)


def _ad_pvalue(a2: float) -> float:
    """Upper-tail probability of the asymptotic Anderson-Darling distribution (Marsaglia 2004 approx.)."""
    if a2 <= 0:
        return 1.0
    if a2 < 2:
        cdf = np.exp(-1.2337141 / a2) / np.sqrt(a2) * (
            2.00012 + (0.247105 - (0.0649821 - (0.0347962 - (0.011672 - 0.00168691 * a2) * a2) * a2) * a2) * a2)
    else:
        cdf = np.exp(-np.exp(1.0776 - (2.30695 - (0.43424 - (0.082433 - (0.008056 - 0.0003146 * a2) * a2) * a2) * a2) * a2))
    return float(min(max(1 - cdf, 0.0), 1.0))
