"""End to end through the command line: demo, fit -> device sample on an unseen PCM-like campaign.

Acceptance (issue 2): on a PCM-like data set (programming noise, drift, 1/f read noise, stuck-at
faults, chip gain; 4 chips x 13 levels x 400 devices x 3 read times, long format with ``_uS`` and
``time_s``), ``reliability fit`` then ``reliability device sample`` reproduce the true distribution
at a target and time: 5 %..95 % quantiles within 5 % (or 0.25 uS), standard deviation within 10 %,
stuck-at fractions within 30 %.  The truth is the aihwkit-derived ``pcm`` preset plus stuck-at
faults and chip gain; the comparison sample is 200,000 draws from the truth (quantile SE < 0.01 uS).
"""

import json

import numpy as np
import pytest

from reliability import __version__
from reliability.cli import main
from reliability.data import simulate_campaign, write_measurements
from reliability.devices import ChipGain, DeviceModel, StuckAt
from reliability.devices.presets import get_preset

TRUTH = get_preset("pcm").with_(stuck=StuckAt(0.01, 0.005, 0.0, 25.0, 0.0, 0.3), chip_gain=ChipGain(0.03))


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_runs_without_files(capsys, tmp_path):
    assert main(["demo", "--out", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "chose" in out or "chosen" in out
    assert "worst-case accuracy" in out and "subset simulation" in out
    assert DeviceModel.load(tmp_path / "m.json").programming is not None


@pytest.mark.parametrize("seed,ids", [(11, False), (12, True)])
@pytest.mark.slow
def test_pcm_like_fit_then_sample_reproduces_truth(tmp_path, capsys, seed, ids):
    df = simulate_campaign(TRUTH, np.linspace(0, 25, 13), [20.0, 3600.0, 86400.0], n_chips=4, n_devices=400, rng=seed)
    if not ids:
        df = df.drop("device")
    data = write_measurements(df, tmp_path / "pcm_like.csv")
    model_path = tmp_path / "device.json"
    assert main(["fit", str(data), "--out", str(model_path)]) == 0
    fitted = DeviceModel.load(model_path)
    assert abs(fitted.stuck.p_low - 0.01) / 0.01 < 0.3
    assert abs(fitted.stuck.p_high - 0.005) / 0.005 < 0.3
    for target, time in ((4.1666667, 3600.0), (5.0, 600.0), (10.4166667, 3600.0), (20.8333333, 86400.0), (12.5, 604800.0)):
        npy = tmp_path / f"s_{target:.0f}_{time:.0f}.npy"
        assert main(["device", "sample", str(model_path), "--target", str(target), "--time", str(time),
                     "-n", "200000", "--seed", "1", "--npy", str(npy)]) == 0
        got = np.load(npy)
        ref = TRUTH.sample(target, time, size=200000, rng=np.random.default_rng(99))
        probs = np.arange(5, 96, 5)
        qg, qr = np.percentile(got, probs), np.percentile(ref, probs)
        ok = (np.abs(qg - qr) <= 0.05 * np.abs(qr)) | (np.abs(qg - qr) <= 0.25)
        assert ok.all(), (target, time, qr.round(3), qg.round(3))
        assert abs(got.std() / ref.std() - 1) < 0.10, (target, time, ref.std(), got.std())


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["device", "show", "no-such-preset"]) == 2
    assert "error:" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("target_uS,conductance_uS\n1.0,abc\n")
    assert main(["fit", str(bad), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "conductance_uS" in err
    out = tmp_path / "exists.json"
    out.write_text("{}")
    assert main(["fit", str(bad), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_device_show_and_presets(capsys):
    assert main(["device", "show", "pcm", "--json"]) == 0
    out = capsys.readouterr().out
    assert "uS" in out and json.loads(out[out.index("{"):])["schema"] == "nvcim-reliability/device-model"
    assert main(["device", "presets"]) == 0
    assert "pcm" in capsys.readouterr().out
