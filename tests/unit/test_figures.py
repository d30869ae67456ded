"""Figures: the QQ figure of a fit is drawn and written; the report's other figures on their own."""

import numpy as np

from reliability.data import simulate_campaign
from reliability.devices import Constant, DeviceModel, ProgrammingVariation
from reliability.fit import fit_device
from reliability.report import plot_fit_qq


def test_qq_figure_written(tmp_path):
    m = DeviceModel(programming=ProgrammingVariation("normal", scale=Constant(0.5)))
    df = simulate_campaign(m, np.array([5.0, 10.0]), [0.0], n_chips=1, n_devices=500, rng=0)
    res = fit_device(df)
    path = tmp_path / "qq.png"
    fig = plot_fit_qq(res, path, candidates=2)
    assert path.stat().st_size > 10_000
    assert len(fig.axes) == 2
    # binned levels: QQ compares deviations, so a normal fit to normal data lies on the diagonal
    qq = res.qq_table()
    assert (qq["model_uS"] - qq["empirical_uS"]).abs().max() < 0.25


def test_qq_of_binned_levels_compares_deviations():
    """With more than 32 distinct targets the fitter bins them; the QQ data must not mix the
    spread of targets within a bin into the measured quantiles (regression test)."""
    m = DeviceModel(programming=ProgrammingVariation("normal", scale=Constant(0.5)))
    df = simulate_campaign(m, np.linspace(5.0, 45.0, 40), [0.0], n_chips=1, n_devices=100, rng=1)
    res = fit_device(df, family="normal")
    assert res.n_levels == 16
    qq = res.qq_table().filter((res.qq_table()["prob"] >= 0.25) & (res.qq_table()["prob"] <= 0.75))
    # quartile SE with ~250 rows a bin: ~1.4 * 0.5 / sqrt(250) = 0.044; allow 4 SE
    assert (qq["model_uS"] - qq["empirical_uS"]).abs().max() < 4 * 0.044


def test_report_figures_draw_from_json_forms(tmp_path):
    """The accuracy, worst-case and tail-check figures draw from the documents' dict forms."""
    from reliability.report import plot_accuracy, plot_tail_check, plot_worst_case

    counts = np.zeros(11, dtype=int)
    counts[[7, 8, 9, 10]] = [1, 5, 30, 64]
    sim = {"count_histogram": counts.tolist(), "n_samples": 10}
    tail = {"n_samples": 10, "estimates": [{"below": 0.6, "probability": 1e-4, "ci95": [5e-5, 2e-4], "reliable": True}],
            "quantiles": [{"k": 1e-3, "accuracy": 0.6, "ci95": [0.5, 0.7], "reliable": False}]}
    fig = plot_accuracy(sim, tail, tmp_path / "acc.png")
    assert len(fig.axes) == 2 and (tmp_path / "acc.png").stat().st_size > 5_000
    assert fig.axes[1].get_yscale() == "log"
    assert len(plot_accuracy(None, tail).axes) == 1
    wc = {"bounds": [{"bound": b, "accuracy": a, "random_min_accuracy": 0.9, "random_mean_accuracy": 0.92,
                      "random_chips": 20} for b, a in ((1.0, 0.8), (2.0, 0.5))],
          "clean_accuracy": 0.93, "norm": "linf", "minimal_bound": {"found": True, "bound": 1.5, "threshold": 0.6}}
    fig = plot_worst_case(wc, tmp_path / "wc.png")
    assert (tmp_path / "wc.png").is_file() and "1.5" in " ".join(t.get_text() for t in fig.axes[0].get_legend().texts)
    m = DeviceModel(programming=ProgrammingVariation("normal", scale=Constant(0.5)))
    res = fit_device(simulate_campaign(m, np.array([5.0, 10.0]), [0.0], n_chips=1, n_devices=300, rng=0))
    fig = plot_tail_check(res, tmp_path / "tc.png")
    assert len(fig.axes[0].patches) >= 2 * sum(c.success and c.gof is not None for c in res.candidates[:6])
