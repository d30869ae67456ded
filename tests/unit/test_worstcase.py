"""Worst-case accuracy under bounded variation against closed forms.

Reference: a linear classifier ``logits = x W + b`` under ``weight-gaussian:sigma=s`` has effective
weights ``W + s max|W| z`` (one latent coordinate per weight).  Sample ``x`` of class ``y`` against
class ``j`` has margin ``m_j(z) = m_j(0) + s max|W| sum_k x_k (z_ky - z_kj)``, so over the box
``|z| <= k`` its smallest value is ``m_j(0) - 2 k s max|W| ||x||_1`` (the same for every ``j``) and
over the ball ``||z||_2 <= k`` it is ``m_j(0) - sqrt(2) k s max|W| ||x||_2``.  Hence a sample is
breakable iff its clean margin is below that reduction: exact for one sample, a per-sample bound
for several (no deviation breaks an unbreakable sample), and exact again for samples with disjoint
input supports (their margins depend on disjoint latent coordinates).
"""

import dataclasses
import json
import math

import numpy as np
import pytest

from tests.unit._onnx_models import linear_onnx
from reliability.cim import load_onnx
from reliability.cim.latent import LatentChips, MarginObjective
from reliability.cim.simulate import ChipSimulator
from reliability.cim.spec import ChipSpec, PeripherySpec
from reliability.devices import load_device
from reliability.errors import ModelSpecError, ReliabilityError
from reliability.worstcase import worst_case

SIGMA = 0.05
FAST = {"random_chips": 20, "restarts": 4, "iterations": 20, "sensitivity": False}


_linear_onnx = linear_onnx


def _linear_case(seed=1, n=40, K=6, C=4):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(K, C)).astype(np.float32).astype(float)
    b = (rng.normal(size=C) * 0.1).astype(np.float32).astype(float)
    X = rng.normal(size=(n, K)).astype(np.float32)
    y = np.argmax(X.astype(float) @ W + b, axis=1)
    return load_onnx(_linear_onnx(W, b)), W, b, X, y


def _clean_margin(W, b, X, y):
    lg = X.astype(float) @ W + b
    other = lg.copy()
    other[np.arange(len(y)), y] = -np.inf
    return lg[np.arange(len(y)), y] - other.max(axis=1)


def _reduction(W, X, k, norm="linf"):
    m = np.abs(W).max()
    if norm == "linf":
        return 2 * k * SIGMA * m * np.abs(X.astype(float)).sum(axis=1)
    return math.sqrt(2) * k * SIGMA * m * np.linalg.norm(X.astype(float), axis=1)


def _correct_on(net, variation, X, y, zfull):
    sim = ChipSimulator(net, variation)
    lat = LatentChips(sim)
    W = lat.weights([np.asarray(b) for b in zfull])
    lg = sim.forward_weights(X, W)[0]
    return np.argmax(lg, axis=-1) == y


# ------------------------------------------------------------------ the search space
def test_latent_box_is_the_weight_gaussian_deviation():
    net, W, _b, X, y = _linear_case()
    sim = ChipSimulator(net, f"weight-gaussian:sigma={SIGMA}")
    lat = LatentChips(sim)
    obj = MarginObjective(sim, lat, X, y)
    z = [np.random.default_rng(0).uniform(-3, 3, size=(2,) + s) for s in obj.shapes]
    Wz = lat.weights([b.astype(np.float32) for b in obj.full(z)])[0]
    expect = W[None] + SIGMA * np.abs(W).max() * z[0][:, 0, 0, 0]
    np.testing.assert_allclose(Wz, expect, rtol=1e-5, atol=1e-6)
    # the objective's float64 conductance path decodes to the same weights as the simulator's
    Wo, _ = obj.weights(obj.conductances(obj.full(z)))
    np.testing.assert_allclose(Wo[0], Wz, rtol=1e-6, atol=1e-6)


def test_objective_leaves_the_latent_chips_alone():
    """The objective's float64 conductance view is a separate object: the caller's LatentChips
    decodes to the same weights in its own dtype before and after."""
    net, _W, _b, X, y = _linear_case()
    sim = ChipSimulator(net, f"weight-gaussian:sigma={SIGMA}")
    lat = LatentChips(sim)
    z = [np.full((1,) + s, 0.5, dtype=lat.dtype) for _, _, s in lat.blocks]
    before = lat.weights(z)[0]
    obj = MarginObjective(sim, lat, X, y)
    obj.value_and_grad(obj.zeros(1))
    after = lat.weights(z)[0]
    assert after.dtype == before.dtype == sim.dtype
    np.testing.assert_array_equal(after, before)
    view = lat.conductance_view()
    assert view is not lat and view.dtype == np.float64


def test_gradient_matches_closed_form_for_linear_model():
    net, W, b, X, y = _linear_case(n=1)
    sim = ChipSimulator(net, f"weight-gaussian:sigma={SIGMA}")
    obj = MarginObjective(sim, LatentChips(sim), X, y, kappa=0.0)
    _loss, correct, grads, _ = obj.value_and_grad(obj.zeros(1))
    lg = X[0].astype(float) @ W + b
    j = int(np.argmax(np.where(np.arange(W.shape[1]) == y[0], -np.inf, lg)))
    expect = np.zeros_like(W)
    expect[:, y[0]] = SIGMA * np.abs(W).max() * X[0]
    expect[:, j] = -SIGMA * np.abs(W).max() * X[0]
    np.testing.assert_allclose(grads[0][0, 0, 0, 0], expect, rtol=1e-4, atol=1e-6)
    assert correct[0] == 1


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_single_sample_breaks_exactly_when_the_closed_form_says(norm):
    net, W, b, X, y = _linear_case(seed=3, n=30)
    cm = _clean_margin(W, b, X, y)
    checked = {True: 0, False: 0}
    for i in range(len(y)):
        k = 1.0
        ratio = cm[i] / _reduction(W, X[i:i + 1], k, norm)[0]
        if abs(ratio - 1) < 0.05:      # too close to the boundary for a float32 network: skip
            continue
        breakable = ratio < 1
        if checked[breakable] >= 3:
            continue
        res = worst_case(net, X[i:i + 1], y[i:i + 1], f"weight-gaussian:sigma={SIGMA}", bounds=[k], norm=norm,
                         rng=i, **FAST)
        assert res.bounds[0].accuracy == (0.0 if breakable else 1.0), (i, ratio)
        checked[breakable] += 1
    assert checked[True] >= 2 and checked[False] >= 2, checked


def test_disjoint_supports_reach_the_closed_form_exactly():
    """Samples on disjoint input features: the joint worst case is the per-sample closed form."""
    rng = np.random.default_rng(7)
    n, per, C = 8, 3, 3
    W = rng.normal(size=(n * per, C)).astype(np.float32).astype(float)
    b = np.zeros(C)
    X = np.zeros((n, n * per), dtype=np.float32)
    for i in range(n):
        X[i, i * per:(i + 1) * per] = rng.normal(size=per)
    y = np.argmax(X.astype(float) @ W, axis=1)
    net = load_onnx(_linear_onnx(W, b))
    cm = _clean_margin(W, b, X, y)
    for k in (0.5, 1.5, 3.0):
        ratio = cm / _reduction(W, X, k)
        assert np.all(np.abs(ratio - 1) > 0.02)
        expect = float(np.mean(ratio >= 1))
        res = worst_case(net, X, y, f"weight-gaussian:sigma={SIGMA}", bounds=[k], rng=0, **FAST)
        assert res.bounds[0].accuracy == expect, (k, res.bounds[0].accuracy, expect)


def test_overlapping_samples_respect_the_per_sample_bound_and_beat_random_chips():
    net, W, b, X, y = _linear_case(seed=1, n=40)
    var = f"weight-gaussian:sigma={SIGMA}"
    res = worst_case(net, X, y, var, bounds=[0.5, 1.0, 2.0, 3.0], rng=0, random_chips=50, sensitivity=False)
    cm = _clean_margin(W, b, X, y)
    for r in res.bounds:
        unbreakable = cm >= _reduction(W, X, r.bound) * 1.0001
        correct = _correct_on(net, var, X, y, r.z)
        assert np.all(correct[unbreakable]), r.bound          # no deviation breaks an unbreakable sample
        assert r.accuracy >= unbreakable.mean() - 1e-12
        assert r.accuracy == correct.mean()                   # the reported chip is the reported accuracy
        assert r.search_accuracy <= r.random_min_accuracy     # never above the best random chip in the box
        assert r.source != "random"
        assert float(np.max(np.abs(r.z[0]))) <= r.bound * (1 + 1e-6)   # feasible
    assert res.success
    acc = res.accuracy
    assert np.all(np.diff(acc) <= 0)                          # monotone curve


def test_curve_is_monotone_and_sorted_even_when_a_search_is_weak():
    net, _W, _b, X, y = _linear_case(seed=2, n=40)
    # one restart, one iteration: the search alone may not be monotone; the curve must be
    res = worst_case(net, X, y, f"weight-gaussian:sigma={SIGMA}", bounds=[3.0, 0.5, 1.0, 2.0, 1.0], restarts=1,
                     iterations=1, random_chips=5, sensitivity=False, rng=0)
    assert [r.bound for r in res.bounds] == [0.5, 1.0, 2.0, 3.0]
    assert np.all(np.diff(res.accuracy) <= 0)
    for r in res.bounds:
        assert r.accuracy <= r.search_accuracy
        assert r.source in ("search", "smaller bound", "random")


def test_minimal_bound_brackets_the_closed_form_for_one_sample():
    net, W, b, X, y = _linear_case(seed=5, n=10)
    cm = _clean_margin(W, b, X, y)
    i = int(np.argmax(cm))
    kstar = cm[i] / _reduction(W, X[i:i + 1], 1.0)[0]   # the margin reaches 0 at k*
    res = worst_case(net, X[i:i + 1], y[i:i + 1], f"weight-gaussian:sigma={SIGMA}", bounds=[0.25],
                     threshold=0.0, tolerance=0.02, rng=0, **FAST)
    mb = res.minimal_bound
    assert mb.found and mb.bound == mb.bracket[1]
    lo, hi = mb.bracket
    assert hi - lo <= 0.02
    assert lo - 1e-3 <= kstar <= hi + 1e-3, (lo, kstar, hi)
    assert mb.accuracy == 0.0 and mb.accuracy_below == 1.0


def test_minimal_bound_zero_when_already_below_and_not_found_when_capped():
    net, _W, _b, X, y = _linear_case(seed=5, n=10)
    res = worst_case(net, X, y, f"weight-gaussian:sigma={SIGMA}", bounds=[], threshold=1.0, **FAST)
    assert res.minimal_bound.bound == 0.0 and res.bounds == ()
    res = worst_case(net, X, y, f"weight-gaussian:sigma={SIGMA}", bounds=[0.1], threshold=0.0, max_bound=0.2,
                     **FAST)
    mb = res.minimal_bound
    assert not mb.found and mb.bound is None and "max_bound" in mb.message
    json.dumps(res.to_dict())


# ------------------------------------------------------------------ a small non-linear network
@pytest.fixture(scope="module")
def mlp():
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from reliability.cim import from_sklearn
    from reliability.data.evalset import digits_evalset

    Xtr, ytr, Xev, yev = digits_evalset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=0).fit(Xtr, ytr)
    return from_sklearn(clf), Xev[:120], yev[:120]


@pytest.mark.parametrize("optimizer,norm", [("pgd", "linf"), ("adam", "linf"), ("pgd", "l2")])
def test_mlp_worst_case_beats_random_chips(mlp, optimizer, norm):
    net, X, y = mlp
    bound = 1.0 if norm == "linf" else 20.0
    res = worst_case(net, X, y, "weight-gaussian:sigma=0.02", bounds=[bound], norm=norm, optimizer=optimizer,
                     random_chips=40, iterations=15, rng=0, sensitivity=False)
    r = res.bounds[0]
    assert r.accuracy < r.clean_accuracy
    assert r.search_accuracy <= r.random_min_accuracy
    zs = np.concatenate([np.ravel(b) for b in r.z])
    if norm == "linf":
        assert np.max(np.abs(zs)) <= bound * (1 + 1e-6)
    else:
        assert np.linalg.norm(zs) <= bound * (1 + 1e-5)


def test_sensitivity_ranking_and_masks(mlp):
    net, X, y = mlp
    res = worst_case(net, X, y, "weight-gaussian:sigma=0.02", bounds=[1.0], random_chips=0, iterations=10,
                     top=15, rng=0)
    s = res.sensitivity
    assert s.chip == "largest bound" and s.bound == 1.0
    assert math.isclose(sum(r["share"] for r in s.layers), 1.0, rel_tol=1e-9)
    c = s.completeness   # integrated gradients: attributions sum to the loss change (path quadrature)
    assert abs(c["sum_attribution"] - c["loss_change"]) <= 0.05 * abs(c["loss_change"])
    scores = [t["score"] for t in s.top]
    assert len(scores) == 15 and scores == sorted(scores, reverse=True)
    df = s.to_polars()
    assert df.height == sum(int(np.prod(shp)) for _, _, shp in s.blocks)
    assert df["score"][0] == pytest.approx(scores[0])
    masks = s.top_devices(count=15)
    assert sum(int(m.sum()) for m in masks) == 15
    t = s.top[0]
    assert masks[t["layer"]][tuple(t["device"])]
    assert sum(int(m.sum()) for m in s.top_devices(fraction=0.1)) == round(0.1 * df.height)
    with pytest.raises(ReliabilityError, match="exactly one"):
        s.top_devices()


def test_result_is_frozen_and_json_contract(mlp):
    net, X, y = mlp
    res = worst_case(net, X, y, "weight-gaussian:sigma=0.02", bounds=[0.5, 1.0], threshold=0.5, tolerance=0.25,
                     random_chips=10, iterations=8, rng=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.seconds = 0.0
    d = json.loads(json.dumps(res.to_dict()))
    assert {"bounds", "minimal_bound", "sensitivity", "seconds"} <= set(d)
    for e in d["bounds"]:
        assert {"bound", "norm", "accuracy", "clean_accuracy", "random_min_accuracy", "restarts",
                "iterations", "deviation"} <= set(e)
        assert e["norm"] == "linf"
    assert {"threshold", "bound", "bracket"} <= set(d["minimal_bound"])
    assert {"layers", "top", "criterion"} <= set(d["sensitivity"])
    assert res.to_polars().height == 2
    # deterministic given the seed
    again = worst_case(net, X, y, "weight-gaussian:sigma=0.02", bounds=[0.5, 1.0], threshold=0.5, tolerance=0.25,
                       random_chips=10, iterations=8, rng=0)
    assert [b.accuracy for b in again.bounds] == [b.accuracy for b in res.bounds]
    assert again.minimal_bound.bracket == res.minimal_bound.bracket
    assert res.seed == 0


# ------------------------------------------------------------------ device models with a floor, drift, read noise
def test_pcm_floor_respected_and_gradient_exact(mlp):
    net, X, y = mlp
    spec = ChipSpec(device=load_device("pcm"), time_s=86400.0, dtype="float64")
    sim = ChipSimulator(net, spec)
    lat = LatentChips(sim)
    obj = MarginObjective(sim, lat, X[:40], y[:40], kappa=0.1)
    assert obj.kinds == ["nu", "prog", "read"]
    rng = np.random.default_rng(0)
    z = [rng.uniform(-4, 4, size=(1,) + s) for s in obj.shapes]
    g = obj.conductances(obj.full(z))
    assert min(float(a.min()) for a in g) >= 0.0          # the model's floor
    assert any(float((a == 0).mean()) > 0 for a in g)       # ... and some devices sit on it
    _loss, _, grads, _ = obj.value_and_grad(z)
    # floored devices have no programming gradient
    for bi, gr in zip(obj.block_index, grads):
        kind, li, _ = lat.blocks[bi]
        if kind == "prog":
            assert np.all(gr[g[li] == 0] == 0)
    # directional derivative against a central difference of the loss (float64 network)
    d = [rng.standard_normal(b.shape) for b in z]
    h = 1e-5
    lp = obj.evaluate([a + h * e for a, e in zip(z, d)])[0][0]
    lm = obj.evaluate([a - h * e for a, e in zip(z, d)])[0][0]
    fd = (lp - lm) / (2 * h)
    an = sum(float(np.sum(gr * e)) for gr, e in zip(grads, d))
    assert an == pytest.approx(fd, rel=1e-3)


def test_pcm_search_stays_in_range_with_clip(mlp):
    net, X, y = mlp
    spec = ChipSpec(device=load_device("pcm"), time_s=86400.0)
    res = worst_case(net, X[:60], y[:60], spec, bounds=[2.0], conductance_range="clip", random_chips=10,
                     iterations=8, sensitivity=False, rng=0)
    dev = res.bounds[0].deviation
    assert dev["outside_range_fraction"] == 0.0
    assert 0.0 <= dev["floor_fraction"] <= 1.0
    assert set(res.searched_blocks) == {"prog", "nu", "read"}
    res2 = worst_case(net, X[:60], y[:60], spec, bounds=[2.0], blocks=("prog",), random_chips=10, iterations=8,
                      sensitivity=False, rng=0)
    assert res2.searched_blocks == ("prog",)


def test_stuck_faults_are_held_at_no_stuck_device(mlp):
    from reliability.devices import StuckAt

    net, X, y = mlp
    dev = load_device("pcm").with_(stuck=StuckAt(0.05, 0.05, 0.0, 25.0, 0.0, 0.0))
    res = worst_case(net, X[:40], y[:40], ChipSpec(device=dev), bounds=[1.0], random_chips=5, iterations=5,
                     sensitivity=False, rng=0)
    assert "stuck" not in res.searched_blocks
    lat = LatentChips(ChipSimulator(net, ChipSpec(device=dev)))
    for (kind, _, _), b in zip(lat.blocks, res.bounds[0].z):
        if kind == "stuck":
            assert np.all(np.isposinf(b))
    with pytest.raises(ReliabilityError, match="Stuck-at faults"):
        worst_case(net, X[:40], y[:40], ChipSpec(device=dev), bounds=[1.0], blocks=("prog", "stuck"))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("kw,match", [
    ({"bounds": [-1.0]}, "finite number >= 0"),
    ({"bounds": [float("nan")]}, "finite number >= 0"),
    ({"bounds": ["x"]}, "must be numbers"),
    ({"bounds": []}, "nothing to search"),
    ({"threshold": 1.5}, r"in \[0, 1\]"),
    ({"threshold": -0.1}, r"in \[0, 1\]"),
    ({"tolerance": 0.0}, "tolerance"),
    ({"norm": "l1"}, "norm must be one of"),
    ({"optimizer": "sgd"}, "optimizer must be one of"),
    ({"restarts": 0}, "restarts must be an integer >= 1"),
    ({"kappa": -1.0}, "kappa"),
    ({"focus": (1.5,)}, "focus entry"),
    ({"blocks": ("foo",)}, "cannot be searched"),
])
def test_bad_arguments_name_the_fix(kw, match):
    net, _W, _b, X, y = _linear_case(n=5)
    with pytest.raises(ReliabilityError, match=match):
        worst_case(net, X, y, f"weight-gaussian:sigma={SIGMA}", **kw)


def test_drift_compensation_is_refused_with_the_fix():
    net, _W, _b, X, y = _linear_case(n=5)
    spec = ChipSpec(device=load_device("pcm"), time_s=86400.0, periphery=PeripherySpec(drift_compensation=True))
    with pytest.raises(ModelSpecError, match="drift_compensation = false"):
        worst_case(net, X, y, spec, bounds=[1.0])


def test_variation_free_chip_has_nothing_to_search():
    from reliability.devices import DeviceModel

    net, _W, _b, X, y = _linear_case(n=5)
    dev = DeviceModel(name="ideal", unit="w_max", g_range=(-1.0, 1.0), floor=None)
    with pytest.raises(ReliabilityError, match="nothing to search"):
        worst_case(net, X, y, ChipSpec(device=dev), bounds=[1.0])


# ------------------------------------------------------------------ CLI
def test_cli_worstcase_writes_json(tmp_path, capsys):
    import argparse

    import onnx

    from reliability.cli import worstcase as cli_worstcase

    _net, W, b, X, y = _linear_case(n=20)
    model = tmp_path / "lin.onnx"
    onnx.save(_linear_onnx(W, b), model)
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=y)
    out = tmp_path / "wc.json"
    p = argparse.ArgumentParser()
    cli_worstcase.add_parser(p.add_subparsers())
    args = p.parse_args(["worstcase", "--model", str(model), "--data", str(data), "--variation",
                         f"weight-gaussian:sigma={SIGMA}", "--bound", "1", "3", "--threshold", "0.5",
                         "--iterations", "10", "--random-chips", "10", "--json", str(out)])
    assert args.func(args) == 0
    d = json.loads(out.read_text())
    assert [e["bound"] for e in d["bounds"]] == [1.0, 3.0]
    assert d["minimal_bound"]["threshold"] == 0.5
    assert d["seconds"] > 0
    text = capsys.readouterr().out
    assert "worst-case accuracy" in text and "minimal bound" in text
    with pytest.raises(ReliabilityError, match="--force"):
        args.func(args)
