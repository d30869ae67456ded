"""``reliability rank``: mitigation candidates ranked by cost against robustness."""

from __future__ import annotations

import sys

from reliability.cli._output import (
    check_outputs, nonnegative_int, positive_int, progress_bar, table,
)


def add_parser(subparsers) -> None:
    """Add the ``rank`` command to the ``reliability`` command's subparsers."""
    rk = subparsers.add_parser("rank", help="rank mitigations (write-verify, SWIM, replicas, ADC bits...) by cost "
                               "against robustness")
    rk.add_argument("--model", help="network: .onnx or .npz layer file (required)")
    rk.add_argument("--data", help=".npz with X and y (required)")
    rk.add_argument("--variation", help="the baseline chip: weight-gaussian:sigma=S, a device preset, or a chip file "
                    "(required)")
    rk.add_argument("--mitigation", action="append", default=[], metavar="SPEC",
                    help="a candidate (repeatable), e.g. write-verify:tolerance=0.05, swim:fraction=0.1, replicas:n=2, "
                    "'write-verify + adc:bits=6'; 'reliability rank --catalogue' lists them")
    rk.add_argument("--metric", default="quantile:1e-4",
                    help="quantile:K (K-th percentile accuracy, default quantile:1e-4), prob:A (P(accuracy <= A)), mean, or "
                    "worst:K (worst case found within +/- K sigma per device)")
    rk.add_argument("--budget", type=positive_int, default=20000, help="chip evaluations per candidate (default 20000)")
    rk.add_argument("--seed", type=nonnegative_int, default=0, help="one seed for every candidate (common random numbers)")
    rk.add_argument("--method", default="auto", choices=["auto", "hybrid", "subset", "mc", "is"],
                    help="tail estimator for quantile and prob metrics (see 'reliability tail')")
    rk.add_argument("--costs", help="a TOML file overriding the shipped unit costs and weights")
    rk.add_argument("--train", help=".npz with training X and y: needed by noise-training, used for SWIM's "
                    "sensitivities when given")
    rk.add_argument("--target", type=float, help="also name the cheapest candidate reaching this robustness")
    rk.add_argument("--checkpoint", help="JSON file of finished candidates: written as the run goes, resumed from")
    rk.add_argument("--catalogue", action="store_true", help="list the mitigations and their parameters, then exit")
    rk.add_argument("--json", help="write the ranking as JSON")
    rk.add_argument("--force", action="store_true", help="overwrite --json if it exists")
    rk.set_defaults(func=run)


def print_catalogue() -> None:
    from dataclasses import fields

    from reliability.mitigation import CATALOGUE

    rows = []
    for key, cls in CATALOGUE.items():
        params = ", ".join(f"{f.name}={f.default} ({cls.UNITS.get(f.name, '')})" for f in fields(cls)) or "-"
        rows.append({"candidate": key, "parameters (default, unit)": params, "message": cls.DOC})
    table(rows, ["candidate", "parameters (default, unit)", "message"], title="mitigation catalogue")


def run(args) -> int:
    """Rank the candidates, print the table (flagging ties and unreliable estimates), write ``--json``."""
    from reliability._json import write_json

    if args.catalogue:
        print_catalogue()
        return 0
    from reliability.cim import load_model
    from reliability.data.evalset import load_evalset
    from reliability.errors import ReliabilityError
    from reliability.mitigation import parse_mitigation, rank

    missing = [f"--{k}" for k in ("model", "data", "variation") if not getattr(args, k)]
    if missing:
        raise ReliabilityError(f"reliability rank needs {', '.join(missing)} (or --catalogue to list the mitigations).")
    if not args.mitigation:
        raise ReliabilityError("give at least one --mitigation SPEC (the baseline is always included); "
                               "'reliability rank --catalogue' lists them.")
    for m in args.mitigation:         # bad specs fail before the network is loaded
        parse_mitigation(m)
    check_outputs(args)
    net = load_model(args.model)
    X, y = load_evalset(args.data)
    train = load_evalset(args.train) if args.train else None
    res = rank(net, X, y, args.variation, args.mitigation, metric=args.metric, budget=args.budget, rng=args.seed,
               costs=args.costs, method=args.method, train=train, checkpoint=args.checkpoint,
               progress=progress_bar("candidates"))
    rows = []
    for c in sorted(res.candidates, key=lambda c: c.rank):
        r = c.robustness
        rows.append({"rank": c.rank, "candidate": c.name, res.metric: r.value,
                     "95 % CI": f"[{r.ci95[0]:.5g}, {r.ci95[1]:.5g}]", "reliable": r.reliable,
                     "cost": c.cost.scalar, "write pulses": c.cost.values["write_pulses"],
                     "devices/weight": c.cost.values["devices_per_weight"],
                     "ADC nJ/inf": c.cost.values["adc_energy_nJ"], "pareto": c.pareto,
                     "tied with": ", ".join(c.tied_with)})
    table(rows, list(rows[0]), title=f"{len(rows)} candidates by {res.metric} "
          f"({'higher' if res.higher_is_better else 'lower'} is better; {res.evaluations} chip evaluations, "
          f"{res.seconds:.1f} s)")
    print(f"Pareto front (cost vs {res.metric}): {', '.join(res.pareto_front)}")
    if args.target is not None:
        best = res.cheapest(args.target)
        print(f"cheapest reaching {args.target:g} (whole 95 % interval): " + (best.name if best else "none"))
    if args.json:
        write_json(args.json, res.to_dict())
        print(f"wrote {args.json}")
    for note in res.notes:
        print(f"warning: {note}", file=sys.stderr)
    return 0
