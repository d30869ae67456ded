"""Convergence diagnostics of a Bayesian fit (R-hat, bulk and tail ESS, divergences; E-BFMI and
tree-depth saturation reported), the verdict against :data:`THRESHOLDS` with what to try when it
fails, and the posterior summary table.  ArviZ is imported only when a trace is diagnosed.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from reliability.errors import Placeholder, option


#: Convergence thresholds checked after every fit (override with ``thresholds=``).  ESS thresholds
#: are totals over chains (400 = 100 per chain for 4 chains, Vehtari et al. 2021, "Rank-normalization,
#: folding, and localization", Bayesian Analysis 16(2)); R-hat 1.01 from the same paper.
#: Divergent transitions: at most 0.1 % of the draws (4 of 4,000), each reported in the notes; more
#: means the sampler cannot explore part of the posterior and the fit fails.
THRESHOLDS = {"rhat_max": 1.01, "ess_bulk_min": 400.0, "ess_tail_min": 400.0, "max_divergence_fraction": 0.001}


def _flat_names(da) -> list[str]:
    if da.ndim == 2:
        return [da.name]
    dims = [dd for dd in da.dims if dd not in ("chain", "draw")]
    idx = np.ndindex(*[da.sizes[dd] for dd in dims])
    return [f"{da.name}[{','.join(map(str, i))}]" for i in idx]


def _diagnose(idata, thresholds) -> tuple[pl.DataFrame, dict]:
    import arviz as az

    post = idata.posterior
    names, rh, eb, et = [], [], [], []
    rhat = az.rhat(post)
    essb = az.ess(post, method="bulk")
    esst = az.ess(post, method="tail")
    for v in post.data_vars:
        names += _flat_names(post[v])
        rh += list(np.atleast_1d(rhat[v].values).ravel())
        eb += list(np.atleast_1d(essb[v].values).ravel())
        et += list(np.atleast_1d(esst[v].values).ravel())
    table = pl.DataFrame({"parameter": names, "r_hat": np.array(rh, dtype=float), "ess_bulk": np.array(eb, dtype=float),
                          "ess_tail": np.array(et, dtype=float)})
    ss = idata.sample_stats
    div = int(ss["diverging"].sum()) if "diverging" in ss else 0
    depth = int(ss["reached_max_treedepth"].sum()) if "reached_max_treedepth" in ss else 0
    try:
        bfmi = float(np.min(az.bfmi(idata)))
    except Exception:  # noqa: BLE001 - E-BFMI is informative only
        bfmi = float("nan")
    finite = table.filter(pl.col("r_hat").is_not_nan())
    n_draws = int(post.sizes["chain"] * post.sizes["draw"])
    diag = {
        "max_r_hat": float(finite["r_hat"].max()) if finite.height else float("nan"),
        "min_ess_bulk": float(finite["ess_bulk"].min()) if finite.height else float("nan"),
        "min_ess_tail": float(finite["ess_tail"].min()) if finite.height else float("nan"),
        "divergences": div, "max_treedepth_hits": depth, "min_bfmi": bfmi,
        "chains": int(post.sizes["chain"]), "draws": n_draws,
        "mean_tree_size": float(ss["n_steps"].mean()) if "n_steps" in ss else float("nan"),
        "step_size": float(ss["step_size"].mean()) if "step_size" in ss else float("nan"),
        "thresholds": dict(thresholds),
    }
    return table, diag


def _check(table: pl.DataFrame, diag: dict, thresholds: dict, settings: dict) -> tuple[bool, str, pl.DataFrame, list]:
    th = thresholds
    bad = table.filter((pl.col("r_hat") > th["rhat_max"]) | (pl.col("ess_bulk") < th["ess_bulk_min"])
                       | (pl.col("ess_tail") < th["ess_tail_min"]))
    problems, tips = [], []
    if bad.filter(pl.col("r_hat") > th["rhat_max"]).height:
        problems.append(f"R-hat up to {diag['max_r_hat']:.3f} > {th['rhat_max']}")
        tips.append(f"chains disagree: sample longer ({option('tune', 2 * settings['tune'])}, "
                    f"{option('draws', 2 * settings['draws'])}) or with more chains ({option('chains', 4)}); if it "
                    f"persists the posterior may be multimodal")
    if bad.filter((pl.col("ess_bulk") < th["ess_bulk_min"]) | (pl.col("ess_tail") < th["ess_tail_min"])).height:
        problems.append(f"effective sample size bulk {diag['min_ess_bulk']:.0f} / tail {diag['min_ess_tail']:.0f} "
                        f"< {th['ess_bulk_min']:.0f} / {th['ess_tail_min']:.0f}")
        tips.append(f"more draws ({option('draws', max(2 * settings['draws'], 1000))}) and tuning "
                    f"({option('tune', max(2 * settings['tune'], 1000))})")
    allowed = int(math.floor(th["max_divergence_fraction"] * diag["draws"]))
    if diag["divergences"] > allowed:
        problems.append(f"{diag['divergences']} divergent transitions (allowed {allowed}, "
                        f"{100 * th['max_divergence_fraction']:g} % of {diag['draws']} draws)")
        nxt = "0.99" if settings["target_accept"] >= 0.95 else "0.95 or 0.99"
        tips.append(f"raise {option('target_accept', Placeholder(nxt))} (now {settings['target_accept']}) and tune; "
                    f"if they remain, simplify the model: {option('scale_degree', 1)}, {option('chip_gain', False)}, "
                    f"{option('stuck', False)}, or fewer levels")
    if 0 < diag["divergences"] <= allowed:
        tips.append(f"{diag['divergences']} divergent transition(s) among {diag['draws']} draws (within the allowed "
                    f"{100 * th['max_divergence_fraction']:g} %); {option('target_accept', 0.99)} removes them at some cost")
    if np.isfinite(diag["min_bfmi"]) and diag["min_bfmi"] < 0.3:
        tips.append(f"E-BFMI {diag['min_bfmi']:.2f} < 0.3: the energy is poorly explored; more tuning helps")
    if diag["max_treedepth_hits"] > 0:
        tips.append(f"{diag['max_treedepth_hits']} draws hit the maximum tree depth: longer tuning or a simpler model")
    ok = not problems
    rows = bad.with_columns(pl.lit("parameter").alias("check"))
    summary_rows = pl.DataFrame({
        "parameter": ["(sampler) divergences", "(sampler) min E-BFMI", "(sampler) max tree depth hits"],
        "r_hat": [float("nan")] * 3, "ess_bulk": [float("nan")] * 3, "ess_tail": [float("nan")] * 3,
        "check": [f"{diag['divergences']} (allowed {allowed})", f"{diag['min_bfmi']:.3g}",
                  str(diag["max_treedepth_hits"])],
    })
    return ok, "; ".join(problems) if problems else "all convergence checks passed", pl.concat([rows, summary_rows]), tips


# =====================================================================================================


_SUMMARY_VARS = ("loc", "scale", "scale_tau", "df", "chip_sigma", "wafer_sigma", "chip_within_sigma", "chip_log_gain",
                 "nu_mean", "nu_std", "q", "nu_mean_tau", "log_nu_std_tau", "log_q_tau", "p_low", "p_high")


def _summary(idata, table: pl.DataFrame) -> pl.DataFrame:
    post = idata.posterior
    rows = []
    diag = {r["parameter"]: r for r in table.iter_rows(named=True)}
    for v in _SUMMARY_VARS:
        if v not in post:
            continue
        da = post[v]
        vals = da.stack(sample=("chain", "draw")).transpose("sample", ...).values.reshape(
            da.sizes["chain"] * da.sizes["draw"], -1)
        for name, col in zip(_flat_names(da), vals.T):
            q5, q50, q95 = np.quantile(col, [0.05, 0.5, 0.95])
            dg = diag.get(name, {})
            rows.append({"parameter": name, "mean": float(col.mean()), "sd": float(col.std(ddof=1)), "q5": float(q5),
                         "q50": float(q50), "q95": float(q95), "r_hat": dg.get("r_hat", float("nan")),
                         "ess_bulk": dg.get("ess_bulk", float("nan")), "ess_tail": dg.get("ess_tail", float("nan"))})
    return pl.DataFrame(rows)
