"""Bad input on the command line: a named error and exit status, checked before any work, and
nothing overwritten or half-written."""

from __future__ import annotations

import pickle
import re

import numpy as np
import polars as pl
import pytest

from reliability.cli import main
from reliability.data.evalset import load_evalset
from reliability.errors import DataValidationError, ReliabilityError

WG = "weight-gaussian:sigma=0.05"


@pytest.fixture()
def evalfile(public_case, tmp_path):
    p = tmp_path / "eval.npz"
    np.savez(p, X=public_case.X, y=public_case.y)
    return p


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_device_sample_npy_name_without_suffix_is_checked_as_written(tmp_path, capsys):
    name = tmp_path / "draws"
    args = ["device", "sample", "pcm", "--target", "10", "--time", "0", "-n", "10", "--npy", str(name)]
    assert main(args) == 0
    assert (tmp_path / "draws.npy").exists() and "draws.npy" in capsys.readouterr().out
    before = np.load(tmp_path / "draws.npy")
    assert main(args[:-1] + [str(name)] + ["--seed", "5"]) == 2          # numpy would write draws.npy again
    assert "draws.npy exists" in _err(capsys)
    assert np.array_equal(np.load(tmp_path / "draws.npy"), before)


@pytest.mark.parametrize("cmd", [
    ["fit", "DATA", "--out", "{missing}/m.json"],
    ["tail", "--model", "MODEL", "--data", "EVAL", "--variation", WG, "--below", "0.8", "--json", "{missing}/t.json"],
    ["tail", "--model", "MODEL", "--data", "EVAL", "--variation", WG, "--below", "0.8",
     "--checkpoint", "{missing}/run.npz"],
    ["simulate", "--model", "MODEL", "--data", "EVAL", "--variation", WG, "--chips", "3", "--out", "{missing}/a.parquet"],
    ["rank", "--model", "MODEL", "--data", "EVAL", "--variation", WG, "--mitigation", "adc:bits=6",
     "--json", "{missing}/r.json"],
])
def test_output_folder_checked_before_any_work(cmd, public_case, evalfile, tmp_path, capsys):
    from reliability.data import load_bundled, write_measurements

    data = write_measurements(load_bundled("crosssim-set").frame, tmp_path / "m.csv") if cmd[0] == "fit" else None
    subs = {"MODEL": str(public_case.path / "model.onnx"), "EVAL": str(evalfile), "DATA": str(data)}
    missing = tmp_path / "no" / "such"
    args = [subs.get(a, a).replace("{missing}", str(missing)) for a in cmd]
    assert main(args) == 2
    err = _err(capsys)
    assert "does not exist; create it" in err and str(missing) in err


@pytest.mark.parametrize("flag, value, words", [
    ("--seed", "-1", "--seed: must be a whole number >= 0"),
    ("--chunk-size", "-3", "--chunk-size: must be a whole number >= 1"),
    ("--chips", "0", "--chips: must be a whole number >= 1"),
])
def test_negative_counts_and_seeds_are_refused_by_the_parser(flag, value, words, public_case, evalfile, tmp_path,
                                                            capsys):
    args = ["simulate", "--model", str(public_case.path / "model.onnx"), "--data", str(evalfile), "--variation", WG,
            "--chips", "3", "--out", str(tmp_path / "a.parquet"), flag, value]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert words in _err(capsys)


def test_evaluation_data_that_is_not_an_npz_gets_a_named_error(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    with open(tmp_path / "p.npz", "wb") as f:
        pickle.dump({"X": 1}, f)
    (tmp_path / "z.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(tmp_path / "s.npz", X=np.array(["a", "b"]), y=np.array([0, 1]))
    cases = {"a.npy": "single array", "p.npz": "not an .npz file", "z.npz": "not an .npz file",
             "s.npz": "X must hold numbers"}
    for name, words in cases.items():
        with pytest.raises(DataValidationError, match=words) as exc:
            load_evalset(tmp_path / name)
        assert "allow_pickle" not in str(exc.value) and "np.savez" in str(exc.value) or name == "s.npz"


def test_a_failed_fit_exits_with_the_flagged_status(tmp_path, capsys, monkeypatch):
    import reliability.fit as fit_pkg
    from reliability.cli._output import EXIT_FLAGGED
    from reliability.data import load_bundled, write_measurements

    data = write_measurements(load_bundled("crosssim-set").frame, tmp_path / "m.csv")
    real = fit_pkg.fit_device

    def failing(*a, **k):
        from dataclasses import replace

        return replace(real(*a, **k), success=False, message="tail check failed (test)")

    monkeypatch.setattr(fit_pkg, "fit_device", failing)
    out = tmp_path / "m.json"
    assert main(["fit", str(data), "--out", str(out), "--family", "normal"]) == EXIT_FLAGGED == 3
    assert out.exists()
    assert "marked FAILED" in _err(capsys)


@pytest.mark.parametrize("path, bad, words", [
    (("programming",), {"scal": 1.0}, "unknown field programming.'scal'"),
    (("chip_gain",), {"sigm": 0.1}, "unknown field chip_gain.'sigm'"),
    (("drift",), {"nu_meen": 0.05}, "unknown field drift.'nu_meen'"),
    (("read_noise",), {"qq": 0.01}, "unknown field read_noise.'qq'"),
    (("programming", "scale"), {"coeffs": [1.0]}, "unknown field programming.scale.'coeffs'"),
])
def test_misspelt_nested_device_fields_are_refused_with_their_path(path, bad, words):
    from reliability.devices import ChipGain, DeviceModel, load_device
    from reliability.errors import ModelSpecError

    d = load_device("pcm").with_(chip_gain=ChipGain(0.02)).to_dict()
    node = d
    for key in path[:-1]:
        node = node[key]
    target = node[path[-1]]
    if not isinstance(target, dict):
        target = node[path[-1]] = {"kind": "constant", "value": float(target)}
    target.update(bad)
    with pytest.raises(ModelSpecError) as exc:
        DeviceModel.from_dict(d)
    assert words in str(exc.value) and "Fix the spelling" in str(exc.value)


def test_device_ranges_and_version_are_validated():
    from reliability.devices import ChipGain, DeviceModel, load_device
    from reliability.errors import ModelSpecError

    d = load_device("rram").to_dict()
    d["programming"]["scale"] = -0.5
    with pytest.raises(ModelSpecError, match="programming.scale is -0.5"):
        DeviceModel.from_dict(d)
    with pytest.raises(ModelSpecError, match="at most 1"):
        ChipGain(5.0)
    d = load_device("rram").to_dict()
    d["version"] = "1"
    with pytest.raises(ModelSpecError, match="the number 1, not the string '1'"):
        DeviceModel.from_dict(d)
    with pytest.raises(ModelSpecError, match="ends in a colon"):
        load_device("weight-gaussian:")


@pytest.mark.parametrize("absurd", [1e300, 5e6])
def test_an_absurd_reading_is_named_and_refused_or_excluded(absurd, tmp_path, capsys):
    import warnings

    from reliability.data import read_measurements, simulate_campaign, write_measurements
    from reliability.devices import load_device
    from reliability.fit import fit_device

    df = simulate_campaign(load_device("pcm"), np.linspace(1, 25, 5), [20.0], n_chips=1, n_devices=60, rng=0)
    x = df["conductance_uS"].to_numpy().copy()
    x[17] = absurd
    df = df.with_columns(pl.Series("conductance_uS", x))
    path = write_measurements(df, tmp_path / "m.csv")
    table = read_measurements(path)
    row = int(table.frame["row"][17])
    with pytest.raises(DataValidationError, match=re.escape(f"row {row}: {absurd:.4g} uS")) as exc:
        fit_device(table, family="normal")
    assert "drop_outliers=True" in str(exc.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)          # no overflow warning leaks
        res = fit_device(table, family="normal", drop_outliers=True)
    assert any(f"row {row}" in n for n in res.notes)
    assert res.n_rows == table.frame.height - 1
    assert res.model.programming.std(np.array([10.0]))[0] < 5
    out = tmp_path / "m.json"
    assert main(["fit", str(path), "--out", str(out), "--family", "normal"]) == 2
    assert f"row {row}" in _err(capsys) and not out.exists()
    assert main(["fit", str(path), "--out", str(out), "--family", "normal", "--drop-outliers"]) in (0, 3)
    assert out.exists()


@pytest.mark.parametrize("censor, words", [(["nan", "30"], "finite"), (["5", "1"], "must be below HIGH")])
def test_censor_bounds_are_checked(censor, words, tmp_path, capsys):
    from reliability.data import load_bundled, write_measurements

    data = write_measurements(load_bundled("crosssim-set").frame, tmp_path / "m.csv")
    assert main(["fit", str(data), "--out", str(tmp_path / "m.json"), "--censor", *censor]) == 2
    assert words in _err(capsys)


@pytest.mark.slow
@pytest.mark.parametrize("method, budget", [("auto", 2000), ("subset", 600)])
def test_a_quantile_is_no_more_reliable_than_the_estimates_it_rests_on(public_case, method, budget):
    from reliability.sampling import estimate_tail

    c = public_case
    n = len(c.y)
    first = estimate_tail(c.network, c.X, c.y, c.variation, quantiles=[1e-3, 1e-4], budget=budget, rng=3, method=method)
    for q in first.quantiles:
        cc = round(q.accuracy * n)
        again = estimate_tail(c.network, c.X, c.y, c.variation, below=[cc / n, (cc - 1) / n], quantiles=[q.k],
                              budget=budget, rng=3, method=method)
        q2 = again.quantiles[0]
        assert round(q2.accuracy * n) == cc                    # the same run
        if not all(e.reliable for e in again.estimates):
            assert not q2.reliable and q2.reason


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04truncated", None])
def test_a_damaged_checkpoint_is_named_not_a_traceback(content, public_case, evalfile, tmp_path, capsys):
    ck = tmp_path / "run.npz"
    if content is None:                           # a truncated real checkpoint
        args0 = ["tail", "--model", str(public_case.path / "model.onnx"), "--data", str(evalfile), "--variation", WG,
                 "--below", "0.85", "--budget", "400", "--method", "subset", "--checkpoint", str(ck)]
        assert main(args0) == 0
        data = ck.read_bytes()
        ck.write_bytes(data[: len(data) // 2])
    else:
        ck.write_bytes(content)
    args = ["tail", "--model", str(public_case.path / "model.onnx"), "--data", str(evalfile), "--variation", WG,
            "--below", "0.85", "--budget", "400", "--method", "subset", "--checkpoint", str(ck)]
    assert main(args) == 2
    err = _err(capsys)
    assert "damaged or not a checkpoint" in err or "not a checkpoint" in err
    assert "delete it" in err


# ------------------------------------------------------------------ messages in the caller's words
def _fit_flags() -> set[str]:
    """Every flag ``reliability fit`` accepts."""
    import argparse

    from reliability.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {s for a in sub.choices["fit"]._actions for s in a.option_strings}


def _read_wide(path, **kw):
    from reliability.data import from_wide

    return from_wide(path, **kw)


def _fit(path, **kw):
    from reliability.data import read_measurements
    from reliability.fit import fit_device

    return fit_device(read_measurements(path), family="normal", **kw)


_LEVELS = "".join(f"{t},{t * (1 + 0.01 * (i % 3))}\n" for i, t in enumerate((1, 5, 10, 20, 25) * 5))
_WIDE = "rmp1,rmp2,rmp3\n1e-4,1.1e-4,1.2e-4\n2e-4,2.1e-4,2.2e-4\n"

# (file, command-line arguments, Python reader and its keywords, words on the command line, words in Python)
BAD_CSV = {
    "no unit": ("target,conductance\n1,1\n", [], None, {}, "pass --unit uS", "pass unit='uS'"),
    "invalid cells": ("target_uS,conductance_uS\n1,\n2,x\n", [], None, {}, "pass --drop-invalid",
                      "pass drop_invalid=True"),
    "current without voltage": ("target_uS,current_A\n1,1e-6\n", [], None, {}, "--read-voltage <volts>",
                                "read_voltage=<volts>"),
    "voltage for conductances": ("target_uS,conductance_uS\n1,1\n", ["--read-voltage", "0.1"], None,
                                 {"read_voltage": 0.1}, "drop --read-voltage 0.1", "drop read_voltage=0.1"),
    "unit contradicts suffix": ("target_uS,conductance_mS\n1,1\n", ["--unit", "uS"], None, {"unit": "uS"},
                                "drop --unit uS", "drop unit='uS'"),
    "two conductances": ("target_uS,conductance_uS,conductance_mS\n1,1,1\n", [], None, {}, "--column <name>=)",
                         "columns={'<name>': None}"),
    "conductance and current": ("target_uS,conductance_uS,current_A\n1,1,1\n", [], None, {}, "--column current_A=",
                                "columns={'current_A': None}"),
    "misspelt required": ("targt_uS,conductance_uS\n1,1\n", [], None, {}, "--column targt_uS=target_uS",
                          "columns={'targt_uS': 'target_uS'}"),
    "misspelt extra": ("target_uS,conductance_uS,conductnce_uS\n1,1,1\n", [], None, {},
                       "--column conductnce_uS=conductance_uS", "columns={'conductnce_uS': None}"),
    "unknown suffix": ("target_uS,conductance_xS\n1,1\n", [], None, {}, "--column conductance_xS=",
                       "columns={'conductance_xS': None}"),
    "current suffix on conductance": ("target_uS,conductance_A\n1,1\n", [], None, {}, "--read-voltage <volts>",
                                      "read_voltage=<volts>"),
    "bad unit": ("target_uS,conductance_uS\n1,1\n", ["--unit", "kS"], None, {"unit": "kS"}, "--unit kS is not",
                 "unit='kS' is not"),
    "bad read voltage": ("target_uS,current_A\n1,1e-6\n", ["--read-voltage", "-1"], None, {"read_voltage": -1.0},
                         "got --read-voltage -1.0", "got read_voltage=-1.0"),
    "map a missing column": ("target_uS,G\n1,1\n", ["--column", "X=conductance_uS"], None,
                             {"columns": {"X": "conductance_uS"}}, "--column X=conductance_uS maps the column 'X'",
                             "columns={'X': 'conductance_uS'} maps the column 'X'"),
    "map onto a taken name": ("target_uS,G,conductance_uS\n1,1,1\n", ["--column", "G=conductance_uS"], None,
                              {"columns": {"G": "conductance_uS"}}, "(--column G=conductance_uS)",
                              "(columns={'G': 'conductance_uS'})"),
    "map onto a name outside the schema": ("target_uS,G\n1,1\n", ["--column", "G=cond_uS"], None,
                                           {"columns": {"G": "cond_uS"}},
                                           "--column G=cond_uS maps 'G' to 'cond_uS', which is not a schema column",
                                           "columns={'G': 'cond_uS'} maps 'G' to 'cond_uS'"),
    "wide without --wide": (_WIDE, [], None, {}, "read it with --wide", "read it with reliability.data.from_wide("),
    "wide without a unit": (_WIDE, ["--wide"], _read_wide, {}, "pass --unit uS", "pass unit='uS'"),
    "wide current without voltage": (_WIDE, ["--wide", "--unit", "A"], _read_wide, {"unit": "A"},
                                     "--unit A needs --read-voltage <volts>", "unit='A' needs read_voltage=<volts>"),
    "wide conductance with voltage": (_WIDE, ["--wide", "--unit", "uS", "--read-voltage", "0.1"], _read_wide,
                                      {"unit": "uS", "read_voltage": 0.1}, "drop --read-voltage 0.1",
                                      "drop read_voltage=0.1"),
    "dropped rows and ignored column": ("target_uS,conductance_uS,notes\n1,1,x\n2,,y\n", ["--drop-invalid"], None,
                                        {"drop_invalid": True}, "--column <name>=<schema name>",
                                        "columns={'<name>': '<schema name>'}"),
    "gross outlier": ("target_uS,conductance_uS\n" + _LEVELS + "10,1e9\n", ["--family", "normal"], _fit, {},
                      "exclude them with --drop-outliers", "exclude them with drop_outliers=True"),
}
_PYTHON_WORDS = re.compile(r"\b[a-z_]+=(True|False|None|'|\{|<)")


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_csv_messages_speak_the_callers_language(case, tmp_path, capsys):
    import warnings

    from reliability.data import read_measurements
    from reliability.errors import ReliabilityError

    text, args, reader, kw, cli_words, py_words = BAD_CSV[case]
    path = tmp_path / "m.csv"
    path.write_text(text)
    assert main(["fit", str(path), "--out", str(tmp_path / "m.json"), *args]) == 2
    err = _err(capsys)
    assert cli_words in err, err
    for python in ("=True", "unit=", "columns=", "current_unit", "read_voltage=", "drop_invalid", "overwrite",
                   "from_wide"):
        assert python not in err, (python, err)
    assert not _PYTHON_WORDS.search(err), err
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", err))
    assert named and named <= _fit_flags(), named - _fit_flags()
    # the same file from Python names the parameters
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ReliabilityError) as exc:
        warnings.simplefilter("always")
        (reader or read_measurements)(path, **kw)
        if case == "dropped rows and ignored column":          # read fine: the warning is the message
            raise ReliabilityError(" ".join(str(w.message) for w in caught))
    msg = str(exc.value)
    assert py_words in msg, msg
    assert not re.search(r"(?<![\w-])--[a-z]", msg), msg


def test_column_maps_and_leaves_out_columns(tmp_path, capsys):
    from reliability.data import read_measurements, simulate_campaign
    from reliability.devices import load_device

    df = simulate_campaign(load_device("pcm"), np.linspace(1, 25, 5), [20.0], n_chips=1, n_devices=30, rng=0)
    df = df.rename({"target_uS": "T", "conductance_uS": "G meas"}).with_columns(pl.lit("ok").alias("notes"))
    path = tmp_path / "renamed.csv"
    df.write_csv(path)
    out = tmp_path / "m.json"
    assert main(["fit", str(path), "--out", str(out), "--family", "normal"]) == 2
    assert "--column <file name>=<schema name>" in _err(capsys) and not out.exists()
    args = ["fit", str(path), "--out", str(out), "--family", "normal", "--column", "T=target_uS",
            "--column", "G meas=conductance_uS", "--column", "notes="]
    assert main(args) in (0, 3)
    assert out.exists()
    err = _err(capsys)
    assert "ignored columns" not in err and "notes" not in err
    table = read_measurements(path, columns={"T": "target_uS", "G meas": "conductance_uS", "notes": None})
    assert table.frame.height == df.height and table.ignored_columns == ()
    np.testing.assert_allclose(table.frame["conductance_uS"].to_numpy(), df["G meas"].to_numpy())


@pytest.mark.parametrize("args, words", [
    (["--column", "T"], "expected FILE_NAME=SCHEMA_NAME"),
    (["--column", "=target_uS"], "expected FILE_NAME=SCHEMA_NAME"),
])
def test_bad_column_syntax_is_a_usage_error(args, words, tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text("T,conductance_uS\n1,1\n")
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(path), "--out", str(tmp_path / "m.json"), *args])
    assert exc.value.code == 2
    assert words in _err(capsys)


@pytest.mark.parametrize("args, words", [
    (["--wide", "--unit", "A", "--read-voltage", "0.1", "--column", "rmp1=x"], "cannot be combined with --wide"),
    (["--column", "T=target_uS", "--column", "T=conductance_uS"], "given twice"),
])
def test_column_conflicts_are_named(args, words, tmp_path, capsys):
    path = tmp_path / "m.csv"
    path.write_text(_WIDE)
    out = tmp_path / "m.json"
    assert main(["fit", str(path), "--out", str(out), *args]) == 2
    assert words in _err(capsys) and not out.exists()


def test_a_wide_file_read_as_long_suggests_wide(tmp_path, capsys):
    from reliability.data import load_bundled, read_measurements

    src = load_bundled("crosssim-set").source
    out = tmp_path / "m.json"
    assert main(["fit", src, "--out", str(out)]) == 2
    err = _err(capsys)
    assert "looks like a wide table" in err and "--wide" in err and "--unit <unit>" in err
    with pytest.raises(DataValidationError, match=re.escape("reliability.data.from_wide(...)")):
        read_measurements(src)
    assert main(["fit", src, "--out", str(out), "--wide", "--unit", "A", "--read-voltage", "0.1",
                 "--family", "normal", "--state", "poly"]) in (0, 3)
    assert out.exists()


def test_time_origin_t0_reads_aihwkit_convention_files(tmp_path, capsys):
    """A file whose time_s counts from the drift reference t0 (aihwkit's convention) fitted with
    --time-origin t0 gives the model of the same reads counted from programming; fitted as if it
    counted from programming, its drift is different (the convention matters)."""
    import polars as pl

    from reliability.data import simulate_campaign, write_measurements
    from reliability.devices import load_device
    from reliability.fit import fit_device

    frame = simulate_campaign(load_device("pcm"), [4, 10, 16, 22], [20, 200, 3600, 86400], n_chips=3,
                              n_devices=80, rng=3)
    shifted = frame.with_columns(pl.col("time_s") - 20.0)
    ref = fit_device(frame, family="normal", state="poly")
    t0 = fit_device(shifted, family="normal", state="poly", time_origin="t0")
    naive = fit_device(shifted.filter(pl.col("time_s") > 0), family="normal", state="poly")
    strip = lambda m: {k: v for k, v in m.to_dict().items() if k != "metadata"}  # noqa: E731
    assert strip(t0.model) == strip(ref.model)
    assert t0.model.metadata["fit"]["time_origin_of_the_data"] == "t0"
    assert any("20 s added" in n for n in t0.notes)
    assert strip(naive.model)["drift"] != strip(ref.model)["drift"]
    with pytest.raises(ReliabilityError, match="time_origin='t1' is not a time origin"):
        fit_device(shifted, time_origin="t1")
    data = write_measurements(shifted, tmp_path / "t0.csv")
    assert main(["fit", str(data), "--out", str(tmp_path / "m.json"), "--family", "normal", "--state", "poly",
                 "--time-origin", "t0"]) in (0, 3)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["fit", str(data), "--out", str(tmp_path / "n.json"), "--time-origin", "t1"])
    assert "--time-origin" in capsys.readouterr().err


def test_noise_free_readings_fit_without_numpy_warnings():
    """Readings at exactly 1.01 x target (no spread at all) drive the scale towards 0: the fit must
    handle the overflow itself, not leak numpy's RuntimeWarnings."""
    import warnings

    import polars as pl

    from reliability.fit import fit_device

    T = np.repeat([5.0, 10.0, 15.0, 20.0], 50)
    frame = pl.DataFrame({"target_uS": T, "conductance_uS": 1.01 * T, "time_s": np.zeros(T.size)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = fit_device(frame)
    assert res.model is not None
