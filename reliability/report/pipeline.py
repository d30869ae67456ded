"""Run what a report needs for one design and build it: fit (when measurements are given),
simulate, tail, worst case, ranking (when mitigations are given).  The Python twin of
``reliability report``."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from reliability.errors import ReliabilityError, option
from reliability.report.page import Report, build

__all__ = ["run_report", "file_digest", "DEFAULT_QUANTILES", "DEFAULT_BOUNDS"]

#: what a report estimates when nothing else is asked
DEFAULT_QUANTILES = (1e-4,)
DEFAULT_BOUNDS = (1.0, 2.0, 3.0)


def file_digest(path) -> str:
    """SHA-256 of a file (inputs are named by their digests in a report's provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_report(network, x, y, variation=None, *, device=None, measurements=None, time_s: float = 0.0,
               mitigations=(), metric: str | None = None, quantiles=DEFAULT_QUANTILES, below=(),
               budget: int = 20000, chips: int = 2000, bounds=DEFAULT_BOUNDS, seed: int = 0,
               inputs: dict | None = None, command: str | None = None, title: str = "Reliability report",
               progress=None) -> Report:
    """Compute every section of a report for ``network`` on ``(x, y)`` and build it.

    Parameters
    ----------
    network, x, y :
        The network and its evaluation set.
    variation : str or ChipSpec, optional
        The chips' variation; or give ``device`` / ``measurements`` instead.
    device : DeviceModel or path, optional
        A device model (e.g. from ``reliability fit``), read at ``time_s`` seconds after programming.
    measurements : MeasurementTable or path, optional
        Measurements to fit first (:func:`reliability.fit.fit_device`); the fitted model is used as
        ``device``.
    time_s : float
        Read time in seconds after programming (of ``device``, the fitted model, or ``variation``
        when its chip specification does not set another).
    mitigations : sequence of str
        Candidates to rank (:func:`reliability.mitigation.rank`); none: no ranking section.
    metric : str, optional
        The ranking's metric (default ``quantile:<smallest quantile>``).
    quantiles, below :
        Tail probabilities ``k`` and accuracy thresholds of the tail estimate.
    budget : int
        Chip evaluations of the tail estimate and of each ranked candidate.
    chips : int
        Chips simulated for the accuracy histogram.
    bounds : sequence of float
        Worst-case bounds in sigma units (empty: no worst-case section).
    seed : int
        Seed of every random stream.
    inputs : dict, optional
        Files that went in (label -> path): their SHA-256 digests go into the provenance.
    command : str, optional
        The command line, for the provenance.
    progress : callable, optional
        ``progress(step, done, total)`` as the steps go (``step`` one of ``fit``, ``simulate``,
        ``tail``, ``worst case``, ``ranking``).
    """
    from reliability import __version__
    from reliability.cim import ChipSimulator, ChipSpec
    from reliability.devices import DeviceModel
    from reliability.sampling import estimate_tail

    given = sum(v is not None for v in (variation, device, measurements))
    if given != 1:
        raise ReliabilityError("give exactly one of variation (a shorthand, preset or chip file), device (a device "
                               f"model) or measurements (to fit one); got {given}.")
    if not quantiles and not below:
        raise ReliabilityError("give at least one tail probability (quantiles) or accuracy threshold (below).")

    def step(name):
        return (lambda done, total: progress(name, done, total)) if progress is not None else None

    t_start = time.perf_counter()
    timing, fit = {}, None
    if measurements is not None:
        from reliability.data import MeasurementTable, read_measurements
        from reliability.fit import fit_device

        t0 = time.perf_counter()
        table = measurements if isinstance(measurements, MeasurementTable) else read_measurements(measurements)
        fit = fit_device(table)
        if fit.model is None:
            raise ReliabilityError(f"the fit produced no model: {fit.message}")
        device = fit.model
        timing["fit_s"] = time.perf_counter() - t0
        if progress is not None:
            progress("fit", 1, 1)
    if device is not None:
        model = device if isinstance(device, DeviceModel) else DeviceModel.load(device)
        variation = ChipSpec(device=model, time_s=float(time_s))
    elif time_s:
        from reliability.cim import parse_variation

        spec = parse_variation(variation)
        if spec.time_s not in (0.0, float(time_s)):
            raise ReliabilityError(f"time_s={time_s:g} but the chip specification reads at {spec.time_s:g} s; give one "
                                   f"read time (drop {option('time_s', time_s)} or change the chip file).")
        variation = spec.with_(time_s=float(time_s))
    x = np.asarray(x)
    y = np.asarray(y)
    sim = ChipSimulator(network, variation)
    t0 = time.perf_counter()
    simulation = sim.evaluate(x, y, int(chips), rng=seed, progress=step("simulate"))
    timing["simulate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tail = estimate_tail(network, x, y, variation, below=below, quantiles=quantiles, budget=budget, rng=seed,
                         simulator=sim, progress=step("tail"))
    timing["tail_s"] = time.perf_counter() - t0
    worst = None
    if bounds:
        from reliability.worstcase import worst_case

        t0 = time.perf_counter()
        worst = worst_case(network, x, y, variation, bounds=tuple(bounds), rng=seed, progress=step("worst case"))
        timing["worst_case_s"] = time.perf_counter() - t0
    ranking = None
    if mitigations:
        from reliability.mitigation import rank

        t0 = time.perf_counter()
        ranking = rank(network, x, y, variation, list(mitigations),
                       metric=metric or (f"quantile:{min(quantiles):g}" if quantiles else f"prob:{min(below):g}"),
                       budget=budget, rng=seed, progress=step("ranking"))
        timing["ranking_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - t_start
    provenance = {
        "toolkit_version": __version__, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seed": int(seed), "tail_budget": int(budget), "simulated_chips": int(chips),
        "variation": variation.to_dict() if hasattr(variation, "to_dict") else str(variation),
        "inputs_sha256": {k: file_digest(v) for k, v in (inputs or {}).items() if v is not None},
        "run_time_s": {k: round(v, 2) for k, v in timing.items()},
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    if fit is None and device is None:
        device = sim.spec.device_model()       # the preset or shorthand's model, described on the page
    return build(device=device if fit is None else None, fit=fit, simulation=simulation, tail=tail,
                 worst_case=worst, ranking=ranking, provenance=provenance, title=title)
