"""Chip specification files, weight -> conductance mapping round trips, prepared device arrays."""

from dataclasses import dataclass

import numpy as np
import pytest

from reliability.cim.mapping import LayerMapping, quantize_uniform
from reliability.cim.spec import ChipSpec, MappingSpec, PeripherySpec, parse_variation
from reliability.devices import ChipGain, StuckAt, load_device
from reliability.devices.prepared import PreparedArray
from reliability.errors import ModelSpecError


@dataclass
class FakeLayer:
    weight: np.ndarray
    layer_max_abs: float
    name: str = "fc"
    index: int = 0


W = np.random.default_rng(0).normal(size=(40, 9))
LAYER = FakeLayer(W, float(np.abs(W).max()))


def _ref_quantized(ms: MappingSpec):
    if not ms.weight_bits:
        return W
    qmax = 2 ** (ms.weight_bits - 1) - 1
    s = np.abs(W).max(axis=0) if ms.scale == "per-column" else np.abs(W).max()
    return np.rint(W / s * qmax) * s / qmax


SPECS = [
    MappingSpec(), MappingSpec(scheme="offset"), MappingSpec(weight_bits=8), MappingSpec(weight_bits=8, device_bits=2),
    MappingSpec(weight_bits=8, device_bits=3, devices_per_weight=2), MappingSpec(weight_bits=6, device_bits=2, scheme="offset"),
    MappingSpec(weight_bits=4, scale="per-column"), MappingSpec(weight_bits=5, device_bits=1, scale="per-column"),
]


@pytest.mark.parametrize("device", ["pcm", "multi-device:weight_bits=8,device_bits=2,sigma=0.1", "rram"])
@pytest.mark.parametrize("ms", SPECS, ids=lambda m: f"{m.scheme}-{m.weight_bits}b-{m.device_bits}d-{m.devices_per_weight}r-{m.scale}")
def test_noiseless_conductances_decode_to_quantized_weights(device, ms):
    m = LayerMapping(LAYER, load_device(device), ms)
    np.testing.assert_allclose(m.Wq, _ref_quantized(ms), atol=1e-12 * np.abs(W).max())
    lo, hi = m.g_min, m.g_max
    assert m.targets.min() >= lo - 1e-12 and m.targets.max() <= hi + 1e-12
    if ms.device_bits:
        # each device holds one m-bit slice: its level is an integer 0 .. 2^m - 1
        lv = (m.targets - lo) / (hi - lo) * (2 ** ms.device_bits - 1)
        np.testing.assert_allclose(lv, np.rint(lv), atol=1e-9)


def test_weight_level_mapping_and_gradient_coefficients():
    m = LayerMapping(LAYER, load_device("weight-gaussian:sigma=0.1"), MappingSpec())
    np.testing.assert_allclose(m.Wq, W)
    g = m.targets[None] + 0.01
    np.testing.assert_allclose(m.decode(g)[0], W + 0.01 * LAYER.layer_max_abs)
    with pytest.raises(ModelSpecError, match="device_bits"):
        LayerMapping(LAYER, load_device("weight-gaussian:sigma=0.1"), MappingSpec(weight_bits=8, device_bits=2))


@pytest.mark.parametrize("ms", SPECS[:6])
def test_decode_is_linear_and_gradient_matches(ms):
    """grad_conductance is the exact derivative of the (linear) decode."""
    m = LayerMapping(LAYER, load_device("pcm"), ms)
    rng = np.random.default_rng(1)
    g = m.targets[None] + rng.normal(size=(2,) + m.targets.shape)
    G = rng.normal(size=(2, 40, 9))
    dg = m.grad_conductance(G)
    d = rng.normal(size=g.shape)
    lhs = (G * (m.decode(g + d) - m.decode(g))).sum()
    np.testing.assert_allclose(lhs, (dg * d).sum(), rtol=1e-9)


def test_quantize_uniform_saturates_and_counts():
    x = np.array([-3.0, -0.26, 0.0, 0.24, 0.5, 2.0])
    q, sat = quantize_uniform(x, 1.0, 3)  # 3 steps each side: lsb 1/3
    np.testing.assert_allclose(q, [-1.0, -1 / 3, 0.0, 1 / 3, 2 / 3, 1.0])
    assert sat == 2


def test_chip_spec_toml_and_json_round_trip(tmp_path):
    toml = tmp_path / "chip.toml"
    toml.write_text('''schema = "nvcim-reliability/chip"
version = 1
[device]
model = "pcm"
time_s = 86400.0
[mapping]
weight_bits = 8
device_bits = 2
tile_rows = 128
[periphery]
adc_bits = 8
drift_compensation = true
''')
    s = ChipSpec.load(toml)
    assert s.mapping.weight_bits == 8 and s.mapping.tile_rows == 128 and s.periphery.drift_compensation
    assert s.time_s == 86400.0 and s.device_model().name == "pcm"
    p = s.save(tmp_path / "chip.json")
    assert ChipSpec.load(p) == s
    assert parse_variation(str(p)) == s


@pytest.mark.parametrize("text,match", [
    ('schema = "x"\nversion = 1', "schema"),
    ('schema = "nvcim-reliability/chip"\nversion = 7', "version 7"),
    ('schema = "nvcim-reliability/chip"\nversion = 1\n[mapping]\nbits = 3', "unknown fields in \\[mapping\\]"),
    ('schema = "nvcim-reliability/chip"\nversion = 1\n[mapping]\nscheme = "quad"', "scheme"),
    ('schema = "nvcim-reliability/chip"\nversion = 1\n[mapping]\ndevice_bits = 2', "needs mapping.weight_bits"),
    ('schema = "nvcim-reliability/chip"\nversion = 1\n[periphery]\nadc_range = "auto"', "adc_range"),
    ('schema = "nvcim-reliability/chip"\nversion = 1\n[device]\ntime_s = -1.0', "non-negative"),
    ('schema = "nvcim-reliability/chip"\nversion = 1\n[simulation]\ndtype = "float16"', "dtype"),
])
def test_chip_spec_errors(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ModelSpecError, match=match):
        ChipSpec.load(f)


def test_shorthands():
    s = parse_variation("weight-gaussian:sigma=0.05")
    assert s.device_model().unit == "w_max"
    s = parse_variation("multi-device:weight_bits=8,device_bits=2,sigma=0.1")
    assert s.mapping.weight_bits == 8 and s.mapping.device_bits == 2
    with pytest.raises(ModelSpecError):
        parse_variation("")
    assert parse_variation(PeripherySpec.__name__ and "pcm").device_model().unit == "uS"


def test_prepared_array_matches_device_model_distribution():
    """Per-device draws of PreparedArray follow the same law as DeviceModel.sample_chips (KS test on
    200,000 devices; critical value at alpha = 1e-3 for two samples ~1.95*sqrt(2/n)).  Without chip
    gain, so that devices are independent; the gain is checked on its own."""
    from scipy import stats

    model = load_device("pcm").with_(stuck=StuckAt(0.01, 0.005, 0.0, 25.0, 0.0, 0.3))
    targets = np.full(1000, 10.0)
    P = PreparedArray(model, targets, dtype=np.float64)
    a = np.concatenate([P.sample(86400.0, rng=np.random.default_rng(i)) for i in range(200)])
    b = model.sample_chips(targets, 200, 86400.0, rng=7).ravel()
    assert stats.ks_2samp(a, b).statistic < 1.95 * np.sqrt(2 / a.size)
    # reproducible from the generator alone
    np.testing.assert_array_equal(P.sample(10.0, rng=3), P.sample(10.0, rng=3))

    gm = load_device("pcm").with_(programming=None, drift=None, read_noise=None, chip_gain=ChipGain(0.05))
    P = PreparedArray(gm, np.array([1.0, 2.0]), dtype=np.float64)
    chips = np.stack([P.sample(rng=np.random.default_rng(i)) for i in range(4000)])
    np.testing.assert_allclose(chips[:, 1] / chips[:, 0], 2.0)
    sd = np.log(chips[:, 0]).std()
    assert abs(sd - 0.05) < 4 * 0.05 / np.sqrt(2 * 4000)
