"""The executor: :class:`Network` runs the ops in order for many chips at once (forward) and
returns per-chip gradients (backward).

The backward pass is the exact gradient of the forward pass with one exception: the ``matmul``
callback is treated as the plain product ``X @ W`` of the weights actually used in the forward pass
(a straight-through estimator for any non-linearity such as ADC quantisation inside the callback):
``dX = dY @ W^T`` and ``dW = X^T @ dY``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from reliability.cim.graph.ir import Cache, Gradients, MatmulHook, _Runtime
from reliability.cim.graph.losses import margin, softmax_cross_entropy
from reliability.cim.graph.ops_analog import _AnalogConv, _AnalogDense
from reliability.errors import ModelSpecError, ReliabilityError

__all__ = ["Network"]


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
        self._fused = self._fusions()
        self._grad_values = set()
        for op in self._ops:
            self._grad_values.update(n for n in op.outputs if n)
        self._grad_values.add(input_name)

    def _fusions(self) -> dict:
        """``{i: [j, ...]}``: convolution ``i`` (2-D, one group) followed by per-sample ops ``j``
        (activations, 2-D pooling), each reading only its predecessor's output, which nothing else
        reads; or a dense layer ``i`` followed by a ReLU ``i + 1`` (bias and ReLU in one pass).  A forward without hook or cache runs such a chain block by block
        (:meth:`_AnalogConv.forward_fused`): the convolution's full output, the largest array of a
        CNN, is never written (measured on LeNet-5: see ``benchmarks/results/``)."""
        from reliability.cim.graph.ops_analog import _AnalogConv, _AnalogDense
        from reliability.cim.graph.ops_elementwise import _Unary
        from reliability.cim.graph.ops_pool import _Pool

        uses: dict = {}
        for op in self._ops:
            for n in op.inputs:
                if n:
                    uses[n] = uses.get(n, 0) + 1
        out = {}
        for i, op in enumerate(self._ops):
            if isinstance(op, _AnalogDense) and not op.swap_out and i + 1 < len(self._ops):
                val, nxt = op.outputs[0], self._ops[i + 1]
                if (val != self._output_name and uses.get(val) == 1 and getattr(nxt, "op_type", "") == "Relu"
                        and tuple(n for n in nxt.inputs if n) == (val,)):
                    out[i] = [i + 1]
                continue
            if not isinstance(op, _AnalogConv) or op.group != 1 or op.win.nd != 2:
                continue
            chain, j = [], i
            while j + 1 < len(self._ops):
                nxt, val = self._ops[j + 1], self._ops[j].outputs[0]
                if (val == self._output_name or uses.get(val) != 1 or [n for n in self._ops[j].outputs[1:] if n]
                        or tuple(n for n in nxt.inputs if n) != (val,)
                        or not (isinstance(nxt, _Unary) or (isinstance(nxt, _Pool) and nxt.win.nd == 2))):
                    break
                chain.append(j + 1)
                j += 1
            if chain:
                out[i] = chain
        return out

    # ---- info ----

    @property
    def n_outputs(self) -> int | None:
        return None if self.output_shape is None else int(math.prod(self.output_shape))

    @property
    def input_name(self) -> str:
        """The name of the graph's data input (the value the first op reads)."""
        return self._input_name

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

    def with_weights(self, weights, source: str | None = None) -> "Network":
        """A copy of this network with new clean weights, one ``(K, N)`` array per analog layer
        (e.g. after fine-tuning); biases, ops and everything else are shared.  Each layer's
        ``layer_max_abs`` is recomputed over its whole node (all groups of a grouped convolution)."""
        weights = [np.array(w, dtype=np.float64) for w in weights]
        if len(weights) != len(self.analog_layers):
            raise ModelSpecError(f"with_weights needs one array per analog layer ({len(self.analog_layers)}); "
                                 f"got {len(weights)}.")
        for layer, w in zip(self.analog_layers, weights):
            if w.shape != layer.weight.shape or not np.all(np.isfinite(w)):
                raise ModelSpecError(f"with_weights: layer {layer.name!r} needs a finite {layer.weight.shape} array; "
                                     f"got shape {w.shape}.")
        node_max = [float(np.max(np.abs(w))) for w in weights]
        for op in self._ops:
            if isinstance(op, _AnalogConv):
                m = max(node_max[op.first + g] for g in range(op.group))
                for g in range(op.group):
                    node_max[op.first + g] = m
        layers = []
        for layer, w, m in zip(self.analog_layers, weights, node_max):
            w.setflags(write=False)
            layers.append(dataclasses.replace(layer, weight=w, layer_max_abs=m))
        return Network(ops=self._ops, analog_layers=layers, constants=self._constants, input_name=self._input_name,
                       output_name=self._output_name, input_shape=self.input_shape, output_shape=self.output_shape,
                       declared_batch=self._declared_batch, classes=self.classes,
                       source=source if source is not None else self.source)

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
        x : array_like, shape (B, ...input_shape)
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
        fuse = not keep and matmul is None
        skip_to = -1
        for i, op in enumerate(self._ops):
            if i <= skip_to:
                for n in self._free_after[i]:
                    env.pop(n, None)
                continue
            xs = [env[n] if n else None for n in op.inputs]
            if not keep and matmul is None:   # (a caller's hook might keep the arrays it returns)
                rt.consumable = self._consumable(i, op, xs, env, consts)
            chain = self._fused.get(i) if fuse else None
            try:
                if chain:
                    y = op.forward_fused(xs, rt, [self._ops[j] for j in chain])
                    if y is not None:
                        skip_to = chain[-1]
                        env[self._ops[skip_to].outputs[0]] = y
                        for n in self._free_after[i]:
                            env.pop(n, None)
                        continue
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
        x : array_like, shape (B, ...input_shape)
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


# also reachable from a network (``net.margin(logits, y)``) by callers that hold only the network
Network.margin = staticmethod(margin)
