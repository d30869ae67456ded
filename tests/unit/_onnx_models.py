"""Small ONNX models shared by the tests."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def linear_onnx(W, b):
    """A single Gemm layer ``y = x W + b`` as an opset-17 ONNX model."""
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="fc")], "lin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", W.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", W.shape[1]])],
        [numpy_helper.from_array(W.astype(np.float32), "W"), numpy_helper.from_array(b.astype(np.float32), "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
