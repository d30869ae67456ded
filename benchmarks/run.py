"""Benchmark suite: speed targets measured side by side in one run and reported as ratios.

Run ``python benchmarks/run.py`` (add ``--json results.json`` to keep the rows, or ``--results-dir
benchmarks/results`` to write them as a results file with their provenance, which the
documentation's results page renders; see ``docs/gen_results.py``).  Each entry
reports the measured time, the target and their ratio (ratio <= 1 meets the target).  The suite
grows with the toolkit; entries so far:

- ``fit-100k``: ``fit_device`` on a 100,000-row PCM-like campaign (4 chips x 13 levels x 641
  devices x 3 read times, with device ids), every family ranked.  Target: 30 s on 2 cores.
- ``fit-100k-noids``: the same rows without the ``device`` column (moment-based drift).
- ``read-100k``: reading and validating the same rows from CSV (context for the fit time).
- nvCiM core (``benchmarks/cim.py``): a 784-256-10 MLP on 1,000 inputs per simulated chip, with
  ``weight-gaussian`` and with the PCM preset at t = 1 day (differential pairs, no ADC), against the
  bare float32 matrix products of the same shapes timed in the same run (target ratio <= 2); a
  LeNet-5 on 1,000 28 x 28 inputs per chip, with peak traced memory.
- small networks (``benchmarks/small_net.py``): the public case's digits MLP (64-32-10) per
  simulated chip against the bare products (target ratio <= 1.5), the tail estimator's time per
  chip evaluation against the simulator's (target <= 1.5), and the command line's start-up
  (``reliability --help``, ``reliability device presets``: target 0.5 s).
- tail estimation (``benchmarks/tail.py``): evaluations each estimator needs for 20 % relative
  error on the public case and on the cases built in ``benchmarks/cases.py``, against plain MC.
- ``fit-bayes-10k`` (``benchmarks/bayes.py``): default ``fit_device_bayes`` on 9,984 PCM-like rows;
  target 60 s on 2 cores.
- worst case (``benchmarks/worstcase.py``): LeNet-5 on 1,000 Fashion-MNIST images, one bound.
  Target: 60 s on 2 cores.
"""

from __future__ import annotations

import reliability  # noqa: F401  (first: it sets OPENBLAS_THREAD_TIMEOUT before numpy loads)

import argparse
import json
import os
import sys
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


sys.path.insert(0, str(Path(__file__).resolve().parent))


def _campaign():
    from reliability.data import simulate_campaign
    from reliability.devices import ChipGain, StuckAt
    from reliability.devices.presets import get_preset

    truth = get_preset("pcm").with_(stuck=StuckAt(0.01, 0.005, 0.0, 25.0, 0.0, 0.3), chip_gain=ChipGain(0.03))
    return simulate_campaign(truth, np.linspace(0, 25, 13), [20.0, 3600.0, 86400.0], n_chips=4, n_devices=641, rng=0)


def _time(fn, repeat=1):
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _git(*args) -> str:
    import subprocess

    try:
        return subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def provenance(script: str, argv: list[str]) -> dict:
    """The provenance block of a results file: ``script`` and its options (``argv`` less where the
    results are written), the commit (``-dirty`` when tracked files have changes), today's date
    and the machine."""
    import datetime

    commit = _git("rev-parse", "HEAD") or "unknown"
    if commit != "unknown" and _git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    kept, skip = [], False
    for a in argv:          # the options that shaped the numbers: not where they are written
        if skip or a.startswith("--results-dir="):
            skip = False
        elif a == "--results-dir":
            skip = True
        else:
            kept.append(a)
    return {"script": script, "options": " ".join(kept) or "defaults", "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "recorded": "measured by this run",
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}"}


def results_document(id: str, order: int, title: str, script: str, argv: list[str], summary: str,
                     tables: list[dict]) -> dict:
    """A results document (schema of ``docs/gen_results.py``) with its provenance and no notes."""
    return {"schema": "nvcim-reliability/results", "schema_version": 1, "id": id, "order": order, "title": title,
            "provenance": provenance(script, argv), "summary": summary, "tables": tables, "notes": []}


def save_results(doc: dict, directory, name: str, notes=()) -> Path:
    """Write the results document ``doc`` (with ``notes`` added) as ``directory/name``; print and
    return the path."""
    doc["notes"] = list(doc.get("notes", [])) + list(notes)
    path = Path(directory) / name
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def write_results_file(rows: list[dict], directory: Path, argv: list[str]) -> Path:
    """Write ``rows`` as a results file (schema of ``docs/gen_results.py``) with their provenance
    (:func:`provenance`).  Times are rounded to 4 significant digits, ratios to 3."""

    def sig(v, n):
        return None if v is None or not np.isfinite(v) else float(f"{v:.{n}g}")

    doc = {
        "schema": "nvcim-reliability/results", "schema_version": 1,
        "id": "benchmark-run", "order": 90,
        "title": "Benchmark suite: the latest run of benchmarks/run.py",
        "provenance": provenance("benchmarks/run.py", argv),
        "summary": "Ratio = measured / target (a ratio of 1 or less meets the target); for the nvCiM rows the "
                   "target is 2 x the bare products' time.",
        "tables": [{"caption": "Benchmarks",
                    "columns": [["benchmark", "{benchmark}"], ["seconds", "{seconds}"], ["target, s", "{target_s}"],
                                ["ratio", "{ratio}"], ["detail", "{detail}"]],
                    "rows": [{"benchmark": r["benchmark"], "seconds": sig(r["seconds"], 4),
                              "target_s": sig(r["target_s"], 4), "ratio": sig(r["ratio"], 3), "detail": r["detail"]}
                             for r in rows]}],
        "notes": [],
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "benchmark_run.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument("--results-dir", help="also write them, with their provenance, as benchmark_run.json in this folder "
                    "(e.g. benchmarks/results, rendered on the documentation's results page)")
    args = ap.parse_args(argv)
    from reliability.data import read_measurements, write_measurements
    from reliability.fit import fit_device

    df = _campaign()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        path = write_measurements(df, Path(d) / "campaign.csv")
        t_read, table = _time(lambda: read_measurements(path))
        rows.append(("read-100k", f"{table.frame.height} rows from CSV", t_read, None))
    t_fit, res = _time(lambda: fit_device(df))
    rows.append(("fit-100k", f"{df.height} rows, chosen {res.chosen}", t_fit, 30.0))
    t_fit2, res2 = _time(lambda: fit_device(df.drop("device")))
    rows.append(("fit-100k-noids", f"{df.height} rows, chosen {res2.chosen}", t_fit2, 30.0))

    import cim

    for r in cim.run():
        target = r["target_ratio"]
        detail = f"{r['ms_per_chip']:.2f} ms/chip"
        if target:
            detail += f" vs bare products {r['bare_ms_per_chip']:.2f} ms/chip"
        if "peak_MB" in r:
            detail += f", peak traced memory {r['peak_MB']:.0f} MB"
        rows.append((r["name"], detail + f" [{r['benchmark']}]", r["ms_per_chip"] / 1e3,
                     None if not target else r["bare_ms_per_chip"] / 1e3 * target))

    import small_net

    rows += small_net.run()

    import tail

    for r in tail.run():
        rows.append((f"tail-{r['case']}-{r['method']}-{r['threshold'].split()[-1]}",
                     f"p={r['p_true']:.2e}: {r['method']} needs {r['evals_for_20pct']:.0f} evaluations for 20 % "
                     f"relative error (rel. RMSE {r['rrmse']:.2f} at 20,000; estimate/truth "
                     f"{r['ratio_range'][0]:.2f}..{r['ratio_range'][1]:.2f}, within x1.5 {r['within_1.5']}; "
                     f"CI coverage {r['ci_coverage']}; "
                     f"flagged {r['flagged']}), plain MC {r['mc_evals_for_20pct']:.0f}: gain x{r['gain']:.1f}",
                     r["seconds_per_run"], None))

    import bayes

    for r in bayes.run():
        rows.append((r["name"], f"{r['rows']} rows, {'converged' if r['success'] else 'FAILED'}: max R-hat "
                     f"{r['max_r_hat']:.3f}, min ESS bulk/tail {r['min_ess_bulk']:.0f}/{r['min_ess_tail']:.0f}, "
                     f"{r['divergences']} divergences (import pymc {r['import_s']:.1f} s not included)",
                     r["seconds"], r["target_s"]))

    import worstcase

    for r in worstcase.run():
        rows.append((r["name"], r["detail"], r["seconds"], r["target_s"]))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("ratio = measured / target; for the nvCiM rows the target is 2 x the bare products' time")
    print(f"{'benchmark':18s} {'seconds':>9s} {'target':>8s} {'ratio':>7s}  detail")
    out = []
    for name, detail, sec, target in rows:
        ratio = sec / target if target else float("nan")
        print(f"{name:18s} {sec:9.4f} {f'{target:.4f}' if target else '-':>8} {ratio:7.2f}  {detail}")
        out.append({"benchmark": name, "seconds": sec, "target_s": target, "ratio": ratio, "detail": detail})
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if args.results_dir:
        path = write_results_file(out, Path(args.results_dir), argv if argv is not None else sys.argv[1:])
        print(f"wrote {path}")
    return 0 if all(r["ratio"] <= 1 or r["target_s"] is None for r in out) else 1


if __name__ == "__main__":
    raise SystemExit(main())
