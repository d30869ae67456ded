"""The projection-mixture proposal: joint count model, exact draws and densities, unbiased weights, and
the variance it saves on chips that fail through two modes at once."""

import math

import numpy as np
import pytest
from scipy import stats

from reliability.sampling.hybrid import HybridRun
from reliability.sampling.modes import Modes
from reliability.sampling.proposals import ModeMixture, sqrt_optimal
from reliability.sampling.projected import (NOT_EVALUATED, ProjectionMixture, StageBlend, fit_joint_count_model,
                                            fit_projection_mixture, joint_count_mean)


def test_joint_count_model_recovers_cross_terms_and_falls_back_with_few_chips():
    rng = np.random.default_rng(0)
    T = rng.normal(1.0, 1.5, size=(3000, 3))
    mean = 500 - 10 * T[:, 0] - 8 * T[:, 1] - 3 * T[:, 0] * T[:, 1] + 2 * T[:, 2] ** 2
    c = np.round(mean + rng.normal(0, 5, T.shape[0]))
    c[:30] -= 200                                       # chips failing through something else
    m = fit_joint_count_model(T, c)
    assert m["cross"] and m["chips"] == 3000
    assert abs(m["sd"] - 5) < 0.5
    probe = rng.normal(1.0, 1.5, size=(500, 3))
    truth = 500 - 10 * probe[:, 0] - 8 * probe[:, 1] - 3 * probe[:, 0] * probe[:, 1] + 2 * probe[:, 2] ** 2
    err = joint_count_mean(m, probe) - truth           # noise 5, 3000 chips, 10 coefficients: ~0.3
    assert math.sqrt(np.mean(err**2)) < 0.6 and np.max(np.abs(err)) < 3.0
    # 1 + 3 + 6 = 10 coefficients with cross terms: under 100 chips they are left out
    few = fit_joint_count_model(T[:80], c[:80])
    assert few is not None and not few["cross"] and len(few["coef"]) == 7
    assert fit_joint_count_model(T[:60], c[:60]) is None          # under 10 chips per coefficient


def _mixture(G):
    return ProjectionMixture(G, np.array([0.3, 0.7]), np.array([[3.0, 0.5], [1.0, 2.5]]),
                             np.linalg.cholesky(np.array([[[0.5, 0.1], [0.1, 0.4]], [[0.3, 0.0], [0.0, 0.6]]])))


def test_projection_mixture_draws_its_density_and_the_prior_given_t():
    rng = np.random.default_rng(1)
    dim = 7
    U = rng.standard_normal((2, dim))
    U /= np.linalg.norm(U, axis=1, keepdims=True)                 # unit, not orthogonal
    G = U @ U.T
    pm = _mixture(G)
    n = 200_000
    flat = rng.standard_normal((n, dim))
    drawn, C = pm.coefficients(rng, flat @ U.T)
    flat += C @ U                                                 # the chips z = xi + C U
    proj = flat @ U.T
    assert np.all(drawn == -1)
    # the projections follow the mixture: its mean and covariance
    mu = pm.weights @ pm.means
    cov = sum(w * (c @ c.T + np.outer(m, m)) for w, m, c in zip(pm.weights, pm.means, pm.chols)) - np.outer(mu, mu)
    assert np.allclose(proj.mean(0), mu, atol=0.01)
    assert np.allclose(np.cov(proj.T), cov, atol=0.02)
    # the rest of z is the prior's: unit variance and independent of t in the orthogonal complement
    V = np.linalg.svd(U)[2][2:]                                   # (dim - 2) directions orthogonal to U
    rest = flat @ V.T
    assert np.allclose(rest.std(0), 1, atol=0.01) and np.allclose(rest.mean(0), 0, atol=0.01)
    assert np.max(np.abs(np.corrcoef(np.hstack([rest, proj]).T)[:-2, -2:])) < 0.01
    # the density is normalised and log_ratio is the ratio to the prior of t
    g = np.linspace(-8, 10, 1201)
    tt = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    assert abs(np.exp(pm.log_density(tt)).sum() * (g[1] - g[0]) ** 2 - 1) < 1e-3
    prior = stats.multivariate_normal(np.zeros(2), G).logpdf(tt)
    assert np.allclose(pm.log_ratio(tt), pm.log_density(tt) - prior)


@pytest.mark.slow
def test_blended_stage_weights_are_unbiased_inside_h():
    """A mode mixture first stage and a blend of it with a projection mixture: with the balance-
    heuristic weights E[w 1_A 1_H] = P(A, H), the draws outside H counting as zeros."""
    rng = np.random.default_rng(2)
    dim = 6
    U = np.linalg.qr(rng.standard_normal((dim, 2)))[0].T
    run = HybridRun(Modes(U, np.array([3.0, 3.4]), 1.0, 0, 0), cut=1.5, defensive=0.2, subset=None)
    q1 = ModeMixture.from_normals(1.5, 0.2, 2, [(2.2, 0.4), (3.0, 0.5)])
    run.stages = [q1, StageBlend([q1, _mixture(U @ U.T)], np.array([0.4, 0.6]))]
    n = 200_000
    flat = rng.standard_normal((2 * n, dim))
    p0 = run.place(rng, flat[:n] @ U.T, 0)[2]
    p1 = run.place(rng, flat[n:] @ U.T, 1)[2]
    proj = np.concatenate([p0, p1])
    run.stage = np.repeat([0, 1], [n, n])
    inside = ~run.outside(proj)
    assert inside[:n].all() and 0.5 < inside[n:].mean() < 1       # the mixture also draws outside H
    w = np.where(inside, np.exp(run.log_weight(proj)), 0.0)
    cases = {"H": (np.ones(2 * n, bool), 1 - stats.norm.cdf(1.5) ** 2),
             "t1 >= 3": (proj[:, 0] >= 3, stats.norm.sf(3)),
             "t1, t2 >= 2": ((proj[:, 0] >= 2) & (proj[:, 1] >= 2), stats.norm.sf(2) ** 2),
             "t1 + t2 >= 4, both < 2.5": ((proj.sum(1) >= 4) & (proj.max(1) < 2.5), None)}
    for name, (ind, p) in cases.items():
        if p is None:   # a region across the cut: P(A, H) by quadrature
            g = np.linspace(-6, 2.5, 3401)
            dx = g[1] - g[0]
            a, b = np.meshgrid(g, g, indexing="ij")
            region = (a + b >= 4) & (np.maximum(a, b) >= 1.5)
            p = float(np.sum(stats.norm.pdf(a) * stats.norm.pdf(b) * region) * dx * dx)
        f = w * ind
        se = f.std() / math.sqrt(f.size)
        assert abs(f.mean() - p) < 4 * se + 1e-12, (name, f.mean(), p, se)


@pytest.mark.slow
def test_projected_stage_reaches_chips_failing_through_two_modes():
    """Two orthogonal modes whose coordinates add up to failure (count mean 100 - 12 t1 - 12 t2): the
    per-mode proposal reaches the diagonal only through its defensive prior; the blend with a projection
    mixture fitted to the joint count model has less than a fifth of its relative variance per chip
    (computed on a grid in t-space: 11 against 276)."""
    dim = 5
    U = np.eye(dim)[:2]
    k, sd, cut = 28, 3.0, 2.5
    joint = {"coef": [100.0, -12.0, -12.0, 0.0, 0.0, 0.0], "sd": sd, "cross": True, "chips": 4000}
    # per-mode count models as the first stage would fit them: the other coordinate is prior noise
    per_mode = [{"coef": [0.0, -12.0, 100.0], "sd": math.hypot(sd, 12.0), "range": [2.5, 7.0], "chips": 2000}] * 2
    norms = np.array([6.0, 6.0])
    q1 = ModeMixture.from_normals(cut, 0.2, 2, [(4.0, 0.6), (5.5, 0.5)])
    fitted = sqrt_optimal(cut, 0.2, 0.25, per_mode, [k], norms)
    pm, info = fit_projection_mixture(U, norms, cut, joint, [k], np.random.SeedSequence(0))
    assert pm is not None and info["resampling_ess"] > 2000
    projected = StageBlend([q1, fitted, pm], np.array([0.2, 0.4, 0.4]))
    g = np.linspace(-5, 12, 1701)
    dx = g[1] - g[0]
    t = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    H = t.max(1) >= cut
    phi = stats.norm.pdf(t).prod(1)
    pf = stats.norm.cdf((k + 0.5 - joint_count_mean(joint, t)) / sd)
    p = float(np.sum(phi * pf * H) * dx * dx)

    def relvar(stage):    # E_q[w^2 1_F 1_H] / p^2 - 1, q the final mixture 0.25 first + 0.75 stage
        lq = np.logaddexp(math.log(0.25) + q1.log_ratio(t[H]), math.log(0.75) + stage.log_ratio(t[H]))
        return float(np.sum(phi[H] * pf[H] * np.exp(-lq)) * dx * dx) / p**2 - 1

    per_mode_rv, projected_rv = relvar(fitted), relvar(projected)
    assert projected_rv < 0.2 * per_mode_rv, (projected_rv, per_mode_rv)


def test_not_evaluated_chips_are_never_in_an_event():
    counts = np.array([3, NOT_EVALUATED, 7])
    for k in (0, 5, 10, 10**9):
        assert not (counts <= k)[1]


def test_projection_mixture_is_refused_when_resampling_cannot_reach_the_events():
    """Design points at 3 but an event that needs t1 >= 9: the resampling's effective sample size is
    tiny and the fit is refused with the reason (the guard then has the per-mode candidates only)."""
    U = np.eye(4)[:2]
    joint = {"coef": [370.0, -30.0, 0.0, 0.0, 0.0, 0.0], "sd": 0.5, "cross": True, "chips": 4000}
    pm, info = fit_projection_mixture(U, np.array([3.0, 3.0]), 2.5, joint, [100], np.random.SeedSequence(1))
    assert pm is None and info["resampling_ess"] < 2000 and "effective sample size" in info["reason"]
    # a reachable event with the same model is fitted, and its mixture sits where t1 fails
    pm, info = fit_projection_mixture(U, np.array([3.0, 3.0]), 2.5, joint, [280], np.random.SeedSequence(1))
    assert pm is not None and abs(float(pm.weights @ pm.means[:, 0]) - 3.2) < 0.3


def test_a_failed_mixture_fit_is_reported_not_raised(monkeypatch):
    from sklearn.mixture import GaussianMixture

    def broken(self, X):
        raise ValueError("ill-defined empirical covariance")

    monkeypatch.setattr(GaussianMixture, "fit", broken)
    joint = {"coef": [370.0, -30.0, 0.0, 0.0, 0.0, 0.0], "sd": 0.5, "cross": True, "chips": 4000}
    pm, info = fit_projection_mixture(np.eye(4)[:2], np.array([3.0, 3.0]), 2.5, joint, [280], np.random.SeedSequence(1))
    assert pm is None and "ill-defined" in info["reason"]
