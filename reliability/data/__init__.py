"""Measurement tables: the long-format schema, units, validation, readers, writers and bundled data.

This package owns getting measured (or simulated) device data into one canonical, validated
polars table, and nothing else: fitting lives in :mod:`reliability.fit`.

Long format (input)
-------------------
One row per read of one device.  Column names are matched exactly (case-sensitive); surrounding
whitespace in a CSV header is ignored.

- ``target_<u>`` (required): programmed target conductance, ``<u>`` one of ``S``, ``mS``,
  ``uS``, ``nS`` (``µS`` is read as ``uS``).  A target given as a read current
  (``target_A`` ... ``target_nA``) is converted like the current below.
- ``conductance_<u>`` (required, or a current): measured conductance, same units.
- ``current_<i>`` (instead of a conductance): measured read current, ``<i>`` one of ``A``,
  ``mA``, ``uA``, ``nA``.  Needs the read voltage, from a ``read_voltage_V`` (or
  ``read_voltage_mV``) column or the option ``read_voltage=`` (volts): G = I / V.  A conductance
  *and* a current column is an error (ambiguous).
- ``time_<t>`` (optional): time since programming, ``<t>`` one of ``s``, ``ms``, ``us``,
  ``min``, ``h``, ``d``; 0 s for every row when absent.
- ``chip``, ``device``, ``cycle`` (optional): identifiers, text or integers.
- ``pulse`` (optional): pulse number, a whole number >= 0 (written by :func:`from_wide`).
- ``temperature_C`` (optional): degrees Celsius (``temperature_K`` is converted).

Columns without a suffix (``target``, ``conductance``, ``current``) take their unit from the
option ``unit=`` (``unit="uS"``, or ``unit="A"`` for currents); a suffix and a contradicting
``unit=`` is an error, and so is a measurement column with no unit at all.  Other columns are
left out with a warning (they are listed in ``MeasurementTable.ignored_columns``), except names
close to a schema name (``conductnce_uS``), which are an error suggesting the right name.  The
option ``columns={"G_meas": "conductance_uS", "notes": None}`` renames columns, or (``None``)
leaves them out, before any of this.

Canonical form (output of every reader)
---------------------------------------
A polars DataFrame, in this order:

- ``target_uS``, ``conductance_uS``, ``time_s``: Float64 (always present);
- ``chip``, ``device``, ``cycle``: **always String** when present.  Rule: text cells are kept
  as written (surrounding whitespace removed); numeric columns are written in decimal, and a
  float column whose values are all whole numbers is written without ``.0`` (``3.0`` -> ``"3"``).
  So ``"chip 3"`` and ``3`` both work, a file and its in-memory twin give the same dtype, and
  tables from different files concatenate;
- ``pulse``: Int64, when present;
- ``temperature_C``: Float64, when present;
- ``row``: Int64, where the row came from: its line in a CSV file (header = line 1, first data
  line = 2, as an editor shows it), the 1-based record number in a Parquet file or in-memory
  frame (an in-memory integer ``row`` column is kept as is).

wrapped in a frozen :class:`MeasurementTable` (``frame``, ``source``, ``n_dropped``,
``drop_reasons``, ``unit_in``, ``ignored_columns``).

Invalid data
------------
Every problem raises :class:`reliability.errors.DataValidationError` naming the file, the line,
the column, the rule, the offending value (at most the first 5 rows per rule, plus a count of
the rest) and the fix.  Cell rules: not empty, a number, finite, and ``target``/``conductance``/
``current``/``time`` >= 0, read voltage > 0, temperature above absolute zero, ``pulse`` a whole
number >= 0, identifiers not empty.  With ``drop_invalid=True`` rows breaking a cell rule are
dropped instead, each counted once under the first rule it breaks (``drop_reasons``) and
announced by a warning.  Structural problems (missing, misspelt, duplicate or ambiguous columns,
unknown or missing units, an empty or header-only file) always raise.  Blank lines are not data:
they are skipped and counted under ``"blank lines (not data)"``, outside ``n_dropped``.  Values
are never clipped or altered other than by the unit conversion.
"""

from reliability.data.readers import (
    SUPPORTED_EXTENSIONS, bundled_names, from_wide, load_bundled, read_measurements, write_measurements,
)
from reliability.data.schema import (
    CANONICAL_COLUMNS, CONDUCTANCE_UNITS, CURRENT_UNITS, ID_COLUMNS, TEMPERATURE_UNITS, TIME_UNITS, VOLTAGE_UNITS,
    MeasurementTable, validate,
)
from reliability.data.synthetic import simulate_campaign

__all__ = [
    "MeasurementTable", "read_measurements", "validate", "from_wide", "load_bundled", "bundled_names",
    "write_measurements", "simulate_campaign", "CANONICAL_COLUMNS", "ID_COLUMNS", "CONDUCTANCE_UNITS",
    "CURRENT_UNITS", "VOLTAGE_UNITS", "TIME_UNITS", "TEMPERATURE_UNITS", "SUPPORTED_EXTENSIONS",
]
