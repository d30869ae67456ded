"""Network import and the batched executor against onnxruntime (the reference implementation of
the ONNX semantics), scikit-learn's own predictions, and brute-force per-chip loops.

Tolerance: float32 outputs agree with onnxruntime to rtol=1e-5, atol=1e-5*max|ref| (both sides
round to float32 with different summation orders).
"""

import json
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from reliability.cim import (  # noqa: E402
    AnalogLayer, Network, from_sklearn, load_model, load_npz, load_onnx, margin, save_npz,
    softmax_cross_entropy,
)
from reliability.bench import CASES_DIR  # noqa: E402
from reliability.errors import ModelSpecError  # noqa: E402

CASE = CASES_DIR / "digits_mlp_s05"  # the public case shipped in the package
OPSETS = [9, 11, 12, 13, 19]


# --------------------------------------------------------------------------------------------
# helpers (also used by test_cim_gradients)


def make_model(nodes, inits, x_shape, opset=17, out="y", extra_inputs=()):
    """An ONNX model with one input ``x`` of shape ("B", *x_shape[1:]) and one output ``out``."""
    tensors = []
    for k, v in inits.items():
        v = np.asarray(v)
        tensors.append(numpy_helper.from_array(v.astype(np.int64) if v.dtype.kind in "iu"
                                               else v.astype(np.float32), k))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", *x_shape[1:]])]
    inputs += list(extra_inputs)
    graph = helper.make_graph(nodes, "test", inputs,
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              initializer=tensors)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                          ir_version=8 if opset <= 17 else 9)
    onnx.checker.check_model(m) if False else None  # ORT validates; outputs have no declared shape
    return m


def ort_run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": np.asarray(x, dtype=np.float32)})[0]


def assert_like_ort(model, x, net=None):
    net = load_onnx(model) if net is None else net
    ref = ort_run(model, x)
    ours = net.forward(x)
    assert ours.dtype == np.float32
    assert ours.shape == (1, x.shape[0], int(np.prod(ref.shape[1:])))
    np.testing.assert_allclose(ours[0].reshape(ref.shape), ref, rtol=1e-5,
                               atol=1e-5 * float(np.max(np.abs(ref))))
    return net, ref


def rnd(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def lenet(opset=17, pool2="AveragePool", seed=0):
    """LeNet-5-style CNN on (B, 1, 28, 28)."""
    rng = np.random.default_rng(seed)
    inits = {
        "c1w": rng.normal(0, 0.3, (6, 1, 5, 5)), "c1b": rng.normal(0, 0.1, 6),
        "c2w": rng.normal(0, 0.1, (16, 6, 5, 5)), "c2b": rng.normal(0, 0.1, 16),
        "f1w": rng.normal(0, 0.05, (120, 400)), "f1b": rng.normal(0, 0.1, 120),
        "f2w": rng.normal(0, 0.1, (84, 120)), "f2b": rng.normal(0, 0.1, 84),
        "f3w": rng.normal(0, 0.1, (10, 84)), "f3b": rng.normal(0, 0.1, 10),
    }
    nodes = [
        helper.make_node("Conv", ["x", "c1w", "c1b"], ["c1"], name="conv1", pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2w", "c2b"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node(pool2, ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["fl"], name="flatten", axis=1),
        helper.make_node("Gemm", ["fl", "f1w", "f1b"], ["g1"], name="fc1", transB=1),
        helper.make_node("Relu", ["g1"], ["h1"], name="relu3"),
        helper.make_node("Gemm", ["h1", "f2w", "f2b"], ["g2"], name="fc2", transB=1),
        helper.make_node("Relu", ["g2"], ["h2"], name="relu4"),
        helper.make_node("Gemm", ["h2", "f3w", "f3b"], ["y"], name="fc3", transB=1),
    ]
    return make_model(nodes, inits, (None, 1, 28, 28), opset)


# --------------------------------------------------------------------------------------------
# one op at a time


def _gemm_cases():
    W, b = rnd(5, 7, seed=1), rnd(5, seed=2)
    return {
        "gemm_transB_bias": ([helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)],
                             {"W": W, "b": b}, (4, 7)),
        "gemm_alpha_beta": ([helper.make_node("Gemm", ["x", "W", "b"], ["y"], alpha=0.5, beta=2.0)],
                            {"W": W.T, "b": b.reshape(1, 5)}, (4, 7)),
        "gemm_scalar_C": ([helper.make_node("Gemm", ["x", "W", "c"], ["y"], transB=1)],
                          {"W": W, "c": np.array([0.3])}, (4, 7)),
        "gemm_dynamic_C": ([helper.make_node("Relu", ["x"], ["r"]),
                            helper.make_node("Gemm", ["x", "W", "r"], ["y"], transB=1)],
                           {"W": rnd(7, 7, seed=3)}, (4, 7)),
    }


def _matmul_cases():
    W, b = rnd(7, 5, seed=1), rnd(5, seed=2)
    return {
        "matmul_add": ([helper.make_node("MatMul", ["x", "W"], ["m"]),
                        helper.make_node("Add", ["m", "b"], ["y"])], {"W": W, "b": b}, (4, 7)),
        "matmul_add_left_bias": ([helper.make_node("MatMul", ["x", "W"], ["m"]),
                                  helper.make_node("Add", ["b", "m"], ["y"])], {"W": W, "b": b}, (4, 7)),
        "matmul_3d": ([helper.make_node("MatMul", ["x", "W"], ["m"]),
                       helper.make_node("Add", ["m", "b"], ["y"])], {"W": W, "b": b}, (4, 3, 7)),
        "matmul_weight_left": ([helper.make_node("MatMul", ["W", "x"], ["y"])],
                               {"W": rnd(5, 3, seed=4)}, (4, 3, 6)),
    }


def _elementwise_cases():
    c = rnd(3, 1, 1, seed=5)
    return {
        "add_mul_sub_div": ([helper.make_node("Add", ["x", "c"], ["a"]),
                             helper.make_node("Mul", ["a", "d"], ["m"]),
                             helper.make_node("Sub", ["m", "e"], ["s"]),
                             helper.make_node("Div", ["s", "f"], ["y"])],
                            {"c": c, "d": rnd(5, seed=6), "e": np.array(0.7), "f": 1.5 + np.abs(rnd(4, 1, seed=7))},
                            (2, 3, 4, 5)),
        "branches_add_mul": ([helper.make_node("Relu", ["x"], ["r"]),
                              helper.make_node("Tanh", ["x"], ["t"]),
                              helper.make_node("Add", ["r", "t"], ["a"]),
                              helper.make_node("Mul", ["a", "x"], ["y"])], {}, (3, 6)),
        "relu": ([helper.make_node("Relu", ["x"], ["y"])], {}, (3, 8)),
        "leaky_relu": ([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.2)], {}, (3, 8)),
        "sigmoid": ([helper.make_node("Sigmoid", ["x"], ["y"])], {}, (3, 8)),
        "tanh": ([helper.make_node("Tanh", ["x"], ["y"])], {}, (3, 8)),
        "softmax_last": ([helper.make_node("Softmax", ["x"], ["y"])], {}, (3, 8)),
        "softmax_axis1": ([helper.make_node("Softmax", ["x"], ["y"], axis=1)], {}, (2, 3, 4, 5)),
        "softmax_axis_neg2": ([helper.make_node("Softmax", ["x"], ["y"], axis=-2)], {}, (2, 3, 4)),
        "identity_dropout": ([helper.make_node("Identity", ["x"], ["i"]),
                              helper.make_node("Dropout", ["i"], ["y"])], {}, (3, 4)),
        "constant": ([helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
                          rnd(4, seed=8), "k")),
                      helper.make_node("Mul", ["x", "k"], ["y"])], {}, (3, 4)),
        "constant_float": ([helper.make_node("Constant", [], ["k"], value_float=2.5),
                            helper.make_node("Add", ["x", "k"], ["y"])], {}, (3, 4)),
        "concat": ([helper.make_node("Relu", ["x"], ["r"]),
                    helper.make_node("Concat", ["x", "r"], ["y"], axis=1)], {}, (3, 4)),
    }


def _shape_cases():
    return {
        "flatten_axis1": ([helper.make_node("Flatten", ["x"], ["y"], axis=1)], {}, (2, 3, 4, 5)),
        "flatten_axis2": ([helper.make_node("Flatten", ["x"], ["f"], axis=2),
                           helper.make_node("Reshape", ["f", "s"], ["y"])],
                          {"s": np.array([-1, 60])}, (2, 3, 4, 5)),
        "flatten_axis_neg1": ([helper.make_node("Flatten", ["x"], ["y"], axis=-1)], {}, (2, 3)),
        "reshape_0_minus1": ([helper.make_node("Reshape", ["x", "s"], ["y"])],
                             {"s": np.array([0, -1])}, (2, 3, 4, 5)),
        "reshape_split": ([helper.make_node("Reshape", ["x", "s"], ["r"]),
                           helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 1, 3])],
                          {"s": np.array([0, 4, 3, -1])}, (2, 12, 5)),
        "reshape_constant_node": ([helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(
                                       np.array([-1, 20], np.int64), "s")),
                                   helper.make_node("Reshape", ["x", "s"], ["y"])], {}, (2, 4, 5)),
        "transpose_default": ([helper.make_node("Transpose", ["x"], ["t"]),
                               helper.make_node("Transpose", ["t"], ["y"])], {}, (2, 3, 4)),
        "transpose_perm": ([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
                            helper.make_node("Flatten", ["t"], ["y"])], {}, (2, 3, 4, 5)),
    }


def _conv_cases():
    w = rnd(4, 3, 3, 3, seed=9, scale=0.3)
    b = rnd(4, seed=10)
    x_shape = (2, 3, 9, 8)
    conv = lambda **kw: helper.make_node("Conv", ["x", "w", "b"], ["y"], **kw)  # noqa: E731
    return {
        "conv_basic": ([conv()], {"w": w, "b": b}, x_shape),
        "conv_nobias": ([helper.make_node("Conv", ["x", "w"], ["y"])], {"w": w}, x_shape),
        "conv_stride_pad": ([conv(strides=[2, 3], pads=[1, 2, 0, 1])], {"w": w, "b": b}, x_shape),
        "conv_dilation": ([conv(dilations=[2, 1], pads=[2, 1, 2, 1])], {"w": w, "b": b}, x_shape),
        "conv_same_upper": ([conv(auto_pad="SAME_UPPER", strides=[2, 2])], {"w": w, "b": b}, x_shape),
        "conv_same_lower": ([conv(auto_pad="SAME_LOWER", strides=[2, 2])], {"w": w, "b": b}, x_shape),
        "conv_valid": ([conv(auto_pad="VALID", strides=[2, 1])], {"w": w, "b": b}, x_shape),
        "conv_rect_kernel": ([conv(kernel_shape=[2, 3])], {"w": rnd(4, 3, 2, 3, seed=11), "b": b}, x_shape),
        "conv_grouped": ([conv(group=2, pads=[1, 1, 1, 1])],
                         {"w": rnd(6, 2, 3, 3, seed=12), "b": rnd(6, seed=13)}, (2, 4, 7, 7)),
        "conv_depthwise": ([conv(group=4, strides=[2, 2], dilations=[2, 2], pads=[2, 2, 2, 2])],
                           {"w": rnd(4, 1, 3, 3, seed=14), "b": rnd(4, seed=15)}, (2, 4, 9, 9)),
        "conv1d": ([conv(pads=[1, 2], strides=[2])], {"w": rnd(4, 3, 4, seed=16), "b": b}, (2, 3, 11)),
        "conv_add_bias": ([helper.make_node("Conv", ["x", "w"], ["c"]),
                           helper.make_node("Add", ["c", "b"], ["y"])],
                          {"w": w, "b": b.reshape(4, 1, 1)}, x_shape),
    }


def _pool_cases():
    x_shape = (2, 3, 9, 8)
    mp = lambda **kw: helper.make_node("MaxPool", ["x"], ["y"], **kw)  # noqa: E731
    ap = lambda **kw: helper.make_node("AveragePool", ["x"], ["y"], **kw)  # noqa: E731
    cases = {
        "maxpool_2x2": ([mp(kernel_shape=[2, 2], strides=[2, 2])], {}, x_shape),
        "maxpool_3x3_s2_p1": ([mp(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {}, x_shape),
        "maxpool_ceil": ([mp(kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1)], {}, x_shape),
        "maxpool_dilated": ([mp(kernel_shape=[2, 2], dilations=[2, 2])], {}, x_shape),
        "maxpool_same_upper": ([mp(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")], {}, x_shape),
        "maxpool_same_lower": ([mp(kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER")], {}, (2, 3, 7, 7)),
        "maxpool_1d": ([mp(kernel_shape=[3], strides=[2], pads=[1, 1])], {}, (2, 3, 10)),
        "avgpool_2x2": ([ap(kernel_shape=[2, 2], strides=[2, 2])], {}, x_shape),
        "avgpool_pad_excl": ([ap(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], {}, x_shape),
        "avgpool_pad_incl": ([ap(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                 count_include_pad=1)], {}, x_shape),
        "avgpool_ceil": ([ap(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)], {}, (2, 3, 7, 7)),
        "avgpool_same_upper": ([ap(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")], {}, x_shape),
        "avgpool_1d": ([ap(kernel_shape=[2], strides=[2])], {}, (2, 3, 10)),
        "global_avgpool": ([helper.make_node("GlobalAveragePool", ["x"], ["y"])], {}, x_shape),
    }
    cases["avgpool_dilated"] = ([ap(kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])], {}, x_shape)
    return cases


#: cases whose attributes an older opset does not have (ONNX's operator changelog)
MIN_OPSET = {"maxpool_ceil": 10, "avgpool_ceil": 10, "maxpool_dilated": 10, "flatten_axis_neg1": 11,
             "constant_float": 12, "avgpool_dilated": 19}


def _bn_cases():
    rng = np.random.default_rng(20)
    bn = {"g": rng.uniform(0.5, 2, 4), "be": rng.normal(0, 1, 4), "mu": rng.normal(0, 1, 4),
          "var": rng.uniform(0.5, 2, 4)}
    w = rnd(4, 3, 3, 3, seed=21, scale=0.3)
    return {
        "bn_after_conv": ([helper.make_node("Conv", ["x", "w", "b"], ["c"]),
                           helper.make_node("BatchNormalization", ["c", "g", "be", "mu", "var"], ["y"],
                                            epsilon=1e-3)],
                          {"w": w, "b": rnd(4, seed=22), **bn}, (2, 3, 6, 6)),
        "bn_elementwise": ([helper.make_node("Relu", ["x"], ["r"]),
                            helper.make_node("BatchNormalization", ["r", "g", "be", "mu", "var"], ["y"])],
                           bn, (2, 4, 3, 3)),
        "bn_elementwise_2d": ([helper.make_node("BatchNormalization", ["x", "g", "be", "mu", "var"], ["y"])],
                              bn, (3, 4)),
        "bn_after_gemm": ([helper.make_node("Gemm", ["x", "W", "b"], ["m"], transB=1),
                           helper.make_node("BatchNormalization", ["m", "g", "be", "mu", "var"], ["y"])],
                          {"W": rnd(4, 6, seed=23), "b": rnd(4, seed=24), **bn}, (3, 6)),
        "bn_after_matmul_add": ([helper.make_node("MatMul", ["x", "W"], ["m"]),
                                 helper.make_node("Add", ["m", "b"], ["a"]),
                                 helper.make_node("BatchNormalization", ["a", "g", "be", "mu", "var"], ["y"])],
                                {"W": rnd(6, 4, seed=23), "b": rnd(4, seed=24), **bn}, (3, 6)),
    }


def _all_cases():
    cases = {}
    for f in (_gemm_cases, _matmul_cases, _elementwise_cases, _shape_cases, _conv_cases, _bn_cases):
        cases.update(f())
    cases.update(_pool_cases())
    return cases


# the opsets before 13 run in the full suite (.ci/run), 13 and 19 in the fast lane too
@pytest.mark.parametrize("case, opset", [pytest.param(c, o, marks=[pytest.mark.slow] if o < 13 else [])
                                          for c in sorted(_all_cases()) for o in OPSETS if o >= MIN_OPSET.get(c, 0)])
def test_op_matches_onnxruntime(case, opset):
    nodes, inits, x_shape = _all_cases()[case]
    model = make_model(nodes, inits, x_shape, opset)
    x = rnd(*x_shape, seed=99)
    net, ref = assert_like_ort(model, x)
    assert net.output_shape == ref.shape[1:]
    # a different batch size works with the same network
    assert_like_ort(model, rnd(5, *x_shape[1:], seed=98), net)


def test_softmax_legacy_opset11():
    model = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], {}, (2, 3, 4), opset=11)
    model.ir_version = 6
    assert_like_ort(model, rnd(2, 3, 4))


def test_fusions_and_layers():
    cases = _all_cases()
    # Add of a bias vector is absorbed by MatMul, BatchNormalization by Conv/Gemm/MatMul
    for name, n_ops in [("matmul_add", 1), ("bn_after_conv", 1), ("bn_after_gemm", 1),
                        ("bn_after_matmul_add", 1), ("bn_elementwise", 2), ("conv_add_bias", 1)]:
        nodes, inits, xs = cases[name]
        net = load_onnx(make_model(nodes, inits, xs))
        assert len(net.ops) == n_ops, name
    nodes, inits, xs = cases["gemm_transB_bias"]
    net = load_onnx(make_model(nodes, inits, xs))
    (layer,) = net.analog_layers
    assert isinstance(layer, AnalogLayer) and layer.kind == "gemm" and layer.index == 0
    np.testing.assert_array_equal(layer.weight, inits["W"].T.astype(np.float64))
    np.testing.assert_array_equal(layer.bias, inits["b"].astype(np.float64))
    assert layer.weight.dtype == np.float64 and not layer.weight.flags.writeable
    # a grouped convolution is one analog layer per group, max|W| over the whole node
    nodes, inits, xs = cases["conv_grouped"]
    net = load_onnx(make_model(nodes, inits, xs))
    assert [l.name for l in net.analog_layers] == ["Conv_0/g0", "Conv_0/g1"]  # unnamed node 0
    w = inits["w"].astype(np.float64)
    for g, layer in enumerate(net.analog_layers):
        assert layer.kind == "conv" and layer.weight.shape == (2 * 9, 3)
        np.testing.assert_array_equal(layer.weight, w[3 * g:3 * g + 3].reshape(3, -1).T)
        assert layer.layer_max_abs == np.max(np.abs(w))
    # BatchNormalization folding changes the analog weights
    nodes, inits, xs = cases["bn_after_conv"]
    net = load_onnx(make_model(nodes, inits, xs))
    scale = inits["g"] / np.sqrt(inits["var"] + 1e-3)
    np.testing.assert_allclose(net.analog_layers[0].weight,
                               (inits["w"] * scale[:, None, None, None]).reshape(4, -1).T, rtol=1e-6)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("pool2", ["AveragePool", "MaxPool"])
def test_lenet_matches_onnxruntime(opset, pool2):
    model = lenet(opset, pool2)
    x = rnd(16, 1, 28, 28, seed=3)
    net, _ = assert_like_ort(model, x)
    assert net.input_shape == (1, 28, 28) and net.n_outputs == 10
    assert [l.kind for l in net.analog_layers] == ["conv", "conv", "gemm", "gemm", "gemm"]
    assert [l.weight.shape for l in net.analog_layers] == [(25, 6), (150, 16), (400, 120), (120, 84),
                                                          (84, 10)]


def test_mlp_with_batchnorm_folded():
    rng = np.random.default_rng(4)
    inits = {"W1": rng.normal(0, 0.3, (32, 20)), "b1": rng.normal(0, 0.1, 32),
             "g": rng.uniform(0.5, 2, 32), "be": rng.normal(0, 0.5, 32),
             "mu": rng.normal(0, 0.5, 32), "var": rng.uniform(0.2, 2, 32),
             "W2": rng.normal(0, 0.3, (32, 10)), "b2": rng.normal(0, 0.1, 10)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
             helper.make_node("BatchNormalization", ["h", "g", "be", "mu", "var"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("Dropout", ["r"], ["d"]),
             helper.make_node("MatMul", ["d", "W2"], ["m"]),
             helper.make_node("Add", ["m", "b2"], ["s"]),
             helper.make_node("Softmax", ["s"], ["y"], axis=1)]
    model = make_model(nodes, inits, (None, 20))
    net, _ = assert_like_ort(model, rnd(50, 20, seed=5))
    assert [op.op_type for op in net.ops] == ["Gemm", "Relu", "Dropout", "MatMul", "Softmax"]


# --------------------------------------------------------------------------------------------
# the public benchmark case


def test_digits_benchmark_clean_accuracy():
    case = json.loads((CASE / "case.json").read_text())
    data = np.load(CASE / "data.npz")
    X, y = data["X"], data["y"]
    net = load_model(CASE / "model.onnx")
    sess = ort.InferenceSession(str(CASE / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: X})[0]
    ort_acc = float(np.mean(ref.argmax(1) == y))
    acc, loss = net.accuracy_and_loss(X, y)
    assert acc.shape == loss.shape == (1,)
    assert acc[0] == ort_acc == case["clean_accuracy"]
    acc2, loss2 = net.accuracy_and_loss(X, y, chunk=100)
    assert acc2[0] == acc[0] and abs(loss2[0] - loss[0]) < 1e-6 * loss[0]  # float32 logits
    logits = net.forward(X)
    np.testing.assert_allclose(logits[0], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(loss[0], softmax_cross_entropy(ref[None], y, grad=False).mean(), rtol=1e-5)
    m = margin(logits, y)
    assert m.shape == (1, len(y))
    assert np.mean(m > 0) == acc[0]
    np.testing.assert_array_equal(net.margin(logits, y), m)


# --------------------------------------------------------------------------------------------
# many chips at once


def _noisy(net, S, seed=0, sigma=0.05):
    rng = np.random.default_rng(seed)
    return [l.weight + sigma * l.layer_max_abs * rng.standard_normal((S,) + l.weight.shape)
            for l in net.analog_layers]


@pytest.mark.parametrize("pool2", ["AveragePool", "MaxPool"])
def test_per_chip_weights_equal_separate_forwards(pool2):
    net = load_onnx(lenet(17, pool2))
    x = rnd(6, 1, 28, 28, seed=7)
    ws = _noisy(net, 3)
    ws[3] = net.analog_layers[3].weight * 1.01  # a shared (K, N) entry among per-chip ones
    out = net.forward(x, weights=ws, dtype=np.float64)
    assert out.shape == (3, 6, 10)
    for s in range(3):
        one = net.forward(x, weights=[w[s] if w.ndim == 3 else w for w in ws], dtype=np.float64)
        np.testing.assert_allclose(out[s], one[0], rtol=1e-12, atol=1e-12)
    out32 = net.forward(x, weights=ws)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out, rtol=1e-4, atol=1e-4 * np.abs(out).max())
    acc, loss = net.accuracy_and_loss(x, np.arange(6) % 10, weights=ws, chunk=4)
    assert acc.shape == loss.shape == (3,)
    ce = softmax_cross_entropy(out, np.arange(6) % 10, grad=False).mean(axis=1)
    np.testing.assert_allclose(loss, ce, rtol=1e-4)


def test_grouped_conv_per_chip():
    nodes, inits, xs = _conv_cases()["conv_grouped"]
    net = load_onnx(make_model(nodes, inits, xs))
    x = rnd(*xs, seed=8)
    ws = _noisy(net, 4)
    ws[0] = None  # None entries mean "clean"
    out = net.forward(x, weights=ws, dtype=np.float64)
    for s in range(4):
        one = net.forward(x, weights=[None, ws[1][s]], dtype=np.float64)
        np.testing.assert_allclose(out[s], one[0], rtol=1e-12)


def test_matmul_hook_receives_layers_and_shapes():
    net = load_onnx(lenet(17))
    x = rnd(3, 1, 28, 28, seed=9)
    ws = _noisy(net, 2)
    calls = []

    def hook(layer, X, W):
        calls.append((layer.index, X.shape, W.shape))
        return 2.0 * np.matmul(X, W)

    out = net.forward(x, weights=ws, matmul=hook, dtype=np.float64)
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4]
    assert calls[0][1] == (1, 3 * 28 * 28, 25) and calls[0][2] == (2, 25, 6)
    assert calls[1][1] == (2, 3 * 10 * 10, 150)
    assert calls[2][1] == (2, 3, 400)
    # the hook replaces only the product: the bias is added afterwards, by the executor
    ident = net.forward(x, weights=ws, matmul=lambda l, X, W: np.matmul(X, W), dtype=np.float64)
    np.testing.assert_allclose(ident, net.forward(x, weights=ws, dtype=np.float64), rtol=1e-12)
    assert not np.allclose(out, ident)
    with pytest.raises(ModelSpecError, match="matmul callback returned shape"):
        net.forward(x, matmul=lambda l, X, W: np.matmul(X, W)[:, :1])


def test_weights_validation():
    net = load_onnx(lenet(17))
    x = rnd(2, 1, 28, 28)
    ws = _noisy(net, 3)
    with pytest.raises(ModelSpecError, match="5 analog layers"):
        net.forward(x, weights=ws[:4])
    bad = list(ws)
    bad[2] = bad[2][:2]
    with pytest.raises(ModelSpecError, match="same S"):
        net.forward(x, weights=bad)
    bad[2] = ws[2][:, :10]
    with pytest.raises(ModelSpecError, match=r"weights\[2\].*expected \(400, 120\)"):
        net.forward(x, weights=bad)


def test_forward_does_not_mutate_inputs():
    net = load_onnx(lenet(17))
    x = rnd(2, 1, 28, 28)
    ws = _noisy(net, 2)
    x0, ws0 = x.copy(), [w.copy() for w in ws]
    net.forward(x, weights=ws, keep=True, dtype=np.float64)
    np.testing.assert_array_equal(x, x0)
    for w, w0 in zip(ws, ws0):
        np.testing.assert_array_equal(w, w0)


# --------------------------------------------------------------------------------------------
# bad models


def test_unsupported_op_names_op_and_node():
    rng = np.random.default_rng(0)
    inits = {"W": rng.normal(size=(1, 32, 8)), "R": rng.normal(size=(1, 32, 8))}
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="my_lstm", hidden_size=8)]
    model = make_model(nodes, inits, (None, 5, 8))
    with pytest.raises(ModelSpecError) as e:
        load_onnx(model)
    msg = str(e.value)
    assert "LSTM" in msg and "my_lstm" in msg and "Conv" in msg and "Gemm" in msg


def test_nan_initializer():
    W = rnd(5, 7)
    W[2, 3] = np.nan
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], name="fc", transB=1)], {"W": W}, (4, 7))
    with pytest.raises(ModelSpecError, match=r"'W'.*'fc'.*1 NaN or infinite"):
        load_onnx(model)


def test_input_shape_mismatch():
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], {"W": rnd(5, 64)},
                       (None, 64))
    net = load_onnx(model)
    assert net.input_shape == (64,)
    with pytest.raises(ModelSpecError, match=r"input has shape \(B, 63\) but the model expects \(B, 64\)"):
        net.forward(rnd(10, 63))
    with pytest.raises(ModelSpecError, match=r"expects \(B, 64\)"):
        net.forward(rnd(64))


def test_dynamic_weight_matmul():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x", "t"], ["y"], name="attn")]
    with pytest.raises(ModelSpecError, match=r"MatMul node 'attn'.*dynamic weights"):
        load_onnx(make_model(nodes, {}, (None, 4, 3)))
    nodes = [helper.make_node("Relu", ["x"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["y"], name="dynconv")]
    with pytest.raises(ModelSpecError, match=r"Conv node 'dynconv'.*dynamic weights"):
        load_onnx(make_model(nodes, {}, (None, 1, 3, 3)))


def test_multiple_inputs_and_bad_files(tmp_path):
    extra = [helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["B", 4])]
    model = make_model([helper.make_node("Add", ["x", "x2"], ["y"])], {}, (None, 4), extra_inputs=extra)
    with pytest.raises(ModelSpecError, match="2 inputs"):
        load_onnx(model)
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_model(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\xff\x17" * 10)
    with pytest.raises(ModelSpecError, match="not .*ONNX"):
        load_model(junk)
    with pytest.raises(ModelSpecError, match="pickled models are not loaded"):
        load_model(tmp_path / "model.pkl")
    with pytest.raises(ModelSpecError, match="unknown file type"):
        load_model(tmp_path / "model.h5")
    with pytest.raises(ModelSpecError, match="cannot load a model"):
        load_model(42)


def test_initializers_listed_as_inputs_are_not_inputs():
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], {"W": rnd(5, 7)}, (None, 7))
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [5, 7]))
    net = load_onnx(model)
    assert len(net.analog_layers) == 1


def test_fixed_batch_export_with_hardcoded_reshape():
    # torch.onnx.export without dynamic axes: batch 1 in the input and in a Reshape's shape
    inits = {"s": np.array([1, -1]), "W": rnd(5, 12)}
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"]),
             helper.make_node("Gemm", ["r", "W"], ["y"], transB=1)]
    model = make_model(nodes, inits, (None, 3, 4))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    net = load_onnx(model)
    x = rnd(7, 3, 4)
    ref = x.reshape(7, 12).astype(np.float64) @ inits["W"].T.astype(np.float64)
    np.testing.assert_allclose(net.forward(x)[0], ref, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# scikit-learn


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    return load_digits(return_X_y=True)


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
def test_sklearn_classifier(digits, activation):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    X, y = digits
    X = X / 16.0
    clf = MLPClassifier(hidden_layer_sizes=(32, 16), activation=activation, max_iter=40, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X[:1000], y[:1000])
    net = from_sklearn(clf)
    assert load_model(clf).n_outputs == 10
    assert [l.kind for l in net.analog_layers] == ["gemm"] * 3
    Xt = X[1000:]
    z = net.forward(Xt, dtype=np.float64)[0]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(p, clf.predict_proba(Xt), rtol=1e-5, atol=1e-12)
    np.testing.assert_array_equal(net.classes[z.argmax(1)], clf.predict(Xt))
    z32 = net.forward(Xt)[0]
    assert np.mean(net.classes[z32.argmax(1)] == clf.predict(Xt)) > 0.995


def test_sklearn_binary_classifier(digits):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    X, y = digits
    X, yb = X / 16.0, np.where(y < 5, "low", "high")
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, yb)
    net = from_sklearn(clf)
    z = net.forward(X, dtype=np.float64)[0]
    assert z.shape == (len(X), 2) and np.all(z[:, 0] == 0)
    np.testing.assert_array_equal(net.classes[z.argmax(1)], clf.predict(X))
    np.testing.assert_allclose(1 / (1 + np.exp(-z[:, 1])), clf.predict_proba(X)[:, 1], rtol=1e-5)
    # the extra zero logit is digital: still one analog output column
    assert net.analog_layers[-1].weight.shape == (16, 1)


@pytest.mark.parametrize("n_targets", [1, 3])
def test_sklearn_regressor(digits, n_targets):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    X, y = digits
    X = X / 16.0
    Y = np.stack([y, y ** 2 / 10, X[:, 20]], axis=1)[:, :n_targets]
    if n_targets == 1:
        Y = Y[:, 0]
    reg = MLPRegressor(hidden_layer_sizes=(24,), activation="tanh", max_iter=40, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y)
    net = from_sklearn(reg)
    out = net.forward(X, dtype=np.float64)[0]
    assert net.n_outputs == n_targets and net.classes is None
    np.testing.assert_allclose(out.reshape(np.shape(reg.predict(X))), reg.predict(X), rtol=1e-5,
                               atol=1e-10)


def test_sklearn_rejects_unfitted_and_other_estimators():
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    with pytest.raises(ModelSpecError, match="not fitted"):
        from_sklearn(MLPClassifier())
    with pytest.raises(ModelSpecError, match="MLPClassifier and MLPRegressor"):
        from_sklearn(LogisticRegression())


# --------------------------------------------------------------------------------------------
# .npz layer files


def _npz_cnn():
    rng = np.random.default_rng(30)
    inits = {"c1w": rng.normal(0, 0.3, (4, 2, 3, 3)), "c1b": rng.normal(0, 0.1, 4),
             "c2w": rng.normal(0, 0.3, (6, 2, 3, 3)),
             "fw": rng.normal(0, 0.2, (36, 5)), "fb": rng.normal(0, 0.1, 5)}
    nodes = [
        helper.make_node("Conv", ["x", "c1w", "c1b"], ["c1"], pads=[1, 0, 1, 2], strides=[1, 2]),
        helper.make_node("LeakyRelu", ["c1"], ["a1"], alpha=0.1),
        helper.make_node("MaxPool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1]),
        helper.make_node("Conv", ["p1", "c2w"], ["c2"], group=2, dilations=[2, 1]),
        helper.make_node("Tanh", ["c2"], ["a2"]),
        helper.make_node("AveragePool", ["a2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2],
                         pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("Sigmoid", ["p2"], ["a3"]),
        helper.make_node("Flatten", ["a3"], ["f"]),
        helper.make_node("MatMul", ["f", "fw"], ["m"]),
        helper.make_node("Add", ["m", "fb"], ["z"]),
        helper.make_node("Relu", ["z"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], axis=-1),
    ]
    return make_model(nodes, inits, (None, 2, 8, 9))


def test_npz_round_trip_matches_onnxruntime(tmp_path):
    model = _npz_cnn()
    x = rnd(5, 2, 8, 9, seed=31)
    net, ref = assert_like_ort(model, x)
    path = tmp_path / "cnn.npz"
    save_npz(net, path)
    z = np.load(path, allow_pickle=False)
    assert str(z["format"]) == "nvcim-reliability/layers-v1" and int(z["n_layers"]) == 11
    assert [str(z[f"layer{i}_type"]) for i in range(11)] == [
        "conv2d", "leaky_relu", "maxpool2d", "conv2d", "tanh", "avgpool2d", "sigmoid", "flatten",
        "dense", "relu", "softmax"]
    assert z["layer3_groups"] == 2 and list(z["layer0_pad"]) == [1, 0, 1, 2]
    back = load_model(path)
    assert back.input_shape == net.input_shape and len(back.analog_layers) == len(net.analog_layers)
    for a, b in zip(back.analog_layers, net.analog_layers):
        np.testing.assert_array_equal(a.weight, b.weight)
        assert a.layer_max_abs == b.layer_max_abs
    assert_like_ort(model, x, back)
    ws = _noisy(net, 2)
    np.testing.assert_allclose(back.forward(x, weights=ws, dtype=np.float64),
                               net.forward(x, weights=ws, dtype=np.float64), rtol=1e-12)


def test_npz_hand_written(tmp_path):
    rng = np.random.default_rng(32)
    W0, b0, W1 = rng.normal(size=(6, 4)), rng.normal(size=4), rng.normal(size=(4, 3))
    path = tmp_path / "mlp.npz"
    np.savez(path, format="nvcim-reliability/layers-v1", n_layers=4, input_shape=[6],
             layer0_type="dense", layer0_W=W0, layer0_b=b0, layer1_type="leaky_relu", layer1_alpha=0.3,
             layer2_type="dense", layer2_W=W1, layer3_type="softmax")
    net = load_npz(path)
    x = rng.normal(size=(5, 6))
    h = x @ W0 + b0
    h = np.where(h >= 0, h, 0.3 * h) @ W1
    p = np.exp(h - h.max(1, keepdims=True))
    np.testing.assert_allclose(net.forward(x, dtype=np.float64)[0], p / p.sum(1, keepdims=True), rtol=1e-12)
    assert net.analog_layers[1].bias is None
    np.savez(tmp_path / "bad.npz", format="nvcim-reliability/layers-v1", n_layers=1, input_shape=[6],
             layer0_type="lstm")
    with pytest.raises(ModelSpecError, match="'lstm'"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", format="nvcim-reliability/layers-v1", n_layers=1, input_shape=[6],
             layer0_type="dense")
    with pytest.raises(ModelSpecError, match="layer0_W"):
        load_npz(tmp_path / "bad2.npz")


def test_npz_save_rejects_non_chain(tmp_path):
    nodes, inits, xs = _elementwise_cases()["branches_add_mul"]
    net = load_onnx(make_model(nodes, inits, xs))
    with pytest.raises(ModelSpecError, match="cannot write"):
        save_npz(net, tmp_path / "x.npz")


def test_network_repr_and_summary():
    net = load_onnx(lenet(17))
    assert isinstance(net, Network)
    assert "5 analog layers" in repr(net)
    s = net.summary()
    assert "conv1" in s and "fc3" in s


def test_margin_gradient_matches_finite_differences():
    from reliability.cim.graph import margin

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 5, 4))
    y = rng.integers(0, 4, size=5)
    m, g = margin(logits, y, grad=True)
    assert m.shape == (2, 5) and g.shape == logits.shape
    np.testing.assert_array_equal(m, margin(logits, y))
    eps = 1e-6
    for idx in np.ndindex(logits.shape):
        d = np.zeros_like(logits)
        d[idx] = eps
        fd = (margin(logits + d, y) - margin(logits - d, y)) / (2 * eps)
        assert abs(fd[idx[:2]] - g[idx]) < 1e-6
        # only the sample's own logits move its margin
        assert np.count_nonzero(np.abs(fd) > 1e-9) <= 1


def test_forward_only_relu_in_place_never_touches_a_value_still_needed():
    """Forward without a cache runs ReLU in place on a value's last use only: a pre-activation
    that a later node still reads (a residual Add here) and the caller's input stay intact."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 6)).astype(np.float32)
    inits = [numpy_helper.from_array(W, "W")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["a"], name="relu"),
             helper.make_node("Add", ["a", "h"], ["s"], name="add"),
             helper.make_node("Relu", ["x"], ["rx"], name="relu_x"),
             helper.make_node("Add", ["s", "rx"], ["y"], name="out")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], inits)
    net = load_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    x = rng.standard_normal((5, 6)).astype(np.float32)
    x0 = x.copy()
    h = x @ W
    want = np.maximum(h, 0) + h + np.maximum(x, 0)
    Ws = [np.stack([W, 2 * W])]
    got = net.forward(x, weights=Ws)
    np.testing.assert_allclose(got[0], want, rtol=1e-6)
    np.testing.assert_allclose(got[1], np.maximum(2 * h, 0) + 2 * h + np.maximum(x, 0), rtol=1e-6)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(got, net.forward(x, weights=Ws, keep=True)[0])


@pytest.mark.parametrize("case", sorted(MIN_OPSET))
def test_what_the_opset_lacks_is_refused(case):
    """ceil_mode and MaxPool dilations (opset 10), a negative Flatten axis (11), AveragePool
    dilations (19): an older model with them is invalid (onnxruntime refuses it too) and is not
    read with the newer semantics."""
    nodes, inits, x_shape = _all_cases()[case]
    opset = MIN_OPSET[case] - 1
    with pytest.raises(ModelSpecError, match="does not have at the model's opset|valid from opset 11"):
        load_onnx(make_model(nodes, inits, x_shape, opset))
