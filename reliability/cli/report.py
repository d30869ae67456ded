"""``reliability report``: one self-contained HTML page (plus its JSON and figures) for a design."""

from __future__ import annotations

import sys

from reliability.cli._output import nonnegative_int, positive_int, refuse_overwrite
from reliability.errors import ReliabilityError


def add_parser(subparsers) -> None:
    """Add the ``report`` command to the ``reliability`` command's subparsers."""
    r = subparsers.add_parser("report", help="a reliability report: one HTML page with its JSON and figures")
    r.add_argument("--out", required=True, help="the page (.html); the JSON is written beside it (same stem, .json) "
                   "and the figures to <stem>_figures/ as PNG and SVG")
    r.add_argument("--force", action="store_true", help="overwrite the page, its JSON and figures if they exist")
    r.add_argument("--title", default="Reliability report")
    r.add_argument("--from", dest="from_files", nargs="+", metavar="FILE",
                   help="build the page from earlier results instead of running anything: device JSON (fit --out), "
                   "tail --json, worstcase --json, rank --json, simulate --out (parquet/CSV); or redraw a report "
                   "from its JSON alone")
    r.add_argument("--model", help="network: .onnx or .npz layer file")
    r.add_argument("--data", help=".npz with X and y (the evaluation set)")
    r.add_argument("--variation", help="weight-gaussian:sigma=S, a device preset, or a chip file")
    r.add_argument("--device", help="a device model JSON (from `reliability fit`) instead of --variation")
    r.add_argument("--measurements", help="measurements to fit (long-format CSV/Parquet); the fitted model is used")
    r.add_argument("--time", type=float, default=0.0, help="read time in s after programming (default 0: at "
                   "programming, or the chip file's own)")
    r.add_argument("--quantile", type=float, action="append", help="tail probability k (repeatable; default 1e-4)")
    r.add_argument("--below", type=float, action="append", help="accuracy threshold a of P(accuracy <= a) (repeatable)")
    r.add_argument("--budget", type=positive_int, default=20000, help="chip evaluations of the tail estimate and of "
                   "each ranked candidate (default 20000)")
    r.add_argument("--chips", type=positive_int, default=2000, help="chips simulated for the histogram (default 2000)")
    r.add_argument("--bound", type=float, action="append", help="worst-case bound in sigma (repeatable; default 1 2 3)")
    r.add_argument("--no-worst-case", action="store_true", help="leave the worst-case section out")
    r.add_argument("--mitigation", action="append", default=[], metavar="SPEC",
                   help="a mitigation candidate to rank (repeatable; `reliability rank --catalogue` lists them)")
    r.add_argument("--metric", help="the ranking's metric (default quantile:<smallest --quantile>)")
    r.add_argument("--seed", type=nonnegative_int, default=0)
    r.set_defaults(func=run)


def _progress():
    """``(callback, context)``: a rich progress display of the steps on a terminal, else nothing."""
    import contextlib

    if not sys.stderr.isatty():
        return None, contextlib.nullcontext()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True))
    tasks = {}

    def show(step, done, total):
        if step not in tasks:
            tasks[step] = bar.add_task(step, total=total)
        bar.update(tasks[step], completed=done, total=total)
    return show, bar


def run(args) -> int:
    """Run what the report needs (or read ``--from``), build it and write it."""
    from reliability.report import build, load_result, run_report

    out = refuse_overwrite(args.out, "--out", args.force)
    if args.from_files:
        given = [f"--{k}" for k in ("model", "data", "variation", "device", "measurements") if getattr(args, k)]
        if given:
            raise ReliabilityError(f"--from builds the page from earlier results; {' '.join(given)} would run them "
                                   f"again. Give either --from FILES or --model/--data with a variation.")
        parts = {}
        for f in args.from_files:
            kind, res = load_result(f)
            if kind == "report" and len(args.from_files) > 1:
                raise ReliabilityError(f"--from {f}: a whole report is redrawn on its own; give it alone.")
            if kind in parts:
                raise ReliabilityError(f"--from: two {kind} results ({parts[kind][0]} and {f}); give one of each kind.")
            parts[kind] = (f, res)
        from reliability.report.pipeline import file_digest

        prov = {"command": args.command_line,
                "from_files_sha256": {f: file_digest(f) for f, _ in parts.values()}}
        if "report" in parts:
            from reliability.report import rebuild

            rep = rebuild(parts["report"][1])
        else:
            rep = build(**{k: v for k, (_, v) in parts.items()}, provenance=prov, title=args.title)
    else:
        missing = [f"--{k}" for k in ("model", "data") if not getattr(args, k)]
        if missing:
            raise ReliabilityError(f"{' and '.join(missing)} missing: give the network and its evaluation set (or "
                                   f"--from with earlier results).")
        from reliability.cim import load_model
        from reliability.data.evalset import load_evalset

        net = load_model(args.model)
        X, y = load_evalset(args.data)
        show, bar = _progress()
        with bar:
            rep = run_report(net, X, y, args.variation, device=args.device, measurements=args.measurements,
                             time_s=args.time, mitigations=args.mitigation, metric=args.metric,
                             quantiles=args.quantile or (1e-4,), below=args.below or (), budget=args.budget,
                             chips=args.chips, bounds=() if args.no_worst_case else (args.bound or (1.0, 2.0, 3.0)),
                             seed=args.seed, title=args.title, progress=show,
                             inputs={"model": args.model, "data": args.data, "device": args.device,
                                     "measurements": args.measurements},
                             command=args.command_line)
    paths = rep.save(out, overwrite=args.force)
    print(rep.document["verdict"]["text"])
    print(f"wrote {paths['html']}, {paths['json']} and {len(rep.figures)} figures in {paths['figures']}/ "
          f"(PNG and SVG)")
    return 0
