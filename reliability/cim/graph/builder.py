"""The builder: :func:`build_network` turns a topologically ordered list of :class:`GraphNode`
(ONNX op semantics) into a :class:`Network`.

It maps every Gemm, MatMul and Conv with a constant weight to analog layers, folds a following
constant channel Add and BatchNormalization into their weights and bias, evaluates nodes whose
inputs are all constants (in float64), and checks the graph (supported op types, finite constants,
topological order).  The importers (:mod:`reliability.cim.importers`) produce the node lists from
ONNX files, scikit-learn estimators and ``.npz`` layer files.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from reliability.cim.graph.executor import Network
from reliability.cim.graph.ir import AnalogLayer, GraphNode
from reliability.cim.graph.ops_analog import _AnalogConv, _AnalogDense
from reliability.cim.graph.ops_elementwise import (
    _Binary, _ChannelAffine, _Concat, _Flatten, _Reshape, _Softmax, _Transpose, _Unary,
)
from reliability.cim.graph.ops_pool import _GlobalAveragePool, _Pool
from reliability.cim.graph.window import _Window
from reliability.errors import ModelSpecError

__all__ = ["SUPPORTED_OPS", "build_network"]

#: ONNX op types the executor supports (default domain).
SUPPORTED_OPS = (
    "Add", "AveragePool", "BatchNormalization", "Concat", "Constant", "Conv", "Div", "Dropout",
    "Flatten", "Gemm", "GlobalAveragePool", "Identity", "LeakyRelu", "MatMul", "MaxPool", "Mul",
    "Relu", "Reshape", "Sigmoid", "Softmax", "Sub", "Tanh", "Transpose",
)


def _unsupported(op_type, name, domain=""):
    dom = f" (domain {domain!r})" if domain not in ("", "ai.onnx") else ""
    return ModelSpecError(
        f"node {name!r} has op type {op_type!r}{dom}, which is not supported.  Supported op types: "
        f"{', '.join(SUPPORTED_OPS)}.  Replace the layer in the model, or export the model "
        f"without it")


def _attr_str(v):
    return v.decode() if isinstance(v, bytes) else v


class _Builder:
    def __init__(self, nodes, constants, input_name, input_shape, output_name, value_ranks,
                 declared_batch, opset, source):
        self.nodes = list(nodes)
        self.consts = {k: np.asarray(v) for k, v in constants.items()}
        self.input_name = input_name
        self.input_shape = tuple(input_shape)
        self.output_name = output_name
        self.ranks = dict(value_ranks or {})
        self.declared_batch = declared_batch
        self.opset = opset
        self.source = source
        self.ops: list = []
        self.layers: list = []
        self.consumed: set = set()
        self.names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(self.nodes)]
        self.consumers: dict = {}
        for i, n in enumerate(self.nodes):
            for v in n.inputs:
                if v:
                    self.consumers.setdefault(v, []).append(i)
        self.ranks.setdefault(input_name, len(self.input_shape) + 1)

    # -- helpers --

    def check_finite(self, name, arr, where=""):
        a = np.asarray(arr)
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            users = where or ", ".join(repr(self.names[i]) for i in self.consumers.get(name, [])) or "-"
            raise ModelSpecError(
                f"constant/initializer {name!r} (shape {a.shape}, used by node(s) {users}) contains "
                f"{bad} NaN or infinite value(s); the model file is corrupt or the training diverged: "
                f"retrain or re-export it")

    def is_const(self, v):
        return bool(v) and v in self.consts

    def sole_consumer(self, v):
        if v == self.output_name:
            return None
        c = self.consumers.get(v, [])
        if len(c) != 1 or c[0] in self.consumed:
            return None
        return c[0]

    def add_layer(self, name, kind, W, max_abs, bias):
        W = np.array(W, dtype=np.float64)
        W.setflags(write=False)
        if bias is not None:
            bias = np.array(bias, dtype=np.float64).reshape(-1)
            bias.setflags(write=False)
        layer = AnalogLayer(len(self.layers), name, kind, W, float(max_abs), bias)
        self.layers.append(layer)
        return layer.index

    def new_const(self, name, value):
        base, k = name, 0
        while name in self.consts:
            k += 1
            name = f"{base}_{k}"
        self.consts[name] = np.asarray(value)
        return name

    # -- folding of what follows an analog op --

    def _channel_vector(self, c, n, channel_from_end, out_rank):
        """``c`` as an (n,) vector if it broadcasts only along the channel axis, else None."""
        c = np.asarray(c, dtype=np.float64)
        if c.ndim == 0 or c.size == 1:
            if out_rank is None and c.ndim > 1:
                return None
            if out_rank is not None and c.ndim > out_rank:
                return None
            return np.full(n, float(c.reshape(-1)[0]))
        if out_rank is not None and c.ndim > out_rank:
            return None
        if out_rank is None and c.ndim > 1:
            return None
        shp = c.shape
        if len(shp) < channel_from_end:
            return None
        if shp[-channel_from_end] != n or math.prod(shp) != n:
            return None
        return c.reshape(n)

    def fuse_following(self, out_value, W_cols, bias, channel_from_end, out_rank, bn_ok):
        """Absorb Add(constant channel vector) and BatchNormalization nodes after an analog op.

        ``W_cols(scale)`` scales the output columns of the weight in place.  Returns the final
        output value name and the bias.
        """
        while True:
            j = self.sole_consumer(out_value)
            if j is None:
                return out_value, bias
            node = self.nodes[j]
            if node.op_type == "Add" and node.domain in ("", "ai.onnx"):
                other = node.inputs[1] if node.inputs[0] == out_value else node.inputs[0]
                if node.inputs[0] == node.inputs[1] or not self.is_const(other):
                    return out_value, bias
                nout = W_cols(None)
                vec = self._channel_vector(self.consts[other], nout, channel_from_end, out_rank)
                if vec is None:
                    return out_value, bias
                bias = vec.copy() if bias is None else bias + vec
                self.consumed.add(j)
                out_value = node.outputs[0]
                continue
            if node.op_type == "BatchNormalization" and bn_ok and node.domain in ("", "ai.onnx"):
                if node.inputs[0] != out_value or not all(self.is_const(v) for v in node.inputs[1:5]):
                    return out_value, bias
                if int(node.attrs.get("training_mode", 0)) or any(node.outputs[1:]):
                    return out_value, bias
                nout = W_cols(None)
                scale, shift = self.bn_affine(node, self.names[j])
                if scale.size != nout:
                    return out_value, bias
                W_cols(scale)
                bias = shift.copy() if bias is None else bias * scale + shift
                self.consumed.add(j)
                out_value = node.outputs[0]
                continue
            return out_value, bias

    def bn_affine(self, node, name):
        gamma, beta, mean, var = (np.asarray(self.consts[v], dtype=np.float64).reshape(-1)
                                  for v in node.inputs[1:5])
        eps = float(node.attrs.get("epsilon", 1e-5))
        if np.any(var + eps <= 0):
            raise ModelSpecError(f"BatchNormalization node {name!r}: variance + epsilon <= 0")
        scale = gamma / np.sqrt(var + eps)
        return scale, beta - mean * scale

    # -- per-op builders --

    def build_gemm(self, i, node, name):
        a, bname = node.inputs[0], node.inputs[1]
        c = node.inputs[2] if len(node.inputs) > 2 else ""
        if not self.is_const(bname):
            raise ModelSpecError(
                f"Gemm node {name!r}: its weight operand B ({bname!r}) is computed at run time, not "
                f"an initializer (dynamic weights are not supported on an analog crossbar).  Export "
                f"the model with the weight as a constant/initializer")
        alpha = float(node.attrs.get("alpha", 1.0))
        beta = float(node.attrs.get("beta", 1.0))
        W = np.asarray(self.consts[bname], dtype=np.float64)
        if W.ndim != 2:
            raise ModelSpecError(f"Gemm node {name!r}: B must be 2-D, got shape {W.shape}")
        if int(node.attrs.get("transB", 0)):
            W = W.T
        W = alpha * W
        N = W.shape[1]
        bias, post = None, None
        if c:
            if self.is_const(c):
                vec = self._channel_vector(self.consts[c], N, 1, 2)
                if vec is not None:
                    bias = beta * vec
                else:
                    post = self.new_const(f"{name}/C", beta * np.asarray(self.consts[c], np.float64))
            else:
                post = c
                if beta != 1.0:
                    raise ModelSpecError(f"Gemm node {name!r}: a dynamic C with beta != 1 is not "
                                         "supported")
        W = np.array(W)
        out = node.outputs[0]

        def cols(scale):
            nonlocal W
            if scale is not None:
                W = W * scale[None, :]
            return W.shape[1]

        if not post:
            out, bias = self.fuse_following(out, cols, bias, 1, 2, True)
        mid = out + "/gemm" if post else out
        idx = self.add_layer(name, "gemm", W, np.max(np.abs(W)) if W.size else 0.0, bias)
        self.ops.append(_AnalogDense("Gemm", name, [a], [mid], idx,
                                     swap_in=bool(int(node.attrs.get("transA", 0)))))
        if post:
            self.ops.append(_Binary("Add", name + "/C", [mid, post], [out]))

    def build_matmul(self, i, node, name):
        a, b = node.inputs[0], node.inputs[1]
        ca, cb = self.is_const(a), self.is_const(b)
        if not ca and not cb:
            raise ModelSpecError(
                f"MatMul node {name!r}: neither operand ({a!r}, {b!r}) is an initializer; an "
                f"analog layer needs a constant weight matrix (dynamic weights, e.g. attention "
                f"scores, are not supported)")
        wname, xname = (b, a) if cb else (a, b)
        W = np.asarray(self.consts[wname], dtype=np.float64)
        if W.ndim != 2:
            raise ModelSpecError(
                f"MatMul node {name!r}: the constant operand {wname!r} has shape {W.shape}; only 2-D "
                f"weight matrices can be mapped to a crossbar")
        left = not cb
        if left:
            W = W.T  # y^T = x^T @ W^T
        W = np.array(W)
        out = node.outputs[0]
        bias = None

        def cols(scale):
            nonlocal W
            if scale is not None:
                W = W * scale[None, :]
            return W.shape[1]

        if not left:
            r = self.ranks.get(out)
            out, bias = self.fuse_following(out, cols, bias, 1, r, r == 2)
        idx = self.add_layer(name, "matmul", W, np.max(np.abs(W)) if W.size else 0.0, bias)
        self.ops.append(_AnalogDense("MatMul", name, [xname], [out], idx, swap_in=left,
                                     swap_out=left))

    def build_conv(self, i, node, name):
        x, wname = node.inputs[0], node.inputs[1]
        bname = node.inputs[2] if len(node.inputs) > 2 else ""
        if not self.is_const(wname):
            raise ModelSpecError(
                f"Conv node {name!r}: its weight ({wname!r}) is computed at run time, not an "
                f"initializer (dynamic weights are not supported on an analog crossbar)")
        if bname and not self.is_const(bname):
            raise ModelSpecError(f"Conv node {name!r}: its bias ({bname!r}) must be an initializer")
        W = np.array(self.consts[wname], dtype=np.float64)
        nd = W.ndim - 2
        if nd not in (1, 2):
            raise ModelSpecError(
                f"Conv node {name!r}: {nd}-D convolutions are not supported (1-D and 2-D are); "
                f"weight shape {W.shape}")
        group = int(node.attrs.get("group", 1))
        O, cg = W.shape[:2]
        if O % group:
            raise ModelSpecError(f"Conv node {name!r}: {O} output channels not divisible by "
                                 f"group={group}")
        ks = node.attrs.get("kernel_shape")
        if ks is not None and tuple(int(k) for k in ks) != W.shape[2:]:
            raise ModelSpecError(f"Conv node {name!r}: kernel_shape {tuple(ks)} does not match the "
                                 f"weight shape {W.shape}")
        win = _Window(name, nd, W.shape[2:], node.attrs.get("strides"), node.attrs.get("pads"),
                      node.attrs.get("dilations"), _attr_str(node.attrs.get("auto_pad", "NOTSET")))
        bias = None if not bname else np.asarray(self.consts[bname], dtype=np.float64).reshape(-1)

        def cols(scale):
            nonlocal W
            if scale is not None:
                W = W * scale.reshape((-1,) + (1,) * (W.ndim - 1))
            return W.shape[0]

        out, bias = self.fuse_following(node.outputs[0], cols, bias, nd + 1, nd + 2, True)
        max_abs = float(np.max(np.abs(W))) if W.size else 0.0
        og = O // group
        first = len(self.layers)
        for g in range(group):
            Wg = W[g * og:(g + 1) * og].reshape(og, -1).T
            bg = None if bias is None else bias[g * og:(g + 1) * og]
            self.add_layer(name if group == 1 else f"{name}/g{g}", "conv", Wg, max_abs, bg)
        self.ops.append(_AnalogConv(name, [x], [out], first, group, cg, O, win))

    def make_op(self, node, name):
        """A non-analog op for ``node`` (also used for constant folding)."""
        t, a = node.op_type, node.attrs
        ins, outs = list(node.inputs), list(node.outputs)
        if t in ("Relu", "Sigmoid", "Tanh", "Identity"):
            return _Unary(t, name, ins[:1], outs[:1])
        if t == "LeakyRelu":
            return _Unary(t, name, ins[:1], outs[:1], alpha=a.get("alpha", 0.01))
        if t == "Dropout":
            if len(outs) > 1 and outs[1] and self.consumers.get(outs[1]):
                raise ModelSpecError(f"Dropout node {name!r}: its mask output is used; only "
                                     "inference-mode Dropout (an identity) is supported")
            return _Unary("Dropout", name, ins[:1], outs[:1])
        if t in ("Add", "Sub", "Mul", "Div"):
            return _Binary(t, name, ins[:2], outs[:1])
        if t == "Softmax":
            legacy = self.opset < 13
            return _Softmax(name, ins[:1], outs[:1], a.get("axis", 1 if legacy else -1), legacy)
        if t == "Flatten":
            if self.opset < 11 and a.get("axis", 1) < 0:
                raise ModelSpecError(f"Flatten node {name!r}: a negative axis ({a['axis']}) is valid from opset 11; "
                                     f"the model's opset is {self.opset}. Re-export with a newer opset_version.")
            return _Flatten(name, ins[:1], outs[:1], a.get("axis", 1))
        if t == "Reshape":
            if len(ins) < 2 or not self.is_const(ins[1]):
                raise ModelSpecError(
                    f"Reshape node {name!r}: its target shape is computed at run time; only a "
                    f"constant shape (initializer or Constant) is supported.  Use Flatten, or "
                    f"export with a constant shape")
            return _Reshape(name, ins[:1], outs[:1], self.consts[ins[1]], a.get("allowzero", 0))
        if t == "Transpose":
            return _Transpose(name, ins[:1], outs[:1], a.get("perm"))
        if t == "Concat":
            if "axis" not in a:
                raise ModelSpecError(f"Concat node {name!r} has no axis attribute")
            return _Concat(name, [v for v in ins if v], outs[:1], a["axis"])
        if t == "GlobalAveragePool":
            return _GlobalAveragePool(name, ins[:1], outs[:1])
        if t in ("MaxPool", "AveragePool"):
            if t == "MaxPool" and len(outs) > 1 and outs[1] and self.consumers.get(outs[1]):
                raise ModelSpecError(f"MaxPool node {name!r}: its Indices output is used, which is "
                                     "not supported")
            ks = a.get("kernel_shape")
            if ks is None:
                raise ModelSpecError(f"{t} node {name!r} has no kernel_shape")
            nd = len(ks)
            if nd not in (1, 2):
                raise ModelSpecError(f"{t} node {name!r}: {nd}-D pooling is not supported (1-D and "
                                     "2-D are)")
            win = _Window(name, nd, ks, a.get("strides"), a.get("pads"), a.get("dilations"),
                          _attr_str(a.get("auto_pad", "NOTSET")), a.get("ceil_mode", 0))
            return _Pool(t, name, ins[:1], outs[:1], win, a.get("count_include_pad", 0))
        if t == "BatchNormalization":
            if int(a.get("training_mode", 0)) or any(o and self.consumers.get(o) for o in outs[1:]):
                raise ModelSpecError(f"BatchNormalization node {name!r} is in training mode; "
                                     "export the model in eval() mode")
            if not all(self.is_const(v) for v in ins[1:5]):
                raise ModelSpecError(f"BatchNormalization node {name!r}: scale, bias, mean and "
                                     "variance must be initializers")
            scale, shift = self.bn_affine(node, name)
            sc = self.new_const(f"{name}/scale", scale)
            sh = self.new_const(f"{name}/shift", shift)
            return _ChannelAffine(name, [ins[0], sc, sh], outs[:1])
        raise _unsupported(t, name, node.domain)

    def fold(self, i, node, name):
        """Evaluate a node whose inputs are all constants (exactly, in float64)."""
        t, a = node.op_type, node.attrs
        vals = [np.asarray(self.consts[v]) if v else None for v in node.inputs]
        if t == "Gemm":
            A, Bm = vals[0].astype(np.float64), vals[1].astype(np.float64)
            A = A.T if int(a.get("transA", 0)) else A
            Bm = Bm.T if int(a.get("transB", 0)) else Bm
            y = float(a.get("alpha", 1.0)) * (A @ Bm)
            if len(vals) > 2 and vals[2] is not None:
                y = y + float(a.get("beta", 1.0)) * vals[2]
            self.consts[node.outputs[0]] = y
            return
        if t == "MatMul":
            self.consts[node.outputs[0]] = np.matmul(vals[0], vals[1])
            return
        if t == "Conv":
            raise ModelSpecError(f"Conv node {name!r}: all its inputs are constants; constant "
                                 "convolutions are not supported")
        op = self.make_op(node, name)
        ys, _ = op.forward([np.asarray(self.consts[v])[None] if v else None for v in op.inputs],
                           None)
        self.consts[node.outputs[0]] = ys[0][0]

    def constant_node(self, node, name):
        a = node.attrs
        if "value" in a:
            v = np.asarray(a["value"])
        elif "value_float" in a:
            v = np.asarray(a["value_float"], dtype=np.float64)
        elif "value_floats" in a:
            v = np.asarray(a["value_floats"], dtype=np.float64)
        elif "value_int" in a:
            v = np.asarray(a["value_int"], dtype=np.int64)
        elif "value_ints" in a:
            v = np.asarray(a["value_ints"], dtype=np.int64)
        else:
            raise ModelSpecError(f"Constant node {name!r}: only value, value_float(s) and "
                                 "value_int(s) are supported")
        self.check_finite(node.outputs[0], v, where=repr(name))
        self.consts[node.outputs[0]] = v

    def build(self) -> Network:
        for k, v in self.consts.items():
            self.check_finite(k, v)
        if self.input_name in self.consts:
            raise ModelSpecError(f"the graph input {self.input_name!r} is also an initializer")
        known = set(self.consts) | {self.input_name}
        for i, node in enumerate(self.nodes):
            if i in self.consumed:
                continue
            name = self.names[i]
            if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
                raise _unsupported(node.op_type, name, node.domain)
            for v in node.inputs:
                if v and v not in known and v not in self.consts:
                    raise ModelSpecError(
                        f"node {name!r} ({node.op_type}) reads {v!r}, which is neither the graph "
                        f"input, an initializer, nor produced by an earlier node (the graph is not "
                        f"topologically sorted, or the value is missing)")
            n_ops = len(self.ops)
            if node.op_type == "Constant":
                self.constant_node(node, name)
            elif all(not v or v in self.consts for v in node.inputs):
                self.fold(i, node, name)
            elif node.op_type == "Gemm":
                self.build_gemm(i, node, name)
            elif node.op_type == "MatMul":
                self.build_matmul(i, node, name)
            elif node.op_type == "Conv":
                self.build_conv(i, node, name)
            else:
                self.ops.append(self.make_op(node, name))
            for op in self.ops[n_ops:]:
                known.update(o for o in op.outputs if o)
            known.update(o for o in node.outputs if o)
        if self.output_name not in known:
            raise ModelSpecError(f"the graph output {self.output_name!r} is not produced by any node")
        if self.output_name in self.consts:
            raise ModelSpecError(f"the graph output {self.output_name!r} does not depend on the input")
        used = {v for op in self.ops for v in op.inputs if v}
        consts = {k: np.asarray(v)[None] for k, v in self.consts.items() if k in used}
        return Network(ops=self.ops, analog_layers=self.layers, constants=consts,
                       input_name=self.input_name, output_name=self.output_name,
                       input_shape=self.input_shape, declared_batch=self.declared_batch,
                       source=self.source)


def build_network(nodes: Sequence[GraphNode], constants: dict, *, input_name: str,
                  input_shape: Sequence, output_name: str, output_shape: Sequence | None = None,
                  value_ranks: dict | None = None, declared_batch: int | None = None,
                  opset: int = 17, classes=None, source: str = "model") -> Network:
    """Build a :class:`Network` from nodes with ONNX semantics.

    Parameters
    ----------
    nodes : sequence of GraphNode
        Topologically ordered.
    constants : dict
        Initializers (name -> array).
    input_name, input_shape
        The single graph input and its per-sample shape (no batch axis; None for unknown dims).
    output_name : str
        The single graph output.
    output_shape : sequence, optional
        Per-sample output shape when the input shape is not fully known (else it is measured by a
        forward pass on zeros).
    value_ranks : dict, optional
        ONNX rank of intermediate values (from shape inference); lets a MatMul absorb a following
        BatchNormalization.
    declared_batch : int, optional
        The batch size hard-coded in the model's input, if any (see the Reshape rule).
    opset : int
        Default-domain opset (Softmax before 13 flattens from ``axis``).
    classes : array_like, optional
        Labels of the outputs.
    """
    b = _Builder(nodes, constants, input_name, input_shape, output_name, value_ranks,
                 declared_batch, opset, source)
    net = b.build()
    net.classes = None if classes is None else np.asarray(classes)
    if all(d is not None for d in net.input_shape):
        probe = np.zeros((declared_batch or 1,) + net.input_shape)
        out, _, _, _ = net._execute(probe, None, None, False, np.float64)
        net.output_shape = tuple(out.shape[2:])
    elif output_shape is not None and all(d is not None for d in output_shape):
        net.output_shape = tuple(int(d) for d in output_shape)
    return net
