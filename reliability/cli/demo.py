"""``reliability demo``: prints :func:`reliability.demo.demo_steps` part by part as it runs."""

from __future__ import annotations

from reliability.cli._output import print_fit, table


def add_parser(subparsers) -> None:
    """Add the ``demo`` command to the ``reliability`` command's subparsers."""
    d = subparsers.add_parser("demo", help="fit the bundled device data, then run a small network on simulated chips")
    d.add_argument("--out", help="also write the fitted model to this JSON file")
    d.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    d.set_defaults(func=run)


def run(args) -> int:
    """Run the demo, printing each part as soon as it is ready (and write ``--out``)."""
    from reliability.demo import demo_steps

    print("nvcim-reliability demo: fit the bundled CrossSim pulse-ramp measurements (set.csv, BSD-3, read at 0.1 V)\n")
    for part, r in demo_steps():
        if part == "data":
            print(r.table.summary())
        elif part == "fit":
            print_fit(r.fit)
            if args.out:
                r.fit.model.save(args.out, overwrite=args.force)
                print(f"\nwrote {args.out}")
            print("\nnvcim-reliability demo, part 2: a 64-32-10 MLP trained on scikit-learn's digits, run on 2,000 "
                  "simulated chips\n")
        elif part == "network":
            print(f"clean accuracy on {r.n_eval} held-out digits: {r.clean_accuracy:.4f}")
        elif part == "chips":
            _print_settings(r.settings)
            print("mean +/- std hides the bottom of the distribution; `reliability tail` estimates it far below "
                  "1/2,000:\n")
        elif part == "tail":
            _print_tail(r.tail)
            print("and the worst case: the lowest accuracy a chip reaches while every weight stays within "
                  "+/- k sigma of its target:\n")
        elif part == "worst_case":
            _print_worst_case(r.worst_case)
    return 0


def _print_settings(settings) -> None:
    rows = [{"chip": s.label, "mean": s.mean, "std": s.std, "median": s.median, "1 %": s.p1, "0.1 %": s.p01,
             "worst": s.worst, "seconds": s.seconds} for s in settings]
    table(rows, ["chip", "mean", "std", "median", "1 %", "0.1 %", "worst", "seconds"],
          title="accuracy over 2,000 simulated chips (percentiles from the bottom)")


def _print_tail(res) -> None:
    rows = [{"P(acc <= a)": f"a = {e.below:g}", "probability": e.probability,
             "95 % CI": f"[{e.ci95[0]:.3g}, {e.ci95[1]:.3g}]", "reliable": e.reliable, "reason": e.reason or ""}
            for e in res.estimates]
    rows += [{"P(acc <= a)": f"accuracy of the worst 1e-5 of chips: {q.accuracy:.4f}", "probability": q.k,
              "95 % CI": f"[{q.ci95[0]:.4f}, {q.ci95[1]:.4f}]", "reliable": q.reliable, "reason": q.reason or ""}
             for q in res.quantiles]
    table(rows, ["P(acc <= a)", "probability", "95 % CI", "reliable", "reason"],
          title=f"weight-gaussian sigma=0.1: {res.method}, {res.evaluations} chip evaluations, {res.seconds:.1f} s")


def _print_worst_case(wc) -> None:
    table([{"bound": f"+/- {b.bound:g} sigma", "worst-case accuracy": b.accuracy,
            "lowest of 100 random chips in the bound": b.random_min_accuracy, "clean": b.clean_accuracy}
           for b in wc.bounds], ["bound", "worst-case accuracy", "lowest of 100 random chips in the bound", "clean"],
          title=f"weight-gaussian sigma=0.1: worst case by projected gradient search, {wc.seconds:.1f} s")
