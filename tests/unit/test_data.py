"""Tests of reliability.data: schema, units, validation messages, readers, wide files, synthetic data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from reliability.data import (
    MeasurementTable, bundled_names, from_wide, load_bundled, read_measurements, simulate_campaign, validate,
    write_measurements,
)
from reliability.errors import DataValidationError

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "reliability" / "data" / "bundled"


def write(tmp_path: Path, text: str, name: str = "meas.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def raises(path_or_source, match_all: list[str], **kw) -> str:
    """Read and expect a DataValidationError whose message contains every string in match_all."""
    with pytest.raises(DataValidationError) as info:
        read_measurements(path_or_source, **kw)
    msg = str(info.value)
    for part in match_all:
        assert part in msg, f"{part!r} not in message:\n{msg}"
    return msg


GOOD = "target_uS,conductance_uS,time_s\n10,10.5,0\n20,19.0,0\n30,31.0,1\n"


# --------------------------------------------------------------------------------------------
# well-formed input
# --------------------------------------------------------------------------------------------
def test_good_csv_canonical_form(tmp_path):
    t = read_measurements(write(tmp_path, GOOD))
    assert isinstance(t, MeasurementTable)
    assert t.frame.columns == ["target_uS", "conductance_uS", "time_s", "row"]
    assert t.frame.dtypes == [pl.Float64, pl.Float64, pl.Float64, pl.Int64]
    assert t.frame["row"].to_list() == [2, 3, 4]  # header is line 1
    assert t.n_dropped == 0 and t.drop_reasons == {} and t.unit_in == "uS"
    np.testing.assert_array_equal(t.levels, [10, 20, 30])
    np.testing.assert_array_equal(t.times, [0, 1])
    assert t.n_chips == 1 and not t.has_device_ids
    assert t.to_polars() is t.frame
    assert "3 rows" in t.summary()
    assert t.source.endswith("meas.csv")


def test_time_defaults_to_zero_and_ids_are_strings():
    t = read_measurements({"target_uS": [1.0, 2.0], "conductance_uS": [1.0, 2.0], "chip": [3, 4],
                           "device": ["chip 3/a", " b "], "cycle": [1.0, 2.0]})
    f = t.frame
    assert f.columns == ["target_uS", "conductance_uS", "time_s", "chip", "device", "cycle", "row"]
    assert f["time_s"].to_list() == [0.0, 0.0]
    assert f["chip"].dtype == pl.String and f["chip"].to_list() == ["3", "4"]
    assert f["device"].to_list() == ["chip 3/a", "b"]
    assert f["cycle"].to_list() == ["1", "2"]  # whole-number floats lose the ".0"
    assert f["row"].to_list() == [1, 2] and t.source == "<memory>"
    assert t.n_chips == 2 and t.has_device_ids


@pytest.mark.parametrize("suffix, factor", [("S", 1e6), ("mS", 1e3), ("uS", 1.0), ("nS", 1e-3), ("µS", 1.0)])
def test_conductance_units(tmp_path, suffix, factor):
    t = read_measurements(write(tmp_path, f"target_{suffix},conductance_{suffix}\n2,3\n0.5,0.25\n"))
    np.testing.assert_allclose(t.frame["target_uS"].to_numpy(), np.array([2, 0.5]) * factor, rtol=1e-15)
    np.testing.assert_allclose(t.frame["conductance_uS"].to_numpy(), np.array([3, 0.25]) * factor, rtol=1e-15)


def test_unit_option_for_unsuffixed_columns(tmp_path):
    t = read_measurements(write(tmp_path, "target,conductance\n1,2\n"), unit="mS")
    assert t.frame["conductance_uS"].to_list() == [2000.0] and t.unit_in == "mS"


def test_current_with_read_voltage_option(tmp_path):
    # 1.6e-4 A at 0.1 V = 1.6e-3 S = 1600 uS
    t = read_measurements(write(tmp_path, "target_uS,current_A\n1600,1.6e-4\n"), read_voltage=0.1)
    np.testing.assert_allclose(t.frame["conductance_uS"].to_numpy(), [1600.0], rtol=1e-12)
    assert t.unit_in == "target uS, measured A at 0.1 V"


def test_current_with_voltage_column(tmp_path):
    # 20 uA at 200 mV = 1e-4 S = 100 uS; 5 uA at 100 mV = 50 uS
    t = read_measurements(write(tmp_path, "target_uS,current_uA,read_voltage_mV\n100,20,200\n50,5,100\n"))
    np.testing.assert_allclose(t.frame["conductance_uS"].to_numpy(), [100.0, 50.0], rtol=1e-12)


def test_time_and_temperature_units(tmp_path):
    t = read_measurements(write(tmp_path, "target_uS,conductance_uS,time_h,temperature_K\n1,1,2,300\n"))
    assert t.frame["time_s"].to_list() == [7200.0]
    np.testing.assert_allclose(t.frame["temperature_C"].to_numpy(), [26.85])


def test_columns_mapping(tmp_path):
    p = write(tmp_path, "G_target,G_meas,notes\n1,1.1,ok\n2,2.2,ok\n")
    t = read_measurements(p, columns={"G_target": "target_uS", "G_meas": "conductance_uS", "notes": None})
    assert t.frame["conductance_uS"].to_list() == [1.1, 2.2] and t.ignored_columns == ()


def test_unknown_extra_column_is_ignored_with_warning(tmp_path):
    with pytest.warns(UserWarning, match="operator"):
        t = read_measurements(write(tmp_path, "target_uS,conductance_uS,operator\n1,1,alice\n"))
    assert t.ignored_columns == ("operator",)


def test_blank_lines_are_not_data_and_keep_line_numbers(tmp_path):
    t = read_measurements(write(tmp_path, "target_uS,conductance_uS\n1,1\n\n2,2\n\n"))
    assert t.frame["row"].to_list() == [2, 4]
    assert t.n_dropped == 0 and t.drop_reasons == {"blank lines (not data)": 2}


def test_quoted_csv_keeps_editor_line_numbers(tmp_path):
    # a quoted cell spanning two lines: the bad cell after it is still reported at its editor line
    p = write(tmp_path, '"target_uS","conductance_uS","note"\n1,1,"two\nlines"\n2,"x",ok\n')
    raises(p, ["line 4", "'x'", "conductance_uS"])


def test_semicolon_separator(tmp_path):
    t = read_measurements(write(tmp_path, "target_uS;conductance_uS\n1;2\n"))
    assert t.frame["conductance_uS"].to_list() == [2.0]


# --------------------------------------------------------------------------------------------
# bad input: one test per case, checking file, line, column, rule, value and fix
# --------------------------------------------------------------------------------------------
def test_missing_required_column(tmp_path):
    p = write(tmp_path, "conductance_uS,time_s\n1,0\n")
    raises(p, ["meas.csv", "line 1 (header)", "missing required column 'target'", "target_uS", "Add the column"])


def test_misspelt_column_suggests_closest_name(tmp_path):
    p = write(tmp_path, "target_uS,conductnce_uS\n1,1\n")
    raises(p, ["meas.csv", "line 1", "conductnce_uS: did you mean conductance_uS?", "columns="])


def test_misspelt_optional_column_is_an_error_not_ignored(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS,tme_s\n1,1,5\n")
    raises(p, ["tme_s: did you mean time_s?", "Rename it"])


def test_non_numeric_cell(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS\n1,1\n2,abc\n3,4\n")
    msg = raises(p, ["meas.csv", "line 3: 'abc'", "column 'conductance_uS'", "must be a number",
                     "decimal separator", "drop_invalid=True"])
    assert "line 4" not in msg and "1 of 3 rows" in msg


def test_non_numeric_decimal_comma(tmp_path):
    p = write(tmp_path, 'target_uS,conductance_uS\n1,"1,5"\n')
    raises(p, ["line 2: '1,5'", "conductance_uS", "'.' as the decimal separator"])


def test_too_many_fields(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS\n1,1\n3,1,5\n")
    raises(p, ["meas.csv", "line 3", "3 fields but the header has 2"])


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN"])
def test_nan_and_inf(tmp_path, bad):
    p = write(tmp_path, f"target_uS,conductance_uS\n1,1\n2,{bad}\n")
    raises(p, ["meas.csv", f"line 3: '{bad}'", "column 'conductance_uS' must be finite", "drop_invalid=True"])


def test_nan_in_memory_frame_names_row():
    raises({"target_uS": [1.0, 2.0], "conductance_uS": [1.0, float("nan")]},
           ["<memory>", "row 2: nan", "conductance_uS", "must be finite"])


def test_negative_conductance(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS\n1,1\n2,-0.5\n")
    raises(p, ["meas.csv", "line 3: '-0.5'", "column 'conductance_uS' must not be negative", "sign convention",
               "drop_invalid=True"])


def test_negative_target(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS\n-1,1\n")
    raises(p, ["line 2: '-1'", "column 'target_uS' must not be negative"])


def test_negative_current(tmp_path):
    p = write(tmp_path, "target_uS,current_A\n1,1e-6\n1,-1e-6\n")
    raises(p, ["line 3: '-1e-6'", "current_A"], read_voltage=0.1)


def test_unknown_unit_suffix(tmp_path):
    p = write(tmp_path, "target_uS,conductance_kS\n1,1\n")
    raises(p, ["meas.csv", "line 1 (header)", "conductance_kS", "unknown unit suffix '_kS'", "_mS", "_uS",
               "Rename the column"])


def test_unit_suffix_case_is_suggested(tmp_path):
    p = write(tmp_path, "target_uS,conductance_ms\n1,1\n")
    raises(p, ["unknown unit suffix '_ms'", "Did you mean conductance_mS?"])


def test_current_unit_on_conductance(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uA\n1,1\n")
    raises(p, ["conductance_uA", "'_uA' is a current unit", "current_uA", "read voltage"])


def test_no_unit(tmp_path):
    p = write(tmp_path, "target,conductance\n1,1\n")
    raises(p, ["meas.csv", "column 'target' carries no unit", "target_uS", "unit='uS'"])


def test_no_unit_on_time(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS,time\n1,1,0\n")
    raises(p, ["column 'time' carries no unit", "time_s"])


def test_unit_option_contradicting_suffix(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS\n1,1\n")
    raises(p, ["column 'target_uS' says its unit is uS but unit='mS'"], unit="mS")


def test_bad_unit_option(tmp_path):
    p = write(tmp_path, "target,conductance\n1,1\n")
    raises(p, ["unit='kS' is not a supported unit", "'uS'"], unit="kS")


def test_empty_file(tmp_path):
    p = write(tmp_path, "")
    raises(p, ["meas.csv", "the file is empty", "header line", "target_uS"])


def test_header_only_file(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS\n")
    raises(p, ["meas.csv", "has a header line but no data rows", "one row per measurement"])


def test_duplicate_columns(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS,conductance_uS\n1,1,1\n")
    raises(p, ["meas.csv", "line 1 (header)", "duplicate column names", "'conductance_uS' at columns [2, 3]",
               "unique name"])


def test_two_columns_for_the_same_quantity(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS,conductance_mS\n1,1,1\n")
    raises(p, ["ambiguous columns", "conductance_uS", "conductance_mS", "keep one"])


def test_conductance_and_current_is_ambiguous(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS,current_A\n1,1,1e-6\n")
    raises(p, ["meas.csv", "ambiguous", "conductance column 'conductance_uS'", "current column 'current_A'",
               "keep one"], read_voltage=0.1)


def test_current_without_read_voltage(tmp_path):
    p = write(tmp_path, "target_uS,current_A\n1,1e-6\n")
    raises(p, ["current_A", "need a read voltage", "read_voltage="])


def test_negative_time(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS,time_s\n1,1,0\n1,1,-3\n")
    raises(p, ["meas.csv", "line 3: '-3'", "column 'time_s' must not be negative", "drop_invalid=True"])


def test_empty_cell(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS\n1,\n")
    raises(p, ["line 2: (empty)", "column 'conductance_uS' must not be empty", "fill in the cell"])


def test_unsupported_extension(tmp_path):
    p = write(tmp_path, GOOD, name="meas.xlsx")
    raises(p, ["meas.xlsx", "unsupported file type '.xlsx'", ".csv", ".parquet"])


def test_missing_file(tmp_path):
    raises(tmp_path / "nope.csv", ["nope.csv", "does not exist"])


def test_at_most_five_rows_shown(tmp_path):
    body = "".join(f"{i},x{i}\n" for i in range(8))
    msg = raises(write(tmp_path, "target_uS,conductance_uS\n" + body), ["8 rows", "line 6: 'x4'", "and 3 more"])
    assert "'x5'" not in msg


def test_several_rules_reported_together(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS,time_s\n1,abc,0\n-2,1,0\n1,1,-1\n")
    raises(p, ["3 of 3 rows", "column 'conductance_uS' must be a number", "column 'target_uS' must not be negative",
               "column 'time_s' must not be negative"])


def test_structural_errors_raise_even_with_drop_invalid(tmp_path):
    p = write(tmp_path, "target_uS,conductance_kS\n1,1\n")
    raises(p, ["unknown unit suffix"], drop_invalid=True)


def test_drop_invalid_counts_and_warns(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS,time_s\n"
                        "1,1,0\n"      # ok
                        "2,abc,0\n"    # not a number
                        "3,nan,0\n"    # NaN
                        "4,-1,0\n"     # negative conductance
                        "-5,-1,0\n"    # negative target (first rule broken) and conductance: counted once
                        "6,6,-1\n"     # negative time
                        "7,7,7\n")     # ok
    with pytest.warns(UserWarning, match="dropped 5 invalid rows"):
        t = read_measurements(p, drop_invalid=True)
    assert t.n_dropped == 5
    assert t.drop_reasons == {
        "negative in target_uS": 1, "not a number in conductance_uS": 1, "NaN or infinite in conductance_uS": 1,
        "negative in conductance_uS": 1, "negative in time_s": 1,
    }
    assert sum(t.drop_reasons.values()) == t.n_dropped
    assert t.frame["row"].to_list() == [2, 8]
    assert t.frame["conductance_uS"].to_list() == [1.0, 7.0]  # kept values are unaltered


def test_drop_invalid_all_rows_invalid_raises(tmp_path):
    p = write(tmp_path, "target_uS,conductance_uS\n1,x\n")
    raises(p, ["every row is invalid"], drop_invalid=True)


def test_parquet_bad_cell_names_row(tmp_path):
    p = tmp_path / "meas.parquet"
    pl.DataFrame({"target_uS": [1.0, 2.0, 3.0], "conductance_uS": [1.0, 2.0, -3.0]}).write_parquet(p)
    raises(p, ["meas.parquet", "row 3: -3.0", "must not be negative"])


def test_validate_is_public_and_one_place():
    t = validate(pl.DataFrame({"target": [1.0], "conductance": [2.0]}), unit="nS")
    assert t.frame["conductance_uS"].to_list() == [0.002]


# --------------------------------------------------------------------------------------------
# writing and round trips
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_round_trip(tmp_path, ext):
    src = pl.DataFrame({"target_mS": [0.1, 0.2, 1 / 3], "conductance_mS": [0.11, 0.19, 0.3333],
                        "time_s": [0.0, 10.0, 1e5], "chip": ["A", "B", "C 3"], "device": [1, 2, 3],
                        "temperature_C": [25.0, 25.0, 85.0]})
    t = read_measurements(src)
    out = write_measurements(t, tmp_path / f"m.{ext}")
    back = read_measurements(out)
    assert back.frame.drop("row").equals(t.frame.drop("row"))
    assert back.frame["row"].to_list() == ([2, 3, 4] if ext == "csv" else [1, 2, 3])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_measurements(t, out)
    write_measurements(t.frame, out, overwrite=True)


def test_write_unsupported_extension(tmp_path):
    t = read_measurements({"target_uS": [1.0], "conductance_uS": [1.0]})
    with pytest.raises(DataValidationError, match="unsupported file type"):
        write_measurements(t, tmp_path / "m.txt")


# --------------------------------------------------------------------------------------------
# wide files (CrossSim pulse ramps)
# --------------------------------------------------------------------------------------------
def count_nonempty_cells(path: Path) -> tuple[int, int]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return len(rows[0]), sum(1 for r in rows[1:] for c in r if c.strip())


def check_crosssim_set(t: MeasurementTable, path: Path) -> None:
    n_cols, n_cells = count_nonempty_cells(path)
    assert n_cols == 39
    f = t.frame
    assert f["cycle"].n_unique() == 39
    assert f.height == n_cells and t.n_dropped == 0
    g = f["conductance_uS"].to_numpy()
    assert 1000 < g.min() and g.max() < 3000
    # README: G = I / 0.1 V, about 1.6 to 2.5 mS
    assert 1500 < g.min() < 1700 and 2400 < g.max() < 2600
    assert f.columns == ["target_uS", "conductance_uS", "time_s", "cycle", "pulse", "row"]
    assert f["pulse"].dtype == pl.Int64 and f["pulse"].min() == 0
    # ragged trailing cells are reported but are not dropped data
    assert t.drop_reasons["ragged trailing cells (not data)"] == 39 * (f["pulse"].max() + 1) - n_cells
    # row_mean target: the mean over repetitions of each pulse's conductance
    p0 = f.filter(pl.col("pulse") == 0)
    np.testing.assert_allclose(p0["target_uS"].to_numpy(), p0["conductance_uS"].mean(), rtol=1e-12)
    # the first cell of rmp1 is 0.000160588 A on line 2
    first = f.row(0, named=True)
    assert first["cycle"] == "rmp1" and first["pulse"] == 0 and first["row"] == 2
    assert first["conductance_uS"] == pytest.approx(1605.88, rel=1e-12)


def test_from_wide_on_shared_crosssim_set():
    path = BUNDLED_DIR / "set.csv"  # a byte-identical copy of ../shared/data/crosssim/set.csv
    check_crosssim_set(from_wide(path, read_voltage=0.1, current_unit="A"), path)


def test_load_bundled():
    assert bundled_names() == ["crosssim-set", "crosssim-reset"]
    check_crosssim_set(load_bundled("crosssim-set"), BUNDLED_DIR / "set.csv")
    reset = load_bundled("crosssim-reset")
    n_cols, n_cells = count_nonempty_cells(BUNDLED_DIR / "reset.csv")
    assert reset.frame["cycle"].n_unique() == n_cols == 40 and reset.frame.height == n_cells
    with pytest.raises(DataValidationError, match="did you mean crosssim-set"):
        load_bundled("crossim-set")


def test_from_wide_mid_column_gap_is_invalid(tmp_path):
    p = write(tmp_path, "r1,r2\n1,2\n,3\n4,5\n6,\n", name="wide.csv")
    with pytest.raises(DataValidationError) as info:
        from_wide(p, unit="uS")
    msg = str(info.value)
    for part in ["wide.csv", "column 'r1' must not be empty", "line 3: (empty)", "drop_invalid=True"]:
        assert part in msg, msg
    with pytest.warns(UserWarning, match="dropped 1 invalid rows"):
        t = from_wide(p, unit="uS", drop_invalid=True)
    assert t.n_dropped == 1
    assert t.drop_reasons == {"ragged trailing cells (not data)": 1, "empty cell in r1": 1}
    assert t.frame.height == 6  # 3 in r1, 3 in r2 (r2's trailing empty cell is absence)
    assert t.frame.filter(pl.col("cycle") == "r1")["row"].to_list() == [2, 4, 5]


def test_from_wide_bad_cell_names_column_and_line(tmp_path):
    p = write(tmp_path, "r1,r2\n1e-4,2e-4\n1e-4,oops\n", name="wide.csv")
    with pytest.raises(DataValidationError, match=r"column 'r2' must be a number.*line 3: 'oops'"):
        from_wide(p, current_unit="A", read_voltage=0.1)


def test_from_wide_targets_median_and_column():
    src = {"target": [1.0, 2.0], "a": [1.0, 2.5], "b": [1.2, 2.0], "c": [5.0, None]}
    t = from_wide(src, unit="mS", target="target")
    assert t.frame["target_uS"].to_list() == [1000.0, 2000.0, 1000.0, 2000.0, 1000.0]
    assert t.frame["cycle"].to_list() == ["a", "a", "b", "b", "c"]
    med = from_wide({k: v for k, v in src.items() if k != "target"}, unit="mS", target="row_median")
    assert med.frame.filter(pl.col("pulse") == 0)["target_uS"].to_list() == [1200.0] * 3
    mean = from_wide({k: v for k, v in src.items() if k != "target"}, unit="mS")
    assert mean.frame.filter(pl.col("pulse") == 1)["target_uS"].to_list() == [2250.0] * 2


def test_from_wide_unit_errors(tmp_path):
    p = write(tmp_path, "r1\n1\n", name="wide.csv")
    with pytest.raises(DataValidationError, match="carry no unit"):
        from_wide(p)
    with pytest.raises(DataValidationError, match="needs read_voltage"):
        from_wide(p, current_unit="A")
    with pytest.raises(DataValidationError, match="unit='kS' is not a supported unit"):
        from_wide(p, unit="kS")
    with pytest.raises(DataValidationError, match="needs read_voltage"):
        from_wide(p, unit="A")  # a current unit given as unit= is a current unit
    assert from_wide(p, unit="mA", read_voltage=0.5).frame["conductance_uS"].to_list() == [2000.0]
    with pytest.raises(DataValidationError, match="neither 'row_mean'"):
        from_wide(p, unit="uS", target="row_avg")


# --------------------------------------------------------------------------------------------
# synthetic campaigns
# --------------------------------------------------------------------------------------------
def small_model():
    from reliability.devices import ChipGain, DeviceModel, Drift, ProgrammingVariation, ReadNoise

    return DeviceModel(programming=ProgrammingVariation(), drift=Drift(), read_noise=ReadNoise(),
                       chip_gain=ChipGain(0.05))


def test_simulate_campaign_shape_and_columns():
    df = simulate_campaign(small_model(), [10.0, 20.0, 40.0], [0.0, 100.0], n_chips=3, n_devices=5, rng=7)
    assert df.columns == ["chip", "device", "target_uS", "time_s", "conductance_uS"]
    assert df.height == 3 * 3 * 2 * 5
    assert df.group_by("chip", "time_s").len()["len"].to_list() == [15] * 6
    # each device id is unique within its chip and read once per time
    assert df.group_by("chip", "device").len()["len"].unique().to_list() == [2]
    assert df.group_by("chip", "device").agg(pl.col("target_uS").n_unique())["target_uS"].max() == 1
    t = read_measurements(df)
    assert t.n_chips == 3 and t.has_device_ids and list(t.levels) == [10.0, 20.0, 40.0]
    assert not simulate_campaign(small_model(), [10.0], [0.0], n_chips=1, n_devices=2,
                                 device_ids=False).columns.count("device")


def test_simulate_campaign_is_reproducible_and_chip_keyed():
    m = small_model()
    a = simulate_campaign(m, [10.0, 20.0], [0.0, 50.0], n_chips=2, n_devices=4, rng=11)
    b = simulate_campaign(m, [10.0, 20.0], [0.0, 50.0], n_chips=2, n_devices=4, rng=11)
    c = simulate_campaign(m, [10.0, 20.0], [0.0, 50.0], n_chips=4, n_devices=4, rng=11)
    assert a.equals(b)
    assert c.filter(pl.col("chip") < 2).equals(a)  # chip i's data do not depend on n_chips


def test_simulate_campaign_argument_errors():
    with pytest.raises(ValueError, match="n_chips must be a positive integer"):
        simulate_campaign(small_model(), [1.0], [0.0], n_chips=0, n_devices=1)
    with pytest.raises(ValueError, match="times_s"):
        simulate_campaign(small_model(), [1.0], [-1.0], n_chips=1, n_devices=1)


# --------------------------------------------------------------------------------------------
# odds and ends
# --------------------------------------------------------------------------------------------
def test_canonical_frame_reads_back_unchanged():
    t = load_bundled("crosssim-set")
    assert read_measurements(t.frame).frame.equals(t.frame)  # an integer `row` column of a frame is kept


def test_columns_mapping_unknown_key_is_an_error(tmp_path):
    p = write(tmp_path, "target_uS,G_meas\n1,1\n")
    raises(p, ["meas.csv", "columns={'G_mes': 'conductance_uS'} maps the column 'G_mes'", "G_mes: did you mean G_meas?"],
           columns={"G_mes": "conductance_uS"})


def test_from_wide_parquet_current_units(tmp_path):
    p = tmp_path / "wide.parquet"
    pl.DataFrame({"a": [10.0, 20.0], "b": [30.0, None]}).write_parquet(p)
    t = from_wide(p, current_unit="uA", read_voltage=0.2)  # 10 uA / 0.2 V = 50 uS
    assert t.frame["conductance_uS"].to_list() == pytest.approx([50.0, 100.0, 150.0], rel=1e-12)
    assert t.frame["row"].to_list() == [1, 2, 1] and t.unit_in == "uA at 0.2 V"
