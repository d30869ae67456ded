"""Correctness of the convolution and pooling ops (:mod:`reliability.cim.graph.ops_analog`,
:mod:`reliability.cim.graph.ops_pool`): the blocked channels-last convolution against a plain
im2col reference in float64 (forward, hook columns, weight and input gradients, block boundaries),
and MaxPool's tie-breaking and memory layouts against brute force."""

import numpy as np
import pytest

from reliability.cim.graph import GraphNode, build_network
from reliability.cim.graph import ops_analog

S = 3


def _conv_net(x_shape, w, b=None, second=None, **attrs):
    """x -> Conv(w, b, attrs) [-> Relu -> Conv(second)] as a Network."""
    consts = {"w": w}
    ins = ["x", "w"]
    if b is not None:
        consts["b"] = b
        ins.append("b")
    nodes = [GraphNode("Conv", "c1", ins, ["y1" if second is not None else "y"], dict(attrs))]
    if second is not None:
        consts["w2"] = second
        nodes += [GraphNode("Relu", "r", ["y1"], ["r1"]),
                  GraphNode("Conv", "c2", ["r1", "w2"], ["y"], {"pads": [1, 1, 1, 1]})]
    return build_network(nodes, consts, input_name="x", input_shape=x_shape, output_name="y")


def _ref_conv(x, W, b, group, strides, pads, dilations):
    """Plain NCHW im2col conv per chip: x (s, B, C, H, W), W (O, C/g, kh, kw) per chip list."""
    s, B, _, H, Wd = x.shape
    O, cg, kh, kw = W[0].shape
    (sh, sw), (dh, dw) = strides, dilations
    pt, pl, pb, pr = pads
    xp = np.pad(x, ((0, 0), (0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (H + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (Wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    Sout = max(s, len(W))
    y = np.zeros((Sout, B, O, oh, ow))
    og = O // group
    for t in range(Sout):
        xt = xp[t if s > 1 else 0]
        Wt = W[t if len(W) > 1 else 0]
        for o in range(O):
            g = o // og
            for c in range(cg):
                for i in range(kh):
                    for j in range(kw):
                        y[t, :, o] += Wt[o, c, i, j] * xt[:, g * cg + c,
                                                          i * dh:i * dh + (oh - 1) * sh + 1:sh,
                                                          j * dw:j * dw + (ow - 1) * sw + 1:sw]
            if b is not None:
                y[t, :, o] += b[o]
    return y


def _full_weight(ws, O, cg, kh, kw, group):
    """Per-chip (O, cg, kh, kw) kernels from the per-group (K, N) layer weights (rows (C, kh, kw))."""
    og = O // group
    Sw = max(w.shape[0] if w.ndim == 3 else 1 for w in ws[:group])
    out = []
    for t in range(Sw):
        parts = [(w[t] if w.ndim == 3 else w).T.reshape(og, cg, kh, kw) for w in ws[:group]]
        out.append(np.concatenate(parts))
    return out


CASES = {
    "basic": {"x": (2, 3, 9, 8), "w": (4, 3, 3, 3), "attrs": {}},
    "stride_pad": {"x": (2, 3, 9, 8), "w": (4, 3, 3, 3),
                   "attrs": {"strides": [2, 3], "pads": [1, 2, 0, 1]}},
    "dilation": {"x": (2, 3, 9, 8), "w": (4, 3, 3, 3),
                 "attrs": {"dilations": [2, 1], "pads": [2, 1, 2, 1]}},
    "rect": {"x": (3, 2, 7, 9), "w": (5, 2, 2, 3), "attrs": {}},
    "grouped": {"x": (2, 4, 7, 7), "w": (6, 2, 3, 3), "attrs": {"group": 2, "pads": [1, 1, 1, 1]}},
    "depthwise": {"x": (2, 4, 9, 9), "w": (4, 1, 3, 3),
                  "attrs": {"group": 4, "strides": [2, 2], "dilations": [2, 2], "pads": [2, 2, 2, 2]}},
    "one_channel": {"x": (3, 1, 8, 8), "w": (6, 1, 5, 5), "attrs": {"pads": [2, 2, 2, 2]}},
}


def _weights(net, rng, kind):
    ws = []
    for k, l in enumerate(net.analog_layers):
        if kind == "clean":
            ws.append(None)
        elif kind == "shared":
            ws.append(l.weight * 1.1)
        elif kind == "mixed" and k % 2 == 0:
            ws.append(l.weight * 0.9)                      # a (K, N) entry among per-chip ones
        else:
            ws.append(l.weight + 0.2 * rng.standard_normal((S,) + l.weight.shape))
    return ws


@pytest.mark.parametrize("kind", ["clean", "shared", "perchip", "mixed"])
@pytest.mark.parametrize("case", list(CASES))
def test_conv_matches_plain_im2col(case, kind):
    c = CASES[case]
    rng = np.random.default_rng(abs(hash((case, kind))) % 2**32)
    O, cg, kh, kw = c["w"]
    group = c["attrs"].get("group", 1)
    W0 = rng.standard_normal(c["w"])
    b = rng.standard_normal(O)
    net = _conv_net(c["x"][1:], W0, b, **c["attrs"])
    x = rng.standard_normal(c["x"])
    ws = _weights(net, rng, kind)
    assert len(net.analog_layers) == group
    wsf = [w if w is not None else l.weight for w, l in zip(ws, net.analog_layers)]
    kern = _full_weight(wsf, O, cg, kh, kw, group)
    win = net.ops[0].win
    geo = win.geometry(*x.shape[2:])
    pads = geo[1]
    ref = _ref_conv(x[None], kern, b, group, win.s2, pads, win.d2)
    out, cache = net.forward(x, weights=ws, keep=True, dtype=np.float64)
    Sout = ref.shape[0]
    np.testing.assert_allclose(out, ref.reshape(Sout, x.shape[0], -1), rtol=1e-12, atol=1e-12)

    # a hook sees the columns in the weight's (C, kh, kw) row order: X @ W must match
    seen = []

    def hook(layer, X, W):
        seen.append(X)
        return np.matmul(X, W)

    out_h = net.forward(x, weights=ws, matmul=hook, dtype=np.float64)
    np.testing.assert_allclose(out_h, out, rtol=1e-12, atol=1e-12)
    X = seen[0]
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    (oh, ow) = geo[0]
    (sh, sw), (dh, dw) = win.s2, win.d2
    r = 5 % X.shape[1]
    bb, rem = divmod(r, oh * ow)
    yy, xx = divmod(rem, ow)
    patch = xp[bb, :cg, yy * sh:yy * sh + (kh - 1) * dh + 1:dh, xx * sw:xx * sw + (kw - 1) * dw + 1:dw]
    np.testing.assert_array_equal(X[0, r], patch.reshape(-1))

    # gradients of L = sum(R * out): dW = X^T R (original row order), dx by the adjoint identity
    R = rng.standard_normal(out.shape)
    g = net.backward(cache, R)
    Rr = R.reshape(ref.shape)
    for k in range(group):
        dW = g.weights[k]
        og = O // group
        Rg = Rr[:, :, k * og:(k + 1) * og].transpose(0, 1, 3, 4, 2).reshape(Sout, -1, og)
        Xg = seen[k]
        exp = np.einsum("smk,smn->skn", np.broadcast_to(Xg, (Sout,) + Xg.shape[1:]), Rg)
        np.testing.assert_allclose(dW, exp, rtol=1e-10, atol=1e-10)
    # <dL/dx, e> == directional derivative of L (linear in x up to the bias)
    e = rng.standard_normal(x.shape)
    lin = _ref_conv(e[None], kern, None, group, win.s2, pads, win.d2)
    lhs = (g.inputs * e).reshape(g.inputs.shape[0], -1).sum(axis=1)
    rhs = (lin * Rr).reshape(Rr.shape[0], -1).sum(axis=1)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["perchip", "mixed", "clean"])
def test_two_convs_blocks_and_layouts(monkeypatch, kind):
    """A per-chip conv after a shared-input one; tiny column blocks give the same numbers."""
    rng = np.random.default_rng(3)
    net = _conv_net((2, 8, 8), rng.standard_normal((5, 2, 3, 3)), rng.standard_normal(5),
                    second=rng.standard_normal((4, 5, 3, 3)), pads=[1, 0, 1, 0])
    x = rng.standard_normal((7, 2, 8, 8))
    ws = _weights(net, rng, kind)
    out, cache = net.forward(x, weights=ws, keep=True, dtype=np.float64)
    R = rng.standard_normal(out.shape)
    g = net.backward(cache, R)
    monkeypatch.setattr(ops_analog, "_COL_BYTES", 1)   # one sample per block
    out2, cache2 = net.forward(x, weights=ws, keep=True, dtype=np.float64)
    g2 = net.backward(cache2, R)
    np.testing.assert_allclose(out2, out, rtol=1e-13, atol=1e-13)
    for a, b in zip(g2.weights + [g2.inputs], g.weights + [g.inputs]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    out32 = net.forward(x, weights=ws)
    np.testing.assert_allclose(out32, out, rtol=1e-4, atol=1e-4 * np.abs(out).max())


@pytest.mark.parametrize("attrs", [
    {"kernel_shape": [2, 2], "strides": [2, 2]},
    {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 2], "strides": [2, 1], "dilations": [1, 2]},
])
def test_maxpool_ties_first_maximum_and_layouts(attrs):
    """Exact ties route the gradient to the first kernel position (like argmax); keep or not, the
    outputs agree; a channels-last input gives the same numbers as a C-ordered one."""
    rng = np.random.default_rng(5)
    nodes = [GraphNode("MaxPool", "p", ["x"], ["y"], attrs)]
    net = build_network(nodes, {}, input_name="x", input_shape=(2, 6, 7), output_name="y")
    x = rng.integers(0, 3, (4, 2, 6, 7)).astype(np.float64)  # many ties
    out, cache = net.forward(x, keep=True, dtype=np.float64)
    np.testing.assert_array_equal(net.forward(x, dtype=np.float64), out)
    R = rng.standard_normal(out.shape)
    gx = net.backward(cache, R).inputs[0]
    # brute force: each window sends its gradient to its first maximal position (raster order)
    op = net.ops[0]
    win = op.win
    geo = win.geometry(6, 7)
    (oh, ow), (pt, pl, pb, pr), (eh, ew) = geo
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb + eh), (pl, pr + ew)), constant_values=-np.inf)
    exp = np.zeros(xp.shape)
    Rr = R.reshape(4, 2, oh, ow)
    (kh, kw), (sh, sw), (dh, dw) = win.k2, win.s2, win.d2
    for bb in range(4):
        for c in range(2):
            for yy in range(oh):
                for xx in range(ow):
                    vals = [(xp[bb, c, yy * sh + i * dh, xx * sw + j * dw], i, j)
                            for i in range(kh) for j in range(kw)]
                    m = max(v for v, _, _ in vals)
                    i, j = next((i, j) for v, i, j in vals if v == m)
                    exp[bb, c, yy * sh + i * dh, xx * sw + j * dw] += Rr[bb, c, yy, xx]
    np.testing.assert_allclose(gx, exp[:, :, pt:pt + 6, pl:pl + 7], rtol=1e-13, atol=1e-13)
    # the same op on a channels-last view of the input (what a convolution hands it)
    x4 = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)[None]

    class RT:
        keep = True

    (y_cl,), saved = op.forward([x4], RT())
    np.testing.assert_array_equal(y_cl.reshape(out.shape[1:]), out[0])
    (d_cl,) = op.backward(saved, R.reshape((1,) + y_cl.shape[1:]), [True], None)
    np.testing.assert_array_equal(d_cl[0], gx)
    (y_nk,), _ = op.forward([x4], None)
    np.testing.assert_array_equal(y_nk, y_cl)


def _conv_chain_net(rng, tail):
    """x -> Conv -> ``tail`` ops (each reading the previous output) -> Conv -> Flatten, with the
    fusable chains the executor finds."""
    consts = {"w": rng.standard_normal((5, 2, 3, 3)).astype(np.float32),
              "b": rng.standard_normal(5).astype(np.float32),
              "w2": rng.standard_normal((4, 5, 3, 3)).astype(np.float32)}
    nodes = [GraphNode("Conv", "c1", ["x", "w", "b"], ["v0"], {"pads": [1, 1, 1, 1]})]
    for i, (op, attrs) in enumerate(tail):
        nodes.append(GraphNode(op, f"t{i}", [f"v{i}"], [f"v{i + 1}"], attrs))
    nodes += [GraphNode("Conv", "c2", [f"v{len(tail)}", "w2"], ["y2"], {}),
              GraphNode("Relu", "r2", ["y2"], ["a2"]),
              GraphNode("Flatten", "f", ["a2"], ["y"], {"axis": 1})]
    return build_network(nodes, consts, input_name="x", input_shape=(2, 12, 12), output_name="y")


@pytest.mark.parametrize("tail", [
    [("Relu", {}), ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]})],
    [("MaxPool", {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}), ("Tanh", {})],
    [("LeakyRelu", {"alpha": 0.1}), ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}), ("Relu", {})],
])
@pytest.mark.parametrize("kind", ["clean", "shared", "perchip", "mixed"])
def test_fused_conv_chains_give_the_unfused_numbers(monkeypatch, tail, kind):
    """A forward without cache runs a convolution and the per-sample ops after it block by block;
    the logits are bit-for-bit those of the ops run one by one (float32, blocks of one sample and of
    many), and a forward keeping its cache (for gradients) does not fuse."""
    rng = np.random.default_rng(11)
    net = _conv_chain_net(rng, tail)
    assert net._fused[0] == list(range(1, len(tail) + 1))
    x = rng.standard_normal((9, 2, 12, 12)).astype(np.float32)
    ws = _weights(net, rng, kind)

    def unfused():
        plan, net._fused = net._fused, {}
        try:
            return net.forward(x, weights=ws)
        finally:
            net._fused = plan

    plain = unfused()
    np.testing.assert_array_equal(net.forward(x, weights=ws), plain)
    out, _ = net.forward(x, weights=ws, keep=True)
    np.testing.assert_array_equal(out, plain)
    # BLAS rounds differently with another block height, so each block size is compared with itself
    monkeypatch.setattr(ops_analog, "_COL_BYTES", 1)   # one sample per block
    np.testing.assert_array_equal(net.forward(x, weights=ws), unfused())


def test_no_fusion_when_an_intermediate_value_is_read_twice():
    """A conv output read by two ops (here Relu and the graph's Add) is not fused away."""
    rng = np.random.default_rng(2)
    consts = {"w": rng.standard_normal((3, 1, 3, 3)).astype(np.float32)}
    nodes = [GraphNode("Conv", "c", ["x", "w"], ["h"], {"pads": [1, 1, 1, 1]}),
             GraphNode("Relu", "r", ["h"], ["a"]),
             GraphNode("Add", "s", ["a", "h"], ["y"])]
    net = build_network(nodes, consts, input_name="x", input_shape=(1, 5, 5), output_name="y")
    assert net._fused == {}
