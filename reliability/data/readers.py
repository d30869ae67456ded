"""Reading and writing measurement tables: CSV / Parquet / in-memory sources, wide files, bundled data.

This module owns input and output only: it fetches raw cells (CSV cells as text, with the line
number of every record, so that a bad cell can be cited), and hands them to
:func:`reliability.data.schema.validate`, the one place where the schema is enforced.
"""

from __future__ import annotations

import codecs
import csv
import importlib.resources
import io
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import polars as pl

from reliability._json import atomic_output
from reliability.data.schema import (
    CONDUCTANCE_UNITS, CURRENT_UNITS, MeasurementTable, _check_read_voltage, _fail, _norm_unit, _validate, _warn,
    validate,
)
from reliability.errors import DataValidationError, Placeholder, option

__all__ = ["read_measurements", "from_wide", "load_bundled", "bundled_names", "write_measurements",
           "SUPPORTED_EXTENSIONS"]

#: File types the readers and :func:`write_measurements` understand (chosen by extension).
SUPPORTED_EXTENSIONS = (".csv", ".parquet")

#: Bundled data sets: name -> (file in reliability/data/bundled, description).
_BUNDLED: dict[str, tuple[str, str]] = {
    "crosssim-set": ("set.csv", "CrossSim pulse ramps, potentiating pulses: read current (A) at 0.1 V after each "
                                "pulse, 39 repetitions (Sandia CrossSim, BSD-3-Clause)"),
    "crosssim-reset": ("reset.csv", "CrossSim pulse ramps, depressing pulses: read current (A) at 0.1 V after each "
                                    "pulse, 40 repetitions (Sandia CrossSim, BSD-3-Clause)"),
}


@dataclass(frozen=True)
class _Raw:
    frame: pl.DataFrame
    rows: np.ndarray | None  # where each record came from (None: 1, 2, 3, ...)
    label: str
    loc: str  # "line" (CSV) or "row"


# ---------------------------------------------------------------------------------------------
# raw input
# ---------------------------------------------------------------------------------------------
def _load_raw(source: Any) -> _Raw:
    if isinstance(source, pl.LazyFrame):
        source = source.collect()
    if isinstance(source, pl.DataFrame):
        return _Raw(source, None, "<memory>", "row")
    if isinstance(source, Mapping):
        try:
            frame = pl.DataFrame(dict(source))
        except Exception as exc:  # polars raises several types for ragged / odd dicts
            raise DataValidationError(f"<memory>: the dict of columns cannot be made into a table ({exc}); give "
                                      f"equal-length sequences, one per column.") from None
        return _Raw(frame, None, "<memory>", "row")
    if not isinstance(source, (str, PathLike)):
        raise TypeError(f"source must be a path to a .csv or .parquet file, a polars DataFrame or a dict of columns; "
                        f"got {type(source).__name__}.")
    path = Path(source)
    label = str(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise _fail(label, f"unsupported file type {path.suffix or '(no extension)'!r}; supported: "
                           f"{', '.join(SUPPORTED_EXTENSIONS)}. Convert the file or rename it if it is one of these.")
    if not path.exists():
        raise _fail(label, "file does not exist; check the path.")
    if not path.is_file():
        raise _fail(label, "is not a file; give the path of a .csv or .parquet file.")
    if ext == ".csv":
        frame, rows = _read_csv_raw(path, label)
        return _Raw(frame, rows, label, "line")
    return _Raw(_read_parquet_raw(path, label), None, label, "row")


def _header_names(header: list[str], where: str) -> list[str]:
    names = [h.strip() or f"unnamed_{i + 1}" for i, h in enumerate(header)]
    seen: dict[str, list[int]] = {}
    for i, nm in enumerate(names):
        seen.setdefault(nm, []).append(i + 1)
    dup = {k: v for k, v in seen.items() if len(v) > 1}
    if dup:
        desc = "; ".join(f"{k!r} at columns {v}" for k, v in dup.items())
        raise _fail(where, f"duplicate column names: {desc}. Each column needs a unique name; rename or delete "
                           f"the repeated ones.")
    return names


def _read_csv_raw(path: Path, label: str) -> tuple[pl.DataFrame, np.ndarray]:
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise _fail(label, f"line {line}: the file is not UTF-8 text (undecodable byte {data[exc.start]:#04x}); "
                           f"re-save it as UTF-8 CSV.") from None
    if not text or text.isspace():
        raise _fail(label, "the file is empty; expected a header line (e.g. target_uS,conductance_uS,time_s) "
                           "followed by one line per measurement.")
    if "\r" in text and "\n" not in text:  # classic Mac line endings: one record per carriage return
        text = text.replace("\r", "\n")
        data = text.encode("utf-8")
    try:
        return _parse_csv(text, data, label)
    except csv.Error as exc:
        raise _fail(label, f"cannot be parsed as CSV ({exc}); save it as plain CSV, one record per line (a cell "
                           f"that contains the separator, a quote or a line break must be quoted).") from None


def _parse_csv(text: str, data: bytes, label: str) -> tuple[pl.DataFrame, np.ndarray]:
    nl = text.find("\n")
    first = (text if nl < 0 else text[:nl]).rstrip("\r")
    sep = next((s for s in (",", ";", "\t") if s in first), ",")
    if not first.strip():
        raise _fail(label, "line 1 is empty; the first line must be the header with the column names "
                           "(e.g. target_uS,conductance_uS,time_s).")

    def records():
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
        return reader, next(reader)

    if '"' in text:
        # quoted fields may span lines: take records and the line each starts on from the csv module
        reader, header = records()
        names = _header_names(header, f"{label}, line 1 (header)")
        rows, starts, prev = [], [], reader.line_num
        for rec in reader:
            if len(rec) > len(names):
                raise _fail(label, f"line {prev + 1}: {len(rec)} fields but the header has {len(names)}; remove the "
                                   f"extra fields (or quote cells that contain {sep!r}).")
            rows.append(rec + [None] * (len(names) - len(rec)))
            starts.append(prev + 1)
            prev = reader.line_num
        cols = list(zip(*rows)) if rows else [()] * len(names)
        frame = pl.DataFrame([pl.Series(nm, list(c), dtype=pl.String) for nm, c in zip(names, cols)])
        return frame, np.asarray(starts, dtype=np.int64)
    names = _header_names(next(csv.reader([first], delimiter=sep)), f"{label}, line 1 (header)")
    try:
        frame = pl.read_csv(io.BytesIO(data), separator=sep, infer_schema=False, has_header=True)
    except pl.exceptions.PolarsError as exc:
        reader, _ = records()
        for rec in reader:
            if len(rec) > len(names):
                raise _fail(label, f"line {reader.line_num}: {len(rec)} fields but the header has {len(names)}; "
                                   f"remove the extra fields (or quote cells that contain {sep!r}).") from None
        raise _fail(label, f"cannot be parsed as CSV ({str(exc).splitlines()[0]}).") from None
    frame = frame.rename(dict(zip(frame.columns, names)))
    return frame, np.arange(2, frame.height + 2, dtype=np.int64)


def _read_parquet_raw(path: Path, label: str) -> pl.DataFrame:
    try:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    except Exception as exc:
        raise _fail(label, f"cannot be read as Parquet ({exc}); check that it is a Parquet file.") from None
    _header_names(list(names), label)
    try:
        return pl.read_parquet(path)
    except Exception as exc:
        raise _fail(label, f"cannot be read as Parquet ({exc}).") from None


# ---------------------------------------------------------------------------------------------
# public readers
# ---------------------------------------------------------------------------------------------
def read_measurements(source: Any, *, unit: str | None = None, read_voltage: float | None = None,
                      drop_invalid: bool = False, columns: Mapping[str, str | None] | None = None
                      ) -> MeasurementTable:
    """Read long-format measurements (one row per read) into the canonical form.

    Parameters
    ----------
    source : str or path-like or polars.DataFrame or dict
        A ``.csv`` or ``.parquet`` file (chosen by extension), a polars frame, or a dict of
        equal-length columns.
    unit : str, optional
        Unit of columns named without a suffix: a conductance unit (``"S"``, ``"mS"``, ``"uS"``,
        ``"nS"``) for ``target``/``conductance``, or a current unit (``"A"``, ``"mA"``, ``"uA"``,
        ``"nA"``) for ``current`` (and ``target`` given as a current).
    read_voltage : float, optional
        Read voltage in volts, to turn a current column into conductance (G = I / V) when the
        data have no ``read_voltage_V`` column.
    drop_invalid : bool, default False
        Drop rows with invalid cells (empty, not a number, NaN/inf, negative, ...) instead of
        raising; the table reports ``n_dropped`` and ``drop_reasons`` and a warning gives the
        counts.  Structural problems always raise.
    columns : mapping, optional
        Rename the data's columns to schema names, e.g. ``{"G_meas": "conductance_uS"}``;
        a value of ``None`` leaves the column out.

    Returns
    -------
    MeasurementTable

    Raises
    ------
    reliability.errors.DataValidationError
        With the file, line, column, rule, offending value and the fix.
    """
    raw = _load_raw(source)
    table = _validate(raw.frame, source=raw.label, rows=raw.rows, loc=raw.loc, unit=unit, read_voltage=read_voltage,
                      drop_invalid=drop_invalid, columns=columns)
    _warn(table, stacklevel=3)
    return table


def from_wide(source: Any, *, read_voltage: float | None = None, unit: str | None = None,
              current_unit: str | None = None, target: str = "row_mean", drop_invalid: bool = False
              ) -> MeasurementTable:
    """Convert a "one column per repetition" file (e.g. CrossSim pulse ramps) to the long form.

    Each column is one repetition (cycle) of the same experiment and each row one step (pulse
    number, 0-based): cell ``(i, c)`` is the conductance, or the read current, after pulse ``i``
    of repetition ``c``.  Every non-empty cell becomes one long row with ``cycle`` = the column
    name, ``pulse`` = the row index, ``time_s`` = 0 and ``row`` = the cell's line in the file.

    Parameters
    ----------
    source : str or path-like or polars.DataFrame or dict
        As for :func:`read_measurements`.
    read_voltage : float, optional
        Read voltage in volts; required with ``current_unit`` (G = I / V).
    unit : str, optional
        The cells are conductances in this unit (``"S"``, ``"mS"``, ``"uS"``, ``"nS"``).  A
        current unit here (``"A"``, ...) means the same as ``current_unit``.
    current_unit : str, optional
        The cells are read currents in this unit (``"A"``, ``"mA"``, ``"uA"``, ``"nA"``).
        Give exactly one of ``unit`` and ``current_unit``; there is no default unit.
    target : str, default "row_mean"
        How each row's target conductance is defined: ``"row_mean"`` (mean over repetitions of
        that pulse's valid conductances: the nominal state after n pulses), ``"row_median"``, or
        the name of a column holding the targets, in the same unit as the cells (that column is
        then not a repetition).
    drop_invalid : bool, default False
        Drop invalid cells (counted per reason) instead of raising.

    Returns
    -------
    MeasurementTable
        Canonical columns plus ``cycle`` (String) and ``pulse`` (Int64).  Ragged columns'
        trailing empty cells are absence, not invalid data: they are not dropped rows, and their
        number is reported under ``drop_reasons["ragged trailing cells (not data)"]``.  An empty
        cell *before* the last value of its column is invalid data.
    """
    raw = _load_raw(source)
    label, frame = raw.label, raw.frame
    volts = option("read_voltage", Placeholder("<volts>"))
    if unit is not None and current_unit is not None:
        raise _fail(label, f"both {option('unit', unit)} and {option('current_unit', current_unit)} were passed; "
                           f"give {option('unit', Placeholder('<unit>'))} when the cells are conductances, "
                           f"{option('current_unit', Placeholder('<unit>'))} (with {volts}) when they are read "
                           f"currents.")
    if unit is None and current_unit is None:
        raise _fail(label, f"the cells carry no unit: pass {option('unit', 'uS')} (or 'S', 'mS', 'nS') when they are "
                           f"conductances, or {option('current_unit', 'A')} (or 'mA', 'uA', 'nA') with {volts} "
                           f"when they are read currents.")
    unit_given = "unit" if current_unit is None else "current_unit"  # as the caller named it (for messages)
    if unit is not None and current_unit is None and _norm_unit(str(unit)) in CURRENT_UNITS:
        unit, current_unit = None, unit  # a current unit passed as unit= (as read_measurements allows)
    if current_unit is not None:
        cu = _norm_unit(str(current_unit))
        if cu not in CURRENT_UNITS:
            raise _fail(label, f"{option(unit_given, current_unit)} is not a current unit; use one of "
                               f"{list(CURRENT_UNITS)}.")
        if read_voltage is None:
            raise _fail(label, f"{option(unit_given, current_unit)} needs {volts} to turn the read currents "
                               f"into conductances (G = I / V).")
        value_name, vunit = "current", cu
    else:
        u = _norm_unit(str(unit))
        if u not in CONDUCTANCE_UNITS:
            raise _fail(label, f"{option('unit', unit)} is not a supported unit; use one of {list(CONDUCTANCE_UNITS)} "
                               f"(conductance cells) or {list(CURRENT_UNITS)} (read-current cells, with {volts}).")
        if read_voltage is not None:
            given = option("read_voltage", read_voltage)
            raise _fail(label, f"{given} was passed but {option('unit', unit)} says the cells are conductances; drop "
                               f"{given}, or give a current unit ({option(unit_given, 'A')}, 'mA', 'uA' or 'nA') if "
                               f"the cells are read currents.")
        value_name, vunit = "conductance", u
    read_voltage = _check_read_voltage(read_voltage, label)
    if target in ("row_mean", "row_median"):
        tcol = None
    elif isinstance(target, str) and target in frame.columns:
        tcol = target
    else:
        import difflib

        hit = difflib.get_close_matches(str(target), list(frame.columns), n=1, cutoff=0.6)
        guess = f" {target}: did you mean {hit[0]}?" if hit else ""
        raise _fail(label, f"target={target!r} is neither 'row_mean', 'row_median' nor a column of the data "
                           f"(columns: {list(frame.columns)[:10]}{' ...' if frame.width > 10 else ''}).{guess}")
    reps = [c for c in frame.columns if c != tcol]
    if not reps:
        raise _fail(label, "has no repetition columns; a wide file needs one column per repetition of the ramp.")
    if frame.height == 0:
        raise _fail(label, "has a header line but no data rows" if raw.loc == "line" else "has no rows")
    rows = raw.rows if raw.rows is not None else np.arange(1, frame.height + 1, dtype=np.int64)
    numeric = all(frame[c].dtype.is_numeric() or frame[c].dtype == pl.Null for c in reps)
    vtype = pl.Float64 if numeric else pl.String
    pieces, ragged = [], 0
    for c in reps:
        s = frame[c]
        if not (s.dtype.is_numeric() or s.dtype in (pl.String, pl.Null)):
            raise _fail(label, f"column {c!r} has type {s.dtype}; a wide file's cells must be numbers.")
        empty = (s.cast(pl.String).str.strip_chars().fill_null("") == "").to_numpy()
        filled = np.flatnonzero(~empty)
        last = int(filled[-1]) + 1 if filled.size else 0
        ragged += frame.height - last
        pieces.append(pl.DataFrame({
            value_name: s[:last].cast(vtype),
            "cycle": pl.Series("cycle", [c] * last, dtype=pl.String),
            "pulse": pl.Series("pulse", np.arange(last, dtype=np.int64), dtype=pl.Int64),
            "_line": pl.Series("_line", rows[:last], dtype=pl.Int64),
        }))
    long = pl.concat(pieces, how="vertical")
    if long.height == 0:
        raise _fail(label, "every cell is empty; there are no measurements to read.")
    origin = {value_name: long["cycle"].to_numpy()}
    if tcol is not None:
        long = long.with_columns(frame[tcol].gather(long["pulse"]).alias("target"))
        origin["target"] = np.full(long.height, tcol, dtype=object)
    lines = long["_line"].to_numpy()
    table = _validate(long.drop("_line"), source=label, rows=lines, loc=raw.loc, unit=vunit,
                      read_voltage=read_voltage, drop_invalid=drop_invalid, require_target=tcol is not None,
                      skip_blank=False, origin=origin,
                      extra_reasons={"ragged trailing cells (not data)": int(ragged)})
    if tcol is None:
        agg = pl.col("conductance_uS").mean() if target == "row_mean" else pl.col("conductance_uS").median()
        new = table.frame.with_columns(agg.over("pulse").alias("target_uS"))
        table = MeasurementTable(frame=new, source=table.source, n_dropped=table.n_dropped,
                                 drop_reasons=table.drop_reasons, unit_in=table.unit_in,
                                 ignored_columns=table.ignored_columns)
    _warn(table, stacklevel=3)
    return table


def bundled_names() -> list[str]:
    """Names of the data sets shipped with the package (for :func:`load_bundled`)."""
    return list(_BUNDLED)


def load_bundled(name: str) -> MeasurementTable:
    """A bundled data set as a :class:`MeasurementTable`.

    Parameters
    ----------
    name : {"crosssim-set", "crosssim-reset"}
        The CrossSim pulse-ramp measurements (read current in A at 0.1 V, one column per
        repetition), converted with :func:`from_wide` (``target="row_mean"``).

    Returns
    -------
    MeasurementTable
    """
    if name not in _BUNDLED:
        import difflib

        hit = difflib.get_close_matches(str(name), list(_BUNDLED), n=1, cutoff=0.5)
        guess = f" {name}: did you mean {hit[0]}?" if hit else ""
        raise DataValidationError(f"unknown bundled data set {name!r}; available: {bundled_names()}.{guess}")
    fname = _BUNDLED[name][0]
    ref = importlib.resources.files("reliability.data.bundled").joinpath(fname)
    with importlib.resources.as_file(ref) as path:
        return from_wide(path, read_voltage=0.1, current_unit="A")


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def write_measurements(table_or_frame: MeasurementTable | pl.DataFrame | Mapping, path: str | PathLike, *,
                       overwrite: bool = False) -> Path:
    """Write measurements in canonical form to a ``.csv`` or ``.parquet`` file.

    The ``row`` column (where a row came from in the *source*) is not written: reading the file
    back gives each row its line in the new file.  A frame or dict is validated first.

    Parameters
    ----------
    table_or_frame : MeasurementTable or polars.DataFrame or dict
    path : str or path-like
        Target file; the extension chooses the format.
    overwrite : bool, default False
        Replace an existing file (otherwise :class:`FileExistsError`).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise DataValidationError(f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; write to one "
                                  f"of {', '.join(SUPPORTED_EXTENSIONS)}.")
    if isinstance(table_or_frame, MeasurementTable):
        frame = table_or_frame.frame
    elif isinstance(table_or_frame, (pl.DataFrame, Mapping)):
        frame = validate(pl.DataFrame(dict(table_or_frame)) if isinstance(table_or_frame, Mapping)
                         else table_or_frame).frame
    else:
        raise TypeError(f"write_measurements expects a MeasurementTable, a polars DataFrame or a dict; got "
                        f"{type(table_or_frame).__name__}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass {option('overwrite')} to replace it, or choose another path.")
    out = frame.drop("row") if "row" in frame.columns else frame
    with atomic_output(path) as tmp:
        if ext == ".csv":
            out.write_csv(tmp)
        else:
            out.write_parquet(tmp)
    return path
