"""Per-chip losses of the logits and their gradients, for :meth:`Network.backward`: the
classification margin and the softmax cross-entropy."""

from __future__ import annotations

import numpy as np

__all__ = ["margin", "softmax_cross_entropy"]


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
