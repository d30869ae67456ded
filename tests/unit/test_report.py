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
