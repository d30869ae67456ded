"""Tail-estimator efficiency: chip evaluations needed for 20 % relative error.

On the public case digits_mlp_s05 (brute-force reference from 115.5 million chips) each estimator
(subset simulation; mean-shift importance sampling) is run ``R`` times with different seeds at a fixed budget; its empirical
relative root-mean-square error against the reference at each threshold gives the evaluations it
needs for 20 % relative error (error ~ 1/sqrt(budget)).  Plain Monte Carlo needs
``(1 - p) / (0.2^2 p)`` chips, from the binomial variance.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

CASE = Path(__file__).resolve().parents[1].parent / "shared" / "cases" / "digits_mlp_s05"


def run(repeats: int = 8, budget: int = 20000) -> list[dict]:
    from reliability.cim import load_onnx
    from reliability.sampling import estimate_tail

    if not CASE.exists():
        print(f"skipped: {CASE} not found", file=sys.stderr)
        return []
    net = load_onnx(CASE / "model.onnx")
    z = np.load(CASE / "data.npz")
    ref = np.load(CASE / "reference_hist.npy").astype(float)
    n = len(z["y"])
    counts = (526, 523, 519)
    truth = [ref[: c + 1].sum() / ref.sum() for c in counts]
    rows = []
    for method in ("subset", "is"):
        est = {c: [] for c in counts}
        cover = {c: 0 for c in counts}
        flagged = {c: 0 for c in counts}
        t0 = time.perf_counter()
        evals = []
        for seed in range(repeats):
            r = estimate_tail(net, z["X"], z["y"], "weight-gaussian:sigma=0.05", below=[c / n for c in counts],
                              budget=budget, seed=seed, method=method)
            evals.append(r.evaluations)
            for e, c, p in zip(r.estimates, counts, truth):
                est[c].append(e.probability)
                cover[c] += e.ci95[0] <= p <= e.ci95[1]
                flagged[c] += not e.reliable
        secs = (time.perf_counter() - t0) / repeats
        for c, p in zip(counts, truth):
            x = np.array(est[c])
            rrmse = float(np.sqrt(np.mean((x / p - 1) ** 2)))
            need = float(np.mean(evals) * (rrmse / 0.2) ** 2)
            mc = (1 - p) / (0.04 * p)
            rows.append({"method": method, "threshold": f"acc <= {c}/{n}", "p_true": p, "rrmse": rrmse,
                         "ratio_range": (float(x.min() / p), float(x.max() / p)),
                         "ci_coverage": f"{cover[c]}/{repeats}", "flagged": f"{flagged[c]}/{repeats}",
                         "evals_for_20pct": need, "mc_evals_for_20pct": mc, "gain": mc / need,
                         "seconds_per_run": secs})
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
