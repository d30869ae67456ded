"""Figures of device fits.  matplotlib is imported inside each function (optional dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_fit_qq"]


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
