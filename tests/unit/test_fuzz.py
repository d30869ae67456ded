"""Fuzz tests of the two readers of user files: the measurement CSV reader and the device-model
JSON loader.  Whatever the file holds, the only exception that may escape is a
:class:`~reliability.errors.ReliabilityError` (a message naming the problem and the fix), never a
traceback from deep inside (TypeError, KeyError, OverflowError, ...), and what is read is usable.

Reproducible: examples are derived from the test's name (``derandomize=True``), not drawn afresh
on every run; ``max_examples`` keeps the file to a few seconds on two cores.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.data import read_measurements
from reliability.errors import ReliabilityError

# hundreds of generated files per test: in the full run (.ci/run), not the fast lane
pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --------------------------------------------------------------------------------------------
# measurement CSV files
# --------------------------------------------------------------------------------------------
HEADERS = [
    # schema names
    "target_uS", "conductance_uS", "time_s", "chip", "device", "cycle", "pulse", "temperature_C", "row",
    "read_voltage_V", "current_A", "target_A",
    # other units and spellings of units
    "target_mS", "conductance_nS", "conductance_S", "current_uA", "time_ms", "time_h", "temperature_K",
    "read_voltage_mV", "conductance_µS", "conductance_μS",
    # no unit, wrong units, misspellings, wide-file names, junk
    "target", "conductance", "current", "time", "temperature", "read_voltage", "conductance_A", "current_uS",
    "time_xx", "conductance_us", "targt_uS", "Conductance_uS", "G_meas", "rmp1", "rmp2", "1", "2", "", " ",
    "unnamed_1", "notes", "a b",
]
CELLS = [
    "1", "0", "-1", "2.5", "10", "1e-4", "-0.0", "nan", "NaN", "inf", "-inf", "Infinity", "", " ", "1e400",
    "-1e400", "1e308", "1e-320", "abc", "1,5", "0x10", "1_000", "true", "None", "NULL", "  7  ", "1e", ".",
    "+3", "12345678901234567890123",
]


BAD_CELL = st.one_of(
    st.sampled_from(CELLS),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.text(alphabet="0123456789.-e ,;\t\"x", max_size=6),
)
GOOD_CELL = st.one_of(st.sampled_from(["0", "1", "2.5", "10", "25", "1e-4", "3.0e2", "  7  ", "-0.0", "+3"]),
                      st.floats(0, 1e3).map(lambda v: f"{v:.6g}"), st.integers(0, 100).map(str))


@st.composite
def csv_files(draw, names: list[str], cell, min_rows: int, max_rows: int) -> bytes:
    """``names`` and ``rows`` records of ``cell`` joined with a drawn separator and line ending, at
    times ragged (a record one field short or long), with a BOM, a stray Latin-1 line or blank lines."""
    sep = draw(st.sampled_from([",", ";", "\t"]))
    lines = [sep.join(names)]
    for _ in range(draw(st.integers(min_rows, max_rows))):
        width = len(names) + (draw(st.sampled_from([-1, 1])) if draw(st.integers(0, 15)) == 0 else 0)
        lines.append(sep.join(draw(cell) for _ in range(max(width, 0))))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    data = (eol.join(lines) + draw(st.sampled_from(["", eol, eol + eol]))).encode("utf-8")
    trick = draw(st.integers(0, 19))
    if trick == 0:
        data = b"\xef\xbb\xbf" + data
    elif trick == 1:
        data = data + "\n1,caf\u00e9".encode("latin-1")
    elif trick == 2:
        data = b"\n" + data
    return data


def _read(path: Path, reader=read_measurements, **kw):
    """``reader(path, **kw)``: the table, or None after a named error; no other exception, and no
    warning but the documented ones (UserWarning naming the file)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table = reader(path, **kw)
        except ReliabilityError as exc:
            assert str(exc).strip()
            table = None
    unexpected = [f"{w.category.__name__}: {w.message}" for w in caught
                  if not (issubclass(w.category, UserWarning) and str(w.message).startswith(str(path)))]
    assert not unexpected, unexpected
    if table is not None:
        f = table.frame
        assert f.height >= 1 and list(f.columns[:3]) == ["target_uS", "conductance_uS", "time_s"]
        for c in ("target_uS", "conductance_uS", "time_s"):
            v = f[c].to_numpy()
            assert np.all(np.isfinite(v)) and np.all(v >= 0), (c, v)
        assert table.summary()
    return table


@FUZZ
@given(data=st.data())
def test_csv_reader_raises_only_named_errors(folder, data):
    """Any header (schema names, other units, misspellings, junk, duplicates), any cells, any options."""
    names = data.draw(st.lists(st.one_of(st.sampled_from(HEADERS), st.text(max_size=6)), min_size=1, max_size=6),
                      label="header")
    raw = data.draw(csv_files(names, BAD_CELL | GOOD_CELL, 0, 6), label="file")
    kw = {"drop_invalid": data.draw(st.booleans(), label="drop_invalid")}
    unit = data.draw(st.sampled_from([None, "uS", "mS", "A", "uA", "kS", "", "µS", "V", 3]), label="unit")
    volts = data.draw(st.sampled_from([None, 0.1, 0.0, -1.0, math.nan, math.inf, 1e-300, 1e300, "abc"]), label="volts")
    if unit is not None:
        kw["unit"] = unit
    if volts is not None:
        kw["read_voltage"] = volts
    if data.draw(st.booleans(), label="map columns"):
        keys = data.draw(st.lists(st.sampled_from(names + ["missing"]), max_size=3), label="columns")
        kw["columns"] = {k: data.draw(st.sampled_from([None, "target_uS", "conductance_uS", "time_s", "bogus", k, 5]))
                         for k in keys}
    path = folder / "wild.csv"
    path.write_bytes(raw)
    _read(path, **kw)


TARGETS = ["target_uS", "target_mS", "target_nS", "target_S", "target_A"]
MEASURED = ["conductance_uS", "conductance_S", "conductance_mS", "conductance_nS", "current_A", "current_uA"]
EXTRAS = ["time_s", "time_ms", "time_h", "time_d", "chip", "device", "cycle", "pulse", "temperature_C",
          "temperature_K", "read_voltage_V", "read_voltage_mV", "row", "notes"]


@FUZZ
@given(data=st.data())
def test_csv_cells_are_validated_or_read_into_finite_values(folder, data):
    """A well-formed header in any units, and cells that are mostly numbers (huge, tiny, negative,
    NaN, text, empty at times): every reading that comes back is a finite, non-negative number of
    microsiemens and seconds."""
    names = [data.draw(st.sampled_from(TARGETS), label="target"), data.draw(st.sampled_from(MEASURED), label="meas")]
    names += data.draw(st.lists(st.sampled_from(EXTRAS), max_size=4, unique=True), label="extras")
    names = data.draw(st.permutations(names), label="order")
    bad_share = data.draw(st.sampled_from([0, 0, 10, 3]), label="bad share")
    cell = st.integers(0, 99).flatmap(lambda r: BAD_CELL if r < bad_share else GOOD_CELL)
    huge = data.draw(st.booleans(), label="huge")
    if huge:  # values near the top of the float range, which a unit conversion can overflow
        cell = cell | st.sampled_from(["1e308", "1.7e308", "9e307", "1e300", "5e-324"])
    raw = data.draw(csv_files(names, cell, 1, 8), label="file")
    needs_v = any(n.startswith("current_") or n == "target_A" for n in names) and "read_voltage_V" not in names \
        and "read_voltage_mV" not in names
    kw = {"drop_invalid": data.draw(st.booleans(), label="drop_invalid")}
    if needs_v:
        kw["read_voltage"] = data.draw(st.sampled_from([0.1, 0.2, 1e-300, 1e-3]), label="volts")
    path = folder / "cells.csv"
    path.write_bytes(raw)
    _read(path, **kw)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_wide_reader_raises_only_named_errors(folder, data):
    """The wide reader (``--wide``): one column per repetition, ragged columns, any cells and options."""
    from reliability.data import from_wide

    names = data.draw(st.lists(st.sampled_from(["rmp1", "rmp2", "rmp3", "1", "2", "target_uS", "", "x"]), min_size=1,
                               max_size=4, unique=data.draw(st.integers(0, 4), label="dup") > 0), label="header")
    cell = st.integers(0, 99).flatmap(lambda r: BAD_CELL if r < 3 else st.just("") if r < 10 else GOOD_CELL)
    raw = data.draw(csv_files(names, cell, 1, 6), label="file")
    kw = {"drop_invalid": data.draw(st.booleans(), label="drop_invalid"),
          "target": data.draw(st.sampled_from(["row_mean"] * 4 + ["row_median", "rmp1", "target_uS", "nope"]),
                              label="target")}
    unit = data.draw(st.sampled_from([("unit", "uS")] * 3 + [("unit", "A"), ("current_unit", "uA"), ("unit", "kS"),
                                                             ("current_unit", "S"), (None, None)]), label="unit")
    if unit[0]:
        kw[unit[0]] = unit[1]
    current = unit[1] in ("A", "uA")
    volts = data.draw(st.sampled_from([0.1, 0.1, 1e-300, -1.0, None] if current else [None] * 4 + [0.1]),
                      label="volts")
    if volts is not None:
        kw["read_voltage"] = volts
    path = folder / "wide.csv"
    path.write_bytes(raw)
    _read(path, from_wide, **kw)


# --------------------------------------------------------------------------------------------
# device-model JSON files
# --------------------------------------------------------------------------------------------
BAD_VALUES = [
    None, True, False, "abc", "", "1", "nan", [], [1.0], [1.0, 2.0, 3.0], ["a"], [[1.0]], {}, {"kind": "constant"},
    {"kind": "spline", "knots": [1.0, 1.0], "values": [1.0, 2.0]}, {"kind": "polynomial", "coefficients": []},
    {"kind": "nope"}, {"value": 1.0}, math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-300, 1e308, -1e308, 10**400, 2,
    -(10**20), 0.5,
]


def _base_documents() -> list[dict]:
    from reliability.devices import ChipGain, StuckAt, load_device, preset_names
    from reliability.devices.components import EmpiricalVariation

    docs = [load_device(name).to_dict() for name in preset_names()]
    full = load_device("pcm").with_(chip_gain=ChipGain(0.05), stuck=StuckAt(0.01, 0.02, 0.1, 25.0, 0.1, 0.5),
                                    metadata={"fit": {"success": False, "warnings": ["tail check failed"]}})
    docs.append(full.to_dict())
    emp = load_device("rram").with_(programming=EmpiricalVariation((1.0, 5.0), (0.0, 0.5, 1.0),
                                                                  ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0))))
    docs.append(emp.to_dict())
    return docs


BASES = _base_documents()


def _places(node, path=()):
    """Every (path, container) below ``node``: dict keys and list indices."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(path + (k,))
            out.extend(_places(v, path + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append(path + (i,))
            out.extend(_places(v, path + (i,)))
    return out


def _containers(node, path=()):
    out = [path] if isinstance(node, dict) else []
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_containers(v, path + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_containers(v, path + (i,)))
    return out


def _at(doc, path):
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def device_documents(draw):
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
        if op == "add":
            where = draw(st.sampled_from(_containers(doc)))
            key = draw(st.sampled_from(["extra", "scal", "kind", "value", "posterior", "metadata", "nu_meen", "fit",
                                        "success", "warnings"]))
            _at(doc, where)[key] = copy.deepcopy(draw(st.sampled_from(BAD_VALUES)))
            continue
        places = _places(doc)
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent = _at(doc, path[:-1])
        if op == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(BAD_VALUES)))
    return doc


def _show(path):
    """What ``reliability device show FILE --json`` does with a file."""
    from reliability.devices import load_device

    m = load_device(str(path))
    assert m.describe()
    json.loads(m.to_json())
    return m


def _show_or_named_error(path) -> None:
    """Load and describe ``path``; the only failure allowed is a ReliabilityError with a message."""
    try:
        _show(path)
    except ReliabilityError as exc:
        assert str(exc).strip()


@FUZZ
@given(doc=device_documents())
def test_device_loader_raises_only_named_errors(folder, doc):
    path = folder / "device.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    _show_or_named_error(path)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(doc=st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=4), st.integers(), max_size=3)))
def test_device_loader_refuses_documents_that_are_not_models(folder, doc):
    path = folder / "other.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ReliabilityError):
        _show(path)


@pytest.fixture(scope="module")
def posterior_doc(folder):
    from reliability.devices import PosteriorDeviceModel, load_device

    point = load_device("weight-gaussian")
    m = PosteriorDeviceModel.from_point(point, ["programming.scale"], ["programming/scale/value"],
                                        np.array([[0.04], [0.05], [0.06]]))
    m.save(folder / "posterior.json", overwrite=True)
    return json.loads((folder / "posterior.json").read_text())


@FUZZ
@given(data=st.data())
def test_posterior_loader_raises_only_named_errors(folder, posterior_doc, data):
    doc = copy.deepcopy(posterior_doc)
    post = doc["posterior"]
    key = data.draw(st.sampled_from(sorted(post) + ["extra"]), label="key")
    value = data.draw(st.sampled_from(BAD_VALUES + ["posterior.json", "..", "posterior.posterior.npz", "/"]),
                      label="value")
    if data.draw(st.booleans(), label="delete") and key in post:
        del post[key]
    else:
        post[key] = value
    path = folder / "mutated.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    _show_or_named_error(path)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(base=st.sampled_from(BASES), data=st.data())
def test_device_loader_survives_damaged_files(folder, base, data):
    """A file cut short, with bytes replaced or inserted (not UTF-8, a huge number, deep nesting)."""
    raw = json.dumps(base).encode()
    cut = data.draw(st.integers(0, len(raw)), label="at")
    edit = data.draw(st.sampled_from([b"", b"\xff\xfe", b"[" * 5000, b"1" * 5000, b"NaN", b"-Infinity", b"{}", b"\x00",
                                      b'"', b",", b"}"]), label="insert")
    keep = data.draw(st.booleans(), label="keep the rest")
    path = folder / "damaged.json"
    path.write_bytes(raw[:cut] + edit + (raw[cut:] if keep else b""))
    _show_or_named_error(path)
