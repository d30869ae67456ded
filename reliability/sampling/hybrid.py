"""Hybrid tail estimation: importance sampling along the failure modes' design points, subset
simulation for the failure mass away from them.

Why: subset simulation (:mod:`reliability.sampling.subset`) is honest in any dimension but its
Markov chains barely leave their seeds, so its relative error at p ~ 1e-5 is about 0.25 with 20,000
chips.  A single mean shift to a design point is sharp where the failure region is a half-space but
misses the failure mass of the network's other failure modes (measured: 12 % of it at 5e-3 lies
where the design direction's coordinate is negative on the public case), and its weights cannot
show what it never samples.  Here both are used for what they do well.

Algorithm, in the chips' latent Gaussian space ``z ~ N(0, I)``:

1. **Modes.**  A pilot of independent chips ranks starting points; the HL-RF iteration (as in
   :mod:`reliability.sampling.importance`) is run from the origin and from the lowest-scoring pilot
   chips towards the boundary of a smooth surrogate of the deepest event.  Distinct end points
   (cosine < 0.9) are the failure modes; unit directions ``u_m``, reliability indices ``beta_m``.
   Modes with ``beta_m > min beta + 1.5`` are dropped (their mass is ``exp(-beta^2/2)`` smaller).
2. **Split.**  With ``t_m = u_m . z`` and a cut ``c`` (1.5), the latent space splits into
   ``H = {max_m t_m >= c}`` (near some mode) and its complement ``L``; ``P(F) = P(F, H) + P(F, L)``.
3. **Subset simulation** (30 % of the budget) estimates ``P(F, L)``: it records every chip's
   projections and restricts the event to ``L`` (:meth:`SubsetRun.probability` with ``where``).
4. **Importance sampling** (the rest) estimates ``P(F, H)``: mode ``m`` with probability ``1/K``,
   ``t_m`` from a one-dimensional density ``g`` on ``[c, inf)`` (a defensive truncated prior,
   weight 0.2, plus normals fitted to the subset levels' projections and one at the median
   ``beta``), the rest of ``z`` exactly from the prior (``z = xi + (t - u_m . xi) u_m``).  The
   weight depends on the ``K`` projections only, ``w = 1 / sum_m (1/K) 1(t_m >= c) g(t_m) / phi(t_m)``,
   and is bounded on ``H`` by ``K Phi(-c) / 0.2``: no weight degeneracy in any dimension.
5. **Uncertainty.**  ``P(F, H)`` has its sample standard error, raised when the subset
   simulation's samples of the event (approximately distributed as the chips in the event) predict
   a larger second moment of the weights: rare heavy weights the importance sample did not draw
   still widen the interval.  ``P(F, L)`` has subset simulation's upper-bound coefficient of
   variation (or, with no chip of the event in ``L``, half the rule-of-three bound as its standard
   error).  The two are independent; the 95 % interval is log-normal on the sum.

Measured (``benchmarks/tail.py``, budget 20,000): see the README's tail-accuracy table.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from reliability.errors import ReliabilityError
from reliability.sampling.importance import soft_count_gradient
from reliability.sampling.subset import SubsetRun, SubsetSimulation, read_checkpoint_meta, write_checkpoint

__all__ = ["HybridSampling", "HybridRun", "Modes", "find_modes", "gradient_sees_all"]

#: key offsets keeping the pilot chips and the importance-sampling chunks apart from the subset
#: simulation's level-0 chips (keyed 0..N-1) and its Markov chains
PILOT_KEY = 10**9
IS_SPAWN = 2**31 - 3
CHUNK = 256
#: below this budget the mode search and the split do not pay: subset simulation alone
MIN_BUDGET = 2000


@dataclass
class Modes:
    """Failure modes found by :func:`find_modes`: unit directions ``U`` (K, dim), reliability indices."""

    U: np.ndarray
    norms: np.ndarray
    temperature: float
    design_count: int
    evaluations: int

    @property
    def K(self) -> int:
        return int(self.norms.size)


def _flat(z: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([b.reshape(b.shape[0], -1).astype(np.float64) for b in z], axis=1)


def _hlrf(scorer, latent, start, k, T, iterations, known, stop_cos=0.95):
    """Damped HL-RF from ``start``; ``None`` when it heads for a known mode (checked after 6 steps)."""
    z = [b.astype(np.float64) for b in start]
    g = float("nan")
    for it in range(iterations):
        g, gr = soft_count_gradient(scorer, latent, [b.astype(latent.dtype) for b in z], k, T)
        gg = sum(float(np.sum(v * v)) for v in gr)
        if not gg > 0:
            return None, g
        gz = sum(float(np.sum(v * b)) for v, b in zip(gr, z))
        c = (gz - g) / gg
        z = [0.5 * (a + c * v) for a, v in zip(z, gr)]
        if it == 5 and known:
            d = _flat(z)[0]
            nd = np.linalg.norm(d)
            if nd > 0 and max(float(d @ u) / nd for u in known) > stop_cos:
                return None, g
    return _flat(z)[0], g


def gradient_sees_all(latent) -> bool:
    """Whether the design-point gradients cover every latent coordinate.  They flow through the
    programming blocks only; drift, read noise, stuck-at, chip gain and posterior-draw blocks get
    none, so with any of those the modes would ignore coordinates that may carry the failures
    (measured on the PCM preset: design points at beta 10-19 for events of probability 1e-4), and
    the hybrid runs subset simulation alone."""
    return all(kind == "prog" for kind, _, _ in latent.blocks)


def find_modes(scorer, latent, design_count: int | None, quantile_min: float | None, seed: int, pilot: int,
               starts: int, iterations: int, max_evaluations: int, beta_slack: float = 1.5) -> Modes:
    """Pilot chips, then HL-RF from the origin and the lowest pilot chips (see the module docstring).

    ``design_count``: the count threshold of the deepest event (``None``: from the pilot, at the
    normal quantile ``quantile_min``)."""
    scorer = getattr(scorer, "local", scorer)   # the search runs on the driver, even with Dask
    zp = latent.stack([latent.draw_chip(seed, PILOT_KEY + i) for i in range(pilot)])
    counts, mg = scorer.sample_margins(zp)
    evaluations = pilot
    T = float(max(np.median(np.std(mg, axis=0)), 1e-3))
    if design_count is None:
        zq = stats.norm.isf(quantile_min)
        design_count = int(np.clip(math.floor(counts.mean() - zq * max(counts.std(), 0.5)), 0, scorer.n - 1))
    order = np.lexsort((mg.mean(axis=1), counts))
    cands = [[np.zeros((1,) + b.shape[1:]) for b in zp]] + [[b[i:i + 1] for b in zp] for i in order[:starts]]
    dirs, norms = [], []
    for st in cands:
        if evaluations + iterations > max_evaluations:
            break
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
                dirs[same[0]], norms[same[0]] = u, nr
            continue
        dirs.append(u)
        norms.append(nr)
    if dirs:
        keep = [i for i in range(len(dirs)) if norms[i] <= min(norms) + beta_slack]
        U, B = np.stack([dirs[i] for i in keep]), np.array([norms[i] for i in keep])
    else:
        U, B = np.zeros((0, latent.dim)), np.zeros(0)
    return Modes(U, B, T, int(design_count), int(evaluations))


@dataclass
class HybridRun:
    modes: Modes
    cut: float
    defensive: float
    subset: SubsetRun
    components: list = field(default_factory=list)     # (mean, sd) of the 1-D proposal's normals
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    logw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stopped: str = ""

    @property
    def evaluations(self) -> int:
        return int(self.modes.evaluations + self.subset.evaluations + self.counts.size)

    # ------------------------------------------------------------------ the proposal
    def log_g(self, t: np.ndarray) -> np.ndarray:
        """Log density of the one-dimensional proposal on ``[cut, inf)``."""
        t = np.asarray(t, dtype=np.float64)
        a, c = self.defensive, self.cut
        terms = [math.log(a) + stats.norm.logpdf(t) - stats.norm.logsf(c)]
        C = len(self.components)
        for m, s in self.components:
            terms.append(math.log((1 - a) / C) + stats.norm.logpdf(t, m, s) - stats.norm.logsf(c, m, s))
        return np.logaddexp.reduce(np.stack(terms), axis=0)

    def log_weight(self, proj: np.ndarray) -> np.ndarray:
        """``log(phi / q)`` for chips with projections ``proj`` (..., K); ``+inf`` outside H (where
        ``q`` is zero and no chip is ever drawn)."""
        proj = np.asarray(proj, dtype=np.float64)
        K = proj.shape[-1]
        tt = np.maximum(proj, self.cut)
        lr = np.where(proj >= self.cut, self.log_g(tt) - stats.norm.logpdf(tt), -np.inf)
        return -np.logaddexp.reduce(lr - math.log(K), axis=-1)

    def outside(self, proj: np.ndarray) -> np.ndarray:
        """The region L (far from every mode), given projections (..., K)."""
        return np.asarray(proj).max(axis=-1) < self.cut

    def sample_t(self, rng: np.random.Generator, S: int) -> tuple[np.ndarray, np.ndarray]:
        """Modes and their coordinates for ``S`` importance-sampling chips."""
        K, C = self.modes.K, len(self.components)
        mode = rng.choice(K, size=S)
        which = rng.choice(C + 1, size=S, p=[self.defensive] + [(1 - self.defensive) / C] * C)
        m = np.array([0.0] + [c[0] for c in self.components])[which]
        s = np.array([1.0] + [c[1] for c in self.components])[which]
        t = m + s * stats.norm.isf(rng.random(S) * stats.norm.sf((self.cut - m) / s))
        return mode, np.maximum(t, self.cut)

    def place(self, rng: np.random.Generator, flat: np.ndarray) -> np.ndarray:
        """Turn prior draws ``flat`` (S, dim) into importance-sampling chips, in place: for each row a
        mode ``m`` and ``t ~ g``, then ``z = xi + (t - u_m . xi) u_m``; returns the projections (S, K)."""
        mode, t = self.sample_t(rng, flat.shape[0])
        um = self.modes.U[mode]
        flat += (t - np.sum(flat * um, axis=1))[:, None] * um
        return flat @ self.modes.U.T

    # ------------------------------------------------------------------ estimates
    def probability(self, k: int) -> dict:
        """P(n_correct <= k): the split estimate with its parts and diagnostics."""
        c = k + 1.0
        sus = self.subset
        if self.modes.K == 0 or self.counts.size < 2:
            r = sus.probability(c)
            d = r["cov_upper"]
            return {"p": r["p"], "cov": d, "se_hi": 0.0, "p_hi": 0.0, "p_lo": r["p"], "se_lo": r["p"] * d if r["p"] > 0 else float("nan"),
                    "subset": r, "n_is": 0, "n_is_event": 0, "ess": r["ess"], "khat": float("nan"),
                    "lo_share": 1.0, "subset_only": True}
        n = self.counts.size
        ind = self.counts <= k
        w = np.exp(self.logw)
        f = w * ind
        p_hi = float(f.mean())
        se_hi = float(f.std(ddof=1) / math.sqrt(n))
        r = sus.probability(c, where=self.outside)
        p_lo = r["p"]
        if p_lo > 0 and math.isfinite(r["cov_upper"]):
            se_lo = p_lo * r["cov_upper"]
        else:   # no chip of the event in L: half the rule-of-three bound as the standard error
            se_lo = 0.5 * r["level_prob"] * 3.0 / max(r["ess"], 1.0)
        p = p_hi + p_lo
        # second moment of the weights predicted from the subset simulation's chips in the event
        j = sus.level_for(c)
        lv = sus.levels[j]
        ev = lv.features[lv.scores < c]
        se_pred = 0.0
        if ev.size and p > 0:
            near = ~self.outside(ev)
            m2 = float(np.sum(np.exp(self.log_weight(ev[near])))) / ev.shape[0]
            se_pred = math.sqrt(max(p * m2 - p_hi * p_hi, 0.0) / n)
        se_hi_used = max(se_hi, se_pred)
        se = math.sqrt(se_hi_used ** 2 + se_lo ** 2)
        khat = float("nan")
        if int(ind.sum()) >= 20:
            import arviz as az

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, kh = az.psislw(self.logw[ind].copy())
            khat = float(np.asarray(kh))
        ess = float(f.sum() ** 2 / np.sum(f * f)) if np.any(f > 0) else 0.0
        top = float(f.max() / f.sum()) if np.any(f > 0) else float("nan")   # the largest chip's share
        return {"p": p, "cov": se / p if p > 0 else float("inf"), "p_hi": p_hi, "se_hi": se_hi_used,
                "se_hi_sample": se_hi, "se_hi_predicted": se_pred, "p_lo": p_lo, "se_lo": se_lo, "subset": r,
                "n_is": n, "n_is_event": int(ind.sum()), "ess": ess, "khat": khat, "top_share": top,
                "lo_share": p_lo / p if p > 0 else float("nan"), "subset_only": False}


class HybridSampling:
    """Importance sampling along the failure modes' design points plus subset simulation (module
    docstring).  A swappable estimator strategy, the default of :func:`estimate_tail`.

    Parameters
    ----------
    subset_share : float
        Fraction of the budget (mode search included) spent before importance sampling starts.
    cut : float
        The split ``max_m u_m . z >= cut``.
    defensive : float
        Weight of the truncated prior in the one-dimensional proposal.
    pilot, starts, iterations :
        Pilot chips, HL-RF starting points besides the origin, HL-RF steps per start; the mode
        search spends at most 2.5 % (pilot) + 4 % (HL-RF) of the budget.
    """

    name = "hybrid"

    def __init__(self, subset_share: float = 0.3, cut: float = 1.5, defensive: float = 0.2, pilot: int = 500,
                 starts: int = 12, iterations: int = 20, subset: SubsetSimulation | None = None):
        if not 0.05 <= subset_share <= 0.9:
            raise ValueError(f"subset_share must be in [0.05, 0.9]; got {subset_share}.")
        if not 0 < defensive < 1:
            raise ValueError(f"defensive must be in (0, 1); got {defensive}.")
        self.subset_share = subset_share
        self.cut = float(cut)
        self.defensive = float(defensive)
        self.pilot = int(pilot)
        self.starts = int(starts)
        self.iterations = int(iterations)
        self.subset = subset or SubsetSimulation()
        self.p0 = self.subset.p0

    def run(self, scorer, latent, count_targets: list[int], quantile_min: float | None, budget: int, seed: int,
            checkpoint=None, fingerprint: str = "", progress=None) -> HybridRun:
        ck = Path(checkpoint) if checkpoint is not None else None
        ck_sub = ck.with_name(ck.stem + "-subset.npz") if ck is not None else None
        state = _load(ck, fingerprint) if ck is not None else None
        if state is not None:
            modes, counts, logw = state
        elif budget < MIN_BUDGET or not gradient_sees_all(latent):
            modes = Modes(np.zeros((0, latent.dim)), np.zeros(0), float("nan"), -1, 0)   # subset simulation alone
            counts, logw = np.zeros(0, dtype=np.int64), np.zeros(0)
        else:
            pilot = min(self.pilot, budget // 40)
            design = min(count_targets) if count_targets else None
            modes = find_modes(scorer, latent, design, quantile_min, seed, pilot, self.starts, self.iterations,
                               pilot + int(0.04 * budget))
            counts, logw = np.zeros(0, dtype=np.int64), np.zeros(0)
            _save(ck, fingerprint, modes, counts, logw)
        if progress is not None:
            progress(modes.evaluations, budget)
        U = modes.U
        feature = (lambda z: _flat(z) @ U.T) if modes.K else None
        sus_budget = budget - modes.evaluations if modes.K == 0 else int(self.subset_share * budget) - modes.evaluations
        sub_progress = None if progress is None else (lambda d, t: progress(modes.evaluations + d, budget))
        sus = self.subset.run(scorer, latent, [k + 1.0 for k in count_targets], quantile_min, max(sus_budget, 100),
                              seed, checkpoint=ck_sub, fingerprint=fingerprint, progress=sub_progress, feature=feature)
        run = HybridRun(modes, self.cut, self.defensive, sus)
        if modes.K == 0:
            run.stopped = sus.stopped
            return run
        comps = []
        for lv in sus.levels[1:]:
            t = lv.features.max(axis=1)
            t = t[t >= self.cut]
            if t.size >= 10:
                comps.append((float(t.mean()), float(max(t.std(), 0.3))))
        comps.append((float(max(np.median(modes.norms), self.cut)), 0.5))
        run.components = comps
        if sus.stopped == "interrupted":
            run.stopped = "interrupted"
            run.counts, run.logw = counts, logw
            return run
        n_is = budget - modes.evaluations - sus.evaluations
        shapes = [s for _, _, s in latent.blocks]
        splits = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
        c_list, w_list = [counts], [logw]
        done = counts.size
        try:
            while done < n_is:
                ci = done // CHUNK
                S = min(CHUNK, n_is - done)
                rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(IS_SPAWN, ci))))
                flat = _flat(latent.draw(rng, S))
                proj = run.place(rng, flat)
                z = [p.reshape((S,) + sh).astype(latent.dtype) for p, sh in zip(np.split(flat, splits, axis=1), shapes)]
                cnt, _ = scorer.counts_and_margins(z)
                c_list.append(cnt)
                w_list.append(run.log_weight(proj))
                done += S
                if progress is not None:
                    progress(modes.evaluations + sus.evaluations + done, budget)
                if ck is not None and (ci % 8 == 7 or done >= n_is):
                    _save(ck, fingerprint, modes, np.concatenate(c_list), np.concatenate(w_list))
            run.stopped = "complete"
        except KeyboardInterrupt:
            run.stopped = "interrupted"
        run.counts, run.logw = np.concatenate(c_list), np.concatenate(w_list)
        return run


def _save(path, fingerprint, modes: Modes, counts, logw):
    if path is None:
        return
    meta = {"fingerprint": fingerprint, "temperature": modes.temperature, "design_count": modes.design_count,
            "evaluations": modes.evaluations}
    write_checkpoint(path, meta, {"U": modes.U, "norms": modes.norms, "counts": counts, "logw": logw})


def _load(path, fingerprint):
    if path is None or not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        if "U" not in z.files:
            raise ReliabilityError(f"checkpoint {path} was not written by the hybrid estimator (an older subset-"
                                   "simulation checkpoint?); resume it with --method subset or delete it.")
        meta = read_checkpoint_meta(path, z, fingerprint)
        modes = Modes(z["U"], z["norms"], meta["temperature"], meta["design_count"], meta["evaluations"])
        return modes, z["counts"], z["logw"]
