"""``reliability worstcase``: worst-case accuracy under bounded device variation, the minimal
breaking deviation and the devices that carry it (thin: parses, calls
:func:`reliability.worstcase.worst_case`, prints, writes JSON)."""

from __future__ import annotations

import sys

from reliability.cli._output import nonnegative_int, positive_int, progress_bar, refuse_overwrite, table
from reliability.errors import ReliabilityError

# The choices and defaults of ``reliability.worstcase`` (``NORMS``, ``OPTIMIZERS``, ``DEFAULT_FOCUS``,
# ``SEARCHABLE_BLOCKS``), spelled out so that building the parser does not import the search (numba
# kernels, scipy, the network graph); tests/integration/test_cli_package.py checks they agree.
NORMS = ("linf", "l2")
OPTIMIZERS = ("pgd", "adam")
DEFAULT_FOCUS = (None, 0.2, 0.05, 0.01)
SEARCHABLE_BLOCKS = ("prog", "nu", "read", "gain")


def add_parser(subparsers) -> None:
    """Add the ``worstcase`` command to the ``reliability`` command's subparsers."""
    w = subparsers.add_parser("worstcase", help="worst-case accuracy with every device within a bound (k sigma), "
                              "the minimal breaking deviation and the devices that carry it")
    w.add_argument("--model", required=True, help="network: .onnx or .npz layer file")
    w.add_argument("--data", required=True, help=".npz with X and y")
    w.add_argument("--variation", required=True, help="weight-gaussian:sigma=S, a device preset, or a chip file")
    w.add_argument("--bound", type=float, action="extend", nargs="+", metavar="K",
                   help="bound k in sigma units (repeatable, or several values): every device within +/- k sigma "
                        "(linf) or ||z||_2 <= k (l2); default 3")
    w.add_argument("--norm", default="linf", choices=list(NORMS), help="linf (default) or l2")
    w.add_argument("--threshold", type=float,
                   help="also bisect for the smallest bound whose worst case reaches accuracy <= THRESHOLD")
    w.add_argument("--tolerance", type=float, default=0.05, help="bisection tolerance in sigma units (default 0.05)")
    w.add_argument("--max-bound", type=float, help="largest bound the bisection tries (default 32 for linf)")
    w.add_argument("--restarts", type=positive_int, default=4, help="restarts searched at once as a batch of chips (default 4)")
    w.add_argument("--iterations", type=positive_int, default=30, help="descent steps per search (default 30)")
    w.add_argument("--optimizer", default="pgd", choices=list(OPTIMIZERS), help="pgd (default) or adam")
    w.add_argument("--step", type=float, default=0.25, help="initial step as a fraction of the bound (default 0.25)")
    w.add_argument("--kappa", type=float, help="margin-loss confidence in logit units (default: 5 %% of the median "
                   "clean |margin|)")
    w.add_argument("--focus", default=",".join("cw" if q is None else f"{q:g}" for q in DEFAULT_FOCUS),
                   help="per restart (cycled): 'cw' for the clipped margin loss or a quantile q for the soft count "
                        "(default %(default)s)")
    w.add_argument("--random-chips", type=nonnegative_int, default=100,
                   help="chips drawn uniformly within the bound as a baseline (default 100; 0: none)")
    w.add_argument("--blocks", default=",".join(SEARCHABLE_BLOCKS),
                   help="latent blocks searched, comma-separated (default: %(default)s; stuck faults never)")
    w.add_argument("--clip-range", action="store_true",
                   help="also clamp every device to the physical conductance range [g_min, g_max]")
    w.add_argument("--top", type=positive_int, default=20, help="devices listed in the sensitivity ranking (default 20)")
    w.add_argument("--no-sensitivity", action="store_true", help="skip the layer/device sensitivity ranking")
    w.add_argument("--seed", type=nonnegative_int, default=0)
    w.add_argument("--json", help="write the result as JSON")
    w.add_argument("--force", action="store_true", help="overwrite --json if it exists")
    w.set_defaults(func=run)


def _focus(text: str):
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower() in ("cw", "none", "margin"):
            out.append(None)
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise ReliabilityError(f"--focus {text!r}: each entry is 'cw' or a quantile in (0, 1); "
                                   f"got {part!r}.") from None
    return tuple(out)


#: the latent variables of a device (``LatentChips`` blocks), as the table names them
KIND_NAMES = {"prog": "programming", "nu": "drift exponent", "read": "read noise", "read_ref": "reference read noise",
              "stuck": "stuck-at", "prog_s": "spare: programming", "nu_s": "spare: drift exponent",
              "read_s": "spare: read noise", "stuck_s": "spare: stuck-at"}


def run(args) -> int:
    """Search the worst case for each bound, print it (and the sensitivity ranking), write ``--json``."""
    from reliability._json import write_json

    from reliability.cim import load_model
    from reliability.data.evalset import load_evalset
    from reliability.worstcase import worst_case

    if args.json:
        refuse_overwrite(args.json, "--json", args.force)
    net = load_model(args.model)
    X, y = load_evalset(args.data)
    bounds = args.bound if args.bound else ([] if args.threshold is not None else [3.0])
    res = worst_case(net, X, y, args.variation, bounds=bounds, norm=args.norm, threshold=args.threshold,
                     tolerance=args.tolerance, max_bound=args.max_bound, restarts=args.restarts,
                     iterations=args.iterations, step=args.step, optimizer=args.optimizer, kappa=args.kappa,
                     focus=_focus(args.focus), random_chips=args.random_chips,
                     blocks=tuple(b.strip() for b in args.blocks.split(",") if b.strip()),
                     conductance_range="clip" if args.clip_range else "model", sensitivity=not args.no_sensitivity,
                     top=args.top, rng=args.seed, progress=progress_bar("searches"))
    rows = [{"bound": b.bound, "worst-case accuracy": b.accuracy, "clean": b.clean_accuracy,
             f"random min ({b.random_chips})": b.random_min_accuracy, "source": b.source,
             "max |z|": b.deviation.get("max_abs_z", 0.0), "mean |z|": b.deviation.get("mean_abs_z", 0.0),
             "max |dW|/max|W|": max((w["max_rel_weight_deviation"] for w in b.deviation.get("weights", [])),
                                    default=0.0), "seconds": b.seconds} for b in res.bounds]
    if rows:
        cols = list(dict.fromkeys(k for r in rows for k in r))
        table(rows, cols, title=f"worst-case accuracy ({res.norm} bound in sigma units, {res.n_samples} samples, "
              f"{res.latent_dim} searched coordinates: {', '.join(res.searched_blocks)}; {res.seconds:.1f} s)")
    mb = res.minimal_bound
    if mb is not None:
        if mb.found:
            print(f"minimal bound reaching accuracy <= {mb.threshold:g}: k = {mb.bound:.4g} (bracket "
                  f"[{mb.bracket[0]:.4g}, {mb.bracket[1]:.4g}], accuracy {mb.accuracy:.4g} there, "
                  f"{mb.accuracy_below:.4g} at the lower end; {mb.searches} searches)")
        else:
            print(f"minimal bound: {mb.message}")
    s = res.sensitivity
    if s is not None:
        table([{"layer": r["name"], "devices": r["devices"], "share": r["share"], "mean |z| (sigma)": r["mean_abs_z"],
                "attribution (loss)": r["attribution"]} for r in s.layers],
              ["layer", "devices", "share", "mean |z| (sigma)", "attribution (loss)"],
              title=f"which layers carry the deviation ({s.chip}, k = {s.bound:.4g}; share of |z| x |gradient|; "
                    f"attribution: the layer's part of the clipped margin loss change)")
        if s.top:
            table([{"layer": t["name"], "variable": KIND_NAMES.get(t["kind"], t["kind"]),
                    "weight (row, col)": f"({t['device'][-2]}, {t['device'][-1]})",
                    "device (replica, slice, sign)": "(" + ", ".join(map(str, t["device"][:-2])) + ")",
                    "z (sigma)": t["z"], "mean dL/dz": t["gradient"], "|z x dL/dz|": t["score"]} for t in s.top],
                  ["layer", "variable", "weight (row, col)", "device (replica, slice, sign)", "z (sigma)",
                   "mean dL/dz", "|z x dL/dz|"],
                  title=f"the {len(s.top)} devices with the largest attribution (--top {args.top})")
    if args.json:
        write_json(args.json, res.to_dict())
        print(f"wrote {args.json}")
    if res.message:
        print(f"warning: {res.message}", file=sys.stderr)
    return 0
