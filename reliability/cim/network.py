"""Network IR and the batched (many chips at once) numpy executor, forward and backward.

A :class:`Network` is a topologically ordered list of small ops over named values.  Every value
carries a leading **chip axis**: an activation of ONNX shape ``(B, ...)`` is stored as
``(S, B, ...)`` where ``S`` is 1 until the first analog layer broadcasts it against per-chip
weights.  Constants are stored as ``(1, *onnx_shape)``.

Every analog matrix product (Gemm, MatMul, and Conv through im2col) is an :class:`AnalogLayer`
whose weight is a ``(K, N)`` matrix in ``y = x @ W`` orientation.  At run time the weights may be
replaced per chip (``(S, K, N)``), and the product itself goes through an optional callback
``matmul(layer, X, W) -> Y`` (``X``: ``(S or 1, M, K)``, ``W``: ``(K, N)`` or ``(S, K, N)``, ``Y``:
``(S, M, N)``), where the crossbar layer applies DAC/ADC per tile.  The executor adds the layer's
digital bias after the callback; biases are never noisy.

The backward pass is the exact gradient of the forward pass with one exception: the ``matmul``
callback is treated as the plain product ``X @ W`` of the weights actually used in the forward pass
(a straight-through estimator for any non-linearity such as ADC quantisation inside the callback):
``dX = dY @ W^T`` and ``dW = X^T @ dY``.

Networks are made by :func:`build_network` from generic :class:`GraphNode` lists with ONNX op
semantics; the importers (:mod:`reliability.cim.importers`) produce those lists from ONNX files,
scikit-learn estimators and ``.npz`` layer files.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import expit

from reliability.errors import ModelSpecError, ReliabilityError

__all__ = [
    "AnalogLayer", "Network", "Cache", "Gradients", "GraphNode", "build_network", "margin",
    "softmax_cross_entropy", "SUPPORTED_OPS",
]

#: ONNX op types the executor supports (default domain).
SUPPORTED_OPS = (
    "Add", "AveragePool", "BatchNormalization", "Concat", "Constant", "Conv", "Div", "Dropout",
    "Flatten", "Gemm", "GlobalAveragePool", "Identity", "LeakyRelu", "MatMul", "MaxPool", "Mul",
    "Relu", "Reshape", "Sigmoid", "Softmax", "Sub", "Tanh", "Transpose",
)

MatmulHook = Callable[["AnalogLayer", np.ndarray, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------
# public data types


@dataclass(frozen=True, eq=False)
class AnalogLayer:
    """One analog matrix product of the network (one crossbar-mapped weight matrix).

    Attributes
    ----------
    index : int
        Position in :attr:`Network.analog_layers`.
    name : str
        Node name (``"/g{k}"`` appended for group ``k`` of a grouped convolution).
    kind : str
        ``"gemm"``, ``"matmul"`` or ``"conv"``.
    weight : ndarray, shape (K, N), float64
        The clean weight matrix in ``y = x @ W`` orientation (read-only).  Gemm's ``alpha`` and a
        folded BatchNormalization are already included.  For a convolution ``K = C_g*kh*kw`` (rows
        ordered channel, kernel row, kernel column, like ``W.reshape(O, -1)``) and ``N`` is the
        number of output channels of the group.
    layer_max_abs : float
        ``max |W|`` over the whole original node (all groups of a grouped convolution).
    bias : ndarray, shape (N,), or None
        Digital bias added by the executor after the analog product (never noisy).
    """

    index: int
    name: str
    kind: str
    weight: np.ndarray
    layer_max_abs: float
    bias: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        """``(K, N)``."""
        return self.weight.shape

    def __repr__(self) -> str:
        b = "bias" if self.bias is not None else "no bias"
        return (f"AnalogLayer({self.index}, {self.name!r}, {self.kind}, K={self.weight.shape[0]}, "
                f"N={self.weight.shape[1]}, max|W|={self.layer_max_abs:.4g}, {b})")


@dataclass(frozen=True, eq=False)
class Cache:
    """What :meth:`Network.forward` (``keep=True``) keeps for :meth:`Network.backward`."""

    saved: tuple
    n_chips: int
    batch: int
    dtype: np.dtype
    output_shape: tuple
    input_shape: tuple
    weights: tuple


@dataclass(frozen=True, eq=False)
class Gradients:
    """Per-chip gradients from :meth:`Network.backward`.

    Attributes
    ----------
    weights : list of ndarray
        ``dL/dW`` per analog layer, shape ``(S, K, N)``, summed over the batch.
    inputs : ndarray or None
        ``dL/dx``, shape ``(S, B, *input_shape)`` (None when not requested).
    """

    weights: list
    inputs: np.ndarray


@dataclass
class GraphNode:
    """A node with ONNX semantics, the input of :func:`build_network`.

    ``inputs``/``outputs`` are value names (``""`` for an absent optional input); ``attrs`` holds
    plain Python values (ints, floats, strings, lists, numpy arrays).
    """

    op_type: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    domain: str = ""


# --------------------------------------------------------------------------------------------
# runtime


class _Runtime:
    """Per-call state: dtype, weights in use, hook, batch size, weight gradients."""

    def __init__(self, dtype, layers=(), weights=(), biases=(), matmul=None, batch=None,
                 declared_batch=None, keep=False):
        self.dtype = dtype
        self.keep = keep
        self.layers = layers
        self.weights = weights
        self.biases = biases
        self.matmul = matmul
        self.batch = batch
        self.declared_batch = declared_batch
        self.dW: list = [None] * len(layers)
        self.consumable: frozenset = frozenset()   # input positions the current op may overwrite

    def product(self, index: int, X: np.ndarray) -> np.ndarray:
        """The analog product of layer ``index`` (through the hook), without bias."""
        W = self.weights[index]
        if self.matmul is None:
            if W.ndim == 2:
                s, m, k = X.shape
                return (X.reshape(s * m, k) @ W).reshape(s, m, W.shape[1])
            return np.matmul(X, W)
        layer = self.layers[index]
        Y = np.asarray(self.matmul(layer, X, W))
        n = W.shape[-1]
        if Y.ndim != 3 or Y.shape[1:] != (X.shape[1], n):
            raise ModelSpecError(
                f"the matmul callback returned shape {Y.shape} for layer {layer.name!r}; it must "
                f"return (S, M, N) = (S, {X.shape[1]}, {n}) for X of shape {X.shape} and W of "
                f"shape {W.shape}")
        return Y

    def add_bias(self, index: int, Y: np.ndarray) -> np.ndarray:
        b = self.biases[index]
        if b is None:
            return Y
        if self.matmul is None and Y.dtype == b.dtype:
            Y += b          # Y is our own fresh matmul result
            return Y
        return Y + b


def _weight_grad(X: np.ndarray, dY: np.ndarray) -> np.ndarray:
    """``X^T @ dY`` per chip: X (s, M, K), dY (S, M, N) -> (S, K, N)."""
    if X.shape[0] == 1 and dY.shape[0] > 1:
        s, m, n = dY.shape
        # one big GEMM: (K, M) @ (M, S*N)
        g = X[0].T @ dY.transpose(1, 0, 2).reshape(m, s * n)
        return g.reshape(X.shape[2], s, n).transpose(1, 0, 2)
    return np.matmul(X.transpose(0, 2, 1), dY)


def _input_grad(dY: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``dY @ W^T``: dY (S, M, N), W (K, N) or (S, K, N) -> (S, M, K)."""
    if W.ndim == 2:
        s, m, n = dY.shape
        return (dY.reshape(s * m, n) @ W.T).reshape(s, m, W.shape[0])
    return np.matmul(dY, W.transpose(0, 2, 1))


# --------------------------------------------------------------------------------------------
# ops


class _Op(ABC):
    op_type = ""
    name = ""
    inputs: tuple = ()
    outputs: tuple = ()

    @abstractmethod
    def forward(self, xs, rt):
        """Return ``(list of outputs, saved state for backward)``."""

    @abstractmethod
    def backward(self, saved, gy, need, rt):
        """Return the list of input gradients (None where not needed)."""

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}: {list(self.inputs)} -> {list(self.outputs)})"


def _onnx_axis(axis: int) -> int:
    """ONNX axis -> numpy axis of an array with a leading chip axis."""
    return axis + 1 if axis >= 0 else axis


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


class _Binary(_Op):
    def __init__(self, op_type, name, inputs, outputs):
        self.op_type, self.name, self.inputs, self.outputs = op_type, name, tuple(inputs), tuple(outputs)

    def forward(self, xs, rt):
        a, b = xs
        rank = max(a.ndim, b.ndim) - 1
        a2, b2 = _align(a, rank), _align(b, rank)
        t = self.op_type
        if t == "Add":
            y = a2 + b2
        elif t == "Sub":
            y = a2 - b2
        elif t == "Mul":
            y = a2 * b2
        else:
            y = a2 / b2
        return [y], (a2, b2, a.shape, b.shape)

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


class _GlobalAveragePool(_Op):
    op_type = "GlobalAveragePool"

    def __init__(self, name, inputs, outputs):
        self.name, self.inputs, self.outputs = name, tuple(inputs), tuple(outputs)

    def forward(self, xs, rt):
        x = xs[0]
        axes = tuple(range(3, x.ndim))
        return [x.mean(axis=axes, keepdims=True)], x.shape

    def backward(self, saved, gy, need, rt):
        n = math.prod(saved[3:])
        return [np.broadcast_to(gy / n, (gy.shape[0],) + saved[1:]).copy()]


# ---- sliding windows (Conv, MaxPool, AveragePool) -------------------------------------------


def _spatial(name, size, k, s, d, pb, pe, auto_pad, ceil_mode=False):
    """Output size, begin/end pads and extra ceil-mode end padding along one spatial axis."""
    ek = (k - 1) * d + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-size // s)
        total = max(0, (out - 1) * s + ek - size)
        small, big = total // 2, total - total // 2
        pb, pe = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad == "VALID":
        pb = pe = 0
    num = size + pb + pe - ek
    if num < 0:
        raise ModelSpecError(
            f"node {name!r}: a spatial input of size {size} (padded {size + pb + pe}) is smaller than "
            f"the (dilated) kernel of size {ek}; check the input shape")
    if ceil_mode:
        out = -(-num // s) + 1
        if (out - 1) * s >= size + pb:
            out -= 1
    else:
        out = num // s + 1
    extra = max(0, (out - 1) * s + ek - (size + pb + pe))
    return out, pb, pe, extra


class _Window:
    """Geometry of a 1-D or 2-D sliding window (1-D is run as 2-D with height 1)."""

    def __init__(self, name, nd, kernel, strides, pads, dilations, auto_pad, ceil_mode=False):
        self.name, self.nd = name, nd
        self.kernel = tuple(int(v) for v in kernel)
        self.strides = tuple(int(v) for v in (strides or (1,) * nd))
        self.dilations = tuple(int(v) for v in (dilations or (1,) * nd))
        pads = tuple(int(v) for v in (pads or (0,) * (2 * nd)))
        self.pads = pads
        self.auto_pad = (auto_pad or "NOTSET")
        if isinstance(self.auto_pad, bytes):
            self.auto_pad = self.auto_pad.decode()
        if self.auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
            raise ModelSpecError(f"node {name!r}: unknown auto_pad {self.auto_pad!r}")
        self.ceil_mode = bool(ceil_mode)
        if nd == 1:
            self.k2 = (1,) + self.kernel
            self.s2 = (1,) + self.strides
            self.d2 = (1,) + self.dilations
            self.p2 = (0, pads[0], 0, pads[1])
        else:
            self.k2, self.s2, self.d2, self.p2 = self.kernel, self.strides, self.dilations, pads

    def geometry(self, H, W):
        """((Ho, Wo), (top, left, bottom, right) pads, (extra_h, extra_w))."""
        ap_h = self.auto_pad if self.nd == 2 else "NOTSET"  # 1-D runs with a dummy height of 1
        oh, pt, pb, eh = _spatial(self.name, H, self.k2[0], self.s2[0], self.d2[0], self.p2[0],
                                  self.p2[2], ap_h, self.ceil_mode)
        ow, pl, pr, ew = _spatial(self.name, W, self.k2[1], self.s2[1], self.d2[1], self.p2[1],
                                  self.p2[3], self.auto_pad, self.ceil_mode)
        return (oh, ow), (pt, pl, pb, pr), (eh, ew)

    def to4(self, x):
        """(s, B, C, *spatial) -> (s, B, C, H, W)."""
        if x.ndim != 3 + self.nd:
            raise ModelSpecError(
                f"node {self.name!r}: expected an input of rank {2 + self.nd} (B, C, "
                f"{'L' if self.nd == 1 else 'H, W'}), got shape {x.shape[1:]}")
        return x[:, :, :, None, :] if self.nd == 1 else x

    def from4(self, y):
        return y[:, :, :, 0, :] if self.nd == 1 else y

    def pad(self, x4, geo, value):
        (_, _), (pt, pl, pb, pr), (eh, ew) = geo
        if pt or pl or pb or pr or eh or ew:
            H, W = x4.shape[-2:]
            shape = x4.shape[:-2] + (H + pt + pb + eh, W + pl + pr + ew)
            xp = _alloc(shape, _axis_order(x4), x4.dtype)  # keeps the memory layout of x4
            xp.fill(value)
            xp[..., pt:pt + H, pl:pl + W] = x4
            return xp
        return x4

    def windows(self, xp, geo):
        """(..., Hp, Wp) -> view (..., Ho, Wo, kh, kw)."""
        (oh, ow), _, _ = geo
        (kh, kw), (sh, sw), (dh, dw) = self.k2, self.s2, self.d2
        v = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(-2, -1))
        return v[..., :(oh - 1) * sh + 1:sh, :(ow - 1) * sw + 1:sw, ::dh, ::dw]

    def windows_nhwc(self, xp, geo):
        """Channels-last (s, B, Hp, Wp, C) -> view (s, B, Ho, Wo, kh, kw, C)."""
        (oh, ow), _, _ = geo
        (kh, kw), (sh, sw), (dh, dw) = self.k2, self.s2, self.d2
        v = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
        v = v[:, :, :(oh - 1) * sh + 1:sh, :(ow - 1) * sw + 1:sw, :, ::dh, ::dw]
        return v.transpose(0, 1, 2, 3, 5, 6, 4)

    def offsets(self, geo):
        """(i, j, rows slice, cols slice) of every kernel position, for loops over the kernel."""
        (oh, ow), _, _ = geo
        (kh, kw), (sh, sw), (dh, dw) = self.k2, self.s2, self.d2
        return [(i, j, slice(i * dh, i * dh + (oh - 1) * sh + 1, sh),
                 slice(j * dw, j * dw + (ow - 1) * sw + 1, sw))
                for i in range(kh) for j in range(kw)]

    @staticmethod
    def crop(dxp, geo, H, W):
        _, (pt, pl, _, _), _ = geo
        return dxp[..., pt:pt + H, pl:pl + W]


def _axis_order(a):
    """The axes of ``a`` from the outermost to the innermost in memory (size-1 axes first)."""
    return tuple(sorted(range(a.ndim), key=lambda i: (a.shape[i] > 1, -abs(a.strides[i]))))


def _alloc(shape, order, dtype, zero=False):
    """An array of ``shape`` whose axes lie in memory in ``order`` (outermost first)."""
    base = (np.zeros if zero else np.empty)(tuple(shape[i] for i in order), dtype=dtype)
    return base.transpose(np.argsort(order))


def _relayout(a, order):
    """A copy of ``a`` laid out in memory in ``order``."""
    out = _alloc(a.shape, order, a.dtype)
    np.copyto(out, a)
    return out


#: Bytes of im2col columns built at a time by the convolution (cache-sized blocks of samples).
_COL_BYTES = 4 << 20


def _pad_nhwc(x4, geo):
    """(s, B, C, H, W), any strides -> zero-padded channels-last (s, B, Hp, Wp, C), contiguous."""
    _, (pt, pl, pb, pr), (eh, ew) = geo
    s, B, C, H, W = x4.shape
    xt = x4.transpose(0, 1, 3, 4, 2)
    if not (pt or pl or pb or pr or eh or ew):
        return np.ascontiguousarray(xt)
    xp = np.zeros((s, B, H + pt + pb + eh, W + pl + pr + ew, C), dtype=x4.dtype)
    xp[:, :, pt:pt + H, pl:pl + W] = xt
    return xp


class _Pool(_Op):
    def __init__(self, op_type, name, inputs, outputs, window: _Window, count_include_pad=False):
        self.op_type, self.name, self.inputs, self.outputs = op_type, name, tuple(inputs), tuple(outputs)
        self.win = window
        self.count_include_pad = bool(count_include_pad)

    def _counts(self, H, W, geo, dtype):
        (oh, ow), (pt, pl, pb, pr), (eh, ew) = geo
        if self.count_include_pad:
            m = np.ones((H + pt + pb, W + pl + pr), dtype=dtype)
            m = np.pad(m, ((0, eh), (0, ew)))
        else:
            m = np.pad(np.ones((H, W), dtype=dtype), ((pt, pb + eh), (pl, pr + ew)))
        return self.win.windows(m, geo).sum(axis=(-2, -1))

    def forward(self, xs, rt):
        x4 = self.win.to4(xs[0])
        H, W = x4.shape[-2:]
        geo = self.win.geometry(H, W)
        # loops over the kernel positions, each a vectorised op over (S, B, C, Ho, Wo): much
        # faster than reducing the small trailing axes of a sliding-window view.  The output (and
        # the gradient in backward) keep the input's memory layout (channels-last after a conv).
        offs = self.win.offsets(geo)
        order = _axis_order(x4)
        if self.op_type == "MaxPool":
            xp = self.win.pad(x4, geo, -np.inf)
            y = self._separable_max(xp, geo, order)
            if rt is not None and rt.keep:
                saved = (self._first_argmax(xp, y, offs, order), xp.shape, geo, H, W, order)
            else:
                saved = None
        else:
            xp = self.win.pad(x4, geo, 0)
            sls = [xp[..., rs, cs] for _, _, rs, cs in offs]
            y = _alloc(sls[0].shape, order, x4.dtype)
            np.copyto(y, sls[0])
            for sl in sls[1:]:
                y += sl
            cnt = self._counts(H, W, geo, x4.dtype)
            y /= cnt
            saved = (cnt, xp.shape, geo, H, W, order)
        return [self.win.from4(y)], saved

    def _separable_max(self, xp, geo, order):
        """Max over each window as a max over its rows, then over its columns (the same values as
        the max over all kernel positions, in fewer and more contiguous passes)."""
        (oh, ow), _, _ = geo
        (kh, kw), (sh, sw), (dh, dw) = self.win.k2, self.win.s2, self.win.d2
        rows = [xp[..., i * dh:i * dh + (oh - 1) * sh + 1:sh, :] for i in range(kh)]
        t = rows[0] if kh == 1 else np.maximum(rows[0], rows[1])
        for r in rows[2:]:
            np.maximum(t, r, out=t)
        cols = [t[..., j * dw:j * dw + (ow - 1) * sw + 1:sw] for j in range(kw)]
        y = _alloc(cols[0].shape, order, xp.dtype)
        if kw == 1:
            np.copyto(y, cols[0])
        else:
            np.maximum(cols[0], cols[1], out=y)
        for c in cols[2:]:
            np.maximum(y, c, out=y)
        return y

    @staticmethod
    def _first_argmax(xp, y, offs, order):
        """Index (into ``offs``) of the first kernel position holding each window's maximum ``y``,
        like argmax; bool/int arithmetic only (masked numpy copies are slow).  A window whose
        maximum is NaN gets 0."""
        dt = np.int8 if len(offs) <= 127 else np.int32
        arg = _alloc(y.shape, order, dt, zero=True)
        found = _alloc(y.shape, order, bool)
        hit = _alloc(y.shape, order, bool)
        tmp = _alloc(y.shape, order, dt)
        _, _, rs, cs = offs[0]
        np.equal(xp[..., rs, cs], y, out=found)
        for k, (_, _, rs, cs) in enumerate(offs[1:], start=1):
            np.equal(xp[..., rs, cs], y, out=hit)
            np.greater(hit, found, out=hit)          # a maximum here and at no earlier position
            np.logical_or(found, hit, out=found)
            np.multiply(hit, dt(k), out=tmp)
            arg += tmp
        return arg

    def _disjoint(self):
        """Whether no two windows overlap (every input position is in at most one window)."""
        return all(s >= (k - 1) * d + 1 for s, k, d in zip(self.win.s2, self.win.k2, self.win.d2))

    def backward(self, saved, gy, need, rt):
        g4 = self.win.to4(gy)
        if self.op_type == "MaxPool":
            arg, pshape, geo, H, W, order = saved
            S = max(g4.shape[0], arg.shape[0])
            dxp = _alloc((S,) + tuple(pshape[1:]), order, g4.dtype, zero=True)
            if _axis_order(g4) != _axis_order(arg):  # one pass to the layout of arg and dxp
                g4 = _relayout(g4, order)
            hit = np.empty_like(arg, dtype=bool)
            # g * hit is g where hit, else 0, for finite g (masked copies are slow)
            finite = bool(np.isfinite(g4).all())
            disjoint = self._disjoint()
            for k, (_, _, rs, cs) in enumerate(self.win.offsets(geo)):
                np.equal(arg, k, out=hit)
                dst = dxp[..., rs, cs]
                if not finite:
                    dst += np.where(hit, g4, 0)
                elif disjoint:  # each position is written by one window at most
                    np.multiply(g4, hit, out=dst)
                else:
                    dst += g4 * hit
        else:
            cnt, pshape, geo, H, W, order = saved
            d = g4 / cnt
            dxp = _alloc((g4.shape[0],) + tuple(pshape[1:]), order, g4.dtype, zero=True)
            for _, _, rs, cs in self.win.offsets(geo):
                dxp[..., rs, cs] += d
        return [self.win.from4(self.win.crop(dxp, geo, H, W))]


# ---- analog ops ---------------------------------------------------------------------------


class _AnalogDense(_Op):
    """Gemm/MatMul with a constant weight: ``y = x @ W + b`` over the last axis.

    ``swap_in`` transposes the last two axes of the input first (Gemm ``transA``, or a MatMul with
    the weight on the left); ``swap_out`` transposes them back afterwards (weight on the left).
    """

    def __init__(self, op_type, name, inputs, outputs, index, swap_in=False, swap_out=False):
        self.op_type, self.name, self.inputs, self.outputs = op_type, name, tuple(inputs), tuple(outputs)
        self.index, self.swap_in, self.swap_out = index, swap_in, swap_out

    def forward(self, xs, rt):
        x = xs[0]
        if self.swap_in:
            if x.ndim < 3:
                raise ModelSpecError(f"node {self.name!r}: input of rank {x.ndim - 1} cannot be "
                                     "transposed; rank >= 2 expected")
            x = np.swapaxes(x, -1, -2)
        K = rt.weights[self.index].shape[-2]
        if x.shape[-1] != K:
            raise ModelSpecError(
                f"node {self.name!r} ({self.op_type}): the input has {x.shape[-1]} features on its "
                f"last axis (shape {x.shape[1:]}) but the weight matrix has {K} rows")
        lead = x.shape[1:-1]
        X = x.reshape(x.shape[0], -1, K)
        Y = rt.product(self.index, X)
        Y = rt.add_bias(self.index, Y)
        y = Y.reshape((Y.shape[0],) + lead + (Y.shape[-1],))
        if self.swap_out:
            y = np.swapaxes(y, -1, -2)
        return [y], (X, rt.weights[self.index], lead)

    def backward(self, saved, gy, need, rt):
        X, W, lead = saved
        if self.swap_out:
            gy = np.swapaxes(gy, -1, -2)
        dY = gy.reshape(gy.shape[0], -1, gy.shape[-1])
        rt.dW[self.index] = _weight_grad(X, dY)
        if not need[0]:
            return [None]
        dX = _input_grad(dY, W)
        dx = dX.reshape((dX.shape[0],) + lead + (X.shape[-1],))
        if self.swap_in:
            dx = np.swapaxes(dx, -1, -2)
        return [dx]


class _AnalogConv(_Op):
    """Convolution through im2col; group ``g`` is analog layer ``first + g``.

    The input is copied once into a zero-padded channels-last array ``(s, B, Hp, Wp, C)``.
    Without a ``matmul`` hook the columns are built from its windows in ``(kh, kw, C)`` order
    (contiguous runs of ``kw*C``), a block of samples at a time (a few MB, cache-resident)
    right before their product with the weight rows permuted to that order, so the full
    ``(S, B*Ho*Wo, K)`` column matrix is never materialised.  With a hook, the hook receives the
    full columns in the weight's own ``(C, kh, kw)`` row order, as documented.  The backward pass
    rebuilds the columns block by block from the saved padded input (whichever path ran forward;
    the hook is differentiated as ``X @ W``) and returns ``dW`` in the original row order.
    """

    op_type = "Conv"

    def __init__(self, name, inputs, outputs, first, group, c_per_group, out_channels, window):
        self.name, self.inputs, self.outputs = name, tuple(inputs), tuple(outputs)
        self.first, self.group = first, group
        self.cg, self.out_channels = c_per_group, out_channels
        self.win = window

    # ---- helpers ----

    def _to_hwc(self, W):
        """Weight rows (C, kh, kw) -> (kh, kw, C) order: (..., K, N) -> (..., K, N), contiguous."""
        kh, kw = self.win.k2
        lead, n = W.shape[:-2], W.shape[-1]
        w = W.reshape(lead + (self.cg, kh, kw, n))
        return np.ascontiguousarray(np.moveaxis(w, -4, -2)).reshape(lead + (-1, n))

    def _from_hwc(self, dW):
        """Inverse of :meth:`_to_hwc`."""
        kh, kw = self.win.k2
        lead, n = dW.shape[:-2], dW.shape[-1]
        d = dW.reshape(lead + (kh, kw, self.cg, n))
        return np.ascontiguousarray(np.moveaxis(d, -2, -4)).reshape(lead + (-1, n))

    def _block(self, oh, ow, itemsize):
        """Samples per im2col block (about _COL_BYTES of columns, at least one sample)."""
        kh, kw = self.win.k2
        return max(1, _COL_BYTES // max(1, oh * ow * kh * kw * self.cg * itemsize))

    # ---- forward ----

    def forward(self, xs, rt):
        x4 = self.win.to4(xs[0])
        C, H, W = x4.shape[2:]
        if C != self.cg * self.group:
            raise ModelSpecError(
                f"Conv node {self.name!r}: the input has {C} channels (shape {xs[0].shape[1:]}) but "
                f"the weight expects {self.cg * self.group} ({self.group} group(s) of {self.cg})")
        geo = self.win.geometry(H, W)
        xp = _pad_nhwc(x4, geo)
        v = self.win.windows_nhwc(xp, geo)  # (s, B, Ho, Wo, kh, kw, C) view
        ws = [rt.weights[self.first + g] for g in range(self.group)]
        if rt.matmul is not None:
            y = self._forward_hook(v, rt)
        else:
            y = self._forward_direct(v, ws, rt)
        return [self.win.from4(y)], (xp, ws, geo, H, W)

    def _forward_hook(self, v, rt):
        B, oh, ow = v.shape[1:4]
        cg, G = self.cg, self.group
        outs = []
        for g in range(G):
            vg = v[..., g * cg:(g + 1) * cg] if G > 1 else v
            Y = rt.product(self.first + g, self._columns(vg))
            outs.append(rt.add_bias(self.first + g, Y))
        Y = outs[0] if G == 1 else np.concatenate(
            [np.broadcast_to(o, (max(o.shape[0] for o in outs),) + o.shape[1:]) for o in outs], axis=-1)
        return Y.reshape(Y.shape[0], B, oh, ow, self.out_channels).transpose(0, 1, 4, 2, 3)

    def _columns(self, vg):
        """The full im2col matrix (s, B*Ho*Wo, cg*kh*kw) in the weight's row order (C, kh, kw),
        for a hook: built in blocks of samples, each copied from the channels-last windows and
        then transposed within its rows (faster than one strided gather)."""
        s, B, oh, ow, kh, kw, cg = vg.shape
        L = oh * ow
        X = np.empty((s, B * L, cg * kh * kw), dtype=vg.dtype)
        if cg == 1:  # (kh, kw, 1) is (1, kh, kw)
            np.copyto(X.reshape(vg.shape), vg)
            return X
        nb = self._block(oh, ow, vg.dtype.itemsize)
        buf = np.empty((min(nb, B), oh, ow, kh, kw, cg), dtype=vg.dtype)
        for si in range(s):
            for a in range(0, B, nb):
                n = min(nb, B - a)
                np.copyto(buf[:n], vg[si, a:a + n])
                np.copyto(X[si, a * L:(a + n) * L].reshape(n * L, cg, kh * kw),
                          buf[:n].reshape(n * L, kh * kw, cg).transpose(0, 2, 1))
        return X

    def _forward_direct(self, v, ws, rt):
        s, B, oh, ow, kh, kw, _ = v.shape
        cg, G, O = self.cg, self.group, self.out_channels
        og = O // G
        L = oh * ow
        dtype = v.dtype
        S = max([s] + [w.shape[0] for w in ws if w.ndim == 3])
        shared = s == 1 and S > 1  # one set of columns for every chip: a single wide product
        Y = np.empty((B * L, S, O) if shared else (S, B * L, O), dtype=dtype)
        nb = self._block(oh, ow, dtype.itemsize)
        buf = np.empty((min(nb, B), oh, ow, kh, kw, cg), dtype=dtype)
        for g in range(G):
            vg = v[..., g * cg:(g + 1) * cg] if G > 1 else v
            Wk = self._to_hwc(ws[g])
            if shared:  # (K', S*og), chip-major columns
                Wk = np.broadcast_to(Wk, (S,) + Wk.shape[-2:]).transpose(1, 0, 2).reshape(Wk.shape[-2], -1)
            b_g = rt.biases[self.first + g]
            if b_g is not None:  # tiled over a row of pixels (and chips): long contiguous adds
                b_g = np.tile(b_g, ow * (S if shared else 1))
            for si in range(s):
                w = Wk if (shared or Wk.ndim == 2) else Wk[si]
                for a in range(0, B, nb):
                    n = min(nb, B - a)
                    cols = buf[:n]
                    np.copyto(cols, vg[si, a:a + n])
                    cols = cols.reshape(n * L, -1)
                    r = slice(a * L, (a + n) * L)
                    if G == 1:
                        t = Y[r].reshape(n * L, S * O) if shared else Y[si, r]
                        np.matmul(cols, w, out=t)
                    else:
                        t = cols @ w
                    if b_g is not None:
                        t.reshape(n * oh, -1)[...] += b_g
                    if G > 1 and shared:
                        Y[r, :, g * og:(g + 1) * og] = t.reshape(n * L, S, og)
                    elif G > 1:
                        Y[si, r, g * og:(g + 1) * og] = t
        if shared:  # memory (B, Ho, Wo, S, O)
            return Y.reshape(B, oh, ow, S, O).transpose(3, 0, 4, 1, 2)
        return Y.reshape(S, B, oh, ow, O).transpose(0, 1, 4, 2, 3)

    # ---- backward ----

    def backward(self, saved, gy, need, rt):
        xp, ws, geo, H, W = saved
        g4 = self.win.to4(gy)
        Sd, B, O, oh, ow = g4.shape
        s = xp.shape[0]
        kh, kw = self.win.k2
        cg, G = self.cg, self.group
        og = O // G
        L = oh * ow
        dtype = g4.dtype
        S = max([Sd, s] + [w.shape[0] for w in ws if w.ndim == 3])
        shared = s == 1 and S > 1
        v = self.win.windows_nhwc(xp, geo)                  # (s, B, Ho, Wo, kh, kw, C)
        dYv = g4.transpose(0, 1, 3, 4, 2)                   # (Sd, B, Ho, Wo, O)
        if Sd != S:
            dYv = np.broadcast_to(dYv, (S,) + dYv.shape[1:])
        dxp = np.zeros((S,) + xp.shape[1:], dtype=dtype) if need[0] else None
        offs = self.win.offsets(geo)
        nb = self._block(oh, ow, dtype.itemsize)
        buf = np.empty((min(nb, B), oh, ow, kh, kw, cg), dtype=dtype)

        def col2im(dst, dYc, wb, n, gc):
            # dst (n, Hp, Wp, C) view of dxp += the adjoint of the windows of dYc @ W^T; the
            # product is laid out (kh, kw, rows, cg) so that each kernel position's block is
            # contiguous (long contiguous runs in the scatter-add below)
            if cg == 1:
                d = wb[:, :, 0] @ dYc.T                          # (kh*kw, rows): one GEMM
            else:
                d = np.matmul(dYc, wb)                           # (kh*kw, rows, cg)
            d = d.reshape(kh, kw, n, oh, ow, cg)
            for i, j, rs, cs in offs:
                dst[:, rs, cs, gc] += d[i, j]

        for g in range(G):
            gc = slice(g * cg, (g + 1) * cg)
            go = slice(g * og, (g + 1) * og)
            vg = v[..., gc] if G > 1 else v
            Wk = self._to_hwc(ws[g])
            Wk = np.broadcast_to(Wk, (S,) + Wk.shape[-2:]) if Wk.ndim == 2 else Wk
            Kp = Wk.shape[-2]
            # (S, kh*kw, og, cg): per kernel position, the (og, cg) block of W^T
            Wb = Wk.reshape(Wk.shape[0], kh * kw, cg, og).transpose(0, 1, 3, 2)
            dW = np.zeros((Kp, S * og) if shared else (S, Kp, og), dtype=dtype)
            for a in range(0, B, nb):
                n = min(nb, B - a)
                if shared:
                    cols = buf[:n]
                    np.copyto(cols, vg[0, a:a + n])
                    cols = cols.reshape(n * L, Kp)
                    # (n, Ho, Wo, S, og) -> rows x chip-major columns
                    dYc = np.ascontiguousarray(
                        dYv[:, a:a + n, :, :, go].transpose(1, 2, 3, 0, 4)).reshape(n * L, S * og)
                    dW += cols.T @ dYc
                    if need[0]:
                        for t in range(S):
                            col2im(dxp[t, a:a + n], dYc[:, t * og:(t + 1) * og], Wb[t], n, gc)
                    continue
                for t in range(S):
                    cols = buf[:n]
                    np.copyto(cols, vg[t, a:a + n])
                    cols = cols.reshape(n * L, Kp)
                    dYc = dYv[t, a:a + n, :, :, go].reshape(n * L, og)
                    dW[t] += cols.T @ dYc
                    if need[0]:
                        col2im(dxp[t, a:a + n], dYc, Wb[t], n, gc)
            if shared:
                dW = dW.reshape(Kp, S, og).transpose(1, 0, 2)
            rt.dW[self.first + g] = self._from_hwc(dW)
        if not need[0]:
            return [None]
        _, (pt, pl, _, _), _ = geo
        dx = dxp[:, :, pt:pt + H, pl:pl + W, :].transpose(0, 1, 4, 2, 3)
        return [self.win.from4(dx)]


# --------------------------------------------------------------------------------------------
# the network


def _shape_str(shape) -> str:
    return "(B" + "".join(f", {'?' if d is None else d}" for d in shape) + ")"


class Network:
    """A trained network, runnable on many chips at once.

    Made by the importers (:func:`reliability.cim.load_model` and friends) or by
    :func:`build_network`; not constructed directly.

    Attributes
    ----------
    analog_layers : list of AnalogLayer
        The analog matrix products, in execution order.
    input_shape : tuple
        Per-sample input shape (no batch axis); ``None`` for a dimension the model leaves open.
    output_shape : tuple or None
        Per-sample shape of the model's output (flattened to ``n_outputs`` by :meth:`forward`).
    n_outputs : int or None
        Number of outputs (logits) per sample.
    classes : ndarray or None
        Class labels for output index ``i`` (scikit-learn classifiers), else None.
    source : str
        Where the network came from.
    """

    def __init__(self, *, ops, analog_layers, constants, input_name, output_name, input_shape,
                 output_shape=None, declared_batch=None, classes=None, source="model"):
        self.analog_layers = list(analog_layers)
        self.input_shape = tuple(input_shape)
        self.output_shape = None if output_shape is None else tuple(output_shape)
        self.classes = None if classes is None else np.asarray(classes)
        self.source = source
        self._ops = tuple(ops)
        self._constants = dict(constants)  # name -> (1, *shape)
        self._input_name = input_name
        self._output_name = output_name
        self._declared_batch = declared_batch
        self._dtype_cache: dict = {}
        last = {}
        for i, op in enumerate(self._ops):
            for n in op.inputs:
                if n:
                    last[n] = i
        self._free_after = [[] for _ in self._ops]
        for n, i in last.items():
            if n != output_name:
                self._free_after[i].append(n)
        self._grad_values = set()
        for op in self._ops:
            self._grad_values.update(n for n in op.outputs if n)
        self._grad_values.add(input_name)

    # ---- info ----

    @property
    def n_outputs(self) -> int | None:
        return None if self.output_shape is None else int(math.prod(self.output_shape))

    @property
    def ops(self) -> tuple:
        """The executor's ops in order (read-only view, for inspection)."""
        return self._ops

    def __repr__(self) -> str:
        return (f"Network({self.source!r}: input {_shape_str(self.input_shape)}, "
                f"{len(self._ops)} ops, {len(self.analog_layers)} analog layers, "
                f"n_outputs={self.n_outputs})")

    def summary(self) -> str:
        """One line per op and per analog layer, for people."""
        lines = [repr(self)]
        for op in self._ops:
            extra = ""
            if isinstance(op, _AnalogDense):
                extra = f"  -> {self.analog_layers[op.index]!r}"
            elif isinstance(op, _AnalogConv):
                extra = "".join(f"\n      -> {self.analog_layers[op.first + g]!r}"
                                for g in range(op.group))
            lines.append(f"  {op.op_type:<18} {op.name}{extra}")
        return "\n".join(lines)

    # ---- execution ----

    def _cached(self, dtype):
        c = self._dtype_cache.get(dtype)
        if c is None:
            consts = {k: (v.astype(dtype) if v.dtype.kind in "fiub" else v)
                      for k, v in self._constants.items()}
            ws = [layer.weight.astype(dtype) for layer in self.analog_layers]
            bs = [None if layer.bias is None else layer.bias.astype(dtype)
                  for layer in self.analog_layers]
            for a in list(consts.values()) + ws + [b for b in bs if b is not None]:
                a.setflags(write=False)
            c = self._dtype_cache[dtype] = (consts, ws, bs)
        return c

    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        exp = self.input_shape
        if x.ndim != len(exp) + 1 or any(e is not None and e != d for e, d in zip(exp, x.shape[1:])):
            got = "(B" + "".join(f", {d}" for d in x.shape[1:]) + ")" if x.ndim else "()"
            raise ModelSpecError(
                f"input has shape {got} but the model expects {_shape_str(exp)} "
                f"(B = batch); reshape the data or check that it belongs to this model")
        if x.dtype.kind not in "fiub":
            raise ModelSpecError(f"input has dtype {x.dtype}; a numeric array is required")
        return x

    def _prepare_weights(self, weights, dtype):
        consts, clean_w, biases = self._cached(dtype)
        if weights is None:
            return clean_w, biases, 1
        if len(weights) != len(self.analog_layers):
            raise ModelSpecError(
                f"weights has {len(weights)} entries but the network has "
                f"{len(self.analog_layers)} analog layers; pass one (K, N) or (S, K, N) array per "
                f"layer (None for the clean weight), or weights=None")
        out, S, S_from = [], 1, None
        for layer, w in zip(self.analog_layers, weights):
            if w is None:
                out.append(clean_w[layer.index])
                continue
            w = np.asarray(w)
            K, N = layer.weight.shape
            if w.shape == (K, N):
                pass
            elif w.ndim == 3 and w.shape[1:] == (K, N):
                if S_from is not None and w.shape[0] != S:
                    raise ModelSpecError(
                        f"weights[{layer.index}] ({layer.name!r}) has {w.shape[0]} chips but "
                        f"weights[{S_from}] has {S}; all per-chip entries need the same S")
                S, S_from = w.shape[0], layer.index
            else:
                raise ModelSpecError(
                    f"weights[{layer.index}] ({layer.name!r}) has shape {w.shape}; expected "
                    f"({K}, {N}) or (S, {K}, {N})")
            out.append(w.astype(dtype, copy=False))
        return out, biases, S

    def forward(self, x, weights=None, matmul: MatmulHook | None = None, keep: bool = False,
                dtype=np.float32):
        """Run the network on a batch for one or many chips.

        Parameters
        ----------
        x : array_like, shape (B, *input_shape)
            Inputs (the same for every chip).
        weights : list or None
            None for the clean network, or one entry per analog layer: ``(K, N)`` (shared by all
            chips), ``(S, K, N)`` (per chip; the same ``S`` for every such entry) or None (clean).
        matmul : callable, optional
            ``matmul(layer, X, W) -> Y`` replacing ``X @ W`` for every analog product; ``X`` is
            ``(S or 1, M, K)``, ``W`` is ``(K, N)`` or ``(S, K, N)`` and ``Y`` must be ``(S, M, N)``
            (or ``(1, M, N)`` when neither operand is per chip).  The bias is added afterwards.
        keep : bool
            Also return a :class:`Cache` for :meth:`backward`.
        dtype : numpy dtype
            Computation dtype (float32 by default; float64 for gradient checks).

        Returns
        -------
        out : ndarray, shape (S, B, n_outputs)
            The model's output (logits) per chip and sample.
        cache : Cache
            Only with ``keep=True``.
        """
        out, saves, ws, S = self._execute(x, weights, matmul, keep, dtype)
        B = out.shape[1]
        oshape = out.shape[2:]
        out = out.reshape(out.shape[0], B, -1)
        if out.shape[0] != S:
            out = np.broadcast_to(out, (S,) + out.shape[1:])
        out = np.ascontiguousarray(out, dtype=np.dtype(dtype))
        if not keep:
            return out
        cache = Cache(tuple(saves), S, B, np.dtype(dtype), oshape, np.shape(x)[1:], tuple(ws))
        return out, cache

    __call__ = forward

    def _execute(self, x, weights, matmul, keep, dtype):
        """Run the ops; returns the raw output value (S or 1, B, ...), saves, weights, S."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ModelSpecError(f"dtype must be a floating type, got {dtype}")
        x = self._check_input(x)
        B = x.shape[0]
        consts, _, _ = self._cached(dtype)
        ws, bs, S = self._prepare_weights(weights, dtype)
        rt = _Runtime(dtype, self.analog_layers, ws, bs, matmul, B, self._declared_batch, keep)
        env = dict(consts)
        env[self._input_name] = x.astype(dtype, copy=False)[None]
        saves = []
        for i, op in enumerate(self._ops):
            xs = [env[n] if n else None for n in op.inputs]
            if not keep and matmul is None:   # (a caller's hook might keep the arrays it returns)
                rt.consumable = self._consumable(i, op, xs, env, consts)
            try:
                ys, saved = op.forward(xs, rt)
            except ReliabilityError:
                raise
            except (ValueError, IndexError) as e:
                shapes = ", ".join(str(a.shape[1:]) for a in xs if a is not None)
                raise ModelSpecError(
                    f"node {op.name!r} ({op.op_type}) failed on inputs of shape {shapes}: {e}") from e
            for n, y in zip(op.outputs, ys):
                if n:
                    env[n] = y
            if keep:
                saves.append(saved)
            for n in self._free_after[i]:
                env.pop(n, None)
        out = env[self._output_name]
        if out.ndim < 2 or out.shape[1] != B:
            raise ModelSpecError(
                f"the model's output has shape {out.shape[1:]} for a batch of {B}; its first axis "
                f"must be the batch.  A model exported with a fixed batch size should be re-exported "
                f"with a dynamic batch axis (torch.onnx.export(..., dynamic_axes=...))")
        return out, saves, ws, S

    def _consumable(self, i, op, xs, env, consts) -> frozenset:
        """Input positions of op ``i`` whose arrays it may overwrite (forward only): values used
        for the last time, computed by an earlier op (not the input or a constant), named once by
        the op and sharing memory with no other live value (a Flatten or Reshape view, say)."""
        out = []
        for k, n in enumerate(op.inputs):
            if (not n or n not in self._free_after[i] or n in consts or n == self._input_name
                    or op.inputs.count(n) > 1):
                continue
            a = xs[k]
            if not isinstance(a, np.ndarray) or not a.flags.writeable:
                continue
            if any(m != n and isinstance(v, np.ndarray) and np.may_share_memory(a, v) for m, v in env.items()):
                continue
            out.append(k)
        return frozenset(out)

    def backward(self, cache: Cache, grad_out, input_grad: bool = True) -> Gradients:
        """Per-chip gradients of a loss with ``dL/d(out) = grad_out``.

        Parameters
        ----------
        cache : Cache
            From ``forward(..., keep=True)``.
        grad_out : array_like, shape (S, B, n_outputs)
            Gradient of the loss with respect to the output of that forward call (chip ``s``'s
            loss depends on chip ``s``'s output only).
        input_grad : bool
            Also compute ``dL/dx`` (default).  ``False`` skips the input gradient of the first
            analog layers (the costliest part for a first convolution); ``inputs`` is then None.

        Returns
        -------
        Gradients
            ``weights[i]``: ``(S, K, N)``, summed over the batch; ``inputs``: ``(S, B,
            *input_shape)``.  The ``matmul`` callback is differentiated as ``X @ W`` with the
            weights used in the forward pass (straight-through estimator for any non-linearity
            inside it, such as ADC quantisation).
        """
        if not isinstance(cache, Cache):
            raise ModelSpecError("cache must come from forward(..., keep=True)")
        S, B, dtype = cache.n_chips, cache.batch, cache.dtype
        g = np.asarray(grad_out)
        n_out = math.prod(cache.output_shape)
        if g.shape != (S, B, n_out):
            raise ModelSpecError(f"grad_out has shape {g.shape}; expected (S, B, n_outputs) = "
                                 f"({S}, {B}, {n_out})")
        rt = _Runtime(dtype, self.analog_layers, cache.weights, (), None, B, self._declared_batch)
        grads = {self._output_name: g.astype(dtype, copy=False).reshape((S, B) + cache.output_shape)}
        for op, saved in zip(reversed(self._ops), reversed(cache.saved)):
            gy = grads.pop(op.outputs[0], None)
            if gy is None:
                continue
            need = [bool(n) and n in self._grad_values and (input_grad or n != self._input_name)
                    for n in op.inputs]
            gxs = op.backward(saved, gy, need, rt)
            for n, gx, nd in zip(op.inputs, gxs, need):
                if nd and gx is not None:
                    grads[n] = grads[n] + gx if n in grads else gx
        dW = []
        for layer, w in zip(self.analog_layers, rt.dW):
            if w is None:
                w = np.zeros((S,) + layer.weight.shape, dtype=dtype)
            elif w.shape[0] != S:
                w = np.broadcast_to(w, (S,) + w.shape[1:]).copy()
            dW.append(w)
        if not input_grad:
            return Gradients(weights=dW, inputs=None)
        dx = grads.get(self._input_name)
        xshape = (S, B) + tuple(cache.input_shape)
        if dx is None:
            dx = np.zeros(xshape, dtype=dtype)
        dx = np.ascontiguousarray(np.broadcast_to(dx, xshape))
        return Gradients(weights=dW, inputs=dx)

    # ---- conveniences ----

    def accuracy_and_loss(self, x, y, weights=None, matmul: MatmulHook | None = None,
                          chunk: int | None = None, dtype=np.float32):
        """Per-chip accuracy and mean cross-entropy loss.

        Parameters
        ----------
        x : array_like, shape (B, *input_shape)
        y : array_like of int, shape (B,)
            True class index per sample (an index into the outputs).
        weights, matmul, dtype
            As in :meth:`forward`.
        chunk : int, optional
            Samples per forward call (bounds memory); all at once by default.

        Returns
        -------
        accuracy : ndarray, shape (S,)
            Fraction of samples whose argmax output equals ``y``.
        loss : ndarray, shape (S,)
            Mean softmax cross-entropy of the outputs (float64).
        """
        x = self._check_input(x)
        y = np.asarray(y)
        if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
            raise ModelSpecError(f"y must be integer class indices of shape ({x.shape[0]},); got "
                                 f"shape {y.shape}, dtype {y.dtype}")
        B = x.shape[0]
        chunk = B if chunk is None else int(chunk)
        if chunk < 1:
            raise ModelSpecError(f"chunk must be a positive integer, got {chunk}")
        correct = loss = None
        for a in range(0, B, chunk):
            logits = self.forward(x[a:a + chunk], weights, matmul, dtype=dtype)
            yy = y[a:a + chunk]
            n = logits.shape[-1]
            if yy.min() < 0 or yy.max() >= n:
                raise ModelSpecError(f"y has labels outside [0, {n}) for a model with {n} outputs; "
                                     f"pass class indices (not labels)")
            c = (logits.argmax(axis=-1) == yy).sum(axis=1)
            lo = softmax_cross_entropy(logits, yy, grad=False).sum(axis=1)
            correct = c if correct is None else correct + c
            loss = lo if loss is None else loss + lo
        return correct / B, loss / B


def margin(logits, y, grad: bool = False):
    """Logit of the true class minus the largest other logit, shape ``(S, B)``.

    Positive where the sample is classified correctly (ties count as wrong).  With ``grad=True``
    also ``dmargin/dlogits``, shape ``(S, B, C)``: +1 at the true class, -1 at the strongest wrong
    class (a subgradient where two wrong classes tie), for :meth:`Network.backward` after scaling
    by the caller's ``dloss/dmargin``.
    """
    z = np.asarray(logits)
    y = np.asarray(y)
    if z.ndim == 2:
        z = z[None]
    idx = np.broadcast_to(y[None, :, None], z.shape[:2] + (1,))
    true = np.take_along_axis(z, idx, axis=-1)[..., 0]
    other = z.copy()
    np.put_along_axis(other, idx, -np.inf, axis=-1)
    j = np.argmax(other, axis=-1)[..., None]
    m = true - np.take_along_axis(other, j, axis=-1)[..., 0]
    if not grad:
        return m
    g = np.zeros(z.shape, dtype=np.result_type(z.dtype, np.float32))
    np.put_along_axis(g, idx, 1.0, axis=-1)
    np.put_along_axis(g, j, -1.0, axis=-1)
    return m, g


Network.margin = staticmethod(margin)


def softmax_cross_entropy(logits, y, grad: bool = True):
    """Softmax cross-entropy per chip and sample, computed in float64.

    Returns ``loss`` of shape ``(S, B)`` and, with ``grad=True``, also ``dloss/dlogits`` of shape
    ``(S, B, C)`` (for :meth:`Network.backward`).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    m = z.max(axis=-1, keepdims=True)
    e = np.exp(z - m)
    se = e.sum(axis=-1, keepdims=True)
    lse = (np.log(se) + m)[..., 0]
    idx = np.broadcast_to(y[..., None], z.shape[:-1] + (1,))
    loss = lse - np.take_along_axis(z, idx, axis=-1)[..., 0]
    if not grad:
        return loss
    g = e / se
    np.put_along_axis(g, idx, np.take_along_axis(g, idx, axis=-1) - 1.0, axis=-1)
    return loss, g


# --------------------------------------------------------------------------------------------
# the builder: GraphNode lists (ONNX semantics) -> Network


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
