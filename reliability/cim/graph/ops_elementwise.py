"""Ops that work value by value or only move values: activations, broadcasting arithmetic,
Softmax, the shape ops (Flatten, Reshape, Transpose, Concat) and an unfolded BatchNormalization."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

from reliability.cim.graph.ir import _Op, _onnx_axis
from reliability.errors import ModelSpecError


class _Unary(_Op):
    def __init__(self, op_type, name, inputs, outputs, alpha=0.01):
        self.op_type, self.name, self.inputs, self.outputs = op_type, name, tuple(inputs), tuple(outputs)
        self.alpha = float(alpha)

    def forward(self, xs, rt):
        x = xs[0]
        t = self.op_type
        if t == "Relu":
            if 0 in getattr(rt, "consumable", ()):      # forward only, last use: overwrite
                return [np.maximum(x, 0, out=x)], None
            y = np.maximum(x, 0)
            return [y], x
        if t == "LeakyRelu":
            y = np.where(x >= 0, x, x * x.dtype.type(self.alpha))
            return [y], x
        if t == "Sigmoid":
            y = expit(x)
            return [y], y
        if t == "Tanh":
            y = np.tanh(x)
            return [y], y
        return [x], None  # Identity, Dropout

    def backward(self, saved, gy, need, rt):
        t = self.op_type
        if t == "Relu":
            if np.isfinite(gy).all():  # gy * mask == where(mask, gy, 0) here, and much faster
                return [np.multiply(gy, saved > 0)]
            return [np.where(saved > 0, gy, 0)]
        if t == "LeakyRelu":
            return [np.where(saved >= 0, gy, gy * gy.dtype.type(self.alpha))]
        if t == "Sigmoid":
            return [gy * saved * (1 - saved)]
        if t == "Tanh":
            return [gy * (1 - saved * saved)]
        return [gy]


def _align(a: np.ndarray, rank: int) -> np.ndarray:
    """Insert unit axes after the chip axis so that ``a`` has ONNX rank ``rank``."""
    r = a.ndim - 1
    if r == rank:
        return a
    return a.reshape((a.shape[0],) + (1,) * (rank - r) + a.shape[1:])


def _unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``g`` over the (non-chip) axes where ``shape`` has 1 and ``g`` does not."""
    axes = tuple(i for i in range(1, g.ndim) if shape[i] == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def arithmetic(op_type: str, a, b):
    """Add, Sub, Mul or Div of two aligned operands (numpy arrays or torch tensors alike)."""
    if op_type == "Add":
        return a + b
    if op_type == "Sub":
        return a - b
    return a * b if op_type == "Mul" else a / b


class _Binary(_Op):
    def __init__(self, op_type, name, inputs, outputs):
        self.op_type, self.name, self.inputs, self.outputs = op_type, name, tuple(inputs), tuple(outputs)

    def forward(self, xs, rt):
        a, b = xs
        rank = max(a.ndim, b.ndim) - 1
        a2, b2 = _align(a, rank), _align(b, rank)
        return [arithmetic(self.op_type, a2, b2)], (a2, b2, a.shape, b.shape)

    def backward(self, saved, gy, need, rt):
        a2, b2, sa, sb = saved
        t = self.op_type
        ga = gb = None
        if need[0]:
            ga = gy if t in ("Add", "Sub") else (gy * b2 if t == "Mul" else gy / b2)
            ga = _unbroadcast(ga, a2.shape)
            ga = ga.reshape((ga.shape[0],) + tuple(sa[1:]))
        if need[1]:
            if t == "Add":
                gb = gy
            elif t == "Sub":
                gb = -gy
            elif t == "Mul":
                gb = gy * a2
            else:
                gb = -gy * a2 / (b2 * b2)
            gb = _unbroadcast(gb, b2.shape)
            gb = gb.reshape((gb.shape[0],) + tuple(sb[1:]))
        return [ga, gb]


class _Softmax(_Op):
    op_type = "Softmax"

    def __init__(self, name, inputs, outputs, axis, legacy):
        self.name, self.inputs, self.outputs = name, tuple(inputs), tuple(outputs)
        self.axis, self.legacy = int(axis), bool(legacy)

    def _view(self, x):
        if not self.legacy:
            return x, _onnx_axis(self.axis)
        r = x.ndim - 1
        ax = self.axis if self.axis >= 0 else self.axis + r
        return x.reshape(x.shape[0], math.prod(x.shape[1:ax + 1]), -1), -1

    def forward(self, xs, rt):
        x = xs[0]
        v, ax = self._view(x)
        e = np.exp(v - v.max(axis=ax, keepdims=True))
        e /= e.sum(axis=ax, keepdims=True)
        y = e.reshape(x.shape)
        return [y], y

    def backward(self, saved, gy, need, rt):
        yv, ax = self._view(saved)
        gv, _ = self._view(gy)
        g = yv * (gv - (gv * yv).sum(axis=ax, keepdims=True))
        return [g.reshape(gy.shape)]


class _Flatten(_Op):
    op_type = "Flatten"

    def __init__(self, name, inputs, outputs, axis=1):
        self.name, self.inputs, self.outputs = name, tuple(inputs), tuple(outputs)
        self.axis = int(axis)

    def forward(self, xs, rt):
        x = xs[0]
        shp = x.shape[1:]
        ax = self.axis if self.axis >= 0 else self.axis + len(shp)
        y = x.reshape(x.shape[0], math.prod(shp[:ax]), math.prod(shp[ax:]))
        return [y], shp

    def backward(self, saved, gy, need, rt):
        return [gy.reshape((gy.shape[0],) + saved)]


class _Reshape(_Op):
    op_type = "Reshape"

    def __init__(self, name, inputs, outputs, shape, allowzero=0):
        self.name, self.inputs, self.outputs = name, tuple(inputs), tuple(outputs)
        self.shape = tuple(int(v) for v in np.asarray(shape).reshape(-1))
        self.allowzero = bool(allowzero)

    def target(self, in_shape, rt):
        tgt = list(self.shape)
        for i, v in enumerate(tgt):
            if v == 0 and not self.allowzero:
                if i >= len(in_shape):
                    raise ModelSpecError(
                        f"Reshape node {self.name!r}: shape {self.shape} copies dimension {i} (0) "
                        f"but the input has rank {len(in_shape)}")
                tgt[i] = in_shape[i]
        # a model exported with a fixed batch size (e.g. torch.onnx.export without dynamic axes)
        # often hard-codes that batch size here; treat it as the batch dimension
        if (rt is not None and rt.batch is not None and rt.declared_batch is not None and tgt
                and rt.batch != rt.declared_batch and in_shape and in_shape[0] == rt.batch
                and tgt[0] == rt.declared_batch):
            tgt[0] = rt.batch
        return tuple(tgt)

    def forward(self, xs, rt):
        x = xs[0]
        tgt = self.target(x.shape[1:], rt)
        try:
            y = x.reshape((x.shape[0],) + tgt)
        except ValueError:
            raise ModelSpecError(
                f"Reshape node {self.name!r} cannot reshape an input of shape {x.shape[1:]} to "
                f"{self.shape}") from None
        return [y], x.shape[1:]

    def backward(self, saved, gy, need, rt):
        return [gy.reshape((gy.shape[0],) + saved)]


class _Transpose(_Op):
    op_type = "Transpose"

    def __init__(self, name, inputs, outputs, perm=None):
        self.name, self.inputs, self.outputs = name, tuple(inputs), tuple(outputs)
        self.perm = None if perm is None else tuple(int(p) for p in perm)

    def forward(self, xs, rt):
        x = xs[0]
        perm = self.perm if self.perm is not None else tuple(range(x.ndim - 2, -1, -1))
        if len(perm) != x.ndim - 1:
            raise ModelSpecError(
                f"Transpose node {self.name!r}: perm {perm} does not match the input rank "
                f"{x.ndim - 1}")
        full = (0,) + tuple(p + 1 for p in perm)
        return [x.transpose(full)], full

    def backward(self, saved, gy, need, rt):
        return [gy.transpose(np.argsort(saved))]


class _Concat(_Op):
    op_type = "Concat"

    def __init__(self, name, inputs, outputs, axis):
        self.name, self.inputs, self.outputs = name, tuple(inputs), tuple(outputs)
        self.axis = int(axis)

    def forward(self, xs, rt):
        s = max(x.shape[0] for x in xs)
        ax = _onnx_axis(self.axis)
        xs2 = [x if x.shape[0] == s else np.broadcast_to(x, (s,) + x.shape[1:]) for x in xs]
        y = np.concatenate(xs2, axis=ax)
        return [y], [x.shape[ax] for x in xs]

    def backward(self, saved, gy, need, rt):
        ax = _onnx_axis(self.axis)
        return np.split(gy, np.cumsum(saved)[:-1], axis=ax)


class _ChannelAffine(_Op):
    """Inference BatchNormalization that could not be folded: ``y = x * scale + shift`` on axis 1."""

    op_type = "BatchNormalization"

    def __init__(self, name, inputs, outputs):
        self.name, self.inputs, self.outputs = name, tuple(inputs), tuple(outputs)

    @staticmethod
    def _shape(v, x):
        return v.reshape((-1,) + (1,) * (x.ndim - 3))

    def forward(self, xs, rt):
        x, sc, sh = xs
        if x.ndim < 3 or x.shape[2] != sc.size:
            raise ModelSpecError(
                f"BatchNormalization node {self.name!r}: input of shape {x.shape[1:]} does not have "
                f"{sc.size} channels on axis 1")
        sc_, sh_ = self._shape(sc, x), self._shape(sh, x)
        return [x * sc_ + sh_], sc_

    def backward(self, saved, gy, need, rt):
        return [gy * saved, None, None]
