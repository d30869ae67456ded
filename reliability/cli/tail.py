"""``reliability tail``: P(accuracy <= a) and k-th percentile accuracy with confidence intervals."""

from __future__ import annotations

import sys

from reliability.cli._output import (
    EXIT_PARTIAL, check_outputs, nonnegative_int, positive_int, progress_bar, table,
)


def add_parser(subparsers) -> None:
    """Add the ``tail`` command to the ``reliability`` command's subparsers."""
    tl = subparsers.add_parser("tail", help="tail accuracy: P(accuracy <= a) and k-th percentile accuracy, with CIs")
    tl.add_argument("--model", required=True, help="network: .onnx or .npz layer file")
    tl.add_argument("--data", required=True, help=".npz with X and y")
    tl.add_argument("--variation", required=True, help="weight-gaussian:sigma=S, a device preset, or a chip file")
    tl.add_argument("--below", type=float, action="append", help="accuracy threshold a (repeatable)")
    tl.add_argument("--quantile", type=float, action="append", help="tail probability k (repeatable)")
    tl.add_argument("--budget", type=positive_int, default=20000, help="maximum chip evaluations (default 20000)")
    tl.add_argument("--seed", type=nonnegative_int, default=0)
    tl.add_argument("--method", default="auto", choices=["auto", "hybrid", "subset", "mc", "is"],
                    help="auto/hybrid: importance sampling along the failure modes' design points plus subset "
                    "simulation for the rest; subset: subset simulation alone; mc: plain Monte Carlo; is: one "
                    "mean shift (for comparison)")
    tl.add_argument("--backend", default="numpy", help="where the products run: numpy (default), torch (PyTorch "
                    "on CUDA when available, else the CPU), torch:cpu or torch:cuda; needs the [torch] extra")
    tl.add_argument("--workers", type=positive_int, help="start a local Dask cluster with this many worker processes")
    tl.add_argument("--scheduler", help="join an existing Dask cluster at this address (tcp://host:port)")
    tl.add_argument("--checkpoint", help="checkpoint file (.npz): written as the run goes (the hybrid method "
                    "also writes NAME-subset.npz beside NAME.npz); an existing one from the same run is resumed")
    tl.add_argument("--json", help="write the result as JSON")
    tl.add_argument("--force", action="store_true", help="overwrite --json if it exists")
    tl.set_defaults(func=run)


def run(args) -> int:
    """Estimate the tail, print the estimates (flagging unreliable ones), write ``--json``."""
    from reliability._json import write_json

    from reliability.cim import load_model
    from reliability.data.evalset import load_evalset
    from reliability.sampling import estimate_tail

    check_outputs(args)
    net = load_model(args.model)
    X, y = load_evalset(args.data)
    client = None
    if args.workers or args.scheduler:
        from reliability.sampling.parallel import make_client

        client = make_client(args.workers, args.scheduler)
    try:
        res = estimate_tail(net, X, y, args.variation, below=args.below or (), quantiles=args.quantile or (),
                            budget=args.budget, rng=args.seed, method=args.method, checkpoint=args.checkpoint,
                            progress=progress_bar("chip evaluations"), client=client,
                            backend=args.backend)
    finally:
        if client is not None and not args.scheduler:
            cluster = client.cluster
            client.close()
            cluster.close()
    if not res.complete:
        hint = (f"run the same command again to resume from {args.checkpoint}" if args.checkpoint else
                "give --checkpoint FILE next time to make a run resumable")
        print(f"interrupted: the result below uses only the chips evaluated before the interruption "
              f"({res.evaluations} of {args.budget}; its intervals say how much that costs); exit status "
              f"{EXIT_PARTIAL}; {hint}", file=sys.stderr)
    rows = [{"P(acc <= a)": f"a = {e.below:.6g}", "probability": e.probability, "std error": e.std_error,
             "95 % CI": f"[{e.ci95[0]:.3g}, {e.ci95[1]:.3g}]", "method": e.method, "ESS": e.ess,
             "reliable": e.reliable, "reason": e.reason or ""} for e in res.estimates]
    if rows:
        table(rows, list(rows[0]), title=f"tail probabilities ({res.evaluations} chip evaluations, {res.seconds:.1f} s)")
    qrows = [{"k": q.k, "accuracy": q.accuracy, "95 % CI": f"[{q.ci95[0]:.4g}, {q.ci95[1]:.4g}]",
              "reliable": q.reliable, "reason": q.reason or ""} for q in res.quantiles]
    if qrows:
        table(qrows, list(qrows[0]), title="k-th percentile accuracy")
    if args.json:
        write_json(args.json, res.to_dict())
        print(f"wrote {args.json}")
    unreliable = [e for e in res.estimates if not e.reliable] + [q for q in res.quantiles if not q.reliable]
    if unreliable:
        print(f"warning: {len(unreliable)} estimate(s) flagged unreliable; see 'reason'", file=sys.stderr)
    return 0 if res.complete else EXIT_PARTIAL
