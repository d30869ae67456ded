"""Small networks: per-chip cost against the bare products, the tail estimator's overhead, start-up.

The network is the public case's digits MLP (64-32-10, ReLU; ``reliability.bench.load_case
("digits_mlp_s05")``) on its 597 evaluation samples: 2.8 MFLOP a chip, so a simulated chip is
cheap and every per-chip cost beyond the products shows.

1. Simulator: ``ChipSimulator.evaluate`` (draw every device of every chip, map, run the network,
   counts and loss) for weight-gaussian sigma 0.05, the PCM preset as read at programming (``pcm``,
   as ``--variation pcm`` on the command line) and the PCM preset read a day later (drift and read
   noise: three normals a device), against the bare float32 products of the same shapes with one
   distinct weight matrix per chip, batched as a stacked matmul (256 chips a call, ReLU between the
   layers), timed alternately in the same run: each round times every variation's simulator (512
   chips) and stages and the bare products in turn, and each figure is the best of the rounds.  Its stages
   (chip draw, forward, counts and loss) are timed the same way on blocks of 256 chips, and the
   chip-by-chip draw (one generator built per chip, the route before block draws) beside them.
2. Tail: ``estimate_tail`` (the hybrid) at budget 20,000 for P(accuracy <= a) at two thresholds,
   weight-gaussian sigma 0.05: wall time per chip evaluation, overall and per stage, against the
   simulator's per-chip time measured in the same run.  scikit-learn (the second stage's mixture
   fit) is imported before the run and its import timed apart: it is paid once per process.
3. Start-up: ``reliability --help`` and ``reliability device presets`` (best of 5 runs each, as
   new processes), and ``python -c pass`` for the interpreter's own start.

Run: ``python benchmarks/small_net.py [--rounds 25] [--json FILE] [--results-dir benchmarks/results]``
(writes ``small_net.json``); ``--parts sim,startup`` skips the tail run.
"""

from __future__ import annotations

import reliability  # noqa: F401  (first: it sets OPENBLAS_THREAD_TIMEOUT before numpy loads)

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHIPS = 512           # chips per timed simulator run (short runs, many rounds: the best of them
                      # misses the machine's slow spells)
BLOCK = 256           # chips per call of the bare products and of the stage timings
BUDGET = 20_000
BELOW = (0.87, 0.86)  # about 1e-5 and 1e-6 for weight-gaussian sigma 0.05
VARIATIONS = (("weight-gaussian", "weight-gaussian:sigma=0.05", 0.0),
              ("pcm", "pcm", 0.0),
              ("pcm, 1 day", "pcm", 86400.0))


def case():
    from reliability.bench import load_case

    c = load_case("digits_mlp_s05")
    return c.network, np.asarray(c.X, dtype=np.float32), np.asarray(c.y, dtype=np.int64)


def bare_products(net, X, chips: int, rng):
    """The bare float32 products of ``chips`` chips: a stacked matmul per layer, ``BLOCK`` chips a
    call, one distinct weight matrix per chip, ReLU between the layers."""
    Ws = [rng.standard_normal((chips,) + layer.weight.shape, dtype=np.float32) for layer in net.analog_layers]

    def run():
        for a in range(0, chips, BLOCK):
            h = X
            for j, W in enumerate(Ws):
                h = np.matmul(h, W[a:a + BLOCK])
                if j < len(Ws) - 1:
                    np.maximum(h, 0, out=h)

    return run


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def simulator_rows(net, X, y, rounds: int, variations=VARIATIONS) -> list[dict]:
    """One row per variation; every round times each variation's stages and the bare products in
    turn, so that a slow spell of the machine hits all of them alike (each figure: best round)."""
    from reliability.cim import correct_and_loss
    from reliability.cim.simulate import ChipSimulator
    from reliability.cim.spec import parse_variation

    bare = bare_products(net, X, CHIPS, np.random.default_rng(0))
    idx = np.arange(BLOCK)
    setups = []
    for label, variation, time_s in variations:
        spec = parse_variation(variation).with_(time_s=time_s)
        sim, per_chip = ChipSimulator(net, spec), ChipSimulator(net, spec)
        per_chip._batch_counts = None          # the chip-by-chip draw, for comparison
        stack = [np.empty((BLOCK, m.K, m.N), sim.dtype) for m in sim.maps]
        sim.evaluate(X, y, 512, rng=99)           # warm-up: compiled kernels, caches, chunk probe
        draws = sim.draw_chips(idx, 0, out=stack)
        per_chip.draw_chips(idx[:8], 0)
        setups.append((label, variation, time_s, sim, per_chip, stack, draws, sim.logits(X, draws)))
    keys = ("sim", "bare", "draw", "draw_chip_by_chip", "forward", "loss")
    best = [{k: np.inf for k in keys} for _ in setups]
    for r in range(rounds):
        for t, (_, _, _, sim, per_chip, stack, draws, logits) in zip(best, setups):
            t["bare"] = min(t["bare"], _timed(bare) / CHIPS)
            t["sim"] = min(t["sim"], _timed(lambda: sim.evaluate(X, y, CHIPS, rng=r)) / CHIPS)
            t["draw"] = min(t["draw"], _timed(lambda: sim.draw_chips(idx, r, out=stack)) / BLOCK)
            t["draw_chip_by_chip"] = min(t["draw_chip_by_chip"], _timed(lambda: per_chip.draw_chips(idx, r)) / BLOCK)
            t["forward"] = min(t["forward"], _timed(lambda: sim.logits(X, draws)) / BLOCK)
            t["loss"] = min(t["loss"], _timed(lambda: correct_and_loss(logits, y)) / BLOCK)
    rows = []
    for t, (label, variation, time_s, sim, *_) in zip(best, setups):
        rows.append({"variation": label, "spec": variation, "time_s": time_s, "chips": CHIPS, "samples": int(len(y)),
                     **{f"{k}_ms": 1e3 * v for k, v in t.items()}, "ratio": t["sim"] / t["bare"],
                     "target_ratio": 1.5, "draw_speedup": t["draw_chip_by_chip"] / t["draw"],
                     "chips_per_s": 1.0 / t["sim"], "chunk": int(sim.chips_per_chunk(X, CHIPS))})
    return rows


def tail_row(net, X, y, sim_ms: float) -> dict:
    from reliability.sampling import estimate_tail

    # the second stage's mixture fit imports scikit-learn once per process: timed apart, so that
    # the run's stages are the estimator's own work
    t0 = time.perf_counter()
    import sklearn.mixture  # noqa: F401

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = estimate_tail(net, X, y, "weight-gaussian:sigma=0.05", below=list(BELOW), budget=BUDGET, rng=0)
    wall = time.perf_counter() - t0
    d = res.diagnostics
    sec = {k: (sum(v) if isinstance(v, list) else float(v)) for k, v in d.get("seconds", {}).items()}
    ev = d.get("evaluations", {})
    n_eval = int(sum(ev.values()))
    # evaluations per stage: the design-point search (pilot and gradients), the subset levels, the
    # importance stages (with the second stage's fit, which evaluates nothing, and the estimates)
    groups = {"design points (pilot, search)": (("pilot", "design_points"), ev.get("mode_search", 0)),
              "subset levels": (("subset_levels",), ev.get("subset_simulation", 0)),
              "importance sampling": (("importance_first_stage", "importance_second_stage"),
                                      ev.get("importance_sampling", 0)),
              "second-stage fit and estimates": (("second_stage_fit", "estimates"), 0)}
    stages = []
    for name, (keys, n) in groups.items():
        s = sum(sec.get(k, 0.0) for k in keys)
        stages.append({"stage": name, "seconds": s, "evaluations": n,
                       "ms_per_evaluation": 1e3 * s / n if n else None,
                       "ratio_to_simulator": (1e3 * s / n) / sim_ms if n else None,
                       "share_of_wall": s / wall})
    return {"budget": BUDGET, "below": list(BELOW), "seconds": wall, "sklearn_import_s": import_s,
            "evaluations": n_eval,
            "ms_per_evaluation": 1e3 * wall / n_eval, "simulator_ms": sim_ms,
            "ratio": (1e3 * wall / n_eval) / sim_ms, "target_ratio": 1.5, "stages": stages,
            "estimates": [{"below": e.below, "p": e.probability, "std_error": e.std_error, "reliable": e.reliable}
                          for e in res.estimates]}


def startup_rows(repeats: int = 5) -> list[dict]:
    import shutil

    # the installed console script, as a user runs it (else the same entry point through python)
    script = shutil.which("reliability", path=str(Path(sys.executable).parent))
    exe = [script] if script else [sys.executable, "-c", "from reliability._console import main; raise SystemExit(main())"]
    rows = []
    for label, cmd in (("python -c pass", [sys.executable, "-c", "pass"]),
                       ("reliability --help", exe + ["--help"]),
                       ("reliability device presets", exe + ["device", "presets"])):
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            best = min(best, time.perf_counter() - t0)
        rows.append({"command": label, "seconds": best, "target_s": None if label.startswith("python") else 0.5})
    return rows


def run(rounds: int = 25) -> list[tuple]:
    """Rows for ``benchmarks/run.py``: ``(name, detail, seconds, target seconds)``; the targets are
    1.5 x the bare products' time per chip, 1.5 x the simulator's per chip evaluation of the tail
    estimator, and 0.5 s for a start-up."""
    net, X, y = case()
    rows = []
    sims = simulator_rows(net, X, y, rounds)
    for r in sims:
        rows.append((f"small-net-{r['variation'].replace(', ', '-').replace(' ', '')}",
                     f"digits MLP 64-32-10, {r['variation']}: {r['sim_ms']:.3f} ms/chip vs bare products "
                     f"{r['bare_ms']:.3f} ms/chip (draw {r['draw_ms']:.3f}, forward {r['forward_ms']:.3f}, counts and "
                     f"loss {r['loss_ms']:.3f})", r["sim_ms"] / 1e3, r["bare_ms"] / 1e3 * 1.5))
    t = tail_row(net, X, y, sims[0]["sim_ms"])
    rows.append(("small-net-tail", f"hybrid at budget {BUDGET} on the digits MLP: {t['ms_per_evaluation']:.3f} ms per "
                 f"evaluation vs simulator {t['simulator_ms']:.3f} ms/chip (scikit-learn import "
                 f"{t['sklearn_import_s']:.1f} s not included)", t["seconds"],
                 t["simulator_ms"] / 1e3 * t["evaluations"] * 1.5))
    for r in startup_rows():
        if r["target_s"]:
            rows.append((f"startup-{r['command'].split(' ', 1)[1].replace(' ', '-').strip('-')}", r["command"],
                         r["seconds"], r["target_s"]))
    return rows


#: the simulator rows' fields shown on the results page (the page shows every number of the file)
SIM_COLUMNS = ("variation", "sim_ms", "bare_ms", "ratio", "target_ratio", "chips_per_s", "draw_ms",
               "draw_chip_by_chip_ms", "forward_ms", "loss_ms")


def results_doc(sims, tail, startup, argv) -> dict:
    from run import results_document

    def sig(v, n=3):
        return None if v is None or not np.isfinite(v) else float(f"{v:.{n}g}")

    tables = [
        {"caption": "Digits MLP 64-32-10, 597 samples: milliseconds per chip, simulator against the bare products "
                    "(same run), and the simulator's stages",
         "columns": [["variation", "{variation}"], ["simulator", "{sim_ms}"], ["bare products", "{bare_ms}"],
                     ["ratio", "{ratio}"], ["target", "{target_ratio}"], ["chips per second", "{chips_per_s}"],
                     ["draw", "{draw_ms}"], ["draw chip by chip", "{draw_chip_by_chip_ms}"],
                     ["forward", "{forward_ms}"], ["counts and loss", "{loss_ms}"]],
         "rows": [{k: (sig(v) if isinstance(v, float) else v) for k, v in r.items() if k in SIM_COLUMNS}
                  for r in sims]},
    ]
    if tail is not None:
        tables.append(
            {"caption": "Tail estimate at budget 20,000 (weight-gaussian sigma 0.05): seconds per stage, per chip "
                        "evaluation, and against the simulator's per-chip time",
             "columns": [["stage", "{stage}"], ["seconds", "{seconds}"], ["evaluations", "{evaluations}"],
                         ["ms per evaluation", "{ms_per_evaluation}"], ["ratio to the simulator", "{ratio_to_simulator}"],
                         ["share of the wall time", "{share_of_wall}"]],
             "rows": [{k: (sig(v) if isinstance(v, float) else v) for k, v in r.items()} for r in tail["stages"]]
                     + [{"stage": "whole run", "seconds": sig(tail["seconds"]), "evaluations": tail["evaluations"],
                         "ms_per_evaluation": sig(tail["ms_per_evaluation"]), "ratio_to_simulator": sig(tail["ratio"]),
                         "share_of_wall": 1.0},
                        {"stage": "importing scikit-learn's mixture (once per process, before the run)",
                         "seconds": sig(tail["sklearn_import_s"]), "evaluations": 0, "ms_per_evaluation": None,
                         "ratio_to_simulator": None, "share_of_wall": None}]})
    if startup:
        tables.append({"caption": "Start-up, seconds (best of 5 new processes)",
                       "columns": [["command", "{command}"], ["seconds", "{seconds}"], ["target", "{target_s}"]],
                       "rows": [{k: (sig(v) if isinstance(v, float) else v) for k, v in r.items()} for r in startup]})
    return results_document(
        "small-net", 46, "Speed: small networks and start-up", "benchmarks/small_net.py", argv,
        "The public case's digits MLP (64-32-10, 2.8 MFLOP a chip): the simulator's time per chip against "
        "the bare float32 products of the same shapes (a stacked matmul, one weight matrix per chip, "
        "timed alternately in the same run), the tail estimator's time per chip evaluation against the "
        "simulator's, and the command line's start-up.", tables)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=25, help="alternated timing rounds (best of)")
    ap.add_argument("--parts", default="sim,tail,startup", help="comma-separated: sim, tail, startup")
    ap.add_argument("--json", help="write the raw rows here")
    ap.add_argument("--results-dir", help="write small_net.json (results schema) in this folder")
    ap.add_argument("--note", action="append", default=[], help="a note for the results file")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    net, X, y = case()
    sims = []
    if "sim" in parts or "tail" in parts:
        sims = simulator_rows(net, X, y, args.rounds, VARIATIONS if "sim" in parts else VARIATIONS[:1])
        for row in sims:
            print(json.dumps(row), flush=True)
    tail = None
    if "tail" in parts:
        tail = tail_row(net, X, y, sims[0]["sim_ms"])
        print(json.dumps(tail), flush=True)
    startup = startup_rows() if "startup" in parts else []
    for r in startup:
        print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"simulator": sims, "tail": tail, "startup": startup}, indent=2) + "\n")
    if args.results_dir:
        from run import save_results

        save_results(results_doc(sims, tail, startup, argv), args.results_dir, "small_net.json", args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
