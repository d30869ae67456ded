"""The result of a Bayesian fit (:class:`BayesFitResult`: the posterior device model, the trace,
diagnostics, pointwise log-likelihood and LOO, posterior predictive checks, persistence), and the
conversion of a posterior into a :class:`~reliability.devices.posterior.PosteriorDeviceModel`.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
from scipy import special

from reliability._json import atomic_output, write_json
from reliability.devices.components import ChipGain, Drift, ProgrammingVariation, ReadNoise, StuckAt
from reliability.devices.model import DeviceModel
from reliability.devices.posterior import PosteriorDeviceModel
from reliability.devices.state import Spline
from reliability.errors import MissingDependencyError, ReliabilityError, option
from reliability.fit.bayes.prepare import _Data, _normal_lp, _Prep
from reliability.fit.gof import TailCheck, tail_check


def quiet_third_party_warnings() -> None:
    """Inside ``warnings.catch_warnings()``: silence what PyMC, PyTensor and ArviZ print on every run
    that says nothing about the fit (PyTensor's advice to install a BLAS through conda, the
    libraries' deprecation notices); the fit's own diagnostics are reported by the toolkit."""
    warnings.filterwarnings("ignore", message=".*PyTensor could not link to a BLAS", category=UserWarning)
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", DeprecationWarning)


def require_bayes_extra() -> None:
    """Import PyMC and ArviZ (the ``bayes`` extra), or raise :class:`~reliability.errors.MissingDependencyError`."""
    try:
        with warnings.catch_warnings():
            quiet_third_party_warnings()
            import arviz  # noqa: F401
            import pymc  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "the Bayesian fit needs PyMC and ArviZ: pip install 'nvcim-reliability[bayes]' "
            f"(import failed: {exc})") from exc


@dataclass(frozen=True)
class BayesFitResult:
    """Result of :func:`fit_device_bayes`.

    Attributes
    ----------
    model : PosteriorDeviceModel or None
        The fitted device model with its posterior draws (None when the fit failed).
    idata : arviz.InferenceData
        The trace (posterior of free coordinates, population parameters and sampler statistics).
    posterior_summary : polars.DataFrame
        Population parameters: mean, sd, 5/50/95 % quantiles, R-hat, bulk/tail ESS (also
        :meth:`to_polars`).
    diagnostics : dict
        Worst R-hat, ESS, divergences, E-BFMI, tree depth, thresholds.
    success, message, notes
        Verdict and what the preprocessing found.
    seconds : dict
        ``prepare``, ``sample`` (compile + tune + draws), ``total``.
    settings : dict
        The arguments of the fit.
    """

    model: PosteriorDeviceModel | None
    idata: Any
    posterior_summary: pl.DataFrame
    diagnostics: dict
    success: bool
    message: str
    notes: tuple[str, ...]
    seconds: dict
    settings: dict
    _data: _Data = field(repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.settings.get("name", "bayes"))

    @property
    def map_model(self) -> DeviceModel | None:
        """A point :class:`DeviceModel`: every parameter at its posterior median (not a joint mode)."""
        return None if self.model is None else self.model.point_model()

    def to_polars(self) -> pl.DataFrame:
        """The posterior summary of the population parameters (one row per parameter: mean, sd,
        5/50/95 % quantiles, R-hat, bulk and tail ESS)."""
        return self.posterior_summary

    def summary(self) -> str:
        """What was fitted, the verdict, the sampler's diagnostics and the notes, as text."""
        d = self.diagnostics
        lines = [f"Bayesian fit ({self.settings.get('family')}) of {self._data.x.size} rows, {self._data.tbar.size} levels, "
                 f"{self._data.chips.size} chips, read times {list(map(float, self._data.times))} s in "
                 f"{self.seconds.get('total', float('nan')):.1f} s: {'success' if self.success else 'FAILED'} "
                 f"({self.message})",
                 f"  NUTS: {d['chains']} chains x {d['draws'] // max(d['chains'], 1)} draws; max R-hat {d['max_r_hat']:.4f}, "
                 f"min ESS bulk {d['min_ess_bulk']:.0f} / tail {d['min_ess_tail']:.0f}, divergences {d['divergences']}, "
                 f"min E-BFMI {d['min_bfmi']:.2f}"]
        lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    # ---------------------------------------------------------------- pointwise log-likelihood, LOO
    def log_likelihood(self, max_draws: int | None = None):
        """Pointwise log-likelihood of every first-read row (the observation model of programming,
        chip gain and stuck-at; the drift contrasts are not included), as an InferenceData with
        ``posterior`` and ``log_likelihood`` groups.  Draws are thinned evenly to at most
        ``max_draws`` (default: all, or fewer so that draws x rows <= 2e7)."""
        key = ("ll", max_draws)
        if key in self._cache:
            return self._cache[key]
        import arviz as az
        import xarray as xr

        post = self.idata.posterior
        dd = self._data
        first = dd.first
        n_rows = int(first.sum())
        nc, nd = post.sizes["chain"], post.sizes["draw"]
        cap = max_draws if max_draws is not None else max(50, int(2e7 // max(n_rows, 1)))
        step = max(1, int(math.ceil(nc * nd / cap)))
        sub = post.isel(draw=slice(None, None, step))
        M1 = sub["first_read_mean"].values
        S1 = sub["first_read_sd"].values
        if "chip_offset" in sub:
            a = sub["chip_offset"].values[..., dd.chip[first]]
        else:
            a = np.zeros(M1.shape[:2] + (n_rows,))
        g = np.exp(a)
        lev = dd.level[first]
        mu = g * M1[..., lev]
        sd = g * S1[..., lev]
        xa = dd.aligned()[first]
        cens = dd.cens[first]
        x = dd.x[first]
        df = sub["df"].values[..., None] if "df" in sub else None
        ll = np.empty(mu.shape)
        obs, left, right = cens == 0, cens < 0, cens > 0
        if df is None:
            ll[..., obs] = _normal_lp(xa[obs], mu[..., obs], sd[..., obs])
            ll[..., left] = special.log_ndtr((dd.lo - mu[..., left]) / sd[..., left])
            ll[..., right] = special.log_ndtr((mu[..., right] - dd.hi) / sd[..., right])
        else:
            z = (xa[obs] - mu[..., obs]) / sd[..., obs]
            ll[..., obs] = (special.gammaln((df + 1) / 2) - special.gammaln(df / 2) - 0.5 * np.log(df * np.pi)
                            - (df + 1) / 2 * np.log1p(z * z / df) - np.log(sd[..., obs]))
            ll[..., left] = np.log(special.stdtr(df, (dd.lo - mu[..., left]) / sd[..., left]))
            ll[..., right] = np.log(special.stdtr(df, (mu[..., right] - dd.hi) / sd[..., right]))
        pl_, ph_, gl, gh, sl, sh = dd.stuck
        plow = sub["p_low"].values[..., None] if "p_low" in sub else (np.nan_to_num(pl_) * np.ones(ll.shape[:2] + (1,)))
        phigh = sub["p_high"].values[..., None] if "p_high" in sub else (np.nan_to_num(ph_) * np.ones(ll.shape[:2] + (1,)))
        parts = [np.log1p(-(plow + phigh)) + ll]
        tol = 1e-9 * max(1.0, float(np.max(np.abs(dd.x))))
        for p_, gv, sp in ((plow, gl, sl), (phigh, gh, sh)):
            if not np.isfinite(gv) or np.all(p_ <= 0):
                continue
            comp = np.full(n_rows, -np.inf)
            if sp > 0:
                comp[obs] = _normal_lp(x[obs], gv, sp)
                comp[left] = special.log_ndtr((dd.lo - gv) / sp)
                if np.any(right):
                    comp[right] = special.log_ndtr((gv - dd.hi) / sp)
            else:
                comp[obs & (np.abs(x - gv) <= tol)] = 0.0
                comp[left] = 0.0 if gv <= dd.lo + tol else -np.inf
                if np.any(right):
                    comp[right] = 0.0 if gv >= dd.hi - tol else -np.inf
            with np.errstate(divide="ignore"):
                parts.append(np.log(p_) + comp)
        tot = np.logaddexp.reduce(parts, axis=0) if len(parts) > 1 else parts[0]
        da = xr.DataArray(tot, dims=("chain", "draw", "first_read_row"),
                          coords={"chain": sub.chain.values, "draw": sub.draw.values})
        out = az.InferenceData(posterior=sub, log_likelihood=xr.Dataset({"first_read": da}))
        self._cache[key] = out
        return out

    def tail_check(self, max_draws: int = 400) -> TailCheck:
        """The tail check of :func:`reliability.fit.gof.tail_check`, the rule the maximum-likelihood
        fit is judged by: the programmable (EM responsibility > 0.5), uncensored first reads,
        transformed by the posterior predictive CDF of their level and chip (averaged over up to
        ``max_draws`` evenly spaced draws); counts beyond 0.1 %/99.9 % against Binomial(n, 0.001)."""
        key = ("tail", max_draws)
        if key in self._cache:
            return self._cache[key]
        post = self.idata.posterior
        dd = self._data
        nc, nd = post.sizes["chain"], post.sizes["draw"]
        sub = post.isel(draw=slice(None, None, max(1, int(math.ceil(nc * nd / max_draws)))))
        rows = dd.first & (dd.cens == 0) & (dd.bulk_resp > 0.5)
        M1 = sub["first_read_mean"].values.reshape(-1, dd.tbar.size)
        S1 = sub["first_read_sd"].values.reshape(-1, dd.tbar.size)
        if "chip_offset" in sub:
            a = sub["chip_offset"].values.reshape(M1.shape[0], -1)[:, dd.chip[rows]]
        else:
            a = np.zeros((M1.shape[0], int(rows.sum())))
        g = np.exp(a)
        lev = dd.level[rows]
        z = (dd.aligned()[rows] - g * M1[:, lev]) / (g * S1[:, lev])
        if "df" in sub:
            u = special.stdtr(sub["df"].values.reshape(-1, 1), z)
        else:
            u = special.ndtr(z)
        out = tail_check(u.mean(axis=0))
        self._cache[key] = out
        return out

    def loo(self, max_draws: int | None = None, pointwise: bool = False):
        """PSIS-LOO (``arviz.loo``) over the first-read rows; look at ``pareto_k`` (> 0.7: unreliable)."""
        import arviz as az

        with warnings.catch_warnings():
            quiet_third_party_warnings()
            warnings.simplefilter("ignore", UserWarning)
            return az.loo(self.log_likelihood(max_draws), pointwise=pointwise)

    def compare(self, *others: "BayesFitResult", names: Sequence[str] | None = None) -> pl.DataFrame:
        """``arviz.compare`` (PSIS-LOO, log scale) of this fit and ``others`` fitted to the same data.

        Returns one row per model, best first: ``elpd_loo``, ``p_loo``, ``elpd_diff``, ``dse``,
        ``weight``, ``warning``.
        """
        import arviz as az

        fits = (self,) + tuple(others)
        n = {int(f._data.first.sum()) for f in fits}
        if len(n) != 1 or any(not np.array_equal(f._data.x[f._data.first], self._data.x[self._data.first]) for f in fits):
            raise ReliabilityError("compare needs fits of the same data (the same first-read rows); got different data.")
        labels = list(names) if names is not None else [f.name for f in fits]
        if len(set(labels)) != len(labels):
            labels = [f"{lab}#{i}" for i, lab in enumerate(labels)]
        with warnings.catch_warnings():
            quiet_third_party_warnings()
            warnings.simplefilter("ignore", UserWarning)
            cmp = az.compare({lab: f.log_likelihood() for lab, f in zip(labels, fits)}, ic="loo")
        df = cmp.reset_index().rename(columns={"index": "model"})
        return pl.from_pandas(df)

    # ---------------------------------------------------------------- posterior predictive checks
    def ppc(self, n_draws: int = 100, *, rng=0, probs: Sequence[float] = (0.01, 0.05, 0.5, 0.95, 0.99)) -> pl.DataFrame:
        """Posterior predictive check of the whole device model, per level and read time.

        For ``n_draws`` posterior draws (evenly spaced), the campaign is simulated again with that
        draw's device model and that draw's chip gains (same chips, levels, devices per chip and
        level, read times); the observed quantiles ``probs`` and standard deviation of every
        (level, time) are compared with their predictive distribution.  ``p_value`` is two-sided
        (``2 min(P(rep <= obs), P(rep >= obs))``).  ``rng`` (None, int, SeedSequence or Generator,
        SPEC 7) draws the replicated campaigns; with an int seed the table is cached.
        """
        if self.model is None:
            raise ReliabilityError("the fit failed: there is no posterior model to check.")
        seeded = isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)
        key = ("ppc", n_draws, int(rng) if seeded else None, tuple(probs))
        if seeded and key in self._cache:
            return self._cache[key]
        from reliability.streams import as_generator

        rng = as_generator(rng)
        dd = self._data
        m = self.model
        K, nt = dd.tbar.size, dd.times.size
        idx = np.unique(np.linspace(0, m.n_draws - 1, min(n_draws, m.n_draws)).round().astype(int))
        post = self.idata.posterior
        lg = (post["chip_log_gain"].stack(sample=("chain", "draw")).transpose("sample", ...).values
              if "chip_log_gain" in post else np.zeros((m.n_draws, 1)))
        first = dd.first
        chips_present = np.unique(dd.chip[first])
        grids = {c: (dd.target[first & (dd.chip == c)], dd.level[first & (dd.chip == c)]) for c in chips_present}
        stats_names = [f"q{100 * p:g}" for p in probs] + ["std"]

        def stats(v):
            return np.concatenate([np.quantile(v, probs), [np.std(v, ddof=1)]]) if v.size > 1 else np.full(len(stats_names), np.nan)

        obs = np.full((K, nt, len(stats_names)), np.nan)
        for k in range(K):
            for i in range(nt):
                obs[k, i] = stats(dd.x[(dd.level == k) & (dd.tidx == i)])
        rep = np.full((idx.size, K, nt, len(stats_names)), np.nan)
        for s, j in enumerate(idx):
            mj = m.model_at(int(j))
            vals = {(k, i): [] for k in range(K) for i in range(nt)}
            for c in chips_present:
                tg, lv = grids[c]
                gain = float(np.exp(lg[j, c])) if lg.shape[1] > 1 else 1.0
                prog = mj.program(tg, rng, gain=gain)
                for i, tt in enumerate(dd.times):
                    r = mj.read(prog, float(tt), rng)
                    for k in np.unique(lv):
                        vals[(k, i)].append(r[lv == k])
            for (k, i), v in vals.items():
                if v:
                    rep[s, k, i] = stats(np.concatenate(v))
        rows = []
        for k in range(K):
            for i in range(nt):
                for q, sname in enumerate(stats_names):
                    r = rep[:, k, i, q]
                    o = obs[k, i, q]
                    if not np.isfinite(o) or not np.any(np.isfinite(r)):
                        continue
                    r = r[np.isfinite(r)]
                    pv = float(min(1.0, 2 * min(np.mean(r <= o), np.mean(r >= o))))
                    lo_, med, hi_ = np.quantile(r, [0.05, 0.5, 0.95])
                    rows.append({"target_uS": float(dd.tbar[k]), "time_s": float(dd.times[i]), "stat": sname,
                                 "observed": float(o), "pred_q5": float(lo_), "pred_q50": float(med),
                                 "pred_q95": float(hi_), "p_value": pv})
        out = pl.DataFrame(rows)
        if seeded:
            self._cache[key] = out
        return out

    def ppc_plot(self, path, n_draws: int = 100, *, rng=0):
        """Plot :meth:`ppc`: per read time, observed quantiles (minus the target) against their 90 %
        predictive bands across levels; writes ``path`` (format from the extension)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        tab = self.ppc(n_draws=n_draws, rng=rng)
        times = sorted(set(tab["time_s"].to_list()))
        fig, axes = plt.subplots(1, len(times), figsize=(4.2 * len(times), 3.6), squeeze=False, sharey=False)
        stats_q = [s for s in dict.fromkeys(tab["stat"].to_list()) if s != "std"]
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, tt in zip(axes[0], times):
            sub = tab.filter(pl.col("time_s") == tt)
            for ci_, s in enumerate(stats_q):
                r = sub.filter(pl.col("stat") == s).sort("target_uS")
                x = r["target_uS"].to_numpy()
                col = colors[ci_ % len(colors)]
                ax.fill_between(x, r["pred_q5"].to_numpy() - x, r["pred_q95"].to_numpy() - x, color=col, alpha=0.25,
                                linewidth=0)
                ax.plot(x, r["observed"].to_numpy() - x, "o", ms=3, color=col, label=s)
            ax.set_title(f"t = {tt:g} s")
            ax.set_xlabel("target (uS)")
            ax.set_ylabel("quantile - target (uS)")
        axes[0][0].legend(fontsize=7, title="observed (dots)\n90 % predictive (bands)", title_fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return Path(path)

    # ---------------------------------------------------------------- persistence
    def save(self, directory, overwrite: bool = False) -> Path:
        """Write the fit to ``directory``: ``device.json`` + ``device.posterior.npz`` (the model),
        ``device.trace.nc`` (InferenceData, NetCDF), ``fit.json`` (settings, diagnostics, notes),
        ``summary.parquet`` and ``data.npz`` (the rows, for :meth:`loo`/:meth:`ppc` after loading)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = ["fit.json", "summary.parquet", "data.npz", "device.json", "device.posterior.npz", "device.trace.nc"]
        if not overwrite:
            for f in files:
                if (directory / f).exists():
                    raise FileExistsError(f"{directory / f} exists; pass {option('overwrite')} or choose another folder.")
        if self.model is not None:
            self.model.save(directory / "device.json", overwrite=True, trace=self.idata)
        else:
            with atomic_output(directory / "device.trace.nc") as tmp:
                self.idata.to_netcdf(str(tmp))
        with atomic_output(directory / "summary.parquet") as tmp:
            self.posterior_summary.write_parquet(tmp)
        with atomic_output(directory / "data.npz") as tmp:
            self._data.to_npz(tmp)
        doc = {"format": "nvcim-reliability/bayes-fit-v1", "success": self.success, "message": self.message,
               "notes": list(self.notes), "seconds": self.seconds, "settings": self.settings,
               "diagnostics": self.diagnostics}
        write_json(directory / "fit.json", doc)      # last: a folder with fit.json holds the whole fit
        return directory

    @classmethod
    def load(cls, directory) -> "BayesFitResult":
        """Read a fit written by :meth:`save`."""
        require_bayes_extra()
        import arviz as az

        directory = Path(directory)
        try:
            doc = json.loads((directory / "fit.json").read_text())
        except FileNotFoundError:
            raise ReliabilityError(f"{directory} holds no Bayesian fit (fit.json missing).") from None
        if doc.get("format") != "nvcim-reliability/bayes-fit-v1":
            raise ReliabilityError(f"{directory / 'fit.json'} is not a Bayesian fit record.")
        idata = az.from_netcdf(str(directory / "device.trace.nc"))
        idata.load()
        model = PosteriorDeviceModel.load(directory / "device.json") if (directory / "device.json").exists() else None
        return cls(model=model, idata=idata, posterior_summary=pl.read_parquet(directory / "summary.parquet"),
                   diagnostics=doc["diagnostics"], success=bool(doc["success"]), message=doc["message"],
                   notes=tuple(doc["notes"]), seconds=doc["seconds"], settings=doc["settings"],
                   _data=_Data.from_npz(directory / "data.npz"))


# =====================================================================================================


def _posterior_model(p: _Prep, idata, family: str, name: str, metadata: dict) -> tuple[PosteriorDeviceModel, list]:
    post = idata.posterior
    d = p.data
    notes = []

    def arr(v):
        da = post[v]
        return da.stack(sample=("chain", "draw")).transpose("sample", ...).values.reshape(
            da.sizes["chain"] * da.sizes["draw"], -1)

    cols, names, paths = [], [], []

    def add(v, label, path_fmt):
        a = arr(v)
        for i in range(a.shape[1]):
            cols.append(a[:, i])
            names.append(label.format(i=i))
            paths.append(path_fmt.format(i=i))

    add("loc", "programming.loc[{i}]", "programming/loc/values/{i}")
    add("scale", "programming.scale[{i}]", "programming/scale/values/{i}")
    shape = {}
    if family == "student_t":
        dfa = arr("df")[:, 0]
        n_cap = int(np.sum(dfa > 999.0))
        if n_cap:
            notes.append(f"{n_cap} posterior draws of df above 999 (indistinguishable from normal) held at 999, the "
                         "family's upper bound")
        dfa = np.minimum(dfa, 999.0)
        cols.append(dfa)
        names.append("programming.df")
        paths.append("programming/shape/df")
        shape = {"df": float(np.median(dfa))}
    drift = read_noise = None
    if p.drift is not None:
        add("nu_mean", "drift.nu_mean[{i}]", "drift/nu_mean/values/{i}")
        add("nu_std", "drift.nu_std[{i}]", "drift/nu_std/values/{i}")
        if "q" in post:
            add("q", "read_noise.q[{i}]", "read_noise/q/values/{i}")
    chip_gain = None
    if "chip_sigma" in post:
        add("chip_sigma", "chip_gain.sigma", "chip_gain/sigma")
        chip_gain = ChipGain(float(np.median(arr("chip_sigma"))))
    stuck = None
    if np.isfinite(d.stuck[0]):
        pl_, ph_, gl, gh, sl, sh = (float(v) for v in d.stuck)
        if "p_low" in post:
            add("p_low", "stuck.p_low", "stuck/p_low")
            pl_ = float(np.median(arr("p_low")))
        if "p_high" in post:
            add("p_high", "stuck.p_high", "stuck/p_high")
            ph_ = float(np.median(arr("p_high")))
        stuck = StuckAt(pl_, ph_, gl, gh, sl, sh)
    table = np.column_stack(cols)
    med = np.median(table, axis=0)
    byname = dict(zip(names, med))
    K = d.tbar.size
    knots = tuple(map(float, d.tbar))
    prog = ProgrammingVariation(family, loc=Spline(knots, tuple(byname[f"programming.loc[{k}]"] for k in range(K))),
                                scale=Spline(knots, tuple(byname[f"programming.scale[{k}]"] for k in range(K)), 0.0),
                                shape=shape)
    if p.drift is not None:
        J = d.knots.size
        dk = tuple(map(float, d.knots))
        drift = Drift(nu_mean=Spline(dk, tuple(byname[f"drift.nu_mean[{j}]"] for j in range(J))),
                      nu_std=Spline(dk, tuple(byname[f"drift.nu_std[{j}]"] for j in range(J)), 0.0),
                      t0_s=d.t0_s, fold=True)
        if "q" in post:
            read_noise = ReadNoise(q=Spline(dk, tuple(byname[f"read_noise.q[{j}]"] for j in range(J)), 0.0),
                                   t_read_s=d.t_read_s)
    g_lo, g_hi = float(np.min(d.target)), float(np.max(d.target))
    point = DeviceModel(name=name, unit="uS", programming=prog, drift=drift, read_noise=read_noise, stuck=stuck,
                        chip_gain=chip_gain, g_range=(g_lo, g_hi) if g_hi > g_lo else None, floor=0.0,
                        description=f"Bayesian hierarchical fit ({family}, PyMC NUTS) of {d.x.size} readings; "
                                    "point values are posterior medians",
                        source=f"fitted by nvcim-reliability from {d.source}", metadata=metadata)
    return PosteriorDeviceModel.from_point(point, names, paths, table), notes
