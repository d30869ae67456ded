"""Mitigation catalogue, write-verify in the core, costs and the ranking."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import special, stats

from reliability.cim import ChipSimulator
from reliability.cim.latent import LatentChips
from reliability.cim.spec import ChipSpec, MappingSpec, parse_variation
from reliability.devices import DeviceModel, ProgrammingVariation
from reliability.devices.state import Constant
from reliability.devices.verify import acceptance
from reliability.errors import ModelSpecError, ReliabilityError
from reliability.mitigation import (
    CATALOGUE, Combination, Context, CostModel, Design, Replicas, SelectiveWriteVerify, WriteVerify, crn_signature,
    design_costs, parse_metric, parse_mitigation, rank, top_fraction_mask,
)
from reliability.mitigation.rank import Robustness, _pareto, _separated, rows_per_inference

WG = "weight-gaussian:sigma=0.05"


@pytest.fixture(scope="module")
def case(public_case):
    return public_case


@pytest.fixture(scope="module")
def small(case):
    return case.network, case.X[:150], case.y[:150]


# ------------------------------------------------------------------ parsing
def test_parse_round_trip_and_combination():
    m = parse_mitigation("write-verify:tolerance=0.02 + adc:bits=6")
    assert isinstance(m, Combination)
    assert str(m) == "write-verify:tolerance=0.02 + adc:bits=6"
    assert str(parse_mitigation(str(m))) == str(m)
    s = parse_mitigation("swim:fraction=0.25,select=magnitude")
    assert isinstance(s, SelectiveWriteVerify) and s.fraction == 0.25 and s.select == "magnitude"
    assert parse_mitigation("replicas:n=3") == Replicas(3)
    assert str(parse_mitigation("baseline")) == "baseline"
    needs = {"write-verify-residual": ":pulses=4"}           # no published default exists
    for key in CATALOGUE:
        assert str(parse_mitigation(key + needs.get(key, ""))).startswith(key)


@pytest.mark.parametrize("bad, words", [
    ("write-verfy", "unknown mitigation"),
    ("write-verify:tol=0.1", "its parameters: tolerance"),
    ("write-verify:tolerance=abc", "not a valid float"),
    ("write-verify:tolerance=1.5", "in (0, 1)"),
    ("replicas:n=0", "whole number"),
    ("swim:fraction=2", "[0, 1]"),
    ("swim:select=gradient", "hessian"),
    ("baseline:x=1", "no parameters"),
    ("", "a mitigation must be"),
])
def test_parse_errors_name_the_problem(bad, words):
    with pytest.raises(ModelSpecError, match=None) as exc:
        parse_mitigation(bad)
    assert words in str(exc.value)


def test_metric_parsing():
    assert parse_metric("quantile:1e-4").param == 1e-4
    assert not parse_metric("prob:0.8").higher_is_better
    assert parse_metric("mean").higher_is_better
    for bad in ("quantile:0.7", "prob:1", "median", "quantile:x"):
        with pytest.raises(ModelSpecError, match="quantile:K"):
            parse_metric(bad)


def test_write_verify_given_twice_is_refused(small):
    net, x, y = small
    d = Design(net, parse_variation(WG))
    m = parse_mitigation("write-verify + swim:fraction=0.5")
    with pytest.raises(ModelSpecError, match="write-verified already"):
        m.apply(d, Context(x, y))


# ------------------------------------------------------------------ write-verify in the core
def test_acceptance_matches_normal_law():
    prog = ProgrammingVariation("normal", Constant(0.1), Constant(2.0))
    T = np.array([5.0, 10.0, 20.0])
    acc = acceptance(prog, T, 1.5, floor=0.0)
    # |T + 0.1 + 2 z - T| <= 1.5  <=>  z in [-0.8, 0.7]
    assert np.allclose(acc.u_lo, special.ndtr(-0.8))
    assert np.allclose(acc.q_hi, special.ndtr(-0.7))
    assert math.isclose(acc.expected_attempts(), 3 / (special.ndtr(0.7) - special.ndtr(-0.8)))
    # a floor inside the band: outcomes below it read as the floor and are accepted
    acc0 = acceptance(prog, np.array([1.0]), 1.5, floor=0.0)
    assert acc0.u_lo[0] == 0.0
    with pytest.raises(ModelSpecError, match="too tight"):
        acceptance(prog, T, 1e-7)
    with pytest.raises(ModelSpecError, match="cannot be met"):
        acceptance(prog, np.array([1.0]), 0.5, floor=2.0)


def test_verified_devices_follow_the_truncated_law():
    prog = ProgrammingVariation("normal", Constant(0.0), Constant(1.0))
    acc = acceptance(prog, np.zeros(200_000), 0.8)
    z = np.random.default_rng(1).standard_normal(200_000)
    zt = acc.apply_normal(z.copy())
    assert np.all(np.abs(zt) <= 0.8 + 1e-12)
    ks = stats.kstest(zt, stats.truncnorm(-0.8, 0.8).cdf)
    assert ks.pvalue > 1e-3
    # the map is monotone: same ordering of chips (common random numbers)
    order = np.argsort(z[:1000])
    assert np.all(np.diff(zt[:1000][order]) >= 0)


@pytest.mark.parametrize("variation", [WG, "pcm"])
def test_write_verify_keeps_chips_and_pulls_errors_into_the_band(case, variation):
    spec = parse_variation(variation)
    base = ChipSimulator(case.network, spec, threads=1)
    wv = ChipSimulator(case.network, spec.with_(write_verify=0.03), threads=1)
    g0 = [base.draw_chip(i, 11, keep_conductances=True).conductances for i in range(8)]
    g1 = [wv.draw_chip(i, 11, keep_conductances=True).conductances for i in range(8)]
    for li, m in enumerate(base.maps):
        band = 0.03 * (m.g_max - m.g_min)
        a = np.stack([g[li] for g in g0]).astype(np.float64)
        b = np.stack([g[li] for g in g1]).astype(np.float64)
        assert np.all(np.abs(b - m.targets) <= band * (1 + 1e-5) + 1e-6)
        # the same chips: each device keeps its order across chips (a monotone map of the same numbers)
        da, db = a[1:] - a[:-1], b[1:] - b[:-1]
        clear = np.abs(da) > 1e-4 * (m.g_max - m.g_min)
        assert np.all(np.sign(da[clear]) == np.sign(db[clear]))


def test_selective_mask_verifies_only_the_selected_weights(case):
    spec = parse_variation(WG).with_(write_verify=0.02)
    masks = [np.zeros((m.K, m.N), dtype=bool) for m in ChipSimulator(case.network, spec).maps]
    masks[0][:5, :] = True
    base = ChipSimulator(case.network, parse_variation(WG), threads=1)
    sel = ChipSimulator(case.network, spec, threads=1, verify_mask=masks)
    d0, d1 = base.draw_chip(4, 3), sel.draw_chip(4, 3)
    assert np.array_equal(d0.weights[1], d1.weights[1])
    assert np.array_equal(d0.weights[0][5:], d1.weights[0][5:])
    m = sel.maps[0]
    assert np.all(np.abs(d1.weights[0][:5] - m.Wq[:5]) <= 0.02 * m.coef[0, 0] * (1 + 1e-5))
    with pytest.raises(ReliabilityError, match="write_verify"):
        ChipSimulator(case.network, parse_variation(WG), verify_mask=masks)
    with pytest.raises(ReliabilityError, match="boolean"):
        ChipSimulator(case.network, spec, verify_mask=[np.ones((2, 2), dtype=bool)] * 2)


@pytest.mark.parametrize("device", [
    DeviceModel(name="t", unit="uS", g_range=(0.0, 10.0),
                programming=ProgrammingVariation("student_t", Constant(0.0), Constant(0.6), {"df": 4.0})),
    DeviceModel(name="ln", unit="uS", g_range=(1.0, 10.0),
                programming=ProgrammingVariation("lognormal", Constant(0.0), Constant(0.1))),
])
def test_latent_chips_match_monte_carlo_under_write_verify(case, device):
    spec = ChipSpec(device=device, write_verify=0.05, dtype="float64")
    sim = ChipSimulator(case.network, spec, threads=1)
    lat = LatentChips(sim)
    d = sim.draw_chip(2, 5, keep_conductances=True)
    for m, g in zip(sim.maps, d.conductances):
        assert np.all(np.abs(g - m.targets) <= 0.05 * (m.g_max - m.g_min) + 1e-9)
    z = lat.draw(np.random.default_rng(0), 64)
    view = lat.conductance_view()
    for m, g in zip(sim.maps, view.weights(z)):
        assert np.all(np.abs(g - m.targets) <= 0.05 * (m.g_max - m.g_min) + 1e-9)


def test_chip_spec_file_round_trip_with_write_verify(tmp_path):
    spec = parse_variation("pcm").with_(write_verify=0.04)
    p = spec.save(tmp_path / "chip.json")
    assert ChipSpec.load(p).write_verify == 0.04
    d = json.loads(p.read_text())
    d["programming"]["write_verfy"] = 0.1
    with pytest.raises(ModelSpecError, match="unknown fields in \\[programming\\]"):
        ChipSpec.from_dict(d)
    with pytest.raises(ModelSpecError, match="write_verify"):
        ChipSpec(write_verify=1.2)


# ------------------------------------------------------------------ SWIM and replicas
def test_swim_limits_equal_baseline_and_full_write_verify(small):
    net, x, y = small
    base = Design(net, parse_variation(WG))
    ctx = Context(x, y, seed=0)
    d0 = SelectiveWriteVerify(fraction=0.0, tolerance=0.03).apply(base, ctx)
    d1 = SelectiveWriteVerify(fraction=1.0, tolerance=0.03).apply(base, ctx)
    full = WriteVerify(0.03).apply(base, ctx)
    assert d0 == base
    r_base = base.simulator(1).evaluate(x, y, 40, rng=3).accuracy
    r0 = d0.simulator(1).evaluate(x, y, 40, rng=3).accuracy
    r1 = d1.simulator(1).evaluate(x, y, 40, rng=3).accuracy
    rf = full.simulator(1).evaluate(x, y, 40, rng=3).accuracy
    assert np.array_equal(r0, r_base)
    assert np.array_equal(r1, rf)
    dp = SelectiveWriteVerify(fraction=0.3, tolerance=0.03).apply(base, ctx)
    n_sel = sum(int(mk.sum()) for mk in dp.verify_mask)
    assert n_sel == round(0.3 * sum(mk.size for mk in dp.verify_mask))


def test_swim_hessian_selection_prefers_sensitive_weights(small):
    net, x, y = small
    ctx = Context(x, y, seed=0)
    base = Design(net, parse_variation(WG))
    d = SelectiveWriteVerify(fraction=0.1, tolerance=0.02).apply(base, ctx)
    dm = SelectiveWriteVerify(fraction=0.1, tolerance=0.02, select="random").apply(base, ctx)
    a_h = d.simulator(1).evaluate(x, y, 300, rng=1).accuracy
    a_r = dm.simulator(1).evaluate(x, y, 300, rng=1).accuracy
    a_b = base.simulator(1).evaluate(x, y, 300, rng=1).accuracy
    # paired on the same chips: verifying the most sensitive 10 % helps more than a random 10 %
    assert (a_h - a_r).mean() > 0
    assert (a_h - a_b).mean() > 0


def test_top_fraction_mask_ranks_across_layers():
    scores = [np.array([[1.0, 5.0], [3.0, 0.0]]), np.array([[4.0, 2.0]])]
    masks = top_fraction_mask(scores, 0.5)
    assert masks[0].tolist() == [[False, True], [True, False]] and masks[1].tolist() == [[True, False]]
    assert sum(m.sum() for m in top_fraction_mask(scores, 0.0)) == 0


@pytest.mark.parametrize("n", [2, 4])
def test_replicas_reduce_the_weight_sigma_by_sqrt_n(case, n):
    spec = parse_variation(WG)
    d = Replicas(n).apply(Design(case.network, spec), None)
    sim = d.simulator(1)
    m = sim.maps[0]
    assert m.targets.shape[0] == n
    # the decode is the mean of the n devices: exactly sigma / sqrt(n) for independent errors
    g = np.random.default_rng(0).standard_normal((3,) + m.targets.shape)
    assert np.allclose(m.decode(g), g.mean(axis=1)[:, 0, 0] * m.coef[0, 0])
    dev = np.stack([sim.draw_chip(i, 0).weights[0] - m.Wq for i in range(300)]) / m.coef[0, 0]
    assert abs(dev.std() / (0.05 / math.sqrt(n)) - 1) < 0.02
    lat = LatentChips(sim)
    assert np.array_equal(lat.weights(lat.draw_chip(0, 7))[0][0], sim.draw_chip(7, 0).weights[0])


# ------------------------------------------------------------------ costs
def test_costs_reproduce_the_cost_file_formulas(small):
    net, x, _ = small
    costs = CostModel.default()
    d = parse_mitigation("write-verify:tolerance=0.03 + adc:bits=6 + dac:bits=4 + drift-compensation:period_s=3600"
                         " + refresh:period_s=7200").apply(Design(net, parse_variation("pcm").with_(time_s=86400.0)),
                                                            Context(x, x[:, 0]))
    sim = d.simulator(1)
    c = design_costs(d, sim, rows_per_inference(net, x), costs).values
    n_dev = sim.n_devices
    attempts = sum(a.expected_attempts() for a in sim.acceptance(sim.device))
    k = costs.value
    assert c["devices"] == n_dev
    assert math.isclose(c["write_pulses"], attempts)
    assert math.isclose(c["write_time_s"], attempts * (k("write_pulse_s") + k("verify_read_s")))
    assert math.isclose(c["array_area_mm2"], n_dev * 48 * (22e-6) ** 2)
    cols = sum(-(-m.K // 256) * m.N for m in sim.maps)
    conv = cols * 4                                           # bit-serial inputs: 4 cycles
    assert c["adc_conversions"] == conv
    e = (0.538 * 6 + 4.375) * 1e-6 * 7 * 1e-9
    assert math.isclose(c["adc_energy_nJ"], conv * e * 1e9)
    assert c["adc_transistors"] == math.ceil(cols / 8) * (269 + 109 * 5 + 209 + 73 * 5)
    assert math.isclose(c["calibration_conversions_per_day"], cols * 86400 / 3600)
    assert math.isclose(c["refresh_write_time_s_per_day"], c["write_time_s"] * 12)
    assert sim.spec.time_s == 7200.0
    scalar = sum(costs.weights.get(key, 0) * v for key, v in c.items())
    assert math.isclose(design_costs(d, sim, rows_per_inference(net, x), costs).scalar, scalar)


def test_every_shipped_constant_has_a_source():
    costs = CostModel.default()
    assert costs.constants
    for name, (value, unit, source) in costs.constants.items():
        assert value >= 0 and unit and len(source) > 10, name


def test_cost_file_override_and_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('schema = "nvcim-reliability/costs"\nversion = 1\n[constants.write_pulse_s]\nvalue = 1e-6\n'
                 'unit = "s"\nsource = "our RRAM, measured 2026"\n[weights]\nwrite_time_s = 5.0\n')
    c = CostModel.load(p)
    assert c.value("write_pulse_s") == 1e-6 and c.weights["write_time_s"] == 5.0
    assert c.value("verify_read_s") == CostModel.default().value("verify_read_s")
    p.write_text('schema = "nvcim-reliability/costs"\nversion = 1\n[constants.write_pulse_s]\nvalue = 1e-6\nunit = "s"\n')
    with pytest.raises(ModelSpecError, match="source"):
        CostModel.load(p)
    p.write_text('schema = "nvcim-reliability/costs"\nversion = 1\n[constants.pulse]\nvalue = 1\nunit = "s"\nsource = "x"\n')
    with pytest.raises(ModelSpecError, match="unknown cost constant"):
        CostModel.load(p)
    with pytest.raises(ModelSpecError, match="does not exist"):
        CostModel.load(tmp_path / "none.toml")


# ------------------------------------------------------------------ ranking logic
def _rob(v, lo, hi):
    return Robustness(v, (lo, hi), True, None, 100, 0.0)


def test_ties_and_separation_from_intervals():
    rob = [_rob(0.90, 0.89, 0.91), _rob(0.905, 0.90, 0.91), _rob(0.95, 0.94, 0.96)]
    accs = [None] * 3
    sigs = [0, 0, 0]
    assert _separated(0, 1, rob, accs, sigs, True) == 0
    assert _separated(2, 0, rob, accs, sigs, True) == 1
    assert _separated(0, 2, rob, accs, sigs, True) == -1
    assert _separated(0, 2, rob, accs, sigs, False) == 1          # lower is better (prob)


def test_paired_separation_uses_common_random_numbers():
    rng = np.random.default_rng(0)
    a = rng.normal(0.9, 0.05, 2000)
    b = a + 0.001                                # the same chips, all a little better
    rob = [_rob(a.mean(), a.mean() - 0.01, a.mean() + 0.01), _rob(b.mean(), b.mean() - 0.01, b.mean() + 0.01)]
    assert _separated(1, 0, rob, [a, b], [1, 1], True) == 1      # paired: separated
    assert _separated(1, 0, rob, [a, b], [1, 2], True) == 0      # not the same chips: intervals overlap


def test_pareto_front_on_a_hand_made_set():
    costs = [0.0, 1.0, 2.0, 1.5, 3.0]
    values = [0.80, 0.85, 0.90, 0.84, 0.90]
    assert _pareto(costs, values, True) == [True, True, True, False, False]
    assert _pareto([0.0, 1.0], [0.1, 0.01], False) == [True, True]
    assert _pareto([0.0, 1.0], [0.01, 0.1], False) == [True, False]


def test_crn_signature_groups_candidates_with_the_same_random_numbers(small):
    net, x, y = small
    base = Design(net, parse_variation("pcm").with_(time_s=86400.0))
    ctx = Context(x, y)
    sig = crn_signature(base.simulator(1))
    for spec in ("write-verify:tolerance=0.03", "swim:fraction=0.2,tolerance=0.03", "adc:bits=6", "dac:bits=6",
                 "refresh:period_s=3600"):
        assert crn_signature(parse_mitigation(spec).apply(base, ctx).simulator(1)) == sig, spec
    for spec in ("replicas:n=2", "slicing:bits=2", "drift-compensation"):
        assert crn_signature(parse_mitigation(spec).apply(base, ctx).simulator(1)) != sig, spec


def test_rank_mean_metric_end_to_end(case):
    # all samples and sigma 0.1: variation costs mean accuracy here (on a subset it can add some)
    net, x, y = case.network, case.X, case.y
    res = rank(net, x, y, "weight-gaussian:sigma=0.1", ["write-verify:tolerance=0.02", "swim:fraction=0.1,tolerance=0.02", "replicas:n=2",
                               "adc:bits=4"], metric="mean", budget=300, rng=0)
    names = [c.name for c in res.candidates]
    assert names[0] == "baseline" and len(names) == 5
    by = {c.name: c for c in res.candidates}
    wv, base = by["write-verify:tolerance=0.02"], by["baseline"]
    assert wv.robustness.value > base.robustness.value
    assert wv.cost.values["write_pulses"] > base.cost.values["write_pulses"]
    assert wv.crn and not by["replicas:n=2"].crn
    vs = wv.vs_baseline
    assert vs["ci95_paired"][0] > 0
    assert (vs["ci95_paired"][1] - vs["ci95_paired"][0]) < (vs["ci95_independent"][1] - vs["ci95_independent"][0])
    assert by["replicas:n=2"].vs_baseline is None
    assert "baseline" in res.pareto_front
    d = res.to_dict()
    assert set(d) >= {"metric", "baseline", "mitigations", "pareto_front", "evaluations", "seconds"}
    assert set(d["mitigations"][0]) >= {"name", "spec", "cost", "robustness", "pareto", "rank", "tied_with"}
    assert d["mitigations"][0]["cost"]["write_pulses"]["unit"]
    json.dumps(d)
    df = res.to_polars()
    assert df.height == 5 and "cost_write_time_s" in df.columns
    assert res.evaluations == 5 * 300
    ranks = {c.name: c.rank for c in res.candidates}
    assert ranks["write-verify:tolerance=0.02"] < ranks["baseline"]
    best = res.cheapest(base.robustness.ci95[1] + 1e-9)
    assert best is not None and best.robustness.ci95[0] > base.robustness.ci95[1]
    assert res.cheapest(1.01) is None
    with pytest.raises(ModelSpecError, match="twice"):
        rank(net, x, y, WG, ["adc:bits=4", "adc:bits=4"], metric="mean", budget=100)
    with pytest.raises(ReliabilityError, match="budget"):
        rank(net, x, y, WG, ["adc:bits=4"], metric="mean", budget=10)


def test_rank_quantile_metric_with_checkpoint_resume(small, tmp_path):
    net, x, y = small
    ck = tmp_path / "rank.json"
    kw = dict(metric="quantile:0.01", budget=400, rng=1, method="mc", checkpoint=ck)
    r1 = rank(net, x, y, WG, ["write-verify:tolerance=0.02"], **kw)
    assert ck.exists() and r1.evaluations == 800
    r2 = rank(net, x, y, WG, ["write-verify:tolerance=0.02"], **kw)
    assert r2.evaluations == 0                                     # both resumed from the checkpoint
    assert [c.robustness.value for c in r2.candidates] == [c.robustness.value for c in r1.candidates]
    q_base, q_wv = (c.robustness.value for c in r1.candidates)
    assert q_wv >= q_base


# ------------------------------------------------------------------ drift compensation in latent space
@pytest.mark.slow
@pytest.mark.parametrize("adc", [0, 6])
def test_latent_drift_compensation_matches_monte_carlo(case, adc):
    from dataclasses import replace

    from reliability.sampling.scoring import ChipScorer

    spec = parse_variation("pcm").with_(time_s=86400.0)
    spec = spec.with_(periphery=replace(spec.periphery, drift_compensation=True, adc_bits=adc))
    sim = ChipSimulator(case.network, spec, threads=1)
    lat = LatentChips(sim)
    assert [k for k, _, _ in lat.blocks].count("read_ref") == len(sim.maps)
    n = 1500
    counts, _ = ChipScorer(sim, lat, case.X, case.y).counts_and_margins(lat.draw(np.random.default_rng(0), n))
    a_lat = counts / len(case.y)
    a_mc = sim.evaluate(case.X, case.y, n, rng=0).accuracy
    se = math.sqrt(a_lat.var() / n + a_mc.var() / n)
    assert abs(a_lat.mean() - a_mc.mean()) < 4 * se
    # without compensation the drifted chips are worse on average (the compensation is applied)
    plain = ChipSimulator(case.network, spec.with_(periphery=replace(spec.periphery, drift_compensation=False)), threads=1)
    lat0 = LatentChips(plain)
    c0, _ = ChipScorer(plain, lat0, case.X, case.y).counts_and_margins(lat0.draw(np.random.default_rng(0), n))
    assert a_lat.mean() > c0.mean() / len(case.y)


# ------------------------------------------------------------------ noise-aware fine-tuning and ONNX export
@pytest.fixture(scope="module")
def digits_train():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data[:1200] / 16).astype(np.float32), d.target[:1200]


def test_finetune_lowers_noisy_loss_and_exports_onnx(case, digits_train, tmp_path):
    from reliability.cim import load_onnx, save_onnx
    from reliability.mitigation import finetune

    X, y = digits_train
    tuned, hist = finetune(case.network, X, y, sigma=0.1, epochs=4, rng=0)
    assert len(hist.loss) == 4 and hist.loss[-1] < hist.loss[0]
    assert all(not np.array_equal(a.weight, b.weight) for a, b in zip(tuned.analog_layers, case.network.analog_layers))
    assert all(a.bias is b.bias for a, b in zip(tuned.analog_layers, case.network.analog_layers))
    for layer in tuned.analog_layers:
        assert layer.layer_max_abs == float(np.max(np.abs(layer.weight)))
    # the same seed gives the same network
    again, _ = finetune(case.network, X, y, sigma=0.1, epochs=4, rng=0)
    assert all(np.array_equal(a.weight, b.weight) for a, b in zip(tuned.analog_layers, again.analog_layers))
    p = save_onnx(tuned, tmp_path / "tuned.onnx")
    back = load_onnx(p)
    out_a = tuned.forward(case.X[:64])[0]
    out_b = back.forward(case.X[:64])[0]
    assert np.allclose(out_a, out_b, atol=1e-5)
    with pytest.raises(FileExistsError):
        save_onnx(tuned, p)
    cen, _ = finetune(case.network, X, y, sigma=0.1, noise="censored", censor=0.5, epochs=1, rng=0)
    assert not np.array_equal(cen.analog_layers[0].weight, tuned.analog_layers[0].weight)
    with pytest.raises(ModelSpecError, match="noise"):
        finetune(case.network, X, y, noise="uniform")


def test_with_weights_checks_shapes(case):
    with pytest.raises(ModelSpecError, match="one array per analog layer"):
        case.network.with_weights([case.network.analog_layers[0].weight])
    with pytest.raises(ModelSpecError, match="finite"):
        case.network.with_weights([np.zeros((2, 2))] * len(case.network.analog_layers))


def test_noise_training_mitigation_needs_training_data_and_counts_epochs(case, digits_train):
    X, y = digits_train
    base = Design(case.network, parse_variation(WG))
    m = parse_mitigation("noise-training:epochs=2,sigma=0.1")
    with pytest.raises(ModelSpecError, match="training data"):
        m.apply(base, Context(case.X, case.y))
    d = m.apply(base, Context(case.X, case.y, 0, X, y))
    assert d.training_epochs == 2 and d.network is not case.network
    assert crn_signature(d.simulator(1)) == crn_signature(base.simulator(1))


def test_rank_command_line(case, digits_train, tmp_path, capsys):
    from reliability.cli import main

    X, y = digits_train
    np.savez(tmp_path / "train.npz", X=X, y=y)
    np.savez(tmp_path / "eval.npz", X=case.X, y=case.y)
    model = str(case.path / "model.onnx")
    out = tmp_path / "rank.json"
    rc = main(["rank", "--model", model, "--data", str(tmp_path / "eval.npz"), "--variation", WG,
               "--mitigation", "write-verify:tolerance=0.03", "--mitigation", "noise-training:epochs=2",
               "--train", str(tmp_path / "train.npz"), "--metric", "mean", "--budget", "200", "--json", str(out),
               "--target", "0.5"])
    assert rc == 0
    d = json.loads(out.read_text())
    assert [c["name"] for c in d["mitigations"]] == ["write-verify:tolerance=0.03", "noise-training:epochs=2"]
    assert d["mitigations"][1]["cost"]["training_epochs"]["value"] == 2
    text = capsys.readouterr().out
    assert "Pareto front" in text and "cheapest reaching 0.5" in text
    assert main(["rank", "--model", model, "--data", str(tmp_path / "eval.npz"), "--variation", WG,
                 "--mitigation", "write-verify:tolerance=0.03", "--metric", "mean", "--budget", "200",
                 "--json", str(out)]) == 2                                     # no overwrite without --force
    assert main(["rank", "--model", model, "--data", str(tmp_path / "eval.npz"), "--variation", WG,
                 "--mitigation", "wrte-verify"]) == 2
    assert main(["rank", "--catalogue"]) == 0
    tuned = tmp_path / "tuned.onnx"
    assert main(["finetune", "--model", model, "--train", str(tmp_path / "train.npz"), "--out", str(tuned),
                 "--epochs", "1"]) == 0
    assert tuned.exists()


def test_plot_ranking_writes_a_figure(small, tmp_path):
    pytest.importorskip("matplotlib")
    from reliability.report import plot_ranking

    net, x, y = small
    res = rank(net, x, y, WG, ["write-verify:tolerance=0.02", "replicas:n=2"], metric="mean", budget=100, rng=0)
    fig = plot_ranking(res, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
    assert len(fig.axes[0].texts) == 3
    plot_ranking(res, tmp_path / "w.png", cost="write_time_s")
    assert (tmp_path / "w.png").exists()


def test_rank_worst_case_metric(small):
    net, x, y = small
    res = rank(net, x, y, "weight-gaussian:sigma=0.1", ["write-verify:tolerance=0.02"], metric="worst:3", budget=100,
               rng=0)
    base, wv = res.candidates
    assert res.metric == "worst:3" and res.higher_is_better
    # within +/- 3 sigma the verified devices stay within 2 % of max|W|: a much better worst case
    assert wv.robustness.value > base.robustness.value
    assert base.robustness.ci95 == (base.robustness.value, base.robustness.value)
    assert parse_metric("worst:2.5").param == 2.5
    with pytest.raises(ModelSpecError, match="worst:K"):
        parse_metric("worst:-1")


# ------------------------------------------------------------------ stuck cells and spare columns
@pytest.fixture(scope="module")
def stuck_spec():
    from reliability.devices import StuckAt

    spec = parse_variation("pcm")
    return spec.with_(device=spec.device_model().with_(stuck=StuckAt(p_low=0.02, p_high=0.01, g_low=0.0, g_high=25.0)))


@pytest.mark.slow
def test_spare_columns_replace_the_worst_columns(case, stuck_spec):
    from dataclasses import replace

    sim0 = ChipSimulator(case.network, stuck_spec, threads=1)
    m = sim0.maps[1]
    g = np.zeros((2,) + m.targets.shape)
    spare = np.ones_like(g)
    stuck = np.zeros(g.shape, dtype=bool)
    stuck[0, 0, 0, 0, :3, 4] = True          # chip 0: column 4 has 3 stuck devices, column 7 one
    stuck[0, 0, 0, 1, 5, 7] = True
    out = m.remap_spares(g, stuck, spare, 1)
    assert out[0, ..., 4].min() == 1 and out[0, ..., 7].max() == 0 and out[1].max() == 0   # chip 1: nothing stuck
    out2 = m.remap_spares(g, stuck, spare, 2)
    assert out2[0, ..., 7].min() == 1 and out2[0].sum() == 2 * out2[0, ..., 4].size
    spec2 = stuck_spec.with_(mapping=replace(stuck_spec.mapping, spare_cols=2))
    sim = ChipSimulator(case.network, spec2, threads=1)
    assert crn_signature(sim) != crn_signature(sim0)
    # latent and Monte Carlo chips agree in law
    from reliability.sampling.scoring import ChipScorer

    lat = LatentChips(sim)
    assert sorted(k for k, _, _ in lat.blocks if k.endswith("_s")) == ["prog_s", "prog_s", "stuck_s", "stuck_s"]
    n = 800
    c, _ = ChipScorer(sim, lat, case.X, case.y).counts_and_margins(lat.draw(np.random.default_rng(0), n))
    a_lat = c / len(case.y)
    a_mc = sim.evaluate(case.X, case.y, n, rng=0).accuracy
    a_0 = sim0.evaluate(case.X, case.y, n, rng=0).accuracy
    se = math.sqrt(a_lat.var() / n + a_mc.var() / n)
    assert abs(a_lat.mean() - a_mc.mean()) < 4 * se
    assert a_mc.mean() > a_0.mean()
    with pytest.raises(ReliabilityError, match="no stuck-at"):
        ChipSimulator(case.network, parse_variation("pcm").with_(mapping=replace(stuck_spec.mapping, spare_cols=1)))


def test_spare_columns_mitigation_and_cost(small, stuck_spec):
    net, x, y = small
    base = Design(net, stuck_spec)
    d = parse_mitigation("spare-columns:n=2").apply(base, Context(x, y))
    assert d.spec.mapping.spare_cols == 2
    costs = CostModel.default()
    rows = rows_per_inference(net, x)
    c0 = design_costs(base, base.simulator(1), rows, costs).values
    c1 = design_costs(d, d.simulator(1), rows, costs).values
    sim = d.simulator(1)
    spare = sum(2 * 2 * m.K for m in sim.maps)            # 2 spare columns of K rows, a device pair each
    assert c1["devices"] == c0["devices"] + spare
    assert c1["write_pulses"] == c0["write_pulses"]
    assert math.isclose(c1["write_time_s"] - c0["write_time_s"], sim.n_devices * costs.value("verify_read_s"))
    with pytest.raises(ModelSpecError, match="no stuck-at faults"):
        parse_mitigation("spare-columns").apply(Design(net, parse_variation(WG)), Context(x, y))


def test_write_verify_with_a_published_residual(small):
    from reliability.mitigation import RESIDUALS

    net, x, y = small
    base = Design(net, parse_variation("rram"))
    d = parse_mitigation("write-verify-residual:curve=rram-milo,pulses=8").apply(base, Context(x, y))
    prog = d.spec.device_model().programming
    g = np.array([50.0, 100.0, 225.0])
    assert np.allclose(prog.std(g), 4.78 - 0.0091 * g)
    pcm = parse_mitigation("write-verify-residual:curve=pcm-aihwkit,pulses=3").apply(Design(net, parse_variation("pcm")),
                                                                                   Context(x, y))
    assert np.allclose(pcm.spec.device_model().programming.std(np.array([0.0, 25.0])), [0.2635, 1.0554])
    sim = d.simulator(1)
    c = design_costs(d, sim, rows_per_inference(net, x), CostModel.default()).values
    assert c["write_pulses"] == 8 * sim.n_devices
    assert crn_signature(sim) == crn_signature(base.simulator(1))
    assert set(RESIDUALS) == {"pcm-aihwkit", "pcm-crosssim", "rram-milo"}
    with pytest.raises(ModelSpecError, match="unit"):
        parse_mitigation("write-verify-residual:pulses=4").apply(Design(net, parse_variation(WG)), Context(x, y))
    with pytest.raises(ModelSpecError, match="already"):
        parse_mitigation("write-verify-residual:pulses=4 + write-verify").apply(base, Context(x, y))
