"""Per-chip accuracy counts with the mean softmax cross-entropy, or with the margins, from
logits; and the epilogue of a dense layer (bias, then ReLU) in one pass.

``correct_and_loss(logits (S, B, C), y (B,))`` returns ``(n_correct (S,), mean loss (S,))`` with
``n_correct = sum_b [argmax_c logits[s, b] == y[b]]`` (the first maximum wins, and a NaN counts as
the maximum, as in ``np.argmax``) and the cross-entropy ``log sum_c exp(z_c - m) + m - z_y``
(``m`` the largest logit; NaN for a sample with a NaN or infinite logit).  numba transposes a
chip's logits to (classes, samples) and runs every pass along the samples; for float32 logits the
exponentials are float32 (Cephes ``expf``, within 2 float32 ulp, eight to a vector instruction),
their sum and the logarithm float64: the loss is within about 1e-6 (relative) of an all-float64
computation, the size of the float32 rounding of the logits themselves, and costs a fifth as much
(the float64 exponentials cost a third of a small network's chip).  Float64 logits keep float64
exponentials.  The chips are shared among threads (a chip's numbers do not depend on it); without
numba the numpy route (float64 throughout) gives the same counts.

``correct_and_margins(logits, y)`` gives the same counts and the margins of
:func:`reliability.cim.graph.margin`, exactly, in one pass (the scorer of the tail estimators).

``bias_activation(Y, b, relu)`` adds the bias ``b`` over the last axis of ``Y`` and applies ReLU
(``v < 0 -> 0``: NaN and -0.0 kept, as ``np.maximum(v, 0)``) in place.  numpy's broadcast add runs
one inner loop per row of a layer's output (rows of 10 to 100 values in a small network), which
costs as much as the layer's product; one compiled pass gives the same float32 numbers.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from reliability.errors import ReliabilityError

__all__ = ["correct_and_loss", "correct_and_margins", "bias_activation"]

#: logits below which the loss runs on one thread (a thread pool costs about 0.1 ms)
_THREADED = 1 << 18


def _over_chips(run, S: int, size: int) -> None:
    """``run(a, b)`` for chips ``a:b``, the chips split among the CPUs' threads when the logits are
    many (the kernels release the GIL; each chip's numbers do not depend on the split)."""
    threads = min(S, os.cpu_count() or 1)
    if threads <= 1 or size < _THREADED:
        run(0, S)
        return
    cuts = np.linspace(0, S, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda k: run(cuts[k], cuts[k + 1]), range(threads)))


def _numpy(logits, y):
    from reliability.cim.graph import softmax_cross_entropy

    correct = (np.argmax(logits, axis=-1) == y[None, :]).sum(axis=1)
    return correct.astype(np.int64), softmax_cross_entropy(logits, y, grad=False).mean(axis=1)


try:  # pragma: no cover - exercised implicitly
    from numba import njit

    from reliability.devices.fastrandom import exp32 as _exp32

    @njit(nogil=True, cache=True, error_model="numpy")
    def _kernel(z, y, f32, correct, loss):  # pragma: no cover
        S, B, C = z.shape
        # a chip's logits transposed to (classes, samples): every pass below runs along the samples
        # (vectorized) instead of along rows of a few classes
        zt = np.empty((C, B), dtype=z.dtype)
        best = np.empty(B, dtype=z.dtype)
        bi = np.zeros(B, dtype=np.int64)
        nan = np.zeros(B, dtype=np.bool_)
        e = np.empty(B, dtype=np.float32)
        tot = np.empty(B, dtype=np.float64)
        for s in range(S):
            for b in range(B):
                for c in range(C):
                    zt[c, b] = z[s, b, c]
            for b in range(B):
                best[b] = zt[0, b]
                bi[b] = 0
                nan[b] = best[b] != best[b]
                tot[b] = 0.0
            for c in range(1, C):       # the first maximum wins
                row = zt[c]
                for b in range(B):
                    v = row[b]
                    gt = v > best[b]
                    best[b] = v if gt else best[b]
                    bi[b] = c if gt else bi[b]
                    nan[b] |= v != v
            for b in range(B):          # a sample with a NaN: the first NaN is the maximum
                if nan[b]:
                    for c in range(C):
                        if zt[c, b] != zt[c, b]:
                            best[b] = zt[c, b]
                            bi[b] = c
                            break
            if f32:
                for c in range(C):
                    row = zt[c]
                    for b in range(B):
                        e[b] = _exp32(row[b] - best[b])
                    for b in range(B):
                        tot[b] += np.float64(e[b])
            else:
                for c in range(C):
                    for b in range(B):
                        tot[b] += np.exp(np.float64(zt[c, b]) - np.float64(best[b]))
            nc = 0
            acc = 0.0
            for b in range(B):
                nc += bi[b] == y[b]
                m = np.float64(best[b])
                if np.isfinite(m):
                    acc += np.log(tot[b]) + m - np.float64(z[s, b, y[b]])
                else:                   # a NaN or infinite logit: no loss
                    acc += np.nan
            correct[s] = nc
            loss[s] = acc / B

    @njit(nogil=True, cache=True)
    def _margin_row(z, s, b, t, C):  # pragma: no cover
        """(argmax, largest wrong logit) of a row with a NaN: the first NaN is the maximum."""
        best = z[s, b, 0]
        bi = 0
        other = z[s, b, 1] if t == 0 else best
        oi = 1 if t == 0 else 0
        for c in range(1, C):
            v = z[s, b, c]
            if best == best and (v != v or v > best):
                best = v
                bi = c
            if c != t and c > oi and other == other and (v != v or v > other):
                other = v
                oi = c
        return bi, other

    @njit(nogil=True, cache=True)
    def _margin_kernel(z, y, neg_inf, correct, margins):  # pragma: no cover
        S, B, C = z.shape
        for s in range(S):
            nc = 0
            for b in range(B):
                t = y[b]
                # the two largest logits (the first maximum wins); the largest wrong one is the
                # largest unless that is the true class's, then the second
                best = z[s, b, 0]
                second = neg_inf
                bi = 0
                nan = best != best
                for c in range(1, C):      # selects, not branches: random logits mispredict branches
                    v = z[s, b, c]
                    nan |= v != v
                    gt = v > best
                    sv = v if v > second else second
                    second = best if gt else sv
                    best = v if gt else best
                    bi = c if gt else bi
                other = second if bi == t else best
                if nan:
                    bi, other = _margin_row(z, s, b, t, C)
                nc += bi == t
                margins[s, b] = z[s, b, t] - other
            correct[s] = nc

    @njit(nogil=True, cache=True)
    def _bias_act(Y, b, relu):  # pragma: no cover
        R, N = Y.shape
        for r in range(R):
            for n in range(N):
                v = Y[r, n] + b[n]
                if relu and v < 0:
                    Y[r, n] = 0
                else:
                    Y[r, n] = v

    @njit(nogil=True, cache=True)
    def _act(Y):  # pragma: no cover
        R, N = Y.shape
        for r in range(R):
            for n in range(N):
                if Y[r, n] < 0:
                    Y[r, n] = 0

    HAVE_NUMBA = True
except Exception:  # numba missing or broken
    HAVE_NUMBA = False


def correct_and_loss(logits, y, use_numba: bool | None = None):
    """``(n_correct (S,), mean cross-entropy (S,))`` of chips' logits ``(S, B, C)`` against labels
    ``y`` (B,) in ``[0, C)``."""
    z = np.asarray(logits)
    y = np.asarray(y).astype(np.int64, copy=False)
    if z.ndim != 3 or y.shape != (z.shape[1],):
        raise ValueError(f"logits must be (chips, samples, classes) and y (samples,); got {z.shape} and {y.shape}.")
    if y.size and (y.min() < 0 or y.max() >= z.shape[2]):
        raise ReliabilityError(f"labels must lie in [0, {z.shape[2]}) for {z.shape[2]} model outputs; "
                               f"got labels from {y.min()} to {y.max()}; check that y matches the model's outputs.")
    fast = HAVE_NUMBA if use_numba is None else (use_numba and HAVE_NUMBA)
    if not fast or z.dtype not in (np.float32, np.float64) or z.shape[1] == 0:
        return _numpy(z, y)
    S = z.shape[0]
    correct = np.empty(S, dtype=np.int64)
    loss = np.empty(S, dtype=np.float64)
    z = np.ascontiguousarray(z)
    y = np.ascontiguousarray(y)
    f32 = z.dtype == np.float32
    _over_chips(lambda a, b: _kernel(z[a:b], y, f32, correct[a:b], loss[a:b]), S, z.size)
    return correct, loss


def bias_activation(Y: np.ndarray, b: np.ndarray | None, relu: bool) -> np.ndarray:
    """``Y + b`` (over the last axis), then ReLU if ``relu``, in place on ``Y`` (a C-contiguous
    float array; ``b`` of ``Y``'s dtype or None); returns ``Y``."""
    Y2 = Y.reshape(-1, Y.shape[-1])
    if HAVE_NUMBA and Y.flags.c_contiguous and Y.dtype in (np.float32, np.float64):
        if b is not None:
            _bias_act(Y2, np.ascontiguousarray(b, dtype=Y.dtype).reshape(-1), relu)
        elif relu:
            _act(Y2)
        return Y
    if b is not None:
        Y += b
    if relu:
        np.maximum(Y, 0, out=Y)
    return Y


def correct_and_margins(logits, y, use_numba: bool | None = None):
    """``(n_correct (S,), margins (S, B))`` of chips' logits ``(S, B, C)`` (C >= 2) against labels
    ``y``: the counts of :func:`correct_and_loss` and the margins of
    :func:`reliability.cim.graph.margin` (true-class logit minus the largest other logit, in the
    logits' dtype), in one pass over the logits."""
    z = np.asarray(logits)
    y = np.asarray(y).astype(np.int64, copy=False)
    fast = HAVE_NUMBA if use_numba is None else (use_numba and HAVE_NUMBA)
    if (not fast or z.ndim != 3 or z.dtype not in (np.float32, np.float64) or y.shape != (z.shape[1],)
            or z.shape[2] < 2 or (y.size and (y.min() < 0 or y.max() >= z.shape[2]))):
        from reliability.cim.graph import margin

        return (np.argmax(z, axis=-1) == y[None, :]).sum(axis=1), margin(z, y)
    z = np.ascontiguousarray(z)
    correct = np.empty(z.shape[0], dtype=np.int64)
    margins = np.empty(z.shape[:2], dtype=z.dtype)
    y = np.ascontiguousarray(y)
    neg_inf = z.dtype.type(-np.inf)
    _over_chips(lambda a, b: _margin_kernel(z[a:b], y, neg_inf, correct[a:b], margins[a:b]), z.shape[0], z.size)
    return correct, margins
