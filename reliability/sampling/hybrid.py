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
from reliability.sampling.projected import NOT_EVALUATED, StageBlend, fit_joint_count_model, fit_projection_mixture
from reliability.sampling.subset import SubsetRun, SubsetSimulation, read_checkpoint_meta, write_checkpoint

__all__ = ["HybridSampling", "HybridRun", "ModeMixture", "Modes", "count_mean", "find_modes", "fit_count_model",
           "gradient_sees_all", "sqrt_optimal"]

#: key offsets keeping the pilot chips and the importance-sampling chunks apart from the subset
#: simulation's level-0 chips (keyed 0..N-1) and its Markov chains
PILOT_KEY = 10**9
IS_SPAWN = 2**31 - 3
CHUNK = 256
#: below this budget the mode search and the split do not pay: subset simulation alone
MIN_BUDGET = 2000
#: the split's cut: DEEP_CUT when the rarest event asked for is below DEEP_BELOW, else SHALLOW_CUT
DEEP_CUT = 2.5
SHALLOW_CUT = 1.5
DEEP_BELOW = 5e-4
#: the "projected" second-stage candidate: weights of the first stage, the per-mode fit and the
#: projection mixture; the key offset of the projection mixture's fit
PROJECTED_BLEND = (0.2, 0.4, 0.4)
PROJECTED_KEY = 2**20


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
    """Pilot chips, then HL-RF from the origin and from pilot chips in order of their count, each next
    start the lowest chip that the modes found so far do not explain (see the module docstring).

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
    return Modes(U, B, T, int(design_count), int(evaluations))


#: the tabulated one-dimensional densities live on ``[cut, cut + GRID_SPAN]`` in bins of ``GRID_STEP``
GRID_STEP = 0.01
GRID_SPAN = 10.0


@dataclass
class ModeMixture:
    """An importance-sampling proposal that changes one coordinate of the chip: mode ``m`` with
    probability ``pi[m]``, then ``t_m = u_m . z`` from a one-dimensional density ``g_m`` on
    ``[cut, inf)``, the rest of ``z`` exactly from the prior.  ``g_m`` is a defensive truncated prior
    (weight ``defensive``) plus a piecewise-constant body (``mass[m]`` over the bins ``edges``), so
    that drawing and evaluating use the same density exactly.  ``q / phi`` depends on the ``K``
    projections only: ``sum_m pi_m 1(t_m >= cut) g_m(t_m) / phi(t_m)``, at least
    ``min pi * defensive / Phi(-cut)`` on ``H``."""

    cut: float
    defensive: float
    pi: np.ndarray          # (K,)
    edges: np.ndarray       # (B + 1,)
    mass: np.ndarray        # (K, B), rows sum to 1

    @staticmethod
    def grid(cut: float) -> np.ndarray:
        return cut + np.arange(0.0, GRID_SPAN + GRID_STEP / 2, GRID_STEP)

    @classmethod
    def from_normals(cls, cut: float, defensive: float, K: int, components) -> "ModeMixture":
        """Every mode alike: the body is an equal mixture of normals truncated to ``[cut, inf)``."""
        edges = cls.grid(cut)
        mass = sum(_normal_bins(edges, m, s) for m, s in components)
        mass /= mass.sum()
        return cls(cut, defensive, np.full(K, 1.0 / K), edges, np.tile(mass, (K, 1)))

    @property
    def K(self) -> int:
        return int(self.pi.size)

    def log_g(self, m: int, t: np.ndarray) -> np.ndarray:
        """Log density of mode ``m``'s one-dimensional proposal at ``t >= cut``."""
        t = np.asarray(t, dtype=np.float64)
        a = math.log(self.defensive) + stats.norm.logpdf(t) - stats.norm.logsf(self.cut)
        i = np.searchsorted(self.edges, t, side="right") - 1
        inside = (i >= 0) & (i < self.mass.shape[1])
        with np.errstate(divide="ignore"):
            body = np.log(self.mass[m, np.clip(i, 0, self.mass.shape[1] - 1)] / GRID_STEP)
        b = np.where(inside, math.log(1 - self.defensive) + body, -np.inf)
        return np.logaddexp(a, b)

    def blend(self, other: "ModeMixture", a: float) -> "ModeMixture":
        """The mixture ``(1 - a) self + a other`` (same cut, defensive weight and grid), exactly."""
        pi = (1 - a) * self.pi + a * other.pi
        mass = ((1 - a) * self.pi[:, None] * self.mass + a * other.pi[:, None] * other.mass) / pi[:, None]
        return ModeMixture(self.cut, self.defensive, pi, self.edges, mass)

    def log_ratio(self, proj: np.ndarray) -> np.ndarray:
        """``log(q / phi)`` for chips with projections ``proj`` (..., K); ``-inf`` outside H."""
        proj = np.asarray(proj, dtype=np.float64)
        terms = []
        for m in range(self.K):
            tt = np.maximum(proj[..., m], self.cut)
            lr = math.log(self.pi[m]) + self.log_g(m, tt) - stats.norm.logpdf(tt)
            terms.append(np.where(proj[..., m] >= self.cut, lr, -np.inf))
        return np.logaddexp.reduce(np.stack(terms), axis=0)

    def sample(self, rng: np.random.Generator, S: int) -> tuple[np.ndarray, np.ndarray]:
        """Modes and their coordinates for ``S`` chips."""
        mode = rng.choice(self.K, size=S, p=self.pi)
        prior = rng.random(S) < self.defensive
        u = rng.random(S)
        t = stats.norm.isf(u * stats.norm.sf(self.cut))          # the truncated prior
        cdf = np.cumsum(self.mass, axis=1)
        for m in np.unique(mode[~prior]):
            sel = (~prior) & (mode == m)
            i = np.minimum(np.searchsorted(cdf[m], rng.random(int(sel.sum())), side="right"), self.mass.shape[1] - 1)
            t[sel] = self.edges[i] + rng.random(i.size) * GRID_STEP
        return mode, np.maximum(t, self.cut)

    def draw(self, rng: np.random.Generator, flat: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Turn prior draws ``flat`` (S, dim) into chips of this proposal, in place: for each row a mode
        ``m`` and ``t ~ g_m``, then ``z = xi + (t - u_m . xi) u_m``; returns the drawn modes and the
        projections (S, K)."""
        mode, t = self.sample(rng, flat.shape[0])
        um = U[mode]
        flat += (t - np.sum(flat * um, axis=1))[:, None] * um
        return mode, flat @ U.T

    def describe(self) -> dict:
        return {"kind": "mode-mixture", "mode_probabilities": [float(x) for x in self.pi]}


def _normal_bins(edges: np.ndarray, mean: float, sd: float) -> np.ndarray:
    """The bins' shares of a normal truncated to the grid."""
    cdf = stats.norm.cdf((edges - mean) / sd)
    return np.diff(cdf) / max(cdf[-1] - cdf[0], 1e-300)


def fit_count_model(t: np.ndarray, counts: np.ndarray) -> dict | None:
    """The number of correct samples given a mode coordinate ``t`` (the rest of the chip from the
    prior): a quadratic mean fitted by least squares after one pass of outlier removal (five robust
    standard deviations: chips failing through another mode), a constant robust spread, and the range
    of ``t`` it was fitted on (outside it the mean continues along its tangent).  ``None`` with fewer
    than 30 chips."""
    t = np.asarray(t, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if t.size < 30 or np.ptp(t) <= 0:
        return None
    coef = np.polyfit(t, c, 2)
    r = c - np.polyval(coef, t)
    sd = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    keep = np.abs(r) <= 5 * max(sd, 0.5)
    coef = np.polyfit(t[keep], c[keep], 2)
    r = c[keep] - np.polyval(coef, t[keep])
    sd = max(1.4826 * float(np.median(np.abs(r))), 0.5)
    lo, hi = (float(q) for q in np.quantile(t, [0.02, 0.98]))
    return {"coef": [float(x) for x in coef], "sd": sd, "range": [lo, hi], "chips": int(t.size)}


def count_mean(model: dict, t: np.ndarray) -> np.ndarray:
    lo, hi = model["range"]
    tc = np.clip(t, lo, hi)
    coef = np.asarray(model["coef"])
    return np.polyval(coef, tc) + np.polyval(np.polyder(coef), tc) * (t - tc)


def sqrt_optimal(cut: float, defensive: float, floor: float, models: list, targets, fallback_norms) -> ModeMixture:
    """The proposal that minimises the variance of importance sampling over the mode coordinate.

    For one mode and one event, with ``P(F | t)`` the probability that a chip with coordinate ``t``
    (the rest from the prior) is in the event, the estimator ``w 1_F`` has second moment
    ``int phi(t)^2 P(F | t) / g(t) dt``, smallest for ``g ~ phi(t) sqrt(P(F | t))`` (not for the
    event's own distribution ``phi(t) P(F | t)``, which gives no gain over plain Monte Carlo where
    ``P(F | t)`` is small).  ``P(F | t)`` comes from each mode's count model,
    ``Phi((k + 0.5 - mean(t)) / sd)``.  Each event gets an equal share of the chips; within an event
    the modes are weighted by their ``int phi sqrt(P(F | t)) dt`` (the optimal allocation), and every
    mode keeps at least ``floor / K`` of them."""
    edges = ModeMixture.grid(cut)
    mid = 0.5 * (edges[1:] + edges[:-1])
    K = len(models)
    mass = np.zeros((K, mid.size))
    logphi = stats.norm.logpdf(mid)
    used = 0
    for k in targets:
        logh = np.full((K, mid.size), -np.inf)
        for m, model in enumerate(models):
            if model is not None:
                logh[m] = logphi + 0.5 * stats.norm.logcdf((k + 0.5 - count_mean(model, mid)) / model["sd"])
        top = logh.max()
        if not np.isfinite(top):
            continue
        h = np.exp(logh - top)
        mass += h / h.sum()
        used += 1
    for m in range(K):
        if mass[m].sum() <= 0:   # no model for this mode (or no event probability): a normal at its beta
            mass[m] = _normal_bins(edges, max(fallback_norms[m], cut), 0.5) * (1.0 / K) * max(used, 1)
    share = mass.sum(axis=1)
    pi = (1 - floor) * share / share.sum() + floor / K
    return ModeMixture(cut, defensive, pi, edges, mass / share[:, None])


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

    def place(self, rng: np.random.Generator, flat: np.ndarray, stage: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Turn prior draws ``flat`` (S, dim) into chips of stage ``stage``'s proposal, in place; returns
        the drawn modes (-1: none) and the projections (S, K)."""
        return self.stages[stage].draw(rng, flat, self.modes.U)

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
        logw = self.logw
        w = np.exp(logw)
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
                _, kh = az.psislw(logw[ind].copy())
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
            raise ValueError(f"subset_share must be in [0.05, 0.9]; got {subset_share}.")
        if not 0 < defensive < 1:
            raise ValueError(f"defensive must be in (0, 1); got {defensive}.")
        if not 0 < first_stage <= 1:
            raise ValueError(f"first_stage must be in (0, 1]; got {first_stage}.")
        if not 0 < mode_floor <= 1:
            raise ValueError(f"mode_floor must be in (0, 1]; got {mode_floor}.")
        self.subset_share = subset_share
        if cut is not None and not 0.5 <= cut <= 4.0:
            raise ValueError(f"cut must be in [0.5, 4] (or None: chosen by the rarest event); got {cut}.")
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

    def run(self, scorer, latent, count_targets: list[int], quantile_min: float | None, budget: int, seed: int,
            checkpoint=None, fingerprint: str = "", progress=None) -> HybridRun:
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
        feature = (lambda z: _flat(z) @ U.T) if modes.K else None
        sus_budget = budget - modes.evaluations if modes.K == 0 else int(self.subset_share * budget) - modes.evaluations
        sub_progress = None if progress is None else (lambda d, t: progress(modes.evaluations + d, budget))
        sus = self.subset.run(scorer, latent, [k + 1.0 for k in count_targets], quantile_min, max(sus_budget, 100),
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
        shapes = [s for _, _, s in latent.blocks]
        splits = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
        lists = [[run.counts], [run.proj], [run.drawn], [run.stage]]
        done = run.counts.size
        try:
            while True:
                # the second stage is fitted once the first is complete (also on resuming past it)
                if n_first <= done and n_first < n_is and len(run.stages) == 1:
                    run.counts, run.proj, run.drawn, run.stage = (np.concatenate(x) for x in lists)
                    self._second_stage(run, count_targets, quantile_min)
                if done >= n_is:
                    break
                ci = done // CHUNK
                stage = 0 if done < n_first else 1
                S = min(CHUNK, (n_first if stage == 0 else n_is) - done)
                rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(IS_SPAWN, ci))))
                flat = _flat(latent.draw(rng, S))
                drawn, proj = run.place(rng, flat, stage)
                inside = ~run.outside(proj)          # a chip drawn outside H is not evaluated: a zero
                cnt = np.full(S, NOT_EVALUATED, dtype=np.int64)
                if inside.any():
                    Si = int(inside.sum())
                    z = [p.reshape((Si,) + sh).astype(latent.dtype)
                         for p, sh in zip(np.split(flat[inside], splits, axis=1), shapes)]
                    cnt[inside] = scorer.counts_and_margins(z)[0]
                for x, v in zip(lists, (cnt, proj, drawn, np.full(S, stage))):
                    x.append(v)
                done += S
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
        ps = [sus.probability(k + 1.0)["p"] for k in count_targets]
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
            while c < run.subset.levels[0].counts.max() and run.probability(c)["p"] < quantile_min:
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
                np.random.SeedSequence(run.seed, spawn_key=(IS_SPAWN, PROJECTED_KEY)))
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
    with np.load(path, allow_pickle=False) as z:
        if "U" not in z.files:
            raise ReliabilityError(f"checkpoint {path} was not written by the hybrid estimator (an older subset-"
                                   "simulation checkpoint?); resume it with --method subset or delete it.")
        if "proj" not in z.files:
            raise ReliabilityError(f"checkpoint {path} was written by an older version of the hybrid estimator, "
                                   "whose proposal differs; finish it with that version or delete it.")
        meta = read_checkpoint_meta(path, z, fingerprint)
        modes = Modes(z["U"], z["norms"], meta["temperature"], meta["design_count"], meta["evaluations"])
        return modes, (z["counts"], z["proj"].reshape(-1, modes.K), z["drawn"], z["stage"])
