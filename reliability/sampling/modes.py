"""The failure modes of the hybrid estimator: a pilot of independent chips, then damped HL-RF
iterations towards the boundary of a smooth surrogate of the deepest event, from the origin and from
the lowest pilot chips the modes found so far do not explain (:mod:`reliability.sampling.hybrid`,
step 1)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from reliability import streams
from reliability.errors import InterruptedEarly

__all__ = ["Modes", "find_modes", "flatten", "gradient_sees_all", "project", "shift"]

#: chips per float64 work buffer in :func:`project` and :func:`shift` (a few MB per latent block)
ROWS = 16


@dataclass
class Modes:
    """Failure modes found by :func:`find_modes`: unit directions ``U`` (K, dim), reliability indices."""

    U: np.ndarray
    norms: np.ndarray
    temperature: float
    design_count: int
    evaluations: int
    #: wall time of the search's parts in this process: ``pilot``, ``design_points`` (empty when read
    #: from a checkpoint)
    seconds: dict = field(default_factory=dict)

    @property
    def K(self) -> int:
        return int(self.norms.size)


def flatten(z: list[np.ndarray]) -> np.ndarray:
    """Chips given as latent blocks as one ``(S, dim)`` float64 array."""
    return np.concatenate([b.reshape(b.shape[0], -1).astype(np.float64) for b in z], axis=1)


def project(z: list[np.ndarray], U: np.ndarray) -> np.ndarray:
    """Projections ``(S, K)`` of chips given as latent blocks onto the rows of ``U`` (K, dim), in
    float64, without the ``(S, dim)`` float64 copy :func:`flatten` makes (which costs more than the
    chips' evaluation on a 10^5-device network)."""
    S = z[0].shape[0] if z else 0
    out = np.zeros((S, U.shape[0]))
    lo = 0
    for b in z:
        n = int(np.prod(b.shape[1:]))
        Ub = U[:, lo:lo + n]
        flat = b.reshape(S, n)
        for r in range(0, S, ROWS):
            out[r:r + ROWS] += flat[r:r + ROWS].astype(np.float64) @ Ub.T
        lo += n
    return out


def shift(z: list[np.ndarray], C: np.ndarray, U: np.ndarray) -> None:
    """``z += C @ U`` in place on the chips' latent blocks (``C`` (S, K)), each value computed in
    float64 and rounded once to the blocks' dtype: one pass over the chips (numba) instead of the
    five of numpy's temporaries, which cost as much as a third of a chip's evaluation on a 10^5-device
    MLP."""
    S = z[0].shape[0] if z else 0
    C = np.ascontiguousarray(C, dtype=np.float64)
    lo = 0
    for b in z:
        if not b.flags.c_contiguous:
            raise ValueError("shift() changes the latent blocks in place: pass C-contiguous arrays "
                             "(np.ascontiguousarray), not views")
        n = int(np.prod(b.shape[1:]))
        Ub = np.ascontiguousarray(U[:, lo:lo + n], dtype=np.float64)
        flat = b.reshape(S, n)
        if _shift_rows is not None and flat.dtype == np.float32:
            _shift_rows(flat, C, Ub)
        else:
            for r in range(0, S, ROWS):
                rows = flat[r:r + ROWS]
                rows[...] = rows.astype(np.float64) + C[r:r + ROWS] @ Ub
        lo += n


try:
    from numba import njit

    @njit(cache=True)
    def _shift_rows(flat, C, Ub):       # flat (S, n) float32, C (S, K), Ub (K, n) float64
        S, n = flat.shape
        K = C.shape[1]
        for i in range(S):
            for j in range(n):
                acc = np.float64(flat[i, j])
                for k in range(K):
                    acc += C[i, k] * Ub[k, j]
                flat[i, j] = acc
except Exception:  # numba missing or broken: the numpy rows above
    _shift_rows = None


def _hlrf(scorer, latent, start, k, T, iterations, known, stop_cos=0.95):
    """Damped HL-RF from ``start``; ``None`` when it heads for a known mode (checked after 6 steps)."""
    z = [b.astype(np.float64) for b in start]
    g = float("nan")
    for it in range(iterations):
        g, gr = scorer.gradient([b.astype(latent.dtype) for b in z], k, T)
        gg = sum(float(np.sum(v * v)) for v in gr)
        if not gg > 0:
            return None, g
        gz = sum(float(np.sum(v * b)) for v, b in zip(gr, z))
        c = (gz - g) / gg
        z = [0.5 * (a + c * v) for a, v in zip(z, gr)]
        if it == 5 and known:
            d = flatten(z)[0]
            nd = np.linalg.norm(d)
            if nd > 0 and max(float(d @ u) / nd for u in known) > stop_cos:
                return None, g
    return flatten(z)[0], g


def gradient_sees_all(latent) -> bool:
    """Whether the design-point gradients cover every latent coordinate.  They flow through the
    programming blocks only; drift, read noise, stuck-at, chip gain and posterior-draw blocks get
    none, so with any of those the modes would ignore coordinates that may carry the failures
    (measured on the PCM preset: design points at beta 10-19 for events of probability 1e-4), and
    the hybrid runs subset simulation alone."""
    return all(kind == "prog" for kind, _, _ in latent.blocks)


def find_modes(scorer, latent, design_count: int | None, quantile_min: float | None, seed: int, pilot: int,
               starts: int, iterations: int, max_evaluations: int, beta_slack: float = 1.5) -> Modes:
    """Pilot chips, then HL-RF from the origin and from pilot chips in order of their count, each next
    start the lowest chip that the modes found so far do not explain (see the module docstring).

    ``design_count``: the count threshold of the deepest event (``None``: from the pilot, at the
    normal quantile ``quantile_min``).  Ctrl-C during the search raises
    :class:`~reliability.errors.InterruptedEarly`: no estimate exists before it ends."""
    try:
        return _find_modes(scorer, latent, design_count, quantile_min, seed, pilot, starts, iterations,
                           max_evaluations, beta_slack)
    except KeyboardInterrupt:
        raise InterruptedEarly("during the failure-mode search, the first step of the estimate (a checkpoint "
                               "is written once it ends)") from None


def _find_modes(scorer, latent, design_count, quantile_min, seed, pilot, starts, iterations, max_evaluations,
                beta_slack) -> Modes:
    scorer = getattr(scorer, "local", scorer)   # the search runs on the driver, even with Dask
    t0 = time.perf_counter()
    zp = latent.draw_chips(seed, streams.HYBRID_PILOT + np.arange(pilot))
    counts, mg = scorer.sample_margins(zp)
    evaluations = pilot
    t_pilot = time.perf_counter() - t0
    T = float(max(np.median(np.std(mg, axis=0)), 1e-3))
    if design_count is None:
        zq = stats.norm.isf(quantile_min)
        design_count = int(np.clip(math.floor(counts.mean() - zq * max(counts.std(), 0.5)), 0, scorer.n - 1))
    order = list(np.lexsort((mg.mean(axis=1), counts)))
    sizes = np.cumsum([0] + [int(np.prod(b.shape[1:])) for b in zp])

    def pilot_proj(u):      # the pilot chips' projections on u, block by block (no (pilot, dim) copy)
        return sum((b.reshape(b.shape[0], -1) @ u[a:e].astype(b.dtype)).astype(np.float64)
                   for b, a, e in zip(zp, sizes[:-1], sizes[1:]))

    dirs, norms, proj = [], [], []
    for n_start in range(starts + 1):
        if evaluations + iterations > max_evaluations or (n_start and not order):
            break
        if n_start == 0:
            st = [np.zeros((1,) + b.shape[1:]) for b in zp]
        else:
            pick = 0
            if dirs:
                # the lowest pilot chip that the modes found so far do not explain (all its projections on
                # them below 1.5): a start from an explained chip mostly runs back to a known mode
                ok = np.nonzero(np.max(np.stack(proj, axis=1)[order], axis=1) < 1.5)[0]
                pick = int(ok[0]) if ok.size else 0
            i = order.pop(pick)
            st = [b[i:i + 1] for b in zp]
        before = scorer.evaluations
        d, g = _hlrf(scorer, latent, st, design_count, T, iterations, dirs)
        evaluations += scorer.evaluations - before
        if d is None or not abs(g) <= 1.0:        # not converged to the surrogate's boundary
            continue
        nr = float(np.linalg.norm(d))
        if nr <= 0:
            continue
        u = d / nr
        same = [i for i, v in enumerate(dirs) if float(u @ v) > 0.9]
        if same:
            if nr < norms[same[0]]:
                dirs[same[0]], norms[same[0]], proj[same[0]] = u, nr, pilot_proj(u)
            continue
        dirs.append(u)
        proj.append(pilot_proj(u))
        norms.append(nr)
    if dirs:
        keep = [i for i in range(len(dirs)) if norms[i] <= min(norms) + beta_slack]
        U, B = np.stack([dirs[i] for i in keep]), np.array([norms[i] for i in keep])
    else:
        U, B = np.zeros((0, latent.dim)), np.zeros(0)
    return Modes(U, B, T, int(design_count), int(evaluations),
                 {"pilot": t_pilot, "design_points": time.perf_counter() - t0 - t_pilot})
