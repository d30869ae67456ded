"""The benchmark suite: estimators plugged in by import path, the enforced budget, failures recorded
as data, resumable JSON Lines results and the leaderboard built from them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from reliability.bench import load_case
from reliability.bench.leaderboard import summarize, to_html, to_markdown
from reliability.bench.plugins import resolve
from reliability.bench.problem import BudgetExceeded
from reliability.bench.runner import SCHEMA, SCHEMA_VERSION, expand_cases, read_runs, run_benchmark
from reliability.errors import DataValidationError, ReliabilityError
from reliability.sampling import EstimatorRun, TailEstimate

CASE = "linear-d1e3-p1e-3"     # exact: P(count <= 0) = 1e-3, a 1,000-dimensional latent space
HERE = "tests.unit.test_bench_suite"


# ---------------------------------------------------------------- plug-ins used by the tests
class ToyMC:
    """Plain Monte Carlo on flat arrays: the smallest honest plug-in (a class with options)."""

    name = "toy-mc"

    def __init__(self, batch: int = 500):
        self.batch = batch

    def run(self, problem, *, budget, rng, checkpoint=None, progress=None):
        g = np.random.default_rng(rng)
        counts = np.concatenate([problem.evaluate(problem.draw(g, min(self.batch, budget - s)))[0]
                                 for s in range(0, budget, self.batch)])
        ests = []
        for a, k in zip(problem.below, problem.count_thresholds):
            m = int(np.sum(counts <= k))
            p = m / budget
            se = math.sqrt(max(p * (1 - p), 1e-300) / budget)
            lo, hi = (p * math.exp(-1.96 * se / p), p * math.exp(1.96 * se / p)) if m else (0.0, 3.7 / budget)
            ests.append(TailEstimate(a, p, se, (lo, hi), self.name, budget, float(budget), m >= 10, None, k))
        return EstimatorRun(tuple(ests), (), budget, self.name)


def toy_function(problem, *, budget, rng, scale=1.0):
    """A function plug-in returning the mapping form; ``scale`` != 1 makes it biased."""
    est = ToyMC().run(problem, budget=budget, rng=rng).estimates
    return {"probability": [e.probability * scale for e in est], "std_error": [e.std_error * scale for e in est],
            "ci95": [(e.ci95[0] * scale, e.ci95[1] * scale) for e in est]}


def raising(problem, *, budget, rng):
    raise ZeroDivisionError("the plug-in's own bug")


def returns_nan(problem, *, budget, rng):
    return {"probability": [float("nan")], "std_error": [0.1], "ci95": [(0.0, 1.0)]}


def greedy(problem, *, budget, rng):
    problem.evaluate(problem.draw(np.random.default_rng(rng), budget + 1))


def sneaky(problem, *, budget, rng):
    """Catches the refusal and returns an answer anyway: still a failure."""
    try:
        greedy(problem, budget=budget, rng=rng)
    except BudgetExceeded:
        pass
    return toy_function(problem, budget=100, rng=rng)


def wrong_length(problem, *, budget, rng):
    return {"probability": [0.1, 0.2], "std_error": [0.1, 0.1], "ci95": [(0, 1), (0, 1)]}


def reaches_simulator(problem, *, budget, rng):
    return problem.latent.sim


# ---------------------------------------------------------------- tests
def test_toy_estimator_plugs_in_by_import_path_and_its_metrics_are_right(tmp_path):
    out = tmp_path / "runs.jsonl"
    recs = run_benchmark([CASE], [f"{HERE}:ToyMC", f"{HERE}:toy_function"], repeats=4, budget=4000, out=out)
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs)
    assert all(r["evaluations"] == 4000 for r in recs)
    # the class and the function draw the same chips from the same seed: the same numbers
    a = [r["events"][0]["probability"] for r in recs[:4]]
    b = [r["events"][0]["probability"] for r in recs[4:]]
    assert a == b and len(set(a)) > 1
    r = recs[0]
    assert r["schema"] == SCHEMA and r["schema_version"] == SCHEMA_VERSION and r["case"] == CASE
    assert r["events"][0]["reference"] == pytest.approx(1e-3) and r["events"][0]["reference_se"] == 0
    for key in ("case_version", "toolkit_version", "commit", "machine", "date", "seconds", "options"):
        assert key in r
    assert read_runs(out) == recs
    rows = summarize(recs)
    assert [row["estimator"] for row in rows] == [f"{HERE}:ToyMC", f"{HERE}:toy_function"]
    x = np.array(a)
    assert rows[0]["relative_rmse"] == pytest.approx(float(np.sqrt(np.mean((x / 1e-3 - 1) ** 2))))
    assert rows[0]["event"] == "acc <= 0/1" and rows[0]["runs_text"] == "4 (0)"


@pytest.mark.parametrize("fn, kind", [("raising", "raised"), ("returns_nan", "non-finite"), ("greedy", "over-budget"),
                                      ("sneaky", "over-budget"), ("wrong_length", "invalid"),
                                      ("reaches_simulator", "raised")])
def test_bad_plugins_are_recorded_as_failures_not_crashes(tmp_path, fn, kind):
    recs = run_benchmark([CASE], [f"{HERE}:{fn}", "mc"], repeats=2, budget=500, out=tmp_path / "r.jsonl")
    bad, good = recs[:2], recs[2:]
    assert all(r["status"] == "failed" and r["failure"]["kind"] == kind for r in bad)
    assert all(r["evaluations"] <= 500 for r in bad)
    assert all(r["status"] == "ok" for r in good)
    if fn == "raising":
        assert "ZeroDivisionError: the plug-in's own bug" in bad[0]["failure"]["message"]
    row = summarize(recs)[0]
    assert row["failures"] == 2 and row["failure_rate"] == 1.0 and row["runs_text"] == "0 (2)"


def test_plugin_by_file_path(tmp_path):
    src = tmp_path / "myest.py"
    src.write_text("from tests.unit.test_bench_suite import toy_function as estimate\n")
    recs = run_benchmark([CASE], [f"{src}:estimate"], repeats=1, budget=300)
    assert recs[0]["status"] == "ok" and recs[0]["estimator_spec"] == f"{src}:estimate"


@pytest.mark.parametrize("spec, match", [("nope", "not a registered name"), ("no.such.module:X", "cannot import"),
                                         (f"{HERE}:Missing", "has no 'Missing'"), ("/no/file.py:X", "does not exist"),
                                         (f"{HERE}:CASE", "neither a class")])
def test_unresolvable_estimators_are_refused_before_any_run(spec, match):
    with pytest.raises(ReliabilityError, match=match):
        resolve(spec)


def test_options_reach_the_constructor_and_bad_ones_are_refused():
    assert resolve(f"{HERE}:ToyMC", {"batch": 100}).build().batch == 100
    assert resolve("subset", {"p0": 0.2}).label == 'subset(p0=0.2)'
    with pytest.raises(ReliabilityError, match="cannot be built with options"):
        resolve(f"{HERE}:ToyMC", {"nope": 1})


@pytest.mark.parametrize("name", ["mc", "subset", "is", "hybrid"])
def test_builtin_estimators_stay_within_the_budget_and_report_what_was_counted(name):
    rec = run_benchmark(["series4-d1e4-p1e-5"], [name], repeats=1, budget=3000)[0]
    assert rec["status"] == "ok", rec["failure"]
    assert rec["evaluations"] <= 3000
    assert rec["reported_evaluations"] == rec["evaluations"]
    if name in ("is", "hybrid"):
        assert rec["gradient_evaluations"] > 0      # the design-point search goes through the counter


def test_resume_runs_only_what_is_missing_and_a_torn_last_line_is_rerun(tmp_path):
    out = tmp_path / "runs.jsonl"
    seen = []
    run_benchmark([CASE], ["mc"], repeats=2, budget=300, out=out, progress=lambda d, t, r: seen.append(r["seed"]))
    assert seen == [0, 1]
    seen.clear()
    recs = run_benchmark([CASE], ["mc"], repeats=3, budget=300, out=out, progress=lambda d, t, r: seen.append(r["seed"]))
    assert seen == [2] and [r["seed"] for r in recs] == [0, 1, 2]
    text = out.read_text()
    out.write_text(text[: len(text) - 40])            # the last record cut short, no newline after it
    seen.clear()
    with pytest.warns(UserWarning, match="cut short"):
        recs2 = run_benchmark([CASE], ["mc"], repeats=3, budget=300, out=out,
                              progress=lambda d, t, r: seen.append(r["seed"]))
    assert seen == [2] and recs2[2]["events"] == recs[2]["events"]
    assert len(read_runs(out)) == 3


def test_results_of_another_schema_or_a_garbled_line_are_refused(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"schema": "other"}\n')
    with pytest.raises(DataValidationError, match="line 1: not a nvcim-reliability/bench-run record"):
        read_runs(p)
    p.write_text(json.dumps({"schema": SCHEMA, "schema_version": SCHEMA_VERSION + 1}) + "\n")
    with pytest.raises(DataValidationError, match="upgrade"):
        read_runs(p)
    p.write_text("garbage\n{}\n")
    with pytest.raises(DataValidationError, match="line 1: not a JSON record"):
        read_runs(p)
    with pytest.raises(ReliabilityError, match="no such results file"):
        read_runs(tmp_path / "missing.jsonl")


def test_duplicated_runs_are_refused_by_the_table(tmp_path):
    recs = run_benchmark([CASE], ["mc"], repeats=1, budget=200)
    with pytest.raises(DataValidationError, match="more than once"):
        summarize(recs + recs)


def test_bad_arguments_are_named():
    with pytest.raises(ReliabilityError, match="repeats=0"):
        run_benchmark([CASE], ["mc"], repeats=0)
    with pytest.raises(ReliabilityError, match="budget=50"):
        run_benchmark([CASE], ["mc"], budget=50)
    with pytest.raises(ReliabilityError, match="not a shipped benchmark case"):
        run_benchmark(["no-such-case"], ["mc"])


def test_parallel_workers_give_the_serial_records(tmp_path):
    serial = run_benchmark([CASE], ["mc", "is"], repeats=2, budget=400)
    parallel = run_benchmark([CASE], ["mc", "is"], repeats=2, budget=400, workers=2, out=tmp_path / "p.jsonl")
    assert [r["events"] for r in parallel] == [r["events"] for r in serial]
    assert sorted((r["estimator"], r["seed"]) for r in read_runs(tmp_path / "p.jsonl")) == sorted(
        (r["estimator"], r["seed"]) for r in serial)


def test_budget_for_target_reads_the_ladder():
    from reliability.bench.leaderboard import budget_for_target

    rows = summarize(run_benchmark([CASE], ["mc"], repeats=6, budget=[400, 4000]))
    assert [r["budget"] for r in rows] == [400, 4000]
    (t,) = budget_for_target(rows, target_rel_error=0.9)
    small, big = rows
    want = 400 if small["relative_rmse"] <= 0.9 else 4000 if big["relative_rmse"] <= 0.9 else None
    assert t["measured"] == (f"{want:,}" if want else "none of the budgets")
    assert t["extrapolated"] == pytest.approx(big["mean_evaluations"] * (big["relative_rmse"] / 0.9) ** 2)
    assert t["mc_evaluations_for_target"] == pytest.approx((1 - 1e-3) / (0.81 * 1e-3))


def test_aliases_expand():
    assert expand_cases(["public"]) == ["digits_mlp_s05"]
    ex = expand_cases(["exact", "linear-d1e3-p1e-3"])
    assert ex[0].startswith("linear") and len(ex) == len(set(ex)) == 5


def test_markdown_and_html_tables(tmp_path):
    recs = run_benchmark([CASE], ["mc", f"{HERE}:raising"], repeats=2, budget=300)
    rows = summarize(recs)
    md = to_markdown(rows)
    assert md.count("\n") == 4 and "| mc |" in md and "0 (2)" in md
    html = to_html(rows)
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and "http" not in html.replace(
        "http-equiv", "")
    assert f"{HERE}:raising" in html


# ---------------------------------------------------------------- the quick regression subset
def _bands(row, rmse_max, coverage_min):
    """The quick subset's acceptance: no failures, relative RMSE and |bias| within the band, and
    95 % coverage at least ``coverage_min``."""
    return (row["failures"] == 0 and row["relative_rmse"] <= rmse_max and abs(row["relative_bias"]) <= rmse_max
            and row["coverage_95"] >= coverage_min)


QUICK = [  # (case, budget, estimator, relative RMSE band, coverage band)
    ("linear-d1e3-p1e-3", 2000, "hybrid", 0.25, 0.75),
    ("series4-d1e4-p1e-5", 3000, "hybrid", 0.35, 0.75),
    ("linear-d1e3-p1e-3", 2000, "subset", 0.8, 0.75),
]


@pytest.mark.parametrize("case, budget, estimator, rmse_max, cover_min", QUICK)
def test_quick_subset_regression_bands(case, budget, estimator, rmse_max, cover_min):
    row = summarize(run_benchmark([case], [estimator], repeats=8, budget=budget))[0]
    assert _bands(row, rmse_max, cover_min), row


def _shrunk(rec, factor):
    """``rec`` with every interval's log half-width and standard error times ``factor``."""
    def one(e):
        p, hi = e["probability"], e["ci95"][1]
        h = factor * math.log(hi / p)
        return dict(e, ci95=[p * math.exp(-h), p * math.exp(h)], std_error=e["std_error"] * factor)
    return dict(rec, events=[one(e) for e in rec["events"]])


def test_the_bands_fail_a_broken_estimator():
    """A biased estimator (x2), and the hybrid's own runs with intervals 100 times too narrow, fail
    the first band; the honest runs pass it."""
    _, budget, _, rmse_max, cover_min = QUICK[0]
    biased = summarize(run_benchmark([CASE], [resolve(f"{HERE}:toy_function", {"scale": 2.0})], repeats=8,
                                     budget=budget))[0]
    assert not _bands(biased, rmse_max, cover_min)
    runs = run_benchmark([CASE], ["hybrid"], repeats=8, budget=budget)
    assert _bands(summarize(runs)[0], rmse_max, cover_min)
    assert not _bands(summarize([_shrunk(r, 0.01) for r in runs])[0], rmse_max, cover_min)
