"""Repeated runs of estimators on cases, one JSON Lines record per run.

Each run builds a fresh :class:`~reliability.bench.problem.BenchProblem` (budget enforced by its
counter), runs one estimator with one seed and appends one record to the results file as soon as
it ends; a run that raises, returns non-finite or malformed numbers, or asks for more than its
budget is recorded as a failure with the reason, and the suite goes on.  Runs already in the file
(same case version, estimator, options, budget and seed) are not run again, so an interrupted suite
resumes where it stopped.

Record schema ``nvcim-reliability/bench-run``, version :data:`SCHEMA_VERSION`: ``case``,
``case_version``, ``estimator`` (label), ``estimator_spec``, ``options``, ``budget``, ``seed``, ``n_samples``,
``status`` (``"ok"`` or ``"failed"``), ``failure`` (``null`` or ``{"kind", "message"}``, kind one
of ``raised``, ``non-finite``, ``invalid``, ``over-budget``; a standard error may be NaN only in an
estimate its estimator flags unreliable, as one with no chip in the event), ``evaluations`` (counted),
``reported_evaluations``, ``gradient_evaluations``, ``seconds``, ``events`` (per event: ``count``,
``accuracy``, ``reference``, ``reference_se``, and for a finished run ``probability``,
``std_error``, ``ci95``, ``reliable``), ``method``, ``toolkit_version``, ``commit``, ``machine``,
``date``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import time
import traceback
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from reliability.bench.catalog import load_case
from reliability.bench.plugins import EstimatorSpec, InvalidResult, normalize_run, resolve
from reliability.bench.problem import BenchProblem, BudgetExceeded, CountingScorer, LatentView
from reliability.errors import DataValidationError, InterruptedEarly, ReliabilityError

__all__ = ["SCHEMA", "SCHEMA_VERSION", "CASE_ALIASES", "expand_cases", "run_benchmark", "run_one", "read_runs",
           "Task"]

SCHEMA = "nvcim-reliability/bench-run"
SCHEMA_VERSION = 1

#: Names that stand for several cases (or another name) on the command line.
CASE_ALIASES = {"public": ("digits_mlp_s05",)}


def expand_cases(names) -> list[str]:
    """Case names with the aliases (:data:`CASE_ALIASES`, ``"exact"``: every exact case, ``"all"``:
    every case) expanded, in order, without repeats."""
    from reliability.bench.catalog import available_cases
    from reliability.bench.exact import EXACT_CASES

    out: list[str] = []
    for n in names:
        if n == "all":
            group = available_cases()
        elif n == "exact":
            group = tuple(sorted(EXACT_CASES))
        else:
            group = CASE_ALIASES.get(n, (n,))
        out += [g for g in group if g not in out]
    return out


@dataclass(frozen=True)
class Task:
    """One run: a case (name or folder), an estimator, a budget and a seed."""

    case: str
    estimator: EstimatorSpec
    budget: int
    seed: int


@lru_cache(maxsize=8)
def _case(name: str):
    return load_case(name)


@lru_cache(maxsize=1)
def _provenance() -> dict:
    from reliability import __version__

    commit = None
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"toolkit_version": __version__, "commit": commit,
            "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                        "python": platform.python_version(), "numpy": np.__version__}}


def _problem(case, budget: int):
    """A fresh problem of ``case`` with a counting scorer of ``budget`` evaluations, and the scorer."""
    from reliability.cim.latent import LatentChips
    from reliability.cim.simulate import ChipSimulator
    from reliability.sampling.scoring import ChipScorer

    sim = ChipSimulator(case.network, case.variation)
    latent = LatentChips(sim)
    counter = CountingScorer(ChipScorer(sim, latent, case.X, case.y), budget)
    n = case.n_samples
    events = tuple(int(c) for c in case.events)
    problem = BenchProblem(counter, LatentView(latent), tuple(c / n for c in events), events, (), n, "bench",
                           key=f"{case.name}@{case.version}")
    return problem, counter


def run_one(task: Task) -> dict:
    """Run ``task`` and return its record (module docstring); never raises for the estimator's
    faults (Ctrl-C and a case that cannot be loaded do raise)."""
    case = _case(task.case)
    problem, counter = _problem(case, task.budget)
    events = []
    for c in problem.count_thresholds:
        ref, ref_se = case.reference_probability(c)
        events.append({"count": c, "accuracy": c / case.n_samples, "reference": ref, "reference_se": ref_se})
    rec = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "case": case.name, "case_version": case.version,
           "estimator": task.estimator.label, "estimator_spec": task.estimator.spec,
           "options": task.estimator.options, "budget": task.budget, "seed": task.seed, "n_samples": case.n_samples}
    failure, run = None, None
    t0 = time.perf_counter()
    try:
        est = task.estimator.build()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = normalize_run(est.run(problem, budget=task.budget, rng=task.seed), problem)
    except KeyboardInterrupt:
        raise
    except BudgetExceeded as exc:
        failure = {"kind": "over-budget", "message": str(exc)}
    except InvalidResult as exc:
        failure = {"kind": "invalid", "message": str(exc)}
    except Exception as exc:   # noqa: BLE001  (a plug-in's fault is recorded, never a crash of the suite)
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        failure = {"kind": "raised", "message": f"{type(exc).__name__}: {exc}{where}"}
    seconds = time.perf_counter() - t0
    if failure is None and counter.refused:
        failure = {"kind": "over-budget", "message": f"the estimator went on after {counter.refused} request(s) past "
                                                      f"its budget of {task.budget} were refused."}
    if run is not None:
        for ev, e in zip(events, run.estimates):
            ev.update({"probability": float(e.probability), "std_error": float(e.std_error),
                       "ci95": [float(e.ci95[0]), float(e.ci95[1])], "reliable": bool(e.reliable)})
        if failure is None:
            # an estimate the estimator itself flags may lack a standard error (no chip in the event)
            bad = [ev["count"] for ev in events
                   if not all(math.isfinite(v) for v in (ev["probability"], *ev["ci95"]))
                   or not (math.isfinite(ev["std_error"]) or not ev["reliable"])]
            if bad:
                failure = {"kind": "non-finite", "message": f"non-finite probability, standard error or interval "
                                                            f"for the events n_correct <= {bad}."}
            elif any(not (0 <= ev["probability"] <= 1 and not ev["std_error"] < 0 and
                          0 <= ev["ci95"][0] <= ev["ci95"][1] <= 1) for ev in events):
                failure = {"kind": "invalid", "message": "a probability or interval outside [0, 1], a negative "
                                                         "standard error, or an interval with lo > hi."}
    rec.update({"status": "ok" if failure is None else "failed", "failure": failure,
                "evaluations": counter.evaluations,
                "reported_evaluations": None if run is None else int(run.evaluations),
                "gradient_evaluations": counter.gradients, "seconds": round(seconds, 4), "events": events,
                "method": None if run is None else run.method, **_provenance(),
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    return rec


def _key(rec: dict) -> tuple:
    return (rec["case"], rec["case_version"], rec["estimator"], int(rec["budget"]), int(rec["seed"]))


def read_runs(path) -> list[dict]:
    """The records of a results file.  A last line cut short (an interrupted write) is left out with
    a warning; any other unreadable line, or a record of another schema or a newer version, raises
    :class:`~reliability.errors.DataValidationError` naming the line."""
    path = Path(path)
    if not path.is_file():
        raise ReliabilityError(f"{path}: no such results file; `reliability bench run --out {path}` writes one.")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):     # no newline after it: a torn last write
                warnings.warn(f"{path}: line {i} was cut short (an interrupted write) and is left out; its run is "
                              f"run again on resume.", stacklevel=2)
                continue
            raise DataValidationError(f"{path}, line {i}: not a JSON record; a results file holds one JSON "
                                      f"object per line, as `reliability bench run` writes it.") from None
        if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
            raise DataValidationError(f"{path}, line {i}: not a {SCHEMA} record.")
        if not isinstance(rec.get("schema_version"), int) or rec["schema_version"] > SCHEMA_VERSION:
            raise DataValidationError(f"{path}, line {i}: schema version {rec.get('schema_version')!r}; this "
                                      f"release reads versions up to {SCHEMA_VERSION} (upgrade the toolkit).")
        out.append(rec)
    return out


def _append(path: Path, rec: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, allow_nan=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _repair(path: Path) -> None:
    """End the file with a newline: a torn last line is dropped (read_runs warned about it)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    from reliability._json import atomic_output

    keep = data[: data.rfind(b"\n") + 1]
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(keep)


def run_benchmark(cases, estimators, *, repeats: int = 32, budget: int = 20000, seed0: int = 0, out=None,
                  workers: int = 1, progress=None) -> list[dict]:
    """Run every estimator ``repeats`` times (seeds ``seed0 ..``) on every case.

    Parameters
    ----------
    cases : sequence of str
        Case names (:func:`~reliability.bench.available_cases`, aliases of :func:`expand_cases`) or
        case folders.
    estimators : sequence of str or EstimatorSpec
        Names or import paths (:func:`~reliability.bench.plugins.resolve`).
    repeats : int
        Runs per case and estimator.
    budget : int or sequence of int
        Chip evaluations per run, enforced; several budgets run every case and estimator at each
        (for :func:`~reliability.bench.leaderboard.budget_for_target`).
    seed0 : int
        First seed.
    out : path, optional
        JSON Lines results file: records are appended as runs end, and runs already in it are skipped.
    workers : int
        Runs in parallel (separate processes).
    progress : callable, optional
        ``progress(done, total, record)`` after each run.

    Returns
    -------
    list of dict
        The records of every requested run (those found in ``out`` included), in task order.
    """
    budgets = [budget] if isinstance(budget, (int, np.integer)) else list(budget)
    for name, v, lo in (("repeats", repeats, 1), ("workers", workers, 1), *(("budget", b, 100) for b in budgets)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ReliabilityError(f"{name}={v!r}: an integer of at least {lo}.")
    if not budgets:
        raise ReliabilityError("budget=[]: give at least one budget.")
    specs = [e if isinstance(e, EstimatorSpec) else resolve(e) for e in estimators]
    names = expand_cases([str(c) for c in cases])
    if not names or not specs:
        raise ReliabilityError("nothing to run: give at least one case and one estimator.")
    loaded = {n: _case(n) for n in names}       # fail on a bad case before any run
    tasks = [Task(n, s, int(b), int(seed)) for n in names for s in specs for b in budgets
             for seed in range(int(seed0), int(seed0) + int(repeats))]
    done: dict[tuple, dict] = {}
    path = Path(out) if out is not None else None
    if path is not None and path.exists():
        for rec in read_runs(path):
            done[_key(rec)] = rec
        _repair(path)

    def key(t: Task):
        c = loaded[t.case]
        return (c.name, c.version, t.estimator.label, t.budget, t.seed)

    todo = [t for t in tasks if key(t) not in done]
    count = len(tasks) - len(todo)
    try:
        if workers == 1 or len(todo) <= 1:
            for t in todo:
                rec = run_one(t)
                done[key(t)] = rec
                if path is not None:
                    _append(path, rec)
                count += 1
                if progress is not None:
                    progress(count, len(tasks), rec)
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(int(workers)) as pool:
                futs = {pool.submit(run_one, t): t for t in todo}
                try:
                    for f in as_completed(futs):
                        rec = f.result()
                        done[key(futs[f])] = rec
                        if path is not None:
                            _append(path, rec)
                        count += 1
                        if progress is not None:
                            progress(count, len(tasks), rec)
                except KeyboardInterrupt:
                    for f in futs:
                        f.cancel()
                    raise
    except KeyboardInterrupt:
        where = f"; the finished ones are in {path}: run the same command again to resume" if path else ""
        raise InterruptedEarly(f"after {count} of {len(tasks)} benchmark runs{where}") from None
    return [done[key(t)] for t in tasks]
