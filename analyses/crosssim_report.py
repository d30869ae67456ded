"""How reliable is a digits classifier on chips built from the CrossSim devices?

Fits the bundled CrossSim set ramps (Sandia CrossSim, BSD-3: read current at 0.1 V, one column per
ramp repetition), maps the public benchmark case's 64-32-10 MLP onto chips of the fitted device
(differential pairs over the measured conductance range), and writes the reliability report:
the fit with its QQ and tail-check figures, the accuracy over 2,000 simulated chips, the accuracy of
the worst 1 in 10,000 chips with its interval, the worst case within +/- 1, 2, 3 sigma and the
ranking of three mitigations.

    python analyses/crosssim_report.py [--out analyses/out] [--budget 20000] [--seed 0]
"""

import argparse
import time
from pathlib import Path

from reliability.bench import load_case
from reliability.cim import ChipSimulator, ChipSpec
from reliability.data import load_bundled
from reliability.fit import fit_device
from reliability.mitigation import rank
from reliability.report import build
from reliability.sampling import estimate_tail
from reliability.worstcase import worst_case

MITIGATIONS = ["write-verify:tolerance=0.02", "replicas:n=2", "adc:bits=6"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="analyses/out")
    ap.add_argument("--budget", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fit = fit_device(load_bundled("crosssim-set"), name="crosssim-set")
    print(fit.summary())
    case = load_case("digits_mlp_s05")
    spec = ChipSpec(device=fit.model)
    sim = ChipSimulator(case.network, spec)
    acc = sim.evaluate(case.X, case.y, 2000, rng=args.seed)
    print(acc.summary())
    tail = estimate_tail(case.network, case.X, case.y, spec, quantiles=[1e-4, 1e-3], budget=args.budget,
                         rng=args.seed, simulator=sim)
    print(tail.to_polars())
    worst = worst_case(case.network, case.X, case.y, spec, bounds=[1.0, 2.0, 3.0], rng=args.seed)
    ranking = rank(case.network, case.X, case.y, spec, MITIGATIONS, metric="quantile:1e-4", budget=args.budget // 2,
                   rng=args.seed)
    print(ranking.summary())
    report = build(fit=fit, simulation=acc, tail=tail, worst_case=worst, ranking=ranking,
                   title="CrossSim set-ramp devices: a digits MLP on 2,000 + 20,000 simulated chips",
                   provenance={"script": "analyses/crosssim_report.py", "seed": args.seed, "budget": args.budget,
                               "data": "bundled crosssim-set (Sandia CrossSim, BSD-3)",
                               "network": "public benchmark case digits_mlp_s05",
                               "run_time_s": round(time.perf_counter() - t0, 1)})
    paths = report.save(out / "crosssim_report.html", overwrite=True)
    print(report.document["verdict"]["text"])
    print(f"wrote {paths['html']}, {paths['json']} and the figures in {paths['figures']}/")


if __name__ == "__main__":
    main()
