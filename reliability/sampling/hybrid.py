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
   :mod:`reliability.sampling.importance`) is run from the origin and from low-scoring pilot chips
   towards the boundary of a smooth surrogate of the deepest event; each next start is the lowest
   pilot chip that the modes found so far do not explain (no projection on them reaches 1.5).
   Distinct end points
   (cosine < 0.9) are the failure modes; unit directions ``u_m``, reliability indices ``beta_m``.
   Modes with ``beta_m > min beta + 1.5`` are dropped (their mass is ``exp(-beta^2/2)`` smaller).
2. **Split.**  With ``t_m = u_m . z`` and a cut ``c``, the latent space splits into
   ``H = {max_m t_m >= c}`` (near some mode) and its complement ``L``; ``P(F) = P(F, H) + P(F, L)``.
   Failing chips far from every design point are reached by importance sampling only through its
   defensive prior, where the weights are largest, and carry most of its variance; subset
   simulation's chains reach them in proportion to their mass, but its error grows with the share
   of the event they hold.  That share falls with the event's depth (public case, largest
   coordinate below 2.5: 17 % at 1.4e-3, 3 % at 1.9e-4, none seen at 1.4e-5; 40 % at 5e-3 in
   10^5 dimensions), so ``c`` is 2.5 when the rarest event asked for is below 5e-4 (subset
   simulation's estimate, known before importance sampling starts, or the smallest quantile ``k``)
   and 1.5 otherwise; ``diagnostics["cut_because"]`` says which.
3. **Subset simulation** (30 % of the budget) estimates ``P(F, L)``: it records every chip's
   projections and restricts the event to ``L`` (:meth:`SubsetRun.probability` with ``where``).
4. **Importance sampling** (the rest) estimates ``P(F, H)`` in two stages, the first a
   :class:`ModeMixture` (the second one too, or a blend with it): mode ``m`` with probability
   ``pi_m``, ``t_m`` from a one-dimensional density ``g_m`` on ``[c, inf)`` (always with a defensive
   truncated prior, weight 0.2), the rest of ``z`` exactly from the prior
   (``z = xi + (t - u_m . xi) u_m``).  The weight depends on the ``K``
   projections only and is bounded on ``H`` by ``Phi(-c) / (0.2 min pi)``: no weight degeneracy in
   any dimension (also with the projection mixture: its ``q / phi`` is a ratio of ``K``-dimensional
   densities, and the first stage's share of the mixture keeps the bound).

   - *First stage* (a quarter of the chips): ``pi`` uniform, ``g`` the same for every mode, normals
     fitted to the subset levels' projections and one at the median ``beta``.
   - *Second stage*: each mode's number of correct samples given its coordinate is fitted on the
     first stage's chips drawn from it (:func:`fit_count_model`), which gives ``P(F | t_m)``; the
     proposal is then the variance-optimal ``g_m ~ phi sqrt(P(F | t_m))`` with modes weighted by
     its integral (:func:`sqrt_optimal`).  The count is also fitted on all ``K`` coordinates at
     once (quadratic with cross terms), and a Gaussian mixture over ``t = U z`` is fitted to
     ``phi_K(t) sqrt(P(F | t))`` (:mod:`reliability.sampling.projected`): it reaches chips that
     fail through two modes at once, which the per-mode proposal reaches only through its
     defensive prior.  A guard keeps, among the per-mode proposal, its half-half blend with the
     first stage, the first stage again, and 0.2 first stage + 0.4 per-mode + 0.4 mixture
     ("projected"), whichever the first stage's chips say has the smallest variance.  Chips the
     mixture draws outside H are not evaluated and count as zeros.
   - All chips are weighted against the mixture of the two stages in the proportions of their chips
     (the balance heuristic).

5. **Uncertainty.**  ``P(F, H)`` has its sample standard error, raised when the subset
   simulation's samples of the event (approximately distributed as the chips in the event) predict
   a larger second moment of the weights: rare heavy weights the importance sample did not draw
   still widen the interval.  ``P(F, L)`` has subset simulation's upper-bound coefficient of
   variation (or, with no chip of the event in ``L``, half the rule-of-three bound as its standard
   error).  The two are independent; the 95 % interval is log-normal on the sum.

Accuracy: ``benchmarks/tail.py``; speed and the time of each stage (``diagnostics["seconds"]``):
``benchmarks/tail_speed.py``.  The mode search is :mod:`reliability.sampling.modes`, the proposals
:mod:`reliability.sampling.proposals` and :mod:`reliability.sampling.projected`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reliability import streams
from reliability.errors import ReliabilityError
from reliability.sampling.checkpoint import open_checkpoint, read_checkpoint_meta, write_checkpoint
from reliability.sampling.modes import Modes, find_modes, gradient_sees_all, project, shift
from reliability.sampling.projected import NOT_EVALUATED, StageBlend, fit_joint_count_model, fit_projection_mixture
from reliability.sampling.proposals import ModeMixture, fit_count_model, sqrt_optimal
from reliability.sampling.protocol import EstimatorRun, TailProblem
from reliability.sampling.results import QuantileEstimate, TailEstimate
from reliability.sampling.subset import (SubsetProbability, SubsetRun, SubsetSimulation, level_diagnostics,
                                         subset_estimate, subset_quantile, subset_reasons)
from reliability.sampling.verdicts import MAX_COV, MAX_TOP_SHARE, MIN_EVENTS, counts_holding, lognormal_ci, pareto_khat

__all__ = ["HYBRID_NAME", "HybridProbability", "HybridRun", "HybridSampling", "hybrid_estimate", "hybrid_estimates",
           "hybrid_quantile"]

#: the hybrid's method name in results
HYBRID_NAME = "hybrid (design-point importance sampling + subset simulation)"
#: importance-sampling chips per chunk (chunk ``c`` draws from ``streams.stream(seed, HYBRID_IS, c)``)
CHUNK = 256
#: below this budget the mode search and the split do not pay: subset simulation alone
MIN_BUDGET = 2000
#: the split's cut: DEEP_CUT when the rarest event asked for is below DEEP_BELOW, else SHALLOW_CUT
DEEP_CUT = 2.5
SHALLOW_CUT = 1.5
DEEP_BELOW = 5e-4
#: the "projected" second-stage candidate: weights of the first stage, the per-mode fit and the
#: projection mixture (whose fit draws from ``streams.stream(seed, HYBRID_IS, PROJECTED_KEY)``)
PROJECTED_BLEND = (0.2, 0.4, 0.4)


@dataclass(frozen=True)
class HybridProbability:
    """``P(n_correct <= k)`` from a hybrid run (:meth:`HybridRun.probability`).

    ``p = p_hi + p_lo`` with coefficient of variation ``cov``: the importance-sampling part ``P(F, H)``
    with the standard error used for it (``se_hi``: the larger of the sample one, ``se_hi_sample``,
    and the one predicted from subset simulation's chips, ``se_hi_predicted``), and subset
    simulation's part ``P(F, L)`` with ``se_lo``, read from ``subset``.  ``n_is``/``n_is_event``:
    importance chips drawn / in the event; ``ess``, ``khat`` (nan: too few chips), ``top_share`` (the
    largest share one chip carries), ``lo_share`` (the low part's share).  ``subset_only``: no
    importance part (no mode, or fewer than two chips); the ``None`` fields are then unset.
    """

    p: float
    cov: float
    p_hi: float
    se_hi: float
    p_lo: float
    se_lo: float
    subset: SubsetProbability
    n_is: int
    n_is_event: int
    ess: float
    khat: float
    lo_share: float
    subset_only: bool
    se_hi_sample: float | None = None
    se_hi_predicted: float | None = None
    top_share: float | None = None



@dataclass
class HybridRun:
    modes: Modes
    cut: float
    defensive: float
    subset: SubsetRun
    components: list = field(default_factory=list)     # (mean, sd) of the first stage's normals
    stages: list = field(default_factory=list)         # each stage's proposal: ModeMixture or StageBlend
    count_models: list = field(default_factory=list)   # per mode, fitted on the first stage (diagnostics)
    joint_model: dict | None = None                    # all modes together, fitted on the first stage
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    proj: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    drawn: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))   # the mode each chip was drawn from
    stage: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    stage_choice: dict = field(default_factory=dict)   # which second stage was kept, and why
    cut_because: str = ""
    stopped: str = ""
    seed: int = 0
    seconds: dict = field(default_factory=dict)   # wall time of the importance stages in this process

    @property
    def evaluated(self) -> int:
        """Importance-sampling chips evaluated (drawn chips outside H are not)."""
        return int(np.sum(self.counts != NOT_EVALUATED))

    @property
    def evaluations(self) -> int:
        return int(self.modes.evaluations + self.subset.evaluations + self.evaluated)

    # ------------------------------------------------------------------ the proposal
    def log_weight(self, proj: np.ndarray) -> np.ndarray:
        """``log(phi / q)`` for chips with projections ``proj`` (..., K), ``q`` the mixture of the
        stages in the proportions of their chips (the balance heuristic of multiple importance
        sampling); ``+inf`` outside H when every stage is a :class:`ModeMixture` (``q`` is zero there);
        chips drawn outside H by a :class:`~reliability.sampling.projected.ProjectionMixture` are never
        evaluated and count as zeros."""
        n = np.bincount(self.stage, minlength=len(self.stages)).astype(float) if self.stage.size else np.ones(1)
        terms = [math.log(c / n.sum()) + st.log_ratio(proj) for st, c in zip(self.stages, n) if c > 0]
        return -np.logaddexp.reduce(np.stack(terms), axis=0)

    @property
    def logw(self) -> np.ndarray:
        """The importance chips' log weights (cached until chips or stages change)."""
        key = (self.counts.size, len(self.stages))
        if getattr(self, "_logw_key", None) != key:
            self._logw = self.log_weight(self.proj) if self.counts.size else np.zeros(0)
            self._logw_key = key
        return self._logw

    def outside(self, proj: np.ndarray) -> np.ndarray:
        """The region L (far from every mode), given projections (..., K)."""
        return np.asarray(proj).max(axis=-1) < self.cut

    def place(self, rng: np.random.Generator, proj: np.ndarray, stage: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage ``stage``'s chips ``z = xi + C @ U`` from prior draws ``xi`` with projections ``proj``
        (S, K): the drawn modes (-1: none), ``C`` and the chips' projections ``U z``."""
        drawn, C = self.stages[stage].coefficients(rng, proj)
        U = self.modes.U
        return drawn, C, proj + C @ (U @ U.T)

    # ------------------------------------------------------------------ estimates
    def probability(self, k: int) -> HybridProbability:
        """P(n_correct <= k): the split estimate with its parts and diagnostics."""
        c = k + 1.0
        sus = self.subset
        if self.modes.K == 0 or self.counts.size < 2:
            r = sus.probability(c)
            d = r.cov_upper
            return HybridProbability(r.p, d, 0.0, 0.0, r.p, r.p * d if r.p > 0 else float("nan"), r, 0, 0, r.ess,
                                     float("nan"), 1.0, True)
        n = self.counts.size
        ind = self.counts <= k
        logw = self.logw
        w = np.exp(logw)
        f = w * ind
        p_hi = float(f.mean())
        se_hi = float(f.std(ddof=1) / math.sqrt(n))
        r = sus.probability(c, where=self.outside)
        p_lo = r.p
        if p_lo > 0 and math.isfinite(r.cov_upper):
            se_lo = p_lo * r.cov_upper
        else:   # no chip of the event in L: half the rule-of-three bound as the standard error
            se_lo = 0.5 * r.level_prob * 3.0 / max(r.ess, 1.0)
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
        khat = pareto_khat(logw[ind]) if int(ind.sum()) >= 20 else float("nan")
        ess = float(f.sum() ** 2 / np.sum(f * f)) if np.any(f > 0) else 0.0
        top = float(f.max() / f.sum()) if np.any(f > 0) else float("nan")   # the largest chip's share
        return HybridProbability(p, se / p if p > 0 else float("inf"), p_hi, se_hi_used, p_lo, se_lo, r, n,
                                 int(ind.sum()), ess, khat, p_lo / p if p > 0 else float("nan"), False,
                                 se_hi_sample=se_hi, se_hi_predicted=se_pred, top_share=top)


class HybridSampling:
    """Importance sampling along the failure modes' design points plus subset simulation (module
    docstring).  A swappable estimator strategy, the default of :func:`estimate_tail`.

    Parameters
    ----------
    subset_share : float
        Fraction of the budget (mode search included) spent before importance sampling starts.
    cut : float or None
        The split ``max_m u_m . z >= cut``; ``None`` (default): 2.5 when the rarest event asked for
        is below 5e-4 by the subset simulation's estimate (or a quantile ``k`` below 5e-4 is asked
        for), else 1.5 (module docstring).
    defensive : float
        Weight of the truncated prior in every one-dimensional proposal.
    first_stage : float
        Fraction of the importance-sampling chips drawn from the first proposal (normals fitted to the
        subset levels); the rest come from the proposal fitted to them (:func:`sqrt_optimal`).
    mode_floor : float
        In the second stage every mode keeps at least ``mode_floor / K`` of the chips.
    projected : bool
        Offer the guard the second-stage candidate with a projection mixture
        (:mod:`reliability.sampling.projected`); ``False`` gives the per-mode proposals only.
    pilot, starts, iterations :
        Pilot chips, HL-RF starting points besides the origin, HL-RF steps per start; the mode
        search spends at most 2.5 % (pilot) + 4 % (HL-RF) of the budget.
    """

    name = "hybrid"
    #: the proposal's version, part of a checkpoint's fingerprint: chips saved by another version were
    #: drawn from another second stage, so such a checkpoint is refused (2: the projection mixture)
    version = 2

    def __init__(self, subset_share: float = 0.3, cut: float | None = None, defensive: float = 0.2, first_stage: float = 0.25,
                 mode_floor: float = 0.25, projected: bool = True, pilot: int = 500, starts: int = 24,
                 iterations: int = 20, subset: SubsetSimulation | None = None):
        if not 0.05 <= subset_share <= 0.9:
            raise ReliabilityError(f"subset_share={subset_share!r}: the budget share before importance sampling "
                                   "must be in [0.05, 0.9]; the default is 0.3.")
        if not 0 < defensive < 1:
            raise ReliabilityError(f"defensive={defensive!r}: the truncated prior's weight must be in (0, 1); "
                                   "the default is 0.2.")
        if not 0 < first_stage <= 1:
            raise ReliabilityError(f"first_stage={first_stage!r}: the first stage's share of the chips must be in "
                                   "(0, 1]; the default is 0.25.")
        if not 0 < mode_floor <= 1:
            raise ReliabilityError(f"mode_floor={mode_floor!r}: each mode's least share must be in (0, 1]; "
                                   "the default is 0.25.")
        self.subset_share = subset_share
        if cut is not None and not 0.5 <= cut <= 4.0:
            raise ReliabilityError(f"cut={cut!r}: the split must be in [0.5, 4], or None to choose it by the rarest "
                                   "event.")
        self.cut = None if cut is None else float(cut)
        self.defensive = float(defensive)
        self.first_stage = float(first_stage)
        self.mode_floor = float(mode_floor)
        self.projected = bool(projected)
        self.pilot = int(pilot)
        self.starts = int(starts)
        self.iterations = int(iterations)
        self.subset = subset or SubsetSimulation()
        self.p0 = self.subset.p0

    def run(self, problem: TailProblem, *, budget: int, rng=0, checkpoint=None, progress=None) -> EstimatorRun:
        """Estimate the problem's events and quantiles (the
        :class:`~reliability.sampling.protocol.TailEstimator` interface; see :meth:`simulate`)."""
        seed = streams.as_seed(rng)
        budget = int(budget)
        fp = problem.fingerprint(self, budget=budget, seed=seed, method="hybrid")
        run = self.simulate(problem.scorer, problem.latent, list(problem.count_thresholds), problem.quantile_min,
                            budget, seed, checkpoint=checkpoint, fingerprint=fp, progress=progress)
        return hybrid_estimates(problem, run, budget)

    def simulate(self, scorer, latent, count_targets: list[int], quantile_min: float | None, budget: int, seed: int,
                 checkpoint=None, fingerprint: str = "", progress=None) -> HybridRun:
        """Run (or resume from ``checkpoint``) the hybrid: mode search, subset simulation, then
        importance sampling in two stages (module docstring)."""
        ck = Path(checkpoint) if checkpoint is not None else None
        ck_sub = ck.with_name(ck.stem + "-subset.npz") if ck is not None else None
        state = _load(ck, fingerprint) if ck is not None else None
        if state is not None:
            modes, saved = state
        else:
            saved = None
            if budget < MIN_BUDGET or not gradient_sees_all(latent):
                modes = Modes(np.zeros((0, latent.dim)), np.zeros(0), float("nan"), -1, 0)   # subset simulation alone
            else:
                pilot = min(self.pilot, budget // 40)
                design = min(count_targets) if count_targets else None
                modes = find_modes(scorer, latent, design, quantile_min, seed, pilot, self.starts, self.iterations,
                                   pilot + int(0.04 * budget))
                _save(ck, fingerprint, modes, None)
        if progress is not None:
            progress(modes.evaluations, budget)
        U = modes.U
        feature = (lambda z: project(z, U)) if modes.K else None
        sus_budget = budget - modes.evaluations if modes.K == 0 else int(self.subset_share * budget) - modes.evaluations
        sub_progress = None if progress is None else (lambda d, t: progress(modes.evaluations + d, budget))
        sus = self.subset.simulate(scorer, latent, [k + 1.0 for k in count_targets], quantile_min, max(sus_budget, 100),
                              seed, checkpoint=ck_sub, fingerprint=fingerprint, progress=sub_progress, feature=feature)
        cut, because = self._cut(sus, count_targets, quantile_min)
        run = HybridRun(modes, cut, self.defensive, sus, cut_because=because, seed=int(seed))
        if modes.K == 0:
            run.stopped = sus.stopped
            return run
        comps = []
        for lv in sus.levels[1:]:
            t = lv.features.max(axis=1)
            t = t[t >= cut]
            if t.size >= 10:
                comps.append((float(t.mean()), float(max(t.std(), 0.3))))
        comps.append((float(max(np.median(modes.norms), cut)), 0.5))
        run.components = comps
        run.stages = [ModeMixture.from_normals(cut, self.defensive, modes.K, comps)]
        run.proj = np.zeros((0, modes.K))
        if saved is not None:
            run.counts, run.proj, run.drawn, run.stage = saved
        n_is = budget - modes.evaluations - sus.evaluations
        # the first stage ends on a chunk boundary, so that a resumed run splits exactly as the original
        n_first = n_is if self.first_stage >= 1 else min(n_is, max(CHUNK, CHUNK * round(self.first_stage * n_is / CHUNK)))
        if sus.stopped == "interrupted":
            run.stopped = "interrupted"
            return run
        lists = [[run.counts], [run.proj], [run.drawn], [run.stage]]
        done = run.counts.size
        try:
            while True:
                # the second stage is fitted once the first is complete (also on resuming past it)
                if n_first <= done and n_first < n_is and len(run.stages) == 1:
                    t0 = time.perf_counter()
                    run.counts, run.proj, run.drawn, run.stage = (np.concatenate(x) for x in lists)
                    self._second_stage(run, count_targets, quantile_min)
                    run.seconds["second_stage_fit"] = time.perf_counter() - t0
                if done >= n_is:
                    break
                t0 = time.perf_counter()
                ci = done // CHUNK
                stage = 0 if done < n_first else 1
                S = min(CHUNK, (n_first if stage == 0 else n_is) - done)
                rng = streams.stream(seed, streams.HYBRID_IS, ci)
                z = latent.draw(rng, S)
                drawn, C, proj = run.place(rng, project(z, U), stage)
                inside = ~run.outside(proj)          # a chip drawn outside H is not evaluated: a zero
                cnt = np.full(S, NOT_EVALUATED, dtype=np.int64)
                if inside.any():
                    z = latent.take(z, inside) if not inside.all() else z
                    shift(z, C[inside], U)
                    cnt[inside] = scorer.counts_and_margins(z)[0]
                for x, v in zip(lists, (cnt, proj, drawn, np.full(S, stage))):
                    x.append(v)
                done += S
                key = ("importance_first_stage", "importance_second_stage")[stage]     # seconds, summed
                run.seconds[key] = run.seconds.get(key, 0.0) + time.perf_counter() - t0
                if progress is not None:
                    progress(modes.evaluations + sus.evaluations + done, budget)   # draws, skipped ones included
                if ck is not None and (ci % 8 == 7 or done >= n_is or done == n_first):
                    _save(ck, fingerprint, modes, [np.concatenate(x) for x in lists])
            run.stopped = "complete"
        except KeyboardInterrupt:
            run.stopped = "interrupted"
        run.counts, run.proj, run.drawn, run.stage = (np.concatenate(x) for x in lists)
        return run

    def _cut(self, sus: SubsetRun, count_targets, quantile_min) -> tuple[float, str]:
        """The split: ``self.cut`` when given, else :data:`DEEP_CUT` when the rarest event asked for
        (subset simulation's estimate, or the smallest quantile ``k``) is below :data:`DEEP_BELOW`,
        :data:`SHALLOW_CUT` otherwise (module docstring).  A function of the subset run only, so a
        resumed run splits as the original.  Either split is unbiased; because the choice reads the
        same subset run whose chips also estimate ``P(F, L)``, a rarest event whose probability is
        close to :data:`DEEP_BELOW` may carry a small selection effect (not measured; the benchmark
        cases' rarest events are 20 times or more below it)."""
        if self.cut is not None:
            return self.cut, "given"
        ps = [sus.probability(k + 1.0).p for k in count_targets]
        if quantile_min is not None:
            ps.append(float(quantile_min))
        rarest = min(ps) if ps else 0.0
        cut = DEEP_CUT if rarest < DEEP_BELOW else SHALLOW_CUT
        return cut, (f"the rarest event asked for has probability {rarest:.2g} "
                     f"({'below' if rarest < DEEP_BELOW else 'at or above'} {DEEP_BELOW:g}): split at {cut:g}")

    def _second_stage(self, run: HybridRun, count_targets, quantile_min):
        """Fit each mode's count model, and one of all modes together, on the first stage's chips, and
        add the proposal for the events asked for (with only quantiles asked for: the count whose
        estimated probability from the first stage reaches the smallest of them) that the first stage's
        chips say has the smallest variance among: the per-mode :func:`sqrt_optimal` proposal
        (``"fitted"``), its half-half blend with the first stage (``"half"``), the first stage again
        (``"first"``), and (``"projected"``) 0.2 first stage + 0.4 ``"fitted"`` + 0.4 a
        :class:`~reliability.sampling.projected.ProjectionMixture` fitted to the joint count model, which
        also reaches chips failing through two modes at once."""
        first = run.stage == 0
        models = [fit_count_model(run.proj[first & (run.drawn == m), m], run.counts[first & (run.drawn == m)])
                  for m in range(run.modes.K)]
        targets = list(count_targets)
        if quantile_min is not None:
            c = int(run.counts.min())
            while c < run.subset.levels[0].counts.max() and run.probability(c).p < quantile_min:
                c += 1
            targets.append(c)
        run.count_models = models
        fitted = sqrt_optimal(run.cut, self.defensive, self.mode_floor, models, targets, run.modes.norms)
        first_q = run.stages[0]
        # a guard against a count model that describes the chips badly (few evaluation samples, a step-like
        # count): the first stage's chips estimate each candidate's second moment, E_A[w_A w_q 1_F], and
        # the candidate with the smallest summed relative variance over the events is kept
        lw_a = -first_q.log_ratio(run.proj[first])
        events = [ind for ind in (run.counts[first] <= k for k in targets) if ind.any()]
        p = [float(np.mean(np.exp(lw_a) * ind)) for ind in events]
        cands = {"fitted": fitted, "half": first_q.blend(fitted, 0.5), "first": first_q}
        run.joint_model = fit_joint_count_model(run.proj[first], run.counts[first]) if self.projected else None
        projected_info = {"reason": "too few first-stage chips for a joint count model" if self.projected
                          else "not asked for"}
        if run.joint_model is not None:
            pm, projected_info = fit_projection_mixture(
                run.modes.U, run.modes.norms, run.cut, run.joint_model, targets,
                streams.stream(run.seed, streams.HYBRID_IS, streams.PROJECTED_KEY))
            if pm is not None:
                cands["projected"] = StageBlend([first_q, fitted, pm], np.array(PROJECTED_BLEND))
        score = {}
        for name, q in cands.items():
            w2 = np.exp(lw_a - q.log_ratio(run.proj[first]))
            score[name] = sum(float(np.mean(w2 * ind)) / (pk * pk) - 1 for ind, pk in zip(events, p))
        run.stage_choice = {"chosen": min(score, key=score.get), "relative_variance": score,
                            "projected": projected_info}
        run.stages.append(cands[run.stage_choice["chosen"]])


def _save(path, fingerprint, modes: Modes, chips):
    if path is None:
        return
    meta = {"fingerprint": fingerprint, "temperature": modes.temperature, "design_count": modes.design_count,
            "evaluations": modes.evaluations}
    K = modes.K
    counts, proj, drawn, stage = chips if chips is not None else (np.zeros(0, np.int64), np.zeros((0, K)),
                                                                   np.zeros(0, np.int64), np.zeros(0, np.int64))
    write_checkpoint(path, meta, {"U": modes.U, "norms": modes.norms, "counts": counts, "proj": proj,
                                  "drawn": drawn, "stage": stage})


def _load(path, fingerprint):
    if path is None or not path.exists():
        return None
    with open_checkpoint(path) as z:
        if "U" not in z.files:
            raise ReliabilityError(f"checkpoint {path} was not written by the hybrid estimator (an older subset-"
                                   "simulation checkpoint?); resume it with method='subset' or delete it.")
        if "proj" not in z.files:
            raise ReliabilityError(f"checkpoint {path} was written by an older version of the hybrid estimator, "
                                   "whose proposal differs; finish it with that version or delete it.")
        meta = read_checkpoint_meta(path, z, fingerprint)
        modes = Modes(z["U"], z["norms"], meta["temperature"], meta["design_count"], meta["evaluations"])
        return modes, (z["counts"], z["proj"].reshape(-1, modes.K), z["drawn"], z["stage"])


# ---------------------------------------------------------------------- estimates and verdicts
def hybrid_estimates(problem: TailProblem, run: HybridRun, budget: int) -> EstimatorRun:
    """The estimates, quantiles and diagnostics of a hybrid run on ``problem``."""
    t0 = time.perf_counter()
    n = problem.n_samples
    latent = problem.latent
    parts = [run.probability(k) for k in problem.count_thresholds]
    estimates = tuple(hybrid_estimate(a, k, r, run) for a, k, r in zip(problem.below, problem.count_thresholds, parts))
    qs = tuple(hybrid_quantile(run, kq, n) for kq in problem.quantiles)
    sus = run.subset
    diag = {"modes": [float(b) for b in run.modes.norms], "cut": run.cut, "cut_because": run.cut_because,
            "proposal_normals": [[float(m), float(s)] for m, s in run.components],
            "proposal_stages": [{"chips": int(np.sum(run.stage == i)), **st.describe()}
                                for i, st in enumerate(run.stages)],
            "count_models": run.count_models, "joint_count_model": run.joint_model, "second_stage": run.stage_choice,
            "evaluations": {"mode_search": run.modes.evaluations, "subset_simulation": sus.evaluations,
                            "importance_sampling": run.evaluated},
            "split": [{"below": a, "importance_part": r.p_hi, "importance_std_error": r.se_hi,
                       "importance_std_error_sample": r.se_hi_sample,
                       "importance_std_error_predicted": r.se_hi_predicted,
                       "importance_events": r.n_is_event, "importance_top_share": r.top_share,
                       "importance_pareto_k": r.khat, "subset_part": r.p_lo, "subset_std_error": r.se_lo,
                       "subset_events": r.subset.n_in_event} for a, r in zip(problem.below, parts)],
            "levels": level_diagnostics(sus), "n_per_level": sus.n_per_level, "p0": sus.p0, "stopped": run.stopped,
            "latent_dim": latent.dim, "temperature": run.modes.temperature, "design_count": run.modes.design_count}
    if run.modes.K == 0:
        diag["subset_alone_because"] = (
            f"budget under {MIN_BUDGET}" if budget < MIN_BUDGET else
            "the chip has drift, read-noise, stuck-at, gain or posterior coordinates, which the design-point "
            "gradients do not reach" if not gradient_sees_all(latent) else "the mode search found no design point")
    diag["seconds"] = {**run.modes.seconds, "subset_levels": [lv.seconds for lv in sus.levels], **run.seconds,
                       "estimates": time.perf_counter() - t0}
    method = HYBRID_NAME if run.modes.K and run.counts.size else "subset-simulation"
    return EstimatorRun(estimates, qs, run.evaluations, method, run.stopped != "interrupted", diag)


def hybrid_estimate(a: float, k: int, r: HybridProbability, run: HybridRun) -> TailEstimate:
    """The estimate of ``P(n_correct <= k)`` (accuracy ``a``) from ``r = run.probability(k)``, with
    its verdict."""
    if r.subset_only:
        return subset_estimate(a, k, r.subset, run.subset)
    p, d = r.p, r.cov
    reasons = []
    n_event = r.n_is_event + r.subset.n_in_event
    if n_event < MIN_EVENTS:
        reasons.append(f"only {n_event} chips in the event (< {MIN_EVENTS})")
    if not d <= MAX_COV:
        reasons.append(f"coefficient of variation {d:.2f} > {MAX_COV}")
    # the weights are bounded by construction (finite variance whatever k-hat says; k-hat is reported in
    # ``pareto_k``); what makes an interval rest on luck is one chip carrying much of the estimate
    if r.top_share > MAX_TOP_SHARE:
        reasons.append(f"one chip carries {r.top_share:.0%} of the importance-sampling part (> "
                       f"{MAX_TOP_SHARE:.0%}): the estimate and its interval rest on too few chips; raise --budget")
    if not r.lo_share < 0.5:
        # the estimate rests mostly on subset simulation: its own diagnostics apply
        reasons += [f"subset-simulation part ({r.lo_share:.0%} of the estimate): {x}"
                    for x in subset_reasons(r.subset, run.subset)]
    if p > 0 and math.isfinite(d):
        ci = lognormal_ci(p, d)
    else:
        ci = (0.0, min(1.0, 1.96 * math.hypot(r.se_hi, r.se_lo) if p == 0 else 1.0))
    return TailEstimate(a, float(p), float(p * d) if math.isfinite(d) else float("nan"),
                        (float(ci[0]), float(min(ci[1], 1.0))), HYBRID_NAME, int(run.evaluations), float(r.ess),
                        not reasons, "; ".join(reasons) or None, int(k), None if not math.isfinite(r.khat) else r.khat)


def hybrid_quantile(run: HybridRun, k: float, n: int) -> QuantileEstimate:
    """The accuracy at tail probability ``k``: the smallest count whose estimated P(count <= c) reaches
    k; the interval holds the counts whose 95 % interval contains k."""
    if run.modes.K == 0 or run.counts.size < 2:
        return subset_quantile(run.subset, k, n)
    cache = {}

    def prob(c):     # (p, lower, upper, parts) of P(count <= c)
        if c not in cache:
            r = run.probability(c)
            p, d = r.p, r.cov
            lo, hi = lognormal_ci(p, d) if p > 0 and math.isfinite(d) else \
                (0.0, r.subset.level_prob * 3.0 / r.subset.n)
            cache[c] = (p, lo, hi, r)
        return cache[c]

    c = min([int(lv.counts.min()) for lv in run.subset.levels] + [int(run.counts.min())])
    while c < n and prob(c)[0] < k:
        c += 1
    lo_c, hi_c = counts_holding(k, c, n, lambda cc: prob(cc)[1:3])
    r = prob(c)[3]
    reasons = []
    if prob(c)[0] < k:
        reasons.append(f"no accuracy level reached an estimated probability of {k:g} within the budget")
    n_event = r.n_is_event + r.subset.n_in_event
    if n_event < MIN_EVENTS:
        reasons.append(f"only {n_event} chips at or below the quantile")
    if run.stopped == "interrupted" and r.subset_only:
        reasons.append("the run was interrupted before importance sampling began")
    # the quantile is where P(count <= c) crosses k: it is no more reliable than the two estimates
    # on either side of the crossing
    for cc in (c, c - 1):
        if 0 <= cc <= n and not reasons:
            e = hybrid_estimate(cc / n, cc, prob(cc)[3], run)
            if not e.reliable:
                reasons.append(f"the estimate of P(count <= {cc}) it rests on is flagged: {e.reason}")
    return QuantileEstimate(float(k), c / n, (lo_c / n, hi_c / n), not reasons, "; ".join(reasons) or None)
