"""``reliability simulate``: accuracy and loss of many simulated chips, one Parquet row per chip."""

from __future__ import annotations

import sys

from reliability.cli._output import EXIT_PARTIAL, nonnegative_int, positive_int, progress_bar, refuse_overwrite
from reliability.errors import ReliabilityError


def add_parser(subparsers) -> None:
    """Add the ``simulate`` command to the ``reliability`` command's subparsers."""
    sm = subparsers.add_parser("simulate", help="accuracy and loss of many simulated chips (one row per chip)")
    sm.add_argument("--model", required=True, help="network: .onnx or .npz layer file")
    sm.add_argument("--data", required=True, help=".npz with X (inputs) and y (integer labels)")
    sm.add_argument("--variation", required=True,
                    help="weight-gaussian:sigma=S, multi-device:..., a device preset, or a chip file (.toml/.json)")
    sm.add_argument("--chips", type=positive_int, required=True, help="number of chips (chip i depends only on seed and i)")
    sm.add_argument("--seed", type=nonnegative_int, default=0)
    sm.add_argument("--chunk-size", type=positive_int, help="chips per batch (default: from the memory budget)")
    sm.add_argument("--backend", default="numpy", help="where the products run: numpy (default), torch (PyTorch "
                    "on CUDA when available, else the CPU), torch:cpu or torch:cuda; needs the [torch] extra")
    sm.add_argument("--workers", type=positive_int, help="start a local Dask cluster with this many worker processes "
                    "(the same chips as a serial run)")
    sm.add_argument("--scheduler", help="join an existing Dask cluster at this address (tcp://host:port)")
    sm.add_argument("--out", required=True, help="output Parquet file")
    sm.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    sm.set_defaults(func=run)


def run(args) -> int:
    """Simulate ``--chips`` chips, write one row per chip, print the summary (exit status EXIT_PARTIAL if interrupted:
    the chips finished before the interruption are written)."""
    from reliability._json import atomic_output
    from reliability.cim import load_model
    from reliability.cim.simulate import ChipSimulator
    from reliability.data.evalset import load_evalset

    out = refuse_overwrite(args.out, "--out", args.force)
    if args.chips < 1:
        raise ReliabilityError(f"--chips must be a positive integer; got {args.chips}.")
    net = load_model(args.model)
    X, y = load_evalset(args.data)
    sim = ChipSimulator(net, args.variation, backend=args.backend)
    if args.workers or args.scheduler:
        from reliability.sampling.parallel import make_client, simulate_on_cluster

        client = make_client(args.workers, args.scheduler)
        try:
            res = simulate_on_cluster(sim, X, y, args.chips, client, rng=args.seed, chunk_size=args.chunk_size,
                                      progress=progress_bar("chips"))
        finally:
            cluster = None if args.scheduler else client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
    else:
        res = sim.evaluate(X, y, args.chips, rng=args.seed, chunk_size=args.chunk_size,
                           progress=progress_bar("chips"))
    with atomic_output(out) as tmp:
        res.to_polars().write_parquet(tmp)
    print(res.summary())
    for k, v in res.diagnostics.items():
        print(f"  {k}: {v:.3g}")
    print(f"wrote {len(res.chip)} rows (chip, accuracy, loss, n_correct) to {out}")
    if not res.complete:
        print(f"interrupted: {out} holds the {len(res.chip)} chips finished before the interruption, of "
              f"{args.chips} asked for; exit status {EXIT_PARTIAL}", file=sys.stderr)
        return EXIT_PARTIAL
    return 0
