"""The report's numbers: one JSON document (``report.json``) assembled from the results it shows.

Every input is a result object of the toolkit or its JSON form (what ``reliability fit --out``,
``tail --json``, ``worstcase --json``, ``rank --json`` and ``simulate --out`` write), so a page is
redrawn from earlier runs without repeating them.  The document keeps each result's own JSON form
unchanged under its section (``device``, ``tail``, ``worst_case``, ``ranking``) and adds what the
page derives from them (the one-line verdict, the accuracy histogram), so every number on the page
is in the document.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from reliability._json import jsonable
from reliability.errors import DataValidationError, ReliabilityError

__all__ = ["SCHEMA", "SCHEMA_VERSION", "assemble", "load_result", "verdict"]

SCHEMA = "nvcim-reliability/report"
SCHEMA_VERSION = 1


def _as_dict(obj, what: str) -> dict | None:
    if obj is None:
        return None
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    if isinstance(obj, Mapping):
        return jsonable(dict(obj))
    raise ReliabilityError(f"{what}={type(obj).__name__}: give the toolkit's result object or its JSON form.")


def _device_section(device, fit) -> dict | None:
    """The device model: its JSON form, description and parameter tables (from the fit's metadata)."""
    from reliability.devices import DeviceModel

    if device is None and fit is not None:
        device = getattr(fit, "model", None)
    if device is None:
        return None
    # a DeviceModel, a Bayesian fit's PosteriorDeviceModel (both describe themselves), or a JSON form
    model = device if hasattr(device, "describe") else DeviceModel.from_dict(_as_dict(device, "device"))
    meta = model.metadata.get("fit", {}) if isinstance(model.metadata, dict) else {}
    shape = [{"parameter": k, "value": v, "std_error": (meta.get("shape_se") or {}).get(k)}
             for k, v in (meta.get("shape") or {}).items()]
    levels = meta.get("levels") or {}
    out = {"name": model.name, "unit": model.unit, "description": model.describe(), "model": model.to_dict(),
           "family": meta.get("candidate"), "fit_method": meta.get("method"), "fit_success": meta.get("success"),
           "shape": shape, "levels": levels, "candidates": None, "chosen": None, "fit_summary": None,
           "posterior": None}
    if fit is not None and hasattr(fit, "candidates"):
        out["candidates"] = [jsonable(c.row()) for c in fit.candidates]
        out["chosen"] = fit.chosen
        out["fit_summary"] = fit.summary()
    elif fit is not None and hasattr(fit, "posterior_summary"):
        # a Bayesian fit: the population parameters' posterior (mean, sd, 5/50/95 % quantiles, R-hat, ESS)
        out["fit_summary"] = str(fit.summary())
        out["posterior"] = jsonable(fit.to_polars().to_dicts())
        out["fit_success"] = bool(fit.success)
    return out


def _simulation_section(simulation, bins: int | None = None) -> dict | None:
    """Chip accuracies: from a SimulationResult, a ``simulate --out`` parquet/CSV file's table, or a
    mapping with ``accuracy`` and ``n_samples``; kept as counts per number of correct samples."""
    if simulation is None:
        return None
    if hasattr(simulation, "n_correct"):
        n_correct = np.asarray(simulation.n_correct, dtype=np.int64)
        n = int(simulation.n_samples)
        seed, seconds = int(simulation.seed), float(simulation.seconds)
    elif isinstance(simulation, Mapping) and "n_correct" in simulation and "n_samples" in simulation:
        n_correct = np.asarray(simulation["n_correct"], dtype=np.int64)
        n = int(simulation["n_samples"])
        seed, seconds = simulation.get("seed"), simulation.get("seconds")
    else:
        raise ReliabilityError("simulation: give a SimulationResult, or a mapping with 'n_correct' (per chip) and "
                               "'n_samples' (load_result reads `reliability simulate --out` files).")
    if n_correct.size == 0:
        raise DataValidationError("simulation: no chips (an interrupted run with nothing finished?).")
    if n_correct.min() < 0 or n_correct.max() > n:
        raise DataValidationError(f"simulation: n_correct outside 0..{n} (the number of evaluation samples).")
    counts = np.bincount(n_correct, minlength=n + 1)
    acc = n_correct / n
    return {"chips": int(n_correct.size), "n_samples": n, "seed": seed, "seconds": seconds,
            "count_histogram": counts.tolist(), "mean_accuracy": float(acc.mean()),
            "std_accuracy": float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
            "min_accuracy": float(acc.min()), "median_accuracy": float(np.median(acc))}


def verdict(doc: dict) -> dict:
    """The one-line answer: the accuracy of the rarest chips the tail run asked about (the smallest
    quantile), with its interval, or the deepest probability estimate; else the simulated spread."""
    tail = doc.get("tail")
    if tail and tail.get("quantiles"):
        q = min(tail["quantiles"], key=lambda q: q["k"])
        one_in = 1.0 / q["k"]
        text = (f"worst 1 in {one_in:,.0f} chips: {100 * q['accuracy']:.1f} % accuracy "
                f"[{100 * q['ci95'][0]:.1f}, {100 * q['ci95'][1]:.1f}] (95 % interval)")
        return {"text": text + ("" if q["reliable"] else f"; UNRELIABLE: {q['reason']}"), "kind": "quantile",
                "k": q["k"], "accuracy": q["accuracy"], "ci95": q["ci95"], "reliable": q["reliable"]}
    if tail and tail.get("estimates"):
        e = min(tail["estimates"], key=lambda e: e["below"])
        text = (f"P(accuracy <= {100 * e['below']:.1f} %) = {e['probability']:.3g} "
                f"[{e['ci95'][0]:.3g}, {e['ci95'][1]:.3g}] (95 % interval)")
        return {"text": text + ("" if e["reliable"] else f"; UNRELIABLE: {e['reason']}"), "kind": "probability",
                "below": e["below"], "probability": e["probability"], "ci95": e["ci95"], "reliable": e["reliable"]}
    sim = doc.get("simulation")
    if sim:
        return {"text": f"{sim['chips']:,} simulated chips: mean accuracy {100 * sim['mean_accuracy']:.1f} %, "
                        f"worst {100 * sim['min_accuracy']:.1f} % (no tail estimate in this report)",
                "kind": "simulation", "reliable": True}
    raise ReliabilityError("a report needs a tail estimate or a simulation to say how good the chips are.")


def assemble(*, device=None, fit=None, simulation=None, tail=None, worst_case=None, ranking=None,
             provenance: dict | None = None, title: str = "Reliability report") -> dict:
    """The report's JSON document (module docstring); at least ``tail`` or ``simulation``."""
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "title": str(title),
           "device": _device_section(device, fit), "simulation": _simulation_section(simulation),
           "tail": _as_dict(tail, "tail"), "worst_case": _as_dict(worst_case, "worst_case"),
           "ranking": _as_dict(ranking, "ranking"), "provenance": jsonable(provenance or {})}
    if doc["tail"] is not None and doc["simulation"] is not None:
        if doc["tail"].get("n_samples") not in (None, doc["simulation"]["n_samples"]):
            raise DataValidationError(f"the tail result counts {doc['tail']['n_samples']} evaluation samples but the "
                                      f"simulation {doc['simulation']['n_samples']}: they come from different "
                                      f"evaluation sets; give results of one design.")
    doc["verdict"] = verdict(doc)
    return doc


# ------------------------------------------------------------------ results from files

def load_result(path) -> tuple[str, object]:
    """``(kind, result)`` of a file an earlier command wrote: a device model JSON (``fit --out``,
    ``device``), a tail result (``tail --json``), a worst case (``worstcase --json``), a ranking
    (``rank --json``), per-chip accuracies (``simulate --out``, parquet or CSV, with ``n_correct``
    and ``accuracy``) or a whole report (its ``report.json``, kind ``"report"``).  The kind is told
    from the file's keys; a file of none of these kinds raises a
    :class:`~reliability.errors.DataValidationError` that names them."""
    import json

    path = Path(path)
    if not path.is_file():
        raise ReliabilityError(f"{path}: no such file.")
    if path.suffix.lower() in (".parquet", ".csv"):
        import polars as pl

        df = pl.read_parquet(path) if path.suffix.lower() == ".parquet" else pl.read_csv(path)
        if not {"n_correct", "accuracy"} <= set(df.columns):
            raise DataValidationError(f"{path}: per-chip results need the columns n_correct and accuracy (as "
                                      f"`reliability simulate --out` writes them); it has {df.columns}.")
        nc = df["n_correct"].to_numpy()
        acc = df["accuracy"].to_numpy()
        pos = acc > 0
        if not pos.any():
            raise DataValidationError(f"{path}: every chip has accuracy 0; the number of samples cannot be read.")
        n = int(round(float(np.median(nc[pos] / acc[pos]))))
        return "simulation", {"n_correct": nc, "n_samples": n}
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"{path}: not a JSON file ({exc}).") from None
    if not isinstance(d, dict):
        raise DataValidationError(f"{path}: not a result (a JSON object is expected).")
    if d.get("schema") == "nvcim-reliability/device-model":
        return "device", d
    if d.get("schema") == SCHEMA:
        return "report", d
    if {"estimates", "quantiles", "evaluations"} <= set(d):
        return "tail", d
    if {"bounds", "minimal_bound", "sensitivity"} <= set(d):
        return "worst_case", d
    if {"metric", "baseline", "mitigations", "pareto_front"} <= set(d):
        return "ranking", d
    raise DataValidationError(f"{path}: not a result a report can show; give files written by `reliability fit "
                              f"--out` (device), `tail --json`, `worstcase --json`, `rank --json` or `simulate --out`.")
