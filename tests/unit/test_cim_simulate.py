"""Batched chip simulation: exactness of the noise model, chip-indexed randomness, periphery,
memory budget, gradients through the mapping, and the public benchmark case."""

import sys
from pathlib import Path

import numpy as np

import polars as pl
import pytest

from reliability.devices.fastrandom import standard_normal

from reliability.bench import CASES_DIR
from reliability.cim import load_onnx
from reliability.cim.graph import softmax_cross_entropy
from reliability.cim.simulate import ChipSimulator
from reliability.streams import chip_rng
from reliability.cim.spec import ChipSpec, MappingSpec, PeripherySpec
from reliability.devices import load_device

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from models import lenet5, mlp_784_256_10  # noqa: E402

CASE = CASES_DIR / "digits_mlp_s05"  # the public case shipped in the package


@pytest.fixture(scope="module")
def digits_mlp():
    """A small trained MLP (scikit-learn digits) and its evaluation set."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from reliability.cim import from_sklearn
    from reliability.data.evalset import digits_evalset

    Xtr, ytr, Xev, yev = digits_evalset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0).fit(Xtr, ytr)
    return from_sklearn(clf), Xev, yev, clf


def test_weight_gaussian_is_exactly_additive_noise(digits_mlp):
    net, X, y, _ = digits_mlp
    sim = ChipSimulator(net, "weight-gaussian:sigma=0.1")
    draws = sim.draw_chips([5, 9], seed=3)
    for d in draws:
        rng = chip_rng(3, d.index)
        for layer, W in zip(net.analog_layers, d.weights):
            z = standard_normal(rng, layer.weight.shape, np.float32)
            expect = ((layer.weight / layer.layer_max_abs).astype(np.float32) + np.float32(0.1) * z) * layer.layer_max_abs
            np.testing.assert_allclose(W, expect, rtol=1e-6, atol=1e-7)


def test_results_depend_only_on_seed_and_chip_index(digits_mlp):
    net, X, y, _ = digits_mlp
    sim = ChipSimulator(net, "pcm", threads=2)
    a = sim.evaluate(X, y, 24, rng=11, chunk_size=24)
    b = ChipSimulator(net, "pcm", threads=1).evaluate(X, y, chips=np.arange(24)[::-1], rng=11, chunk_size=5)
    order = np.argsort(b.chip)
    np.testing.assert_array_equal(a.n_correct, b.n_correct[order])
    np.testing.assert_allclose(a.loss, b.loss[order], rtol=1e-6)
    c = sim.evaluate(X, y, 24, rng=12)
    assert not np.array_equal(a.loss, c.loss)
    # a Generator is turned into one integer seed, recorded: passing it back repeats the chips
    d = sim.evaluate(X, y, 4, rng=np.random.default_rng(3))
    assert isinstance(d.seed, int)
    np.testing.assert_array_equal(sim.evaluate(X, y, 4, rng=d.seed).n_correct, d.n_correct)


def test_noiseless_devices_give_the_quantized_network(digits_mlp):
    net, X, y, _ = digits_mlp
    exact = load_device("pcm").with_(programming=None, drift=None, read_noise=None)
    for ms in (MappingSpec(weight_bits=6, device_bits=2), MappingSpec(weight_bits=5, scheme="offset")):
        sim = ChipSimulator(net, ChipSpec(device=exact, mapping=ms, dtype="float64"))
        res = sim.evaluate(X, y, 2, rng=0)
        ref_logits = net.forward(X, weights=sim.quantized_weights(), dtype=np.float64)
        ref_acc = float((ref_logits.argmax(-1)[0] == y).mean())
        np.testing.assert_allclose(res.accuracy, ref_acc)


def test_adc_with_many_bits_matches_ideal_and_few_bits_do_not(digits_mlp):
    net, X, y, _ = digits_mlp
    base = dict(device=load_device("pcm").with_(read_noise=None, drift=None), dtype="float64",
                mapping=MappingSpec(weight_bits=8, device_bits=2, tile_rows=32))
    ideal = ChipSimulator(net, ChipSpec(**base))
    draws = ideal.draw_chips([0, 1], seed=1)
    l_ideal = ideal.logits(X, draws)
    # full-scale ranges: a calibrated range would saturate on noisy chips (as a real ADC does)
    fine = ChipSimulator(net, ChipSpec(**base, periphery=PeripherySpec(adc_bits=24, dac_bits=24, dac_range=50.0,
                                                                        adc_range="max")))
    fine.calibrate(X)
    l_fine = fine.logits(X, fine.draw_chips([0, 1], seed=1))
    np.testing.assert_allclose(l_fine, l_ideal, atol=1e-3 * np.abs(l_ideal).max())
    coarse = ChipSimulator(net, ChipSpec(**base, periphery=PeripherySpec(adc_bits=3, adc_range="percentile",
                                                                          adc_percentile=90.0)))
    res = coarse.evaluate(X, y, 2, rng=1)
    assert res.diagnostics["adc_saturated_fraction"] > 0.01
    assert np.abs(coarse.logits(X, coarse.draw_chips([0, 1], seed=1)) - l_ideal).max() > 1e-2


def test_drift_compensation_recovers_drifted_accuracy(digits_mlp):
    net, X, y, _ = digits_mlp
    year = 3.15e7
    drift_only = load_device("pcm").with_(programming=None, read_noise=None)
    plain = ChipSimulator(net, ChipSpec(device=drift_only, time_s=year)).evaluate(X, y, 8, rng=2)
    comp = ChipSimulator(net, ChipSpec(device=drift_only, time_s=year,
                                       periphery=PeripherySpec(drift_compensation=True))).evaluate(X, y, 8, rng=2)
    # with drift alone, outputs shrink by (t/t0)^-nu ~ 0.5; argmax is scale free, so accuracy barely
    # moves, but the loss (calibrated to the clean scale) shows the compensation
    assert comp.loss.mean() < plain.loss.mean()


def test_gradients_match_finite_differences_through_the_mapping(digits_mlp):
    net, X, y, _ = digits_mlp
    Xs, ys = X[:40], y[:40]
    for variation in ("weight-gaussian:sigma=0.05", ChipSpec(device="pcm", dtype="float64",
                                                            mapping=MappingSpec(weight_bits=8, device_bits=4))):
        spec = variation if isinstance(variation, ChipSpec) else ChipSpec(device=load_device(variation), dtype="float64")
        sim = ChipSimulator(net, spec)
        value, dW, dg, draws = sim.gradients(Xs, ys, chips=[0, 1], seed=4)
        rng = np.random.default_rng(0)
        for li, m in enumerate(sim.maps):
            g = draws[0].conductances[li]
            for _ in range(3):
                idx = tuple(rng.integers(0, s) for s in g.shape)
                h = 1e-4 * max(1.0, abs(g[idx]))

                def loss_at(delta):
                    gg = g.copy()
                    gg[idx] += delta
                    ws = [d for d in draws[0].weights]
                    ws[li] = m.decode(gg[None])[0]
                    lg = net.forward(Xs, weights=ws, dtype=np.float64)
                    return softmax_cross_entropy(lg, ys, grad=False).sum()

                fd = (loss_at(h) - loss_at(-h)) / (2 * h)
                np.testing.assert_allclose(dg[li][0][idx], fd, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(value[0], softmax_cross_entropy(sim.logits(Xs, draws[:1]), ys, grad=False).sum(),
                                   rtol=1e-9)


def test_memory_budget_bounds_the_chunk():
    net = load_onnx(lenet5())
    X = np.random.default_rng(0).random((200, 1, 28, 28), dtype=np.float32)
    y = np.zeros(200, dtype=np.int64)
    small = ChipSimulator(net, ChipSpec(device=load_device("weight-gaussian:sigma=0.1"), memory_budget_MB=25))
    big = ChipSimulator(net, ChipSpec(device=load_device("weight-gaussian:sigma=0.1"), memory_budget_MB=4000))
    r_small = small.evaluate(X, y, 6, rng=0)
    r_big = big.evaluate(X, y, 6, rng=0)
    assert r_small.chunk_size < r_big.chunk_size
    np.testing.assert_array_equal(r_small.n_correct, r_big.n_correct)


@pytest.mark.slow
def test_public_case_tail_matches_brute_force_reference():
    """P(accuracy <= a) from 6,000 simulated chips against the 115-million-chip reference
    (reliability/bench/cases/digits_mlp_s05/reference_hist.npy), within 4 binomial standard errors."""
    net = load_onnx(CASE / "model.onnx")
    z = np.load(CASE / "data.npz")
    X, y = z["X"], z["y"]
    res = ChipSimulator(net, "weight-gaussian:sigma=0.05").evaluate(X, y, 6000, rng=0)
    ref = np.load(CASE / "reference_hist.npy").astype(np.float64)
    for k in (530, 535, 540, 545):
        p = ref[: k + 1].sum() / ref.sum()
        est = np.mean(res.n_correct <= k)
        assert abs(est - p) < 4 * np.sqrt(p * (1 - p) / 6000), (k, est, p)


def test_mlp_benchmark_network_runs_with_pcm_and_writes_parquet(tmp_path):
    from reliability.cli import main

    model = tmp_path / "mlp.onnx"
    import onnx

    onnx.save(mlp_784_256_10(), model)
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(data, X=rng.random((50, 784), dtype=np.float32), y=rng.integers(0, 10, 50))
    out = tmp_path / "acc.parquet"
    assert main(["simulate", "--model", str(model), "--data", str(data), "--variation", "pcm",
                 "--chips", "5", "--seed", "1", "--out", str(out)]) == 0
    df = pl.read_parquet(out)
    assert df.columns[:3] == ["chip", "accuracy", "loss"] and df.height == 5
    assert main(["simulate", "--model", str(model), "--data", str(data), "--variation", "pcm",
                 "--chips", "5", "--out", str(out)]) == 2  # exists, no --force


def test_fashion_mnist_loader():
    from reliability.data.evalset import FASHION_MNIST_DIR, fashion_mnist
    from reliability.errors import DataValidationError

    if not Path(FASHION_MNIST_DIR).exists():
        with pytest.raises(DataValidationError, match="apt-get install dataset-fashion-mnist"):
            fashion_mnist("test")
        return
    X, y = fashion_mnist("test")
    assert X.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert X.dtype == np.float32 and 0.0 <= X.min() and X.max() <= 1.0 and set(np.unique(y)) == set(range(10))


def test_pcm_pairs_give_the_same_chip_on_every_path():
    """PCM differential pairs: the evaluation path (one-pass devices into a reused buffer, decoded
    into the chunk), the conductance path (gradients) and a single chip drawn alone give
    bit-identical weights."""
    net = load_onnx(mlp_784_256_10())
    sim = ChipSimulator(net, ChipSpec(device=load_device("pcm"), time_s=86400.0))
    fast = sim.draw_chips([4, 1], seed=2)
    kept = sim.draw_chips([4, 1], seed=2, keep_conductances=True)
    alone = sim.draw_chip(1, seed=2)
    for a, b in zip(fast[0].weights, kept[0].weights):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fast[1].weights, alone.weights):
        np.testing.assert_array_equal(a, b)
    # and the decode of the kept conductances is the mapping's linear decode
    g = kept[0].conductances[0][None]
    np.testing.assert_array_equal(sim.maps[0].decode(g)[0], fast[0].weights[0])


# ---------------------------------------------------------------- counts and loss in one pass
def test_correct_and_loss_matches_numpy_route_with_ties_and_nan():
    from reliability.cim._kernels import correct_and_loss
    from reliability.cim.graph import softmax_cross_entropy

    rng = np.random.default_rng(3)
    for dt in (np.float32, np.float64):
        z = rng.standard_normal((5, 40, 7)).astype(dt)
        y = rng.integers(0, 7, 40)
        z[0, 0, :] = 1.0                        # a full tie: the first class wins, as in np.argmax
        z[1, 2, 4] = np.nan                     # a NaN counts as the maximum
        z[2, 3, :2] = 9.0
        c, loss = correct_and_loss(z, y)
        c2, loss2 = correct_and_loss(z, y, use_numba=False)
        ref = (np.argmax(z, axis=-1) == y[None]).sum(axis=1)
        assert np.array_equal(c, ref) and np.array_equal(c2, ref)
        want = softmax_cross_entropy(z, y, grad=False).mean(axis=1)
        # float32 logits: float32 exponentials (documented within about 1e-6); float64: float64
        np.testing.assert_allclose(loss, want, rtol=1e-6 if dt == np.float32 else 1e-12, equal_nan=True)
        assert np.isnan(loss[1]) and np.all(np.isfinite(loss[[0, 2, 3, 4]]))
        z[3, 5, 1] = np.inf                     # an infinite logit: no loss, as the float64 route
        z[4, 6, 2] = -np.inf                    # a -inf wrong class: contributes nothing
        c, loss = correct_and_loss(z, y)
        with np.errstate(invalid="ignore"):     # inf - inf in the float64 route
            want = softmax_cross_entropy(z, y, grad=False).mean(axis=1)
        assert np.isnan(loss[3]) and np.isnan(want[3])
        np.testing.assert_allclose(loss[4], want[4], rtol=1e-6 if dt == np.float32 else 1e-12)


def test_correct_and_margins_equal_the_numpy_counts_and_margins():
    """The scorer's one-pass kernel gives np.argmax's counts and graph.margin's margins exactly:
    ties, NaN (the first NaN is the maximum), +-inf, both dtypes."""
    from reliability.cim import correct_and_margins, margin

    rng = np.random.default_rng(11)
    for trial in range(40):
        S, B, C = rng.integers(1, 5), rng.integers(1, 30), rng.integers(2, 7)
        dt = np.float32 if trial % 2 else np.float64
        z = rng.integers(-3, 3, (S, B, C)).astype(dt)     # small integers: many ties
        for value, every in ((np.nan, 3), (-np.inf, 5), (np.inf, 7)):
            if trial % every == 0:
                z[rng.random(z.shape) < 0.1] = value
        y = rng.integers(0, C, B)
        c, m = correct_and_margins(z, y)
        with np.errstate(invalid="ignore"):
            want = margin(z, y)
        assert np.array_equal(c, (np.argmax(z, axis=-1) == y[None]).sum(axis=1))
        assert m.dtype == z.dtype and np.array_equal(m, want, equal_nan=True)


def test_bias_activation_equals_numpy_add_and_maximum():
    from reliability.cim._kernels import bias_activation

    rng = np.random.default_rng(5)
    for dt in (np.float32, np.float64):
        Y = rng.standard_normal((3, 17, 6)).astype(dt)
        Y[0, 0, :3] = [np.nan, -np.inf, np.inf]
        b = rng.standard_normal(6).astype(dt)
        for relu in (False, True):
            want = Y + b
            if relu:
                want = np.maximum(want, 0)
            got = bias_activation(Y.copy(), b, relu)
            assert np.array_equal(got, want, equal_nan=True)
        assert np.array_equal(bias_activation(Y.copy(), None, True), np.maximum(Y, 0), equal_nan=True)


def test_correct_and_loss_rejects_labels_outside_the_outputs():
    from reliability.cim._kernels import correct_and_loss

    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        correct_and_loss(np.zeros((1, 2, 3), np.float32), np.array([0, 3]))


def test_import_sets_a_short_openblas_thread_timeout_only_before_numpy_and_never_over_the_user():
    import os
    import subprocess

    code = "import os, sys; {pre}import reliability; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}

    def run(pre, extra=None):
        out = subprocess.run([sys.executable, "-c", code.format(pre=pre)], env={**env, **(extra or {})},
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    assert run("") == "4"
    assert run("", {"OPENBLAS_THREAD_TIMEOUT": "12"}) == "12"
    assert run("import numpy; ") == "None"     # too late to matter: left alone
