"""Pooling ops: MaxPool and AveragePool over sliding windows (1-D and 2-D), and GlobalAveragePool."""

from __future__ import annotations

import math

import numpy as np

from reliability.cim.graph.ir import _Op
from reliability.cim.graph.window import _alloc, _axis_order, _relayout, _Window


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
