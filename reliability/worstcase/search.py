"""The worst-case search: projected descent in latent space, its restarts and random baseline, the
accuracy-versus-bound curve and the bisection for the minimal breaking bound.

:func:`descend` runs several restarts at once as a batch of chips; :class:`Searcher` seeds them
and keeps the count of searches (their random streams are keyed by it); :func:`search_curve`
walks the bounds, :func:`minimal_bound` bisects.  The method is described in
:mod:`reliability.worstcase`.
"""

from __future__ import annotations

import math
import time

import numpy as np

from reliability.streams import WORSTCASE_RANDOM, WORSTCASE_RESTART, stream
from reliability.worstcase.results import BoundResult, MinimalBound
from reliability.worstcase.sensitivity import deviation_stats

__all__ = ["Searcher", "descend", "minimal_bound", "project", "search_curve", "take", "uniform"]

# ====================================================================================== descent
def _norms(blocks, S):
    return np.sqrt(sum(np.sum(np.asarray(b, dtype=np.float64).reshape(S, -1) ** 2, axis=1) for b in blocks))


def project(zs, k, norm):
    """Project the chips ``zs`` (searched blocks, chip axis first) onto the bound, in place: clip to
    the box ``|z| <= k`` (linf) or scale back onto the ball ``||z||_2 <= k`` (l2)."""
    S = zs[0].shape[0]
    if norm == "linf":
        for b in zs:
            np.clip(b, -k, k, out=b)
        return zs
    nrm = _norms(zs, S)
    f = np.where(nrm > k, k / np.maximum(nrm, 1e-300), 1.0)
    for b in zs:
        b *= f.reshape((S,) + (1,) * (b.ndim - 1))
    return zs


def uniform(obj, k, norm, rng, S):
    """``S`` chips uniform in the box ``|z| <= k`` or the ball ``||z||_2 <= k``."""
    if norm == "linf":
        return [k * (2.0 * rng.random((S,) + s) - 1.0) for s in obj.shapes]
    zs = [rng.standard_normal((S,) + s) for s in obj.shapes]
    nrm = _norms(zs, S)
    r = k * rng.random(S) ** (1.0 / max(obj.dim, 1))
    f = r / np.maximum(nrm, 1e-300)
    return [b * f.reshape((S,) + (1,) * (b.ndim - 1)) for b in zs]


def take(zs, i):
    """Chip ``i`` of ``zs`` (a copy, chip axis kept)."""
    return [b[i:i + 1].copy() for b in zs]


def _temperatures(margins, focus):
    """Per chip: inf (clipped margin loss) where ``focus`` is None, else the ``focus`` quantile of
    that chip's positive margins (inf when none is left)."""
    T = np.full(len(focus), np.inf)
    for i, q in enumerate(focus):
        if q is None:
            continue
        pos = margins[i][margins[i] > 0]
        if pos.size:
            T[i] = max(float(np.quantile(pos, q)), 1e-12)
    return T


def descend(obj, k, norm, inits, iterations, step, optimizer, focus=(None,)):
    """Batched projected descent from the chips ``inits`` (restarts on axis 0); the best chip seen.

    Restart ``r`` descends the clipped margin loss when ``focus[r % len(focus)]`` is None, else the
    soft count ``sum_n sigmoid(m_n / T)`` with ``T`` the ``focus`` quantile of its current positive
    margins (updated every iteration): the samples closest to flipping pull hardest, so the
    restart breaks the easiest samples first instead of spreading the budget over samples it
    cannot break.

    Returns ``(z, n_correct, loss, per_restart)``: the best iterate by exact accuracy, then loss
    (``z``: 1 chip, searched blocks), and the fewest correct samples each restart reached."""
    z = project([np.concatenate(p, axis=0).astype(np.float64) for p in zip(*inits)], k, norm)
    S = z[0].shape[0]
    best = (np.inf, np.inf, None)
    foc = [focus[r % len(focus)] for r in range(S)]
    margins = obj.evaluate(z)[2] if any(q is not None for q in foc) else None

    per_restart = np.full(S, np.iinfo(np.int64).max)

    def consider(loss, correct, zs):
        nonlocal best
        np.minimum(per_restart, correct, out=per_restart)
        i = int(np.lexsort((loss, correct))[0])
        if (correct[i], loss[i]) < best[:2]:
            best = (int(correct[i]), float(loss[i]), take(zs, i))

    m1 = [np.zeros_like(b) for b in z] if optimizer == "adam" else None
    m2 = [np.zeros_like(b) for b in z] if optimizer == "adam" else None
    b1, b2 = 0.9, 0.999
    for t in range(iterations):
        T = _temperatures(margins, foc) if margins is not None else None
        loss, correct, grads, mg = obj.value_and_grad(z, T)
        if margins is not None:
            margins = mg
        consider(loss, correct, z)
        alpha = step * k * 0.5 * (1.0 + math.cos(math.pi * t / iterations))
        if optimizer == "adam":
            d = []
            for a, v, g in zip(m1, m2, grads):
                a *= b1
                a += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                d.append((a / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + 1e-30))
        elif norm == "linf":
            d = [np.sign(g) for g in grads]
        else:
            d = grads
        if norm == "l2":
            dn = _norms(d, S)
            f = np.where(dn > 0, 1.0 / np.maximum(dn, 1e-300), 0.0)
            d = [g * f.reshape((S,) + (1,) * (g.ndim - 1)) for g in d]
        for b, g in zip(z, d):
            b -= alpha * g
        project(z, k, norm)
    loss, correct, _ = obj.evaluate(z)
    consider(loss, correct, z)
    return best[2], best[0], best[1], per_restart


# ====================================================================================== restarts
class Searcher:
    """Searches at given bounds with fixed settings, counting them.

    Search number ``c`` (0, 1, ... in the order run) draws its random restarts from the stream
    ``stream(seed, WORSTCASE_RESTART, c)``; the random baseline's chip ``i`` from
    ``stream(seed, WORSTCASE_RANDOM, i)`` (:mod:`reliability.streams`).
    ``last_restarts`` holds the best accuracy of each restart of the latest search.
    """

    def __init__(self, obj, norm, restarts, iterations, step, optimizer, focus, random_chips, seed, total,
                 progress=None):
        self.obj = obj
        self.norm = norm
        self.restarts = restarts
        self.iterations = iterations
        self.step = step
        self.optimizer = optimizer
        self.focus = focus
        self.random_chips = random_chips
        self.seed = seed
        self.progress = progress
        self.calls = 0            # searches run
        self.total = total        # searches expected (grows during the bisection)
        self.last_restarts = []

    def counts(self, zs) -> np.ndarray:
        """Exact number of correctly classified samples of each chip in ``zs``."""
        return np.asarray(self.obj.counts(zs), dtype=np.int64)

    def _tick(self):
        self.calls += 1
        if self.progress is not None:
            self.progress(self.calls, max(self.total, self.calls))

    def run(self, k, warm):
        """Search at bound ``k`` from the warm chips (feasible at ``k``) plus random restarts;
        ``(best chip, its number of correct samples)``."""
        obj, n = self.obj, self.obj.n
        warm = [w for w in warm if w is not None][:self.restarts]
        rng = stream(self.seed, WORSTCASE_RESTART, self.calls)
        inits = list(warm)
        if len(inits) < self.restarts:
            inits.append(uniform(obj, k, self.norm, rng, self.restarts - len(inits)))
        zb, _, _, per = descend(obj, k, self.norm, inits, self.iterations, self.step, self.optimizer, self.focus)
        self._tick()
        self.last_restarts[:] = [int(c) / n for c in per]
        return zb, int(self.counts(zb)[0])

    def random_baseline(self, k):
        """``(correct counts of random_chips chips uniform in the bound, the worst of them)``."""
        if self.random_chips == 0 or k == 0:
            return np.zeros(0, dtype=np.int64), None
        chips = [uniform(self.obj, k, self.norm, stream(self.seed, WORSTCASE_RANDOM, i), 1)
                 for i in range(self.random_chips)]
        zs = [np.concatenate(p, axis=0) for p in zip(*chips)]
        c = self.counts(zs)
        i = int(np.argmin(c))
        return c, take(zs, i)


# ====================================================================================== curve
def search_curve(searcher, bounds, z0, clean_n, g0, dtype):
    """The worst case at each bound (increasing), each warm-started from the previous bound's worst
    chip and never above it (monotone).  Returns ``(records, warnings, beaten)``: one
    :class:`BoundResult` per bound (latent vectors stored in ``dtype``), the warnings, and whether
    a random chip beat a search."""
    obj, n = searcher.obj, searcher.obj.n
    norm, restarts, iterations = searcher.norm, searcher.restarts, searcher.iterations
    clean_acc = clean_n / n
    records = []
    prev_z, prev_n = z0, clean_n
    warnings = []
    beaten = False
    for k in bounds:
        t0 = time.perf_counter()
        if k == 0:
            zb, nb, src, search_n = z0, clean_n, "nominal", clean_n
            rc, rz = np.zeros(0, dtype=np.int64), None
            rs, its = 0, 0
            searcher.last_restarts[:] = []
        else:
            search_z, search_n = searcher.run(k, [prev_z])
            rc, rz = searcher.random_baseline(k)
            cands = [(search_n, 0, "search", search_z), (prev_n, 1, "smaller bound", prev_z)]
            if rz is not None:
                cands.append((int(rc.min()), 2, "random", rz))
            nb, _, src, zb = min(cands, key=lambda c: c[:2])
            rs, its = restarts, iterations
            if rc.size and search_n > rc.min():
                beaten = True
                warnings.append(f"bound {k:g}: the search ({search_n}/{n} correct) did worse than the best of "
                                f"{rc.size} random chips ({int(rc.min())}/{n}); increase restarts or iterations")
        dev = deviation_stats(obj, zb, k, norm, g0)
        records.append(BoundResult(
            float(k), norm, nb / n, int(nb), clean_acc, search_n / n,
            float(rc.min() / n) if rc.size else float("nan"), float(rc.mean() / n) if rc.size else float("nan"),
            int(rc.size), rs, its, src, dev, time.perf_counter() - t0, tuple(searcher.last_restarts),
            tuple(obj.full(zb, dtype=dtype))))
        prev_z, prev_n = zb, nb
    return records, warnings, beaten


# ====================================================================================== bisection
def minimal_bound(searcher, records, z0, clean_n, threshold, tolerance, max_bound):
    """Bisection for the smallest bound whose worst case reaches ``accuracy <= threshold``.

    The curve's ``records`` give the first bracket; without one reaching the threshold, the bound
    doubles (from at least 1) up to ``max_bound``.  Returns ``(MinimalBound, hi_z)`` with ``hi_z``
    the breaking chip's searched blocks (None when none was found or the nominal chip already
    reaches the threshold)."""
    obj, n = searcher.obj, searcher.obj.n
    thr = float(threshold)
    t_count = math.floor(thr * n + 1e-9)
    searches0 = searcher.calls
    clean_acc = clean_n / n
    if clean_n <= t_count:
        return MinimalBound(thr, 0.0, (0.0, 0.0), clean_acc, clean_acc, float(tolerance), 0, True,
                            "the nominal chip is already at or below the threshold"), None
    lo, lo_z, lo_n = 0.0, z0, clean_n
    hi = hi_z = hi_n = None
    for r in records:
        zsr = [r.z[i].astype(np.float64) for i in obj.block_index]
        if r.n_correct <= t_count:
            hi, hi_z, hi_n = r.bound, zsr, r.n_correct
            break
        lo, lo_z, lo_n = r.bound, zsr, r.n_correct
    while hi is None and lo < max_bound:
        k = min(max(2.0 * lo, 1.0), float(max_bound))
        searcher.total += 1
        zk, nk = searcher.run(k, [lo_z])
        if nk <= t_count:
            hi, hi_z, hi_n = k, zk, nk
        else:
            lo = k
            if nk < lo_n:
                lo_z, lo_n = zk, nk
    while hi is not None and hi - lo > tolerance:
        mid = 0.5 * (lo + hi)
        searcher.total += 1
        scaled = [b * (mid / hi) for b in hi_z]
        zk, nk = searcher.run(mid, [lo_z, scaled])
        if nk <= t_count:
            hi, hi_z, hi_n = mid, zk, nk
        else:
            lo = mid
            if nk < lo_n:
                lo_z, lo_n = zk, nk
    found = hi is not None
    msg = "" if found else (f"no deviation up to the bound {max_bound:g} reached accuracy <= {thr:g}; "
                            "raise max_bound, restarts or iterations")
    result = MinimalBound(thr, None if not found else float(hi), (float(lo), None if not found else float(hi)),
                          None if not found else hi_n / n, lo_n / n, float(tolerance),
                          searcher.calls - searches0, found, msg)
    return result, (hi_z if found else None)
