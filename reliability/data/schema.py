# size: every validation rule of the measurement schema lives here on purpose, so that all readers report a problem in the same words.
"""The measurement-table schema: canonical columns, units, validation and :class:`MeasurementTable`.

This module owns the rules of :mod:`reliability.data` (documented there): which column names are
recognised, which unit suffixes convert how, which cell values are invalid, how bad input is
reported, and the canonical form every reader returns.  All validation happens in
:func:`validate` (readers only fetch raw cells and call it), so every entry point reports the same
problem in the same words.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import polars as pl

from reliability.errors import DataValidationError, Placeholder, option

__all__ = [
    "MeasurementTable", "validate", "CANONICAL_COLUMNS", "ID_COLUMNS", "CONDUCTANCE_UNITS", "CURRENT_UNITS",
    "VOLTAGE_UNITS", "TIME_UNITS", "TEMPERATURE_UNITS", "MAX_SHOWN",
]

#: Factor from each conductance unit to microsiemens.
CONDUCTANCE_UNITS: dict[str, float] = {"S": 1e6, "mS": 1e3, "uS": 1.0, "nS": 1e-3}
#: Factor from each current unit to amperes.
CURRENT_UNITS: dict[str, float] = {"A": 1.0, "mA": 1e-3, "uA": 1e-6, "nA": 1e-9}
#: Factor from each voltage unit to volts.
VOLTAGE_UNITS: dict[str, float] = {"V": 1.0, "mV": 1e-3}
#: Factor from each time unit to seconds.
TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0, "h": 3600.0, "d": 86400.0}
#: Offset from each temperature unit to degrees Celsius.
TEMPERATURE_UNITS: dict[str, float] = {"C": 0.0, "K": -273.15}

#: Columns of the canonical form, in order (optional ones only when the input has them).
CANONICAL_COLUMNS = ("target_uS", "conductance_uS", "time_s", "chip", "device", "cycle", "pulse",
                     "temperature_C", "row")
#: Identifier columns: always cast to String in the canonical form.
ID_COLUMNS = ("chip", "device", "cycle")
#: Offending rows shown per broken rule in an error message (the rest are counted).
MAX_SHOWN = 5
_MAX_BLOCKS = 8

_MICRO = {"µ": "u", "μ": "u"}
# base name -> (unit table, kind, human description)
_BASES: dict[str, tuple[dict[str, float], str, str]] = {
    "read_voltage": (VOLTAGE_UNITS, "voltage", "read voltage"),
    "conductance": (CONDUCTANCE_UNITS, "conductance", "measured conductance"),
    "temperature": (TEMPERATURE_UNITS, "temperature", "temperature"),
    "current": (CURRENT_UNITS, "current", "measured read current"),
    "target": (CONDUCTANCE_UNITS, "conductance", "programmed target conductance"),
    "time": (TIME_UNITS, "time", "time since programming"),
}
_PLAIN = ("chip", "device", "cycle", "pulse", "row")
_KNOWN_NAMES: tuple[str, ...] = tuple(
    [f"target_{u}" for u in CONDUCTANCE_UNITS] + [f"conductance_{u}" for u in CONDUCTANCE_UNITS]
    + [f"current_{u}" for u in CURRENT_UNITS] + [f"target_{u}" for u in CURRENT_UNITS]
    + [f"read_voltage_{u}" for u in VOLTAGE_UNITS] + [f"time_{u}" for u in TIME_UNITS]
    + [f"temperature_{u}" for u in TEMPERATURE_UNITS] + list(_PLAIN[:4])
)


# ---------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeasurementTable:
    """Validated measurements in canonical long form.

    Attributes
    ----------
    frame : polars.DataFrame
        Columns ``target_uS``, ``conductance_uS``, ``time_s`` (Float64), then ``chip``,
        ``device``, ``cycle`` (String), ``pulse`` (Int64), ``temperature_C`` (Float64) when the
        input has them, and ``row`` (Int64): where the row came from (line number in a CSV file,
        1-based record number otherwise).
    source : str
        Path of the file read, or ``"<memory>"``.
    n_dropped : int
        Rows dropped as invalid (only with ``drop_invalid=True``; otherwise invalid data raise).
    drop_reasons : dict of str to int
        Count per reason.  Each dropped row is counted once, under the first rule it breaks, so
        the counts of the invalid-data reasons sum to ``n_dropped``.  Cells skipped because they
        are not data (blank lines, the ragged trailing cells of wide files) are reported here
        under keys ending in ``(not data)`` and are *not* part of ``n_dropped``.
    unit_in : str
        The unit(s) the input was given in, e.g. ``"mS"`` or ``"A at 0.1 V"``.
    ignored_columns : tuple of str
        Input columns that are not part of the schema and were left out (a warning named them).
    """

    frame: pl.DataFrame
    source: str = "<memory>"
    n_dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    unit_in: str = "uS"
    ignored_columns: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.frame.height

    @property
    def levels(self) -> np.ndarray:
        """Sorted unique target conductances (uS)."""
        return np.unique(self.frame["target_uS"].to_numpy())

    @property
    def times(self) -> np.ndarray:
        """Sorted unique read times (s)."""
        return np.unique(self.frame["time_s"].to_numpy())

    @property
    def n_chips(self) -> int:
        """Number of distinct chip ids (1 when the data carry no ``chip`` column)."""
        if "chip" not in self.frame.columns:
            return 1
        return int(self.frame["chip"].n_unique())

    @property
    def has_device_ids(self) -> bool:
        """Whether rows carry a ``device`` identifier (needed to follow a device over time)."""
        return "device" in self.frame.columns

    def to_polars(self) -> pl.DataFrame:
        """The canonical frame (polars frames are immutable in practice; no copy is made)."""
        return self.frame

    def summary(self) -> str:
        """A few lines saying what was read."""
        f = self.frame
        lv, tm = self.levels, self.times
        lines = [
            f"MeasurementTable from {self.source}: {f.height} rows, input unit {self.unit_in}",
            f"  targets: {lv.size} distinct values, {lv.min():.6g} .. {lv.max():.6g} uS" if lv.size else "  targets: none",
            f"  conductance: {f['conductance_uS'].min():.6g} .. {f['conductance_uS'].max():.6g} uS",
            f"  times: {tm.size} ({', '.join(f'{t:g}' for t in tm[:6])}{', ...' if tm.size > 6 else ''} s)",
        ]
        ids = [f"{f[c].n_unique()} {c}s" for c in ID_COLUMNS if c in f.columns]
        if ids:
            lines.append("  ids: " + ", ".join(ids))
        if "temperature_C" in f.columns:
            lines.append(f"  temperature: {f['temperature_C'].min():.4g} .. {f['temperature_C'].max():.4g} C")
        lines.append(f"  dropped as invalid: {self.n_dropped}")
        for k, v in self.drop_reasons.items():
            lines.append(f"    {k}: {v}")
        if self.ignored_columns:
            lines.append(f"  ignored columns: {', '.join(self.ignored_columns)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"MeasurementTable(source={self.source!r}, rows={self.frame.height}, levels={self.levels.size}, "
                f"times={self.times.size}, n_dropped={self.n_dropped}, unit_in={self.unit_in!r})")


# ---------------------------------------------------------------------------------------------
# names and units
# ---------------------------------------------------------------------------------------------
def _norm_unit(u: str) -> str:
    return "".join(_MICRO.get(ch, ch) for ch in u)


def _parse_name(name: str) -> tuple[str | None, str | None]:
    """``(base, suffix)`` of a column name; ``(None, None)`` for names outside the schema."""
    for base in _BASES:
        if name == base:
            return base, None
        if name.startswith(base + "_"):
            return base, name[len(base) + 1:]
    if name in _PLAIN:
        return name, None
    return None, None


def _suggest(name: str, cutoff: float) -> str | None:
    lowered = {k.lower(): k for k in _KNOWN_NAMES}
    hit = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[hit[0]] if hit else None


def _unit_list(base: str) -> str:
    table = _BASES[base][0]
    return ", ".join(f"{base}_{u}" for u in table)


def _unit_kind(u: str) -> str | None:
    if u in CONDUCTANCE_UNITS:
        return "conductance"
    if u in CURRENT_UNITS:
        return "current"
    return None


@dataclass(frozen=True)
class _Col:
    role: str
    name: str
    unit: str | None = None
    kind: str | None = None


def _fail(source: str, message: str) -> DataValidationError:
    return DataValidationError(f"{source}: {message}")


def _classify(names: Sequence[str], source: str, unit: str | None, read_voltage: float | None,
              require_target: bool, looks_wide: Callable[[], bool] | None = None
              ) -> tuple[dict[str, _Col], list[str], str]:
    """Map input columns to schema roles and resolve their units (structural checks only).

    ``looks_wide`` (called only when the schema columns are missing) says whether the data look
    like a wide file read as a long one, so that the message can name the wide reader."""
    if unit is not None:
        unit = _norm_unit(str(unit))
        if _unit_kind(unit) is None:
            raise _fail(source, f"{option('unit', unit)} is not a supported unit; use one of "
                                f"{list(CONDUCTANCE_UNITS)} (conductance) or {list(CURRENT_UNITS)} (current).")
    roles: dict[str, list[_Col]] = {}
    unknown: list[str] = []
    for name in names:
        base, suffix = _parse_name(name)
        if base is None:
            unknown.append(name)
            continue
        if base in _PLAIN:
            roles.setdefault(base, []).append(_Col(base, name))
            continue
        table, kind, what = _BASES[base]
        if suffix is None:
            if base in ("target", "conductance", "current") and unit is not None:
                ukind = _unit_kind(unit)
                if base == "target" or ukind == kind:
                    roles.setdefault(base, []).append(_Col(base, name, unit, ukind))
                    continue
                raise _fail(source, f"column {name!r}: {option('unit', unit)} is a {ukind} unit but {name!r} holds "
                                    f"a {kind}; pass a {kind} unit ({', '.join(_BASES[base][0])}) or add a suffix to the "
                                    f"column name ({_unit_list(base)}).")
            hint = ""
            if base in ("target", "conductance"):
                hint = f" or pass {option('unit', 'uS')} (the unit the values are in)"
            elif base == "current":
                hint = f" or pass {option('unit', 'A')} (the unit the currents are in)"
            raise _fail(source, f"column {name!r} carries no unit: add a unit suffix to the column name "
                                f"({_unit_list(base)}){hint}.")
        suffix_n = _norm_unit(suffix)
        if base == "target" and suffix_n in CURRENT_UNITS:
            roles.setdefault(base, []).append(_Col(base, name, suffix_n, "current"))
            continue
        if suffix_n in table:
            roles.setdefault(base, []).append(_Col(base, name, suffix_n, kind))
            continue
        # an unknown suffix: say what it is and what would be accepted
        if base == "conductance" and suffix_n in CURRENT_UNITS:
            raise _fail(source, f"column {name!r}: unit suffix '_{suffix}' is a current unit, not a conductance unit. "
                                f"If the column holds read currents, name it current_{suffix_n} and give the read "
                                f"voltage (a read_voltage_V column or {option('read_voltage', Placeholder('<volts>'))}"
                                f"); if it holds conductances, use one of {_unit_list(base)}.")
        if base == "current" and suffix_n in CONDUCTANCE_UNITS:
            raise _fail(source, f"column {name!r}: unit suffix '_{suffix}' is a conductance unit, not a current "
                                f"unit; name the column conductance_{suffix_n}, or use one of {_unit_list(base)}.")
        close = [u for u in table if u.lower() == suffix_n.lower()]
        example = "uS" if "uS" in table else next(iter(table))
        guess = f" Did you mean {base}_{close[0]}?" if close else ""
        raise _fail(source, f"column {name!r} has an unknown unit suffix '_{suffix}'; {what} columns take "
                            f"{', '.join('_' + u for u in table)} (e.g. {base}_{example})."
                            f"{guess} Rename "
                            f"the column (converting the values if needed), or leave it out with "
                            f"{option('columns', {name: None})} if it is not a {what}.")
    for role, cols in roles.items():
        if len(cols) > 1:
            raise _fail(source, f"ambiguous columns: {[c.name for c in cols]} all give the {role}; keep one "
                                f"(leave the others out with {option('columns', {Placeholder('<name>'): None})}).")
    got = {r: c[0] for r, c in roles.items()}
    if "conductance" in got and "current" in got:
        raise _fail(source, f"ambiguous: both a conductance column {got['conductance'].name!r} and a current column "
                            f"{got['current'].name!r}; keep one of them (leave the other out with "
                            f"{option('columns', {got['current'].name: None})}).")
    # required columns
    missing = []
    if require_target and "target" not in got:
        missing.append(("target", "the programmed target conductance, e.g. target_uS"))
    if "conductance" not in got and "current" not in got:
        missing.append(("conductance", "the measured conductance, e.g. conductance_uS, or a read current such as "
                                       "current_A together with the read voltage"))
    if missing:
        parts = [f"missing required column {r!r} ({d})" for r, d in missing]
        shown = list(names) if len(names) <= 12 else [*names[:10], "...", names[-1]]
        msg = "; ".join(parts) + f". Columns found: {shown}" + (f" ({len(names)} in all)." if len(names) > 12 else ".")
        guesses = {name: _suggest(name, 0.6) for name in unknown}
        guesses = {k: v for k, v in guesses.items() if v is not None}
        mapping = option("columns", {Placeholder("<file name>"): Placeholder("<schema name>")})
        if guesses:
            msg += (" " + " ".join(f"{k}: did you mean {v}?" for k, v in guesses.items())
                    + f" Rename the column{'s' * (len(guesses) > 1)}, or map "
                    + f"{'them' if len(guesses) > 1 else 'it'} with {option('columns', guesses)}.")
        elif not got and looks_wide is not None and looks_wide():  # no schema column at all, numbers throughout
            msg += (f" The file looks like a wide table (one column per repetition, numbers in the columns, no "
                    f"schema column): read it with {option('wide')}, giving the cells' unit "
                    f"({option('unit', Placeholder('<unit>'))}, plus {option('read_voltage', Placeholder('<volts>'))} "
                    f"for read currents). If it is a long table, map your column names with {mapping}.")
        else:
            msg += f" Add the column, or map your column names with {mapping}."
        raise _fail(source, msg)
    for name in unknown:
        s = _suggest(name, 0.8)
        if s is not None:
            raise _fail(source, f"column {name!r} is not a schema column. {name}: did you mean {s}? Rename it, map it "
                                f"with {option('columns', {name: s})}, or leave it out with "
                                f"{option('columns', {name: None})}.")
    # unit= must not contradict suffixes of the same kind
    if unit is not None:
        for c in got.values():
            if c.kind == _unit_kind(unit) and c.unit != unit and c.name != c.role:
                raise _fail(source, f"column {c.name!r} says its unit is {c.unit} but {option('unit', unit)} was "
                                    f"passed; the suffix is used for suffixed columns, so drop {option('unit', unit)} "
                                    f"or rename the column.")
    # read voltage
    needs_v = "current" in got or got.get("target", _Col("", "")).kind == "current"
    if read_voltage is not None and "read_voltage" in got:
        raise _fail(source, f"ambiguous read voltage: the data have a column {got['read_voltage'].name!r} and "
                            f"{option('read_voltage', read_voltage)} was passed; use one of them.")
    if needs_v and read_voltage is None and "read_voltage" not in got:
        cur = got.get("current", got.get("target"))
        raise _fail(source, f"column {cur.name!r} holds read currents, which need a read voltage to become "
                            f"conductances (G = I / V): add a read_voltage_V column or pass "
                            f"{option('read_voltage', Placeholder('<volts>'))}.")
    if read_voltage is not None and not needs_v:
        raise _fail(source, f"{option('read_voltage', read_voltage)} was passed but the data hold conductances, not "
                            f"currents; drop {option('read_voltage', read_voltage)} (it applies to current_A / "
                            f"current_mA / ... columns only).")
    ignored = list(unknown)
    if "read_voltage" in got and not needs_v:
        ignored.append(got.pop("read_voltage").name)
    # a description of the input unit
    meas = got.get("conductance") or got["current"]
    if meas.kind == "current":
        vtxt = f"{read_voltage:g} V" if read_voltage is not None else f"V from {got['read_voltage'].name}"
        unit_in = f"{meas.unit} at {vtxt}"
    else:
        unit_in = meas.unit
    t = got.get("target")
    if t is not None and t.unit != meas.unit:
        unit_in = f"target {t.unit}, measured {unit_in}"
    return got, ignored, unit_in


# ---------------------------------------------------------------------------------------------
# cells
# ---------------------------------------------------------------------------------------------
def _parse_numeric(s: pl.Series, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, empty, not_a_number)``: values are NaN where a cell is empty or not a number."""
    dt = s.dtype
    if dt == pl.String:
        st = s.str.strip_chars()
        empty = (st.fill_null("") == "").to_numpy()
        vals = st.cast(pl.Float64, strict=False)
        nonnum = ~empty & vals.is_null().to_numpy()
        return vals.fill_null(np.nan).to_numpy().astype(float), empty, nonnum
    if dt == pl.Null:
        n = s.len()
        return np.full(n, np.nan), np.ones(n, bool), np.zeros(n, bool)
    if dt.is_numeric():
        vals = s.cast(pl.Float64)
        empty = vals.is_null().to_numpy()
        return vals.fill_null(np.nan).to_numpy().astype(float), empty, np.zeros(s.len(), bool)
    raise _fail(source, f"column {s.name!r} has type {dt} but must hold numbers; convert it to numbers (or text "
                        f"that reads as numbers) first.")


def _to_id(s: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """Identifier column as String plus its empty mask (see the package docstring for the rule)."""
    dt = s.dtype
    if dt == pl.String:
        out = s.str.strip_chars()
    elif dt.is_float():
        nonnull = s.drop_nulls()
        if nonnull.len() and bool((nonnull.is_finite() & (nonnull == nonnull.round(0))).all()):
            out = s.cast(pl.Int64).cast(pl.String)
        else:
            out = s.cast(pl.String)
    else:
        out = s.cast(pl.String)
    out = out.fill_null("")
    empty = (out == "").to_numpy()
    return out, empty


def _show(s: pl.Series, i: int) -> str:
    v = s[int(i)]
    if v is None or (isinstance(v, str) and not v.strip()):
        return "(empty)"
    return repr(v) if isinstance(v, str) else repr(float(v)) if isinstance(v, float) else repr(v)


_RULES: dict[str, tuple[str, str]] = {
    # key: (the rule, the fix)
    "empty cell": ("must not be empty", "fill in the cell or delete the row"),
    "not a number": ("must be a number", "write a plain number with '.' as the decimal separator "
                                         "(e.g. 12.5 or 1.25e-4)"),
    "NaN or infinite": ("must be finite", "replace the cell by the measured value or delete the row"),
    "negative": ("must not be negative", "check the sign convention and any offset correction; a negative "
                                         "value is not a physical conductance/current/time"),
    "not positive": ("must be positive", "give the read voltage in volts (read_voltage_V) or millivolts "
                                         "(read_voltage_mV); it cannot be zero or negative"),
    "below absolute zero": ("must be above absolute zero", "check the temperature unit (temperature_C or "
                                                           "temperature_K)"),
    "not a non-negative integer": ("must be a whole number >= 0", "write pulse numbers as 0, 1, 2, ..."),
    "too large": ("must be below 2^53", "write pulse numbers as 0, 1, 2, ..."),
    "overflows": ("overflows when converted to uS or s (beyond about 1.8e308)",
                  "check the unit suffix and the magnitude of the value (for read currents also the read voltage)"),
    "missing identifier": ("must not be empty", "fill in the identifier or delete the row"),
}


@dataclass
class _Violation:
    rule: str
    column: str
    mask: np.ndarray
    show: Callable[[int], str]


class _Checks:
    """Collects rule violations per row and turns them into an error or into dropped rows."""

    def __init__(self, n: int, origin: Mapping[str, np.ndarray] | None):
        self.n = n
        self.items: list[_Violation] = []
        self.origin = origin or {}

    def add(self, rule: str, column: str, mask: np.ndarray, raw: pl.Series) -> None:
        if mask.any():
            self.items.append(_Violation(rule, column, mask, lambda i, raw=raw: _show(raw, i)))

    def _groups(self, v: _Violation, idx: np.ndarray) -> list[tuple[str, np.ndarray]]:
        org = self.origin.get(v.column)
        if org is None:
            return [(v.column, idx)]
        labels = org[idx]
        order = list(dict.fromkeys(labels.tolist()))
        return [(str(lab), idx[labels == lab]) for lab in order]

    def resolve(self, *, source: str, rows: np.ndarray, loc: str, drop_invalid: bool
                ) -> tuple[np.ndarray, dict[str, int]]:
        """Return ``(keep_mask, reasons)`` or raise listing every broken rule."""
        keep = np.ones(self.n, bool)
        if not self.items:
            return keep, {}
        reasons: dict[str, int] = {}
        blocks: list[str] = []
        for v in self.items:
            new = v.mask & keep
            for label, idx in self._groups(v, np.flatnonzero(new)):
                reasons[f"{v.rule} in {label}"] = reasons.get(f"{v.rule} in {label}", 0) + int(idx.size)
            for label, idx in self._groups(v, np.flatnonzero(v.mask)):
                rule, fix = _RULES[v.rule]
                shown = "; ".join(f"{loc} {rows[i]}: {v.show(i)}" for i in idx[:MAX_SHOWN])
                more = f"; ... and {idx.size - MAX_SHOWN} more" if idx.size > MAX_SHOWN else ""
                blocks.append(f"- column {label!r} {rule}, {idx.size} row{'s' * (idx.size != 1)}: "
                              f"{shown}{more}. Fix: {fix}.")
            keep &= ~v.mask
        bad = int((~keep).sum())
        if not drop_invalid or bad == self.n:
            head = (f"{source}: invalid measurement data in {bad} of {self.n} rows"
                    + (" (every row is invalid, nothing is left to read)" if drop_invalid else "") + ":\n")
            extra = (f"\n... and {len(blocks) - _MAX_BLOCKS} more (column, rule) combinations"
                     if len(blocks) > _MAX_BLOCKS else "")
            tail = "" if drop_invalid else (f"\nCorrect these cells, or pass {option('drop_invalid')} to drop such "
                                            "rows (the number dropped for each reason is reported).")
            raise DataValidationError(head + "\n".join(blocks[:_MAX_BLOCKS]) + extra + tail)
        return keep, reasons


# ---------------------------------------------------------------------------------------------
# the one validation entry point
# ---------------------------------------------------------------------------------------------
def _apply_mapping(frame: pl.DataFrame, columns: Mapping[str, str | None] | None, source: str) -> pl.DataFrame:
    if not columns:
        return frame
    if not isinstance(columns, Mapping):
        raise _fail(source, f"{option('columns', {Placeholder('<file name>'): Placeholder('<schema name>')})} must "
                            f"map the data's column names to schema names; got a {type(columns).__name__}.")
    have = list(frame.columns)
    for old, new in columns.items():
        if old not in have:
            hit = difflib.get_close_matches(str(old), have, n=1, cutoff=0.6)
            guess = f" {old}: did you mean {hit[0]}?" if hit else ""
            raise _fail(source, f"{option('columns', {old: new})} maps the column {old!r}, but the data have no such "
                                f"column (columns: {have}).{guess} Give a column name of the data.")
        if new is not None and not isinstance(new, str):
            raise _fail(source, f"columns maps {old!r} to {new!r}; the value must be a schema column name "
                                f"(e.g. {option('columns', {old: 'conductance_uS'})}) or None to leave the column "
                                f"out ({option('columns', {old: None})}).")
        if new is not None and new != old and _parse_name(new)[0] is None:
            s = _suggest(new, 0.6)
            guess = f" {new}: did you mean {s}?" if s else ""
            raise _fail(source, f"{option('columns', {old: new})} maps {old!r} to {new!r}, which is not a schema "
                                f"column name (e.g. target_uS, conductance_uS, time_s, chip, device; see "
                                f"reliability.data).{guess} Map it to a schema name, or leave it out with "
                                f"{option('columns', {old: None})}.")
    drop = [k for k, v in columns.items() if v is None]
    ren = {k: v for k, v in columns.items() if v is not None and v != k}
    final = [ren.get(c, c) for c in have if c not in drop]
    dup = sorted({c for c in final if final.count(c) > 1})
    if dup:
        raise _fail(source, f"after renaming the columns ({option('columns', ren)}), the names {dup} occur more "
                            f"than once; map only one column to each schema name (or leave the existing one out "
                            f"with {option('columns', {Placeholder('<name>'): None})}).")
    return frame.drop(drop).rename(ren)


def validate(frame: pl.DataFrame, *, source: str = "<memory>", rows: Sequence[int] | np.ndarray | None = None,
             loc: str = "row", unit: str | None = None, read_voltage: float | None = None,
             drop_invalid: bool = False, columns: Mapping[str, str | None] | None = None) -> MeasurementTable:
    """Check raw measurement cells against the schema and return the canonical table.

    This is the single place where measurement data are validated; the readers only fetch raw
    cells (CSV cells as text, so that a bad cell can be located) and call it.

    Parameters
    ----------
    frame : polars.DataFrame
        Raw columns, as text or numbers (see :mod:`reliability.data` for the names and units).
    source : str
        Name of the file (or ``"<memory>"``) used in messages and stored in the result.
    rows : sequence of int, optional
        Where each row came from (line numbers of a CSV file).  Default: an integer ``row``
        column of ``frame`` when there is one, else 1, 2, 3, ...
    loc : {"row", "line"}
        The word used with ``rows`` in messages.
    unit : str, optional
        Unit of the columns without a suffix (``"uS"``, ``"mS"``, ``"A"``, ...).
    read_voltage : float, optional
        Read voltage in volts, for current columns when the data have no ``read_voltage_V``.
    drop_invalid : bool
        Drop invalid rows (counted per reason, with a warning) instead of raising.
    columns : mapping, optional
        Rename input columns to schema names (``{"G_meas": "conductance_uS"}``); ``None`` as a
        value leaves a column out.

    Returns
    -------
    MeasurementTable

    Raises
    ------
    reliability.errors.DataValidationError
        On any structural problem, and on invalid cells unless ``drop_invalid``.
    """
    table = _validate(frame, source=source, rows=rows, loc=loc, unit=unit, read_voltage=read_voltage,
                      drop_invalid=drop_invalid, columns=columns)
    _warn(table, stacklevel=3)
    return table


def _warn(table: MeasurementTable, stacklevel: int) -> None:
    msgs = []
    if table.n_dropped:
        reasons = {k: v for k, v in table.drop_reasons.items() if not k.endswith("(not data)")}
        msgs.append(f"dropped {table.n_dropped} invalid rows ({', '.join(f'{k}: {v}' for k, v in reasons.items())})")
    if table.ignored_columns:
        hints = {c: _suggest(c, 0.6) for c in table.ignored_columns}
        hint = ", ".join(f"{c}: did you mean {h}?" for c, h in hints.items() if h)
        mapping = option("columns", {Placeholder("<name>"): Placeholder("<schema name>")})
        msgs.append(f"ignored columns not in the schema: {list(table.ignored_columns)} (map them with "
                    f"{mapping} if they hold schema data{'; ' + hint if hint else ''})")
    if msgs:
        warnings.warn(f"{table.source}: " + "; ".join(msgs) + ".", UserWarning, stacklevel=stacklevel)


def _looks_wide(frame: pl.DataFrame) -> bool:
    """Whether a table without schema columns looks like a wide file (one column per repetition):
    most of its columns (at least 80 %) hold numbers in nearly every non-empty cell (90 %), and it
    has data rows."""
    if frame.height == 0 or frame.width == 0:
        return False
    numeric = 0
    for name in frame.columns:
        try:
            _, empty, nonnum = _parse_numeric(frame[name], "")
        except DataValidationError:
            continue
        filled = int((~empty).sum())
        if filled and int(nonnum.sum()) <= 0.1 * filled:
            numeric += 1
    return numeric >= 0.8 * frame.width


def _check_read_voltage(read_voltage: Any, source: str) -> float | None:
    if read_voltage is None:
        return None
    try:
        v = float(read_voltage)
    except (TypeError, ValueError):
        v = float("nan")
    if not (np.isfinite(v) and v > 0):
        raise _fail(source, f"the read voltage must be a positive number of volts (e.g. "
                            f"{option('read_voltage', 0.1)}); got {option('read_voltage', read_voltage)}.")
    return v


def _validate(frame: pl.DataFrame, *, source: str = "<memory>", rows=None, loc: str = "row", unit=None,
              read_voltage=None, drop_invalid: bool = False, columns=None, require_target: bool = True,
              skip_blank: bool = True, origin: Mapping[str, np.ndarray] | None = None,
              extra_reasons: Mapping[str, int] | None = None) -> MeasurementTable:
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"validate expects a polars DataFrame; got {type(frame).__name__}.")
    read_voltage = _check_read_voltage(read_voltage, source)
    header = f"{source}, line 1 (header)" if loc == "line" else source
    frame = _apply_mapping(frame, columns, header)
    if frame.width == 0:
        raise _fail(source, "has no columns; expected at least target_uS and conductance_uS (see reliability.data).")
    got, ignored, unit_in = _classify(frame.columns, header, unit, read_voltage, require_target,
                                      looks_wide=lambda: _looks_wide(frame))
    if not require_target and "target" in got:
        raise _fail(source, f"internal: unexpected target column {got['target'].name!r}.")
    # where rows come from
    if rows is None:
        if "row" in got and frame[got["row"].name].dtype.is_integer() and frame[got["row"].name].null_count() == 0:
            rows = frame[got["row"].name].to_numpy()
        else:
            rows = np.arange(1, frame.height + 1)
    elif "row" in got:
        ignored.append(got["row"].name)  # a file's own `row` column is replaced by its line numbers
    rows = np.asarray(rows, dtype=np.int64)
    if rows.shape != (frame.height,):
        raise ValueError(f"rows must have one entry per row of frame ({frame.height}); got {rows.shape}.")
    got.pop("row", None)
    reasons: dict[str, int] = dict(extra_reasons or {})
    # blank lines are not data (a CSV reader turns them into rows of empty cells)
    if skip_blank and frame.height:
        used = [c.name for c in got.values()]
        blank = np.ones(frame.height, bool)
        for name in used:
            s = frame[name]
            e = (s.cast(pl.String).str.strip_chars().fill_null("") == "").to_numpy() if s.dtype != pl.Null \
                else np.ones(frame.height, bool)
            blank &= e
        if blank.any():
            reasons[f"blank {loc}s (not data)"] = int(blank.sum())
            frame = frame.filter(pl.Series(~blank))
            rows = rows[~blank]
    if frame.height == 0:
        what = ("has no data rows (only blank lines)" if reasons else
                "has a header line but no data rows" if loc == "line" else "has no rows")
        raise _fail(source, f"{what}; expected one row per measurement under the columns "
                            f"{[c.name for c in got.values()]}.")
    n = frame.height
    checks = _Checks(n, origin)

    def numeric(col: _Col, rng_rule: str | None, bad: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
        raw = frame[col.name]
        vals, empty, nonnum = _parse_numeric(raw, source)
        checks.add("empty cell", col.name, empty, raw)
        checks.add("not a number", col.name, nonnum, raw)
        ok = ~(empty | nonnum)
        checks.add("NaN or infinite", col.name, ok & ~np.isfinite(vals), raw)
        if rng_rule is not None:
            with np.errstate(invalid="ignore"):
                checks.add(rng_rule, col.name, ok & np.isfinite(vals) & bad(vals), raw)
        return vals

    negative = lambda v: v < 0  # noqa: E731
    out: dict[str, Any] = {}
    target = numeric(got["target"], "negative", negative) if "target" in got else None
    meas_col = got.get("conductance") or got["current"]
    meas = numeric(meas_col, "negative", negative)
    if "read_voltage" in got:
        raw_volts = numeric(got["read_voltage"], "not positive", lambda v: v <= 0)
        with np.errstate(invalid="ignore"):
            volts_ok = np.isfinite(raw_volts) & (raw_volts > 0)  # a tiny voltage may still round to 0 below
        volts = raw_volts * VOLTAGE_UNITS[got["read_voltage"].unit]
    else:
        volts, volts_ok = read_voltage, np.ones(n, bool)
    time = None
    if "time" in got:
        raw_time = numeric(got["time"], "negative", negative)
        with np.errstate(over="ignore"):
            time = raw_time * TIME_UNITS[got["time"].unit]
        checks.add("overflows", got["time"].name, np.isfinite(raw_time) & ~np.isfinite(time), frame[got["time"].name])
    temp = None
    if "temperature" in got:
        off = TEMPERATURE_UNITS[got["temperature"].unit]
        temp = numeric(got["temperature"], "below absolute zero", lambda v, off=off: v + off < -273.15) + off
    pulse = None
    if "pulse" in got:
        pulse = numeric(got["pulse"], "not a non-negative integer", lambda v: (v < 0) | (v != np.round(v)))
        with np.errstate(invalid="ignore"):
            huge = np.isfinite(pulse) & (pulse >= 2.0 ** 53)
        checks.add("too large", got["pulse"].name, huge, frame[got["pulse"].name])

    def to_uS(vals: np.ndarray, col: _Col) -> np.ndarray:
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            if col.kind == "current":
                g = vals * CURRENT_UNITS[col.unit] / volts * 1e6
            else:
                g = vals * CONDUCTANCE_UNITS[col.unit]
            checks.add("overflows", col.name, np.isfinite(vals) & volts_ok & ~np.isfinite(g), frame[col.name])
        return g

    out["target_uS"] = to_uS(target, got["target"]) if target is not None else np.full(n, np.nan)
    out["conductance_uS"] = to_uS(meas, meas_col)
    ids = {}
    for r in ID_COLUMNS:
        if r in got:
            s, empty = _to_id(frame[got[r].name])
            checks.add("missing identifier", got[r].name, empty, frame[got[r].name])
            ids[r] = s
    keep, dropped = checks.resolve(source=source, rows=rows, loc=loc, drop_invalid=drop_invalid)
    out["time_s"] = time if time is not None else np.zeros(n)
    data = [pl.Series(k, np.asarray(v, dtype=float), dtype=pl.Float64) for k, v in out.items()]
    for r, s in ids.items():
        data.append(s.alias(r))
    if pulse is not None:
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(pulse) & (pulse < 2.0 ** 53)
        data.append(pl.Series("pulse", np.where(whole, pulse, 0).astype(np.int64), dtype=pl.Int64))
    if temp is not None:
        data.append(pl.Series("temperature_C", temp, dtype=pl.Float64))
    data.append(pl.Series("row", rows, dtype=pl.Int64))
    canon = pl.DataFrame(data)
    if not keep.all():
        canon = canon.filter(pl.Series(keep))
    reasons.update(dropped)
    return MeasurementTable(frame=canon, source=source, n_dropped=int((~keep).sum()), drop_reasons=reasons,
                            unit_in=unit_in, ignored_columns=tuple(ignored))
