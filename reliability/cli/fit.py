"""``reliability fit``: fit a device model to measurements (maximum likelihood, or ``--bayes``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from reliability.cli._output import EXIT_FLAGGED, nonnegative_int, positive_int, print_fit, refuse_overwrite
from reliability.errors import ReliabilityError

FAMILY_CHOICES = ["auto", "normal", "lognormal", "student_t", "skew_normal", "gaussian_mixture", "empirical"]


def add_parser(subparsers) -> None:
    """Add the ``fit`` command to the ``reliability`` command's subparsers."""
    f = subparsers.add_parser("fit", help="fit a device model to measurements (CSV or Parquet)")
    f.add_argument("data", help="measurement file in the long format (see `reliability.data`), or wide with --wide")
    f.add_argument("--out", required=True, help="output device model JSON")
    f.add_argument("--family", default="auto", choices=FAMILY_CHOICES, help="variation family (default: rank all)")
    f.add_argument("--state", default="auto", choices=["auto", "levels", "poly"],
                   help="state dependence: spline through levels, polynomial, or both ranked")
    f.add_argument("--unit", help="unit of columns without a suffix: S, mS, uS, nS, or with --read-voltage a current unit A, mA, uA, nA")
    f.add_argument("--read-voltage", type=float, help="read voltage in V, to convert read current to conductance")
    f.add_argument("--wide", action="store_true", help="one column per repetition (e.g. CrossSim pulse ramps)")
    f.add_argument("--column", action="append", type=column_mapping, metavar="FILE_NAME=SCHEMA_NAME",
                   help="read the file's column FILE_NAME as the schema column SCHEMA_NAME (e.g. "
                        "G_meas=conductance_uS); FILE_NAME= (nothing after '=') leaves the column out; repeatable")
    f.add_argument("--censor", nargs=2, type=float, metavar=("LOW", "HIGH"), help="measurement range in uS")
    f.add_argument("--stuck", default="auto", choices=["auto", "yes", "no"], help="stuck-at mixture")
    f.add_argument("--no-chip-gain", action="store_true", help="do not estimate chip-to-chip gain")
    f.add_argument("--t0", type=float, default=20.0, help="drift reference time in s (default 20)")
    f.add_argument("--time-origin", choices=["programming", "t0"], default="programming",
                   help="what the file's time_s counts from: the end of programming (default), or the drift "
                        "reference t0 (--t0 seconds after programming, the aihwkit convention)")
    f.add_argument("--drop-invalid", action="store_true", help="drop invalid rows (reported) instead of failing")
    f.add_argument("--drop-outliers", action="store_true",
                   help="exclude readings no variation family can explain (named in the notes) instead of failing")
    f.add_argument("--name", help="model name (default: data file stem)")
    f.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    f.add_argument("--bayes", action="store_true",
                   help="hierarchical Bayesian fit (PyMC NUTS, family normal or student_t; --state is not used): the "
                        "model file carries posterior draws in <out stem>.posterior.npz beside it")
    f.add_argument("--draws", type=positive_int, default=2000, help="--bayes: draws per chain (default 2000)")
    f.add_argument("--tune", type=positive_int, default=1000, help="--bayes: tuning steps per chain (default 1000)")
    f.add_argument("--chains", type=positive_int, default=2, help="--bayes: chains (default 2)")
    f.add_argument("--seed", type=nonnegative_int, default=0, help="--bayes: sampler seed (default 0)")
    f.add_argument("--target-accept", type=float, default=0.95,
                   help="--bayes: NUTS target acceptance rate in [0.5, 1) (default 0.95; raise it against divergences)")
    f.add_argument("--scale-degree", type=nonnegative_int, default=2,
                   help="--bayes: degree of the smooth log-scale curve over levels (default 2)")
    f.add_argument("--trace", action="store_true", help="--bayes: also write the trace, <out stem>.trace.nc (NetCDF)")
    f.set_defaults(func=run)


def column_mapping(text: str) -> tuple[str, str | None]:
    """An argparse type: ``FILE_NAME=SCHEMA_NAME`` -> ``(FILE_NAME, SCHEMA_NAME)``; ``FILE_NAME=`` ->
    ``(FILE_NAME, None)`` (leave the column out)."""
    import argparse

    old, eq, new = text.partition("=")
    old, new = old.strip(), new.strip()
    if not eq or not old:
        raise argparse.ArgumentTypeError(
            f"expected FILE_NAME=SCHEMA_NAME (e.g. G_meas=conductance_uS), or FILE_NAME= to leave the column out; "
            f"got {text!r}")
    return old, (new or None)


def _columns(args) -> dict[str, str | None] | None:
    """The ``--column`` options as the readers' ``columns`` mapping (each file column named once)."""
    pairs = args.column or []
    if not pairs:
        return None
    if args.wide:
        raise ReliabilityError("--column cannot be combined with --wide: in a wide file every column is one "
                               "repetition, read as it is; drop --column (or rename the columns in the file).")
    out: dict[str, str | None] = {}
    for old, new in pairs:
        if old in out and out[old] != new:
            raise ReliabilityError(f"--column {old}=... is given twice ({old}={out[old] or ''} and {old}={new or ''}); "
                                   "map each column of the file once.")
        out[old] = new
    return out


def _read_data(args):
    from reliability.data import from_wide, read_measurements

    columns = _columns(args)
    if args.wide:
        return from_wide(args.data, read_voltage=args.read_voltage, unit=args.unit, drop_invalid=args.drop_invalid)
    return read_measurements(args.data, unit=args.unit, read_voltage=args.read_voltage, drop_invalid=args.drop_invalid,
                             columns=columns)


def run(args) -> int:
    """Fit, print the candidate ranking and the chosen model, write it to ``--out``."""
    from reliability.fit import fit_device

    out = refuse_overwrite(args.out, "--out", args.force)
    table = _read_data(args)
    if table.n_dropped:
        print(f"dropped {table.n_dropped} invalid rows: {table.drop_reasons}", file=sys.stderr)
    censor = tuple(args.censor) if args.censor else None
    if censor is not None:
        low, high = censor
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ReliabilityError(f"--censor LOW HIGH must be finite numbers in uS; got {low} {high}.")
        if not low < high:
            raise ReliabilityError(f"--censor LOW HIGH: LOW ({low:g} uS) must be below HIGH ({high:g} uS); readings at "
                                   "or below LOW and at or above HIGH are censored.")
    stuck = {"auto": "auto", "yes": True, "no": False}[args.stuck]
    if args.bayes:
        return _fit_bayes(args, table, out, censor, stuck)
    res = fit_device(table, family=args.family, state=args.state, censor=censor, stuck=stuck,
                     chip_gain=not args.no_chip_gain, t0_s=args.t0, time_origin=args.time_origin,
                     name=args.name or Path(args.data).stem, drop_outliers=args.drop_outliers)
    print_fit(res)
    if res.model is None:
        print(f"error: {res.message}", file=sys.stderr)
        return 1
    res.model.save(out, overwrite=True)
    print(f"\nwrote {out}")
    return _verdict(res)


def _fit_bayes(args, table, out, censor, stuck) -> int:
    from reliability.fit.bayes import fit_device_bayes

    family = "normal" if args.family == "auto" else args.family
    res = fit_device_bayes(table, family=family, censor=censor, stuck=stuck, chip_gain=not args.no_chip_gain,
                           t0_s=args.t0, draws=args.draws, tune=args.tune, chains=args.chains, rng=args.seed,
                           target_accept=args.target_accept, scale_degree=args.scale_degree,
                           time_origin=args.time_origin, name=args.name or Path(args.data).stem,
                           drop_outliers=args.drop_outliers)
    print(res.summary())
    print()
    print(res.model.describe())
    res.model.save(out, overwrite=True, trace=res.idata if args.trace else None)
    beside = f"{out.stem}.posterior.npz" + (f", {out.stem}.trace.nc" if args.trace else "")
    print(f"\nwrote {out} (beside it: {beside})")
    return _verdict(res)


def _verdict(res) -> int:
    """The exit status of a fit that wrote its model: 0, or EXIT_FLAGGED when the fit is marked FAILED."""
    if res.success:
        return 0
    print(f"warning: the fit is marked FAILED ({res.message}); the model was written, exit status "
          f"{EXIT_FLAGGED}", file=sys.stderr)
    return EXIT_FLAGGED
