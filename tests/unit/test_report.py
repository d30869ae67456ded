"""Figures: the QQ figure of a fit is drawn and written."""

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
