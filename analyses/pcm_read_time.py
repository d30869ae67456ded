"""How does a PCM chip's worst-case accuracy age, and which mitigation keeps it?

The PCM preset (aihwkit's PCM model: programming noise, conductance drift, 1/f read noise;
differential pairs, no ADC) on the public benchmark case's digits MLP, read from 1 s to 10 years
after programming.  At each read time the baseline and three mitigations (global drift compensation,
hourly refresh, write-verify) are ranked by the accuracy of the worst 1 in 1,000 chips, with
intervals; the script plots that accuracy against read time, one line per design, and writes the
reliability report of the chip read one day after programming.

    python analyses/pcm_read_time.py [--out analyses/out] [--budget 5000] [--seed 0]
"""

import argparse
import json
from pathlib import Path

import numpy as np

from reliability.bench import load_case
from reliability.cim import ChipSimulator
from reliability.cim.spec import parse_variation
from reliability.mitigation import rank
from reliability.report import build
from reliability.sampling import estimate_tail

TIMES = {"1 s": 1.0, "1 h": 3600.0, "1 day": 86400.0, "1 month": 2.6e6, "1 year": 3.156e7, "10 years": 3.156e8}
MITIGATIONS = ["drift-compensation", "refresh:period_s=3600", "write-verify:tolerance=0.02"]
METRIC = "quantile:1e-3"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="analyses/out")
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    case = load_case("digits_mlp_s05")
    rows = {}
    for label, t in TIMES.items():
        spec = parse_variation("pcm").with_(time_s=t)
        res = rank(case.network, case.X, case.y, spec, MITIGATIONS, metric=METRIC, budget=args.budget, rng=args.seed)
        rows[label] = res
        print(f"\n== read at {label}\n{res.summary()}")
    (out / "pcm_read_time.json").write_text(json.dumps({k: r.to_dict() for k, r in rows.items()}, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.array(list(TIMES.values()))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    names = [c.name for c in next(iter(rows.values())).candidates]
    for j, name in enumerate(names):
        cand = [next(c for c in r.candidates if c.name == name) for r in rows.values()]
        v = np.array([100 * c.robustness.value for c in cand])
        lo = np.array([100 * c.robustness.ci95[0] for c in cand])
        hi = np.array([100 * c.robustness.ci95[1] for c in cand])
        ax.errorbar(t * (1 + 0.04 * (j - 1.5)), v, yerr=[v - lo, hi - v], marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xticks(t, list(TIMES), fontsize=8)
    ax.set_xlabel("read time after programming")
    ax.set_ylabel("accuracy of the worst 1 in 1,000 chips (%)")
    ax.set_title("PCM preset, digits MLP: the tail over read time (95 % intervals)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "pcm_read_time.png", dpi=130)
    fig.savefig(out / "pcm_read_time.svg")

    spec = parse_variation("pcm").with_(time_s=86400.0)
    sim = ChipSimulator(case.network, spec)
    acc = sim.evaluate(case.X, case.y, 2000, rng=args.seed)
    tail = estimate_tail(case.network, case.X, case.y, spec, quantiles=[1e-3], budget=4 * args.budget,
                         rng=args.seed, simulator=sim)
    report = build(device=spec.device_model(), simulation=acc, tail=tail, ranking=rows["1 day"],
                   title="PCM preset read one day after programming: digits MLP",
                   provenance={"script": "analyses/pcm_read_time.py", "seed": args.seed, "budget": args.budget,
                               "read_time_s": 86400.0, "network": "public benchmark case digits_mlp_s05"})
    paths = report.save(out / "pcm_1day_report.html", overwrite=True)
    print(report.document["verdict"]["text"])
    print(f"wrote {out / 'pcm_read_time.png'}, {out / 'pcm_read_time.json'} and {paths['html']}")


if __name__ == "__main__":
    main()
