"""Tail-estimate wall time on 10^5-device networks, where it goes, and the floor set by the products.

Two networks on 1,000 Fashion-MNIST test images, weight-gaussian sigma 0.05, ``estimate_tail`` at
budget 20,000 (the hybrid) for P(accuracy <= a) at two thresholds:

- the 784-128-10 ReLU MLP (scikit-learn, 30 epochs of Adam on the first 20,000 training images;
  101,632 weights, ``cases._sklearn_mlp``);
- LeNet-5 (``models.lenet5`` trained by ``cases._fmnist_lenet5``; 61,706 weights).

Reported per network: the wall time, the time of each stage (pilot, design-point search, subset
levels, importance stages, second-stage fit, estimates: ``diagnostics["seconds"]``), the chip
evaluations of each, and the floor: 20,000 times the bare float32 products of one chip on the
1,000 images (the same matrix shapes, one weight matrix per chip: the GEMMs of the MLP, the im2col
GEMMs of the CNN with the first convolution's columns shared by all chips, as the simulator does),
timed in the same run.  No exact estimator that evaluates every chip on every image can go below
the floor on the machine at hand.

``--forward-only`` times only the per-chip forward (the scorer, with and without the fused
convolution chains, on the torch backend's CPU path when PyTorch is installed, against the bare
products), in a minute.

Run: ``python benchmarks/tail_speed.py [--forward-only] [--json FILE]`` (needs Debian's
``dataset-fashion-mnist`` package; ``--results-dir benchmarks/results`` writes ``tail_speed.json``).
"""

from __future__ import annotations

import reliability  # noqa: F401  (first: it sets OPENBLAS_THREAD_TIMEOUT before numpy loads)

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cim import _best  # noqa: E402  (best of n wall times)

SIGMA = 0.05
BUDGET = 20_000
N_EVAL = 1_000
#: thresholds a of P(accuracy <= a) (about 1e-3 and 1e-4 on the MLP; LeNet-5 has the heavier tail)
BELOW = {"mlp": (0.72, 0.70), "lenet5": (0.66, 0.62)}


def mlp_case():
    """``(network, X, y)``: the 784-128-10 MLP and the first 1,000 test images."""
    import cases

    from reliability.cim import from_sklearn
    from reliability.data.evalset import fashion_mnist

    clf, _, _ = cases._sklearn_mlp((128,), "fashion-mnist", 30)
    Xte, yte = fashion_mnist("test")
    return from_sklearn(clf), Xte[:N_EVAL].reshape(N_EVAL, -1).astype(np.float32), yte[:N_EVAL].astype(np.int64)


def lenet_case():
    """``(network, X, y)``: the trained LeNet-5 and the first 1,000 test images (1 x 28 x 28)."""
    import cases

    from reliability.cim import load_onnx

    proto, X, y = cases._fmnist_lenet5(N_EVAL)
    return load_onnx(proto), X, y


def bare_products(net, X, S: int, rng):
    """A function running the bare float32 products of ``S`` chips of ``net`` on ``X``: every analog
    layer's GEMM with one weight matrix per chip (a convolution as its im2col GEMM, the first one's
    columns built once and shared by all chips as one wide product)."""
    shapes = [layer.weight.shape for layer in net.analog_layers]
    rows = _product_rows(net, X)
    Ws = [rng.standard_normal((S, K, N)).astype(np.float32) for K, N in shapes]
    ins = [rng.standard_normal((r, K)).astype(np.float32) for (K, _), r in zip(shapes, rows)]
    first_wide = Ws[0].transpose(1, 0, 2).reshape(Ws[0].shape[1], -1).copy()

    def run():
        for j, (X_j, W) in enumerate(zip(ins, Ws)):
            if j == 0:
                Y = X_j @ first_wide               # all chips at once: the input is the same for every chip
                np.maximum(Y, 0, out=Y)
            else:
                for s in range(S):
                    Y = X_j @ W[s]
                    np.maximum(Y, 0, out=Y)

    return run


def _product_rows(net, X) -> list[int]:
    """Rows of each analog product for the batch ``X``: traced with a hook on one clean forward."""
    rows = []

    def hook(layer, Xm, W):
        rows.append(int(Xm.shape[1]))
        return Xm @ W

    net.forward(X[:1], matmul=hook)
    return [r * X.shape[0] for r in rows]


def forward_rows(name, net, X, y, chips: int = 32, repeats: int = 3) -> dict:
    """Per-chip milliseconds of the scorer (latent draw to counts and margins), of the same without
    the fused convolution chains, and of the bare products; their ratios."""
    from reliability.cim.latent import LatentChips
    from reliability.cim.simulate import ChipSimulator
    from reliability.errors import MissingDependencyError
    from reliability.sampling.scoring import ChipScorer

    sim = ChipSimulator(net, f"weight-gaussian:sigma={SIGMA}")
    latent = LatentChips(sim)
    scorer = ChipScorer(sim, latent, X, y)
    rng = np.random.default_rng(0)
    z = latent.draw(rng, chips)
    bare = bare_products(net, X, chips, rng)
    plan = net._fused

    def unfused():
        net._fused = {}
        try:
            scorer.counts_and_margins(z)
        finally:
            net._fused = plan

    torch_scorer = None
    try:
        torch_sim = ChipSimulator(net, f"weight-gaussian:sigma={SIGMA}", backend="torch:cpu")
        torch_scorer = ChipScorer(torch_sim, LatentChips(torch_sim), X, y, chunk=scorer.chunk)
        torch_scorer.counts_and_margins(z)
    except MissingDependencyError:    # the [torch] extra is not installed: no torch column
        pass
    scorer.counts_and_margins(z)
    t_sim, t_unfused, t_bare, t_torch = np.inf, np.inf, np.inf, np.inf
    for _ in range(repeats):       # alternated, so that a busy spell hits all of them alike
        t_sim = min(t_sim, _best(lambda: scorer.counts_and_margins(z), 1))
        t_unfused = min(t_unfused, _best(unfused, 1) if plan else np.nan)
        t_bare = min(t_bare, _best(bare, 1))
        if torch_scorer is not None:
            t_torch = min(t_torch, _best(lambda: torch_scorer.counts_and_margins(z), 1))
    ms = lambda t: 1e3 * t / chips  # noqa: E731
    return {"network": name, "chips": chips, "images": int(len(y)), "scorer_ms": ms(t_sim),
            "unfused_ms": ms(t_unfused) if plan else None, "bare_ms": ms(t_bare), "ratio": t_sim / t_bare,
            "ratio_unfused": t_unfused / t_bare if plan else None, "chunk": scorer.chunk,
            "torch_cpu_ms": ms(t_torch) if torch_scorer is not None else None}


def tail_row(name, net, X, y, bare_ms: float) -> dict:
    """One ``estimate_tail`` at budget 20,000: wall time, stage times and evaluations, estimates."""
    from reliability.sampling import estimate_tail

    t0 = time.perf_counter()
    res = estimate_tail(net, X, y, f"weight-gaussian:sigma={SIGMA}", below=list(BELOW[name]), budget=BUDGET, rng=0)
    wall = time.perf_counter() - t0
    d = res.diagnostics
    sec = d.get("seconds", {})
    return {"network": name, "budget": BUDGET, "seconds": wall, "floor_s": bare_ms * BUDGET / 1e3,
            "stages": {k: (sum(v) if isinstance(v, list) else v) for k, v in sec.items()},
            "subset_levels_s": sec.get("subset_levels"), "evaluations": d.get("evaluations"),
            "estimates": [{"below": e.below, "p": e.probability, "std_error": e.std_error, "reliable": e.reliable}
                          for e in res.estimates]}


def results_doc(fwd: list[dict], tails: list[dict], argv: list[str]) -> dict:
    from run import results_document

    def sig(v, n=3):
        return None if v is None or not np.isfinite(v) else float(f"{v:.{n}g}")

    stage_names = ["pilot", "design_points", "subset_levels", "importance_first_stage", "second_stage_fit",
                   "importance_second_stage", "estimates"]
    return results_document(
        "tail-speed", 45, "Speed: tail estimates on 10^5-device networks", "benchmarks/tail_speed.py", argv,
        "Two networks on the first thousand Fashion-MNIST test images, weight-gaussian sigma 0.05, "
        "the hybrid estimator at budget 20,000. The floor is the budget times the bare float32 "
        "products of one chip (same shapes, timed in the same run): the least time an exact "
        "estimator that evaluates every chip on every image can take on this machine.",
        [
            {"caption": "Per-chip forward against the bare products (same run)",
             "columns": [["network", "{network}"], ["ms per chip", "{scorer_ms}"],
                         ["without fused convolutions, ms", "{unfused_ms}"], ["bare products, ms", "{bare_ms}"],
                         ["ratio", "{ratio}"], ["ratio without fusion", "{ratio_unfused}"],
                         ["torch backend on the CPU, ms", "{torch_cpu_ms}"]],
             "rows": [{k: (sig(v) if isinstance(v, float) else v) for k, v in r.items()
                       if k in ("network", "scorer_ms", "unfused_ms", "bare_ms", "ratio", "ratio_unfused",
                                "torch_cpu_ms")}
                      for r in fwd]},
            {"caption": "Tail estimate at budget 20,000: wall time, floor and stages (seconds)",
             "columns": [["network", "{network}"], ["seconds", "{seconds}"], ["floor", "{floor_s}"]]
                        + [[s.replace("_", " "), "{" + s + "}"] for s in stage_names],
             "rows": [{"network": t["network"], "seconds": sig(t["seconds"]), "floor_s": sig(t["floor_s"]),
                       **{s: sig(t["stages"].get(s)) for s in stage_names}} for t in tails]},
        ])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--forward-only", action="store_true", help="time the per-chip forward only")
    ap.add_argument("--network", action="append", choices=["mlp", "lenet5"], help="default: both")
    ap.add_argument("--json", help="write the raw rows here")
    ap.add_argument("--results-dir", help="write tail_speed.json (results schema) in this folder")
    ap.add_argument("--keep", action="append", default=[], metavar="ROWS.json",
                    help="rows of an earlier run (its --json) to keep for the networks this run does not measure")
    ap.add_argument("--note", action="append", default=[], help="a note for the results file (say where kept rows "
                    "come from)")
    args = ap.parse_args(argv)
    nets = {"mlp": mlp_case, "lenet5": lenet_case}
    fwd, tails = [], []
    run_nets = args.network or ["mlp", "lenet5"]
    for path in args.keep:     # rows this run does not measure (with --forward-only: every tail row)
        old = json.loads(Path(path).read_text())
        fwd += [r for r in old["forward"] if r["network"] not in run_nets]
        tails += [r for r in old["tail"] if r["network"] not in run_nets or args.forward_only]
    for name in run_nets:
        net, X, y = nets[name]()
        f = forward_rows(name, net, X, y)
        fwd.append(f)
        print(json.dumps(f), flush=True)
        if not args.forward_only:
            t = tail_row(name, net, X, y, f["bare_ms"])
            tails.append(t)
            print(json.dumps(t), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"forward": fwd, "tail": tails}, indent=2) + "\n")
    if args.results_dir:
        if not tails:
            ap.error("--results-dir needs tail rows: drop --forward-only, or --keep an earlier run's rows")
        from run import save_results

        save_results(results_doc(fwd, tails, argv), args.results_dir, "tail_speed.json", args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
