"""Subset simulation with preconditioned Crank-Nicolson moves, in the chips' latent Gaussian space.

Algorithm (Au & Beck 2001; pCN moves as in Cotter et al. 2013, exact for N(0, I) in any dimension):
level 0 draws ``N`` independent chips (chip ``i`` keyed by ``(seed, i)``); each further level keeps
the ``N p0`` lowest-scoring chips as seeds and grows Markov chains from them with proposals
``z' = sqrt(1 - rho^2) z + rho xi``, accepted when the proposal's score stays below the level's
threshold; ``rho`` adapts towards an acceptance rate of 45 %.  Level ``j + 1`` has ``p0 N_j``
chains whose length is set from the budget left (see :class:`SubsetSimulation`).  ``P(score < c)``
for any ``c`` is ``p0^j * (fraction of level-j chips below c)`` at the deepest level whose
threshold lies above c.

Ancestry: every level records how many distinct level-0 chips its chains descend from.  The chains
move little per step, so a deep level's sample is only as diverse as that number (on the public
case it falls from 333 seeds at level 1 to about 80 at level 4); an estimate that rests on fewer than
:data:`~reliability.sampling.verdicts.MIN_ANCESTORS` of them is flagged.

Uncertainty: the coefficient of variation of each level's fraction is
``(1 - p) / (N p) * (1 + gamma)`` with ``gamma`` from the lag correlations of the indicator along the
chains (Au & Beck, eq. 29).  The standard error reported combines the levels as if fully positively
correlated (sum of the levels' coefficients of variation: an upper bound, Au & Beck section 6.2);
the independent-levels value is kept in the diagnostics.  The interval is log-normal.

:class:`SubsetSimulation` is a :class:`~reliability.sampling.protocol.TailEstimator`; its
:meth:`~SubsetSimulation.simulate` is the algorithm itself, which the hybrid estimator also drives.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from reliability import streams
from reliability.errors import ReliabilityError
from reliability.sampling.checkpoint import open_checkpoint, read_checkpoint_meta, write_checkpoint
from reliability.sampling.protocol import EstimatorRun, TailProblem
from reliability.sampling.results import QuantileEstimate, TailEstimate
from reliability.sampling.verdicts import MAX_COV, MIN_ANCESTORS, MIN_EVENTS, counts_holding, lognormal_ci

__all__ = ["Level", "SubsetProbability", "SubsetRun", "SubsetSimulation", "level_diagnostics", "score_indexed",
           "subset_estimate", "subset_interval", "subset_quantile", "subset_reasons"]


@dataclass(frozen=True)
class SubsetProbability:
    """``P(score < c)`` from a subset-simulation run (:meth:`SubsetRun.probability`).

    Attributes
    ----------
    p : float
        The estimate, ``level_prob * fraction``.
    level : int
        The level it was read at (the deepest whose threshold lies above ``c``).
    fraction : float
        Fraction of that level's chips in the event.
    n_in_event : int
        Chips of that level in the event.
    cov_independent, cov_upper : float
        Coefficient of variation combining the levels as independent, and as fully positively
        correlated (an upper bound: the one reported); ``inf`` with no chip in the event.
    gamma : float
        Au & Beck's correlation factor of the event along the level's chains.
    ess : float
        Effective sample size of the level, ``n / (1 + gamma)``.
    level_prob : float
        Probability of the level's conditioning set.
    n : int
        Chips at the level.
    """

    p: float
    level: int
    fraction: float
    n_in_event: int
    cov_independent: float
    cov_upper: float
    gamma: float
    ess: float
    level_prob: float
    n: int


@dataclass
class Level:
    scores: np.ndarray              # (N,) scores of the level's chips
    counts: np.ndarray              # (N,) n_correct
    prob: float                     # probability of the level's conditioning set (1 for level 0)
    threshold: float                # the conditioning threshold (inf for level 0)
    chain_scores: np.ndarray | None = None   # (n_chains, chain_length) for MCMC levels
    acceptance: float = float("nan")
    rho: float = float("nan")
    ancestors: int = -1             # distinct level-0 chips the level's chains descend from (-1: unknown)
    features: np.ndarray | None = None   # (N, ...) optional per-chip features (``SubsetSimulation.run``),
                                         # in the order of ``scores`` (chain-major for MCMC levels)
    seconds: float = float("nan")   # wall time spent on the level in this process (nan: read from a checkpoint)


@dataclass
class SubsetRun:
    levels: list[Level] = field(default_factory=list)
    n_per_level: int = 0
    p0: float = 0.1
    evaluations: int = 0
    stopped: str = ""

    # ------------------------------------------------------------------ estimates
    def gamma(self, j: int, c: float, where=None) -> float:
        """Au & Beck's correlation factor of the indicator ``score < c`` (and ``where(features)`` when
        given) along level ``j``'s chains."""
        lv = self.levels[j]
        if lv.chain_scores is None:
            return 0.0
        I = lv.chain_scores < c
        if where is not None:
            F = lv.features.reshape(lv.chain_scores.shape + lv.features.shape[1:])
            I = I & np.asarray(where(F), dtype=bool)
        I = I.astype(np.float64)
        nc, L = I.shape
        p = I.mean()
        var = p * (1 - p)
        if var <= 0 or L < 2:
            return 0.0
        g = 0.0
        for k in range(1, L):
            r = np.mean(I[:, :-k] * I[:, k:]) - p * p
            g += 2 * (1 - k / L) * r / var
        return max(g, 0.0)

    def level_for(self, c: float) -> int:
        """The deepest level whose conditioning set contains {score < c}."""
        j = 0
        for i, lv in enumerate(self.levels):
            if lv.threshold >= c:
                j = i
        return j

    def probability(self, c: float, where=None) -> SubsetProbability:
        """P(score < c) with coefficients of variation (independent levels and upper bound); with
        ``where`` (a function of a features array returning a boolean array over its leading axes;
        runs given a ``feature`` only), P(score < c and where(features))."""
        j = self.level_for(c)
        lv = self.levels[j]
        N = lv.scores.size
        inside = lv.scores < c
        if where is not None:
            inside = inside & np.asarray(where(lv.features), dtype=bool)
        q = float(np.mean(inside))
        cov2 = []
        for i in range(j):
            Ni = self.levels[i].scores.size
            p = float(np.mean(self.levels[i].scores < self.levels[i + 1].threshold))
            p = min(max(p, 1.0 / Ni), 1.0)
            cov2.append((1 - p) / (Ni * p) * (1 + self.gamma(i, self.levels[i + 1].threshold)))
        gam = self.gamma(j, c, where)
        if q > 0:
            cov2.append((1 - q) / (N * q) * (1 + gam))
        d_ind = math.sqrt(sum(cov2)) if q > 0 else float("inf")
        d_up = sum(math.sqrt(v) for v in cov2) if q > 0 else float("inf")
        return SubsetProbability(lv.prob * q, j, q, int(round(q * N)), d_ind, d_up, gam, N / (1 + gam), lv.prob, N)

    def score_quantile(self, k: float) -> tuple[float, int]:
        """Score value at probability ``k`` and the level used."""
        best = 0
        for i, lv in enumerate(self.levels):
            if lv.prob >= k:
                best = i
        lv = self.levels[best]
        f = k / lv.prob
        s = np.sort(lv.scores)
        idx = min(max(int(math.ceil(f * s.size)) - 1, 0), s.size - 1)
        return float(s[idx]), best


class SubsetSimulation:
    """Subset simulation (a swappable estimator strategy; see the module docstring).

    Parameters
    ----------
    p0 : float
        Conditional probability per level (0.1).
    n_per_level : int, optional
        Chips per level, fixed.  By default level 0 gets the budget over the number of levels the
        smallest requested quantile needs (6 when only thresholds are given), and each further
        level's chain length spreads the budget left over the levels still predicted to be needed
        (:meth:`levels_left`), so a run that needs few levels uses its whole budget on them.
    target_acceptance : float
        Acceptance rate the pCN step size adapts to.  0.45 (the adaptive conditional sampling
        recommendation of Papaioannou et al. 2015): over 16 seeds of four built cases it lowered
        the relative RMSE at p ~ 1e-3 and 1e-4 from 0.13-0.37 (at 0.30) to 0.10-0.27; 0.60 was
        much worse (48 public-case seeds: 0.69 at 1.4e-5).
    """

    name = "subset-simulation"

    def __init__(self, p0: float = 0.1, n_per_level: int | None = None, target_acceptance: float = 0.45,
                 rho0: float = 0.3):
        if not (0 < p0 < 0.5):
            raise ReliabilityError(f"p0={p0!r}: the conditional probability per level must be in (0, 0.5); "
                                   "the default is 0.1.")
        self.p0 = p0
        self.n_per_level = n_per_level
        self.target_acceptance = target_acceptance
        self.rho0 = rho0

    def plan(self, budget: int, min_prob: float | None) -> int:
        """Chips at level 0: the budget over the number of levels the smallest requested probability
        needs (6 when only thresholds are given: their depth is unknown before level 0)."""
        if self.n_per_level:
            return int(self.n_per_level)
        levels = 6 if min_prob is None else max(2, math.ceil(math.log(min_prob) / math.log(self.p0)) + 1)
        return max(int(budget // levels), int(20 / self.p0))

    def levels_left(self, run: "SubsetRun", b_next: float, c_min: float, min_prob: float | None) -> float:
        """Predicted number of MCMC levels still needed, the next one included.

        Thresholds: the score falls by about the last level's step per level (at level 0, the step
        between the ``p0`` and ``p0^2`` quantiles), and the run stops at the level whose own
        ``p0`` quantile is below the deepest threshold: ``(b_next - c_min) / step`` levels.
        Quantiles: ``log(min_prob / P(next level)) / log(p0)``.  Half a level is added as a margin:
        a run that falls short of its deepest target is flagged, a leftover is not."""
        lv = run.levels[-1]
        p_next = lv.prob * self.p0
        need = 1.0
        if math.isfinite(c_min) and c_min < b_next:
            if len(run.levels) == 1:
                s = np.sort(lv.scores)
                i2 = max(int(round(self.p0 ** 2 * s.size)) - 1, 0)
                step = b_next - float(s[i2])
            else:
                step = lv.threshold - b_next
            need = max(1.0, (b_next - c_min) / step if step > 0 else 3.0)
        if min_prob is not None and p_next > min_prob:
            need = max(need, math.log(min_prob / p_next) / math.log(self.p0))
        return math.ceil(need) + 0.5

    def run(self, problem: TailProblem, *, budget: int, rng=0, checkpoint=None, progress=None) -> EstimatorRun:
        """Estimate the problem's events and quantiles (the
        :class:`~reliability.sampling.protocol.TailEstimator` interface; see :meth:`simulate`)."""
        seed = streams.as_seed(rng)
        fp = problem.fingerprint(self, budget=budget, seed=seed)
        counts_thr = problem.count_thresholds
        run = self.simulate(problem.scorer, problem.latent, [k + 1.0 for k in counts_thr], problem.quantile_min,
                            int(budget), seed, checkpoint=checkpoint, fingerprint=fp, progress=progress)
        n = problem.n_samples
        estimates = tuple(subset_estimate(a, k, run.probability(k + 1.0), run)
                          for a, k in zip(problem.below, counts_thr))
        qs = tuple(subset_quantile(run, kq, n) for kq in problem.quantiles)
        diag = {"levels": level_diagnostics(run), "n_per_level": run.n_per_level, "p0": run.p0, "stopped": run.stopped,
                "latent_dim": problem.latent.dim, "score_tau": problem.scorer.tau}
        return EstimatorRun(estimates, qs, run.evaluations,
                            self.name if len(run.levels) > 1 else "monte-carlo (subset simulation stopped at level 0)",
                            run.stopped != "interrupted", diag)

    def simulate(self, scorer, latent, score_targets: list[float], min_prob: float | None, budget: int, seed: int,
                 chunk: int = 256, checkpoint=None, fingerprint: str = "", progress=None, feature=None) -> SubsetRun:
        """Run (or resume from ``checkpoint``) subset simulation: the algorithm of the module docstring.

        ``feature``, optional: a function of a block list of latent vectors returning an array whose
        first axis is the chip (one number or one vector per chip); it is recorded for every level's
        chips (``Level.features``) so that :meth:`SubsetRun.probability` can restrict an event with
        ``where``.  It costs no chip evaluation and leaves the run itself unchanged.

        After every completed level the state is written to ``checkpoint`` (an ``.npz`` file) when
        given; a later call with the same file and settings resumes there and ends with exactly the
        result of an uninterrupted run.  Ctrl-C returns the levels completed so far
        (``stopped == "interrupted"``).
        """
        N = self.plan(budget, min_prob)
        c_min = min(score_targets) if score_targets else -math.inf
        run, buf, rho = None, None, self.rho0
        if checkpoint is not None:
            got = _load_checkpoint(checkpoint, fingerprint, latent)
            if got is not None:
                run, buf, rho, (scorer.centre, scorer.tau) = got
        try:
            if run is None:
                run = SubsetRun(n_per_level=N, p0=self.p0)
                t_level = time.perf_counter()
                # ---- level 0: independent chips, keyed by index
                counts = np.empty(N, dtype=np.int64)
                margins = np.empty(N)
                step = chunk * 8 if hasattr(scorer, "counts_for_indices") else chunk
                for s0 in range(0, N, step):
                    idx = range(s0, min(N, s0 + step))
                    cnt, mm = score_indexed(scorer, latent, seed, idx)
                    counts[s0:s0 + len(idx)] = cnt
                    margins[s0:s0 + len(idx)] = mm
                    if progress is not None:
                        progress(min(N, s0 + step), budget)
                scorer.set_scale(margins)
                run.evaluations = N
                feats = None
                if feature is not None:
                    # level-0 chips are re-drawn from their keys, as for the seeds below
                    feats = np.concatenate([np.asarray(feature(
                        latent.draw_chips(seed, np.arange(s0, min(N, s0 + chunk)))), dtype=np.float64)
                        for s0 in range(0, N, chunk)])
                run.levels.append(Level(scorer.combine(counts, margins), counts, 1.0, math.inf, ancestors=N,
                                        features=feats, seconds=time.perf_counter() - t_level))
                _save_checkpoint(checkpoint, fingerprint, run, None, rho, scorer)
            while True:
                t_level = time.perf_counter()
                lv = run.levels[-1]
                frac_target = float(np.mean(lv.scores < c_min)) if score_targets else 1.0
                if frac_target >= self.p0 and (min_prob is None or lv.prob * self.p0 <= min_prob):
                    run.stopped = "targets reached"
                    break
                # this level's seeds: its p0 N_j lowest chips; the next level's chain length L
                # spreads the budget left over the levels still predicted (at least 2 steps)
                Nj = lv.scores.size
                nc = max(1, int(round(self.p0 * Nj)))
                order = np.argsort(lv.scores, kind="stable")
                b = 0.5 * (lv.scores[order[nc - 1]] + lv.scores[order[nc]]) if nc < Nj else lv.scores[order[-1]] + 1e-9
                if self.n_per_level:
                    L = max(2, int(self.n_per_level) // nc)
                else:
                    share = (budget - run.evaluations) / self.levels_left(run, b, c_min, min_prob)
                    L = max(2, int(share // nc) + 1, math.ceil(20 / self.p0 / nc))   # >= 20/p0 chips a level
                if run.evaluations + nc * (L - 1) > budget:
                    run.stopped = "budget exhausted"
                    break
                if b <= 0 or (len(run.levels) > 1 and b >= lv.threshold):
                    run.stopped = "no further progress (all chips at the lowest score)"
                    break
                if len(run.levels) == 1:
                    # level-0 seeds are re-drawn from their keys (cheaper than keeping every vector)
                    seeds_z = latent.draw_chips(seed, order[:nc])
                    seeds_s = lv.scores[order[:nc]]
                    seeds_a = order[:nc].astype(np.int64)
                else:
                    keep = np.argsort(buf[1], kind="stable")[:nc]
                    if keep.size < nc:
                        raise RuntimeError("subset simulation: seed buffer smaller than the level's seed count")
                    seeds_z, seeds_s = latent.take(buf[0], keep), buf[1][keep]
                    seeds_a = buf[2][keep]
                level_no = len(run.levels)
                rng = streams.stream(seed, streams.SUBSET_CHAINS, level_no)
                state_z = [a.copy() for a in seeds_z]
                state_s = np.asarray(seeds_s, dtype=float).copy()
                state_c = np.floor(state_s).astype(np.int64)
                chain = np.empty((nc, L))
                chain_c = np.empty((nc, L), dtype=np.int64)
                chain[:, 0] = state_s
                chain_c[:, 0] = state_c
                chain_f = None
                if feature is not None:
                    state_f = np.asarray(feature(state_z), dtype=np.float64)
                    chain_f = np.empty((nc, L) + state_f.shape[1:])
                    chain_f[:, 0] = state_f
                n_keep = max(1, int(round(self.p0 * nc * L)))   # the next level's seed count
                new_buf = ([a.copy() for a in state_z], state_s.copy(), seeds_a.copy())
                acc_total = 0
                evals = run.evaluations
                for step in range(1, L):
                    prop = latent.pcn(state_z, rho, rng)
                    s_new, c_new = scorer.score(prop)
                    evals += nc
                    ok = s_new < b
                    acc_total += int(ok.sum())
                    if ok.any():
                        for bi in range(len(state_z)):
                            state_z[bi][ok] = prop[bi][ok]
                        state_s = np.where(ok, s_new, state_s)
                        state_c = np.where(ok, c_new, state_c)
                    chain[:, step] = state_s
                    chain_c[:, step] = state_c
                    if chain_f is not None:
                        okf = ok.reshape((-1,) + (1,) * (state_f.ndim - 1))
                        state_f = np.where(okf, np.asarray(feature(prop), dtype=np.float64), state_f)
                        chain_f[:, step] = state_f
                    new_buf = _keep_lowest(new_buf, state_z, state_s, seeds_a, n_keep)
                    rho = float(np.clip(rho * math.exp(0.6 * (ok.mean() - self.target_acceptance)), 1e-3, 1.0))
                    if progress is not None:
                        progress(evals, budget)
                # P(score < b) = P_prev * fraction of the previous level below b
                run.levels.append(Level(chain.ravel(), chain_c.ravel(), lv.prob * float(np.mean(lv.scores < b)), b,
                                        chain, acc_total / (nc * max(L - 1, 1)), rho,
                                        int(np.unique(seeds_a).size) if np.all(seeds_a >= 0) else -1,
                                        None if chain_f is None else chain_f.reshape((nc * L,) + chain_f.shape[2:]),
                                        time.perf_counter() - t_level))
                run.evaluations = evals
                buf = new_buf
                _save_checkpoint(checkpoint, fingerprint, run, buf, rho, scorer)
        except KeyboardInterrupt:
            if run is None or not run.levels:
                raise
            run.stopped = "interrupted"
        return run


def score_indexed(scorer, latent, seed, idx):
    """Counts and margins of the level-0 chips ``idx`` (keyed by ``(seed, index)``)."""
    if hasattr(scorer, "counts_for_indices"):
        return scorer.counts_for_indices(seed, idx)
    return scorer.counts_and_margins(latent.draw_chips(seed, idx))


def _keep_lowest(buf, z, s, anc, n):
    """Keep the ``n`` lowest-scoring vectors among the buffer ``(vectors, scores, ancestors)`` and a
    new batch ``z, s`` whose chips descend from level-0 chips ``anc`` (copies kept rows)."""
    buf_z, buf_s, buf_a = buf
    all_s = np.concatenate([buf_s, s])
    keep = np.argsort(all_s, kind="stable")[:n]
    nb = buf_s.size
    old, new = keep[keep < nb], keep[keep >= nb] - nb
    out = []
    for bb, zz in zip(buf_z, z):
        out.append(np.concatenate([bb[old], zz[new]], axis=0))
    s_out = np.concatenate([buf_s[old], np.asarray(s)[new]])
    return out, s_out, np.concatenate([buf_a[old], np.asarray(anc)[new]])


def _save_checkpoint(path, fingerprint, run, buf, rho, scorer):
    if path is None:
        return
    arrays = {}
    meta = {"fingerprint": fingerprint, "n_per_level": run.n_per_level, "p0": run.p0, "evaluations": run.evaluations,
            "rho": rho, "centre": scorer.centre, "tau": scorer.tau, "levels": []}
    for j, lv in enumerate(run.levels):
        arrays[f"l{j}_scores"] = lv.scores
        arrays[f"l{j}_counts"] = lv.counts
        if lv.chain_scores is not None:
            arrays[f"l{j}_chain"] = lv.chain_scores
        if lv.features is not None:
            arrays[f"l{j}_features"] = lv.features
        meta["levels"].append({"prob": lv.prob, "threshold": None if math.isinf(lv.threshold) else lv.threshold,
                               "acceptance": lv.acceptance, "rho": lv.rho, "ancestors": lv.ancestors})
    if buf is not None:
        for i, b in enumerate(buf[0]):
            arrays[f"buf_z{i}"] = b
        arrays["buf_s"] = buf[1]
        arrays["buf_a"] = buf[2]
    write_checkpoint(path, meta, arrays)


def _load_checkpoint(path, fingerprint, latent):
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        return None
    with open_checkpoint(path) as z:
        meta = read_checkpoint_meta(path, z, fingerprint)
        run = SubsetRun(n_per_level=meta["n_per_level"], p0=meta["p0"], evaluations=meta["evaluations"])
        for j, lm in enumerate(meta["levels"]):
            run.levels.append(Level(z[f"l{j}_scores"], z[f"l{j}_counts"], lm["prob"],
                                    math.inf if lm["threshold"] is None else lm["threshold"],
                                    z[f"l{j}_chain"] if f"l{j}_chain" in z.files else None, lm["acceptance"], lm["rho"],
                                    int(lm.get("ancestors", -1)),
                                    z[f"l{j}_features"] if f"l{j}_features" in z.files else None))
        buf = None
        if "buf_s" in z.files:
            # checkpoints written before ancestry was tracked resume with it unknown (-1)
            anc = z["buf_a"] if "buf_a" in z.files else np.full(z["buf_s"].size, -1, dtype=np.int64)
            buf = ([z[f"buf_z{i}"] for i in range(len(latent.blocks))], z["buf_s"], anc)
    return run, buf, meta["rho"], (meta["centre"], meta["tau"])


# ---------------------------------------------------------------------- estimates and verdicts
def level_diagnostics(run: SubsetRun) -> list[dict]:
    """One dict per level: threshold, probability, acceptance, step size, ancestry, count range, chips
    and seconds (wall time in this process; nan for a level read from a checkpoint)."""
    return [{"threshold_score": lv.threshold, "probability": lv.prob, "acceptance": lv.acceptance, "rho": lv.rho,
             "ancestors": lv.ancestors, "min_correct": int(lv.counts.min()), "max_correct": int(lv.counts.max()),
             "chips": int(lv.counts.size), "seconds": lv.seconds}
            for lv in run.levels]


def subset_reasons(r: SubsetProbability, run: SubsetRun) -> list[str]:
    """Why subset simulation's estimate ``r`` is not to be trusted (empty: it is)."""
    d = r.cov_upper
    reasons = []
    if r.n_in_event < MIN_EVENTS:
        reasons.append(f"only {r.n_in_event} chips in the event at the deepest level (< {MIN_EVENTS})")
    if math.isfinite(d) and d > MAX_COV:
        reasons.append(f"coefficient of variation {d:.2f} > {MAX_COV}")
    low_acc = [i for i, lv in enumerate(run.levels[1:r.level + 1], 1) if lv.acceptance < 0.05]
    if low_acc:
        reasons.append(f"Markov chains barely moved at level(s) {low_acc} (acceptance < 5 %)")
    anc = run.levels[r.level].ancestors
    if 0 <= anc < MIN_ANCESTORS:
        reasons.append(f"the level holding the event descends from only {anc} level-0 chips (< {MIN_ANCESTORS}): "
                       "its sample is too little diverse; raise --budget")
    if run.stopped in ("budget exhausted", "interrupted") and r.level == len(run.levels) - 1 \
            and r.fraction < run.p0:
        reasons.append("the budget ran out before the event was reached with p0 of the chips"
                       if run.stopped == "budget exhausted" else
                       "the run was interrupted before the event was reached with p0 of the chips")
    return reasons


def subset_interval(r: SubsetProbability) -> tuple[float, float]:
    """Log-normal 95 % interval; with no chip in the event, the rule of three at the deepest level."""
    if r.p > 0 and math.isfinite(r.cov_upper):
        return lognormal_ci(r.p, r.cov_upper)
    return 0.0, r.level_prob * 3.0 / r.n


def subset_estimate(a: float, k: int, r: SubsetProbability, run: SubsetRun) -> TailEstimate:
    """The estimate of ``P(n_correct <= k)`` (accuracy ``a``) from ``r = run.probability(k + 1)``."""
    p = r.p
    d = r.cov_upper
    reasons = subset_reasons(r, run)
    ci = subset_interval(r)
    se = p * d if p > 0 and math.isfinite(d) else float("nan")
    method = "subset-simulation" if r.level > 0 else "monte-carlo"
    return TailEstimate(a, float(p), float(se), (float(ci[0]), float(min(ci[1], 1.0))), method, int(run.evaluations),
                        float(r.ess), not reasons, "; ".join(reasons) or None, int(k))


def subset_quantile(run: SubsetRun, k: float, n: int) -> QuantileEstimate:
    """The accuracy at tail probability ``k`` (``n`` evaluation samples), with its interval."""
    s, level = run.score_quantile(k)
    c = int(math.floor(s))
    lo_c, hi_c = counts_holding(k, c, n, lambda cc: subset_interval(run.probability(cc + 1.0)))
    r = run.probability(c + 1.0)
    reasons = []
    if r.n_in_event < MIN_EVENTS:
        reasons.append(f"only {r.n_in_event} chips at or below the quantile")
    if run.levels[-1].prob * run.p0 > k and run.stopped in ("budget exhausted", "interrupted"):
        reasons.append("the run ended (budget or interruption) before reaching this probability")
    # no more reliable than the estimates on either side of the crossing (as the tail estimates say)
    for cc in (c, c - 1):
        if 0 <= cc <= n and not reasons:
            why = subset_reasons(run.probability(cc + 1.0), run)
            if why:
                reasons.append(f"the estimate of P(count <= {cc}) it rests on is flagged: {'; '.join(why)}")
    return QuantileEstimate(float(k), c / n, (lo_c / n, hi_c / n), not reasons, "; ".join(reasons) or None)
