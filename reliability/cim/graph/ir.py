"""The network IR: public data types, the op interface and the per-call runtime the ops share.

Every value carries a leading **chip axis**: an activation of ONNX shape ``(B, ...)`` is stored as
``(S, B, ...)`` where ``S`` is 1 until the first analog layer broadcasts it against per-chip
weights.  Constants are stored as ``(1, *onnx_shape)``.

Every analog matrix product (Gemm, MatMul, and Conv through im2col) is an :class:`AnalogLayer`
whose weight is a ``(K, N)`` matrix in ``y = x @ W`` orientation.  At run time the weights may be
replaced per chip (``(S, K, N)``), and the product itself goes through an optional callback
``matmul(layer, X, W) -> Y`` (``X``: ``(S or 1, M, K)``, ``W``: ``(K, N)`` or ``(S, K, N)``, ``Y``:
``(S, M, N)``), where the crossbar layer applies DAC/ADC per tile (:meth:`_Runtime.product`).  The
executor adds the layer's digital bias after the callback; biases are never noisy.

An op (:class:`_Op`) reads a list of input arrays and the :class:`_Runtime`, and returns its outputs
and what its backward pass needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from reliability.cim._kernels import bias_activation
from reliability.errors import ModelSpecError

__all__ = ["AnalogLayer", "Cache", "Gradients", "GraphNode", "MatmulHook"]

#: The ``matmul`` hook: ``matmul(layer, X, W) -> Y`` (shapes in the module docstring).
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

    def add_bias(self, index: int, Y: np.ndarray, relu: bool = False) -> np.ndarray:
        """``Y`` plus layer ``index``'s bias, then ReLU if ``relu``."""
        b = self.biases[index]
        if self.matmul is None and Y.flags.c_contiguous and (b is None or b.dtype == Y.dtype):
            return bias_activation(Y, b, relu)      # our own fresh product: in place, one pass
        if b is not None:
            Y = Y + b
        return np.maximum(Y, 0) if relu else Y      # (Y may be the hook's own array: not in place)


# --------------------------------------------------------------------------------------------
# the op interface


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
