"""Backward pass of the batched executor against central finite differences (float64).

Loss: ``L = sum_s sum_b CE(out[s, b], y[b]) + sum(R * out)`` with a fixed random ``R`` (so that
every output gets a distinct gradient).  Per-chip weights ``(S=3, K, N)``; the gradient of chip
``s``'s weights is ``dL/dW[s]`` and ``dL/dx`` is the chip-sum of ``Gradients.inputs``.

Tolerance basis: central differences with ``h = 1e-6`` have truncation error ``O(h^2)`` ~ 1e-12
and round-off ~ ``1e-16 |L| / h`` ~ 1e-9 for ``|L| ~ 10``; the relative error is taken against
``max(|fd|, |analytic|, 1e-3 * max|analytic| of that array)`` and must be below 1e-5.  Inputs are
random with a fixed seed and the check asserts that no ReLU/LeakyReLU/MaxPool decision is within
1e-4 of a kink (a MaxPool window whose maximum is an exact ReLU zero passes no gradient), so the
finite differences never cross one.
"""

import numpy as np
import pytest

pytest.importorskip("onnx")
from onnx import helper  # noqa: E402

from reliability.cim import load_onnx, softmax_cross_entropy  # noqa: E402
from tests.unit.test_cim_network import make_model  # noqa: E402

H = 1e-6
S = 3


def _cnn():
    rng = np.random.default_rng(40)
    inits = {
        "c1w": rng.normal(0, 0.4, (4, 2, 3, 3)), "c1b": rng.normal(0, 0.1, 4),
        "g": rng.uniform(0.5, 1.5, 4), "be": rng.normal(0, 0.3, 4), "mu": rng.normal(0, 0.3, 4),
        "var": rng.uniform(0.5, 1.5, 4),
        "c2w": rng.normal(0, 0.4, (6, 2, 2, 2)), "c2b": rng.normal(0, 0.1, 6),
        "f1w": rng.normal(0, 0.3, (8, 54)), "f1b": rng.normal(0, 0.1, 8),
        "f2w": rng.normal(0, 0.5, (8, 5)), "f2b": rng.normal(0, 0.1, 5),
    }
    nodes = [
        helper.make_node("Conv", ["x", "c1w", "c1b"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["p1", "g", "be", "mu", "var"], ["n1"]),
        helper.make_node("Conv", ["n1", "c2w", "c2b"], ["c2"], group=2, dilations=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c2"], ["a2"], alpha=0.2),
        helper.make_node("AveragePool", ["a2"], ["p2"], kernel_shape=[2, 2], strides=[1, 1],
                         pads=[1, 1, 0, 0]),
        helper.make_node("Sigmoid", ["p2"], ["s2"]),
        helper.make_node("Flatten", ["s2"], ["f"]),
        helper.make_node("Gemm", ["f", "f1w", "f1b"], ["h"], transB=1),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("MatMul", ["t", "f2w"], ["m"]),
        helper.make_node("Add", ["m", "f2b"], ["y"]),
    ]
    return make_model(nodes, inits, (None, 2, 9, 9)), (2, 9, 9)


def _mlp():
    rng = np.random.default_rng(41)
    inits = {
        "W1": rng.normal(0, 0.5, (8, 6)), "b1": rng.normal(0, 0.1, 8),
        "g": rng.uniform(0.5, 1.5, 8), "be": rng.normal(0, 0.3, 8), "mu": rng.normal(0, 0.3, 8),
        "var": rng.uniform(0.5, 1.5, 8), "k": rng.normal(0, 1, 8),
        "W2": rng.normal(0, 0.4, (16, 6)), "b2": rng.normal(0, 0.1, 6),
        "shape": np.array([0, 2, 3]), "d": rng.uniform(1, 2, 6), "e": rng.normal(0, 1, (1, 6)),
        "W3": rng.normal(0, 0.5, (4, 6)), "b3": rng.normal(0, 0.1, 4),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("BatchNormalization", ["t", "g", "be", "mu", "var"], ["n"]),
        helper.make_node("Mul", ["n", "k"], ["nk"]),
        helper.make_node("Sigmoid", ["nk"], ["sg"]),
        helper.make_node("Add", ["sg", "nk"], ["a"]),
        helper.make_node("Mul", ["a", "t"], ["at"]),
        helper.make_node("Relu", ["a"], ["ra"]),
        helper.make_node("Concat", ["at", "ra"], ["cat"], axis=1),
        helper.make_node("MatMul", ["cat", "W2"], ["m"]),
        helper.make_node("Add", ["m", "b2"], ["mb"]),
        helper.make_node("Reshape", ["mb", "shape"], ["rs"]),
        helper.make_node("Transpose", ["rs"], ["tr"], perm=[0, 2, 1]),
        helper.make_node("Flatten", ["tr"], ["fl"]),
        helper.make_node("Div", ["fl", "d"], ["dv"]),
        helper.make_node("Sub", ["dv", "e"], ["sb"]),
        helper.make_node("LeakyRelu", ["sb"], ["lr"], alpha=0.1),
        helper.make_node("Gemm", ["lr", "W3", "b3"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["y"], axis=1),
    ]
    return make_model(nodes, inits, (None, 6)), (6,)


def _conv1d():
    rng = np.random.default_rng(42)
    inits = {"cw": rng.normal(0, 0.5, (3, 2, 3)), "cb": rng.normal(0, 0.1, 3),
             "P": rng.normal(0, 0.5, (4, 3)), "fw": rng.normal(0, 0.5, (3, 4))}
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], strides=[2], auto_pad="SAME_UPPER"),
        helper.make_node("Tanh", ["c"], ["t"]),
        helper.make_node("AveragePool", ["t"], ["p"], kernel_shape=[2], strides=[2], ceil_mode=1,
                         count_include_pad=1, pads=[1, 0]),
        helper.make_node("MatMul", ["P", "p"], ["m"]),          # weight on the left
        helper.make_node("GlobalAveragePool", ["m"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["f"]),
        helper.make_node("Gemm", ["f", "fw"], ["y"], transB=1),
    ]
    return make_model(nodes, inits, (None, 2, 12)), (2, 12)


def _loss(out, y, R):
    return softmax_cross_entropy(out, y, grad=False).sum() + np.sum(R * out)


def _check_kinks(net, x, ws):
    """No ReLU/LeakyReLU input within 1e-4 of 0 and no near-tie in a MaxPool window."""
    from reliability.cim.graph.ops_elementwise import _Unary
    from reliability.cim.graph.ops_pool import _Pool
    rec = {}
    orig = {}
    for op in net.ops:
        if isinstance(op, (_Unary, _Pool)) and op.op_type in ("Relu", "LeakyRelu", "MaxPool"):
            orig[op] = op.forward

            def wrapped(xs, rt, op=op):
                rec.setdefault(op, []).append(np.array(xs[0]))   # a copy: ReLU may run in place
                return orig[op](xs, rt)
            op.forward = wrapped
    try:
        net.forward(x, weights=ws, dtype=np.float64)
    finally:
        for op in orig:
            del op.forward
    for op, xs in rec.items():
        v = xs[0]
        if op.op_type == "MaxPool":
            x4 = op.win.to4(v)
            geo = op.win.geometry(*x4.shape[-2:])
            win = op.win.windows(op.win.pad(x4, geo, -np.inf), geo)
            flat = np.sort(win.reshape(win.shape[:-2] + (-1,)), axis=-1)
            gap = flat[..., -1] - flat[..., -2]
            # windows whose maximum is an exact ReLU zero pass no gradient either way
            live = np.isfinite(gap) & (flat[..., -1] != 0)
            assert np.min(gap[live]) > 1e-4, op.name
        else:
            assert np.min(np.abs(v)) > 1e-4, op.name


def _fd_check(model, x_shape, B=4, seed=0, n_entries=4):
    net = load_onnx(model)
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (B,) + x_shape)
    y = rng.integers(0, net.n_outputs, B)
    R = rng.normal(0, 1, (S, B, net.n_outputs))
    ws = [l.weight + 0.1 * l.layer_max_abs * rng.standard_normal((S,) + l.weight.shape)
          for l in net.analog_layers]
    _check_kinks(net, x, ws)
    out, cache = net.forward(x, weights=ws, keep=True, dtype=np.float64)
    _, g = softmax_cross_entropy(out, y)
    grads = net.backward(cache, g + R)
    assert len(grads.weights) == len(ws)
    for gw, w in zip(grads.weights, ws):
        assert gw.shape == w.shape and gw.dtype == np.float64
    assert grads.inputs.shape == (S, B) + x_shape

    def L(ws_, x_):
        return _loss(net.forward(x_, weights=ws_, dtype=np.float64), y, R)

    worst = 0.0
    for i, w in enumerate(ws):
        scale = np.abs(grads.weights[i]).max()
        for _ in range(n_entries):
            idx = tuple(rng.integers(0, d) for d in w.shape)
            wp = [v.copy() for v in ws]
            wm = [v.copy() for v in ws]
            wp[i][idx] += H
            wm[i][idx] -= H
            fd = (L(wp, x) - L(wm, x)) / (2 * H)
            an = grads.weights[i][idx]
            err = abs(fd - an) / max(abs(fd), abs(an), 1e-3 * scale)
            worst = max(worst, err)
            assert err < 1e-5, (net.analog_layers[i].name, idx, fd, an)
    dx = grads.inputs.sum(axis=0)
    scale = np.abs(dx).max()
    for _ in range(2 * n_entries):
        idx = tuple(rng.integers(0, d) for d in x.shape)
        xp, xm = x.copy(), x.copy()
        xp[idx] += H
        xm[idx] -= H
        fd = (L(ws, xp) - L(ws, xm)) / (2 * H)
        err = abs(fd - dx[idx]) / max(abs(fd), abs(dx[idx]), 1e-3 * scale)
        worst = max(worst, err)
        assert err < 1e-5, ("input", idx, fd, dx[idx])
    return net, worst


@pytest.mark.parametrize("builder", [_cnn, _mlp, _conv1d])
def test_gradients_match_finite_differences(builder):
    model, x_shape = builder()
    _fd_check(model, x_shape)


def test_per_chip_gradients_are_per_chip():
    """Chip s's gradient equals the gradient of a single-chip run with chip s's weights."""
    model, x_shape = _cnn()
    net = load_onnx(model)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3,) + x_shape)
    ws = [l.weight + 0.05 * rng.standard_normal((S,) + l.weight.shape) for l in net.analog_layers]
    ws[2] = net.analog_layers[2].weight  # shared by all chips
    out, cache = net.forward(x, weights=ws, keep=True, dtype=np.float64)
    G = rng.normal(size=out.shape)
    g = net.backward(cache, G)
    assert g.weights[2].shape == (S,) + ws[2].shape
    for s in range(S):
        o1, c1 = net.forward(x, weights=[w[s] if w.ndim == 3 else w for w in ws], keep=True,
                             dtype=np.float64)
        g1 = net.backward(c1, G[s:s + 1])
        for a, b in zip(g.weights, g1.weights):
            np.testing.assert_allclose(a[s], b[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(g.inputs[s], g1.inputs[0], rtol=1e-10, atol=1e-12)
    g_no_x = net.backward(cache, G, input_grad=False)
    assert g_no_x.inputs is None
    for a, b in zip(g.weights, g_no_x.weights):
        np.testing.assert_array_equal(a, b)


def test_clean_backward_and_identity_hook():
    model, x_shape = _mlp()
    net = load_onnx(model)
    x = np.random.default_rng(2).normal(size=(5,) + x_shape)
    out, cache = net.forward(x, keep=True, dtype=np.float64)
    assert out.shape == (1, 5, 4)
    G = np.ones_like(out)
    g = net.backward(cache, G)
    assert [w.shape for w in g.weights] == [(1,) + l.weight.shape for l in net.analog_layers]
    out2, cache2 = net.forward(x, keep=True, dtype=np.float64, matmul=lambda l, X, W: np.matmul(X, W))
    g2 = net.backward(cache2, G)
    for a, b in zip(g.weights, g2.weights):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # float32 backward runs in float32
    out3, cache3 = net.forward(x, keep=True)
    g3 = net.backward(cache3, G)
    assert g3.inputs.dtype == np.float32 and g3.weights[0].dtype == np.float32
    np.testing.assert_allclose(g3.weights[0], g.weights[0], rtol=1e-3, atol=1e-5)


def test_straight_through_hook():
    """A non-linear hook (quantising the product) is differentiated as X @ W."""
    model, x_shape = _mlp()
    net = load_onnx(model)
    x = np.random.default_rng(3).normal(size=(4,) + x_shape)
    seen = {}

    def quant(layer, X, W):
        seen[layer.index] = X
        return np.round(np.matmul(X, W) * 8) / 8

    out, cache = net.forward(x, keep=True, dtype=np.float64, matmul=quant)
    G = np.random.default_rng(4).normal(size=out.shape)
    g = net.backward(cache, G)
    # the last layer's dW is X^T dY with X the hook's input and dY the gradient at its output
    last = len(net.analog_layers) - 1
    z = out[0]
    dz = z * (G[0] - (G[0] * z).sum(1, keepdims=True))  # through the Softmax
    np.testing.assert_allclose(g.weights[last][0], seen[last][0].T @ dz, rtol=1e-10)


def test_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(2, 3, 4))
    y = np.array([0, 3, 1])
    loss, g = softmax_cross_entropy(z, y)
    for idx in [(0, 0, 0), (1, 2, 3), (0, 1, 3)]:
        zp, zm = z.copy(), z.copy()
        zp[idx] += H
        zm[idx] -= H
        ce = lambda v: softmax_cross_entropy(v, y, grad=False).sum()  # noqa: E731
        fd = (ce(zp) - ce(zm)) / (2 * H)
        assert abs(fd - g[idx]) < 1e-8
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    p_true = np.take_along_axis(p, np.broadcast_to(y[None, :, None], (2, 3, 1)), -1)[..., 0]
    np.testing.assert_allclose(loss, -np.log(p_true))


def test_backward_validates_grad_shape():
    from reliability.errors import ModelSpecError
    model, x_shape = _mlp()
    net = load_onnx(model)
    out, cache = net.forward(np.zeros((2,) + x_shape), keep=True)
    with pytest.raises(ModelSpecError, match="grad_out has shape"):
        net.backward(cache, np.zeros((1, 2, 3)))
