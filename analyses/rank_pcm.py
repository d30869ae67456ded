"""Which mitigation should a PCM chip read one day after programming get?

Ranks the catalogue for the PCM preset (aihwkit's PCM model: programming noise, drift, 1/f read
noise; differential pairs, no ADC) at t = 1 day on the digits MLP of the public benchmark case,
by the 1e-3 percentile accuracy, and writes the ranking (JSON) and its cost-against-robustness plot.

    python analyses/rank_pcm.py [--out analyses/out] [--budget 10000] [--metric quantile:1e-3]
"""

import argparse
import json
from pathlib import Path

from reliability.bench import load_case
from reliability.cim.spec import parse_variation
from reliability.data.evalset import digits_evalset
from reliability.mitigation import rank
from reliability.report import plot_ranking

CANDIDATES = [
    "write-verify:tolerance=0.05",
    "write-verify:tolerance=0.02",
    "swim:fraction=0.1,tolerance=0.02",
    "swim:fraction=0.1,tolerance=0.02,select=magnitude",
    "replicas:n=2",
    "adc:bits=6",
    "adc:bits=8",
    "drift-compensation",
    "refresh:period_s=3600",
    "noise-training:epochs=10",
    "drift-compensation + swim:fraction=0.1,tolerance=0.02",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="analyses/out")
    ap.add_argument("--budget", type=int, default=10000)
    ap.add_argument("--metric", default="quantile:1e-3")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    case = load_case("digits_mlp_s05")
    Xtr, ytr, _, _ = digits_evalset()
    spec = parse_variation("pcm").with_(time_s=86400.0)
    res = rank(case.network, case.X, case.y, spec, CANDIDATES, metric=args.metric, budget=args.budget,
               rng=args.seed, train=(Xtr, ytr), checkpoint=out / "rank_pcm_checkpoint.json")
    print(res.summary())
    print(res.to_polars().select("name", "value", "ci_low", "ci_high", "rank", "pareto", "cost_write_time_s",
                                 "cost_devices_per_weight", "cost_adc_energy_nJ", "cost_training_epochs"))
    (out / "rank_pcm.json").write_text(json.dumps(res.to_dict(), indent=2) + "\n")
    plot_ranking(res, out / "rank_pcm.png")
    plot_ranking(res, out / "rank_pcm_write_time.png", cost="write_time_s")
    print(f"wrote {out / 'rank_pcm.json'}, {out / 'rank_pcm.png'} and {out / 'rank_pcm_write_time.png'}")


if __name__ == "__main__":
    main()
