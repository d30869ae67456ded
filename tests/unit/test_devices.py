"""Device models: families, state functions, composition, sampling, JSON schema.

Statistical checks are seeded; tolerances are k standard errors of the estimate (stated inline).
"""

import json

import numpy as np
import pytest
from scipy import special, stats

from reliability.devices import (
    ChipGain, Constant, DeviceModel, Drift, EmpiricalVariation, Polynomial, ProgrammingVariation, ReadNoise, Spline,
    StuckAt, get_family,
)
from reliability.errors import ModelSpecError

N = 200_000


@pytest.mark.parametrize("name,shape,ref", [
    ("normal", {}, stats.norm()),
    ("student_t", {"df": 4.0}, stats.t(4.0)),
    ("skew_normal", {"alpha": 3.0}, stats.skewnorm(3.0)),
])
def test_family_matches_scipy(name, shape, ref):
    fam = get_family(name)
    sh = fam.check_shape(shape)
    z = np.linspace(-5, 5, 41)
    np.testing.assert_allclose(fam.logpdf(z, *sh), ref.logpdf(z), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fam.cdf(z, *sh), ref.cdf(z), atol=1e-9)
    np.testing.assert_allclose(np.exp(fam.logsf(z, *sh)), ref.sf(z), atol=1e-9)
    u = np.array([0.001, 0.1, 0.5, 0.9, 0.999])
    np.testing.assert_allclose(fam.ppf(u, *sh), ref.ppf(u), rtol=1e-6)
    x = fam.rvs(np.random.default_rng(0), N, *sh)
    # KS against the closed form: the critical value at alpha = 1e-3 is ~1.95/sqrt(N)
    assert stats.kstest(x, ref.cdf).statistic < 1.95 / np.sqrt(N)
    if np.isfinite(fam.var(*sh)):
        assert abs(x.var() - fam.var(*sh)) < 5 * fam.var(*sh) * np.sqrt(2 / N) * 2


def test_gaussian_mixture_cdf_ppf_inverse_and_sampling():
    fam = get_family("gaussian_mixture")
    sh = fam.check_shape({"w": 0.2, "m2": 1.5, "r2": 3.0})
    u = np.linspace(0.001, 0.999, 50)
    np.testing.assert_allclose(fam.cdf(fam.ppf(u, *sh), *sh), u, atol=1e-9)
    x = fam.rvs(np.random.default_rng(1), N, *sh)
    assert stats.kstest(x, lambda v: fam.cdf(v, *sh)).statistic < 1.95 / np.sqrt(N)
    # density integrates to one
    grid = np.linspace(-40, 40, 200001)
    assert abs(np.trapezoid(np.exp(fam.logpdf(grid, *sh)), grid) - 1) < 1e-6


@pytest.mark.parametrize("shape", [(0.2644, -1.804, 1.5825), (0.5, 5.0, 0.1), (1e-6, -30.0, 50.0), (0.3, 20.0, 0.02)])
def test_gaussian_mixture_ppf_keeps_its_digits_in_both_tails(shape):
    """The latent path maps z -> ppf(Phi(z)): far tails included, the quantile inverts the CDF (below
    the median) and the survival function (above it) to relative 1e-9, and keeps the input's shape."""
    fam = get_family("gaussian_mixture")
    z = np.linspace(-35.0, 7.0, 4000).reshape(2, -1)
    u = special.ndtr(z)
    x = fam.ppf(u, *shape)
    assert x.shape == z.shape and np.all(np.diff(x.ravel()) > 0)
    low, up = u < 0.5, u >= 0.5
    np.testing.assert_allclose(fam.logcdf(x[low], *shape), np.log(u[low]), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fam.logsf(x[up], *shape), np.log1p(-u[up]), rtol=1e-9, atol=1e-9)
    assert fam.ppf(np.array([0.0, 1.0]), *shape).tolist() == [-np.inf, np.inf]


@pytest.mark.parametrize("shape", [(0.2644, -1.804, 1.5825), (0.1, 0.0, 3.0), (0.3, 20.0, 0.02)])
def test_mixture_ppf_of_normal_matches_the_exact_quantile(shape):
    """The latent transform z -> ppf(Phi(z)): the checked table (or the exact solver where no table
    reaches 1e-10) agrees with the exact quantile, and the upper tail stays finite beyond z = 8.3."""
    from reliability.devices.families import _mix_ppf_of_normal, _mixture_table

    fam = get_family("gaussian_mixture")
    z = np.concatenate([np.random.default_rng(0).standard_normal(20000), np.linspace(-39.0, 39.0, 781)])
    got, exact = fam.ppf_of_normal(z, *shape), _mix_ppf_of_normal(z, *shape)
    np.testing.assert_allclose(got, exact, rtol=0, atol=2e-10 * (1 + np.abs(exact)).max())
    assert np.all(np.isfinite(got)) and np.all(np.diff(got[20000:]) > 0)
    mid = np.abs(z) < 6          # where Phi(z) itself still holds the digits
    np.testing.assert_allclose(got[mid], fam.ppf(special.ndtr(z[mid]), *shape), atol=1e-8)
    if shape == (0.2644, -1.804, 1.5825):       # the CrossSim fit's shape gets a table
        assert _mixture_table(shape) is not None


def test_unknown_family_and_bad_shape_errors():
    with pytest.raises(ModelSpecError, match="unknown variation family 'gauss'"):
        ProgrammingVariation("gauss")
    with pytest.raises(ModelSpecError, match="outside its domain"):
        ProgrammingVariation("student_t", shape={"df": -1.0})
    with pytest.raises(ModelSpecError, match="unknown"):
        ProgrammingVariation("normal", shape={"df": 3.0})


def test_state_functions():
    p = Polynomial((1.0, 2.0, -1.0), x_scale=10.0, lower=0.0)
    np.testing.assert_allclose(p(np.array([0.0, 10.0, 30.0])), [1.0, 2.0, 0.0])  # 1+6-9 = -2 -> lower bound 0
    s = Spline((0.0, 1.0, 2.0), (1.0, 3.0, 2.0))
    np.testing.assert_allclose(s(np.array([-1.0, 0.0, 1.0, 2.0, 5.0])), [1.0, 1.0, 3.0, 2.0, 2.0])
    assert np.all(s(np.linspace(0, 2, 101)) <= 3.0 + 1e-12)  # PCHIP does not overshoot
    with pytest.raises(ModelSpecError, match="strictly increasing"):
        Spline((0.0, 0.0), (1.0, 2.0))
    assert Constant(2.5)(np.zeros((2, 3))).shape == (2, 3)


def _full_model():
    return DeviceModel(
        name="t", programming=ProgrammingVariation("normal", scale=Polynomial((0.3, 1.0), 25.0, 0.0)),
        drift=Drift(Constant(0.05), Constant(0.01)), read_noise=ReadNoise(Constant(0.01)),
        stuck=StuckAt(0.01, 0.02, 0.0, 25.0, 0.0, 0.2), chip_gain=ChipGain(0.05), g_range=(0.0, 25.0),
        metadata={"fit": {"a": np.float64(1.5), "b": [np.nan, 1.0]}},
    )


def test_json_round_trip_and_file(tmp_path):
    m = _full_model()
    m2 = DeviceModel.from_dict(json.loads(m.to_json()))
    assert m2 == m
    assert m2.metadata["fit"]["b"] == [None, 1.0]  # NaN -> null in JSON
    path = m.save(tmp_path / "d.json")
    assert DeviceModel.load(path) == m
    with pytest.raises(FileExistsError, match="overwrite"):
        m.save(path)
    emp = DeviceModel(programming=EmpiricalVariation((1.0, 2.0), (0.0, 0.5, 1.0), ((-1, 0, 1), (-2, 0, 2))))
    assert DeviceModel.from_dict(emp.to_dict()) == emp


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(schema="other"), "not a device model"),
    (lambda d: d.update(version=99), "version 99 is not supported"),
    (lambda d: d.update(colour="red"), "unknown fields"),
    (lambda d: d["stuck"].update(p_low=1.5), "probability"),
    (lambda d: d["programming"]["scale"].update(kind="cubic"), "unknown kind 'cubic'"),
    (lambda d: d.update(unit="ohm"), "unit must be one of"),
])
def test_json_errors(mutate, match):
    d = _full_model().to_dict()
    mutate(d)
    with pytest.raises(ModelSpecError, match=match):
        DeviceModel.from_dict(d)


def test_load_reports_bad_json(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ModelSpecError, match="not valid JSON"):
        DeviceModel.load(p)


def test_sampling_is_reproducible_and_shaped():
    m = _full_model()
    a = m.sample(10.0, 3600.0, size=1000, rng=3)
    b = m.sample(10.0, 3600.0, size=1000, rng=3)
    np.testing.assert_array_equal(a, b)
    chips = m.sample_chips(np.linspace(1, 25, 6).reshape(2, 3), 5, 86400.0, rng=1)
    assert chips.shape == (5, 2, 3)
    assert np.all(chips >= 0)


def test_programming_std_matches_samples():
    m = DeviceModel(programming=ProgrammingVariation("student_t", scale=Constant(0.5), shape={"df": 6.0}), floor=None)
    x = m.sample(10.0, size=N, rng=0)
    sd_true = float(m.std_programming(10.0))
    # SE of a sample std for a t(6) (kurtosis 6): ~ sd*sqrt((kappa - 1)/(4N)); allow 5 SE
    assert abs(x.std() - sd_true) < 5 * sd_true * np.sqrt(5 / (4 * N))


def test_drift_exact_and_read_noise_std():
    m = DeviceModel(drift=Drift(Constant(0.06), Constant(0.0), t0_s=20.0))
    g = m.sample(np.full(10, 10.0), time_s=2000.0, rng=0)
    np.testing.assert_allclose(g, 10.0 * (2000.0 / 20.0) ** -0.06)
    np.testing.assert_allclose(m.sample(np.full(3, 10.0), time_s=5.0, rng=0), 10.0)  # before t0: no drift
    rn = ReadNoise(Constant(0.02))
    m = DeviceModel(read_noise=rn)
    x = m.sample(10.0, 3600.0, size=N, rng=1)
    sd = 10.0 * 0.02 * np.sqrt(np.log((3600 + 250e-9) / (2 * 250e-9)))
    assert abs(x.std() - sd) < 4 * sd / np.sqrt(2 * N)


def test_stuck_fractions_and_chip_gain_shared_within_chip():
    m = DeviceModel(stuck=StuckAt(0.05, 0.1, 0.0, 25.0))
    x = m.sample(10.0, size=N, rng=2)
    for value, p in ((0.0, 0.05), (25.0, 0.1)):
        frac = np.mean(x == value)
        assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / N)
    m = DeviceModel(chip_gain=ChipGain(0.1))
    chips = m.sample_chips(np.array([1.0, 2.0, 4.0]), 2000, rng=0)
    np.testing.assert_allclose(chips[:, 1] / chips[:, 0], 2.0)  # one gain per chip
    sd = np.log(chips[:, 0]).std()
    assert abs(sd - 0.1) < 4 * 0.1 / np.sqrt(2 * 2000)


def test_floor_and_invalid_inputs():
    m = DeviceModel(programming=ProgrammingVariation("normal", scale=Constant(5.0)))
    assert np.all(m.sample(0.0, size=1000, rng=0) >= 0.0)
    with pytest.raises(ModelSpecError, match="non-negative"):
        m.read(m.program(np.ones(2), rng=0), time_s=-1.0)
    with pytest.raises(ModelSpecError, match="finite"):
        m.sample(np.nan, size=3, rng=0)
    with pytest.raises(ModelSpecError, match="n_chips"):
        m.sample_chips(np.ones(2), 0)


def test_describe_names_units():
    text = _full_model().describe()
    for word in ("uS", "t0 = 20 s", "stuck-at", "chip-to-chip gain", "read noise"):
        assert word in text
