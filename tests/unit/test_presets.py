"""Tests of the literature presets (reliability.devices.presets).

Reference numbers are the published coefficients, written out here independently of the module:
aihwkit PCMLikeNoiseModel (IBM/aihwkit src/aihwkit/inference/noise/pcm.py @ 1384c56), CrossSim
RRAM_Milo.py / RRAM_Wan.py / SONOS.py (sandialabs/cross-sim @ 0a2eb1e), NF_Training config.py /
generate_noise.py (YifanQin-ND/NF_Training @ c86c8ad).  Statistical checks are seeded and use a
3-standard-error tolerance (SE of a sample std of n normal draws ~ sigma / sqrt(2 n); SE of a mean
~ sd / sqrt(n)).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from reliability.devices import DeviceModel
from reliability.devices import load_device as pkg_load_device
from reliability.devices import preset_names as pkg_preset_names
from reliability.devices.model import UNITS
from reliability.devices.presets import (
    PRESETS, get_preset, load_device, parse_spec, pcm, preset_names, rram, rram_wan, sonos, sonos_sigma_us,
)
from reliability.errors import ModelSpecError

# ------------------------------------------------------------------ closed forms (from the sources)
G_MAX = 25.0


def aihwkit_prog_sigma(g, g_max=25.0):
    x = np.asarray(g) / g_max
    return np.maximum(0.26348 + 1.9650 * x - 1.1731 * x**2, 0.0) * g_max / 25.0


def aihwkit_nu_mean(g, g_max=25.0):
    x = np.maximum(np.abs(np.asarray(g) / g_max), 1e-7)
    return np.clip(-0.0155 * np.log(x) + 0.0244, 0.049, 0.1)


def aihwkit_nu_std(g, g_max=25.0):
    x = np.maximum(np.abs(np.asarray(g) / g_max), 1e-7)
    return np.clip(-0.0125 * np.log(x) - 0.0059, 0.008, 0.045)


def aihwkit_q(g, g_max=25.0):
    x = np.abs(np.asarray(g) / g_max)
    return np.minimum(0.0088 / np.maximum(x**0.65, 1e-3), 0.2)


# Words each preset's docstring and source must name (its reference).
REFERENCES = {
    "pcm": ("aihwkit", "Nandakumar", "Joshi"),
    "rram": ("cross-sim", "RRAM_Milo.py", "Milo"),
    "rram-wan": ("cross-sim", "RRAM_Wan.py", "Wan"),
    "sonos": ("cross-sim", "SONOS.py", "Agrawal"),
    "weight-gaussian": ("Yan", "NF_Training"),
    "multi-device": ("Yan", "NF_Training"),
    "rram1": ("NeFT", "NF_Training"),
    "fefet2": ("NeFT", "NF_Training"),
    "rram4": ("NeFT", "NF_Training"),
    "fefet6": ("NeFT", "NF_Training"),
}


def test_registry_lists_all_presets():
    assert set(preset_names()) == set(REFERENCES) == set(PRESETS)
    assert pkg_preset_names() == preset_names()


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_preset_builds_samples_and_round_trips(name, tmp_path):
    m = get_preset(name)
    assert isinstance(m, DeviceModel) and m.unit in UNITS and m.name == name
    lo, hi = m.g_range
    target = np.linspace(lo, hi, 12).reshape(3, 4)
    x = m.sample(target, time_s=3600.0, rng=np.random.default_rng(7))
    assert x.shape == (3, 4) and np.all(np.isfinite(x))
    y = m.sample(target, time_s=3600.0, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(x, y)  # seeded: reproducible
    chips = m.sample_chips(target, n_chips=5, rng=np.random.default_rng(1))
    assert chips.shape == (5, 3, 4) and np.all(np.isfinite(chips))
    # JSON round trip, in memory and through a file
    assert DeviceModel.from_dict(m.to_dict()) == m
    assert DeviceModel.from_dict(json.loads(m.to_json())) == m
    path = m.save(tmp_path / f"{name}.json")
    assert DeviceModel.load(path) == m
    assert load_device(str(path)) == m


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_docstring_and_source_name_the_reference(name):
    fn = PRESETS[name]
    m = fn()
    for word in REFERENCES[name]:
        assert word in fn.__doc__, (name, word)
        assert word in m.source, (name, word)
    # code-derived numbers carry the exact commit they were read from
    assert re.search(r"\b[0-9a-f]{40}\b", m.source), m.source
    assert "Units" in fn.__doc__ or "uS" in fn.__doc__


# ------------------------------------------------------------------ PCM (aihwkit)
def test_pcm_programming_std_matches_aihwkit_polynomial():
    """Sample std at t = 20 s (no drift yet) with read noise removed vs the aihwkit polynomial."""
    m = pcm().with_(drift=None, read_noise=None)
    targets = np.array([2.5, 5.0, 10.0, 15.0, 20.0, 25.0])
    n = 200_000
    g = m.sample(targets, time_s=20.0, size=(n, targets.size), rng=np.random.default_rng(2024))
    sd_hat = g.std(axis=0, ddof=1)
    sigma = aihwkit_prog_sigma(targets)
    se = sigma / math.sqrt(2 * n)
    assert np.all(np.abs(sd_hat - sigma) <= 3 * se), (sd_hat, sigma, se)
    np.testing.assert_allclose(m.std_programming(targets), sigma, rtol=1e-12)


def test_pcm_programming_polynomial_exact_and_scaled_with_g_max():
    g = np.linspace(0.0, 25.0, 101)
    np.testing.assert_allclose(pcm().programming.scale(g), aihwkit_prog_sigma(g), rtol=1e-12, atol=1e-15)
    g20 = np.linspace(0.0, 20.0, 101)
    np.testing.assert_allclose(pcm(g_max=20.0).programming.scale(g20), aihwkit_prog_sigma(g20, 20.0), rtol=1e-12)
    assert pcm().g_range == (0.0, 25.0) and pcm().floor == 0.0


@pytest.mark.parametrize("g_max", [25.0, 20.0])
def test_pcm_splines_match_closed_forms_to_one_percent(g_max):
    m = pcm(g_max=g_max)
    g = np.geomspace(0.01 * g_max, g_max, 20001)  # [0.25, 25] uS for g_max = 25
    for got, want in ((m.drift.nu_mean(g), aihwkit_nu_mean(g, g_max)),
                      (m.drift.nu_std(g), aihwkit_nu_std(g, g_max)),
                      (m.read_noise.q(g), aihwkit_q(g, g_max))):
        assert np.max(np.abs(got / want - 1)) < 0.01
    # below 0.01 g_max the clipped values are held (aihwkit clips x at 1e-7)
    assert m.drift.nu_mean(0.0) == pytest.approx(0.1)
    assert m.drift.nu_std(0.0) == pytest.approx(0.045)
    assert m.read_noise.q(0.0) == pytest.approx(0.2)
    assert m.drift.t0_s == 20.0 and m.read_noise.t_read_s == 250e-9 and m.drift.fold


def test_pcm_time_convention_drift_and_read_noise():
    """time_s = aihwkit t_inference + t0: no drift at 20 s; nu and read-noise sigma as in aihwkit."""
    base = pcm()
    target = np.full(100_000, 25.0)
    # drift only: at t0 nothing changes, at t0 + 1000 s the exponent is |N(0.049, 0.008)| at g = g_max
    drift_only = base.with_(programming=None, read_noise=None)
    np.testing.assert_array_equal(drift_only.sample(target, time_s=20.0, rng=1), target)
    g = drift_only.sample(target, time_s=1020.0, rng=np.random.default_rng(3))
    nu = -np.log(g / target) / np.log(1020.0 / 20.0)
    assert abs(nu.mean() - 0.049) <= 3 * 0.008 / math.sqrt(nu.size)
    # read noise only, at time_s = 20 s (aihwkit t_inference = 0): sigma = g Q_s sqrt(ln((t + t_r) / (2 t_r)))
    read_only = base.with_(programming=None, drift=None)
    r = read_only.sample(target, time_s=20.0, rng=np.random.default_rng(4))
    sigma = 25.0 * 0.0088 * math.sqrt(math.log((20.0 + 250e-9) / (2 * 250e-9)))
    assert abs(r.std(ddof=1) - sigma) <= 3 * sigma / math.sqrt(2 * r.size)


def test_pcm_scales_and_validation():
    m = pcm(prog_noise_scale=0.5, drift_scale=2.0, read_noise_scale=0.0)
    np.testing.assert_allclose(m.programming.scale(10.0), 0.5 * aihwkit_prog_sigma(10.0))
    assert m.drift.nu_mean(25.0) == pytest.approx(2 * 0.049)
    assert m.read_noise.q(5.0) == 0.0
    with pytest.raises(ModelSpecError, match="g_max"):
        pcm(g_max=-1)
    with pytest.raises(ModelSpecError, match="n_knots"):
        pcm(n_knots=3)


# ------------------------------------------------------------------ RRAM (CrossSim)
def test_rram_milo_sigma_and_range():
    m = rram()
    g = np.array([50.0, 100.0, 225.0])
    np.testing.assert_allclose(m.std_programming(g), -0.009107 * g + 4.782321, rtol=1e-12)
    assert m.g_range == (50.0, 225.0) and m.unit == "uS"
    assert m.drift is None and m.read_noise is None
    with pytest.raises(ModelSpecError, match="225"):
        rram(g_max=300.0)
    with pytest.raises(ModelSpecError, match="50"):
        rram(g_min=10.0)


def test_rram_wan_sigma_and_range():
    m = rram_wan()
    g = np.array([0.0, 10.0, 20.0, 39.26])
    want = 1.536e-4 * g**3 - 1.167e-2 * g**2 + 0.2374 * g + 1.053
    np.testing.assert_allclose(m.std_programming(g), want, rtol=1e-12)
    assert m.g_range == (0.0, 39.26)
    with pytest.raises(ModelSpecError, match="39.26"):
        rram_wan(g_max=50.0)


# ------------------------------------------------------------------ SONOS (CrossSim)
def test_sonos_time_zero_closed_form():
    m = sonos()
    g = np.linspace(0.0, 16.0, 4001)
    want = 19.88665 * (1 - np.exp(-100 * g / 176.3115)) / 100  # nA -> uS at 0.1 V
    np.testing.assert_allclose(m.programming.loc(g), 0.0, atol=0)
    mask = g >= 0.01 * 16
    assert np.max(np.abs(m.programming.scale(g[mask]) / want[mask] - 1)) < 0.01
    assert np.max(np.abs(m.programming.scale(g) - want)) < 0.01 * want.max()
    assert m.g_range == pytest.approx((16e-7, 16.0))


@pytest.mark.parametrize("t", [1.0, 2.5, 5.0])
def test_sonos_drifted_snapshot(t):
    m = sonos(time_days=t)
    g = np.linspace(0.16, 16.0, 2001)
    assert np.max(np.abs(m.programming.scale(g) / sonos_sigma_us(g, t) - 1)) < 0.01
    # the mean shift is CrossSim's polynomial of the current in nA, divided by 100
    i = 100 * g
    if t == 1.0:
        p1 = [1.72684e-01, 5.72552e-02, -6.85715e-04, 3.50271e-06, -9.37682e-09, 1.40575e-11, -1.19803e-14,
              5.41293e-18, -8.85448e-22, -1.66869e-25, 5.95180e-29]
        np.testing.assert_allclose(m.programming.loc(g), np.polynomial.polynomial.polyval(i, p1) / 100,
                                   rtol=1e-9, atol=1e-12)
    if t == 5.0:  # variability at 5 days: A = 34.57909 nA, B = 207.34309 nA, at the drifted current
        p5 = [3.19927e-01, 1.06596e-01, -1.04054e-03, 4.50290e-06, -1.10352e-08, 1.56477e-11, -1.27592e-14,
              5.45513e-18, -7.26841e-22, -2.43893e-25, 7.14608e-29]
        i_d = i + np.polynomial.polynomial.polyval(i, p5)
        want = np.maximum(34.57909 * (1 - np.exp(-i_d / 207.34309)), 0) / 100
        np.testing.assert_allclose(sonos_sigma_us(g, 5.0), want, rtol=1e-12)


def test_sonos_validation():
    with pytest.raises(ModelSpecError, match="time_days"):
        sonos(time_days=6)
    with pytest.raises(ModelSpecError, match="18 uS"):
        sonos(time_days=1, g_max=20.0)
    assert sonos(time_days=0, g_max=20.0).g_range[1] == 20.0
    with pytest.raises(ModelSpecError, match="32 uS"):
        sonos(g_max=40.0)
    assert "read_noise_A_B_nA" in sonos().metadata["not_represented"]


# ------------------------------------------------------------------ Yan / Hu / Shi models
def test_weight_gaussian():
    m = get_preset("weight-gaussian", sigma=0.05)
    assert m.unit == "w_max" and m.floor is None and m.g_range == (-1.0, 1.0)
    w = np.array([-1.0, -0.3, 0.0, 0.7])
    np.testing.assert_allclose(m.std_programming(w), 0.05)
    x = m.sample(np.full(50_000, -1.0), rng=np.random.default_rng(5))
    assert abs(x.mean() + 1.0) <= 3 * 0.05 / math.sqrt(x.size)  # no floor: signed weights stay signed
    assert "w_max" in PRESETS["weight-gaussian"].__doc__ and "bias" in PRESETS["weight-gaussian"].__doc__


def test_multi_device():
    m = get_preset("multi-device")
    assert m.unit == "level" and m.g_range == (0.0, 3.0)
    assert m.metadata["weight_bits"] == 8 and m.metadata["device_bits"] == 2
    m4 = get_preset("multi-device", weight_bits=8, device_bits=4, sigma=0.3)
    assert m4.g_range == (0.0, 15.0) and m4.metadata["devices_per_weight"] == 2
    np.testing.assert_allclose(m4.std_programming(np.arange(16.0)), 0.3)
    with pytest.raises(ModelSpecError, match="multiple"):
        get_preset("multi-device", weight_bits=6, device_bits=4)


@pytest.mark.parametrize("name,s", [("rram1", 1), ("fefet2", 2), ("rram4", 4), ("fefet6", 6)])
def test_level_presets_per_level_sigma(name, s):
    sigma = 0.2
    m = get_preset(name.upper(), sigma=sigma)  # case-insensitive
    base = sigma / math.sqrt(0.4 * s * s + 0.6)  # NF_Training generate_noise normalization
    levels = np.array([0.0, 1.0, 2.0, 3.0])
    want = np.array([base, s * base, s * base, base])
    np.testing.assert_allclose(m.std_programming(levels), want, rtol=1e-12)  # exact at the levels
    assert 0.6 * want[0] ** 2 + 0.4 * want[1] ** 2 == pytest.approx(sigma**2)
    assert m.metadata["device_bits"] == 2 and m.metadata["levels"] == [0, 1, 2, 3]
    assert m.metadata["s_factor"] == s and m.unit == "level" and m.g_range == (0.0, 3.0)
    raw = get_preset(name, sigma=sigma, normalize=False)
    np.testing.assert_allclose(raw.std_programming(levels), sigma * np.array([1, s, s, 1]), rtol=1e-12)
    # sampled std at level 1 agrees with the table (3 SE)
    n = 100_000
    x = m.sample(np.ones(n), rng=np.random.default_rng(11))
    assert abs(x.std(ddof=1) - want[1]) <= 3 * want[1] / math.sqrt(2 * n)


# ------------------------------------------------------------------ load_device / parse_spec
def test_load_device_model_name_params_and_json(tmp_path):
    m = pcm()
    assert load_device(m) is m
    assert load_device("pcm") == m
    assert load_device("  PCM  ") == m
    assert pkg_load_device("pcm") == m
    m20 = load_device("pcm:g_max=20,drift_scale=0.5")
    assert m20 == pcm(g_max=20.0, drift_scale=0.5) and m20.g_range == (0.0, 20.0)
    assert load_device("Weight_Gaussian:sigma=0.05") == get_preset("weight-gaussian", sigma=0.05)
    assert load_device("fefet2:sigma=0.3, normalize=false") == get_preset("fefet2", sigma=0.3, normalize=False)
    assert load_device("sonos:time_days=2,g_max=12") == sonos(time_days=2, g_max=12.0)
    path = rram().save(tmp_path / "dev.JSON")
    assert load_device(path) == rram()
    assert load_device(str(path)) == rram()


def test_load_device_errors(tmp_path):
    with pytest.raises(ModelSpecError) as err:
        load_device("flash")
    msg = str(err.value)
    assert all(n in msg for n in preset_names()) and ".json" in msg
    with pytest.raises(ModelSpecError, match=r"\.json"):
        load_device("model.txt")
    with pytest.raises(ModelSpecError, match=r"\.json"):
        load_device(Path(tmp_path / "model.yaml"))
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_device(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelSpecError, match="not valid JSON"):
        load_device(bad)
    with pytest.raises(ModelSpecError, match="g_max"):  # lists the preset's parameters
        load_device("pcm:nope=1")
    with pytest.raises(ModelSpecError, match="key=value"):
        load_device("pcm:g_max")
    with pytest.raises(ModelSpecError, match="g_max"):
        load_device("pcm:g_max=abc")
    with pytest.raises(ModelSpecError, match="twice"):
        load_device("pcm:g_max=1,g_max=2")
    with pytest.raises(ModelSpecError):
        load_device(42)
    with pytest.raises(ModelSpecError, match="available presets"):
        get_preset("nope")


def test_parse_spec_values():
    name, params = parse_spec("x:a=1, b=2.5,c=1e-7,d=true,e=False,f=none,g=text")
    assert name == "x"
    assert params == {"a": 1, "b": 2.5, "c": 1e-7, "d": True, "e": False, "f": None, "g": "text"}
    assert parse_spec("pcm") == ("pcm", {})
    with pytest.raises(ModelSpecError, match="ends in a colon with no parameters"):
        parse_spec("pcm:")          # never silently the defaults (weight-gaussian: was sigma 0.1)
