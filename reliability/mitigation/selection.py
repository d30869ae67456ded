"""Which weights selective write-verify (SWIM, Yan et al. DAC 2022) verifies.

Three criteria score every weight of every analog layer; the top ``fraction`` of all weights (one
ranking across layers, ties broken by position) gets its devices write-verified:

- ``hessian`` (default): the expected loss reduction ``0.5 H_ww (Var_raw(w) - Var_verified(w))``,
  with ``H_ww`` the diagonal of the Gauss-Newton Hessian of the cross-entropy estimated by the
  empirical Fisher ``sum over mini-batches of (dL_b/dw)^2`` (one forward and backward pass of the
  clean network per mini-batch, through the core's gradients), and the variances of the weight's
  decoded value from its devices' programming variation before and after verify (the band's
  truncation, exact for normal programming variation; other families use the normal formula at
  the same acceptance probabilities, good enough to rank).  With uniform variation this is SWIM's
  second-derivative criterion; with state-dependent variation it favours weights whose devices
  gain most from verify (U-SWIM's motivation).
- ``magnitude``: ``|w|``, largest first.
- ``random``: a seeded random order (a control).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from reliability.cim.graph import softmax_cross_entropy
from reliability.errors import ModelSpecError
from reliability.streams import as_generator

__all__ = ["SELECTIONS", "weight_scores", "top_fraction_mask"]

SELECTIONS = ("hessian", "magnitude", "random")


def _fisher_diagonal(sim, x, y, batch: int, max_samples: int) -> list[np.ndarray]:
    net = sim.network
    W = [w[None].astype(np.float64) for w in sim.quantized_weights()]
    F = [np.zeros(w.shape[1:]) for w in W]
    n = min(len(y), max_samples)
    for s0 in range(0, n, batch):
        xb, yb = x[s0:min(s0 + batch, n)], y[s0:min(s0 + batch, n)].astype(np.int64)
        logits, cache = net.forward(xb, weights=W, keep=True, dtype=np.float64)
        _, grad = softmax_cross_entropy(logits, yb)
        g = net.backward(cache, grad, input_grad=False)
        for f, gw in zip(F, g.weights):
            f += gw[0] ** 2
    return F


def _pdf(t: np.ndarray) -> np.ndarray:
    """Standard normal density, 0 at +-inf."""
    t = np.where(np.isfinite(t), t, np.inf)
    with np.errstate(over="ignore"):
        return np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)


def _variance_reduction(sim) -> list[np.ndarray]:
    """Per weight, ``Var_raw - Var_verified`` of its decoded value from programming variation
    (verified at the simulator's write-verify tolerance, every device)."""
    if not sim.spec.write_verify or sim.verify_mask is not None:
        raise ModelSpecError("select=hessian needs a simulator that write-verifies every device (write_verify > 0, "
                             "no verify_mask): it weighs each weight by the variance verify removes.")
    dev = sim.device
    prog = dev.programming
    out = []
    for m, p in zip(sim.maps, sim.prepared):
        coef = m.grad_conductance(np.ones((1, m.K, m.N)))[0]           # dW/dg per device
        std = np.broadcast_to(np.asarray(prog.std(m.targets), dtype=np.float64), m.targets.shape)
        acc = p.accept                        # every device verified (the simulator has no mask)
        a = special.ndtri(acc.u_lo).reshape(m.targets.shape)             # band edges, standardized
        b = -special.ndtri(acc.q_hi).reshape(m.targets.shape)
        Z = acc.probability.reshape(m.targets.shape)
        pa, pb = _pdf(a), _pdf(b)
        ta = np.where(np.isfinite(a), a, 0.0) * pa
        tb = np.where(np.isfinite(b), b, 0.0) * pb
        ratio = 1 + (ta - tb) / Z - ((pa - pb) / Z) ** 2                 # truncated / raw variance
        red = (coef ** 2) * (std ** 2) * np.clip(1 - ratio, 0.0, 1.0)
        out.append(red.reshape((-1, m.K, m.N)).sum(axis=0))
    return out


def weight_scores(sim, x, y, select: str = "hessian", rng=0, batch: int = 16, max_samples: int = 2048) -> list[np.ndarray]:
    """Per analog layer, a ``(K, N)`` score (higher: verify first) by criterion ``select``.

    ``sim`` is a :class:`~reliability.cim.ChipSimulator` whose chip specification has the
    write-verify tolerance set (the ``hessian`` criterion weighs by what verify removes);
    ``x, y`` the data the Fisher is estimated on (at most ``max_samples`` samples, ``batch`` a
    mini-batch); ``rng`` seeds the ``random`` criterion.
    """
    if select not in SELECTIONS:
        raise ModelSpecError(f"swim select must be one of {SELECTIONS}; got {select!r}.")
    if select == "magnitude":
        return [np.abs(w).astype(np.float64) for w in sim.quantized_weights()]
    if select == "random":
        gen = as_generator(rng)
        return [gen.random((m.K, m.N)) for m in sim.maps]
    if sim.device.programming is None:
        raise ModelSpecError("swim select=hessian needs a device model with programming variation.")
    F = _fisher_diagonal(sim, np.asarray(x), np.asarray(y), batch, max_samples)
    return [f * r for f, r in zip(F, _variance_reduction(sim))]


def top_fraction_mask(scores: list[np.ndarray], fraction: float) -> list[np.ndarray]:
    """Boolean masks selecting the ``round(fraction x total)`` highest scores across all layers
    (ties broken by position: layer order, then C order)."""
    flat = np.concatenate([s.ravel() for s in scores])
    n = int(round(float(fraction) * flat.size))
    sel = np.zeros(flat.size, dtype=bool)
    if n > 0:
        order = np.argsort(-flat, kind="stable")
        sel[order[:n]] = True
    out, i = [], 0
    for s in scores:
        out.append(sel[i:i + s.size].reshape(s.shape))
        i += s.size
    return out
