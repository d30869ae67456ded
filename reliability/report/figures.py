"""Figures of device fits, accuracy tails, worst cases and mitigation rankings.  matplotlib is
imported inside each function (optional dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_fit_qq", "plot_ranking", "plot_tail_check", "plot_accuracy", "plot_worst_case"]


def plot_fit_qq(result, path=None, candidates: int = 3, max_levels: int = 6):
    """QQ plots (model vs. measured quantile, per level) of the best ``candidates`` of a
    :class:`~reliability.fit.DeviceFitResult`, one panel per candidate, deviations from the target
    so that all levels share one axis.  Returns the figure; writes it to ``path`` when given."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cands = [c for c in result.candidates if c.success and c.gof is not None][:candidates]
    fig, axes = plt.subplots(1, len(cands), figsize=(4.2 * len(cands), 4.0), squeeze=False)
    for ax, cand in zip(axes[0], cands):
        qq = cand.gof.qq
        levels = sorted(qq)
        if len(levels) > max_levels:
            levels = [levels[i] for i in np.linspace(0, len(levels) - 1, max_levels).round().astype(int)]
        lo, hi = np.inf, -np.inf
        for lv in levels:
            emp = np.asarray(qq[lv]["empirical"]) - lv
            mod = np.asarray(qq[lv]["model"]) - lv
            ax.plot(mod, emp, "o-", ms=3, lw=0.8, label=f"{lv:.4g} uS")
            lo, hi = min(lo, emp.min(), mod.min()), max(hi, emp.max(), mod.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        lr, hr = cand.gof.tail_ratio
        ax.set_title(f"{cand.name}\ntail counts obs/exp {lr:.2f} / {hr:.2f}", fontsize=9)
        ax.set_xlabel("model quantile - target (uS)")
        ax.set_ylabel("measured quantile - target (uS)")
        ax.legend(fontsize=6, title="level", title_fontsize=6)
    fig.suptitle("QQ at 0.1 % .. 99.9 % (first read time, stuck devices excluded)", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(Path(path), dpi=120)
        plt.close(fig)
    return fig


def plot_ranking(ranking, path=None, cost: str = "scalar"):
    """Cost against robustness of every candidate of a :class:`~reliability.mitigation.Ranking` (or
    its JSON form): robustness with its 95 % interval, the Pareto front joined, the baseline marked.

    ``cost``: ``"scalar"`` (the weighted scalar) or an entry of the cost vector (e.g.
    ``"write_time_s"``).  Returns the figure; writes it to ``path`` when given."""
    plt = _pyplot(path)
    d = ranking.to_dict() if hasattr(ranking, "to_dict") else ranking
    cands = [d["baseline"]] + list(d["mitigations"])

    def cost_of(c):
        return c["cost"]["scalar"] if cost == "scalar" else c["cost"][cost]["value"]

    xs = np.array([cost_of(c) for c in cands], dtype=float)
    ys = np.array([c["robustness"]["value"] for c in cands])
    lo = np.array([c["robustness"]["ci95"][0] for c in cands])
    hi = np.array([c["robustness"]["ci95"][1] for c in cands])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = ["tab:red" if c["name"] == "baseline" else ("tab:blue" if c["pareto"] else "tab:gray") for c in cands]
    ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], fmt="none", ecolor="0.6", capsize=3, zorder=1)
    ax.scatter(xs, ys, c=colors, zorder=2)
    front = sorted((x, y) for x, y, c in zip(xs, ys, cands) if c["pareto"])
    if len(front) > 1:
        ax.plot(*zip(*front), color="tab:blue", lw=1, ls="--", zorder=0, label="Pareto front")
    if np.all(xs > 0) and xs.max() / xs.min() > 100:
        ax.set_xscale("log")
    # labels: candidates at nearly the same point get their labels stacked downwards, not overprinted
    fig.canvas.draw()
    placed = []
    for i in np.lexsort((-ys, xs)):
        c = cands[i]
        px, py = ax.transData.transform((xs[i], ys[i]))
        dy = 4.0
        while any(abs(px - qx) < 120 and abs(py + dy - qy) < 9 for qx, qy in placed):
            dy -= 9.0
        placed.append((px, py + dy))
        tag = f"{c['rank']}. {c['name']}" + (" (unreliable)" if not c["robustness"]["reliable"] else "")
        ax.annotate(tag, (xs[i], ys[i]), textcoords="offset points", xytext=(5, dy), fontsize=7)
    ax.set_xlabel("cost (weighted scalar)" if cost == "scalar" else f"cost: {cost}")
    ax.set_ylabel(d["metric"] + (" (higher is better)" if d["higher_is_better"] else " (lower is better)"))
    ax.set_title("Mitigations: cost against robustness (95 % intervals)")
    if len(front) > 1:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _done(fig, path)


def plot_tail_check(result, path=None, candidates: int = 6):
    """Observed against expected counts beyond each candidate's 0.1 % and 99.9 % quantiles (the
    tail check every fit's verdict rests on), with the binomial 99 % range of the expected count.
    ``result``: a :class:`~reliability.fit.DeviceFitResult`.  Returns the figure."""
    from scipy import stats

    plt = _pyplot(path)
    cands = [c for c in result.candidates if c.success and c.gof is not None][:candidates]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    names = [c.name for c in cands]
    x = np.arange(len(cands))
    for j, (side, off, color) in enumerate((("low", -0.18, "tab:blue"), ("high", 0.18, "tab:orange"))):
        obs = []
        for c in cands:
            lo_r, hi_r = c.gof.tail_ratio
            obs.append(lo_r if side == "low" else hi_r)
        ax.bar(x + off, obs, width=0.34, color=color, label=f"{'below 0.1 %' if side == 'low' else 'above 99.9 %'}")
    n = result.n_rows
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1e-3) / (n * 1e-3)
    ax.axhspan(lo, hi, color="0.85", zorder=0, label="99 % range if the model is right")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel("observed / expected count")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title("Tail check: reads beyond the model's 0.1 % and 99.9 % quantiles", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _done(fig, path)


def plot_accuracy(simulation: dict | None, tail: dict | None, path=None):
    """The accuracy over chips: the histogram of simulated chips, and ``P(accuracy <= a)`` on a
    log-probability axis: the simulated chips' empirical CDF with the tail estimates (points, 95 %
    intervals) and the k-th percentile accuracies (horizontal intervals) drawn on it.  Both inputs
    in the report document's form (``simulation``: ``count_histogram``, ``n_samples``; ``tail``:
    :meth:`~reliability.sampling.TailResult.to_dict`)."""
    plt = _pyplot(path)
    panels = 2 if simulation is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.9), squeeze=False)
    ax_cdf = axes[0, -1]
    if simulation is not None:
        ax = axes[0, 0]
        n = simulation["n_samples"]
        counts = np.asarray(simulation["count_histogram"], dtype=float)
        nz = np.flatnonzero(counts)
        lo_c, hi_c = nz[0], nz[-1]
        acc = np.arange(lo_c, hi_c + 1) / n
        ax.bar(100 * acc, counts[lo_c:hi_c + 1], width=100 / n, color="tab:blue", edgecolor="none")
        ax.set_xlabel("accuracy (%)")
        ax.set_ylabel("chips")
        ax.set_title(f"{int(counts.sum()):,} simulated chips", fontsize=10)
        cdf = np.cumsum(counts) / counts.sum()
        keep = (cdf > 0) & (np.arange(n + 1) >= lo_c) & (np.arange(n + 1) <= hi_c)
        ax_cdf.step(100 * np.arange(n + 1)[keep] / n, cdf[keep], where="post", color="tab:blue",
                    label="simulated chips")
    if tail is not None:
        n = tail["n_samples"]
        for e in tail["estimates"]:
            p, (lo, hi) = e["probability"], e["ci95"]
            if p <= 0:
                continue
            color = "tab:red" if e["reliable"] else "tab:gray"
            ax_cdf.errorbar([100 * e["below"]], [p], yerr=[[p - max(lo, p * 1e-3)], [hi - p]], fmt="o", color=color,
                            capsize=3, ms=4)
        for q in tail["quantiles"]:
            a, (lo, hi) = q["accuracy"], q["ci95"]
            color = "tab:green" if q["reliable"] else "tab:gray"
            ax_cdf.errorbar([100 * a], [q["k"]], xerr=[[100 * (a - lo)], [100 * (hi - a)]], fmt="s", color=color,
                            capsize=3, ms=4)
        if tail["estimates"]:
            ax_cdf.plot([], [], "o", color="tab:red", label="P(accuracy <= a), 95 % interval")
        if tail["quantiles"]:
            ax_cdf.plot([], [], "s", color="tab:green", label="k-th percentile accuracy")
    ax_cdf.set_yscale("log")
    ax_cdf.set_xlabel("accuracy a (%)")
    ax_cdf.set_ylabel("P(accuracy <= a)")
    ax_cdf.set_title("Tail of the accuracy distribution", fontsize=10)
    ax_cdf.legend(fontsize=7, loc="lower right")
    ax_cdf.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return _done(fig, path)


def plot_worst_case(worst: dict, path=None):
    """Worst-case accuracy against the bound (every device within +/- k sigma), with the best of
    the random chips drawn at each bound and the clean accuracy; the minimal breaking bound when
    found.  ``worst``: :meth:`~reliability.worstcase.WorstCaseResult.to_dict`."""
    plt = _pyplot(path)
    b = worst["bounds"]
    k = [r["bound"] for r in b]
    fig, ax = plt.subplots(figsize=(6.5, 3.9))
    ax.plot(k, [100 * r["accuracy"] for r in b], "o-", color="tab:red", label="worst case found")
    ax.plot(k, [100 * r["random_min_accuracy"] for r in b], "s--", color="tab:blue",
            label=f"worst of {b[0]['random_chips']:,} random chips" if b else "random chips")
    ax.plot(k, [100 * r["random_mean_accuracy"] for r in b], ":", color="tab:blue", label="random chips, mean")
    ax.axhline(100 * worst["clean_accuracy"], color="k", lw=0.8, label="clean network")
    mb = worst.get("minimal_bound")
    if mb and mb.get("found"):
        ax.axvline(mb["bound"], color="tab:purple", ls="--", lw=1,
                   label=f"smallest bound reaching {100 * mb['threshold']:.0f} %: {mb['bound']:.3g}")
    ax.set_xlabel(f"bound k (sigma, {worst['norm']} norm)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Worst case within the bound", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _done(fig, path)


def _pyplot(path):
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _done(fig, path):
    if path is not None:
        import matplotlib.pyplot as plt

        fig.savefig(Path(path), dpi=130)
        plt.close(fig)
    return fig
