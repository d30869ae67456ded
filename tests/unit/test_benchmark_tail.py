"""The tail benchmark's comparison with a reference that is itself plain Monte Carlo."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import tail as bench  # noqa: E402


def _intervals(est, sd):
    """Log-normal 95 % intervals around ``est`` with log-scale standard error ``sd``."""
    return [(e * np.exp(-1.96 * s), e * np.exp(1.96 * s)) for e, s in zip(est, sd)]


def test_exact_reference_counts_plain_coverage():
    p = 1e-4
    est = np.array([0.9, 1.0, 1.08, 1.25]) * p
    iv = _intervals(est, [0.05] * 4)
    r = bench.reference_check(est, iv, p, ref_in_event=1e12)
    plain = sum(lo <= p <= hi for lo, hi in iv)
    assert plain == 2                       # 0.9 and 1.25 miss: log(1/0.9) = 0.105 > 1.96 * 0.05
    assert r["ci_coverage_with_ref_error"] == "2/4"
    assert r["ref_rel_se"] == pytest.approx(np.sqrt((1 - p) / 1e12))
    assert r["mean_ratio"] == pytest.approx(np.mean(est / p))
    assert r["rel_sd"] == pytest.approx(np.std(est / p, ddof=1))


def test_reference_error_widens_the_check_and_explains_a_shared_offset():
    """Runs that agree among themselves but sit 10 % below a reference with 100 chips in the event
    (relative error 10 %): their intervals miss it, but not once its own error is counted, and the
    mean's distance from the reference is about one reference standard error."""
    p = 1e-5
    rng = np.random.default_rng(0)
    est = p * 0.9 * np.exp(0.03 * rng.standard_normal(40))
    iv = _intervals(est, [0.03] * 40)
    r = bench.reference_check(est, iv, p, ref_in_event=100)
    assert sum(lo <= p <= hi for lo, hi in iv) < 10
    assert r["ci_coverage_with_ref_error"] == "40/40"
    assert r["ref_rel_se"] == pytest.approx(0.1, rel=1e-4)
    assert -1.2 < r["mean_vs_ref_z"] < -0.8
    # the gain from the runs' own spread: plain Monte Carlo's chips for 20 % over the run's
    mc = (1 - p) / (0.04 * p)
    assert r["gain_from_spread"] == pytest.approx(mc / (20000 * (r["rel_sd"] / 0.2) ** 2))


def test_an_estimator_biased_beyond_the_reference_error_is_caught():
    p = 1e-4
    est = np.full(48, 0.8 * p) * np.exp(0.02 * np.random.default_rng(1).standard_normal(48))
    r = bench.reference_check(est, _intervals(est, [0.02] * 48), p, ref_in_event=10_000)
    assert r["mean_vs_ref_z"] < -15          # 20 % low against a reference good to 1 %
    assert r["ci_coverage_with_ref_error"] == "0/48"


def test_save_keeps_every_runs_estimate_and_interval(tmp_path, monkeypatch):
    """``run(save=...)`` writes each run's estimate and interval per case, method and threshold."""
    from types import SimpleNamespace

    import reliability.sampling

    ref = np.zeros(11, dtype=np.int64)
    ref[[3, 5, 10]] = [20, 200, 100_000]
    monkeypatch.setattr(bench, "_cases", lambda built, only, deep: [("toy", None, None, np.zeros(10), "v", ref, [3, 5])])

    def fake(net, X, y, variation, below, budget, rng, method, quantiles):
        ests = [SimpleNamespace(probability=(rng + 1) * b * 1e-3, ci95=(0.0, 1.0), reliable=True) for b in below]
        return SimpleNamespace(estimates=ests, quantiles=[], evaluations=budget)

    monkeypatch.setattr(reliability.sampling, "estimate_tail", fake)
    out = tmp_path / "runs.npz"
    rows = bench.run(repeats=3, methods=("hybrid",), seed0=5, save=str(out))
    assert len(rows) == 2
    with np.load(out) as z:
        np.testing.assert_array_equal(z["seeds"], [5, 6, 7])
        np.testing.assert_allclose(z["toy/hybrid/3/est"], [6 * 0.3e-3, 7 * 0.3e-3, 8 * 0.3e-3])
        np.testing.assert_array_equal(z["toy/hybrid/5/lo"], [0, 0, 0])
        np.testing.assert_array_equal(z["toy/hybrid/5/hi"], [1, 1, 1])
