"""Sliding-window geometry (ONNX pads, strides, dilations, ``auto_pad``, ``ceil_mode``) shared by
Conv, MaxPool and AveragePool, and the memory-layout helpers that let an op keep its input's layout
(channels-last after a convolution)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from reliability.errors import ModelSpecError


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
