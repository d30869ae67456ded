"""Figures of device fits and mitigation rankings.  matplotlib is imported inside each function
(optional dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_fit_qq", "plot_ranking"]


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
    """Cost against robustness of every candidate of a :class:`~reliability.mitigation.Ranking`:
    robustness with its 95 % interval, the Pareto front joined, the baseline marked.

    ``cost``: ``"scalar"`` (the weighted scalar) or an entry of the cost vector (e.g.
    ``"write_time_s"``).  Returns the figure; writes it to ``path`` when given."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cands = ranking.candidates

    def cost_of(c):
        return c.cost.scalar if cost == "scalar" else c.cost.values[cost]

    xs = np.array([cost_of(c) for c in cands], dtype=float)
    ys = np.array([c.robustness.value for c in cands])
    lo = np.array([c.robustness.ci95[0] for c in cands])
    hi = np.array([c.robustness.ci95[1] for c in cands])
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = ["tab:red" if c.name == "baseline" else ("tab:blue" if c.pareto else "tab:gray") for c in cands]
    ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], fmt="none", ecolor="0.6", capsize=3, zorder=1)
    ax.scatter(xs, ys, c=colors, zorder=2)
    front = sorted((x, y) for x, y, c in zip(xs, ys, cands) if c.pareto)
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
        tag = f"{c.rank}. {c.name}" + (" (unreliable)" if not c.robustness.reliable else "")
        ax.annotate(tag, (xs[i], ys[i]), textcoords="offset points", xytext=(5, dy), fontsize=7)
    ax.set_xlabel("cost (weighted scalar)" if cost == "scalar" else f"cost: {cost}")
    ax.set_ylabel(ranking.metric + (" (higher is better)" if ranking.higher_is_better else " (lower is better)"))
    ax.set_title("Mitigations: cost against robustness (95 % intervals)")
    if len(front) > 1:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=130)
    return fig
