"""Benchmark networks built with onnx.helper (random He-initialized weights; speed does not depend
on training): a 784-256-10 MLP and a LeNet-5 for 28 x 28 inputs."""

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
    g = helper.make_graph(nodes, "lenet5", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
