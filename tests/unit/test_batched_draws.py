"""Chips drawn a block at a time are the chips drawn one at a time, bit for bit.

The block route computes each chip's generator keys without building its generator
(``batched.chip_keys``: SeedSequence and PCG64 written out) and draws a block of chips by compiled
loops; the chip route builds ``chip_rng(seed, i)`` and draws through ``PreparedArray``.  Both must
give the same words, the same conductances, weights and slice levels, and so the same accuracies,
whatever the chunk size and thread count.
"""

from __future__ import annotations

import numpy as np
import pytest

from reliability.devices import batched
from reliability.devices import fastrandom as fr
from reliability.streams import chip_rng


# ---------------------------------------------------------------- the keys
@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 - 1, 2**32, 2**64 + 7, 2**130 + 11])
def test_chip_keys_are_the_words_of_each_chips_generator(seed):
    chips = np.array([0, 1, 2, 7, 1000, 2**31, 2**32 - 1, 2**32, 2**40 + 17, 2**63 - 1], dtype=np.int64)
    keys = batched.chip_keys(seed, chips, 5)
    for s, i in enumerate(chips):
        rng = chip_rng(seed, int(i))
        assert [int(k) for k in keys[s]] == [int(fr._key(rng)) for _ in range(5)]
    # the python route (no numba) gives the same words
    assert np.array_equal(batched._keys_python(seed, chips, 5), keys)


def test_chip_keys_refuse_negative_chips():
    with pytest.raises(ValueError, match="non-negative"):
        batched.chip_keys(0, [3, -1], 2)


def test_normal_rows_are_the_streams_of_their_keys():
    keys = batched.chip_keys(4, np.arange(6), 1)[:, 0]
    for dt in (np.float32, np.float64):
        out = batched.normal_rows(keys, np.empty((6, 3, 5), dt))
        for s in range(6):
            want = np.empty(15, dt)
            fr._fill_np(keys[s], want)
            assert np.array_equal(out[s].reshape(-1), want)
    with pytest.raises(ValueError, match="C-contiguous"):
        batched.normal_rows(keys, np.empty((5, 6), np.float32).T)


# ---------------------------------------------------------------- the chips
def _net():
    """A 12-9-5 ReLU MLP (odd layer sizes: a device array with an odd number of normals)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from reliability.cim import from_sklearn

    rng = np.random.default_rng(0)
    X, y = rng.random((60, 12)), np.arange(60) % 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return from_sklearn(MLPClassifier(hidden_layer_sizes=(9,), max_iter=30, random_state=0).fit(X, y))


def _specs():
    from reliability.cim.spec import MappingSpec, PeripherySpec, parse_variation

    adc = PeripherySpec(adc_bits=6, dac_bits=6)
    return {
        "weight-gaussian": parse_variation("weight-gaussian:sigma=0.1"),
        "weight-gaussian, ADC": parse_variation("weight-gaussian:sigma=0.1").with_(periphery=adc),
        "pcm at programming": parse_variation("pcm"),
        "pcm at 10 s (read noise, no drift yet)": parse_variation("pcm").with_(time_s=10.0),
        "pcm a day later (fused)": parse_variation("pcm").with_(time_s=86400.0),
        "pcm a day later, ADC": parse_variation("pcm").with_(time_s=86400.0, periphery=adc),
        "pcm, offset mapping": parse_variation("pcm").with_(mapping=MappingSpec(scheme="offset")),
        "rram": parse_variation("rram"),
        "sonos (location polynomial)": parse_variation("sonos"),
        "multi-device (slices)": parse_variation("multi-device"),
        "rram4 (level-dependent)": parse_variation("rram4"),
        "two devices per weight": parse_variation("pcm").with_(mapping=MappingSpec(devices_per_weight=2)),
    }


@pytest.mark.parametrize("name", list(_specs()))
def test_block_draws_are_the_chip_by_chip_draws(name):
    from reliability.cim import ChipSimulator

    net, spec = _net(), _specs()[name]
    block = ChipSimulator(net, spec, threads=2)
    assert block._batch_counts is not None, "this specification should be drawn a block at a time"
    alone = ChipSimulator(net, spec, threads=1)
    alone._batch_counts = None
    chips = [0, 3, 7, 1000, 2**33]
    for d, i in zip(block.draw_chips(chips, 5), chips):
        ref = alone.draw_chip(i, 5)
        for li in range(len(block.maps)):
            assert np.array_equal(d.weights[li], ref.weights[li]), (name, i, li)
            if ref.levels is not None:
                assert np.array_equal(d.levels[li], ref.levels[li]), (name, i, li)
    x = np.random.default_rng(1).random((40, 12), dtype=np.float32)
    y = np.random.default_rng(2).integers(0, 5, 40)
    a = block.evaluate(x, y, 70, rng=3, chunk_size=16)
    b = alone.evaluate(x, y, 70, rng=3, chunk_size=70)
    assert np.array_equal(a.n_correct, b.n_correct) and np.array_equal(a.loss, b.loss)


def test_specifications_outside_the_block_route_are_drawn_chip_by_chip():
    from reliability.cim import ChipSimulator
    from reliability.cim.spec import PeripherySpec, parse_variation
    from reliability.devices import StuckAt

    net = _net()
    stuck = parse_variation("weight-gaussian:sigma=0.1")
    stuck = stuck.with_(device=stuck.device_model().with_(stuck=StuckAt(p_low=0.01, p_high=0.01, g_low=0.0, g_high=1.0)))
    for spec in (stuck, parse_variation("pcm").with_(time_s=86400.0, periphery=PeripherySpec(drift_compensation=True))):
        sim = ChipSimulator(net, spec)
        assert sim._batch_counts is None
        draws = sim.draw_chips([4, 1], seed=2)
        assert np.array_equal(draws[1].weights[0], sim.draw_chip(1, seed=2).weights[0])


def test_latent_draw_chips_are_the_stacked_draw_chip():
    from reliability.cim import ChipSimulator
    from reliability.cim.latent import LatentChips

    net = _net()
    for spec in ("weight-gaussian:sigma=0.1", "pcm"):
        lat = LatentChips(ChipSimulator(net, spec))
        for view in (lat, lat.conductance_view()):
            idx = [0, 5, 3, 2**35]
            got = view.draw_chips(7, idx)
            want = view.stack([view.draw_chip(7, i) for i in idx])
            assert all(g.dtype == w.dtype and np.array_equal(g, w) for g, w in zip(got, want))
