"""A posterior device model in the simulator and in the latent space: each chip draws its own
parameter set, reproducibly, and chips of different draws carry their own variation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from reliability.cim import ChipSimulator, from_sklearn
from reliability.cim.latent import LatentChips
from reliability.cim.spec import ChipSpec
from reliability.devices import load_device
from reliability.devices.posterior import PosteriorDeviceModel

SCALES = (0.02, 0.2)


@pytest.fixture(scope="module")
def case():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from reliability.data.evalset import digits_evalset

    Xtr, ytr, Xev, yev = digits_evalset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=0).fit(Xtr, ytr)
    point = load_device("weight-gaussian:sigma=0.1")
    post = PosteriorDeviceModel.from_point(point, ["programming.scale"], ["programming/scale/value"],
                                           np.array([[SCALES[0]], [SCALES[1]]]))
    return from_sklearn(clf), Xev[:200], yev[:200], post


def _relative_spread(net, W):
    """Per chip: std of (noisy - clean) weights over the first layer, in units of max|W|."""
    layer = net.analog_layers[0]
    d = (W - layer.weight[None]) / layer.layer_max_abs
    return d.reshape(d.shape[0], -1).std(axis=1)


def test_simulator_chips_draw_their_parameters_from_the_posterior(case):
    net, X, y, post = case
    sim = ChipSimulator(net, ChipSpec(device=post))
    assert sim.n_posterior == 2
    draws = sim.draw_chips(range(40), seed=5)
    spread = _relative_spread(net, np.stack([d.weights[0] for d in draws]))
    near = [min(SCALES, key=lambda s: abs(s - v)) for v in spread]
    for v, s in zip(spread, near):
        assert abs(v / s - 1) < 0.1, (v, s)
    n_low = sum(s == SCALES[0] for s in near)
    assert 8 <= n_low <= 32            # binomial(40, 1/2): both draws used
    # chip i is the same whatever the batch it is drawn in, and across thread counts
    again = ChipSimulator(net, ChipSpec(device=post), threads=1).draw_chips([17, 3], seed=5)
    np.testing.assert_array_equal(again[0].weights[0], draws[17].weights[0])
    np.testing.assert_array_equal(again[1].weights[1], draws[3].weights[1])


def test_posterior_widens_the_accuracy_spread(case):
    net, X, y, post = case
    acc_post = ChipSimulator(net, ChipSpec(device=post)).evaluate(X, y, 200, rng=1).accuracy
    point = post.model_at(0)
    acc_point = ChipSimulator(net, ChipSpec(device=point)).evaluate(X, y, 200, rng=1).accuracy
    assert acc_post.min() < acc_point.min() - 0.02
    assert acc_post.std() > 2 * acc_point.std()


def test_latent_chips_pick_the_draw_from_their_posterior_coordinate(case):
    net, X, y, post = case
    sim = ChipSimulator(net, ChipSpec(device=post))
    lat = LatentChips(sim)
    kinds = [k for k, _, _ in lat.blocks]
    assert kinds[-1] == "posterior" and lat.dim == sum(int(np.prod(s)) for _, _, s in lat.blocks)
    z = lat.draw(np.random.default_rng(0), 6)
    z[-1][:] = [-2.0, -0.1, 0.1, 2.0, -1.0, 1.0]       # Phi < 1/2 -> draw 0, else draw 1
    np.testing.assert_array_equal(lat.posterior_index(z[-1]), [0, 0, 1, 1, 0, 1])
    W = lat.weights(z)
    spread = _relative_spread(net, W[0])
    expect = np.array([SCALES[j] for j in [0, 0, 1, 1, 0, 1]])
    np.testing.assert_allclose(spread / expect, 1.0, atol=0.1)
    # a group of chips gives the same weights as each chip alone
    one = lat.weights([b[3:4] for b in z])
    np.testing.assert_array_equal(one[0][0], W[0][3])


def test_tail_estimate_runs_on_a_posterior_model(case):
    from reliability.sampling import estimate_tail

    net, X, y, post = case
    res = estimate_tail(net, X, y, ChipSpec(device=post), below=[0.8], budget=600, rng=0, method="subset")
    e = res.estimates[0]
    assert 0.0 < e.probability < 1.0 and e.ci95[0] <= e.probability <= e.ci95[1]
    assert res.diagnostics["latent_dim"] == sum(L.weight.size for L in net.analog_layers) + 1


def test_latent_conductances_keep_the_floor_after_read_noise(case):
    """As DeviceModel.read: read noise cannot take a conductance below the model's floor (0 uS)."""
    net, X, y, _ = case
    sim = ChipSimulator(net, ChipSpec(device="pcm", time_s=86400.0))
    lat = LatentChips(sim)
    z = lat.draw(np.random.default_rng(1), 2)
    for (kind, _, _), b in zip(lat.blocks, z):
        if kind == "read":
            b[...] = -1e3          # every device read far below zero before the floor
    for W in lat.weights(z):
        assert np.all(W == 0)      # both devices of every pair at the 0 uS floor: W = (g+ - g-) c = 0
