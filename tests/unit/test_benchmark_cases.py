"""The benchmark cases: the public case shipped in the package (``reliability.bench``) and the built
cases' brute-force references (``benchmarks/cases.py``: parts, caching and threshold choice)."""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import cases  # noqa: E402

from reliability.bench import CASES_DIR, Case, available_cases, load_case  # noqa: E402
from reliability.errors import ReliabilityError  # noqa: E402


@dataclass(frozen=True)
class CoinCase(cases.BuiltCase):
    """A stand-in case: each chip gets Binomial(20, 0.9) samples right (no network needed)."""

    part: int = 1_000
    CHIP_BATCH: ClassVar[int] = 128

    def _clean(self):
        return np.zeros((20, 1)), np.zeros(20, dtype=np.int64), None

    def _chips_correct(self, params, X, y, rng, B):
        return rng.binomial(len(y), 0.9, size=B)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cases, "CACHE", tmp_path)
    return tmp_path


def test_reference_is_the_sum_of_independent_cached_parts(cache):
    case = CoinCase("coin", 0.0, 3_500, seed=7)
    assert case.parts == 4 and [case._part_chips(k) for k in range(4)] == [1_000, 1_000, 1_000, 500]
    h = case.reference(progress=False)
    assert h.sum() == 3_500 and h.size == 21
    parts = [case.reference_part(k, progress=False) for k in range(4)]
    np.testing.assert_array_equal(h, sum(parts))
    assert sorted(p.name for p in cache.iterdir()) == ["coin-part1.npz", "coin-part2.npz", "coin-part3.npz", "coin.npz"]
    assert not np.array_equal(parts[1], parts[2])          # parts are different streams
    # part 0 is the single stream PCG64(seed) that a one-part reference of the same size draws
    one = CoinCase("coin_single", 0.0, 1_000, seed=7).reference(progress=False)
    np.testing.assert_array_equal(one, parts[0])
    # a deeper reference extends a shallower one: its first parts are read back, not redrawn
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    deeper = CoinCase("coin", 0.0, 5_000, seed=7).reference(progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert all(after[k] == v for k, v in before.items() if k not in ("coin-part3.npz", "coin_single.npz"))
    assert deeper.sum() == 5_000
    np.testing.assert_array_equal(deeper - CoinCase("coin", 0.0, 5_000, seed=7).reference_part(3, False)
                                  - CoinCase("coin", 0.0, 5_000, seed=7).reference_part(4, False), sum(parts[:3]))


def test_thresholds_only_where_the_reference_has_100_chips_in_the_event():
    hist = np.zeros(11, dtype=np.int64)
    hist[10] = 10_000_000
    hist[5] = 1_000      # P(count <= 5) = 1e-4
    hist[3] = 150        # P(count <= 3) = 1.5e-5
    hist[1] = 20         # too few chips
    got = cases.thresholds(hist, probs=(1e-3, 1e-4, 1e-5, 1e-6))
    cdf = np.cumsum(hist) / hist.sum()
    assert [c for c, _ in got] == [5, 3]
    assert got[0][1] == pytest.approx(cdf[5]) and got[1][1] == pytest.approx(cdf[3])


@dataclass(frozen=True)
class OtherCoinCase(CoinCase):
    """The same case name with another evaluation set: a stand-in for a network trained differently."""

    def _clean(self):
        return np.ones((20, 1)), np.zeros(20, dtype=np.int64), None


def test_a_cached_part_of_another_network_is_refused_and_a_part_without_digest_is_read(cache):
    case = CoinCase("coin", 0.0, 1_000, seed=3)
    h = case.reference_part(0, progress=False)
    with np.load(cache / "coin.npz") as z:
        assert str(z["digest"]) == case.digest()
    with pytest.raises(RuntimeError, match="another trained network"):
        OtherCoinCase("coin", 0.0, 1_000, seed=3).reference_part(0, progress=False)
    # a part written before digests existed is read back as it is
    np.savez(cache / "coin.npz", hist=h, chips=1_000, part=0, meta="{}")
    np.testing.assert_array_equal(OtherCoinCase("coin", 0.0, 1_000, seed=3).reference_part(0, progress=False), h)


def test_a_built_case_exports_as_a_case_folder_the_suite_loads(cache, tmp_path):
    """A small MLP's reference, exported: the suite loads it, the ONNX network gives the clean
    accuracy the numpy implementation's network has, and case.json records the provenance."""
    case = cases.MLPCase("tiny_mlp", 0.2, 3_000, part=1_500, hidden=(4,), max_iter=50)
    case.reference(progress=False)
    with pytest.raises(RuntimeError, match="build more parts"):
        cases.export(case, tmp_path / "out")
    folder = cases.export(case, tmp_path / "out", probabilities=(0.05,))
    c = load_case(folder)
    clf, X, y = case.classifier()
    assert c.clean_accuracy == pytest.approx(float(np.mean(clf.predict(X) == y)))
    assert c.reference_chips == 3_000 == c.provenance["chips"] and c.provenance["parts"] == [0, 1]
    assert c.provenance["network_sha256"] == case.digest() and c.variation == "weight-gaussian:sigma=0.2"
    (k,) = c.events
    assert c.reference_probability(k)[0] == pytest.approx(0.05, rel=0.5)
    assert "tiny_mlp" in (folder / "README.md").read_text()


# --------------------------------------------------------------------------------------------
# the public case shipped in the package


def test_public_case_loads_with_its_reference(public_case):
    c = public_case
    assert isinstance(c, Case) and c.name == "digits_mlp_s05" and "digits_mlp_s05" in available_cases()
    assert c.X.shape == (597, 64) and c.X.dtype == np.float32 and c.y.shape == (597,) and c.n_samples == 597
    assert c.variation == "weight-gaussian:sigma=0.05"
    assert c.reference.shape == (598,) and c.reference_chips == 115_520_000 == c.reference.sum()
    # the clean network gives the accuracy recorded in case.json
    acc, _ = c.network.accuracy_and_loss(c.X, c.y)
    assert acc[0] == c.clean_accuracy
    # the three probabilities quoted in the case's README (its provenance), to the digits quoted
    for count, quoted in ((526, 1.417e-3), (523, 1.922e-4), (519, 1.443e-5)):
        p, se = c.reference_probability(count)
        assert round(p, 6 if count == 526 else 7 if count == 523 else 8) == quoted, (count, p)
        assert se == pytest.approx(np.sqrt(p * (1 - p) / 115_520_000), rel=1e-12)
    assert c.reference_probability(597) == (1.0, 0.0)
    # frozen, and its arrays cannot be changed by a caller
    with pytest.raises(AttributeError):
        c.name = "other"
    for a in (c.X, c.y, c.reference):
        assert not a.flags.writeable


def test_public_case_errors_name_the_fix(public_case):
    with pytest.raises(ReliabilityError, match="not a shipped benchmark case nor a case folder; available: .*digits_mlp_s05"):
        load_case("digits_mlp")
    # a case folder in the same format loads by path
    assert load_case(public_case.path).reference_chips == public_case.reference_chips
    for bad in (-1, 598, 1.5, True):
        with pytest.raises(ReliabilityError, match=r"count=.*from 0 to 597"):
            public_case.reference_probability(bad)


def test_shipped_case_files_are_package_data_and_small():
    """Every file of every case is matched by pyproject's package-data globs, and the cases stay a
    couple of MB at most (they travel in every wheel)."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "reliability.bench"]
    files = [p for p in CASES_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files
    for p in files:
        rel = p.relative_to(CASES_DIR.parent).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not package data: add it to {globs}"
    # the Fashion-MNIST evaluation sets (float32 images) are most of it
    assert sum(p.stat().st_size for p in files) < 2_000_000
    for name in (n for n in available_cases() if (CASES_DIR / n).is_dir()):
        assert {"model.onnx", "data.npz", "case.json", "reference_hist.npy", "README.md"} <= {
            p.name for p in (CASES_DIR / name).iterdir()}


@pytest.mark.parametrize("name", [n for n in available_cases() if (CASES_DIR / n).is_dir()])
def test_every_shipped_case_is_consistent(name):
    """The clean network gives the recorded accuracy, every event the suite runs has at least 100
    reference chips, the provenance counts the histogram's chips, and the version is a digest of
    the files (the same on every load)."""
    from reliability.bench.catalog import MIN_REFERENCE_CHIPS

    c = load_case(name)
    acc, _ = c.network.accuracy_and_loss(c.X, c.y)
    assert acc[0] == pytest.approx(c.clean_accuracy, abs=1e-12)
    assert c.events and all(c.reference[: k + 1].sum() >= MIN_REFERENCE_CHIPS for k in c.events)
    assert list(c.events) == sorted(c.events, reverse=True)
    if "chips" in c.provenance:
        assert c.provenance["chips"] == c.reference_chips
    assert len(c.version) == 12 and load_case(name).version == c.version


# ------------------------------------------------------------------------------------------ exact cases
def test_exact_cases_have_closed_form_references():
    from reliability.bench import EXACT_CASES, ExactCase
    from reliability.bench.exact import poisson_binomial

    pmf = poisson_binomial([0.1, 0.2, 0.3])
    assert pmf.sum() == pytest.approx(1.0) and pmf[3] == pytest.approx(0.006) and pmf[0] == pytest.approx(0.504)
    for name, (dim, ps) in EXACT_CASES.items():
        c = load_case(name)
        assert isinstance(c, ExactCase) and name in available_cases() and c.dim == dim
        m = c.n_samples
        assert c.reference_probability(m) == (1.0, 0.0)
        any_fails = 1 - np.prod(1 - np.asarray(ps))
        assert c.reference_probability(m - 1)[0] == pytest.approx(any_fails, rel=1e-9)
        assert 1e-7 * 0.99 < c.reference_probability(m - 1)[0] < 1.01e-3
    series = load_case("series4-d1e4-p1e-5")
    assert series.reference_probability(0)[0] == pytest.approx(4e-6 * 3e-6 * 2e-6 * 1e-6, rel=1e-6)
    assert series.reference_quantile(5e-6) == 0.75 and series.reference_quantile(0.5) == 1.0


def test_exact_case_probabilities_hold_in_the_simulator():
    """Plain Monte Carlo through the real simulator agrees with the closed form (two regions,
    probabilities 2e-2 and 1e-2, 20,000 chips: every event within 4 standard errors)."""
    from reliability.bench import exact_case
    from reliability.cim import ChipSimulator

    c = exact_case(1000, (0.02, 0.01))
    sim = ChipSimulator(c.network, c.variation)
    clean = c.network.forward(c.X).argmax(axis=-1).ravel()       # every sample right without variation
    assert np.array_equal(clean, c.y)
    res = sim.evaluate(c.X, c.y, 20_000, rng=0)
    counts = res.n_correct
    for k in (0, 1):
        p = c.reference_probability(k)[0]
        se = np.sqrt(p * (1 - p) / counts.size)
        assert abs(np.mean(counts <= k) - p) < 4 * se + 1e-12, (k, np.mean(counts <= k), p)


@pytest.mark.parametrize("kwargs, words", [
    (dict(dim=1001, probabilities=[1e-3]), "even integer"),
    (dict(dim=4, probabilities=[1e-3, 1e-3]), "at least 6"),
    (dict(dim=100, probabilities=[0.7]), "in \\(0, 0.5\\)"),
    (dict(dim=100, probabilities=[1e-9], sigma=0.5), "sigma=0.5"),
])
def test_exact_case_arguments_are_checked(kwargs, words):
    from reliability.bench import exact_case

    with pytest.raises(ReliabilityError, match=words):
        exact_case(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["linear-d1e4-p1e-5", "series4-d1e4-p1e-5"])
def test_the_hybrid_estimator_on_exact_cases(name):
    """On 10^4-dimensional exact cases at 1e-5 the default estimator, 20,000 chips, lands within
    x1.2 of the closed form with its interval covering it."""
    from reliability.sampling import estimate_tail

    c = load_case(name)
    m = c.n_samples
    res = estimate_tail(c.network, c.X, c.y, c.variation, below=[(m - 1) / m], budget=20_000, rng=1)
    e = res.estimates[0]
    truth = c.reference_probability(m - 1)[0]
    assert e.reliable and 1 / 1.2 < e.probability / truth < 1.2 and e.ci95[0] <= truth <= e.ci95[1], e


# ---------------------------------------------------------------------------------------------- metrics
def _lognormal_runs(R, p, s, bias=1.0, seed=0):
    rng = np.random.default_rng(seed)
    est = p * bias * np.exp(s * rng.standard_normal(R) - s * s / 2)
    iv = [(e * np.exp(-1.959964 * s), e * np.exp(1.959964 * s)) for e in est]
    return est, est * s, iv


def test_run_metrics_of_a_calibrated_estimator():
    """4,000 runs, unbiased, log-normal with 10 % spread and honest intervals: coverage at both
    levels within 1.5 points of nominal, standard errors as reported, half the runs below."""
    from reliability.bench.metrics import run_metrics

    p = 1e-5
    est, se, iv = _lognormal_runs(4000, p, 0.1)
    m = run_metrics(est, se, iv, [20_000] * 4000, p)
    assert abs(m["coverage_95"] - 0.95) < 0.015 and abs(m["coverage_90"] - 0.90) < 0.015
    assert abs(m["relative_bias"]) < 3 * m["relative_bias_se"]
    assert 0.95 < m["se_ratio"] < 1.05 and 0.45 < m["under_estimation_rate"] < 0.55
    assert m["relative_rmse"] == pytest.approx(0.1, rel=0.05)
    # plain Monte Carlo would need (1 - p) / (0.1^2 p) chips for the same 10 % at p = 1e-5
    assert m["gain_over_mc"] == pytest.approx((1 - p) / (p * 20_000 * m["relative_rmse"] ** 2), rel=1e-9)
    assert m["evaluations_for_target"] == pytest.approx(20_000 * (m["relative_rmse"] / 0.1) ** 2)
    assert m["failures"] == 0 and m["failure_rate"] == 0


def test_plain_monte_carlo_has_gain_one():
    """Binomial estimates (N = 10^6 chips, p = 1e-4), 4,000 runs: the gain from the exact Bernoulli
    variance is 1 within its sampling error (about 2.2 %)."""
    from reliability.bench.metrics import run_metrics

    p, N, R = 1e-4, 1_000_000, 4000
    est = np.random.default_rng(3).binomial(N, p, R) / N
    s = np.sqrt((1 - p) / (N * p))
    iv = [(e * np.exp(-1.96 * s), e * np.exp(1.96 * s)) for e in est]
    m = run_metrics(est, est * s, iv, [N] * R, p)
    assert m["gain_over_mc"] == pytest.approx(1.0, abs=0.08)


def test_run_metrics_catch_bias_and_count_the_reference_error():
    from reliability.bench.metrics import run_metrics

    p = 1e-4
    est, se, iv = _lognormal_runs(48, p, 0.02, bias=0.8, seed=1)
    m = run_metrics(est, se, iv, [20_000] * 48, p, failures=2)
    assert m["coverage_95"] == 0 and m["under_estimation_rate"] == 1 and m["relative_bias"] < -0.15
    assert m["failure_rate"] == pytest.approx(2 / 50)
    # runs 10 % low against a reference that is itself good to 10 % only: held once its error counts
    est, se, iv = _lognormal_runs(40, p, 0.03, bias=0.9, seed=2)
    assert run_metrics(est, se, iv, [1] * 40, p)["coverage_95"] < 0.25
    assert run_metrics(est, se, iv, [1] * 40, p, reference_se=0.1 * p)["coverage_95"] == 1.0


def test_run_metrics_arguments_are_checked():
    from reliability.bench.metrics import run_metrics

    with pytest.raises(ReliabilityError, match="one entry per run"):
        run_metrics([1e-3, 2e-3], [1e-4], [(1e-3, 2e-3)] * 2, [10, 10], 1e-3)
    with pytest.raises(ReliabilityError, match="positive probability"):
        run_metrics([], [], [], [], 0.0)
    assert run_metrics([], [], [], [], 1e-3, failures=3)["failure_rate"] == 1.0
