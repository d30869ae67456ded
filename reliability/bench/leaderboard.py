"""The leaderboard: the metrics of every estimator on every case's events, from a results file.

:func:`summarize` groups the records of :mod:`~reliability.bench.runner` by case (and its version),
estimator and budget, and computes :func:`~reliability.bench.metrics.run_metrics` per event over the
finished runs; failed runs count in the failure rate.  :func:`to_markdown` and :func:`to_html`
render the rows (HTML through a Jinja2 template shipped with the package).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from reliability.bench.metrics import run_metrics
from reliability.errors import DataValidationError

__all__ = ["summarize", "budget_for_target", "formatted", "to_markdown", "to_html", "COLUMNS", "COMPACT",
           "TARGET_COLUMNS"]

#: (key, header, format) of the table's columns
COLUMNS = (
    ("case", "case", "{}"),
    ("event", "event", "{}"),
    ("reference", "reference p", "{:.3g}"),
    ("reference_rel_se", "ref. rel. SE", "{:.1%}"),
    ("estimator", "estimator", "{}"),
    ("budget", "budget", "{:,}"),
    ("runs_text", "runs (failed)", "{}"),
    ("relative_bias", "rel. bias", "{:+.1%}"),
    ("relative_rmse", "rel. RMSE", "{:.1%}"),
    ("se_ratio", "SE ratio", "{:.2f}"),
    ("coverage_90", "90 % cover", "{:.0%}"),
    ("coverage_95", "95 % cover", "{:.0%}"),
    ("under_estimation_rate", "under", "{:.0%}"),
    ("flagged_rate", "flagged", "{:.0%}"),
    ("evaluations_for_target", "evals for 10 %", "{:,.0f}"),
    ("gain_over_mc", "gain vs MC", "{:.3g}"),
    ("seconds", "s / run", "{:.1f}"),
)

#: the columns of a compact table (the README's)
COMPACT = ("case", "event", "reference", "estimator", "budget", "runs_text", "relative_bias", "relative_rmse",
           "se_ratio", "coverage_95", "flagged_rate", "gain_over_mc", "seconds")


def summarize(records, target_rel_error: float = 0.1) -> list[dict]:
    """One row per case version, estimator, budget and event, in the order first seen.

    Each row holds the grouping keys, ``event`` (``"acc <= c/n"``), ``count``, ``reference``,
    ``reference_se``, ``reference_rel_se``, ``runs_text``, ``flagged_rate`` (finished runs the
    estimator itself marked unreliable), ``seconds`` (mean per run) and every metric of
    :func:`~reliability.bench.metrics.run_metrics`.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["case"], r["case_version"], r["estimator"], int(r["budget"]))].append(r)
    versions = defaultdict(set)
    for case, version, _, _ in groups:
        versions[case].add(version)
    rows = []
    for (case, version, estimator, budget), recs in groups.items():
        seeds = [r["seed"] for r in recs]
        if len(set(seeds)) != len(seeds):
            raise DataValidationError(f"results for {case} / {estimator} / budget {budget} hold seed(s) "
                                      f"{sorted({s for s in seeds if seeds.count(s) > 1})} more than once; keep one "
                                      f"record per run (files were concatenated twice?).")
        ok = [r for r in recs if r["status"] == "ok"]
        failed = len(recs) - len(ok)
        for j, ev in enumerate(recs[0]["events"]):
            n = recs[0].get("n_samples")
            est = [r["events"][j] for r in ok]
            m = run_metrics([e["probability"] for e in est], [e["std_error"] for e in est], [e["ci95"] for e in est],
                            [r["evaluations"] for r in ok], ev["reference"], ev["reference_se"], failures=failed,
                            target_rel_error=target_rel_error)
            label = case if len(versions[case]) == 1 else f"{case} [{version}]"
            rows.append({"case": label, "case_version": version, "estimator": estimator, "budget": budget,
                         "count": ev["count"],
                         "event": f"acc <= {ev['count']}/{n}" if n else f"n_correct <= {ev['count']}",
                         "reference": ev["reference"], "reference_se": ev["reference_se"],
                         "reference_rel_se": ev["reference_se"] / ev["reference"],
                         "runs_text": f"{len(ok)} ({failed})",
                         "flagged_rate": float(np.mean([not e["reliable"] for e in est])) if est else float("nan"),
                         "seconds": float(np.mean([r["seconds"] for r in recs])), **m})
    return rows


#: the columns of :func:`budget_for_target`'s rows
TARGET_COLUMNS = (
    ("case", "case", "{}"),
    ("event", "event", "{}"),
    ("reference", "reference p", "{:.3g}"),
    ("estimator", "estimator", "{}"),
    ("ladder", "rel. RMSE at each budget", "{}"),
    ("measured", "first budget within target", "{}"),
    ("extrapolated", "extrapolated evals", "{:,.0f}"),
    ("mc_evaluations_for_target", "plain MC evals", "{:,.0f}"),
)


def budget_for_target(rows, target_rel_error: float = 0.1) -> list[dict]:
    """The second mode of the suite: the evaluations an estimator needs for a relative RMSE of
    ``target_rel_error``, per case, estimator and event, from the rows of :func:`summarize` at
    several budgets (``reliability bench run --budget B1 --budget B2 ...``).

    ``measured`` is the smallest budget run whose relative RMSE is within the target, without a
    failed run (``"none of the budgets"`` otherwise); ``extrapolated`` is ``N (RMSE / target)^2`` at
    the largest budget (RMSE ~ 1/sqrt(N)); ``mc_evaluations_for_target`` plain Monte Carlo's, from
    the Bernoulli variance."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["case"], r["estimator"], r["count"])].append(r)
    out = []
    for (_, _, _), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["budget"])
        ok = [r for r in rs if r.get("relative_rmse") is not None and r["failures"] == 0
              and r["relative_rmse"] <= target_rel_error]
        last = rs[-1]
        rmse = last.get("relative_rmse")
        out.append({"case": last["case"], "event": last["event"], "count": last["count"],
                    "reference": last["reference"], "estimator": last["estimator"],
                    "ladder": "; ".join(f"{r['budget']:,}: " + (f"{r['relative_rmse']:.1%}" if r.get("relative_rmse")
                                                                 is not None else "-") for r in rs),
                    "measured": f"{ok[0]['budget']:,}" if ok else "none of the budgets",
                    "extrapolated": (last["mean_evaluations"] * (rmse / target_rel_error) ** 2
                                     if rmse is not None else None),
                    "mc_evaluations_for_target": (1 - last["reference"]) / (target_rel_error ** 2 * last["reference"])})
    return out


def _cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "inf" if v == math.inf else "-"
    return fmt.format(v)


def formatted(rows, columns=None, table=COLUMNS) -> tuple[list[str], list[list[str]]]:
    """``(headers, cells)``: the rows as the table's text (``columns``: keys of ``table``, e.g.
    :data:`COLUMNS` or :data:`TARGET_COLUMNS`, to keep, in its order; default all)."""
    cols = [c for c in table if c[0] in columns] if columns else list(table)
    return [h for _, h, _ in cols], [[_cell(r, k, f) for k, _, f in cols] for r in rows]


def to_markdown(rows, columns=None, table=COLUMNS) -> str:
    """The rows as a Markdown table (``columns``: keys of ``table`` to keep, in its order)."""
    headers, cells = formatted(rows, columns, table)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"


def to_html(rows, columns=None, title: str = "Tail-estimation benchmark", table=COLUMNS) -> str:
    """The rows as a self-contained HTML page (no external resources)."""
    from importlib.resources import files

    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string((files("reliability.bench") / "templates" / "leaderboard.html.j2").read_text())
    headers, cells = formatted(rows, columns, table)
    return template.render(title=title, headers=headers, rows=cells)
