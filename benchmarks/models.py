"""Benchmark networks built with onnx.helper (random He-initialized weights; speed does not depend
on training): a 784-256-10 MLP, a LeNet-5 for 28 x 28 inputs and a small LeNet-style CNN for
scikit-learn's 8 x 8 digits; and :func:`train_adam`, which trains an ONNX model's analog weights
with Adam through the toolkit's own forward and backward passes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _he(rng, shape, fan_in):
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def mlp_784_256_10(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [_init("W1", _he(rng, (256, 784), 784)), _init("b1", np.zeros(256)),
             _init("W2", _he(rng, (10, 256), 256)), _init("b2", np.zeros(10))]
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], name="fc1", transB=1),
             helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
             helper.make_node("Gemm", ["a1", "W2", "b2"], ["y"], name="fc2", transB=1)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def lenet5(seed: int = 0) -> onnx.ModelProto:
    """LeNet-5 on 1 x 28 x 28: conv5x5(6, pad 2) - relu - maxpool2 - conv5x5(16) - relu - maxpool2 -
    flatten - 120 - relu - 84 - relu - 10."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("C1", _he(rng, (6, 1, 5, 5), 25)), _init("c1", np.zeros(6)),
        _init("C2", _he(rng, (16, 6, 5, 5), 150)), _init("c2", np.zeros(16)),
        _init("F1", _he(rng, (120, 400), 400)), _init("f1", np.zeros(120)),
        _init("F2", _he(rng, (84, 120), 120)), _init("f2", np.zeros(84)),
        _init("F3", _he(rng, (10, 84), 84)), _init("f3", np.zeros(10)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "C1", "c1"], ["h1"], name="conv1", kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("MaxPool", ["a1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "C2", "c2"], ["h2"], name="conv2", kernel_shape=[5, 5]),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("MaxPool", ["a2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "F1", "f1"], ["h3"], name="fc1", transB=1),
        helper.make_node("Relu", ["h3"], ["a3"], name="relu3"),
        helper.make_node("Gemm", ["a3", "F2", "f2"], ["h4"], name="fc2", transB=1),
        helper.make_node("Relu", ["h4"], ["a4"], name="relu4"),
        helper.make_node("Gemm", ["a4", "F3", "f3"], ["y"], name="fc3", transB=1),
    ]
    return _classifier(nodes, "lenet5", inits, (1, 28, 28))


def digits_cnn(seed: int = 0) -> onnx.ModelProto:
    """LeNet-style CNN on 1 x 8 x 8: conv3x3(8, pad 1) - relu - maxpool2 - flatten - 32 - relu - 10."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("C1", _he(rng, (8, 1, 3, 3), 9)), _init("c1", np.zeros(8)),
        _init("F1", _he(rng, (32, 128), 128)), _init("f1", np.zeros(32)),
        _init("F2", _he(rng, (10, 32), 32)), _init("f2", np.zeros(10)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "C1", "c1"], ["h1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("MaxPool", ["a1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "F1", "f1"], ["h2"], name="fc1", transB=1),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("Gemm", ["a2", "F2", "f2"], ["y"], name="fc2", transB=1),
    ]
    return _classifier(nodes, "digits_cnn", inits, (1, 8, 8))


def _classifier(nodes, name: str, inits, input_shape: tuple) -> onnx.ModelProto:
    """An opset-17 model from ``nodes``: input ``x`` of shape ``(N, *input_shape)``, output ``y``
    of 10 class scores."""
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def with_weights(model: onnx.ModelProto, weights, names) -> onnx.ModelProto:
    """``model`` with the initializers ``names`` replaced, in place, by ``weights`` given in the
    toolkit's ``(K, N)`` orientation (``y = x @ W``; one per analog layer, in execution order), each
    transposed back to the initializer's ONNX layout (Gemm with ``transB=1``: ``(N, K)``; Conv:
    ``(out, in, kh, kw)``).  Returns ``model``."""
    inits = {i.name: i for i in model.graph.initializer}
    for name, W in zip(names, weights, strict=True):
        old = numpy_helper.to_array(inits[name])
        new = numpy_helper.from_array(np.ascontiguousarray(W.T.reshape(old.shape)).astype(np.float32), name)
        inits[name].CopyFrom(new)
    return model


def adam_weights(net, Xtr, ytr, epochs: int, batch: int, lr: float, seed: int) -> list[np.ndarray]:
    """The analog weights of ``net`` (a :class:`reliability.cim.Network`) after ``epochs`` epochs of
    Adam (betas 0.9, 0.999; eps 1e-8) on the mean softmax cross-entropy over minibatches of
    ``batch`` samples (order from ``np.random.default_rng(seed)``), with the executor's own forward
    and backward passes; biases stay as they are.  Returns one ``(K, N)`` float32 array per analog
    layer."""
    from reliability.cim.graph import softmax_cross_entropy

    rng = np.random.default_rng(seed)
    weights = [layer.weight.astype(np.float32).copy() for layer in net.analog_layers]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    t = 0
    for _ in range(epochs):
        order = rng.permutation(len(ytr))
        for s0 in range(0, len(order), batch):
            idx = order[s0:s0 + batch]
            out, cache_ = net.forward(Xtr[idx], weights=weights, keep=True)
            _, g = softmax_cross_entropy(out, ytr[idx])
            gw = net.backward(cache_, (g / len(idx)).astype(np.float32), input_grad=False).weights
            t += 1
            for w, a, b, d in zip(weights, m, v, gw):
                d = d[0]
                a *= 0.9
                a += 0.1 * d
                b *= 0.999
                b += 0.001 * d * d
                w -= lr * (a / (1 - 0.9 ** t)) / (np.sqrt(b / (1 - 0.999 ** t)) + 1e-8)
    return weights


def train_adam(model: onnx.ModelProto, Xtr, ytr, epochs: int, batch: int, lr: float, seed: int,
               weight_names) -> onnx.ModelProto:
    """``model`` trained by :func:`adam_weights`: its analog-layer initializers ``weight_names``
    (in the executor's order of analog layers) replaced, in place, by the trained weights."""
    from reliability.cim import load_onnx

    weights = adam_weights(load_onnx(model), Xtr, ytr, epochs, batch, lr, seed)
    return with_weights(model, weights, weight_names)
