"""The analog ops: a dense product (Gemm, MatMul) and a convolution (through im2col), each one or
more :class:`~reliability.cim.graph.ir.AnalogLayer` whose product goes through the run's
``matmul`` hook; forward and the exact backward (the hook differentiated as ``X @ W``)."""

from __future__ import annotations

import numpy as np

from reliability.cim.graph.ir import _Op
from reliability.cim.graph.window import _pad_nhwc
from reliability.errors import ModelSpecError


#: Bytes of im2col columns built at a time by the convolution (cache-sized blocks of samples).
_COL_BYTES = 4 << 20


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


class _PostRuntime:
    """The runtime the ops fused after a convolution see: forward only, no hook."""

    keep = False
    matmul = None
    consumable = frozenset((0,))


#: activations that never decrease (``f(a) <= f(b)`` whenever ``a <= b``, in float32 too): they
#: commute with a max over a window
_MONOTONE = ("Relu", "Sigmoid", "Tanh", "Identity", "Dropout")


def _is_max_pool(op) -> bool:
    return getattr(op, "op_type", "") == "MaxPool"


def _pool_first(post: list) -> list:
    """``post`` with a non-decreasing activation followed by a MaxPool swapped: the pool then the
    activation give the same numbers (``f(max a) = max f(a)``) on a quarter of the values."""
    post = list(post)
    if (len(post) >= 2 and _is_max_pool(post[1])
            and (getattr(post[0], "op_type", "") in _MONOTONE
                 or (getattr(post[0], "op_type", "") == "LeakyRelu" and post[0].alpha >= 0))):
        post[0], post[1] = post[1], post[0]
    return post


class _AnalogDense(_Op):
    """Gemm/MatMul with a constant weight: ``y = x @ W + b`` over the last axis.

    ``swap_in`` transposes the last two axes of the input first (Gemm ``transA``, or a MatMul with
    the weight on the left); ``swap_out`` transposes them back afterwards (weight on the left).
    """

    def __init__(self, op_type, name, inputs, outputs, index, swap_in=False, swap_out=False):
        self.op_type, self.name, self.inputs, self.outputs = op_type, name, tuple(inputs), tuple(outputs)
        self.index, self.swap_in, self.swap_out = index, swap_in, swap_out

    def forward(self, xs, rt, relu: bool = False):
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
        Y = rt.add_bias(self.index, rt.product(self.index, X), relu)
        y = Y.reshape((Y.shape[0],) + lead + (Y.shape[-1],))
        if self.swap_out:
            y = np.swapaxes(y, -1, -2)
        return [y], (X, rt.weights[self.index], lead)

    def forward_fused(self, xs, rt, post):
        """Forward followed by a ReLU (``post``), applied with the bias in one pass over the
        output; the same float32 numbers as the ops one by one."""
        if len(post) != 1 or getattr(post[0], "op_type", "") != "Relu" or self.swap_out:
            return None
        return self.forward(xs, rt, relu=True)[0][0]

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

    def forward_fused(self, xs, rt, post):
        """Forward followed by ``post`` (per-sample ops: activations and pooling, each reading the
        previous one's output), applied block by block while the block's convolution output is in
        cache: the full-size convolution output is never written.  The same float32 operations as
        running the ops one by one, so the same numbers; forward only, no hook, one group."""
        x4 = self.win.to4(xs[0])
        H, W = x4.shape[-2:]
        if x4.shape[2] != self.cg * self.group:
            return None
        geo = self.win.geometry(H, W)
        v = self.win.windows_nhwc(_pad_nhwc(x4, geo), geo)
        ws = [rt.weights[self.first + g] for g in range(self.group)]
        return self._forward_direct(v, ws, rt, post)

    def _forward_direct(self, v, ws, rt, post=()):
        s, B, oh, ow, kh, kw, _ = v.shape
        cg, G, O = self.cg, self.group, self.out_channels
        og = O // G
        L = oh * ow
        dtype = v.dtype
        S = max([s] + [w.shape[0] for w in ws if w.ndim == 3])
        shared = s == 1 and S > 1  # one set of columns for every chip: a single wide product
        if post:
            return self._forward_post(v, ws, rt, post, S, shared)
        Y = np.empty((B * L, S, O) if shared else (S, B * L, O), dtype=dtype)
        nb = self._block(oh, ow, dtype.itemsize)
        buf = np.empty((min(nb, B), oh, ow, kh, kw, cg), dtype=dtype)
        for g in range(G):
            vg = v[..., g * cg:(g + 1) * cg] if G > 1 else v
            Wk, b_g = self._kernel_and_bias(ws, rt, g, S, shared, ow)
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

    def _kernel_and_bias(self, ws, rt, g, S, shared, ow):
        """Group ``g``'s weight rows in (kh, kw, C) order (with a shared input: one ``(K', S * og)``
        matrix, chip-major columns) and its bias tiled over a row of pixels (and chips), for long
        contiguous adds."""
        Wk = self._to_hwc(ws[g])
        if shared:
            Wk = np.broadcast_to(Wk, (S,) + Wk.shape[-2:]).transpose(1, 0, 2).reshape(Wk.shape[-2], -1)
        b = rt.biases[self.first + g]
        return Wk, (None if b is None else np.tile(b, ow * (S if shared else 1)))

    def _forward_post(self, v, ws, rt, post, S, shared):
        """:meth:`_forward_direct` for one group with ``post`` applied to each block of samples; the
        result is channels-last in memory, chip-major."""
        s, B, oh, ow, kh, kw, _ = v.shape
        O, L, dtype = self.out_channels, oh * ow, v.dtype
        nb = self._block(oh, ow, dtype.itemsize)
        buf = np.empty((min(nb, B), oh, ow, kh, kw, self.cg), dtype=dtype)
        tb = np.empty((min(nb, B) * L, S * O if shared else O), dtype=dtype)
        Wk, b = self._kernel_and_bias(ws, rt, 0, S, shared, ow)
        post = _pool_first(post)
        late_bias = None        # the bias after a leading MaxPool: max(a + c) = max(a) + c exactly
        if b is not None and post and _is_max_pool(post[0]):
            late_bias, b = rt.biases[self.first].reshape(1, 1, O, 1, 1), None
        sub = _PostRuntime()
        Z = None
        for si in range(s):
            w = Wk if (shared or Wk.ndim == 2) else Wk[si]
            for a in range(0, B, nb):
                n = min(nb, B - a)
                cols = buf[:n]
                np.copyto(cols, v[si, a:a + n])
                t = tb[:n * L]
                np.matmul(cols.reshape(n * L, -1), w, out=t)
                if b is not None:
                    t.reshape(n * oh, -1)[...] += b
                # the block as the ops see it: (chips, samples, O, oh, ow), channels-last in memory
                y = (t.reshape(n, oh, ow, S, O).transpose(3, 0, 4, 1, 2) if shared
                     else t.reshape(1, n, oh, ow, O).transpose(0, 1, 4, 2, 3))
                for k, op in enumerate(post):   # every array here is this block's scratch: ops may overwrite it
                    y = op.forward([y], sub)[0][0]
                    if k == 0 and late_bias is not None:
                        y += late_bias
                if Z is None:   # chip-major channels-last: what the next convolution reads without a copy
                    c, ph, pw = y.shape[2:]
                    Z = np.empty((S, B, ph, pw, c), dtype=y.dtype).transpose(0, 1, 4, 2, 3)
                np.copyto(Z[:, a:a + n] if shared else Z[si:si + 1, a:a + n], y)
        return Z

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
