"""Data preparation for the Bayesian fit: the MLE path's preprocessing (levels, chip gains,
stuck-at components, drift; :mod:`reliability.fit.effects`) turned into the sufficient statistics
the model's likelihood needs (per chip and level, per drift level), and the moment estimates and
standard errors that set the sampler's standardized coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import special

from reliability.devices.components import Drift, ReadNoise
from reliability.errors import ReliabilityError
from reliability.fit.effects import (
    ChipGainFit, contrast_matrix, estimate_chip_gains, estimate_drift, estimate_stuck, median_mad, table_rows,
)


_LOG_2PI = math.log(2 * math.pi)


def _normal_lp(x, mu, sd):
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * _LOG_2PI


@dataclass
class _Data:
    """What a fit keeps of its data (saved beside the trace): rows, their indices, the design."""

    family: str
    source: str
    x: np.ndarray            # raw conductance (uS)
    target: np.ndarray       # target (uS)
    tidx: np.ndarray         # read-time index per row
    chip: np.ndarray         # chip index per row
    level: np.ndarray        # level index per row
    cens: np.ndarray         # -1 left-censored, +1 right-censored, 0 observed
    bulk_resp: np.ndarray    # EM probability that the row's device is programmable
    tbar: np.ndarray         # level target (mean target of the level's first-read rows), uS
    chips: np.ndarray        # chip ids (str)
    times: np.ndarray        # read times, s
    knots: np.ndarray        # drift levels' targets (empty without drift)
    lo: float
    hi: float                # nan: no upper censoring
    stuck: np.ndarray        # [p_low, p_high, g_low, g_high, spread_low, spread_high] EM estimates (nan: none)
    t0_s: float
    t_read_s: float

    def to_npz(self, path) -> None:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["family"] = np.array(self.family)
        d["source"] = np.array(self.source)
        d["chips"] = np.asarray(self.chips).astype(str)
        np.savez_compressed(path, **{k: np.asarray(v) for k, v in d.items()})

    @classmethod
    def from_npz(cls, path) -> "_Data":
        z = np.load(path, allow_pickle=False)
        kw = {}
        for f in fields(cls):
            v = z[f.name]
            if f.name in ("family", "source"):
                v = str(v)
            elif f.name in ("lo", "hi", "t0_s", "t_read_s"):
                v = float(v)
            kw[f.name] = v
        return cls(**kw)

    @property
    def first(self) -> np.ndarray:
        return self.tidx == 0

    def aligned(self) -> np.ndarray:
        """Readings moved to their level's target: ``x - (target - tbar[level])`` (exact for distinct
        levels; for binned targets the chip gain times the in-bin offset is neglected)."""
        return self.x - (self.target - self.tbar[self.level])



@dataclass
class _Prep:
    data: _Data
    notes: list
    groups: dict            # first-read sufficient statistics per (chip, level)
    rows: dict              # first-read observed rows (student_t)
    init: dict              # estimates and standard errors for the standardized coordinates
    stuck_counts: dict      # name -> (k, n, EM estimate)
    drift: dict | None      # drift statistics
    L: np.ndarray
    R: np.ndarray
    wafer_of_chip: np.ndarray | None
    n_wafers: int
    cg: ChipGainFit


def _prepare(frame, source, *, family, censor, stuck, chip_gain, chip_groups, t0_s, t_read_s,
             drop_outliers=False) -> _Prep:
    rows = table_rows(frame, source, censor, drop_outliers)
    x_raw, T, t, n, chip, device_key = rows.x_raw, rows.T, rows.t, rows.n, rows.chip, rows.device_key
    level, centres, times, tidx, group = rows.level, rows.centres, rows.times, rows.tidx, rows.group
    n_devices, lo, hi, cens, notes = rows.n_devices, rows.lo, rows.hi, rows.cens, rows.notes
    K = centres.size

    chips, chip_idx = np.unique(chip, return_inverse=True)
    usable = cens == 0
    cg = ChipGainFit(None, {}, {}, float("nan"), "chip gain not estimated (disabled)")
    if chip_gain and chips.size >= 2:
        cg = estimate_chip_gains(x_raw, T, group, chip, usable)
        if cg.component is None:
            notes.append(cg.message + "; chip gain left out of the Bayesian model")
    elif chip_gain:
        cg = ChipGainFit(None, {}, {}, float("nan"), "one chip in the data: chip-to-chip gain not estimated")
        notes.append(cg.message)
    use_chips = cg.component is not None
    gain_row = np.array([cg.gains.get(c, 1.0) for c in chips])[chip_idx] if use_chips else np.ones(n)
    x = x_raw / gain_row
    lo_b = np.full(n, lo) / gain_row
    hi_b = (np.full(n, hi) / gain_row) if hi is not None else None
    if family == "lognormal":
        raise ReliabilityError("family 'lognormal' is not available in the Bayesian fit; use 'normal' or 'student_t'.")

    st = estimate_stuck(x, T, group, cens, lo_b, hi_b, device_key, n_devices, mode=stuck)
    bulk = st.bulk_resp >= 0.5
    notes.append(st.message)
    dr = estimate_drift(x, t, level, centres, bulk, cens, device_key, t0_s=t0_s, t_read_s=t_read_s)
    notes.append(dr.message)

    first = tidx == 0
    tbar = np.array([T[first & (level == k)].mean() if np.any(first & (level == k)) else np.nan for k in range(K)])
    if np.any(~np.isfinite(tbar)):
        missing = centres[~np.isfinite(tbar)]
        raise ReliabilityError(f"{source}: levels {missing.tolist()} uS have no reading at the first read time "
                               f"{times[0]:g} s; the Bayesian fit needs every level read at the first time.")

    # ---- drift statistics
    Lf = Drift(t0_s=t0_s).log_factor(times)
    Rf = ReadNoise(t_read_s=t_read_s).time_factor(times)
    drift = None
    if dr.drift is not None and dr.table:
        drift = _drift_stats(x_raw, level, tidx, times, Lf, Rf, bulk, cens, device_key, centres, dr.table)
        if drift is None:
            notes.append("drift: no level had enough complete devices for the Bayesian drift block; drift left out")
    knots = tbar[drift["levels"]] if drift is not None else np.zeros(0)
    if knots.size and np.any(np.diff(knots) <= 0):
        raise ReliabilityError("internal: drift level targets are not increasing")

    # ---- stuck-at counts (first read, informative levels only)
    stuck_arr = np.full(6, np.nan)
    stuck_counts: dict[str, tuple[float, float, float]] = {}
    if st.component is not None:
        s = st.component
        stuck_arr = np.array([s.p_low, s.p_high, s.g_low, s.g_high, s.spread_low, s.spread_high])
        r_st = 1.0 - st.bulk_resp
        near_low = np.abs(x - s.g_low) <= np.abs(x - s.g_high)
        for name, p_em, g_st, sp, is_comp in (("p_low", s.p_low, s.g_low, s.spread_low, near_low),
                                              ("p_high", s.p_high, s.g_high, s.spread_high, ~near_low)):
            if p_em <= 0:
                continue
            inf_rows = np.zeros(n, dtype=bool)
            for k in range(K):
                sel = first & (level == k)
                b = sel & bulk & (cens == 0)
                if np.sum(b) < 3:
                    continue
                med, mad = median_mad(x[b])
                if abs(med - g_st) > 6.0 * max(mad, 1e-9) + 3 * sp:
                    inf_rows |= sel
            n_inf = float(np.sum(inf_rows))
            k_inf = float(np.sum(r_st[inf_rows & is_comp]))
            if n_inf < 1:
                notes.append(f"stuck-at: no level separates the {name[2:]} component from the bulk; its fraction "
                             f"is kept at the EM estimate {p_em:.3g}")
                continue
            stuck_counts[name] = (k_inf, n_inf, p_em)
        if stuck_counts:
            notes.append("stuck-at fractions: " + ", ".join(
                f"{k}: {v[0]:.1f} of {v[1]:.0f} first-read devices on informative levels" for k, v in stuck_counts.items()))

    data = _Data(family=family, source=source, x=x_raw, target=T, tidx=tidx.astype(np.int64),
                 chip=chip_idx.astype(np.int64), level=level.astype(np.int64), cens=cens, bulk_resp=st.bulk_resp,
                 tbar=tbar, chips=chips.astype(str), times=times, knots=knots, lo=lo,
                 hi=float("nan") if hi is None else hi, stuck=stuck_arr, t0_s=float(t0_s), t_read_s=float(t_read_s))

    # ---- first-read sufficient statistics per (chip, level), bulk devices only
    C = chips.size if use_chips else 1
    cidx = chip_idx if use_chips else np.zeros(n, dtype=int)
    xa = data.aligned()
    sel_first = first & bulk
    gi = cidx * K + level
    obs = sel_first & (cens == 0)
    n_obs = np.bincount(gi[obs], minlength=C * K).astype(float)
    s1 = np.bincount(gi[obs], weights=xa[obs], minlength=C * K)
    mean = np.divide(s1, n_obs, out=np.zeros_like(s1), where=n_obs > 0)
    ss = np.bincount(gi[obs], weights=(xa[obs] - mean[gi[obs]]) ** 2, minlength=C * K)
    n_left = np.bincount(gi[sel_first & (cens < 0)], minlength=C * K).astype(float)
    n_right = np.bincount(gi[sel_first & (cens > 0)], minlength=C * K).astype(float)
    present = (n_obs + n_left + n_right) > 0
    gid = np.nonzero(present)[0]
    groups = {"chip": gid // K, "level": gid % K, "n": n_obs[gid], "mean": mean[gid], "ss": ss[gid],
              "n_left": n_left[gid], "n_right": n_right[gid]}
    for k in range(K):
        if n_obs[k::K].sum() < 2:
            raise ReliabilityError(f"{source}: level {tbar[k]:.4g} uS has {int(n_obs[k::K].sum())} uncensored first-read "
                                   "readings of programmable devices; the Bayesian fit needs at least 2 per level.")
    rows = {"x": xa[obs], "chip": cidx[obs], "level": level[obs]}

    # ---- wafer/lot grouping
    wafer_of_chip = None
    n_wafers = 0
    if chip_groups is not None and use_chips:
        missing = [c for c in chips if str(c) not in chip_groups]
        if missing:
            raise ReliabilityError(f"chip_groups has no wafer/lot for chips {missing[:5]}; give every chip id of the data.")
        w_ids, wafer_of_chip = np.unique([str(chip_groups[str(c)]) for c in chips], return_inverse=True)
        n_wafers = int(w_ids.size)
        if n_wafers < 2:
            notes.append("chip_groups: one wafer/lot only; the wafer level is left out")
            wafer_of_chip = None
            n_wafers = 0

    init = _initial_estimates(data, groups, rows, cg if use_chips else None, dr, drift, Lf, Rf, C, K)
    return _Prep(data, notes, groups, rows, init, stuck_counts, drift, Lf, Rf, wafer_of_chip, n_wafers, cg)


def _drift_stats(x, level, tidx, times, L, R, bulk, cens, device_key, centres, table):
    """Sufficient statistics of log conductance for the drift block, for the levels the MLE path
    estimated (same selection: positive target, at most 5 % non-positive readings, >= 10 devices)."""
    nt = times.size
    has_q = nt >= 3
    lv_ids = [int(np.argmin(np.abs(centres - tg))) for tg in table["target"]]
    out_levels, est = [], {k: [] for k in ("nu_mean", "nu_mean_se", "nu_std", "nu_std_se", "q", "q_se")}
    if device_key is not None:
        Kc = contrast_matrix(nt)
        a = L @ Kc
        Dm = Kc.T @ np.diag(R) @ Kc
        st = {"n": [], "cbar": [], "S": []}
        for row, k in enumerate(lv_ids):
            sel = (level == k) & bulk & (cens == 0) & (x > 0)
            keys = device_key[sel]
            uk, inv = np.unique(keys, return_inverse=True)
            Y = np.full((uk.size, nt), np.nan)
            Y[inv, tidx[sel]] = np.log(x[sel])
            Y = Y[np.all(np.isfinite(Y), axis=1)]
            if Y.shape[0] < 10:
                continue
            Cm = Y @ Kc
            cbar = Cm.mean(axis=0)
            d = Cm - cbar
            st["n"].append(float(Y.shape[0]))
            st["cbar"].append(cbar)
            st["S"].append(d.T @ d)
            out_levels.append(k)
            for key in est:
                est[key].append(float(table[key][row]))
        if not out_levels:
            return None
        n_ = np.array(st["n"])
        cbar = np.array(st["cbar"])
        S = np.array(st["S"])
        res = {"ids": True, "levels": np.array(out_levels), "n": n_, "has_q": has_q, "m": nt - 1}
        if has_q:
            Dinv = np.linalg.inv(Dm)
            w = Dinv @ a
            res.update(gamma=float(a @ w), logdetD=float(np.linalg.slogdet(Dm)[1]),
                       tS=np.einsum("ij,kji->k", Dinv, S), wSw=np.einsum("i,kij,j->k", w, S, w),
                       cDc=np.einsum("ki,ij,kj->k", cbar, Dinv, cbar), wc=cbar @ w)
        else:
            res.update(a=float(a[0]), S1=S[:, 0, 0], cbar1=cbar[:, 0])
    else:
        st = {"n": [], "ybar": [], "v": []}
        for row, k in enumerate(lv_ids):
            ns, ys, vs = [], [], []
            for i in range(nt):
                sel = (level == k) & (tidx == i) & bulk & (cens == 0) & (x > 0)
                y = np.log(x[sel])
                ns.append(float(y.size))
                ys.append(float(y.mean()) if y.size else 0.0)
                vs.append(float(y.var(ddof=1)) if y.size > 1 else 0.0)
            if min(ns) < 10:
                continue
            st["n"].append(ns)
            st["ybar"].append(ys)
            st["v"].append(vs)
            out_levels.append(k)
            for key in est:
                est[key].append(float(table[key][row]))
        if not out_levels:
            return None
        # without device ids the split of the variance growth between drift spread and read noise is
        # not identified well enough to sample (a ridge down to q = 0): the growth is the drift spread's
        res = {"ids": False, "levels": np.array(out_levels), "n": np.array(st["n"]), "ybar": np.array(st["ybar"]),
               "v": np.array(st["v"]), "has_q": False}
    res["est"] = {k: np.array(v, dtype=float) for k, v in est.items()}
    return res


def _tobit(y, n_left, lo, n_right, hi, m0, s0):
    """Censored-normal ML estimate ``(mean, se, sd, se of log sd)`` (None when it fails)."""
    from scipy import optimize

    def nll(th):
        m, ls = th
        sd = math.exp(ls)
        out = -np.sum(_normal_lp(y, m, sd))
        if n_left:
            out -= n_left * special.log_ndtr((lo - m) / sd)
        if n_right and np.isfinite(hi):
            out -= n_right * special.log_ndtr((m - hi) / sd)
        return out

    res = optimize.minimize(nll, np.array([m0, math.log(max(s0, 1e-12))]), method="Nelder-Mead",
                            options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    if not res.success:
        return None
    m, ls = res.x
    h = np.array([max(abs(m) * 1e-4, 1e-6 * math.exp(ls)), 1e-4])
    H = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h[i], np.eye(2)[j] * h[j]
            H[i, j] = (nll(res.x + ei + ej) - nll(res.x + ei - ej) - nll(res.x - ei + ej) + nll(res.x - ei - ej)) / (4 * h[i] * h[j])
    try:
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.diag(cov) > 0):
        return None
    return float(m), float(math.sqrt(cov[0, 0])), float(math.exp(ls)), float(math.sqrt(cov[1, 1]))


def _initial_estimates(data: _Data, groups, rows, cg, dr, drift, L, R, C, K) -> dict:
    """Moment estimates and rough standard errors: centre and scale of the sampler's coordinates."""
    init: dict[str, Any] = {}
    tbar = data.tbar
    gmax = float(max(np.max(np.abs(tbar)), 1e-9))
    L1, R1 = float(L[0]), float(R[0])
    # drift (per drift level), mapped to block-A levels
    if drift is not None:
        e = drift["est"]
        nu = e["nu_mean"]
        nu_se = np.clip(np.nan_to_num(e["nu_mean_se"], nan=0.01), 1e-5, 0.05)
        nstd = np.maximum(np.abs(e["nu_std"]), 2e-3)
        lns_se = np.clip(np.nan_to_num(e["nu_std_se"], nan=0.0) / nstd, 0.02, 1.0)
        q = np.maximum(np.abs(e["q"]), 2e-3)
        lq_se = np.clip(np.nan_to_num(e["q_se"], nan=0.0) / q, 0.02, 1.0)
        init["drift"] = {"nu": nu, "nu_se": nu_se, "lns": np.log(nstd), "lns_se": lns_se, "lq": np.log(q), "lq_se": lq_se}
        if not drift["ids"]:
            yb, v, nn = drift["ybar"], drift["v"], drift["n"]
            # effective drift spread: least-squares slope of the variance growth on L^2 - L1^2
            dL2 = L ** 2 - L1 ** 2
            a_eff = np.maximum(((v - v[:, :1]) @ dL2) / max(float(dL2 @ dL2), 1e-12), 4e-6)
            nstd = np.sqrt(a_eff)
            v_se = v * np.sqrt(2.0 / np.maximum(nn - 1, 1))
            lns_se = np.clip(0.5 * np.sqrt(v_se[:, 0] ** 2 + v_se[:, -1] ** 2) / (a_eff * max(dL2[-1], 1e-12)), 0.02, 1.0)
            init["drift"].update(lns=np.log(nstd), lns_se=lns_se)
            m0 = yb[:, 0] + nu * L1
            init["drift"].update(m0=m0, m0_se=np.sqrt(v[:, 0] / nn[:, 0]) + 1e-6, lv1=np.log(np.maximum(v[:, 0], 1e-12)),
                                 lv1_se=np.sqrt(2.0 / nn[:, 0]) + 0.01)
        knots = tbar[drift["levels"]]
        map_k = np.array([int(np.argmin(np.abs(knots - tb))) for tb in tbar])
        nuK = nu[map_k]
        e_nu = nstd[map_k] ** 2 * L1 ** 2
        e_q = q[map_k] ** 2 * R1 if drift["has_q"] else np.zeros(K)
        extraK = e_nu + e_q
        # standard error of the extra variance (relative), from those of log nu_std and log q
        extra_se = np.sqrt((2 * e_nu * lns_se[map_k]) ** 2 + ((2 * e_q * lq_se[map_k]) if drift["has_q"] else 0.0) ** 2)
        D1 = np.exp(-nuK * L1)
        init["map_k"] = map_k
    else:
        D1 = np.ones(K)
        extraK = np.zeros(K)
        extra_se = np.zeros(K)
        init["map_k"] = np.zeros(K, dtype=int)
    # chip gains
    chip_g = np.ones(C)
    if cg is not None:
        chip_g = np.array([cg.gains.get(c, 1.0) for c in data.chips])
    g_ch, g_lv, n_g, m_g, ss_g = groups["chip"], groups["level"], groups["n"], groups["mean"], groups["ss"]
    gn = chip_g[g_ch]
    m1 = np.zeros(K)
    v1 = np.zeros(K)
    nk = np.zeros(K)
    for k in range(K):
        s = (g_lv == k) & (n_g > 0)
        w = n_g[s]
        m1[k] = np.sum(w * m_g[s] / gn[s]) / w.sum()
        dof = max(np.sum(np.maximum(w - 1, 0)), 1.0)
        v1[k] = max(np.sum(ss_g[s] / gn[s] ** 2) / dof, 1e-12 * (abs(m1[k]) + 1) ** 2)
        nk[k] = w.sum()
    m1_se = np.sqrt(v1 / nk)
    v1_se = v1 * np.sqrt(2.0 / nk)
    # censored levels: censored-normal (Tobit) estimates, as the moments of the uncensored rows are biased
    n_left = np.bincount(g_lv, weights=groups["n_left"], minlength=K)
    n_right = np.bincount(g_lv, weights=groups["n_right"], minlength=K)
    for k in np.nonzero(n_left + n_right > 0)[0]:
        sel = rows["level"] == k
        y = rows["x"][sel] / chip_g[rows["chip"][sel]]
        hi_b = data.hi / float(np.mean(chip_g)) if np.isfinite(data.hi) else np.inf
        est = _tobit(y, n_left[k], data.lo, n_right[k], hi_b, m1[k], math.sqrt(v1[k]))
        if est is not None:
            m1[k], m1_se[k], sd_k, lsd_se = est
            v1[k] = sd_k ** 2
            v1_se[k] = 2 * v1[k] * lsd_se
            nk[k] += n_left[k] + n_right[k]
    M = m1 / D1
    s2 = np.maximum(v1 - (m1 ** 2 + v1) * extraK, 0.05 * v1)
    s_hat = np.sqrt(s2) / D1
    init["loc"] = M - tbar
    init["loc_se"] = m1_se / D1 + 1e-9 * (gmax + 1)
    init["ls"] = np.log(s_hat)
    # se of log s: the sample variance's and the subtracted drift/read-noise variance's (delta method)
    var_s2 = v1_se ** 2 * (1 - extraK) ** 2 + ((m1 ** 2 + v1) * extra_se) ** 2
    init["ls_se"] = np.clip(0.5 * np.sqrt(var_s2) / s2, 1.0 / np.sqrt(2 * nk), 3.0)
    init["gmax"] = gmax
    init["range"] = float(np.ptp(tbar)) if K > 1 else 0.0
    lo_t, hi_t = float(np.min(tbar)), float(np.max(tbar))
    u = (tbar - 0.5 * (lo_t + hi_t)) / (0.5 * (hi_t - lo_t)) if hi_t > lo_t else np.zeros(K)
    init["u"] = u
    # chips: centred log gains and their standard error
    if cg is not None:
        lg = np.log(chip_g)
        lg -= lg.mean()
        prec = np.zeros(C)
        for c in range(C):
            s = (g_ch == c) & (n_g > 1)
            sd = np.sqrt(np.maximum(ss_g[s] / np.maximum(n_g[s] - 1, 1), 1e-300))
            prec[c] = np.sum(n_g[s] * (m_g[s] / sd) ** 2)
        se_a = float(1.0 / np.sqrt(np.median(prec))) if np.median(prec) > 0 else 0.01
        se_a = float(np.clip(se_a, 1e-5, 0.05))
        Q = contrast_matrix(C)
        init["chip"] = {"u": Q.T @ lg, "se": se_a, "Q": Q, "lsig": math.log(max(float(np.std(lg, ddof=1)), 2 * se_a, 5e-3)),
                        "lsig_se": 1.0 / math.sqrt(2 * max(C - 1, 1))}
    return init


# =====================================================================================================
# the PyMC model
# =====================================================================================================
