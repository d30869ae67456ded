"""Mitigation ranking: speed, agreement of the ranking's baseline with brute force, the order of
write-verify, SWIM and the baseline, and the KPP gain of noise-injection fine-tuning.

``python benchmarks/mitigation.py [--parts speed,order,crn,training] [--results-dir DIR]``

- ``speed``: six candidates (write-verify, SWIM 10 % by Hessian and by magnitude, 2 replicas,
  6-bit ADC, noise-aware fine-tuning) and the baseline on the public digits MLP at quantile 1e-4,
  budget 20,000 per candidate.  Target: 180 s on 2 cores.
- ``order``: ``write-verify``, ``swim:fraction=0.1`` and the baseline ranked on (a) the public case
  (weight-gaussian, sigma 0.05) at quantile 1e-4 against its shipped 1.2 x 10^8-chip reference, and
  (b) the PCM preset read after one day on the same network at quantile 1e-3 against a plain Monte
  Carlo reference computed here (``--pcm-chips``, cached in ``benchmarks/.cache``).  Any case in the
  benchmark format (``--case DIR``, a folder with ``model.onnx``, ``data.npz``, ``case.json`` and
  ``reference_hist.npy``) can be added.
- ``crn``: the mean metric's difference to the baseline with paired (common random numbers) and
  independent intervals, for the candidates that share the baseline's random numbers.
- ``training``: the k-th percentile accuracy (k = 1e-4 and 1e-3) of the digits MLP and of the
  digits CNN of ``benchmarks/cases.py`` before and after noise-aware fine-tuning (Gaussian and
  right-censored Gaussian), under weight-gaussian variation at the cases' sigma (and, for the MLP,
  at twice it).
"""

from __future__ import annotations

import reliability  # noqa: F401  (first: it sets OPENBLAS_THREAD_TIMEOUT before numpy loads)

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

CACHE = Path(__file__).resolve().parent / ".cache"
SPEED_CANDIDATES = ("write-verify:tolerance=0.05", "swim:fraction=0.1,tolerance=0.05",
                    "swim:fraction=0.1,tolerance=0.05,select=magnitude", "replicas:n=2", "adc:bits=6",
                    "noise-training:epochs=10")
ORDER_CANDIDATES = ("write-verify:tolerance=0.02", "swim:fraction=0.1,tolerance=0.02")


def _quantile_from_hist(hist: np.ndarray, k: float) -> tuple[int, float]:
    """The smallest count c with P(count <= c) >= k in a reference histogram, and that probability."""
    cdf = np.cumsum(hist) / hist.sum()
    c = int(np.searchsorted(cdf, k))
    return c, float(cdf[c])


def _row(name, value, unit, **extra):
    return {"name": name, "value": value, "unit": unit, **extra}


def speed(rows):
    from reliability.bench import load_case
    from reliability.data.evalset import digits_evalset
    from reliability.mitigation import rank

    case = load_case("digits_mlp_s05")
    Xtr, ytr, _, _ = digits_evalset()
    t0 = time.perf_counter()
    res = rank(case.network, case.X, case.y, case.variation, SPEED_CANDIDATES, metric="quantile:1e-4", budget=20000,
               rng=0, train=(Xtr, ytr))
    sec = time.perf_counter() - t0
    rows.append(_row("rank-6-digits-mlp-q1e-4", sec, "s", target=180.0, ratio=sec / 180.0,
                     evaluations=res.evaluations))
    print(res.summary(), flush=True)
    return res


def _pcm_reference(network, X, y, chips: int, seed: int = 12345):
    from reliability.cim import ChipSimulator
    from reliability.cim.spec import parse_variation

    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"pcm_1day_digits_mlp_{chips}_{seed}.npy"
    if path.exists():
        return np.load(path)
    sim = ChipSimulator(network, parse_variation("pcm").with_(time_s=86400.0))
    res = sim.evaluate(X, y, chips, rng=seed)
    hist = np.bincount(res.n_correct, minlength=len(y) + 1).astype(np.int64)
    np.save(path, hist)
    return hist


def _order(rows, label, network, X, y, variation, k, hist, budget):
    from reliability.mitigation import rank

    res = rank(network, X, y, variation, ORDER_CANDIDATES, metric=f"quantile:{k}", budget=budget, rng=0)
    c_ref, p_ref = _quantile_from_hist(hist, k)
    base = res.baseline.robustness
    wv, swim = res.mitigations
    lo, hi = base.ci95
    n = len(y)
    print(res.summary(), flush=True)
    rows.append(_row(f"order-{label}", base.value, "accuracy", reference=c_ref / n, reference_chips=int(hist.sum()),
                     baseline_ci95=[lo, hi], baseline_covers_reference=bool(lo - 1e-12 <= c_ref / n <= hi + 1e-12),
                     write_verify=wv.robustness.value, write_verify_ci95=list(wv.robustness.ci95),
                     swim10=swim.robustness.value, swim10_ci95=list(swim.robustness.ci95),
                     order_holds=bool(wv.robustness.ci95[0] > swim.robustness.ci95[1]
                                      and swim.robustness.ci95[0] > hi),
                     cost_order_holds=bool(wv.cost.values["write_time_s"] > swim.cost.values["write_time_s"]
                                           > res.baseline.cost.values["write_time_s"]),
                     write_pulses=[res.baseline.cost.values["write_pulses"], swim.cost.values["write_pulses"],
                                   wv.cost.values["write_pulses"]], seconds=res.seconds))


def order(rows, pcm_chips: int, cases: list[str]):
    from reliability.bench import load_case

    case = load_case("digits_mlp_s05")
    _order(rows, "public-weight-gaussian-q1e-4", case.network, case.X, case.y, case.variation, 1e-4, case.reference,
           20000)
    hist = _pcm_reference(case.network, case.X, case.y, pcm_chips)
    _order(rows, "pcm-1day-q1e-3", case.network, case.X, case.y,
           __import__("reliability.cim.spec", fromlist=["parse_variation"]).parse_variation("pcm").with_(time_s=86400.0),
           1e-3, hist, 20000)
    for d in cases:
        c = load_case(d)
        _order(rows, f"{c.name}-q1e-4", c.network, c.X, c.y, c.variation, 1e-4, c.reference, 20000)


def crn(rows):
    """Paired (common random numbers) against independent intervals of the difference to the
    baseline, mean metric, 2,000 chips per candidate, on the public case and on the PCM preset."""
    from reliability.bench import load_case
    from reliability.cim.spec import parse_variation
    from reliability.mitigation import rank

    case = load_case("digits_mlp_s05")
    for label, var in (("weight-gaussian-0.1", "weight-gaussian:sigma=0.1"),
                       ("pcm-1day", parse_variation("pcm").with_(time_s=86400.0))):
        res = rank(case.network, case.X, case.y, var, ["write-verify:tolerance=0.05", "swim:fraction=0.1,tolerance=0.05",
                                                       "adc:bits=6", "refresh:period_s=3600"],
                   metric="mean", budget=2000, rng=0)
        for c in res.mitigations:
            vs = c.vs_baseline
            if vs is None:
                continue
            rows.append(_row(f"crn-{label}-{c.name}", vs["paired_width_ratio"], "paired / independent interval width",
                             case=label, candidate=c.name, difference=vs["difference"], paired=vs["ci95_paired"],
                             independent=vs["ci95_independent"]))
            print(rows[-1], flush=True)


def training(rows):
    from cases import CASES

    from reliability.bench import load_case
    from reliability.data.evalset import digits_evalset
    from reliability.mitigation import finetune
    from reliability.sampling import estimate_tail

    Xtr, ytr, _, _ = digits_evalset()
    pub = load_case("digits_mlp_s05")
    cnn = next(c for c in CASES if c.name == "digits_cnn_s05")
    net_cnn, Xc, yc = cnn.network()
    # the CNN's tail costs minutes per estimate: its case's sigma only
    nets = [("digits-mlp", pub.network, pub.X, pub.y, Xtr, (0.05, 0.10)),
            ("digits-cnn", net_cnn, Xc, yc, Xtr.reshape(-1, 1, 8, 8), (0.05,))]
    for label, net, X, y, Xt, sigmas in nets:
        for sigma in sigmas:
            var = f"weight-gaussian:sigma={sigma}"
            variants = [("baseline", net, 0.0)]
            for noise in ("gaussian", "censored"):
                t0 = time.perf_counter()
                tuned, _ = finetune(net, Xt, ytr, sigma=sigma, noise=noise, epochs=10, rng=0)
                variants.append((noise, tuned, time.perf_counter() - t0))
            base_q = None
            for name, nw, train_s in variants:
                clean = float((nw.forward(X)[0].argmax(-1) == y).mean())
                r = estimate_tail(nw, X, y, var, quantiles=(1e-3, 1e-4), budget=20000, rng=0)
                q3, q4 = r.quantiles
                if name == "baseline":
                    base_q = (q3.accuracy, q4.accuracy)
                rows.append(_row(f"kpp-{label}-s{sigma:g}-{name}", q4.accuracy, "accuracy at k = 1e-4", network=label,
                                 sigma=sigma, noise=name,
                                 ci95=list(q4.ci95), kpp_1e3=q3.accuracy, kpp_1e3_ci95=list(q3.ci95), clean=clean,
                                 gain_1e4=q4.accuracy - base_q[1], gain_1e3=q3.accuracy - base_q[0],
                                 reliable=bool(q3.reliable and q4.reliable), train_seconds=train_s, epochs=10))
                print(rows[-1], flush=True)


def _r(v, n=4):
    return None if v is None else float(f"{v:.{n}g}")


def results_document(rows: list[dict], argv: list[str]) -> dict:
    """The rows as a results file (schema of ``docs/gen_results.py``)."""
    from run import provenance

    speed_rows = [{"benchmark": r["name"], "seconds": _r(r["value"]), "target_s": r["target"], "ratio": _r(r["ratio"], 3),
                   "evaluations": r["evaluations"]} for r in rows if r["name"].startswith("rank-")]
    order_rows = [{"case": r["name"][len("order-"):], "baseline": _r(r["value"]), "ci": [_r(v) for v in r["baseline_ci95"]],
                   "reference": _r(r["reference"]), "chips": r["reference_chips"], "covers": r["baseline_covers_reference"],
                   "wv": _r(r["write_verify"]), "wv_ci": [_r(v) for v in r["write_verify_ci95"]],
                   "swim": _r(r["swim10"]), "swim_ci": [_r(v) for v in r["swim10_ci95"]], "order": r["order_holds"],
                   "cost_order": r["cost_order_holds"], "pulses": [_r(v, 5) for v in r["write_pulses"]],
                   "seconds": _r(r["seconds"], 3)} for r in rows if r["name"].startswith("order-")]
    kpp_rows = []
    for r in rows:
        if r["name"].startswith("kpp-"):
            base = dict(network=r["network"], sigma=r["sigma"], noise=r["noise"], clean=_r(r["clean"]),
                        seconds=_r(r["train_seconds"], 3))
            kpp_rows.append({**base, "k": 1e-4, "kpp": _r(r["value"]), "ci": [_r(v) for v in r["ci95"]],
                             "gain": _r(r["gain_1e4"], 3)})
            kpp_rows.append({**base, "k": 1e-3, "kpp": _r(r["kpp_1e3"]), "ci": [_r(v) for v in r["kpp_1e3_ci95"]],
                             "gain": _r(r["gain_1e3"], 3)})
    crn_rows = [{"case": r["case"], "candidate": r["candidate"], "difference": _r(r["difference"], 3),
                 "paired": [_r(v, 3) for v in r["paired"]], "independent": [_r(v, 3) for v in r["independent"]],
                 "ratio": _r(r["value"], 3)} for r in rows if r["name"].startswith("crn-")]
    tables = []
    if crn_rows:
        tables.append({"caption": "Common random numbers: the mean accuracy's difference to the baseline with its "
                                  "paired and its independent interval (chips per candidate as in the options)",
                       "columns": [["variation", "{case}"], ["candidate", "{candidate}"], ["difference", "{difference}"],
                                   ["paired interval", "{paired}"], ["independent interval", "{independent}"],
                                   ["width ratio", "{ratio}"]], "rows": crn_rows})
    if speed_rows:
        tables.append({"caption": "Ranking the baseline and six candidates on the public digits MLP (quantile k, "
                                  "budget per candidate as in the options)",
                       "columns": [["benchmark", "{benchmark}"], ["seconds", "{seconds}"], ["target, s", "{target_s}"],
                                   ["ratio", "{ratio}"], ["chip evaluations", "{evaluations}"]], "rows": speed_rows})
    if order_rows:
        tables.append({"caption": "Write-verify, SWIM on a tenth of the weights and the baseline: robustness (k-th "
                                  "percentile accuracy) with intervals, against brute force",
                       "columns": [["case", "{case}"], ["baseline", "{baseline} [{ci}]"],
                                   ["brute force", "{reference} ({chips} chips)"], ["interval holds it", "{covers}"],
                                   ["write-verify", "{wv} [{wv_ci}]"], ["SWIM", "{swim} [{swim_ci}]"],
                                   ["order with intervals", "{order}"], ["cost order", "{cost_order}"],
                                   ["write pulses: baseline, SWIM, write-verify", "{pulses}"], ["seconds", "{seconds}"]],
                       "rows": order_rows})
    if kpp_rows:
        tables.append({"caption": "Noise-aware fine-tuning: k-th percentile accuracy under weight-gaussian variation "
                                  "before (baseline) and after",
                       "columns": [["network", "{network}"], ["variation sigma", "{sigma}"], ["training noise", "{noise}"],
                                   ["clean accuracy", "{clean}"], ["k", "{k}"], ["percentile accuracy", "{kpp} [{ci}]"],
                                   ["gain", "{gain}"], ["training seconds", "{seconds}"]], "rows": kpp_rows})
    return {"schema": "nvcim-reliability/results", "schema_version": 1, "id": "mitigation", "order": 60,
            "title": "Mitigation ranking", "provenance": provenance("benchmarks/mitigation.py", argv),
            "summary": "Robustness is the k-th percentile accuracy from the hybrid tail estimator with its 95 % "
                       "interval (an interval of one point: the estimate is resolved to one count of correct samples). "
                       "The order holds with intervals when write-verify's interval lies above SWIM's and SWIM's above "
                       "the baseline's; the cost order compares write time per chip.",
            "tables": tables, "notes": []}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="speed,order,crn,training")
    ap.add_argument("--pcm-chips", type=int, default=300_000)
    ap.add_argument("--case", action="append", default=[], help="extra benchmark case folder for the order check")
    ap.add_argument("--json", help="write the rows as JSON")
    ap.add_argument("--from-json", action="append", default=[], help="rows of earlier runs (--json) to include")
    ap.add_argument("--results-dir", help="write the rows as mitigation.json in this folder (e.g. benchmarks/results)")
    args = ap.parse_args(argv)
    rows: list[dict] = []
    for f in args.from_json:
        rows.extend(json.loads(Path(f).read_text()))
    parts = set(filter(None, args.parts.split(",")))
    if "speed" in parts:
        speed(rows)
    if "order" in parts:
        order(rows, args.pcm_chips, args.case)
    if "crn" in parts:
        crn(rows)
    if "training" in parts:
        training(rows)
    for r in rows:
        print(json.dumps(r))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if args.results_dir:
        d = Path(args.results_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "mitigation.json").write_text(json.dumps(results_document(rows, sys.argv[1:] if argv is None else argv),
                                                      indent=2) + "\n")


if __name__ == "__main__":
    main()
