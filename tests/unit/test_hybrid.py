"""The hybrid tail estimator: mode search, the mixture proposal's weights, checkpoints, flags.

Closed forms: a linear classifier whose two evaluation samples read disjoint weights fails through
two independent mechanisms, each a half-space of the latent space at reliability index
``beta_i = margin_i / (sqrt(2) sigma max|W|)``, so ``P(acc <= 1/2) = 1 - Phi(beta_1) Phi(beta_2)``.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import integrate, stats

from tests.unit._onnx_models import linear_onnx
from reliability.cim import load_onnx
from reliability.cim.latent import LatentChips
from reliability.cim.simulate import ChipSimulator
from reliability.sampling import estimate_tail
from reliability.sampling.hybrid import HybridRun
from reliability.sampling.modes import Modes, find_modes
from reliability.sampling.proposals import ModeMixture, count_mean, fit_count_model, sqrt_optimal
from reliability.sampling.scoring import ChipScorer

SIGMA = 0.18


def _two_mechanisms():
    W = np.array([[0.0, 1.0], [0.0, 0.0], [0.0, 0.9], [0.0, 0.0]])
    X = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0]], dtype=np.float32)
    y = np.array([1, 1])
    beta = np.array([1.0, 0.9]) / (math.sqrt(2) * SIGMA * np.abs(W).max())
    # the latent directions that lower each sample's margin: (z[f, 0] - z[f, 1]) / sqrt(2)
    normals = np.zeros((2, 4, 2))
    normals[0, 0] = normals[1, 2] = [1 / math.sqrt(2), -1 / math.sqrt(2)]
    return load_onnx(linear_onnx(W, np.zeros(2))), X, y, beta, normals.reshape(2, -1)


def test_mode_search_finds_both_failure_mechanisms():
    net, X, y, beta, normals = _two_mechanisms()
    sim = ChipSimulator(net, f"weight-gaussian:sigma={SIGMA}")
    lat = LatentChips(sim)
    modes = find_modes(ChipScorer(sim, lat, X, y), lat, 1, None, 0, 500, 12, 20, 2000)
    assert modes.K == 2 and modes.evaluations <= 2000
    cos = modes.U @ normals.T                        # (modes, mechanisms)
    best = cos.argmax(axis=0)
    assert sorted(best) == [0, 1], cos              # one mode per mechanism ...
    assert np.all(cos.max(axis=0) > 0.9), cos       # ... along its normal
    # the soft-count surrogate puts the design points a little inside the exact boundaries
    assert np.all(np.abs(modes.norms[best] / beta - 1) < 0.15), (modes.norms, beta)


def test_hybrid_estimate_on_two_mechanisms_matches_the_closed_form():
    net, X, y, beta, _ = _two_mechanisms()
    truth = 1 - np.prod(stats.norm.cdf(beta))
    assert 1e-4 < truth < 1e-3
    res = estimate_tail(net, X, y, f"weight-gaussian:sigma={SIGMA}", below=[0.5], budget=20000, rng=2)
    e = res.estimates[0]
    assert e.method.startswith("hybrid") and e.reliable, e.reason
    assert 1 / 1.2 < e.probability / truth < 1.2, (e.probability, truth)
    assert e.ci95[0] <= truth <= e.ci95[1]
    split = res.diagnostics["split"][0]
    assert math.isclose(split["importance_part"] + split["subset_part"], e.probability)
    ev = res.diagnostics["evaluations"]
    assert sum(ev.values()) == res.evaluations <= 20000


@pytest.mark.slow
def test_second_stage_candidates_with_and_without_the_projection_mixture():
    """The guard sees the projection-mixture candidate by default and not with ``projected=False``;
    both estimates match the closed form."""
    from reliability.sampling.hybrid import HybridSampling

    net, X, y, beta, _ = _two_mechanisms()
    truth = 1 - np.prod(stats.norm.cdf(beta))
    for projected in (True, False):
        res = estimate_tail(net, X, y, f"weight-gaussian:sigma={SIGMA}", below=[0.5], budget=20000, rng=3,
                            estimator=HybridSampling(projected=projected))
        d = res.diagnostics
        cands = set(d["second_stage"]["relative_variance"])
        assert cands == ({"fitted", "half", "first", "projected"} if projected else {"fitted", "half", "first"})
        assert (d["joint_count_model"] is not None) == projected
        if projected:
            assert d["joint_count_model"]["cross"] and d["second_stage"]["projected"]["resampling_ess"] > 2000
        else:
            assert d["second_stage"]["projected"] == {"reason": "not asked for"}
        e = res.estimates[0]
        assert e.reliable and 1 / 1.2 < e.probability / truth < 1.2 and e.ci95[0] <= truth <= e.ci95[1]


def _toy_run(K=2, dim=6, seed=0):
    """Two orthonormal modes; stage 0 the first stage's normals, stage 1 a second stage fitted to known
    count models (mean count falling linearly with the mode coordinate)."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((dim, K)))[0].T          # orthonormal modes
    modes = Modes(U, np.array([3.0, 3.4][:K]), 1.0, 0, 0)
    run = HybridRun(modes, cut=1.5, defensive=0.2, subset=None, components=[(2.2, 0.4), (3.0, 0.5)])
    models = [{"coef": [0.0, -20.0, 100.0], "sd": 6.0, "range": [1.5, 4.0], "chips": 500},
              {"coef": [0.0, -15.0, 100.0], "sd": 8.0, "range": [1.5, 4.0], "chips": 500}][:K]
    run.stages = [ModeMixture.from_normals(1.5, 0.2, K, run.components),
                  sqrt_optimal(1.5, 0.2, 0.25, models, [40, 30], modes.norms)]
    return run, models


def test_proposal_densities_are_normalised_and_weights_bounded():
    run, _ = _toy_run()
    t = np.linspace(run.cut, 40, 2_000_001)
    for st in run.stages:
        assert math.isclose(st.pi.sum(), 1) and np.all(st.pi >= 0.25 / st.K - 1e-12)
        for m in range(st.K):
            total = np.exp(st.log_g(m, t)).sum() * (t[1] - t[0])
            assert abs(total - 1) < 2e-3, (m, total)
    proj = np.random.default_rng(1).uniform(-3, 8, size=(20000, 2))
    run.stage = np.repeat([0, 1], [300, 700])
    lw = run.log_weight(proj)
    inside = ~run.outside(proj)
    pi_min = min(float(st.pi.min()) for st in run.stages)
    bound = math.log(stats.norm.sf(run.cut) / (run.defensive * pi_min))
    assert np.all(lw[inside] <= bound + 1e-12)
    assert np.all(np.isposinf(lw[~inside]))           # q = 0 outside H: never drawn


def test_mixture_importance_weights_are_unbiased():
    """Draw through ``HybridRun.place`` from both stages (projections it returns equal to those of the
    shifted chips) and check, with the balance-heuristic weights,
    E[w 1_A] = P(A) for events inside H."""
    run, _ = _toy_run()
    rng = np.random.default_rng(7)
    n = 200000
    flat = rng.standard_normal((2 * n, 6))
    U = run.modes.U
    d0, c0, p0 = run.place(rng, flat[:n] @ U.T, 0)
    d1, c1, p1 = run.place(rng, flat[n:] @ U.T, 1)
    flat += np.concatenate([c0, c1]) @ U
    proj = np.concatenate([p0, p1])
    assert np.allclose(proj, flat @ U.T)
    run.stage = np.repeat([0, 1], [n, n])
    w = np.exp(run.log_weight(proj))
    t1 = flat @ run.modes.U[0]
    assert np.allclose(proj[:, 0], t1)
    assert np.all(proj[np.arange(n), d0] >= run.cut) and np.all(p1[np.arange(n), d1] >= run.cut)
    cases = {"H": (np.ones(len(w), bool), 1 - stats.norm.cdf(run.cut) ** 2),
             "t1 >= 3": (t1 >= 3, stats.norm.sf(3)),
             "t1 >= 2, t2 >= 2": ((proj[:, 0] >= 2) & (proj[:, 1] >= 2), stats.norm.sf(2) ** 2),
             "t2 >= 4.5": (proj[:, 1] >= 4.5, stats.norm.sf(4.5))}
    for name, (ind, p) in cases.items():
        f = w * ind
        se = f.std() / math.sqrt(f.size)
        assert abs(f.mean() - p) < 4 * se + 1e-12, (name, f.mean(), p, se)


def test_second_stage_is_the_square_root_optimal_density():
    """Within a mode the second stage's body is proportional to phi(t) sqrt(P(F | t)) (one event), and
    the modes are weighted by the integrals of that, floored; the count model is recovered from chips
    with outliers."""
    rng = np.random.default_rng(3)
    t = rng.uniform(1.5, 5, 4000)
    c = np.round(500 - 30 * t - 4 * t**2 + rng.normal(0, 5, t.size))
    c[:40] -= 200                                        # chips failing through another mode
    fit = fit_count_model(t, c)
    assert np.allclose(fit["coef"], [-4, -30, 500], atol=[0.6, 3, 6]) and abs(fit["sd"] - 5) < 0.4
    models = [{"coef": [0.0, -20.0, 100.0], "sd": 6.0, "range": [1.5, 4.0], "chips": 500},
              {"coef": [0.0, -15.0, 100.0], "sd": 8.0, "range": [1.5, 4.0], "chips": 500}]
    st = sqrt_optimal(1.5, 0.2, 0.25, models, [30], np.array([3.0, 3.4]))
    mid = 0.5 * (st.edges[1:] + st.edges[:-1])
    h = [stats.norm.pdf(mid) * np.sqrt(stats.norm.cdf((30.5 - count_mean(m, mid)) / m["sd"])) for m in models]
    for m in range(2):
        live = st.mass[m] > 1e-6
        ratio = st.mass[m][live] / h[m][live]
        assert np.allclose(ratio, ratio[0], rtol=1e-6)
    share = np.array([x.sum() for x in h])
    assert np.allclose(st.pi, 0.75 * share / share.sum() + 0.125)
    # beyond the fitted range the mean continues along its tangent
    assert math.isclose(count_mean(models[0], np.array([6.0]))[0], 100 - 20 * 4 - 20 * 2)


@pytest.mark.slow
def test_second_stage_guard_keeps_the_first_proposal_when_the_count_model_is_poor():
    """Two evaluation samples: the count is a step in each mode coordinate, which the quadratic count
    model describes badly.  The first stage's chips estimate each candidate's variance, so the guard
    keeps the first proposal, and the estimate still holds the closed form."""
    net, X, y, beta, _ = _two_mechanisms()
    truth = 1 - stats.norm.cdf(beta[0]) * stats.norm.cdf(beta[1])
    for seed in range(2):
        res = estimate_tail(net, X, y, f"weight-gaussian:sigma={SIGMA}", below=[0.5], budget=8000, rng=seed)
        choice = res.diagnostics["second_stage"]
        assert choice["chosen"] == "first", choice
        rv = choice["relative_variance"]
        assert rv["first"] < rv["half"] < rv["fitted"]
        e = res.estimates[0]
        assert e.ci95[0] <= truth <= e.ci95[1] and 1 / 1.2 < e.probability / truth < 1.2


@pytest.mark.slow
def test_checkpoint_resume_in_either_phase_equals_uninterrupted(tmp_path, monkeypatch):
    net, X, y, _, _ = _two_mechanisms()
    kw = dict(below=[0.5], budget=4000, rng=4)
    var = f"weight-gaussian:sigma={SIGMA}"
    full = estimate_tail(net, X, y, var, **kw)
    from reliability.sampling import hybrid, scoring

    for name, target, at in (("subset phase", (scoring.ChipScorer, "score"), 6),
                             ("importance phase", (hybrid.HybridRun, "place"), 3),
                             ("second-stage", (hybrid.HybridRun, "place"), 6)):
        real = getattr(*target)
        calls = {"n": 0}

        def flaky(self, *a, real=real, calls=calls, at=at):
            calls["n"] += 1
            if calls["n"] == at:
                raise KeyboardInterrupt
            return real(self, *a)

        ck = tmp_path / f"{name.split()[0]}.npz"
        monkeypatch.setattr(*target, flaky)
        part = estimate_tail(net, X, y, var, checkpoint=ck, **kw)
        assert not part.complete and ck.exists(), name
        assert part.evaluations < full.evaluations, name
        monkeypatch.setattr(*target, real)
        resumed = estimate_tail(net, X, y, var, checkpoint=ck, **kw)
        assert resumed.complete, name
        assert resumed.estimates[0].probability == full.estimates[0].probability, name
        assert resumed.estimates[0].ci95 == full.estimates[0].ci95, name
        assert resumed.evaluations == full.evaluations, name


def test_a_checkpoint_is_refused_by_an_estimator_with_other_settings(tmp_path):
    """Saved chips were drawn from the proposal of the settings that saved them: resuming with other
    settings (here without the projection mixture) would weight them wrongly, so it is refused."""
    from reliability.errors import ReliabilityError
    from reliability.sampling.hybrid import HybridSampling

    net, X, y, _, _ = _two_mechanisms()
    kw = dict(below=[0.5], budget=2500, rng=4, checkpoint=tmp_path / "run.npz")
    var = f"weight-gaussian:sigma={SIGMA}"
    first = estimate_tail(net, X, y, var, **kw)
    again = estimate_tail(net, X, y, var, **kw)                   # same settings: resumed, same result
    assert again.estimates[0].probability == first.estimates[0].probability
    with pytest.raises(ReliabilityError, match="estimator settings"):
        estimate_tail(net, X, y, var, estimator=HybridSampling(projected=False), **kw)


def test_small_budget_runs_subset_simulation_alone():
    net, X, y, _, _ = _two_mechanisms()
    res = estimate_tail(net, X, y, f"weight-gaussian:sigma={SIGMA}", below=[0.5], budget=1500, rng=0)
    assert res.method == "subset-simulation" and res.diagnostics["modes"] == []
    assert res.evaluations <= 1500


def test_one_heavy_chip_flags_the_estimate():
    from dataclasses import replace

    from reliability.sampling.hybrid import HybridProbability, hybrid_estimate
    from reliability.sampling.subset import SubsetProbability
    from reliability.sampling.verdicts import MAX_TOP_SHARE

    sub = SubsetProbability(p=1e-7, level=3, fraction=0.01, n_in_event=40, cov_independent=0.3, cov_upper=0.5,
                            gamma=0.0, ess=400.0, level_prob=1e-5, n=4000)
    r = HybridProbability(p=1e-5, cov=0.2, p_hi=0.95e-5, se_hi=2e-6, p_lo=0.05e-5, se_lo=1e-7, subset=sub, n_is=14000,
                          n_is_event=300, ess=200.0, khat=0.5, lo_share=0.05, subset_only=False, top_share=0.1)
    run = SimpleNamespace(evaluations=20000)
    assert hybrid_estimate(0.9, 10, r, run).reliable
    heavy = hybrid_estimate(0.9, 10, replace(r, top_share=MAX_TOP_SHARE + 0.1), run)
    assert not heavy.reliable and "one chip carries" in heavy.reason
    few = hybrid_estimate(0.9, 10, replace(r, n_is_event=3, subset=replace(sub, n_in_event=2)), run)
    assert not few.reliable and "only 5 chips" in few.reason


def test_the_cut_follows_the_rarest_event_asked_for():
    """2.5 when the rarest event (subset simulation's estimate, or the smallest quantile k) is below
    5e-4, else 1.5; a given cut is kept; the reason names the probability."""
    from reliability.sampling.hybrid import DEEP_BELOW, DEEP_CUT, SHALLOW_CUT, HybridSampling

    probs = {501.0: 1.4e-3, 401.0: 2e-4, 301.0: 0.0}         # count threshold + 1 -> estimate
    sus = SimpleNamespace(probability=lambda c: SimpleNamespace(p=probs[c]))
    auto = HybridSampling()
    assert auto._cut(sus, [500], None)[0] == SHALLOW_CUT == 1.5
    cut, why = auto._cut(sus, [500, 400], None)
    assert cut == DEEP_CUT == 2.5 and "0.0002" in why and "below" in why
    assert auto._cut(sus, [500], 1e-5)[0] == DEEP_CUT          # a deep quantile asked for
    assert auto._cut(sus, [500], 1e-3)[0] == SHALLOW_CUT
    assert auto._cut(sus, [], DEEP_BELOW)[0] == SHALLOW_CUT    # at the boundary: shallow
    assert auto._cut(sus, [300], None)[0] == DEEP_CUT          # subset simulation never reached it
    assert HybridSampling(cut=1.5)._cut(sus, [400], None) == (1.5, "given")


@pytest.mark.slow
def test_the_chosen_cut_is_the_one_the_run_uses():
    from reliability.sampling.hybrid import HybridSampling

    net, X, y, _, _ = _two_mechanisms()
    var = f"weight-gaussian:sigma={SIGMA}"
    res = estimate_tail(net, X, y, var, below=[0.5], budget=4000, rng=0)
    d = res.diagnostics
    assert d["cut"] in (1.5, 2.5) and f"split at {d['cut']:g}" in d["cut_because"]
    assert all(st["mode_probabilities"] for st in d["proposal_stages"])
    given = estimate_tail(net, X, y, var, below=[0.5], budget=4000, rng=0, estimator=HybridSampling(cut=2.0))
    assert given.diagnostics["cut"] == 2.0 and given.diagnostics["cut_because"] == "given"


@pytest.mark.parametrize("bad", [dict(subset_share=0.01), dict(defensive=0.0), dict(first_stage=0.0),
                                 dict(mode_floor=0.0), dict(cut=0.1), dict(cut=6.0)])
def test_bad_settings_are_refused(bad):
    from reliability.sampling.hybrid import HybridSampling

    with pytest.raises(ValueError):
        HybridSampling(**bad)


def test_chips_with_coordinates_the_gradients_miss_run_subset_simulation_alone():
    """Drift and read noise get no design-point gradient: the hybrid must not split on modes that
    ignore them (it runs subset simulation alone, with the whole budget, and says why)."""
    from reliability.cim.spec import ChipSpec
    from reliability.devices import load_device

    net, X, y, _, _ = _two_mechanisms()
    spec = ChipSpec(device=load_device("pcm"), time_s=3.15e7)
    auto = estimate_tail(net, X, y, spec, below=[0.5], budget=3000, rng=0)
    alone = estimate_tail(net, X, y, spec, below=[0.5], budget=3000, rng=0, method="subset")
    assert auto.method == "subset-simulation" and auto.diagnostics["modes"] == []
    assert "drift" in auto.diagnostics["subset_alone_because"]
    assert auto.estimates[0].probability == alone.estimates[0].probability
    assert auto.evaluations == alone.evaluations


def test_each_start_is_the_lowest_pilot_chip_the_known_modes_do_not_explain(monkeypatch):
    """After a mode is found, the next HL-RF start skips pilot chips whose projection on a known mode
    reaches 1.5 (they mostly run back to that mode) and takes the lowest-ranked of the rest."""
    from reliability import streams
    from reliability.sampling import modes as mode_search

    net, X, y, _, normals = _two_mechanisms()
    sim = ChipSimulator(net, f"weight-gaussian:sigma={SIGMA}")
    lat = LatentChips(sim)
    u = normals[0] / np.linalg.norm(normals[0])
    starts = []

    def fake_hlrf(scorer, latent, start, k, T, iterations, known, stop_cos=0.95):
        starts.append(mode_search.flatten(start)[0])
        return (3.0 * u, 0.0) if not known else (None, 0.0)      # the origin finds mode u; later starts find nothing

    monkeypatch.setattr(mode_search, "_hlrf", fake_hlrf)
    scorer = ChipScorer(sim, lat, X, y)
    modes = find_modes(scorer, lat, 1, None, 0, 200, 5, 20, 10**6)
    assert modes.K == 1 and len(starts) == 6 and np.allclose(starts[0], 0)
    pilot = lat.stack([lat.draw_chip(0, streams.HYBRID_PILOT + i) for i in range(200)])
    zp = mode_search.flatten(pilot)
    counts, mg = ChipScorer(sim, lat, X, y).sample_margins(pilot)
    order = list(np.lexsort((mg.mean(axis=1), counts)))
    expected = [i for i in order if zp[i] @ u < 1.5][:5]
    assert expected != order[:5]          # some of the lowest pilot chips are explained by u and skipped
    for got, i in zip(starts[1:], expected):
        assert np.allclose(got, zp[i])


def test_blockwise_project_and_shift_match_the_flat_arithmetic():
    """``project`` and ``shift`` on latent blocks give the flat float64 computation's numbers (to
    float32 rounding of the shifted chips), and ``shift`` refuses a non-contiguous view it could not
    change in place."""
    from reliability.sampling.modes import flatten, project, shift

    rng = np.random.default_rng(3)
    z = [rng.standard_normal((37, 4, 5)).astype(np.float32), rng.standard_normal((37, 300)).astype(np.float32)]
    U = rng.standard_normal((3, 320))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    flat = flatten(z)
    assert np.allclose(project(z, U), flat @ U.T, rtol=1e-12, atol=1e-10)
    C = rng.standard_normal((37, 3))
    shift(z, C, U)
    assert np.allclose(flatten(z), (flat + C @ U).astype(np.float32), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="in place"):
        shift([z[1][:, ::2]], C, U[:, :150])
