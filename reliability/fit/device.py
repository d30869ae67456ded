"""From a measurement table to a device model: maximum-likelihood fits of every candidate family,
per level and state-dependent, with chip gain, stuck-at mixture, censoring, drift and read noise,
ranked by how well they reproduce the tails.

Pipeline (each stage reported in the result):

1. chip gain (``chip`` column) from per-chip medians; data divided by each chip's gain;
2. stuck-at fractions by EM (stuck devices ignore the target and do not drift);
3. drift exponent and read-noise amplitude per level from multi-time reads;
4. programming variation at the earliest read time, drift-corrected back to ``t0``: for every
   family, shape from the pooled standardized deviations, then location and scale per level by ML
   (censoring and the stuck mixture inside the likelihood); state dependence either a spline
   through the levels or a polynomial (degree by BIC) fitted by weighted least squares to the
   per-level estimates;
5. goodness of fit and tail check; ranking: candidates whose tail counts pass first, then BIC;
6. the chosen candidate's scale is reduced by the read noise and drift spread already present at
   the earliest read, so that simulating that read time reproduces the measured spread.
"""

from __future__ import annotations

import time as _time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import polars as pl

from reliability.devices.components import EmpiricalVariation, ProgrammingVariation
from reliability.devices.families import FAMILIES, VARIATION_FAMILIES, get_family
from reliability.devices.model import DeviceModel
from reliability.devices.state import Polynomial, Spline
from reliability.errors import ReliabilityError, option
from reliability.fit.effects import (
    ChipGainFit, DriftFit, StuckFit, as_frame, estimate_chip_gains, estimate_drift, estimate_stuck, stuck_loglik,
    table_rows,
)
from reliability.fit.gof import GoodnessOfFit, goodness_of_fit
from reliability.fit.mle import LevelData, fit_level, fit_shape_pooled, level_loglik

__all__ = ["fit_device", "DeviceFitResult", "CandidateFit"]

EMPIRICAL_PROBS = np.concatenate([[0.0, 0.001, 0.005, 0.01, 0.025], np.arange(0.05, 0.951, 0.05),
                                  [0.975, 0.99, 0.995, 0.999, 1.0]])


@dataclass(frozen=True)
class CandidateFit:
    """One candidate programming-variation model (a family with a state dependence)."""

    family: str
    state: str                       # "levels" (spline through every level) or "poly<d>"
    n_params: int
    loglik: float
    aic: float
    bic: float
    shape: dict
    shape_se: dict
    levels: dict                     # per level: loc, scale and their standard errors
    gof: GoodnessOfFit | None
    programming: Any                 # ProgrammingVariation or EmpiricalVariation (not yet deflated)
    success: bool
    message: str

    @property
    def name(self) -> str:
        return f"{self.family}/{self.state}"

    def row(self) -> dict:
        g = self.gof
        lo, hi = g.tail_ratio if g is not None else (float("nan"), float("nan"))
        return {
            "candidate": self.name, "family": self.family, "state": self.state, "k": self.n_params,
            "loglik": self.loglik, "aic": self.aic, "bic": self.bic,
            "ks": g.ks_statistic if g else float("nan"), "ks_p": g.ks_pvalue if g else float("nan"),
            "ad": g.ad_statistic if g else float("nan"), "ad_p": g.ad_pvalue if g else float("nan"),
            "tail_low_ratio": lo, "tail_high_ratio": hi,
            "tail_low_p": g.tail_low_pvalue if g else float("nan"), "tail_high_p": g.tail_high_pvalue if g else float("nan"),
            "tails_ok": bool(g.tails_ok) if g else False, "success": self.success, "message": self.message,
        }


@dataclass(frozen=True)
class DeviceFitResult:
    """Result of :func:`fit_device` (frozen; numbers, uncertainties, diagnostics)."""

    model: DeviceModel | None
    candidates: tuple[CandidateFit, ...]
    chosen: str
    chip_gain: ChipGainFit
    stuck: StuckFit
    drift: DriftFit
    n_rows: int
    n_levels: int
    times_s: tuple[float, ...]
    seconds: float
    success: bool
    message: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_polars(self) -> pl.DataFrame:
        """The ranked candidate table (one row per candidate, best first)."""
        return pl.DataFrame([c.row() for c in self.candidates])

    def levels_table(self) -> pl.DataFrame:
        """Per-level estimates of the chosen candidate with standard errors."""
        cand = next(c for c in self.candidates if c.name == self.chosen)
        return pl.DataFrame({k: v for k, v in cand.levels.items()})

    def qq_table(self, candidate: str | None = None) -> pl.DataFrame:
        """QQ data of a candidate (default: the chosen one), long format: one row per level and
        probability, with the empirical and the model quantile (uS) at the earliest read time."""
        name = candidate or self.chosen
        try:
            cand = next(c for c in self.candidates if c.name == name)
        except StopIteration:
            raise ReliabilityError(f"no candidate {name!r}; candidates are {[c.name for c in self.candidates]}.") from None
        rows = []
        for level, d in (cand.gof.qq.items() if cand.gof is not None else []):
            for p, e, m in zip(d["probs"], d["empirical"], d["model"]):
                rows.append({"target_uS": level, "prob": p, "empirical_uS": e, "model_uS": m})
        return pl.DataFrame(rows, schema={"target_uS": pl.Float64, "prob": pl.Float64, "empirical_uS": pl.Float64,
                                          "model_uS": pl.Float64})

    def drift_table(self) -> pl.DataFrame:
        return pl.DataFrame(self.drift.table) if self.drift.table else pl.DataFrame()

    def summary(self) -> str:
        lines = [f"fit of {self.n_rows} rows, {self.n_levels} levels, read times {list(self.times_s)} s "
                 f"in {self.seconds:.1f} s: {'success' if self.success else 'FAILED'}; chosen {self.chosen}"]
        lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)


def fit_device(
    data,
    *,
    family: str | Sequence[str] = "auto",
    state: str = "auto",
    censor: tuple[float | None, float | None] | None = None,
    stuck: str | bool = "auto",
    chip_gain: bool = True,
    t0_s: float = 20.0,
    t_read_s: float = 250e-9,
    name: str = "fitted",
    drop_outliers: bool = False,
    time_origin: str = "programming",
) -> DeviceFitResult:
    """Fit a device model to measurements by maximum likelihood.

    Parameters
    ----------
    data : MeasurementTable, polars.DataFrame or path
        Long-format measurements (see :mod:`reliability.data`).
    family : "auto", a family name or a list of names
        The programming-variation family (:data:`~reliability.devices.families.VARIATION_FAMILIES`),
        or the candidates to rank: "auto" fits every parametric family and ranks them; the
        empirical lookup table is also fitted and reported but only chosen when asked for by name.
    state : "auto", "levels" or "poly"
        State dependence of location and scale: a spline through every level, a polynomial of the
        target (degree 0..3 by BIC), or both ("auto", then ranked).
    censor : (low, high) in uS, optional
        Measurement range: readings at or below ``low`` (at or above ``high``) are censored.
        Readings of exactly 0 uS are always treated as left-censored at 0.
    stuck : "auto", True or False
        Stuck-at mixture: detect, force, or disable.
    chip_gain : bool
        Estimate chip-to-chip gain from the ``chip`` column when there are two or more chips.
    t0_s, t_read_s : float
        Drift reference time and 1/f read-noise time constant (seconds).
    drop_outliers : bool
        Readings no variation family can explain (more than 100 x the largest target, or 10^4
        robust standard deviations from their level) raise a :class:`DataValidationError` naming
        them; with ``drop_outliers=True`` they are excluded and named in the notes.
    time_origin : "programming" or "t0"
        What the data's ``time_s`` counts from: the end of programming (the toolkit's convention),
        or the drift reference ``t0_s`` (aihwkit's convention; ``t0_s`` is added to every time).
        The fitted model always counts from programming.
    """
    start = _time.perf_counter()
    frame, source = as_frame(data, time_origin, t0_s)
    fam_list = _family_list(family)
    if state not in ("auto", "levels", "poly"):
        raise ReliabilityError(f"state must be 'auto', 'levels' or 'poly'; got {option('state', state)}.")
    rows = table_rows(frame, source, censor, drop_outliers)
    x_raw, T, t, n, chip, device_key = rows.x_raw, rows.T, rows.t, rows.n, rows.chip, rows.device_key
    level, centres, times, tidx, group = rows.level, rows.centres, rows.times, rows.tidx, rows.group
    n_devices, lo, hi, cens, notes = rows.n_devices, rows.lo, rows.hi, rows.cens, rows.notes
    if time_origin == "t0":
        notes.append(f"time_s counted from t0: {t0_s:g} s added to every read time (the model counts from programming)")

    # 1. chip gain
    usable = cens == 0
    if chip_gain:
        cg = estimate_chip_gains(x_raw, T, group, chip, usable)
    else:
        cg = ChipGainFit(None, {}, {}, float("nan"), "chip gain not estimated (disabled)")
    gain_row = np.array([cg.gains.get(c, 1.0) for c in chip]) if cg.gains else np.ones(n)
    x = x_raw / gain_row
    lo_b = np.full(n, lo) / gain_row
    hi_b = (np.full(n, hi) / gain_row) if hi is not None else None
    notes.append(cg.message)

    # 2. stuck-at
    st = estimate_stuck(x, T, group, cens, lo_b, hi_b, device_key, n_devices, mode=stuck)
    bulk = st.bulk_resp >= 0.5
    notes.append(st.message)

    # 3. drift and read noise
    dr = estimate_drift(x, t, level, centres, bulk, cens, device_key, t0_s=t0_s, t_read_s=t_read_s)
    notes.append(dr.message)

    # 4. programming variation at the earliest read, corrected back to t0
    first = t == times[0]
    L1 = dr.drift.log_factor(times[0]) if dr.drift is not None else 0.0
    corr = np.exp(dr.drift.nu_mean(T) * L1) if dr.drift is not None else np.ones(n)
    xf = (x * corr)[first]
    Tf, lvf, cf = T[first], level[first], cens[first]
    lof, hif = (lo_b * corr)[first], (hi_b * corr)[first] if hi_b is not None else None
    atom_tol = 1e-9 * max(1.0, float(np.max(np.abs(x))))
    s_ll = stuck_loglik(st.component, xf, cf, lof, hif, atom_tol)
    log_bulk = float(np.log1p(-(st.component.p_low + st.component.p_high))) if st.component is not None else 0.0
    keep_gof = bulk[first] & (cf == 0)
    n_first = int(xf.size)
    n_stuck_params = 0 if st.component is None else 2 * ((st.component.p_low > 0) + (st.component.p_high > 0))

    candidates: list[CandidateFit] = []
    for fam_name in fam_list:
        if fam_name == "empirical":
            candidates.append(_fit_empirical(xf, Tf, lvf, centres, keep_gof))
            continue
        try:
            candidates.extend(_fit_family(fam_name, xf, Tf, lvf, centres, cf, lof, hif, s_ll, log_bulk, keep_gof,
                                          n_first, n_stuck_params, state))
        except (FloatingPointError, ValueError, np.linalg.LinAlgError) as exc:
            candidates.append(CandidateFit(fam_name, "-", 0, float("nan"), float("nan"), float("nan"), {}, {}, {},
                                           None, None, False, f"fit failed: {exc}"))

    ranked = sorted(candidates, key=_rank_key)
    requested_empirical = fam_list == ["empirical"]
    choose_from = [c for c in ranked if c.success and (c.family != "empirical" or requested_empirical)]
    if not choose_from:
        return DeviceFitResult(None, tuple(ranked), "", cg, st, dr, n, centres.size, tuple(times.tolist()),
                               _time.perf_counter() - start, False,
                               "no candidate family could be fitted; see each candidate's message", tuple(notes))
    best = choose_from[0]
    if best.gof is not None and not best.gof.tails_ok:
        notes.append(f"WARNING: the chosen {best.name} does not reproduce the 0.1 %/99.9 % tail counts "
                     f"(observed/expected {best.gof.tail_ratio[0]:.2f}, {best.gof.tail_ratio[1]:.2f}); "
                     "tail estimates built on it are suspect")

    prog, deflate_note = _deflate(best, dr, xf, Tf, lvf, centres, times[0], keep_gof)
    if deflate_note:
        notes.append(deflate_note)
    g_lo, g_hi = float(np.min(T)), float(np.max(T))
    model = DeviceModel(
        name=name, unit="uS", programming=prog, drift=dr.drift, read_noise=dr.read_noise,
        stuck=st.component, chip_gain=cg.component, g_range=(g_lo, g_hi) if g_hi > g_lo else None, floor=0.0,
        description=f"maximum-likelihood fit ({best.name}) of {n} readings",
        source=f"fitted by nvcim-reliability from {source}",
        metadata=_metadata(best, cg, st, dr, n, times, t0_s),
    )
    ok = bool(best.success and best.gof is not None and best.gof.tails_ok) if best.family != "empirical" else True
    # the verdict travels with the model file, so that `reliability device show` repeats it
    model.metadata["fit"]["success"] = ok
    model.metadata["fit"]["time_origin_of_the_data"] = time_origin
    model.metadata["fit"]["warnings"] = [n for n in notes if n.startswith("WARNING")]
    msg = f"chose {best.name} (BIC {best.bic:.1f})" + ("" if ok else "; tail check failed (see notes)")
    return DeviceFitResult(model, tuple(ranked), best.name, cg, st, dr, n, int(centres.size), tuple(times.tolist()),
                           _time.perf_counter() - start, ok, msg, tuple(notes))


def _family_list(families) -> list[str]:
    if families == "auto":
        return list(VARIATION_FAMILIES)
    if isinstance(families, str):
        families = [families]
    out = []
    for f in families:
        if f != "empirical":
            get_family(f)  # raises with the list of valid names
        out.append(f)
    return out


def _rank_key(c: CandidateFit):
    if not c.success:
        return (2, np.inf)
    if c.family == "empirical":
        return (1, np.inf)
    tails = c.gof.tails_ok if c.gof is not None else False
    return (0 if tails else 1, c.bic)


def _level_data(fam, xf, Tf, lvf, k, cf, lof, hif, s_ll, log_bulk, clean) -> LevelData:
    sel = lvf == k
    x, T, c = xf[sel], Tf[sel], cf[sel]
    if fam.transform == "log":
        with np.errstate(divide="ignore"):
            y = np.log(np.where(c < 0, lof[sel], np.where(c > 0, hif[sel] if hif is not None else x, x)) / T)
            lj = -np.log(np.where(c == 0, x, 1.0))
    else:
        y = np.where(c < 0, lof[sel], np.where(c > 0, hif[sel] if hif is not None else x, x)) - T
        lj = np.zeros(x.size)
    return LevelData(float(np.median(T)), y, c, lj, s_ll[sel], log_bulk, clean[sel])


def _fit_family(fam_name, xf, Tf, lvf, centres, cf, lof, hif, s_ll, log_bulk, keep_gof, n_obs, n_stuck, state):
    fam = FAMILIES[fam_name]
    if fam.transform == "log" and np.any(Tf <= 0):
        return [CandidateFit(fam_name, "-", 0, float("nan"), float("nan"), float("nan"), {}, {}, {}, None, None, False,
                             "lognormal needs positive targets; the data have a level at 0 uS")]
    levels = [_level_data(fam, xf, Tf, lvf, k, cf, lof, hif, s_ll, log_bulk, keep_gof) for k in range(centres.size)]
    shape, shape_se = fit_shape_pooled(fam, levels)
    per = [fit_level(fam, lv, shape) for lv in levels]
    loglik_levels = float(sum(p["loglik"] for p in per))
    shape_d = dict(zip(fam.shape_names, map(float, shape)))
    shape_se_d = dict(zip(fam.shape_names, map(float, shape_se)))
    tg = np.array([lv.target for lv in levels])
    table = {"target_uS": tg.tolist(), "n": [lv.n for lv in levels],
             "loc": [p["loc"] for p in per], "loc_se": [p["loc_se"] for p in per],
             "scale": [p["scale"] for p in per], "scale_se": [p["scale_se"] for p in per]}
    converged = all(p["converged"] for p in per)
    out = []
    log_n = np.log(n_obs)
    n_shape = len(fam.shape_names)
    if state in ("auto", "levels"):
        k = 2 * len(levels) + n_shape + n_stuck
        prog = ProgrammingVariation(fam_name, _spline(tg, table["loc"]), _spline(tg, table["scale"], 0.0), shape_d)
        gof = _gof(prog, xf, Tf, lvf, centres, keep_gof)
        out.append(CandidateFit(fam_name, "levels", k, loglik_levels, 2 * k - 2 * loglik_levels,
                                k * log_n - 2 * loglik_levels, shape_d, shape_se_d, table, gof, prog, converged,
                                "ok" if converged else "some level fits did not converge (Hessian not positive definite)"))
    if state in ("auto", "poly") and len(levels) >= 2:
        best = None
        loc = np.array(table["loc"])
        sc = np.array(table["scale"])
        w_loc = 1 / np.maximum(np.nan_to_num(np.array(table["loc_se"]), nan=np.inf), 1e-12) ** 2
        w_sc = 1 / np.maximum(np.nan_to_num(np.array(table["scale_se"]), nan=np.inf), 1e-12) ** 2
        xs = float(max(np.max(np.abs(tg)), 1e-12))
        for d in range(0, min(3, len(levels) - 2) + 1):
            c_loc = _wls_poly(tg / xs, loc, w_loc, d)
            c_sc = _wls_poly(tg / xs, sc, w_sc, d)
            ploc = Polynomial(tuple(c_loc), xs)
            psc = Polynomial(tuple(c_sc), xs, 0.0)
            if np.any(psc(tg) <= 0):
                continue
            ll = float(sum(np.sum(level_loglik(fam, lv, float(ploc(lv.target)), float(psc(lv.target)), shape))
                           for lv in levels))
            k = 2 * (d + 1) + n_shape + n_stuck
            bic = k * log_n - 2 * ll
            if best is None or bic < best[0]:
                best = (bic, d, ll, k, ploc, psc)
        if best is not None:
            bic, d, ll, k, ploc, psc = best
            prog = ProgrammingVariation(fam_name, ploc, psc, shape_d)
            gof = _gof(prog, xf, Tf, lvf, centres, keep_gof)
            out.append(CandidateFit(fam_name, f"poly{d}", k, ll, 2 * k - 2 * ll, bic, shape_d, shape_se_d, table, gof,
                                    prog, converged and np.isfinite(ll), "ok (weighted least squares over level estimates)"))
    return out


def _wls_poly(x, y, w, d):
    V = np.vander(x, d + 1, increasing=True)
    W = np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(V * W, y * W[:, 0], rcond=None)
    return coef


def _spline(tg, vals, lower=None):
    vals = [float(v) for v in vals]
    if len(tg) == 1:
        return Spline((float(tg[0]),), (vals[0],), lower)
    return Spline(tuple(map(float, tg)), tuple(vals), lower)


def _gof(prog, xf, Tf, lvf, centres, keep):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if prog.family == "lognormal":
            keep = keep & (xf > 0)
        return goodness_of_fit(prog.cdf, prog.ppf, xf, Tf, lvf, centres, keep)


def _fit_empirical(xf, Tf, lvf, centres, keep):
    qs = []
    tg = []
    for k in range(centres.size):
        sel = (lvf == k) & keep
        if np.sum(sel) < 10:
            continue
        qs.append(np.quantile(xf[sel] - Tf[sel], EMPIRICAL_PROBS))
        tg.append(float(np.median(Tf[sel])))
    if not qs:
        return CandidateFit("empirical", "levels", 0, float("nan"), float("nan"), float("nan"), {}, {}, {}, None, None,
                            False, "no level has 10 usable readings")
    emp = EmpiricalVariation(tuple(tg), tuple(EMPIRICAL_PROBS), tuple(map(tuple, qs)))
    gof = _gof(emp, xf, Tf, lvf, centres, keep)
    k = len(tg) * EMPIRICAL_PROBS.size
    return CandidateFit("empirical", "levels", k, float("nan"), float("nan"), float("nan"), {}, {},
                        {"target_uS": tg}, gof, emp, True,
                        "lookup table: no likelihood (not ranked by BIC); tails bounded by the data")


def _deflate(best: CandidateFit, dr: DriftFit, xf, Tf, lvf, centres, t_first, keep):
    """Remove the read noise and drift spread present at the earliest read from the programming scale."""
    prog = best.programming
    if dr.drift is None and dr.read_noise is None:
        return prog, ""
    L1 = dr.drift.log_factor(t_first) if dr.drift is not None else 0.0
    R1 = dr.read_noise.time_factor(t_first) if dr.read_noise is not None else 0.0

    def extra_rel(T):
        e = np.zeros(np.shape(T))
        if dr.drift is not None:
            e = e + (dr.drift.nu_std(T) * L1) ** 2
        if dr.read_noise is not None:
            e = e + dr.read_noise.q(T) ** 2 * R1
        return e

    floored = []
    if isinstance(prog, EmpiricalVariation):
        q = np.asarray(prog.quantiles)
        new = []
        for tk, row in zip(prog.levels, q):
            med = np.interp(0.5, prog.probs, row)
            var = prog.std(tk) ** 2
            extra = extra_rel(tk) * tk ** 2
            f = np.sqrt(max(var - extra, 0.05 * var) / var) if var > 0 else 1.0
            if var - extra < 0.05 * var:
                floored.append(tk)
            new.append(tuple(med + f * (row - med)))
        prog = EmpiricalVariation(prog.levels, prog.probs, tuple(new))
    else:
        fam = prog.family_obj
        vz = fam.var(*prog.shape_values())
        vz = vz if np.isfinite(vz) else 3.0
        def newscale(T, s):
            if fam.transform == "log":
                ex = extra_rel(T)
                s2 = s ** 2 - ex
            else:
                # second moment of the programmable devices' readings (stuck devices excluded)
                sel = (lvf == np.argmin(np.abs(centres - T))) & keep
                m2 = float(np.mean(xf[sel] ** 2)) if np.any(sel) else T ** 2
                s2 = s ** 2 - extra_rel(T) * m2 / vz
            if s2 < 0.05 * s ** 2:
                floored.append(float(T))
                s2 = 0.05 * s ** 2
            return float(np.sqrt(s2))
        # shrinking the scale of a skewed family also moves its mean (mean = loc + scale * E[z]);
        # the location is shifted by (old - new) * E[z] so the mean at every level is unchanged
        mz = fam.mean(*prog.shape_values()) if fam.transform != "log" else 0.0
        sc, lc = prog.scale, prog.loc
        if isinstance(sc, Spline):
            vals = [newscale(k, v) for k, v in zip(sc.knots, sc.values)]
            new_scale = Spline(sc.knots, tuple(vals), sc.lower)
            locs = [float(lc(k)) + (old - new) * mz for k, old, new in zip(sc.knots, sc.values, vals)]
            new_loc = Spline(sc.knots, tuple(locs), None) if len(sc.knots) > 1 else lc
        else:
            tg = np.asarray(centres, dtype=float)
            old_vals = np.array([float(sc(k)) for k in tg])
            vals = np.array([newscale(k, v) for k, v in zip(tg, old_vals)])
            d = len(sc.coefficients) - 1
            se = np.asarray(best.levels.get("scale_se", np.ones_like(vals)), dtype=float)
            w = 1 / np.maximum(np.nan_to_num(se, nan=np.inf), 1e-12) ** 2
            new_scale = Polynomial(tuple(_wls_poly(tg / sc.x_scale, vals, w, d)), sc.x_scale, 0.0)
            if mz != 0.0 and isinstance(lc, Polynomial):
                locs = lc(tg) + (old_vals - vals) * mz
                new_loc = Polynomial(tuple(_wls_poly(tg / lc.x_scale, locs, w, len(lc.coefficients) - 1)), lc.x_scale)
            else:
                new_loc = lc
        prog = ProgrammingVariation(prog.family, new_loc, new_scale, prog.shape)
    note = (f"programming scale reduced by the read noise and drift spread already present at the first read "
            f"(t = {t_first:g} s)")
    if floored:
        note += (f"; at targets {sorted(set(round(f, 4) for f in floored))} the read noise estimate exceeded the "
                 "measured variance and the scale was held at sqrt(5 %) of its measured value")
    return prog, note


def _metadata(best, cg, st, dr, n, times, t0_s):
    return {
        "fit": {"method": "maximum likelihood (nvcim-reliability.fit)", "candidate": best.name, "n_rows": n,
                "read_times_s": list(map(float, times)), "t0_s": t0_s, "loglik": best.loglik, "bic": best.bic,
                "shape": best.shape, "shape_se": best.shape_se, "levels": best.levels},
        "chip_gain": {"gains": {str(k): v for k, v in cg.gains.items()}, "sigma_se": cg.sigma_se},
        "stuck": {"se": st.se, "n_devices": st.n_devices},
        "drift": {"method": dr.method, "levels": dr.table},
    }
