"""``reliability device``: describe, list and sample device models."""

from __future__ import annotations

from reliability.cli._output import nonnegative_int, positive_int, refuse_overwrite
from reliability.errors import ReliabilityError


def add_parser(subparsers) -> None:
    """Add the ``device`` command (``show``, ``presets``, ``sample``) to the command's subparsers."""
    dev = subparsers.add_parser("device", help="inspect and sample device models")
    dsub = dev.add_subparsers(dest="device_command", metavar="SUBCOMMAND")
    s = dsub.add_parser("show", help="describe a device model (JSON file or preset name)")
    s.add_argument("device")
    s.add_argument("--json", action="store_true", help="also print the JSON document")
    s.set_defaults(func=run_show)
    pr = dsub.add_parser("presets", help="list the literature presets")
    pr.set_defaults(func=run_presets)
    sa = dsub.add_parser("sample", help="conductance samples of random devices on random new chips")
    sa.add_argument("device", help="JSON file or preset name")
    sa.add_argument("--target", type=float, required=True, help="programmed target (model unit, uS for conductance)")
    sa.add_argument("--time", type=float, default=0.0, help="read time in seconds since programming")
    sa.add_argument("-n", type=positive_int, required=True, help="number of samples")
    sa.add_argument("--seed", type=nonnegative_int, default=0)
    sa.add_argument("--npy", required=True, help="output .npy file")
    sa.add_argument("--force", action="store_true", help="overwrite --npy if it exists")
    sa.set_defaults(func=run_sample)
    dev.set_defaults(func=lambda a: (dev.print_help(), 0)[1])


def run(args) -> int:
    """Run the ``device`` subcommand chosen in ``args`` (the parser sets it as ``args.func``)."""
    return args.func(args)


def run_show(args) -> int:
    """Describe a device model (and print its JSON with ``--json``)."""
    from reliability.devices import load_device

    m = load_device(args.device)
    print(m.describe())
    if args.json:
        print(m.to_json())
    return 0


def run_presets(args) -> int:
    """List the literature presets with the first line of each one's docstring."""
    from reliability.devices.presets import PRESETS

    for name, fn in PRESETS.items():
        doc = (fn.__doc__ or "").strip().splitlines()
        print(f"{name:16s} {doc[0] if doc else ''}")
    return 0


def run_sample(args) -> int:
    """Draw ``-n`` conductances of devices programmed to ``--target`` and write them to ``--npy``."""
    import numpy as np

    from reliability._json import atomic_output
    from reliability.devices import load_device

    out = refuse_overwrite(args.npy, "--npy", args.force, suffix=".npy")
    if args.n < 1:
        raise ReliabilityError(f"-n must be a positive number of samples; got {args.n}.")
    m = load_device(args.device)
    x = m.sample(args.target, time_s=args.time, size=args.n, rng=np.random.default_rng(args.seed))
    with atomic_output(out) as tmp:
        np.save(tmp, x)
    q = np.percentile(x, [5, 50, 95])
    print(f"wrote {args.n} samples ({m.unit}) of devices programmed to {args.target:g} {m.unit}, read at "
          f"{args.time:g} s, each on a new chip, to {out}: mean {x.mean():.4g}, std {x.std():.4g}, "
          f"5/50/95 % {q[0]:.4g}/{q[1]:.4g}/{q[2]:.4g}")
    return 0
