"""Rank mitigation candidates by cost against robustness (:func:`rank`).

Every candidate (and always the baseline, the design as given) is built, costed and evaluated
with the same seed.  Where a mitigation leaves the chips' random numbers unchanged (write-verify,
SWIM, ADC and DAC precision, refresh within the same noise regime: see :func:`crn_signature`), chip
``i`` of every candidate is the same latent chip, its programming errors only pulled into the band
or read through another periphery: common random numbers.  For the ``mean`` metric the
differences between such candidates are then paired chip by chip, and their intervals are
reported beside the independent ones.  Tail metrics run the tail estimator of
:func:`reliability.sampling.estimate_tail` per candidate on the same seed.

Two candidates whose robustness cannot be told apart (overlapping 95 % intervals, or for paired
candidates a paired difference whose interval contains 0) are *tied*: neither outranks the other.
A candidate's rank is one plus the number of candidates that are separated from it and better.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from reliability._json import atomic_output
from reliability.cim.spec import parse_variation
from reliability.errors import InterruptedEarly, ModelSpecError, ReliabilityError
from reliability.mitigation.catalogue import Context, Design, Mitigation, parse_mitigation
from reliability.mitigation.costs import Cost, CostModel, design_costs
from reliability.streams import as_seed

__all__ = ["rank", "Ranking", "CandidateResult", "Robustness", "Metric", "parse_metric", "crn_signature"]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Metric:
    """A robustness metric: ``quantile`` (the k-th percentile accuracy, higher is better), ``prob``
    (P(accuracy <= a), lower is better), ``mean`` (mean accuracy, higher is better) or ``worst``
    (the worst-case accuracy found within +/- k sigma per device, higher is better)."""

    kind: str
    param: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.kind != "prob"

    def __str__(self) -> str:
        return self.kind if self.param is None else f"{self.kind}:{self.param:g}"


def parse_metric(text) -> Metric:
    """``quantile:K`` (0 < K < 0.5), ``prob:A`` (0 <= A < 1), ``mean`` or ``worst:K`` (K > 0 sigma)."""
    if isinstance(text, Metric):
        return text
    s = str(text).strip().lower()
    kind, _, p = s.partition(":")
    if kind == "mean" and not p:
        return Metric("mean")
    if kind in ("quantile", "prob"):
        try:
            v = float(p)
        except ValueError:
            v = float("nan")
        if kind == "quantile" and 0 < v < 0.5:
            return Metric(kind, v)
        if kind == "prob" and 0 <= v < 1:
            return Metric(kind, v)
    if kind == "worst":
        try:
            v = float(p)
        except ValueError:
            v = float("nan")
        if v > 0 and math.isfinite(v):
            return Metric(kind, v)
    raise ModelSpecError(f"metric {text!r} is not one of quantile:K (0 < K < 0.5, e.g. quantile:1e-4), "
                         "prob:A (0 <= A < 1, P(accuracy <= A)), mean or worst:K (K > 0 sigma, e.g. worst:3).")


@dataclass(frozen=True)
class Robustness:
    """A candidate's robustness under the metric, with its 95 % interval and the estimator's verdict."""

    value: float
    ci95: tuple[float, float]
    reliable: bool
    reason: str | None
    evaluations: int
    seconds: float

    def to_dict(self) -> dict:
        return {"value": float(self.value), "ci95": [float(self.ci95[0]), float(self.ci95[1])],
                "reliable": bool(self.reliable), "reason": self.reason, "evaluations": int(self.evaluations),
                "seconds": float(self.seconds)}


@dataclass(frozen=True)
class CandidateResult:
    """One candidate of a ranking."""

    name: str
    spec: str
    cost: Cost
    robustness: Robustness
    pareto: bool
    rank: int
    tied_with: tuple[str, ...]
    crn: bool
    vs_baseline: dict | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "spec": self.spec, "cost": self.cost.to_dict(),
                "robustness": self.robustness.to_dict(), "pareto": self.pareto, "rank": self.rank,
                "tied_with": list(self.tied_with), "common_random_numbers": self.crn, "vs_baseline": self.vs_baseline}


@dataclass(frozen=True)
class Ranking:
    """The result of :func:`rank`: the baseline and every candidate, ranked, costed, on the Pareto front or not."""

    metric: str
    higher_is_better: bool
    baseline: CandidateResult
    mitigations: tuple[CandidateResult, ...]
    pareto_front: tuple[str, ...]
    evaluations: int
    seconds: float
    seed: int
    costs: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def candidates(self) -> tuple[CandidateResult, ...]:
        """Baseline first, then the mitigations in the order given."""
        return (self.baseline,) + self.mitigations

    def cheapest(self, target: float, confident: bool = True) -> CandidateResult | None:
        """The cheapest candidate (by the scalar cost) whose robustness reaches ``target``: with
        ``confident``, its whole 95 % interval must (the lower bound for quantile and mean, the
        upper for prob); else its value.  None when none does."""
        def ok(c):
            r = c.robustness
            if self.higher_is_better:
                return (r.ci95[0] if confident else r.value) >= target
            return (r.ci95[1] if confident else r.value) <= target
        hits = [c for c in self.candidates if ok(c) and c.robustness.reliable]
        return min(hits, key=lambda c: (c.cost.scalar, c.rank)) if hits else None

    def to_dict(self) -> dict:
        return {"metric": self.metric, "higher_is_better": self.higher_is_better, "baseline": self.baseline.to_dict(),
                "mitigations": [c.to_dict() for c in self.mitigations], "pareto_front": list(self.pareto_front),
                "evaluations": int(self.evaluations), "seconds": float(self.seconds), "seed": int(self.seed),
                "costs": self.costs, "notes": list(self.notes)}

    def to_polars(self) -> pl.DataFrame:
        """One row per candidate (baseline first): robustness, interval, rank, Pareto, ties and
        every cost entry (``cost_<name>``) with the scalar."""
        rows = []
        for c in self.candidates:
            r = c.robustness
            row = {"name": c.name, "spec": c.spec, "value": r.value, "ci_low": r.ci95[0], "ci_high": r.ci95[1],
                   "reliable": r.reliable, "rank": c.rank, "pareto": c.pareto, "tied_with": ", ".join(c.tied_with),
                   "crn": c.crn, "cost_scalar": c.cost.scalar}
            row.update({f"cost_{k}": v for k, v in c.cost.values.items()})
            rows.append(row)
        return pl.DataFrame(rows)

    def summary(self) -> str:
        best = sorted(self.candidates, key=lambda c: c.rank)
        lines = [f"{len(self.candidates)} candidates by {self.metric} ({'higher' if self.higher_is_better else 'lower'} "
                 f"is better), {self.evaluations} chip evaluations in {self.seconds:.1f} s"]
        for c in best:
            r = c.robustness
            tie = f" (tied with {', '.join(c.tied_with)})" if c.tied_with else ""
            lines.append(f"  {c.rank}. {c.name}: {r.value:.6g} [{r.ci95[0]:.6g}, {r.ci95[1]:.6g}], cost {c.cost.scalar:.4g}"
                         f"{' *pareto*' if c.pareto else ''}{tie}{'' if r.reliable else ' [UNRELIABLE: ' + str(r.reason) + ']'}")
        return "\n".join(lines)


def crn_signature(sim) -> tuple:
    """What fixes the random numbers a chip draws: the device arrays' shapes, the device model's
    parts, whether drift and read noise act at the read time, drift compensation (a second read)
    and posterior draws.  Candidates with equal signatures draw chip ``i`` from the same numbers."""
    dev = sim.device
    t = sim.spec.time_s
    L = float(dev.drift.log_factor(t)) > 0 if dev.drift is not None else None
    R = float(dev.read_noise.time_factor(t)) > 0 if dev.read_noise is not None else None
    return (tuple(p.shape for p in sim.prepared), type(dev.programming).__name__, dev.programming is None, L, R,
            dev.stuck is not None and (dev.stuck.p_low > 0 or dev.stuck.p_high > 0),
            dev.chip_gain is not None and dev.chip_gain.sigma > 0,
            bool(sim.spec.periphery.drift_compensation), int(sim.spec.mapping.spare_cols), int(sim.n_posterior),
            sim.spec.dtype)


def rows_per_inference(network, x) -> list[int]:
    """Input vectors each analog layer receives for one sample (1 for dense layers, the output
    positions for convolutions), from one clean forward pass."""
    rows = {}

    def hook(layer, X, W):
        rows[layer.index] = int(np.prod(X.shape[1:-1]))
        return np.matmul(X, W)

    network.forward(np.asarray(x)[:1], matmul=hook, dtype=np.float32)
    return [rows.get(i, 1) for i in range(len(network.analog_layers))]


def _evaluate(design, sim, x, y, metric, budget, seed, method):
    """(Robustness, per-chip accuracies for the mean metric or None)."""
    t0 = time.perf_counter()
    if metric.kind == "mean":
        res = sim.evaluate(x, y, n_chips=budget, rng=seed)
        a = res.accuracy
        n = a.size
        if n < 2:
            raise ReliabilityError("the mean metric needs at least 2 chips; raise the budget.")
        m, se = float(a.mean()), float(a.std(ddof=1) / math.sqrt(n))
        if not res.complete:
            raise KeyboardInterrupt
        return Robustness(m, (m - Z95 * se, m + Z95 * se), True, None, n, time.perf_counter() - t0), a
    if metric.kind == "worst":
        from reliability.worstcase import worst_case

        wc = worst_case(design.network, x, y, design.spec, bounds=(metric.param,), rng=seed, simulator=sim,
                        sensitivity=False)
        b = wc.bounds[0]
        ok = b.source != "random"
        return Robustness(b.accuracy, (b.accuracy, b.accuracy), ok,
                          None if ok else "the search found no chip worse than the best random chip in the bound",
                          int(wc.evaluations), time.perf_counter() - t0), None
    from reliability.sampling import estimate_tail

    if metric.kind == "quantile":
        tr = estimate_tail(design.network, x, y, design.spec, quantiles=(metric.param,), budget=budget, rng=seed,
                           method=method, simulator=sim)
        if not tr.complete:
            raise KeyboardInterrupt
        q = tr.quantiles[0]
        return Robustness(q.accuracy, tuple(q.ci95), q.reliable, q.reason, tr.evaluations, time.perf_counter() - t0), None
    tr = estimate_tail(design.network, x, y, design.spec, below=(metric.param,), budget=budget, rng=seed,
                       method=method, simulator=sim)
    if not tr.complete:
        raise KeyboardInterrupt
    e = tr.estimates[0]
    return Robustness(e.probability, tuple(e.ci95), e.reliable, e.reason, tr.evaluations, time.perf_counter() - t0), None


def _paired(a, b) -> dict:
    d = a - b
    n = d.size
    md = float(d.mean())
    hp = Z95 * float(d.std(ddof=1)) / math.sqrt(n)
    hi = Z95 * math.sqrt(float(a.var(ddof=1)) / n + float(b.var(ddof=1)) / n)
    return {"difference": md, "ci95_paired": [md - hp, md + hp], "ci95_independent": [md - hi, md + hi],
            "paired_width_ratio": (hp / hi) if hi > 0 else None}


def _separated(i, j, rob, accs, crn_sig, higher):
    """+1 if candidate i is confidently better than j, -1 if worse, 0 if tied."""
    if accs[i] is not None and accs[j] is not None and crn_sig[i] == crn_sig[j]:
        p = _paired(accs[i], accs[j])
        lo, hi = p["ci95_paired"]
        if lo > 0:
            return 1
        if hi < 0:
            return -1
        return 0
    a, b = rob[i], rob[j]
    if a.ci95[0] > b.ci95[1]:
        return 1 if higher else -1
    if a.ci95[1] < b.ci95[0]:
        return -1 if higher else 1
    return 0


def _pareto(costs, values, higher) -> list[bool]:
    out = []
    for i in range(len(costs)):
        vi = values[i] if higher else -values[i]
        dominated = False
        for j in range(len(costs)):
            if j == i:
                continue
            vj = values[j] if higher else -values[j]
            if costs[j] <= costs[i] and vj >= vi and (costs[j] < costs[i] or vj > vi):
                dominated = True
                break
        out.append(not dominated)
    return out


def _fingerprint(design, metric, budget, seed, method) -> str:
    h = hashlib.sha256()
    for w in design.network.analog_layers:
        h.update(np.ascontiguousarray(np.asarray(w.weight, dtype=np.float64)).tobytes())
    h.update(json.dumps(design.spec.to_dict(), sort_keys=True, default=str).encode())
    h.update(f"{metric}|{budget}|{seed}|{method}".encode())
    return h.hexdigest()[:16]


def rank(network, x, y, variation, mitigations, *, metric="quantile:1e-4", budget: int = 20000, rng=0,
         costs: CostModel | str | Path | None = None, method: str = "auto", train=None, threads: int | None = None,
         checkpoint=None, progress=None) -> Ranking:
    """Rank mitigation candidates against the baseline by cost and robustness.

    Parameters
    ----------
    network, x, y :
        The network and its evaluation data.
    variation : ChipSpec, shorthand or chip file
        The baseline chip (see :func:`reliability.cim.spec.parse_variation`).
    mitigations : sequence of str or Mitigation
        The candidates (``"write-verify:tolerance=0.05"``, ``"swim:fraction=0.1"``, ``"replicas:n=2 +
        adc:bits=6"``...; :data:`reliability.mitigation.CATALOGUE`).  The baseline is always added.
    metric : str or Metric
        ``quantile:K`` (default ``quantile:1e-4``), ``prob:A`` or ``mean``.
    budget : int
        Chip evaluations per candidate (tail estimator budget, or chips for ``mean``).
    rng : int or Generator
        One seed for every candidate (common random numbers).
    costs : CostModel or path, optional
        Unit costs (default: the shipped ``costs.toml``).
    method : str
        Tail estimator for quantile and prob metrics (as :func:`~reliability.sampling.estimate_tail`).
    train : (X, y), optional
        Training data: needed by ``noise-training`` (fine-tuning never sees the evaluation set),
        and used for SWIM's sensitivities when given (else the evaluation data is).
    checkpoint : path, optional
        A JSON file the finished candidates are written to; a rerun with the same file skips
        the candidates it holds for the same network, chip, metric, budget, seed and method.
    progress : callable, optional
        ``progress(done, total)`` after each candidate.

    Returns
    -------
    Ranking
    """
    t0 = time.perf_counter()
    seed = as_seed(rng)
    metric = parse_metric(metric)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 100:
        raise ReliabilityError(f"budget must be an integer of at least 100 chip evaluations per candidate; got {budget!r}.")
    cost_model = costs if isinstance(costs, CostModel) else (CostModel.load(costs) if costs else CostModel.default())
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ReliabilityError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; give one label per sample.")
    cands: list[tuple[str, Mitigation | None]] = [("baseline", None)]
    seen = {"baseline"}
    for m in mitigations:
        mit = parse_mitigation(m)
        name = m if isinstance(m, str) else str(mit)
        name = " ".join(name.split())
        if name in seen:
            raise ModelSpecError(f"mitigation {name!r} is given twice; give each candidate once.")
        seen.add(name)
        cands.append((name, mit))
    base = Design(network, parse_variation(variation))
    tx = ty = None
    if train is not None:
        tx, ty = (np.asarray(a) for a in train)
        if tx.shape[0] != ty.shape[0]:
            raise ReliabilityError(f"train has {tx.shape[0]} inputs but {ty.shape[0]} labels; give one label per input.")
    ctx = Context(x, y, seed, tx, ty)
    rows = rows_per_inference(network, x)
    saved = {}
    ck = Path(checkpoint) if checkpoint else None
    if ck is not None and ck.exists():
        try:
            saved = json.loads(ck.read_text()).get("candidates", {})
        except json.JSONDecodeError as exc:
            raise ReliabilityError(f"checkpoint {ck} is not valid JSON ({exc.msg}); remove it or give another path.") from None
    designs, sims, rob, accs, sigs, cost_list = [], [], [], [], [], []
    total_evals = 0
    for ci, (name, mit) in enumerate(cands):
        design = base if mit is None else mit.apply(base, ctx)
        sim = design.simulator(threads=threads)
        fp = _fingerprint(design, metric, budget, seed, method) + ("" if design.verify_mask is None else hashlib.sha256(
            b"".join(np.packbits(mk).tobytes() for mk in design.verify_mask)).hexdigest()[:8])
        got = saved.get(fp)
        if got is not None and metric.kind != "mean":
            r = Robustness(got["value"], tuple(got["ci95"]), got["reliable"], got["reason"], got["evaluations"],
                           got["seconds"])
            a = None
        else:
            try:
                r, a = _evaluate(design, sim, x, y, metric, int(budget), seed, method)
            except ReliabilityError as exc:
                raise type(exc)(f"candidate {name!r}: {exc}") from None
            except KeyboardInterrupt:
                # a ranking needs every candidate: a partial estimate of one is not kept or ranked
                kept = len(saved) if ck is not None else 0
                raise InterruptedEarly(
                    f"while evaluating candidate {name!r} ({ci + 1} of {len(cands)}); "
                    + (f"{kept} finished candidate(s) are kept in {ck}: run again to resume from them"
                       if ck is not None and metric.kind != "mean" else
                       "give a checkpoint file to keep finished candidates")) from None
            total_evals += r.evaluations
            if ck is not None and metric.kind != "mean":
                saved[fp] = r.to_dict()
                with atomic_output(ck) as tmp:
                    tmp.write_text(json.dumps({"schema": "nvcim-reliability/rank-checkpoint", "candidates": saved},
                                              indent=1))
        designs.append(design)
        sims.append(sim)
        rob.append(r)
        accs.append(a)
        sigs.append(crn_signature(sim))
        cost_list.append(design_costs(design, sim, rows, cost_model))
        if progress is not None:
            progress(ci + 1, len(cands))
    n = len(cands)
    higher = metric.higher_is_better
    sep = [[0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            s = _separated(i, j, rob, accs, sigs, higher)
            sep[i][j], sep[j][i] = s, -s
    ranks = [1 + sum(1 for j in range(n) if sep[j][i] == 1) for i in range(n)]
    pareto = _pareto([c.scalar for c in cost_list], [r.value for r in rob], higher)
    results = []
    for i, (name, mit) in enumerate(cands):
        vs = None
        if i > 0 and accs[i] is not None and sigs[i] == sigs[0]:
            vs = _paired(accs[i], accs[0])
        results.append(CandidateResult(
            name=name, spec="baseline" if mit is None else str(mit), cost=cost_list[i], robustness=rob[i],
            pareto=pareto[i], rank=ranks[i],
            tied_with=tuple(cands[j][0] for j in range(n) if j != i and sep[i][j] == 0),
            crn=sigs[i] == sigs[0], vs_baseline=vs))
    notes = []
    unreliable = [c.name for c in results if not c.robustness.reliable]
    if unreliable:
        notes.append(f"unreliable estimates (see each reason): {', '.join(unreliable)}")
    return Ranking(str(metric), higher, results[0], tuple(results[1:]),
                   tuple(c.name for c in results if c.pareto), total_evals, time.perf_counter() - t0, seed,
                   cost_model.path, tuple(notes))
