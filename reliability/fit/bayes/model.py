"""The PyMC model of the Bayesian device fit and its priors (:data:`PRIORS`): the maximum-likelihood
model of :mod:`reliability.fit.device` with every parameter given a posterior.  PyMC and PyTensor
are imported only when a model is built.

Model (mirrors the parts of :class:`~reliability.devices.model.DeviceModel`)
---------------------------------------------------------------------------
Levels ``k`` (distinct targets, or 16 quantile bins, as in the MLE path), chips ``c``, read times
``t_i`` (the first is ``t_1``), ``L(t) = log(max(t, t0)/t0)``, ``R(t) = log((t + t_read)/(2 t_read))``.

* **Programming** (family ``normal``, or ``student_t`` with a ``df`` shape): a programmable device
  at level ``k`` has ``g0 = T_k + loc_k + s_k z``.  ``loc_k`` is free per level; with four levels or
  more ``log s_k`` is partially pooled towards a polynomial of degree ``scale_degree`` in the
  standardized target ``u_k`` in [-1, 1] (``log s_k ~ N(b0 + b1 u_k + b2 u_k^2, tau_s)``): the scale
  is a smooth function of the target, and a level departs from the curve only as far as its data
  demand (level by level centred or non-centred, whichever has no funnel).
* **Chip to chip**: log gain ``a_c ~ N(0, sigma_chip)`` multiplies every reading of chip ``c``; with
  ``chip_groups`` (chip -> wafer or lot) ``a_c = w_{wafer(c)} + e_c``, ``w ~ N(0, sigma_wafer)``,
  ``e ~ N(0, sigma_chip)``, and the device model's ``ChipGain.sigma`` is
  ``sqrt(sigma_wafer^2 + sigma_chip^2)`` (a new chip from a new wafer).
* **Drift and read noise** (two or more read times): the drift exponent is hierarchical over
  devices, ``nu_d ~ N(nu_mean_k, nu_std_k)`` for the devices of level ``k`` (integrated out
  analytically), with per-level population parameters ``nu_mean_k``, ``nu_std_k`` and read-noise
  amplitude ``q_k``.  (Pooling these over levels was tried and dropped: every level's drift is
  pinned by hundreds of devices, and for profiles where most levels share one value, as the PCM
  preset's clipped drift, the level-to-level spread has a funnel NUTS cannot cross.)  With device
  ids the likelihood is that of the MLE path: per device, contrasts of log conductance across read
  times are multivariate normal with mean ``-nu_mean * dL`` and covariance
  ``nu_std^2 dL dL' + q^2 dR``.  Without ids: the mean and variance of log conductance per level and
  read time (free level offset and variance at the first read).  Without ids, or with two read
  times, the variance growth cannot be split reliably between drift spread and read noise (without
  ids three read times give three variances for three unknowns per level, and the posterior runs
  along a ridge down to ``q = 0``), so the growth is assigned to the drift spread and the read noise
  present at the first read stays in the programming spread (the MLE path does the same for two
  read times).
* **First read**: readings at ``t_1`` of the programmable devices of chip ``c`` at level ``k`` are
  ``exp(a_c) * (M_k e^{-nu_mean L1} + S z)`` where the spread adds the drift spread and read noise
  present at ``t_1`` to the programming spread (so ``s_k`` is the programming spread alone, as the
  MLE path's deflation makes it); censored readings (``censor``, and 0 uS) enter through the CDF.
* **Stuck-at faults**: devices stuck low/high with probabilities ``p_low``/``p_high``.  The stuck
  indicator is marginalised: the components are located by the MLE path's EM (they lie beyond six
  robust standard deviations of every level they are counted at, so the per-device responsibilities
  are 0 or 1 to machine precision and the mixture likelihood factorises into a binomial count per
  component times the bulk likelihood); levels whose bulk overlaps a stuck value carry no
  information about its probability and are left out of its count (as in the MLE path).  Stuck
  values and their spreads are kept at the EM estimates.

Sufficient statistics make the cost independent of the number of rows for the normal family
(per chip and level: count, mean, sum of squares, censored counts; per drift level: contrast mean and
scatter matrix).  The ``student_t`` family needs one term per first-read row.  Every free
parameter is sampled in standardized coordinates ``theta = (param - estimate) / standard_error``
(estimates from the MLE path's moment estimators); the priors below are stated on the parameters
themselves, so this only conditions the sampler (unit-scale posterior, short trajectories).

Priors (weakly informative; units stated; also in :data:`PRIORS` and every fitted model's metadata).
The prior on the level means is placed on the chip-averaged means ``M'_k = M_k exp(mean_c a_c)``;
under it the common-mode chip offset ``mean_c a_c`` is not informed by the data and keeps its prior
``N(0, sigma_chip^2 / n_chips)``: the honest uncertainty of a population mean seen through a few
chips, carried into ``loc`` and ``scale``.

Diagnostics are checked after every fit (R-hat, bulk and tail ESS, divergences; E-BFMI and tree-depth
saturation reported); a fit that fails raises :class:`FitFailedError` with the table and what to try.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from reliability.fit.bayes.prepare import _Prep


BAYES_FAMILIES = ("normal", "student_t")

#: The priors, with units.  ``range`` is max - min of the targets (uS), ``gmax`` the largest |target|.
PRIORS = {
    "loc_k": "Normal(0, 0.5 * max(range, gmax)) uS: offset of level k's chip-averaged mean from its target",
    "log scale b0": "Normal(log(0.05 * gmax), 3) log-uS (normal/student_t scale at the middle target)",
    "log scale b1, b2": "Normal(0, 1) log-units per half target range (slope, curvature of log scale)",
    "scale tau_s": "Gamma(2, rate 10) (mean 0.2) log-units: level-to-level departure of log scale from the "
                   "polynomial; zero-avoiding (Chung et al. 2013, Psychometrika 78) so that the hierarchy has no funnel",
    "log scale (<= 3 levels)": "Normal(log(0.05 * gmax), 3) log-uS per level",
    "df": "2 + Gamma(2, rate 0.1) (student_t only; mean 22, dimensionless)",
    "sigma_chip": "HalfNormal(0.1) log-units: chip-to-chip gain spread (10 % is a large chip-to-chip spread)",
    "sigma_wafer": "HalfNormal(0.1) log-units (with chip_groups)",
    "nu_mean_k": "Normal(0.05, 0.1) per level (dimensionless drift exponent, population mean of the devices' "
                 "exponents at level k)",
    "nu_std_k": "Gamma(2, rate 50) per level (mean 0.04, mode 0.02; dimensionless device-to-device spread of the "
                "exponent); zero-avoiding, so that a level whose data cannot tell a small spread from none has no "
                "long tail towards zero",
    "q_k": "Gamma(2, rate 50) per level (mean 0.04; relative 1/f read-noise amplitude); zero-avoiding",
    "no device ids: log nu_std, log q": "quadratic in standardized log target, c0 ~ Normal(log 0.02, 1.5), "
                                        "c1, c2 ~ Normal(0, 1)",
    "no device ids: level offset m0_k, log variance at the first read V1_k": "Normal(log T_k, 5) log-uS; "
                                                                              "Normal(log 0.01, 5) log(log-units^2)",
    "p_low, p_high": "Beta(0.5, 0.5) (Jeffreys), fraction of devices",
}



def _matvec(A: np.ndarray, v):
    """``A @ v`` for a small constant matrix, as elementwise products and a sum: without a BLAS
    library PyTensor's matrix-vector product falls back to Python and dominates the gradient."""
    import pytensor.tensor as pt

    return pt.sum(np.asarray(A, dtype=float) * v[None, :], axis=1)


def _build_model(p: _Prep, family: str, scale_degree: int):
    import pymc as pm
    import pytensor.tensor as pt
    from pymc.distributions.dist_math import normal_lcdf

    d = p.data
    init = p.init
    K = d.tbar.size
    use_chips = "chip" in init
    C = d.chips.size if use_chips else 1
    drift = p.drift
    L1, R1 = float(p.L[0]), float(p.R[0])
    coords = {"level": d.tbar.tolist()}
    if use_chips:
        coords["chip"] = [str(c) for c in d.chips]
    if drift is not None:
        coords["drift_level"] = d.knots.tolist()

    def nlp(x, mu, sd):  # normal log density without the constant
        return -0.5 * ((x - mu) / sd) ** 2 - pt.log(sd)

    def half_normal_log(logv, scale):  # HalfNormal(scale) on v = exp(logv), with the log Jacobian
        return -0.5 * (pt.exp(logv) / scale) ** 2 + logv

    def gamma2_log(logv, mean):  # Gamma(2, rate 2/mean) on v = exp(logv) (zero-avoiding), log Jacobian
        return 2.0 * logv - 2.0 * pt.exp(logv) / mean

    with pm.Model(coords=coords) as model:
        def free(name, est, se, dims=None):
            est = np.asarray(est, dtype=float)
            se = np.asarray(se, dtype=float)
            if dims is not None:
                z = pm.Flat(name + "_z", dims=dims)
            else:
                z = pm.Flat(name + "_z", shape=est.shape)
            return est + se * z

        def pooled(name, est, se, mean_expr, mean_hat, tau_mean, min_tau, dims):
            """A per-level vector ``x_j ~ N(mean_j, tau)`` partially pooled towards ``mean_expr``.

            Level by level centred where the data pin the level (standard error below a quarter of the
            spread ``tau`` between levels) and non-centred (``x_j = mean_j + tau * eta_j``) where they
            do not, so that neither kind of level makes a funnel.  Returns ``(x, log prior)``."""
            est = np.asarray(est, dtype=float)
            se = np.asarray(se, dtype=float)
            n_ = est.size
            r = est - mean_hat
            tau_hat = float(np.sqrt(max(np.var(r, ddof=1) - np.mean(se ** 2), min_tau ** 2)))
            # robust spread (MAD) decides the parameterization: one outlying level must not make the
            # others centred when most levels agree within their standard errors
            mad = 1.4826 * float(np.median(np.abs(r - np.median(r))))
            tau_rob = float(np.sqrt(max(mad ** 2 - float(np.median(se)) ** 2, min_tau ** 2)))
            ltau = free(name + "_log_tau", math.log(tau_hat), 0.7)
            tau = pt.exp(ltau)
            prior = gamma2_log(ltau, tau_mean)
            nc = se > 0.25 * min(tau_hat, tau_rob)
            x = pt.zeros(n_)
            if np.any(~nc):
                ic = np.nonzero(~nc)[0]
                xc = free(name + "_c", est[ic], se[ic])
                x = pt.set_subtensor(x[ic], xc)
                prior = prior + pt.sum(nlp(xc, mean_expr[ic], tau))
            if np.any(nc):
                inc = np.nonzero(nc)[0]
                eta = free(name + "_eta", (est[inc] - mean_hat[inc]) / tau_hat, np.minimum(se[inc] / tau_hat, 1.0))
                x = pt.set_subtensor(x[inc], mean_expr[inc] + tau * eta)
                prior = prior + pt.sum(-0.5 * eta ** 2)
            pm.Deterministic(name + "_tau", tau)
            return x, prior

        def per_level(name, est, se, prior_mean, prior_sd, dims):
            """Per-level vector with independent weakly informative priors ``N(prior_mean, prior_sd)``."""
            x = free(name, est, se, dims=dims)
            pm.Potential(name + "_prior", pt.sum(nlp(x, prior_mean, prior_sd)))
            return x

        def per_level_spread(name, est, se, mean, dims):
            """Per-level log of a spread with independent zero-avoiding ``Gamma(2, rate 2/mean)`` priors on
            the spread: no long tail towards zero where the data cannot tell a small spread from none."""
            x = free(name, est, se, dims=dims)
            pm.Potential(name + "_prior", pt.sum(gamma2_log(x, mean)))
            return x

        # ---- programming: level locations and the smooth log scale
        loc_obs = free("loc_obs", init["loc"], init["loc_se"], dims="level")
        loc_sd = 0.5 * max(init["range"], init["gmax"])
        pm.Potential("loc_prior", pt.sum(nlp(loc_obs, 0.0, loc_sd)))
        b0_mean = math.log(0.05 * init["gmax"])
        if K >= 4:  # at least two residual degrees of freedom for the level-to-level spread tau
            deg = int(min(scale_degree, K - 3))
            V = np.vander(init["u"], deg + 1, increasing=True)
            W = 1.0 / init["ls_se"]
            b_hat, *_ = np.linalg.lstsq(V * W[:, None], init["ls"] * W, rcond=None)
            resid = init["ls"] - V @ b_hat
            tau_hat = max(float(np.std(resid)), 0.02)
            cov = np.linalg.pinv((V * W[:, None] ** 2).T @ V) + tau_hat ** 2 * np.linalg.pinv(V.T @ V)
            b_se = np.maximum(np.sqrt(np.abs(np.diag(cov))), 0.01)
            b = free("scale_coef", b_hat, b_se)
            ls, prior_ls = pooled("scale", init["ls"], init["ls_se"], _matvec(V, b), V @ b_hat, 0.2, 0.02, "level")
            prior_b = nlp(b[0], b0_mean, 3.0) + (pt.sum(nlp(b[1:], 0.0, 1.0)) if deg > 0 else 0.0)
            pm.Potential("scale_prior", prior_b + prior_ls)
        else:
            ls = free("log_scale_obs", init["ls"], init["ls_se"], dims="level")
            pm.Potential("scale_prior", pt.sum(nlp(ls, b0_mean, 3.0)))
        vz = 1.0
        df = None
        if family == "student_t":
            ld = free("log_df_minus_2", math.log(8.0), 0.5)
            df = pm.Deterministic("df", 2.0 + pt.exp(ld))
            pm.Potential("df_prior", 2.0 * ld - 0.1 * pt.exp(ld))  # Gamma(2, 0.1) on df - 2, log Jacobian
            vz = df / (df - 2.0)

        # ---- chips
        if use_chips:
            ci = init["chip"]
            Q = ci["Q"]
            u = free("chip_u", ci["u"], ci["se"])
            atil = _matvec(Q, u)
            if p.wafer_of_chip is None:
                lsig = free("log_chip_sigma", ci["lsig"], ci["lsig_se"])
                sig = pt.exp(lsig)
                pm.Potential("chip_prior", half_normal_log(lsig, 0.1) - (C - 1) * lsig - pt.sum(u ** 2) / (2 * sig ** 2))
                zeta = pm.Normal("chip_common_z", 0.0, 1.0)
                abar = sig * zeta / math.sqrt(C)
                pm.Deterministic("chip_sigma", sig)
            else:
                # a = atil + abar ~ N(0, sigma_chip^2 I + sigma_wafer^2 Z Z'): per wafer block
                # sigma_c^2 I + sigma_w^2 11', inverted and its determinant taken in closed form;
                # the common mode abar = (sigma_total / sqrt(C)) zeta is a free coordinate (with its Jacobian)
                Z = np.eye(p.n_wafers)[p.wafer_of_chip]
                n_w = Z.sum(axis=0)
                lsw = free("log_wafer_sigma", ci["lsig"], 0.7)
                lsc = free("log_chip_within_sigma", ci["lsig"], 0.7)
                sw, sc = pt.exp(lsw), pt.exp(lsc)
                k = pt.sqrt(sw ** 2 + sc ** 2) / math.sqrt(C)
                zeta = free("chip_common", 0.0, 1.0)
                abar = k * zeta
                a_all = atil + abar
                sums = _matvec(Z.T, a_all)
                blk = sc ** 2 + n_w * sw ** 2
                quad = (pt.sum(a_all ** 2) - pt.sum(sw ** 2 * sums ** 2 / blk)) / sc ** 2
                logdet = (C - p.n_wafers) * 2 * lsc + pt.sum(pt.log(blk))
                pm.Potential("chip_prior", half_normal_log(lsw, 0.1) + half_normal_log(lsc, 0.1)
                             - 0.5 * logdet - 0.5 * quad + pt.log(k))
                pm.Deterministic("wafer_sigma", sw)
                pm.Deterministic("chip_within_sigma", sc)
                pm.Deterministic("chip_sigma", pt.sqrt(sw ** 2 + sc ** 2))
            pm.Deterministic("chip_offset", atil, dims="chip")
            pm.Deterministic("chip_log_gain", atil + abar, dims="chip")
        else:
            atil = pt.zeros(1)
            abar = 0.0

        # ---- drift and read noise
        if drift is not None:
            di = init["drift"]
            nu = per_level("nu_mean", di["nu"], di["nu_se"], 0.05, 0.1, "drift_level")
            lns = per_level_spread("log_nu_std", di["lns"], di["lns_se"], 0.04, "drift_level")
            alpha = pt.exp(2 * lns)
            pm.Deterministic("nu_mean", nu, dims="drift_level")
            pm.Deterministic("nu_std", pt.exp(lns), dims="drift_level")
            if drift["has_q"]:
                lq = per_level_spread("log_q", di["lq"], di["lq_se"], 0.04, "drift_level")
                beta = pt.exp(2 * lq)
                pm.Deterministic("q", pt.exp(lq), dims="drift_level")
            else:
                beta = None
            if drift["ids"]:
                n_ = drift["n"]
                if drift["has_q"]:
                    m = drift["m"]
                    g = drift["gamma"]
                    logdet = m * pt.log(beta) + drift["logdetD"] + pt.log1p(alpha * g / beta)
                    kap = alpha / (beta + alpha * g)
                    tr = (drift["tS"] - kap * drift["wSw"]) / beta
                    wr = drift["wc"] + nu * g
                    quad = (drift["cDc"] + 2 * nu * drift["wc"] + nu ** 2 * g - kap * wr ** 2) / beta
                    ll_drift = pt.sum(-0.5 * n_ * logdet - 0.5 * tr - 0.5 * n_ * quad)
                else:
                    a0 = drift["a"]
                    var = alpha * a0 ** 2
                    ll_drift = pt.sum(-0.5 * n_ * pt.log(var)
                                      - (drift["S1"] + n_ * (drift["cbar1"] + nu * a0) ** 2) / (2 * var))
            else:
                m0 = free("log_level_t0_obs", di["m0"], di["m0_se"], dims="drift_level")
                # nuisances: level offset at t0 and variance of log conductance at the first read
                # (the latter, not the variance at t0, so that it is not confounded with the read noise)
                lv1 = free("log_var_first_obs", di["lv1"], di["lv1_se"], dims="drift_level")
                pm.Potential("level_t0_prior", pt.sum(nlp(m0, np.log(np.maximum(d.knots, 1e-12)), 5.0))
                             + pt.sum(nlp(lv1, math.log(0.01), 5.0)))
                Vt = pt.exp(lv1)[:, None] + alpha[:, None] * (p.L ** 2 - p.L[0] ** 2)[None, :]
                if beta is not None:
                    Vt = Vt + beta[:, None] * (p.R - p.R[0])[None, :]
                nn, yb, vv = drift["n"], drift["ybar"], drift["v"]
                resid = yb - m0[:, None] + nu[:, None] * p.L[None, :]
                ll_drift = pt.sum(-0.5 * nn * pt.log(Vt) - ((nn - 1) * vv + nn * resid ** 2) / (2 * Vt))
            pm.Potential("loglik_drift", ll_drift)
            mk = init["map_k"]
            nuK = nu[mk]
            extra = alpha[mk] * L1 ** 2 + (beta[mk] * R1 if beta is not None else 0.0)
            D1 = pt.exp(-nuK * L1) if L1 > 0 else pt.ones(K)
        else:
            extra = pt.zeros(K)
            D1 = pt.ones(K)

        # ---- first read
        M1 = (d.tbar + loc_obs) * D1
        s1sq = pt.exp(2 * ls) * D1 ** 2
        S1 = pt.sqrt(s1sq + (M1 ** 2 + s1sq * vz) * extra / vz)
        pm.Deterministic("first_read_mean", M1, dims="level")
        pm.Deterministic("first_read_sd", S1, dims="level")
        G = p.groups
        gain = pt.exp(atil[G["chip"]]) if use_chips else 1.0
        mu_g = gain * M1[G["level"]]
        sd_g = gain * S1[G["level"]]
        terms = []
        if family == "normal":
            terms.append(pt.sum(-G["n"] * pt.log(sd_g) - (G["ss"] + G["n"] * (G["mean"] - mu_g) ** 2) / (2 * sd_g ** 2)))
        else:
            r = p.rows
            gr = pt.exp(atil[r["chip"]]) if use_chips else 1.0
            terms.append(pt.sum(pm.logp(pm.StudentT.dist(nu=df, mu=gr * M1[r["level"]], sigma=gr * S1[r["level"]]),
                                        r["x"])))
        left = np.nonzero(G["n_left"] > 0)[0]
        if left.size:
            if family == "normal":
                terms.append(pt.sum(G["n_left"][left] * normal_lcdf(mu_g[left], sd_g[left], d.lo)))
            else:
                terms.append(pt.sum(G["n_left"][left] * pm.logcdf(pm.StudentT.dist(nu=df, mu=mu_g[left], sigma=sd_g[left]),
                                                                   d.lo)))
        right = np.nonzero(G["n_right"] > 0)[0]
        if right.size:
            if family == "normal":
                terms.append(pt.sum(G["n_right"][right] * normal_lcdf(-mu_g[right], sd_g[right], -d.hi)))
            else:
                terms.append(pt.sum(G["n_right"][right] * pm.logcdf(pm.StudentT.dist(nu=df, mu=-mu_g[right],
                                                                                      sigma=sd_g[right]), -d.hi)))
        pm.Potential("loglik_first_read", sum(terms))

        # ---- stuck-at fractions (binomial counts, Jeffreys prior, logit coordinates)
        for name, (k_, n_, p_em) in p.stuck_counts.items():
            ph = min(max((k_ + 0.5) / (n_ + 1.0), 1e-6), 1 - 1e-6)
            lp = free("logit_" + name, special.logit(ph), 1.0 / math.sqrt(max(n_ * ph * (1 - ph), 0.25)))
            pm.Potential(name + "_loglik", (k_ + 0.5) * (-pt.softplus(-lp)) + (n_ - k_ + 0.5) * (-pt.softplus(lp)))
            pm.Deterministic(name, pt.sigmoid(lp))

        # ---- population-level programming parameters (chip common mode removed)
        pm.Deterministic("loc", (d.tbar + loc_obs) * pt.exp(-abar) - d.tbar, dims="level")
        pm.Deterministic("scale", pt.exp(ls - abar), dims="level")
    return model
