"""The entry point :func:`worst_case`: argument validation, the nominal chip, then the curve, the
bisection and the sensitivity ranking (see :mod:`reliability.worstcase` for the method)."""

from __future__ import annotations

import math
import time

import numpy as np

from reliability.cim.latent import SEARCHABLE_BLOCKS, LatentChips, MarginObjective
from reliability.cim.simulate import ChipSimulator
from reliability.errors import ModelSpecError, ReliabilityError
from reliability.streams import as_seed
from reliability.worstcase.results import WorstCaseResult
from reliability.worstcase.search import Searcher, minimal_bound, search_curve
from reliability.worstcase.sensitivity import rank_devices

__all__ = ["DEFAULT_FOCUS", "NORMS", "OPTIMIZERS", "RANGES", "worst_case"]

NORMS = ("linf", "l2")
OPTIMIZERS = ("pgd", "adam")
RANGES = ("model", "clip")
#: per restart (cycled): None for the clipped margin loss, q for the soft count at the q-quantile
#: temperature (see :func:`reliability.worstcase.search.descend`)
DEFAULT_FOCUS = (None, 0.2, 0.05, 0.01)


def worst_case(network, x, y, variation, *, bounds=(3.0,), norm: str = "linf", threshold: float | None = None,
               tolerance: float = 0.05, max_bound: float | None = None, restarts: int = 4, iterations: int = 30,
               step: float = 0.25, optimizer: str = "pgd", kappa: float | None = None,
               focus=DEFAULT_FOCUS, random_chips: int = 100,
               blocks=SEARCHABLE_BLOCKS, conductance_range: str = "model", sensitivity: bool = True,
               path_points: int = 8, top: int = 20, batch_size: int | None = None, rng=0,
               simulator: ChipSimulator | None = None, progress=None) -> WorstCaseResult:
    """Worst-case accuracy of ``network`` on ``(x, y)`` over chips whose devices stay within a bound.

    Parameters
    ----------
    network : reliability.cim.Network
    x, y : arrays
        Evaluation inputs and integer labels.
    variation : ChipSpec, shorthand (``weight-gaussian:sigma=S``...) or chip file
    bounds : float or sequence of float
        Bounds ``k`` in sigma units (>= 0); the curve is reported in increasing order, each bound
        warm-started from the previous one's worst chip and made monotone.
    norm : "linf" or "l2"
        ``max |z_i| <= k`` (every device within +/- k sigma) or ``||z||_2 <= k``.
    threshold : float, optional
        Also bisect for the smallest bound whose worst case reaches ``accuracy <= threshold``.
    tolerance : float
        Bisection stops when the bracket is narrower than this (sigma units).
    max_bound : float, optional
        Largest bound the bisection tries when no curve bound reaches the threshold (default 32
        for linf, ``32 sqrt(dim)`` for l2: the L2 norm of the linf box corner at 32).
    restarts, iterations, step, optimizer
        Chips searched at once, descent steps, initial step as a fraction of ``k``, "pgd" or "adam".
    kappa : float, optional
        Margin-loss confidence (logit units); default 5 % of the median clean absolute margin.
    random_chips : int
        Chips drawn uniformly in the same set as a baseline (0: none).
    blocks : sequence of str
        Latent block kinds searched (default: every continuous one the device model has).
    conductance_range : "model" or "clip"
        "clip": also clamp devices to [g_min, g_max].
    sensitivity : bool
        Compute the layer/device ranking (one batched gradient of ``path_points + 2`` chips).
    top : int
        Devices listed in the sensitivity's ``top``.
    batch_size : int, optional
        Samples per forward/backward pass (default: from the chip's memory budget).
    rng : int or numpy.random.Generator
        Seeds the restarts and the random baseline: an int seed, or a Generator turned into one
        (:func:`reliability.streams.as_seed`); the streams are keyed children of
        ``SeedSequence(seed)`` (no global state), and the result records ``seed``.
    simulator : ChipSimulator, optional
        Reuse an existing simulator of ``network`` and ``variation``.
    progress : callable, optional
        ``progress(done, total)`` after each search (total grows during the bisection).

    Returns
    -------
    WorstCaseResult
    """

    t_start = time.perf_counter()
    bl = _check_args(bounds, norm, threshold, tolerance, restarts, iterations, step, optimizer, kappa,
                     random_chips, conductance_range, max_bound, path_points)
    focus = _check_focus(focus)
    seed = as_seed(rng)
    sim = simulator or ChipSimulator(network, variation)
    if sim.spec.periphery.drift_compensation:
        raise ModelSpecError("the worst-case search does not support periphery.drift_compensation (it rescales each "
                             "chip by a second read of the same chip, outside the latent transform); set "
                             "drift_compensation = false in the [periphery] section of the chip file.")
    bad = sorted(set(blocks) - set(SEARCHABLE_BLOCKS))
    if bad:
        hint = " Stuck-at faults are not bounded variation and are never searched." if "stuck" in bad else ""
        raise ReliabilityError(f"blocks {bad} cannot be searched; choose from {SEARCHABLE_BLOCKS}.{hint}")
    x = np.asarray(x)
    y = np.asarray(y).astype(np.int64)
    if x.shape[0] != y.shape[0] or y.size == 0:
        raise ReliabilityError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; give one label per sample "
                               "(at least one).")
    latent = LatentChips(sim)
    obj = MarginObjective(sim, latent, x, y, 0.0, blocks, conductance_range, batch_size)
    if not obj.block_index:
        present = sorted({k for k, _, _ in latent.blocks})
        raise ReliabilityError(f"nothing to search: the device model has no latent block of kinds {list(blocks)} "
                               f"(it has {present or 'none'}); a variation-free chip has no worst case.")
    n = obj.n
    # the nominal chip (every searched block at 0)
    z0 = obj.zeros(1)
    g0 = obj.conductances(obj.full(z0))
    _, _, mg0 = obj.evaluate(z0)
    if kappa is None:
        am = np.abs(mg0[0])
        am = am[am > 0]
        kappa = 0.05 * float(np.median(am)) if am.size else 0.0
    obj.kappa = float(kappa)

    searcher = Searcher(obj, norm, restarts, iterations, step, optimizer, focus, random_chips, seed, len(bl),
                        progress)
    clean_n = int(searcher.counts(z0)[0])
    clean_acc = clean_n / n
    if max_bound is None:
        max_bound = 32.0 if norm == "linf" else 32.0 * math.sqrt(obj.dim)

    records, warnings, beaten = search_curve(searcher, bl, z0, clean_n, g0, latent.dtype)

    minimal = None
    sens_chip = (records[-1].z, records[-1].bound, "largest bound") if records else None
    if threshold is not None:
        minimal, hi_z = minimal_bound(searcher, records, z0, clean_n, threshold, tolerance, max_bound)
        if hi_z is not None and minimal.bound > 0:
            sens_chip = (tuple(obj.full(hi_z, dtype=latent.dtype)), float(minimal.bound), "minimal breaking bound")
        if not minimal.found:
            warnings.append(minimal.message)

    sens = None
    if sensitivity and sens_chip is not None:
        zfull, kk, label = sens_chip
        zs = [np.asarray(zfull[i], dtype=np.float64) for i in obj.block_index]
        sens = rank_devices(obj, zs, kk, label, path_points, int(top))
    success = not beaten
    return WorstCaseResult(tuple(records), minimal, sens, time.perf_counter() - t_start, norm, optimizer,
                           float(kappa), n, clean_acc, obj.dim, tuple(obj.kinds), int(seed),
                           int(obj.evaluations), success, "; ".join(warnings),
                           {"gradient_evaluations": obj.gradient_evaluations, "searches": searcher.calls,
                            "step": float(step), "conductance_range": conductance_range,
                            "max_bound": float(max_bound)})


# ====================================================================================== validation
def _check_args(bounds, norm, threshold, tolerance, restarts, iterations, step, optimizer, kappa, random_chips,
                conductance_range, max_bound, path_points):
    if norm not in NORMS:
        raise ReliabilityError(f"norm must be one of {NORMS} ('linf': every device within +/- k sigma; 'l2': a "
                               f"total budget ||z||_2 <= k); got {norm!r}.")
    if optimizer not in OPTIMIZERS:
        raise ReliabilityError(f"optimizer must be one of {OPTIMIZERS}; got {optimizer!r}.")
    if conductance_range not in RANGES:
        raise ReliabilityError(f"conductance_range must be one of {RANGES}; got {conductance_range!r}.")
    if isinstance(bounds, (int, float, np.integer, np.floating)):
        bounds = [bounds]
    try:
        bl = [float(b) for b in bounds]
    except (TypeError, ValueError):
        raise ReliabilityError(f"bounds must be numbers (k, in sigma units); got {bounds!r}.") from None
    if not bl and threshold is None:
        raise ReliabilityError("nothing to search: give at least one bound (e.g. bounds=[3]) or a threshold.")
    for b in bl:
        if not math.isfinite(b) or b < 0:
            raise ReliabilityError(f"bound {b!r}: a bound is a deviation size in sigma units and must be a finite "
                                   "number >= 0 (e.g. 3 for every device within +/- 3 sigma).")
    if threshold is not None:
        t = float(threshold)
        if not (0.0 <= t <= 1.0) or not math.isfinite(t):
            raise ReliabilityError(f"threshold {threshold!r}: an accuracy threshold must be in [0, 1] "
                                   "(e.g. 0.1 for a random guess among 10 classes).")
    if not (math.isfinite(float(tolerance)) and float(tolerance) > 0):
        raise ReliabilityError(f"tolerance {tolerance!r}: the bisection tolerance must be a positive number "
                               "of sigma units (e.g. 0.05).")
    if max_bound is not None and not (math.isfinite(float(max_bound)) and float(max_bound) > 0):
        raise ReliabilityError(f"max_bound {max_bound!r}: must be a positive finite number of sigma units.")
    for name, v, lo in (("restarts", restarts, 1), ("iterations", iterations, 1), ("random_chips", random_chips, 0),
                        ("path_points", path_points, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ReliabilityError(f"{name} must be an integer >= {lo}; got {v!r}.")
    if not (math.isfinite(float(step)) and 0 < float(step) <= 2):
        raise ReliabilityError(f"step {step!r}: the initial step, as a fraction of the bound, must be in (0, 2].")
    if kappa is not None and not (math.isfinite(float(kappa)) and float(kappa) >= 0):
        raise ReliabilityError(f"kappa {kappa!r}: the margin-loss confidence must be a finite number >= 0 "
                               "(logit units), or None for the default.")
    return sorted(set(bl))


def _check_focus(focus):
    if focus is None or isinstance(focus, (int, float)):
        focus = (focus,)
    focus = tuple(focus)
    if not focus:
        raise ReliabilityError("focus must hold at least one entry (None for the clipped margin loss, or a "
                               "quantile in (0, 1) for the soft count).")
    for q in focus:
        if q is not None and not (isinstance(q, (int, float)) and 0 < float(q) < 1):
            raise ReliabilityError(f"focus entry {q!r}: use None (clipped margin loss) or a quantile in (0, 1) "
                                   "of the positive margins (soft-count temperature).")
    return tuple(None if q is None else float(q) for q in focus)
