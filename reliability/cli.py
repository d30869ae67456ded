"""The ``reliability`` command: thin argument parsing over the library, then printing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from reliability import __version__
from reliability.cli_worstcase import add_worstcase_parser
from reliability.errors import ReliabilityError

FAMILY_CHOICES = ["auto", "normal", "lognormal", "student_t", "skew_normal", "gaussian_mixture", "empirical"]


def _table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c, justify="right" if c not in ("candidate", "message") else "left")
    for r in rows:
        t.add_row(*[_fmt(r.get(c)) for c in columns])
    Console(width=160).print(t)


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:.4g}"
    return str(v)


def _refuse_overwrite(path, option: str, force: bool) -> Path:
    """Nothing is overwritten unless the user said so."""
    path = Path(path)
    if path.exists() and not force:
        raise ReliabilityError(f"{option} {path} exists; pass --force to overwrite it or choose another path.")
    return path


def _read_data(args):
    from reliability.data import from_wide, read_measurements

    if args.wide:
        return from_wide(args.data, read_voltage=args.read_voltage, unit=args.unit, drop_invalid=args.drop_invalid)
    return read_measurements(args.data, unit=args.unit, read_voltage=args.read_voltage, drop_invalid=args.drop_invalid)


def _print_fit(res) -> None:
    cols = ["candidate", "k", "loglik", "bic", "ks", "ad", "tail_low_ratio", "tail_high_ratio", "tails_ok"]
    rows = res.to_polars().to_dicts()
    _table(rows, cols, title="candidates, best first (tail counts observed/expected beyond 0.1 % / 99.9 %)")
    print(res.summary())
    if res.model is not None:
        print()
        print(res.model.describe())


def cmd_fit(args) -> int:
    from reliability.fit import fit_device

    out = _refuse_overwrite(args.out, "--out", args.force)
    table = _read_data(args)
    if table.n_dropped:
        print(f"dropped {table.n_dropped} invalid rows: {table.drop_reasons}", file=sys.stderr)
    censor = tuple(args.censor) if args.censor else None
    stuck = {"auto": "auto", "yes": True, "no": False}[args.stuck]
    if args.bayes:
        return _fit_bayes(args, table, out, censor, stuck)
    res = fit_device(table, families=args.family, state=args.state, censor=censor, stuck=stuck,
                     chip_gain=not args.no_chip_gain, t0_s=args.t0, name=args.name or Path(args.data).stem)
    _print_fit(res)
    if res.model is None:
        print(f"error: {res.message}", file=sys.stderr)
        return 1
    res.model.save(out, overwrite=True)
    print(f"\nwrote {out}")
    if not res.success:
        print(f"warning: {res.message}", file=sys.stderr)
    return 0


def _fit_bayes(args, table, out, censor, stuck) -> int:
    from reliability.fit.bayes import fit_device_bayes

    family = "normal" if args.family == "auto" else args.family
    res = fit_device_bayes(table, family=family, censor=censor, stuck=stuck, chip_gain=not args.no_chip_gain,
                           t0_s=args.t0, draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
                           name=args.name or Path(args.data).stem)
    print(res.report())
    print()
    print(res.model.describe())
    res.model.save(out, overwrite=True, trace=res.idata if args.trace else None)
    beside = f"{out.stem}.posterior.npz" + (f", {out.stem}.trace.nc" if args.trace else "")
    print(f"\nwrote {out} (beside it: {beside})")
    return 0


def cmd_device_show(args) -> int:
    from reliability.devices import load_device

    m = load_device(args.device)
    print(m.describe())
    if args.json:
        print(m.to_json())
    return 0


def cmd_device_presets(args) -> int:
    from reliability.devices.presets import PRESETS

    for name, fn in PRESETS.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        print(f"{name:16s} {doc[0] if doc else ''}")
    return 0


def cmd_device_sample(args) -> int:
    from reliability.devices import load_device

    out = _refuse_overwrite(args.npy, "--npy", args.force)
    if args.n < 1:
        raise ReliabilityError(f"-n must be a positive number of samples; got {args.n}.")
    m = load_device(args.device)
    x = m.sample(args.target, time_s=args.time, size=args.n, rng=np.random.default_rng(args.seed))
    np.save(out, x)
    q = np.percentile(x, [5, 50, 95])
    print(f"wrote {args.n} samples ({m.unit}) of devices programmed to {args.target:g} {m.unit}, read at "
          f"{args.time:g} s, each on a new chip, to {out}: mean {x.mean():.4g}, std {x.std():.4g}, "
          f"5/50/95 % {q[0]:.4g}/{q[1]:.4g}/{q[2]:.4g}")
    return 0


def cmd_demo(args) -> int:
    from reliability.data import load_bundled
    from reliability.fit import fit_device

    print("nvcim-reliability demo: fit the bundled CrossSim pulse-ramp measurements (set.csv, BSD-3, read at 0.1 V)\n")
    table = load_bundled("crosssim-set")
    print(table.summary())
    res = fit_device(table, name="crosssim-set")
    _print_fit(res)
    if args.out:
        res.model.save(args.out, overwrite=args.force)
        print(f"\nwrote {args.out}")
    _demo_chips()
    return 0


def _demo_chips() -> None:
    """Part 2 of the demo: a small network on many simulated chips."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from reliability.cim import from_sklearn
    from reliability.cim.simulate import ChipSimulator
    from reliability.cim.spec import ChipSpec, MappingSpec
    from reliability.data.evalset import digits_evalset
    from reliability.devices import load_device

    print("\nnvcim-reliability demo, part 2: a 64-32-10 MLP trained on scikit-learn's digits, run on 2,000 "
          "simulated chips\n")
    Xtr, ytr, Xev, yev = digits_evalset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0).fit(Xtr, ytr)
    net = from_sklearn(clf)
    print(f"clean accuracy on {len(yev)} held-out digits: {clf.score(Xev, yev):.4f}")
    rows = []
    for label, spec in (
        ("weight-gaussian sigma=0.1", "weight-gaussian:sigma=0.1"),
        ("PCM preset, 1 day, 8-bit weights, 2-bit slices", ChipSpec(device=load_device("pcm"), time_s=86400.0,
                                                                  mapping=MappingSpec(weight_bits=8, device_bits=2))),
        ("PCM preset, 1 year, analog weights", ChipSpec(device=load_device("pcm"), time_s=3.15e7)),
    ):
        res = ChipSimulator(net, spec).evaluate(Xev, yev, 2000, seed=0)
        a = res.accuracy
        q = np.percentile(a, [0.1, 1, 50])
        rows.append({"chip": label, "mean": float(a.mean()), "std": float(a.std(ddof=1)), "median": float(q[2]),
                     "1 %": float(q[1]), "0.1 %": float(q[0]), "worst": float(a.min()), "s": res.seconds})
    _table(rows, ["chip", "mean", "std", "median", "1 %", "0.1 %", "worst", "s"],
           title="accuracy over 2,000 simulated chips (percentiles from the bottom)")
    print("mean +/- std hides the bottom of the distribution; `reliability tail` estimates it far below 1/2,000:\n")
    from reliability.sampling import estimate_tail

    res = estimate_tail(net, Xev, yev, "weight-gaussian:sigma=0.1", below=[0.70, 0.65], quantiles=[1e-5],
                        budget=10000, seed=0)
    _table([{"P(acc <= a)": f"a = {e.below:g}", "probability": e.probability, "95 % CI":
             f"[{e.ci95[0]:.3g}, {e.ci95[1]:.3g}]", "reliable": e.reliable, "reason": e.reason or ""}
            for e in res.estimates] + [{"P(acc <= a)": f"accuracy of the worst 1e-5 of chips: {q.accuracy:.4f}",
                                        "probability": q.k, "95 % CI": f"[{q.ci95[0]:.4f}, {q.ci95[1]:.4f}]",
                                        "reliable": q.reliable, "reason": q.reason or ""} for q in res.quantiles],
           ["P(acc <= a)", "probability", "95 % CI", "reliable", "reason"],
           title=f"weight-gaussian sigma=0.1: {res.method}, {res.evaluations} chip evaluations, {res.seconds:.1f} s")
    print("and the worst case: the lowest accuracy a chip reaches while every weight stays within "
          "+/- k sigma of its target:\n")
    from reliability.sampling.worstcase import worst_case

    wc = worst_case(net, Xev, yev, "weight-gaussian:sigma=0.1", bounds=[0.05, 0.1, 0.25, 0.5], random_chips=100,
                    sensitivity=False, seed=0)
    _table([{"bound": f"+/- {b.bound:g} sigma", "worst-case accuracy": b.accuracy,
             "lowest of 100 random chips in the bound": b.random_min_accuracy, "clean": b.clean_accuracy}
            for b in wc.bounds], ["bound", "worst-case accuracy", "lowest of 100 random chips in the bound", "clean"],
           title=f"weight-gaussian sigma=0.1: worst case by projected gradient search, {wc.seconds:.1f} s")


def cmd_simulate(args) -> int:
    from reliability.cim import load_model
    from reliability.cim.simulate import ChipSimulator
    from reliability.data.evalset import load_evalset

    out = _refuse_overwrite(args.out, "--out", args.force)
    if args.chips < 1:
        raise ReliabilityError(f"--chips must be a positive integer; got {args.chips}.")
    net = load_model(args.model)
    X, y = load_evalset(args.data)
    sim = ChipSimulator(net, args.variation)
    res = sim.evaluate(X, y, args.chips, seed=args.seed, chunk_size=args.chunk_size,
                       progress=_progress("chips") if sys.stderr.isatty() else None)
    res.to_polars().write_parquet(out)
    print(res.summary())
    for k, v in res.diagnostics.items():
        print(f"  {k}: {v:.3g}")
    print(f"wrote {len(res.chip)} rows (chip, accuracy, loss, n_correct) to {out}")
    return 0 if res.complete else 130


def cmd_tail(args) -> int:
    import json as _json

    from reliability.cim import load_model
    from reliability.data.evalset import load_evalset
    from reliability.sampling import estimate_tail

    if args.json:
        _refuse_overwrite(args.json, "--json", args.force)
    net = load_model(args.model)
    X, y = load_evalset(args.data)
    client = None
    if args.workers or args.scheduler:
        from reliability.sampling.parallel import make_client

        client = make_client(args.workers, args.scheduler)
    try:
        res = estimate_tail(net, X, y, args.variation, below=args.below or (), quantiles=args.quantile or (),
                            budget=args.budget, seed=args.seed, method=args.method, checkpoint=args.checkpoint,
                            progress=_progress("chip evaluations") if sys.stderr.isatty() else None, client=client)
    finally:
        if client is not None and not args.scheduler:
            cluster = client.cluster
            client.close()
            cluster.close()
    if not res.complete:
        print("interrupted: the result below uses the completed levels only (wider intervals, flagged); "
              "run the same command with --checkpoint to resume", file=sys.stderr)
    rows = [{"P(acc <= a)": f"a = {e.below:.6g}", "probability": e.probability, "std error": e.std_error,
             "95 % CI": f"[{e.ci95[0]:.3g}, {e.ci95[1]:.3g}]", "method": e.method, "ESS": e.ess,
             "reliable": e.reliable, "reason": e.reason or ""} for e in res.estimates]
    if rows:
        _table(rows, list(rows[0]), title=f"tail probabilities ({res.evaluations} chip evaluations, {res.seconds:.1f} s)")
    qrows = [{"k": q.k, "accuracy": q.accuracy, "95 % CI": f"[{q.ci95[0]:.4g}, {q.ci95[1]:.4g}]",
              "reliable": q.reliable, "reason": q.reason or ""} for q in res.quantiles]
    if qrows:
        _table(qrows, list(qrows[0]), title="k-th percentile accuracy")
    if args.json:
        Path(args.json).write_text(_json.dumps(res.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    unreliable = [e for e in res.estimates if not e.reliable] + [q for q in res.quantiles if not q.reliable]
    if unreliable:
        print(f"warning: {len(unreliable)} estimate(s) flagged unreliable; see 'reason'", file=sys.stderr)
    return 0


def _progress(what: str):
    def show(done, total):
        print(f"\r{what}: {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)
    return show


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reliability", description="Statistical reliability of computing-in-memory "
                                "accelerators: fit device variation, propagate it, estimate tail accuracy.")
    p.add_argument("--version", action="version", version=f"nvcim-reliability {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="fit the bundled device data, then run a small network on simulated chips")
    d.add_argument("--out", help="also write the fitted model to this JSON file")
    d.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    d.set_defaults(func=cmd_demo)

    f = sub.add_parser("fit", help="fit a device model to measurements (CSV or Parquet)")
    f.add_argument("data", help="measurement file in the long format (see `reliability.data`), or wide with --wide")
    f.add_argument("--out", required=True, help="output device model JSON")
    f.add_argument("--family", default="auto", choices=FAMILY_CHOICES, help="variation family (default: rank all)")
    f.add_argument("--state", default="auto", choices=["auto", "levels", "poly"],
                   help="state dependence: spline through levels, polynomial, or both ranked")
    f.add_argument("--unit", help="unit of columns without a suffix: S, mS, uS, nS, or with --read-voltage a current unit A, mA, uA, nA")
    f.add_argument("--read-voltage", type=float, help="read voltage in V, to convert read current to conductance")
    f.add_argument("--wide", action="store_true", help="one column per repetition (e.g. CrossSim pulse ramps)")
    f.add_argument("--censor", nargs=2, type=float, metavar=("LOW", "HIGH"), help="measurement range in uS")
    f.add_argument("--stuck", default="auto", choices=["auto", "yes", "no"], help="stuck-at mixture")
    f.add_argument("--no-chip-gain", action="store_true", help="do not estimate chip-to-chip gain")
    f.add_argument("--t0", type=float, default=20.0, help="drift reference time in s (default 20)")
    f.add_argument("--drop-invalid", action="store_true", help="drop invalid rows (reported) instead of failing")
    f.add_argument("--name", help="model name (default: data file stem)")
    f.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    f.add_argument("--bayes", action="store_true",
                   help="hierarchical Bayesian fit (PyMC NUTS, family normal or student_t; --state is not used): the "
                        "model file carries posterior draws in <out stem>.posterior.npz beside it")
    f.add_argument("--draws", type=int, default=2000, help="--bayes: draws per chain (default 2000)")
    f.add_argument("--tune", type=int, default=1000, help="--bayes: tuning steps per chain (default 1000)")
    f.add_argument("--chains", type=int, default=2, help="--bayes: chains (default 2)")
    f.add_argument("--seed", type=int, default=0, help="--bayes: sampler seed (default 0)")
    f.add_argument("--trace", action="store_true", help="--bayes: also write the trace, <out stem>.trace.nc (NetCDF)")
    f.set_defaults(func=cmd_fit)

    sm = sub.add_parser("simulate", help="accuracy and loss of many simulated chips (one row per chip)")
    sm.add_argument("--model", required=True, help="network: .onnx or .npz layer file")
    sm.add_argument("--data", required=True, help=".npz with X (inputs) and y (integer labels)")
    sm.add_argument("--variation", required=True,
                    help="weight-gaussian:sigma=S, multi-device:..., a device preset, or a chip file (.toml/.json)")
    sm.add_argument("--chips", type=int, required=True, help="number of chips (chip i depends only on seed and i)")
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--chunk-size", type=int, help="chips per batch (default: from the memory budget)")
    sm.add_argument("--out", required=True, help="output Parquet file")
    sm.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    sm.set_defaults(func=cmd_simulate)

    tl = sub.add_parser("tail", help="tail accuracy: P(accuracy <= a) and k-th percentile accuracy, with CIs")
    tl.add_argument("--model", required=True, help="network: .onnx or .npz layer file")
    tl.add_argument("--data", required=True, help=".npz with X and y")
    tl.add_argument("--variation", required=True, help="weight-gaussian:sigma=S, a device preset, or a chip file")
    tl.add_argument("--below", type=float, action="append", help="accuracy threshold a (repeatable)")
    tl.add_argument("--quantile", type=float, action="append", help="tail probability k (repeatable)")
    tl.add_argument("--budget", type=int, default=20000, help="maximum chip evaluations (default 20000)")
    tl.add_argument("--seed", type=int, default=0)
    tl.add_argument("--method", default="auto", choices=["auto", "hybrid", "subset", "mc", "is"],
                    help="auto/hybrid: importance sampling along the failure modes' design points plus subset "
                    "simulation for the rest; subset: subset simulation alone; mc: plain Monte Carlo; is: one "
                    "mean shift (for comparison)")
    tl.add_argument("--workers", type=int, help="start a local Dask cluster with this many worker processes")
    tl.add_argument("--scheduler", help="join an existing Dask cluster at this address (tcp://host:port)")
    tl.add_argument("--checkpoint", help="checkpoint file (.npz): written as the run goes (the hybrid method "
                    "also writes NAME-subset.npz beside NAME.npz); an existing one from the same run is resumed")
    tl.add_argument("--json", help="write the result as JSON")
    tl.add_argument("--force", action="store_true", help="overwrite --json if it exists")
    tl.set_defaults(func=cmd_tail)

    add_worstcase_parser(sub)

    dev = sub.add_parser("device", help="inspect and sample device models")
    dsub = dev.add_subparsers(dest="device_command", metavar="SUBCOMMAND")
    s = dsub.add_parser("show", help="describe a device model (JSON file or preset name)")
    s.add_argument("device")
    s.add_argument("--json", action="store_true", help="also print the JSON document")
    s.set_defaults(func=cmd_device_show)
    pr = dsub.add_parser("presets", help="list the literature presets")
    pr.set_defaults(func=cmd_device_presets)
    sa = dsub.add_parser("sample", help="conductance samples of random devices on random new chips")
    sa.add_argument("device", help="JSON file or preset name")
    sa.add_argument("--target", type=float, required=True, help="programmed target (model unit, uS for conductance)")
    sa.add_argument("--time", type=float, default=0.0, help="read time in seconds since programming")
    sa.add_argument("-n", type=int, required=True, help="number of samples")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--npy", required=True, help="output .npy file")
    sa.add_argument("--force", action="store_true", help="overwrite --npy if it exists")
    sa.set_defaults(func=cmd_device_sample)
    dev.set_defaults(func=lambda a: (dev.print_help(), 0)[1])
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ReliabilityError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
