"""Tail-estimator efficiency: chip evaluations needed for 20 % relative error.

On the public case digits_mlp_s05 (brute-force reference from 115.5 million chips), and on the
cases built in ``cases.py`` (references from 2 to 40 million chips each), each estimator
(the hybrid default; subset simulation alone; one mean shift) is run ``R`` times with different seeds at a fixed budget; its empirical
relative root-mean-square error against the reference at each threshold gives the evaluations it
needs for 20 % relative error (error ~ 1/sqrt(budget)).  Plain Monte Carlo needs
``(1 - p) / (0.2^2 p)`` chips, from the binomial variance.

A reference is itself plain Monte Carlo: with ``n`` of its chips in the event its relative standard
error is ``sqrt((1 - p) / n)`` (``ref_rel_se``; 7 % with 200 chips), and every run is compared with the
same reference, so its error shifts all of them alike.  Each row therefore also reports the runs'
mean ratio to the reference and their spread among themselves (``rel_sd``, free of the reference's
error), ``mean_vs_ref_z`` (the mean's distance from 1 in units of the mean's and the reference's
standard errors together: within about 2, the runs and the reference agree), the coverage of the
intervals widened by the reference's error (``ci_coverage_with_ref_error``, the check that applies
when the truth itself is known only to ``ref_rel_se``) and ``gain_from_spread``, the gain computed
from ``rel_sd`` instead of the error against the reference (meaningful only when ``mean_vs_ref_z``
says the two agree).
"""

from __future__ import annotations

import reliability  # noqa: F401  (first: it sets OPENBLAS_THREAD_TIMEOUT before numpy loads)

import time

import numpy as np


def _cases(built: bool, only=None, deep: bool = False):
    """(name, network, X, y, variation, reference histogram, count thresholds) of each case
    (``only``: the names to keep; ``deep``: the public case also at 514/597, p = 1.18e-6, where its
    reference holds 136 chips)."""
    from reliability.bench import load_case

    out = []
    if only is None or "digits_mlp_s05" in only:
        pub = load_case("digits_mlp_s05")
        out.append((pub.name, pub.network, pub.X, pub.y, pub.variation, pub.reference.astype(float),
                    (526, 523, 519) + ((514,) if deep else ())))
    if built:
        import cases

        for c in cases.CASES:
            if only is not None and c.name not in only:
                continue
            hist = c.reference().astype(float)
            net, X, y = c.network()
            out.append((c.name, net, X, y, c.variation, hist, tuple(k for k, _ in cases.thresholds(hist))))
    return out


def mc_evals_for_20pct(p: float) -> float:
    """Plain Monte Carlo's chips for 20 % relative error at probability ``p`` (binomial variance)."""
    from reliability.bench.metrics import mc_evaluations

    return mc_evaluations(p, 0.2)


def reference_check(estimates, intervals, p: float, ref_in_event: float, budget: float = 20000.0) -> dict:
    """The runs against a reference that is itself plain Monte Carlo (module docstring).

    ``estimates``: the runs' probabilities; ``intervals``: their 95 % intervals; ``p``: the
    reference probability, from ``ref_in_event`` chips in the event; ``budget``: evaluations per run
    (for ``gain_from_spread``)."""
    ratio = np.asarray(estimates, dtype=float) / p
    R = ratio.size
    ref_se = float(np.sqrt((1 - p) / ref_in_event)) if ref_in_event > 0 else float("inf")
    rel_sd = float(np.std(ratio, ddof=1)) if R > 1 else float("nan")
    mean_se = rel_sd / np.sqrt(R)
    from reliability.bench.metrics import interval_holds

    cover = int(interval_holds(intervals, p, ref_se).sum())
    mc = mc_evals_for_20pct(p)
    return {"ref_chips_in_event": int(ref_in_event), "ref_rel_se": ref_se, "mean_ratio": float(ratio.mean()),
            "mean_ratio_se": float(mean_se), "rel_sd": rel_sd,
            "mean_vs_ref_z": float((ratio.mean() - 1) / np.sqrt(mean_se ** 2 + ref_se ** 2)),
            "ci_coverage_with_ref_error": f"{cover}/{R}",
            "gain_from_spread": float(mc / (budget * (rel_sd / 0.2) ** 2)) if rel_sd > 0 else float("inf")}


def run(repeats: int = 8, budget: int = 20000, built: bool = True, methods=("hybrid", "subset", "is"), only=None,
        quantiles: bool = False, seed0: int = 0, deep: bool = False, save: str | None = None) -> list[dict]:
    """One row per case, method and threshold.  With ``quantiles`` the runs also ask for the
    accuracy quantile at each reference probability (the k-th percentile accuracy) and the rows
    count how often its interval holds the reference's quantile and how far the estimate is from it
    (in samples); asking for quantiles changes the run's plan, so the probability columns then
    differ from a run without them.  ``save``: an ``.npz`` file that receives every run's estimate
    and interval (keys ``case/method/count/{est,lo,hi}`` and ``seeds``), so that the runs can be
    judged again when a reference grows."""
    from reliability.sampling import estimate_tail

    rows = []
    saved = {"seeds": np.arange(seed0, seed0 + repeats)}
    for name, net, X, y, variation, ref, counts in _cases(built, only, deep):
        n = len(y)
        truth = [ref[: c + 1].sum() / ref.sum() for c in counts]
        for method in methods:
            est = {c: [] for c in counts}
            ci = {c: [] for c in counts}
            cover = {c: 0 for c in counts}
            flagged = {c: 0 for c in counts}
            t0 = time.perf_counter()
            evals = []
            cdf = np.cumsum(ref) / ref.sum()
            # quantile probabilities in the middle (geometric) of each threshold count's step of the
            # reference CDF, so that the reference quantile is that count without a knife edge
            k_mid = [float(np.sqrt(cdf[c - 1] * cdf[c])) if cdf[c - 1] > 0 else float(cdf[c]) / 2 for c in counts]
            q_ref = {c: int(np.searchsorted(cdf, k)) for c, k in zip(counts, k_mid)}
            q_cover = {c: 0 for c in counts}
            q_err = {c: [] for c in counts}
            for seed in range(seed0, seed0 + repeats):
                r = estimate_tail(net, X, y, variation, below=[c / n for c in counts], budget=budget, rng=seed,
                                  method=method, quantiles=k_mid if quantiles and method != "is" else ())
                evals.append(r.evaluations)
                for qe, c in zip(r.quantiles, counts):
                    q_cover[c] += qe.ci95[0] * n - 1e-9 <= q_ref[c] <= qe.ci95[1] * n + 1e-9
                    q_err[c].append(round(qe.accuracy * n) - q_ref[c])
                for e, c, p in zip(r.estimates, counts, truth):
                    est[c].append(e.probability)
                    cover[c] += e.ci95[0] <= p <= e.ci95[1]
                    ci[c].append(tuple(e.ci95))
                    flagged[c] += not e.reliable
            secs = (time.perf_counter() - t0) / repeats
            for c, p in zip(counts, truth):
                x = np.array(est[c])
                saved[f"{name}/{method}/{c}/est"] = x
                saved[f"{name}/{method}/{c}/lo"], saved[f"{name}/{method}/{c}/hi"] = np.array(ci[c]).T
                rrmse = float(np.sqrt(np.mean((x / p - 1) ** 2)))
                need = float(np.mean(evals) * (rrmse / 0.2) ** 2)
                mc = mc_evals_for_20pct(p)
                chk = reference_check(x, ci[c], p, float(ref[: c + 1].sum()), float(np.mean(evals)))
                rows.append({"case": name, "method": method, "threshold": f"acc <= {c}/{n}", "p_true": p,
                             "rrmse": rrmse, "ratio_range": (float(x.min() / p), float(x.max() / p)),
                             "within_1.5": f"{int(np.sum((x / p < 1.5) & (x / p > 1 / 1.5)))}/{repeats}",
                             "ci_coverage": f"{cover[c]}/{repeats}", "flagged": f"{flagged[c]}/{repeats}",
                             "evals_for_20pct": need, "mc_evals_for_20pct": mc, "gain": mc / need,
                             "seconds_per_run": secs, **chk})
                if q_err[c]:
                    e = np.array(q_err[c])
                    rows[-1].update({"quantile_k": k_mid[counts.index(c)], "quantile_ref_count": q_ref[c], "quantile_ci_coverage": f"{q_cover[c]}/{repeats}",
                                     "quantile_count_error_range": (int(e.min()), int(e.max())),
                                     "quantile_count_error_rms": float(np.sqrt(np.mean(e ** 2)))})
    if save is not None:
        np.savez(save, **saved)
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="tail-estimator efficiency against brute-force references")
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--methods", default="hybrid,subset,is")
    ap.add_argument("--seed0", type=int, default=0, help="first seed (runs use seed0 .. seed0 + repeats - 1)")
    ap.add_argument("--no-built", action="store_true", help="only the public case")
    ap.add_argument("--case", action="append", help="only this case (repeatable)")
    ap.add_argument("--quantiles", action="store_true", help="also estimate the accuracy quantile at each reference "
                    "probability and check it against the reference")
    ap.add_argument("--deep", action="store_true", help="the public case also at p = 1.18e-6 (514/597); this "
                    "changes its runs' plan, so its other rows differ from a run without it")
    ap.add_argument("--save", help="write every run's estimate and interval to this .npz file")
    a = ap.parse_args()
    for r in run(a.repeats, built=not a.no_built, methods=tuple(a.methods.split(",")), only=a.case,
                 quantiles=a.quantiles, seed0=a.seed0, deep=a.deep, save=a.save):
        print(r)
