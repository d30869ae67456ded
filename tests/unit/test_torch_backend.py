"""The optional torch backend (:mod:`reliability.cim.graph.torch_exec`) on the CPU: the same chips
as the numpy backend (drawn by the numpy core), logits within float32 rounding, the same counts of
correct samples, a tail estimate within its error; clear errors where it does not apply."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from reliability.cim import ChipSimulator, load_onnx
from reliability.cim.graph import GraphNode, build_network
from reliability.errors import ReliabilityError

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from models import lenet5  # noqa: E402


def _forward_both(net, X, ws):
    from reliability.cim.graph.torch_exec import TorchForward, torch_device

    tf = TorchForward(net, torch_device("torch:cpu"))
    return net.forward(X, ws), tf.forward(X, ws), tf


def _noisy(net, rng, S, shared_first=False):
    ws = [(l.weight + 0.1 * np.abs(l.weight).max() * rng.standard_normal((S,) + l.weight.shape)).astype(np.float32)
          for l in net.analog_layers]
    if shared_first:
        ws[0] = ws[0][0]
    return ws


@pytest.mark.parametrize("shared_first", [False, True])
def test_lenet5_logits_match_numpy(shared_first):
    rng = np.random.default_rng(0)
    net = load_onnx(lenet5(0))
    X = rng.random((40, 1, 28, 28), dtype=np.float32)
    a, b, tf = _forward_both(net, X, _noisy(net, rng, 5, shared_first))
    assert tf.host_ops == []
    assert a.shape == b.shape == (5, 40, 10)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())


def test_grouped_strided_conv_avgpool_and_host_ops_match_numpy():
    """Grouped, strided, asymmetrically padded convolutions, ceil-mode average pooling with padding,
    a broadcasting Add, and a Transpose run on the host (no torch version): all as numpy gives."""
    rng = np.random.default_rng(1)
    f = np.float32
    consts = {"w1": rng.standard_normal((6, 2, 3, 3)).astype(f), "b1": rng.standard_normal(6).astype(f),
              "w2": rng.standard_normal((4, 6, 2, 2)).astype(f), "c": rng.standard_normal((4, 1, 1)).astype(f),
              "F": rng.standard_normal((4 * 5 * 5, 3)).astype(f)}
    nodes = [GraphNode("Conv", "c1", ["x", "w1", "b1"], ["h1"], {"group": 2, "pads": [1, 0, 1, 1], "strides": [1, 2]}),
             GraphNode("AveragePool", "p", ["h1"], ["p1"], {"kernel_shape": [2, 2], "strides": [2, 1],
                                                            "pads": [1, 1, 0, 0], "ceil_mode": 1}),
             GraphNode("Conv", "c2", ["p1", "w2"], ["h2"], {"dilations": [1, 2]}),
             GraphNode("Add", "a", ["h2", "c"], ["h3"]),
             GraphNode("Transpose", "t", ["h3"], ["h4"], {"perm": [0, 1, 3, 2]}),
             GraphNode("Flatten", "f", ["h4"], ["h5"], {"axis": 1}),
             GraphNode("MatMul", "m", ["h5", "F"], ["y"])]
    net = build_network(nodes, consts, input_name="x", input_shape=(4, 10, 14), output_name="y")
    X = rng.standard_normal((7, 4, 10, 14)).astype(f)
    for shared in (False, True):
        a, b, tf = _forward_both(net, X, _noisy(net, rng, 3, shared))
        assert tf.host_ops == ["Transpose"]
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())


def test_simulator_on_torch_gives_the_numpy_chips(public_case):
    net, X, y = public_case.network, public_case.X, public_case.y
    a = ChipSimulator(net, "weight-gaussian:sigma=0.05").evaluate(X, y, 24, rng=3, chunk_size=7)
    sim = ChipSimulator(net, "weight-gaussian:sigma=0.05", backend="torch:cpu")
    b = sim.evaluate(X, y, 24, rng=3, chunk_size=7)
    np.testing.assert_array_equal(b.n_correct, a.n_correct)
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-5)
    # pickled (as for Dask workers) it rebuilds its torch forward
    c = pickle.loads(pickle.dumps(sim)).evaluate(X, y, 5, rng=3)
    np.testing.assert_array_equal(c.n_correct, a.n_correct[:5])


def test_tail_estimate_on_torch_agrees_with_numpy(public_case):
    """The same seed on both backends: the chips are the same, but a margin a rounding apart can flip
    a Markov chain's accept/reject decision, after which the runs draw different chips (seen: 3 %
    apart, 0.25 standard errors, on one machine; identical on another).  So the check is agreement
    within the estimates' own error, not equality."""
    from reliability.sampling import estimate_tail

    kw = dict(below=[0.88], budget=2500, rng=1)
    a = estimate_tail(public_case.network, public_case.X, public_case.y, "weight-gaussian:sigma=0.05", **kw)
    b = estimate_tail(public_case.network, public_case.X, public_case.y, "weight-gaussian:sigma=0.05",
                      backend="torch:cpu", **kw)
    ea, eb = a.estimates[0], b.estimates[0]
    assert ea.reliable and eb.reliable
    assert abs(ea.probability - eb.probability) <= 2 * np.hypot(ea.std_error, eb.std_error)
    assert abs(a.evaluations - b.evaluations) <= 0.01 * a.evaluations


def test_backend_errors_name_the_fix(public_case):
    from reliability.cim.spec import ChipSpec, PeripherySpec
    from reliability.devices import load_device

    net = public_case.network
    with pytest.raises(ReliabilityError, match="use 'numpy', 'torch'"):
        ChipSimulator(net, "weight-gaussian:sigma=0.05", backend="jax")
    spec = ChipSpec(device=load_device("pcm"), periphery=PeripherySpec(adc_bits=6))
    with pytest.raises(ReliabilityError, match="numpy backend only"):
        ChipSimulator(net, spec, backend="torch:cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ReliabilityError, match="no CUDA device"):
            ChipSimulator(net, "weight-gaussian:sigma=0.05", backend="torch:cuda")


def test_host_ops_name_every_op_run_on_the_host():
    """A dilated AveragePool has no torch version here: it runs on the host, is listed as such, and
    the logits are numpy's."""
    rng = np.random.default_rng(4)
    nodes = [GraphNode("AveragePool", "p", ["x"], ["h"], {"kernel_shape": [2, 2], "dilations": [2, 2]}),
             GraphNode("Flatten", "f", ["h"], ["h2"], {"axis": 1}), GraphNode("MatMul", "m", ["h2", "F"], ["y"])]
    net = build_network(nodes, {"F": rng.standard_normal((16, 3)).astype(np.float32)}, input_name="x",
                        input_shape=(1, 6, 6), output_name="y")
    X = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    a, b, tf = _forward_both(net, X, [None])
    assert tf.host_ops == ["AveragePool"]
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())
