"""A proposal over the failure modes' joint coordinates, for chips that fail through two modes at once.

Why: the hybrid's per-mode proposal (:class:`reliability.sampling.proposals.ModeMixture`) moves one mode
coordinate ``t_m = u_m . z`` at a time and draws the others from the prior.  A chip that fails because
two coordinates are both moderately high (say 2.9 and 2.1, against design points at 4.3-5.1) is then
reached only through the defensive prior, where the weights are largest.  Measured on 4 million
plain Monte Carlo chips of the 64-48-24-10 benchmark MLP at p ~ 1e-4: the failing chips whose largest
coordinate lies in [2.5, 3.5) have a second largest of 2.1-2.4 on average (1.1 for prior chips with
the same largest coordinate), hold about 25 % of the event and carry 60 of its 80 units of relative
variance per chip.

Here the ``K`` coordinates ``t = U z`` are moved together: ``t`` is drawn from a Gaussian mixture in
``R^K`` and the rest of ``z`` exactly from the prior given ``t`` (``z = xi + U^T G^-1 (t - U xi)``,
``G = U U^T``), so that ``q / phi`` is the ratio of two ``K``-dimensional densities and the weights
stay bounded in any latent dimension.  The mixture is fitted to the variance-optimal density
``phi_K(t) sqrt(P(F | t))``, with ``P(F | t)`` from a count model quadratic in ``t`` (cross terms
included: :func:`fit_joint_count_model`), by sampling-importance-resampling and expectation
maximisation (scikit-learn).  Only the fit is approximate; drawing and the density are exact, so the
estimator stays unbiased whatever the fit's quality, which decides only its variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from reliability.streams import as_generator

__all__ = ["NOT_EVALUATED", "ProjectionMixture", "StageBlend", "fit_joint_count_model", "fit_projection_mixture",
           "joint_count_mean", "joint_features"]

#: the count recorded for a drawn chip outside the region H, which is not evaluated: it is never in an
#: event (``count <= k``), so it enters the importance-sampling mean as a zero
NOT_EVALUATED = np.iinfo(np.int64).max
#: a joint count model needs this many chips per coefficient (else the cross terms are left out)
CHIPS_PER_COEFFICIENT = 10


def joint_features(T: np.ndarray, cross: bool = True) -> np.ndarray:
    """Columns ``1, t_m, t_a t_b`` (``a <= b``; with ``cross=False`` only the squares)."""
    T = np.asarray(T, dtype=np.float64)
    K = T.shape[1]
    cols = [np.ones(T.shape[0])] + [T[:, m] for m in range(K)]
    cols += [T[:, a] * T[:, b] for a in range(K) for b in range(a, K)] if cross else [T[:, m] ** 2 for m in range(K)]
    return np.stack(cols, axis=1)


def fit_joint_count_model(T: np.ndarray, counts: np.ndarray) -> dict | None:
    """The number of correct samples given all mode coordinates ``T`` (n, K): a quadratic mean with cross
    terms (without them when there are fewer than ten chips per coefficient) fitted by least squares
    after one pass of outlier removal (five robust standard deviations), and a constant robust spread.
    ``None`` with fewer than ten chips per coefficient of the model without cross terms."""
    T = np.asarray(T, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    n, K = T.shape
    cross = n >= CHIPS_PER_COEFFICIENT * (1 + K + K * (K + 1) // 2)
    if not cross and n < CHIPS_PER_COEFFICIENT * (1 + 2 * K):
        return None
    X = joint_features(T, cross)
    coef = np.linalg.lstsq(X, c, rcond=None)[0]
    r = c - X @ coef
    sd = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    keep = np.abs(r) <= 5 * max(sd, 0.5)
    coef = np.linalg.lstsq(X[keep], c[keep], rcond=None)[0]
    r = c[keep] - X[keep] @ coef
    sd = max(1.4826 * float(np.median(np.abs(r))), 0.5)
    return {"coef": [float(x) for x in coef], "sd": sd, "cross": bool(cross), "chips": int(n)}


def joint_count_mean(model: dict, T: np.ndarray, block: int = 65536) -> np.ndarray:
    """The model's mean count at the rows of ``T`` (in blocks: the features of 400,000 rows of 20
    coordinates would take 0.7 GB)."""
    T = np.asarray(T, dtype=np.float64)
    coef = np.asarray(model["coef"])
    return np.concatenate([joint_features(T[i:i + block], model["cross"]) @ coef for i in range(0, T.shape[0], block)]
                          or [np.zeros(0)])


def _mvn_logpdf(T: np.ndarray, mean: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """log N(T; mean, chol chol^T) for rows of T."""
    from scipy.linalg import solve_triangular

    K = T.shape[1]
    y = solve_triangular(chol, (T - mean).T, lower=True)
    return -0.5 * np.sum(y * y, axis=0) - np.sum(np.log(np.diag(chol))) - 0.5 * K * math.log(2 * math.pi)


@dataclass
class ProjectionMixture:
    """Proposal: ``t = U z`` from a Gaussian mixture (``weights``, ``means``, lower Cholesky factors
    ``chols`` of the covariances), the rest of ``z`` from the prior given ``t``.  Its support is all of
    ``R^K``: chips drawn outside the hybrid's region H are not evaluated (:data:`NOT_EVALUATED`)."""

    G: np.ndarray           # (K, K) = U U^T, the prior covariance of t
    weights: np.ndarray     # (J,)
    means: np.ndarray       # (J, K)
    chols: np.ndarray       # (J, K, K)

    @property
    def K(self) -> int:
        return int(self.G.shape[0])

    def log_density(self, T: np.ndarray) -> np.ndarray:
        T = np.asarray(T, dtype=np.float64).reshape(-1, self.K)
        return logsumexp(np.stack([math.log(w) + _mvn_logpdf(T, m, c)
                                   for w, m, c in zip(self.weights, self.means, self.chols)]), axis=0)

    def log_ratio(self, proj: np.ndarray) -> np.ndarray:
        """``log(q / phi)`` for chips with projections ``proj`` (..., K): a ratio of K-dimensional densities."""
        proj = np.asarray(proj, dtype=np.float64)
        T = proj.reshape(-1, self.K)
        prior = _mvn_logpdf(T, np.zeros(self.K), np.linalg.cholesky(self.G))
        return (self.log_density(T) - prior).reshape(proj.shape[:-1])

    def coefficients(self, rng: np.random.Generator, proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For prior draws ``xi`` with projections ``proj`` (S, K): ``t`` from the mixture and ``C``
        (S, K) such that ``z = xi + C @ U`` has ``U z = t`` and the rest of ``z`` from the prior
        given ``t``; returns -1 for the drawn mode (none) and ``C``."""
        S = proj.shape[0]
        j = rng.choice(self.weights.size, size=S, p=self.weights)
        eps = rng.standard_normal((S, self.K))
        t = self.means[j] + np.einsum("sab,sb->sa", self.chols[j], eps)
        return np.full(S, -1, dtype=np.int64), np.linalg.solve(self.G, (t - proj).T).T

    def describe(self) -> dict:
        return {"kind": "projection-mixture", "components": int(self.weights.size)}


@dataclass
class StageBlend:
    """A fixed mixture of proposals (each with ``log_ratio`` and ``coefficients``)."""

    parts: list
    weights: np.ndarray

    def log_ratio(self, proj: np.ndarray) -> np.ndarray:
        terms = [math.log(w) + p.log_ratio(proj) for w, p in zip(self.weights, self.parts)]
        return np.logaddexp.reduce(np.stack(terms), axis=0)

    def coefficients(self, rng: np.random.Generator, proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each chip from one part (drawn with :attr:`weights`): the parts' drawn modes and ``C``."""
        S = proj.shape[0]
        part = rng.choice(len(self.parts), size=S, p=self.weights)
        drawn = np.full(S, -1, dtype=np.int64)
        C = np.zeros(proj.shape)
        for i, p in enumerate(self.parts):
            sel = part == i
            if sel.any():
                drawn[sel], C[sel] = p.coefficients(rng, proj[sel])
        return drawn, C

    def describe(self) -> dict:
        return {"kind": "blend", "weights": [float(w) for w in self.weights],
                "parts": [p.describe() for p in self.parts]}


def fit_projection_mixture(U: np.ndarray, norms: np.ndarray, cut: float, model: dict, targets, rng,
                           samples: int = 400_000, resample: int = 30_000, min_ess: float = 2_000.0
                           ) -> tuple[ProjectionMixture | None, dict]:
    """A Gaussian mixture close to ``phi_K(t) sqrt(P(F_k | t))`` on ``H = {max t >= cut}`` (an equal
    mixture over the events ``count <= k`` in ``targets``), ``P(F | t)`` from the joint count model.

    Sampling-importance-resampling: ``samples`` draws of ``t`` around the design points (normals at
    ``beta_m G[:, m]`` with covariance ``1.5^2 G``), weighted by the target, ``resample`` of them drawn in
    proportion and fitted with ``2 K`` (at most 16) full-covariance components.  Returns ``(None,
    info)`` when the resampling's effective sample size is under ``min_ess`` (the target is then too
    far from the design points for the fit to be trusted).  ``rng``: a Generator, or anything
    :func:`reliability.streams.as_generator` accepts; the hybrid passes a keyed stream, so that a resumed
    run fits the same mixture."""
    from sklearn.mixture import GaussianMixture

    rng = as_generator(rng)
    K = U.shape[0]
    G = U @ U.T
    L = np.linalg.cholesky(G)
    s = 1.5
    mus = np.asarray(norms, dtype=np.float64)[:, None] * G          # design points' t (rows)
    comp = rng.integers(0, K, samples)
    T = mus[comp] + s * rng.standard_normal((samples, K)) @ L.T
    lprop = logsumexp(np.stack([_mvn_logpdf(T, mus[j], s * L) for j in range(K)]), axis=0) - math.log(K)
    H = T.max(axis=1) >= cut
    lprior = _mvn_logpdf(T, np.zeros(K), L)
    mean = joint_count_mean(model, T)
    per_event = []
    for k in targets:
        lw = np.where(H, lprior + 0.5 * stats.norm.logcdf((k + 0.5 - mean) / model["sd"]) - lprop, -np.inf)
        if np.isfinite(lw).any():
            per_event.append(lw - logsumexp(lw))
    if not per_event:
        return None, {"reason": "no event has probability in the region"}
    lw = logsumexp(np.stack(per_event), axis=0) - math.log(len(per_event))
    p = np.exp(lw - logsumexp(lw))
    ess = float(1.0 / np.sum(p * p))
    info = {"resampling_ess": ess, "resampling_draws": samples}
    if ess < min_ess:
        info["reason"] = f"resampling effective sample size {ess:.0f} < {min_ess:.0f}"
        return None, info
    idx = rng.choice(samples, size=resample, p=p)
    J = min(2 * K, 16)
    try:
        gm = GaussianMixture(n_components=J, covariance_type="full", reg_covar=1e-3,
                             random_state=int(rng.integers(2**31 - 1))).fit(T[idx])
        pm = ProjectionMixture(G, gm.weights_ / gm.weights_.sum(), gm.means_, np.linalg.cholesky(gm.covariances_))
    except (ValueError, np.linalg.LinAlgError) as err:     # a degenerate fit: the guard does without it
        info["reason"] = f"the Gaussian mixture fit failed: {err}"
        return None, info
    info["components"] = J
    return pm, info
